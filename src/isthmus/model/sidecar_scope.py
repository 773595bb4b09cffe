"""Sidecar scoping: which services, ports and VirtualServices a sidecar sees.

Follows `pilot/pkg/model/sidecar.go`: the Sidecar resource that applies (workload selector, namespace
default, root-namespace default), egress `ns/host` imports with port-specific listeners locking their port,
implicit imports of VirtualService destinations, one service per hostname.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.virtual_services import VirtualServiceEntry
from isthmus.registry.build import labels_match
from isthmus.registry.types import Service, ServicePort


@dataclass(frozen=True)
class EgressListener:
    port: int | None
    hosts: tuple[tuple[str, str], ...]  # (namespace or "*" or "~", dns name)


@dataclass(frozen=True)
class ScopedService:
    service: Service
    ports: tuple[ServicePort, ...]

    @property
    def hostname(self) -> str:
        return self.service.hostname


@dataclass
class SidecarScope:
    namespace: str
    sidecar: Config | None
    services: list[ScopedService] = field(default_factory=list)
    by_host: dict[str, ScopedService] = field(default_factory=dict)
    virtual_services: list[VirtualServiceEntry] = field(default_factory=list)
    outbound_policy: str = "ALLOW_ANY"
    egress_proxy: Any | None = None


def select_sidecar(
    sidecars: Sequence[Config], namespace: str, labels: Mapping[str, str], root_ns: str
) -> Config | None:
    """The Sidecar resource for a workload: selector match (oldest), namespace default, root default."""
    in_ns = [c for c in sidecars if c.namespace == namespace]
    for c in in_ns:
        sel = c.spec.workload_selector
        if sel is not None and sel.labels and labels_match(sel.labels, labels):
            return c
    for c in in_ns:
        if c.spec.workload_selector is None or not c.spec.workload_selector.labels:
            return c
    for c in sidecars:
        if c.namespace == root_ns and (
            c.spec.workload_selector is None or not c.spec.workload_selector.labels
        ):
            return c
    return None


def sidecar_candidates(
    sidecars: Sequence[Config], namespace: str, root_ns: str
) -> tuple[list[Config], Config | None]:
    """select_sidecar split for memoizing per namespace: the namespace's selector-bearing Sidecars in
    the order select_sidecar tries them, and what it returns when none of them selects the workload."""
    selecting = [
        c
        for c in sidecars
        if c.namespace == namespace
        and c.spec.workload_selector is not None
        and c.spec.workload_selector.labels
    ]
    # A non-empty selector never matches no labels: with {} select_sidecar gives the fallback.
    return selecting, select_sidecar(sidecars, namespace, {}, root_ns)


def select_candidate(
    candidates: tuple[list[Config], Config | None], labels: Mapping[str, str]
) -> Config | None:
    """select_sidecar from sidecar_candidates' result."""
    selecting, fallback = candidates
    for c in selecting:
        if labels_match(c.spec.workload_selector.labels, labels):
            return c
    return fallback


def egress_listeners(sidecar: Config | None) -> list[EgressListener]:
    if sidecar is None or not sidecar.spec.egress:
        return [EgressListener(port=None, hosts=(("*", "*"),))]
    out = []
    for eg in sidecar.spec.egress:
        hosts = []
        for entry in eg.hosts or ():
            ns, _, name = entry.partition("/")
            if ns == ".":
                ns = sidecar.namespace
            hosts.append((ns, name))
        port = eg.port.number if eg.port is not None and eg.port.number else None
        out.append(EgressListener(port=port, hosts=tuple(hosts)))
    return out


def _imports_all(listeners: Sequence[EgressListener]) -> bool:
    """No port-specific listener, and a portless one imports `*/*`."""
    return all(lst.port is None for lst in listeners) and any(("*", "*") in lst.hosts for lst in listeners)


def imports_all_visible(sidecar: Config | None) -> bool:
    """Whether a scope with this Sidecar (or none) imports every port of every visible service, so
    that its services depend on the visible services alone (not on VirtualServices)."""
    return _imports_all(egress_listeners(sidecar))


def _imports(listener: EgressListener, namespace: str, hostname: str) -> bool:
    for ns, name in listener.hosts:
        if ns not in ("*", namespace):
            continue
        if name == "*" or h.matches(name, hostname):
            return True
    return False


def build_scope(
    namespace: str,
    sidecar: Config | None,
    visible_services: Sequence[Service],
    visible_vs: Sequence[VirtualServiceEntry],
    mesh_outbound_policy: str,
) -> SidecarScope:
    listeners = egress_listeners(sidecar)
    locked = {lst.port for lst in listeners if lst.port is not None}
    portless = [lst for lst in listeners if lst.port is None]

    # Every port of every visible service is imported: no need to ask per port (a full push builds
    # each scope again).
    import_all = _imports_all(listeners)
    chosen: dict[str, list[ScopedService]] = {}
    for svc in visible_services:
        if import_all:
            if svc.ports:
                chosen.setdefault(svc.hostname, []).append(ScopedService(svc, tuple(svc.ports)))
            continue
        ports = []
        for port in svc.ports:
            candidates = (
                [lst for lst in listeners if lst.port == port.port] if port.port in locked else portless
            )
            if any(_imports(lst, svc.namespace, svc.hostname) for lst in candidates):
                ports.append(port)
        if ports:
            chosen.setdefault(svc.hostname, []).append(ScopedService(svc, tuple(ports)))

    vses = [
        vs
        for vs in visible_vs
        if any(_imports(lst, vs.namespace, host) for lst in listeners for host in vs.hosts)
    ]

    # Implicit imports: what an imported VirtualService routes to is reachable even if not listed.
    by_host_all: dict[str, list[Service]] = {}
    for svc in visible_services:
        by_host_all.setdefault(svc.hostname, []).append(svc)
    for vs in vses:
        for dest_host in vs.destination_hosts():
            if dest_host in chosen:
                continue
            for svc in by_host_all.get(dest_host, ()):
                chosen.setdefault(dest_host, []).append(ScopedService(svc, svc.ports))

    scope = SidecarScope(namespace=namespace, sidecar=sidecar, virtual_services=vses)
    for hostname, candidates in chosen.items():
        best = (
            candidates[0]
            if len(candidates) == 1
            else min(
                candidates,
                key=lambda s: (
                    s.service.namespace != namespace,
                    not s.service.is_kubernetes,
                    s.service.creation_order,
                ),
            )
        )
        scope.services.append(best)
        scope.by_host[hostname] = best
    scope.services.sort(key=lambda s: (s.hostname, s.service.namespace))
    otp = sidecar.spec.outbound_traffic_policy if sidecar is not None else None
    scope.outbound_policy = (otp.mode if otp is not None and otp.mode else None) or mesh_outbound_policy
    scope.egress_proxy = otp.egress_proxy if otp is not None else None
    return scope
