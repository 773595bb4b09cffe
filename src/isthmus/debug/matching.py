"""Envoy's virtual-host and route selection, in Python, on route configs in Envoy's JSON form.

Follows Envoy's `source/common/router/config_impl.cc` (RouteMatcher::findVirtualHost,
findWildcardVirtualHost, RouteEntryImplBase::matchRoute and the path matchers),
`source/common/http/header_utility.cc` (matchHeaders) and `source/common/router/config_utility.cc`
(QueryParameterMatcher), for everything Isthmus generates:

- virtual hosts: exact domains, then `*suffix` wildcards (longest first, never the whole host), then
  `prefix*` wildcards (longest first), then `*`; hosts compared lower-cased; the port stays part of the
  host unless `ignore_port_in_host_matching`;
- routes in order, first match wins: `prefix` / `path` / `safe_regex` (whole path, RE2) /
  `path_separated_prefix` on the path without query and fragment, `case_sensitive` (default true),
  `connect_matcher` (CONNECT requests only, which match nothing else), `headers` (`string_match`,
  `present_match`, `invert_match`, `treat_missing_header_as_empty`, the legacy `exact_match`/
  `prefix_match`/`safe_regex_match`/...; several values of a header joined with ","), and
  `query_parameters` (first value, URL-decoded; `present_match`; no matcher = present), and
  `dynamic_metadata` (`source/common/common/matchers.cc` MetadataMatcher/ValueMatcher) on the metadata
  the filters before the router left: the JWT claims of VirtualService `@request.auth.claims` routes
  are read from the request's bearer token, as a gateway's jwt_authn stores them once it verified the
  token (offline the signature is not checked: a token the gateway rejects gets a 401, not a route).

The request path is normalized as the HTTP connection manager that serves the route config does
(MeshConfig `pathNormalization`: `path_with_escaped_slashes_action`, `normalize_path` — RFC 3986 dot
segments, backslashes, percent-encoded unreserved characters decoded — and `merge_slashes`; istiod's
default when the HCM is not known), and the headers the connection manager adds before routing
(`x-forwarded-proto`, `x-request-id`) are added when the request has none.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:  # RE2, as Envoy's safe_regex (a dependency of isthmus); `re` as a fallback.
    import re2 as _re
except ImportError:  # pragma: no cover
    import re as _re  # type: ignore[no-redef]


# --- the request --------------------------------------------------------------------------------

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
SPACE_DELIMITED_CLAIMS = ("permission", "scope")


@dataclass(frozen=True)
class PathNormalization:
    """An HCM's path settings (what MeshConfig `pathNormalization` sets); the default is istiod's
    DEFAULT mode: normalize_path only."""

    normalize: bool = True
    merge_slashes: bool = False
    unescape_slashes: bool = False  # path_with_escaped_slashes_action UNESCAPE_AND_FORWARD

    @classmethod
    def of_hcm(cls, hcm: Mapping[str, Any]) -> PathNormalization:
        """From an HCM in Envoy's JSON form (a config dump or a generated listener)."""
        normalize = hcm.get("normalize_path")
        if isinstance(normalize, dict):  # a BoolValue as some dumps spell it
            normalize = normalize.get("value")
        return cls(
            normalize=bool(normalize),  # unset: Envoy's own default, off
            merge_slashes=bool(hcm.get("merge_slashes")),
            unescape_slashes=hcm.get("path_with_escaped_slashes_action") == "UNESCAPE_AND_FORWARD",
        )


DEFAULT_NORMALIZATION = PathNormalization()


