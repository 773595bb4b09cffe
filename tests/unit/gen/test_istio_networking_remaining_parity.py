"""The rest of istiod's `pilot/pkg/networking` test suites, as Istio YAML checked on the config we generate.

Inventory of `pilot/pkg/networking/**/_test.go` (istio/istio, newest stored version; where an older stored
version has more cases, those too), against the `_test.go` citations of tests/unit and tests/e2e:

Ported here:
- util/util_test.go: TestConvertLocality, TestIsLocalityEmpty (EDS localities), TestLocalityMatch
  (locality.locality_match), TestBuildAddress (EDS addresses), TestEndpointMetadata (`istio.workload`,
  tlsMode), TestBuildConfigInfoMetadata, TestAddConfigInfoMetadata, TestAddSubsetToMetadata,
  TestAddALPNOverrideToMetadata (cluster `istio` metadata), TestMergeSubsetTrafficPolicy (subset clusters),
  TestIPv6Compliant, TestDomainName (virtual host domains of an IPv6 VIP);
- telemetry/telemetry_test.go: TestBuildStatPrefix (outbound clusters' alt_stat_name, gateway TCP stat
  prefixes), TestBuildInboundStatPrefix (inbound clusters' alt_stat_name, inbound tcp_proxy stat prefixes),
  TestTraceOperation (route decorators);
- networking_test.go: TestModelProtocolToListenerProtocol (inbound chains per port protocol).

Already ported elsewhere (cited there): core/{accesslog, cluster, cluster_builder, cluster_tls,
cluster_traffic_policy, cluster_dfp_sidecar, connection_settings, gateway, gateway_filter_chains,
gateway_simulation, httproute, listener, listener_builder, listener_dfp, listener_inbound, networkfilter,
peer_authentication_simulation, serviceentry_simulation, sidecar_simulation, tls}_test.go,
core/route/{route, route_internal}_test.go, core/route/retry/retry_test.go,
core/loadbalancer/{loadbalancer, loadbalancer_simulation}_test.go, core/match/match_test.go,
util/proxy_headers_test.go; core/tracing_test.go (tests/e2e/test_istio_tracing_cases.py and the tracing
cases of test_istio_listener_cluster_more_parity.py); util_test.go TestIsAllowAnyOutbound
(traffic_allow_any_test.go / traffic_registry_only_test.go ports).

Not applicable (one line each):
- core/envoyfilter/*_test.go, plugin/envoyfilter: EnvoyFilter is not supported.
- core/extension/{extensionfilter, wasmplugin}_test.go: WasmPlugin / extension filters not supported.
- core/listener_waypoint_test.go, ambientgen/ztunnelgen_test.go: ambient / waypoints.
- grpcgen/*_test.go: proxyless gRPC.
- apigen/apigen_test.go: istiod's MCP-over-xDS config generator.
- core/name_table_delta_test.go: the DNS proxy's name table (no DNS proxy; DESIGN §3).
- core/cluster_cache_test.go, core/route/route_cache_test.go: istiod's cache keys (Isthmus caches by
  scope and snapshot version; tests/unit/gen/test_deterministic_bytes.py).
- core/external_sds_test.go: external SDS providers (`sds://` credential names) are not supported.
- core/fuzz_test.go, core/leak_test.go, core/listener_bench_test.go, util/fuzz_test.go,
  loadbalancer/fuzz_test.go: fuzzing, goroutine leaks, benchmarks.
- util/cidr_test.go (TestCIDRRangeOverlap) and util_test.go TestConvertAddressToCidr, TestCidrRangeSliceEqual:
  helpers for istiod's listener filter-chain prefix ranges (no such ranges here; authorization ipBlocks
  are ported with the authz suites).
- util_test.go TestGetEndpointHost (internal-address HBONE endpoints), TestMeshNetworksToEnvoyInternalAddressConfig
  (meshNetworks, multi-network), TestStatefulSessionFilterConfig (ENABLE_PERSISTENT_SESSION_FILTER, off
  by default), TestCloneClusterLoadAssignment, TestCloneCluster, TestIsHTTPFilterChain, TestByteCount,
  TestGetByAddress, TestMergeAnyWithStruct, TestHandleCrash, TestGetNetworkEndpointAddress,
  TestResolveHostsInNetworksConfig (old versions): istiod-internal helpers with no config of their own.
- networking_test.go TestString, TestToEnvoySocketProtocol: QUIC transport (no HTTP/3 listeners).
- plugin/{authn,authz,health,mixer,registry}/*_test.go, plugin/plugin_test.go: removed plugin framework
  (mixer, health checks); today's authn/authz counterparts under pilot/pkg/security are ported there.
- core/tunnelingconfig: no _test.go (its Apply is covered by networkfilter_test.go's ports).

Departures by design: stat names carry no `;` suffix (istiod's DelimitedStatsPrefix feeds istio-proxy's
stats-tag regexes, which plain Envoy lacks); TestEndpointMetadata's "telemetry label disabled" cases need
ENDPOINT_TELEMETRY_LABEL off (it is on by default).

Fixed in the generators to match istiod (see the tests):
- inbound tcp_proxy stat prefixes ignored MeshConfig inboundClusterStatName (istiod's
  buildInboundNetworkFilters uses BuildInboundStatPrefix); plaintext chains keep the `_plaintext` suffix
  (listeners.py, clusters.inbound_stat_name);
- a gateway's single-destination tcp_proxy (VirtualService `tcp`/`tls` routes) ignored
  outboundClusterStatName (istiod's buildOutboundNetworkFilters: BuildStatPrefix of the destination host
  and subset on the server's port number and name) (gateway.py);
- clusters whose DestinationRule TLS is SIMPLE or MUTUAL lacked `istio.alpn_override: "false"`
  (AddALPNOverrideToMetadata) (clusters.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import clusters, generate, route_table, sidecar, snapshot
from test_istio_gateway_parity import GW_POD, gateway, gateway_proxy, virtual_service

from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import locality, naming

TCP_PROXY = "envoy.filters.network.tcp_proxy"
HCM = "envoy.filters.network.http_connection_manager"
REVIEWS = "reviews.default.svc.cluster.local"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: grpc-svc, port: 7443, targetPort: 8443}
  - {name: tcp-svc, port: 7000, targetPort: 8000}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: namespace1}
spec:
  selector: {app: reviews}
  ports: [{name: grpc-svc, port: 7443}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews-vm, namespace: default}
spec:
  hosts: [reviews.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: grpc-svc, number: 7443, protocol: GRPC}]
  endpoints: [{address: 10.0.0.1}]
"""
SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""

