"""Istio's Sidecar validation tests, ported case by case to YAML.

Source: ``pkg/config/validation/validation_test.go`` TestValidateSidecar (Sidecar ``foo`` in namespace
``bar``; ``checkValidation`` checks both the error and the warning). Each case: (Istio case name, spec
YAML, valid, warning).
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

import pytest
from istio_verdicts import assert_verdict


class Case(NamedTuple):
    name: str
    spec: str
    valid: bool
    warn: bool
    fragment: str | None = None


def sidecar(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: foo, namespace: bar}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    )


ALL_HOSTS = "egress: [{hosts: ['*/*']}]"
HTTP90 = "{protocol: http, number: 90, name: foo}"
TCP90 = "{protocol: tcp, number: 90, name: foo}"
UDS_PORT = "{protocol: http, number: 0, name: uds}"


def egress(*hosts: str, port: str | None = None, extra: str = "") -> str:
    """One egress listener, as a flow mapping."""
    parts = []
    if port:
        parts.append(f"port: {port}")
    parts.append("hosts: [" + ", ".join(f"'{h}'" for h in hosts) + "]")
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def ingress(port: str | None = HTTP90, endpoint: str | None = None, extra: str = "") -> str:
    parts = []
    if port:
        parts.append(f"port: {port}")
    if endpoint is not None:
        parts.append(f"defaultEndpoint: '{endpoint}'")
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def ingress_tls(endpoint: str, tls: str, port: str = TCP90) -> str:
    return "ingress: [" + ingress(port, endpoint, f"tls: {tls}") + "]"


def both_ips(name: str, build, valid: bool, warn: bool = False) -> list[Case]:
    """Istio repeats many cases once with 127.0.0.1 and once with [::1]."""
    return [
        Case(f"{name} in IPv4", build("127.0.0.1:9999"), valid, warn),
        Case(f"{name} in IPv6", build("[::1]:9999"), valid, warn),
    ]


POOL = "{http: {http1MaxPendingRequests: 1024, http2MaxRequests: 1024, maxRequestsPerConnection: 1024, maxRetries: 1024}}"
EGRESS_PROXY = "egressProxy: {host: foo.bar, subset: shiny, port: {number: 5000}}"

SIDECAR = [
    Case("empty ingress and egress", "{}", False, False, "sidecar: empty configuration provided"),
    Case("default", ALL_HOSTS, True, False),
    Case("workload selector without labels", ALL_HOSTS + "\nworkloadSelector: {}", True, True),
    Case("import local namespace with wildcard", "egress: [" + egress("./*") + "]", True, False),
    Case("import local namespace with fqdn", "egress: [" + egress("./foo.com") + "]", True, False),
    Case("import nothing", "egress: [" + egress("~/*") + "]", True, False),
    Case("import all except a namespace", "egress: [" + egress("*/*", "~ns1/*") + "]", True, False),
    Case("import all except an exact host", "egress: [" + egress("*/*", "~/foo.com") + "]", True, False),
    Case("exclude with invalid namespace", "egress: [" + egress("*/*", "~Invalid_NS/*") + "]", False, False),
    Case("bad egress host 1", "egress: [" + egress("*") + "]", False, False),
    Case("bad egress host 2", "egress: [" + egress("/") + "]", False, False),
    Case(
        "empty egress host",
        "egress: [{hosts: []}]",
        False,
        False,
        "sidecar: egress listener must contain at least one host",
    ),
    Case(
        "multiple wildcard egress",
        "egress: [" + egress("*/foo.com") + ", " + egress("ns1/bar.com") + "]",
        False,
        False,
        "sidecar: the egress listener with empty port should be the last listener in the list",
    ),
    Case(
        "wildcard egress not in end",
        "egress: ["
        + egress("*/foo.com")
        + ", "
        + egress("ns1/bar.com", port="{protocol: http, number: 8080, name: h8080}")
        + "]",
        False,
        False,
    ),
    Case(
        "invalid Port",
        "egress: [" + egress("ns1/bar.com", port="{protocol: http1, number: 1000000, name: ''}") + "]",
        False,
        False,
    ),
    Case(
        "Port without name",
        "egress: [" + egress("ns1/bar.com", port="{protocol: http, number: 8080}") + "]",
        True,
        False,
    ),
    Case(
        "UDS bind in outbound",
        "egress: [" + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'unix:///@foo/bar/com'") + "]",
        True,
        False,
    ),
    Case(
        "UDS bind in inbound",
        "ingress: [" + ingress(UDS_PORT, "127.0.0.1:9999", "bind: 'unix:///@foo/bar/com'") + "]",
        False,
        False,
    ),
    Case(
        "UDS bind in outbound 2",
        "egress: [" + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'unix:///foo/bar/com'") + "]",
        True,
        False,
    ),
    Case(
        "invalid bind",
        "egress: [" + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'foobar:///@foo/bar/com'") + "]",
        False,
        False,
        "sidecar: ports with 0 value must have a unix domain socket bind address",
    ),
    Case(
        "invalid capture mode with uds bind",
        "egress: ["
        + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'unix:///@foo/bar/com', captureMode: IPTABLES")
        + "]",
        False,
        False,
        "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
    ),
    Case(
        "duplicate UDS bind",
        "egress: ["
        + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'unix:///@foo/bar/com'")
        + ", "
        + egress("ns1/bar.com", port=UDS_PORT, extra="bind: 'unix:///@foo/bar/com'")
        + "]",
        False,
        False,
        "sidecar: unix domain socket values for listeners must be unique",
    ),
    Case(
        "duplicate ports",
        "egress: ["
        + egress("ns1/bar.com", port="{protocol: http, number: 90, name: foo}")
        + ", "
        + egress("ns2/bar.com", port="{protocol: tcp, number: 90, name: tcp}")
        + "]",
        False,
        False,
        "sidecar: ports on IP bound listeners must be unique",
    ),
    Case(
        "ingress without port",
        "ingress: [" + ingress(None, "127.0.0.1:110") + "]\n" + ALL_HOSTS,
        False,
        False,
    ),
    Case(
        "ingress without port and with IPv6 endpoint",
        "ingress: [" + ingress(None, "[::1]:110") + "]\n" + ALL_HOSTS,
        False,
        False,
    ),
    Case(
        "ingress with duplicate ports",
        "ingress: ["
        + ingress(HTTP90, "127.0.0.1:110")
        + ", "
        + ingress("{protocol: tcp, number: 90, name: bar}", "127.0.0.1:110")
        + "]\n"
        + ALL_HOSTS,
        False,
        False,
        "sidecar: ports on IP bound listeners must be unique",
    ),
    Case(
        "ingress with duplicate ports and IPv6 endpoint",
        "ingress: ["
        + ingress(HTTP90, "[::1]:110")
        + ", "
        + ingress("{protocol: tcp, number: 90, name: bar}", "[::1]:110")
        + "]\n"
        + ALL_HOSTS,
        False,
        False,
    ),
    Case("ingress without default endpoint", "ingress: [" + ingress(HTTP90) + "]\n" + ALL_HOSTS, True, False),
    Case(
        "ingress with invalid default endpoint in IPv4",
        "ingress: [" + ingress(HTTP90, "1.1.1.1:90") + "]",
        False,
        False,
        "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
        "unix://filepath or unset",
    ),
    Case(
        "ingress with invalid default endpoint in IPv6",
        "ingress: [" + ingress(HTTP90, "[1:1:1:1:1:1:1:1]:90") + "]",
        False,
        False,
    ),
    Case(
        "ingress with invalid default endpoint uds",
        "ingress: [" + ingress(HTTP90, "unix:///") + "]\n" + ALL_HOSTS,
        False,
        False,
    ),
    Case(
        "ingress with invalid default endpoint port in IPv4",
        "ingress: [" + ingress(HTTP90, "127.0.0.1:hi") + "]\n" + ALL_HOSTS,
        False,
        False,
        "sidecar: defaultEndpoint port (hi) is not a number",
    ),
    Case(
        "ingress with invalid default endpoint port in IPv6",
        "ingress: [" + ingress(HTTP90, "[::1]:hi") + "]\n" + ALL_HOSTS,
        False,
        False,
    ),
    *both_ips(
        "valid ingress and egress", lambda ep: "ingress: [" + ingress(HTTP90, ep) + "]\n" + ALL_HOSTS, True
    ),
    *both_ips("valid ingress and empty egress", lambda ep: "ingress: [" + ingress(HTTP90, ep) + "]", True),
    Case("empty", "{}", False, False),
    Case("just outbound traffic policy", "outboundTrafficPolicy: {mode: ALLOW_ANY}", True, False),
    *both_ips(
        "empty protocol",
        lambda ep: "ingress: [" + ingress("{number: 90, name: foo}", ep) + "]\n" + ALL_HOSTS,
        True,
    ),
    Case(
        "ALLOW_ANY sidecar egress policy with no egress proxy ",
        "outboundTrafficPolicy: {mode: ALLOW_ANY}\n" + ALL_HOSTS,
        True,
        False,
    ),
    Case(
        "sidecar egress proxy with RESGISTRY_ONLY(default)",
        "outboundTrafficPolicy: {" + EGRESS_PROXY + "}\n" + ALL_HOSTS,
        False,
        False,
        "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
    ),
    Case(
        "sidecar egress proxy with ALLOW_ANY",
        "outboundTrafficPolicy: {mode: ALLOW_ANY, " + EGRESS_PROXY + "}\n" + ALL_HOSTS,
        True,
        False,
    ),
    Case(
        "sidecar egress proxy with ALLOW_ANY, service hostname invalid fqdn",
        "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: 'foobar*123', subset: shiny, "
        "port: {number: 5000}}}\n" + ALL_HOSTS,
        False,
        False,
    ),
    Case(
        "sidecar egress proxy(without Port) with ALLOW_ANY",
        "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: foo.bar, subset: shiny}}\n" + ALL_HOSTS,
        False,
        False,
        "sidecar: egress_proxy port must be non-nil",
    ),
    # ``OutboundTrafficPolicy_Mode(3)`` is the mesh-only ALLOW_ANY_DYNAMIC_DNS value.
    Case(
        "ALLOW_ANY_DYNAMIC_DNS rejected in sidecar",
        "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\n" + ALL_HOSTS,
        False,
        False,
    ),
    Case("sidecar egress only one wildcarded", "egress: [" + egress("*/*", "test/a.com") + "]", True, True),
    Case("sidecar egress wildcarded ns", "egress: [" + egress("*/b.com", "test/a.com") + "]", True, False),
    Case(
        "sidecar egress duplicated with wildcarded same namespace",
        "egress: [" + egress("test/*", "test/a.com") + "]",
        True,
        True,
    ),
    Case("invalid partial wildcard", "egress: [" + egress("test/*a.com") + "]", False, False),
    Case(
        "sidecar egress duplicated with wildcarded same namespace .",
        "egress: [" + egress("./*", "bar/a.com") + "]",
        True,
        True,
    ),
    *both_ips(
        "ingress tls mode set to ISTIO_MUTUAL",
        lambda ep: ingress_tls(ep, "{mode: ISTIO_MUTUAL}", HTTP90),
        False,
    ),
    *both_ips(
        "ingress tls mode set to ISTIO_AUTO_PASSTHROUGH",
        lambda ep: ingress_tls(ep, "{mode: AUTO_PASSTHROUGH}", HTTP90),
        False,
    ),
    *both_ips("ingress tls invalid protocol", lambda ep: ingress_tls(ep, "{mode: SIMPLE}"), False),
    *both_ips(
        "ingress tls httpRedirect is not supported",
        lambda ep: ingress_tls(ep, "{mode: SIMPLE, httpsRedirect: true}"),
        False,
    ),
    *both_ips(
        "ingress tls SAN entries are not supported",
        lambda ep: ingress_tls(ep, "{mode: SIMPLE, subjectAltNames: [httpbin.com]}"),
        False,
    ),
    *both_ips(
        "ingress tls credentialName is not supported",
        lambda ep: ingress_tls(ep, "{mode: SIMPLE, credentialName: secret-name}"),
        False,
    ),
    *both_ips(
        "ingress tls credentialNames is not supported",
        lambda ep: ingress_tls(ep, "{mode: SIMPLE, credentialNames: [secret-name]}"),
        False,
    ),
    *both_ips(
        "ingress tls tlsCertificates is not supported",
        lambda ep: ingress_tls(
            ep,
            "{mode: SIMPLE, tlsCertificates: [{serverCertificate: /etc/istio/ingress-certs/tls.crt, "
            "privateKey: /etc/istio/ingress-certs/tls.key}, {serverCertificate: /etc/istio/ingress-certs/tls2.crt, "
            "privateKey: /etc/istio/ingress-certs/tls2.key}]}",
        ),
        False,
    ),
    Case("valid inbound connection pool", "inboundConnectionPool: " + POOL, True, False),
    Case(
        "valid port-level connection pool with top level default",
        "ingress: [{port: " + HTTP90 + ", connectionPool: " + POOL + "}]\ninboundConnectionPool: " + POOL,
        True,
        False,
    ),
    Case(
        "valid port-level connection pool without a top level default",
        "ingress: [{port: " + HTTP90 + ", connectionPool: " + POOL + "}]",
        True,
        False,
    ),
    Case(
        "warn http connection settings on tcp port",
        "ingress: [{port: " + TCP90 + ", connectionPool: " + POOL + "}]",
        True,
        True,
    ),
    Case(
        "invalid top level connection pool",
        "inboundConnectionPool: {}",
        False,
        False,
        "connection pool must have at least one field",
    ),
    Case(
        "invalid port-level connection pool",
        "ingress: [{port: " + TCP90 + ", connectionPool: {}}]",
        False,
        False,
        "connection pool must have at least one field",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in SIDECAR])
def test_istio_sidecar_case(case: Case) -> None:
    assert_verdict(case.name, sidecar(case.spec), case.valid, case.fragment, case.warn)
