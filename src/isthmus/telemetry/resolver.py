"""Peer resolution: who is at the other end of a logged request, from the mesh's own registry.

istio-proxy learns its peer's identity by metadata exchange (ALPN / headers); plain Envoy cannot, so the
control plane resolves peers itself, from what Envoy logs:

- outbound (reporter=source): the upstream cluster ``outbound|port|subset|host`` gives the destination
  service; the upstream remote address (an endpoint IP) gives the destination pod (workload, labels,
  service account) -- istio-proxy's own fallback (`istio.workload` endpoint metadata) gives the same;
- inbound (reporter=destination): the downstream remote address is the client pod's IP (sidecars bind
  their pod address for upstream connections), and the TLS peer certificate's URI SAN is the principal.

`PeerResolver` is the interface the aggregator uses; `SnapshotResolver` implements it over a
`model.Snapshot` (registry pods by IP, WorkloadEntries, services by host, inbound services by port);
`StaticResolver` implements it from plain data, for tests and tools that have no mesh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from isthmus.registry.types import socket_port
from isthmus.telemetry import istio

if TYPE_CHECKING:
    from isthmus.model.proxy import Proxy
    from isthmus.model.snapshot import Snapshot


@dataclass(frozen=True)
class Workload:
    """A workload instance as the telemetry labels see it."""

    name: str  # workload name (Deployment / Workload resource)
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    has_proxy: bool = True
    instance: str = ""
    cluster: str = istio.DEFAULT_CLUSTER

    @property
    def canonical_service(self) -> str:
        return istio.canonical_service(self.labels, self.name)

    @property
    def canonical_revision(self) -> str:
        return istio.canonical_revision(self.labels)

    @property
    def app(self) -> str:
        return istio.app_label(self.labels)

    @property
    def version(self) -> str:
        return istio.version_label(self.labels)


@dataclass(frozen=True)
class ServiceInfo:
    host: str  # FQDN
    name: str  # Kubernetes Service name; a ServiceEntry's host (as istiod's service attributes)
    namespace: str


class PeerResolver(Protocol):
    """What the aggregator asks about peers. Implementations are immutable views (cacheable)."""

    trust_domain: str

    def workload_by_ip(self, ip: str) -> Workload | None: ...

    def service_by_host(self, host: str) -> ServiceInfo | None: ...

    def inbound_service(self, proxy: Proxy, port: int) -> ServiceInfo | None: ...

    def entry_endpoint(self, host: str, ip: str) -> Workload | None: ...


def workload_of_proxy(proxy: Proxy) -> Workload:
    """The reporting proxy's own side, from its node metadata (as istio-proxy reads its node)."""
    return Workload(
        name=proxy.workload or proxy.labels.get("app") or proxy.instance,
        namespace=proxy.namespace,
        labels=dict(proxy.labels),
        service_account=proxy.service_account,
        has_proxy=True,
        instance=proxy.instance,
    )


class StaticResolver:
    """A resolver from plain data (tests, offline tools)."""

    def __init__(
        self,
        workloads: Mapping[str, Workload] | None = None,
        services: Iterable[ServiceInfo] = (),
        inbound: Mapping[tuple[str, int], ServiceInfo] | None = None,
        trust_domain: str = "cluster.local",
    ) -> None:
        self.trust_domain = trust_domain
        self._workloads = dict(workloads or {})
        self._services = {s.host: s for s in services}
        self._inbound = dict(inbound or {})  # (proxy id or instance, port) -> service

    def workload_by_ip(self, ip: str) -> Workload | None:
        return self._workloads.get(ip)

    def service_by_host(self, host: str) -> ServiceInfo | None:
        return self._services.get(host)

    def inbound_service(self, proxy: Proxy, port: int) -> ServiceInfo | None:
        return self._inbound.get((proxy.id, port)) or self._inbound.get((proxy.instance, port))

    def entry_endpoint(self, host: str, ip: str) -> Workload | None:
        return None  # plain data names no ServiceEntry endpoints


