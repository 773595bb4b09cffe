"""What validators report, and the primitives of Istio's ``pkg/config/validation`` (hosts, ports,
durations, labels, regexes, headers, exportTo, ...). Messages follow Istio's wording."""

from __future__ import annotations

import base64
import http
import ipaddress
import json
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from isthmus.api.paths import join
from isthmus.api.types import is_duration


def q(s: str) -> str:
    """Go's %q: a double-quoted string."""
    return json.dumps(s, ensure_ascii=False)


# ==================================================================================================
# Reporting


@dataclass(frozen=True)
class Issue:
    """A problem at a field path (``spec.http[0].route[1].weight``) of one resource."""

    path: str
    message: str
    level: str = "Error"


class Report:
    """Collects issues; validators call ``error``/``warn`` with the field path."""

    __slots__ = ("issues",)

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, path: str, message: str | None) -> None:
        if message:
            self.issues.append(Issue(path, message, "Error"))

    def errors(self, path: str, messages: Iterable[str]) -> None:
        for m in messages:
            self.error(path, m)

    def warn(self, path: str, message: str | None) -> None:
        if message:
            self.issues.append(Issue(path, message, "Warning"))

    def info(self, path: str, message: str) -> None:
        self.issues.append(Issue(path, message, "Info"))

    @property
    def has_errors(self) -> bool:
        return any(i.level == "Error" for i in self.issues)


# ==================================================================================================
# Labels and names (istio pkg/config/labels: note Istio's DNS-1123 label allows upper case).
# Go's `$` matches only at the very end of the text, Python's also before a final "\n": the patterns
# are applied with `fullmatch` so that "key\n" is refused as istiod refuses it.

_DNS1123_LABEL_FMT = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_WILDCARD_PREFIX_RE = re.compile(rf"\*|(?:\*|\*-)?{_DNS1123_LABEL_FMT}")
_QUALIFIED_NAME_FMT = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_PREFIX_FMT = rf"{_DNS1123_LABEL_FMT}(?:\.{_DNS1123_LABEL_FMT})*/"
_TAG_RE = re.compile(rf"({_DNS_PREFIX_FMT})?({_QUALIFIED_NAME_FMT})")
_LABEL_VALUE_RE = re.compile(rf"(?:{_QUALIFIED_NAME_FMT})?")
_DNS1123_LABEL_MAX = 63
_DNS_PREFIX_MAX = 253


def is_dns1123_label(value: str) -> bool:
    """Istio's ``labels.IsDNS1123Label`` (letters of either case)."""
    return len(value) <= _DNS1123_LABEL_MAX and _DNS1123_LABEL_RE.fullmatch(value) is not None


def is_wildcard_dns1123_label(value: str) -> bool:
    return len(value) <= _DNS1123_LABEL_MAX and _WILDCARD_PREFIX_RE.fullmatch(value) is not None


def validate_labels(labels: Mapping[str, str]) -> list[str]:
    """Istio's ``labels.Instance.Validate``: a Kubernetes label key (an optional DNS prefix of at most
    253 characters, then a name of at most 63) and a value of the name's characters. istiod puts no
    length bound on the value (these are subset / endpoint labels, not Kubernetes object labels)."""
    errs: list[str] = []
    for k, v in labels.items():
        errs.extend(_tag_key_errors(k))
        if _LABEL_VALUE_RE.fullmatch(v) is None:
            errs.append(f"invalid tag value: {q(v)}")
    return errs


def _tag_key_errors(key: str) -> list[str]:
    """Istio's ``validateTagKey``."""
    m = _TAG_RE.fullmatch(key)
    if m is None:
        return [f"invalid tag key: {q(key)}"]
    prefix, name = m.group(1) or "", m.group(2)
    if len(prefix) - 1 > _DNS_PREFIX_MAX:  # the prefix's trailing "/" does not count
        return [f"invalid tag key: {q(key)} (DNS prefix is too long)"]
    if len(name) > _DNS1123_LABEL_MAX:
        return [f"invalid tag key: {q(key)} (name is too long)"]
    return []