REVIEWS_POD = Pod(
    "reviews-v1-0",
    "default",
    "127.7.0.2",
    {"app": "reviews", "version": "v1"},
    workload="reviews-v1",
    app_ports={8443: 40001, 8000: 40002},
)


def reviews_proxy() -> Proxy:
    return sidecar("reviews-v1-0", labels={"app": "reviews", "version": "v1"}, ip="127.7.0.2")


def mesh(**spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "isthmus.dev/v1alpha1",
            "kind": "MeshConfig",
            "metadata": {"name": "mesh"},
            "spec": spec,
        }
    )


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> str:
    api = "security.istio.io/v1" if kind == "PeerAuthentication" else "networking.istio.io/v1"
    return json.dumps(
        {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


def stat_clusters(*docs: str, proxy: Proxy | None = None) -> dict[str, dict[str, Any]]:
    """The clusters of reviews' sidecar, with `docs` (by default, reviews' subset DestinationRule)."""
    snap = snapshot(SERVICES, *(docs or (SUBSETS,)), pods=[REVIEWS_POD], services=False)
    return clusters(snap, proxy or reviews_proxy())


# --- telemetry_test.go TestBuildStatPrefix --------------------------------------------------------------
# (name, pattern, cluster, want). The service is reviews (grpc-svc, 7443) of a Kubernetes registry in
# `default` or `namespace1`; the last case is a ServiceEntry (no Kubernetes registry: %SERVICE% is the host).

STAT_PREFIX_CASES = [
    ("Service only pattern", "%SERVICE%", f"outbound|7443||{REVIEWS}", "reviews.default"),
    (
        "Service only pattern from different namespace",
        "%SERVICE%",
        "outbound|7443||reviews.namespace1.svc.cluster.local",
        "reviews.namespace1",
    ),
    (
        "Service with port pattern from different namespace",
        "%SERVICE%.%SERVICE_PORT%",
        "outbound|7443||reviews.namespace1.svc.cluster.local",
        "reviews.namespace1.7443",
    ),
    ("Service FQDN only pattern", "%SERVICE_FQDN%", f"outbound|7443||{REVIEWS}", REVIEWS),
    ("Service With Port pattern", "%SERVICE%_%SERVICE_PORT%", f"outbound|7443||{REVIEWS}", "reviews.default_7443"),
    (
        "Service With Port Name pattern",
        "%SERVICE%_%SERVICE_PORT_NAME%",
        f"outbound|7443||{REVIEWS}",
        "reviews.default_grpc-svc",
    ),
    (
        "Service With Port and Port Name pattern",
        "%SERVICE%_%SERVICE_PORT_NAME%_%SERVICE_PORT%",
        f"outbound|7443||{REVIEWS}",
        "reviews.default_grpc-svc_7443",
    ),
    ("Service FQDN With Port pattern", "%SERVICE_FQDN%_%SERVICE_PORT%", f"outbound|7443||{REVIEWS}", f"{REVIEWS}_7443"),
    (
        "Service FQDN With Port Name pattern",
        "%SERVICE_FQDN%_%SERVICE_PORT_NAME%",
        f"outbound|7443||{REVIEWS}",
        f"{REVIEWS}_grpc-svc",
    ),
    (
        "Service FQDN With Port and Port Name pattern",
        "%SERVICE_FQDN%_%SERVICE_PORT_NAME%_%SERVICE_PORT%",
        f"outbound|7443||{REVIEWS}",
        f"{REVIEWS}_grpc-svc_7443",
    ),
    (
        "Service FQDN With Empty Subset, Port and Port Name pattern",
        "%SERVICE_FQDN%%SUBSET_NAME%_%SERVICE_PORT_NAME%_%SERVICE_PORT%",
        f"outbound|7443||{REVIEWS}",
        f"{REVIEWS}_grpc-svc_7443",
    ),
    (
        "Service FQDN With Subset, Port and Port Name pattern",
        "%SERVICE_FQDN%.%SUBSET_NAME%.%SERVICE_PORT_NAME%_%SERVICE_PORT%",
        f"outbound|7443|v1|{REVIEWS}",
        f"{REVIEWS}.v1.grpc-svc_7443",
    ),
    ("Service FQDN With Unknown Pattern", "%SERVICE_FQDN%.%DUMMY%", f"outbound|7443|v1|{REVIEWS}", f"{REVIEWS}.%DUMMY%"),
    (
        "Service FQDN without ServiceRegistry property",
        "%SERVICE_FQDN%",
        "outbound|7443||reviews.example.com",
        "reviews.example.com",
    ),
    # Not in istiod's table, its shortHostName for a non-Kubernetes registry: the host itself.
    ("ServiceEntry service pattern", "%SERVICE%_%SERVICE_PORT%", "outbound|7443||reviews.example.com", "reviews.example.com_7443"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "pattern", "cluster", "want"), STAT_PREFIX_CASES, ids=[c[0] for c in STAT_PREFIX_CASES]
)
def test_build_stat_prefix(name: str, pattern: str, cluster: str, want: str) -> None:
    """TestBuildStatPrefix: MeshConfig outboundClusterStatName gives the outbound cluster its alt_stat_name
    (istiod then appends its `;` stats-tag delimiter, which plain Envoy has no regex for)."""
    assert stat_clusters(SUBSETS, mesh(outboundClusterStatName=pattern))[cluster]["alt_stat_name"] == want


# --- telemetry_test.go TestBuildInboundStatPrefix ---------------------------------------------------------
# The inbound cluster of reviews' grpc-svc port (service port 7443 -> target port 8443): the pattern is
# filled in from the service port, not the target port (FilterChainMetadata and fcc.port.Port).

INBOUND_STAT_PREFIX_CASES = [
    ("Service only pattern", "%SERVICE%", "reviews.default"),
    ("Service FQDN only pattern", "%SERVICE_FQDN%", REVIEWS),
    ("Service With Port pattern", "%SERVICE%_%SERVICE_PORT%", "reviews.default_7443"),
    ("Service With Port Name pattern", "%SERVICE%_%SERVICE_PORT_NAME%", "reviews.default_grpc-svc"),
    ("Service With Port and Port Name pattern", "%SERVICE%_%SERVICE_PORT_NAME%_%SERVICE_PORT%", "reviews.default_grpc-svc_7443"),
    ("Service FQDN With Port pattern", "%SERVICE_FQDN%_%SERVICE_PORT%", f"{REVIEWS}_7443"),
    ("Service FQDN With Port Name pattern", "%SERVICE_FQDN%_%SERVICE_PORT_NAME%", f"{REVIEWS}_grpc-svc"),
    ("Service FQDN With Port and Port Name pattern", "%SERVICE_FQDN%_%SERVICE_PORT_NAME%_%SERVICE_PORT%", f"{REVIEWS}_grpc-svc_7443"),
    (
        "Service FQDN With Empty Subset, Port and Port Name pattern",
        "%SERVICE_FQDN%%SUBSET_NAME%_%SERVICE_PORT_NAME%_%SERVICE_PORT%",
        f"{REVIEWS}_grpc-svc_7443",
    ),
    # Inbound clusters have no subset: %SUBSET_NAME% is empty ("v1" is the port test's own input there).
    ("Service FQDN With Unknown Pattern", "%SERVICE_FQDN%.%DUMMY%", f"{REVIEWS}.%DUMMY%"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "pattern", "want"), INBOUND_STAT_PREFIX_CASES, ids=[c[0] for c in INBOUND_STAT_PREFIX_CASES]
)
def test_build_inbound_stat_prefix(name: str, pattern: str, want: str) -> None:
    """TestBuildInboundStatPrefix: MeshConfig inboundClusterStatName names the inbound cluster's stats."""
    assert stat_clusters(mesh(inboundClusterStatName=pattern))["inbound|8443||"]["alt_stat_name"] == want


SELECTING_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: default}
spec:
  hosts: [svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: grpc-svc, number: 7443, protocol: GRPC, targetPort: 8443}]
  workloadSelector: {labels: {app: reviews}}
