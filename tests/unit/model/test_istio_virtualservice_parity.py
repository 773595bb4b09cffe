"""Parity with istiod's VirtualService merging and selection tests.

Sources (istio/istio): `pilot/pkg/model/virtualservice_test.go` — TestMergeVirtualServices,
TestMergeHttpRoutes, TestMergeHTTPMatchRequests, TestHasConflict, TestFuzzMergeHttpRoute,
TestFuzzMergeHttpMatchRequest, TestResolveGatewayName, TestSelectVirtualService — with the semantics of
`pilot/pkg/model/virtualservice.go` (mergeVirtualServicesIfNeeded, mergeHTTPRoute(s),
mergeHTTPMatchRequest(s), hasConflict, stringMatchConflict, resolveGatewayName, SelectVirtualServices).

Every case is written as the Istio YAML a user would apply and goes through Isthmus's real path: the
store, `Snapshot.build` (VirtualServiceIndex: short names, delegate merging, ordering) and, for
selection, the Sidecar scope. istiod's Go-level inputs (a bare root HTTPRoute, a list of
HTTPMatchRequests, two HTTPMatchRequests for hasConflict) become a root VirtualService whose one rule
delegates to a delegate VirtualService holding the other side; "conflict" is then observed as the
delegate rule being left out of the merged root, and a merge result as the merged rule's `match`.
Merged rules are compared as their YAML (camelCase, unset fields left out). istiod's test delegates
carry `gateways: [gateway]`, which Istio's validation refuses on a delegate ("delegate virtual service
must have no gateways specified") and merging ignores; they are left out here.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus.model.snapshot import Snapshot

# The generator tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import configs, route_table, sidecar, snapshot, vhost

# Not ported: BenchmarkResolveGatewayName, BenchmarkSelectVirtualServices (benchmarks of Go internals,
# no observable effect); SelectVirtualServices' UseGatewaySemantics branch (Gateway API routes converted
# to VirtualServices; Isthmus has no Gateway API).

T0 = "2024-01-01T00:00:0{}Z"  # creation timestamps: T0.format(n), n = 0..9


# --- building YAML ------------------------------------------------------------------------------


def vs(name: str, ns: str, spec: str, created: int | None = None) -> str:
    meta = f"name: {name}, namespace: {ns}"
    if created is not None:
        meta += f", creationTimestamp: '{T0.format(created)}'"
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{{meta}}}\nspec:\n" + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    )


def build(*docs: str) -> Snapshot:
    return snapshot(*docs, pods=[], services=False)


def dump(model: Any) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)


def merged(snap: Snapshot, ns: str, name: str) -> list[dict[str, Any]]:
    """The http rules of root (or plain) VirtualService ns/name after merging, as YAML dicts."""
    [entry] = [e for e in snap.virtual_services.entries if (e.namespace, e.name) == (ns, name)]
    return [dump(r) for r in entry.http]


def entries(snap: Snapshot) -> list[str]:
    return [f"{e.namespace}/{e.name}" for e in snap.virtual_services.entries]


def y(text: str) -> Any:
    return yaml.safe_load(textwrap.dedent(text))


# --- TestMergeVirtualServices -------------------------------------------------------------------

DEST_EXAMPLE = "{destination: {host: example.org, port: {number: 80}}}"


def dest(subset: str) -> str:
    return f"{{destination: {{host: productpage.org, port: {{number: 80}}, subset: {subset}}}}}"


INDEPENDENT_VS = vs(
    "virtual-service",
    "default",
    f"""
    hosts: [example.org]
    gateways: [gateway]
    http:
    - route: [{DEST_EXAMPLE}]
    """,
)


def root_vs(name: str = "root-vs", ns: str = "istio-system", delegate_ns: str | None = "default") -> str:
    ref = "{name: productpage-vs" + (f", namespace: {delegate_ns}" if delegate_ns else "") + "}"
    return vs(
        name,
        ns,
        f"""
        hosts: ["*.org"]
        gateways: [gateway]
        http:
        - match: [{{uri: {{prefix: /productpage}}}}, {{uri: {{exact: /login}}}}]
          delegate: {ref}
        - route: [{DEST_EXAMPLE}]
        """,
    )


def delegate_vs(ns: str = "default", export_to: list[str] | None = None) -> str:
    """createDelegateVs: /productpage/v1 -> v1, /productpage/v2 -> v2, the rest -> v3."""
    export = f"exportTo: {export_to}\n" if export_to is not None else ""
    return vs(
        "productpage-vs",
        ns,
        export
        + f"""
        http:
        - match: [{{uri: {{prefix: /productpage/v1}}}}]
          route: [{dest("v1")}]
        - match: [{{uri: {{prefix: /productpage/v2}}}}]
          route: [{dest("v2")}]
        - route: [{dest("v3")}]
        """.replace("\n        ", "\n"),
    )


ONE_ROOT = [y(f"route: [{DEST_EXAMPLE}]")]

MERGED_VS = y(
    f"""
    - match: [{{uri: {{prefix: /productpage/v1}}}}]
      route: [{dest("v1")}]
    - match: [{{uri: {{prefix: /productpage/v2}}}}]
      route: [{dest("v2")}]
    - match: [{{uri: {{prefix: /productpage}}}}, {{uri: {{exact: /login}}}}]
      route: [{dest("v3")}]
    - route: [{DEST_EXAMPLE}]
    """
)


def test_merge_one_independent_vs() -> None:
    # TestMergeVirtualServices "one independent vs": a VirtualService without delegates is unchanged.
    snap = build(INDEPENDENT_VS)
    assert entries(snap) == ["default/virtual-service"]
    assert merged(snap, "default", "virtual-service") == [y(f"route: [{DEST_EXAMPLE}]")]


def test_merge_one_root_vs_without_its_delegate() -> None:
    # "one root vs": the delegate is missing, so only that rule is dropped (oneRoot).
    snap = build(root_vs())
    assert entries(snap) == ["istio-system/root-vs"]
    assert merged(snap, "istio-system", "root-vs") == ONE_ROOT


def test_merge_one_delegate_vs() -> None:
    # "one delegate vs": a delegate (no hosts) is never a VirtualService of its own.
    snap = build(delegate_vs(export_to=["istio-system"]))
    assert entries(snap) == []


def test_merge_root_and_delegate_vs() -> None:
    # "root and delegate vs": mergedVs. The delegate's /productpage/v1 and /productpage/v2 prefixes sit
    # under the root's /productpage prefix (but conflict with its exact /login, so that match is not
    # merged); its catch-all rule takes both root matches.
    snap = build(root_vs(), delegate_vs(export_to=["istio-system"]))
    assert entries(snap) == ["istio-system/root-vs"]
    assert merged(snap, "istio-system", "root-vs") == MERGED_VS


def test_merge_root_and_conflicted_delegate_vs() -> None:
    # "root and conflicted delegate vs": a delegate rule whose match conflicts with every root match
    # (/mis-match/path) is left out (mergedVs2).
    delegate = vs(
        "productpage-vs",
        "default",
        f"""
        http:
        - match: [{{uri: {{prefix: /productpage/v1}}}}]
          route: [{dest("v1")}]
        - match: [{{uri: {{prefix: /productpage/v2}}}}]
          route: [{dest("v2")}]
        - match: [{{name: mismatch, uri: {{prefix: /mis-match/path}}}}]
          route: [{dest("v3")}]
        """,
    )
    snap = build(root_vs(), delegate)
    assert merged(snap, "istio-system", "root-vs") == MERGED_VS[:2] + MERGED_VS[3:]


def test_merge_multiple_routes_delegate_to_one() -> None:
    # "multiple routes delegate to one": each root rule gets its own copy of the delegate's rules, with
    # that rule's matches and rewrite (mergedVs3).
    root = vs(
        "root-vs",
        "istio-system",
        """
        hosts: ["*.org"]
        gateways: [gateway]
        http:
        - match: [{uri: {prefix: /productpage}}]
          delegate: {name: productpage-vs, namespace: default}
        - match: [{uri: {prefix: /legacy/path}}]
          rewrite: {uri: /productpage}
          delegate: {name: productpage-vs, namespace: default}
        """,
    )
    single = vs("productpage-vs", "default", f"http:\n- route: [{dest('v1')}]")
    snap = build(root, single)
    assert merged(snap, "istio-system", "root-vs") == y(
        f"""
        - match: [{{uri: {{prefix: /productpage}}}}]
          route: [{dest("v1")}]
        - match: [{{uri: {{prefix: /legacy/path}}}}]
          rewrite: {{uri: /productpage}}
          route: [{dest("v1")}]
        """
    )


MESH_PRIVATE = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultVirtualServiceExportTo: ["."]
"""


