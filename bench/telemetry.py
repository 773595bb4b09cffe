"""What telemetry costs: sidecar throughput with the metrics module, ALS or none (and tracing), control-plane CPU.

    .venv/bin/python bench/telemetry.py [--duration 10] [--connections 32] [--rate 1000] [--json bench/results/telemetry.json]

Set-up (loopback, real Envoys): ``wrk`` -> sidecar Envoy (concurrency 1, outbound HCM, the variant under
test) -> backend Envoy (a direct response, so the backend is never the bottleneck). The control plane's
telemetry backend (`Telemetry` behind a gRPC server, the UDP receiver of the in-proxy metrics module and
the HTTP API with the Zipkin collector) runs in a child process, whose CPU time is read from /proc.

Variants: ``none`` (router only), ``module`` (the default pipeline, as the generator writes it for a proxy
whose agent loaded the in-proxy metrics module: grpc_stats, the module's logger reporting over UDP once a
second to the child's receiver, and the gRPC access loggers of gRPC and of failed requests, which this
load of 200s never triggers), ``als`` (ISTHMUS_PROXY_METRICS "false": the gRPC access logger of every
request + grpc_stats), ``als-bare`` (the logger without its custom tags and filter state, to see what they cost;
the metrics then lack principals and gRPC details), ``als+tracing`` (plus the Zipkin tracer at 100% sampling to the built-in collector).

Figures:
- requests/s through the sidecar at full speed (wrk), and the sidecar's CPU per 1,000 requests;
- control-plane CPU per 1,000 requests/s: the telemetry process's CPU during a run paced at `--rate`
  requests/s (one ALS entry per request here; a request crossing two sidecars is two entries), and the
  same figure derived from the full-speed run;
- in-process ingestion cost per entry (no gRPC), the floor of the above;
- the module's in-process figure: the receiver's parse + ingest of realistic datagrams (`--module-proxies`
  proxies of `--module-series` series each, every series grown since its last report: the worst case),
  as CPU per datagram and per series, series/s one core absorbs and proxies one core serves at the
  module's 1 s flush.

Every run checks what the control plane counted: the growth of istio_requests_total (its
/api/telemetry/metrics) against the requests wrk and the paced client saw answered.

Needs ``wrk`` (``apt-get install -y wrk``); without it the full-speed runs are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from isthmus.agent.envoy import EnvoyProcess
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import envoy as tenvoy

SIDECAR_IP, BACKEND_IP = "127.80.0.10", "127.80.0.11"
OUT_PORT, BACKEND_PORT = 15001, 8080
HOST = "backend.default.svc.cluster.local"
CLUSTER = f"outbound|{BACKEND_PORT}||{HOST}"
CLK = os.sysconf("SC_CLK_TCK")

SIDECAR = Proxy(
    id=Proxy.node_id("sidecar", SIDECAR_IP, "client-0", "default"),
    kind="sidecar",
    ip=SIDECAR_IP,
    namespace="default",
    instance="client-0",
    workload="client",
    labels={"app": "client", "version": "v1"},
    service_account="client",
)
BACKEND = Proxy(
    id=Proxy.node_id("sidecar", BACKEND_IP, "backend-0", "default"),
    kind="sidecar",
    ip=BACKEND_IP,
    namespace="default",
    instance="backend-0",
    workload="backend",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


# ---------------------------------------------------------------------------------------------- server


def serve(port_file: str) -> None:
    """Child process: the control plane's telemetry backend (gRPC ALS, the metrics module's UDP receiver,
    HTTP API with Zipkin)."""
    import grpc
    from aiohttp import web

    from isthmus.telemetry import Telemetry
    from isthmus.telemetry.resolver import ServiceInfo, StaticResolver, Workload

    resolver = StaticResolver(
        workloads={
            SIDECAR_IP: Workload("client", "default", {"app": "client", "version": "v1"}, "client"),
            BACKEND_IP: Workload("backend", "default", {"app": "backend", "version": "v1"}, "backend"),
        },
        services=[ServiceInfo(HOST, "backend", "default")],
    )

    async def main() -> None:
        # The module's reports name their proxy by node id; the xDS server would know it, here the bench does.
        t = Telemetry(resolver=lambda: resolver, proxy_lookup={SIDECAR.id: SIDECAR}.get)
        stats_port = await t.start_receiver("127.0.0.1", 0)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(t.grpc_handlers())
        grpc_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        t.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        api_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", api_port).start()
        Path(port_file).write_text(json.dumps({"grpc": grpc_port, "api": api_port, "stats": stats_port}))
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- envoys


def module_proxy(stats_port: int) -> Proxy:
    """The sidecar as the generator sees it when its agent loaded the in-proxy metrics module: the node
    metadata names where the module reports (the control plane's UDP receiver)."""
    meta = {**SIDECAR.metadata, tenvoy.STATS_COLLECTOR_KEY: f"127.0.0.1:{stats_port}"}
    return dataclasses.replace(SIDECAR, metadata=meta)


def sidecar_bootstrap(
    variant: str, grpc_port: int, api_port: int, admin_port: int, stats_port: int | None = None
) -> dict[str, Any]:
    snapshot = Snapshot.build(1, [], [])
    proxy = SIDECAR
    if variant == "module":
        if stats_port is None:
            raise ValueError("the module variant needs the receiver's UDP port")
        proxy = module_proxy(stats_port)
    m = hcm_pb2.HttpConnectionManager(stat_prefix="outbound", codec_type=hcm_pb2.HttpConnectionManager.AUTO)
    rc = route_pb2.RouteConfiguration(name="out")
    r = rc.virtual_hosts.add(name="all", domains=["*"]).routes.add(name="default")
    r.match.prefix = "/"
    r.route.cluster = CLUSTER
    m.route_config.CopyFrom(rc)
    if variant == "als-bare":  # ALS without the custom tags and gRPC filter state (what those cost)
        from envoy.config.accesslog.v3 import accesslog_pb2
        from envoy.extensions.access_loggers.grpc.v3 import als_pb2

        bare = als_pb2.HttpGrpcAccessLogConfig(common_config=tenvoy.common_config("outbound", {}))
        m.access_log.append(
            accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc", typed_config=tenvoy._pack(bare))
        )
    elif variant != "none":
        m.http_filters.append(tenvoy.grpc_stats_filter())
        m.access_log.extend(tenvoy.http_access_loggers(snapshot, proxy, "outbound"))
    if variant == "als+tracing":
        tracing = tenvoy.tracing_config(snapshot, SIDECAR)
        assert tracing is not None
        m.tracing.CopyFrom(tracing)
    m.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    lst = listener_pb2.Listener(name="virtualOutbound", traffic_direction=2)
    lst.address.socket_address.address = SIDECAR_IP
    lst.address.socket_address.port_value = OUT_PORT
    lst.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(m)
    backend = {
        "name": CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": BACKEND_IP, "port_value": BACKEND_PORT}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    return {
        "node": {"id": proxy.id, "cluster": "client.default", "metadata": proxy.node_metadata()},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": dict(tenvoy.RUNTIME_FLAGS)}]},
        "cluster_manager": {
            "upstream_bind_config": {"source_address": {"address": SIDECAR_IP, "port_value": 0}}
        },
        "static_resources": {
            "listeners": [json_format.MessageToDict(lst, preserving_proto_field_name=True)],
            "clusters": [backend, *tenvoy.static_clusters(("127.0.0.1", grpc_port), ("127.0.0.1", api_port))],
        },
    }


def backend_bootstrap(admin_port: int) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "backend",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "x" * 200}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "node": {"id": BACKEND.id, "cluster": "backend.default"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "backend",
                    "address": {"socket_address": {"address": BACKEND_IP, "port_value": BACKEND_PORT}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ]
        },
    }


