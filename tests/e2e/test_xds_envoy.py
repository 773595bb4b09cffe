"""The xDS server against a real Envoy: config is served, ACKed, NACKed and kept, as the protocol says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2

from isthmus.debug.config_compare import compare
from isthmus.mesh.addresses import free_ports
from isthmus.mesh.http_api import proxy_config_dump
from isthmus.mesh.runner import WARMING_STATS
from isthmus.model.proxy import Proxy
from isthmus.xds import typeurls
from isthmus.xds.server import PushRequest, XdsServer
from isthmus.xds.status import STALE, SYNCED

pytestmark = pytest.mark.e2e

CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE
NODE_ID = "sidecar~127.0.0.1~test-0.default~default.svc.cluster.local"
FULL = PushRequest(full=True, reason="e2e")


def envoy_binary() -> str | None:
    local = Path(sys.executable).parent / "envoy"
    return str(local) if local.exists() else shutil.which("envoy")


def pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def eds_cluster(name: str, connect_timeout_ms: int = 1000) -> any_pb2.Any:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.FromMilliseconds(connect_timeout_ms)
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = 2  # V3
    return pack(c)


def endpoints(name: str, port: int) -> any_pb2.Any:
    la = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    ep = la.endpoints.add().lb_endpoints.add().endpoint
    ep.address.socket_address.address = "127.0.0.1"
    ep.address.socket_address.port_value = port
    return pack(la)


def http_listener(name: str, port: int, route_name: str) -> any_pb2.Any:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=route_name)
    hcm.rds.route_config_name = route_name
    hcm.rds.config_source.ads.SetInParent()
    hcm.rds.config_source.resource_api_version = 2  # V3
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    lis = listener_pb2.Listener(name=name)
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    f = lis.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager")
    f.typed_config.Pack(hcm)
    return pack(lis)


def direct_route(name: str, body: str, regex: str | None = None) -> any_pb2.Any:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    if regex is None:
        r.match.prefix = "/"
    else:
        r.match.safe_regex.regex = regex
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    return pack(rc)


def cluster_route(name: str, cluster: str) -> any_pb2.Any:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.route.cluster = cluster
    return pack(rc)


@dataclass
class Snap:
    version: str
    resources: dict[str, dict[str, any_pb2.Any]] = field(default_factory=dict)


class Generator:
    def generate(
        self, snapshot: Snap, proxy: Proxy, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]:
        data = snapshot.resources.get(type_url, {})
        return data if watched is None else {n: a for n, a in data.items() if n in watched}


def bootstrap(xds_port: int, delta: bool) -> dict[str, Any]:
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {
            "id": NODE_ID,
            "cluster": "test.default",
            "metadata": {"NAMESPACE": "default", "NAME": "test-0", "LABELS": {"app": "test"}},
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds-grpc",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                }
            ]
        },
    }


async def poll(cond: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, what: str) -> None:
    """Bounded polling of a readiness condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ok = cond()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def http_get(url: str, timeout: float = 2.0, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


class Envoy:
    def __init__(self, binary: str, workdir: Path, xds_port: int, delta: bool) -> None:
        self.delta = delta
        self.binary = binary
        self.workdir = workdir
        self.xds_port = xds_port
        self.proc: asyncio.subprocess.Process | None = None
        self.admin = ""

    async def start(self) -> None:
        cfg = self.workdir / "bootstrap.json"
        cfg.write_text(json.dumps(bootstrap(self.xds_port, self.delta)))
        admin_file = self.workdir / "admin.txt"
        self.log = self.workdir / "envoy.log"
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            str(cfg),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--admin-address-path",
            str(admin_file),
            "--log-path",
            str(self.log),
            "-l",
            "info",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        def admin_known() -> bool:
            assert self.proc is not None and self.proc.returncode is None, self.log_tail()
            return admin_file.exists() and bool(admin_file.read_text().strip())

        await poll(admin_known, 20, "Envoy's admin address")
        self.admin = "http://" + admin_file.read_text().strip()

    async def get(self, path: str) -> tuple[int, str]:
        return await asyncio.to_thread(http_get, self.admin + path)

    async def ready(self) -> bool:
        code, _ = await self.get("/ready")
        return code == 200

    async def stat(self, name: str) -> int | None:
        code, body = await self.get(f"/stats?format=json&filter=^{name}$")
        if code != 200:
            return None
        for s in json.loads(body).get("stats", []):
            if s.get("name") == name:
                return int(s["value"])
        return None

    async def config_dump(self, resource: str) -> list[dict[str, Any]]:
        code, body = await self.get(f"/config_dump?resource={resource}")
        assert code == 200, body
        return json.loads(body).get("configs", [])

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)


