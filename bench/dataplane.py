"""Data-plane overhead: direct vs one sidecar vs two sidecars with mTLS, generated config vs hand-written.

    .venv/bin/python bench/dataplane.py [--quick] [--rounds N] [--duration S] [--ablation]
    .venv/bin/python bench/dataplane.py --rounds 4 --rows "2 sidecars,2 sc, no telemetry"
    .venv/bin/python bench/dataplane.py --ablation --instructions [--requests N] [--repeats N] [--ablation-rows ...]
    .venv/bin/python bench/dataplane.py --ablation --syscalls [--requests N] [--repeats N] [--ablation-rows ...]

Starts a real mesh (`isthmus up`) with an echo workload (Service `echo`, port 8080, sidecar) and a
client workload (a sidecar only), plus two hand-written reference Envoys (bench/reference/*.yaml: static
listener/cluster, router filter only, mTLS with certificates from the mesh's own CA). Every Envoy is
pinned to core 1 (`taskset`), the reference ones with the mesh Envoys' `--concurrency` (1 under
`isthmus up`); the load generator, the echo app and the control plane are pinned to core 0. Responses
are 1,024-byte echo bodies (`?size=1024`).

Rows (each one is the path a request takes from the load generator):
- direct:          load -> echo app (127.0.0.1:<app port>)
- 1 sidecar:       load -> echo's sidecar inbound listener (plaintext, PERMISSIVE) -> app
- 2 sidecars:      load -> client sidecar `virtualOutbound` :15001 (Host: echo:8080, as through
                   HTTP_PROXY) -> mTLS -> echo's sidecar -> app. Generated config, mesh defaults:
                   Envoy keeps Istio's metrics in the in-proxy module (telemetry.statsmodule) and
                   reports them once a second, the gRPC access log only carries failed requests; no
                   tracer (Istio's default since 1.22).
- 2 sc, access-log metrics: the same path between a second client and echo pair whose proxies run with
                   ProxyConfig ISTHMUS_PROXY_METRICS=false (the opt-out): a gRPC access-log entry per
                   request to the control plane, which computes Istio's metrics from it (Host:
                   echo-als:8080, its own echo app on core 0).
- 2 sc, tracing 1%: the same with MeshConfig `defaultConfig.tracing: {sampling: 1}`: the Zipkin tracer to the
                   built-in collector at Istio's 1% sampling (what the default was before).
- 2 sc, no telemetry: also a mesh-wide Telemetry disabling every Istio metric, so the generated config
                   carries no access logger either: the mesh's routing and security without telemetry.
- reference:       load -> reference client Envoy -> mTLS -> reference server Envoy -> app.

Figures per row: max requests/s (`wrk -t1 -c4`, closed loop, 4 connections), and p50/p90/p99 latency
at fixed rates of 500, 1,000 and 1,500 requests/s over 4 connections, from the open-loop generator in
this file (wrk has no rate limit and wrk2 is not packaged): each connection sends on a fixed schedule;
a request that could not be sent on time because the previous response had not arrived yet is timed
from its scheduled time (coordinated-omission correction, as wrk2 does), otherwise from when it was
written (so the event loop's timer slack is not counted). Also the Envoys' CPU per request at each rate
(utime+stime of the row's Envoy processes from /proc, also split into user and system time) and the
control plane's (ingesting access-log entries and module reports).
Rounds interleave the rows, and each figure is the median over rounds. Prints a table and writes
bench/results/dataplane.json (dataplane-quick.json with --quick; `-rows` appended when `--rows` picks a
subset, which always includes the reference: more rounds of the rows in question in the same time).

The machine may be shared: before each figure the bench waits (up to 20 s) for a second in which other
people's processes use under 0.25 core (all CPU from /proc/stat minus this bench's process tree), and a
figure taken while they used more is taken again once, keeping the quieter try; the foreign load of
every figure is printed and stored, so a noisy figure can be told from a real difference.

`--ablation` answers where the generated config's extra cost goes: the two generated sidecars'
/config_dump is turned into static bootstraps (routes inlined, EDS made STATIC, SDS secrets replaced by
certificate files from the same CA, ECDS filters by their default config), which are run on two more
pod addresses, first as they are (to check that the copy costs what the live sidecars cost), then each
with one item removed from both sidecars (ALS access log, tracing, grpc_stats, jwt_authn + the three
empty RBAC filters, dynamic_forward_proxy + fault + CORS, XFCC; the stats matcher, so that Envoy keeps
every stat), then with all of them removed, beside
the live sidecars and the reference: max rps and Envoy CPU per request at 1,000 rps
(bench/results/dataplane-ablation.json).

`--ablation --instructions` runs the same variants (and the reference pair) with each Envoy under
callgrind and counts user-space instructions per request instead of CPU time: batches of `--requests`
on one keep-alive connection, each between a callgrind zero and dump (vgdb), the Envoys' idle timer
work taken out; deterministic to well under 1 %, where CPU time moves ±10 %
(bench/results/dataplane-instructions.json).

`--ablation --syscalls` runs them with `strace -c` attached to every thread of each Envoy for the same
batches instead, and counts system calls per request, the kernel-side half callgrind does not see
(bench/results/dataplane-syscalls.json).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOAD_CPU, ENVOY_CPU = "0", "1"
RATES = (500, 1000, 1500)
CONNECTIONS = 4
BODY_BYTES = 1024
PATH = f"/?size={BODY_BYTES}"
HOST = "echo:8080"
CLK = os.sysconf("SC_CLK_TCK")
REFERENCE = ROOT / "bench" / "reference"
NOISY = 0.25  # foreign cores above which a measurement is retried (RETRIES times, the quietest kept)
RETRIES = 1
ROWS = (
    "direct",
    "1 sidecar",
    "2 sidecars",
    "2 sc, access-log metrics",
    "2 sc, tracing 1%",
    "2 sc, no telemetry",
    "reference",
)
HOST_ALS = "echo-als:8080"  # the "access-log metrics" row's service

MESH_YAML = """apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: echo, namespace: default, labels: {app: echo, version: v1}}
spec:
  serviceAccount: echo
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client, version: v1}}
spec:
  serviceAccount: client
  command: [sleep, infinity]
---
# The same pair again, with the gRPC access log (the opt-out) instead of the in-proxy metrics module.
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: access-log-metrics, namespace: default}
spec:
  selector: {matchLabels: {metrics: access-log}}
  environmentVariables: {ISTHMUS_PROXY_METRICS: "false"}
---
apiVersion: v1
kind: Service
metadata: {name: echo-als, namespace: default}
spec:
  selector: {app: echo-als}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: echo-als, namespace: default, labels: {app: echo-als, version: v1, metrics: access-log}}
spec:
  serviceAccount: echo
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client-als, namespace: default, labels: {app: client-als, version: v1, metrics: access-log}}
spec:
  serviceAccount: client
  command: [sleep, infinity]
"""
MESHCONFIG = """apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {defaultConfig: {tracing: {sampling: 1}}}
"""
# Mesh-wide: no Istio metrics (and no access log), so the proxies carry no access logger at all.
NO_METRICS = """apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS, mode: CLIENT_AND_SERVER}
      disabled: true
