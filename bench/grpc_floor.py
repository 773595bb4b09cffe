"""What Python gRPC (grpc.aio) costs to push one message to many streams, with nothing of Isthmus in it.
Prints a table, writes JSON.

    .venv/bin/python bench/grpc_floor.py [--clients 1000] [--rounds 3] [--cases delta sotw route]

The floor under bench/push.py's figures: the same transport, process layout and message sizes, without
the control plane. The server is a grpc.aio server in this process with the XdsServer's options
(64 MiB message limits, its keepalive settings) and one generic stream-stream method whose handlers use
`context.read()` / `context.write()` on bytes, as the XdsServer's do. The clients run in a child
process (`--client-mode`), one gRPC channel (TCP connection) each on 127.0.0.1, with
`grpc.use_local_subchannel_pool`, a 256 MiB HTTP/2 stream window (`grpc.http2.lookahead_bytes`, as
Envoy's default `initial_stream_window_size`) and a 64 MiB receive limit. Requests and responses are
raw bytes (no protobuf).

Each client opens its stream and writes a hello. Once all are connected, a round is: every handler
writes one message of `msg bytes` to its stream and reads one ACK of `ack bytes`; each client reads the
message, notes when it arrived and writes the ACK. A handler reads its ACK right after its own write
(the XdsServer writes an endpoint push to every stream before it reads their ACKs). Cases: "endpoint push, delta ACK" (1,800-byte
response, 100-byte ACK), "endpoint push, SotW ACK" (1,800 bytes, 60,000-byte ACK: Envoy's
state-of-the-world EDS ACK repeats the 1,200 cluster names it subscribes to) and "route table push"
(638,000 bytes, 100-byte ACK: one `http_proxy` route table of the push bench's mesh). Each case has
its own server and client process and runs `--rounds` rounds on the same streams.

Per round, from the first write (this process's CLOCK_MONOTONIC, which the child shares):
`last recv s` until the last client received the message, `last ACK s` until the server read the last
ACK, `srv cpu s` this process's CPU time (getrusage, every thread: asyncio and gRPC's) over that span,
`per stream ms` that divided by the clients, `cl cpu s` the client process's CPU over the same span
(utime + stime from /proc, 10 ms ticks), `other cpu s` what the rest of the machine used meanwhile
(/proc/stat busy time minus both; the machine is shared). Each column's median over the rounds comes
first, then each round. The JSON adds the median receive time (`p50_recv_s`) and both processes'
minor page faults per round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from isthmus.xds.server import grpc_server_options

SERVICE = "isthmus.bench.Floor"
METHOD = f"/{SERVICE}/Push"
HELLO = b"hello"

CASES = {
    "delta": ("endpoint push, delta ACK", 1_800, 100),
    "sotw": ("endpoint push, SotW ACK", 1_800, 60_000),
    "route": ("route table push", 638_000, 100),
}

SERVER_OPTIONS = grpc_server_options()  # the XdsServer's

CLIENT_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.http2.lookahead_bytes", 256 << 20),  # Envoy's default initial_stream_window_size
    ("grpc.max_receive_message_length", 64 << 20),
]


# ------------------------------------------------------------------------------------------ clients


async def one_client(
    port: int, i: int, rounds: int, ack: bytes, timeout: float, recv: list[list[float]], state: dict[str, Any]
) -> None:
    """Hello, then per round: read the message, note when it arrived, write the ACK. Then half-close and
    read the end of the stream. Every await is bounded by `timeout`."""
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CLIENT_OPTIONS)
    try:
        call = ch.stream_stream(METHOD, request_serializer=None, response_deserializer=None)()
        async with asyncio.timeout(timeout):
            await call.write(HELLO)
        for r in range(rounds):
            async with asyncio.timeout(timeout):
                msg = await call.read()
            if msg is grpc.aio.EOF:
                raise RuntimeError(f"stream ended before round {r}")
            recv[r][i] = time.monotonic()
            async with asyncio.timeout(timeout):
                await call.write(ack)
        async with asyncio.timeout(timeout):
            await call.done_writing()
            end = await call.read()
            code = await call.code()
        if end is not grpc.aio.EOF or code != grpc.StatusCode.OK:
            raise RuntimeError(f"stream did not end cleanly: {code}")
        state["finished"] += 1
    except (Exception, asyncio.CancelledError) as e:
        state["errors"] += 1
        state.setdefault("error", f"client {i}: {type(e).__name__}: {e}")
        if isinstance(e, asyncio.CancelledError):
            raise
    finally:
        try:
            async with asyncio.timeout(5):
                await ch.close()
        except TimeoutError:
            pass


async def client_mode(port: int, n: int, rounds: int, ack_bytes: int, timeout: float) -> None:
    """Clients 0 .. n-1. Commands on stdin, one JSON line back on stdout each: `recv <round>` gives the
    receive times (CLOCK_MONOTONIC) of that round; `quit` (or EOF) ends the clients and the process."""
    ack = b"a" * ack_bytes
    recv = [[0.0] * n for _ in range(rounds)]
    state: dict[str, Any] = {"finished": 0, "errors": 0}
    tasks = [asyncio.create_task(one_client(port, i, rounds, ack, timeout, recv, state)) for i in range(n)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    idle = timeout * (rounds + 2)  # the parent sends a command at least this often
    while True:
        try:
            async with asyncio.timeout(idle):
                line = (await reader.readline()).decode().strip()
        except TimeoutError:
            break
        cmd, _, arg = line.partition(" ")
        if cmd == "recv":
            times = [t for t in recv[int(arg)] if t]
            print(json.dumps({"recv": times, **state}), flush=True)
        else:  # quit, EOF
            break
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------------- server


def cpu_s() -> tuple[float, int]:
    """This process's CPU time (every thread) and minor page faults."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_minflt


