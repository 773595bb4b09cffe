# ruff: noqa: UP031
"""Istio's validation rules: each case is a resource and the (level, field, message) it must produce."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from isthmus.api.errors import ConfigErrors
from isthmus.api.loader import load_text, load_text_report
from isthmus.api.validation import validate
from isthmus.api.validation.common import regex_error
from isthmus.model.mesh import MeshSettings

DATA = Path(__file__).parent / "data"


def messages(text: str):
    return load_text_report(textwrap.dedent(text), "t.yaml").messages


def vs(spec: str, name: str = "v", extra_meta: str = "") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}{extra_meta}}}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def kind(kind_: str, spec: str, api: str = "networking.istio.io/v1", name: str = "x", meta: str = "") -> str:
    return f"apiVersion: {api}\nkind: {kind_}\nmetadata: {{name: {name}{meta}}}\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )


def assert_issue(text: str, field: str, fragment: str, level: str = "Error") -> None:
    ms = messages(text)
    for m in ms:
        if m.field == field and fragment in m.message and m.level == level:
            return
    pytest.fail(
        f"no {level} at {field} containing {fragment!r}; got:\n" + "\n".join(f"{m.level} {m}" for m in ms)
    )


def test_istio_doc_examples_are_valid():
    rep = load_text_report((DATA / "istio-docs-valid.yaml").read_text(), "docs.yaml")
    assert rep.messages == []
    assert len(rep.resources) == 34


ROUTE = "route: [{destination: {host: r}}]"

VS_CASES = [
    # hosts
    ("hosts: ['*']\nhttp: [{%s}]" % ROUTE, "spec.hosts[0]", "wildcard host * is not allowed"),
    ("hosts: ['a..b']\nhttp: [{%s}]" % ROUTE, "spec.hosts[0]", 'invalid (label "" invalid)'),
    ("hosts: ['foo.*.com']\nhttp: [{%s}]" % ROUTE, "spec.hosts[0]", "invalid"),
    (
        "hosts: ['*.foo.com', 'a.foo.com']\nhttp: [{%s}]" % ROUTE,
        "spec.hosts[1]",
        "duplicate hosts in virtual service",
    ),
    ("hosts: [r]", "spec", "http, tcp or tls must be provided"),
    # gateways
    (
        "hosts: [r]\ngateways: ['a/b/c']\nhttp: [{%s}]" % ROUTE,
        "spec.gateways[0]",
        "invalid value for gateway name",
    ),
    ("hosts: [r]\ngateways: ['/gw']\nhttp: [{%s}]" % ROUTE, "spec.gateways[0]", "cannot be empty"),
    # delegate
    (
        "gateways: [g]\nhttp: [{%s}]" % ROUTE,
        "spec.gateways",
        "delegate virtual service must have no gateways",
    ),
    (
        "hosts: [r]\nhttp:\n- delegate: {name: d}\n  route: [{destination: {host: r}}]",
        "spec.http[0].route",
        "must not specify route",
    ),
    # route / redirect / directResponse exclusivity
    (
        "hosts: [r]\nhttp: [{match: [{uri: {prefix: /}}]}]",
        "spec.http[0]",
        "HTTP route, redirect or direct_response is required",
    ),
    (
        "hosts: [r]\nhttp: [{redirect: {uri: /x}, %s}]" % ROUTE,
        "spec.http[0]",
        "cannot contain both route and redirect",
    ),
    (
        "hosts: [r]\nhttp: [{directResponse: {status: 200}, %s}]" % ROUTE,
        "spec.http[0]",
        "both route and direct_response",
    ),
    (
        "hosts: [r]\nhttp: [{redirect: {}}]",
        "spec.http[0].redirect",
        "redirect must specify URI, authority, scheme, or port",
    ),
    (
        "hosts: [r]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]",
        "spec.http[0].redirect.redirectCode",
        "must be 3xx",
    ),
    (
        "hosts: [r]\nhttp: [{redirect: {scheme: ftp}}]",
        "spec.http[0].redirect.scheme",
        'must be "http" or "https"',
    ),
    (
        "hosts: [r]\nhttp: [{directResponse: {status: 1000}}]",
        "spec.http[0].directResponse.status",
        "not in range 200-599",
    ),
    (
        "hosts: [r]\nhttp: [{mirror: {host: m}, mirrors: [{destination: {host: m}}], %s}]" % ROUTE,
        "spec.http[0]",
        "both mirror and mirrors",
    ),
    # weights
    (
        "hosts: [r]\nhttp:\n- route:\n  - {destination: {host: a}, weight: 0}\n  - {destination: {host: b}}",
        "spec.http[0].route",
        "total destination weight = 0",
    ),
    (
        "hosts: [r]\nhttp:\n- route:\n  - {destination: {host: a}, weight: -1}",
        "spec.http[0].route[0].weight",
        "weight -1 < 0",
    ),
    # destinations
    (
        "hosts: [r]\nhttp: [{route: [{destination: {host: '*'}}]}]",
        "spec.http[0].route[0].destination.host",
        "invalid destination host",
    ),
    (
        "hosts: [r]\nhttp: [{route: [{destination: {host: r, subset: 'v.1'}}]}]",
        "spec.http[0].route[0].destination.subset",
        "subset name is invalid",
    ),
    (
        "hosts: [r]\nhttp: [{route: [{destination: {host: r, port: {number: 0}}}]}]",
        "spec.http[0].route[0].destination.port.number",
        "must be in the range 1..65535",
    ),
    # matches
    (
        "hosts: [r]\nhttp: [{match: [{uri: {regex: 'a(?=b)'}}], %s}]" % ROUTE,
        "spec.http[0].match[0].uri.regex",
        "RE2",
    ),
    (
        "hosts: [r]\nhttp: [{match: [{uri: {regex: '(a'}}], %s}]" % ROUTE,
        "spec.http[0].match[0].uri.regex",
        "missing )",
    ),
    (
        "hosts: [r]\nhttp: [{match: [{headers: {'x y': {exact: a}}}], %s}]" % ROUTE,
        'spec.http[0].match[0].headers["x y"]',
        "not a valid header name",
    ),
    (
        "hosts: [r]\nhttp: [{match: [{method: {prefix: ''}}], %s}]" % ROUTE,
        "spec.http[0].match[0].method.prefix",
        "prefix string match should not be empty",
    ),
    ("hosts: [r]\nhttp: [{match: [{port: 70000}], %s}]" % ROUTE, "spec.http[0].match[0].port", "1..65535"),
    (
        "hosts: [r]\nhttp: [{match: [{sourceNamespace: 'Not_Valid'}], %s}]" % ROUTE,
        "spec.http[0].match[0].sourceNamespace",
        "is invalid",
    ),
    (
        "hosts: [r]\nhttp: [{match: [{sourceLabels: {'a b': c}}], %s}]" % ROUTE,
        "spec.http[0].match[0].sourceLabels",
        "invalid tag key",
    ),
    (
        "hosts: [r]\nhttp: [{match: [{headers: {'@request.auth.claims.group': {exact: a}}}], %s}]" % ROUTE,
        'spec.http[0].match[0].headers["@request.auth.claims.group"]',
        "JWT claim based routing",
    ),
    # headers
    (
        "hosts: [r]\nhttp: [{headers: {request: {set: {':path': x}}}, %s}]" % ROUTE,
        'spec.http[0].headers.request.set[":path"]',
        'cannot have ":" prefix',
    ),
    (
        "hosts: [r]\nhttp: [{headers: {response: {set: {host: x}}}, %s}]" % ROUTE,
        "spec.http[0].headers.response.set.host",
        "cannot set Host header",
    ),
    (
        "hosts: [r]\nhttp: [{headers: {request: {add: {x-a: '%%BAD'}}}, %s}]" % ROUTE,
        "spec.http[0].headers.request.add.x-a",
        "Un-terminated variable",
    ),
    (
        "hosts: [r]\nhttp: [{rewrite: {authority: a}, headers: {request: {set: {host: b}}}, %s}]" % ROUTE,
        "spec.http[0].headers.request.set.host",
        "authority header cannot be set multiple times",
    ),
    # retries / timeout
    (
        "hosts: [r]\nhttp: [{retries: {attempts: 2, retryOn: 'gateway-error,bogus'}, %s}]" % ROUTE,
        "spec.http[0].retries.retryOn",
        '"bogus" is not a valid retryOn policy',
    ),
    (
        "hosts: [r]\nhttp: [{retries: {attempts: -1}, %s}]" % ROUTE,
        "spec.http[0].retries.attempts",
        "cannot be negative",
    ),
    (
        "hosts: [r]\nhttp: [{retries: {retryOn: 5xx}, %s}]" % ROUTE,
        "spec.http[0].retries",
        "attempts are set to 0",
    ),
    (
        "hosts: [r]\nhttp: [{retries: {attempts: 1, perTryTimeout: 100us}, %s}]" % ROUTE,
        "spec.http[0].retries.perTryTimeout",
        "greater than 1ms",
    ),
    ("hosts: [r]\nhttp: [{timeout: 1.0005s, %s}]" % ROUTE, "spec.http[0].timeout", "ms precision"),
    # fault / mirror
    (
        "hosts: [r]\nhttp: [{fault: {}, %s}]" % ROUTE,
        "spec.http[0].fault",
        "must have an abort and/or a delay",
    ),
    (
        "hosts: [r]\nhttp: [{fault: {abort: {httpStatus: 100}}, %s}]" % ROUTE,
        "spec.http[0].fault.abort.httpStatus",
        "not in range 200-599",
    ),
    (
        "hosts: [r]\nhttp: [{fault: {abort: {grpcStatus: NOPE}}, %s}]" % ROUTE,
        "spec.http[0].fault.abort.grpcStatus",
        "is not supported",
    ),
    (
        "hosts: [r]\nhttp: [{fault: {delay: {fixedDelay: 1s, percentage: {value: 101}}}, %s}]" % ROUTE,
        "spec.http[0].fault.delay.percentage",
        "neither 0.0, nor in range",
    ),
    (
        "hosts: [r]\nhttp: [{fault: {delay: {exponentialDelay: 1s}}, %s}]" % ROUTE,
        "spec.http[0].fault.delay.exponentialDelay",
        "not supported yet",
    ),
    (
        "hosts: [r]\nhttp: [{mirror: {host: m}, mirrorPercentage: {value: 120}, %s}]" % ROUTE,
        "spec.http[0].mirrorPercentage",
        "max value of 100",
    ),
    (
        "hosts: [r]\nhttp: [{mirror: {host: m}, mirrorPercent: 150, %s}]" % ROUTE,
        "spec.http[0].mirrorPercent",
        "max value of 100",
    ),
    # rewrite / cors
    (
        "hosts: [r]\nhttp: [{rewrite: {}, %s}]" % ROUTE,
        "spec.http[0].rewrite",
        "rewrite must specify at least one of",
    ),
    (
        "hosts: [r]\nhttp: [{rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}, %s}]" % ROUTE,
        "spec.http[0].rewrite",
        "only contain one of URI or UriRegexRewrite",
    ),
    (
        "hosts: [r]\nhttp: [{rewrite: {uriRegexRewrite: {match: a}}, %s}]" % ROUTE,
        "spec.http[0].rewrite.uriRegexRewrite",
        "requires both Rewrite and Match",
    ),
    (
        "hosts: [r]\nhttp: [{corsPolicy: {allowMethods: [FETCH]}, %s}]" % ROUTE,
        "spec.http[0].corsPolicy.allowMethods[0]",
        "not a supported HTTP method",
    ),
    (
        "hosts: [r]\nhttp: [{corsPolicy: {maxAge: 1500ms}, %s}]" % ROUTE,
        "spec.http[0].corsPolicy.maxAge",
        "seconds precision",
    ),
    (
        "hosts: [r]\nhttp: [{corsPolicy: {allowOrigins: [{exact: ''}]}, %s}]" % ROUTE,
        "spec.http[0].corsPolicy.allowOrigins[0]",
        "not a valid match type",
    ),
    # tls / tcp
    (
        "hosts: [a.com]\ngateways: [g]\ntls: [{match: [{sniHosts: [b.com]}], route: [{destination: {host: a}}]}]",
        "spec.tls[0].match[0].sniHosts[0]",
        "not a compatible subset",
    ),
    (
        "hosts: [a.com]\ngateways: [g]\ntls: [{match: [{sniHosts: [a.com]}]}]",
        "spec.tls[0].route",
        "TLS route is required",
    ),
    (
        "hosts: [a.com]\ntcp: [{match: [{destinationSubnets: [1.2.3.4/99]}], %s}]" % ROUTE,
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "not a valid CIDR block",
    ),
    ("hosts: [a.com]\ntcp: [{match: [{port: 80}]}]", "spec.tcp[0].route", "TCP route is required"),
    # exportTo
    (
        "hosts: [r]\nexportTo: ['*', 'ns1']\nhttp: [{%s}]" % ROUTE,
        "spec.exportTo",
        "cannot have both public (*)",
    ),
    (
        "hosts: [r]\nexportTo: ['~']\nhttp: [{%s}]" % ROUTE,
        "spec.exportTo[0]",
        "not allowed for Istio configuration objects",
    ),
    (
        "hosts: [r]\nexportTo: ['default', '.']\nhttp: [{%s}]" % ROUTE,
        "spec.exportTo[1]",
        "duplicate entries in exportTo: . and current namespace default",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), VS_CASES)
def test_virtual_service_errors(spec, field, fragment):
    assert_issue(vs(spec), field, fragment)


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        (
            "hosts: [r]\nhttp: [{mirror: {host: m}, mirror_percent: 50, %s}]" % ROUTE,
            "spec.http[0].mirrorPercent",
            'deprecated setting "mirrorPercent"',
        ),
        (
            "hosts: [r]\nhttp: [{corsPolicy: {allowOrigin: [a.com]}, %s}]" % ROUTE,
            "spec.http[0].corsPolicy.allowOrigin",
            "deprecated",
        ),
        (
            "hosts: [r]\nhttp: [{fault: {delay: {fixedDelay: 1s, percent: 5}}, %s}]" % ROUTE,
            "spec.http[0].fault.delay.percent",
            "deprecated",
        ),
        (
            "hosts: [r]\nhttp: [{fault: {abort: {percentage: {value: 5}}}, %s}]" % ROUTE,
            "spec.http[0].fault.abort",
            "error type not set",
        ),
        (
            "hosts: [r]\ngateways: [gw.ns]\nhttp: [{%s}]" % ROUTE,
            "spec.gateways[0]",
            "legacy gatewayName format",
        ),
        (
            "hosts: [r]\nhttp: [{%s}, {%s}]" % (ROUTE, ROUTE),
            "spec.http[1]",
            "only the last rule can have no matches",
        ),
        (
            "hosts: [r]\nhttp:\n- {match: [{uri: {prefix: /a}}], %s}\n- {match: [{uri: {prefix: /a}}], %s}"
            % (ROUTE, ROUTE),
            "spec.http[1].match[0]",
            "duplicate/overlapping match in rule #0",
        ),
        (
            "hosts: [r]\nhttp:\n- {match: [{uri: {prefix: /a}}], %s}\n- {match: [{uri: {prefix: /ab}}], %s}"
            % (ROUTE, ROUTE),
            "spec.http[1]",
            "of prefix /ab is not used",
        ),
        (
            "hosts: [a.com]\ngateways: [g]\ntls: [{match: [{sniHosts: [1.2.3.4]}], %s}]" % ROUTE,
            "spec.tls[0].match[0].sniHosts[0]",
            "goes against SNI spec",
        ),
    ],
)
def test_virtual_service_warnings(spec, field, fragment):
    assert_issue(vs(spec), field, fragment, "Warning")


def test_warnings_do_not_raise_but_errors_do():
    load_text(vs("hosts: [r]\nhttp: [{mirror: {host: m}, mirrorPercent: 5, %s}]" % ROUTE))
    with pytest.raises(ConfigErrors) as ei:
        load_text(vs("hosts: ['*']\nhttp: [{%s}]" % ROUTE), "x.yaml")
    (e,) = ei.value.errors
    assert str(e) == (
        "x.yaml:5: VirtualService default/v: spec.hosts[0]: wildcard host * is not allowed for virtual services "
        "bound to the mesh gateway"
    )


def test_gateway_vs_allows_star_and_auto_passthrough_sni():
    assert messages(vs("hosts: ['*']\ngateways: [g]\nhttp: [{%s}]" % ROUTE)) == []
    text = vs(
        "hosts: ['*.mesh']\ngateways: [g]\n"
        "tls: [{match: [{sniHosts: ['outbound_.80_._.e2e.foo.mesh']}], route: [{destination: {host: a}}]}]"
    )
    assert messages(text) == []
    bad = text.replace("outbound_.80_._.e2e.foo.mesh", "outbound_.http_._.e2e.foo.mesh")
    assert_issue(
        bad, "spec.tls[0].match[0].sniHosts[0]", "should follow outbound_.<PORT>_._.<HOSTNAME> format"
    )


DR_CASES = [
    ("host: 'a..b'", "spec.host", "invalid"),
    ("host: r\ntrafficPolicy: {}", "spec.trafficPolicy", "traffic policy must have at least one field"),
    ("host: r\nsubsets: [{name: v1}, {name: v1}]", "spec.subsets[1].name", "duplicate subset names: v1"),
    ("host: r\nsubsets: [{name: V_1}]", "spec.subsets[0].name", "subset name is invalid"),
    ("host: r\nsubsets: [{name: v1, labels: {'a b': c}}]", "spec.subsets[0].labels", "invalid tag key"),
    (
        "host: r\ntrafficPolicy: {connectionPool: {}}",
        "spec.trafficPolicy.connectionPool",
        "connection pool must have at least one field",
    ),
    (
        "host: r\ntrafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}",
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        "non-negative",
    ),
    (
        "host: r\ntrafficPolicy: {connectionPool: {http: {http2MaxRequests: -5}}}",
        "spec.trafficPolicy.connectionPool.http.http2MaxRequests",
        "non-negative",
    ),
    (
        "host: r\ntrafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}",
        "spec.trafficPolicy.connectionPool.http",
        "use client protocol must not be true",
    ),
    (
        "host: r\ntrafficPolicy: {connectionPool: {tcp: {connectTimeout: 0.1ms}}}",
        "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        "greater than 1ms",
    ),
    (
        "host: r\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}",
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        "not in range 0..100",
    ),
    (
        "host: r\ntrafficPolicy: {outlierDetection: {minHealthPercent: -1}}",
        "spec.trafficPolicy.outlierDetection.minHealthPercent",
        "not in range 0..100",
    ),
    (
        "host: r\ntrafficPolicy: {outlierDetection: {interval: 0s}}",
        "spec.trafficPolicy.outlierDetection.interval",
        "greater than 1ms",
    ),
    (
        "host: r\ntrafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}",
        "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
        "split external local origin errors is set to false",
    ),
    (
        "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 10}}}}",
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
        "prime",
    ),
    (
        "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 10, ringHash: {minimumRingSize: 5}}}}",
        "spec.trafficPolicy.loadBalancer.consistentHash",
        "only one of MinimumRingSize or Maglev/Ringhash",
    ),
    (
        "host: r\ntrafficPolicy: {loadBalancer: {warmup: {duration: 10s, aggression: 0}}}",
        "spec.trafficPolicy.loadBalancer.warmup.aggression",
        "aggression should be greater than 0",
    ),
    (
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: 'a/*', to: {'a/*': 50}}]}}}",
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
        "total locality weight 50 != 100",
    ),
    (
        "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: a, to: {a: 100}}], failover: [{from: a, to: b}]}}}",
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
        "can not simultaneously specify 'distribute' and 'failover'",
    ),
    (
        "host: r\ntrafficPolicy: {outlierDetection: {interval: 1s}, loadBalancer: {localityLbSetting: {failover: [{from: a, to: a}]}}}",
        "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
        "must specify different regions",
    ),
    (
        "host: r\ntrafficPolicy: {tls: {mode: MUTUAL}}",
        "spec.trafficPolicy.tls.clientCertificate",
        "client certificate required",
    ),
    (
        "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: c, caCertificates: /x}}",
        "spec.trafficPolicy.tls",
        "cannot specify client certificates or CA certificate",
    ),
    (
        "host: r\ntrafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: /x}}",
        "spec.trafficPolicy.tls",
        "InsecureSkipVerify",
    ),
    (
        "host: r\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}}]}",
        "spec.trafficPolicy.portLevelSettings[0]",
        "port traffic policy must have at least one field",
    ),
    (
        "host: r\ntrafficPolicy: {portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}",
        "spec.trafficPolicy.portLevelSettings[0]",
        "must have valid port",
    ),
    (
        "host: r\ntrafficPolicy: {tunnel: {targetHost: 'a..b', targetPort: 80}}",
        "spec.trafficPolicy.tunnel.targetHost",
        "tunnel target host must be valid FQDN or IP",
    ),
    (
        "host: r\ntrafficPolicy: {tunnel: {protocol: GET, targetHost: a.b, targetPort: 80}}",
        "spec.trafficPolicy.tunnel.protocol",
        'tunnel protocol must be "CONNECT" or "POST"',
    ),
    (
        "host: r\ntrafficPolicy: {tunnel: {targetHost: a.b, targetPort: 80}, proxyProtocol: {version: V1}}",
        "spec.trafficPolicy",
        "tunnel and proxyProtocol must not be set together",
    ),
    (
        "host: r\nsubsets: [{name: v1, trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}}]",
        "spec.subsets[0].trafficPolicy.connectionPool.tcp.maxConnections",
        "non-negative",
    ),
    (
        "host: r\nworkloadSelector: {matchLabels: {app: a}}\nexportTo: ['*']",
        "spec.exportTo",
        "workload selector cannot have exportTo beyond current namespace",
    ),
    (
        "host: r\nworkloadSelector: {matchLabels: {app: '*'}}",
        "spec.workloadSelector.matchLabels.app",
        "wildcard is not supported in selector",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), DR_CASES)
def test_destination_rule_errors(spec, field, fragment):
    assert_issue(kind("DestinationRule", spec), field, fragment)


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        (
            "host: r\ntrafficPolicy: {outlierDetection: {consecutiveErrors: 3}}",
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "deprecated",
        ),
        (
            "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 10, useSourceIp: true}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
            "deprecated",
        ),
        (
            "host: r\ntrafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: a, to: b}]}}}",
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "outlier detection policy must be provided for failover",
        ),
        (
            "host: r\nworkloadSelector: {}",
            "spec.workloadSelector.matchLabels",
            "workload selector specified without labels",
        ),
    ],
)
def test_destination_rule_warnings(spec, field, fragment):
    assert_issue(kind("DestinationRule", spec), field, fragment, "Warning")


def test_schema_level_oneof_for_consistent_hash_and_lb():
    assert_issue(
        kind(
            "DestinationRule",
            "host: r\ntrafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}",
        ),
        "spec.trafficPolicy.loadBalancer",
        "only one of simple, consistentHash",
    )
    assert_issue(
        kind(
            "DestinationRule",
            "host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}}",
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash",
        "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
    )


SERVER = "port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']"
GW_CASES = [
    ("servers: []", "spec.servers", "gateway must have at least one server"),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: []",
        "spec.servers[0].hosts",
        "at least one host",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: FOO}\n  hosts: ['*']",
        "spec.servers[0].port.protocol",
        'invalid protocol "FOO"',
    ),
    (
        "servers:\n- port: {number: 0, name: http, protocol: HTTP}\n  hosts: ['*']",
        "spec.servers[0].port.number",
        "1..65535",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n  hosts: ['*']",
        "spec.servers[0].port.targetPort",
        "no impact on Gateways",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['foo']",
        "spec.servers[0].hosts[0]",
        "short names (non FQDN) are not allowed",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['Bad_NS/*.foo.com']",
        "spec.servers[0].hosts[0]",
        "invalid namespace value",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*foo.com']",
        "spec.servers[0].hosts[0]",
        "partial wildcard",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']",
        "spec.servers[0]",
        "server must have TLS settings for HTTPS/TLS protocols",
    ),
    (
        "servers:\n- port: {number: 80, name: tcp, protocol: TCP}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialName: c}",
        "spec.servers[0].tls",
        "non HTTPS/TLS ports",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialName: c}",
        "spec.servers[0].tls",
        "plain text HTTP ports",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE}",
        "spec.servers[0].tls.serverCertificate",
        "SIMPLE TLS requires a server certificate",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: MUTUAL, serverCertificate: a, privateKey: b}",
        "spec.servers[0].tls.caCertificates",
        "requires a client CA bundle",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: ISTIO_MUTUAL, credentialName: c}",
        "spec.servers[0].tls.credentialName",
        "ISTIO_MUTUAL TLS cannot have associated credentialName",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialName: c, serverCertificate: a, privateKey: b}",
        "spec.servers[0].tls",
        "only one of credential_name",
    ),
    (
        "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, serverCertificate: a, privateKey: b, caCrl: c}",
        "spec.servers[0].tls.caCrl",
        "CRL is not supported with SIMPLE TLS",
    ),
    (
        "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']\n  bind: not-an-ip",
        "spec.servers[0].bind",
        "not a valid IP",
    ),
    (
        "servers:\n- {%s}\n- port: {number: 81, name: http, protocol: HTTP}\n  hosts: ['*']"
        % SERVER.replace("\n  ", ", "),
        "spec.servers[1].port.name",
        "duplicate name http",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), GW_CASES)
def test_gateway_errors(spec, field, fragment):
    assert_issue(kind("Gateway", spec), field, fragment)


def test_gateway_name_must_be_a_label_and_warnings():
    assert_issue(
        kind("Gateway", "servers:\n- " + SERVER, name="a.b"), "metadata.name", "invalid gateway name"
    )
    assert_issue(
        kind(
            "Gateway",
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: PASSTHROUGH, credentialName: c}",
        ),
        "spec.servers[0].tls",
        "PASSTHROUGH mode does not use certificates",
        "Warning",
    )
    assert_issue(
        kind(
            "Gateway",
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {httpsRedirect: true, mode: PASSTHROUGH}",
        ),
        "spec.servers[0].tls.httpsRedirect",
        "should only be used with http servers",
        "Warning",
    )
    assert_issue(
        kind(
            "Gateway",
            "servers:\n- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: SIMPLE, credentialName: c, cipherSuites: [NOPE]}",
        ),
        "spec.servers[0].tls.cipherSuites",
        "ignoring invalid cipher suites: [NOPE]",
        "Warning",
    )


SE_CASES = [
    ("hosts: ['*']\nports: [{number: 80, name: http, protocol: HTTP}]", "spec.hosts[0]", "invalid host *"),
    ("hosts: []", "spec.hosts", "at least one host"),
    (
        "hosts: ['*.a.com']\nresolution: DNS\nports: [{number: 80, name: http, protocol: HTTP}]",
        "spec.hosts[0]",
        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS",
    ),
    (
        "hosts: [a.com]\naddresses: [10.0.0.0/8]\nresolution: DNS\nports: [{number: 80, name: http, protocol: HTTP}]",
        "spec.addresses",
        "CIDR addresses are allowed only for NONE/STATIC",
    ),
    ("hosts: [a.com]\naddresses: [10.0.0.300]", "spec.addresses[0]", "not a valid IP"),
    (
        "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: http2, protocol: HTTP}]",
        "spec.ports[1].number",
        "service entry port 80 already defined",
    ),
    (
        "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: http, protocol: HTTP}]",
        "spec.ports[1].name",
        'port name "http" already defined',
    ),
    (
        "hosts: [a.com]\nports: [{number: 80, name: http, protocol: FOO}]",
        "spec.ports[0].protocol",
        "unsupported protocol: FOO",
    ),
    (
        "hosts: [a.com]\nports: [{number: 80, name: 'Http_1', protocol: HTTP}]",
        "spec.ports[0].name",
        "invalid port name",
    ),
    (
        "hosts: [a.com]\nresolution: NONE\nendpoints: [{address: 1.1.1.1}]",
        "spec.endpoints",
        "no endpoints should be provided for resolution type none",
    ),
    (
        "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: foo.com}]",
        "spec.endpoints[0].address",
        "is not a valid IP address",
    ),
    (
        "hosts: [a.com]\nresolution: STATIC\nports: [{number: 80, name: http}]\nendpoints: [{address: 1.1.1.1, ports: {grpc: 90}}]",
        "spec.endpoints[0].ports.grpc",
        "endpoint port 90 is not defined by the service entry",
    ),
    (
        "hosts: [a.com]\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: a.com}, {address: b.com}]",
        "spec.endpoints",
        "there must only be 0 or 1 endpoint",
    ),
    (
        "hosts: [a.com, b.com]\nresolution: DNS\nports: [{number: 3306, name: tcp, protocol: TCP}]",
        "spec.ports[0]",
        "multiple hosts provided with non-HTTP, non-TLS ports",
    ),
    (
        "hosts: [a.com]\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 1.1.1.1}]\nresolution: STATIC",
        "spec",
        "only one of WorkloadSelector or Endpoints",
    ),
    (
        "hosts: [a.com]\nexportTo: ['~', ns1]",
        "spec.exportTo",
        "cannot export service entry to no one (~) and someone",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), SE_CASES)
def test_service_entry_errors(spec, field, fragment):
    assert_issue(kind("ServiceEntry", spec), field, fragment)


def test_service_entry_warnings():
    assert_issue(kind("ServiceEntry", "hosts: ['*a.com']"), "spec.hosts[0]", "partial wildcard", "Warning")
    meta = ", annotations: {networking.istio.io/enable-autoallocate-ip: 'false'}"
    assert_issue(
        kind("ServiceEntry", "hosts: [a.com]\nports: [{number: 5432, name: tcp}]", meta=meta),
        "spec.ports[0]",
        "addresses are required for ports serving TCP",
        "Warning",
    )
    assert (
        messages(
            kind("ServiceEntry", "hosts: ['~']\nexportTo: ['~']".replace("hosts: ['~']", "hosts: [a.com]"))
        )
        == []
    )


SIDECAR_CASES = [
    ("{}", "spec", "sidecar: empty configuration provided"),
    ("egress: [{hosts: [foo]}]", "spec.egress[0].hosts[0]", "host must be of form namespace/dnsName"),
    ("egress: [{hosts: ['ns/a/b.com']}]", "spec.egress[0].hosts[0]", "must contain exactly one '/'"),
    ("egress: [{hosts: ['Bad_NS/a.com']}]", "spec.egress[0].hosts[0]", "invalid namespace value"),
    ("egress: [{hosts: ['ns/foo']}]", "spec.egress[0].hosts[0]", "short names (non FQDN) are not allowed"),
    ("egress: [{hosts: []}]", "spec.egress[0].hosts", "must contain at least one host"),
    (
        "egress: [{hosts: ['*/*']}, {hosts: ['*/*']}]",
        "spec.egress[0]",
        "empty port should be the last listener",
    ),
    (
        "egress: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ['*/*']}, {port: {number: 80, protocol: HTTP, name: h2}, hosts: ['*/*']}]",
        "spec.egress[1].port.number",
        "ports on IP bound listeners must be unique",
    ),
    (
        "egress: [{port: {number: 0, protocol: HTTP, name: http}, hosts: ['*/*']}]",
        "spec.egress[0].bind",
        "unix domain socket bind address",
    ),
    (
        "egress: [{port: {number: 80, protocol: FOO}, hosts: ['*/*']}]",
        "spec.egress[0].port.protocol",
        "unsupported protocol",
    ),
    (
        "ingress: [{port: {number: 80, protocol: HTTP, name: http}, defaultEndpoint: '1.2.3.4:80'}]",
        "spec.ingress[0].defaultEndpoint",
        "defaultEndpoint must be of form",
    ),
    (
        "ingress: [{port: {number: 80, protocol: HTTP, name: http, targetPort: 81}}]",
        "spec.ingress[0].port.targetPort",
        "no impact on Sidecars",
    ),
    (
        "ingress: [{port: {number: 80, protocol: HTTP, name: http}, tls: {mode: SIMPLE}}]",
        "spec.ingress[0].tls",
        "non HTTPS/TLS ports",
    ),
    (
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: a.com, port: {number: 80}}}",
        "spec.outboundTrafficPolicy.egressProxy",
        "only with ALLOW_ANY",
    ),
    (
        "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.com}}",
        "spec.outboundTrafficPolicy.egressProxy.port",
        "must be non-nil",
    ),
    (
        "inboundConnectionPool: {}",
        "spec.inboundConnectionPool",
        "connection pool must have at least one field",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), SIDECAR_CASES)
def test_sidecar_errors(spec, field, fragment):
    assert_issue(kind("Sidecar", spec), field, fragment)


def test_sidecar_warnings():
    assert_issue(
        kind("Sidecar", "egress: [{hosts: ['*/*', 'ns/a.com']}]"),
        "spec.egress[0].hosts",
        "`*/*` host select all",
        "Warning",
    )
    assert_issue(
        kind("Sidecar", "egress: [{hosts: ['ns/a.com', 'ns/a.com']}]"),
        "spec.egress[0].hosts[1]",
        "duplicated egress host",
        "Warning",
    )
    assert_issue(
        kind("Sidecar", "workloadSelector: {}\negress: [{hosts: ['*/*']}]"),
        "spec.workloadSelector",
        "will be applied to all services",
        "Warning",
    )


def test_workload_entry_rules():
    assert_issue(kind("WorkloadEntry", "labels: {app: a}"), "spec.address", "address is required")
    assert_issue(
        kind("WorkloadEntry", "address: 'not a host'"), "spec.address", "not a valid FQDN or an IP address"
    )
    assert_issue(kind("WorkloadEntry", "address: 1.1.1.1\nports: {http: 0}"), "spec.ports.http", "1..65535")
    assert_issue(
        kind("WorkloadEntry", "address: unix:///x.sock\nports: {http: 80}"),
        "spec.ports",
        "must not include ports",
    )
    assert_issue(
        kind("WorkloadEntry", "network: n1"), "spec.address", "address is unset with network", "Warning"
    )


SEC = "security.istio.io/v1"
AP_CASES = [
    ("action: DENY", "spec.rules", "DENY action without `rules` is meaningless"),
    ("action: CUSTOM", "spec.rules", "CUSTOM action without `rules`"),
    ("action: CUSTOM\nrules: [{}]", "spec.provider.name", "`provider.name` must not be empty"),
    (
        "action: ALLOW\nprovider: {name: x}\nrules: [{}]",
        "spec.provider",
        "`provider` must not be with non CUSTOM action",
    ),
    (
        "action: CUSTOM\nprovider: {name: p}\nrules: [{from: [{source: {principals: [a]}}]}]",
        "spec.rules[0].from[0].source.principals",
        "not supported with CUSTOM action",
    ),
    ("rules: [{from: []}]", "spec.rules[0].from", "`from` must not be empty"),
    ("rules: [{from: [{}]}]", "spec.rules[0].from[0]", "`from.source` must not be nil"),
    ("rules: [{from: [{source: {}}]}]", "spec.rules[0].from[0].source", "`from.source` must not be empty"),
    ("rules: [{to: [{operation: {}}]}]", "spec.rules[0].to[0].operation", "`to.operation` must not be empty"),
    (
        "rules: [{from: [{source: {ipBlocks: [1.2.3.4/33]}}]}]",
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "bad CIDR range",
    ),
    (
        "rules: [{from: [{source: {remoteIpBlocks: [nope]}}]}]",
        "spec.rules[0].from[0].source.remoteIpBlocks[0]",
        "bad IP address (nope)",
    ),
    (
        "rules: [{from: [{source: {principals: ['']}}]}]",
        "spec.rules[0].from[0].source.principals[0]",
        "empty value not allowed, found in Principals",
    ),
    (
        "rules: [{from: [{source: {namespaces: [a], serviceAccounts: [b]}}]}]",
        "spec.rules[0].from[0].source",
        "cannot set serviceAccounts with namespaces or principals",
    ),
    (
        "rules: [{from: [{source: {serviceAccounts: ['a/b/c']}}]}]",
        "spec.rules[0].from[0].source.serviceAccounts[0]",
        "expected format 'serviceAccount' or 'namespace/serviceAccount'",
    ),
    (
        "rules: [{to: [{operation: {ports: ['http']}}]}]",
        "spec.rules[0].to[0].operation.ports[0]",
        "bad port (http)",
    ),
    (
        "rules: [{to: [{operation: {ports: ['70000']}}]}]",
        "spec.rules[0].to[0].operation.ports[0]",
        "bad port (70000)",
    ),
    (
        "rules: [{to: [{operation: {paths: ['/{*}/foo/{bar}']}}]}]",
        "spec.rules[0].to[0].operation.paths[0]",
        "beyond a supported path template",
    ),
    (
        "rules: [{when: [{key: 'request.headers[x]'}]}]",
        "spec.rules[0].when[0]",
        "at least one of `values` or `notValues`",
    ),
    (
        "rules: [{when: [{key: source.unknown, values: [a]}]}]",
        "spec.rules[0].when[0].values",
        "unknown attribute: source.unknown",
    ),
    (
        "rules: [{when: [{key: request.headers, values: [a]}]}]",
        "spec.rules[0].when[0].values",
        "should have format a[b]",
    ),
    ("rules: [{when: [{key: destination.port, values: [abc]}]}]", "spec.rules[0].when[0].values", "bad port"),
    (
        "rules: [{when: [{key: destination.namespace, values: [a]}]}]",
        "spec.rules[0].when[0].values",
        "replaced by the metadata.namespace",
    ),
    (
        "rules: [{when: [{key: source.ip, values: [1.2.3.4/99]}]}]",
        "spec.rules[0].when[0].values",
        "bad CIDR range",
    ),
    ("targetRef: {kind: Deployment, name: d}", "spec.targetRef", "targetRef must be to one of"),
    (
        "targetRef: {kind: Service, name: d, namespace: other}",
        "spec.targetRef.namespace",
        "cross namespace referencing is not supported",
    ),
    (
        "selector: {matchLabels: {app: '*'}}",
        "spec.selector.matchLabels.app",
        "wildcard is not supported in selector",
    ),
]


@pytest.mark.parametrize(("spec", "field", "fragment"), AP_CASES)
def test_authorization_policy_errors(spec, field, fragment):
    assert_issue(kind("AuthorizationPolicy", spec, api=SEC), field, fragment)


def test_authorization_policy_warnings_and_oneof():
    assert_issue(
        kind("AuthorizationPolicy", "action: DENY\nrules: [{to: [{operation: {methods: [GET]}}]}]", api=SEC),
        "spec.rules[0]",
        "will deny all traffic to TCP ports",
        "Warning",
    )
    assert_issue(
        kind(
            "AuthorizationPolicy",
            "selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Service, name: s}]",
            api=SEC,
        ),
        "spec",
        "only one of targetRefs or workloadSelector can be set",
    )
    assert_issue(
        kind(
            "AuthorizationPolicy",
            "selector: {matchLabels: {app: a}}\nrules: [{}]",
            api=SEC,
            meta=", namespace: istio-system",
        ),
        "spec.selector",
        "root namespace",
        "Warning",
    )


def test_dry_run_annotation():
    meta = ', annotations: {"istio.io/dry-run": "maybe"}'
    assert_issue(
        kind("AuthorizationPolicy", "rules: [{}]", api=SEC, meta=meta),
        'metadata.annotations["istio.io/dry-run"]',
        "invalid value (maybe)",
    )
    assert_issue(
        kind("DestinationRule", "host: r", meta=', annotations: {"istio.io/dry-run": "true"}'),
        'metadata.annotations["istio.io/dry-run"]',
        "unsupported annotation istio.io/dry-run",
    )
    assert (
        messages(
            kind(
                "AuthorizationPolicy",
                "rules: [{}]",
                api=SEC,
                meta=', annotations: {"istio.io/dry-run": "true"}',
            )
        )
        == []
    )


def test_peer_authentication_rules():
    pa = "PeerAuthentication"
    assert_issue(
        kind(pa, "portLevelMtls: {8080: {mode: STRICT}}", api=SEC),
        "spec.portLevelMtls",
        "cannot have port level mTLS",
    )
    assert_issue(
        kind(pa, "selector: {matchLabels: {app: a}}\nportLevelMtls: {'0': {mode: STRICT}}", api=SEC),
        'spec.portLevelMtls["0"]',
        "port must be in range 1..65535",
    )
    assert_issue(
        kind(pa, "selector: {matchLabels: {app: a}}\nportLevelMtls: {}", api=SEC),
        "spec.portLevelMtls",
        "must have at least one element",
    )
    assert_issue(kind(pa, "mtls: {mode: LOOSE}", api=SEC), "spec.mtls.mode", "must be one of")
    (r,) = load_text(
        kind(pa, "selector: {matchLabels: {app: a}}\nportLevelMtls:\n  8080: {mode: DISABLE}", api=SEC)
    )
    assert r.spec.port_level_mtls["8080"].mode == "DISABLE"


def test_request_authentication_rules():
    ra = "RequestAuthentication"
    assert_issue(
        kind(ra, "jwtRules: [{audiences: [a]}]", api=SEC),
        "spec.jwtRules[0]",
        "issuer or jwksUri must be non-empty",
    )
    assert_issue(
        kind(ra, "jwtRules: [{issuer: i, jwksUri: 'ftp://x/jwks'}]", api=SEC),
        "spec.jwtRules[0].jwksUri",
        'URI scheme "ftp" is not supported',
    )
    assert_issue(
        kind(ra, "jwtRules: [{issuer: i, jwks: 'nope'}]", api=SEC),
        "spec.jwtRules[0].jwks",
        "jwks parse error",
    )
    assert_issue(
        kind(ra, "jwtRules: [{issuer: i, fromParams: ['']}]", api=SEC),
        "spec.jwtRules[0].fromParams[0]",
        "location query must be non-empty",
    )
    assert_issue(
        kind(ra, "jwtRules: [{issuer: i, outputClaimToHeaders: [{header: 'x y', claim: c}]}]", api=SEC),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "not a valid header name",
    )
    assert_issue(
        kind(ra, "jwtRules: [{issuer: i, timeout: 0s}]", api=SEC),
        "spec.jwtRules[0].timeout",
        "greater than 1ms",
    )
    (r,) = load_text(kind(ra, "jwtRules: [{issuer: i, jwks_uri: 'https://a/jwks'}]", api=SEC))
    assert r.spec.jwt_rules[0].jwks_uri == "https://a/jwks"


def test_telemetry_proxyconfig_workloadgroup_envoyfilter():
    tel = "telemetry.istio.io/v1"
    assert_issue(
        kind("Telemetry", "tracing: [{randomSamplingPercentage: 150}]", api=tel),
        "spec.tracing[0].randomSamplingPercentage",
        "range [0.0, 100.0]",
    )
    assert_issue(
        kind(
            "Telemetry",
            "metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: v}}}]}]",
            api=tel,
        ),
        "spec.metrics[0].overrides[0].tagOverrides.a",
        "may only be set when operation is UPSERT",
    )
    assert_issue(
        kind("Telemetry", "tracing: [{}, {}]", api=tel), "spec.tracing", "multiple tracing", "Warning"
    )
    assert_issue(
        kind("ProxyConfig", "concurrency: -1", api="networking.istio.io/v1beta1"),
        "spec.concurrency",
        "greater than or equal to 0",
    )
    assert_issue(
        kind("WorkloadGroup", "template: {}\nprobe: {httpGet: {port: 0}}"),
        "spec.probe.httpGet.port",
        "1..65535",
    )
    assert_issue(
        kind("WorkloadGroup", "template: {}\nprobe: {periodSeconds: -1, exec: {command: [a]}}"),
        "spec.probe.periodSeconds",
        "non-negative",
    )
    ef = "networking.istio.io/v1alpha3"
    assert_issue(
        kind(
            "EnvoyFilter",
            "configPatches: [{applyTo: CLUSTER, patch: {operation: REPLACE, value: {a: 1}}}]",
            api=ef,
        ),
        "spec.configPatches[0].patch.operation",
        "REPLACE operation is only applicable",
    )
    assert_issue(
        kind("EnvoyFilter", "configPatches: [{applyTo: CLUSTER}]", api=ef),
        "spec.configPatches[0]",
        "missing patch",
    )


KUBE_CASES = [
    ("Service", "a.b", "ports: [{port: 80}]", "metadata.name", "DNS-1035"),
    ("Service", "s", "ports: [{port: 0}]", "spec.ports[0].port", "between 1 and 65535"),
    (
        "Service",
        "s",
        "ports: [{port: 80, name: a}, {port: 81, name: a}]",
        "spec.ports[1].name",
        'Duplicate value: "a"',
    ),
    ("Service", "s", "ports: [{port: 80}, {port: 81}]", "spec.ports[0].name", "Required value"),
    (
        "Service",
        "s",
        "ports: [{port: 80, targetPort: 'Bad--Name'}]",
        "spec.ports[0].targetPort",
        "Invalid value",
    ),
    ("Service", "s", "type: ExternalName", "spec.externalName", "Required value"),
    (
        "Service",
        "s",
        "clusterIP: 10.0.0.999\nports: [{port: 80}]",
        "spec.clusterIP",
        "must be empty, 'None', or a valid IP",
    ),
    ("Service", "s", "ports: [{port: 80, nodePort: 30000}]", "spec.ports[0].nodePort", "Forbidden"),
    ("Namespace", "Bad.Ns", "{}", "metadata.name", "RFC 1123"),
]


@pytest.mark.parametrize(("k", "name", "spec", "field", "fragment"), KUBE_CASES)
def test_kubernetes_rules(k, name, spec, field, fragment):
    assert_issue(kind(k, spec, api="v1", name=name), field, fragment)


def test_secret_and_deployment_rules():
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: '!!notbase64'}\n"
    assert_issue(text, 'data["tls.crt"]', "illegal base64 data")
    assert_issue(text, 'data["tls.key"]', "Required value")
    dep = kind(
        "Deployment",
        "selector: {matchLabels: {app: a}}\ntemplate: {metadata: {labels: {app: b}}, spec: {containers: [{name: c}]}}",
        api="apps/v1",
    )
    assert_issue(dep, "spec.template.metadata.labels", "`selector` does not match template `labels`")


def test_workload_rules():
    w = "isthmus.dev/v1alpha1"
    assert_issue(kind("Workload", "ports: [80]", api=w), "spec.command", "command is required unless gateway")
    assert_issue(
        kind("Workload", "gateway: true\ncommand: [x]", api=w),
        "spec.command",
        "a gateway workload has no command",
    )
    assert_issue(
        kind("Workload", "command: [x]\nports: [80, 80]", api=w), "spec.ports[1]", "listed more than once"
    )
    assert_issue(kind("Workload", "command: [x]\nports: [0]", api=w), "spec.ports[0]", "1..65535")
    assert_issue(kind("Workload", "command: [x]\nreplicas: -1", api=w), "spec.replicas", "must be >= 0")
    (r,) = load_text(kind("Workload", "command: [x]", api=w))
    assert r.spec.service_account == "default" and r.spec.replicas == 1 and r.spec.sidecar is True


def test_mesh_config_rules():
    w = "isthmus.dev/v1alpha1"
    assert_issue(kind("MeshConfig", "{}", api=w, name="other"), "metadata.name", 'must be named "mesh"')
    assert_issue(kind("MeshConfig", "trustDomain: 'a..b'", api=w, name="mesh"), "spec.trustDomain", "invalid")
    assert_issue(
        kind("MeshConfig", "connectTimeout: 2h", api=w, name="mesh"),
        "spec.connectTimeout",
        "invalid connect timeout",
    )
    assert_issue(
        kind("MeshConfig", "defaultConfig: {drainDuration: 1500ms}", api=w, name="mesh"),
        "spec.defaultConfig.drainDuration",
        "seconds precision",
    )
    assert_issue(
        kind("MeshConfig", "defaultConfig: {tracing: {zipkin: {address: nope}}}", api=w, name="mesh"),
        "spec.defaultConfig.tracing.zipkin.address",
        "invalid zipkin config",
    )
    assert_issue(
        kind("MeshConfig", "outboundTrafficPolicy: {mode: ALLOW_ANNY}", api=w, name="mesh"),
        "spec.outboundTrafficPolicy.mode",
        "must be one of",
    )
    assert_issue(
        kind("MeshConfig", "meshMTLS: {ecdhCurves: [P-256]}", api=w, name="mesh"),
        "spec.meshMTLS.ecdhCurves",
        "does not support ECDH",
    )
    assert_issue(
        kind("MeshConfig", "defaultHttpRetryPolicy: {attempts: 2, retryOn: nope}", api=w, name="mesh"),
        "spec.defaultHttpRetryPolicy.retryOn",
        "not a valid retryOn policy",
    )
    assert_issue(
        kind("MeshConfig", "bogusField: 1", api=w, name="mesh"),
        "spec.bogusField",
        'unknown field "bogusField"',
    )
    assert_issue(
        kind("MeshConfig", "defaultProviders: {tracing: [nope]}", api=w, name="mesh"),
        "spec.defaultProviders.tracing[0]",
        "not defined",
        "Warning",
    )
    (r,) = load_text(kind("MeshConfig", "{}", api=w, name="mesh", meta=", namespace: istio-system"))
    assert r.key == ("MeshConfig", "", "mesh")


def _mesh_with_proxy_metadata(meta: str) -> str:
    return kind(
        "MeshConfig", f"defaultConfig: {{proxyMetadata: {meta}}}", api="isthmus.dev/v1alpha1", name="mesh"
    )


def settings(meta: str) -> MeshSettings:
    """The MeshSettings of a MeshConfig with this proxyMetadata (YAML flow mapping)."""
    (r,) = load_text(_mesh_with_proxy_metadata(meta))
    return MeshSettings.from_spec(r.spec)


def test_mesh_config_delta_xds_switch():
    """proxyMetadata ISTIO_DELTA_XDS picks the proxies' xDS protocol (delta unless false, as Istio >= 1.22);
    a value that is not a boolean is warned about and leaves the default."""
    assert MeshSettings().delta_xds is True
    assert settings("{}").delta_xds is True
    assert settings("{ISTIO_DELTA_XDS: 'false'}").delta_xds is False
    assert settings("{ISTIO_DELTA_XDS: '0'}").delta_xds is False
    assert settings("{ISTIO_DELTA_XDS: 'True'}").delta_xds is True
    assert_issue(
        _mesh_with_proxy_metadata("{ISTIO_DELTA_XDS: nope}"),
        "spec.defaultConfig.proxyMetadata.ISTIO_DELTA_XDS",
        "not a boolean",
        "Warning",
    )
    assert settings("{ISTIO_DELTA_XDS: nope}").delta_xds is True


def test_mesh_config_vhds_switch():
    """proxyMetadata ISTHMUS_VHDS: "false" keeps delta sidecars' tables inline (default: VHDS); a value
    that is not a boolean is warned about and leaves the default."""
    assert MeshSettings().vhds is True and settings("{}").vhds is True
    assert settings("{ISTHMUS_VHDS: 'false'}").vhds is False
    assert settings("{ISTHMUS_VHDS: 'true'}").vhds is True
    assert_issue(
        _mesh_with_proxy_metadata("{ISTHMUS_VHDS: maybe}"),
        "spec.defaultConfig.proxyMetadata.ISTHMUS_VHDS",
        "not a boolean",
        "Warning",
    )
    assert settings("{ISTHMUS_VHDS: maybe}").vhds is True


def test_mesh_config_idle_timeout_that_is_no_duration_is_warned_about():
    # Ignored, as istiod ignores it (the proxies keep the default), but not silently.
    assert_issue(
        _mesh_with_proxy_metadata("{ISTIO_META_IDLE_TIMEOUT: soon}"),
        "spec.defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT",
        "is not a duration",
        "Warning",
    )
    assert messages(_mesh_with_proxy_metadata("{ISTIO_META_IDLE_TIMEOUT: 30s}")) == []


@pytest.mark.parametrize(
    ("meta", "key", "text"),
    [
        ("{SECRET_TTL: soon}", "SECRET_TTL", "is not a duration"),
        ("{SECRET_GRACE_PERIOD_RATIO: half}", "SECRET_GRACE_PERIOD_RATIO", "is not a ratio in [0, 1)"),
        ("{SECRET_GRACE_PERIOD_RATIO: '1'}", "SECRET_GRACE_PERIOD_RATIO", "is not a ratio in [0, 1)"),
        ("{SECRET_GRACE_PERIOD_RATIO: '-0.1'}", "SECRET_GRACE_PERIOD_RATIO", "is not a ratio in [0, 1)"),
    ],
)
def test_mesh_config_agent_certificate_knobs_are_checked(meta: str, key: str, text: str):
    # The CA reads them when the mesh starts: a bad value is refused with its field, not a crash of `up`.
    assert_issue(_mesh_with_proxy_metadata(meta), f"spec.defaultConfig.proxyMetadata.{key}", text, "Error")


def test_mesh_config_agent_certificate_knobs_accept_istio_values():
    assert messages(_mesh_with_proxy_metadata("{SECRET_TTL: 12h, SECRET_GRACE_PERIOD_RATIO: '0.2'}")) == []


def test_regex_checker_rejects_non_re2_constructs():
    for bad in ["(?=a)", "(?<!a)b", r"(a)\1", "a++", "(?>a)"]:
        assert regex_error(bad), bad
    for good in ["^/api/v[0-9]+/.*$", r"\d+", "(?i)abc", "a{1,3}", "[[:alpha:]]+"]:
        assert regex_error(good) is None, good


def test_validate_on_parsed_resource_gives_lines():
    (r,) = load_text_report(
        vs("hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n    weight: -3"), "v.yaml"
    ).resources
    (e,) = [e for e in validate(r) if e.level == "Error"]
    assert e.line == 9 and e.field == "spec.http[0].route[0].weight" and e.file == "v.yaml"


def test_regex_fallback_without_re2(monkeypatch):
    from isthmus.api.validation import common

    monkeypatch.setattr(common, "_re2", None)
    assert "lookahead" in common.regex_error("a(?=b)")
    assert "backreferences" in common.regex_error(r"(a)\1")
    assert common.regex_error("(a") is not None
    assert common.regex_error("^/v[0-9]+$") is None


def test_authorization_policy_wildcard_placement_warnings():
    text = kind(
        "AuthorizationPolicy",
        "rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/a/sa/b', 'cluster.local/ns/*/sa/x']}}],"
        " to: [{operation: {paths: ['/api/*/x', '/{*}/foo', '/a*']}}]}]",
        api=SEC,
    )
    assert_issue(
        text, "spec.rules[0].from[0].source.principals[0]", "without the spiffe:// prefix", "Warning"
    )
    assert_issue(text, "spec.rules[0].from[0].source.principals[1]", "literal character", "Warning")
    assert_issue(text, "spec.rules[0].to[0].operation.paths[0]", "literal character", "Warning")
    fields = [m.field for m in messages(text)]
    assert "spec.rules[0].to[0].operation.paths[1]" not in fields
    assert "spec.rules[0].to[0].operation.paths[2]" not in fields


@pytest.mark.parametrize(
    "field", ["defaultServiceExportTo", "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo"]
)
def test_mesh_default_export_to_accepts_dot(field: str) -> None:
    # `.` in MeshConfig's defaults means each resource's own namespace (Istio accepts it there).
    def mesh(values: str) -> str:
        return kind("MeshConfig", f"{field}: {values}", api="isthmus.dev/v1alpha1", name="mesh")

    assert messages(mesh("['.']")) == []
    assert messages(mesh("['*']")) == []
    assert_issue(mesh("['.', '.']"), f"spec.{field}[1]", "duplicate entries in exportTo for entry .")
    assert_issue(mesh("['a_b']"), f"spec.{field}[0]", "only .,*, or a valid DNS 1123 label")
