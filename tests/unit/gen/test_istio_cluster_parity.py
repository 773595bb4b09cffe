"""Cluster translation against istiod's own unit tests.

Each test names the istiod test it ports (`pilot/pkg/networking/core/cluster_test.go`,
`cluster_builder_test.go`, `cluster_tls_test.go`, `pilot/pkg/model/destination_rule_test.go`), expressed as
Istio YAML and checked on the Envoy clusters we generate. Where Isthmus departs by design (explicit-proxy
sidecars: no ORIGINAL_DST), the test says so and checks our documented behaviour instead.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from gen_helpers import clusters, sidecar, snapshot

from isthmus.registry.types import Pod

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.other.svc.cluster.local"
WEB = "web.default.svc.cluster.local"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MAX = 4294967295
DEFAULT_THRESHOLDS = {
    "max_connections": MAX,
    "max_pending_requests": MAX,
    "max_requests": MAX,
    "max_retries": MAX,
    "track_remaining": True,
}

# A service with an HTTP/2 port, a port of no known protocol (sniffed) and a TCP port, on reviews' pods.
MULTI = """
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: grpc, port: 7070}, {name: other, port: 9090}, {name: tcp, port: 9000}]
"""
MULTI_HOST = "multi.default.svc.cluster.local"


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> str:
    api = "isthmus.dev/v1alpha1" if kind == "MeshConfig" else "networking.istio.io/v1"
    if kind in ("PeerAuthentication",):
        api = "security.istio.io/v1"
    meta = {"name": name} if kind == "MeshConfig" else {"name": name, "namespace": namespace}
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec})


def dr(spec: dict[str, Any], name: str = "reviews", namespace: str = "default") -> str:
    return doc("DestinationRule", name, {"host": "reviews", **spec}, namespace)


def mesh(**spec: Any) -> str:
    return doc("MeshConfig", "mesh", spec)


def outbound(*docs: str, port: int = 9080, subset: str = "", host: str = REVIEWS, proxy: Any = None) -> dict:
    return clusters(snapshot(*docs), proxy or sidecar())[f"outbound|{port}|{subset}|{host}"]


def gateway() -> Any:
    return dataclasses.replace(sidecar(), kind="gateway")


def lb_policy(c: dict) -> str:
    """ROUND_ROBIN is the enum's zero value: the JSON form leaves it out."""
    return c.get("lb_policy", "ROUND_ROBIN")


def thresholds(c: dict) -> dict:
    (t,) = c["circuit_breakers"]["thresholds"]
    return t


def http_options(c: dict) -> dict:
    return c.get("typed_extension_protocol_options", {}).get(HTTP_OPTIONS, {})


def tls_context(c: dict) -> dict | None:
    sock = c.get("transport_socket")
    return sock["typed_config"] if sock else None


# --- load balancer: TestApplyLoadBalancer, TestApplyRingHashLoadBalancer ------------------------------


@pytest.mark.parametrize(
    ("simple", "expected"),
    [
        (None, "LEAST_REQUEST"),  # defaultLBAlgorithm
        ("ROUND_ROBIN", "ROUND_ROBIN"),
        ("LEAST_REQUEST", "LEAST_REQUEST"),
        ("LEAST_CONN", "LEAST_REQUEST"),
        ("RANDOM", "RANDOM"),
    ],
)
def test_simple_load_balancer(simple: str | None, expected: str) -> None:
    lb = {"simple": simple} if simple else {}
    c = outbound(dr({"trafficPolicy": {"loadBalancer": lb}}))
    assert lb_policy(c) == expected
    assert not {"round_robin_lb_config", "least_request_lb_config"} & c.keys()


@pytest.mark.parametrize(
    ("consistent_hash", "policy", "config"),
    [
        # "default consistent hash settings": Envoy's default ring made explicit.
        ({"httpHeaderName": "x-user"}, "RING_HASH", {"ring_hash_lb_config": {"minimum_ring_size": "1024"}}),
        (
            {"httpHeaderName": "x-user", "minimumRingSize": 10},
            "RING_HASH",
            {"ring_hash_lb_config": {"minimum_ring_size": "10"}},
        ),
        (
            {"httpHeaderName": "x-user", "maglev": {"tableSize": 131}},
            "MAGLEV",
            {"maglev_lb_config": {"table_size": "131"}},
        ),
        ({"httpHeaderName": "x-user", "ringHash": {}}, "RING_HASH", {}),
        (
            {"httpHeaderName": "x-user", "ringHash": {"minimumRingSize": 10}},
            "RING_HASH",
            {"ring_hash_lb_config": {"minimum_ring_size": "10"}},
        ),
    ],
)
def test_consistent_hash_load_balancer(consistent_hash: dict, policy: str, config: dict) -> None:
    c = outbound(dr({"trafficPolicy": {"loadBalancer": {"consistentHash": consistent_hash}}}))
    assert lb_policy(c) == policy
    assert {k: c[k] for k in ("ring_hash_lb_config", "maglev_lb_config") if k in c} == config


def test_gateway_ring_hash_with_cookie_and_mesh_connect_timeout() -> None:
    """TestBuildGatewayClustersWithRingHashLb (connect timeout from MeshConfig)."""
    ch = {"httpCookie": {"name": "hash-cookie", "ttl": "0s"}, "minimumRingSize": 2}
    c = outbound(
        dr({"trafficPolicy": {"loadBalancer": {"consistentHash": ch}}}),
        mesh(connectTimeout="7s"),
        proxy=gateway(),
    )
    assert lb_policy(c) == "RING_HASH" and c["ring_hash_lb_config"] == {"minimum_ring_size": "2"}
    assert c["connect_timeout"] == "7s"


WARMUP = {"duration": "60s", "minimumPercent": 2, "aggression": 5.5}


@pytest.mark.parametrize(
    ("simple", "field"),
    [
        ("ROUND_ROBIN", "round_robin_lb_config"),
        ("LEAST_REQUEST", "least_request_lb_config"),
        (None, "least_request_lb_config"),  # "empty lb type": the default algorithm gets it
        ("RANDOM", None),
    ],
)
@pytest.mark.parametrize("defaults", [False, True])
def test_warmup(simple: str | None, field: str | None, defaults: bool) -> None:
    """TestWarmup: aggression and minimumPercent default to 1.0 and 10 (Envoy's), runtime key "(" (fixed)."""
    warmup = {"duration": "60s"} if defaults else WARMUP
    lb: dict[str, Any] = {"warmup": warmup}
    if simple:
        lb["simple"] = simple
    c = outbound(dr({"trafficPolicy": {"loadBalancer": lb}}))
    if field is None:
        assert not {"round_robin_lb_config", "least_request_lb_config"} & c.keys()
        return
    slow = c[field]["slow_start_config"]
    assert slow == {
        "slow_start_window": "60s",
        "aggression": {"default_value": 1.0 if defaults else 5.5, "runtime_key": "("},
        "min_weight_percent": {"value": 10.0 if defaults else 2.0},
    }


