"""Generator output against istiod's translation rules (istio-semantics.md §1-§4)."""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import PODS, clusters, generate, hcms, route_table, sidecar, snapshot, vhost

from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.other.svc.cluster.local"


def test_cluster_defaults_follow_istio() -> None:
    c = clusters(snapshot(), sidecar())[f"outbound|9080||{REVIEWS}"]
    assert c["type"] == "EDS" and c["eds_cluster_config"]["service_name"] == f"outbound|9080||{REVIEWS}"
    assert c["lb_policy"] == "LEAST_REQUEST"
    assert c["connect_timeout"] == "10s"
    (threshold,) = c["circuit_breakers"]["thresholds"]
    for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
        assert threshold[key] == 4294967295
    assert threshold["track_remaining"] is True
    assert "outlier_detection" not in c
    meta = c["metadata"]["filter_metadata"]["istio"]
    assert meta["services"] == [{"host": REVIEWS, "name": "reviews", "namespace": "default"}]


def test_default_route_has_istio_default_retry_policy_and_no_timeout() -> None:
    table = route_table(snapshot(), sidecar())
    vh = vhost(table, f"{REVIEWS}:9080")
    (connect, default) = vh["routes"]
    assert connect["name"] == "connect" and "connect_matcher" in connect["match"]
    assert default["name"] == "default"
    action = default["route"]
    assert action["cluster"] == f"outbound|9080||{REVIEWS}"
    assert action["timeout"] == "0s"
    retry = action["retry_policy"]
    assert retry["num_retries"] == 2
    assert retry["retry_on"] == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert "retriable_status_codes" not in retry  # 503 is not retried by default (istio#52111)
    assert retry["host_selection_retry_max_attempts"] == "5"
    assert retry["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    assert default["decorator"]["operation"] == f"{REVIEWS}:9080/*"


def test_vhost_domains_for_same_and_other_namespace() -> None:
    table = route_table(snapshot(), sidecar())
    same = vhost(table, f"{REVIEWS}:9080")["domains"]
    assert set(same) == {
        f"{REVIEWS}:9080",
        f"{REVIEWS}.:9080",
        "reviews:9080",
        "reviews.default:9080",
        "reviews.default.svc:9080",
    }
    other = vhost(table, f"{RATINGS}:9080")["domains"]
    assert "ratings:9080" not in other and "ratings.other:9080" in other
    # Port 80 services also answer without the port (the HTTP proxy's port-80 rule).
    web = vhost(table, "web.default.svc.cluster.local:80")["domains"]
    assert "web" in web and "web:80" in web
    assert table["virtual_hosts"][-1]["name"] == "allow_any"
    assert table["validate_clusters"] is False


def test_tcp_port_gets_connect_only_vhost() -> None:
    table = route_table(snapshot(), sidecar())
    vh = vhost(table, f"{RATINGS}:5432")
    assert [r["name"] for r in vh["routes"]] == ["connect"]
    assert vh["routes"][0]["route"]["cluster"] == f"outbound|5432||{RATINGS}"


def test_route_translation_details() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: [reviews]
      http:
      - name: r1
        match: [{name: m1, uri: {prefix: /a}, headers: {b: {exact: "1"}, a: {}}, queryParams: {q: {}}}]
        headers:
          request: {set: {z: "1", a: "2"}, add: {host: h.example.com}, remove: [y]}
        fault: {abort: {httpStatus: 418, percentage: {value: 12.5}}, delay: {fixedDelay: 2s, percent: 10}}
        mirror: {host: ratings.other.svc.cluster.local}
        mirrorPercentage: {value: 50}
        retries: {attempts: 3, retryOn: "5xx,503,reset", perTryTimeout: 1s}
        timeout: 4s
        route:
        - {destination: {host: reviews, subset: v1}, weight: 90}
        - {destination: {host: reviews, subset: v2}, weight: 10}
        - {destination: {host: reviews, subset: v3}, weight: 0}
      - route: [{destination: {host: reviews}}]
      - route: [{destination: {host: ratings.other.svc.cluster.local}}]
    """
    table = route_table(snapshot(vs), sidecar())
    routes = vhost(table, f"{REVIEWS}:9080")["routes"]
    assert [r.get("name", "") for r in routes] == ["connect", "r1.m1", ""]  # the 3rd rule follows a catch-all
    r = routes[1]
    assert r["match"]["prefix"] == "/a" and r["match"]["case_sensitive"] is True
    assert [h["name"] for h in r["match"]["headers"]] == ["a", "b"]
    assert r["match"]["headers"][0]["present_match"] is True
    assert r["match"]["query_parameters"] == [{"name": "q", "present_match": True}]
    adds = [(h["header"]["key"], h.get("append_action")) for h in r["request_headers_to_add"]]
    assert adds == [("a", "OVERWRITE_IF_EXISTS_OR_ADD"), ("z", "OVERWRITE_IF_EXISTS_OR_ADD")]
    assert r["request_headers_to_remove"] == ["y"]
    action = r["route"]
    assert action["host_rewrite_literal"] == "h.example.com"
    assert [c["name"] for c in action["weighted_clusters"]["clusters"]] == [
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
    ]
    assert action["timeout"] == "4s"
    retry = action["retry_policy"]
    assert retry["num_retries"] == 3 and retry["per_try_timeout"] == "1s"
    assert retry["retry_on"] == "5xx,reset,retriable-status-codes" and retry["retriable_status_codes"] == [
        503
    ]
    (mirror,) = action["request_mirror_policies"]
    assert mirror["cluster"] == f"outbound|9080||{RATINGS}"
    assert mirror["runtime_fraction"]["default_value"] == {"numerator": 500000, "denominator": "MILLION"}
    fault = r["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["abort"]["http_status"] == 418
    assert fault["abort"]["percentage"] == {"numerator": 125000, "denominator": "MILLION"}
    assert fault["delay"]["percentage"] == {"numerator": 10}
    assert r["decorator"]["operation"] == "reviews:9080/a*"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, "MOVED_PERMANENTLY"),
        (302, "FOUND"),
        (303, "SEE_OTHER"),
        (307, "TEMPORARY_REDIRECT"),
        (308, "PERMANENT_REDIRECT"),
    ],
)
def test_redirect_codes(code: int | None, expected: str) -> None:
    code_line = f"redirectCode: {code}" if code else ""
    vs = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: reviews}}
    spec:
      hosts: [reviews]
      http:
      - redirect: {{uri: /new, authority: other.example.com, derivePort: FROM_REQUEST_PORT, {code_line}}}
    """
    (r,) = [
        x
        for x in vhost(route_table(snapshot(vs), sidecar()), f"{REVIEWS}:9080")["routes"]
        if x.get("name") != "connect"
    ]
    redirect = r["redirect"]
    assert redirect.get("response_code", "MOVED_PERMANENTLY") == expected
    assert redirect["path_redirect"] == "/new" and redirect["host_redirect"] == "other.example.com"
    assert redirect["port_redirect"] == 9080


def test_source_labels_filter_routes_per_proxy() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews}
    spec:
      hosts: [reviews]
      http:
      - match: [{sourceLabels: {app: web}}]
        route: [{destination: {host: reviews, subset: v2}}]
    """
    snap = snapshot(vs)
    web = [
        r
        for r in vhost(route_table(snap, sidecar()), f"{REVIEWS}:9080")["routes"]
        if r.get("name") != "connect"
    ]
    assert web[0]["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    other = sidecar("ratings-v1-0", "other", {"app": "ratings"}, "127.7.0.4")
    routes = vhost(route_table(snap, other), f"{REVIEWS}:9080")["routes"]
    # No rule applies to this proxy: the service falls back to its default route.
    assert [r.get("name") for r in routes] == ["connect", "default"]


def test_destination_rule_policy_layering_and_outlier_mapping() -> None:
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN}
        connectionPool: {tcp: {maxConnections: 7, connectTimeout: 2s}, http: {http1MaxPendingRequests: 3, maxRequestsPerConnection: 1}}
        outlierDetection: {consecutiveGatewayErrors: 4, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50}
        portLevelSettings:
        - port: {number: 9080}
          loadBalancer: {simple: RANDOM}
      subsets:
      - name: v1
        labels: {version: v1}
        trafficPolicy:
          outlierDetection: {consecutive5xxErrors: 0}
    """
    cs = clusters(snapshot(dr), sidecar())
    base = cs[f"outbound|9080||{REVIEWS}"]
    # portLevelSettings replace the blocks for that port: RANDOM, no pool, no outlier detection.
    assert base["lb_policy"] == "RANDOM"
    assert base["circuit_breakers"]["thresholds"][0]["max_connections"] == 4294967295
    assert "outlier_detection" not in base
    subset = cs[f"outbound|9080|v1|{REVIEWS}"]
    assert subset["lb_policy"] == "RANDOM"
    od = subset["outlier_detection"]
    assert od["consecutive_5xx"] == 0 and od["enforcing_consecutive_5xx"] == 0
    assert od["enforcing_success_rate"] == 0
    assert subset["common_lb_config"]["healthy_panic_threshold"] == {}  # minHealthPercent 0: panic mode off


def test_destination_rule_lookup_prefers_proxy_namespace_then_service_then_root() -> None:
    docs = [
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: in-service-ns, namespace: other}
        spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
        """,
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: in-root, namespace: istio-system}
        spec: {host: "*.svc.cluster.local", trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
        """,
    ]
    snap = snapshot(*docs)
    assert clusters(snap, sidecar())[f"outbound|9080||{RATINGS}"]["lb_policy"] == "RANDOM"
    assert (
        clusters(snap, sidecar())[f"outbound|9080||{REVIEWS}"].get("lb_policy", "ROUND_ROBIN")
        == "ROUND_ROBIN"
    )
    mine = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: mine, namespace: default}
    spec: {host: ratings.other.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}}
    """
    snap = snapshot(*docs, mine)
    assert clusters(snap, sidecar())[f"outbound|9080||{RATINGS}"]["lb_policy"] == "LEAST_REQUEST"


def test_first_virtual_service_for_a_host_wins_on_sidecars() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: {name}}}
    spec:
      hosts: [reviews]
      http: [{{route: [{{destination: {{host: reviews, subset: {subset}}}}}]}}]
    """
    snap = snapshot(vs.format(name="first", subset="v1"), vs.format(name="second", subset="v2"))
    routes = vhost(route_table(snap, sidecar()), f"{REVIEWS}:9080")["routes"]
    assert routes[-1]["route"]["cluster"] == f"outbound|9080|v1|{REVIEWS}"


def test_inbound_listener_chains_by_mtls_mode() -> None:
    proxy = sidecar("reviews-v1-0", "default", {"app": "reviews", "version": "v1"}, "127.7.0.2")

    def chains(*docs: str) -> list[tuple[str, list[str]]]:
        lst = generate(snapshot(*docs), proxy, naming.LISTENER_TYPE)["127.7.0.2_9080"]
        return [
            (
                c["filter_chain_match"].get("transport_protocol", ""),
                c["filter_chain_match"].get("application_protocols", []),
            )
            for c in lst["filter_chains"]
        ]

    permissive = chains()
    assert permissive[0][0] == "tls" and "istio-http/1.1" in permissive[0][1]
    assert permissive[1] == ("raw_buffer", [])
    strict = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default, namespace: istio-system}
    spec: {mtls: {mode: STRICT}}
    """
    assert chains(strict) == [("tls", [])]
    disable = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: reviews, namespace: default}
    spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}
    """
    assert chains(strict, disable) == [("raw_buffer", [])]


def test_a_broken_virtual_service_is_left_out_not_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from isthmus.xds.gen import routes

    real = routes.translate_route

    def explode(ctx, vs, http, match, port):
        if vs.name == "broken":
            raise RuntimeError("boom")
        return real(ctx, vs, http, match, port)

    monkeypatch.setattr(routes, "translate_route", explode)
    docs = [
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: broken}
        spec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}
        """,
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: fine}
        spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v2}}]}]}
        """,
    ]
    snap = snapshot(*docs)
    table = route_table(snap, sidecar())
    assert vhost(table, f"{REVIEWS}:9080")["routes"][-1]["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    # The broken VS's host falls back to its default route, and the failure is on record.
    assert vhost(table, "web.default.svc.cluster.local:80")["routes"][-1]["name"] == "default"
    assert "VirtualService default/broken" in snap.generation_errors


PER_ROUTE_FILTERS = (
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
    "envoy.filters.http.rbac.audit",
    "envoy.filters.http.rbac.deny",
    "envoy.filters.http.rbac.allow",
)
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
EXT_AUTHZ_PROVIDER = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  extensionProviders:
  - name: authz
    envoyExtAuthzGrpc: {service: ratings.other.svc.cluster.local, port: 9080}
"""


def _disabled_by_default(snap: Any, proxy: Any) -> dict[str, set[bool]]:
    """Per filter of PER_ROUTE_FILTERS, the `disabled` values it has on the proxy's HCMs."""
    out: dict[str, set[bool]] = {}
    for hcm in hcms(snap, proxy):
        for h in hcm["http_filters"]:
            if h["name"] in PER_ROUTE_FILTERS:
                out.setdefault(h["name"], set()).add(h.get("disabled", False))
            else:
                assert not h.get("disabled") or h["name"] == naming.DFP_FILTER, h["name"]
    return out


def _dfp_disabled(snap: Any) -> bool:
    (dfp,) = [
        h for hcm in hcms(snap, sidecar()) for h in hcm["http_filters"] if h["name"] == naming.DFP_FILTER
    ]
    return bool(dfp.get("disabled"))


def test_dynamic_forward_proxy_runs_where_a_cluster_resolves_the_authority() -> None:
    """The HTTP proxy's dfp filter: disabled by default while the PassthroughCluster is the only cluster
    that resolves the request's authority, and the ALLOW_ANY virtual host (the one route to it) enables
    it; enabled everywhere once a service resolves its authority (resolution NONE or DYNAMIC_DNS), as any
    VirtualService may route to it."""
    snap = snapshot()
    assert _dfp_disabled(snap)
    (allow_any,) = [v for v in route_table(snap, sidecar())["virtual_hosts"] if v["name"] == "allow_any"]
    assert naming.DFP_FILTER in allow_any["typed_per_filter_config"]
    passthrough = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: ext, namespace: default}
    spec:
      hosts: [ext.example.com]
      ports: [{number: 80, name: http, protocol: HTTP}]
      resolution: NONE
    """
    assert not _dfp_disabled(snapshot(passthrough))


def test_per_route_filters_run_only_on_routes_that_configure_them() -> None:
    """fault, CORS and the RBAC filters carry no config of their own: they are disabled on a sidecar's
    HCMs (the usual request does not build them), and the route's or virtual host's per-filter config
    (fault, corsPolicy, RBACPerRoute) is what enables them, as Envoy treats any entry as enabling."""
    assert _disabled_by_default(snapshot(), sidecar()) == dict.fromkeys(PER_ROUTE_FILTERS, {True})


def test_per_route_filters_stay_enabled_where_the_route_may_change() -> None:
    """Envoy picks a request's disabled-by-default filters from the route matched when the chain is built;
    a gateway's jwt_authn (claim routing) or an ext_authz provider may clear the route cache later, and
    the new route's per-filter config would not be consulted: there they stay enabled."""
    gw = Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels={"istio": "ingressgateway"},
    )
    gw_pod = Pod(
        "gw-0", "istio-system", "127.7.0.9", {"istio": "ingressgateway"}, workload="gw", gateway=True
    )
    assert _disabled_by_default(snapshot(GATEWAY, pods=[*PODS, gw_pod]), gw) == dict.fromkeys(
        PER_ROUTE_FILTERS, {False}
    )
    # The inbound HCM has the provider's ext_authz; the outbound ones have none.
    assert _disabled_by_default(snapshot(EXT_AUTHZ_PROVIDER), sidecar()) == {
        **dict.fromkeys(PER_ROUTE_FILTERS[:2], {False, True}),
        **dict.fromkeys(PER_ROUTE_FILTERS[2:], {False}),
    }
