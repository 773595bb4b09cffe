"""Envoy config from the telemetry package: loggers, gRPC stats filter, tracer, bootstrap clusters."""

from __future__ import annotations

from envoy.config.trace.v3 import opentelemetry_pb2, zipkin_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from telemetry_helpers import PRODUCTPAGE, snapshot

from isthmus.agent.bootstrap import build_bootstrap
from isthmus.telemetry import accesslog, tracing
from isthmus.telemetry import envoy as tenvoy

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
"""


def mesh(spec: str) -> object:
    return snapshot(MESH + "\n".join("  " + line for line in spec.strip().splitlines()))


def test_http_loggers_without_and_with_an_access_log_file() -> None:
    (als,) = tenvoy.http_access_loggers(snapshot(), PRODUCTPAGE, "outbound")
    assert als.name == "envoy.access_loggers.http_grpc"
    cfg = als_pb2.HttpGrpcAccessLogConfig()
    assert als.typed_config.Unpack(cfg)
    common = cfg.common_config
    assert common.log_name == "isthmus.outbound"
    assert common.grpc_service.envoy_grpc.cluster_name == tenvoy.ALS_CLUSTER
    assert common.transport_api_version == 2  # V3
    assert common.buffer_size_bytes.value == tenvoy.BUFFER_SIZE_BYTES
    assert common.buffer_flush_interval.ToMilliseconds() == 1000
    assert list(common.filter_state_objects_to_log) == [tenvoy.GRPC_STATS_FILTER]
    tags = {t.tag: t for t in common.custom_tags}
    assert tags[accesslog.TAG_UPSTREAM_PEER_SAN].value == "%UPSTREAM_PEER_URI_SAN%"
    assert tags[accesslog.TAG_UPSTREAM_LOCAL_SAN].value == "%UPSTREAM_LOCAL_URI_SAN%"
    assert tags[accesslog.TAG_CONTENT_TYPE].request_header.name == "content-type"
    assert list(cfg.additional_response_headers_to_log) == ["x-envoy-upstream-service-time", "grpc-status"]
    assert list(cfg.additional_response_trailers_to_log) == ["grpc-status"]

    file_log, als = tenvoy.http_access_loggers(mesh("accessLogFile: /dev/stdout"), PRODUCTPAGE, "inbound")
    # Inbound the upstream is the app over plaintext: no SAN formatter tags (always empty), the cluster's.
    assert als.typed_config.Unpack(cfg)
    tags = {t.tag: t for t in cfg.common_config.custom_tags}
    assert set(tags) == {accesslog.TAG_UPSTREAM_CLUSTER, accesslog.TAG_CONTENT_TYPE}
    fal = file_pb2.FileAccessLog()
    assert file_log.typed_config.Unpack(fal)
    assert (
        fal.path == "/dev/stdout"
        and fal.log_format.text_format_source.inline_string == accesslog.TEXT_LOG_FORMAT
    )
    assert tenvoy.http_access_loggers(snapshot(), PRODUCTPAGE, "inbound", als=False) == []


def test_json_file_log() -> None:
    (file_log, _) = tenvoy.tcp_access_loggers(
        mesh("accessLogFile: /tmp/x.log\naccessLogEncoding: JSON"), PRODUCTPAGE, "outbound"
    )
    fal = file_pb2.FileAccessLog()
    file_log.typed_config.Unpack(fal)
    assert dict(fal.log_format.json_format)["response_code"] == "%RESPONSE_CODE%"


def test_tcp_logger_and_options() -> None:
    (als,) = tenvoy.tcp_access_loggers(snapshot(), PRODUCTPAGE, "inbound")
    cfg = als_pb2.TcpGrpcAccessLogConfig()
    assert als.name == "envoy.access_loggers.tcp_grpc" and als.typed_config.Unpack(cfg)
    assert cfg.common_config.log_name == "isthmus.inbound"
    assert [t.tag for t in cfg.common_config.custom_tags] == [accesslog.TAG_UPSTREAM_CLUSTER]
    (als,) = tenvoy.tcp_access_loggers(snapshot(), PRODUCTPAGE, "outbound")
    assert als.typed_config.Unpack(cfg) and len(cfg.common_config.custom_tags) == 3
    opts = tenvoy.tcp_access_log_options()
    assert opts.flush_access_log_on_connected and opts.access_log_flush_interval.ToSeconds() == 5


def test_grpc_stats_filter_emits_filter_state() -> None:
    from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2

    f = tenvoy.grpc_stats_filter()
    cfg = config_pb2.FilterConfig()
    assert f.name == "envoy.filters.http.grpc_stats" and f.typed_config.Unpack(cfg) and cfg.emit_filter_state


def test_no_tracer_by_default_as_istio_since_1_22() -> None:
    # istiod keeps the HCM's tracing block (sampling, Istio's tags) but no provider: no span is made.
    t = tracing.tracing_config(snapshot(), PRODUCTPAGE)
    assert t is not None and not t.HasField("provider")
    assert t.random_sampling.value == 1.0 and t.client_sampling.value == 100.0  # Istio's default 1%
    tags = {c.tag: c.literal.value for c in t.custom_tags}
    assert tags["istio.canonical_service"] == "productpage" and tags["istio.namespace"] == "default"


def test_an_empty_tracing_block_asks_for_no_tracer() -> None:
    """Istio's `tracing: {}` (headers_test.go's proxy config, expecting no trace headers): no tracer."""
    t = tracing.tracing_config(mesh("defaultConfig:\n  tracing: {}"), PRODUCTPAGE)
    assert t is not None and not t.HasField("provider")


def test_tracing_settings_without_an_address_go_to_the_builtin_collector() -> None:
    t = tracing.tracing_config(mesh("defaultConfig:\n  tracing: {maxPathTagLength: 256}"), PRODUCTPAGE)
    assert t is not None
    assert t.random_sampling.value == 1.0 and t.client_sampling.value == 100.0
    assert t.provider.name == "envoy.tracers.zipkin"
    z = zipkin_pb2.ZipkinConfig()
    t.provider.typed_config.Unpack(z)
    assert z.collector_cluster == tracing.ZIPKIN_CLUSTER and z.collector_endpoint == "/api/v2/spans"
    assert z.collector_endpoint_version == zipkin_pb2.ZipkinConfig.HTTP_JSON and z.trace_id_128bit
    assert z.trace_context_option == zipkin_pb2.ZipkinConfig.USE_B3_WITH_W3C_PROPAGATION
    tags = {c.tag: c.literal.value for c in t.custom_tags}
    assert tags["istio.canonical_service"] == "productpage" and tags["istio.namespace"] == "default"
    assert t.max_path_tag_length.value == 256


def test_sampling_enable_tracing_and_custom_tags_from_meshconfig() -> None:
    snap = mesh(
        """
