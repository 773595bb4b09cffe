"""DestinationRule traffic policy -> Envoy cluster settings (`pilot/pkg/networking/core/cluster_traffic_policy.go`).

Load balancer (simple, consistent hash, warmup), connection pool (circuit breakers, HTTP options, TCP
keepalive), outlier detection, retry budget, and the upstream HTTP protocol choice.
"""

from __future__ import annotations

from typing import Any

from isthmus.model.destination_rules import EffectivePolicy
from isthmus.model.durations import to_seconds
from isthmus.registry.types import Protocol, ServicePort
from isthmus.xds.gen import protos as p

_DEFAULT_THRESHOLDS = p.circuit_breaker.CircuitBreakers.Thresholds(
    max_connections=p.u32(p.MAX_UINT32),
    max_pending_requests=p.u32(p.MAX_UINT32),
    max_requests=p.u32(p.MAX_UINT32),
    max_retries=p.u32(p.MAX_UINT32),
    track_remaining=True,
)


def default_thresholds() -> p.circuit_breaker.CircuitBreakers.Thresholds:
    """A fresh copy (callers modify it) of Istio's defaults: MaxUint32 everywhere, track_remaining."""
    out = p.circuit_breaker.CircuitBreakers.Thresholds()
    out.CopyFrom(_DEFAULT_THRESHOLDS)
    return out


_SIMPLE_LB = {
    "ROUND_ROBIN": p.cluster.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": p.cluster.Cluster.LEAST_REQUEST,
    "LEAST_CONN": p.cluster.Cluster.LEAST_REQUEST,
    "RANDOM": p.cluster.Cluster.RANDOM,
}


# Envoy's upper bound (cluster.proto: RingHashLbConfig.minimum_ring_size lte 8M). istiod checks a maglev
# tableSize (< 5000011) but passes ring sizes through unchecked, so a bigger one is accepted and the
# cluster NACKed; the largest size Envoy takes is the closest it can do.
MAX_RING_SIZE = 8_388_608


def apply_load_balancer(c: p.cluster.Cluster, lb: Any | None) -> None:
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
                size = min(int(ch.ring_hash.minimum_ring_size), MAX_RING_SIZE)
                c.ring_hash_lb_config.minimum_ring_size.value = size
        else:
            c.lb_policy = p.cluster.Cluster.RING_HASH
            size = min(int(ch.minimum_ring_size or 1024), MAX_RING_SIZE)
            c.ring_hash_lb_config.minimum_ring_size.value = size
        return
    simple = lb.simple
    if simple in _SIMPLE_LB:
        c.lb_policy = _SIMPLE_LB[simple]
    elif simple == "PASSTHROUGH":
        # There is no original destination for an explicit-proxy request; pick as DNS round robin would.
        c.lb_policy = p.cluster.Cluster.RANDOM
    warmup = lb.warmup
    if c.lb_policy not in (p.cluster.Cluster.ROUND_ROBIN, p.cluster.Cluster.LEAST_REQUEST):
        return
    slow = (
        c.round_robin_lb_config if c.lb_policy == p.cluster.Cluster.ROUND_ROBIN else c.least_request_lb_config
    ).slow_start_config
    if warmup is not None:
        # istiod's setWarmup: Envoy's defaults made explicit, the runtime key fixed (not exposed).
        slow.slow_start_window.CopyFrom(p.duration(to_seconds(warmup.duration)))
        slow.aggression.default_value = float(warmup.aggression) if warmup.aggression is not None else 1.0
        slow.aggression.runtime_key = "("
        # istiod's validation refuses only > 100, Envoy's Percent is [0, 100]: a negative minimum is none.
        slow.min_weight_percent.value = (
            max(0.0, float(warmup.minimum_percent)) if warmup.minimum_percent is not None else 10.0
        )
    elif lb.warmup_duration_secs is not None:
        # The deprecated field: istiod's setSlowStartConfig sets the window alone.
        slow.slow_start_window.CopyFrom(p.duration(to_seconds(lb.warmup_duration_secs)))


def apply_retry_budget(threshold: Any, budget: Any | None) -> None:
    """Istio's applyRetryBudget: min concurrency 3 unless set; an unset percent is 20 (%), the API's
    default, as current istiod writes it (older istiod wrote 0.2, i.e. 0.2 %). Envoy's RetryBudget has
    no interval field, so budgetInterval has nothing to become (istiod ignores it too)."""
    if budget is None:
        return
    rb = threshold.retry_budget
    rb.budget_percent.value = float(budget.percent) if budget.percent is not None else 20.0
    rb.min_retry_concurrency.value = int(budget.min_retry_concurrency) if budget.min_retry_concurrency else 3


