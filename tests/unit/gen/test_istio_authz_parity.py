"""AuthorizationPolicy / PeerAuthentication translation against istiod's own test cases.

The inputs are istiod's `pilot/pkg/security/authz/builder/testdata/{http,tcp}/*-in.yaml` (namespace
`foo`, workload `app: httpbin, version: v1`), the expectations excerpts of the matching `*-out.yaml`
goldens (the `extended-*` ones where they exist: those match on jwt_authn's payload, as we do), of
`trustdomain/bundle_test.go` and of `authn/policy_applier_test.go` TestComposePeerAuthentication.
Comparison is by meaning, not bytes: AND/OR sets are unordered and flattened, single-member sets
unwrapped, and `google_re2: {}` / template extension names (no effect in Envoy) dropped.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import yaml
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2  # noqa: F401 (Any types)
from gen_helpers import configs, sidecar, snapshot
from google.protobuf.json_format import MessageToDict, ParseDict

from isthmus.model import authn
from isthmus.registry.types import Pod
from isthmus.xds.gen import authz

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 80}, {name: tcp, port: 9000, targetPort: 90}]
"""
PODS = [Pod("httpbin-0", "foo", "127.7.1.2", {"app": "httpbin", "version": "v1"}, workload="httpbin",
            app_ports={80: 41000, 90: 41001})]  # fmt: skip
HTTPBIN = sidecar("httpbin-0", "foo", {"app": "httpbin", "version": "v1"}, "127.7.1.2")

FILTERS = {action: name for action, name, _ in authz.RBAC_FILTERS}


def _snap(*docs: str) -> Any:
    return snapshot(SERVICE, *docs, pods=PODS, services=False)


def http_rbac_of(action: str, *docs: str) -> dict[str, Any] | None:
    """The RBAC config of one action's HTTP filter, as it reaches the routes of the workload."""
    packed = authz.rbac_per_route(_snap(*docs), HTTPBIN).get(FILTERS[action])
    if packed is None:
        return None
    per_route = http_rbac.RBACPerRoute()
    packed.Unpack(per_route)
    return MessageToDict(per_route.rbac, preserving_proto_field_name=True)


def tcp_rbacs(*docs: str) -> list[dict[str, Any]]:
    out = []
    for f in authz.inbound_network_filters(_snap(*docs), HTTPBIN):
        if f.name == authz.RBAC_NETWORK:
            config = network_rbac.RBAC()
            f.typed_config.Unpack(config)
            out.append(MessageToDict(config, preserving_proto_field_name=True))
    return out


# --- comparison by meaning ---------------------------------------------------------------------

_SETS = {"and_ids": "ids", "or_ids": "ids", "and_rules": "rules", "or_rules": "rules"}


def canon(node: Any) -> Any:
    """Flatten nested AND/OR sets of the same kind, unwrap one-member sets, sort members."""
    if isinstance(node, list):
        return [canon(x) for x in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key,) = node
        if key in _SETS:
            members = [canon(m) for m in (node[key] or {}).get(_SETS[key], [])]
            flat: list[Any] = []
            for m in members:
                flat += m[key][_SETS[key]] if isinstance(m, dict) and list(m) == [key] else [m]
            if len(flat) == 1:
                return flat[0]
            return {key: {_SETS[key]: sorted(flat, key=json.dumps)}}
        if key == "or_match":
            members = sorted((canon(m) for m in node[key].get("value_matchers", [])), key=json.dumps)
            return {key: {"value_matchers": members}}
    out = {}
    for k, v in node.items():
        if k == "google_re2" or (k == "name" and "typed_config" in node):
            continue  # RE2 is Envoy's only engine; a typed extension is chosen by its type, not its name
        out[k] = canon(v)
    return out


def istio_policy(text: str) -> Any:
    """A policy of an istiod golden (camelCase YAML) in our canonical form."""
    parsed = ParseDict(yaml.safe_load(textwrap.dedent(text)), rbac_pb2.Policy())
    return canon(MessageToDict(parsed, preserving_proto_field_name=True))


def istio_principal(text: str) -> Any:
    parsed = ParseDict(yaml.safe_load(textwrap.dedent(text)), rbac_pb2.Principal())
    return canon(MessageToDict(parsed, preserving_proto_field_name=True))


def istio_permission(text: str) -> Any:
    parsed = ParseDict(yaml.safe_load(textwrap.dedent(text)), rbac_pb2.Permission())
    return canon(MessageToDict(parsed, preserving_proto_field_name=True))


def policies(rbac: dict[str, Any], field: str = "rules") -> dict[str, Any]:
    return {name: canon(pol) for name, pol in (rbac.get(field) or {}).get("policies", {}).items()}


def and_members(node: Any, key: str) -> list[Any]:
    return node[key][_SETS[key]] if list(node) == [key] else [node]


# --- http/allow-full-rule (extended-allow-full-rule-out.yaml) ---------------------------------

