"""RequestAuthentication -> jwt_authn, against istiod's own authentication unit tests.

Sources (istio/istio): `pilot/pkg/security/authn/policy_applier_test.go` (TestJwtFilter,
TestConvertToEnvoyJwtConfig, TestBuildSpaceDelimitedClaims; TestInboundMTLSSettings and
TestComposePeerAuthentication), with the code they test: `policy_applier.go` (newPolicyApplier,
JwtFilter, convertToEnvoyJwtConfig, buildSpaceDelimitedClaims), `pilot/pkg/model/jwks_resolver.go`
(BuildLocalJwks, PublicOnlyJwks) and the authn builder's BuildHTTP (`pilot/pkg/security/authn/
factory.go`: jwt_authn on inbound and gateway listeners only, clear_route_cache off sidecars).

Each case is written as the RequestAuthentication YAML a user applies and checked on the jwt_authn config
Isthmus generates for the workload's sidecar. Isthmus delivers that config over ECDS (one
TypedExtensionConfig named after the filter, which every inbound HTTP connection manager references), so
the expected value is istiod's JwtAuthentication message itself, compared field for field.

Departures by design:
- Key sources: istiod fetches an `http(s)` jwksUri itself (JwksFetchMode Istiod, the default) or lets
  Envoy fetch it (`remote_jwks`, modes Envoy/Hybrid). Isthmus does what the default does: its control
  plane's JWKS resolver (config/jwks_resolver.py, tested in tests/unit/mesh/test_jwks_resolver.py)
  fetches the keys into the snapshot and the generator inlines them; it also reads `file://` URIs into
  the snapshot (gen_helpers.snapshot reads them with the resolver's loader; the generator reads no file).
  istiod's cases that name a JWKS served by its mock server are ported with a `file://` URI holding
  that JWKS (the same inline key set results) or with the snapshot holding the fetched keys; those
  whose URI cannot be fetched, with a `file://` URI to a missing file (the same PublicOnlyJwks
  results); the remote-fetch-mode cases, in the default mode (the keys inlined).
- istiod's inline `jwks: "jwks-inline-data"` is not a JWKS and admission rejects it; a real key set
  stands in for it.
- istiod returns no filter when no rule applies; Isthmus keeps the ECDS filter (so a
  RequestAuthentication change never replaces a listener) and sends it a config with no provider and no
  requirement, which enforces nothing: the same behaviour.
- TestInboundMTLSSettings and TestComposePeerAuthentication are ported in test_istio_inbound_parity.py
  (chains per mode, port level hit/miss, TLS contexts, composition) and, for several workload policies
  by age, in tests/unit/model/test_istio_policy_selection_parity.py; only the cases not covered there
  are added here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gen_helpers import generate, sidecar, snapshot

from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.api.validation import validate
from isthmus.model.jwks import PENDING, JwksEntry
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import authz, naming

HCM = "envoy.filters.network.http_connection_manager"
JWT = "envoy.filters.http.jwt_authn"
FOO, BAR = "https://secret.foo.com", "https://secret.bar.com"


def _b64url(n: int, size: int | None = None) -> str:
    return (
        base64.urlsafe_b64encode(n.to_bytes(size or (n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    )


def _rsa_n() -> str:
    return _b64url(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    )


# Two distinct key sets standing in for istiod's test.JwtPubKey1 / JwtPubKey2 and its inline data: real
# public keys, as Envoy loads only key sets with a usable key (see test_fuzz_findings.py; the generator
# replaces others with PublicOnlyJwks). The EC key is P-256's base point.
JWT_PUB_KEY_1 = json.dumps({"keys": [{"kty": "RSA", "kid": "key-1", "e": "AQAB", "n": _rsa_n()}]})
JWT_PUB_KEY_2 = json.dumps({"keys": [{"kty": "RSA", "kid": "key-2", "e": "AQAB", "n": _rsa_n()}]})
_P256_X = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_P256_Y = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
INLINE_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "EC",
                "kid": "inline",
                "crv": "P-256",
                "x": _b64url(_P256_X, 32),
                "y": _b64url(_P256_Y, 32),
            }
        ]
    }
)

# What a provider whose keys cannot be had gets (istiod: PublicOnlyJwks): a public key no token verifies
# against. Isthmus's own key, so the constant is compared, and its shape checked in
# test_public_only_jwks_has_no_kid_and_no_private_half.
PUBLIC_ONLY_JWKS = authz.PUBLIC_ONLY_JWKS


# --- building YAML and reading what we generate ------------------------------------------------


def request_authn(name: str, *rules: dict[str, Any], namespace: str = "default", **spec: Any) -> str:
    body: dict[str, Any] = {**spec}
    if rules:
        body["jwtRules"] = list(rules)
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": namespace},
            "spec": body,
        }
    )


def admitted(doc: str) -> str:
    """The document, once checked admissible (validation and Isthmus's supported set)."""
    (resource,) = loader.load_text(doc, "ra.yaml")
    assert validate(resource) == [] and check_supported(resource) == [], doc
    return doc


def jwt_authn(*docs: str, proxy: Proxy | None = None) -> dict[str, Any]:
    """The JwtAuthentication the proxy (default: the web sidecar) gets over ECDS, as a dict."""
    snap = snapshot(*(admitted(d) for d in docs))
    ext = generate(snap, proxy or sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    config = dict(ext[naming.JWT_EXTENSION]["typed_config"])
    config.pop("@type")
    return config


def jwks_file(tmp_path: Path, content: str, name: str = "jwks.json") -> str:
    """A `file://` jwksUri holding `content` (what istiod's mock server would have served)."""
    path = tmp_path / name
    path.write_text(content)
    return f"file://{path}"


def missing_file(tmp_path: Path) -> str:
    """A `file://` jwksUri that cannot be read (istiod: a jwksUri that cannot be fetched)."""
    return f"file://{tmp_path}/site.not.exist/jwks.json"


# --- istiod's expected messages, as dicts (proto field names; default values omitted) -----------


def space_delimited(custom: list[str] | None = None) -> list[str]:
    """buildSpaceDelimitedClaims: the custom claims plus "permission" and "scope", deduplicated, sorted."""
    return sorted({*(custom or ()), "permission", "scope"})


def provider(issuer: str, jwks: str, claims: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"issuer": issuer, "local_jwks": {"inline_string": jwks}, **fields}
    out["payload_in_metadata"] = "payload"
    out["normalize_payload_in_metadata"] = {"space_delimited_claims": space_delimited(claims)}
    return out


def one_of(name: str) -> dict[str, Any]:
    return {"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}


def requirement(names: list[str]) -> dict[str, Any]:
    """convertToEnvoyJwtConfig: one provider is OR{P, allow_missing}; several are
    OR{P1, P2, ..., AND{OR{P1, allow_missing}, OR{P2, allow_missing}, ...}}."""
    if len(names) == 1:
        return one_of(names[0])
    inner = {"requires_all": {"requirements": [one_of(n) for n in names]}}
    return {"requires_any": {"requirements": [*({"provider_name": n} for n in names), inner]}}


def expected(*providers: dict[str, Any]) -> dict[str, Any]:
    names = [f"origins-{i}" for i in range(len(providers))]
    return {
        "providers": dict(zip(names, providers, strict=True)),
        "rules": [{"match": {"prefix": "/"}, "requires": requirement(names)}],
        "bypass_cors_preflight": True,
    }


def enforces_nothing(config: dict[str, Any]) -> bool:
    return not config.get("providers") and not config.get("rules")


# --- TestJwtFilter ----------------------------------------------------------------------------


def test_jwt_filter_no_policy() -> None:
    """TestJwtFilter "No policy": istiod adds no filter; ours gets a config that enforces nothing."""
    assert enforces_nothing(jwt_authn())


def test_jwt_filter_empty_policy() -> None:
    """TestJwtFilter "Empty policy": a RequestAuthentication without rules adds no provider."""
    assert enforces_nothing(jwt_authn(request_authn("empty")))


def test_jwt_filter_single_jwt_policy(tmp_path: Path) -> None:
    """TestJwtFilter "Single JWT policy": the key set at jwksUri is inlined (local_jwks)."""
    doc = request_authn("ra", {"issuer": FOO, "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1)})
    assert jwt_authn(doc) == expected(provider(FOO, JWT_PUB_KEY_1))


@pytest.mark.parametrize(
    ("case", "issuer", "uri"),
    [
        ("JWT policy with Mesh cluster as issuer and remote jwks mode Hybrid", "mesh cluster",
         "http://jwt-token-issuer.mesh:7443/jwks"),
        ("JWT policy with Mesh cluster as issuer and remote jwks mode Envoy", "mesh cluster",
         "http://jwt-token-issuer.mesh:7443/jwks"),
        ("JWT policy with non Mesh cluster as issuer and remote jwks mode Hybrid", "invalid|7443|",
         "http://127.0.0.1:8080/oauth2/v3/certs"),
        ("JWT policy with non Mesh cluster as issuer and remote jwks mode Envoy", "invalid|7443|",
         "http://invalid-issuer.com:7443/jwks"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("JWT") else None,
)  # fmt: skip
def test_jwt_filter_remote_jwks_uris_are_fetched_by_the_control_plane(
    case: str, issuer: str, uri: str
) -> None:
    """TestJwtFilter's remote-fetch-mode cases (PILOT_JWT_ENABLE_REMOTE_JWKS Envoy / Hybrid: remote_jwks
    to the URI's cluster) in istiod's default mode (Istiod): the http(s) jwksUri is admitted and the
    control plane's JWKS resolver fetches it; the generator inlines what the snapshot holds for
    (issuer, jwksUri) (BuildLocalJwks). While the keys are not fetched yet, or the fetch failed, the
    provider gets the fake key set (PublicOnlyJwks) and the snapshot says why."""
    doc = admitted(request_authn("ra", {"issuer": issuer, "jwksUri": uri}))
    snap = snapshot(doc)
    snap.jwks = {(issuer, uri): JwksEntry(keys=JWT_PUB_KEY_1, uri=uri)}
    assert _jwt_of(snap) == expected(provider(issuer, JWT_PUB_KEY_1)), case
    for entry, why in (
        (PENDING, "not fetched yet"),
        (JwksEntry(error='status 404, message ""', uri=uri), "fetching its keys failed: status 404"),
    ):
        snap = snapshot(doc)
        snap.jwks = {(issuer, uri): entry}
        assert _jwt_of(snap) == expected(provider(issuer, PUBLIC_ONLY_JWKS)), case
        (what,) = snap.generation_errors
        assert what == f"RequestAuthentication default/ra jwksUri {uri}", what
        assert why in snap.generation_errors[what], snap.generation_errors


def test_jwt_filter_empty_jwks_uri_uses_openid_discovery() -> None:
    """No jwksUri and no jwks: istiod's GetPublicKey resolves the URI through the issuer's OpenID
    discovery (resolveJwksURIUsingOpenID); the snapshot holds the result under (issuer, "")."""
    doc = admitted(request_authn("ra", {"issuer": FOO}))
    snap = snapshot(doc)
    snap.jwks = {(FOO, ""): JwksEntry(keys=JWT_PUB_KEY_2, uri=FOO + "/jwks")}
    assert _jwt_of(snap) == expected(provider(FOO, JWT_PUB_KEY_2))
    assert not snap.generation_errors


def _jwt_of(snap: Any) -> dict[str, Any]:
    ext = generate(snap, sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    config = dict(ext[naming.JWT_EXTENSION]["typed_config"])
    config.pop("@type")
    return config


def test_jwt_filter_remote_jwks_issuer_is_kept_verbatim(tmp_path: Path) -> None:
    """TestJwtFilter "... non Mesh cluster as issuer ..." with the keys at hand: an issuer that looks
    like a cluster name ("invalid|7443|") is only an issuer, copied as is."""
    doc = request_authn("ra", {"issuer": "invalid|7443|", "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_2)})
    assert jwt_authn(doc) == expected(provider("invalid|7443|", JWT_PUB_KEY_2))


def test_jwt_filter_multi_jwts_policy(tmp_path: Path) -> None:
    """TestJwtFilter "Multi JWTs policy": the rules of every policy, an empty policy adding none, sorted by
    issuer (newPolicyApplier), so bar is origins-0; two providers give the OR-of-AND requirement."""
    docs = (
        request_authn("foo", {"issuer": FOO, "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1)}),
        request_authn("empty"),
        request_authn("bar", {"issuer": BAR, "jwks": INLINE_JWKS}),
    )
    assert jwt_authn(*docs) == expected(provider(BAR, INLINE_JWKS), provider(FOO, JWT_PUB_KEY_1))


def test_jwt_filter_inline_jwks() -> None:
    """TestJwtFilter "JWT policy with inline Jwks"."""
    doc = request_authn("ra", {"issuer": FOO, "jwks": INLINE_JWKS})
    assert jwt_authn(doc) == expected(provider(FOO, INLINE_JWKS))


def test_jwt_filter_bad_jwks_uri(tmp_path: Path) -> None:
    """TestJwtFilter "JWT policy with bad Jwks URI": keys that cannot be had become PublicOnlyJwks, and
    the snapshot says why (istiod logs it)."""
    uri = missing_file(tmp_path)
    doc = request_authn("ra", {"issuer": FOO, "jwksUri": uri})
    assert jwt_authn(doc) == expected(provider(FOO, PUBLIC_ONLY_JWKS))
    snap = snapshot(admitted(doc))
    assert _jwt_of(snap) == expected(provider(FOO, PUBLIC_ONLY_JWKS))
    (what,) = snap.generation_errors
    assert what == f"RequestAuthentication default/ra jwksUri {uri}", what
    assert "fetching its keys failed: open " in snap.generation_errors[what], snap.generation_errors
    assert "No such file or directory" in snap.generation_errors[what], snap.generation_errors


def test_jwt_filter_forward_original_token(tmp_path: Path) -> None:
    """TestJwtFilter "Forward original token": forward."""
    rule = {"issuer": FOO, "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1), "forwardOriginalToken": True}
    assert jwt_authn(request_authn("ra", rule)) == expected(provider(FOO, JWT_PUB_KEY_1, forward=True))


def test_jwt_filter_output_payload(tmp_path: Path) -> None:
    """TestJwtFilter "Output payload": outputPayloadToHeader is forward_payload_header."""
    rule = {
        "issuer": FOO,
        "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1),
        "forwardOriginalToken": True,
        "outputPayloadToHeader": "x-foo",
    }
    want = provider(FOO, JWT_PUB_KEY_1, forward=True, forward_payload_header="x-foo")
    assert jwt_authn(request_authn("ra", rule)) == expected(want)


def test_jwt_filter_output_claim_to_header(tmp_path: Path) -> None:
    """TestJwtFilter "Output claim to header": outputClaimToHeaders are claim_to_headers, in order."""
    rule = {
        "issuer": FOO,
        "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1),
        "forwardOriginalToken": True,
        "outputClaimToHeaders": [{"header": "x-jwt-key1", "claim": "value1"}, {"header": "x-jwt-key2", "claim": "value2"}],
    }  # fmt: skip
    claims = [
        {"header_name": "x-jwt-key1", "claim_name": "value1"},
        {"header_name": "x-jwt-key2", "claim_name": "value2"},
    ]
    want = provider(FOO, JWT_PUB_KEY_1, forward=True, claim_to_headers=claims)
    assert jwt_authn(request_authn("ra", rule)) == expected(want)


# --- TestConvertToEnvoyJwtConfig --------------------------------------------------------------


def test_convert_no_rule() -> None:
    """TestConvertToEnvoyJwtConfig "No rule": no config (here: one enforcing nothing)."""
    assert enforces_nothing(jwt_authn(request_authn("ra", jwtRules=[])))


def test_convert_single_jwt_rule(tmp_path: Path) -> None:
    """TestConvertToEnvoyJwtConfig "Single JWT rule"."""
    doc = request_authn("ra", {"issuer": FOO, "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1)})
    assert jwt_authn(doc) == expected(provider(FOO, JWT_PUB_KEY_1))


def test_convert_multiple_jwt_rule(tmp_path: Path) -> None:
    """TestConvertToEnvoyJwtConfig "Multiple JWT rule": the providers and the OR-of-AND requirement.
    istiod's test calls convertToEnvoyJwtConfig directly and so keeps the rules' order (foo, bar); a
    policy's rules always reach it through newPolicyApplier, which sorts them by issuer, so a workload
    gets bar as origins-0."""
    doc = request_authn(
        "ra",
        {"issuer": FOO, "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1)},
        {"issuer": BAR, "jwks": INLINE_JWKS},
    )
    assert jwt_authn(doc) == expected(provider(BAR, INLINE_JWKS), provider(FOO, JWT_PUB_KEY_1))


def test_convert_empty_jwks_uri() -> None:
    """TestConvertToEnvoyJwtConfig "Empty Jwks URI": an issuer alone (istiod's OpenID discovery, which
    fails there: the issuer serves nothing) gets PublicOnlyJwks; here the discovery has no result in a
    snapshot built without the control plane's resolver, with the same outcome."""
    assert jwt_authn(request_authn("ra", {"issuer": FOO})) == expected(provider(FOO, PUBLIC_ONLY_JWKS))


def test_convert_unreachable_jwks_uri(tmp_path: Path) -> None:
    """TestConvertToEnvoyJwtConfig "Unreachable Jwks URI": PublicOnlyJwks."""
    doc = request_authn("ra", {"issuer": FOO, "jwksUri": missing_file(tmp_path)})
    assert jwt_authn(doc) == expected(provider(FOO, PUBLIC_ONLY_JWKS))


def test_convert_custom_space_delimited_claims(tmp_path: Path) -> None:
    """TestConvertToEnvoyJwtConfig "Single JWT policy with custom space delimited claims"."""
    rule = {
        "issuer": FOO,
        "jwksUri": jwks_file(tmp_path, JWT_PUB_KEY_1),
        "spaceDelimitedClaims": ["custom_scope", "roles"],
    }
    got = jwt_authn(request_authn("ra", rule))
    assert got == expected(provider(FOO, JWT_PUB_KEY_1, claims=["custom_scope", "roles"]))
    claims = got["providers"]["origins-0"]["normalize_payload_in_metadata"]["space_delimited_claims"]
    assert claims == ["custom_scope", "permission", "roles", "scope"]


# --- TestBuildSpaceDelimitedClaims --------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "claims", "want"),
    [
        ("nil input returns defaults", None, ["permission", "scope"]),
        ("empty input returns defaults", [], ["permission", "scope"]),
        ("custom claims with defaults included", ["custom_scope", "roles"],
         ["custom_scope", "permission", "roles", "scope"]),
        ("custom claims with duplicate defaults", ["scope", "custom_scope", "permission", "roles"],
         ["custom_scope", "permission", "roles", "scope"]),
        ("only custom claims", ["custom1", "custom2"], ["custom1", "custom2", "permission", "scope"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_build_space_delimited_claims(case: str, claims: list[str] | None, want: list[str]) -> None:
    rule: dict[str, Any] = {"issuer": FOO, "jwks": INLINE_JWKS}
    if claims is not None:
        rule["spaceDelimitedClaims"] = claims
    prov = jwt_authn(request_authn("ra", rule))["providers"]["origins-0"]
    assert prov["normalize_payload_in_metadata"]["space_delimited_claims"] == want, case


# --- convertToEnvoyJwtConfig fields no istiod case covers -------------------------------------


def test_token_locations_and_audiences() -> None:
    """convertToEnvoyJwtConfig: audiences, fromHeaders (name, prefix -> value_prefix), fromParams and
    fromCookies are copied in order."""
    rule = {
        "issuer": FOO,
        "jwks": INLINE_JWKS,
        "audiences": ["bookstore_android.apps.example.com", "bookstore_web.apps.example.com"],
        "fromHeaders": [{"name": "x-jwt-assertion", "prefix": "Bearer "}, {"name": "x-goog-iap-jwt-assertion"}],
        "fromParams": ["my_token", "access_token"],
        "fromCookies": ["session", "token"],
    }  # fmt: skip
    want = provider(
        FOO,
        INLINE_JWKS,
        audiences=rule["audiences"],
        from_headers=[{"name": "x-jwt-assertion", "value_prefix": "Bearer "}, {"name": "x-goog-iap-jwt-assertion"}],
        from_params=rule["fromParams"],
        from_cookies=rule["fromCookies"],
    )  # fmt: skip
    assert jwt_authn(request_authn("ra", rule)) == expected(want)


def test_timeout_only_bounds_fetching(tmp_path: Path) -> None:
    """convertToEnvoyJwtConfig: a rule's `timeout` bounds fetching the keys (istiod's BuildLocalJwks, or
    Envoy's remote_jwks http_uri); a provider with its keys inlined carries no timeout."""
    for source in ({"jwks": INLINE_JWKS}, {"jwksUri": jwks_file(tmp_path, INLINE_JWKS)}):
        doc = request_authn("ra", {"issuer": FOO, "timeout": "10s", **source})
        assert jwt_authn(doc) == expected(provider(FOO, INLINE_JWKS))


# --- the authn builder: where jwt_authn goes (BuildHTTP) --------------------------------------


def _hcm_filters(proxy: Proxy, *docs: str) -> dict[str, list[str]]:
    """The HTTP filter names of every connection manager of the proxy, by listener."""
    out: dict[str, list[str]] = {}
    for name, lst in generate(snapshot(*docs), proxy, naming.LISTENER_TYPE).items():
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == HCM:
                    out[name] = [h["name"] for h in f["typed_config"]["http_filters"]]
    return out


def test_jwt_filter_on_inbound_not_outbound() -> None:
    """BuildHTTP: jwt_authn applies to inbound (first, before the RBAC filters) and never to a sidecar's
    outbound side (ListenerClassSidecarOutbound)."""
    doc = request_authn("ra", {"issuer": FOO, "jwks": INLINE_JWKS})
    filters = _hcm_filters(sidecar(), doc)
    inbound = filters.pop(naming.listener_name("127.7.0.5", 8080))
    assert inbound[0] == JWT and inbound.index(JWT) < inbound.index(authz.RBAC_FILTERS[0][1])
    assert filters and all(JWT not in names for names in filters.values())


def test_jwt_filter_clear_route_cache_by_proxy_kind() -> None:
    """BuildHTTP: JwtFilter(clearRouteCache = proxy.Type != SidecarProxy); TestJwtFilter's expectations
    (JwtFilter(false)) are the sidecar's."""
    doc = request_authn("ra", {"issuer": FOO, "jwks": INLINE_JWKS}, namespace="istio-system")
    assert "clear_route_cache" not in jwt_authn(doc)["providers"]["origins-0"]
    labels = {"istio": "ingressgateway"}
    gateway = Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"), kind="gateway", ip="127.7.0.9",
        namespace="istio-system", instance="gw-0", workload="gw", labels=labels,
    )  # fmt: skip
    pods = [Pod("gw-0", "istio-system", "127.7.0.9", labels, workload="gw", gateway=True)]
    snap = snapshot(admitted(doc), pods=pods)
    ext = generate(snap, gateway, naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    prov = ext[naming.JWT_EXTENSION]["typed_config"]["providers"]["origins-0"]
    assert prov["clear_route_cache"] is True
    assert {k: v for k, v in prov.items() if k != "clear_route_cache"} == provider(FOO, INLINE_JWKS)


# --- TestInboundMTLSSettings (the cases test_istio_inbound_parity.py does not port) --------------


def _transports(*docs: str) -> set[str]:
    lst = generate(snapshot(*docs), sidecar(), naming.LISTENER_TYPE)[naming.listener_name("127.7.0.5", 8080)]
    return {c["filter_chain_match"]["transport_protocol"] for c in lst["filter_chains"]}


def _pa(name: str, mode: str, created: str) -> str:
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": mode}},
        }
    )


@pytest.mark.parametrize(
    ("case", "docs", "transports"),
    [
        ("Multiple policies resolved to STRICT",
         (_pa("now", "STRICT", "2024-01-01T00:00:01Z"), _pa("later", "DISABLE", "2024-01-01T00:00:02Z")),
         {"tls"}),
        ("Multiple policies resolved to PERMISSIVE",
         (_pa("now", "DISABLE", "2024-01-01T00:00:01Z"), _pa("earlier", "PERMISSIVE", "2024-01-01T00:00:00Z")),
         {"tls", "raw_buffer"}),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("Multiple") else None,
)  # fmt: skip
def test_inbound_mtls_settings_multiple_policies(
    case: str, docs: tuple[str, ...], transports: set[str]
) -> None:
    """TestInboundMTLSSettings: of two workload policies the oldest decides the port's mode (STRICT: mTLS
    chains only; PERMISSIVE: mTLS and plaintext)."""
    assert _transports(*docs) == transports, case


# --- the order of providers with equal issuers (newPolicyApplier over GetJwtPoliciesForWorkload) ---


def _created(doc: str, created: str) -> str:
    data = json.loads(doc)
    data["metadata"]["creationTimestamp"] = created
    return json.dumps(data)


def test_equal_issuers_keep_istiods_policy_order() -> None:
    """newPolicyApplier sorts the rules by issuer only; rules with equal issuers keep the order istiod
    lists their policies in (getConfigsForWorkload): the workload's namespace before the root namespace,
    each oldest first (sortConfigByCreationTime: creation time, then name). Here an older root-namespace
    policy still comes after the workload namespace's, and of two policies created together `a` comes
    before `b` whatever the order they were applied in."""
    root = _created(request_authn("mesh", {"issuer": FOO, "jwks": JWT_PUB_KEY_1}, namespace="istio-system"),
                    "2024-01-01T00:00:00Z")  # fmt: skip
    late_b = _created(request_authn("b", {"issuer": FOO, "jwks": JWT_PUB_KEY_2}), "2024-01-01T00:00:05Z")
    late_a = _created(request_authn("a", {"issuer": FOO, "jwks": INLINE_JWKS}), "2024-01-01T00:00:05Z")
    got = jwt_authn(root, late_b, late_a)
    assert got == expected(
        provider(FOO, INLINE_JWKS), provider(FOO, JWT_PUB_KEY_2), provider(FOO, JWT_PUB_KEY_1)
    )


def test_public_only_jwks_has_no_kid_and_no_private_half() -> None:
    """As istiod's PublicOnlyJwks: one RSA public key of 2048 bits, no kid (Envoy tries it on every
    token, and the signature fails), no private parameters."""
    (key,) = json.loads(PUBLIC_ONLY_JWKS)["keys"]
    assert set(key) == {"kty", "e", "n"} and key["kty"] == "RSA" and key["e"] == "AQAB"
    n = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4)), "big")
    assert n.bit_length() == 2048 and n % 2 == 1
