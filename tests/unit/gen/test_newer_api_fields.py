"""Fields istio/api added after Isthmus's first model, from YAML to the Envoy config they become.

- StringMatch.suffix (istio/api#3759, istio/istio#61294): Envoy's StringMatcher `suffix` in header,
  query, authority, scheme, method and withoutHeaders matches and CORS allowOrigins; refused for `uri`.
- HTTPRoute.sessionPersistence: Envoy's stateful_session filter (cookie or header session state) per route.
- JWTRule.presence (istio/api#3737, #3801) and failedStatusInMetadata: the jwt_authn requirement and the
  provider's `failed_status_in_metadata`.
- TrafficPolicy.compression.response.decompress: decompressor filters on the outbound HCMs, disabled, and
  enabled on the routes to destinations whose policy decompresses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import PODS, configs, generate, route_table, sidecar, snapshot, vhost

from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.model.snapshot import Snapshot
from isthmus.model.virtual_services import _string_match_conflict
from isthmus.xds.gen import compression, naming, session
from isthmus.xds.gen.authz import JWT_FAILED_STATUS

HCM = "envoy.filters.network.http_connection_manager"
SP = "envoy.filters.http.stateful_session"


def errors(doc: str) -> list[tuple[str, str]]:
    """(field, message) of the load and validation errors and the running mesh's refusals."""
    report = loader.load_text_report(doc, "t.yaml")
    found = [m for m in report.messages if m.level == "Error"]
    for res in report.resources:
        found.extend([*check_supported(res)])
    return [(e.field or "", e.message) for e in found]


def vs(http: list[dict[str, Any]], hosts: list[str] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "ratings", "namespace": "default"},
            "spec": {"hosts": hosts or ["ratings.other.svc.cluster.local"], "http": http},
        }
    )


TO_RATINGS = [{"destination": {"host": "ratings.other.svc.cluster.local"}}]


def ratings_routes(doc: str) -> list[dict[str, Any]]:
    """The VirtualService's routes in the ratings virtual host of the web sidecar (not the CONNECT one)."""
    routes = vhost(route_table(snapshot(doc), sidecar()), "ratings.other.svc.cluster.local:9080")["routes"]
    return [r for r in routes if r.get("name") != "connect"]


# --- StringMatch.suffix ---------------------------------------------------------------------------


def test_suffix_becomes_envoy_suffix_matchers() -> None:
    doc = vs(
        [
            {
                "match": [
                    {
                        "authority": {"suffix": ".svc.cluster.local"},
                        "headers": {"referer": {"suffix": ".example.com"}},
                        "queryParams": {"token": {"suffix": "-dev"}},
                        "withoutHeaders": {"end-user": {"suffix": "son"}},
                        "method": {"suffix": "ET"},
                        "scheme": {"suffix": "tp"},
                    }
                ],
                "route": TO_RATINGS,
            }
        ]
    )
    assert errors(doc) == []
    match = ratings_routes(doc)[0]["match"]
    headers = {h["name"]: h for h in match["headers"]}
    assert headers[":authority"]["string_match"] == {"suffix": ".svc.cluster.local"}
    assert headers["referer"]["string_match"] == {"suffix": ".example.com"}
    assert headers[":method"]["string_match"] == {"suffix": "ET"}
    assert headers[":scheme"]["string_match"] == {"suffix": "tp"}
    assert headers["end-user"] == {
        "name": "end-user",
        "string_match": {"suffix": "son"},
        "invert_match": True,
        "treat_missing_header_as_empty": True,
    }
    assert match["query_parameters"] == [{"name": "token", "string_match": {"suffix": "-dev"}}]


