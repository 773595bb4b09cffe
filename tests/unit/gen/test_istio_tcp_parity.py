"""Outbound TCP and TLS: parity with istiod's own tests, case by case, as Istio YAML.

Sources (istio/istio, pilot/pkg/networking/core): networkfilter_test.go (TestOutboundNetworkFilterIdleTimeout,
TestOutboundNetworkFilterWithSourceIPHashing, TestOutboundNetworkFilterStatPrefix), listener_test.go
(TestOutboundListenerTCPWithVS, TestOutboundListenerConflict_*, TestOutboundTlsTrafficWithoutTimeout),
sidecar_simulation_test.go (TestPassthroughTraffic, the TCP cases of TestExternalNameServices), against
networkfilter.go (buildOutboundNetworkFilters*, maybeSetHashPolicy) and tls.go (matchTCP, matchTLS,
buildSidecarOutboundTLSFilterChainOpts, buildSidecarOutboundTCPFilterChainOpts).
TestBuildOutboundNetworkFiltersTunnelingConfig is ported in test_dr_tunnel.py, TestLoop in test_tunnels.py.

Where Isthmus departs by design (DESIGN.md §3) the test says so and checks the documented behaviour:
- sidecars are explicit proxies: TCP and TLS reach a service as an HTTP CONNECT to `host:port` on the
  outbound port, terminated by the HTTP connection manager. istiod's per-port listener and filter chain
  (tcp_proxy) is here the CONNECT route of the `host:port` virtual host: its cluster (or weighted
  clusters), hash policy and tunnel are the tcp_proxy's; the tcp_proxy's idle timeout and
  max_downstream_connection_duration are the route's idle_timeout and max_stream_duration (Envoy's
  tcp_proxy default of one hour when istiod sets none, as the HCM's stream idle timeout is off). There
  is no per-route tcp_proxy stat prefix: the HCM's and the clusters' stats stand for it;
- the tunnel's host names the destination: it stands for the SNI that `tls` rules' sniHosts match, and
  there is no destination IP, so destinationSubnets on the mesh gateway are refused at apply;
- services sharing a port do not conflict: each has its own `host:port` virtual host.
Gateways build real tcp_proxy filters (gateway.py) from the same DestinationRule settings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import configs, generate, route_table, sidecar, snapshot
from test_istio_gateway_parity import GW_POD, gateway, gateway_proxy, virtual_service

from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.debug import matching
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import naming

DEFAULT_IDLE = "3600s"  # Envoy's tcp_proxy idle_timeout when none is set


def service_entry(name: str, host: str, ports: str, ns: str = "default", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: DNS
  ports: {ports}
  endpoints: [{{address: {host}}}]
  {extra}
"""


def vs(name: str, hosts: str, body: str, ns: str = "default", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: {hosts}
  {extra}
{body}
"""


def dr(host: str, policy: str, ns: str = "default", name: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name or host.replace(".", "-")}, namespace: {ns}}}
spec:
  host: {host}
{policy}
"""


def mesh_config(**spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "isthmus.dev/v1alpha1",
            "kind": "MeshConfig",
            "metadata": {"name": "mesh"},
            "spec": spec,
        }
    )


def tunnel(
    *docs: str, authority: str, labels: dict[str, str] | None = None, ns: str = "default"
) -> dict[str, Any]:
    """The route a CONNECT to `authority` through the sidecar takes (`route test`'s matching)."""
    table = route_table(snapshot(*docs, pods=[], services=False), sidecar(namespace=ns, labels=labels))
    found = matching.select_virtual_host(table, authority)
    assert found is not None, authority
    route = matching.select_route(found.vhost, matching.request_from_url(f"tcp://{authority}")).route
    assert route is not None and "connect_matcher" in route["match"], (authority, route)
    return route


