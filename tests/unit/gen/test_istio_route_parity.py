"""Route translation parity with istiod's own unit tests, case by case, as Istio YAML.

Sources (istio/istio): pilot/pkg/networking/core/route/route_test.go (TestBuildHTTPRoutes,
TestSortVHostRoutes, TestInboundHTTPRoute), route_internal_test.go (TestIsCatchAllRoute,
TestTranslateCORSPolicy*, TestMirrorPercent*, TestSourceMatchHTTP, TestTranslateFault) and
route/retry/retry_test.go (TestRetry). Istio's cases use `*.example.org` on 8080/8484; here the
destination is `reviews` (one HTTP port, 9080) unless the case needs more. Cases Istio builds from
internal annotations (ingress/gateway route semantics, %PREFIX()%) and HTTP/3 alt-svc are not
expressible in Isthmus and are left out; JWT-claim routing has its own file, test_jwt_claim_routing.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import generate, route_table, sidecar, snapshot, vhost

from isthmus.model.proxy import Proxy
from isthmus.xds.gen import naming

REVIEWS = "reviews.default.svc.cluster.local"
REVIEWS_CLUSTER = f"outbound|9080||{REVIEWS}"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def vs(http: str, name: str = "reviews", hosts: str = "[reviews]", namespace: str = "default") -> str:
    """A VirtualService with these `http` rules (YAML list items, indented as written)."""
    body = "\n".join("  " + line for line in http.strip("\n").splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: {hosts}
  http:
{body}
"""


def dr(spec: str) -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
{body}
"""


def routes(
    *docs: str, proxy: Proxy | None = None, host: str = REVIEWS, port: int = 9080
) -> list[dict[str, Any]]:
    """The routes of the sidecar's `host:port` virtual host, without its CONNECT route."""
    table = route_table(snapshot(*docs), proxy or sidecar())
    return [r for r in vhost(table, f"{host}:{port}")["routes"] if r.get("name") != "connect"]


def one(*docs: str, **kw: Any) -> dict[str, Any]:
    (r,) = routes(*docs, **kw)
    return r


def headers(match: dict[str, Any]) -> list[dict[str, Any]]:
    return match.get("headers", [])


# --- TestBuildHTTPRoutes: timeouts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (None, "0s"),  # "for virtual service": unset -> disabled (0s), not Envoy's 15s default
        ("10s", "10s"),  # "with timeout" ("with disabled timeout", 0s, fails validation as in Istio)
    ],
)
def test_timeout_and_max_grpc_timeout(timeout: str | None, expected: str) -> None:
    extra = f"\n  timeout: {timeout}" if timeout else ""
    action = one(vs(f"- route: [{{destination: {{host: reviews}}}}]{extra}"))["route"]
    assert action["timeout"] == expected and action["max_grpc_timeout"] == expected
    # Not max_stream_duration: it would put Envoy in its "new timeouts" mode, ignoring `timeout`.
    assert "max_stream_duration" not in action


# --- catch-all handling and names ------------------------------------------------------------


def test_catch_all_match_ends_the_virtual_service() -> None:
    # "for virtual service with catch all route": route names are `<http name>.<match name>`.
    got = routes(
        vs("""
- name: route
  match:
  - {name: non-catch-all, uri: {prefix: /route/v1}}
  - {name: catch-all, uri: {prefix: /}}
  - {name: never, uri: {prefix: /never}}
  route: [{destination: {host: reviews}}]
- name: unreachable
  route: [{destination: {host: reviews}}]
""")
    )
    assert [r["name"] for r in got] == ["route.non-catch-all", "route.catch-all"]
    assert [r["match"].get("prefix") for r in got] == ["/route/v1", "/"]


def test_port_only_match_is_a_catch_all_for_that_port() -> None:
    # "for virtual service with catch all route: port match".
    got = routes(
        vs("""
- name: route 1
  match: [{name: catch-all for 9080, port: 9080}]
  route: [{destination: {host: reviews}}]
- name: route 2
  match: [{name: header match, headers: {cookie: {exact: canary}}}]
  route: [{destination: {host: reviews}}]
- name: route 3
  route: [{destination: {host: reviews}}]
""")
    )
    assert [r["name"] for r in got] == ["route 1.catch-all for 9080"]


