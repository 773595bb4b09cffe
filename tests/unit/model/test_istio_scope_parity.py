"""Parity with istiod's model tests for Sidecar scoping and config visibility.

Cases follow `pilot/pkg/model/sidecar_test.go` (TestCreateSidecarScope, TestIstioEgressListenerWrapper,
TestSidecarOutboundTrafficPolicy), `push_context_test.go` (exportTo of Services and VirtualServices,
MeshConfig defaults, VirtualService precedence) and `virtualservice_test.go` (delegate merging), written
as the Istio YAML a user would apply. Istio's registry-less test services become ServiceEntries (they
merge like ServiceEntries do), its Kubernetes ones Services. Proxies are in `mynamespace` unless a case
says otherwise, as in TestCreateSidecarScope.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from isthmus.model.mesh import MeshSettings
from isthmus.model.snapshot import Snapshot

# The generator tests' helpers (`snapshot`, `sidecar`, `clusters`, `route_table`) live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, route_table, sidecar, snapshot

NS = "mynamespace"


# --- building YAML ----------------------------------------------------------------------------


def kube_service(name: str, ns: str, *ports: int) -> str:
    port_list = ", ".join(f"{{name: http-{p}, port: {p}}}" for p in ports)
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{port_list}]
"""


def service_entry(
    name: str,
    ns: str,
    host: str,
    *ports: int,
    resolution: str = "NONE",
    export_to: list[str] | None = None,
    created: str | None = None,
) -> str:
    port_list = ", ".join(f"{{name: http-{p}, number: {p}, protocol: HTTP}}" for p in ports)
    meta = f"name: {name}, namespace: {ns}" + (f", creationTimestamp: '{created}'" if created else "")
    export = f"\n  exportTo: {export_to}" if export_to is not None else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{{meta}}}
spec:
  hosts: ['{host}']
  location: MESH_INTERNAL
  resolution: {resolution}
  ports: [{port_list}]{export}
"""


def sidecar_resource(ns: str, *egress: tuple[int | None, list[str]] | tuple[int, str, list[str]]) -> str:
    """A namespace-wide Sidecar; each egress listener is (port, hosts) or (port, protocol, hosts)."""
    listeners = []
    for eg in egress:
        port, protocol, hosts = eg if len(eg) == 3 else (eg[0], "HTTP", eg[1])
        port_yaml = f"port: {{number: {port}, protocol: {protocol}, name: p{port}}}, " if port else ""
        listeners.append(f"{{{port_yaml}hosts: {hosts}}}")
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress: [{", ".join(listeners)}]
"""


VIRTUALBAR = "virtualbar.foo.svc.cluster.local"


def virtualbar(http: str = "", tcp: str = "", hosts: str = "[virtualbar]") -> str:
    """virtualServices1..6 of sidecar_test.go: VirtualService foo/virtualbar."""
    return (
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: virtualbar, namespace: foo}}
spec:
  hosts: {hosts}
"""
        + (f"  http: {http}\n" if http else "")
        + (f"  tcp: {tcp}\n" if tcp else "")
    )


# Route to baz, mirror to foo (virtualServices1).
VS_BAZ_MIRROR_FOO = virtualbar(
    http="[{route: [{destination: {host: baz.svc.cluster.local}}], mirror: {host: foo.svc.cluster.local}}]"
)


# --- reading the model and the generated config --------------------------------------------------


def build(*docs: str) -> Snapshot:
    return snapshot(*docs, pods=[], services=False)


def proxy_in(ns: str = NS, labels: dict[str, str] | None = None) -> Any:
    return sidecar(name="app-0", namespace=ns, labels=labels if labels is not None else {"app": "app"})


def scope_of(
    snap: Snapshot, ns: str = NS, labels: dict[str, str] | None = None
) -> dict[str, tuple[str, list[int]]]:
    """hostname -> (namespace of the service the scope keeps, the ports it imports)."""
    scope = snap.scope(proxy_in(ns, labels))
    return {s.hostname: (s.service.namespace, sorted(p.port for p in s.ports)) for s in scope.services}


def cluster_names(snap: Snapshot, ns: str = NS) -> set[str]:
    return {n for n in clusters(snap, proxy_in(ns)) if n.startswith("outbound|")}


def vs_names(snap: Snapshot, ns: str = NS) -> list[str]:
    return [f"{vs.namespace}/{vs.name}" for vs in snap.scope(proxy_in(ns)).virtual_services]


def route_clusters(snap: Snapshot, domain: str, ns: str = NS) -> list[str]:
    """The clusters of the routes of the virtual host serving `domain` in the proxy's table."""
    for vh in route_table(snap, proxy_in(ns))["virtual_hosts"]:
        if domain in vh.get("domains", ()):
            # CONNECT tunnels (the explicit proxy's) are routed apart from the HTTP rules.
            return [r["route"]["cluster"] for r in vh["routes"] if "connect_matcher" not in r["match"]]
    raise KeyError(domain)