"""


# ---------------------------------------------------------------------------------------------- load


async def _connection(
    host: str, port: int, request: bytes, start: float, period: float, count: int, out: dict[str, list]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter
    try:
        for k in range(count):
            due = start + k * period
            now = clock()
            if now < due:
                await asyncio.sleep(due - now)
                sent = clock()  # on time: the timer's lateness is ours, not the server's
            else:
                sent = due  # late because the previous response was: count the wait (wrk2's rule)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            t = clock()
            out["lat"].append((due, t - sent))
            out["status"].append(status)
            out["bytes"].append(len(body))
    finally:
        writer.close()


async def _paced(
    host: str, port: int, rate: float, duration: float, warmup: float, authority: str = HOST
) -> dict[str, Any]:
    request = f"GET {PATH} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: dataplane-bench\r\n\r\n".encode()
    period = CONNECTIONS / rate
    count = int((duration + warmup) * rate / CONNECTIONS)
    out: dict[str, list] = {"lat": [], "status": [], "bytes": []}
    start = time.perf_counter() + 0.2
    await asyncio.gather(
        *(
            _connection(host, port, request, start + i * period / CONNECTIONS, period, count, out)
            for i in range(CONNECTIONS)
        )
    )
    elapsed = time.perf_counter() - start
    lat = sorted(d for due, d in out["lat"] if due >= start + warmup)
    ok = sum(1 for s in out["status"] if s == 200)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    return {
        "requests": len(out["status"]),
        "ok": ok,
        "achieved_rps": len(out["status"]) / elapsed,
        "body_bytes": statistics.median(out["bytes"]),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
    }


def paced(address: str, rate: float, duration: float, warmup: float, authority: str = HOST) -> dict[str, Any]:
    """Run the open-loop generator in a child pinned to the load core; its JSON result."""
    host, port = address.rsplit(":", 1)
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, sys.executable, __file__, "--loadgen", host, port, str(rate),
         str(duration), str(warmup), authority],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def wrk_max(address: str, duration: float, authority: str = HOST) -> dict[str, Any]:
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{int(duration)}s", "--latency",
         "-H", f"Host: {authority}", f"http://{address}{PATH}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p50_ms = float(p50.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)] if p50 else None
    return {"rps": float(rps.group(1)), "non2xx": int(errors.group(1)) if errors else 0, "p50_ms": p50_ms}


# ---------------------------------------------------------------------------------------------- processes


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of `pids` (utime, stime from /proc)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK, system / CLK


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_split(pids))


def busy_seconds() -> float:
    """CPU time spent by every process on the machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[:8])
    # Interrupt time is left out: loopback traffic's softirq work is ours but is not charged to a process.
    return (user + nice + system + steal) / CLK


def own_seconds() -> float:
    """CPU time of this bench: itself, its live descendants (mesh, Envoys, app) and reaped children."""
    import resource

    me = os.getpid()
    total = cpu_seconds([me, *descendants(me)])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + ru.ru_utime + ru.ru_stime


class Foreign:
    """CPU that other people's processes use while we measure (the machine is shared)."""

    def __init__(self) -> None:
        self.busy, self.own, self.t = busy_seconds(), own_seconds(), time.monotonic()

    def cores(self) -> float:
        """Cores' worth of foreign CPU since construction (0..2)."""
        dt = time.monotonic() - self.t
        return max(0.0, (busy_seconds() - self.busy) - (own_seconds() - self.own)) / dt if dt > 0 else 0.0


def wait_quiet(limit: float = 0.25, timeout: float = 20.0) -> float:
    """Wait (up to `timeout`) for a second in which foreign processes use less than `limit` cores."""
    deadline = time.monotonic() + timeout
    while True:
        f = Foreign()
        time.sleep(1.0)
        load = f.cores()
        if load < limit or time.monotonic() > deadline:
            return load


