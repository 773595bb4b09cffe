"""A small async client for Envoy's admin API (https://www.envoyproxy.io/docs/envoy/latest/operations/admin).

Used by `EnvoyProcess` (readiness, drain), `isthmus proxy-config` and the tests::

    async with AdminClient("http://127.1.0.7:15000") as admin:
        dump = await admin.config_dump(include_eds=True)

The client never goes through HTTP(S)_PROXY (``trust_env=False``): inside the mesh those variables point
at a sidecar, and the admin endpoint must be reached directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp


class AdminError(RuntimeError):
    """The admin endpoint answered with an error status, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def admin_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


class AdminClient:
    """Talks to one Envoy's admin endpoint. Close it (or use ``async with``) when done."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    @classmethod
    def for_address(cls, host: str, port: int, **kwargs: Any) -> AdminClient:
        return cls(admin_url(host, port), **kwargs)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        if self._own_session:
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
                # One connection per request: admin calls are rare, and a kept-alive connection
                # to an Envoy that is being stopped only produces spurious disconnect errors.
                connector=aiohttp.TCPConnector(force_close=True),
            )
            self._own_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        ok_statuses: tuple[int, ...] = (200,),
    ) -> tuple[int, str]:
        """Send one request; returns (status, body). Raises AdminError on a status outside ok_statuses."""
        url = self.url + (path if path.startswith("/") else "/" + path)
        try:
            async with self._get_session().request(method, url, params=params) as resp:
                body = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise AdminError(f"{method} {url}: {type(e).__name__}: {e}") from e
        if status not in ok_statuses:
            raise AdminError(f"{method} {url}: HTTP {status}: {body.strip()[:500]}", status=status)
        return status, body

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> str:
        return (await self.request("GET", path, params))[1]

    async def post(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """POST to an admin path, e.g. ``post("/drain_listeners?graceful")`` or ``post("/logging?level=debug")``."""
        return (await self.request("POST", path, params))[1]

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return json.loads(await self.get(path, params))

    async def ready(self) -> str:
        """Server state from ``/ready``: PRE_INITIALIZING, INITIALIZING, LIVE or DRAINING.

        LIVE means the initial xDS fetch completed (the proxy holds its config) and health checks pass.
        """
        return (await self.request("GET", "/ready", ok_statuses=(200, 503)))[1].strip()

    async def server_info(self) -> dict[str, Any]:
        return await self.get_json("/server_info")

    async def config_dump(
        self,
        include_eds: bool = False,
        *,
        resource: str | None = None,
        mask: str | None = None,
        name_regex: str | None = None,
    ) -> dict[str, Any]:
        """``/config_dump``: what Envoy holds. `resource` selects one field (e.g. ``dynamic_active_clusters``)."""
        params: dict[str, str] = {}
        if include_eds:
            params["include_eds"] = ""
        if resource:
            params["resource"] = resource
        if mask:
            params["mask"] = mask
        if name_regex:
            params["name_regex"] = name_regex
        return await self.get_json("/config_dump", params)

    async def clusters(self) -> dict[str, Any]:
        """``/clusters?format=json``: every cluster with its hosts, health and stats."""
        return await self.get_json("/clusters", {"format": "json"})

    async def listeners(self) -> dict[str, Any]:
        """``/listeners?format=json``: listener names and the addresses they are bound to."""
        return await self.get_json("/listeners", {"format": "json"})

    async def stats(self, filter: str | None = None, *, used_only: bool = False) -> dict[str, int]:
        """Counters and gauges (not histograms) by name; `filter` is a regex on the stat name."""
        params = {"format": "json"}
        if filter:
            params["filter"] = filter
        if used_only:
            params["usedonly"] = ""
        data = await self.get_json("/stats", params)
        out: dict[str, int] = {}
        for entry in data.get("stats", []):
            if "name" in entry and "value" in entry:
                out[entry["name"]] = int(entry["value"])
        return out

    async def prometheus_stats(self) -> str:
        return await self.get("/stats/prometheus")

    async def drain_listeners(self, *, inbound_only: bool = True, graceful: bool = True) -> str:
        """``POST /drain_listeners``; see `EnvoyProcess.drain` for what it does."""
        query = "&".join(q for q, on in (("graceful", graceful), ("inboundonly", inbound_only)) if on)
        return await self.post("/drain_listeners" + (f"?{query}" if query else ""))
