"""Push fan-out of the xDS server to many ADS clients (DESIGN §6). Prints figures.

    .venv/bin/python bench/xds_fanout.py --clients 1000 --clusters 200 --pushes 3

The server runs in this process with a generator that builds once per snapshot and shares the packed
resources between all proxies (as the real generators do per scope). The clients run in a child process
(`--client-mode`), one gRPC channel (TCP connection) each, behaving like Envoy: CDS + LDS wildcard,
EDS for every cluster, RDS for the route, ACKing everything.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from isthmus.xds import typeurls
from isthmus.xds.server import PushRequest, XdsServer

CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE


def pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


@dataclass
class Snap:
    version: str
    resources: dict[str, dict[str, any_pb2.Any]]


def build(version: int, clusters: int, endpoints: int) -> Snap:
    cds, eds, vhosts = {}, {}, []
    for i in range(clusters):
        name = f"outbound|9080||svc-{i}.default.svc.cluster.local"
        c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
        c.connect_timeout.seconds = 10
        c.eds_cluster_config.eds_config.ads.SetInParent()
        c.eds_cluster_config.service_name = name
        cds[name] = pack(c)
        la = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        loc = la.endpoints.add()
        for j in range(endpoints):
            ep = loc.lb_endpoints.add().endpoint
            ep.address.socket_address.address = f"127.1.{(i * endpoints + j) // 250}.{(j % 250) + 1}"
            ep.address.socket_address.port_value = 9080 + version % 2
        eds[name] = pack(la)
        vhosts.append((f"svc-{i}.default.svc.cluster.local:9080", name))
    rc = route_pb2.RouteConfiguration(name="9080")
    for host, cl in vhosts:
        vh = rc.virtual_hosts.add(name=host, domains=[host])
        r = vh.routes.add()
        r.match.prefix = "/"
        r.route.cluster = cl
    lis = listener_pb2.Listener(name="virtualOutbound", stat_prefix=f"v{version}")
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = 15001
    return Snap(
        str(version),
        {CDS: cds, EDS: eds, RDS: {"9080": pack(rc)}, LDS: {"virtualOutbound": pack(lis)}},
    )


class SharedGenerator:
    """Same resources for every proxy (one scope): build once per snapshot, as xds.gen caches."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(
        self, snapshot: Snap, proxy: Any, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]:
        self.calls += 1
        data = snapshot.resources.get(type_url, {})
        if watched is None or len(watched) >= len(data):
            return data
        return {n: a for n, a in data.items() if n in watched}


async def client(port: int, i: int, clusters: list[str], ready: asyncio.Event, counter: list[int]) -> None:
    ch = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)],
    )
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch).StreamAggregatedResources()
    node = base_pb2.Node(id=f"sidecar~127.0.0.1~bench-{i}.default~default.svc.cluster.local")
    names = {CDS: [], LDS: [], EDS: clusters, RDS: ["9080"]}
    await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=CDS))
    await call.write(discovery_pb2.DiscoveryRequest(type_url=LDS))
    subscribed = set()
    try:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                return
            counter[0] += 1
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=resp.type_url,
                    response_nonce=resp.nonce,
                    version_info=resp.version_info,
                    resource_names=names[resp.type_url],
                )
            )
            if resp.type_url == CDS and EDS not in subscribed:
                subscribed.add(EDS)
                await call.write(discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=clusters))
            if resp.type_url == LDS and RDS not in subscribed:
                subscribed.add(RDS)
                await call.write(discovery_pb2.DiscoveryRequest(type_url=RDS, resource_names=["9080"]))
    finally:
        await ch.close()


async def client_mode(port: int, n: int, clusters: int) -> None:
    names = [f"outbound|9080||svc-{i}.default.svc.cluster.local" for i in range(clusters)]
    counter = [0]
    ready = asyncio.Event()
    tasks = [asyncio.create_task(client(port, i, names, ready, counter)) for i in range(n)]
    await asyncio.gather(*tasks, return_exceptions=True)


async def main(args: argparse.Namespace) -> None:
    gen = SharedGenerator()
    server = XdsServer(gen, debounce_after=0.05, debounce_max=0.5, push_concurrency=args.concurrency)
    port = await server.start("127.0.0.1", 0)
    snap = build(1, args.clusters, args.endpoints)
    server.update(snap, PushRequest(full=True))
    server.flush()
    t0 = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client-mode",
        "--port",
        str(port),
        "--clients",
        str(args.clients),
        "--clusters",
        str(args.clusters),
    )
    try:
        ok = await server.wait_synced("1", timeout=300)
        while len(server.status()) < args.clients:
            await asyncio.sleep(0.1)
        ok = await server.wait_synced("1", timeout=300)
        t1 = time.perf_counter()
        print(f"{args.clients} clients connected and synced (CDS+EDS+LDS+RDS ACKed): {t1 - t0:.2f}s ok={ok}")
        sizes = {
            k: len(b"".join(a.SerializeToString() for a in v.values())) for k, v in snap.resources.items()
        }
        print(
            "config per proxy: "
            + ", ".join(f"{typeurls.short_name(k)} {v / 1024:.0f} KiB" for k, v in sizes.items())
        )
        for v in range(2, 2 + args.pushes):
            snap = build(v, args.clusters, args.endpoints)
            sent0 = server.registry.get_sample_value("pilot_xds_send_bytes_total", {"type": "eds"}) or 0
            calls0 = gen.calls
            t0 = time.perf_counter()
            server.update(snap, PushRequest(full=True, reason="bench"))
            server.flush()
            ok = await server.wait_synced(str(v), timeout=300)
            dt = time.perf_counter() - t0
            sent = (
                server.registry.get_sample_value("pilot_xds_send_bytes_total", {"type": "eds"}) or 0
            ) - sent0
            print(
                f"full push v{v} (all EDS changed) to {args.clients} proxies: {dt:.2f}s until all ACKed, ok={ok}, "
                f"EDS bytes sent {sent / 1e6:.1f} MB, generator calls {gen.calls - calls0}, "
                f"encode cache hits/misses {server._cache.hits}/{server._cache.misses}"
            )
        v = 2 + args.pushes
        snap2 = Snap(str(v), dict(snap.resources))
        snap2.resources[EDS] = dict(snap.resources[EDS])
        name = "outbound|9080||svc-0.default.svc.cluster.local"
        la = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        snap2.resources[EDS][name] = pack(la)
        t0 = time.perf_counter()
        server.update(snap2, PushRequest(full=False, eds_only_clusters=frozenset({name})))
        server.flush()
        ok = await server.wait_synced(str(v), timeout=300)
        print(
            f"EDS-only push of one cluster to {args.clients} proxies: {time.perf_counter() - t0:.2f}s ok={ok}"
        )
        ru = resource.getrusage(resource.RUSAGE_SELF)
        print(f"server process: max RSS {ru.ru_maxrss / 1024:.0f} MiB, CPU {ru.ru_utime + ru.ru_stime:.1f}s")
    finally:
        child.terminate()
        await child.wait()
        await server.stop(1.0)  # a grace period lets gRPC finish the streams the clients just reset


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--endpoints", type=int, default=3)
    p.add_argument("--pushes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--client-mode", action="store_true")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    if a.client_mode:
        asyncio.run(client_mode(a.port, a.clients, a.clusters))
    else:
        asyncio.run(main(a))
