"""Where a call to a gateway goes: parity with istiod's gateway simulation tests, case by case.

Source (istio/istio): `pilot/pkg/networking/core/gateway_simulation_test.go` (TestDisablePortTranslation,
TestHTTPGateway, TestGatewayConflicts, TestIngress, TestTargetPort, TestGatewayServices). istiod's
simulation sends a call (port, Host header, TLS/SNI, path) to a gateway and follows its listeners; here
the same call follows the listeners and routes Isthmus generates for a gateway proxy in istio-system
labelled `istio: ingressgateway`, with Isthmus's own route matching (`isthmus.debug.matching`).

How the cases are expressed:
- istiod's fake registry resolves a destination `host: a` of an unknown service to `a.default`; here
  the destinations are Kubernetes Services of `default` and the clusters are named by their FQDN;
- istiod's proxy has IP 1.1.1.1, so a ServiceEntry with an endpoint 1.1.1.1 is a service "of the
  gateway" whose port map (80 -> targetPort 8080) gives the listen port: here that is a Service
  selecting the gateway pod (DESIGN.md §3);
- the ServiceEntries of TestDisablePortTranslation are Services of the gateway, with the same label;
- listener names keep the declared port; ports below 1024 are shifted by the port offset only on the
  socket (DESIGN.md §3), which the calls do not see;
- where istiod builds two filter chains with one match (a bug Envoy NACKs, "duplicate tls gateway"),
  Isthmus keeps the first, so the test checks that one chain serves the call.
Gateways created together merge in istiod's order (by name, then namespace), which two
TestGatewayConflicts cases depend on.
TestIngress's Ingresses are networking.k8s.io/v1 here (v1beta1's `serviceName`/`servicePort` as
`service: {name, port: {number}}`, the path `ImplementationSpecific` as v1beta1 defaulted it).
Skipped: the Gateway API
`internal.istio.io/gateway-service` cases of TestTargetPort / TestGatewayServices (an annotation only
Gateway API's generated Gateways carry), and "overlapping SNI match" (no calls, only validation).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
from gen_helpers import PODS, generate, snapshot
from test_istio_gateway_parity import GW_POD, gateway_proxy

from isthmus.debug import matching
from isthmus.debug.envoy_config import hcm_of_chain
from isthmus.xds.gen import naming

NO_LISTENER = "no listener"
NO_FILTER_CHAIN = "no filter chain"
MULTIPLE_FILTER_CHAINS = "multiple filter chains"
NO_VIRTUAL_HOST = "no virtual host"
NO_ROUTE = "no route"  # a 404 from Envoy
TLS_REDIRECT = "tls redirect"


@dataclass(frozen=True)
class Result:
    """What istiod's simulation.Result reports: an error, or the listener, route config, virtual host
    and cluster the call went through ("" where the call stopped before)."""

    error: str = ""
    listener: str = ""
    route_config: str = ""
    vhost: str = ""
    cluster: str = ""


def create_gateway(name: str, namespace: str, *servers: str) -> str:
    """istiod's createGateway: a Gateway selecting `istio: ingressgateway` (default/default)."""
    body = "\n".join("  -\n" + textwrap.indent(textwrap.dedent(s).strip(), "    ") for s in servers)
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: "{name or "default"}", namespace: "{namespace or "default"}"}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{body}
"""


def service(name: str, namespace: str = "default", ports: str = "[{name: http, port: 80}]") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: {ports}
"""


def gateway_service(ports: str, name: str = "istio-ingressgateway") -> str:
    """A Service of the gateway pod (istiod's ServiceEntry with the proxy's address as endpoint)."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports: {ports}
"""


def fqdn(name: str, namespace: str = "default") -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def _chain_for(listener: dict[str, Any], sni: str | None) -> dict[str, Any] | str:
    """Envoy's filter chain selection by SNI (exact, then the longest wildcard, then none), with the
    transport protocol a TLS inspector reports; more than one chain at the winning rank is what
    istiod's simulation calls ErrMultipleFilterChain."""
    ranked: list[tuple[int, dict[str, Any]]] = []
    for chain in listener.get("filter_chains", []):
        match = chain.get("filter_chain_match", {})
        transport = match.get("transport_protocol")
        if transport is not None and transport != ("tls" if sni is not None else "raw_buffer"):
            continue
        names = match.get("server_names", [])
        if not names:
            ranked.append((0, chain))
            continue
        if sni is None:
            continue
        for n in names:
            if n == sni:
                ranked.append((1000, chain))
            elif n.startswith("*.") and sni.endswith(n[1:]):
                ranked.append((len(n), chain))
    if not ranked:
        return NO_FILTER_CHAIN
    best = max(r for r, _ in ranked)
    winners = [c for r, c in ranked if r == best]
    return winners[0] if len(winners) == 1 else MULTIPLE_FILTER_CHAINS