"""


@pytest.mark.parametrize(
    ("pattern", "want"),
    [("%SERVICE%", "svc.cluster.local"), ("%SERVICE%_%SERVICE_PORT_NAME%", "svc.cluster.local_grpc-svc")],
)
def test_build_inbound_stat_prefix_without_kubernetes_service(pattern: str, want: str) -> None:
    """TestBuildInboundStatPrefix "Service only pattern with empty service name": a ServiceEntry selecting
    the workload has no Kubernetes name, so %SERVICE% is its host (FilterChainMetadata.ShortHostname)."""
    pods = [REVIEWS_POD]
    snap = snapshot(SELECTING_SE, mesh(inboundClusterStatName=pattern), pods=pods, services=False)
    assert clusters(snap, reviews_proxy())["inbound|8443||"]["alt_stat_name"] == want


def _inbound_tcp_prefixes(*docs: str) -> list[str]:
    snap = snapshot(SERVICES, *docs, pods=[REVIEWS_POD], services=False)
    listener = generate(snap, reviews_proxy(), naming.LISTENER_TYPE)["127.7.0.2_8000"]
    return [
        f["typed_config"]["stat_prefix"]
        for ch in listener["filter_chains"]
        for f in ch["filters"]
        if f["name"] == TCP_PROXY
    ]


def test_inbound_tcp_proxy_stat_prefix_from_pattern() -> None:
    """buildInboundNetworkFilters: the inbound tcp_proxy's stat_prefix is BuildInboundStatPrefix of
    inboundClusterStatName (the cluster name without it); the plaintext chain keeps its own suffix
    (TestInboundStatPrefixUniqueness)."""
    assert _inbound_tcp_prefixes() == ["inbound|8000||", "inbound|8000||", "inbound|8000||_plaintext"]
    pattern = mesh(inboundClusterStatName="%SERVICE%_%SERVICE_PORT_NAME%_%SERVICE_PORT%")
    want = "reviews.default_tcp-svc_7000"
    assert _inbound_tcp_prefixes(pattern) == [want, want, want + "_plaintext"]
    strict = doc("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}, namespace="istio-system")
    assert _inbound_tcp_prefixes(pattern, strict) == [want]


# --- gateway TCP routes: buildOutboundNetworkFilters' BuildStatPrefix ------------------------------------

TCP_GATEWAY = gateway(
    "gw",
    "istio-system",
    """
    - port: {number: 31400, name: tcp-gw, protocol: TCP}
      hosts: ["*"]
    """,
)


def _gateway_tcp_prefix(*docs: str) -> str:
    snap = snapshot(SERVICES, SUBSETS, *docs, pods=[REVIEWS_POD, GW_POD], services=False)
    listeners = generate(snap, gateway_proxy(), naming.LISTENER_TYPE)
    (prefix,) = [
        f["typed_config"]["stat_prefix"]
        for lst in listeners.values()
        for ch in lst.get("filter_chains", [])
        for f in ch["filters"]
        if f["name"] == TCP_PROXY
    ]
    return prefix


def test_gateway_tcp_stat_prefix_from_pattern() -> None:
    """buildOutboundNetworkFilters: a single destination's tcp_proxy stats are the cluster's name, or
    BuildStatPrefix(outboundClusterStatName, destination host, subset, the server's port) when set; a
    weighted split keeps `<vs>.<namespace>`."""
    single = virtual_service(
        "tcp",
        "istio-system",
        f"""
        hosts: ["*"]
        gateways: [gw]
        tcp: [{{route: [{{destination: {{host: {REVIEWS}, subset: v1, port: {{number: 7000}}}}}}]}}]
        """,
    )
    assert _gateway_tcp_prefix(TCP_GATEWAY, single) == f"outbound|7000|v1|{REVIEWS}"
    pattern = mesh(outboundClusterStatName="%SERVICE%_%SUBSET_NAME%_%SERVICE_PORT_NAME%_%SERVICE_PORT%")
    assert _gateway_tcp_prefix(TCP_GATEWAY, single, pattern) == "reviews.default_v1_tcp-gw_31400"
    split = virtual_service(
        "split",
        "istio-system",
        f"""
        hosts: ["*"]
        gateways: [gw]
        tcp:
        - route:
          - {{destination: {{host: {REVIEWS}, subset: v1, port: {{number: 7000}}}}, weight: 50}}
          - {{destination: {{host: {REVIEWS}, port: {{number: 7000}}}}, weight: 50}}
        """,
    )
    assert _gateway_tcp_prefix(TCP_GATEWAY, split, pattern) == "split.istio-system"


# --- util_test.go TestConvertLocality / TestIsLocalityEmpty: EDS localities --------------------------------

LOCALITY_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.org]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 10.0.0.1}
  - {address: 10.0.0.2, locality: region}
  - {address: 10.0.0.3, locality: region/zone}
  - {address: 10.0.0.4, locality: region/zone/subzone}
  - {address: 10.0.0.5, locality: region/zone/subzone/rack}
  - {address: "fe80::10e7:52ff:fecd:198b"}
  - {address: "unix:///var/run/test/socket"}
"""
EXT_CLUSTER = "outbound|8080||ext.example.org"


def _assignment(*docs: str, cluster: str = EXT_CLUSTER, pods: list[Pod] | None = None) -> dict[str, Any]:
    snap = snapshot(*docs, pods=pods or [], services=False)
    return generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]


