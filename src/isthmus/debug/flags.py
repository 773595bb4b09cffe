"""Envoy's response flags (and the response code details that go with them) in plain words.

Reference: Envoy's access-log `%RESPONSE_FLAGS%` (short and long names) and the response code
details Envoy 1.40 writes (`route_not_found`, `no_healthy_upstream`, `cluster_not_found`,
`upstream_reset_before_response_started{...}`, `response_timeout`, `downstream_remote_disconnect`,
`fault_filter_abort`, `rbac_access_denied_matched_policy[...]`, `ext_authz_denied`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.xds.gen import naming


@dataclass(frozen=True)
class FlagInfo:
    flag: str
    name: str  # Envoy's long name
    status: str  # the status Envoy answers with, when it answers itself
    meaning: str
    causes: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    details: tuple[str, ...] = field(default=())  # typical response code details


FLAGS: dict[str, FlagInfo] = {
    f.flag: f
    for f in (
        FlagInfo(
            "NR",
            "NoRouteFound",
            "404",
            "no route: the proxy has no route for this host and path, so it answered 404 itself",
            (
                "a VirtualService for the host has rules with `match` conditions and none matched the "
                "request, and it has no catch-all rule (a rule without `match`)",
                "no virtual host for the request's authority (Host header): on a gateway, no "
                "VirtualService bound to the Gateway lists that host, or the Gateway server does not admit it",
                "the host:port is not a service port the proxy knows (on a sidecar: not in its Sidecar scope)",
            ),
            (
                "add a final catch-all rule (no `match`) to the VirtualService, or a match for this request",
                "check the VirtualService `hosts` and `gateways` (and the Gateway server hosts)",
                "run `isthmus route test --from <workload> <url>` to see which routes were tried",
            ),
            ("route_not_found",),
        ),
        FlagInfo(
            "NC",
            "NoClusterFound",
            "503",
            "no cluster: the matched route sends to a cluster the proxy does not have",
            (
                "the VirtualService routes to a `subset` that no DestinationRule defines (istio#6335)",
                "the route names a host or port that is not a service the proxy can see (exportTo, Sidecar)",
                "the DestinationRule arrived after the VirtualService (ordering during a rollout)",
            ),
            (
                "define the subset in the DestinationRule for the destination host, or fix the route's subset",
                "check the destination host/port exist and are visible from the caller's namespace",
            ),
            ("cluster_not_found",),
        ),
        FlagInfo(
            "UH",
            "NoHealthyUpstream",
            "503",
            "no healthy upstream: the cluster has no endpoint that can take the request",
            (
                "the cluster has no endpoints: no pod of the service is ready, or a subset's labels select "
                "no pod (IST0173)",
                "every endpoint is ejected by outlier detection (DestinationRule outlierDetection) or failed "
                "health checks",
            ),
            (
                "make the subset labels match the pods' labels (or start pods with those labels)",
                "check the pods are running and ready; for ejections, fix the failing instances or relax "
                "outlierDetection (consecutive5xxErrors, baseEjectionTime, maxEjectionPercent)",
            ),
            ("no_healthy_upstream",),
        ),
        FlagInfo(
            "UF",
            "UpstreamConnectionFailure",
            "503",
            "upstream connection failure: the proxy could not connect to the upstream endpoint",
            (
                "nothing listens at the endpoint's address and port (connection refused): the app is down, "
                "or the Service/ServiceEntry port or targetPort is wrong",
                "the connect timeout expired (endpoint unreachable)",
                "TLS handshake failed: mTLS mismatch (DestinationRule tls vs the server's "
                "PeerAuthentication), wrong SNI or certificate",
            ),
            (
                "check the upstream process listens on the endpoint's port; fix targetPort / ServiceEntry ports",
                "for TLS errors, align DestinationRule trafficPolicy.tls with the server (ISTIO_MUTUAL/DISABLE)",
            ),
            ("upstream_reset_before_response_started{remote_connection_failure}",),
        ),
        FlagInfo(
            "UO",
            "UpstreamOverflow",
            "503",
            "upstream overflow: a circuit breaker of the cluster was open, so the request was rejected at once",
            (
                "more concurrent connections/requests than the DestinationRule connectionPool allows "
                "(tcp.maxConnections, http.http1MaxPendingRequests, http.http2MaxRequests, http.maxRetries)",
            ),
            (
                "raise the connectionPool limits in the DestinationRule, or lower the callers' concurrency",
                "this is the circuit breaker working as configured: callers should retry with backoff",
            ),
            ("upstream_reset_before_response_started{overflow}", "overflow"),
        ),
        FlagInfo(
            "URX",
            "UpstreamRetryLimitExceeded",
            "503",
            "retries exhausted: every attempt failed and the retry (or connect-attempt) limit was reached",
            (
                "each attempt failed the same way (see the other flags: UF connect failures, UH, 5xx answers)",
                "the retry policy's attempts (Istio's default: 2 retries) were not enough",
            ),
            (
                "fix the cause of the failing attempts first (the other flags tell it)",
                "tune VirtualService `retries` (attempts, perTryTimeout, retryOn)",
            ),
        ),
        FlagInfo(
            "UT",
            "UpstreamRequestTimeout",
            "504",
            "upstream request timeout: the route's timeout expired before the upstream answered",
            (
                "the upstream is slower than the VirtualService `timeout` (or a retry's perTryTimeout)",
                "an injected delay (fault) longer than the caller's timeout",
            ),
            ("make the upstream faster, or raise the VirtualService `timeout` / `retries.perTryTimeout`",),
            ("response_timeout", "upstream_per_try_timeout"),
        ),
        FlagInfo(
            "DC",
            "DownstreamConnectionTermination",
            "0",
            "downstream disconnect: the client closed the connection before the response was complete",
            (
                "the client gave up first: its own timeout is shorter than the time the request took",
                "on a server's inbound side: the calling sidecar cut the request (its route timeout, UT, or "
                "its client went away)",
            ),
            (
                "compare the duration with the client's timeout; look up the same x-request-id in the "
                "caller's log (`isthmus explain --request-id ID`)",
            ),
            ("downstream_remote_disconnect",),
        ),
        FlagInfo(
            "UC",
            "UpstreamConnectionTermination",
            "503",
            "upstream connection termination: the upstream closed the connection before answering",
            (
                "the app closed an idle keep-alive connection the proxy was reusing (idle-timeout race)",
                "the app crashed or restarted while serving, or closes connections after each request",
            ),
            (
                "set DestinationRule connectionPool.http.idleTimeout shorter than the app's keep-alive "
                "timeout, or maxRequestsPerConnection",
                "retries on `reset` / `connect-failure` hide the race (Istio's default retries cover it)",
            ),
            ("upstream_reset_before_response_started{connection_termination}",),
        ),
        FlagInfo(
            "UR",
            "UpstreamRemoteReset",
            "503",
            "upstream remote reset: the upstream reset the stream",
            (
                "the app reset the request (HTTP/2 RST_STREAM, crash)",
                "a protocol mismatch: the Service port name/appProtocol says http2/grpc but the app speaks "
                "HTTP/1 (or the reverse)",
            ),
            ("check the app's log; check the port's protocol (name prefix or appProtocol)",),
            ("upstream_reset_before_response_started{remote_reset}",),
        ),
        FlagInfo(
            "LR",
            "LocalReset",
            "503",
            "local reset: the proxy reset the request itself",
            ("a proxy-side limit or shutdown (drain, stream idle timeout, max stream duration)",),
            ("check the proxy's log around the request (envoy.log) and recent restarts",),
            ("upstream_reset_before_response_started{local_reset}",),
        ),
        FlagInfo(
            "DI",
            "DelayInjected",
            "",
            "delay injected: a VirtualService fault delayed this request",
            ("the route has `fault.delay`",),
            ("remove or reduce the VirtualService fault delay if it was not intended",),
        ),
        FlagInfo(
            "FI",
            "FaultInjected",
            "",
            "fault injected: a VirtualService fault aborted this request",
            ("the route has `fault.abort` with this status",),
            ("remove the VirtualService fault abort if it was not intended",),
            ("fault_filter_abort",),
        ),
        FlagInfo(
            "RL",
            "RateLimited",
            "429",
            "rate limited: a rate-limit filter rejected the request",
            ("a local or global rate limit applies to this route (Isthmus configures none itself)",),
            ("check for rate-limit config added to the proxy",),
        ),
        FlagInfo(
            "UAEX",
            "UnauthorizedExternalService",
            "403",
            "external authorization denied the request",
            ("a CUSTOM AuthorizationPolicy sends requests to an ext_authz provider, which said no",),
            ("check the ext_authz provider's decision and the CUSTOM policy's rules",),
            ("ext_authz_denied", "ext_authz_error"),
        ),
        FlagInfo(
            "RLSE",
            "RateLimitServiceError",
            "500",
            "the rate-limit service failed",
        ),
        FlagInfo(
            "DPE",
            "DownstreamProtocolError",
            "400",
            "downstream protocol error: the client sent a request the proxy could not parse",
            ("malformed HTTP from the client, or the wrong protocol on the port",),
            ("check the client speaks the protocol of the port",),
        ),
        FlagInfo(
            "UPE",
            "UpstreamProtocolError",
            "503",
            "upstream protocol error: the upstream's answer could not be parsed",
            ("the upstream speaks another protocol than the port's (http vs http2/grpc, TLS vs plaintext)",),
            ("check the Service port name/appProtocol and the app's protocol",),
        ),
        FlagInfo(
            "SI",
            "StreamIdleTimeout",
            "408",
            "stream idle timeout: no bytes flowed on the stream for the idle timeout",
            ("a long-lived stream (websocket, streaming) was idle longer than the idle timeout",),
            ("send keep-alives or raise the idle timeout",),
        ),
        FlagInfo(
            "UMSDR",
            "UpstreamMaxStreamDurationReached",
            "408",
            "the upstream stream reached its maximum duration",
        ),
        FlagInfo(
            "DF",
            "DnsResolutionFailed",
            "503",
            "DNS resolution of the upstream host failed",
            ("the host of a DNS ServiceEntry (or a passed-through host) does not resolve",),
            ("check the host name resolves from the proxy's machine",),
        ),  # fmt: skip
        FlagInfo("DO", "DropOverload", "503", "the request was dropped by the cluster's overload policy"),
        FlagInfo("OM", "OverloadManager", "503", "the proxy's overload manager rejected the request"),
        FlagInfo("IH", "InvalidEnvoyRequestHeaders", "400", "the request had invalid x-envoy-* headers"),
        FlagInfo("LH", "FailedLocalHealthCheck", "503", "the local health check of the upstream failed"),
        FlagInfo("NFCF", "NoFilterConfigFound", "500", "a filter's config (ECDS) was never received"),
        FlagInfo("DT", "DurationTimeout", "", "the stream reached its maximum duration"),
    )
}

LONG_NAMES = {f.name: f.flag for f in FLAGS.values()}


def lookup(flag: str) -> FlagInfo | None:
    key = flag.strip()
    if key in FLAGS:
        return FLAGS[key]
    if key.upper() in FLAGS:
        return FLAGS[key.upper()]
    if key in LONG_NAMES:
        return FLAGS[LONG_NAMES[key]]
    return None


RBAC_DENIED_PREFIX = "rbac_access_denied_matched_policy["
RBAC_INFO = FlagInfo(
    "RBAC",
    "AuthorizationDenied",
    "403",
    "denied by an AuthorizationPolicy (Envoy RBAC) on this proxy",
    (
        "a DENY policy matched the request",
        "ALLOW policies apply to the workload and none of their rules matched (`[none]`): with any "
        "ALLOW policy, everything not allowed is denied",
    ),
    (
        "see the policies in force with `isthmus x authz check <proxy>`",
        "add an ALLOW rule for this source/operation, or narrow the DENY rule",
    ),
)


def rbac_policy(details: str) -> str | None:
    """The policy name in `rbac_access_denied_matched_policy[<name>]` ("none" when no ALLOW matched)."""
    if not details.startswith(RBAC_DENIED_PREFIX):
        return None
    return details[len(RBAC_DENIED_PREFIX) :].removesuffix("]") or "none"


# What istiod appends to the name of a CUSTOM rule whose provider cannot be used: the rule denies instead.
BAD_CUSTOM_SUFFIX = naming.BAD_CUSTOM_SUFFIX


def parse_policy_name(name: str) -> tuple[str, str, int] | None:
    """(namespace, policy, rule index) of `ns[<ns>]-policy[<name>]-rule[<i>]`. CUSTOM rules carry an
    `istio-ext-authz-[<provider>-]` prefix, and a `-deny-due-to-bad-CUSTOM-action` suffix when their
    provider cannot be used and they deny instead."""
    import re

    m = re.fullmatch(
        r"(?:istio-ext-authz-(?:.*?-)?)?ns\[(?P<ns>[^\]]*)\]-policy\[(?P<name>[^\]]*)\]-rule\[(?P<i>\d+)\]"
        r"(?:-deny-due-to-bad-CUSTOM-action)?",
        name,
    )
    if not m:
        return None
    return m.group("ns"), m.group("name"), int(m.group("i"))


def transport_failure_words(reason: str) -> str | None:
    r = reason.lower().replace("_", " ")
    if "connection refused" in r:
        return "connection refused: nothing listens at that address and port"
    if "timed out" in r or "timeout" in r:
        return "the connection attempt timed out: the endpoint is unreachable"
    if "tls" in r or "ssl" in r or "certificate" in r or "handshake" in r:
        return "the TLS handshake failed: mTLS/TLS settings of client and server do not agree"
    if "no route to host" in r or "network is unreachable" in r:
        return "the endpoint's network is unreachable"
    if "reset" in r:
        return "the connection was reset by the peer"
    return None