def process_cpu_s(pid: int) -> tuple[float, int]:
    """utime + stime and minor page faults of another process (the clients), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def busy_cpu_s() -> float:
    """CPU time all processes of the machine used so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class Floor:
    """The server's side of every stream: wait for a round, write the message, read the ACK."""

    def __init__(self, n: int, rounds: int, msg_bytes: int) -> None:
        self.n = n
        self.msg = b"m" * msg_bytes
        self.go = [asyncio.Event() for _ in range(rounds)]
        self.acks = [0] * rounds
        self.acked = [asyncio.Event() for _ in range(rounds)]
        self.last_ack = [0.0] * rounds
        self.connected = 0
        self.closed = 0
        self.all_closed = asyncio.Event()
        self.stop = asyncio.Event()  # the bench gave up: handlers return instead of waiting

    async def handler(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            if await context.read() is grpc.aio.EOF:
                return
            self.connected += 1
            for r, go in enumerate(self.go):
                if not go.is_set():
                    await go.wait()
                if self.stop.is_set():
                    return
                await context.write(self.msg)
                if await context.read() is grpc.aio.EOF:
                    return
                self.acks[r] += 1
                if self.acks[r] == self.n:
                    self.last_ack[r] = time.monotonic()
                    self.acked[r].set()
            await context.read()  # the client's half-close
        finally:
            self.closed += 1
            if self.closed == self.n:
                self.all_closed.set()

    def abort(self) -> None:
        self.stop.set()
        for go in self.go:
            go.set()


async def child_request(proc: asyncio.subprocess.Process, cmd: str, timeout: float) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{cmd}\n".encode())
    async with asyncio.timeout(timeout):
        await proc.stdin.drain()
        line = await proc.stdout.readline()
    if not line:
        raise RuntimeError(f"client process exited ({proc.returncode})")
    return json.loads(line)


async def wait_event(event: asyncio.Event, proc: asyncio.subprocess.Process, timeout: float) -> None:
    """Wait for `event`, at most `timeout` seconds; raise if the client process exits first."""
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(proc.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if waits[0] in done:
        return
    if waits[1] in done:
        raise RuntimeError(f"client process exited ({proc.returncode})")
    raise TimeoutError


async def run_case(key: str, args: argparse.Namespace) -> dict[str, Any]:
    name, msg_bytes, ack_bytes = CASES[key]
    n, rounds, timeout = args.clients, args.rounds, args.timeout
    floor = Floor(n, rounds, msg_bytes)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Push": grpc.stream_stream_rpc_method_handler(floor.handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    proc: asyncio.subprocess.Process | None = None
    result: dict[str, Any] = {
        "case": name,
        "clients": n,
        "msg_bytes": msg_bytes,
        "ack_bytes": ack_bytes,
        "rounds": [],
    }
    clean = False
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client-mode", "--port", str(port), "--clients", str(n),
            "--rounds", str(rounds), "--ack-bytes", str(ack_bytes), "--timeout", str(timeout),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        t0 = time.monotonic()
        while floor.connected < n:
            if proc.returncode is not None:
                raise RuntimeError(f"client process exited ({proc.returncode})")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{floor.connected} of {n} clients connected after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        result["connect_s"] = time.monotonic() - t0
        print(f"[{name}] {n} clients connected in {result['connect_s']:.1f} s", file=sys.stderr, flush=True)
        await asyncio.sleep(args.settle)
        for r in range(rounds):
            gc.collect()
            busy0, (ccpu0, cflt0), (cpu0, flt0) = busy_cpu_s(), process_cpu_s(proc.pid), cpu_s()
            t0 = time.monotonic()
            floor.go[r].set()
            try:
                await wait_event(floor.acked[r], proc, timeout)
            except TimeoutError:
                got = await child_request(proc, f"recv {r}", 10)
                raise TimeoutError(
                    f"round {r + 1}: {floor.acks[r]} of {n} ACKs, {len(got['recv'])} received, "
                    f"{got['errors']} client errors {got.get('error', '')}"
                ) from None
            (cpu1, flt1), (ccpu1, cflt1), busy1 = cpu_s(), process_cpu_s(proc.pid), busy_cpu_s()
            got = await child_request(proc, f"recv {r}", 10)
            if len(got["recv"]) != n:
                raise RuntimeError(
                    f"round {r + 1}: {len(got['recv'])} of {n} clients recorded a receive time"
                )
            recv = sorted(t - t0 for t in got["recv"])
            row = {
                "last_recv_s": recv[-1],
                "p50_recv_s": recv[n // 2],
                "last_ack_s": floor.last_ack[r] - t0,
                "server_cpu_s": cpu1 - cpu0,
                "server_cpu_per_stream_ms": (cpu1 - cpu0) / n * 1000,
                "client_cpu_s": ccpu1 - ccpu0,
                "other_cpu_s": max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (ccpu1 - ccpu0)),
                "server_minflt": flt1 - flt0,
                "client_minflt": cflt1 - cflt0,
            }
            result["rounds"].append(row)
            print(
                f"[{name}] round {r + 1}: last recv {row['last_recv_s']:.3f} s, "
                f"last ACK {row['last_ack_s']:.3f} s, server CPU {row['server_cpu_s']:.3f} s, "
                f"client CPU {row['client_cpu_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(args.settle)
        result["median"] = {
            k: statistics.median(row[k] for row in result["rounds"]) for k in result["rounds"][0]
        }
        # The clients half-close; every handler reads that and returns, so nothing is pending at stop.
        await wait_event(floor.all_closed, proc, timeout)
        got = await child_request(proc, f"recv {rounds - 1}", 10)
        if got["finished"] != n:
            raise RuntimeError(
                f"{got['finished']} of {n} client streams ended cleanly: {got.get('error', '')}"
            )
        clean = True
    finally:
        if not clean:
            # Handlers still waiting would be cancelled by stop(); grpc logs each with a traceback.
            floor.abort()
            logging.getLogger("grpc").setLevel(logging.CRITICAL)
        if proc is not None and proc.returncode is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write(b"quit\n")
                async with asyncio.timeout(10 if clean else 1):
                    await proc.wait()
            except (TimeoutError, ConnectionError):
                proc.kill()
                await proc.wait()
        await server.stop(1 if clean else 0)
    return result


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [await run_case(key, args) for key in args.cases]


# -------------------------------------------------------------------------------------------- table


def table(results: list[dict[str, Any]]) -> str:
    cols = [
        ("last recv s", "last_recv_s", "{:.3f}"),
        ("last ACK s", "last_ack_s", "{:.3f}"),
        ("srv cpu s", "server_cpu_s", "{:.3f}"),
        ("per stream ms", "server_cpu_per_stream_ms", "{:.3f}"),
        ("cl cpu s", "client_cpu_s", "{:.2f}"),
        ("other cpu s", "other_cpu_s", "{:.2f}"),
    ]
    head = f"{'case':<25} {'clients':>7} {'msg bytes':>9} {'ack bytes':>9} {'round':>6}"
    head += "".join(f" {h:>13}" for h, _, _ in cols)
    lines = [head]
    for res in results:
        rows = [("median", res["median"])] + [(str(i + 1), r) for i, r in enumerate(res["rounds"])]
        for k, (label, row) in enumerate(rows):
            if k == 0:
                line = f"{res['case']:<25} {res['clients']:>7} {res['msg_bytes']:>9,} {res['ack_bytes']:>9,}"
            else:
                line = " " * 54
            line += f" {label:>6}" + "".join(f" {fmt.format(row[key]):>13}" for _, key, fmt in cols)
            lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--timeout", type=float, default=120, help="bound on every wait (s)")
    ap.add_argument("--settle", type=float, default=1.0, help="pause after connecting and between rounds (s)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "grpc_floor.json"))
    ap.add_argument("--client-mode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ack-bytes", type=int, default=100, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client_mode:
        asyncio.run(client_mode(args.port, args.clients, args.rounds, args.ack_bytes, args.timeout))
        return
    results = asyncio.run(run_all(args))
    print()
    print(table(results))
    out = {
        "args": {k: v for k, v in vars(args).items() if k not in ("client_mode", "port", "ack_bytes")},
        "grpc": grpc.__version__,
        "python": sys.version.split()[0],
        "results": results,
        "load1": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
