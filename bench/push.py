"""Push fan-out of the real control plane to many ADS clients (DESIGN §6). Prints a table, writes JSON.

    .venv/bin/python bench/push.py --clients 100 1000 [--services 1000] [--workloads 10] [--sotw] [--repeat 3]

The control plane is the one `isthmus up` runs (`isthmus.mesh.control_plane.ControlPlane` over a
`Store`, real MeshGenerator, XdsServer with its default debounce), in this process, loaded with
bench/generate.py's synthetic mesh (1,000 services x 5 endpoints, 100 VirtualServices, 100
DestinationRules). The clients run in a child process (`--client-mode`), one gRPC channel each, and
behave like Envoy: CDS + LDS wildcard, then EDS for the EDS clusters and RDS for the routes they got,
ACKing every response (responses are not decoded beyond the header unless their content digest is new).
Clients are sidecars of `--workloads` client workloads (one scope each: app=client-<w> in ns-<w % 10>),
so the generator builds each scope once per snapshot and the server encodes it once.

The clients speak delta xDS (`DeltaAggregatedResources`, what `isthmus up`'s Envoys speak), or with
`--sotw` state-of-the-world xDS (`StreamAggregatedResources`). A delta client subscribes CDS + LDS
wildcard, then keeps the clusters and listeners it
holds (applying each response's resources and removed_resources), derives the EDS and RDS names it needs
from them and, after ACKing the CDS/LDS response (type and nonce only), writes the names to subscribe and
to unsubscribe as a separate request without a nonce, as Envoy does. A CDS/LDS response is decoded once
per distinct content (bytes around the nonce). The real Envoys speak the same protocol; the table's
first line names the protocol, and for delta clients it lists how many responses, resources and removed
names they received per change. Clients advertise Envoy's HTTP/2 windows (256 MiB), not gRPC's 64 KiB.
`--repeat K` runs the three changes K times and prints the median p99 of each.

For each change the time is from the store write to each client's last ACK of a response carrying the
new snapshot (clients that got nothing new are not counted): an endpoint change (a pod of svc-1 moves:
EDS-only push), a VirtualService change (svc-0's weights: full push, RDS changes) and a new service
(Service + 5 pods: full push, CDS/EDS/RDS change). `recv p99` is the same up to when the last response
arrived at the client, before its ACK (the control plane reads ACKs after it has written an endpoint
push to every proxy, so a client's ACK can wait in gRPC flow control). The control plane's CPU time and bytes sent are
measured over each push; its RSS before the clients connect and once they are all synced.
`--envoys K` (default 10) adds K real Envoys started as `isthmus up` starts them (bootstrap, an SDS
agent with a mesh certificate, telemetry clusters), sidecars of the same workloads: the time until all of
them ACKed each change is reported too (`envoys s`), and they count as connected proxies.

bench/xds_fanout.py measures the server alone with a stand-in generator (one shared resource set).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from isthmus.xds import typeurls
from isthmus.xds.requests import read_varint

CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE
VHDS = typeurls.VIRTUAL_HOST
SHORT = {CDS: "CDS", EDS: "EDS", LDS: "LDS", RDS: "RDS", VHDS: "VHDS"}
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


# ------------------------------------------------------------------------------------------ clients


def scan_response(b: bytes, removed_field: int = 0) -> tuple[dict[int, str], int, list[str], tuple[int, int]]:
    """One pass over a serialized (Delta)DiscoveryResponse: its version (1), type_url (4) and nonce (5)
    strings, the number of resources (2), the strings of `removed_field` (delta: 6, removed_resources),
    and where the nonce field (tag to end) starts and ends; everything else is skipped."""
    i, n = 0, len(b)
    out: dict[int, str] = {}
    count, removed, span = 0, [], (0, 0)
    while i < n:
        start = i
        key, i = read_varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            ln, i = read_varint(b, i)
            if field == 2:
                count += 1
            elif field in (1, 4, 5):
                out[field] = b[i : i + ln].decode()
                if field == 5:
                    span = (start, i + ln)
            elif field == removed_field:
                removed.append(b[i : i + ln].decode())
            i += ln
        elif wire == 0:
            _, i = read_varint(b, i)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"wire type {wire}")
    return out, count, removed, span


def response_header(b: bytes) -> tuple[str, str, str]:
    """version_info (1), type_url (4), nonce (5) of a serialized DiscoveryResponse."""
    out = scan_response(b)[0]
    return out.get(1, ""), out.get(4, ""), out.get(5, "")


class Names:
    """EDS/RDS names to subscribe to, per CDS/LDS content digest (shared by the clients of a scope)."""

    def __init__(self) -> None:
        self.by_digest: dict[tuple[str, str], list[str]] = {}
        self._encoded: dict[int, tuple[list[str], bytes]] = {}

    def request(self, type_url: str, names: list[str], nonce: str = "", version: str = "") -> bytes:
        """A DiscoveryRequest as Envoy writes it (fields in number order), with the encoded names list
        shared by every client of the scope: re-encoding 1,200 EDS names per ACK in Python would make
        the client process, not the control plane, what the figures measure."""
        hit = self._encoded.get(id(names))
        if hit is None or hit[0] is not names:
            hit = self._encoded[id(names)] = (
                names,
                discovery_pb2.DiscoveryRequest(resource_names=names).SerializeToString(),
            )
        head = discovery_pb2.DiscoveryRequest(version_info=version).SerializeToString()
        tail = discovery_pb2.DiscoveryRequest(type_url=type_url, response_nonce=nonce).SerializeToString()
        return head + hit[1] + tail

    def get(self, type_url: str, version: str, raw: bytes) -> list[str]:
        key = (type_url, version.partition("-")[2])
        names = self.by_digest.get(key)
        if names is None:
            resp = discovery_pb2.DiscoveryResponse.FromString(raw)
            if type_url == CDS:
                names = []
                for a in resp.resources:
                    c = cluster_pb2.Cluster.FromString(a.value)
                    if c.type == cluster_pb2.Cluster.EDS:
                        names.append(c.name)
            else:
                from generate import route_names

                names = sorted(route_names({str(i): a for i, a in enumerate(resp.resources)}))
            self.by_digest[key] = names
        return names


# Envoy's HTTP/2 defaults for its xDS connection (initial_stream_window_size and
# initial_connection_window_size, 256 MiB): gRPC's own default (64 KiB, grown by BDP probes) makes a client
# stall the server with window updates on every 638 KB route table, which Envoy never does.
ENVOY_WINDOW = 256 << 20


def open_stream(port: int, method: str) -> tuple[Any, Any]:
    """A gRPC channel of its own and the ADS stream `method` on it (requests and responses as bytes)."""
    ch = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_receive_message_length", 256 << 20),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.http2.lookahead_bytes", ENVOY_WINDOW),
        ],
    )
    call = ch.stream_stream(
        method,
        request_serializer=lambda b: b,  # requests are written as bytes, see `request`
        response_deserializer=lambda b: b,
    )()
    return ch, call


def client_node(i: int, workload: int) -> base_pb2.Node:
    """Client `i`'s Node: a sidecar of workload `workload` (its scope), with istio-agent's metadata."""
    ns = f"ns-{workload % 10}"
    name = f"client-{workload}-{i}"
    ip = f"10.250.{i // 250}.{i % 250 + 1}"
    node = base_pb2.Node(id=f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local")
    md = {
        "NAMESPACE": ns,
        "NAME": name,
        "WORKLOAD_NAME": f"client-{workload}",
        "LABELS": {"app": f"client-{workload}"},
    }
    node.metadata.CopyFrom(struct_pb2.Struct())
    node.metadata.update(md)
    return node


def record_ack(mine: dict[str, list[float]], version: str, received: float) -> str:
    """Note when a response of `version`'s snapshot arrived and was ACKed, *before* the ACK is written: the
    write's completion reaches this process later than the ACK reaches the server, so recording after it
    let the parent's `acks` query (sent once the server has every ACK) miss clients still waiting for it."""
    snap = version.partition("-")[0]
    seen = mine.setdefault(snap, [0.0, 0.0])
    seen[0], seen[1] = max(seen[0], received), max(seen[1], time.monotonic())
    return snap