@pytest.mark.parametrize("default_export", ["public", "private"])
def test_merge_root_not_specify_delegate_namespace(default_export: str) -> None:
    # "root not specify delegate namespace default public|private": the delegate is looked up in the
    # root's namespace; with the mesh default exportTo "." it is still visible there (private means
    # the delegate's own namespace, which is the root's).
    mesh = (MESH_PRIVATE,) if default_export == "private" else ()
    snap = build(*mesh, root_vs("default-vs", "default", delegate_ns=None), delegate_vs(export_to=[]))
    assert entries(snap) == ["default/default-vs"]
    assert merged(snap, "default", "default-vs") == MERGED_VS


@pytest.mark.parametrize("default_export", ["public", "private"])
def test_merge_delegate_not_exported_to_root_namespace(default_export: str) -> None:
    # "delegate not exported to root vs namespace default public|private": delegateVsNotExported
    # (default2, exportTo ".") is not the delegate the root names (default/productpage-vs), and would
    # not be visible from istio-system anyway: the root keeps only its own rule (oneRoot).
    mesh = (MESH_PRIVATE,) if default_export == "private" else ()
    not_exported = vs(
        "productpage-vs", "default2", "exportTo: ['.']\nhttp:\n- route: [{destination: {host: a.org}}]"
    )
    snap = build(*mesh, root_vs(), not_exported)
    assert merged(snap, "istio-system", "root-vs") == ONE_ROOT


@pytest.mark.parametrize(
    ("export_to", "mesh_private", "visible"),
    [
        (["."], False, False),  # private to default: not the root's istio-system
        (["other"], False, False),
        # ["~"] is refused by validation (as Istio's: "exportTo ~ (none) is not allowed").
        (["istio-system"], False, True),
        (["*"], True, True),
        (None, False, True),  # mesh default "*"
        (None, True, False),  # mesh default ".": the delegate's namespace only
    ],
)
def test_merge_delegate_export_to_in_other_namespace(
    export_to: list[str] | None, mesh_private: bool, visible: bool
) -> None:
    # mergeVirtualServicesIfNeeded's visibility check for a delegate in another namespace: its exportTo
    # ("." meaning its own namespace; unset: the mesh default) must hold "*" or the root's namespace.
    mesh = (MESH_PRIVATE,) if mesh_private else ()
    snap = build(*mesh, root_vs(), delegate_vs(export_to=export_to))
    assert merged(snap, "istio-system", "root-vs") == (MERGED_VS if visible else ONE_ROOT)


