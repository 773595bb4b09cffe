"""VirtualService validation parity with Istio's own unit tests.

Each case is ported from istio/istio ``pkg/config/validation/validation_test.go`` (TestValidateVirtualService,
TestValidateHTTPRoute, TestValidateRouteDestination, TestValidateDestination, TestValidateHTTPRetry,
TestValidateHTTPRewrite, TestValidateUriRegexRewrite, TestValidateHTTPRedirect, TestValidateHTTPDirectResponse,
TestValidateHTTPFaultInjectionAbort/Delay, TestValidateHTTPStatus, TestValidateCORSPolicy,
TestValidateHTTPHeaderName) and ``virtualservice_test.go`` (TestValidateChainingVirtualService,
TestValidateRootHTTPRoute, TestValidateDelegateHTTPRoute), at the newest Istio semantics (weights need not
sum to 100; root routes may use regex matches; delegates may match on sourceNamespace).

Istio's part-level tests (a route, a retry policy, ...) are expressed as a minimal, otherwise-valid
VirtualService that carries the part, so the verdict of the whole resource is the verdict of the part.
Validity = no Error-level message; where Istio's test also checks warnings (``warning``), so do we.
"""

from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass

import pytest
from istio_verdicts import assert_verdict

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class Case:
    test: str  # Istio test function
    name: str  # Istio case name
    spec: str  # the VirtualService spec (YAML)
    valid: bool
    error: str | None = None  # fragment the error must contain (Istio's wording)
    warning: bool | None = None  # only where Istio's test checks the presence of a warning


def _vs(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: foo, namespace: bar}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    )


DEST = "{destination: {host: foo.baz}}"
ROUTE = f"route: [{DEST}]"


def http(route: str, hosts: str = "hosts: [foo.bar]") -> str:
    """A VirtualService with one HTTP route (``route`` is a flow mapping body without braces)."""
    return f"{hosts}\nhttp:\n- {{{route}}}"


def delegate_http(route: str) -> str:
    """A delegate VirtualService (no hosts): Istio's ``validateHTTPRoute(route, delegate=true)``."""
    return f"hosts: []\nhttp:\n- {{{route}}}"


def tcp_routes(routes: str) -> str:
    """``validateRouteDestinations`` via a TCP route."""
    return f"hosts: [foo.bar]\ntcp:\n- {{route: [{routes}]}}"


def fault(f: str) -> str:
    return http(f"fault: {{{f}}}, {ROUTE}")


def rewrite(rw: str) -> str:
    return http(f"rewrite: {{{rw}}}, {ROUTE}")


def retries(rt: str) -> str:
    return http(f"retries: {{{rt}}}, {ROUTE}")


def redirect(rd: str) -> str:
    return http(f"redirect: {{{rd}}}")


def direct(dr: str) -> str:
    return http(f"directResponse: {{{dr}}}")


def cors(c: str) -> str:
    return http(f"corsPolicy: {{{c}}}, {ROUTE}")


