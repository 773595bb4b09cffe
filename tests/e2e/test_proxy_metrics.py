"""In-proxy metrics (the default; proxyMetadata / ProxyConfig ISTHMUS_PROXY_METRICS: "false" turns them
off): Envoy keeps Istio's metrics in the dynamic-module access logger and reports series once a second,
instead of a gRPC access-log entry per request. The metrics must be those the gRPC access log gives:
`legacy` runs without the module (a ProxyConfig turns it off) and sends the same requests, and its series
must carry the same labels but its own source. Only failed requests reach `isthmus logs` and `isthmus
explain` from module proxies; every request does from `legacy`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.client import sync
from tests.e2e.harness import _OPENER, MeshProcess, wait_for

pytestmark = pytest.mark.e2e

MESH = """
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: legacy, namespace: default}
spec:
  selector: {matchLabels: {app: legacy}}
  environmentVariables: {ISTHMUS_PROXY_METRICS: "false"}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432, targetPort: 5432}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, labels: {app: a, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: legacy, labels: {app: legacy, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b, labels: {app: b, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: db, labels: {app: db, version: v1}}
spec: {ports: [5432], command: [isthmus, echo, --tcp, "5432"]}
"""

WAIT_S = 20.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("proxy-metrics"), MESH) as m:
        yield m


def get(mesh: MeshProcess, path: str, **params: Any) -> bytes:
    url = mesh.api + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with _OPENER.open(url, timeout=10) as resp:
        return resp.read()


Labels = frozenset[tuple[str, str]]


def samples(mesh: MeshProcess, name: str) -> dict[Labels, float]:
    out = {}
    for family in text_string_to_metric_families(get(mesh, "/metrics").decode()):
        for s in family.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out


def matching(found: dict[Labels, float], **labels: str) -> dict[Labels, float]:
    want = set(labels.items())
    return {k: v for k, v in found.items() if want <= k}


def send(mesh: MeshProcess, client: str, ok: int, failed: int, tag: str) -> None:
    for i in range(ok):
        assert mesh.curl(client, f"http://b/{tag}-ok-{i}").status == 200
    for i in range(failed):
        assert mesh.curl(client, f"http://b/{tag}-fail-{i}?status=503").status == 503


def counts(mesh: MeshProcess, client: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for labels, v in matching(samples(mesh, "istio_requests_total"), source_workload=client).items():
        d = dict(labels)
        if d["destination_workload"] == "b":
            key = (d["reporter"], d["response_code"])
            out[key] = out.get(key, 0) + v
    return out


def listeners(mesh: MeshProcess, workload: str) -> str:
    p = mesh.proxy(workload)
    url = f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=dynamic_listeners"
    return sync.request(url).body.decode()


def without_source(labels: Labels) -> dict[str, str]:
    return {k: v for k, v in labels if not k.startswith("source_")}


def test_module_proxies_carry_the_module_logger(mesh: MeshProcess) -> None:
    dump = listeners(mesh, "a")
    assert "envoy.access_loggers.dynamic_modules" in dump
    assert "isthmus.outbound.failed" in dump
    legacy = listeners(mesh, "legacy")
    assert "envoy.access_loggers.dynamic_modules" not in legacy
    assert "isthmus.outbound" in legacy


def test_request_counts_and_labels_match_the_access_log_pipeline(mesh: MeshProcess) -> None:
    send(mesh, "a", ok=12, failed=3, tag="mod")
    send(mesh, "legacy", ok=12, failed=3, tag="als")
    want = {
        ("source", "200"): 12,
        ("source", "503"): 3,
        ("destination", "200"): 12,
        ("destination", "503"): 3,
    }
    wait_for("a's counts", lambda: counts(mesh, "a") == want, timeout=WAIT_S)
    wait_for("legacy's counts", lambda: counts(mesh, "legacy") == want, timeout=WAIT_S)
    found = samples(mesh, "istio_requests_total")
    mod = sorted(map(sorted, (without_source(k).items() for k in matching(found, source_workload="a"))))
    als = sorted(map(sorted, (without_source(k).items() for k in matching(found, source_workload="legacy"))))
    assert mod == als
    mtls = matching(found, source_workload="a", reporter="destination")
    assert {dict(k)["connection_security_policy"] for k in mtls} == {"mutual_tls"}
    assert {dict(k)["source_principal"] for k in mtls} == {"spiffe://cluster.local/ns/default/sa/default"}
    for client in ("a", "legacy"):
        h = matching(samples(mesh, "istio_request_duration_milliseconds_count"), source_workload=client)
        assert sum(h.values()) == 30, (client, h)
        sizes = matching(
            samples(mesh, "istio_response_bytes_sum"), source_workload=client, response_code="200"
        )
        assert all(v > 12 * 100 for v in sizes.values()), sizes


def test_only_failed_requests_reach_the_logs(mesh: MeshProcess) -> None:
    send(mesh, "a", ok=2, failed=1, tag="logs")

    def lines() -> list[str] | None:
        text = get(mesh, "/api/logs", workload="a", tail=1000).decode()
        found = [line for line in text.splitlines() if "/logs-" in line]
        return found or None

    found = wait_for("a's failed request in the logs", lines, timeout=WAIT_S)
    assert all("/logs-fail-0" in line and " 503 " in line for line in found), found
    # `isthmus logs` says why the successful requests are missing.
    cmd = [sys.executable, "-m", "isthmus.cli.main", "logs", "a", "--state-dir", str(mesh.state_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "/logs-fail-0" in done.stdout and "/logs-ok-" not in done.stdout
    assert "keep their metrics in the proxy" in done.stderr
    cmd[cmd.index("a")] = "legacy"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "keep their metrics" not in done.stderr, done.stderr
    # `isthmus explain --request-id`: a successful request is explained from legacy's line (b keeps its
    # metrics in the proxy, so only legacy's outbound entry exists); one between module proxies has no
    # line, and explain says why.
    from click.testing import CliRunner

    from isthmus.cli.main import cli

    def explain(request_id: str) -> Any:
        args = ["explain", "--request-id", request_id, "-o", "json", "--state-dir", str(mesh.state_dir)]
        return CliRunner().invoke(cli, args)

    ok_legacy, ok_module = f"pm-legacy-{time.time_ns()}", f"pm-module-{time.time_ns()}"
    assert mesh.curl("legacy", "http://b/explained", headers=[("x-request-id", ok_legacy)]).status == 200
    assert mesh.curl("a", "http://b/explained", headers=[("x-request-id", ok_module)]).status == 200

    def explained() -> list[dict[str, Any]] | None:
        result = explain(ok_legacy)
        if result.exit_code != 0:
            return None
        out = json.loads(result.stdout)
        return out if out else None

    found = wait_for("legacy's successful request in explain", explained, timeout=WAIT_S)
    assert {e["kind"] for e in found} == {"OK"} and [e["proxy"][:7] for e in found] == ["legacy-"], found
    result = explain(ok_module)
    assert result.exit_code != 0 and "keep their metrics in the proxy (the default)" in result.output


def test_tcp_connections(mesh: MeshProcess) -> None:
    for i in range(2):
        resp = sync.request("tcp://db:5432", proxy=mesh.proxy_url("a"), body=f"ping {i}", timeout=10)
        assert resp.status == 200 and f"ping {i}" in resp.body.decode(), resp

    def tcp(reporter: str) -> tuple[float, float] | None:
        opened = matching(
            samples(mesh, "istio_tcp_connections_opened_total"), source_workload="a", reporter=reporter
        )
        closed = matching(
            samples(mesh, "istio_tcp_connections_closed_total"), source_workload="a", reporter=reporter
        )
        got = (sum(opened.values()), sum(closed.values()))
        return got if got == (2, 2) else None

    wait_for("client-side TCP connections", lambda: tcp("source"), timeout=WAIT_S)
    wait_for("server-side TCP connections", lambda: tcp("destination"), timeout=WAIT_S)
    sent = matching(samples(mesh, "istio_tcp_sent_bytes_total"), source_workload="a", reporter="destination")
    assert sum(sent.values()) > 0, sent


def test_grpc_requests_are_counted_once_from_their_entries(mesh: MeshProcess) -> None:
    """The module leaves gRPC requests to the gRPC access log (their message counts): each is counted
    once per reporter, as gRPC."""
    for _ in range(3):
        resp = mesh.curl(
            "a",
            "http://b/pkg.Svc/Call",
            method="POST",
            body=b"",
            headers=[("content-type", "application/grpc")],
        )
        assert resp.status == 200, resp

    def grpc_counts() -> dict[str, float] | None:
        found = matching(
            samples(mesh, "istio_requests_total"),
            source_workload="a",
            destination_workload="b",
            request_protocol="grpc",
        )
        out: dict[str, float] = {}
        for labels, v in found.items():
            out[dict(labels)["reporter"]] = out.get(dict(labels)["reporter"], 0) + v
        return out if out == {"source": 3, "destination": 3} else None

    wait_for("gRPC requests from both reporters", grpc_counts, timeout=WAIT_S)


def test_grpc_web_requests_are_counted_once_as_http(mesh: MeshProcess) -> None:
    """gRPC-Web takes the gRPC logger too (the module skips every application/grpc* request) and is
    counted as HTTP, once per reporter."""

    def http_ok() -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, v in matching(
            samples(mesh, "istio_requests_total"),
            source_workload="a",
            destination_workload="b",
            request_protocol="http",
            response_code="200",
        ).items():
            out[dict(labels)["reporter"]] = out.get(dict(labels)["reporter"], 0) + v
        return out

    before = wait_for(
        "a settled count", lambda: (c := http_ok()) and c.get("source") == c.get("destination") and c
    )
    for _ in range(2):
        resp = mesh.curl(
            "a",
            "http://b/web",
            method="POST",
            body=b"",
            headers=[("content-type", "application/grpc-web+proto")],
        )
        assert resp.status == 200, resp
    want = {r: before[r] + 2 for r in ("source", "destination")}
    wait_for("the gRPC-Web requests", lambda: http_ok() == want, timeout=WAIT_S)
    time.sleep(2.5)  # two more report intervals: a second count would have arrived by now
    assert http_ok() == want


def test_dashboard_says_why_the_log_is_quiet(mesh: MeshProcess) -> None:
    """The workload page notes that a module proxy only logs failed and gRPC requests."""
    from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{mesh.api}/ui/#/workload/default/a")
            note = page.wait_for_selector("#wl-log-in-proxy")
            assert "keep their metrics in the proxy" in note.text_content()
            page.goto(f"{mesh.api}/ui/#/workload/default/legacy")
            page.wait_for_selector('#wl-proxies tr.proxy-row[data-synced="true"]')
            assert page.query_selector("#wl-log-in-proxy") is None
        finally:
            browser.close()