@pytest.mark.parametrize(
    ("simple", "field"),
    [("ROUND_ROBIN", "round_robin_lb_config"), ("LEAST_REQUEST", "least_request_lb_config")],
)
def test_deprecated_warmup_duration_secs_sets_only_the_window(simple: str, field: str) -> None:
    """TestSlowStartConfig: setSlowStartConfig fills slow_start_window alone."""
    c = outbound(dr({"trafficPolicy": {"loadBalancer": {"simple": simple, "warmupDurationSecs": "15s"}}}))
    assert c[field] == {"slow_start_config": {"slow_start_window": "15s"}}


def test_passthrough_load_balancer_is_an_explicit_proxy_design_choice() -> None:
    """TestClusterDiscoveryTypeAndLbPolicyPassthrough: istiod makes an ORIGINAL_DST cluster. A sidecar here is
    an explicit proxy, with no original destination (docs/architecture.md, DESIGN.md §3): the cluster keeps
    its endpoints and picks one at random, as DNS round robin would, with no slow start."""
    lb = {"simple": "PASSTHROUGH", "warmupDurationSecs": "15s"}
    c = outbound(dr({"trafficPolicy": {"loadBalancer": lb}}))
    assert c["type"] == "EDS" and lb_policy(c) == "RANDOM"
    assert not {"round_robin_lb_config", "least_request_lb_config"} & c.keys()


# --- connection pool: TestConnectionPoolSettings, TestApplyDestinationRule ----------------------------

BASIC_POOL = {
    "http": {
        "http1MaxPendingRequests": 1,
        "http2MaxRequests": 2,
        "maxRequestsPerConnection": 3,
        "maxRetries": 4,
    },
    "tcp": {
        "maxConnections": 1,
        "connectTimeout": "2s",
        "tcpKeepalive": {"probes": 3, "time": "4s", "interval": "5s"},
        "maxConnectionDuration": "6s",
    },
}
OVERRIDE_POOL = {
    "http": {
        "http1MaxPendingRequests": 5,
        "http2MaxRequests": 6,
        "maxRequestsPerConnection": 7,
        "maxRetries": 8,
    },
    "tcp": {
        "maxConnections": 4,
        "connectTimeout": "5s",
        "tcpKeepalive": {"probes": 6, "time": "7s", "interval": "8s"},
        "maxConnectionDuration": "9s",
    },
}


def assert_pool(c: dict, pool: dict | None) -> None:
    """The checks of TestConnectionPoolSettings: every field of the pool, or the defaults."""
    if pool is None:
        assert thresholds(c) == DEFAULT_THRESHOLDS
        assert "upstream_connection_options" not in c
        assert "max_requests_per_connection" not in http_options(c).get("common_http_protocol_options", {})
        return
    http, tcp = pool["http"], pool["tcp"]
    assert thresholds(c) == {
        "max_connections": tcp["maxConnections"],
        "max_pending_requests": http["http1MaxPendingRequests"],
        "max_requests": http["http2MaxRequests"],
        "max_retries": http["maxRetries"],
        "track_remaining": True,
    }
    ka = tcp["tcpKeepalive"]
    assert c["upstream_connection_options"]["tcp_keepalive"] == {
        "keepalive_probes": ka["probes"],
        "keepalive_time": int(ka["time"][:-1]),
        "keepalive_interval": int(ka["interval"][:-1]),
    }
    assert c["connect_timeout"] == tcp["connectTimeout"]
    common = http_options(c)["common_http_protocol_options"]
    assert common["max_requests_per_connection"] == http["maxRequestsPerConnection"]
    assert common["max_connection_duration"] == tcp["maxConnectionDuration"]


def wildcard_dr(pool: dict | None) -> str:
    return doc(
        "DestinationRule", "acme", {"host": "*.default.svc.cluster.local"} | tp("connectionPool", pool)
    )


def tp(key: str, value: Any) -> dict:
    return {"trafficPolicy": {key: value}} if value is not None else {}


def web_sidecar(spec: dict) -> str:
    return doc("Sidecar", "default", {"workloadSelector": {"labels": {"app": "web"}}, **spec})


@pytest.mark.parametrize(
    ("dr_pool", "sidecar_spec", "want_outbound", "want_inbound"),
    [
        pytest.param(None, None, None, None, id="no settings"),
        pytest.param(BASIC_POOL, None, BASIC_POOL, BASIC_POOL, id="destination rule settings no sidecar"),
        pytest.param(
            None,
            {"inboundConnectionPool": BASIC_POOL},
            None,
            BASIC_POOL,
            id="sidecar settings no destination rule",
        ),
        pytest.param(
            BASIC_POOL,
            {"inboundConnectionPool": OVERRIDE_POOL},
            BASIC_POOL,
            OVERRIDE_POOL,
            id="sidecar overrides destination rule for inbound listeners",
        ),
        pytest.param(
            None,
            {
                "inboundConnectionPool": BASIC_POOL,
                "ingress": [
                    {
                        "port": {"number": 8080, "protocol": "HTTP", "name": "http"},
                        "defaultEndpoint": "127.0.0.1:40005",
                        "connectionPool": OVERRIDE_POOL,
                    }
                ],
            },
            None,
            OVERRIDE_POOL,
            id="sidecar per-port rules override top-level rules",
        ),
        pytest.param(
            BASIC_POOL,
            {
                "ingress": [
                    {
                        "port": {"number": 8080, "protocol": "HTTP", "name": "http"},
                        "defaultEndpoint": "127.0.0.1:40005",
                        "connectionPool": OVERRIDE_POOL,
                    }
                ]
            },
            BASIC_POOL,
            OVERRIDE_POOL,
            id="sidecar per-port rules with destination rule default",
        ),
    ],
)
def test_connection_pool_settings(
    dr_pool: dict | None, sidecar_spec: dict | None, want_outbound: dict | None, want_inbound: dict | None
) -> None:
    docs = [wildcard_dr(dr_pool)] + ([web_sidecar(sidecar_spec)] if sidecar_spec else [])
    cs = clusters(snapshot(*docs), sidecar())
    assert_pool(cs[f"outbound|80||{WEB}"], want_outbound)
    assert_pool(cs["inbound|8080||"], want_inbound)


