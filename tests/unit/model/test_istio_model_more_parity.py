"""More parity with istiod's `pilot/pkg/model` tests: the test functions of `push_context_test.go`,
`sidecar_test.go`, `authentication_test.go`, `authorization_test.go`, `destination_rule_test.go` and
`telemetry_test.go` that no other parity file ports yet.

Ported (each case is the Istio YAML a user would apply, checked on what Isthmus generates for a proxy, or
on the snapshot functions the generators use):
- push_context_test.go: TestServiceIndex (which services each namespace sees, by exportTo),
  TestInitPushContext (an incremental rebuild for an unrelated change equals a full one),
  TestSidecarScope (which Sidecar resource applies to a proxy), TestRootSidecarScopePropagation (a root
  Sidecar's `./*` is the proxy's own namespace, before and after an update), TestBestEffortInferServiceMTLSMode
  (auto mTLS on the client's cluster), TestInitVirtualService (gateway VirtualServices: short names,
  order, delegates), TestInstancesByPort (two ServiceEntries of one host, one port each),
  TestResolveServiceAliases (ExternalName aliases), and the cases TestSetDestinationRuleWithWorkloadSelector
  gained after test_istio_push_context_parity.py ported it (a proxy namespace holding selector rules only);
- sidecar_test.go: TestContainsEgressDependencies and TestRootNsSidecarDependencies (which configs a
  proxy depends on: whether they show in its config), TestInboundConnectionPoolForPort (Sidecar
  inboundConnectionPool and ingress connectionPool on the inbound clusters),
  TestComputeWildcardHostVirtualServiceIndex (which VirtualService routes a host among exact and
  wildcard ones).

Already ported elsewhere (by name): the rest of push_context_test.go's visibility tests
(test_istio_push_context_parity.py, test_istio_scope_parity.py), TestCreateSidecarScope,
TestIstioEgressListenerWrapper, TestSidecarOutboundTrafficPolicy (test_istio_scope_parity.py),
TestGetPoliciesForWorkload* and TestAuthorizationPolicies_ListAuthorizationPolicies
(test_istio_policy_selection_parity.py), TestAccessLogging, TestAccessLoggingWithFilter, TestTracing,
TestTelemetryFilters, Test_appendApplicableTelemetries (tests/unit/telemetry/test_istio_telemetry_parity.py).

Skipped, with the reason:
- TestMergeUpdateRequest, TestConcurrentMerge: merging of istiod's PushRequests (debounce), part of the xDS
  server, not of the model; Isthmus's push requests are covered by tests/unit/gen/test_push_requests.py.
- TestEnvoyFilters, TestEnvoyFilterOrder, TestEnvoyFilterOrderAcrossNamespaces, TestEnvoyFilterUpdate,
  TestWasmPlugins: no EnvoyFilter or WasmPlugin in Isthmus.
- TestGetHostsFromMeshConfig: istiod's FilterGatewayClusterConfig (gateway clusters limited to the
  services its routes and extension providers name); Isthmus gateways get every visible service, the
  default of that flag, so there is nothing to select. TestWellKnownProvidersCount and
  TestGetHostsFromMeshConfigExhaustiveness check istiod's own code against the MeshConfig proto.
- TestInitVirtualService's "destinations by gateway" half: the same flag's index.
- TestConsolidatedDestRuleEquals (destination_rule_test.go), TestGetInterval and
  Test_computedTelemetries_Equal (telemetry_test.go): equality and helpers of istiod's internal structs.
- TestSdsCertificateConfigFromResourceName (authentication_test.go): istiod's `file-cert:`/`file-root:`
  SDS resource names for certificates mounted in the proxy; Isthmus has no file-mounted certificates.
- TestContainsEgressDependencies "No Sidecar Other Namespace": istiod asks about a config that does not
  exist (no service in other-ns); with no Sidecar a real one there would be imported. The WasmPlugin
  cases of TestRootNsSidecarDependencies: no WasmPlugin.

Departures by design: istiod's test services and configs use bare host names (`svc1`) and an empty
domain suffix (a short name resolves to `match-ns1.ns1`); here Services are Kubernetes Services or
ServiceEntries, and short names resolve to `<name>.<ns>.svc.cluster.local`. Kubernetes names must be
lowercase, so istiod's camelCase resource names are kebab-cased (which keeps their order). istiod's
tests order configs by their position in a list; here creation times (or, when equal, names) do.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

# The generator tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, configs, generate, route_table, sidecar, snapshot

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:00:01Z"
T2 = "2024-01-01T00:00:02Z"


# --- building YAML ----------------------------------------------------------------------------


def _doc(api: str, kind: str, name: str, ns: str | None, spec: dict[str, Any], created: str = "") -> str:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    if created:
        meta["creationTimestamp"] = created
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec})


def net(kind: str, name: str, ns: str, spec: dict[str, Any], created: str = "") -> str:
    return _doc("networking.istio.io/v1", kind, name, ns, spec, created)


def sec(kind: str, name: str, ns: str, spec: dict[str, Any], created: str = "") -> str:
    return _doc("security.istio.io/v1", kind, name, ns, spec, created)


def kube_service(name: str, ns: str, *ports: int, **spec: Any) -> str:
    body: dict[str, Any] = {
        "selector": {"app": name},
        "ports": [{"name": f"http-{p}", "port": p} for p in ports],
        **spec,
    }
    return _doc("v1", "Service", name, ns, body)


def service_entry(
    name: str,
    ns: str,
    hosts: list[str],
    *ports: int,
    resolution: str = "STATIC",
    location: str = "MESH_INTERNAL",
    export_to: list[str] | None = None,
    endpoints: list[dict[str, Any]] | None = None,
    created: str = "",
    **extra: Any,
) -> str:
    spec: dict[str, Any] = {
        "hosts": hosts,
        "location": location,
        "resolution": resolution,
        "ports": [{"name": f"http-{p}", "number": p, "protocol": "HTTP"} for p in ports],
        **extra,
    }
    if export_to is not None:
        spec["exportTo"] = export_to
    if endpoints is None and resolution in ("STATIC", "DNS"):
        endpoints = [{"address": "10.0.0.1"}] if resolution == "STATIC" else [{"address": f"ep.{hosts[0]}"}]
    if endpoints:
        spec["endpoints"] = endpoints
    return net("ServiceEntry", name, ns, spec, created)


def mesh(**spec: Any) -> str:
    return _doc("isthmus.dev/v1alpha1", "MeshConfig", "mesh", None, spec)


def build(*docs: str, pods: list[Pod] | None = None) -> Snapshot:
    return snapshot(*docs, pods=pods or [], services=False)


def proxy_in(
    ns: str, labels: dict[str, str] | None = None, name: str = "app-0", ip: str = "127.7.9.2"
) -> Proxy:
    return sidecar(name=name, namespace=ns, labels=labels if labels is not None else {"app": "other"}, ip=ip)


def outbound_hosts(snap: Snapshot, proxy: Proxy) -> set[str]:
    """The hosts of the proxy's default-subset outbound clusters."""
    return {
        n.split("|")[3] for n in clusters(snap, proxy) if n.startswith("outbound|") and n.split("|")[2] == ""
    }