def _by_address(assignment: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each endpoint's (locality, lb_endpoint), keyed by its socket address or pipe path."""
    out = {}
    for group in assignment["endpoints"]:
        for ep in group["lb_endpoints"]:
            address = ep["endpoint"]["address"]
            key = (
                address["socket_address"]["address"]
                if "socket_address" in address
                else address["pipe"]["path"]
            )
            out[key] = (group.get("locality", {}), ep)
    return out


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("10.0.0.1", {}),  # "nil locality" / IsLocalityEmpty: no locality at all
        ("10.0.0.2", {"region": "region"}),
        ("10.0.0.3", {"region": "region", "zone": "zone"}),
        ("10.0.0.4", {"region": "region", "zone": "zone", "sub_zone": "subzone"}),
        ("10.0.0.5", {"region": "region", "zone": "zone", "sub_zone": "subzone"}),  # the rack is dropped
    ],
)
def test_convert_locality(address: str, want: dict[str, str]) -> None:
    """TestConvertLocality: `region/zone/subzone[/rack]` becomes the endpoints' Locality (no rack)."""
    assert _by_address(_assignment(LOCALITY_SE))[address][0] == want


# (name, locality, rule, match)
LOCALITY_MATCH_CASES = [
    ("wildcard matching", ("region1", "zone1", "subzone1"), "*", True),
    ("wildcard matching region", ("region1", "zone1", "subzone1"), "region1/*", True),
    ("wildcard matching zone", ("region1", "zone1", "subzone1"), "region1/zone1/*", True),
    ("wildcard not matching", ("region1", "zone1", "subzone1"), "region1/zone2/*", False),
    ("region matching", ("region1", "zone1", "subzone1"), "region1", True),
    ("region and zone matching", ("region1", "zone1", "subzone1"), "region1/zone1", True),
    ("zubzone wildcard matching", ("region1", "zone1", ""), "region1/zone1", True),
    ("subzone mismatching", ("region1", "zone1", ""), "region1/zone1/subzone2", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "where", "rule", "match"), LOCALITY_MATCH_CASES, ids=[c[0] for c in LOCALITY_MATCH_CASES]
)
def test_locality_match(name: str, where: tuple[str, str, str], rule: str, match: bool) -> None:
    """TestLocalityMatch: the rule matcher of localityLbSetting distribute `from`/`to` and failover."""
    assert locality.locality_match(where, rule) is match