def call(
    *docs: str, port: int, host: str = "", path: str = "/", tls: bool = False, tcp: bool = False
) -> Result:
    """istiod's simulation.Call to the gateway: `tls` sends SNI `host`; `tcp` sends no HTTP."""
    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    proxy = gateway_proxy()
    name = naming.listener_name("0.0.0.0", port)
    listener = generate(snap, proxy, naming.LISTENER_TYPE).get(name)
    if listener is None:
        return Result(NO_LISTENER)
    chain = _chain_for(listener, host if tls else None)
    if isinstance(chain, str):
        return Result(chain, name)
    hcm = hcm_of_chain(chain)
    if hcm is None:
        (tcp_proxy,) = [f for f in chain["filters"] if f["name"] == "envoy.filters.network.tcp_proxy"]
        return Result(listener=name, cluster=tcp_proxy["typed_config"]["cluster"])
    if tcp:
        return Result(listener=name, route_config=hcm["rds"]["route_config_name"])
    rds = hcm["rds"]["route_config_name"]
    table = generate(snap, proxy, naming.ROUTE_TYPE, {rds})[rds]
    found = matching.select_virtual_host(table, host)
    if found is None:
        return Result(NO_VIRTUAL_HOST, name, rds)
    vh = found.vhost["name"]
    if found.vhost.get("require_tls") == "ALL" and not tls:
        return Result(TLS_REDIRECT, name, rds, vh)
    route = matching.select_route(found.vhost, matching.Request(authority=host, path=path)).route
    if route is None:
        return Result(NO_ROUTE, name, rds, vh)
    if "redirect" in route:
        return Result(TLS_REDIRECT if route["redirect"].get("https_redirect") else "redirect", name, rds, vh)
    if "direct_response" in route:
        return Result(f"direct response {route['direct_response']['status']}", name, rds, vh)
    return Result(listener=name, route_config=rds, vhost=vh, cluster=route["route"]["cluster"])


def virtual_service(name: str, spec: str, namespace: str = "default") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(spec).strip(), "  ")}
"""


def prefix_route(name: str, hosts: str, gateways: str, dest: str, port: int | None = None) -> str:
    """A VirtualService sending every path of `hosts` to `dest` (istiod's `prefix: /` routes)."""
    port_line = f", port: {{number: {port}}}" if port is not None else ""
    return virtual_service(
        name,
        f"""
        hosts: {hosts}
        gateways: {gateways}
        http:
        - match: [{{uri: {{prefix: /}}}}]
          route: [{{destination: {{host: {dest}{port_line}}}}}]
        """,
    )


# --- TestHTTPGateway ------------------------------------------------------------------------------

HTTP_SERVER = """
port: {number: 80, name: http, protocol: HTTP}
hosts: ["foo.bar"]
"""
B_SERVICES = service("b", ports="[{name: http, port: 80}, {name: https, port: 443}]")
SIMPLE_ROUTE = prefix_route("vs", '["example.com"]', "[gateway]", "b")


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        # "defined port": a listener, but no routing
        (80, Result(NO_ROUTE, "0.0.0.0_80", "http.80", "blackhole:80")),
        # "undefined port"
        (81, Result(NO_LISTENER)),
    ],
)
def test_http_gateway_no_virtual_services(port: int, expected: Result) -> None:
    """TestHTTPGateway "no virtual services"."""
    assert call(create_gateway("", "", HTTP_SERVER), port=port, host="foo.bar") == expected


