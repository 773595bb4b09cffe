"""CUSTOM AuthorizationPolicy -> shadow RBAC + ext_authz, as istiod's builder/extauthz.go generates them."""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import generate, sidecar, snapshot

from isthmus.xds.gen import naming

PROVIDERS = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  extensionProviders:
  - name: http-authz
    envoyExtAuthzHttp:
      service: default/reviews.default.svc.cluster.local
      port: 9080
      timeout: 2s
      pathPrefix: /check
      failOpen: true
      statusOnError: "503"
      includeRequestHeadersInCheck: [x-ext-authz, "x-prefix-*", "*-suffix"]
      includeAdditionalHeadersInCheck: {x-b: "2", x-a: "1"}
      headersToUpstreamOnAllow: [x-user]
      headersToDownstreamOnDeny: [x-reason]
      headersToDownstreamOnAllow: [set-cookie]
      includeRequestBodyInCheck: {maxRequestBytes: 2048, allowPartialMessage: true, packAsBytes: true}
  - name: grpc-authz
    envoyExtAuthzGrpc:
      service: ratings.other.svc.cluster.local
      port: 9080
  - name: bad-port
    envoyExtAuthzGrpc: {service: ratings.other.svc.cluster.local, port: 70000}
  - name: no-such-service
    envoyExtAuthzHttp: {service: default/nope.default.svc.cluster.local, port: 80}
"""


def policy(provider: str, name: str = "ext", rules: str = "[{to: [{operation: {paths: [/admin*]}}]}]") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: {rules}
"""


def inbound(snap: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The HTTP filters of the web sidecar's inbound listener and its inbound routes' per-filter config."""
    proxy = sidecar()
    listeners = generate(snap, proxy, naming.LISTENER_TYPE)
    lst = listeners[naming.listener_name(proxy.ip, 8080)]
    hcm = next(
        f["typed_config"]
        for chain in lst["filter_chains"]
        for f in chain["filters"]
        if f["name"] == "envoy.filters.network.http_connection_manager"
    )
    table = generate(snap, proxy, naming.ROUTE_TYPE, {naming.inbound_cluster(8080)})[
        naming.inbound_cluster(8080)
    ]
    return hcm["http_filters"], table["virtual_hosts"][0].get("typed_per_filter_config", {})


def ecds(snap: Any, provider: str) -> dict[str, Any]:
    """The config of one provider's ext_authz filter the web sidecar gets over ECDS."""
    name = naming.ext_authz_extension(provider)
    out = generate(snap, sidecar(), naming.EXTENSION_CONFIG_TYPE, {name})
    return out[name]["typed_config"]


# Every defined provider has its pair of filters, sorted by provider name.
PAIRS = [
    name
    for provider in ("bad-port", "grpc-authz", "http-authz", "no-such-service")
    for name in (f"envoy.filters.http.rbac.custom.{provider}", f"envoy.filters.http.ext_authz.{provider}")
]


def names(filters: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in filters]


def test_http_provider_filter_and_shadow_rules() -> None:
    snap = snapshot(PROVIDERS, policy("http-authz"))
    filters, per_route = inbound(snap)
    assert names(filters)[: 2 + len(PAIRS)] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac.custom",
        *PAIRS,
    ]
    assert names(filters).index(PAIRS[-1]) < names(filters).index("envoy.filters.http.rbac.deny")
    discovery = next(f for f in filters if f["name"] == "envoy.filters.http.ext_authz.http-authz")[
        "config_discovery"
    ]
    assert discovery["default_config"]["filter_enabled"]["default_value"].get("numerator", 0) == 0
    ext = ecds(snap, "http-authz")
    assert "filter_enabled" not in ext
    assert ext["filter_enabled_metadata"] == {
        "filter": "envoy.filters.http.rbac",
        "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
        "value": {"string_match": {"prefix": "istio-ext-authz-http-authz-ns["}},
    }
    assert ext["failure_mode_allow"] is True
    assert ext["status_on_error"] == {"code": "ServiceUnavailable"}
    assert ext["with_request_body"] == {
        "max_request_bytes": 2048,
        "allow_partial_message": True,
        "pack_as_bytes": True,
    }
    assert ext["allowed_headers"]["patterns"] == [
        {"exact": "x-ext-authz", "ignore_case": True},
        {"prefix": "x-prefix-", "ignore_case": True},
        {"suffix": "-suffix", "ignore_case": True},
    ]
    svc = ext["http_service"]
    assert svc["server_uri"] == {
        "uri": "http://reviews.default.svc.cluster.local",
        "cluster": "outbound|9080||reviews.default.svc.cluster.local",
        "timeout": "2s",
    }
    assert svc["path_prefix"] == "/check"
    assert svc["authorization_request"]["headers_to_add"] == [
        {"key": "x-a", "value": "1"},
        {"key": "x-b", "value": "2"},
    ]
    resp = svc["authorization_response"]
    assert resp["allowed_upstream_headers"]["patterns"] == [{"exact": "x-user", "ignore_case": True}]
    assert resp["allowed_client_headers"]["patterns"] == [{"exact": "x-reason", "ignore_case": True}]
    assert resp["allowed_client_headers_on_success"]["patterns"] == [
        {"exact": "set-cookie", "ignore_case": True}
    ]

    assert set(per_route) == {"envoy.filters.http.rbac.custom.http-authz"}  # nothing to deny
    custom = per_route["envoy.filters.http.rbac.custom.http-authz"]["rbac"]
    assert "rules" not in custom  # never enforced by RBAC itself
    assert custom["shadow_rules_stat_prefix"] == "istio_ext_authz_"
    assert list(custom["shadow_rules"]["policies"]) == [
        "istio-ext-authz-http-authz-ns[default]-policy[ext]-rule[0]"
    ]
    assert custom["shadow_rules"].get("action", "ALLOW") == "DENY"
    # The providers no policy names stay inert.
    for other in ("grpc-authz", "bad-port", "no-such-service"):
        assert ecds(snap, other)["filter_enabled"]["default_value"].get("numerator", 0) == 0


