"""VirtualService rules (Istio ``ValidateVirtualService``, ``virtualservice.go``)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api.paths import join
from isthmus.api.types import is_duration
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    GRPC_STATUS,
    Report,
    duration_nanos,
    go_atoi,
    host_matches,
    host_subset_of,
    is_authority_header,
    is_dns1123_label,
    is_http_status_text,
    is_ip,
    is_jwt_claim_route,
    q,
    validate_cors_header_name,
    validate_duration,
    validate_export_to,
    validate_gateway_names,
    validate_header_name_or_jwt_claim,
    validate_header_operation_name,
    validate_header_value,
    validate_header_with_authority_operation_name,
    validate_ip_subnet,
    validate_labels,
    validate_percent,
    validate_percentage,
    validate_port,
    validate_strict_header_name,
    validate_string_regexp,
    validate_wildcard_domain,
    validate_wildcard_domain_for_gateway_vs,
)

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

MESH_GATEWAY = "mesh"

SUPPORTED_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
SUPPORTED_CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"}
)
KB = 1024
MB = 1024 * KB


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


def is_gateway_vs(vs: n.VirtualService) -> bool:
    """Istio's ``isGateway``: bound to gateways only (no ``mesh`` in ``gateways``)."""
    return MESH_GATEWAY not in vs.gateways


def _is_sni_host(vs: n.VirtualService) -> bool:
    return any(m.sni_hosts for t in vs.tls for m in t.match)


