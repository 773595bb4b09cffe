"""AuthorizationPolicy translation against istiod's unit tests of the authz model and matchers.

Ported from istio/istio `pilot/pkg/security/authz/`: model/generator_test.go (TestRequestPrincipal,
TestGenerator, TestServiceAccount, TestServiceAccountRegex), model/model_test.go
(TestModel_MigrateTrustDomain, TestModel_Generate), model/permission_test.go and model/principal_test.go
(TestPermission_Generate, TestPermission_ValidateForTCP, TestPrincipal_Generate,
TestPrincipal_ValidateForTCP), model/util_test.go (TestConvertToPort, TestExtractNameInBrackets,
TestExtractNameInNestedBrackets), matcher/header_test.go (TestHeaderMatcher, TestInlineHeaderMatcher,
TestHostMatcher, TestPathMatcher), matcher/string_test.go (TestStringMatcherWithPrefix) and
matcher/metadata_test.go (TestMetadataStringMatcher, TestMetadataListMatcher).

Every case goes through the public path: an AuthorizationPolicy YAML for the `foo/httpbin` sidecar of
test_istio_authz_parity.py, the snapshot, and the RBAC config Isthmus generates (HTTP per-route RBAC, or
the network RBAC filter for TCP), compared by meaning with that file's `canon` (AND/OR sets unordered
and flattened, one-member sets unwrapped). Where istiod's test calls a generator or matcher directly,
the case is the smallest policy that reaches it; expectations are what current istiod generates for a
sidecar (which matches peers on `authenticated.principal_name`: `useAuthenticated` is false only for
waypoints, whose `filter_state` form generator_test.go shows).

permission_test.go / principal_test.go date from the v1alpha1 RBAC model (ServiceRole constraints,
`istio_authn` metadata). Their cases are ported as the v1beta1 field or `when` key with the same
meaning, expecting what istiod's v1beta1 generators produce today (e.g. `request.headers` is a
principal, source IPs are `direct_remote_ip`, several `experimental.envoy.filters` values are one
metadata matcher with an `or_match`).

Skipped, with no observable config effect or no v1beta1 counterpart:
- TestPermission_Match, TestNewServiceMetadata, TestNewModel and the v1alpha1 TestModel_Generate
  (ServiceRole/ServiceRoleBinding matching against service metadata: v1alpha1 only).
- TestPermission_Generate "nil permission", "allowAll permission" and TestPrincipal_Generate
  "nil principal", "allowAll principal" (Go nil handling and an internal AllowAll flag with no API field);
  "constraint pathHeader/methodHeader/hostHeader" (internal v1alpha1 constraint names).
- TestPrincipal_Generate users, groups, `source.user` and the v1alpha1 `allUsers` / `allAuthenticatedUsers`
  meanings (v1alpha1 subjects; their v1beta1 literal form is ported), TestPrincipal_ValidateForTCP
  "principal with group" (no v1beta1 field).
- TestStringMatcherRegex (a raw regex wrapper no policy value reaches unchanged).
- builder/builder_test.go: its test functions (TestGenerator_GenerateHTTP, TestGenerator_GenerateTCP) only
  drive the testdata goldens, which test_istio_authz_parity.py covers; it has no other cases.
- TestGenerator "envoyFilterGenerator-invalid" is ported as the validation rejection that keeps such a
  key from the generator (istiod's ValidateAttribute rejects `experimental.a.b.c]` too).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from test_istio_authz_parity import (
    _request_principal,
    http_rbac_of,
    istio_permission,
    istio_principal,
    policies,
    tcp_rbacs,
)

from isthmus.api.errors import ConfigErrors
from isthmus.api.loader import load_text_report

ANY = "{safeRegex: {regex: .+}}"


def ap(spec: str, name: str = "p", namespace: str = "foo") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )


def rules_of(spec: str, action: str = "ALLOW", *docs: str) -> dict[str, Any]:
    """The RBAC policies of one action's HTTP filter for a policy `p` in `foo`."""
    rbac = http_rbac_of(action, ap(spec), *docs)
    assert rbac is not None, "no RBAC filter"
    return policies(rbac)


def rule0(spec: str, action: str = "ALLOW", *docs: str) -> dict[str, Any]:
    return rules_of(spec, action, *docs)["ns[foo]-policy[p]-rule[0]"]


def tcp_rules(spec: str) -> dict[str, Any]:
    (rbac,) = tcp_rbacs(ap(spec))
    return policies(rbac)


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> str:
    cond: dict[str, Any] = {"key": key}
    if values:
        cond["values"] = values
    if not_values:
        cond["notValues"] = not_values
    return json.dumps({"rules": [{"when": [cond]}]})


def source(**fields: list[str]) -> str:
    return json.dumps({"rules": [{"from": [{"source": fields}]}]})


def operation(**fields: list[str]) -> str:
    return json.dumps({"rules": [{"to": [{"operation": fields}]}]})


def rejected(spec: str) -> list[str]:
    """The validation errors of a policy `p` in `foo` (none: it is valid)."""
    return [m.message for m in load_text_report(ap(spec), "t.yaml").messages if m.level == "Error"]


def one_principal(rule: dict[str, Any]) -> Any:
    assert rule["permissions"] == [{"any": True}]
    (principal,) = rule["principals"]
    return principal


def one_permission(rule: dict[str, Any]) -> Any:
    assert rule["principals"] == [{"any": True}]
    (permission,) = rule["permissions"]
    return permission


