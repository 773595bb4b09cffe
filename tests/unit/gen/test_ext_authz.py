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


def ecds(snap: Any) -> dict[str, Any]:
    """The ext_authz config the web sidecar gets over ECDS."""
    out = generate(snap, sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.EXT_AUTHZ_EXTENSION})
    return out[naming.EXT_AUTHZ_EXTENSION]["typed_config"]


def names(filters: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in filters]


def test_http_provider_filter_and_shadow_rules() -> None:
    snap = snapshot(PROVIDERS, policy("http-authz"))
    filters, per_route = inbound(snap)
    assert names(filters)[:3] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac.custom",
        "envoy.filters.http.ext_authz",
    ]
    assert names(filters).index("envoy.filters.http.ext_authz") < names(filters).index(
        "envoy.filters.http.rbac.deny"
    )
    discovery = next(f for f in filters if f["name"] == "envoy.filters.http.ext_authz")["config_discovery"]
    assert discovery["default_config"]["filter_enabled"]["default_value"].get("numerator", 0) == 0
    ext = ecds(snap)
    assert "filter_enabled" not in ext
    assert ext["filter_enabled_metadata"] == {
        "filter": "envoy.filters.http.rbac",
        "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
        "value": {"string_match": {"prefix": "istio-ext-authz"}},
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

    custom = per_route["envoy.filters.http.rbac.custom"]["rbac"]
    assert "rules" not in custom  # never enforced by RBAC itself
    assert custom["shadow_rules_stat_prefix"] == "istio_ext_authz_"
    assert list(custom["shadow_rules"]["policies"]) == ["istio-ext-authz-ns[default]-policy[ext]-rule[0]"]
    assert custom["shadow_rules"].get("action", "ALLOW") == "DENY"


def test_grpc_provider_also_guards_tcp_and_uses_a_valid_authority() -> None:
    snap = snapshot(PROVIDERS, policy("grpc-authz", rules="[{}]"))
    ext = ecds(snap)
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
    ("policies", "message"),
    [
        ((policy("missing"),), "available providers are"),
        ((policy("bad-port"),), "port must be in the range"),
        ((policy("no-such-service"),), "could not find service"),
        (
            (policy("http-authz"), policy("grpc-authz", name="other")),
            "only 1 provider can be used per workload",
        ),
    ],
)
def test_unusable_provider_denies_everything_and_says_why(policies: tuple[str, ...], message: str) -> None:
    snap = snapshot(PROVIDERS, *policies)
    _, per_route = inbound(snap)
    assert ecds(snap).get("filter_enabled", {}).get("default_value", {}).get("numerator", 0) == 0  # inert
    rules = per_route["envoy.filters.http.rbac.custom"]["rbac"]["rules"]
    assert rules["action"] == "DENY"
    assert list(rules["policies"]) == ["default-deny-all-due-to-bad-CUSTOM-action"]
    errors = list(snap.generation_errors.values())
    assert any(message in e for e in errors), errors


def test_filters_stay_when_policies_change_and_vanish_without_providers() -> None:
    """Adding a CUSTOM policy changes RDS and ECDS only, so open connections get it at once."""
    from isthmus.xds.gen.generator import MeshGenerator

    def listeners(snap: Any) -> bytes:
        out = MeshGenerator().generate(snap, sidecar(), naming.LISTENER_TYPE, None)
        return b"".join(a.SerializeToString(deterministic=True) for _, a in sorted(out.items()))

    without_policy = snapshot(PROVIDERS)
    assert listeners(without_policy) == listeners(snapshot(PROVIDERS, policy("http-authz")))
    filters, per_route = inbound(without_policy)
    assert "envoy.filters.http.rbac.custom" in names(filters) and per_route == {}
    filters, _ = inbound(snapshot())
    assert "envoy.filters.http.rbac.custom" not in names(filters)
    assert "envoy.filters.http.ext_authz" not in names(filters)
