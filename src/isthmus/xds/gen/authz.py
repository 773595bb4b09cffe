"""AuthorizationPolicy -> Envoy RBAC, RequestAuthentication -> jwt_authn, on inbound and gateway listeners.

Follows istiod's `pilot/pkg/security/authz/` (builder.go, model/model.go, model/generator.go): one RBAC
policy per rule named `ns[<ns>]-policy[<name>]-rule[<i>]`; `from` entries ORed into principals, `to`
entries ORed into permissions, fields inside one entry ANDed, values of a field ORed, `not*` fields
negated, `when` conditions ANDed to every principal (source keys) or permission (the others). Filters:
jwt_authn, then CUSTOM (per provider, sorted by name, an RBAC filter in shadow mode marking the requests
its rules match, then that provider's ext_authz enabled by that mark: builder.go, extauthz.go; the rules
of a provider that cannot be used deny instead), AUDIT (RBAC action LOG), DENY, ALLOW; no ALLOW
policy means no ALLOW filter. On TCP chains an HTTP-only field (and anywhere a value istiod's generators
reject, such as a malformed header or claim key) makes an ALLOW rule never match and is dropped from
DENY/AUDIT/CUSTOM rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2

from isthmus.config.store import Config
from isthmus.model import jwks as jwks_model
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.model.virtual_services import config_creation_key
from isthmus.registry.build import labels_match
from isthmus.xds.gen import ext_authz, naming
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.jwks import local_jwks_problem
from isthmus.xds.gen.scope import scope_key

JWT_FILTER = "envoy.filters.http.jwt_authn"
# Where jwt_authn puts the verified payload in the filter's dynamic metadata (istiod's
# filters.EnvoyJwtFilterPayload): RBAC and route matches on claims read it there.
JWT_PAYLOAD = "payload"
# The jwt_authn metadata key of a failed verification's {code, message} (JWTRule.failedStatusInMetadata):
# istio/api#3801 gives a bool, not a key, and no istiod source was at hand to name it; this is ours, read as
# %DYNAMIC_METADATA(envoy.filters.http.jwt_authn:failed_status)%.
JWT_FAILED_STATUS = "failed_status"
RBAC_HTTP = "envoy.filters.http.rbac"
RBAC_NETWORK = "envoy.filters.network.rbac"
DRY_RUN = "istio.io/dry-run"
SPIFFE = "spiffe://"

REQUEST_HEADERS = "request.headers"
# Matches a header whose values may be folded into one comma-separated line (RFC 7230), one value at a time.
INLINE_HEADERS = "request.experimental.inline.headers"
# `when` keys that describe the source: they go on principals; the rest go on permissions.
_PRINCIPAL_KEYS = ("source.", "remote.ip", "request.auth.", REQUEST_HEADERS, INLINE_HEADERS)


class Unusable(Exception):
    """A value istiod's generators reject (model.go checkError): the ALLOW rule holding it is skipped (it
    can only allow less), while a DENY/AUDIT/CUSTOM rule just loses that field (it can only match more)."""


class NotForTcp(Unusable):
    """An HTTP-only field on a TCP filter chain."""


# --- policy selection -------------------------------------------------------------------------------


def _selector(cfg: Config) -> Mapping[str, str] | None:
    sel = cfg.spec.selector
    return sel.match_labels if sel is not None and sel.match_labels else None


def _applies(cfg: Config, namespace: str, labels: Mapping[str, str], root_ns: str) -> bool:
    spec = cfg.spec
    if spec.target_ref is not None or spec.target_refs:
        return False  # Gateway API / waypoint attachment only
    if cfg.namespace not in (namespace, root_ns):
        return False
    sel = _selector(cfg)
    return sel is None or labels_match(sel, labels)


def policies_for(snapshot: Snapshot, kind: str, proxy: Proxy) -> list[Config]:
    root = snapshot.mesh.root_namespace
    return [c for c in snapshot.configs.get(kind, []) if _applies(c, proxy.namespace, proxy.labels, root)]


# --- string matchers ----------------------------------------------------------------------------


# What could make a spliced value an invalid RE2 regex (or change its structure); `.` stays a wildcard, as
# istiod leaves it, so the regex of every usual name is istiod's own.
_RE2_META = frozenset("\\+*?()|[]{}^$")


def _re2_literal(text: str) -> str:
    """`text` spliced into an RE2 regex. istiod splices policy values in unescaped; for the names
    Kubernetes allows that is the same regex, and a value with a metacharacter (a `\\`, a `(`) matches
    itself instead of making Envoy NACK the whole listener or route table."""
    return "".join("\\" + c if c in _RE2_META else c for c in text)


def _wildcard_regex(value: str) -> str:
    """A policy value with istiod's `*` wildcards (any run of characters) as an RE2 regex."""
    return ".*".join(_re2_literal(part) for part in value.split("*"))


def _sm(value: str, prefix: str = "", *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    """Istio's StringMatcherWithPrefix: `*` any, `v*` prefix, `*v` suffix, else exact."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex={"regex": ".+"}, ignore_case=False)
    if value.startswith("*"):
        if prefix:
            # A StringMatcher has no prefix-and-suffix form; istiod keeps both in a regex, unescaped.
            return string_pb2.StringMatcher(
                safe_regex={"regex": _re2_literal(prefix) + _wildcard_regex(value)}
            )
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _header(name: str, value: str, *, ignore_case: bool = False) -> rc.HeaderMatcher:
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=p.affix_matcher(value, ignore_case=ignore_case))


def _cidr(value: str) -> address_pb2.CidrRange:
    net = ipaddress.ip_network(
        value if "/" in value else value + ("/128" if ":" in value else "/32"), strict=False
    )
    return address_pb2.CidrRange(address_prefix=str(net.network_address), prefix_len=p.u32(net.prefixlen))


def _metadata(
    filter_name: str, path: Sequence[str], value: value_pb2.ValueMatcher
) -> metadata_pb2.MetadataMatcher:
    m = metadata_pb2.MetadataMatcher(filter=filter_name)
    for seg in path:
        m.path.add(key=seg)
    m.value.CopyFrom(value)
    return m


def _or_values(matchers: list[value_pb2.ValueMatcher]) -> value_pb2.ValueMatcher:
    """istiod's matcher.OrMatcher: one value matcher for all the values of a field."""
    if len(matchers) == 1:
        return matchers[0]
    return value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=matchers))


