"""Host-name algebra, label validation and label selection as istiod has them.

Sources (istio/istio):
- `pkg/config/host/name_test.go`: TestNameMatches, TestNameSubsetOf;
- `pkg/config/host/names_test.go`: TestNamesIntersection, TestNamesForNamespace; TestNamesSortOrder and
  TestMoreSpecific as istiod uses them, to pick the most specific DestinationRule host for a service
  (MostSpecificHostMatch, for plain and wildcarded service hosts);
- `pkg/config/labels/instance_test.go`: TestInstance (SubsetOf and Match), TestInstanceValidate;
- `pilot/pkg/model/service_test.go`: TestGetByPort, TestParseSubsetKey, TestIsValidSubsetKey,
  TestParseSubsetKeyHostname (with BuildSubsetKey / BuildDNSSrvSubsetKey, the names they parse).

Where a user can see the behaviour, the case goes through the YAML they would apply: label validation
through `load_text` (a DestinationRule subset's labels, a VirtualService's `sourceLabels`, a
WorkloadEntry's labels, a Service's metadata), SubsetOf through the endpoints of DestinationRule subsets,
Match through the endpoints a Kubernetes Service selects, Intersection / NamesForNamespace / Matches
through the virtual hosts of a gateway's route table, the most specific host through the
DestinationRule a cluster takes its policy from, subset keys through generated cluster names. The
pure host-algebra tables are also run on the functions themselves (both copies: the model's
`isthmus.model.hosts` and validation's `host_matches` / `host_subset_of`). Cases already in
`test_hosts.py` are not repeated.

Not ported, with the reason:
- MatchesSingleLabel (TestNameMatches' second column): Isthmus has no single-label matching (it is
  istiod's Gateway API / ambient hostname matching);
- the rest of TestNamesSortOrder and TestMoreSpecific (the order of unrelated names, alphabetical ties):
  Isthmus keeps no `host.Names` sort, and wildcards that all cover one host never tie;
- TestString and TestIsClusterName (`labels.Instance.String`, cluster names): no equivalent in Isthmus
  (one cluster; selectors print as Kubernetes' `SelectorFromSet`);
- the `_.`-form (SNI) cases of TestParseSubsetKey: Isthmus builds SNI names but never parses them;
- TestWorkloadInstanceEqual, TestServicesEqual, TestFuzzServiceDeepCopy, TestGetAllAddresses:
  Go struct equality / copying / dual-stack address selection with no counterpart here;
- `pkg/config/visibility` has no tests in Istio (exportTo is covered by test_hosts.py and
  test_istio_validation_more.py's Test_validateExportTo).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from isthmus.api.validation.common import host_matches, host_subset_of
from isthmus.model import hosts as h
from isthmus.model.gateways import hosts_for_namespace, normalize_server_host
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.routes import _intersect

# The generator tests' and the validation tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from gen_helpers import PODS, clusters, generate, sidecar, snapshot
from istio_verdicts import assert_verdict

MATCHES: list[Callable[[str, str], bool]] = [h.matches, host_matches]
SUBSET_OF: list[Callable[[str, str], bool]] = [h.subset_of, host_subset_of]


def doc(kind: str, name: str, namespace: str, spec: str, api: str = "networking.istio.io/v1") -> str:
    return (
        f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
        + "\n"
    )


# ==================================================================================================
# name_test.go: TestNameMatches (the cases test_hosts.py does not already have)


@pytest.mark.parametrize("fn", MATCHES, ids=["model", "validation"])
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", True),  # empty
        ("", "foo.com", False),  # first empty
        ("foo.com", "", False),  # second empty
        ("bar.com", "foo.com", False),  # non-wildcard domain
        ("bar.foo.com", "foo.com", False),  # domain does not match subdomain
        ("foo.com", "bar.foo.com", False),  # ... order doesn't matter
        ("foo.com", "*.com", True),  # wildcard matches subdomains
        ("*.foo.com", "bar.foo.com", True),
        ("*", "com", True),  # wildcard matches anything
        ("*", "*", True),
        ("*", "", True),
        ("*.com", "*.foo.com", True),  # wildcarded domain matches wildcarded subdomain
        ("foo.com", "*.foo.com", False),  # wildcarded sub-domain does not match domain
        ("*.foo.bar.baz", "baz", False),  # long wildcard does not match short host
        ("baz", "*.foo.bar.baz", False),  # ... order doesn't matter
        ("*.foo.bar.baz", "*.baz", True),  # long wildcard matches short wildcard
        ("foo.bar.baz", "*.baz", True),  # long name matches short wildcard
    ],
)
def test_name_matches(fn: Callable[[str, str], bool], a: str, b: str, expected: bool) -> None:
    assert fn(a, b) is expected
    assert fn(b, a) is expected  # Matches is symmetric in every one of Istio's cases


# ==================================================================================================
# name_test.go: TestNameSubsetOf


@pytest.mark.parametrize("fn", SUBSET_OF, ids=["model", "validation"])
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", True),  # empty
        ("", "foo.com", False),  # first empty
        ("foo.com", "", False),  # second empty
        ("bar.com", "foo.com", False),  # non-wildcard domain
        ("foo.com", "bar.com", False),
        ("bar.foo.com", "foo.com", False),  # domain does not match subdomain
        ("foo.com", "bar.foo.com", False),
        ("bar.com", "*.com", True),  # wildcard matches subdomains
        ("bar.foo.com", "*.foo.com", True),
        ("foo.com", "*", True),  # wildcard matches anything
        ("*.com", "*", True),
        ("com", "*", True),
        ("*", "*", True),
        ("", "*", True),
        ("*.foo.com", "foo.com", False),  # wildcarded sub-domain does not match domain
        ("*.foo.bar.baz", "baz", False),  # long wildcard does not match short host
        ("foo.bar.baz", "*.baz", True),  # long name matches short wildcard
    ],
)
def test_name_subset_of(fn: Callable[[str, str], bool], a: str, b: str, expected: bool) -> None:
    assert fn(a, b) is expected


# ==================================================================================================
# names_test.go: TestNamesIntersection, on the intersection a gateway's virtual hosts come from

INTERSECTION = [
    (["foo,com"], ["bar.com"], []),
    (["foo.com", "bar.com"], ["bar.com"], ["bar.com"]),
    (["foo.com", "bar.com"], ["*.com"], ["foo.com", "bar.com"]),
    (["*.com"], ["foo.com", "bar.com"], ["foo.com", "bar.com"]),
    (["foo.com", "*.net"], ["*.com", "bar.net"], ["foo.com", "bar.net"]),
    (["foo.com", "*.net"], ["*.bar.net"], ["*.bar.net"]),
    (["foo.com", "bar.net"], ["*"], ["foo.com", "bar.net"]),
    (["foo.com"], [], []),
    ([], ["bar.com"], []),
    (["*", "foo.com"], ["foo.com"], ["foo.com"]),
    (["*"], ["foo.com"], ["foo.com"]),
    (["foo.com"], ["Foo.com"], []),  # names compare case-sensitively
]


@pytest.mark.parametrize(("a", "b", "expected"), INTERSECTION)
def test_names_intersection(a: list[str], b: list[str], expected: list[str]) -> None:
    assert _intersect(a, b) == expected


GW_LABELS = {"istio": "ingressgateway"}
GW_POD = Pod("gw-0", "istio-system", "127.7.0.9", GW_LABELS, workload="gw", gateway=True)


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


def gateway_domains(server_hosts: list[str], vs_hosts: list[str], vs_namespace: str = "default") -> list[str]:
    """The domains of the virtual hosts on the gateway's port-80 route table, for one server and one
    VirtualService bound to it (none when the only virtual host is the blackhole)."""
    gw = doc(
        "Gateway",
        "gw",
        "istio-system",
        f"""
        selector: {json.dumps(GW_LABELS)}
        servers:
        - port: {{number: 80, name: http, protocol: HTTP}}
          hosts: {json.dumps(server_hosts)}
        """,
    )
    vs = doc(
        "VirtualService",
        "vs",
        vs_namespace,
        f"""
        hosts: {json.dumps(vs_hosts)}
        gateways: [istio-system/gw]
        http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]
        """,
    )
    snap = snapshot(gw, vs, pods=[*PODS, GW_POD])
    table = generate(snap, gateway_proxy(), naming.ROUTE_TYPE, {"http.80"})["http.80"]
    domains = [d for vh in table.get("virtual_hosts", []) for d in vh["domains"]]
    return [] if domains == ["*"] and table["virtual_hosts"][0]["name"].startswith("blackhole") else domains


@pytest.mark.parametrize(
    ("server_hosts", "vs_hosts", "expected"),
    [
        (["foo.com", "bar.com"], ["bar.com"], ["bar.com"]),
        (["foo.com", "bar.com"], ["*.com"], ["bar.com", "foo.com"]),
        (["*.com"], ["foo.com", "bar.com"], ["bar.com", "foo.com"]),
        (["foo.com", "*.net"], ["*.com", "bar.net"], ["bar.net", "foo.com"]),
        (["foo.com", "*.net"], ["*.bar.net"], ["*.bar.net"]),
        (["foo.com", "bar.net"], ["*"], ["bar.net", "foo.com"]),
        (["*", "foo.com"], ["foo.com"], ["foo.com"]),
        (["*"], ["foo.com"], ["foo.com"]),
        (["foo.com"], ["bar.com"], []),
        # TestNameMatches through the binding: a wildcard sub-domain does not cover its domain
        (["*.foo.com"], ["foo.com"], []),
        (["*.foo.com"], ["bar.foo.com"], ["bar.foo.com"]),
        (["*.com"], ["*.foo.com"], ["*.foo.com"]),
        (["*.foo.bar.baz"], ["*.baz"], ["*.foo.bar.baz"]),
    ],
)
def test_gateway_virtual_hosts_are_the_intersection(
    server_hosts: list[str], vs_hosts: list[str], expected: list[str]
) -> None:
    assert sorted(gateway_domains(server_hosts, vs_hosts)) == expected


# ==================================================================================================
# names_test.go: TestNamesForNamespace (gateway server hosts `ns/host`, `*/host` or plain `host`)

FOR_NAMESPACE = [
    (["ns1/foo.com", "ns2/bar.com"], "ns1", ["foo.com"]),
    (["ns1/foo.com", "ns2/bar.com"], "ns3", []),
    (["ns1/foo.com", "*/bar.com"], "ns1", ["foo.com", "bar.com"]),
    (["ns1/foo.com", "*/bar.com"], "ns3", ["bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns2", ["foo.com", "bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns3", ["foo.com"]),
]


@pytest.mark.parametrize(("server_hosts", "namespace", "expected"), FOR_NAMESPACE)
def test_names_for_namespace(server_hosts: list[str], namespace: str, expected: list[str]) -> None:
    normalized = [normalize_server_host(x, "istio-system") for x in server_hosts]
    assert hosts_for_namespace(normalized, namespace) == expected


@pytest.mark.parametrize(("server_hosts", "namespace", "expected"), FOR_NAMESPACE)
def test_names_for_namespace_decide_gateway_virtual_hosts(
    server_hosts: list[str], namespace: str, expected: list[str]
) -> None:
    """A VirtualService of `namespace` asking for both names gets a virtual host for those of the
    server's hosts its namespace may use."""
    assert sorted(gateway_domains(server_hosts, ["foo.com", "bar.com"], namespace)) == sorted(expected)