async def client(port: int, i: int, workload: int, acks: dict, names: Names, ready: list[int]) -> None:
    ch, call = open_stream(port, ADS_METHOD)
    node = client_node(i, workload)
    subscribed: dict[str, list[str]] = {CDS: [], LDS: []}
    await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=CDS).SerializeToString())
    await call.write(names.request(LDS, []))
    mine = acks.setdefault(i, {})
    last: dict[str, tuple[str, str]] = {}  # type -> (nonce, version) of the last response ACKed
    counted = False
    try:
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            received = time.monotonic()
            version, type_url, nonce = response_header(raw)
            follow: tuple[str, list[str]] | None = None
            if type_url in (CDS, LDS):
                want = names.get(type_url, version, raw)
                dep = EDS if type_url == CDS else RDS
                if subscribed.get(dep) != want:
                    follow = (dep, want)
            record_ack(mine, version, received)
            await call.write(names.request(type_url, subscribed.get(type_url, []), nonce, version))
            last[type_url] = (nonce, version)
            if follow is not None:
                subscribed[follow[0]] = follow[1]
                # Like Envoy, a changed subscription carries the type's last nonce and version (without a
                # nonce it is a fresh subscription, which the server answers in full).
                await call.write(names.request(follow[0], follow[1], *last.get(follow[0], ("", ""))))
            if not counted and len(subscribed) == 4:
                counted = True
                ready[0] += 1
    finally:
        await ch.close()