def _jwt_string(claim: str, m: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    """istiod's MetadataStringMatcherForJWTClaim: one string claim of the verified JWT payload."""
    return rbac_pb2.Principal(
        metadata=_metadata(JWT_FILTER, (JWT_PAYLOAD, claim), value_pb2.ValueMatcher(string_match=m))
    )


def jwt_claim_matcher(path: Sequence[str], value: value_pb2.ValueMatcher) -> metadata_pb2.MetadataMatcher:
    """istiod's MetadataListValueMatcherForJWTClaims (matcher.MetadataListValueMatcher with extended
    JWT): the claim at `path` in the verified payload jwt_authn stores under `payload`, which may be a
    list (any element matches `value`) or a plain value (it matches `value`); `aud` is either, per RFC
    7519. Shared by AuthorizationPolicy claims and VirtualService `@request.auth.claims` routes."""
    listed = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=value))
    either = value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=[listed, value]))
    return _metadata(JWT_FILTER, (JWT_PAYLOAD, *path), either)


def _jwt_claims(path: Sequence[str], values: Sequence[str]) -> rbac_pb2.Principal:
    one_of = _or_values([value_pb2.ValueMatcher(string_match=_sm(v)) for v in values])
    return rbac_pb2.Principal(metadata=jwt_claim_matcher(path, one_of))


_ANY_STRING = string_pb2.StringMatcher(safe_regex={"regex": ".+"})


def _request_principal(value: str) -> rbac_pb2.Principal:
    """`iss/sub` as the AND of the JWT's `iss` and `sub` claims, split at the last `/` (the issuer is
    often a URL), with istiod's wildcard rules (generator.go requestPrincipalGenerator)."""
    iss, sep, sub = value.rpartition("/")
    if not sep:
        iss, sub = value, ""
    if value == "*":
        m_iss, m_sub = _ANY_STRING, _ANY_STRING
    elif value.startswith("*"):
        if sep:
            m_iss = _ANY_STRING if iss == "*" else string_pb2.StringMatcher(suffix=iss[1:])
            m_sub = string_pb2.StringMatcher(exact=sub)
        else:
            m_iss, m_sub = _ANY_STRING, string_pb2.StringMatcher(suffix=value[1:])
    elif value.endswith("*"):
        if sep:
            m_iss = string_pb2.StringMatcher(exact=iss)
            m_sub = _ANY_STRING if sub == "*" else string_pb2.StringMatcher(prefix=sub[:-1])
        else:
            m_iss, m_sub = string_pb2.StringMatcher(prefix=value[:-1]), _ANY_STRING
    else:
        m_iss, m_sub = string_pb2.StringMatcher(exact=iss), string_pb2.StringMatcher(exact=sub)
    return rbac_pb2.Principal(
        and_ids=rbac_pb2.Principal.Set(ids=[_jwt_string("iss", m_iss), _jwt_string("sub", m_sub)])
    )


def _bracketed(s: str) -> str:
    """istiod's extractNameInBrackets: `[name]` -> `name` (only the outermost brackets go)."""
    if not (s.startswith("[") and s.endswith("]")):
        raise Unusable(f"expecting format [<NAME>], but found {s}")
    return s[1:-1]


def _header_name(bracketed: str) -> str:
    """The header name of a `request.headers[name]` key. istiod's validation lets NUL, CR and LF through,
    Envoy's HeaderMatcher name refuses them (the RBAC config would be NACKed): no request carries such a
    header, so the key is Unusable, as istiod treats keys it cannot translate."""
    name = _bracketed(bracketed)
    if not p.header_safe(name):
        raise Unusable(f"header name {name!r} holds NUL, CR or LF")
    return name


def _claim_path(key: str) -> list[str]:
    """istiod's extractNameInNestedBrackets: `request.auth.claims[a][b]` -> ["a", "b"]. Anything but a
    run of `[name]` groups without inner `[` is one name in the outermost brackets (`[[a]]` -> ["[a]"],
    `[a]]` -> ["a]"]), or Unusable when not bracketed at all (`x[a]`)."""
    rest = key[len("request.auth.claims") :]
    claims: list[str] = []
    begin = 0
    while begin < len(rest):
        end = -1
        if rest[begin] == "[":
            for i in range(begin + 1, len(rest)):
                if rest[i] == "[":
                    break
                if rest[i] == "]":
                    end = i
                    break
        if end == -1:
            return [_bracketed(rest)]
        claims.append(rest[begin + 1 : end])
        begin = end + 1
    return claims


def _go_quote_meta(s: str) -> str:
    """Go's regexp.QuoteMeta (Python's re.escape also escapes spaces, `-`, `/`..., which RE2 reads the same
    but would make the regex differ from istiod's)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in s)


def _inline_header(name: str, value: str) -> rc.HeaderMatcher:
    """istiod's HeaderMatcherWithRegex: `value` as one element of a comma-separated header line."""
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    if value.startswith("*"):
        regex = ".*" + _go_quote_meta(value[1:])
    elif value.endswith("*"):
        regex = _go_quote_meta(value[:-1]) + ".*"
    else:
        regex = _go_quote_meta(value)
    return rc.HeaderMatcher(
        name=name, safe_regex_match={"regex": f"^{regex}$|^{regex},.*|.*,{regex},.*|.*,{regex}$"}
    )


# --- principals and permissions ---------------------------------------------------------------


def _or_ids(ids: list[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if len(ids) == 1:
        return ids[0]
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=ids))


def _or_rules(rules: list[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if len(rules) == 1:
        return rules[0]
    return rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=rules))


def _authenticated(m: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=m))