def cluster(route: dict[str, Any]) -> str:
    if "direct_response" in route:
        return f"direct_response:{route['direct_response']['status']}"
    action = route["route"]
    if "weighted_clusters" in action:
        return ",".join(f"{c['name']}={c['weight']}" for c in action["weighted_clusters"]["clusters"])
    return action["cluster"]


# --- TestOutboundNetworkFilterIdleTimeout --------------------------------------------------------
# Services example.com:443 and example-canary.com:443 (TLS), the proxy in namespace not-default. A TLS
# port's tcp_proxy comes from `tls` rules (Istio's test calls buildOutboundNetworkFilters directly).

EXAMPLES = service_entry("example", "example.com", "[{name: tls, number: 443, protocol: TLS}]") + (
    "---" + service_entry("canary", "example-canary.com", "[{name: tls, number: 443, protocol: TLS}]")
)
IDLE_DR = dr("example.com", "  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1m}}}", ns="not-default")
WEIGHTED_TLS = vs(
    "routing-config-for-example-com",
    "[example.com]",
    """  tls:
  - match: [{sniHosts: [example.com]}]
    route:
    - {destination: {host: example.com, port: {number: 443}, subset: prod}, weight: 75}
    - {destination: {host: example-canary.com, port: {number: 443}, subset: canary}, weight: 25}""",
    ns="not-default",
)


def idle_meta(value: str) -> str:
    return mesh_config(defaultConfig={"proxyMetadata": {"ISTIO_META_IDLE_TIMEOUT": value}})


@pytest.mark.parametrize(
    ("name", "docs", "expected"),
    [
        ("no ISTIO_META_IDLE_TIMEOUT, no destination rule", [], DEFAULT_IDLE),
        # Validation refuses it at apply; a snapshot built around validation still ignores it, as istiod.
        ("invalid ISTIO_META_IDLE_TIMEOUT, no destination rule", [idle_meta("30 s")], DEFAULT_IDLE),
        ("valid ISTIO_META_IDLE_TIMEOUT, no destination rule", [idle_meta("30s")], "30s"),
        ("ISTIO_META_IDLE_TIMEOUT ignored for the destination rule's", [idle_meta("30s"), IDLE_DR], "60s"),
        (
            "weighted routes: the first destination's rule, over ISTIO_META_IDLE_TIMEOUT",
            [idle_meta("30s"), IDLE_DR, WEIGHTED_TLS],
            "60s",
        ),
    ],
)
def test_outbound_network_filter_idle_timeout(name: str, docs: list[str], expected: str) -> None:
    route = tunnel(EXAMPLES, *docs, authority="example.com:443", ns="not-default")
    assert route["route"]["idle_timeout"] == expected, name


def test_weighted_tls_route_splits_by_weight() -> None:
    route = tunnel(EXAMPLES, WEIGHTED_TLS, authority="example.com:443", ns="not-default")
    assert cluster(route) == "outbound|443|prod|example.com=75,outbound|443|canary|example-canary.com=25"


def test_max_connection_duration_bounds_the_tunnel() -> None:
    """connectionPool.tcp.maxConnectionDuration: the tcp_proxy's max_downstream_connection_duration."""
    rule = dr("example.com", "  trafficPolicy: {connectionPool: {tcp: {maxConnectionDuration: 90s}}}")
    route = tunnel(EXAMPLES, rule, authority="example.com:443")
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "90s"}
    assert "max_stream_duration" not in tunnel(EXAMPLES, authority="example.com:443")["route"]


def test_subset_and_port_level_pools_do_not_set_the_tcp_proxy_idle_timeout() -> None:
    """istiod reads the top level's connectionPool.tcp only (the clusters take the others)."""
    rule = dr(
        "example.com",
        """  trafficPolicy:
    portLevelSettings: [{port: {number: 443}, connectionPool: {tcp: {idleTimeout: 5s}}}]
  subsets: [{name: prod, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 7s}}}}]""",
    )
    to_prod = vs(
        "r",
        "[example.com]",
        "  tls: [{match: [{sniHosts: [example.com]}], route: [{destination: {host: example.com, subset: prod}}]}]",
    )
    assert (
        tunnel(EXAMPLES, rule, to_prod, authority="example.com:443")["route"]["idle_timeout"] == DEFAULT_IDLE
    )