# Delta (incremental) xDS clients (`--delta`). A response carries only what is new or changed for the
# client (`resources`) and what went away (`removed_resources`), so a client keeps what it holds of the
# wildcard types, CDS (cluster -> is EDS) and LDS (listener -> route names its HCMs name), and derives
# its EDS and RDS subscriptions from that: after a CDS or LDS response it ACKs it, then writes the names
# that became needed (`resource_names_subscribe`) and those no longer needed
# (`resource_names_unsubscribe`) as a separate request without a nonce, as Envoy does.
# What a client holds is an immutable `Held` shared by the clients that got the same responses (the
# clients of a scope), and a response's content is parsed once (`Deltas`): per client a CDS/LDS
# response costs a header scan, a memcmp and a dict lookup, as in SotW.


def delta_header(b: bytes) -> tuple[str, str, str, int, list[str], int, int]:
    """Of a serialized DeltaDiscoveryResponse: system_version_info (1), type_url (4), nonce (5), the number
    of resources (2), removed_resources (6), and where the nonce field (tag to end) starts and ends."""
    out, count, removed, span = scan_response(b, removed_field=6)
    return out.get(1, ""), out.get(4, ""), out.get(5, ""), count, removed, span[0], span[1]


class Delta:
    """A CDS or LDS delta response's content, parsed once: `changed` maps each resource sent to what a
    client derives from it (CDS: whether the cluster is EDS; LDS: the route names the listener uses),
    `removed` the names that went away."""

    __slots__ = ("changed", "removed")

    def __init__(self, changed: dict[str, Any], removed: list[str]) -> None:
        self.changed, self.removed = changed, removed


