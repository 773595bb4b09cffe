"""Envoy config for telemetry: the access loggers, the gRPC stats filter, the tracer, bootstrap clusters.

Integration hooks for the generators and the bootstrap (the control plane side is `Telemetry`):

- `http_access_loggers(snapshot, proxy, direction)` -> ``HttpConnectionManager.access_log``: the
  Telemetry ``accessLogging`` providers for this workload and mode, each with its CEL filter (see
  `telemetry.policy`; else MeshConfig's accessLogFile), and the gRPC access logger to the control
  plane, which is the metrics pipeline: it stays on unless Telemetry disables every metric of that mode
  and no access log is configured for it either. The providers, as istiod's telemetry_logging.go builds
  them: envoyFileAccessLog -> ``envoy.access_loggers.file``; envoyHttpAls -> ``http_grpc`` (log name
  ``http_envoy_accesslog``), envoyTcpAls -> a tcp_grpc logger named ``envoy.tcp_grpc_access_log``
  (``tcp_envoy_accesslog``), envoyOtelAls -> ``open_telemetry`` (``otel_envoy_accesslog``, body = the
  text format, attributes = the labels, Envoy's built-in resource labels off), each
  streaming to ``outbound|<port>||<host>`` of the provider's service with the host as gRPC authority
  (istiod's LookupCluster, `xds.gen.ext_authz.lookup_cluster`; a service not in the registry drops that
  logger and is reported in the generation errors). As in istiod, every provider goes on HCMs and TCP
  proxies alike (an HTTP ALS on a TCP proxy logs entries without request data);
- `tcp_access_loggers(snapshot, proxy, direction)` -> ``TcpProxy.access_log`` (the same providers), with
  `tcp_access_log_options()` -> ``TcpProxy.access_log_options`` (an entry when the upstream connects
  and every `TCP_FLUSH_INTERVAL_S` while open, so TCP byte counters move on long connections);
- `grpc_stats_filter()`: the ``envoy.filters.http.grpc_stats`` HTTP filter (before the router), which
  counts gRPC messages into filter state for istio_request/response_messages_total, as in Istio;
- `tracing_config(snapshot, proxy, direction)` -> ``HttpConnectionManager.tracing`` (see
  `telemetry.tracing`; `tracing.configure_hcm` also sets the request-id extension Telemetry asks for);
- `static_clusters(xds_address, api_address)` -> bootstrap clusters `envoy_accesslog_service` (gRPC to
  the control plane's xDS port, its own HTTP/2 connection) and `zipkin` (the built-in span collector on
  the control plane's HTTP API). The loggers and the tracer name these clusters, so the bootstrap must
  carry them before LDS sends either (otherwise Envoy rejects the listeners).

`direction` is "outbound" (sidecar outbound listener and gateways: reporter=source) or "inbound"
(sidecar inbound listeners: reporter=destination); it becomes the gRPC log name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2 as otel_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.formatter.req_without_query.v3 import req_without_query_pb2
from envoy.type.tracing.v3 import custom_tag_pb2
from google.protobuf import any_pb2, duration_pb2

from isthmus.telemetry import accesslog, policy, statsmodule
from isthmus.telemetry.tracing import ZIPKIN_CLUSTER, tracing_config
from isthmus.xds.gen.clusters import missing_cluster
from isthmus.xds.gen.ext_authz import ProviderError, lookup_cluster

if TYPE_CHECKING:
    from isthmus.model.proxy import Proxy
    from isthmus.model.snapshot import Snapshot

__all__ = [
    "ALS_CLUSTER",
    "RUNTIME_FLAGS",
    "ZIPKIN_CLUSTER",
    "file_access_logs",
    "grpc_stats_filter",
    "http_access_loggers",
    "static_clusters",
    "tcp_access_log_options",
    "tcp_access_loggers",
    "tracing_config",
]

Direction = Literal["outbound", "inbound"]

ALS_CLUSTER = "envoy_accesslog_service"  # Istio's bootstrap name for an access-log service cluster
LOG_NAMES: dict[str, str] = {"outbound": "isthmus.outbound", "inbound": "isthmus.inbound"}
DIRECTION_OF_LOG_NAME = {v: k for k, v in LOG_NAMES.items()}
# Where the in-proxy metrics module keeps the metrics, the gRPC logger only sends failed requests and
# connections (for `isthmus logs` and explain), under these names: their entries are not counted again.
LOG_ONLY_NAMES: dict[str, str] = {"outbound": "isthmus.outbound.failed", "inbound": "isthmus.inbound.failed"}
DIRECTION_OF_LOG_ONLY_NAME = {v: k for k, v in LOG_ONLY_NAMES.items()}
FAILED_STATUS_RUNTIME_KEY = "isthmus.access_log.failed_min_status"
# UDP port, on the control plane's address, where in-proxy metrics modules report (see `statsmodule`).
STATS_PORT = 15014
# Node metadata the agent sets when its Envoy has the in-proxy metrics module: "IP:PORT" to report to.
STATS_COLLECTOR_KEY = "ISTHMUS_STATS_COLLECTOR"
# The agent setting (ProxyConfig environmentVariables / MeshConfig defaultConfig.proxyMetadata) for the
# in-proxy metrics module: on unless it says "false" (then the gRPC access log carries the metrics).
PROXY_METRICS_KEY = "ISTHMUS_PROXY_METRICS"
GRPC_STATS_FILTER = "envoy.filters.http.grpc_stats"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
# Batching: Envoy sends a StreamAccessLogsMessage when this many bytes are buffered or every interval.
# Larger batches cost the control plane less per entry; the interval bounds how stale metrics are.
BUFFER_SIZE_BYTES = 64 * 1024
BUFFER_FLUSH_INTERVAL_S = 1.0
TCP_FLUSH_INTERVAL_S = 5.0

# Bootstrap runtime keys for the Zipkin tracer: Envoy posts spans every 5 spans by default, which costs
# a POST per few requests under load; batch up to 100 spans (or every flush interval, 1 s here).
RUNTIME_FLAGS: dict[str, str] = {
    "tracing.zipkin.min_flush_spans": "100",
    "tracing.zipkin.flush_interval_ms": "1000",
}

# What each entry carries beyond Envoy's standard fields. Formatter tags (`value`) cost the most per
# request, so only what nothing else exposes uses one: the upstream certificate SANs, and the routed
# cluster (the entry's own upstream_cluster is empty when no host was picked: FI, UH, UO, ...); the
# rest are header tags and logged response headers/trailers. Inbound, the upstream is the local app
# over plaintext, so its SANs are always empty and those two tags are left out.
_CLUSTER_TAG = {accesslog.TAG_UPSTREAM_CLUSTER: "%UPSTREAM_CLUSTER_RAW%"}
_FORMATTER_TAGS: dict[str, dict[str, str]] = {
    "outbound": {
        accesslog.TAG_UPSTREAM_PEER_SAN: "%UPSTREAM_PEER_URI_SAN%",
        accesslog.TAG_UPSTREAM_LOCAL_SAN: "%UPSTREAM_LOCAL_URI_SAN%",
        **_CLUSTER_TAG,
    },
    "inbound": _CLUSTER_TAG,
}
_REQUEST_HEADER_TAGS = {accesslog.TAG_CONTENT_TYPE: "content-type"}
RESPONSE_HEADERS_TO_LOG = ("x-envoy-upstream-service-time", "grpc-status")
RESPONSE_TRAILERS_TO_LOG = ("grpc-status",)


def _pack(message: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def common_config(
    direction: Direction,
    tags: Mapping[str, str],
    cluster: str = ALS_CLUSTER,
    *,
    grpc_stats: bool = False,
    header_tags: Mapping[str, str] | None = None,
    log_name: str | None = None,
) -> als_pb2.CommonGrpcAccessLogConfig:
    cfg = als_pb2.CommonGrpcAccessLogConfig(
        log_name=log_name or LOG_NAMES[direction],
        transport_api_version=config_source_pb2.V3,
        buffer_flush_interval=_duration(BUFFER_FLUSH_INTERVAL_S),
    )
    cfg.grpc_service.envoy_grpc.CopyFrom(grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster))
    cfg.buffer_size_bytes.value = BUFFER_SIZE_BYTES
    cfg.custom_tags.extend(custom_tag_pb2.CustomTag(tag=k, value=v) for k, v in tags.items())
    for tag, header in (header_tags or {}).items():
        cfg.custom_tags.add(tag=tag).request_header.name = header
    if grpc_stats:
        cfg.filter_state_objects_to_log.append(GRPC_STATS_FILTER)
    return cfg


def http_grpc_logger(
    direction: Direction,
    cluster: str = ALS_CLUSTER,
    request_headers: tuple[str, ...] = (),
    *,
    failed_only: bool = False,
) -> accesslog_pb2.AccessLog:
    """The gRPC logger to the control plane; `failed_only`: the failed requests' entries, under the log
    name of entries that are only logs (where the in-proxy module keeps the metrics)."""
    cfg = als_pb2.HttpGrpcAccessLogConfig(
        common_config=common_config(
            direction,
            _FORMATTER_TAGS[direction],
            cluster,
            grpc_stats=True,
            header_tags=_REQUEST_HEADER_TAGS,
            log_name=LOG_ONLY_NAMES[direction] if failed_only else None,
        ),
        additional_request_headers_to_log=request_headers,
        additional_response_headers_to_log=RESPONSE_HEADERS_TO_LOG,
        additional_response_trailers_to_log=RESPONSE_TRAILERS_TO_LOG,
    )
    log = accesslog_pb2.AccessLog(name="envoy.access_loggers.http_grpc", typed_config=_pack(cfg))
    if failed_only:
        log.filter.CopyFrom(_failed_filter(http=True))
    return log


def tcp_grpc_logger(
    direction: Direction, cluster: str = ALS_CLUSTER, *, failed_only: bool = False
) -> accesslog_pb2.AccessLog:
    cfg = als_pb2.TcpGrpcAccessLogConfig(
        common_config=common_config(
            direction,
            _FORMATTER_TAGS[direction],
            cluster,
            log_name=LOG_ONLY_NAMES[direction] if failed_only else None,
        )
    )
    log = accesslog_pb2.AccessLog(name="envoy.access_loggers.tcp_grpc", typed_config=_pack(cfg))
    if failed_only:
        log.filter.CopyFrom(_failed_filter(http=False))
    return log


# The requests the module leaves to the gRPC logger: every content-type starting so (gRPC, gRPC-Web),
# a string prefix being cheaper per request than a regex. The module skips the same ones, so each
# request is counted once; the control plane still tells gRPC from gRPC-Web (`core._is_grpc`).
GRPC_CONTENT_TYPE_PREFIX = "application/grpc"


def _grpc_filter(*, invert: bool) -> accesslog_pb2.AccessLogFilter:
    out = accesslog_pb2.AccessLogFilter()
    m = out.header_filter.header
    m.name = "content-type"
    m.string_match.prefix = GRPC_CONTENT_TYPE_PREFIX
    m.invert_match = invert
    m.treat_missing_header_as_empty = True
    return out


def _failed_filter(*, http: bool) -> accesslog_pb2.AccessLogFilter:
    """A request answered >= 400 or with a response flag (any flag: an empty flag list), gRPC ones left
    out (they have their own logger); a connection with a response flag. The status and flags come
    first: for the usual request (neither) the header is not looked at."""
    flagged = accesslog_pb2.AccessLogFilter(response_flag_filter=accesslog_pb2.ResponseFlagFilter())
    if not http:
        return flagged
    status = accesslog_pb2.AccessLogFilter()
    cmp = status.status_code_filter.comparison
    cmp.op = accesslog_pb2.ComparisonFilter.GE
    cmp.value.default_value = 400
    cmp.value.runtime_key = FAILED_STATUS_RUNTIME_KEY
    failed = accesslog_pb2.AccessLogFilter()
    failed.or_filter.filters.extend((status, flagged))
    out = accesslog_pb2.AccessLogFilter()
    out.and_filter.filters.extend((failed, _grpc_filter(invert=True)))
    return out


def stats_collector(proxy: Proxy) -> tuple[str, int] | None:
    """Where the proxy's in-proxy metrics module reports (node metadata from its agent); None when its
    Envoy runs without the module."""
    value = proxy.metadata.get(STATS_COLLECTOR_KEY)
    if not isinstance(value, str) or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def file_access_logs(snapshot: Snapshot, path: str | None = None) -> list[accesslog_pb2.AccessLog]:
    """MeshConfig accessLogFile / accessLogEncoding / accessLogFormat, as istiod builds them (to `path`
    instead when given: the built-in ``envoy`` provider)."""
    mesh = snapshot.mesh
    path = path or mesh.access_log_file
    if not path:
        return []
    fal = file_pb2.FileAccessLog(path=path)
    if (mesh.access_log_encoding or "TEXT").upper() == "JSON":
        fmt = json.loads(mesh.access_log_format) if mesh.access_log_format else accesslog.JSON_LOG_FORMAT
        fal.log_format.json_format.update(fmt)
    else:
        text = mesh.access_log_format or accesslog.TEXT_LOG_FORMAT
        if not text.endswith("\n"):
            text += "\n"
        fal.log_format.text_format_source.inline_string = text
    return [accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=_pack(fal))]


_CEL_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_CEL_COMPREHENSION = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")


def uses_cel_comprehension(expression: str) -> bool:
    """Whether a CEL expression calls a comprehension macro (outside string literals)."""
    return bool(_CEL_COMPREHENSION.search(_CEL_STRING.sub("''", expression)))


def cel_filter(expression: str) -> accesslog_pb2.AccessLogFilter:
    """An access-log filter evaluating a CEL expression (Telemetry ``accessLogging.filter.expression``)."""
    out = accesslog_pb2.AccessLogFilter()
    out.extension_filter.name = CEL_FILTER
    out.extension_filter.typed_config.Pack(
        cel_pb2.ExpressionFilter(expression=expression), deterministic=True
    )
    return out


# --- Telemetry gRPC log providers (envoyHttpAls, envoyTcpAls, envoyOtelAls) ------------------------------
# As istiod's telemetry_logging.go builds them: default log names, default filter state, the service's
# outbound cluster with the service host as the gRPC authority, Envoy's default batching.

HTTP_GRPC_LOGGER = "envoy.access_loggers.http_grpc"
TCP_GRPC_PROVIDER_LOGGER = "envoy.tcp_grpc_access_log"  # istiod's TCPEnvoyALSName
OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
HTTP_ALS_LOG_NAME = "http_envoy_accesslog"
TCP_ALS_LOG_NAME = "tcp_envoy_accesslog"
OTEL_ALS_LOG_NAME = "otel_envoy_accesslog"
# istiod's envoyStateToLog (the peer metadata istio-proxy's metadata exchange puts in filter state; plain
# Envoy has none, so the entries simply lack them) and envoyWasmStateToLog for the OTel logger.
PEER_FILTER_STATE = ("upstream_peer", "downstream_peer")
OTEL_FILTER_STATE = (
    *PEER_FILTER_STATE,
    "wasm.upstream_peer",
    "wasm.upstream_peer_id",
    "wasm.downstream_peer",
    "wasm.downstream_peer_id",
)
REQ_WITHOUT_QUERY = "%REQ_WITHOUT_QUERY"
REQ_WITHOUT_QUERY_FORMATTER = "envoy.formatter.req_without_query"


@dataclass(frozen=True)
class _Target:
    """Where a provider's logs go: the service host (gRPC authority) and its outbound cluster."""

    hostname: str
    cluster: str


