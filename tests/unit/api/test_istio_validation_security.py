"""Istio's security validation tests (``pkg/config/validation/validation_test.go``:
TestValidateAuthorizationPolicy, TestValidateRequestAuthentication, TestValidatePeerAuthentication), ported
as YAML resources.

Each case is (Istio case name, YAML, valid, expected error fragment, expected warning); see
test_istio_validation_gateway.py for the meaning of the last two.
"""

from __future__ import annotations

import textwrap

import pytest
from istio_verdicts import assert_verdict

Case = tuple[str, str, bool, str | None, str | bool | None]


def resource(kind: str, spec: str, name: str, namespace: str, annotations: str = "") -> str:
    meta = f"name: {name}, namespace: {namespace}"
    if annotations:
        meta += f", annotations: {{{annotations}}}"
    return (
        f"apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{{meta}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")
        + "\n"
    )


def ap(spec: str, annotations: str = "") -> str:
    # Istio's TestValidateAuthorizationPolicy uses name "name" in namespace "namespace"
    return resource("AuthorizationPolicy", spec, "name", "namespace", annotations)


def ra(spec: str, name: str = "default", annotations: str = "") -> str:
    return resource("RequestAuthentication", spec, name, "bar", annotations)


def pa(spec: str, name: str = "default") -> str:
    return resource("PeerAuthentication", spec, name, "bar")


def check(case: Case) -> None:
    name, text, valid, fragment, warning = case
    assert_verdict(name, text, valid, fragment, warning, fragment_in_path=True)


SELECTOR = "selector: {matchLabels: {app: httpbin, version: v1}}"
GW_REF = "{group: gateway.networking.k8s.io, kind: Gateway, name: foo}"
TEMP_RULES = """
rules:
- from: [{source: {principals: [temp]}}]
  to: [{operation: {ports: ['8080'], methods: [GET, DELETE]}}]
"""


def from_source(source: str) -> str:
    return f"rules: [{{from: [{{source: {source}}}]}}]"


def to_operation(operation: str) -> str:
    return f"rules: [{{to: [{{operation: {operation}}}]}}]"


