"""ProxyConfig proxyHeaders preserveHttp1HeaderCase, xForwardedPort and xForwardedHost on real Envoy.

Istio's own test (tests/integration/pilot, the preserveHttp1HeaderCase case) sends `X-Custom-Header`
between two echo workloads once MeshConfig turns the setting on. The echo app here lower-cases header
names, so the backend is a tiny raw-socket HTTP/1.1 server that answers with the request's header block
as it received it, byte for byte, and sends a mixed-case header back: the case is checked both ways,
client -> client sidecar -> server sidecar -> app and back, on a raw HTTP/1.1 connection.

x-forwarded-port: Envoy appends it only where the HCM uses the remote address (gateways, in Istio as
here; sidecars do not), with the port the gateway listened on. x-forwarded-host: istiod sets
append_x_forwarded_host on the sidecar's passthrough route only, where no host rewrite happens, so Envoy
never adds the header; the route Envoy holds is checked instead.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

RAW_HOST = "raw.default.svc.cluster.local"

# The raw backend: each request's header block is the response body; the response carries a
# mixed-case header of its own.
RAW_SERVER = textwrap.dedent(
    """
    import os, socket, threading

    def serve(conn):
        with conn:
            buf = b""
            while True:
                while b"\\r\\n\\r\\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                body = head + b"\\r\\n"
                conn.sendall(
                    b"HTTP/1.1 200 OK\\r\\nX-Raw-ReSpOnSe: yes\\r\\nContent-Type: text/plain\\r\\n"
                    + b"Content-Length: " + str(len(body)).encode() + b"\\r\\n\\r\\n" + body
                )

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(os.environ["PORT"])))
    server.listen(64)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)

MESH = f"""
apiVersion: v1
kind: Service
metadata: {{name: client}}
spec:
  selector: {{app: client}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: client, labels: {{app: client}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: raw}}
spec:
  selector: {{app: raw}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: raw, labels: {{app: raw}}}}
spec: {{ports: [8080], command: {json.dumps([sys.executable, "-c", RAW_SERVER])}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: client-via-gw}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: client.default.svc.cluster.local}}}}]}}]
"""


def proxy_headers(headers: dict) -> str:
    spec = {"defaultConfig": {"proxyHeaders": headers}}
    return "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: " + json.dumps(
        spec
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("proxy-headers"), MESH) as m:
        yield m


def raw_exchange(mesh: MeshProcess, header: str) -> tuple[bytes, bytes]:
    """One raw HTTP/1.1 request through the client's sidecar (its outbound port, as an HTTP proxy) to the
    raw backend: the response's header block and its body (the request headers the app received)."""
    p = mesh.proxy("client")
    request = (
        f"GET http://{RAW_HOST}/ HTTP/1.1\r\nHost: {RAW_HOST}\r\n{header}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((p["ip"], p["outboundPort"]), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return head, body


def header_names(block: bytes) -> set[str]:
    return {line.split(b":", 1)[0].decode() for line in block.split(b"\r\n")[1:] if b":" in line}


def test_header_case_is_lowered_by_default(mesh: MeshProcess) -> None:
    head, received = raw_exchange(mesh, "X-MiXeD-CaSe: v1")
    assert "x-mixed-case" in header_names(received), received
    assert "x-raw-response" in header_names(head), head


def received_case(mesh: MeshProcess, name: str) -> tuple[bytes, bytes] | None:
    """The raw exchange, when the app received the header under exactly `name` (else None)."""
    head, received = raw_exchange(mesh, f"{name}: v1")
    return (head, received) if name in header_names(received) else None


def test_preserve_http1_header_case_both_ways(mesh: MeshProcess) -> None:
    """preserveHttp1HeaderCase: the HCMs (client outbound, server inbound) and the clusters between them
    (outbound to the server sidecar, inbound to the app) keep the name's case, requests and responses."""
    with applied(mesh, proxy_headers({"preserveHttp1HeaderCase": True})):
        head, _ = wait_for("the header's case to reach the app", lambda: received_case(mesh, "X-MiXeD-CaSe"))
        assert "X-Raw-ReSpOnSe" in header_names(head), head
    wait_for("lower case again once it is removed", lambda: received_case(mesh, "x-mixed-case"))


def gateway_forwarded_port(mesh: MeshProcess) -> str | None:
    address = mesh.gateway_address(80)
    resp = sync.request(f"http://{address}/", headers={"Host": "anything.example.com"})
    return echo_body(resp)["headers"].get("x-forwarded-port")


def test_x_forwarded_port_from_the_gateway(mesh: MeshProcess) -> None:
    """xForwardedPort: the gateway (use_remote_address) appends the port it listened on."""
    assert gateway_forwarded_port(mesh) is None
    listen_port = mesh.gateway_address(80).rsplit(":", 1)[1]
    with applied(mesh, proxy_headers({"xForwardedPort": {"enabled": True}})):
        assert wait_for("x-forwarded-port", lambda: gateway_forwarded_port(mesh)) == listen_port
    wait_for("no x-forwarded-port again", lambda: gateway_forwarded_port(mesh) is None)


def passthrough_route(mesh: MeshProcess) -> dict:
    p = mesh.proxy("client")
    dump = json.loads(
        sync.request(f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=dynamic_route_configs").body
    )
    for config in dump["configs"]:
        for vh in config["route_config"].get("virtual_hosts", []):
            for r in vh.get("routes", []):
                # Over VHDS the virtual host is named `http_proxy/allow_any`.
                if vh["name"].rsplit("/", 1)[-1] == r.get("name") == "allow_any":
                    return r["route"]
    raise AssertionError("no allow_any passthrough route in the client's routes")


def test_x_forwarded_host_on_the_passthrough_route(mesh: MeshProcess) -> None:
    """xForwardedHost: Envoy holds append_x_forwarded_host on the passthrough route (and accepts it)."""
    assert "append_x_forwarded_host" not in passthrough_route(mesh)
    with applied(mesh, proxy_headers({"xForwardedHost": {"enabled": True}})):
        assert wait_for(
            "append_x_forwarded_host", lambda: passthrough_route(mesh).get("append_x_forwarded_host")
        )
        # Traffic still flows through the sidecar with the setting on.
        head, _ = raw_exchange(mesh, "X-Probe: 1")
        assert head.startswith(b"HTTP/1.1 200")