FULL_RULE = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-1, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin, version: v1}}
  rules:
  - from:
    - source:
        serviceAccounts: ["my-ns/my-sa", "sa-only"]
        notServiceAccounts: ["my-ns/my-sa-not", "sa-not-only"]
  - from:
    - source:
        principals: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
        requestPrincipals: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*"]
        namespaces: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
        ipBlocks: ["1.2.3.4", "5.6.0.0/16"]
        remoteIpBlocks: ["1.2.3.4", "5.6.0.0/16"]
        notPrincipals: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]
        notRequestPrincipals: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]
        notNamespaces: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]
        notIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
        notRemoteIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
    to:
    - operation:
        methods: ["method", "method-prefix-*", "*-suffix-method", "*"]
        hosts: ["exact.com", "*.suffix.com", "prefix.*", "*"]
        ports: ["80", "90"]
        paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}", "/{**}/path/template"]
        notMethods: ["not-method", "not-method-prefix-*", "*-not-suffix-method", "*"]
        notHosts: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]
        notPorts: ["8000", "9000"]
        notPaths: ["/not-exact", "/not-prefix/*", "*/not-suffix", "*", "/not-path/template/{*}", "/{**}/not-path/template"]
    when:
    - {key: "request.headers[X-header]", values: ["header", "header-prefix-*", "*-suffix-header", "*"], notValues: ["not-header", "not-header-prefix-*", "*-not-suffix-header", "*"]}
    - {key: "source.ip", values: ["10.10.10.10", "192.168.10.0/24"], notValues: ["90.10.10.10", "90.168.10.0/24"]}
    - {key: "remote.ip", values: ["10.10.10.10", "192.168.10.0/24"], notValues: ["90.10.10.10", "90.168.10.0/24"]}
    - {key: "source.namespace", values: ["ns", "ns-prefix-*", "*-ns-suffix", "*"], notValues: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]}
    - {key: "source.principal", values: ["principal", "principal-prefix-*", "*-suffix-principal", "*"], notValues: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]}
    - {key: "request.auth.principal", values: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*", "https://example.com/*"], notValues: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]}
    - {key: "request.auth.audiences", values: ["audiences", "audiences-prefix-*", "*-suffix-audiences", "*"], notValues: ["not-audiences", "not-audiences-prefix-*", "*-not-suffix-audiences", "*"]}
    - {key: "request.auth.presenter", values: ["presenter", "presenter-prefix-*", "*-suffix-presenter", "*"], notValues: ["not-presenter", "not-presenter-prefix-*", "*-not-suffix-presenter", "*"]}
    - {key: "request.auth.claims[iss]", values: ["iss", "iss-prefix-*", "*-suffix-iss", "*"], notValues: ["not-iss", "not-iss-prefix-*", "*-not-suffix-iss", "*"]}
    - {key: "request.auth.claims[nested1][nested2]", values: ["nested", "nested-prefix-*", "*-suffix-nested", "*"], notValues: ["not-nested", "not-nested-prefix-*", "*-not-suffix-nested", "*"]}
    - {key: "destination.ip", values: ["10.10.10.10", "192.168.10.0/24"], notValues: ["90.10.10.10", "90.168.10.0/24"]}
    - {key: "destination.port", values: ["91", "92"], notValues: ["9001", "9002"]}
    - {key: "connection.sni", values: ["exact.com", "*.suffix.com", "prefix.*", "*"], notValues: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]}
    - {key: "experimental.envoy.filters.a.b[c]", values: ["exact", "prefix-*", "*-suffix", "*"], notValues: ["not-exact", "not-prefix-*", "*-not-suffix", "*"]}
