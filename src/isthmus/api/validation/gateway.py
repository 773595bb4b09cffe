"""Gateway rules (Istio ``ValidateGateway``, ``validateServer``, ``validateTLSOptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api.paths import join
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    Report,
    is_dns1123_label,
    is_hash_pin,
    is_spki_pin,
    is_valid_cipher_suite,
    parse_protocol,
    q,
    validate_ip_address,
    validate_namespace_slash_wildcard_hostname,
    validate_port,
    validate_unix_address,
)

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

UNIX_PREFIX = "unix://"
# Istio marks the Gateways it generates from Gateway API Gateways with this annotation; their servers may
# use "~/host" (no routes attached), which a hand-written Gateway may not.
GATEWAY_SEMANTICS_ANNOTATION = "internal.istio.io/gateway-semantics"


@register("Gateway")
def validate_gateway(res: Resource, r: Report) -> None:
    gw: n.Gateway = res.spec  # type: ignore[assignment]
    gateway_semantics = res.annotations.get(GATEWAY_SEMANTICS_ANNOTATION) == "gateway"
    # generated Gateways keep their Gateway API name, which may hold dots
    if not is_dns1123_label(res.name) and not gateway_semantics:
        r.error("metadata.name", f"invalid gateway name: {q(res.name)}")
    if not gw.servers:
        r.error("spec.servers", "gateway must have at least one server")
    port_names: set[str] = set()
    for i, server in enumerate(gw.servers):
        p = f"spec.servers[{i}]"
        _validate_server(r, p, server, gateway_semantics)
        if server.port.name in port_names:
            r.error(
                join(p, "port", "name"),
                f"port names in servers must be unique: duplicate name {server.port.name}",
            )
        port_names.add(server.port.name)
        proto = parse_protocol(server.port.protocol)
        if proto not in HTTP_PROTOCOLS and server.tls is not None and server.tls.https_redirect:
            r.warn(join(p, "tls", "httpsRedirect"), "tls.httpsRedirect should only be used with http servers")


def _validate_server(r: Report, p: str, server: n.Server, gateway_semantics: bool = False) -> None:
    if not server.hosts:
        r.error(join(p, "hosts"), "server config must contain at least one host")
    for i, host in enumerate(server.hosts):
        if gateway_semantics and host.startswith("~/"):
            # "~" is allowed as the namespace; the hostname part is checked as for any namespace
            host = "*/" + host[2:]
        r.errors(join(p, "hosts", i), validate_namespace_slash_wildcard_hostname(host, True))
    port_ok = _validate_server_port(r, join(p, "port"), server.port, server.bind)
    bind = server.bind or ""
    if bind.startswith(UNIX_PREFIX):
        r.error(join(p, "bind"), validate_unix_address(bind[len(UNIX_PREFIX) :]))
        if server.port.number != 0:
            r.error(join(p, "port", "number"), "port number must be 0 for unix domain socket")
    elif bind:
        r.error(join(p, "bind"), validate_ip_address(bind))
    validate_server_tls(r, join(p, "tls"), server.tls)
    if port_ok:
        proto = parse_protocol(server.port.protocol)
        tls = server.tls
        if proto in TLS_PROTOCOLS and tls is None:
            r.error(p, "server must have TLS settings for HTTPS/TLS protocols")
        elif proto not in TLS_PROTOCOLS and tls is not None:
            if proto in HTTP_PROTOCOLS:
                # only an https redirect is allowed on a plain-text HTTP server
                passthrough = tls.mode in (None, "PASSTHROUGH") or tls.mode == "AUTO_PASSTHROUGH"
                if not passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
                    r.error(join(p, "tls"), "server cannot have TLS settings for plain text HTTP ports")
            else:
                r.error(join(p, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports")


def _validate_server_port(r: Report, p: str, port: n.Port, bind: str | None) -> bool:
    before = len(r.issues)
    if parse_protocol(port.protocol) is None:
        r.error(
            join(p, "protocol"),
            f"invalid protocol {q(port.protocol)}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, "
            "REDIS, MYSQL, TCP",
        )
    if port.number > 0 or not (bind or "").startswith(UNIX_PREFIX):
        r.error(join(p, "number"), validate_port(port.number))
    if port.target_port:
        r.error(join(p, "targetPort"), "targetPort has no impact on Gateways")
    if not port.name:
        r.error(join(p, "name"), "port name must be set")
    return len(r.issues) == before


def validate_server_tls(r: Report, p: str, tls: n.ServerTLSSettings | None) -> None:
    """``validateTLSOptions``."""
    if tls is None:
        return
    if tls.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        r.warn(
            join(p, "minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include "
            "compatible ciphers.",
        )
    invalid, seen, dup = set(), set(), set()
    for cs in tls.cipher_suites:
        if not is_valid_cipher_suite(cs):
            invalid.add(cs)
        elif cs in seen:
            dup.add(cs)
        seen.add(cs)
    if invalid:
        r.warn(join(p, "cipherSuites"), f"ignoring invalid cipher suites: [{' '.join(sorted(invalid))}]")
    if dup:
        r.warn(join(p, "cipherSuites"), f"ignoring duplicate cipher suites: [{' '.join(sorted(dup))}]")
    # istiod passes pins through and Envoy would NACK the listener; Isthmus serves a pin no certificate
    # matches instead, so say so where the pin is written.
    for i, pin in enumerate(tls.verify_certificate_spki or ()):
        if not is_spki_pin(pin):
            r.warn(
                join(p, "verifyCertificateSpki", i),
                "not a base64-encoded SHA-256 (32 bytes): no client certificate can match it",
            )
    for i, pin in enumerate(tls.verify_certificate_hash or ()):
        if not is_hash_pin(pin):
            r.warn(
                join(p, "verifyCertificateHash", i),
                "not a hex-encoded SHA-256 (64 digits, colons allowed): no client certificate can match it",
            )

    mode = tls.mode or "PASSTHROUGH"
    if mode == "ISTIO_MUTUAL":
        for attr, alias, what in (
            ("server_certificate", "serverCertificate", "server certificate"),
            ("private_key", "privateKey", "private key"),
            ("ca_certificates", "caCertificates", "CA bundle"),
            ("tls_certificates", "tlsCertificates", "tlsCertificates"),
            ("credential_name", "credentialName", "credentialName"),
            ("credential_names", "credentialNames", "credentialNames"),
        ):
            if getattr(tls, attr):
                r.error(join(p, alias), f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
        tls.ca_crl
        or tls.server_certificate
        or tls.private_key
        or tls.ca_certificates
        or tls.tls_certificates
        or tls.credential_name
        or tls.credential_names
    ):
        r.warn(p, f"{mode} mode does not use certificates, they will be ignored")
    sources = sum(
        [
            bool(tls.server_certificate and tls.private_key),
            bool(tls.credential_name),
            bool(tls.credential_names),
            bool(tls.tls_certificates),
        ]
    )
    if sources > 1:
        r.error(
            p,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates "
            "should be specified",
        )
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and (tls.credential_name or tls.credential_names):
        return  # credentials come from a Secret
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        prefix = "SIMPLE TLS" if mode == "SIMPLE" else "MUTUAL TLS"
        if mode != "SIMPLE" and not tls.ca_certificates:
            r.error(join(p, "caCertificates"), f"{prefix} requires a client CA bundle")
        if len(tls.tls_certificates) > 2:
            r.warn(join(p, "tlsCertificates"), f"{prefix} can support up to 2 server certificates")
        certs = tls.tls_certificates or [
            n.ServerTLSCertificate(server_certificate=tls.server_certificate, private_key=tls.private_key)
        ]
        for i, cert in enumerate(certs):
            cp = join(p, "tlsCertificates", i) if tls.tls_certificates else p
            if not cert.server_certificate:
                r.error(join(cp, "serverCertificate"), f"{prefix} requires a server certificate")
            if not cert.private_key:
                r.error(join(cp, "privateKey"), f"{prefix} requires a private key")
    if tls.ca_crl:
        if tls.credential_name:
            r.error(
                join(p, "caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            )
        if mode == "SIMPLE":
            r.error(join(p, "caCrl"), "CRL is not supported with SIMPLE TLS")
