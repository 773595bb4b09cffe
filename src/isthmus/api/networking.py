"""networking.istio.io kinds: VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar,
WorkloadEntry, WorkloadGroup, EnvoyFilter (v1alpha3) and ProxyConfig (v1beta1).

Field lists follow istio.io/api v1.31 (the CRD schemas). Attribute names are the snake_case of Istio's
field names; the camelCase name is the alias. Unset optional fields are None. TrafficPolicy and
PortTrafficPolicy also carry ``admissionControl`` (AdmissionControlPolicy, SuccessRate, SuccessCriteria as
in the newer destination_rule.proto).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from isthmus.api.types import (
    ApiModel,
    Base64,
    Duration,
    Int32,
    NetworkingWorkloadSelector,
    Percent,
    PolicyTargetReference,
    Struct,
    UInt32,
    UInt64,
    WorkloadSelector,
)

# ==================================================================================================
# Shared


class PortSelector(ApiModel):
    number: UInt32 | None = None


class Destination(ApiModel):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class StringMatch(ApiModel):
    """exact / prefix / suffix / regex (RE2): only one may be set (istio/api#3759 added suffix)."""

    __oneofs__ = (("exact", "prefix", "suffix", "regex"),)

    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    regex: str | None = None


# ==================================================================================================
# VirtualService


class HeaderOperations(ApiModel):
    set: dict[str, str] = Field(default_factory=dict)
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(ApiModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(ApiModel):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: UInt32 | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    source_namespace: str | None = None
    stat_prefix: str | None = None


class HTTPRouteDestination(ApiModel):
    destination: Destination
    weight: Int32 | None = None
    headers: Headers | None = None


class RouteDestination(ApiModel):
    destination: Destination
    weight: Int32 | None = None


class HTTPRedirect(ApiModel):
    __oneofs__ = (("port", "derive_port"),)

    uri: str | None = None
    authority: str | None = None
    port: UInt32 | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: UInt32 | None = None
    prefix_rewrite: str | None = None


class HTTPBody(ApiModel):
    __oneofs__ = (("string", "bytes"),)

    string: str | None = None
    bytes: Base64 | None = None


class HTTPDirectResponse(ApiModel):
    status: UInt32
    body: HTTPBody | None = None


class Delegate(ApiModel):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(ApiModel):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(ApiModel):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(ApiModel):
    attempts: Int32 | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class CorsPolicy(ApiModel):
    allow_origin: list[str] = Field(default_factory=list)  # deprecated
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class FaultDelay(ApiModel):
    __oneofs__ = (("fixed_delay", "exponential_delay"),)

    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: Int32 | None = None  # deprecated


class FaultAbort(ApiModel):
    __oneofs__ = (("http_status", "grpc_status", "http2_error"),)

    http_status: Int32 | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(ApiModel):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(ApiModel):
    destination: Destination
    percentage: Percent | None = None


class SessionCookie(ApiModel):
    """The cookie of a COOKIE session persistence (istio/api virtual_service.proto)."""

    name: str | None = None
    path: str | None = None
    lifetime_type: Literal["SESSION", "PERMANENT"] | None = None


class SessionHeader(ApiModel):
    name: str | None = None


class SessionPersistence(ApiModel):
    """HTTPRoute.sessionPersistence: strong stickiness to one upstream host, kept by a cookie or header the
    client sends back (Envoy's stateful_session filter)."""

    type: Literal["COOKIE", "HEADER"] | None = None
    absolute_timeout: Duration | None = None
    cookie: SessionCookie | None = None
    header: SessionHeader | None = None


class HTTPRoute(ApiModel):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    mirror_percent: UInt32 | None = None  # deprecated; also accepted as mirror_percent
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None
    session_persistence: SessionPersistence | None = None


class TLSMatchAttributes(ApiModel):
    sni_hosts: list[str]
    destination_subnets: list[str] = Field(default_factory=list)
    port: UInt32 | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class L4MatchAttributes(ApiModel):
    destination_subnets: list[str] = Field(default_factory=list)
    port: UInt32 | None = None
    source_subnet: str | None = None
    source_labels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class TLSRoute(ApiModel):
    match: list[TLSMatchAttributes]
    route: list[RouteDestination] = Field(default_factory=list)


class TCPRoute(ApiModel):
    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualService(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)


# ==================================================================================================
# DestinationRule


class HTTPCookieAttribute(ApiModel):
    name: str
    value: str | None = None


class HTTPCookie(ApiModel):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[HTTPCookieAttribute] = Field(default_factory=list)


class RingHash(ApiModel):
    minimum_ring_size: UInt64 | None = None


class MagLev(ApiModel):
    table_size: UInt64 | None = None


class ConsistentHashLB(ApiModel):
    __oneofs__ = (
        ("http_header_name", "http_cookie", "use_source_ip", "http_query_parameter_name"),
        ("ring_hash", "maglev"),
    )

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 | None = None  # deprecated


class LocalityDistribute(ApiModel):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, UInt32] = Field(default_factory=dict)


class LocalityFailover(ApiModel):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(ApiModel):
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[str] = Field(default_factory=list)
    enabled: bool | None = None


class ZoneAwareLoadBalancerSetting(ApiModel):
    enabled: bool | None = None
    min_cluster_size: UInt32 | None = None
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[str] = Field(default_factory=list)


class WarmupConfiguration(ApiModel):
    duration: Duration
    minimum_percent: float | None = None
    aggression: float | None = None


SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]