# --- TestCreateSidecarScope: no Sidecar --------------------------------------------------------


def test_no_sidecar_imports_every_service() -> None:
    snap = build(kube_service("bar", "foo", 8000), kube_service("baz", "ns3", 7443))
    assert scope_of(snap) == {
        "bar.foo.svc.cluster.local": ("foo", [8000]),
        "baz.ns3.svc.cluster.local": ("ns3", [7443]),
    }
    assert cluster_names(snap) == {
        "outbound|8000||bar.foo.svc.cluster.local",
        "outbound|7443||baz.ns3.svc.cluster.local",
    }


def test_no_sidecar_same_host_in_several_namespaces_not_merged() -> None:
    # no-sidecar-config-not-merge-service-in-diff-namespaces: created together, so the first by name,
    # then namespace (baz in ns3) is kept; the others are neither merged nor preferred for the proxy.
    host = "foobar.svc.cluster.local"
    snap = build(
        service_entry("foo", "ns1", host, 8031, 8032),
        service_entry("foo", "ns2", host, 8000),
        service_entry("baz", "ns3", host, 7443),
    )
    assert scope_of(snap) == {host: ("ns3", [7443])}
    assert cluster_names(snap) == {f"outbound|7443||{host}"}


def test_no_sidecar_merges_service_entries_of_one_namespace() -> None:
    # no-sidecar-config-merge-service-ports: baz.ns1 first, foo.ns1 merges its ports in, foo.ns2 not.
    host = "foobar.svc.cluster.local"
    snap = build(
        service_entry("foo", "ns1", host, 8031, 8032),
        service_entry("foo", "ns2", host, 8000),
        service_entry("baz", "ns1", host, 7443),
    )
    assert scope_of(snap) == {host: ("ns1", [7443, 8031, 8032])}
    assert cluster_names(snap) == {f"outbound|{p}||{host}" for p in (7443, 8031, 8032)}


def test_no_sidecar_kubernetes_service_takes_precedence() -> None:
    # no-sidecar-config-k8s-service-take-precedence: an older ServiceEntry cannot squat on the name.
    host = "baz.ns3.svc.cluster.local"
    snap = build(
        service_entry("aaa", "ns1", host, 8031, created="2020-01-01T00:00:00Z"),
        kube_service("baz", "ns3", 7443),
    )
    assert scope_of(snap) == {host: ("ns3", [7443])}


def test_no_sidecar_prefers_oldest_not_own_namespace() -> None:
    # DefaultSidecarScopeForNamespace keeps the first public service (oldest); only a Sidecar's
    # selectServices biases towards the proxy's namespace ("*/* will bias towards configNamespace").
    old, new = "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
    docs = (service_entry("host", "b", "host.example.com", 8000, created=old),
            service_entry("host", "a", "host.example.com", 9000, created=new))  # fmt: skip
    assert scope_of(build(*docs), ns="a") == {"host.example.com": ("b", [8000])}
    with_sidecar = build(*docs, sidecar_resource("a", (None, ["*/*"])))
    assert scope_of(with_sidecar, ns="a") == {"host.example.com": ("a", [9000])}


# --- TestCreateSidecarScope: egress listeners --------------------------------------------------


def test_sidecar_with_zero_egress_imports_everything() -> None:
    snap = build(
        kube_service("bar", "foo", 8000),
        kube_service("barprime", "foo", 9000),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: mynamespace}\n"
        "spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}",
    )
    assert set(scope_of(snap)) == {"bar.foo.svc.cluster.local", "barprime.foo.svc.cluster.local"}


def test_port_listener_trims_service_ports() -> None:
    # sidecar-with-egress-port-trims-service-non-matching-ports (configs5 / services6).
    snap = build(kube_service("bar", "foo", 8000, 7000), sidecar_resource(NS, (8000, ["foo/*"])))
    assert scope_of(snap) == {"bar.foo.svc.cluster.local": ("foo", [8000])}
    assert cluster_names(snap) == {"outbound|8000||bar.foo.svc.cluster.local"}


def test_port_listener_skips_services_without_the_port() -> None:
    # sidecar-with-egress-port-match-with-services-with-and-without-port (configs4 / services5).
    snap = build(
        kube_service("bar", "foo", 8000),
        kube_service("barprime", "foo", 9000),
        sidecar_resource(NS, (8000, ["foo/*"])),
    )
    assert scope_of(snap) == {"bar.foo.svc.cluster.local": ("foo", [8000])}