@dataclass
class Request:
    authority: str
    path: str = "/"  # as sent: path and query
    method: str = "GET"
    scheme: str = "http"
    headers: list[tuple[str, str]] = field(default_factory=list)  # lower-case names, no pseudo-headers
    path_normalization: PathNormalization = DEFAULT_NORMALIZATION

    @property
    def normalized_path(self) -> str:
        """The `:path` routes and filters see once the connection manager has normalized it."""
        return normalize_path(self.path, self.path_normalization)

    @property
    def is_connect(self) -> bool:
        return self.method.upper() == "CONNECT"

    def header_values(self, name: str) -> list[str] | None:
        name = name.lower()
        if name == ":authority" or name == "host":
            return [self.authority]
        if name == ":method":
            return [self.method]
        if name == ":path":
            return [self.normalized_path]
        if name == ":scheme":
            return [self.scheme]
        values = [v for k, v in self.headers if k == name]
        return values or None

    def jwt_payload(self) -> dict[str, Any] | None:
        """The claims of the `Authorization: Bearer` token (unverified), None without a readable one."""
        for value in self.header_values("authorization") or ():
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                continue
            parts = token.strip().split(".")
            if len(parts) != 3:
                return None
            try:
                raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
                payload = json.loads(raw)
            except (binascii.Error, ValueError):
                return None
            if not isinstance(payload, dict):
                return None
            # jwt_authn's normalize_payload_in_metadata: istiod always lists these space-delimited claims.
            for claim in SPACE_DELIMITED_CLAIMS:
                if isinstance(payload.get(claim), str):
                    payload[claim] = payload[claim].split()
            return payload
        return None

    def dynamic_metadata(self) -> dict[str, Any]:
        """What a gateway's filters leave for the router: jwt_authn's verified payload, if any."""
        payload = self.jwt_payload()
        return {} if payload is None else {JWT_FILTER: {JWT_PAYLOAD: payload}}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "scheme": self.scheme,
            "headers": {k: v for k, v in self.headers},
        }
        payload = self.jwt_payload()
        if payload is not None:
            out["jwtClaims"] = payload
        return out


_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_from_url(
    url: str, method: str | None = None, headers: Sequence[tuple[str, str]] = (), *, add_defaults: bool = True
) -> Request:
    """The request Envoy sees for `url` sent through an HTTP proxy (absolute form, Host from the URL).

    `tcp://host:port` becomes a CONNECT to host:port. A `Host` header overrides the authority.
    """
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    hostport, slash, path = rest.partition("/")
    path = "/" + path if slash else "/"
    if "?" in hostport:  # http://host?x=1
        hostport, _, q = hostport.partition("?")
        path = "/?" + q
    if "#" in path:
        path = path.split("#", 1)[0]
    authority = hostport
    if scheme in _DEFAULT_PORTS and authority.endswith(f":{_DEFAULT_PORTS[scheme]}"):
        # Clients leave the default port out of Host.
        authority = authority[: -len(f":{_DEFAULT_PORTS[scheme]}")]
    hdrs: list[tuple[str, str]] = []
    for k, v in headers:
        k = k.strip().lower()
        if k == "host" or k == ":authority":
            authority = v.strip()
            continue
        hdrs.append((k, v))
    if scheme == "tcp":
        req = Request(authority=hostport, path="", method="CONNECT", scheme="http", headers=hdrs)
    else:
        req = Request(
            authority=authority, path=path, method=(method or "GET").upper(), scheme=scheme, headers=hdrs
        )
    if add_defaults:
        names = {k for k, _ in req.headers}
        if "x-forwarded-proto" not in names:
            req.headers.append(("x-forwarded-proto", req.scheme))
        if "x-request-id" not in names:
            req.headers.append(("x-request-id", str(uuid.uuid4())))
    return req


# --- path normalization (HCM normalize_path) ----------------------------------------------------

_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _decode_unreserved(path: str) -> str:
    out = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "%" and i + 3 <= len(path):
            hexpart = path[i + 1 : i + 3]
            if all(c in "0123456789abcdefABCDEF" for c in hexpart):
                decoded = chr(int(hexpart, 16))
                # Any other escape is kept as sent, its hex digits' case included.
                out.append(decoded if decoded in _UNRESERVED else "%" + hexpart)
                i += 3
                continue
        out.append(ch)
        i += 1
    return "".join(out)


# Envoy's own rules, not user regexes: the standard library's `re` (RE2 has no lookahead).
_DOT_PARAMS = re.compile(r"(^|/)(\.\.?);[^/]*(?=/|$)")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4; a `.` or `..` segment with path parameters (`..;x`) counts as a dot segment, as
    in Envoy's normalize_path since its path-parameter fix."""
    inp = _DOT_PARAMS.sub(r"\1\2", path)
    out: list[str] = []
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            if out:
                out.pop()
        elif inp == "/..":
            inp = "/"
            if out:
                out.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            nxt = inp.find("/", start)
            if nxt < 0:
                out.append(inp)
                inp = ""
            else:
                out.append(inp[:nxt])
                inp = inp[nxt:]
    return "".join(out) or "/"