def test_rule_without_match_is_the_last_and_unmatched_sources_are_skipped() -> None:
    # "for virtual service with top level catch all route": the first rule's only match is for other
    # source labels, so the rule yields nothing and the match-less rule is the one route.
    got = routes(
        vs("""
- match: [{name: headers-only, headers: {version: {exact: v2}}, sourceLabels: {version: v9}}]
  route: [{destination: {host: reviews, subset: v2}, weight: 100}]
- route: [{destination: {host: reviews, subset: v1}, weight: 100}]
""")
    )
    assert len(got) == 1 and got[0]["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"
    assert got[0]["match"] == {"prefix": "/"}


def test_catch_all_for_other_sources_does_not_end_the_rule() -> None:
    # "for virtual service with multi prefix catch all route": a `/` match skipped by sourceLabels
    # is no catch-all for this proxy; the next match still counts.
    got = routes(
        vs("""
- match:
  - {name: catch-all, uri: {prefix: /}, sourceLabels: {matchingNoSrc: xxx}}
  - {name: specific match, uri: {prefix: /a}}
  route: [{destination: {host: reviews}, weight: 100}]
""")
    )
    assert [(r["name"], r["match"]["prefix"]) for r in got] == [(".specific match", "/a")]


def test_source_namespace_selects_the_rule_per_proxy() -> None:
    # "for virtual service with source namespace matching" (and TestSourceMatchHTTP).
    doc = vs("""
- name: foo
  match: [{sourceNamespace: foo}]
  route: [{destination: {host: reviews}}]
- name: bar
  match: [{sourceNamespace: bar}]
  route: [{destination: {host: reviews}}]
""")
    for ns in ("foo", "bar"):
        proxy = sidecar(name=f"client-{ns}", namespace=ns)
        assert [r["name"] for r in routes(doc, proxy=proxy)] == [ns]


def test_stat_prefix_only_on_its_match() -> None:
    # "for virtual service with stat_prefix set for a match on URI".
    got = routes(
        vs("""
- name: foo
  match:
  - {name: foo, uri: {prefix: /foo}, statPrefix: foo}
  - {name: baz, uri: {prefix: /baz}}
  route: [{destination: {host: reviews}, weight: 100}]
- name: bar
  match: [{name: bar, uri: {prefix: /bar}}]
  route: [{destination: {host: reviews}, weight: 100}]
""")
    )
    assert [(r["match"]["prefix"], r.get("stat_prefix")) for r in got] == [
        ("/foo", "foo"),
        ("/baz", None),
        ("/bar", None),
    ]
    assert [p["name"] for p in got[0]["route"]["retry_policy"]["retry_host_predicate"]] == [PREVIOUS_HOSTS]


def test_route_metadata_names_the_virtual_service() -> None:
    # translateRoute: Metadata = util.BuildConfigInfoMetadata(virtualService.Meta).
    r = one(vs("- route: [{destination: {host: reviews}}]"))
    assert r["metadata"] == {
        "filter_metadata": {
            "istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}
        }
    }


# --- matches -----------------------------------------------------------------------------------


def test_regex_uri_match() -> None:
    # "for virtual service with regex matching on URI".
    r = one(
        vs(r"""
- match: [{name: status, uri: {regex: '\/(.?)\/status'}}]
  redirect: {uri: example.org, authority: some-authority.default.svc.cluster.local, redirectCode: 308}
""")
    )
    assert r["match"]["safe_regex"] == {"regex": r"\/(.?)\/status"}
    assert "prefix" not in r["match"] and r["match"]["case_sensitive"] is True


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("{exact: /a}", {"path": "/a"}),
        ("{prefix: /a}", {"prefix": "/a"}),
        ("{regex: /a.*}", {"safe_regex": {"regex": "/a.*"}}),
    ],
)
def test_uri_match_kinds_and_ignore_case(uri: str, expected: dict[str, Any]) -> None:
    r = one(
        vs(f"- match: [{{uri: {uri}, ignoreUriCase: true}}]\n  route: [{{destination: {{host: reviews}}}}]")
    )
    assert {k: v for k, v in r["match"].items() if k != "case_sensitive"} == expected
    assert r["match"]["case_sensitive"] is False


def test_regex_header_match() -> None:
    # "for virtual service with regex matching on header".
    r = one(
        vs(r"""
- match: [{name: auth, headers: {Authentication: {regex: 'Bearer .+?\..+?\..+?'}}}]
  route: [{destination: {host: reviews}}]
""")
    )
    (h,) = headers(r["match"])
    assert h == {"name": "Authentication", "string_match": {"safe_regex": {"regex": r"Bearer .+?\..+?\..+?"}}}


def test_regex_without_header_is_inverted_and_treats_missing_as_empty() -> None:
    # "for virtual service with regex matching on without_header".
    r = one(
        vs(r"""
- match: [{name: without-test, withoutHeaders: {FOO-HEADER: {regex: 'BAR .+?\..+?\..+?'}}}]
  route: [{destination: {host: reviews}}]
""")
    )
    (h,) = headers(r["match"])
    assert h["string_match"] == {"safe_regex": {"regex": r"BAR .+?\..+?\..+?"}}
    assert h["invert_match"] is True and h["treat_missing_header_as_empty"] is True


def test_header_presence_match() -> None:
    # "presence matching on header" (an empty match). Istio's "*" regex case fails validation (not RE2).
    r = one(
        vs(
            "- match: [{name: presence, headers: {FOO-HEADER: {}}}]\n  route: [{destination: {host: reviews}}]"
        )
    )
    assert headers(r["match"]) == [{"name": "FOO-HEADER", "present_match": True}]


def test_without_header_presence_is_inverted_presence() -> None:
    # "presence matching on header and without_header": treat_missing_header_as_empty would
    # conflict with present_match, so it is not set.
    r = one(
        vs(
            "- match: [{name: presence, withoutHeaders: {FOO-HEADER: {}}}]\n  route: [{destination: {host: reviews}}]"
        )
    )
    assert headers(r["match"]) == [{"name": "FOO-HEADER", "present_match": True, "invert_match": True}]


