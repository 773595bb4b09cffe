"""RDS: VirtualService HTTP routes to Envoy routes, sidecar and gateway route tables.

Follows istiod's `pilot/pkg/networking/core/route/route.go` (TranslateRoute, TranslateRouteMatch,
applyHTTPRouteDestination, redirects, direct responses, faults, CORS, mirrors, header operations),
`.../route/retry/retry.go` and `pilot/pkg/networking/core/httproute.go` (sidecar virtual hosts, domains,
duplicate handling) and `gateway.go` (gateway virtual hosts).

Sidecars are explicit HTTP proxies here (the app uses HTTP_PROXY), so the sidecar route table is
istiod's `http_proxy` table: every port's virtual hosts merged, non-80 ports with `host:port` domains.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.type.matcher.v3.metadata_pb2 import MetadataMatcher
from envoy.type.matcher.v3.value_pb2 import ValueMatcher
from google.protobuf import any_pb2

from isthmus.api.types import decode_base64
from isthmus.api.validation.common import go_atoi, is_http_status_text, routing_claim
from isthmus.model import hosts as h
from isthmus.model.destination_rules import MergedDestinationRule, effective_policy
from isthmus.model.durations import to_seconds
from isthmus.model.gateways import GatewayServer, hosts_for_namespace
from isthmus.model.ingress import uses_ingress_semantics
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import InboundPort, Snapshot
from isthmus.model.virtual_services import MESH_GATEWAY, VirtualServiceEntry
from isthmus.registry.types import Protocol, Service, ServicePort
from isthmus.xds.gen import authz, compression, headless, naming, proxy_headers, session, tls
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.guard import guarded
from isthmus.xds.gen.scope import same_imports, scope_key

RC = p.route_components
MAX_DIRECT_RESPONSE_BODY = 1024 * 1024

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip

_REDIRECT_CODES = {
    0: RC.RedirectAction.MOVED_PERMANENTLY,
    301: RC.RedirectAction.MOVED_PERMANENTLY,
    302: RC.RedirectAction.FOUND,
    303: RC.RedirectAction.SEE_OTHER,
    307: RC.RedirectAction.TEMPORARY_REDIRECT,
    308: RC.RedirectAction.PERMANENT_REDIRECT,
}


@dataclass
class RouteContext:
    snapshot: Snapshot
    proxy: Proxy
    # Services the proxy can route to, by hostname (its sidecar scope; all visible for gateways).
    services: Mapping[str, Service]
    gateway_names: frozenset[str] = frozenset({MESH_GATEWAY})
    # The gateway server has `tls` (istiod's RouteOptions.IsTLS): redirects default to https then.
    tls: bool = False
    _dr_cache: dict[str, MergedDestinationRule | None] = field(default_factory=dict)

    def destination_rule(self, hostname: str) -> MergedDestinationRule | None:
        if hostname not in self._dr_cache:
            svc = self.services.get(hostname)
            ns = svc.namespace if svc is not None else self.proxy.namespace
            # For an ExternalName alias, the rules of the service it names (Istio 1.21: DestinationRules
            # no longer apply to the alias's own hostname).
            self._dr_cache[hostname] = self.snapshot.destination_rules.lookup(
                self.proxy.namespace, self.proxy.labels, svc.hostname if svc is not None else hostname, ns
            )
        return self._dr_cache[hostname]


# --- matches --------------------------------------------------------------------------------


def _string_matcher(m: Any) -> p.string_matcher.StringMatcher | None:
    if m is None:
        return None
    if m.exact is not None:
        return p.string_matcher.StringMatcher(exact=m.exact)
    if m.prefix is not None:
        return p.string_matcher.StringMatcher(prefix=m.prefix)
    if m.suffix is not None:
        return p.string_matcher.StringMatcher(suffix=m.suffix)
    if m.regex is not None:
        return p.string_matcher.StringMatcher(safe_regex=p.regex_matcher.RegexMatcher(regex=m.regex))
    return None


def _is_catch_all_match(m: Any) -> bool:
    return m is None or (
        m.exact is None and m.prefix is None and m.suffix is None and (m.regex is None or m.regex == "*")
    )


def _header_matcher(name: str, m: Any) -> RC.HeaderMatcher:
    out = RC.HeaderMatcher(name=name)
    sm = None if _is_catch_all_match(m) else _string_matcher(m)
    if sm is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(sm)
    return out


def _query_matcher(name: str, m: Any) -> RC.QueryParameterMatcher:
    if not name:
        # istiod's validation accepts a `queryParams` key "", Envoy's QueryParameterMatcher needs a name
        # (min_len 1): raising leaves the VirtualService out (reported) instead of a NACKed route table.
        raise ValueError("queryParams: a query parameter match needs a non-empty parameter name")
    out = RC.QueryParameterMatcher(name=name)
    sm = None if _is_catch_all_match(m) else _string_matcher(m)
    if sm is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(sm)
    return out


def _claim_matcher(name: str, m: Any) -> MetadataMatcher | None:
    """istiod's translateMetadataMatch: a `@request.auth.claims...` key matches the JWT claim that
    gateway's jwt_authn verified (a string claim, or a list of which one element matches); None for
    an ordinary header.

    Where istiod passes a present-style match (`{}` or regex `*`, which validation lets through in
    withoutHeaders) on as a StringMatcher Envoy rejects (no pattern, or the RE2 `*`) and so NACKs the
    whole route table, we match "the claim is present", the meaning `*` has for headers.
    """
    path = routing_claim(name)
    if path is None:
        return None
    sm = None if _is_catch_all_match(m) else _string_matcher(m)
    if sm is None:
        return authz.jwt_claim_matcher(path, ValueMatcher(present_match=True))
    return authz.jwt_claim_matcher(path, ValueMatcher(string_match=sm))


# Envoy's RouteMatch.path_separated_prefix validation rule.
_SEPARATED_PREFIX = re.compile(r"[^?#]+[^?#/]")


def translate_route_match(match: Any | None, *, ingress_semantics: bool = False) -> RC.RouteMatch:
    """istiod's TranslateRouteMatch. `ingress_semantics` (a VirtualService derived from a Kubernetes
    Ingress): a prefix other than `/` matches whole path segments, as Ingress' Prefix path type does
    (`/foo` takes `/foo` and `/foo/bar`, not `/foobar`), with one trailing `/` dropped."""
    out = RC.RouteMatch(prefix="/")
    if match is None:
        return out
    headers: list[RC.HeaderMatcher] = []
    claims: list[tuple[str, MetadataMatcher]] = []
    for name, sm in (match.headers or {}).items():
        if (cm := _claim_matcher(name, sm)) is not None:
            claims.append((name, cm))
        else:
            headers.append(_header_matcher(name, sm))
    for name, sm in (match.without_headers or {}).items():
        if (cm := _claim_matcher(name, sm)) is not None:
            cm.invert = True  # no such claim, or a token without it, or no token at all
            claims.append((name, cm))
            continue
        hm = _header_matcher(name, sm)
        hm.invert_match = True
        if not hm.present_match:
            hm.treat_missing_header_as_empty = True
        headers.append(hm)
    headers.sort(key=lambda x: x.name)
    # istiod appends these in Go map order; sorted by key, the bytes stay the same from push to push.
    for _, cm in sorted(claims, key=lambda c: c[0]):
        out.dynamic_metadata.append(cm)
    uri = match.uri
    if uri is not None:
        if uri.exact is not None:
            out.path = uri.exact
        elif uri.prefix is not None:
            separated = uri.prefix.removesuffix("/")
            if ingress_semantics and uri.prefix != "/" and _SEPARATED_PREFIX.fullmatch(separated):
                out.path_separated_prefix = separated
            else:
                # A prefix Envoy's path_separated_prefix refuses (`?`, `#`, or `/` left at the end) would
                # get the whole route table NACKed, every other host on the port with it. The API server
                # accepts such Ingress paths; as a plain prefix it matches what it can: nothing for `?`
                # and `#` (Envoy matches paths without query and fragment), the written prefix otherwise.
                out.prefix = uri.prefix
        elif uri.regex is not None:
            out.safe_regex.regex = uri.regex
        elif uri.suffix is not None:
            # Validation refuses it (RouteMatch has no suffix path specifier); as istio/istio#61294 does,
            # a suffix that got here anyway becomes the equivalent regex, never the catch-all "/".
            out.safe_regex.regex = ".*" + re.escape(uri.suffix)
    out.case_sensitive.value = not bool(match.ignore_uri_case)
    if match.method is not None:
        headers.append(_header_matcher(":method", match.method))
    if match.authority is not None:
        headers.append(_header_matcher(":authority", match.authority))
    if match.scheme is not None:
        headers.append(_header_matcher(":scheme", match.scheme))
    out.headers.extend(headers)
    for name, sm in sorted((match.query_params or {}).items()):
        out.query_parameters.append(_query_matcher(name, sm))
    return out


def is_catch_all_route(r: RC.Route) -> bool:
    m = r.match
    which = m.WhichOneof("path_specifier")
    catch_all = (
        (which == "prefix" and m.prefix == "/")
        or (which == "path_separated_prefix" and m.path_separated_prefix == "/")
        or (which == "safe_regex" and m.safe_regex.regex in ("*", ".*"))
    )
    return catch_all and not m.headers and not m.query_parameters and not m.dynamic_metadata


def source_match(match: Any | None, proxy: Proxy, gateway_names: frozenset[str]) -> bool:
    """Istio's sourceMatchHTTP: match-level gateways, else sourceLabels and sourceNamespace."""
    if match is None:
        return True
    if match.gateways:
        return any(g in gateway_names for g in match.gateways)
    labels = match.source_labels or {}
    if all(proxy.labels.get(k) == v for k, v in labels.items()):
        return not match.source_namespace or match.source_namespace == proxy.namespace
    return False


# --- actions ----------------------------------------------------------------------------------


@dataclass
class HeaderOps:
    request_add: list[p.base.HeaderValueOption] = field(default_factory=list)
    request_remove: list[str] = field(default_factory=list)
    response_add: list[p.base.HeaderValueOption] = field(default_factory=list)
    response_remove: list[str] = field(default_factory=list)
    authority: str = ""


def _is_internal_header(key: str) -> bool:
    return key.startswith(":") or key.lower() == "host"