PRODUCTPAGE = virtual_service(
    "bookinfo",
    """
    hosts: ["*"]
    gateways: [gateway]
    http:
    - match: [{uri: {exact: /productpage}}]
      route: [{destination: {host: productpage, port: {number: 9080}}}]
    """,
)


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("foo.bar", "/", Result(NO_ROUTE, "0.0.0.0_80", "http.80", "foo.bar:80")),  # "uri mismatch"
        ("bad.bar", "/", Result(NO_VIRTUAL_HOST, "0.0.0.0_80", "http.80")),  # "host mismatch"
        (
            "foo.bar",
            "/productpage",
            Result("", "0.0.0.0_80", "http.80", "foo.bar:80", f"outbound|9080||{fqdn('productpage')}"),
        ),  # "match"
    ],
)
def test_http_gateway_simple_http_and_virtual_service(host: str, path: str, expected: Result) -> None:
    """TestHTTPGateway "simple http and virtual service"."""
    docs = (
        create_gateway("gateway", "", HTTP_SERVER),
        service("productpage", ports="[{name: http, port: 9080}]"),
        PRODUCTPAGE,
    )
    assert call(*docs, port=80, host=host, path=path) == expected


@pytest.mark.parametrize(
    ("host", "cluster"),
    [("a.example.com", f"outbound|80||{fqdn('a')}"), ("b.example.com", f"outbound|80||{fqdn('b')}")],
)
def test_http_gateway_virtual_service_merging(host: str, cluster: str) -> None:
    """TestHTTPGateway "virtual service merging": calls "a" and "b"."""
    docs = (
        create_gateway(
            "gateway", "", 'port: {number: 80, name: http, protocol: HTTP}\nhosts: ["*.example.com"]'
        ),
        service("a"),
        B_SERVICES,
        prefix_route("a", '["a.example.com"]', "[gateway]", "a", 80),
        prefix_route("b", '["b.example.com"]', "[gateway]", "b", 80),
    )
    assert call(*docs, port=80, host=host).cluster == cluster
    # "undefined hostname"
    assert call(*docs, port=80, host="c.example.com").error == NO_VIRTUAL_HOST


REDIRECT_SERVER = """
port: {number: 80, name: http, protocol: HTTP}
hosts: ["example.com"]
tls: {httpsRedirect: true}
"""
REDIRECTED = Result(TLS_REDIRECT, "0.0.0.0_80", "http.80", "example.com:80")


@pytest.mark.parametrize(
    "docs",
    [
        pytest.param((create_gateway("gateway", "", REDIRECT_SERVER),), id="httpsRedirect without routes"),
        # The routes are elided: the virtual host always redirects.
        pytest.param(
            (create_gateway("gateway", "", REDIRECT_SERVER), B_SERVICES, SIMPLE_ROUTE),
            id="httpsRedirect with routes",
        ),
        # Envoy has no per-route https redirect: a redirecting server wins over a plain one of its host.
        pytest.param(
            (
                create_gateway("gateway", "", REDIRECT_SERVER),
                create_gateway(
                    "gateway2", "", 'port: {number: 80, name: http, protocol: HTTP}\nhosts: ["example.com"]'
                ),
                B_SERVICES,
                SIMPLE_ROUTE,
            ),
            id="mixed httpsRedirect with routes",
        ),
    ],
)
def test_http_gateway_https_redirect(docs: tuple[str, ...]) -> None:
    """TestHTTPGateway "httpsRedirect without routes" / "with routes" / "mixed httpsRedirect with routes"."""
    assert call(*docs, port=80, host="example.com") == REDIRECTED


def test_http_gateway_https_redirect_on_https() -> None:
    """TestHTTPGateway "httpsRedirect on https": the TLS call is served, not redirected; the destination
    without a port takes the server's port (443, a port of `b`)."""
    server = """
    port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["example.com"]
    tls: {httpsRedirect: true, mode: SIMPLE, credentialName: test}
    """
    docs = (create_gateway("gateway", "", server), B_SERVICES, SIMPLE_ROUTE)
    assert call(*docs, port=443, host="example.com", tls=True) == Result(
        "", "0.0.0.0_443", "https.443.https.gateway.default", "example.com:443", f"outbound|443||{fqdn('b')}"
    )


# --- TestGatewayConflicts -------------------------------------------------------------------------

TCP_SERVER = """
port: {number: 80, name: tcp, protocol: TCP}
hosts: ["foo.bar"]
"""
TLS_SERVER = """
hosts: [./*]
port: {name: https-ingress, number: 443, protocol: HTTPS}
tls: {credentialName: sds-credential, mode: SIMPLE}
"""
PRODUCTPAGE_SERVICE = service("productpage", ports="[{name: http, port: 9080}]")
GATEWAY_COLLISION = virtual_service(
    "bookinfo",
    """
    hosts: ["*"]
    gateways: [istio-system/gateway]
    tcp:
    - route: [{destination: {host: productpage, port: {number: 9080}}}]
    """,
)