# --- TestOutboundNetworkFilterWithSourceIPHashing -----------------------------------------------

HASH_SERVICES = "---".join(
    service_entry(host.split(".")[0], host, "[{name: tcp, number: 9999, protocol: TCP}]")
    for host in ("test.com", "testsimple.com", "subsettest.com", "subsettestdifferent.com")
)
SOURCE_IP = "  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}"
HASH_RULES = "---".join(
    [
        dr("testsimple.com", "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}", "not-default"),
        dr("test.com", SOURCE_IP, "not-default"),
        dr("subsettest.com", SOURCE_IP + "\n  subsets: [{name: v1, labels: {version: v1}}]", "not-default"),
        dr(
            "subsettestdifferent.com",
            SOURCE_IP
            + "\n  subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}]",
            "not-default",
        ),
    ]
)


@pytest.mark.parametrize(
    ("name", "host", "subset", "source_ip"),
    [
        ("destination rule without sourceip", "testsimple.com", "", False),
        ("destination rule has sourceip", "test.com", "", True),
        ("subset destination rule does not have traffic policy", "subsettest.com", "v1", True),
        ("subset destination rule overrides traffic policy", "subsettestdifferent.com", "v1", False),
    ],
)
def test_outbound_network_filter_with_source_ip_hashing(
    name: str, host: str, subset: str, source_ip: bool
) -> None:
    sub = f", subset: {subset}" if subset else ""
    rule = vs(
        "r", f"[{host}]", f"  tcp: [{{route: [{{destination: {{host: {host}{sub}}}}}]}}]", ns="not-default"
    )
    route = tunnel(HASH_SERVICES, HASH_RULES, rule, authority=f"{host}:9999", ns="not-default")
    expected = [{"connection_properties": {"source_ip": True}}] if source_ip else None
    assert route["route"].get("hash_policy") == expected, name


def test_weighted_tcp_routes_hash_by_the_first_destinations_top_level() -> None:
    """maybeSetHashPolicy(destinationRule, tcpProxy, "") for weighted clusters: the first destination's
    rule at the top level, even where the subsets set another load balancer."""
    split = vs(
        "r",
        "[subsettestdifferent.com]",
        """  tcp:
  - route:
    - {destination: {host: subsettestdifferent.com, subset: v1}, weight: 50}
    - {destination: {host: testsimple.com}, weight: 50}""",
        ns="not-default",
    )
    route = tunnel(
        HASH_SERVICES, HASH_RULES, split, authority="subsettestdifferent.com:9999", ns="not-default"
    )
    assert route["route"]["hash_policy"] == [{"connection_properties": {"source_ip": True}}]
    # The first destination decides: testsimple.com's rule has no hash.
    first_simple = split.replace(
        "subsettestdifferent.com, subset: v1}, weight: 50}", "testsimple.com}, weight: 50}"
    )
    route = tunnel(
        HASH_SERVICES, HASH_RULES, first_simple, authority="subsettestdifferent.com:9999", ns="not-default"
    )
    assert "hash_policy" not in route["route"]


# --- gateways: the same DestinationRule settings on a real tcp_proxy, and its stat prefix ------------


def gateway_tcp_proxies(*docs: str) -> list[dict[str, Any]]:
    from gen_helpers import PODS

    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    out = []
    for lst in generate(snap, gateway_proxy(), naming.LISTENER_TYPE).values():
        for chain in lst.get("filter_chains", []):
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.tcp_proxy":
                    out.append(f["typed_config"])
    return out


GW_TCP = gateway("gw", "istio-system", "- {port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}")