# ==================================================================================================
# names_test.go: TestMoreSpecific, as istiod uses it: of the DestinationRules whose hosts cover a
# service, the exact host wins, else the longest (most specific) wildcard.

DR_SE = doc(
    "ServiceEntry",
    "se",
    "default",
    """
    hosts: [test.example.com]
    location: MESH_INTERNAL
    ports: [{number: 80, name: http, protocol: HTTP}]
    resolution: STATIC
    endpoints: [{address: 10.9.0.1}]
    """,
)


def dr(name: str, host: str, timeout: str) -> str:
    return doc(
        "DestinationRule",
        name,
        "default",
        f"host: '{host}'\ntrafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: {timeout}}}}}}}",
    )


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([("com", "*.com", "1s"), ("example", "*.example.com", "2s")], "2s"),
        ([("example", "*.example.com", "2s"), ("com", "*.com", "1s")], "2s"),
        (
            [("com", "*.com", "1s"), ("example", "*.example.com", "2s"), ("exact", "test.example.com", "3s")],
            "3s",
        ),
        ([("all", "*", "4s"), ("com", "*.com", "1s")], "1s"),
        # a longer wildcard that does not cover the host is no candidate
        ([("com", "*.com", "1s"), ("other", "*.example.co.in", "5s")], "1s"),
    ],
)
def test_most_specific_destination_rule_host_wins(rules: list[tuple[str, str, str]], expected: str) -> None:
    snap = snapshot(DR_SE, *(dr(*r) for r in rules))
    cluster = clusters(snap, sidecar())["outbound|80||test.example.com"]
    assert cluster["connect_timeout"] == expected