def test_grpc_provider_also_guards_tcp_and_uses_a_valid_authority() -> None:
    snap = snapshot(PROVIDERS, policy("grpc-authz", rules="[{}]"))
    ext = ecds(snap, "grpc-authz")
    assert ext["grpc_service"]["envoy_grpc"] == {
        "cluster_name": "outbound|9080||ratings.other.svc.cluster.local",
        "authority": "outbound_.9080_._.ratings.other.svc.cluster.local",
    }
    assert ext["grpc_service"]["timeout"] == "600s"
    from isthmus.xds.gen import authz

    tcp = [f.name for f in authz.inbound_network_filters(snap, sidecar())]
    assert tcp == ["envoy.filters.network.rbac", "envoy.filters.network.ext_authz"]


def test_http_provider_does_not_apply_to_tcp() -> None:
    from isthmus.xds.gen import authz

    snap = snapshot(PROVIDERS, policy("http-authz", rules="[{}]"))
    assert authz.inbound_network_filters(snap, sidecar()) == []


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("missing", "available providers are"),
        ("bad-port", "port must be in the range"),
        ("no-such-service", "could not find service"),
    ],
)
def test_unusable_provider_denies_what_its_rules_match_and_says_why(provider: str, message: str) -> None:
    """istiod's getBadCustomDenyRules: the provider's rules deny (renamed), nothing else is denied."""
    snap = snapshot(PROVIDERS, policy(provider))
    _, per_route = inbound(snap)
    if provider != "missing":
        assert ecds(snap, provider)["filter_enabled"]["default_value"].get("numerator", 0) == 0  # inert
    assert set(per_route) == {"envoy.filters.http.rbac.custom"}
    rules = per_route["envoy.filters.http.rbac.custom"]["rbac"]["rules"]
    assert rules["action"] == "DENY"
    name = f"istio-ext-authz-{provider}-ns[default]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"
    assert list(rules["policies"]) == [name]
    assert rules["policies"][name]["permissions"] == [{"url_path": {"path": {"prefix": "/admin"}}}]
    errors = [e for k, e in snap.generation_errors.items() if k.startswith("AuthorizationPolicy CUSTOM")]
    assert len(errors) == 1 and message in errors[0] and repr(provider) in errors[0], errors


