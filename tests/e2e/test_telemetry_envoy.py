"""Telemetry from real Envoys: gRPC access logs -> Istio metrics, access-log lines, Zipkin traces.

    test client --HTTP--> client sidecar (127.79.0.10:15001, outbound, reporter=source)
                 ==mTLS==> server sidecar (127.79.0.11:8080, inbound, reporter=destination)
                 --HTTP--> backend app (127.0.0.1)
    test client --TCP--> client sidecar (127.79.0.10:19000, tcp_proxy) --> TCP echo (127.79.0.11:9000)

Bootstraps are hand-written (static listeners and clusters, no xDS); their HCMs and tcp_proxy use the
telemetry package's loggers, tracer and gRPC stats filter, and its bootstrap clusters point at a test
gRPC server carrying `Telemetry.grpc_handlers()` and an aiohttp app carrying `Telemetry.add_routes`.
Certificates are static (inline), issued by a throwaway mesh CA with SPIFFE identities.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format

from isthmus.agent.certs import build_csr
from isthmus.agent.envoy import EnvoyProcess
from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.addresses import free_ports
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.security.ca import CertificateAuthority, generate_key, key_pem
from isthmus.telemetry import Telemetry, istio
from isthmus.telemetry import envoy as tenvoy
from isthmus.telemetry.resolver import ServiceInfo, StaticResolver, Workload

pytestmark = pytest.mark.e2e

CLIENT_IP, SERVER_IP = "127.79.0.10", "127.79.0.11"
OUT_PORT, IN_PORT, TCP_OUT_PORT, TCP_PORT = 15001, 8080, 19000, 9000
TD = "cluster.local"
ID_CLIENT = f"spiffe://{TD}/ns/default/sa/client"
ID_SERVER = f"spiffe://{TD}/ns/default/sa/backend"
HOST = "backend.default.svc.cluster.local"
TCP_HOST = "tcp-echo.default.svc.cluster.local"
OUT_CLUSTER = f"outbound|8080||{HOST}"
TCP_CLUSTER = f"outbound|9000||{TCP_HOST}"
N = 20
INBOUND, OUTBOUND = 1, 2  # envoy.config.core.v3.TrafficDirection
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

CLIENT = Proxy(
    id=Proxy.node_id("sidecar", CLIENT_IP, "client-0", "default"),
    kind="sidecar",
    ip=CLIENT_IP,
    namespace="default",
    instance="client-0",
    workload="client",
    labels={"app": "client", "version": "v1"},
    service_account="client",
)
SERVER = Proxy(
    id=Proxy.node_id("sidecar", SERVER_IP, "backend-v2-0", "default"),
    kind="sidecar",
    ip=SERVER_IP,
    namespace="default",
    instance="backend-v2-0",
    workload="backend-v2",
    labels={"app": "backend", "version": "v2"},
    service_account="backend",
)


FULL_SAMPLING = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig:
    tracing: {sampling: 100}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def to_json(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def resolver() -> StaticResolver:
    backend = ServiceInfo(HOST, "backend", "default")
    return StaticResolver(
        workloads={
            CLIENT_IP: Workload("client", "default", {"app": "client", "version": "v1"}, "client"),
            SERVER_IP: Workload("backend-v2", "default", {"app": "backend", "version": "v2"}, "backend"),
        },
        services=[backend, ServiceInfo(TCP_HOST, "tcp-echo", "default")],
        inbound={(SERVER.id, IN_PORT): backend},
    )


def hcm(snapshot: Snapshot, proxy: Proxy, direction: str, cluster: str) -> hcm_pb2.HttpConnectionManager:
    m = hcm_pb2.HttpConnectionManager(stat_prefix=direction, codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    rc = route_pb2.RouteConfiguration(name=direction)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add(name="default")
    r.match.prefix = "/"
    r.route.cluster = cluster
    m.route_config.CopyFrom(rc)
    m.http_filters.append(tenvoy.grpc_stats_filter())
    m.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    m.access_log.extend(tenvoy.http_access_loggers(snapshot, proxy, direction))  # type: ignore[arg-type]
    tracing = tenvoy.tracing_config(snapshot, proxy)
    assert tracing is not None
    m.tracing.CopyFrom(tracing)
    return m


def listener(name: str, ip: str, port: int, filter_name: str, config: Any, direction: int) -> dict[str, Any]:
    lst = listener_pb2.Listener(name=name, traffic_direction=direction)
    lst.address.socket_address.address = ip
    lst.address.socket_address.port_value = port
    lst.filter_chains.add().filters.add(name=filter_name).typed_config.Pack(config)
    return to_json(lst)


def static_cluster(name: str, ip: str, port: int, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if tls is not None:
        c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return c


def bootstrap(
    proxy: Proxy, listeners: list[dict], clusters: list[dict], grpc_port: int, api_port: int, admin_port: int
) -> dict[str, Any]:
    telemetry_clusters = tenvoy.static_clusters(("127.0.0.1", grpc_port), ("127.0.0.1", api_port))
    return {
        "node": {
            "id": proxy.id,
            "cluster": f"{proxy.workload}.{proxy.namespace}",
            "metadata": proxy.node_metadata(),
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "cluster_manager": {
            "upstream_bind_config": {"source_address": {"address": proxy.ip, "port_value": 0}}
        },
        "static_resources": {"listeners": listeners, "clusters": clusters + telemetry_clusters},
    }


@dataclass
class Rig:
    telemetry: Telemetry
    api: str
    seen_headers: list[dict[str, str]]
    tcp_lines: list[bytes]


async def _backend(seen: list[dict[str, str]]) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"ok": True, "path": request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _tcp_echo(lines: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                lines.append(line)
                writer.write(b"echo " + line)
                await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, SERVER_IP, TCP_PORT)


@contextlib.asynccontextmanager
async def running_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    telemetry = Telemetry(resolver=lambda r=resolver(): r)
    async with contextlib.AsyncExitStack() as stack:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(telemetry.grpc_handlers())
        grpc_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stack.push_async_callback(server.stop, 0)
        app = web.Application()
        telemetry.add_routes(app)
        api_runner = web.AppRunner(app, access_log=None)
        await api_runner.setup()
        stack.push_async_callback(api_runner.cleanup)
        api_port = free_port()
        await web.TCPSite(api_runner, "127.0.0.1", api_port).start()
        seen: list[dict[str, str]] = []
        backend, app_port = await _backend(seen)
        stack.push_async_callback(backend.cleanup)
        tcp_lines: list[bytes] = []
        echo = await _tcp_echo(tcp_lines)
        stack.callback(echo.close)
        envoys = _envoys(tmp_path, grpc_port, api_port, app_port)
        for e in envoys:
            stack.push_async_callback(e.stop)
            await e.start()
        for e in envoys:
            await e.wait_ready(timeout=30)
        yield Rig(telemetry, f"http://127.0.0.1:{api_port}", seen, tcp_lines)


def _envoys(tmp_path: Path, grpc_port: int, api_port: int, app_port: int) -> list[EnvoyProcess]:
    ca = CertificateAuthority.create_self_signed(key_type="ec")
    root = ca.root_cert_pem.decode()

    def certs(identity: str) -> dict[str, Any]:
        key = generate_key("ec")
        bundle = ca.sign_csr(build_csr(key, identity), identity=identity)
        return {
            "tls_certificates": [
                {
                    "certificate_chain": {"inline_string": bundle.cert_chain_pem.decode()},
                    "private_key": {"inline_string": key_pem(key).decode()},
                }
            ],
            "validation_context": {"trusted_ca": {"inline_string": root}},
        }

    # Istio samples 1% of traces by default; this test checks every request's trace headers.
    store = Store()
    store.apply(loader.load_text(FULL_SAMPLING, "mesh.yaml"), "test")
    snapshot = Snapshot.build(1, store.list(), [])
    server_tls = {
        "@type": DOWNSTREAM_TLS,
        "common_tls_context": certs(ID_SERVER),
        "require_client_certificate": True,
    }
    client_tls = {"@type": UPSTREAM_TLS, "common_tls_context": certs(ID_CLIENT), "sni": HOST}
    tcp_proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=TCP_CLUSTER, cluster=TCP_CLUSTER)
    tcp_proxy.access_log.extend(tenvoy.tcp_access_loggers(snapshot, CLIENT, "outbound"))
    tcp_proxy.access_log_options.CopyFrom(tenvoy.tcp_access_log_options())
    client_listeners = [
        listener(
            "virtualOutbound",
            CLIENT_IP,
            OUT_PORT,
            "envoy.filters.network.http_connection_manager",
            hcm(snapshot, CLIENT, "outbound", OUT_CLUSTER),
            OUTBOUND,
        ),
        listener(
            f"{CLIENT_IP}_{TCP_OUT_PORT}",
            CLIENT_IP,
            TCP_OUT_PORT,
            "envoy.filters.network.tcp_proxy",
            tcp_proxy,
            OUTBOUND,
        ),
    ]
    server_listener = listener(
        f"{SERVER_IP}_{IN_PORT}",
        SERVER_IP,
        IN_PORT,
        "envoy.filters.network.http_connection_manager",
        hcm(snapshot, SERVER, "inbound", f"inbound|{IN_PORT}||"),
        INBOUND,
    )
    server_listener["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": server_tls,
    }
    admin_client, admin_server = free_ports("127.0.0.1", 2)  # both admins listen on 127.0.0.1
    return [
        EnvoyProcess(
            CLIENT,
            bootstrap(
                CLIENT,
                client_listeners,
                [
                    static_cluster(OUT_CLUSTER, SERVER_IP, IN_PORT, client_tls),
                    static_cluster(TCP_CLUSTER, SERVER_IP, TCP_PORT),
                ],
                grpc_port,
                api_port,
                admin_client,
            ),
            tmp_path / "client",
            concurrency=1,
            log_level="info",
        ),
        EnvoyProcess(
            SERVER,
            bootstrap(
                SERVER,
                [server_listener],
                [static_cluster(f"inbound|{IN_PORT}||", "127.0.0.1", app_port)],
                grpc_port,
                api_port,
                admin_server,
            ),
            tmp_path / "server",
            concurrency=1,
            log_level="info",
        ),
    ]


async def poll(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def series(t: Telemetry, reporter: str) -> dict[tuple[str, ...], Any]:
    merged = t.metrics.merged()
    return {k: s for k, s in merged.http.items() if k[0] == reporter}


def count(t: Telemetry, reporter: str) -> int:
    return sum(s.requests for s in series(t, reporter).values())


def labels_of(key: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(istio.HTTP_LABELS, key, strict=True))


LOG_LINE = re.compile(
    r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /hello\?i=\d+ HTTP/1\.1" 200 - via_upstream - "-" 0 \d+ \d+ \d+ '
    r'"-" "[^"]*" "[0-9a-f-]{36}" "backend\.default\.svc\.cluster\.local" "127\.79\.0\.11:8080" '
    r"outbound\|8080\|\|backend\.default\.svc\.cluster\.local 127\.79\.0\.10:\d+ 127\.79\.0\.10:15001 "
    r"127\.0\.0\.1:\d+ - default$"
)


def test_requests_become_istio_metrics_logs_and_traces(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_http_scenario(tmp_path), 120))


def test_tcp_connections_are_counted(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_tcp_scenario(tmp_path), 120))


async def _http_scenario(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        await _http_checks(rig)


async def _tcp_scenario(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        await _tcp_checks(rig)


async def _http_checks(rig: Rig) -> None:
    t = rig.telemetry
    async with aiohttp.ClientSession(trust_env=False) as session:
        for i in range(N):
            async with session.get(
                f"http://{CLIENT_IP}:{OUT_PORT}/hello?i={i}", headers={"Host": HOST}
            ) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
    await poll(
        lambda: count(t, "source") >= N and count(t, "destination") >= N, 15, "N requests in both reporters"
    )
    await asyncio.sleep(1.5)  # one more flush interval: nothing is counted twice
    assert count(t, "source") == N
    assert count(t, "destination") == N

    (src_key, src), *rest = series(t, "source").items()
    assert not rest, [labels_of(k) for k in series(t, "source")]
    assert labels_of(src_key) == {
        "reporter": "source",
        "source_workload": "client",
        "source_canonical_service": "client",
        "source_canonical_revision": "v1",
        "source_workload_namespace": "default",
        "source_principal": ID_CLIENT,
        "source_app": "client",
        "source_version": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": "backend-v2",
        "destination_workload_namespace": "default",
        "destination_principal": ID_SERVER,
        "destination_app": "backend",
        "destination_version": "v2",
        "destination_service": HOST,
        "destination_canonical_service": "backend",
        "destination_canonical_revision": "v2",
        "destination_service_name": "backend",
        "destination_service_namespace": "default",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    assert src.duration.count == N and src.request_bytes.count == N and src.response_bytes.count == N
    assert min(src.request_bytes.sum, src.response_bytes.sum) > N * 50  # wire bytes, headers included

    (dst_key, dst), *rest = series(t, "destination").items()
    assert not rest, [labels_of(k) for k in series(t, "destination")]
    expected_dst = {
        **labels_of(src_key),
        "reporter": "destination",
        "connection_security_policy": "mutual_tls",
    }
    assert labels_of(dst_key) == expected_dst
    assert dst.duration.count == N

    # Prometheus text: one scrape covers both reporters, histograms with Envoy's buckets.
    text = t.metrics_text().decode()
    assert text.count("istio_requests_total{") == 2
    assert 'reporter="source"' in text and 'connection_security_policy="mutual_tls"' in text
    buckets = [
        (re.search(r'le="([^"]+)"', line).group(1), line.rsplit(" ", 1)[1])  # type: ignore[union-attr]
        for line in text.splitlines()
        if line.startswith("istio_request_duration_milliseconds_bucket{") and 'reporter="source"' in line
    ]
    assert [b for b, _ in buckets] == [*istio.BUCKET_LABELS, "+Inf"]
    assert float(buckets[-1][1]) == N
    per_proxy = t.metrics_for_proxy(CLIENT.id)
    assert (
        per_proxy is not None
        and 'reporter="source"' in per_proxy
        and 'reporter="destination"' not in per_proxy
    )

    # Tracing headers reached the app: W3C and B3, and a request id.
    assert len(rig.seen_headers) == N
    for h in rig.seen_headers:
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", h["traceparent"]), h
        assert re.fullmatch(r"[0-9a-f]{32}", h["x-b3-traceid"]), h
        assert h["x-b3-traceid"] == h["traceparent"].split("-")[1]
        assert "x-b3-spanid" in h and h.get("x-b3-sampled") == "1"
        assert re.fullmatch(r"[0-9a-f-]{36}", h["x-request-id"]), h

    # Both proxies' spans reach the built-in collector and join into one trace per request.
    trace_id = rig.seen_headers[0]["x-b3-traceid"]
    await poll(lambda: len(t.trace(trace_id) or []) >= 2, 15, "both spans of a trace")
    spans = t.trace(trace_id) or []
    services = {s["localEndpoint"]["serviceName"] for s in spans}
    assert services == {"client.default", "backend-v2.default"}, spans
    assert {s.get("kind") for s in spans} == {"CLIENT", "SERVER"}
    assert all(s["tags"].get("istio.canonical_service") in ("client", "backend") for s in spans)
    await poll(lambda: len(t.traces(limit=100)) >= N, 10, "a trace per request")
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(
            f"{rig.api}/api/traces", params={"service": "backend-v2.default", "limit": "5"}
        ) as r:
            summaries = await r.json()
        assert len(summaries) == 5 and all(s["spanCount"] >= 2 for s in summaries)
        async with session.get(f"{rig.api}/api/v2/trace/{trace_id}") as r:
            assert len(await r.json()) >= 2

        # Access-log lines in Istio's TEXT format, from the control plane.
        async with session.get(f"{rig.api}/api/logs", params={"workload": "client"}) as r:
            assert r.status == 200
            lines = (await r.text()).splitlines()
    assert len(lines) == N
    for line in lines:
        assert LOG_LINE.match(line), line

    # The graph has the edge, with live figures and the mTLS lock.
    g = t.graph(60)
    (edge,) = g["edges"]
    assert (
        edge["source"] == "workload:default/client" and edge["destination"] == "workload:default/backend-v2"
    )
    assert edge["requests"] == N and edge["errorRate"] == 0 and edge["mtls"] is True
    assert edge["p50"] is not None and edge["p99"] >= edge["p50"]


async def _tcp_checks(rig: Rig) -> None:
    t = rig.telemetry
    conns = 3
    for i in range(conns):
        reader, writer = await asyncio.open_connection(CLIENT_IP, TCP_OUT_PORT)
        writer.write(f"line {i}\n".encode())
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == f"echo line {i}\n".encode()
        writer.close()
        await writer.wait_closed()

    def tcp() -> dict[tuple[str, ...], Any]:
        return t.metrics.merged().tcp

    await poll(lambda: sum(s.closed for s in tcp().values()) >= conns, 15, "closed TCP connections")
    (key, s), *rest = tcp().items()
    assert not rest, list(tcp())
    labels = dict(zip(istio.TCP_LABELS, key, strict=True))
    assert labels["reporter"] == "source"
    assert labels["request_protocol"] == "tcp"
    assert labels["destination_service"] == TCP_HOST and labels["destination_service_name"] == "tcp-echo"
    assert labels["destination_workload"] == "backend-v2"
    assert labels["destination_principal"] == "unknown"  # plaintext upstream
    assert labels["source_principal"] == "unknown"
    assert labels["connection_security_policy"] == "unknown"
    assert (s.opened, s.closed) == (conns, conns)
    assert s.received == sum(len(f"line {i}\n") for i in range(conns))
    assert s.sent == sum(len(f"echo line {i}\n") for i in range(conns))
    lines = t.log_lines(t.workload_proxies("client"))
    assert len(lines) == conns
    assert all(x.text.startswith("[") and '"- - -" 0 - - - "-"' in x.text for x in lines), lines