WILDCARD_SE = doc(
    "ServiceEntry",
    "wse",
    "default",
    """
    hosts: ['*.foo.com']
    ports: [{number: 80, name: http, protocol: HTTP}]
    resolution: NONE
    """,
)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([("com", "*.com", "1s"), ("foo", "*.foo.com", "2s")], "2s"),  # the same wildcard, exactly
        ([("all", "*", "4s"), ("com", "*.com", "1s")], "1s"),  # else the longest covering wildcard
        ([("all", "*", "4s")], "4s"),
        # a narrower wildcard does not cover the wider service host
        ([("bar", "*.bar.foo.com", "6s"), ("com", "*.com", "1s")], "1s"),
    ],
)
def test_most_specific_destination_rule_for_a_wildcard_service(
    rules: list[tuple[str, str, str]], expected: str
) -> None:
    """MostSpecificHostMatch with a wildcarded needle (a ServiceEntry host `*.foo.com`)."""
    snap = snapshot(WILDCARD_SE, *(dr(*r) for r in rules))
    assert clusters(snap, sidecar())["outbound|80||*.foo.com"]["connect_timeout"] == expected


@pytest.mark.parametrize(
    ("needle", "candidates", "expected"),
    [
        ("*.foo.com", ["*.com", "*.foo.com", "*"], "*.foo.com"),
        ("*.foo.com", ["*", "*.com"], "*.com"),
        ("*.foo.com", ["*.bar.foo.com", "foo.com"], None),
        ("*", ["*.com", "*"], "*"),
        ("*", ["*.com"], None),
        ("test.example.co.in", ["*.co.in", "*.example.co.in", "*.example.com"], "*.example.co.in"),
    ],
)
def test_most_specific_match_wildcard_needles(
    needle: str, candidates: list[str], expected: str | None
) -> None:
    assert h.most_specific_match(needle, candidates) == expected


