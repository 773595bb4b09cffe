"""Resilience translation (issue 3) against istiod: route/route.go (setTimeout, applyHTTPRouteDestination,
ApplyRedirect, MirrorPercent, TranslateFault), route/retry/retry.go (ConvertPolicy), model/virtualservice.go
(mergeHTTPRoute) and cluster_traffic_policy.go (applyConnectionPool, applyOutlierDetection)."""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import clusters, route_table, sidecar, snapshot, vhost

REVIEWS = "reviews.default.svc.cluster.local"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def routes(*docs: str, host: str = REVIEWS, port: int = 9080) -> list[dict[str, Any]]:
    table = route_table(snapshot(*docs), sidecar())
    return [r for r in vhost(table, f"{host}:{port}")["routes"] if r.get("name") != "connect"]


def vs(*rules: str) -> str:
    body = "\n".join("  " + line for rule in rules for line in rule.strip().splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{body}
"""


DR_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

DR_HASH = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def test_timeout_is_the_route_timeout_with_max_grpc_timeout_not_max_stream_duration() -> None:
    # A route with max_stream_duration switches Envoy to "new timeouts" and `timeout` is then ignored:
    # istiod sets the deprecated max_grpc_timeout instead (setTimeout).
    (timed, untimed) = routes(
        vs(
            """
- match: [{uri: {prefix: /slow}}]
  route: [{destination: {host: reviews}}]
  timeout: 1.5s
""",
            "- route: [{destination: {host: reviews}}]",
        )
    )
    assert timed["route"]["timeout"] == "1.500s" and timed["route"]["max_grpc_timeout"] == "1.500s"
    assert untimed["route"]["timeout"] == "0s" and untimed["route"]["max_grpc_timeout"] == "0s"
    assert "max_stream_duration" not in timed["route"] and "max_stream_duration" not in untimed["route"]


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        # ConvertPolicy: the default, with attempts and the parsed retryOn over it.
        (
            "{attempts: 3, retryOn: 'gateway-error,409,connect-failure,503'}",
            {
                "num_retries": 3,
                "retry_on": "gateway-error,connect-failure,retriable-status-codes",
                "retriable_status_codes": [409, 503],
            },
        ),
        # Status codes with retriable-status-codes already present: not added twice.
        (
            "{attempts: 1, retryOn: 'retriable-status-codes,502'}",
            {"num_retries": 1, "retry_on": "retriable-status-codes", "retriable_status_codes": [502]},
        ),
        # Only attempts: the default retryOn stays (still without status codes).
        (
            "{attempts: 5}",
            {
                "num_retries": 5,
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            },
        ),
        (
            "{attempts: 2, perTryTimeout: 250ms, backoff: 40ms, retryOn: reset}",
            {"num_retries": 2, "retry_on": "reset", "per_try_timeout": "0.250s", "base_interval": "0.040s"},
        ),
    ],
)
def test_retry_policy_conversion(retries: str, expected: dict[str, Any]) -> None:
    (r,) = routes(vs(f"- route: [{{destination: {{host: reviews}}}}]\n  retries: {retries}"))
    policy = r["route"]["retry_policy"]
    got = {
        k: policy[k]
        for k in ("num_retries", "retry_on", "retriable_status_codes", "per_try_timeout")
        if k in policy
    }
    if "retry_back_off" in policy:
        got["base_interval"] = policy["retry_back_off"]["base_interval"]
    assert got == expected
    assert policy["host_selection_retry_max_attempts"] == "5"
    assert [p["name"] for p in policy["retry_host_predicate"]] == [PREVIOUS_HOSTS]


def test_attempts_zero_disables_retries_and_options_map() -> None:
    (off, remote, no_prev) = routes(
        vs(
            """
- match: [{uri: {prefix: /off}}]
  route: [{destination: {host: reviews}}]
  retries: {attempts: 0}
""",
            """
- match: [{uri: {prefix: /remote}}]
  route: [{destination: {host: reviews}}]
  retries: {attempts: 2, retryRemoteLocalities: true}
""",
            """
- route: [{destination: {host: reviews}}]
  retries: {attempts: 2, retryIgnorePreviousHosts: false}
""",
        )
    )
    assert "retry_policy" not in off["route"]
    priority = remote["route"]["retry_policy"]["retry_priority"]
    assert priority["name"] == "envoy.retry_priorities.previous_priorities"
    assert priority["typed_config"]["update_frequency"] == 2
    assert "retry_host_predicate" not in no_prev["route"]["retry_policy"]


def test_mesh_default_http_retry_policy_replaces_the_builtin_default() -> None:
    mesh = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultHttpRetryPolicy: {attempts: 4, retryOn: "5xx,503"}
"""
    snap = snapshot(
        mesh,
        vs(
            """
- match: [{uri: {prefix: /own}}]
  route: [{destination: {host: reviews}}]
  retries: {attempts: 1, retryOn: reset}
""",
            "- route: [{destination: {host: reviews}}]",
        ),
    )
    table = route_table(snap, sidecar())
    own, inherited = (r for r in vhost(table, f"{REVIEWS}:9080")["routes"] if r.get("name") != "connect")
    assert own["route"]["retry_policy"]["retry_on"] == "reset"
    policy = inherited["route"]["retry_policy"]
    assert policy["num_retries"] == 4 and policy["retry_on"] == "5xx,retriable-status-codes"
    assert policy["retriable_status_codes"] == [503]
    # Services without a VirtualService get it on their default route too.
    default = vhost(table, "ratings.other.svc.cluster.local:9080")["routes"][-1]
    assert default["name"] == "default" and default["route"]["retry_policy"]["num_retries"] == 4


def test_consistent_hash_drops_previous_hosts_only_for_a_single_destination() -> None:
    (single, weighted) = routes(
        DR_HASH,
        vs(
            """
- match: [{uri: {prefix: /single}}]
  route: [{destination: {host: reviews, subset: v1}}]
""",
            """
- route:
  - {destination: {host: reviews, subset: v1}, weight: 50}
  - {destination: {host: reviews, subset: v2}, weight: 50}
""",
        ),
    )
    assert single["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    assert "retry_host_predicate" not in single["route"]["retry_policy"]
    assert len(weighted["route"]["hash_policy"]) == 2
    assert [p["name"] for p in weighted["route"]["retry_policy"]["retry_host_predicate"]] == [PREVIOUS_HOSTS]
    # Without a VirtualService (BuildDefaultHTTPOutboundRoute): the hash, and the predicate stays.
    (default,) = routes(DR_HASH)
    assert default["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    assert [p["name"] for p in default["route"]["retry_policy"]["retry_host_predicate"]] == [PREVIOUS_HOSTS]


def test_fault_translation() -> None:
    (delay_only, grpc_abort) = routes(
        vs(
            """
- match: [{uri: {prefix: /delay}}]
  fault: {delay: {percentage: {value: 0.5}, fixedDelay: 7s}}
  route: [{destination: {host: reviews}}]
""",
            """
- fault: {abort: {grpcStatus: UNAVAILABLE}}
  route: [{destination: {host: reviews}}]
""",
        )
    )
    fault = delay_only["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {
        "fixed_delay": "7s",
        "percentage": {"numerator": 5000, "denominator": "MILLION"},
    }
    assert "abort" not in fault
    fault = grpc_abort["typed_per_filter_config"]["envoy.filters.http.fault"]
    # No percentage given: none set (Envoy then aborts no request, as with istiod).
    assert fault["abort"] == {"grpc_status": 14}


@pytest.mark.parametrize(
    ("redirect", "port"),
    [
        ("{authority: a.example, port: 80}", None),  # no explicit :80 for http
        ("{authority: a.example, port: 443, scheme: https}", None),  # nor :443 for https
        ("{authority: a.example, port: 443}", 443),
        ("{authority: a.example, port: 8443, scheme: https}", 8443),
        ("{authority: a.example, derivePort: FROM_REQUEST_PORT}", 9080),
        ("{authority: a.example, derivePort: FROM_PROTOCOL_DEFAULT}", None),
        ("{authority: a.example}", None),
    ],
)
def test_redirect_ports(redirect: str, port: int | None) -> None:
    (r,) = routes(vs(f"- redirect: {redirect}"))
    assert r["redirect"].get("port_redirect") == port
    assert r["redirect"]["host_redirect"] == "a.example"


def test_mirror_percentages() -> None:
    (default, zero, legacy, several) = routes(
        vs(
            """
- match: [{uri: {prefix: /default}}]
  route: [{destination: {host: reviews, subset: v1}}]
  mirror: {host: reviews, subset: v2}
""",
            """
- match: [{uri: {prefix: /zero}}]
  route: [{destination: {host: reviews, subset: v1}}]
  mirror: {host: reviews, subset: v2}
  mirrorPercentage: {value: 0}
""",
            """
- match: [{uri: {prefix: /legacy}}]
  route: [{destination: {host: reviews, subset: v1}}]
  mirror: {host: reviews, subset: v2}
  mirror_percent: 30
""",
            """
- route: [{destination: {host: reviews, subset: v1}}]
  mirrors:
  - destination: {host: reviews, subset: v2}
  - destination: {host: ratings.other.svc.cluster.local}
    percentage: {value: 12.5}
  - destination: {host: reviews, subset: v3}
    percentage: {value: 0}
""",
        ),
        DR_SUBSETS,
    )
    (m,) = default["route"]["request_mirror_policies"]
    assert m["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    assert m["runtime_fraction"]["default_value"] == {"numerator": 100}  # 100, HUNDRED
    assert m["trace_sampled"] is False
    assert "request_mirror_policies" not in zero["route"]
    assert legacy["route"]["request_mirror_policies"][0]["runtime_fraction"]["default_value"] == {
        "numerator": 30
    }
    assert [
        (p["cluster"], p["runtime_fraction"]["default_value"])
        for p in several["route"]["request_mirror_policies"]
    ] == [
        (f"outbound|9080|v2|{REVIEWS}", {"numerator": 100}),
        ("outbound|9080||ratings.other.svc.cluster.local", {"numerator": 125000, "denominator": "MILLION"}),
    ]


def test_delegate_routes_inherit_what_they_leave_unset() -> None:
    root = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: root
    match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api}
    timeout: 2s
    retries: {attempts: 1}
    mirrors: [{destination: {host: reviews, subset: v2}}]
    headers: {request: {set: {x-root: "1"}}}
"""
    delegate = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api}
spec:
  http:
  - name: own
    match: [{uri: {prefix: /api/own}}]
    route: [{destination: {host: reviews, subset: v1}}]
    timeout: 5s
    headers: {request: {set: {x-own: "1"}}}
  - name: conflict
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - name: rest
    route: [{destination: {host: reviews, subset: v1}}]
"""
    (own, rest) = routes(delegate, root)
    assert own["name"] == "root-own" and own["match"]["prefix"] == "/api/own"
    assert own["route"]["timeout"] == "5s"
    assert [h["header"]["key"] for h in own["request_headers_to_add"]] == ["x-own"]
    assert rest["name"] == "root-rest" and rest["match"]["prefix"] == "/api"
    assert rest["route"]["timeout"] == "2s" and rest["route"]["retry_policy"]["num_retries"] == 1
    assert [h["header"]["key"] for h in rest["request_headers_to_add"]] == ["x-root"]
    # `mirrors` left empty in the delegate is inherited too (an empty list is proto's unset).
    assert [p["cluster"] for p in rest["route"]["request_mirror_policies"]] == [f"outbound|9080|v2|{REVIEWS}"]


def test_connection_pool_and_outlier_detection_mapping() -> None:
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms, maxConnectionDuration: 1h, idleTimeout: 5m}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 9, maxRequestsPerConnection: 1, maxRetries: 4, idleTimeout: 30s}
    outlierDetection:
      consecutive5xxErrors: 3
      consecutiveGatewayErrors: 2
      interval: 500ms
      baseEjectionTime: 3s
      maxEjectionPercent: 100
      minHealthPercent: 70
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
"""
    c = clusters(snapshot(dr), sidecar())[f"outbound|9080||{REVIEWS}"]
    (t,) = c["circuit_breakers"]["thresholds"]
    assert (t["max_connections"], t["max_pending_requests"], t["max_requests"], t["max_retries"]) == (
        1,
        1,
        9,
        4,
    )
    assert c["connect_timeout"] == "0.250s"
    opts = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    common = opts["common_http_protocol_options"]
    # http.idleTimeout wins over tcp.idleTimeout.
    assert common == {
        "idle_timeout": "30s",
        "max_requests_per_connection": 1,
        "max_connection_duration": "3600s",
    }
    assert c["outlier_detection"] == {
        "consecutive_5xx": 3,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": 2,
        "enforcing_consecutive_gateway_failure": 100,
        "interval": "0.500s",
        "base_ejection_time": "3s",
        "max_ejection_percent": 100,
        "enforcing_success_rate": 0,
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 4,
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_local_origin_success_rate": 0,
    }
    assert c["common_lb_config"]["healthy_panic_threshold"] == {"value": 70.0}


def test_unset_max_ejection_percent_is_left_to_envoy() -> None:
    # istiod sets only what the user sets: Envoy's default (10%) then applies.
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}
"""
    od = clusters(snapshot(dr), sidecar())[f"outbound|9080||{REVIEWS}"]["outlier_detection"]
    assert od == {"consecutive_5xx": 3, "enforcing_consecutive_5xx": 100, "enforcing_success_rate": 0}