"""


def _jwt(claim: str, match: str) -> str:
    return f"""
      metadata:
        filter: envoy.filters.http.jwt_authn
        path: [{{key: payload}}, {{key: {claim}}}]
        value: {{stringMatch: {match}}}"""


def _request_principal(iss: str, sub: str) -> str:
    return (
        "andIds: {ids: ["
        + ", ".join(
            json.dumps(yaml.safe_load(textwrap.dedent(_jwt(c, m)))) for c, m in (("iss", iss), ("sub", sub))
        )
        + "]}"
    )


ANY = "{safeRegex: {regex: .+}}"


def test_allow_full_rule_rule0_service_accounts_default_to_the_policy_namespace() -> None:
    rules = policies(http_rbac_of("ALLOW", FULL_RULE))
    assert rules["ns[foo]-policy[httpbin-1]-rule[0]"] == istio_policy("""
        permissions: [{andRules: {rules: [{any: true}]}}]
        principals:
        - andIds:
            ids:
            - orIds:
                ids:
                - authenticated: {principalName: {safeRegex: {regex: "spiffe://.+/ns/my-ns/(.+/|)sa/my-sa(/.+)?"}}}
                - authenticated: {principalName: {safeRegex: {regex: "spiffe://.+/ns/foo/(.+/|)sa/sa-only(/.+)?"}}}
            - notId:
                orIds:
                  ids:
                  - authenticated: {principalName: {safeRegex: {regex: "spiffe://.+/ns/my-ns/(.+/|)sa/my-sa-not(/.+)?"}}}
                  - authenticated: {principalName: {safeRegex: {regex: "spiffe://.+/ns/foo/(.+/|)sa/sa-not-only(/.+)?"}}}
    """)


# One OR set (and its negation) of the golden's rule[1] principal per source field or `when` key.
FULL_RULE_PRINCIPALS = {
    "principals": """
        orIds: {ids: [
          {authenticated: {principalName: {exact: "spiffe://principal"}}},
          {authenticated: {principalName: {prefix: "spiffe://principal-prefix-"}}},
          {authenticated: {principalName: {safeRegex: {regex: "spiffe://.*-suffix-principal"}}}},
          {authenticated: {principalName: {safeRegex: {regex: ".+"}}}}]}""",
    "namespaces": """
        orIds: {ids: [
          {authenticated: {principalName: {safeRegex: {regex: ".*/ns/ns/.*"}}}},
          {authenticated: {principalName: {safeRegex: {regex: ".*/ns/ns-prefix-.*/.*"}}}},
          {authenticated: {principalName: {safeRegex: {regex: ".*/ns/.*-ns-suffix/.*"}}}},
          {authenticated: {principalName: {safeRegex: {regex: ".*/ns/.*/.*"}}}}]}""",
    "ipBlocks": """
        orIds: {ids: [{directRemoteIp: {addressPrefix: 1.2.3.4, prefixLen: 32}},
                      {directRemoteIp: {addressPrefix: 5.6.0.0, prefixLen: 16}}]}""",
    "remoteIpBlocks": """
        orIds: {ids: [{remoteIp: {addressPrefix: 1.2.3.4, prefixLen: 32}},
                      {remoteIp: {addressPrefix: 5.6.0.0, prefixLen: 16}}]}""",
    "request.headers": """
        orIds: {ids: [{header: {name: X-header, stringMatch: {exact: header}}},
                      {header: {name: X-header, stringMatch: {prefix: header-prefix-}}},
                      {header: {name: X-header, stringMatch: {suffix: -suffix-header}}},
                      {header: {name: X-header, presentMatch: true}}]}""",
    "requestPrincipals": "orIds: {ids: ["
    + ", ".join(
        "{" + _request_principal(iss, sub) + "}"
        for iss, sub in (
            ("{exact: requestPrincipals}", '{exact: ""}'),
            ("{prefix: requestPrincipals-prefix-}", ANY),
            (ANY, "{suffix: -suffix-requestPrincipals}"),
            (ANY, ANY),
        )
    )
    + "]}",
    "request.auth.claims[nested1][nested2]": """
        metadata:
          filter: envoy.filters.http.jwt_authn
          path: [{key: payload}, {key: nested1}, {key: nested2}]
          value:
            orMatch:
              valueMatchers:
              - listMatch:
                  oneOf:
                    orMatch:
                      valueMatchers: [{stringMatch: {exact: nested}}, {stringMatch: {prefix: nested-prefix-}},
                                      {stringMatch: {suffix: -suffix-nested}}, {stringMatch: {safeRegex: {regex: .+}}}]
              - orMatch:
                  valueMatchers: [{stringMatch: {exact: nested}}, {stringMatch: {prefix: nested-prefix-}},
                                  {stringMatch: {suffix: -suffix-nested}}, {stringMatch: {safeRegex: {regex: .+}}}]""",
    "request.auth.audiences": """
        metadata:
          filter: envoy.filters.http.jwt_authn
          path: [{key: payload}, {key: aud}]
          value:
            orMatch:
              valueMatchers:
              - listMatch:
                  oneOf:
                    orMatch:
                      valueMatchers: [{stringMatch: {exact: audiences}}, {stringMatch: {prefix: audiences-prefix-}},
                                      {stringMatch: {suffix: -suffix-audiences}}, {stringMatch: {safeRegex: {regex: .+}}}]
              - orMatch:
                  valueMatchers: [{stringMatch: {exact: audiences}}, {stringMatch: {prefix: audiences-prefix-}},
                                  {stringMatch: {suffix: -suffix-audiences}}, {stringMatch: {safeRegex: {regex: .+}}}]""",
}

FULL_RULE_PERMISSIONS = {
    "hosts": """
        orRules: {rules: [
          {header: {name: ":authority", stringMatch: {exact: exact.com, ignoreCase: true}}},
          {header: {name: ":authority", stringMatch: {suffix: .suffix.com, ignoreCase: true}}},
          {header: {name: ":authority", stringMatch: {prefix: prefix., ignoreCase: true}}},
          {header: {name: ":authority", presentMatch: true}}]}""",
    "methods": """
        orRules: {rules: [
          {header: {name: ":method", stringMatch: {exact: method}}},
          {header: {name: ":method", stringMatch: {prefix: method-prefix-}}},
          {header: {name: ":method", stringMatch: {suffix: -suffix-method}}},
          {header: {name: ":method", presentMatch: true}}]}""",
    "paths": """
        orRules: {rules: [
          {urlPath: {path: {exact: /exact}}}, {urlPath: {path: {prefix: /prefix/}}},
          {urlPath: {path: {suffix: /suffix}}}, {urlPath: {path: {safeRegex: {regex: .+}}}},
          {uriTemplate: {name: uri-template, typedConfig: {
             "@type": type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig,
             pathTemplate: "/path/template/*"}}},
          {uriTemplate: {name: uri-template, typedConfig: {
             "@type": type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig,
             pathTemplate: "/**/path/template"}}}]}""",
    "ports": "orRules: {rules: [{destinationPort: 80}, {destinationPort: 90}]}",
    "notPorts": "notRule: {orRules: {rules: [{destinationPort: 8000}, {destinationPort: 9000}]}}",
    "destination.ip": """
        orRules: {rules: [{destinationIp: {addressPrefix: 10.10.10.10, prefixLen: 32}},
                          {destinationIp: {addressPrefix: 192.168.10.0, prefixLen: 24}}]}""",
    "connection.sni": """
        orRules: {rules: [{requestedServerName: {exact: exact.com}}, {requestedServerName: {suffix: .suffix.com}},
                          {requestedServerName: {prefix: prefix.}}, {requestedServerName: {safeRegex: {regex: .+}}}]}""",
    "experimental.envoy.filters.a.b[c]": """
        metadata:
          filter: envoy.filters.a.b
          path: [{key: c}]
          value:
            orMatch:
              valueMatchers: [{stringMatch: {exact: exact}}, {stringMatch: {prefix: prefix-}},
                              {stringMatch: {suffix: -suffix}}, {stringMatch: {safeRegex: {regex: .+}}}]""",
}


def test_allow_full_rule_rule1_principal_matchers() -> None:
    rule = policies(http_rbac_of("ALLOW", FULL_RULE))["ns[foo]-policy[httpbin-1]-rule[1]"]
    (principal,) = rule["principals"]
    members = and_members(principal, "and_ids")
    # 15 fields/keys, each with values and notValues: as many AND members as the golden.
    assert len(members) == 30
    for field, text in FULL_RULE_PRINCIPALS.items():
        assert istio_principal(text) in members, field
    # `when: request.auth.principal` also takes "https://example.com/*": issuer exact, any subject.
    assert (
        istio_principal(
            "orIds: {ids: ["
            + ", ".join(
                "{" + _request_principal(iss, sub) + "}"
                for iss, sub in (
                    ("{exact: requestPrincipals}", '{exact: ""}'),
                    ("{prefix: requestPrincipals-prefix-}", ANY),
                    (ANY, "{suffix: -suffix-requestPrincipals}"),
                    (ANY, ANY),
                    ("{exact: https://example.com}", ANY),
                )
            )
            + "]}"
        )
        in members
    )
    not_principals = (
        FULL_RULE_PRINCIPALS["principals"]
        .replace("spiffe://principal", "spiffe://not-principal")
        .replace(".*-suffix-principal", ".*-not-suffix-principal")
    )
    assert {"not_id": istio_principal(not_principals)} in members


def test_allow_full_rule_rule1_permission_matchers() -> None:
    rule = policies(http_rbac_of("ALLOW", FULL_RULE))["ns[foo]-policy[httpbin-1]-rule[1]"]
    (permission,) = rule["permissions"]
    members = and_members(permission, "and_rules")
    assert len(members) == 16
    for field, text in FULL_RULE_PERMISSIONS.items():
        assert istio_permission(text) in members, field
    assert {"not_rule": istio_permission(
        FULL_RULE_PERMISSIONS["experimental.envoy.filters.a.b[c]"].replace("exact}", "not-exact}")
        .replace("prefix-}", "not-prefix-}").replace("-suffix}", "-not-suffix}")
    )} in members  # fmt: skip


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        # generator.go requestPrincipalGenerator: split at the last `/`, wildcards on one side.
        ("iss/sub", "{exact: iss}", "{exact: sub}"),
        ("https://example.com/sub", "{exact: https://example.com}", "{exact: sub}"),
        ("*/sub", ANY, "{exact: sub}"),
        ("*.example.com/sub", "{suffix: .example.com}", "{exact: sub}"),
        ("https://example.com/pre*", "{exact: https://example.com}", "{prefix: pre}"),
        ("*-sub", ANY, "{suffix: -sub}"),
        ("iss-prefix-*", "{prefix: iss-prefix-}", ANY),
        ("https://example.*", "{exact: https:/}", "{prefix: example.}"),
    ],
)
def test_request_principal_wildcards(value: str, iss: str, sub: str) -> None:
    doc = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: jwt, namespace: foo}}
spec:
  rules: [{{from: [{{source: {{requestPrincipals: ["{value}"]}}}}]}}]
"""
    rule = policies(http_rbac_of("ALLOW", doc))["ns[foo]-policy[jwt]-rule[0]"]
    assert rule["principals"] == [istio_principal(_request_principal(iss, sub))]


