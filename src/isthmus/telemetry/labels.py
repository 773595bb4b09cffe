"""Istio's workload and service labels for one logged request, computed as istio-proxy computes them.

`peer_labels_outbound` / `peer_labels_inbound` return the 20 `PEER_LABELS` values (reporter first) for a
request reported by a client proxy (sidecar outbound, gateway) or a server sidecar (inbound). The rules
follow istio-proxy's `populatePeerInfo`:

- reporter=source: the source is the reporting proxy itself (node metadata); the destination is the peer
  (resolved from the upstream endpoint IP); the principals are the upstream connection's certificates'
  URI SANs, "unknown" over plaintext; destination_service is the cluster's service, falling back to the
  Host header (PassthroughCluster / BlackHoleCluster name the service name); destination_service_namespace
  is the peer's namespace.
- reporter=destination: the destination is the reporting proxy; the source is the peer (resolved from
  the downstream remote IP); the source principal is the downstream peer certificate's URI SAN;
  connection_security_policy is mutual_tls when both peer and local certificates carry a SAN, else none.
  The Host header is not used (istio-proxy's inbound `disable_host_header_fallback`).
- unknown peers give "unknown" everywhere, except canonical revisions, which default to "latest";
- the reporting proxy's own app and version are its node's `app` / `version` labels as they are, with
  no "unknown" fallback: a pod without them reports "" (istio_stats.cc pushes `context_.app_name_`
  unchanged, where every peer value falls back to "unknown").

What istio-proxy can know of its peer depends on how it learns it, and the labels follow that:
- a peer with a sidecar tells its metadata by metadata exchange: HTTP headers (any transport), or for TCP
  the `istio-peer-exchange` ALPN, which only mTLS carries;
- failing that, a client proxy falls back to the upstream endpoint's `istio.workload` metadata, which
  istiod puts only on EDS endpoints of the registry and which holds the workload name, namespace,
  canonical service/revision and cluster, not app and version (so those are "unknown"); passthrough
  (ORIGINAL_DST) endpoints carry none;
- a server sidecar has no fallback: a client without a sidecar (or plaintext TCP) is "unknown".
The service graph still places such peers (`PeerLabels.graph_values`): it is ours, not Istio's.
"""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.telemetry import istio
from isthmus.telemetry.resolver import PeerResolver, Workload

U = istio.UNKNOWN
_SPECIAL_CLUSTERS = frozenset(
    {
        "BlackHoleCluster",
        "PassthroughCluster",
        "InboundPassthroughCluster",
        "InboundPassthroughClusterIpv4",
        "InboundPassthroughClusterIpv6",
    }
)

# REGISTRY_ONLY's catch-all routes: istiod's `block_all`, and the CONNECT one that stands for Istio's TCP
# route to the BlackHoleCluster.
BLOCK_ALL_ROUTES = frozenset({"block_all", "connect-block_all"})


@dataclass(frozen=True, slots=True)
class PeerLabels:
    values: tuple[str, ...]  # PEER_LABELS order
    peer: Workload | None  # the other side, if known
    mtls: bool | None  # connection_security_policy: True/False (destination), None (source: unknown)
    # The values with the peer as the registry knows it, when istio-proxy could not know as much (None
    # when they equal `values`): the service graph names the workload where the metrics say "unknown".
    graph_values: tuple[str, ...] | None = None

    @property
    def security_policy(self) -> str:
        if self.mtls is None:
            return U
        return istio.MUTUAL_TLS if self.mtls else istio.NONE


def _parse_outbound(cluster: str) -> tuple[int, str, str] | None:
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def _inbound_port(cluster: str) -> int | None:
    parts = cluster.split("|")
    if len(parts) == 4 and parts[0] == "inbound" and parts[1].isdigit():
        return int(parts[1])
    return None


def _own_app(me: Workload) -> str:
    """The reporting proxy's `app` label as istio-proxy reads it from its node metadata ("" if unset)."""
    return me.labels.get("app", "")


def _own_version(me: Workload) -> str:
    """The reporting proxy's `version` label as istio-proxy reads it ("" if unset)."""
    return me.labels.get("version", "")


def _endpoint_metadata(peer: Workload) -> Workload:
    """What the `istio.workload` endpoint metadata tells of `peer` (istio-proxy's convertEndpointMetadata):
    no app and no version labels."""
    return Workload(
        name=peer.name,
        namespace=peer.namespace,
        labels={
            "service.istio.io/canonical-name": peer.canonical_service,
            "service.istio.io/canonical-revision": peer.canonical_revision,
        },
        service_account=peer.service_account,
        has_proxy=peer.has_proxy,
        instance=peer.instance,
        cluster=peer.cluster,
    )


def _upstream_peer(peer: Workload | None, *, eds: bool, tcp: bool, peer_san: str) -> Workload | None:
    """The destination istio-proxy knows: by metadata exchange (a sidecar; over TCP only through mTLS),
    else by the endpoint metadata of an EDS cluster, else nothing."""
    if peer is None:
        return None
    if peer.has_proxy and (not tcp or peer_san):
        return peer
    return _endpoint_metadata(peer) if eds else None


