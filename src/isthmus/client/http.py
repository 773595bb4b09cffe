"""An asyncio HTTP/1.1 client on h11, made for testing a mesh.

What it does that ordinary clients do not:

* The request target is sent byte for byte as written in the URL (no normalization of ``..``, ``//`` or
  percent-encoding); only an empty path becomes ``/``. A ``#fragment`` is not sent, as no HTTP client
  sends one (curl, browsers and Istio's echo client drop it; Envoy answers 400 to a target holding one).
* Header values are sent as given, empty ones included.
* Through an HTTP proxy (``proxy="http://127.1.0.7:15001"``), the request uses the absolute form
  (``GET http://reviews:9080/path HTTP/1.1``) as any ``HTTP_PROXY`` client does. A ``Host`` header given
  by the caller overrides the authority: it becomes the Host header *and* the authority of the
  absolute-form target, since a proxy (Envoy included) takes the absolute URL's authority over the Host
  header. The TCP connection still goes to the proxy.
* ``tcp://HOST:PORT`` URLs: through a proxy, an HTTP ``CONNECT HOST:PORT`` tunnel is opened (a ``Host``
  override replaces HOST:PORT there too); directly, a plain TCP connection. The body is sent as one line
  and the first line that comes back is the response body. Status: the proxy's CONNECT status when it
  refuses (403, 503, ...); 200 when a line came back; 0 with ``error`` when none did.
* ``connect_to``: dial these addresses instead of the URL's host (a list: one at random per new
  connection) while the URL still gives the Host header, as curl's ``--connect-to`` does.
* ``source_ip``: bind outgoing connections to this address (a pod's IP, so peers see the pod as source).

Only h11's response parser and state machine are used for the exchange; the request head is written by
this module so that h11's validation cannot rewrite or refuse the target or the header values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11

from isthmus import __version__

DEFAULT_TIMEOUT = 10.0
USER_AGENT = f"isthmus-curl/{__version__}"
READ_CHUNK = 65536
# Methods a client may safely resend when a kept-alive connection turns out to be closed (as Go does).
_REPLAYABLE = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[str]


class UrlError(ValueError):
    """The URL cannot be used (unsupported scheme, bad port, ...)."""


@dataclass(frozen=True)
class Target:
    """A parsed URL. ``path`` is the request target in origin form, exactly as written."""

    scheme: str  # "http" or "tcp"
    host: str  # without IPv6 brackets
    port: int
    authority: str  # as written in the URL
    path: str

    @property
    def host_port(self) -> str:
        return _join_host_port(self.host, self.port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or (with a default port) a bare host."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UrlError(f"bad address {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise UrlError(f"address {text!r} has no port")
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise UrlError(f"bad port in {text!r}") from None
    if not 0 < port < 65536:
        raise UrlError(f"port out of range in {text!r}")
    return host, port


def parse_url(url: str) -> Target:
    """Parse ``http://host[:port][/path...]`` or ``tcp://host:port``; a missing scheme means http."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme not in ("http", "tcp"):
        raise UrlError(f"unsupported scheme {scheme!r} in {url!r} (use http:// or tcp://)")
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < end:
            end = i
    authority, path = rest[:end], rest[end:].partition("#")[0]
    if "@" in authority:
        raise UrlError(f"user info is not supported in {url!r}")
    if not authority:
        raise UrlError(f"no host in {url!r}")
    host, port = split_host_port(authority, 80 if scheme == "http" else None)
    if not host:
        raise UrlError(f"no host in {url!r}")
    if not path.startswith("/"):
        path = "/" + path
    return Target(scheme, host, port, authority, path)


def parse_header(line: str) -> tuple[str, str]:
    """``'name: value'`` -> ``(name, value)``; the value may be empty (it is then sent empty).

    curl's ``'name;'`` (its spelling of an empty header, since curl drops ``'name:'``) is accepted too,
    so command lines copied from curl or Istio's docs send the same empty header.
    """
    stripped = line.strip()
    if ":" not in stripped and stripped.endswith(";") and len(stripped) > 1:
        line = stripped[:-1] + ":"
    name, sep, value = line.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"invalid header {line!r} (expected 'name: value')")
    return name, value.strip()


