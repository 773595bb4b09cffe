"""`describe` on the control plane's model, and `x authz check` on generated config."""

from __future__ import annotations

import pytest
from debug_helpers import DR_SUBSETS, config_for, snapshot

from isthmus.debug import authz
from isthmus.debug.describe import DescribeError, describe, render_text

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: echo, subset: v2}}]
    timeout: 2s
    retries: {attempts: 0}
  - route:
    - {destination: {host: echo, subset: v1}, weight: 90}
    - {destination: {host: echo, subset: v2}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-gw, namespace: default}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /echo}}]
    route: [{destination: {host: echo}}]
"""

POLICIES = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  mtls: {mode: STRICT}
  portLevelMtls: {"9090": {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-public, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep], namespaces: [other]}}]
    to: [{operation: {methods: [GET], paths: ["/public*", "/items/{*}"]}}]
  - when: [{key: "request.headers[x-token]", values: ["abc"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-some, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["127.9.0.6"]}}]
  - to: [{operation: {notPorts: ["8080"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing, namespace: other}
spec: {}
"""


def test_describe_pod_subsets_routes_and_defaults() -> None:
    snap, _ = snapshot(DR_SUBSETS, VS, POLICIES)
    data = describe(snap, "pod", "echo-v2-0")
    assert data["pod"]["ip"] == "127.9.0.4" and data["pod"]["serviceAccount"] == "echo"
    (svc,) = data["services"]
    assert svc["hostname"] == "echo.default.svc.cluster.local"
    assert svc["destinationRule"]["podSubsets"] == ["v2"]
    assert [s["pods"] for s in svc["destinationRule"]["subsets"]] == [
        ["echo-v1-0", "echo-v1-1"],
        ["echo-v2-0"],
        [],
    ]
    assert "warning" in svc["destinationRule"]["subsets"][2]
    default = svc["trafficPolicy"]["80"]["default"]
    assert default["loadBalancer"] == "LEAST_REQUEST (Istio's default)"
    assert default["connectionPool"]["maxConnections"].startswith("unlimited")
    assert default["outlierDetection"].startswith("none")
    (vs,) = svc["virtualServices"]
    rule0, rule1 = vs["httpRules"]
    assert rule0["destinations"][0]["reachesThisPod"] is True
    assert rule0["timeout"] == "2s" and rule0["retries"]["attempts"] == 0
    assert [d.get("reachesThisPod") for d in rule1["destinations"]] == [False, True]
    assert [d["weight"] for d in rule1["destinations"]] == [90, 10]
    assert (
        rule1["timeout"].startswith("none") and rule1["retries"]["source"] == "Istio's default retry policy"
    )
    (gw,) = svc["gateways"]
    assert gw["gateway"] == "default/gw" and gw["virtualService"] == "default/echo-gw"
    assert gw["addresses"] == ["http://127.9.0.8:8080 (istio-system/istio-ingressgateway-0)"]
    pa = data["pod"]["peerAuthentication"]
    assert pa["mode"] == "STRICT" and pa["ports"] == {"8080": "STRICT", "9090": "DISABLE"}
    names = {(a["name"], a["action"], a["rules"]) for a in data["pod"]["authorizationPolicies"]}
    assert names == {("allow-public", "ALLOW", 2), ("deny-some", "DENY", 2)}
    text = render_text(data, details=True)
    assert "Matching subsets: v2" in text and "-> this pod" in text and "STRICT" in text


def test_describe_default_routes_without_virtual_service() -> None:
    snap, _ = snapshot()
    data = describe(snap, "workload", "echo-v1")
    assert data["workload"]["instances"] == ["echo-v1-0", "echo-v1-1"]
    (svc,) = data["services"]
    assert svc["destinationRule"] is None and svc["virtualServices"] == []
    ports = {d["port"]: d for d in svc["defaultRoutes"]}
    assert set(ports) == {80, 9090}
    assert ports[80]["retries"]["attempts"] == 2 and ports[80]["timeout"].startswith("none")
    assert data["pod"]["peerAuthentication"]["mode"] == "PERMISSIVE"


def test_describe_service() -> None:
    snap, _ = snapshot(DR_SUBSETS, VS)
    data = describe(snap, "svc", "echo")
    assert [p["name"] for p in data["pods"]] == ["echo-v1-0", "echo-v1-1", "echo-v2-0"]
    assert data["pods"][2]["subsets"] == ["v2"]
    assert "Pods:" in render_text(data, details=True)
    # per pod: the PeerAuthentication and AuthorizationPolicies that apply
    snap, _ = snapshot(DR_SUBSETS, VS, POLICIES)
    data = describe(snap, "service", "echo")
    pod = data["pods"][0]
    assert pod["mtls"] == "STRICT" and pod["peerAuthentications"] == ["default/strict"]
    assert {(a["action"], a["name"]) for a in pod["authorizationPolicies"]} == {
        ("ALLOW", "allow-public"),
        ("DENY", "deny-some"),
    }
    text = render_text(data, details=True)
    assert "mTLS STRICT (PeerAuthentication default/strict)" in text
    assert "AuthorizationPolicies: DENY deny-some.default, ALLOW allow-public.default" in text or (
        "AuthorizationPolicies: ALLOW allow-public.default, DENY deny-some.default" in text
    )