def test_sidecar_ingress_on_another_port_replaces_the_service_port() -> None:
    """A Sidecar whose ingress lists only port 9999: istiod's buildInboundClustersFromSidecar builds the
    inbound clusters from the ingress listeners alone, so `inbound|9999||` carries the ingress pool and
    the service port's `inbound|8080||` is gone (the outbound side keeps the DestinationRule's)."""
    ingress = {
        "port": {"number": 9999, "protocol": "HTTP", "name": "http"},
        "defaultEndpoint": "127.0.0.1:8080",
    }
    docs = [wildcard_dr(BASIC_POOL), web_sidecar({"ingress": [ingress | {"connectionPool": OVERRIDE_POOL}]})]
    cs = clusters(snapshot(*docs), sidecar())
    assert_pool(cs[f"outbound|80||{WEB}"], BASIC_POOL)
    assert_pool(cs["inbound|9999||"], OVERRIDE_POOL)
    assert "inbound|8080||" not in cs


@pytest.mark.parametrize(("port", "expected"), [(80, 100), (8080, 1000)])
def test_inbound_cluster_port_level_circuit_breaker(port: int, expected: int) -> None:
    """TestBuildInboundClustersPortLevelCircuitBreakerThresholds: port-level settings of the service port."""
    rule = doc(
        "DestinationRule",
        "web",
        {
            "host": "web",
            "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 1000}},
                "portLevelSettings": [
                    {"port": {"number": port}, "connectionPool": {"tcp": {"maxConnections": 100}}}
                ],
            },
        },
    )
    assert thresholds(clusters(snapshot(rule), sidecar())["inbound|8080||"]) == {
        **DEFAULT_THRESHOLDS,
        "max_connections": expected,
    }


@pytest.mark.parametrize("use_client", [False, True], ids=["port protocol", "useClientProtocol"])
def test_inbound_cluster_use_client_protocol(use_client: bool) -> None:
    """istiod's buildInboundCluster: buildCluster's setUpstreamProtocol sets the port's protocol first (h2 on
    an HTTP/2 port, the downstream's on a sniffed one, HTTP/1.1 otherwise), then applyTrafficPolicy runs
    applyConnectionPool with the DestinationRule's pool, whose useClientProtocol sets the downstream's
    protocol on every port (the expectation of routing.go gatewayCases 'client protocol - http1|http2 use
    client with auto-http|http|http2' and useClientProtocolCases 'with h2': the app sees the client's)."""
    pod = Pod(
        "multi-0",
        "default",
        "127.7.0.9",
        {"app": "reviews", "version": "v9"},
        workload="multi",
        service_account="reviews",
        app_ports={9080: 40101, 7070: 40102, 9090: 40103},
    )
    docs = [MULTI]
    if use_client:
        pool = {"connectionPool": {"http": {"useClientProtocol": True}}}
        docs += [
            doc("DestinationRule", "multi", {"host": "multi", "trafficPolicy": pool}),
            dr({"trafficPolicy": pool}),
        ]
    proxy = sidecar("multi-0", labels={"app": "reviews", "version": "v9"}, ip="127.7.0.9")
    cs = clusters(snapshot(*docs, pods=[pod]), proxy)
    downstream = {
        "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}
    }
    want = {
        9080: downstream if use_client else {"explicit_http_config": {"http_protocol_options": {}}},
        7070: downstream if use_client else {"explicit_http_config": {"http2_protocol_options": {}}},
        9090: downstream,
    }
    for port, expected in want.items():
        opts = http_options(cs[f"inbound|{port}||"])
        got = {
            k: v for k, v in opts.items() if k in ("use_downstream_protocol_config", "explicit_http_config")
        }
        assert got == expected, (port, opts)


def test_common_http_protocol_options_idle_timeout_and_downstream_protocol() -> None:
    """TestCommonHttpProtocolOptions: idle timeout everywhere; a sniffed port uses the downstream protocol on
    sidecars only."""
    pool = {"http": {"http1MaxPendingRequests": 1, "idleTimeout": "15s"}}
    rule = doc("DestinationRule", "multi", {"host": "multi", "trafficPolicy": {"connectionPool": pool}})
    snap = snapshot(MULTI, rule)
    side = clusters(snap, sidecar())
    gw = clusters(snap, gateway())
    for c, downstream in (
        (side[f"outbound|7070||{MULTI_HOST}"], False),
        (side[f"outbound|9090||{MULTI_HOST}"], True),
        (gw[f"outbound|9090||{MULTI_HOST}"], False),
    ):
        opts = http_options(c)
        assert opts["common_http_protocol_options"]["idle_timeout"] == "15s"
        assert ("use_downstream_protocol_config" in opts) is downstream


def test_idle_timeout_http_wins_over_tcp_and_tcp_ports_get_http1_options() -> None:
    """applyConnectionPool: http.idleTimeout, else tcp.idleTimeout; options on a TCP cluster say HTTP/1.1."""
    pool = {"http": {"idleTimeout": "3s"}, "tcp": {"idleTimeout": "9s"}}
    rule = doc("DestinationRule", "multi", {"host": "multi", "trafficPolicy": {"connectionPool": pool}})
    cs = clusters(snapshot(MULTI, rule), sidecar())
    assert (
        http_options(cs[f"outbound|7070||{MULTI_HOST}"])["common_http_protocol_options"]["idle_timeout"]
        == "3s"
    )
    tcp = http_options(cs[f"outbound|9000||{MULTI_HOST}"])
    assert tcp["common_http_protocol_options"]["idle_timeout"] == "3s"
    assert tcp["explicit_http_config"] == {"http_protocol_options": {}}
    tcp_only = doc(
        "DestinationRule",
        "multi",
        {"host": "multi", "trafficPolicy": {"connectionPool": {"tcp": {"idleTimeout": "9s"}}}},
    )
    c = clusters(snapshot(MULTI, tcp_only), sidecar())[f"outbound|9000||{MULTI_HOST}"]
    assert http_options(c)["common_http_protocol_options"]["idle_timeout"] == "9s"


def test_use_client_protocol() -> None:
    """'destination rule with use client protocol traffic policy': setUseDownstreamProtocol, with an explicit
    HTTP/1 and HTTP/2 option set, on HTTP and HTTP/2 ports alike (validation refuses it together with
    h2UpgradePolicy UPGRADE)."""
    http = {"maxRetries": 10, "useClientProtocol": True, "maxConcurrentStreams": 5}
    for port, host in ((9080, REVIEWS), (7070, MULTI_HOST)):
        rule = doc(
            "DestinationRule", "r", {"host": host, "trafficPolicy": {"connectionPool": {"http": http}}}
        )
        opts = http_options(outbound(MULTI, rule, port=port, host=host))
        assert opts["use_downstream_protocol_config"] == {
            "http_protocol_options": {},
            "http2_protocol_options": {},
        }
        assert "explicit_http_config" not in opts


