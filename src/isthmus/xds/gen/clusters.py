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
from isthmus.model.durations import to_seconds
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import InboundPort, Snapshot
from isthmus.registry.types import Protocol, Resolution, Service, ServicePort
from isthmus.xds.gen import naming
from isthmus.xds.gen import protos as p


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
    for svc in snapshot.visible_services(proxy.namespace):
        cur = chosen.get(svc.hostname)
        key = (svc.namespace != proxy.namespace, not svc.is_kubernetes, svc.creation_order)
        if cur is None or key < (cur.namespace != proxy.namespace, not cur.is_kubernetes, cur.creation_order):
            chosen[svc.hostname] = svc
    return sorted(chosen.values(), key=lambda s: s.hostname)


def specs_by_name(snapshot: Snapshot, proxy: Proxy) -> dict[str, ClusterSpec]:
    return {s.name: s for s in outbound_cluster_specs(snapshot, proxy)}


# --- policy translation ------------------------------------------------------------------------


def _default_thresholds() -> p.circuit_breaker.CircuitBreakers.Thresholds:
    return p.circuit_breaker.CircuitBreakers.Thresholds(
        max_connections=p.u32(p.MAX_UINT32),
        max_pending_requests=p.u32(p.MAX_UINT32),
        max_requests=p.u32(p.MAX_UINT32),
        max_retries=p.u32(p.MAX_UINT32),
        track_remaining=True,
    )


_SIMPLE_LB = {
    "ROUND_ROBIN": p.cluster.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": p.cluster.Cluster.LEAST_REQUEST,
    "LEAST_CONN": p.cluster.Cluster.LEAST_REQUEST,
    "RANDOM": p.cluster.Cluster.RANDOM,
}


def _apply_load_balancer(c: p.cluster.Cluster, lb: Any | None) -> None:
    c.lb_policy = p.cluster.Cluster.LEAST_REQUEST
    if lb is None:
        return
    ch = lb.consistent_hash
    if ch is not None:
        if ch.maglev is not None:
            c.lb_policy = p.cluster.Cluster.MAGLEV
            if ch.maglev.table_size:
                c.maglev_lb_config.table_size.value = int(ch.maglev.table_size)
        elif ch.ring_hash is not None:
            c.lb_policy = p.cluster.Cluster.RING_HASH
            if ch.ring_hash.minimum_ring_size:
                c.ring_hash_lb_config.minimum_ring_size.value = int(ch.ring_hash.minimum_ring_size)
        else:
            c.lb_policy = p.cluster.Cluster.RING_HASH
            c.ring_hash_lb_config.minimum_ring_size.value = int(ch.minimum_ring_size or 1024)
        return
    simple = lb.simple
    if simple in _SIMPLE_LB:
        c.lb_policy = _SIMPLE_LB[simple]
    elif simple == "PASSTHROUGH":
        # There is no original destination for an explicit-proxy request; pick as DNS round robin would.
        c.lb_policy = p.cluster.Cluster.RANDOM
    warmup = lb.warmup
    window = None
    aggression = 1.0
    min_percent = 10.0
    if warmup is not None:
        window = to_seconds(warmup.duration)
        if warmup.aggression is not None:
            aggression = float(warmup.aggression)
        if warmup.minimum_percent is not None:
            min_percent = float(warmup.minimum_percent)
    elif lb.warmup_duration_secs is not None:
        window = to_seconds(lb.warmup_duration_secs)
    if window is not None and c.lb_policy in (p.cluster.Cluster.ROUND_ROBIN, p.cluster.Cluster.LEAST_REQUEST):
        target = (
            c.round_robin_lb_config
            if c.lb_policy == p.cluster.Cluster.ROUND_ROBIN
            else c.least_request_lb_config
        )
        target.slow_start_config.slow_start_window.CopyFrom(p.duration(window))
        target.slow_start_config.aggression.default_value = aggression
        target.slow_start_config.aggression.runtime_key = "("
        target.slow_start_config.min_weight_percent.value = min_percent


