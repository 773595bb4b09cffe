"""VirtualService tcp/tls rules on sidecars: where a CONNECT tunnel to a TCP/TLS service port goes."""

from __future__ import annotations

import re
from typing import Any

from gen_helpers import route_table, sidecar, snapshot, vhost

TLS_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec:
  selector: {app: secure}
  ports: [{name: tls, port: 443}, {name: https-alt, port: 8443}]
"""


def connect(snap: Any, host: str, port: int, labels: dict | None = None) -> dict[str, Any]:
    (route,) = vhost(route_table(snap, sidecar(labels=labels)), f"{host}:{port}")["routes"]
    assert "connect_matcher" in route["match"]
    assert route["route"]["upgrade_configs"] == [{"upgrade_type": "CONNECT", "connect_config": {}}]
    return route["route"]


def test_without_rules_the_tunnel_goes_to_the_service() -> None:
    assert connect(snapshot(), "ratings.other.svc.cluster.local", 5432)["cluster"] == (
        "outbound|5432||ratings.other.svc.cluster.local"
    )


def test_tcp_rules_first_match_by_port_and_source_labels_with_weights() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: db, namespace: other}
    spec:
      hosts: [ratings]
      tcp:
      - match: [{port: 5432, sourceLabels: {version: canary}}]
        route: [{destination: {host: ratings, subset: canary}}]
      - match: [{port: 9999}]
        route: [{destination: {host: ratings, subset: never}}]
      - route:
        - {destination: {host: ratings, subset: v1}, weight: 80}
        - {destination: {host: ratings, subset: v2}, weight: 20}
    """
    snap = snapshot(vs)
    host = "ratings.other.svc.cluster.local"
    canary = connect(snap, host, 5432, labels={"app": "web", "version": "canary"})
    assert canary["cluster"] == f"outbound|5432|canary|{host}"
    split = connect(snap, host, 5432)
    assert split["weighted_clusters"]["clusters"] == [
        {"name": f"outbound|5432|v1|{host}", "weight": 80},
        {"name": f"outbound|5432|v2|{host}", "weight": 20},
    ]


def test_tls_ports_take_tls_rules_matching_the_tunnel_host_as_sni_never_tcp_rules() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: secure, namespace: default}
    spec:
      hosts: [secure, other.example.com]
      tls:
      - match: [{sniHosts: [other.example.com]}]
        route: [{destination: {host: secure, subset: wrong}}]
      - match: [{sniHosts: [secure], port: 443}]
        route: [{destination: {host: secure, subset: tls}}]
      tcp:
      - route: [{destination: {host: secure, subset: tcp}}]
    """
    snap = snapshot(TLS_SERVICE, vs)
    host = "secure.default.svc.cluster.local"
    assert connect(snap, host, 443)["cluster"] == f"outbound|443|tls|{host}"
    # The tls rule is bound to port 443. 8443 is an HTTPS port, whose listener istiod builds from `tls`
    # rules only (buildSidecarOutboundTCPFilterChainOpts skips TLS ports): the service itself.
    assert connect(snap, host, 8443)["cluster"] == f"outbound|8443||{host}"


def test_rules_bound_to_a_gateway_do_not_apply_to_sidecars() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: db, namespace: other}
    spec:
      hosts: [ratings]
      gateways: [some-gateway]
      tcp:
      - route: [{destination: {host: ratings, subset: v1}}]
    """
    route = connect(snapshot(vs), "ratings.other.svc.cluster.local", 5432)
    assert route["cluster"] == "outbound|5432||ratings.other.svc.cluster.local"


def test_source_ip_hash_applies_to_single_destination_tunnels() -> None:
    # istiod's maybeSetHashPolicy for TCP: only useSourceIp, from the subset's load balancer if it sets
    # one, else the rule's (a weighted split: the first destination's top level, see test_istio_tcp_parity).
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: ratings, namespace: other}
    spec:
      host: ratings
      trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: rr, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
    """
    host = "ratings.other.svc.cluster.local"
    source_ip = [{"connection_properties": {"source_ip": True}}]
    assert connect(snapshot(dr), host, 5432)["hash_policy"] == source_ip
    assert "hash_policy" not in connect(snapshot(), host, 5432)

    def to_subset(subset: str) -> dict[str, Any]:
        vs = f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: db, namespace: other}}
        spec:
          hosts: [ratings]
          tcp: [{{route: [{{destination: {{host: ratings, subset: {subset}}}}}]}}]
        """
        return connect(snapshot(dr, vs), host, 5432)

    assert to_subset("v1")["hash_policy"] == source_ip  # inherits the rule's
    assert "hash_policy" not in to_subset("rr")  # its own load balancer has no hash


def test_passthrough_never_reaches_a_sidecars_own_proxy_ports() -> None:
    # Every sidecar's outbound port listens on its pod address: a request or tunnel passed through to
    # `<pod>:15001` would loop through that proxy forever (Istio's trafficLoopCases), so it is blackholed.
    table = route_table(snapshot(), sidecar())
    (allow_any,) = [v for v in table["virtual_hosts"] if v["domains"] == ["*"]]
    blocked = [r for r in allow_any["routes"] if r["route"].get("cluster") == "BlackHoleCluster"]
    assert [r["name"] for r in blocked] == ["block_proxy_ports", "connect-block_proxy_ports"]
    regex = blocked[0]["match"]["headers"][0]["string_match"]["safe_regex"]["regex"]
    assert all(re.fullmatch(regex, f"127.1.0.7:{port}") for port in (15000, 15001, 15006))
    assert not re.fullmatch(regex, "127.1.0.7:8080") and not re.fullmatch(regex, "example.com:150010")
