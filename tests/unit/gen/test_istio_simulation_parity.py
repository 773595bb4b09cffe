"""Where a request goes: parity with istiod's sidecar simulation tests, case by case, as Istio YAML.

Sources (istio/istio, pilot/pkg/networking/core): sidecar_simulation_test.go (TestInbound,
TestInboundClusters' service-instance cases, TestHeadlessServices, TestExternalNameServices,
TestPassthroughTraffic) and
serviceentry_simulation_test.go (TestServiceEntry, TestServiceEntryDuplicatedHostname). Their other cases
are ported beside the code they exercise: TestSidecarRoutes in test_istio_httproute_parity.py, the TCP
cases of TestPassthroughTraffic / TestExternalNameServices in test_istio_tcp_parity.py,
TestInboundSidecarTLSModes and TestInboundClusters' defaultEndpoint forms in test_sidecar_ingress.py,
TestLoop in test_tunnels.py.

istiod's simulation sends a call to an address and port and follows its listeners; here a call is a
request through the sidecar's outbound port, followed with Isthmus's own route matching
(`isthmus.debug.matching`, what `isthmus route test` runs), or an inbound connection followed through the
generated inbound listener's filter chains. Where Isthmus departs by design (DESIGN.md §3) the test says
so and checks the documented behaviour:
- sidecars are explicit proxies: the Host header (HTTP) or the CONNECT authority (TCP, TLS, HTTPS) picks
  the route, never the original destination IP. A call that istiod's test makes to an address with a Host
  header is here a request for `host:port`; a TCP or TLS call is a CONNECT, and its host stands for SNI;
- so a refused call is the 502 of the catch-all `block_all` route wherever istiod can only pick the
  BlackHoleCluster (a TCP listener), and a port a service has no VIP on captures nothing: the host
  decides;
- an address inside a ServiceEntry's CIDR is no domain an explicit proxy can match (Envoy's virtual host
  domains are names): a CONNECT to one goes where a CONNECT to any unknown address goes;
- each inbound port is its own listener on `<pod ip>:<target port>` and a port the workload does not
  declare has none, so there is no InboundPassthroughCluster to reach.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import clusters, generate, route_table, sidecar, snapshot
from test_istio_inbound_parity import HCM, HTTP_INSPECTOR, TLS_INSPECTOR, mode
from test_istio_tcp_parity import mesh_config

from isthmus.debug import matching
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

PASS = naming.PASSTHROUGH_CLUSTER
BLOCKED = "direct_response:502"  # the catch-all `block_all` route: REGISTRY_ONLY for an explicit proxy


def route_for(*docs: str, url: str, pods: list[Pod] | None = None) -> tuple[str, dict[str, Any]]:
    """The virtual host's name and the route a request for `url` (`tcp://host:port` is a CONNECT) takes
    through a sidecar in `default`."""
    table = route_table(snapshot(*docs, pods=pods or [], services=False), sidecar())
    request = matching.request_from_url(url)
    found = matching.select_virtual_host(table, request.authority)
    assert found is not None, request.authority
    route = matching.select_route(found.vhost, request).route
    assert route is not None, (url, found.vhost["name"])
    return found.vhost["name"], route


def call(*docs: str, url: str) -> tuple[str, str, str]:
    """(virtual host, route name, cluster or direct response) of a request for `url`."""
    vhost, route = route_for(*docs, url=url)
    if "direct_response" in route:
        return vhost, route.get("name", ""), f"direct_response:{route['direct_response']['status']}"
    return vhost, route.get("name", ""), route["route"]["cluster"]


def to(*docs: str, url: str) -> str:
    """The cluster (or direct response) a request for `url` reaches."""
    return call(*docs, url=url)[2]


def service_entry(name: str, host: str, ports: str, extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  ports: {ports}
  {extra}
"""


# --- TestHeadlessServices -----------------------------------------------------------------------

