"""Parity with istiod's `pilot/pkg/model/push_context_test.go` on config visibility and merging.

Ported: TestSetDestinationRuleWithExportTo, TestSetDestinationRuleMerging,
TestSetDestinationRuleWithWorkloadSelector, TestServiceWithExportTo, TestIsServiceVisible,
TestVirtualServiceWithExportTo, and MeshConfig's defaultDestinationRuleExportTo (initDefaultExportMaps).
Each case is the Istio YAML a user would apply, checked on the Envoy clusters generated for a proxy: the
subset clusters and the circuit-breaker / outlier settings show which DestinationRule applied. Istio's
registry-less test services become ServiceEntries in the service's namespace.

Departures by design:
- istiod's tests hand exportTo lists such as `[test1, test2, "*"]` straight to the push context; the API
  validation (Istio's and ours) refuses `*` beside other values, so those cases use `["*"]`.
- istiod's tests order rules by their position in the list (no creation times); here creation times
  (or, when equal, names, as sortConfigByCreationTime does) give the same order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from isthmus.model.snapshot import Snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, sidecar, snapshot

HTTPBIN = "httpbin.org"
T0 = "2024-01-01T00:00:00Z"


def _doc(kind: str, name: str, ns: str, spec: dict[str, Any], created: str | None = None) -> str:
    api = "isthmus.dev/v1alpha1" if kind == "MeshConfig" else "networking.istio.io/v1"
    meta: dict[str, Any] = {"name": name} if kind == "MeshConfig" else {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec})


def dr(
    name: str,
    ns: str,
    host: str = HTTPBIN,
    subsets: tuple[str, ...] = (),
    export_to: list[str] | None = None,
    selector: dict[str, str] | None = None,
    policy: dict[str, Any] | None = None,
    created: str | None = None,
) -> str:
    spec: dict[str, Any] = {"host": host}
    if subsets:
        spec["subsets"] = [{"name": s, "labels": {"subset": s}} for s in subsets]
    if export_to is not None:
        spec["exportTo"] = export_to
    if selector is not None:
        spec["workloadSelector"] = {"matchLabels": selector}
    if policy is not None:
        spec["trafficPolicy"] = policy
    return _doc("DestinationRule", name, ns, spec, created)


def service_entry(ns: str, host: str = HTTPBIN, export_to: list[str] | None = None) -> str:
    spec: dict[str, Any] = {
        "hosts": [host],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}],
        "endpoints": [{"address": "10.0.0.1", "labels": {"subset": "x"}}],
    }
    if export_to is not None:
        spec["exportTo"] = export_to
    return _doc("ServiceEntry", f"se-{host.replace('.', '-')}", ns, spec)


def mesh(**spec: Any) -> str:
    return _doc("MeshConfig", "mesh", "", spec)


def build(*docs: str) -> Snapshot:
    return snapshot(*docs, pods=[], services=False)


def proxy(ns: str, labels: dict[str, str] | None = None) -> Any:
    return sidecar(name="app-0", namespace=ns, labels=labels if labels is not None else {"app": "other"})


def outbound(snap: Snapshot, ns: str, host: str = HTTPBIN, labels: dict[str, str] | None = None) -> dict:
    """subset name ("" for the default cluster) -> the proxy's outbound cluster on port 80 of `host`."""
    prefix = "outbound|80|"
    return {
        name[len(prefix) :].rsplit("|", 1)[0]: c
        for name, c in clusters(snap, proxy(ns, labels)).items()
        if name.startswith(prefix) and name.endswith(f"|{host}")
    }


def subsets_seen(snap: Snapshot, ns: str, host: str = HTTPBIN, labels: dict[str, str] | None = None) -> set:
    return set(outbound(snap, ns, host, labels)) - {""}


# --- TestSetDestinationRuleWithExportTo -----------------------------------------------------------

EXPORT_TO_RULES = (
    dr("rule1", "test1", subsets=("subset1", "subset2"), export_to=[".", "ns1"]),
    dr("rule2", "test2", subsets=("subset3", "subset4"), export_to=["test2", "ns1", "test1", "newns"]),
    # istiod's exportTo is [test1, test2, "*"]: "*" alone is what validation lets through.
    dr("rule3", "test3", subsets=("subset5", "subset6"), export_to=["*"]),
    dr("rule4-local", "test4", subsets=("subset15", "subset16"), export_to=["test4"]),
    dr("rule4", "istio-system", subsets=("subset7", "subset8")),
    dr("rule1", "istio-system", subsets=("subset9", "subset10"), export_to=["."]),
    dr("rule2", "istio-system", host="*.org", subsets=("subset11", "subset12"), export_to=["."]),
    dr("rule3", "istio-system", host="*.app.org", subsets=("subset13", "subset14"), export_to=["."]),
    dr("rule5", "test5", host="api.test.com", subsets=("subset5-0", "subset5-1"), export_to=["istio-system"]),
    dr("rule6", "test6", host="api.test.com", subsets=("subset6-0", "subset6-1"), export_to=["istio-system"]),
)