def test_port_listeners_merge_service_entry_ports() -> None:
    # sidecar-with-egress-port-trims-and-merges-service-ports (configs6 / services7).
    snap = build(
        service_entry("bar", "foo", "bar.example.com", 8000, 7000),
        service_entry("barprime", "foo", "barprime.example.com", 8000),
        service_entry("foo", "foo", "foo.example.com", 8000, 7000, 9000),
        sidecar_resource(NS, (8000, ["foo/*"]), (7000, ["foo/*"])),
    )
    assert scope_of(snap) == {
        "bar.example.com": ("foo", [7000, 8000]),
        "barprime.example.com": ("foo", [8000]),
        "foo.example.com": ("foo", [7000, 8000]),
    }
    assert "outbound|9000||foo.example.com" not in cluster_names(snap)


def test_port_listeners_do_not_merge_kubernetes_service_ports() -> None:
    # appendSidecarServices never merges into a Kubernetes Service: the first listener's trim stays.
    snap = build(
        kube_service("bar", "foo", 8000, 7000),
        sidecar_resource(NS, (8000, ["foo/*"]), (7000, ["foo/*"])),
    )
    assert scope_of(snap) == {"bar.foo.svc.cluster.local": ("foo", [8000])}


def test_port_listener_and_catch_all_listener() -> None:
    # two-egresslisteners-one-with-port-and-without-port (configs7 / services8).
    snap = build(
        service_entry("bookinginfo", "ns1", "bookinginfo.com", 9999),
        service_entry("private", "ns1", "private.com", 80),
        service_entry("other", "ns2", "other.com", 80),
        sidecar_resource(
            NS, (23145, "TCP", ["*/bookinginfo.com", "*/private.com"]), (None, ["ns1/*", "*/*.tcp.com"])
        ),
    )
    assert scope_of(snap) == {"bookinginfo.com": ("ns1", [9999]), "private.com": ("ns1", [80])}


def test_wildcard_egress_listeners_by_port() -> None:
    # wild-card-egress-listener-match (configs9 / services10).
    snap = build(
        kube_service("foo", "ns1", 7443),
        kube_service("baz", "ns3", 7443),
        kube_service("bar", "ns2", 7442),
        kube_service("barprime", "ns3", 7442),
        sidecar_resource(NS, (7443, "GRPC", ["*/*"]), (7442, ["ns2/*"])),
    )
    assert scope_of(snap) == {
        "foo.ns1.svc.cluster.local": ("ns1", [7443]),
        "baz.ns3.svc.cluster.local": ("ns3", [7443]),
        "bar.ns2.svc.cluster.local": ("ns2", [7442]),
    }


def test_wildcard_egress_listeners_and_all_hosts() -> None:
    # wild-card-egress-listener-match-and-all-hosts (configs14 / services16): the catch-all listener
    # adds what the port listeners left out.
    snap = build(
        kube_service("bar", "ns2", 7442),
        kube_service("barprime", "ns3", 7442),
        kube_service("random", "randomns", 9999),
        sidecar_resource(NS, (7443, "GRPC", ["*/*"]), (7442, ["ns2/*"]), (None, ["*/*"])),
    )
    assert scope_of(snap) == {
        "bar.ns2.svc.cluster.local": ("ns2", [7442]),
        "barprime.ns3.svc.cluster.local": ("ns3", [7442]),
        "random.randomns.svc.cluster.local": ("randomns", [9999]),
    }


def test_wildcard_egress_listeners_merge_two_ports() -> None:
    # wild-card-egress-listener-match-with-two-ports (configs9 / services11).
    snap = build(
        service_entry("bar", "ns2", "bar.svc.cluster.local", 7443, 7442),
        sidecar_resource(NS, (7443, "GRPC", ["*/*"]), (7442, ["ns2/*"])),
    )
    assert scope_of(snap) == {"bar.svc.cluster.local": ("ns2", [7442, 7443])}


def test_http_proxy_listener_matches_any_port() -> None:
    # http-proxy-protocol-matches-any-port (configs10 / services7).
    snap = build(
        kube_service("foo", "foo", 8000, 7000, 9000),
        sidecar_resource(NS, (7443, "HTTP_PROXY", ["*/*"])),
    )
    assert scope_of(snap) == {"foo.foo.svc.cluster.local": ("foo", [7000, 8000, 9000])}