def header_match(name: str) -> str:
    return http(f"match: [{{headers: {{{name}: {{exact: v}}}}}}], {ROUTE}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Headers used by the "valid headers" cases of TestValidateHTTPRoute / TestValidateDelegateHTTPRoute.
VALID_HEADERS = (
    "request: {add: {name: ''}, set: {name: ''}, remove: [name]}, "
    "response: {add: {name: ''}, set: {name: ''}, remove: [name]}"
)


def dest_headers(h: str) -> str:
    return f"route: [{{destination: {{host: foo.baz}}, headers: {{{h}}}}}]"


DELEGATE = "delegate: {name: test, namespace: test}"
REDIRECT = "redirect: {uri: /lerp, authority: foo.biz}"

# --------------------------------------------------------------------------------------------------
# TestValidateHTTPRoute and TestValidateDelegateHTTPRoute share most cases; ``ROUTE_CASES`` is the
# (name, route body, valid-as-independent, valid-as-delegate) table.

ROUTE_CASES: list[tuple[str, str, bool]] = [
    ("empty", "", False),
    ("simple", ROUTE, True),
    ("no destination", "route: [{}]", False),
    (
        "weighted",
        "route: [{destination: {host: foo.baz.south}, weight: 25}, {destination: {host: foo.baz.east}, weight: 75}]",
        True,
    ),
    ("simple redirect", REDIRECT, True),
    ("conflicting redirect and route", f"{ROUTE}, {REDIRECT}", False),
    ("request response headers", ROUTE, True),
    ("valid headers", dest_headers(VALID_HEADERS), True),
    ("empty header name - request add", dest_headers("request: {add: {'': value}}"), False),
    ("empty header name - request set", dest_headers("request: {set: {'': value}}"), False),
    ("empty header name - request remove", dest_headers("request: {remove: ['']}"), False),
    ("empty header name - response add", dest_headers("response: {add: {'': value}}"), False),
    ("empty header name - response set", dest_headers("response: {set: {'': value}}"), False),
    ("empty header name - response remove", dest_headers("response: {remove: ['']}"), False),
    # Go's `map[string]*StringMatch{"header": nil}`: YAML null is rejected just the same.
    (
        "null header match",
        "route: [{destination: {host: foo.bar}}], match: [{headers: {header: null}}]",
        False,
    ),
    ("nil match", "route: [{destination: {host: foo.bar}}]", True),
    # "match with nil element" (`Match: []*HTTPMatchRequest{nil}`) is a Go-only nil list element: skipped.
    ("invalid mirror percent", "mirrorPercent: 101, route: [{destination: {host: foo.bar}}]", False),
    (
        "invalid mirror percentage",
        "mirrorPercentage: {value: 101}, route: [{destination: {host: foo.bar}}]",
        False,
    ),
    (
        "valid mirror percentage",
        "mirrorPercentage: {value: 1}, route: [{destination: {host: foo.bar}}]",
        True,
    ),
    (
        "negative mirror percentage",
        "mirrorPercentage: {value: -1}, route: [{destination: {host: foo.bar}}]",
        False,
    ),
]

HTTP_ROUTE_ONLY: list[tuple[str, str, bool]] = [
    (
        "total weight > 100",
        "route: [{destination: {host: foo.baz.south}, weight: 550}, {destination: {host: foo.baz.east}, weight: 500}]",
        True,
    ),
    (
        "total weight < 100",
        "route: [{destination: {host: foo.baz.south}, weight: 49}, {destination: {host: foo.baz.east}, weight: 50}]",
        True,
    ),
    (
        "envoy escaped % set",
        dest_headers("response: {set: {i-love-istio: '100%%'}}"),
        True,
    ),
    ("envoy variable set", dest_headers("response: {set: {name: '%HOSTNAME%'}}"), True),
    ("envoy unescaped % set", dest_headers("response: {set: {name: 'abcd%oijasodifj'}}"), False),
    ("envoy escaped % add", dest_headers("response: {add: {i-love-istio: '100%% and more'}}"), True),
    ("envoy variable add", dest_headers("response: {add: {name: 'hello %HOSTNAME%'}}"), True),
    ("envoy unescaped % add", dest_headers("response: {add: {name: 'abcd%oijasodifj'}}"), False),
    (
        "empty prefix header match",
        "route: [{destination: {host: foo.bar}}], match: [{headers: {emptyprefix: {prefix: ''}}}]",
        False,
    ),
    ("mirrors without destination", "mirrors: [{}], route: [{destination: {host: foo.bar}}]", False),
    (
        "mirrors invalid mirror percentage",
        "mirrors: [{destination: {host: foo.baz}}, {destination: {host: foo.baz}, percentage: {value: 101}}], "
        "route: [{destination: {host: foo.bar}}]",
        False,
    ),
    (
        "mirrors valid mirror percentage",
        "mirrors: [{destination: {host: foo.baz}, percentage: {value: 1}}, "
        "{destination: {host: foo.baz}, percentage: {value: 50}}], route: [{destination: {host: foo.bar}}]",
        True,
    ),
    (
        "mirrors negative mirror percentage",
        "mirrors: [{destination: {host: foo.baz}, percentage: {value: -1}}], route: [{destination: {host: foo.bar}}]",
        False,
    ),
    (
        "conflicting mirror and mirrors",
        f"mirror: {{host: foo.baz}}, mirrors: [{{destination: {{host: foo.bar}}}}], {ROUTE}",
        False,
    ),
]

DELEGATE_ROUTE_ONLY: list[tuple[str, str, bool]] = [
    (
        "total weight > 100",
        "route: [{destination: {host: foo.baz.south}, weight: 55}, {destination: {host: foo.baz.east}, weight: 50}]",
        True,
    ),
    (
        "total weight < 100",
        "route: [{destination: {host: foo.baz.south}, weight: 49}, {destination: {host: foo.baz.east}, weight: 50}]",
        True,
    ),
    ("delegate route with delegate", DELEGATE, False),
]

CASES: list[Case] = []

CASES += [Case("TestValidateHTTPRoute", n, http(r), v) for n, r, v in ROUTE_CASES + HTTP_ROUTE_ONLY]
CASES += [
    Case("TestValidateDelegateHTTPRoute", n, delegate_http(r), v)
    for n, r, v in ROUTE_CASES + DELEGATE_ROUTE_ONLY
]

# TestValidateRootHTTPRoute (virtualservice_test.go): validateHTTPRoute(route, delegate=false); routes with
# a delegate are root routes.
CASES += [
    Case("TestValidateRootHTTPRoute", n, http(r), v)
    for n, r, v in [
        ("simple", DELEGATE, True),
        ("route and delegate conflict", f"{ROUTE}, {DELEGATE}", False),
        ("redirect and delegate conflict", f"{REDIRECT}, {DELEGATE}", False),
        ("null header match", f"{DELEGATE}, match: [{{headers: {{header: null}}}}]", False),
        ("prefix header match", f"{DELEGATE}, match: [{{headers: {{header: {{prefix: test}}}}}}]", True),
        ("exact header match", f"{DELEGATE}, match: [{{headers: {{header: {{exact: test}}}}}}]", True),
        ("regex header match", f"{DELEGATE}, match: [{{headers: {{header: {{regex: test}}}}}}]", True),
        ("regex uri match", f"{DELEGATE}, match: [{{uri: {{regex: test}}}}]", True),
        ("prefix uri match", f"{DELEGATE}, match: [{{uri: {{prefix: test}}}}]", True),
        ("exact uri match", f"{DELEGATE}, match: [{{uri: {{exact: test}}}}]", True),
        ("prefix queryParams match", f"{DELEGATE}, match: [{{queryParams: {{q: {{prefix: test}}}}}}]", True),
        ("exact queryParams match", f"{DELEGATE}, match: [{{queryParams: {{q: {{exact: test}}}}}}]", True),
        # Istio's case builds a *header* named q, despite its name.
        ("regex queryParams match", f"{DELEGATE}, match: [{{headers: {{q: {{regex: test}}}}}}]", True),
        (
            "empty regex match in method",
            "match: [{method: {regex: ''}}], redirect: {uri: /, authority: foo.biz}",
            False,
        ),
        (
            "empty regex match in uri",
            "match: [{uri: {regex: ''}}], redirect: {uri: /, authority: foo.biz}",
            False,
        ),
        (
            "empty regex match in query",
            "match: [{queryParams: {q: {regex: ''}}}], redirect: {uri: /, authority: foo.biz}",
            False,
        ),
        (
            "empty regex match in scheme",
            "match: [{scheme: {regex: ''}}], redirect: {uri: /, authority: foo.biz}",
            False,
        ),
    ]
]

# TestValidateChainingVirtualService (virtualservice_test.go)
CASES += [
    Case("TestValidateChainingVirtualService", n, s, v)
    for n, s, v in [
        ("root simple", http(DELEGATE, "hosts: [foo.bar]\ngateways: [test-gateway]"), True),
        ("root applies to sidecar with delegate", http(DELEGATE), True),
        ("root with delegate and destination in one route", http(f"{DELEGATE}, {ROUTE}"), False),
        ("delegate with no destination", "hosts: []\nhttp: [{}]", False),
        ("delegate with delegate", delegate_http(DELEGATE), False),
        ("delegate with TCP route", f"hosts: []\ntcp: [{{{ROUTE}}}]", False),
        ("delegate with gateway", f"hosts: []\ngateways: [test]\nhttp: [{{{ROUTE}}}]", False),
        (
            "delegate with sourceNamespace",
            f"hosts: []\nhttp: [{{match: [{{sourceNamespace: test}}], {ROUTE}}}]",
            True,
        ),
    ]
]

# TestValidateRouteDestination: validateRouteDestinations (TCP/TLS destinations)
CASES += [
    Case("TestValidateRouteDestination", n, tcp_routes(r), v, e)
    for n, r, v, e in [
        ("simple", "{destination: {host: foo.baz}}", True, None),
        ("wildcard dash", "{destination: {host: '*-foo.baz'}}", True, None),
        ("wildcard prefix", "{destination: {host: '*foo.baz'}}", True, None),
        ("wildcard", "{destination: {host: '*'}}", False, "invalid destination host *"),
        ("bad wildcard", "{destination: {host: 'foo.*'}}", False, None),
        ("bad fqdn", "{destination: {host: default/baz}}", False, None),
        ("no destination", "{}", False, None),
        (
            "weighted",
            "{destination: {host: foo.baz.south}, weight: 25}, {destination: {host: foo.baz.east}, weight: 75}",
            True,
            None,
        ),
        (
            "weight < 0",
            "{destination: {host: foo.baz.south}, weight: 5}, {destination: {host: foo.baz.east}, weight: -1}",
            False,
            "weight -1 < 0",
        ),
        (
            "total weight > 100",
            "{destination: {host: foo.baz.south}, weight: 550}, {destination: {host: foo.baz.east}, weight: 500}",
            True,
            None,
        ),
        (
            "total weight < 100",
            "{destination: {host: foo.baz.south}, weight: 49}, {destination: {host: foo.baz.east}, weight: 50}",
            True,
            None,
        ),
        (
            "total weight = 100",
            "{destination: {host: foo.baz.south}, weight: 100}, {destination: {host: foo.baz.east}, weight: 0}",
            True,
            None,
        ),
        ("weight = 0", "{destination: {host: foo.baz.south}, weight: 0}", True, None),
        (
            "total weight = 0 with multi RouteDestination",
            "{destination: {host: foo.baz.south}, weight: 0}, {destination: {host: foo.baz.east}, weight: 0}",
            False,
            "total destination weight = 0",
        ),
    ]
]

# TestValidateDestination
CASES += [
    Case("TestValidateDestination", n, http(f"route: [{{destination: {d}}}]"), v)
    for n, d, v in [
        ("empty", "{}", False),
        ("simple", "{host: foo.bar}", True),
        ("full", "{host: foo.bar, subset: shiny, port: {number: 5000}}", True),
        ("unnumbered-selector", "{host: foo.bar, subset: shiny, port: {}}", False),
    ]
]

# TestValidateHTTPRetry
CASES += [
    Case("TestValidateHTTPRetry", n, retries(r), v, e)
    for n, r, v, e in [
        ("valid", "attempts: 10, perTryTimeout: 2s, retryOn: '5xx,gateway-error'", True, None),
        ("disable retries", "attempts: 0", True, None),
        (
            "invalid, retry policy configured but attempts set to zero",
            "attempts: 0, perTryTimeout: 2s, retryOn: '5xx,gateway-error'",
            False,
            "http retry policy configured when attempts are set to 0 (disabled)",
        ),
        ("valid default", "attempts: 10", True, None),
        (
            "valid http status retryOn",
            "attempts: 10, perTryTimeout: 2s, retryOn: '503,connect-failure'",
            True,
            None,
        ),
        ("invalid attempts", "attempts: -1, perTryTimeout: 2s", False, "attempts cannot be negative"),
        ("invalid timeout", "attempts: 10, perTryTimeout: 2.000000001s", False, None),
        ("timeout too small", "attempts: 10, perTryTimeout: 0.000000999s", False, None),
        ("invalid backoff", "attempts: 10, backoff: 0.000000999s", False, None),
        (
            "invalid policy retryOn",
            "attempts: 10, perTryTimeout: 2s, retryOn: '5xx,invalid policy'",
            False,
            '"invalid policy" is not a valid retryOn policy',
        ),
        (
            "invalid http status retryOn",
            "attempts: 10, perTryTimeout: 2s, retryOn: '600,connect-failure'",
            False,
            '"600" is not a valid retryOn policy',
        ),
        (
            "invalid, retryRemoteLocalities configured but attempts set to zero",
            "attempts: 0, retryRemoteLocalities: false",
            False,
            "http retry policy configured when attempts are set to 0 (disabled)",
        ),
    ]
]

# TestValidateHTTPRewrite ("nil in" = a route without rewrite)
REGEX_REWRITE = r"uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}"
CASES += [
    Case("TestValidateHTTPRewrite", "nil in", http(ROUTE), True),
    *[
        Case("TestValidateHTTPRewrite", n, rewrite(rw), v, e)
        for n, rw, v, e in [
            ("uri and authority", "uri: /path/to/resource, authority: foobar.org", True, None),
            ("uri", "uri: /path/to/resource", True, None),
            ("authority", "authority: foobar.org", True, None),
            ("uriRegexRewrite", REGEX_REWRITE, True, None),
            ("uriRegexRewrite and authority", f"authority: foobar.org, {REGEX_REWRITE}", True, None),
            (
                "uriRegexRewrite and uri",
                f"uri: /path/to/resource, {REGEX_REWRITE}",
                False,
                "rewrite may only contain one of URI or UriRegexRewrite",
            ),
            (
                "no uri, uriRegexRewrite, or authority",
                "",
                False,
                "rewrite must specify at least one of URI, UriRegexRewrite, or authority",
            ),
        ]
    ],
]

# TestValidateUriRegexRewrite
CASES += [
    Case("TestValidateUriRegexRewrite", "uriRegexRewrite nil", rewrite("authority: foobar.org"), True),
    *[
        Case("TestValidateUriRegexRewrite", n, rewrite(f"uriRegexRewrite: {{{rr}}}"), v, e)
        for n, rr, v, e in [
            (
                "uriRegexRewrite happy path",
                r"match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'",
                True,
                None,
            ),
            (
                "uriRegexRewrite missing match",
                r"rewrite: '\2/instance/\1'",
                False,
                "UriRegexRewrite has errors",
            ),
            (
                "uriRegexRewrite missing rewrite",
                "match: '^/service/([^/]+)(/.*)$'",
                False,
                "UriRegexRewrite has errors",
            ),
            (
                "uriRegexRewrite invalid regex patterns",
                "match: '[', rewrite: '['",
                False,
                "UriRegexRewrite has errors",
            ),
        ]
    ],
]

# TestValidateHTTPRedirect
CASES += [
    Case("TestValidateHTTPRedirect", "nil redirect", http(ROUTE), True),
    *[
        Case("TestValidateHTTPRedirect", n, redirect(rd), v, e)
        for n, rd, v, e in [
            (
                "empty uri and authority",
                "uri: '', authority: ''",
                False,
                "redirect must specify URI, authority, scheme, or port",
            ),
            (
                "too small redirect code",
                "uri: t, authority: '', redirectCode: 299",
                False,
                "299 is not a valid redirect code",
            ),
            (
                "too large redirect code",
                "uri: t, authority: '', redirectCode: 400",
                False,
                "400 is not a valid redirect code",
            ),
            ("empty authority", "uri: t, authority: ''", True, None),
            ("empty uri", "uri: '', authority: t", True, None),
            ("empty redirect code", "uri: t, authority: t, redirectCode: 0", True, None),
            ("normal redirect", "uri: t, authority: t, redirectCode: 308", True, None),
        ]
    ],
]

# TestValidateHTTPDirectResponse (Istio checks the warning too)
CASES += [
    Case("TestValidateHTTPDirectResponse", "nil redirect", http(ROUTE), True, warning=False),
    *[
        Case("TestValidateHTTPDirectResponse", n, direct(dr), v, e, warning=w)
        for n, dr, v, e, w in [
            ("status 200", "status: 200", True, None, False),
            ("status 100", "status: 199", False, "HTTP status 199 is not in range 200-599", False),
            ("status 600", "status: 601", False, "HTTP status 601 is not in range 200-599", False),
            ("with string body", "status: 200, body: {string: hello}", True, None, False),
            (
                "with string body over 100kb",
                f"status: 200, body: {{string: {'a' * (101 * KB)}}}",
                True,
                None,
                True,
            ),
            (
                "with string body over 1mb",
                f"status: 200, body: {{string: {'a' * (2 * MB)}}}",
                False,
                "large direct_responses may impact control plane performance, must be less than 1MB",
                False,
            ),
            ("with bytes body", f"status: 200, body: {{bytes: {b64(b'hello')}}}", True, None, False),
            (
                "with bytes body over 100kb",
                f"status: 200, body: {{bytes: {b64(b'a' * (100 * KB + 1))}}}",
                True,
                None,
                True,
            ),
            (
                "with bytes body over 1mb",
                f"status: 200, body: {{bytes: {b64(b'a' * (MB + 1))}}}",
                False,
                "must be less than 1MB",
                False,
            ),
        ]
    ],
]

# TestValidateHTTPFaultInjectionAbort ("nil" = a fault with only a delay)
CASES += [
    Case("TestValidateHTTPFaultInjectionAbort", n, fault(f), v, e)
    for n, f, v, e in [
        ("nil", "delay: {fixedDelay: 1s}", True, None),
        ("valid", "abort: {percentage: {value: 20}, httpStatus: 200}", True, None),
        ("valid default", "abort: {httpStatus: 200}", True, None),
        (
            "invalid http status",
            "abort: {percentage: {value: 20}, httpStatus: 9000}",
            False,
            "HTTP status 9000",
        ),
        (
            "invalid low http status",
            "abort: {percentage: {value: 20}, httpStatus: 100}",
            False,
            "HTTP status 100",
        ),
        ("valid percentage", "abort: {percentage: {value: 0.001}, httpStatus: 200}", True, None),
        (
            "invalid fractional percent",
            "abort: {percentage: {value: -10.0}, httpStatus: 200}",
            False,
            "percentage -10 is neither 0.0, nor in range [0.0001, 100.0]",
        ),
        ("grpc: nil", "delay: {fixedDelay: 1s}", True, None),
        ("grpc: valid", "abort: {percentage: {value: 20}, grpcStatus: DEADLINE_EXCEEDED}", True, None),
        ("grpc: valid default percentage", "abort: {grpcStatus: DEADLINE_EXCEEDED}", True, None),
        (
            "grpc: invalid status",
            "abort: {percentage: {value: 20}, grpcStatus: BAD_STATUS}",
            False,
            'gRPC status "BAD_STATUS" is not supported',
        ),
        ("grpc: valid percentage", "abort: {percentage: {value: 0.001}, grpcStatus: INTERNAL}", True, None),
        (
            "grpc: invalid fractional percent",
            "abort: {percentage: {value: -10.0}, grpcStatus: DEADLINE_EXCEEDED}",
            False,
            "is neither 0.0, nor in range [0.0001, 100.0]",
        ),
    ]
]

# TestValidateHTTPFaultInjectionDelay ("nil" = a fault with only an abort)
CASES += [
    Case("TestValidateHTTPFaultInjectionDelay", n, fault(f), v, e)
    for n, f, v, e in [
        ("nil", "abort: {httpStatus: 500}", True, None),
        ("valid fixed", "delay: {percentage: {value: 20}, fixedDelay: 3s}", True, None),
        ("valid default", "delay: {fixedDelay: 3s}", True, None),
        (
            "invalid percent",
            "delay: {percentage: {value: 101}, fixedDelay: 3s}",
            False,
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]",
        ),
        ("invalid delay", "delay: {percentage: {value: 20}, fixedDelay: 3.000000042s}", False, None),
        ("valid fractional percentage", "delay: {percentage: {value: 0.001}, fixedDelay: 3s}", True, None),
        ("invalid fractional percentage", "delay: {percentage: {value: -10.0}, fixedDelay: 3s}", False, None),
    ]
]

