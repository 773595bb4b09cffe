"""The Telemetry API (telemetry.istio.io): scope and merging as istiod does it, and what it changes in the
generated Envoy config (tracers, file access logs with CEL filters) and in the control plane's metrics."""

from __future__ import annotations

import pytest
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from prometheus_client import CollectorRegistry, generate_latest
from telemetry_helpers import (
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
    REVIEWS_IP,
    file_logs,
    http_entry,
    mesh,
    message,
    snap,
    tcp_entry,
    tel,
)

from isthmus.analyze import analyze
from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry, accesslog, istio, policy, tracing
from isthmus.telemetry import envoy as tenvoy

# --- scope ----------------------------------------------------------------------------------------------


def test_scope_root_namespace_workload_and_oldest_wins() -> None:
    s = snap(
        tel("mesh-default", "istio-system", "tracing: [{randomSamplingPercentage: 1}]"),
        tel("ns-new", "default", "tracing: [{randomSamplingPercentage: 3}]", "2024-02-01T00:00:00Z"),
        tel("ns-old", "default", "tracing: [{randomSamplingPercentage: 2}]", "2024-01-01T00:00:00Z"),
        tel(
            "reviews",
            "default",
            "selector: {matchLabels: {app: reviews}}\ntracing: [{randomSamplingPercentage: 4}]",
        ),
        # A selector in the root namespace does not reach other namespaces' workloads.
        tel(
            "root-sel",
            "istio-system",
            "selector: {matchLabels: {app: reviews}}\ntracing: [{disableSpanReporting: true}]",
        ),
    )
    pp = policy.applicable_to(s, PRODUCTPAGE)
    assert [c.name for c in pp.configs] == ["mesh-default", "ns-old"]
    rv = policy.applicable_to(s, REVIEWS)
    assert [c.name for c in rv.configs] == ["mesh-default", "ns-old", "reviews"]
    assert policy.tracing_spec(s, PRODUCTPAGE, "CLIENT").sampling == 2
    spec = policy.tracing_spec(s, REVIEWS, "SERVER")
    assert spec.sampling == 4 and not spec.disabled


def test_no_telemetry_keeps_meshconfig_behaviour() -> None:
    s = snap()
    assert policy.tracing_spec(s, PRODUCTPAGE, "CLIENT") is None
    assert policy.access_log_providers(s, PRODUCTPAGE, "CLIENT") is None
    assert policy.metrics_policy(s, PRODUCTPAGE, "SERVER").is_default


# --- tracing ----------------------------------------------------------------------------------------------

ZIPKIN_MESH = mesh(
    """
extensionProviders:
- name: zk
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: ls
  lightstep: {service: ls.istio-system.svc.cluster.local, port: 8080, accessToken: t}
"""
)


def test_tracing_modes_provider_sampling_and_tags() -> None:
    s = snap(
        ZIPKIN_MESH,
        tel(
            "t",
            "default",
            """
tracing:
- providers: [{name: zk}]
  randomSamplingPercentage: 100
  customTags:
    team: {literal: {value: payments}}
    user: {header: {name: x-user, defaultValue: anon}}
    pod: {environment: {name: POD_NAME}}
- match: {mode: SERVER}
  disableSpanReporting: true
""",
        ),
    )
    out = tracing.tracing_config(s, PRODUCTPAGE, "outbound")
    assert out is not None and out.random_sampling.value == 100
    z = zipkin_pb2.ZipkinConfig()
    assert out.provider.typed_config.Unpack(z)
    assert z.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    tags = {t.tag: t for t in out.custom_tags}
    assert tags["team"].literal.value == "payments"
    assert (
        tags["user"].request_header.name == "x-user" and tags["user"].request_header.default_value == "anon"
    )
    assert tags["pod"].environment.name == "POD_NAME"
    assert tags["istio.canonical_service"].literal.value == "productpage"
    # SERVER mode: span reporting disabled -> no tracer on inbound HCMs.
    assert tracing.tracing_config(s, PRODUCTPAGE, "inbound") is None