@contextlib.asynccontextmanager
async def mesh(tmp_path: Path, delta: bool) -> AsyncIterator[tuple[XdsServer, Envoy]]:
    binary = envoy_binary()
    if binary is None:
        pytest.skip("no envoy binary")
    server = XdsServer(Generator(), debounce_after=0.01, debounce_max=0.1)
    port = await server.start("127.0.0.1", 0)
    envoy = Envoy(binary, tmp_path, port, delta)
    try:
        await envoy.start()
        yield server, envoy
    finally:
        await envoy.stop()
        await server.stop(0)


@contextlib.asynccontextmanager
async def restarted(
    first: XdsServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[XdsServer, list[str]]]:
    """A control-plane restart: `first` stops and a new server takes its port; yields it and the names of
    the resources it puts in delta responses, in order."""
    from isthmus.xds import server as server_mod

    port = first.port
    assert port is not None
    await first.stop(0)
    encoded: list[str] = []
    original = server_mod.delta_resource

    def recording(name: str, enc: Any, digest: int) -> bytes:
        encoded.append(name)
        return original(name, enc, digest)

    monkeypatch.setattr(server_mod, "delta_resource", recording)
    second = XdsServer(Generator(), debounce_after=0.01, debounce_max=0.1)
    await second.start("127.0.0.1", port)
    try:
        yield second, encoded
    finally:
        await second.stop(0)


def snapshot(version: int, direct_port: int, proxy_port: int, body: str, **over: Any) -> Snap:
    res = {
        CDS: {"backend": eds_cluster("backend", over.get("connect_timeout_ms", 1000))},
        EDS: {"backend": endpoints("backend", direct_port)},
        LDS: {
            "direct": http_listener("direct", direct_port, "direct"),
            "proxy": http_listener("proxy", proxy_port, "proxy"),
        },
        RDS: {
            "direct": over.get("direct_route") or direct_route("direct", body),
            "proxy": cluster_route("proxy", "backend"),
        },
    }
    return Snap(str(version), res)


async def compared(server: XdsServer, envoy: Envoy) -> list[str]:
    """`proxy-status PROXY`'s lines: the server's config dump of the proxy (what it last pushed)
    against Envoy's admin config dump."""
    subs = server.subscriptions(NODE_ID)
    assert subs is not None
    _, body = await envoy.get("/config_dump")
    return compare(proxy_config_dump(subs, Generator()), json.loads(body))


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_envoy_serves_acks_and_survives_a_nack(tmp_path: Path, delta: bool) -> None:
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, delta), 120))