# --- util_test.go TestBuildAddress: EDS endpoint addresses -------------------------------------------------


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("10.0.0.1", {"socket_address": {"address": "10.0.0.1", "port_value": 8080}}),
        (
            "fe80::10e7:52ff:fecd:198b",
            {"socket_address": {"address": "fe80::10e7:52ff:fecd:198b", "port_value": 8080}},
        ),
        ("/var/run/test/socket", {"pipe": {"path": "/var/run/test/socket"}}),  # "uds with unix prefix"
    ],
)
def test_build_address(address: str, want: dict[str, Any]) -> None:
    """TestBuildAddress: IPv4 and IPv6 endpoints are socket addresses, `unix://` ones pipes (no port).
    (A bare `/path` is no valid ServiceEntry endpoint address, so istiod's plain "uds" case has no YAML.)"""
    assert _by_address(_assignment(LOCALITY_SE))[address][1]["endpoint"]["address"] == want


# --- util_test.go TestEndpointMetadata: `istio.workload` and tlsMode ---------------------------------------

METADATA_SVC = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  selector: {role: db}
  ports: [{name: http, port: 8080}]
"""
DB_CLUSTER = "outbound|8080||db.default.svc.cluster.local"
CANONICAL = {"service.istio.io/canonical-name": "service", "service.istio.io/canonical-revision": "v1"}


@pytest.mark.parametrize(
    ("name", "labels", "with_sidecar", "workload", "tls_mode"),
    [
        ("all label", {"role": "db", **CANONICAL}, True, "workload;default;service;v1;Kubernetes", True),
        ("miss pod label", {"role": "db"}, True, "workload;default;workload;;Kubernetes", True),
        (
            "all label, no sidecar",
            {"role": "db", **CANONICAL},
            False,
            "workload;default;service;v1;Kubernetes",
            False,
        ),
    ],
)
def test_endpoint_metadata(
    name: str, labels: dict[str, str], with_sidecar: bool, workload: str, tls_mode: bool
) -> None:
    """TestEndpointMetadata: `istio.workload` is workload;namespace;canonical name (else the workload);
    canonical revision;cluster, and `envoy.transport_socket_match` tlsMode=istio only for mTLS endpoints."""
    pod = Pod("workload-0", "default", "127.7.0.8", labels, workload="workload", sidecar=with_sidecar)
    (group,) = _assignment(METADATA_SVC, cluster=DB_CLUSTER, pods=[pod])["endpoints"]
    (ep,) = group["lb_endpoints"]
    metadata = ep["metadata"]["filter_metadata"]
    assert metadata["istio"] == {"workload": workload}
    assert ("envoy.transport_socket_match" in metadata) is tls_mode
    if tls_mode:
        assert metadata["envoy.transport_socket_match"] == {"tlsMode": "istio"}


def test_endpoint_metadata_without_workload() -> None:
    """TestEndpointMetadata "miss workload name" / "all empty": a ServiceEntry's own endpoints name no
    workload, namespace or canonical service; no tlsMode without a sidecar behind them."""
    (_, ep) = _by_address(_assignment(LOCALITY_SE))["10.0.0.1"]
    assert ep["metadata"]["filter_metadata"] == {"istio": {"workload": ";;;;Kubernetes"}}


# --- util_test.go TestBuildConfigInfoMetadata / TestAddSubsetToMetadata / TestAddALPNOverrideToMetadata ----


def _rule(spec: dict[str, Any]) -> str:
    return doc("DestinationRule", "svc-a", {"host": "reviews", **spec})


def _istio_metadata(cs: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return cs[name]["metadata"]["filter_metadata"]["istio"]


def test_config_info_and_subset_metadata() -> None:
    """TestBuildConfigInfoMetadata / TestAddConfigInfoMetadata / TestAddSubsetToMetadata: clusters a
    DestinationRule applies to carry its config path (next to the other `istio` keys), subset clusters
    also their subset; without a rule, neither."""
    cs = stat_clusters(_rule({"subsets": [{"name": "test-subset", "labels": {"version": "v1"}}]}))
    path = "/apis/networking.istio.io/v1/namespaces/default/destination-rule/svc-a"
    default = _istio_metadata(cs, f"outbound|7443||{REVIEWS}")
    assert default["config"] == path and "subset" not in default and default["services"]
    subset = _istio_metadata(cs, f"outbound|7443|test-subset|{REVIEWS}")
    assert subset["config"] == path and subset["subset"] == "test-subset"
    other = _istio_metadata(cs, "outbound|7443||reviews.namespace1.svc.cluster.local")
    assert "config" not in other and "subset" not in other


@pytest.mark.parametrize(
    ("mode", "override"),
    [("ISTIO_MUTUAL", False), ("DISABLE", False), ("SIMPLE", True), ("MUTUAL", True)],
)
def test_alpn_override_metadata(mode: str, override: bool) -> None:
    """TestAddALPNOverrideToMetadata: a DestinationRule TLS of SIMPLE or MUTUAL marks the cluster
    `alpn_override: "false"` (the application's ALPN is kept), ISTIO_MUTUAL and DISABLE do not."""
    tls: dict[str, Any] = {"mode": mode}
    if mode == "MUTUAL":
        tls.update(clientCertificate="/etc/certs/cert.pem", privateKey="/etc/certs/key.pem")
    cs = stat_clusters(
        _rule({"trafficPolicy": {"tls": tls}, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]})
    )
    for name in (f"outbound|7443||{REVIEWS}", f"outbound|7443|v1|{REVIEWS}"):
        metadata = _istio_metadata(cs, name)
        assert metadata.get("alpn_override") == ("false" if override else None), name


