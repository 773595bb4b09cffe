"""Generation cost for one sidecar in a 1,000-service mesh (DESIGN §6). Prints a table, writes JSON.

    .venv/bin/python bench/generate.py [--services 1000] [--endpoints 5] [--runs 7]

The synthetic mesh: `--services` services (HTTP port 8080) spread over 10 namespaces, `--endpoints` pods
each (versions v1/v2), 100 VirtualServices (90/10 split between two subsets, retries, timeout) and 100
DestinationRules (subsets v1/v2, connection pool, outlier detection; every other one ISTIO_MUTUAL, the
rest auto mTLS). The measured sidecar is a `client` pod; a second namespace has the same client with a
Sidecar resource whose egress lists 10 services.

Everything goes through the public path: Store + loader.load_text -> Snapshot.build ->
MeshGenerator().generate(snapshot, proxy, type_url, watched), in Envoy's order (CDS, EDS for the clusters
it got, LDS, RDS for the routes the listeners name). "cold" is the first proxy after a fresh Snapshot.build
(the build itself is reported apart; the generators' process-wide lru caches are emptied first); "warm" is a second proxy of the same scope on the same snapshot, which
gets the memoized shared resources (its own inbound clusters/listeners are still built). Bytes are the
serialized sizes of the packed Any resources. Times are medians over `--runs`, each on a new snapshot.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.generator import MeshGenerator

NAMESPACES = 10
TYPES = [
    ("CDS", naming.CLUSTER_TYPE),
    ("EDS", naming.ENDPOINT_TYPE),
    ("LDS", naming.LISTENER_TYPE),
    ("RDS", naming.ROUTE_TYPE),
]
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def svc_ns(i: int) -> str:
    return f"ns-{i % NAMESPACES}"


def host(i: int) -> str:
    return f"svc-{i}.{svc_ns(i)}.svc.cluster.local"


SCOPES = {
    # Sidecar-scoped namespaces: the 10 services their egress lists.
    "client-scoped": lambda n: [k * n // 10 for k in range(10)],  # spread: the mesh's mix (1 in 10 has VS+DR)
    "client-scoped-dr": lambda n: list(range(10)),  # all 10 have a VirtualService and a DestinationRule
}
CLIENT_NAMESPACES = ("client", *SCOPES)


def mesh_yaml(services: int, vs: int = 100, dr: int = 100) -> str:
    docs = []
    for i in range(services):
        docs.append(
            f"""apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {svc_ns(i)}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 8080}}]"""
        )
    for ns in CLIENT_NAMESPACES:
        docs.append(
            f"""apiVersion: v1
kind: Service
metadata: {{name: client, namespace: {ns}}}
spec:
  selector: {{app: client}}
  ports: [{{name: http, port: 9080}}]"""
        )
    for i in range(vs):
        docs.append(
            f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {svc_ns(i)}}}
spec:
  hosts: [{host(i)}]
  http:
  - match: [{{headers: {{x-canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: {host(i)}, subset: v2}}}}]
  - route:
    - {{destination: {{host: {host(i)}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {host(i)}, subset: v2}}, weight: 10}}
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "5xx,connect-failure"}}"""
        )
    for i in range(dr):
        tls = "\n    tls: {mode: ISTIO_MUTUAL}" if i % 2 == 0 else ""
        docs.append(
            f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {svc_ns(i)}}}
spec:
  host: {host(i)}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100}}
      http: {{http1MaxPendingRequests: 50, maxRequestsPerConnection: 10}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}{tls}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}"""
        )
    for ns, pick in SCOPES.items():
        egress = ", ".join(f'"{svc_ns(i)}/{host(i)}"' for i in pick(services))
        docs.append(
            f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress:
  - hosts: [{egress}]"""
        )
    return "\n---\n".join(docs)


def mesh_pods(services: int, endpoints: int) -> list[Pod]:
    pods = []
    n = 0
    for i in range(services):
        for j in range(endpoints):
            n += 1
            version = "v1" if j < endpoints - 1 or endpoints == 1 else "v2"
            pods.append(
                Pod(
                    f"svc-{i}-{j}",
                    svc_ns(i),
                    f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                    {"app": f"svc-{i}", "version": version},
                    workload=f"svc-{i}-{version}",
                    service_account=f"svc-{i}",
                )
            )
    for k, ns in enumerate(CLIENT_NAMESPACES):
        for j in range(2):
            pods.append(
                Pod(
                    f"client-{j}",
                    ns,
                    f"10.200.{k}.{j + 1}",
                    {"app": "client", "version": "v1"},
                    workload="client",
                    service_account="client",
                    app_ports={9080: 41000 + 10 * k + j},
                )
            )
    return pods


