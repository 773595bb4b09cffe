"""A DNS ServiceEntry whose endpoint is a mesh host name reaches that service's pods, on a real mesh.

Istio's egress and outbound-traffic-policy tests (tests/integration/pilot/outboundtrafficpolicy) write
`endpoints: [{address: destination.<ns>.svc.cluster.local}]` with `resolution: DNS`: kube DNS gives the
Service's ClusterIP, kube-proxy one of its pods at the port's targetPort. Isthmus resolves such names
through its registry (DESIGN §3): the ServiceEntry's cluster holds the named service's pods, and each
request or CONNECT tunnel reaches a pod's sidecar at `<podIP>:<targetPort>`. Auto mTLS follows istiod:
a ServiceEntry endpoint without a tlsMode label or serviceAccount is plaintext (the destination's
PERMISSIVE sidecar accepts it, a STRICT one refuses it); with `security.istio.io/tlsMode: istio` the
sidecar originates mTLS. A name whose service has no ready pod answers 503 until a pod comes up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

DEST = "destination.app.svc.cluster.local"

# client: the caller. destination (with a sidecar): HTTP on target port 8080 behind Service port 80, a
# TCP echo on 9090 behind Service port 9000. empty: a Service no pod backs (yet).
MESH = f"""
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: client, namespace: app, labels: {{app: client}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: destination, namespace: app}}
spec:
  selector: {{app: destination}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: tcp, port: 9000, targetPort: 9090}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: destination, namespace: app, labels: {{app: destination, version: v1}}}}
spec: {{ports: [8080, 9090], command: [isthmus, echo, --tcp, "9090"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: app}}
spec:
  selector: {{app: late}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
# Istio's helper.go shape: the endpoint is the destination's mesh name, port 80 is its Service port.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-service-entry, namespace: app}}
spec:
  hosts: [some-external-site.com]
  location: MESH_EXTERNAL
  endpoints: [{{address: {DEST}}}]
  ports: [{{number: 80, name: http}}]
  resolution: DNS
---
# TCP: ServiceEntry port 5000 -> endpoint port 9000 (a port of the Service) -> targetPort 9090.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: app}}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  endpoints: [{{address: {DEST}, ports: {{tcp: 9000}}}}]
  ports: [{{number: 5000, name: tcp, protocol: TCP}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: meshed, namespace: app}}
spec:
  hosts: [meshed.example.com]
  location: MESH_INTERNAL
  endpoints: [{{address: {DEST}, labels: {{security.istio.io/tlsMode: istio}}}}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: nowhere, namespace: app}}
spec:
  hosts: [nowhere.example.com]
  location: MESH_EXTERNAL
  endpoints: [{{address: empty.app.svc.cluster.local}}]
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  - {{number: 5000, name: tcp, protocol: TCP}}
  resolution: DNS_ROUND_ROBIN
"""

STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: app}
spec:
  selector: {matchLabels: {app: destination}}
  mtls: {mode: STRICT}
"""

LATE = """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: late, namespace: app, labels: {app: late, version: late}}
spec: {ports: [8080], command: [isthmus, echo]}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("se-mesh-host"), MESH) as m:
        yield m


def test_http_through_the_service_entry_reaches_the_named_service_pod(mesh: MeshProcess) -> None:
    body = echo_body(mesh.curl("client", "http://some-external-site.com/hello", namespace="app"))
    # The destination's app, behind its sidecar's inbound listener on <podIP>:8080.
    assert body["workload"] == "destination" and body["namespace"] == "app"
    assert body["ip"] == mesh.instance("destination", "app")["ip"]
    assert body["host"] == "some-external-site.com" and body["path"] == "/hello"


def test_tcp_tunnel_through_the_service_entry_reaches_the_named_service_pod(mesh: MeshProcess) -> None:
    resp = sync.request("tcp://db.example.com:5000", proxy=mesh.proxy_url("client", "app"), body="ping")
    assert (resp.status, resp.body) == (200, b"v1 ping"), resp


def test_auto_mtls_follows_the_service_entry_endpoint(mesh: MeshProcess) -> None:
    """istiod gives a ServiceEntry endpoint tlsMode istio only by label or serviceAccount: with STRICT at
    the destination, the plaintext one is refused and the labelled one goes through over mTLS."""
    assert echo_body(mesh.curl("client", "http://meshed.example.com/", namespace="app"))["workload"] == (
        "destination"
    )
    with applied(mesh, STRICT):
        meshed = wait_for(
            "mTLS through the labelled endpoint",
            lambda: (
                (r := mesh.curl("client", "http://meshed.example.com/", namespace="app")).status == 200 and r
            ),
        )
        assert echo_body(meshed)["workload"] == "destination"
        plain = wait_for(
            "STRICT to refuse plaintext",
            lambda: (
                (r := mesh.curl("client", "http://some-external-site.com/", namespace="app")).status != 200
                and r
            ),
        )
        assert plain.status == 503
    wait_for(
        "PERMISSIVE again",
        lambda: mesh.curl("client", "http://some-external-site.com/", namespace="app").status == 200,
    )


def test_named_service_without_ready_pod_is_503_until_one_comes_up(mesh: MeshProcess) -> None:
    resp = mesh.curl("client", "http://nowhere.example.com/", namespace="app")
    assert resp.status == 503, resp
    assert b"no healthy upstream" in resp.body
    tunnel = sync.request("tcp://nowhere.example.com:5000", proxy=mesh.proxy_url("client", "app"), body="x")
    assert tunnel.status != 200, tunnel
    # A pod of the named service starting is an endpoint change: the ServiceEntry follows it.
    with applied(mesh, LATE):
        reached = wait_for(
            "the late pod through the ServiceEntry",
            lambda: (
                (r := mesh.curl("client", "http://nowhere.example.com/", namespace="app")).status == 200 and r
            ),
            timeout=60,
        )
        assert echo_body(reached)["workload"] == "late"
