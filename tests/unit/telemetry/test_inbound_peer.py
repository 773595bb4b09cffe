"""The destination reporter resolves its peer from the connection, not from X-Forwarded-For.

Behind an ingress gateway (use_remote_address: true) every request carries X-Forwarded-For; the server
sidecar's inbound HCM trusts it, so Envoy's %DOWNSTREAM_REMOTE_ADDRESS% is the external client (or, for
a loopback client, Envoy's own host address), while the TCP peer is the gateway pod.
"""

from __future__ import annotations

from telemetry_helpers import GATEWAY_IP, PRODUCTPAGE, PRODUCTPAGE_IP, http_entry, message, static_resolver

from isthmus.telemetry import Telemetry, istio

GW_PRINCIPAL = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
PP_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


def _labels(downstream: str, direct: str | None) -> dict[str, str]:
    r = static_resolver()
    t = Telemetry(resolver=lambda: r)
    entry = http_entry(
        cluster="inbound|9080||",
        upstream="127.0.0.1:41001",
        downstream=downstream,
        local=f"{PRODUCTPAGE_IP}:9080",
        peer_san=GW_PRINCIPAL,
        local_san=PP_PRINCIPAL,
        authority="productpage:9080",
    )
    if direct is not None:
        host, _, port = direct.rpartition(":")
        entry.common_properties.downstream_direct_remote_address.socket_address.address = host
        entry.common_properties.downstream_direct_remote_address.socket_address.port_value = int(port)
    msg = message(PRODUCTPAGE, "inbound", [entry])
    t.ingest(t.register_node(msg.identifier.node), "inbound", msg)
    (key,) = t.metrics.merged().http
    return dict(zip(istio.HTTP_LABELS, key, strict=True))


def test_source_is_the_connection_peer_not_the_forwarded_client() -> None:
    labels = _labels(downstream="192.0.2.2:0", direct=f"{GATEWAY_IP}:46424")
    assert labels["reporter"] == "destination"
    assert labels["source_workload"] == "istio-ingressgateway"
    assert labels["source_workload_namespace"] == "istio-system"
    assert labels["source_app"] == "istio-ingressgateway"
    assert labels["source_canonical_service"] == "istio-ingressgateway"
    assert labels["source_cluster"] == "Kubernetes"
    assert labels["source_principal"] == GW_PRINCIPAL
    assert labels["destination_workload"] == "productpage-v1"
    assert labels["connection_security_policy"] == "mutual_tls"


def test_without_a_direct_address_the_remote_address_is_used() -> None:
    labels = _labels(downstream=f"{GATEWAY_IP}:46424", direct=None)
    assert labels["source_workload"] == "istio-ingressgateway"