# ==================================================================================================
# instance_test.go: TestInstanceValidate, as the labels of a DestinationRule subset


def subset_labels_dr(labels: dict[str, str]) -> str:
    return doc(
        "DestinationRule",
        "foo",
        "bar",
        f"host: reviews\nsubsets:\n- name: v1\n  labels: {json.dumps(labels)}",
    )


LABEL_CASES = [
    ("empty tags", {}, True, None),
    ("bad tag", {"^": "^"}, False, "invalid tag key"),
    ("good tag", {"key": "value"}, True, None),
    ("good tag - empty value", {"key": ""}, True, None),
    ("good tag - DNS prefix", {"k8s.io/key": "value"}, True, None),
    ("good tag - subdomain DNS prefix", {"app.kubernetes.io/name": "value"}, True, None),
    ("bad tag - empty key", {"": "value"}, False, "invalid tag key"),
    ("bad tag key 1", {".key": "value"}, False, "invalid tag key"),
    ("bad tag key 2", {"key_": "value"}, False, "invalid tag key"),
    ("bad tag key 3", {"key$": "value"}, False, "invalid tag key"),
    ("bad tag key - invalid DNS prefix", {"istio./key": "value"}, False, "invalid tag key"),
    ("bad tag value 1", {"key": ".value"}, False, "invalid tag value"),
    ("bad tag value 2", {"key": "value_"}, False, "invalid tag value"),
    ("bad tag value 3", {"key": "value$"}, False, "invalid tag value"),
    # From validateTagKey and the label regexps in instance.go (no test of their own in Istio):
    ("name part of 63", {"x" * 63: "v"}, True, None),
    ("name part too long", {"k8s.io/" + "x" * 64: "v"}, False, "name is too long"),
    ("DNS prefix of 253", {"a" * 253 + "/key": "v"}, True, None),
    ("DNS prefix too long", {"a" * 254 + "/key": "v"}, False, "DNS prefix is too long"),
    ("two slashes", {"a/b/key": "v"}, False, "invalid tag key"),
    ("upper case prefix", {"K8S.io/Key": "Value"}, True, None),
    ("value has no length bound", {"key": "v" * 64}, True, None),
    ("key ending in a newline", {"key\n": "v"}, False, "invalid tag key"),
    ("value ending in a newline", {"key": "value\n"}, False, "invalid tag value"),
]


