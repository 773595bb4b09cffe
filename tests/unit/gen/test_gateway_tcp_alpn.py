"""A gateway's tcp_proxy to a port of sniffed protocol offers the mesh's TCP ALPN, as istiod's gateways do.

istiod's clusters offer `istio` and its istio.alpn filter gives HTTP requests `istio-http/*` only, so a
gateway's VirtualService `tcp` / `tls` route reaches the server sidecar's TCP chain even on an auto port.
Here that port's cluster offers the HTTP ALPN (for the gateway's HTTP routes to it), so the rule's filter
chain sets the upstream ALPN override (`envoy.network.application_protocols`) to `istio` before its
tcp_proxy (see tls.TCP_PROXY_ALPN_FILTER; the e2e side is tests/e2e/test_gateway_tcp_auto_port.py).
"""

from __future__ import annotations

import textwrap
from typing import Any

from gen_helpers import PODS, clusters, generate, snapshot

from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming, tls

GW_LABELS = {"istio": "ingressgateway"}
GW_POD = Pod("gw-0", "istio-system", "127.7.0.9", GW_LABELS, workload="gw", gateway=True)
MIXED_POD = Pod(
    "mixed-0",
    "default",
    "127.7.0.6",
    {"app": "mixed"},
    workload="mixed",
    app_ports={9001: 40011, 9002: 40012},
)
MIXED = """
apiVersion: v1
kind: Service
metadata: {name: mixed, namespace: default}
spec:
  selector: {app: mixed}
  ports: [{name: tcp, port: 9001}, {name: auto-tcp, port: 9002}]
"""
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 31443, name: tls, protocol: TLS}
    hosts: [tls.example.com]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 31444, name: passthrough, protocol: TLS}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
"""
MIXED_HOST = "mixed.default.svc.cluster.local"
RATINGS_DB = "{destination: {host: ratings.other.svc.cluster.local, port: {number: 5432}}}"


def gateway_proxy() -> Proxy:
    return Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels=GW_LABELS,
    )


def dest(port: int, subset: str = "") -> str:
    sub = f", subset: {subset}" if subset else ""
    return f"{{destination: {{host: {MIXED_HOST}, port: {{number: {port}}}{sub}}}}}"


def vs(routes: str, kind: str = "tcp", hosts: str = '"*"', match: str = "{port: 31400}") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: [{hosts}]
  gateways: [gw]
  {kind}:
  - match: [{match}]
    route: [{routes}]
"""


def dr(policy: str, host: str = MIXED_HOST, namespace: str = "default") -> str:
    """A DestinationRule for `host` in its service's namespace."""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: rule, namespace: {namespace}}}
spec:
  host: {host}
{textwrap.indent(textwrap.dedent(policy).strip(), "  ")}
"""


def gw_snapshot(*docs: str) -> Any:
    return snapshot(MIXED, GATEWAY, *docs, pods=[*PODS, MIXED_POD, GW_POD])


def chain_filters(*docs: str, port: int = 31400) -> list[dict[str, Any]]:
    """The network filters of the listener's only filter chain for the gateway server on `port`."""
    found = generate(gw_snapshot(*docs), gateway_proxy(), naming.LISTENER_TYPE)
    (listener,) = [lst for lst in found.values() if lst["address"]["socket_address"]["port_value"] == port]
    (chain,) = listener["filter_chains"]
    filters: list[dict[str, Any]] = chain["filters"]
    assert filters[-1]["name"] == "envoy.filters.network.tcp_proxy"
    return filters


def overrides_alpn(filters: list[dict[str, Any]]) -> bool:
    names = [f["name"] for f in filters]
    if tls.TCP_PROXY_ALPN_FILTER not in names:
        return False
    # Right before the tcp_proxy: after the RBAC filters, which may close the connection first.
    assert names.index(tls.TCP_PROXY_ALPN_FILTER) == len(names) - 2, names
    return True


def test_a_tcp_route_to_an_auto_port_overrides_the_alpn_and_one_to_a_tcp_port_does_not() -> None:
    assert overrides_alpn(chain_filters(vs(dest(9002))))
    assert not overrides_alpn(chain_filters(vs(dest(9001))))