def _principal_for(key: str, value: str, tcp: bool) -> rbac_pb2.Principal:
    """One value of a source field or `when` key."""
    if key in ("principals", "source.principal"):
        return _authenticated(_sm(value, SPIFFE))
    if key in ("namespaces", "source.namespace"):
        regex = ".*/ns/" + _wildcard_regex(value) + "/.*"
        return _authenticated(string_pb2.StringMatcher(safe_regex={"regex": regex}))
    if key in ("serviceAccounts", "source.serviceAccount"):
        ns, _, sa = value.rpartition("/")
        ns_re = _wildcard_regex(ns) if ns else ".+"
        regex = f"spiffe://.+/ns/{ns_re}/(.+/|)sa/{_wildcard_regex(sa)}(/.+)?"
        return _authenticated(string_pb2.StringMatcher(safe_regex={"regex": regex}))
    if key in ("trustDomains", "source.trustDomain"):
        prefix = SPIFFE if value == "*" else f"{SPIFFE}{value}/"
        return _authenticated(string_pb2.StringMatcher(prefix=prefix))
    if key in ("ipBlocks", "source.ip"):
        return rbac_pb2.Principal(direct_remote_ip=_cidr(value))
    if key in ("remoteIpBlocks", "remote.ip"):
        return rbac_pb2.Principal(remote_ip=_cidr(value))
    if tcp:
        raise NotForTcp(key)
    if key in ("requestPrincipals", "request.auth.principal"):
        return _request_principal(value)
    if key.startswith(INLINE_HEADERS):
        return rbac_pb2.Principal(header=_inline_header(_header_name(key[len(INLINE_HEADERS) :]), value))
    if key.startswith(REQUEST_HEADERS):
        # A key validation accepts (`request.headersX[h]`) may still not be `[name]`: Unusable then.
        return rbac_pb2.Principal(header=_header(_header_name(key[len(REQUEST_HEADERS) :]), value))
    raise ValueError(f"unknown source key {key}")


def _jwt_claim_path(key: str) -> list[str] | None:
    """The payload path a JWT claim key matches, or None for other keys."""
    if key == "request.auth.audiences":
        return ["aud"]
    if key == "request.auth.presenter":
        return ["azp"]
    if key.startswith("request.auth.claims"):
        return _claim_path(key)
    return None


def _principal_values(key: str, values: Sequence[str], tcp: bool) -> rbac_pb2.Principal:
    """Every value of one source field or `when` key, ORed."""
    path = _jwt_claim_path(key)
    if path is None:
        return _or_ids([_principal_for(key, v, tcp) for v in values])
    if tcp:
        raise NotForTcp(key)
    return _jwt_claims(path, values)


def _uri_template(value: str) -> rbac_pb2.Permission:
    """Istio's path templates `{*}` (one segment) and `{**}` (the rest) in Envoy's template syntax."""
    template = value.replace("{**}", "**").replace("{*}", "*")
    return rbac_pb2.Permission(
        uri_template=extension_pb2.TypedExtensionConfig(
            name="envoy.path.match.uri_template.uri_template_matcher",
            typed_config=p.pack(uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)),
        )
    )


def _permission_for(key: str, value: str, tcp: bool) -> rbac_pb2.Permission:
    if key in ("ports", "destination.port"):
        return rbac_pb2.Permission(destination_port=int(value))
    if key == "destination.ip":
        return rbac_pb2.Permission(destination_ip=_cidr(value))
    if key == "connection.sni":
        return rbac_pb2.Permission(requested_server_name=_sm(value))
    if tcp:
        raise NotForTcp(key)
    if key == "hosts":
        return rbac_pb2.Permission(header=_header(":authority", value, ignore_case=True))
    if key == "methods":
        return rbac_pb2.Permission(header=_header(":method", value))
    if key == "paths":
        if "{" in value:
            return _uri_template(value)
        return rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=_sm(value)))
    raise ValueError(f"unknown operation key {key}")


def _filter_metadata_value(value: str) -> value_pb2.ValueMatcher:
    """`[v]` matches a list holding v; any other value the string itself."""
    if value.startswith("[") and value.endswith("]"):
        one = value_pb2.ValueMatcher(string_match=_sm(value[1:-1]))
        return value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))
    return value_pb2.ValueMatcher(string_match=_sm(value))


def _permission_values(key: str, values: Sequence[str], tcp: bool) -> rbac_pb2.Permission:
    """Every value of one operation field or `when` key, ORed."""
    if key.startswith("experimental.envoy.filters."):
        # `experimental.envoy.filters.a.b[c]`: key c of filter a.b's dynamic metadata.
        filt, _, rest = key[len("experimental.") :].partition("[")
        value = _or_values([_filter_metadata_value(v) for v in values])
        # istiod trims one `]`: `...[c]]` is key `c]`.
        return rbac_pb2.Permission(metadata=_metadata(filt, (rest.removesuffix("]"),), value))
    return _or_rules([_permission_for(key, v, tcp) for v in values])


@dataclass
class _Field:
    key: str
    values: list[str]
    negate: bool


def _td_match(a: str, b: str) -> bool:
    """trustdomain.stringMatch for one pair: either side may be the `*`/prefix/suffix pattern."""

    def one_way(value: str, pattern: str) -> bool:
        return (
            pattern == "*"
            or (pattern.endswith("*") and value.startswith(pattern[:-1]))
            or (pattern.startswith("*") and value.endswith(pattern[1:]))
        )

    return a == b or one_way(a, b) or one_way(b, a)


@dataclass(frozen=True)
class TrustDomains:
    """istiod's trustdomain.Bundle: the mesh's trust domain, then its aliases (MeshConfig
    trustDomainAliases), all treated as the same mesh in source principals."""

    domains: tuple[str, ...] = ("cluster.local",)

    @classmethod
    def of(cls, snapshot: Snapshot) -> TrustDomains:
        mesh = snapshot.mesh
        return cls((mesh.trust_domain, *mesh.trust_domain_aliases))

    def principals(self, values: Sequence[str]) -> list[str]:
        """ReplaceTrustDomainAliases: `td/ns/x/sa/y` naming the local trust domain, an alias or
        `cluster.local` (which always means the local one) is expanded to every domain of the bundle."""
        out: list[str] = []
        for principal in values:
            parts = principal.split("/")
            td = parts[0]
            # Not a `<td>/ns/<ns>/sa/<sa>` identity, a `*` trust domain, or a foreign trust domain: as is.
            if (
                len(parts) != 5
                or td == "*"
                or not (td == "cluster.local" or any(_td_match(td, d) for d in self.domains))
            ):
                out.append(principal)
                continue
            expanded: list[str] = []
            for domain in self.domains:
                # A `*-td` pattern that already covers this domain stays as written.
                covers = td.startswith("*") and domain.endswith(td[1:])
                new = principal if covers else "/".join([domain, *parts[1:]])
                if new not in expanded:
                    expanded.append(new)
            out.extend(expanded)
        return out

    def trust_domains(self, values: Sequence[str]) -> list[str]:
        """ExpandTrustDomainAliases: a trust domain of the bundle stands for all of them."""
        out: list[str] = []
        for v in values:
            for td in self.domains if v in self.domains else (v,):
                if td not in out:
                    out.append(td)
        return out


