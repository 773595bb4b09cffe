"""Build the service registry from config: Kubernetes Services, ServiceEntries, WorkloadEntries and pods.

Mirrors istiod's Kubernetes and ServiceEntry registries: a Service selects pods and WorkloadEntries of its
namespace by labels; a ServiceEntry has inline endpoints or a workloadSelector over pods and
WorkloadEntries of its namespace.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from isthmus.registry.types import (
    Endpoint,
    Pod,
    Protocol,
    Resolution,
    Service,
    ServicePort,
    ServiceRef,
    parse_protocol,
    protocol_from_kube_port,
    socket_port,
    traffic_distribution,
)

DOMAIN_SUFFIX = "cluster.local"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
KUBE_SERVICE_ACCOUNTS_ANNOTATION = "alpha.istio.io/kubernetes-serviceaccounts"
CANONICAL_SERVICE_ACCOUNTS_ANNOTATION = "alpha.istio.io/canonical-serviceaccounts"
TLS_MODE_LABEL = "security.istio.io/tlsMode"
LOCALITY_LABEL = "istio-locality"
WORKLOAD_NAME_LABEL = "service.istio.io/workload-name"
# Where Kubernetes puts a node's topology (istiod's getPodLocality reads them from the pod's node, the
# GA labels first, then the deprecated beta ones). A local pod has no node: its own labels stand for it.
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
SUBZONE_LABEL = "topology.istio.io/subzone"
UNIX_ADDRESS_PREFIX = "unix://"
_DNS_RESOLUTIONS = (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)


def kube_hostname(name: str, namespace: str, domain: str = DOMAIN_SUFFIX) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def locality_from_labels(labels: Mapping[str, str]) -> str:
    """A pod's locality (`region/zone/subzone`), as istiod's getPodLocality gives it: the `istio-locality`
    label (dots for slashes, as a label value cannot hold a slash) wins; else the topology labels
    (`topology.kubernetes.io/region`, `topology.kubernetes.io/zone`, `topology.istio.io/subzone`), which
    Kubernetes puts on the node. Empty parts at the end are left out ("us-east/zone1", not istiod's
    "us-east/zone1/"), so a label and a WorkloadEntry `locality` naming the same place are one locality."""
    label = labels.get(LOCALITY_LABEL)
    if label:
        return label.replace(".", "/")
    region = next((labels[k] for k in REGION_LABELS if labels.get(k)), "")
    zone = next((labels[k] for k in ZONE_LABELS if labels.get(k)), "")
    return "/".join((region, zone, labels.get(SUBZONE_LABEL, ""))).rstrip("/")


def labels_match(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes equality selector; an empty selector selects everything."""
    if not selector:
        return True
    return all(labels.get(k) == v for k, v in selector.items())