def jwt_claim(path: list[str], *matchers: str) -> str:
    """istiod's MetadataListValueMatcherForJWTClaims: the claim as a list holding a match, or a match."""
    keys = ", ".join(f"{{key: {k}}}" for k in ["payload", *path])
    one = (
        "{orMatch: {valueMatchers: [" + ", ".join(f"{{stringMatch: {m}}}" for m in matchers) + "]}}"
        if len(matchers) > 1
        else f"{{stringMatch: {matchers[0]}}}"
    )
    return (
        f"metadata: {{filter: envoy.filters.http.jwt_authn, path: [{keys}], "
        f"value: {{orMatch: {{valueMatchers: [{{listMatch: {{oneOf: {one}}}}}, {one}]}}}}}}"
    )


def req_principal(value: str) -> str:
    """The iss/sub pair of one request principal without wildcards: split at the last `/`; with no `/`
    the value is the issuer and the subject must be empty."""
    iss, sep, sub = value.rpartition("/")
    if not sep:
        iss, sub = value, ""
    return "{" + _request_principal(f"{{exact: {json.dumps(iss)}}}", f"{{exact: {json.dumps(sub)}}}") + "}"


# --- model/generator_test.go TestRequestPrincipal ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("*", ANY, ANY),
        ("foo*", "{prefix: foo}", ANY),
        ("foo/*", "{exact: foo}", ANY),
        ("foo/bar*", "{exact: foo}", "{prefix: bar}"),
        ("*foo", ANY, "{suffix: foo}"),
        ("*/foo", ANY, "{exact: foo}"),
        ("*bar/foo", "{suffix: bar}", "{exact: foo}"),
        ("foo/bar", "{exact: foo}", "{exact: bar}"),
    ],
)
@pytest.mark.parametrize("via", ["requestPrincipals", "request.auth.principal"])
def test_request_principal(value: str, iss: str, sub: str, via: str) -> None:
    spec = source(requestPrincipals=[value]) if via == "requestPrincipals" else when(via, [value])
    assert one_principal(rule0(spec)) == istio_principal(_request_principal(iss, sub))


# --- model/generator_test.go TestGenerator -----------------------------------------------------

GENERATOR_PERMISSIONS = [
    ("destIPGenerator", when("destination.ip", ["1.2.3.4"]),
     "destinationIp: {addressPrefix: 1.2.3.4, prefixLen: 32}"),
    ("destPortGenerator", when("destination.port", ["80"]), "destinationPort: 80"),
    ("connSNIGenerator", when("connection.sni", ["exact.com"]), "requestedServerName: {exact: exact.com}"),
    ("envoyFilterGenerator-string", when("experimental.envoy.filters.a.b.c[d]", ["val"]),
     "metadata: {filter: envoy.filters.a.b.c, path: [{key: d}], value: {stringMatch: {exact: val}}}"),
    # `[v1, v2]` is one list element, "v1, v2", not two.
    ("envoyFilterGenerator-list", when("experimental.envoy.filters.a.b.c[d]", ["[v1, v2]"]),
     'metadata: {filter: envoy.filters.a.b.c, path: [{key: d}], '
     'value: {listMatch: {oneOf: {stringMatch: {exact: "v1, v2"}}}}}'),
    ("hostGenerator", operation(hosts=["foo"]),
     'header: {name: ":authority", stringMatch: {exact: foo, ignoreCase: true}}'),
    ("pathGenerator", operation(paths=["/abc"]), "urlPath: {path: {exact: /abc}}"),
    ("pathGenerator-template", operation(paths=["/abc/{*}"]),
     "uriTemplate: {name: uri-template, typedConfig: {"
     "'@type': type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig, "
     "pathTemplate: /abc/*}}"),
    ("methodGenerator", operation(methods=["GET"]), 'header: {name: ":method", stringMatch: {exact: GET}}'),
]  # fmt: skip

GENERATOR_PRINCIPALS = [
    ("srcIPGenerator", when("source.ip", ["1.2.3.4"]), "directRemoteIp: {addressPrefix: 1.2.3.4, prefixLen: 32}"),
    ("remoteIPGenerator", when("remote.ip", ["1.2.3.4"]), "remoteIp: {addressPrefix: 1.2.3.4, prefixLen: 32}"),
    ("srcNamespaceGenerator-http", when("source.namespace", ["foo"]),
     'authenticated: {principalName: {safeRegex: {regex: ".*/ns/foo/.*"}}}'),
    ("srcPrincipalGenerator-http", when("source.principal", ["foo"]),
     'authenticated: {principalName: {exact: "spiffe://foo"}}'),
    ("requestHeaderGenerator", when("request.headers[x-foo]", ["foo"]),
     "header: {name: x-foo, stringMatch: {exact: foo}}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "spec", "want"), GENERATOR_PERMISSIONS, ids=[c[0] for c in GENERATOR_PERMISSIONS]
)
def test_generator_permission(name: str, spec: str, want: str) -> None:
    assert one_permission(rule0(spec)) == istio_permission(want)


@pytest.mark.parametrize(
    ("name", "spec", "want"), GENERATOR_PRINCIPALS, ids=[c[0] for c in GENERATOR_PRINCIPALS]
)
def test_generator_principal(name: str, spec: str, want: str) -> None:
    assert one_principal(rule0(spec)) == istio_principal(want)


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [
        ("source.namespace", "foo", 'authenticated: {principalName: {safeRegex: {regex: ".*/ns/foo/.*"}}}'),
        ("source.principal", "foo", 'authenticated: {principalName: {exact: "spiffe://foo"}}'),
    ],
    ids=["srcNamespaceGenerator-tcp", "srcPrincipalGenerator-tcp"],
)
def test_generator_principal_tcp(key: str, value: str, want: str) -> None:
    rule = tcp_rules(when(key, [value]))["ns[foo]-policy[p]-rule[0]"]
    assert one_principal(rule) == istio_principal(want)