def _provider_common(
    log_name: str, target: _Target, filter_state: Sequence[str]
) -> als_pb2.CommonGrpcAccessLogConfig:
    cfg = als_pb2.CommonGrpcAccessLogConfig(
        log_name=log_name,
        transport_api_version=config_source_pb2.V3,
        filter_state_objects_to_log=filter_state,
    )
    cfg.grpc_service.envoy_grpc.CopyFrom(
        grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=target.cluster, authority=target.hostname)
    )
    return cfg


def _http_als(body: Any, target: _Target) -> accesslog_pb2.AccessLog:
    """istiod's httpGrpcAccessLogFromTelemetry."""
    cfg = als_pb2.HttpGrpcAccessLogConfig(
        common_config=_provider_common(
            body.log_name or HTTP_ALS_LOG_NAME, target, body.filter_state_objects_to_log or PEER_FILTER_STATE
        ),
        additional_request_headers_to_log=body.additional_request_headers_to_log,
        additional_response_headers_to_log=body.additional_response_headers_to_log,
        additional_response_trailers_to_log=body.additional_response_trailers_to_log,
    )
    return accesslog_pb2.AccessLog(name=HTTP_GRPC_LOGGER, typed_config=_pack(cfg))


def _tcp_als(body: Any, target: _Target) -> accesslog_pb2.AccessLog:
    """istiod's tcpGrpcAccessLogFromTelemetry."""
    cfg = als_pb2.TcpGrpcAccessLogConfig(
        common_config=_provider_common(
            body.log_name or TCP_ALS_LOG_NAME, target, body.filter_state_objects_to_log or PEER_FILTER_STATE
        )
    )
    return accesslog_pb2.AccessLog(name=TCP_GRPC_PROVIDER_LOGGER, typed_config=_pack(cfg))


