"""Sidecar `ingress` listeners end to end, with real Envoy and the echo app.

The `app` Workload declares one port (8080); its Sidecar replaces it with two ingress ports: 7070 (HTTP,
defaultEndpoint 127.0.0.1:8080) and 8443 (HTTPS with `tls` SIMPLE from files, defaultEndpoint
0.0.0.0:8080, its mTLS DISABLEd by a port-level PeerAuthentication as istiod requires for user TLS).
Both reach the app's private port for 8080. Ports istiod's TestInboundSidecarTLSModes and the mTLS /
authorization behaviour of service ports onto a real mesh.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body

pytestmark = pytest.mark.e2e

TD = "spiffe://cluster.local"
SNI = "app.example.com"

MESH = """
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports:
  - {{name: http, port: 80, targetPort: 7070}}
  - {{name: https, port: 443, targetPort: 8443}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: app, labels: {{app: app, version: v1}}}}
spec:
  serviceAccount: app
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: app-ingress}}
spec:
  workloadSelector: {{labels: {{app: app}}}}
  ingress:
  - port: {{number: 7070, protocol: HTTP, name: http}}
    defaultEndpoint: 127.0.0.1:8080
  - port: {{number: 8443, protocol: HTTPS, name: https}}
    defaultEndpoint: 0.0.0.0:8080
    tls:
      mode: SIMPLE
      serverCertificate: {cert}
      privateKey: {key}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: app-tls-port}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  portLevelMtls:
    8443: {{mode: DISABLE}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: sleep, labels: {{app: sleep}}}}
spec:
  serviceAccount: sleep
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: legacy, labels: {{app: legacy}}}}
spec:
  sidecar: false
  ports: [8080]
  command: [isthmus, echo]
"""


@pytest.fixture(scope="module")
def ca() -> t.Pem:
    return t.make_ca()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, ca: t.Pem) -> Iterator[MeshProcess]:
    pki = tmp_path_factory.mktemp("ingress-pki")
    server = t.issue(ca, [SNI])
    cert, key = pki / "app.crt", pki / "app.key"
    cert.write_bytes(server.cert)
    key.write_bytes(server.key)
    yaml = MESH.format(cert=cert, key=key)
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("sidecar-ingress"), yaml) as m:
        yield m


def peer_of(body: dict) -> str:
    """The client identity the server sidecar saw, from the XFCC header it set."""
    for part in body["headers"].get("x-forwarded-client-cert", "").split(";"):
        if part.startswith("URI="):
            return part[4:]
    return ""


def app_ip(mesh: MeshProcess) -> str:
    return str(mesh.proxy("app")["ip"])


def test_ingress_port_reaches_the_app_over_mtls(mesh: MeshProcess) -> None:
    body = echo_body(mesh.curl("sleep", "http://app/"))
    assert body["workload"] == "app" and body["port"] == 8080
    # The client sidecar sent mTLS to the ingress port (PERMISSIVE by default), which checked it.
    assert peer_of(body) == f"{TD}/ns/default/sa/sleep"
    # A client without a sidecar speaks plaintext, which PERMISSIVE serves.
    body = echo_body(mesh.curl_direct("legacy", "http://app/"))
    assert "x-forwarded-client-cert" not in body["headers"]


def test_ingress_replaces_the_workload_port(mesh: MeshProcess) -> None:
    """The Workload's 8080 is no inbound port any more: nothing listens on <podIP>:8080, and `isthmus
    status` shows the ingress ports as the sidecar's inbound ports and listeners."""
    with pytest.raises(OSError), socket.create_connection((app_ip(mesh), 8080), timeout=3):
        pass
    proxy = mesh.proxy("app")
    app_port = proxy["inbound"][0]["appPort"]
    assert proxy["inbound"] == [{"port": 7070, "appPort": app_port}, {"port": 8443, "appPort": app_port}]
    assert [lst["port"] for lst in proxy["listeners"]] == [7070, 8443]
    assert mesh.instance("app")["ports"] == [{"port": 8080, "appPort": app_port}]


def test_strict_and_authorization_apply_on_ingress_ports(mesh: MeshProcess) -> None:
    strict = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default}
    spec:
      mtls: {mode: STRICT}
    """
    with applied(mesh, strict):
        assert mesh.curl_direct("legacy", "http://app/").status == 0  # no plaintext chain
        assert peer_of(echo_body(mesh.curl("sleep", "http://app/"))) == f"{TD}/ns/default/sa/sleep"
    deny = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: deny-sleep}
    spec:
      selector: {matchLabels: {app: app}}
      action: DENY
      rules:
      - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
        to: [{operation: {ports: ["7070"]}}]
    """
    with applied(mesh, deny):
        resp = mesh.curl("sleep", "http://app/")
        assert resp.status == 403, resp
        assert echo_body(mesh.curl_direct("legacy", "http://app/"))["workload"] == "app"
    assert echo_body(mesh.curl("sleep", "http://app/"))["workload"] == "app"


def test_ingress_tls_port_terminates_with_the_given_files(mesh: MeshProcess, ca: t.Pem) -> None:
    status, _, raw = t.https_get(f"{app_ip(mesh)}:8443", SNI, "/tls", ca)
    assert status == 200
    assert b'"workload": "app"' in raw or b'"workload":"app"' in raw
    # Plaintext on the TLS port finds no filter chain: the connection closes without an HTTP answer.
    with socket.create_connection((app_ip(mesh), 8443), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        try:
            data = s.recv(1024)
        except OSError:
            data = b""
    assert not data.startswith(b"HTTP/")


def test_ingress_tls_certificate_is_the_configured_one(mesh: MeshProcess, ca: t.Pem, tmp_path: Path) -> None:
    """A client trusting only the test CA completes the handshake: the served chain is the file's."""
    ctx = ssl.create_default_context(cadata=ca.cert.decode())
    with (
        socket.create_connection((app_ip(mesh), 8443), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        cert = tls.getpeercert()
    assert ("DNS", SNI) in cert.get("subjectAltName", ())