def test_implicit_builtin_collector_and_sampling_zero() -> None:
    s = snap(
        tel(
            "t",
            "default",
            "selector: {matchLabels: {app: reviews}}\ntracing: [{randomSamplingPercentage: 0}]",
        )
    )
    out = tracing.tracing_config(s, REVIEWS, "outbound")
    z = zipkin_pb2.ZipkinConfig()
    assert out.provider.typed_config.Unpack(z) and z.collector_cluster == tracing.ZIPKIN_CLUSTER
    assert out.random_sampling.value == 0
    # Other workloads keep MeshConfig's sampling (Istio's 1%).
    assert tracing.tracing_config(s, PRODUCTPAGE, "outbound").random_sampling.value == 1.0


def test_unsupported_tracing_provider_is_reported_not_ignored() -> None:
    # Lightstep (deprecated in Istio, no tracer in Envoy 1.40); datadog once stood here, now translated.
    s = snap(ZIPKIN_MESH, tel("t", "default", "tracing: [{providers: [{name: ls}]}]"))
    assert tracing.tracing_config(s, PRODUCTPAGE, "outbound") is None
    (msg,) = [v for k, v in s.generation_errors.items() if k.startswith("Telemetry tracing")]
    assert "'ls' (lightstep) is not supported" in msg


def test_request_id_sampling_and_istio_tags() -> None:
    s = snap(tel("t", "default", "tracing: [{useRequestIdForTraceSampling: false, enableIstioTags: false}]"))
    m = hcm.HttpConnectionManager()
    tracing.configure_hcm(m, s, PRODUCTPAGE, "outbound")
    cfg = uuid_pb2.UuidRequestIdConfig()
    assert m.request_id_extension.typed_config.Unpack(cfg)
    assert cfg.use_request_id_for_trace_sampling.value is False
    assert not [t for t in m.tracing.custom_tags if t.tag.startswith("istio.")]


# --- access logging -----------------------------------------------------------------------------------------


def test_envoy_provider_with_cel_filter_per_namespace() -> None:
    s = snap(
        tel(
            "logs",
            "default",
            "accessLogging: [{providers: [{name: envoy}], filter: {expression: 'response.code >= 500'}}]",
        )
    )
    ((fal, expr),) = file_logs(tenvoy.http_access_loggers(s, PRODUCTPAGE, "inbound"))
    assert fal.path == "/dev/stdout" and expr == "response.code >= 500"
    assert fal.log_format.text_format_source.inline_string == accesslog.TEXT_LOG_FORMAT
    assert file_logs(tenvoy.tcp_access_loggers(s, PRODUCTPAGE, "outbound"))[0][1] == "response.code >= 500"
    # The ALS logger (the metrics pipeline) stays.
    assert tenvoy.http_access_loggers(s, PRODUCTPAGE, "inbound")[-1].name == "envoy.access_loggers.http_grpc"
    # Other namespaces: no file log.
    gw_logs = tenvoy.http_access_loggers(
        s, Proxy("g", "gateway", "1.2.3.4", "istio-system", "gw"), "outbound"
    )
    assert file_logs(gw_logs) == []


