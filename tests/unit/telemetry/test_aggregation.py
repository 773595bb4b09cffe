"""ALS entries -> Istio metrics: labels exactly as istio-proxy sets them, histograms, TCP, retirement."""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from telemetry_helpers import (
    GATEWAY,
    GRPC_TAGS,
    PP_PRINCIPAL,
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
    REVIEWS_CLUSTER,
    REVIEWS_HOST,
    REVIEWS_IP,
    REVIEWS_PRINCIPAL,
    http_entry,
    message,
    snapshot,
    static_resolver,
    tcp_entry,
)

from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry, accesslog, istio

SOURCE_LABELS = {
    "reporter": "source",
    "source_workload": "productpage-v1",
    "source_canonical_service": "productpage",
    "source_canonical_revision": "v1",
    "source_workload_namespace": "default",
    "source_principal": "unknown",
    "source_app": "productpage",
    "source_version": "v1",
    "source_cluster": "Kubernetes",
    "destination_workload": "reviews-v2",
    "destination_workload_namespace": "default",
    "destination_principal": "unknown",
    "destination_app": "reviews",
    "destination_version": "v2",
    "destination_service": REVIEWS_HOST,
    "destination_canonical_service": "reviews",
    "destination_canonical_revision": "v2",
    "destination_service_name": "reviews",
    "destination_service_namespace": "default",
    "destination_cluster": "Kubernetes",
    "request_protocol": "http",
    "response_code": "200",
    "grpc_response_status": "",
    "response_flags": "-",
    "connection_security_policy": "unknown",
}


def telemetry() -> Telemetry:
    r = static_resolver()
    return Telemetry(resolver=lambda: r)


def feed(t: Telemetry, proxy: Proxy, direction: str, http: Any = (), tcp: Any = ()) -> None:
    msg = message(proxy, direction, list(http), list(tcp))
    t.ingest(t.register_node(msg.identifier.node), direction, msg)


def http_series(t: Telemetry, proxy_id: str | None = None) -> dict[tuple[str, ...], Any]:
    return t.metrics.merged(proxy_id).http


def only(d: dict) -> tuple[dict[str, str], Any]:
    assert len(d) == 1, list(d)
    key, value = next(iter(d.items()))
    names = istio.HTTP_LABELS if len(key) == len(istio.HTTP_LABELS) else istio.TCP_LABELS
    return dict(zip(names, key, strict=True)), value


def test_source_reporter_labels_are_istios() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", [http_entry()] * 3)
    labels, s = only(http_series(t))
    assert labels == SOURCE_LABELS
    assert s.requests == 3
    assert s.duration.count == 3 and s.duration.sum == 21
    assert s.request_bytes.sum == 360 and s.response_bytes.sum == 1020


def test_source_reporter_principals_come_from_the_upstream_certificates() -> None:
    t = telemetry()
    tags = {
        accesslog.TAG_UPSTREAM_PEER_SAN: REVIEWS_PRINCIPAL,
        accesslog.TAG_UPSTREAM_LOCAL_SAN: PP_PRINCIPAL,
    }
    feed(t, PRODUCTPAGE, "outbound", [http_entry(tags=tags)])
    labels, _ = only(http_series(t))
    assert labels == {
        **SOURCE_LABELS,
        "source_principal": PP_PRINCIPAL,
        "destination_principal": REVIEWS_PRINCIPAL,
    }


def test_destination_reporter_with_mutual_tls() -> None:
    t = telemetry()
    entry = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream=f"{PRODUCTPAGE_IP}:40000",
        local=f"{REVIEWS_IP}:9080",
        peer_san=PP_PRINCIPAL,
        local_san=REVIEWS_PRINCIPAL,
    )
    feed(t, REVIEWS, "inbound", [entry])
    labels, _ = only(http_series(t))
    assert labels == {
        **SOURCE_LABELS,
        "reporter": "destination",
        "source_principal": PP_PRINCIPAL,
        "destination_principal": REVIEWS_PRINCIPAL,
        "connection_security_policy": "mutual_tls",
    }


