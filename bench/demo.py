"""Bookinfo demo figures: start-up time, control-plane and sidecar memory, edit-to-serving latency.

    .venv/bin/python bench/demo.py [--runs 3]

Starts `isthmus up` on a copy of examples/bookinfo, times it until every proxy has ACKed the newest
config, reads RSS/PSS of the control plane and of one sidecar Envoy, then edits a VirtualService file
and times until traffic follows it. Prints a table and writes bench/results/demo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import MeshProcess  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss"] = int(line.split()[1])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def envoy_pid(pod_dir: Path) -> int:
    """The Envoy whose bootstrap lives in the pod's workdir."""
    wanted = str(pod_dir / "envoy.json").encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in cmd and cmd[0].endswith(b"envoy"):
            return int(pid)
    raise RuntimeError(f"no envoy for {pod_dir}")


VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"""


def one_run(workdir: Path) -> dict[str, float]:
    config = workdir / "config"
    shutil.copytree(ROOT / "examples" / "bookinfo", config, ignore=shutil.ignore_patterns("routing"))
    mesh = MeshProcess(config, workdir)
    t0 = time.monotonic()
    mesh.start()
    startup = time.monotonic() - t0
    try:
        cp = memory_kib(mesh.proc.pid)  # type: ignore[union-attr]
        pod = mesh.proxy("reviews-v1")["instance"]
        envoy = memory_kib(envoy_pid(mesh.state_dir / "pods" / "default" / pod))
        # Edit to serving: write a VS file and poll until every request lands on that subset.
        edits = []
        for subset in ("v1", "v2", "v3", "v1"):
            (config / "zz-reviews.yaml").write_text(VS.format(subset=subset))
            t1 = time.monotonic()
            while True:
                body = mesh.curl("productpage-v1", "http://reviews:9080/").json()
                if body["version"] == subset:
                    break
                if time.monotonic() - t1 > 10:
                    raise TimeoutError("edit did not take effect")
            edits.append(time.monotonic() - t1)
    finally:
        mesh.stop()
    return {
        "startup_s": startup,
        "cp_rss_mib": cp.get("rss", 0) / 1024,
        "cp_pss_mib": cp.get("pss", 0) / 1024,
        "sidecar_rss_mib": envoy.get("rss", 0) / 1024,
        "sidecar_pss_mib": envoy.get("pss", 0) / 1024,
        "edit_to_serving_ms": statistics.median(edits) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp)))
    keys = list(runs[0])
    print(f"{'figure':<22} {'median':>10} {'min':>10} {'max':>10}")
    summary = {}
    for k in keys:
        values = [r[k] for r in runs]
        summary[k] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        print(f"{k:<22} {summary[k]['median']:>10.2f} {summary[k]['min']:>10.2f} {summary[k]['max']:>10.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