def test_string_claim_matches_as_a_string_or_as_a_list_member() -> None:
    doc = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: claim, namespace: foo}
spec:
  rules: [{when: [{key: "request.auth.claims[group]", values: ["admin"]}]}]
"""
    rule = policies(http_rbac_of("ALLOW", doc))["ns[foo]-policy[claim]-rule[0]"]
    assert rule["principals"] == [
        istio_principal("""
        metadata:
          filter: envoy.filters.http.jwt_authn
          path: [{key: payload}, {key: group}]
          value:
            orMatch:
              valueMatchers: [{listMatch: {oneOf: {stringMatch: {exact: admin}}}}, {stringMatch: {exact: admin}}]
    """)
    ]


def test_experimental_filter_list_value() -> None:
    doc = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: md, namespace: foo}
spec:
  rules: [{when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]}]
"""
    rule = policies(http_rbac_of("ALLOW", doc))["ns[foo]-policy[md]-rule[0]"]
    assert rule["permissions"] == [
        istio_permission("""
        metadata:
          filter: envoy.filters.network.mysql_proxy
          path: [{key: db.table}]
          value: {listMatch: {oneOf: {stringMatch: {exact: update}}}}
    """)
    ]


# --- http: empty / nil rules, paths, multiple policies, dry run --------------------------------


