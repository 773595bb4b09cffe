"""The service registry's data: services, their ports, and endpoints, as istiod models them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Protocol(StrEnum):
    """Istio's protocol names (`pkg/config/protocol`). AUTO is Istio's 'UNSUPPORTED': sniffed."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    TCP = "TCP"
    TLS = "TLS"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UDP = "UDP"
    HBONE = "HBONE"
    AUTO = "UNSUPPORTED"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_http2(self) -> bool:
        """HTTP/2 on the wire, as Istio's IsHTTP2 (gRPC-Web included: its upstream speaks HTTP/2)."""
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tcp(self) -> bool:
        """Served by tcp_proxy (opaque bytes), as Istio's IsTCP."""
        return self in (
            Protocol.TCP,
            Protocol.HTTPS,
            Protocol.TLS,
            Protocol.MONGO,
            Protocol.REDIS,
            Protocol.MYSQL,
        )

    @property
    def is_tls(self) -> bool:
        return self in (Protocol.HTTPS, Protocol.TLS)


_PROTOCOL_BY_NAME = {
    "http": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "https": Protocol.HTTPS,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "tcp": Protocol.TCP,
    "tls": Protocol.TLS,
    "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS,
    "mysql": Protocol.MYSQL,
    "udp": Protocol.UDP,
    "hbone": Protocol.HBONE,
}

# Kubernetes' standard appProtocol values, matched exactly as written (`pkg/config/kube/conversion.go`).
_KUBE_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.HTTPS,
}

# Server-first protocols' ports (SMTP, DNS, MySQL, MongoDB): sniffing would stall them, so an unnamed
# port there is TCP (`pkg/config/kube/conversion.go` wellKnownPorts).
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def parse_protocol(name: str | None) -> Protocol:
    """A protocol name as written in a ServiceEntry/Gateway port (case-insensitive)."""
    if not name:
        return Protocol.AUTO
    return _PROTOCOL_BY_NAME.get(name.lower(), Protocol.AUTO)


def protocol_from_kube_port(
    name: str | None, app_protocol: str | None, kube_protocol: str | None, port: int | None = None
) -> Protocol:
    """Istio's ConvertProtocol: UDP stays UDP; a set appProtocol is read instead of the port name (which
    is then ignored, even if appProtocol names nothing Istio knows); the name gives `<proto>[-suffix]`."""
    if (kube_protocol or "TCP").upper() == "UDP":
        return Protocol.UDP
    if app_protocol is not None:
        standard = _KUBE_APP_PROTOCOLS.get(app_protocol)
        if standard is not None:
            return standard
        name = app_protocol
    name = name or ""
    # grpc-web is the one protocol name containing a dash: checked before cutting at the first dash.
    if name[: len("grpc-web")].lower() == "grpc-web":
        return Protocol.GRPC_WEB
    proto = parse_protocol(name.split("-", 1)[0])
    if proto is Protocol.AUTO and port in _WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return proto


class Resolution(StrEnum):
    """How a service's endpoints are found: Istio's `model.Resolution`."""

    CLIENT_SIDE_LB = "ClientSideLB"  # EDS
    PASSTHROUGH = "Passthrough"  # ORIGINAL_DST (resolution NONE)
    DNS = "DNS"  # STRICT_DNS
    DNS_ROUND_ROBIN = "DNSRoundRobin"  # LOGICAL_DNS
    DYNAMIC_DNS = "DynamicDNS"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: Protocol
    # Kubernetes targetPort (number, or a port name resolved per endpoint) / ServiceEntry targetPort.
    target_port: int | None = None
    target_port_name: str | None = None
    # A Kubernetes Service port's appProtocol as written (None when unset): `describe` needs to know
    # whether the protocol was declared (istioctl's findProtocolForPort).
    app_protocol: str | None = None


@dataclass(frozen=True)
class ServiceRef:
    """The config resource a service came from, for messages and metadata."""

    kind: str  # "Service" or "ServiceEntry"
    namespace: str
    name: str


TRAFFIC_DISTRIBUTION_SAME_ZONE = "PreferSameZone"
TRAFFIC_DISTRIBUTION_SAME_NODE = "PreferSameNode"
TRAFFIC_DISTRIBUTION_ANNOTATION = "networking.istio.io/traffic-distribution"


def traffic_distribution(spec_value: str | None, annotations: Mapping[str, str] | None) -> str:
    """istiod's GetTrafficDistribution: the Service's `trafficDistribution` (PreferClose is PreferSameZone's
    old name), else the annotation (case-insensitive); anything else is "" (no preference)."""
    if spec_value in ("PreferClose", TRAFFIC_DISTRIBUTION_SAME_ZONE):
        return TRAFFIC_DISTRIBUTION_SAME_ZONE
    if spec_value == TRAFFIC_DISTRIBUTION_SAME_NODE:
        return TRAFFIC_DISTRIBUTION_SAME_NODE
    value = str((annotations or {}).get(TRAFFIC_DISTRIBUTION_ANNOTATION) or "").lower()
    if value in ("preferclose", "prefersamezone"):
        return TRAFFIC_DISTRIBUTION_SAME_ZONE
    if value == "prefersamenode":
        return TRAFFIC_DISTRIBUTION_SAME_NODE
    return ""


