"""Sidecar inbound listeners and mTLS against istiod's own unit tests.

Each test names the istiod test or code it ports (`pilot/pkg/networking/core/listener_test.go`,
`listener_builder_test.go`, `filterchain_options.go`, `listener_inbound.go`, `networkfilter_test.go`,
`pilot/pkg/security/authn/policy_applier_test.go`, `authn/utils/utils.go`), expressed as Istio YAML and
checked on the Envoy listeners we generate. Isthmus departs by design (no iptables): each inbound port is
its own listener on `<pod ip>:<target port>` (istiod's bind-to-port form) instead of chains with a
`destination_port` on `virtualInbound`, so there are no passthrough / original_dst pieces to compare;
chains are compared as sets of (transport, ALPNs, filter, mTLS), which is what Envoy matches on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import configs, generate, sidecar, snapshot

from isthmus.model import authn
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

IP = "127.7.0.9"
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"

# One workload with a port of each protocol family; 9000 is in no Service (sniffed, as istiod's
# Sidecar-ingress "unknown" ports).
PORTS = {"http": 8080, "http2": 8081, "grpc": 8082, "tcp": 8083, "other": 8084, "grpc-web": 8085}
MULTI = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "multi", "namespace": "default"},
        "spec": {
            "selector": {"app": "multi"},
            "ports": [
                {"name": n, "port": 100 + i, "targetPort": t} for i, (n, t) in enumerate(PORTS.items())
            ],
        },
    }
)
POD = Pod(
    "multi-0",
    "default",
    IP,
    {"app": "multi", "version": "v1"},
    workload="multi",
    service_account="multi",
    app_ports={**{t: 41000 + t % 100 for t in PORTS.values()}, 9000: 41099},
)

# istiod's ALPN sets (`listener.go`, `filterchain_options.go`).
MTLS_HTTP = ("istio-h2", "istio-http/1.0", "istio-http/1.1")
MTLS_TCP = ("istio", "istio-peer-exchange")
ALL_ISTIO = tuple(sorted(MTLS_TCP + MTLS_HTTP))
PLAIN_HTTP = ("h2c", "http/1.1")
SUPPORTED_CIPHERS = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
]


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default", created: str = "") -> str:
    api = {"MeshConfig": "isthmus.dev/v1alpha1", "PeerAuthentication": "security.istio.io/v1"}[kind]
    meta: dict[str, Any] = {"name": name} if kind == "MeshConfig" else {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec})


def pa(name: str, spec: dict[str, Any], namespace: str = "default", created: str = "") -> str:
    return doc("PeerAuthentication", name, spec, namespace, created)


def mesh(**spec: Any) -> str:
    return doc("MeshConfig", "mesh", spec)


def mode(value: str, namespace: str = "default") -> str:
    return pa("default", {"mtls": {"mode": value}}, namespace)


def listeners(*docs: str) -> dict[str, dict[str, Any]]:
    snap = snapshot(MULTI, *docs, pods=[POD])
    return generate(snap, sidecar("multi-0", "default", dict(POD.labels), IP), naming.LISTENER_TYPE)


def listener(port: int, *docs: str) -> dict[str, Any]:
    return listeners(*docs)[f"{IP}_{port}"]


def typed(filter_: dict[str, Any]) -> dict[str, Any]:
    return filter_["typed_config"]


def chains(lst: dict[str, Any]) -> set[tuple[str, tuple[str, ...], str, bool]]:
    """(transport, ALPNs, terminal filter, terminates mTLS) per chain: what Envoy selects a chain by."""
    out = set()
    for c in lst["filter_chains"]:
        match = c.get("filter_chain_match", {})
        out.add(
            (
                match.get("transport_protocol", ""),
                tuple(sorted(match.get("application_protocols", []))),
                "http" if c["filters"][-1]["name"] == HCM else "tcp",
                "transport_socket" in c,
            )
        )
    return out


def hcm(port: int, *docs: str) -> dict[str, Any]:
    for c in listener(port, *docs)["filter_chains"]:
        if c["filters"][-1]["name"] == HCM:
            return typed(c["filters"][-1])
    raise AssertionError(f"no HCM on port {port}")


def tcp_proxy(port: int, *docs: str) -> dict[str, Any]:
    for c in listener(port, *docs)["filter_chains"]:
        if c["filters"][-1]["name"] == TCP_PROXY:
            return typed(c["filters"][-1])
    raise AssertionError(f"no tcp_proxy on port {port}")


def mtls_context(port: int, *docs: str, http: bool) -> dict[str, Any]:
    want = "http" if http else "tcp"
    for c in listener(port, *docs)["filter_chains"]:
        kind = "http" if c["filters"][-1]["name"] == HCM else "tcp"
        if kind == want and "transport_socket" in c:
            return typed(c["transport_socket"])
    raise AssertionError(f"no mTLS {want} chain on port {port}")


# --- filter chains per mTLS mode and protocol (filterchain_options.go getFilterChainMatchOptions) ------

MTLS_HTTP_CHAIN = ("tls", ALL_ISTIO, "http", True)
STRICT_CHAINS = {
    "http": {("tls", (), "http", True)},
    "tcp": {("tls", (), "tcp", True)},
    "auto": {("tls", MTLS_HTTP, "http", True), ("tls", (), "tcp", True)},
}
PERMISSIVE_CHAINS = {
    "http": {MTLS_HTTP_CHAIN, ("raw_buffer", (), "http", False)},
    "tcp": {("tls", ALL_ISTIO, "tcp", True), ("raw_buffer", (), "tcp", False), ("tls", (), "tcp", False)},
    "auto": {
        ("tls", MTLS_HTTP, "http", True),
        ("raw_buffer", PLAIN_HTTP, "http", False),
        ("tls", MTLS_TCP, "tcp", True),
        ("raw_buffer", (), "tcp", False),
        ("tls", (), "tcp", False),
    },
}
DISABLE_CHAINS = {
    "http": {("raw_buffer", (), "http", False)},
    "tcp": {("raw_buffer", (), "tcp", False)},
    "auto": {("raw_buffer", PLAIN_HTTP, "http", False), ("raw_buffer", (), "tcp", False)},
}
# Port → protocol family: HTTP2 and GRPC are HTTP (ModelProtocolToListenerProtocol); no Service = auto.
FAMILY = {8080: "http", 8081: "http", 8082: "http", 8085: "http", 8083: "tcp", 8084: "auto", 9000: "auto"}


@pytest.mark.parametrize("port", sorted(FAMILY))
@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        pytest.param((), PERMISSIVE_CHAINS, id="no policy: permissive"),
        pytest.param((mode("PERMISSIVE"),), PERMISSIVE_CHAINS, id="permissive"),
        pytest.param((mode("STRICT", "istio-system"),), STRICT_CHAINS, id="mesh strict"),
        pytest.param((mode("DISABLE"),), DISABLE_CHAINS, id="namespace disable"),
    ],
)
def test_filter_chains_by_mode_and_protocol(port: int, docs: tuple[str, ...], expected: dict) -> None:
    """filterchain_options.go: the chain set of each (mode, protocol); listener_test.go TestInboundListenerConfig
    ("wasm, stats, authz": HTTP port = MTLSHTTP + plaintext, TCP port = mTLS + plain TLS + plaintext)."""
    assert chains(listener(port, *docs)) == expected[FAMILY[port]]


@pytest.mark.parametrize("port", [8080, 8083, 8084])
def test_chain_names(port: int) -> None:
    """listener_test.go "wasm, stats, authz": every chain of a port is named `0.0.0.0_<target port>`."""
    assert {c["name"] for c in listener(port)["filter_chains"]} == {f"0.0.0.0_{port}"}


def test_strict_has_no_plaintext_chain() -> None:
    """peer_authentication_simulation_test.go: STRICT rejects plaintext (no raw_buffer chain matches)."""
    for port in FAMILY:
        lst = listener(port, mode("STRICT"))
        assert all(c["filter_chain_match"]["transport_protocol"] == "tls" for c in lst["filter_chains"])


# --- port-level mTLS (policy_applier_test.go TestInboundMTLSSettings "Port level hit/miss") ------------


def test_port_level_hit_overrides_workload_mode() -> None:
    policy = pa(
        "multi",
        {
            "selector": {"matchLabels": {"app": "multi"}},
            "mtls": {"mode": "DISABLE"},
            "portLevelMtls": {"8080": {"mode": "STRICT"}, "8083": {"mode": "PERMISSIVE"}},
        },
    )
    assert chains(listener(8080, policy)) == STRICT_CHAINS["http"]
    assert chains(listener(8083, policy)) == PERMISSIVE_CHAINS["tcp"]
    assert chains(listener(8084, policy)) == DISABLE_CHAINS["auto"]


def test_port_level_miss_keeps_inherited_mode() -> None:
    policy = pa(
        "multi",
        {"selector": {"matchLabels": {"app": "multi"}}, "portLevelMtls": {"7070": {"mode": "STRICT"}}},
    )
    assert chains(listener(8080, policy)) == PERMISSIVE_CHAINS["http"]
    assert chains(listener(8080, policy, mode("STRICT"))) == STRICT_CHAINS["http"]


# --- ComposePeerAuthentication (policy_applier_test.go TestComposePeerAuthentication) ----------------


def compose(*docs: str, namespace: str = "my-ns") -> authn.MtlsPolicy:
    policies = [c for c in configs(*docs, services=False) if c.kind == "PeerAuthentication"]
    return authn.workload_mtls(policies, namespace, {"app": "foo"}, "istio-system")


FOO = {"matchLabels": {"app": "foo"}}
PROD = {"matchLabels": {"stage": "prod"}}
NOW, EARLIER = "2024-01-01T00:00:01Z", "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        pytest.param((), authn.PERMISSIVE, id="no config"),
        pytest.param((mode("STRICT", "istio-system"),), authn.STRICT, id="mesh only"),
        pytest.param(
            (
                pa("default", {"selector": {"matchLabels": {}}, "mtls": {"mode": "STRICT"}}, "istio-system"),
                mode("PERMISSIVE", "my-ns"),
            ),
            authn.PERMISSIVE,
            id="mesh vs namespace",
        ),
        pytest.param(
            (pa("default", {"selector": FOO, "mtls": {"mode": "STRICT"}}, "istio-system"),),
            authn.PERMISSIVE,
            id="ignore non-empty selector in root namespace",
        ),
        pytest.param(
            (pa("default", {}, "my-ns"), pa("foo", {"selector": FOO}, "my-ns")),
            authn.PERMISSIVE,
            id="workload vs namespace config",
        ),
        pytest.param(
            (mode("PERMISSIVE", "my-ns"), mode("DISABLE", "istio-system")),
            authn.PERMISSIVE,
            id="workload vs mesh config",
        ),
        # istiod's timestamps: "now" is newest, the other two a second older and equal (list order wins).
        pytest.param(
            (
                pa("now", {"mtls": {"mode": "DISABLE"}}, "istio-system", NOW),
                pa("second-ago", {"mtls": {"mode": "PERMISSIVE"}}, "istio-system", EARLIER),
                pa("second-later", {"mtls": {"mode": "STRICT"}}, "istio-system", EARLIER),
            ),
            authn.PERMISSIVE,
            id="multiple mesh policy",
        ),
        pytest.param(
            (
                pa("now", {"mtls": {"mode": "DISABLE"}}, "my-ns", NOW),
                pa("second-ago", {"mtls": {"mode": "PERMISSIVE"}}, "my-ns", EARLIER),
                pa("second-later", {"mtls": {"mode": "STRICT"}}, "my-ns", EARLIER),
            ),
            authn.PERMISSIVE,
            id="multiple namespace policy",
        ),
        pytest.param(
            (
                pa("now", {"selector": FOO, "mtls": {"mode": "DISABLE"}}, "my-ns", NOW),
                pa("second-ago", {"selector": FOO, "mtls": {"mode": "PERMISSIVE"}}, "my-ns", EARLIER),
                pa("second-later", {"selector": PROD, "mtls": {"mode": "STRICT"}}, "my-ns", EARLIER),
            ),
            authn.PERMISSIVE,
            id="multiple workload policy",
        ),
        pytest.param(
            (mode("STRICT", "istio-system"), pa("foo", {"selector": FOO}, "my-ns")),
            authn.STRICT,
            id="inheritance: mesh to workload",
        ),
        pytest.param(
            (mode("STRICT", "my-ns"), pa("foo", {"selector": FOO}, "my-ns")),
            authn.STRICT,
            id="inheritance: namespace to workload",
        ),
        pytest.param(
            (mode("STRICT", "istio-system"), mode("UNSET", "my-ns"), pa("foo", {"selector": FOO}, "my-ns")),
            authn.STRICT,
            id="inheritance: mesh to namespace to workload",
        ),
    ],
)
def test_compose_peer_authentication(docs: tuple[str, ...], expected: str) -> None:
    assert compose(*docs).mode == expected


def test_selector_policy_in_root_namespace_is_ignored_for_its_own_workloads() -> None:
    """TestComposePeerAuthentication "ignore non-emptypb selector in root namespace", for a workload that
    lives in the root namespace itself."""
    selector = pa("default", {"selector": FOO, "mtls": {"mode": "STRICT"}}, "istio-system")
    assert compose(selector, namespace="istio-system").mode == authn.PERMISSIVE


def test_compose_port_level_unset_inherits_workload_mode() -> None:
    """TestComposePeerAuthentication "port level": UNSET and empty port settings take the resolved mode."""
    workload = pa(
        "foo",
        {
            "selector": FOO,
            "portLevelMtls": {"80": {"mode": "DISABLE"}, "90": {"mode": "UNSET"}, "100": {}},
        },
        "my-ns",
    )
    policy = compose(mode("STRICT", "istio-system"), workload)
    assert policy.mode == authn.STRICT
    assert dict(policy.ports) == {80: authn.DISABLE, 90: authn.STRICT, 100: authn.STRICT}


# --- DownstreamTlsContext (policy_applier_test.go TestInboundMTLSSettings; authn/utils BuildInboundTLS) --


def sds_names(common: dict[str, Any]) -> tuple[str, str]:
    cert = common["tls_certificate_sds_secret_configs"][0]["name"]
    root = common["combined_validation_context"]["validation_context_sds_secret_config"]["name"]
    return cert, root


@pytest.mark.parametrize("policy", [(), (mode("STRICT"),)], ids=["permissive", "strict"])
def test_inbound_tls_context(policy: tuple[str, ...]) -> None:
    for http, alpn in ((True, ["h2", "http/1.1"]), (False, ["istio-peer-exchange", "h2", "http/1.1"])):
        ctx = mtls_context(8084, *policy, http=http)
        common = ctx["common_tls_context"]
        assert ctx["require_client_certificate"] is True
        assert common["alpn_protocols"] == alpn
        assert common["tls_params"] == {
            "tls_minimum_protocol_version": "TLSv1_2",
            "tls_maximum_protocol_version": "TLSv1_3",
            "cipher_suites": SUPPORTED_CIPHERS,
        }
        assert sds_names(common) == ("default", "ROOTCA")


def test_inbound_tls_context_mesh_mtls_settings() -> None:
    """MeshConfig meshMTLS: minProtocolVersion (GetMinTLSVersion) and cipherSuites (ecdhCurves are
    rejected by Istio's validation for meshMTLS)."""
    config = mesh(meshMTLS={"minProtocolVersion": "TLSV1_3", "cipherSuites": ["ECDHE-RSA-AES256-GCM-SHA384"]})
    params = mtls_context(8080, config, http=True)["common_tls_context"]["tls_params"]
    assert params == {
        "tls_minimum_protocol_version": "TLSv1_3",
        "tls_maximum_protocol_version": "TLSv1_3",
        "cipher_suites": ["ECDHE-RSA-AES256-GCM-SHA384"],
    }
    # TLSV1_2 and TLS_AUTO keep TLS 1.2 as the minimum.
    for version in ("TLSV1_2", "TLS_AUTO"):
        ctx = mtls_context(8080, mesh(meshMTLS={"minProtocolVersion": version}), http=True)
        assert ctx["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"


def test_inbound_tls_context_trust_domains() -> None:
    """ApplyToCommonTLSContext with TrustDomainsForValidation: a URI prefix per trust domain and alias,
    each once."""

    def prefixes(*docs: str) -> list[str]:
        common = mtls_context(8080, *docs, http=True)["common_tls_context"]
        matchers = common["combined_validation_context"]["default_validation_context"][
            "match_typed_subject_alt_names"
        ]
        assert {m["san_type"] for m in matchers} == {"URI"}
        return [m["matcher"]["prefix"] for m in matchers]

    assert prefixes() == ["spiffe://cluster.local/"]
    aliased = mesh(trustDomain="td1", trustDomainAliases=["old-td", "td1", "other"])
    assert prefixes(aliased) == ["spiffe://td1/", "spiffe://old-td/", "spiffe://other/"]


def test_disable_mode_has_no_tls_context() -> None:
    """TestInboundMTLSSettings "Single policy - disable mode": no TCP/HTTP TLS context."""
    lst = listener(8084, mode("DISABLE"))
    assert all("transport_socket" not in c for c in lst["filter_chains"])


# --- listener filters (listener_inbound.go populateListenerFilters; listener_test.go verifyListenerFilters)


@pytest.mark.parametrize(
    ("docs", "port", "expected"),
    [
        pytest.param((), 8084, [TLS_INSPECTOR, HTTP_INSPECTOR], id="permissive auto"),
        pytest.param((), 9000, [TLS_INSPECTOR, HTTP_INSPECTOR], id="permissive no service"),
        pytest.param((), 8080, [TLS_INSPECTOR], id="permissive http"),
        pytest.param((), 8083, [TLS_INSPECTOR], id="permissive tcp"),
        pytest.param((mode("STRICT"),), 8084, [TLS_INSPECTOR], id="strict auto: no plaintext to sniff"),
        pytest.param((mode("STRICT"),), 8080, [TLS_INSPECTOR], id="strict http"),
        pytest.param((mode("DISABLE"),), 8084, [HTTP_INSPECTOR], id="disable auto"),
        pytest.param((mode("DISABLE"),), 8080, [], id="disable http"),
        pytest.param((mode("DISABLE"),), 8083, [], id="disable tcp"),
    ],
)
def test_listener_filters(docs: tuple[str, ...], port: int, expected: list[str]) -> None:
    lst = listener(port, *docs)
    assert [f["name"] for f in lst.get("listener_filters", [])] == expected
    assert lst["continue_on_listener_filters_timeout"] is True


def test_listener_basics_and_detection_timeout() -> None:
    """buildInboundListener: INBOUND direction, continue on timeout, listener_filters_timeout =
    MeshConfig protocolDetectionTimeout."""
    lst = listener(8084, mesh(protocolDetectionTimeout="5s"))
    assert lst["traffic_direction"] == "INBOUND"
    assert lst["address"]["socket_address"] == {"address": IP, "port_value": 8084}
    assert lst["listener_filters_timeout"] == "5s"


def test_every_workload_port_gets_a_listener() -> None:
    """TestInboundListenerConfig: one inbound chain set per target port, including ports in no Service."""
    names = {n for n in listeners() if n != naming.VIRTUAL_OUTBOUND}
    assert names == {f"{IP}_{port}" for port in FAMILY}


# --- inbound HCM (listener_inbound.go buildSidecarInboundHTTPOpts; listener_builder.go) ---------------


def test_inbound_hcm_defaults() -> None:
    m = hcm(8080)
    assert m["stat_prefix"] == "inbound_0.0.0.0_8080"
    assert m.get("codec_type", "AUTO") == "AUTO"  # the proto default
    assert m["forward_client_cert_details"] == "APPEND_FORWARD"
    assert m["set_current_client_cert_details"] == {"subject": True, "uri": True, "dns": True}
    assert m["use_remote_address"] is False
    assert m["normalize_path"] is True
    assert "merge_slashes" not in m
    assert m["path_with_escaped_slashes_action"] == "KEEP_UNCHANGED"
    assert m["stream_idle_timeout"] == "0s"
    assert m["server_name"] == "istio-envoy"
    assert "server_header_transformation" not in m  # OVERWRITE
    assert "generate_request_id" not in m  # Envoy's default: generate
    assert m["upgrade_configs"] == [{"upgrade_type": "websocket"}]
    assert m["proxy_100_continue"] is True
    assert "common_http_protocol_options" not in m
    assert m["rds"]["route_config_name"] == "inbound|8080||"


def test_inbound_http_filters_order() -> None:
    """listener_test.go "wasm, stats, authz" (without istio-proxy's own filters): grpc_stats, fault, cors,
    router; no istio.alpn on inbound."""
    names = [f["name"] for f in hcm(8080)["http_filters"]]
    assert "istio.alpn" not in names
    assert names[-4:] == [
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]


@pytest.mark.parametrize(
    ("port", "h2"), [(8080, False), (8081, True), (8082, True), (8085, True), (8084, False)]
)
def test_http2_options_only_on_http2_ports(port: int, h2: bool) -> None:
    """buildSidecarInboundHTTPOpts: Http2ProtocolOptions when the port's protocol IsHTTP2."""
    assert ("http2_protocol_options" in hcm(port)) is h2


def test_grpc_ports() -> None:
    """testInboundListenerConfigWithGrpc: grpc_stats on gRPC ports; grpc_web only on GRPC-Web ports."""
    assert "envoy.filters.http.grpc_stats" in [f["name"] for f in hcm(8082)["http_filters"]]
    web = [f["name"] for f in hcm(8085)["http_filters"]]
    assert web[-5:-3] == ["envoy.filters.http.grpc_web", "envoy.filters.http.grpc_stats"]
    assert "envoy.filters.http.grpc_web" not in [f["name"] for f in hcm(8082)["http_filters"]]


@pytest.mark.parametrize(
    ("normalization", "expected"),
    [
        ("NONE", (False, None, "KEEP_UNCHANGED")),
        ("BASE", (True, None, "KEEP_UNCHANGED")),
        ("DEFAULT", (True, None, "KEEP_UNCHANGED")),
        ("MERGE_SLASHES", (True, True, "KEEP_UNCHANGED")),
        ("DECODE_AND_MERGE_SLASHES", (True, True, "UNESCAPE_AND_FORWARD")),
    ],
)
def test_mesh_path_normalization(normalization: str, expected: tuple) -> None:
    """listener_builder.go buildHTTPConnectionManager: MeshConfig pathNormalization."""
    m = hcm(8080, mesh(pathNormalization={"normalization": normalization}))
    assert (m["normalize_path"], m.get("merge_slashes"), m["path_with_escaped_slashes_action"]) == expected


def test_proxy_headers() -> None:
    """GetProxyHeadersFromProxyConfig: ProxyConfig proxyHeaders on the inbound HCM."""
    config = mesh(
        defaultConfig={
            "proxyHeaders": {
                "forwardedClientCert": "SANITIZE",
                "server": {"disabled": True},
                "requestId": {"disabled": True},
                "envoyDebugHeaders": {"disabled": True},
                "setCurrentClientCertDetails": {"cert": True, "dns": False},
            }
        }
    )
    m = hcm(8080, config)
    assert m.get("forward_client_cert_details", "SANITIZE") == "SANITIZE"  # the proto default
    assert m["set_current_client_cert_details"] == {"subject": True, "uri": True, "cert": True}
    assert "server_name" not in m
    assert m["server_header_transformation"] == "PASS_THROUGH"
    assert m["generate_request_id"] is False
    router = m["http_filters"][-1]
    assert router["name"] == "envoy.filters.http.router"
    assert router["typed_config"]["suppress_envoy_headers"] is True

    named = hcm(8080, mesh(defaultConfig={"proxyHeaders": {"server": {"value": "my-proxy"}}}))
    assert named["server_name"] == "my-proxy"
    assert "suppress_envoy_headers" not in hcm(8080)["http_filters"][-1]["typed_config"]


def test_outbound_keeps_envoy_server_name() -> None:
    """GetProxyHeadersFromProxyConfig: outbound uses Envoy's own server name ("envoy")."""
    outbound = listeners()[naming.VIRTUAL_OUTBOUND]["filter_chains"][0]["filters"][-1]
    assert "server_name" not in typed(outbound)


def test_idle_timeout_from_proxy_metadata() -> None:
    """Node metadata IDLE_TIMEOUT (ISTIO_META_IDLE_TIMEOUT): HCM common_http_protocol_options.idle_timeout
    and tcp_proxy idle_timeout (networkfilter_test.go / buildInboundNetworkFilters)."""
    config = mesh(defaultConfig={"proxyMetadata": {"ISTIO_META_IDLE_TIMEOUT": "1m30s"}})
    assert hcm(8080, config)["common_http_protocol_options"] == {"idle_timeout": "90s"}
    assert tcp_proxy(8083, config)["idle_timeout"] == "90s"
    assert "idle_timeout" not in tcp_proxy(8083)
    bad = mesh(defaultConfig={"proxyMetadata": {"ISTIO_META_IDLE_TIMEOUT": "90"}})
    assert "idle_timeout" not in tcp_proxy(8083, bad)


# --- inbound tcp_proxy (networkfilter_test.go; listener_inbound.go buildInboundNetworkFilters) --------


@pytest.mark.parametrize("port", [8083, 8084])
def test_inbound_tcp_proxy(port: int) -> None:
    proxy = tcp_proxy(port)
    assert proxy["stat_prefix"] == f"inbound|{port}||"
    assert proxy["cluster"] == f"inbound|{port}||"


# --- several Services on one target port (listener_test.go TestInboundListenerConfig "multiple services") -


def service_on_8084(name: str, port_name: str, created: str) -> str:
    meta = {"name": name, "namespace": "default", "creationTimestamp": created}
    spec = {"selector": {"app": "multi"}, "ports": [{"name": port_name, "port": 7000, "targetPort": 8084}]}
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec})


@pytest.mark.parametrize(("oldest", "newer", "family"), [("http", "tcp", "http"), ("tcp", "http", "tcp")])
def test_oldest_service_decides_the_port_protocol(oldest: str, newer: str, family: str) -> None:
    """getFilterChainsByServicePort: on a conflict the oldest Service's port (and protocol) is used,
    whatever the names or the order the Services came in."""
    docs = (service_on_8084("a-new", newer, NOW), service_on_8084("z-old", oldest, EARLIER))
    assert chains(listener(8084, *docs)) == PERMISSIVE_CHAINS[family]
    assert chains(listener(8084, *reversed(docs))) == PERMISSIVE_CHAINS[family]