@pytest.mark.parametrize("reverse", [False, True])
def test_merge_order(reverse: bool) -> None:
    # "test merge order": merged roots and plain VirtualServices together, oldest first whatever the
    # input order (the root keeps its own creation time); the delegate is not listed.
    docs = [
        root_vs().replace(
            "namespace: istio-system}", f"namespace: istio-system, creationTimestamp: '{T0.format(1)}'}}"
        ),
        delegate_vs(export_to=["istio-system"]).replace(
            "namespace: default}", f"namespace: default, creationTimestamp: '{T0.format(2)}'}}"
        ),
        INDEPENDENT_VS.replace(
            "namespace: default}", f"namespace: default, creationTimestamp: '{T0.format(3)}'}}"
        ),
    ]
    snap = build(*(reversed(docs) if reverse else docs))
    assert entries(snap) == ["istio-system/root-vs", "default/virtual-service"]


# --- TestMergeHttpRoutes ------------------------------------------------------------------------


def merge_routes(root_rule: str, delegate_http: str, ns: str = "default") -> list[dict[str, Any]]:
    """mergeHTTPRoutes(root, delegate): root VS ns/root with the one rule `root_rule` (delegating to
    ns/leaf) and delegate VS ns/leaf with `delegate_http`; the merged rules."""
    root = vs(
        "root",
        ns,
        "hosts: [productpage.org]\nhttp:\n- "
        + textwrap.indent(textwrap.dedent(root_rule).strip("\n"), "  ").lstrip()
        + f"\n  delegate: {{name: leaf, namespace: {ns}}}",
    )
    leaf = vs("leaf", ns, "http:\n" + textwrap.dedent(delegate_http).strip("\n"))
    return merged(build(root, leaf), ns, "root")


V2_MATCHES = """
- uri: {prefix: /productpage/v2}
  headers: {version: {exact: v2}}
- headers: {version: {exact: v2}}
  queryParams: {version: {exact: v2}}
"""


def test_merge_http_routes_root_catch_all() -> None:
    # TestMergeHttpRoutes "root catch all": a root rule without matches keeps the delegate's matches
    # and hands down its timeout and header operations.
    got = merge_routes(
        "timeout: 10s\nheaders: {request: {add: {istio: test}, remove: [trace-id]}}",
        f"""
        - match: [{{uri: {{prefix: /productpage/v1}}, headers: {{version: {{exact: v1}}}}}}]
          route: [{dest("v1")}]
        - match: {y(V2_MATCHES)}
          route: [{dest("v2")}]
        """,
    )
    inherited = {"timeout": "10s", "headers": {"request": {"add": {"istio": "test"}, "remove": ["trace-id"]}}}
    assert got == [
        {
            "match": [y("{uri: {prefix: /productpage/v1}, headers: {version: {exact: v1}}}")],
            "route": [y(dest("v1"))],
        }
        | inherited,
        {"match": y(V2_MATCHES), "route": [y(dest("v2"))]} | inherited,
    ]


def test_merge_http_routes_delegate_with_empty_match() -> None:
    # "delegate with empty match": the root's port goes into every merged match, a match without a uri
    # takes the root's, and the delegate's catch-all rule takes the root's match whole.
    got = merge_routes(
        "match: [{uri: {prefix: /productpage}, port: 8080}]",
        f"""
        - match: [{{uri: {{prefix: /productpage/v1}}, headers: {{version: {{exact: v1}}}}}}]
          route: [{dest("v1")}]
        - match: {y(V2_MATCHES)}
          route: [{dest("v2")}]
        - route: [{dest("v3")}]
        """,
    )
    assert got == y(
        f"""
        - match: [{{uri: {{prefix: /productpage/v1}}, headers: {{version: {{exact: v1}}}}, port: 8080}}]
          route: [{dest("v1")}]
        - match:
          - uri: {{prefix: /productpage/v2}}
            headers: {{version: {{exact: v2}}}}
            port: 8080
          - uri: {{prefix: /productpage}}
            headers: {{version: {{exact: v2}}}}
            queryParams: {{version: {{exact: v2}}}}
            port: 8080
          route: [{dest("v2")}]
        - match: [{{uri: {{prefix: /productpage}}, port: 8080}}]
          route: [{dest("v3")}]
        """
    )


def test_merge_http_routes_delegate_with_mirrors() -> None:
    # "delegate with mirrors": a delegate rule's own mirrors stay; one without takes the root's.
    def mirror(subset: str) -> str:
        return f"{{destination: {{host: productpage-mirror.org, port: {{number: 80}}, subset: {subset}}}}}"

    got = merge_routes(
        f"mirrors: [{mirror('v3')}]",
        f"""
        - match: [{{uri: {{prefix: /productpage/v1}}}}]
          mirrors: [{mirror("v1")}]
          route: [{dest("v1")}]
        - match: [{{uri: {{prefix: /productpage/v2}}}}]
          mirrors: [{mirror("v2")}]
          route: [{dest("v2")}]
        - route: [{dest("v3")}]
        """,
    )
    assert got == y(
        f"""
        - match: [{{uri: {{prefix: /productpage/v1}}}}]
          mirrors: [{mirror("v1")}]
          route: [{dest("v1")}]
        - match: [{{uri: {{prefix: /productpage/v2}}}}]
          mirrors: [{mirror("v2")}]
          route: [{dest("v2")}]
        - mirrors: [{mirror("v3")}]
          route: [{dest("v3")}]
        """
    )