# TestValidateAuthorizationPolicy. Istio checks the warning flag of every case.
AUTHZ_CASES: list[Case] = [
    (
        "good",
        ap(
            f"""
            {SELECTOR}
            rules:
            - from: [{{source: {{principals: [sa1]}}}}, {{source: {{principals: [sa2]}}}}]
              to: [{{operation: {{methods: [GET]}}}}, {{operation: {{methods: [POST]}}}}]
              when:
              - {{key: source.ip, values: [1.2.3.4, 5.6.7.0/24]}}
              - {{key: 'request.headers[:authority]', values: [v1, v2]}}
            """
        ),
        True,
        None,
        False,
    ),
    (
        "good serviceAccounts",
        ap(
            f"""
            {SELECTOR}
            rules:
            - from: [{{source: {{serviceAccounts: [ns1/sa1, ns2/sa2]}}}}, {{source: {{principals: [sa2]}}}}]
            """
        ),
        True,
        None,
        False,
    ),
    (
        "serviceAccounts and namespaces",
        ap(f"{SELECTOR}\n" + from_source("{serviceAccounts: [ns1/sa1, ns2/sa2], namespaces: [ns]}")),
        False,
        "cannot set serviceAccounts with namespaces or principals",
        False,
    ),
    ("custom-good", ap("action: CUSTOM\nprovider: {name: my-custom-authz}\nrules: [{}]"), True, None, False),
    (
        "custom-empty-provider",
        ap("action: CUSTOM\nprovider: {name: ''}\nrules: [{}]"),
        False,
        "provider.name",
        False,
    ),
    ("custom-nil-provider", ap("action: CUSTOM\nrules: [{}]"), False, "provider.name", False),
    (
        "custom-invalid-rule",
        ap(
            """
            action: CUSTOM
            provider: {name: my-custom-authz}
            rules:
            - from:
              - source:
                  namespaces: [ns]
                  notNamespaces: [ns]
                  principals: [id]
                  notPrincipals: [id]
                  requestPrincipals: [req]
                  notRequestPrincipals: [req]
              when:
              - {key: source.namespace, values: [source.namespace1], notValues: [source.namespace2]}
              - {key: source.principal, values: [source.principal1], notValues: [source.principal2]}
              - {key: 'request.auth.claims[a]', values: [claims1], notValues: [claims2]}
            """
        ),
        False,
        "is currently not supported with CUSTOM action",
        False,
    ),
    (
        "provider-wrong-action",
        ap("action: ALLOW\nprovider: {name: ''}\nrules: [{}]"),
        False,
        "`provider` must not be with non CUSTOM action",
        False,
    ),
    ("allow-rules-nil", ap("action: ALLOW"), True, None, False),
    ("dry-run-valid-allow", ap("action: ALLOW", annotations="istio.io/dry-run: 'true'"), True, None, False),
    (
        "dry-run-valid-deny",
        ap("action: DENY\nrules: [{}]", annotations="istio.io/dry-run: 'false'"),
        True,
        None,
        False,
    ),
    (
        "dry-run-invalid-value",
        ap("action: ALLOW", annotations="istio.io/dry-run: foo"),
        False,
        "invalid value (foo)",
        False,
    ),
    (
        "dry-run-invalid-action-custom",
        ap("action: CUSTOM", annotations="istio.io/dry-run: 'true'"),
        False,
        "currently only supports action ALLOW/DENY",
        False,
    ),
    (
        "dry-run-invalid-action-audit",
        ap("action: AUDIT", annotations="istio.io/dry-run: 'true'"),
        False,
        "currently only supports action ALLOW/DENY",
        False,
    ),
    ("deny-rules-nil", ap("action: DENY"), False, "DENY action without `rules` is meaningless", False),
    ("selector-empty-value", ap("selector: {matchLabels: {app: '', version: v1}}"), True, None, False),
    (
        "selector-empty-key",
        ap("selector: {matchLabels: {app: httpbin, '': v1}}"),
        False,
        "empty key is not supported in selector",
        False,
    ),
    ("selector-empty-labels", ap("selector: {}"), True, None, "workload selector specified without labels"),
    (
        "selector-wildcard-value",
        ap("selector: {matchLabels: {app: httpbin-*}}"),
        False,
        "wildcard is not supported in selector",
        False,
    ),
    (
        "selector-wildcard-key",
        ap("selector: {matchLabels: {app-*: httpbin}}"),
        False,
        "wildcard is not supported in selector",
        False,
    ),
    ("target-ref-good", ap(f"action: DENY\ntargetRef: {GW_REF}\n{TEMP_RULES}"), True, None, False),
    ("target-refs-good", ap(f"action: DENY\ntargetRefs: [{GW_REF}]\n{TEMP_RULES}"), True, None, False),
    (
        "target-refs-good-service",
        ap(f"action: DENY\ntargetRefs: [{{group: '', kind: Service, name: foo}}]\n{TEMP_RULES}"),
        True,
        None,
        False,
    ),
    (
        "target-ref-non-empty-namespace",
        ap(
            "action: DENY\ntargetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo, namespace: bar}\n"
            + TEMP_RULES
        ),
        False,
        "targetRef namespace must not be set",
        False,
    ),
    (
        "target-ref-empty-name",
        ap(f"action: DENY\ntargetRef: {{group: gateway.networking.k8s.io, kind: Gateway}}\n{TEMP_RULES}"),
        False,
        "name",
        False,
    ),
    (
        "target-ref-wrong-group",
        ap(f"action: DENY\ntargetRef: {{group: wrong-group, kind: Gateway, name: foo}}\n{TEMP_RULES}"),
        False,
        "targetRef must be to one of",
        False,
    ),
    (
        "target-ref-wrong-kind",
        ap(
            "action: DENY\ntargetRef: {group: gateway.networking.k8s.io, kind: wrong-kind, name: foo}\n"
            + TEMP_RULES
        ),
        False,
        "targetRef must be to one of",
        False,
    ),
    (
        "target-ref-and-selector-cannot-both-be-set",
        ap(f"action: DENY\ntargetRef: {GW_REF}\nselector: {{matchLabels: {{app: httpbin}}}}\n{TEMP_RULES}"),
        False,
        "only one of targetRefs or workloadSelector can be set",
        False,
    ),
    (
        "target-refs-and-selector-cannot-both-be-set",
        ap(
            f"action: DENY\ntargetRefs: [{GW_REF}]\nselector: {{matchLabels: {{app: httpbin}}}}\n{TEMP_RULES}"
        ),
        False,
        "only one of targetRefs or workloadSelector can be set",
        False,
    ),
    ("from-empty", ap("rules: [{from: []}]"), False, "`from` must not be empty", False),
    ("source-nil", ap("rules: [{from: [{}]}]"), False, "`from.source` must not be nil", False),
    ("source-empty", ap(from_source("{}")), False, "`from.source` must not be empty", False),
    ("to-empty", ap("rules: [{to: []}]"), False, "`to` must not be empty", False),
    ("operation-nil", ap("rules: [{to: [{}]}]"), False, "`to.operation` must not be nil", False),
    ("operation-empty", ap(to_operation("{}")), False, "`to.operation` must not be empty", False),
    ("Principals-empty", ap(from_source("{principals: [p1, '']}")), False, "found in Principals", False),
    (
        "NotPrincipals-empty",
        ap(from_source("{notPrincipals: [p1, '']}")),
        False,
        "found in NotPrincipals",
        False,
    ),
    (
        "RequestPrincipals-empty",
        ap(from_source("{requestPrincipals: [p1, '']}")),
        False,
        "found in RequestPrincipals",
        False,
    ),
    (
        "NotRequestPrincipals-empty",
        ap(from_source("{notRequestPrincipals: [p1, '']}")),
        False,
        "found in NotRequestPrincipals",
        False,
    ),
    ("Namespaces-empty", ap(from_source("{namespaces: [ns, '']}")), False, "found in Namespaces", False),
    (
        "ServiceAccounts-empty",
        ap(from_source("{serviceAccounts: [ns/sa, '']}")),
        False,
        "found in ServiceAccounts",
        False,
    ),
    (
        "NotNamespaces-empty",
        ap(from_source("{notNamespaces: [ns, '']}")),
        False,
        "found in NotNamespaces",
        False,
    ),
    ("IpBlocks-empty", ap(from_source("{ipBlocks: [1.2.3.4, '']}")), False, "found in IpBlocks", False),
    (
        "NotIpBlocks-empty",
        ap(from_source("{notIpBlocks: [1.2.3.4, '']}")),
        False,
        "found in NotIpBlocks",
        False,
    ),
    (
        "RemoteIpBlocks-empty",
        ap(from_source("{remoteIpBlocks: [1.2.3.4, '']}")),
        False,
        "found in RemoteIpBlocks",
        False,
    ),
    (
        "NotRemoteIpBlocks-empty",
        ap(from_source("{notRemoteIpBlocks: [1.2.3.4, '']}")),
        False,
        "found in NotRemoteIpBlocks",
        False,
    ),
    ("Hosts-empty", ap(to_operation("{hosts: [host, '']}")), False, "found in Hosts", False),
    ("NotHosts-empty", ap(to_operation("{notHosts: [host, '']}")), False, "found in NotHosts", False),
    ("Ports-empty", ap(to_operation("{ports: ['80', '']}")), False, "found in Ports", False),
    ("NotPorts-empty", ap(to_operation("{notPorts: ['80', '']}")), False, "found in NotPorts", False),
    ("Methods-empty", ap(to_operation("{methods: [GET, '']}")), False, "found in Methods", False),
    ("NotMethods-empty", ap(to_operation("{notMethods: [GET, '']}")), False, "found in NotMethods", False),
    ("Paths-empty", ap(to_operation("{paths: [/path, '']}")), False, "found in Paths", False),
    ("NotPaths-empty", ap(to_operation("{notPaths: [/path, '']}")), False, "found in NotPaths", False),
    (
        "value-empty",
        ap("rules: [{when: [{key: 'request.headers[:authority]', values: [v1, '']}]}]"),
        False,
        "empty value not allowed",
        False,
    ),
    (
        "invalid ip and port in ipBlocks",
        ap(
            """
            rules:
            - from: [{source: {ipBlocks: [1.2.3.4, ip1], notIpBlocks: [5.6.7.8, ip2]}}]
              to: [{operation: {ports: ['80', port1], notPorts: ['90', port2]}}]
            """
        ),
        False,
        "bad IP address (ip1)",
        False,
    ),
    (
        "invalid ip and port in remoteIpBlocks",
        ap(
            """
            rules:
            - from: [{source: {remoteIpBlocks: [1.2.3.4, ip1], notRemoteIpBlocks: [5.6.7.8, ip2]}}]
              to: [{operation: {ports: ['80', port1], notPorts: ['90', port2]}}]
            """
        ),
        False,
        "bad port (port1)",
        False,
    ),
    (
        "condition-key-missing",
        ap("selector: {matchLabels: {app: httpbin}}\nrules: [{when: [{values: [v1, v2]}]}]"),
        False,
        "key",
        False,
    ),
    (
        "condition-key-empty",
        ap("selector: {matchLabels: {app: httpbin}}\nrules: [{when: [{key: '', values: [v1, v2]}]}]"),
        False,
        "`key` must not be empty",
        False,
    ),
    (
        "condition-value-missing",
        ap("selector: {matchLabels: {app: httpbin}}\nrules: [{when: [{key: source.principal}]}]"),
        False,
        "at least one of `values` or `notValues` must be set for key source.principal",
        False,
    ),
    (
        "condition-value-invalid",
        ap("rules: [{when: [{key: source.ip, values: [a.b.c.d]}]}]"),
        False,
        "invalid `value` for `key` source.ip: bad IP address (a.b.c.d)",
        False,
    ),
    (
        "condition-notValue-invalid",
        ap("rules: [{when: [{key: source.ip, notValues: [a.b.c.d]}]}]"),
        False,
        "invalid `notValue` for `key` source.ip: bad IP address (a.b.c.d)",
        False,
    ),
    (
        "condition-unknown",
        ap("selector: {matchLabels: {app: httpbin}}\nrules: [{when: [{key: key1, values: [v1]}]}]"),
        False,
        "unknown attribute: key1",
        False,
    ),
    (
        "L7DenyWithFrom",
        ap(
            "action: DENY\nselector: {matchLabels: {app: httpbin}}\n"
            + from_source("{requestPrincipals: [example.com/sub-1]}")
        ),
        True,
        None,
        "configured AuthorizationPolicy will deny all traffic to TCP ports",
    ),
    (
        "L7DenyWithTo",
        ap(
            "action: DENY\nselector: {matchLabels: {app: httpbin}}\n"
            + to_operation("{methods: [GET, DELETE]}")
        ),
        True,
        None,
        "configured AuthorizationPolicy will deny all traffic to TCP ports",
    ),
    (
        "L7DenyWithFromAndTo",
        ap(
            """
            action: DENY
            selector: {matchLabels: {app: httpbin}}
            rules:
            - from: [{source: {principals: [temp]}}]
              to: [{operation: {methods: [GET, DELETE]}}]
            """
        ),
        True,
        None,
        "configured AuthorizationPolicy will deny all traffic to TCP ports",
    ),
    (
        "L7DenyWithFromAndToWithPort",
        ap(f"action: DENY\nselector: {{matchLabels: {{app: httpbin}}}}\n{TEMP_RULES}"),
        True,
        None,
        False,
    ),
]