def test_header_matchers_sorted_then_method_authority_scheme() -> None:
    # TranslateRouteMatch: headers and withoutHeaders sorted by name, then :method, :authority, :scheme.
    r = one(
        vs("""
- match:
  - headers: {x-b: {exact: b}, x-a: {prefix: a}}
    withoutHeaders: {x-c: {exact: c}}
    method: {exact: GET}
    authority: {prefix: api.}
    scheme: {exact: https}
  route: [{destination: {host: reviews}}]
""")
    )
    assert headers(r["match"]) == [
        {"name": "x-a", "string_match": {"prefix": "a"}},
        {"name": "x-b", "string_match": {"exact": "b"}},
        {
            "name": "x-c",
            "string_match": {"exact": "c"},
            "invert_match": True,
            "treat_missing_header_as_empty": True,
        },
        {"name": ":method", "string_match": {"exact": "GET"}},
        {"name": ":authority", "string_match": {"prefix": "api."}},
        {"name": ":scheme", "string_match": {"exact": "https"}},
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{exact: foo}", {"name": "token", "string_match": {"exact": "foo"}}),
        ("{prefix: foo-}", {"name": "token", "string_match": {"prefix": "foo-"}}),
        (
            r"{regex: 'BAR .+?\..+?\..+?'}",
            {"name": "token", "string_match": {"safe_regex": {"regex": r"BAR .+?\..+?\..+?"}}},
        ),
        ("{}", {"name": "token", "present_match": True}),
    ],
)
def test_query_parameter_match(value: str, expected: dict[str, Any]) -> None:
    # "exact / prefix / regex matching on query parameter"; presence as an empty match (Istio's "*"
    # regex case fails validation: not RE2).
    r = one(
        vs(
            f"- match: [{{name: auth, queryParams: {{token: {value}}}}}]\n  route: [{{destination: {{host: reviews}}}}]"
        )
    )
    assert r["match"]["query_parameters"] == [expected]


def test_header_or_query_match_is_no_catch_all() -> None:
    # TestIsCatchAllRoute: `/` with headers or query parameters is not a catch-all, so later rules stay.
    got = routes(
        vs("""
- match: [{uri: {prefix: /}, headers: {Authentication: {exact: test}}}]
  route: [{destination: {host: reviews}}]
- match: [{uri: {regex: .*}, queryParams: {Authentication: {}}}]
  route: [{destination: {host: reviews}}]
- match: [{uri: {regex: .*}}]
  route: [{destination: {host: reviews}}]
- name: unreachable
  route: [{destination: {host: reviews}}]
""")
    )
    assert len(got) == 3 and got[-1]["match"]["safe_regex"] == {"regex": ".*"}


# --- hash policies (consistentHash) --------------------------------------------------------------


COOKIE = "{loadBalancer: {consistentHash: {httpCookie: {name: %s}}}}"


def test_ring_hash_cookie_with_ttl_and_no_previous_hosts() -> None:
    # "for virtual service with ring hash": a single hashed destination drops previous_hosts.
    r = one(
        dr("trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: hash-cookie, ttl: 100ns}}}}"),
        vs("- route: [{destination: {host: reviews, port: {number: 9080}}, weight: 100}]"),
    )
    assert r["route"]["hash_policy"] == [{"cookie": {"name": "hash-cookie", "ttl": "0.000000100s"}}]
    assert "retry_host_predicate" not in r["route"]["retry_policy"]


def test_query_param_ring_hash() -> None:
    # "for virtual service with query param based ring hash".
    r = one(
        dr("trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: query}}}"),
        vs("- route: [{destination: {host: reviews, port: {number: 9080}}, weight: 100}]"),
    )
    assert r["route"]["hash_policy"] == [{"query_parameter": {"name": "query"}}]
    assert "retry_host_predicate" not in r["route"]["retry_policy"]


@pytest.mark.parametrize(
    ("hash_key", "expected"),
    [
        # consistentHashToHashPolicy, per hash key kind
        ("{httpHeaderName: x-user}", {"header": {"header_name": "x-user"}}),
        ("{useSourceIp: true}", {"connection_properties": {"source_ip": True}}),
        (
            "{httpCookie: {name: c, path: /p, ttl: 10s, attributes: [{name: SameSite, value: Strict}]}}",
            {
                "cookie": {
                    "name": "c",
                    "path": "/p",
                    "ttl": "10s",
                    "attributes": [{"name": "SameSite", "value": "Strict"}],
                }
            },
        ),
    ],
)
def test_hash_policy_kinds(hash_key: str, expected: dict[str, Any]) -> None:
    r = one(
        dr(f"trafficPolicy: {{loadBalancer: {{consistentHash: {hash_key}}}}}"),
        vs("- route: [{destination: {host: reviews}}]"),
    )
    assert r["route"]["hash_policy"] == [expected]


