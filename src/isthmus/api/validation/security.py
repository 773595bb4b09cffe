"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication rules (Istio
``ValidatePeerAuthentication``, ``ValidateAuthorizationPolicy``, ``ValidateRequestAuthentication``,
``pkg/config/security``)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from isthmus.api import security as s
from isthmus.api import telemetry as t
from isthmus.api.paths import join
from isthmus.api.types import PolicyTargetReference, WorkloadSelector
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    Report,
    q,
    root_namespace,
    validate_duration,
    validate_selector_labels,
    validate_strict_header_name,
)

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

# (group, kind) a targetRef may point at ("" is the core group).
ALLOWED_TARGET_REFS = (
    ("", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
)
_ALLOWED_TARGET_REFS_STR = "[core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass]"

# Condition keys that only make sense for HTTP traffic (on TCP, an ALLOW rule using them never matches).
HTTP_ONLY_CONDITION_PREFIXES = ("request.headers", "request.experimental.inline.headers", "request.auth.")


def validate_selector(r: Report, p: str, selector: WorkloadSelector | None) -> None:
    if selector is not None:
        validate_selector_labels(r, join(p, "matchLabels"), selector.match_labels)


def validate_target_ref(r: Report, p: str, ref: PolicyTargetReference | None) -> None:
    if ref is None:
        return
    if not ref.name:
        r.error(join(p, "name"), "targetRef name must be set")
    if ref.namespace:
        r.error(
            join(p, "namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        )
    group = ref.group or ""
    if (group, ref.kind) not in ALLOWED_TARGET_REFS:
        r.error(p, f"targetRef must be to one of {_ALLOWED_TARGET_REFS_STR} but was {group}/{ref.kind}")


def validate_policy_targeting(
    r: Report, spec: s.AuthorizationPolicy | s.RequestAuthentication | t.Telemetry
) -> None:
    """Selector and target references, and Istio's ``validateOneOfSelectorType``: they are plain fields
    (not a proto oneof), so setting two of them is an admission error with Istio's wording."""
    if sum((spec.selector is not None, spec.target_ref is not None, bool(spec.target_refs))) > 1:
        r.error("spec", "only one of targetRefs or workloadSelector can be set")
    validate_selector(r, "spec.selector", spec.selector)
    validate_target_ref(r, "spec.targetRef", spec.target_ref)
    for i, ref in enumerate(spec.target_refs or []):
        validate_target_ref(r, f"spec.targetRefs[{i}]", ref)


def _root_selector_warning(r: Report, res: Resource, selector: WorkloadSelector | None, what: str) -> None:
    if selector is not None and selector.match_labels and res.namespace == root_namespace():
        r.warn(
            "spec.selector",
            f"{what} in the root namespace ({res.namespace}) with a selector applies only to matching workloads "
            "in that namespace, not mesh-wide",
        )


# ==================================================================================================
# PeerAuthentication


@register("PeerAuthentication")
def validate_peer_authentication(res: Resource, r: Report) -> None:
    pa: s.PeerAuthentication = res.spec  # type: ignore[assignment]
    empty_selector = pa.selector is None or not pa.selector.match_labels
    if empty_selector and pa.port_level_mtls:
        r.error("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS")
    if pa.is_set("port_level_mtls") and not pa.port_level_mtls:
        r.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element")
    for key in pa.port_level_mtls:
        if not key.isdigit() or not 1 <= int(key) <= 65535:
            r.error(join("spec.portLevelMtls", key), "port must be in range 1..65535")
    validate_selector(r, "spec.selector", pa.selector)
    if pa.selector is not None and pa.selector.match_labels and res.namespace == root_namespace():
        r.warn(
            "spec.selector",
            f"PeerAuthentication in the root namespace ({res.namespace}) with a selector is not a mesh-wide policy; "
            "it applies only to matching workloads in that namespace",
        )


# ==================================================================================================
# AuthorizationPolicy


def validate_ips(values: list[str]) -> list[tuple[int, str]]:
    errs: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        if "/" in v:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as e:
                errs.append((i, f"bad CIDR range ({v}): {e}"))
        else:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                errs.append((i, f"bad IP address ({v})"))
    return errs


def validate_ports(values: list[str]) -> list[tuple[int, str]]:
    errs: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        if not v.isdigit() or int(v) > 65535:
            errs.append((i, f"bad port ({v}): strconv.ParseUint: parsing {q(v)}: invalid syntax"))
    return errs


def _check_empty(r: Report, p: str, name: str, values: list[str]) -> None:
    for i, v in enumerate(values):
        if v == "":
            r.error(join(p, i), f"empty value not allowed, found in {name}")
            return


def _check_wildcards(r: Report, p: str, values: list[str], *, spiffe: bool = False) -> None:
    """Istio matches ``*`` only as the whole value, a prefix (``*v``) or a suffix (``v*``); elsewhere it is a
    literal character, which is almost always a mistake."""
    for i, v in enumerate(values):
        inner = v[1:-1] if len(v) > 1 else ""
        if "*" in inner or v.count("*") > 1 and v != "*":
            if "{*}" in v or "{**}" in v:
                continue  # path templates
            r.warn(
                join(p, i),
                f"{q(v)}: '*' is only supported as the whole value, a prefix or a suffix; here it is a literal character",
            )
        if spiffe and v.startswith("spiffe://"):
            r.warn(
                join(p, i),
                f"{q(v)}: principals are written without the spiffe:// prefix (e.g. cluster.local/ns/default/sa/sleep)",
            )


def check_service_accounts(key: str, values: list[str]) -> tuple[int | None, str] | None:
    """``security.CheckServiceAccount``: ``name`` or ``namespace/name``, at most 16 of them. Returns the first
    problem, with the index of the offending value (None when the list as a whole is at fault)."""
    if len(values) > 16:
        # Istio's arbitrary limit, to bound the configuration size
        return None, "may not have more than 16 values"
    form = "expected format 'serviceAccount' or 'namespace/serviceAccount'"
    for i, v in enumerate(values):
        if v == "":
            return i, f"empty value not allowed, found in {key}"
        if "*" in v:
            return i, f"wildcard not allowed, found in {key}"
        if v.count("/") not in (0, 1):
            return i, f"{form}, found {q(v)} in {key}"
        if len(v) > 320:
            return i, f"value cannot exceed 320 characters, found {q(v)} in {key}"
        ns, sep, sa = v.partition("/")
        if sep and not ns:
            return i, f"{form}, found empty namespace {q(v)} in {key}"
        if sep and not sa:
            return i, f"{form}, found empty serviceAccount {q(v)} in {key}"
    return None


def _report_service_accounts(r: Report, p: str, key: str, values: list[str]) -> None:
    found = check_service_accounts(key, values)
    if found is not None:
        index, message = found
        r.error(p if index is None else join(p, index), message)


MATCH_ONE_TEMPLATE = "{*}"
MATCH_ANY_TEMPLATE = "{**}"
# RFC 3986 pchar: what Envoy's URI template matcher accepts as a literal path segment
_VALID_LITERAL = re.compile(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$")


def check_valid_path_template(key: str, paths: list[str]) -> tuple[int, str] | None:
    """``security.CheckValidPathTemplate``: ``{*}`` / ``{**}`` are whole segments, ``{**}`` comes last, and the
    other segments of a templated path are plain literals. Returns the first problem and its index."""
    for i, path in enumerate(paths):
        templated = MATCH_ONE_TEMPLATE in path or MATCH_ANY_TEMPLATE in path
        found_any = False
        path = path.strip("/")
        for glob in path.split("/"):
            if glob == MATCH_ONE_TEMPLATE and not found_any:
                continue
            if glob == MATCH_ANY_TEMPLATE and not found_any:
                found_any = True
                continue
            if glob in (MATCH_ONE_TEMPLATE, MATCH_ANY_TEMPLATE):
                return (
                    i,
                    f"invalid or unsupported path {path}, found in {key}. {{**}} is not the last operator",
                )
            if "{" in glob or "}" in glob:
                return i, (
                    f"invalid or unsupported path {path}, found in {key}. "
                    "Contains '{' or '}' beyond a supported path template"
                )
            if templated and not _VALID_LITERAL.match(glob):
                return i, (
                    f"invalid or unsupported path {path}, found in {key}. "
                    f"Contains segment {glob} with invalid string literal"
                )
    return None


def _report_path_template(r: Report, p: str, key: str, paths: list[str]) -> None:
    found = check_valid_path_template(key, paths)
    if found is not None:
        r.error(join(p, found[0]), found[1])


def _validate_map_key(key: str) -> str | None:
    open_ = key.find("[")
    if key.endswith("]") and 0 < open_ < len(key) - 2:
        return None
    return f"bad key ({key}): should have format a[b]"


def validate_attribute(key: str, values: list[str]) -> str | None:
    """``security.ValidateAttribute``: the condition key is known and its values are well formed."""
    for v in values:
        if v == "":
            return f"empty value not allowed, found in {key}"
    # request.experimental.inline.headers[h]: like request.headers[h], one value of a comma-folded header line
    if key.startswith(("request.headers", "request.experimental.inline.headers")):
        return _validate_map_key(key)
    if key in ("source.ip", "remote.ip", "destination.ip"):
        errs = validate_ips(values)
        return errs[0][1] if errs else None
    if key == "source.serviceAccount":
        found = check_service_accounts(key, values)
        return found[1] if found else None
    if key in (
        "source.namespace",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "connection.sni",
    ):
        return None
    if key.startswith("request.auth.claims"):
        return _validate_map_key(key)
    if key == "destination.port":
        errs = validate_ports(values)
        return errs[0][1] if errs else None
    if key.startswith("experimental.envoy.filters."):
        return _validate_map_key(key)
    if key == "destination.namespace":
        return f"attribute {key} is replaced by the metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"deprecated attribute {key}: only supported in v1alpha1"
    return f"unknown attribute: {key}"


_SOURCE_FIELDS = (
    ("principals", "Principals"),
    ("request_principals", "RequestPrincipals"),
    ("namespaces", "Namespaces"),
    ("ip_blocks", "IpBlocks"),
    ("remote_ip_blocks", "RemoteIpBlocks"),
    ("not_principals", "NotPrincipals"),
    ("not_request_principals", "NotRequestPrincipals"),
    ("not_namespaces", "NotNamespaces"),
    ("not_ip_blocks", "NotIpBlocks"),
    ("not_remote_ip_blocks", "NotRemoteIpBlocks"),
    ("trust_domains", "TrustDomains"),
    ("not_trust_domains", "NotTrustDomains"),
)
_OPERATION_FIELDS = (
    ("ports", "Ports"),
    ("methods", "Methods"),
    ("paths", "Paths"),
    ("hosts", "Hosts"),
    ("not_ports", "NotPorts"),
    ("not_methods", "NotMethods"),
    ("not_paths", "NotPaths"),
    ("not_hosts", "NotHosts"),
)


def _alias(model: type, attr: str) -> str:
    return model.model_fields[attr].alias or attr  # type: ignore[attr-defined]


@register("AuthorizationPolicy")
def validate_authorization_policy(res: Resource, r: Report) -> None:
    ap: s.AuthorizationPolicy = res.spec  # type: ignore[assignment]
    validate_policy_targeting(r, ap)
    _root_selector_warning(r, res, ap.selector, "AuthorizationPolicy")
    action = ap.action or "ALLOW"

    if action == "CUSTOM":
        if not ap.rules and not ap.is_set("rules"):
            r.error(
                "spec.rules",
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` "
                "if you want it be triggered for every request",
            )
        elif ap.provider is None or not ap.provider.name:
            r.error("spec.provider.name", "`provider.name` must not be empty")
        for i, rule in enumerate(ap.rules):
            for j, frm in enumerate(rule.from_):
                src = frm.source
                if src is None:
                    continue
                for attr, label in (
                    ("namespaces", "From.Namespaces"),
                    ("not_namespaces", "From.NotNamespaces"),
                    ("service_accounts", "From.ServiceAccounts"),
                    ("not_service_accounts", "From.NotServiceAccounts"),
                    ("trust_domains", "From.TrustDomains"),
                    ("not_trust_domains", "From.NotTrustDomains"),
                    ("principals", "From.Principals"),
                    ("not_principals", "From.NotPrincipals"),
                    ("request_principals", "From.RequestPrincipals"),
                    ("not_request_principals", "From.NotRequestPrincipals"),
                ):
                    if getattr(src, attr):
                        r.error(
                            join(f"spec.rules[{i}].from[{j}].source", _alias(s.Source, attr)),
                            f"{label} is currently not supported with CUSTOM action",
                        )
            for j, cond in enumerate(rule.when):
                if cond.key in (
                    "source.namespace",
                    "source.serviceAccount",
                    "source.trustDomain",
                    "source.principal",
                ) or cond.key.startswith("request.auth."):
                    r.error(
                        f"spec.rules[{i}].when[{j}].key",
                        f"{cond.key} is currently not supported with CUSTOM action",
                    )
    if ap.provider is not None and action != "CUSTOM":
        r.error("spec.provider", f"`provider` must not be with non CUSTOM action, found {action}")
    if action == "DENY" and not ap.rules:
        r.error(
            "spec.rules",
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if "
            "you want it be triggered for every request",
        )

    for i, rule in enumerate(ap.rules):
        rp = f"spec.rules[{i}]"
        if rule.is_set("from_") and not rule.from_:
            r.error(join(rp, "from"), f"`from` must not be empty, found at rule {i}")
        tcp_in_from = tcp_in_to = from_exist = to_exist = False
        for j, frm in enumerate(rule.from_):
            fp = join(rp, "from", j)
            src = frm.source
            if src is None:
                r.error(fp, f"`from.source` must not be nil, found at rule {i}")
                continue
            from_exist = True
            sp = join(fp, "source")
            if (src.principals or src.not_principals or src.namespaces or src.not_namespaces) and (
                src.service_accounts or src.not_service_accounts
            ):
                r.error(sp, f"cannot set serviceAccounts with namespaces or principals, found at rule {i}")
            if not any(getattr(src, a) for a, _ in _SOURCE_FIELDS) and not (
                src.service_accounts or src.not_service_accounts
            ):
                r.error(sp, f"`from.source` must not be empty, found at rule {i}")
            for attr in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
                for k, err in validate_ips(getattr(src, attr)):
                    r.error(join(sp, _alias(s.Source, attr), k), err)
            for attr, label in _SOURCE_FIELDS:
                _check_empty(r, join(sp, _alias(s.Source, attr)), label, getattr(src, attr))
                if attr not in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
                    _check_wildcards(
                        r,
                        join(sp, _alias(s.Source, attr)),
                        getattr(src, attr),
                        spiffe=attr.endswith("principals"),
                    )
            _report_service_accounts(r, join(sp, "serviceAccounts"), "ServiceAccounts", src.service_accounts)
            _report_service_accounts(
                r, join(sp, "notServiceAccounts"), "NotServiceAccounts", src.not_service_accounts
            )
            if any(
                src.is_set(a)
                for a in (
                    "principals",
                    "not_principals",
                    "ip_blocks",
                    "not_ip_blocks",
                    "namespaces",
                    "not_namespaces",
                    "remote_ip_blocks",
                    "not_remote_ip_blocks",
                    "service_accounts",
                    "not_service_accounts",
                )
            ):
                tcp_in_from = True
        if rule.is_set("to") and not rule.to:
            r.error(join(rp, "to"), f"`to` must not be empty, found at rule {i}")
        for j, to in enumerate(rule.to):
            tp = join(rp, "to", j)
            op = to.operation
            if op is None:
                r.error(tp, f"`to.operation` must not be nil, found at rule {i}")
                continue
            to_exist = True
            opp = join(tp, "operation")
            if not any(getattr(op, a) for a, _ in _OPERATION_FIELDS):
                r.error(opp, f"`to.operation` must not be empty, found at rule {i}")
            for attr in ("ports", "not_ports"):
                for k, err in validate_ports(getattr(op, attr)):
                    r.error(join(opp, _alias(s.Operation, attr), k), err)
            for attr, label in _OPERATION_FIELDS:
                _check_empty(r, join(opp, _alias(s.Operation, attr)), label, getattr(op, attr))
                if attr not in ("ports", "not_ports"):
                    _check_wildcards(r, join(opp, _alias(s.Operation, attr)), getattr(op, attr))
            _report_path_template(r, join(opp, "paths"), "Paths", op.paths)
            _report_path_template(r, join(opp, "notPaths"), "NotPaths", op.not_paths)
            if op.is_set("ports") or op.is_set("not_ports"):
                tcp_in_to = True
        for j, cond in enumerate(rule.when):
            cp = join(rp, "when", j)
            if not cond.key:
                r.error(join(cp, "key"), "`key` must not be empty")
                continue
            if not cond.values and not cond.not_values:
                r.error(cp, f"at least one of `values` or `notValues` must be set for key {cond.key}")
                continue
            err = validate_attribute(cond.key, cond.values)
            if err:
                r.error(join(cp, "values"), f"invalid `value` for `key` {cond.key}: {err}")
            # Istio checks notValues even when only values are set, so an unknown key is reported twice
            err = validate_attribute(cond.key, cond.not_values)
            if err:
                r.error(join(cp, "notValues"), f"invalid `notValue` for `key` {cond.key}: {err}")
        if (
            (from_exist and not to_exist and not tcp_in_from) or (to_exist and not tcp_in_to)
        ) and action == "DENY":
            r.warn(
                rp,
                "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of "
                "only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
            )


def is_http_only_condition(key: str) -> bool:
    return key.startswith(HTTP_ONLY_CONDITION_PREFIXES)


# ==================================================================================================
# RequestAuthentication


# JWK members that only a private key has (RFC 7518 section 6): RSA "d", "p", "q", "dp", "dq", "qi"; EC and
# OKP "d". Symmetric "oct" keys ("k") are left alone: HS256 verification needs them.
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


def _jwks_private_keys(jwks: str) -> list[str]:
    """The kid (or index) of each key of a JWKS that carries private key members."""
    try:
        data = json.loads(jwks)
    except ValueError:
        return []
    keys = data.get("keys") if isinstance(data, dict) and isinstance(data.get("keys"), list) else [data]
    out: list[str] = []
    for i, key in enumerate(keys):
        if isinstance(key, dict) and any(m in key for m in _PRIVATE_JWK_MEMBERS):
            out.append(str(key.get("kid", i)))
    return out


def _jwks_uri_error(uri: str) -> str | None:
    """``security.ParseJwksURI``, in Go's ``url.Parse`` wording."""
    u = urlparse(uri)
    # file:// is an Isthmus extension: a local JWKS file the control plane reads and inlines.
    if u.scheme not in ("http", "https", "file"):
        return f"URI scheme {q(u.scheme)} is not supported"
    host = u.netloc.rpartition("@")[2]
    if host.startswith("["):
        port = host.partition("]")[2]
    else:
        _, colon, rest = host.rpartition(":")
        port = colon + rest if colon else ""
    if port and not port[1:].isdigit():
        return f"parse {q(uri)}: invalid port {q(port)} after host"
    return None


def _jwks_error(jwks: str) -> str | None:
    try:
        data = json.loads(jwks)
    except ValueError as e:
        return f"jwks parse error: {e}"
    if isinstance(data, dict) and (isinstance(data.get("keys"), list) or "kty" in data):
        return None
    return "jwks parse error: failed to unmarshal JWK set: neither a key set (keys) nor a key (kty)"


@register("RequestAuthentication")
def validate_request_authentication(res: Resource, r: Report) -> None:
    ra: s.RequestAuthentication = res.spec  # type: ignore[assignment]
    validate_policy_targeting(r, ra)
    _root_selector_warning(r, res, ra.selector, "RequestAuthentication")
    for i, rule in enumerate(ra.jwt_rules):
        p = f"spec.jwtRules[{i}]"
        for j, aud in enumerate(rule.audiences):
            if not aud:
                r.error(join(p, "audiences", j), "audience must be non-empty string")
        if not rule.issuer and not rule.jwks_uri:
            r.error(p, "issuer or jwksUri must be non-empty string")
        if rule.jwks_uri:
            r.error(join(p, "jwksUri"), _jwks_uri_error(rule.jwks_uri))
        if rule.jwks:
            err = _jwks_error(rule.jwks)
            r.error(join(p, "jwks"), err)
            private = _jwks_private_keys(rule.jwks) if err is None else []
            if private:
                # accepted (Istio only warns), but the proxies never need the private half of a key
                r.warn(
                    join(p, "jwks"),
                    f"jwks holds private key material (key {', '.join(private)}); only public keys are needed "
                    "to verify tokens",
                )
        for j, h in enumerate(rule.from_headers):
            if not h.name:
                r.error(join(p, "fromHeaders", j, "name"), "location header name must be non-empty string")
        for j, v in enumerate(rule.from_params):
            if not v:
                r.error(join(p, "fromParams", j), "location query must be non-empty string")
        for j, v in enumerate(rule.from_cookies):
            if not v:
                r.error(join(p, "fromCookies", j), "cookie name must be non-empty string")
        # The CRD schema gives each claim a minLength of 1 (istio's testdata/crds/reqauth-invalid.yaml
        # "invalid-space-delimited-claims"): the API server refuses an empty one.
        for j, v in enumerate(rule.space_delimited_claims):
            if not v:
                r.error(join(p, "spaceDelimitedClaims", j), "space delimited claim must be non-empty string")
        for j, ch in enumerate(rule.output_claim_to_headers):
            cp = join(p, "outputClaimToHeaders", j)
            if not ch.claim or not ch.header:
                r.error(cp, "outputClaimToHeaders header and claim value must be non-empty string")
                continue
            r.error(join(cp, "header"), validate_strict_header_name(ch.header))
        if rule.timeout is not None:
            r.error(join(p, "timeout"), validate_duration(rule.timeout))
