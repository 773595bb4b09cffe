from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from echo_helpers import h2_get

from isthmus.client import sync
from isthmus.echo.testing import EchoProcess, free_port, wait_for


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_response_describes_request_and_instance(echo: EchoProcess) -> None:
    resp = sync.request(
        echo.url(9090, "/a/../b//c?x=1&x=2&y"),
        method="POST",
        headers=[("X-Multi", "one"), ("X-Multi", "two"), ("X-Empty", "")],
        body="hello",
    )
    assert resp.status == 200, resp
    assert resp.header("content-type") == "application/json"
    doc = resp.json()
    assert doc["workload"] == "reviews-v2"
    assert doc["instance"] == "reviews-v2-0"
    assert doc["namespace"] == "default"
    assert doc["version"] == "v2"
    assert doc["labels"] == {"app": "reviews", "version": "v2"}
    assert doc["ip"] == "127.1.0.7"
    assert doc["port"] == 9090
    assert doc["method"] == "POST"
    assert doc["path"] == "/a/../b//c?x=1&x=2&y"
    assert doc["query"] == {"x": "1", "y": ""}
    assert doc["host"] == f"127.0.0.1:{echo.app_port(9090)}"
    assert doc["headers"]["x-multi"] == "one,two"
    assert doc["headers"]["x-empty"] == ""
    assert doc["body"] == "hello"
    assert doc["protocol"] == "HTTP/1.1"
    assert sync.request(echo.url(9080)).json()["port"] == 9080