@register("VirtualService")
def validate_virtual_service(res: Resource, r: Report) -> None:
    vs: n.VirtualService = res.spec  # type: ignore[assignment]
    delegate = not vs.hosts
    if delegate:
        if vs.gateways:
            r.error("spec.gateways", "delegate virtual service must have no gateways specified")
        if vs.tls:
            r.error("spec.tls", "delegate virtual service must have no tls route specified")
        if vs.tcp:
            r.error("spec.tcp", "delegate virtual service must have no tcp route specified")

    applies_to_gateway = False
    applies_to_mesh = True
    if vs.gateways:
        validate_gateway_names(r, "spec.gateways", vs.gateways)
        applies_to_gateway = is_gateway_vs(vs)
        applies_to_mesh = not applies_to_gateway

    if not applies_to_gateway:
        for i, route in enumerate(vs.http):
            for j, m in enumerate(route.match):
                for field, headers in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
                    for key in headers:
                        if is_jwt_claim_route(key):
                            r.error(
                                join(f"spec.http[{i}].match[{j}]", field, key),
                                f"JWT claim based routing (key: {key}) is only supported for gateway, "
                                f"found no gateways: {_go_list(vs.gateways)}",
                            )

    all_hosts_valid = True
    sni = _is_sni_host(vs)
    for i, h in enumerate(vs.hosts):
        p = f"spec.hosts[{i}]"
        err = (
            validate_wildcard_domain_for_gateway_vs(sni, h)
            if applies_to_gateway
            else validate_wildcard_domain(h)
        )
        if err:
            if not is_ip(h):
                r.error(p, err)
                all_hosts_valid = False
        elif applies_to_mesh and h == "*":
            r.error(p, "wildcard host * is not allowed for virtual services bound to the mesh gateway")
            all_hosts_valid = False
    if all_hosts_valid:
        for i, a in enumerate(vs.hosts):
            for j in range(i + 1, len(vs.hosts)):
                b = vs.hosts[j]
                if host_matches(a, b):
                    r.error(f"spec.hosts[{j}]", f"duplicate hosts in virtual service: {a} & {b}")

    if not vs.http and not vs.tcp and not vs.tls:
        r.error("spec", "http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(vs.http):
        validate_http_route(r, f"spec.http[{i}]", route, delegate)
    for i, tls in enumerate(vs.tls):
        _validate_tls_route(r, f"spec.tls[{i}]", tls, vs)
    for i, tcp in enumerate(vs.tcp):
        _validate_tcp_route(r, f"spec.tcp[{i}]", tcp)

    validate_export_to(r, "spec.exportTo", res.namespace, vs.export_to)

    _analyze_unreachable(r, "spec.http", vs.http, http=True)
    _analyze_unreachable(r, "spec.tcp", vs.tcp, http=False)
    _analyze_unreachable(r, "spec.tls", vs.tls, http=False)


# ==================================================================================================
# HTTP routes


def validate_http_route(r: Report, p: str, http: n.HTTPRoute, delegate: bool) -> None:
    route_type = "delegate" if delegate else ("root" if http.delegate is not None else "independent")
    _validate_route_conflict(r, p, http, route_type)
    _validate_match_requests(r, p, http)
    validate_headers(r, join(p, "headers"), http.headers)
    _validate_cors(r, join(p, "corsPolicy"), http.cors_policy)
    _validate_fault(r, join(p, "fault"), http.fault)
    _validate_session_persistence(r, join(p, "sessionPersistence"), http.session_persistence)

    if http.mirror_percent is not None:
        mp = join(p, "mirrorPercent")
        if http.mirror_percent > 100:
            r.error(mp, f"mirror_percent must have a max value of 100 (it has {http.mirror_percent})")
        r.warn(mp, 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead')
    if http.mirror_percentage is not None:
        value = http.mirror_percentage.value or 0.0
        mp = join(p, "mirrorPercentage")
        if value > 100:
            r.error(mp, f"mirror_percentage must have a max value of 100 (it has {value:f})")
        if value < 0:
            r.error(mp, f"mirror_percentage must have a min value of 0 (it has {value:f})")

    validate_destination(r, join(p, "mirror"), http.mirror)
    for i, m in enumerate(http.mirrors):
        mp = join(p, "mirrors", i)
        validate_destination(r, join(mp, "destination"), m.destination)
        if m.percentage is not None:
            value = m.percentage.value or 0.0
            if value > 100:
                r.error(
                    join(mp, "percentage"),
                    f"mirror percentage must have a max value of 100 (it has {value:f})",
                )
            if value < 0:
                r.error(
                    join(mp, "percentage"), f"mirror percentage must have a min value of 0 (it has {value:f})"
                )
    _validate_redirect(r, join(p, "redirect"), http.redirect)
    _validate_direct_response(r, join(p, "directResponse"), http.direct_response)
    validate_http_retry(r, join(p, "retries"), http.retries)
    _validate_rewrite(r, join(p, "rewrite"), http.rewrite)
    _validate_authority_rewrite(r, p, http)
    _validate_http_route_destinations(r, join(p, "route"), http.route)
    if http.timeout is not None:
        r.error(join(p, "timeout"), validate_duration(http.timeout))


def _validate_route_conflict(r: Report, p: str, http: n.HTTPRoute, route_type: str) -> None:
    if route_type == "root":
        if http.redirect is not None:
            r.error(join(p, "redirect"), f"root HTTP route {http.name or ''} must not specify redirect")
        if http.is_set("route"):
            r.error(join(p, "route"), f"root HTTP route {http.name or ''} must not specify route")
        return
    if route_type == "delegate" and http.delegate is not None:
        r.error(join(p, "delegate"), "delegate HTTP route cannot contain delegate")
    if http.redirect is not None:
        if http.route:
            r.error(p, "HTTP route cannot contain both route and redirect")
        if http.fault is not None:
            r.error(p, "HTTP route cannot contain both fault and redirect")
        if http.rewrite is not None:
            r.error(p, "HTTP route rule cannot contain both rewrite and redirect")
        if http.direct_response is not None:
            r.error(p, "HTTP route rule cannot contain both direct_response and redirect")
    elif http.direct_response is not None:
        if http.route:
            r.error(p, "HTTP route cannot contain both route and direct_response")
        if http.fault is not None:
            r.error(p, "HTTP route cannot contain both fault and direct_response")
        if http.rewrite is not None:
            r.error(p, "HTTP route rule cannot contain both rewrite and direct_response")
    elif not http.route:
        r.error(p, "HTTP route, redirect or direct_response is required")
    if http.mirror is not None and http.mirrors:
        r.error(p, "HTTP route cannot contain both mirror and mirrors")


def validate_string_match(
    r: Report, p: str, sm: n.StringMatch | None, where: str, *, uri: bool = False
) -> None:
    """``validateStringMatch`` (``uri=True``: ``validateStringMatchRegexp``, an empty prefix is allowed)."""
    if sm is None:
        return
    if sm.prefix is not None and not uri and sm.prefix == "":
        r.error(join(p, "prefix"), f'"{where}": prefix string match should not be empty')
    if sm.suffix is not None and sm.suffix == "":
        # An empty suffix matches everything: refused as an empty prefix is (istio/api#3759 names no
        # rule of its own; this follows validateStringMatch's treatment of prefix).
        r.error(join(p, "suffix"), f'"{where}": suffix string match should not be empty')
    if sm.regex is not None:
        if sm.regex == "":
            r.error(join(p, "regex"), f'"{where}": regex string match should not be empty')
        else:
            r.error(join(p, "regex"), validate_string_regexp(sm.regex, where))


def _validate_match_requests(r: Report, p: str, http: n.HTTPRoute) -> None:
    for j, m in enumerate(http.match):
        mp = join(p, "match", j)
        for name, sm in m.headers.items():
            hp = join(mp, "headers", name)
            r.error(hp, validate_header_name_or_jwt_claim(name))
            validate_string_match(r, hp, sm, "headers")
        for name, sm in m.without_headers.items():
            hp = join(mp, "withoutHeaders", name)
            r.error(hp, validate_header_name_or_jwt_claim(name))
            if sm.regex != "*":  # `*` is not a regex: it means "present"
                validate_string_match(r, hp, sm, "withoutHeaders")
        if m.uri is not None and m.uri.suffix is not None:
            # istio/istio#61294: Envoy's RouteMatch has no suffix path specifier, so istiod refuses it.
            r.error(join(mp, "uri", "suffix"), '"uri": suffix string match is not supported')
        validate_string_match(r, join(mp, "uri"), m.uri, "uri", uri=True)
        validate_string_match(r, join(mp, "scheme"), m.scheme, "scheme")
        validate_string_match(r, join(mp, "method"), m.method, "method")
        validate_string_match(r, join(mp, "authority"), m.authority, "authority")
        for name, sm in m.query_params.items():
            validate_string_match(r, join(mp, "queryParams", name), sm, "queryParams")
        if m.port:
            r.error(join(mp, "port"), validate_port(m.port))
        r.errors(join(mp, "sourceLabels"), validate_labels(m.source_labels))
        validate_gateway_names(r, join(mp, "gateways"), m.gateways)
        if m.source_namespace and not is_dns1123_label(m.source_namespace):
            r.error(join(mp, "sourceNamespace"), f"sourceNamespace match {m.source_namespace} is invalid")


def validate_headers(r: Report, p: str, headers: n.Headers | None) -> None:
    if headers is None:
        return
    req, resp = headers.request, headers.response
    if req is not None:
        for op in ("add", "set"):
            for name, val in getattr(req, op).items():
                hp = join(p, "request", op, name)
                r.error(hp, validate_header_with_authority_operation_name(name))
                r.error(hp, validate_header_value(val))
        for i, name in enumerate(req.remove):
            r.error(join(p, "request", "remove", i), validate_header_operation_name(name))
    if resp is not None:
        for op in ("add", "set"):
            for name, val in getattr(resp, op).items():
                hp = join(p, "response", op, name)
                r.error(hp, validate_header_operation_name(name))
                r.error(hp, validate_header_value(val))
        for i, name in enumerate(resp.remove):
            r.error(join(p, "response", "remove", i), validate_header_operation_name(name))


def _validate_authority_rewrite(r: Report, p: str, http: n.HTTPRoute) -> None:
    current = http.rewrite.authority if http.rewrite is not None and http.rewrite.authority else ""
    req = http.headers.request if http.headers is not None else None
    if req is None:
        return
    for op in ("set", "add"):
        for k, v in getattr(req, op).items():
            if not is_authority_header(k):
                continue
            if current:
                r.error(
                    join(p, "headers", "request", op, k),
                    f"authority header cannot be set multiple times: have {q(current)}, attempting to set {q(v)}",
                )
                return
            current = v


def _validate_session_persistence(r: Report, p: str, sp: n.SessionPersistence | None) -> None:
    """HTTPRoute.sessionPersistence (istio/api virtualservice-session-persistence.yaml): the block of the
    chosen type (COOKIE by default) must be given, and only that one."""
    if sp is None:
        return
    kind = sp.type or "COOKIE"
    given, other = (sp.cookie, sp.header) if kind == "COOKIE" else (sp.header, sp.cookie)
    if given is None or other is not None:
        r.error(p, "type must match the specified session persistence configuration")
        return
    if sp.absolute_timeout is not None:
        r.error(join(p, "absoluteTimeout"), validate_duration(sp.absolute_timeout))
    if sp.header is not None:
        # Envoy's HeaderBasedSessionState needs a valid, non-empty header name.
        r.error(join(p, "header", "name"), validate_strict_header_name(sp.header.name or ""))
    if sp.cookie is not None and not sp.cookie.name:
        r.error(join(p, "cookie", "name"), "cookie name must not be empty")


def _validate_cors(r: Report, p: str, cors: n.CorsPolicy | None) -> None:
    if cors is None:
        return
    for i, origin in enumerate(cors.allow_origins):
        op = join(p, "allowOrigins", i)
        match = origin.exact or origin.prefix or origin.suffix or origin.regex or ""
        if match == "":
            r.error(op, f"'{match}' is not a valid match type for CORS allow origins")
        else:
            validate_string_match(r, op, origin, "corsPolicy.allowOrigins", uri=True)
    if cors.allow_origin:
        r.warn(join(p, "allowOrigin"), 'using deprecated setting "allowOrigin", use "allowOrigins" instead')
    for i, method in enumerate(cors.allow_methods):
        if method not in SUPPORTED_CORS_METHODS:
            r.error(join(p, "allowMethods", i), f"{q(method)} is not a supported HTTP method")
    for i, name in enumerate(cors.allow_headers):
        r.error(join(p, "allowHeaders", i), validate_cors_header_name(name))
    for i, name in enumerate(cors.expose_headers):
        r.error(join(p, "exposeHeaders", i), validate_cors_header_name(name))
    if cors.max_age is not None:
        mp = join(p, "maxAge")
        r.error(mp, validate_duration(cors.max_age))
        # Istio checks `MaxAge.Nanos > 0` independently of ValidateDuration, so both errors can appear
        # (a negative duration has negative nanos, hence the sign test).
        nanos = duration_nanos(cors.max_age) if is_duration(cors.max_age) else 0
        if nanos > 0 and nanos % 1_000_000_000 > 0:
            r.error(mp, "max_age duration is accurate only to seconds precision")


def _validate_fault(r: Report, p: str, fault: n.HTTPFaultInjection | None) -> None:
    if fault is None:
        return
    if fault.abort is None and fault.delay is None:
        r.error(p, "HTTP fault injection must have an abort and/or a delay")
    abort = fault.abort
    if abort is not None:
        ap = join(p, "abort")
        if abort.percentage is not None:
            r.error(join(ap, "percentage"), validate_percentage(abort.percentage.value))
        if abort.grpc_status is not None:
            if abort.grpc_status not in GRPC_STATUS:
                r.error(
                    join(ap, "grpcStatus"),
                    f"gRPC status {q(abort.grpc_status)} is not supported. See "
                    "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, "
                    "for example 'NOT_FOUND'",
                )
        elif abort.http2_error is not None:
            r.error(join(ap, "http2Error"), "HTTP/2 abort fault injection not supported yet")
        elif abort.http_status is not None:
            if abort.http_status < 200 or abort.http_status > 600:
                r.error(join(ap, "httpStatus"), f"HTTP status {abort.http_status} is not in range 200-599")
        else:
            r.warn(ap, "abort configured, but error type not set")
    delay = fault.delay
    if delay is not None:
        dp = join(p, "delay")
        if delay.percentage is not None:
            r.error(join(dp, "percentage"), validate_percentage(delay.percentage.value))
        if delay.percent is not None:
            r.error(join(dp, "percent"), validate_percent(delay.percent))
            r.warn(join(dp, "percent"), 'using deprecated setting "percent", use "percentage" instead')
        if delay.fixed_delay is not None:
            r.error(join(dp, "fixedDelay"), validate_duration(delay.fixed_delay))
        elif delay.exponential_delay is not None:
            r.error(join(dp, "exponentialDelay"), validate_duration(delay.exponential_delay))
            r.error(join(dp, "exponentialDelay"), "exponentialDelay not supported yet")


def validate_destination(r: Report, p: str, d: n.Destination | None) -> None:
    if d is None:
        return
    if d.host == "*":
        r.error(join(p, "host"), f"invalid destination host {d.host}")
    else:
        r.error(join(p, "host"), validate_wildcard_domain(d.host))
    if d.subset:
        r.error(join(p, "subset"), validate_subset_name(d.subset))
    elif d.subset == "":
        pass  # unset in proto terms
    if d.port is not None:
        r.error(join(p, "port", "number"), validate_port(d.port.number or 0))


def validate_subset_name(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"subset name is invalid: {name}"
    return None


def validate_http_retry(r: Report, p: str, retries: n.HTTPRetry | None) -> None:
    if retries is None:
        return
    attempts = retries.attempts or 0
    if attempts < 0:
        r.error(join(p, "attempts"), "attempts cannot be negative")
    if attempts == 0 and (
        retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
    ):
        r.error(p, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.per_try_timeout is not None:
        r.error(join(p, "perTryTimeout"), validate_duration(retries.per_try_timeout))
    if retries.retry_on:
        for policy in retries.retry_on.split(","):
            # As istiod: strconv.Atoi (a sign is allowed: "+503" is 503), then http.StatusText.
            code = go_atoi(policy) or 0
            if not (code and is_http_status_text(code)) and policy not in SUPPORTED_RETRY_ON:
                r.error(join(p, "retryOn"), f"{q(policy)} is not a valid retryOn policy")
    if retries.backoff is not None:
        r.error(join(p, "backoff"), validate_duration(retries.backoff))


def _validate_redirect(r: Report, p: str, redirect: n.HTTPRedirect | None) -> None:
    if redirect is None:
        return
    if (
        not redirect.uri
        and not redirect.authority
        and redirect.port is None
        and redirect.derive_port is None
        and not redirect.scheme
        and not redirect.prefix_rewrite
    ):
        r.error(p, "redirect must specify URI, authority, scheme, or port")
        return
    # Istio's validateHTTPRedirect returns its first error only, so later checks are skipped.
    if redirect.redirect_code and not 300 <= redirect.redirect_code <= 399:
        r.error(
            join(p, "redirectCode"), f"{redirect.redirect_code} is not a valid redirect code, must be 3xx"
        )
        return
    if redirect.scheme and redirect.scheme not in ("http", "https"):
        r.error(join(p, "scheme"), 'invalid redirect scheme, must be "http" or "https"')
        return
    if redirect.port:
        r.error(join(p, "port"), validate_port(redirect.port))


def _validate_direct_response(r: Report, p: str, dr: n.HTTPDirectResponse | None) -> None:
    if dr is None:
        return
    if dr.body is not None:
        if dr.body.string is not None:
            size = len(dr.body.string.encode())
        elif dr.body.bytes is not None:
            try:
                size = len(base64.b64decode(dr.body.bytes))
            except ValueError:
                size = len(dr.body.bytes)
        else:
            size = 0
        if size > MB:
            r.error(
                join(p, "body"),
                "large direct_responses may impact control plane performance, must be less than 1MB",
            )
        elif size > 100 * KB:
            r.warn(join(p, "body"), "large direct_responses may impact control plane performance")
    if dr.status < 200 or dr.status > 600:
        r.error(join(p, "status"), f"HTTP status {dr.status} is not in range 200-599")


def _validate_rewrite(r: Report, p: str, rw: n.HTTPRewrite | None) -> None:
    if rw is None:
        return
    if rw.uri and rw.uri_regex_rewrite is not None:
        r.error(p, "rewrite may only contain one of URI or UriRegexRewrite")
        return
    if not rw.uri and rw.uri_regex_rewrite is None and not rw.authority:
        r.error(
            p,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
            "Only one of URI or UriRegexRewrite may be specified",
        )
        return
    rr = rw.uri_regex_rewrite
    if rr is not None:
        rp = join(p, "uriRegexRewrite")
        if not rr.match or not rr.rewrite:
            r.error(
                rp,
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
            )
        else:
            err = validate_string_regexp(rr.match, "HTTPRewrite.UriRegexRewrite.Match")
            if err:
                r.error(join(rp, "match"), f"UriRegexRewrite has errors: {err}")


def _validate_http_route_destinations(r: Report, p: str, routes: list[n.HTTPRouteDestination]) -> None:
    total = 0
    for i, rd in enumerate(routes):
        dp = join(p, i)
        validate_headers(r, join(dp, "headers"), rd.headers)
        validate_destination(r, join(dp, "destination"), rd.destination)
        weight = rd.weight or 0
        if weight < 0:
            r.error(join(dp, "weight"), f"weight {weight} < 0")
        total += weight
    if len(routes) > 1 and total == 0:
        r.error(p, "total destination weight = 0")


def _validate_route_destinations(r: Report, p: str, routes: list[n.RouteDestination]) -> None:
    total = 0
    for i, rd in enumerate(routes):
        dp = join(p, i)
        validate_destination(r, join(dp, "destination"), rd.destination)
        weight = rd.weight or 0
        if weight < 0:
            r.error(join(dp, "weight"), f"weight {weight} < 0")
        total += weight
    if len(routes) > 1 and total == 0:
        r.error(p, "total destination weight = 0")


# ==================================================================================================
# TLS / TCP routes


def _validate_tls_route(r: Report, p: str, tls: n.TLSRoute, vs: n.VirtualService) -> None:
    if not tls.match:
        r.error(join(p, "match"), "TLS route must have at least one match condition")
    for j, m in enumerate(tls.match):
        mp = join(p, "match", j)
        if not m.sni_hosts:
            r.error(join(mp, "sniHosts"), "TLS match must have at least one SNI host")
        for k, sni in enumerate(m.sni_hosts):
            _validate_sni_host(r, join(mp, "sniHosts", k), sni, vs)
        for k, subnet in enumerate(m.destination_subnets):
            r.error(join(mp, "destinationSubnets", k), validate_ip_subnet(subnet))
        if m.port:
            r.error(join(mp, "port"), validate_port(m.port))
        r.errors(join(mp, "sourceLabels"), validate_labels(m.source_labels))
        validate_gateway_names(r, join(mp, "gateways"), m.gateways)
    if not tls.route:
        r.error(join(p, "route"), "TLS route is required")
    _validate_route_destinations(r, join(p, "route"), tls.route)


def _validate_sni_host(r: Report, p: str, sni: str, vs: n.VirtualService) -> None:
    err = (
        validate_wildcard_domain_for_gateway_vs(True, sni)
        if is_gateway_vs(vs)
        else validate_wildcard_domain(sni)
    )
    if err:
        if is_ip(sni):
            r.warn(
                p,
                f"using an IP address ({q(sni)}) goes against SNI spec and most clients do not support this",
            )
        else:
            r.error(p, err)
        return
    if any(host_subset_of(sni, h) for h in vs.hosts):
        return
    r.error(
        p,
        f"SNI host {q(sni)} is not a compatible subset of any of the virtual service hosts: [{', '.join(vs.hosts)}]",
    )


def _validate_tcp_route(r: Report, p: str, tcp: n.TCPRoute) -> None:
    for j, m in enumerate(tcp.match):
        mp = join(p, "match", j)
        for k, subnet in enumerate(m.destination_subnets):
            r.error(join(mp, "destinationSubnets", k), validate_ip_subnet(subnet))
        if m.port:
            r.error(join(mp, "port"), validate_port(m.port))
        r.errors(join(mp, "sourceLabels"), validate_labels(m.source_labels))
        validate_gateway_names(r, join(mp, "gateways"), m.gateways)
    if not tcp.route:
        r.error(join(p, "route"), "TCP route is required")
    _validate_route_destinations(r, join(p, "route"), tcp.route)


# ==================================================================================================
# Unreachable rules (warnings, as Istio's analyzeUnreachable*Rules)


def _route_name(route: object, i: int) -> str:
    name = getattr(route, "name", None)
    return q(name) if name else f"#{i}"


def _match_name(match: object, j: int) -> str:
    name = getattr(match, "name", None)
    return q(name) if name else f"#{j}"


def _as_json(match: object) -> str:
    data = match.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)  # type: ignore[attr-defined]
    return json.dumps(data, sort_keys=True)


def _exact_or_prefix(sm: n.StringMatch | None) -> str:
    if sm is None:
        return ""
    if sm.exact:
        return "exact:" + sm.exact
    if sm.prefix:
        return "prefix:" + sm.prefix
    if sm.suffix:
        # Not "" (which means "matches anything" here): a suffix match covers only itself.
        return "suffix:" + sm.suffix
    return ""


class _PrefixMatch:
    __slots__ = (
        "authority",
        "headers",
        "index",
        "match_str",
        "method",
        "non_headers",
        "port",
        "prefix",
        "query",
        "route_str",
    )

    def __init__(self, route: n.HTTPRoute, i: int, match: n.HTTPMatchRequest, j: int):
        self.route_str = _route_name(route, i)
        self.match_str = _match_name(match, j)
        self.index = i
        self.prefix = match.uri.prefix if match.uri else ""
        self.port = match.port or 0
        self.method = _exact_or_prefix(match.method) or "exact:GET"
        self.authority = _exact_or_prefix(match.authority)
        self.headers = {k: _exact_or_prefix(v) for k, v in match.headers.items()}
        self.query = {k: _exact_or_prefix(v) for k, v in match.query_params.items()}
        self.non_headers = {k: _exact_or_prefix(v) for k, v in match.without_headers.items()}


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    if not b.prefix.startswith(a.prefix):
        return False
    if a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    for am, bm in ((a.headers, b.headers), (a.query, b.query), (a.non_headers, b.non_headers)):
        if len(am) != len(bm):
            return False
        for k, v in am.items():
            if k not in bm:
                return False
            if v != bm[k] and not v.startswith(bm[k]):
                return False
    return True


def _analyze_unreachable(r: Report, p: str, routes: list, *, http: bool) -> None:
    seen: dict[str, int] = {}
    empty_match_at = -1
    prefix_matches: list[_PrefixMatch] = []
    for i, route in enumerate(routes):
        rp = join(p, i)
        if not route.match:
            if empty_match_at >= 0:
                r.warn(
                    rp,
                    f"virtualService rule {_route_name(route, i)} not used (only the last rule can have no matches)",
                )
            empty_match_at = i
            continue
        duplicates = 0
        for j, m in enumerate(route.match):
            if empty_match_at >= 0:
                r.warn(
                    rp,
                    f"virtualService rule {_route_name(route, i)} not used (route without matches defined before)",
                )
                continue
            key = _as_json(m)
            if key in seen:
                d = seen[key]
                r.warn(
                    join(rp, "match", j),
                    f"virtualService rule {_route_name(route, i)} match {_match_name(m, j)} is not used "
                    f"(duplicate/overlapping match in rule {_route_name(routes[d], d)})",
                )
                duplicates += 1
                continue
            seen[key] = i
            if http and m.uri is not None and m.uri.prefix:
                pm = _PrefixMatch(route, i, m, j)
                pm.match_str = _match_name(m, j)
                prefix_matches.append(pm)
        if duplicates == len(route.match):
            r.warn(
                rp, f"virtualService rule {_route_name(route, i)} not used (all matches used by prior rules)"
            )
    for ai, a in enumerate(prefix_matches):
        for b in prefix_matches[ai + 1 :]:
            if a.prefix == b.prefix:
                continue
            if _covers(a, b):
                r.warn(
                    join(p, b.index),
                    f"virtualService rule {b.route_str} match {b.match_str} of prefix {b.prefix} is not used "
                    f"(duplicate/overlapping match in rule {a.match_str} of prefix {a.prefix} on {a.route_str})",
                )