def test_merge_http_routes_multiple_header_merge() -> None:
    # "multiple header merge": one delegate match merges with each of the root's matches.
    got = merge_routes(
        "match: [{headers: {header1: {regex: regex}}}, {headers: {header2: {exact: exact}}}]",
        f"- match: [{{uri: {{prefix: /}}}}]\n  route: [{dest('v1')}]",
    )
    assert [r["match"] for r in got] == [
        y(
            """
            - {uri: {prefix: /}, headers: {header1: {regex: regex}}}
            - {uri: {prefix: /}, headers: {header2: {exact: exact}}}
            """
        )
    ]


def test_merge_http_route_inherits_every_field() -> None:
    # TestFuzzMergeHttpRoute: an empty delegate rule (a route only) ends up with every field the root
    # rule sets: name, rewrite, timeout, retries, fault, mirror, mirrorPercentage, corsPolicy, headers.
    root_rule = """
    name: root
    match: [{uri: {prefix: /a}}]
    rewrite: {uri: /b}
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 1s}
    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
    mirror: {host: mirror.org}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{exact: 'https://a.org'}]}
    headers: {response: {set: {x: y}}}
    """
    [got] = merge_routes(root_rule, f"- route: [{dest('v1')}]")
    expected = y(root_rule) | {"route": [y(dest("v1"))]}
    assert got == expected


def test_merge_http_route_inherits_mirrors() -> None:
    # TestFuzzMergeHttpRoute (mirrors): inherited when the delegate rule leaves them out. (directResponse
    # is inherited too, but validation refuses it beside `delegate` on the root, as Istio's does.)
    root_rule = "mirrors: [{destination: {host: mirror.org}, percentage: {value: 5}}]"
    got = merge_routes(
        root_rule, f"- name: leaf\n  match: [{{uri: {{prefix: /x}}}}]\n  route: [{dest('v1')}]"
    )
    assert got == [
        y(root_rule) | {"name": "leaf", "match": [y("{uri: {prefix: /x}}")], "route": [y(dest("v1"))]}
    ]


def test_merge_http_route_delegate_fields_win() -> None:
    # mergeHTTPRoute: a field the delegate rule sets is kept, not the root's.
    root_rule = (
        "timeout: 3s\nretries: {attempts: 2}\nrewrite: {uri: /root}\nheaders: {request: {set: {a: root}}}"
    )
    leaf = (
        "- timeout: 1s\n  retries: {attempts: 5}\n  rewrite: {uri: /leaf}\n"
        f"  headers: {{request: {{set: {{a: leaf}}}}}}\n  route: [{dest('v1')}]"
    )
    [got] = merge_routes(root_rule, leaf)
    assert (got["timeout"], got["retries"], got["rewrite"], got["headers"]) == (
        "1s",
        {"attempts": 5},
        {"uri": "/leaf"},
        {"request": {"set": {"a": "leaf"}}},
    )


@pytest.mark.parametrize(
    ("root_name", "leaf_name", "expected"),
    [("r", "l", "r-l"), ("r", None, "r"), (None, "l", "l"), (None, None, None)],
)
def test_merge_http_route_names(root_name: str | None, leaf_name: str | None, expected: str | None) -> None:
    # mergeHTTPRoute / mergeHTTPMatchRequest names: root-leaf, else whichever is set (rules and matches).
    def named(n: str | None) -> str:
        return f"name: {n}\n" if n else ""

    root_match = "{uri: {prefix: /a}" + (f", name: {root_name}" if root_name else "") + "}"
    leaf_match = "{uri: {prefix: /a/b}" + (f", name: {leaf_name}" if leaf_name else "") + "}"
    leaf = (
        f"- name: {leaf_name}\n  " if leaf_name else "- "
    ) + f"match: [{leaf_match}]\n  route: [{dest('v1')}]"
    [got] = merge_routes(named(root_name) + f"match: [{root_match}]", leaf)
    assert got.get("name") == expected
    assert got["match"][0].get("name") == expected


# --- TestMergeHTTPMatchRequests -----------------------------------------------------------------


def merge_matches(root: str, delegate: str | None) -> list[Any] | None:
    """mergeHTTPMatchRequests(root, delegate): the merged rule's matches, None when it conflicts (the
    delegate rule is dropped). `delegate` None: a delegate rule without matches."""
    leaf = f"- route: [{dest('v1')}]" + (f"\n  match: {delegate}" if delegate is not None else "")
    got = merge_routes(f"match: {root}", leaf)
    return got[0].get("match", []) if got else None


