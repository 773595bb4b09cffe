"""A CONNECT tunnel to a port of sniffed protocol offers the mesh's TCP ALPN, as istiod's sidecars do.

istiod's istio.alpn filter gives HTTP requests `istio-http/*` and leaves TCP with the cluster's `istio`,
so the server sidecar routes each to its chain (routing.go serverFirstTestCases, protocolSniffingCases
'auto-tcp'). Here the auto port's cluster offers the HTTP ALPN; its CONNECT route carries route metadata
that the outbound proxy's set_filter_state filter turns into an ALPN override of `istio`.
"""

from __future__ import annotations

from typing import Any

from gen_helpers import generate, route_table, sidecar, snapshot, vhost
from google.protobuf.json_format import MessageToDict

from isthmus.xds.gen import naming, tls

HOST = "mixed.default.svc.cluster.local"
MIXED = """
apiVersion: v1
kind: Service
metadata: {name: mixed, namespace: default}
spec:
  selector: {app: mixed}
  ports: [{name: tcp, port: 9001}, {name: auto-tcp, port: 9002}]
"""


def connect_route(snap: Any, port: int) -> dict[str, Any]:
    routes = vhost(route_table(snap, sidecar()), f"{HOST}:{port}")["routes"]
    (route,) = [r for r in routes if "connect_matcher" in r["match"]]
    return route


def tunnel_alpn(route: dict[str, Any]) -> str | None:
    return route.get("metadata", {}).get("filter_metadata", {}).get("isthmus", {}).get("tunnel_alpn")


def dr(tls_yaml: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: mixed, namespace: default}}
spec:
  host: mixed
  trafficPolicy:
{tls_yaml}
"""


def test_auto_port_tunnels_offer_the_tcp_alpn_and_tcp_ports_need_no_override() -> None:
    snap = snapshot(MIXED)
    assert tunnel_alpn(connect_route(snap, 9002)) == "istio"
    # A TCP port's cluster already offers `istio`.
    assert tunnel_alpn(connect_route(snap, 9001)) is None


def test_destination_rule_tls_of_its_own_keeps_its_alpn() -> None:
    """SIMPLE/MUTUAL origination is not mesh mTLS (istiod: `alpn_override: false`); ISTIO_MUTUAL is, also
    when a port-level setting brings it back under a top-level SIMPLE."""
    simple = snapshot(MIXED, dr("    tls: {mode: SIMPLE}"))
    assert tunnel_alpn(connect_route(simple, 9002)) is None
    port_level = snapshot(
        MIXED,
        dr(
            "    tls: {mode: SIMPLE}\n    portLevelSettings:\n    - {port: {number: 9002}, tls: {mode: ISTIO_MUTUAL}}"
        ),
    )
    assert tunnel_alpn(connect_route(port_level, 9002)) == "istio"


def test_forwarded_connect_of_a_destination_rule_tunnel_is_left_alone() -> None:
    snap = snapshot(MIXED, dr("    tunnel: {targetHost: 10.0.0.1, targetPort: 9002}"))
    route = connect_route(snap, 9002)
    assert route["route"]["upgrade_configs"] == [{"upgrade_type": "CONNECT"}]
    assert tunnel_alpn(route) is None


def test_the_filter_reads_the_route_metadata_and_sets_nothing_without_it() -> None:
    f = MessageToDict(tls.tcp_tunnel_alpn_filter(), preserving_proto_field_name=True)
    assert f["name"] == tls.TCP_TUNNEL_ALPN_FILTER and "disabled" not in f
    (value,) = f["typed_config"]["on_request_headers"]
    assert value["object_key"] == "envoy.network.application_protocols"
    assert value["skip_if_empty"] is True
    fmt = value["format_string"]
    assert fmt["text_format_source"]["inline_string"] == "%METADATA(ROUTE:isthmus:tunnel_alpn)%"
    assert fmt["omit_empty_values"] is True


def outbound_http_filters(snap: Any) -> list[str]:
    """The filter names of the sidecar's outbound HTTP proxy (the HCM with the dynamic forward proxy)."""
    for listener in generate(snap, sidecar(), naming.LISTENER_TYPE).values():
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                names = [h["name"] for h in f.get("typed_config", {}).get("http_filters", [])]
                if "envoy.filters.http.dynamic_forward_proxy" in names:
                    return names
    raise AssertionError("no outbound HTTP proxy")


def test_the_alpn_filter_runs_only_where_a_service_has_an_auto_port() -> None:
    """It runs on every request through the outbound proxy, so a mesh without auto ports goes without."""
    assert tls.TCP_TUNNEL_ALPN_FILTER in outbound_http_filters(snapshot(MIXED))
    assert tls.TCP_TUNNEL_ALPN_FILTER not in outbound_http_filters(snapshot())