# ---------------------------------------------------------------------------------------------- load


def wrk(duration: float, connections: int) -> tuple[float, int]:
    """Requests/s and requests answered (wrk's count)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "-H",
            f"Host: {HOST}",
            f"http://{SIDECAR_IP}:{OUT_PORT}/bench",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in ", out)
    if not m or not n:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(m.group(1)), int(n.group(1))


async def paced(rate: float, duration: float, workers: int = 32) -> int:
    """Send `rate` requests/s for `duration` s through the sidecar; returns the requests answered."""
    import aiohttp

    total = int(rate * duration)
    queue: asyncio.Queue[int] = asyncio.Queue()
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while True:
            await queue.get()
            try:
                async with session.get(f"http://{SIDECAR_IP}:{OUT_PORT}/paced", headers={"Host": HOST}) as r:
                    await r.read()
                    done += 1
            except aiohttp.ClientError:
                pass
            finally:
                queue.task_done()

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(workers)]
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(i)
        await queue.join()
        for t in tasks:
            t.cancel()
    return done


def status(api_port: int) -> dict[str, Any]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{api_port}/api/telemetry/status", timeout=5) as r:
        return json.loads(r.read())


def api_get(api_port: int, path: str) -> bytes:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{api_port}{path}", timeout=5) as r:
        return r.read()


def requests_counted(api_port: int) -> int:
    """The control plane's istio_requests_total, summed over its series (Prometheus text)."""
    total = 0.0
    for line in api_get(api_port, "/api/telemetry/metrics").decode().splitlines():
        if line.startswith("istio_requests_total{") or line.startswith("istio_requests_total "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def wait_counted(api_port: int, at_least: int, timeout: float = 10.0) -> int:
    """istio_requests_total once it reaches `at_least` (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        n = requests_counted(api_port)
        if n >= at_least or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.25)


async def wait_entries(api_port: int, at_least: int, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = status(api_port)
        if st["entries"] >= at_least or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------- micro


def ingest_micro(entries: int = 50_000, batch: int = 100) -> dict[str, float]:
    """In-process ingestion of synthetic ALS messages: CPU µs per entry (no gRPC, no Envoy)."""
    from envoy.data.accesslog.v3 import accesslog_pb2 as al
    from envoy.service.accesslog.v3 import als_pb2

    from isthmus.telemetry import Telemetry
    from isthmus.telemetry.resolver import ServiceInfo, StaticResolver, Workload

    resolver = StaticResolver(
        workloads={BACKEND_IP: Workload("backend", "default", {"app": "backend"}, "backend")},
        services=[ServiceInfo(HOST, "backend", "default")],
    )
    t = Telemetry(resolver=lambda: resolver)
    msg = als_pb2.StreamAccessLogsMessage()
    msg.identifier.log_name = tenvoy.LOG_NAMES["outbound"]
    msg.identifier.node.id = SIDECAR.id
    msg.identifier.node.metadata.update(SIDECAR.node_metadata())
    for i in range(batch):
        e = msg.http_logs.log_entry.add()
        c = e.common_properties
        c.access_log_type = al.DownstreamEnd
        c.start_time.GetCurrentTime()
        c.duration.FromMilliseconds(i % 40)
        c.upstream_cluster = CLUSTER
        c.upstream_remote_address.socket_address.address = BACKEND_IP
        c.upstream_remote_address.socket_address.port_value = BACKEND_PORT
        c.downstream_remote_address.socket_address.address = "127.0.0.1"
        c.downstream_wire_bytes_received, c.downstream_wire_bytes_sent = 120, 340
        c.custom_tags["upstream_service_time"] = "1"
        e.request.request_method = 1
        e.request.authority = HOST
        e.request.path = f"/bench/{i}"
        e.request.request_id = "6b4c5a2e-6a0f-4a1e-9b1e-0e1f2a3b4c5d"
        e.response.response_code.value = 200 if i % 20 else 503
    data = msg.SerializeToString()
    info = t.register_node(msg.identifier.node)
    rounds = entries // batch
    start = time.process_time()
    for _ in range(rounds):
        t.ingest(info, "outbound", als_pb2.StreamAccessLogsMessage.FromString(data), data)
    cpu = time.process_time() - start
    return {"entries": rounds * batch, "cpuSeconds": cpu, "usPerEntry": cpu / (rounds * batch) * 1e6}


# The module's in-process figure: a synthetic mesh whose proxies report `series` series each. Outbound
# series (80%) go to MICRO_SERVICES services of MICRO_ENDPOINTS endpoints each (a series per endpoint,
# as the module keys its series by upstream address) and response code; inbound series (20%) come from
# MICRO_CLIENTS client workloads per response code; all over mTLS (SANs set).
MICRO_SERVICES, MICRO_ENDPOINTS, MICRO_CLIENTS = 10, 5, 10
MICRO_CODES = (200, 503, 404, 500, 302, 401, 403, 429)
MICRO_PER_SECOND = 10  # requests per series per report (every series grows: the worst case)


def _hist(count: int, bucket: int) -> str:
    return " ".join(str(count) if i == bucket else "0" for i in range(20))


def _san(name: str) -> str:
    return f"spiffe://cluster.local/ns/default/sa/{name}"


def micro_mesh(proxies: int) -> tuple[list[Proxy], Any]:
    """The reporting proxies (pods of `web`) and a resolver knowing the services, endpoints and clients."""
    from isthmus.telemetry.resolver import ServiceInfo, StaticResolver, Workload

    workloads: dict[str, Workload] = {}
    services = [ServiceInfo("web.default.svc.cluster.local", "web", "default")]
    for i in range(MICRO_SERVICES):
        services.append(ServiceInfo(f"svc-{i}.default.svc.cluster.local", f"svc-{i}", "default"))
        for j in range(MICRO_ENDPOINTS):
            workloads[f"10.2.{i}.{j + 1}"] = Workload(f"svc-{i}", "default", {"app": f"svc-{i}"}, f"svc-{i}")
    for c in range(MICRO_CLIENTS):
        workloads[f"10.3.0.{c + 1}"] = Workload(
            f"client-{c}", "default", {"app": f"client-{c}"}, f"client-{c}"
        )
    pods = []
    for k in range(proxies):
        ip = f"10.1.{k // 250}.{k % 250 + 1}"
        pods.append(
            Proxy(
                id=Proxy.node_id("sidecar", ip, f"web-{k}", "default"),
                kind="sidecar",
                ip=ip,
                namespace="default",
                instance=f"web-{k}",
                workload="web",
                labels={"app": "web"},
                service_account="web",
            )
        )
        workloads[ip] = Workload("web", "default", {"app": "web"}, "web")
    inbound = {(p.instance, 8080): services[0] for p in pods}
    return pods, StaticResolver(workloads=workloads, services=services, inbound=inbound)


def micro_series_lines(proxy: Proxy, series: int, round_: int) -> list[str]:
    """`series` HTTP series lines of `proxy`'s module after `round_` reports (cumulative values)."""
    from isthmus.telemetry.statsmodule import SEP

    n_in = series // 5
    n_out = series - n_in
    outbound = [(c, i, j) for c in MICRO_CODES for i in range(MICRO_SERVICES) for j in range(MICRO_ENDPOINTS)]
    inbound = [(c, k) for c in MICRO_CODES for k in range(MICRO_CLIENTS)]
    if n_out > len(outbound) or n_in > len(inbound):
        raise ValueError(f"at most {len(outbound) + len(inbound)} series per proxy")
    n = round_ * MICRO_PER_SECOND

    def values(code: int) -> list[str]:
        size = 200 if code == 200 else 20
        return [
            str(n),
            _hist(n, 2),
            str(3 * n),
            _hist(n, 0),
            "0",
            _hist(n, 5 if size == 200 else 3),
            str(size * n),
            str(350 * n),
            str(120 * n),
            "0",
            "0",
        ]

    lines = []
    for code, i, j in outbound[:n_out]:
        host = f"svc-{i}.default.svc.cluster.local"
        key = ["H", "outbound", str(code), "-" if code < 500 else "URX", f"outbound|8080||{host}", "default"]
        key += [
            f"10.2.{i}.{j + 1}",
            proxy.ip,
            "15001",
            _san(f"svc-{i}"),
            _san("web"),
            "",
            "",
            "",
            "",
            "http",
            "",
        ]
        lines.append(SEP.join(key + values(code)))
    for code, k in inbound[:n_in]:
        key = ["H", "inbound", str(code), "-", "inbound|8080||", "default", "127.0.0.6", f"10.3.0.{k + 1}"]
        key += ["8080", "", "", _san(f"client-{k}"), _san("web"), "", "", "http", ""]
        lines.append(SEP.join(key + values(code)))
    return lines


def micro_datagrams(
    proxy: Proxy, series: int, round_: int, instance: str = "00c0ffee00c0ffee"
) -> list[bytes]:
    """The module's report of `proxy` after `round_` seconds, split as the module splits (<= 60,000 bytes)."""
    from isthmus.telemetry.statsmodule import MAGIC, MAX_DATAGRAM, SEP

    def head(part: int, parts: int) -> str:
        return SEP.join([MAGIC, instance, proxy.id, str(round_), str(part), str(parts), "0", "0"])

    # As the module: room for the longest header (part numbers of six digits), then whole lines.
    header_max = len(head(999999, 999999).encode()) + 1
    lines = micro_series_lines(proxy, series, round_)
    parts: list[list[str]] = [[]]
    size = header_max
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > MAX_DATAGRAM and parts[-1]:
            parts.append([])
            size = header_max
        parts[-1].append(line)
        size += n
    return [("\n".join([head(i, len(parts)), *body]) + "\n").encode() for i, body in enumerate(parts)]


def module_ingest_micro(proxies: int = 100, series: int = 100, rounds: int = 6) -> dict[str, Any]:
    """The control plane's cost of the module's reports, in-process: the UDP receiver's
    datagram_received (parse + ingest_report) on every proxy's report, round after round. The first
    round (series and labels seen for the first time) is timed apart; the others are the steady state,
    where every series grew since its last report."""
    from isthmus.telemetry import Telemetry, statsmodule
    from isthmus.telemetry.receiver import _SeriesProtocol

    pods, resolver = micro_mesh(proxies)
    by_id = {p.id: p for p in pods}
    t = Telemetry(resolver=lambda: resolver, proxy_lookup=by_id.get)
    receiver = _SeriesProtocol(t)
    data = [[(p.ip, d) for p in pods for d in micro_datagrams(p, series, r)] for r in range(1, rounds + 1)]

    def feed(batch: list[tuple[str, bytes]]) -> float:
        start = time.process_time()
        for ip, d in batch:
            receiver.datagram_received(d, (ip, 40000))
        return time.process_time() - start

    first = feed(data[0])
    steady = sum(feed(batch) for batch in data[1:])
    start = time.process_time()
    for batch in data[1:]:
        for _, d in batch:
            statsmodule.parse_datagram(d)
    parse = time.process_time() - start
    datagrams = sum(len(b) for b in data[1:])
    n_series = proxies * series * (rounds - 1)
    counted = 0.0
    for line in t.metrics_text().decode().splitlines():
        if line.startswith("istio_requests_total{"):
            counted += float(line.rsplit(" ", 1)[1])
    expected = proxies * series * rounds * MICRO_PER_SECOND
    if t.errors_total or t.reports_refused or t.reports_unknown_proxy or int(counted) != expected:
        raise RuntimeError(
            f"the micro-benchmark's reports were not all counted: istio_requests_total {counted:.0f}, "
            f"expected {expected}; status {t.status()}"
        )
    per_series = steady / n_series
    return {
        "proxies": proxies,
        "seriesPerProxy": series,
        "datagramBytes": len(data[-1][0][1]),
        "datagramsPerReport": len(data[0]) // proxies,
        "rounds": rounds,
        "firstReportUsPerSeries": round(first / (proxies * series) * 1e6, 2),
        "usPerReport": round(steady / (proxies * (rounds - 1)) * 1e6, 1),
        "usPerSeries": round(per_series * 1e6, 2),
        "parseUsPerSeries": round(parse / n_series * 1e6, 2),
        "seriesPerCoreSecond": round(1 / per_series),
        "proxiesPerCoreAt1s": round(1 / per_series / series),
        "countedRequests": int(counted),
        "datagrams": datagrams,
    }


# ---------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="isthmus-bench-telemetry-"))
    port_file = work / "ports.json"
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    results: dict[str, Any] = {"variants": {}, "config": vars(args).copy()}
    env = dict(os.environ)
    if "module" in args.variants:
        from isthmus.telemetry import statsmodule

        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(statsmodule.build(module_cache_dir()))
    backend = EnvoyProcess(BACKEND, backend_bootstrap(free_port()), work / "backend", concurrency=1)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the telemetry server did not start")
            await asyncio.sleep(0.05)
        ports = json.loads(port_file.read_text())
        api = ports["api"]
        await backend.start()
        await backend.wait_ready(30)
        have_wrk = shutil.which("wrk") is not None
        runs = [(r, v) for r in range(args.repeat) for v in args.variants]  # interleaved: noise hits all
        for round_, variant in runs:
            sidecar = EnvoyProcess(
                SIDECAR,
                sidecar_bootstrap(variant, ports["grpc"], api, free_port(), ports["stats"]),
                work / f"sidecar-{variant}",
                concurrency=1,
                env=env,
            )
            await sidecar.start()
            try:
                await sidecar.wait_ready(30)
                assert sidecar.pid is not None
                counts = variant != "none"
                entries0 = status(api)["entries"]
                warm = await paced(200, 1.0)  # warm-up: connections, ALS streams, the module's series
                if counts:
                    await settle(api, variant, warm, entries0)
                out: dict[str, Any] = results["variants"].setdefault(variant, {"wrkRuns": []})
                if have_wrk:
                    before = status(api)
                    counted0 = requests_counted(api) if counts else 0
                    cp0, sc0 = cpu_seconds(child.pid), cpu_seconds(sidecar.pid)
                    rps, requests = await asyncio.to_thread(wrk, args.duration, args.connections)
                    sc1 = cpu_seconds(sidecar.pid)
                    if counts:
                        await settle(api, variant, int(requests * 0.99), before["entries"])
                    cp1 = cpu_seconds(child.pid)
                    st = status(api)
                    run_ = {
                        "rps": round(rps, 1),
                        "requests": requests,
                        "sidecarCpuMsPer1kRequests": round((sc1 - sc0) / requests * 1e6, 1),
                        "controlPlaneCpuSeconds": round(cp1 - cp0, 2),
                        "entries": st["entries"] - before["entries"],
                        "moduleReports": st["moduleReports"] - before["moduleReports"],
                    }
                    if counts:
                        # After the CPU reading: the metrics endpoint's own cost is not the pipeline's.
                        run_["counted"] = await wait_counted(api, counted0 + requests) - counted0
                        run_["controlPlaneCoresPer1kRps"] = round((cp1 - cp0) / requests * 1000, 4)
                    out["wrkRuns"].append(run_)
                if round_ > 0:
                    continue
                before = status(api)
                counted0 = requests_counted(api) if counts else 0
                cp0 = cpu_seconds(child.pid)
                t0 = time.perf_counter()
                answered = await paced(args.rate, args.duration)
                elapsed = time.perf_counter() - t0
                if counts:
                    await settle(api, variant, answered, before["entries"])
                else:
                    await asyncio.sleep(SETTLE_S)
                cp1 = cpu_seconds(child.pid)
                window = time.perf_counter() - t0
                st = status(api)
                out["paced"] = {
                    "rate": args.rate,
                    "achievedRps": round(answered / elapsed, 1),
                    "answered": answered,
                    "entries": st["entries"] - before["entries"],
                    "moduleReports": st["moduleReports"] - before["moduleReports"],
                    # CPU over the run and the settling after it (the last reports), per second of run.
                    "controlPlaneCpuSeconds": round(cp1 - cp0, 3),
                    "windowSeconds": round(window, 1),
                    "controlPlaneCpuPercent": round((cp1 - cp0) / elapsed * 100, 1),
                }
                if counts:
                    out["paced"]["counted"] = await wait_counted(api, counted0 + answered) - counted0
            finally:
                await sidecar.stop()
        for out in results["variants"].values():
            rs = out["wrkRuns"]
            if rs:
                out["wrk"] = {
                    k: statistics.median(r[k] for r in rs) for k in rs[0] if all(k in r for r in rs)
                }
        results["ingestMicro"] = await asyncio.to_thread(ingest_micro)
        if "module" in args.variants:
            results["moduleIngestMicro"] = await asyncio.to_thread(
                module_ingest_micro, args.module_proxies, args.module_series
            )
            # The same proxies reporting one series each: the cost every datagram pays whatever it holds.
            results["moduleIngestMicroOneSeries"] = await asyncio.to_thread(
                module_ingest_micro, args.module_proxies, 1
            )
        results["telemetryStatus"] = status(api)
        # What the counts above were checked on: the control plane's series (both pipelines add to them).
        results["istioRequestsTotal"] = [
            line
            for line in api_get(api, "/api/telemetry/metrics").decode().splitlines()
            if line.startswith("istio_requests_total{")
        ]
    finally:
        await backend.stop()
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        if child.poll() is None:
            child.kill()
            child.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    return results


# After the load: the ALS batches (flushed every second) or the module's next report (every second),
# then some slack, before the control plane's CPU is read.
SETTLE_S = max(tenvoy.BUFFER_FLUSH_INTERVAL_S, 1.0) + 1.5


async def settle(api_port: int, variant: str, requests: int, entries_before: int) -> None:
    """Wait until the load's telemetry reached the control plane: `requests` ALS entries (polling the
    cheap status call), or for the module its reports of the next seconds (without polling: the metrics
    endpoint's cost is no part of the pipeline's). The counts are checked after the CPU reading."""
    if variant.startswith("als"):
        await wait_entries(api_port, entries_before + requests)
    await asyncio.sleep(SETTLE_S)


def module_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "isthmus" / "modules"


def print_table(r: dict[str, Any]) -> None:
    v = r["variants"]
    base = v.get("none", {}).get("wrk", {}).get("rps")
    rate = int(r["config"]["rate"])
    print(f"{'variant':<14}{'req/s':>10}{'vs none':>9}{'sidecar CPU ms/1k req':>23}{'CP cores/1k rps':>17}"
          f"{'CP CPU % @' + str(rate) + ' rps':>20}{'counted/sent':>15}")  # fmt: skip
    for name, out in v.items():
        w = out.get("wrk", {})
        rps = w.get("rps")
        rel = f"{(rps / base - 1) * 100:+.1f}%" if rps and base else "-"
        sent = sum(x["requests"] for x in out["wrkRuns"]) + out["paced"]["answered"]
        counted = sum(x.get("counted", 0) for x in out["wrkRuns"]) + out["paced"].get("counted", 0)
        ratio = f"{counted / sent:.4f}" if name != "none" and sent else "-"
        print(
            f"{name:<14}{rps if rps is not None else '-':>10}{rel:>9}{w.get('sidecarCpuMsPer1kRequests', '-'):>23}"
            f"{w.get('controlPlaneCoresPer1kRps', '-'):>17}{out['paced']['controlPlaneCpuPercent']:>20}{ratio:>15}"
        )
    for name, out in v.items():
        runs = [*out["wrkRuns"], out["paced"]]
        short = [x for x in runs if "counted" in x and x["counted"] < x.get("requests", x.get("answered", 0))]
        if short:  # wrk's count leaves out the requests in flight when it stops: more counted is fine
            print(f"WARNING: {name}: the control plane counted fewer requests than were answered: {short}")
    m = r["ingestMicro"]
    print(f"in-process ALS ingestion: {m['usPerEntry']:.1f} µs CPU per entry ({m['entries']} entries)")
    if "module" in v:
        p = v["module"]["paced"]
        print(
            f"module @{rate} rps: {p['answered']} requests -> {p['moduleReports']} reports in "
            f"{p['windowSeconds']} s, control plane {p['controlPlaneCpuSeconds'] * 1000:.0f} ms CPU "
            f"(/proc resolution {1000 // CLK} ms)"
        )
    mm = r.get("moduleIngestMicro")
    if mm:
        print(
            f"in-process module ingestion ({mm['proxies']} proxies x {mm['seriesPerProxy']} series, "
            f"{mm['datagramBytes']} B datagrams, every series grown): {mm['usPerReport']:.0f} µs per report, "
            f"{mm['usPerSeries']:.1f} µs per series ({mm['parseUsPerSeries']:.1f} of it parsing; first report "
            f"{mm['firstReportUsPerSeries']:.1f}) -> {mm['seriesPerCoreSecond']:,} series/s per core = "
            f"{mm['proxiesPerCoreAt1s']:,} proxies of {mm['seriesPerProxy']} series per core at the 1 s flush"
        )
    m1 = r.get("moduleIngestMicroOneSeries")
    if m1:
        print(f"  a report of one series: {m1['usPerReport']:.0f} µs ({m1['datagramBytes']} B datagram)")
    print(
        f"machine: {os.cpu_count()} CPUs; wrk, the two Envoys and the control plane share them; "
        f"medians of {r['config']['repeat']} interleaved runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced run: requests/s")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["none", "module", "als", "als+tracing"],
        choices=["none", "module", "als", "als-bare", "als+tracing"],
    )
    parser.add_argument("--repeat", type=int, default=3, help="full-speed runs per variant (medians)")
    parser.add_argument("--module-proxies", type=int, default=100, help="module micro-benchmark: proxies")
    parser.add_argument(
        "--module-series", type=int, default=100, help="module micro-benchmark: series per proxy report"
    )
    parser.add_argument(
        "--json",
        default=str(Path(__file__).parent / "results" / "telemetry.json"),
        help="where to write the results",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    results = asyncio.run(run(args))
    print_table(results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