def client_proxy(namespace: str, j: int) -> Proxy:
    ip = f"10.200.{CLIENT_NAMESPACES.index(namespace)}.{j + 1}"
    name = f"client-{j}"
    return Proxy(
        id=Proxy.node_id("sidecar", ip, name, namespace),
        kind="sidecar",
        ip=ip,
        namespace=namespace,
        instance=name,
        workload="client",
        labels={"app": "client", "version": "v1"},
    )


def clear_process_caches() -> int:
    """Empty the generators' process-wide caches (functools.lru_cache in isthmus modules), so "cold" is
    a first generation in every sense; a long-running control plane would have them warm."""
    n = 0
    for obj in gc.get_objects():
        if isinstance(obj, functools._lru_cache_wrapper) and getattr(obj, "__module__", "").startswith(
            "isthmus"
        ):
            obj.cache_clear()
            n += 1
    return n


def store_configs(text: str) -> list[Any]:
    store = Store()
    store.apply(loader.load_text(text, "bench.yaml"), "bench")
    return store.list()


def route_names(listeners: dict[str, Any]) -> set[str]:
    """The RDS names the listeners refer to (what Envoy would subscribe to)."""
    names: set[str] = set()
    for a in listeners.values():
        lis = p.listener.Listener()
        a.Unpack(lis)
        for fc in [
            *lis.filter_chains,
            *([lis.default_filter_chain] if lis.HasField("default_filter_chain") else []),
        ]:
            for f in fc.filters:
                if f.typed_config.type_url == HCM:
                    m = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(m)
                    if m.HasField("rds"):
                        names.add(m.rds.route_config_name)
    return names


def run_proxy(
    gen: MeshGenerator, snap: Snapshot, proxy: Proxy
) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, Any]]]:
    """Envoy's order: CDS, EDS (watching the EDS clusters), LDS, RDS (the routes the listeners name).
    Returns wall times, CPU times (this thread: less sensitive to a noisy shared machine) and resources."""
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    out: dict[str, dict[str, Any]] = {}
    watched: dict[str, frozenset[str] | None] = {}
    for label, type_url in TYPES:
        if label == "EDS":
            watched[label] = frozenset(n for n in out["CDS"] if n.startswith("outbound|"))
        elif label == "RDS":
            watched[label] = frozenset(route_names(out["LDS"]))
        else:
            watched[label] = None
        t, c = time.perf_counter(), time.thread_time()
        out[label] = dict(gen.generate(snap, proxy, type_url, watched[label]))
        cpu[label] = time.thread_time() - c
        wall[label] = time.perf_counter() - t
    wall["total"] = sum(wall.values())
    cpu["total"] = sum(cpu.values())
    return wall, cpu, out


def sizes(out: dict[str, dict[str, Any]]) -> dict[str, int]:
    s = {k: sum(a.ByteSize() for a in v.values()) for k, v in out.items()}
    s["total"] = sum(s.values())
    return s