def _service_selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A service's selector picks its endpoints; an empty one picks none (istiod's FilterSelectsNonEmpty,
    and Kubernetes makes no endpoints for a Service without a selector)."""
    return bool(selector) and labels_match(selector, labels)


@dataclass(frozen=True)
class _WorkloadInstance:
    """A pod or WorkloadEntry, the things services select."""

    address: str
    namespace: str
    labels: Mapping[str, str]
    service_account: str | None
    workload: str
    instance: str
    sidecar: bool
    ready: bool
    named_ports: Mapping[str, int]
    weight: int | None = None
    locality: str = ""
    network: str = ""
    hostname: bool = False
    # `named_ports` is a WorkloadEntry's `ports` map (istiod's WorkloadInstance.PortMap), not a pod's named
    # container ports: a Kubernetes Service also looks its own port names up in it (_kube_target_port).
    port_map: bool = False
    port_offset: int = 0  # Pod.port_offset


@dataclass(frozen=True)
class _ConfigFacts:
    """What endpoints depend on in config besides the services themselves.

    Registries built from the same config share it, so a pod change can recompute the endpoints of the
    services that select that pod alone (`update_registry`).
    """

    # Kubernetes Services that publish not-ready addresses as ready.
    publish_not_ready: frozenset[ServiceRef]
    # (namespace, name) of WorkloadEntries: their endpoints carry their name as the instance, as pods do.
    workload_entries: frozenset[tuple[str, str]]
    # (hostname, namespace) served by more than one service: their endpoints share a key.
    shared_hosts: frozenset[tuple[str, str]]
    # namespace -> services with a selector (Kubernetes Services, workloadSelector ServiceEntries).
    selecting: Mapping[str, tuple[Service, ...]]
    # Endpoint keys that DNS ServiceEntries naming a mesh host were resolved through: a pod change
    # feeding one of them rebuilds the registry (the ServiceEntry's endpoints follow the named service's).
    name_targets: frozenset[tuple[str, str, int]] = frozenset()


@dataclass
class Registry:
    services: list[Service] = field(default_factory=list)
    by_host: dict[str, list[Service]] = field(default_factory=dict)
    # (hostname, namespace, port number) -> endpoints (ready ones and not-ready ones).
    _endpoints: dict[tuple[str, str, int], tuple[Endpoint, ...]] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    # Set by build_registry; a registry assembled by hand has none and is never updated incrementally.
    _facts: _ConfigFacts | None = field(default=None, repr=False, compare=False)

    def endpoints(self, service: Service, port: int) -> tuple[Endpoint, ...]:
        return self._endpoints.get((service.hostname, service.namespace, port), ())

    def service(self, hostname: str, namespace: str | None = None) -> Service | None:
        candidates = self.by_host.get(hostname, [])
        if namespace is not None:
            for svc in candidates:
                if svc.namespace == namespace:
                    return svc
            return None
        return candidates[0] if candidates else None

    def services_selecting(self, pod: Pod) -> list[Service]:
        """Kubernetes services (and workloadSelector ServiceEntries) whose selector picks this pod."""
        if self._facts is not None:
            candidates = self._facts.selecting.get(pod.namespace, ())
            return [svc for svc in candidates if _service_selects(svc.selector, pod.labels)]
        out = []
        for svc in self.services:
            if svc.namespace != pod.namespace or svc.selector is None:
                continue
            if _service_selects(svc.selector, pod.labels):
                out.append(svc)
        return out


def _spec(resource: Any) -> Any:
    return resource.spec


def _creation_order(resource: Any) -> tuple:
    return getattr(resource, "creation_order", ()) or ()


def _service_export_to(resource: Any) -> frozenset[str]:
    annotations = resource.metadata.annotations or {}
    raw = annotations.get(EXPORT_TO_ANNOTATION)
    if not raw:
        return frozenset()
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


class _InstanceIndex:
    """Workload instances by namespace and by one label, so selectors do not scan every instance."""

    def __init__(self, instances: Iterable[_WorkloadInstance]) -> None:
        self.by_namespace: dict[str, list[_WorkloadInstance]] = defaultdict(list)
        self.by_label: dict[tuple[str, str, str], list[_WorkloadInstance]] = defaultdict(list)
        for inst in instances:
            self.by_namespace[inst.namespace].append(inst)
            for k, v in inst.labels.items():
                self.by_label[(inst.namespace, k, v)].append(inst)

    def select(self, namespace: str, selector: Mapping[str, str]) -> list[_WorkloadInstance]:
        if not selector:
            return []
        # Start from the rarest label of the selector, then check the others.
        candidates = min((self.by_label.get((namespace, k, v), []) for k, v in selector.items()), key=len)
        return [i for i in candidates if labels_match(selector, i.labels)]


def _pod_instance(pod: Pod) -> _WorkloadInstance:
    return _WorkloadInstance(
        address=pod.ip,
        namespace=pod.namespace,
        labels=dict(pod.labels),
        service_account=pod.service_account,
        workload=pod.workload,
        instance=pod.name,
        sidecar=pod.sidecar,
        ready=pod.ready,
        named_ports=dict(pod.named_ports),
        locality=pod.locality or locality_from_labels(pod.labels),
        network=pod.network,
        port_offset=pod.port_offset,
    )


def _workload_entry_instance(
    spec: Any, namespace: str, labels: Mapping[str, str], workload: str, instance: str
) -> _WorkloadInstance:
    """A WorkloadEntry (a resource, or a ServiceEntry's inline endpoint), as istiod's
    convertWorkloadEntryToWorkloadInstance reads it."""
    address = spec.address or ""
    # Istio's getTLSModeFromWorkloadEntry: the tlsMode label if present, else a proxy when it has an identity.
    sidecar = labels[TLS_MODE_LABEL] == "istio" if TLS_MODE_LABEL in labels else bool(spec.service_account)
    # The locality label (dots for slashes, as a label value cannot hold a slash) when the field is unset.
    locality = spec.locality or labels.get(LOCALITY_LABEL, "").replace(".", "/")
    return _WorkloadInstance(
        address=address,
        namespace=namespace,
        labels=labels,
        service_account=spec.service_account,
        workload=workload,
        instance=instance,
        sidecar=sidecar,
        ready=True,
        named_ports={k: int(v) for k, v in (spec.ports or {}).items()},
        weight=spec.weight,
        locality=locality,
        network=spec.network or "",
        # A host name or a unix socket: only DNS ServiceEntries can use such an endpoint.
        hostname=not _is_ip(address),
        port_map=True,
    )


def _instances(pods: Iterable[Pod], workload_entries: Sequence[Any]) -> list[_WorkloadInstance]:
    out: list[_WorkloadInstance] = [_pod_instance(pod) for pod in pods]
    for we in workload_entries:
        # metadata.labels merge over spec.labels (Istio's ConvertWorkloadEntry: the metadata wins).
        labels = {**(we.spec.labels or {}), **(we.metadata.labels or {})}
        name = we.metadata.name
        # istio's WorkloadNameFromWorkloadEntry: the workload-name label names the workload the entry
        # belongs to (a zone-aware proxy's local cluster keeps its own workload's members), else its name.
        workload = labels.get(WORKLOAD_NAME_LABEL) or name
        out.append(_workload_entry_instance(we.spec, we.namespace, labels, workload, name))
    return out


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _endpoint(inst: _WorkloadInstance, port: int) -> Endpoint:
    return Endpoint(
        address=inst.address,
        port=socket_port(port, inst.port_offset),
        namespace=inst.namespace,
        labels=inst.labels,
        service_account=inst.service_account,
        workload=inst.workload,
        instance=inst.instance,
        sidecar=inst.sidecar,
        ready=inst.ready,
        weight=inst.weight or 1,  # unset (or 0) is 1, as istiod's GetLoadBalancingWeight
        locality=inst.locality,
        network=inst.network,
        hostname=inst.hostname,
    )


def entry_target_port(port: ServicePort, named_ports: Mapping[str, int]) -> int:
    """Where a ServiceEntry port reaches a workload (istiod's serviceentry convertWorkloadInstances): the
    workload's port of that name (a WorkloadEntry's `ports`, a pod's named ports), else the entry's
    targetPort, else the port itself."""
    return named_ports.get(port.name) or port.target_port or port.port


def _kube_target_port(port: ServicePort, inst: _WorkloadInstance) -> int | None:
    """Where a Kubernetes Service port reaches an instance; None: the instance has no such port."""
    if port.target_port_name is not None:
        return inst.named_ports.get(port.target_port_name)
    if inst.port_map and inst.named_ports.get(port.name):
        # istiod's findServiceTargetPort: a numeric targetPort also stands for the service port's name, and
        # a WorkloadEntry's `ports` entry of that name wins over the number (serviceInstanceFromWorkloadInstance).
        # A pod's endpoint is Kubernetes' EndpointSlice: the number, whatever its container ports are named.
        return inst.named_ports[port.name]
    return port.target_port or port.port


def _selected_endpoints(
    svc: Service, inst: _WorkloadInstance, publish_all: bool
) -> list[tuple[int, Endpoint]]:
    """(service port, endpoint) of an instance the service's selector picks."""
    out: list[tuple[int, Endpoint]] = []
    if inst.hostname and svc.resolution not in _DNS_RESOLUTIONS:
        # istiod's DNSServiceEntryOnly: a WorkloadEntry at a host name (or unix socket) has no IP for a
        # Kubernetes Service or a STATIC ServiceEntry to balance over.
        return out
    if svc.is_kubernetes:
        for port in svc.ports:
            target = _kube_target_port(port, inst)
            if target is None:
                continue
            ep = _endpoint(inst, target)
            if publish_all and not ep.ready:
                ep = replace(ep, ready=True)
            out.append((port.port, ep))
    else:
        for port in svc.ports:
            out.append((port.port, _endpoint(inst, entry_target_port(port, inst.named_ports))))
    return out


def _services_from_kube(res: Any, domain: str) -> Service:
    spec = _spec(res)
    ports: list[ServicePort] = []
    for p in spec.ports or []:
        target = p.target_port
        target_num: int | None
        target_name: str | None = None
        if isinstance(target, str) and not target.isdigit():
            target_num, target_name = None, target
        else:
            target_num = int(target) if target is not None else int(p.port)
        ports.append(
            ServicePort(
                name=p.name or "",
                port=int(p.port),
                protocol=protocol_from_kube_port(p.name, p.app_protocol, p.protocol, int(p.port)),
                target_port=target_num,
                target_port_name=target_name,
                app_protocol=p.app_protocol,
            )
        )
    svc_type = spec.type or "ClusterIP"
    external_name = spec.external_name if svc_type == "ExternalName" else None
    return Service(
        hostname=kube_hostname(res.metadata.name, res.namespace, domain),
        namespace=res.namespace,
        name=res.metadata.name,
        ports=tuple(ports),
        source=ServiceRef("Service", res.namespace, res.metadata.name),
        resolution=Resolution.DNS if external_name else Resolution.CLIENT_SIDE_LB,
        # istiod's ConvertService: an ExternalName service is outside the mesh (no auto mTLS to it).
        mesh_external=external_name is not None,
        export_to=_service_export_to(res),
        addresses=_cluster_ips(spec),
        headless=spec.headless,
        labels=dict(res.metadata.labels or {}),
        # A Service without a selector has its endpoints managed by someone else: none from pods.
        selector=dict(spec.selector) if spec.selector and not external_name else None,
        external_name=external_name,
        subject_alt_names=_annotation_list(res, CANONICAL_SERVICE_ACCOUNTS_ANNOTATION),
        kube_service_accounts=_annotation_list(res, KUBE_SERVICE_ACCOUNTS_ANNOTATION),
        creation_order=_creation_order(res),
        traffic_distribution=traffic_distribution(spec.traffic_distribution, res.metadata.annotations),
    )


def _annotation_list(res: Any, key: str) -> tuple[str, ...]:
    """A comma-separated annotation as istiod's ConvertService splits it (unset or empty: none)."""
    raw = (res.metadata.annotations or {}).get(key) or ""
    return tuple(raw.split(",")) if raw else ()


def _cluster_ips(spec: Any) -> tuple[str, ...]:
    """istiod's ConvertService: the clusterIP, or all clusterIPs when there are several (dual stack);
    none for a headless service or one without a clusterIP."""
    if spec.cluster_ip in (None, "", "None"):
        return ()
    if len(spec.cluster_ips) > 1:
        return tuple(spec.cluster_ips)
    return (spec.cluster_ip,)


_SE_RESOLUTION = {
    None: Resolution.PASSTHROUGH,
    "NONE": Resolution.PASSTHROUGH,
    "STATIC": Resolution.CLIENT_SIDE_LB,
    "DNS": Resolution.DNS,
    "DNS_ROUND_ROBIN": Resolution.DNS_ROUND_ROBIN,
    "DYNAMIC_DNS": Resolution.DYNAMIC_DNS,
}


def _service_entry_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """IPs and CIDRs as istiod's convertServices keeps them: a single-address CIDR (/32, /128) is that
    IP; anything else (not an address) is dropped."""
    out = []
    for address in addresses:
        try:
            net = ipaddress.ip_network(address, strict=False)
        except ValueError:
            continue
        if "/" not in address:
            out.append(address)
        elif net.num_addresses == 1:
            out.append(str(net.network_address))
        else:
            out.append(address)
    return tuple(out)


def _services_from_service_entry(res: Any) -> list[Service]:
    spec = _spec(res)
    ports = tuple(
        ServicePort(
            name=p.name or "",
            port=int(p.number),
            protocol=parse_protocol(p.protocol),
            target_port=int(p.target_port) if p.target_port else None,
        )
        for p in spec.ports or []
    )
    selector = None
    if spec.workload_selector is not None:
        selector = dict(spec.workload_selector.labels or {})
    out = []
    for host in spec.hosts or []:
        out.append(
            Service(
                hostname=host,
                namespace=res.namespace,
                name=res.metadata.name,
                ports=ports,
                source=ServiceRef("ServiceEntry", res.namespace, res.metadata.name),
                resolution=_SE_RESOLUTION.get(spec.resolution, Resolution.PASSTHROUGH),
                mesh_external=(spec.location or "MESH_EXTERNAL") == "MESH_EXTERNAL",
                export_to=frozenset(spec.export_to or []),
                addresses=_service_entry_addresses(spec.addresses or ()),
                labels=dict(res.metadata.labels or {}),
                selector=selector,
                subject_alt_names=tuple(spec.subject_alt_names or ()),
                creation_order=_creation_order(res),
            )
        )
    return out


def _service_entry_endpoints(res: Any, svc: Service, instances: _InstanceIndex) -> dict[int, list[Endpoint]]:
    spec = _spec(res)
    out: dict[int, list[Endpoint]] = defaultdict(list)
    if svc.selector is not None:
        for inst in instances.select(svc.namespace, svc.selector):
            for port, ep in _selected_endpoints(svc, inst, publish_all=False):
                out[port].append(ep)
        return out
    if spec.endpoints:
        for we in spec.endpoints:
            inst = _workload_entry_instance(we, svc.namespace, dict(we.labels or {}), "", we.address or "")
            # Inline endpoints are the service's own: a host name resolves by DNS, a unix socket does not.
            inst = replace(inst, hostname=inst.hostname and not inst.address.startswith(UNIX_ADDRESS_PREFIX))
            for port in svc.ports:
                ep = _endpoint(inst, entry_target_port(port, inst.named_ports))
                out[port.port].append(replace(ep, entry_own=True))
        return out
    if svc.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN) and not svc.is_wildcard:
        # DNS resolution without endpoints: the host itself is resolved.
        for port in svc.ports:
            out[port.port].append(
                Endpoint(
                    address=svc.hostname,
                    port=port.target_port or port.port,
                    namespace=svc.namespace,
                    hostname=True,
                    entry_own=True,
                    topology=False,  # istiod's hostname instance has nil labels
                )
            )
    return out


def build_registry(resources: Iterable[Any], pods: Iterable[Pod], *, domain: str = DOMAIN_SUFFIX) -> Registry:
    """Services and endpoints from validated resources (api.Resource) and the runner's pods."""
    resources = list(resources)
    pods = list(pods)
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for res in resources:
        by_kind[res.kind].append(res)
    instances = _InstanceIndex(_instances(pods, by_kind.get("WorkloadEntry", [])))

    reg = Registry()
    reg.pods = {(p.namespace, p.name): p for p in pods}
    endpoints: dict[tuple[str, str, int], list[Endpoint]] = defaultdict(list)
    publish_not_ready: set[ServiceRef] = set()

    for res in by_kind.get("Service", []):
        svc = _services_from_kube(res, domain)
        reg.services.append(svc)
        if svc.external_name:
            for port in svc.ports:
                endpoints[(svc.hostname, svc.namespace, port.port)].append(
                    Endpoint(
                        address=svc.external_name,
                        # The service port: DNS gives the client the other name, not another port
                        # (istiod's ExternalNameEndpoints ignores targetPort).
                        port=port.port,
                        namespace=svc.namespace,
                        workload=svc.name,
                        hostname=True,
                        topology=False,
                    )
                )
            continue
        if svc.selector is None:
            continue
        # Kubernetes publishes every selected pod as ready when the Service asks (StatefulSet peers).
        publish_all = bool(_spec(res).publish_not_ready_addresses)
        if publish_all:
            publish_not_ready.add(svc.source)
        for inst in instances.select(svc.namespace, svc.selector):
            for port, ep in _selected_endpoints(svc, inst, publish_all):
                endpoints[(svc.hostname, svc.namespace, port)].append(ep)

    # Keys ServiceEntries gave endpoints to (istiod's ServiceEntry store, apart from Kubernetes').
    entry_keys: set[tuple[str, str, int]] = set()
    # Oldest first: a DNS_ROUND_ROBIN host keeps the endpoint of the entry istiod's store saw first.
    for res in sorted(by_kind.get("ServiceEntry", []), key=_creation_order):
        for svc in _services_from_service_entry(res):
            reg.services.append(svc)
            for port, eps in _service_entry_endpoints(res, svc, instances).items():
                key = (svc.hostname, svc.namespace, port)
                if svc.resolution is Resolution.DNS_ROUND_ROBIN:
                    # istiod's serviceInstancesStore.addInstances: a DNS_ROUND_ROBIN instance is skipped
                    # when the host and port already have one (Envoy's LOGICAL_DNS cluster takes a
                    # single endpoint), whichever entry of the namespace it came from
                    # (TestServiceInstancesForDnsRoundRobinLB).
                    eps = sorted(eps, key=_endpoint_order)[: 0 if key in entry_keys else 1]
                if eps:
                    entry_keys.add(key)
                endpoints[key].extend(eps)

    reg.services = _resolve_aliases(reg.services, endpoints)
    reg.services, name_targets = _resolve_mesh_names(reg.services, endpoints)
    # istiod's SortServicesByCreationTime: oldest first, ties by the service's name, then namespace.
    reg.services.sort(key=lambda s: (s.creation_order[:1], s.istio_name, s.namespace, s.creation_order))
    for svc in reg.services:
        reg.by_host.setdefault(svc.hostname, []).append(svc)
    reg._endpoints = {key: tuple(sorted(eps, key=_endpoint_order)) for key, eps in endpoints.items()}
    selecting: dict[str, list[Service]] = defaultdict(list)
    host_count: dict[tuple[str, str], int] = defaultdict(int)
    for svc in reg.services:
        host_count[(svc.hostname, svc.namespace)] += 1
        if svc.selector is not None:
            selecting[svc.namespace].append(svc)
    reg._facts = _ConfigFacts(
        publish_not_ready=frozenset(publish_not_ready),
        workload_entries=frozenset(
            (we.namespace, we.metadata.name) for we in by_kind.get("WorkloadEntry", [])
        ),
        shared_hosts=frozenset(key for key, n in host_count.items() if n > 1),
        selecting={ns: tuple(svcs) for ns, svcs in selecting.items()},
        name_targets=name_targets,
    )
    return reg


def _external_target(svc: Service) -> str:
    return (svc.external_name or "").rstrip(".").lower()


def _resolve_aliases(
    services: list[Service], endpoints: dict[tuple[str, str, int], list[Endpoint]]
) -> list[Service]:
    """Istio's ExternalName alias (1.21+, ENABLE_EXTERNAL_NAME_ALIAS): an ExternalName Service that names
    a service of the registry is only another name for it. It gets no cluster or endpoints of its own
    (its ports do not matter), and the service it names answers to its hostname too. One naming a host
    the registry does not know stays a DNS service of its own: the name is resolved outside the mesh.
    Chains (an alias of an alias) resolve to the service at their end, as istiod's resolveServiceAliases;
    a loop names no service."""
    concrete = {s.hostname: s for s in services if s.external_name is None}
    named = {s.hostname: _external_target(s) for s in services if s.external_name is not None}
    aliases: dict[str, list[str]] = defaultdict(list)
    out: list[Service] = []
    for svc in services:
        target = _external_target(svc)
        seen = {svc.hostname, target}
        while target in named and named[target] not in seen:
            target = named[target]
            seen.add(target)
        if svc.external_name is not None and target in concrete and target != svc.hostname:
            aliases[target].append(svc.hostname)
            for port in svc.ports:
                endpoints.pop((svc.hostname, svc.namespace, port.port), None)
            svc = replace(svc, alias_of=target)
        out.append(svc)
    return [
        replace(s, aliases=tuple(sorted(aliases[s.hostname])))
        if s.external_name is None and s.hostname in aliases
        else s
        for s in out
    ]


# A ServiceEntry without endpoints of its own (NONE, DYNAMIC_DNS) stands for whatever DNS says: a name of
# one is not the registry's to resolve.
_UNRESOLVABLE = (Resolution.PASSTHROUGH, Resolution.DYNAMIC_DNS)
EndpointKey = tuple[str, str, int]


class _MeshNames:
    """Resolves host names through the registry, as cluster DNS and kube-proxy would for a Service: a name
    of the registry at port P stands for the endpoints its service has for service port P (the pods at
    the port's targetPort). DESIGN §3: mesh names resolve through the registry, with no DNS server.

    A name of several services prefers the Kubernetes Service (cluster DNS knows only those), then the
    oldest. The service an endpoint belongs to never resolves its own name (a DNS ServiceEntry without
    endpoints has its host as endpoint). An ExternalName Service is a CNAME: an alias resolves as the
    service it names, another one to its external name (left to DNS). Endpoints that are names
    themselves (a DNS ServiceEntry's) resolve in turn, each (name, port) once.
    """

    def __init__(self, services: Sequence[Service], endpoints: Mapping[EndpointKey, list[Endpoint]]) -> None:
        self.endpoints = endpoints
        self.by_name: dict[str, list[Service]] = defaultdict(list)
        for svc in services:
            if not svc.is_wildcard and svc.resolution not in _UNRESOLVABLE:
                self.by_name[svc.hostname.lower()].append(svc)
        for candidates in self.by_name.values():
            candidates.sort(key=lambda s: (not s.is_kubernetes, s.creation_order, s.namespace))
        # Every endpoint key a resolution read: what the resolved endpoints depend on.
        self.read: set[EndpointKey] = set()

    def _target(self, name: str, port: int, owner: Service) -> Service | None:
        """The service `name` stands for at `port` (the first that has the port), aliases followed."""
        found = None
        # An endpoint naming its own entry's host asks DNS for that host: cluster DNS answers for the
        # Kubernetes Service of that name, never for the ServiceEntries of other namespaces that declare
        # the same host (alternatives to this entry, not records of its name). istiod's TestServiceScoping:
        # `app.com` with endpoint `app.com` resolves app.com, not another namespace's app.com entry.
        own_host = name == owner.hostname.lower()
        for svc in self.by_name.get(name, ()):
            if svc.alias_of is not None:
                svc = next((s for s in self.by_name.get(svc.alias_of, ()) if s.alias_of is None), svc)
            if svc is owner or (own_host and not svc.is_kubernetes):
                continue
            if found is None or (found.port(port) is None and svc.port(port) is not None):
                found = svc
        return found

    def resolve(
        self, ep: Endpoint, owner: Service, seen: frozenset[tuple[str, int]] = frozenset()
    ) -> list[Endpoint] | None:
        """The endpoints `ep`'s name stands for at its port; None when the registry does not know the
        name (DNS resolves it); empty when the named service has no such port or no endpoint there."""
        name = ep.address.rstrip(".").lower()
        if (name, ep.port) in seen:
            return None
        target = self._target(name, ep.port, owner)
        if target is None:
            return None
        if target.external_name is not None and target.alias_of is None:
            # A CNAME to a name outside the registry: DNS resolves that one, at the port asked for.
            return [replace(ep, address=target.external_name.rstrip("."))]
        if target.port(ep.port) is None:
            return []  # cluster DNS answers, but nothing listens on that port
        key = (target.hostname, target.namespace, ep.port)
        self.read.add(key)
        out: list[Endpoint] = []
        for t in self.endpoints.get(key, ()):
            further = self.resolve(t, target, seen | {(name, ep.port)}) if t.hostname else None
            out.extend([t] if further is None else further)
        return out


def _through(template: Endpoint, target: Endpoint) -> Endpoint:
    """A ServiceEntry endpoint resolved to one endpoint of the service its name stands for: the address,
    port and readiness are the target's; everything istiod reads from the ServiceEntry endpoint (labels
    for subsets, tlsMode and identity for auto mTLS, workload, weight, locality, network) stays its own,
    as the DNS cluster's endpoint in istiod is the ServiceEntry's, whatever the name resolves to."""
    return replace(
        template, address=target.address, port=target.port, ready=target.ready, hostname=target.hostname
    )


def _resolve_mesh_names(
    services: list[Service], endpoints: dict[EndpointKey, list[Endpoint]]
) -> tuple[list[Service], frozenset[EndpointKey]]:
    """DNS ServiceEntries whose endpoints name services of the registry get those services' endpoints.

    When every name resolves through the registry, the ServiceEntry's resolution becomes CLIENT_SIDE_LB:
    its endpoints are the registry's, and an EDS cluster is updated with them when pods change (a DNS
    cluster's inline assignment is part of CDS, which endpoint-only pushes do not resend). When some names
    are left to DNS, a DNS_ROUND_ROBIN entry is left as it is (Envoy's LOGICAL_DNS takes one endpoint) and
    a DNS one keeps its STRICT_DNS cluster with the resolved addresses among the names. Returns the
    services and the endpoint keys the resolved endpoints were read from."""
    dns_entries = [
        s for s in services if s.source.kind == "ServiceEntry" and s.resolution in _DNS_RESOLUTIONS
    ]
    if not any(
        ep.hostname
        for s in dns_entries
        for p in s.ports
        for ep in endpoints.get((s.hostname, s.namespace, p.port), ())
    ):
        return services, frozenset()
    names = _MeshNames(services, endpoints)
    # Written after every entry is resolved: resolutions read the endpoints as configured.
    updates: dict[EndpointKey, list[Endpoint]] = {}
    replaced: dict[int, Service] = {}
    for svc in dns_entries:
        resolved, left_to_dns = _resolve_entry(names, svc, endpoints)
        if resolved is None or (left_to_dns and svc.resolution is Resolution.DNS_ROUND_ROBIN):
            continue
        updates.update(resolved)
        if not left_to_dns:
            replaced[id(svc)] = replace(svc, resolution=Resolution.CLIENT_SIDE_LB, resolved_by_registry=True)
    endpoints.update(updates)
    return [replaced.get(id(s), s) for s in services], frozenset(names.read)


def _resolve_entry(
    names: _MeshNames, svc: Service, endpoints: Mapping[EndpointKey, list[Endpoint]]
) -> tuple[dict[EndpointKey, list[Endpoint]] | None, bool]:
    """One DNS ServiceEntry's endpoints by key with registry names resolved (None: no name was the
    registry's), and whether some name is left to DNS."""
    out: dict[EndpointKey, list[Endpoint]] = {}
    any_resolved = left_to_dns = False
    for port in svc.ports:
        key = (svc.hostname, svc.namespace, port.port)
        eps: list[Endpoint] = []
        for ep in endpoints.get(key, ()):
            targets = names.resolve(ep, svc) if ep.hostname else None
            if targets is None:
                eps.append(ep)
                left_to_dns = left_to_dns or ep.hostname
                continue
            any_resolved = True
            eps.extend(_through(ep, t) for t in targets)
            left_to_dns = left_to_dns or any(t.hostname for t in targets)
        out[key] = eps
    return (out if any_resolved else None), left_to_dns


def _endpoint_order(ep: Endpoint) -> tuple[str, int]:
    return (ep.address, ep.port)


def update_registry(previous: Registry, pods: Iterable[Pod]) -> Registry | None:
    """The registry of `previous`'s config with these pods, recomputing only what the changed pods feed.

    Services and everything else config-derived are taken over; the endpoints of a service are rebuilt
    only if its selector picks a changed pod (before or after the change). The result equals
    `build_registry` of the same inputs; None when that cannot be made sure of cheaply (then build it
    from scratch): endpoints that two services or a pod and a WorkloadEntry of the same name feed, or two
    endpoints at one address and port, whose order depends on the order instances were listed in.
    """
    facts = previous._facts
    if facts is None:
        return None
    new_pods = {(p.namespace, p.name): p for p in pods}
    old_pods = previous.pods
    # The store hands out the pod objects it keeps, so an unchanged pod is the very same object.
    changed = [key for key, pod in new_pods.items() if old_pods.get(key) is not pod]
    changed += [key for key in old_pods if key not in new_pods]
    # Many changes at once (a mesh starting up): one pass over everything is cheaper.
    if len(changed) > max(16, len(new_pods) // 8):
        return None
    changed_names: dict[str, set[str]] = defaultdict(set)
    added: dict[tuple[str, str, int], list[Endpoint]] = defaultdict(list)
    affected: set[tuple[str, str, int]] = set()
    for key in changed:
        if key in facts.workload_entries:
            return None
        namespace, name = key
        changed_names[namespace].add(name)
        old, new = old_pods.get(key), new_pods.get(key)
        inst = _pod_instance(new) if new is not None else None
        for svc in facts.selecting.get(namespace, ()):
            selects_new = new is not None and _service_selects(svc.selector, new.labels)
            if not selects_new and not (old is not None and _service_selects(svc.selector, old.labels)):
                continue
            if (svc.hostname, svc.namespace) in facts.shared_hosts:
                return None
            if svc.resolution is Resolution.DNS_ROUND_ROBIN:
                return None  # one endpoint of the selected ones (build_registry): rare, rebuild
            keys = [(svc.hostname, svc.namespace, port.port) for port in svc.ports]
            if facts.name_targets and not facts.name_targets.isdisjoint(keys):
                # A DNS ServiceEntry resolves its name through these endpoints: rebuild (rare).
                return None
            affected.update(keys)
            if inst is not None and selects_new:
                publish_all = svc.source in facts.publish_not_ready
                for port, ep in _selected_endpoints(svc, inst, publish_all):
                    added[(svc.hostname, svc.namespace, port)].append(ep)

    endpoints = dict(previous._endpoints)
    for ep_key in affected:
        gone = changed_names[ep_key[1]]
        eps = [e for e in endpoints.get(ep_key, ()) if e.instance not in gone]
        eps.extend(added.get(ep_key, ()))
        if not eps:
            endpoints.pop(ep_key, None)
            continue
        eps.sort(key=_endpoint_order)
        for a, b in zip(eps, eps[1:], strict=False):
            if a.address == b.address and a.port == b.port:
                return None
        endpoints[ep_key] = tuple(eps)
    return Registry(
        services=previous.services,
        by_host=previous.by_host,
        _endpoints=endpoints,
        pods=new_pods,
        _facts=facts,
    )


__all__ = [
    "DOMAIN_SUFFIX",
    "Protocol",
    "Registry",
    "build_registry",
    "kube_hostname",
    "labels_match",
    "update_registry",
]
