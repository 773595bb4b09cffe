"""The UDP endpoint where in-proxy metrics modules (`statsmodule`) report their series."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from isthmus.telemetry import statsmodule

if TYPE_CHECKING:
    from isthmus.telemetry.core import Telemetry

log = logging.getLogger(__name__)

__all__ = ["start_receiver"]

_WARN_EVERY_S = 60.0


class _SeriesProtocol(asyncio.DatagramProtocol):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._warned = 0.0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        t = self.telemetry
        try:
            report = statsmodule.parse_datagram(data)
        except ValueError as exc:
            t.errors_total += 1
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY_S:
                self._warned = now
                log.warning("telemetry: unreadable metrics report from %s:%s: %s", addr[0], addr[1], exc)
            return
        try:
            t.ingest_report(report, source_ip=addr[0])
        except Exception:
            t.errors_total += 1
            log.exception("telemetry: metrics report from %s", report.node_id)


async def start_receiver(telemetry: Telemetry, host: str, port: int) -> asyncio.DatagramTransport:
    """Listen for module reports on host:port (UDP; 0: any free port)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _SeriesProtocol(telemetry), local_addr=(host, port)
    )
    return transport
