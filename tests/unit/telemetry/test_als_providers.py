"""Telemetry access-log providers envoyHttpAls, envoyTcpAls and envoyOtelAls, against istiod's
``pilot/pkg/model/telemetry_logging.go`` (httpGrpcAccessLogFromTelemetry, tcpGrpcAccessLogFromTelemetry,
openTelemetryLog / buildOpenTelemetryAccessLogConfig, LookupCluster) and its tests' expected shapes."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2 as otel_pb2
from telemetry_helpers import GATEWAY, REVIEWS, mesh, snap, tel

from isthmus.api import loader
from isthmus.api.validation import validate_issues
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import accesslog, policy
from isthmus.telemetry import envoy as tenvoy

ROOT = "istio-system"
ALS_HOST = "als.istio-system.svc.cluster.local"
OTEL_HOST = "otel.observability.svc.cluster.local"
ALS_CLUSTER = f"outbound|9811||{ALS_HOST}"
OTEL_CLUSTER = f"outbound|4317||{OTEL_HOST}"

COLLECTORS = f"""
apiVersion: v1
kind: Service
metadata: {{name: als, namespace: {ROOT}}}
spec:
  selector: {{app: als}}
  ports: [{{name: grpc, port: 9811}}]
---
apiVersion: v1
kind: Service
metadata: {{name: otel, namespace: observability}}
spec:
  selector: {{app: otel}}
  ports: [{{name: grpc-otlp, port: 4317}}]
