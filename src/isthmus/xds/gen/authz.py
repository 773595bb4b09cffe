"""AuthorizationPolicy and RequestAuthentication on inbound and gateway listeners."""

from __future__ import annotations

from typing import Any

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot


def inbound_http_filters(snapshot: Snapshot, proxy: Proxy) -> list[Any]:
    return []


def inbound_network_filters(snapshot: Snapshot, proxy: Proxy) -> list[Any]:
    return []
