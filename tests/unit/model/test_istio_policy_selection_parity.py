"""Which AuthorizationPolicies, RequestAuthentications and PeerAuthentications apply to a workload, as istiod
selects them.

Ports `pilot/pkg/model/authorization_test.go` (TestAuthorizationPolicies_ListAuthorizationPolicies),
`policyattachment_test.go` (TestPolicyMatcher: selector vs targetRef, Gateway API gateways) and
`authentication_test.go` (TestGetPoliciesForWorkload, TestGetPoliciesForWorkloadWithoutMeshPeerAuthn,
TestGetPoliciesForWorkloadWithJwksResolver), written as the Istio YAML a user applies and checked on what
we generate for the workload: the policies named in the RBAC config of each action on its inbound HTTP
route (and on its TCP listener), the issuers of its jwt_authn providers (ECDS), and the mTLS mode its
inbound listener enforces. The root namespace is `istio-config`, as in those tests.

Departures by design, throughout:
- Isthmus has no waypoints (ambient), so the `IsWaypoint` cases (Service, ServiceEntry and GatewayClass
  attachment) are not ported; nor does it run Gateway API gateways, so a targetRef is refused at apply
  and istiod's targetRef cases are ported as that refusal.
- istiod's tests build policies that admission would reject (a targetRef with a namespace, a selector
  and a targetRef together, `principals` in a CUSTOM rule, `jwksUri: example.com`, `jwks: deadbeef`); the YAML here is the admissible
  equivalent (the namespace dropped, valid key sources), or the case is left out when there is none.
- istiod's RequestAuthentications have no rules; each one here gets an issuer naming it (`<ns>/<name>`),
  so that its selection shows in the jwt_authn providers.
- Every pod carries `pod: httpbin` (so the Services select it and its ports have a protocol); no policy
  selects on that key, so istiod's "empty workload labels" cases keep their meaning.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.model import authn
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import authz, ext_authz, naming

# The generator tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import configs, generate, sidecar, snapshot

ROOT = "istio-config"
IP = "127.7.3.2"
GW_IP = "127.7.3.9"
HTTP_PORT, TCP_PORT = 8080, 9000
HCM = "envoy.filters.network.http_connection_manager"
GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"  # a Gateway API gateway's pods carry it
T0, T1, T2 = "2020-02-02T02:02:02Z", "2020-02-02T02:02:03Z", "2020-02-02T02:02:04Z"

MESH = f"""
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  rootNamespace: {ROOT}
  extensionProviders:
  - name: authz
    envoyExtAuthzHttp: {{service: httpbin.bar.svc.cluster.local, port: 80}}
