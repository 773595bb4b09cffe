"""Envoy's virtual-host and route selection as `isthmus.debug.matching` implements it."""

from __future__ import annotations

from isthmus.debug import matching as m


def rc(*vhosts: tuple[str, list[str]], ignore_port: bool = False) -> dict:
    return {
        "virtual_hosts": [{"name": n, "domains": d, "routes": []} for n, d in vhosts],
        "ignore_port_in_host_matching": ignore_port,
    }


def vh_name(config: dict, authority: str) -> str | None:
    found = m.select_virtual_host(config, authority)
    return found.vhost["name"] if found else None


def test_exact_beats_wildcards_and_default() -> None:
    c = rc(("any", ["*"]), ("suffix", ["*.example.com"]), ("exact", ["a.example.com"]), ("prefix", ["api.*"]))
    assert vh_name(c, "a.example.com") == "exact"
    assert vh_name(c, "A.Example.COM") == "exact"  # hosts are case-insensitive
    assert vh_name(c, "b.example.com") == "suffix"
    assert vh_name(c, "x.y.example.com") == "suffix"  # a wildcard covers several labels
    assert vh_name(c, "api.other.org") == "prefix"
    assert vh_name(c, "nothing.org") == "any"


def test_longest_suffix_wins_and_never_the_whole_host() -> None:
    c = rc(("short", ["*.com"]), ("long", ["*-bar.example.com"]), ("mid", ["*.example.com"]))
    assert vh_name(c, "foo-bar.example.com") == "long"
    assert vh_name(c, "foo.example.com") == "mid"
    assert vh_name(c, "x.org") is None
    # "*.example.com" does not match ".example.com" itself
    assert vh_name(rc(("w", ["*.example.com"])), ".example.com") is None


def test_suffix_wildcards_are_tried_before_prefix_wildcards() -> None:
    c = rc(("prefix", ["foo.*"]), ("suffix", ["*.com"]))
    assert vh_name(c, "foo.com") == "suffix"


def test_port_is_part_of_the_host_unless_ignored() -> None:
    c = rc(("p80", ["echo", "echo:80"]), ("p9090", ["echo:9090"]))
    assert vh_name(c, "echo") == "p80"
    assert vh_name(c, "echo:9090") == "p9090"
    assert vh_name(c, "echo:1234") is None
    g = rc(("gw", ["a.example.com"]), ignore_port=True)
    assert vh_name(g, "a.example.com:8080") == "gw"
    assert vh_name(rc(("v6", ["[::1]"]), ignore_port=True), "[::1]:80") == "v6"


def req(path: str = "/", method: str = "GET", headers: list[tuple[str, str]] | None = None) -> m.Request:
    return m.Request(authority="echo", path=path, method=method, headers=headers or [])


def route(match: dict) -> dict:
    return {"match": match, "route": {"cluster": "c"}}


def test_path_matchers_case_and_query() -> None:
    assert m.route_mismatch(route({"prefix": "/a"}), req("/abc?x=1")) is None
    assert m.route_mismatch(route({"path": "/exact"}), req("/exact?x=/y")) is None
    assert m.route_mismatch(route({"path": "/exact"}), req("/exact/more")) is not None
    assert m.route_mismatch(route({"path": "/case", "case_sensitive": False}), req("/CaSe")) is None
    assert m.route_mismatch(route({"path": "/case"}), req("/CASE")) is not None
    # regexes match the whole path (RE2), never the query string
    assert m.route_mismatch(route({"safe_regex": {"regex": "/re[0-9]+"}}), req("/re42")) is None
    assert m.route_mismatch(route({"safe_regex": {"regex": "/re[0-9]+"}}), req("/re42x")) is not None
    assert m.route_mismatch(route({"safe_regex": {"regex": "/re[0-9]+"}}), req("/re42?q=1")) is None
    assert m.route_mismatch(route({"path_separated_prefix": "/api"}), req("/api/x")) is None
    assert m.route_mismatch(route({"path_separated_prefix": "/api"}), req("/apix")) is not None


def test_path_is_normalized_first() -> None:
    assert m.normalize_path("/a/./b/../c") == "/a/c"
    assert m.normalize_path("/%7Euser/%2f") == "/~user/%2f"  # other escapes are kept as sent, as Envoy does
    assert m.route_mismatch(route({"path": "/admin"}), req("/public/../admin")) is None


def test_headers_present_invert_and_missing() -> None:
    present = route({"prefix": "/", "headers": [{"name": "x-p", "present_match": True}]})
    assert m.route_mismatch(present, req(headers=[("x-p", "")])) is None  # an empty value is present
    assert m.route_mismatch(present, req()) is not None
    exact = {"name": "x-e", "string_match": {"exact": "yes"}}
    assert m.route_mismatch(route({"prefix": "/", "headers": [exact]}), req(headers=[("x-e", "yes")])) is None
    # an inverted value matcher never matches a missing header...
    inverted = {**exact, "invert_match": True}
    assert m.route_mismatch(route({"prefix": "/", "headers": [inverted]}), req()) is not None
    # ...unless the missing header counts as empty (Istio's withoutHeaders)
    treat = {**inverted, "treat_missing_header_as_empty": True}
    assert m.route_mismatch(route({"prefix": "/", "headers": [treat]}), req()) is None
    assert (
        m.route_mismatch(route({"prefix": "/", "headers": [treat]}), req(headers=[("x-e", "yes")]))
        is not None
    )
    # several values of one header are joined with ","
    joined = {"name": "x-m", "string_match": {"exact": "a,b"}}
    assert (
        m.route_mismatch(
            route({"prefix": "/", "headers": [joined]}), req(headers=[("x-m", "a"), ("x-m", "b")])
        )
        is None
    )


