"""Which proxies share generated config (DESIGN §6)."""

from __future__ import annotations

from typing import Any

from isthmus.model.proxy import Proxy
from isthmus.model.sidecar_scope import imports_all_visible
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import zone_aware


def scope_key(snapshot: Snapshot, proxy: Proxy) -> tuple:
    """Proxies with equal keys get identical shared config: kind, namespace, the Sidecar resource that
    applies, labels (they decide sourceLabels matches, workload-selected DRs and policies), and locality
    (locality load balancing ranks endpoints against it, in EDS and DNS clusters' inline assignments), and
    whether it has the self-discovery local cluster (zone-aware load balancing applies only then).
    A locality from the labels splits nothing more; proxies without one share as before."""
    sidecar = snapshot.sidecar_resource(proxy)
    return (
        proxy.kind,
        proxy.namespace,
        sidecar.key if sidecar is not None else None,
        frozenset(proxy.labels.items()),
        proxy.locality,
        # Zone-aware load balancing applies to proxies with the self-discovery local cluster only.
        zone_aware.self_discovery(proxy),
    )


def _imported(snapshot: Snapshot, proxy: Proxy) -> list[tuple[Any, ...]]:
    return [(s.service, s.ports) for s in snapshot.scope(proxy).services]


def same_imports(before: Snapshot, snapshot: Snapshot, proxy: Proxy) -> bool:
    """Whether the proxy's scope imports the same services in both snapshots (once per scope and
    snapshot: clusters, specs, endpoints and route tables all ask)."""

    def compute() -> bool:
        if proxy.kind == "sidecar" and imports_all_visible(snapshot.sidecar_resource(proxy)):
            # The scope is every visible service (VirtualServices add no implicit imports): no need to
            # build the scope of the snapshot before (the Sidecars are the same: only VirtualServices
            # changed).
            return before.visible_services(proxy.namespace) == snapshot.visible_services(proxy.namespace)
        return _imported(before, proxy) == _imported(snapshot, proxy)

    return snapshot.memo(("same_imports", scope_key(snapshot, proxy)), compute)


def shared_memo(snapshot: Snapshot, key: tuple, proxy: Proxy, build: Any) -> Any:
    """`snapshot.memo(key, build)`, except that after a change of VirtualServices only, clusters and
    endpoints (which VirtualServices affect only through the services a Sidecar scope imports) are
    taken from the snapshot before when this proxy's scope imports the same services."""

    def compute() -> Any:
        before = snapshot.routes_changed_from
        if (
            before is not None
            and key in before._memo
            and (proxy.kind != "sidecar" or same_imports(before, snapshot, proxy))
        ):
            for what, error in before.generation_errors.items():
                if what.startswith("cluster "):  # clusters left out stay left out, and reported
                    snapshot.generation_errors.setdefault(what, error)
            return before._memo[key]
        return build()

    return snapshot.memo(key, compute)