def _policy(name: str, spec: str, annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: foo{', annotations: ' + annotations if annotations else ''}}}"
    return f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {meta}\nspec: {spec}\n"


def test_allow_empty_rule_matches_everything_and_nil_rules_nothing() -> None:
    allow_all = http_rbac_of("ALLOW", _policy("allow-all", "{rules: [{}]}"))
    assert allow_all["rules"].get("action", "ALLOW") == "ALLOW"
    assert policies(allow_all) == {
        "ns[foo]-policy[allow-all]-rule[0]": istio_policy(
            "{permissions: [{andRules: {rules: [{any: true}]}}], principals: [{andIds: {ids: [{any: true}]}}]}"
        )
    }
    allow_none = http_rbac_of("ALLOW", _policy("allow-none", "{selector: {matchLabels: {app: httpbin}}}"))
    assert policies(allow_none) == {
        "ns[foo]-policy[allow-none]-rule[0]": istio_policy(
            "{permissions: [{notRule: {any: true}}], principals: [{notId: {any: true}}]}"
        )
    }


def test_deny_empty_rule_denies_everything() -> None:
    deny = http_rbac_of("DENY", _policy("deny-all", "{action: DENY, rules: [{}]}"))
    assert deny["rules"]["action"] == "DENY"
    assert policies(deny)["ns[foo]-policy[deny-all]-rule[0]"] == istio_policy(
        "{permissions: [{any: true}], principals: [{any: true}]}"
    )
    assert http_rbac_of("ALLOW", _policy("deny-all", "{action: DENY, rules: [{}]}")) is None


def test_allow_path_templates() -> None:
    doc = _policy(
        "httpbin-1",
        """{rules: [{to: [{operation: {paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}",
            "{**}/path/template"]}}]}]}""",
    )
    rule = policies(http_rbac_of("ALLOW", doc))["ns[foo]-policy[httpbin-1]-rule[0]"]
    assert rule["permissions"] == [
        istio_permission(FULL_RULE_PERMISSIONS["paths"].replace('"/**/path', '"**/path'))
    ]


def test_multiple_policies_merge_into_one_filter_by_workload_selector() -> None:
    docs = [
        _policy("httpbin-1", "{selector: {matchLabels: {app: httpbin, version: v1}}, rules: [{to: [{operation: {methods: [GET]}}]}]}"),
        _policy("httpbin-3", "{selector: {matchLabels: {version: v1}}, rules: [{to: [{operation: {hosts: [google.com]}}]}]}"),
        _policy("httpbin-5", "{rules: [{from: [{source: {principals: [principals1, principals2]}}]}]}"),
        _policy("other", "{selector: {matchLabels: {app: other}}, rules: [{}]}"),
    ]  # fmt: skip
    rules = policies(http_rbac_of("ALLOW", *docs))
    assert sorted(rules) == [
        "ns[foo]-policy[httpbin-1]-rule[0]",
        "ns[foo]-policy[httpbin-3]-rule[0]",
        "ns[foo]-policy[httpbin-5]-rule[0]",
    ]
    assert rules["ns[foo]-policy[httpbin-5]-rule[0]"]["principals"] == [
        istio_principal("""orIds: {ids: [{authenticated: {principalName: {exact: "spiffe://principals1"}}},
                                        {authenticated: {principalName: {exact: "spiffe://principals2"}}}]}""")
    ]