def apply_connection_pool(
    c: p.cluster.Cluster,
    opts: p.http_options.HttpProtocolOptions,
    settings: Any | None,
    mesh_tcp_keepalive: Any,
    retry_budget: Any | None = None,
) -> None:
    threshold = default_thresholds()
    apply_retry_budget(threshold, retry_budget)
    tcp = settings.tcp if settings is not None else None
    if settings is not None:
        http = settings.http
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
                # Validation (as istiod's) checks a tcp idleTimeout only from 1ms up: below that it
                # disables the timeout, so a negative one (which made to_seconds raise and the cluster
                # be left out; istiod sends it and Envoy NACKs it) is 0s, disabled, too.
                negative = str(tcp.idle_timeout).strip().startswith("-")
                idle = 0.0 if negative else to_seconds(tcp.idle_timeout)
        if idle is not None:
            opts.common_http_protocol_options.idle_timeout.CopyFrom(p.duration(idle))
    # istiod's applyTCPKeepalive: the mesh's keepalive, then each attribute the DestinationRule sets.
    apply_tcp_keepalive(c, mesh_tcp_keepalive)
    apply_tcp_keepalive(c, tcp.tcp_keepalive if tcp is not None else None)
    c.circuit_breakers.thresholds.append(threshold)


# Linux's bounds for TCP_KEEPIDLE/TCP_KEEPINTVL (1..MAX_TCP_KEEPIDLE = 32767 s) and TCP_KEEPCNT (1..127).
# The fields are uint32 seconds: a longer duration made the generator raise (the cluster was left out),
# istiod's uint32() conversion wraps it; and a value outside the kernel's range fails setsockopt on every
# upstream connection. The nearest value the kernel takes keeps the keepalive working.
_KEEPALIVE_SECONDS = (1, 32767)
_KEEPALIVE_PROBES = (1, 127)


def _bounded(value: float, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(int(value), bounds[1]))


def apply_tcp_keepalive(c: p.cluster.Cluster, ka: Any | None) -> None:
    """istiod's setKeepAliveSettings: an empty keepalive turns SO_KEEPALIVE on with the OS's values."""
    if ka is None:
        return
    out = c.upstream_connection_options.tcp_keepalive
    out.SetInParent()
    if ka.probes:
        out.keepalive_probes.value = _bounded(ka.probes, _KEEPALIVE_PROBES)
    if ka.time is not None:
        out.keepalive_time.value = _bounded(to_seconds(ka.time), _KEEPALIVE_SECONDS)
    if ka.interval is not None:
        out.keepalive_interval.value = _bounded(to_seconds(ka.interval), _KEEPALIVE_SECONDS)


def apply_outlier_detection(
    c: p.cluster.Cluster, opts: p.http_options.HttpProtocolOptions, od: Any | None
) -> None:
    if od is None:
        return
    if od.outlier_detection_http_error_codes:
        # Istio's applyOutlierDetectionErrorCodes: these status codes count as errors (OR of exact matches).
        from envoy.config.common.matcher.v3 import matcher_pb2

        matcher = opts.outlier_detection.error_matcher
        for code in od.outlier_detection_http_error_codes:
            rule = matcher_pb2.MatchPredicate()
            rule.http_response_headers_match.headers.add(name=":status").string_match.exact = str(code)
            matcher.or_match.rules.append(rule)
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


def set_protocol(
    opts: p.http_options.HttpProtocolOptions,
    port: ServicePort,
    policy: EffectivePolicy,
    sidecar: bool,
    mesh_h2_upgrade: str,
) -> None:
    http = policy.connection_pool.http if policy.connection_pool is not None else None
    if http is not None and http.use_client_protocol:
        use_downstream_protocol(opts)
        return
    h2 = port.protocol.is_http2 or _h2_upgrade(port, http, mesh_h2_upgrade)
    if h2:
        opts.explicit_http_config.http2_protocol_options.SetInParent()
        keepalive = http.http2_keep_alive if http is not None else None
        if keepalive is not None:
            ka = opts.explicit_http_config.http2_protocol_options.connection_keepalive
            if keepalive.interval is not None:
                ka.interval.CopyFrom(p.duration(to_seconds(keepalive.interval)))
            if keepalive.timeout is not None:
                ka.timeout.CopyFrom(p.duration(to_seconds(keepalive.timeout)))
        if http is not None and http.max_concurrent_streams:
            opts.explicit_http_config.http2_protocol_options.max_concurrent_streams.value = int(
                http.max_concurrent_streams
            )
        return
    if port.protocol is Protocol.AUTO and sidecar:
        use_downstream_protocol(opts)
        return
    opts.explicit_http_config.http_protocol_options.SetInParent()


def _h2_upgrade(port: ServicePort, http: Any | None, mesh_h2_upgrade: str) -> bool:
    """istiod's shouldH2Upgrade: the DestinationRule's policy decides, even on a sniffed port (the user says
    it is HTTP); the mesh's only upgrades ports declared HTTP."""
    override = (http.h2_upgrade_policy if http is not None else None) or "DEFAULT"
    if override != "DEFAULT":
        return override == "UPGRADE"
    return port.protocol.is_http and mesh_h2_upgrade == "UPGRADE"


def use_downstream_protocol(opts: p.http_options.HttpProtocolOptions) -> None:
    """istiod's setUseDownstreamProtocol: HTTP/1.1 and HTTP/2 options both given (defaults)."""
    opts.use_downstream_protocol_config.http_protocol_options.SetInParent()
    opts.use_downstream_protocol_config.http2_protocol_options.SetInParent()