# TestValidateHTTPStatus (validateHTTPStatus, reached through an abort's httpStatus)
CASES += [
    Case("TestValidateHTTPStatus", str(s), fault(f"abort: {{httpStatus: {s}}}"), v)
    for s, v in [(-100, False), (0, False), (200, True), (600, True), (601, False)]
]

# TestValidateCORSPolicy
CORS_BASE = "allowHeaders: [header1, header2], exposeHeaders: [header3], maxAge: 2s"
CASES += [
    Case("TestValidateCORSPolicy", n, cors(c), v, e)
    for n, c, v, e in [
        ("valid", f"allowMethods: [GET, POST], {CORS_BASE}", True, None),
        (
            "bad method",
            f"allowMethods: [GET, PUTT], {CORS_BASE}",
            False,
            '"PUTT" is not a supported HTTP method',
        ),
        (
            "bad header",
            "allowMethods: [GET, POST], allowHeaders: [header1, header2], exposeHeaders: [''], maxAge: 2s",
            False,
            "header name cannot be empty",
        ),
        (
            "bad max age",
            "allowMethods: [GET, POST], allowHeaders: [header1, header2], exposeHeaders: [header3], "
            "maxAge: 2.000000042s",
            False,
            None,
        ),
        (
            "empty matchType AllowOrigins",
            f"allowOrigins: [{{exact: ''}}, {{prefix: ''}}, {{regex: ''}}], allowMethods: [GET, POST], {CORS_BASE}",
            False,
            "'' is not a valid match type for CORS allow origins",
        ),
        (
            "non empty matchType AllowOrigins",
            f"allowOrigins: [{{exact: exact}}, {{prefix: prefix}}, {{regex: regex}}], allowMethods: [GET, POST], "
            f"{CORS_BASE}",
            True,
            None,
        ),
    ]
]