# ==================================================================================================
# Hosts (agent.ValidateFQDN / ValidateWildcardDomain / host.Name)


def _dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {q(name)} too long (max 255)"
    if len(name) == 0:
        return "empty domain name not allowed"
    return None


def _dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    tld = parts[-1]
    if tld.lstrip("+-").isdigit():
        return f"domain name {q(domain)} invalid (top level domain {q(tld)} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # trailing dot: "istio.io."
        if not is_dns1123_label(label):
            return f"domain name {q(domain)} invalid (label {q(label)} invalid)"
    return None


def validate_fqdn(fqdn: str) -> str | None:
    return _dns1123_preconditions(fqdn) or _dns1123_labels(fqdn)


def validate_wildcard_domain(domain: str) -> str | None:
    """A valid FQDN that may have a wildcard in its first label only (``*``, ``*.foo.com``, ``*-x.com``)."""
    err = _dns1123_preconditions(domain)
    if err:
        return err
    first, dot, rest = domain.partition(".")
    if not is_wildcard_dns1123_label(first):
        return f"domain name {q(domain)} invalid (label {q(first)} invalid)"
    if dot:
        return _dns1123_labels(rest)
    return None


def validate_partial_wildcard(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {q(host)} not allowed"
    return None


def validate_wildcard_domain_for_gateway_vs(sni: bool, domain: str) -> str | None:
    """``ValidateWildcardDomainForVirtualServiceBoundToGateway``: also allows AUTO_PASSTHROUGH SNI names
    ``outbound_.<PORT>_._.<HOSTNAME>``."""
    err = _dns1123_preconditions(domain)
    if err:
        return err
    if sni and domain.startswith("outbound_"):
        parts = domain.split("_")
        fmt = "outbound_.<PORT>_._.<HOSTNAME>"
        if len(parts) < 4:
            return f"domain name {domain} invalid, should follow '{fmt}' format"
        port = parts[1].strip(".")
        hostname = parts[3].strip(".")
        if parts[0] != "outbound":
            return f"domain name {q(domain)} invalid (label {q(parts[0])} invalid)"
        if not re.search(r"[0-9]", port):
            return f"domain name {q(domain)} invalid (label {q(port)} invalid). should follow {fmt} format"
        if not re.search(r"[a-zA-Z]", hostname):
            return (
                f"domain name {q(domain)} invalid (label {q(hostname)} invalid). should follow {fmt} format"
            )
        return None
    return validate_wildcard_domain(domain)


def is_wildcarded(host: str) -> bool:
    return host.startswith("*")


def host_matches(a: str, b: str) -> bool:
    """Istio ``host.Name.Matches``: either host may be a wildcard."""
    aw, bw = is_wildcarded(a), is_wildcarded(b)
    if aw:
        if bw:
            return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio ``host.Name.SubsetOf``: every host matched by ``a`` is matched by ``b``."""
    if is_wildcarded(a):
        return is_wildcarded(b) and a[1:].endswith(b[1:])
    if is_wildcarded(b):
        return a.endswith(b[1:])
    return a == b


def _sidecar_or_gateway_hostname_part(hostname: str, is_gateway: bool) -> list[str]:
    errs: list[str] = []
    if hostname != "*" and "." not in hostname:
        errs.append("short names (non FQDN) are not allowed")
    err = validate_wildcard_domain(hostname)
    if err and (not is_gateway or not is_ip(hostname)):
        errs.append(err)
    p = validate_partial_wildcard(hostname)
    if p:
        errs.append(p)
    return errs


def validate_namespace_slash_wildcard_hostname(hostname: str, is_gateway: bool) -> list[str]:
    """Sidecar egress hosts and Gateway server hosts: ``ns/dnsName`` (gateways also accept ``dnsName``)."""
    ns, sep, name = hostname.partition("/")
    if not sep:
        if is_gateway:
            return _sidecar_or_gateway_hostname_part(hostname, True)
        return ["host must be of form namespace/dnsName"]
    errs: list[str] = []
    if not ns or not name:
        errs.append("config namespace and dnsName in host entry cannot be empty")
    if "/" in name:
        errs.append(f"host {q(hostname)} must contain exactly one '/'")
    if not is_gateway:
        if ns not in ("*", ".", "~") and not is_dns1123_label(ns):
            errs.append(f"invalid namespace value {q(ns)} in sidecar")
    elif ns not in ("*", ".") and not is_dns1123_label(ns):
        errs.append(f"invalid namespace value {q(ns)} in gateway")
    errs.extend(_sidecar_or_gateway_hostname_part(name, is_gateway))
    return errs


# ==================================================================================================
# Addresses and ports


def is_ip(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


def validate_ip_address(addr: str) -> str | None:
    return None if is_ip(addr) else f"{addr} is not a valid IP"


def validate_ip_subnet(subnet: str) -> str | None:
    """``a.b.c.d/xx``, ``2001:1::1/64`` or a plain address."""
    if subnet.count("/") == 1:
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            return f"{subnet} is not a valid CIDR block"
        return None
    return validate_ip_address(subnet)


def validate_port(port: int) -> str | None:
    if 1 <= port <= 65535:
        return None
    return f"port number {port} must be in the range 1..65535"


def validate_port_name(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


def validate_unix_address(addr: str) -> str | None:
    if not addr:
        return "unix address must not be empty"
    if addr.startswith("@"):
        return None
    if not addr.startswith("/") or addr.endswith("/"):
        return f"{addr} is not an absolute path to a file"
    return None


# Istio's protocol names (pkg/config/protocol); matching is case-insensitive.
PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
    "hbone": "HBONE",
}
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-Web", "HTTP_PROXY"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
TCP_PROTOCOLS = frozenset({"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"})


def parse_protocol(name: str | None) -> str | None:
    """Istio's canonical protocol name, or None (``Unsupported``)."""
    if not name:
        return None
    return PROTOCOLS.get(name.lower())


def validate_protocol(name: str | None) -> str | None:
    if name and parse_protocol(name) is None:
        return f"unsupported protocol: {name}"
    return None


# ==================================================================================================
# Durations and percentages


_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def duration_nanos(value: str) -> int:
    """A duration string in whole nanoseconds (a ``google.protobuf.Duration`` has nanosecond resolution;
    ``parse_duration``'s timedelta keeps only microseconds, which would hide "2.000000001s")."""
    sign = -1 if value.startswith("-") else 1
    total = sum(
        (Fraction(num) * _NANOS_PER_UNIT[unit] for num, unit in _DURATION_PART.findall(value)), Fraction(0)
    )
    return sign * int(total)  # protobuf truncates digits past the nanosecond


def validate_duration(value: str | None) -> str | None:
    """Istio's ``ValidateDuration``: at least 1ms, whole milliseconds."""
    if value is None or not is_duration(value):
        return None  # syntax is checked by the schema
    nanos = duration_nanos(value)
    if nanos < 1_000_000:
        return "duration must be greater than 1ms"
    if nanos % 1_000_000 != 0:
        return "only durations to ms precision are supported"
    return None


def validate_percent(value: int | None) -> str | None:
    if value is not None and not 0 <= value <= 100:
        return f"percentage {value} is not in range 0..100"
    return None


def validate_percentage(value: float | None) -> str | None:
    """``Percent{value}``: 0.0, or in [0.0001, 100.0]."""
    if value is None:
        return None
    if value < 0.0 or value > 100.0 or (0.0 < value < 0.0001):
        return f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


def go_float(value: float) -> str:
    """A float64 as Go's ``%v`` prints it (``strconv.FormatFloat(v, 'g', -1, 64)``): the shortest
    round-tripping digits, in exponent form when the exponent is < -4 or >= 6 ("101", "0.001", "1e-05",
    "1e+06"), unlike Python's ``str`` ("101.0", "1e-05", "1000000.0")."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    # Python's repr is also the shortest representation that round-trips.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) - 1 + int(exponent)  # decimal exponent of the first digit
    if point < -4 or point >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if point < 0 else '+'}{abs(point):02d}"
    if point < 0:
        return f"{sign}0.{'0' * (-point - 1)}{digits}"
    whole, frac = digits[: point + 1].ljust(point + 1, "0"), digits[point + 1 :]
    return f"{sign}{whole}{'.' + frac if frac else ''}"


# ==================================================================================================
# Regular expressions: Envoy uses RE2.

try:  # pragma: no cover - depends on the environment
    import re2 as _re2

    _RE2_OPTIONS = _re2.Options()
    _RE2_OPTIONS.log_errors = False
except Exception:  # ImportError, or a re2 module without Options
    _re2 = None

# Constructs Python's `re` accepts and RE2 does not.
_NON_RE2 = [
    (re.compile(r"\(\?[=!]"), "lookahead assertions are not supported"),
    (re.compile(r"\(\?<[=!]"), "lookbehind assertions are not supported"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]"), "backreferences are not supported"),
    (re.compile(r"\(\?P=\w+\)"), "backreferences are not supported"),
    (re.compile(r"\(\?>"), "atomic groups are not supported"),
    (re.compile(r"(?<!\\)(?:\\\\)*[*+?}]\+"), "possessive quantifiers are not supported"),
    (re.compile(r"\(\?\("), "conditionals are not supported"),
]


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid RE2 regular expression, or None."""
    if _re2 is not None:
        try:
            _re2.compile(pattern, _RE2_OPTIONS)
        except Exception as e:
            msg = e.args[0] if e.args else str(e)
            if isinstance(msg, bytes):
                msg = msg.decode(errors="replace")
            return f"error parsing regexp: {msg}"
        return None
    for rx, why in _NON_RE2:
        if rx.search(pattern):
            return f"error parsing regexp: {why}"
    try:
        re.compile(pattern)
    except re.error as e:
        return f"error parsing regexp: {e}"
    return None


def validate_string_regexp(pattern: str, where: str) -> str | None:
    if len(pattern) > 1024:
        return f'"{where}": regex is too large, max length allowed is 1024'
    err = regex_error(pattern)
    if err:
        return f'"{where}": {err}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)'
    return None


# ==================================================================================================
# HTTP headers

_TCHARS = r"!#$%&'*+\-.^_`|~A-Za-z0-9"
_HEADER_NAME_RE = re.compile(rf"^[{_TCHARS}]+$")
_STRICT_HEADER_NAME_RE = re.compile(r"^[-A-Za-z0-9]+$")
_HEADER_VALUE_RE = re.compile("^[^\x00-\x08\x0a-\x1f\x7f]*$")
PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
JWT_CLAIM_HEADER = "@request.auth.claims"


def routing_claim(name: str) -> list[str] | None:
    """The JWT claim path a VirtualService header key routes on, or None for an ordinary header.

    istio's `pkg/jwt/routing.go` ToRoutingClaim, quirks included (users' keys must mean what they mean
    to istiod): the prefix is compared case-insensitively; `@request.auth.claims.a.b` splits the rest
    at every `.`, `@request.auth.claims[a][b]` at every `][` (so `[a] [b]` is the single claim
    `a] [b`); `.` wins when both appear; a bare prefix, `.` alone or `[]` is no claim at all.
    """
    if not name.lower().startswith(JWT_CLAIM_HEADER):
        return None
    rest = name[len(JWT_CLAIM_HEADER) :]
    if rest.startswith(".") and len(rest) > 1:
        return rest[1:].split(".")
    if rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        return rest[1:-1].split("][")
    return None


def is_jwt_claim_route(name: str) -> bool:
    """``@request.auth.claims.X[.Y]`` or ``@request.auth.claims[X][Y]`` (routing on JWT claims)."""
    return routing_claim(name) is not None


def validate_header_name_or_jwt_claim(name: str) -> str | None:
    if name == "":
        return "header name cannot be empty"
    if is_jwt_claim_route(name) or name in PSEUDO_HEADERS:
        return None
    if not _HEADER_NAME_RE.match(name):
        return f"header name {name} is not a valid header name"
    return None


def validate_strict_header_name(name: str) -> str | None:
    if name == "":
        return "header name cannot be empty"
    if not _STRICT_HEADER_NAME_RE.match(name):
        return f"header name {name} is not a valid header name"
    return None


def validate_cors_header_name(name: str) -> str | None:
    if name == "":
        return "header name cannot be empty"
    if name == "*":
        return None
    if not _HEADER_NAME_RE.match(name):
        return f"header name {name} is not a valid header name"
    return None


def is_internal_header(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def validate_header_with_authority_operation_name(name: str) -> str | None:
    """Names for request header set/add (``:authority``/``host`` allowed: they rewrite the authority)."""
    if name == "":
        return "header name cannot be empty"
    if is_internal_header(name) and not is_authority_header(name):
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


def validate_header_operation_name(name: str) -> str | None:
    """Names for request header remove and response header operations."""
    if name == "":
        return "header name cannot be empty"
    if name.lower() == "host":
        return f'invalid header "{name}": cannot set Host header'
    if is_internal_header(name):
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


def _envoy_header_value_error(value: str) -> str | None:
    """Port of Envoy's header value formatter parser (``%VAR%``, ``%VAR(args)%``, ``%%``)."""
    pos, state = 0, "literal"
    n = len(value)
    while pos < n:
        ch = value[pos]
        has_next = pos + 1 < n
        if state == "literal":
            if ch == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = "varname"
        elif state == "varname":
            if ch == "%":
                state = "literal"
            elif ch == "(":
                state = "expect_array"
        elif state == "expect_array":
            if ch == "[":
                state = "expect_string"
            elif ch != " ":
                state = "string"
        elif state == "expect_delim_or_end":
            if ch == ",":
                state = "expect_string"
            elif ch == "]":
                state = "expect_args_end"
            elif ch != " ":
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == "expect_string":
            if ch == '"':
                state = "string"
            elif ch != " ":
                return "invalid header configuration. Expecting '\"'"
        elif state == "string":
            if ch == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = "expect_var_end"
            elif ch == '"':
                state = "expect_delim_or_end"
        elif state == "expect_args_end":
            if ch == ")":
                state = "expect_var_end"
            elif ch != " ":
                return "invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'"
        elif state == "expect_var_end":
            if ch == "%":
                state = "literal"
            elif ch != " ":
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != "literal":
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None


def validate_header_value(value: str) -> str | None:
    if not _HEADER_VALUE_RE.match(value):
        return f"header value configuration {value} is invalid"
    err = _envoy_header_value_error(value)
    return f"header value configuration: {err}" if err else None


# ==================================================================================================
# exportTo, selectors, gateway names


def validate_export_to(
    r: Report,
    path: str,
    namespace: str | None,
    export_to: list[str],
    *,
    service_entry: bool = False,
    dr_selector: bool = False,
) -> None:
    """`namespace` None: MeshConfig's defaults, where `.` stands for each resource's own namespace."""
    if not export_to:
        return
    seen: set[str] = set()
    for i, e in enumerate(export_to):
        p = join(path, i)
        if e == "." and namespace is None:
            if e in seen:
                r.error(p, f"duplicate entries in exportTo for entry {e}")
            seen.add(e)
            continue
        key = namespace if e == "." else e
        if key in seen:
            if key != e:
                r.error(p, f"duplicate entries in exportTo: . and current namespace {namespace}")
            else:
                r.error(p, f"duplicate entries in exportTo for entry {e}")
            continue
        if service_entry and e == "~":
            seen.add(key)
        elif key == "~":
            r.error(p, "exportTo ~ (none) is not allowed for Istio configuration objects")
        elif key not in ("*",) and not is_dns1123_label(key):
            r.error(p, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        else:
            seen.add(key)
    if dr_selector and seen:
        if namespace in seen:
            if len(seen) > 1:
                r.error(
                    path, "destination rule with workload selector cannot have multiple entries in exportTo"
                )
        else:
            r.error(
                path, "destination rule with workload selector cannot have exportTo beyond current namespace"
            )
    if "*" in seen and len(export_to) > 1:
        r.error(path, "cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(export_to) > 1:
        r.error(path, "cannot export service entry to no one (~) and someone")


def validate_selector_labels(
    r: Report, path: str, labels: Mapping[str, str] | None, *, warn_empty: bool = True
) -> None:
    """``validateWorkloadSelector`` / ``ValidateAlphaWorkloadSelector``."""
    if labels is None:
        return
    for k, v in labels.items():
        if k == "":
            r.error(join(path, k), f'empty key is not supported in selector: "{k}={v}"')
        if "*" in k or "*" in v:
            r.error(join(path, k), f'wildcard is not supported in selector: "{k}={v}"')
    if not labels and warn_empty:
        r.warn(path, "workload selector specified without labels")


def validate_gateway_names(r: Report, path: str, names: list[str]) -> None:
    for i, name in enumerate(names):
        p = join(path, i)
        ns, sep, gw = name.partition("/")
        if not sep:
            if "." in name:
                parts = name.split(".")
                r.warn(
                    p,
                    f'using legacy gatewayName format "{name}"; prefer the <namespace>/<name> format: '
                    f'"{parts[1]}/{parts[0]}"',
                )
            r.error(p, validate_fqdn(name))
            continue
        if not ns or not gw:
            r.error(p, "config namespace and gateway name cannot be empty")
        if not is_dns1123_label(ns):
            r.error(p, f'invalid value for namespace: "{ns}"')
        if not is_dns1123_label(gw):
            r.error(p, f'invalid value for gateway name: "{gw}"')


VALID_CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    }
)
VALID_ECDH_CURVES = frozenset({"P-224", "P-256", "P-521", "P-384", "X25519", "CECPQ2", "X25519MLKEM768"})


def is_valid_cipher_suite(cs: str) -> bool:
    if cs in ("", "ALL"):
        return True
    if not cs[0].isalnum():  # "-AES128-SHA", "+..." operators
        return True
    return cs in VALID_CIPHER_SUITES


GRPC_STATUS = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def go_atoi(text: str) -> int | None:
    """Go's strconv.Atoi: an optional sign and ASCII digits only (Python's int() also takes spaces,
    underscores and non-ASCII digits); None where Atoi fails."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(text)


def is_http_status_text(code: int) -> bool:
    """Go's ``http.StatusText(code) != ""``."""
    try:
        http.HTTPStatus(code)
    except ValueError:
        return False
    return True


# ==================================================================================================
# The mesh's root namespace (MeshConfig rootNamespace); the mesh runner may change it.

_ROOT_NAMESPACE = ["istio-system"]


def root_namespace() -> str:
    return _ROOT_NAMESPACE[0]


def set_root_namespace(namespace: str) -> None:
    """Used by validators that warn about policies in the root namespace."""
    _ROOT_NAMESPACE[0] = namespace


# ==================================================================================================
# Certificate pins (ServerTLSSettings verifyCertificateSpki / verifyCertificateHash): Envoy loads only a
# base64 SHA-256 (32 bytes) or a hex one (colons allowed) and NACKs the whole listener for anything else.


def is_spki_pin(pin: str) -> bool:
    try:
        return len(pin) == 44 and len(base64.b64decode(pin, validate=True)) == 32
    except ValueError:
        return False


def is_hash_pin(pin: str) -> bool:
    digits = pin.replace(":", "")
    return len(digits) == 64 and len(pin) <= 95 and all(c in string.hexdigits for c in digits)
