"""DestinationRule `trafficPolicy.tunnel` with real Envoy: TCP to a destination whose rule has a tunnel
reaches the rule's host (an external forward proxy) inside an HTTP CONNECT naming targetHost:targetPort.

Ported from tests/integration/pilot/tunneling_test.go (the `sidecar` case: a VirtualService `tcp` rule
sends the external app's port to a subset of the forward proxy whose tunnel names the app; the proxy's
port is `http-connect`, HTTP/1.1 without TLS), plus the top-level tunnel of a destination reached
directly, Istio's "tunnel only TCP" (an HTTP request to the proxy host is not tunneled), and POST, which
Isthmus refuses. The forward proxy and the target are Python servers on 127.0.0.1; the proxy resolves the
target's name itself, as an external proxy would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied

pytestmark = pytest.mark.e2e

TARGET_NAME = "target.external"
TARGET_PORT = 7000

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
"""


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _accept_loop(sock: socket.socket, handle: object) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()  # type: ignore[arg-type]


def _read_head(conn: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """An HTTP/1.1 request head: (request line, lower-cased headers, bytes read past the head)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    return lines[0], headers, rest


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class EchoTarget:
    """The app behind the forward proxy: answers each line with `target <line>`."""

    def __init__(self) -> None:
        self.sock = _listener()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=_accept_loop, args=(self.sock, self._handle), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn, conn.makefile("rb") as lines:
            try:
                for line in lines:
                    conn.sendall(b"target " + line)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class ForwardProxy:
    """An external HTTP/1.1 forward proxy: a CONNECT opens a tunnel to the target it names (names resolved
    through `hosts`); any other request is answered directly with what it was. Listens on two ports (one
    declared `http-connect`, one `tcp-connect`) and records every request line and its Host."""

    hosts: dict[str, tuple[str, int]]
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.socks = [_listener(), _listener()]
        self.http_port, self.tcp_port = (s.getsockname()[1] for s in self.socks)
        self.lock = threading.Lock()
        for s in self.socks:
            threading.Thread(target=_accept_loop, args=(s, self._handle), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        request_line, headers, rest = _read_head(conn)
        method, _, target = request_line.partition(" ")
        target = target.rsplit(" ", 1)[0]
        with self.lock:
            self.requests.append({"method": method, "target": target, "host": headers.get("host", "")})
        if method != "CONNECT":
            body = json.dumps({"proxiedMethod": method, "target": target}).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            conn.close()
            return
        address = self.hosts.get(target)
        if address is None:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        upstream = socket.create_connection(address, timeout=10)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)

    def connects(self) -> list[str]:
        with self.lock:
            return [r["target"] for r in self.requests if r["method"] == "CONNECT"]

    def close(self) -> None:
        for s in self.socks:
            s.close()


@dataclass
class Env:
    mesh: MeshProcess
    proxy: ForwardProxy
    target: EchoTarget


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    target = EchoTarget()
    proxy = ForwardProxy(hosts={f"{TARGET_NAME}:{TARGET_PORT}": ("127.0.0.1", target.port)})
    try:
        with MeshProcess.from_yaml(tmp_path_factory.mktemp("dr-tunnel"), MESH) as mesh:
            yield Env(mesh, proxy, target)
    finally:
        proxy.close()
        target.close()


def proxy_entries(env: Env) -> str:
    """The forward proxy as a ServiceEntry (its HTTP/1.1 CONNECT port as Istio's test declares it, and a
    TCP port) and the external app, whose own address nothing serves: only the tunnel reaches it."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: forward-proxy}}
    spec:
      hosts: [forward-proxy.external]
      location: MESH_EXTERNAL
      resolution: STATIC
      ports:
      - {{name: http-connect, number: {env.proxy.http_port}, protocol: HTTP}}
      - {{name: tcp-connect, number: {env.proxy.tcp_port}, protocol: TCP}}
      endpoints: [{{address: 127.0.0.1}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: external-app}}
    spec:
      hosts: [app.external]
      location: MESH_EXTERNAL
      resolution: STATIC
      ports: [{{name: tcp, number: {TARGET_PORT}, protocol: TCP}}]
      endpoints: [{{address: 127.0.0.2}}]
    """


def tcp_line(env: Env, authority: str, line: str) -> str:
    resp = sync.request(f"tcp://{authority}", proxy=env.mesh.proxy_url("client"), body=line, timeout=10)
    assert resp.status == 200, (resp.status, resp.text)
    return resp.text.strip()


def test_vs_tcp_route_to_a_proxy_subset_is_tunneled(env: Env) -> None:
    """Istio's sidecar tunneling case: the app's TCP port routes to the proxy's subset whose tunnel names
    the app; the proxy receives `CONNECT target:port` and the bytes reach the app through it."""
    dr = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: forward-proxy}}
    spec:
      host: forward-proxy.external
      subsets:
      - name: app-tcp
        trafficPolicy:
          tunnel: {{targetHost: {TARGET_NAME}, targetPort: {TARGET_PORT}}}
    """
    vs = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: app-via-forward-proxy}}
    spec:
      hosts: [app.external]
      tcp:
      - match: [{{port: {TARGET_PORT}}}]
        route:
        - destination:
            host: forward-proxy.external
            subset: app-tcp
            port: {{number: {env.proxy.http_port}}}
    """
    before = len(env.proxy.connects())
    with applied(env.mesh, proxy_entries(env), dr, vs):
        assert tcp_line(env, f"app.external:{TARGET_PORT}", "hello") == "target hello"
        assert env.proxy.connects()[before:] == [f"{TARGET_NAME}:{TARGET_PORT}"]


def test_top_level_tunnel_of_a_tcp_destination(env: Env) -> None:
    """No VirtualService: TCP to the proxy host's TCP port takes the rule's top-level tunnel."""
    dr = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: forward-proxy}}
    spec:
      host: forward-proxy.external
      trafficPolicy:
        tunnel: {{protocol: CONNECT, targetHost: {TARGET_NAME}, targetPort: {TARGET_PORT}}}
    """
    before = len(env.proxy.connects())
    with applied(env.mesh, proxy_entries(env), dr):
        assert tcp_line(env, f"forward-proxy.external:{env.proxy.tcp_port}", "one") == "target one"
        assert tcp_line(env, f"forward-proxy.external:{env.proxy.tcp_port}", "two") == "target two"
        assert env.proxy.connects()[before:] == [f"{TARGET_NAME}:{TARGET_PORT}"] * 2


