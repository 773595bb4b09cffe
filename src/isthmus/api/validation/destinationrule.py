"""DestinationRule rules (Istio ``ValidateDestinationRule``) and the traffic-policy helpers shared with
Sidecar and MeshConfig."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api.paths import join
from isthmus.api.types import parse_duration
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    GRPC_STATUS,
    Report,
    duration_nanos,
    is_ip,
    q,
    validate_duration,
    validate_export_to,
    validate_fqdn,
    validate_labels,
    validate_percent,
    validate_port,
    validate_selector_labels,
    validate_wildcard_domain,
)
from isthmus.api.validation.virtualservice import validate_subset_name

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


@register("DestinationRule")
def validate_destination_rule(res: Resource, r: Report) -> None:
    dr: n.DestinationRule = res.spec  # type: ignore[assignment]
    r.error("spec.host", validate_wildcard_domain(dr.host))
    validate_traffic_policy(r, "spec.trafficPolicy", res.namespace, dr.traffic_policy)
    names: set[str] = set()
    for i, subset in enumerate(dr.subsets):
        sp = f"spec.subsets[{i}]"
        if subset.name in names:
            r.error(join(sp, "name"), f"duplicate subset names: {subset.name}")
        names.add(subset.name)
        r.error(join(sp, "name"), validate_subset_name(subset.name))
        r.errors(join(sp, "labels"), validate_labels(subset.labels))
        validate_traffic_policy(r, join(sp, "trafficPolicy"), res.namespace, subset.traffic_policy)
    validate_export_to(
        r, "spec.exportTo", res.namespace, dr.export_to, dr_selector=dr.workload_selector is not None
    )
    if dr.workload_selector is not None:
        validate_selector_labels(r, "spec.workloadSelector.matchLabels", dr.workload_selector.match_labels)


def validate_traffic_policy(r: Report, p: str, namespace: str, tp: n.TrafficPolicy | None) -> None:
    if tp is None:
        return
    if (
        tp.outlier_detection is None
        and tp.connection_pool is None
        and tp.load_balancer is None
        and tp.tls is None
        and not tp.is_set("port_level_settings")
        and tp.tunnel is None
        and tp.proxy_protocol is None
        and tp.retry_budget is None
        and tp.admission_control is None
        and tp.compression is None
    ):
        r.error(p, "traffic policy must have at least one field")
        return
    if tp.tunnel is not None and tp.proxy_protocol is not None:
        r.error(p, "tunnel and proxyProtocol must not be set together")
        return
    validate_outlier_detection(r, join(p, "outlierDetection"), tp.outlier_detection)
    validate_connection_pool(r, join(p, "connectionPool"), tp.connection_pool)
    validate_load_balancer(r, join(p, "loadBalancer"), tp.load_balancer, tp.outlier_detection)
    validate_client_tls(r, join(p, "tls"), namespace, tp.tls)
    for i, pl in enumerate(tp.port_level_settings):
        pp = join(p, "portLevelSettings", i)
        # Istio only requires the selector to be present; the number itself is not range-checked here.
        if pl.port is None:
            r.error(pp, "portTrafficPolicy must have valid port")
        if (
            pl.outlier_detection is None
            and pl.connection_pool is None
            and pl.load_balancer is None
            and pl.tls is None
            and pl.admission_control is None
            and pl.compression is None
        ):
            r.error(pp, "port traffic policy must have at least one field")
            continue
        validate_outlier_detection(r, join(pp, "outlierDetection"), pl.outlier_detection)
        validate_connection_pool(r, join(pp, "connectionPool"), pl.connection_pool)
        validate_load_balancer(r, join(pp, "loadBalancer"), pl.load_balancer, pl.outlier_detection)
        validate_client_tls(r, join(pp, "tls"), namespace, pl.tls)
        validate_admission_control(r, join(pp, "admissionControl"), pl.admission_control)
    _validate_tunnel(r, join(p, "tunnel"), tp.tunnel)
    _validate_retry_budget(r, join(p, "retryBudget"), tp.retry_budget)
    validate_admission_control(r, join(p, "admissionControl"), tp.admission_control)


def validate_admission_control(r: Report, p: str, ac: n.AdmissionControlPolicy | None) -> None:
    """TrafficPolicy.admissionControl. The verdicts follow Istio's TestValidateTrafficPolicy admissionControl
    cases and the constraints destination_rule.proto documents (percentages in [0, 100], aggression >= 1,
    status ranges half-open within [100, 600], canonical gRPC status names, non-empty criteria lists)."""
    if ac is None:
        return
    sr = ac.success_rate
    if sr is None:
        r.error(p, "admission control policy must set successRate")
        return
    sp = join(p, "successRate")
    if sr.sampling_window is not None and duration_nanos(sr.sampling_window) < 0:
        r.error(join(sp, "samplingWindow"), f"sampling window {sr.sampling_window} must not be negative")
    if sr.threshold is not None and not 0.0 <= sr.threshold <= 100.0:
        r.error(join(sp, "threshold"), f"success rate threshold {sr.threshold:g} is not in range 0..100")
    if sr.aggression is not None and sr.aggression < 1.0:
        r.error(join(sp, "aggression"), f"aggression {sr.aggression:g} must be greater than or equal to 1")
    if sr.maximum_rejection_percent is not None and not 0.0 <= sr.maximum_rejection_percent <= 100.0:
        r.error(
            join(sp, "maximumRejectionPercent"),
            f"maximum rejection percent {sr.maximum_rejection_percent:g} is not in range 0..100",
        )
    sc = sr.success_criteria
    if sc is None:
        return
    cp = join(sp, "successCriteria")
    if sc.http is not None:
        hp = join(cp, "http")
        if not sc.http.status_ranges:
            r.error(join(hp, "statusRanges"), "http success criteria must have at least one status range")
        for i, rng in enumerate(sc.http.status_ranges):
            rp = join(hp, "statusRanges", i)
            start, end = rng.start or 0, rng.end or 0
            for name, v in (("start", start), ("end", end)):
                if not 100 <= v <= 600:
                    r.error(join(rp, name), f"status range {name} {v} is not in range 100..600")
            if end <= start:
                r.error(rp, f"status range [{start}, {end}) is empty: end must be greater than start")
    if sc.grpc is not None:
        gp = join(cp, "grpc")
        if not sc.grpc.status_codes:
            r.error(join(gp, "statusCodes"), "grpc success criteria must have at least one status code")
        for i, code in enumerate(sc.grpc.status_codes):
            if code not in GRPC_STATUS:
                r.error(
                    join(gp, "statusCodes", i),
                    f"gRPC status {q(code)} is not supported. See "
                    "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, "
                    "for example 'NOT_FOUND'",
                )


def _validate_tunnel(r: Report, p: str, tunnel: n.TunnelSettings | None) -> None:
    if tunnel is None:
        return
    if tunnel.protocol and tunnel.protocol not in ("CONNECT", "POST"):
        r.error(join(p, "protocol"), 'tunnel protocol must be "CONNECT" or "POST"')
    fqdn_err = validate_fqdn(tunnel.target_host)
    if fqdn_err and not is_ip(tunnel.target_host):
        r.error(
            join(p, "targetHost"),
            f"tunnel target host must be valid FQDN or IP address: {fqdn_err}; {tunnel.target_host} is not a valid IP",
        )
    err = validate_port(tunnel.target_port)
    if err:
        r.error(join(p, "targetPort"), f"tunnel target port is invalid: {err}")


def _validate_retry_budget(r: Report, p: str, rb: n.RetryBudget | None) -> None:
    if rb is None:
        return
    if rb.percent is not None and not 0.0 <= rb.percent <= 100.0:
        r.error(join(p, "percent"), f"retry budget percent {rb.percent} is not in range 0..100")
    if rb.budget_interval is not None:
        r.error(join(p, "budgetInterval"), validate_duration(rb.budget_interval))


def validate_outlier_detection(r: Report, p: str, od: n.OutlierDetection | None) -> None:
    if od is None:
        return
    if od.base_ejection_time is not None:
        r.error(join(p, "baseEjectionTime"), validate_duration(od.base_ejection_time))
    if od.consecutive_errors:
        r.warn(
            join(p, "consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
            "consecutive5xxErrors instead",
        )
    if not od.split_external_local_origin_errors and (od.consecutive_local_origin_failures or 0) > 0:
        r.error(
            join(p, "consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin "
            "errors is set to false",
        )
    if od.interval is not None:
        r.error(join(p, "interval"), validate_duration(od.interval))
    r.error(join(p, "maxEjectionPercent"), validate_percent(od.max_ejection_percent))
    r.error(join(p, "minHealthPercent"), validate_percent(od.min_health_percent))
    for i, code in enumerate(od.outlier_detection_http_error_codes):
        if not 100 <= code <= 599:
            r.error(
                join(p, "outlierDetectionHttpErrorCodes", i), f"HTTP status {code} is not in range 100-599"
            )


def validate_connection_pool(r: Report, p: str, cp: n.ConnectionPoolSettings | None) -> None:
    if cp is None:
        return
    if cp.http is None and cp.tcp is None:
        r.error(p, "connection pool must have at least one field")
        return
    h = cp.http
    if h is not None:
        hp = join(p, "http")
        for attr, alias, what in (
            ("http1_max_pending_requests", "http1MaxPendingRequests", "http1 max pending requests"),
            ("http2_max_requests", "http2MaxRequests", "http2 max requests"),
            ("max_requests_per_connection", "maxRequestsPerConnection", "max requests per connection"),
            ("max_retries", "maxRetries", "max retries"),
            ("max_concurrent_streams", "maxConcurrentStreams", "max concurrent streams"),
        ):
            v = getattr(h, attr)
            if v is not None and v < 0:
                r.error(join(hp, alias), f"{what} must be non-negative")
        if h.idle_timeout is not None:
            r.error(join(hp, "idleTimeout"), validate_duration(h.idle_timeout))
        if h.h2_upgrade_policy == "UPGRADE" and h.use_client_protocol:
            r.error(hp, "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
        if h.http2_keep_alive is not None:
            for f in ("interval", "timeout"):
                v = getattr(h.http2_keep_alive, f)
                if v is None:
                    r.error(join(hp, "http2KeepAlive", f), f"http2 keepalive {f} is required")
                else:
                    r.error(join(hp, "http2KeepAlive", f), validate_duration(v))
    t = cp.tcp
    if t is not None:
        tp = join(p, "tcp")
        if t.max_connections is not None and t.max_connections < 0:
            r.error(join(tp, "maxConnections"), "max connections must be non-negative")
        if t.connect_timeout is not None:
            r.error(join(tp, "connectTimeout"), validate_duration(t.connect_timeout))
        if t.max_connection_duration is not None:
            r.error(join(tp, "maxConnectionDuration"), validate_duration(t.max_connection_duration))
        if t.idle_timeout is not None and parse_duration(t.idle_timeout).total_seconds() * 1000 >= 1:
            # 0s disables the idle timeout entirely
            r.error(join(tp, "idleTimeout"), validate_duration(t.idle_timeout))
        ka = t.tcp_keepalive
        if ka is not None:
            if ka.time is not None:
                r.error(join(tp, "tcpKeepalive", "time"), validate_duration(ka.time))
            if ka.interval is not None:
                r.error(join(tp, "tcpKeepalive", "interval"), validate_duration(ka.interval))


def _is_prime(x: int) -> bool:
    """Envoy's primality check for the Maglev table size."""
    if x != 0 and x < 4:
        return True
    if x & 1 == 0:
        return False
    return all(x % factor != 0 for factor in range(3, math.isqrt(x) + 1, 2))