def test_alpn_override_metadata_of_subset_tls() -> None:
    """applyDestinationRule / buildSubsetCluster: each cluster's own (merged) TLS mode decides."""
    spec = {
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}
        ],
    }
    cs = stat_clusters(_rule(spec))
    assert "alpn_override" not in _istio_metadata(cs, f"outbound|7443||{REVIEWS}")
    assert _istio_metadata(cs, f"outbound|7443|v1|{REVIEWS}")["alpn_override"] == "false"


# --- util_test.go TestMergeSubsetTrafficPolicy: subset clusters ------------------------------------------
# web2 has ports 8080 and 9090; the subset v1's cluster on `port` shows the merged policy: its load
# balancer (ROUND_ROBIN is Envoy's enum default, absent; unset is istiod's LEAST_REQUEST), maxRetries
# (unset: MaxUint32), consecutive 5xx errors and TLS.

MERGE_SVC = """
apiVersion: v1
kind: Service
metadata: {name: web2, namespace: default}
spec:
  selector: {app: web2}
  ports: [{name: http, port: 8080}, {name: http-alt, port: 9090}]
"""
UNSET_RETRIES = 4294967295
RR = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
RETRIES = {"connectionPool": {"http": {"maxRetries": 10}}}


def _od(errors: int) -> dict[str, Any]:
    return {"outlierDetection": {"consecutive5xxErrors": errors}}


