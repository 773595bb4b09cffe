"""Istio-style mTLS between two real Envoys whose certificates come from the mesh CA over SDS.

    client --HTTP--> Envoy B (sa/b, 127.78.0.3) ==mTLS==> Envoy A (sa/a, 127.78.0.2) --HTTP--> backend

Only the secrets are dynamic: listeners and clusters are static in hand-written bootstraps, whose
``sds-grpc`` cluster is the one `build_bootstrap(sds_socket=...)` generates. Each Envoy has its own
`SdsAgent` (key generated locally, CSR to the `CaServer` over TLS with the pod's token). Certificates
live 4 s and are rotated half way, so rotation goes on during the whole module; the last test checks
that it does so while a kept-alive connection and a streaming response stay open, without a failed
request and without a new upstream connection.

The event loop (CA server, agents, backend, Envoy processes) runs in one thread for the module; tests
drive it with `Mesh.run` and use blocking clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from cryptography import x509
from google.protobuf import json_format

from isthmus.agent.bootstrap import SDS_CLUSTER, build_bootstrap
from isthmus.agent.certs import build_csr
from isthmus.agent.envoy import EnvoyProcess
from isthmus.agent.sds import SdsAgent
from isthmus.mesh.addresses import free_port, free_ports
from isthmus.model.proxy import Proxy
from isthmus.security import sds as sds_config
from isthmus.security.ca import CertificateAuthority, cert_pem, generate_key, key_pem
from isthmus.security.ca_server import CaClient, CaServer, TokenRegistry
from isthmus.security.identity import spiffe_id

pytestmark = pytest.mark.e2e

T = TypeVar("T")

CA_IP, A_IP, B_IP = "127.78.0.1", "127.78.0.2", "127.78.0.3"
ID_A = spiffe_id("cluster.local", "default", "a")
ID_B = spiffe_id("cluster.local", "default", "b")
CERT_TTL = dt.timedelta(seconds=4)
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
TLS_SOCKET = "envoy.transport_sockets.tls"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def _json(message: Any, type_url: str) -> dict[str, Any]:
    return {"@type": type_url, **json_format.MessageToDict(message, preserving_proto_field_name=True)}


def _address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def _static_cluster(name: str, ip: str, port: int, transport_socket: dict[str, Any] | None = None) -> dict:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(ip, port)}}]}],
        },
    }
    if transport_socket is not None:
        cluster["transport_socket"] = transport_socket
    return cluster


def _hcm(
    stat_prefix: str, routes: list[dict[str, Any]], log_path: Path, log_format: str, **extra: Any
) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": FILE_LOG,
                        "path": str(log_path),
                        "log_format": {"text_format_source": {"inline_string": log_format}},
                    },
                }
            ],
            **extra,
        },
    }


def _route(prefix: str, cluster: str) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "0s"}}


def make_proxy(ip: str, name: str, sa: str) -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", ip, f"{name}-0", "default"),
        kind="sidecar",
        ip=ip,
        namespace="default",
        instance=f"{name}-0",
        workload=name,
        labels={"app": name},
        service_account=sa,
    )


def static_bootstrap(proxy: Proxy, admin_port: int, sds_socket: str, listeners: list, clusters: list) -> dict:
    """A bootstrap with inline listeners/clusters; only secrets are dynamic (SDS over `sds_socket`)."""
    generated = build_bootstrap(proxy, xds_address=("127.0.0.1", 1), sds_socket=sds_socket)
    [sds_cluster] = [c for c in generated["static_resources"]["clusters"] if c["name"] == SDS_CLUSTER]
    return {
        "node": {"id": proxy.id, "cluster": f"{proxy.workload}.{proxy.namespace}"},
        "admin": {"address": _address(proxy.ip, admin_port)},
        "static_resources": {"listeners": listeners, "clusters": [sds_cluster, *clusters]},
    }


# -- the backend ----------------------------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"path": request.path_qs, "xfcc": request.headers.get("x-forwarded-client-cert", "")}
    )


async def _stream(request: web.Request) -> web.StreamResponse:
    count = int(request.query.get("count", "10"))
    interval = float(request.query.get("interval", "0.1"))
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(count):
        await resp.write(f"line {i}\n".encode())
        await asyncio.sleep(interval)
    await resp.write_eof()
    return resp


# -- the mesh ---------------------------------------------------------------------------------------


class Mesh:
    """CA server, two agents, two Envoys and a backend, in an event loop thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sds-mtls-loop", daemon=True)
        self.envoys: list[EnvoyProcess] = []
        self.agents: dict[str, SdsAgent] = {}
        self.clients: list[CaClient] = []
        self.ca_server: CaServer | None = None
        self.runner: web.AppRunner | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Mesh:
        self.thread.start()
        self.run(self._start(), timeout=90)
        return self

    def stop(self) -> None:
        try:
            self.run(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    async def _start(self) -> None:
        t0 = time.perf_counter()
        self.ca = CertificateAuthority.load_or_create(self.workdir / "ca")
        self.timings = {"ca_create_s": time.perf_counter() - t0}
        self.tokens = TokenRegistry()
        self.ca_server = CaServer(self.ca, self.tokens)
        target = await self.ca_server.start(CA_IP, 0)

        app = web.Application()
        app.router.add_get("/stream", _stream)
        app.router.add_route("*", "/{tail:.*}", _echo)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.backend_port = free_port("127.0.0.1")
        await web.TCPSite(self.runner, "127.0.0.1", self.backend_port).start()

        for name in ("a", "b"):
            token = self.tokens.issue(f"{name}-0", "default", name)
            client = CaClient(target, token, root_cert_pem=self.ca.root_cert_pem)
            self.clients.append(client)
            agent = SdsAgent(
                spiffe_id("cluster.local", "default", name),
                client,
                self.workdir / name,
                ttl=CERT_TTL,
                rotation_ratio=0.5,
            )
            t0 = time.perf_counter()
            await agent.start()
            self.timings[f"agent_{name}_first_cert_s"] = time.perf_counter() - t0
            self.agents[name] = agent

        self.port_a, self.admin_a = free_ports(A_IP, 2)
        self.port_b, self.admin_b = free_ports(B_IP, 2)
        self.cluster_b = f"outbound|{self.port_a}||a.default.svc.cluster.local"
        self.cluster_wrong = f"outbound|{self.port_a}||wrong-san"

        downstream = sds_config.istio_mutual_downstream_tls_context()
        listener_a = {
            "name": f"{A_IP}_{self.port_a}",
            "address": _address(A_IP, self.port_a),
            "filter_chains": [
                {
                    "transport_socket": {
                        "name": TLS_SOCKET,
                        "typed_config": _json(downstream, DOWNSTREAM_TLS),
                    },
                    "filters": [
                        _hcm(
                            f"inbound_{self.port_a}",
                            [_route("/", f"inbound|{self.port_a}||")],
                            self.workdir / "a" / "access.log",
                            "peer=%DOWNSTREAM_PEER_URI_SAN% path=%REQ(:PATH)% code=%RESPONSE_CODE%\n",
                            forward_client_cert_details="SANITIZE_SET",
                            set_current_client_cert_details={"uri": True},
                        )
                    ],
                }
            ],
        }
        bootstrap_a = static_bootstrap(
            make_proxy(A_IP, "a", "a"),
            self.admin_a,
            str(self.agents["a"].socket_path),
            [listener_a],
            [_static_cluster(f"inbound|{self.port_a}||", "127.0.0.1", self.backend_port)],
        )

        sni = f"outbound_.{self.port_a}_._.a.default.svc.cluster.local"
        upstream = sds_config.istio_mutual_upstream_tls_context([ID_A], sni=sni)
        wrong = sds_config.istio_mutual_upstream_tls_context(
            [spiffe_id("cluster.local", "default", "nobody")]
        )
        listener_b = {
            "name": f"{B_IP}_{self.port_b}",
            "address": _address(B_IP, self.port_b),
            "filter_chains": [
                {
                    "filters": [
                        _hcm(
                            "outbound",
                            [_route("/wrong-san", self.cluster_wrong), _route("/", self.cluster_b)],
                            self.workdir / "b" / "access.log",
                            "upstream_peer=%UPSTREAM_PEER_URI_SAN% path=%REQ(:PATH)% code=%RESPONSE_CODE%\n",
                        )
                    ]
                }
            ],
        }
        bootstrap_b = static_bootstrap(
            make_proxy(B_IP, "b", "b"),
            self.admin_b,
            str(self.agents["b"].socket_path),
            [listener_b],
            [
                _static_cluster(
                    self.cluster_b,
                    A_IP,
                    self.port_a,
                    {"name": TLS_SOCKET, "typed_config": _json(upstream, UPSTREAM_TLS)},
                ),
                _static_cluster(
                    self.cluster_wrong,
                    A_IP,
                    self.port_a,
                    {"name": TLS_SOCKET, "typed_config": _json(wrong, UPSTREAM_TLS)},
                ),
            ],
        )
        for name, bootstrap in (("a", bootstrap_a), ("b", bootstrap_b)):
            proxy = make_proxy(A_IP if name == "a" else B_IP, name, name)
            envoy = EnvoyProcess(proxy, bootstrap, self.workdir / name, drain_time_s=1)
            self.envoys.append(envoy)
            await envoy.start()
        for envoy in self.envoys:
            # LIVE only once the static listeners/clusters got their SDS secrets.
            await envoy.wait_ready(timeout=30)
        self.envoy_a, self.envoy_b = self.envoys

    async def _stop(self) -> None:
        for envoy in self.envoys:
            await envoy.stop()
        for agent in self.agents.values():
            await agent.stop()
        for client in self.clients:
            await client.close()
        if self.ca_server is not None:
            await self.ca_server.stop()
        if self.runner is not None:
            await self.runner.cleanup()

    # -- helpers (blocking) ------------------------------------------------------------------------

    def stats(self, envoy: EnvoyProcess, pattern: str) -> dict[str, int]:
        async def get() -> dict[str, int]:
            async with envoy.admin() as admin:
                return await admin.stats(pattern)

        return self.run(get())

    def admin_json(self, envoy: EnvoyProcess, path: str) -> Any:
        async def get() -> Any:
            async with envoy.admin() as admin:
                return await admin.get_json(path)

        return self.run(get())

    def wait(self, what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
        t0 = time.monotonic()
        while not check():
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)
        return time.monotonic() - t0

    def acked(self, name: str, timeout: float = 10.0) -> int:
        """Wait until Envoy `name` ACKed the agent's current workload certificate; returns its serial."""
        agent = self.agents[name]

        async def wait() -> int:
            await agent.wait_for_ack("default", timeout=timeout)
            cert = agent.current_certificate()
            assert cert is not None
            return cert.serial_number

        return self.run(wait(), timeout=timeout + 5)

    def envoy_serial(self, envoy: EnvoyProcess) -> int:
        """The serial of the workload certificate Envoy serves, from admin /certs."""
        certs = self.admin_json(envoy, "/certs")["certificates"]
        serials = {int(c["serial_number"], 16) for entry in certs for c in entry.get("cert_chain", [])}
        assert len(serials) == 1, certs
        return serials.pop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    m = Mesh(tmp_path_factory.mktemp("sds-mtls"))
    try:
        m.start()
    except BaseException:
        m.stop()
        raise
    yield m
    m.stop()


def get(ip: str, port: int, path: str, conn: http.client.HTTPConnection | None = None):
    conn = conn or http.client.HTTPConnection(ip, port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read(), conn


def read_log(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def tls_client(
    root_pem: bytes, cert_chain: bytes | None = None, key: bytes | None = None, tmp: Path | None = None
):
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    ctx.check_hostname = False  # workload certificates carry a SPIFFE URI, no DNS name
    if cert_chain is not None and key is not None and tmp is not None:
        (tmp / "client.pem").write_bytes(cert_chain)
        (tmp / "client.key").write_bytes(key)
        ctx.load_cert_chain(tmp / "client.pem", tmp / "client.key")
    return ctx


def tls_request(ctx: ssl.SSLContext, ip: str, port: int, path: str = "/") -> tuple[bytes, bytes | None]:
    """(response bytes, peer certificate DER) of one HTTP/1.1 request over TLS; raises on TLS errors."""
    with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        peer = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data, peer


# -- tests ------------------------------------------------------------------------------------------


def test_request_crosses_mtls_with_spiffe_identities(mesh: Mesh) -> None:
    status, _, body, conn = get(B_IP, mesh.port_b, "/hello")
    conn.close()
    assert status == 200, body
    doc = json.loads(body)
    # Envoy A put the verified client certificate's URI SAN in XFCC (SANITIZE_SET): it is B's identity.
    assert f"URI={ID_B}" in doc["xfcc"], doc
    # Both ends logged the peer's SPIFFE id.
    mesh.wait(
        "A's access log",
        lambda: f"peer={ID_B} path=/hello code=200" in read_log(mesh.workdir / "a" / "access.log"),
        10,
    )
    mesh.wait(
        "B's access log",
        lambda: f"upstream_peer={ID_A} path=/hello code=200" in read_log(mesh.workdir / "b" / "access.log"),
        10,
    )
    a = mesh.stats(mesh.envoy_a, rf"^listener\.{A_IP}_{mesh.port_a}\.ssl\.handshake$")
    b = mesh.stats(mesh.envoy_b, r"\.ssl\.handshake$")
    assert a[f"listener.{A_IP}_{mesh.port_a}.ssl.handshake"] >= 1
    assert b[f"cluster.{mesh.cluster_b}.ssl.handshake"] >= 1


def test_admin_certs_show_the_workload_identity(mesh: Mesh) -> None:
    for name, envoy, identity in (("a", mesh.envoy_a, ID_A), ("b", mesh.envoy_b, ID_B)):
        certs = mesh.admin_json(envoy, "/certs")["certificates"]
        chains = [c for entry in certs for c in entry.get("cert_chain", [])]
        cas = [c for entry in certs for c in entry.get("ca_cert", [])]
        assert chains and cas, certs
        for cert in chains:
            assert cert["subject_alt_names"] == [{"uri": identity}], cert
        root_serial = mesh.ca.roots[0].serial_number
        assert {int(c["serial_number"], 16) for c in cas} == {root_serial}
        # What Envoy serves is what the agent holds (give a rotation in flight time to land).
        mesh.wait(
            f"Envoy {name} to serve the agent's certificate",
            lambda envoy=envoy, name=name: mesh.envoy_serial(envoy) == mesh.acked(name),
            10,
            interval=0.2,
        )


def test_client_without_certificate_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    stat = f"listener.{A_IP}_{mesh.port_a}.ssl.fail_verify_no_cert"
    before = mesh.stats(mesh.envoy_a, r"ssl\.fail_verify_no_cert$").get(stat, 0)
    ctx = tls_client(mesh.ca.root_cert_pem)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        data, _ = tls_request(ctx, A_IP, mesh.port_a)
        if not data:  # the alert may surface as a bare close
            raise ConnectionError("closed without a response")
    mesh.wait(
        "ssl.fail_verify_no_cert",
        lambda: mesh.stats(mesh.envoy_a, r"ssl\.fail_verify_no_cert$").get(stat, 0) > before,
        10,
    )

    # Plaintext is refused too (no filter chain accepts it).
    with socket.create_connection((A_IP, mesh.port_a), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            assert not s.recv(1024).startswith(b"HTTP/")


def test_certificate_from_another_ca_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    rogue = CertificateAuthority.create_self_signed(key_type="ec")
    key = generate_key("ec")
    bundle = rogue.sign_csr(build_csr(key, ID_B), identity=ID_B)
    ctx = tls_client(mesh.ca.root_cert_pem, bundle.cert_chain_pem, key_pem(key), tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        data, _ = tls_request(ctx, A_IP, mesh.port_a)
        if not data:
            raise ConnectionError("closed without a response")
    stat = f"listener.{A_IP}_{mesh.port_a}.ssl.fail_verify_error"
    mesh.wait(
        "ssl.fail_verify_error",
        lambda: mesh.stats(mesh.envoy_a, r"ssl\.fail_verify_error$").get(stat, 0) >= 1,
        10,
    )


def test_mesh_client_certificate_is_accepted_directly(mesh: Mesh, tmp_path: Path) -> None:
    cert_b = mesh.agents["b"].current_certificate()
    assert cert_b is not None
    ctx = tls_client(mesh.ca.root_cert_pem, cert_b.cert_chain_pem, cert_b.private_key_pem, tmp_path)
    data, peer = tls_request(ctx, A_IP, mesh.port_a, "/direct")
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert f"URI={ID_B}".encode() in data
    assert peer is not None
    assert mesh.ca.verify_workload_certificate(cert_pem(x509.load_der_x509_certificate(peer))).uri == ID_A


def test_server_identity_mismatch_is_refused_by_the_client(mesh: Mesh) -> None:
    status, _, body, conn = get(B_IP, mesh.port_b, "/wrong-san")
    conn.close()
    assert status == 503, body
    stat = f"cluster.{mesh.cluster_wrong}.ssl.fail_verify_san"
    assert mesh.stats(mesh.envoy_b, r"ssl\.fail_verify_san$").get(stat, 0) >= 1


def test_rotation_keeps_connections_and_traffic_flowing(mesh: Mesh, tmp_path: Path) -> None:
    agent_a, agent_b = mesh.agents["a"], mesh.agents["b"]
    first_serial_a = mesh.acked("a")
    mesh.acked("b")

    stream_lines: list[tuple[float, bytes]] = []
    stream_error: list[BaseException] = []
    stream_started = threading.Event()

    def stream() -> None:
        try:
            conn = http.client.HTTPConnection(B_IP, mesh.port_b, timeout=20)
            conn.request("GET", "/stream?count=40&interval=0.25")
            resp = conn.getresponse()
            assert resp.status == 200
            while line := resp.readline():
                stream_lines.append((time.monotonic(), line))
                stream_started.set()
            conn.close()
        except BaseException as e:  # reported by the main thread
            stream_error.append(e)
            stream_started.set()

    results: list[tuple[int, int]] = []  # (status, id of the socket used)
    errors: list[BaseException] = []
    stop = threading.Event()
    first_response = threading.Event()

    def keepalive() -> None:
        conn = http.client.HTTPConnection(B_IP, mesh.port_b, timeout=10)
        i = 0
        try:
            while not stop.is_set():
                conn.request("GET", f"/keepalive?i={i}")
                resp = conn.getresponse()
                body = resp.read()
                results.append((resp.status, id(conn.sock)))
                if resp.status != 200 or f"URI={ID_B}" not in json.loads(body)["xfcc"]:
                    errors.append(AssertionError(f"request {i}: {resp.status} {body[:200]!r}"))
                first_response.set()
                i += 1
                time.sleep(0.05)
        except BaseException as e:
            errors.append(e)
            first_response.set()
        finally:
            conn.close()

    t_stream = threading.Thread(target=stream, daemon=True)
    t_keep = threading.Thread(target=keepalive, daemon=True)
    t_stream.start()
    assert stream_started.wait(10) and not stream_error, stream_error
    t_keep.start()
    assert first_response.wait(10) and not errors, errors

    # Baseline once both connections (client->B and B->A) exist.
    cx = (
        rf"^(cluster\.{re.escape(mesh.cluster_b)}\.upstream_cx_(total|destroy)"
        rf"|listener\.{re.escape(A_IP)}_{mesh.port_a}\.downstream_cx_(total|destroy)"
        r"|sds\.default\.update_success)$"
    )
    before_b = mesh.stats(mesh.envoy_b, cx)
    before_a = mesh.stats(mesh.envoy_a, cx)
    rotations = {n: a.stats.rotations for n, a in mesh.agents.items()}
    t0 = time.monotonic()

    # Two rotations of each side happen while both connections are busy; every one is pushed to
    # and applied by the Envoy (ACK), then the streaming response runs to its end.
    mesh.wait(
        "two rotations on each side",
        lambda: all(a.stats.rotations >= rotations[n] + 2 for n, a in mesh.agents.items()),
        15,
    )
    serial_a = mesh.acked("a")
    mesh.acked("b")
    rotated_in = time.monotonic() - t0
    t_stream.join(20)
    assert not t_stream.is_alive()
    after_b = mesh.stats(mesh.envoy_b, cx)
    after_a = mesh.stats(mesh.envoy_a, cx)
    window = time.monotonic() - t0
    stop.set()
    t_keep.join(10)

    assert not stream_error, stream_error
    assert not errors, errors[:3]
    assert [line for _, line in stream_lines] == [f"line {i}\n".encode() for i in range(40)]
    assert all(status == 200 for status, _ in results)
    assert len({sock for _, sock in results}) == 1, "the kept-alive client connection was reopened"
    assert len(results) > 40
    # No connection between B and A was opened or closed while certificates rotated under them
    # (the first ones, established with certificates that expired meanwhile, are still in use)...
    for key in (
        f"cluster.{mesh.cluster_b}.upstream_cx_total",
        f"cluster.{mesh.cluster_b}.upstream_cx_destroy",
    ):
        assert after_b[key] == before_b[key], (key, before_b, after_b)
    for key in (
        f"listener.{A_IP}_{mesh.port_a}.downstream_cx_total",
        f"listener.{A_IP}_{mesh.port_a}.downstream_cx_destroy",
    ):
        assert after_a[key] == before_a[key], (key, before_a, after_a)
    # ...while both Envoys applied every new certificate (SDS updates accepted, none rejected).
    updates_a = after_a["sds.default.update_success"] - before_a["sds.default.update_success"]
    updates_b = after_b["sds.default.update_success"] - before_b["sds.default.update_success"]
    assert updates_a >= 2 and updates_b >= 2
    assert serial_a != first_serial_a
    assert agent_a.stats.nacks == 0 and agent_b.stats.nacks == 0
    assert agent_a.stats.renew_failures == 0 and agent_b.stats.renew_failures == 0

    # A new connection is served with A's current certificate.
    cert_b = agent_b.current_certificate()
    assert cert_b is not None
    ctx = tls_client(mesh.ca.root_cert_pem, cert_b.cert_chain_pem, cert_b.private_key_pem, tmp_path)
    before_connect = mesh.acked("a")
    data, peer = tls_request(ctx, A_IP, mesh.port_a, "/after-rotation")
    assert data.startswith(b"HTTP/1.1 200") and peer is not None
    peer_serial = x509.load_der_x509_certificate(peer).serial_number
    assert peer_serial in {before_connect, mesh.acked("a")}
    assert peer_serial != first_serial_a

    # How long a rotation takes to reach Envoy: new key + CSR + CA over TLS + SDS push + Envoy ACK.
    async def rotate_and_ack() -> tuple[float, float]:
        t = time.perf_counter()
        await agent_a.rotate_now()
        issued = time.perf_counter() - t
        await agent_a.wait_for_ack("default", timeout=10)
        return issued, time.perf_counter() - t

    issued_s, acked_s = mesh.run(rotate_and_ack())
    print(
        f"\nwindow {window:.1f}s (2 rotations each within {rotated_in:.1f}s): {len(results)} kept-alive "
        f"requests on one connection, {len(stream_lines)} streamed lines, SDS updates A {updates_a} "
        f"B {updates_b}, upstream connections opened 0; rotate_now: issued in {issued_s * 1000:.1f} ms, "
        f"ACKed by Envoy in {acked_s * 1000:.1f} ms; setup {mesh.timings}"
    )
