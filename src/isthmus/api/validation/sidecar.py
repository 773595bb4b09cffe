"""Sidecar rules (Istio ``ValidateSidecar``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api.paths import join
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    Report,
    parse_protocol,
    q,
    validate_fqdn,
    validate_ip_address,
    validate_namespace_slash_wildcard_hostname,
    validate_port,
    validate_port_name,
    validate_protocol,
    validate_unix_address,
)
from isthmus.api.validation.destinationrule import validate_connection_pool
from isthmus.api.validation.gateway import validate_server_tls
from isthmus.api.validation.virtualservice import validate_destination

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

UNIX_PREFIX = "unix://"


def _split_host_port(s: str) -> tuple[str, str] | None:
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or s[end + 1 : end + 2] != ":":
            return None
        return s[1:end], s[end + 2 :]
    host, sep, port = s.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


@register("Sidecar")
def validate_sidecar(res: Resource, r: Report) -> None:
    sc: n.Sidecar = res.spec  # type: ignore[assignment]
    if sc.workload_selector is not None:
        labels = sc.workload_selector.labels
        for k, v in labels.items():
            if k == "":
                r.error("spec.workloadSelector.labels", f'empty key is not supported in selector: "{k}={v}"')
            if "*" in k or "*" in v:
                r.error(
                    join("spec.workloadSelector.labels", k),
                    f'wildcard is not supported in selector: "{k}={v}"',
                )
        if not labels:
            r.warn(
                "spec.workloadSelector",
                "sidecar: workload selector specified without labels, will be applied to all services in namespace",
            )
    if (
        not sc.egress
        and not sc.ingress
        and sc.outbound_traffic_policy is None
        and sc.inbound_connection_pool is None
    ):
        r.error("spec", "sidecar: empty configuration provided")
        return

    ports: set[int] = set()
    for i, ing in enumerate(sc.ingress):
        p = f"spec.ingress[{i}]"
        port = ing.port
        if port.target_port:
            r.error(join(p, "port", "targetPort"), "targetPort has no impact on Sidecars")
        if port.name:
            r.error(join(p, "port", "name"), validate_port_name(port.name))
        r.error(join(p, "port", "protocol"), validate_protocol(port.protocol))
        r.error(join(p, "port", "number"), validate_port(port.number or 0))
        if ing.bind:
            r.error(join(p, "bind"), validate_ip_address(ing.bind))
        if (port.number or 0) in ports:
            r.error(join(p, "port", "number"), "sidecar: ports on IP bound listeners must be unique")
        ports.add(port.number or 0)
        ep = ing.default_endpoint
        if ep:
            epp = join(p, "defaultEndpoint")
            if ep.startswith(UNIX_PREFIX):
                r.error(epp, validate_unix_address(ep[len(UNIX_PREFIX) :]))
            else:
                hp = _split_host_port(ep)
                if hp is None:
                    r.error(epp, f"address {ep}: missing port in address")
                else:
                    host, sport = hp
                    if host not in ("", "127.0.0.1", "0.0.0.0", "::1", "::"):
                        r.error(
                            epp,
                            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,"
                            "[::]:port,unix://filepath or unset",
                        )
                    if sport.isdigit():
                        r.error(epp, validate_port(int(sport)))
                    else:
                        r.error(epp, f"sidecar: defaultEndpoint port ({sport}) is not a number")
        tls = ing.tls
        if tls is not None:
            tp = join(p, "tls")
            if tls.subject_alt_names:
                r.error(
                    join(tp, "subjectAltNames"), "sidecar: subjectAltNames is not supported in ingress tls"
                )
            if tls.https_redirect:
                r.error(join(tp, "httpsRedirect"), "sidecar: httpsRedirect is not supported")
            if tls.credential_name:
                r.error(join(tp, "credentialName"), "sidecar: credentialName is not currently supported")
            if tls.credential_names:
                r.error(join(tp, "credentialNames"), "sidecar: credentialNames is not currently supported")
            if tls.tls_certificates:
                r.error(join(tp, "tlsCertificates"), "sidecar: tls_certificates is not currently supported")
            if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                r.error(
                    join(tp, "mode"),
                    f"configuration is invalid: cannot set mode to {tls.mode} in sidecar ingress tls",
                )
            if parse_protocol(port.protocol) not in TLS_PROTOCOLS:
                r.error(tp, "server cannot have TLS settings for non HTTPS/TLS ports")
            validate_server_tls(r, tp, tls)
        validate_connection_pool(r, join(p, "connectionPool"), ing.connection_pool)
        if (
            ing.connection_pool is not None
            and ing.connection_pool.http is not None
            and parse_protocol(port.protocol) not in HTTP_PROTOCOLS
        ):
            r.warn(
                join(p, "connectionPool", "http"),
                f"sidecar: HTTP connection pool settings are configured for port {port.number} ({q(port.name or '')}) "
                f"but its protocol is not HTTP ({port.protocol or ''}); only TCP settings will apply",
            )
    validate_connection_pool(r, "spec.inboundConnectionPool", sc.inbound_connection_pool)

    ports = set()
    uds: set[str] = set()
    catch_all_found = False
    for i, eg in enumerate(sc.egress):
        p = f"spec.egress[{i}]"
        if eg.port is None:
            if not catch_all_found:
                if i == len(sc.egress) - 1:
                    catch_all_found = True
                else:
                    r.error(
                        p,
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    )
            else:
                r.error(p, "sidecar: egress can have only one listener with empty port")
                continue
        else:
            port = eg.port
            bind = eg.bind or ""
            if port.target_port:
                r.error(join(p, "port", "targetPort"), "targetPort has no impact on Sidecars")
            if port.name:
                r.error(join(p, "port", "name"), validate_port_name(port.name))
            r.error(join(p, "port", "protocol"), validate_protocol(port.protocol))
            if not port.number:
                if not bind.startswith(UNIX_PREFIX):
                    r.error(
                        join(p, "bind"),
                        "sidecar: ports with 0 value must have a unix domain socket bind address",
                    )
                else:
                    r.error(join(p, "bind"), validate_unix_address(bind[len(UNIX_PREFIX) :]))
                if eg.capture_mode not in (None, "DEFAULT", "NONE"):
                    r.error(
                        join(p, "captureMode"),
                        "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
                    )
                if bind in uds:
                    r.error(
                        join(p, "bind"), "sidecar: unix domain socket values for listeners must be unique"
                    )
                uds.add(bind)
            else:
                r.error(join(p, "port", "number"), validate_port(port.number))
                if bind:
                    r.error(join(p, "bind"), validate_ip_address(bind))
                if port.number in ports:
                    r.error(join(p, "port", "number"), "sidecar: ports on IP bound listeners must be unique")
                ports.add(port.number)
        if not eg.hosts:
            r.error(join(p, "hosts"), "sidecar: egress listener must contain at least one host")
            continue
        by_ns: dict[str, set[str]] = {}
        for j, host in enumerate(eg.hosts):
            hp = join(p, "hosts", j)
            ns, sep, svc = host.partition("/")
            # Exclusions ("~ns/*", "~/host") remove hosts from the import set, so they never duplicate one.
            if sep and not ns.startswith("~"):
                if ns == ".":
                    ns = res.namespace
                seen = by_ns.setdefault(ns, set())
                if svc != "*":
                    if svc in seen or "*" in seen:
                        r.warn(hp, f"duplicated egress host: {host}")
                elif seen:
                    r.warn(hp, f"duplicated egress host: {host}")
                seen.add(svc)
            if sep and ns.startswith("~") and ns != "~":
                # "~ns/host" excludes host of namespace ns: the rest must be a valid import.
                r.errors(hp, validate_namespace_slash_wildcard_hostname(host[1:], False))
            else:
                r.errors(hp, validate_namespace_slash_wildcard_hostname(host, False))
        if "*" in by_ns.get("*", set()) and len(by_ns) != 1:
            r.warn(join(p, "hosts"), "`*/*` host select all resources, no other hosts can be added")

    otp = sc.outbound_traffic_policy
    if otp is not None and otp.egress_proxy is not None:
        p = "spec.outboundTrafficPolicy"
        if otp.mode != "ALLOW_ANY":
            r.error(
                join(p, "egressProxy"),
                "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
            )
            return
        r.error(join(p, "egressProxy", "host"), validate_fqdn(otp.egress_proxy.host))
        if otp.egress_proxy.port is None:
            r.error(join(p, "egressProxy", "port"), "sidecar: egress_proxy port must be non-nil")
            return
        validate_destination(r, join(p, "egressProxy"), otp.egress_proxy)