def test_raw_path_is_reported_exactly(echo: EchoProcess) -> None:
    out = raw_http(
        echo.app_port(9080),
        b"GET /%2e%2e/x%2Fy/./z?q=%20a#frag HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n",
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    doc = json.loads(body)
    assert doc["path"] == "/%2e%2e/x%2Fy/./z?q=%20a#frag"
    assert doc["query"] == {"q": " a#frag"}
    assert doc["host"] == "h.example"


@pytest.mark.parametrize("upgrade", [False, True], ids=["prior-knowledge", "upgrade"])
def test_h2c(echo: EchoProcess, upgrade: bool) -> None:
    status, body = h2_get(echo.app_port(9080), "/h2/path?status=201", upgrade=upgrade)
    assert status == 201
    doc = json.loads(body)
    assert doc["protocol"] == "HTTP/2"
    assert doc["path"] == "/h2/path?status=201"
    assert doc["host"] == "echo"
    assert doc["instance"] == "reviews-v2-0"


def test_query_status_size_header_and_head(echo: EchoProcess) -> None:
    r = sync.request(echo.url(9080, "/?status=418&header=x-a:1&header=X-B:two"))
    assert r.status == 418
    assert r.header("x-a") == "1" and r.header("x-b") == "two"
    assert r.json()["instance"] == "reviews-v2-0"
    for size in (1000, 4096):
        r = sync.request(echo.url(9080, f"/pad?size={size}"))
        assert len(r.body) == size
        assert r.json()["padding"].startswith("x")
    small = sync.request(echo.url(9080, "/?size=10"))
    assert "padding" not in small.json()
    assert sync.request(echo.url(9080, "/?status=204")).body == b""
    head = sync.request(echo.url(9080, "/"), method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.header("content-length") or 0) > 0
    bad = sync.request(echo.url(9080, "/?status=abc"))
    assert bad.status == 400 and "abc" in bad.json()["error"]


def test_status_percentages(echo: EchoProcess) -> None:
    result = sync.run_load(echo.url(9080, "/?status=503:50"), count=200, concurrency=4)
    assert result.requests == 200
    assert set(result.codes) == {"200", "503"}
    assert 50 <= result.codes["503"] <= 150
    mixed = sync.run_load(echo.url(9080, "/?status=503:30,429:30"), count=200, concurrency=4)
    assert set(mixed.codes) == {"200", "503", "429"}


def test_delay(echo: EchoProcess) -> None:
    r = sync.request(echo.url(9080, "/?delay=300ms"))
    assert r.status == 200 and r.latency_ms >= 290
    fast = sync.request(echo.url(9080, "/?delay=300ms:0"))
    assert fast.latency_ms < 290


def test_stream(echo: EchoProcess) -> None:
    t0 = time.monotonic()
    r = sync.request(echo.url(9080, "/stream?interval=50ms&count=4"))
    elapsed = time.monotonic() - t0
    assert r.status == 200
    assert r.header("content-type") == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [d["seq"] for d in lines] == [0, 1, 2, 3]
    assert all(d["instance"] == "reviews-v2-0" for d in lines)
    assert elapsed >= 0.14


def test_tcp_echo(echo: EchoProcess) -> None:
    with socket.create_connection(("127.0.0.1", echo.app_port(9091)), timeout=5) as s:
        s.sendall(b"hello\nworld\r\n")
        buf = b""
        while buf.count(b"\n") < 2:
            chunk = s.recv(4096)
            assert chunk
            buf += chunk
    assert buf == b"v2 hello\nv2 world\n"
    r = sync.request(f"tcp://127.0.0.1:{echo.app_port(9091)}", body="via client")
    assert (r.status, r.text) == (200, "v2 via client")


def test_own_endpoints_and_requests_log(echo: EchoProcess) -> None:
    assert sync.request(echo.url(9080, "/.echo/healthz")).status == 200
    sync.request(echo.url(9080, "/.echo/reset"))
    for i in range(3):
        sync.request(echo.url(9080 if i % 2 else 9090, f"/logged/{i}"), headers={"x-i": str(i)})
    assert sync.request(echo.url(9080, "/.echo/count")).json() == {"count": 3}
    log = sync.request(echo.url(9090, "/.echo/requests")).json()
    assert [e["path"] for e in log] == ["/logged/0", "/logged/1", "/logged/2"]
    assert log[1]["headers"]["x-i"] == "1" and log[1]["method"] == "GET"
    assert log[0]["host"] == f"127.0.0.1:{echo.app_port(9090)}"
    assert sync.request(echo.url(9080, "/.echo/nope")).status == 404


@pytest.fixture
def failing() -> Iterator[EchoProcess]:
    with EchoProcess(
        {9080: free_port()},
        args=[
            "--fail-first",
            "2",
            "--fail-status",
            "500",
            "--response-header",
            "x-inst: bad",
            "--delay",
            "10ms",
        ],
    ) as proc:
        yield proc


def test_fail_first_counts_and_own_endpoints(failing: EchoProcess) -> None:
    codes = [sync.request(failing.url(path="/x")).status for _ in range(4)]
    assert codes == [500, 500, 200, 200]
    r = sync.request(failing.url(path="/x"))
    assert r.header("x-inst") == "bad"
    assert r.latency_ms >= 10
    count = sync.request(failing.url(path="/.echo/count"))
    assert count.status == 200 and count.json() == {"count": 5}
    assert count.header("x-inst") is None


def test_reset_rearms_fail_first(failing: EchoProcess) -> None:
    assert [sync.request(failing.url(path="/x")).status for _ in range(3)] == [500, 500, 200]
    # A plain reset clears the counters only; with fail-first=N the next N requests fail again.
    assert sync.request(failing.url(path="/.echo/reset")).json() == {"count": 0}
    assert sync.request(failing.url(path="/x")).status == 200
    reset = sync.request(failing.url(path="/.echo/reset?fail-first=1&fail-status=503"))
    assert reset.json() == {"count": 0, "failFirst": 1}
    assert [sync.request(failing.url(path="/x")).status for _ in range(2)] == [503, 200]
    assert sync.request(failing.url(path="/.echo/count")).json() == {"count": 2}
    assert sync.request(failing.url(path="/.echo/reset?fail-first=x")).status == 400


def test_fail_rate_spares_own_endpoints() -> None:
    with EchoProcess({9080: free_port()}, args=["--fail-status", "503", "--fail-rate", "1"]) as proc:
        assert sync.request(proc.url(path="/")).status == 503
        assert sync.request(proc.url(path="/.echo/healthz")).status == 200
        assert sync.request(proc.url(path="/.echo/count")).json() == {"count": 1}


def test_call_forwards_tracing_headers_through_the_proxy() -> None:
    backend = EchoProcess(
        {9080: free_port()}, instance="ratings-0", labels={"app": "ratings", "version": "v1"}
    )
    with backend:
        # The backend echo stands in for the sidecar: it receives the absolute-form request.
        middle = EchoProcess(
            {9080: free_port()},
            args=["--call", "http://ratings:9080/ratings/1"],
            instance="reviews-0",
            env={"HTTP_PROXY": f"http://127.0.0.1:{backend.app_port()}", "NO_PROXY": "nothing.example"},
        )
        with middle:
            r = sync.request(
                middle.url(path="/reviews"),
                headers={
                    "x-request-id": "rid-1",
                    "traceparent": "00-abc-def-01",
                    "end-user": "jason",
                    "x-other": "no",
                },
            )
    assert r.status == 200
    calls = r.json()["calls"]
    assert [c["url"] for c in calls] == ["http://ratings:9080/ratings/1"]
    first = calls[0]
    assert first["status"] == 200
    assert first["body"]["instance"] == "ratings-0"
    assert first["body"]["path"] == "http://ratings:9080/ratings/1"  # absolute form, as a proxy gets it
    assert first["body"]["host"] == "ratings:9080"
    fwd = first["body"]["headers"]
    assert fwd["x-request-id"] == "rid-1"
    assert fwd["traceparent"] == "00-abc-def-01"
    assert fwd["end-user"] == "jason"
    assert "x-other" not in fwd


def test_call_failure_is_recorded() -> None:
    dead = free_port()
    with EchoProcess(
        {9080: free_port()}, args=["--call", f"http://127.0.0.1:{dead}/x", "--call-timeout", "2s"]
    ) as mid:
        r = sync.request(mid.url(path="/"))
    assert r.status == 200
    (call,) = r.json()["calls"]
    assert call["status"] == 0
    assert "refused" in call["error"]


def test_sigterm_finishes_in_flight_requests() -> None:
    proc = EchoProcess({9080: free_port()}).start()
    try:
        gen = sync.LoadGenerator(proc.url(path="/?delay=700ms"), concurrency=2, count=2).start()
        wait_for(
            lambda: sync.request(proc.url(path="/.echo/count")).json()["count"] >= 2,
            5,
            what="the delayed requests to arrive",
        )
        t0 = time.monotonic()
        proc.terminate()
        result = gen.wait(timeout=10)
        assert result.codes == {"200": 2}, result.errors
        assert proc.proc is not None
        assert proc.proc.wait(5) == 0
        assert time.monotonic() - t0 < 4
    finally:
        proc.stop()