MATCH_CASES = [
    # (istiod case name, root matches, delegate matches, expected merged matches or None: conflict)
    ("url match", "[{uri: {prefix: /productpage}}]", "[{uri: {exact: /productpage/v1}}]",
     "[{uri: {exact: /productpage/v1}}]"),
    ("url regex noconflict", "[{uri: {regex: ^/productpage}}]", "[{}]", "[{uri: {regex: ^/productpage}}]"),
    ("url regex conflict", "[{uri: {regex: ^/productpage}}]", "[{uri: {prefix: /productpage}}]", None),
    ("multi url match", "[{uri: {prefix: /productpage}}, {uri: {prefix: /reviews}}]",
     "[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews/v1}}]",
     "[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews/v1}}]"),
    ("url mismatch", "[{uri: {prefix: /productpage}}]", "[{uri: {exact: /reviews}}]", None),
    ("url match, one conflicting", "[{uri: {prefix: /productpage}}]",
     "[{uri: {exact: /productpage/v1}}, {uri: {exact: /reviews}}]", None),
    ("headers", "[{headers: {header: {exact: h1}}}]", "[]", "[{headers: {header: {exact: h1}}}]"),
    ("headers conflict", "[{headers: {header: {exact: h1}}}]", "[{headers: {header: {exact: h2}}}]", None),
    ("headers", "[{headers: {header: {exact: h1}}}]", "[{headers: {header-2: {exact: h2}}}]",
     "[{headers: {header: {exact: h1}, header-2: {exact: h2}}}]"),
    ("complicated merge",
     "[{uri: {prefix: /productpage}, headers: {header: {exact: h1}}, port: 8080, authority: {exact: productpage.com}}]",
     "[{uri: {exact: /productpage/v1}}, {uri: {exact: /productpage/v2}}]",
     "[{uri: {exact: /productpage/v1}, headers: {header: {exact: h1}}, port: 8080, authority: {exact: productpage.com}},"
     " {uri: {exact: /productpage/v2}, headers: {header: {exact: h1}}, port: 8080, authority: {exact: productpage.com}}]"),
    ("conflicted merge",
     "[{uri: {prefix: /productpage}, headers: {header: {exact: h1}}, port: 8080, authority: {exact: productpage.com}}]",
     "[{uri: {exact: /productpage/v1}}, {uri: {exact: /productpage/v2}, port: 9090}]", None),
    ("gateway merge", "[{uri: {prefix: /productpage}, gateways: [ingress-gateway, mesh]}]",
     "[{uri: {exact: /productpage/v1}, gateways: [ingress-gateway]}, {uri: {exact: /productpage/v2}, gateways: [mesh]}]",
     "[{uri: {exact: /productpage/v1}, gateways: [default/ingress-gateway]},"
     " {uri: {exact: /productpage/v2}, gateways: [mesh]}]"),
    ("gateway conflicted merge", "[{uri: {prefix: /productpage}, gateways: [ingress-gateway]}]",
     "[{uri: {exact: /productpage/v1}, gateways: [ingress-gateway]}, {uri: {exact: /productpage/v2}, gateways: [mesh]}]",
     None),
    ("source labels merge", "[{sourceLabels: {app: test}}]", "[{sourceLabels: {version: v1}}]",
     "[{sourceLabels: {app: test, version: v1}}]"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "root", "delegate", "expected"), MATCH_CASES, ids=[c[0] for c in MATCH_CASES]
)
def test_merge_http_match_requests(case: str, root: str, delegate: str, expected: str | None) -> None:
    # TestMergeHTTPMatchRequests. Root and delegate are in one namespace, so a match's short gateway
    # names resolve alike on both sides (istiod resolves them per VirtualService before merging).
    assert merge_matches(root, delegate) == (y(expected) if expected is not None else None), case


def test_merge_http_match_request_keeps_every_root_field() -> None:
    # TestFuzzMergeHttpMatchRequest: an empty delegate match merged with a root match is the root match
    # (sourceNamespace, sourceLabels, gateways and ignoreUriCase left out, as the fuzz test does).
    root = (
        "[{name: m, uri: {exact: fuzz}, scheme: {exact: fuzz}, method: {exact: fuzz},"
        " authority: {exact: fuzz}, headers: {test: {exact: fuzz}}, withoutHeaders: {test: {exact: fuzz}},"
        " queryParams: {test: {exact: fuzz}}, port: 8080, statPrefix: fuzz}]"
    )
    assert merge_matches(root, "[{}]") == y(root)


def test_merge_http_match_request_source_labels_and_gateways_inherited() -> None:
    # mergeHTTPMatchRequest: sourceLabels and gateways come from the root when the delegate has none (a
    # root sourceNamespace is a conflict unless the delegate match names the same one: hasConflict).
    assert merge_matches(
        "[{sourceNamespace: ns1, sourceLabels: {app: a}, gateways: [mesh]}]",
        "[{uri: {prefix: /a}, sourceNamespace: ns1}]",
    ) == y("[{uri: {prefix: /a}, sourceNamespace: ns1, sourceLabels: {app: a}, gateways: [mesh]}]")


def test_merge_match_gateways_resolved_in_own_namespace_before_merging() -> None:
    # resolveVirtualServiceShortnames runs on every VirtualService before mergeVirtualServicesIfNeeded:
    # a delegate's short gateway name means a gateway of its own namespace, so it is not the root's.
    root = vs(
        "root",
        "ns1",
        """
        hosts: [productpage.org]
        http:
        - match: [{uri: {prefix: /p}, gateways: [gw]}]
          delegate: {name: leaf, namespace: ns2}
        """,
    )
    leaf = lambda gw: vs("leaf", "ns2", f"http:\n- match: [{{gateways: [{gw}]}}]\n  route: [{dest('v1')}]")  # noqa: E731
    assert merged(build(root, leaf("gw")), "ns1", "root") == []
    [rule] = merged(build(root, leaf("ns1/gw")), "ns1", "root")
    assert rule["match"] == y("[{uri: {prefix: /p}, gateways: [ns1/gw]}]")


# --- TestHasConflict ----------------------------------------------------------------------------