def _apply_connection_pool(
    c: p.cluster.Cluster,
    opts: p.http_options.HttpProtocolOptions,
    settings: Any | None,
    mesh_tcp_keepalive: Any,
) -> None:
    threshold = _default_thresholds()
    if settings is not None:
        http = settings.http
        tcp = settings.tcp
        idle = None
        if http is not None:
            if http.http2_max_requests:
                threshold.max_requests.value = int(http.http2_max_requests)
            if http.http1_max_pending_requests:
                threshold.max_pending_requests.value = int(http.http1_max_pending_requests)
            if http.max_retries:
                threshold.max_retries.value = int(http.max_retries)
            if http.idle_timeout is not None:
                idle = to_seconds(http.idle_timeout)
            if http.max_requests_per_connection:
                opts.common_http_protocol_options.max_requests_per_connection.value = int(
                    http.max_requests_per_connection
                )
        if tcp is not None:
            if tcp.connect_timeout is not None:
                c.connect_timeout.CopyFrom(p.duration(to_seconds(tcp.connect_timeout)))
            if tcp.max_connections:
                threshold.max_connections.value = int(tcp.max_connections)
            if tcp.max_connection_duration is not None:
                opts.common_http_protocol_options.max_connection_duration.CopyFrom(
                    p.duration(to_seconds(tcp.max_connection_duration))
                )
            if idle is None and tcp.idle_timeout is not None:
                idle = to_seconds(tcp.idle_timeout)
            _apply_tcp_keepalive(c, tcp.tcp_keepalive or mesh_tcp_keepalive)
        elif mesh_tcp_keepalive is not None:
            _apply_tcp_keepalive(c, mesh_tcp_keepalive)
        if idle is not None:
            opts.common_http_protocol_options.idle_timeout.CopyFrom(p.duration(idle))
    elif mesh_tcp_keepalive is not None:
        _apply_tcp_keepalive(c, mesh_tcp_keepalive)
    c.circuit_breakers.thresholds.append(threshold)


def _apply_tcp_keepalive(c: p.cluster.Cluster, ka: Any | None) -> None:
    if ka is None:
        return
    out = c.upstream_connection_options.tcp_keepalive
    if ka.probes:
        out.keepalive_probes.value = int(ka.probes)
    if ka.time is not None:
        out.keepalive_time.value = int(to_seconds(ka.time))
    if ka.interval is not None:
        out.keepalive_interval.value = int(to_seconds(ka.interval))
    if not (ka.probes or ka.time is not None or ka.interval is not None):
        c.upstream_connection_options.tcp_keepalive.SetInParent()


def _apply_outlier_detection(c: p.cluster.Cluster, od: Any | None) -> None:
    if od is None:
        return
    out = c.outlier_detection
    out.enforcing_success_rate.value = 0
    if od.consecutive_5xx_errors is not None:
        v = int(od.consecutive_5xx_errors)
        out.consecutive_5xx.value = v
        out.enforcing_consecutive_5xx.value = 100 if v > 0 else 0
    if od.consecutive_gateway_errors is not None:
        v = int(od.consecutive_gateway_errors)
        out.consecutive_gateway_failure.value = v
        out.enforcing_consecutive_gateway_failure.value = 100 if v > 0 else 0
    if od.interval is not None:
        out.interval.CopyFrom(p.duration(to_seconds(od.interval)))
    if od.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(p.duration(to_seconds(od.base_ejection_time)))
    if od.max_ejection_percent:
        out.max_ejection_percent.value = int(od.max_ejection_percent)
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if od.consecutive_local_origin_failures:
            out.consecutive_local_origin_failure.value = int(od.consecutive_local_origin_failures)
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    # Istio always sets the panic threshold with outlier detection; 0 turns Envoy's panic mode off.
    c.common_lb_config.healthy_panic_threshold.value = float(od.min_health_percent or 0)


def _set_protocol(
    opts: p.http_options.HttpProtocolOptions,
    port: ServicePort,
    policy: EffectivePolicy,
    sidecar: bool,
    mesh_h2_upgrade: str,
) -> None:
    http = policy.connection_pool.http if policy.connection_pool is not None else None
    if http is not None and http.use_client_protocol:
        opts.use_downstream_protocol_config.SetInParent()
        return
    h2 = port.protocol.is_http2
    if not h2 and port.protocol.is_http:
        upgrade = (http.h2_upgrade_policy if http is not None else None) or "DEFAULT"
        if upgrade == "DEFAULT":
            upgrade = mesh_h2_upgrade
        h2 = upgrade == "UPGRADE"
    if h2:
        opts.explicit_http_config.http2_protocol_options.SetInParent()
        if http is not None and http.max_concurrent_streams:
            opts.explicit_http_config.http2_protocol_options.max_concurrent_streams.value = int(
                http.max_concurrent_streams
            )
        return
    if port.protocol is Protocol.AUTO and sidecar:
        opts.use_downstream_protocol_config.SetInParent()
        return
    opts.explicit_http_config.http_protocol_options.SetInParent()