def test_filters_stay_when_policies_change_and_vanish_without_providers() -> None:
    """Adding a CUSTOM policy changes RDS and ECDS only, so open connections get it at once."""
    from isthmus.xds.gen.generator import MeshGenerator

    def listeners(snap: Any) -> bytes:
        out = MeshGenerator().generate(snap, sidecar(), naming.LISTENER_TYPE, None)
        return b"".join(a.SerializeToString(deterministic=True) for _, a in sorted(out.items()))

    without_policy = snapshot(PROVIDERS)
    assert listeners(without_policy) == listeners(snapshot(PROVIDERS, policy("http-authz")))
    # Nor do more providers, or one that cannot be used: the filters follow the mesh's providers.
    several = snapshot(
        PROVIDERS, policy("http-authz"), policy("grpc-authz", name="two"), policy("missing", name="three")
    )
    assert listeners(without_policy) == listeners(several)
    filters, per_route = inbound(without_policy)
    assert "envoy.filters.http.rbac.custom" in names(filters) and per_route == {}
    filters, _ = inbound(snapshot())
    assert not [n for n in names(filters) if n.startswith(("envoy.filters.http.rbac.custom", EXT_AUTHZ))]


# --- several providers on one workload (istio#58082) ------------------------------------------------

EXT_AUTHZ = "envoy.filters.http.ext_authz"


def shadow_policies(per_route: dict[str, Any], provider: str) -> list[str]:
    return sorted(per_route[f"envoy.filters.http.rbac.custom.{provider}"]["rbac"]["shadow_rules"]["policies"])


def test_several_providers_each_get_their_own_filters_in_name_order() -> None:
    """Each provider's RBAC filter marks only its own policies' requests, under a name carrying the
    provider, and only that provider's ext_authz is enabled by the mark; the pairs run sorted by name."""
    snap = snapshot(
        PROVIDERS,
        policy("http-authz", name="admin", rules="[{to: [{operation: {paths: [/admin, /admin/*]}}]}]"),
        policy("grpc-authz", name="api", rules="[{to: [{operation: {paths: [/api, /api/*]}}]}]"),
        policy("http-authz", name="both", rules="[{to: [{operation: {paths: [/ordered/*]}}]}]"),
        policy("grpc-authz", name="both2", rules="[{to: [{operation: {paths: [/ordered/*]}}]}]"),
    )
    filters, per_route = inbound(snap)
    custom = [n for n in names(filters) if n.startswith(("envoy.filters.http.rbac.custom", EXT_AUTHZ))]
    assert custom == ["envoy.filters.http.rbac.custom", *PAIRS]
    # grpc-authz before http-authz: both are asked about /ordered/*, and both must allow.
    assert custom.index(f"{EXT_AUTHZ}.grpc-authz") < custom.index("envoy.filters.http.rbac.custom.http-authz")
    assert set(per_route) >= {
        "envoy.filters.http.rbac.custom.grpc-authz",
        "envoy.filters.http.rbac.custom.http-authz",
    }
    assert "envoy.filters.http.rbac.custom" not in per_route  # every provider is usable: nothing denied
    assert shadow_policies(per_route, "grpc-authz") == [
        "istio-ext-authz-grpc-authz-ns[default]-policy[api]-rule[0]",
        "istio-ext-authz-grpc-authz-ns[default]-policy[both2]-rule[0]",
    ]
    assert shadow_policies(per_route, "http-authz") == [
        "istio-ext-authz-http-authz-ns[default]-policy[admin]-rule[0]",
        "istio-ext-authz-http-authz-ns[default]-policy[both]-rule[0]",
    ]
    for provider in ("grpc-authz", "http-authz"):
        enabled = ecds(snap, provider)["filter_enabled_metadata"]["value"]["string_match"]["prefix"]
        assert enabled == f"istio-ext-authz-{provider}-ns["
        mine = shadow_policies(per_route, provider)
        theirs = shadow_policies(per_route, "http-authz" if provider == "grpc-authz" else "grpc-authz")
        assert all(n.startswith(enabled) for n in mine) and not any(n.startswith(enabled) for n in theirs)
    assert "grpc_service" in ecds(snap, "grpc-authz") and "http_service" in ecds(snap, "http-authz")
    assert not [k for k in snap.generation_errors if k.startswith("AuthorizationPolicy CUSTOM")]


