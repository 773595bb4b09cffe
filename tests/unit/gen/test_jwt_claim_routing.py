"""VirtualService routing on JWT claims (`@request.auth.claims...`), as istiod translates it.

Sources (istio/istio): pkg/jwt/routing_test.go (TestToRoutingClaim), pilot/pkg/networking/core/route/
route.go (translateMetadataMatch) and route_test.go (virtualServiceWithExactMatchingOnHeaderForJWTClaims),
pilot/pkg/security/authz/model (MetadataListMatcher with extended JWT), pilot/pkg/security/authn
(convertToEnvoyJwtConfig: payload_in_metadata, clear_route_cache on non-sidecar proxies).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from gen_helpers import generate, sidecar, snapshot
from test_istio_route_parity import GATEWAY, gateway_routes, vs

from isthmus.api import networking as n
from isthmus.api.validation.common import routing_claim
from isthmus.xds.gen import naming
from isthmus.xds.gen.routes import translate_route_match

JWT = "envoy.filters.http.jwt_authn"


@pytest.mark.parametrize(
    ("name", "claims"),
    [
        ("@request.auth.claims", None),
        ("@request.auth.claims-", None),
        ("request.auth.claims.", None),
        ("@request.auth.claims.", None),
        ("@request.auth.claims-abc", None),
        ("x-some-other-header", None),
        ("@request.auth.claims.key1", ["key1"]),
        ("@request.auth.claims.key1.KEY2", ["key1", "KEY2"]),
        ("@request.auth.claims.key1-key2", ["key1-key2"]),
        ("@request.auth.claims[]", None),
        ("@request.auth.claims[key1", None),
        ("@request.auth.claims]key1", None),
        ("@request.auth.claims.[key1]", ["[key1]"]),  # `.` wins
        ("@request.auth.claims[key1]", ["key1"]),
        ("@request.auth.claims[key1][key2]", ["key1", "key2"]),
        ("@request.auth.claims[key1] [key2]", ["key1] [key2"]),
        ("@request.auth.claims[test-issuer-2@istio.io][key1]", ["test-issuer-2@istio.io", "key1"]),
        ("@REQUEST.auth.claims.k", ["k"]),  # the prefix is compared lower-cased
    ],
)
def test_routing_claim_follows_istio(name: str, claims: list[str] | None) -> None:
    assert routing_claim(name) == claims


def _claim(path: list[str], value: dict[str, Any], invert: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "filter": JWT,
        "path": [{"key": "payload"}] + [{"key": k} for k in path],
        "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": value}}, value]}},
    }
    if invert:
        out["invert"] = True
    return out


def _match(spec: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    m = n.HTTPMatchRequest.model_validate(spec)
    return MessageToDict(translate_route_match(m), preserving_proto_field_name=True)


def test_claims_become_jwt_metadata_matches_and_without_headers_inverts() -> None:
    # route_test.go virtualServiceWithExactMatchingOnHeaderForJWTClaims: no header matcher is left.
    got = _match(
        {
            "headers": {"@request.auth.claims.Foo": {"exact": "Bar"}, "x-a": {"prefix": "b"}},
            "withoutHeaders": {"@request.auth.claims.Bla": {"exact": "Bar"}},
        }
    )
    assert got["headers"] == [{"name": "x-a", "string_match": {"prefix": "b"}}]
    assert got["dynamic_metadata"] == [
        _claim(["Bla"], {"string_match": {"exact": "Bar"}}, invert=True),
        _claim(["Foo"], {"string_match": {"exact": "Bar"}}),
    ]


def test_nested_claims_in_both_forms_and_every_string_match() -> None:
    got = _match(
        {
            "headers": {
                "@request.auth.claims[team][name]": {"prefix": "pay"},
                "@request.auth.claims.org.id": {"regex": "[0-9]+"},
            }
        }
    )
    # In key order (istiod's Go map order is random): `.` sorts before `[`.
    assert got["dynamic_metadata"] == [
        _claim(["org", "id"], {"string_match": {"safe_regex": {"regex": "[0-9]+"}}}),
        _claim(["team", "name"], {"string_match": {"prefix": "pay"}}),
    ]


@pytest.mark.parametrize("spec", [{}, {"regex": "*"}])
def test_present_style_claim_matches_mean_present(spec: dict[str, str]) -> None:
    # istiod would hand Envoy a StringMatcher it NACKs (none, or the RE2 `*`); "present" is what
    # `*` means for headers, and withoutHeaders turns it into "absent".
    got = _match({"withoutHeaders": {"@request.auth.claims.group": spec}})
    assert "headers" not in got
    assert got["dynamic_metadata"] == [_claim(["group"], {"present_match": True}, invert=True)]


def test_claim_routes_on_a_gateway_are_not_catch_alls() -> None:
    doc = vs(
        """
- match: [{headers: {'@request.auth.claims.group': {exact: dev}}}]
  route: [{destination: {host: reviews, subset: v2}}]
- route: [{destination: {host: reviews, subset: v1}}]
""",
        name="a",
        hosts="[a.example.com]\n  gateways: [istio-system/gw]",
    )
    first, second = gateway_routes(doc, route_name="http.80", host="a.example.com")
    assert first["match"]["dynamic_metadata"] == [_claim(["group"], {"string_match": {"exact": "dev"}})]
    assert first["route"]["cluster"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert "dynamic_metadata" not in second["match"]


REQUEST_AUTHN = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{"keys": []}'
"""


def _jwt_provider(proxy: Any, *docs: str) -> dict[str, Any]:
    ext = generate(snapshot(*docs), proxy, naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})[
        naming.JWT_EXTENSION
    ]
    return ext["typed_config"]["providers"]["origins-0"]


def _gateway_proxy() -> Any:
    return dataclasses.replace(
        sidecar("gw-0", "istio-system", {"istio": "ingressgateway"}, "127.7.0.9"), kind="gateway"
    )


def test_gateway_jwt_provider_puts_the_payload_where_routes_read_it_and_reroutes() -> None:
    prov = _jwt_provider(_gateway_proxy(), GATEWAY, REQUEST_AUTHN)
    assert prov["payload_in_metadata"] == "payload"
    # Routing happened before jwt_authn ran: the gateway must pick the route again with the claims.
    assert prov["clear_route_cache"] is True
    assert prov["normalize_payload_in_metadata"] == {"space_delimited_claims": ["permission", "scope"]}


def test_sidecar_jwt_provider_keeps_the_route_cache() -> None:
    authn = REQUEST_AUTHN.replace("istio-system", "default").replace("{istio: ingressgateway}", "{app: web}")
    prov = _jwt_provider(sidecar(), authn)
    assert prov["payload_in_metadata"] == "payload"
    assert "clear_route_cache" not in prov
