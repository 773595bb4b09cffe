"""Sidecar outbound virtual hosts: parity with istiod's own tests, case by case, as Istio YAML.

Sources (istio/istio): pilot/pkg/networking/core/httproute_test.go (TestGenerateVirtualHostDomains,
TestSidecarOutboundHTTPRouteConfigWithDuplicateHosts, TestSidecarOutboundHTTPRouteConfig,
TestSelectVirtualService) and sidecar_simulation_test.go (TestSidecarRoutes), against httproute.go
(generateVirtualHostDomains, GenerateAltVirtualHosts with the absolute FQDN, dedupeDomains,
BuildSidecarOutboundVirtualHosts, mergeAllVirtualHosts).

Where Isthmus departs by design (DESIGN.md §3) the test says so and checks the documented behaviour:
- sidecars are explicit HTTP proxies with one route table, `http_proxy`, built as istiod builds a
  Sidecar egress listener with protocol HTTP_PROXY (listener port 0): every service port's virtual
  hosts merged, each name with and without `:port`, and off port 80 only the `host:port` forms. Istio's
  per-port cases ("80", "8080", ...) are checked by what a request with that Host header (and port)
  reaches; its unix-socket and HTTP_PROXY cases map onto the table directly;
- a VirtualService whose hosts are no service keeps istiod's port-80 vhost (what its per-port "80"
  table holds), so `Host: <that host>` is routed by an explicit proxy too;
- a proxy's DNS domain is always `<namespace>.svc.<domain suffix>`, and pods have IPv4 loopback
  addresses: Istio's cases for other proxy domains or IPv6 proxies are not expressible;
- Kubernetes names are lowercase and a Kubernetes Service is `<name>.<ns>.svc.cluster.local`: Istio's
  Kubernetes-registry services with other hostnames are ServiceEntries or renamed Services here.
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import route_table, sidecar, snapshot

from isthmus.debug import matching
from isthmus.registry.types import Protocol, Service, ServicePort, ServiceRef
from isthmus.xds.gen import naming
from isthmus.xds.gen.routes import service_domains

DOMAIN = "cluster.local"
PASS = naming.PASSTHROUGH_CLUSTER


def kube_svc(name: str, ns: str, ports: str = "[{name: http, port: 80}]", extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: {ports}
  {extra}
"""


def service_entry(
    name: str, hosts: str, ports: str, ns: str = "default", extra: str = "resolution: DNS"
) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: {hosts}
  location: MESH_INTERNAL
  ports: {ports}
  {extra}
"""


def vs(name: str, hosts: str, dest: str, ns: str = "default", extra: str = "", rules: str = "") -> str:
    body = (
        rules
        or f"""
  - route:
    - destination: {{host: {dest}}}"""
    )
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}{extra}}}
spec:
  hosts: {hosts}
  http:{body}
"""


def table_for(*docs: str, ns: str = "default") -> dict[str, Any]:
    return route_table(snapshot(*docs, pods=[], services=False), sidecar(namespace=ns))


def vhosts(table: dict[str, Any]) -> dict[str, list[str]]:
    return {vh["name"]: vh["domains"] for vh in table["virtual_hosts"]}


def reach(table: dict[str, Any], authority: str) -> tuple[str, str]:
    """(vhost name, cluster) an explicit-proxy GET / with this Host header reaches (`route test`'s
    matching: a headless service's vhost starts with routes for its pods' names)."""
    found = matching.select_virtual_host(table, authority)
    assert found is not None, authority
    route = matching.select_route(found.vhost, matching.request_from_url(f"http://{authority}/")).route
    assert route is not None, authority
    if "direct_response" in route:
        return found.vhost["name"], f"direct_response:{route['direct_response']['status']}"
    return found.vhost["name"], route["route"]["cluster"]


def svc(hostname: str, kind: str = "ServiceEntry", **kw: Any) -> Service:
    ports = (ServicePort("http", 8123, Protocol.HTTP),)
    return Service(hostname, "default", hostname.split(".")[0], ports, ServiceRef(kind, "default", "x"), **kw)


def portless(domains: list[str], port: int) -> list[str]:
    """The domains istiod emits with IgnorePortInHostMatching (listener port set): without `:port`."""
    return [d for d in domains if not d.endswith(f":{port}")]


# --- TestGenerateVirtualHostDomains ------------------------------------------------------------
# Isthmus's table always holds each name with and without `:port` (listener port 0); the portless
# half is Istio's list, in Istio's order.

