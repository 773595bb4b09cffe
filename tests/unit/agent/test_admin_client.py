"""AdminClient against an in-process stand-in for Envoy's admin endpoint (no Envoy)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from aiohttp import web

from isthmus.agent.admin import AdminClient, AdminError


async def with_fake_admin(
    test: Callable[[AdminClient, list[Any]], Awaitable[None]], state: str = "LIVE"
) -> None:
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.query_string))
        if request.path == "/ready":
            return web.Response(text=state + "\n", status=200 if state == "LIVE" else 503)
        if request.path == "/stats":
            return web.json_response(
                {
                    "stats": [
                        {"name": "cluster_manager.active_clusters", "value": 4},
                        {"name": "server.live", "value": 1},
                        {"histograms": {"supported_quantiles": [0.5]}},
                    ]
                }
            )
        if request.path in ("/config_dump", "/clusters", "/listeners", "/server_info"):
            return web.json_response({"path": request.path})
        if request.path == "/drain_listeners" and request.method == "POST":
            return web.Response(text="OK\n")
        return web.Response(status=404, text="invalid path\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with AdminClient.for_address("127.0.0.1", port, timeout=5) as admin:
            await test(admin, seen)
    finally:
        await runner.cleanup()


def test_endpoints_and_parameters() -> None:
    async def check(admin: AdminClient, seen: list[Any]) -> None:
        assert await admin.ready() == "LIVE"
        assert (await admin.config_dump(include_eds=True))["path"] == "/config_dump"
        assert seen[-1] == ("GET", "/config_dump", "include_eds=")
        await admin.config_dump(resource="dynamic_active_clusters")
        assert seen[-1] == ("GET", "/config_dump", "resource=dynamic_active_clusters")
        await admin.config_dump()
        assert seen[-1] == ("GET", "/config_dump", "")
        await admin.clusters()
        assert seen[-1] == ("GET", "/clusters", "format=json")
        await admin.listeners()
        assert seen[-1] == ("GET", "/listeners", "format=json")
        assert (await admin.server_info())["path"] == "/server_info"
        assert await admin.stats(filter="^cluster_manager") == {
            "cluster_manager.active_clusters": 4,
            "server.live": 1,
        }
        assert seen[-1][:2] == ("GET", "/stats")
        assert unquote(seen[-1][2]) == "format=json&filter=^cluster_manager"
        await admin.stats(filter=r"outbound\|9080\|\|a+b", used_only=True)
        assert dict(parse_qsl(seen[-1][2], keep_blank_values=True)) == {
            "format": "json",
            "filter": r"outbound\|9080\|\|a+b",
            "usedonly": "",
        }
        assert (await admin.drain_listeners()).strip() == "OK"
        assert seen[-1] == ("POST", "/drain_listeners", "graceful&inboundonly")
        await admin.drain_listeners(inbound_only=False)
        assert seen[-1] == ("POST", "/drain_listeners", "graceful")
        await admin.post("/drain_listeners?graceful&skip_exit")
        assert seen[-1] == ("POST", "/drain_listeners", "graceful&skip_exit")

    asyncio.run(with_fake_admin(check))


def test_ready_reports_non_live_states_without_raising() -> None:
    async def check(admin: AdminClient, seen: list[Any]) -> None:
        assert await admin.ready() == "INITIALIZING"

    asyncio.run(with_fake_admin(check, state="INITIALIZING"))


def test_errors_name_the_status_and_body() -> None:
    async def check(admin: AdminClient, seen: list[Any]) -> None:
        with pytest.raises(AdminError) as err:
            await admin.get("/nope")
        assert err.value.status == 404 and "invalid path" in str(err.value)

    asyncio.run(with_fake_admin(check))


def test_ignores_http_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside the mesh HTTP_PROXY points at the sidecar; admin calls must not go through it.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")

    async def check(admin: AdminClient, seen: list[Any]) -> None:
        assert await admin.ready() == "LIVE"

    asyncio.run(with_fake_admin(check))


def test_unreachable_admin_raises_admin_error() -> None:
    async def main() -> None:
        async with AdminClient("http://127.0.0.1:1", timeout=2) as admin:
            with pytest.raises(AdminError) as err:
                await admin.ready()
            assert err.value.status is None and "127.0.0.1:1" in str(err.value)

    asyncio.run(main())
