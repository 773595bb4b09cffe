"""istio-proxy's stats labels for what its peer discovery can and cannot know, on ALS entries.

istio_stats.cc (populatePeerInfo): a peer is known by metadata exchange (HTTP headers over any
transport; for TCP the istio-peer-exchange ALPN, so only over mTLS); a client proxy falls back to the
upstream endpoint's `istio.workload` metadata (workload, namespace, canonical service/revision, cluster:
no app, no version), which passthrough endpoints lack; a server proxy has no fallback. The e2e
counterparts are in tests/e2e/test_istio_telemetry_cases.py.
"""

from __future__ import annotations

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from telemetry_helpers import (
    OUTSIDER_IP,
    PP_PRINCIPAL,
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
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
from isthmus.telemetry.resolver import SnapshotResolver

CONNECT = 6
U = "unknown"


def _feed(
    proxy: Proxy,
    direction: str,
    http: list[al.HTTPAccessLogEntry] | None = None,
    tcp: list[al.TCPAccessLogEntry] | None = None,
) -> Telemetry:
    r = static_resolver()
    t = Telemetry(resolver=lambda: r)
    msg = message(proxy, direction, http, tcp)
    t.ingest(t.register_node(msg.identifier.node), direction, msg)
    return t


def _http_labels(t: Telemetry) -> dict[str, str]:
    (key,) = t.metrics.merged().http
    return dict(zip(istio.HTTP_LABELS, key, strict=True))


def _tcp_labels(t: Telemetry) -> dict[str, str]:
    (key,) = t.metrics.merged().tcp
    return dict(zip(istio.TCP_LABELS, key, strict=True))


def _destination(labels: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in labels.items()
        if k.startswith("destination_") and not k.startswith("destination_service")
    }


def _source(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith("source_")}


UNKNOWN_SOURCE = {
    "source_workload": U,
    "source_canonical_service": U,
    "source_canonical_revision": "latest",
    "source_workload_namespace": U,
    "source_principal": U,
    "source_app": U,
    "source_version": U,
    "source_cluster": U,
}


def test_server_without_sidecar_is_known_by_its_endpoint_metadata_only() -> None:
    entry = http_entry(
        cluster="outbound|9080||legacy.legacy.svc.cluster.local", upstream=f"{OUTSIDER_IP}:9080"
    )
    labels = _http_labels(_feed(PRODUCTPAGE, "outbound", [entry]))
    assert _destination(labels) == {
        "destination_workload": "legacy",
        "destination_workload_namespace": "legacy",
        "destination_principal": U,
        "destination_app": U,
        "destination_version": U,
        "destination_canonical_service": "legacy",
        "destination_canonical_revision": "latest",
        "destination_cluster": "Kubernetes",
    }
    assert labels["destination_service_namespace"] == "legacy"


def test_passthrough_endpoints_carry_no_metadata() -> None:
    entry = http_entry(
        cluster="PassthroughCluster",
        upstream=f"{OUTSIDER_IP}:8080",
        authority=f"{OUTSIDER_IP}:8080",
        route="allow_any",
    )
    labels = _http_labels(_feed(PRODUCTPAGE, "outbound", [entry]))
    assert labels["destination_workload"] == U and labels["destination_canonical_revision"] == "latest"
    assert labels["destination_service_namespace"] == U
    assert (labels["destination_service"], labels["destination_service_name"]) == (
        f"{OUTSIDER_IP}:8080",
        "PassthroughCluster",
    )


def test_passthrough_to_a_sidecar_still_exchanges_metadata_over_http() -> None:
    entry = http_entry(cluster="PassthroughCluster", upstream=f"{REVIEWS_IP}:9080", route="allow_any")
    labels = _http_labels(_feed(PRODUCTPAGE, "outbound", [entry]))
    assert (labels["destination_workload"], labels["destination_app"]) == ("reviews-v2", "reviews")


def test_client_without_sidecar_is_unknown_to_the_server() -> None:
    entry = http_entry(
        cluster="inbound|9080||",
        downstream=f"{OUTSIDER_IP}:5000",
        local=f"{REVIEWS_IP}:9080",
        authority="reviews",
    )
    t = _feed(REVIEWS, "inbound", [entry])
    labels = _http_labels(t)
    assert _source(labels) == UNKNOWN_SOURCE
    assert labels["connection_security_policy"] == "none"
    # The service graph still places the client (it is ours, not a metric).
    edges = {e["source"] for e in t.graph(60)["edges"]}
    assert edges == {"workload:legacy/legacy"}


def _inbound_tcp(mtls: bool) -> dict[str, str]:
    entry = tcp_entry(
        cluster="inbound|3306||",
        upstream="127.0.0.1:43306",
        downstream=f"{PRODUCTPAGE_IP}:5000",
        local=f"{REVIEWS_IP}:3306",
    )
    if mtls:
        c = entry.common_properties
        c.tls_properties.peer_certificate_properties.subject_alt_name.add(uri=PP_PRINCIPAL)
        c.tls_properties.local_certificate_properties.subject_alt_name.add(uri=REVIEWS_PRINCIPAL)
    return _tcp_labels(_feed(REVIEWS, "inbound", tcp=[entry]))


def test_tcp_metadata_exchange_needs_mtls_at_the_server() -> None:
    labels = _inbound_tcp(mtls=True)
    assert (labels["source_workload"], labels["source_app"], labels["connection_security_policy"]) == (
        "productpage-v1",
        "productpage",
        "mutual_tls",
    )
    labels = _inbound_tcp(mtls=False)
    assert _source(labels) == UNKNOWN_SOURCE
    assert labels["connection_security_policy"] == "none"


def _outbound_tcp(mtls: bool) -> dict[str, str]:
    entry = tcp_entry(
        cluster="outbound|9080||reviews.default.svc.cluster.local", upstream=f"{REVIEWS_IP}:9080"
    )
    if mtls:
        tags = entry.common_properties.custom_tags
        tags[accesslog.TAG_UPSTREAM_PEER_SAN] = REVIEWS_PRINCIPAL
        tags[accesslog.TAG_UPSTREAM_LOCAL_SAN] = PP_PRINCIPAL
    return _tcp_labels(_feed(PRODUCTPAGE, "outbound", tcp=[entry]))


def test_plaintext_tcp_client_falls_back_to_endpoint_metadata() -> None:
    labels = _outbound_tcp(mtls=True)
    assert (labels["destination_app"], labels["destination_principal"]) == ("reviews", REVIEWS_PRINCIPAL)
    labels = _outbound_tcp(mtls=False)
    assert _destination(labels) == {
        "destination_workload": "reviews-v2",
        "destination_workload_namespace": "default",
        "destination_principal": U,
        "destination_app": U,
        "destination_version": U,
        "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2",
        "destination_cluster": "Kubernetes",
    }


def _tunnel(cluster: str, route: str, flags: dict[str, bool], code: int = 200) -> dict[str, str]:
    entry = http_entry(
        method=CONNECT,
        cluster=cluster,
        route=route,
        upstream=f"{OUTSIDER_IP}:9000" if cluster else None,
        authority=f"{OUTSIDER_IP}:9000",
        flags=flags,
        code=code,
    )
    return _tcp_labels(_feed(PRODUCTPAGE, "outbound", [entry]))


def test_connect_tunnels_are_reported_as_tcp_connections() -> None:
    # A TCP passthrough has no Host header: destination_service is unknown. The client closing its tunnel
    # is a normal close for tcp_proxy: no DC.
    labels = _tunnel("PassthroughCluster", "connect-allow_any", {"downstream_connection_termination": True})
    assert (labels["destination_service"], labels["destination_service_name"]) == (U, "PassthroughCluster")
    assert (labels["request_protocol"], labels["response_flags"]) == ("tcp", "-")
    assert labels["destination_workload"] == U
    # REGISTRY_ONLY: Istio's tcp_proxy to the endpoint-less BlackHoleCluster.
    labels = _tunnel("", "connect-block_all", {}, code=502)
    assert (labels["destination_service"], labels["destination_service_name"]) == (U, "BlackHoleCluster")
    assert labels["response_flags"] == "UH"


def test_service_entry_inline_endpoint_names_only_the_cluster() -> None:
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.9.9.9}]
"""
    r = SnapshotResolver(snapshot(se))
    peer = r.workload_by_ip("10.9.9.9")
    assert peer is not None
    assert (peer.name, peer.namespace, peer.canonical_service, peer.canonical_revision, peer.cluster) == (
        "",
        "",
        U,
        "latest",
        "Kubernetes",
    )
    # A pod is still the workload it is.
    pod = r.workload_by_ip(REVIEWS_IP)
    assert pod is not None and (pod.name, pod.namespace) == ("reviews-v2", "default")


def test_server_connection_is_reported_once_its_peer_is_known() -> None:
    """Envoy logs "upstream connected" before the downstream TLS handshake ends (no peer certificate
    yet); istio-proxy reports a connection once its peer is read, or at its close."""
    connected = tcp_entry(
        cluster="inbound|3306||",
        upstream="127.0.0.1:43306",
        downstream=f"{PRODUCTPAGE_IP}:5000",
        local=f"{REVIEWS_IP}:3306",
        log_type=al.TcpUpstreamConnected,
    )
    closed = tcp_entry(
        cluster="inbound|3306||",
        upstream="127.0.0.1:43306",
        downstream=f"{PRODUCTPAGE_IP}:5000",
        local=f"{REVIEWS_IP}:3306",
        sent=8,
        received=5,
    )
    c = closed.common_properties
    c.tls_properties.peer_certificate_properties.subject_alt_name.add(uri=PP_PRINCIPAL)
    c.tls_properties.local_certificate_properties.subject_alt_name.add(uri=REVIEWS_PRINCIPAL)
    t = _feed(REVIEWS, "inbound", tcp=[connected, closed])
    ((key, series),) = t.metrics.merged().tcp.items()
    labels = dict(zip(istio.TCP_LABELS, key, strict=True))
    assert (labels["source_workload"], labels["connection_security_policy"]) == (
        "productpage-v1",
        "mutual_tls",
    )
    assert (series.opened, series.closed, series.sent, series.received) == (1, 1, 8, 5)
