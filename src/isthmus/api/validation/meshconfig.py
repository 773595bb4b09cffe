"""isthmus.dev MeshConfig rules (Istio ``agent.ValidateMeshConfig`` for the fields that are set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus.api import mesh as m
from isthmus.api.networking import OutlierDetection
from isthmus.api.paths import join
from isthmus.api.types import is_duration, parse_duration, parse_env_bool
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    VALID_ECDH_CURVES,
    Report,
    is_dns1123_label,
    is_ip,
    regex_error,
    validate_duration,
    validate_export_to,
    validate_fqdn,
    validate_ip_address,
    validate_namespace_slash_wildcard_hostname,
    validate_port,
    validate_wildcard_domain,
)
from isthmus.api.validation.destinationrule import validate_client_tls, validate_locality_lb_setting
from isthmus.api.validation.virtualservice import validate_http_retry

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

MESH_CONFIG_NAME = "mesh"


def validate_trust_domain(domain: str) -> str | None:
    if not domain:
        return "empty domain name not allowed"
    parts = domain.split(".")
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f'trust domain name "{domain}" invalid'
    return None


def _split_host_port(hostport: str) -> tuple[str, str] | str:
    """Go's ``net.SplitHostPort``: (host, port), or the reason it refuses. Istio splits proxy addresses
    with it, so an unbracketed IPv6 address such as ``2001:db8::100:80`` is refused (too many colons)
    rather than read as host ``2001:db8::100`` and port 80."""

    def fail(why: str) -> str:
        return f"address {hostport}: {why}"

    i = hostport.rfind(":")
    if i < 0:
        return fail("missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return fail("missing ']' in address")
        if end + 1 == len(hostport):
            return fail("missing port in address")
        if end + 1 != i:
            return fail(
                "too many colons in address" if hostport[end + 1] == ":" else "missing port in address"
            )
        host, j, k = hostport[1:end], 1, end + 1
    else:
        host, j, k = hostport[:i], 0, 0
        if ":" in host:
            return fail("too many colons in address")
    if "[" in hostport[j:]:
        return fail("unexpected '[' in address")
    if "]" in hostport[k:]:
        return fail("unexpected ']' in address")
    return host, hostport[i + 1 :]


def validate_proxy_address(addr: str) -> str | None:
    split = _split_host_port(addr)
    if isinstance(split, str):
        return f'unable to split "{addr}": {split}'
    host, port = split
    if not port.isdigit():
        return f"port ({port}) is not a number"
    err = validate_port(int(port))
    if err:
        return err
    if validate_fqdn(host) and not is_ip(host):
        return f'"{host}" is not a valid hostname or an IP address'
    return None


@register("MeshConfig")
def validate_mesh_config(res: Resource, r: Report) -> None:
    mc: m.MeshConfig = res.spec  # type: ignore[assignment]
    if res.name != MESH_CONFIG_NAME:
        r.error("metadata.name", f'MeshConfig must be named "{MESH_CONFIG_NAME}", found "{res.name}"')
    if res.metadata.namespace:
        r.info("metadata.namespace", "the namespace of MeshConfig is ignored (it applies to the whole mesh)")

    if mc.proxy_listen_port is not None:
        err = validate_port(mc.proxy_listen_port)
        if err:
            r.error("spec.proxyListenPort", f"invalid proxy listen port: {err}")
    if mc.proxy_inbound_listen_port is not None:
        r.error("spec.proxyInboundListenPort", validate_port(mc.proxy_inbound_listen_port))
    if mc.proxy_http_port is not None and mc.proxy_http_port != 0:
        r.error("spec.proxyHttpPort", validate_port(mc.proxy_http_port))
    if mc.connect_timeout is not None:
        err = validate_duration(mc.connect_timeout)
        if err is None:
            secs = parse_duration(mc.connect_timeout).total_seconds()
            if secs > 3600 or secs < 0.001:
                err = f"time {mc.connect_timeout} must be >1ms and <1h0m0s"
        if err:
            r.error("spec.connectTimeout", f"invalid connect timeout: {err}")
    if mc.protocol_detection_timeout is not None:
        td = parse_duration(mc.protocol_detection_timeout)
        if td.total_seconds() != 0 and round(td.total_seconds() * 1_000_000) % 1000:
            r.error(
                "spec.protocolDetectionTimeout",
                "invalid protocol detection timeout: only durations to ms precision are supported",
            )
    if mc.dns_refresh_rate is not None:
        r.error("spec.dnsRefreshRate", validate_duration(mc.dns_refresh_rate))
    if mc.tcp_keepalive is not None:
        for f in ("time", "interval"):
            v = getattr(mc.tcp_keepalive, f)
            if v is not None:
                r.error(join("spec.tcpKeepalive", f), validate_duration(v))

    if mc.default_config is not None:
        _validate_proxy_config(r, "spec.defaultConfig", mc.default_config)

    # the mesh-wide setting has no outlier detection of its own: Istio passes an empty one
    validate_locality_lb_setting(r, "spec.localityLbSetting", mc.locality_lb_setting, OutlierDetection())
    for i, s in enumerate(mc.service_settings):
        for j, h in enumerate(s.hosts):
            err = validate_wildcard_domain(h)
            if err:
                r.error(f"spec.serviceSettings[{i}].hosts[{j}]", f"serviceSettings[{i}], host `{h}`: {err}")

    if mc.trust_domain is not None:
        err = validate_trust_domain(mc.trust_domain)
        if err:
            r.error("spec.trustDomain", f"trustDomain: {err}")
    for i, tda in enumerate(mc.trust_domain_aliases):
        err = validate_trust_domain(tda)
        if err:
            r.error(f"spec.trustDomainAliases[{i}]", f"trustDomainAliases[{i}], domain `{tda}` : {err}")
    if mc.root_namespace is not None and not is_dns1123_label(mc.root_namespace):
        r.error("spec.rootNamespace", f'invalid root namespace "{mc.root_namespace}"')

    if mc.mesh_mtls is not None and mc.mesh_mtls.ecdh_curves:
        r.error("spec.meshMTLS.ecdhCurves", "mesh TLS does not support ECDH curves configuration")
    if mc.tls_defaults is not None:
        bad = sorted({c for c in mc.tls_defaults.ecdh_curves if c and c not in VALID_ECDH_CURVES})
        if bad:
            r.warn("spec.tlsDefaults.ecdhCurves", f"detected unrecognized ECDH curves: [{' '.join(bad)}]")
        seen: set[str] = set()
        dup: set[str] = set()
        for c in mc.tls_defaults.ecdh_curves:
            if c in seen:
                dup.add(c)
            seen.add(c)
        if dup:
            r.warn(
                "spec.tlsDefaults.ecdhCurves", f"detected duplicate ECDH curves: [{' '.join(sorted(dup))}]"
            )

    validate_http_retry(r, "spec.defaultHttpRetryPolicy", mc.default_http_retry_policy)
    for field, value in (
        ("defaultServiceExportTo", mc.default_service_export_to),
        ("defaultVirtualServiceExportTo", mc.default_virtual_service_export_to),
        ("defaultDestinationRuleExportTo", mc.default_destination_rule_export_to),
    ):
        validate_export_to(r, f"spec.{field}", None, value, service_entry=field == "defaultServiceExportTo")

    _validate_extension_providers(r, mc)


def _validate_proxy_config(r: Report, p: str, pc: m.MeshProxyConfig) -> None:
    # Istio validates the proxy config merged over its defaults, so a field left out is fine but one set
    # explicitly to "" replaces the default and is rejected.
    for attr, alias, message in (
        ("config_path", "configPath", "config path must be set"),
        ("binary_path", "binaryPath", "binary path must be set"),
        ("service_cluster", "serviceCluster", "service cluster must be specified"),
        (
            "discovery_address",
            "discoveryAddress",
            "discovery address must be set to the proxy discovery service",
        ),
    ):
        if getattr(pc, attr) == "":
            r.error(join(p, alias), message)
    if pc.drain_duration is not None:
        err = validate_duration(pc.drain_duration)
        if err:
            r.error(join(p, "drainDuration"), f"invalid drain duration: {err}")
        elif parse_duration(pc.drain_duration).microseconds:
            r.error(join(p, "drainDuration"), "drain time only supports durations to seconds precision")
    if pc.termination_drain_duration is not None:
        r.error(join(p, "terminationDrainDuration"), validate_duration(pc.termination_drain_duration))
    if pc.parent_shutdown_duration is not None:
        r.warn(join(p, "parentShutdownDuration"), "parentShutdownDuration is deprecated and has no effect")
    if pc.discovery_address:  # "" is reported above
        err = validate_proxy_address(pc.discovery_address)
        if err:
            r.error(join(p, "discoveryAddress"), f"invalid discovery address: {err}")
    if pc.statsd_udp_address:
        err = validate_proxy_address(pc.statsd_udp_address)
        if err:
            r.error(
                join(p, "statsdUdpAddress"), f'invalid statsd udp address "{pc.statsd_udp_address}": {err}'
            )
    if pc.envoy_metrics_service_address:
        err = validate_proxy_address(pc.envoy_metrics_service_address)
        if err:
            r.error(
                join(p, "envoyMetricsServiceAddress"),
                f'invalid envoy metrics service address "{pc.envoy_metrics_service_address}": {err}',
            )
    for attr, alias, what in (
        ("envoy_metrics_service", "envoyMetricsService", "envoy metrics service"),
        ("envoy_access_log_service", "envoyAccessLogService", "envoy access log service"),
    ):
        service = getattr(pc, attr)
        if service is not None and service.address:
            err = validate_proxy_address(service.address)
            if err:
                r.error(join(p, alias, "address"), f'invalid {what} address "{service.address}": {err}')
    if pc.proxy_admin_port is not None:
        err = validate_port(pc.proxy_admin_port)
        if err:
            r.error(join(p, "proxyAdminPort"), f"invalid proxy admin port: {err}")
    if pc.status_port is not None:
        err = validate_port(pc.status_port)
        if err:
            r.error(join(p, "statusPort"), f"invalid status port: {err}")
    if pc.control_plane_auth_policy == "INHERIT":
        r.error(
            join(p, "controlPlaneAuthPolicy"),
            'invalid authentication policy: unrecognized control plane auth policy "INHERIT"',
        )
    if pc.concurrency is not None and pc.concurrency < 0:
        r.error(join(p, "concurrency"), "concurrency must be greater than or equal to 0")
    if pc.proxy_stats_matcher is not None:
        # Istio passes these to Envoy unchecked, and an Envoy whose bootstrap holds a bad regex does not
        # start: refused here instead, naming the pattern.
        for i, pattern in enumerate(pc.proxy_stats_matcher.inclusion_regexps):
            err = regex_error(pattern)
            if err:
                r.error(
                    join(p, "proxyStatsMatcher", "inclusionRegexps", i),
                    f"invalid stats regexp {pattern!r}: {err}",
                )
    tr = pc.tracing
    if tr is not None:
        tp = join(p, "tracing")
        if tr.zipkin is not None and tr.zipkin.address:
            err = validate_proxy_address(tr.zipkin.address.replace("$(HOST_IP)", "127.0.0.1", 1))
            if err:
                r.error(join(tp, "zipkin", "address"), f"invalid zipkin config: {err}")
        if tr.datadog is not None:
            # Istio checks a datadog tracer's address even when it is unset: the agent needs one
            err = validate_proxy_address((tr.datadog.address or "").replace("$(HOST_IP)", "127.0.0.1", 1))
            if err:
                r.error(join(tp, "datadog", "address"), f"invalid datadog config: {err}")
        if tr.lightstep is not None:
            if not tr.lightstep.address:
                r.error(join(tp, "lightstep", "address"), "invalid lightstep config: address is required")
            else:
                err = validate_proxy_address(tr.lightstep.address)
                if err:
                    r.error(
                        join(tp, "lightstep", "address"),
                        f"invalid lightstep config: invalid lightstep address: {err}",
                    )
            if not tr.lightstep.access_token:
                r.error(
                    join(tp, "lightstep", "accessToken"), "invalid lightstep config: access token is required"
                )
        if tr.sampling is not None and not 0.0 <= tr.sampling <= 100.0:
            r.error(join(tp, "sampling"), "sampling must be in range [0.0, 100.0]")
        validate_client_tls(r, join(tp, "tlsSettings"), "", tr.tls_settings)
    for key, default in (
        ("ISTIO_DELTA_XDS", "true, delta xDS"),
        ("ISTHMUS_VHDS", "true, a delta sidecar's virtual hosts over VHDS"),
    ):
        value = pc.proxy_metadata.get(key)
        if value is not None and parse_env_bool(value, True) is None:
            r.warn(
                join(p, "proxyMetadata", key),
                f"{value!r} is not a boolean; proxies use the default ({default})",
            )
    # The local agent's certificate knobs: a bad value would stop `isthmus up` when the CA starts, so it
    # is refused here, with the field named.
    ttl = pc.proxy_metadata.get("SECRET_TTL")
    if ttl and not is_duration(ttl):
        r.error(join(p, "proxyMetadata", "SECRET_TTL"), f"{ttl!r} is not a duration (e.g. 24h)")
    grace = pc.proxy_metadata.get("SECRET_GRACE_PERIOD_RATIO")
    if grace:
        try:
            grace_ok = 0.0 <= float(grace) < 1.0
        except ValueError:
            grace_ok = False
        if not grace_ok:
            # 1 (accepted by istio-agent) would rotate certificates continuously.
            r.error(
                join(p, "proxyMetadata", "SECRET_GRACE_PERIOD_RATIO"),
                f"{grace!r} is not a ratio in [0, 1): the share of a certificate's lifetime left when it rotates",
            )
    idle = pc.proxy_metadata.get("ISTIO_META_IDLE_TIMEOUT")
    if idle and not is_duration(idle):
        # istiod ignores it then (parseDuration), and so do the generators: say so instead of nothing.
        r.warn(
            join(p, "proxyMetadata", "ISTIO_META_IDLE_TIMEOUT"),
            f"{idle!r} is not a duration (e.g. 30s); proxies keep the default idle timeout",
        )
    if "ISTIO_META_DNS_AUTO_ALLOCATE" in pc.proxy_metadata:
        r.warn(
            join(p, "proxyMetadata", "ISTIO_META_DNS_AUTO_ALLOCATE"),
            "'ISTIO_META_DNS_AUTO_ALLOCATE' is deprecated; review "
            "https://istio.io/latest/docs/ops/configuration/traffic-management/dns-proxy/#dns-auto-allocation-v2 "
            "for information about replacement functionality",
        )
    pk = pc.private_key_provider
    if pk is not None:
        kp = join(p, "privateKeyProvider")
        body = pk.cryptomb or pk.qat
        if body is None:
            r.error(
                kp,
                "invalid private key provider configuration: private key provider configuration is required",
            )
        elif body.poll_delay is None:
            r.error(kp, "invalid private key provider configuration: pollDelay is required")
        elif parse_duration(body.poll_delay).total_seconds() == 0:
            r.error(kp, "invalid private key provider configuration: pollDelay must be non zero")


_NEEDS_SERVICE = (
    "envoy_ext_authz_http",
    "envoy_ext_authz_grpc",
    "zipkin",
    "lightstep",
    "datadog",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "envoy_http_als",
    "envoy_tcp_als",
    "envoy_otel_als",
)


# Access-log providers that stream over gRPC (envoyHttpAls, envoyTcpAls, envoyOtelAls).
_GRPC_LOG_KINDS = ("envoy_http_als", "envoy_tcp_als", "envoy_otel_als")


def _validate_grpc_log_provider(r: Report, p: str, body: object) -> None:
    """An OTel label that is not a string reaches the collector as an empty attribute (istiod reads each
    label as a string), which is surely not what was meant."""
    fmt = getattr(body, "log_format", None)
    for key, value in sorted((getattr(fmt, "labels", None) or {}).items()):
        if not isinstance(value, str):
            r.warn(
                join(p, "logFormat", "labels", key),
                f"label {key} is not a string: it is sent as an empty attribute",
            )


def _service_error(service: str) -> str | None:
    """istiod's validateExtensionProviderService (every provider with a service): ``<hostname>`` (an FQDN
    or an IP) or ``<namespace>/<hostname>``."""
    if "/" not in service:
        if validate_fqdn(service) is None or is_ip(service):
            return None
        return f"invalid service fmt {service}: {validate_ip_address(service)}"
    errors = validate_namespace_slash_wildcard_hostname(service, False)
    return "; ".join(errors) if errors else None


def _validate_extension_providers(r: Report, mc: m.MeshConfig) -> None:
    """Istio only logs these (an unused bad provider is harmless), so they are warnings here."""
    names: set[str] = set()
    for i, prov in enumerate(mc.extension_providers):
        p = f"spec.extensionProviders[{i}]"
        if not prov.name:
            r.warn(join(p, "name"), "empty extension provider name")
        elif prov.name in names:
            r.warn(join(p, "name"), f"duplicate extension provider name {prov.name}")
        names.add(prov.name)
        kind = prov.kind
        if kind is None:
            r.warn(p, "extension provider has no provider type set")
            continue
        body = prov.body
        # The path names the field as written (envoyHttpAls), not its Python name.
        bp = join(p, m.ExtensionProvider.model_fields[kind].alias or kind)
        if kind in _NEEDS_SERVICE:
            service = getattr(body, "service", None)
            if not service:
                r.warn(bp, "service must not be empty")
            else:
                r.warn(join(bp, "service"), _service_error(service))
            port = getattr(body, "port", None)
            if port is None or validate_port(port):
                r.warn(join(bp, "port"), f"port number {port or 0} must be in the range 1..65535")
            timeout = getattr(body, "timeout", None)
            if timeout is not None:
                r.warn(join(bp, "timeout"), validate_duration(timeout))
        if kind in _GRPC_LOG_KINDS:
            _validate_grpc_log_provider(r, bp, body)
        if kind == "lightstep" and not (body.model_extra or {}).get("accessToken"):
            r.warn(join(bp, "accessToken"), "access token is required")
        if kind == "opentelemetry":
            # istiod's ValidateExtensionProviderTracingOpentelemetry: the exporter speaks gRPC or HTTP, not
            # both (an empty `grpc: {}` counts as set, as a non-nil message does in Go).
            extra = body.model_extra or {}
            if extra.get("grpc") is not None and extra.get("http") is not None:
                r.warn(bp, "OpenTelemetryTracingProvider cannot specify both grpc and http")
    dp = mc.default_providers
    if dp is not None:
        for field, values in (
            ("tracing", dp.tracing),
            ("metrics", dp.metrics),
            ("accessLogging", dp.access_logging),
        ):
            for i, name in enumerate(values):
                if name not in names and name not in ("prometheus", "envoy", "stackdriver"):
                    r.warn(
                        f"spec.defaultProviders.{field}[{i}]",
                        f'default provider "{name}" is not defined in extensionProviders',
                    )