def test_suffix_in_cors_allow_origins() -> None:
    doc = vs([{"corsPolicy": {"allowOrigins": [{"suffix": ".example.com"}]}, "route": TO_RATINGS}])
    assert errors(doc) == []
    cors = ratings_routes(doc)[0]["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [{"suffix": ".example.com"}]


@pytest.mark.parametrize(
    ("match", "field", "message"),
    [
        (
            {"uri": {"suffix": ".json"}},
            "spec.http[0].match[0].uri.suffix",
            "suffix string match is not supported",
        ),
        ({"headers": {"x": {"suffix": ""}}}, "spec.http[0].match[0].headers.x.suffix", "should not be empty"),
        ({"authority": {"suffix": ""}}, "spec.http[0].match[0].authority.suffix", "should not be empty"),
    ],
)
def test_suffix_refused(match: dict[str, Any], field: str, message: str) -> None:
    errs = errors(vs([{"match": [match], "route": TO_RATINGS}]))
    assert any(f == field and message in m for f, m in errs), errs


def test_suffix_and_another_kind_is_one_too_many() -> None:
    errs = errors(vs([{"match": [{"authority": {"suffix": ".a", "exact": "b"}}], "route": TO_RATINGS}]))
    assert errs and "authority" in errs[0][0]


@pytest.mark.parametrize(
    ("root", "leaf", "conflict"),
    [
        ({"suffix": ".com"}, {"suffix": ".example.com"}, False),
        ({"suffix": ".com"}, {"exact": "a.example.com"}, False),
        ({"suffix": ".com"}, {"suffix": ".org"}, True),
        ({"suffix": ".com"}, {"exact": "a.org"}, True),
        ({"suffix": ".com"}, {"prefix": "a"}, True),
        ({"suffix": ".com"}, {"regex": ".*"}, True),
        ({"exact": "a.com"}, {"suffix": ".com"}, True),
        ({"prefix": "a"}, {"suffix": ".com"}, True),
        ({"regex": ".*"}, {"suffix": ".com"}, True),
    ],
)
def test_delegate_suffix_conflicts(root: dict[str, str], leaf: dict[str, str], conflict: bool) -> None:
    from isthmus.api.networking import StringMatch

    assert _string_match_conflict(StringMatch(**root), StringMatch(**leaf)) is conflict


# --- HTTPRoute.sessionPersistence -----------------------------------------------------------------


def _sp_route(sp: dict[str, Any]) -> dict[str, Any]:
    doc = vs([{"sessionPersistence": sp, "route": TO_RATINGS}])
    assert errors(doc) == []
    cfg = ratings_routes(doc)[0]["typed_per_filter_config"][SP]
    return cfg["stateful_session"]["session_state"]


def test_session_persistence_cookie() -> None:
    state = _sp_route(
        {
            "absoluteTimeout": "5m",
            "cookie": {"name": "ratings-session", "path": "/ratings", "lifetimeType": "PERMANENT"},
        }
    )
    assert state["name"] == session.COOKIE_STATE
    assert state["typed_config"]["cookie"] == {"name": "ratings-session", "path": "/ratings", "ttl": "300s"}


def test_session_persistence_session_cookie_has_no_ttl() -> None:
    state = _sp_route({"cookie": {"name": "s"}})
    assert state["typed_config"]["cookie"] == {"name": "s"}


def test_session_persistence_header() -> None:
    state = _sp_route({"type": "HEADER", "header": {"name": "x-ratings-session"}})
    assert state["name"] == session.HEADER_STATE
    assert state["typed_config"]["name"] == "x-ratings-session"


def _hcm_filters(*docs: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, lst in generate(snapshot(*docs), sidecar(), naming.LISTENER_TYPE).items():
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    out[name] = [h["name"] for h in f["typed_config"]["http_filters"]]
    return out


def test_session_filter_on_outbound_only_when_used() -> None:
    assert all(SP not in names for names in _hcm_filters().values())
    doc = vs([{"sessionPersistence": {"cookie": {"name": "s"}}, "route": TO_RATINGS}])
    filters = _hcm_filters(doc)
    inbound = filters.pop(naming.listener_name("127.7.0.5", 8080))
    assert SP not in inbound
    assert filters and all(
        names.index(SP) < names.index("envoy.filters.http.router") for names in filters.values()
    )


def test_session_filter_follows_a_virtualservice_only_change() -> None:
    """After a change of VirtualServices only, a sidecar's listeners are the previous snapshot's, unless
    the change turns sessionPersistence on or off (the one thing of VirtualServices they read)."""
    plain = vs([{"route": TO_RATINGS}])
    sticky = vs([{"sessionPersistence": {"cookie": {"name": "s"}}, "route": TO_RATINGS}])
    old = Snapshot.build(1, configs(plain), PODS)
    generate(old, sidecar(), naming.LISTENER_TYPE)  # fills the memo the VirtualService-only path reuses
    new = Snapshot.build_configs_changed(old, 2, configs(sticky), frozenset({"VirtualService"}))
    assert new is not None
    new.routes_changed_from = old
    for name, lst in generate(new, sidecar(), naming.LISTENER_TYPE).items():
        hcms = [f for c in lst["filter_chains"] for f in c["filters"] if f["name"] == HCM]
        if hcms and name != naming.listener_name("127.7.0.5", 8080):
            assert all(SP in [h["name"] for h in m["typed_config"]["http_filters"]] for m in hcms), name


@pytest.mark.parametrize(
    ("sp", "message"),
    [
        ({"type": "HEADER"}, "type must match the specified session persistence configuration"),
        (
            {"type": "HEADER", "cookie": {"name": "s"}},
            "type must match the specified session persistence configuration",
        ),
        ({"header": {"name": "x"}}, "type must match the specified session persistence configuration"),
        ({}, "type must match the specified session persistence configuration"),
        ({"cookie": {"name": "s", "lifetimeType": "PERMANENT"}}, "needs absoluteTimeout"),
        ({"absoluteTimeout": "5m", "cookie": {"name": "s"}}, "needs cookie.lifetimeType PERMANENT"),
        ({"type": "HEADER", "absoluteTimeout": "5m", "header": {"name": "x"}}, "not supported for HEADER"),
        ({"type": "HEADER", "header": {"name": "bad header"}}, "not a valid header name"),
        ({"cookie": {"path": "/"}}, "cookie name must not be empty"),
    ],
)
def test_session_persistence_refused(sp: dict[str, Any], message: str) -> None:
    errs = errors(vs([{"sessionPersistence": sp, "route": TO_RATINGS}]))
    # validation names the field; the running mesh's refusals (check_supported) start the message with it
    where = "spec.http[0].sessionPersistence"
    assert any((f.startswith(where) or m.startswith(where)) and message in m for f, m in errs), errs


# --- JWTRule.presence, failedStatusInMetadata ----------------------------------------------------

JWKS = '{"keys":[{"kty":"RSA","e":"AQAB","n":"' + "q" * 342 + '"}]}'


def _jwt(*rules: dict[str, Any]) -> dict[str, Any]:
    doc = json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "ra", "namespace": "default"},
            "spec": {"jwtRules": [{"jwks": JWKS, **r} for r in rules]},
        }
    )
    assert errors(doc) == []
    ext = generate(snapshot(doc), sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    return ext[naming.JWT_EXTENSION]["typed_config"]


def _opt(name: str) -> dict[str, Any]:
    return {"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}


def test_presence_optional_is_istiods_requirement() -> None:
    assert _jwt({"issuer": "a", "presence": "OPTIONAL"})["rules"][0]["requires"] == _opt("origins-0")


def test_presence_required_alone_is_the_bare_provider() -> None:
    assert _jwt({"issuer": "a", "presence": "REQUIRED"})["rules"][0]["requires"] == {
        "provider_name": "origins-0"
    }


def test_presence_mixed() -> None:
    cfg = _jwt(
        {"issuer": "a", "presence": "REQUIRED"},
        {"issuer": "b"},
        {"issuer": "c", "presence": "IGNORED", "failedStatusInMetadata": True},
    )
    assert cfg["rules"][0]["requires"] == {
        "requires_all": {
            "requirements": [
                {"provider_name": "origins-0"},
                _opt("origins-1"),
                {
                    "requires_any": {
                        "requirements": [{"provider_name": "origins-2"}, {"allow_missing_or_failed": {}}]
                    }
                },
            ]
        }
    }
    assert cfg["providers"]["origins-2"]["failed_status_in_metadata"] == JWT_FAILED_STATUS
    assert "failed_status_in_metadata" not in cfg["providers"]["origins-0"]


def test_presence_refuses_unknown_value() -> None:
    doc = json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "ra", "namespace": "default"},
            "spec": {"jwtRules": [{"issuer": "a", "jwks": JWKS, "presence": "SOMETIMES"}]},
        }
    )
    with pytest.raises(Exception, match="presence"):
        loader.load_text(doc, "t.yaml")


