"""One pod of a headless Service by name, through real sidecars (see `xds/gen/headless.py`).

Istio gives a headless Service `*.`-prefixed domains and an original-destination cluster, so
`<pod>.<service>` reaches that pod (routing.go's instance calls; httproute_test's "wildcard" case). An
explicit proxy has no original destination: the Host header (or CONNECT target) names the pod and the
sidecar sends to it alone, over the usual mTLS. The service's own names still balance over every pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from isthmus.client import sync

from .harness import MeshProcess, applied

MESH = """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: db, labels: {app: db}}
spec: {replicas: 3, ports: [8080, 5432], command: [isthmus, echo, --tcp, "5432"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec: {ports: [8080], command: [isthmus, echo]}
"""
PODS = ("db-0", "db-1", "db-2")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("headless"), MESH) as m:
        yield m


def answered_by(mesh: MeshProcess, host: str, n: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        resp = sync.request(f"http://{host}/", proxy=mesh.proxy_url("client"), timeout=10)
        assert resp.status == 200, (host, resp.status, resp.body[:200])
        body = json.loads(resp.body)
        out[body["instance"]] += 1
    return out


def test_a_pod_named_in_the_host_answers_every_request(mesh: MeshProcess) -> None:
    for pod in PODS:
        for host in (f"{pod}.db.default.svc.cluster.local", f"{pod}.db:80", f"{pod}.db.default"):
            assert answered_by(mesh, host, 6) == Counter({pod: 6}), host


def test_the_service_name_still_balances_over_every_pod(mesh: MeshProcess) -> None:
    assert set(answered_by(mesh, "db", 30)) == set(PODS)


def test_a_tunnel_to_a_pod_reaches_that_pod(mesh: MeshProcess) -> None:
    for pod in PODS:
        for i in range(4):
            resp = sync.request(f"tcp://{pod}.db:5432", proxy=mesh.proxy_url("client"), body=f"ping {i}")
            assert resp.status == 200, resp
            assert resp.text.strip() == f"{pod} ping {i}"


def test_an_unknown_pod_is_refused_with_the_reason(mesh: MeshProcess) -> None:
    resp = sync.request("http://db-7.db/", proxy=mesh.proxy_url("client"), timeout=10)
    assert resp.status == 503 and b"no pod of that name behind headless service db.default" in resp.body
    tunnel = sync.request("tcp://db-7.db:5432", proxy=mesh.proxy_url("client"), body="ping")
    assert tunnel.status == 503, tunnel


def test_virtual_service_routes_apply_to_pod_requests_too(mesh: MeshProcess) -> None:
    """A VirtualService on the headless host applies to `<pod>.<host>` requests (they share its virtual
    host, as in Istio), and the pod named still answers."""
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  http:
  - headers: {response: {set: {x-vs: db}}}
    route: [{destination: {host: db, port: {number: 80}}}]
"""
    with applied(mesh, vs):
        resp = sync.request("http://db-1.db/", proxy=mesh.proxy_url("client"), timeout=10)
        assert resp.status == 200 and resp.header("x-vs") == "db"
        assert json.loads(resp.body)["instance"] == "db-1"
        assert answered_by(mesh, "db-2.db", 5) == Counter({"db-2": 5})


STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db-strict}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
"""


def isthmus_curl(mesh: MeshProcess, *args: str) -> dict[str, Any]:
    """`isthmus curl --from client -o json ARGS...` against the mesh: its JSON output."""
    cmd = [sys.executable, "-m", "isthmus.cli.main", "curl", "--from", "client", "-o", "json"]
    cmd += ["--state-dir", str(mesh.state_dir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return json.loads(done.stdout)


def test_a_pod_ip_reaches_that_pod_through_the_service_with_mtls(mesh: MeshProcess) -> None:
    """istiod's per-IP listeners of a headless service (listener.go): `<podIP>:<port>` goes through the
    service's cluster to that pod, over mTLS (with STRICT on the pods, a plaintext passthrough would be
    refused), for HTTP requests (`<podIP>`, `<podIP>:80`) and for a `tcp://<podIP>:5432` tunnel."""
    ips = {i["instance"]: i["ip"] for i in mesh.status()["instances"] if i["workload"] == "db"}
    assert sorted(ips) == list(PODS)
    with applied(mesh, STRICT):
        for pod, ip in sorted(ips.items()):
            for url in (f"http://{ip}/", f"http://{ip}:80/"):
                out = isthmus_curl(mesh, "--count", "4", url)
                assert out["codes"] == {"200": 4} and out["instances"] == {pod: 4}, (url, out)
                # The pod's sidecar took them over mTLS: it forwards the client's certificate.
                for resp in out["responses"]:
                    xfcc = resp["body"]["headers"].get("x-forwarded-client-cert", "")
                    assert "URI=spiffe://cluster.local/ns/default/sa/" in xfcc, (url, xfcc)
            for i in range(3):
                tunnel = isthmus_curl(mesh, "-d", f"ping {i}", f"tcp://{ip}:5432")
                assert tunnel["status"] == 200, (ip, tunnel)
                assert str(tunnel["body"]).strip() == f"{pod} ping {i}", (ip, tunnel)