@pytest.mark.parametrize(
    ("rule", "subset", "cookie"),
    [
        # "for virtual service with subsets with ring hash"
        (
            f"subsets: [{{name: some-subset, trafficPolicy: {COOKIE % 'other-cookie'}}}]",
            "some-subset",
            "other-cookie",
        ),
        # "...with subsets with port level settings with ring hash": subset port level beats top port level
        (
            f"""
trafficPolicy: {{portLevelSettings: [{{port: {{number: 9080}}, {COOKIE[1:-1] % "hash-cookie"}}}]}}
subsets:
- name: port-level-settings-subset
  trafficPolicy: {{portLevelSettings: [{{port: {{number: 9080}}, {COOKIE[1:-1] % "port-level-settings-cookie"}}}]}}
""",
            "port-level-settings-subset",
            "port-level-settings-cookie",
        ),
        # "...with subsets and top level traffic policy with ring hash": subset beats top level
        (
            f"trafficPolicy: {COOKIE % 'hash-cookie'}\nsubsets: [{{name: some-subset, trafficPolicy: {COOKIE % 'other-cookie'}}}]",
            "some-subset",
            "other-cookie",
        ),
        # "port selector based traffic policy": top port level for the destination port
        (
            f"trafficPolicy: {{portLevelSettings: [{{port: {{number: 9080}}, {COOKIE[1:-1] % 'hash-cookie'}}}]}}",
            "",
            "hash-cookie",
        ),
    ],
)
def test_hash_policy_precedence(rule: str, subset: str, cookie: str) -> None:
    dest = f"{{host: reviews, port: {{number: 9080}}{', subset: ' + subset if subset else ''}}}"
    r = one(dr(rule), vs(f"- route: [{{destination: {dest}, weight: 100}}]"))
    assert r["route"]["hash_policy"] == [{"cookie": {"name": cookie}}]


@pytest.mark.parametrize(
    ("rule", "cookie"),
    [
        # "for no virtualservice but has destinationrule with consistentHash loadbalancer"
        (f"trafficPolicy: {COOKIE % 'hash-cookie'}", "hash-cookie"),
        # "...with portLevel consistentHash loadbalancer": the port's setting wins
        (
            f"trafficPolicy: {{{COOKIE[1:-1] % 'hash-cookie'}, portLevelSettings: [{{port: {{number: 9080}}, {COOKIE[1:-1] % 'hash-cookie-1'}}}]}}",
            "hash-cookie-1",
        ),
        # hashForService: a port's setting without a consistentHash keeps the top-level one
        (
            f"trafficPolicy: {{{COOKIE[1:-1] % 'hash-cookie'}, portLevelSettings: [{{port: {{number: 9080}}, connectionPool: {{tcp: {{maxConnections: 5}}}}}}]}}",
            "hash-cookie",
        ),
    ],
)
def test_default_route_hash_policy_without_virtual_service(rule: str, cookie: str) -> None:
    r = one(dr(rule))
    assert r["name"] == "default"
    assert r["route"]["hash_policy"] == [{"cookie": {"name": cookie}}]


# --- header operations and authority ----------------------------------------------------------


def _hvo(key: str, value: str, append: bool) -> dict[str, Any]:
    """A HeaderValueOption as the JSON view shows it: APPEND_IF_EXISTS_OR_ADD is the enum's zero."""
    out: dict[str, Any] = {"header": {"key": key, "value": value}}
    if not append:
        out["append_action"] = "OVERWRITE_IF_EXISTS_OR_ADD"
    return out


def _dest_headers(suffix: str, authority: str, op: str = "set") -> str:
    """Istio's destination operations; its `:authority` in both set and add fails validation (authority
    header cannot be set multiple times), so it is in `op` only."""
    set_auth, add_auth = (
        (f", ':authority': {authority}.foo.extsvc.com", "")
        if op == "set"
        else ("", f", ':authority': {authority}.foo.extsvc.com")
    )
    return (
        f"{{request: {{set: {{x-route-req-set{suffix}: v1{set_auth}}}, "
        f"add: {{x-route-req-add{suffix}: v2{add_auth}}}, remove: [x-route-req-remove{suffix}]}}, "
        f"response: {{set: {{x-route-resp-set{suffix}: v1}}, add: {{x-route-resp-add{suffix}: v2}}, remove: [x-route-resp-remove{suffix}]}}}}"
    )


ROUTE_HEADERS = (
    "headers: {request: {set: {x-req-set: v1, ':authority': foo.extsvc.com}, "
    "add: {x-req-add: v2}, remove: [x-req-remove]}, "
    "response: {set: {x-resp-set: v1}, add: {x-resp-add: v2}, remove: [x-resp-remove]}}"
)


def test_header_operations_for_single_cluster() -> None:
    # "for header operations for single cluster": route-level set/add then destination-level, and the
    # route-level authority beats the destination's.
    r = one(
        vs(f"""
- route: [{{destination: {{host: reviews, subset: v1}}, weight: 100, headers: {_dest_headers("", "internal")}}}]
  {ROUTE_HEADERS}
""")
    )
    assert r["request_headers_to_add"] == [
        _hvo("x-req-set", "v1", False),
        _hvo("x-req-add", "v2", True),
        _hvo("x-route-req-set", "v1", False),
        _hvo("x-route-req-add", "v2", True),
    ]
    assert r["request_headers_to_remove"] == ["x-req-remove", "x-route-req-remove"]
    assert r["response_headers_to_add"] == [
        _hvo("x-resp-set", "v1", False),
        _hvo("x-resp-add", "v2", True),
        _hvo("x-route-resp-set", "v1", False),
        _hvo("x-route-resp-add", "v2", True),
    ]
    assert r["response_headers_to_remove"] == ["x-resp-remove", "x-route-resp-remove"]
    assert r["route"]["host_rewrite_literal"] == "foo.extsvc.com"