# --- TrafficPolicy.compression --------------------------------------------------------------------


def dr(spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "ratings", "namespace": "other"},
            "spec": {"host": "ratings.other.svc.cluster.local", **spec},
        }
    )


DECOMPRESS = {"response": {"decompress": {}}}


DECOMPRESSORS = [name for name, _, _ in compression.DECOMPRESSORS]
FILTER_CONFIG = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig"}
# a `config` set but empty: Envoy's way of enabling a filter the HCM disables
ENABLE = {**FILTER_CONFIG, "config": {}}
DISABLE = {**FILTER_CONFIG, "disabled": True}


def _decompress_config(route: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in route.get("typed_per_filter_config", {}).items() if k in DECOMPRESSORS}


def test_decompressors_on_outbound_hcms_disabled() -> None:
    assert all(DECOMPRESSORS[0] not in names for names in _hcm_filters().values())
    doc = dr({"trafficPolicy": {"compression": DECOMPRESS}})
    assert errors(doc) == []
    out: dict[str, list[dict[str, Any]]] = {}
    for name, lst in generate(snapshot(doc), sidecar(), naming.LISTENER_TYPE).items():
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    out[name] = f["typed_config"]["http_filters"]
    inbound = out.pop(naming.listener_name("127.7.0.5", 8080))
    assert all(h["name"] not in DECOMPRESSORS for h in inbound)
    for filters in out.values():
        names = [h["name"] for h in filters]
        assert names[-4:] == [*DECOMPRESSORS, "envoy.filters.http.router"]
        gzip = filters[-4]
        assert gzip["disabled"] is True
        cfg = gzip["typed_config"]
        assert cfg["decompressor_library"]["name"] == "envoy.compression.gzip.decompressor"
        # response direction only
        assert cfg["request_direction_config"]["common_config"]["enabled"]["default_value"] is False


