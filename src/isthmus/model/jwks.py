"""The JWKS a snapshot carries for RequestAuthentication rules whose keys the control plane fetches.

istiod's default (PILOT_JWT_ENABLE_REMOTE_JWKS=false, JwksFetchMode Istiod) fetches every `jwksUri` itself
(`pilot/pkg/model/jwks_resolver.go`) and inlines the keys as the provider's `local_jwks`; a rule without
`jwksUri` and without `jwks` gets its URI from the issuer's OpenID discovery document. Here the fetching
is a source (`config.jwks_resolver`), off the generation path; the snapshot holds what it had at build
time, keyed like istiod's cache (issuer, jwksUri), and the generator reads it, pure.
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


def is_fetched_uri(uri: str) -> bool:
    """Whether the control plane fetches this jwksUri over the network (file:// is read, not fetched)."""
    lowered = uri.lower()
    return lowered.startswith(("http://", "https://"))


def rule_key(rule: Any) -> JwksKey | None:
    """The key a rule's keys are fetched under; None when no fetch is needed (inline `jwks`, a file://
    URI, or no issuer and no URI, which validation refuses)."""
    if rule.jwks:
        return None
    uri = rule.jwks_uri or ""
    if uri:
        return (rule.issuer or "", uri) if is_fetched_uri(uri) else None
    # istiod's GetPublicKey: no jwksUri -> OpenID discovery from the issuer.
    return (rule.issuer, "") if rule.issuer else None


def wanted(configs: Mapping[str, Iterable[Any]]) -> dict[JwksKey, float]:
    """Every key the RequestAuthentications need, with the fetch timeout (seconds) of its rule. Several
    rules with one key: the last one's timeout, as istiod's cache entry keeps the last GetPublicKey's."""
    out: dict[JwksKey, float] = {}
    for cfg in configs.get("RequestAuthentication", ()):
        for rule in cfg.spec.jwt_rules or ():
            key = rule_key(rule)
            if key is not None:
                out[key] = to_seconds(rule.timeout, DEFAULT_FETCH_TIMEOUT)
    return out