def test_destination_authority_applies_without_a_route_level_one() -> None:
    # processDestination: the destination's :authority is used when the route sets none.
    r = one(
        vs(
            f"- route: [{{destination: {{host: reviews, subset: v1}}, headers: {_dest_headers('', 'internal')}}}]"
        )
    )
    assert r["route"]["host_rewrite_literal"] == "internal.foo.extsvc.com"


def test_header_operations_for_weighted_cluster() -> None:
    # "for header operations for weighted cluster": each destination's operations and authority on
    # its cluster weight; the route-level ones on the route.
    r = one(
        vs(f"""
- route:
  - {{destination: {{host: reviews, subset: blue}}, weight: 9, headers: {_dest_headers("-blue", "blue")}}}
  - {{destination: {{host: reviews, subset: green}}, weight: 1, headers: {_dest_headers("-green", "green", "add")}}}
  {ROUTE_HEADERS}
""")
    )
    wc = r["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in wc] == [
        (f"outbound|9080|blue|{REVIEWS}", 9),
        (f"outbound|9080|green|{REVIEWS}", 1),
    ]
    for c, color in zip(wc, ("blue", "green"), strict=True):
        assert c["request_headers_to_add"] == [
            _hvo(f"x-route-req-set-{color}", "v1", False),
            _hvo(f"x-route-req-add-{color}", "v2", True),
        ]
        assert c["request_headers_to_remove"] == [f"x-route-req-remove-{color}"]
        assert c["response_headers_to_add"] == [
            _hvo(f"x-route-resp-set-{color}", "v1", False),
            _hvo(f"x-route-resp-add-{color}", "v2", True),
        ]
        assert c["response_headers_to_remove"] == [f"x-route-resp-remove-{color}"]
        assert c["host_rewrite_literal"] == f"{color}.foo.extsvc.com"
    assert [h["header"]["key"] for h in r["request_headers_to_add"]] == ["x-req-set", "x-req-add"]
    assert r["route"]["host_rewrite_literal"] == "foo.extsvc.com"
    assert "total_weight" not in r["route"]["weighted_clusters"]


def test_zero_weight_destinations_are_left_out() -> None:
    # applyHTTPRouteDestination: "Ignore 0 weighted clusters if there are other clusters in the route".
    r = one(
        vs("""
- route:
  - {destination: {host: reviews, subset: v1}, weight: 100}
  - {destination: {host: reviews, subset: v2}, weight: 0}
""")
    )
    assert r["route"]["weighted_clusters"]["clusters"] == [
        {"name": f"outbound|9080|v1|{REVIEWS}", "weight": 100}
    ]


# --- redirects, rewrites, direct responses ---------------------------------------------------------


def test_redirect_code_and_full_path() -> None:
    # "for redirect code", "for full path redirect", "redirect uri prefix '%PREFIX()%' that is without
    # gateway semantics" (kept literally as the path).
    got = routes(
        vs("""
- match: [{uri: {prefix: /a}}]
  redirect: {uri: /replace-full-path, authority: some-authority.default.svc.cluster.local, redirectCode: 308}
- redirect: {uri: '%PREFIX()%/replace-full', authority: some-authority.default.svc.cluster.local, redirectCode: 308}
""")
    )
    assert [r["redirect"] for r in got] == [
        {
            "host_redirect": "some-authority.default.svc.cluster.local",
            "path_redirect": "/replace-full-path",
            "response_code": "PERMANENT_REDIRECT",
        },
        {
            "host_redirect": "some-authority.default.svc.cluster.local",
            "path_redirect": "%PREFIX()%/replace-full",
            "response_code": "PERMANENT_REDIRECT",
        },
    ]
    assert all("route" not in r for r in got)


def test_redirect_with_response_header_set() -> None:
    # "for redirect and header manipulation".
    r = one(
        vs("""
- redirect: {uri: example.org, authority: some-authority.default.svc.cluster.local, redirectCode: 308}
  headers: {response: {set: {Strict-Transport-Security: max-age=31536000; includeSubDomains; preload}}}
""")
    )
    assert r["redirect"]["response_code"] == "PERMANENT_REDIRECT"
    assert r["response_headers_to_add"] == [
        _hvo("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload", False)
    ]


@pytest.mark.parametrize("with_header", [False, True])
def test_direct_response(with_header: bool) -> None:
    # "for direct response code" and "for direct response code and header manipulation".
    extra = (
        "\n  headers: {response: {set: {Strict-Transport-Security: max-age=31536000}}}" if with_header else ""
    )
    r = one(vs(f"- directResponse: {{status: 200, body: {{string: hello}}}}{extra}"))
    assert r["direct_response"] == {"status": 200, "body": {"inline_string": "hello"}}
    assert "route" not in r
    expected = [_hvo("Strict-Transport-Security", "max-age=31536000", False)] if with_header else None
    assert r.get("response_headers_to_add") == expected


