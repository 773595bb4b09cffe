"""More istio-proxy stats label rules the telemetry integration suites depend on, on ALS entries.

From istio/proxy source/extensions/filters/http/istio_stats/istio_stats.cc (populatePeerInfo):
- the reporting proxy's own app and version are its node metadata's LABELS["app"] / LABELS["version"]
  pushed as they are (`context_.app_name_`, no "unknown" fallback), so a pod without those labels
  reports "" (its canonical revision still defaults to "latest", as the injector labels it); the peer's
  unset labels are "unknown";
- a client with no metadata exchange falls back to the upstream host's `istio.workload` endpoint
  metadata (extractEndpointMetadata): for a ServiceEntry's own endpoint that is the entry's, not the
  pod's that happens to have the address (tests/integration/telemetry/outboundtrafficpolicy
  "HTTP Traffic Egress": the egress gateway's upstream is such an endpoint).
And from tests/integration/telemetry/api/customize_metrics_test.go (TestCustomizeMetrics): the REQUEST_COUNT
override applies to the gRPC request too (buildCustomMetricsQuery(grpcProtocol): request_protocol="grpc",
custom_dimension="test", source_principal removed), and only to REQUEST_COUNT.
The e2e counterparts are in tests/e2e/test_istio_stats_cases.py.
"""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from telemetry_helpers import (
    GATEWAY,
    GRPC_TAGS,
    OUTSIDER_IP,
    PP_PRINCIPAL,
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
    REVIEWS_IP,
    REVIEWS_PRINCIPAL,
    http_entry,
    message,
    snap,
    static_resolver,
    tel,
)

from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry, istio

U = "unknown"
D_IP = "127.1.0.20"
# A pod with no app or version label (the injector still labels its canonical name and revision).
D = Proxy(
    id=Proxy.node_id("sidecar", D_IP, "d-0", "default"),
    kind="sidecar",
    ip=D_IP,
    namespace="default",
    instance="d-0",
    workload="d",
    labels={"role": "d"},
    service_account="d",
)


def _feed(t: Telemetry, proxy: Proxy, direction: str, entries: list[al.HTTPAccessLogEntry]) -> None:
    msg = message(proxy, direction, entries)
    t.ingest(t.register_node(msg.identifier.node), direction, msg)


def _series(t: Telemetry) -> list[dict[str, str]]:
    return [dict(zip(istio.HTTP_LABELS, key, strict=True)) for key in t.metrics.merged().http]


def _static() -> Telemetry:
    r = static_resolver()
    return Telemetry(resolver=lambda: r)


# --- the reporting proxy's own labels -------------------------------------------------------------------


def test_own_unset_app_and_version_are_empty_as_a_client() -> None:
    t = _static()
    _feed(t, D, "outbound", [http_entry(upstream_local=f"{D_IP}:40000")])
    (labels,) = _series(t)
    assert (labels["source_app"], labels["source_version"]) == ("", "")
    assert (labels["source_canonical_service"], labels["source_canonical_revision"]) == ("d", "latest")
    assert (labels["source_workload"], labels["source_workload_namespace"]) == ("d", "default")
    # The peer's labels are set: they are what it has.
    assert (labels["destination_app"], labels["destination_version"]) == ("reviews", "v2")


def test_own_unset_app_and_version_are_empty_as_a_server() -> None:
    t = _static()
    entry = http_entry(cluster="inbound|9080||", upstream="127.0.0.1:41009", downstream=f"{REVIEWS_IP}:40000")
    _feed(t, D, "inbound", [entry])
    (labels,) = _series(t)
    assert labels["reporter"] == "destination"
    assert (labels["destination_app"], labels["destination_version"]) == ("", "")
    assert (labels["destination_canonical_service"], labels["destination_canonical_revision"]) == (
        "d",
        "latest",
    )
    # No service targets the port: istio-proxy names the canonical service.
    assert (labels["destination_service"], labels["destination_service_name"]) == ("d", "d")
    assert (labels["source_app"], labels["source_version"]) == ("reviews", "v2")


def test_a_peer_without_app_or_version_is_unknown() -> None:
    """The same unset labels on the other side (known by metadata exchange) are "unknown"."""
    t = _static()
    entry = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream=f"{GATEWAY.ip}:40000",
        local=f"{REVIEWS_IP}:9080",
    )
    _feed(t, REVIEWS, "inbound", [entry])
    (labels,) = _series(t)
    assert labels["source_workload"] == "istio-ingressgateway"
    assert (labels["source_app"], labels["source_version"]) == ("istio-ingressgateway", U)
    assert labels["source_canonical_revision"] == "latest"
    # The gateway as the reporter: its own unset version is "".
    t = _static()
    _feed(t, GATEWAY, "outbound", [http_entry(upstream_local=f"{GATEWAY.ip}:40000")])
    (labels,) = _series(t)
    assert (labels["source_app"], labels["source_version"]) == ("istio-ingressgateway", "")