@pytest.mark.parametrize(
    ("proxy_ns", "service_ns", "host", "want"),
    [
        ("test1", "test1", HTTPBIN, {"subset1", "subset2"}),
        ("test1", "test2", HTTPBIN, {"subset1", "subset2"}),
        ("test2", "test1", HTTPBIN, {"subset3", "subset4"}),
        ("newns", "test2", HTTPBIN, {"subset3", "subset4"}),
        ("test3", "test1", HTTPBIN, {"subset5", "subset6"}),
        ("test5", "test4", HTTPBIN, {"subset7", "subset8"}),
        ("ns1", "test1", HTTPBIN, {"subset1", "subset2"}),
        ("ns1", "random", HTTPBIN, {"subset7", "subset8"}),
        ("random", "random", HTTPBIN, {"subset7", "subset8"}),
        ("test3", "random", HTTPBIN, {"subset5", "subset6"}),
        ("istio-system", "random", HTTPBIN, {"subset9", "subset10"}),
        ("istio-system", "istio-system", HTTPBIN, {"subset9", "subset10"}),
        ("istio-system", "istio-system", "foo.app.org", {"subset13", "subset14"}),
        # A rule in the service's namespace exported to the root namespace applies to a root proxy.
        ("istio-system", "test5", "api.test.com", {"subset5-0", "subset5-1"}),
        ("istio-system", "test6", "api.test.com", {"subset6-0", "subset6-1"}),
        # Neither the service's nor the proxy's namespace holds the rule: it does not apply.
        ("istio-system", "test7", "api.test.com", set()),
    ],
)
def test_destination_rule_with_export_to(proxy_ns: str, service_ns: str, host: str, want: set) -> None:
    snap = build(*EXPORT_TO_RULES, service_entry(service_ns, host))
    assert subsets_seen(snap, proxy_ns, host) == want


def test_root_namespace_proxy_prefers_service_namespace_rule_over_public_root_rule() -> None:
    # destinationRule's "hack" for gateways in istio-system: a root-namespace proxy looks at the root's
    # private rules only, then the service's namespace, and only then the root's exported (mesh-wide) rules.
    snap = build(
        dr("mesh-wide", "istio-system", host="*.org", subsets=("root",)),
        dr("own", "test5", subsets=("own",)),
        service_entry("test5"),
    )
    assert subsets_seen(snap, "istio-system") == {"own"}
    assert subsets_seen(snap, "other") == {"own"}
    assert subsets_seen(
        build(dr("mesh-wide", "istio-system", host="*.org", subsets=("root",)), service_entry("test5")),
        "istio-system",
    ) == {"root"}


# --- TestSetDestinationRuleMerging ---------------------------------------------------------------


def test_destination_rule_merging_keeps_rules_of_other_export_to_apart() -> None:
    # rule1 and rule2 (no exportTo) merge; rule3, exported to istio-system only, stays a rule of its own
    # (ENABLE_ENHANCED_DESTINATIONRULE_MERGE) and is not seen from its own namespace.
    rules = (
        dr("rule1", "test", subsets=("subset1", "subset2")),
        dr("rule2", "test", subsets=("subset3", "subset4")),
        dr("rule3", "test", subsets=("subset5", "subset6"), export_to=["istio-system"]),
        service_entry("test"),
    )
    snap = build(*rules)
    assert subsets_seen(snap, "test") == {"subset1", "subset2", "subset3", "subset4"}
    assert subsets_seen(snap, "other") == {"subset1", "subset2", "subset3", "subset4"}
    # The root namespace sees both exported rules; SidecarScope.DestinationRule takes the last
    # selector-less one of the host's list.
    assert subsets_seen(snap, "istio-system") == {"subset5", "subset6"}


def test_destination_rule_of_superset_export_to_merges_into_the_narrower_one() -> None:
    # mergeDestinationRule: an incoming rule whose exportTo covers an earlier rule's is merged into it;
    # the comment there says "and also append as a standalone one", but for two selector-less rules the
    # selector check that follows clears that, so istiod keeps only the merged rule, with the earlier
    # rule's exportTo: b's subsets reach ns1, and ns2 sees no rule at all.
    snap = build(
        dr("a", "test", subsets=("a",), export_to=["ns1"], created=T0),
        dr("b", "test", subsets=("b",), export_to=["ns1", "ns2"], created="2024-01-02T00:00:00Z"),
        service_entry("test"),
    )
    assert subsets_seen(snap, "ns1") == {"a", "b"}
    assert subsets_seen(snap, "ns2") == set()


