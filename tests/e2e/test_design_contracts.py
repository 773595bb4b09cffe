"""DESIGN.md §3/§4 contracts, driven through the CLI as scripts use it, on one shared mesh."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, echo_body, wait_for

MESH = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v1, namespace: default, labels: {app: reviews, version: v1}}
spec:
  serviceAccount: bookinfo-reviews
  ports: [9080]
  command: ["isthmus", "echo"]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v2, namespace: default, labels: {app: reviews, version: v2}}
spec:
  replicas: 2
  ports: [9080]
  command: ["isthmus", "echo"]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client}}
spec:
  ports: [8080]
  command: ["isthmus", "echo"]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: plain, namespace: default, labels: {app: plain}}
spec:
  sidecar: false
  ports: [7070]
  command: ["isthmus", "echo"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-gw, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
"""


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("contracts")
    config = work / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    published = _free_local_port()
    m = MeshProcess(config, work, up_args=["--publish", f"{published}:80"])
    m.published = published  # type: ignore[attr-defined]
    with m:
        yield m


def cli(mesh: MeshProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isthmus.cli.main", *args, "--state-dir", str(mesh.state_dir)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def curl_json(mesh: MeshProcess, *args: str) -> dict[str, Any]:
    r = cli(mesh, "curl", *args, "-o", "json")
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


def test_status_json_fields(mesh: MeshProcess) -> None:
    st = json.loads(cli(mesh, "status", "-o", "json").stdout)
    assert set(st["controlPlane"]) >= {"xds", "api"} and st["controlPlane"]["api"].startswith("http://")
    assert isinstance(st["configVersion"], str)
    keys = {"id", "kind", "workload", "instance", "namespace", "labels", "serviceAccount", "ip", "adminPort"}
    keys |= {"outboundPort", "inbound", "listeners", "configVersion", "sync"}
    for p in st["proxies"]:
        assert keys <= set(p), p
        assert p["kind"] in ("sidecar", "gateway")
        assert set(p["sync"].values()) <= {"SYNCED", "STALE", "NOT SENT"}
        assert {"CDS", "LDS"} <= set(p["sync"])
        for lst in p["listeners"]:
            assert isinstance(lst["port"], int) and lst["address"].startswith(p["ip"] + ":")
    reviews = next(p for p in st["proxies"] if p["workload"] == "reviews-v1")
    assert reviews["serviceAccount"] == "bookinfo-reviews"
    assert [(i["port"], type(i["appPort"])) for i in reviews["inbound"]] == [(9080, int)]
    # The default ingress gateway: a Gateway selects its labels and no Workload provides them.
    gw = next(p for p in st["proxies"] if p["kind"] == "gateway")
    assert (gw["workload"], gw["namespace"]) == ("istio-ingressgateway", "istio-system")
    assert {"port": 80, "address": f"{gw['ip']}:8080"}.items() <= gw["listeners"][0].items()
    plain = next(i for i in st["instances"] if i["workload"] == "plain")
    assert plain["sidecar"] is False and plain["ports"][0]["port"] == 7070
    assert all(i["sidecar"] is True for i in st["instances"] if i["workload"] == "reviews-v2")


def test_curl_count_summary(mesh: MeshProcess) -> None:
    out = curl_json(mesh, "--from", "client", "http://reviews:9080/x?size=600", "--count", "12", "-c", "3")
    assert out["requests"] == 12 and out["codes"] == {"200": 12}
    assert set(out["servedBy"]) <= {"reviews-v1", "reviews-v2"} and sum(out["servedBy"].values()) == 12
    assert set(out["versions"]) <= {"v1", "v2"} and sum(out["versions"].values()) == 12
    assert set(out["latencyMs"]) >= {"p50", "p90", "p99", "max"}
    assert len(out["responses"]) == 12
    first = out["responses"][0]
    assert set(first) >= {"status", "headers", "body", "latencyMs"}
    assert isinstance(first["body"], dict) and first["body"]["path"] == "/x?size=600"


def test_curl_no_response_counts_under_zero(mesh: MeshProcess) -> None:
    # The plain pod's app answers 7070 only: a closed port of its address gets no HTTP response.
    ip = mesh.instance("plain")["ip"]
    out = curl_json(mesh, "--from", "plain", f"http://{ip}:7071/", "--count", "2")
    assert out["codes"] == {"0": 2}
    assert out["error"] and all(r["error"] for r in out["responses"])


def test_curl_headers_host_and_instance_ordinal(mesh: MeshProcess) -> None:
    out = curl_json(
        mesh,
        "--from",
        "reviews-v2/1",
        "http://reviews:9080/h",
        "-H",
        "x-empty;",
        "-H",
        "x-colon:",
        "-H",
        "Host: reviews.default.svc.cluster.local:9080",
    )
    body = out["body"]
    assert body["headers"]["x-empty"] == "" and body["headers"]["x-colon"] == ""
    assert body["host"] == "reviews.default.svc.cluster.local:9080"


def test_get_accepts_kubectl_kind_spellings(mesh: MeshProcess) -> None:
    for kind in ("vs", "VirtualService", "virtualservices", "virtualservices.networking.istio.io"):
        r = cli(mesh, "get", kind, "reviews-gw", "-n", "default", "-o", "json")
        assert r.returncode == 0, (kind, r.stderr)
        assert json.loads(r.stdout)["metadata"]["name"] == "reviews-gw"
    listed = yaml.safe_load(cli(mesh, "get", "gateways", "-n", "default", "-o", "yaml").stdout)
    assert listed["kind"] == "List" and [g["metadata"]["name"] for g in listed["items"]] == ["gw"]
    r = cli(mesh, "get", "nosuchkind")
    assert r.returncode != 0 and "unknown kind" in r.stderr


def test_delete_refuses_whole_when_one_file_is_invalid(mesh: MeshProcess, tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-gw}\n"
    )
    bad = tmp_path / "b.yaml"
    bad.write_text("kind: VirtualService\nmetadata: {}\n")
    r = cli(mesh, "delete", "-f", str(good), "-f", str(bad))
    assert r.returncode != 0 and "metadata.name" in r.stderr
    assert [v["metadata"]["name"] for v in mesh.resources("VirtualService", "default")] == ["reviews-gw"]


def test_publish_serves_the_gateway_on_localhost(mesh: MeshProcess) -> None:
    port = mesh.published  # type: ignore[attr-defined]
    resp = wait_for(
        "the published gateway port",
        lambda: (r := sync.request(f"http://127.0.0.1:{port}/pub", timeout=5)).status == 200 and r,
    )
    assert echo_body(resp)["workload"] in ("reviews-v1", "reviews-v2")