def test_dry_run_mix_enforces_only_the_live_policy() -> None:
    docs = (
        _policy("httpbin-1", '{rules: [{to: [{operation: {paths: ["/allow"]}}]}]}', '{"istio.io/dry-run": "true"}'),
        _policy("httpbin-2", '{rules: [{to: [{operation: {paths: ["/another"]}}]}]}', '{"istio.io/dry-run": "false"}'),
    )  # fmt: skip
    rbac = http_rbac_of("ALLOW", *docs)
    assert list(policies(rbac)) == ["ns[foo]-policy[httpbin-2]-rule[0]"]
    assert list(policies(rbac, "shadow_rules")) == ["ns[foo]-policy[httpbin-1]-rule[0]"]
    assert rbac["shadow_rules_stat_prefix"] == "istio_dry_run_allow_"


def test_dry_run_allow_and_deny_enforce_nothing() -> None:
    docs = (
        _policy("httpbin-1", '{rules: [{to: [{operation: {paths: ["/allow"]}}]}]}', '{"istio.io/dry-run": "1"}'),
        _policy("httpbin-2", '{action: DENY, rules: [{to: [{operation: {paths: ["/deny"]}}]}]}',
                '{"istio.io/dry-run": "True"}'),
    )  # fmt: skip
    allow, deny = http_rbac_of("ALLOW", *docs), http_rbac_of("DENY", *docs)
    # No `rules` at all: the filters only record what they would have done.
    assert "rules" not in allow and "rules" not in deny
    assert list(policies(allow, "shadow_rules")) == ["ns[foo]-policy[httpbin-1]-rule[0]"]
    assert deny["shadow_rules"]["action"] == "DENY"
    assert (allow["shadow_rules_stat_prefix"], deny["shadow_rules_stat_prefix"]) == (
        "istio_dry_run_allow_",
        "istio_dry_run_deny_",
    )


def test_audit_is_rbac_log() -> None:
    audit = http_rbac_of(
        "AUDIT", _policy("audit", "{action: AUDIT, rules: [{to: [{operation: {paths: [/a]}}]}]}")
    )
    assert audit["rules"]["action"] == "LOG"


# --- trust domain aliases (simple-policy-td-aliases, td-aliases-source-principal, bundle_test.go) --


def _mesh(trust_domain: str, aliases: list[str]) -> str:
    return f"""
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec: {{trustDomain: {trust_domain}, trustDomainAliases: {json.dumps(aliases)}}}
"""


def test_td_aliases_in_source_principal() -> None:
    doc = _policy(
        "httpbin",
        """{rules: [{from: [{source: {namespaces: [istio-system]}}],
                     when: [{key: source.principal, values: ["*", "*/ns/foo/sa/all-td", "*-td/ns/foo/sa/prefix-td"]}]}]}""",
    )
    rule = policies(http_rbac_of("ALLOW", _mesh("new-td", ["old-td", "some-trustdomain"]), doc))
    assert rule["ns[foo]-policy[httpbin]-rule[0]"]["principals"] == [
        istio_principal("""
        andIds:
          ids:
          - orIds: {ids: [{authenticated: {principalName: {safeRegex: {regex: ".*/ns/istio-system/.*"}}}}]}
          - orIds:
              ids:
              - authenticated: {principalName: {safeRegex: {regex: .+}}}
              - authenticated: {principalName: {safeRegex: {regex: "spiffe://.*/ns/foo/sa/all-td"}}}
              - authenticated: {principalName: {safeRegex: {regex: "spiffe://.*-td/ns/foo/sa/prefix-td"}}}
              - authenticated: {principalName: {exact: "spiffe://some-trustdomain/ns/foo/sa/prefix-td"}}
    """)
    ]


@pytest.mark.parametrize(
    ("trust_domain", "aliases", "principals", "expect"),
    [
        ("cluster.local", [], ["cluster.local/ns/foo/sa/bar"], ["cluster.local/ns/foo/sa/bar"]),
        ("td2", ["td1"], ["td1/ns/foo/sa/bar"], ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]),
        ("td1", ["cluster.local"], ["*/ns/foo/sa/bar", "*sa/zzz", "*"], ["*/ns/foo/sa/bar", "*sa/zzz", "*"]),
        ("td2", ["td1", "cluster.local"], ["cluster.local/ns/foo/sa/bar"],
         ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar", "cluster.local/ns/foo/sa/bar"]),
        ("td2", ["foo-td1", "cluster.local"], ["*-td1/ns/foo/sa/bar"],
         ["td2/ns/foo/sa/bar", "*-td1/ns/foo/sa/bar", "cluster.local/ns/foo/sa/bar"]),
        ("td1", ["td2"], ["some-td/ns/foo/sa/bar"], ["some-td/ns/foo/sa/bar"]),
        ("new-td", ["td2", "td3"], ["td1/ns/some-ns/sa/some-sa", "td2/ns/foo/sa/bar"],
         ["td1/ns/some-ns/sa/some-sa", "new-td/ns/foo/sa/bar", "td2/ns/foo/sa/bar", "td3/ns/foo/sa/bar"]),
        # `cluster.local` always names the local trust domain, even with no aliases.
        ("td1", [], ["cluster.local/ns/foo/sa/bar"], ["td1/ns/foo/sa/bar"]),
    ],
)  # fmt: skip
def test_trust_domain_bundle(
    trust_domain: str, aliases: list[str], principals: list[str], expect: list[str]
) -> None:
    assert authz.TrustDomains((trust_domain, *aliases)).principals(principals) == expect
    doc = _policy("p", f"{{rules: [{{from: [{{source: {{principals: {json.dumps(principals)}}}}}]}}]}}")
    rule = policies(http_rbac_of("ALLOW", _mesh(trust_domain, aliases), doc))["ns[foo]-policy[p]-rule[0]"]
    want = [
        canon(
            MessageToDict(
                authz._principal_values("principals", expect, False), preserving_proto_field_name=True
            )
        )
    ]
    assert rule["principals"] == want