@pytest.mark.parametrize(
    ("name", "labels", "valid", "fragment"), LABEL_CASES, ids=[c[0] for c in LABEL_CASES]
)
def test_subset_label_validation(
    name: str, labels: dict[str, str], valid: bool, fragment: str | None
) -> None:
    assert_verdict(name, subset_labels_dr(labels), valid, fragment)


@pytest.mark.parametrize(
    ("labels", "valid"),
    [
        ({"key": "value"}, True),
        ({"key_": "value"}, False),
        ({"key": "value\n"}, False),
        ({"key": "v" * 64}, True),
    ],
)
def test_source_labels_and_workload_entry_labels_validate_alike(labels: dict[str, str], valid: bool) -> None:
    vs = doc(
        "VirtualService",
        "foo",
        "bar",
        f"hosts: [foo.bar]\nhttp: [{{match: [{{sourceLabels: {json.dumps(labels)}}}], route: [{{destination: {{host: foo.baz}}}}]}}]",
    )
    we = doc("WorkloadEntry", "foo", "bar", f"address: 10.0.0.1\nlabels: {json.dumps(labels)}")
    assert_verdict("sourceLabels", vs, valid, None if valid else "invalid tag")
    assert_verdict("WorkloadEntry labels", we, valid, None if valid else "invalid tag")


@pytest.mark.parametrize(
    ("labels", "valid"),
    [
        ({"app": "web"}, True),
        ({"app": "web\n"}, False),
        ({"app\n": "web"}, False),
        ({"app": "v" * 64}, False),
    ],
)
def test_kubernetes_metadata_labels(labels: dict[str, str], valid: bool) -> None:
    """An object's own labels are Kubernetes labels: a value is bounded to 63 characters, and a final
    newline is refused as the API server refuses it."""
    svc = (
        "apiVersion: v1\nkind: Service\n"
        f"metadata: {{name: foo, namespace: bar, labels: {json.dumps(labels)}}}\n"
        "spec: {selector: {app: foo}, ports: [{name: http, port: 80}]}\n"
    )
    assert_verdict("metadata labels", svc, valid)


# ==================================================================================================
# instance_test.go: TestInstance. SubsetOf is how a DestinationRule subset picks endpoints (the subset's
# labels, left, within the endpoint's, right); Match is how a Service picks workloads (SubsetOf, but an
# empty selector picks nothing).

SUBSET_HOST = "labels.example.com"
ENDPOINTS = {
    "10.8.0.1": {},
    "10.8.0.2": {"app": "a"},
    "10.8.0.3": {"app": "a", "prod": "env"},
    "10.8.0.4": {"app": "b", "prod": "env"},
    "10.8.0.5": {"app": "a", "foo": ""},
    "10.8.0.6": {"foo": ""},
}
SUBSETS = {
    "none": None,
    "empty": {},
    "app-a": {"app": "a"},
    "app-a-prod": {"app": "a", "prod": "env"},
    "foo": {"foo": ""},
    "app-a-foo": {"app": "a", "foo": ""},
}