def measure(args: argparse.Namespace) -> dict[str, Any]:
    text = mesh_yaml(args.services)
    pods = mesh_pods(args.services, args.endpoints)
    t = time.perf_counter()
    configs = store_configs(text)
    load_s = time.perf_counter() - t
    gen = MeshGenerator()
    results: dict[str, Any] = {
        "mesh": {
            "services": args.services,
            "endpoints_per_service": args.endpoints,
            "virtual_services": 100,
            "destination_rules": 100,
            "sidecar_scope_services": 10,
            "sidecar10": "svc-0, svc-100, ... svc-900 (1 of 10 with VS+DR)",
            "sidecar10dr": "svc-0..svc-9 (all with VS+DR)",
            "load_s": load_s,
        },
        "scopes": {},
    }
    build_times = []
    for scope, ns in (
        ("full", "client"),
        ("sidecar10", "client-scoped"),
        ("sidecar10dr", "client-scoped-dr"),
    ):
        cold: list[dict[str, float]] = []
        warm: list[dict[str, float]] = []
        cold_cpu: list[dict[str, float]] = []
        warm_cpu: list[dict[str, float]] = []
        counts: dict[str, int] = {}
        size: dict[str, int] = {}
        for run in range(args.runs):
            clear_process_caches()
            gc.collect()
            t = time.perf_counter()
            snap = Snapshot.build(run + 1, configs, pods)
            build_times.append(time.perf_counter() - t)
            c, ccpu, out = run_proxy(gen, snap, client_proxy(ns, 0))
            w, wcpu, out2 = run_proxy(gen, snap, client_proxy(ns, 1))
            cold.append(c)
            warm.append(w)
            cold_cpu.append(ccpu)
            warm_cpu.append(wcpu)
            size = sizes(out)
            counts = {k: len(v) for k, v in out.items()}
            size2 = sizes(out2)
            assert {k: len(v) for k, v in out2.items()} == counts, "warm proxy got different resources"
            assert size2 == size, "warm proxy got a different config size"
        results["scopes"][scope] = {
            "cold_ms": {k: 1000 * statistics.median(r[k] for r in cold) for k in cold[0]},
            "cold_ms_min": {k: 1000 * min(r[k] for r in cold) for k in cold[0]},
            "cold_cpu_ms": {k: 1000 * statistics.median(r[k] for r in cold_cpu) for k in cold[0]},
            "warm_ms": {k: 1000 * statistics.median(r[k] for r in warm) for k in warm[0]},
            "warm_cpu_ms": {k: 1000 * statistics.median(r[k] for r in warm_cpu) for k in warm[0]},
            "warm_ms_min": {k: 1000 * min(r[k] for r in warm) for k in warm[0]},
            "bytes": size,
            "resources": counts,
        }
    results["mesh"]["snapshot_build_ms"] = 1000 * statistics.median(build_times)
    # Peak memory: tracemalloc around one cold generation on a fresh snapshot (slows it: not timed).
    snap = Snapshot.build(999, configs, pods)
    clear_process_caches()
    gc.collect()
    rss0 = rss_mib()
    _, _, out = run_proxy(gen, snap, client_proxy("client", 0))
    rss_cold = rss_mib() - rss0
    del out, snap
    snap = Snapshot.build(1000, configs, pods)
    clear_process_caches()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _, _, out = run_proxy(gen, snap, client_proxy("client", 0))
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["memory"] = {
        "cold_generation_rss_growth_mib": rss_cold,
        "cold_generation_peak_mib": (peak - base) / 2**20,
        "cold_generation_retained_mib": (cur - base) / 2**20,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    del out
    return results


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def table(r: dict[str, Any]) -> str:
    m = r["mesh"]
    lines = [
        f"mesh: {m['services']} services x {m['endpoints_per_service']} endpoints, {m['virtual_services']} "
        f"VirtualServices, {m['destination_rules']} DestinationRules; Sidecar scope = "
        f"{m['sidecar_scope_services']} services",
        f"load+store {1000 * m['load_s']:.0f} ms; Snapshot.build {m['snapshot_build_ms']:.0f} ms (not in the "
        "generation times)",
        "",
        "times: wall median over runs (min), and CPU time median (thread_time)",
        f"{'scope':<12} {'type':<6} {'resources':>9} {'bytes':>11} {'cold ms':>9} {'(min)':>7} {'cpu':>7} "
        f"{'warm ms':>9} {'(min)':>7} {'cpu':>7}",
    ]
    for scope, s in r["scopes"].items():
        for k in ("CDS", "EDS", "LDS", "RDS", "total"):
            n = s["resources"].get(k, sum(s["resources"].values()))
            lines.append(
                f"{scope:<12} {k:<6} {n:>9} {s['bytes'][k]:>11,} {s['cold_ms'][k]:>9.1f} "
                f"{s['cold_ms_min'][k]:>7.1f} {s['cold_cpu_ms'][k]:>7.1f} {s['warm_ms'][k]:>9.2f} "
                f"{s['warm_ms_min'][k]:>7.2f} {s['warm_cpu_ms'][k]:>7.2f}"
            )
    full, small = r["scopes"]["full"], r["scopes"]["sidecar10"]
    ratio = full["bytes"]["total"] / max(1, small["bytes"]["total"])
    ratio_dr = full["bytes"]["total"] / max(1, r["scopes"]["sidecar10dr"]["bytes"]["total"])
    mem = r["memory"]
    lines += [
        "",
        f"bytes full / Sidecar-scoped (10 services, the mesh's mix): {ratio:.0f}x  (target >= 50x: "
        f"{'ok' if ratio >= 50 else 'MISSED'}); 10 services all with VS+DR: {ratio_dr:.0f}x",
        f"cold total (full scope): {full['cold_ms']['total']:.0f} ms median wall, "
        f"{full['cold_ms_min']['total']:.0f} ms min, {full['cold_cpu_ms']['total']:.0f} ms CPU  (target <= 150 ms: "
        f"{'ok' if full['cold_ms']['total'] <= 150 else 'MISSED'})",
        f"warm total (full scope): {full['warm_ms']['total']:.2f} ms median wall, "
        f"{full['warm_cpu_ms']['total']:.2f} ms CPU  (target <= 2 ms: {'ok' if full['warm_ms']['total'] <= 2 else 'MISSED'})",
        f"memory: cold generation grows RSS by {mem['cold_generation_rss_growth_mib']:.1f} MiB (protobuf arenas "
        f"included); Python heap (tracemalloc, no upb arenas) peak {mem['cold_generation_peak_mib']:.1f} MiB, "
        f"retained {mem['cold_generation_retained_mib']:.1f} MiB; process max RSS "
        f"{mem['process_max_rss_mib']:.0f} MiB",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.json"))
    args = ap.parse_args()
    r = measure(args)
    r["host"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load1": os.getloadavg()[0]}
    print(table(r))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