async def _scenario(tmp_path: Path, delta: bool) -> None:
    direct_port, proxy_port = free_ports("127.0.0.1", 2)
    direct_url = f"http://127.0.0.1:{direct_port}/"
    proxy_url = f"http://127.0.0.1:{proxy_port}/"

    async def serves(url: str, body: str) -> bool:
        return await asyncio.to_thread(http_get, url) == (200, body)

    async with mesh(tmp_path, delta) as (server, envoy):
        # 1. initial config: a listener with a direct response, a listener routing to an EDS cluster
        server.update(snapshot(1, direct_port, proxy_port, "v1"), FULL)
        assert await server.wait_connected(NODE_ID, timeout=20), envoy.log_tail()
        assert await server.wait_synced("1", timeout=20), (server.status(), envoy.log_tail())
        await poll(envoy.ready, 20, "Envoy /ready")
        await poll(lambda: serves(direct_url, "v1"), 10, "direct listener serving v1")
        await poll(lambda: serves(proxy_url, "v1"), 10, "proxy listener serving v1 through the EDS cluster")

        (st,) = server.status()
        assert st.proxy.id == NODE_ID and st.proxy.labels == {"app": "test"}
        assert st.sync == {"CDS": SYNCED, "EDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
        assert st.config_version == "1"
        assert st.types["EDS"]["watched"] == 1 and st.types["RDS"]["watched"] == 2
        # the gauge `apply --wait` polls (mesh.runner.wait_warm) exists under this name, 0 once serving
        code, body = await envoy.get("/stats?format=json&filter=" + urllib.parse.quote(WARMING_STATS))
        warm = {s["name"]: s["value"] for s in json.loads(body)["stats"]}
        assert warm == {"listener_manager.total_listeners_warming": 0}
        # what Envoy holds is what status says it ACKed
        routes = await envoy.config_dump("dynamic_route_configs")
        first = {r["route_config"]["name"]: r["version_info"] for r in routes}
        if delta:
            # delta: every resource carries its own version, the content digest the server keeps
            assert all(re.fullmatch("[0-9a-f]{16}", v) for v in first.values()), first
            assert len(set(first.values())) == 2
        else:
            assert set(first.values()) == {st.types["RDS"]["acked_version"]}
        # both protocols: the cluster and listener dumps carry the response version (delta: the
        # system_version_info), what `isthmus proxy-config` shows as the proxy's config version
        _, body = await envoy.get("/config_dump")
        dumped = {c["@type"].rsplit(".", 1)[-1]: c.get("version_info") for c in json.loads(body)["configs"]}
        assert dumped["ClustersConfigDump"] == st.types["CDS"]["acked_version"], dumped
        assert dumped["ListenersConfigDump"] == st.types["LDS"]["acked_version"], dumped

        # 2. a route change reaches Envoy; `proxy-status PROXY` finds what was sent is what Envoy holds
        server.update(snapshot(2, direct_port, proxy_port, "v2"), FULL)
        assert await server.wait_synced("2", timeout=10), server.status()
        await poll(lambda: serves(direct_url, "v2"), 10, "direct listener serving v2")
        lines = await compared(server, envoy)
        assert lines[:2] == ["Clusters Match", "Listeners Match"], lines
        assert re.fullmatch(
            r"Routes Match \(RDS last loaded at \w{3}, \d\d \w{3} \d{4} [\d:]{8} \S+\)", lines[2]
        )
        assert len(lines) == 3, lines

        # 3. an invalid route: NACKed, recorded, Envoy keeps serving v2
        bad = direct_route("direct", "v3", regex="(")
        server.update(snapshot(3, direct_port, proxy_port, "v3", direct_route=bad), FULL)
        await poll(lambda: server.status()[0].types["RDS"]["last_nack"] is not None, 10, "the NACK")
        (st,) = server.status()
        nack = st.types["RDS"]["last_nack"]
        assert nack["version"].startswith("3-") and nack["message"], nack
        assert st.types["RDS"]["sync"] == STALE
        assert st.types["RDS"]["acked_version"].startswith("2-")
        assert st.config_version == "2"
        assert server.registry.get_sample_value("pilot_total_xds_rejects_total", {"type": "rds"}) == 1
        assert not await server.wait_synced("3", timeout=0.5)
        assert await serves(direct_url, "v2")
        assert await envoy.stat("http.direct.rds.direct.update_rejected") == 1
        # the NACKed route is what was sent, not what Envoy holds: `proxy-status PROXY` shows the diff
        lines = await compared(server, envoy)
        assert lines[:2] == ["Clusters Match", "Listeners Match"], lines
        assert lines[2].startswith("Routes Don't Match (RDS last loaded at "), lines
        assert lines[3:5] == ["--- Istiod Routes", "+++ Envoy Routes"], lines
        assert any(x.startswith("-") and '"regex": "("' in x for x in lines), lines
        assert any(x.startswith("+") and '"inline_string": "v2"' in x for x in lines), lines

        # 4. a cluster change with the same bad route: CDS (+ its endpoints) go out, the route is not resent,
        #    and the updated cluster does not sit warming until initial_fetch_timeout
        rds_pushes = server.registry.get_sample_value("pilot_xds_pushes_total", {"type": "rds"})
        server.update(
            snapshot(4, direct_port, proxy_port, "v3", direct_route=bad, connect_timeout_ms=2000), FULL
        )
        await poll(lambda: server.status()[0].types["CDS"]["synced_version"] == "4", 10, "CDS v4 ACKed")
        await poll(lambda: server.status()[0].types["EDS"]["synced_version"] == "4", 10, "EDS v4 ACKed")
        assert server.registry.get_sample_value("pilot_xds_pushes_total", {"type": "rds"}) == rds_pushes
        assert await envoy.stat("http.direct.rds.direct.update_rejected") == 1

        async def cluster_updated() -> bool:
            dump = await envoy.config_dump("dynamic_active_clusters")
            return any(c["cluster"].get("connect_timeout") == "2s" for c in dump)

        await poll(cluster_updated, 5, "updated cluster active (not warming)")
        assert await envoy.stat("cluster_manager.warming_clusters") == 0
        await poll(lambda: serves(proxy_url, "v2"), 5, "proxy listener through the updated cluster")

        # 5. fixed: everything SYNCED at 5, Envoy serves the new route; the last NACK stays on record
        server.update(snapshot(5, direct_port, proxy_port, "v5", connect_timeout_ms=2000), FULL)
        assert await server.wait_synced("5", timeout=10), server.status()
        await poll(lambda: serves(direct_url, "v5"), 10, "direct listener serving v5")
        (st,) = server.status()
        assert st.sync == {"CDS": SYNCED, "EDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
        assert st.types["RDS"]["last_nack"]["nonce"] == nack["nonce"]
        # named types are sent per resource: the changed route carries the ACKed version, the other one
        # keeps the version it was last sent with
        routes = await envoy.config_dump("dynamic_route_configs")
        versions = {r["route_config"]["name"]: r["version_info"] for r in routes}
        if delta:
            assert versions["direct"] != first["direct"] and versions["proxy"] == first["proxy"]
        else:
            assert versions["direct"] == st.types["RDS"]["acked_version"]
            assert versions["proxy"].startswith("1-")
        hist = server.registry.get_sample_value("pilot_proxy_convergence_time_seconds_count")
        assert hist and hist > 0

    assert os.path.exists(tmp_path / "envoy.log")


def test_delta_envoy_reconnecting_to_a_new_control_plane_gets_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(asyncio.wait_for(_reconnect(tmp_path, monkeypatch), 120))


async def _reconnect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A control plane restart: Envoy reconnects (delta) with the versions it holds, and the new server
    sends only what differs from them (here one route), while Envoy keeps serving throughout."""
    direct_port, proxy_port = free_ports("127.0.0.1", 2)
    direct_url = f"http://127.0.0.1:{direct_port}/"
    proxy_url = f"http://127.0.0.1:{proxy_port}/"

    async def serves(url: str, body: str) -> bool:
        return await asyncio.to_thread(http_get, url) == (200, body)

    async with mesh(tmp_path, delta=True) as (first, envoy):
        first.update(snapshot(1, direct_port, proxy_port, "v1"), FULL)
        assert await first.wait_synced("1", timeout=20), (first.status(), envoy.log_tail())
        await poll(lambda: serves(direct_url, "v1"), 10, "direct listener serving v1")
        async with restarted(first, monkeypatch) as (second, encoded):
            second.update(snapshot(2, direct_port, proxy_port, "v2"), FULL)
            assert await second.wait_connected(NODE_ID, timeout=30), envoy.log_tail()
            assert await second.wait_synced("2", timeout=30), (second.status(), envoy.log_tail())
            await poll(lambda: serves(direct_url, "v2"), 10, "direct listener serving v2")
            # the unchanged listener, route, cluster and endpoints (to the direct listener) still work
            assert await serves(proxy_url, "v2")
            assert encoded == ["direct"], encoded
            (st,) = second.status()
            assert st.sync == {"CDS": SYNCED, "EDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}


VHDS = typeurls.VIRTUAL_HOST


def vhds_table(name: str) -> any_pb2.Any:
    """A route configuration whose virtual hosts come over VHDS (as a delta sidecar's `http_proxy`)."""
    rc = route_pb2.RouteConfiguration(name=name)
    rc.vhds.config_source.ads.SetInParent()
    rc.vhds.config_source.resource_api_version = 2  # V3
    return pack(rc)


def vhost(table: str, host: str, body: str) -> any_pb2.Any:
    vh = route_components_pb2.VirtualHost(name=f"{table}/{host}", domains=[host])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    return pack(vh)


def vhds_snapshot(version: int, port: int, bodies: Mapping[str, str]) -> Snap:
    return Snap(
        str(version),
        {
            LDS: {"web": http_listener("web", port, "web")},
            RDS: {"web": vhds_table("web")},
            VHDS: {f"web/{host}": vhost("web", host, body) for host, body in bodies.items()},
        },
    )


def test_delta_envoy_routes_through_vhds_and_takes_changes_and_removals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(asyncio.wait_for(_vhds(tmp_path, monkeypatch), 120))


async def _vhds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the control plane relies on for the sidecar table: Envoy subscribes to VHDS (a wildcard),
    merges the virtual hosts into the table, applies changed and removed ones; and after a control-plane
    restart it holds them: only a changed one is sent again."""
    (port,) = free_ports("127.0.0.1", 1)
    url = f"http://127.0.0.1:{port}/"

    async def serves(host: str, expected: tuple[int, str]) -> bool:
        got = await asyncio.to_thread(http_get, url, 2.0, host)
        return got == expected

    async with mesh(tmp_path, delta=True) as (first, envoy):
        first.update(vhds_snapshot(1, port, {"a": "a1", "b": "b1"}), FULL)
        assert await first.wait_synced("1", timeout=20), (first.status(), envoy.log_tail())
        await poll(lambda: serves("a", (200, "a1")), 10, "host a served")
        assert await serves("b", (200, "b1"))
        assert await serves("c", (404, ""))

        first.update(vhds_snapshot(2, port, {"a": "a2", "c": "c1"}), FULL)
        assert await first.wait_synced("2", timeout=20), (first.status(), envoy.log_tail())
        await poll(lambda: serves("a", (200, "a2")), 10, "host a changed")
        assert await serves("c", (200, "c1"))
        assert await serves("b", (404, ""))  # removed_resources took it out of the table
        (st,) = first.status()
        assert st.sync["VHDS"] == SYNCED and st.types["VHDS"]["last_nack"] is None

        async with restarted(first, monkeypatch) as (second, encoded):
            second.update(vhds_snapshot(3, port, {"a": "a3", "c": "c1"}), FULL)
            assert await second.wait_connected(NODE_ID, timeout=30), envoy.log_tail()
            assert await second.wait_synced("3", timeout=30), (second.status(), envoy.log_tail())
            await poll(lambda: serves("a", (200, "a3")), 10, "host a changed after the restart")
            assert await serves("c", (200, "c1"))
            # Envoy reported the virtual hosts it holds (initial_resource_versions of its wildcard
            # VHDS subscription): only the changed one is sent again, nothing of LDS or RDS.
            assert encoded == ["web/a"], encoded