@pytest.mark.parametrize(
    ("port", "upgrade", "expected"),
    [
        (7070, None, 200),  # "destination rule with maxConcurrentStreams" on an HTTP/2 port
        (9080, "UPGRADE", 200),  # "... http2UpgradePolicy and maxConcurrentStreams"
        (9080, None, None),  # HTTP/1.1 cluster: Envoy has no stream limit to set
    ],
)
def test_max_concurrent_streams_only_on_http2_clusters(
    port: int, upgrade: str | None, expected: int | None
) -> None:
    http: dict[str, Any] = {"maxConcurrentStreams": 200}
    if upgrade:
        http["h2UpgradePolicy"] = upgrade
    host = "reviews" if port == 9080 else "multi"
    rule = doc("DestinationRule", host, {"host": host, "trafficPolicy": {"connectionPool": {"http": http}}})
    c = outbound(MULTI, rule, port=port, host=REVIEWS if port == 9080 else MULTI_HOST)
    h2 = http_options(c).get("explicit_http_config", {}).get("http2_protocol_options")
    assert (h2 or {}).get("max_concurrent_streams") == expected
    assert (h2 is not None) is (expected is not None)


@pytest.mark.parametrize(
    ("mesh_policy", "dr_policy", "port", "h2"),
    [
        ("UPGRADE", "DEFAULT", 9080, True),  # "mesh upgrade - dr default"
        ("DO_NOT_UPGRADE", "DEFAULT", 9080, False),  # "mesh no_upgrade - dr default"
        ("DO_NOT_UPGRADE", "UPGRADE", 9080, True),  # "mesh no_upgrade - dr upgrade"
        ("UPGRADE", "DO_NOT_UPGRADE", 9080, False),  # "mesh upgrade - dr no_upgrade"
        ("UPGRADE", None, 9090, False),  # "non-http": sniffed ports are never upgraded by the mesh...
        (
            "DO_NOT_UPGRADE",
            "UPGRADE",
            9090,
            True,
        ),  # "mesh default - dr upgrade non http port": ...but by a DR
    ],
)
def test_h2_upgrade(mesh_policy: str, dr_policy: str | None, port: int, h2: bool) -> None:
    """TestShouldH2Upgrade."""
    host, name = (REVIEWS, "reviews") if port == 9080 else (MULTI_HOST, "multi")
    pool = {"http": {"h2UpgradePolicy": dr_policy}} if dr_policy else None
    docs = [MULTI, mesh(h2UpgradePolicy=mesh_policy)]
    if pool:
        docs.append(doc("DestinationRule", name, {"host": name, "trafficPolicy": {"connectionPool": pool}}))
    opts = http_options(outbound(*docs, port=port, host=host))
    assert ("http2_protocol_options" in opts.get("explicit_http_config", {})) is h2


def keepalive_docs(mesh_ka: dict | None, dr_ka: dict | None) -> list[str]:
    """buildTestClustersWithTCPKeepalive: the DR sets keepalive on subset v1's port-level pool."""
    docs = [mesh(tcpKeepalive=mesh_ka)] if mesh_ka is not None else []
    pool = {"tcp": {"tcpKeepalive": dr_ka}} if dr_ka is not None else {"tcp": {}}
    subset = {
        "name": "v1",
        "labels": {"version": "v1"},
        "trafficPolicy": {"portLevelSettings": [{"port": {"number": 9080}, "connectionPool": pool}]},
    }
    return [*docs, dr({"subsets": [subset]})]


@pytest.mark.parametrize(
    ("mesh_ka", "dr_ka", "expected"),
    [
        pytest.param(None, None, None, id="unset"),
        pytest.param({"time": "11s"}, None, {"keepalive_time": 11}, id="mesh"),
        pytest.param({"time": "11s"}, {"time": "21s"}, {"keepalive_time": 21}, id="destination rule"),
        pytest.param({"time": "11s"}, {}, {"keepalive_time": 11}, id="destination rule default"),
        # setKeepAliveSettings overrides the mesh's attributes one by one.
        pytest.param(
            {"time": "11s", "probes": 2},
            {"probes": 5},
            {"keepalive_time": 11, "keepalive_probes": 5},
            id="merged",
        ),
        pytest.param(None, {}, {}, id="destination rule os defaults"),
    ],
)
def test_tcp_keepalive(mesh_ka: dict | None, dr_ka: dict | None, expected: dict | None) -> None:
    """TestBuildSidecarClustersWithMeshWideTCPKeepalive."""
    c = outbound(*keepalive_docs(mesh_ka, dr_ka), subset="v1")
    assert c.get("upstream_connection_options", {}).get("tcp_keepalive") == expected


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        # "destination rule with empty retry budget": applyRetryBudget's defaults (20 %, as current istiod).
        ({}, {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}),
        (
            {"percent": 25, "minRetryConcurrency": 5},
            {"budget_percent": {"value": 25.0}, "min_retry_concurrency": 5},
        ),
    ],
)
def test_subset_retry_budget(budget: dict, expected: dict) -> None:
    subset = {
        "name": "foobar",
        "labels": {"version": "v1"},
        "trafficPolicy": {"connectionPool": {"http": {"maxRetries": 10}}, "retryBudget": budget},
    }
    cs = clusters(snapshot(dr({"subsets": [subset]})), sidecar())
    t = thresholds(cs[f"outbound|9080|foobar|{REVIEWS}"])
    assert t["max_retries"] == 10 and t["retry_budget"] == expected
    assert "retry_budget" not in thresholds(cs[f"outbound|9080||{REVIEWS}"])


def test_retry_budget_is_not_carried_into_port_level_settings() -> None:
    """shadowCopyPortTrafficPolicy keeps no retryBudget; the budget interval has no Envoy field."""
    policy = {
        "retryBudget": {"percent": 30, "budgetInterval": "5s"},
        "portLevelSettings": [{"port": {"number": 5432}, "connectionPool": {"tcp": {"maxConnections": 3}}}],
    }
    rule = doc("DestinationRule", "ratings", {"host": "ratings", "trafficPolicy": policy}, "other")
    cs = clusters(snapshot(rule), sidecar())
    assert thresholds(cs[f"outbound|9080||{RATINGS}"])["retry_budget"] == {
        "budget_percent": {"value": 30.0},
        "min_retry_concurrency": 3,
    }
    assert "retry_budget" not in thresholds(cs[f"outbound|5432||{RATINGS}"])


# --- outlier detection: TestApplyOutlierDetection, TestDisablePanicThresholdAsDefault -----------------