def test_pseudo_headers_method_authority_scheme() -> None:
    method = route({"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]})
    assert m.route_mismatch(method, req(method="POST")) is None
    assert m.route_mismatch(method, req()) is not None
    auth = route(
        {"prefix": "/", "headers": [{"name": ":authority", "string_match": {"prefix": "echo.default"}}]}
    )
    assert m.route_mismatch(auth, m.Request(authority="echo.default", path="/")) is None
    assert m.route_mismatch(auth, req()) is not None
    scheme = route({"prefix": "/", "headers": [{"name": ":scheme", "string_match": {"exact": "https"}}]})
    assert m.route_mismatch(scheme, req()) is not None


def test_query_parameters() -> None:
    q = route({"prefix": "/", "query_parameters": [{"name": "q", "string_match": {"exact": "1"}}]})
    assert m.route_mismatch(q, req("/?q=1")) is None
    assert m.route_mismatch(q, req("/?q=12")) is not None
    assert m.route_mismatch(q, req("/?p=1")) is not None
    assert m.route_mismatch(q, req("/?q=1&q=2")) is None  # the first value counts
    present = route({"prefix": "/", "query_parameters": [{"name": "p", "present_match": True}]})
    assert m.route_mismatch(present, req("/?p")) is None
    regex = route(
        {"prefix": "/", "query_parameters": [{"name": "r", "string_match": {"safe_regex": {"regex": "a+b"}}}]}
    )
    assert m.route_mismatch(regex, req("/?r=aaab")) is None
    assert m.route_mismatch(regex, req("/?r=b")) is not None
    assert m.route_mismatch(regex, req("/?r=a%2Bb")) is not None  # decoded: "a+b" does not match a+b's regex


def test_connect_requests_only_match_connect_routes() -> None:
    connect = {"match": {"connect_matcher": {}}, "route": {"cluster": "c"}}
    plain = route({"prefix": "/"})
    c = m.Request(authority="echo:80", path="", method="CONNECT")
    assert m.route_mismatch(connect, c) is None
    assert m.route_mismatch(plain, c) is not None
    assert m.route_mismatch(connect, req()) is not None


def test_first_match_wins_and_skipped_routes_say_why() -> None:
    vh = {"routes": [route({"prefix": "/a"}), route({"prefix": "/a/b"}), route({"prefix": "/"})]}
    found = m.select_route(vh, req("/a/b"))
    assert found.index == 0
    found = m.select_route(vh, req("/x"))
    assert found.index == 2 and [i for i, _, _ in found.skipped] == [0, 1]
    assert "does not match '/x'" in found.skipped[0][2]


def test_request_from_url() -> None:
    r = m.request_from_url("http://echo:80/x?y=1", "post", [("Host", "other"), ("X-A", "b")])
    assert (r.authority, r.path, r.method) == ("other", "/x?y=1", "POST")
    assert ("x-a", "b") in r.headers and any(k == "x-request-id" for k, _ in r.headers)
    assert m.request_from_url("http://echo:9090").authority == "echo:9090"
    t = m.request_from_url("tcp://db:5432")
    assert t.is_connect and t.authority == "db:5432"


def _claim(path: list[str], value: dict, invert: bool = False) -> dict:
    return {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}] + [{"key": k} for k in path],
        "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": value}}, value]}},
        "invert": invert,
    }


def test_jwt_claim_metadata_matchers() -> None:
    md = {"envoy.filters.http.jwt_authn": {"payload": {"group": "dev", "team": {"ids": ["a", "b"]}, "n": 3}}}
    exact_dev = _claim(["group"], {"string_match": {"exact": "dev"}})
    assert m.metadata_matches(exact_dev, md)
    assert not m.metadata_matches(exact_dev, {})
    assert m.metadata_matches({**exact_dev, "invert": True}, {})  # withoutHeaders: no token at all
    nested = _claim(["team", "ids"], {"string_match": {"prefix": "b"}})
    assert m.metadata_matches(nested, md)
    assert not m.metadata_matches(_claim(["n"], {"string_match": {"exact": "3"}}), md)  # a number
    present = _claim(["team"], {"present_match": True}, invert=True)
    assert not m.metadata_matches(present, md)
    assert m.describe_metadata_matcher(present) == "JWT claim team absent"
    assert m.describe_metadata_matcher(nested) == "JWT claim team.ids prefix 'b'"
    assert m.describe_match({"prefix": "/", "dynamic_metadata": [exact_dev]}) == (
        "path prefix '/', JWT claim group exact 'dev'"
    )


def test_request_jwt_payload_is_read_unverified() -> None:
    import base64
    import json

    body = base64.urlsafe_b64encode(json.dumps({"sub": "x", "scope": "a b"}).encode()).decode().rstrip("=")
    req = m.request_from_url("http://a/", headers=[("Authorization", f"Bearer e30.{body}.sig")])
    assert req.jwt_payload() == {"sub": "x", "scope": ["a", "b"]}  # space-delimited, as jwt_authn
    assert m.request_from_url("http://a/", headers=[("Authorization", "Basic abc")]).jwt_payload() is None
    assert m.request_from_url("http://a/", headers=[("Authorization", "Bearer a.!!.c")]).jwt_payload() is None
    assert m.request_from_url("http://a/").dynamic_metadata() == {}