def test_destination_reporter_plaintext_and_unknown_source() -> None:
    t = telemetry()
    entry = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream="10.1.2.3:5555",
        local=f"{REVIEWS_IP}:9080",
    )
    feed(t, REVIEWS, "inbound", [entry])
    labels, _ = only(http_series(t))
    assert labels == {
        **SOURCE_LABELS,
        "reporter": "destination",
        "source_workload": "unknown",
        "source_canonical_service": "unknown",
        "source_canonical_revision": "latest",
        "source_workload_namespace": "unknown",
        "source_app": "unknown",
        "source_version": "unknown",
        "source_cluster": "unknown",
        "connection_security_policy": "none",
    }


def test_no_route_names_the_host_header_and_the_flag() -> None:
    t = telemetry()
    entry = http_entry(
        cluster="",
        upstream=None,
        route="",
        code=404,
        flags={"no_route_found": True},
        details="route_not_found",
    )
    feed(t, PRODUCTPAGE, "outbound", [entry])
    labels, _ = only(http_series(t))
    assert labels == {
        **SOURCE_LABELS,
        "destination_workload": "unknown",
        "destination_workload_namespace": "unknown",
        "destination_app": "unknown",
        "destination_version": "unknown",
        "destination_service": "reviews:9080",
        "destination_canonical_service": "unknown",
        "destination_canonical_revision": "latest",
        "destination_service_name": "reviews:9080",
        "destination_service_namespace": "unknown",
        "destination_cluster": "unknown",
        "response_code": "404",
        "response_flags": "NR",
    }


def test_response_flags_in_envoys_order() -> None:
    t = telemetry()
    flags = {
        "upstream_retry_limit_exceeded": True,
        "upstream_connection_failure": True,
        "no_healthy_upstream": True,
    }
    feed(t, PRODUCTPAGE, "outbound", [http_entry(code=503, flags=flags)])
    labels, _ = only(http_series(t))
    assert labels["response_flags"] == "UH,UF,URX"
    assert labels["response_code"] == "503"


def test_gateway_has_no_host_header_fallback() -> None:
    t = telemetry()
    entry = http_entry(
        cluster="", upstream=None, code=404, flags={"no_route_found": True}, authority="bookinfo.example"
    )
    feed(t, GATEWAY, "outbound", [entry])
    labels, _ = only(http_series(t))
    assert labels["reporter"] == "source"
    assert labels["source_workload"] == "istio-ingressgateway"
    assert labels["source_workload_namespace"] == "istio-system"
    assert labels["source_canonical_service"] == "istio-ingressgateway"
    assert labels["source_canonical_revision"] == "latest"
    # The gateway's own version label is unset: istio-proxy reports it as is, "" (not "unknown").
    assert labels["source_version"] == ""
    assert labels["destination_service"] == "unknown"
    assert labels["destination_service_name"] == "unknown"


def test_passthrough_and_blackhole_name_the_service() -> None:
    t = telemetry()
    passthrough = http_entry(
        cluster="PassthroughCluster", upstream="93.184.216.34:80", route="allow_any", authority="example.com"
    )
    blackhole = http_entry(
        cluster="BlackHoleCluster", upstream=None, route="block_all", code=502, authority="example.org"
    )
    feed(t, PRODUCTPAGE, "outbound", [passthrough, blackhole])
    by_name = {
        dict(zip(istio.HTTP_LABELS, k, strict=True))["destination_service_name"]: k for k in http_series(t)
    }
    assert set(by_name) == {"PassthroughCluster", "BlackHoleCluster"}
    p = dict(zip(istio.HTTP_LABELS, by_name["PassthroughCluster"], strict=True))
    assert p["destination_service"] == "example.com" and p["destination_workload"] == "unknown"
    b = dict(zip(istio.HTTP_LABELS, by_name["BlackHoleCluster"], strict=True))
    assert b["destination_service"] == "example.org" and b["response_code"] == "502"


def test_grpc_requests_status_and_messages() -> None:
    t = telemetry()
    feed(
        t,
        PRODUCTPAGE,
        "outbound",
        [http_entry(tags=GRPC_TAGS, grpc_messages=(1, 5), trailers={"grpc-status": "14"})] * 2,
    )
    labels, s = only(http_series(t))
    assert labels["request_protocol"] == "grpc"
    assert labels["grpc_response_status"] == "14"
    assert (s.request_messages, s.response_messages) == (2, 10)
    text = t.metrics_text().decode()
    assert "istio_request_messages_total{" in text and "istio_response_messages_total{" in text