def test_specific_host_does_not_import_wildcard_service() -> None:
    # sidecar-scope-with-specific-host (configs16 / services19).
    docs = (
        service_entry("en", "ns1", "en.wikipedia.org", 443),
        service_entry("wild", "ns1", "*.wikipedia.org", 443),
    )
    snap = build(*docs, sidecar_resource("ns1", (None, ["*/en.wikipedia.org"])))
    assert scope_of(snap, ns="ns1") == {"en.wikipedia.org": ("ns1", [443])}
    assert cluster_names(snap, ns="ns1") == {"outbound|443||en.wikipedia.org"}


def test_wildcard_host_imports_wildcard_and_specific_services() -> None:
    # sidecar-scope-with-wildcard-host (configs17 / services19).
    docs = (
        service_entry("en", "ns1", "en.wikipedia.org", 443),
        service_entry("wild", "ns1", "*.wikipedia.org", 443),
    )
    snap = build(*docs, sidecar_resource("ns1", (None, ["*/*.wikipedia.org"])))
    assert set(scope_of(snap, ns="ns1")) == {"en.wikipedia.org", "*.wikipedia.org"}


def test_service_is_wildcard_but_not_listeners_subset() -> None:
    # TestIstioEgressListenerWrapper "service is wildcard, but not listener's subset" / "service is wildcard".
    se = service_entry("wild", "b", "*.test.wildcard.com", 8000)
    assert scope_of(build(se, sidecar_resource("b", (None, ["b/wildcard.com"]))), ns="b") == {}
    assert set(scope_of(build(se, sidecar_resource("b", (None, ["b/*.wildcard.com"]))), ns="b")) == {
        "*.test.wildcard.com"
    }


def test_namespace_import_picks_that_namespace() -> None:
    # TestIstioEgressListenerWrapper "b/alt imports alt in a namespaces" and "a/* imports only those in a".
    alt = "alt.example.com"
    docs = (service_entry("alt", "a", alt, 8000), service_entry("alt", "b", alt, 9000))
    assert scope_of(build(*docs, sidecar_resource("a", (None, [f"b/{alt}"]))), ns="a") == {alt: ("b", [9000])}
    assert scope_of(build(*docs, sidecar_resource("a", (None, ["a/*"]))), ns="a") == {alt: ("a", [8000])}
    assert scope_of(build(*docs, sidecar_resource("a", (None, ["b/*"]))), ns="a") == {alt: ("b", [9000])}


def test_current_namespace_and_none_imports() -> None:
    docs = (kube_service("a", NS, 80), kube_service("b", "other", 80))
    assert set(scope_of(build(*docs, sidecar_resource(NS, (None, ["./*"]))))) == {f"a.{NS}.svc.cluster.local"}
    assert scope_of(build(*docs, sidecar_resource(NS, (None, ["~/*"])))) == {}


def test_root_namespace_sidecar_current_namespace_is_the_proxys() -> None:
    # convertToSidecarScope(ps, meshRootSidecarConfig, proxy.ConfigNamespace): `./` is the proxy's.
    snap = build(
        kube_service("a", NS, 80),
        kube_service("istiod", "istio-system", 15010),
        sidecar_resource("istio-system", (None, ["./*"])),
    )
    assert set(scope_of(snap)) == {f"a.{NS}.svc.cluster.local"}


# --- TestCreateSidecarScope: merging by hostname ---------------------------------------------


def test_multi_service_merge() -> None:
    snap = build(
        service_entry("s1", "default", "proxy.example.com", 7000),
        service_entry("s2", "default", "proxy.example.com", 7443),
        service_entry("s3", "default", "proxy.example.com", 7442),
        sidecar_resource("default", (None, ["*/*"])),
    )
    scope = snap.scope(proxy_in("default"))
    [svc] = scope.services
    assert (svc.service.name, [p.port for p in svc.ports]) == ("s1", [7000, 7443, 7442])
    assert cluster_names(snap, ns="default") == {
        f"outbound|{p}||proxy.example.com" for p in (7000, 7443, 7442)
    }


def test_kubernetes_service_over_service_entries_not_over_kubernetes() -> None:
    # "k8s service take precedence over external service[, but not over k8s service]".
    host = "s3.default.svc.cluster.local"
    snap = build(
        service_entry("s1", "default", host, 7000),
        service_entry("s2", "default", host, 7443),
        kube_service("s3", "default", 7442),
        sidecar_resource("default", (None, ["*/*"])),
    )
    assert scope_of(snap, ns="default") == {host: ("default", [7442])}


PORTS_803X = (8031, 8032, 8033, 8034, 8035)
FOOBAR = "foobar.svc.cluster.local"
MULTI_PORT_SIDECAR = sidecar_resource(NS, *((p, "TCP", [f"*/{FOOBAR}"]) for p in PORTS_803X))