def test_direct_response_bytes_body() -> None:
    # ApplyDirectResponse: HTTPBody_Bytes -> inline_bytes (base64 in YAML and in the JSON view).
    r = one(vs("- directResponse: {status: 503, body: {bytes: aGVsbG8=}}"))
    assert r["direct_response"] == {"status": 503, "body": {"inline_bytes": "aGVsbG8="}}


@pytest.mark.parametrize(
    ("rewrite", "match", "expected"),
    [
        # "for host rewrite"
        ("{authority: bar.example.org}", "", {"host_rewrite_literal": "bar.example.org"}),
        # "for full path rewrite"
        (
            "{uriRegexRewrite: {match: /.*, rewrite: /replace-full}}",
            "",
            {"regex_rewrite": {"pattern": {"regex": "/.*"}, "substitution": "/replace-full"}},
        ),
        # "for prefix path rewrite"
        ("{uri: /replace-prefix}", "", {"prefix_rewrite": "/replace-prefix"}),
        # "for empty prefix path rewrite", without gateway semantics: a plain prefix rewrite to `/`
        ("{uri: /}", "{uri: {prefix: /prefix-to-be-removed}}", {"prefix_rewrite": "/"}),
        # "for path and host rewrite"
        (
            "{uriRegexRewrite: {match: /.*, rewrite: /replace-full}, authority: bar.example.org}",
            "",
            {
                "regex_rewrite": {"pattern": {"regex": "/.*"}, "substitution": "/replace-full"},
                "host_rewrite_literal": "bar.example.org",
            },
        ),
        # "for path regex match with regex rewrite"
        (
            r"{uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}}",
            "{uri: {regex: '^/service/[^/]+/.*$'}}",
            {
                "regex_rewrite": {
                    "pattern": {"regex": "^/service/([^/]+)(/.*)$"},
                    "substitution": r"\2/instance/\1",
                }
            },
        ),
    ],
)
def test_rewrites(rewrite: str, match: str, expected: dict[str, Any]) -> None:
    matches = f"\n  match: [{match}]" if match else ""
    r = one(vs(f"- rewrite: {rewrite}{matches}\n  route: [{{destination: {{host: reviews}}, weight: 100}}]"))
    action = r["route"]
    got = {k: action[k] for k in ("host_rewrite_literal", "regex_rewrite", "prefix_rewrite") if k in action}
    assert got == expected
    assert action["cluster"] == REVIEWS_CLUSTER


# --- gateways: redirects on TLS servers and catch-all ordering -------------------------------------


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
"""


def gateway_routes(*docs: str, route_name: str, host: str) -> list[dict[str, Any]]:
    proxy = Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels={"istio": "ingressgateway"},
    )
    table = generate(snapshot(GATEWAY, *docs), proxy, naming.ROUTE_TYPE, {route_name})[route_name]
    return vhost(table, f"{host}:{route_name.split('.')[1]}")["routes"]


@pytest.mark.parametrize(
    ("route_name", "redirect", "port"),
    [
        ("http.80", "{authority: b.example.com, port: 80}", None),
        ("http.80", "{authority: b.example.com, port: 443}", 443),
        # ApplyRedirect with isTLS (server.Tls != nil): the default scheme is https there.
        ("https.443.https.gw.istio-system", "{authority: b.example.com, port: 443}", None),
        ("https.443.https.gw.istio-system", "{authority: b.example.com, port: 80}", 80),
        (
            "https.443.https.gw.istio-system",
            "{authority: b.example.com, derivePort: FROM_REQUEST_PORT}",
            None,
        ),
        ("https.443.https.gw.istio-system", "{authority: b.example.com, port: 443, scheme: http}", 443),
    ],
)
def test_gateway_redirect_port_follows_the_server_scheme(
    route_name: str, redirect: str, port: int | None
) -> None:
    doc = vs(f"- redirect: {redirect}", name="a", hosts="[a.example.com]\n  gateways: [istio-system/gw]")
    (r,) = gateway_routes(doc, route_name=route_name, host="a.example.com")
    assert r["redirect"].get("port_redirect") == port
    # The scheme is only rewritten when given.
    assert r["redirect"].get("scheme_redirect") == ("http" if "scheme: http" in redirect else None)


def test_gateway_virtual_host_moves_catch_alls_last() -> None:
    # TestSortVHostRoutes, through gateway.go: routes of several VirtualServices for one host keep
    # their order, except catch-alls, which go last.
    first = vs(
        "- route: [{destination: {host: reviews}}]",
        name="a",
        hosts="[a.example.com]\n  gateways: [istio-system/gw]",
    )
    second = vs(
        """
- match: [{uri: {exact: /path1}}]
  route: [{destination: {host: reviews}}]
- match: [{uri: {prefix: /prefix1}}]
  route: [{destination: {host: reviews}}]
- match: [{uri: {regex: .*?regex1}}]
  route: [{destination: {host: reviews}}]