class Deltas:
    """Parsed CDS/LDS delta responses by content. Clients in the same state get the same bytes except for
    the nonce, so a response is looked up by (type, system version, length without the nonce) and
    confirmed by comparing the bytes around the nonce (memcmp, no copy): a hit is exact whatever the
    server's nonces, and a miss just parses."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, int], list[tuple[bytes, bytes, Delta]]] = {}
        self.empty = {CDS: Held(CDS, {}, frozenset()), LDS: Held(LDS, {}, frozenset())}

    def get(self, type_url: str, version: str, raw: bytes, removed: list[str], start: int, end: int) -> Delta:
        key = (type_url, version, len(raw) - (end - start))
        seen = self.by_key.setdefault(key, [])
        for head, tail, delta in seen:
            if len(head) == start and raw.startswith(head) and raw.endswith(tail):
                return delta
        resp = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
        changed: dict[str, Any] = {}
        if type_url == CDS:
            for r in resp.resources:
                c = cluster_pb2.Cluster.FromString(r.resource.value)
                changed[r.name or c.name] = c.type == cluster_pb2.Cluster.EDS
        else:
            from generate import route_names

            for r in resp.resources:
                changed[r.name] = frozenset(route_names({r.name: r.resource}))
        delta = Delta(changed, removed)
        seen.append((raw[:start], raw[end:], delta))
        return delta


class Held:
    """What a delta client holds of CDS or LDS (`items`, see `Delta.changed`) and the EDS or RDS names that
    implies (`deps`). Immutable and shared; `apply` is memoized per delta, with the encoded subscription
    change it implies (None when there is none)."""

    __slots__ = ("type_url", "items", "deps", "next")

    def __init__(self, type_url: str, items: dict[str, Any], deps: frozenset[str]) -> None:
        self.type_url, self.items, self.deps = type_url, items, deps
        self.next: dict[int, tuple[Held, Delta, bytes | None]] = {}

    def apply(self, delta: Delta) -> tuple[Held, bytes | None]:
        hit = self.next.get(id(delta))  # deltas live as long as `Deltas` does: ids are not reused
        if hit is None or hit[1] is not delta:
            items = dict(self.items)
            for name in delta.removed:
                items.pop(name, None)
            items.update(delta.changed)
            if self.type_url == CDS:
                dep, deps = EDS, frozenset(name for name, eds in items.items() if eds)
            else:
                dep, deps = RDS, frozenset().union(*items.values())
            subscribe, unsubscribe = sorted(deps - self.deps), sorted(self.deps - deps)
            request = None
            if subscribe or unsubscribe:
                request = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=dep,
                    resource_names_subscribe=subscribe,
                    resource_names_unsubscribe=unsubscribe,
                ).SerializeToString()
            hit = self.next[id(delta)] = (Held(self.type_url, items, deps), delta, request)
        return hit[0], hit[2]


async def delta_client(
    port: int, i: int, workload: int, acks: dict, deltas: Deltas, ready: list[int], counts: dict
) -> None:
    """One delta ADS client (see above). `counts[snapshot][type]` sums responses, resources and removed
    names received, to see what the server sends."""
    ch, call = open_stream(port, DELTA_ADS_METHOD)
    first = discovery_pb2.DeltaDiscoveryRequest(node=client_node(i, workload), type_url=CDS)
    await call.write(first.SerializeToString())  # CDS and LDS: wildcard (no names)
    await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LDS).SerializeToString())
    held = {CDS: deltas.empty[CDS], LDS: deltas.empty[LDS]}
    got: set[str] = set()
    vhds = False
    mine = acks.setdefault(i, {})
    try:
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                return
            received = time.monotonic()
            version, type_url, nonce, n_resources, removed, start, end = delta_header(raw)
            follow = None
            if type_url in held:
                delta = deltas.get(type_url, version, raw, removed, start, end)
                held[type_url], follow = held[type_url].apply(delta)
            ack = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce)
            snap = record_ack(mine, version, received)
            c = counts.setdefault(snap, {}).setdefault(SHORT.get(type_url, type_url), [0, 0, 0])
            c[0], c[1], c[2] = c[0] + 1, c[1] + n_resources, c[2] + len(removed)
            await call.write(ack.SerializeToString())
            if follow is not None:
                await call.write(follow)  # ackless subscription change, right after the ACK
            if type_url == RDS and not vhds:
                # The sidecar table names VHDS for its virtual hosts: Envoy then subscribes to them (a
                # wildcard VirtualHost subscription, as Envoy's first VHDS request names nothing).
                vhds = True
                await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=VHDS).SerializeToString())
            if len(got) < 2 and type_url in held:
                got.add(type_url)
                if len(got) == 2:  # CDS and LDS answered, EDS and RDS subscribed
                    ready[0] += 1
    finally:
        await ch.close()


async def client_mode(port: int, n: int, workloads: int, first: int = 0, delta: bool = False) -> None:
    """Clients `first` .. `first + n - 1`, SotW or `delta`. Commands on stdin: `acks <snapshot version>`
    prints {client: last ACK time} for that version (and, for delta clients, what they received of it)."""
    acks: dict[int, dict[str, list[float]]] = {}
    ready = [0]
    counts: dict[str, dict[str, list[int]]] = {}
    if delta:
        deltas = Deltas()
        tasks = [
            asyncio.create_task(delta_client(port, i, i % workloads, acks, deltas, ready, counts))
            for i in range(first, first + n)
        ]
    else:
        names = Names()
        tasks = [
            asyncio.create_task(client(port, i, i % workloads, acks, names, ready))
            for i in range(first, first + n)
        ]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        if cmd == "acks":
            out = {i: a[arg][1] for i, a in acks.items() if arg in a}
            recv = {i: a[arg][0] for i, a in acks.items() if arg in a}
            reply: dict[str, Any] = {"ready": ready[0], "acks": out, "received": recv}
            if delta:
                reply["counts"] = counts.get(arg, {})
            print(json.dumps(reply), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------ control plane


def malloc_trim() -> None:
    """Give freed heap back to the OS, so RSS shows what is retained rather than past peaks."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def process_cpu_s(pid: int) -> float:
    """utime + stime of another process (the simulated clients), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sent_bytes(registry: Any) -> dict[str, float]:
    out = {}
    for t in ("cds", "eds", "lds", "rds", "vhds"):
        out[t] = registry.get_sample_value("pilot_xds_send_bytes_total", {"type": t}) or 0.0
    return out


class Children:
    """The client processes: each runs a share of the clients (one process would need more than the one
    core it can use to receive 1,000 route tables: the figures would measure it, not the control plane)."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    async def acks(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": 0, "acks": {}}
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"acks {version}\n".encode())
            await proc.stdin.drain()
            got = json.loads(await proc.stdout.readline())
            out["ready"] += got["ready"]
            out["acks"].update(got["acks"])
            out.setdefault("received", {}).update(got["received"])
            for t, c in got.get("counts", {}).items():  # delta clients: [responses, resources, removed]
                total = out.setdefault("counts", {}).setdefault(t, [0, 0, 0])
                total[:] = [a + b for a, b in zip(total, c, strict=True)]
        return out

    def cpu_s(self) -> float:
        return sum(process_cpu_s(p.pid) for p in self.procs)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.write(b"quit\n")
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def gc_pause_recorder() -> list[float]:
    """A list that collects the duration of every cyclic-GC pass from now on (the control plane's share
    of a push's CPU that is garbage collection, not work)."""
    import gc

    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return pauses


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