# --- TestServiceIndex ------------------------------------------------------------------------------

SERVICE_INDEX = (
    service_entry("svc-unset", "test1", ["svc-unset.test"], 8000),
    service_entry("svc-public", "test1", ["svc-public.test"], 8000, export_to=["*"]),
    service_entry("svc-private", "test1", ["svc-private.test"], 8000, export_to=["."]),
    service_entry("svc-none", "test1", ["svc-none.test"], 8000, export_to=["~"]),
    service_entry("svc-namespace", "test1", ["svc-namespace.test"], 8000, export_to=["namespace"]),
)


@pytest.mark.parametrize(
    ("proxy_ns", "want"),
    [
        # privateByNamespace[test1] + public: a list naming other namespaces leaves out its own.
        ("test1", {"svc-unset.test", "svc-public.test", "svc-private.test"}),
        # exportedToNamespace[namespace] + public.
        ("namespace", {"svc-unset.test", "svc-public.test", "svc-namespace.test"}),
        ("other", {"svc-unset.test", "svc-public.test"}),
    ],
)
def test_service_index(proxy_ns: str, want: set[str]) -> None:
    snap = build(*SERVICE_INDEX)
    assert outbound_hosts(snap, proxy_in(proxy_ns)) == want
    assert {s.hostname for s in snap.visible_services(proxy_ns)} == want


# --- TestInitPushContext -----------------------------------------------------------------------------

INIT_PUSH_CONTEXT = (
    net(
        "VirtualService",
        "rule1",
        "test1",
        {
            "hosts": ["svc1.test1.svc.cluster.local"],
            "exportTo": [".", "ns1"],
            "http": [{"route": [{"destination": {"host": "svc1"}}], "timeout": "3s"}],
        },
    ),  # fmt: skip
    net(
        "DestinationRule",
        "rule1",
        "test1",
        {
            "host": "svc1",
            "exportTo": [".", "ns1"],
            "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}},
        },
    ),  # fmt: skip
    net("Sidecar", "default", "istio-system", {"egress": [{"hosts": ["test1/*"]}]}),
    kube_service("svc1", "test1", 8000, 7000),
    kube_service("svc2", "test1", 8000, 7000),
)
SECRET = _doc("v1", "Secret", "unrelated", "test1", {})


def _all_config(snap: Snapshot, proxy: Proxy) -> dict[str, Any]:
    return {
        "clusters": clusters(snap, proxy),
        "listeners": generate(snap, proxy, naming.LISTENER_TYPE),
        "routes": route_table(snap, proxy),
    }