def test_describe_service_shows_every_subset_policy() -> None:
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo, namespace: default}
    spec:
      host: echo
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, proxyProtocol: {}}}
    """
    snap, _ = snapshot(dr)
    data = describe(snap, "service", "echo")
    policy = data["service"]["trafficPolicy"]["80"]
    assert set(policy) == {"default", "subset v2"}  # v1 inherits the default: not repeated
    assert policy["subset v2"]["loadBalancer"] == "ROUND_ROBIN"
    assert (policy["default"]["proxyProtocol"], policy["subset v2"]["proxyProtocol"]) == ("none", "V1")
    text = render_text(data, details=True)
    assert "   subset v2:" in text
    assert text.count("PROXY protocol: V1 header first") == 2  # subset v2 of both ports
    with pytest.raises(DescribeError):
        describe(snap, "service", "nosuch")
    with pytest.raises(DescribeError):
        describe(snap, "pod", "nosuch")


def test_authz_check_lists_policies_rules_and_summaries() -> None:
    snap, _ = snapshot(POLICIES)
    rows = authz.check(config_for(snap, "echo-v2-0"))
    table = {(r.action, r.policy): len(r.rules) for r in rows}
    assert table == {("ALLOW", "allow-public.default"): 2, ("DENY", "deny-some.default"): 2}
    allow = next(r for r in rows if r.action == "ALLOW")
    s0 = allow.rules[0].summary()
    assert "source.principal cluster.local/ns/default/sa/sleep" in s0
    assert "source.namespace other" in s0
    assert "method exact 'GET'" in s0 and "path prefix '/public'" in s0 and "path template '/items/*'" in s0
    assert "request.headers[x-token] exact 'abc'" in allow.rules[1].summary()
    deny = next(r for r in rows if r.action == "DENY")
    assert "source.ip 127.9.0.6/32" in deny.rules[0].summary()
    assert "not port 8080" in deny.rules[1].summary()
    # HTTP rules ride on the inbound routes; the TCP chains carry network RBAC
    where = {w for r in rows for rule in r.rules for w in rule.where}
    assert "HTTP route inbound|8080||" in where
    text = authz.render_table(rows)
    assert text.splitlines()[0].split() == ["ACTION", "AuthorizationPolicy", "RULES"]
    assert "DENY     deny-some.default" in text


def test_authz_check_allow_nothing_and_no_policy() -> None:
    snap, _ = snapshot(POLICIES)
    rows = authz.check(config_for(snap, "client-0", "other"))
    assert [(r.action, r.policy, len(r.rules)) for r in rows] == [("ALLOW", "nothing.other", 1)]
    assert rows[0].rules[0].summary() == "matches nothing (a policy without rules)"
    assert authz.check(config_for(snap, "client-0")) == []
    assert authz.render_table([]) == "ACTION   AuthorizationPolicy   RULES\n"  # istioctl's TestPrint


def test_authz_check_shows_custom_policies_first() -> None:
    custom = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      extensionProviders:
      - name: authz
        envoyExtAuthzHttp: {service: echo.default.svc.cluster.local, port: 80}
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: ext, namespace: default}
    spec:
      selector: {matchLabels: {app: echo}}
      action: CUSTOM
      provider: {name: authz}
      rules: [{to: [{operation: {paths: [/admin*]}}]}]
    """
    snap, _ = snapshot(POLICIES, custom)
    rows = authz.check(config_for(snap, "echo-v2-0"))
    assert (rows[0].action, rows[0].policy, rows[0].dry_run) == ("CUSTOM", "ext.default", False)
    assert "path prefix '/admin'" in rows[0].rules[0].summary()
    assert "CUSTOM   ext.default" in authz.render_table(rows)


def test_authz_check_reads_every_custom_provider_and_the_denied_rules() -> None:
    """Several CUSTOM providers on one workload (istio#58082): each provider's rules sit under its own
    filter, and the rules of a provider that cannot be used deny; all show as CUSTOM policies."""
    custom = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      extensionProviders:
      - name: authz-a
        envoyExtAuthzHttp: {service: echo.default.svc.cluster.local, port: 80}
      - name: authz-b
        envoyExtAuthzGrpc: {service: echo.default.svc.cluster.local, port: 80}
    """ + "".join(
        f"""
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: {name}, namespace: default}}
    spec:
      selector: {{matchLabels: {{app: echo}}}}
      action: CUSTOM
      provider: {{name: {provider}}}
      rules: [{{to: [{{operation: {{paths: [{path}]}}}}]}}]
    """
        for name, provider, path in (
            ("ext-a", "authz-a", "/a*"),
            ("ext-b", "authz-b", "/b*"),
            ("ext-gone", "no-such-provider", "/gone*"),
        )
    )
    snap, _ = snapshot(custom)
    rows = authz.check(config_for(snap, "echo-v2-0"))
    assert [(r.action, r.policy, len(r.rules), r.dry_run) for r in rows] == [
        ("CUSTOM", "ext-a.default", 1, False),
        ("CUSTOM", "ext-b.default", 1, False),
        ("CUSTOM", "ext-gone.default", 1, False),
    ]
    assert "path prefix '/gone'" in rows[2].rules[0].summary()
    assert rows[2].rules[0].name.endswith("-deny-due-to-bad-CUSTOM-action")


def test_authz_check_words_jwt_claim_conditions() -> None:
    # A claim may be a list or a plain string, so the generated matcher says "a list holding one of the
    # values, or one of the values": the summary says it once.
    policy = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: groups, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - when:
    - {key: "request.auth.claims[groups]", values: [dev, "ops*"]}
    - {key: request.auth.audiences, values: [web]}
"""
    snap, _ = snapshot(policy)
    (row,) = authz.check(config_for(snap, "echo-v2-0"))
    summary = row.rules[0].summary()
    assert "request.auth.claims[groups] (exact 'dev' or prefix 'ops')" in summary
    assert "request.auth.audiences exact 'web'" in summary
    assert "{" not in summary  # no matcher printed raw
