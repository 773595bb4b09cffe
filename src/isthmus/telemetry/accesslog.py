"""Access-log lines from gRPC access-log entries, in Istio's TEXT format or JSON encoding.

Envoy renders the file access log itself (MeshConfig accessLogFile). The control plane keeps the last
entries each proxy streamed over ALS and renders them here with the same command operators, so
`isthmus logs` shows exactly what the file would hold, with or without accessLogFile. The operators a
gRPC entry carries are supported (Istio's default format uses only those); others render as "-".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from isthmus.telemetry import istio

# Istio's default access-log format (EnvoyTextLogFormat) and its JSON keys.
TEXT_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
JSON_LOG_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "route_name": "%ROUTE_NAME%",
}

# Custom tags the ALS loggers attach (see telemetry.envoy), read back here and by the aggregator.
TAG_UPSTREAM_PEER_SAN = "upstream_peer_san"
TAG_UPSTREAM_LOCAL_SAN = "upstream_local_san"
# Envoy's gRPC entry names the upstream cluster only when a host was picked (upstreamHost()->cluster());
# a request answered before that (fault abort FI, no healthy upstream UH, overflow UO...) has the
# cluster its route chose only in %UPSTREAM_CLUSTER_RAW%, which the file log and istio-proxy's stats use.
TAG_UPSTREAM_CLUSTER = "upstream_cluster"
TAG_CONTENT_TYPE = "content_type"

_METHODS = {
    0: None, 1: "GET", 2: "HEAD", 3: "POST", 4: "PUT", 5: "DELETE", 6: "CONNECT", 7: "OPTIONS",
    8: "TRACE", 9: "PATCH",
}  # fmt: skip
_PROTOCOLS = {0: None, 1: "HTTP/1.0", 2: "HTTP/1.1", 3: "HTTP/2", 4: "HTTP/3"}
# Operators whose JSON value is a number (Envoy's typed JSON output).
_NUMERIC = frozenset(
    {"RESPONSE_CODE", "BYTES_RECEIVED", "BYTES_SENT", "DURATION", "UPSTREAM_REQUEST_ATTEMPT_COUNT"}
)

_TOKEN = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%")


def upstream_cluster(common: Any) -> str:
    """The cluster the request was routed to, as %UPSTREAM_CLUSTER_RAW% prints it ("" when none)."""
    if common.upstream_cluster:
        return common.upstream_cluster
    tag = common.custom_tags.get(TAG_UPSTREAM_CLUSTER, "")
    return "" if tag == "-" else tag


def _addr(a: Any) -> str | None:
    sa = a.socket_address
    if not sa.address:
        if a.pipe.path:
            return a.pipe.path
        return None
    return f"{sa.address}:{sa.port_value}"


def _addr_ip(a: Any) -> str | None:
    return a.socket_address.address or None


def _ms(d: Any) -> int:
    return d.seconds * 1000 + d.nanos // 1_000_000


def duration_ms(common: Any) -> int | None:
    """`%DURATION%`: whole milliseconds from the first byte received to the end of the stream."""
    if common.HasField("duration"):
        return _ms(common.duration)
    if common.HasField("time_to_last_downstream_tx_byte"):
        return _ms(common.time_to_last_downstream_tx_byte)
    return None


def start_time(common: Any) -> str:
    ts = common.start_time
    dt = datetime.fromtimestamp(ts.seconds, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.nanos // 1_000_000:03d}Z"


def uri_san(cert_props: Any) -> str:
    for san in cert_props.subject_alt_name:
        if san.uri:
            return san.uri
    return ""


def _req_header(entry: Any, name: str) -> str | None:
    req = entry.request
    n = name.lower()
    if n == ":method":
        return _METHODS.get(req.request_method)
    if n == ":path":
        return req.path or None
    if n == ":authority" or n == "host":
        return req.authority or None
    if n == ":scheme":
        return req.scheme or None
    if n == "user-agent":
        return req.user_agent or None
    if n == "referer":
        return req.referer or None
    if n == "x-forwarded-for":
        return req.forwarded_for or None
    if n == "x-request-id":
        return req.request_id or None
    if n == "x-envoy-original-path":
        return req.original_path or None
    if n == "content-type":
        return entry.common_properties.custom_tags.get(TAG_CONTENT_TYPE) or None
    return req.request_headers.get(n) or None


def _resp_header(entry: Any, name: str) -> str | None:
    return entry.response.response_headers.get(name.lower()) or None


# Envoy's Grpc::Utility::httpToGrpcStatus, for gRPC responses without grpc-status.
_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}


def grpc_status(entry: Any) -> str:
    """`%GRPC_STATUS(NUMBER)%` as Envoy (and istio-proxy) computes it: trailers, then headers, then the
    HTTP status mapped to a gRPC code; "" when there was no response."""
    resp = entry.response
    value = resp.response_trailers.get("grpc-status") or resp.response_headers.get("grpc-status")
    if value:
        return value
    return grpc_status_of_code(resp.response_code.value)


def grpc_status_of_code(code: int) -> str:
    """The gRPC status Envoy reports for a gRPC response without grpc-status: its HTTP status mapped ("" when
    there was no response)."""
    if not code:
        return ""
    # A 200 without grpc-status maps to UNKNOWN too: the gRPC server never said OK.
    return str(_HTTP_TO_GRPC.get(code, 2))


def _headers(getter: Any, entry: Any, arg: str) -> str | None:
    for name in arg.split("?"):
        value = getter(entry, name)
        if value:
            return value
    return None


def operator_value(op: str, arg: str | None, entry: Any, http: bool) -> Any:
    """The value of one command operator for an HTTPAccessLogEntry (http) or TCPAccessLogEntry; None
    when Envoy would print "-"."""
    c = entry.common_properties
    if op == "START_TIME":
        return start_time(c)
    if op == "PROTOCOL":
        return _PROTOCOLS.get(entry.protocol_version) if http else None
    if op == "RESPONSE_CODE":
        return entry.response.response_code.value if http else 0
    if op == "RESPONSE_FLAGS":
        return istio.response_flags(c)
    if op == "RESPONSE_CODE_DETAILS":
        return (entry.response.response_code_details or None) if http else None
    if op == "CONNECTION_TERMINATION_DETAILS":
        return c.connection_termination_details or None
    if op == "UPSTREAM_TRANSPORT_FAILURE_REASON":
        return c.upstream_transport_failure_reason or None
    if op == "DOWNSTREAM_TRANSPORT_FAILURE_REASON":
        return c.downstream_transport_failure_reason or None
    if op == "BYTES_RECEIVED":
        return entry.request.request_body_bytes if http else entry.connection_properties.received_bytes
    if op == "BYTES_SENT":
        return entry.response.response_body_bytes if http else entry.connection_properties.sent_bytes
    if op == "DURATION":
        return duration_ms(c)
    if op == "REQUEST_DURATION":
        return _ms(c.time_to_last_rx_byte) if c.HasField("time_to_last_rx_byte") else None
    if op == "RESPONSE_DURATION":
        return _ms(c.time_to_first_upstream_rx_byte) if c.HasField("time_to_first_upstream_rx_byte") else None
    if op == "REQ":
        return _headers(_req_header, entry, arg or "") if http else None
    if op == "RESP":
        return _headers(_resp_header, entry, arg or "") if http else None
    if op == "UPSTREAM_HOST" or op == "UPSTREAM_REMOTE_ADDRESS":
        return _addr(c.upstream_remote_address)
    if op == "UPSTREAM_CLUSTER" or op == "UPSTREAM_CLUSTER_RAW":
        return upstream_cluster(c) or None
    if op == "UPSTREAM_LOCAL_ADDRESS":
        return _addr(c.upstream_local_address)
    if op == "DOWNSTREAM_LOCAL_ADDRESS":
        return _addr(c.downstream_local_address)
    if op == "DOWNSTREAM_REMOTE_ADDRESS":
        return _addr(c.downstream_remote_address)
    if op == "DOWNSTREAM_DIRECT_REMOTE_ADDRESS":
        return _addr(c.downstream_direct_remote_address)
    if op == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
        return _addr_ip(c.downstream_remote_address)
    if op == "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
        return _addr_ip(c.downstream_local_address)
    if op == "UPSTREAM_HOST_WITHOUT_PORT" or op == "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
        return _addr_ip(c.upstream_remote_address)
    if op == "REQUESTED_SERVER_NAME":
        return c.tls_properties.tls_sni_hostname or None
    if op == "DOWNSTREAM_PEER_URI_SAN":
        return uri_san(c.tls_properties.peer_certificate_properties) or None
    if op == "DOWNSTREAM_LOCAL_URI_SAN":
        return uri_san(c.tls_properties.local_certificate_properties) or None
    if op == "UPSTREAM_PEER_URI_SAN":
        return c.custom_tags.get(TAG_UPSTREAM_PEER_SAN) or None
    if op == "UPSTREAM_LOCAL_URI_SAN":
        return c.custom_tags.get(TAG_UPSTREAM_LOCAL_SAN) or None
    if op == "ROUTE_NAME":
        return c.route_name or None
    if op == "UPSTREAM_REQUEST_ATTEMPT_COUNT":
        return c.upstream_request_attempt_count
    if op == "STREAM_ID":
        return c.stream_id or None
    if op in ("GRPC_STATUS", "GRPC_STATUS_NUMBER"):
        return (grpc_status(entry) or None) if http else None
    if op == "HOSTNAME":
        import socket

        return socket.gethostname()
    return None


def _text(value: Any, maxlen: int | None) -> str:
    s = "-" if value is None or value == "" else str(value)
    return s[:maxlen] if maxlen else s


@lru_cache(maxsize=64)
def compile_format(fmt: str) -> tuple[Any, ...]:
    """A format string as literal strings and (operator, argument, max length) tuples."""
    parts: list[Any] = []
    pos = 0
    for m in _TOKEN.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos : m.start()])
        parts.append((m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None))
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:])
    return tuple(parts)


def format_text(entry: Any, http: bool, fmt: str = TEXT_LOG_FORMAT) -> str:
    """One access-log line (with its trailing newline when the format has one)."""
    out = []
    for part in compile_format(fmt):
        if isinstance(part, str):
            out.append(part)
        else:
            op, arg, maxlen = part
            out.append(_text(operator_value(op, arg, entry, http), maxlen))
    return "".join(out)


def _json_value(template: Any, entry: Any, http: bool) -> Any:
    if isinstance(template, Mapping):
        return {k: _json_value(v, entry, http) for k, v in template.items()}
    if not isinstance(template, str):
        return template
    parts = compile_format(template)
    if len(parts) == 1 and not isinstance(parts[0], str):
        op, arg, maxlen = parts[0]
        value = operator_value(op, arg, entry, http)
        if value is None or value == "":
            return None
        if op in _NUMERIC and isinstance(value, int):
            return value
        return str(value)[:maxlen] if maxlen else str(value)
    return format_text(entry, http, template)


def format_json(entry: Any, http: bool, fmt: Mapping[str, Any] | None = None) -> str:
    """One JSON access-log line (Istio's JSON keys unless `fmt` is MeshConfig's accessLogFormat)."""
    return json.dumps(_json_value(fmt or JSON_LOG_FORMAT, entry, http), separators=(",", ":")) + "\n"


def format_entry(entry: Any, http: bool, encoding: str = "TEXT", fmt: str = "") -> str:
    """Render as MeshConfig accessLogEncoding / accessLogFormat say."""
    if encoding.upper() == "JSON":
        return format_json(entry, http, json.loads(fmt) if fmt else None)
    if fmt:
        return format_text(entry, http, fmt if fmt.endswith("\n") else fmt + "\n")
    return format_text(entry, http)
