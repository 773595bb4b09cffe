"""Retry policy parity with istiod, case by case, as Istio YAML through the real route generator.

Sources (istio/istio): pilot/pkg/networking/core/route/retry/retry_test.go (TestRetry) and retry.go
(ConvertPolicy, parseRetryOn, DefaultPolicy / DefaultConsistentHashPolicy), with the call sites in
pilot/pkg/networking/core/route/route.go (applyHTTPRouteDestination: VirtualService retries, else the
MeshConfig defaultHttpRetryPolicy; BuildDefaultHTTPOutboundRoute: the mesh default with hashPolicy
false) and pilot/pkg/features (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY, default true).

TestRetry's basic conversions (nil -> default, attempts 0, all fields, retryOn parsing with codes,
retryRemoteLocalities, previous-hosts with and without a hash) are in test_istio_route_parity.py; this
file ports the remaining TestRetry assertions field by field and the paths ConvertPolicy is reached
through (mesh default, default routes, gateways, weighted and non-forwarding routes). TestRetry's
made-up retryOn names ("some,fake,conditions", whitespace, empty parts, "1000") are rejected by
validation here as by Istio's webhook (validateHTTPRetry), so they are checked as rejections.
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import PODS, configs, generate, route_table, sidecar, snapshot, vhost

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

REVIEWS = "reviews.default.svc.cluster.local"
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
    },
}
PREVIOUS_PRIORITIES = {
    "name": "envoy.retry_priorities.previous_priorities",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
        "update_frequency": 2,
    },
}
# retry.DefaultPolicy(): no retriable_status_codes (503 excluded by default, EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY).
DEFAULT = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": "5",
}
DEFAULT_CONSISTENT_HASH = {k: v for k, v in DEFAULT.items() if k != "retry_host_predicate"}


def vs(http: str, hosts: str = "[reviews]", extra: str = "") -> str:
    body = "\n".join("  " + line for line in http.strip("\n").splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: {hosts}
{extra}  http:
{body}
"""


def mesh(retry: str) -> str:
    return f"""
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh, namespace: istio-system}}
spec:
  defaultHttpRetryPolicy: {retry}
"""


def hash_dr(host: str = "reviews") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}-hash, namespace: default}}
spec:
  host: {host}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}
"""


def routes(*docs: str, host: str = REVIEWS, port: int = 9080) -> list[dict[str, Any]]:
    table = route_table(snapshot(*docs), sidecar())
    return [r for r in vhost(table, f"{host}:{port}")["routes"] if r.get("name") != "connect"]


def policy(retries: str | None, *docs: str) -> dict[str, Any] | None:
    extra = f"\n  retries: {retries}" if retries is not None else ""
    (r,) = routes(*docs, vs(f"- route: [{{destination: {{host: reviews}}}}]{extra}"))
    return r["route"].get("retry_policy")


def default_route_policy(*docs: str, host: str = REVIEWS, port: int = 9080) -> dict[str, Any] | None:
    (r,) = routes(*docs, host=host, port=port)
    assert r["name"] == "default"
    return r["route"].get("retry_policy")


def rejected(*docs: str) -> str:
    """The store's error for these documents (they must be rejected)."""
    store = Store()
    with pytest.raises(Exception) as err:
        store.apply(loader.load_text("\n---\n".join(docs), "test.yaml"), "test")
    return str(err.value)


# --- TestRetry, the assertions test_istio_route_parity.py does not make --------------------------


def test_retry_with_all_fields_set_keeps_default_host_selection_and_no_priority() -> None:
    # TestRetryWithAllFieldsSet: RetriableStatusCodes empty, RetryPriority nil,
    # HostSelectionRetryMaxAttempts and the previous-hosts predicate from the default.
    got = policy("{attempts: 2, retryOn: 'gateway-error,connect-failure', perTryTimeout: 3s, backoff: 2s}")
    assert got is not None
    assert "retriable_status_codes" not in got
    assert "retry_priority" not in got
    assert got["host_selection_retry_max_attempts"] == DEFAULT["host_selection_retry_max_attempts"]
    assert got["retry_host_predicate"] == [PREVIOUS_HOSTS]
    assert got["retry_back_off"] == {"base_interval": "2s"}
    assert got["per_try_timeout"] == "3s"