""",
        name="b",
        hosts="[a.example.com]\n  gateways: [istio-system/gw]",
    )
    got = gateway_routes(first, second, route_name="http.80", host="a.example.com")
    assert [{k: v for k, v in r["match"].items() if k != "case_sensitive"} for r in got] == [
        {"path": "/path1"},
        {"prefix": "/prefix1"},
        {"safe_regex": {"regex": ".*?regex1"}},
        {"prefix": "/"},
    ]


# --- TestInboundHTTPRoute --------------------------------------------------------------------------


def test_inbound_default_route() -> None:
    reviews = sidecar("reviews-v1-0", labels={"app": "reviews", "version": "v1"}, ip="127.7.0.2")
    name = "inbound|9080||"
    table = generate(snapshot(), reviews, naming.ROUTE_TYPE, {name})[name]
    (vh,) = table["virtual_hosts"]
    assert vh["name"] == "inbound|http|9080" and vh["domains"] == ["*"]
    (r,) = vh["routes"]
    assert r["name"] == "default" and r["match"] == {"prefix": "/"}
    assert r["route"] == {
        "cluster": name,
        "timeout": "0s",
        "retry_policy": {"retry_on": "reset-before-request", "num_retries": 2},
        "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
    }
    assert r["decorator"] == {"operation": f"{REVIEWS}:9080/*"}


# --- route_internal_test.go: CORS, mirrors, faults ------------------------------------------------


@pytest.mark.parametrize(("unmatched", "forward"), [("", True), ("\n    unmatchedPreflights: IGNORE", False)])
def test_cors_policy(unmatched: str, forward: bool) -> None:
    # TestTranslateCORSPolicy / TestTranslateCORSPolicyForwardNotMatchingPreflights.
    r = one(
        vs(f"""
- route: [{{destination: {{host: reviews}}}}]
  corsPolicy:
    allowOrigins: [{{exact: exact}}, {{prefix: prefix}}, {{regex: regex}}]{unmatched}
""")
    )
    cors = r["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [
            {"exact": "exact"},
            {"prefix": "prefix"},
            {"safe_regex": {"regex": "regex"}},
        ],
        "forward_not_matching_preflights": forward,
        "filter_enabled": {"default_value": {"numerator": 100}},
    }


def test_cors_policy_all_fields() -> None:
    # TranslateCORSPolicy: lists joined with ",", maxAge in whole seconds, allowCredentials as given.
    r = one(
        vs("""