@pytest.mark.parametrize("proxy_ns", ["test1", "ns1", "other"])
def test_init_push_context_incremental_equals_full(proxy_ns: str) -> None:
    """An incremental rebuild for a change that feeds no index (istiod's Secret update) gives every proxy
    what a full build of the same config gives it."""
    old = build(*INIT_PUSH_CONTEXT)
    proxy = proxy_in(proxy_ns)
    _all_config(old, proxy)  # fill the old snapshot's memos, as istiod's initFunc calls do
    text = "\n---\n".join((*INIT_PUSH_CONTEXT, SECRET))
    cfgs = configs(text, services=False)
    assert any(c.kind == "Secret" for c in cfgs)
    new = Snapshot.build_configs_changed(old, 2, cfgs, frozenset({"Secret"}))
    assert new is not None
    assert _all_config(new, proxy) == _all_config(Snapshot.build(3, cfgs, []), proxy)
    # The VirtualService and the DestinationRule still reach test1 and ns1 only.
    table = route_table(new, proxy)
    timeouts = [
        r["route"].get("timeout") for vh in table["virtual_hosts"] for r in vh["routes"] if "route" in r
    ]
    assert ("3s" in timeouts) == (proxy_ns in ("test1", "ns1"))


# --- TestSidecarScope ----------------------------------------------------------------------------

SIDECAR_SCOPE = (
    net("Sidecar", "foo", "default", {"workloadSelector": {"labels": {"app": "foo"}}, "egress": [{"hosts": ["default/*"]}]}),
    net("Sidecar", "global", "istio-system", {"egress": [{"hosts": ["default/*"]}]}),
    kube_service("svc1", "default", 80),
    kube_service("svc2", "nosidecar", 80),
    kube_service("svc3", "istio-system", 80),
)  # fmt: skip


@pytest.mark.parametrize(
    ("ns", "labels", "want"),
    [
        ("default", {"app": "foo"}, "default/foo"),  # match local sidecar
        ("default", {"app": "bar"}, "istio-system/global"),  # no match local sidecar
        ("nosidecar", {"app": "bar"}, "istio-system/global"),  # no sidecar
    ],
)
def test_sidecar_scope(ns: str, labels: dict[str, str], want: str) -> None:
    snap = build(*SIDECAR_SCOPE)
    chosen = snap.sidecar_resource(proxy_in(ns, labels))
    assert chosen is not None and f"{chosen.namespace}/{chosen.name}" == want
    # Both Sidecars import default/* only.
    assert outbound_hosts(snap, proxy_in(ns, labels)) == {"svc1.default.svc.cluster.local"}


def test_sidecar_scope_of_a_gateway() -> None:
    """A gateway gets istiod's default scope (`default-sidecar`): no Sidecar resource, every service."""
    snap = build(*SIDECAR_SCOPE)
    gw = Proxy(
        id=Proxy.node_id("gateway", "127.7.9.8", "gw-0", "istio-system"), kind="gateway", ip="127.7.9.8",
        namespace="istio-system", instance="gw-0", workload="gw", labels={"app": "istio-gateway"},
    )  # fmt: skip
    assert snap.sidecar_resource(gw) is None
    assert outbound_hosts(snap, gw) == {
        "svc1.default.svc.cluster.local",
        "svc2.nosidecar.svc.cluster.local",
        "svc3.istio-system.svc.cluster.local",
    }


# --- TestRootSidecarScopePropagation -----------------------------------------------------------------