def test_retry_on_with_reset_before_request() -> None:
    # TestRetryOnWithResetBeforeRequest: the policy name passes through, no status codes.
    got = policy("{attempts: 2, retryOn: reset-before-request}")
    assert got == {**DEFAULT, "retry_on": "reset-before-request"}


def test_retry_on_containing_status_codes_keeps_order_of_names_and_codes() -> None:
    # TestRetryOnContainingStatusCodes: names in order, codes in order, "retriable-status-codes" added last.
    got = policy("{attempts: 2, retryOn: 'reset,gateway-error,5xx,404,connect-failure,503'}")
    assert got is not None
    assert got["retry_on"] == "reset,gateway-error,5xx,connect-failure,retriable-status-codes"
    assert got["retriable_status_codes"] == [404, 503]


def test_retry_on_with_retriable_status_codes_is_not_added_twice() -> None:
    # TestRetryOnWithRetriableStatusCodes: the condition is already there.
    got = policy("{attempts: 2, retryOn: 'gateway-error,retriable-status-codes,503'}")
    assert got is not None
    assert got["retry_on"] == "gateway-error,retriable-status-codes"
    assert got["retriable_status_codes"] == [503]


def test_retry_on_only_status_codes() -> None:
    # ConvertPolicy: RetryOn is "" after parseRetryOn, then `out.RetryOn += ",retriable-status-codes"`:
    # istiod sends the leading comma as is (Envoy's splitToken skips the empty part).
    got = policy("{attempts: 3, retryOn: '502,503'}")
    assert got is not None
    assert got["retry_on"] == ",retriable-status-codes"
    assert got["retriable_status_codes"] == [502, 503]


@pytest.mark.parametrize(
    "retry_on",
    [
        "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",  # gRPC status conditions
        "retriable-4xx,envoy-ratelimited,retriable-headers,http3-post-connect-failure",
        "refused-stream,reset",
    ],
)
def test_retry_on_envoy_and_grpc_policies_pass_through(retry_on: str) -> None:
    # parseRetryOn: every part that is not a status code is an Envoy (or gRPC) retry_on name, kept as is.
    got = policy(f"{{attempts: 2, retryOn: {retry_on!r}}}")
    assert got == {**DEFAULT, "retry_on": retry_on}


def test_missing_per_try_timeout_and_backoff_are_unset() -> None:
    # TestMissingPerTryTimeoutShouldReturnNil (and no RetryBackOff without in.Backoff).
    got = policy("{attempts: 5}")
    assert got == {**DEFAULT, "num_retries": 5}


def test_per_try_timeout_alone() -> None:
    # ConvertPolicy: PerTryTimeout set from in.PerTryTimeout, the rest from the default.
    assert policy("{attempts: 3, perTryTimeout: 0.5s}") == {
        **DEFAULT,
        "num_retries": 3,
        "per_try_timeout": "0.500s",
    }


def test_backoff_alone() -> None:
    # ConvertPolicy: RetryBackOff{BaseInterval: in.Backoff} only; no max_interval.
    assert policy("{attempts: 3, backoff: 100ms}") == {
        **DEFAULT,
        "num_retries": 3,
        "retry_back_off": {"base_interval": "0.100s"},
    }


def test_retry_remote_localities_false_sets_no_priority() -> None:
    # ConvertPolicy: RetryPriority only when RetryRemoteLocalities is true.
    assert policy("{attempts: 2, retryRemoteLocalities: false}") == DEFAULT


def test_retry_remote_localities_with_hash_policy() -> None:
    # TestRetryRemoteLocalities combined with DefaultConsistentHashPolicy: the priority is added, no predicate.
    assert policy("{attempts: 2, retryRemoteLocalities: true}", hash_dr()) == {
        **DEFAULT_CONSISTENT_HASH,
        "retry_priority": PREVIOUS_PRIORITIES,
    }


def test_retry_ignore_previous_hosts_true_without_hash() -> None:
    # RetryIgnorePreviousHosts true replaces the predicate list with the same single predicate.
    assert policy("{attempts: 2, retryIgnorePreviousHosts: true}") == DEFAULT