def _otel_als(body: Any, target: _Target) -> accesslog_pb2.AccessLog:
    """istiod's openTelemetryLog / buildOpenTelemetryAccessLogConfig: the text format is the log body
    (Istio's text format when unset, taken as given: no newline added), the labels its attributes."""
    fmt = body.log_format
    text = (fmt.text if fmt is not None else None) or accesslog.TEXT_LOG_FORMAT
    labels = dict(fmt.labels or {}) if fmt is not None else {}
    cfg = otel_pb2.OpenTelemetryAccessLogConfig(
        common_config=_provider_common(body.log_name or OTEL_ALS_LOG_NAME, target, OTEL_FILTER_STATE),
        disable_builtin_labels=True,
    )
    cfg.body.string_value = text
    for key in sorted(labels):
        cfg.attributes.values.add(key=key).value.string_value = _attribute_value(labels[key])
    if any(REQ_WITHOUT_QUERY in v for v in (text, *map(_attribute_value, labels.values()))):
        cfg.formatters.add(name=REQ_WITHOUT_QUERY_FORMATTER).typed_config.Pack(
            req_without_query_pb2.ReqWithoutQuery(), deterministic=True
        )
    return accesslog_pb2.AccessLog(name=OTEL_LOGGER, typed_config=_pack(cfg))


