"""Istio's telemetry vocabulary: metric names, label names and order, Envoy's buckets, response flags.

Everything here mirrors istio/proxy's stats filter (`source/extensions/filters/http/istio_stats`) so that
what the control plane serves scrapes exactly like what istio-proxy serves on :15090.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- metric names --------------------------------------------------------------------------------
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
REQUEST_BYTES = "istio_request_bytes"
RESPONSE_BYTES = "istio_response_bytes"
REQUEST_MESSAGES = "istio_request_messages_total"
RESPONSE_MESSAGES = "istio_response_messages_total"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
TCP_CLOSED = "istio_tcp_connections_closed_total"

HELP = {
    REQUESTS_TOTAL: "Requests handled by Istio proxies.",
    REQUEST_DURATION: "Request duration, from the first byte received to the last byte sent (ms).",
    REQUEST_BYTES: "Request size on the wire, headers included (bytes).",
    RESPONSE_BYTES: "Response size on the wire, headers included (bytes).",
    REQUEST_MESSAGES: "gRPC messages sent by clients.",
    RESPONSE_MESSAGES: "gRPC messages sent by servers.",
    TCP_SENT: "Bytes sent to the downstream over TCP connections.",
    TCP_RECEIVED: "Bytes received from the downstream over TCP connections.",
    TCP_OPENED: "TCP connections opened.",
    TCP_CLOSED: "TCP connections closed.",
}

# Envoy's default histogram buckets (source/common/stats/histogram_impl.cc), used by Istio for the
# duration (ms) and size (bytes) histograms alike.
BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000,
)  # fmt: skip
# `le` values exactly as Envoy's Prometheus output prints them (`{:.32g}`): "0.5", "1", "1800000".
BUCKET_LABELS: tuple[str, ...] = tuple(format(float(b), ".32g") for b in BUCKETS)

# --- labels ----------------------------------------------------------------------------------------
# The workload/service labels (the order istio-proxy pushes them in).
PEER_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
)
HTTP_LABELS: tuple[str, ...] = (
    *PEER_LABELS,
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
TCP_LABELS: tuple[str, ...] = (
    *PEER_LABELS,
    "request_protocol",
    "response_flags",
    "connection_security_policy",
)
# Index of each label in a key tuple (HTTP_LABELS order; TCP keys share the PEER_LABELS prefix).
IDX = {name: i for i, name in enumerate(HTTP_LABELS)}

UNKNOWN = "unknown"
LATEST = "latest"
DEFAULT_CLUSTER = "Kubernetes"  # istiod's default cluster ID

SOURCE = "source"
DESTINATION = "destination"
MUTUAL_TLS = "mutual_tls"
NONE = "none"

CANONICAL_NAME_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")


def canonical_service(labels: Mapping[str, str], workload: str) -> str:
    """Istio's canonical service: the first label set of canonical-name / app.kubernetes.io/name / app,
    else the workload name (as the injector does), else "unknown"."""
    for key in CANONICAL_NAME_LABELS:
        value = labels.get(key)
        if value:
            return value
    return workload or UNKNOWN


def canonical_revision(labels: Mapping[str, str]) -> str:
    for key in CANONICAL_REVISION_LABELS:
        value = labels.get(key)
        if value:
            return value
    return LATEST


def app_label(labels: Mapping[str, str]) -> str:
    return labels.get("app") or UNKNOWN


def version_label(labels: Mapping[str, str]) -> str:
    return labels.get("version") or UNKNOWN


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def namespace_of_principal(principal: str) -> str | None:
    """`spiffe://td/ns/<ns>/sa/<sa>` -> ns (istio-proxy's getNamespace)."""
    begin = principal.find("/ns/")
    if begin < 0:
        return None
    begin += 4
    end = principal.find("/", begin)
    return principal[begin:] if end < 0 else principal[begin:end]


# --- response flags ------------------------------------------------------------------------------
# envoy.data.accesslog.v3.ResponseFlags field number -> Envoy's short flag, in Envoy's own order
# (ResponseFlagUtils), which is the order `%RESPONSE_FLAGS%` and istio-proxy join them in.
RESPONSE_FLAG_SHORT: dict[int, str] = {
    1: "LH",  # failed_local_healthcheck
    2: "UH",  # no_healthy_upstream
    3: "UT",  # upstream_request_timeout
    4: "LR",  # local_reset
    5: "UR",  # upstream_remote_reset
    6: "UF",  # upstream_connection_failure
    7: "UC",  # upstream_connection_termination
    8: "UO",  # upstream_overflow
    9: "NR",  # no_route_found
    10: "DI",  # delay_injected
    11: "FI",  # fault_injected
    12: "RL",  # rate_limited
    13: "UAEX",  # unauthorized_details
    14: "RLSE",  # rate_limit_service_error
    15: "DC",  # downstream_connection_termination
    16: "URX",  # upstream_retry_limit_exceeded
    17: "SI",  # stream_idle_timeout
    18: "IH",  # invalid_envoy_request_headers
    19: "DPE",  # downstream_protocol_error
    20: "UMSDR",  # upstream_max_stream_duration_reached
    21: "RFCF",  # response_from_cache_filter
    22: "NFCF",  # no_filter_config_found
    23: "DT",  # duration_timeout
    24: "UPE",  # upstream_protocol_error
    25: "NC",  # no_cluster_found
    26: "OM",  # overload_manager
    27: "DF",  # dns_resolution_failure
    28: "DR",  # downstream_remote_reset
}


def response_flags(common: object) -> str:
    """`%RESPONSE_FLAGS%` of an AccessLogCommon: short flags joined by ",", "-" when none."""
    if not common.HasField("response_flags"):  # type: ignore[attr-defined]
        return "-"
    fields = common.response_flags.ListFields()  # type: ignore[attr-defined]
    if not fields:
        return "-"
    flags = sorted(f.number for f, v in fields if v)
    return ",".join(RESPONSE_FLAG_SHORT.get(n, "?") for n in flags) or "-"


_FLAG_ORDER: dict[str, int] = {short: number for number, short in RESPONSE_FLAG_SHORT.items()}


def sorted_flags(flags: str) -> str:
    """Short response flags as `response_flags` prints an entry's: in the access-log proto's field order
    (Envoy's in-proxy order can differ), "-" when none."""
    names = [f for f in flags.split(",") if f and f != "-"]
    if not names:
        return "-"
    return ",".join(sorted(names, key=lambda f: _FLAG_ORDER.get(f, len(_FLAG_ORDER) + 1)))