def test_nil_retry_with_hash_policy_is_the_consistent_hash_default() -> None:
    # ConvertPolicy(nil, hashPolicy=true) returns DefaultConsistentHashPolicy().
    assert policy(None, hash_dr()) == DEFAULT_CONSISTENT_HASH


@pytest.mark.parametrize(
    "retry_on",
    [
        "some,fake,conditions",  # TestRetryWithAllFieldsSet's made-up names
        "5xx,,reset",  # TestRetryOnWithEmptyParts
        " 5xx, reset",  # TestRetryOnWithWhitespace
        "5xx,1000",  # TestRetryOnWithInvalidStatusCodesShouldAddToRetryOn
    ],
)
def test_invalid_retry_on_is_rejected_as_by_istio_validation(retry_on: str) -> None:
    # validateHTTPRetry: every comma-separated part must be a status code or a supported policy.
    err = rejected(
        vs(
            f"- route: [{{destination: {{host: reviews}}}}]\n  retries: {{attempts: 2, retryOn: {retry_on!r}}}"
        )
    )
    assert "is not a valid retryOn policy" in err


@pytest.mark.parametrize("retry_on", ["-503", "0", "50x"])
def test_retry_on_numbers_that_atoi_or_status_text_refuse(retry_on: str) -> None:
    # validateHTTPRetry: strconv.Atoi, then http.StatusText (no status for -503 or 0; "50x" no number).
    err = rejected(
        vs(
            f"- route: [{{destination: {{host: reviews}}}}]\n  retries: {{attempts: 2, retryOn: {retry_on!r}}}"
        )
    )
    assert "is not a valid retryOn policy" in err


def test_a_signed_status_code_is_a_status_code() -> None:
    # strconv.Atoi("+503") is 503: validation takes it, and the route retries on status 503.
    rc = policy("{attempts: 2, retryOn: '5xx,+503'}")
    assert rc is not None
    assert rc["retry_on"] == "5xx,retriable-status-codes"
    assert rc["retriable_status_codes"] == [503]


def test_empty_retries_means_no_retries() -> None:
    # `retries: {}` is an HTTPRetry with Attempts 0: ConvertPolicy returns nil (not the default).
    assert policy("{}") is None


def test_retry_on_without_attempts_is_rejected() -> None:
    # validateHTTPRetry: attempts 0 (unset) with retryOn set.
    err = rejected(vs("- route: [{destination: {host: reviews}}]\n  retries: {retryOn: 5xx}"))
    assert "attempts are set to 0" in err


def test_zero_attempts_with_other_fields_is_rejected() -> None:
    # validateHTTPRetry: "http retry policy configured when attempts are set to 0 (disabled)".
    err = rejected(
        vs("- route: [{destination: {host: reviews}}]\n  retries: {attempts: 0, perTryTimeout: 1s}")
    )
    assert "attempts are set to 0" in err


# --- applyHTTPRouteDestination: which policy a route gets -----------------------------------------


def test_weighted_route_with_hash_keeps_previous_hosts() -> None:
    # applyHTTPRouteDestination: consistentHash only for a single destination; weighted -> DefaultPolicy.
    (r,) = routes(
        hash_dr(),
        vs("""
- route:
  - {destination: {host: reviews, subset: v1}, weight: 50}
  - {destination: {host: reviews, subset: v2}, weight: 50}
"""),
    )
    assert r["route"]["retry_policy"] == DEFAULT


def test_weighted_route_with_a_zero_weight_destination_is_still_weighted() -> None:
    # len(in.Route) != 1 even when a 0-weight destination is dropped: no consistent-hash policy.
    (r,) = routes(
        hash_dr(),
        vs("""
- route:
  - {destination: {host: reviews, subset: v1}, weight: 100}
  - {destination: {host: reviews, subset: v2}, weight: 0}
"""),
    )
    assert r["route"]["retry_policy"] == DEFAULT


def test_single_subset_destination_with_hash_drops_previous_hosts() -> None:
    # hashForHTTPDestination: the DR's hash applies to the subset destination too.
    (r,) = routes(hash_dr(), vs("- route: [{destination: {host: reviews, subset: v1}}]"))
    assert r["route"]["retry_policy"] == DEFAULT_CONSISTENT_HASH