def test_gateway_conflicts_duplicate_cross_namespace_gateway_collision() -> None:
    """TestGatewayConflicts "duplicate cross namespace gateway collision": a Gateway of the same name in
    a namespace sorting before istio-system takes the port first (istio#21394, kept as istiod has it), so
    its server, without a `tcp` route, leaves no listener."""
    docs = (
        create_gateway("gateway", "istio-system", TCP_SERVER),
        create_gateway("gateway", "alpha", TCP_SERVER),
        PRODUCTPAGE_SERVICE,
        GATEWAY_COLLISION,
    )
    assert call(*docs, port=80, tcp=True) == Result(NO_LISTENER)


def test_gateway_conflicts_duplicate_cross_namespace_gateway_collision_selected_first() -> None:
    """TestGatewayConflicts "duplicate cross namespace gateway collision - selected first"."""
    docs = (
        create_gateway("gateway", "istio-system", TCP_SERVER),
        create_gateway("gateway", "zeta", TCP_SERVER),
        PRODUCTPAGE_SERVICE,
        GATEWAY_COLLISION,
    )
    assert call(*docs, port=80, tcp=True) == Result(
        listener="0.0.0.0_80", cluster=f"outbound|9080||{fqdn('productpage')}"
    )


def test_gateway_conflicts_duplicate_tls_gateway() -> None:
    """TestGatewayConflicts "duplicate tls gateway": istiod builds two chains with one match, which
    Envoy NACKs (istio#24638, ErrMultipleFilterChain); Isthmus keeps the first server's chain so the
    listener stays valid."""
    docs = (create_gateway("", "istio-system", TLS_SERVER), create_gateway("", "default", TLS_SERVER))
    result = call(*docs, port=443, host="foo.bar", tls=True)
    assert result.listener == "0.0.0.0_443"
    assert result.route_config in (
        "https.443.https-ingress.default.istio-system",
        "https.443.https-ingress.default.default",
    )


def test_gateway_conflicts_duplicate_tls_virtual_service() -> None:
    """TestGatewayConflicts "duplicate tls virtual service": the same SNI route twice is served once."""
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - hosts: ['*.example.com']
    port: {name: https, number: 443, protocol: HTTPS}
    tls: {mode: PASSTHROUGH}
