"""`x authz check` against istioctl's own tests (istioctl/pkg/authz: analyzer_test.go TestPrint,
authz_test.go TestAuthz, listener_test.go TestExtractName; tests/integration/istioctl TestAuthZCheck)."""

from __future__ import annotations

import re
import textwrap

import pytest
from debug_helpers import MESH, PODS, config_for

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.debug import authz
from isthmus.debug.describe import proxy_of
from isthmus.debug.envoy_config import ProxyConfig
from isthmus.debug.preview import generate_proxy_config
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod

HEADER = "ACTION   AuthorizationPolicy   RULES\n"

# tests/integration/istioctl/testdata/authz-b.yaml, applied to the ingress gateway and to a workload.
AUTHZ_B = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-policy, namespace: {ns}}}
spec:
  action: ALLOW
  selector: {{matchLabels: {labels}}}
  rules:
  - to: [{{operation: {{notPorts: ["100"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-policy, namespace: {ns}}}
spec:
  action: DENY
  selector: {{matchLabels: {labels}}}
  rules:
  - to: [{{operation: {{ports: ["100"]}}}}]
  - to: [{{operation: {{ports: ["100"]}}}}]
"""

# A workload with an HTTP and a TCP port, as the integration test's app "a".
TCP_MESH = """
apiVersion: v1
kind: Service
metadata: {name: tcpecho, namespace: default}
spec:
  selector: {app: tcpecho}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp, port: 9000, targetPort: 9000}
"""
TCP_POD = Pod(
    "tcpecho-0", "default", "127.9.0.20", {"app": "tcpecho", "version": "v1"},
    workload="tcpecho", app_ports={8080: 40100, 9000: 40101},
)  # fmt: skip


def _snapshot(*docs: str) -> Snapshot:
    text = "\n---\n".join(textwrap.dedent(d) for d in (MESH, TCP_MESH, *docs))
    store = Store()
    store.apply(loader.load_text(text, "test.yaml"), "test")
    return Snapshot.build(1, store.list(), [*PODS, TCP_POD])


def _table(snap: Snapshot, name: str, namespace: str = "default") -> str:
    if name == TCP_POD.name:
        config = ProxyConfig.from_generated(generate_proxy_config(snap, proxy_of(TCP_POD)), source="envoy")
    else:
        config = config_for(snap, name, namespace)
    return authz.render_table(authz.check(config))


def test_print_without_policies_is_the_header_only() -> None:
    # analyzer_test.go TestPrint: a proxy with no RBAC prints exactly the header.
    assert _table(_snapshot(), "client-0") == HEADER


def test_integration_ingressgateway() -> None:
    # TestAuthZCheck "ingressgateway": DENY deny-policy.<ns> 2, ALLOW allow-policy.<ns> 1.
    snap = _snapshot(AUTHZ_B.format(ns="istio-system", labels="{istio: ingressgateway}"))
    out = _table(snap, "istio-ingressgateway-0", "istio-system")
    assert re.search(r"DENY\s+deny-policy\.istio-system\s+2", out), out
    assert re.search(r"ALLOW\s+allow-policy\.istio-system\s+1", out), out
    assert "_anonymous_match_nothing_" not in out  # a gateway has no TCP chain dropping HTTP rules


def test_integration_workload_with_tcp_port() -> None:
    # TestAuthZCheck "workload": notPorts is not HTTP-only, so the ALLOW rule stays on TCP chains too.
    snap = _snapshot(AUTHZ_B.format(ns="default", labels="{app: tcpecho}"))
    out = _table(snap, TCP_POD.name)
    assert re.search(r"DENY\s+deny-policy\.default\s+2", out), out
    assert re.search(r"ALLOW\s+allow-policy\.default\s+1", out), out


def test_allow_with_http_only_rules_on_tcp_is_anonymous_match_nothing() -> None:
    # authz_test.go TestAuthz golden / TestAuthZCheck: an ALLOW filter whose policies were all dropped
    # (HTTP-only rule on a TCP chain) is listed as `_anonymous_match_nothing_` with 1 rule, and the
    # table is istioctl's tabwriter layout, ALLOW rows sorted by name.
    policy = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: httpbin, namespace: default}
    spec:
      selector: {matchLabels: {app: tcpecho}}
      rules:
      - to: [{operation: {methods: [GET]}}]
    """
    out = _table(_snapshot(policy), TCP_POD.name)
    assert out == (
        "ACTION   AuthorizationPolicy         RULES\n"
        "ALLOW    _anonymous_match_nothing_   1\n"
        "ALLOW    httpbin.default             1\n"
    )


def test_order_deny_allow_log_and_name_sort() -> None:
    # listener.go Print: DENY, then ALLOW, then LOG (AUDIT policies are RBAC LOG); names sorted.
    docs = []
    for name, action in [("zz", "ALLOW"), ("aa", "ALLOW"), ("dd", "DENY"), ("au", "AUDIT")]:
        docs.append(f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  action: {action}
  rules: [{{to: [{{operation: {{paths: [/x]}}}}]}}, {{to: [{{operation: {{paths: [/y]}}}}]}}]
""")
    rows = _table(_snapshot(*docs), "echo-v2-0").splitlines()
    assert [r.split() for r in rows] == [
        ["ACTION", "AuthorizationPolicy", "RULES"],
        ["DENY", "dd.default", "2"],
        ["ALLOW", "aa.default", "2"],
        ["ALLOW", "zz.default", "2"],
        ["LOG", "au.default", "2"],
    ]


def test_allow_nothing_policy_counts_one_rule() -> None:
    # An ALLOW policy with an empty spec: istiod emits one never-matching rule[0] under its name.
    policy = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: allow-nothing, namespace: default}
    spec: {}
    """
    out = _table(_snapshot(policy), "client-0")
    assert re.search(r"ALLOW\s+allow-nothing\.default\s+1", out), out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ns[default]-policy[some-policy]-rule[1]", ("default", "some-policy", 1)),
        ("ns[default]-policy[some-policy]-rule[]", None),
        ("ns[default]-policy[]-rule[1]", None),
        ("ns[]-policy[some-policy]-rule[1]", None),
        ("ns[]-policy[]-rule[]", None),
        ("invalid-name", None),
        ("ns[default]-rule[1]", None),
        ("ns[default]-policy[some-policy]", None),
        ("policy[some-policy]-rule[1]", None),
    ],
)
def test_extract_name(name: str, expected: tuple[str, str, int] | None) -> None:
    # listener_test.go TestExtractName: `name.namespace` and the rule index, or nothing.
    rule = authz.RbacRule(action="ALLOW", name=name, policy={})
    assert rule.parsed == expected
    if expected is not None:
        assert (rule.policy_ref, rule.rule_index) == ("some-policy.default", 1)