def _port_level(number: int, policy: dict[str, Any]) -> dict[str, Any]:
    return {"portLevelSettings": [{"port": {"number": number}, **policy}]}


MERGE_CASES = [
    # (name, destination-level policy, subset policy, port, (lb, max_retries, consecutive_5xx, tls))
    ("all nil policies", None, None, 8080, ("LEAST_REQUEST", UNSET_RETRIES, None, None)),
    ("no subset policy", RETRIES, None, 8080, ("LEAST_REQUEST", 10, None, None)),
    ("no parent policy", None, RETRIES, 8080, ("LEAST_REQUEST", 10, None, None)),
    (
        "merge non-conflicting fields",
        {"tls": {"mode": "ISTIO_MUTUAL"}},
        {**RETRIES, "tunnel": {"targetHost": "example.com", "targetPort": 8443}},
        8080,
        ("LEAST_REQUEST", 10, None, "ISTIO_MUTUAL"),
    ),
    (
        "subset overwrite top-level fields",
        {"tls": {"mode": "ISTIO_MUTUAL"}, **RETRIES},
        {"tls": {"mode": "SIMPLE"}},
        8080,
        ("LEAST_REQUEST", 10, None, "SIMPLE"),
    ),
    (
        "merge port level policy, and do not inherit top-level fields",
        None,
        {**RR, **RETRIES, **_port_level(8080, {"loadBalancer": {"simple": "LEAST_REQUEST"}})},
        8080,
        ("LEAST_REQUEST", UNSET_RETRIES, None, None),
    ),
    (
        "merge port level policy, and do not inherit top-level fields (both levels)",
        {**RR, **_od(20), **_port_level(8080, _od(15))},
        {**RR, **RETRIES, **_port_level(8080, _od(13))},
        8080,
        ("LEAST_REQUEST", UNSET_RETRIES, 13, None),
    ),
    (
        "default cluster, non-matching port selector",
        {**RR, **_od(20), **_port_level(8080, _od(15))},
        {**RR, **RETRIES, **_port_level(8080, _od(13))},
        9090,
        (None, 10, 20, None),
    ),
]  # fmt: skip


def _tls_mode(c: dict[str, Any]) -> str | None:
    """ISTIO_MUTUAL, SIMPLE (marked alpn_override) or None (no DestinationRule TLS on the cluster)."""
    if c["metadata"]["filter_metadata"]["istio"].get("alpn_override") == "false":
        return "SIMPLE"
    socket = json.dumps(c.get("transport_socket", {}))
    return "ISTIO_MUTUAL" if "default" in socket and "ROOTCA" in socket else None


