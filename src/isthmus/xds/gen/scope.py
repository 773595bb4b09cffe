"""Which proxies share generated config (DESIGN §6)."""

from __future__ import annotations

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot


def scope_key(snapshot: Snapshot, proxy: Proxy) -> tuple:
    """Proxies with equal keys get identical shared config: kind, namespace, the Sidecar resource that
    applies, and labels (they decide sourceLabels matches, workload-selected DRs and policies)."""
    sidecar = snapshot.sidecar_resource(proxy)
    return (
        proxy.kind,
        proxy.namespace,
        sidecar.key if sidecar is not None else None,
        frozenset(proxy.labels.items()),
    )