def _append_headers(
    headers: Mapping[str, str] | None, append: bool
) -> tuple[list[p.base.HeaderValueOption], str]:
    if not headers:
        return [], ""
    authority = ""
    out = []
    for key, value in headers.items():
        if key.lower() in (":authority", "host"):
            authority = value
        if _is_internal_header(key):
            continue
        out.append(
            p.base.HeaderValueOption(
                header=p.base.HeaderValue(key=key, value=value),
                append_action=p.base.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
                if append
                else p.base.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    out.sort(key=lambda o: o.header.key)
    return out, authority


def translate_headers(headers: Any | None) -> HeaderOps:
    ops = HeaderOps()
    if headers is None:
        return ops
    req, resp = headers.request, headers.response
    if req is not None:
        set_ops, set_auth = _append_headers(req.set, False)
        add_ops, add_auth = _append_headers(req.add, True)
        ops.request_add = set_ops + add_ops
        # A name with NUL/CR/LF (Envoy refuses it) names no header a request can have: nothing to remove.
        ops.request_remove = [k for k in req.remove or () if not _is_internal_header(k) and p.header_safe(k)]
        ops.authority = set_auth or add_auth
    if resp is not None:
        set_ops, _ = _append_headers(resp.set, False)
        add_ops, _ = _append_headers(resp.add, True)
        ops.response_add = set_ops + add_ops
        ops.response_remove = [
            k for k in resp.remove or () if not _is_internal_header(k) and p.header_safe(k)
        ]
    return ops


def _parse_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """retry.parseRetryOn: trimmed non-empty parts; integers Go's http.StatusText knows (no 306) are
    retriable status codes, everything else an Envoy retry_on name, in order."""
    codes: list[int] = []
    names: list[str] = []
    for part in retry_on.split(","):
        part = part.strip()
        if not part:
            continue
        code = go_atoi(part)
        if code is not None and is_http_status_text(code):
            codes.append(code)
        else:
            names.append(part)
    return ",".join(names), codes


def _default_retry_policy(consistent_hash: bool) -> RC.RetryPolicy:
    policy = RC.RetryPolicy(
        num_retries=p.u32(2),
        retry_on=DEFAULT_RETRY_ON,
        host_selection_retry_max_attempts=5,
    )
    if not consistent_hash:
        policy.retry_host_predicate.append(
            RC.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=p.pack(p.previous_hosts.PreviousHostsPredicate()),
            )
        )
    return policy


def convert_retry_policy(retries: Any | None, consistent_hash: bool) -> RC.RetryPolicy | None:
    """Istio's retry.ConvertPolicy: nil -> the default; attempts 0 -> none; else default + overrides."""
    if retries is None:
        return _default_retry_policy(consistent_hash)
    attempts = retries.attempts or 0
    if attempts <= 0:
        return None
    out = _default_retry_policy(consistent_hash)
    out.num_retries.value = int(attempts)
    if retries.retry_on:
        names, codes = _parse_retry_on(retries.retry_on)
        if codes and "retriable-status-codes" not in names:
            # istiod appends unconditionally (`out.RetryOn += ",retriable-status-codes"`), so codes alone
            # give ",retriable-status-codes"; Envoy skips the empty part (splitToken drops empties).
            names = f"{names},retriable-status-codes"
        out.retry_on = names
        out.retriable_status_codes.extend(codes)
    if retries.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(p.duration(to_seconds(retries.per_try_timeout)))
    if retries.retry_remote_localities:
        out.retry_priority.name = "envoy.retry_priorities.previous_priorities"
        out.retry_priority.typed_config.CopyFrom(
            p.pack(p.previous_priorities.PreviousPrioritiesConfig(update_frequency=2))
        )
    if retries.backoff is not None:
        out.retry_back_off.base_interval.CopyFrom(p.duration(to_seconds(retries.backoff)))
    if retries.retry_ignore_previous_hosts is not None:
        del out.retry_host_predicate[:]
        if retries.retry_ignore_previous_hosts:
            out.retry_host_predicate.append(
                RC.RetryPolicy.RetryHostPredicate(
                    name="envoy.retry_host_predicates.previous_hosts",
                    typed_config=p.pack(p.previous_hosts.PreviousHostsPredicate()),
                )
            )
    return out


def _shared_retry_policy(
    snapshot: Snapshot, retries: Any | None, consistent_hash: bool
) -> RC.RetryPolicy | None:
    """convert_retry_policy, once per snapshot for each retry setting (every rule of a VirtualService
    usually has the same, or the mesh default): shared, callers copy it. The VirtualServices and the mesh
    config own `retries` for the snapshot's lifetime, so its id is a stable key."""
    cache: dict[tuple[int, bool], tuple[Any, RC.RetryPolicy | None]] = snapshot.memo(
        ("retry_policies",), dict
    )
    key = (id(retries), consistent_hash)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (retries, convert_retry_policy(retries, consistent_hash))
    return hit[1]


def _set_timeout(action: RC.RouteAction, timeout: Any | None) -> None:
    """Istio's setTimeout: `timeout` (0s = disabled) and the deprecated `max_grpc_timeout` = timeout.

    Not `max_stream_duration`: once a route sets it, Envoy switches the route to its "new timeouts"
    and ignores `timeout` altogether (router FilterUtility::finalTimeout, `usingNewTimeouts`), which is
    why istiod keeps the deprecated field ("the replacement MaxStreamDuration has some regressions").
    """
    seconds = to_seconds(timeout) if timeout is not None else 0.0
    action.timeout.CopyFrom(p.duration(seconds))
    action.max_grpc_timeout.CopyFrom(p.duration(seconds))


def _fractional_from_percent(value: float) -> p.percent.FractionalPercent:
    return p.percent.FractionalPercent(
        numerator=int(value * 10000), denominator=p.percent.FractionalPercent.MILLION
    )


def _fractional_from_int(value: int) -> p.percent.FractionalPercent:
    return p.percent.FractionalPercent(numerator=int(value), denominator=p.percent.FractionalPercent.HUNDRED)


def _percent_value(obj: Any) -> float:
    """Percent values arrive as `{value: 10}` models or plain numbers."""
    return float(getattr(obj, "value", obj) or 0)


def translate_fault(fault: Any | None) -> p.fault.HTTPFault | None:
    if fault is None:
        return None
    out = p.fault.HTTPFault()
    has = False
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None:
        if delay.percentage is not None:
            out.delay.percentage.CopyFrom(_fractional_from_percent(_percent_value(delay.percentage)))
        else:
            out.delay.percentage.CopyFrom(_fractional_from_int(int(delay.percent or 0)))
        out.delay.fixed_delay.CopyFrom(p.duration(to_seconds(delay.fixed_delay)))
        has = True
    abort = fault.abort
    if abort is not None and (abort.http_status is not None or abort.grpc_status is not None):
        if abort.percentage is not None:
            out.abort.percentage.CopyFrom(_fractional_from_percent(_percent_value(abort.percentage)))
        if abort.http_status is not None:
            out.abort.http_status = envoy_status(int(abort.http_status), "fault.abort.httpStatus")
        else:
            out.abort.grpc_status = GRPC_CODES[abort.grpc_status]
        has = True
    return out if has else None


def translate_cors(cors: Any | None) -> p.cors.CorsPolicy | None:
    if cors is None:
        return None
    out = p.cors.CorsPolicy()
    out.forward_not_matching_preflights.value = cors.unmatched_preflights != "IGNORE"
    if cors.allow_origins:
        for m in cors.allow_origins:
            sm = _string_matcher(m)
            if sm is not None:
                out.allow_origin_string_match.append(sm)
    elif cors.allow_origin:
        for origin in cors.allow_origin:
            out.allow_origin_string_match.append(p.string_matcher.StringMatcher(exact=origin))
    out.filter_enabled.default_value.CopyFrom(_fractional_from_int(100))
    if cors.allow_credentials is not None:
        out.allow_credentials.value = bool(cors.allow_credentials)
    out.allow_headers = ",".join(cors.allow_headers or ())
    out.allow_methods = ",".join(cors.allow_methods or ())
    out.expose_headers = ",".join(cors.expose_headers or ())
    if cors.max_age is not None:
        out.max_age = str(int(to_seconds(cors.max_age)))
    return out


def destination_cluster(dest: Any, services: Mapping[str, Service], listen_port: int) -> str:
    """Istio's GetDestinationCluster: explicit port, else the service's only port, else the listener port."""
    if not dest.host:
        return "UnknownService"
    host, port = destination_host_port(dest, services, listen_port)
    return naming.outbound_cluster(port, dest.subset or "", host)


def destination_host_port(dest: Any, services: Mapping[str, Service], listen_port: int) -> tuple[str, int]:
    """The (hostname, port) of destination_cluster's cluster."""
    svc = services.get(dest.host)
    port = listen_port
    if dest.port is not None and dest.port.number:
        port = int(dest.port.number)
    elif svc is not None and len(svc.ports) == 1:
        port = svc.ports[0].port
    # An ExternalName alias's hostname maps to the service it names: its cluster.
    return (svc.hostname if svc is not None else dest.host), port


def _mirror_fraction(route: Any) -> p.percent.FractionalPercent | None:
    if route.mirror_percentage is not None:
        v = _percent_value(route.mirror_percentage)
        return _fractional_from_percent(v) if v > 0 else None
    if route.mirror_percent is not None:
        v = int(_percent_value(route.mirror_percent))
        return _fractional_from_int(v) if v > 0 else None
    return _fractional_from_int(100)


def _mirror_policy(cluster: str, fraction: p.percent.FractionalPercent) -> RC.RouteAction.RequestMirrorPolicy:
    policy = RC.RouteAction.RequestMirrorPolicy(cluster=cluster)
    policy.runtime_fraction.default_value.CopyFrom(fraction)
    policy.trace_sampled.value = False
    return policy


def checked_header_value(value: str, what: str) -> str:
    """`value` for a route field Envoy checks as a header value (host_rewrite_literal, host_redirect,
    path_redirect, prefix_rewrite, regex substitution). istiod's validation checks the values of `headers`
    operations but lets NUL/CR/LF through in `rewrite` and `redirect`; Envoy does not. Raising leaves the
    VirtualService out (build_vs_routes reports it) instead of getting every route NACKed."""
    if not p.header_safe(value):
        raise ValueError(f"{what} {value!r} holds NUL, CR or LF, which no request line or header can carry")
    return value


def consistent_hash_policy(ch: Any | None) -> RC.RouteAction.HashPolicy | None:
    if ch is None:
        return None
    if ch.http_header_name and not p.header_safe(ch.http_header_name):
        # No request carries a header whose name holds NUL/CR/LF, and Envoy NACKs such a name: no hash
        # policy behaves exactly like one on a header that is always missing (a random pick).
        return None
    if ch.http_header_name:
        return RC.RouteAction.HashPolicy(
            header=RC.RouteAction.HashPolicy.Header(header_name=ch.http_header_name)
        )
    if ch.http_cookie is not None:
        cookie = RC.RouteAction.HashPolicy.Cookie(name=ch.http_cookie.name, path=ch.http_cookie.path or "")
        if ch.http_cookie.ttl is not None:
            cookie.ttl.CopyFrom(p.duration(to_seconds(ch.http_cookie.ttl)))
        for attr in getattr(ch.http_cookie, "attributes", None) or ():
            cookie.attributes.add(name=attr.name, value=attr.value or "")
        return RC.RouteAction.HashPolicy(cookie=cookie)
    if ch.use_source_ip:
        return RC.RouteAction.HashPolicy(
            connection_properties=RC.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        )
    if ch.http_query_parameter_name:
        return RC.RouteAction.HashPolicy(
            query_parameter=RC.RouteAction.HashPolicy.QueryParameter(name=ch.http_query_parameter_name)
        )
    return None


def _lb_hash(policy: Any | None) -> Any | None:
    lb = getattr(policy, "load_balancer", None) if policy is not None else None
    return lb.consistent_hash if lb is not None else None


def _port_level_hash(dest_port: int | None, policy: Any | None) -> Any | None:
    if dest_port is None or policy is None:
        return None
    for pls in policy.port_level_settings or ():
        if pls.port is not None and pls.port.number == dest_port:
            return _lb_hash(pls)
    return None


def hash_for_destination(ctx: RouteContext, dest: Any) -> Any | None:
    """Istio's hashForHTTPDestination: subset port-level > subset > DR port-level > DR top level."""
    if dest is None or not dest.host:
        return None
    dr = ctx.destination_rule(dest.host)
    if dr is None:
        return None
    port = int(dest.port.number) if dest.port is not None and dest.port.number else None
    top = dr.traffic_policy
    result = _lb_hash(top)
    pls_hash = _port_level_hash(port, top)
    subset_hash = subset_pls_hash = None
    if dest.subset:
        sub = dr.subset(dest.subset)
        if sub is not None and sub.traffic_policy is not None:
            subset_hash = _lb_hash(sub.traffic_policy)
            subset_pls_hash = _port_level_hash(port, sub.traffic_policy)
    return subset_pls_hash or subset_hash or pls_hash or result


def hash_for_service(ctx: RouteContext, svc: Service, port: int) -> Any | None:
    """Istio's hashForService: the port's setting when it has a consistentHash, else the top level's."""
    dr = ctx.destination_rule(svc.hostname)
    if dr is None or dr.traffic_policy is None:
        return None
    top = dr.traffic_policy
    return _port_level_hash(port, top) or _lb_hash(top)


def route_operation(r: RC.Route, vs_name: str, port: int) -> str:
    m = r.match
    which = m.WhichOneof("path_specifier")
    path = "/*"
    if which == "prefix":
        path = m.prefix + "*"
    elif which == "path":
        path = m.path
    elif which == "safe_regex":
        path = m.safe_regex.regex
    if r.HasField("route") and r.route.WhichOneof("cluster_specifier") == "cluster":
        parsed = naming.parse_outbound_cluster(r.route.cluster)
        if parsed is not None:
            return f"{parsed[2]}:{parsed[0]}{path}"
    return f"{vs_name}:{port}{path}"


def _config_metadata(vs: VirtualServiceEntry) -> p.base.Metadata:
    md = p.base.Metadata()
    md.filter_metadata["istio"].fields["config"].string_value = vs.config_path
    return md


def _apply_destination(
    ctx: RouteContext, out: RC.Route, vs: VirtualServiceEntry, http: Any, authority: str, listen_port: int
) -> None:
    hashes = [hash_for_destination(ctx, d.destination) for d in http.route or ()]
    # Istio drops the previous-hosts retry predicate only for a single destination with a consistent
    # hash (applyHTTPRouteDestination); weighted routes keep it whatever their destinations' hashes.
    consistent = len(hashes) == 1 and hashes[0] is not None
    retries = http.retries if http.retries is not None else ctx.snapshot.mesh.default_http_retry
    action = RC.RouteAction()
    retry = _shared_retry_policy(ctx.snapshot, retries, consistent)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    _set_timeout(action, http.timeout)
    rw = http.rewrite
    if rw is not None:
        if rw.uri_regex_rewrite is not None:
            action.regex_rewrite.pattern.regex = rw.uri_regex_rewrite.match
            action.regex_rewrite.substitution = checked_header_value(
                rw.uri_regex_rewrite.rewrite or "", "rewrite"
            )
        elif rw.uri:
            action.prefix_rewrite = checked_header_value(rw.uri, "rewrite uri")
        if rw.authority:
            authority = rw.authority
    if authority:
        action.host_rewrite_literal = checked_header_value(authority, "rewrite authority")
    if http.mirror is not None:
        fraction = _mirror_fraction(http)
        if fraction is not None:
            action.request_mirror_policies.append(
                _mirror_policy(destination_cluster(http.mirror, ctx.services, listen_port), fraction)
            )
    for mirror in http.mirrors or ():
        if mirror.destination is None:
            continue
        if mirror.percentage is not None:
            v = _percent_value(mirror.percentage)
            fraction = _fractional_from_percent(v) if v > 0 else None
        else:
            fraction = _fractional_from_int(100)
        if fraction is not None:
            action.request_mirror_policies.append(
                _mirror_policy(destination_cluster(mirror.destination, ctx.services, listen_port), fraction)
            )
    destinations = list(http.route or ())
    if len(destinations) == 1:
        d = destinations[0]
        action.cluster = destination_cluster(d.destination, ctx.services, listen_port)
        if d.headers is not None:
            ops = translate_headers(d.headers)
            out.request_headers_to_add.extend(ops.request_add)
            out.request_headers_to_remove.extend(ops.request_remove)
            out.response_headers_to_add.extend(ops.response_add)
            out.response_headers_to_remove.extend(ops.response_remove)
            if ops.authority and not authority:
                action.host_rewrite_literal = ops.authority
        hp = consistent_hash_policy(hashes[0])
        if hp is not None:
            action.hash_policy.append(hp)
    else:
        for d, hsh in zip(destinations, hashes, strict=True):
            if not d.weight:
                continue
            cw = action.weighted_clusters.clusters.add(
                name=destination_cluster(d.destination, ctx.services, listen_port)
            )
            cw.weight.value = int(d.weight)
            if d.headers is not None:
                ops = translate_headers(d.headers)
                cw.request_headers_to_add.extend(ops.request_add)
                cw.request_headers_to_remove.extend(ops.request_remove)
                cw.response_headers_to_add.extend(ops.response_add)
                cw.response_headers_to_remove.extend(ops.response_remove)
                if ops.authority:
                    cw.host_rewrite_literal = ops.authority
            hp = consistent_hash_policy(hsh)
            if hp is not None:
                action.hash_policy.append(hp)
    out.route.CopyFrom(action)


def _apply_redirect(out: RC.Route, redirect: Any, listen_port: int, tls: bool) -> bool:
    code = int(redirect.redirect_code or 0)
    if code not in _REDIRECT_CODES:
        return False
    action = RC.RedirectAction(response_code=_REDIRECT_CODES[code])
    if redirect.authority:
        action.host_redirect = checked_header_value(redirect.authority, "redirect authority")
    if redirect.prefix_rewrite:
        action.prefix_rewrite = checked_header_value(redirect.prefix_rewrite, "redirect prefixRewrite")
    elif redirect.uri:
        action.path_redirect = checked_header_value(redirect.uri, "redirect uri")
    if redirect.scheme:
        action.scheme_redirect = redirect.scheme
    if redirect.derive_port is not None or redirect.port is not None:
        if redirect.derive_port == "FROM_REQUEST_PORT":
            # Envoy cannot derive the port from the request; routes are built per listener port.
            action.port_redirect = listen_port
        elif redirect.port is not None:
            action.port_redirect = int(redirect.port)
        # No explicit :80 for http or :443 for https.
        scheme = redirect.scheme or ("https" if tls else "http")
        if (action.port_redirect, scheme) in ((80, "http"), (443, "https")):
            action.port_redirect = 0
    out.redirect.CopyFrom(action)
    return True


def envoy_status(status: int, what: str) -> int:
    """istiod's validateHTTPStatus accepts 200..600 (its own test has 600 valid), Envoy's FaultAbort and
    DirectResponseAction take [200, 600) (below 200 validation refuses): 600 would get the route table
    NACKed, so raising leaves the VirtualService out (build_vs_routes reports it)."""
    if not 200 <= status < 600:
        raise ValueError(f"{what} {status}: Envoy takes HTTP status codes from 200 to 599")
    return status


def _apply_direct_response(out: RC.Route, dr: Any) -> None:
    action = RC.DirectResponseAction(status=envoy_status(int(dr.status), "directResponse.status"))
    body = dr.body
    if body is not None:
        if body.string is not None:
            action.body.inline_string = body.string
        elif body.bytes is not None:
            # As validation reads it; a strict b64decode raised on what it accepts ("Incorrect padding").
            action.body.inline_bytes = decode_base64(body.bytes)
    out.direct_response.CopyFrom(action)


def translate_route(
    ctx: RouteContext, vs: VirtualServiceEntry, http: Any, match: Any | None, listen_port: int
) -> RC.Route | None:
    if match is not None and match.port and int(match.port) != listen_port:
        return None
    if not source_match(match, ctx.proxy, ctx.gateway_names):
        return None
    name = http.name or ""
    if match is not None and match.name:
        name = f"{name}.{match.name}"
    out = RC.Route(
        name=name,
        match=translate_route_match(match, ingress_semantics=uses_ingress_semantics(vs.config)),
        metadata=_config_metadata(vs),
    )
    if match is not None and match.stat_prefix:
        out.stat_prefix = match.stat_prefix
    ops = translate_headers(http.headers)
    out.request_headers_to_add.extend(ops.request_add)
    out.request_headers_to_remove.extend(ops.request_remove)
    out.response_headers_to_add.extend(ops.response_add)
    out.response_headers_to_remove.extend(ops.response_remove)
    if http.redirect is not None:
        if not _apply_redirect(out, http.redirect, listen_port, ctx.tls):
            return None
    elif http.direct_response is not None:
        _apply_direct_response(out, http.direct_response)
    else:
        _apply_destination(ctx, out, vs, http, ops.authority, listen_port)
    out.decorator.operation = route_operation(out, vs.name, listen_port)
    fault = translate_fault(http.fault)
    if fault is not None:
        out.typed_per_filter_config["envoy.filters.http.fault"].CopyFrom(p.pack(fault))
    cors = translate_cors(http.cors_policy)
    if cors is not None:
        out.typed_per_filter_config["envoy.filters.http.cors"].CopyFrom(p.pack(cors))
    sp = getattr(http, "session_persistence", None)
    if sp is not None and out.HasField("route"):
        out.typed_per_filter_config[session.FILTER].CopyFrom(p.pack(session.session_per_route(sp)))
    compression.apply_to_route(ctx.snapshot, ctx.destination_rule, out)
    return out


def build_vs_routes(ctx: RouteContext, vs: VirtualServiceEntry, listen_port: int) -> list[RC.Route]:
    """A VirtualService's routes; one that fails to translate is left out (and reported), not the table."""
    return guarded(
        ctx.snapshot,
        f"VirtualService {vs.namespace}/{vs.name}",
        lambda: _build_vs_routes(ctx, vs, listen_port),
        default=[],
    )


def shared_vs_routes(ctx: RouteContext, vs: VirtualServiceEntry, listen_port: int) -> list[RC.Route]:
    """build_vs_routes, once per snapshot for the sidecar scopes that see the VirtualService alike.

    Besides the VirtualService, port and snapshot, the routes depend on the proxy only through which
    matches apply to it (source_match) and, per destination host, the DestinationRule it gets (hash
    policies) and the service the scope has for it (destination_cluster's port). Those make the key;
    the DR index and registry own the objects, so ids are stable keys for the snapshot's lifetime.
    The routes are shared: callers copy them (RepeatedCompositeContainer.extend), never modify them."""
    hosts = ctx.snapshot.memo(("vs_hosts", id(vs)), lambda: tuple(dict.fromkeys(vs.http_destination_hosts())))
    applies = tuple(
        source_match(m, ctx.proxy, ctx.gateway_names) for http in vs.http for m in http.match or ()
    )
    deps = tuple((id(ctx.destination_rule(host)), id(ctx.services.get(host))) for host in hosts)
    cache: dict[tuple, list[RC.Route]] = ctx.snapshot.memo(("vs_routes",), dict)
    key = (id(vs), listen_port, applies, deps)
    routes = cache.get(key)
    if routes is None:
        routes = cache[key] = build_vs_routes(ctx, vs, listen_port)
    return routes


def _build_vs_routes(ctx: RouteContext, vs: VirtualServiceEntry, listen_port: int) -> list[RC.Route]:
    """Istio's BuildHTTPRoutesForVirtualService: rules in order, stop after the first catch-all."""
    out: list[RC.Route] = []
    for http in vs.http:
        if not http.match:
            r = translate_route(ctx, vs, http, None, listen_port)
            if r is not None:
                out.append(r)
            break
        catch_all = False
        for match in http.match:
            r = translate_route(ctx, vs, http, match, listen_port)
            if r is not None:
                out.append(r)
                if is_catch_all_route(r):
                    catch_all = True
                    break
        if catch_all:
            break
    return out


def _default_route_prototype(snapshot: Snapshot) -> RC.Route:
    """What every default route shares (one per snapshot: copied, then given its cluster)."""
    action = RC.RouteAction()
    _set_timeout(action, None)
    # BuildDefaultHTTPOutboundRoute converts the mesh default with hashPolicy=false: the previous-hosts
    # predicate stays even when the DestinationRule hashes.
    retry = convert_retry_policy(snapshot.mesh.default_http_retry, False)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return RC.Route(name=naming.DEFAULT_ROUTE, match=RC.RouteMatch(prefix="/"), route=action)


def default_route(ctx: RouteContext, svc: Service, port: int) -> RC.Route:
    ch = hash_for_service(ctx, svc, port)
    r = RC.Route()
    r.CopyFrom(ctx.snapshot.memo(("default_route",), lambda: _default_route_prototype(ctx.snapshot)))
    r.route.cluster = naming.outbound_cluster(port, "", svc.hostname)
    hp = consistent_hash_policy(ch)
    if hp is not None:
        r.route.hash_policy.append(hp)
    r.decorator.operation = f"{svc.hostname}:{port}/*"
    compression.apply_to_route(ctx.snapshot, ctx.destination_rule, r)
    return r


def _connect_route_prototype() -> RC.Route:
    action = RC.RouteAction()
    action.timeout.CopyFrom(p.duration(0))
    action.upgrade_configs.add(upgrade_type="CONNECT").connect_config.SetInParent()
    r = RC.Route(name="connect", route=action)
    r.match.connect_matcher.SetInParent()
    return r


_CONNECT_ROUTE = _connect_route_prototype()


def connect_route(cluster: str) -> RC.Route:
    """HTTP CONNECT to host:port becomes a TCP tunnel to that service port's cluster."""
    r = RC.Route()
    r.CopyFrom(_CONNECT_ROUTE)
    r.route.cluster = cluster
    return r


# --- DestinationRule tunnel (TrafficPolicy.TunnelSettings) ----------------------------------------
# istiod gives the tcp_proxy of a TCP destination whose DestinationRule has `tunnel` a `tunneling_config`
# {hostname: targetHost:targetPort, use_post: protocol == POST} (tunnelingconfig.Apply): the connection
# reaches the rule's host (a forward proxy) inside an HTTP CONNECT naming the target. Here TCP already
# arrives as a CONNECT that the sidecar's HCM terminates; for such a destination the route forwards the
# CONNECT instead (upgrade CONNECT without connect_config) with its authority rewritten to the target, so
# the forward proxy receives `CONNECT targetHost:targetPort` over the cluster's protocol (HTTP/2 for
# http2/grpc ports, else HTTP/1.1), as tcp_proxy's tunneling_config would send it. POST tunnels have no
# route equivalent (a route cannot change the method) and are refused at apply (api/support.py).


def tunnel_settings(dr: MergedDestinationRule | None, subset: str | None) -> Any | None:
    """istiod's tunnelingconfig.Apply: with a subset, that subset's own tunnel only (the top level's is not
    inherited, and an unknown subset has none); without one, the top level's."""
    if dr is None:
        return None
    if subset:
        sub = dr.subset(subset)
        policy = sub.traffic_policy if sub is not None else None
    else:
        policy = dr.traffic_policy
    return getattr(policy, "tunnel", None) if policy is not None else None


def tunnel_authority(tunnel: Any) -> str:
    """net.JoinHostPort(targetHost, targetPort): an IPv6 target is bracketed."""
    host = tunnel.target_host
    return f"[{host}]:{tunnel.target_port}" if ":" in host else f"{host}:{tunnel.target_port}"


def forward_connect(r: RC.Route, tunnel: Any | None) -> RC.Route:
    """Make a CONNECT route forward the CONNECT to its cluster, naming the tunnel's target, instead of
    terminating it (no-op without a tunnel)."""
    if tunnel is not None:
        for uc in r.route.upgrade_configs:
            if uc.upgrade_type == "CONNECT":
                uc.ClearField("connect_config")
        r.route.host_rewrite_literal = tunnel_authority(tunnel)
    return r


def is_auto_port(svc: Service, port: int) -> bool:
    return any(sp.port == port and sp.protocol is Protocol.AUTO for sp in svc.ports)


def _auto_port_tcp_rules(
    ctx: RouteContext, vses: Sequence[VirtualServiceEntry], services: Iterable[Service]
) -> dict[tuple[str, int], Any]:
    """The `tcp` rule that takes a CONNECT to each auto port of `services`, by (hostname, port), where
    one applies: istiod builds an auto port's TCP chain from the `tcp` rules as a TCP port's (TcpLoop).
    Empty at once when no VirtualService has `tcp` rules (the usual case: this runs per sidecar table)."""
    tcp_vses = [vs for vs in vses if vs.tcp]
    out: dict[tuple[str, int], Any] = {}
    if not tcp_vses:
        return out
    for svc in services:
        auto = [sp.port for sp in svc.ports if sp.protocol is Protocol.AUTO]
        if not auto:
            continue
        covering = [vs for vs in tcp_vses if any(h.matches(host, svc.hostname) for host in vs.hosts)]
        if not covering:
            continue
        for port in auto:
            rule = _tcp_rule(ctx, covering, port)
            if rule is not None:
                out[(svc.hostname, port)] = rule
    return out


def _auto_port_connect(
    ctx: RouteContext, svc: Service, port: int, cluster: str, rule: Any | None = None
) -> RC.Route | None:
    """The CONNECT route of a service port of sniffed protocol (None for other ports): istiod's auto ports
    keep a TCP chain beside the HTTP one, built from the applicable `tcp` rule (`rule`, from
    _auto_port_tcp_rules) else to the service itself, whose tcp_proxy takes the DestinationRule's tunnel,
    idle timeout, longest connection and source-IP hash (`tcp_proxy_policy`). HTTP ports get none of it:
    istiod builds tcp_proxies for TCP chains only."""
    if not is_auto_port(svc, port):
        return None
    if rule is not None:
        r = _tunnel_to(ctx, rule, port)
        # The clusters _tunnel_to sends to: the one destination, or the weighted ones of several.
        dests = [d for d in rule.route or () if d.destination is not None]
        targets = [
            (destination_host_port(d.destination, ctx.services, port), d.destination.subset)
            for d in dests
            if len(dests) == 1 or d.weight
        ]
    else:
        r = _tcp_proxy_settings(ctx, connect_route(cluster), svc.hostname, None)
        targets = [((svc.hostname, port), None)]
    terminated = any(uc.HasField("connect_config") for uc in r.route.upgrade_configs)
    # A terminated tunnel carries TCP, which its mesh mTLS must say (see tls.TCP_TUNNEL_ALPN_FILTER); a
    # forwarded CONNECT (DestinationRule tunnel) is HTTP to the forward proxy. The ALPN is the route's, not
    # each weighted cluster's: it is set when any destination is under mesh mTLS, whose server sidecar
    # would otherwise take the bytes for HTTP, as a TLS server of one's own rarely needs its ALPN.
    if terminated and any(
        tls.tunnel_takes_mesh_alpn(effective_policy(ctx.destination_rule(host), dport, subset).tls)
        for (host, dport), subset in targets
    ):
        tls.enable_tcp_tunnel_alpn(r)
    return r


# --- wire encoding of the default virtual hosts --------------------------------------------------
# A 1,000-service sidecar table is ~1,000 default virtual hosts (CONNECT + default route each): built
# through the protobuf API they were most of RDS. They are assembled as wire bytes from prototypes cut
# around the parts that vary (cluster, hash policy, decorator, domains), once per snapshot for all
# scopes that share them, in field-number order as upb writes them (bench/gen_check.py compares).

_ld = p.length_delimited
_T_ROUTE_ACTION = p.field_tag(RC.Route, "route")
_T_DECORATOR = p.field_tag(RC.Route, "decorator")
_T_OPERATION = p.field_tag(RC.Decorator, "operation")
_T_CLUSTER = p.field_tag(RC.RouteAction, "cluster")
_T_HASH_POLICY = p.field_tag(RC.RouteAction, "hash_policy")
_T_VH_NAME = p.field_tag(RC.VirtualHost, "name")
_T_VH_DOMAINS = p.field_tag(RC.VirtualHost, "domains")
_T_VH_ROUTES = p.field_tag(RC.VirtualHost, "routes")
_T_RC_NAME = p.field_tag(p.route.RouteConfiguration, "name")
_T_RC_VHOSTS = p.field_tag(p.route.RouteConfiguration, "virtual_hosts")
_VH_ATTEMPT_COUNT = RC.VirtualHost(include_request_attempt_count=True).SerializeToString(deterministic=True)


_ROUTE_CONFIG_TYPE_URL = "type.googleapis.com/" + p.route.RouteConfiguration.DESCRIPTOR.full_name
_VIRTUAL_HOST_TYPE_URL = "type.googleapis.com/" + RC.VirtualHost.DESCRIPTOR.full_name


def _prototype_segments(proto: RC.Route) -> tuple[list[bytes], list[bytes]]:
    """A route prototype's wire bytes cut at the route action (2) and decorator (5), and its action's
    cut at the cluster (1) and hash policies (15)."""
    route = RC.Route()
    route.CopyFrom(proto)
    route.ClearField("route")
    route.ClearField("decorator")
    return p.wire_segments(route, 2, 5), p.wire_segments(proto.route, 1, 15)


_CONNECT_SEGMENTS = _prototype_segments(_CONNECT_ROUTE)


def _route_bytes(
    segments: tuple[list[bytes], list[bytes]], cluster: str, hash_policy: bytes = b"", operation: str = ""
) -> bytes:
    """The prototype's bytes with its cluster, hash policy (field bytes) and decorator operation."""
    (r0, r1, r2), (_, a1, a2) = segments
    action = _ld(_T_CLUSTER, cluster.encode()) + a1 + hash_policy + a2
    decorator = _ld(_T_DECORATOR, _ld(_T_OPERATION, operation.encode())) if operation else b""
    return r0 + _ld(_T_ROUTE_ACTION, action) + r1 + decorator + r2


def _hash_policy_bytes(snapshot: Snapshot, ch: Any | None) -> bytes:
    """The route action's hash_policy field bytes for a DestinationRule's consistentHash (per snapshot:
    the DR index owns `ch`, so its id is a stable key)."""
    if ch is None:
        return b""
    cache: dict[int, bytes] = snapshot.memo(("hash_policy_bytes",), dict)
    out = cache.get(id(ch))
    if out is None:
        hp = consistent_hash_policy(ch)
        out = cache[id(ch)] = (
            _ld(_T_HASH_POLICY, hp.SerializeToString(deterministic=True)) if hp is not None else b""
        )
    return out


def _default_vhost_bytes(
    ctx: RouteContext, d: _DefaultVHost, svc: Service, domains: Sequence[str], tcp_rule: Any | None = None
) -> bytes:
    """A service port's default virtual host (CONNECT + default route) as wire bytes; `tcp_rule` is the
    `tcp` rule an auto port's CONNECT takes (see _auto_port_connect)."""
    snapshot = ctx.snapshot
    segments = snapshot.memo(
        ("default_route_segments",), lambda: _prototype_segments(_default_route_prototype(snapshot))
    )
    ch = hash_for_service(ctx, svc, d.port)
    auto = _auto_port_connect(ctx, svc, d.port, d.cluster, tcp_rule)
    connect = (
        _route_bytes(_CONNECT_SEGMENTS, d.cluster)
        if auto is None
        else auto.SerializeToString(deterministic=True)
    )
    out = (
        _ld(_T_VH_NAME, d.name.encode())
        + b"".join([_ld(_T_VH_DOMAINS, x.encode()) for x in domains])
        + _ld(_T_VH_ROUTES, connect)
        + _ld(
            _T_VH_ROUTES,
            _route_bytes(segments, d.cluster, _hash_policy_bytes(snapshot, ch), f"{d.name}/*"),
        )
        + (_VH_ATTEMPT_COUNT if proxy_headers.counts_attempts(snapshot) else b"")
    )
    if compression.in_use(snapshot) and compression.cluster_decompresses(ctx.destination_rule, d.cluster):
        # Off the byte fast path, as headless pinning below: the default route enables the decompressors.
        vh = RC.VirtualHost.FromString(out)
        for r in vh.routes:
            if r.name == naming.DEFAULT_ROUTE:
                compression.apply_to_route(snapshot, ctx.destination_rule, r)
        out = vh.SerializeToString(deterministic=True)
    if headless.pins_pods(svc):
        vh = RC.VirtualHost.FromString(out)
        _pin_pods(ctx, vh, svc, d.port)
        out = vh.SerializeToString(deterministic=True)
    return out


def _pin_pods(ctx: RouteContext, vh: RC.VirtualHost, svc: Service, port: int) -> None:
    """A headless service's vhost: its routes for each of its pods first (see `headless`)."""
    routes = headless.pinned_routes(ctx.snapshot, svc, port, list(vh.domains), list(vh.routes))
    del vh.routes[:]
    vh.routes.extend(routes)


# --- sidecar virtual hosts ----------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _k8s_name(hostname: str, domain: str) -> tuple[str, str] | None:
    """(name, namespace) of a `name.ns.svc.<domain>` host, else None (pure: cached for the process)."""
    suffix = f".svc.{domain}"
    if not hostname.endswith(suffix):
        return None
    ih = hostname.index(".svc.")
    ns_dot = hostname.find(".")
    if ns_dot < 0 or ns_dot + 1 > ih:
        return None
    return hostname[:ns_dot], hostname[ns_dot + 1 : ih]


def alt_hosts(hostname: str, proxy_namespace: str, domain: str) -> list[str]:
    """Istio's GenerateAltVirtualHosts for Kubernetes-style names relative to the proxy namespace
    (without the absolute form, see `_expanded_names`)."""
    parsed = _k8s_name(hostname, domain)
    if parsed is None:
        return []
    name, ns = parsed
    if ns == proxy_namespace:
        if name == "*":
            # `*.<ns>.svc.<domain>` from its own namespace: istiod's short form would be `*` (and `*:80`),
            # which claims every host and repeats the catch-all's `*`: Envoy refuses the whole table.
            return [f"{name}.{ns}.svc", f"{name}.{ns}"]
        return [name, f"{name}.{ns}.svc", f"{name}.{ns}"]
    return [f"{name}.{ns}", f"{name}.{ns}.svc"]


def _bracketed(host: str) -> str:
    """util.IPv6Compliant: an IPv6 address (any name with a colon) in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _with_ports(names: Iterable[str], port: int) -> list[str]:
    """appendDomainPort for each name: the name, then `name:port`."""
    out = []
    suffix = f":{port}"
    for n in names:
        if ":" in n:  # IPv6: bracketed, both alone and with the port
            out.append(_bracketed(n))
            out.append(naming.vhost_name(n, port))
        else:  # a name or IPv4 (every name of every service's vhost: spelled out without the calls)
            out.append(n)
            out.append(n + suffix)
    return out


def _expanded_names(hostname: str, port: int, proxy_namespace: str, domain: str) -> list[str]:
    """GenerateAltVirtualHosts with a port: the absolute FQDN (`name.`, PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN,
    on by default; not for an IP, though istiod adds its `ip.:port` all the same), then the Kubernetes
    short forms, each with and without `:port`."""
    out = [] if h.is_ip(hostname) else [hostname + "."]
    out.append(naming.vhost_name(hostname + ".", port))
    out.extend(_with_ports(alt_hosts(hostname, proxy_namespace, domain), port))
    return out


def _proxy_addresses(svc: Service) -> tuple[str, ...]:
    """GetAllAddressesForProxy for an IPv4-only proxy (every pod here has a loopback IPv4 address): the
    service's IPv4 addresses and CIDRs, else its default (first) address."""
    ipv4 = tuple(a for a in svc.addresses if ":" not in a)
    return ipv4 or svc.addresses[:1]


def service_domains(
    svc: Service, port: int, proxy_namespace: str, domain: str
) -> tuple[list[str], list[str]]:
    """istiod's generateVirtualHostDomains on the HTTP proxy port (listener port 0, so every name also
    with `:port`): (domains, expanded alt hosts). For the hostname and each ExternalName alias (Istio
    1.21: wherever Host: <service> matches, Host: <alias> matches too) the name and its expansions;
    a headless Kubernetes service then adds a `*.` copy of each (Host: <pod>.<service> reaches it);
    last the service's addresses."""
    domains: list[str] = []
    alts: list[str] = []
    for name in (svc.hostname, *svc.aliases):
        expanded = _expanded_names(name, port, proxy_namespace, domain)
        domains.extend(_with_ports((name,), port))
        domains.extend(expanded)
        alts.extend(expanded)
    if svc.headless and svc.is_kubernetes:
        domains.extend(["*." + d for d in domains])
    domains.extend(_with_ports(_proxy_addresses(svc), port))
    return domains, alts


@dataclass
class _DefaultVHost:
    """A service port's virtual host parts, for proxies in (local) or not in the service's namespace
    (all that its alt hosts depend on): once per snapshot, shared by its scopes."""

    port: int
    name: str  # vhost name, `hostname:port` (also its `known_fqdn` entry)
    cluster: str
    all: list[str]  # service_domains
    alts: frozenset[str]
    with_port: list[str]  # those with `:port` (a non-80 port's vhost has only these)
    lowered: frozenset[str]  # the vhost's domains lower-cased (distinct: `_first_of_each`)
    # All domains kept, by (id(hash), id(an auto port's DestinationRule), whether it decompresses).
    encoded: dict[tuple[int | None, int | None, bool], bytes] = field(default_factory=dict)

    @property
    def domains(self) -> list[str]:
        return self.all if self.port == 80 else self.with_port


def _first_of_each(domains: Iterable[str]) -> list[str]:
    """The domains in order, each once (case-insensitively, as Envoy compares them)."""
    out, seen = [], set()
    for d in domains:
        if d.lower() not in seen:
            seen.add(d.lower())
            out.append(d)
    return out


def _is_local(hostname: str, proxy_namespace: str, domain: str) -> bool:
    parsed = _k8s_name(hostname, domain)
    return parsed is not None and parsed[1] == proxy_namespace


def _default_vhost(ctx: RouteContext, svc: Service, port: int) -> _DefaultVHost:
    """The parts of the service port's vhost for this proxy's namespace (memoized per snapshot)."""
    domain = ctx.snapshot.mesh.domain_suffix
    cache: dict[tuple, _DefaultVHost] = ctx.snapshot.memo(("default_vhosts",), dict)
    key = (id(svc), port, _is_local(svc.hostname, ctx.proxy.namespace, domain))
    if svc.aliases:
        # An alias's short forms depend on its own namespace.
        key += tuple(_is_local(a, ctx.proxy.namespace, domain) for a in svc.aliases)
    found = cache.get(key)
    if found is None:
        domains, alts = service_domains(svc, port, ctx.proxy.namespace, domain)
        if headless.pins_pods(svc):
            # Its pods' IPs too (`<podIP>:<port>`, and `<podIP>` on port 80), last: see `headless`.
            domains.extend(headless.pod_ip_domains(ctx.snapshot, svc, port))
        # A name twice (a ServiceEntry address repeated, an alias equal to an address) is one domain:
        # Envoy refuses a repeated domain in a route table or VHDS virtual host (istiod's dedupeDomains).
        domains = _first_of_each(domains)
        with_port = [d for d in domains if ":" in d]
        found = cache[key] = _DefaultVHost(
            port=port,
            name=naming.vhost_name(svc.hostname, port),
            cluster=naming.outbound_cluster(port, "", svc.hostname),
            all=domains,
            alts=frozenset(alts),
            with_port=with_port,
            lowered=frozenset(d.lower() for d in (domains if port == 80 else with_port)),
        )
    return found


@dataclass(frozen=True)
class _DefaultsRecord:
    """A scope's default vhosts (`fields`) and what they were built against, for reuse after a change
    of VirtualServices only: the services that have one (`claimed`), the default vhosts' fqdns, and
    what the VirtualServices' vhosts took before them (`taken`: fqdns, names, lower-cased domains); and
    the names and domains taken once they are added."""

    claimed: frozenset[str]
    defaults_fqdn: frozenset[str]
    taken: tuple[frozenset[str], frozenset[str], frozenset[str]]
    fields: tuple[bytes, ...]
    field_names: tuple[str, ...]  # the vhost name of each of `fields`
    names: frozenset[str]
    used_domains: frozenset[str]
    # Whether an auto port's CONNECT in `fields` took a `tcp` rule: then they depend on VirtualServices
    # beyond `claimed`, and a later snapshot builds its own.
    tcp_routed: bool = False


@dataclass
class _VHostWrapper:
    port: int
    services: list[Service]
    vs_hosts: list[str]
    routes: list[RC.Route]
    vs: VirtualServiceEntry | None = None


def _separate_hosts(
    vs: VirtualServiceEntry,
    services: Mapping[str, Service],
    wildcard_owner: Mapping[str, VirtualServiceEntry],
) -> tuple[list[str], list[Service]]:
    plain: list[str] = []
    found: list[Service] = []
    for host in vs.hosts:
        if h.is_wildcard(host):
            matched = [
                svc
                for name, svc in services.items()
                if h.matches(name, host) and wildcard_owner.get(name) is vs
            ]
            if matched:
                found.extend(matched)
            else:
                plain.append(host)
            continue
        svc = services.get(host)
        if svc is not None:
            found.append(svc)
        else:
            plain.append(host)
    return plain, found


def _wildcard_owners(
    vses: Sequence[VirtualServiceEntry], services: Mapping[str, Service]
) -> dict[str, VirtualServiceEntry]:
    """A service belongs to the VS naming it exactly, else to the most specific wildcard VS (first wins)."""
    owners: dict[str, tuple[int, VirtualServiceEntry]] = {}
    exact = {host for vs in vses for host in vs.hosts if not h.is_wildcard(host)}
    for vs in vses:
        for host in vs.hosts:
            if not h.is_wildcard(host):
                continue
            for name in services:
                if name in exact or not h.matches(name, host):
                    continue
                cur = owners.get(name)
                if cur is None or len(host) > cur[0]:
                    owners[name] = (len(host), vs)
    return {name: vs for name, (_, vs) in owners.items()}


def sidecar_virtual_hosts(ctx: RouteContext, vses: Sequence[VirtualServiceEntry]) -> list[bytes]:
    """Every port's outbound virtual hosts, merged as istiod merges them for the HTTP proxy port, each
    as a RouteConfiguration `virtual_hosts` field's bytes (the default ones shared by the snapshot's
    scopes)."""
    # VirtualService hosts select services by the services' own hostnames only (istiod's servicesByName):
    # an ExternalName alias's hostname in `hosts` is an opaque name with a vhost of its own, so its rules
    # apply to Host: <alias fqdn> alone, not to the service it names nor to the alias's short names
    # (TestExternalNameServices). Destinations naming an alias still resolve through `ctx.services`.
    scoped = {name: svc for name, svc in ctx.services.items() if svc.hostname == name}
    owners = _wildcard_owners(vses, scoped)

    wrappers: list[_VHostWrapper] = []
    claimed: set[str] = set()
    for vs in vses:
        plain, found = _separate_hosts(vs, scoped, owners)
        by_port: dict[int, list[Service]] = {}
        for svc in found:
            for sp in svc.ports:
                if sp.protocol.is_http or sp.protocol is Protocol.AUTO:
                    by_port.setdefault(sp.port, []).append(svc)
        if not by_port:
            # Istio's port-80 rule: a VS whose hosts are not services only gets a vhost on port 80.
            by_port[80] = []
        for port, svcs in sorted(by_port.items()):
            routes = shared_vs_routes(ctx, vs, port)
            if not routes:
                continue
            # Its hosts that are not services get a vhost on every port of its services, as istiod's
            # BuildSidecarVirtualHostWrapper gives each port's wrapper all of them (`host:port` only, off 80).
            wrappers.append(_VHostWrapper(port=port, services=svcs, vs_hosts=plain, routes=routes, vs=vs))
            claimed.update(s.hostname for s in svcs)
    # The HTTP ports of services without a VirtualService: default vhosts, after the VirtualServices'.
    # After a change of VirtualServices only, they are the snapshot before's when what they depend on
    # beyond the (unchanged) services and DestinationRules is the same: the services that have a
    # VirtualService, and what the VirtualServices' vhosts took (names, domains, fqdns). With 1,000
    # services that is most of a scope's table, built again for each of the scopes a change reaches.
    ports_of = ctx.snapshot.memo(("vhost_ports",), dict)
    # The `tcp` rules that auto ports' CONNECTs take; the default vhosts' among them depend on the
    # VirtualServices (and on the proxy's labels, which scope_key holds), so they are never reused.
    auto_rules = _auto_port_tcp_rules(ctx, vses, scoped.values())
    tcp_routed = any(host not in claimed for host, _ in auto_rules)
    record_key = ("vhost_defaults", scope_key(ctx.snapshot, ctx.proxy))
    before = ctx.snapshot.routes_changed_from
    prior: _DefaultsRecord | None = before._memo.get(record_key) if before is not None else None
    if prior is not None and (
        prior.claimed != claimed
        or prior.tcp_routed
        or tcp_routed
        or not same_imports(before, ctx.snapshot, ctx.proxy)
    ):
        prior = None

    def default_vhosts() -> list[tuple[Service, _DefaultVHost]]:
        return [
            (svc, _default_vhost(ctx, svc, port))
            for svc in scoped.values()
            if svc.hostname not in claimed
            for port in _vhost_ports(ports_of, svc)[0]
        ]

    defaults = default_vhosts() if prior is None else None
    wrapper_fqdn: set[str] = set()
    for w in wrappers:
        for svc in w.services:
            wrapper_fqdn.add(f"{svc.hostname}:{w.port}")
            wrapper_fqdn.add(svc.hostname)
    if defaults is None:
        assert prior is not None
        defaults_fqdn = prior.defaults_fqdn
    else:
        defaults_fqdn = frozenset(x for svc, d in defaults for x in (d.name, svc.hostname))
    known_fqdn = wrapper_fqdn | defaults_fqdn

    names: set[str] = set()
    used_domains: set[str] = set()
    vhosts: list[bytes] = []
    order: list[str] = []  # each of `vhosts`' name

    def keep(domains: Iterable[str], alts: frozenset[str] | tuple[()]) -> list[str]:
        """The domains no earlier vhost has (and alt hosts that are no other service's name)."""
        kept = []
        for d in domains:
            low = d.lower()
            if low in used_domains or (d in alts and d in known_fqdn):
                continue
            used_domains.add(low)
            kept.append(d)
        return kept

    def add_vhost(host: str, w: _VHostWrapper, svc: Service | None) -> None:
        name = naming.vhost_name(host, w.port)
        if name in names:
            return
        names.add(name)
        if svc is None:
            domains = _with_ports([host], w.port)
            kept = keep(domains if w.port == 80 else [d for d in domains if ":" in d], ())
        else:
            d = _default_vhost(ctx, svc, w.port)
            kept = keep(d.domains, d.alts)
        if not kept:
            return
        vh = RC.VirtualHost(
            name=name, domains=kept, include_request_attempt_count=proxy_headers.counts_attempts(ctx.snapshot)
        )
        if svc is not None and len(w.services) == 1:
            cluster = naming.outbound_cluster(w.port, "", svc.hostname)
            rule = auto_rules.get((svc.hostname, w.port))
            vh.routes.append(_auto_port_connect(ctx, svc, w.port, cluster, rule) or connect_route(cluster))
        vh.routes.extend(w.routes)
        if svc is not None and headless.pins_pods(svc):
            _pin_pods(ctx, vh, svc, w.port)
        vhosts.append(_ld(_T_RC_VHOSTS, vh.SerializeToString(deterministic=True)))
        order.append(name)

    for w in wrappers:
        for host in w.vs_hosts:
            add_vhost(host, w, None)
        for svc in w.services:
            add_vhost(svc.hostname, w, svc)

    taken = (frozenset(wrapper_fqdn), frozenset(names), frozenset(used_domains))
    if prior is not None and prior.taken == taken:
        vhosts.extend(prior.fields)
        order.extend(prior.field_names)
        names, used_domains = set(prior.names), set(prior.used_domains)
        record = prior
    else:
        start = len(vhosts)
        for svc, d in defaults if defaults is not None else default_vhosts():
            if d.name in names:
                continue
            names.add(d.name)
            rule = auto_rules.get((svc.hostname, d.port)) if auto_rules else None
            if (
                rule is None
                and d.lowered
                and used_domains.isdisjoint(d.lowered)
                and d.alts.isdisjoint(known_fqdn)
            ):
                # Nothing to drop (the usual case): every scope of the snapshot gets the same bytes.
                used_domains.update(d.lowered)
                ch = hash_for_service(ctx, svc, d.port)
                # The bytes depend on the rule's hash, (auto ports) the DestinationRule's tcp_proxy
                # settings and whether its policy decompresses responses: per-scope lookups all three.
                dr = ctx.destination_rule(svc.hostname) if is_auto_port(svc, d.port) else None
                decompresses = compression.in_use(ctx.snapshot) and compression.cluster_decompresses(
                    ctx.destination_rule, d.cluster
                )
                hkey = (id(ch) if ch is not None else None, id(dr) if dr is not None else None, decompresses)
                encoded = d.encoded.get(hkey)
                if encoded is None:
                    encoded = d.encoded[hkey] = _ld(
                        _T_RC_VHOSTS, _default_vhost_bytes(ctx, d, svc, d.domains)
                    )
                vhosts.append(encoded)
                order.append(d.name)
                continue
            # Built for this scope alone: with domains dropped, or a `tcp` rule, whose routes depend on
            # per-scope lookups (destination services and rules, the proxy's labels).
            kept = keep(d.domains, d.alts)
            if kept:
                vhosts.append(_ld(_T_RC_VHOSTS, _default_vhost_bytes(ctx, d, svc, kept, rule)))
                order.append(d.name)
        record = _DefaultsRecord(
            claimed=frozenset(claimed),
            defaults_fqdn=defaults_fqdn,
            taken=taken,
            fields=tuple(vhosts[start:]),
            field_names=tuple(order[start:]),
            names=frozenset(names),
            used_domains=frozenset(used_domains),
            tcp_routed=tcp_routed,
        )
    ctx.snapshot.memo(record_key, lambda: record)

    # CONNECT-only virtual hosts for the TCP ports, so HTTPS_PROXY-style tunnels reach them.
    for svc in scoped.values():
        for sp in _vhost_ports(ports_of, svc)[1]:
            name = naming.vhost_name(svc.hostname, sp.port)
            if name in names:
                continue
            names.add(name)
            found = _default_vhost(ctx, svc, sp.port)
            kept = [d for d in found.with_port if d.lower() not in used_domains]
            used_domains.update(d.lower() for d in kept)
            if kept:
                vh = RC.VirtualHost(name=name, domains=kept)
                vh.routes.append(tunnel_route(ctx, vses, svc, sp.port, sp.protocol))
                if headless.pins_pods(svc):
                    _pin_pods(ctx, vh, svc, sp.port)
                vhosts.append(_ld(_T_RC_VHOSTS, vh.SerializeToString(deterministic=True)))
                order.append(name)
    # util.SortVirtualHosts: by name (the catch-all, added after, stays last). Which vhost keeps a
    # duplicated domain was settled above, in istiod's build order.
    return [field for _, field in sorted(zip(order, vhosts, strict=True), key=lambda pair: pair[0])]


def _vhost_ports(
    cache: dict[int, tuple[list[int], list[ServicePort]]], svc: Service
) -> tuple[list[int], list[ServicePort]]:
    """A service's HTTP (and auto) port numbers, which get virtual hosts, and its TCP/TLS ports, which
    get CONNECT-only ones (memoized per snapshot in `cache`: every scope asks for every service)."""
    found = cache.get(id(svc))
    if found is None:
        http: list[int] = []
        tcp: list[ServicePort] = []
        for sp in svc.ports:
            if sp.protocol.is_http or sp.protocol is Protocol.AUTO:
                http.append(sp.port)
            elif sp.protocol is not Protocol.UDP:
                tcp.append(sp)
        found = cache[id(svc)] = (http, tcp)
    return found


# --- TCP and TLS through CONNECT tunnels ---------------------------------------------------------
# istiod gives a sidecar's TCP service port filter chains from the VirtualServices' `tcp` rules
# (buildSidecarOutboundTCPFilterChainOpts) and a TLS/HTTPS port chains from their `tls` rules
# (buildSidecarOutboundTLSFilterChainOpts), never both. Here the port's CONNECT route makes that choice
# statically: the tunnel's host (the service) stands for both the destination and the SNI.

# Envoy's tcp_proxy idle timeout when istiod sets none (TcpProxy.idle_timeout's default).
TCP_PROXY_DEFAULT_IDLE_TIMEOUT_S = 3600.0


def _l4_applies(match: Any | None, proxy: Proxy, port: int, gateway_names: frozenset[str]) -> bool:
    """istiod's matchTCP / matchTLS: every static predicate holds (gateways, source labels, port, source
    namespace; unlike HTTP's sourceMatch, match-level gateways do not stand in for the others)."""
    if match is None:
        return True
    if match.gateways and not any(g in gateway_names for g in match.gateways):
        return False
    if any(proxy.labels.get(k) != v for k, v in (match.source_labels or {}).items()):
        return False
    if match.port and int(match.port) != port:
        return False
    return not match.source_namespace or match.source_namespace == proxy.namespace


def _sni_rank(match: Any, hostname: str, vs_namespace: str, domain: str) -> tuple[int, int] | None:
    """How closely the match's sniHosts name the tunnel's host (its SNI), ranked as Envoy ranks
    server_names: an exact name before any wildcard, a longer wildcard before a shorter; None if none does."""
    best: tuple[int, int] | None = None
    for sni in match.sni_hosts or ():
        full = sni if "." in sni or h.is_wildcard(sni) else f"{sni}.{vs_namespace}.svc.{domain}"
        if h.matches(full, hostname):
            rank = (0 if h.is_wildcard(full) else 1, len(full))
            best = rank if best is None or rank > best else best
    return best


def _tls_rule(
    ctx: RouteContext, covering: Sequence[VirtualServiceEntry], svc: Service, port: int
) -> tuple[bool, Any | None]:
    """(whether some `tls` match holds statically, the rule whose filter chain Envoy would pick for the
    service's SNI). istiod makes one chain per distinct (sniHosts, destinationSubnets), the first match
    keeping it; Envoy picks among them by SNI specificity, not order. A match with destinationSubnets
    never takes a tunnel, which has no destination IP (such matches are refused on the mesh gateway)."""
    domain = ctx.snapshot.mesh.domain_suffix
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    applies = False
    best: Any | None = None
    best_rank: tuple[int, int] | None = None
    for vs in covering:
        for rule in vs.tls:
            for m in rule.match or ():
                if not _l4_applies(m, ctx.proxy, port, ctx.gateway_names):
                    continue
                key = (tuple(m.sni_hosts or ()), tuple(m.destination_subnets or ()))
                if key in seen:
                    continue
                seen.add(key)
                applies = True
                rank = None if m.destination_subnets else _sni_rank(m, svc.hostname, vs.namespace, domain)
                if rank is not None and (best_rank is None or rank > best_rank):
                    best, best_rank = rule, rank
    return applies, best


def _tcp_rule(ctx: RouteContext, covering: Sequence[VirtualServiceEntry], port: int) -> Any | None:
    """istiod's TcpLoop: the first `tcp` rule without matches, or with a match that holds statically and
    names no destinationSubnets, ends the search and takes the connection."""
    for vs in covering:
        for rule in vs.tcp:
            matches = rule.match or [None]
            if any(
                _l4_applies(m, ctx.proxy, port, ctx.gateway_names) and not (m and m.destination_subnets)
                for m in matches
            ):
                return rule
    return None


@dataclass(frozen=True)
class TcpProxyPolicy:
    """What istiod's buildOutboundNetworkFiltersWith{Single,Weighted}Destination take from the first
    destination's DestinationRule for a tcp_proxy: the source-IP hash (maybeSetHashPolicy), the top level's
    connectionPool.tcp idleTimeout (else node metadata IDLE_TIMEOUT; None leaves tcp_proxy's default) and
    maxConnectionDuration, and the tunnel (tunnelingconfig.Apply)."""

    source_ip_hash: bool
    idle_timeout_s: float | None
    max_connection_duration_s: float | None
    tunnel: Any | None


def tcp_proxy_policy(ctx: RouteContext, host: str, subset: str | None) -> TcpProxyPolicy:
    """`subset` is the single destination's (a weighted split passes none: the top level applies)."""
    dr = ctx.destination_rule(host)
    top = dr.traffic_policy if dr is not None else None
    # maybeSetHashPolicy: only useSourceIp applies to TCP, from the subset's consistentHash when the subset
    # sets a load balancer, else the top level's.
    top_hash = _lb_hash(top)
    source_ip = bool(top_hash is not None and top_hash.use_source_ip)
    if dr is not None and subset:
        sub = dr.subset(subset)
        lb = getattr(sub.traffic_policy, "load_balancer", None) if sub is not None else None
        if lb is not None:
            source_ip = bool(lb.consistent_hash is not None and lb.consistent_hash.use_source_ip)
    pool = getattr(top, "connection_pool", None) if top is not None else None
    tcp = pool.tcp if pool is not None else None
    idle = to_seconds(tcp.idle_timeout) if tcp is not None and tcp.idle_timeout is not None else None
    max_duration = tcp.max_connection_duration if tcp is not None else None
    return TcpProxyPolicy(
        source_ip_hash=source_ip,
        idle_timeout_s=idle if idle is not None else proxy_headers.node_idle_timeout_s(ctx.snapshot),
        max_connection_duration_s=to_seconds(max_duration) if max_duration is not None else None,
        tunnel=tunnel_settings(dr, subset),
    )


def _tcp_proxy_settings(ctx: RouteContext, r: RC.Route, host: str, subset: str | None) -> RC.Route:
    """The tcp_proxy's settings (`tcp_proxy_policy`) carried by a CONNECT route: the idle timeout and the
    longest connection life become the stream's (with tcp_proxy's default hour when istiod sets none)."""
    policy = tcp_proxy_policy(ctx, host, subset)
    if policy.source_ip_hash:
        r.route.hash_policy.add().connection_properties.source_ip = True
    idle = policy.idle_timeout_s
    r.route.idle_timeout.CopyFrom(p.duration(TCP_PROXY_DEFAULT_IDLE_TIMEOUT_S if idle is None else idle))
    if policy.max_connection_duration_s is not None:
        r.route.max_stream_duration.max_stream_duration.CopyFrom(p.duration(policy.max_connection_duration_s))
    return forward_connect(r, policy.tunnel)


def _tunnel_to(ctx: RouteContext, rule: Any, port: int) -> RC.Route:
    dests = [d for d in rule.route or () if d.destination is not None]
    if len(dests) == 1:
        dest = dests[0].destination
        r = connect_route(destination_cluster(dest, ctx.services, port))
        return _tcp_proxy_settings(ctx, r, dest.host, dest.subset)
    r = connect_route("")
    r.route.ClearField("cluster")
    for d in dests:
        if d.weight:
            r.route.weighted_clusters.clusters.add(
                name=destination_cluster(d.destination, ctx.services, port), weight=p.u32(int(d.weight))
            )
    # buildOutboundNetworkFiltersWithWeightedClusters: the first destination's rule, top level only (a
    # subset's tunnel or hash cannot follow one of several clusters).
    return _tcp_proxy_settings(ctx, r, dests[0].destination.host, None) if dests else r


def _blocked_connect_route() -> RC.Route:
    """A CONNECT refused with 502, as REGISTRY_ONLY's block_all refuses one."""
    r = RC.Route(name="connect-" + naming.BLOCK_ALL_VHOST)
    r.match.connect_matcher.SetInParent()
    r.direct_response.status = 502
    return r


def tunnel_route(
    ctx: RouteContext, vses: Sequence[VirtualServiceEntry], svc: Service, port: int, protocol: Protocol
) -> RC.Route:
    """Where a CONNECT tunnel to a TCP/TLS service port goes, as istiod picks a sidecar's filter chain:
    on TLS and HTTPS ports the `tls` rule whose sniHosts best name the service, on other ports the first
    applicable `tcp` rule; else the service itself. When `tls` matches apply but none names the service,
    the connection falls to the listener's PassthroughFilterChain: REGISTRY_ONLY refuses it, ALLOW_ANY
    sends it on to the address the app dialled, the service's (its own cluster, here)."""
    covering = [
        vs for vs in vses if (vs.tcp or vs.tls) and any(h.matches(host, svc.hostname) for host in vs.hosts)
    ]
    if protocol in (Protocol.TLS, Protocol.HTTPS):
        applies, rule = _tls_rule(ctx, covering, svc, port)
        if rule is None and applies and ctx.snapshot.scope(ctx.proxy).outbound_policy == "REGISTRY_ONLY":
            return _blocked_connect_route()
    else:
        rule = _tcp_rule(ctx, covering, port)
    if rule is not None:
        return _tunnel_to(ctx, rule, port)
    r = connect_route(naming.outbound_cluster(port, "", svc.hostname))
    return _tcp_proxy_settings(ctx, r, svc.hostname, None)


# A sidecar's own ports (admin, outbound, inbound capture), which passthrough must never reach: in Istio
# they are not reachable as destinations (admin binds localhost; iptables keep the proxy from
# re-capturing its own traffic). Here every sidecar's outbound port listens on its pod address, so a
# passed-through request to `<pod>:15001` would enter that sidecar's explicit proxy and be passed through
# to itself again, forever (Istio's trafficLoopCases). Such requests and tunnels go to the BlackHoleCluster.
PROXY_PORTS = (15000, 15001, 15006)


def _proxy_port_routes() -> list[RC.Route]:
    ports = "|".join(str(port) for port in PROXY_PORTS)
    authority = RC.HeaderMatcher(name=":authority")
    authority.string_match.safe_regex.regex = rf".*:({ports})"
    routes = []
    for name, connect in (("block_proxy_ports", False), ("connect-block_proxy_ports", True)):
        r = RC.Route(name=name)
        if connect:
            r.match.connect_matcher.SetInParent()
        else:
            r.match.prefix = "/"
        r.match.headers.append(authority)
        r.route.cluster = naming.BLACKHOLE_CLUSTER
        routes.append(r)
    return routes


_PROXY_PORT_ROUTES = _proxy_port_routes()


def catch_all_vhost(
    policy: str, egress_cluster: str | None = None, attempt_count: bool = True, x_forwarded_host: bool = False
) -> RC.VirtualHost:
    """istiod's BuildCatchAllVirtualHost: REGISTRY_ONLY answers 502 itself (`block_all`); ALLOW_ANY sends
    to the PassthroughCluster, or to the Sidecar's egressProxy, with no timeout (`allow_any`). Both count
    attempts (`x-envoy-attempt-count`) as every sidecar outbound virtual host does (`attempt_count`: unless
    proxyHeaders turn it off). CONNECT tunnels are
    refused or passed through the same way, and passthrough never reaches a sidecar's own ports.
    `x_forwarded_host` (proxyHeaders xForwardedHost) sets append_x_forwarded_host on the passthrough route,
    the one route istiod sets it on."""
    if policy == "REGISTRY_ONLY":
        vh = RC.VirtualHost(
            name=naming.BLOCK_ALL_VHOST, domains=["*"], include_request_attempt_count=attempt_count
        )
        r = vh.routes.add(name=naming.BLOCK_ALL_VHOST)
        r.match.prefix = "/"
        r.direct_response.status = 502
        vh.routes.append(_blocked_connect_route())
        return vh
    cluster = egress_cluster or naming.PASSTHROUGH_CLUSTER
    vh = RC.VirtualHost(
        name=naming.ALLOW_ANY_VHOST, domains=["*"], include_request_attempt_count=attempt_count
    )
    vh.routes.extend(_PROXY_PORT_ROUTES)
    vh.routes.append(connect_route(cluster))
    r = vh.routes.add(name=naming.ALLOW_ANY_VHOST)
    r.match.prefix = "/"
    r.route.cluster = cluster
    r.route.timeout.CopyFrom(p.duration(0))
    r.route.max_grpc_timeout.CopyFrom(p.duration(0))
    r.route.append_x_forwarded_host = x_forwarded_host
    # The sidecar HTTP proxy's dynamic forward proxy filter may be disabled by default (listeners.py):
    # the PassthroughCluster resolves the authority through it, so this virtual host turns it on.
    vh.typed_per_filter_config[naming.DFP_FILTER].CopyFrom(p.pack(p.dfp_filter.PerRouteConfig()))
    return vh


def _route_config(
    name: str, vhosts: Iterable[RC.VirtualHost], ignore_port: bool
) -> p.route.RouteConfiguration:
    rc = p.route.RouteConfiguration(name=name, validate_clusters=p.wrappers_pb2.BoolValue(value=False))
    rc.virtual_hosts.extend(vhosts)
    rc.ignore_port_in_host_matching = ignore_port
    rc.max_direct_response_body_size_bytes.value = MAX_DIRECT_RESPONSE_BODY
    return rc


def scope_services(snapshot: Snapshot, proxy: Proxy) -> dict[str, Service]:
    """The services the proxy routes to by hostname, and their ExternalName aliases' hostnames mapping
    to them: a VirtualService destination naming an alias goes to the service it names (istiod's
    GetDestinationCluster with ExternalName aliases)."""
    if proxy.kind == "sidecar":
        services = [s.service for s in snapshot.scope(proxy).services]
    else:
        from isthmus.xds.gen.clusters import _gateway_services

        services = _gateway_services(snapshot, proxy)
    out = {s.hostname: s for s in services}
    for svc in services:
        for alias in svc.aliases:
            out.setdefault(alias, svc)
    return out


# The fields of the sidecar's table after its virtual hosts (validate_clusters, body size).
_HTTP_PROXY_TAIL = _route_config("", (), ignore_port=False).SerializeToString(deterministic=True)


def _sidecar_vhost_fields(snapshot: Snapshot, proxy: Proxy) -> list[bytes]:
    """The sidecar table's virtual hosts, each as a RouteConfiguration `virtual_hosts` field's bytes:
    the services' and VirtualServices', then the catch-all."""
    scope = snapshot.scope(proxy)
    ctx = RouteContext(snapshot, proxy, scope_services(snapshot, proxy))
    vhosts = sidecar_virtual_hosts(ctx, scope.virtual_services)
    egress = None
    if scope.egress_proxy is not None and scope.egress_proxy.host:
        egress = destination_cluster(scope.egress_proxy, ctx.services, 80)
    xfh = proxy_headers.appends_x_forwarded_host(snapshot)
    vhosts.append(
        snapshot.memo(
            ("catch_all_vhost", scope.outbound_policy, egress),
            lambda: _ld(
                _T_RC_VHOSTS,
                catch_all_vhost(
                    scope.outbound_policy, egress, proxy_headers.counts_attempts(snapshot), xfh
                ).SerializeToString(deterministic=True),
            ),
        )
    )
    return vhosts


def http_proxy_route_packed(snapshot: Snapshot, proxy: Proxy) -> any_pb2.Any:
    """The sidecar's `http_proxy` table, packed: assembled from its virtual hosts' bytes (the same
    bytes as packing _route_config's message: name, virtual hosts, then the other fields)."""
    vhosts = _sidecar_vhost_fields(snapshot, proxy)
    value = b"".join([_ld(_T_RC_NAME, naming.HTTP_PROXY_ROUTE.encode()), *vhosts, _HTTP_PROXY_TAIL])
    return any_pb2.Any(type_url=_ROUTE_CONFIG_TYPE_URL, value=value)


# --- the sidecar table over VHDS ----------------------------------------------------------------
# With 1,000 services the sidecar table is ~640 KB, and any VirtualService change sends all of it to
# every proxy. A proxy on delta xDS gets the table without virtual hosts and each virtual host as its
# own VHDS resource (delta xDS only), so a change sends the virtual hosts that changed. Envoy merges them
# back into the table: routing, and the config dump's view, are those of the inline table, except that
# each virtual host is named `http_proxy/<name>` (VHDS keys them by resource name).


@functools.cache
def http_proxy_vhds_route_packed() -> any_pb2.Any:
    """The table without virtual hosts, naming VHDS (ADS) for them: the same for every proxy and
    snapshot, so one object for the process (the server encodes it once). Must not be mutated."""
    rc = _route_config(naming.HTTP_PROXY_ROUTE, (), ignore_port=False)
    rc.vhds.config_source.CopyFrom(p.ads_config_source())
    return p.pack(rc)


def _vhds_resource(vh_field: bytes) -> tuple[str, any_pb2.Any]:
    """A `virtual_hosts` field's virtual host as a VHDS resource: its name (the first field, as every
    virtual host here is serialized) becomes `http_proxy/<name>`."""
    _, vhost, _ = p.read_length_delimited(vh_field)
    number, name, rest = p.read_length_delimited(vhost)
    if number != 1:
        raise ValueError("a virtual host's bytes must begin with its name")
    full = naming.vhds_name(naming.HTTP_PROXY_ROUTE, name.decode())
    value = _ld(_T_VH_NAME, full.encode()) + vhost[rest:]
    return full, any_pb2.Any(type_url=_VIRTUAL_HOST_TYPE_URL, value=value)


def http_proxy_virtual_hosts(snapshot: Snapshot, proxy: Proxy) -> dict[str, any_pb2.Any]:
    """The sidecar table's virtual hosts as VHDS resources, by name. One resource per distinct virtual
    host content per snapshot, and after a change of VirtualServices only, the previous snapshot's for
    what did not change: the server then encodes and compares nothing new for them."""
    cache: dict[bytes, tuple[str, any_pb2.Any]] = snapshot.memo(("vhds_resources",), dict)
    before = snapshot.routes_changed_from
    previous = before._memo.get(("vhds_resources",)) if before is not None else None
    out: dict[str, any_pb2.Any] = {}
    for vh_field in _sidecar_vhost_fields(snapshot, proxy):
        hit = cache.get(vh_field)
        if hit is None:
            hit = previous.get(vh_field) if previous is not None else None
            if hit is None:
                hit = _vhds_resource(vh_field)
            cache[vh_field] = hit
        out[hit[0]] = hit[1]
    return out


def http_proxy_route_config(snapshot: Snapshot, proxy: Proxy) -> p.route.RouteConfiguration:
    return p.route.RouteConfiguration.FromString(http_proxy_route_packed(snapshot, proxy).value)


# --- gateways -----------------------------------------------------------------------------------


def _intersect(server_hosts: Sequence[str], vs_hosts: Sequence[str]) -> list[str]:
    out: list[str] = []
    for a in server_hosts:
        for b in vs_hosts:
            pick = a if h.subset_of(a, b) else b if h.subset_of(b, a) else None
            if pick is not None and pick not in out:
                out.append(pick)
    return out


def _gateway_vhost(
    vhost_by_host: dict[str, RC.VirtualHost], order: list[str], host: str, port: int, attempt_count: bool
) -> RC.VirtualHost:
    """The virtual host of `host` on a gateway route table, created on first use. Host names are
    compared and written lowercase (DNS names are case-insensitive; Envoy rejects two virtual hosts
    whose domains differ only by case), as istiod does."""
    host = host.lower()
    vh = vhost_by_host.get(host)
    if vh is None:
        vh = RC.VirtualHost(name=naming.vhost_name(host, port), domains=[host])
        vh.include_request_attempt_count = attempt_count
        vhost_by_host[host] = vh
        order.append(host)
    return vh


def gateway_route_config(
    snapshot: Snapshot, proxy: Proxy, route_name: str, servers: Sequence[GatewayServer]
) -> p.route.RouteConfiguration:
    services = scope_services(snapshot, proxy)
    vhost_by_host: dict[str, RC.VirtualHost] = {}
    order: list[str] = []
    routes_cache: dict[tuple[str, str], list[RC.Route]] = {}
    port = servers[0].port
    attempts = proxy_headers.counts_attempts(snapshot)
    for server in servers:
        gw_name = server.gateway_name
        ctx = RouteContext(
            snapshot, proxy, services, gateway_names=frozenset({gw_name}), tls=server.server.tls is not None
        )
        for vs in snapshot.virtual_services_for_gateway(proxy.namespace, gw_name):
            hosts = _intersect(hosts_for_namespace(server.hosts, vs.namespace), vs.hosts)
            if not hosts:
                continue
            key = (gw_name, f"{vs.namespace}/{vs.name}")
            if key not in routes_cache:
                routes_cache[key] = build_vs_routes(ctx, vs, server.port)
            routes = routes_cache[key]
            for host in hosts:
                vh = _gateway_vhost(vhost_by_host, order, host, server.port, attempts)
                vh.routes.extend(routes)
                if server.https_redirect:
                    vh.require_tls = RC.VirtualHost.ALL
        if server.https_redirect:
            # Every host of a redirecting server answers with a redirect to https, whether or not a
            # VirtualService (of this server or another one on the port) gave it routes.
            for entry in server.hosts:
                vh = _gateway_vhost(vhost_by_host, order, entry.partition("/")[2], server.port, attempts)
                vh.require_tls = RC.VirtualHost.ALL
    if not vhost_by_host:
        vhosts = [RC.VirtualHost(name=naming.vhost_name("blackhole", port), domains=["*"])]
    else:
        vhosts = []
        for host in order:
            vh = vhost_by_host[host]
            catch_alls = [r for r in vh.routes if is_catch_all_route(r)]
            rest = [r for r in vh.routes if not is_catch_all_route(r)]
            del vh.routes[:]
            vh.routes.extend(rest + catch_alls)
            vhosts.append(vh)
        vhosts.sort(key=lambda v: v.name)
    # AuthorizationPolicies ride on RDS so that changing them never replaces the listener.
    per_filter = authz.rbac_per_route(snapshot, proxy)
    for vh in vhosts:
        for name, config in per_filter.items():
            vh.typed_per_filter_config[name].CopyFrom(config)
    return _route_config(route_name, vhosts, ignore_port=True)


# --- inbound ------------------------------------------------------------------------------------


def inbound_route_config(
    inbound: InboundPort, per_filter: Mapping[str, Any] | None = None
) -> p.route.RouteConfiguration:
    cluster = naming.inbound_cluster(inbound.port)
    action = RC.RouteAction(cluster=cluster)
    action.timeout.CopyFrom(p.duration(0))
    action.max_stream_duration.max_stream_duration.CopyFrom(p.duration(0))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(p.duration(0))
    if not inbound.protocol.is_http2 or inbound.protocol is Protocol.HTTP2:
        action.retry_policy.CopyFrom(RC.RetryPolicy(num_retries=p.u32(2), retry_on="reset-before-request"))
    r = RC.Route(name=naming.DEFAULT_ROUTE, match=RC.RouteMatch(prefix="/"), route=action)
    if inbound.sidecar_host is not None:
        # A Sidecar ingress chain's telemetry host (istiod's TraceOperation on its inboundChainConfig).
        r.decorator.operation = f"{inbound.sidecar_host}:{inbound.port}/*"
    elif inbound.services:
        svc, sp = inbound.services[0]
        r.decorator.operation = f"{svc.hostname}:{sp.port}/*"
    else:
        r.decorator.operation = f":{inbound.port}/*"
    vh = RC.VirtualHost(name=f"inbound|http|{inbound.port}", domains=["*"], routes=[r])
    for name, config in (per_filter or {}).items():
        vh.typed_per_filter_config[name].CopyFrom(config)
    rc = p.route.RouteConfiguration(name=cluster, validate_clusters=p.wrappers_pb2.BoolValue(value=False))
    rc.virtual_hosts.append(vh)
    return rc