@dataclass(frozen=True)
class _Scope:
    """What source values are read against: the policy's namespace and the mesh's trust domains."""

    namespace: str
    trust: TrustDomains

    def values(self, key: str, values: Sequence[str]) -> list[str]:
        if key in ("principals", "source.principal"):
            return self.trust.principals(values)
        if key in ("trustDomains", "source.trustDomain"):
            return self.trust.trust_domains(values)
        if key in ("serviceAccounts", "source.serviceAccount"):
            # A bare service account is one of the policy's namespace (serviceAccountRegex).
            return [v if "/" in v else f"{self.namespace}/{v}" for v in values]
        return list(values)


def _fields(
    key: str, values: Sequence[str] | None, not_values: Sequence[str] | None, scope: _Scope
) -> list[_Field]:
    out = []
    if values:
        out.append(_Field(key, scope.values(key, values), False))
    if not_values:
        out.append(_Field(key, scope.values(key, not_values), True))
    return out


def _source_fields(source: Any, scope: _Scope) -> list[_Field]:
    pairs = [
        ("principals", "principals", "not_principals"),
        ("requestPrincipals", "request_principals", "not_request_principals"),
        ("namespaces", "namespaces", "not_namespaces"),
        ("serviceAccounts", "service_accounts", "not_service_accounts"),
        ("ipBlocks", "ip_blocks", "not_ip_blocks"),
        ("remoteIpBlocks", "remote_ip_blocks", "not_remote_ip_blocks"),
        ("trustDomains", "trust_domains", "not_trust_domains"),
    ]
    out = []
    for key, pos, neg in pairs:
        out += _fields(key, getattr(source, pos, None), getattr(source, neg, None), scope)
    return out


def _operation_fields(op: Any, scope: _Scope) -> list[_Field]:
    out = []
    for key, pos, neg in (
        ("hosts", "hosts", "not_hosts"),
        ("ports", "ports", "not_ports"),
        ("methods", "methods", "not_methods"),
        ("paths", "paths", "not_paths"),
    ):
        out += _fields(key, getattr(op, pos, None), getattr(op, neg, None), scope)
    return out


def _condition_fields(when: Sequence[Any], scope: _Scope) -> tuple[list[_Field], list[_Field]]:
    principals: list[_Field] = []
    permissions: list[_Field] = []
    for cond in when:
        target = principals if cond.key.startswith(_PRINCIPAL_KEYS) else permissions
        target += _fields(cond.key, cond.values, cond.not_values, scope)
    return principals, permissions


def _build(
    fields: list[_Field],
    values_of: Callable[[str, Sequence[str], bool], Any],
    and_: Callable[[list[Any]], Any],
    neg: Callable[[Any], Any],
    any_: Callable[[], Any],
    tcp: bool,
    drop_http: bool,
) -> Any:
    parts = []
    for f in fields:
        try:
            m = values_of(f.key, f.values, tcp)
        except Unusable:
            if drop_http:
                continue
            raise
        parts.append(neg(m) if f.negate else m)
    if not parts:
        return any_()
    return parts[0] if len(parts) == 1 else and_(parts)


def _principal(fields: list[_Field], tcp: bool, drop_http: bool) -> rbac_pb2.Principal:
    return _build(
        fields,
        _principal_values,
        lambda ids: rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=ids)),
        lambda m: rbac_pb2.Principal(not_id=m),
        lambda: rbac_pb2.Principal(any=True),
        tcp,
        drop_http,
    )


def _permission(fields: list[_Field], tcp: bool, drop_http: bool) -> rbac_pb2.Permission:
    return _build(
        fields,
        _permission_values,
        lambda rules: rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=rules)),
        lambda m: rbac_pb2.Permission(not_rule=m),
        lambda: rbac_pb2.Permission(any=True),
        tcp,
        drop_http,
    )


def rule_policy(
    rule: Any, *, tcp: bool, action: str, namespace: str, trust: TrustDomains
) -> rbac_pb2.Policy | None:
    """One rule of a policy in `namespace` as an RBAC policy; None if it can never match (an ALLOW
    rule with HTTP fields on TCP)."""
    drop_http = action != "ALLOW"
    scope = _Scope(namespace, trust)
    cond_principals, cond_permissions = _condition_fields(rule.when or (), scope)
    try:
        froms = [f.source for f in rule.from_ or () if f.source is not None] or [None]
        principals = [
            _principal((_source_fields(s, scope) if s is not None else []) + cond_principals, tcp, drop_http)
            for s in froms
        ]
        tos = [t.operation for t in rule.to or () if t.operation is not None] or [None]
        permissions = [
            _permission(
                (_operation_fields(o, scope) if o is not None else []) + cond_permissions, tcp, drop_http
            )
            for o in tos
        ]
    except Unusable:
        return None
    return rbac_pb2.Policy(permissions=permissions, principals=principals)


def _never() -> rbac_pb2.Policy:
    """Istio's rbacPolicyMatchNever: a policy with no rules matches nothing."""
    return rbac_pb2.Policy(
        permissions=[rbac_pb2.Permission(not_rule=rbac_pb2.Permission(any=True))],
        principals=[rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))],
    )


# CUSTOM rules are built as DENY rules (an HTTP-only field on a TCP chain is dropped, as istiod does).
_ACTIONS = {
    "ALLOW": rbac_pb2.RBAC.ALLOW,
    "DENY": rbac_pb2.RBAC.DENY,
    "AUDIT": rbac_pb2.RBAC.LOG,
    "CUSTOM": rbac_pb2.RBAC.DENY,
}


@dataclass
class _Rbac:
    rules: rbac_pb2.RBAC
    shadow: rbac_pb2.RBAC
    has_rules: bool
    has_shadow: bool


# strconv.ParseBool's true spellings: istiod reads the dry-run annotation with it.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")


