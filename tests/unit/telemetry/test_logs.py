"""`GET /api/logs` and `isthmus logs`: access-log lines of a workload, once or followed; app logs."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from telemetry_helpers import PRODUCTPAGE, http_entry, message, snapshot

from isthmus.cli.logs_cmd import logs_command
from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry


def feed(t: Telemetry, proxy: Proxy, entries: list[Any]) -> None:
    msg = message(proxy, "outbound", entries)
    t.ingest(t.register_node(msg.identifier.node), "outbound", msg)


def make() -> Telemetry:
    snap = snapshot()
    t = Telemetry(lambda: snap)
    feed(t, PRODUCTPAGE, [http_entry(path=f"/r/{i}") for i in range(3)])
    return t


def test_logs_api() -> None:
    async def scenario() -> None:
        t = make()
        app = web.Application()
        t.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/api/logs", params={"workload": "productpage-v1"})
            assert r.status == 200
            lines = (await r.text()).splitlines()
            assert [x.split('"')[1] for x in lines] == [
                "GET /r/0 HTTP/1.1",
                "GET /r/1 HTTP/1.1",
                "GET /r/2 HTTP/1.1",
            ]
            r = await client.get(
                "/api/logs", params={"workload": "productpage-v1-0", "tail": "1", "prefix": "1"}
            )
            (line,) = (await r.text()).splitlines()
            assert line.startswith("[productpage-v1-0] [") and "/r/2" in line
            r = await client.get(
                "/api/logs", params={"workload": "productpage-v1", "format": "json", "tail": "2"}
            )
            docs = [json.loads(x) for x in (await r.text()).splitlines()]
            assert [d["path"] for d in docs] == ["/r/1", "/r/2"] and docs[0]["response_code"] == 200
            r = await client.get("/api/logs", params={"workload": "nope"})
            assert r.status == 404 and "no workload default/nope" in (await r.json())["error"]
            r = await client.get("/api/logs", params={"workload": "legacy", "namespace": "legacy"})
            assert r.status == 404 and "no sidecar" in (await r.json())["error"]
            r = await client.get("/api/logs", params={"workload": "reviews-v2"})  # exists, no traffic yet
            assert r.status == 200 and await r.text() == ""

            # Follow: the tail first, then new lines as they come.
            resp = await client.get(
                "/api/logs", params={"workload": "productpage-v1", "follow": "1", "tail": "1"}
            )
            first = await asyncio.wait_for(resp.content.readline(), 5)
            assert b"/r/2" in first
            feed(t, PRODUCTPAGE, [http_entry(path="/r/new")])
            new = await asyncio.wait_for(resp.content.readline(), 5)
            assert b"/r/new" in new
            resp.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.fixture
def mesh_api(tmp_path: Path) -> Iterator[tuple[Path, Telemetry]]:
    t = make()
    ready = threading.Event()
    stop: list[Any] = []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        t.add_routes(app)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        (tmp_path / "state.json").write_text(
            json.dumps({"pid": os.getpid(), "api": f"http://127.0.0.1:{port}"})
        )
        stop.append(loop)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield tmp_path, t
    finally:
        stop[0].call_soon_threadsafe(stop[0].stop)
        thread.join(10)


def test_logs_command(mesh_api: tuple[Path, Telemetry]) -> None:
    state, _ = mesh_api
    result = CliRunner().invoke(logs_command, ["productpage-v1", "--state-dir", str(state), "--tail", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and "/r/1" in lines[0] and '"reviews:9080"' in lines[1]
    result = CliRunner().invoke(logs_command, ["productpage-v1", "--state-dir", str(state), "-o", "json"])
    assert [json.loads(x)["path"] for x in result.output.splitlines()] == ["/r/0", "/r/1", "/r/2"]
    result = CliRunner().invoke(logs_command, ["ghost", "--state-dir", str(state)])
    assert result.exit_code == 1 and "no workload default/ghost" in result.output


def test_app_logs_from_the_state_dir(tmp_path: Path) -> None:
    for i, text in enumerate(["a1\na2\n", "b1\n"]):
        d = tmp_path / "pods" / "default" / f"reviews-v2-{i}"
        d.mkdir(parents=True)
        (d / "app.log").write_text(text)
    result = CliRunner().invoke(logs_command, ["reviews-v2", "--app", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["[reviews-v2-0] a1", "[reviews-v2-0] a2", "[reviews-v2-1] b1"]
    result = CliRunner().invoke(
        logs_command, ["reviews-v2/reviews-v2-0", "--app", "--tail", "1", "--state-dir", str(tmp_path)]
    )
    assert result.output == "a2\n"
    result = CliRunner().invoke(logs_command, ["nope", "--app", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no app log" in result.output


def test_lines_from_batch_bytes_equal_lines_from_copied_entries() -> None:
    """Entries of a mostly-kept batch point into its wire bytes; a batch mostly of TCP progress reports
    copies its few kept entries (so it is not held whole). Both render as if each entry were copied."""
    from envoy.data.accesslog.v3 import accesslog_pb2 as al
    from telemetry_helpers import tcp_entry

    snap = snapshot()

    def ingest_both(msg: Any) -> tuple[Any, list[str]]:
        raw = msg.SerializeToString()
        shared, copied = Telemetry(lambda: snap), Telemetry(lambda: snap)
        shared.ingest(shared.register_node(msg.identifier.node), "outbound", msg, raw)
        copied.ingest(copied.register_node(msg.identifier.node), "outbound", msg)
        (info,) = shared.proxies.values()
        lines = [x.text for x in shared.log_lines([info])]
        assert lines == [x.text for x in copied.log_lines(list(copied.proxies.values()))]
        return info, lines

    info, lines = ingest_both(
        message(PRODUCTPAGE, "outbound", [http_entry(path=f"/r/{i}") for i in range(3)])
    )
    assert all(isinstance(data, tuple) for *_, data in info.logs)
    assert len(lines) == 3 and "/r/2" in lines[2]

    progress = [tcp_entry(stream_id=f"p{i}", log_type=al.TcpPeriodic) for i in range(5)]
    info, lines = ingest_both(message(PRODUCTPAGE, "outbound", tcp=[*progress, tcp_entry(stream_id="c1")]))
    assert [type(data) for *_, data in info.logs] == [bytes] and len(lines) == 1