def test_grpc_status_falls_back_like_envoy() -> None:
    t = telemetry()
    feed(
        t,
        PRODUCTPAGE,
        "outbound",
        [
            http_entry(tags=GRPC_TAGS, response_headers={"grpc-status": "5"}),  # trailers-only response
            http_entry(
                tags=GRPC_TAGS, code=503, flags={"no_healthy_upstream": True}
            ),  # no grpc-status: mapped
            # 200 without grpc-status: Envoy's httpToGrpcStatus(200) is UNKNOWN.
            http_entry(tags={accesslog.TAG_CONTENT_TYPE: "application/grpc+proto"}, code=200),
        ],
    )
    statuses = sorted(
        dict(zip(istio.HTTP_LABELS, k, strict=True))["grpc_response_status"] for k in http_series(t)
    )
    assert statuses == ["14", "2", "5"]


def test_plain_http_has_no_grpc_status_even_when_envoy_maps_one() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", [http_entry(code=503, response_headers={"grpc-status": "14"})])
    labels, s = only(http_series(t))
    assert labels["request_protocol"] == "http" and labels["grpc_response_status"] == ""
    assert "istio_request_messages_total{" not in t.metrics_text().decode()


def test_histogram_buckets_are_envoys() -> None:
    assert istio.BUCKET_LABELS == (
        "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000",
        "60000", "300000", "600000", "1800000", "3600000",
    )  # fmt: skip
    t = telemetry()
    durations = [0, 1, 2, 5, 7, 3_600_000, 3_600_001]
    feed(t, PRODUCTPAGE, "outbound", [http_entry(duration_ms=d) for d in durations])
    _, s = only(http_series(t))
    cumulative = dict(s.duration.cumulative())
    assert cumulative["0.5"] == 1  # 0 ms
    assert cumulative["1"] == 2  # le is inclusive
    assert cumulative["5"] == 4
    assert cumulative["10"] == 5
    assert cumulative["3600000"] == 6
    assert cumulative["+Inf"] == 7
    assert s.duration.sum == sum(durations)
    text = t.metrics_text().decode()
    lines = [x for x in text.splitlines() if x.startswith("istio_request_duration_milliseconds_bucket{")]
    assert [x.split('le="')[1].split('"')[0] for x in lines] == [*istio.BUCKET_LABELS, "+Inf"]
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    assert "# TYPE istio_requests_total counter" in text


def test_sub_millisecond_durations_are_truncated_like_istio() -> None:
    t = telemetry()
    e = http_entry()
    e.common_properties.duration.FromNanoseconds(900_000)
    feed(t, PRODUCTPAGE, "outbound", [e])
    _, s = only(http_series(t))
    assert s.duration.sum == 0 and dict(s.duration.cumulative())["0.5"] == 1


def test_intermediate_http_entries_are_not_counted() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", [http_entry(log_type=al.DownstreamPeriodic), http_entry()])
    _, s = only(http_series(t))
    assert s.requests == 1


def test_connect_tunnels_count_as_tcp_connections() -> None:
    t = telemetry()
    entry = http_entry(
        method=6,
        cluster="outbound|3306||mysql.default.svc.cluster.local",
        upstream=f"{REVIEWS_IP}:3306",
        wire=(50, 80),
    )
    feed(t, PRODUCTPAGE, "outbound", [entry])
    assert not t.metrics.merged().http
    labels, s = only(t.metrics.merged().tcp)
    assert labels["request_protocol"] == "tcp" and labels["destination_workload"] == "reviews-v2"
    assert labels["destination_service"] == "mysql.default.svc.cluster.local"
    assert labels["destination_service_name"] == "mysql"
    assert (s.opened, s.closed, s.received, s.sent) == (1, 1, 50, 80)


