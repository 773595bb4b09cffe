"""An ingress gateway's TCP routes to a mesh service's port of sniffed protocol, with real Envoy.

istiod's gateway clusters offer the mesh's TCP ALPN (`istio`) and its istio.alpn filter turns it into
`istio-http/*` for HTTP requests only, so a gateway `tcp` route reaches an auto-detected port's TCP chain
on the server sidecar. Here the cluster of an auto port offers the HTTP ALPN (for the gateway's HTTP
routes to that port), so the gateway's tcp_proxy must override it with `istio`, or the server sidecar
takes the raw bytes to its HTTP chain (400). Covered: a plain TCP server and a TLS server terminated at
the gateway, each to the auto port `db:9002` and, as the control, to the `tcp-` named port `db:9001`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess

pytestmark = pytest.mark.e2e

HOST = "tcp.example.com"
# Gateway server ports (above 1024, so served as declared on the gateway's pod address).
TCP_AUTO, TCP_NAMED, TLS_AUTO, TLS_NAMED = 31400, 31401, 31443, 31444


def mesh_yaml(secret: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp-db, port: 9001}}, {{name: db, port: 9002}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: db, labels: {{app: db, version: v1}}}}
spec: {{ports: [9001, 9002], command: [isthmus, echo, --tcp, "9001", --tcp, "9002"]}}
---
{secret}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {TCP_AUTO}, name: tcp-auto, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {TCP_NAMED}, name: tcp-named, protocol: TCP}}
    hosts: ["*"]
  - port: {{number: {TLS_AUTO}, name: tls-auto, protocol: TLS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: tcp-cert}}
  - port: {{number: {TLS_NAMED}, name: tls-named, protocol: TLS}}
    hosts: [{HOST}]
    tls: {{mode: SIMPLE, credentialName: tcp-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db-plain}}
spec:
  hosts: ["*"]
  gateways: [tcp-gw]
  tcp:
  - match: [{{port: {TCP_AUTO}}}]
    route: [{{destination: {{host: db, port: {{number: 9002}}}}}}]
  - match: [{{port: {TCP_NAMED}}}]
    route: [{{destination: {{host: db, port: {{number: 9001}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db-tls}}
spec:
  hosts: [{HOST}]
  gateways: [tcp-gw]
  tcp:
  - match: [{{port: {TLS_AUTO}}}]
    route: [{{destination: {{host: db, port: {{number: 9002}}}}}}]
  - match: [{{port: {TLS_NAMED}}}]
    route: [{{destination: {{host: db, port: {{number: 9001}}}}}}]
"""


@pytest.fixture(scope="module")
def ca() -> t.Pem:
    return t.make_ca()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, ca: t.Pem) -> Iterator[MeshProcess]:
    secret = t.tls_secret("tcp-cert", t.issue(ca, [HOST]))
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("gw-tcp-auto"), mesh_yaml(secret)) as m:
        yield m


def _read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _address(mesh: MeshProcess, port: int) -> tuple[str, int]:
    host, _, real = mesh.gateway_address(port).rpartition(":")
    return host, int(real)


def plain_line(mesh: MeshProcess, port: int, line: str, timeout: float = 5.0) -> str:
    """One line through the gateway's TCP server; the echo's answer, '' when the connection closes first."""
    with socket.create_connection(_address(mesh, port), timeout=timeout) as s:
        s.sendall(f"{line}\n".encode())
        return _read_line(s).decode(errors="replace").strip()


def tls_line(mesh: MeshProcess, ca: t.Pem, port: int, line: str, timeout: float = 5.0) -> str:
    """The same through a TLS server the gateway terminates (SNI HOST)."""
    ctx = ssl.create_default_context(cadata=ca.cert.decode())
    with (
        socket.create_connection(_address(mesh, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST) as s,
    ):
        s.sendall(f"{line}\n".encode())
        return _read_line(s).decode(errors="replace").strip()


def test_gateway_tcp_server_reaches_an_auto_port_over_mesh_mtls(mesh: MeshProcess) -> None:
    # The control first: the `tcp-` port's cluster already offers the TCP ALPN.
    assert plain_line(mesh, TCP_NAMED, "to named") == "v1 to named"
    # The auto port: the server sidecar must see the tunnel as TCP, not parse the line as HTTP.
    assert plain_line(mesh, TCP_AUTO, "to auto") == "v1 to auto"


def test_gateway_terminated_tls_server_reaches_an_auto_port_over_mesh_mtls(
    mesh: MeshProcess, ca: t.Pem, tmp_path: Path
) -> None:
    assert tls_line(mesh, ca, TLS_NAMED, "tls to named") == "v1 tls to named"
    assert tls_line(mesh, ca, TLS_AUTO, "tls to auto") == "v1 tls to auto"
