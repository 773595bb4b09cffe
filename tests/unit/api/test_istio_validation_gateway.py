"""Istio's Gateway validation tests (``pkg/config/validation/validation_test.go``: TestValidateGateway,
TestValidateK8sGateway, TestValidateServer, TestValidateServerPort, TestValidateTlsOptions), ported as
YAML resources.

Each case is (Istio case name, YAML, valid, expected error fragment, expected warning). ``valid`` means no
message of level "Error". The error fragment is checked when Istio's test checks one. The warning is a
fragment that some "Warning" must contain, ``False`` when Istio's test asserts there is no warning, or
``None`` when Istio's test does not look at warnings.
"""

from __future__ import annotations

import textwrap

import pytest
from istio_verdicts import assert_verdict

Case = tuple[str, str, bool, str | None, str | bool | None]


def gateway(servers: str, meta: str = "") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        f"metadata: {{name: foo, namespace: bar{meta}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(servers), "  ")
    )


def server(body: str) -> str:
    """One server of a Gateway (Istio's tests call ``validateServer`` directly)."""
    return gateway("servers:\n- " + textwrap.indent(textwrap.dedent(body).strip(), "  ").lstrip())


def port(port_: str, bind: str = "") -> str:
    """A server around a port (Istio's tests call ``validateServerPort`` directly)."""
    extra = f"\nbind: {bind}" if bind else ""
    return server(f"hosts: [foo.bar.com]\nport: {port_}{extra}")


def tls(settings: str) -> str:
    """An HTTPS server around TLS settings (Istio's tests call ``validateTLSOptions`` directly)."""
    return server(
        f"hosts: [foo.bar.com]\nport: {{number: 443, name: https, protocol: HTTPS}}\ntls: {settings}"
    )


def check(case: Case) -> None:
    name, text, valid, fragment, warning = case
    assert_verdict(name, text, valid, fragment, warning, fragment_in_path=True)


HAPPY_PORT = "{name: name1, number: 7, protocol: http}"

# TestValidateGateway. Skipped: "invalid message" (a Server passed as a Gateway: not expressible in YAML).
GATEWAY_CASES: list[Case] = [
    ("empty", gateway("{}"), False, "server", None),
    ("happy domain", gateway(f"servers: [{{hosts: [foo.bar.com], port: {HAPPY_PORT}}}]"), True, None, False),
    (
        "happy multiple servers",
        gateway(f"servers: [{{hosts: [foo.bar.com], port: {HAPPY_PORT}}}]"),
        True,
        None,
        False,
    ),
    (
        "happy k8s gateway-api server with no attached routes",
        gateway(f"servers: [{{hosts: [~/foo.bar.com], port: {HAPPY_PORT}}}]"),
        False,
        "invalid namespace value",
        None,
    ),
    (
        "invalid port",
        gateway("servers: [{hosts: [foo.bar.com], port: {name: name1, number: 66000, protocol: http}}]"),
        False,
        "port",
        None,
    ),
    (
        "duplicate port names",
        gateway(
            """
            servers:
            - {hosts: [foo.bar.com], port: {name: foo, number: 80, protocol: http}}
            - {hosts: [scooby.doo.com], port: {name: foo, number: 8080, protocol: http}}
            """
        ),
        False,
        "port names",
        None,
    ),
    # Istio's port here has no name, which the CRD schema (port.name is required) rejects before the webhook
    # sees the bad domain; the verdict is the same.
    (
        "invalid domain",
        gateway("servers: [{hosts: [foo.*.bar.com], port: {number: 7, protocol: http}}]"),
        False,
        "name",
        None,
    ),
    (
        "valid httpsRedirect",
        gateway(
            "servers: [{hosts: [bar.com], port: {name: http, number: 80, protocol: http}, "
            "tls: {httpsRedirect: true}}]"
        ),
        True,
        None,
        False,
    ),
    (
        "invalid https httpsRedirect",
        gateway(
            "servers: [{hosts: [bar.com], port: {name: https, number: 80, protocol: https}, "
            "tls: {httpsRedirect: true}}]"
        ),
        True,
        None,
        "tls.httpsRedirect should only be used with http servers",
    ),
    (
        "invalid partial wildcard",
        gateway(
            "servers: [{hosts: ['*bar.com'], port: {name: tls, number: 443, protocol: tls}, "
            "tls: {mode: ISTIO_MUTUAL}}]"
        ),
        False,
        'partial wildcard "*bar.com" not allowed',
        None,
    ),
]

