"""A real Envoy started by EnvoyProcess against a tiny in-test ADS server.

Each test runs its own event loop (asyncio.run) and stops every process and server it starts.
Pods use free loopback addresses in 127.77.0.0/16 with Istio's port numbers.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# Registers the typed configs used in the listeners below with the protobuf symbol database.
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2  # noqa: F401
import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, json_format

from isthmus.agent import envoy as envoy_module
from isthmus.agent.admin import AdminClient, AdminError
from isthmus.agent.bootstrap import build_bootstrap
from isthmus.agent.envoy import EnvoyError, EnvoyProcess
from isthmus.model.proxy import Proxy

pytestmark = pytest.mark.e2e

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ISTIO_PORTS = (15000, 15021, 15090)
INBOUND_PORT = 19080
OUTBOUND_PORT = 15001
TCP_PORT = 19090


# -- helpers -------------------------------------------------------------------------------------------


def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


_taken: set[str] = set()


def free_pod_ip(ports: tuple[int, ...] = (*ISTIO_PORTS, INBOUND_PORT, OUTBOUND_PORT, TCP_PORT)) -> str:
    """A 127.77.x.y address on which all `ports` are free (another test run may hold some)."""
    start = random.randrange(2, 60000)
    for i in range(2000):
        n = (start + i) % 65000 + 2
        ip = f"127.77.{n // 250}.{n % 250 + 2}"
        if ip not in _taken and all(_port_free(ip, p) for p in ports):
            _taken.add(ip)
            return ip
    raise RuntimeError("no free loopback address in 127.77.0.0/16")


def make_proxy(ip: str, instance: str = "reviews-v2-0") -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", ip, instance, "default"),
        kind="sidecar",
        ip=ip,
        namespace="default",
        instance=instance,
        workload="reviews-v2",
        labels={"app": "reviews", "version": "v2"},
        service_account="bookinfo-reviews",
    )


async def poll(
    what: str, check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, interval=0.05
) -> float:
    """Poll `check` until true; returns the elapsed seconds, fails the test after `timeout`."""
    t0 = time.monotonic()
    while True:
        ok = check()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    """False once the process is gone or a zombie (PID 1 in a container may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def http_get(ip: str, port: int, path: str, conn: http.client.HTTPConnection | None = None):
    """(status, headers, body, conn); pass conn back in to reuse a kept-alive connection."""
    conn = conn or http.client.HTTPConnection(ip, port, timeout=5)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, conn


def connect_refused(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # Accepted into the backlog just as the listener closed: it is closing, not closed yet; poll again.
        return False


def tcp_line(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=5) as s:
        s.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


# -- a tiny ADS server -----------------------------------------------------------------------------


def _pack(message: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message)
    return a


class FakeAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """State of the world ADS (the bootstraps here say delta_xds=False): answers each type's first request with fixed resources, records ACKs."""

    def __init__(self, resources: dict[str, list[Any]] | None = None) -> None:
        self.resources = resources or {}
        self.peers: list[str] = []
        self.nodes: list[Any] = []
        self.acks: list[tuple[str, str]] = []
        self.nacks: list[tuple[str, str]] = []
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> tuple[str, int]:
        self.server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return ("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0)

    async def StreamAggregatedResources(self, request_iterator, context):
        self.peers.append(context.peer())
        nonce = 0
        async for req in request_iterator:
            if req.HasField("node"):
                self.nodes.append(req.node)
            if req.response_nonce:
                target = self.nacks if req.HasField("error_detail") else self.acks
                target.append((req.type_url, req.error_detail.message or req.version_info))
                continue
            nonce += 1
            yield discovery_pb2.DiscoveryResponse(
                version_info="1",
                type_url=req.type_url,
                nonce=str(nonce),
                resources=[_pack(r) for r in self.resources.get(req.type_url, [])],
            )


def listener(name: str, ip: str, port: int, direction: str, filters: list[dict[str, Any]]):
    return json_format.ParseDict(
        {
            "name": name,
            "address": {"socket_address": {"address": ip, "port_value": port}},
            "traffic_direction": direction,
            "filter_chains": [{"filters": filters}],
        },
        listener_pb2.Listener(),
    )


def direct_response_hcm(stat_prefix: str, body: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": body}},
                            }
                        ],
                    }
                ],
            },
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        },
    }