def test_a_provider_is_not_enabled_by_a_provider_whose_name_extends_its_own() -> None:
    """istiod enables provider `a` by the prefix `istio-ext-authz-a`, which a rule of provider `a-b`
    also starts with; the mark's `-ns[` is part of the prefix here."""
    from isthmus.xds.gen import ext_authz

    rule_of_a_b = ext_authz.rule_prefix("a-b") + "ns[default]-policy[p]-rule[0]"
    assert not rule_of_a_b.startswith(ext_authz.enabled_prefix("a"))
    assert rule_of_a_b.startswith(ext_authz.enabled_prefix("a-b"))


def test_misconfigured_provider_fails_closed_for_its_own_rules_only() -> None:
    """TestAuthz_MultipleCustomProviders_MisconfiguredProvider: a policy naming a provider that does not
    exist denies what its rules match, the valid provider keeps working, other requests pass."""
    snap = snapshot(
        PROVIDERS,
        policy("http-authz", name="valid", rules="[{to: [{operation: {paths: [/valid/*]}}]}]"),
        policy("non-existent", name="invalid", rules="[{to: [{operation: {paths: [/invalid/*]}}]}]"),
    )
    filters, per_route = inbound(snap)
    assert set(per_route) >= {"envoy.filters.http.rbac.custom", "envoy.filters.http.rbac.custom.http-authz"}
    # The deny filter runs ahead of every provider's pair.
    assert names(filters).index("envoy.filters.http.rbac.custom") < names(filters).index(PAIRS[0])
    deny = per_route["envoy.filters.http.rbac.custom"]["rbac"]
    assert "shadow_rules" not in deny and deny["rules"]["action"] == "DENY"
    assert list(deny["rules"]["policies"]) == [
        "istio-ext-authz-non-existent-ns[default]-policy[invalid]-rule[0]-deny-due-to-bad-CUSTOM-action"
    ]
    assert shadow_policies(per_route, "http-authz") == [
        "istio-ext-authz-http-authz-ns[default]-policy[valid]-rule[0]"
    ]
    assert "http_service" in ecds(snap, "http-authz")
    (error,) = [e for k, e in snap.generation_errors.items() if k.startswith("AuthorizationPolicy CUSTOM")]
    assert "'non-existent'" in error and "available providers are" in error


def test_tcp_filters_per_provider_in_name_order() -> None:
    """buildTCP: per provider, sorted: a gRPC provider's shadow RBAC and network ext_authz, nothing for an
    HTTP provider, a DENY RBAC filter for one that cannot be used."""
    from isthmus.xds.gen import authz

    snap = snapshot(
        PROVIDERS,
        policy("grpc-authz", name="grpc", rules="[{}]"),
        policy("http-authz", name="http", rules="[{}]"),
        policy("missing", name="gone", rules="[{}]"),
    )
    filters = authz.inbound_network_filters(snap, sidecar())
    assert [f.name for f in filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.ext_authz",
        "envoy.filters.network.rbac",
    ]
    from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_ext
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac

    shadow, check, deny = (network_rbac.RBAC(), network_ext.ExtAuthz(), network_rbac.RBAC())
    filters[0].typed_config.Unpack(shadow)
    filters[1].typed_config.Unpack(check)
    filters[2].typed_config.Unpack(deny)
    assert list(shadow.shadow_rules.policies) == [
        "istio-ext-authz-grpc-authz-ns[default]-policy[grpc]-rule[0]"
    ]
    assert check.filter_enabled_metadata.filter == "envoy.filters.network.rbac"
    assert check.filter_enabled_metadata.value.string_match.prefix == "istio-ext-authz-grpc-authz-ns["
    assert not deny.HasField("shadow_rules")
    assert list(deny.rules.policies) == [
        "istio-ext-authz-missing-ns[default]-policy[gone]-rule[0]-deny-due-to-bad-CUSTOM-action"
    ]
