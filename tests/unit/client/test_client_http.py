from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from isthmus.client import (
    HttpClient,
    Target,
    UrlError,
    parse_header,
    parse_url,
    proxy_from_environment,
    request,
    sync,
)
from isthmus.echo.testing import EchoProcess, free_port


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "http://reviews:9080/a/../b//c?x=%2F#f",
            Target("http", "reviews", 9080, "reviews:9080", "/a/../b//c?x=%2F"),
        ),
        ("http://reviews", Target("http", "reviews", 80, "reviews", "/")),
        ("http://reviews?x=1", Target("http", "reviews", 80, "reviews", "/?x=1")),
        ("http://reviews#top", Target("http", "reviews", 80, "reviews", "/")),
        (
            "reviews.default.svc.cluster.local:9080/p",
            Target(
                "http",
                "reviews.default.svc.cluster.local",
                9080,
                "reviews.default.svc.cluster.local:9080",
                "/p",
            ),
        ),
        ("http://[::1]:8080/x", Target("http", "::1", 8080, "[::1]:8080", "/x")),
        ("tcp://db:5432", Target("tcp", "db", 5432, "db:5432", "/")),
        ("HTTP://h:1/%zz", Target("http", "h", 1, "h:1", "/%zz")),
    ],
)
def test_parse_url(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url", ["https://x/", "ftp://x", "http://:80/", "http://h:0/", "http://h:x/", "tcp://db", "http://u@h/"]
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(UrlError):
        parse_url(url)


def test_parse_header() -> None:
    assert parse_header("Host: foo") == ("Host", "foo")
    assert parse_header("x-empty:") == ("x-empty", "")
    assert parse_header("x-a:  spaced  ") == ("x-a", "spaced")
    with pytest.raises(ValueError):
        parse_header("nocolon")


def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_from_environment("http://reviews:9080/") is None
    monkeypatch.setenv("HTTP_PROXY", "http://127.1.0.7:15001")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    assert proxy_from_environment("http://reviews:9080/") == "http://127.1.0.7:15001"
    assert proxy_from_environment("tcp://db:5432") == "http://127.1.0.7:15001"
    assert proxy_from_environment("http://localhost:1/") is None
    assert proxy_from_environment("http://a.internal/") is None


def test_path_headers_and_body_are_sent_as_given(echo: EchoProcess) -> None:
    r = sync.request(
        echo.url(path="/a/../b//c/%2e%2E/?x=%2F&y=a+b"),
        method="put",
        headers=["X-Empty:", "X-A: 1", "X-A: 2", ("x-tuple", "t")],
        body=b"payload",
    )
    assert r.status == 200 and r.error is None
    doc = r.json()
    assert doc["path"] == "/a/../b//c/%2e%2E/?x=%2F&y=a+b"
    assert doc["method"] == "PUT"
    assert doc["headers"]["x-empty"] == ""
    assert doc["headers"]["x-a"] == "1,2"
    assert doc["headers"]["x-tuple"] == "t"
    assert doc["headers"]["content-length"] == "7"
    assert doc["headers"]["user-agent"].startswith("isthmus-curl/")
    assert doc["headers"]["accept"] == "*/*"
    assert doc["body"] == "payload"
    assert doc["host"] == f"127.0.0.1:{echo.app_port()}"
    assert r.http_version == "1.1"
    assert r.to_dict()["body"]["instance"] == "reviews-v2-0"


def test_host_override_and_fragment(echo: EchoProcess) -> None:
    doc = sync.request(
        echo.url(path="/p?q=1#frag"), headers={"Host": "reviews.default.svc.cluster.local"}
    ).json()
    assert doc["host"] == "reviews.default.svc.cluster.local"
    assert doc["headers"]["host"] == "reviews.default.svc.cluster.local"
    assert doc["path"] == "/p?q=1"  # the fragment stays with the client
    ua = sync.request(echo.url(), headers={"user-agent": "mine", "accept": "text/plain"}).json()["headers"]
    assert (ua["user-agent"], ua["accept"]) == ("mine", "text/plain")


def test_proxy_mode_uses_absolute_form(echo: EchoProcess) -> None:
    # The echo server stands in for the proxy: it reports the request target it received.
    proxy = echo.url(path="")
    doc = sync.request("http://reviews:9080/a/../b?x=1", proxy=proxy).json()
    assert doc["path"] == "http://reviews:9080/a/../b?x=1"
    assert doc["host"] == "reviews:9080"
    doc = sync.request("http://reviews:9080/p", proxy=proxy, headers={"Host": "bookinfo.example:80"}).json()
    assert doc["path"] == "http://bookinfo.example:80/p"
    assert doc["host"] == "bookinfo.example:80"


def test_connect_to_keeps_the_url_authority(echo: EchoProcess, echo_v1: EchoProcess) -> None:
    addrs = [f"127.0.0.1:{echo.app_port()}", f"127.0.0.1:{echo_v1.app_port()}"]
    seen = set()
    for _ in range(30):
        doc = sync.request("http://reviews:9080/x", connect_to=addrs).json()
        assert doc["host"] == "reviews:9080"
        seen.add(doc["instance"])
        if len(seen) == 2:
            break
    assert seen == {"reviews-v2-0", "reviews-v1-0"}


def test_source_ip_binding(echo: EchoProcess) -> None:
    doc = sync.request(echo.url(), source_ip="127.0.0.5").json()
    assert doc["remoteAddr"].startswith("127.0.0.5:")


def test_keep_alive_reuses_connections(echo: EchoProcess) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with HttpClient() as client:
            kept = [(await client.request(echo.url())).json()["remoteAddr"] for _ in range(3)]
            closing = [
                (await client.request(echo.url(path="/?close=1"))).json()["remoteAddr"] for _ in range(2)
            ]
        async with HttpClient(keep_alive=False) as client:
            fresh = [(await client.request(echo.url())).json()["remoteAddr"] for _ in range(2)]
        return kept, closing, fresh

    kept, closing, fresh = asyncio.run(scenario())
    assert len(set(kept)) == 1
    assert len(set(closing)) == 2
    assert len(set(fresh)) == 2


def test_errors_are_reported_not_raised(echo: EchoProcess) -> None:
    dead = sync.request(f"http://127.0.0.1:{free_port()}/")
    assert dead.status == 0 and "refused" in (dead.error or "")
    assert not dead.ok
    slow = sync.request(echo.url(path="/?delay=1s"), timeout=0.3)
    assert slow.status == 0 and slow.error == "timeout after 0.3s"
    assert 250 <= slow.latency_ms < 900
    bad = sync.request("https://x/")
    assert bad.status == 0 and "scheme" in (bad.error or "")
    mismatch = sync.request(echo.url(), method="POST", headers={"content-length": "3"}, body="toolong")
    assert mismatch.status == 0 and mismatch.error


async def _with_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    scenario: Callable[[int], Awaitable[object]],
) -> object:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            return await scenario(port)
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def test_stale_kept_alive_connection_is_retried_for_idempotent_requests() -> None:
    """The server answers the first request of each connection and drops the connection on the second
    without answering, as a server closing an idle connection at the wrong time would."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            head = await _read_head(reader)
            if b"content-length: 1" in head.lower():
                await reader.readexactly(1)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await _read_head(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()

    async def scenario(port: int) -> list[tuple[int, str | None]]:
        url = f"http://127.0.0.1:{port}/"
        async with HttpClient() as client:
            out = []
            for method, body in (("GET", None), ("GET", None), ("GET", None), ("POST", "x")):
                r = await client.request(url, method=method, body=body)
                out.append((r.status, r.error))
            return out

    results = asyncio.run(_with_server(handler, scenario))
    assert [s for s, _ in results[:3]] == [200, 200, 200]
    # Each retried GET opened a new connection; the POST, dropped on a reused one, is not replayed.
    assert results[3][0] == 0 and results[3][1]
    assert connections == 3


def test_invalid_response_and_close_before_response() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    async def hangup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.close()

    async def one(port: int) -> object:
        return await request(f"http://127.0.0.1:{port}/")

    r = asyncio.run(_with_server(garbage, one))
    assert r.status == 0 and "invalid response" in r.error  # type: ignore[attr-defined]
    r = asyncio.run(_with_server(hangup, one))
    assert r.status == 0 and "closed" in r.error  # type: ignore[attr-defined]


def test_chunked_and_close_delimited_responses() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
        await writer.drain()
        writer.close()

    async def one(port: int) -> object:
        return await request(f"http://127.0.0.1:{port}/")

    r = asyncio.run(_with_server(chunked, one))
    assert (r.status, r.body, r.reason, r.header("X-A")) == (201, b"abcde", "Created", "1,2")  # type: ignore[attr-defined]
    r = asyncio.run(_with_server(close_delimited, one))
    assert (r.status, r.body, r.http_version, r.error) == (200, b"until close", "1.0", None)  # type: ignore[attr-defined]


def test_tcp_direct_and_through_a_connect_proxy(echo: EchoProcess) -> None:
    direct = sync.request(f"tcp://127.0.0.1:{echo.app_port(9090)}", body="hi there\n")
    assert (direct.status, direct.body, direct.error) == (200, b"v2 hi there", None)

    seen: list[bytes] = []

    async def connect_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        seen.append(head)
        if b"deny" in head:
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\ndenied")
        elif b"silent" in head:
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        else:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            line = await reader.readline()
            writer.write(b"tunnel " + line)
        await writer.drain()
        writer.close()

    async def scenario(port: int) -> list[object]:
        proxy = f"http://127.0.0.1:{port}"
        return [
            await request("tcp://db.example:5432", proxy=proxy, body="select 1"),
            await request("tcp://deny.example:5432", proxy=proxy, body="x"),
            await request("tcp://silent.example:1", proxy=proxy, body="x"),
            await request("tcp://db.example:5432", proxy=proxy, body="y", headers={"Host": "other.example"}),
        ]

    ok, denied, silent, overridden = asyncio.run(_with_server(connect_proxy, scenario))  # type: ignore[misc]
    assert (ok.status, ok.body, ok.error) == (200, b"tunnel select 1", None)
    assert seen[0].startswith(b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n")
    assert (denied.status, denied.body) == (403, b"denied")
    assert silent.status == 0 and "closed before a line" in silent.error
    assert seen[3].startswith(b"CONNECT other.example:5432 HTTP/1.1\r\n")
    assert overridden.body == b"tunnel y"