def test_why_the_auto_port_cluster_offers_the_http_alpn_on_the_gateway() -> None:
    """The reason for the override: the auto port's cluster is the gateway's HTTP routes' cluster too."""
    found = clusters(gw_snapshot(vs(dest(9002))), gateway_proxy())

    def alpns(port: int) -> list[str]:
        cluster = found[naming.outbound_cluster(port, "", MIXED_HOST)]
        (match, _plain) = cluster["transport_socket_matches"]
        return match["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"]

    assert alpns(9002) == [tls.ALPN_HTTP11]
    assert alpns(9001) == [tls.ALPN_TCP]


def test_the_filter_sets_the_tcp_alpn_on_each_new_connection() -> None:
    (f,) = [f for f in chain_filters(vs(dest(9002))) if f["name"] == tls.TCP_PROXY_ALPN_FILTER]
    config = f["typed_config"]
    assert (
        config["@type"] == "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config"
    )
    (value,) = config["on_new_connection"]
    assert value["object_key"] == "envoy.network.application_protocols"
    assert value["format_string"]["text_format_source"]["inline_string"] == "istio"


def test_terminated_tls_and_passthrough_routes_to_an_auto_port_override_it_too() -> None:
    terminated = vs(dest(9002), hosts="tls.example.com", match="{port: 31443}")
    assert overrides_alpn(chain_filters(terminated, port=31443))
    passthrough = vs(
        dest(9002), kind="tls", hosts="pass.example.com", match="{port: 31444, sniHosts: [pass.example.com]}"
    )
    assert overrides_alpn(chain_filters(passthrough, port=31444))


def test_destination_rule_tls_of_its_own_keeps_the_clusters_alpn() -> None:
    """SIMPLE/MUTUAL origination is the application's TLS (istiod: `alpn_override: false`); ISTIO_MUTUAL
    is the mesh's, also when a port-level setting brings it back, and so is a subset's."""
    assert not overrides_alpn(chain_filters(vs(dest(9002)), dr("trafficPolicy: {tls: {mode: SIMPLE}}")))
    port_level = """
    trafficPolicy:
      tls: {mode: SIMPLE}
      portLevelSettings:
      - {port: {number: 9002}, tls: {mode: ISTIO_MUTUAL}}
    """
    assert overrides_alpn(chain_filters(vs(dest(9002)), dr(port_level)))
    subsets = """
    subsets:
    - {name: own, labels: {app: mixed}, trafficPolicy: {tls: {mode: SIMPLE}}}
    - {name: mesh, labels: {app: mixed}}
    """
    assert not overrides_alpn(chain_filters(vs(dest(9002, "own")), dr(subsets)))
    assert overrides_alpn(chain_filters(vs(dest(9002, "mesh")), dr(subsets)))


def test_a_split_overrides_only_when_no_destination_has_tls_of_its_own() -> None:
    """The override is per connection, before the split picks a cluster: `istio` is harmless for a mesh
    TCP port (its cluster offers it anyway), not for a destination originating its own TLS."""
    split = f"{dest(9002)[:-1]}, weight: 50}}, {RATINGS_DB[:-1]}, weight: 50}}"
    assert overrides_alpn(chain_filters(vs(split)))
    simple = dr(
        "trafficPolicy: {tls: {mode: SIMPLE}}", host="ratings.other.svc.cluster.local", namespace="other"
    )
    assert not overrides_alpn(chain_filters(vs(split), simple))


def test_a_destination_rule_tunnel_is_left_alone() -> None:
    """The tcp_proxy then sends a CONNECT to the forward proxy: HTTP, whose ALPN the cluster says."""
    tunnel = dr("trafficPolicy: {tunnel: {targetHost: 10.0.0.1, targetPort: 9002}}")
    filters = chain_filters(vs(dest(9002)), tunnel)
    assert filters[-1]["typed_config"]["tunneling_config"]["hostname"] == "10.0.0.1:9002"
    assert not overrides_alpn(filters)