def validate_load_balancer(
    r: Report, p: str, lb: n.LoadBalancerSettings | None, outlier: n.OutlierDetection | None
) -> None:
    if lb is None:
        return
    ch = lb.consistent_hash
    if ch is not None:
        cp = join(p, "consistentHash")
        if ch.http_cookie is not None and not ch.http_cookie.name:
            r.error(join(cp, "httpCookie", "name"), "name required for HttpCookie")
        if ch.http_cookie is not None:
            seen: set[str] = set()
            for i, attr in enumerate(ch.http_cookie.attributes):
                ap = join(cp, "httpCookie", "attributes", i, "name")
                if not attr.name:
                    r.error(ap, "cookie attribute name cannot be empty")
                elif attr.name in seen:
                    r.error(ap, f"duplicate cookie attribute name: {attr.name}")
                seen.add(attr.name)
        if ch.http_cookie is not None and ch.http_cookie.ttl is not None:
            ttl = parse_duration(ch.http_cookie.ttl)
            if ttl.total_seconds() < 0:
                r.error(join(cp, "httpCookie", "ttl"), "ttl must not be negative")
        if ch.minimum_ring_size:
            r.warn(
                join(cp, "minimumRingSize"),
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            )
            if ch.ring_hash is not None or ch.maglev is not None:
                r.error(cp, "only one of MinimumRingSize or Maglev/Ringhash can be specified")
        if ch.maglev is not None:
            size = ch.maglev.table_size or 0
            mp = join(cp, "maglev", "tableSize")
            if size == 0:
                r.error(mp, "tableSize must be set for maglev")
            if size >= 5000011:
                r.error(mp, "tableSize must be less than 5000011 for maglev")
            if not _is_prime(size):
                r.error(mp, "tableSize must be a prime number for maglev")
    if lb.locality_lb_setting is not None and lb.zone_aware_lb_setting is not None:
        r.error(p, "only one of localityLbSetting and zoneAwareLbSetting can be set")
    validate_locality_lb_setting(r, join(p, "localityLbSetting"), lb.locality_lb_setting, outlier)
    validate_zone_aware_lb_setting(r, join(p, "zoneAwareLbSetting"), lb.zone_aware_lb_setting, outlier)
    if lb.warmup_duration_secs is not None:
        r.error(join(p, "warmupDurationSecs"), validate_duration(lb.warmup_duration_secs))
        r.warn(
            join(p, "warmupDurationSecs"),
            'using deprecated setting "warmupDurationSecs", use "warmup" instead',
        )
    warm = lb.warmup
    if warm is not None:
        wp = join(p, "warmup")
        r.error(join(wp, "duration"), validate_duration(warm.duration))
        if warm.minimum_percent is not None and warm.minimum_percent > 100:
            r.error(join(wp, "minimumPercent"), "minimumPercent value should be less than or equal to 100")
        # Istio relaxed this from ">= 1" to "> 0" (Envoy's slow-start aggression only has to be positive).
        if warm.aggression is not None and warm.aggression <= 0:
            r.error(join(wp, "aggression"), "aggression should be greater than 0")