def test_workload_disables_and_mode_limits_and_file_provider() -> None:
    s = snap(
        mesh(
            """
accessLogFile: /tmp/mesh.log
extensionProviders:
- name: json-file
  envoyFileAccessLog: {path: /tmp/json.log, logFormat: {labels: {code: '%RESPONSE_CODE%'}}}
"""
        ),
        tel("mesh", "istio-system", "accessLogging: [{providers: [{name: envoy}]}]"),
        tel("ns", "default", "accessLogging: [{providers: [{name: json-file}], match: {mode: SERVER}}]"),
        tel("rv", "default", "selector: {matchLabels: {app: reviews}}\naccessLogging: [{disabled: true}]"),
    )
    # productpage SERVER: the namespace's provider replaced the mesh's.
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s, PRODUCTPAGE, "inbound"))
    assert fal.path == "/tmp/json.log" and dict(fal.log_format.json_format) == {"code": "%RESPONSE_CODE%"}
    # productpage CLIENT: the namespace names no provider for that mode, so the mesh's envoy provider
    # stays in scope (istiod's mergeLogs picks providers per mode).
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s, PRODUCTPAGE, "outbound"))
    assert fal.path == "/dev/stdout"  # the envoy provider's own path, not accessLogFile
    # reviews: its Telemetry disables logging; without any Telemetry logging, accessLogFile applies.
    assert policy.access_log_providers(s, REVIEWS, "SERVER") == []
    assert file_logs(tenvoy.http_access_loggers(s, REVIEWS, "inbound")) == []
    ((fal, _),) = file_logs(
        tenvoy.http_access_loggers(snap(mesh("accessLogFile: /tmp/mesh.log")), REVIEWS, "inbound")
    )
    assert fal.path == "/tmp/mesh.log"
    # The built-in envoy provider (Istio's default mesh config: path /dev/stdout) writes to the proxy's
    # stdout even when accessLogFile is set: that is only the no-Telemetry fallback.
    s3 = snap(
        mesh("accessLogFile: /tmp/mesh.log"),
        tel("mesh", "istio-system", "accessLogging: [{providers: [{name: envoy}]}]"),
    )
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s3, REVIEWS, "inbound"))
    assert fal.path == "/dev/stdout"
    s2 = snap(
        tel("mesh", "istio-system", "accessLogging: [{providers: [{name: envoy}]}]"),
        tel("rv", "default", "selector: {matchLabels: {app: reviews}}\naccessLogging: [{disabled: true}]"),
    )
    assert file_logs(tenvoy.http_access_loggers(s2, REVIEWS, "inbound")) == []
    assert len(file_logs(tenvoy.http_access_loggers(s2, PRODUCTPAGE, "inbound"))) == 1


# --- metrics ---------------------------------------------------------------------------------------------------


def test_metrics_merge_deep_per_metric_and_mode() -> None:
    s = snap(
        tel(
            "mesh",
            "istio-system",
            """
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT}
    tagOverrides: {request_protocol: {operation: REMOVE}}
""",
        ),
        tel(
            "rv",
            "default",
            """
selector: {matchLabels: {app: reviews}}
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT, mode: SERVER}
    disabled: true
  - match: {metric: REQUEST_DURATION}
    tagOverrides: {team: {value: "'payments'"}, user: {value: "request.headers['x-user']"}}
""",
        ),
    )
    server = policy.metrics_policy(s, REVIEWS, "SERVER")
    client = policy.metrics_policy(s, REVIEWS, "CLIENT")
    assert server.overrides[istio.REQUESTS_TOTAL].disabled
    assert server.overrides[istio.REQUESTS_TOTAL].tags == (("request_protocol", None),)
    assert not client.overrides[istio.REQUESTS_TOTAL].disabled
    assert server.headers() == ("x-user",)
    # The ALS logger logs the headers tag values read.
    als = tenvoy.http_access_loggers(s, REVIEWS, "inbound")[-1]
    cfg = als_pb2.HttpGrpcAccessLogConfig()
    als.typed_config.Unpack(cfg)
    assert list(cfg.additional_request_headers_to_log) == ["x-user"]
    assert policy.metrics_policy(s, PRODUCTPAGE, "SERVER").overrides.keys() == {istio.REQUESTS_TOTAL}


