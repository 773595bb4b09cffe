"""DestinationRule `trafficPolicy.tunnel` on sidecars: the CONNECT carrying TCP to such a destination is
forwarded to the rule's host (a forward proxy) naming targetHost:targetPort instead of being terminated.

The cases port istiod's TestBuildOutboundNetworkFiltersTunnelingConfig
(pilot/pkg/networking/core/networkfilter_test.go): services example.com:443 (TLS) and
tunnel-proxy.com:3128 (HTTP), the TCP traffic for example.com routed to tunnel-proxy.com. Istio's
`tunneling_config{hostname, use_post}` is, here, the CONNECT route's `host_rewrite_literal` with the
CONNECT forwarded (no `connect_config`); POST is refused at apply (api/support.py).

Istio's test calls buildOutboundNetworkFilters directly with example.com:443 declared TLS. Through a
listener, `tcp` rules only apply on ports that are not TLS (buildSidecarOutboundTCPFilterChainOpts returns
nothing for TLS/HTTPS ports), so example.com:443 is declared TCP here for the `tcp` rules to apply.
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import route_table, sidecar, snapshot, vhost

from isthmus.api import loader
from isthmus.api.support import check_supported

SERVICES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: example, namespace: default}
spec:
  hosts: [example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{name: tcp, number: 443, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tunnel-proxy, namespace: default}
spec:
  hosts: [tunnel-proxy.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {name: http-connect, number: 3128, protocol: HTTP}
  - {name: tcp-connect, number: 3129, protocol: TCP}
  - {name: sniffed, number: 3130}
"""

TUNNEL_ENABLED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tunnel-config, namespace: default}
spec:
  host: tunnel-proxy.com
  trafficPolicy:
    tunnel: {protocol: CONNECT, targetHost: example.com, targetPort: 8443}
"""

TUNNEL_WITHOUT_PROTOCOL = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tunnel-config, namespace: default}
spec:
  host: tunnel-proxy.com
  trafficPolicy:
    tunnel: {targetHost: example.com, targetPort: 8443}
"""

# Istio's tunnelingEnabledForSubset uses POST, which Isthmus refuses at apply; the generator still
# honours the subset rule, so the subset cases use CONNECT.
TUNNEL_FOR_SUBSET = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tunnel-config, namespace: default}
spec:
  host: tunnel-proxy.com
  trafficPolicy:
    tunnel: {targetHost: top-level.example.com, targetPort: 1}
  subsets:
  - name: example-com-8443
    trafficPolicy:
      tunnel: {protocol: CONNECT, targetHost: example.com, targetPort: 8443}
  - {name: v1}
  - {name: v2}
"""

TUNNEL_ONLY_FOR_SUBSET = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tunnel-config, namespace: default}
spec:
  host: tunnel-proxy.com
  subsets:
  - name: example-com-8443
    trafficPolicy:
      tunnel: {targetHost: example.com, targetPort: 8443}
  - {name: v1}
  - {name: v2}
"""