async def start_envoys(
    k: int, port: int, workloads: int, workdir: Path, delta: bool = False
) -> tuple[Any, list[Any]]:
    """`k` real Envoys as `isthmus up` runs them (bootstrap, SDS agent with a mesh certificate, telemetry
    clusters), sidecars of the same workloads (scopes) as the simulated clients, speaking delta xDS if
    `delta` (and the bootstrap builder can say so)."""
    import socket

    from isthmus.agent.bootstrap import build_bootstrap
    from isthmus.agent.envoy import EnvoyProcess
    from isthmus.mesh.security import MeshSecurity
    from isthmus.model.proxy import Proxy
    from isthmus.telemetry import envoy as telemetry_envoy

    sec = MeshSecurity(workdir / "security", "cluster.local")
    await sec.start("127.78.0.1")
    envoys = []
    for i in range(k):
        w = i % workloads
        ns, name, ip = f"ns-{w % 10}", f"envoy-{w}-{i}", f"127.77.0.{i + 1}"
        proxy = Proxy(
            id=Proxy.node_id("sidecar", ip, name, ns),
            kind="sidecar",
            ip=ip,
            namespace=ns,
            instance=name,
            workload=f"client-{w}",
            labels={"app": f"client-{w}"},
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            admin_port = s.getsockname()[1]
        sds_socket = await sec.start_pod(ns, name, "default", workdir / f"agent-{i}", [])
        bootstrap = build_bootstrap(
            proxy,
            xds_address=("127.0.0.1", port),
            admin_port=admin_port,
            health_port=None,
            prometheus_port=None,
            sds_socket=sds_socket,
            extra_static_clusters=telemetry_envoy.static_clusters(("127.0.0.1", port), ("127.0.0.1", 15014)),
            runtime=telemetry_envoy.RUNTIME_FLAGS,
            delta_xds=delta,
        )
        envoy = EnvoyProcess(proxy, bootstrap, workdir / f"envoy-{i}", concurrency=1)
        await envoy.start()
        envoys.append(envoy)
    return sec, envoys


async def run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    import generate as g

    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.mesh.control_plane import ControlPlane

    store = Store()
    store.apply(loader.load_text(g.mesh_yaml(args.services), "bench.yaml"), "bench")
    for pod in g.mesh_pods(args.services, args.endpoints):
        store.upsert_pod(pod)
    cp = ControlPlane(store)
    port = await cp.start("127.0.0.1", 0)
    await asyncio.sleep(0.2)
    import gc

    gc.collect()
    malloc_trim()
    gc_pauses = gc_pause_recorder()
    rss0, cpu0 = rss_mib(), cpu_s()
    t0 = time.monotonic()
    shares = [n // args.client_procs + (k < n % args.client_procs) for k in range(args.client_procs)]
    procs = []
    for k, share in enumerate(shares):
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client-mode", "--port", str(port), "--clients", str(share),
            "--first", str(sum(shares[:k])), "--workloads", str(args.workloads), *(["--delta"] if args.delta else ["--sotw"]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        ))  # fmt: skip
    child = Children(procs)
    import tempfile

    tmpdir = tempfile.TemporaryDirectory(prefix="isthmus-push-")
    sec, envoys = (
        await start_envoys(args.envoys, port, args.workloads, Path(tmpdir.name), args.delta)
        if args.envoys
        else (None, [])
    )
    envoy_ids = {e.proxy.id for e in envoys}
    result: dict[str, Any] = {
        "clients": n,
        "protocol": "delta" if args.delta else "sotw",
        "envoys": len(envoys),
        "envoys_protocol": "delta" if args.delta else "sotw",
        "workloads": args.workloads,
    }
    try:
        version = cp.snapshot.version
        while True:
            st = await child.acks(version)
            if st["ready"] >= n and len(cp.xds.status()) >= n + len(envoys):
                break
            if time.monotonic() - t0 > args.timeout:
                raise TimeoutError(
                    f"only {st['ready']} of {n} clients subscribed, {len(cp.xds.status())} proxies connected"
                )
            await asyncio.sleep(0.5)
        ok = await cp.wait_pushed(version, timeout=args.timeout)
        sync_s = time.monotonic() - t0
        print(f"[{n} clients] initial sync {sync_s:.1f}s ok={ok}", file=sys.stderr, flush=True)
        cpu1 = cpu_s()
        rss_peak = rss_mib()
        gc.collect()
        malloc_trim()
        rss1 = rss_mib()
        result["initial"] = {
            "sync_s": sync_s,
            "ok": ok,
            "cpu_s": cpu1 - cpu0,
            "bytes": sum(sent_bytes(cp.metrics).values()),
        }
        if args.delta:
            result["initial"]["received_counts"] = (await child.acks(version)).get("counts", {})
        result["memory"] = {
            "rss_base_mib": rss0,
            "rss_synced_untrimmed_mib": rss_peak,
            "rss_synced_mib": rss1,
            "per_proxy_kib": (rss1 - rss0) * 1024 / (n + len(envoys)),
        }
        pods = {(p.namespace, p.name): p for p in store.pods()}

        # Each round changes something again: the pod moves to another address, the weights flip back,
        # another service is added.
        def endpoint_change(rnd: int) -> None:
            p = pods[("ns-1", "svc-1-0")]
            store.upsert_pod(dataclasses.replace(p, ip=f"10.251.0.{rnd + 1}"))

        def vs_change(rnd: int) -> None:
            text = g.mesh_yaml(1, vs=1, dr=0).split("\n---\n")
            vs = [d for d in text if "kind: VirtualService" in d][0]
            if rnd % 2 == 0:
                vs = vs.replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20")
            store.apply(loader.load_text(vs, "vs.yaml"), "bench")

        def new_service(rnd: int) -> None:
            name = f"svc-new{rnd or ''}"
            for j in range(5):
                store.upsert_pod(g.Pod(f"{name}-{j}", "ns-0", f"10.252.{rnd}.{j + 1}", {"app": name, "version": "v1"}, workload=f"{name}-v1", service_account=name))  # fmt: skip
            store.apply(loader.load_text(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns-0}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 8080}}]", "new.yaml"), "bench")  # fmt: skip

        result["changes"] = {}
        kinds = (("endpoint", endpoint_change), ("virtualservice", vs_change), ("new service", new_service))
        for rnd, (kind, change_kind) in ((r, k) for r in range(args.repeat) for k in kinds):
            label = kind if args.repeat == 1 else f"{kind} #{rnd + 1}"

            def change(rnd: int = rnd, change_kind: Any = change_kind) -> None:
                change_kind(rnd)

            await asyncio.sleep(1.0)
            gc.collect()
            before_bytes, before_cpu = sent_bytes(cp.metrics), cpu_s()
            before_clients = child.cpu_s()
            gc_pauses.clear()
            prof = None
            if kind in args.profile and rnd == 0:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t_change = time.monotonic()
            change()
            snap = cp.current()
            version = snap.version
            envoys_synced: list[float] = []
            if envoy_ids:
                waiter = asyncio.create_task(
                    cp.xds.wait_synced(str(version), envoy_ids, timeout=args.timeout)
                )
                waiter.add_done_callback(
                    lambda _t, out=envoys_synced, t0=t_change: out.append(time.monotonic() - t0)
                )
            ok = await cp.wait_pushed(version, timeout=args.timeout)
            if envoy_ids:
                await waiter
            t_synced = time.monotonic() - t_change
            if prof is not None:
                prof.disable()
                import pstats

                path = Path(args.out).with_suffix(f".{n}.{label.replace(' ', '_')}.prof.txt")
                with open(path, "w") as f:
                    pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(40)
                    pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(60)
            cpu = cpu_s() - before_cpu
            clients_cpu = child.cpu_s() - before_clients
            print(f"[{n} clients] {label}: all synced {t_synced:.2f}s ok={ok}", file=sys.stderr, flush=True)
            after_bytes = sent_bytes(cp.metrics)
            st = await child.acks(version)
            lat = [t - t_change for t in st["acks"].values()]
            got = [t - t_change for t in st["received"].values()]
            result["changes"][label] = {
                "snapshot": version,
                "ok": ok,
                "clients_updated": len(lat),
                "p50_s": pct(lat, 0.5),
                "p90_s": pct(lat, 0.9),
                "p99_s": pct(lat, 0.99),
                "received_p99_s": pct(got, 0.99),
                "max_s": max(lat) if lat else float("nan"),
                "all_synced_s": t_synced,
                "envoys_synced_s": envoys_synced[0] if envoys_synced else None,
                "cp_cpu_s": cpu,
                "gc_s": sum(gc_pauses),
                "clients_cpu_s": clients_cpu,
                "gc_collections": len(gc_pauses),
                "bytes": {k: after_bytes[k] - before_bytes[k] for k in after_bytes},
            }
            if args.delta:  # over all delta clients: [responses, resources, removed names] by type
                result["changes"][label]["received_counts"] = st.get("counts", {})
    finally:
        await child.stop()
        for e in envoys:
            await e.stop()
        if sec is not None:
            await sec.stop()
        tmpdir.cleanup()
        await cp.stop()
    return result


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    protocol = "delta (incremental) xDS" if args.delta else "state-of-the-world xDS"
    lines = [
        f"protocol: {protocol}; mesh: {args.services} services x {args.endpoints} endpoints, 100 VS, 100 DR; clients are sidecars of "
        f"{args.workloads} workloads (scopes), full mesh visibility; plus {args.envoys} real Envoys of the same "
        "workloads ('envoys s': until all of them ACKed the change)",
        "",
        f"{'clients':>7} {'change':<15} {'updated':>7} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7} {'max s':>7} "
        f"{'recv p99':>8} {'synced s':>8} {'envoys s':>8} {'CP cpu s':>8} {'gc s':>5} {'cl cpu':>6} {'MB sent':>8}  by type",
    ]
    for r in results:
        ini = r["initial"]
        lines.append(
            f"{r['clients']:>7} {'initial sync':<15} {r['clients']:>7} {'':>7} {'':>7} {'':>7} {'':>7} "
            f"{'':>8} {ini['sync_s']:>8.2f} {'':>8} {ini['cpu_s']:>8.2f} {'':>5} {'':>6} {ini['bytes'] / 1e6:>8.1f}"
        )
        for label, c in r["changes"].items():
            by = " ".join(f"{k.upper()} {v / 1e6:.1f}" for k, v in c["bytes"].items() if v)
            lines.append(
                f"{r['clients']:>7} {label:<15} {c['clients_updated']:>7} {c['p50_s']:>7.3f} {c['p90_s']:>7.3f} "
                f"{c['p99_s']:>7.3f} {c['max_s']:>7.3f} {c.get('received_p99_s', float('nan')):>8.3f} "
                f"{c['all_synced_s']:>8.3f} "
                f"{'' if c.get('envoys_synced_s') is None else format(c['envoys_synced_s'], '.3f'):>8} "
                f"{c['cp_cpu_s']:>8.2f} {c.get('gc_s', 0.0):>5.2f} {c.get('clients_cpu_s', 0.0):>6.2f} "
                f"{sum(c['bytes'].values()) / 1e6:>8.1f}  {by}"
            )
        if any("received_counts" in c for c in [ini, *r["changes"].values()]):
            lines.append(f"{'':>7} received by the clients (responses/resources/removed names):")
            for label, c in [("initial sync", ini), *r["changes"].items()]:
                got = "  ".join(
                    f"{t} {v[0]}/{v[1]}/{v[2]}" for t, v in sorted(c.get("received_counts", {}).items())
                )
                lines.append(f"{'':>7} {label:<15} {got}")
        if args.repeat > 1:
            for kind in ("endpoint", "virtualservice", "new service"):
                p99s = [c["p99_s"] for label, c in r["changes"].items() if label.rsplit(" #", 1)[0] == kind]
                cpus = [
                    c["cp_cpu_s"] for label, c in r["changes"].items() if label.rsplit(" #", 1)[0] == kind
                ]
                lines.append(
                    f"{'':>7} {kind:<15} p99 median {statistics.median(p99s):.3f} s "
                    f"(min {min(p99s):.3f}, max {max(p99s):.3f}), CP cpu median {statistics.median(cpus):.2f} s "
                    f"over {len(p99s)} rounds"
                )
        m = r["memory"]
        lines.append(
            f"{'':>7} control plane RSS {m['rss_base_mib']:.0f} MiB before clients, {m['rss_synced_mib']:.0f} MiB "
            f"synced (after malloc_trim; {m['rss_synced_untrimmed_mib']:.0f} MiB before): "
            f"{m['per_proxy_kib']:.0f} KiB per connected proxy"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        dn = b["clients"] - a["clients"]
        if dn > 0:
            marginal = (b["memory"]["rss_synced_mib"] - a["memory"]["rss_synced_mib"]) * 1024 / dn
            lines.append(
                f"marginal control-plane memory per proxy ({a['clients']} -> {b['clients']} clients, synced RSS): "
                f"{marginal:.0f} KiB  (target <= 1024 KiB: {'ok' if marginal <= 1024 else 'MISSED'})"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--workloads", type=int, default=10)
    ap.add_argument("--envoys", type=int, default=10, help="real Envoys besides the simulated clients")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the three changes (medians printed)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "push.json"))
    ap.add_argument(
        "--profile",
        nargs="*",
        default=[],
        help="changes to run under cProfile (endpoint, virtualservice, ...)",
    )
    ap.add_argument("--client-procs", type=int, default=1, help="processes the simulated clients run in")
    ap.add_argument(
        "--delta",
        action="store_true",
        help="clients and real Envoys speak delta xDS (the default, as isthmus up)",
    )
    ap.add_argument("--sotw", dest="delta", action="store_false", help="state of the world instead")
    ap.set_defaults(delta=True)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--client-mode", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.client_mode:
        asyncio.run(client_mode(args.port, args.clients[0], args.workloads, args.first, args.delta))
        return
    if len(args.clients) == 1:
        results = [asyncio.run(run(args.clients[0], args))]
    else:
        # One process per client count: RSS per proxy must not see the previous run's heap.
        import subprocess
        import tempfile

        results = []
        for n in args.clients:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                cmd = [sys.executable, __file__, "--clients", str(n), "--out", tmp.name]
                cmd += ["--services", str(args.services), "--endpoints", str(args.endpoints)]
                cmd += ["--workloads", str(args.workloads), "--timeout", str(args.timeout)]
                cmd += ["--envoys", str(args.envoys), "--client-procs", str(args.client_procs)]
                cmd += ["--profile", *args.profile] if args.profile else []
                cmd += ["--delta"] if args.delta else ["--sotw"]
                cmd += ["--repeat", str(args.repeat)]
                subprocess.run(cmd, check=True)
                results += json.loads(Path(tmp.name).read_text())["results"]
    print()
    print(table(results, args))
    out = {"args": vars(args), "results": results, "load1": os.getloadavg()[0], "cpus": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