class LoadBalancerSettings(ApiModel):
    __oneofs__ = (("simple", "consistent_hash"),)

    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None  # deprecated
    warmup: WarmupConfiguration | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None


class TcpKeepalive(ApiModel):
    probes: UInt32 | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(ApiModel):
    max_connections: Int32 | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTP2KeepAlive(ApiModel):
    interval: Duration | None = None
    timeout: Duration | None = None


class HTTPSettings(ApiModel):
    http1_max_pending_requests: Int32 | None = None
    http2_max_requests: Int32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: Int32 | None = None
    http2_keep_alive: HTTP2KeepAlive | None = None


class ConnectionPoolSettings(ApiModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(ApiModel):
    consecutive_errors: Int32 | None = None  # deprecated
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Int32 | None = None
    min_health_percent: Int32 | None = None
    outlier_detection_http_error_codes: list[UInt32] = Field(default_factory=list)


ClientTLSMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]


class ClientTLSSettings(ApiModel):
    mode: ClientTLSMode | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None


class TunnelSettings(ApiModel):
    protocol: str | None = None
    target_host: str
    target_port: UInt32


class ProxyProtocol(ApiModel):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(ApiModel):
    percent: float | None = None
    min_retry_concurrency: UInt32 | None = None
    budget_interval: Duration | None = None


class StatusRange(ApiModel):
    """SuccessCriteria.HttpCriteria.StatusRange: the half-open range ``[start, end)``."""

    start: UInt32 | None = None
    end: UInt32 | None = None


class HttpCriteria(ApiModel):
    status_ranges: list[StatusRange] = Field(default_factory=list)


class GrpcCriteria(ApiModel):
    status_codes: list[str] = Field(default_factory=list)


class SuccessCriteria(ApiModel):
    http: HttpCriteria | None = None
    grpc: GrpcCriteria | None = None


class SuccessRate(ApiModel):
    sampling_window: Duration | None = None
    threshold: float | None = None
    aggression: float | None = None
    minimum_attempt_rate: UInt32 | None = None
    maximum_rejection_percent: float | None = None
    success_criteria: SuccessCriteria | None = None


class AdmissionControlPolicy(ApiModel):
    """TrafficPolicy.admissionControl (and PortTrafficPolicy.admissionControl): oneof strategy, whose only
    member is ``successRate``."""

    success_rate: SuccessRate | None = None


class Decompress(ApiModel):
    # Unset means enabled: `decompress: {}` turns decompression on (istio/api
    # destination-rule-compression.yaml accepts {}, enabled: false and enabled: true).
    enabled: bool | None = None