def test_redirect_and_direct_response_routes_have_no_retry_policy() -> None:
    # translateRoute: ApplyRedirect / ApplyDirectResponse never reach ConvertPolicy.
    got = routes(
        vs("""
- match: [{uri: {prefix: /old}}]
  redirect: {uri: /new}
  retries: {attempts: 3}
- match: [{uri: {prefix: /static}}]
  directResponse: {status: 200}
- route: [{destination: {host: reviews}}]
""")
    )
    assert "route" not in got[0] and "route" not in got[1]
    assert got[2]["route"]["retry_policy"] == DEFAULT


def test_each_http_rule_gets_its_own_retries() -> None:
    # applyHTTPRouteDestination reads in.Retries per HTTPRoute.
    got = routes(
        vs("""
- match: [{uri: {prefix: /a}}]
  route: [{destination: {host: reviews}}]
  retries: {attempts: 7, retryOn: 5xx}
- match: [{uri: {prefix: /b}}]
  route: [{destination: {host: reviews}}]
  retries: {attempts: 0}
- route: [{destination: {host: reviews}}]
""")
    )
    assert got[0]["route"]["retry_policy"] == {**DEFAULT, "num_retries": 7, "retry_on": "5xx"}
    assert "retry_policy" not in got[1]["route"]
    assert got[2]["route"]["retry_policy"] == DEFAULT


# --- MeshConfig defaultHttpRetryPolicy ----------------------------------------------------------


def test_mesh_default_applies_to_virtual_service_routes_without_retries() -> None:
    # applyHTTPRouteDestination: policy = mesh.GetDefaultHttpRetryPolicy() when in.Retries is nil.
    got = policy(None, mesh("{attempts: 4, retryOn: 'gateway-error,503', perTryTimeout: 2s}"))
    assert got == {
        **DEFAULT,
        "num_retries": 4,
        "retry_on": "gateway-error,retriable-status-codes",
        "retriable_status_codes": [503],
        "per_try_timeout": "2s",
    }


def test_virtual_service_retries_override_the_mesh_default() -> None:
    # in.Retries wins over the mesh default, field by field nothing is merged from the mesh.
    got = policy("{attempts: 1}", mesh("{attempts: 4, retryOn: gateway-error, perTryTimeout: 2s}"))
    assert got == {**DEFAULT, "num_retries": 1}


def test_virtual_service_zero_attempts_disables_even_with_a_mesh_default() -> None:
    assert policy("{attempts: 0}", mesh("{attempts: 4}")) is None


def test_mesh_default_zero_attempts_disables_retries_on_every_route() -> None:
    # ConvertPolicy(&HTTPRetry{Attempts: 0}) is nil: VirtualService routes and default routes alike.
    assert policy(None, mesh("{attempts: 0}")) is None
    assert default_route_policy(mesh("{attempts: 0}")) is None


def test_mesh_default_applies_to_default_routes() -> None:
    # BuildDefaultHTTPOutboundRoute: ConvertPolicy(mesh.GetDefaultHttpRetryPolicy(), false).
    got = default_route_policy(
        mesh("{attempts: 6, retryOn: 'connect-failure,reset', retryRemoteLocalities: true}")
    )
    assert got == {
        **DEFAULT,
        "num_retries": 6,
        "retry_on": "connect-failure,reset",
        "retry_priority": PREVIOUS_PRIORITIES,
    }


def test_default_route_without_mesh_default_is_the_default_policy() -> None:
    # BuildDefaultHTTPOutboundRoute with no mesh default: DefaultPolicy().
    assert default_route_policy() == DEFAULT