"""


def _services() -> list[str]:
    """`httpbin` (HTTP on 8080, TCP on 9000) in every namespace the cases use."""
    return [
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "httpbin", "namespace": ns},
                "spec": {
                    "selector": {"pod": "httpbin"},
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": HTTP_PORT},
                        {"name": "tcp", "port": 90, "targetPort": TCP_PORT},
                    ],
                },
            }
        )
        for ns in ("foo", "bar", "baz", ROOT)
    ]


# --- building YAML ----------------------------------------------------------------------------


def resource(kind: str, name: str, namespace: str, spec: dict[str, Any], created: str = "") -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return json.dumps({"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec})


# istiod's test policy: from principal "sleep", to method GET.
RULES = [{"from": [{"source": {"principals": ["sleep"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]
HTTPBIN_V1 = {"matchLabels": {"app": "httpbin", "version": "v1"}}


def ap(name: str, namespace: str, action: str = "ALLOW", **spec: Any) -> str:
    body: dict[str, Any] = {"action": action, "rules": RULES, **spec}
    if action == "CUSTOM":
        # Admission rejects `principals` with CUSTOM: keep the `to` half of the rule.
        body |= {"provider": {"name": "authz"}, "rules": [{"to": RULES[0]["to"]}]}
    return resource("AuthorizationPolicy", name, namespace, body)


def gateway_ref(name: str) -> dict[str, Any]:
    return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}


def ra(name: str, namespace: str, selector: dict[str, str] | None = None) -> str:
    spec: dict[str, Any] = {"jwtRules": [{"issuer": f"{namespace}/{name}"}]}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return resource("RequestAuthentication", name, namespace, spec)


def pa(name: str, namespace: str, mode: str, created: str, selector: dict[str, str] | None = None) -> str:
    spec: dict[str, Any] = {"mtls": {"mode": mode}}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return resource("PeerAuthentication", name, namespace, spec, created)


# --- what the workload gets -------------------------------------------------------------------

_POLICY_NAME = re.compile(r"ns\[([^\]]+)\]-policy\[([^\]]+)\]-rule\[\d+\]")
_HTTP_FILTERS = {name: action for action, name, _ in authz.RBAC_FILTERS} | {
    authz.CUSTOM_RBAC_FILTER: "CUSTOM"
}
_TCP_ACTIONS = {"ALLOW": "ALLOW", "DENY": "DENY", "LOG": "AUDIT"}


def _policy_names(rbac: dict[str, Any]) -> set[str]:
    """`ns/name` of every policy in an RBAC config, enforced or shadow."""
    out = set()
    for rules in (rbac.get("rules") or {}, rbac.get("shadow_rules") or {}):
        for rule in rules.get("policies", {}):
            found = _POLICY_NAME.search(rule)
            assert found is not None, rule
            out.add(f"{found[1]}/{found[2]}")
    return out


@dataclass
class Applied:
    """The policies a proxy enforces, by action (ALLOW, DENY, AUDIT, CUSTOM), and its JWT issuers."""

    http: dict[str, set[str]] = field(default_factory=dict)
    tcp: dict[str, set[str]] = field(default_factory=dict)
    issuers: list[str] = field(default_factory=list)
    mtls: str = ""


def _add_route_rbac(applied: Applied, per_filter: dict[str, Any]) -> None:
    for name, config in per_filter.items():
        # CUSTOM rules sit under one filter per provider (`envoy.filters.http.rbac.custom.<provider>`).
        action = "CUSTOM" if name.startswith(authz.CUSTOM_RBAC_FILTER + ".") else _HTTP_FILTERS.get(name)
        if action is not None:
            applied.http.setdefault(action, set()).update(_policy_names(config["rbac"]))


def _mtls(lst: dict[str, Any]) -> str:
    """The mode an inbound listener enforces: mTLS chains only (STRICT), plaintext only (DISABLE), both."""
    kinds = {c.get("filter_chain_match", {}).get("transport_protocol") for c in lst["filter_chains"]}
    return {frozenset({"tls"}): "STRICT", frozenset({"raw_buffer"}): "DISABLE"}.get(
        frozenset(kinds), "PERMISSIVE"
    )


def _tcp_action(config: dict[str, Any]) -> str:
    """The action of a network RBAC filter: CUSTOM marks by shadow rules under ext_authz's prefix."""
    if config.get("shadow_rules_stat_prefix") == ext_authz.STAT_PREFIX:
        return "CUSTOM"
    rules = config.get("rules") or config.get("shadow_rules") or {}
    return _TCP_ACTIONS[rules.get("action", "ALLOW")]


def applied(snap: Any, proxy: Proxy) -> Applied:
    out = Applied()
    listeners = generate(snap, proxy, naming.LISTENER_TYPE)
    routes: set[str] = set()
    for lst in listeners.values():
        for chain in lst["filter_chains"]:
            last = chain["filters"][-1]
            if last["name"] == HCM and "rds" in last["typed_config"]:
                routes.add(last["typed_config"]["rds"]["route_config_name"])
    tcp = listeners.get(naming.listener_name(proxy.ip, TCP_PORT), {"filter_chains": []})
    for chain in tcp["filter_chains"]:
        for f in chain["filters"]:
            if f["name"] == authz.RBAC_NETWORK:
                config = f["typed_config"]
                out.tcp.setdefault(_tcp_action(config), set()).update(_policy_names(config))
    http = listeners.get(naming.listener_name(proxy.ip, HTTP_PORT))
    if http is not None and proxy.kind == "sidecar":
        out.mtls = _mtls(http)
    for table in generate(snap, proxy, naming.ROUTE_TYPE, routes).values():
        for vh in table["virtual_hosts"]:
            _add_route_rbac(out, vh.get("typed_per_filter_config", {}))
            for route in vh.get("routes", []):
                _add_route_rbac(out, route.get("typed_per_filter_config", {}))
    jwt = generate(snap, proxy, naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})[naming.JWT_EXTENSION]
    providers = jwt["typed_config"].get("providers", {})
    out.issuers = [providers[f"origins-{i}"]["issuer"] for i in range(len(providers))]
    return out


