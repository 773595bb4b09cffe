"""isthmus.dev Workload rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus.api.isthmus_kinds import Workload
from isthmus.api.meta import dns1123_subdomain_error
from isthmus.api.validation import register
from isthmus.api.validation.common import Report

if TYPE_CHECKING:
    from isthmus.api.resource import Resource


@register("Workload")
def validate_workload(res: Resource, r: Report) -> None:
    w: Workload = res.spec  # type: ignore[assignment]
    if w.gateway:
        if w.command:
            r.error("spec.command", "a gateway workload has no command (its Envoy is the gateway)")
    elif not w.command:
        r.error("spec.command", "command is required unless gateway is true")
    if w.replicas < 0:
        r.error("spec.replicas", f"replicas must be >= 0, got {w.replicas}")
    seen: set[int] = set()
    for i, port in enumerate(w.ports):
        if not 1 <= port <= 65535:
            r.error(f"spec.ports[{i}]", f"port number {port} must be in the range 1..65535")
        if port in seen:
            r.error(f"spec.ports[{i}]", f"port {port} is listed more than once")
        seen.add(port)
    err = dns1123_subdomain_error(w.service_account)
    if err:
        r.error("spec.serviceAccount", f"invalid service account name {err}")
    for key in w.env:
        if not key or "=" in key or "\x00" in key:
            r.error(f'spec.env["{key}"]', f"invalid environment variable name {key!r}")
    if w.gateway and not w.sidecar:
        r.warn("spec.sidecar", "sidecar is ignored for gateway workloads (the gateway is an Envoy itself)")