def _attribute_value(value: Any) -> str:
    """istiod's ConvertStructToAttributeKeyValues reads each label as a string: any other JSON value
    becomes empty (MeshConfig validation warns about those)."""
    return value if isinstance(value, str) else ""


_ALS_BUILDERS: dict[str, Callable[[Any, _Target], accesslog_pb2.AccessLog]] = {
    "envoy_http_als": _http_als,
    "envoy_tcp_als": _tcp_als,
    "envoy_otel_als": _otel_als,
}


def _file_provider_log(snapshot: Snapshot, provider: policy.Provider) -> accesslog_pb2.AccessLog:
    if provider.builtin:
        # Istio's default mesh config defines `envoy` as envoyFileAccessLog{path: /dev/stdout}: it takes
        # MeshConfig's accessLogEncoding / accessLogFormat but never its accessLogFile, which is only the
        # fallback when no Telemetry logs (the proxy's stdout is its envoy.log here).
        return file_access_logs(snapshot, policy.STDOUT)[0]
    body = provider.body
    path = getattr(body, "path", None) or policy.STDOUT
    fmt = getattr(body, "log_format", None)
    omit = bool(getattr(body, "omit_empty_values", None))
    if fmt is None and not omit and provider.name == policy.BUILTIN_LOG_PROVIDER:
        # istiod's telemetryAccessLog: a provider named `envoy` without a format (nor omitEmptyValues)
        # takes MeshConfig's accessLogEncoding / accessLogFormat.
        return file_access_logs(snapshot, path)[0]
    fal = file_pb2.FileAccessLog(path=path)
    labels = getattr(fmt, "labels", None) if fmt is not None else None
    text = getattr(fmt, "text", None) if fmt is not None else None
    if labels is not None:
        # istiod's buildFileAccessJSONLogFormat: empty labels mean Istio's default JSON format.
        fal.log_format.json_format.update(dict(labels) or accesslog.JSON_LOG_FORMAT)
    else:
        text = text or accesslog.TEXT_LOG_FORMAT
        if not text.endswith("\n"):
            text += "\n"
        fal.log_format.text_format_source.inline_string = text
    # istiod's telemetryAccessLog: fields whose value is empty are left out (JSON) or empty (text).
    fal.log_format.omit_empty_values = omit
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=_pack(fal))