def test_gateway_tcp_proxy_takes_idle_timeout_hash_and_duration_from_the_rule() -> None:
    rule = dr(
        "test.com",
        """  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true}}
    connectionPool: {tcp: {idleTimeout: 1m, maxConnectionDuration: 2m}}""",
    )
    route = virtual_service(
        "test-com",
        "default",
        "hosts: ['*']\ngateways: [istio-system/gw]\ntcp: [{route: [{destination: {host: test.com}}]}]",
    )
    (proxy,) = gateway_tcp_proxies(HASH_SERVICES, GW_TCP, route, rule)
    assert proxy["cluster"] == "outbound|9999||test.com"
    assert proxy["stat_prefix"] == "outbound|9999||test.com"  # TestOutboundNetworkFilterStatPrefix
    assert proxy["idle_timeout"] == "60s"
    assert proxy["max_downstream_connection_duration"] == "120s"
    assert proxy["hash_policy"] == [{"source_ip": {}}]
    (plain,) = gateway_tcp_proxies(HASH_SERVICES, GW_TCP, route)
    assert not {"idle_timeout", "hash_policy", "max_downstream_connection_duration"} & set(plain)


def test_gateway_stat_prefix_single_and_weighted() -> None:
    """TestOutboundNetworkFilterStatPrefix without a pattern: a single destination's cluster name,
    `<name>.<namespace>` of the VirtualService for several; for `tls` routes as for `tcp` ones."""
    gw = gateway(
        "gw",
        "istio-system",
        "- {port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}",
    )
    single = virtual_service(
        "test-com",
        "ns",
        "hosts: [test.com]\ngateways: [istio-system/gw]\n"
        "tls: [{match: [{sniHosts: [test.com]}], route: [{destination: {host: test.com}}]}]",
    )
    weighted = virtual_service(
        "test-com",
        "ns",
        "hosts: [test.com]\ngateways: [istio-system/gw]\n"
        "tls: [{match: [{sniHosts: [test.com]}], route: [{destination: {host: test.com, port: {number: 9999}}, weight: 50},"
        " {destination: {host: testsimple.com, port: {number: 9999}}, weight: 50}]}]",
    )
    assert [p["stat_prefix"] for p in gateway_tcp_proxies(HASH_SERVICES, gw, single)] == [
        "outbound|9999||test.com"
    ]
    assert [p["stat_prefix"] for p in gateway_tcp_proxies(HASH_SERVICES, gw, weighted)] == ["test-com.ns"]


# --- buildSidecarOutboundTCPFilterChainOpts / matchTCP ----------------------------------------------

DB = service_entry(
    "db",
    "db.example.com",
    "[{name: tcp, number: 5432, protocol: TCP}, {name: tcp-alt, number: 5433, protocol: TCP}]",
)


def tcp_rules(rules: str, ns: str = "default") -> str:
    return vs("db", "[db.example.com]", "  tcp:\n" + rules, ns=ns)


def test_first_applicable_tcp_rule_wins() -> None:
    rules = tcp_rules(
        """  - match: [{port: 5433}]
    route: [{destination: {host: db.example.com, subset: alt}}]
  - route: [{destination: {host: db.example.com, subset: any}}]
  - route: [{destination: {host: db.example.com, subset: never}}]"""
    )
    assert cluster(tunnel(DB, rules, authority="db.example.com:5433")) == "outbound|5433|alt|db.example.com"
    assert cluster(tunnel(DB, rules, authority="db.example.com:5432")) == "outbound|5432|any|db.example.com"


def test_match_gateways_do_not_stand_in_for_source_labels() -> None:
    """matchTCP needs every predicate: a match naming the mesh gateway still checks sourceLabels (HTTP's
    sourceMatch would not)."""
    rules = tcp_rules(
        """  - match: [{gateways: [mesh], sourceLabels: {version: canary}}]
    route: [{destination: {host: db.example.com, subset: canary}}]"""
    )
    assert cluster(tunnel(DB, rules, authority="db.example.com:5432")) == "outbound|5432||db.example.com"
    canary = tunnel(DB, rules, authority="db.example.com:5432", labels={"app": "web", "version": "canary"})
    assert cluster(canary) == "outbound|5432|canary|db.example.com"