# --- TestSetDestinationRuleWithWorkloadSelector ----------------------------------------------------

APP1_POOL = {"connectionPool": {"tcp": {"connectTimeout": "1s", "maxConnections": 111}}}
APP2_POLICY = {
    "connectionPool": {"http": {"maxRetries": 33}, "tcp": {"connectTimeout": "33s"}},
    "outlierDetection": {"consecutive5xxErrors": 3},
}
T1 = "2024-01-01T00:00:01Z"
SELECTOR_RULES = (
    dr("nsrule1", "test", subsets=("app1",), selector={"app": "app1"}, policy=APP1_POOL, created=T0),
    # nsRule2 and nsRule3: one selector, so they merge.
    *(
        dr(
            f"nsrule{i}",
            "test",
            subsets=(f"app{i}",),
            selector={"app": "app2"},
            policy=APP2_POLICY,
            created=T1,
        )
        for i in (2, 3)
    ),
    # Older than the selector rules, but istiod orders workload-specific rules first, so this one is
    # merged into each of them (its exportTo covers their forced ".") and kept on its own too.
    dr(
        "nsrule4",
        "test",
        subsets=("ns",),
        export_to=[".", "test2"],
        policy=APP2_POLICY,
        created="2023-12-31T23:59:59Z",
    ),
    service_entry("test"),
)


def test_workload_selector_rules_absorb_the_namespace_rule() -> None:
    snap = build(*SELECTOR_RULES)
    app1 = outbound(snap, "test", labels={"app": "app1"})
    assert set(app1) == {"", "app1", "ns"}
    assert app1[""]["circuit_breakers"]["thresholds"][0]["max_connections"] == 111
    assert "outlier_detection" not in app1[""]
    # nsRule2 and nsRule3 (same selector) merged, then nsRule4.
    app2 = outbound(snap, "test", labels={"app": "app2"})
    assert set(app2) == {"", "app2", "app3", "ns"}
    assert app2[""]["outlier_detection"]["consecutive_5xx"] == 3
    # A proxy no selector matches gets nsRule4 alone.
    assert set(outbound(snap, "test")) == {"", "ns"}


def test_workload_selector_rule_is_not_exported() -> None:
    snap = build(*SELECTOR_RULES)
    assert set(outbound(snap, "test2", labels={"app": "app1"})) == {"", "ns"}


def test_namespace_rule_without_dot_export_does_not_merge_into_selector_rules() -> None:
    # exportTo unset is not a superset of the selector rule's forced "." (enhanced merge): no merging.
    snap = build(
        dr("selected", "test", subsets=("app1",), selector={"app": "app1"}),
        dr("all", "test", subsets=("ns",)),
        service_entry("test"),
    )
    assert subsets_seen(snap, "test", labels={"app": "app1"}) == {"app1"}
    assert subsets_seen(snap, "test") == {"ns"}


def test_unmatched_selector_rule_hides_other_namespaces_rules() -> None:
    # The proxy's namespace has a rule for the host, so istiod stops there even though its selector does
    # not match this proxy: the service namespace's rule is not consulted.
    snap = build(
        dr("selected", "client", subsets=("mine",), selector={"app": "app1"}),
        dr("owner", "test", subsets=("owner",)),
        service_entry("test"),
    )
    assert subsets_seen(snap, "client", labels={"app": "app1"}) == {"mine"}
    assert subsets_seen(snap, "client") == set()
    assert subsets_seen(snap, "elsewhere") == {"owner"}


# --- MeshConfig defaultDestinationRuleExportTo (initDefaultExportMaps) -----------------------------


def test_default_destination_rule_export_to_private() -> None:
    snap = build(
        mesh(defaultDestinationRuleExportTo=["."]),
        dr("owner", "test", subsets=("owner",)),
        dr("explicit", "test", host="api.test.com", subsets=("explicit",), export_to=["*"]),
        dr("root", "istio-system", host="*.org", subsets=("root",)),
        service_entry("test"),
        service_entry("test", host="api.test.com"),
        service_entry("test", host="foo.org"),
    )
    assert subsets_seen(snap, "test") == {"owner"}
    assert subsets_seen(snap, "other") == set()
    assert subsets_seen(snap, "other", host="api.test.com") == {"explicit"}
    # The root namespace's rules are private to it too.
    assert subsets_seen(snap, "other", host="foo.org") == set()
    assert subsets_seen(snap, "istio-system", host="foo.org") == {"root"}