defaultConfig:
  tracing:
    sampling: 10.5
    maxPathTagLength: 99
    customTags:
      team: {literal: {value: blue}}
      user: {header: {name: x-user, defaultValue: anon}}
"""
    )
    t = tracing.tracing_config(snap, PRODUCTPAGE)
    assert t is not None and t.random_sampling.value == 10.5 and t.max_path_tag_length.value == 99
    custom = {c.tag: c for c in t.custom_tags}
    assert custom["team"].literal.value == "blue"
    assert (
        custom["user"].request_header.name == "x-user"
        and custom["user"].request_header.default_value == "anon"
    )
    assert tracing.tracing_config(mesh("enableTracing: false"), PRODUCTPAGE) is None


ZIPKIN_SVC = """
---
apiVersion: v1
kind: Service
metadata: {name: zipkin, namespace: istio-system}
spec:
  selector: {app: zipkin}
  ports: [{name: http, port: 9411}]
"""


def test_zipkin_and_opentelemetry_providers() -> None:
    snap = snapshot(
        MESH
        + """  extensionProviders:
  - name: zk
    zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
  - name: otel
    opentelemetry: {service: istio-system/otel-collector.istio-system.svc.cluster.local, port: 4317}
  defaultProviders: {tracing: [zk]}
"""
    )
    t = tracing.tracing_config(snap, PRODUCTPAGE)
    assert t is not None
    z = zipkin_pb2.ZipkinConfig()
    t.provider.typed_config.Unpack(z)
    assert z.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    assert z.collector_hostname == "zipkin.istio-system.svc.cluster.local"

    snap = snapshot(
        MESH
        + """  extensionProviders:
  - name: otel
    opentelemetry: {service: istio-system/otel-collector.istio-system.svc.cluster.local, port: 4317}
  defaultProviders: {tracing: [otel]}
