"""Host names as Istio compares them (`pkg/config/host/name.go`) and short-name resolution."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

DOMAIN_SUFFIX = "cluster.local"


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def matches(a: str, b: str) -> bool:
    """True when the two names overlap (either may be a wildcard)."""
    aw, bw = is_wildcard(a), is_wildcard(b)
    if aw and bw:
        if len(a) < len(b):
            return b[1:].endswith(a[1:])
        return a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def subset_of(a: str, b: str) -> bool:
    """True when every name `a` covers is covered by `b`."""
    aw, bw = is_wildcard(a), is_wildcard(b)
    if aw:
        if not bw or len(a) < len(b):
            return False
        return a[1:].endswith(b[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def most_specific_match(host: str, candidates: Iterable[str]) -> str | None:
    """Istio's MostSpecificHostMatch: an exact match, else the longest wildcard that covers `host`."""
    best: str | None = None
    for cand in candidates:
        if cand == host:
            return cand
        if is_wildcard(cand) and subset_of(host, cand) and (best is None or len(cand) > len(best)):
            best = cand
    return best


# What an address string can hold: IPv4 is ASCII digits and dots only, IPv6 always has a colon.
_IPV4_CHARS = frozenset("0123456789.")


def is_ip(host: str) -> bool:
    if ":" not in host and not _IPV4_CHARS.issuperset(host):
        # A host name (the usual case, once per service and port in every sidecar table): decided without
        # ipaddress's ValueError, which costs more than the rest of building the service's domains.
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_short_name(host: str, namespace: str, domain: str = DOMAIN_SUFFIX) -> str:
    """Istio's ResolveShortnameToFQDN: only a dotless name gets `.<ns>.svc.<domain>` appended."""
    if not host or host == "*" or is_ip(host) or "." in host:
        return host
    return f"{host}.{namespace}.svc.{domain}"


def resolve_gateway_name(name: str, namespace: str) -> str:
    """`gw` -> `ns/gw`; the legacy FQDN form `gw.ns.svc.cluster.local` -> `ns/gw`; `mesh` stays."""
    if name == "mesh":
        return name
    if "/" in name:
        ns, _, gw = name.partition("/")
        return f"{namespace}/{gw}" if ns == "." else name
    if "." in name:
        parts = name.split(".")
        return f"{parts[1]}/{parts[0]}"
    return f"{namespace}/{name}"