def test_http_to_the_tunnel_host_is_not_tunneled(env: Env) -> None:
    """istiod tunnels only TCP listeners: an HTTP request to the same host goes to the proxy as it is."""
    dr = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: forward-proxy}}
    spec:
      host: forward-proxy.external
      trafficPolicy:
        tunnel: {{targetHost: {TARGET_NAME}, targetPort: {TARGET_PORT}}}
    """
    before = len(env.proxy.connects())
    with applied(env.mesh, proxy_entries(env), dr):
        resp = env.mesh.curl("client", f"http://forward-proxy.external:{env.proxy.http_port}/plain")
        assert resp.status == 200, (resp.status, resp.text)
        assert json.loads(resp.body) == {"proxiedMethod": "GET", "target": "/plain"}
        assert env.proxy.connects()[before:] == []


def test_post_tunnels_are_refused(env: Env) -> None:
    dr = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: forward-proxy-post}}
    spec:
      host: forward-proxy.external
      subsets:
      - name: post
        trafficPolicy:
          tunnel: {{protocol: POST, targetHost: {TARGET_NAME}, targetPort: {TARGET_PORT}}}
    """
    out = env.mesh.apply(textwrap.dedent(dr), expect_ok=False)
    assert out["code"] != 200, out
    assert "spec.subsets[0].trafficPolicy.tunnel.protocol" in json.dumps(out), out
    assert "POST" in json.dumps(out), out
