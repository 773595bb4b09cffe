"""`isthmus up --publish`: bind a gateway port on 127.0.0.1 too, for browsers (DESIGN.md §3).

Gateways listen on their pod address (127.1.0.7:8080), which a browser can reach but nobody remembers;
`--publish [HOST_PORT:]GATEWAY_PORT` forwards 127.0.0.1:HOST_PORT to the gateway that serves the declared
server port GATEWAY_PORT (HOST_PORT defaults to GATEWAY_PORT, shifted like every listen port below 1024).
A plain TCP forwarder rather than another Envoy listener: it carries HTTP, TLS (SNI untouched) and TCP
alike, and it looks the gateway up per connection, so Gateways applied later and restarted gateway pods
are found without restarting the mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isthmus.registry.types import socket_port

log = logging.getLogger(__name__)

PUBLISH_HOST = "127.0.0.1"
_CHUNK = 64 * 1024


class PublishError(ValueError):
    """An unparseable --publish value."""


@dataclass(frozen=True)
class Publish:
    host_port: int  # where 127.0.0.1 listens
    gateway_port: int  # the Gateway server port (as declared in config) it forwards to


def _port(text: str, spec: str) -> int:
    try:
        port = int(text)
    except ValueError as e:
        raise PublishError(f"--publish {spec!r}: {text!r} is not a port number") from e
    if not 0 < port < 65536:
        raise PublishError(f"--publish {spec!r}: port {port} out of range 1..65535")
    return port


def parse_publish(spec: str, port_offset: int) -> Publish:
    """``GATEWAY_PORT`` or ``HOST_PORT:GATEWAY_PORT`` (docker's order); ``127.0.0.1:`` may prefix it."""
    text = spec.strip().removeprefix(f"{PUBLISH_HOST}:")
    host_text, sep, gw_text = text.rpartition(":")
    gateway_port = _port(gw_text, spec)
    # Without an explicit host port the gateway port is used, shifted like any port below 1024 when
    # not root, so `--publish 80` works unprivileged (127.0.0.1:8080).
    host_port = _port(host_text, spec) if sep else socket_port(gateway_port, port_offset)
    return Publish(host_port, gateway_port)


def gateway_target(status: dict[str, Any], gateway_port: int) -> tuple[str, int] | None:
    """The real ``(ip, port)`` of the first running gateway serving ``gateway_port`` (declared port)."""
    candidates = []
    for proxy in status.get("proxies", []):
        if proxy.get("kind") != "gateway":
            continue
        for lst in proxy.get("listeners", []):
            address = str(lst.get("address", ""))
            if lst.get("port") != gateway_port or address.startswith("unix://"):
                continue
            host, _, port = address.rpartition(":")
            # The default istio-ingressgateway first: it is the one `isthmus up` tells users about.
            default = proxy.get("workload") == "istio-ingressgateway"
            running = proxy.get("state") in (None, "Running")
            candidates.append((not running, not default, proxy.get("instance", ""), host, int(port)))
    if not candidates:
        return None
    best = min(candidates)
    return best[3], best[4]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the peer sees the end of the request, as on a direct path
    except (ConnectionError, OSError):
        pass


class Publisher:
    """One 127.0.0.1 listener per --publish value, forwarding to the gateway of the moment."""

    def __init__(self, publishes: list[Publish], status: Callable[[], dict[str, Any]]) -> None:
        self.publishes = publishes
        self._status = status
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        try:
            for pub in self.publishes:
                server = await asyncio.start_server(
                    lambda r, w, p=pub: self._serve(p, r, w), PUBLISH_HOST, pub.host_port
                )
                self._servers.append(server)
        except OSError as e:
            await self.stop()
            raise RuntimeError(f"--publish: cannot listen on {PUBLISH_HOST}:{pub.host_port}: {e}") from e

    def addresses(self) -> list[str]:
        return [f"{PUBLISH_HOST}:{p.host_port} -> gateway port {p.gateway_port}" for p in self.publishes]

    async def _serve(self, pub: Publish, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = gateway_target(self._status(), pub.gateway_port)
        try:
            if target is None:
                log.warning("--publish %s: no gateway serves port %d", pub.host_port, pub.gateway_port)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*target)
            except OSError as e:
                log.warning("--publish %s: cannot reach gateway %s:%d: %s", pub.host_port, *target, e)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
                with contextlib.suppress(Exception):
                    await up_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
