from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

# Typed configs referenced by the bootstrap, so that ParseDict can resolve their @type.
import envoy.extensions.access_loggers.file.v3.file_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.resource_monitors.downstream_connections.v3.downstream_connections_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format

from isthmus.agent.bootstrap import build_bootstrap, service_cluster
from isthmus.agent.envoy import default_envoy_path
from isthmus.model.proxy import Proxy

IP = "127.1.0.7"
XDS = ("127.1.0.1", 15010)


def make_proxy(**kw: Any) -> Proxy:
    fields: dict[str, Any] = {
        "id": Proxy.node_id("sidecar", IP, "reviews-v2-0", "default"),
        "kind": "sidecar",
        "ip": IP,
        "namespace": "default",
        "instance": "reviews-v2-0",
        "workload": "reviews-v2",
        "labels": {"app": "reviews", "version": "v2"},
        "service_account": "bookinfo-reviews",
    }
    fields.update(kw)
    return Proxy(**fields)


def clusters_by_name(b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in b["static_resources"]["clusters"]}


def listeners_by_port(b: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {ls["address"]["socket_address"]["port_value"]: ls for ls in b["static_resources"]["listeners"]}


def endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]


def hcm(listener: dict[str, Any]) -> dict[str, Any]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_node_identity_and_metadata() -> None:
    proxy = make_proxy(metadata={"PROXY_CONFIG": {"tracing": {"sampling": 1.0}}})
    b = build_bootstrap(proxy, xds_address=XDS, concurrency=3, drain_time_s=7.5)
    node = b["node"]
    assert node["id"] == "sidecar~127.1.0.7~reviews-v2-0.default~default.svc.cluster.local"
    assert node["cluster"] == "reviews.default"  # Istio: the app label
    meta = node["metadata"]
    assert meta["NAMESPACE"] == "default" and meta["LABELS"] == {"app": "reviews", "version": "v2"}
    assert meta["SERVICE_ACCOUNT"] == "bookinfo-reviews" and meta["INSTANCE_IPS"] == IP
    assert meta["PROXY_CONFIG"] == {
        "tracing": {"sampling": 1.0},
        "discoveryAddress": "127.1.0.1:15010",
        "proxyAdminPort": 15000,
        "statusPort": 15021,
        "concurrency": 3,
        "drainDuration": "7.5s",
    }
    # The control plane reads the same proxy back from the node.
    back = Proxy.from_node(node["id"], meta)
    assert (back.kind, back.ip, back.namespace, back.instance, back.workload, dict(back.labels)) == (
        "sidecar",
        IP,
        "default",
        "reviews-v2-0",
        "reviews-v2",
        {"app": "reviews", "version": "v2"},
    )
    assert back.service_account == "bookinfo-reviews"


def test_service_cluster_name() -> None:
    assert service_cluster(make_proxy(workload="")) == "reviews.default"
    assert service_cluster(make_proxy()) == "reviews.default"  # the app label, not the workload reviews-v2
    assert service_cluster(make_proxy(labels={})) == "reviews-v2.default"
    assert service_cluster(make_proxy(workload="", labels={})) == "reviews-v2-0.default"
    b = build_bootstrap(make_proxy(), xds_address=XDS, cluster_name="istio-ingressgateway.istio-system")
    assert b["node"]["cluster"] == "istio-ingressgateway.istio-system"


def test_admin_on_pod_address() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    admin = b["admin"]
    assert admin["address"]["socket_address"] == {"protocol": "TCP", "address": IP, "port_value": 15000}
    assert admin["access_log"][0]["typed_config"]["path"] == "/dev/null"


