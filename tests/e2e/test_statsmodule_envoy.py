"""The in-proxy metrics module (src/isthmus/telemetry/statsmod) in a real Envoy.

A static bootstrap: an HTTP listener whose HCM logs through the module (direction outbound) to a cluster
named like Istio's outbound clusters that points at a tiny HTTP server of the test, a route to a cluster
without endpoints (UH) and paths without a route (NR); a tcp_proxy listener (flush on upstream connect and
every second) to a TCP echo server; a cluster of two endpoints, the test's HTTP server on 127.0.0.1 and a
second one on SECOND_HOST. The module sends its series to a UDP socket of the test. Everything else
listens on 127.0.0.1; every process, thread and socket is stopped by the fixtures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.protobuf import json_format

from isthmus.mesh.addresses import free_ports
from isthmus.telemetry import statsmodule
from isthmus.telemetry.statsmodule import HttpSeries, Report, TcpSeries, parse_datagram

pytestmark = pytest.mark.e2e

BODY = b"x" * 1024
ECHO_CLUSTER = "outbound|8080||echo.default.svc.cluster.local"
EMPTY_CLUSTER = "outbound|8080||empty.default.svc.cluster.local"
TCP_CLUSTER = "outbound|9000||tcp-echo.default.svc.cluster.local"
# Two endpoints on two addresses (the second server listens on SECOND_HOST), round robin.
TWO_CLUSTER = "outbound|8080||two.default.svc.cluster.local"
SECOND_HOST = "127.0.0.7"
NODE_ID = "sidecar~127.0.0.1~client-1.default~default.svc.cluster.local"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- servers of the test ---------------------------------------------------------------------------------


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/echo/slow"):
            time.sleep(0.06)
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, *args: object) -> None:
        pass


class _TcpEcho:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accept = threading.Thread(target=self._accept, daemon=True)
        self.accept.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self.stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        self.stopping.set()
        self.accept.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


@dataclass
class Collector:
    """The test's UDP collector: every datagram parsed; the latest cumulative series per key."""

    sock: socket.socket
    reports: list[tuple[float, Report]] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def drain(self, timeout: float = 0.2) -> None:
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            self.reports.append((time.monotonic(), parse_datagram(data)))
            self.sock.settimeout(0.01)

    def latest(self) -> tuple[dict[tuple, HttpSeries], dict[tuple, TcpSeries]]:
        http: dict[tuple, tuple[int, HttpSeries]] = {}
        tcp: dict[tuple, tuple[int, TcpSeries]] = {}
        for _, r in self.reports:
            for s in r.http:
                if s.key() not in http or http[s.key()][0] <= r.seq:
                    http[s.key()] = (r.seq, s)
            for t in r.tcp:
                if t.key() not in tcp or tcp[t.key()][0] <= r.seq:
                    tcp[t.key()] = (r.seq, t)
        return {k: v for k, (_, v) in http.items()}, {k: v for k, (_, v) in tcp.items()}

    def wait(self, what: str, pred, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.drain(0.2)
            last = pred(*self.latest())
            if last:
                return last
        http, tcp = self.latest()
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; http={http!r} tcp={tcp!r}")


# -- Envoy -----------------------------------------------------------------------------------------------


def _cluster(name: str, *hosts: tuple[str, int]) -> dict:
    endpoints = (
        [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": ip, "port_value": port}}}}
                    for ip, port in hosts
                ]
            }
        ]
        if hosts
        else []
    )
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": endpoints},
    }


def _logs(collector: tuple[str, int] | None, direction: str) -> list[dict]:
    if collector is None:
        return []
    log = statsmodule.access_logger(collector, NODE_ID, direction)
    return [json_format.MessageToDict(log, preserving_proto_field_name=True)]


