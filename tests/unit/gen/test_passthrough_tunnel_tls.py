"""TLS of a resolution NONE ServiceEntry's cluster (the dynamic forward proxy cluster standing for istiod's
ORIGINAL_DST one) as CONNECT tunnels use it.

Envoy's DFP cluster factory turns the cluster-level auto_sni and auto_san_validation on when a cluster has
no HTTP protocol options of its own, as a TCP port's cluster has not; the router then checks the tunnel's
`host:port` as the only SAN, in place of the SPIFFE identities, and mTLS to a sidecar fails. So a DFP
cluster with TLS always carries explicit HttpProtocolOptions, without those flags unless a DestinationRule's
SIMPLE/MUTUAL tls asks for them (istiod's setAutoSniAndAutoSanValidation).
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import clusters, route_table, sidecar, snapshot, vhost

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
DFP = "envoy.clusters.dynamic_forward_proxy"
POD = "127.7.0.2"  # reviews-v1-0 (gen_helpers.PODS): a pod with a sidecar, service account `reviews`
REVIEWS_ID = "spiffe://cluster.local/ns/default/sa/reviews"

FAKE_DESTINATION = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: fake-destination, namespace: default}}
spec:
  hosts: [fake.destination]
  location: MESH_INTERNAL
  resolution: NONE
  addresses: [{POD}]
  ports: [{{number: 8087, name: tcp-8087, protocol: TCP}}, {{number: 8085, name: http-8085, protocol: HTTP}}]
"""


def dr(tls: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: fake-destination, namespace: default}}
spec:
  host: fake.destination
  trafficPolicy: {{tls: {tls}}}
"""


def cluster(*docs: str, port: int = 8087, host: str = "fake.destination") -> dict[str, Any]:
    c = clusters(snapshot(*docs), sidecar())[f"outbound|{port}||{host}"]
    assert c["cluster_type"]["name"] == DFP
    return c


def tls_context(c: dict[str, Any]) -> dict[str, Any]:
    sock = c["transport_socket"]
    assert sock["name"] == "envoy.transport_sockets.tls"
    return sock["typed_config"]


def http_options(c: dict[str, Any]) -> dict[str, Any]:
    """The cluster's own HttpProtocolOptions: their presence is what keeps Envoy's DFP defaults off."""
    assert "upstream_http_protocol_options" not in c  # the deprecated cluster-level field stays unset
    return c["typed_extension_protocol_options"][HTTP_OPTIONS]


def sans(ctx: dict[str, Any]) -> list[str]:
    """The URI SANs (SPIFFE ids) the client checks in the server's certificate."""
    vc = ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    matchers = vc.get("match_typed_subject_alt_names", [])
    assert all(m["san_type"] == "URI" for m in matchers)
    return [m["matcher"]["exact"] for m in matchers]


def test_the_tunnel_routes_to_the_passthrough_cluster() -> None:
    """A CONNECT to the entry's address on a TCP port goes to its DFP cluster (TestPassThroughFilterChain)."""
    (route,) = vhost(route_table(snapshot(FAKE_DESTINATION), sidecar()), "fake.destination:8087")["routes"]
    assert "connect_matcher" in route["match"]
    assert route["route"]["cluster"] == "outbound|8087||fake.destination"


@pytest.mark.parametrize(
    ("rule_sans", "checked"),
    [("", []), (f', subjectAltNames: ["{REVIEWS_ID}"]', [REVIEWS_ID])],
)
def test_istio_mutual_tcp_port_keeps_the_context_sni_and_identities(
    rule_sans: str, checked: list[str]
) -> None:
    """ISTIO_MUTUAL on a TCP port: istiod's SNI and ALPN `istio`, the rule's SANs (none: any mesh
    identity), and HTTP/1.1 options with neither auto SNI nor auto SAN validation."""
    c = cluster(FAKE_DESTINATION, dr(f"{{mode: ISTIO_MUTUAL{rule_sans}}}"))
    ctx = tls_context(c)
    assert ctx["sni"] == "outbound_.8087_._.fake.destination"
    assert ctx["common_tls_context"]["alpn_protocols"] == ["istio"]
    assert sans(ctx) == checked
    opts = http_options(c)
    assert opts["explicit_http_config"] == {"http_protocol_options": {}}
    assert "upstream_http_protocol_options" not in opts


def test_istio_mutual_http_port_is_unchanged() -> None:
    """The HTTP port's cluster already had its options (the HTTP case that always worked)."""
    c = cluster(FAKE_DESTINATION, dr("{mode: ISTIO_MUTUAL}"), port=8085)
    assert tls_context(c)["sni"] == "outbound_.8085_._.fake.destination"
    assert "upstream_http_protocol_options" not in http_options(c)


def test_auto_mtls_when_every_endpoint_has_a_sidecar() -> None:
    """Auto mTLS for a NONE entry whose selected endpoints all have sidecars (no DestinationRule)."""
    se = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: selected, namespace: default}
    spec:
      hosts: [selected.destination]
      location: MESH_INTERNAL
      resolution: NONE
      workloadSelector: {labels: {app: reviews}}
      ports: [{number: 9080, name: tcp, protocol: TCP}]
    """
    c = cluster(se, port=9080, host="selected.destination")
    ctx = tls_context(c)
    assert ctx["sni"] == "outbound_.9080_._.selected.destination"
    assert ctx["common_tls_context"]["alpn_protocols"] == ["istio"]
    assert sans(ctx) == [REVIEWS_ID]
    assert "upstream_http_protocol_options" not in http_options(c)


def test_plaintext_cluster_gets_no_options() -> None:
    """No DestinationRule and no endpoints: plaintext, and the cluster is left as it was."""
    c = cluster(FAKE_DESTINATION)
    assert "transport_socket" not in c
    assert "typed_extension_protocol_options" not in c


def test_simple_tls_without_sni_keeps_istiods_auto_sni_and_san() -> None:
    """TLS origination without `sni`: istiod's setAutoSniAndAutoSanValidation, unchanged."""
    c = cluster(FAKE_DESTINATION, dr("{mode: SIMPLE}"))
    assert "sni" not in tls_context(c)
    assert http_options(c)["upstream_http_protocol_options"] == {
        "auto_sni": True,
        "auto_san_validation": True,
    }


def test_simple_tls_with_sni_keeps_the_rules_sni() -> None:
    """With the rule's `sni` no auto SNI: Envoy's DFP defaults must not replace it with the tunnel's host."""
    c = cluster(FAKE_DESTINATION, dr("{mode: SIMPLE, sni: db.example.com}"))
    assert tls_context(c)["sni"] == "db.example.com"
    assert "upstream_http_protocol_options" not in http_options(c)