"""
    )
    t = tracing.tracing_config(snap, PRODUCTPAGE)
    assert t is not None and t.provider.name == "envoy.tracers.opentelemetry"
    o = opentelemetry_pb2.OpenTelemetryConfig()
    t.provider.typed_config.Unpack(o)
    assert (
        o.grpc_service.envoy_grpc.cluster_name
        == "outbound|4317||otel-collector.istio-system.svc.cluster.local"
    )
    assert o.service_name == "productpage.default"


def test_legacy_zipkin_address() -> None:
    snap = snapshot(
        MESH
        + """  defaultConfig:
    tracing:
      zipkin: {address: "zipkin.istio-system:9411"}
"""
        + ZIPKIN_SVC
    )
    t = tracing.tracing_config(snap, PRODUCTPAGE)
    z = zipkin_pb2.ZipkinConfig()
    assert t is not None and t.provider.typed_config.Unpack(z)
    assert z.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    # Not a mesh service: the built-in collector.
    snap = mesh('defaultConfig:\n  tracing:\n    zipkin: {address: "10.1.1.1:9411"}')
    t = tracing.tracing_config(snap, PRODUCTPAGE)
    assert (
        t is not None and t.provider.typed_config.Unpack(z) and z.collector_cluster == tracing.ZIPKIN_CLUSTER
    )


def test_static_clusters_fit_the_bootstrap() -> None:
    clusters = tenvoy.static_clusters(("127.1.0.1", 15010), ("127.1.0.1", 15014))
    assert [c["name"] for c in clusters] == [tenvoy.ALS_CLUSTER, tracing.ZIPKIN_CLUSTER]
    als = clusters[0]
    assert "http2_protocol_options" in str(als["typed_extension_protocol_options"])
    assert als["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ] == {
        "protocol": "TCP",
        "address": "127.1.0.1",
        "port_value": 15010,
    }
    assert "typed_extension_protocol_options" not in clusters[1]
    boot = build_bootstrap(PRODUCTPAGE, xds_address=("127.1.0.1", 15010), extra_static_clusters=clusters)
    names = [c["name"] for c in boot["static_resources"]["clusters"]]
    assert tenvoy.ALS_CLUSTER in names and tracing.ZIPKIN_CLUSTER in names


def test_enable_istio_tags_false_in_mesh_config_drops_istios_tags() -> None:
    on = tracing.tracing_config(mesh("defaultConfig:\n  tracing: {sampling: 1}"), PRODUCTPAGE)
    off = tracing.tracing_config(
        mesh("defaultConfig:\n  tracing: {sampling: 1, enableIstioTags: false}"), PRODUCTPAGE
    )
    assert on is not None and off is not None
    assert any(c.tag.startswith("istio.") for c in on.custom_tags)
    assert not any(c.tag.startswith("istio.") for c in off.custom_tags)


def test_zipkin_provider_timeout_and_headers_use_an_http_service() -> None:
    """istiod's zipkinConfig (Istio 1.29+ proxies): a provider's timeout and headers need the collector as
    an HttpService; envName headers are the proxy's environment (%ENVIRONMENT()%)."""
    spec = (
        "extensionProviders:\n"
        "- name: zk\n"
        "  zipkin:\n"
        "    service: zipkin.istio-system.svc.cluster.local\n"
        "    port: 9411\n"
        "    timeout: 2s\n"
        "    headers: [{name: x-token, value: abc}, {name: x-env, envName: ZK_TOKEN}]\n"
        "defaultProviders: {tracing: [zk]}\n"
    )
    t = tracing.tracing_config(mesh(spec), PRODUCTPAGE)
    assert t is not None
    z = zipkin_pb2.ZipkinConfig()
    t.provider.typed_config.Unpack(z)
    svc = z.collector_service
    assert not z.collector_cluster and not z.collector_endpoint
    assert svc.http_uri.cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    assert svc.http_uri.uri == "http://zipkin.istio-system.svc.cluster.local/api/v2/spans"
    assert svc.http_uri.timeout.ToMilliseconds() == 2000
    assert [(h.header.key, h.header.value) for h in svc.request_headers_to_add] == [
        ("x-token", "abc"),
        ("x-env", "%ENVIRONMENT(ZK_TOKEN)%"),
    ]
    # Without timeout and headers: the collector fields, as before.
    plain = tracing.tracing_config(
        mesh(
            spec.replace("    timeout: 2s\n", "").replace(
                "    headers: [{name: x-token, value: abc}, {name: x-env, envName: ZK_TOKEN}]\n", ""
            )
        ),
        PRODUCTPAGE,
    )
    assert plain is not None
    plain.provider.typed_config.Unpack(z := zipkin_pb2.ZipkinConfig())
    assert z.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local" and not z.HasField(
        "collector_service"
    )