def test_multi_port_merge_not_across_namespaces() -> None:
    snap = build(
        service_entry("foo", "ns1", FOOBAR, *PORTS_803X[:3]),
        service_entry("bar", "ns2", FOOBAR, *PORTS_803X[3:]),
        service_entry("baz", "ns3", FOOBAR, 7443),
        MULTI_PORT_SIDECAR,
    )
    assert scope_of(snap) == {FOOBAR: ("ns1", list(PORTS_803X[:3]))}


def test_multi_port_merge_in_one_namespace() -> None:
    snap = build(
        service_entry("foo", "ns1", FOOBAR, *PORTS_803X[:3]),
        service_entry("bar", "ns1", FOOBAR, *PORTS_803X[3:]),
        service_entry("baz", "ns3", FOOBAR, 7443),
        MULTI_PORT_SIDECAR,
    )
    assert scope_of(snap) == {FOOBAR: ("ns1", list(PORTS_803X))}


@pytest.mark.parametrize(
    "second",
    [
        service_entry("bar", "ns1", FOOBAR, *PORTS_803X[3:], resolution="DNS"),
        service_entry("bar", "ns1", FOOBAR, *PORTS_803X[3:], export_to=["."]),
    ],
    ids=["resolution", "exportTo"],
)
def test_service_entries_not_merged_when_different(second: str) -> None:
    snap = build(
        service_entry("foo", "ns1", FOOBAR, *PORTS_803X[:3], export_to=["*"]), second, MULTI_PORT_SIDECAR
    )
    assert scope_of(snap) == {FOOBAR: ("ns1", list(PORTS_803X[:3]))}


# --- TestCreateSidecarScope: VirtualService destinations -----------------------------------------

SERVICES_11 = (
    service_entry("foo", "ns1", "foo.svc.cluster.local", 7443),
    service_entry("baz", "ns3", "baz.svc.cluster.local", 7443),
    service_entry("bar", "ns2", "bar.svc.cluster.local", 7443, 7442),
    service_entry("barprime", "ns3", "barprime.svc.cluster.local", 7442),
)
CONFIGS_11 = sidecar_resource(NS, (7443, "HTTP_PROXY", [f"foo/{VIRTUALBAR}"]))


def test_virtual_service_destinations_are_imported() -> None:
    # virtual-service (configs11 / services11 / virtualServices1).
    snap = build(*SERVICES_11, VS_BAZ_MIRROR_FOO, CONFIGS_11)
    assert scope_of(snap) == {
        "baz.svc.cluster.local": ("ns3", [7443]),
        "foo.svc.cluster.local": ("ns1", [7443]),
    }
    assert vs_names(snap) == ["foo/virtualbar"]


def test_virtual_service_destinations_matching_listener_port() -> None:
    # virtual-service-destinations-matching-ports (configs15 / services17).
    snap = build(
        service_entry("foo", "ns1", "foo.svc.cluster.local", 7443),
        service_entry("baz", "ns3", "baz.svc.cluster.local", 7442),
        VS_BAZ_MIRROR_FOO,
        sidecar_resource(NS, (7443, "HTTP", ["*/*"])),
    )
    assert scope_of(snap) == {"foo.svc.cluster.local": ("ns1", [7443])}


VS_PORT_7000 = virtualbar(
    http="[{route: [{destination: {host: baz.svc.cluster.local, port: {number: 7000}}}], "
    "mirror: {host: foo.svc.cluster.local, port: {number: 7000}}}]"
)
CONFIGS_21 = sidecar_resource(NS, (None, [f"foo/{VIRTUALBAR}"]))


def test_virtual_service_destination_ports_trim_services() -> None:
    # virtual-service-destinations-matching-http-virtual-service-ports (configs21 / virtualServices3).
    snap = build(
        service_entry("foo", "ns1", "foo.svc.cluster.local", 8000, 7000),
        service_entry("baz", "ns3", "baz.svc.cluster.local", 8000, 7000),
        VS_PORT_7000,
        CONFIGS_21,
    )
    assert scope_of(snap) == {
        "baz.svc.cluster.local": ("ns3", [7000]),
        "foo.svc.cluster.local": ("ns1", [7000]),
    }
    assert cluster_names(snap) == {
        "outbound|7000||baz.svc.cluster.local",
        "outbound|7000||foo.svc.cluster.local",
    }


def test_tcp_virtual_service_destination_ports_trim_services() -> None:
    # virtual-service-destinations-matching-tcp-virtual-service-ports (virtualServices4).
    snap = build(
        service_entry("baz", "ns3", "baz.svc.cluster.local", 8000, 7000),
        virtualbar(tcp="[{route: [{destination: {host: baz.svc.cluster.local, port: {number: 7000}}}]}]"),
        CONFIGS_21,
    )
    assert scope_of(snap) == {"baz.svc.cluster.local": ("ns3", [7000])}