def test_decompress_enabled_on_routes_to_the_destination() -> None:
    doc = dr({"trafficPolicy": {"compression": DECOMPRESS}})
    table = route_table(snapshot(doc), sidecar())
    (route,) = [
        r for r in vhost(table, "ratings.other.svc.cluster.local:9080")["routes"] if r["name"] != "connect"
    ]
    assert _decompress_config(route) == dict.fromkeys(DECOMPRESSORS, ENABLE)
    (other,) = [
        r for r in vhost(table, "reviews.default.svc.cluster.local:9080")["routes"] if r["name"] != "connect"
    ]
    assert _decompress_config(other) == {}


def test_decompress_layering_and_splits() -> None:
    rule = dr(
        {
            "trafficPolicy": {
                "compression": DECOMPRESS,
                "portLevelSettings": [
                    {
                        "port": {"number": 9080},
                        "compression": {"response": {"decompress": {"enabled": False}}},
                    }
                ],
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"compression": DECOMPRESS}},
            ],
        }
    )
    split = vs(
        [
            {
                "route": [
                    {
                        "destination": {"host": "ratings.other.svc.cluster.local", "subset": "v1"},
                        "weight": 50,
                    },
                    {
                        "destination": {"host": "ratings.other.svc.cluster.local", "subset": "v2"},
                        "weight": 50,
                    },
                ]
            }
        ]
    )
    assert errors(rule) == [] and errors(split) == []
    (route,) = ratings_routes(rule + "\n---\n" + split)
    # the port-level entry switches it off for port 9080 (so for subset v1, which has no policy of its
    # own), subset v2's own policy turns it on: enabled on the route, disabled again on v1's share
    assert _decompress_config(route) == dict.fromkeys(DECOMPRESSORS, ENABLE)
    v1, v2 = route["route"]["weighted_clusters"]["clusters"]
    assert _decompress_config(v1) == dict.fromkeys(DECOMPRESSORS, DISABLE)
    assert _decompress_config(v2) == {}


def test_compression_alone_is_a_traffic_policy() -> None:
    assert (
        errors(dr({"trafficPolicy": {"compression": {"response": {"decompress": {"enabled": False}}}}})) == []
    )
