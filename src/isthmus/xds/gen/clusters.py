"""CDS: outbound clusters per visible service port and subset, inbound clusters, and the special ones.

Translation follows istiod's cluster builder (`pilot/pkg/networking/core/cluster*.go`): default LB
LEAST_REQUEST, circuit breakers at MaxUint32 with track_remaining, DestinationRule policy layering,
EDS for registry services, STRICT_DNS for DNS ServiceEntries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.model.destination_rules import EffectivePolicy, MergedDestinationRule, effective_policy
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import InboundPort, Snapshot
from isthmus.registry.types import Protocol, Resolution, Service, ServicePort
from isthmus.xds.gen import connection_settings, headless, locality, naming, proxy_headers, tls, zone_aware
from isthmus.xds.gen import protos as p
from isthmus.xds.gen import traffic_policy as tp
from isthmus.xds.gen.endpoints import INLINE_ASSIGNMENT, load_assignment, packed_assignment
from isthmus.xds.gen.guard import guarded
from isthmus.xds.gen.scope import scope_key, shared_memo


@dataclass(frozen=True)
class ClusterSpec:
    """What one outbound cluster stands for; shared by CDS and EDS generation."""

    name: str
    service: Service
    port: ServicePort
    subset: str
    subset_labels: Mapping[str, str] | None
    policy: EffectivePolicy
    dr: MergedDestinationRule | None


def outbound_cluster_specs(snapshot: Snapshot, proxy: Proxy) -> list[ClusterSpec]:
    return shared_memo(
        snapshot,
        ("cluster_specs", scope_key(snapshot, proxy)),
        proxy,
        lambda: _cluster_specs(snapshot, proxy),
    )


def _cluster_specs(snapshot: Snapshot, proxy: Proxy) -> list[ClusterSpec]:
    scope = snapshot.scope(proxy) if proxy.kind == "sidecar" else None
    if scope is not None:
        entries = [(s.service, s.ports) for s in scope.services]
    else:
        entries = [(svc, svc.ports) for svc in _gateway_services(snapshot, proxy)]
    out: list[ClusterSpec] = []
    for svc, ports in entries:
        dr = snapshot.destination_rule(proxy, svc)
        for port in ports:
            if port.protocol is Protocol.UDP:
                continue
            out.append(
                ClusterSpec(
                    name=naming.outbound_cluster(port.port, "", svc.hostname),
                    service=svc,
                    port=port,
                    subset="",
                    subset_labels=None,
                    policy=effective_policy(dr, port.port, None),
                    dr=dr,
                )
            )
            if dr is None:
                continue
            for subset in dr.subsets:
                out.append(
                    ClusterSpec(
                        name=naming.outbound_cluster(port.port, subset.name, svc.hostname),
                        service=svc,
                        port=port,
                        subset=subset.name,
                        subset_labels=dict(subset.labels or {}),
                        policy=effective_policy(dr, port.port, subset.name),
                        dr=dr,
                    )
                )
    return out


def _gateway_services(snapshot: Snapshot, proxy: Proxy) -> list[Service]:
    """Gateways see every service visible to their namespace, one per hostname."""
    chosen: dict[str, Service] = {}
    for svc in snapshot.routable_services(proxy.namespace):
        cur = chosen.get(svc.hostname)
        key = (svc.namespace != proxy.namespace, not svc.is_kubernetes, svc.creation_order)
        if cur is None or key < (cur.namespace != proxy.namespace, not cur.is_kubernetes, cur.creation_order):
            chosen[svc.hostname] = svc
    return sorted(chosen.values(), key=lambda s: s.hostname)


def specs_by_name(snapshot: Snapshot, proxy: Proxy) -> dict[str, ClusterSpec]:
    return snapshot.memo(
        ("cluster_specs_by_name", scope_key(snapshot, proxy)),
        lambda: {s.name: s for s in outbound_cluster_specs(snapshot, proxy)},
    )


def missing_cluster(snapshot: Snapshot, proxy: Proxy, cluster: str) -> str | None:
    """Why an extension provider's `cluster` is not in this proxy's CDS (None when it is)."""
    if cluster in specs_by_name(snapshot, proxy):
        return None
    return (
        f"cluster {cluster} is not in this proxy's config (the service has no such port, or a Sidecar's "
        "egress hosts leave it out)"
    )


def _metadata(c: p.cluster.Cluster, spec: ClusterSpec) -> None:
    """`istio` filter metadata: services, default_original_port, config, subset, external (as istiod).
    Filled field by field (no dict -> Struct walk): it is on every cluster."""
    fields = c.metadata.filter_metadata["istio"].fields
    svc = spec.service
    _add_service(fields["services"].list_value.values, svc)
    fields["default_original_port"].number_value = spec.port.port
    if spec.dr is not None:
        fields["config"].string_value = spec.dr.config_path
        # istiod's AddALPNOverrideToMetadata: a DestinationRule's own TLS (SIMPLE, MUTUAL) keeps the
        # application's ALPN; istio-proxy's istio.alpn filter reads this key (plain Envoy ignores it).
        tls_settings = spec.policy.tls
        if tls_settings is not None and tls_settings.mode in ("SIMPLE", "MUTUAL"):
            fields["alpn_override"].string_value = "false"
    if spec.subset:
        fields["subset"].string_value = spec.subset
    if svc.mesh_external:
        fields["external"].bool_value = True


def _stat_name_pattern(snapshot: Snapshot, field: str) -> str | None:
    """MeshConfig outboundClusterStatName / inboundClusterStatName (empty: Envoy names the stats after
    the cluster)."""
    spec = snapshot.mesh.spec
    return (getattr(spec, field, None) or None) if spec is not None else None


def alt_stat_name(pattern: str, svc: Service, subset: str, port: ServicePort) -> str:
    """istiod's telemetry.BuildStatPrefix: the cluster's `alt_stat_name` from a MeshConfig
    *ClusterStatName pattern. %SERVICE% is `<name>.<namespace>` for a Kubernetes Service, else the host.
    istiod appends a `;` when EnableDelimitedStatsTagRegex is on, for istio-proxy's stats tag regexes;
    plain Envoy has none of those, so the name is kept as the pattern gives it."""
    return build_stat_prefix(pattern, svc.hostname, svc, subset, port.port, port.name)


def build_stat_prefix(pattern: str, host: str, svc: Service, subset: str, port: int, port_name: str) -> str:
    """telemetry.BuildStatPrefix for `host` (the service's, or a route destination's as written) on a port
    given by number and name: %SERVICE% is `<name>.<namespace>` for a Kubernetes Service (shortHostName),
    else the host; unknown %...% patterns stay as they are."""
    short = f"{svc.name}.{svc.namespace}" if svc.is_kubernetes else host
    out = pattern.replace("%SERVICE%", short)
    out = out.replace("%SERVICE_FQDN%", host)
    out = out.replace("%SUBSET_NAME%", subset)
    out = out.replace("%SERVICE_PORT%", str(port))
    return out.replace("%SERVICE_PORT_NAME%", port_name)


def outbound_stat_name_pattern(snapshot: Snapshot) -> str | None:
    """MeshConfig outboundClusterStatName (None when unset)."""
    return _stat_name_pattern(snapshot, "outbound_cluster_stat_name")


def inbound_stat_name(snapshot: Snapshot, inbound: InboundPort) -> str | None:
    """MeshConfig inboundClusterStatName filled in from the (first) service on the port (istiod's
    BuildInboundStatPrefix): the inbound cluster's `alt_stat_name` and the stat_prefix of the port's
    tcp_proxy (buildInboundNetworkFilters). None without the pattern or a service."""
    pattern = _stat_name_pattern(snapshot, "inbound_cluster_stat_name")
    if pattern is None or not inbound.services:
        return None
    svc, sp = inbound.services[0]
    return alt_stat_name(pattern, svc, "", sp)


def dns_cache_config(dns_refresh_s: float) -> p.dns_cache.DnsCacheConfig:
    return p.dns_cache.DnsCacheConfig(
        name=naming.DFP_CACHE,
        dns_lookup_family=p.cluster.Cluster.V4_ONLY,
        typed_dns_resolver_config=p.getaddrinfo_resolver(),
        dns_refresh_rate=p.duration(dns_refresh_s),
    )


def _dfp_cluster_type(dns_refresh_s: float) -> p.cluster.Cluster.CustomClusterType:
    return p.cluster.Cluster.CustomClusterType(
        name="envoy.clusters.dynamic_forward_proxy",
        # Envoy forces auto SNI/SAN on a cluster without HTTP protocol options; tls.py gives TLS ones
        # explicit options so the DestinationRule's (or auto mTLS) SNI and SANs hold.
        typed_config=p.pack(
            p.dfp_cluster.ClusterConfig(
                dns_cache_config=dns_cache_config(dns_refresh_s), allow_insecure_cluster_options=True
            )
        ),
    )


def _base_key(proxy: Proxy, spec: ClusterSpec) -> tuple | None:
    """What the service-independent part of an EDS cluster depends on (None: build it whole).

    The policy blocks are compared by identity: subsets of one DestinationRule share their base's objects,
    and services without a DestinationRule share the empty policy."""
    if spec.service.resolution in _NOT_EDS:
        return None
    pol = spec.policy
    return (
        id(pol.load_balancer),
        id(pol.connection_pool),
        id(pol.outlier_detection),
        id(pol.retry_budget),
        spec.port.protocol,
        proxy.kind,
        # locality_weighted_lb_config follows the service's trafficDistribution too (locality.py).
        spec.service.traffic_distribution,
        # zone_aware_lb_config only for proxies with the self-discovery local cluster.
        zone_aware.self_discovery(proxy),
    )


_NOT_EDS = (Resolution.PASSTHROUGH, Resolution.DYNAMIC_DNS, *INLINE_ASSIGNMENT)


def _resolves_authority(svc: Service, proxy: Proxy) -> bool:
    """Whether the service's cluster is the dynamic forward proxy one, which resolves the request's
    authority (populated by the sidecar outbound HCM's dynamic_forward_proxy filter): DYNAMIC_DNS, and
    passthrough (resolution NONE) where istiod has ORIGINAL_DST. Not for a passthrough service on a
    gateway: istiod's convertResolution falls back to EDS there (a gateway has no original destination),
    and gateway HCMs have no filter to resolve hosts for such a cluster."""
    if svc.resolution is Resolution.DYNAMIC_DNS:
        return True
    return svc.resolution is Resolution.PASSTHROUGH and proxy.kind != "gateway"


def any_resolves_authority(snapshot: Snapshot, proxy: Proxy) -> bool:
    """Whether proxies of this kind may have a dynamic forward proxy cluster other than the
    PassthroughCluster: some service's cluster resolves the request's authority for them. Once per
    snapshot and proxy kind."""
    return snapshot.memo(
        ("any_resolves_authority", proxy.kind),
        lambda: any(
            _resolves_authority(svc, proxy)
            for services in snapshot.registry.by_host.values()
            for svc in services
        ),
    )


def _build_base(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> p.cluster.Cluster:
    """Everything of an outbound cluster but its name, EDS service name, metadata and TLS."""
    mesh = snapshot.mesh
    svc = spec.service
    c = p.cluster.Cluster(connect_timeout=p.duration(mesh.connect_timeout_s))
    opts = p.http_options.HttpProtocolOptions()
    if _resolves_authority(svc, proxy):
        # Explicit-proxy mode has no original destination: resolve the request's authority instead.
        c.cluster_type.CopyFrom(_dfp_cluster_type(mesh.dns_refresh_rate_s))
        c.lb_policy = p.cluster.Cluster.CLUSTER_PROVIDED
    elif svc.resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN):
        c.type = (
            p.cluster.Cluster.STRICT_DNS
            if svc.resolution is Resolution.DNS
            else p.cluster.Cluster.LOGICAL_DNS
        )
        c.respect_dns_ttl = True
        c.dns_refresh_rate.CopyFrom(p.duration(mesh.dns_refresh_rate_s))
        c.dns_lookup_family = p.cluster.Cluster.V4_ONLY
        c.typed_dns_resolver_config.CopyFrom(p.getaddrinfo_resolver())
        c.load_assignment.CopyFrom(load_assignment(snapshot, proxy, spec))
        tp.apply_load_balancer(c, spec.policy.load_balancer)
    else:
        c.type = p.cluster.Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(p.ads_config_source())
        tp.apply_load_balancer(c, spec.policy.load_balancer)
    c.common_lb_config.SetInParent()
    za = zone_aware.setting(spec.policy, proxy)
    if za is not None:
        # Envoy takes one locality_config_specifier: zone-aware routing replaces locality weights.
        zone_aware.apply_cluster(c, za)
    elif locality.weighted_lb_config(mesh.locality_lb_setting, spec.policy, spec.service):
        c.common_lb_config.locality_weighted_lb_config.SetInParent()
    tp.apply_connection_pool(
        c, opts, spec.policy.connection_pool, mesh.tcp_keepalive, spec.policy.retry_budget
    )
    tp.apply_outlier_detection(c, opts, spec.policy.outlier_detection)
    if spec.port.protocol.is_http or spec.port.protocol is Protocol.AUTO:
        tp.set_protocol(opts, spec.port, spec.policy, proxy.kind == "sidecar", mesh.h2_upgrade_policy)
        http = spec.policy.connection_pool.http if spec.policy.connection_pool is not None else None
        ucp = http is not None and bool(http.use_client_protocol)
        if proxy_headers.upstream_preserves_case(snapshot, True, ucp):
            proxy_headers.preserve_upstream_header_case(opts)
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
            p.pack(opts)
        )
    elif opts.HasField("common_http_protocol_options"):
        opts.explicit_http_config.http_protocol_options.SetInParent()
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
            p.pack(opts)
        )
    return c


def build_outbound_cluster(
    snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec, bases: dict[tuple, p.cluster.Cluster] | None = None
) -> p.cluster.Cluster | None:
    """One outbound cluster (None: not built). With `bases` (one dict per build of a scope's clusters), EDS
    clusters of the same policy, protocol and proxy kind copy a prototype instead of building the same
    sub-messages again."""
    key = _base_key(proxy, spec) if bases is not None else None
    if key is None:
        c = _build_base(snapshot, proxy, spec)
        if c.HasField("load_assignment") and not c.load_assignment.endpoints:
            # istiod's buildCluster: a DNS cluster without endpoints (a subset no host matches) is not built.
            return None
    else:
        proto = bases.get(key)
        if proto is None:
            proto = bases[key] = _build_base(snapshot, proxy, spec)
        c = p.cluster.Cluster()
        c.CopyFrom(proto)
    c.name = spec.name
    _apply_buffer_limit(snapshot, proxy, c)
    if c.type == p.cluster.Cluster.EDS and c.HasField("eds_cluster_config"):
        c.eds_cluster_config.service_name = spec.name
    if c.type == p.cluster.Cluster.EDS and headless.pins_pods(spec.service):
        headless.apply_subset_lb(c)
    pattern = _stat_name_pattern(snapshot, "outbound_cluster_stat_name")
    if pattern is not None:
        c.alt_stat_name = alt_stat_name(pattern, spec.service, spec.subset, spec.port)
    _metadata(c, spec)
    tls.apply_upstream_tls(snapshot, proxy, c, spec)
    tls.apply_upstream_proxy_protocol(c, spec.policy.proxy_protocol)
    return c


def _apply_buffer_limit(snapshot: Snapshot, proxy: Proxy, c: p.cluster.Cluster) -> None:
    """ProxyConfig connectionSettings clusterPerConnectionBufferLimitBytes (or the EDGE profile's)."""
    limit = connection_settings.cluster_buffer_limit(snapshot, proxy)
    if limit is not None:
        c.per_connection_buffer_limit_bytes.value = limit


def build_inbound_cluster(snapshot: Snapshot, proxy: Proxy, inbound: InboundPort) -> p.cluster.Cluster:
    """`inbound|port||`: to the app on 127.0.0.1, with only a connection pool: the Sidecar's
    inboundConnectionPool, else the DestinationRule's (as Istio)."""
    name = naming.inbound_cluster(inbound.port)
    c = p.cluster.Cluster(
        name=name,
        type=p.cluster.Cluster.STATIC,
        connect_timeout=p.duration(snapshot.mesh.connect_timeout_s),
    )
    c.load_assignment.cluster_name = name
    c.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(_inbound_address(inbound))
    _apply_buffer_limit(snapshot, proxy, c)
    c.common_lb_config.SetInParent()
    pool = None
    if not inbound.services and inbound.sidecar is not None:
        _sidecar_ingress_metadata(c, inbound)
    if inbound.services:
        svc, sp = inbound.services[0]
        _inbound_metadata(c, inbound)
        stat_name = inbound_stat_name(snapshot, inbound)
        if stat_name is not None:
            c.alt_stat_name = stat_name
        dr = snapshot.destination_rules.lookup(proxy.namespace, {}, svc.hostname, svc.namespace)
        if dr is not None and dr.traffic_policy is not None:
            pool = effective_policy(dr, sp.port, None).connection_pool
            c.metadata.filter_metadata["istio"].fields["config"].string_value = dr.config_path
    sidecar_pool = _sidecar_inbound_pool(snapshot, proxy, inbound.port)
    if sidecar_pool is not None:
        # The Sidecar's pool replaces the DestinationRule's for inbound traffic (it resolves the ambiguity
        # of several services on one port).
        pool = sidecar_pool
    opts = p.http_options.HttpProtocolOptions()
    tp.apply_connection_pool(c, opts, pool, snapshot.mesh.tcp_keepalive)
    if inbound.protocol.is_http2:
        opts.explicit_http_config.http2_protocol_options.SetInParent()
    elif inbound.protocol is Protocol.AUTO:
        tp.use_downstream_protocol(opts)
    else:
        opts.explicit_http_config.http_protocol_options.SetInParent()
    if _use_client_protocol(pool):
        # istiod's buildInboundCluster: buildCluster sets the port's protocol first, then applyTrafficPolicy
        # runs applyConnectionPool with the DestinationRule's (or Sidecar's) pool, whose useClientProtocol
        # calls setUseDownstreamProtocol: the app gets the protocol the client sidecar (or gateway) used,
        # on HTTP and HTTP/2 ports too (routing.go gatewayCases 'client protocol - ... use client with ...').
        tp.use_downstream_protocol(opts)
    if _inbound_preserves_case(snapshot, inbound.protocol, pool):
        proxy_headers.preserve_upstream_header_case(opts)
    c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        p.pack(opts)
    )
    return c


def _inbound_preserves_case(snapshot: Snapshot, protocol: Protocol, pool: Any | None) -> bool:
    """proxyHeaders preserveHttp1HeaderCase on `inbound|port||` (istiod's buildInboundCluster goes through
    setUpstreamProtocol too): HTTP/1 and sniffed ports. A pool's useClientProtocol makes applyConnectionPool's
    setUseDownstreamProtocol replace the HTTP/1 options with empty ones."""
    http1 = protocol is Protocol.AUTO or (protocol.is_http and not protocol.is_http2)
    return proxy_headers.upstream_preserves_case(snapshot, http1, _use_client_protocol(pool))


def _use_client_protocol(pool: Any | None) -> bool:
    """Whether an inbound connection pool asks for the client's protocol (useClientProtocol)."""
    http = pool.http if pool is not None else None
    return http is not None and bool(http.use_client_protocol)


def _inbound_address(inbound: InboundPort) -> Any:
    """The app: 127.0.0.1 on its private port, or a Sidecar ingress defaultEndpoint's unix socket."""
    return p.build_address(inbound.app_address, inbound.app_port)


def _sidecar_inbound_pool(snapshot: Snapshot, proxy: Proxy, port: int) -> Any | None:
    """istiod's InboundConnectionPoolForPort: the ingress listener's pool for that port, else the Sidecar's
    inboundConnectionPool."""
    sidecar = snapshot.sidecar_resource(proxy)
    if sidecar is None:
        return None
    for ingress in sidecar.spec.ingress or ():
        if ingress.port is not None and ingress.port.number == port and ingress.connection_pool is not None:
            return ingress.connection_pool
    return sidecar.spec.inbound_connection_pool


def _inbound_metadata(c: p.cluster.Cluster, inbound: InboundPort) -> None:
    """istiod's addTelemetryMetadata for inbound clusters: each service on the port, once per host."""
    services = c.metadata.filter_metadata["istio"].fields["services"].list_value.values
    seen: set[str] = set()
    for svc, _ in inbound.services:
        if svc.hostname in seen:
            continue
        seen.add(svc.hostname)
        _add_service(services, svc)


def _sidecar_ingress_metadata(c: p.cluster.Cluster, inbound: InboundPort) -> None:
    """istiod's findOrCreateService: a Sidecar ingress port that no service targets is described by a
    synthetic service named after the Sidecar (`<name>.<namespace>`)."""
    entry = c.metadata.filter_metadata["istio"].fields["services"].list_value.values.add().struct_value.fields
    entry["host"].string_value = inbound.sidecar_host or ""
    entry["name"].string_value = inbound.sidecar.name if inbound.sidecar is not None else ""
    entry["namespace"].string_value = inbound.sidecar.namespace if inbound.sidecar is not None else ""


def _add_service(values: Any, svc: Service) -> None:
    """One entry of the `services` list istiod's telemetry metadata carries (buildServiceMetadata)."""
    entry = values.add().struct_value.fields
    entry["host"].string_value = svc.hostname
    entry["name"].string_value = svc.name
    entry["namespace"].string_value = svc.namespace


def blackhole_cluster(snapshot: Snapshot) -> p.cluster.Cluster:
    return p.cluster.Cluster(
        name=naming.BLACKHOLE_CLUSTER,
        type=p.cluster.Cluster.STATIC,
        connect_timeout=p.duration(snapshot.mesh.connect_timeout_s),
    )


def passthrough_cluster(snapshot: Snapshot) -> p.cluster.Cluster:
    """ALLOW_ANY's destination: with an explicit proxy, the request's authority is resolved (DFP)."""
    c = p.cluster.Cluster(
        name=naming.PASSTHROUGH_CLUSTER,
        connect_timeout=p.duration(snapshot.mesh.connect_timeout_s),
        lb_policy=p.cluster.Cluster.CLUSTER_PROVIDED,
    )
    c.cluster_type.CopyFrom(_dfp_cluster_type(snapshot.mesh.dns_refresh_rate_s))
    opts = p.http_options.HttpProtocolOptions()
    tp.use_downstream_protocol(opts)
    opts.common_http_protocol_options.idle_timeout.CopyFrom(p.duration(300))
    c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        p.pack(opts)
    )
    c.circuit_breakers.thresholds.append(tp.default_thresholds())
    return c


def build_outbound_clusters(snapshot: Snapshot, proxy: Proxy) -> list[p.cluster.Cluster]:
    """What proxies of one scope share: outbound clusters and the special ones."""
    out = []
    bases: dict[tuple, p.cluster.Cluster] = {}
    for spec in outbound_cluster_specs(snapshot, proxy):
        c = guarded(
            snapshot,
            f"cluster {spec.name}",
            lambda spec=spec: build_outbound_cluster(snapshot, proxy, spec, bases),
        )
        if c is not None:
            out.append(c)
    out.append(blackhole_cluster(snapshot))
    out.append(passthrough_cluster(snapshot))
    return out


_MISSING = object()


def packed_outbound_clusters(snapshot: Snapshot, proxy: Proxy) -> dict[str, Any]:
    """build_outbound_clusters, packed by name. A cluster depends on the proxy only through its kind,
    whether it has the self-discovery local cluster (zone-aware load balancing) and, through its spec, the DestinationRule that applies to it (the spec's policy follows from the
    rule, port and subset): each packed cluster is built once per snapshot and shared by every scope
    that has it, so the server encodes it once. The registry and DR index own the service and rule for
    the snapshot's lifetime: their ids are stable keys."""
    shared: dict[tuple, Any] = snapshot.memo(("outbound_cluster_any",), dict)
    out: dict[str, Any] = {}
    bases: dict[tuple, p.cluster.Cluster] = {}
    for spec in outbound_cluster_specs(snapshot, proxy):
        # zone_aware_lb_config is only for proxies with the self-discovery local cluster.
        key = (spec.name, id(spec.service), id(spec.dr), proxy.kind, zone_aware.self_discovery(proxy))
        if spec.service.resolution in INLINE_ASSIGNMENT:
            # Its inline assignment follows the proxy's locality when locality load balancing applies:
            # the (shared, per snapshot) assignment object tells the variants apart.
            key += (id(packed_assignment(snapshot, proxy, spec)),)
        packed = shared.get(key, _MISSING)
        if packed is _MISSING:
            # A cluster that fails to build is left out (its error recorded once for the snapshot).
            c = guarded(
                snapshot,
                f"cluster {spec.name}",
                lambda spec=spec: build_outbound_cluster(snapshot, proxy, spec, bases),
            )
            packed = shared[key] = p.pack(c) if c is not None else None
        if packed is not None:
            out[spec.name] = packed
    for name, build in (
        (naming.BLACKHOLE_CLUSTER, blackhole_cluster),
        (naming.PASSTHROUGH_CLUSTER, passthrough_cluster),
    ):
        out[name] = snapshot.memo(("special_cluster_any", name), lambda build=build: p.pack(build(snapshot)))
    return out


def build_inbound_clusters(snapshot: Snapshot, proxy: Proxy) -> list[p.cluster.Cluster]:
    """This proxy's own: `inbound|port||` to its app."""
    if proxy.kind != "sidecar":
        return []
    return [build_inbound_cluster(snapshot, proxy, ib) for ib in snapshot.inbound_ports(proxy)]