# Cases of the same rules (pkg/config/security CheckServiceAccount, CheckValidPathTemplate, ValidateAttribute)
# that Istio covers in its pkg/config/security tests; kept here because AuthorizationPolicy is how they are
# reached.
AUTHZ_RULE_CASES: list[Case] = [
    (
        "serviceAccounts wildcard",
        ap(from_source("{serviceAccounts: ['ns/*']}")),
        False,
        "wildcard not allowed, found in ServiceAccounts",
        None,
    ),
    (
        "serviceAccounts two slashes",
        ap(from_source("{serviceAccounts: [a/b/c]}")),
        False,
        "expected format 'serviceAccount' or 'namespace/serviceAccount'",
        None,
    ),
    (
        "serviceAccounts empty namespace",
        ap(from_source("{serviceAccounts: [/sa]}")),
        False,
        "found empty namespace",
        None,
    ),
    (
        "notServiceAccounts empty serviceAccount",
        ap(from_source("{notServiceAccounts: [ns/]}")),
        False,
        "found empty serviceAccount",
        None,
    ),
    (
        "serviceAccounts more than 16",
        ap(from_source("{serviceAccounts: [" + ", ".join(f"sa{i}" for i in range(17)) + "]}")),
        False,
        "may not have more than 16 values",
        None,
    ),
    (
        "source.serviceAccount condition",
        ap("rules: [{when: [{key: source.serviceAccount, values: [ns/sa]}]}]"),
        True,
        None,
        None,
    ),
    (
        "source.serviceAccount condition bad",
        ap("rules: [{when: [{key: source.serviceAccount, values: [a/b/c]}]}]"),
        False,
        "expected format 'serviceAccount' or 'namespace/serviceAccount'",
        None,
    ),
    ("path template ok", ap(to_operation("{paths: ['/foo/{*}/bar/{**}']}")), True, None, None),
    (
        "path template {**} not last",
        ap(to_operation("{paths: ['/foo/{**}/{*}']}")),
        False,
        "{**} is not the last operator",
        None,
    ),
    (
        "path template brace in segment",
        ap(to_operation("{paths: ['/foo/{*}/b{ar']}")),
        False,
        "Contains '{' or '}' beyond a supported path template",
        None,
    ),
    (
        "path template bad literal",
        ap(to_operation("{notPaths: ['/foo/{*}/b*r']}")),
        False,
        "with invalid string literal",
        None,
    ),
    ("path without template keeps '*'", ap(to_operation("{paths: ['/foo/*']}")), True, None, None),
    (
        "destination.port condition",
        ap("rules: [{when: [{key: destination.port, values: ['80', x]}]}]"),
        False,
        "bad port (x)",
        None,
    ),
    (
        "destination.labels condition",
        ap("rules: [{when: [{key: 'destination.labels[app]', values: [x]}]}]"),
        False,
        "is replaced by the workload selector",
        None,
    ),
    (
        "CUSTOM with trustDomains",
        ap("action: CUSTOM\nprovider: {name: p}\n" + from_source("{trustDomains: [td]}")),
        False,
        "From.TrustDomains is currently not supported with CUSTOM action",
        None,
    ),
]