def test_ads_over_static_xds_cluster() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    dyn = b["dynamic_resources"]
    # Delta xDS by default, as istio-agent since 1.22 (ISTIO_DELTA_XDS); state of the world on request.
    assert dyn["ads_config"]["api_type"] == "DELTA_GRPC"
    sotw = build_bootstrap(make_proxy(), xds_address=XDS, delta_xds=False)
    assert sotw["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    # The sidecar table over VHDS unless the node says otherwise (MeshConfig ISTHMUS_VHDS: "false").
    assert "ISTHMUS_VHDS" not in b["node"]["metadata"]
    inline = build_bootstrap(make_proxy(), xds_address=XDS, vhds=False)
    assert inline["node"]["metadata"]["ISTHMUS_VHDS"] == "false"
    assert dyn["ads_config"]["transport_api_version"] == "V3"
    assert dyn["ads_config"]["grpc_services"] == [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]
    for key in ("cds_config", "lds_config"):
        assert dyn[key] == {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    xds = clusters_by_name(b)["xds-grpc"]
    assert xds["type"] == "STATIC" and xds["connect_timeout"] == "1s"
    assert endpoint(xds)["socket_address"]["address"] == "127.1.0.1"
    assert endpoint(xds)["socket_address"]["port_value"] == 15010
    options = xds["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    assert xds["upstream_connection_options"]["tcp_keepalive"]["keepalive_time"] == 300
    assert {t["priority"] for t in xds["circuit_breakers"]["thresholds"]} == {"DEFAULT", "HIGH"}
    assert all(t["max_requests"] == 100000 for t in xds["circuit_breakers"]["thresholds"])


def test_upstream_connections_bind_the_pod_address() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    bind = b["cluster_manager"]["upstream_bind_config"]["source_address"]
    assert bind == {"address": IP, "port_value": 0}


def test_health_and_prometheus_listeners() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    clusters = clusters_by_name(b)
    listeners = listeners_by_port(b)
    admin = {"protocol": "TCP", "address": IP, "port_value": 15000}

    health = listeners[15021]
    assert health["name"] == f"{IP}_15021"
    assert health["address"]["socket_address"]["address"] == IP
    assert "traffic_direction" not in health  # an inbound-only drain leaves it serving
    route = hcm(health)["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route == {
        "match": {"prefix": "/healthz/ready"},
        "route": {"cluster": "agent", "prefix_rewrite": "/ready"},
    }
    assert endpoint(clusters["agent"])["socket_address"] == admin

    prom = listeners[15090]
    route = hcm(prom)["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route == {"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": "prometheus_stats"}}
    assert endpoint(clusters["prometheus_stats"])["socket_address"] == admin


def test_ports_are_parameters() -> None:
    b = build_bootstrap(
        make_proxy(), xds_address=XDS, admin_port=23000, health_port=23021, prometheus_port=23090
    )
    text = json.dumps(b)
    for port in ("15000", "15021", "15090"):
        assert port not in text
    assert set(listeners_by_port(b)) == {23021, 23090}
    assert b["admin"]["address"]["socket_address"]["port_value"] == 23000
    assert endpoint(clusters_by_name(b)["agent"])["socket_address"]["port_value"] == 23000


def test_optional_listeners_can_be_left_out() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS, health_port=None, prometheus_port=None)
    assert b["static_resources"]["listeners"] == []
    assert set(clusters_by_name(b)) == {"xds-grpc"}
    assert "statusPort" not in b["node"]["metadata"]["PROXY_CONFIG"]


def test_runtime_overload_and_stats() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    static, admin = b["layered_runtime"]["layers"]
    assert static["static_layer"]["re2.max_program_size.error_level"] == "32768"
    assert admin == {"name": "admin", "admin_layer": {}}
    (monitor,) = b["overload_manager"]["resource_monitors"]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"
    assert monitor["typed_config"]["max_active_downstream_connections"] == 2147483647
    assert b["stats_config"]["use_all_default_tags"] is False
    tags = {t["tag_name"] for t in b["stats_config"]["stats_tags"]}
    assert {"cluster_name", "response_code", "http_conn_manager_prefix", "listener_address"} <= tags


def test_tracing_sds_and_extra_clusters() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    assert "tracing" not in b
    assert "sds-grpc" not in clusters_by_name(b)

    zipkin_cluster = {
        "name": "zipkin",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "zipkin",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": "127.1.0.1", "port_value": 9411}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    tracing = {"http": {"name": "envoy.tracers.zipkin", "typed_config": {"collector_cluster": "zipkin"}}}
    extra = [zipkin_cluster]
    b = build_bootstrap(
        make_proxy(),
        xds_address=XDS,
        tracing=tracing,
        extra_static_clusters=extra,
        sds_socket="/tmp/x/sds.sock",
    )
    assert b["tracing"] == tracing and b["tracing"] is not tracing
    clusters = clusters_by_name(b)
    assert clusters["zipkin"] == zipkin_cluster and clusters["zipkin"] is not zipkin_cluster
    assert endpoint(clusters["sds-grpc"]) == {"pipe": {"path": "/tmp/x/sds.sock"}}
    assert "typed_extension_protocol_options" in clusters["sds-grpc"]


def test_parses_as_a_v3_bootstrap_message() -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS, sds_socket="/tmp/x/sds.sock")
    msg = json_format.ParseDict(b, bootstrap_pb2.Bootstrap())
    assert msg.node.id == b["node"]["id"]
    assert msg.cluster_manager.upstream_bind_config.source_address.address == IP


def _validate(tmp_path: Path, b: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(b))
    return subprocess.run(
        [str(default_envoy_path()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_envoy_validates_the_bootstrap(tmp_path: Path) -> None:
    tracing = {
        "http": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "xds-grpc",
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
            },
        }
    }
    t0 = time.monotonic()
    result = _validate(
        tmp_path,
        build_bootstrap(make_proxy(), xds_address=XDS, sds_socket=str(tmp_path / "sds"), tracing=tracing),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert time.monotonic() - t0 < 2, "validation got slow: move it to the e2e suite"
    gateway = make_proxy(kind="gateway", id=Proxy.node_id("gateway", IP, "gw-0", "istio-system"))
    result = _validate(
        tmp_path, build_bootstrap(gateway, xds_address=XDS, health_port=None, prometheus_port=None)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validate_rejects_a_broken_bootstrap(tmp_path: Path) -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    b["static_resources"]["clusters"][0]["connect_timeout"] = "soon"
    assert _validate(tmp_path, b).returncode != 0


def test_envoy_validate_rejects_unknown_fields(tmp_path: Path) -> None:
    b = build_bootstrap(make_proxy(), xds_address=XDS)
    b["admin"]["no_such_field"] = 1
    assert _validate(tmp_path, b).returncode != 0