KUBE_PORTS = "[{name: http, port: 80}, {name: auto, port: 81}, {name: tcp, port: 82}, {name: tls, port: 83}, {name: https, port: 84}]"
HEADLESS = f"""
apiVersion: v1
kind: Service
metadata: {{name: headless, namespace: default}}
spec:
  clusterIP: None
  selector: {{app: headless}}
  ports: {KUBE_PORTS}
"""
HEADLESS_POD = Pod("headless-0", "default", "127.7.0.20", {"app": "headless"}, workload="headless",
                   app_ports={p: 41000 + p for p in range(80, 85)})  # fmt: skip


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://headless.default.svc.cluster.local/", 80),
        ("http://headless.default.svc.cluster.local:81/", 81),  # auto port: HTTP
        ("tcp://headless.default.svc.cluster.local:81", 81),  # auto port: TLS and TCP, both a CONNECT
        ("tcp://headless.default.svc.cluster.local:82", 82),
        ("tcp://headless.default:83", 83),  # the short host name
        ("tcp://headless.default:84", 84),
    ],
)
def test_headless_services(url: str, port: int) -> None:
    """Every call by the service's name reaches `outbound|<port>||headless...`: the pod's own routes (by
    `<pod>.headless` names) come first and leave the service's name to the service."""
    _, route = route_for(HEADLESS, url=url, pods=[HEADLESS_POD])
    assert route["route"]["cluster"] == f"outbound|{port}||headless.default.svc.cluster.local"
    assert "metadata_match" not in route["route"]  # the service, not one pod


# --- TestExternalNameServices (HTTP side) ----------------------------------------------------------

EXTERNAL_NAME = f"""
apiVersion: v1
kind: Service
metadata: {{name: alias, namespace: default}}
spec: {{type: ExternalName, externalName: concrete.default.svc.cluster.local}}
---
apiVersion: v1
kind: Service
metadata: {{name: concrete, namespace: default}}
spec:
  clusterIP: 1.2.3.4
  ports: {KUBE_PORTS}
"""
CONCRETE = "concrete.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://alias.default.svc.cluster.local/", 80),
        ("http://alias.default.svc.cluster.local:81/", 81),
        ("tcp://alias.default.svc.cluster.local:81", 81),  # HTTPS to the auto port
        ("tcp://1.2.3.4:81", 81),  # TCP to the VIP, no host
        ("tcp://1.2.3.4:82", 82),
        ("tcp://alias.default:83", 83),  # the alias's short name
        ("tcp://alias.default:84", 84),
    ],
)
def test_external_name_alias_reaches_the_concrete_service(url: str, port: int) -> None:
    assert to(EXTERNAL_NAME, url=url) == f"outbound|{port}||{CONCRETE}"


ALIAS_VS = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: alias, namespace: default}}
spec:
  hosts: [alias.default.svc.cluster.local]
  http:
  - name: route1
    match: [{{uri: {{prefix: /one}}}}]
    route: [{{destination: {{host: {CONCRETE}}}}}]