def normalize_headers(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    out: list[tuple[str, str]] = []
    for h in headers:
        if isinstance(h, str):
            out.append(parse_header(h))
        else:
            k, v = h
            out.append((str(k), str(v)))
    return out


def proxy_from_environment(url: str) -> str | None:
    """The proxy an ordinary client would use for ``url``: ``HTTP_PROXY``/``http_proxy``, honouring
    ``NO_PROXY``. ``tcp://`` URLs use ``HTTPS_PROXY`` first (a CONNECT tunnel), then ``HTTP_PROXY``."""
    try:
        target = parse_url(url)
    except UrlError:
        return None
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(target.host, proxies):
        return None
    if target.scheme == "tcp":
        return proxies.get("https") or proxies.get("http")
    return proxies.get("http")


@dataclass
class Response:
    """The outcome of one request. ``status`` is 0 when no HTTP response came back (``error`` says why);
    ``error`` may also be set with a status when the response broke off after its head."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    latency_ms: float = 0.0
    error: str | None = None
    reason: str = ""
    http_version: str = "1.1"

    @property
    def ok(self) -> bool:
        """True when a complete 2xx response came back."""
        return self.error is None and 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str, default: str | None = None) -> str | None:
        """The header's values joined with ``,`` (case-insensitive name), or ``default``."""
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ",".join(values) if values else default

    def header_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.headers:
            k = k.lower()
            out[k] = f"{out[k]},{v}" if k in out else v
        return out

    def json(self) -> Any:
        return json.loads(self.body)

    def json_or_none(self) -> Any:
        """The parsed body when it is a JSON object or array, else None (cheap check first)."""
        b = self.body.lstrip()
        if not b or b[:1] not in (b"{", b"["):
            return None
        try:
            return json.loads(b)
        except ValueError:
            return None

    def body_value(self) -> Any:
        """The body as parsed JSON when it is JSON, else as text."""
        parsed = self.json_or_none()
        return parsed if parsed is not None else self.text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "status": self.status,
            "headers": self.header_map(),
            "body": self.body_value(),
            "latencyMs": round(self.latency_ms, 3),
        }
        if self.error:
            d["error"] = self.error
        return d


class _StaleConnection(Exception):
    """A reused connection closed before any byte of the response arrived."""


class _Conn:
    __slots__ = ("h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
        )

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass
class _Progress:
    status: int = 0
    reason: str = ""
    version: str = "1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    got_bytes: bool = False

    def reset(self) -> None:
        self.status, self.reason, self.version = 0, "", "1.1"
        self.headers, self.body, self.got_bytes = [], bytearray(), False


_UNSET: Any = object()