def test_virtual_service_destination_port_missing_from_service() -> None:
    snap = build(service_entry("baz", "ns3", "baz.svc.cluster.local", 7443), VS_PORT_7000, CONFIGS_21)
    assert scope_of(snap) == {}


FOO_NS1 = service_entry("foo", "ns1", "foo.svc.cluster.local", 7443)
FOO_NS2 = service_entry("foo", "ns2", "foo.svc.cluster.local", 8000)
BAZ_NS3 = service_entry("baz", "ns3", "baz.svc.cluster.local", 7443)


def test_virtual_service_does_not_override_explicit_import() -> None:
    # virtual-service-prefer-required (configs12 / services12).
    sc = sidecar_resource(NS, (7443, "HTTP_PROXY", [f"foo/{VIRTUALBAR}", "ns2/foo.svc.cluster.local"]))
    snap = build(FOO_NS1, FOO_NS2, BAZ_NS3, VS_BAZ_MIRROR_FOO, sc)
    assert scope_of(snap) == {
        "baz.svc.cluster.local": ("ns3", [7443]),
        "foo.svc.cluster.local": ("ns2", [8000]),
    }


def test_virtual_service_destination_prefers_proxy_namespace() -> None:
    # virtual-service-prefer-config-namespace (services13).
    snap = build(
        FOO_NS1,
        service_entry("foo", NS, "foo.svc.cluster.local", 8000),
        BAZ_NS3,
        VS_BAZ_MIRROR_FOO,
        CONFIGS_11,
    )
    assert scope_of(snap)["foo.svc.cluster.local"] == (NS, [8000])


def test_virtual_service_destination_picks_first_namespace_alphabetically() -> None:
    # virtual-service-pick-alphabetical (services12): ns2's is older, ns1 still wins.
    foo_ns2_older = service_entry("foo", "ns2", "foo.svc.cluster.local", 8000, created="2020-01-01T00:00:00Z")
    snap = build(FOO_NS1, foo_ns2_older, BAZ_NS3, VS_BAZ_MIRROR_FOO, CONFIGS_11)
    assert scope_of(snap)["foo.svc.cluster.local"] == ("ns1", [7443])


def test_virtual_service_destination_picks_a_visible_namespace() -> None:
    # virtual-service-pick-public (services15): ns1's is private to ns1.
    foo_private = service_entry("foo", "ns1", "foo.svc.cluster.local", 7443, export_to=["."])
    snap = build(foo_private, FOO_NS2, BAZ_NS3, VS_BAZ_MIRROR_FOO, CONFIGS_11)
    assert scope_of(snap)["foo.svc.cluster.local"] == ("ns2", [8000])


def test_virtual_service_destinations_filtered_by_source_namespace() -> None:
    # virtual-service-6-match-source-namespace (configs24 / services27 / virtualServices6).
    vs = virtualbar(
        http=f"[{{match: [{{sourceNamespace: {NS}}}], route: [{{destination: {{host: baz.ns1.svc.cluster.local}}}}]}}, "
        "{match: [{sourceNamespace: foo}], route: [{destination: {host: foo.ns1.svc.cluster.local}}]}, "
        "{route: [{destination: {host: bar.ns2.svc.cluster.local}}]}]"
    )
    snap = build(
        kube_service("baz", "ns1", 80),
        kube_service("foo", "ns1", 80),
        kube_service("bar", "ns2", 80),
        vs,
        CONFIGS_21,
    )
    assert set(scope_of(snap)) == {"bar.ns2.svc.cluster.local", "baz.ns1.svc.cluster.local"}


# --- TestSidecarOutboundTrafficPolicy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mesh_mode", "sidecar_mode", "expected"),
    [
        (None, None, "ALLOW_ANY"),
        (None, "REGISTRY_ONLY", "REGISTRY_ONLY"),
        ("REGISTRY_ONLY", None, "REGISTRY_ONLY"),
        ("REGISTRY_ONLY", "ALLOW_ANY", "ALLOW_ANY"),
    ],
)
def test_outbound_traffic_policy(mesh_mode: str | None, sidecar_mode: str | None, expected: str) -> None:
    docs = []
    if mesh_mode:
        docs.append(
            "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
            f"spec: {{outboundTrafficPolicy: {{mode: {mesh_mode}}}}}"
        )
    if sidecar_mode is not None:
        spec = f"{{outboundTrafficPolicy: {{mode: {sidecar_mode}}}}}"
        docs.append(
            f"apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: {NS}}}\nspec: {spec}"
        )
    assert build(*docs).scope(proxy_in()).outbound_policy == expected