GENERATE_CASES = [
    # "different domains with no shared dns": no short forms for a host outside the proxy's domain.
    ("foo.local.campus.net", "default", {}, ["foo.local.campus.net", "foo.local.campus.net."]),
    (
        "echo.default.svc.cluster.local",  # "k8s service with default domain"
        "default",
        {"kind": "Service"},
        ["echo.default.svc.cluster.local", "echo.default.svc.cluster.local.", "echo", "echo.default.svc",
         "echo.default"],
    ),
    # "non-k8s service": a .svc. name under another suffix is not expanded.
    ("foo.default.svc.bar.baz", "default", {}, ["foo.default.svc.bar.baz", "foo.default.svc.bar.baz."]),
    (
        "echo.default.svc.cluster.local",  # "k8s service with default domain and different namespace"
        "mesh",
        {"kind": "Service"},
        ["echo.default.svc.cluster.local", "echo.default.svc.cluster.local.", "echo.default",
         "echo.default.svc"],
    ),
    ("google.local", "foo", {}, ["google.local", "google.local."]),  # "k8s service with custom domain 2"
    ("1.2.3.4", "default", {}, ["1.2.3.4"]),  # "ipv4 domain": no absolute form for an IP
    (
        "2406:3003:2064:35b8:864:a648:4b96:e37d",  # "ipv6 domain": bracketed
        "default",
        {},
        ["[2406:3003:2064:35b8:864:a648:4b96:e37d]"],
    ),
    ("aaa.example.local", "tests", {}, ["aaa.example.local", "aaa.example.local."]),  # back subset
    ("aaa.example.my", "tests", {}, ["aaa.example.my", "aaa.example.my."]),  # front subset
    ("aaa.example.my.long", "tests", {}, ["aaa.example.my.long", "aaa.example.my.long."]),  # large subset
    ("aaa.example.com", "tests", {}, ["aaa.example.com", "aaa.example.com."]),  # no overlap
    (
        "headless.default.svc.cluster.local",  # "wildcard": a headless Kubernetes service
        "default",
        {"kind": "Service", "headless": True},
        ["headless.default.svc.cluster.local", "headless.default.svc.cluster.local.", "headless",
         "headless.default.svc", "headless.default", "*.headless.default.svc.cluster.local",
         "*.headless.default.svc.cluster.local.", "*.headless", "*.headless.default.svc",
         "*.headless.default"],
    ),
    (
        "echo.default.svc.cluster.local",  # "service entry with multiple VIPs, IPv4 only"
        "default",
        {"addresses": ("1.2.3.4", "1.2.3.5", "2406:3003:2064:35b8:864:a648:4b96:e37d")},
        ["echo.default.svc.cluster.local", "echo.default.svc.cluster.local.", "echo", "echo.default.svc",
         "echo.default", "1.2.3.4", "1.2.3.5"],
    ),
    (
        "echo.default.svc.cluster.local",  # an IPv4 proxy and only IPv6 VIPs: the default (first) address
        "default",
        {"addresses": ("2001:2::f0f0:239", "2001:2::f0f0:240")},
        ["echo.default.svc.cluster.local", "echo.default.svc.cluster.local.", "echo", "echo.default.svc",
         "echo.default", "[2001:2::f0f0:239]"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("hostname", "proxy_ns", "attrs", "want"), GENERATE_CASES)
def test_generate_virtual_host_domains(hostname: str, proxy_ns: str, attrs: dict, want: list[str]) -> None:
    service = svc(hostname, **attrs)
    domains, _ = service_domains(service, 8123, proxy_ns, DOMAIN)
    assert portless(domains, 8123) == want


def test_generate_virtual_host_domains_with_port_forms() -> None:
    """Listener port 0 (HTTP_PROXY, unix sockets): every name is followed by its `:port` form, the
    absolute FQDN too; IPv6 addresses are bracketed before the port; the wildcard copies come before
    the addresses; the expanded names are what dedupeDomains may drop for a known FQDN."""
    service = svc("headless.default.svc.cluster.local", kind="Service", headless=True, addresses=("::1",))
    domains, alts = service_domains(service, 7777, "other", DOMAIN)
    assert domains == [
        "headless.default.svc.cluster.local", "headless.default.svc.cluster.local:7777",
        "headless.default.svc.cluster.local.", "headless.default.svc.cluster.local.:7777",
        "headless.default", "headless.default:7777", "headless.default.svc", "headless.default.svc:7777",
        "*.headless.default.svc.cluster.local", "*.headless.default.svc.cluster.local:7777",
        "*.headless.default.svc.cluster.local.", "*.headless.default.svc.cluster.local.:7777",
        "*.headless.default", "*.headless.default:7777", "*.headless.default.svc",
        "*.headless.default.svc:7777", "[::1]", "[::1]:7777",
    ]  # fmt: skip
    assert alts == domains[2:8]


def test_generate_virtual_host_domains_dual_stack_service() -> None:
    """ "dual stack k8s service with default domain": a Service's clusterIPs are its addresses; the
    IPv4-only proxy gets the IPv4 one (Istio drops the other family for a single-stack proxy)."""
    table = table_for(
        kube_svc(
            "echo",
            "default",
            "[{name: http, port: 8123}]",
            "clusterIP: 1.2.3.4\n  clusterIPs: [1.2.3.4, '2406:3003:2064:35b8:864:a648:4b96:e37d']",
        )
    )
    assert vhosts(table)["echo.default.svc.cluster.local:8123"] == [
        "echo.default.svc.cluster.local:8123", "echo.default.svc.cluster.local.:8123", "echo:8123",
        "echo.default.svc:8123", "echo.default:8123", "1.2.3.4:8123",
    ]  # fmt: skip
    assert reach(table, "1.2.3.4:8123") == (
        "echo.default.svc.cluster.local:8123",
        "outbound|8123||echo.default.svc.cluster.local",
    )


def test_generate_virtual_host_domains_alias() -> None:
    """ "alias": an ExternalName alias's names (and short forms) follow the service's own."""
    table = table_for(
        kube_svc("foo", "default"),
        kube_svc("alias", "default", "[{name: http, port: 80}]", "type: ExternalName\n  externalName: foo.default.svc.cluster.local"),
    )  # fmt: skip
    assert vhosts(table)["foo.default.svc.cluster.local:80"] == [
        "foo.default.svc.cluster.local", "foo.default.svc.cluster.local:80",
        "foo.default.svc.cluster.local.", "foo.default.svc.cluster.local.:80", "foo", "foo:80",
        "foo.default.svc", "foo.default.svc:80", "foo.default", "foo.default:80",
        "alias.default.svc.cluster.local", "alias.default.svc.cluster.local:80",
        "alias.default.svc.cluster.local.", "alias.default.svc.cluster.local.:80", "alias", "alias:80",
        "alias.default.svc", "alias.default.svc:80", "alias.default", "alias.default:80",
    ]  # fmt: skip


def test_alias_short_forms_follow_the_alias_namespace() -> None:
    """The alias's short forms depend on its own namespace, not the service's: a proxy in the alias's
    namespace gets `alias`, one in the service's namespace does not (the shared vhost parts are cached
    per snapshot by both namespaces)."""
    docs = (
        kube_svc("foo", "default"),
        kube_svc("alias", "other", "[{name: http, port: 80}]", "type: ExternalName\n  externalName: foo.default.svc.cluster.local"),
    )  # fmt: skip
    snap = snapshot(*docs, pods=[], services=False)
    in_default = vhosts(route_table(snap, sidecar(namespace="default")))["foo.default.svc.cluster.local:80"]
    in_other = vhosts(route_table(snap, sidecar(name="x-0", namespace="other", ip="127.7.0.9")))[
        "foo.default.svc.cluster.local:80"
    ]
    assert "alias" not in in_default and "foo" in in_default
    assert "alias" in in_other and "foo" not in in_other


# --- TestSidecarOutboundHTTPRouteConfigWithDuplicateHosts ----------------------------------------


def _http80(name: str, host: str) -> str:
    return service_entry(name, f"[{host}]", "[{name: http, number: 80, protocol: HTTP}]")


@pytest.mark.parametrize(
    "order", [("test.local", "test"), ("test", "test.local")], ids=["more exact first", "more exact second"]
)
def test_duplicate_hosts_more_exact(order: tuple[str, str]) -> None:
    table = table_for(*(_http80(f"se-{i}", host) for i, host in enumerate(order)))
    got = vhosts(table)
    assert got["test.local:80"] == ["test.local", "test.local:80", "test.local.", "test.local.:80"]
    assert got["test:80"] == ["test", "test:80", "test.", "test.:80"]
    assert reach(table, "test") == ("test:80", "outbound|80||test")
    assert reach(table, "test.local") == ("test.local:80", "outbound|80||test.local")
    assert reach(table, "other.example") == ("allow_any", naming.PASSTHROUGH_CLUSTER)


def test_duplicate_hosts_more_exact_first_with_full_cluster_domain() -> None:
    """The Kubernetes service's short form `test` is another service's name: dropped (dedupeDomains'
    known FQDNs), so Host: test reaches that service."""
    table = table_for(kube_svc("test", "default"), _http80("se", "test"))
    got = vhosts(table)
    assert got["test.default.svc.cluster.local:80"] == [
        "test.default.svc.cluster.local", "test.default.svc.cluster.local:80",
        "test.default.svc.cluster.local.", "test.default.svc.cluster.local.:80",
        "test.default.svc", "test.default.svc:80", "test.default", "test.default:80",
    ]  # fmt: skip
    assert got["test:80"] == ["test", "test:80", "test.", "test.:80"]
    assert reach(table, "test") == ("test:80", "outbound|80||test")


DUP = "test-duplicate-domains.default.svc.cluster.local"
DUP_VS = vs("acme", f"[{DUP}, test-duplicate-domains.default]", "test-duplicate-domains.default")


@pytest.mark.parametrize(
    "extra",
    [(), (vs("acme-duplicate", "[Test-duplicate-domains.default.svc.cluster.local]", "test-duplicate-domains.default"),)],
    ids=["virtual service", "virtual service duplicate case sensitive domains"],
)  # fmt: skip
def test_duplicate_hosts_virtual_service(extra: tuple[str, ...]) -> None:
    """The VirtualService's own host `test-duplicate-domains.default` takes that name from the service's
    short forms; a second VirtualService naming the service in other letter case is a duplicate."""
    table = table_for(kube_svc("test-duplicate-domains", "default"), DUP_VS, *extra)
    got = vhosts(table)
    assert set(got) == {f"{DUP}:80", "test-duplicate-domains.default:80", "allow_any"}
    assert got[f"{DUP}:80"] == [
        DUP, f"{DUP}:80", f"{DUP}.", f"{DUP}.:80", "test-duplicate-domains", "test-duplicate-domains:80",
        "test-duplicate-domains.default.svc", "test-duplicate-domains.default.svc:80",
    ]  # fmt: skip
    assert got["test-duplicate-domains.default:80"] == [
        "test-duplicate-domains.default",
        "test-duplicate-domains.default:80",
    ]
    # The VirtualService's destination takes precedence on both.
    for host in (DUP, "test-duplicate-domains.default"):
        assert reach(table, host)[1] == "outbound|80||test-duplicate-domains.default"


def test_duplicate_hosts_virtual_service_conflict() -> None:
    table = table_for(kube_svc("test", "default"), vs("acme", "[test.default]", "test.default"))
    got = vhosts(table)
    assert got["test.default.svc.cluster.local:80"] == [
        "test.default.svc.cluster.local", "test.default.svc.cluster.local:80",
        "test.default.svc.cluster.local.", "test.default.svc.cluster.local.:80", "test", "test:80",
        "test.default.svc", "test.default.svc:80",
    ]  # fmt: skip
    assert got["test.default:80"] == ["test.default", "test.default:80"]
    # From the service, go to the service; from the VirtualService's host, to its destination.
    assert reach(table, "test.default.svc.cluster.local")[1] == "outbound|80||test.default.svc.cluster.local"
    assert reach(table, "test.default")[1] == "outbound|80||test.default"


def test_duplicate_hosts_multiple_ports() -> None:
    """ "multiple ports": each port has its vhost; off port 80 only the `host:port` forms."""
    ports = "[{name: h70, number: 70, protocol: HTTP}, {name: h80, number: 80, protocol: HTTP}, {name: h90, number: 90, protocol: HTTP}]"
    got = vhosts(table_for(service_entry("se", "[test.local]", ports)))
    assert got["test.local:80"] == ["test.local", "test.local:80", "test.local.", "test.local.:80"]
    assert got["test.local:70"] == ["test.local:70", "test.local.:70"]
    assert got["test.local:90"] == ["test.local:90", "test.local.:90"]


# --- TestSidecarOutboundHTTPRouteConfig -----------------------------------------------------------
# Istio's services, proxy in not-default. bookinfo.com and test-headless.com are headless services of
# the Kubernetes registry there; here they are headless Services `bookinfo` (default) and `test-headless`
# (not-default); the others are ServiceEntries (private ones exported to their namespace only).

HEADLESS = "clusterIP: None"
OUTBOUND_SERVICES = (
    kube_svc("bookinfo", "default", "[{name: http-9999, port: 9999}, {name: http-70, port: 70}]", HEADLESS),
    service_entry("private", "[private.com]", "[{name: h1, number: 9999, protocol: HTTP}, {name: h2, number: 80, protocol: HTTP}]", extra="resolution: NONE\n  exportTo: ['.']"),
    service_entry("test", "[test.com]", "[{name: h, number: 8080, protocol: HTTP}]", "not-default", "resolution: DNS\n  addresses: [8.8.8.8]"),
    service_entry("test-private", "[test-private.com]", "[{name: h1, number: 80, protocol: HTTP}, {name: h2, number: 70, protocol: HTTP}]", "not-default", "resolution: DNS\n  addresses: [9.9.9.9]\n  exportTo: ['.']"),
    service_entry("test-private-2", "[test-private-2.com]", "[{name: h, number: 60, protocol: HTTP}]", "not-default", "resolution: DNS\n  addresses: [9.9.9.10]\n  exportTo: ['.']"),
    kube_svc("test-headless", "not-default", "[{name: http, port: 8888}]", HEADLESS),
    service_entry("service-a", "[service-a.default.svc.cluster.local]", "[{name: h, number: 7777, protocol: HTTP}]"),
)  # fmt: skip
REGISTRY_ONLY = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: foo, namespace: not-default}
spec:
  egress: [{hosts: ['*/*']}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
BOOKINFO = "bookinfo.default.svc.cluster.local"
HEADLESS_HOST = "test-headless.not-default.svc.cluster.local"


def _wild(*domains: str) -> list[str]:
    return [*domains, *("*." + d for d in domains)]


def test_http_proxy_sidecar_with_non_matching_virtual_service() -> None:
    """ "http proxy sidecar config, with non matching virtual service" (and the unix-socket listener
    cases, which build the same merged table for their imported hosts): every port's vhosts, `host:port`
    forms off port 80, headless services with `*.` copies, addresses; private services of another
    namespace are not visible; a VirtualService naming no service gets no vhost off port 80."""
    vs5 = vs(
        "acme-v3", "[test-svc.testns.svc.cluster.local]", "test-svc.testn.svc.cluster.local", "not-default"
    )
    table = table_for(*OUTBOUND_SERVICES, REGISTRY_ONLY, vs5, ns="not-default")
    got = vhosts(table)
    assert got == {
        f"{BOOKINFO}:9999": _wild(f"{BOOKINFO}:9999", f"{BOOKINFO}.:9999", "bookinfo.default:9999", "bookinfo.default.svc:9999"),
        f"{BOOKINFO}:70": _wild(f"{BOOKINFO}:70", f"{BOOKINFO}.:70", "bookinfo.default:70", "bookinfo.default.svc:70"),
        f"{HEADLESS_HOST}:8888": _wild(f"{HEADLESS_HOST}:8888", f"{HEADLESS_HOST}.:8888", "test-headless:8888", "test-headless.not-default.svc:8888", "test-headless.not-default:8888"),
        "test-private-2.com:60": ["test-private-2.com:60", "test-private-2.com.:60", "9.9.9.10:60"],
        "test-private.com:70": ["test-private.com:70", "test-private.com.:70", "9.9.9.9:70"],
        "test-private.com:80": ["test-private.com", "test-private.com:80", "test-private.com.", "test-private.com.:80", "9.9.9.9", "9.9.9.9:80"],
        "test.com:8080": ["test.com:8080", "test.com.:8080", "8.8.8.8:8080"],
        "service-a.default.svc.cluster.local:7777": ["service-a.default.svc.cluster.local:7777", "service-a.default.svc.cluster.local.:7777", "service-a.default:7777", "service-a.default.svc:7777"],
        # Isthmus keeps istiod's port-80 vhost for a VirtualService naming no service (see above).
        "test-svc.testns.svc.cluster.local:80": ["test-svc.testns.svc.cluster.local", "test-svc.testns.svc.cluster.local:80"],
        "block_all": ["*"],
    }  # fmt: skip
    # util.SortVirtualHosts: by name, then the catch-all.
    names = [vh["name"] for vh in table["virtual_hosts"]]
    assert names[:-1] == sorted(names[:-1]) and names[-1] == "block_all"
    # Headless: a pod's own name (<pod>.<service>) reaches the service's vhost; the service has no pod
    # of that name, so it answers 503 there (where Istio's DNS lookup fails; tests/unit/gen and
    # tests/e2e test_headless_pods.py route to pods that exist).
    assert reach(table, "web-0.test-headless:8888") == (f"{HEADLESS_HOST}:8888", "direct_response:503")
    assert reach(table, f"web-0.{BOOKINFO}:70") == (f"{BOOKINFO}:70", "direct_response:503")
    assert reach(table, f"{BOOKINFO}:70")[1] == f"outbound|70||{BOOKINFO}"
    assert reach(table, "test-private.com")[1] == "outbound|80||test-private.com"
    assert reach(table, "test-private.com:70")[1] == "outbound|70||test-private.com"
    assert reach(table, "9.9.9.9:70")[1] == "outbound|70||test-private.com"
    assert reach(table, "test.com")[0] == "block_all"  # port 80 is not test.com's
    assert reach(table, "private.com:80")[0] == "block_all"  # not exported here


def test_virtual_service_hosts_with_subsets_and_with_existing_service() -> None:
    """ "virtual service hosts with subsets and with existing service": the VirtualService's hosts that
    are not services get a vhost on its service's port too (only `host:port` off port 80), with its
    routes; the authority matches pick the subset."""
    rules = """
  - match: [{headers: {':authority': {exact: service-a.v2}}}]
    route: [{destination: {host: service-a, subset: v2}}]
  - match: [{headers: {':authority': {exact: service-a.v3}}}]
    route: [{destination: {host: service-a, subset: v3}}]"""
    vs7 = vs("vs-1", "[service-a.default.svc.cluster.local, service-a.v2, service-a.v3]", "", rules=rules)
    svc_a = kube_svc("service-a", "default", "[{name: http, port: 7777}]")
    table = table_for(svc_a, vs7, ns="not-default")
    got = vhosts(table)
    assert got["service-a.v2:7777"] == ["service-a.v2:7777"]
    assert got["service-a.v3:7777"] == ["service-a.v3:7777"]
    assert set(got) == {
        "service-a.default.svc.cluster.local:7777",
        "service-a.v2:7777",
        "service-a.v3:7777",
        "allow_any",
    }
    vh = next(v for v in table["virtual_hosts"] if v["name"] == "service-a.v3:7777")
    clusters = [r["route"]["cluster"] for r in vh["routes"]]
    assert clusters == [
        "outbound|7777|v2|service-a.default.svc.cluster.local",
        "outbound|7777|v3|service-a.default.svc.cluster.local",
    ]


@pytest.mark.parametrize(
    ("vs_docs", "host", "expected"),
    [
        # "sidecar config with allow any and virtual service includes non existing service": the VS's
        # short host is made a name of its namespace (Istio's test has no domain suffix, so its vhost
        # is `match-no-service.not-default:80`), port 80 only, without short forms.
        ((vs("acme-v3", "[match-no-service]", "non-exist-service", "not-default"),), "match-no-service.not-default.svc.cluster.local", ("match-no-service.not-default.svc.cluster.local:80", "outbound|80||non-exist-service.not-default.svc.cluster.local")),
        ((vs("acme-v3", "[match-no-service]", "non-exist-service", "not-default"),), "match-no-service", ("allow_any", PASS)),
        # "no sidecar config with virtual services with duplicate entries": the older (here: by name)
        # VirtualService of a host wins; the other one's vhost is a duplicate.
        ((vs("acme2-v1", "[test-private-2.com]", "example.org", "not-default"), vs("acme-v2", "[test-private-2.com]", "test.org", "not-default")), "test-private-2.com:60", ("test-private-2.com:60", "outbound|60||test.org")),
        # "no sidecar config with virtual services with no service in registry": port 80.
        ((vs("acme-v3", "[test-private-3.com]", "test.org", "not-default"),), "test-private-3.com", ("test-private-3.com:80", "outbound|80||test.org")),
        # "... with virtual services - import headless service from other namespaces: 8888": the
        # VS's other host gets a vhost on the headless service's port.
        ((vs("acme-v4", f"[{HEADLESS_HOST}, example.com]", "test.org", "not-default"),), "example.com:8888", ("example.com:8888", "outbound|8888||test.org")),
    ],
)  # fmt: skip
def test_outbound_route_config_virtual_services(
    vs_docs: tuple[str, ...], host: str, expected: tuple[str, str]
) -> None:
    table = table_for(*OUTBOUND_SERVICES, *vs_docs, ns="not-default")
    assert reach(table, host) == expected


def test_outbound_route_config_headless_with_virtual_service() -> None:
    """ "no sidecar config with virtual services - import headless service from other namespaces:
    8888": the headless service's vhost keeps its `*.` domains and takes the VS's routes (a pod the
    service does not have is answered 503 in that vhost, see test_headless_pods.py)."""
    vs4 = vs("acme-v4", f"[{HEADLESS_HOST}, example.com]", "test.org", "not-default")
    table = table_for(*OUTBOUND_SERVICES, vs4, ns="not-default")
    got = vhosts(table)
    assert got["example.com:8888"] == ["example.com:8888"]
    assert f"*.{HEADLESS_HOST}:8888" in got[f"{HEADLESS_HOST}:8888"]
    assert reach(table, f"{HEADLESS_HOST}:8888")[1] == "outbound|8888||test.org"
    assert reach(table, f"pod-1.{HEADLESS_HOST}:8888") == (f"{HEADLESS_HOST}:8888", "direct_response:503")


def test_select_virtual_service() -> None:
    """TestSelectVirtualService: VirtualServices naming a service are selected (acme2-v1, acme-v2,
    acme-v4); acme-v3 (test-private-3.com) and the ones naming no service keep only Isthmus's port-80
    vhost (see above), never one on a service port."""
    docs = (
        vs("acme2-v1", "[test-private-2.com]", "example.org", "not-default"),
        vs("acme-v2", "[test-private-2.com]", "test.org", "not-default"),
        vs("acme-v3", "[test-private-3.com]", "test.org", "not-default"),
        vs("acme-v4", f"[{HEADLESS_HOST}, example.com]", "test.org", "not-default"),
        vs(
            "acme-v5",
            "[test-svc.testns.svc.cluster.local]",
            "test-svc.testn.svc.cluster.local",
            "not-default",
        ),
        vs("acme-v6", "[match-no-service]", "non-exist-service", "not-default"),
    )
    got = vhosts(table_for(*OUTBOUND_SERVICES, *docs, ns="not-default"))
    no_service = (
        "test-private-3.com",
        "test-svc.testns.svc.cluster.local",
        "match-no-service.not-default.svc.cluster.local",
    )
    assert {n for n in got if n.rsplit(":", 1)[0] in no_service} == {f"{h}:80" for h in no_service}
    assert "example.com:8888" in got  # acme-v4's other host rides on the selected VS


# --- TestSidecarRoutes (sidecar_simulation_test.go, variant "virtualservice") ---------------------
# Istio's route "80" is Host: <name>; its route "8080" is Host: <name>:8080 sent to the outbound port.
# An expectation of nil (no vhost for that name) is the catch-all here: allow_any -> PassthroughCluster.

KNOWN = (
    kube_svc("known", "default", "[{name: http, port: 80}, {name: http-alt, port: 8080}]", "clusterIP: 2.0.0.0"),
    kube_svc("alt-known", "default", "[{name: http, port: 80}, {name: http-alt, port: 8080}]", "clusterIP: 2.0.0.1"),
    kube_svc("not-default", "not-default", "[{name: http, port: 80}, {name: http-alt, port: 8080}]", "clusterIP: 2.0.0.2"),
)  # fmt: skip
OLDER, BASE, NEWER = "2019-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
K = "known.default.svc.cluster.local"
AK = "alt-known.default.svc.cluster.local"
ND = "not-default.not-default.svc.cluster.local"


def sim_vs(
    ns: str, match: str | list[str], dest: str, time: str = BASE, port: int = 0, port_match: int = 0
) -> str:
    matches = [match] if isinstance(match, str) else match
    name = f"{ns}{matches[0].replace('*', 'wild')}{dest}"
    dest_port = f", port: {{number: {port}}}" if port else ""
    match_rule = f"\n    match: [{{port: {port_match}}}]" if port_match else ""
    rules = f"""
  - route:
    - destination: {{host: {dest}{dest_port}}}{match_rule}"""
    hosts = "[" + ", ".join(f"'{m}'" for m in matches) + "]"
    return vs(name, hosts, dest, ns, extra=f", creationTimestamp: '{time}'", rules=rules)


def sim_sidecar(ns: str, *egress: str) -> str:
    hosts = ", ".join(f"'{e}'" for e in egress)
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {ns}, namespace: {ns}}}
spec:
  egress: [{{hosts: [{hosts}]}}]