def bootstrap(
    *,
    admin: int,
    http: int,
    tcp: int,
    tcp_in: int,
    upstream: int,
    upstream2: int,
    echo: int,
    collector: tuple[str, int] | None,
) -> dict:
    """The static bootstrap; without `collector`, the same Envoy without the module (for comparisons)."""
    logs = _logs(collector, "outbound")
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "outbound_http",
        "access_log": logs,
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "echo",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "echo-route",
                            "match": {"prefix": "/echo"},
                            "route": {"cluster": ECHO_CLUSTER},
                        },
                        {
                            "name": "two-route",
                            "match": {"prefix": "/two"},
                            "route": {"cluster": TWO_CLUSTER},
                        },
                        {
                            "name": "empty-route",
                            "match": {"prefix": "/empty"},
                            "route": {"cluster": EMPTY_CLUSTER},
                        },
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }

    def tcp_proxy(direction: str) -> dict:
        return {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": f"{direction}_tcp",
            "cluster": TCP_CLUSTER,
            "access_log": _logs(collector, direction),
            "access_log_options": {"flush_access_log_on_connected": True, "access_log_flush_interval": "1s"},
        }

    def listener(name: str, port: int, filt: dict) -> dict:
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": name, "typed_config": filt}]}],
        }

    return {
        "node": {"id": NODE_ID, "cluster": "client.default"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                listener("http", http, hcm),
                listener("tcp", tcp, tcp_proxy("outbound")),
                listener("tcp_in", tcp_in, tcp_proxy("inbound")),
            ],
            "clusters": [
                _cluster(ECHO_CLUSTER, ("127.0.0.1", upstream)),
                _cluster(TWO_CLUSTER, ("127.0.0.1", upstream), (SECOND_HOST, upstream2)),
                _cluster(EMPTY_CLUSTER),
                _cluster(TCP_CLUSTER, ("127.0.0.1", echo)),
            ],
        },
    }


@dataclass
class Envoy:
    proc: subprocess.Popen
    log: Path
    admin: int
    http: int
    tcp: int
    tcp_in: int

    def admin_post(self, path: str) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", method="POST")
        with _OPENER.open(req, timeout=5) as r:
            r.read()

    def stats(self) -> dict[str, int]:
        with _OPENER.open(f"http://127.0.0.1:{self.admin}/stats?format=json", timeout=5) as r:
            doc = json.load(r)
        return {s["name"]: s["value"] for s in doc["stats"] if "value" in s}

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            try:
                self.admin_post("/quitquitquit")
            except OSError:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_envoy(workdir: Path, module_dir: Path | None, **ports: object) -> Envoy:
    from isthmus.agent.envoy import default_envoy_path

    admin, http, tcp, tcp_in = free_ports("127.0.0.1", 4)
    boot = bootstrap(admin=admin, http=http, tcp=tcp, tcp_in=tcp_in, **ports)  # type: ignore[arg-type]
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "envoy.json"
    cfg.write_text(json.dumps(boot, indent=1))
    log = workdir / "envoy.log"
    env = dict(os.environ)
    if module_dir is not None:
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(module_dir)
    argv = [
        str(default_envoy_path()),
        "-c",
        str(cfg),
        "--disable-hot-restart",
        "--concurrency",
        "2",
        "-l",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    envoy = Envoy(proc, log, admin, http, tcp, tcp_in)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"envoy exited with {proc.returncode}:\n{envoy.log_text()[-4000:]}")
        try:
            with _OPENER.open(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.read().strip() == b"LIVE":
                    return envoy
        except OSError:
            pass
        time.sleep(0.1)
    envoy.stop()
    raise AssertionError(f"envoy not ready after 20s:\n{envoy.log_text()[-4000:]}")


# -- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return statsmodule.build(tmp_path_factory.mktemp("statsmod-cache"))
    except statsmodule.ModuleUnavailable as e:
        if "no C compiler" in e.reason:
            pytest.skip(f"the stats module needs a C compiler: {e.reason}")
        raise


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int, int]]:
    https = [ThreadingHTTPServer((host, 0), _Upstream) for host in ("127.0.0.1", SECOND_HOST)]
    threads = []
    for http in https:
        http.daemon_threads = True
        threads.append(
            threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        )
        threads[-1].start()
    echo = _TcpEcho()
    try:
        yield https[0].server_address[1], echo.port, https[1].server_address[1]
    finally:
        for http, t in zip(https, threads, strict=True):
            http.shutdown()
            http.server_close()
            t.join(5)
        echo.close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    try:
        yield Collector(sock)
    finally:
        sock.close()


@pytest.fixture
def envoy(
    tmp_path: Path, module_dir: Path, servers: tuple[int, int, int], collector: Collector
) -> Iterator[Envoy]:
    upstream, echo, upstream2 = servers
    proxy = start_envoy(
        tmp_path / "envoy",
        module_dir,
        upstream=upstream,
        upstream2=upstream2,
        echo=echo,
        collector=collector.address,
    )
    try:
        yield proxy
    finally:
        code = proxy.stop()
        text = proxy.log_text()
        assert "Caught Segmentation fault" not in text and "Caught Aborted" not in text, text[-4000:]
        assert code == 0, f"envoy exited with {code}:\n{text[-4000:]}"


# -- a raw HTTP/1.1 client (exact wire bytes) -------------------------------------------------------------