# --- TestServiceWithExportTo / TestIsServiceVisible -------------------------------------------------


def _annotated_service(name: str, ns: str, export_to: str | None) -> str:
    annotations = {"networking.istio.io/exportTo": export_to} if export_to is not None else {}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
        }
    )


@pytest.mark.parametrize(
    ("proxy_ns", "want"),
    [
        ("test1", {"svc1", "svc2", "svc3", "svc4"}),
        ("test2", {"svc2", "svc3", "svc4"}),
        ("ns1", {"svc1", "svc2", "svc3", "svc4"}),
        ("random", {"svc3", "svc4"}),
    ],
)
def test_service_with_export_to(proxy_ns: str, want: set) -> None:
    snap = build(
        _annotated_service("svc1", "test1", ".,ns1"),
        _annotated_service("svc2", "test2", "test1,ns1,test2"),
        _annotated_service("svc3", "test3", "*"),  # istiod: test1,*,test2 (refused by validation)
        _annotated_service("svc4", "test4", None),
    )
    seen = {
        name.removeprefix("outbound|80||").split(".")[0]
        for name in clusters(snap, proxy(proxy_ns))
        if name.startswith("outbound|80||")
    }
    assert seen == want


@pytest.mark.parametrize(
    ("default", "service_ns", "export_to", "visible"),
    [
        (["."], "foo", None, True),
        (["."], "bar", None, False),
        (["*"], "bar", None, True),
        (["*"], "foo", ".", True),
        (["*"], "bar", ".", False),
        (["*"], "bar", "*", True),
        (["*"], "bar", "foo", True),
        (["*"], "bar", "baz", False),
        (["*"], "bar", "~", False),
    ],
)
def test_is_service_visible(
    default: list[str], service_ns: str, export_to: str | None, visible: bool
) -> None:
    snap = build(mesh(defaultServiceExportTo=default), _annotated_service("svc", service_ns, export_to))
    assert (f"outbound|80||svc.{service_ns}.svc.cluster.local" in clusters(snap, proxy("foo"))) is visible


# --- TestVirtualServiceWithExportTo ---------------------------------------------------------------


def _vs(name: str, ns: str, host: str, export_to: list[str] | None, gateways: list[str] | None = None) -> str:
    spec: dict[str, Any] = {
        "hosts": [host],
        "http": [{"route": [{"destination": {"host": "dest.zzz.svc.cluster.local"}}]}],
    }
    if export_to is not None:
        spec["exportTo"] = export_to
    if gateways is not None:
        spec["gateways"] = gateways
    return _doc("VirtualService", name, ns, spec)


VS_EXPORT_TO = (
    mesh(rootNamespace="zzz"),
    _vs("rule1", "test1", "rule1.com", [".", "ns1"]),
    _vs("rule2", "test2", "rule2.com", ["test2", "ns1", "test1"]),
    _vs("rule2gw", "test2", "rule2gw.com", ["test2", "ns1", "test1"], ["default/gateway", "mesh"]),
    _vs("rule3", "test3", "rule3.com", ["*"], ["mesh"]),  # istiod: [test1, test2, *]
    _vs("rule3gw", "test3", "rule3gw.com", ["*"], ["default/gateway"]),
    _vs("zzz", "zzz", "rootns.com", None),
)


@pytest.mark.parametrize(
    ("proxy_ns", "mesh_hosts", "gateway_hosts"),
    [
        (
            "test1",
            {"rule1.com", "rule2.com", "rule2gw.com", "rule3.com", "rootns.com"},
            {"rule2gw.com", "rule3gw.com"},
        ),
        ("test2", {"rule2.com", "rule2gw.com", "rule3.com", "rootns.com"}, {"rule2gw.com", "rule3gw.com"}),
        (
            "ns1",
            {"rule1.com", "rule2.com", "rule2gw.com", "rule3.com", "rootns.com"},
            {"rule2gw.com", "rule3gw.com"},
        ),
        ("random", {"rule3.com", "rootns.com"}, {"rule3gw.com"}),
    ],
)
def test_virtual_service_with_export_to(proxy_ns: str, mesh_hosts: set, gateway_hosts: set) -> None:
    snap = build(*VS_EXPORT_TO)
    mesh_vs = snap.scope(proxy(proxy_ns)).virtual_services
    assert {h for vs in mesh_vs for h in vs.hosts} == mesh_hosts
    gateway_vs = snap.virtual_services_for_gateway(proxy_ns, "default/gateway")
    assert {h for vs in gateway_vs for h in vs.hosts} == gateway_hosts