def build_rbac(
    policies: Sequence[Config], action: str, *, tcp: bool, trust: TrustDomains, provider: str = ""
) -> _Rbac | None:
    """The RBAC rules of the `action` policies among `policies`. CUSTOM rules are named after their
    `provider` (`istio-ext-authz-<provider>-ns[..]...`), the mark its ext_authz filter is enabled by."""
    chosen = [c for c in policies if (c.spec.action or "ALLOW") == action]
    if not chosen:
        return None
    out = _Rbac(rbac_pb2.RBAC(action=_ACTIONS[action]), rbac_pb2.RBAC(action=_ACTIONS[action]), False, False)
    prefix = ext_authz.rule_prefix(provider) if action == "CUSTOM" else ""
    for cfg in chosen:
        dry_run = (cfg.metadata.annotations or {}).get(DRY_RUN, "") in _TRUE
        target = out.shadow if dry_run else out.rules
        rules = list(cfg.spec.rules or ())
        if not rules:
            target.policies[f"{prefix}ns[{cfg.namespace}]-policy[{cfg.name}]-rule[0]"].CopyFrom(_never())
        for i, rule in enumerate(rules):
            policy = rule_policy(rule, tcp=tcp, action=action, namespace=cfg.namespace, trust=trust)
            if policy is None:
                continue
            target.policies[f"{prefix}ns[{cfg.namespace}]-policy[{cfg.name}]-rule[{i}]"].CopyFrom(policy)
        if dry_run:
            out.has_shadow = True
        else:
            out.has_rules = True
    return out


# --- RequestAuthentication ----------------------------------------------------------------------


# What a provider whose keys cannot be had (no jwks, a jwksUri that cannot be read or fetched, keys not
# fetched yet) verifies against, as istiod's BuildLocalJwks inlines its FakeJwks: a real 2048-bit RSA
# public key without a kid, whose private half was thrown away when Isthmus generated it (istiod's
# FakeJwks carries its private half in istiod's source), so no token verifies (401: Envoy tries the key
# and the signature fails) while requests without a token still pass. A well-formed key, which upstream
# Envoy accepts (it NACKs an even or short modulus).
PUBLIC_ONLY_JWKS = (
    '{"keys":[{"kty":"RSA","e":"AQAB","n":"'
    "wIQpp-anII_gWi0kaNsDw93dy_2zQRtRWw_47TnNCkHourGntQb91D3bDSVNIe7ULx1keb03volQ235kIvjeV3VRhL"
    "YJQ_4HSrGilAuNtVIQl0YhQZL-s26CxBoUB2GtWCvJulOQW5Wv6YsrTrNVvLQAfmfis25DDjT5yWUeinsuzxWrtmJd"
    "49Yl1CkGFhfMyRWXNew7k7zTWBQqDy_aK6xlGg_JE4tTjTB9TISbqEG6dFyCxo74D6_T23ZZp1JZxkFSk6yuH2dEIe"
    "xKgNTXnfWNMEJvir7ZQU8jhMAR8fMmf2O8oImZHplx5pyexmr2r6tDeNF0LLJia5NpOZaQ5w"
    '"}]}'
)


def _jwks(snapshot: Snapshot, cfg: Config, rule: Any) -> str:
    """istiod's BuildLocalJwks: the inline `jwks`, else the key set at `jwksUri` (an http(s) one, or the
    issuer's OpenID discovery when there is none, as the control plane's JWKS resolver fetched it into
    the snapshot; a `file://` one as the resolver read it into the snapshot: a generator does no I/O),
    else PUBLIC_ONLY_JWKS (istiod's FakeJwks, "The JWKS key is not yet fetched ..., using a fake JWKS
    for now"), reported on the snapshot."""
    if rule.jwks:
        return str(rule.jwks)
    uri = rule.jwks_uri or ""
    key = jwks_model.rule_key(rule)
    if key is None:
        return PUBLIC_ONLY_JWKS
    entry = snapshot.jwks.get(key)
    if entry is not None and entry.keys is not None:
        return entry.keys
    where = uri or f"the OpenID discovery of issuer {rule.issuer}"
    if entry is None or entry.pending:
        why = "its keys are not fetched yet"
    else:
        why = f"fetching its keys failed: {entry.error}"
    snapshot.generation_errors.setdefault(
        f"RequestAuthentication {cfg.namespace}/{cfg.name} jwksUri {where}",
        f"{why}; until a fetch succeeds, tokens of issuer {rule.issuer or uri} are rejected (401) "
        "and requests without a token pass (istiod's fake JWKS)",
    )
    return PUBLIC_ONLY_JWKS


NO_REQUEST_HEADER = ":isthmus-no-such-header"


def _usable_jwks(snapshot: Snapshot, cfg: Config, rule: Any) -> str:
    """`_jwks(...)`, unless Envoy would refuse to load it: istiod's validation accepts key sets Envoy
    rejects (`{"keys": []}`, a bare JWK, only keys of unsupported types or bad material), and one such
    set would get the proxy's whole jwt_authn config NACKed. Then PUBLIC_ONLY_JWKS stands in (tokens of
    that issuer fail verification, as with a set without usable keys; requests without a token pass),
    and the problem is reported on the snapshot."""
    text = _jwks(snapshot, cfg, rule)
    problem = local_jwks_problem(text)
    if problem is None:
        return text
    snapshot.generation_errors.setdefault(
        f"RequestAuthentication {cfg.namespace}/{cfg.name} jwks of issuer {rule.issuer or rule.jwks_uri}",
        f"Envoy cannot load its key set ({problem}); tokens of this issuer are rejected until it holds a "
        "usable public key",
    )
    return PUBLIC_ONLY_JWKS