"""


@pytest.mark.parametrize(
    ("url", "route"),
    [
        # "HTTP virtual service applies to alias fqdn": Host is an opaque name, matched exactly.
        ("http://alias.default.svc.cluster.local/one", "route1"),
        # "... does not apply to alias without exact match": no expansion of the VS host.
        ("http://alias.default/one", "default"),
        # "... of alias does not apply to concrete".
        (f"http://{CONCRETE}/one", "default"),
        # Auto port: a VirtualService for a host that is no service only gets istiod's port-80 vhost.
        ("http://alias.default.svc.cluster.local:81/one", "default"),
        ("http://alias.default:81/one", "default"),
        (f"http://{CONCRETE}:81/one", "default"),
    ],
)
def test_external_name_alias_http_virtual_service(url: str, route: str) -> None:
    port = 81 if ":81/" in url else 80
    assert call(EXTERNAL_NAME, ALIAS_VS, url=url)[1:] == (route, f"outbound|{port}||{CONCRETE}")


# --- TestPassthroughTraffic (HTTP side) ---------------------------------------------------------

SE_PORTS = (
    "[{name: http, number: 80, protocol: HTTP}, {name: auto, number: 81}, {name: tcp, number: 82, protocol: TCP},"
    " {name: tls, number: 83, protocol: TLS}, {name: https, number: 84, protocol: HTTPS},"
    " {name: grpc, number: 85, protocol: GRPC}, {name: h2, number: 86, protocol: HTTP2}]"
)


def istio_io(vip: bool) -> str:
    extra = "addresses: [1.2.3.4]" if vip else ""
    return service_entry("se", "istio.io", SE_PORTS, f"location: MESH_EXTERNAL\n  resolution: DNS\n  {extra}")


@pytest.mark.parametrize("vip", [True, False], ids=["with VIP", "without VIP"])
@pytest.mark.parametrize(("policy", "expected"), [("ALLOW_ANY", PASS), ("REGISTRY_ONLY", BLOCKED)])
@pytest.mark.parametrize("port", range(80, 87))
def test_passthrough_traffic(vip: bool, policy: str, expected: str, port: int) -> None:
    """HTTP, HTTPS (a CONNECT) and TCP to `foo` on each of the ServiceEntry's ports: PassthroughCluster,
    or refused under REGISTRY_ONLY. istiod answers 502 only for HTTP on an HTTP port (elsewhere the
    BlackHoleCluster), and without a VIP its TCP port 82 captures everything; an explicit proxy knows the
    host, so both are the catch-all's by design."""
    docs = (istio_io(vip), mesh_config(outboundTrafficPolicy={"mode": policy}))
    assert to(*docs, url=f"http://foo:{port}/") == expected
    assert to(*docs, url=f"tcp://foo:{port}") == expected
    # The service's own name is no passthrough: its HTTP ports take HTTP, every port takes a CONNECT.
    assert to(*docs, url=f"tcp://istio.io:{port}") == f"outbound|{port}||istio.io"
    if port in (80, 81, 85, 86):
        assert to(*docs, url=f"http://istio.io:{port}/") == f"outbound|{port}||istio.io"


# --- TestServiceEntryDuplicatedHostname ------------------------------------------------------------


def test_service_entries_with_a_shared_host() -> None:
    """Two ServiceEntries for istio.io (80 HTTP, 443 HTTPS): HTTP reaches `outbound|80||istio.io`,
    HTTPS `outbound|443||istio.io`. istiod needs one auto-allocated VIP for both; the explicit proxy
    routes by name, so no VIP is needed."""
    external = "location: MESH_EXTERNAL\n  resolution: DNS"
    http = service_entry("istio-http", "istio.io", "[{number: 80, name: http, protocol: HTTP}]", external)
    https = service_entry(
        "istio-https", "istio.io", "[{number: 443, name: https, protocol: HTTPS}]", external
    )
    assert to(http, https, url="http://istio.io/") == "outbound|80||istio.io"
    assert to(http, https, url="tcp://istio.io:443") == "outbound|443||istio.io"
    names = clusters(snapshot(http, https, pods=[], services=False), sidecar())
    assert {"outbound|80||istio.io", "outbound|443||istio.io"} <= set(names)


# --- TestServiceEntry ---------------------------------------------------------------------------

PORT_9999 = "[{number: 9999, name: port-9999, protocol: %s}]"


def blah(n: int, addresses: list[str], protocol: str = "TCP") -> str:
    return service_entry(
        f"se{n}", f"blah{n}.somedomain", PORT_9999 % protocol, f"addresses: {json.dumps(addresses)}"
    )


def test_service_entry_partial_overlap_of_ip() -> None:
    """istiod's "partial overlap of IP" (istio#52847): se1 has 1.1.1.1, se2 has 2.2.2.2 and 1.1.1.1. The
    unique IP reaches blah2 and the shared one blah1 (equal age: the first by name, as istiod keeps)."""
    docs = (blah(1, ["1.1.1.1"]), blah(2, ["2.2.2.2", "1.1.1.1"]))
    assert to(*docs, url="tcp://2.2.2.2:9999") == "outbound|9999||blah2.somedomain"
    assert to(*docs, url="tcp://1.1.1.1:9999") == "outbound|9999||blah1.somedomain"