def test_source_namespace() -> None:
    rules = tcp_rules(
        """  - match: [{sourceNamespace: other}]
    route: [{destination: {host: db.example.com, subset: other}}]"""
    )
    assert cluster(tunnel(DB, rules, authority="db.example.com:5432")) == "outbound|5432||db.example.com"
    assert cluster(tunnel(DB, rules, authority="db.example.com:5432", ns="other")) == (
        "outbound|5432|other|db.example.com"
    )


def test_tls_rules_do_not_apply_to_tcp_ports() -> None:
    rules = vs(
        "db",
        "[db.example.com]",
        "  tls: [{match: [{sniHosts: [db.example.com]}], route: [{destination: {host: db.example.com, subset: tls}}]}]",
    )
    assert cluster(tunnel(DB, rules, authority="db.example.com:5432")) == "outbound|5432||db.example.com"


def test_destination_subnets_are_refused_on_the_mesh_gateway() -> None:
    """TestOutboundListenerTCPWithVS (same / different CIDR): a tunnel has no destination IP to match,
    so the mesh gateway's destinationSubnets are refused at apply with the reason (by design)."""
    text = vs(
        "test-vs",
        "[test.com]",
        """  tcp:
  - match: [{destinationSubnets: [10.10.0.0/24], port: 8080}]
    route: [{destination: {host: test.org, port: {number: 80}}, weight: 100}]""",
        extra="gateways: [mesh]",
    )
    (resource,) = loader.load_text(text, "vs.yaml")
    (error,) = check_supported(resource)
    assert "spec.tcp[0].match[0].destinationSubnets is not supported yet on sidecars" in error.message


# --- buildSidecarOutboundTLSFilterChainOpts / matchTLS ----------------------------------------------

SECURE = service_entry(
    "secure",
    "secure.example.com",
    "[{name: tls, number: 443, protocol: TLS}, {name: https, number: 8443, protocol: HTTPS}]",
)


def tls_rules(rules: str, tcp: str = "") -> str:
    return vs(
        "secure",
        "['*.example.com']",
        "  tls:\n" + rules + (f"\n  tcp:\n{tcp}" if tcp else ""),
    )


def test_tls_ports_ignore_tcp_rules() -> None:
    """buildSidecarOutboundTCPFilterChainOpts returns nothing for TLS and HTTPS ports."""
    rules = vs(
        "secure",
        "[secure.example.com]",
        "  tcp: [{route: [{destination: {host: secure.example.com, subset: tcp}}]}]",
    )
    for port in (443, 8443):
        assert cluster(tunnel(SECURE, rules, authority=f"secure.example.com:{port}")) == (
            f"outbound|{port}||secure.example.com"
        )


def test_exact_sni_wins_over_an_earlier_wildcard() -> None:
    """Each match is its own filter chain and Envoy picks by server name, exact before wildcard and
    longer wildcards before shorter, whatever the order of the rules."""
    rules = tls_rules(
        """  - match: [{sniHosts: ['*.example.com']}]
    route: [{destination: {host: secure.example.com, subset: wildcard}}]
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure.example.com, subset: exact}}]"""
    )
    assert (
        cluster(tunnel(SECURE, rules, authority="secure.example.com:443"))
        == "outbound|443|exact|secure.example.com"
    )