def jwt_config(snapshot: Snapshot, proxy: Proxy) -> jwt.JwtAuthentication:
    """The proxy's jwt_authn config: every RequestAuthentication that applies (none: no requirement)."""
    # istiod's newPolicyApplier: the rules of the policies in the order getConfigsForWorkload lists them
    # (the workload's namespace, then the root namespace; each oldest first, then by name), stably
    # sorted by issuer, so rules with equal issuers get their origins-N in that policy order.
    policies = sorted(
        policies_for(snapshot, "RequestAuthentication", proxy),
        key=lambda c: (c.namespace != proxy.namespace, config_creation_key(c)),
    )
    ruled = [(cfg, r) for cfg in policies for r in cfg.spec.jwt_rules or ()]
    ruled.sort(key=lambda cr: cr[1].issuer or "")
    config = jwt.JwtAuthentication(bypass_cors_preflight=True)
    names: list[tuple[str, str]] = []
    for i, (cfg, rule) in enumerate(ruled):
        name = f"origins-{i}"
        names.append((name, rule.presence or "OPTIONAL"))
        prov = config.providers[name]
        prov.issuer = rule.issuer or ""
        prov.audiences.extend(rule.audiences or ())
        prov.local_jwks.inline_string = _usable_jwks(snapshot, cfg, rule)
        for h in rule.from_headers or ():
            if not p.header_safe(h.name + (h.prefix or "")):
                # istiod's validation accepts NUL/CR/LF here, Envoy's JwtHeader refuses them (ECDS
                # NACKed): no request carries such a header or value, so the location never yields a token.
                continue
            prov.from_headers.add(name=h.name, value_prefix=h.prefix or "")
        if rule.from_headers and not (prov.from_headers or rule.from_params or rule.from_cookies):
            # Every location is one no request has; without any, Envoy would look in its defaults
            # (Authorization, access_token): a pseudo-header name that no request can carry instead.
            prov.from_headers.add(name=NO_REQUEST_HEADER)
        prov.from_params.extend(rule.from_params or ())
        prov.from_cookies.extend(rule.from_cookies or ())
        prov.forward = bool(rule.forward_original_token)
        # istiod's validation checks outputClaimToHeaders' names, not this one; Envoy refuses NUL/CR/LF in
        # it (ECDS NACKed). No upstream can read a header of such a name: it is not added.
        if rule.output_payload_to_header and p.header_safe(rule.output_payload_to_header):
            prov.forward_payload_header = rule.output_payload_to_header
        for c in rule.output_claim_to_headers or ():
            prov.claim_to_headers.add(header_name=c.header, claim_name=c.claim)
        prov.payload_in_metadata = JWT_PAYLOAD
        prov.normalize_payload_in_metadata.space_delimited_claims.extend(
            sorted({*(rule.space_delimited_claims or ()), "scope", "permission"})
        )
        # istiod's authn Builder.BuildHTTP: JwtFilter(clearRouteCache = proxy.Type != SidecarProxy).
        # A gateway routes after jwt_authn on the same connection manager, so the route picked before
        # the token was verified must be dropped for `@request.auth.claims` matches to see the claims;
        # a sidecar's inbound routes never match on claims, and its outbound side has no jwt_authn.
        if proxy.kind != "sidecar":
            prov.clear_route_cache = True
        if rule.failed_status_in_metadata:
            # istio/api#3801: why verification failed ({code, message}) goes to the jwt_authn filter's
            # dynamic metadata under this key, for access logs and later filters (mostly with IGNORED).
            prov.failed_status_in_metadata = JWT_FAILED_STATUS
    if names:
        rule = config.rules.add()
        rule.match.prefix = "/"
        rule.requires.CopyFrom(_requirement(names))
    return config


def _requirement(names: Sequence[tuple[str, str]]) -> jwt.JwtRequirement:
    """The providers' requirement, by each rule's `presence` (istio/api#3737, #3801).

    OPTIONAL rules (the default) keep istiod's convertToEnvoyJwtConfig shape: one provider is
    `any{provider, allow_missing}` (a missing token passes, an invalid one fails); several are
    `any{P1, P2, ..., all{any{P1, allow_missing}, ...}}`: the inner AND makes every token present valid,
    the leading providers let one token pass when providers share a location (the AND alone would fail
    it on the other issuers' providers).

    A REQUIRED rule's token must be present and valid whatever the other rules say: its bare provider
    joins an AND with the optional part. An IGNORED rule's token is verified (claims reach metadata and
    headers when it is valid) but never rejects a request: `any{provider, allow_missing_or_failed}`.
    """
    optional = [n for n, presence in names if presence == "OPTIONAL"]
    required = [n for n, presence in names if presence == "REQUIRED"]
    ignored = [n for n, presence in names if presence == "IGNORED"]
    parts: list[jwt.JwtRequirement] = [jwt.JwtRequirement(provider_name=n) for n in required]
    if optional:
        parts.append(_optional_requirement(optional))
    for n in ignored:
        part = jwt.JwtRequirement()
        part.requires_any.requirements.add(provider_name=n)
        part.requires_any.requirements.add(allow_missing_or_failed={})
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    req = jwt.JwtRequirement()
    req.requires_all.requirements.extend(parts)
    return req


def _optional_requirement(names: Sequence[str]) -> jwt.JwtRequirement:
    req = jwt.JwtRequirement()
    if len(names) == 1:
        req.requires_any.requirements.add(provider_name=names[0])
        req.requires_any.requirements.add(allow_missing={})
        return req
    for name in names:
        req.requires_any.requirements.add(provider_name=name)
    all_optional = req.requires_any.requirements.add().requires_all
    for name in names:
        optional = all_optional.requirements.add().requires_any
        optional.requirements.add(provider_name=name)
        optional.requirements.add(allow_missing={})
    return req


def jwt_extension(snapshot: Snapshot, proxy: Proxy) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(
        name=naming.JWT_EXTENSION, typed_config=p.pack(jwt_config(snapshot, proxy))
    )


def jwt_filter() -> hcm.HttpFilter:
    """jwt_authn with its config over ECDS, so a RequestAuthentication change never replaces a listener."""
    f = hcm.HttpFilter(name=naming.JWT_EXTENSION)
    discovery = f.config_discovery
    discovery.config_source.CopyFrom(p.ads_config_source())
    discovery.default_config.CopyFrom(p.pack(jwt.JwtAuthentication()))
    discovery.type_urls.append(
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
    )
    return f


# --- filters for the listeners ------------------------------------------------------------------