def _endpoint_workload(svc: Any, ep: Any) -> Workload:
    """A registry endpoint that is no pod. A ServiceEntry's own endpoint is no workload: istiod converts
    it with an empty config key, so its `istio.workload` metadata names no workload or namespace, only a
    canonical service its labels give, and the cluster."""
    if ep.entry_own:
        return Workload(
            name="", namespace="", labels=dict(ep.labels), has_proxy=ep.sidecar, instance=ep.instance
        )
    return Workload(
        name=ep.workload or ep.instance or ep.address,
        namespace=ep.namespace,
        labels=dict(ep.labels),
        service_account=ep.service_account,
        has_proxy=ep.sidecar,
        instance=ep.instance,
    )


class SnapshotResolver:
    """A `PeerResolver` over one snapshot; indexes are built once (the snapshot never changes)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.version = snapshot.version
        self.trust_domain = snapshot.mesh.trust_domain
        reg = snapshot.registry
        by_ip: dict[str, Workload] = {}
        # A ServiceEntry's inline endpoints by (host, IP): the metadata its cluster's hosts carry, even
        # where a pod has the same address.
        entry_eps: dict[tuple[str, str], Workload] = {}
        # WorkloadEntries (and ServiceEntry inline endpoints with an IP) first; pods override them.
        for svc in reg.services:
            for port in svc.ports:
                for ep in reg.endpoints(svc, port.port):
                    if ep.hostname or not ep.address:
                        continue
                    if ep.entry_own:
                        entry_eps.setdefault((svc.hostname, ep.address), _endpoint_workload(svc, ep))
                    if ep.address not in by_ip:
                        by_ip[ep.address] = _endpoint_workload(svc, ep)
        for pod in reg.pods.values():
            by_ip[pod.ip] = Workload(
                name=pod.workload or pod.labels.get("app") or pod.name,
                namespace=pod.namespace,
                labels=dict(pod.labels),
                service_account=pod.service_account,
                has_proxy=pod.sidecar or pod.gateway,
                instance=pod.name,
            )
        self._by_ip = by_ip
        self._entry_eps = entry_eps
        self._services: dict[str, ServiceInfo | None] = {}
        self._inbound: dict[tuple[str, int], ServiceInfo | None] = {}

    def workload_by_ip(self, ip: str) -> Workload | None:
        return self._by_ip.get(ip)

    def entry_endpoint(self, host: str, ip: str) -> Workload | None:
        """The inline endpoint at `ip` of the ServiceEntry for `host`, if it has one there."""
        return self._entry_eps.get((host, ip))

    def service_by_host(self, host: str) -> ServiceInfo | None:
        try:
            return self._services[host]
        except KeyError:
            pass
        svc = self.snapshot.registry.service(host)
        info = None
        if svc is not None:
            info = ServiceInfo(host=svc.hostname, name=svc.istio_name, namespace=svc.namespace)
        self._services[host] = info
        return info

    def inbound_service(self, proxy: Proxy, port: int) -> ServiceInfo | None:
        key = (proxy.id, port)
        try:
            return self._inbound[key]
        except KeyError:
            pass
        info = None
        for inbound in self.snapshot.inbound_ports(proxy):
            # Envoy reports the socket's port, shifted below 1024 by the proxy's port offset.
            if port not in (inbound.port, socket_port(inbound.port, proxy.port_offset)):
                continue
            if inbound.services:
                svc = inbound.services[0][0]
                info = ServiceInfo(host=svc.hostname, name=svc.istio_name, namespace=svc.namespace)
            elif inbound.sidecar is not None:
                # A Sidecar ingress port no service targets: istiod's findOrCreateService names it after
                # the Sidecar (`<name>.<namespace>`), and istio-proxy reports that service.
                info = ServiceInfo(
                    host=f"{inbound.sidecar.name}.{inbound.sidecar.namespace}",
                    name=inbound.sidecar.name,
                    namespace=inbound.sidecar.namespace,
                )
            break
        self._inbound[key] = info
        return info