ROOT_SIDECAR = (
    kube_service("svc1", "default", 8000, 7000),
    kube_service("svc2", "foo", 8000, 7000),
    kube_service("svc3", "foo", 8000, 7000),
    kube_service("svc4", "istio-system", 8000, 7000),
    net("Sidecar", "global", "istio-system", {"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
)
ROOT_SIDECAR_SEEN = {
    "foo": {
        "svc2.foo.svc.cluster.local",
        "svc3.foo.svc.cluster.local",
        "svc4.istio-system.svc.cluster.local",
    },
    "default": {"svc1.default.svc.cluster.local", "svc4.istio-system.svc.cluster.local"},
}


@pytest.mark.parametrize("ns", ["foo", "default"])
def test_root_sidecar_scope_propagation(ns: str) -> None:
    """A root Sidecar's `./*` is each proxy's own namespace, when the snapshot is built and after an update
    that changes nothing the scope imports (istiod's updateContext with a Service key)."""
    snap = build(*ROOT_SIDECAR)
    assert outbound_hosts(snap, proxy_in(ns)) == ROOT_SIDECAR_SEEN[ns]
    # A VirtualService-only change reuses the registry: the scopes are rebuilt from it.
    vs = net("VirtualService", "unrelated", "bar", {"hosts": ["elsewhere.example.com"], "http": [{"route": [
        {"destination": {"host": "svc1.default.svc.cluster.local"}}]}]})  # fmt: skip
    cfgs = configs("\n---\n".join((*ROOT_SIDECAR, vs)), services=False)
    updated = Snapshot.build_configs_changed(snap, 2, cfgs, frozenset({"VirtualService"}))
    assert updated is not None
    assert outbound_hosts(updated, proxy_in(ns)) == ROOT_SIDECAR_SEEN[ns]


# --- TestBestEffortInferServiceMTLSMode ----------------------------------------------------------------

MTLS_POLICIES = (
    sec("PeerAuthentication", "default", "whole", {"mtls": {"mode": "STRICT"}}, T0),
    sec("PeerAuthentication", "workload-beta-policy", "partial", {
        "selector": {"matchLabels": {"app": "httpbin", "version": "v1"}}, "mtls": {"mode": "DISABLE"}}, T0),
)  # fmt: skip


def _cluster_tls(snap: Snapshot, host: str, port: int = 80) -> str:
    """How a client reaches the service: `auto` (istiod's auto mTLS matches: mTLS to sidecars, plaintext
    to others), `mtls` (always), `plaintext`."""
    c = clusters(snap, proxy_in("client"))[f"outbound|{port}||{host}"]
    if c.get("transport_socket_matches"):
        assert [m["name"] for m in c["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]
        return "auto"
    return "mtls" if "transport_socket" in c else "plaintext"


@pytest.mark.parametrize(
    ("ns", "want"),
    [
        ("whole", "auto"),  # from namespace policy (STRICT)
        ("partial", "auto"),  # from mesh default (PERMISSIVE): a workload policy does not count
    ],
)
def test_infer_mtls_mode_client_side_lb(ns: str, want: str) -> None:
    """istiod's cluster for MTLSStrict and MTLSPermissive is the same: auto mTLS's transport socket matches
    (buildAutoMtlsSettings returns ISTIO_MUTUAL as auto-detected either way)."""
    host = f"some-service.{ns}.svc.cluster.local"
    snap = build(*MTLS_POLICIES, kube_service("some-service", ns, 80))
    assert _cluster_tls(snap, host) == want


def test_infer_mtls_mode_external_service_is_unknown() -> None:
    """MeshExternal: MTLSUnknown, never auto mTLS, whatever the namespace's policy."""
    for ns in ("whole", "partial"):
        snap = build(*MTLS_POLICIES, service_entry("ext", ns, ["some-service.example.com"], 80,
                                                   location="MESH_EXTERNAL"))  # fmt: skip
        assert _cluster_tls(snap, "some-service.example.com") == "plaintext"


def test_infer_mtls_mode_headless_without_instances_is_disabled() -> None:
    """A passthrough service (resolution NONE) with no instance found yet: MTLSDisable."""
    snap = build(*MTLS_POLICIES, service_entry("headless", "partial", ["some-service.partial.internal"], 80,
                                               resolution="NONE"))  # fmt: skip
    assert _cluster_tls(snap, "some-service.partial.internal") == "plaintext"


def test_infer_mtls_mode_headless_with_plaintext_instance_is_disabled() -> None:
    """A passthrough service whose instance has no sidecar (tlsMode disabled): MTLSDisable. One whose
    instances all have sidecars gets mTLS, all or nothing (an ORIGINAL_DST cluster has no matches)."""

    def build_with(labels: dict[str, str]) -> Snapshot:
        we = net("WorkloadEntry", "vm", "partial", {"address": "10.1.2.3", "labels": {"app": "vm", **labels}})
        return build(*MTLS_POLICIES, we, service_entry("headless", "partial", ["some-service.partial.internal"],
                                                       80, resolution="NONE",
                                                       workloadSelector={"labels": {"app": "vm"}}))  # fmt: skip

    assert _cluster_tls(build_with({}), "some-service.partial.internal") == "plaintext"
    with_sidecar = build_with({"security.istio.io/tlsMode": "istio"})
    assert _cluster_tls(with_sidecar, "some-service.partial.internal") == "mtls"


# --- TestInitVirtualService ------------------------------------------------------------------------


def _route(host: str, **match: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"route": [{"destination": {"host": host, "port": {"number": 80}}}]}
    if match:
        rule["match"] = [match]
    return rule


INIT_VIRTUAL_SERVICE = (
    net("VirtualService", "root", "ns1", {
        "exportTo": ["*"], "hosts": ["*.org"], "gateways": ["gateway"],
        "http": [{"match": [{"uri": {"prefix": "/productpage"}}, {"uri": {"exact": "/login"}}],
                  "delegate": {"name": "delegate", "namespace": "ns2"}}],
    }),
    # istiod's delegate also names `gateways`, which validation refuses on a delegate; merging ignores it.
    net("VirtualService", "delegate", "ns2", {"exportTo": ["*"], "http": [_route("delegate")]}),
    net("VirtualService", "public", "ns3", {"hosts": ["*.org"], "gateways": ["ns1/gateway"],
                                            "http": [_route("public")]}),
    net("VirtualService", "private", "ns1", {"exportTo": [".", "ns2"], "hosts": ["*.org"],
                                             "gateways": ["ns1/gateway"], "http": [_route("private")]}),
    net("VirtualService", "invisible", "ns5", {"hosts": ["*.org"], "gateways": ["gateway", "mesh"],
                                               "http": [_route("invisible")]}),
    net("VirtualService", "match-ns1-from-different-namespace", "ns5", {
        "hosts": ["*.org"], "gateways": ["ns1/gateway"], "http": [_route("match-ns1", sourceNamespace="ns1")]}),
    net("VirtualService", "match-ns1-without-explicit-gateway-namespace", "ns1", {
        "exportTo": [".", "ns3"], "hosts": ["*.org"], "gateways": ["gateway"],
        "http": [_route("match-ns1", sourceNamespace="ns1")]}),
    net("VirtualService", "match-ns7", "ns7", {
        "hosts": ["*.org"], "gateways": ["ns1/gateway"], "http": [_route("match-ns7", sourceNamespace="ns7")]}),
)  # fmt: skip


def test_init_virtual_service_resolves_short_names() -> None:
    """VirtualServicesForGateway(ns1, ns1/gateway): ns1's private ones, then the public ones, each by
    creation time then name; short destination hosts resolved in each VirtualService's own namespace
    (the delegate's in ns2)."""
    snap = build(*INIT_VIRTUAL_SERVICE)
    entries = snap.virtual_services_for_gateway("ns1", "ns1/gateway")
    assert [f"{e.namespace}/{e.name}" for e in entries] == [
        "ns1/match-ns1-without-explicit-gateway-namespace",
        "ns1/private",
        "ns5/match-ns1-from-different-namespace",
        "ns7/match-ns7",
        "ns3/public",
        "ns1/root",
    ]
    hosts = [h for e in entries for h in e.http_destination_hosts()]
    assert hosts == [
        f"{h}.svc.cluster.local"
        for h in (
            "match-ns1.ns1",
            "private.ns1",
            "match-ns1.ns5",
            "match-ns7.ns7",
            "public.ns3",
            "delegate.ns2",
        )
    ]
    # `gateways: [gateway, mesh]` in ns5 binds ns5/gateway, not ns1's.
    assert [e.name for e in snap.virtual_services_for_gateway("ns5", "ns5/gateway")] == ["invisible"]


# --- TestInstancesByPort ------------------------------------------------------------------------------


def test_instances_by_port() -> None:
    """Two DNS ServiceEntries of one host in one namespace, one port each: the proxy gets both ports, each
    with the endpoints of the entry that declares it."""
    snap = build(
        service_entry("svc5-1", "test5", ["svc5.test"], 7000, resolution="DNS", export_to=["test5"],
                      endpoints=[{"address": "1.1.1.1"}], created=T0),
        service_entry("svc5-2", "test5", ["svc5.test"], 8000, resolution="DNS", export_to=["test5"],
                      endpoints=[{"address": "1.1.1.2"}], created=T1),
    )  # fmt: skip
    got = clusters(snap, proxy_in("test5"))

    def addresses(name: str) -> list[tuple[str, int]]:
        return [
            (ep["endpoint"]["address"]["socket_address"]["address"],
             ep["endpoint"]["address"]["socket_address"]["port_value"])
            for loc in got[name]["load_assignment"]["endpoints"] for ep in loc["lb_endpoints"]
        ]  # fmt: skip

    assert addresses("outbound|7000||svc5.test") == [("1.1.1.1", 7000)]
    assert addresses("outbound|8000||svc5.test") == [("1.1.1.2", 8000)]
    # exportTo test5: nowhere else.
    assert outbound_hosts(snap, proxy_in("other")) == set()


# --- TestResolveServiceAliases ------------------------------------------------------------------------


def external_name(name: str, target: str) -> str:
    return _doc("v1", "Service", name, "default", {
        "type": "ExternalName", "externalName": f"{target}.default.svc.cluster.local",
        "ports": [{"name": "http", "port": 80}]})  # fmt: skip


def _aliases(snap: Snapshot) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """short name -> (the concrete service it is an alias of, its own aliases' short names)."""

    def short(h: str | None) -> str | None:
        return h.split(".")[0] if h else None

    return {
        short(s.hostname): (short(s.alias_of), tuple(short(a) for a in s.aliases))  # type: ignore[misc]
        for s in snap.registry.services
    }


@pytest.mark.parametrize(
    ("docs", "want"),
    [
        pytest.param([kube_service("test", "default", 80)], {"test": (None, ())}, id="no aliases"),
        pytest.param(
            [kube_service("concrete", "default", 80), external_name("alias", "concrete")],
            {"concrete": (None, ("alias",)), "alias": ("concrete", ())},
            id="simple alias",
        ),
        pytest.param(
            [
                kube_service("concrete", "default", 80),
                external_name("alias1", "concrete"),
                external_name("alias2", "concrete"),
            ],
            {
                "concrete": (None, ("alias1", "alias2")),
                "alias1": ("concrete", ()),
                "alias2": ("concrete", ()),
            },
            id="multiple alias",
        ),  # fmt: skip
        pytest.param(
            [
                kube_service("concrete", "default", 80),
                external_name("alias1", "alias2"),
                external_name("alias2", "concrete"),
            ],
            {
                "concrete": (None, ("alias1", "alias2")),
                "alias1": ("concrete", ()),
                "alias2": ("concrete", ()),
            },
            id="chained alias",
        ),  # fmt: skip
        pytest.param(
            [external_name("alias1", "alias2"), external_name("alias2", "alias1")],
            {"alias1": (None, ()), "alias2": (None, ())},
            id="looping alias",
        ),
    ],
)
def test_resolve_service_aliases(docs: list[str], want: dict[str, Any]) -> None:
    assert _aliases(build(*docs)) == want


# --- TestSetDestinationRuleWithWorkloadSelector: the cases added after the port in
# test_istio_push_context_parity.py (a proxy namespace holding workload-selector rules only) ----------

DR_HOST = "httpbin.org"
APP2 = {"app": "app2"}


def dr(name: str, ns: str, subset: str, selector: dict[str, str] | None = None,
       export_to: list[str] | None = None, created: str = T1) -> str:  # fmt: skip
    spec: dict[str, Any] = {"host": DR_HOST, "subsets": [{"name": subset, "labels": {"subset": subset}}]}
    if selector is not None:
        spec["workloadSelector"] = {"matchLabels": selector}
    if export_to is not None:
        spec["exportTo"] = export_to
    return net("DestinationRule", name, ns, spec, created)


# istiod's selector rules list exportTo [test2, .], which validation refuses beside a workloadSelector
# (such a rule is only ever seen from its own namespace): they are left without exportTo.
APP1_RULE = dr("nsrule1", "test", "app1", selector={"app": "app1"}, created=T1)
APP2_RULE = dr("nsrule2", "test", "app2", selector=APP2, created=T2)
APP3_RULE = dr("nsrule3", "test", "app3", selector=APP2, created=T2)
APP4_RULE = dr("nsrule4", "test2", "app4", selector=APP2, export_to=["."], created=T2)
NS_RULE = dr("nsrule5", "test", "ns", export_to=[".", "test2"], created=T0)
ROOT_RULE = dr("nsrule6", "istio-system", "root", export_to=["*"], created=T0)
HTTPBIN_SE = service_entry("httpbin", "test", [DR_HOST], 80,
                           endpoints=[{"address": "10.0.0.1", "labels": {"subset": "x"}}])  # fmt: skip


def subsets_seen(snap: Snapshot, ns: str, labels: dict[str, str] | None = None) -> set[str]:
    prefix, suffix = "outbound|80|", f"|{DR_HOST}"
    return {
        n[len(prefix) : -len(suffix)]
        for n in clusters(snap, proxy_in(ns, labels))
        if n.startswith(prefix) and n.endswith(suffix)
    } - {""}


_FALLBACK = pytest.mark.xfail(
    strict=True,
    reason="istio/istio push_context_test.go at 66e9167f (istio#57719) lets a proxy namespace that holds "
    "workload-selector rules only fall back to the service's, then the root namespace's rule; "
    "push_context.go as stored (80376b78) and Isthmus stop at the proxy namespace, and "
    "test_istio_push_context_parity.py's test_unmatched_selector_rule_hides_other_namespaces_rules "
    "asserts that. Left until the istiod change is confirmed released.",
)


@_FALLBACK
def test_selector_only_proxy_namespace_falls_back_to_service_namespace_rule() -> None:
    """ "DR without workloadselector in dst NS applied if src NS only contains DRs with selectors"."""
    snap = build(APP4_RULE, NS_RULE, ROOT_RULE, HTTPBIN_SE)
    assert subsets_seen(snap, "test2", APP2) == {"app4"}
    assert subsets_seen(snap, "test2") == {"ns"}


@_FALLBACK
def test_selector_only_proxy_namespace_falls_back_to_root_rule() -> None:
    """ "DR without workloadselector in root NS applied if src (+ dst) NS only contain DRs with selectors"."""
    for rules in ((APP4_RULE, ROOT_RULE), (APP1_RULE, APP2_RULE, APP3_RULE, APP4_RULE, ROOT_RULE)):
        snap = build(*rules, HTTPBIN_SE)
        assert subsets_seen(snap, "test2", APP2) == {"app4"}
        assert subsets_seen(snap, "test2") == {"root"}


def test_workload_specific_rules_without_any_selector_less_rule() -> None:
    """ "workload-specific DR applied if no DR without workloadselector is present at all": nsRule2 and
    nsRule3 (one selector) merge; a proxy no selector matches gets no rule."""
    snap = build(APP1_RULE, APP2_RULE, APP3_RULE, APP4_RULE, HTTPBIN_SE)
    assert subsets_seen(snap, "test", {"app": "app1"}) == {"app1"}
    assert subsets_seen(snap, "test", APP2) == {"app2", "app3"}
    assert subsets_seen(snap, "test") == set()


# --- TestContainsEgressDependencies / TestRootNsSidecarDependencies ----------------------------------

SVC1 = "svc1.com"
DEP_IP = "127.7.9.2"
DEP_PORT = 80


def _dependencies(ns: str) -> tuple[str, ...]:
    """istiod's ServiceEntry svc1.com, VirtualService vs1 and DestinationRule dr1 in `ns`, each of which
    leaves a mark on a proxy that depends on it."""
    return (
        service_entry("svc1", ns, [SVC1], 80),
        net("VirtualService", "vs1", ns, {"hosts": [SVC1], "http": [
            {"route": [{"destination": {"host": SVC1}}], "timeout": "7s"}]}),  # fmt: skip
        net("DestinationRule", "dr1", ns, {"host": SVC1, "exportTo": ["*"],
                                           "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 9}}}}),
    )  # fmt: skip


def _marks(snap: Snapshot, proxy: Proxy) -> dict[str, bool]:
    """Whether the proxy's config shows the ServiceEntry (a cluster), the DestinationRule (its pool) and
    the VirtualService (its timeout)."""
    cluster = clusters(snap, proxy).get(f"outbound|80||{SVC1}")
    timeouts = [
        r["route"].get("timeout")
        for vh in route_table(snap, proxy)["virtual_hosts"]
        if any(d.startswith(SVC1) for d in vh.get("domains", ()))
        for r in vh["routes"]
        if "route" in r
    ]
    thresholds = (cluster or {}).get("circuit_breakers", {}).get("thresholds", [{}])[0]
    return {
        "ServiceEntry": cluster is not None,
        "DestinationRule": thresholds.get("max_connections") == 9,
        "VirtualService": "7s" in timeouts,
    }


@pytest.mark.parametrize(
    ("egress", "config_ns", "depends"),
    [
        (["*/*"], "ns", True),  # Just wildcard
        (["ns/*", "*/*"], "ns", True),  # Namespace and wildcard
        (["ns/*"], "ns", True),  # Just Namespace
        (["ns/*"], "other-ns", False),  # Wrong Namespace
        (None, "ns", True),  # No Sidecar
    ],
)
def test_contains_egress_dependencies(egress: list[str] | None, config_ns: str, depends: bool) -> None:
    docs = [*_dependencies(config_ns), service_entry("nomatch", "nomatch", ["nomatch.com"], 80)]
    if egress is not None:
        docs.append(net("Sidecar", "foo", "default", {"egress": [{"hosts": egress}]}))
    snap = build(*docs)
    marks = _marks(snap, proxy_in("default"))
    assert marks == dict.fromkeys(marks, depends)


_POLICY = re.compile(r"ns\[([^\]]+)\]-policy\[([^\]]+)\]-rule\[\d+\]")


def _authz_policies(snap: Snapshot, proxy: Proxy) -> set[str]:
    """`ns/name` of every AuthorizationPolicy in the proxy's listeners and the route tables they name."""
    listeners = generate(snap, proxy, naming.LISTENER_TYPE)
    text = json.dumps(listeners)
    routes = set(re.findall(r'"route_config_name": "([^"]+)"', text))
    text += json.dumps(generate(snap, proxy, naming.ROUTE_TYPE, routes))
    return {f"{m[1]}/{m[2]}" for m in _POLICY.finditer(text)}


def _workload_with_policy(policy_ns: str, sidecar_ns: str) -> set[str]:
    pod = Pod("app-0", "default", DEP_IP, {"app": "app"}, workload="app", app_ports={DEP_PORT: 41000})
    deny = sec("AuthorizationPolicy", "authz", policy_ns, {
        "action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]})  # fmt: skip
    snap = build(
        kube_service("app", "default", DEP_PORT),
        net("Sidecar", "foo", sidecar_ns, {"egress": [{"hosts": ["*/*"]}]}),
        deny,
        pods=[pod],
    )
    return _authz_policies(snap, proxy_in("default", {"app": "app"}, ip=DEP_IP))


@pytest.mark.parametrize(
    ("policy_ns", "sidecar_ns", "applies"),
    [
        # TestContainsEgressDependencies "clusterScope resource": not scoped by egress hosts.
        ("default", "default", True),
        # TestRootNsSidecarDependencies: a root Sidecar applied to a proxy in default.
        ("default", "istio-system", True),  # in the same ns as workload
        ("ns1", "istio-system", False),  # in a different ns from workload
        ("istio-system", "istio-system", True),  # in the root namespace
    ],
)
def test_authorization_policy_dependencies(policy_ns: str, sidecar_ns: str, applies: bool) -> None:
    want = {f"{policy_ns}/authz"} if applies else set()
    assert _workload_with_policy(policy_ns, sidecar_ns) == want


# --- TestInboundConnectionPoolForPort -----------------------------------------------------------------

POOL = {
    "http": {"http1MaxPendingRequests": 1024, "http2MaxRequests": 1024, "maxRequestsPerConnection": 1024,
             "maxRetries": 1024, "idleTimeout": "5s", "h2UpgradePolicy": "UPGRADE"},
    "tcp": {"maxConnections": 1024, "connectTimeout": "6s", "maxConnectionDuration": "9s",
            "tcpKeepalive": {"probes": 3, "time": "7s", "interval": "8s"}},
}  # fmt: skip
OVERRIDE = {
    "http": {"http1MaxPendingRequests": 1, "http2MaxRequests": 2, "maxRequestsPerConnection": 3,
             "maxRetries": 4, "idleTimeout": "1s", "h2UpgradePolicy": "DO_NOT_UPGRADE"},
}  # fmt: skip
POOL_IP = "127.7.9.5"
POOL_PORTS = (22, 80, 443)
DEFAULT_THRESHOLD = 2**32 - 1


def _inbound_pools(sidecar_spec: dict[str, Any]) -> dict[int, int | None]:
    """port -> the max_pending_requests of its inbound cluster (None: no pool, only istiod's default
    thresholds, applyDefaultConnectionPool's MaxUint32)."""
    pod = Pod(
        "app-0",
        "pools",
        POOL_IP,
        {"app": "app"},
        workload="app",
        app_ports={p: 41000 + p for p in POOL_PORTS},
    )
    snap = build(
        _doc("v1", "Service", "app", "pools", {"selector": {"app": "app"}, "ports": [
            {"name": "tcp-ssh", "port": 22}, {"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
        net("Sidecar", "sidecar", "pools", sidecar_spec),
        pods=[pod],
    )  # fmt: skip
    got = clusters(snap, proxy_in("pools", {"app": "app"}, ip=POOL_IP))
    out: dict[int, int | None] = {}
    for port in POOL_PORTS:
        name = naming.inbound_cluster(port)
        if name not in got:
            continue
        thresholds = got[name].get("circuit_breakers", {}).get("thresholds", [{}])[0]
        pending = thresholds.get("max_pending_requests")
        out[port] = None if pending in (None, DEFAULT_THRESHOLD) else pending
    return out


def _ingress(port: int, protocol: str, name: str, pool: dict[str, Any] | None = None) -> dict[str, Any]:
    listener: dict[str, Any] = {"port": {"number": port, "protocol": protocol, "name": name}}
    if pool is not None:
        listener["connectionPool"] = pool
    return listener


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        # istiod's empty Sidecar is refused by validation (Istio's too): one importing everything instead.
        pytest.param({"egress": [{"hosts": ["*/*"]}]}, {22: None, 80: None, 443: None}, id="no settings"),
        pytest.param(
            {"ingress": [_ingress(80, "HTTP", "http"), _ingress(443, "HTTPS", "https")]},
            {80: None, 443: None},
            id="no settings multiple ports",
        ),
        pytest.param(
            {"ingress": [_ingress(80, "HTTP", "http", POOL)]}, {80: 1024}, id="single port with settings"
        ),
        pytest.param(
            {"inboundConnectionPool": POOL}, {22: 1024, 80: 1024, 443: 1024}, id="top level settings"
        ),
        pytest.param(
            {"inboundConnectionPool": POOL, "ingress": [_ingress(80, "HTTP", "http", OVERRIDE)]},
            {80: 1},
            id="port settings override top level",
        ),
    ],
)
def test_inbound_connection_pool_for_port(spec: dict[str, Any], want: dict[int, int | None]) -> None:
    """istiod asks the scope about ports 22, 80 and 443 whatever the listeners; here the inbound clusters
    that exist answer: the Service's three ports, or, with ingress listeners, those listeners' ports."""
    assert _inbound_pools(spec) == want


def test_inbound_connection_pool_top_level_applies_to_every_ingress_port() -> None:
    """ "port settings override top level", on a port of its own: 443 without a pool of its own takes the
    Sidecar's inboundConnectionPool."""
    spec = {
        "inboundConnectionPool": POOL,
        "ingress": [_ingress(80, "HTTP", "http", OVERRIDE), _ingress(443, "HTTPS", "https")],
    }
    assert _inbound_pools(spec) == {80: 1, 443: 1024}


# --- TestComputeWildcardHostVirtualServiceIndex ---------------------------------------------------------

OLDEST, OLDER, OLDER_30M, NEWER = (
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00Z",
    "2024-01-01T01:30:00Z",
    "2024-01-01T02:00:00Z",
)


def _vs_to(name: str, host: str, created: str) -> str:
    return net("VirtualService", name, "default", {
        "hosts": [host], "http": [{"route": [{"destination": {"host": f"to-{name}.internal"}}]}]}, created)  # fmt: skip


WILDCARD_VS = (
    _vs_to("foo", "foo.example.com", NEWER),
    _vs_to("foo2", "foo.example.com", OLDER_30M),
    _vs_to("wild", "*.example.com", OLDER),
    _vs_to("barwild", "*.bar.example.com", OLDEST),
    _vs_to("barwild2", "*.bar.example.com", OLDER),
    service_entry("targets", "default", [f"to-{n}.internal" for n in ("foo", "foo2", "wild", "barwild", "barwild2")], 80),
    service_entry("services", "default", ["foo.example.com", "baz.example.com", "qux.bar.example.com"], 80),
    service_entry("wildcard", "default", ["*.bar.example.com"], 80, resolution="NONE"),
)  # fmt: skip


@pytest.mark.parametrize(
    ("service_host", "vs"),
    [
        # istiod's test hands the list unsorted and gets `foo`; its callers sort by creation time, so the
        # older `foo2` wins among the two exact VirtualServices.
        ("foo.example.com", "foo2"),
        ("baz.example.com", "wild"),
        ("qux.bar.example.com", "barwild"),  # the most specific wildcard, its oldest VirtualService
        ("*.bar.example.com", "barwild"),
    ],
)
def test_compute_wildcard_host_virtual_service_index(service_host: str, vs: str) -> None:
    snap = build(*WILDCARD_VS)
    table = route_table(snap, proxy_in("default"))
    found = [vh for vh in table["virtual_hosts"] if service_host in vh.get("domains", ())]
    assert found, [vh["domains"] for vh in table["virtual_hosts"]]
    routed = {
        r["route"]["cluster"]
        for r in found[0]["routes"]
        if "route" in r and "connect_matcher" not in r["match"]
    }
    assert routed == {f"outbound|80||to-{vs}.internal"}