def _provider_log(
    snapshot: Snapshot, proxy: Proxy, provider: policy.Provider
) -> accesslog_pb2.AccessLog | None:
    """The Envoy access logger of one Telemetry provider (None: left out, and reported)."""
    if provider.kind == "envoy_file_access_log":
        return _file_provider_log(snapshot, provider)
    target = _als_target(snapshot, proxy, provider)
    if target is None:
        return None
    return _ALS_BUILDERS[provider.kind](provider.body, target)


def _als_target(snapshot: Snapshot, proxy: Proxy, provider: policy.Provider) -> _Target | None:
    """istiod's LookupCluster for a gRPC log provider: ``outbound|<port>||<host>`` of the service it
    names. istiod drops the logger when the service is not found (and only logs it); Isthmus also reports
    it in the snapshot's generation errors."""
    body = provider.body
    try:
        hostname, cluster = lookup_cluster(snapshot, body.service, int(body.port or 0))
    except ProviderError as exc:
        policy.report(
            snapshot,
            proxy,
            "accessLogging",
            f"access log provider {provider.name!r} ({provider.kind}): {exc}; it is left out",
        )
        return None
    _check_in_cds(snapshot, proxy, provider, cluster)
    return _Target(hostname, cluster)


def _check_in_cds(snapshot: Snapshot, proxy: Proxy, provider: policy.Provider, cluster: str) -> None:
    """Envoy takes a gRPC logger whose cluster it lacks (its gRPC client skips the cluster check) but
    drops every entry, as an Istio proxy does: report it so the silence has a reason."""
    reason = missing_cluster(snapshot, proxy, cluster)
    if reason is not None:
        policy.report(
            snapshot,
            proxy,
            "accessLogging",
            f"access log provider {provider.name!r} ({provider.kind}): {reason}, so Envoy drops its logs",
        )