def test_all_metrics_disabled_turns_the_als_off_unless_logs_need_it() -> None:
    off = """
metrics:
- overrides: [{match: {metric: ALL_METRICS, mode: CLIENT}, disabled: true}]
"""
    s = snap(tel("t", "default", off))
    assert not policy.metrics_policy(s, PRODUCTPAGE, "CLIENT").enabled
    assert policy.metrics_policy(s, PRODUCTPAGE, "SERVER").is_default
    assert tenvoy.http_access_loggers(s, PRODUCTPAGE, "outbound") == []
    assert tenvoy.tcp_access_loggers(s, PRODUCTPAGE, "outbound") == []
    assert len(tenvoy.http_access_loggers(s, PRODUCTPAGE, "inbound")) == 1
    s = snap(tel("t", "default", off + "accessLogging: [{providers: [{name: envoy}]}]"))
    names = [log.name for log in tenvoy.http_access_loggers(s, PRODUCTPAGE, "outbound")]
    assert names == ["envoy.access_loggers.file", "envoy.access_loggers.http_grpc"]


def _scrape(t: Telemetry) -> str:
    registry = CollectorRegistry()
    registry.register(t.collector())
    return generate_latest(registry).decode()


def _inbound_entry(**kw):
    return http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream=f"{PRODUCTPAGE_IP}:40000",
        local=f"{REVIEWS_IP}:9080",
        **kw,
    )


def _feed(t: Telemetry, proxy: Proxy, direction: str, entries) -> None:
    msg = message(proxy, direction, list(entries))
    t.ingest(t.register_node(msg.identifier.node), direction, msg)


def test_control_plane_applies_disabled_and_tag_overrides() -> None:
    s = snap(
        tel(
            "rv",
            "default",
            """
selector: {matchLabels: {app: reviews}}
metrics:
- overrides:
  - match: {metric: REQUEST_COUNT, mode: SERVER}
    disabled: true
  - match: {metric: REQUEST_DURATION, mode: SERVER}
    tagOverrides:
      request_protocol: {operation: REMOVE}
      team: {value: "'payments'"}
      method: {value: request.method}
""",
        )
    )
    t = Telemetry(lambda: s)
    _feed(t, PRODUCTPAGE, "outbound", [http_entry()])
    _feed(t, REVIEWS, "inbound", [_inbound_entry(), _inbound_entry()])
    text = _scrape(t)
    requests = [line for line in text.splitlines() if line.startswith("istio_requests_total{")]
    assert len(requests) == 1 and 'reporter="source"' in requests[0]
    durations = [
        line
        for line in text.splitlines()
        if line.startswith("istio_request_duration_milliseconds_count{") and 'reporter="destination"' in line
    ]
    assert len(durations) == 1
    line = durations[0]
    assert 'team="payments"' in line and 'method="GET"' in line and "request_protocol" not in line
    assert line.endswith(" 2.0")
    # The other destination metrics keep Istio's labels.
    assert any(
        ln.startswith("istio_request_bytes_count{")
        and 'reporter="destination"' in ln
        and "request_protocol" in ln
        for ln in text.splitlines()
    )
    # A Telemetry change is picked up with the next snapshot.
    s2 = snap()
    t._snapshot_getter = lambda: s2
    _feed(t, REVIEWS, "inbound", [_inbound_entry()])
    assert (
        sum(
            'reporter="destination"' in ln
            for ln in _scrape(t).splitlines()
            if ln.startswith("istio_requests_total{")
        )
        == 1
    )


# --- admission and analysis ---------------------------------------------------------------------------------------


def _errors(text: str) -> list[str]:
    (res,) = loader.load_text(text, "t.yaml")
    return [e.message for e in check_supported(res)]


def test_admission_accepts_telemetry_and_refuses_what_it_cannot_honour() -> None:
    assert _errors(tel("t", "default", "tracing: [{randomSamplingPercentage: 10}]")) == []
    msgs = _errors(
        tel(
            "t",
            "default",
            """
targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]
metrics:
- reportingInterval: 5s
  overrides:
  - match: {customMetric: my_metric}
  - tagOverrides: {x: {value: "request.size > 10 ? 'big' : 'small'"}, bad-label: {operation: REMOVE}}
""",
        )
    )
    assert any("spec.targetRefs is not supported" in m for m in msgs)
    assert any("reportingInterval is not supported" in m for m in msgs)
    assert any("customMetric is not supported" in m for m in msgs)
    assert any("tagOverrides.x.value" in m and "not supported" in m for m in msgs)
    assert any("'bad-label' is not a valid Prometheus label name" in m for m in msgs)