# One RBAC filter per action, always present on inbound and gateway HCMs with no rules of their own
# (no enforcement); the policies in force arrive per route over RDS (RBACPerRoute). So an
# AuthorizationPolicy change never replaces a listener: it applies to open connections at once and
# drains nothing (istio#48077). Where the route cannot change after the filter chain is built
# (route_fixed_before: sidecars without ext_authz), the filters are disabled by default: the RBACPerRoute
# entry on a virtual host enables its filter there (Envoy treats any per-filter config as enabling), and
# where there is none the filter's own empty config would enforce nothing anyway, so only requests a
# policy applies to pay for an RBAC filter.
RBAC_FILTERS = (
    ("AUDIT", "envoy.filters.http.rbac.audit", "istio_dry_run_audit_"),
    ("DENY", "envoy.filters.http.rbac.deny", "istio_dry_run_deny_"),
    ("ALLOW", "envoy.filters.http.rbac.allow", "istio_dry_run_allow_"),
)


def _http_rbac(built: _Rbac, shadow_prefix: str) -> http_rbac.RBAC:
    config = http_rbac.RBAC()
    if built.has_rules or not built.has_shadow:
        config.rules.CopyFrom(built.rules)
    if built.has_shadow:
        config.shadow_rules.CopyFrom(built.shadow)
        config.shadow_rules_stat_prefix = shadow_prefix
    return config


# CUSTOM policies (istio#58082, as istiod with PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS): per provider,
# sorted by name, an RBAC filter in shadow mode marks the requests its rules match (rules per route, like
# the others), then that provider's ext_authz asks about those. Policies naming a provider that cannot be
# used deny the requests their rules match, in an RBAC filter of their own placed first. Present only
# where ext_authz providers are defined or CUSTOM policies apply.
CUSTOM_RBAC_FILTER = naming.CUSTOM_RBAC_FILTER


@dataclass(frozen=True)
class _Custom:
    # The CUSTOM policies in force, by the provider they name, sorted by provider name.
    by_provider: dict[str, list[Config]]
    # The providers that can be used; the others deny what their policies' rules match.
    usable: dict[str, ext_authz.Provider]

    def bad(self) -> list[str]:
        return [name for name in self.by_provider if name not in self.usable]


def _custom(snapshot: Snapshot, proxy: Proxy) -> _Custom | None:
    """Once per scope and snapshot: filters, per-route rules, TCP filters and ECDS all ask."""
    return snapshot.memo(("custom_authz", scope_key(snapshot, proxy)), lambda: _build_custom(snapshot, proxy))


def _build_custom(snapshot: Snapshot, proxy: Proxy) -> _Custom | None:
    policies = [c for c in policies_for(snapshot, "AuthorizationPolicy", proxy) if c.spec.action == "CUSTOM"]
    if not policies:
        return None
    grouped: dict[str, list[Config]] = {}
    for cfg in policies:
        grouped.setdefault(cfg.spec.provider.name if cfg.spec.provider is not None else "", []).append(cfg)
    by_provider = {name: grouped[name] for name in sorted(grouped)}
    usable: dict[str, ext_authz.Provider] = {}
    for name, configs in by_provider.items():
        try:
            usable[name] = ext_authz.provider_for(snapshot, name)
        except ext_authz.ProviderError as exc:
            # istiod fails closed for this provider only: what its rules match is denied, the other
            # providers keep working. Say so in status.
            snapshot.generation_errors.setdefault(
                "AuthorizationPolicy CUSTOM " + ", ".join(f"{c.namespace}/{c.name}" for c in configs),
                f"failed to process CUSTOM action for provider {name!r}, the requests its rules match are "
                f"denied: {exc}",
            )
    return _Custom(by_provider, usable)


def _bad_provider_rules(
    custom: _Custom, names: Sequence[str], *, tcp: bool, trust: TrustDomains
) -> rbac_pb2.RBAC | None:
    """The enforced rules of the policies naming the unusable providers `names`, as DENY rules (istiod's
    getBadCustomDenyRules: each name gets naming.BAD_CUSTOM_SUFFIX); None when there are none."""
    deny = rbac_pb2.RBAC(action=rbac_pb2.RBAC.DENY)
    found = False
    for name in names:
        built = build_rbac(custom.by_provider[name], "CUSTOM", tcp=tcp, trust=trust, provider=name)
        if built is None or not built.has_rules:
            continue
        found = True
        for rule, policy in built.rules.policies.items():
            deny.policies[rule + naming.BAD_CUSTOM_SUFFIX].CopyFrom(policy)
    return deny if found else None


def _marking_rules(custom: _Custom, name: str, *, tcp: bool, trust: TrustDomains) -> rbac_pb2.RBAC | None:
    """A usable provider's CUSTOM rules, for its RBAC filter's shadow mode; None when none. (Validation
    rejects istio.io/dry-run on CUSTOM policies, as istiod's does: every CUSTOM rule is enforced.)"""
    built = build_rbac(custom.by_provider[name], "CUSTOM", tcp=tcp, trust=trust, provider=name)
    if built is None or not built.has_rules:
        return None
    return built.rules


def _ext_authz_filters(snapshot: Snapshot, proxy: Proxy) -> list[hcm.HttpFilter]:
    """Where the mesh defines ext_authz providers (or a CUSTOM policy applies), every HCM carries the
    CUSTOM deny filter, then per defined provider (sorted) its marking RBAC filter and its ext_authz, the
    config over ECDS and inert until a CUSTOM policy uses the provider. The filters depend on the mesh's
    providers only, not on the policies: CUSTOM policy changes reach open connections and never replace
    a listener, like the others."""
    providers = ext_authz.defined_providers(snapshot)
    if not providers and _custom(snapshot, proxy) is None:
        return []
    out = [_inert_rbac_filter(CUSTOM_RBAC_FILTER)]
    for name in providers:
        f = hcm.HttpFilter(name=naming.ext_authz_extension(name))
        discovery = f.config_discovery
        discovery.config_source.CopyFrom(p.ads_config_source())
        discovery.default_config.CopyFrom(p.pack(ext_authz.inert()))
        discovery.type_urls.append(ext_authz.TYPE_URL)
        out += [
            _inert_rbac_filter(naming.custom_rbac_filter(name)),
            f,
        ]
    return out


def ext_authz_extensions(snapshot: Snapshot, proxy: Proxy) -> list[extension_pb2.TypedExtensionConfig]:
    """The ECDS config of every provider's ext_authz filter: the provider's own where a CUSTOM policy in
    force names it and it can be used, else inert."""
    custom = _custom(snapshot, proxy)
    out = []
    for name in ext_authz.defined_providers(snapshot):
        used = custom.usable.get(name) if custom is not None else None
        config = used.http if used is not None else ext_authz.inert()
        out.append(
            extension_pb2.TypedExtensionConfig(
                name=naming.ext_authz_extension(name), typed_config=p.pack(config)
            )
        )
    return out