JWKS_OK = (
    '{ "keys":[ {"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA",'
    '"n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHt'
    "OcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTf"
    "URiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0"
    'ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}'
)
JWKS_PRIVATE = (
    '{"keys":[{"kty":"RSA","e":"AQAB","kid":"private","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9'
    "C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ig"
    "nkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZb"
    'DAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ","d":"jJVKLOMXjlSnICzfP_eWshwR'
    "_DQp1U_GBLn-bL2qf90U5GMRDg5fT7Df3M2zL3DhMzdLDIeBmh-ujMTPjU0PWyVN5JX9LBhAOgsX3DKAdR2KMlEsBM4HE6VV1JhqQozqAc"
    "SPwhBHJM_pBM21S94EZf_RbA0PvyLcjeLP4WqAOY-J4OXVR3rzKwAH02NjLBR-Tnoiv-WlPZbE9SmYJL0G3xRFVELYwf4l7t-PSrZxk6V_x"
    'rTLpsScA-WICTaXmRGyDOSBuiBfHfDQyiTfQEUjcc6aQ7slLAwfmU2AeYJqHk1zwZpDJpgEf9G3eYi09Q2MLpzSjMxWVqV5L7TtcoGv5Q"}]}'
)
GOOD_RULE = "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com/cert'}]"