"""
    tls_vs = """
    gateways: [istio-system/ingressgateway]
    hosts: [mysite.example.com]
    tls:
    - match: [{port: 443, sniHosts: [mysite.example.com]}]
      route: [{destination: {host: mysite.default.svc.cluster.local, port: {number: 443}}}]
    """
    docs = (
        gw,
        service("mysite", ports="[{name: https, port: 443}]"),
        virtual_service("vs1", tls_vs),
        virtual_service("vs2", tls_vs),
    )
    assert call(*docs, port=443, host="mysite.example.com", tls=True) == Result(
        listener="0.0.0.0_443", cluster="outbound|443||mysite.default.svc.cluster.local"
    )


def test_gateway_conflicts_multiple_protocols_tcp_first() -> None:
    """TestGatewayConflicts "multiple protocols on a port - tcp first": the TCP server takes the port
    (istio#27481); without `tcp` routes there is no listener."""
    docs = (create_gateway("alpha", "", TCP_SERVER), create_gateway("beta", "", HTTP_SERVER))
    assert call(*docs, port=80, tcp=True) == Result(NO_LISTENER)


def test_gateway_conflicts_multiple_protocols_http_first() -> None:
    """TestGatewayConflicts "multiple protocols on a port - http first": HTTP takes the port, a 404."""
    docs = (create_gateway("beta", "", TCP_SERVER), create_gateway("alpha", "", HTTP_SERVER))
    assert call(*docs, port=80, host="foo.bar") == Result(NO_ROUTE, "0.0.0.0_80", "http.80", "blackhole:80")


def test_gateway_conflicts_multiple_wildcards_with_virtual_service_disambiguator() -> None:
    """TestGatewayConflicts "multiple wildcards with virtual service disambiguator"."""
    server = "hosts: [{ns}/*.example.com]\nport: {{name: http, number: 80, protocol: HTTP}}"
    route = """
    hosts: ["{ns}.example.com"]
    gateways: [default/{gw}]
    http:
    - route: [{{destination: {{host: echo}}}}]
    """
    docs = (
        create_gateway("alpha", "", server.format(ns="ns-1")),
        create_gateway("beta", "", server.format(ns="ns-2")),
        service("echo", "ns-1"),
        service("echo", "ns-2"),
        virtual_service("default", route.format(ns="ns-1", gw="alpha"), "ns-1"),
        virtual_service("default", route.format(ns="ns-2", gw="beta"), "ns-2"),
    )
    for ns in ("ns-1", "ns-2"):
        result = call(*docs, port=80, host=f"{ns}.example.com")
        assert (result.listener, result.route_config, result.cluster) == (
            "0.0.0.0_80",
            "http.80",
            f"outbound|80||{fqdn('echo', ns)}",
        ), ns


def test_gateway_conflicts_multiple_virtual_services_that_should_become_separate_vhosts() -> None:
    """TestGatewayConflicts "multiple virtual services that should become separate vhosts"."""
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public-gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [foo.example.com, bar.example.com]
"""

    def vs(name: str, created: str, hosts: str, http: str) -> str:
        return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default, creationTimestamp: "{created}"}}
spec:
  hosts: {hosts}
  gateways: [istio-system/public-gw]
  http: {http}
"""

    docs = (
        gw,
        *(service(n) for n in ("echo-foobar", "echo-foo", "echo-bar")),
        vs(
            "foobar-vs",
            "2010-01-01T00:00:00Z",
            "[foo.example.com, bar.example.com]",
            "[{name: foobar, match: [{uri: {prefix: /1}}, {uri: {prefix: /2}}, {uri: {prefix: /3}}], "
            "route: [{destination: {host: echo-foobar}}]}]",
        ),
        vs(
            "foo-vs",
            "2015-01-01T00:00:00Z",
            "[foo.example.com]",
            "[{name: foo, match: [{uri: {prefix: /foo}}], route: [{destination: {host: echo-foo, port: {number: 80}}}]}]",
        ),
        vs(
            "bar-vs",
            "2020-01-01T00:00:00Z",
            "[bar.example.com]",
            "[{name: bar, match: [{uri: {prefix: /bar}}], route: [{destination: {host: echo-bar, port: {number: 80}}}]}]",
        ),
    )
    for host, path, dest in (
        ("foo.example.com", "/1", "echo-foobar"),
        ("foo.example.com", "/foo", "echo-foo"),
        ("bar.example.com", "/bar", "echo-bar"),
    ):
        result = call(*docs, port=80, host=host, path=path)
        assert (result.listener, result.route_config, result.cluster) == (
            "0.0.0.0_80",
            "http.80",
            f"outbound|80||{fqdn(dest)}",
        ), (host, path)


# --- TestDisablePortTranslation -------------------------------------------------------------------

EXAMPLE_SERVER = 'port: {{number: {port}, name: http, protocol: HTTP}}\nhosts: ["example.com"]'


def translation_service(name: str, target: int, disabled: bool) -> str:
    label = 'labels: {experimental.istio.io/disable-gateway-port-translation: "true"}' if disabled else ""
    return f"""
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: istio-system
  {label}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: http, port: 80, targetPort: {target}}}]
"""


@pytest.mark.parametrize(
    "disabled_first",
    [
        pytest.param(True, id="multiple target port, target port first"),
        pytest.param(False, id="multiple target port, service port first"),
    ],
)
def test_disable_port_translation(disabled_first: bool) -> None:
    """TestDisablePortTranslation: of two Services of the gateway mapping 80, the one labelled
    `experimental.istio.io/disable-gateway-port-translation` is skipped, so server 80 listens on 8080
    and server 8081 on 8081 itself, whichever Service comes first."""
    services = [
        translation_service("service-instance", 8081, disabled=True),
        translation_service("service-instance-2", 8080, disabled=False),
    ]
    if not disabled_first:
        services.reverse()
    docs = (
        create_gateway("gateway80", "", EXAMPLE_SERVER.format(port=80)),
        create_gateway("gateway8081", "", EXAMPLE_SERVER.format(port=8081)),
        *services,
        service("a"),
        service("b", ports="[{name: http, port: 8081}]"),
        prefix_route("a", '["example.com"]', "[gateway80, gateway8081]", "a", 80),
        prefix_route("b", '["example.com"]', "[gateway80, gateway8081]", "b", 8081),
    )
    a = f"outbound|80||{fqdn('a')}"
    assert call(*docs, port=8080, host="example.com") == Result(
        "", "0.0.0.0_8080", "http.8080", "example.com:80", a
    )  # "target port 1"
    assert call(*docs, port=8081, host="example.com") == Result(
        "", "0.0.0.0_8081", "http.8081", "example.com:8081", a
    )  # "target port 2"


# --- TestGatewayServices --------------------------------------------------------------------------


def test_gateway_services_no_match_selector() -> None:
    """TestGatewayServices "no match selector": a selector Gateway listens on the targetPort of a Service
    of the gateway mapping its port (80 -> 8080), and on the port as is when none does (82)."""
    docs = (
        create_gateway(
            "gateway",
            "istio-system",
            'port: {number: 80, name: http-80, protocol: HTTP}\nhosts: ["80.example.com"]',
            'port: {number: 82, name: http-82, protocol: HTTP}\nhosts: ["82.example.com"]',
        ),
        gateway_service("[{name: http, port: 80, targetPort: 8080}]"),
        service("a"),
        prefix_route("a", '["*.example.com"]', "[istio-system/gateway]", "a", 80),
    )
    a = f"outbound|80||{fqdn('a')}"
    assert call(*docs, port=8080, host="80.example.com") == Result(
        "", "0.0.0.0_8080", "http.8080", "80.example.com:80", a
    )  # "port 8080"
    assert call(*docs, port=82, host="82.example.com") == Result(
        "", "0.0.0.0_82", "http.82", "82.example.com:82", a
    )  # "no service match"


# --- TestIngress ----------------------------------------------------------------------------------


def ingress(name: str, created: str) -> str:
    """TestIngress's Ingress: class `istio` by annotation, host example.com, path /<name> to Service
    <name>, and TLS for example.com with the shared Secret ingressgateway-certs."""
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  creationTimestamp: "{created}"
  annotations: {{kubernetes.io/ingress.class: istio}}
spec:
  rules:
  - host: example.com
    http:
      paths:
      - backend: {{service: {{name: {name}, port: {{number: 80}}}}}}
        path: /{name}
        pathType: ImplementationSpecific
  tls:
  - hosts: [example.com]
    secretName: ingressgateway-certs
"""


INGRESS_HTTPS_ROUTE = (
    "https.443.https-443-ingress-alpha-default-0.alpha-istio-autogenerated-k8s-ingress-default.istio-system"
)


@pytest.mark.parametrize("beta_first", [True, False], ids=["beta first", "alpha first"])
def test_ingress_shared_tls_cert_conflict(beta_first: bool) -> None:
    """TestIngress "ingress shared TLS cert conflict - beta first / alpha first": each Ingress has a
    Gateway with the same 443 server; the generated Gateways have no creation time, so alpha's (by name)
    takes the port. The host's VirtualService is named after, and bound to the Gateway of, the older
    Ingress: with beta older it is not bound to alpha's server and HTTPS finds no route
    (istio#24385, kept as istiod has it); HTTP on 80 routes both paths either way."""
    old, new = "2010-01-01T00:00:00Z", "2020-01-01T00:00:00Z"
    docs = (
        ingress("alpha", new if beta_first else old),
        ingress("beta", old if beta_first else new),
        service("alpha"),
        service("beta"),
    )
    for name in ("alpha", "beta"):
        got = call(*docs, port=80, host="example.com", path=f"/{name}")
        assert (got.error, got.listener, got.route_config, got.cluster) == (
            "",
            "0.0.0.0_80",
            "http.80",
            f"outbound|80||{fqdn(name)}",
        ), name  # "http alpha", "http beta"
        got = call(*docs, port=443, host="example.com", path=f"/{name}", tls=True)
        if beta_first:
            assert (got.error, got.listener, got.route_config, got.vhost) == (
                NO_ROUTE,
                "0.0.0.0_443",
                INGRESS_HTTPS_ROUTE,
                "blackhole:443",
            ), name  # "https alpha", "https beta"
        else:
            assert (got.error, got.listener, got.route_config, got.cluster) == (
                "",
                "0.0.0.0_443",
                INGRESS_HTTPS_ROUTE,
                f"outbound|80||{fqdn(name)}",
            ), name