# --- Sidecar selection (getSidecarScope) --------------------------------------------------------


def _selecting_sidecar(name: str, labels: str, created: str = "2020-01-01T00:00:00Z") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {NS}, creationTimestamp: '{created}'}}
spec:
  workloadSelector: {{labels: {labels}}}
  egress: [{{hosts: ['./{name}.example.com']}}]
"""


def test_sidecar_selection_order() -> None:
    snap = build(
        sidecar_resource(NS, (None, ["*/*"])),
        _selecting_sidecar("zeta", "{app: app}"),
        _selecting_sidecar("alpha", "{app: app}"),  # same creation time: the name decides
        _selecting_sidecar("newer", "{app: app}", created="2021-01-01T00:00:00Z"),
    )
    assert snap.sidecar_resource(proxy_in()).name == "alpha"
    assert snap.sidecar_resource(proxy_in(labels={"app": "other"})).name == "default"


# --- push_context_test: exportTo of Services and VirtualServices --------------------------------


def _annotated_service(export_to: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: ns1, annotations: {{networking.istio.io/exportTo: '{export_to}'}}}}
spec:
  selector: {{app: svc}}
  ports: [{{name: http, port: 80}}]
"""


@pytest.mark.parametrize(
    ("export_to", "visible_in"),
    [("*", {"ns1", "ns2", "ns3"}), (".", {"ns1"}), ("~", set()), ("ns2", {"ns2"}), (".,ns3", {"ns1", "ns3"})],
)
def test_service_export_to(export_to: str, visible_in: set[str]) -> None:
    snap = build(_annotated_service(export_to))
    seen = {ns for ns in ("ns1", "ns2", "ns3") if "svc.ns1.svc.cluster.local" in scope_of(snap, ns=ns)}
    assert seen == visible_in


def _vs(
    name: str, ns: str, host: str, dest: str, export_to: list[str] | None = None, created: str = ""
) -> str:
    meta = f"name: {name}, namespace: {ns}" + (f", creationTimestamp: '{created}'" if created else "")
    export = f"\n  exportTo: {export_to}" if export_to is not None else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{{meta}}}
spec:
  hosts: [{host}]{export}
  http: [{{route: [{{destination: {{host: {dest}}}}}]}}]
"""


@pytest.mark.parametrize(
    ("export_to", "visible_in"),
    [(None, {"ns1", "ns2", "ns3"}), (["."], {"ns1"}), (["ns2"], {"ns2"}), ([".", "ns3"], {"ns1", "ns3"})],
)
def test_virtual_service_export_to(export_to: list[str] | None, visible_in: set[str]) -> None:
    snap = build(kube_service("a", "ns1", 80), _vs("vs", "ns1", "a.ns1.svc.cluster.local", "a", export_to))
    assert {ns for ns in ("ns1", "ns2", "ns3") if vs_names(snap, ns)} == visible_in


def test_mesh_config_default_export_to(monkeypatch: pytest.MonkeyPatch) -> None:
    # MeshConfig defaultServiceExportTo / defaultVirtualServiceExportTo ["."]. Set on the mesh settings
    # directly: the MeshConfig validation refuses "." there today (it checks it against namespace "").
    private = replace(
        MeshSettings.from_spec(None),
        default_service_export_to=frozenset({"."}),
        default_virtual_service_export_to=frozenset({"."}),
    )
    monkeypatch.setattr(MeshSettings, "from_spec", staticmethod(lambda spec: private))
    snap = build(kube_service("a", "ns1", 80), _vs("vs", "ns1", "a.ns1.svc.cluster.local", "a"))
    assert (set(scope_of(snap, "ns1")), vs_names(snap, "ns1")) == ({"a.ns1.svc.cluster.local"}, ["ns1/vs"])
    assert (scope_of(snap, "ns2"), vs_names(snap, "ns2")) == ({}, [])


def test_duplicate_virtual_service_hosts_oldest_wins() -> None:
    old, new = "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
    host = "a.ns1.svc.cluster.local"
    snap = build(
        kube_service("a", "ns1", 80),
        kube_service("b", "ns1", 80),
        kube_service("c", "ns1", 80),
        _vs("newer", "ns1", host, "b", created=new),
        _vs("older", "ns1", host, "c", created=old),
    )
    assert vs_names(snap, "ns2") == ["ns1/older", "ns1/newer"]
    assert route_clusters(snap, "a.ns1.svc.cluster.local", ns="ns2") == [
        "outbound|80||c.ns1.svc.cluster.local"
    ]


def test_duplicate_virtual_services_created_together_by_name() -> None:
    # sortConfigByCreationTime: equal creation times are ordered by name, then namespace.
    host = "a.ns1.svc.cluster.local"
    snap = build(kube_service("a", "ns1", 80), _vs("zz", "ns1", host, "a"), _vs("aa", "ns1", host, "a"))
    assert vs_names(snap, "ns2") == ["ns1/aa", "ns1/zz"]


def test_private_virtual_services_precede_public_ones() -> None:
    # SelectVirtualServices: private to the namespace, then exported to it, then public.
    host = "a.ns1.svc.cluster.local"
    old = "2020-01-01T00:00:00Z"
    snap = build(
        kube_service("a", "ns1", 80),
        _vs("public", "ns1", host, "a", created=old),
        _vs("exported", "ns3", host, "a", export_to=["ns2"]),
        _vs("private", "ns2", host, "a", export_to=["."]),
    )
    assert vs_names(snap, "ns2") == ["ns2/private", "ns3/exported", "ns1/public"]


# --- virtualservice_test.go: delegates ----------------------------------------------------------


def _root(match: str, delegate_ns: str = "ns2") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: root, namespace: ns1}}
spec:
  hosts: [productpage.ns1.svc.cluster.local]
  http:
  - name: root
    match: {match}
    timeout: 7s
    delegate: {{name: leaf, namespace: {delegate_ns}}}
"""