def workload(namespace: str, labels: dict[str, str] | None, *docs: str) -> Applied:
    """What a sidecar of a pod in `namespace` with `labels` gets (None: istiod's empty workload labels)."""
    pod_labels = {"pod": "httpbin", **(labels or {})}
    pod = Pod("httpbin-0", namespace, IP, pod_labels, workload="httpbin",
              app_ports={HTTP_PORT: 41000, TCP_PORT: 41001})  # fmt: skip
    snap = snapshot(MESH, *_services(), *docs, pods=[pod], services=False)
    return applied(snap, sidecar("httpbin-0", namespace, pod_labels, IP))


def gateway(namespace: str, labels: dict[str, str], *docs: str) -> Applied:
    """What a router-mode gateway in `namespace` with `labels` gets, serving HTTP on port 80."""
    pod = Pod("gw-0", namespace, GW_IP, labels, workload="gw", gateway=True)
    gw = json.dumps({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": {"selector": labels, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                                  "hosts": ["*"]}]},
    })  # fmt: skip
    snap = snapshot(MESH, *_services(), gw, *docs, pods=[pod], services=False)
    proxy = Proxy(
        id=Proxy.node_id("gateway", GW_IP, "gw-0", namespace), kind="gateway", ip=GW_IP,
        namespace=namespace, instance="gw-0", workload="gw", labels=labels,
    )  # fmt: skip
    return applied(snap, proxy)


def only(action: str, *names: str) -> dict[str, set[str]]:
    return {action: set(names)}


# --- TestAuthorizationPolicies_ListAuthorizationPolicies ----------------------------------------