# --- tcp (testdata/tcp) -------------------------------------------------------------------------

DENY_BOTH = _policy(
    "httpbin-deny",
    """{action: DENY, rules: [
  {from: [{source: {requestPrincipals: [id-1]}}], to: [{operation: {methods: [GET]}}]},
  {to: [{operation: {methods: [GET]}}]},
  {from: [{source: {requestPrincipals: [id-1]}}]},
  {from: [{source: {namespaces: [ns-1]}}], to: [{operation: {methods: [GET]}}]},
  {from: [{source: {requestPrincipals: [id-1]}}], to: [{operation: {ports: ["80"]}}]},
  {from: [{source: {namespaces: [ns-1]}}], to: [{operation: {ports: ["80"]}}]},
  {when: [{key: "request.headers[:method]", values: [GET]}]},
  {when: [{key: destination.port, values: ["80"]}]}]}""",
)

ANY_POLICY = "{permissions: [{any: true}], principals: [{any: true}]}"
NS1 = '{orIds: {ids: [{authenticated: {principalName: {safeRegex: {regex: ".*/ns/ns-1/.*"}}}}]}}'
PORT80 = "{orRules: {rules: [{destinationPort: 80}]}}"


def test_tcp_deny_drops_http_fields_and_widens_the_rule() -> None:
    (rbac,) = tcp_rbacs(DENY_BOTH)
    assert rbac["stat_prefix"] == "tcp." and rbac["rules"]["action"] == "DENY"
    name = "ns[foo]-policy[httpbin-deny]-rule[{}]".format
    assert policies(rbac) == {
        name(0): istio_policy(ANY_POLICY),
        name(1): istio_policy(ANY_POLICY),
        name(2): istio_policy(ANY_POLICY),
        name(3): istio_policy(f"{{permissions: [{{any: true}}], principals: [{NS1}]}}"),
        name(4): istio_policy(f"{{permissions: [{PORT80}], principals: [{{any: true}}]}}"),
        name(5): istio_policy(f"{{permissions: [{PORT80}], principals: [{NS1}]}}"),
        name(6): istio_policy(ANY_POLICY),
        name(7): istio_policy(f"{{permissions: [{PORT80}], principals: [{{any: true}}]}}"),
    }


def test_tcp_audit_drops_http_fields_too() -> None:
    (rbac,) = tcp_rbacs(DENY_BOTH.replace("action: DENY", "action: AUDIT").replace("httpbin-deny", "audit"))
    assert rbac["rules"]["action"] == "LOG"
    assert policies(rbac)["ns[foo]-policy[audit]-rule[0]"] == istio_policy(ANY_POLICY)


def test_tcp_allow_skips_rules_with_http_fields() -> None:
    doc = _policy(
        "httpbin-deny",
        """{action: ALLOW, rules: [
      {from: [{source: {requestPrincipals: [id-1]}}], to: [{operation: {methods: [GET]}}]},
      {from: [{source: {namespaces: [ns-1]}}], to: [{operation: {ports: ["8080"], methods: [GET]}}]},
      {from: [{source: {namespaces: [ns-2], requestPrincipals: [id-2]}}], to: [{operation: {ports: ["9090"]}}]},
      {from: [{source: {namespaces: [ns-1]}}], to: [{operation: {ports: ["80"]}}]}]}""",
    )
    (rbac,) = tcp_rbacs(doc)
    assert rbac["rules"].get("action", "ALLOW") == "ALLOW"
    assert policies(rbac) == {
        "ns[foo]-policy[httpbin-deny]-rule[3]": istio_policy(
            f"{{permissions: [{PORT80}], principals: [{NS1}]}}"
        )
    }