def route_fixed_before(proxy: Proxy, filters: Sequence[hcm.HttpFilter]) -> bool:
    """Whether no filter among `filters` can clear the route cache. Envoy decides which disabled-by-default
    filters a request gets from the route matched when its filter chain is built; a filter that clears
    the route cache afterwards (a gateway's jwt_authn, for `@request.auth.claims` routing, or an ext_authz
    provider with clearRouteCache; both configured over ECDS, so either may start doing it without a
    listener change) could move the request to a route whose per-filter config was never consulted.
    Filters after such ones stay enabled."""
    if any(f.name.startswith(naming.EXT_AUTHZ_EXTENSION) for f in filters):
        return False
    # A sidecar's jwt_authn never clears it (see jwt_config).
    return proxy.kind == "sidecar" or not any(f.name == naming.JWT_EXTENSION for f in filters)


def _inert_rbac_filter(name: str, *, disabled: bool = False) -> hcm.HttpFilter:
    """An RBAC filter with no rules of its own (the RBACPerRoute entries carry them). Disabled until such
    an entry enables it, where the route cannot change after the filter chain is built."""
    return hcm.HttpFilter(name=name, typed_config=p.pack(http_rbac.RBAC()), disabled=disabled)


def inbound_http_filters(snapshot: Snapshot, proxy: Proxy) -> list[hcm.HttpFilter]:
    out: list[hcm.HttpFilter] = [jwt_filter(), *_ext_authz_filters(snapshot, proxy)]
    disabled = route_fixed_before(proxy, out)
    out.extend(_inert_rbac_filter(name, disabled=disabled) for _, name, _ in RBAC_FILTERS)
    return out


def _custom_per_route(snapshot: Snapshot, proxy: Proxy) -> dict[str, http_rbac.RBAC]:
    """The CUSTOM filters' rules on this proxy, by filter name."""
    custom = _custom(snapshot, proxy)
    if custom is None:
        return {}
    trust = TrustDomains.of(snapshot)
    out: dict[str, http_rbac.RBAC] = {}
    # One filter for every unusable provider, ahead of the others: istiod puts each at its provider's
    # place in the order, which only changes whether a usable provider is also asked about a request
    # that is denied anyway; a fixed filter keeps listeners independent of the policies.
    deny = _bad_provider_rules(custom, custom.bad(), tcp=False, trust=trust)
    if deny is not None:
        out[CUSTOM_RBAC_FILTER] = http_rbac.RBAC(rules=deny)
    for name in custom.usable:
        marks = _marking_rules(custom, name, tcp=False, trust=trust)
        if marks is not None:
            out[naming.custom_rbac_filter(name)] = http_rbac.RBAC(
                shadow_rules=marks, shadow_rules_stat_prefix=ext_authz.STAT_PREFIX
            )
    return out


def rbac_per_route(snapshot: Snapshot, proxy: Proxy) -> dict[str, Any]:
    """typed_per_filter_config entries carrying the AuthorizationPolicies in force on this proxy."""
    policies = policies_for(snapshot, "AuthorizationPolicy", proxy)
    trust = TrustDomains.of(snapshot)
    out: dict[str, Any] = {}
    for name, config in _custom_per_route(snapshot, proxy).items():
        out[name] = p.pack(http_rbac.RBACPerRoute(rbac=config))
    for action, name, prefix in RBAC_FILTERS:
        built = build_rbac(policies, action, tcp=False, trust=trust)
        if built is not None:
            out[name] = p.pack(http_rbac.RBACPerRoute(rbac=_http_rbac(built, prefix)))
    return out


def _custom_network_filters(snapshot: Snapshot, proxy: Proxy) -> list[listener_components_pb2.Filter]:
    """istiod's buildTCP for CUSTOM: per provider, sorted by name, either a network RBAC filter denying
    its rules (a provider that cannot be used) or, for a gRPC provider, a shadow RBAC filter marking its
    rules' connections and its network ext_authz; an HTTP provider does not apply to TCP traffic."""
    custom = _custom(snapshot, proxy)
    if custom is None:
        return []
    trust = TrustDomains.of(snapshot)
    out: list[listener_components_pb2.Filter] = []
    for name in custom.by_provider:
        provider = custom.usable.get(name)
        if provider is None:
            deny = _bad_provider_rules(custom, [name], tcp=True, trust=trust)
            if deny is not None:
                config = network_rbac.RBAC(stat_prefix="tcp.", rules=deny)
                out.append(listener_components_pb2.Filter(name=RBAC_NETWORK, typed_config=p.pack(config)))
            continue
        if provider.tcp is None:
            continue  # istiod ignores an HTTP provider on TCP filter chains
        marks = _marking_rules(custom, name, tcp=True, trust=trust)
        if marks is None:
            continue
        config = network_rbac.RBAC(
            stat_prefix="tcp.", shadow_rules=marks, shadow_rules_stat_prefix=ext_authz.STAT_PREFIX
        )
        out += [
            listener_components_pb2.Filter(name=RBAC_NETWORK, typed_config=p.pack(config)),
            listener_components_pb2.Filter(name=ext_authz.NETWORK_FILTER, typed_config=p.pack(provider.tcp)),
        ]
    return out


def inbound_network_filters(snapshot: Snapshot, proxy: Proxy) -> list[listener_components_pb2.Filter]:
    out = _custom_network_filters(snapshot, proxy)
    policies = policies_for(snapshot, "AuthorizationPolicy", proxy)
    trust = TrustDomains.of(snapshot)
    for action, _, prefix in RBAC_FILTERS:
        built = build_rbac(policies, action, tcp=True, trust=trust)
        if built is None:
            continue
        config = network_rbac.RBAC(stat_prefix="tcp.")
        if built.has_rules or not built.has_shadow:
            config.rules.CopyFrom(built.rules)
        if built.has_shadow:
            config.shadow_rules.CopyFrom(built.shadow)
            config.shadow_rules_stat_prefix = prefix
        out.append(listener_components_pb2.Filter(name=RBAC_NETWORK, typed_config=p.pack(config)))
    return out