CONFLICT_CASES = [
    # (istiod case name, root match, leaf match, conflict)
    ("regex uri", "{uri: {regex: ^/productpage}}", "{uri: {prefix: /productpage/v2}}", True),
    ("regex uri in root and delegate does not have uri", "{uri: {regex: ^/productpage}}", "{}", False),
    ("regex uri in delegate and root does not have uri", "{}", "{uri: {regex: ^/productpage}}", False),
    ("regex uri in root and delegate has conflicting uri match", "{uri: {regex: ^/productpage}}",
     "{uri: {prefix: /productpage}}", True),
    ("regex uri in delegate and root has conflicting uri match", "{uri: {prefix: /productpage}}",
     "{uri: {regex: ^/productpage}}", True),
    ("match uri", "{uri: {prefix: /productpage}}", "{uri: {prefix: /productpage/v2}}", False),
    ("mismatch uri", "{uri: {prefix: /productpage/v2}}", "{uri: {prefix: /productpage}}", True),
    ("match uri exact", "{uri: {prefix: /productpage/v2}}", "{uri: {exact: /productpage/v2}}", False),
    ("headers not equal", "{headers: {header: {exact: h1}}}", "{headers: {header: {exact: h2}}}", True),
    ("headers equal", "{headers: {header: {exact: h1}}}", "{headers: {header: {exact: h1}}}", False),
    ("headers match", "{headers: {header: {prefix: h1}}}", "{headers: {header: {exact: h1-v1}}}", False),
    ("headers mismatch", "{headers: {header: {prefix: h1}}}", "{headers: {header: {exact: h2}}}", True),
    ("headers prefix mismatch", "{headers: {header: {prefix: h1}}}", "{headers: {header: {prefix: h2}}}", True),
    ("diff headers", "{headers: {header: {exact: h1}}}", "{headers: {header-2: {exact: h2}}}", False),
    ("withoutHeaders mismatch", "{withoutHeaders: {header: {prefix: h1}}}",
     "{withoutHeaders: {header: {exact: h2}}}", True),
    ("port 0 vs 8080", "{}", "{port: 8080}", False),
    ("port 8080 vs 0", "{port: 8080}", "{}", False),
    ("port 8080 vs 8090", "{port: 8080}", "{port: 8090}", True),
    ("sourceLabels mismatch", "{sourceLabels: {a: b}}", "{sourceLabels: {a: c}}", True),
    ("sourceNamespace mismatch", "{sourceNamespace: test1}", "{sourceNamespace: test2}", True),
    ("root has less gateways than delegate", "{gateways: [ingress-gateway]}",
     "{gateways: [ingress-gateway, mesh]}", True),
    # stringMatchConflict / hasConflict branches the Go table does not list.
    ("exact root, prefix leaf", "{uri: {exact: /a}}", "{uri: {prefix: /a}}", True),
    ("exact root, same exact leaf", "{uri: {exact: /a}}", "{uri: {exact: /a}}", False),
    ("query params mismatch", "{queryParams: {q: {exact: a}}}", "{queryParams: {q: {exact: b}}}", True),
    ("method conflict", "{method: {exact: GET}}", "{method: {exact: POST}}", True),
    ("ignoreUriCase differs", "{uri: {prefix: /a}, ignoreUriCase: true}", "{uri: {prefix: /a/b}}", True),
    ("sourceNamespace in root only", "{sourceNamespace: test1}", "{}", True),
    ("sourceNamespace in leaf only", "{}", "{sourceNamespace: test1}", False),
    ("withoutHeaders vs root headers", "{headers: {header: {exact: h1}}}",
     "{withoutHeaders: {header: {exact: h2}}}", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "root", "leaf", "conflict"), CONFLICT_CASES, ids=[c[0] for c in CONFLICT_CASES]
)
def test_has_conflict(case: str, root: str, leaf: str, conflict: bool) -> None:
    # TestHasConflict: a conflicting delegate match drops the delegate rule from the merged root.
    assert (merge_matches(f"[{root}]", f"[{leaf}]") is None) == conflict, case


# --- TestResolveGatewayName ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gateway", "namespace", "resolved"),
    [
        # ("./gateway", "default"): refused by validation ("invalid value for namespace"), as Istio's.
        ("gateway", "default", "default/gateway"),
        ("default/gateway", "foo", "default/gateway"),
        ("gateway.default", "default", "default/gateway"),
        ("gateway.default", "foo", "default/gateway"),
        ("private.ingress.svc.cluster.local", "foo", "ingress/private"),
    ],
)
def test_resolve_gateway_name(gateway: str, namespace: str, resolved: str) -> None:
    # TestResolveGatewayName, on both a VirtualService's gateways and a rule's match gateways.
    doc = vs(
        "vs",
        namespace,
        f"hosts: [a.org]\ngateways: ['{gateway}']\nhttp:\n- match: [{{gateways: ['{gateway}']}}]\n"
        "  route: [{destination: {host: a.org}}]",
    )
    [entry] = build(doc).virtual_services.entries
    assert entry.gateways == frozenset({resolved})
    assert entry.http[0].match[0].gateways == [resolved]


# --- TestSelectVirtualService -------------------------------------------------------------------

# The services of TestSelectVirtualService, as the hosts a Sidecar imports from each namespace (istiod's
# hostsByNamespace: each service's hostname under its namespace).
SELECT_IMPORTS = [
    "default/bookinfo.com",
    "default/private.com",
    "not-default/test.com",
    "not-default/test-private.com",
    "not-default/test-private-2.com",
    "not-default/test-headless.com",
    "some-other-ns/test-headless-someother.com",
    "default/a.test1.wildcard.com",
    "default/*.test2.wildcard.com",
]