- route: [{destination: {host: reviews}}]
  corsPolicy:
    allowOrigins: [{exact: https://a.example}]
    allowMethods: [GET, POST]
    allowHeaders: [x-a, x-b]
    exposeHeaders: [x-c, x-d]
    maxAge: 90s
    allowCredentials: false
""")
    )
    cors = r["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert (cors["allow_methods"], cors["allow_headers"], cors["expose_headers"]) == (
        "GET,POST",
        "x-a,x-b",
        "x-c,x-d",
    )
    assert cors["max_age"] == "90" and cors["allow_credentials"] is False


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        ("mirrorPercent: 0", None),  # "zero mirror percent"
        ("", {"numerator": 100}),  # "mirror with no value given" (100, HUNDRED)
        ("mirrorPercent: 50", {"numerator": 50}),  # "mirror with actual percent"
        ("mirrorPercentage: {value: 0}", None),  # "zero mirror percentage"
        ("mirrorPercentage: {value: 50}", {"numerator": 500000, "denominator": "MILLION"}),
        # "mirrorpercentage takes precedence when both are given"
        (
            "mirrorPercent: 40\n  mirrorPercentage: {value: 50}",
            {"numerator": 500000, "denominator": "MILLION"},
        ),
    ],
)
def test_mirror_percent(percent: str, expected: dict[str, Any] | None) -> None:
    # TestMirrorPercent.
    extra = f"\n  {percent}" if percent else ""
    r = one(
        vs(
            f"- route: [{{destination: {{host: reviews, subset: v1}}}}]\n  mirror: {{host: reviews, subset: v2}}{extra}"
        )
    )
    if expected is None:
        assert "request_mirror_policies" not in r["route"]
        return
    assert r["route"]["request_mirror_policies"] == [
        {
            "cluster": f"outbound|9080|v2|{REVIEWS}",
            "runtime_fraction": {"default_value": expected},
            "trace_sampled": False,
        }
    ]


@pytest.mark.parametrize(
    ("percentage", "expected"),
    [
        ("", {"numerator": 100}),  # "mirror with no value given"
        (", percentage: {value: 0}", None),  # "zero mirror percentage"
        (", percentage: {value: 50}", {"numerator": 500000, "denominator": "MILLION"}),
    ],
)
def test_mirror_percent_by_policy(percentage: str, expected: dict[str, Any] | None) -> None:
    # TestMirrorPercentByPolicy.
    r = one(
        vs(
            f"- route: [{{destination: {{host: reviews}}}}]\n  mirrors: [{{destination: {{host: reviews, subset: v2}}{percentage}}}]"
        )
    )
    policies = r["route"].get("request_mirror_policies")
    assert policies == (
        None
        if expected is None
        else [
            {
                "cluster": f"outbound|9080|v2|{REVIEWS}",
                "runtime_fraction": {"default_value": expected},
                "trace_sampled": False,
            }
        ]
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (  # "http delay"
            "{delay: {fixedDelay: 3s, percentage: {value: 50}}}",
            {"delay": {"fixed_delay": "3s", "percentage": {"numerator": 500000, "denominator": "MILLION"}}},
        ),
        (  # "grpc abort"
            "{abort: {grpcStatus: DEADLINE_EXCEEDED, percentage: {value: 50}}}",
            {"abort": {"grpc_status": 4, "percentage": {"numerator": 500000, "denominator": "MILLION"}}},
        ),
        (  # "both delay and abort"
            "{delay: {fixedDelay: 3s, percentage: {value: 50}}, abort: {grpcStatus: DEADLINE_EXCEEDED, percentage: {value: 50}}}",
            {
                "delay": {"fixed_delay": "3s", "percentage": {"numerator": 500000, "denominator": "MILLION"}},
                "abort": {"grpc_status": 4, "percentage": {"numerator": 500000, "denominator": "MILLION"}},
            },
        ),
        (  # the deprecated integer `percent` (HUNDRED) and an HTTP abort without percentage
            "{delay: {fixedDelay: 1s, percent: 30}, abort: {httpStatus: 503}}",
            {"delay": {"fixed_delay": "1s", "percentage": {"numerator": 30}}, "abort": {"http_status": 503}},
        ),
    ],
)
def test_fault(fault: str, expected: dict[str, Any]) -> None:
    # TestTranslateFault.
    r = one(vs(f"- route: [{{destination: {{host: reviews}}}}]\n  fault: {fault}"))
    got = dict(r["typed_per_filter_config"]["envoy.filters.http.fault"])
    assert got.pop("@type") == "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    assert got == expected


# --- retry/retry_test.go: TestRetry ----------------------------------------------------------------


def retry_policy(retries: str | None, *docs: str) -> dict[str, Any] | None:
    extra = f"\n  retries: {retries}" if retries is not None else ""
    r = one(*docs, vs(f"- route: [{{destination: {{host: reviews, port: {{number: 9080}}}}}}]{extra}"))
    return r["route"].get("retry_policy")


DEFAULT_POLICY = {
    "retry_on": DEFAULT_RETRY_ON,
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": PREVIOUS_HOSTS,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": "5",
}


def test_nil_retry_is_the_default_policy() -> None:
    # TestNilRetryShouldReturnDefault (503 is not retried by default: EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY).
    assert retry_policy(None) == DEFAULT_POLICY


def test_zero_attempts_is_no_policy() -> None:
    # TestZeroAttemptsShouldReturnNilPolicy.
    assert retry_policy("{attempts: 0}") is None


def test_retry_with_all_fields_set() -> None:
    # TestRetryWithAllFieldsSet (with real retryOn names: validation rejects made-up ones).
    assert retry_policy(
        "{attempts: 2, retryOn: 'reset,connect-failure,gateway-error', perTryTimeout: 3s, backoff: 2s}"
    ) == {
        **DEFAULT_POLICY,
        "retry_on": "reset,connect-failure,gateway-error",
        "per_try_timeout": "3s",
        "retry_back_off": {"base_interval": "2s"},
    }


@pytest.mark.parametrize(
    ("retry_on", "expected_on", "codes"),
    [
        # TestRetryOnWithEmptyParts, ...WithWhitespace and ...WithInvalidStatusCodes fail validation
        # (as with Istio's webhook: each part must be a known condition or a status code).
        ("gateway-error,retriable-status-codes,503", "gateway-error,retriable-status-codes", [503]),
        ("reset-before-request", "reset-before-request", None),
        # ContainingStatusCodes: numbers become retriable_status_codes, and the condition is added last
        (
            "reset,connect-failure,5xx,404,gateway-error,503",
            "reset,connect-failure,5xx,gateway-error,retriable-status-codes",
            [404, 503],
        ),
    ],
)
def test_retry_on_parsing(retry_on: str, expected_on: str, codes: list[int] | None) -> None:
    policy = retry_policy(f"{{attempts: 2, retryOn: {retry_on!r}}}")
    assert policy is not None
    assert policy["retry_on"] == expected_on
    assert policy.get("retriable_status_codes") == codes


def test_missing_retry_on_and_per_try_timeout_keep_defaults() -> None:
    # TestMissingRetryOnShouldReturnDefaults, TestMissingPerTryTimeoutShouldReturnNil, TestRetryPreviousHostsDefault.
    assert retry_policy("{attempts: 2}") == DEFAULT_POLICY


def test_retry_remote_localities() -> None:
    # TestRetryRemoteLocalities.
    assert retry_policy("{attempts: 2, retryRemoteLocalities: true}") == {
        **DEFAULT_POLICY,
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2,
            },
        },
    }


HASH_DR = dr("trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}")


@pytest.mark.parametrize(
    ("retries", "docs", "previous_hosts"),
    [
        ("{attempts: 2}", (HASH_DR,), False),  # TestRetryPreviousHostsDefaultWithHashPolicy
        (
            "{attempts: 2, retryIgnorePreviousHosts: true}",
            (HASH_DR,),
            True,
        ),  # ...WithRetryIgnorePreviousHosts
        ("{attempts: 2, retryIgnorePreviousHosts: false}", (), False),  # TestRetryPreviousHostsDisabled
    ],
)
def test_retry_previous_hosts(retries: str, docs: tuple[str, ...], previous_hosts: bool) -> None:
    policy = retry_policy(retries, *docs)
    assert policy is not None
    expected = {k: v for k, v in DEFAULT_POLICY.items() if previous_hosts or k != "retry_host_predicate"}
    assert policy == expected