class ResponseCompression(ApiModel):
    decompress: Decompress | None = None


class Compression(ApiModel):
    """TrafficPolicy.compression: what the client proxy does with compressed upstream bodies."""

    response: ResponseCompression | None = None


class PortTrafficPolicy(ApiModel):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    admission_control: AdmissionControlPolicy | None = None
    compression: Compression | None = None


class TrafficPolicy(ApiModel):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None
    admission_control: AdmissionControlPolicy | None = None
    compression: Compression | None = None


class Subset(ApiModel):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRule(ApiModel):
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None


# ==================================================================================================
# Gateway


class Port(ApiModel):
    number: UInt32
    protocol: str
    name: str
    target_port: UInt32 | None = None


class ServerTLSCertificate(ApiModel):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


TLSProtocol = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
ServerTLSMode = Literal[
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]


class ServerTLSSettings(ApiModel):
    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] = Field(default_factory=list)
    tls_certificates: list[ServerTLSCertificate] = Field(default_factory=list)
    ca_cert_credential_name: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    verify_certificate_spki: list[str] = Field(default_factory=list)
    verify_certificate_hash: list[str] = Field(default_factory=list)
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] = Field(default_factory=list)
    insecure_skip_verify: bool | None = None


class Server(ApiModel):
    port: Port
    bind: str | None = None
    hosts: list[str]
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class Gateway(ApiModel):
    servers: list[Server] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)


# ==================================================================================================
# WorkloadEntry / ServiceEntry


class WorkloadEntry(ApiModel):
    address: str | None = None
    ports: dict[str, UInt32] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: UInt32 | None = None
    service_account: str | None = None


class ServicePort(ApiModel):
    number: UInt32
    protocol: str | None = None
    name: str
    target_port: UInt32 | None = None


class ServiceEntry(ApiModel):
    hosts: list[str]
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] | None = None
    endpoints: list[WorkloadEntry] = Field(default_factory=list)
    workload_selector: NetworkingWorkloadSelector | None = None
    export_to: list[str] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)


# ==================================================================================================
# Sidecar


class SidecarPort(ApiModel):
    number: UInt32 | None = None
    protocol: str | None = None
    name: str | None = None
    target_port: UInt32 | None = None


CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class IstioIngressListener(ApiModel):
    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(ApiModel):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str]


class OutboundTrafficPolicy(ApiModel):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: Destination | None = None


class Sidecar(ApiModel):
    workload_selector: NetworkingWorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None


# ==================================================================================================
# WorkloadGroup


class WorkloadGroupObjectMeta(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class HTTPHeader(ApiModel):
    name: str | None = None
    value: str | None = None


class HTTPHealthCheckConfig(ApiModel):
    path: str | None = None
    port: UInt32
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] = Field(default_factory=list)


class TCPHealthCheckConfig(ApiModel):
    host: str | None = None
    port: UInt32


class ExecHealthCheckConfig(ApiModel):
    command: list[str]


class GrpcHealthCheckConfig(ApiModel):
    port: UInt32 | None = None
    service: str | None = None


class ReadinessProbe(ApiModel):
    __oneofs__ = (("http_get", "tcp_socket", "exec_", "grpc"),)

    initial_delay_seconds: Int32 | None = None
    timeout_seconds: Int32 | None = None
    period_seconds: Int32 | None = None
    success_threshold: Int32 | None = None
    failure_threshold: Int32 | None = None
    http_get: HTTPHealthCheckConfig | None = None
    tcp_socket: TCPHealthCheckConfig | None = None
    exec_: ExecHealthCheckConfig | None = Field(default=None, alias="exec")
    grpc: GrpcHealthCheckConfig | None = None


class WorkloadGroup(ApiModel):
    metadata: WorkloadGroupObjectMeta | None = None
    template: WorkloadEntry
    probe: ReadinessProbe | None = None


# ==================================================================================================
# EnvoyFilter (v1alpha3): modelled so that it can be read and refused with a clear reason.