def test_tcp_connection_lifecycle_counts_once() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", tcp=[tcp_entry(log_type=al.TcpUpstreamConnected)])
    feed(t, PRODUCTPAGE, "outbound", tcp=[tcp_entry(log_type=al.TcpPeriodic, sent=100, received=10)])
    _, s = only(t.metrics.merged().tcp)
    assert (s.opened, s.closed, s.sent, s.received) == (1, 0, 100, 10)
    feed(t, PRODUCTPAGE, "outbound", tcp=[tcp_entry(log_type=al.TcpConnectionEnd, sent=150, received=30)])
    feed(t, PRODUCTPAGE, "outbound", tcp=[tcp_entry(stream_id="conn-2", sent=5, received=6)])  # end only
    _, s = only(t.metrics.merged().tcp)
    assert (s.opened, s.closed, s.sent, s.received) == (2, 2, 155, 36)
    text = t.metrics_text().decode()
    for name in (istio.TCP_OPENED, istio.TCP_CLOSED, istio.TCP_SENT, istio.TCP_RECEIVED):
        assert f"{name}{{" in text
    tcp_line = next(x for x in text.splitlines() if x.startswith("istio_tcp_connections_opened_total{"))
    assert "response_code" not in tcp_line and 'request_protocol="tcp"' in tcp_line


def test_merged_metrics_survive_a_proxy_going_away() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", [http_entry()] * 2)
    other = Proxy(
        **{
            **PRODUCTPAGE.__dict__,
            "id": Proxy.node_id("sidecar", "127.1.0.22", "productpage-v1-1", "default"),
            "instance": "productpage-v1-1",
        }
    )
    feed(t, other, "outbound", [http_entry()] * 3)
    _, merged = only(http_series(t))
    assert merged.requests == 5
    assert only(http_series(t, PRODUCTPAGE.id))[1].requests == 2
    per_proxy = t.metrics_for_proxy("productpage-v1-1")
    assert per_proxy is not None and "istio_requests_total{" in per_proxy and "} 3.0" in per_proxy
    t.forget_proxy(other.id)
    assert only(http_series(t))[1].requests == 5
    assert t.metrics_for_proxy("productpage-v1-1") is None


def test_collector_registers_into_a_registry() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    t = telemetry()
    registry = CollectorRegistry()
    registry.register(t.collector())
    feed(t, PRODUCTPAGE, "outbound", [http_entry()])
    text = generate_latest(registry).decode()
    assert 'istio_requests_total{connection_security_policy="unknown"' in text


def test_peer_resolution_from_a_snapshot() -> None:
    snap = snapshot()
    t = Telemetry(lambda: snap)
    feed(t, PRODUCTPAGE, "outbound", [http_entry()])
    entry = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream=f"{PRODUCTPAGE_IP}:40000",
        local=f"{REVIEWS_IP}:9080",
    )
    feed(t, REVIEWS, "inbound", [entry])
    keys = {k[0]: dict(zip(istio.HTTP_LABELS, k, strict=True)) for k in http_series(t)}
    assert keys["source"] == SOURCE_LABELS
    assert keys["destination"] == {
        **SOURCE_LABELS,
        "reporter": "destination",
        "connection_security_policy": "none",
    }


def test_label_cache_follows_the_snapshot() -> None:
    snaps = [snapshot()]
    t = Telemetry(lambda: snaps[-1])
    feed(t, PRODUCTPAGE, "outbound", [http_entry(cluster=f"outbound|9080||{REVIEWS_HOST}")])
    # The reviews pod is replaced by another workload at the same address.
    snaps.append(
        snapshot(
            """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: unused, namespace: default}
spec: {address: 10.0.0.1}
"""
        )
    )
    assert t.resolver() is not None
    feed(t, PRODUCTPAGE, "outbound", [http_entry(cluster=f"outbound|9080||{REVIEWS_HOST}")])
    (_, s), *_ = http_series(t).items()
    assert s.requests == 2


def test_subset_cluster_names_the_service_not_the_subset() -> None:
    t = telemetry()
    feed(t, PRODUCTPAGE, "outbound", [http_entry(cluster=REVIEWS_CLUSTER)])
    labels, _ = only(http_series(t))
    assert labels["destination_service"] == REVIEWS_HOST and labels["destination_service_name"] == "reviews"