_ESCAPED_SLASH = re.compile(r"%(2[fF]|5[cC])")
_SLASHES = re.compile(r"/{2,}")


def normalize_path(path: str, how: PathNormalization = DEFAULT_NORMALIZATION) -> str:
    """What the connection manager makes of the path (the query string is left alone), in Envoy's order
    (ConnectionManagerUtility::maybeNormalizePath): escaped slashes, then normalize_path, then
    merge_slashes."""
    p, q, query = path.partition("?")
    if how.unescape_slashes:
        p = _ESCAPED_SLASH.sub(lambda e: "/" if e.group(1).lower() == "2f" else "\\", p)
    if how.normalize:
        p = _remove_dot_segments(_decode_unreserved(p.replace("\\", "/")))
    if how.merge_slashes:
        p = _SLASHES.sub("/", p)
    return p + (q + query if q else "")


def path_only(path: str) -> str:
    """The path without query string and fragment: what path matchers see."""
    for sep in ("?", "#"):
        path = path.split(sep, 1)[0]
    return path


def query_params(path: str) -> dict[str, list[str]]:
    _, _, query = path.partition("?")
    query = query.split("#", 1)[0]
    out: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        out.setdefault(urllib.parse.unquote(k), []).append(urllib.parse.unquote(v) if eq else "")
    return out


# --- string matching ------------------------------------------------------------------------------


def _regex_full(pattern: str, value: str, ignore_case: bool = False) -> bool:
    try:
        if ignore_case:
            return _re.fullmatch("(?i)" + pattern, value) is not None
        return _re.fullmatch(pattern, value) is not None
    except Exception:  # an invalid regex never matches (Envoy would have refused the config)
        return False