# --- a ServiceEntry's own endpoint at a pod's address ---------------------------------------------------------

ENTRIES = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: default}}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 8080}}]
  endpoints: [{{address: {OUTSIDER_IP}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: meshy, namespace: default}}
spec:
  hosts: [meshy.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: 9080}}]
  endpoints: [{{address: {REVIEWS_IP}}}]
"""


def _to_entry(host: str, ip: str, port: int, **kw: Any) -> al.HTTPAccessLogEntry:
    return http_entry(cluster=f"outbound|80||{host}", upstream=f"{ip}:{port}", authority=host, **kw)


def test_service_entry_endpoint_at_a_pod_address_without_sidecar_is_the_entrys() -> None:
    s = snap(ENTRIES)
    t = Telemetry(lambda: s)
    _feed(t, PRODUCTPAGE, "outbound", [_to_entry("ext.example.com", OUTSIDER_IP, 8080)])
    (labels,) = _series(t)
    assert (labels["destination_service"], labels["destination_service_name"]) == (
        "ext.example.com",
        "ext.example.com",
    )
    # The entry's endpoint metadata names no workload and no namespace: not the `legacy` pod there.
    service = ("destination_service", "destination_service_name", "destination_service_namespace")
    got = {k: v for k, v in labels.items() if k.startswith("destination_") and k not in service}
    assert got == {
        "destination_workload": U,
        "destination_workload_namespace": U,
        "destination_principal": U,
        "destination_app": U,
        "destination_version": U,
        "destination_canonical_service": U,
        "destination_canonical_revision": "latest",
        "destination_cluster": "Kubernetes",
    }
    assert labels["destination_service_namespace"] == U


def test_service_entry_endpoint_at_a_sidecar_pod_is_known_by_metadata_exchange() -> None:
    """HTTP metadata exchange tells the client who answered, whatever the endpoint's metadata says."""
    s = snap(ENTRIES)
    t = Telemetry(lambda: s)
    entry = _to_entry(
        "meshy.example.com", REVIEWS_IP, 9080, peer_san=REVIEWS_PRINCIPAL, local_san=PP_PRINCIPAL
    )
    _feed(t, PRODUCTPAGE, "outbound", [entry])
    (labels,) = _series(t)
    assert (labels["destination_workload"], labels["destination_app"]) == ("reviews-v2", "reviews")
    assert labels["destination_service_name"] == "meshy.example.com"


# --- customize_metrics_test.go: the gRPC request under the REQUEST_COUNT override -----------------------------

OVERRIDES = tel(
    "ns-default",
    "default",
    """
metrics:
- providers: [{name: prometheus}]
  overrides:
  - match: {metric: REQUEST_COUNT}
    tagOverrides:
      custom_dimension: {value: "'test'"}
      source_principal: {operation: REMOVE}
""",
)


def test_request_count_override_applies_to_grpc_requests() -> None:
    s = snap(OVERRIDES)
    t = Telemetry(lambda: s)
    grpc = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41002",
        downstream=f"{PRODUCTPAGE_IP}:40000",
        local=f"{REVIEWS_IP}:9080",
        tags=GRPC_TAGS,
        grpc_messages=(1, 1),
        trailers={"grpc-status": "0"},
        peer_san=PP_PRINCIPAL,
        local_san=REVIEWS_PRINCIPAL,
    )
    _feed(t, REVIEWS, "inbound", [grpc])
    text = t.metrics_text().decode().splitlines()
    (count,) = [ln for ln in text if ln.startswith("istio_requests_total{")]
    for want in (
        'reporter="destination"',
        'request_protocol="grpc"',
        'grpc_response_status="0"',
        'custom_dimension="test"',
        'destination_app="reviews"',
        'source_workload="productpage-v1"',
    ):
        assert want in count, (want, count)
    assert "source_principal" not in count
    # Only REQUEST_COUNT is overridden: the message counters keep Istio's labels.
    (messages,) = [ln for ln in text if ln.startswith("istio_request_messages_total{")]
    assert f'source_principal="{PP_PRINCIPAL}"' in messages and "custom_dimension" not in messages
    assert messages.endswith(" 1.0")
