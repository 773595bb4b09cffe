"""What a sidecar Envoy holds in memory for its clusters' stats: istio-agent's inclusion list vs every stat.

    .venv/bin/python bench/envoy_memory.py [--clusters 1000] [--concurrency 2]

One Envoy per variant, on a loopback address of its own, with the sidecar bootstrap the agent writes
(`isthmus.agent.bootstrap.build_bootstrap`) and `--clusters` static outbound clusters named as istiod
names them (`outbound|8080||svcN.nsM.svc.cluster.local`, one endpoint each), without xDS:

- "Istio's list": the bootstrap as it is, whose stats matcher keeps only what istio-agent keeps;
- "every stat": the same without the stats matcher (Isthmus's bootstrap before 36fa907).

Once the Envoy is ready (and 2 s later, for its workers' thread-local stores), it prints the stats
/stats lists, Envoy's own heap figures (/memory: allocated, heap size) and the process's RSS, and
writes bench/results/envoy_memory.json. The clusters carry no TLS, circuit breakers or outlier
detection, so the figures are the stats' share, not a whole generated config's.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from isthmus.agent.bootstrap import build_bootstrap  # noqa: E402
from isthmus.agent.envoy import default_envoy_path  # noqa: E402
from isthmus.model.proxy import Proxy  # noqa: E402

IP = "127.77.0.7"
ADMIN_PORT = 25000


def bootstrap(clusters: int) -> dict[str, Any]:
    proxy = Proxy(
        id=Proxy.node_id("sidecar", IP, "bench-0", "bench"),
        kind="sidecar",
        ip=IP,
        namespace="bench",
        instance="bench-0",
        workload="bench",
    )
    boot = build_bootstrap(
        proxy, xds_address=("127.77.0.1", 1), admin_port=ADMIN_PORT, health_port=None, prometheus_port=None
    )
    boot.pop("dynamic_resources")  # static clusters only: no control plane to wait for
    static = []
    for i in range(clusters):
        name = f"outbound|8080||svc{i}.ns{i % 10}.svc.cluster.local"
        address = {"socket_address": {"address": f"127.77.1.{i % 250 + 1}", "port_value": 8080}}
        static.append(
            {
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                },
            }
        )
    boot["static_resources"] = {"clusters": static, "listeners": []}
    return boot


def _get(path: str) -> bytes:
    with urllib.request.urlopen(f"http://{IP}:{ADMIN_PORT}{path}", timeout=10) as resp:
        return resp.read()


def measure(boot: dict[str, Any], workdir: Path, concurrency: int) -> dict[str, Any]:
    path = workdir / "envoy.json"
    path.write_text(json.dumps(boot))
    proc = subprocess.Popen(
        [str(default_envoy_path()), "-c", str(path), "--disable-hot-restart", "--concurrency", str(concurrency),
         "-l", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get("/ready").strip() == b"LIVE":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Envoy did not become ready")
            time.sleep(0.1)
        time.sleep(2)
        memory = json.loads(_get("/memory"))
        stats = _get("/stats").decode().splitlines()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kib = int(status.split("VmRSS:")[1].split()[0])
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "stats": len(stats),
        "allocated_mib": int(memory["allocated"]) / 2**20,
        "heap_mib": int(memory["heap_size"]) / 2**20,
        "rss_mib": rss_kib / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    args = ap.parse_args()
    istio = bootstrap(args.clusters)
    every = copy.deepcopy(istio)
    every["stats_config"].pop("stats_matcher")
    results: dict[str, Any] = {"meta": {"clusters": args.clusters, "concurrency": args.concurrency}}
    with tempfile.TemporaryDirectory(prefix="envoy-memory-") as tmp:
        for name, boot in (("Istio's list", istio), ("every stat", every)):
            results[name] = measure(boot, Path(tmp), args.concurrency)
    print(f"\nOne sidecar Envoy with {args.clusters} outbound clusters, {args.concurrency} workers")
    print(f"{'variant':<14} {'stats':>8} {'allocated MiB':>14} {'heap MiB':>9} {'RSS MiB':>8}")
    for name in ("Istio's list", "every stat"):
        r = results[name]
        print(
            f"{name:<14} {r['stats']:>8} {r['allocated_mib']:>14.1f} {r['heap_mib']:>9.1f} {r['rss_mib']:>8.1f}"
        )
    out = ROOT / "bench" / "results" / "envoy_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