def test_generator_envoy_filter_invalid_key_is_rejected() -> None:
    assert any(
        "should have format a[b]" in e for e in rejected(when("experimental.envoy.filters.a.b.c]", ["val"]))
    )


def test_envoy_filter_key_trims_one_closing_bracket() -> None:
    # envoyFilterGenerator: SplitN(TrimSuffix(key, "]"), "[", 2): the metadata key keeps any other `]`.
    rule = rule0(when("experimental.envoy.filters.a.b[c]]", ["v"]))
    assert one_permission(rule) == istio_permission(
        'metadata: {filter: envoy.filters.a.b, path: [{key: "c]"}], value: {stringMatch: {exact: v}}}'
    )


# --- model/generator_test.go TestServiceAccount / TestServiceAccountRegex ----------------------


def _service_account_regex(value: str) -> str:
    (principal,) = rule0(source(serviceAccounts=[value]))["principals"]
    return principal["authenticated"]["principal_name"]["safe_regex"]["regex"]


@pytest.mark.parametrize(
    ("identity", "match"),
    [
        ("spiffe://cluster.local/ns/my-ns/sa/my-sa", True),
        ("spiffe://cluster.local/ns/my-ns/sa/my-sa/k/v", True),
        ("spiffe://cluster.local/k/v/ns/my-ns/sa/my-sa", True),
        ("spiffe://cluster.local/ns/my-ns/k/v/sa/my-sa", True),
        ("spiffe://cluster.local/k1/v1/ns/my-ns/k2/v2/sa/my-sa/k3/v3", True),
        ("spiffe://cluster.local/ns/my-ns/sa/my-sa-suffix", False),
        ("spiffe://cluster.local/ns/my-ns-suffix/sa/my-sa", False),
        ("cluster.local/ns/my-ns/sa/my-sa", False),
        ("spiffe://ns/my-ns/sa/my-sa", False),
        ("spiffe://cluster.local/ns/my-ns", False),
        ("spiffe://cluster.local/sa/my-sa", False),
        # istiod's own caveat: a value followed by the next key reads as a key/value pair.
        ("spiffe://cluster.local/k/ns/my-ns/something/bar/sa/my-sa/baz", True),
    ],
)
def test_service_account_regex_matches(identity: str, match: bool) -> None:
    # Envoy's safe_regex matches the whole string; this regex reads the same in RE2 and Python.
    assert bool(re.fullmatch(_service_account_regex("my-ns/my-sa"), identity)) is match


def test_service_account_regex_defaults_to_the_policy_namespace() -> None:
    want = "spiffe://.+/ns/foo/(.+/|)sa/my-sa(/.+)?"
    assert _service_account_regex("foo/my-sa") == want
    assert _service_account_regex("my-sa") == want


# --- model/model_test.go TestModel_MigrateTrustDomain ------------------------------------------

