"""What telemetry costs: sidecar throughput with and without ALS (and tracing), control-plane CPU.

    .venv/bin/python bench/telemetry.py [--duration 10] [--connections 32] [--rate 1000] [--json out.json]

Set-up (loopback, real Envoys): ``wrk`` -> sidecar Envoy (concurrency 1, outbound HCM, the variant under
test) -> backend Envoy (a direct response, so the backend is never the bottleneck). The control plane's
telemetry backend (`Telemetry` behind a gRPC server and the HTTP API with the Zipkin collector) runs in a
child process, whose CPU time is read from /proc.

Variants: ``none`` (router only), ``als`` (the gRPC access logger + grpc_stats filter, what every Isthmus
HCM carries), ``als-bare`` (the logger without its custom tags and filter state, to see what they cost;
the metrics then lack principals and gRPC details), ``als+tracing`` (plus the Zipkin tracer at 100% sampling to the built-in collector).

Figures:
- requests/s through the sidecar at full speed (wrk), and the sidecar's CPU per 1,000 requests;
- control-plane CPU per 1,000 requests/s: the telemetry process's CPU during a run paced at `--rate`
  requests/s (one ALS entry per request here; a request crossing two sidecars is two entries), and the
  same figure derived from the full-speed run;
- in-process ingestion cost per entry (no gRPC), the floor of the above.

Needs ``wrk`` (``apt-get install -y wrk``); without it the full-speed runs are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    """Child process: the control plane's telemetry backend (gRPC ALS + HTTP API with Zipkin)."""
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
        t = Telemetry(resolver=lambda: resolver)
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
        Path(port_file).write_text(json.dumps({"grpc": grpc_port, "api": api_port}))
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- envoys


def sidecar_bootstrap(variant: str, grpc_port: int, api_port: int, admin_port: int) -> dict[str, Any]:
    snapshot = Snapshot.build(1, [], [])
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
        m.access_log.extend(tenvoy.http_access_loggers(snapshot, SIDECAR, "outbound"))
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
        "node": {"id": SIDECAR.id, "cluster": "client.default", "metadata": SIDECAR.node_metadata()},
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


def wrk(duration: float, connections: int) -> float:
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
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(m.group(1))


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


# ---------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="isthmus-bench-telemetry-"))
    port_file = work / "ports.json"
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    results: dict[str, Any] = {"variants": {}, "config": vars(args).copy()}
    backend = EnvoyProcess(BACKEND, backend_bootstrap(free_port()), work / "backend", concurrency=1)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the telemetry server did not start")
            await asyncio.sleep(0.05)
        ports = json.loads(port_file.read_text())
        await backend.start()
        await backend.wait_ready(30)
        have_wrk = shutil.which("wrk") is not None
        runs = [(r, v) for r in range(args.repeat) for v in args.variants]  # interleaved: noise hits all
        for round_, variant in runs:
            sidecar = EnvoyProcess(
                SIDECAR,
                sidecar_bootstrap(variant, ports["grpc"], ports["api"], free_port()),
                work / f"sidecar-{variant}",
                concurrency=1,
            )
            await sidecar.start()
            try:
                await sidecar.wait_ready(30)
                assert sidecar.pid is not None
                await paced(200, 1.0)  # warm-up: connections, ALS streams
                await wait_entries(ports["api"], 0)
                out: dict[str, Any] = results["variants"].setdefault(variant, {"wrkRuns": []})
                if have_wrk:
                    before = status(ports["api"])["entries"]
                    cp0, sc0 = cpu_seconds(child.pid), cpu_seconds(sidecar.pid)
                    rps = await asyncio.to_thread(wrk, args.duration, args.connections)
                    sc1 = cpu_seconds(sidecar.pid)
                    requests = rps * args.duration
                    st = (
                        await wait_entries(ports["api"], before + int(requests * 0.99))
                        if variant != "none"
                        else {}
                    )
                    await asyncio.sleep(tenvoy.BUFFER_FLUSH_INTERVAL_S + 0.5)
                    cp1 = cpu_seconds(child.pid)
                    run_ = {
                        "rps": round(rps, 1),
                        "sidecarCpuMsPer1kRequests": round((sc1 - sc0) / requests * 1e6, 1),
                        "controlPlaneCpuSeconds": round(cp1 - cp0, 2),
                        "entries": (st.get("entries", before) - before) if st else 0,
                    }
                    if variant != "none" and run_["entries"]:
                        run_["controlPlaneCoresPer1kRps"] = round((cp1 - cp0) / run_["entries"] * 1000, 3)
                    out["wrkRuns"].append(run_)
                if round_ > 0:
                    continue
                before = status(ports["api"])["entries"]
                cp0 = cpu_seconds(child.pid)
                t0 = time.perf_counter()
                answered = await paced(args.rate, args.duration)
                elapsed = time.perf_counter() - t0
                if variant != "none":
                    await wait_entries(ports["api"], before + answered)
                await asyncio.sleep(tenvoy.BUFFER_FLUSH_INTERVAL_S + 0.5)
                cp1 = cpu_seconds(child.pid)
                out["paced"] = {
                    "rate": args.rate,
                    "achievedRps": round(answered / elapsed, 1),
                    "entries": status(ports["api"])["entries"] - before,
                    "controlPlaneCpuPercent": round((cp1 - cp0) / elapsed * 100, 1),
                }
            finally:
                await sidecar.stop()
        for out in results["variants"].values():
            rs = out["wrkRuns"]
            if rs:
                out["wrk"] = {
                    k: statistics.median(r[k] for r in rs) for k in rs[0] if all(k in r for r in rs)
                }
        results["ingestMicro"] = await asyncio.to_thread(ingest_micro)
        results["telemetryStatus"] = status(ports["api"])
    finally:
        await backend.stop()
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        if child.poll() is None:
            child.kill()
        shutil.rmtree(work, ignore_errors=True)
    return results


def print_table(r: dict[str, Any]) -> None:
    v = r["variants"]
    base = v.get("none", {}).get("wrk", {}).get("rps")
    print(f"{'variant':<14}{'req/s':>10}{'vs none':>9}{'sidecar CPU ms/1k req':>23}{'CP cores/1k rps':>17}"
          f"{'CP CPU % @' + str(int(r['config']['rate'])) + ' rps':>20}")  # fmt: skip
    for name, out in v.items():
        w = out.get("wrk", {})
        rps = w.get("rps")
        rel = f"{(rps / base - 1) * 100:+.1f}%" if rps and base else "-"
        print(
            f"{name:<14}{rps if rps is not None else '-':>10}{rel:>9}{w.get('sidecarCpuMsPer1kRequests', '-'):>23}"
            f"{w.get('controlPlaneCoresPer1kRps', '-'):>17}{out['paced']['controlPlaneCpuPercent']:>20}"
        )
    m = r["ingestMicro"]
    print(f"in-process ingestion: {m['usPerEntry']:.1f} µs CPU per entry ({m['entries']} entries)")
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
    parser.add_argument("--variants", nargs="+", default=["none", "als", "als+tracing"])
    parser.add_argument("--repeat", type=int, default=3, help="full-speed runs per variant (medians)")
    parser.add_argument("--json", default="telemetry-bench.json", help="where to write the results")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    results = asyncio.run(run(args))
    print_table(results)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