# TestValidateServer (each case is one server of an otherwise valid Gateway).
SERVER_CASES: list[Case] = [
    ("empty (host)", server("{}"), False, "host", None),
    ("empty (port)", server("{}"), False, "port", None),
    (
        "happy",
        server("hosts: [foo.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        True,
        None,
        None,
    ),
    ("happy ip", server("hosts: [1.1.1.1]\nport: {number: 7, name: http, protocol: http}"), True, None, None),
    (
        "happy ns/name",
        server("hosts: [ns1/foo.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        True,
        None,
        None,
    ),
    (
        "happy */name",
        server("hosts: ['*/foo.bar.com']\nport: {number: 7, name: http, protocol: http}"),
        True,
        None,
        None,
    ),
    (
        "happy ./name",
        server("hosts: [./foo.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        True,
        None,
        None,
    ),
    (
        "invalid ~/name",
        server("hosts: [~/foo.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        False,
        "namespace",
        None,
    ),
    (
        "invalid domain ns/name format",
        server("hosts: [ns1/foo.*.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        False,
        "domain",
        None,
    ),
    (
        "invalid domain",
        server("hosts: [foo.*.bar.com]\nport: {number: 7, name: http, protocol: http}"),
        False,
        "domain",
        None,
    ),
    (
        "invalid short name host",
        server("hosts: [foo]\nport: {number: 7, name: http, protocol: http}"),
        False,
        "short names",
        None,
    ),
    (
        "invalid port",
        server("hosts: [foo.bar.com]\nport: {number: 66000, name: http, protocol: http}"),
        False,
        "port",
        None,
    ),
    (
        "invalid tls options",
        server("hosts: [foo.bar.com]\nport: {number: 1, name: http, protocol: http}\ntls: {mode: SIMPLE}"),
        False,
        "TLS",
        None,
    ),
    (
        "no tls on HTTPS",
        server("hosts: [foo.bar.com]\nport: {number: 10000, name: https, protocol: https}"),
        False,
        "must have TLS",
        None,
    ),
    (
        "tls on HTTP",
        server(
            "hosts: [foo.bar.com]\nport: {number: 10000, name: http, protocol: http}\ntls: {mode: SIMPLE}"
        ),
        False,
        "cannot have TLS",
        None,
    ),
    (
        "tls redirect on HTTP",
        server(
            "hosts: [foo.bar.com]\nport: {number: 10000, name: http, protocol: http}\ntls: {httpsRedirect: true}"
        ),
        True,
        None,
        None,
    ),
    (
        "bind ip",
        server("hosts: [foo.bar.com]\nport: {number: 7, name: http, protocol: http}\nbind: 127.0.0.1"),
        True,
        None,
        None,
    ),
    (
        "bind unix path with invalid port",
        server("hosts: [foo.bar.com]\nport: {number: 7, name: http, protocol: http}\nbind: 'unix://@foobar'"),
        False,
        "port number must be 0 for unix domain socket",
        None,
    ),
    (
        "bind unix path",
        server("hosts: [foo.bar.com]\nport: {number: 0, name: http, protocol: http}\nbind: 'unix://@foobar'"),
        True,
        None,
        None,
    ),
    (
        "bind bad ip",
        server("hosts: [foo.bar.com]\nport: {number: 0, name: http, protocol: http}\nbind: foo.bar"),
        False,
        "foo.bar is not a valid IP",
        None,
    ),
]

# TestValidateServerPort (each port is on a server with a valid host).
SERVER_PORT_CASES: list[Case] = [
    # Istio's webhook says "invalid protocol" / "port name must be set"; the CRD schema (number, protocol and
    # name are required) rejects the empty port first, at those fields.
    ("empty (protocol)", port("{}"), False, "port.protocol", None),
    ("empty (name)", port("{}"), False, "port.name", None),
    ("happy", port("{protocol: http, number: 1, name: Henry}"), True, None, None),
    ("invalid protocol", port("{protocol: kafka, number: 1, name: Henry}"), False, "invalid protocol", None),
    ("invalid number", port("{protocol: http, number: 1073741824, name: http}"), False, "port number", None),
    ("name, no number", port("{protocol: http, number: 0, name: Henry}"), False, "port number", None),
    (
        "name, no number, uds",
        port("{protocol: http, number: 0, name: Henry}", bind="'uds:///tmp'"),
        False,
        "port number",
        None,
    ),
]

PICARD = "serverCertificate: Captain Jean-Luc Picard"
KHAN = "privateKey: Khan Noonien Singh"
RIKER = "caCertificates: Commander William T. Riker"


def certs(*pairs: tuple[str, str]) -> str:
    return "[" + ", ".join("{" + ", ".join(p for p in pair if p) + "}" for pair in pairs) + "]"


THREE_CERTS = certs(
    (PICARD, KHAN),
    ("serverCertificate: Commander William T. Riker", "privateKey: Commander William T. Riker"),
    ("serverCertificate: Lieutenant Commander Data", "privateKey: Lieutenant Commander Data"),
)
TWO_CERTS = certs(
    (PICARD, KHAN),
    ("serverCertificate: Lieutenant Commander Data", "privateKey: Lieutenant Commander Data"),
)
RIKER_PAIR = ("serverCertificate: Commander William T. Riker", "privateKey: Commander William T. Riker")

# TestValidateTlsOptions (each TLS block is on an HTTPS server).
TLS_CASES: list[Case] = [
    ("empty", tls("{}"), True, None, False),
    ("simple", tls(f"{{mode: SIMPLE, {PICARD}, {KHAN}}}"), True, None, False),
    ("simple with client bundle", tls(f"{{mode: SIMPLE, {PICARD}, {KHAN}, {RIKER}}}"), True, None, False),
    ("simple sds with client bundle", tls("{mode: SIMPLE, credentialName: sds-name}"), True, None, False),
    (
        "simple sds with client bundle but with server cert",
        tls(f"{{mode: SIMPLE, {PICARD}, {KHAN}, credentialName: sds-name}}"),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    ("simple no server cert", tls(f"{{mode: SIMPLE, {KHAN}}}"), False, "server certificate", False),
    ("simple no private key", tls(f"{{mode: SIMPLE, {PICARD}}}"), False, "private key", False),
    (
        "simple more than 2 certs",
        tls(f"{{mode: SIMPLE, tlsCertificates: {THREE_CERTS}}}"),
        True,
        None,
        "SIMPLE TLS can support up to 2 server certificates",
    ),
    (
        "simple with both server cert and tls certs",
        tls(f"{{mode: SIMPLE, {PICARD}, {KHAN}, tlsCertificates: {TWO_CERTS}}}"),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    (
        "simple 2 certs with missing certificate",
        tls(
            "{mode: SIMPLE, tlsCertificates: "
            + certs(("privateKey: Commander William T. Riker", ""), RIKER_PAIR)
            + "}"
        ),
        False,
        "server certificate",
        False,
    ),
    (
        "simple 2 certs with missing private key",
        tls("{mode: SIMPLE, tlsCertificates: " + certs((PICARD, ""), RIKER_PAIR) + "}"),
        False,
        "private key",
        False,
    ),
    (
        "simple sds no server cert",
        tls(f"{{mode: SIMPLE, {KHAN}, credentialName: sds-name}}"),
        True,
        None,
        False,
    ),
    (
        "simple sds no private key",
        tls(f"{{mode: SIMPLE, {PICARD}, credentialName: sds-name}}"),
        True,
        None,
        False,
    ),
    ("mutual", tls(f"{{mode: MUTUAL, {PICARD}, {KHAN}, {RIKER}}}"), True, None, False),
    ("mutual sds", tls(f"{{mode: MUTUAL, {RIKER}, credentialName: sds-name}}"), True, None, False),
    (
        "mutual sds with credential name and server cert",
        tls(f"{{mode: MUTUAL, {PICARD}, {KHAN}, {RIKER}, credentialName: sds-name}}"),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    (
        "mutual sds with credential name and tls certs",
        tls(f"{{mode: MUTUAL, {RIKER}, tlsCertificates: {certs((PICARD, KHAN))}, credentialName: sds-name}}"),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    ("mutual no server cert", tls(f"{{mode: MUTUAL, {KHAN}, {RIKER}}}"), False, "server certificate", False),
    (
        "credential names and certificates",
        tls(
            "{mode: MUTUAL, serverCertificate: /etc/istio/certs/server/cert, "
            "privateKey: /etc/istio/certs/server/key, credentialNames: [server-certs]}"
        ),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    (
        "credential names and tls certificates",
        tls(
            "{mode: MUTUAL, tlsCertificates: [{serverCertificate: /etc/istio/certs/server/cert, "
            "privateKey: /etc/istio/certs/server/key, caCertificates: /etc/istio/certs/server/cacert2}], "
            "credentialNames: [server-certs]}"
        ),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    (
        "only tls certificates",
        tls(
            "{mode: MUTUAL, tlsCertificates: [{serverCertificate: /etc/istio/certs/server/cert, "
            "privateKey: /etc/istio/certs/server/key}], caCertificates: /etc/istio/certs/server/cacert2}"
        ),
        True,
        None,
        False,
    ),
    (
        "mutual sds no server cert",
        tls(f"{{mode: MUTUAL, {KHAN}, {RIKER}, credentialName: sds-name}}"),
        True,
        None,
        False,
    ),
    (
        "mutual no client CA bundle",
        tls(f"{{mode: MUTUAL, {PICARD}, {KHAN}}}"),
        False,
        "client CA bundle",
        False,
    ),
    ("mutual no certs (server)", tls("{mode: MUTUAL}"), False, "server certificate", False),
    ("mutual no certs (key)", tls("{mode: MUTUAL}"), False, "private key", False),
    ("mutual no certs (CA)", tls("{mode: MUTUAL}"), False, "client CA bundle", False),
    (
        "mutual more than 2 certs",
        tls(f"{{mode: MUTUAL, {RIKER}, tlsCertificates: {THREE_CERTS}}}"),
        True,
        None,
        "MUTUAL TLS can support up to 2 server certificates",
    ),
    (
        "mutual with both server cert and tls certs",
        tls(f"{{mode: MUTUAL, {PICARD}, {KHAN}, {RIKER}, tlsCertificates: {TWO_CERTS}}}"),
        False,
        "one of credential_name, credential_names",
        False,
    ),
    (
        "mutual 2 certs with missing certificate",
        tls(
            "{mode: MUTUAL, caCertificates: Lieutenant Commander Data, tlsCertificates: "
            + certs(("privateKey: Commander William T. Riker", ""), RIKER_PAIR)
            + "}"
        ),
        False,
        "server certificate",
        False,
    ),
    (
        "mutual 2 certs with missing private key",
        tls(
            "{mode: MUTUAL, caCertificates: Lieutenant Commander Data, tlsCertificates: "
            + certs((PICARD, ""), RIKER_PAIR)
            + "}"
        ),
        False,
        "private key",
        False,
    ),
    (
        "mutual 2 certs with missing CA certificate",
        tls("{mode: MUTUAL, tlsCertificates: " + certs((PICARD, KHAN), RIKER_PAIR) + "}"),
        False,
        "client CA bundle",
        False,
    ),
    ("optional mutual no certs (server)", tls("{mode: OPTIONAL_MUTUAL}"), False, "server certificate", False),
    ("optional mutual no certs (key)", tls("{mode: OPTIONAL_MUTUAL}"), False, "private key", False),
    ("optional mutual no certs (CA)", tls("{mode: OPTIONAL_MUTUAL}"), False, "client CA bundle", False),
    (
        "pass through sds no certs",
        tls("{mode: PASSTHROUGH, credentialName: sds-name}"),
        True,
        None,
        "PASSTHROUGH mode does not use certificates",
    ),
    (
        "pass through sds crl",
        tls("{mode: PASSTHROUGH, caCrl: scrl}"),
        True,
        None,
        "PASSTHROUGH mode does not use certificates",
    ),
    ("istio_mutual no certs", tls("{mode: ISTIO_MUTUAL}"), True, None, False),
    (
        "istio_mutual with server cert",
        tls(f"{{mode: ISTIO_MUTUAL, {PICARD}}}"),
        False,
        "cannot have associated server cert",
        False,
    ),
    (
        "istio_mutual with client bundle",
        tls(f"{{mode: ISTIO_MUTUAL, {PICARD}, {KHAN}, {RIKER}}}"),
        False,
        "cannot have associated",
        False,
    ),
    (
        "istio_mutual with private key",
        tls(f"{{mode: ISTIO_MUTUAL, {KHAN}}}"),
        False,
        "cannot have associated private key",
        False,
    ),
    (
        "istio_mutual with credential name",
        tls("{mode: ISTIO_MUTUAL, credentialName: some-cred}"),
        False,
        "cannot have associated credentialName",
        False,
    ),
    (
        "invalid cipher suites",
        tls("{mode: SIMPLE, credentialName: sds-name, cipherSuites: [not-a-cipher-suite]}"),
        True,
        None,
        "not-a-cipher-suite",
    ),
    (
        "valid cipher suites",
        tls("{mode: SIMPLE, credentialName: sds-name, cipherSuites: [ECDHE-ECDSA-AES128-SHA]}"),
        True,
        None,
        False,
    ),
    (
        "cipher suites operations",
        tls("{mode: SIMPLE, credentialName: sds-name, cipherSuites: [-ECDHE-ECDSA-AES128-SHA]}"),
        True,
        None,
        False,
    ),
    (
        "duplicate cipher suites",
        tls(
            "{mode: SIMPLE, credentialName: sds-name, "
            "cipherSuites: [ECDHE-ECDSA-AES128-SHA, ECDHE-ECDSA-AES128-SHA]}"
        ),
        True,
        None,
        "ECDHE-ECDSA-AES128-SHA",
    ),
    (
        "invalid cipher suites with invalid config",
        tls("{mode: SIMPLE, cipherSuites: [not-a-cipher-suite]}"),
        False,
        "requires a private key",
        "not-a-cipher-suite",
    ),
    (
        "crl specified for SIMPLE TLS",
        tls("{mode: SIMPLE, caCrl: crl}"),
        False,
        "CRL is not supported with SIMPLE TLS",
        None,
    ),
    (
        "crl specified for CredentialName",
        tls("{mode: SIMPLE, caCrl: crl, credentialName: credential}"),
        True,
        None,
        False,
    ),
    (
        "mutual no server cert (wording)",
        tls(f"{{mode: MUTUAL, {KHAN}, {RIKER}}}"),
        False,
        "MUTUAL TLS requires a server certificate",
        False,
    ),
    (
        "mutual no private key (wording)",
        tls(f"{{mode: MUTUAL, serverCertificate: Khan Noonien Singh, {RIKER}}}"),
        False,
        "MUTUAL TLS requires a private key",
        False,
    ),
    (
        "with CredentialNames",
        tls("{mode: MUTUAL, credentialNames: [credential1, credential2]}"),
        True,
        None,
        False,
    ),
]

# TestValidateK8sGateway: a Gateway generated from a Gateway API Gateway (the internal gateway-semantics
# annotation) may use "~/" hosts, meaning "no routes attached".
K8S_GATEWAY_CASES: list[Case] = [
    (
        "happy k8s gateway-api server with no attached routes",
        gateway(
            f"servers: [{{hosts: [~/foo.bar.com], port: {HAPPY_PORT}}}]",
            meta=", annotations: {internal.istio.io/gateway-semantics: gateway}",
        ),
        True,
        None,
        False,
    ),
]

ALL = {
    "gateway": GATEWAY_CASES,
    "k8s-gateway": K8S_GATEWAY_CASES,
    "server": SERVER_CASES,
    "server-port": SERVER_PORT_CASES,
    "tls": TLS_CASES,
}


@pytest.mark.parametrize(
    "case",
    [c for cases in ALL.values() for c in cases],
    ids=[f"{k}:{c[0]}" for k, cs in ALL.items() for c in cs],
)
def test_istio_gateway_case(case: Case) -> None:
    check(case)