@pytest.mark.parametrize(
    ("outlier", "expected"),
    [
        pytest.param({}, {"enforcing_success_rate": 0}, id="No outlier detection is set"),
        pytest.param(
            {"consecutive5xxErrors": 4, "consecutiveGatewayErrors": 3},
            {
                "consecutive_5xx": 4,
                "enforcing_consecutive_5xx": 100,
                "consecutive_gateway_failure": 3,
                "enforcing_consecutive_gateway_failure": 100,
                "enforcing_success_rate": 0,
            },
            id="Consecutive gateway and 5xx errors are set",
        ),
        pytest.param(
            {"consecutiveGatewayErrors": 3},
            {
                "consecutive_gateway_failure": 3,
                "enforcing_consecutive_gateway_failure": 100,
                "enforcing_success_rate": 0,
            },
            id="Only consecutive gateway is set",
        ),
        pytest.param(
            {"consecutive5xxErrors": 3},
            {"consecutive_5xx": 3, "enforcing_consecutive_5xx": 100, "enforcing_success_rate": 0},
            id="Only consecutive 5xx is set",
        ),
        pytest.param(
            {"consecutiveGatewayErrors": 0},
            {
                "consecutive_gateway_failure": 0,
                "enforcing_consecutive_gateway_failure": 0,
                "enforcing_success_rate": 0,
            },
            id="Consecutive gateway is set to 0",
        ),
        pytest.param(
            {"consecutive5xxErrors": 0},
            {"consecutive_5xx": 0, "enforcing_consecutive_5xx": 0, "enforcing_success_rate": 0},
            id="Consecutive 5xx is set to 0",
        ),
        pytest.param(
            {"splitExternalLocalOriginErrors": True, "consecutiveLocalOriginFailures": 10},
            {
                "enforcing_success_rate": 0,
                "split_external_local_origin_errors": True,
                "consecutive_local_origin_failure": 10,
                "enforcing_local_origin_success_rate": 0,
                "enforcing_consecutive_local_origin_failure": 100,
            },
            id="Local origin errors is enabled",
        ),
        pytest.param(
            {"interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 50},
            {
                "enforcing_success_rate": 0,
                "interval": "5s",
                "base_ejection_time": "30s",
                "max_ejection_percent": 50,
            },
            id="timings and ejection percent",
        ),
    ],
)
def test_outlier_detection(outlier: dict, expected: dict) -> None:
    c = outbound(dr(tp("outlierDetection", outlier)))
    assert c["outlier_detection"] == expected
    # TestDisablePanicThresholdAsDefault: set even when 0, which turns Envoy's panic mode (50%) off.
    assert c["common_lb_config"]["healthy_panic_threshold"] == {}


def test_outlier_min_health_percent_is_the_panic_threshold() -> None:
    """TestSidecarLocalityLB / TestGatewayLocalityLB: minHealthPercent 10 -> healthy_panic_threshold 10."""
    for proxy in (sidecar(), gateway()):
        c = outbound(dr(tp("outlierDetection", {"minHealthPercent": 10})), proxy=proxy)
        assert c["common_lb_config"]["healthy_panic_threshold"] == {"value": 10.0}


def test_no_outlier_detection_leaves_panic_threshold_unset() -> None:
    c = outbound(dr(tp("loadBalancer", {"simple": "ROUND_ROBIN"})))
    assert "outlier_detection" not in c and "healthy_panic_threshold" not in c["common_lb_config"]


# --- subsets and port-level settings: TestApplyDestinationRule, util.MergeSubsetTrafficPolicy ---------


def test_subset_traffic_policy_applies_to_its_cluster_only() -> None:
    """'destination rule with subset traffic policy'."""
    subset = {
        "name": "foobar",
        "labels": {"version": "v1"},
        "trafficPolicy": tp("connectionPool", {})["trafficPolicy"],
    }
    subset["trafficPolicy"] = {"connectionPool": {"http": {"maxRetries": 10}}}
    cs = clusters(snapshot(dr({"subsets": [subset]})), sidecar())
    assert thresholds(cs[f"outbound|9080|foobar|{REVIEWS}"]) == {**DEFAULT_THRESHOLDS, "max_retries": 10}
    assert thresholds(cs[f"outbound|9080||{REVIEWS}"]) == DEFAULT_THRESHOLDS
    sub = cs[f"outbound|9080|foobar|{REVIEWS}"]
    assert (
        sub["type"] == "EDS"
        and sub["eds_cluster_config"]["service_name"] == f"outbound|9080|foobar|{REVIEWS}"
    )


def test_subset_overrides_blocks_it_sets_and_inherits_the_rest() -> None:
    policy = {
        "loadBalancer": {"simple": "ROUND_ROBIN"},
        "connectionPool": {"tcp": {"maxConnections": 7}},
        "outlierDetection": {"consecutive5xxErrors": 5},
    }
    subset = {
        "name": "v1",
        "labels": {"version": "v1"},
        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
    }
    c = outbound(dr({"trafficPolicy": policy, "subsets": [subset]}), subset="v1")
    assert lb_policy(c) == "RANDOM"
    assert thresholds(c)["max_connections"] == 7
    assert c["outlier_detection"]["consecutive_5xx"] == 5


def test_subset_port_level_settings_do_not_inherit() -> None:
    """TestBuildClustersWithMutualTlsAndNodeMetadataCertfileOverrides: 'default values will be applied to fields
    omitted in port-level traffic policies rather than inheriting settings specified at the destination level'."""
    tls = {
        "mode": "MUTUAL",
        "clientCertificate": "/cert.pem",
        "privateKey": "/key.pem",
        "caCertificates": "/ca.pem",
    }
    subset = {
        "name": "foobar",
        "labels": {"version": "v1"},
        # Only the load balancer for 7070 (Istio's validation refuses an empty port-level policy).
        "trafficPolicy": {
            "portLevelSettings": [{"port": {"number": 7070}, "loadBalancer": {"simple": "RANDOM"}}]
        },
    }
    rule = doc(
        "DestinationRule", "multi", {"host": "multi", "trafficPolicy": {"tls": tls}, "subsets": [subset]}
    )
    cs = clusters(snapshot(MULTI, rule), sidecar())
    assert tls_context(cs[f"outbound|7070|foobar|{MULTI_HOST}"]) is None
    for name in (
        f"outbound|7070||{MULTI_HOST}",
        f"outbound|9090||{MULTI_HOST}",
        f"outbound|9090|foobar|{MULTI_HOST}",
    ):
        common = tls_context(cs[name])["common_tls_context"]
        assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == (
            "file-root:/ca.pem"
        )
        assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [
            "file-cert:/cert.pem~/key.pem"
        ]


def test_destination_port_level_settings_replace_top_level_blocks() -> None:
    policy = {
        "loadBalancer": {"simple": "ROUND_ROBIN"},
        "outlierDetection": {"consecutive5xxErrors": 5},
        "portLevelSettings": [{"port": {"number": 9080}, "connectionPool": {"tcp": {"maxConnections": 9}}}],
    }
    c = outbound(dr({"trafficPolicy": policy}))
    assert lb_policy(c) == "LEAST_REQUEST"
    assert "outlier_detection" not in c and thresholds(c)["max_connections"] == 9


# --- TLS: cluster_tls_test.go, TestBuildSidecarClustersWithIstioMutualAndSNI, TestAutoMTLS* ------------


@pytest.mark.parametrize(
    ("sni", "expected"), [("foo.com", "foo.com"), ("", f"outbound_.9080_.foobar_.{REVIEWS}")]
)
def test_istio_mutual_sni(sni: str, expected: str) -> None:
    """TestBuildSidecarClustersWithIstioMutualAndSNI."""
    tls: dict[str, Any] = {"mode": "ISTIO_MUTUAL"}
    if sni:
        tls["sni"] = sni
    subset = {
        "name": "foobar",
        "labels": {"version": "v1"},
        "trafficPolicy": {"portLevelSettings": [{"port": {"number": 9080}, "tls": tls}]},
    }
    c = outbound(dr({"subsets": [subset]}), subset="foobar")
    ctx = tls_context(c)
    assert ctx["sni"] == expected
    assert "transport_socket_matches" not in c
    common = ctx["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    # The service's identities; matched as URI SANs (what a SPIFFE id is), istiod matches any SAN type.
    sans = common["combined_validation_context"]["default_validation_context"][
        "match_typed_subject_alt_names"
    ]
    assert sans == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/reviews"}}]


def test_auto_mtls_subsets() -> None:
    """TestAutoMTLSClusterSubsets: explicit ISTIO_MUTUAL is a transport_socket; auto mTLS uses matches."""
    subset = {
        "name": "foobar",
        "trafficPolicy": {
            "connectionPool": {"http": {"maxRequestsPerConnection": 1}},
            "portLevelSettings": [
                {"port": {"number": 7070}, "tls": {"mode": "ISTIO_MUTUAL", "sni": "custom.sni.com"}}
            ],
        },
    }
    rule = doc("DestinationRule", "multi", {"host": "multi", "subsets": [subset]})
    cs = clusters(snapshot(MULTI, rule), sidecar())
    explicit = cs[f"outbound|7070|foobar|{MULTI_HOST}"]
    assert tls_context(explicit)["sni"] == "custom.sni.com" and "transport_socket_matches" not in explicit
    for name in (
        f"outbound|7070||{MULTI_HOST}",
        f"outbound|9090||{MULTI_HOST}",
        f"outbound|9090|foobar|{MULTI_HOST}",
    ):
        c = cs[name]
        assert tls_context(c) is None
        assert [m["name"] for m in c["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]
        assert c["transport_socket_matches"][0]["match"] == {"tlsMode": "istio"}
        assert c["transport_socket_matches"][1]["match"] == {}


def test_auto_mtls_ignores_workload_level_peer_authentication() -> None:
    """TestAutoMTLSClusterIgnoreWorkloadLevelPeerAuthn: a port-level DISABLE turns TLS off for that port only."""
    rule = doc(
        "DestinationRule",
        "multi",
        {
            "host": "multi",
            "trafficPolicy": {
                "connectionPool": {"http": {"maxRequestsPerConnection": 1}},
                "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "DISABLE"}}],
            },
        },
    )
    pa = doc(
        "PeerAuthentication",
        "acme",
        {"selector": {"matchLabels": {"version": "v1"}}, "mtls": {"mode": "STRICT"}},
    )
    cs = clusters(snapshot(MULTI, rule, pa), sidecar())
    assert len(cs[f"outbound|7070||{MULTI_HOST}"]["transport_socket_matches"]) == 2
    disabled = cs[f"outbound|9090||{MULTI_HOST}"]
    assert tls_context(disabled) is None and "transport_socket_matches" not in disabled


def test_auto_mtls_off_by_mesh_config_or_namespace_disable() -> None:
    """buildUpstreamTLSSettings: no auto mTLS when MeshConfig disables it or the namespace's mode is DISABLE."""
    assert "transport_socket_matches" in outbound()
    assert "transport_socket_matches" not in outbound(mesh(enableAutoMtls=False))
    ns_disable = doc("PeerAuthentication", "default", {"mtls": {"mode": "DISABLE"}})
    assert "transport_socket_matches" not in outbound(ns_disable)
    mesh_disable = doc("PeerAuthentication", "default", {"mtls": {"mode": "DISABLE"}}, "istio-system")
    assert "transport_socket_matches" not in outbound(mesh_disable)


def test_simple_tls_origination() -> None:
    """constructUpstreamTLS SIMPLE: TLS 1.2-1.3, the system roots, auto SNI and SAN validation."""
    c = outbound(dr(tp("tls", {"mode": "SIMPLE"})))
    assert "transport_socket_matches" not in c
    ctx = tls_context(c)
    assert "sni" not in ctx
    common = ctx["common_tls_context"]
    assert common["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2",
        "tls_maximum_protocol_version": "TLSv1_3",
    }
    assert "tls_certificate_sds_secret_configs" not in common
    assert (
        common["combined_validation_context"]["validation_context_sds_secret_config"]["name"]
        == "file-root:system"
    )
    assert "alpn_protocols" not in common
    assert http_options(c)["upstream_http_protocol_options"] == {
        "auto_sni": True,
        "auto_san_validation": True,
    }


@pytest.mark.parametrize(
    ("tls", "auto"),
    [
        ({"sni": "api.example.com"}, None),
        ({"subjectAltNames": ["api.example.com"]}, {"auto_sni": True}),
        ({"insecureSkipVerify": True}, {"auto_sni": True}),
    ],
)
def test_simple_tls_auto_sni_and_san_validation(tls: dict, auto: dict | None) -> None:
    """setAutoSniAndAutoSanValidation."""
    c = outbound(dr(tp("tls", {"mode": "SIMPLE", **tls})))
    assert http_options(c).get("upstream_http_protocol_options") == auto
    ctx = tls_context(c)
    assert ctx.get("sni") == tls.get("sni")
    validation = ctx["common_tls_context"].get("combined_validation_context")
    if tls.get("insecureSkipVerify"):
        assert validation is None
    else:
        sans = validation["default_validation_context"].get("match_subject_alt_names")
        assert sans == [{"exact": s} for s in tls.get("subjectAltNames", ())] or (
            sans is None and "sni" in tls
        )


def test_simple_tls_on_http2_cluster_advertises_h2() -> None:
    rule = doc("DestinationRule", "multi", {"host": "multi", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}})
    cs = clusters(snapshot(MULTI, rule), sidecar())
    assert tls_context(cs[f"outbound|7070||{MULTI_HOST}"])["common_tls_context"]["alpn_protocols"] == ["h2"]


def test_mutual_tls_with_files_and_crl() -> None:
    tls = {
        "mode": "MUTUAL",
        "clientCertificate": "/etc/certs/cert.pem",
        "privateKey": "/etc/certs/key.pem",
        "caCertificates": "/etc/certs/ca.pem",
        "caCrl": "/etc/certs/crl.pem",
        "subjectAltNames": ["reviews.example.com"],
        "sni": "reviews.example.com",
    }
    ctx = tls_context(outbound(dr(tp("tls", tls))))
    common = ctx["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [
        "file-cert:/etc/certs/cert.pem~/etc/certs/key.pem"
    ]
    vc = common["combined_validation_context"]
    assert vc["validation_context_sds_secret_config"]["name"] == "file-root:/etc/certs/ca.pem"
    assert vc["default_validation_context"] == {
        "match_subject_alt_names": [{"exact": "reviews.example.com"}],
        "crl": {"filename": "/etc/certs/crl.pem"},
    }
    assert ctx["sni"] == "reviews.example.com"


@pytest.mark.parametrize("mode", ["SIMPLE", "MUTUAL"])
def test_credential_name_on_sidecars(mode: str) -> None:
    """buildUpstreamClusterTLSContext: a sidecar gets no TLS from a credentialName DR without a workloadSelector
    (istiod keeps Secrets from every sidecar the rule is exported to); with a selector, or on a gateway, the
    credential comes over SDS."""
    tls = {"mode": mode, "credentialName": "reviews-cred"}
    assert tls_context(outbound(dr(tp("tls", tls)))) is None
    selected = dr({"trafficPolicy": {"tls": tls}, "workloadSelector": {"matchLabels": {"app": "web"}}})
    for ctx in (tls_context(outbound(selected)), tls_context(outbound(dr(tp("tls", tls)), proxy=gateway()))):
        common = ctx["common_tls_context"]
        root = common["combined_validation_context"]["validation_context_sds_secret_config"]["name"]
        assert root == "kubernetes://reviews-cred-cacert"
        certs = [s["name"] for s in common.get("tls_certificate_sds_secret_configs", ())]
        assert certs == (["kubernetes://reviews-cred"] if mode == "MUTUAL" else [])


SE_DNS = doc(
    "ServiceEntry",
    "ext",
    {
        "hosts": ["api.example.com"],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "subjectAltNames": ["spiffe://ext/sa"],
        "ports": [
            {"number": 443, "name": "https", "protocol": "TLS"},
            {"number": 80, "name": "http", "protocol": "HTTP"},
        ],
    },
)


def test_service_entry_subject_alt_names_verify_simple_tls() -> None:
    """constructUpstreamTLS: an External-registry service's SANs are used when the DR names none (auto SAN
    validation stays on: istiod decides it before taking the entry's SANs)."""
    rule = doc(
        "DestinationRule", "ext", {"host": "api.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}
    )
    cs = clusters(snapshot(SE_DNS, rule), sidecar())
    for port in (443, 80):
        c = cs[f"outbound|{port}||api.example.com"]
        vc = tls_context(c)["common_tls_context"]["combined_validation_context"]["default_validation_context"]
        assert vc["match_subject_alt_names"] == [{"exact": "spiffe://ext/sa"}]
        assert http_options(c)["upstream_http_protocol_options"] == {
            "auto_sni": True,
            "auto_san_validation": True,
        }


# --- cluster types and metadata: TestClusterMetadata, TestBuildStaticClusterWithNoEndPoint ------------


def test_cluster_metadata() -> None:
    """TestClusterMetadata: the DR's config path on every cluster it shapes, the subset on subset clusters."""
    rule = dr(
        {
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ]
        }
    )
    cs = clusters(snapshot(rule), sidecar())
    path = "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
    for subset in ("", "v1", "v2"):
        meta = cs[f"outbound|9080|{subset}|{REVIEWS}"]["metadata"]["filter_metadata"]["istio"]
        assert meta["config"] == path
        assert meta.get("subset") == (subset or None)
        assert meta["services"] == [{"host": REVIEWS, "name": "reviews", "namespace": "default"}]
        assert meta["default_original_port"] == 9080
    assert "config" not in cs[f"outbound|9080||{RATINGS}"]["metadata"]["filter_metadata"]["istio"]
    for name in ("BlackHoleCluster", "PassthroughCluster"):
        assert "metadata" not in cs[name]


def test_inbound_cluster_metadata() -> None:
    """addTelemetryMetadata (inbound): the services on that port; a DR with a traffic policy adds its path."""
    rule = doc(
        "DestinationRule",
        "web",
        {"host": "web", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 3}}}},
    )
    meta = clusters(snapshot(rule), sidecar())["inbound|8080||"]["metadata"]["filter_metadata"]["istio"]
    assert meta["services"] == [{"host": WEB, "name": "web", "namespace": "default"}]
    assert meta["config"] == "/apis/networking.istio.io/v1/namespaces/default/destination-rule/web"
    plain = clusters(snapshot(), sidecar())["inbound|8080||"]["metadata"]["filter_metadata"]["istio"]
    assert "config" not in plain


