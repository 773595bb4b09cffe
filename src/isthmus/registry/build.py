"""Build the service registry from config: Kubernetes Services, ServiceEntries, WorkloadEntries and pods.

Mirrors istiod's Kubernetes and ServiceEntry registries: a Service selects pods and WorkloadEntries of its
namespace by labels; a ServiceEntry has inline endpoints or a workloadSelector over pods and
WorkloadEntries of its namespace.
"""

from __future__ import annotations

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
)

DOMAIN_SUFFIX = "cluster.local"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def kube_hostname(name: str, namespace: str, domain: str = DOMAIN_SUFFIX) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def labels_match(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes equality selector; an empty selector selects everything."""
    if not selector:
        return True
    return all(labels.get(k) == v for k, v in selector.items())


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


@dataclass
class Registry:
    services: list[Service] = field(default_factory=list)
    by_host: dict[str, list[Service]] = field(default_factory=dict)
    # (hostname, namespace, port number) -> endpoints (ready ones and not-ready ones).
    _endpoints: dict[tuple[str, str, int], tuple[Endpoint, ...]] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)

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
        out = []
        for svc in self.services:
            if svc.namespace != pod.namespace or svc.selector is None:
                continue
            if labels_match(svc.selector, pod.labels):
                out.append(svc)
        return out

    def endpoint_signature(self, hostname: str, namespace: str) -> tuple:
        """A hashable summary of a service's endpoints, for change detection."""
        return tuple(
            sorted(
                (port, eps)
                for (h, ns, port), eps in self._endpoints.items()
                if h == hostname and ns == namespace
            )
        )


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
            return list(self.by_namespace.get(namespace, ()))
        # Start from the rarest label of the selector, then check the others.
        candidates = min((self.by_label.get((namespace, k, v), []) for k, v in selector.items()), key=len)
        return [i for i in candidates if labels_match(selector, i.labels)]


def _instances(pods: Iterable[Pod], workload_entries: Sequence[Any]) -> list[_WorkloadInstance]:
    out: list[_WorkloadInstance] = []
    for pod in pods:
        out.append(
            _WorkloadInstance(
                address=pod.ip,
                namespace=pod.namespace,
                labels=dict(pod.labels),
                service_account=pod.service_account,
                workload=pod.workload,
                instance=pod.name,
                sidecar=pod.sidecar,
                ready=pod.ready,
                named_ports=dict(pod.named_ports),
                locality=pod.locality,
                network=pod.network,
            )
        )
    for we in workload_entries:
        spec = we.spec
        labels = dict(spec.labels or {})
        address = spec.address or ""
        tls_mode = labels.get("security.istio.io/tlsMode")
        out.append(
            _WorkloadInstance(
                address=address,
                namespace=we.namespace,
                labels=labels,
                service_account=spec.service_account,
                workload=we.metadata.name,
                instance=we.metadata.name,
                # A WorkloadEntry with a service account is a VM with a proxy (Istio's getTLSMode...).
                sidecar=(tls_mode == "istio") if tls_mode else bool(spec.service_account),
                ready=True,
                named_ports={k: int(v) for k, v in (spec.ports or {}).items()},
                weight=spec.weight,
                locality=spec.locality or "",
                network=spec.network or "",
                hostname=not _is_ip(address),
            )
        )
    return out


def _is_ip(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _endpoint(inst: _WorkloadInstance, port: int) -> Endpoint:
    return Endpoint(
        address=inst.address,
        port=port,
        namespace=inst.namespace,
        labels=inst.labels,
        service_account=inst.service_account,
        workload=inst.workload,
        instance=inst.instance,
        sidecar=inst.sidecar,
        ready=inst.ready,
        weight=inst.weight,
        locality=inst.locality,
        network=inst.network,
        hostname=inst.hostname,
    )


def _kube_target_port(port: ServicePort, inst: _WorkloadInstance) -> int | None:
    if port.target_port_name is not None:
        return inst.named_ports.get(port.target_port_name)
    return port.target_port or port.port


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
                protocol=protocol_from_kube_port(p.name, p.app_protocol, p.protocol),
                target_port=target_num,
                target_port_name=target_name,
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
        export_to=_service_export_to(res),
        labels=dict(res.metadata.labels or {}),
        selector=dict(spec.selector) if spec.selector is not None and not external_name else None,
        external_name=external_name,
        creation_order=_creation_order(res),
    )


_SE_RESOLUTION = {
    None: Resolution.PASSTHROUGH,
    "NONE": Resolution.PASSTHROUGH,
    "STATIC": Resolution.CLIENT_SIDE_LB,
    "DNS": Resolution.DNS,
    "DNS_ROUND_ROBIN": Resolution.DNS_ROUND_ROBIN,
    "DYNAMIC_DNS": Resolution.DYNAMIC_DNS,
}


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
                addresses=tuple(spec.addresses or ()),
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
            for port in svc.ports:
                target = inst.named_ports.get(port.name) or port.target_port or port.port
                out[port.port].append(_endpoint(inst, target))
        return out
    if spec.endpoints:
        for we in spec.endpoints:
            address = we.address or ""
            inst = _WorkloadInstance(
                address=address,
                namespace=svc.namespace,
                labels=dict(we.labels or {}),
                service_account=we.service_account,
                workload=res.metadata.name,
                instance=address,
                sidecar=bool(we.service_account)
                or (we.labels or {}).get("security.istio.io/tlsMode") == "istio",
                ready=True,
                named_ports={k: int(v) for k, v in (we.ports or {}).items()},
                weight=we.weight,
                locality=we.locality or "",
                network=we.network or "",
                hostname=not _is_ip(address) and not address.startswith("unix://"),
            )
            for port in svc.ports:
                target = inst.named_ports.get(port.name) or port.target_port or port.port
                out[port.port].append(_endpoint(inst, target))
        return out
    if svc.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN) and not svc.is_wildcard:
        # DNS resolution without endpoints: the host itself is resolved.
        for port in svc.ports:
            out[port.port].append(
                Endpoint(
                    address=svc.hostname,
                    port=port.target_port or port.port,
                    namespace=svc.namespace,
                    workload=res.metadata.name,
                    hostname=True,
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

    for res in by_kind.get("Service", []):
        svc = _services_from_kube(res, domain)
        reg.services.append(svc)
        if svc.external_name:
            for port in svc.ports:
                endpoints[(svc.hostname, svc.namespace, port.port)].append(
                    Endpoint(
                        address=svc.external_name,
                        port=port.target_port or port.port,
                        namespace=svc.namespace,
                        workload=svc.name,
                        hostname=True,
                    )
                )
            continue
        if svc.selector is None:
            continue
        # Kubernetes publishes every selected pod as ready when the Service asks (StatefulSet peers).
        publish_all = bool(_spec(res).publish_not_ready_addresses)
        for inst in instances.select(svc.namespace, svc.selector):
            for port in svc.ports:
                target = _kube_target_port(port, inst)
                if target is None:
                    continue
                ep = _endpoint(inst, target)
                if publish_all and not ep.ready:
                    ep = replace(ep, ready=True)
                endpoints[(svc.hostname, svc.namespace, port.port)].append(ep)

    for res in by_kind.get("ServiceEntry", []):
        for svc in _services_from_service_entry(res):
            reg.services.append(svc)
            for port, eps in _service_entry_endpoints(res, svc, instances).items():
                endpoints[(svc.hostname, svc.namespace, port)].extend(eps)

    reg.services.sort(key=lambda s: (s.creation_order, s.hostname, s.namespace))
    for svc in reg.services:
        reg.by_host.setdefault(svc.hostname, []).append(svc)
    reg._endpoints = {
        key: tuple(sorted(eps, key=lambda e: (e.address, e.port))) for key, eps in endpoints.items()
    }
    return reg


__all__ = ["DOMAIN_SUFFIX", "Protocol", "Registry", "build_registry", "kube_hostname", "labels_match"]