def test_repeated_sni_keeps_the_first_match() -> None:
    """hashRuntimeTLSMatchPredicates: a later match with the same sniHosts makes no chain."""
    rules = tls_rules(
        """  - match: [{sniHosts: [secure.example.com], sourceLabels: {version: v1}}]
    route: [{destination: {host: secure.example.com, subset: first}}]
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure.example.com, subset: second}}]"""
    )
    assert (
        cluster(tunnel(SECURE, rules, authority="secure.example.com:443"))
        == "outbound|443|first|secure.example.com"
    )
    other = tunnel(SECURE, rules, authority="secure.example.com:443", labels={"app": "web", "version": "v2"})
    assert cluster(other) == "outbound|443|second|secure.example.com"


def test_unmatched_sni_falls_to_the_passthrough_chain() -> None:
    """With `tls` matches for other names only, the connection meets the listener's PassthroughFilterChain:
    REGISTRY_ONLY blackholes it (a 502 to the CONNECT here); ALLOW_ANY passes it on to the address the
    app dialled, the service's (its own cluster here, there being no VIP)."""
    rules = tls_rules(
        """  - match: [{sniHosts: [other.example.com]}]
    route: [{destination: {host: secure.example.com, subset: other}}]"""
    )
    assert (
        cluster(tunnel(SECURE, rules, authority="secure.example.com:443"))
        == "outbound|443||secure.example.com"
    )
    registry_only = mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})
    assert (
        cluster(tunnel(SECURE, rules, registry_only, authority="secure.example.com:443"))
        == "direct_response:502"
    )
    # Without any applicable tls match (here: bound to another port) the service's own chain is built.
    bound = rules.replace(
        "[{sniHosts: [other.example.com]}]", "[{sniHosts: [other.example.com], port: 8443}]"
    )
    assert cluster(tunnel(SECURE, bound, registry_only, authority="secure.example.com:443")) == (
        "outbound|443||secure.example.com"
    )


# --- TestOutboundListenerConflict_* / TestOutboundTlsTrafficWithoutTimeout ---------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [(a, b) for a in ("TCP", "TLS", "HTTP", "") for b in ("TCP", "TLS", "HTTP", "")],
)
def test_services_sharing_a_port_each_keep_their_own_route(older: str, newer: str) -> None:
    """istiod keeps the oldest service's listener on a wildcard port and drops the rest; an explicit proxy
    routes by `host:port`, so each service keeps its route (by design). "" is a sniffed port."""

    def port(protocol: str) -> str:
        return f"[{{name: p, number: 8080{', protocol: ' + protocol if protocol else ''}}}]"

    docs = [
        service_entry("test1", "test1.com", port(older)),
        service_entry("test2", "test2.com", port(newer)),
    ]
    for host in ("test1.com", "test2.com"):
        assert cluster(tunnel(*docs, authority=f"{host}:8080")) == f"outbound|8080||{host}"


def test_outbound_port_has_no_listener_filters() -> None:
    """TestOutboundTlsTrafficWithoutTimeout checks the per-port listeners' inspector timeouts; the
    explicit proxy's one outbound listener parses CONNECT and HTTP itself, with no inspectors to wait for:
    buildListenerFromEntry then sets no timeout at all (0s)."""
    snap = snapshot(SECURE, pods=[], services=False)
    lst = generate(snap, sidecar(), naming.LISTENER_TYPE)[naming.VIRTUAL_OUTBOUND]
    assert "listener_filters" not in lst and lst["listener_filters_timeout"] == "0s"