def subset_of_snapshot() -> Any:
    endpoints = "\n".join(
        f"- {{address: {ip}" + (f", labels: {json.dumps(lbl)}" if lbl else "") + "}"
        for ip, lbl in ENDPOINTS.items()
    )
    se = doc(
        "ServiceEntry",
        "labels",
        "default",
        f"hosts: [{SUBSET_HOST}]\nlocation: MESH_INTERNAL\nports: [{{number: 80, name: http, protocol: HTTP}}]\n"
        f"resolution: STATIC\nendpoints:\n{endpoints}",
    )
    subsets = "\n".join(
        f"- {{name: {name}" + (f", labels: {json.dumps(lbl)}" if lbl is not None else "") + "}"
        for name, lbl in SUBSETS.items()
    )
    rule = doc("DestinationRule", "labels", "default", f"host: {SUBSET_HOST}\nsubsets:\n{subsets}")
    return snapshot(se, rule)


def endpoint_ips(snap: Any, proxy: Proxy, cluster: str) -> list[str]:
    cla = generate(snap, proxy, naming.ENDPOINT_TYPE, {cluster}).get(cluster, {})
    return sorted(
        lb["endpoint"]["address"]["socket_address"]["address"]
        for group in cla.get("endpoints", [])
        for lb in group["lb_endpoints"]
    )


@pytest.mark.parametrize(
    ("subset", "expected"),
    [
        # nil / empty left: a subset of every label set, the unlabelled endpoint's included
        ("none", sorted(ENDPOINTS)),
        ("empty", sorted(ENDPOINTS)),
        # {app: a} is not within nil, nor within {app: b, prod: env}
        ("app-a", ["10.8.0.2", "10.8.0.3", "10.8.0.5"]),
        # {app: a, prod: env} is not within {app: a}
        ("app-a-prod", ["10.8.0.3"]),
        # {foo: ""} needs the key: not within {app: a}, within {app: a, foo: ""}
        ("foo", ["10.8.0.5", "10.8.0.6"]),
        # {app: a, foo: ""} is not within {foo: ""}
        ("app-a-foo", ["10.8.0.5"]),
    ],
)
def test_subset_labels_select_endpoints_as_subset_of(subset: str, expected: list[str]) -> None:
    cluster = naming.outbound_cluster(80, subset, SUBSET_HOST)
    assert endpoint_ips(subset_of_snapshot(), sidecar(), cluster) == expected


MATCH_PODS = [
    Pod("p1", "lbl", "127.8.0.1", {"app": "a"}, workload="p1"),
    Pod("p2", "lbl", "127.8.0.2", {"app": "a", "prod": "env"}, workload="p2"),
    Pod("p3", "lbl", "127.8.0.3", {"app": "b", "prod": "env"}, workload="p3"),
    Pod("p4", "lbl", "127.8.0.4", {"app": "a", "foo": ""}, workload="p4"),
    Pod("p5", "lbl", "127.8.0.5", {"foo": ""}, workload="p5"),
]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, []),  # Match with an empty left is false: a Service without a selector picks no pod
        ({}, []),
        ({"app": "a"}, ["127.8.0.1", "127.8.0.2", "127.8.0.4"]),
        ({"app": "a", "prod": "env"}, ["127.8.0.2"]),
        ({"foo": ""}, ["127.8.0.4", "127.8.0.5"]),
        ({"app": "a", "foo": ""}, ["127.8.0.4"]),
    ],
)
def test_service_selector_matches_workloads(selector: dict[str, str] | None, expected: list[str]) -> None:
    sel = f"selector: {json.dumps(selector)}, " if selector is not None else ""
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: sel, namespace: lbl}\n"
        f"spec: {{{sel}ports: [{{name: http, port: 80}}]}}\n"
    )
    snap = snapshot(svc, pods=[*PODS, *MATCH_PODS])
    assert endpoint_ips(snap, sidecar(), "outbound|80||sel.lbl.svc.cluster.local") == expected


# ==================================================================================================
# service_test.go: TestGetByPort