V6_WIDE = "1234:1f1:123:123:f816:3eff:feb8:2287/16"
V6_NARROW = "1234:1f1:123:123:f816:3eff:febf:57ce/32"
SNI_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs1, namespace: default}
spec:
  hosts: [blah1.somedomain]
  tls:
  - match: [{port: 9999, sniHosts: [blah1.somedomain]}]
    route: [{destination: {host: blah1.somedomain, port: {number: 9999}}}]
"""


@pytest.mark.parametrize(
    ("protocol", "extra"), [("TCP", ()), ("TLS", (SNI_VS,))], ids=["CIDR", "CIDR with SNI"]
)
def test_service_entry_overlapping_cidrs(protocol: str, extra: tuple[str, ...]) -> None:
    """istiod's "overlapping CIDR" / "overlapping CIDR with SNI": it matches the destination IP against
    the CIDRs (the longer prefix wins), then SNI. By design the host decides here: each host reaches its
    own service, the `tls` rule's sniHosts included, and an address inside a CIDR is an unknown
    destination. istiod's "Mismatch IP and SNI" cases (PassthroughCluster, istio#52235) cannot arise."""
    docs = (blah(1, [V6_WIDE], protocol), blah(2, [V6_NARROW], protocol), *extra)
    assert to(*docs, url="tcp://blah1.somedomain:9999") == "outbound|9999||blah1.somedomain"
    assert to(*docs, url="tcp://blah2.somedomain:9999") == "outbound|9999||blah2.somedomain"
    assert to(*docs, url="tcp://[1234::1]:9999") == PASS
    assert to(*docs, url="tcp://[1234:1f1:123:123:f816:3eff:febf:57ce]:9999") == PASS


# --- TestInbound ---------------------------------------------------------------------------------
# A workload of a service with a TCP port (70), an HTTP port (80) and a sniffed one (81), under a
# mesh-wide PeerAuthentication of each mode. A call is followed through the inbound listener as Envoy
# picks a filter chain: by transport protocol (tls when tls_inspector sees a ClientHello, else
# raw_buffer), then by ALPN (the TLS client's, or http_inspector's for plaintext HTTP), the most specific
# bucket at each step with no fallback.

IP = "127.7.0.9"
INBOUND_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: foo, namespace: default}
spec:
  selector: {app: foo}
  ports: [{name: tcp, port: 70}, {name: http, port: 80}, {name: auto, port: 81}]
"""
INBOUND_POD = Pod("foo-0", "default", IP, {"app": "foo"}, workload="foo", service_account="foo",
                  app_ports={70: 41070, 80: 41080, 81: 41081})  # fmt: skip
NO_FILTER_CHAIN = "no filter chain"
MTLS_ERROR = "client certificate required"
PROTOCOL_ERROR = "protocol error"
# ALPN a client sends: an Istio mTLS client names its protocol with istio-*; plain TLS the usual ones.
ALPN = {
    ("mtls", "http"): "istio-http/1.1",
    ("mtls", "http2"): "istio-h2",
    ("mtls", "tcp"): "istio",
    ("tls", "http"): "http/1.1",
    ("tls", "http2"): "h2",
}


def _bucket(chains: list[dict[str, Any]], key: str, value: str | None) -> list[dict[str, Any]]:
    """Envoy's FilterChainMatch step: the chains naming `value`, else those naming nothing."""
    named = [c for c in chains if value is not None and value in _values(c, key)]
    return named or [c for c in chains if not _values(c, key)]


def _values(chain: dict[str, Any], key: str) -> list[str]:
    value = chain.get("filter_chain_match", {}).get(key, [])
    return [value] if isinstance(value, str) else value