@dataclass(frozen=True)
class Service:
    hostname: str
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    source: ServiceRef
    resolution: Resolution = Resolution.CLIENT_SIDE_LB
    mesh_external: bool = False
    export_to: frozenset[str] = frozenset()  # empty: mesh default
    # ServiceEntry addresses, a Kubernetes Service's clusterIP(s): Host: <address> reaches the service.
    addresses: tuple[str, ...] = ()
    # A Kubernetes Service with `clusterIP: None`: istiod's Passthrough resolution, which here keeps EDS
    # (explicit proxies have no original destination) but still gives `*.<host>` domains.
    headless: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    selector: Mapping[str, str] | None = None
    # Kubernetes ExternalName: the concrete host traffic goes to.
    external_name: str | None = None
    # Istio's ExternalName alias (since 1.21): an ExternalName Service naming a service of the registry
    # has no config of its own (`alias_of` is that service's hostname); the service it names matches its
    # hostnames too (`aliases`), wherever Host: <service> is matched.
    alias_of: str | None = None
    aliases: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    # A Kubernetes Service's `alpha.istio.io/kubernetes-serviceaccounts` names: istiod's ConvertService
    # adds them to the service's accounts as SPIFFE ids of the trust domain and the Service's namespace
    # (its `alpha.istio.io/canonical-serviceaccounts` ids are in `subject_alt_names`, as written).
    kube_service_accounts: tuple[str, ...] = ()
    creation_order: tuple = ()
    # A DNS / DNS_ROUND_ROBIN ServiceEntry whose endpoint names (or host) all name services of the
    # registry: mesh names resolve through the registry (DESIGN §3), to the endpoints of the service
    # they name, so `resolution` is CLIENT_SIDE_LB (an EDS cluster that pod changes update as any
    # other) and this flag records that the ServiceEntry declared DNS.
    resolved_by_registry: bool = False
    # A Kubernetes Service's `trafficDistribution` (or Istio's `networking.istio.io/traffic-distribution`
    # annotation), as istiod's GetTrafficDistribution reads it: TRAFFIC_DISTRIBUTION_SAME_ZONE,
    # TRAFFIC_DISTRIBUTION_SAME_NODE, or "" (any). Locality load balancing acts on it (xds.gen.locality).
    traffic_distribution: str = ""

    def port(self, number: int) -> ServicePort | None:
        for p in self.ports:
            if p.port == number:
                return p
        return None

    def port_by_name(self, name: str) -> ServicePort | None:
        for p in self.ports:
            if p.name == name:
                return p
        return None

    @property
    def is_kubernetes(self) -> bool:
        return self.source.kind == "Service"

    @property
    def istio_name(self) -> str:
        """istiod's Attributes.Name: a Kubernetes Service's name, a ServiceEntry service's host."""
        return self.name if self.is_kubernetes else self.hostname

    @property
    def is_wildcard(self) -> bool:
        return self.hostname.startswith("*")


@dataclass(frozen=True)
class Pod:
    """A workload instance: what the local runner starts (or a Kubernetes Pod)."""

    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str]
    workload: str = ""
    service_account: str = "default"
    sidecar: bool = True
    gateway: bool = False
    ready: bool = True
    # Target port -> private app port (local runner); empty for pods we did not start.
    app_ports: Mapping[int, int] = field(default_factory=dict)
    named_ports: Mapping[str, int] = field(default_factory=dict)
    locality: str = ""
    network: str = ""
    # What its proxy (sidecar or gateway) adds to ports below 1024 it listens on: a mesh run without root
    # (DESIGN §3). Its endpoints are reached there; config keeps the declared ports.
    port_offset: int = 0


def socket_port(port: int, offset: int) -> int:
    """The port a proxy listens on for a declared port: below 1024 shifted by the mesh's port offset."""
    return port + offset if offset and port < 1024 else port


def split_locality(locality: str) -> tuple[str, str, str]:
    """`region/zone/subzone` into its parts (istio's SplitLocalityLabel); missing ones are empty."""
    parts = locality.split("/")
    return parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    workload: str = ""
    instance: str = ""
    sidecar: bool = False  # carries an Istio sidecar: tlsMode istio
    ready: bool = True
    # The endpoint's load-balancing weight, never unset: istiod's IstioEndpoint.GetLoadBalancingWeight
    # normalizes 0 to 1 (registry.build does) and its EDS writes it on every LbEndpoint
    # (TestEdsWeightedServiceEntry).
    weight: int = 1
    locality: str = ""
    network: str = ""
    # True for DNS-resolved addresses (hostnames); the cluster is STRICT_DNS then.
    hostname: bool = False
    # A ServiceEntry's own endpoint (an inline one, or its host resolved by DNS): istiod converts it with
    # an empty config key, so it names no workload or namespace (`istio.workload` metadata, telemetry).
    entry_own: bool = False
    # istiod adds topology labels (its AugmentLabels: region, zone, subzone, cluster, network) to the
    # labels of every endpoint it converts from a pod or a WorkloadEntry (inline ones too), so subsets
    # can select by them; a DNS ServiceEntry's own host and an ExternalName's target have no labels.
    topology: bool = True