def _metadata(c: p.cluster.Cluster, spec: ClusterSpec) -> None:
    istio: dict[str, Any] = {
        "services": [
            {"host": spec.service.hostname, "name": spec.service.name, "namespace": spec.service.namespace}
        ],
        "default_original_port": spec.port.port,
    }
    if spec.dr is not None:
        istio["config"] = spec.dr.config_path
    if spec.subset:
        istio["subset"] = spec.subset
    if spec.service.mesh_external:
        istio["external"] = True
    c.metadata.filter_metadata["istio"].CopyFrom(p.struct(istio))


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
        # Plaintext passthrough: TLS, if any, is the app's own inside a CONNECT tunnel.
        typed_config=p.pack(
            p.dfp_cluster.ClusterConfig(
                dns_cache_config=dns_cache_config(dns_refresh_s), allow_insecure_cluster_options=True
            )
        ),
    )


def build_outbound_cluster(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> p.cluster.Cluster:
    mesh = snapshot.mesh
    svc = spec.service
    c = p.cluster.Cluster(name=spec.name, connect_timeout=p.duration(mesh.connect_timeout_s))
    opts = p.http_options.HttpProtocolOptions()
    if svc.resolution is Resolution.PASSTHROUGH:
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
        from isthmus.xds.gen.endpoints import load_assignment

        c.load_assignment.CopyFrom(load_assignment(snapshot, proxy, spec))
        _apply_load_balancer(c, spec.policy.load_balancer)
    else:
        c.type = p.cluster.Cluster.EDS
        c.eds_cluster_config.service_name = spec.name
        c.eds_cluster_config.eds_config.CopyFrom(p.ads_config_source())
        _apply_load_balancer(c, spec.policy.load_balancer)
    c.common_lb_config.SetInParent()
    _apply_connection_pool(c, opts, spec.policy.connection_pool, mesh.tcp_keepalive)
    _apply_outlier_detection(c, spec.policy.outlier_detection)
    if spec.port.protocol.is_http or spec.port.protocol is Protocol.AUTO:
        _set_protocol(opts, spec.port, spec.policy, proxy.kind == "sidecar", mesh.h2_upgrade_policy)
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
            p.pack(opts)
        )
    elif opts.HasField("common_http_protocol_options"):
        opts.explicit_http_config.http_protocol_options.SetInParent()
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
            p.pack(opts)
        )
    _metadata(c, spec)
    return c


def build_inbound_cluster(snapshot: Snapshot, proxy: Proxy, inbound: InboundPort) -> p.cluster.Cluster:
    """`inbound|port||`: to the app on 127.0.0.1, with only the DR's connectionPool (as Istio)."""
    name = naming.inbound_cluster(inbound.port)
    c = p.cluster.Cluster(
        name=name,
        type=p.cluster.Cluster.STATIC,
        connect_timeout=p.duration(snapshot.mesh.connect_timeout_s),
    )
    c.load_assignment.cluster_name = name
    c.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
        p.socket_address("127.0.0.1", inbound.app_port)
    )
    c.common_lb_config.SetInParent()
    pool = None
    if inbound.services:
        svc, sp = inbound.services[0]
        dr = snapshot.destination_rules.lookup(proxy.namespace, {}, svc.hostname, svc.namespace)
        pool = effective_policy(dr, sp.port, None).connection_pool
    opts = p.http_options.HttpProtocolOptions()
    _apply_connection_pool(c, opts, pool, snapshot.mesh.tcp_keepalive)
    if inbound.protocol.is_http2:
        opts.explicit_http_config.http2_protocol_options.SetInParent()
    elif inbound.protocol is Protocol.AUTO:
        opts.use_downstream_protocol_config.SetInParent()
    else:
        opts.explicit_http_config.http_protocol_options.SetInParent()
    c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        p.pack(opts)
    )
    return c


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
    opts.use_downstream_protocol_config.SetInParent()
    opts.common_http_protocol_options.idle_timeout.CopyFrom(p.duration(300))
    c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        p.pack(opts)
    )
    c.circuit_breakers.thresholds.append(_default_thresholds())
    return c


def build_clusters(snapshot: Snapshot, proxy: Proxy) -> list[p.cluster.Cluster]:
    out = [build_outbound_cluster(snapshot, proxy, spec) for spec in outbound_cluster_specs(snapshot, proxy)]
    out.append(blackhole_cluster(snapshot))
    out.append(passthrough_cluster(snapshot))
    if proxy.kind == "sidecar":
        out.extend(build_inbound_cluster(snapshot, proxy, ib) for ib in snapshot.inbound_ports(proxy))
    return out