@pytest.mark.parametrize(
    ("case", "namespace", "labels", "docs", "expected"),
    [
        ("no policies", "foo", None, (), {}),
        ("no policies in namespace foo", "foo", None, (ap("authz-1", "bar"), ap("authz-2", "bar")), {}),
        ("one allow policy", "bar", None, (ap("authz-1", "bar"),), only("ALLOW", "bar/authz-1")),
        ("one deny policy", "bar", None, (ap("authz-1", "bar", "DENY"),), only("DENY", "bar/authz-1")),
        ("one audit policy", "bar", None, (ap("authz-1", "bar", "AUDIT"),), only("AUDIT", "bar/authz-1")),
        ("one custom policy", "bar", None, (ap("authz-1", "bar", "CUSTOM"),), only("CUSTOM", "bar/authz-1")),
        ("two policies", "bar", None, (ap("authz-1", "foo"), ap("authz-1", "bar"), ap("authz-2", "bar")),
         only("ALLOW", "bar/authz-1", "bar/authz-2")),
        ("mixing allow, deny, and audit policies", "bar", None,
         (ap("authz-1", "bar"), ap("authz-2", "bar", "DENY"), ap("authz-3", "bar", "AUDIT"),
          ap("authz-4", "bar", "AUDIT")),
         {"ALLOW": {"bar/authz-1"}, "DENY": {"bar/authz-2"}, "AUDIT": {"bar/authz-3", "bar/authz-4"}}),
        ("selector exact match", "bar", {"app": "httpbin", "version": "v1"},
         (ap("authz-1", "bar", selector=HTTPBIN_V1),), only("ALLOW", "bar/authz-1")),
        ("selector subset match", "bar", {"app": "httpbin", "version": "v1", "env": "dev"},
         (ap("authz-1", "bar", selector=HTTPBIN_V1),), only("ALLOW", "bar/authz-1")),
        ("selector not match", "bar", {"app": "httpbin", "version": "v2"},
         (ap("authz-1", "bar", selector=HTTPBIN_V1),), {}),
        ("namespace not match", "foo", {"app": "httpbin", "version": "v1"},
         (ap("authz-1", "bar", selector=HTTPBIN_V1),), {}),
        ("root namespace", "bar", None, (ap("authz-1", ROOT),), only("ALLOW", f"{ROOT}/authz-1")),
        ("root namespace equals config namespace", ROOT, None, (ap("authz-1", ROOT),),
         only("ALLOW", f"{ROOT}/authz-1")),
        ("root namespace and config namespace", "bar", None, (ap("authz-1", ROOT), ap("authz-2", "bar")),
         only("ALLOW", f"{ROOT}/authz-1", "bar/authz-2")),
        # TestPolicyMatcher "non-gateway API workload and a targetRef": a sidecar ignores it, even one
        # carrying a gateway-name-like selector match.
        ("sidecar ignores targetRef", "bar", {"app": "httpbin", "version": "v1"},
         (ap("authz-1", "bar", targetRef=gateway_ref("my-gateway")),), {}),
        # Not in istiod's table: `selector: {}` selects every workload of the namespace, as no selector.
        ("empty selector", "bar", {"app": "other"}, (ap("authz-1", "bar", selector={}),),
         only("ALLOW", "bar/authz-1")),
        # A root-namespace policy with a selector applies to matching workloads of every namespace.
        ("root namespace selector", "foo", {"app": "httpbin", "version": "v1"},
         (ap("authz-1", ROOT, selector=HTTPBIN_V1), ap("authz-2", ROOT, selector={"matchLabels": {"app": "x"}})),
         only("ALLOW", f"{ROOT}/authz-1")),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)  # fmt: skip
def test_list_authorization_policies(
    case: str, namespace: str, labels: dict[str, str] | None, docs: tuple[str, ...], expected: dict
) -> None:
    got = workload(namespace, labels, *docs)
    assert got.http == expected, case


def test_list_authorization_policies_tcp() -> None:
    """ "mixing allow, deny, and audit policies" on the TCP port: the same grouping on network RBAC."""
    got = workload(
        "bar", None, ap("authz-1", "bar", rules=[{}]), ap("authz-2", "bar", "DENY", rules=[{}]),
        ap("authz-3", "bar", "AUDIT", rules=[{}]), ap("authz-4", "bar", "AUDIT", rules=[{}]),
    )  # fmt: skip
    assert got.tcp == {
        "ALLOW": {"bar/authz-1"},
        "DENY": {"bar/authz-2"},
        "AUDIT": {"bar/authz-3", "bar/authz-4"},
    }


# --- targetRef (ListAuthorizationPolicies, TestPolicyMatcher) ------------------------------------
# Departure by design: Isthmus runs no Gateway API gateways, so a policy with targetRef / targetRefs is
# refused at apply, naming the field, instead of attaching to nothing. The cases of istiod's tables that
# attach by targetRef ("targetRef is an exact match", "targetRefs", "targetRef is not a match", "no
# policies with a targetRef in namespace foo", the GatewayClass and non-Gateway-API ones) are ported as
# that refusal; those that attach by selector or to everything still apply to a gateway.

MY_GATEWAY = {GATEWAY_NAME: "my-gateway", "istio": "my-gateway"}


@pytest.mark.parametrize(
    ("case", "docs"),
    [
        ("targetRef", (ap("authz-1", "bar", targetRef=gateway_ref("my-gateway")),)),
        ("targetRefs", (ap("authz-1", "bar", targetRefs=[gateway_ref("other"), gateway_ref("my-gateway")]),)),
        ("gateway class targetRef",
         (ap("authz-1", ROOT, targetRef={"group": "gateway.networking.k8s.io", "kind": "GatewayClass",
                                         "name": "istio-waypoint"}),)),
        ("RequestAuthentication targetRef",
         (resource("RequestAuthentication", "by-ref", "bar",
                   {"targetRef": gateway_ref("my-gateway"), "jwtRules": [{"issuer": "bar/by-ref"}]}),)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_target_ref_policies_are_refused_at_apply(case: str, docs: tuple[str, ...]) -> None:
    (resource,) = loader.load_text(docs[0], "policy.yaml")
    (error,) = check_supported(resource)
    assert "spec.targetRef" in error.message and "Gateway API" in error.message, (case, error.message)


@pytest.mark.parametrize(
    ("case", "namespace", "labels", "docs", "expected"),
    [
        # TestPolicyMatcher "gateway API ingress and a selector" (EnableSelectorBasedK8sGatewayPolicy, on
        # by default) and "... and no targetRef or selector".
        ("gateway API ingress and a selector", "bar", MY_GATEWAY,
         (ap("authz-1", "bar", selector={"matchLabels": {GATEWAY_NAME: "my-gateway"}}),),
         only("ALLOW", "bar/authz-1")),
        ("gateway API ingress and no targetRef or selector", "bar", MY_GATEWAY, (ap("authz-1", "bar"),),
         only("ALLOW", "bar/authz-1")),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)  # fmt: skip
def test_gateway_policy_attachment(
    case: str, namespace: str, labels: dict[str, str], docs: tuple[str, ...], expected: dict
) -> None:
    assert gateway(namespace, labels, *docs).http == expected, case


# --- TestGetPoliciesForWorkload (authentication_test.go createTestConfigs) ----------------------


def authn_configs(with_mesh_peer_authn: bool) -> tuple[str, ...]:
    docs = (
        ra("default", ROOT),
        ra("global-with-selector", ROOT, {"app": "httpbin"}),
        ra("default", "foo"),
        ra("default", "bar"),
        ra("with-selector", "foo", {"app": "httpbin", "version": "v1"}),
        pa("global-peer-with-selector", ROOT, "UNSET", T0, {"app": "httpbin", "version": "v2"}),
        pa("default", "foo", "STRICT", T0),
        pa("ignored-newer-default", "foo", "STRICT", T1),
        pa("peer-with-selector", "foo", "DISABLE", T0, {"version": "v1"}),
    )
    if with_mesh_peer_authn:
        docs += (
            pa("ignored-newer", ROOT, "UNSET", T2),
            pa("default", ROOT, "UNSET", T0),
            pa("ignored-another-newer", ROOT, "UNSET", T1),
        )
    return docs


# (case, namespace, labels, RequestAuthentications (by issuer), workload mTLS mode, namespace mode).
# The workload mode is ComposePeerAuthentication over the policies istiod's case lists (its test stops at
# the list); "DISABLE" where `peer-with-selector` is among them.
WORKLOAD_CASES = [
    ("Empty workload labels in foo", "foo", None, ["foo/default", f"{ROOT}/default"], "STRICT", "STRICT"),
    ("Empty workload labels in bar", "bar", None, ["bar/default", f"{ROOT}/default"], "PERMISSIVE", "PERMISSIVE"),
    ("Empty workload labels in baz", "baz", None, [f"{ROOT}/default"], "PERMISSIVE", "PERMISSIVE"),
    ("Match workload labels in foo", "foo", {"app": "httpbin", "version": "v1", "other": "labels"},
     ["foo/default", "foo/with-selector", f"{ROOT}/default", f"{ROOT}/global-with-selector"], "DISABLE", "STRICT"),
    ("Match workload labels in bar", "bar", {"app": "httpbin", "version": "v1"},
     ["bar/default", f"{ROOT}/default", f"{ROOT}/global-with-selector"], "PERMISSIVE", "PERMISSIVE"),
    ("Paritial match workload labels in foo", "foo", {"app": "httpbin"},
     ["foo/default", f"{ROOT}/default", f"{ROOT}/global-with-selector"], "STRICT", "STRICT"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "namespace", "labels", "issuers", "mode", "ns_mode"),
    WORKLOAD_CASES,
    ids=[c[0] for c in WORKLOAD_CASES],
)
def test_get_policies_for_workload(
    case: str, namespace: str, labels: dict[str, str] | None, issuers: list[str], mode: str, ns_mode: str
) -> None:
    got = workload(namespace, labels, *authn_configs(True))
    # istiod's case lists them workload namespace first; its jwt_authn providers are sorted by issuer.
    assert got.issuers == sorted(issuers)
    assert got.mtls == mode
    pas = [c for c in configs(MESH, *authn_configs(True), services=False) if c.kind == "PeerAuthentication"]
    assert authn.namespace_mode(pas, namespace, ROOT) == ns_mode  # GetNamespaceMutualTLSMode


# TestGetPoliciesForWorkloadWithoutMeshPeerAuthn: (case, namespace, labels, workload mode, namespace mode).
# istiod answers MTLSUnknown for a namespace no policy covers; every consumer of that mode (auto mTLS,
# the inbound chains) treats it as PERMISSIVE, which is what Isthmus reports.
WITHOUT_MESH_CASES = [
    ("Empty workload labels in foo", "foo", None, "STRICT", "STRICT"),
    ("Empty workload labels in bar", "bar", None, "PERMISSIVE", "PERMISSIVE"),
    ("Empty workload labels in baz", "baz", None, "PERMISSIVE", "PERMISSIVE"),
    ("Match workload labels in foo", "foo", {"app": "httpbin", "version": "v1", "other": "labels"}, "DISABLE", "STRICT"),
    ("Match workload labels in bar", "bar", {"app": "httpbin", "version": "v1"}, "PERMISSIVE", "PERMISSIVE"),
    ("Paritial match workload labels in foo", "foo", {"app": "httpbin"}, "STRICT", "STRICT"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "namespace", "labels", "mode", "ns_mode"),
    WITHOUT_MESH_CASES,
    ids=[c[0] for c in WITHOUT_MESH_CASES],
)
def test_get_policies_for_workload_without_mesh_peer_authn(
    case: str, namespace: str, labels: dict[str, str] | None, mode: str, ns_mode: str
) -> None:
    assert workload(namespace, labels, *authn_configs(False)).mtls == mode
    pas = [c for c in configs(MESH, *authn_configs(False), services=False) if c.kind == "PeerAuthentication"]
    assert authn.namespace_mode(pas, namespace, ROOT) == ns_mode


def test_oldest_workload_peer_authentication_wins() -> None:
    """GetPeerAuthenticationsForWorkload keeps the oldest of several workload-level policies (and of
    namespace- and mesh-level ones); a newer one matching the same workload is ignored whatever its mode."""
    sel = {"app": "httpbin"}
    newer_first = (pa("b-newer", "foo", "STRICT", T1, sel), pa("a-oldest", "foo", "DISABLE", T0, sel))
    assert workload("foo", sel, *newer_first).mtls == "DISABLE"
    assert (
        workload(
            "foo", sel, pa("older", "foo", "STRICT", T0, sel), pa("newer", "foo", "DISABLE", T1, sel)
        ).mtls
        == "STRICT"
    )


# --- TestGetPoliciesForWorkloadWithJwksResolver ------------------------------------------------

JWKS = '{"keys":[]}'


def jwks_resolver_configs() -> tuple[str, ...]:
    """createNonTrivialRequestAuthnTestConfigs, with admissible key sources for `with-selector`."""
    return (
        resource("RequestAuthentication", "default", ROOT,
                 {"jwtRules": [{"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/oauth2/v3/certs"}]}),
        resource("RequestAuthentication", "global-with-selector", ROOT,
                 {"selector": {"matchLabels": {"app": "httpbin"}},
                  "jwtRules": [{"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/oauth2/v3/certs"},
                               {"issuer": "bad-issuer"}]}),
        resource("RequestAuthentication", "with-selector", "foo",
                 {"selector": HTTPBIN_V1,
                  "jwtRules": [{"issuer": "issuer-with-jwks-uri", "jwksUri": "https://example.com/jwks"},
                               {"issuer": "issuer-with-jwks", "jwks": JWKS}]}),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("case", "labels", "issuers"),
    [
        ("single hit", None, ["https://issuer.example"]),
        ("double hit", {"app": "httpbin"}, ["bad-issuer", "https://issuer.example", "https://issuer.example"]),
        ("tripple hit", {"app": "httpbin", "version": "v1"},
         ["bad-issuer", "https://issuer.example", "https://issuer.example", "issuer-with-jwks", "issuer-with-jwks-uri"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_get_policies_for_workload_with_jwks_resolver(
    case: str, labels: dict[str, str] | None, issuers: list[str]
) -> None:
    """Every rule of every selected policy becomes a provider (istiod does not merge equal issuers: its
    TODO istio#19245), sorted by issuer."""
    assert workload("foo", labels, *jwks_resolver_configs()).issuers == issuers


def test_empty_peer_authentication_selector_is_namespace_level() -> None:
    """ComposePeerAuthentication: `selector: {}` (no matchLabels) makes a namespace-level policy, so it
    competes with the namespace's other ones by age and never overrides them as a workload policy would."""
    empty = resource("PeerAuthentication", "empty", "foo", {"selector": {}, "mtls": {"mode": "DISABLE"}}, T1)
    assert workload("foo", {"app": "httpbin"}, pa("default", "foo", "STRICT", T0), empty).mtls == "STRICT"
