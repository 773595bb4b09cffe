"""Sidecar scoping: which services, ports and VirtualServices a sidecar sees.

Follows `pilot/pkg/model/sidecar.go`: the Sidecar resource that applies (workload selector, namespace
default, root-namespace default), egress `ns/host` imports per listener (a listener with a port imports
that port of a service only), implicit imports of VirtualService destinations, one service per hostname
(`appendSidecarServices`: first wins, Kubernetes over ServiceEntry, same-namespace ServiceEntries merge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.virtual_services import VirtualServiceEntry, config_creation_key, creation_key
from isthmus.model.visibility import PUBLIC, normalize
from isthmus.registry.build import labels_match
from isthmus.registry.types import Service, ServicePort


@dataclass(frozen=True)
class EgressListener:
    port: int | None
    hosts: tuple[tuple[str, str], ...]  # (namespace or "*" or "~", dns name)
    # needsPortMatch: a port that is not HTTP_PROXY's (a generic proxy port imports every port).
    match_port: bool = False


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
    sidecars = sorted(sidecars, key=config_creation_key)
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
        for c in sorted(sidecars, key=config_creation_key)
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


def egress_listeners(sidecar: Config | None, namespace: str) -> list[EgressListener]:
    """The egress listeners of a scope for `namespace` (the proxy's: a root-namespace Sidecar's `./`
    means the namespace it is applied to, as istiod's configNamespace)."""
    if sidecar is None or not sidecar.spec.egress:
        return [EgressListener(port=None, hosts=(("*", "*"),))]
    out = []
    for eg in sidecar.spec.egress:
        hosts = []
        for entry in eg.hosts or ():
            ns, _, name = entry.partition("/")
            if ns == ".":
                ns = namespace
            hosts.append((ns, name))
        port = eg.port.number if eg.port is not None and eg.port.number else None
        proxy_port = eg.port is not None and (eg.port.protocol or "").upper() == "HTTP_PROXY"
        out.append(
            EgressListener(port=port, hosts=tuple(hosts), match_port=port is not None and not proxy_port)
        )
    return out


def imports_all_visible(sidecar: Config | None) -> bool:
    """Whether a scope with this Sidecar (or none) is every visible service, so that its services depend
    on the visible services alone (not on VirtualServices): istiod's default scope. With a Sidecar, even
    `*/*`, VirtualService destinations can still pick among same-named services."""
    return sidecar is None


def _imports_vs(listener: EgressListener, namespace: str, hostname: str) -> bool:
    """hostClassification.VSMatches: a VirtualService host and an import overlap either way."""
    return any(ns in ("*", namespace) and h.matches(name, hostname) for ns, name in listener.hosts)


def _imports_service(listener: EgressListener, namespace: str, hostname: str) -> bool:
    """hostClassification.Matches: the service's host lies within an import (`*.com` imports `a.com`,
    `a.com` does not import a `*.com` service)."""
    return any(ns in ("*", namespace) and h.subset_of(hostname, name) for ns, name in listener.hosts)


def _on_listener_port(svc: Service, listener: EgressListener) -> ScopedService | None:
    """serviceMatchingListenerPort: the service trimmed to the listener's port, if it has it."""
    port = svc.port(listener.port) if listener.port is not None else None
    return ScopedService(svc, (port,)) if port is not None else None


def _on_destination_ports(svc: Service, ports: set[int]) -> ScopedService | None:
    """serviceMatchingVirtualServicePorts: the ports a VirtualService sends to (0: a destination
    without a port, so every port); None when the service has none of them."""
    if not ports or 0 in ports:
        return ScopedService(svc, svc.ports)
    found = tuple(p for p in svc.ports if p.port in ports)
    return ScopedService(svc, found) if found else None


def _select_services(
    listener: EgressListener, ordered: Sequence[Service], namespace: str
) -> list[ScopedService]:
    """IstioEgressListenerWrapper.selectServices: what one listener imports, one namespace per hostname
    (the proxy's namespace if it has the host, else the first imported)."""
    imported: list[ScopedService] = []
    for svc in ordered:
        if not _imports_service(listener, svc.namespace, svc.hostname):
            continue
        scoped = _on_listener_port(svc, listener) if listener.match_port else ScopedService(svc, svc.ports)
        if scoped is not None:
            imported.append(scoped)
    chosen_ns: dict[str, str] = {}
    for s in imported:
        if s.hostname not in chosen_ns or s.service.namespace == namespace:
            chosen_ns[s.hostname] = s.service.namespace
    return [s for s in imported if chosen_ns[s.hostname] == s.service.namespace]


def _destinations(vs: VirtualServiceEntry, namespace: str) -> dict[str, set[int]]:
    """virtualServiceDestinationsFilteredBySourceNamespace: destination hosts and their ports (0: no
    port), leaving out HTTP rules whose sourceNamespace matches are for other namespaces."""
    out: dict[str, set[int]] = {}

    def add(dest: Any) -> None:
        if dest is not None:
            out.setdefault(dest.host, set()).add(dest.port.number if dest.port and dest.port.number else 0)

    for route in vs.http:
        matched = True
        for m in route.match or ():
            # As istiod: the first match naming this namespace counts, else the last one naming any.
            if m.source_namespace:
                matched = m.source_namespace == namespace
                if matched:
                    break
        if not matched:
            continue
        for d in route.route or ():
            add(d.destination)
        add(route.mirror)
        for mirror in route.mirrors or ():
            add(mirror.destination)
    for rule in (*vs.tcp, *vs.tls):
        for d in rule.route or ():
            add(d.destination)
    return out


def _can_merge(a: Service, b: Service) -> bool:
    """canMergeServices (the hostname already equal)."""
    return (
        a.namespace == b.namespace
        and a.resolution == b.resolution
        and a.is_kubernetes == b.is_kubernetes
        and dict(a.labels) == dict(b.labels)
        and dict(a.selector or {}) == dict(b.selector or {})
        and a.export_to == b.export_to
    )


def _append(chosen: dict[str, ScopedService], new: ScopedService) -> None:
    """appendSidecarServices: the first service added for a hostname stays, except that a Kubernetes
    Service takes the place of other kinds (no squatting on its name), and a compatible ServiceEntry
    of the same namespace adds its ports."""
    cur = chosen.get(new.hostname)
    if cur is None:
        chosen[new.hostname] = new
        return
    if cur.service.is_kubernetes:
        return
    if new.service.is_kubernetes:
        chosen[new.hostname] = new
        return
    if not _can_merge(cur.service, new.service):
        return
    extra = tuple(p for p in new.ports if all(p.port != q.port for q in cur.ports))
    if not extra:
        return
    # The merged service carries every port it routes, as istiod's copy does.
    missing = tuple(p for p in extra if cur.service.port(p.port) is None)
    svc = replace(cur.service, ports=cur.service.ports + missing) if missing else cur.service
    chosen[new.hostname] = ScopedService(svc, cur.ports + extra)


def _service_order(svc: Service, namespace: str, default_export_to: frozenset[str]) -> tuple:
    """servicesExportedToNamespace: the namespace's private services, those exported to it, then the
    public ones, each in creation order."""
    if PUBLIC in normalize(svc.export_to, default_export_to):
        rank = 2
    else:
        rank = 0 if svc.namespace == namespace else 1
    return (rank, creation_key(svc.creation_order, svc.name, svc.namespace))


def build_scope(
    namespace: str,
    sidecar: Config | None,
    visible_services: Sequence[Service],
    visible_vs: Sequence[VirtualServiceEntry],
    mesh_outbound_policy: str,
    default_export_to: frozenset[str] = frozenset({PUBLIC}),
) -> SidecarScope:
    ordered = sorted(visible_services, key=lambda s: _service_order(s, namespace, default_export_to))
    listeners = egress_listeners(sidecar, namespace)
    chosen: dict[str, ScopedService] = {}
    if sidecar is None:
        # DefaultSidecarScopeForNamespace: every visible service, no imports through VirtualServices.
        for svc in ordered:
            _append(chosen, ScopedService(svc, svc.ports))
        vses = list(visible_vs)
    else:
        # HostnameAndNamespace: per hostname, the newest service of each namespace.
        by_host_ns: dict[str, dict[str, Service]] = {}
        for svc in sorted(ordered, key=lambda s: creation_key(s.creation_order, s.name, s.namespace)):
            by_host_ns.setdefault(svc.hostname, {})[svc.namespace] = svc
        imported_vs: set[int] = set()
        for lst in listeners:
            for scoped in _select_services(lst, ordered, namespace):
                _append(chosen, scoped)
            # Implicit imports: what an imported VirtualService routes to, after the explicit imports
            # (which it does not override): in the proxy's namespace if it has the host, else the first
            # namespace in alphabetical order.
            for i, vs in enumerate(visible_vs):
                if not any(_imports_vs(lst, vs.namespace, host) for host in vs.hosts):
                    continue
                imported_vs.add(i)
                for dest_host, ports in _destinations(vs, namespace).items():
                    by_ns = by_host_ns.get(dest_host)
                    if not by_ns:
                        continue
                    svc = by_ns.get(namespace) or by_ns[min(by_ns)]
                    scoped = (
                        _on_listener_port(svc, lst) if lst.match_port else _on_destination_ports(svc, ports)
                    )
                    if scoped is not None:
                        _append(chosen, scoped)
        # The proxy's one route table takes the VirtualServices in their precedence order.
        vses = [vs for i, vs in enumerate(visible_vs) if i in imported_vs]

    scope = SidecarScope(namespace=namespace, sidecar=sidecar, virtual_services=vses)
    scope.services = sorted(chosen.values(), key=lambda s: (s.hostname, s.service.namespace))
    scope.by_host = {s.hostname: s for s in scope.services}
    otp = sidecar.spec.outbound_traffic_policy if sidecar is not None else None
    # istiod takes a Sidecar's outboundTrafficPolicy whole once it is set: a mode left out is the enum's
    # zero value, REGISTRY_ONLY, not the mesh's mode (ConvertToSidecarScope).
    scope.outbound_policy = (otp.mode or "REGISTRY_ONLY") if otp is not None else mesh_outbound_policy
    scope.egress_proxy = otp.egress_proxy if otp is not None else None
    return scope