def string_match(m: Mapping[str, Any], value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher."""
    ignore = bool(m.get("ignore_case"))
    v = value.lower() if ignore else value
    if "exact" in m:
        return v == (m["exact"].lower() if ignore else m["exact"])
    if "prefix" in m:
        return v.startswith(m["prefix"].lower() if ignore else m["prefix"])
    if "suffix" in m:
        return v.endswith(m["suffix"].lower() if ignore else m["suffix"])
    if "contains" in m:
        return (m["contains"].lower() if ignore else m["contains"]) in v
    if "safe_regex" in m:
        return _regex_full((m["safe_regex"] or {}).get("regex", ""), value)
    return m == {} or set(m) <= {"ignore_case"}  # an empty matcher matches anything


def describe_string_match(m: Mapping[str, Any]) -> str:
    ic = " (ignore case)" if m.get("ignore_case") else ""
    for kind in ("exact", "prefix", "suffix", "contains"):
        if kind in m:
            return f"{kind} {m[kind]!r}{ic}"
    if "safe_regex" in m:
        return f"regex {(m['safe_regex'] or {}).get('regex', '')!r}{ic}"
    return "any"


def header_matches(hm: Mapping[str, Any], request: Request) -> bool:
    values = request.header_values(hm.get("name", ""))
    invert = bool(hm.get("invert_match"))
    present = hm.get("present_match")
    value_keys = ("string_match", "exact_match", "prefix_match", "suffix_match", "contains_match")
    has_value_matcher = any(k in hm for k in (*value_keys, "safe_regex_match", "range_match"))
    if values is None and not hm.get("treat_missing_header_as_empty"):
        if has_value_matcher:
            return False  # a value matcher never matches a missing header, inverted or not
        want_present = True if present is None else bool(present)
        return want_present if invert else not want_present
    value = ",".join(values) if values else ""
    if "string_match" in hm:
        match = string_match(hm["string_match"], value)
    elif "exact_match" in hm:
        match = hm["exact_match"] == "" or value == hm["exact_match"]
    elif "prefix_match" in hm:
        match = value.startswith(hm["prefix_match"])
    elif "suffix_match" in hm:
        match = value.endswith(hm["suffix_match"])
    elif "contains_match" in hm:
        match = hm["contains_match"] in value
    elif "safe_regex_match" in hm:
        match = _regex_full((hm["safe_regex_match"] or {}).get("regex", ""), value)
    elif "range_match" in hm:
        rng = hm["range_match"]
        try:
            n = int(value)
            match = int(rng.get("start", 0)) <= n < int(rng.get("end", 0))
        except ValueError:
            match = False
    elif present is not None:
        match = bool(present)
    else:
        match = True  # no matcher: "present" in the legacy sense
    return match != invert


def describe_header_matcher(hm: Mapping[str, Any]) -> str:
    name = hm.get("name", "")
    neg = "not " if hm.get("invert_match") else ""
    if "string_match" in hm:
        return f"header {name} {neg}{describe_string_match(hm['string_match'])}"
    if hm.get("present_match") is not None:
        present = bool(hm["present_match"]) != bool(hm.get("invert_match"))
        return f"header {name} {'present' if present else 'absent'}"
    for key, label in (
        ("exact_match", "exact"),
        ("prefix_match", "prefix"),
        ("suffix_match", "suffix"),
        ("contains_match", "contains"),
    ):
        if key in hm:
            return f"header {name} {neg}{label} {hm[key]!r}"
    if "safe_regex_match" in hm:
        return f"header {name} {neg}regex {(hm['safe_regex_match'] or {}).get('regex', '')!r}"
    return f"header {name} present"


def query_matches(qm: Mapping[str, Any], params: Mapping[str, list[str]]) -> bool:
    values = params.get(qm.get("name", ""))
    if not values:
        return False
    if qm.get("present_match"):
        return True
    if "string_match" in qm:
        return string_match(qm["string_match"], values[0])
    return True


def describe_query_matcher(qm: Mapping[str, Any]) -> str:
    name = qm.get("name", "")
    if qm.get("present_match") or "string_match" not in qm:
        return f"query {name} present"
    return f"query {name} {describe_string_match(qm['string_match'])}"


_MISSING = object()  # a metadata path that leads nowhere (Envoy: a Value with no kind set)


def _metadata_value(metadata: Mapping[str, Any], mm: Mapping[str, Any]) -> Any:
    value: Any = metadata.get(mm.get("filter", ""), _MISSING)
    for seg in mm.get("path", []) or []:
        if not isinstance(value, dict) or seg.get("key") not in value:
            return _MISSING
        value = value[seg["key"]]
    return value


def value_matches(vm: Mapping[str, Any], value: Any) -> bool:
    """envoy.type.matcher.v3.ValueMatcher on a JSON value (`_MISSING` when there is none)."""
    if "or_match" in vm:
        return any(value_matches(x, value) for x in (vm["or_match"] or {}).get("value_matchers", []) or [])
    if "list_match" in vm:
        one_of = (vm["list_match"] or {}).get("one_of") or {}
        return isinstance(value, list) and any(value_matches(one_of, x) for x in value)
    if "present_match" in vm:
        return bool(vm["present_match"]) and value is not _MISSING
    if "null_match" in vm:
        return value is None
    if "string_match" in vm:
        return isinstance(value, str) and string_match(vm["string_match"] or {}, value)
    if "bool_match" in vm:
        return isinstance(value, bool) and value == bool(vm["bool_match"])
    if "double_match" in vm:
        dm = vm["double_match"] or {}
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if "exact" in dm:
            return float(value) == float(dm["exact"])
        rng = dm.get("range") or {}
        return float(rng.get("start", 0)) <= float(value) < float(rng.get("end", 0))
    return False


def metadata_matches(mm: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """envoy.type.matcher.v3.MetadataMatcher: the value at filter/path matches, XOR `invert`."""
    return value_matches(mm.get("value") or {}, _metadata_value(metadata, mm)) != bool(mm.get("invert"))


def _claim_value_matcher(vm: Mapping[str, Any]) -> Mapping[str, Any]:
    """The value part of istiod's "a list with one element that matches, or a value that matches"."""
    ors = (vm.get("or_match") or {}).get("value_matchers") or []
    if len(ors) == 2 and (ors[0].get("list_match") or {}).get("one_of") == ors[1]:
        return ors[1]
    return vm


def _describe_value(vm: Mapping[str, Any]) -> str:
    if "string_match" in vm:
        return describe_string_match(vm["string_match"] or {})
    if vm.get("present_match"):
        return "present"
    return json.dumps(vm, separators=(",", ":"))


def describe_metadata_matcher(mm: Mapping[str, Any]) -> str:
    path = [seg.get("key", "") for seg in mm.get("path", []) or []]
    value = mm.get("value") or {}
    if mm.get("filter") == JWT_FILTER and path[:1] == [JWT_PAYLOAD] and len(path) > 1:
        what = f"JWT claim {'.'.join(path[1:])}"
        value = _claim_value_matcher(value)
    else:
        what = f"metadata {mm.get('filter', '')}/{'/'.join(path)}"
    desc = _describe_value(value)
    if mm.get("invert"):
        return f"{what} absent" if desc == "present" else f"{what} not {desc}"
    return f"{what} {desc}"


def _describe_metadata_value(mm: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    value = _metadata_value(metadata, mm)
    if value is not _MISSING:
        return json.dumps(value)
    if mm.get("filter") == JWT_FILTER and JWT_FILTER not in metadata:
        return "missing: no JWT payload (no bearer token, or none that jwt_authn runs before routing on)"
    return "missing"


# --- virtual hosts --------------------------------------------------------------------------------


def port_start(host: str) -> int:
    """Envoy's HeaderUtility::getPortStart: index of the ':' before a numeric port, or -1."""
    i = host.rfind(":")
    if i < 0:
        return -1
    v6_end = host.rfind("]")
    if v6_end < 0 or v6_end < i:
        return i
    return -1


@dataclass
class VirtualHostMatch:
    vhost: dict[str, Any]
    domain: str  # the domain entry that matched
    how: str  # "exact", "suffix wildcard", "prefix wildcard", "default (*)"


def select_virtual_host(
    route_config: Mapping[str, Any], authority: str, *, ignore_port: bool | None = None
) -> VirtualHostMatch | None:
    if ignore_port is None:
        ignore_port = bool(route_config.get("ignore_port_in_host_matching"))
    exact: dict[str, tuple[dict[str, Any], str]] = {}
    suffixes: dict[str, tuple[dict[str, Any], str]] = {}
    prefixes: dict[str, tuple[dict[str, Any], str]] = {}
    default: tuple[dict[str, Any], str] | None = None
    for vh in route_config.get("virtual_hosts", []) or []:
        for domain in vh.get("domains", []) or []:
            d = domain.lower()
            if d == "*":
                if default is None:
                    default = (vh, domain)
            elif d.startswith("*"):
                suffixes.setdefault(d[1:], (vh, domain))
            elif d.endswith("*"):
                prefixes.setdefault(d[:-1], (vh, domain))
            else:
                exact.setdefault(d, (vh, domain))
    host = authority
    if ignore_port:
        i = port_start(host)
        if i >= 0:
            host = host[:i]
    host = host.lower()
    if host in exact:
        vh, d = exact[host]
        return VirtualHostMatch(vh, d, "exact")
    for key in sorted(suffixes, key=len, reverse=True):
        if len(key) >= len(host):
            continue  # "*.foo.com" never matches ".foo.com"
        if host.endswith(key):
            vh, d = suffixes[key]
            return VirtualHostMatch(vh, d, "suffix wildcard")
    for key in sorted(prefixes, key=len, reverse=True):
        if len(key) >= len(host):
            continue
        if host.startswith(key):
            vh, d = prefixes[key]
            return VirtualHostMatch(vh, d, "prefix wildcard")
    if default is not None:
        return VirtualHostMatch(default[0], default[1], "default (*)")
    return None


# --- routes ---------------------------------------------------------------------------------------


def _case(m: Mapping[str, Any]) -> bool:
    cs = m.get("case_sensitive")
    if isinstance(cs, dict):
        cs = cs.get("value", True)
    return True if cs is None else bool(cs)


def path_matches(m: Mapping[str, Any], request: Request) -> tuple[bool, str]:
    """(matches, description of the path condition)."""
    path = path_only(request.normalized_path)
    cs = _case(m)
    suffix = "" if cs else " (ignore case)"
    if "prefix" in m:
        pre = m["prefix"]
        ok = path.startswith(pre) if cs else path.lower().startswith(pre.lower())
        return ok, f"path prefix {pre!r}{suffix}"
    if "path" in m:
        want = m["path"]
        ok = path == want if cs else path.lower() == want.lower()
        return ok, f"path exact {want!r}{suffix}"
    if "safe_regex" in m:
        regex = (m["safe_regex"] or {}).get("regex", "")
        return _regex_full(regex, path, ignore_case=not cs), f"path regex {regex!r}{suffix}"
    if "path_separated_prefix" in m:
        pre = m["path_separated_prefix"]
        p = path if cs else path.lower()
        q = pre if cs else pre.lower()
        ok = p == q or p.startswith(q + "/")
        return ok, f"path separated prefix {pre!r}{suffix}"
    if "path_match_policy" in m:
        return False, "path template (not evaluated)"
    return True, "any path"


def describe_match(m: Mapping[str, Any]) -> str:
    if "connect_matcher" in m:
        return "CONNECT"
    parts = []
    _, desc = path_matches(m, Request(authority="", path="/"))
    parts.append(desc)
    for hm in m.get("headers", []) or []:
        parts.append(describe_header_matcher(hm))
    for qm in m.get("query_parameters", []) or []:
        parts.append(describe_query_matcher(qm))
    for mm in m.get("dynamic_metadata", []) or []:
        parts.append(describe_metadata_matcher(mm))
    return ", ".join(parts)


def route_mismatch(
    route: Mapping[str, Any], request: Request, metadata: Mapping[str, Any] | None = None
) -> str | None:
    """None when the route matches the request, else the first condition that fails.

    `metadata`: the dynamic metadata routing sees (default: what a gateway's jwt_authn would set).
    """
    m = route.get("match") or {}
    if "connect_matcher" in m:
        if request.is_connect:
            return _headers_and_query(m, request, metadata)
        return "matches CONNECT requests only"
    if request.is_connect:
        return "a CONNECT request only matches connect routes"
    ok, desc = path_matches(m, request)
    if not ok:
        return f"{desc} does not match {path_only(request.normalized_path)!r}"
    return _headers_and_query(m, request, metadata)


def _headers_and_query(
    m: Mapping[str, Any], request: Request, metadata: Mapping[str, Any] | None
) -> str | None:
    for hm in m.get("headers", []) or []:
        if not header_matches(hm, request):
            values = request.header_values(hm.get("name", ""))
            seen = "missing" if values is None else repr(",".join(values))
            return f"{describe_header_matcher(hm)} fails (value {seen})"
    params = query_params(request.path)
    for qm in m.get("query_parameters", []) or []:
        if not query_matches(qm, params):
            got = params.get(qm.get("name", ""))
            seen = "missing" if not got else repr(got[0])
            return f"{describe_query_matcher(qm)} fails (value {seen})"
    if m.get("dynamic_metadata"):
        if metadata is None:
            metadata = request.dynamic_metadata()
        for mm in m["dynamic_metadata"]:
            if not metadata_matches(mm, metadata):
                return (
                    f"{describe_metadata_matcher(mm)} fails (value {_describe_metadata_value(mm, metadata)})"
                )
    if m.get("runtime_fraction"):
        return None  # runtime fractions are not evaluated: treated as matching
    return None


@dataclass
class RouteMatch:
    route: dict[str, Any] | None
    index: int  # position in the virtual host, -1 when none
    skipped: list[tuple[int, dict[str, Any], str]]  # routes before it that did not match, with why


def select_route(
    vhost: Mapping[str, Any], request: Request, metadata: Mapping[str, Any] | None = None
) -> RouteMatch:
    skipped: list[tuple[int, dict[str, Any], str]] = []
    if metadata is None:
        metadata = request.dynamic_metadata()
    for i, route in enumerate(vhost.get("routes", []) or []):
        why = route_mismatch(route, request, metadata)
        if why is None:
            return RouteMatch(route=dict(route), index=i, skipped=skipped)
        skipped.append((i, dict(route), why))
    return RouteMatch(route=None, index=-1, skipped=skipped)