# TestValidateRequestAuthentication. Istio checks the warning flag of every case.
REQUEST_AUTHN_CASES: list[Case] = [
    ("empty spec", ra(""), True, None, False),
    ("another empty spec", ra("selector: {}"), True, None, "workload selector specified without labels"),
    ("empty spec with non default name", ra("", name="foo"), True, None, False),
    (
        "dry run annotation not supported",
        ra("", name="foo", annotations="istio.io/dry-run: 'true'"),
        False,
        "has unsupported annotation istio.io/dry-run",
        False,
    ),
    (
        "default name with non empty selector",
        ra("selector: {matchLabels: {app: httpbin}}"),
        True,
        None,
        False,
    ),
    (
        "empty jwt rule",
        ra("jwtRules: [{}]", name="foo"),
        False,
        "issuer or jwksUri must be non-empty string",
        False,
    ),
    (
        "empty issuer and jwksUri",
        ra("jwtRules: [{issuer: ''}]", name="foo"),
        False,
        "issuer or jwksUri must be non-empty string",
        False,
    ),
    (
        "empty issuer and set jwksUri",
        ra("jwtRules: [{issuer: '', jwksUri: 'https://foo.com/cert'}]", name="foo"),
        True,
        None,
        False,
    ),
    (
        "bad JwksUri - no protocol",
        ra("jwtRules: [{issuer: foo.com, jwksUri: foo.com}]", name="foo"),
        False,
        'URI scheme "" is not supported',
        False,
    ),
    (
        "bad JwksUri - invalid port",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com:not-a-number'}]", name="foo"),
        False,
        'invalid port ":not-a-number" after host',
        False,
    ),
    (
        "empty value",
        ra(f"selector: {{matchLabels: {{app: httpbin, version: ''}}}}\n{GOOD_RULE}", name="foo"),
        True,
        None,
        False,
    ),
    (
        "bad workload selector - empty key",
        ra(f"selector: {{matchLabels: {{app: httpbin, '': v1}}}}\n{GOOD_RULE}", name="foo"),
        False,
        "empty key is not supported in selector",
        False,
    ),
    ("good targetRef", ra(f"targetRef: {GW_REF}\n{GOOD_RULE}", name="foo"), True, None, False),
    (
        "bad targetRef - empty name",
        ra(f"targetRef: {{group: gateway.networking.k8s.io, kind: Gateway}}\n{GOOD_RULE}", name="foo"),
        False,
        "name",
        False,
    ),
    (
        "bad targetRef - non-empty namespace",
        ra(
            "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo, namespace: bar}\n"
            + GOOD_RULE,
            name="foo",
        ),
        False,
        "targetRef namespace must not be set",
        False,
    ),
    (
        "bad targetRef - wrong group",
        ra(f"targetRef: {{group: wrong-group, kind: Gateway, name: foo}}\n{GOOD_RULE}", name="foo"),
        False,
        "targetRef must be to one of",
        False,
    ),
    (
        "bad targetRef - wrong kind",
        ra(
            f"targetRef: {{group: gateway.networking.k8s.io, kind: wrong-kind, name: foo}}\n{GOOD_RULE}",
            name="foo",
        ),
        False,
        "targetRef must be to one of",
        False,
    ),
    (
        "targetRef and selector cannot both be set",
        ra(f"targetRef: {GW_REF}\n{GOOD_RULE}\nselector: {{matchLabels: {{app: httpbin}}}}", name="foo"),
        False,
        "only one of targetRefs or workloadSelector can be set",
        False,
    ),
    (
        "bad header location",
        ra(
            "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', fromHeaders: [{name: '', prefix: 'Bearer '}]}]"
        ),
        False,
        "location header name must be non-empty string",
        False,
    ),
    (
        "bad param location",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', fromParams: ['']}]"),
        False,
        "location query must be non-empty string",
        False,
    ),
    (
        "good",
        ra(
            "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', fromHeaders: [{name: x-foo, prefix: 'Bearer '}]}]"
        ),
        True,
        None,
        False,
    ),
    (
        "bad cookie location",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', fromCookies: ['', foo]}]"),
        False,
        "cookie name must be non-empty string",
        False,
    ),
    (
        "jwks ok",
        ra(
            f"jwtRules: [{{issuer: foo.com, jwks: '{JWKS_OK}', fromHeaders: [{{name: x-foo, prefix: 'Bearer '}}]}}]"
        ),
        True,
        None,
        False,
    ),
    (
        "jwks error",
        ra("jwtRules: [{issuer: foo.com, jwks: foo, fromHeaders: [{name: x-foo, prefix: 'Bearer '}]}]"),
        False,
        "jwks parse error",
        False,
    ),
    (
        "jwks with private RSA key warns",
        ra(f"jwtRules: [{{issuer: foo.com, jwks: '{JWKS_PRIVATE}'}}]"),
        True,
        None,
        True,
    ),
    (
        "null outputClaimToHeader",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', outputClaimToHeaders: [{}]}]"),
        False,
        "outputClaimToHeaders",
        False,
    ),
    (
        "null claim value in outputClaimToHeader",
        ra(
            "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', "
            "outputClaimToHeaders: [{header: x-jwt-claim, claim: ''}]}]"
        ),
        False,
        "outputClaimToHeaders header and claim value must be non-empty string",
        False,
    ),
    (
        "null header value in outputClaimToHeader",
        ra(
            "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', outputClaimToHeaders: [{header: '', claim: sub}]}]"
        ),
        False,
        "outputClaimToHeaders header and claim value must be non-empty string",
        False,
    ),
    (
        "invalid header value in outputClaimToHeader",
        ra(
            "jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', "
            "outputClaimToHeaders: [{header: 'abc%123', claim: sub}]}]"
        ),
        False,
        "header name abc%123 is not a valid header name",
        False,
    ),
    # older Istio releases' cases that still hold
    (
        "bad audiences",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', audiences: [a, '']}]"),
        False,
        "audience must be non-empty string",
        None,
    ),
    (
        "bad timeout",
        ra("jwtRules: [{issuer: foo.com, jwksUri: 'https://foo.com', timeout: 1.5ns}]"),
        False,
        None,
        None,
    ),
]