def pin(pid: int, cpu: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", cpu, str(pid)], check=True, capture_output=True)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)


def free_subnet() -> str:
    """A 127.N.0.0/16 block with nothing listening in it (other meshes may run on this machine)."""
    used = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    taken = {int(m) for m in re.findall(r"\s127\.(\d+)\.\d+\.\d+:", used)}
    from tests.e2e.harness import lease_subnet

    candidates = [n for n in range(150, 250) if n not in taken]
    random.shuffle(candidates)
    n = next(n for n in candidates if lease_subnet(n))  # not one a test run holds but has not bound yet
    return f"127.{n}.0.0/16"


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return r.read().decode()


def wait_envoy_ready(admin: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reference Envoy exited: {log.read_text()[-3000:]}")
        try:
            if get(f"http://{admin}/ready").strip() == "LIVE":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"reference Envoy at {admin} not ready")


# ---------------------------------------------------------------------------------------------- set-up


class Bench:
    def __init__(self, workdir: Path) -> None:
        from tests.e2e.harness import MeshProcess

        self.workdir = workdir
        config = workdir / "config"
        config.mkdir(parents=True)
        (config / "mesh.yaml").write_text(MESH_YAML)
        self.mesh = MeshProcess(config, workdir / "mesh", subnet=free_subnet())
        self.refs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        from isthmus.agent.envoy import default_envoy_path

        self.mesh.start()
        status = self.mesh.status()
        echo = self.mesh.proxy("echo")
        client = self.mesh.proxy("client")
        self.app_port = echo["inbound"][0]["appPort"]
        self.echo_ip, self.client_ip = echo["ip"], client["ip"]
        tree = descendants(self.mesh.proc.pid)  # type: ignore[union-attr]
        envoys = {p: c for p in tree if (c := cmdline(p)) and c[0].endswith("envoy")}
        echo_als, client_als = self.mesh.proxy("echo-als"), self.mesh.proxy("client-als")
        self.echo_als_ip, self.client_als_ip = echo_als["ip"], client_als["ip"]

        def envoy_of(proxy: dict[str, Any]) -> int:
            return next(p for p, c in envoys.items() if f"/{proxy['instance']}/" in " ".join(c))

        def app_of(ip: str) -> int:
            return next(p for p in tree if environ(p).get("POD_IP") == ip and "echo" in " ".join(cmdline(p)))

        self.echo_envoy, self.client_envoy = envoy_of(echo), envoy_of(client)
        self.echo_als_envoy, self.client_als_envoy = envoy_of(echo_als), envoy_of(client_als)
        self.app, self.app_als = app_of(self.echo_ip), app_of(self.echo_als_ip)
        # The default pair must run the in-proxy module (a missing compiler would silently make "2
        # sidecars" measure the access log), the opt-out pair the gRPC access log.
        for proxy, want in (
            (echo, "proxy"),
            (client, "proxy"),
            (echo_als, "access-log"),
            (client_als, "access-log"),
        ):
            pipeline = next((x.get("metrics", {}) for x in status["proxies"] if x["id"] == proxy["id"]), {})
            if pipeline.get("pipeline") != want:
                raise RuntimeError(f"{proxy['instance']}: metrics pipeline is not {want!r}: {pipeline}")
        self.cp = self.mesh.proc.pid  # type: ignore[union-attr]
        for p in (self.echo_envoy, self.client_envoy, self.echo_als_envoy, self.client_als_envoy):
            pin(p, ENVOY_CPU)
        for p in (self.cp, self.app, self.app_als):
            pin(p, LOAD_CPU)
        self.config_version = status["configVersion"]
        args = cmdline(self.client_envoy)
        # The reference Envoys run with the mesh's own worker count (the runner's choice, not ours).
        self.concurrency = args[args.index("--concurrency") + 1] if "--concurrency" in args else "2"

        # Reference Envoys: two more pod addresses in the mesh's block, certificates from the mesh CA.
        net = self.echo_ip.rsplit(".", 2)[0]
        self.ref_client_ip, self.ref_server_ip = f"{net}.0.250", f"{net}.0.251"
        self.issue_certs(self.workdir / "certs")
        envoy = str(default_envoy_path())
        paths = self.reference_configs("reference", self.ref_client_ip, self.ref_server_ip)
        for name, ip in (("server", self.ref_server_ip), ("client", self.ref_client_ip)):
            log = self.workdir / f"reference-{name}.log"
            proc = subprocess.Popen(
                ["taskset", "-c", ENVOY_CPU, envoy, "-c", str(paths[name]), "--disable-hot-restart",
                 "--concurrency", self.concurrency, "-l", "warning", "--log-path", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            self.refs.append(proc)
            wait_envoy_ready(f"{ip}:15000", proc, log)

    def reference_configs(self, prefix: str, client_ip: str, server_ip: str) -> dict[str, Path]:
        """bench/reference/{server,client}.yaml filled in for a client and server pod address; their paths."""
        values = {
            "CLIENT_IP": client_ip,
            "CLIENT_PORT": 15001,
            "CLIENT_ADMIN_PORT": 15000,
            "SERVER_IP": server_ip,
            "SERVER_PORT": 8080,
            "SERVER_ADMIN_PORT": 15000,
            "APP_PORT": self.app_port,
            "CERTS": str(self.workdir / "certs"),
        }
        paths = {}
        for name in ("server", "client"):
            paths[name] = self.workdir / f"{prefix}-{name}.yaml"
            paths[name].write_text(
                string.Template((REFERENCE / f"{name}.yaml").read_text()).substitute(values)
            )
        return paths

    def issue_certs(self, out: Path) -> None:
        from isthmus.agent.certs import new_key_and_csr
        from isthmus.security.ca import CertificateAuthority

        ca_dir = self.mesh.state_dir / "ca"
        ca = CertificateAuthority.load(
            ca_dir / "ca-cert.pem", ca_dir / "ca-key.pem", trust_bundle_file=ca_dir / "root-cert.pem"
        )
        out.mkdir()
        for name, sa in (("client", "client"), ("server", "echo")):
            identity = f"spiffe://cluster.local/ns/default/sa/{sa}"
            key, csr = new_key_and_csr(identity)  # ECDSA P-256, as the agent's
            bundle = ca.sign_csr(csr, identity=identity)
            (out / f"{name}-key.pem").write_bytes(key)
            (out / f"{name}-cert-chain.pem").write_bytes(bundle.cert_chain_pem)
            (out / "root-cert.pem").write_bytes(bundle.root_cert_pem)

    def set_tracing(self, enabled: bool) -> None:
        if enabled:
            self.mesh.apply(MESHCONFIG, wait=30)
        else:
            self.mesh.delete(MESHCONFIG, wait=30)
        self.mesh.wait_settled(30)

    def set_metrics(self, enabled: bool) -> None:
        if enabled:
            self.mesh.delete(NO_METRICS, wait=30)
        else:
            self.mesh.apply(NO_METRICS, wait=30)
        self.mesh.wait_settled(30)

    def stop(self) -> None:
        for proc in self.refs:
            proc.terminate()
        for proc in self.refs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.mesh.stop()

    def target(self, row: str) -> tuple[str, list[int], list[int]]:
        """(address, Envoy pids of the row, other pids whose CPU we report) for `row`."""
        if row == "2 sc, access-log metrics":
            return f"{self.client_als_ip}:15001", [self.client_als_envoy, self.echo_als_envoy], [self.cp]
        if row == "direct":
            return f"127.0.0.1:{self.app_port}", [], []
        if row == "1 sidecar":
            return f"{self.echo_ip}:8080", [self.echo_envoy], [self.cp]
        if row == "reference":
            return f"{self.ref_client_ip}:15001", [p.pid for p in self.refs], []
        return f"{self.client_ip}:15001", [self.client_envoy, self.echo_envoy], [self.cp]

    def check(self) -> None:
        """Every row answers 200 with a 1,024-byte body before anything is measured."""
        for row in ROWS:
            if row in ("2 sc, tracing 1%", "2 sc, no telemetry"):
                continue
            address, _, _ = self.target(row)
            r = paced(address, 50, 0.5, 0.0, authority(row))
            if r["ok"] != r["requests"] or r["body_bytes"] != BODY_BYTES:
                raise RuntimeError(f"{row}: unexpected answers {r}")


def authority(row: str) -> str:
    return HOST_ALS if row == "2 sc, access-log metrics" else HOST


def measure_row(bench: Bench, row: str, duration: float, warmup: float) -> dict[str, Any]:
    address, envoys, others = bench.target(row)
    host = authority(row)
    result: dict[str, Any] = {"address": address}
    for _attempt in range(RETRIES + 1):
        wait_quiet()
        f = Foreign()
        r = wrk_max(address, duration, host)
        r["foreign_cores"] = f.cores()
        if "max" not in result or r["foreign_cores"] < result["max"]["foreign_cores"]:
            result["max"] = r
        if r["foreign_cores"] < NOISY:
            break
    for rate in RATES:
        for attempt in range(RETRIES + 1):
            wait_quiet()
            f = Foreign()
            (u0, s0), o0 = cpu_split(envoys), cpu_seconds(others)
            r = paced(address, rate, duration, warmup, host)
            (u1, s1), o1 = cpu_split(envoys), cpu_seconds(others)
            r["foreign_cores"] = f.cores()
            per_req = 1e6 / r["requests"]
            r["envoy_cpu_us_per_req"] = (u1 + s1 - u0 - s0) * per_req if envoys else None
            # Split, since the instruction counts cover user space only and the syscall counts the rest.
            # The sum is exact (the kernel scales utime+stime to the scheduler's runtime: /proc's
            # schedstat agreed within 0.5 % on every figure), the split is sampled at the tick, so
            # the two ratios move more than their sum; the user share of a row is what to read from it.
            r["envoy_user_us_per_req"] = (u1 - u0) * per_req if envoys else None
            r["envoy_sys_us_per_req"] = (s1 - s0) * per_req if envoys else None
            r["cp_cpu_us_per_req"] = (o1 - o0) / r["requests"] * 1e6 if others else None
            r["attempt"] = attempt
            if str(rate) not in result or r["foreign_cores"] < result[str(rate)]["foreign_cores"]:
                result[str(rate)] = r
            if r["foreign_cores"] < NOISY:
                break
    return result


# ---------------------------------------------------------------------------------------------- ablation
# `--ablation`: where the generated config's extra cost goes. The two generated sidecars' config (their
# /config_dump) is turned into static bootstraps, checked to cost what the live sidecars cost, then one
# item at a time is removed from both.

UNUSED_CLUSTERS = {"agent", "prometheus_stats", "sds-grpc", "xds-grpc"}


def _walk(node: Any, fn: Callable[[dict], dict]) -> Any:
    if isinstance(node, dict):
        node = fn(node)
        return {k: _walk(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


def _files_for_sds(certs: Path, who: str) -> Callable[[dict], dict]:
    def fn(d: dict) -> dict:
        d = dict(d)
        if "tls_certificate_sds_secret_configs" in d:
            del d["tls_certificate_sds_secret_configs"]
            d["tls_certificates"] = [
                {
                    "certificate_chain": {"filename": str(certs / f"{who}-cert-chain.pem")},
                    "private_key": {"filename": str(certs / f"{who}-key.pem")},
                }
            ]
        if "combined_validation_context" in d:
            cvc = d.pop("combined_validation_context")
            vc = dict(cvc.get("default_validation_context", {}))
            vc["trusted_ca"] = {"filename": str(certs / "root-cert.pem")}
            d["validation_context"] = vc
        return d

    return fn


def static_from_dump(dump: dict, ips: dict[str, str], certs: Path, who: str) -> dict:
    """A static bootstrap equivalent to what a generated sidecar holds (its /config_dump?include_eds):
    listeners with their routes inlined, EDS clusters made STATIC with the same endpoints, SDS secrets
    replaced by the same kind of certificate files, ECDS filters by their default config; xDS, SDS,
    the agent and Prometheus/health listeners are left out (no per-request role)."""
    text = json.dumps(dump)
    for old, new in ips.items():
        text = re.sub(re.escape(old) + r"(?![0-9])", new, text)
    dump = json.loads(text)
    by = {c["@type"].rsplit(".", 1)[1]: c for c in dump["configs"]}
    boot = copy.deepcopy(by["BootstrapConfigDump"]["bootstrap"])
    boot.pop("dynamic_resources", None)
    node = boot["node"]
    for k in ("extensions", "user_agent_name", "user_agent_build_version"):
        node.pop(k, None)
    routes = {
        r["route_config"]["name"]: r["route_config"]
        for r in by["RoutesConfigDump"].get("dynamic_route_configs", [])
    }
    endpoints = {
        e["endpoint_config"]["cluster_name"]: e["endpoint_config"]
        for e in by["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])
    }
    clusters = [c for c in boot["static_resources"].get("clusters", []) if c["name"] not in UNUSED_CLUSTERS]
    for entry in by["ClustersConfigDump"].get("dynamic_active_clusters", []):
        c = dict(entry["cluster"])
        c.pop("@type", None)
        if c.get("type") == "EDS":
            la = copy.deepcopy(endpoints[c["eds_cluster_config"].get("service_name", c["name"])])
            la.pop("@type", None)
            la["cluster_name"] = c["name"]
            for loc in la.get("endpoints", []):
                if not loc.get("load_balancing_weight"):
                    loc.pop("load_balancing_weight", None)
            c["type"] = "STATIC"
            c.pop("eds_cluster_config")
            c["load_assignment"] = la
        clusters.append(c)
    listeners = []
    for entry in by["ListenersConfigDump"].get("dynamic_listeners", []):
        lst = copy.deepcopy(entry["active_state"]["listener"])
        lst.pop("@type", None)
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                tc = f.get("typed_config", {})
                if "rds" in tc:
                    rc = copy.deepcopy(routes[tc.pop("rds")["route_config_name"]])
                    rc.pop("@type", None)
                    rc.pop("vhds", None)  # the dump holds the virtual hosts VHDS brought, merged
                    tc["route_config"] = rc
                for i, h in enumerate(tc.get("http_filters", [])):
                    if "config_discovery" in h:
                        tc["http_filters"][i] = {
                            "name": h["name"],
                            "typed_config": h["config_discovery"]["default_config"],
                        }
        listeners.append(lst)
    boot["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return _walk(boot, _files_for_sds(certs, who))


def _hcms(boot: dict) -> Iterator[dict]:
    for lst in boot["static_resources"]["listeners"]:
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    yield f["typed_config"]


def _drop_filters(*prefixes: str) -> Callable[[dict], None]:
    def fn(boot: dict) -> None:
        for hcm in _hcms(boot):
            hcm["http_filters"] = [
                h for h in hcm["http_filters"] if not any(h["name"].startswith(p) for p in prefixes)
            ]

    return fn


def _drop_keys(*keys: str) -> Callable[[dict], None]:
    def fn(boot: dict) -> None:
        for hcm in _hcms(boot):
            for k in keys:
                hcm.pop(k, None)

    return fn


class FluentdSink:
    """A TCP sink for Envoy's Fluentd access logger (the "ALS -> fluentd" ablation row): reads and counts
    what arrives, so the row is known to have logged."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while chunk := conn.recv(1 << 16):
                self.received += len(chunk)


FLUENTD_SINK: list[FluentdSink] = []  # started by the ablation when its row runs

# What the gRPC access-log entry carries that the telemetry pipeline reads, as Fluentd record fields.
FLUENTD_RECORD = {
    "start": "%START_TIME%",
    "code": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "duration": "%DURATION%",
    "rx": "%BYTES_RECEIVED%",
    "tx": "%BYTES_SENT%",
    "proto": "%PROTOCOL%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "ua": "%REQ(USER-AGENT)%",
    "rid": "%REQ(X-REQUEST-ID)%",
    "ctype": "%REQ(CONTENT-TYPE)%",
    "grpc": "%RESP(GRPC-STATUS)%",
    "ust": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "cluster": "%UPSTREAM_CLUSTER_RAW%",
    "uhost": "%UPSTREAM_HOST%",
    "remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "dsan": "%DOWNSTREAM_PEER_URI_SAN%",
    "usan": "%UPSTREAM_PEER_URI_SAN%",
    "ulsan": "%UPSTREAM_LOCAL_URI_SAN%",
    "route": "%ROUTE_NAME%",
}


def _als_to_fluentd(boot: dict) -> None:
    """Every gRPC access logger becomes Envoy's Fluentd logger (msgpack over TCP) with the same fields."""
    if not FLUENTD_SINK:
        FLUENTD_SINK.append(FluentdSink())
    port = FLUENTD_SINK[0].port
    for hcm in _hcms(boot):
        logs = []
        for log in hcm.get("access_log", []):
            if log["name"] != "envoy.access_loggers.http_grpc":
                logs.append(log)
                continue
            logs.append(
                {
                    "name": "envoy.access_loggers.fluentd",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.fluentd.v3.FluentdAccessLogConfig",
                        "cluster": "fluentd_sink",
                        "tag": "isthmus",
                        "stat_prefix": "fluentd",
                        "buffer_flush_interval": "1s",
                        "buffer_size_bytes": 65536,
                        "record": FLUENTD_RECORD,
                    },
                }
            )
        hcm["access_log"] = logs
    boot["static_resources"]["clusters"].append(
        {
            "name": "fluentd_sink",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "fluentd_sink",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": "127.0.0.1", "port_value": port}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
    )


def _als_bare(boot: dict) -> None:
    """The gRPC access loggers keep only what Envoy always logs: no custom tags (formatters, request
    headers), additional headers or trailers, or filter state."""
    for hcm in _hcms(boot):
        for log in hcm.get("access_log", []):
            if log["name"] != "envoy.access_loggers.http_grpc":
                continue
            cfg = log["typed_config"]
            for k in (
                "additional_request_headers_to_log",
                "additional_response_headers_to_log",
                "additional_response_trailers_to_log",
            ):
                cfg.pop(k, None)
            for k in ("custom_tags", "filter_state_objects_to_log"):
                cfg["common_config"].pop(k, None)


# Where the ablation's module logger reports: a loopback port nobody listens on (the static copies are
# not the mesh's proxies, so their series must not reach its control plane).
ABLATION_COLLECTOR = ("127.0.0.1", 9)


def _quiet_module(boot: dict) -> None:
    """The copies' in-proxy metrics loggers (the default pipeline) report to ABLATION_COLLECTOR under a
    node id of their own, not to the mesh's control plane as the proxies they copy."""
    from isthmus.telemetry import statsmodule

    for hcm in _hcms(boot):
        for log in hcm.get("access_log", []):
            if log["name"] != statsmodule.ACCESS_LOGGER_NAME:
                continue
            cfg = log["typed_config"]["logger_config"]
            fields = dict(item.split("=", 1) for item in cfg["value"].split())
            text = statsmodule.logger_config(
                ABLATION_COLLECTOR, "ablation", fields["direction"], skip_grpc=fields.get("grpc") == "skip"
            )
            cfg["value"] = text


def _drop_module(boot: dict) -> None:
    """Without the in-proxy metrics logger (the access log of failed and gRPC requests stays)."""
    from isthmus.telemetry import statsmodule

    for hcm in _hcms(boot):
        if "access_log" in hcm:
            hcm["access_log"] = [x for x in hcm["access_log"] if x["name"] != statsmodule.ACCESS_LOGGER_NAME]


def _als_to_module(boot: dict) -> None:
    """Every gRPC access logger becomes the in-proxy metrics module's logger (telemetry.statsmodule, as
    ISTHMUS_PROXY_METRICS generates it minus the loggers of gRPC and failed requests, which this load
    never makes): the metrics are kept in the proxy, as istio-proxy's stats filter keeps them, instead of
    an entry per request."""
    from google.protobuf import json_format

    from isthmus.telemetry import statsmodule

    for hcm in _hcms(boot):
        logs = []
        for log in hcm.get("access_log", []):
            if log["name"] == "envoy.access_loggers.http_grpc":
                name = log["typed_config"]["common_config"]["log_name"]
                direction = "inbound" if name.startswith("isthmus.inbound") else "outbound"
                module = statsmodule.access_logger(ABLATION_COLLECTOR, "ablation", direction, skip_grpc=True)
                log = json_format.MessageToDict(module, preserving_proto_field_name=True)
            logs.append(log)
        hcm["access_log"] = logs


def _all_stats(boot: dict) -> None:
    """Without istio-agent's stats inclusion list (the bootstrap's stats_matcher): Envoy keeps every stat."""
    boot.get("stats_config", {}).pop("stats_matcher", None)


EXTRA_FILTERS = (
    "envoy.filters.http.dynamic_forward_proxy",
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
    "envoy.filters.http.grpc_stats",
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.rbac",
)
# The static copies are of the default pair (in-proxy metrics module, plus the gRPC access log of failed
# and gRPC requests). The rows that rework a gRPC access logger ("ALS ...") copy the access-log pair
# instead (ISTHMUS_PROXY_METRICS "false"), whose every request sends an entry: ALS_ROWS.
ABLATIONS = {
    "generated (static copy)": [],
    "- access logs": [_drop_keys("access_log")],
    "- metrics module": [_drop_module],
    "access-log pipeline": [],
    "- ALS access log": [_drop_keys("access_log")],
    "ALS -> fluentd": [_als_to_fluentd],
    "ALS, Envoy's fields only": [_als_bare],
    "ALS -> C module": [_als_to_module],
    "- tracing": [_drop_keys("tracing")],
    "- grpc_stats": [_drop_filters("envoy.filters.http.grpc_stats")],
    "- jwt_authn+3 rbac": [_drop_filters("envoy.filters.http.jwt_authn", "envoy.filters.http.rbac")],
    "- dfp+fault+cors": [
        _drop_filters(
            "envoy.filters.http.dynamic_forward_proxy", "envoy.filters.http.fault", "envoy.filters.http.cors"
        )
    ],
    "- XFCC": [_drop_keys("forward_client_cert_details", "set_current_client_cert_details")],
    "- stats matcher": [_all_stats],
    "- all of the above": [
        _drop_keys("access_log", "tracing", "forward_client_cert_details", "set_current_client_cert_details"),
        _drop_filters(*EXTRA_FILTERS),
    ],
}


ALS_ROWS = frozenset(
    {
        "access-log pipeline",
        "- ALS access log",
        "ALS -> fluentd",
        "ALS, Envoy's fields only",
        "ALS -> C module",
    }
)
ABLATION_ROWS = ("2 sidecars", *ABLATIONS, "reference")
ABLATION_RATE = 1000


class Ablation:
    """The generated sidecars' config as static Envoys on two more pod addresses, one variant at a time."""

    def __init__(self, bench: Bench, rows: tuple[str, ...] = ()) -> None:
        from isthmus.agent.envoy import default_envoy_path

        self.bench = bench
        self.envoy = str(default_envoy_path())
        net = bench.echo_ip.rsplit(".", 2)[0]
        self.client_ip, self.server_ip = f"{net}.0.240", f"{net}.0.241"
        ips = {bench.client_ip: self.client_ip, bench.echo_ip: self.server_ip}
        certs = bench.workdir / "certs"
        # Each source pair's config, copied onto the two addresses (both pairs run as the same service
        # accounts, so the same certificates serve either).
        pairs = {
            "default": (bench.client_ip, bench.echo_ip),
            "access-log": (bench.client_als_ip, bench.echo_als_ip),
        }
        needed = {"access-log" if row in ALS_ROWS else "default" for row in rows if row in ABLATIONS}
        self.boots: dict[str, dict[str, dict]] = {}
        for source in sorted(needed):
            client, server = pairs[source]
            ips = {client: self.client_ip, server: self.server_ip}
            self.boots[source] = {
                who: static_from_dump(
                    json.loads(get(f"http://{ip}:15000/config_dump?include_eds", timeout=10)), ips, certs, who
                )
                for who, ip in (("client", client), ("server", server))
            }
        # The Host the running variant routes (the access-log pair's service is echo-als).
        self.authority = HOST
        self.procs: list[subprocess.Popen[bytes]] = []
        self.config_paths: dict[str, Path] = {}  # the running variant's bootstrap of each Envoy
        # What runs each Envoy ("server", "client"): pinned to the Envoy core; --instructions wraps it in
        # callgrind (and waits longer for it to start).
        self.wrap: Callable[[str], list[str]] = lambda who: ["taskset", "-c", ENVOY_CPU]
        self.ready_timeout = 30.0
        self.env = dict(os.environ)
        if "default" in needed or "ALS -> C module" in rows:
            from isthmus.telemetry import statsmodule

            modules = statsmodule.build(bench.workdir / "modules")
            self.env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(modules)

    def start(self, variant: str) -> None:
        """Run `variant`: an ABLATIONS entry, or "reference" (the hand-written pair on these addresses)."""
        self.stop()
        if variant == "reference":
            paths = self.bench.reference_configs("ablation-reference", self.client_ip, self.server_ip)
        else:
            paths = {}
            source = "access-log" if variant in ALS_ROWS else "default"
            for who in ("server", "client"):
                boot = copy.deepcopy(self.boots[source][who])
                for fn in [_quiet_module, *ABLATIONS[variant]]:
                    fn(boot)
                paths[who] = self.bench.workdir / f"ablation-{who}.json"
                paths[who].write_text(json.dumps(boot))
        self.config_paths = paths
        logs = {who: self.bench.workdir / f"ablation-{who}.log" for who in paths}
        for who in ("server", "client"):  # both start at once (under callgrind, start-up takes a while)
            proc = subprocess.Popen(
                [*self.wrap(who), self.envoy, "-c", str(paths[who]), "--disable-hot-restart",
                 "--concurrency", self.bench.concurrency, "-l", "warning", "--log-path", str(logs[who])],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
            self.procs.append(proc)
        for proc, (who, ip) in zip(
            self.procs, (("server", self.server_ip), ("client", self.client_ip)), strict=True
        ):
            wait_envoy_ready(f"{ip}:15000", proc, logs[who], self.ready_timeout)
        self.authority = HOST_ALS if variant in ALS_ROWS else HOST
        r = paced(f"{self.client_ip}:15001", 50, 0.5, 0.0, self.authority)
        if r["ok"] != r["requests"] or r["body_bytes"] != BODY_BYTES:
            raise RuntimeError(f"ablation {variant}: unexpected answers {r}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


def measure_once(
    address: str, envoys: list[int], rate: float | None, duration: float, warmup: float, authority: str = HOST
) -> dict:
    """One figure (wrk max if `rate` is None, else the paced run), retried while others load the machine."""
    best: dict[str, Any] | None = None
    for attempt in range(RETRIES + 1):
        wait_quiet()
        f = Foreign()
        e0 = cpu_seconds(envoys)
        r = (
            wrk_max(address, duration, authority)
            if rate is None
            else paced(address, rate, duration, warmup, authority)
        )
        r["foreign_cores"] = f.cores()
        if rate is not None:
            r["envoy_cpu_us_per_req"] = (cpu_seconds(envoys) - e0) / r["requests"] * 1e6
        r["attempt"] = attempt
        if best is None or r["foreign_cores"] < best["foreign_cores"]:
            best = r
        if r["foreign_cores"] < NOISY:
            break
    assert best is not None
    return best


def _baseline(summary: dict[str, Any], row: str, copy_: dict[str, Any]) -> dict[str, Any]:
    """What a row's saving is measured against: the copy of the pair it was made from."""
    return summary["access-log pipeline"] if row in ALS_ROWS else copy_


def run_ablation(
    bench: Bench, rounds_n: int, duration: float, warmup: float, rows: tuple[str, ...] = ABLATION_ROWS
) -> dict[str, Any]:
    abl = Ablation(bench, rows)
    rounds: list[dict[str, Any]] = []
    try:
        for i in range(rounds_n):
            rnd: dict[str, Any] = {}
            order = list(rows) if i % 2 == 0 else list(reversed(rows))
            for row in order:
                if row in ABLATIONS:
                    abl.start(row)
                    address, envoys = f"{abl.client_ip}:15001", [p.pid for p in abl.procs]
                    host = abl.authority
                else:
                    abl.stop()
                    address, envoys, _ = bench.target(row)
                    host = authority(row)
                rnd[row] = {
                    "max": measure_once(address, envoys, None, duration, warmup, host),
                    str(ABLATION_RATE): measure_once(address, envoys, ABLATION_RATE, duration, warmup, host),
                }
                print(
                    f"round {i + 1} {row}: max {rnd[row]['max']['rps']:.0f} rps, "
                    f"{rnd[row][str(ABLATION_RATE)]['envoy_cpu_us_per_req']:.0f} µs/req",
                    flush=True,
                )
            rounds.append(rnd)
    finally:
        abl.stop()
    summary: dict[str, Any] = {}
    k = str(ABLATION_RATE)
    for row in rows:
        summary[row] = {
            "max_rps": median_of(rounds, row, "max", "rps"),
            "envoy_cpu_us_per_req": median_of(rounds, row, k, "envoy_cpu_us_per_req"),
            "p50_ms": median_of(rounds, row, k, "p50_ms"),
            "p90_ms": median_of(rounds, row, k, "p90_ms"),
            "p99_ms": median_of(rounds, row, k, "p99_ms"),
            "foreign_cores": median_of(rounds, row, k, "foreign_cores"),
        }
    copy_ = summary["generated (static copy)"]
    ref = summary["reference"]
    print(f"\nAblation: two sidecars at {ABLATION_RATE} rps and max (wrk -c4); medians of {rounds_n} rounds")
    print(
        f"{'row':<24} {'max rps':>8} {'µs/req':>7} {'saved':>6} {'p50':>6} {'p90':>6} {'p99':>6}"
        f" {'cpu/ref':>8} {'ref/max':>8}"
    )
    for row, s in summary.items():
        saved = _baseline(summary, row, copy_)["envoy_cpu_us_per_req"] - s["envoy_cpu_us_per_req"]
        s["saved_us_per_req"] = saved
        s["cpu_ratio_to_reference"] = s["envoy_cpu_us_per_req"] / ref["envoy_cpu_us_per_req"]
        s["max_rps_ratio_reference_to_row"] = ref["max_rps"] / s["max_rps"]
        print(
            f"{row:<24} {s['max_rps']:>8.0f} {s['envoy_cpu_us_per_req']:>7.0f} {saved:>6.0f} {s['p50_ms']:>6.2f}"
            f" {s['p90_ms']:>6.2f} {s['p99_ms']:>6.2f} {s['cpu_ratio_to_reference']:>8.3f}"
            f" {s['max_rps_ratio_reference_to_row']:>8.3f}"
        )
    return {"summary": summary, "rounds": rounds}


# ---------------------------------------------------------------------------------------------- instructions
# `--ablation --instructions`: the same variants with each Envoy under callgrind, counting the user-space
# instructions it executes per request. Unlike CPU time this does not depend on the machine's other
# tenants, caches or clock, so items worth 1-5 % can be told apart.

INSTR_WARMUP = 300  # requests before the first batch (connections, lazily created stats, first-use code)
# Seconds of no load per variant (a stats flush period), to take the Envoys' timer work out of the batches.
INSTR_IDLE_S = 5.0


class KeepAlive:
    """A closed-loop client on one keep-alive connection: one request at a time, each answer checked."""

    def __init__(self, address: str, authority: str = HOST) -> None:
        import http.client

        host, port = address.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Host": authority, "User-Agent": "dataplane-bench"}

    def run(self, n: int) -> float:
        """Send `n` requests; the wall seconds they took."""
        t0 = time.monotonic()
        for _ in range(n):
            self.conn.request("GET", PATH, headers=self.headers)
            r = self.conn.getresponse()
            body = r.read()
            if r.status != 200 or len(body) != BODY_BYTES or r.will_close:
                raise RuntimeError(f"unexpected answer: {r.status}, {len(body)} bytes, close={r.will_close}")
        return time.monotonic() - t0

    def close(self) -> None:
        self.conn.close()


class Window(Protocol):
    """Something that counts an Envoy's work between `begin` and `end` (callgrind, strace)."""

    def begin(self) -> None: ...

    def end(self) -> Any: ...


def counted_batches(
    client: KeepAlive, counters: Mapping[str, Window], requests: int, repeats: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The warm-up, then `repeats` batches of `requests`, each inside every counter's window, then
    INSTR_IDLE_S seconds of no load counted the same way: ([{"seconds", <who>: count}], {<who>: idle count})."""
    client.run(INSTR_WARMUP)
    raw = []
    for _ in range(repeats):
        for c in counters.values():
            c.begin()
        seconds = client.run(requests)
        raw.append({"seconds": seconds, **{who: c.end() for who, c in counters.items()}})
    for c in counters.values():
        c.begin()
    time.sleep(INSTR_IDLE_S)
    return raw, {who: c.end() for who, c in counters.items()}


class Callgrind:
    """One Envoy under callgrind: its counters are zeroed and dumped between batches through vgdb (the
    callgrind monitor commands), so one start-up serves every batch and start-up work is never counted."""

    def __init__(self, out: Path, keep: Path | None = None) -> None:
        self.out = out
        self.dumps = 0
        self.pid = 0
        # --keep-dumps: where the first batch's dump is kept whole (per-function costs, for
        # callgrind_annotate); the others are only read for their totals.
        self.keep = keep

    def args(self) -> list[str]:
        # Pinned to the Envoy core, both Envoys: on one core the closed loop's hops follow one another
        # the same way every time (a reader wakes once its writer blocks, not after each write). Start-up
        # runs uninstrumented (several times faster); instrumentation is turned on once the Envoy is ready.
        return ["taskset", "-c", ENVOY_CPU, "valgrind", "--tool=callgrind", "--vgdb=yes",
                "--instr-atstart=no", f"--callgrind-out-file={self.out}", f"--log-file={self.out}.log"]  # fmt: skip

    def _monitor(self, command: str) -> None:
        subprocess.run(["vgdb", f"--pid={self.pid}", command], check=True, capture_output=True, timeout=120)

    def instrument(self) -> None:
        self._monitor("instrumentation on")

    def zero(self) -> None:
        self._monitor("zero")

    def dump(self) -> int:
        """Write the counters since the last zero/dump; the instructions they hold."""
        self._monitor("dump")
        self.dumps += 1
        path = Path(f"{self.out}.{self.dumps}")
        text = path.read_text()
        if self.keep is not None and self.dumps == 1:
            path.replace(self.keep)
        else:
            path.unlink()
        m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        if not m:
            raise RuntimeError(f"no totals in callgrind dump {path}")
        return int(m.group(1))

    begin, end = zero, dump


def per_request(instructions: int, idle_per_s: float, seconds: float, requests: int) -> float:
    """Instructions per request of a batch, less the timer work an idle Envoy does in as long a time."""
    return (instructions - idle_per_s * seconds) / requests


def spread(values: list[float]) -> float:
    """(max - min) / median: the relative range of repeated figures."""
    return (max(values) - min(values)) / statistics.median(values)


def measure_instructions(
    abl: Ablation, variant: str, requests: int, repeats: int, keep: Path | None = None
) -> dict[str, Any]:
    """Start `variant` under callgrind; `repeats` batches of `requests`; instructions per request of each
    Envoy (and their sum) in each batch, the idle rate taken out. With `keep`, each Envoy's first batch
    dump is kept there as `<variant>.<who>.callgrind`, and its bootstrap as `<variant>.<who>.json`."""
    slug = re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")
    cgs = {
        who: Callgrind(
            abl.bench.workdir / f"callgrind-{who}.out", keep / f"{slug}.{who}.callgrind" if keep else None
        )
        for who in ("server", "client")
    }
    abl.wrap = lambda who: cgs[who].args()
    t0 = time.monotonic()
    abl.start(variant)
    start_s = time.monotonic() - t0
    if keep is not None:
        for who, path in abl.config_paths.items():
            shutil.copyfile(path, keep / f"{slug}.{who}.json")
    for cg, proc in zip(cgs.values(), abl.procs, strict=True):
        cg.pid = proc.pid
        cg.instrument()
    client = KeepAlive(f"{abl.client_ip}:15001", abl.authority)
    try:
        raw, idle_total = counted_batches(client, cgs, requests, repeats)
        idle = {who: n / INSTR_IDLE_S for who, n in idle_total.items()}
    finally:
        client.close()
        abl.stop()
    batches = []
    for b in raw:
        per = {who: per_request(b[who], idle[who], b["seconds"], requests) for who in cgs}
        batches.append(
            {**per, "sum": per["server"] + per["client"], "rps": requests / b["seconds"], "raw": b}
        )
    return {"start_s": start_s, "idle_instructions_per_s": idle, "batches": batches}


def run_instructions(
    bench: Bench,
    rounds_n: int,
    requests: int,
    repeats: int,
    rows: tuple[str, ...] = ABLATION_ROWS,
    keep: Path | None = None,
) -> dict[str, Any]:
    variants = [r for r in rows if r in ABLATIONS or r == "reference"]
    skipped = [r for r in rows if r not in variants]
    if skipped:
        print(f"not under callgrind (live mesh Envoys): {', '.join(skipped)}")
    abl = Ablation(bench, rows)
    abl.ready_timeout = 300.0
    rounds: list[dict[str, Any]] = []
    for i in range(rounds_n):
        rnd: dict[str, Any] = {}
        for row in variants if i % 2 == 0 else reversed(variants):
            t0 = time.monotonic()
            try:
                rnd[row] = measure_instructions(abl, row, requests, repeats, keep if i == 0 else None)
            finally:
                abl.stop()  # also when the start failed
            sums = [b["sum"] for b in rnd[row]["batches"]]
            print(
                f"round {i + 1} {row}: {statistics.median(sums):,.0f} instructions/req (both Envoys), spread"
                f" {spread(sums) * 100:.2f} %, {rnd[row]['batches'][0]['rps']:.0f} rps under callgrind,"
                f" {time.monotonic() - t0:.0f} s ({rnd[row]['start_s']:.0f} s start-up); idle"
                f" {sum(rnd[row]['idle_instructions_per_s'].values()):,.0f} instructions/s",
                flush=True,
            )
        rounds.append(rnd)
    summary: dict[str, Any] = {}
    for row in variants:
        batches = [b for rnd in rounds for b in rnd[row]["batches"]]
        s = {who: statistics.median(b[who] for b in batches) for who in ("client", "server", "sum")}
        s["spread"] = spread([b["sum"] for b in batches])
        s["round_medians"] = [statistics.median(b["sum"] for b in rnd[row]["batches"]) for rnd in rounds]
        summary[row] = s
    copy_, ref = summary["generated (static copy)"], summary["reference"]
    print(
        f"\nInstructions per request (callgrind, user space), {requests} requests x {repeats} batches x"
        f" {rounds_n} round(s), one keep-alive connection; medians; spread = (max-min)/median of the sum"
    )
    print(
        f"{'row':<26} {'client':>9} {'server':>9} {'sum':>9} {'spread':>7} {'/ref':>6} {'saved':>8}"
        f" {'saved/ref':>9}"
    )
    for row, s in summary.items():
        s["ratio_to_reference"] = s["sum"] / ref["sum"]
        s["saved"] = _baseline(summary, row, copy_)["sum"] - s["sum"]
        s["saved_pct_of_reference"] = s["saved"] / ref["sum"] * 100
        print(
            f"{row:<26} {s['client']:>9,.0f} {s['server']:>9,.0f} {s['sum']:>9,.0f} {s['spread'] * 100:>6.2f}%"
            f" {s['ratio_to_reference']:>6.3f} {s['saved']:>8,.0f} {s['saved_pct_of_reference']:>8.1f}%"
        )
    return {"summary": summary, "rounds": rounds}


# `--ablation --syscalls`: the same variants, each Envoy's system calls per request counted by strace.
# Callgrind sees user space only; this is the other half: whether a config makes the kernel do more.

SYSCALL_RE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


class Strace:
    """`strace -c` attached to every thread of one running Envoy, for one window of time."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def _tids(self) -> list[int]:
        return [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]

    def _traced(self, tid: int) -> bool:
        status = Path(f"/proc/{self.pid}/task/{tid}/status").read_text()
        m = re.search(r"^TracerPid:\s+(\d+)", status, re.M)
        return m is not None and self.proc is not None and int(m.group(1)) == self.proc.pid

    def attach(self, timeout: float = 10.0) -> None:
        self.out.unlink(missing_ok=True)
        # -f with -p attaches every thread of the process, not only the main one.
        self.proc = subprocess.Popen(
            ["strace", "-c", "-f", "-qq", "-o", str(self.out), "-p", str(self.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not all(self._traced(t) for t in self._tids()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"strace did not attach to every thread of Envoy {self.pid}")
            time.sleep(0.02)

    def detach(self) -> dict[str, int]:
        """Stop tracing; the calls of each system call since `attach`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        self.proc = None
        calls: dict[str, int] = {}
        for line in self.out.read_text().splitlines():
            m = SYSCALL_RE.match(line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
        return calls

    begin, end = attach, detach


def measure_syscalls(abl: Ablation, variant: str, requests: int, repeats: int) -> dict[str, Any]:
    """Start `variant`; `repeats` batches of `requests` on one keep-alive connection, each Envoy traced;
    system calls per request of each Envoy by name, less what an idle Envoy makes in as long a time."""
    abl.wrap = lambda who: ["taskset", "-c", ENVOY_CPU]
    abl.start(variant)
    tracers = {
        who: Strace(proc.pid, abl.bench.workdir / f"strace-{who}.txt")
        for who, proc in zip(("server", "client"), abl.procs, strict=True)
    }
    client = KeepAlive(f"{abl.client_ip}:15001", abl.authority)
    try:
        raw, idle = counted_batches(client, tracers, requests, repeats)
    finally:
        client.close()
        abl.stop()
    batches = []
    for b in raw:
        per: dict[str, dict[str, float]] = {}
        for who in tracers:
            names = set(b[who]) | set(idle[who])
            per[who] = {
                n: (b[who].get(n, 0) - idle[who].get(n, 0) / INSTR_IDLE_S * b["seconds"]) / requests
                for n in sorted(names)
            }
        batches.append({**per, "seconds": b["seconds"], "raw": b})
    return {"idle_calls": idle, "batches": batches}


def run_syscalls(bench: Bench, requests: int, repeats: int, rows: tuple[str, ...]) -> dict[str, Any]:
    variants = [r for r in rows if r in ABLATIONS or r == "reference"]
    abl = Ablation(bench, rows)
    results = {}
    for row in variants:
        try:
            results[row] = measure_syscalls(abl, row, requests, repeats)
        finally:
            abl.stop()  # also when the start failed
    summary: dict[str, Any] = {}
    for row, res in results.items():
        s: dict[str, Any] = {}
        for who in ("client", "server"):
            names = sorted({n for b in res["batches"] for n in b[who]})
            s[who] = {n: statistics.median(b[who].get(n, 0.0) for b in res["batches"]) for n in names}
            s[f"{who}_total"] = sum(s[who].values())
        s["sum"] = s["client_total"] + s["server_total"]
        summary[row] = s
    ref = summary["reference"]
    print(
        f"\nSystem calls per request (strace -c, every thread), {requests} requests x {repeats} batches,"
        " one keep-alive connection; medians; idle calls taken out"
    )
    names = sorted({n for s in summary.values() for who in ("client", "server") for n in s[who]})
    shown = [
        n
        for n in names
        if any(abs(s[w].get(n, 0.0)) >= 0.05 for s in summary.values() for w in ("client", "server"))
    ]
    print(f"{'row':<26} {'client':>7} {'server':>7} {'sum':>7} {'/ref':>6}  by call (client+server)")
    for row, s in summary.items():
        s["ratio_to_reference"] = s["sum"] / ref["sum"]
        calls = ", ".join(f"{n} {s['client'].get(n, 0.0) + s['server'].get(n, 0.0):.2f}" for n in shown)
        print(
            f"{row:<26} {s['client_total']:>7.2f} {s['server_total']:>7.2f} {s['sum']:>7.2f}"
            f" {s['ratio_to_reference']:>6.3f}  {calls}"
        )
    return {"summary": summary, "variants": results}


# ---------------------------------------------------------------------------------------------- report


def median_of(rounds: list[dict[str, Any]], row: str, *keys: str) -> float | None:
    values = []
    for rnd in rounds:
        v: Any = rnd[row]
        for k in keys:
            v = v[k]
        if v is not None:
            values.append(v)
    return statistics.median(values) if values else None


def summarize(rounds: list[dict[str, Any]], rows: tuple[str, ...] = ROWS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in rows:
        s: dict[str, Any] = {"max_rps": median_of(rounds, row, "max", "rps")}
        s["foreign_cores@max"] = median_of(rounds, row, "max", "foreign_cores")
        for rate in RATES:
            for k in (
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "envoy_cpu_us_per_req",
                "envoy_user_us_per_req",
                "envoy_sys_us_per_req",
                "cp_cpu_us_per_req",
                "achieved_rps",
                "foreign_cores",
            ):
                s[f"{k}@{rate}"] = median_of(rounds, row, str(rate), k)
        out[row] = s
    return out


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_tables(summary: dict[str, Any]) -> dict[str, Any]:
    cols = [f"{q}@{r}" for r in RATES for q in ("p50", "p90", "p99")]
    print("\nLatency (ms) at fixed rates, 4 connections; max rps from wrk -c4 (medians over rounds)")
    print(f"{'row':<18} {'max rps':>8} " + " ".join(f"{c:>9}" for c in cols))
    for row, s in summary.items():
        vals = [s[f"{q}_ms@{r}"] for r in RATES for q in ("p50", "p90", "p99")]
        print(f"{row:<18} {fmt(s['max_rps'], '.0f'):>8} " + " ".join(f"{fmt(v):>9}" for v in vals))

    print("\nCPU per request (µs): Envoys of the row (core 1) / control plane (ALS, tracing)")
    print(f"{'row':<18} " + " ".join(f"{'envoy@' + str(r):>11} {'cp@' + str(r):>8}" for r in RATES)
          + "   other people's load (cores) max," + ",".join(str(r) for r in RATES))  # fmt: skip
    for row, s in summary.items():
        print(
            f"{row:<18} "
            + " ".join(
                f"{fmt(s[f'envoy_cpu_us_per_req@{r}'], '.0f'):>11} {fmt(s[f'cp_cpu_us_per_req@{r}'], '.0f'):>8}"
                for r in RATES
            )
            + "   "
            + ",".join(
                fmt(s[k], ".2f") for k in ["foreign_cores@max", *(f"foreign_cores@{r}" for r in RATES)]
            )
        )

    print("\nEnvoy CPU per request (µs), user / system")
    print(f"{'row':<18} " + " ".join(f"{'@' + str(r):>13}" for r in RATES))
    for row, s in summary.items():
        print(
            f"{row:<18} "
            + " ".join(
                f"{fmt(s[f'envoy_user_us_per_req@{r}'], '.0f') + ' / ' + fmt(s[f'envoy_sys_us_per_req@{r}'], '.0f'):>13}"
                for r in RATES
            )
        )

    ratios: dict[str, Any] = {}
    metrics = ["max_rps"] + [f"{q}_ms@{r}" for r in RATES for q in ("p50", "p90", "p99")]
    metrics += [f"envoy_{k}_us_per_req@{r}" for k in ("cpu", "user", "sys") for r in RATES]
    for base in ("direct", "reference"):
        if base not in summary:
            continue
        print(f"\nRatios to {base} (max rps: base/row, so >1 means slower; latency and CPU: row/base)")
        print(
            f"{'row':<18} "
            + " ".join(
                f"{m.split('_')[m.startswith('envoy_')] + '@' + m.split('@')[1] if '@' in m else 'max':>9}"
                for m in metrics
            )
        )
        for row, s in summary.items():
            if row == base:
                continue
            r: dict[str, float | None] = {}
            for m in metrics:
                a, b = s[m], summary[base][m]
                if a is None or b is None or a == 0 or b == 0:
                    r[m] = None
                else:
                    r[m] = b / a if m == "max_rps" else a / b
            ratios.setdefault(f"to_{base}", {})[row] = r
            print(f"{row:<18} " + " ".join(f"{fmt(r[m], '.3f'):>9}" for m in metrics))
    return ratios


# ---------------------------------------------------------------------------------------------- main


def write_result(name: str, result: dict[str, Any]) -> None:
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s per figure")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over all rows (default 3; 1 quick)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per figure (default 8; 3 quick)")
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="instead of the main table: the generated sidecars' config as static Envoys, minus one item at"
        " a time (writes dataplane-ablation.json)",
    )
    ap.add_argument(
        "--rows",
        default=",".join(ROWS),
        help="comma-separated rows to measure (default all; 'reference' is always measured), e.g."
        " '2 sidecars,2 sc, no telemetry' for more rounds of the rows that matter in the same time",
    )
    ap.add_argument(
        "--ablation-rows",
        default=None,
        help="with --ablation: comma-separated rows (default all; the static copy and 'reference' always)",
    )
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="with --ablation: instead of CPU time, each variant's Envoys under callgrind, instructions per"
        " request (writes dataplane-instructions.json; --rounds defaults to 1)",
    )
    ap.add_argument(
        "--syscalls",
        action="store_true",
        help="with --ablation: instead of CPU time, each variant's system calls per request, by strace"
        " (writes dataplane-syscalls.json)",
    )
    ap.add_argument(
        "--requests", type=int, default=500, help="with --instructions or --syscalls: requests per batch"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="with --instructions or --syscalls: batches per Envoy start"
    )
    ap.add_argument(
        "--keep-dumps",
        type=Path,
        default=None,
        help="with --instructions: keep each variant's first batch as DIR/<variant>.<server|client>.callgrind"
        " (per-function costs: callgrind_annotate --inclusive=yes) and its bootstrap as .json",
    )
    ap.add_argument("--loadgen", nargs=6, metavar=("HOST", "PORT", "RATE", "DURATION", "WARMUP", "AUTHORITY"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args()
    # Stop cleanly (mesh and reference Envoys) on SIGTERM, and on SIGINT even when started in background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.loadgen:
        host, port, rate, duration, warmup, authority = args.loadgen
        res = asyncio.run(_paced(host, int(port), float(rate), float(duration), float(warmup), authority))
        print(json.dumps(res))
        return
    if args.instructions and not (args.ablation and shutil.which("valgrind") and shutil.which("vgdb")):
        sys.exit("--instructions goes with --ablation and needs valgrind: apt-get install -y valgrind")
    if args.syscalls and not (args.ablation and shutil.which("strace")):
        sys.exit("--syscalls goes with --ablation and needs strace: apt-get install -y strace")
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores (load on core 0, Envoys on core 1)")
    wanted = {r.strip() for r in re.split(r",(?! )", args.rows)} | {"reference"}
    unknown = wanted - set(ROWS)
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}; rows are {', '.join(ROWS)}")
    rows = tuple(r for r in ROWS if r in wanted)
    wanted_ablation = {r.strip() for r in re.split(r",(?! )", args.ablation_rows or ",".join(ABLATION_ROWS))}
    wanted_ablation |= {"generated (static copy)", "reference"}
    if wanted_ablation & ALS_ROWS:  # their savings are against the access-log pair's copy
        wanted_ablation.add("access-log pipeline")
    if wanted_ablation - set(ABLATION_ROWS):
        sys.exit(f"unknown ablation rows {sorted(wanted_ablation - set(ABLATION_ROWS))}")
    ablation_rows = tuple(r for r in ABLATION_ROWS if r in wanted_ablation)
    rounds_n = args.rounds or (1 if args.quick or args.instructions else 3)
    duration = args.duration or (3.0 if args.quick else 8.0)
    warmup = 1.0
    rounds: list[dict[str, Any]] = []
    concurrency = "?"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="dataplane-") as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start()
            bench.check()
            print(
                f"mesh {bench.mesh.subnet}: echo app 127.0.0.1:{bench.app_port}, echo sidecar {bench.echo_ip}, "
                f"client sidecar {bench.client_ip}; reference {bench.ref_client_ip} -> {bench.ref_server_ip}",
                flush=True,
            )
            concurrency = bench.concurrency
            subset = ablation_rows != ABLATION_ROWS  # a subset keeps the full table's file
            if args.syscalls or args.instructions:
                if args.syscalls:
                    result = run_syscalls(bench, args.requests, args.repeats, ablation_rows)
                    stem, meta = "dataplane-syscalls", {}
                else:
                    if args.keep_dumps:
                        args.keep_dumps.mkdir(parents=True, exist_ok=True)
                    result = run_instructions(
                        bench, rounds_n, args.requests, args.repeats, ablation_rows, args.keep_dumps
                    )
                    stem, meta = "dataplane-instructions", {"rounds": rounds_n}
                result["meta"] = {
                    **meta,
                    "requests": args.requests,
                    "repeats": args.repeats,
                    "warmup_requests": INSTR_WARMUP,
                    "idle_s": INSTR_IDLE_S,
                    "envoy_concurrency": concurrency,
                    "wall_s": time.time() - started,
                }
                write_result(stem + ("-rows" if subset else ""), result)
                return
            if args.ablation:
                result = run_ablation(bench, rounds_n, duration, warmup, ablation_rows)
                result["meta"] = {
                    "rounds": rounds_n,
                    "duration_s": duration,
                    "rate": ABLATION_RATE,
                    "envoy_concurrency": concurrency,
                    "wall_s": time.time() - started,
                }
                name = "dataplane-ablation-quick" if args.quick else "dataplane-ablation"
                write_result(name + ("-rows" if subset else ""), result)
                return
            for i in range(rounds_n):
                rnd: dict[str, Any] = {}
                order = [
                    r
                    for r in ("direct", "1 sidecar", "2 sidecars", "2 sc, access-log metrics", "reference")
                    if r in rows
                ]
                if i % 2:
                    order.reverse()
                for row in order:
                    rnd[row] = measure_row(bench, row, duration, warmup)
                    print(f"round {i + 1} {row}: max {rnd[row]['max']['rps']:.0f} rps", flush=True)
                # Rows that change the mesh's config: set it, measure, set it back.
                for row, setter, value in (
                    ("2 sc, tracing 1%", bench.set_tracing, True),
                    ("2 sc, no telemetry", bench.set_metrics, False),
                ):
                    if row not in rows:
                        continue
                    setter(value)
                    rnd[row] = measure_row(bench, row, duration, warmup)
                    print(f"round {i + 1} {row}: max {rnd[row]['max']['rps']:.0f} rps", flush=True)
                    setter(not value)
                rounds.append(rnd)
        finally:
            bench.stop()
    summary = summarize(rounds, rows)
    ratios = print_tables(summary)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "dataplane-quick" if args.quick else "dataplane"
    path = out / (f"{name}.json" if rows == ROWS else f"{name}-rows.json")  # a subset keeps the full table
    meta = {
        "rounds": rounds_n,
        "duration_s": duration,
        "connections": CONNECTIONS,
        "rates": RATES,
        "body_bytes": BODY_BYTES,
        "cpus": {"load, echo app, control plane": LOAD_CPU, "envoys": ENVOY_CPU},
        "envoy_concurrency": concurrency,
        "wall_s": time.time() - started,
    }
    path.write_text(
        json.dumps({"meta": meta, "summary": summary, "ratios": ratios, "rounds": rounds}, indent=2)
    )
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