def _leaf(http: str, export_to: list[str] | None = None, ns: str = "ns2") -> str:
    export = f"\n  exportTo: {export_to}" if export_to is not None else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: leaf, namespace: {ns}}}
spec:{export}
  http: {http}
"""


def merged_http(*docs: str) -> list[Any]:
    snap = build(kube_service("productpage", "ns1", 9080), *docs)
    [root] = [e for e in snap.virtual_services.entries if e.name == "root"]
    return list(root.http)


def test_delegate_merges_matches_name_and_inherited_fields() -> None:
    http = merged_http(
        _root("[{uri: {prefix: /productpage}, headers: {version: {exact: v1}}}]"),
        _leaf(
            "[{name: v2, match: [{uri: {exact: /productpage/v2}, headers: {user: {exact: jason}}}],"
            " route: [{destination: {host: productpage.ns1.svc.cluster.local}}]},"
            " {match: [{uri: {prefix: /login}}], route: [{destination: {host: productpage.ns1.svc.cluster.local}}]},"
            " {timeout: 1s, route: [{destination: {host: productpage.ns1.svc.cluster.local}}]}]"
        ),
    )
    # The /login rule conflicts with the root's prefix and is left out.
    assert [r.name for r in http] == ["root-v2", "root"]
    [m] = http[0].match
    assert m.uri.exact == "/productpage/v2"
    assert {k: v.exact for k, v in m.headers.items()} == {"version": "v1", "user": "jason"}
    assert [x.uri.prefix for x in http[1].match] == ["/productpage"]
    assert (http[0].timeout, http[1].timeout) == ("7s", "1s")
    assert http[0].delegate is None


def test_delegate_conflicting_headers_and_regex() -> None:
    http = merged_http(
        _root("[{uri: {regex: '/p.*'}, headers: {version: {exact: v1}}}]"),
        _leaf(
            "[{match: [{headers: {version: {exact: v2}}}], route: [{destination: {host: a}}]},"
            " {match: [{uri: {prefix: /p}}], route: [{destination: {host: b}}]},"
            " {match: [{queryParams: {q: {exact: x}}}], route: [{destination: {host: c}}]}]"
        ),
    )
    assert [d.destination.host for r in http for d in r.route] == ["c.ns2.svc.cluster.local"]


def test_delegate_short_names_resolve_in_delegate_namespace() -> None:
    http = merged_http(_root("[{uri: {prefix: /}}]"), _leaf("[{route: [{destination: {host: reviews}}]}]"))
    assert http[0].route[0].destination.host == "reviews.ns2.svc.cluster.local"


@pytest.mark.parametrize(
    ("export_to", "kept"),
    [(None, True), (["*"], True), (["ns1"], True), (["."], False), (["ns3"], False)],
)
def test_delegate_must_be_exported_to_root_namespace(export_to: list[str] | None, kept: bool) -> None:
    http = merged_http(
        _root("[{uri: {prefix: /}}]"), _leaf("[{route: [{destination: {host: a}}]}]", export_to)
    )
    assert bool(http) == kept


def test_delegate_not_found_drops_only_that_route() -> None:
    root = _root("[{uri: {prefix: /a}}]", delegate_ns="missing").replace(
        "  http:\n", "  http:\n  - route: [{destination: {host: productpage}}]\n"
    )
    http = merged_http(root)
    assert [d.destination.host for r in http for d in r.route] == ["productpage.ns1.svc.cluster.local"]