def test_dns_service_entry_clusters() -> None:
    """buildCluster STRICT_DNS / LOGICAL_DNS: resolver settings from MeshConfig, hosts as endpoints."""
    snap = snapshot(SE_DNS, mesh(dnsRefreshRate="7s"))
    c = clusters(snap, sidecar())["outbound|443||api.example.com"]
    assert c["type"] == "STRICT_DNS" and c["dns_lookup_family"] == "V4_ONLY"
    assert c["respect_dns_ttl"] is True and c["dns_refresh_rate"] == "7s"
    assert lb_policy(c) == "LEAST_REQUEST"
    (ep,) = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert ep["endpoint"]["address"]["socket_address"] == {"address": "api.example.com", "port_value": 443}
    assert c["metadata"]["filter_metadata"]["istio"]["external"] is True
    assert "transport_socket_matches" not in c  # mesh-external: no auto mTLS
    rr = json.loads(SE_DNS)
    rr["spec"]["resolution"] = "DNS_ROUND_ROBIN"
    assert (
        clusters(snapshot(json.dumps(rr)), sidecar())["outbound|443||api.example.com"]["type"]
        == "LOGICAL_DNS"
    )


def test_static_service_entry_is_eds() -> None:
    se = doc(
        "ServiceEntry",
        "static",
        {
            "hosts": ["static.example.com"],
            "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.9.0.1"}],
        },
    )
    c = clusters(snapshot(se), sidecar())["outbound|80||static.example.com"]
    assert c["type"] == "EDS" and "load_assignment" not in c