# --- TestPassthroughTraffic / TestExternalNameServices (sidecar_simulation_test.go) -----------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("ALLOW_ANY", naming.PASSTHROUGH_CLUSTER), ("REGISTRY_ONLY", "direct_response:502")],
)
def test_passthrough_tunnels(mode: str, expected: str) -> None:
    """A CONNECT to a host no service has, on any of the ServiceEntry's ports: PassthroughCluster, or
    refused under REGISTRY_ONLY (the BlackHoleCluster's 502 for an explicit proxy)."""
    se = service_entry(
        "se",
        "istio.io",
        "[{name: http, number: 80, protocol: HTTP}, {name: auto, number: 81}, {name: tcp, number: 82, protocol: TCP},"
        " {name: tls, number: 83, protocol: TLS}, {name: https, number: 84, protocol: HTTPS}]",
        extra="addresses: [1.2.3.4]",
    ).replace("MESH_INTERNAL", "MESH_EXTERNAL")
    policy = mesh_config(outboundTrafficPolicy={"mode": mode})
    for port in range(80, 85):
        assert cluster(tunnel(se, policy, authority=f"foo:{port}")) == expected, port
        # The service's own name is no passthrough.
        assert cluster(tunnel(se, policy, authority=f"istio.io:{port}")) == f"outbound|{port}||istio.io"


EXTERNAL_NAME = """
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: default}
spec: {type: ExternalName, externalName: concrete.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: concrete, namespace: default}
spec:
  ports: [{name: tcp, port: 82}, {name: tls, port: 83, appProtocol: tls}]
"""


def test_external_name_alias_tcp() -> None:
    """A CONNECT to the alias reaches the concrete service's port; a `tcp` VirtualService for the alias's
    hostname does not apply to the concrete service ("TCP virtual services do not apply")."""
    assert cluster(tunnel(EXTERNAL_NAME, authority="alias.default.svc.cluster.local:82")) == (
        "outbound|82||concrete.default.svc.cluster.local"
    )
    alias_vs = vs(
        "alias",
        "[alias.default.svc.cluster.local]",
        "  tcp: [{route: [{destination: {host: concrete.default.svc.cluster.local, port: {number: 80}}}]}]",
    )
    assert cluster(tunnel(EXTERNAL_NAME, alias_vs, authority="concrete.default.svc.cluster.local:82")) == (
        "outbound|82||concrete.default.svc.cluster.local"
    )


# --- ports of sniffed protocol -------------------------------------------------------------------
# istiod keeps a TCP filter chain beside the HTTP one on a port whose protocol it sniffs, and that
# chain's tcp_proxy takes the DestinationRule's settings as a TCP port's does; an HTTP port has no
# tcp_proxy, so its CONNECT route gets none of them.

AUTO = service_entry("auto", "auto.example.com", "[{name: foo, number: 7070}]")
HTTP = service_entry("web", "web.example.com", "[{name: http, number: 7070, protocol: HTTP}]")


def test_sniffed_port_tunnels_take_the_tcp_proxy_settings() -> None:
    pool = "  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1m, maxConnectionDuration: 90s}}}"
    route = tunnel(AUTO, dr("auto.example.com", pool), authority="auto.example.com:7070")
    assert route["route"]["idle_timeout"] == "60s"
    assert route["route"]["max_stream_duration"] == {"max_stream_duration": "90s"}
    assert tunnel(AUTO, authority="auto.example.com:7070")["route"]["idle_timeout"] == DEFAULT_IDLE
    assert tunnel(AUTO, idle_meta("30s"), authority="auto.example.com:7070")["route"]["idle_timeout"] == "30s"
    assert "idle_timeout" not in tunnel(HTTP, authority="web.example.com:7070")["route"]


# istiod's auto port keeps a TCP chain beside its HTTP one, built from the `tcp` rules for that host and
# port (buildSidecarOutboundTCPFilterChainOpts / TcpLoop), as a TCP port's is: a CONNECT to an auto port
# takes the applicable `tcp` rule too, with the tunnel ALPN of mesh mTLS where its destinations use it.

AUTO_V2 = service_entry("auto-v2", "auto-v2.example.com", "[{name: foo, number: 7070}]")
AUTO_TCP = vs(
    "auto",
    "[auto.example.com]",
    """  tcp:
  - match: [{sourceLabels: {version: canary}}]
    route: [{destination: {host: auto.example.com, subset: canary}}]
  - route:
    - {destination: {host: auto.example.com, subset: v1}, weight: 70}
    - {destination: {host: auto-v2.example.com}, weight: 30}""",
)


