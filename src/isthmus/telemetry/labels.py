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
- unknown peers give "unknown" everywhere, except canonical revisions, which default to "latest".
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


@dataclass(frozen=True, slots=True)
class PeerLabels:
    values: tuple[str, ...]  # PEER_LABELS order
    peer: Workload | None  # the other side, if known
    mtls: bool | None  # connection_security_policy: True/False (destination), None (source: unknown)

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
) -> PeerLabels:
    """Labels reported by a client proxy (sidecar outbound or gateway): reporter=source."""
    peer = resolver.workload_by_ip(upstream_ip) if upstream_ip else None
    service_host = authority if host_header_fallback else ""
    service_name = service_host
    if route_name == "block_all":
        service_name = "BlackHoleCluster"
    elif route_name == "allow_any":
        service_name = "PassthroughCluster"
    elif cluster in _SPECIAL_CLUSTERS:
        service_name = cluster
    elif cluster:
        parsed = _parse_outbound(cluster)
        if parsed is not None:
            host = parsed[2]
            info = resolver.service_by_host(host)
            if info is not None:
                service_host, service_name = info.host, info.name
            else:
                service_host, service_name = host, host.split(".", 1)[0]
    peer_ns = (istio.namespace_of_principal(peer_san) if peer_san else None) or (
        peer.namespace if peer is not None else ""
    )
    values = (
        istio.SOURCE,
        me.name or U,
        me.canonical_service,
        me.canonical_revision,
        me.namespace or U,
        local_san or U,
        me.app,
        me.version,
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
    return PeerLabels(values, peer, None)


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
) -> PeerLabels:
    """Labels reported by a server sidecar (inbound): reporter=destination."""
    peer = resolver.workload_by_ip(downstream_ip) if downstream_ip else None
    port = _inbound_port(cluster) if cluster else None
    if port is None:
        port = local_port
    info = resolver.inbound_service(proxy, port) if port is not None else None  # type: ignore[arg-type]
    if info is not None:
        service_host, service_name = info.host, info.name
    else:
        # No service metadata and no Host header fallback: istio-proxy uses the canonical name.
        service_host = service_name = me.canonical_service
    peer_ns = (istio.namespace_of_principal(peer_san) if peer_san else None) or (
        peer.namespace if peer is not None else ""
    )
    values = (
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
        me.app,
        me.version,
        service_host or U,
        me.canonical_service,
        me.canonical_revision,
        service_name or U,
        me.namespace or U,
        me.cluster or U,
    )
    return PeerLabels(values, peer, bool(peer_san) and bool(local_san))