def validate_locality_lb_setting(
    r: Report, p: str, lb: n.LocalityLoadBalancerSetting | None, outlier: n.OutlierDetection | None
) -> None:
    """``agent.ValidateLocalityLbSetting``."""
    if lb is None:
        return
    if lb.distribute and lb.failover:
        r.error(p, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if lb.failover and lb.failover_priority:
        for i, label in enumerate(lb.failover_priority):
            if label in TOPOLOGY_LABELS:
                r.error(
                    join(p, "failoverPriority", i),
                    f"can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'",
                )
                return
    src: list[str] = []
    for i, d in enumerate(lb.distribute):
        dp = join(p, "distribute", i)
        src.append(d.from_ or "")
        total = 0
        for loc, weight in d.to.items():
            if weight <= 0 or weight > 100:
                r.error(join(dp, "to", loc), "locality weight must be in range [1, 100]")
                return
            total += weight
        if total != 100:
            r.error(join(dp, "to"), f"total locality weight {total} != 100")
            return
        r.error(join(dp, "to"), _validate_localities(list(d.to)))
    r.error(join(p, "distribute"), _validate_localities(src))
    if (lb.failover or lb.failover_priority) and outlier is None:
        r.warn(p, "outlier detection policy must be provided for failover")
    _validate_failover(r, p, lb.failover)


def validate_zone_aware_lb_setting(
    r: Report, p: str, za: n.ZoneAwareLoadBalancerSetting | None, outlier: n.OutlierDetection | None
) -> None:
    """``agent.ValidateZoneAwareLbSetting``: Envoy balances zones itself, so failover is region-only and
    failoverPriority may not name the zone or subzone topology labels."""
    if za is None:
        return
    for i, label in enumerate(za.failover_priority):
        if label in TOPOLOGY_LABELS[1:]:
            r.error(
                join(p, "failoverPriority", i),
                f"zoneAwareLbSetting handles zone-level routing, topology label '{label}' is not allowed in "
                "'failover_priority'",
            )
        elif za.failover and label == TOPOLOGY_LABELS[0]:
            r.error(
                join(p, "failoverPriority", i),
                f"can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'",
            )
    if (za.failover or za.failover_priority) and outlier is None:
        r.warn(p, "outlier detection policy must be provided for failover")
    _validate_failover(r, p, za.failover)


def _validate_failover(r: Report, p: str, failover: list[n.LocalityFailover]) -> None:
    for i, f in enumerate(failover):
        fp = join(p, "failover", i)
        frm, to = f.from_ or "", f.to or ""
        if frm == to:
            r.error(fp, "locality lb failover settings must specify different regions")
        if "/" in frm or "/" in to:
            r.error(fp, "locality lb failover only specify region")
        if "*" in frm or "*" in to:
            r.error(fp, "locality lb failover region should not contain '*' wildcard")


def _validate_localities(localities: list[str]) -> str | None:
    tree: dict[str, dict[str, dict[str, bool]]] = {}
    for loc in localities:
        stars = loc.count("*")
        if stars and (stars > 1 or not loc.endswith("*")):
            return f"locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
        if "*" in tree:
            return f"locality {loc} overlap with previous specified ones"
        items = loc.split("/", 2)
        if any(item == "" for item in items):
            return f"locality {loc} must not contain empty region/zone/subzone info"
        region = items[0]
        if len(items) == 1:
            if region in tree:
                return f"locality {loc} overlap with previous specified ones"
            tree[region] = {"*": {"*": True}}
        elif len(items) == 2:
            zone = items[1]
            if region in tree:
                if "*" in tree[region] or zone in tree[region]:
                    return f"locality {loc} overlap with previous specified ones"
                tree[region][zone] = {"*": True}
            else:
                tree[region] = {zone: {"*": True}}
        else:
            zone, sub = items[1], items[2]
            if region in tree:
                if "*" in tree[region]:
                    return f"locality {loc} overlap with previous specified ones"
                if zone in tree[region]:
                    if tree[region][zone].get("*") or tree[region][zone].get(sub):
                        return f"locality {loc} overlap with previous specified ones"
                    tree[region][zone][sub] = True
                else:
                    tree[region][zone] = {sub: True}
            else:
                tree[region] = {zone: {sub: True}}
    return None


def validate_client_tls(r: Report, p: str, namespace: str, tls: n.ClientTLSSettings | None) -> None:
    """``agent.ValidateTLS`` for ClientTLSSettings."""
    if tls is None:
        return
    if tls.credential_name and tls.credential_name.startswith("configmap://"):
        ns = tls.credential_name[len("configmap://") :].partition("/")
        cm_ns = ns[0] if ns[1] else namespace
        if cm_ns != namespace or not namespace:
            r.error(
                join(p, "credentialName"),
                f'invalid configmap:// credentialName: namespace must match the configuration namespace "{namespace}"',
            )
    if tls.insecure_skip_verify:
        if tls.mode == "SIMPLE" and (
            tls.ca_certificates or tls.credential_name or tls.is_set("subject_alt_names")
        ):
            r.error(
                p,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
            )
        if tls.mode == "MUTUAL" and (tls.ca_certificates or tls.is_set("subject_alt_names")):
            r.error(p, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key or tls.ca_crl:
            r.error(
                p, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set"
            )
        return
    if tls.mode == "MUTUAL":
        if not tls.client_certificate:
            r.error(join(p, "clientCertificate"), "client certificate required for mutual tls")
        if not tls.private_key:
            r.error(join(p, "privateKey"), "private key required for mutual tls")
    if tls.mode == "ISTIO_MUTUAL" and (
        tls.client_certificate or tls.private_key or tls.ca_certificates or tls.credential_name
    ):
        r.warn(
            p,
            "ISTIO_MUTUAL uses Istio's certificates: clientCertificate, privateKey, caCertificates and "
            "credentialName are ignored",
        )