"""


SIDECAR_ROUTES = [
    ("simple port 80", [sim_vs("default", K, AK)], "default", {K: f"outbound|80||{AK}"}),
    ("simple port 8080", [sim_vs("default", K, AK)], "default", {f"{K}:8080": f"outbound|8080||{AK}"}),
    ("unknown port 80", [sim_vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local")], "default", {"foo.default.svc.cluster.local": "outbound|80||foo.default.svc.cluster.local"}),
    # For unknown services, a route on port 80 only.
    ("unknown port 8080", [sim_vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local")], "default", {"foo.default.svc.cluster.local:8080": PASS}),
    ("unknown port 8080 match 8080", [sim_vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local", port_match=8080)], "default", {"foo.default.svc.cluster.local:8080": PASS}),
    ("unknown port 8080 dest 8080", [sim_vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local", port=8080)], "default", {"foo.default.svc.cluster.local:8080": PASS}),
    ("producer rule port 80", [sim_vs("default", K, AK)], "not-default", {K: f"outbound|80||{AK}"}),
    ("producer rule port 8080", [sim_vs("default", K, AK)], "not-default", {f"{K}:8080": f"outbound|8080||{AK}"}),
    ("consumer rule port 80", [sim_vs("not-default", K, AK)], "not-default", {K: f"outbound|80||{AK}"}),
    ("consumer rule port 8080", [sim_vs("not-default", K, AK)], "not-default", {f"{K}:8080": f"outbound|8080||{AK}"}),
    ("arbitrary rule port 80", [sim_vs("arbitrary", K, AK)], "not-default", {K: f"outbound|80||{AK}"}),
    ("arbitrary rule port 8080", [sim_vs("arbitrary", K, AK)], "not-default", {f"{K}:8080": f"outbound|8080||{AK}"}),
    # Oldest wins.
    ("multiple rules 80", [sim_vs("arbitrary", K, "arbitrary.example.com", OLDER), sim_vs("default", K, "default.example.com"), sim_vs("not-default", K, "not-default.example.com", NEWER)], "not-default", {K: "outbound|80||arbitrary.example.com"}),
    ("multiple rules 8080", [sim_vs("arbitrary", K, "arbitrary.example.com", OLDER), sim_vs("default", K, "default.example.com"), sim_vs("not-default", K, "not-default.example.com", NEWER)], "not-default", {f"{K}:8080": "outbound|8080||arbitrary.example.com"}),
    # Matches no service: inserted as-is; the services keep their default routes.
    ("wildcard random", [sim_vs("default", "*.unknown.example.com", "arbitrary.example.com")], "default", {AK: f"outbound|80||{AK}", K: f"outbound|80||{K}", "a.unknown.example.com": "outbound|80||arbitrary.example.com"}),
    # Matched exact services, so no vhost for the wildcard itself.
    ("wildcard match with sidecar", [sim_vs("default", "*.cluster.local", "arbitrary.example.com"), sim_sidecar("default", "*/*.cluster.local")], "default", {AK: "outbound|80||arbitrary.example.com", K: "outbound|80||arbitrary.example.com", "other.cluster.local": PASS}),
    ("wildcard first then explicit", [sim_vs("default", "*.cluster.local", "wild.example.com", OLDER), sim_vs("default", K, "explicit.example.com", NEWER)], "default", {AK: "outbound|80||wild.example.com", K: "outbound|80||explicit.example.com", "other.cluster.local": PASS}),
    ("explicit first then wildcard", [sim_vs("default", "*.cluster.local", "wild.example.com", NEWER), sim_vs("default", K, "explicit.example.com", OLDER)], "default", {AK: "outbound|80||wild.example.com", K: "outbound|80||explicit.example.com", "other.cluster.local": PASS}),
    # Even though `*.cluster.local` is not imported, the VS attaches; most exact match wins.
    ("wildcard and explicit with sidecar", [sim_vs("default", "*.cluster.local", "wild.example.com", OLDER), sim_vs("default", K, "explicit.example.com", NEWER), sim_sidecar("default", f"default/{K}", f"default/{AK}")], "default", {AK: "outbound|80||wild.example.com", K: "outbound|80||explicit.example.com", "other.cluster.local": PASS}),
    # The older wildcard VS is in a namespace the Sidecar does not import.
    ("explicit first then wildcard with sidecar cross namespace", [sim_vs("not-default", "*.cluster.local", "wild.example.com", OLDER), sim_vs("default", K, "explicit.example.com", NEWER), sim_sidecar("default", f"default/{K}", f"default/{AK}")], "default", {AK: f"outbound|80||{AK}", K: "outbound|80||explicit.example.com", "other.cluster.local": PASS}),
    ("wildcard and explicit cross namespace", [sim_vs("not-default", "*.cluster.local", "wild.example.com", OLDER), sim_vs("default", K, "explicit.example.com", NEWER)], "default", {AK: "outbound|80||wild.example.com", K: "outbound|80||explicit.example.com", "other.cluster.local": PASS}),
    # The wildcard does not match a service; even though it is less exact, it wins over nothing.
    ("wildcard and explicit unknown", [sim_vs("default", "*.tld", "wild.example.com", OLDER), sim_vs("default", "example.tld", "explicit.example.com", NEWER)], "default", {K: f"outbound|80||{K}", "foo.tld": "outbound|80||wild.example.com", "a.example.tld": "outbound|80||wild.example.com", "example.tld": "outbound|80||explicit.example.com"}),
    ("explicit match with wildcard sidecar", [sim_vs("default", "arbitrary.svc.cluster.local", "arbitrary.svc.cluster.local"), sim_sidecar("default", "*/*.cluster.local")], "default", {"arbitrary.svc.cluster.local": "outbound|80||arbitrary.svc.cluster.local"}),
    ("wildcard match with explicit sidecar", [sim_vs("default", "*.cluster.local", "arbitrary.example.com"), sim_sidecar("default", f"*/{K}")], "default", {K: "outbound|80||arbitrary.example.com", AK: PASS}),
    ("non-service wildcard match with explicit sidecar", [sim_vs("default", "*.example.org", "arbitrary.example.com"), sim_sidecar("default", "*/explicit.example.org", f"*/{AK}")], "default", {K: PASS, AK: f"outbound|80||{AK}", "a.example.org": "outbound|80||arbitrary.example.com"}),
    # The wildcard VS is imported but the services it covers are not: a wildcard vhost.
    ("sidecar filter", [sim_vs("not-default", "*.default.svc.cluster.local", "arbitrary.example.com"), sim_vs("default", "explicit.default.svc.cluster.local", "explicit.default.svc.cluster.local"), sim_sidecar("not-default", "not-default/*.default.svc.cluster.local", f"not-default/{ND}")], "not-default", {"any.default.svc.cluster.local": "outbound|80||arbitrary.example.com", "explicit.default.svc.cluster.local": "outbound|80||arbitrary.example.com", ND: f"outbound|80||{ND}"}),
    ("same namespace conflict", [sim_vs("default", K, "old.example.com", OLDER), sim_vs("default", K, "new.example.com", NEWER)], "default", {K: "outbound|80||old.example.com"}),
    ("cross namespace conflict", [sim_vs("not-default", K, "producer.example.com", OLDER), sim_vs("default", K, "consumer.example.com", NEWER)], "default", {K: "outbound|80||producer.example.com"}),
    # istio#37087: a VS naming several services attaches to the one not imported too.
    ("multi-host import single", [sim_vs("default", [K, AK], "example.com"), sim_sidecar("default", f"*/{K}")], "default", {K: "outbound|80||example.com", AK: "outbound|80||example.com"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "cfg", "proxy_ns", "expected"), SIDECAR_ROUTES, ids=[c[0] for c in SIDECAR_ROUTES]
)
def test_sidecar_routes(name: str, cfg: list[str], proxy_ns: str, expected: dict[str, str]) -> None:
    table = table_for(*KNOWN, *cfg, ns=proxy_ns)
    for host, cluster in expected.items():
        assert reach(table, host)[1] == cluster, host


def test_sidecar_routes_import_only_an_unknown_service_route() -> None:
    """ "import only a unknown service route": Istio has no port-80 listener at all (no service on
    it). The explicit proxy has its one table; the imported VirtualService keeps its port-80 vhost."""
    table = table_for(*KNOWN, sim_vs("default", "foo.default.svc.cluster.local", "example.com"), sim_sidecar("default", "*/foo.default.svc.cluster.local"))  # fmt: skip
    assert set(vhosts(table)) == {"foo.default.svc.cluster.local:80", "allow_any"}
    assert reach(table, "foo.default.svc.cluster.local") == (
        "foo.default.svc.cluster.local:80",
        "outbound|80||example.com",
    )
    assert reach(table, K)[1] == PASS  # not imported


def test_vhost_names_bracket_ipv6_hosts() -> None:
    """Virtual host names are istiod's util.DomainName(host, port) (net.JoinHostPort): an IPv6 host is
    bracketed, as its domains are."""
    assert naming.vhost_name("2406:3003:2064:35b8:864:a648:4b96:e37d", 8123) == (
        "[2406:3003:2064:35b8:864:a648:4b96:e37d]:8123"
    )
    assert naming.vhost_name("[2001:2::1]", 80) == "[2001:2::1]:80"
    assert naming.vhost_name("1.2.3.4", 80) == "1.2.3.4:80"
    assert naming.vhost_name("echo.default.svc.cluster.local", 80) == "echo.default.svc.cluster.local:80"