def test_select_virtual_services() -> None:
    # TestSelectVirtualService: a VirtualService of namespace N applies when one of its hosts overlaps
    # (either way: `*.test1.wildcard.com` covers an imported a.test1..., foo.test2... lies in an
    # imported `*.test2...`) a host imported from N. istiod's three `acme-v3` of not-default are named
    # acme-v3/-v5/-v6 here (one store cannot hold three of one name); creation times keep its order.
    def route(port: int) -> str:
        return f"http:\n- route: [{{destination: {{host: test.org, port: {{number: {port}}}}}}}]"

    vses = [
        vs("acme2-v1", "not-default", "hosts: [test-private-2.com]\n" + route(61), created=1),
        vs("acme-v2", "not-default", "hosts: [test-private-2.com]\n" + route(62), created=2),
        vs("acme-v3", "not-default", "hosts: [test-private-3.com]\n" + route(63), created=3),
        vs("acme-v4", "not-default", "hosts: [test-headless.com, example.com]\n" + route(64), created=4),
        vs("acme-v5", "not-default", "hosts: [test-svc.testns.svc.cluster.local]\n" + route(64), created=5),
        vs("acme-v6", "not-default", "hosts: [match-no-service]\n" + route(64), created=6),
        vs("acme2-v1", "some-other-ns", "hosts: [test-headless-someother.com]\n" + route(64), created=7),
        vs("vs-wildcard-v1", "default", "hosts: ['*.test1.wildcard.com']\n" + route(64), created=8),
        vs("service-wildcard-v1", "default", "hosts: [foo.test2.wildcard.com]\n" + route(64), created=9),
    ]
    sidecar_doc = f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: some-ns}}
spec:
  egress: [{{hosts: {SELECT_IMPORTS}}}]
"""
    snap = build(sidecar_doc, *vses)
    scope = snap.scope(sidecar(name="app-0", namespace="some-ns", labels={"app": "app"}))
    assert [f"{v.namespace}/{v.name}" for v in scope.virtual_services] == [
        "not-default/acme2-v1",
        "not-default/acme-v2",
        "not-default/acme-v4",
        "some-other-ns/acme2-v1",
        "default/vs-wildcard-v1",
        "default/service-wildcard-v1",
    ]


def test_select_virtual_services_wildcard_namespace_import() -> None:
    # SelectVirtualServices: an import `*/host` matches VirtualServices of every namespace; a
    # namespace's own import only its VirtualServices.
    vses = [
        vs("a", "ns1", "hosts: [a.org]\nhttp:\n- route: [{destination: {host: a.org}}]", created=1),
        vs("b", "ns2", "hosts: [a.org]\nhttp:\n- route: [{destination: {host: a.org}}]", created=2),
        vs("c", "ns2", "hosts: [c.org]\nhttp:\n- route: [{destination: {host: c.org}}]", created=3),
    ]

    def selected(imports: list[str]) -> list[str]:
        sc = f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: some-ns}}
spec:
  egress: [{{hosts: {imports}}}]
"""
        scope = build(sc, *vses).scope(sidecar(name="app-0", namespace="some-ns", labels={}))
        return [f"{v.namespace}/{v.name}" for v in scope.virtual_services]

    assert selected(["*/a.org"]) == ["ns1/a", "ns2/b"]
    assert selected(["ns2/a.org"]) == ["ns2/b"]
    assert selected(["ns2/*"]) == ["ns2/b", "ns2/c"]
    assert selected(["*/*.org"]) == ["ns1/a", "ns2/b", "ns2/c"]


# --- end to end: the merged root in a sidecar's route table ----------------------------------------


def test_merged_delegate_reaches_the_route_table() -> None:
    # mergeVirtualServicesIfNeeded's result is what the route generator sees: the delegate's rules, in
    # order, with the root's match and timeout, before the root's own rules.
    svc = """
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: ns1}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
"""
    root = vs(
        "root",
        "ns1",
        """
        hosts: [productpage]
        http:
        - match: [{uri: {prefix: /productpage}}]
          timeout: 7s
          delegate: {name: leaf, namespace: ns2}
        - route: [{destination: {host: productpage, port: {number: 9080}}}]
          timeout: 2s
        """,
    )
    leaf = vs(
        "leaf",
        "ns2",
        """
        http:
        - match: [{uri: {prefix: /productpage/v1}}]
          route: [{destination: {host: productpage.ns1.svc.cluster.local, port: {number: 9080}}}]
          timeout: 1s
        - route: [{destination: {host: productpage.ns1.svc.cluster.local, port: {number: 9080}}}]
        - match: [{uri: {prefix: /other}}]
          route: [{destination: {host: productpage.ns1.svc.cluster.local, port: {number: 9080}}}]
        """,
    )
    snap = snapshot(svc, root, leaf, pods=[], services=False)
    table = route_table(snap, sidecar(name="app-0", namespace="ns1", labels={"app": "app"}))
    vh = vhost(table, "productpage.ns1.svc.cluster.local:9080")
    routes = [r for r in vh["routes"] if "connect_matcher" not in r["match"]]
    assert [
        (r["match"].get("prefix") or r["match"].get("path_separated_prefix"), r["route"].get("timeout"))
        for r in routes
    ] == [
        ("/productpage/v1", "1s"),
        ("/productpage", "7s"),
        ("/", "2s"),
    ]