def pod_resources(ip: str, upstream: tuple[str, int]) -> dict[str, list[Any]]:
    """An inbound and an outbound HTTP listener, and a TCP listener proxying to `upstream`."""
    cluster = json_format.ParseDict(
        {
            "name": "outbound|9090||peer.default.svc.cluster.local",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "outbound|9090||peer.default.svc.cluster.local",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": upstream[0], "port_value": upstream[1]}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        },
        cluster_pb2.Cluster(),
    )
    tcp = {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": "peer", "cluster": cluster.name},
    }
    return {
        CDS: [cluster],
        LDS: [
            listener(
                f"{ip}_{INBOUND_PORT}", ip, INBOUND_PORT, "INBOUND", [direct_response_hcm("inbound", "in")]
            ),
            listener(
                f"{ip}_{OUTBOUND_PORT}",
                ip,
                OUTBOUND_PORT,
                "OUTBOUND",
                [direct_response_hcm("outbound", "out")],
            ),
            listener(f"{ip}_{TCP_PORT}", ip, TCP_PORT, "OUTBOUND", [tcp]),
        ],
    }


async def peer_address_server() -> tuple[asyncio.Server, tuple[str, int]]:
    """A TCP server on 127.0.0.1 that answers each connection with the peer's address."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{writer.get_extra_info('peername')[0]}\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


# -- tests -----------------------------------------------------------------------------------------


def test_envoy_becomes_live_serves_health_and_prometheus_and_binds_pod_address(tmp_path: Path) -> None:
    async def main() -> None:
        ip = free_pod_ip()
        proxy = make_proxy(ip)
        upstream_server, upstream = await peer_address_server()
        ads = FakeAds(pod_resources(ip, upstream))
        xds = await ads.start()
        envoy = EnvoyProcess(
            proxy,
            build_bootstrap(proxy, xds_address=xds, delta_xds=False),
            tmp_path / "envoy",
            drain_time_s=2,
        )
        try:
            await envoy.start()
            live_after = await envoy.wait_ready(timeout=20)
            print(f"\nstart-to-LIVE {live_after * 1000:.0f} ms, idle RSS {rss_kib(envoy.pid) / 1024:.1f} MiB")
            assert envoy.admin_url == f"http://{ip}:15000"

            # Identity reached the control plane, from the pod address (upstream_bind_config).
            assert ads.nodes[0].id == proxy.id
            assert ads.nodes[0].cluster == "reviews.default"  # Istio: app label + namespace
            assert ads.peers[0].startswith(f"ipv4:{ip}:"), ads.peers
            # LIVE means the listeners are in place; their ACK may still be on its way.
            await poll("the CDS and LDS ACKs", lambda: {t for t, _ in ads.acks} >= {CDS, LDS}, timeout=5)
            assert not ads.nacks

            # Health listener: /healthz/ready -> admin /ready; Prometheus listener: admin /stats/prometheus.
            status, _, body, conn = await asyncio.to_thread(http_get, ip, 15021, "/healthz/ready")
            conn.close()
            assert (status, body.strip()) == (200, b"LIVE")
            status, _, body, conn = await asyncio.to_thread(http_get, ip, 15090, "/stats/prometheus")
            conn.close()
            assert status == 200 and b"envoy_server_live" in body
            # Istio's tag extraction: the cluster name is a label, not part of the metric name.
            assert b'cluster_name="xds-grpc"' in body
            status, *_rest, conn = await asyncio.to_thread(http_get, ip, 15090, "/config_dump")
            conn.close()
            assert status == 404, "only /stats/prometheus is exposed on the Prometheus port"

            # Data path: an upstream connection leaves from the pod address, not 127.0.0.1.
            assert await asyncio.to_thread(tcp_line, ip, TCP_PORT) == ip

            async with AdminClient(envoy.admin_url) as admin:
                assert await admin.ready() == "LIVE"
                info = await admin.server_info()
                assert info["state"] == "LIVE" and info["node"]["id"] == proxy.id
                assert info["command_line_options"]["drain_strategy"] == "Immediate"
                assert info["command_line_options"]["disable_hot_restart"] is True
                dump = await admin.config_dump(include_eds=True)
                types = {c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]}
                assert {"BootstrapConfigDump", "ClustersConfigDump", "ListenersConfigDump"} <= types
                assert "EndpointsConfigDump" in types
                clusters = await admin.clusters()
                names = {c["name"] for c in clusters["cluster_statuses"]}
                assert {
                    "xds-grpc",
                    "agent",
                    "prometheus_stats",
                    "outbound|9090||peer.default.svc.cluster.local",
                } <= names
                listeners = await admin.listeners()
                bound = {ls["name"] for ls in listeners["listener_statuses"]}
                assert {f"{ip}_15021", f"{ip}_15090", f"{ip}_{INBOUND_PORT}"} <= bound
                stats = await admin.stats(filter=r"^cluster_manager\.")
                assert stats["cluster_manager.active_clusters"] >= 4
                with pytest.raises(AdminError) as err:
                    await admin.get("/no-such-endpoint")
                assert err.value.status == 404

            t0 = time.monotonic()
            assert await envoy.stop(timeout=5) == 0
            print(f"stop (SIGTERM) took {(time.monotonic() - t0) * 1000:.0f} ms")
            assert not envoy.running and not pid_alive(envoy.pid)
        finally:
            await envoy.stop()
            await ads.stop()
            upstream_server.close()
            await upstream_server.wait_closed()

    asyncio.run(main())


def test_inbound_drain_closes_connections_then_stops_inbound_listeners_only(tmp_path: Path) -> None:
    async def main() -> None:
        ip = free_pod_ip()
        proxy = make_proxy(ip)
        upstream_server, upstream = await peer_address_server()
        ads = FakeAds(pod_resources(ip, upstream))
        xds = await ads.start()
        drain_time = 2
        envoy = EnvoyProcess(
            proxy,
            build_bootstrap(proxy, xds_address=xds, delta_xds=False),
            tmp_path / "envoy",
            drain_time_s=drain_time,
        )
        conns: list[http.client.HTTPConnection] = []
        try:
            await envoy.start()
            await envoy.wait_ready(timeout=20)
            status, headers, body, inbound = await asyncio.to_thread(http_get, ip, INBOUND_PORT, "/")
            conns.append(inbound)
            assert (status, body, headers.get("connection")) == (200, b"in", None)
            status, headers, body, outbound = await asyncio.to_thread(http_get, ip, OUTBOUND_PORT, "/")
            conns.append(outbound)
            assert (status, body) == (200, b"out")

            t0 = time.monotonic()
            await envoy.drain(inbound_only=True)
            # Immediate strategy: the kept-alive inbound connection is told to close on its next response.
            status, headers, body, _ = await asyncio.to_thread(http_get, ip, INBOUND_PORT, "/", inbound)
            assert (status, body, headers.get("connection")) == (200, b"in", "close")
            # Outbound listeners are not drained.
            status, headers, body, _ = await asyncio.to_thread(http_get, ip, OUTBOUND_PORT, "/", outbound)
            assert (status, body, headers.get("connection")) == (200, b"out", None)
            # During the drain period the inbound listener still accepts new connections ...
            if time.monotonic() - t0 < drain_time - 0.5:
                status, headers, _, c = await asyncio.to_thread(http_get, ip, INBOUND_PORT, "/")
                c.close()
                assert (status, headers.get("connection")) == (200, "close")
            # ... and stops listening after it.
            waited = await poll(
                "inbound listener to stop",
                lambda: asyncio.to_thread(connect_refused, ip, INBOUND_PORT),
                timeout=drain_time + 5,
            )
            elapsed = time.monotonic() - t0
            print(f"\ninbound listener closed {elapsed:.2f}s after drain (drain time {drain_time}s)")
            assert elapsed >= drain_time - 0.5 and waited >= 0
            # Outbound, health and Prometheus listeners keep serving; Envoy does not exit; /ready is LIVE.
            status, _, body, c = await asyncio.to_thread(http_get, ip, OUTBOUND_PORT, "/")
            c.close()
            assert (status, body) == (200, b"out")
            status, _, body, c = await asyncio.to_thread(http_get, ip, 15021, "/healthz/ready")
            c.close()
            assert (status, body.strip()) == (200, b"LIVE")
            assert envoy.running

            t0 = time.monotonic()
            assert await envoy.stop(timeout=5) == 0
            assert time.monotonic() - t0 < 5
        finally:
            for c in conns:
                c.close()
            await envoy.stop()
            await ads.stop()
            upstream_server.close()
            await upstream_server.wait_closed()

    asyncio.run(main())


def test_full_drain_stops_every_dynamic_listener(tmp_path: Path) -> None:
    async def main() -> None:
        ip = free_pod_ip()
        proxy = make_proxy(ip)
        upstream_server, upstream = await peer_address_server()
        ads = FakeAds(pod_resources(ip, upstream))
        xds = await ads.start()
        envoy = EnvoyProcess(
            proxy,
            build_bootstrap(proxy, xds_address=xds, delta_xds=False),
            tmp_path / "envoy",
            drain_time_s=1,
        )
        try:
            await envoy.start()
            await envoy.wait_ready(timeout=20)
            await envoy.drain(inbound_only=False)
            for port in (INBOUND_PORT, OUTBOUND_PORT, 15021, 15090):
                await poll(
                    f"port {port} to stop", lambda p=port: asyncio.to_thread(connect_refused, ip, p), 6
                )
            async with envoy.admin() as admin:  # admin is not a listener: it keeps answering
                assert await admin.ready() == "LIVE"
        finally:
            await envoy.stop()
            await ads.stop()
            upstream_server.close()
            await upstream_server.wait_closed()

    asyncio.run(main())


def test_two_envoys_side_by_side(tmp_path: Path) -> None:
    """--disable-hot-restart: no shared-memory base id, so Envoys do not clash."""

    async def main() -> None:
        ads = FakeAds()
        xds = await ads.start()
        envoys = []
        try:
            for i in range(2):
                proxy = make_proxy(free_pod_ip(), f"reviews-v2-{i}")
                envoys.append(
                    EnvoyProcess(
                        proxy,
                        build_bootstrap(proxy, xds_address=xds, delta_xds=False),
                        tmp_path / f"envoy-{i}",
                    )
                )
            await asyncio.gather(*(e.start() for e in envoys))
            await asyncio.gather(*(e.wait_ready(timeout=20) for e in envoys))
            assert len({p.split(":")[1] for p in ads.peers}) == 2
            codes = await asyncio.gather(*(e.stop() for e in envoys))
            assert codes == [0, 0]
        finally:
            for e in envoys:
                await e.stop()
            await ads.stop()

    asyncio.run(main())


def test_wait_ready_times_out_without_control_plane(tmp_path: Path) -> None:
    async def main() -> None:
        ip = free_pod_ip()
        proxy = make_proxy(ip)
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()
        envoy = EnvoyProcess(
            proxy, build_bootstrap(proxy, xds_address=dead), tmp_path / "envoy", log_level="info"
        )
        try:
            await envoy.start()
            t0 = time.monotonic()
            with pytest.raises(EnvoyError) as err:
                await envoy.wait_ready(timeout=1.5)
            assert time.monotonic() - t0 < 4
            message = str(err.value)
            assert "not LIVE after 1.5s" in message and "INITIALIZING" in message
            assert "envoy.log" in message and "starting main dispatch loop" in message
            assert envoy.running
        finally:
            await envoy.stop()

    asyncio.run(main())


def test_wait_ready_reports_early_exit_with_log(tmp_path: Path) -> None:
    async def main() -> None:
        ip = free_pod_ip()
        proxy = make_proxy(ip)
        bootstrap = build_bootstrap(proxy, xds_address=("127.0.0.1", 1))
        bootstrap["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
        envoy = EnvoyProcess(proxy, bootstrap, tmp_path / "envoy")
        try:
            await envoy.start()
            with pytest.raises(EnvoyError) as err:
                await envoy.wait_ready(timeout=10)
            assert "exited with code 1 before LIVE" in str(err.value)
            assert "NOT_A_TYPE" in str(err.value)
            assert envoy.returncode == 1
        finally:
            await envoy.stop()

    asyncio.run(main())


PARENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from isthmus.agent import envoy as envoy_module
    from isthmus.agent.bootstrap import build_bootstrap
    from isthmus.agent.envoy import EnvoyProcess
    from isthmus.model.proxy import Proxy

    async def main():
        ip, workdir, launcher = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
        envoy_module.USE_SETPRIV = launcher == "setpriv"
        proxy = Proxy(id=Proxy.node_id("sidecar", ip, "orphan-0", "default"), kind="sidecar", ip=ip,
                      namespace="default", instance="orphan-0", workload="orphan")
        envoy = EnvoyProcess(proxy, build_bootstrap(proxy, xds_address=("127.0.0.1", 1)), workdir)
        await envoy.start()
        print(envoy.pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("launcher", ["setpriv", "prctl"])
def test_envoy_dies_with_its_parent_even_on_sigkill(tmp_path: Path, launcher: str) -> None:
    if launcher == "setpriv" and envoy_module._setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig on this machine")
    ip = free_pod_ip()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, ip, str(tmp_path / "envoy"), launcher],
        stdout=subprocess.PIPE,
        text=True,
    )
    envoy_pid = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(parent.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=20), "the parent did not report Envoy's pid"
        envoy_pid = int(parent.stdout.readline())
        assert pid_alive(envoy_pid)
        # Envoy itself (setpriv execs it), a child of the parent, with the death signal set.
        binary = envoy_module.default_envoy_path().resolve()
        t0 = time.monotonic()
        while Path(f"/proc/{envoy_pid}/exe").resolve() != binary and time.monotonic() - t0 < 5:
            time.sleep(0.01)  # setpriv may not have exec'd Envoy yet
        assert Path(f"/proc/{envoy_pid}/exe").resolve() == binary
        assert int(Path(f"/proc/{envoy_pid}/stat").read_text().rpartition(")")[2].split()[1]) == parent.pid

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        t0 = time.monotonic()
        while pid_alive(envoy_pid) and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        print(f"\nEnvoy gone {1000 * (time.monotonic() - t0):.0f} ms after its parent was SIGKILLed")
        assert not pid_alive(envoy_pid), "Envoy outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if envoy_pid is not None and pid_alive(envoy_pid):
            os.kill(envoy_pid, signal.SIGKILL)