@pytest.mark.parametrize(("labels", "present"), [(None, True), ({"env": "dev"}, False)])
def test_dns_subset_without_endpoints_is_left_out(labels: dict | None, present: bool) -> None:
    """TestApplyDestinationRule 'subset with labels in both, not matching': a STRICT_DNS cluster without endpoints
    is not built (TestBuildStaticClusterWithNoEndPoint)."""
    se = json.loads(SE_DNS)
    se["metadata"]["labels"] = {"env": "prod"}
    subset: dict[str, Any] = {"name": "v1"}
    if labels:
        subset["labels"] = labels
    rule = doc("DestinationRule", "ext", {"host": "api.example.com", "subsets": [subset]})
    cs = clusters(snapshot(json.dumps(se), rule), sidecar())
    assert "outbound|443||api.example.com" in cs
    assert ("outbound|443|v1|api.example.com" in cs) is present


# --- DestinationRule selection and merging: pilot/pkg/model destination_rule_test.go, sidecar_test.go -------


def test_destination_rules_for_one_host_merge_subsets_and_keep_first_policy() -> None:
    first = dr(
        {
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        }
    )
    second = dr(
        {
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
            "subsets": [
                {"name": "v1", "labels": {"version": "v2"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
        name="reviews-2",
    )
    cs = clusters(snapshot(first, second), sidecar())
    assert {n for n in cs if REVIEWS in n} == {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2")}
    assert all(cs[f"outbound|9080|{s}|{REVIEWS}"]["lb_policy"] == "RANDOM" for s in ("", "v1", "v2"))
    meta = cs[f"outbound|9080|v2|{REVIEWS}"]["metadata"]["filter_metadata"]["istio"]
    assert meta["config"].endswith("/destination-rule/reviews")


def test_destination_rule_export_to() -> None:
    hidden = doc(
        "DestinationRule",
        "ratings",
        {"host": "ratings", "exportTo": ["."], "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
        "other",
    )
    snap = snapshot(hidden)
    assert clusters(snap, sidecar())[f"outbound|9080||{RATINGS}"]["lb_policy"] == "LEAST_REQUEST"
    ratings = sidecar("ratings-v1-0", "other", {"app": "ratings", "version": "v1"}, "127.7.0.4")
    assert clusters(snap, ratings)[f"outbound|9080||{RATINGS}"]["lb_policy"] == "RANDOM"


def test_destination_rule_workload_selector() -> None:
    selected = dr(
        {
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            "workloadSelector": {"matchLabels": {"app": "web"}},
        }
    )
    fallback = dr({"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}, name="reviews-all")
    snap = snapshot(selected, fallback)
    assert lb_policy(clusters(snap, sidecar())[f"outbound|9080||{REVIEWS}"]) == "RANDOM"
    other = sidecar("reviews-v1-0", "default", {"app": "reviews", "version": "v1"}, "127.7.0.2")
    assert lb_policy(clusters(snap, other)[f"outbound|9080||{REVIEWS}"]) == "ROUND_ROBIN"


# --- upstream PROXY protocol: TestApplyUpstreamProxyProtocol (cluster_builder_test.go) ---------------

PROXY_PROTOCOL_TYPE = (
    "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport"
)


def proxy_protocol_layers(sock: dict) -> tuple[str, str, str]:
    """(wrapper name, PROXY version, the wrapped socket's name)."""
    cfg = sock["typed_config"]
    assert cfg["@type"] == PROXY_PROTOCOL_TYPE
    return sock["name"], cfg["config"].get("version", "V1"), cfg["transport_socket"]["name"]


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_upstream_proxy_protocol_wraps_each_auto_mtls_match(version: str) -> None:
    c = outbound(dr({"trafficPolicy": {"proxyProtocol": {"version": version}}}))
    # Auto mTLS: the PROXY header goes first on both kinds of upstream connection, under the TLS.
    assert "transport_socket" not in c
    layers = [proxy_protocol_layers(m["transport_socket"]) for m in c["transport_socket_matches"]]
    wrapper = "envoy.transport_sockets.upstream_proxy_protocol"
    assert layers == [
        (wrapper, version, "envoy.transport_sockets.tls"),
        (wrapper, version, "envoy.transport_sockets.raw_buffer"),
    ]


def test_upstream_proxy_protocol_wraps_dr_tls_and_plaintext() -> None:
    simple = outbound(dr({"trafficPolicy": {"proxyProtocol": {}, "tls": {"mode": "SIMPLE"}}}))
    assert proxy_protocol_layers(simple["transport_socket"])[1:] == ("V1", "envoy.transport_sockets.tls")
    assert "transport_socket_matches" not in simple
    plain = outbound(dr({"trafficPolicy": {"proxyProtocol": {"version": "V2"}, "tls": {"mode": "DISABLE"}}}))
    assert proxy_protocol_layers(plain["transport_socket"])[1:] == (
        "V2",
        "envoy.transport_sockets.raw_buffer",
    )
    # A subset's own proxyProtocol overrides the rule's (MergeTrafficPolicy); without one, none is added.
    subsets = dr(
        {
            "trafficPolicy": {"tls": {"mode": "DISABLE"}},
            "subsets": [
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": {"proxyProtocol": {"version": "V2"}},
                },
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        }
    )
    assert proxy_protocol_layers(outbound(subsets, subset="v1")["transport_socket"])[1] == "V2"
    assert "transport_socket" not in outbound(subsets, subset="v2")
    assert "transport_socket" not in outbound(subsets)


def test_rules_created_together_merge_in_name_order() -> None:
    # sortConfigByCreationTime: equal creation times (one apply, here one file) are ordered by name,
    # so the top-level policy is a-rule's although b-rule comes first in the file.
    lb = outbound(
        dr({"trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}, name="b-rule"),
        dr({"trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}, name="a-rule"),
    )
    assert lb_policy(lb) == "RANDOM"


def test_mesh_tls_defaults_apply_to_tls_origination() -> None:
    # applyTLSDefaults: MeshConfig tlsDefaults' curves and ciphers on SIMPLE/MUTUAL upstream contexts;
    # not on ISTIO_MUTUAL.
    defaults = mesh(tlsDefaults={"ecdhCurves": ["P-256"], "cipherSuites": ["ECDHE-ECDSA-AES256-GCM-SHA384"]})
    simple = tls_context(outbound(defaults, dr({"trafficPolicy": {"tls": {"mode": "SIMPLE"}}})))
    params = simple["common_tls_context"]["tls_params"]
    assert (params["ecdh_curves"], params["cipher_suites"]) == (["P-256"], ["ECDHE-ECDSA-AES256-GCM-SHA384"])
    istio = tls_context(outbound(defaults, dr({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})))
    assert "ecdh_curves" not in istio["common_tls_context"].get("tls_params", {})