def test_tcp_allow_only_http_denies_every_connection() -> None:
    doc = _policy(
        "httpbin-deny",
        """{action: ALLOW, rules: [
      {from: [{source: {requestPrincipals: [id-1]}}], to: [{operation: {methods: [GET]}}]},
      {from: [{source: {namespaces: [ns-1]}}], to: [{operation: {hosts: [example.com]}}]}]}""",
    )
    (rbac,) = tcp_rbacs(doc)
    # allow-only-http-out.yaml: `rules: {}`, an ALLOW engine with no policy, which matches nothing.
    assert "rules" in rbac and not rbac["rules"].get("policies")
    assert rbac["rules"].get("action", "ALLOW") == "ALLOW"


def test_tcp_dry_run_mix() -> None:
    docs = (
        _policy("httpbin-1", '{rules: [{to: [{operation: {ports: ["80"]}}]}]}', '{"istio.io/dry-run": "true"}'),
        _policy("httpbin-2", '{rules: [{to: [{operation: {ports: ["90"]}}]}]}'),
    )  # fmt: skip
    (rbac,) = tcp_rbacs(*docs)
    assert list(policies(rbac)) == ["ns[foo]-policy[httpbin-2]-rule[0]"]
    assert list(policies(rbac, "shadow_rules")) == ["ns[foo]-policy[httpbin-1]-rule[0]"]


# --- PeerAuthentication (authn/policy_applier_test.go TestComposePeerAuthentication) --------------


def _pa(name: str, ns: str, spec: str, ts: str = "") -> str:
    meta = f"{{name: {name}, namespace: {ns}{', creationTimestamp: ' + repr(ts) if ts else ''}}}"
    return f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {meta}\nspec: {spec}\n"


def _compose(*docs: str) -> authn.MtlsPolicy:
    pas = [c for c in configs(*docs, services=False) if c.kind == "PeerAuthentication"]
    return authn.workload_mtls(pas, "my-ns", {"app": "foo"}, "root-namespace")


T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"


@pytest.mark.parametrize(
    ("docs", "mode"),
    [
        ((), "PERMISSIVE"),
        ((_pa("default", "root-namespace", "{mtls: {mode: STRICT}}"),), "STRICT"),
        ((_pa("default", "root-namespace", "{selector: {matchLabels: {app: foo}}, mtls: {mode: STRICT}}"),),
         "PERMISSIVE"),
        ((_pa("default", "my-ns", "{}"), _pa("foo", "my-ns", "{selector: {matchLabels: {app: foo}}}")),
         "PERMISSIVE"),
        ((_pa("default", "my-ns", "{mtls: {mode: PERMISSIVE}}"),
          _pa("default", "root-namespace", "{mtls: {mode: DISABLE}}")), "PERMISSIVE"),
        ((_pa("now", "root-namespace", "{mtls: {mode: DISABLE}}", T1),
          _pa("second-ago", "root-namespace", "{mtls: {mode: PERMISSIVE}}", T0)), "PERMISSIVE"),
        ((_pa("now", "my-ns", "{mtls: {mode: DISABLE}}", T1),
          _pa("second-ago", "my-ns", "{mtls: {mode: PERMISSIVE}}", T0)), "PERMISSIVE"),
        ((_pa("now", "my-ns", "{selector: {matchLabels: {app: foo}}, mtls: {mode: DISABLE}}", T1),
          _pa("second-ago", "my-ns", "{selector: {matchLabels: {app: foo}}, mtls: {mode: PERMISSIVE}}", T0),
          _pa("other", "my-ns", "{selector: {matchLabels: {stage: prod}}, mtls: {mode: STRICT}}", T0)),
         "PERMISSIVE"),
        ((_pa("default", "root-namespace", "{mtls: {mode: UNSET}}"),), "PERMISSIVE"),
        ((_pa("default", "root-namespace", "{mtls: {mode: STRICT}}"),
          _pa("foo", "my-ns", "{selector: {matchLabels: {app: foo}}}")), "STRICT"),
        ((_pa("default", "my-ns", "{mtls: {mode: STRICT}}"),
          _pa("foo", "my-ns", "{selector: {matchLabels: {app: foo}}}")), "STRICT"),
        ((_pa("default", "root-namespace", "{mtls: {mode: STRICT}}"),
          _pa("default", "my-ns", "{mtls: {mode: UNSET}}"),
          _pa("foo", "my-ns", "{selector: {matchLabels: {app: foo}}}")), "STRICT"),
    ],
)  # fmt: skip
def test_compose_peer_authentication(docs: tuple[str, ...], mode: str) -> None:
    assert _compose(*docs).mode == mode


def test_compose_peer_authentication_port_level() -> None:
    got = _compose(
        _pa("default", "root-namespace", "{mtls: {mode: STRICT}}"),
        _pa("foo", "my-ns", '{selector: {matchLabels: {app: foo}}, portLevelMtls: {"80": {mode: DISABLE}, '
            '"90": {mode: UNSET}, "100": {}}}'),
    )  # fmt: skip
    assert got.mode == "STRICT"
    assert {port: got.for_port(port) for port in (80, 90, 100, 8080)} == {
        80: "DISABLE",
        90: "STRICT",
        100: "STRICT",
        8080: "STRICT",
    }