class EnvoyFilterSubFilterMatch(ApiModel):
    name: str | None = None


class EnvoyFilterFilterMatch(ApiModel):
    name: str | None = None
    sub_filter: EnvoyFilterSubFilterMatch | None = None


class EnvoyFilterFilterChainMatch(ApiModel):
    name: str | None = None
    sni: str | None = None
    transport_protocol: str | None = None
    application_protocols: str | None = None
    filter: EnvoyFilterFilterMatch | None = None
    destination_port: UInt32 | None = None


class EnvoyFilterListenerMatch(ApiModel):
    port_number: UInt32 | None = None
    port_name: str | None = None
    filter_chain: EnvoyFilterFilterChainMatch | None = None
    listener_filter: str | None = None
    name: str | None = None


class EnvoyFilterRouteMatch(ApiModel):
    name: str | None = None
    action: Literal["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"] | None = None


class EnvoyFilterVirtualHostMatch(ApiModel):
    name: str | None = None
    route: EnvoyFilterRouteMatch | None = None
    domain_name: str | None = None


class EnvoyFilterRouteConfigurationMatch(ApiModel):
    port_number: UInt32 | None = None
    port_name: str | None = None
    gateway: str | None = None
    vhost: EnvoyFilterVirtualHostMatch | None = None
    name: str | None = None


class EnvoyFilterClusterMatch(ApiModel):
    port_number: UInt32 | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class EnvoyFilterProxyMatch(ApiModel):
    proxy_version: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class EnvoyFilterWaypointRouteMatch(ApiModel):
    name: str | None = None


class EnvoyFilterWaypointMatch(ApiModel):
    filter: EnvoyFilterFilterMatch | None = None
    route: EnvoyFilterWaypointRouteMatch | None = None
    port_number: UInt32 | None = None


class EnvoyConfigObjectMatch(ApiModel):
    __oneofs__ = (("listener", "route_configuration", "cluster", "waypoint"),)

    context: Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"] | None = None
    proxy: EnvoyFilterProxyMatch | None = None
    listener: EnvoyFilterListenerMatch | None = None
    route_configuration: EnvoyFilterRouteConfigurationMatch | None = None
    cluster: EnvoyFilterClusterMatch | None = None
    waypoint: EnvoyFilterWaypointMatch | None = None


class EnvoyFilterPatch(ApiModel):
    operation: (
        Literal[
            "INVALID",
            "MERGE",
            "ADD",
            "REMOVE",
            "INSERT_BEFORE",
            "INSERT_AFTER",
            "INSERT_FIRST",
            "REPLACE",
            "MERGE_AND_REPLACE_LIST",
        ]
        | None
    ) = None
    value: Struct | None = None
    filter_class: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None


class EnvoyConfigObjectPatch(ApiModel):
    apply_to: (
        Literal[
            "INVALID",
            "LISTENER",
            "FILTER_CHAIN",
            "NETWORK_FILTER",
            "HTTP_FILTER",
            "ROUTE_CONFIGURATION",
            "VIRTUAL_HOST",
            "HTTP_ROUTE",
            "CLUSTER",
            "EXTENSION_CONFIG",
            "BOOTSTRAP",
            "LISTENER_FILTER",
        ]
        | None
    ) = None
    match: EnvoyConfigObjectMatch | None = None
    patch: EnvoyFilterPatch | None = None


class EnvoyFilter(ApiModel):
    workload_selector: NetworkingWorkloadSelector | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    config_patches: list[EnvoyConfigObjectPatch] = Field(default_factory=list)
    priority: Int32 | None = None


# ==================================================================================================
# ProxyConfig (networking.istio.io/v1beta1)


class ProxyImage(ApiModel):
    image_type: str | None = None


class ProxyConfig(ApiModel):
    selector: WorkloadSelector | None = None
    concurrency: Int32 | None = None
    environment_variables: dict[str, str] = Field(default_factory=dict)
    image: ProxyImage | None = None