def follow(snap: Snapshot, proxy: Proxy, port: int, protocol: str, tls: str, alpn: str | None = None) -> str:
    """Where a connection to the pod's `port` goes: `<vhost> <cluster>` through the HTTP connection
    manager, `<cluster>` through tcp_proxy, or the error that ends it. A TLS client sends `alpn` when
    given (istiod's Call.Alpn), else the usual ALPN of its kind."""
    lst = generate(snap, proxy, naming.LISTENER_TYPE)[f"{proxy.ip}_{port}"]
    inspectors = {f["name"] for f in lst.get("listener_filters", [])}
    if tls != "none" and TLS_INSPECTOR in inspectors:
        transport, alpn = "tls", alpn if alpn is not None else ALPN.get((tls, protocol))
    else:
        transport = "raw_buffer"
        sniffed = tls == "none" and protocol != "tcp" and HTTP_INSPECTOR in inspectors
        alpn = ("h2c" if protocol == "http2" else "http/1.1") if sniffed else None
    chains = _bucket(
        _bucket(lst["filter_chains"], "transport_protocol", transport), "application_protocols", alpn
    )
    if not chains:
        return NO_FILTER_CHAIN
    chain = chains[0]
    terminated = "transport_socket" in chain
    if terminated:
        context = chain["transport_socket"]["typed_config"]
        if tls == "tls" and context.get("require_client_certificate"):
            return MTLS_ERROR
    terminal = chain["filters"][-1]
    if terminal["name"] != HCM:
        return terminal["typed_config"]["cluster"]
    if protocol == "tcp" or (tls != "none" and not terminated):
        return PROTOCOL_ERROR  # the HTTP connection manager gets bytes that are no HTTP
    name = terminal["typed_config"]["rds"]["route_config_name"]
    table = generate(snap, proxy, naming.ROUTE_TYPE, {name})[name]
    found = matching.select_virtual_host(table, "foo.default.svc.cluster.local")
    assert found is not None
    route = matching.select_route(found.vhost, matching.request_from_url("http://foo/")).route
    assert route is not None
    return f"{found.vhost['name']} {route['route']['cluster']}"


def inbound(policy: str, port: int, protocol: str, tls: str) -> str:
    snap = snapshot(INBOUND_SERVICE, mode(policy, "istio-system"), pods=[INBOUND_POD], services=False)
    return follow(snap, sidecar("foo-0", "default", {"app": "foo"}, IP), port, protocol, tls)


TCP70, TCP81 = "inbound|70||", "inbound|81||"
HTTP80, HTTP81 = "inbound|http|80 inbound|80||", "inbound|http|81 inbound|81||"
# (case, port, protocol, TLS, DISABLE, PERMISSIVE, STRICT), istiod's expectations.
INBOUND_CASES = [
    ("tcp", 70, "tcp", "none", TCP70, TCP70, NO_FILTER_CHAIN),
    ("http to tcp", 70, "http", "none", TCP70, TCP70, NO_FILTER_CHAIN),
    ("tls to tcp", 70, "tcp", "tls", TCP70, TCP70, MTLS_ERROR),
    ("https to tcp", 70, "http", "tls", TCP70, TCP70, MTLS_ERROR),
    ("mtls tcp to tcp", 70, "tcp", "mtls", TCP70, TCP70, TCP70),
    ("mtls http to tcp", 70, "http", "mtls", TCP70, TCP70, TCP70),
    ("http", 80, "http", "none", HTTP80, HTTP80, NO_FILTER_CHAIN),
    ("tls to http", 80, "tcp", "tls", PROTOCOL_ERROR, NO_FILTER_CHAIN, MTLS_ERROR),
    ("https to http", 80, "http", "tls", PROTOCOL_ERROR, NO_FILTER_CHAIN, MTLS_ERROR),
    ("mtls to http", 80, "http", "mtls", PROTOCOL_ERROR, HTTP80, HTTP80),
    ("tcp to http", 80, "tcp", "none", PROTOCOL_ERROR, PROTOCOL_ERROR, NO_FILTER_CHAIN),
    ("auto port http", 81, "http", "none", HTTP81, HTTP81, NO_FILTER_CHAIN),
    ("auto port http2", 81, "http2", "none", HTTP81, HTTP81, NO_FILTER_CHAIN),
    ("auto port tcp", 81, "tcp", "none", TCP81, TCP81, NO_FILTER_CHAIN),
    ("tls to auto port", 81, "tcp", "tls", TCP81, TCP81, MTLS_ERROR),
    ("https to auto port", 81, "http", "tls", TCP81, TCP81, MTLS_ERROR),
    ("mtls tcp to auto port", 81, "tcp", "mtls", TCP81, TCP81, TCP81),
    ("mtls http to auto port", 81, "http", "mtls", TCP81, HTTP81, HTTP81),
]