def _provider_logs(snapshot: Snapshot, proxy: Proxy, direction: Direction) -> list[accesslog_pb2.AccessLog]:
    """Telemetry's access-log providers (istiod puts every one on HCMs and TCP proxies alike), else
    MeshConfig's accessLogFile."""
    providers = policy.access_log_providers(snapshot, proxy, policy.mode_of(direction))
    if providers is None:
        # No Telemetry access logging: MeshConfig's file log, as istiod does. An empty list is Telemetry
        # turning access logs off (for this mode), MeshConfig's file log included.
        return file_access_logs(snapshot)
    out = []
    for provider, expression in providers:
        if expression and uses_cel_comprehension(expression):
            # istiod's validation (cel-go) accepts the comprehension macros; Envoy builds its CEL
            # evaluator without comprehension support and NACKs the listener ("Comprehension support is
            # disabled"). Logging nothing for this provider is what the filter can be trusted to allow.
            policy.report(
                snapshot,
                proxy,
                "accessLogging",
                f"access log provider {provider.name!r}: Envoy cannot evaluate the filter's comprehension "
                f"macros (all, exists, exists_one, map, filter) in {expression!r}; it is left out",
            )
            continue
        log = _provider_log(snapshot, proxy, provider)
        if log is None:
            continue
        if expression:
            log.filter.CopyFrom(cel_filter(expression))
        out.append(log)
    return out


def _metrics(snapshot: Snapshot, proxy: Proxy, direction: Direction) -> policy.MetricsPolicy:
    return policy.metrics_policy(snapshot, proxy, policy.mode_of(direction))