def _vs(route: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: routing-config-for-example-com, namespace: default}}
spec:
  hosts: [example.com]
  tcp:
  - route:
{route}
"""


def single(subset: str = "") -> str:
    sub = f", subset: {subset}" if subset else ""
    return _vs(f"    - destination: {{host: tunnel-proxy.com, port: {{number: 3128}}{sub}}}")


WEIGHTED = _vs(
    "    - {destination: {host: tunnel-proxy.com, port: {number: 3128}, subset: v1}, weight: 25}\n"
    "    - {destination: {host: tunnel-proxy.com, port: {number: 3128}, subset: v2}, weight: 75}"
)


def connect_route(*docs: str, host: str = "example.com", port: int = 443) -> dict[str, Any]:
    routes = vhost(route_table(snapshot(SERVICES, *docs), sidecar()), f"{host}:{port}")["routes"]
    (route,) = [r for r in routes if "connect_matcher" in r["match"]]
    return route["route"]


def tunneled_to(action: dict[str, Any]) -> str | None:
    """The target the CONNECT is forwarded naming, or None when the sidecar terminates it."""
    (upgrade,) = action["upgrade_configs"]
    assert upgrade["upgrade_type"] == "CONNECT"
    if "connect_config" in upgrade:
        assert "host_rewrite_literal" not in action
        return None
    return action["host_rewrite_literal"]


@pytest.mark.parametrize(
    ("name", "rule", "vs", "expected"),
    [
        (
            "not applied when destination rule and route subsets do not match",
            TUNNEL_ONLY_FOR_SUBSET,
            single("random-subset"),
            None,
        ),
        ("applied when destination rule has tunnel settings", TUNNEL_ENABLED, single(), "example.com:8443"),
        (
            "applied (CONNECT) when tunnel settings do not specify the protocol",
            TUNNEL_WITHOUT_PROTOCOL,
            single(),
            "example.com:8443",
        ),
        (
            "applied for the subset matching the destination's subset, not the top level's",
            TUNNEL_FOR_SUBSET,
            single("example-com-8443"),
            "example.com:8443",
        ),
        (
            "a subset without its own tunnel does not inherit the top level's",
            TUNNEL_FOR_SUBSET,
            single("v1"),
            None,
        ),
        (
            "applied with weighted destinations when the rule has top-level tunnel settings",
            TUNNEL_ENABLED,
            WEIGHTED,
            "example.com:8443",
        ),
        (
            "not applied with weighted destinations when only a subset has tunnel settings",
            TUNNEL_ONLY_FOR_SUBSET,
            WEIGHTED,
            None,
        ),
    ],
)
def test_istio_tunneling_config_cases(name: str, rule: str, vs: str, expected: str | None) -> None:
    assert tunneled_to(connect_route(rule, vs)) == expected, name


@pytest.mark.parametrize(
    ("target", "authority"),
    [("192.168.1.2", "192.168.1.2:8443"), ("2001:db8:1234::", "[2001:db8:1234::]:8443")],
)
def test_ip_targets_are_joined_as_host_port(target: str, authority: str) -> None:
    rule = TUNNEL_ENABLED.replace("targetHost: example.com", f"targetHost: '{target}'")
    assert tunneled_to(connect_route(rule, single())) == authority


def test_forwarded_connect_keeps_the_destination_cluster() -> None:
    action = connect_route(TUNNEL_ENABLED, single())
    assert action["cluster"] == "outbound|3128||tunnel-proxy.com"
    weighted = connect_route(TUNNEL_ENABLED, WEIGHTED)
    assert [c["name"] for c in weighted["weighted_clusters"]["clusters"]] == [
        "outbound|3128|v1|tunnel-proxy.com",
        "outbound|3128|v2|tunnel-proxy.com",
    ]


def test_without_a_rule_the_tunnel_is_terminated_as_before() -> None:
    assert tunneled_to(connect_route(single())) is None


def test_tcp_and_sniffed_ports_of_the_tunnel_host_are_tunneled_http_ports_are_not() -> None:
    """istiod applies the tunnel to TCP listeners only: a TCP port's tcp_proxy, and the TCP chain that
    an auto (sniffed) port keeps beside its HTTP one; an HTTP port has no TCP path."""
    assert (
        tunneled_to(connect_route(TUNNEL_ENABLED, host="tunnel-proxy.com", port=3129)) == "example.com:8443"
    )
    assert (
        tunneled_to(connect_route(TUNNEL_ENABLED, host="tunnel-proxy.com", port=3130)) == "example.com:8443"
    )
    assert tunneled_to(connect_route(TUNNEL_ENABLED, host="tunnel-proxy.com", port=3128)) is None


def test_http_routes_to_the_tunnel_host_are_unchanged() -> None:
    vh = vhost(route_table(snapshot(SERVICES, TUNNEL_ENABLED), sidecar()), "tunnel-proxy.com:3128")
    (http,) = [r for r in vh["routes"] if "connect_matcher" not in r["match"]]
    assert "host_rewrite_literal" not in http["route"]
    assert "upgrade_configs" not in http["route"]


def test_sniffed_port_tunnel_follows_rule_visibility() -> None:
    """The default virtual host bytes are shared by scopes: a rule exported only to `default` tunnels
    that namespace's CONNECTs, not another's."""
    rule = TUNNEL_ENABLED.replace("spec:\n", "spec:\n  exportTo: ['.']\n")
    snap = snapshot(SERVICES, rule)
    mine = vhost(route_table(snap, sidecar()), "tunnel-proxy.com:3130")
    other = vhost(route_table(snap, sidecar(namespace="other", ip="127.7.0.4")), "tunnel-proxy.com:3130")
    assert tunneled_to(mine["routes"][0]["route"]) == "example.com:8443"
    assert tunneled_to(other["routes"][0]["route"]) is None


def _support_errors(text: str) -> list[str]:
    (resource,) = loader.load_text(text, "dr.yaml")
    return [e.message for e in check_supported(resource)]


def test_connect_tunnels_are_accepted_post_is_refused_with_the_reason() -> None:
    assert _support_errors(TUNNEL_ENABLED) == []
    assert _support_errors(TUNNEL_ONLY_FOR_SUBSET) == []
    post = TUNNEL_FOR_SUBSET.replace("protocol: CONNECT", "protocol: POST")
    (message,) = _support_errors(post)
    assert message.startswith("spec.subsets[0].trafficPolicy.tunnel.protocol: tunnel protocol POST")
    (top,) = _support_errors(TUNNEL_ENABLED.replace("CONNECT", "POST"))
    assert top.startswith("spec.trafficPolicy.tunnel.protocol:")


def test_gateway_tcp_route_to_a_tunnel_destination_uses_tcp_proxy_tunneling_config() -> None:
    """Gateways build a real tcp_proxy for `tcp` routes: istiod's tunnelingconfig.Apply sets its
    tunneling_config (single destination: its subset's tunnel; top level without a subset)."""
    from gen_helpers import PODS, generate
    from test_istio_gateway_parity import GW_POD, gateway_proxy

    from isthmus.xds.gen import naming

    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-tcp, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp: [{route: [{destination: {host: tunnel-proxy.com, port: {number: 3129}}}]}]
"""

    def tcp_proxy(*docs: str) -> dict[str, Any]:
        snap = snapshot(SERVICES, gw, *docs, pods=[*PODS, GW_POD])
        (lst,) = [
            v for v in generate(snap, gateway_proxy(), naming.LISTENER_TYPE).values() if "31400" in v["name"]
        ]
        (chain,) = lst["filter_chains"]
        return chain["filters"][-1]["typed_config"]

    with_tunnel = tcp_proxy(TUNNEL_ENABLED)
    assert with_tunnel["cluster"] == "outbound|3129||tunnel-proxy.com"
    assert with_tunnel["tunneling_config"] == {"hostname": "example.com:8443"}
    assert "tunneling_config" not in tcp_proxy()
