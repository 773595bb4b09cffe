"""The last `pilot/pkg/model` test cases of istio/istio not ported by the other parity files.

Inventory of istio/istio `pilot/pkg/model/*_test.go` (Test function -> where it is ported, or why not):

push_context_test.go — all covered: TestServiceIndex, TestInitPushContext, TestSidecarScope,
  TestRootSidecarScopePropagation, TestBestEffortInferServiceMTLSMode, TestInitVirtualService,
  TestInstancesByPort, TestResolveServiceAliases, late TestSetDestinationRuleWithWorkloadSelector cases
  (test_istio_model_more_parity.py); TestSetDestinationRuleWithExportTo, TestSetDestinationRuleMerging,
  TestSetDestinationRuleWithWorkloadSelector, TestServiceWithExportTo, TestIsServiceVisible,
  TestVirtualServiceWithExportTo (both mesh and gateway halves) (test_istio_push_context_parity.py).
  n/a: TestMergeUpdateRequest, TestConcurrentMerge (xDS debounce; tests/unit/gen/test_push_requests.py),
  TestEnvoyFilters*, TestEnvoyFilterOrder*, TestEnvoyFilterUpdate, TestWasmPlugins (no EnvoyFilter /
  WasmPlugin), TestGetHostsFromMeshConfig, TestWellKnownProvidersCount,
  TestGetHostsFromMeshConfigExhaustiveness (FilterGatewayClusterConfig and proto exhaustiveness).
sidecar_test.go — TestCreateSidecarScope: most cases in test_istio_scope_parity.py; HERE the ones left:
  no-sidecar-config, sidecar-with-multiple-egress, sidecar-with-zero-egress,
  sidecar-with-multiple-egress-noport (listener counts), sidecar-with-multiple-egress-with-service-on-same-
  port, -with-multiple-service, sidecar-with-multiple-egress-noport-with-specific-service,
  -noport-with-services, service-port-used-while-cloning, virtual-service-bad-host,
  sidecar-scope-with-matching-workloadselector-dr, sidecar-scope-with-non-matching-workloadselector-dr,
  sidecar-scope-same-workloadselector-labels-drs-should-be-merged; sidecar-scope-with-illegal-host and
  virtual-service-2-match-service[-and-domain|-all-services] as refusals (istiod's webhook refuses those
  Sidecar / VirtualService objects, so its scope builder's handling of them is never reached).
  TestIstioEgressListenerWrapper: four cases in test_istio_scope_parity.py ("a/* imports only those in a",
  "b/alt imports alt in a namespaces", both wildcard-service cases); HERE the other seven.
  TestSidecarOutboundTrafficPolicy: four cases in test_istio_scope_parity.py; HERE the other four.
  TestContainsEgressDependencies, TestRootNsSidecarDependencies, TestInboundConnectionPoolForPort,
  TestComputeWildcardHostVirtualServiceIndex: test_istio_model_more_parity.py.
  n/a: BenchmarkConvertIstioListenerToWrapper; the WasmPlugin cases.
virtualservice_test.go — all covered (test_istio_virtualservice_parity.py): TestMergeVirtualServices,
  TestMergeHttpRoutes, TestMergeHTTPMatchRequests, TestHasConflict, TestFuzzMergeHttpRoute,
  TestFuzzMergeHttpMatchRequest, TestResolveGatewayName, TestSelectVirtualService.
destination_rule_test.go — merging: tests/unit/gen/test_istio_cluster_parity.py; n/a:
  TestConsolidatedDestRuleEquals (struct equality).
authentication_test.go, authorization_test.go, policyattachment_test.go —
  test_istio_policy_selection_parity.py; n/a: TestSdsCertificateConfigFromResourceName (file-mounted
  certificates).
telemetry_test.go, telemetry_logging_test.go — tests/unit/telemetry/test_istio_telemetry_parity.py; n/a:
  TestGetInterval, Test_computedTelemetries_Equal (internal helpers), telemetry_ecds_test.go and
  telemetry_metric_test.go (istio-proxy stats filter / ECDS of Wasm stats: no istio.stats in plain Envoy).
proxy_config_test.go — tests/unit/mesh/test_proxy_config_effective.py.
gateway_test.go — TestMergeGateways: tests/unit/gen/test_istio_gateway_parity.py;
  TestParseGatewayRDSRouteName: the names it parses (`http.80`, `https.443.<port>.<gw>.<ns>`) are checked
  where gateways build them (same file); the parser itself (and its "invalid rds name" case) has no
  Isthmus counterpart.
config_test.go — TestResolveShortnameToFQDN: HERE (the cases whose config has a namespace and domain);
  TestMostSpecificHostMatch: test_istio_host_labels_parity.py; n/a: TestConfigKey, TestLabelsEquals and
  the store/descriptor helpers (Go internals).
service_test.go — TestGetByPort, TestParseSubsetKey, TestIsValidSubsetKey, TestParseSubsetKeyHostname:
  test_istio_host_labels_parity.py; n/a: TestWorkloadInstanceEqual, TestServicesEqual,
  TestFuzzServiceDeepCopy, TestGetAllAddresses (Go struct equality / copying / dual stack).
n/a, no counterpart in a single-cluster, EnvoyFilter-less, Wasm-less mesh with its own agent:
  cluster_local_test.go (TestIsClusterLocal: cluster-local hosts only change multi-cluster endpoints),
  network_test.go, proxy_view_test.go, addressmap_test.go (multi-network / ambient), envoyfilter*_test.go,
  extensions_test.go (Wasm), context_test.go (Envoy node-metadata parsing, istiod's own bootstrap),
  jwks_resolver_test.go (istiod fetching and caching remote key sets; Isthmus inlines file:// only),
  endpointshards_test.go, typed_xds_cache / xds_cache tests, config_compare_test.go, conversion_test.go,
  kstatus/status helper tests, credentials/resource_test.go (credential resource names of Gateway API /
  multi-cluster), serviceentry_visibility_test.go (MeshConfig
  serviceEntryVisibility, not in Isthmus's MeshConfig), destination/*_test.go (ambient destinations).

Each case is the Istio YAML a user would apply, checked on the Sidecar scope `Snapshot.scope` builds (the
services, with namespace and ports, a proxy imports) or on the clusters generated for the proxy. istiod's
registry-less test services (bare hosts like `bar`, no ports, namespace `*`) become ServiceEntries with a
host under example.com or svc.cluster.local and at least one port; where istiod's service had no port the
case gives it one that no listener filters on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from isthmus.api.errors import ConfigErrors
from isthmus.api.loader import load_text
from isthmus.model.hosts import resolve_short_name
from isthmus.model.sidecar_scope import egress_listeners
from isthmus.model.snapshot import Snapshot

# The generator tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, route_table, sidecar, snapshot

NS = "mynamespace"  # convertToSidecarScope(ps, cfg, "mynamespace") in TestCreateSidecarScope


# --- building YAML ----------------------------------------------------------------------------


def _doc(kind: str, name: str, ns: str, spec: dict[str, Any], created: int | None = None) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = f"2024-01-01T00:00:0{created}Z"
    return json.dumps({"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec})


def se(
    name: str, ns: str, host: str, *ports: tuple[int, str, str], created: int | None = None, **extra: Any
) -> str:
    """A ServiceEntry; each port is (number, protocol, name)."""
    spec = {
        "hosts": [host],
        "location": "MESH_INTERNAL",
        "resolution": "NONE",
        "ports": [{"number": n, "protocol": p, "name": pn} for n, p, pn in ports],
        **extra,
    }
    return _doc("ServiceEntry", name, ns, spec, created)


def sidecar_cr(*egress: dict[str, Any], ns: str = NS) -> str:
    """A namespace-wide Sidecar. Without egress (istiod's configs2, `Sidecar{}`) it sets the default
    outboundTrafficPolicy: validation, Istio's and ours, refuses an empty Sidecar."""
    spec = {"egress": list(egress)} if egress else {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}
    return _doc("Sidecar", "default", ns, spec)


def build(*docs: str) -> Snapshot:
    return snapshot(*docs, pods=[], services=False)


def scope_of(snap: Snapshot, ns: str = NS) -> dict[str, tuple[str, list[int]]]:
    """hostname -> (namespace of the service the scope keeps, the ports it imports)."""
    scope = snap.scope(sidecar("app-0", ns, {"app": "app"}))
    return {s.hostname: (s.service.namespace, sorted(p.port for p in s.ports)) for s in scope.services}


def listener_count(snap: Snapshot, ns: str = NS) -> int:
    scope = snap.scope(sidecar("app-0", ns, {"app": "app"}))
    return len(egress_listeners(scope.sidecar, ns))


# --- TestCreateSidecarScope ------------------------------------------------------------------------

# configs1: a port listener bound to 1.1.1.1 and a catch-all, both `*/*`.
CONFIGS_1 = sidecar_cr(
    {"port": {"number": 9000, "protocol": "HTTP", "name": "uds"}, "bind": "1.1.1.1", "hosts": ["*/*"]},
    {"hosts": ["*/*"]},
)
# configs3: one listener without a port importing foo/bar and everything.
CONFIGS_3 = sidecar_cr({"hosts": ["foo/bar.example.com", "*/*"]})
BAR = "bar.example.com"
BARPRIME = "barprime.example.com"


@pytest.mark.parametrize(
    ("sidecar_doc", "listeners"),
    [
        pytest.param(None, 1, id="no-sidecar-config"),
        pytest.param(CONFIGS_1, 2, id="sidecar-with-multiple-egress"),
        pytest.param(sidecar_cr(), 1, id="sidecar-with-zero-egress"),
        pytest.param(CONFIGS_3, 1, id="sidecar-with-multiple-egress-noport"),
    ],
)
def test_egress_listener_count_without_services(sidecar_doc: str | None, listeners: int) -> None:
    # A Sidecar without egress (or no Sidecar) is one catch-all listener; no services, nothing imported.
    snap = build(*([sidecar_doc] if sidecar_doc else []))
    assert listener_count(snap) == listeners
    assert scope_of(snap) == {}


@pytest.mark.parametrize(
    ("sidecar_doc", "bar_ports", "want"),
    [
        # services1 / services4: bar and barprime without ports (here: on 8000, 8001).
        pytest.param(CONFIGS_1, [8000], {BAR: ("foo", [8000]), BARPRIME: ("foo", [8001])},
                     id="sidecar-with-multiple-egress-with-multiple-service"),
        # services3: bar on the port listener's port 9000, barprime without ports.
        pytest.param(CONFIGS_1, [9000], {BAR: ("foo", [9000]), BARPRIME: ("foo", [8001])},
                     id="sidecar-with-multiple-egress-with-service-on-same-port"),
        # services2: bar on 8000, barprime without ports.
        pytest.param(CONFIGS_3, [8000], {BAR: ("foo", [8000]), BARPRIME: ("foo", [8001])},
                     id="sidecar-with-multiple-egress-noport-with-specific-service"),
        pytest.param(CONFIGS_3, [8000, 9000], {BAR: ("foo", [8000, 9000]), BARPRIME: ("foo", [8001])},
                     id="sidecar-with-multiple-egress-noport-with-services"),
    ],
)  # fmt: skip
def test_catch_all_listener_imports_every_service(
    sidecar_doc: str, bar_ports: list[int], want: dict[str, tuple[str, list[int]]]
) -> None:
    # The catch-all listener keeps every port of every service, whatever a port listener took first.
    bar = se("bar", "foo", BAR, *((p, "HTTP", f"http-{p}") for p in bar_ports))
    barprime = se("barprime", "foo", BARPRIME, (8001, "HTTP", "http"))
    assert scope_of(build(bar, barprime, sidecar_doc)) == want


def test_service_port_used_while_cloning() -> None:
    # service-port-used-while-cloning (configs8 / services9): the listener's port is named
    # listener-grpc-tls; the imported service keeps its own port, name and protocol.
    sc = sidecar_cr(
        {"port": {"number": 7443, "protocol": "GRPC", "name": "listener-grpc-tls"}, "hosts": ["mesh/*"]}
    )
    foo = se("foo", "mesh", "foo.svc.cluster.local", (7443, "GRPC", "service-grpc-tls"))
    scope = build(foo, sc).scope(sidecar("app-0", NS, {"app": "app"}))
    (scoped,) = scope.services
    assert (scoped.hostname, scoped.service.namespace) == ("foo.svc.cluster.local", "mesh")
    assert [(p.port, p.name, p.protocol.value) for p in scoped.ports] == [(7443, "service-grpc-tls", "GRPC")]


VIRTUALBAR = "virtualbar.foo.svc.cluster.local"
# virtualServices1: foo/virtualbar routes to baz and mirrors to foo.
VS_1 = _doc(
    "VirtualService",
    "virtualbar",
    "foo",
    {
        "hosts": ["virtualbar"],
        "http": [
            {
                "mirror": {"host": "foo.svc.cluster.local"},
                "route": [{"destination": {"host": "baz.svc.cluster.local"}}],
            }
        ],
    },
)
# configs11: an HTTP_PROXY listener importing only the VirtualService's host.
CONFIGS_11 = sidecar_cr(
    {"port": {"number": 7443, "protocol": "HTTP_PROXY", "name": "grpc-tls"}, "hosts": [f"foo/{VIRTUALBAR}"]}
)


def test_virtual_service_bad_host() -> None:
    # virtual-service-bad-host (configs11 / services9): the route's baz is no service; the mirror's foo
    # (in namespace mesh) is imported on all its ports.
    foo = se("foo", "mesh", "foo.svc.cluster.local", (7443, "GRPC", "service-grpc-tls"))
    assert scope_of(build(foo, VS_1, CONFIGS_11)) == {"foo.svc.cluster.local": ("mesh", [7443])}


def test_sidecar_scope_with_illegal_host_is_refused() -> None:
    # sidecar-scope-with-illegal-host (configs13): istiod's scope builder skips the host `foo`; its
    # validation (ours too) refuses the Sidecar outright, so no proxy ever sees it.
    sc = sidecar_cr(
        {"port": {"number": 7443, "protocol": "HTTP_PROXY", "name": "grpc-tls"}, "hosts": ["foo", "foo/bar"]}
    )
    with pytest.raises(ConfigErrors, match="namespace/dnsName"):
        load_text(sc)


@pytest.mark.parametrize(
    "case", ["virtual-service-2-match-service", "virtual-service-2-match-service-and-domain",
             "virtual-service-2-match-all-services"],
)  # fmt: skip
def test_virtual_service_wildcard_host_for_mesh_is_refused(case: str) -> None:
    # virtualServices2 has hosts [virtualbar, "*"] and no gateways (so the mesh): istiod's validation
    # refuses "*" for the mesh gateway, so these three cases cannot be applied.
    vs = _doc(
        "VirtualService",
        "virtualbar",
        "foo",
        {
            "hosts": ["virtualbar", "*"],
            "http": [{"route": [{"destination": {"host": "baz.svc.cluster.local"}}]}],
        },
    )
    with pytest.raises(ConfigErrors, match=r"wildcard host \* is not allowed"):
        load_text(vs)


# DestinationRules of sidecar_test.go for httpbin.org in mynamespace, applied in this order.
def _dr(name: str, created: int, selector: str | None, policy: dict[str, Any], subsets: bool = False) -> str:
    spec: dict[str, Any] = {"host": "httpbin.org"}
    if selector:
        spec["workloadSelector"] = {"matchLabels": {"app": selector}}
    if policy:
        spec["trafficPolicy"] = policy
    if subsets:
        spec["subsets"] = [{"name": "subset1"}, {"name": "subset2"}]
    return _doc("DestinationRule", name, NS, spec, created)


POOL = {"http": {"maxRetries": 33}, "tcp": {"connectTimeout": "33s"}}
DRS = [
    _dr("dr-rule1", 0, "app1", {"connectionPool": POOL}),
    _dr("dr-rule2", 1, "app2", {"connectionPool": POOL, "outlierDetection": {"consecutive5xxErrors": 3}}),
    _dr("dr-rule3", 2, "app1", {}, subsets=True),
    # nonWorkloadSelectorDr (istiod names it drRule3 too; two objects cannot share a name here).
    _dr("dr-rule-ns", 3, None, {"connectionPool": POOL}),
]
HTTPBIN = se("httpbin", NS, "httpbin.org", (80, "HTTP", "http"), resolution="DNS", location="MESH_EXTERNAL")


@pytest.mark.parametrize(
    ("app", "rule", "outlier", "subsets"),
    [
        # drRule2 selects app2.
        pytest.param("app2", "dr-rule2", True, set(), id="sidecar-scope-with-matching-workloadselector-dr"),
        # No selector matches app5: the namespace-wide rule.
        pytest.param("app5", "dr-rule-ns", False, set(),
                     id="sidecar-scope-with-non-matching-workloadselector-dr"),
        # drRule1 and drRule3 select app1: merged into drRule1 (its policy, drRule3's subsets).
        pytest.param("app1", "dr-rule1", False, {"subset1", "subset2"},
                     id="sidecar-scope-same-workloadselector-labels-drs-should-be-merged"),
    ],
)  # fmt: skip
def test_workload_selector_destination_rule(app: str, rule: str, outlier: bool, subsets: set[str]) -> None:
    # istiod compares sidecarScope.DestinationRule(...).GetRule() with the expected rule: here the rule
    # a cluster names in its istio metadata, and the policy and subsets it carries.
    snap = snapshot(HTTPBIN, *DRS, pods=[], services=False)
    out = clusters(snap, sidecar("app-0", NS, {"app": app}))
    main = out["outbound|80||httpbin.org"]
    config = main["metadata"]["filter_metadata"]["istio"]["config"]
    assert config == f"/apis/networking.istio.io/v1/namespaces/{NS}/destination-rule/{rule}"
    assert main["connect_timeout"] == "33s"
    assert main["circuit_breakers"]["thresholds"][0]["max_retries"] == 33
    assert ("outlier_detection" in main) == outlier
    got = {n.split("|")[2] for n in out if n.startswith("outbound|80|") and n.split("|")[2]}
    assert got == subsets


# --- TestIstioEgressListenerWrapper (selectServices) ---------------------------------------------------

HOST = "host.example.com"
ALT = "alt.example.com"


def _services(ns: str, created: int) -> list[str]:
    """serviceX8000, serviceX9000 (one host on two ServiceEntries) and serviceXalt of namespace ns."""
    return [
        se("host-8000", ns, HOST, (8000, "HTTP", "uds"), created=created),
        se("host-9000", ns, HOST, (9000, "HTTP", "port1"), created=created),
        se("alt", ns, ALT, (8000, "HTTP", "uds"), created=created),
    ]


ALL_A_FIRST = _services("a", 0) + _services("b", 1)
ALL_B_FIRST = _services("b", 0) + _services("a", 1)
A_ALL = {HOST: ("a", [8000, 9000]), ALT: ("a", [8000])}
B_ALL = {HOST: ("b", [8000, 9000]), ALT: ("b", [8000])}


@pytest.mark.parametrize(
    ("hosts", "services", "want"),
    [
        pytest.param(["*/*"], ALL_A_FIRST, A_ALL, id="*/* imports only those in a"),
        pytest.param(["*/*"], ALL_B_FIRST, A_ALL, id="*/* will bias towards configNamespace"),
        pytest.param(["b/*", "b/*"], ALL_A_FIRST, B_ALL, id="b/*, b/* imports only those in b"),
        pytest.param([f"*/{ALT}"], ALL_A_FIRST, {ALT: ("a", [8000])}, id="*/alt imports alt in namespace a"),
        pytest.param(["b/*"], _services("a", 0)[:1], {},
                     id="b/* imports doesn't import in namespace a with proxy in a"),
        pytest.param(["a/*", "*/*"], _services("a", 0)[:1], {HOST: ("a", [8000])},
                     id="multiple hosts selected same service"),
        pytest.param([f"*/{HOST}", f"a/{ALT}"], ALL_A_FIRST, A_ALL, id="fall back to wildcard namespace"),
    ],
)  # fmt: skip
def test_egress_listener_select_services(
    hosts: list[str], services: list[str], want: dict[str, tuple[str, list[int]]]
) -> None:
    # istiod's listenerHosts map is the Sidecar egress hosts it is parsed from; the proxy is in `a`.
    snap = build(*services, sidecar_cr({"hosts": hosts}, ns="a"))
    assert scope_of(snap, "a") == want


# --- config_test.go TestResolveShortnameToFQDN -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "namespace", "out"),
    [
        pytest.param("*", "default", "*", id="[1] *"),
        pytest.param(
            "foo", "default", "foo.default.svc.cluster.local", id="[2] foo.default.svc.cluster.local"
        ),
        pytest.param("foo.bar", "default", "foo.bar", id="[3] foo.bar"),
        pytest.param("42.185.131.210", "default", "42.185.131.210", id="[6] 42.185.131.210"),
        pytest.param("42.185.131.210", "cluster.local", "42.185.131.210", id="[7] 42.185.131.210"),
        pytest.param("2a00:4000::614", "default", "2a00:4000::614", id="[8] 2a00:4000::614"),
        pytest.param("2a00:4000::614", "cluster.local", "2a00:4000::614", id="[9] 2a00:4000::614"),
    ],
)
def test_resolve_shortname_to_fqdn(name: str, namespace: str, out: str) -> None:
    # Cases [0], [4] and [5] have a config without a namespace or without a domain: every Isthmus config
    # has both. Cases already in test_hosts.py are kept here for the IPv6 ones istiod added.
    assert resolve_short_name(name, namespace) == out