@pytest.mark.parametrize(
    ("name", "policy", "subset_policy", "port", "want"), MERGE_CASES, ids=[c[0] for c in MERGE_CASES]
)
def test_merge_subset_traffic_policy(
    name: str, policy: dict | None, subset_policy: dict | None, port: int, want: tuple
) -> None:
    """TestMergeSubsetTrafficPolicy: the subset's blocks override the destination-level ones; a matching
    port-level setting replaces its level's blocks whole (nothing of the level above is inherited)."""
    subset: dict[str, Any] = {"name": "v1", "labels": {"version": "v1"}}
    if subset_policy is not None:
        subset["trafficPolicy"] = subset_policy
    spec: dict[str, Any] = {"host": "web2", "subsets": [subset]}
    if policy is not None:
        spec["trafficPolicy"] = policy
    cs = clusters(
        snapshot(MERGE_SVC, doc("DestinationRule", "web2", spec), pods=[], services=False), sidecar()
    )
    c = cs[f"outbound|{port}|v1|web2.default.svc.cluster.local"]
    od = c.get("outlier_detection", {}).get("consecutive_5xx")
    got = (c.get("lb_policy"), c["circuit_breakers"]["thresholds"][0].get("max_retries"), od, _tls_mode(c))
    assert got == want


# --- util_test.go TestIPv6Compliant / TestDomainName, telemetry_test.go TestTraceOperation ----------------

IPV6_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: v6, namespace: default}
spec:
  hosts: [v6.example.org]
  addresses: ["2001:4860:0:2001::68"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3000, name: http, protocol: HTTP}]
  endpoints: [{address: "2001:4860:0:2001::69"}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: v4, namespace: default}
spec:
  hosts: [v4.example.org]
  addresses: [127.0.0.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3000, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
"""


def _vhost(name: str) -> dict[str, Any]:
    table = route_table(snapshot(IPV6_SE, pods=[], services=False), sidecar())
    (vh,) = [v for v in table["virtual_hosts"] if v["name"] == name]
    return vh


def test_domain_name_of_ipv6_address() -> None:
    """TestIPv6Compliant / TestDomainName: an IPv6 VIP is bracketed in its virtual host's domains
    (`[2001:4860:0:2001::68]:3000`), an IPv4 one is not (`127.0.0.1:3000`)."""
    assert "[2001:4860:0:2001::68]:3000" in _vhost("v6.example.org:3000")["domains"]
    assert "2001:4860:0:2001::68:3000" not in _vhost("v6.example.org:3000")["domains"]
    assert "127.0.0.1:3000" in _vhost("v4.example.org:3000")["domains"]


def test_trace_operation() -> None:
    """TestTraceOperation: the default route's decorator operation is `<host>:<port>/*`."""
    routes = {r["name"]: r for r in _vhost("v4.example.org:3000")["routes"]}
    assert routes["default"]["decorator"]["operation"] == "v4.example.org:3000/*"


# --- networking_test.go TestModelProtocolToListenerProtocol: inbound chains by port protocol --------------

PROTOCOL_SVC = """
apiVersion: v1
kind: Service
metadata: {name: proto, namespace: default}
spec:
  selector: {app: proto}
  ports:
  - {name: tcp-a, port: 7100}
  - {name: http-a, port: 7200}
  - {name: mysql, port: 7300}
  - {name: foo, port: 7400}
  - {name: udp-a, port: 7500, protocol: UDP}
"""


@pytest.mark.parametrize(
    ("name", "port", "filters"),
    [
        ("TCP to TCP", 7100, {TCP_PROXY}),
        ("HTTP to HTTP", 7200, {HCM}),
        ("MySQL to TCP", 7300, {TCP_PROXY}),
        ("Inbound unknown to Auto", 7400, {TCP_PROXY, HCM}),
        # ListenerProtocolUnknown: getFilterChainMatchOptions' default, the TCP chains.
        ("UDP to UDP", 7500, {TCP_PROXY}),
    ],
)
def test_model_protocol_to_listener_protocol(name: str, port: int, filters: set[str]) -> None:
    """TestModelProtocolToListenerProtocol: TCP-like protocols get tcp_proxy chains, HTTP an HCM, an
    unknown protocol both (sniffed); UDP is ListenerProtocolUnknown, which the inbound chain options
    treat as TCP."""
    app_ports = {7100: 41001, 7200: 41002, 7300: 41003, 7400: 41004, 7500: 41005}
    pod = Pod("proto-0", "default", "127.7.0.6", {"app": "proto"}, workload="proto", app_ports=app_ports)
    snap = snapshot(PROTOCOL_SVC, pods=[pod], services=False)
    proxy = sidecar("proto-0", labels={"app": "proto"}, ip="127.7.0.6")
    listeners = generate(snap, proxy, naming.LISTENER_TYPE)
    lst = listeners[f"127.7.0.6_{port}"]
    names = {f["name"] for ch in lst["filter_chains"] for f in ch["filters"] if f["name"] in (TCP_PROXY, HCM)}
    assert names == filters