"""

PROVIDERS = f"""extensionProviders:
- {{name: http-als, envoyHttpAls: {{service: {ALS_HOST}, port: 9811}}}}
- {{name: tcp-als, envoyTcpAls: {{service: {ROOT}/{ALS_HOST}, port: 9811}}}}
- {{name: otel, envoyOtelAls: {{service: {OTEL_HOST}, port: 4317}}}}
"""

HTTP_GRPC = "envoy.access_loggers.http_grpc"
TCP_GRPC = "envoy.tcp_grpc_access_log"
OTEL = "envoy.access_loggers.open_telemetry"


def _snap(providers: str, logging: str, *extra: str) -> Snapshot:
    return snap(COLLECTORS, mesh(providers), tel("t", ROOT, logging), *extra)


def _using(*names: str) -> str:
    return "accessLogging: [{providers: [" + ", ".join(f"{{name: {n}}}" for n in names) + "]}]"


def _unpack(log: Any, message: Any) -> Any:
    out = message()
    assert log.typed_config.Unpack(out)
    return out


def _providers(logs: list[Any]) -> dict[str, Any]:
    """The provider loggers (not Isthmus's own metrics ALS, which logs to its bootstrap cluster)."""
    out = {}
    for log in logs:
        if log.name == HTTP_GRPC:
            cfg = _unpack(log, als_pb2.HttpGrpcAccessLogConfig)
            if cfg.common_config.grpc_service.envoy_grpc.cluster_name == tenvoy.ALS_CLUSTER:
                continue
            out[log.name] = (cfg, log)
        elif log.name == TCP_GRPC:
            out[log.name] = (_unpack(log, als_pb2.TcpGrpcAccessLogConfig), log)
        elif log.name == OTEL:
            out[log.name] = (_unpack(log, otel_pb2.OpenTelemetryAccessLogConfig), log)
    return out


def _common(common: Any, log_name: str, cluster: str, host: str) -> tuple[str, ...]:
    """Check istiod's CommonGrpcAccessLogConfig (log name, cluster, host as authority, API V3); its
    filter state objects."""
    assert common.log_name == log_name
    assert common.grpc_service.envoy_grpc.cluster_name == cluster
    assert common.grpc_service.envoy_grpc.authority == host
    assert common.transport_api_version == 2  # V3
    return tuple(common.filter_state_objects_to_log)


def _errors(s: Snapshot) -> str:
    return " | ".join(s.generation_errors.values())


# --- envoyHttpAls ---------------------------------------------------------------------------------------


def test_http_als_defaults_as_istiod() -> None:
    s = _snap(PROVIDERS, _using("http-als"))
    ((cfg, log),) = _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")).values()
    common = cfg.common_config
    assert log.name == HTTP_GRPC and not log.HasField("filter")
    state = _common(common, "http_envoy_accesslog", ALS_CLUSTER, ALS_HOST)
    assert state == ("upstream_peer", "downstream_peer")
    # istiod leaves batching to Envoy's defaults.
    assert not common.HasField("buffer_flush_interval") and not common.HasField("buffer_size_bytes")
    assert not cfg.additional_request_headers_to_log and not cfg.additional_response_headers_to_log
    assert not s.generation_errors


def test_http_als_fields() -> None:
    providers = f"""extensionProviders:
- name: http-als
  envoyHttpAls:
    service: {ALS_HOST}
    port: 9811
    logName: my-log
    filterStateObjectsToLog: [a.b]
    additionalRequestHeadersToLog: [x-req]
    additionalResponseHeadersToLog: [x-resp]
    additionalResponseTrailersToLog: [grpc-message]
"""
    s = _snap(providers, _using("http-als"))
    ((cfg, _),) = _providers(tenvoy.http_access_loggers(s, REVIEWS, "inbound")).values()
    assert cfg.common_config.log_name == "my-log"
    assert list(cfg.common_config.filter_state_objects_to_log) == ["a.b"]
    assert list(cfg.additional_request_headers_to_log) == ["x-req"]
    assert list(cfg.additional_response_headers_to_log) == ["x-resp"]
    assert list(cfg.additional_response_trailers_to_log) == ["grpc-message"]


# --- envoyTcpAls ------------------------------------------------------------------------------------------


def test_tcp_als_with_namespace_slash_host() -> None:
    s = _snap(PROVIDERS, _using("tcp-als"))
    ((cfg, log),) = _providers(tenvoy.tcp_access_loggers(s, REVIEWS, "outbound")).values()
    assert log.name == TCP_GRPC
    state = _common(cfg.common_config, "tcp_envoy_accesslog", ALS_CLUSTER, ALS_HOST)
    assert state == ("upstream_peer", "downstream_peer")


def test_every_provider_goes_on_hcms_and_tcp_proxies() -> None:
    # istiod's buildAccessLogFromTelemetry: one list of loggers for setHTTPAccessLog and setTCPAccessLog.
    s = _snap(PROVIDERS, _using("http-als", "otel", "tcp-als"))
    for build in (tenvoy.http_access_loggers, tenvoy.tcp_access_loggers):
        for proxy, direction in ((REVIEWS, "outbound"), (REVIEWS, "inbound"), (GATEWAY, "outbound")):
            assert set(_providers(build(s, proxy, direction))) == {HTTP_GRPC, TCP_GRPC, OTEL}
    # Isthmus's own metrics logger is still there, untouched.
    logs = tenvoy.http_access_loggers(s, REVIEWS, "outbound")
    own = [
        log
        for log in logs
        if log.name == HTTP_GRPC
        and _unpack(log, als_pb2.HttpGrpcAccessLogConfig).common_config.grpc_service.envoy_grpc.cluster_name
        == tenvoy.ALS_CLUSTER
    ]
    assert len(own) == 1 and logs[-1] is own[0]


# --- envoyOtelAls ------------------------------------------------------------------------------------------


def test_otel_als_defaults_as_istiod() -> None:
    s = _snap(PROVIDERS, _using("otel"))
    ((cfg, log),) = _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")).values()
    assert log.name == OTEL
    assert _common(cfg.common_config, "otel_envoy_accesslog", OTEL_CLUSTER, OTEL_HOST) == (
        "upstream_peer",
        "downstream_peer",
        "wasm.upstream_peer",
        "wasm.upstream_peer_id",
        "wasm.downstream_peer",
        "wasm.downstream_peer_id",
    )
    assert cfg.disable_builtin_labels
    assert cfg.body.string_value == accesslog.TEXT_LOG_FORMAT
    assert not cfg.attributes.values and not cfg.formatters


def test_otel_als_body_and_sorted_string_attributes() -> None:
    providers = f"""extensionProviders:
- name: otel
  envoyOtelAls:
    service: {OTEL_HOST}
    port: 4317
    logName: otel-log
    logFormat:
      text: "%REQ_WITHOUT_QUERY(:PATH)% %RESPONSE_CODE%"
      labels: {{status: "%RESPONSE_CODE%", authority: "%REQ(:AUTHORITY)%", n: 5}}
"""
    s = _snap(providers, _using("otel"))
    ((cfg, _),) = _providers(tenvoy.tcp_access_loggers(s, REVIEWS, "inbound")).values()
    assert cfg.common_config.log_name == "otel-log"
    assert cfg.body.string_value == "%REQ_WITHOUT_QUERY(:PATH)% %RESPONSE_CODE%"  # no newline added
    # istiod's ConvertStructToAttributeKeyValues: sorted keys, string values (others become empty).
    assert [(kv.key, kv.value.string_value) for kv in cfg.attributes.values] == [
        ("authority", "%REQ(:AUTHORITY)%"),
        ("n", ""),
        ("status", "%RESPONSE_CODE%"),
    ]
    assert [f.name for f in cfg.formatters] == ["envoy.formatter.req_without_query"]


# --- shared behaviour ---------------------------------------------------------------------------------------


def test_cel_filter_applies_to_grpc_providers() -> None:
    logging = "accessLogging: [{providers: [{name: http-als}, {name: otel}], filter: {expression: 'response.code >= 400'}}]"
    s = _snap(PROVIDERS, logging)
    for cfg_log in _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")).values():
        log = cfg_log[1]
        assert log.filter.extension_filter.name == tenvoy.CEL_FILTER
        cel = cel_pb2.ExpressionFilter()
        log.filter.extension_filter.typed_config.Unpack(cel)
        assert cel.expression == "response.code >= 400"


def test_missing_service_drops_the_logger_and_is_reported() -> None:
    providers = """extensionProviders:
- {name: http-als, envoyHttpAls: {service: nosuch.default.svc.cluster.local, port: 9811}}
- {name: otel, envoyOtelAls: {service: other/als.istio-system.svc.cluster.local, port: 9811}}
"""
    s = _snap(providers, _using("http-als", "otel"))
    assert _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")) == {}
    errors = _errors(s)
    assert "'http-als' (envoy_http_als): could not find service nosuch.default.svc.cluster.local" in errors
    assert "'otel' (envoy_otel_als): could not find service als.istio-system.svc.cluster.local" in errors
    # Still a Telemetry access-log config: MeshConfig's accessLogFile is not used instead (as istiod).
    assert policy.access_log_providers(s, REVIEWS, "CLIENT") is not None


def test_host_in_two_namespaces_needs_the_namespace() -> None:
    # ServiceEntry hosts can repeat across namespaces: a bare hostname is then ambiguous (LookupCluster).
    se = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: als-a, namespace: default}
