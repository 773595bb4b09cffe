"""The echo test server: an ASGI app served by hypercorn (HTTP/1.1, h2c prior knowledge, Upgrade: h2c)
plus line-based TCP echo listeners.

Every HTTP response is a JSON document describing the request and the instance that served it (see
DESIGN.md §4 and ``EchoApp``). The server is meant to be fast enough for benchmarks: no per-request
logging unless verbose, the identity part of the response is built once, and query parameters are only
parsed when there is a query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from isthmus.echo.behaviour import (
    BadParameter,
    parse_delay,
    parse_duration,
    parse_header_line,
    parse_size,
    parse_status_code,
    parse_weighted,
    pick_weighted,
)
from isthmus.echo.config import EchoConfig, PortBinding

# Headers an app must copy from its inbound request to its outbound calls for traces to join up
# (Istio's list for Zipkin/B3 and W3C trace context), plus the identity headers bookinfo forwards.
TRACE_HEADERS = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
)
FORWARDED_HEADERS = (*TRACE_HEADERS, "end-user", "user", "cookie")

RECENT_MAX = 100
OWN_PREFIX = b"/.echo/"
STREAM_PATH = b"/stream"
JSON_CT = (b"content-type", b"application/json")
NDJSON_CT = (b"content-type", b"application/x-ndjson")
# Headers HTTP/2 forbids in a response (connection-specific).
_H2_FORBIDDEN = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc) + "\n").encode()


class EchoApp:
    """The ASGI application. ``count`` and ``recent`` are what ``/.echo/count`` and ``/.echo/requests``
    report; own endpoints (``/.echo/...``) are neither counted nor recorded nor subject to failure flags.
    """

    def __init__(self, config: EchoConfig) -> None:
        self.config = config
        self.count = 0
        self.served = 0  # for --fail-first: only /.echo/reset?fail-first=N resets it
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self._target_by_app = {b.app: b.target for b in config.http_ports}
        self._identity = {
            "workload": config.workload,
            "instance": config.instance,
            "namespace": config.namespace,
            "version": config.version,
            "labels": config.labels,
            "ip": config.ip,
        }
        self._stream_identity = {
            "instance": config.instance,
            "workload": config.workload,
            "version": config.version,
        }
        self._extra_headers = [(k.lower().encode(), v.encode()) for k, v in config.response_headers]
        self._clients: dict[str | None, Any] = {}

    # ---------------------------------------------------------------- ASGI entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    # ---------------------------------------------------------------- requests
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope["raw_path"]
        if raw_path.startswith(OWN_PREFIX):
            await self._own(scope, send)
            return
        h2 = scope["http_version"] == "2"
        self.count += 1
        self.served += 1
        served = self.served

        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("utf-8", "replace")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        qs: bytes = scope["query_string"]
        path = (raw_path + b"?" + qs if qs else raw_path).decode("utf-8", "replace")
        host = headers.get("host", "")
        server = scope.get("server") or ("", 0)
        port = self._target_by_app.get(server[1], server[1])
        self.recent.append(
            {"method": scope["method"], "path": path, "host": host, "headers": headers, "port": port}
        )

        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        cfg = self.config
        status = 200
        delay = cfg.delay
        size: int | None = None
        close = False
        extra = list(self._extra_headers)
        failed = False
        if cfg.fail_status is not None and (
            served <= cfg.fail_first or (cfg.fail_rate > 0 and random.random() < cfg.fail_rate)
        ):
            status = cfg.fail_status
            failed = True
        query: dict[str, list[str]] = {}
        if qs:
            query = parse_qs(qs.decode("utf-8", "replace"), keep_blank_values=True)
            try:
                if not failed and "status" in query:
                    picked = pick_weighted(parse_weighted(query["status"][0], parse_status_code))
                    if picked is not None:
                        status = picked
                if "delay" in query:
                    extra_delay = pick_weighted(parse_weighted(query["delay"][0], parse_delay))
                    if extra_delay:
                        delay += extra_delay
                if "size" in query:
                    size = pick_weighted(parse_weighted(query["size"][0], parse_size))
                for h in query.get("header", ()):
                    name, value = parse_header_line(h)
                    extra.append((name.lower().encode(), value.encode()))
                if "close" in query:
                    close = query["close"][0].lower() not in ("", "0", "false", "no")
            except BadParameter as e:
                await self._respond(send, 400, _dumps({"error": str(e)}), [], h2)
                return
        if delay > 0:
            await asyncio.sleep(delay)

        if raw_path == STREAM_PATH and not failed:
            await self._stream(query, status, extra, receive, send, h2)
            return

        doc: dict[str, Any] = dict(self._identity)
        doc.update(
            port=port,
            method=scope["method"],
            path=path,
            query={k: v[0] for k, v in query.items()},
            host=host,
            headers=headers,
            body=body.decode("utf-8", "replace"),
            protocol="HTTP/2" if h2 else f"HTTP/{scope['http_version']}",
        )
        client = scope.get("client")
        if client:
            doc["remoteAddr"] = f"{client[0]}:{client[1]}"
        if cfg.calls:
            doc["calls"] = await self._calls(headers)
        payload = _dumps(doc)
        if size is not None and size > len(payload):
            doc["padding"] = ""
            base = len(_dumps(doc))
            doc["padding"] = "x" * max(0, size - base)
            payload = _dumps(doc)
        if close and not h2:
            extra.append((b"connection", b"close"))
        await self._respond(send, status, payload, extra, h2)

    async def _respond(
        self, send: Send, status: int, payload: bytes, extra: list[tuple[bytes, bytes]], h2: bool
    ) -> None:
        if status < 200 or status in (204, 304):
            headers = []
            payload = b""
        else:
            headers = [JSON_CT, (b"content-length", str(len(payload)).encode())]
        if extra:
            headers.extend(h for h in extra if not (h2 and h[0] in _H2_FORBIDDEN))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _own(self, scope: Scope, send: Send) -> None:
        what = scope["raw_path"][len(OWN_PREFIX) :]
        cfg = self.config
        status = 200
        if what == b"count":
            doc: Any = {"count": self.count}
        elif what == b"requests":
            doc = list(self.recent)
        elif what == b"healthz":
            doc = {"status": "ok", "instance": self.config.instance}
        elif what == b"reset":
            self.count = 0
            self.recent.clear()
            doc = {"count": 0}
            query = parse_qs(scope["query_string"].decode("latin-1"))
            if "fail-first" in query:
                # Re-arm --fail-first: the next N requests fail (with --fail-status, else 503).
                try:
                    first = int(query["fail-first"][0])
                    code = parse_status_code(query.get("fail-status", [str(cfg.fail_status or 503)])[0])
                    if first < 0:
                        raise ValueError(first)
                except (ValueError, BadParameter) as e:
                    status, doc = 400, {"error": f"reset: {e}"}
                else:
                    self.served = 0
                    cfg.fail_first, cfg.fail_status = first, code
                    doc["failFirst"] = first
        else:
            status, doc = 404, {"error": "unknown echo endpoint; known: count, requests, healthz, reset"}
        await self._respond(send, status, _dumps(doc), [], scope["http_version"] == "2")

    async def _stream(
        self,
        query: dict[str, list[str]],
        status: int,
        extra: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        h2: bool,
    ) -> None:
        try:
            interval = parse_duration(query.get("interval", ["1s"])[0])
            count = int(query.get("count", ["10"])[0])
            if count < 0:
                raise BadParameter("negative count")
        except (BadParameter, ValueError) as e:
            await self._respond(send, 400, _dumps({"error": f"stream: {e}"}), [], h2)
            return
        headers = [NDJSON_CT, *(h for h in extra if not (h2 and h[0] in _H2_FORBIDDEN))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            for seq in range(count):
                if seq:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), interval)
                    if gone.is_set():
                        return
                line = _dumps({"seq": seq, **self._stream_identity})
                await send({"type": "http.response.body", "body": line, "more_body": seq < count - 1})
            if count == 0:
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    # ---------------------------------------------------------------- middle tier
    def _client(self, proxy: str | None) -> Any:
        client = self._clients.get(proxy)
        if client is None:
            from isthmus.client.http import HttpClient

            client = HttpClient(proxy=proxy, timeout=self.config.call_timeout)
            self._clients[proxy] = client
        return client

    async def _calls(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        from isthmus.client.http import proxy_from_environment

        forwarded = [(name, headers[name]) for name in FORWARDED_HEADERS if name in headers]

        async def one(url: str) -> dict[str, Any]:
            resp = await self._client(proxy_from_environment(url)).request(url, headers=forwarded)
            entry: dict[str, Any] = {"url": url, "status": resp.status, "body": resp.body_value()}
            if resp.error:
                entry["error"] = resp.error
            return entry

        return list(await asyncio.gather(*(one(url) for url in self.config.calls)))


class EchoServer:
    """Binds every port of an ``EchoConfig`` and serves until shut down.

    Usage: ``server = EchoServer(config); server.bind(); await server.serve()`` (``bind`` raises
    ``OSError`` at once when a port is taken; ``serve`` binds if needed). ``request_shutdown()`` (also
    triggered by SIGTERM/SIGINT when serving in the main thread) stops accepting, lets in-flight HTTP
    responses finish for up to ``config.graceful_timeout`` seconds, then returns.
    """

    def __init__(self, config: EchoConfig) -> None:
        self.config = config
        self.app = EchoApp(config)
        self._http_socks: list[socket.socket] = []
        self._tcp_socks: list[tuple[PortBinding, socket.socket]] = []
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._shutdown: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()

    # ---------------------------------------------------------------- sockets
    def _listen(self, binding: PortBinding) -> socket.socket:
        host = self.config.host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, binding.app))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(
                e.errno, f"cannot listen on {host}:{binding.app} (port {binding.target}): {e}"
            ) from e
        return sock

    def bind(self) -> None:
        if self._http_socks or self._tcp_socks:
            return
        try:
            for b in self.config.http_ports:
                self._http_socks.append(self._listen(b))
            for b in self.config.tcp_ports:
                self._tcp_socks.append((b, self._listen(b)))
        except OSError:
            self.close_sockets()
            raise

    def close_sockets(self) -> None:
        for s in self._http_socks:
            s.close()
        for _, s in self._tcp_socks:
            s.close()
        self._http_socks, self._tcp_socks = [], []

    def describe(self) -> str:
        host = self.config.host
        parts = [f"http {host}:{b.app} (port {b.target})" for b in self.config.http_ports]
        parts += [f"tcp {host}:{b.app} (port {b.target})" for b in self.config.tcp_ports]
        return ", ".join(parts)

    # ---------------------------------------------------------------- lifecycle
    def request_shutdown(self) -> None:
        """Thread-safe: ask a serving server to stop."""
        loop, event = self._loop, self._shutdown
        if loop is None or event is None:
            return
        if threading.current_thread() is threading.main_thread() and not loop.is_running():
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def serve(self, *, install_signal_handlers: bool = True) -> None:
        self.bind()
        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._shutdown.set)
        tcp_servers = []
        for _binding, sock in self._tcp_socks:
            prefix = self.config.tcp_prefix.encode() + b" "
            tcp_servers.append(
                await asyncio.start_server(
                    lambda r, w, p=prefix: self._tcp_echo(r, w, p), sock=sock, backlog=1024
                )
            )
        self.ready.set()
        try:
            if self._http_socks:
                await worker_serve(
                    wrap_app(self.app, 0, "asgi"),
                    self._hypercorn_config(),
                    sockets=Sockets(secure_sockets=[], insecure_sockets=self._http_socks, quic_sockets=[]),
                    shutdown_trigger=self._shutdown.wait,
                )
            else:
                await self._shutdown.wait()
        finally:
            for server in tcp_servers:
                server.close()
            for writer in list(self._tcp_writers):
                writer.close()
            for server in tcp_servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 1.0)
            await self.app.aclose()
            self.close_sockets()
            if install_signal_handlers and threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)

    def _hypercorn_config(self) -> HypercornConfig:
        hc = HypercornConfig()
        hc.loglevel = "INFO" if self.config.verbose else "WARNING"
        hc.accesslog = "-" if self.config.verbose else None
        hc.include_server_header = False
        # Keep connections open as long as the peer (Envoy keeps upstream connections for an hour):
        # a server-side idle close races with a request sent on the same connection.
        hc.keep_alive_timeout = 3600.0
        hc.keep_alive_max_requests = 2**62
        hc.graceful_timeout = self.config.graceful_timeout
        hc.backlog = 1024
        hc.h11_max_incomplete_size = 64 * 1024
        return hc

    async def _tcp_echo(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes
    ) -> None:
        self._tcp_writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    line = e.partial
                except asyncio.LimitOverrunError as e:
                    line = await reader.readexactly(e.consumed)
                if not line:
                    break
                writer.write(prefix + line.rstrip(b"\r\n") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()


def run(config: EchoConfig) -> None:
    """Serve in the foreground until SIGTERM/SIGINT (what ``isthmus echo`` does)."""
    server = EchoServer(config)
    server.bind()
    print(f"isthmus echo: {config.instance} serving {server.describe()}", file=sys.stderr, flush=True)
    asyncio.run(server.serve())