def test_get_by_port() -> None:
    svc = snapshot().registry.by_host["ratings.other.svc.cluster.local"][0]
    port = svc.port(9080)
    assert port is not None and port.name == "http"
    assert svc.port(88) is None


# ==================================================================================================
# service_test.go: TestParseSubsetKey, TestIsValidSubsetKey, TestParseSubsetKeyHostname


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("outbound|80|v1|example.com", (80, "v1", "example.com")),
        ("outbound|80|subset|hostname", (80, "subset", "hostname")),
        ("outbound|80||hostname", (80, "", "hostname")),  # no subset: still a valid key
        ("outbound|80|subset|", (80, "subset", "")),  # the hostname part is empty
        ("outbound|80|subset||hostname", None),  # five parts
        ("", None),
        ("|||", None),
        ("||||||", None),
    ],
)
def test_parse_subset_key(key: str, expected: tuple[int, str, str] | None) -> None:
    assert naming.parse_outbound_cluster(key) == expected


def test_build_subset_keys_round_trip() -> None:
    assert naming.outbound_cluster(80, "v1", "example.com") == "outbound|80|v1|example.com"
    assert naming.parse_outbound_cluster(naming.outbound_cluster(80, "v1", "example.com")) == (
        80,
        "v1",
        "example.com",
    )
    assert naming.outbound_sni(8080, "v1", "foo.example.org") == "outbound_.8080_.v1_.foo.example.org"
    assert naming.outbound_sni(80, "", "test.local") == "outbound_.80_._.test.local"


def test_subset_keys_name_the_generated_clusters() -> None:
    """A subset of a DestinationRule yields the cluster `outbound|<port>|<subset>|<host>`, and its
    ISTIO_MUTUAL SNI is the `outbound_.` form of the same key."""
    rule = doc(
        "DestinationRule",
        "reviews",
        "default",
        """
        host: reviews
        trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
        subsets: [{name: v1, labels: {version: v1}}]
        """,
    )
    out = clusters(snapshot(rule), sidecar())
    name = "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert name in out
    assert naming.parse_outbound_cluster(name) == (9080, "v1", "reviews.default.svc.cluster.local")
    assert "outbound_.9080_.v1_.reviews.default.svc.cluster.local" in json.dumps(out[name])
    assert endpoint_ips(snapshot(rule), sidecar(), name) == ["127.7.0.2"]


# ==================================================================================================
# labels.IsDNS1123Label / IsWildcardDNS1123Label (instance.go, no test of their own in Istio), where a
# user reaches them: the labels of a VirtualService host, an exportTo namespace, a gateway name.


def vs_with(hosts: list[str], extra: str = "") -> str:
    return doc(
        "VirtualService",
        "foo",
        "bar",
        f"hosts: {json.dumps(hosts)}\nhttp: [{{route: [{{destination: {{host: foo.baz}}}}]}}]\n{extra}",
    )


@pytest.mark.parametrize(
    ("name", "text", "valid", "fragment"),
    [
        ("upper-case host label", vs_with(["Foo.Example.com"]), True, None),
        ("wildcard host", vs_with(["*.example.com"]), True, None),
        ("host ending in a newline", vs_with(["foo.com\n"]), False, "invalid"),
        ("wildcard host ending in a newline", vs_with(["*.foo.com\n"]), False, "invalid"),
        ("63-character host label", vs_with(["x" * 63 + ".com"]), True, None),
        ("64-character host label", vs_with(["x" * 64 + ".com"]), False, "invalid"),
        ("exportTo namespace", vs_with(["foo.com"], "exportTo: [ns1]"), True, None),
        (
            "exportTo namespace ending in a newline",
            vs_with(["foo.com"], 'exportTo: ["ns1\\n"]'),
            False,
            "exportTo",
        ),
        (
            "gateway name ending in a newline",
            vs_with(["foo.com"], 'gateways: ["ns/gw\\n"]'),
            False,
            "gateway name",
        ),
    ],
)
def test_dns1123_labels_in_names(name: str, text: str, valid: bool, fragment: str | None) -> None:
    assert_verdict(name, text, valid, fragment)