class HttpClient:
    """A client with kept-alive connections (one pool per destination: the proxy, or the target).

    ``proxy``: ``http://host:port`` of an HTTP proxy, or None for direct connections. ``connect_to``:
    address(es) ``host:port`` to dial instead of the URL's host. ``keep_alive=False`` closes every
    connection after its response. Use ``async with HttpClient(...) as c:`` or call ``aclose()``.
    """

    def __init__(
        self,
        *,
        proxy: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_to: str | Sequence[str] | None = None,
        source_ip: str | None = None,
        keep_alive: bool = True,
        max_idle: int = 32,
        user_agent: str | None = USER_AGENT,
    ) -> None:
        self.proxy = proxy
        self.timeout = timeout
        self.connect_to = [connect_to] if isinstance(connect_to, str) else list(connect_to or [])
        self.source_ip = source_ip
        self.keep_alive = keep_alive
        self.max_idle = max_idle
        self.user_agent = user_agent
        self._idle: dict[tuple[str, int], list[_Conn]] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        conns = [c for pool in self._idle.values() for c in pool]
        self._idle.clear()
        for c in conns:
            c.close()
        for c in conns:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(c.writer.wait_closed(), 1.0)

    # ---------------------------------------------------------------- connections
    def _dial_address(self, target: Target, proxy: str | None) -> tuple[str, int]:
        if proxy:
            return _proxy_address(proxy)
        if self.connect_to:
            return split_host_port(random.choice(self.connect_to), target.port)
        return target.host, target.port

    def _pool_key(self, target: Target, proxy: str | None) -> tuple[str, int]:
        if proxy:
            return _proxy_address(proxy)
        if self.connect_to:
            return ("connect-to:" + ",".join(self.connect_to), target.port)
        return target.host, target.port

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(
                host, port, local_addr=(self.source_ip, 0) if self.source_ip else None
            )
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise _ConnectError(f"connect to {_join_host_port(host, port)}: {reason}") from e

    async def _acquire(self, key: tuple[str, int], dial: tuple[str, int]) -> tuple[_Conn, bool]:
        pool = self._idle.get(key)
        while pool:
            conn = pool.pop()
            if conn.usable():
                return conn, True
            conn.close()
        reader, writer = await self._open(*dial)
        return _Conn(reader, writer), False

    def _release(self, key: tuple[str, int], conn: _Conn) -> None:
        if (
            self.keep_alive
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
            and not conn.writer.is_closing()
        ):
            conn.h11.start_next_cycle()
            pool = self._idle.setdefault(key, [])
            if len(pool) < self.max_idle:
                pool.append(conn)
                return
        conn.close()

    # ---------------------------------------------------------------- requests
    async def request(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersLike | None = None,
        body: bytes | str | None = None,
        timeout: float | None = None,
        proxy: str | None = _UNSET,
    ) -> Response:
        """Send one request; never raises for network or protocol failures (see ``Response.error``)."""
        proxy = self.proxy if proxy is _UNSET else proxy
        timeout = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        progress = _Progress()
        try:
            target = parse_url(url)
            hdrs = normalize_headers(headers)
            body_bytes = body.encode() if isinstance(body, str) else body
            async with asyncio.timeout(timeout):
                if target.scheme == "tcp":
                    return await self._tcp(target, hdrs, body_bytes, proxy, t0, progress)
                return await self._http(target, method.upper(), hdrs, body_bytes, proxy, t0, progress)
        except TimeoutError:
            return _failed(progress, t0, f"timeout after {timeout:g}s")
        except _ConnectError as e:
            return _failed(progress, t0, str(e))
        except (UrlError, ValueError) as e:
            return _failed(progress, t0, f"bad request: {e}")
        except h11.RemoteProtocolError as e:
            return _failed(progress, t0, f"invalid response: {e}")
        except h11.LocalProtocolError as e:
            return _failed(progress, t0, f"bad request: {e}")
        except (_StaleConnection, ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            return _failed(progress, t0, _describe(e))

    async def _http(
        self,
        target: Target,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        proxy: str | None,
        t0: float,
        progress: _Progress,
    ) -> Response:
        host_override = next((v for k, v in headers if k.lower() == "host"), None)
        host = host_override if host_override is not None else target.authority
        if proxy:
            request_target = f"http://{host or target.authority}{target.path}"
        else:
            request_target = target.path
        head, framing = self._head(method, request_target, host, headers, body)
        key = self._pool_key(target, proxy)
        dial = self._dial_address(target, proxy)
        conn, reused = await self._acquire(key, dial)
        try:
            try:
                await self._exchange(conn, method, head, framing, body, progress)
            except (_StaleConnection, ConnectionError) as e:
                conn.close()
                if not (reused and not progress.got_bytes and method in _REPLAYABLE):
                    raise _StaleConnection(_describe(e)) from e
                conn = _Conn(*await self._open(*dial))
                progress.reset()
                await self._exchange(conn, method, head, framing, body, progress)
        except BaseException:
            conn.close()
            raise
        self._release(key, conn)
        return Response(
            status=progress.status,
            headers=progress.headers,
            body=bytes(progress.body),
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            reason=progress.reason,
            http_version=progress.version,
        )

    def _head(
        self,
        method: str,
        request_target: str,
        host: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """The raw request head, and the headers h11 must know about to frame the exchange."""
        lines = [f"{method} {request_target} HTTP/1.1", f"Host: {host}"]
        framing = [("Host", "placeholder")]
        seen: set[str] = set()
        for k, v in headers:
            lk = k.lower()
            seen.add(lk)
            if lk == "host":
                continue
            lines.append(f"{k}: {v}")
            if lk in ("content-length", "transfer-encoding", "connection"):
                framing.append((k, v))
        if self.user_agent and "user-agent" not in seen:
            lines.append(f"User-Agent: {self.user_agent}")
        if "accept" not in seen:
            lines.append("Accept: */*")
        if body is not None and "content-length" not in seen and "transfer-encoding" not in seen:
            lines.append(f"Content-Length: {len(body)}")
            framing.append(("Content-Length", str(len(body))))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"), framing

    async def _exchange(
        self,
        conn: _Conn,
        method: str,
        head: bytes,
        framing: list[tuple[str, str]],
        body: bytes | None,
        progress: _Progress,
    ) -> None:
        hc = conn.h11
        hc.send(h11.Request(method=method, target="/", headers=framing))  # state only: head is ours
        data = head
        if body:
            data += hc.send(h11.Data(data=body)) or b""
        data += hc.send(h11.EndOfMessage()) or b""
        conn.writer.write(data)
        await conn.writer.drain()
        while True:
            event = hc.next_event()
            if event is h11.NEED_DATA:
                chunk = await conn.reader.read(READ_CHUNK)
                if not chunk and not progress.got_bytes:
                    raise _StaleConnection("connection closed before any response")
                progress.got_bytes = progress.got_bytes or bool(chunk)
                hc.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                progress.status = event.status_code
                progress.reason = event.reason.decode("latin-1")
                progress.version = event.http_version.decode("ascii")
                progress.headers = [
                    (k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in event.headers
                ]
            elif isinstance(event, h11.Data):
                progress.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("connection closed before the response was complete")
            # InformationalResponse (100 Continue, ...) and PAUSED are skipped / cannot happen here

    async def _tcp(
        self,
        target: Target,
        headers: list[tuple[str, str]],
        body: bytes | None,
        proxy: str | None,
        t0: float,
        progress: _Progress,
    ) -> Response:
        host_override = next((v for k, v in headers if k.lower() == "host"), None)
        authority = target.host_port
        if host_override:
            authority = _join_host_port(*split_host_port(host_override, target.port))
        dial = self._dial_address(target, proxy)
        reader, writer = await self._open(*dial)
        try:
            leftover = b""
            if proxy:
                lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
                lines += [f"{k}: {v}" for k, v in headers if k.lower() != "host"]
                if self.user_agent and not any(k.lower() == "user-agent" for k, _ in headers):
                    lines.append(f"User-Agent: {self.user_agent}")
                hc = h11.Connection(h11.CLIENT)
                hc.send(h11.Request(method="CONNECT", target=authority, headers=[("Host", "placeholder")]))
                hc.send(h11.EndOfMessage())
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
                await writer.drain()
                while True:
                    event = hc.next_event()
                    if event is h11.NEED_DATA:
                        chunk = await reader.read(READ_CHUNK)
                        if not chunk and not progress.got_bytes:
                            raise ConnectionResetError("proxy closed the connection before answering CONNECT")
                        progress.got_bytes = True
                        hc.receive_data(chunk)
                    elif isinstance(event, h11.Response):
                        progress.status = event.status_code
                        progress.reason = event.reason.decode("latin-1")
                        progress.headers = [
                            (k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in event.headers
                        ]
                    elif isinstance(event, h11.Data):
                        progress.body += event.data
                    elif event is h11.PAUSED:
                        leftover = hc.trailing_data[0]
                        break
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        # The proxy refused the tunnel: report its answer.
                        return Response(
                            status=progress.status,
                            headers=progress.headers,
                            body=bytes(progress.body),
                            latency_ms=(time.perf_counter() - t0) * 1000.0,
                            reason=progress.reason,
                        )
            line = (body or b"").rstrip(b"\r\n") + b"\n"
            writer.write(line)
            await writer.drain()
            buf = leftover
            while b"\n" not in buf:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                buf += chunk
            if not buf:
                what = "tunnel" if proxy else "connection"
                return Response(
                    status=0,
                    headers=progress.headers,
                    latency_ms=(time.perf_counter() - t0) * 1000.0,
                    error=f"{what} closed before a line came back",
                )
            answer = buf.split(b"\n", 1)[0].rstrip(b"\r")
            return Response(
                status=200,
                headers=progress.headers,
                body=answer,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
                reason=progress.reason or "OK",
            )
        finally:
            writer.close()


class _ConnectError(Exception):
    pass


def _proxy_address(proxy: str) -> tuple[str, int]:
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme not in ("http", ""):
        raise UrlError(f"unsupported proxy scheme in {proxy!r} (only http:// proxies)")
    return split_host_port(parts.netloc, 80)


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed before the response was complete"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _failed(progress: _Progress, t0: float, error: str) -> Response:
    return Response(
        status=progress.status,
        headers=progress.headers,
        body=bytes(progress.body),
        latency_ms=(time.perf_counter() - t0) * 1000.0,
        error=error,
        reason=progress.reason,
        http_version=progress.version,
    )


async def request(
    url: str,
    *,
    proxy: str | None = None,
    method: str = "GET",
    headers: HeadersLike | None = None,
    body: bytes | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_to: str | Sequence[str] | None = None,
    source_ip: str | None = None,
) -> Response:
    """Send one request on a fresh connection (closed afterwards). Never raises for network errors:
    a request that gets no HTTP response has ``status == 0`` and ``error`` set."""
    async with HttpClient(
        proxy=proxy, timeout=timeout, connect_to=connect_to, source_ip=source_ip, keep_alive=False
    ) as client:
        return await client.request(url, method=method, headers=headers, body=body)