def _outbound_values(
    me: Workload,
    peer: Workload | None,
    peer_san: str,
    local_san: str,
    service_host: str,
    service_name: str,
) -> tuple[str, ...]:
    peer_ns = (istio.namespace_of_principal(peer_san) if peer_san else None) or (
        peer.namespace if peer is not None else ""
    )
    return (
        istio.SOURCE,
        me.name or U,
        me.canonical_service,
        me.canonical_revision,
        me.namespace or U,
        local_san or U,
        _own_app(me),
        _own_version(me),
        me.cluster or U,
        (peer.name or U) if peer is not None else U,
        peer_ns or U,
        peer_san or U,
        peer.app if peer is not None else U,
        peer.version if peer is not None else U,
        service_host or U,
        peer.canonical_service if peer is not None else U,
        peer.canonical_revision if peer is not None else istio.LATEST,
        service_name or U,
        peer_ns or U,
        (peer.cluster or U) if peer is not None else U,
    )


def peer_labels_outbound(
    resolver: PeerResolver,
    me: Workload,
    *,
    cluster: str,
    upstream_ip: str,
    peer_san: str,
    local_san: str,
    authority: str,
    route_name: str,
    host_header_fallback: bool = True,
    tcp: bool = False,
) -> PeerLabels:
    """Labels reported by a client proxy (sidecar outbound or gateway): reporter=source. `tcp`: a TCP
    connection (or a CONNECT tunnel, which Istio would see as one)."""
    resolved = resolver.workload_by_ip(upstream_ip) if upstream_ip else None
    service_host = authority if host_header_fallback else ""
    service_name = service_host
    eds = False
    metadata_peer = resolved  # whose `istio.workload` endpoint metadata the upstream host carries
    if route_name in BLOCK_ALL_ROUTES:
        service_name = "BlackHoleCluster"
    elif route_name == "allow_any":
        service_name = "PassthroughCluster"
    elif cluster in _SPECIAL_CLUSTERS:
        service_name = cluster
    elif cluster:
        parsed = _parse_outbound(cluster)
        if parsed is not None:
            eds = True
            host = parsed[2]
            info = resolver.service_by_host(host)
            if info is not None:
                service_host, service_name = info.host, info.name
            else:
                service_host, service_name = host, host.split(".", 1)[0]
            if resolved is None or not resolved.has_proxy:
                # A ServiceEntry's own endpoint at a pod's address is that entry's endpoint, not the pod:
                # with no metadata exchange (no sidecar there), its metadata is all istio-proxy knows.
                own = resolver.entry_endpoint(host, upstream_ip) if upstream_ip else None
                if own is not None:
                    metadata_peer = own
    peer = _upstream_peer(metadata_peer, eds=eds, tcp=tcp, peer_san=peer_san)
    values = _outbound_values(me, peer, peer_san, local_san, service_host, service_name)
    graph = None
    if peer is not resolved:
        graph = _outbound_values(me, resolved, peer_san, local_san, service_host, service_name)
    return PeerLabels(values, resolved, None, graph)


def _inbound_values(
    me: Workload, peer: Workload | None, peer_san: str, local_san: str, service_host: str, service_name: str
) -> tuple[str, ...]:
    peer_ns = (istio.namespace_of_principal(peer_san) if peer_san else None) or (
        peer.namespace if peer is not None else ""
    )
    return (
        istio.DESTINATION,
        (peer.name or U) if peer is not None else U,
        peer.canonical_service if peer is not None else U,
        peer.canonical_revision if peer is not None else istio.LATEST,
        peer_ns or U,
        peer_san or U,
        peer.app if peer is not None else U,
        peer.version if peer is not None else U,
        (peer.cluster or U) if peer is not None else U,
        me.name or U,
        me.namespace or U,
        local_san or U,
        _own_app(me),
        _own_version(me),
        service_host or U,
        me.canonical_service,
        me.canonical_revision,
        service_name or U,
        me.namespace or U,
        me.cluster or U,
    )


def peer_labels_inbound(
    resolver: PeerResolver,
    me: Workload,
    proxy: object,
    *,
    cluster: str,
    local_port: int | None,
    downstream_ip: str,
    peer_san: str,
    local_san: str,
    tcp: bool = False,
) -> PeerLabels:
    """Labels reported by a server sidecar (inbound): reporter=destination."""
    resolved = resolver.workload_by_ip(downstream_ip) if downstream_ip else None
    port = _inbound_port(cluster) if cluster else None
    if port is None:
        port = local_port
    info = resolver.inbound_service(proxy, port) if port is not None else None  # type: ignore[arg-type]
    if info is not None:
        service_host, service_name = info.host, info.name
    else:
        # No service metadata and no Host header fallback: istio-proxy uses the canonical name.
        service_host = service_name = me.canonical_service
    # Only metadata exchange tells a server who its client is: the client needs a sidecar, and over TCP
    # the exchange rides on mTLS.
    known = resolved is not None and resolved.has_proxy and (not tcp or bool(peer_san))
    peer = resolved if known else None
    values = _inbound_values(me, peer, peer_san, local_san, service_host, service_name)
    graph = None
    if resolved is not None and not known:
        graph = _inbound_values(me, resolved, peer_san, local_san, service_host, service_name)
    return PeerLabels(values, resolved, bool(peer_san) and bool(local_san), graph)