def http_exchange(sock: socket.socket, request: bytes) -> tuple[int, int]:
    """Send one request on a keep-alive connection; (status, response bytes read off the wire)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response headers"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        rest += chunk
    assert len(rest) == length, "more bytes than the response's content-length"
    return status, len(head) + 4 + length


def _req(path: str, port: int, body: bytes = b"") -> bytes:
    method = "POST" if body else "GET"
    extra = f"content-length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{extra}\r\n".encode() + body


# -- tests -----------------------------------------------------------------------------------------------


def test_http_series(envoy: Envoy, collector: Collector) -> None:
    n = 25
    sent = received = 0
    with socket.create_connection(("127.0.0.1", envoy.http), timeout=5) as s:
        for i in range(n):
            req = _req("/echo/slow" if i == 0 else "/echo", envoy.http, b"y" * (100 if i % 2 else 0))
            status, got = http_exchange(s, req)
            assert status == 200
            sent, received = sent + len(req), received + got
    with socket.create_connection(("127.0.0.1", envoy.http), timeout=5) as s:
        for _ in range(3):
            assert http_exchange(s, _req("/empty", envoy.http))[0] == 503
        for _ in range(2):
            assert http_exchange(s, _req("/nowhere", envoy.http))[0] == 404

    def ok(http: dict, tcp: dict) -> dict | None:
        by_code = {s.code: s for s in http.values()}
        want = {200: n, 503: 3, 404: 2}
        return by_code if {c: s.requests for c, s in by_code.items()} == want else None

    by_code = collector.wait(f"{n} requests in the series", ok)
    assert len({s.key() for s in by_code.values()}) == 3
    good = by_code[200]
    assert good.direction == "outbound" and good.flags == "-"
    assert good.cluster == ECHO_CLUSTER and good.route == "echo-route"
    assert good.upstream_ip == "127.0.0.1" and good.downstream_ip == "127.0.0.1"
    assert good.local_port == envoy.http
    assert (
        good.upstream_peer_san,
        good.upstream_local_san,
        good.downstream_peer_san,
        good.downstream_local_san,
    ) == (
        "",
        "",
        "",
        "",
    )
    assert good.authority == ""  # an outbound|... cluster: the control plane knows the destination
    assert not good.connect and not good.grpc and good.grpc_status == ""
    assert sum(good.duration) == n and len(good.duration) == 20
    # One request took >= 60 ms upstream: bucket 6 (50, 100] or later; its ms are in the sum.
    assert sum(good.duration[6:]) >= 1 and good.duration_sum >= 60
    # Wire bytes, exactly what the client wrote and read.
    assert good.request_bytes_sum == sent and good.wire_received == sent
    assert good.response_bytes_sum == received and good.wire_sent == received
    assert sum(good.request_bytes) == n and sum(good.response_bytes) == n
    # Every response is 1 KB + headers (1000 < size <= 2500: bucket 10); requests are < 250 bytes.
    assert good.response_bytes[10] == n
    assert sum(good.request_bytes[:8]) == n
    assert good.request_messages == good.response_messages == 0

    uh = by_code[503]
    assert uh.flags == "UH" and uh.cluster == EMPTY_CLUSTER and uh.route == "empty-route"
    assert uh.upstream_ip == "" and uh.authority == ""
    nr = by_code[404]
    assert nr.flags == "NR" and nr.cluster == "" and nr.route == ""
    assert nr.authority == f"127.0.0.1:{envoy.http}"  # no outbound|... cluster: the authority is kept

    # Envoy's own counters agree on the downstream bytes of these connections.
    stats = envoy.stats()
    total_rx = stats["http.outbound_http.downstream_cx_rx_bytes_total"]
    total_tx = stats["http.outbound_http.downstream_cx_tx_bytes_total"]
    series = by_code.values()
    assert sum(s.request_bytes_sum for s in series) == total_rx
    assert sum(s.response_bytes_sum for s in series) == total_tx

    reports = [r for _, r in collector.reports]
    assert {r.instance for r in reports} == {reports[0].instance} and len(reports[0].instance) == 16
    assert {r.node_id for r in reports} == {NODE_ID}
    assert all(r.dropped == 0 and r.send_errors == 0 for r in reports)


def _exchange(s: socket.socket, data: bytes) -> None:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "echo closed the connection"
        got += chunk


def test_tcp_series_and_final_flush(envoy: Envoy, collector: Collector) -> None:
    def series(tcp: dict, direction: str) -> TcpSeries | None:
        found = [t for t in tcp.values() if t.cluster == TCP_CLUSTER and t.direction == direction]
        assert len(found) <= 1, found
        return found[0] if found else None

    with (
        socket.create_connection(("127.0.0.1", envoy.tcp), timeout=5) as s,
        socket.create_connection(("127.0.0.1", envoy.tcp_in), timeout=5) as s_in,
    ):
        _exchange(s, b"a" * 100)
        _exchange(s_in, b"c" * 70)
        first = collector.wait(
            "the open connection's first 100 bytes",
            lambda http, tcp: (t := series(tcp, "outbound")) and t.received == 100 and t.sent == 100 and t,
        )
        assert (first.opened, first.closed) == (1, 0)
        _exchange(s, b"b" * 50)
        # The periodic entries (every second) move the bytes while the connection stays open.
        second = collector.wait(
            "the periodic entry's bytes",
            lambda http, tcp: (t := series(tcp, "outbound")) and t.received == 150 and t,
        )
        assert (second.opened, second.closed, second.sent) == (1, 0, 150)
        # Inbound without a peer certificate: the connected and periodic entries are skipped.
        assert series(collector.latest()[1], "inbound") is None
    closed = collector.wait(
        "the closed connection", lambda http, tcp: (t := series(tcp, "outbound")) and t.closed == 1 and t
    )
    assert (closed.opened, closed.sent, closed.received) == (1, 150, 150)
    assert closed.flags == "-" and closed.route == ""
    assert closed.upstream_ip == "127.0.0.1" and closed.downstream_ip == "127.0.0.1"
    assert closed.local_port == envoy.tcp
    inbound = collector.wait(
        "the inbound connection's end entry",
        lambda http, tcp: (t := series(tcp, "inbound")) and t.closed == 1 and t,
    )
    assert (inbound.opened, inbound.closed, inbound.sent, inbound.received) == (1, 1, 70, 70)
    assert inbound.local_port == envoy.tcp_in and inbound.downstream_peer_san == ""

    # Shutdown: a final flush arrives after /quitquitquit, and Envoy exits cleanly (the fixture checks).
    collector.drain(0.1)
    last_seq = max(r.seq for _, r in collector.reports)
    quit_at = time.monotonic()
    assert envoy.stop() == 0
    collector.drain(1.0)
    after = [r for t, r in collector.reports if t >= quit_at and r.seq > last_seq]
    assert after, "no final flush after /quitquitquit"
    final = max(after, key=lambda r: r.seq)
    assert sorted(t.key() for t in final.tcp) == sorted([closed.key(), inbound.key()])
    assert [t for t in final.tcp if t.key() == closed.key()] == [closed]


def test_http_series_keep_each_connection_apart(envoy: Envoy, collector: Collector) -> None:
    """The module keeps a connection's own fields (remote address, local port, SANs) per connection id:
    requests interleaved on connections from two source addresses, and a later connection from the
    first address again, each count under their own downstream address."""
    counts = {"127.0.0.2": 0, "127.0.0.3": 0}

    def connect(source: str) -> socket.socket:
        s = socket.socket()
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", envoy.http))
        return s

    a, b = connect("127.0.0.2"), connect("127.0.0.3")
    with a, b:
        for i in range(12):
            s, source = (a, "127.0.0.2") if i % 3 else (b, "127.0.0.3")
            assert http_exchange(s, _req("/echo", envoy.http))[0] == 200
            counts[source] += 1
    with connect("127.0.0.2") as c:
        for _ in range(2):
            assert http_exchange(c, _req("/echo", envoy.http))[0] == 200
            counts["127.0.0.2"] += 1

    def ok(http: dict, tcp: dict) -> dict | None:
        by_ip: dict[str, int] = {}
        for s in http.values():
            by_ip[s.downstream_ip] = by_ip.get(s.downstream_ip, 0) + s.requests
        return by_ip if by_ip == counts else None

    collector.wait(f"requests by downstream address {counts}", ok)
    assert all(s.local_port == envoy.http for s in collector.latest()[0].values())


def test_http_series_keep_each_upstream_apart(envoy: Envoy, collector: Collector) -> None:
    """The module keeps an upstream connection's own fields (host address, SANs) per connection id:
    requests of one downstream connection, spread round robin over two hosts, count under their own
    host's address."""
    with socket.create_connection(("127.0.0.1", envoy.http), timeout=5) as s:
        for _ in range(10):
            assert http_exchange(s, _req("/two", envoy.http))[0] == 200

    def ok(http: dict, tcp: dict) -> dict | None:
        by_ip: dict[str, int] = {}
        for s in http.values():
            if s.cluster == TWO_CLUSTER:
                by_ip[s.upstream_ip] = by_ip.get(s.upstream_ip, 0) + s.requests
        return by_ip if sum(by_ip.values()) == 10 else None

    by_ip = collector.wait("10 requests to the two hosts", ok)
    assert by_ip == {"127.0.0.1": 5, SECOND_HOST: 5}