def test_default_route_keeps_previous_hosts_under_consistent_hash() -> None:
    # BuildDefaultHTTPOutboundRoute passes hashPolicy=false even when the DR hashes (the hash policy is
    # still set on the route by buildSidecarVirtualHostForService).
    (r,) = routes(hash_dr())
    assert r["route"]["retry_policy"] == DEFAULT
    assert r["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]


def test_mesh_default_with_hash_drops_previous_hosts_on_virtual_service_routes() -> None:
    # applyHTTPRouteDestination: the mesh default goes through ConvertPolicy with the route's hash flag.
    assert policy(None, hash_dr(), mesh("{attempts: 3}")) == {**DEFAULT_CONSISTENT_HASH, "num_retries": 3}


def test_mesh_default_retry_ignore_previous_hosts_false() -> None:
    assert default_route_policy(mesh("{attempts: 3, retryIgnorePreviousHosts: false}")) == {
        k: v for k, v in DEFAULT.items() if k != "retry_host_predicate"
    } | {"num_retries": 3}


def test_invalid_mesh_default_is_rejected() -> None:
    # The mesh default is an HTTPRetry: the same validation as a VirtualService's.
    assert "is not a valid retryOn policy" in rejected(mesh("{attempts: 2, retryOn: bogus}"))


# --- gateways: the same ConvertPolicy ------------------------------------------------------------

GW_POD = Pod("gw-0", "istio-system", "127.7.0.9", {"istio": "ingressgateway"}, workload="gw", gateway=True)
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def gateway_routes(*docs: str) -> list[dict[str, Any]]:
    snap = Snapshot.build(1, configs(GATEWAY, *docs), [*PODS, GW_POD])
    proxy = Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels={"istio": "ingressgateway"},
    )
    table = generate(snap, proxy, naming.ROUTE_TYPE, {"http.80"})["http.80"]
    return [r for vh in table["virtual_hosts"] for r in vh["routes"]]


def test_gateway_routes_convert_retries_as_sidecars_do() -> None:
    # Gateway routes come from the same BuildHTTPRoutesForVirtualService / applyHTTPRouteDestination.
    extra = "  gateways: [gw]\n"
    got = gateway_routes(
        vs(
            """
- match: [{uri: {prefix: /r}}]
  route: [{destination: {host: reviews.default.svc.cluster.local}}]
  retries: {attempts: 3, retryOn: '5xx,429'}
- route: [{destination: {host: reviews.default.svc.cluster.local}}]
""",
            hosts="['*']",
            extra=extra,
        ),
        mesh("{attempts: 1}"),
    )
    assert got[0]["route"]["retry_policy"] == {
        **DEFAULT,
        "num_retries": 3,
        "retry_on": "5xx,retriable-status-codes",
        "retriable_status_codes": [429],
    }
    assert got[1]["route"]["retry_policy"] == {**DEFAULT, "num_retries": 1}


# --- which hash decides DefaultConsistentHashPolicy (route.go hashForHTTPDestination / hashForService) --

PLS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pls, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {consistentHash: {httpHeaderName: x-port}}
"""
SUBSET_HASH_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sub, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-sub}}}}
  - {name: v2, labels: {version: v2}}
"""


@pytest.mark.parametrize(
    ("dr", "destination", "hashed"),
    [
        # portLevelSettingsConsistentHash only looks at a destination with an explicit port
        (PLS_DR, "{host: reviews}", False),
        (PLS_DR, "{host: reviews, port: {number: 9080}}", True),
        # a subset's own hash applies to that subset only
        (SUBSET_HASH_DR, "{host: reviews, subset: v1}", True),
        (SUBSET_HASH_DR, "{host: reviews, subset: v2}", False),
        (SUBSET_HASH_DR, "{host: reviews}", False),
    ],
)
def test_hash_source_decides_the_previous_hosts_predicate(dr: str, destination: str, hashed: bool) -> None:
    (r,) = routes(dr, vs(f"- route: [{{destination: {destination}}}]"))
    assert r["route"]["retry_policy"] == (DEFAULT_CONSISTENT_HASH if hashed else DEFAULT)
    assert ("hash_policy" in r["route"]) is hashed


def test_default_route_with_port_level_hash_keeps_previous_hosts() -> None:
    # hashForService reads the port's level hash for the default route, whose retry stays DefaultPolicy.
    (r,) = routes(PLS_DR)
    assert r["route"]["hash_policy"] == [{"header": {"header_name": "x-port"}}]
    assert r["route"]["retry_policy"] == DEFAULT


def test_passthrough_allow_any_route_has_no_retry_policy() -> None:
    # httproute.go's allow_any virtual host: PassthroughCluster with timeouts 0 and no RetryPolicy.
    table = route_table(snapshot(), sidecar())
    (r,) = [r for r in vhost(table, "allow_any")["routes"] if r.get("name") == "allow_any"]
    assert r["route"]["cluster"] == "PassthroughCluster" and "retry_policy" not in r["route"]
