"""isthmus.dev/v1alpha1 MeshConfig: Istio's MeshConfig (istio.mesh.v1alpha1) under ``spec``.

``metadata.name`` must be ``mesh``; the namespace is ignored (the kind is cluster-scoped). Field
names follow https://istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/. The top level and
ProxyConfig reject unknown fields, and so do the extension providers with their own models (ext_authz,
datadog, skywalking, the access loggers). zipkin and opentelemetry bodies keep what they are given, but
`api.support` refuses by name the fields their tracers are not built from; the other kinds (lightstep,
stackdriver, opencensus: no such tracer in Envoy 1.40, reported when used) and a few rarely used nested
messages keep unknown fields (they change often between Istio releases).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from isthmus.api.kube import LabelSelector
from isthmus.api.networking import (
    ClientTLSSettings,
    HTTPRetry,
    LocalityLoadBalancerSetting,
    ReadinessProbe,
    TcpKeepalive,
)
from isthmus.api.types import ApiModel, Duration, ExtraAllowedModel, Int32, Struct, UInt32

# ==================================================================================================
# ProxyConfig (meshConfig.defaultConfig)


class TracingZipkin(ApiModel):
    address: str | None = None


class TracingLightstep(ApiModel):
    address: str | None = None
    access_token: str | None = None


class TracingDatadog(ApiModel):
    address: str | None = None


class TracingStackdriver(ApiModel):
    debug: bool | None = None
    max_number_of_attributes: int | None = None
    max_number_of_annotations: int | None = None
    max_number_of_message_events: int | None = None


TraceContext = Literal["UNSPECIFIED", "W3C_TRACE_CONTEXT", "GRPC_BIN", "CLOUD_TRACE_CONTEXT", "B3"]


class TracingOpenCensusAgent(ApiModel):
    address: str | None = None
    context: list[TraceContext] = Field(default_factory=list)


class TracingLiteral(ApiModel):
    value: str | None = None


class TracingEnvironment(ApiModel):
    name: str | None = None
    default_value: str | None = None


class TracingRequestHeader(ApiModel):
    name: str | None = None
    default_value: str | None = None


class TracingCustomTag(ApiModel):
    __oneofs__ = (("literal", "environment", "header"),)

    literal: TracingLiteral | None = None
    environment: TracingEnvironment | None = None
    header: TracingRequestHeader | None = None


class ProxyTracing(ApiModel):
    __oneofs__ = (("zipkin", "lightstep", "datadog", "stackdriver", "open_census_agent"),)

    zipkin: TracingZipkin | None = None
    lightstep: TracingLightstep | None = None
    datadog: TracingDatadog | None = None
    stackdriver: TracingStackdriver | None = None
    open_census_agent: TracingOpenCensusAgent | None = None
    custom_tags: dict[str, TracingCustomTag] = Field(default_factory=dict)
    max_path_tag_length: UInt32 | None = None
    sampling: float | None = None
    tls_settings: ClientTLSSettings | None = None
    enable_istio_tags: bool | None = None


class ProxyProtocolConfig(ExtraAllowedModel):
    pass


class XfccDetails(ApiModel):
    subject: bool | None = None
    cert: bool | None = None
    chain: bool | None = None
    dns: bool | None = None
    uri: bool | None = None


ForwardClientCertDetails = Literal[
    "UNDEFINED", "SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET", "ALWAYS_FORWARD_ONLY"
]


class Topology(ApiModel):
    num_trusted_proxies: UInt32 | None = None
    forward_client_cert_details: ForwardClientCertDetails | None = None
    proxy_protocol: ProxyProtocolConfig | None = None
    set_current_client_cert_details: XfccDetails | None = None


class RemoteService(ApiModel):
    address: str | None = None
    tls_settings: ClientTLSSettings | None = None
    tcp_keepalive: TcpKeepalive | None = None


class SDS(ApiModel):
    enabled: bool | None = None
    k8s_sa_jwt_path: str | None = None


class ProxyStatsMatcher(ApiModel):
    inclusion_prefixes: list[str] = Field(default_factory=list)
    inclusion_suffixes: list[str] = Field(default_factory=list)
    inclusion_regexps: list[str] = Field(default_factory=list)


class ProxyImage(ApiModel):
    image_type: str | None = None


class CryptoMb(ApiModel):
    poll_delay: Duration | None = None
    fallback: bool | None = None


class Qat(ApiModel):
    poll_delay: Duration | None = None
    fallback: bool | None = None


class PrivateKeyProvider(ApiModel):
    __oneofs__ = (("cryptomb", "qat"),)

    cryptomb: CryptoMb | None = None
    qat: Qat | None = None


class XForwardedHost(ApiModel):
    """ProxyHeaders.XForwardedHost: off unless enabled (istiod's GetProxyHeadersFromProxyConfig)."""

    enabled: bool | None = None


class XForwardedPort(ApiModel):
    """ProxyHeaders.XForwardedPort: off unless enabled."""

    enabled: bool | None = None


class ProxyHeaders(ApiModel):
    """istio.mesh.v1alpha1.ProxyConfig.ProxyHeaders, every field of the proto: unknown fields are rejected
    (a typo must not pass as a setting that is silently ignored)."""

    forwarded_client_cert: ForwardClientCertDetails | None = None
    request_id: Struct | None = None
    server: Struct | None = None
    attempt_count: Struct | None = None
    envoy_debug_headers: Struct | None = None
    metadata_exchange_headers: Struct | None = None
    set_current_client_cert_details: XfccDetails | None = None
    preserve_http1_header_case: bool | None = None
    x_forwarded_host: XForwardedHost | None = None
    x_forwarded_port: XForwardedPort | None = None


HeadersWithUnderscoresAction = Literal[
    "HEADERS_WITH_UNDERSCORES_UNSPECIFIED",
    "HEADERS_WITH_UNDERSCORES_ALLOW",
    "HEADERS_WITH_UNDERSCORES_REJECT_REQUEST",
    "HEADERS_WITH_UNDERSCORES_DROP_HEADER",
]
PathWithEscapedSlashesAction = Literal[
    "PATH_WITH_ESCAPED_SLASHES_UNSPECIFIED",
    "KEEP_UNCHANGED",
    "REJECT_REQUEST",
    "UNESCAPE_AND_REDIRECT",
    "UNESCAPE_AND_FORWARD",
]


class ConnectionSettings(ApiModel):
    """ProxyConfig.ConnectionSettings: downstream connection tuning (listener and cluster buffer limits,
    the HTTP connection manager's timeouts, HTTP/2 settings and header/path normalization), with the EDGE
    profile's defaults for gateways (xds.gen.connection_settings). The integers are Int32Values: istiod
    ignores a negative one (safeUint32)."""

    profile: Literal["SIDECAR", "EDGE"] | None = None
    listener_per_connection_buffer_limit_bytes: Int32 | None = None
    cluster_per_connection_buffer_limit_bytes: Int32 | None = None
    http_idle_timeout: Duration | None = None
    http_max_connection_duration: Duration | None = None
    http_max_stream_duration: Duration | None = None
    http_stream_idle_timeout: Duration | None = None
    http_request_timeout: Duration | None = None
    http_request_headers_timeout: Duration | None = None
    http_drain_timeout: Duration | None = None
    http_max_concurrent_streams: Int32 | None = None
    http2_initial_stream_window_size: Int32 | None = None
    http2_initial_connection_window_size: Int32 | None = None
    http_headers_with_underscores_action: HeadersWithUnderscoresAction | None = None
    http_merge_slashes: bool | None = None
    http_path_with_escaped_slashes_action: PathWithEscapedSlashesAction | None = None
    # A bootstrap setting (Envoy's overload manager): read when a pod starts (model.proxy_config).
    global_downstream_connection_limit: int | None = None


class MeshProxyConfig(ApiModel):
    """istio.mesh.v1alpha1.ProxyConfig (``defaultConfig``)."""

    __oneofs__ = (("service_cluster", "tracing_service_name"),)

    config_path: str | None = None
    binary_path: str | None = None
    service_cluster: str | None = None
    tracing_service_name: (
        Literal["APP_LABEL_AND_NAMESPACE", "CANONICAL_NAME_ONLY", "CANONICAL_NAME_AND_NAMESPACE"] | None
    ) = None
    drain_duration: Duration | None = None
    parent_shutdown_duration: Duration | None = None  # deprecated
    discovery_address: str | None = None
    discovery_refresh_delay: Duration | None = None  # deprecated
    zipkin_address: str | None = None  # deprecated
    statsd_udp_address: str | None = None
    envoy_metrics_service_address: str | None = None  # deprecated
    proxy_admin_port: Int32 | None = None
    availability_zone: str | None = None  # deprecated
    control_plane_auth_policy: Literal["NONE", "MUTUAL_TLS", "INHERIT"] | None = None
    custom_config_file: str | None = None
    stat_name_length: Int32 | None = None
    concurrency: Int32 | None = None
    proxy_bootstrap_template_path: str | None = None
    interception_mode: Literal["REDIRECT", "TPROXY", "NONE"] | None = None
    tracing: ProxyTracing | None = None
    sds: SDS | None = None  # deprecated
    envoy_access_log_service: RemoteService | None = None
    envoy_metrics_service: RemoteService | None = None
    proxy_metadata: dict[str, str] = Field(default_factory=dict)
    runtime_values: dict[str, str] = Field(default_factory=dict)
    status_port: Int32 | None = None
    extra_stat_tags: list[str] = Field(default_factory=list)
    gateway_topology: Topology | None = None
    termination_drain_duration: Duration | None = None
    mesh_id: str | None = None
    readiness_probe: ReadinessProbe | None = None
    proxy_stats_matcher: ProxyStatsMatcher | None = None
    hold_application_until_proxy_starts: bool | None = None
    ca_certificates_pem: list[str] = Field(default_factory=list)
    image: ProxyImage | None = None
    private_key_provider: PrivateKeyProvider | None = None
    proxy_headers: ProxyHeaders | None = None
    file_flush_interval: Duration | None = None
    file_flush_min_size_kb: UInt32 | None = None
    stats_compression: bool | None = None
    connection_settings: ConnectionSettings | None = None


# ==================================================================================================
# MeshConfig


class MeshOutboundTrafficPolicy(ApiModel):
    # Only a mode: egressProxy is the Sidecar's OutboundTrafficPolicy, not MeshConfig's (istiod's mesh
    # config loader refuses it as an unknown field, and so does this model).
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None


class MeshInboundTrafficPolicy(ApiModel):
    mode: Literal["PASSTHROUGH", "LOCALHOST"] | None = None


class ConfigSource(ApiModel):
    address: str | None = None
    tls_settings: ClientTLSSettings | None = None
    subscribed_resources: list[Literal["SERVICE_REGISTRY"]] = Field(default_factory=list)


class CertificateData(ApiModel):
    __oneofs__ = (("pem", "spiffe_bundle_url"),)

    pem: str | None = None
    spiffe_bundle_url: str | None = None
    cert_signers: list[str] = Field(default_factory=list)
    trust_domains: list[str] = Field(default_factory=list)


class Certificate(ApiModel):
    secret_name: str | None = None
    dns_names: list[str] = Field(default_factory=list)


class ServiceSettingsSettings(ApiModel):
    cluster_local: bool | None = None


class ServiceSettings(ApiModel):
    settings: ServiceSettingsSettings | None = None
    hosts: list[str] = Field(default_factory=list)


class ServiceScopeConfigs(ApiModel):
    namespace_selector: LabelSelector | None = None
    services_selector: LabelSelector | None = None
    scope: Literal["LOCAL", "GLOBAL"] | None = None


class MeshCA(ApiModel):
    address: str | None = None
    tls_settings: ClientTLSSettings | None = None
    request_timeout: Duration | None = None
    istiod_side: bool | None = None


class ProviderBody(ExtraAllowedModel):
    """Body of an extension provider. Common fields are typed; other fields are kept as given."""

    service: str | None = None
    port: UInt32 | None = None
    timeout: Duration | None = None
    max_tag_length: UInt32 | None = None


class ExtAuthzRequestBody(ApiModel):
    max_request_bytes: UInt32 | None = None
    allow_partial_message: bool | None = None
    pack_as_bytes: bool | None = None


class EnvoyExtAuthzGrpcProvider(ApiModel):
    """Translated to Envoy's ext_authz filters (CUSTOM AuthorizationPolicies): every field is read."""

    service: str | None = None
    port: UInt32 | None = None
    timeout: Duration | None = None
    fail_open: bool | None = None
    clear_route_cache: bool | None = None
    status_on_error: str | None = None
    include_request_body_in_check: ExtAuthzRequestBody | None = None


class EnvoyExtAuthzHttpProvider(EnvoyExtAuthzGrpcProvider):
    path_prefix: str | None = None
    include_headers_in_check: list[str] = Field(default_factory=list)
    include_request_headers_in_check: list[str] = Field(default_factory=list)
    include_additional_headers_in_check: dict[str, str] = Field(default_factory=dict)
    headers_to_upstream_on_allow: list[str] = Field(default_factory=list)
    headers_to_downstream_on_deny: list[str] = Field(default_factory=list)
    headers_to_downstream_on_allow: list[str] = Field(default_factory=list)


class EnvoyFileAccessLogFormat(ApiModel):
    __oneofs__ = (("text", "labels"),)

    text: str | None = None
    labels: Struct | None = None


class EnvoyFileAccessLogProvider(ApiModel):
    path: str | None = None
    log_format: EnvoyFileAccessLogFormat | None = None
    # On the provider, not its logFormat (istiod reads prov.EnvoyFileAccessLog.OmitEmptyValues).
    omit_empty_values: bool | None = None


class PrometheusMetricsProvider(ExtraAllowedModel):
    pass


class EnvoyHttpGrpcV3LogProvider(ApiModel):
    """``envoyHttpAls``: every field of Istio's proto, all translated (`telemetry.envoy`), so unknown
    fields are refused rather than silently dropped."""

    service: str | None = None
    port: UInt32 | None = None
    log_name: str | None = None
    filter_state_objects_to_log: list[str] = Field(default_factory=list)
    additional_request_headers_to_log: list[str] = Field(default_factory=list)
    additional_response_headers_to_log: list[str] = Field(default_factory=list)
    additional_response_trailers_to_log: list[str] = Field(default_factory=list)


class EnvoyTcpGrpcV3LogProvider(ApiModel):
    """``envoyTcpAls``: every field of Istio's proto."""

    service: str | None = None
    port: UInt32 | None = None
    log_name: str | None = None
    filter_state_objects_to_log: list[str] = Field(default_factory=list)


class EnvoyOpenTelemetryLogFormat(ApiModel):
    """Unlike the file provider's, not a oneof: ``text`` is the OTel body, ``labels`` its attributes."""

    text: str | None = None
    labels: Struct | None = None


class EnvoyOpenTelemetryLogProvider(ApiModel):
    """``envoyOtelAls``: every field of Istio's proto."""

    service: str | None = None
    port: UInt32 | None = None
    log_name: str | None = None
    log_format: EnvoyOpenTelemetryLogFormat | None = None


class DatadogTracingProvider(ApiModel):
    """``datadog``: every field of Istio's proto, all translated (`telemetry.tracing`: Envoy's Datadog
    tracer), so an unknown field is refused rather than silently dropped."""

    service: str | None = None
    port: UInt32 | None = None
    max_tag_length: UInt32 | None = None


class SkyWalkingTracingProvider(ApiModel):
    """``skywalking``: every field of Istio's proto, all translated (`telemetry.tracing`: Envoy's SkyWalking
    tracer; ``accessToken`` becomes its ``client_config.backend_token``, which istiod leaves out)."""

    service: str | None = None
    port: UInt32 | None = None
    access_token: str | None = None


_PROVIDER_KINDS = (
    "envoy_ext_authz_http",
    "envoy_ext_authz_grpc",
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoy_file_access_log",
    "envoy_http_als",
    "envoy_tcp_als",
    "envoy_otel_als",
    "sds",
)


class ExtensionProvider(ApiModel):
    __oneofs__ = (_PROVIDER_KINDS,)

    name: str
    envoy_ext_authz_http: EnvoyExtAuthzHttpProvider | None = None
    envoy_ext_authz_grpc: EnvoyExtAuthzGrpcProvider | None = None
    zipkin: ProviderBody | None = None
    lightstep: ProviderBody | None = None
    datadog: DatadogTracingProvider | None = None
    stackdriver: ProviderBody | None = None
    opencensus: ProviderBody | None = None
    skywalking: SkyWalkingTracingProvider | None = None
    opentelemetry: ProviderBody | None = None
    prometheus: PrometheusMetricsProvider | None = None
    envoy_file_access_log: EnvoyFileAccessLogProvider | None = None
    envoy_http_als: EnvoyHttpGrpcV3LogProvider | None = None
    envoy_tcp_als: EnvoyTcpGrpcV3LogProvider | None = None
    envoy_otel_als: EnvoyOpenTelemetryLogProvider | None = None
    sds: ProviderBody | None = None

    @property
    def kind(self) -> str | None:
        """Which provider this is (the snake_case name of the oneof field that is set)."""
        for k in _PROVIDER_KINDS:
            if getattr(self, k) is not None:
                return k
        return None

    @property
    def body(self) -> Any:
        k = self.kind
        return getattr(self, k) if k else None


class DefaultProviders(ApiModel):
    tracing: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    access_logging: list[str] = Field(default_factory=list)


class ProxyPathNormalization(ApiModel):
    normalization: Literal["DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] | None = (
        None
    )


class TLSConfig(ApiModel):
    min_protocol_version: Literal["TLS_AUTO", "TLSV1_2", "TLSV1_3"] | None = None
    ecdh_curves: list[str] = Field(default_factory=list)
    cipher_suites: list[str] = Field(default_factory=list)


class ThriftConfig(ApiModel):
    rate_limit_url: str | None = None
    rate_limit_timeout: Duration | None = None


class MeshConfig(ApiModel):
    proxy_listen_port: Int32 | None = None
    proxy_inbound_listen_port: Int32 | None = None
    proxy_http_port: Int32 | None = None
    connect_timeout: Duration | None = None
    protocol_detection_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    ingress_class: str | None = None
    ingress_service: str | None = None
    ingress_controller_mode: Literal["UNSPECIFIED", "OFF", "DEFAULT", "STRICT"] | None = None
    ingress_selector: str | None = None
    enable_tracing: bool | None = None
    access_log_file: str | None = None
    access_log_format: str | None = None
    access_log_encoding: Literal["TEXT", "JSON"] | None = None
    enable_envoy_access_log_service: bool | None = None
    disable_envoy_listener_log: bool | None = None
    default_config: MeshProxyConfig | None = None
    outbound_traffic_policy: MeshOutboundTrafficPolicy | None = None
    inbound_traffic_policy: MeshInboundTrafficPolicy | None = None
    config_sources: list[ConfigSource] = Field(default_factory=list)
    enable_auto_mtls: bool | None = None
    trust_domain: str | None = None
    trust_domain_aliases: list[str] = Field(default_factory=list)
    ca_certificates: list[CertificateData] = Field(default_factory=list)
    default_service_export_to: list[str] = Field(default_factory=list)
    default_virtual_service_export_to: list[str] = Field(default_factory=list)
    default_destination_rule_export_to: list[str] = Field(default_factory=list)
    root_namespace: str | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    dns_refresh_rate: Duration | None = None
    h2_upgrade_policy: Literal["DO_NOT_UPGRADE", "UPGRADE"] | None = None
    inbound_cluster_stat_name: str | None = None
    outbound_cluster_stat_name: str | None = None
    certificates: list[Certificate] = Field(default_factory=list)  # deprecated
    thrift_config: ThriftConfig | None = None  # deprecated
    service_settings: list[ServiceSettings] = Field(default_factory=list)
    service_scope_configs: list[ServiceScopeConfigs] = Field(default_factory=list)
    enable_prometheus_merge: bool | None = None
    verify_certificate_at_client: bool | None = None  # deprecated
    ca: MeshCA | None = None
    extension_providers: list[ExtensionProvider] = Field(default_factory=list)
    default_providers: DefaultProviders | None = None
    discovery_selectors: list[LabelSelector] = Field(default_factory=list)
    path_normalization: ProxyPathNormalization | None = None
    default_http_retry_policy: HTTPRetry | None = None
    mesh_mtls: TLSConfig | None = Field(default=None, alias="meshMTLS")
    tls_defaults: TLSConfig | None = None