# TestValidateHTTPHeaderName (ValidateHTTPHeaderNameOrJwtClaimRoute: header match names)
CASES += [
    Case("TestValidateHTTPHeaderName", n, header_match(key), v)
    for n, key, v in [
        ("header1", "header1", True),
        ("X-Requested-With", "X-Requested-With", True),
        (":authority", "':authority'", True),
        ("funky!$#_", "'funky!$#_'", True),
        ("", "''", False),
        ("::", "'::'", False),
        ('illegal"char', "'illegal\"char'", False),
    ]
]

# TestValidateVirtualService (Istio checks the warning in every case)
_TLS_SNI = """\
hosts: [outbound_.15010_._.istiod.istio-system.svc.cluster.local]
gateways: [ns1/gateway]
tls:
- match: [{sniHosts: [outbound_.15010_._.istiod.istio-system.svc.cluster.local]}]
  route: [{destination: {host: istio.istio-system.svc.cluster.local}}]
"""
CASES += [
    Case("TestValidateVirtualService", n, s, v, e, warning=w)
    for n, s, v, e, w in [
        ("simple", http(ROUTE), True, None, False),
        ("allow sni based domains", _TLS_SNI, True, None, False),
        (
            "duplicate hosts",
            http(ROUTE, "hosts: ['*.foo.bar', '*.bar']"),
            False,
            "duplicate hosts in virtual service: *.foo.bar & *.bar",
            False,
        ),
        ("with no destination", http("route: [{}]", "hosts: ['*.foo.bar', '*.bar']"), False, None, False),
        (
            "destination with out hosts",
            http("route: [{destination: {}}]", "hosts: ['*.foo.bar', '*.bar']"),
            False,
            None,
            False,
        ),
        ("delegate with no hosts", f"http:\n- {{{ROUTE}}}", True, None, False),
        ("bad host", http(ROUTE, "hosts: [foo.ba!r]"), False, None, False),
        (
            "no tcp or http routing",
            "hosts: [foo.bar]",
            False,
            "http, tcp or tls must be provided in virtual service",
            False,
        ),
        ("bad gateway", http(ROUTE, "hosts: [foo.bar]\ngateways: [b@dgateway]"), False, None, False),
        (
            "FQDN for gateway",
            http(ROUTE, "hosts: [foo.bar]\ngateways: [gateway.example.com]"),
            True,
            None,
            True,
        ),
        (
            "namespace/name for gateway",
            http(ROUTE, "hosts: [foo.bar]\ngateways: [ns1/gateway]"),
            True,
            None,
            False,
        ),
        (
            "namespace/* for gateway",
            http(ROUTE, "hosts: [foo.bar]\ngateways: ['ns1/*']"),
            False,
            'invalid value for gateway name: "*"',
            False,
        ),
        (
            "*/name for gateway",
            http(ROUTE, "hosts: [foo.bar]\ngateways: ['*/gateway']"),
            False,
            'invalid value for namespace: "*"',
            False,
        ),
        (
            "wildcard for mesh gateway",
            http(ROUTE, "hosts: ['*']"),
            False,
            "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            False,
        ),
        (
            "wildcard for non-mesh gateway",
            http(ROUTE, "hosts: ['*']\ngateways: [somegateway]"),
            True,
            None,
            False,
        ),
        (
            "missing tcp route",
            "hosts: [foo.bar]\ntcp: [{match: [{port: 999}]}]",
            False,
            "TCP route is required",
            False,
        ),
        (
            "missing tls route",
            "hosts: [foo.bar]\ntls: [{match: [{port: 999, sniHosts: [foo.bar]}]}]",
            False,
            "TLS route is required",
            False,
        ),
        (
            "deprecated mirror",
            http(f"mirrorPercent: 5, {ROUTE}", "hosts: [foo.bar]\ngateways: [ns1/gateway]"),
            True,
            None,
            True,
        ),
        (
            "set authority",
            http(f"headers: {{request: {{set: {{':authority': foo}}}}}}, {ROUTE}"),
            True,
            None,
            False,
        ),
        (
            "set authority in destination",
            http("route: [{destination: {host: foo.baz}, headers: {request: {set: {':authority': foo}}}}]"),
            True,
            None,
            False,
        ),
        (
            "set authority in rewrite and header",
            http(
                f"headers: {{request: {{set: {{':authority': foo}}}}}}, rewrite: {{authority: bar}}, {ROUTE}"
            ),
            False,
            'authority header cannot be set multiple times: have "bar", attempting to set "foo"',
            False,
        ),
        (
            "non-method-get",
            http(
                f"{ROUTE}, match: [{{uri: {{prefix: /api/v1/product}}}}, "
                "{uri: {prefix: /api/v1/products}, method: {exact: GET}}]"
            ),
            True,
            None,
            True,
        ),
        (
            "uri-with-prefix-exact",
            http(f"{ROUTE}, match: [{{uri: {{prefix: /}}}}, {{uri: {{exact: /}}, method: {{exact: GET}}}}]"),
            True,
            None,
            False,
        ),
        (
            "jwt claim route without gateway",
            http(
                f"{ROUTE}, match: [{{uri: {{prefix: /}}, headers: {{'@request.auth.claims.foo': {{exact: bar}}}}}}]",
                "hosts: [foo.bar]\ngateways: [mesh]",
            ),
            False,
            "JWT claim based routing (key: @request.auth.claims.foo) is only supported for gateway, "
            "found no gateways: [mesh]",
            False,
        ),
        # Older Istio spelled JWT claim routes "x-jwt-claim.foo" and rejected this case; today that is an
        # ordinary header name, so the newest semantics (valid) apply.
        (
            "jwt claim route without gateway (older x-jwt-claim spelling)",
            http(
                f"{ROUTE}, match: [{{uri: {{prefix: /}}, headers: {{x-jwt-claim.foo: {{exact: bar}}}}}}]",
                "hosts: [foo.bar]\ngateways: [mesh]",
            ),
            True,
            None,
            False,
        ),
        (
            "ip address as sni host",
            "hosts: [foo.bar]\ntls: [{route: [{destination: {host: foo.baz}}], match: [{port: 999, sniHosts: [1.1.1.1]}]}]",
            True,
            None,
            True,
        ),
        (
            "invalid wildcard as sni host",
            "hosts: [foo.bar]\ntls: [{route: [{destination: {host: foo.baz}}], match: [{port: 999, sniHosts: ['foo.*.com']}]}]",
            False,
            None,
            False,
        ),
    ]
]