@pytest.mark.parametrize(("policy", "column"), [("DISABLE", 4), ("PERMISSIVE", 5), ("STRICT", 6)])
@pytest.mark.parametrize("case", INBOUND_CASES, ids=[c[0] for c in INBOUND_CASES])
def test_inbound(policy: str, column: int, case: tuple[Any, ...]) -> None:
    _, port, protocol, tls, *_ = case
    assert inbound(policy, port, protocol, tls) == case[column]


def test_inbound_passthrough_has_no_listener() -> None:
    """istiod's "passthrough *" cases (a port no service declares) reach InboundPassthroughCluster; the
    pod's sidecar here listens only on the ports its workload declares (by design)."""
    snap = snapshot(INBOUND_SERVICE, pods=[INBOUND_POD], services=False)
    proxy = sidecar("foo-0", "default", {"app": "foo"}, IP)
    names = generate(snap, proxy, naming.LISTENER_TYPE)
    assert {n for n in names if n.startswith(IP)} == {f"{IP}_70", f"{IP}_80", f"{IP}_81"}
    assert "InboundPassthroughCluster" not in clusters(snap, proxy)


# --- TestInboundClusters (the service-instance cases) --------------------------------------------
# backend and backend-alt, both with ports 80 and 81 (HTTP), select one pod. Each target port is one
# `inbound|<target>||` cluster whose telemetry metadata lists the services sending to it, oldest first and
# then by hostname (istiod's SetServiceTargets order), and an HTTP call to the port reaches it. Isthmus
# departs by design: a Workload declares its ports, so they are served (and their clusters built) with
# no service at all, and every cluster sends to 127.0.0.1 at the app's private port
# (inboundTrafficPolicy LOCALHOST and passthrough alike).

BACKEND = "backend.default.svc.cluster.local"
BACKEND_ALT = "backend-alt.default.svc.cluster.local"
BACKEND_POD = Pod("backend-0", "default", "127.7.0.30", {"app": "backend"}, workload="backend",
                  app_ports={8080: 42080, 8081: 42081, 8082: 42082, 8083: 42083})  # fmt: skip


def backend(name: str, target80: int, target81: int) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default, creationTimestamp: "2020-01-01T00:00:00Z"}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http-default, port: 80, targetPort: {target80}}}, {{name: http-other, port: 81, targetPort: {target81}}}]
"""


@pytest.mark.parametrize(
    ("docs", "telemetry"),
    [
        pytest.param(
            (backend("backend", 8080, 8081),),
            {8080: [BACKEND], 8081: [BACKEND]},
            id="single service, multiple instance",
        ),
        pytest.param(
            (backend("backend", 8080, 8081), backend("backend-alt", 8082, 8083)),
            {8080: [BACKEND], 8081: [BACKEND], 8082: [BACKEND_ALT], 8083: [BACKEND_ALT]},
            id="multiple services with same service port, different target",
        ),
        pytest.param(
            (backend("backend", 8080, 8081), backend("backend-alt", 8080, 8081)),
            {8080: [BACKEND_ALT, BACKEND], 8081: [BACKEND_ALT, BACKEND]},
            id="multiple services with same service port and target",
        ),
    ],
)
def test_inbound_clusters(docs: tuple[str, ...], telemetry: dict[int, list[str]]) -> None:
    snap = snapshot(*docs, pods=[BACKEND_POD], services=False)
    proxy = sidecar("backend-0", "default", {"app": "backend"}, BACKEND_POD.ip)
    cds = clusters(snap, proxy)
    for port, app_port in BACKEND_POD.app_ports.items():
        name = f"inbound|{port}||"
        services = (
            cds[name].get("metadata", {}).get("filter_metadata", {}).get("istio", {}).get("services", [])
        )
        assert [s["host"] for s in services] == telemetry.get(port, []), port
        endpoint = cds[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": app_port}
        if port in telemetry:
            assert follow(snap, proxy, port, "http", "none") == f"inbound|http|{port} {name}"