@pytest.mark.parametrize("expression", ["response.code >= (500", "response.code >=", "request.host == 'a"])
def test_an_access_log_filter_envoy_cannot_parse_is_refused_at_admission(expression: str) -> None:
    # Envoy would reject the whole listener; Istio's webhook parses the CEL, and so analyze does too.
    report = loader.load_text_report(
        tel("t", "default", f"accessLogging: [{{filter: {{expression: {expression!r}}}}}]"), "t.yaml"
    )
    assert [(m.level, m.field) for m in report.messages] == [
        ("Error", "spec.accessLogging[0].filter.expression")
    ]
    assert "invalid filter: Syntax error" in report.messages[0].message
    assert (
        loader.load_text_report(
            tel("t", "default", "accessLogging: [{filter: {expression: 'response.code >= 500'}}]"), "t.yaml"
        ).messages
        == []
    )


@pytest.mark.parametrize("second_selector", ["", "selector: {matchLabels: {app: reviews}}\n"])
def test_analyzer_ist0159_ist0160(second_selector: str) -> None:
    docs = [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: reviews-1, namespace: default, labels: {app: reviews}}\n"
        "spec: {containers: [{name: c, image: x}]}\n",
        tel("a", "default", second_selector + "tracing: [{randomSamplingPercentage: 1}]"),
        tel("b", "default", second_selector + "tracing: [{randomSamplingPercentage: 2}]"),
    ]
    resources = loader.load_text("---\n".join(docs), "t.yaml")
    codes = {m.code for m in analyze(resources)}
    expected = "IST0159" if second_selector else "IST0160"
    assert expected in codes


def test_tcp_metrics_follow_the_policy() -> None:
    s = snap(
        tel(
            "t",
            "default",
            """
metrics:
- overrides:
  - match: {metric: TCP_OPENED_CONNECTIONS, mode: CLIENT}
    disabled: true
  - match: {metric: TCP_SENT_BYTES, mode: CLIENT}
    tagOverrides: {source_principal: {operation: REMOVE}}
""",
        )
    )
    t = Telemetry(lambda: s)
    msg = message(PRODUCTPAGE, "outbound", tcp=[tcp_entry(sent=10, received=20)])
    t.ingest(t.register_node(msg.identifier.node), "outbound", msg)
    text = _scrape(t)
    assert "istio_tcp_connections_opened_total{" not in text
    (closed,) = [ln for ln in text.splitlines() if ln.startswith("istio_tcp_connections_closed_total{")]
    assert closed.endswith(" 1.0") and "source_principal" in closed
    (sent,) = [ln for ln in text.splitlines() if ln.startswith("istio_tcp_sent_bytes_total{")]
    assert sent.endswith(" 10.0") and "source_principal" not in sent


def test_unknown_and_unsupported_providers_are_reported() -> None:
    s = snap(
        mesh(
            "extensionProviders: [{name: sd, stackdriver: {}}, {name: als, envoyHttpAls: {service: x, port: 9}}]"
        ),
        tel(
            "t",
            "default",
            """
metrics: [{providers: [{name: sd}]}]
accessLogging: [{providers: [{name: als}, {name: nosuch}]}]
""",
        ),
    )
    assert not policy.metrics_policy(s, PRODUCTPAGE, "SERVER").enabled
    # envoyHttpAls is supported; its service `x` is not in the registry, so the logger is left out.
    assert [p.name for p, _ in policy.access_log_providers(s, PRODUCTPAGE, "SERVER") or []] == ["als"]
    tenvoy.http_access_loggers(s, PRODUCTPAGE, "inbound")
    errors = " | ".join(s.generation_errors.values())
    assert "'sd' (stackdriver) is not supported" in errors
    assert "'als' (envoy_http_als): could not find service x in Istio service registry" in errors
    assert "'nosuch' is not defined" in errors