spec:
  hosts: [als.example.com]
  ports: [{number: 9811, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: als-b, namespace: other}
spec:
  hosts: [als.example.com]
  ports: [{number: 9811, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""
    amb = "extensionProviders:\n- {name: http-als, envoyHttpAls: {service: als.example.com, port: 9811}}\n"
    s = _snap(amb, _using("http-als"), se)
    assert _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")) == {}
    assert "found als.example.com in multiple namespaces ['default', 'other']" in _errors(s)
    exact = "extensionProviders:\n- {name: http-als, envoyHttpAls: {service: other/als.example.com, port: 9811}}\n"
    s = _snap(exact, _using("http-als"), se)
    ((cfg, _),) = _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")).values()
    assert cfg.common_config.grpc_service.envoy_grpc.cluster_name == "outbound|9811||als.example.com"


def test_cluster_missing_from_cds_is_reported() -> None:
    # A port the service does not have: Envoy takes the logger but has no cluster to send to.
    providers = (
        f"extensionProviders:\n- {{name: http-als, envoyHttpAls: {{service: {ALS_HOST}, port: 9999}}}}\n"
    )
    s = _snap(providers, _using("http-als"))
    ((cfg, _),) = _providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound")).values()
    assert cfg.common_config.grpc_service.envoy_grpc.cluster_name == f"outbound|9999||{ALS_HOST}"
    assert f"cluster outbound|9999||{ALS_HOST} is not in this proxy's config" in _errors(s)


def test_disabled_provider_is_left_out() -> None:
    logging = "accessLogging: [{providers: [{name: http-als}]}, {match: {mode: SERVER}, disabled: true}]"
    s = _snap(PROVIDERS, logging)
    assert set(_providers(tenvoy.http_access_loggers(s, REVIEWS, "outbound"))) == {HTTP_GRPC}
    assert _providers(tenvoy.http_access_loggers(s, REVIEWS, "inbound")) == {}


def test_default_providers_access_logging() -> None:
    s = snap(COLLECTORS, mesh(PROVIDERS + "defaultProviders: {accessLogging: [otel]}\n"))
    assert set(_providers(tenvoy.tcp_access_loggers(s, REVIEWS, "inbound"))) == {OTEL}


# --- the API: strict models and validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("envoyHttpAls", "bufferSizeBytes"),
        ("envoyTcpAls", "additionalRequestHeadersToLog"),
        ("envoyOtelAls", "filterStateObjectsToLog"),
    ],
)
def test_unknown_field_is_refused_with_its_name(kind: str, field: str) -> None:
    doc = mesh(
        f"extensionProviders:\n- {{name: p, {kind}: {{service: {ALS_HOST}, port: 9811, {field}: [x]}}}}\n"
    )
    with pytest.raises(Exception, match=field):
        loader.load_text(doc, "mesh.yaml")


def test_unknown_otel_log_format_field_is_refused() -> None:
    doc = mesh(
        f"extensionProviders:\n- {{name: p, envoyOtelAls: {{service: {ALS_HOST}, port: 9811, "
        "logFormat: {text: x, json: {}}}}\n"
    )
    with pytest.raises(Exception, match="json"):
        loader.load_text(doc, "mesh.yaml")


def _warnings(spec: str) -> list[str]:
    (res,) = loader.load_text(mesh(spec), "mesh.yaml")
    return [f"{i.path}: {i.message}" for i in validate_issues(res)]


def test_validation_of_grpc_log_providers() -> None:
    msgs = _warnings(
        """extensionProviders:
- {name: a, envoyHttpAls: {port: 9811}}
- {name: b, envoyTcpAls: {service: 'not a host', port: 0}}
- {name: c, envoyOtelAls: {service: 'ns/otel.example.com', port: 4317, logFormat: {labels: {n: 1, s: x}}}}
- {name: d, envoyOtelAls: {service: '10.0.0.1', port: 4317}}
"""
    )
    text = " | ".join(msgs)
    assert "extensionProviders[0].envoyHttpAls: service must not be empty" in text
    assert "extensionProviders[1].envoyTcpAls.service: invalid service fmt not a host" in text
    assert "extensionProviders[1].envoyTcpAls.port: port number 0 must be in the range 1..65535" in text
    assert "extensionProviders[2].envoyOtelAls.logFormat.labels.n: label n is not a string" in text
    assert not [m for m in msgs if "extensionProviders[2]" in m and "labels.s" in m]
    assert not [m for m in msgs if "extensionProviders[3]" in m]