def http_access_loggers(
    snapshot: Snapshot,
    proxy: Proxy,
    direction: Direction,
    *,
    als: bool = True,
    cluster: str = ALS_CLUSTER,
) -> list[accesslog_pb2.AccessLog]:
    """For ``HttpConnectionManager.access_log``: the file logs (if configured) and the metrics pipeline:
    the in-proxy module (where the proxy has it and Telemetry keeps Istio's default metrics) with a gRPC
    logger of failed requests, else the gRPC logger of every request."""
    out = _provider_logs(snapshot, proxy, direction)
    metrics = _metrics(snapshot, proxy, direction)
    if not als:
        return out
    collector = stats_collector(proxy) if metrics.is_default else None
    if collector is not None:
        # The module skips gRPC (and gRPC-Web) requests: their message counts are in the grpc_stats
        # filter state, which its ABI cannot read, so their entries keep feeding the metrics.
        out.append(statsmodule.access_logger(collector, proxy.id, direction, skip_grpc=True, source=proxy.ip))
        grpc = http_grpc_logger(direction, cluster)
        grpc.filter.CopyFrom(_grpc_filter(invert=False))
        out += (grpc, http_grpc_logger(direction, cluster, failed_only=True))
    elif metrics.enabled or out:
        out.append(http_grpc_logger(direction, cluster, metrics.headers()))
    return out


def tcp_access_loggers(
    snapshot: Snapshot,
    proxy: Proxy,
    direction: Direction,
    *,
    als: bool = True,
    cluster: str = ALS_CLUSTER,
) -> list[accesslog_pb2.AccessLog]:
    """For ``TcpProxy.access_log``: the file logs (if configured) and the metrics pipeline, as
    `http_access_loggers`."""
    out = _provider_logs(snapshot, proxy, direction)
    if not als:
        return out
    metrics = _metrics(snapshot, proxy, direction)
    collector = stats_collector(proxy) if metrics.is_default else None
    if collector is not None:
        out.append(statsmodule.access_logger(collector, proxy.id, direction, source=proxy.ip))
        out.append(tcp_grpc_logger(direction, cluster, failed_only=True))
    elif metrics.enabled or out:
        out.append(tcp_grpc_logger(direction, cluster))
    return out


def tcp_access_log_options() -> tcp_proxy_pb2.TcpProxy.TcpAccessLogOptions:
    """For ``TcpProxy.access_log_options``: log on upstream connect and periodically (Istio reports TCP
    metrics while connections are open)."""
    return tcp_proxy_pb2.TcpProxy.TcpAccessLogOptions(
        flush_access_log_on_connected=True,
        access_log_flush_interval=_duration(TCP_FLUSH_INTERVAL_S),
    )


def grpc_stats_filter() -> hcm.HttpFilter:
    """``envoy.filters.http.grpc_stats`` with filter state: gRPC message counts for the access log."""
    cfg = grpc_stats_pb2.FilterConfig(emit_filter_state=True)
    cfg.stats_for_all_methods.value = False
    return hcm.HttpFilter(name=GRPC_STATS_FILTER, typed_config=_pack(cfg))


def _static_cluster(name: str, address: tuple[str, int], *, http2: bool) -> dict[str, Any]:
    host, port = address
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"protocol": "TCP", "address": host, "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        opts = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        cluster["typed_extension_protocol_options"] = {
            opts: {
                "@type": f"type.googleapis.com/{opts}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
        cluster["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 300}}
    return cluster


def static_clusters(
    xds_address: tuple[str, int], api_address: tuple[str, int] | None = None
) -> list[dict[str, Any]]:
    """Bootstrap clusters (JSON dicts, for `build_bootstrap(extra_static_clusters=...)`): the gRPC
    access-log service on the control plane's xDS port, and the built-in Zipkin collector on its API."""
    out = [_static_cluster(ALS_CLUSTER, xds_address, http2=True)]
    if api_address is not None:
        out.append(_static_cluster(ZIPKIN_CLUSTER, api_address, http2=False))
    return out
