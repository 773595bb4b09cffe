"""The JWKS a snapshot carries for RequestAuthentication rules whose keys the control plane fetches.

istiod's default (PILOT_JWT_ENABLE_REMOTE_JWKS=false, JwksFetchMode Istiod) fetches every `jwksUri` itself
(`pilot/pkg/model/jwks_resolver.go`) and inlines the keys as the provider's `local_jwks`; a rule without
`jwksUri` and without `jwks` gets its URI from the issuer's OpenID discovery document. Here the fetching
is a source (`config.jwks_resolver`), off the generation path; the snapshot holds what it had at build
time, keyed like istiod's cache (issuer, jwksUri), and the generator reads it, pure. A `file://` jwksUri
(an Isthmus extension) is a key of the same table: the resolver reads the file instead of fetching it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.model.durations import to_seconds

# (issuer, jwksUri): istiod's jwtKey. The URI is empty when it comes from the issuer's discovery document.
JwksKey = tuple[str, str]

# istiod's policy applier: `timeout := 5s` unless the JWTRule sets `timeout`.
DEFAULT_FETCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class JwksEntry:
    """What the resolver has for one key: the fetched body, or why there is none (`pending`: not tried
    yet). A failed refresh keeps the last body (istiod keeps a cached key when a refresh fails) and
    records the error beside it."""

    keys: str | None = None
    error: str | None = None
    pending: bool = False
    uri: str = ""  # the URI fetched (for a discovery key: the discovery document's jwks_uri)


PENDING = JwksEntry(pending=True)


FILE_SCHEME = "file://"


def is_fetched_uri(uri: str) -> bool:
    """Whether the control plane fetches this jwksUri over the network (file:// is read, not fetched)."""
    lowered = uri.lower()
    return lowered.startswith(("http://", "https://"))


def is_file_uri(uri: str) -> bool:
    """Whether this jwksUri names a local file the control plane reads (validation admits the scheme in
    any case, as Go's url.Parse lowercases it)."""
    return uri[: len(FILE_SCHEME)].lower() == FILE_SCHEME


def file_path(uri: str) -> str:
    """The path a file:// jwksUri names: everything after the scheme, as written (no percent-decoding,
    so `file:///etc/jwks.json` is /etc/jwks.json and `file://jwks.json` is relative to the control
    plane's working directory)."""
    return uri[len(FILE_SCHEME) :]


def rule_key(rule: Any) -> JwksKey | None:
    """The key a rule's keys are fetched (or, for a file:// URI, read) under; None when they need
    neither (inline `jwks`, or no issuer and no URI, which validation refuses)."""
    if rule.jwks:
        return None
    uri = rule.jwks_uri or ""
    if uri:
        return (rule.issuer or "", uri) if is_fetched_uri(uri) or is_file_uri(uri) else None
    # istiod's GetPublicKey: no jwksUri -> OpenID discovery from the issuer.
    return (rule.issuer, "") if rule.issuer else None


def wanted(configs: Mapping[str, Iterable[Any]]) -> dict[JwksKey, float]:
    """Every key the RequestAuthentications need, with the fetch timeout (seconds) of its rule (unused
    for a file). Several rules with one key: the last one's timeout, as istiod's cache entry keeps the
    last GetPublicKey's."""
    out: dict[JwksKey, float] = {}
    for cfg in configs.get("RequestAuthentication", ()):
        for rule in cfg.spec.jwt_rules or ():
            key = rule_key(rule)
            if key is not None:
                out[key] = to_seconds(rule.timeout, DEFAULT_FETCH_TIMEOUT)
    return out