def test_short_names_resolve_in_the_virtual_service_namespace() -> None:
    # The same through YAML: a VirtualService in `default` for host `foo` routing to `foo` serves
    # foo.default.svc.cluster.local and sends to its cluster.
    foo = _doc(
        "ServiceEntry",
        "foo",
        "default",
        {
            "hosts": ["foo.default.svc.cluster.local"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "endpoints": [{"address": "10.0.0.1"}],
            "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}],
        },
    )
    rule = {
        "match": [{"headers": {"x-case": {"exact": "short"}}}],
        "route": [{"destination": {"host": "foo"}}],
    }
    vs = _doc("VirtualService", "r", "default", {"hosts": ["foo"], "http": [rule]})
    table = route_table(build(foo, vs), sidecar("app-0", "default", {"app": "app"}))
    (vh,) = [v for v in table["virtual_hosts"] if "foo.default.svc.cluster.local" in v["domains"]]
    matched = [r for r in vh["routes"] if r["match"].get("headers")]
    assert [r["route"]["cluster"] for r in matched] == ["outbound|80||foo.default.svc.cluster.local"]


# --- TestSidecarOutboundTrafficPolicy: the cases test_istio_scope_parity.py leaves out -----------------

MESH_REGISTRY_ONLY = (
    "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
    "spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}"
)


def _sidecar_with_policy(mode: str | None) -> str:
    # configWithoutOutboundTrafficPolicy is `Sidecar{}`, which validation refuses: an egress `*/*` stands
    # in (it imports what no Sidecar would) and leaves the policy unset.
    spec: dict[str, Any] = {"egress": [{"hosts": ["*/*"]}]}
    if mode:
        spec["outboundTrafficPolicy"] = {"mode": mode}
    return _doc("Sidecar", "foo", "not-default", spec)


@pytest.mark.parametrize(
    ("registry_only_mesh", "sidecar_mode", "want"),
    [
        pytest.param(
            False, None, "ALLOW_ANY", id="default MeshConfig, sidecar without OutboundTrafficPolicy"
        ),
        pytest.param(False, "ALLOW_ANY", "ALLOW_ANY", id="default MeshConfig, Sidecar with allow any"),
        pytest.param(
            True, None, "REGISTRY_ONLY", id="MeshConfig registry only, sidecar without OutboundTrafficPolicy"
        ),
        pytest.param(
            True, "REGISTRY_ONLY", "REGISTRY_ONLY", id="MeshConfig registry only, Sidecar with registry only"
        ),
    ],
)
def test_sidecar_outbound_traffic_policy(
    registry_only_mesh: bool, sidecar_mode: str | None, want: str
) -> None:
    docs = [_sidecar_with_policy(sidecar_mode)] + ([MESH_REGISTRY_ONLY] if registry_only_mesh else [])
    scope = build(*docs).scope(sidecar("app-0", "not-default", {"app": "app"}))
    assert scope.sidecar is not None and scope.sidecar.name == "foo"
    assert scope.outbound_policy == want