TD_MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {trustDomain: td-1, trustDomainAliases: [td-2]}
"""


def _text(node: Any) -> str:
    return json.dumps(node)


def test_migrate_trust_domain_leaves_request_principals() -> None:
    got = _text(rule0(source(requestPrincipals=["td-1/ns/foo/sa/sleep"]), "ALLOW", TD_MESH))
    assert '"td-1/ns/foo/sa"' in got and "td-2" not in got


@pytest.mark.parametrize(
    "spec",
    [source(principals=["td-1/ns/foo/sa/sleep"]), when("source.principal", ["td-1/ns/foo/sa/sleep"])],
    ids=["source-principal-field", "source-principal-attribute"],
)
def test_migrate_trust_domain_expands_source_principals(spec: str) -> None:
    assert one_principal(rule0(spec, "ALLOW", TD_MESH)) == istio_principal(
        """orIds: {ids: [{authenticated: {principalName: {exact: "spiffe://td-1/ns/foo/sa/sleep"}}},
                         {authenticated: {principalName: {exact: "spiffe://td-2/ns/foo/sa/sleep"}}}]}"""
    )


# --- model/model_test.go TestModel_Generate ----------------------------------------------------

MODEL_RULE = {
    "from": [
        {"source": {"requestPrincipals": ["td-1/ns/foo/sa/sleep-1"], "notRequestPrincipals": ["td-1/ns/foo/sa/sleep-2"]}},
        {"source": {"requestPrincipals": ["td-1/ns/foo/sa/sleep-3"], "notRequestPrincipals": ["td-1/ns/foo/sa/sleep-4"]}},
    ],
    "to": [
        {"operation": {"ports": ["8001"], "notPorts": ["8002"]}},
        {"operation": {"ports": ["8003"], "notPorts": ["8004"]}},
    ],
    "when": [
        {"key": "source.principal", "values": ["td-1/ns/foo/sa/httpbin-1"], "notValues": ["td-1/ns/foo/sa/httpbin-2"]},
        {"key": "destination.ip", "values": ["10.0.0.1"], "notValues": ["10.0.0.2"]},
    ],
}  # fmt: skip

WHEN_PRINCIPAL = [
    'authenticated: {principalName: {exact: "spiffe://td-1/ns/foo/sa/httpbin-1"}}',
    'notId: {authenticated: {principalName: {exact: "spiffe://td-1/ns/foo/sa/httpbin-2"}}}',
]
WHEN_IP = [
    "destinationIp: {addressPrefix: 10.0.0.1, prefixLen: 32}",
    "notRule: {destinationIp: {addressPrefix: 10.0.0.2, prefixLen: 32}}",
]


def _and(kind: str, members: list[str]) -> Any:
    if kind == "principal":
        return istio_principal("andIds: {ids: [" + ", ".join("{" + m + "}" for m in members) + "]}")
    return istio_permission("andRules: {rules: [" + ", ".join("{" + m + "}" for m in members) + "]}")


def _model_permissions() -> list[Any]:
    return [
        _and(
            "permission", [f"destinationPort: {port}", f"notRule: {{destinationPort: {not_port}}}", *WHEN_IP]
        )
        for port, not_port in ((8001, 8002), (8003, 8004))
    ]


@pytest.mark.parametrize("action", ["ALLOW", "DENY", "AUDIT"])
def test_model_generate_http(action: str) -> None:
    spec = json.dumps({"action": action, "rules": [MODEL_RULE]})
    rule = rule0(spec, action)
    assert rule["permissions"] == _model_permissions()
    assert rule["principals"] == [
        _and(
            "principal",
            [req_principal(f"td-1/ns/foo/sa/sleep-{a}")[1:-1], "notId: " + req_principal(f"td-1/ns/foo/sa/sleep-{b}"),
             *WHEN_PRINCIPAL],
        )
        for a, b in ((1, 2), (3, 4))
    ]  # fmt: skip


def test_model_generate_allow_tcp_skips_the_rule() -> None:
    (rbac,) = tcp_rbacs(ap(json.dumps({"rules": [MODEL_RULE]})))
    assert not policies(rbac)


@pytest.mark.parametrize("action", ["DENY", "AUDIT"])
def test_model_generate_deny_and_audit_tcp_drop_request_principals(action: str) -> None:
    (rbac,) = tcp_rbacs(ap(json.dumps({"action": action, "rules": [MODEL_RULE]})))
    rule = policies(rbac)["ns[foo]-policy[p]-rule[0]"]
    assert rule["permissions"] == _model_permissions()
    assert rule["principals"] == [_and("principal", WHEN_PRINCIPAL)] * 2
    assert "sleep" not in _text(rule)


# --- model/permission_test.go TestPermission_Generate (as v1beta1 operations / `when` keys) -------


def _or(kind: str, members: list[str], negate: bool = False) -> str:
    key, items = ("orRules", "rules") if kind == "permission" else ("orIds", "ids")
    text = f"{key}: {{{items}: [" + ", ".join("{" + m + "}" for m in members) + "]}"
    return ("notRule: {" if kind == "permission" else "notId: {") + text + "}" if negate else text


def _authority(host: str) -> str:
    return f'header: {{name: ":authority", stringMatch: {{exact: {host}, ignoreCase: true}}}}'


def _method(method: str) -> str:
    return f'header: {{name: ":method", stringMatch: {{exact: {method}}}}}'


def _dest_ip(ip: str) -> str:
    return f"destinationIp: {{addressPrefix: {ip}, prefixLen: 32}}"


PERMISSION_CASES = [
    ("empty permission", json.dumps({"rules": [{}]}), "any: true"),
    ("hosts", operation(hosts=["host-1", "host-2"]), _or("permission", [_authority("host-1"), _authority("host-2")])),
    ("notHosts", operation(notHosts=["host-1", "host-2"]),
     _or("permission", [_authority("host-1"), _authority("host-2")], negate=True)),
    ("methods", operation(methods=["GET", "POST"]), _or("permission", [_method("GET"), _method("POST")])),
    ("notMethods", operation(notMethods=["GET", "POST"]), _or("permission", [_method("GET"), _method("POST")], True)),
    ("paths", operation(paths=["/hello", "/world"]),
     _or("permission", ["urlPath: {path: {exact: /hello}}", "urlPath: {path: {exact: /world}}"])),
    ("notPaths", operation(notPaths=["/hello", "/world"]),
     _or("permission", ["urlPath: {path: {exact: /hello}}", "urlPath: {path: {exact: /world}}"], True)),
    ("ports", operation(ports=["80", "90"]), _or("permission", ["destinationPort: 80", "destinationPort: 90"])),
    ("notPorts", operation(notPorts=["80", "90"]),
     _or("permission", ["destinationPort: 80", "destinationPort: 90"], True)),
    ("constraint attrDestIP", when("destination.ip", ["1.2.3.4", "5.6.7.8"]),
     _or("permission", [_dest_ip("1.2.3.4"), _dest_ip("5.6.7.8")])),
    ("constraint attrDestPort", when("destination.port", ["8000", "9000"]),
     _or("permission", ["destinationPort: 8000", "destinationPort: 9000"])),
    ("constraint attrConnSNI", when("connection.sni", ["sni-1", "sni-2"]),
     _or("permission", ["requestedServerName: {exact: sni-1}", "requestedServerName: {exact: sni-2}"])),
    # v1beta1: one metadata matcher whose value ORs the values (envoyFilterGenerator.extendedPermission).
    ("constraint experimental.envoy.filters.", when("experimental.envoy.filters.a.b[c]", ["v1", "v2"]),
     "metadata: {filter: envoy.filters.a.b, path: [{key: c}], "
     "value: {orMatch: {valueMatchers: [{stringMatch: {exact: v1}}, {stringMatch: {exact: v2}}]}}}"),
    ("notValues", when("destination.ip", None, ["1.2.3.4", "5.6.7.8"]),
     _or("permission", [_dest_ip("1.2.3.4"), _dest_ip("5.6.7.8")], True)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "want"), PERMISSION_CASES, ids=[c[0] for c in PERMISSION_CASES])
def test_permission_generate(name: str, spec: str, want: str) -> None:
    assert one_permission(rule0(spec)) == istio_permission(want)


def test_permission_generate_values_and_not_values() -> None:
    rule = rule0(when("destination.ip", ["1.2.3.4", "5.6.7.8"], ["1.2.3.4", "5.6.7.8"]))
    ips = [_dest_ip("1.2.3.4"), _dest_ip("5.6.7.8")]
    assert one_permission(rule) == _and("permission", [_or("permission", ips), _or("permission", ips, True)])


def test_permission_generate_multiple_constraints() -> None:
    spec = json.dumps(
        {
            "rules": [
                {
                    "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/hello", "/world"]}}],
                    "when": [
                        {"key": "destination.ip", "values": ["1.2.3.4", "5.6.7.8"]},
                        {"key": "destination.port", "values": ["8000", "9000"]},
                    ],
                }
            ]
        }
    )
    assert one_permission(rule0(spec)) == _and(
        "permission",
        [
            _or("permission", [_dest_ip("1.2.3.4"), _dest_ip("5.6.7.8")]),
            _or("permission", ["destinationPort: 8000", "destinationPort: 9000"]),
            _or("permission", [_method("GET"), _method("POST")]),
            _or("permission", ["urlPath: {path: {exact: /hello}}", "urlPath: {path: {exact: /world}}"]),
        ],
    )


@pytest.mark.parametrize(
    "spec",
    [when("unknown", ["v1", "v2"]), when("destination.port", ["9999999"]), when("source.ip", ["x.y.z"]),
     when("custom", ["v1", "v2"])],
    ids=["unknown constraint", "invalid constraint", "principal invalid property", "principal custom property"],
)  # fmt: skip
def test_unknown_and_invalid_constraints_are_rejected(spec: str) -> None:
    # v1alpha1 skipped them while generating; v1beta1 validation (ValidateAttribute) rejects the policy.
    assert rejected(spec)
    with pytest.raises(ConfigErrors):
        http_rbac_of("ALLOW", ap(spec))


def test_permission_generate_for_deny() -> None:
    spec = json.dumps(
        {
            "action": "DENY",
            "rules": [
                {
                    "to": [{"operation": {"methods": ["GET"]}}],
                    "when": [{"key": "request.headers[:foo]", "values": ["bar"]}],
                }
            ],
        }
    )
    rule = rule0(spec, "DENY")
    assert rule["permissions"] == [istio_permission(_method("GET"))]
    assert rule["principals"] == [istio_principal('header: {name: ":foo", stringMatch: {exact: bar}}')]


@pytest.mark.parametrize(
    "spec",
    [
        json.dumps({"rules": [{"to": [{"operation": {"methods": ["GET"]}}],
                               "when": [{"key": "request.headers[:foo]", "values": ["bar"]}]}]}),
        operation(hosts=["host-1"]),
    ],
    ids=["permission with forTCP", "permission invalid for TCP"],
)  # fmt: skip
def test_permission_http_only_allow_rule_is_skipped_on_tcp(spec: str) -> None:
    assert tcp_rules(spec) == {}


def test_permission_generate_for_tcp_and_deny() -> None:
    spec = json.dumps(
        {
            "action": "DENY",
            "rules": [
                {
                    "to": [
                        {
                            "operation": {
                                "methods": ["GET"], "notMethods": ["POST"], "paths": ["/abc"], "notPaths": ["/xyz"],
                                "ports": ["80"], "notPorts": ["81"], "hosts": ["host.com"], "notHosts": ["other.com"],
                            }
                        }
                    ],
                    "when": [
                        {"key": "destination.ip", "values": ["1.2.3.4"]},
                        {"key": "destination.port", "values": ["90"], "notValues": ["91"]},
                    ],
                }
            ],
        }
    )  # fmt: skip
    rule = tcp_rules(spec)["ns[foo]-policy[p]-rule[0]"]
    assert one_permission(rule) == _and(
        "permission",
        [
            "destinationPort: 80",
            "notRule: {destinationPort: 81}",
            _dest_ip("1.2.3.4"),
            "destinationPort: 90",
            "notRule: {destinationPort: 91}",
        ],
    )


# --- model/permission_test.go / principal_test.go ValidateForTCP ---------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "tcp_ok"),
    [
        ("permission with path", operation(paths=["/"]), False),
        ("permission with notPath", operation(notPaths=["/"]), False),
        ("permission with method", operation(methods=["GET"]), False),
        ("permission with notMethod", operation(notMethods=["GET"]), False),
        ("permission with unsupported constraint",
         json.dumps({"rules": [{"when": [{"key": "destination.ip", "values": ["1.2.3.4"]},
                                         {"key": "request.headers[token]", "values": ["TOKEN"]}]}]}), False),
        ("good permission",
         json.dumps({"rules": [{"when": [{"key": "destination.ip", "values": ["1.2.3.4"]},
                                         {"key": "destination.port", "values": ["80"]}]}]}), True),
        ("principal with requestPrincipal", source(requestPrincipals=["request-principal"]), False),
        ("principal with notRequestPrincipal", source(notRequestPrincipals=["not-request-principal"]), False),
        ("principal with unsupported property", when("request.auth.presenter", ["ns"]), False),
        ("principal with request header", when("request.headers[id]", ["123"]), False),
        ("good principal",
         json.dumps({"rules": [{"from": [{"source": {"principals": ["user"]}}],
                                "when": [{"key": "source.namespace", "values": ["ns"]},
                                         {"key": "source.principal", "values": ["p"]}]}]}), True),
    ],
)  # fmt: skip
def test_validate_for_tcp(name: str, spec: str, tcp_ok: bool) -> None:
    # An ALLOW rule istiod cannot express on TCP is left out of the network filter altogether.
    assert bool(tcp_rules(spec)) is tcp_ok


# --- model/principal_test.go TestPrincipal_Generate (as v1beta1 sources / `when` keys) ----------


def _spiffe(name: str) -> str:
    return f'authenticated: {{principalName: {{exact: "spiffe://{name}"}}}}'


def _ns(ns: str) -> str:
    return f'authenticated: {{principalName: {{safeRegex: {{regex: ".*/ns/{ns}/.*"}}}}}}'


def _src_ip(ip: str) -> str:
    return f"directRemoteIp: {{addressPrefix: {ip}, prefixLen: 32}}"


def _header(name: str, value: str) -> str:
    return f"header: {{name: {json.dumps(name)}, stringMatch: {{exact: {value}}}}}"


SRC_PRINCIPAL_VALUES = ["id-1", "*", "allAuthenticatedUsers", "allUsers"]
# v1beta1 gives `allAuthenticatedUsers` / `allUsers` no meaning: they are principal names like any other.
SRC_PRINCIPAL_WANT = _or(
    "principal",
    [_spiffe("id-1"), "authenticated: {principalName: {safeRegex: {regex: .+}}}",
     _spiffe("allAuthenticatedUsers"), _spiffe("allUsers")],
)  # fmt: skip

PRINCIPAL_CASES = [
    ("empty principal", json.dumps({"rules": [{}]}), "any: true"),
    ("names", source(principals=["name-1", "name-2"]), _or("principal", [_spiffe("name-1"), _spiffe("name-2")])),
    ("notNames", source(notPrincipals=["name-1", "name-2"]),
     _or("principal", [_spiffe("name-1"), _spiffe("name-2")], True)),
    ("requestPrincipal", source(requestPrincipals=["id-1", "id-2"]),
     _or("principal", [req_principal("id-1")[1:-1], req_principal("id-2")[1:-1]])),
    ("notRequestPrincipal", source(notRequestPrincipals=["id-1", "id-2"]),
     _or("principal", [req_principal("id-1")[1:-1], req_principal("id-2")[1:-1]], True)),
    ("namespaces", source(namespaces=["ns-1", "ns-2"]), _or("principal", [_ns("ns-1"), _ns("ns-2")])),
    ("notNamespaces", source(notNamespaces=["ns-1", "ns-2"]), _or("principal", [_ns("ns-1"), _ns("ns-2")], True)),
    ("ips", source(ipBlocks=["1.2.3.4", "5.6.7.8"]), _or("principal", [_src_ip("1.2.3.4"), _src_ip("5.6.7.8")])),
    ("notIps", source(notIpBlocks=["1.2.3.4", "5.6.7.8"]),
     _or("principal", [_src_ip("1.2.3.4"), _src_ip("5.6.7.8")], True)),
    ("property attrSrcIP", when("source.ip", ["1.2.3.4", "5.6.7.8"]),
     _or("principal", [_src_ip("1.2.3.4"), _src_ip("5.6.7.8")])),
    ("property attrSrcNamespace", when("source.namespace", ["ns-1", "ns-2"]),
     _or("principal", [_ns("ns-1"), _ns("ns-2")])),
    ("property attrSrcPrincipal v1beta1", when("source.principal", SRC_PRINCIPAL_VALUES), SRC_PRINCIPAL_WANT),
    ("property attrRequestPrincipal", when("request.auth.principal", ["id-1", "id-2"]),
     _or("principal", [req_principal("id-1")[1:-1], req_principal("id-2")[1:-1]])),
    ("property attrRequestAudiences", when("request.auth.audiences", ["aud-1", "aud-2"]),
     jwt_claim(["aud"], "{exact: aud-1}", "{exact: aud-2}")),
    ("property attrRequestPresenter", when("request.auth.presenter", ["pre-1", "pre-2"]),
     jwt_claim(["azp"], "{exact: pre-1}", "{exact: pre-2}")),
    ("notValues", when("source.ip", None, ["10.0.0.1", "10.0.0.2"]),
     _or("principal", [_src_ip("10.0.0.1"), _src_ip("10.0.0.2")], True)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "want"), PRINCIPAL_CASES, ids=[c[0] for c in PRINCIPAL_CASES])
def test_principal_generate(name: str, spec: str, want: str) -> None:
    assert one_principal(rule0(spec)) == istio_principal(want)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        (when("source.namespace", ["ns-1", "ns-2"]), _or("principal", [_ns("ns-1"), _ns("ns-2")])),
        (when("source.principal", SRC_PRINCIPAL_VALUES), SRC_PRINCIPAL_WANT),
    ],
    ids=["property attrSrcNamespace for TCP filter", "property attrSrcPrincipal for TCP filter v1beta1"],
)
def test_principal_generate_for_tcp(spec: str, want: str) -> None:
    assert one_principal(tcp_rules(spec)["ns[foo]-policy[p]-rule[0]"]) == istio_principal(want)


def _rule_with_when(*conds: tuple[str, list[str]], action: str = "ALLOW", **src: list[str]) -> str:
    rule: dict[str, Any] = {"when": [{"key": k, "values": v} for k, v in conds]}
    if src:
        rule["from"] = [{"source": src}]
    return json.dumps({"action": action, "rules": [rule]})


def test_principal_generate_request_headers() -> None:
    rule = rule0(
        _rule_with_when(
            ("request.headers[X-id]", ["id-1", "id-2"]), ("request.headers[X-tag]", ["tag-1", "tag-2"])
        )
    )
    assert one_principal(rule) == _and(
        "principal",
        [_or("principal", [_header("X-id", "id-1"), _header("X-id", "id-2")]),
         _or("principal", [_header("X-tag", "tag-1"), _header("X-tag", "tag-2")])],
    )  # fmt: skip


def test_principal_generate_request_claims() -> None:
    rule = rule0(
        _rule_with_when(
            ("request.auth.claims[claim-1]", ["v-1", "v-2"]), ("request.auth.claims[claim-2]", ["v-3", "v-4"])
        )
    )
    assert one_principal(rule) == _and(
        "principal",
        [jwt_claim(["claim-1"], "{exact: v-1}", "{exact: v-2}"), jwt_claim(["claim-2"], "{exact: v-3}", "{exact: v-4}")],
    )  # fmt: skip


def test_principal_generate_values_and_not_values() -> None:
    spec = when("source.ip", ["1.2.3.4", "5.6.7.8"], ["10.0.0.1", "10.0.0.2"])
    assert one_principal(rule0(spec)) == _and(
        "principal",
        [_or("principal", [_src_ip("1.2.3.4"), _src_ip("5.6.7.8")]),
         _or("principal", [_src_ip("10.0.0.1"), _src_ip("10.0.0.2")], True)],
    )  # fmt: skip


def test_principal_generate_multiple_properties() -> None:
    spec = _rule_with_when(
        ("source.ip", ["1.2.3.4", "5.6.7.8"]),
        ("source.namespace", ["ns-1", "ns-2"]),
        ("source.principal", ["id-1", "id-2"]),
        ("request.auth.audiences", ["aud-1", "aud-2"]),
    )
    assert one_principal(rule0(spec)) == _and(
        "principal",
        [
            _or("principal", [_src_ip("1.2.3.4"), _src_ip("5.6.7.8")]),
            _or("principal", [_ns("ns-1"), _ns("ns-2")]),
            _or("principal", [_spiffe("id-1"), _spiffe("id-2")]),
            jwt_claim(["aud"], "{exact: aud-1}", "{exact: aud-2}"),
        ],
    )


def test_principal_generate_for_deny() -> None:
    spec = _rule_with_when(
        ("request.headers[:method]", ["GET"]),
        action="DENY",
        principals=["principal"],
        requestPrincipals=["request"],
    )
    assert one_principal(rule0(spec, "DENY")) == _and(
        "principal",
        [
            _spiffe("principal"),
            _request_principal("{exact: request}", '{exact: ""}'),
            _header(":method", "GET"),
        ],
    )


def test_principal_generate_for_tcp_and_deny() -> None:
    spec = _rule_with_when(
        ("request.headers[:method]", ["GET"]),
        action="DENY",
        principals=["principal"],
        requestPrincipals=["request"],
        namespaces=["namespace"],
        ipBlocks=["1.2.3.4"],
    )
    rule = tcp_rules(spec)["ns[foo]-policy[p]-rule[0]"]
    assert one_principal(rule) == _and(
        "principal", [_spiffe("principal"), _ns("namespace"), _src_ip("1.2.3.4")]
    )


# --- model/util_test.go TestConvertToPort ---------------------------------------------------------


@pytest.mark.parametrize(("port", "valid"), [("-80", False), ("xyz", False), ("91234", False), ("443", True)])
@pytest.mark.parametrize("via", ["ports", "destination.port"])
def test_convert_to_port(port: str, valid: bool, via: str) -> None:
    spec = operation(ports=[port]) if via == "ports" else when(via, [port])
    assert (not rejected(spec)) is valid
    if valid:
        assert one_permission(rule0(spec)) == istio_permission(f"destinationPort: {port}")


# --- model/util_test.go TestExtractNameInBrackets / TestExtractNameInNestedBrackets ---------------


@pytest.mark.parametrize(
    ("suffix", "header"),
    [("[good]", "good"), ("[[good]]", "[good]"), ("[]", None), ("[bad", None), ("bad]", None), ("bad", None)],
)
def test_extract_name_in_brackets(suffix: str, header: str | None) -> None:
    spec = when("request.headers" + suffix, ["v"])
    if header is None:
        # Istio's ValidateAttribute (validateMapKey) rejects these before any generator sees them.
        assert rejected(spec)
        return
    assert one_principal(rule0(spec)) == istio_principal(
        f"header: {{name: {json.dumps(header)}, stringMatch: {{exact: v}}}}"
    )


@pytest.mark.parametrize(
    ("suffix", "path"),
    [
        ("[good]", ["good"]),
        ("[good][abc][xyz]", ["good", "abc", "xyz"]),
        ("[[good]", ["[good"]),
        ("[good]]", ["good]"]),
        ("[[good]]", ["[good]"]),
        ("[]", None),
        ("[bad", None),
        ("bad]", None),
        ("bad", None),
    ],
)
def test_extract_name_in_nested_brackets(suffix: str, path: list[str] | None) -> None:
    spec = when("request.auth.claims" + suffix, ["v"])
    if path is None:
        assert rejected(spec)
        return
    want = jwt_claim([json.dumps(k) for k in path], "{exact: v}")
    assert one_principal(rule0(spec)) == istio_principal(want)


@pytest.mark.parametrize("key", ["request.auth.claims", "request.headers"])
def test_malformed_key_that_passes_validation(key: str) -> None:
    # `x[bad]` has the a[b] shape validation asks for, but the generator cannot read a name from it
    # (extractNameIn(Nested)Brackets error): istiod skips the ALLOW rule (allowing less) and drops only
    # that condition from a DENY rule (denying more).
    bad = key + "x[bad]"
    assert not rejected(when(bad, ["v"]))
    spec = json.dumps({"rules": [{"when": [{"key": bad, "values": ["v"]}]}, {}]})
    assert list(rules_of(spec)) == ["ns[foo]-policy[p]-rule[1]"]
    deny = json.dumps(
        {
            "action": "DENY",
            "rules": [{"when": [{"key": bad, "values": ["v"]}, {"key": "source.ip", "values": ["1.2.3.4"]}]}],
        }
    )
    assert one_principal(rule0(deny, "DENY")) == istio_principal(_src_ip("1.2.3.4"))


# --- matcher/header_test.go ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("/productpage", "stringMatch: {exact: /productpage}"),
        ("*/productpage*", 'stringMatch: {suffix: "/productpage*"}'),
        ("/productpage*", "stringMatch: {prefix: /productpage}"),
        ("*", "presentMatch: true"),
    ],
    ids=["exact match", "suffix match", "prefix match", "* match"],
)
def test_header_matcher(value: str, want: str) -> None:
    rule = rule0(when("request.headers[:path]", [value]))
    assert one_principal(rule) == istio_principal(f'header: {{name: ":path", {want}}}')


@pytest.mark.parametrize(
    ("value", "regex"),
    [
        ("/productpage", "^/productpage$|^/productpage,.*|.*,/productpage,.*|.*,/productpage$"),
        (" /productpage ", "^ /productpage $|^ /productpage ,.*|.*, /productpage ,.*|.*, /productpage $"),
        ("*/productpage*", r"^.*/productpage\*$|^.*/productpage\*,.*|.*,.*/productpage\*,.*|.*,.*/productpage\*$"),
        ("*/productpage* ", r"^.*/productpage\* $|^.*/productpage\* ,.*|.*,.*/productpage\* ,.*|.*,.*/productpage\* $"),
        ("/productpage*", "^/productpage.*$|^/productpage.*,.*|.*,/productpage.*,.*|.*,/productpage.*$"),
        (" /productpage*", "^ /productpage.*$|^ /productpage.*,.*|.*, /productpage.*,.*|.*, /productpage.*$"),
        ("*", None),
    ],
    ids=["exact match", "exact match with whitespace around", "suffix match", "suffix match with whitespace behind",
         "prefix match", "prefix match with whitespace before", "present match"],
)  # fmt: skip
def test_inline_header_matcher(value: str, regex: str | None) -> None:
    rule = rule0(when("request.experimental.inline.headers[:path]", [value]))
    want = "presentMatch: true" if regex is None else f"safeRegexMatch: {{regex: {json.dumps(regex)}}}"
    assert one_principal(rule) == istio_principal(f'header: {{name: ":path", {want}}}')


def test_inline_header_is_http_only() -> None:
    assert tcp_rules(when("request.experimental.inline.headers[x]", ["v"])) == {}


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("*", "presentMatch: true"),
        ("*.example.com", "stringMatch: {suffix: .example.com, ignoreCase: true}"),
        ("example.*", "stringMatch: {prefix: example., ignoreCase: true}"),
        ("example.com", "stringMatch: {exact: example.com, ignoreCase: true}"),
    ],
    ids=["present match", "suffix match", "prefix match", "exact match"],
)
def test_host_matcher(value: str, want: str) -> None:
    assert one_permission(rule0(operation(hosts=[value]))) == istio_permission(
        f'header: {{name: ":authority", {want}}}'
    )


@pytest.mark.parametrize(
    ("value", "want"),
    [("/productpage", "{exact: /productpage}"), ("/prefix*", "{prefix: /prefix}"), ("*suffix", "{suffix: suffix}"),
     ("*", ANY)],
    ids=["exact match", "prefix match", "suffix match", "wildcard match"],
)  # fmt: skip
def test_path_matcher(value: str, want: str) -> None:
    assert one_permission(rule0(operation(paths=[value]))) == istio_permission(f"urlPath: {{path: {want}}}")


# --- matcher/string_test.go TestStringMatcherWithPrefix (the spiffe:// prefix of source principals) -


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("*", ANY),
        ("-prefix-*", '{prefix: "spiffe://-prefix-"}'),
        ("*-suffix", '{safeRegex: {regex: "spiffe://.*-suffix"}}'),
        ("-exact", '{exact: "spiffe://-exact"}'),
    ],
    ids=["wildcardAsRequired", "prefix", "suffix", "exact"],
)
def test_string_matcher_with_prefix(value: str, want: str) -> None:
    assert one_principal(rule0(source(principals=[value]))) == istio_principal(
        f"authenticated: {{principalName: {want}}}"
    )


def test_string_matcher_suffix_without_prefix() -> None:
    # "suffix-empty-prefix": a value with no prefix to add (connection.sni) keeps a plain suffix match.
    assert one_permission(rule0(when("connection.sni", ["*-suffix"]))) == istio_permission(
        "requestedServerName: {suffix: -suffix}"
    )


# --- matcher/metadata_test.go ---------------------------------------------------------------------


def test_metadata_string_matcher() -> None:
    assert one_permission(
        rule0(when("experimental.envoy.filters.istio_authn[key]", ["exact"]))
    ) == istio_permission(
        "metadata: {filter: envoy.filters.istio_authn, path: [{key: key}], value: {stringMatch: {exact: exact}}}"
    )


def test_metadata_list_matcher_wildcard() -> None:
    # A `*` list element is the `.+` regex, never an empty prefix/suffix.
    assert one_permission(
        rule0(when("experimental.envoy.filters.istio_authn[key1]", ["[*]"]))
    ) == istio_permission(
        "metadata: {filter: envoy.filters.istio_authn, path: [{key: key1}], "
        f"value: {{listMatch: {{oneOf: {{stringMatch: {ANY}}}}}}}}}"
    )
    assert one_principal(rule0(when("request.auth.claims[key1][key2]", ["*"]))) == istio_principal(
        jwt_claim(["key1", "key2"], ANY)
    )