def tunnel_alpn(route: dict[str, Any]) -> str | None:
    return route.get("metadata", {}).get("filter_metadata", {}).get("isthmus", {}).get("tunnel_alpn")


def test_sniffed_port_tunnels_take_tcp_rules() -> None:
    route = tunnel(AUTO, AUTO_V2, AUTO_TCP, authority="auto.example.com:7070")
    assert cluster(route) == "outbound|7070|v1|auto.example.com=70,outbound|7070||auto-v2.example.com=30"
    assert tunnel_alpn(route) == "istio"
    canary = tunnel(AUTO, AUTO_V2, AUTO_TCP, authority="auto.example.com:7070", labels={"version": "canary"})
    assert cluster(canary) == "outbound|7070|canary|auto.example.com"
    assert tunnel_alpn(canary) == "istio"
    # The HTTP side keeps the default route: `tcp` rules say nothing of HTTP.
    table = route_table(snapshot(AUTO, AUTO_V2, AUTO_TCP, pods=[], services=False), sidecar())
    found = matching.select_virtual_host(table, "auto.example.com:7070")
    assert found is not None
    http = matching.select_route(found.vhost, matching.request_from_url("http://auto.example.com:7070/"))
    assert http.route is not None and http.route["route"]["cluster"] == "outbound|7070||auto.example.com"


def test_sniffed_port_tunnels_take_tcp_rules_beside_http_rules() -> None:
    """A VirtualService with `http` rules too covers the host's vhost; its CONNECT takes the `tcp` rule."""
    both = vs(
        "auto",
        "[auto.example.com]",
        """  http: [{route: [{destination: {host: auto.example.com, subset: http}}]}]
  tcp: [{route: [{destination: {host: auto-v2.example.com}}]}]""",
    )
    assert cluster(tunnel(AUTO, AUTO_V2, both, authority="auto.example.com:7070")) == (
        "outbound|7070||auto-v2.example.com"
    )


def test_sniffed_port_tcp_rule_to_own_tls_keeps_its_alpn() -> None:
    rule = vs("auto", "[auto.example.com]", "  tcp: [{route: [{destination: {host: auto-v2.example.com}}]}]")
    simple = dr("auto-v2.example.com", "  trafficPolicy: {tls: {mode: SIMPLE}}")
    route = tunnel(AUTO, AUTO_V2, rule, simple, authority="auto.example.com:7070")
    assert cluster(route) == "outbound|7070||auto-v2.example.com"
    assert tunnel_alpn(route) is None


AUTO_TCP_V2 = vs(
    "auto", "[auto.example.com]", "  tcp: [{route: [{destination: {host: auto-v2.example.com}}]}]"
)


@pytest.mark.parametrize(
    ("first", "then"),
    [("", AUTO_TCP), (AUTO_TCP, ""), (AUTO_TCP, AUTO_TCP.replace("70", "50")), (AUTO_TCP, AUTO_TCP_V2)],
    ids=["added", "removed", "weights", "replaced"],
)
def test_sniffed_port_tcp_rules_after_a_virtual_service_only_change(first: str, then: str) -> None:
    """The default vhosts a scope reuses after a change of VirtualServices only (sidecar_virtual_hosts'
    record) must not keep the CONNECT of a `tcp` rule that changed."""
    base = (AUTO, AUTO_V2)
    before = snapshot(*base, *([first] if first else []), pods=[], services=False)
    route_table(before, sidecar())
    docs = configs(*base, *([then] if then else []), services=False)
    after = Snapshot.build_configs_changed(before, 2, docs, frozenset({"VirtualService"}))
    assert after is not None
    after.routes_changed_from = before
    fresh = snapshot(*base, *([then] if then else []), pods=[], services=False)
    assert route_table(after, sidecar()) == route_table(fresh, sidecar())