def test_delegate_only_change_re_merges_the_root() -> None:
    # mergeVirtualServicesIfNeeded's second result (delegatesByRoot) exists so that an edit of a
    # delegate alone reaches its root's proxies: here a snapshot rebuilt for a VirtualService-only change
    # (the control plane's incremental path, reusing the previous snapshot's unchanged parts) holds the
    # root merged with the new delegate, and the route table built against the previous one shows it.
    svc = """
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: ns1}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
"""
    root = vs(
        "root",
        "ns1",
        """
        hosts: [productpage]
        http:
        - match: [{uri: {prefix: /productpage}}]
          delegate: {name: leaf, namespace: ns2}
        """,
    )

    def leaf(path: str) -> str:
        return vs(
            "leaf",
            "ns2",
            f"http:\n- match: [{{uri: {{prefix: {path}}}}}]\n"
            "  route: [{destination: {host: productpage.ns1.svc.cluster.local, port: {number: 9080}}}]",
        )

    proxy = sidecar(name="app-0", namespace="ns1", labels={"app": "app"})
    old = Snapshot.build(1, configs(svc, root, leaf("/productpage/v1"), services=False), [])
    route_table(old, proxy)  # fills the memos the incremental path may reuse
    new = Snapshot.build_configs_changed(
        old, 2, configs(svc, root, leaf("/productpage/v2"), services=False), frozenset({"VirtualService"})
    )
    assert new is not None
    new.routes_changed_from = old
    assert [m["uri"] for r in merged(new, "ns1", "root") for m in r["match"]] == [
        {"prefix": "/productpage/v2"}
    ]
    vh = vhost(route_table(new, proxy), "productpage.ns1.svc.cluster.local:9080")
    prefixes = [r["match"].get("prefix") or r["match"].get("path_separated_prefix") for r in vh["routes"]]
    assert "/productpage/v2" in prefixes and "/productpage/v1" not in prefixes


@pytest.mark.parametrize(
    ("default", "visible"),
    [
        ('["*"]', {"ns1": ["ns1/a"], "ns2": ["ns2/b", "ns1/a"], "ns3": ["ns1/a"]}),
        ('["."]', {"ns1": ["ns1/a"], "ns2": ["ns2/b"], "ns3": []}),
        # [".", "*"] is refused by validation (Istio's: "*" cannot be mixed with other values).
        ('["ns3"]', {"ns1": [], "ns2": ["ns2/b"], "ns3": []}),  # only "." and "*" are honoured
    ],
)
def test_select_virtual_services_mesh_default_export_to(default: str, visible: dict[str, list[str]]) -> None:
    # The index SelectVirtualServices reads (push_context.go initVirtualServices): a VirtualService
    # without exportTo takes MeshConfig's defaultVirtualServiceExportTo, of which istiod honours "." (in
    # preference) and "*" only; under any other default it is in no index and applies nowhere. One
    # with an exportTo of its own is unaffected.
    mesh = f"""
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  defaultVirtualServiceExportTo: {default}
"""
    a = vs("a", "ns1", "hosts: [a.org]\nhttp:\n- route: [{destination: {host: a.org}}]", created=1)
    b = vs(
        "b", "ns2", "exportTo: [.]\nhosts: [b.org]\nhttp:\n- route: [{destination: {host: b.org}}]", created=2
    )
    snap = build(mesh, a, b)
    got = {
        ns: [
            f"{v.namespace}/{v.name}"
            for v in snap.scope(sidecar(name="app-0", namespace=ns, labels={})).virtual_services
        ]
        for ns in ("ns1", "ns2", "ns3")
    }
    assert got == visible


def test_select_virtual_services_by_top_level_gateways_only() -> None:
    # push_context.go getGatewayNames: a VirtualService is indexed under its own `gateways` (none:
    # `mesh`) only. A match-level `gateways` chooses among the rules of a VirtualService bound there;
    # naming another gateway (or `mesh`) in a match does not bind the VirtualService to it.
    def route(host: str) -> str:
        return f"  route: [{{destination: {{host: {host}}}}}]"

    gw_only = vs(
        "gw-only",
        "ns1",
        "hosts: [a.org]\ngateways: [gw]\nhttp:\n- match: [{gateways: [mesh]}]\n" + route("a.org"),
    )
    mesh_only = vs(
        "mesh-only", "ns1", "hosts: [b.org]\nhttp:\n- match: [{gateways: [ns1/gw]}]\n" + route("b.org")
    )
    both = vs(
        "both",
        "ns1",
        "hosts: [c.org]\ngateways: [gw, mesh]\nhttp:\n- match: [{gateways: [mesh]}]\n" + route("c.org"),
    )
    snap = build(gw_only, mesh_only, both)
    names = lambda ns, gw: [e.name for e in snap.virtual_services.for_namespace(ns, gw)]  # noqa: E731
    assert names("ns1", "mesh") == ["both", "mesh-only"]
    assert names("ns1", "ns1/gw") == ["both", "gw-only"]
    scope = snap.scope(sidecar(name="app-0", namespace="ns1", labels={}))
    assert [v.name for v in scope.virtual_services] == ["both", "mesh-only"]


def test_delegate_reference_to_a_vs_with_hosts_is_not_found() -> None:
    # mergeVirtualServicesIfNeeded: only VirtualServices without hosts are delegates; a rule naming one
    # with hosts finds nothing and is dropped, and the named VirtualService stays a VirtualService.
    named = vs("productpage-vs", "default", f"hosts: [productpage.org]\nhttp:\n- route: [{dest('v1')}]")
    snap = build(root_vs(), named)
    assert merged(snap, "istio-system", "root-vs") == ONE_ROOT
    assert entries(snap) == ["default/productpage-vs", "istio-system/root-vs"]