# agent.TestValidateWildcardDomain / TestValidateWildcardDomainForVirtualServiceBoundToGateway
# (pkg/config/validation/agent/validation_test.go), reached through VirtualService hosts. The VirtualService
# ignores a host error when the host is an IP address, and rejects "*" only for mesh-bound services, so the
# resource-level verdict differs from the bare function's for those two inputs (noted per case).
_DOMAINS: list[tuple[str, str, bool]] = [
    ("empty", "''", False),
    ("too long", "x" * 256, False),
    ("happy", "x" * 63, True),
    ("wildcard", "'*'", True),
    ("wildcard multi-segment", "'*.bar.com'", True),
    ("wildcard single segment", "'*foo'", True),
    ("wildcard prefix", "'*foo.bar.com'", True),
    ("wildcard prefix dash", "'*-foo.bar.com'", True),
    ("bad wildcard", "'foo.*.com'", False),
    ("bad wildcard 2", "'foo*.bar.com'", False),
    ("IP address", "1.1.1.1", True),  # function: invalid; ValidateVirtualService skips IP hosts
]
CASES += [
    Case(
        "TestValidateWildcardDomain",
        n,
        http(ROUTE, f"hosts: [{h}]"),
        # "*" is a valid domain, but ValidateVirtualService refuses it for mesh-bound services.
        v and n != "wildcard",
    )
    for n, h, v in _DOMAINS
]
CASES += [
    Case(
        "TestValidateWildcardDomainForVirtualServiceBoundToGateway",
        n,
        http(ROUTE, f"hosts: [{h}]\ngateways: [gw]"),
        v,
    )
    for n, h, v in _DOMAINS
]
CASES += [
    Case(
        "TestValidateWildcardDomainForVirtualServiceBoundToGateway",
        n,
        f"hosts: [{h}]\ngateways: [gw]\ntls: [{{match: [{{sniHosts: [{h}]}}], {ROUTE}}}]",
        v,
    )
    for n, h, v in [
        ("SNI domain", "outbound_.80_._.e2e.foobar.mesh", True),
        ("happy", "outbound.com", True),
        ("invalid SNI domain", "neverbound_.80_._.e2e.foobar.mesh", False),
        ("invalid SNI domain 2", "outbound_.thisIsNotAPort_._.e2e.foobar.mesh", False),
        ("invalid SNI domain 3", "outbound_.80_._", False),
    ]
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.test}/{c.name}" for c in CASES])
def test_istio_virtual_service_case(case: Case) -> None:
    assert_verdict(f"{case.test}/{case.name}", _vs(case.spec), case.valid, case.error, case.warning)


def test_case_count() -> None:
    # Keeps the port honest: every ported Istio case is in the table (one Go-only case per route table skipped).
    assert len(CASES) >= 200