# TestValidatePeerAuthentication. Istio checks the warning flag of every case.
PEER_AUTHN_CASES: list[Case] = [
    ("empty spec", pa(""), True, None, False),
    (
        "empty mtls with selector of empty labels",
        pa("selector: {}"),
        True,
        None,
        "workload selector specified without labels",
    ),
    ("empty spec with non default name", pa("", name="foo"), True, None, False),
    (
        "default name with non empty selector",
        pa("selector: {matchLabels: {app: httpbin}}"),
        True,
        None,
        False,
    ),
    (
        "empty port level mtls",
        pa("selector: {matchLabels: {app: httpbin}}\nportLevelMtls: {}", name="foo"),
        False,
        "port level mTLS, if defined, must have at least one element",
        False,
    ),
    (
        "empty selector with port level mtls",
        pa("portLevelMtls: {8080: {mode: UNSET}}"),
        False,
        "mesh/namespace peer authentication cannot have port level mTLS",
        False,
    ),
    (
        "port 0",
        pa("portLevelMtls: {0: {mode: UNSET}}", name="foo"),
        False,
        "port must be in range 1..65535",
        False,
    ),
    ("unset mode", pa("mtls: {mode: UNSET}"), True, None, False),
    (
        "port level",
        pa(
            "selector: {matchLabels: {app: httpbin}}\nportLevelMtls: {8080: {mode: UNSET}}", name="port-level"
        ),
        True,
        None,
        False,
    ),
]

ALL = {
    "authz": AUTHZ_CASES,
    "authz-rules": AUTHZ_RULE_CASES,
    "requestauthn": REQUEST_AUTHN_CASES,
    "peerauthn": PEER_AUTHN_CASES,
}


@pytest.mark.parametrize(
    "case",
    [c for cases in ALL.values() for c in cases],
    ids=[f"{k}:{c[0]}" for k, cs in ALL.items() for c in cs],
)
def test_istio_security_case(case: Case) -> None:
    check(case)
