"""EDS parity with istiod, case by case, as Istio YAML through the real registry and EDS generator.

Sources (istio/istio):
- pilot/pkg/xds/endpoints/endpoint_builder_test.go (TestFilterIstioEndpoint,
  TestBuildClusterLoadAssignment_InferenceServicePortFiltering) with endpoint_builder.go
  (BuildClusterLoadAssignment, generate, filterIstioEndpoint, buildEnvoyLbEndpoint, getSubSetLabels);
- pilot/pkg/xds/eds_test.go (TestEdsWeightedServiceEntry with tests/testdata/config/static-weighted-se.yaml,
  TestEDSUnhealthyEndpoints, TestEDSOverlapping, TestEds/UDSEndpoints, TestEDSServiceResolutionUpdate,
  TestEndpointFlipFlops' empty assignment);
- pilot/pkg/serviceregistry/serviceentry/conversion.go / conversion_test.go (convertEndpoint: unix
  address > WorkloadEntry ports > targetPort > port number; the DNS ServiceEntry without endpoints;
  getTLSModeFromWorkloadEntry; convertWorkloadEntryToWorkloadInstance's DNSServiceEntryOnly;
  convertWorkloadInstanceToServiceInstance for workloadSelector entries).

Locality priorities and failoverPriority (TestPopulateFailoverPriorityLabels, loadbalancer_test.go)
are in test_istio_locality_lb.py; mesh-name resolution of DNS entries in test_se_mesh_host_endpoints.py.
Skipped, with the reason: TestWeightedWaypointEndpointsFailsClosed and TestFilterIstioEndpoint's
ambient/waypoint cases (no ambient or waypoints in Isthmus); the InferencePool case (no Gateway API
inference extension); cross-cluster/network filtering (one cluster, one network); TestSAUpdate,
TestIncrementalPush and the push-kind checks of TestEDSUnhealthyEndpoints / TestEndpointFlipFlops
(push scheduling, covered by tests/unit/xds, not endpoint content); Draining endpoints (Kubernetes
terminating endpoints and the persistent-session label have no source in Isthmus).
"""

from __future__ import annotations

from typing import Any

import pytest
from gen_helpers import clusters, generate, sidecar, snapshot

from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

TLS_MATCH = {"envoy.transport_socket_match": {"tlsMode": "istio"}}


def cla(snap: Any, cluster: str) -> dict[str, Any]:
    return generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]


def lb_endpoints(assignment: dict[str, Any]) -> list[dict[str, Any]]:
    return [lb for group in assignment.get("endpoints", []) for lb in group["lb_endpoints"]]


def addr(lb: dict[str, Any]) -> str:
    a = lb["endpoint"]["address"]
    if "pipe" in a:
        return "unix://" + a["pipe"]["path"]
    return f"{a['socket_address']['address']}:{a['socket_address'].get('port_value', 0)}"


def addrs(snap: Any, cluster: str) -> list[str]:
    return sorted(addr(lb) for lb in lb_endpoints(cla(snap, cluster)))


def service_entry(name: str, spec: str, namespace: str = "default") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{body}
"""


def workload_entry(name: str, spec: str, namespace: str = "default") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{body}
"""


def subsets_dr(host: str, subsets: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: subsets, namespace: default}}
spec:
  host: {host}
  subsets: {subsets}
"""


# --- eds_test.go: TestEdsWeightedServiceEntry ---------------------------------------------------

WEIGHTED_SE = service_entry(
    "httpbin",
    """
hosts: [weighted.static.svc.cluster.local]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: STATIC
endpoints:
- {address: 3.3.3.3, locality: a}
- {address: 2.2.2.2, locality: a, weight: 8}
- {address: 1.1.1.1, locality: b, weight: 3}
""",
)


def test_eds_weighted_service_entry() -> None:
    # TestEdsWeightedServiceEntry: locality weight = sum of endpoint weights; an endpoint without a
    # weight is normalized to 1 and istiod writes that 1 (buildEnvoyLbEndpoint: GetLoadBalancingWeight).
    got: dict[str, int] = {}
    for group in cla(snapshot(WEIGHTED_SE), "outbound|80||weighted.static.svc.cluster.local")["endpoints"]:
        got[group["locality"]["region"]] = group["load_balancing_weight"]
        for lb in group["lb_endpoints"]:
            got[lb["endpoint"]["address"]["socket_address"]["address"]] = lb["load_balancing_weight"]
    assert got == {"a": 9, "b": 3, "3.3.3.3": 1, "2.2.2.2": 8, "1.1.1.1": 3}


def test_every_pod_endpoint_carries_weight_one_and_healthy_status() -> None:
    # buildEnvoyLbEndpoint: HealthStatus from the endpoint (HEALTHY) and LoadBalancingWeight always set.
    lbs = lb_endpoints(cla(snapshot(), "outbound|9080||reviews.default.svc.cluster.local"))
    assert len(lbs) == 2
    assert all(lb["load_balancing_weight"] == 1 and lb["health_status"] == "HEALTHY" for lb in lbs)


def test_workload_entry_weight_selected_by_a_kubernetes_service() -> None:
    # convertWorkloadEntryToWorkloadInstance: LbWeight = we.Weight; the locality weight sums it.
    snap = snapshot(workload_entry("vm", "{address: 10.1.0.1, labels: {app: reviews}, weight: 5}"))
    groups = cla(snap, "outbound|9080||reviews.default.svc.cluster.local")["endpoints"]
    weights = {addr(lb): lb["load_balancing_weight"] for g in groups for lb in g["lb_endpoints"]}
    assert weights == {"10.1.0.1:9080": 5, "127.7.0.2:9080": 1, "127.7.0.3:9080": 1}
    assert sum(g["load_balancing_weight"] for g in groups) == 7


def test_empty_locality_group_has_no_locality_field() -> None:
    # generate: util.ConvertLocality("") is an empty Locality, one group for the endpoints without one.
    (group,) = cla(snapshot(), "outbound|9080||reviews.default.svc.cluster.local")["endpoints"]
    assert "locality" not in group and group["load_balancing_weight"] == 2


def test_localities_are_sorted_and_grouped() -> None:
    # generate: one LocalityLbEndpoints per locality label, sorted by label.
    se = service_entry(
        "loc",
        """
hosts: [loc.example.org]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: STATIC
endpoints:
- {address: 10.0.0.3, locality: us-west/zone2}
- {address: 10.0.0.1, locality: us-east/zone1/sub1}
- {address: 10.0.0.2, locality: us-west/zone2}
- {address: 10.0.0.4, locality: eu/zone9}
""",
    )
    groups = cla(snapshot(se), "outbound|80||loc.example.org")["endpoints"]
    assert [(g["locality"], g["load_balancing_weight"], len(g["lb_endpoints"])) for g in groups] == [
        ({"region": "eu", "zone": "zone9"}, 1, 1),
        ({"region": "us-east", "zone": "zone1", "sub_zone": "sub1"}, 1, 1),
        ({"region": "us-west", "zone": "zone2"}, 2, 2),
    ]


# --- eds_test.go: TestEDSUnhealthyEndpoints (PILOT_SEND_UNHEALTHY_ENDPOINTS=false, the default) ------

UNHEALTHY_SVC = """
apiVersion: v1
kind: Service
metadata: {name: unhealthy, namespace: default}
spec:
  selector: {app: dns}
  ports: [{name: tcp-dns, port: 53}]
"""


def dns_pod(name: str, ip: str, ready: bool) -> Pod:
    return Pod(name, "default", ip, {"app": "dns"}, workload="dns", ready=ready)


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ({"10.0.0.53": False}, []),  # initial unhealthy endpoint is not sent
        ({"10.0.0.53": False, "10.0.0.54": False}, []),  # additional unhealthy endpoint
        ({"10.0.0.53": True, "10.0.0.54": True}, ["10.0.0.53:53", "10.0.0.54:53"]),  # both healthy
        ({"10.0.0.53": False, "10.0.0.54": True}, ["10.0.0.54:53"]),  # one turns unhealthy
        ({"10.0.0.53": True}, ["10.0.0.53:53"]),  # a healthy endpoint removed
        ({}, []),  # last endpoints removed
    ],
)
def test_eds_unhealthy_endpoints_are_not_sent(ready: dict[str, bool], expected: list[str]) -> None:
    # filterIstioEndpoint: `!SendUnhealthyEndpoints && HealthStatus == UnHealthy` -> filtered out.
    pods = [dns_pod(f"dns-{i}", ip, r) for i, (ip, r) in enumerate(ready.items())]
    snap = snapshot(UNHEALTHY_SVC, pods=pods)
    got = cla(snap, "outbound|53||unhealthy.default.svc.cluster.local")
    assert sorted(addr(lb) for lb in lb_endpoints(got)) == expected
    if not expected:
        # buildEmptyClusterLoadAssignment: only the cluster name (TestEndpointFlipFlops' empty case too).
        assert {k: v for k, v in got.items() if k != "@type"} == {
            "cluster_name": "outbound|53||unhealthy.default.svc.cluster.local"
        }


def test_publish_not_ready_addresses_sends_unready_pods() -> None:
    # Kubernetes marks every selected address ready for publishNotReadyAddresses: istiod sees them healthy.
    svc = UNHEALTHY_SVC.replace("  selector:", "  publishNotReadyAddresses: true\n  selector:")
    snap = snapshot(svc, pods=[dns_pod("dns-0", "10.0.0.53", False)])
    assert addrs(snap, "outbound|53||unhealthy.default.svc.cluster.local") == ["10.0.0.53:53"]


# --- eds_test.go: TestEDSOverlapping, endpoint_builder_test.go: port filtering ---------------------


def test_overlapping_port_numbers_tcp_and_udp() -> None:
    # TestEDSOverlapping: a Service with TCP and UDP on 53 (kube-dns) still has its endpoint on 53.
    svc = """
apiVersion: v1
kind: Service
metadata: {name: overlapping, namespace: default}
spec:
  selector: {app: dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
"""
    snap = snapshot(svc, pods=[dns_pod("dns-0", "10.0.0.53", True)])
    assert "10.0.0.53:53" in addrs(snap, "outbound|53||overlapping.default.svc.cluster.local")


def test_regular_service_filters_endpoints_by_port() -> None:
    # TestBuildClusterLoadAssignment_InferenceServicePortFiltering "regular service filters endpoints by
    # port name": each port's cluster has only the endpoints of that service port (at its targetPort).
    svc = """
apiVersion: v1
kind: Service
metadata: {name: example, namespace: default}
spec:
  selector: {app: example}
  ports:
  - {name: http-80, port: 80}
  - {name: http-8000, port: 8000, targetPort: 9000}
  - {name: http-8001, port: 8001, targetPort: web}
"""
    pod = Pod(
        "example-0", "default", "10.0.0.1", {"app": "example"}, workload="example", named_ports={"web": 7001}
    )
    snap = snapshot(svc, pods=[pod])
    host = "example.default.svc.cluster.local"
    assert addrs(snap, f"outbound|80||{host}") == ["10.0.0.1:80"]
    assert addrs(snap, f"outbound|8000||{host}") == ["10.0.0.1:9000"]
    assert addrs(snap, f"outbound|8001||{host}") == ["10.0.0.1:7001"]


def test_named_target_port_missing_on_the_pod_gives_no_endpoint() -> None:
    # Kubernetes EndpointSlices leave out a pod without the named port; istiod sees no endpoint.
    svc = """
apiVersion: v1
kind: Service
metadata: {name: example, namespace: default}
spec:
  selector: {app: example}
  ports: [{name: http, port: 80, targetPort: web}]
"""
    pods = [
        Pod(
            "example-0",
            "default",
            "10.0.0.1",
            {"app": "example"},
            workload="example",
            named_ports={"web": 7001},
        ),
        Pod("example-1", "default", "10.0.0.2", {"app": "example"}, workload="example"),
    ]
    assert addrs(snapshot(svc, pods=pods), "outbound|80||example.default.svc.cluster.local") == [
        "10.0.0.1:7001"
    ]


# --- endpoint_builder_test.go: TestFilterIstioEndpoint (single network) -------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("1.1.1.1", ["1.1.1.1:80"]),  # "test endpoint with ipv4 address"
        ("2001:1::1", ["2001:1::1:80"]),  # "test endpoint with ipv6 address"
    ],
)
def test_filter_istio_endpoint_by_address_family(address: str, expected: list[str]) -> None:
    se = service_entry(
        "example",
        f"""
hosts: [example.ns.example.org]
ports: [{{number: 80, name: http, protocol: HTTP}}]
resolution: STATIC
endpoints: [{{address: "{address}"}}]
""",
    )
    assert addrs(snapshot(se), "outbound|80||example.ns.example.org") == expected


def test_workload_entry_without_address_is_rejected_in_a_single_network() -> None:
    # "test endpoint without address": istiod keeps an address-less endpoint only to reach it through a
    # network gateway (multi-network); in one network it has nothing to send, and validation rejects it.
    from isthmus.api import loader
    from isthmus.config.store import Store

    with pytest.raises(Exception, match="address is required"):
        Store().apply(loader.load_text(workload_entry("vm", "{labels: {app: reviews}}"), "t.yaml"), "test")


# --- subsets (getSubSetLabels, subsetLabels.SubsetOf(ep.Labels)) -----------------------------------


def test_subset_filters_endpoints_by_labels() -> None:
    snap = snapshot(
        subsets_dr("reviews", "[{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]")
    )
    assert addrs(snap, "outbound|9080|v1|reviews.default.svc.cluster.local") == ["127.7.0.2:9080"]
    assert addrs(snap, "outbound|9080|v2|reviews.default.svc.cluster.local") == ["127.7.0.3:9080"]
    assert addrs(snap, "outbound|9080||reviews.default.svc.cluster.local") == [
        "127.7.0.2:9080",
        "127.7.0.3:9080",
    ]


def test_subset_needs_every_label() -> None:
    # SubsetOf: every subset label must be on the endpoint.
    snap = snapshot(
        subsets_dr(
            "reviews",
            "[{name: both, labels: {version: v1, app: reviews}}, {name: none, labels: {version: v1, tier: x}}]",
        )
    )
    assert addrs(snap, "outbound|9080|both|reviews.default.svc.cluster.local") == ["127.7.0.2:9080"]
    assert addrs(snap, "outbound|9080|none|reviews.default.svc.cluster.local") == []


def test_subset_without_labels_selects_every_endpoint() -> None:
    # getSubSetLabels: a subset with no labels gives nil labels, which every endpoint matches.
    snap = snapshot(subsets_dr("reviews", "[{name: all}]"))
    assert addrs(snap, "outbound|9080|all|reviews.default.svc.cluster.local") == [
        "127.7.0.2:9080",
        "127.7.0.3:9080",
    ]


def test_subset_of_service_entry_endpoints_by_their_labels() -> None:
    se = service_entry(
        "ext",
        """
hosts: [ext.example.org]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: STATIC
endpoints:
- {address: 10.0.0.1, labels: {version: v1}}
- {address: 10.0.0.2, labels: {version: v2}}
- {address: 10.0.0.3}
""",
    )
    snap = snapshot(se, subsets_dr("ext.example.org", "[{name: v1, labels: {version: v1}}]"))
    assert addrs(snap, "outbound|80|v1|ext.example.org") == ["10.0.0.1:80"]
    assert addrs(snap, "outbound|80||ext.example.org") == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]


# --- serviceentry conversion: ports, targetPort, unix addresses, tlsMode -------------------------


def test_service_entry_endpoint_port_priority() -> None:
    # convertEndpoint: "priority level: unixAddress > we.ports > se.port.targetPort > se.port.number".
    se = service_entry(
        "ports",
        """
hosts: [ports.example.org]
ports:
- {number: 80, name: http, protocol: HTTP, targetPort: 8080}
- {number: 90, name: http-alt, protocol: HTTP}
resolution: STATIC
endpoints:
- {address: 10.0.0.1, ports: {http: 7070}}
- {address: 10.0.0.2}
- {address: 10.0.0.3, ports: {http-alt: 9999}}
""",
    )
    snap = snapshot(se)
    assert addrs(snap, "outbound|80||ports.example.org") == [
        "10.0.0.1:7070",
        "10.0.0.2:8080",
        "10.0.0.3:8080",
    ]
    assert addrs(snap, "outbound|90||ports.example.org") == ["10.0.0.1:90", "10.0.0.2:90", "10.0.0.3:9999"]


def test_unix_domain_socket_endpoint_is_a_pipe() -> None:
    # TestEds/UDSEndpoints and convertEndpoint's unix address: the endpoint is a Pipe at the path.
    se = service_entry(
        "uds",
        """
hosts: [localuds.cluster.local]
ports: [{number: 8080, name: http, protocol: HTTP}]
resolution: STATIC
endpoints: [{address: "unix:///var/run/test/socket"}]
""",
    )
    (lb,) = lb_endpoints(cla(snapshot(se), "outbound|8080||localuds.cluster.local"))
    assert lb["endpoint"]["address"] == {"pipe": {"path": "/var/run/test/socket"}}


def test_dns_service_entry_without_endpoints_uses_its_host_at_the_target_port() -> None:
    # convertServiceEntryToInstances hostnameToServiceInstance: address = host, port = targetPort or number;
    # the cluster is STRICT_DNS with the assignment inline (istiod's EDS skips DNS clusters).
    se = service_entry(
        "dns",
        """
hosts: [api.example.com]
ports: [{number: 443, name: tls, protocol: TLS, targetPort: 8443}, {number: 80, name: http, protocol: HTTP}]
resolution: DNS
location: MESH_EXTERNAL
""",
    )
    cs = clusters(snapshot(se), sidecar())
    tls_cluster = cs["outbound|443||api.example.com"]
    assert tls_cluster["type"] == "STRICT_DNS"
    assert [addr(lb) for lb in lb_endpoints(tls_cluster["load_assignment"])] == ["api.example.com:8443"]
    assert [addr(lb) for lb in lb_endpoints(cs["outbound|80||api.example.com"]["load_assignment"])] == [
        "api.example.com:80"
    ]
    # TLSMode disabled for the host endpoint: no tlsMode transport-socket metadata.
    (lb,) = lb_endpoints(tls_cluster["load_assignment"])
    assert "envoy.transport_socket_match" not in lb.get("metadata", {}).get("filter_metadata", {})


def test_dns_round_robin_is_logical_dns_with_every_endpoint_weighted() -> None:
    se = service_entry(
        "rr",
        """
hosts: [rr.example.com]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: DNS_ROUND_ROBIN
endpoints: [{address: a.rr.example.com, weight: 3}]
""",
    )
    c = clusters(snapshot(se), sidecar())["outbound|80||rr.example.com"]
    assert c["type"] == "LOGICAL_DNS"
    (lb,) = lb_endpoints(c["load_assignment"])
    assert addr(lb) == "a.rr.example.com:80" and lb["load_balancing_weight"] == 3


def test_static_service_entry_is_eds() -> None:
    # STATIC resolution: an EDS cluster, endpoints over EDS.
    c = clusters(snapshot(WEIGHTED_SE), sidecar())["outbound|80||weighted.static.svc.cluster.local"]
    assert c["type"] == "EDS" and "load_assignment" not in c


@pytest.mark.parametrize(
    ("spec", "mtls"),
    [
        ("{address: 10.0.0.1, serviceAccount: vm}", True),  # identity -> tlsMode istio
        ("{address: 10.0.0.1}", False),  # no identity -> disabled
        ("{address: 10.0.0.1, serviceAccount: vm, labels: {security.istio.io/tlsMode: disabled}}", False),
        ("{address: 10.0.0.1, labels: {security.istio.io/tlsMode: istio}}", True),  # the label wins
    ],
)
def test_tls_mode_from_workload_entry(spec: str, mtls: bool) -> None:
    # getTLSModeFromWorkloadEntry: the tlsMode label if present, else istio when a serviceAccount is set.
    se = service_entry(
        "vm",
        f"""
hosts: [vm.example.org]
ports: [{{number: 80, name: http, protocol: HTTP}}]
location: MESH_INTERNAL
resolution: STATIC
endpoints: [{spec}]
""",
    )
    (lb,) = lb_endpoints(cla(snapshot(se), "outbound|80||vm.example.org"))
    got = lb.get("metadata", {}).get("filter_metadata", {}).get("envoy.transport_socket_match")
    assert (got == TLS_MATCH["envoy.transport_socket_match"]) is mtls


# --- WorkloadEntry selection ---------------------------------------------------------------------


def test_workload_entry_selected_by_service_entry_port_mapping() -> None:
    # convertWorkloadInstanceToServiceInstance: WorkloadEntry ports by SE port name > targetPort > number.
    docs = (
        workload_entry("vm-1", "{address: 10.2.0.1, labels: {app: vm}, ports: {http: 7000}, weight: 2}"),
        workload_entry("vm-2", "{address: 10.2.0.2, labels: {app: vm}}"),
        workload_entry("other", "{address: 10.2.0.3, labels: {app: other}}"),
        service_entry(
            "vm",
            """
hosts: [vm.example.org]
ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
location: MESH_INTERNAL
resolution: STATIC
workloadSelector: {labels: {app: vm}}
""",
        ),
    )
    lbs = lb_endpoints(cla(snapshot(*docs), "outbound|80||vm.example.org"))
    assert sorted((addr(lb), lb["load_balancing_weight"]) for lb in lbs) == [
        ("10.2.0.1:7000", 2),
        ("10.2.0.2:8080", 1),
    ]


def test_pod_selected_by_service_entry_uses_its_named_container_port() -> None:
    # convertWorkloadInstanceToServiceInstance for a pod: PortMap (named container ports) by the SE port
    # name, else targetPort, else the port number; a pod with a sidecar gets tlsMode istio.
    se = service_entry(
        "podse",
        """
hosts: [podse.example.org]
ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}, {number: 81, name: grpc, protocol: GRPC}]
location: MESH_INTERNAL
resolution: STATIC
workloadSelector: {labels: {app: podse}}
""",
    )
    pods = [
        Pod("podse-0", "default", "10.4.0.1", {"app": "podse"}, workload="podse", named_ports={"http": 9090})
    ]
    snap = snapshot(se, pods=pods)
    assert addrs(snap, "outbound|80||podse.example.org") == ["10.4.0.1:9090"]
    assert addrs(snap, "outbound|81||podse.example.org") == ["10.4.0.1:81"]
    (lb,) = lb_endpoints(cla(snap, "outbound|80||podse.example.org"))
    assert lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}


def test_workload_entry_selected_by_service_entry_in_another_namespace_is_not() -> None:
    # A workloadSelector selects workloads of the ServiceEntry's namespace only.
    docs = (
        workload_entry("vm-1", "{address: 10.2.0.1, labels: {app: vm}}", namespace="other"),
        service_entry(
            "vm",
            """
hosts: [vm.example.org]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: STATIC
workloadSelector: {labels: {app: vm}}
""",
        ),
    )
    assert addrs(snapshot(*docs), "outbound|80||vm.example.org") == []


def test_workload_entry_with_host_name_is_dns_service_entry_only() -> None:
    # convertWorkloadEntryToWorkloadInstance: DNSServiceEntryOnly for a non-IP address: a Kubernetes
    # Service does not get it as an endpoint.
    snap = snapshot(workload_entry("vm", "{address: vm.example.com, labels: {app: reviews}}"))
    assert addrs(snap, "outbound|9080||reviews.default.svc.cluster.local") == [
        "127.7.0.2:9080",
        "127.7.0.3:9080",
    ]


def test_workload_entry_named_target_port_for_kubernetes_service() -> None:
    # The Kubernetes Service's named targetPort is looked up in the WorkloadEntry's ports.
    svc = """
apiVersion: v1
kind: Service
metadata: {name: vmsvc, namespace: default}
spec:
  selector: {app: vmapp}
  ports: [{name: http, port: 80, targetPort: web}, {name: http-num, port: 81, targetPort: 9081}]
"""
    snap = snapshot(
        svc, workload_entry("vm", "{address: 10.3.0.1, labels: {app: vmapp}, ports: {web: 7080}}")
    )
    assert addrs(snap, "outbound|80||vmsvc.default.svc.cluster.local") == ["10.3.0.1:7080"]
    assert addrs(snap, "outbound|81||vmsvc.default.svc.cluster.local") == ["10.3.0.1:9081"]


def test_workload_entry_locality_from_field_or_label() -> None:
    # convertEndpoint: wle.Locality, else the istio-locality label (dots for slashes).
    se = service_entry(
        "loc",
        """
hosts: [loc.example.org]
ports: [{number: 80, name: http, protocol: HTTP}]
resolution: STATIC
endpoints:
- {address: 10.0.0.1, locality: r1/z1}
- {address: 10.0.0.2, labels: {istio-locality: r2.z2}}
""",
    )
    groups = cla(snapshot(se), "outbound|80||loc.example.org")["endpoints"]
    assert [(g["locality"], addr(g["lb_endpoints"][0])) for g in groups] == [
        ({"region": "r1", "zone": "z1"}, "10.0.0.1:80"),
        ({"region": "r2", "zone": "z2"}, "10.0.0.2:80"),
    ]


def test_unknown_cluster_gets_an_empty_assignment() -> None:
    # BuildClusterLoadAssignment: no service (or port) -> buildEmptyClusterLoadAssignment.
    out = generate(
        snapshot(), sidecar(), naming.ENDPOINT_TYPE, {"outbound|1234||reviews.default.svc.cluster.local"}
    )
    assert out.get("outbound|1234||reviews.default.svc.cluster.local", {}).get("endpoints", []) == []


# --- buildEnvoyLbEndpoint / AppendLbEndpointMetadata: the `istio.workload` telemetry metadata ---------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "api", "version": "v1"}, "api-v1;default;api;v1;Kubernetes"),
        # CanonicalService falls back to the workload name; revision "latest" is not sent
        ({"role": "api"}, "api-v1;default;api-v1;;Kubernetes"),
        # the recommended Kubernetes labels come before app/version
        (
            {"app": "a", "app.kubernetes.io/name": "k", "version": "v1", "app.kubernetes.io/version": "2"},
            "api-v1;default;k;2;Kubernetes",
        ),
        # the canonical labels win over both
        (
            {"app": "a", "service.istio.io/canonical-name": "c", "service.istio.io/canonical-revision": "r"},
            "api-v1;default;c;r;Kubernetes",
        ),
        ({"app": "api", "version": "latest"}, "api-v1;default;api;;Kubernetes"),
    ],
)
def test_workload_metadata_canonical_service(labels: dict[str, str], expected: str) -> None:
    svc = """
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  selector: {tier: api}
  ports: [{name: http, port: 80}]
"""
    pod = Pod("api-v1-0", "default", "10.0.0.1", {**labels, "tier": "api"}, workload="api-v1")
    (lb,) = lb_endpoints(cla(snapshot(svc, pods=[pod]), "outbound|80||api.default.svc.cluster.local"))
    assert lb["metadata"]["filter_metadata"]["istio"] == {"workload": expected}


def test_workload_metadata_of_a_service_entry_endpoint_names_no_workload() -> None:
    # convertServiceEntryToInstances converts inline endpoints with an empty configKey: WorkloadName and
    # Namespace are "", and CanonicalService takes what the labels give. A WorkloadEntry it selects keeps
    # its name and namespace.
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.7, labels: {app: ext, version: v2}}, {address: 10.0.0.8}]
"""
    lbs = lb_endpoints(cla(snapshot(se), "outbound|80||ext.example.com"))
    assert [lb["metadata"]["filter_metadata"]["istio"]["workload"] for lb in lbs] == [
        ";;ext;v2;Kubernetes",
        ";;;;Kubernetes",
    ]


# --- serviceentry/conversion_test.go fixtures (TestConvertInstances) -------------------------------


def test_http_static_endpoint_ports_per_service_port() -> None:
    # httpStatic: each endpoint's `ports` by service-port name, else the port number.
    se = service_entry(
        "httpstatic",
        """
hosts: ["*.google.com"]
ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
endpoints:
- {address: 2.2.2.2, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
- {address: 3.3.3.3, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
- {address: 4.4.4.4, ports: {http-port: 1080}, labels: {foo: bar}}
location: MESH_EXTERNAL
resolution: STATIC
""",
    )
    snap = snapshot(se)
    assert addrs(snap, "outbound|80||*.google.com") == ["2.2.2.2:7080", "3.3.3.3:1080", "4.4.4.4:1080"]
    assert addrs(snap, "outbound|8080||*.google.com") == ["2.2.2.2:18080", "3.3.3.3:8080", "4.4.4.4:8080"]


def test_http_dns_endpoint_ports_and_tls_mode() -> None:
    # httpDNS / tcpDNS: DNS endpoints keep their host names, ports by name; the tlsMode label is kept.
    se = service_entry(
        "tcpdns",
        """
hosts: [tcpdns.com]
ports: [{number: 444, name: tcp-444, protocol: tcp}, {number: 80, name: http-port, protocol: http}]
endpoints:
- {address: lon.google.com, labels: {security.istio.io/tlsMode: istio}, ports: {http-port: 7080}}
- {address: in.google.com, labels: {security.istio.io/tlsMode: istio}}
location: MESH_EXTERNAL
resolution: DNS
""",
    )
    cs = clusters(snapshot(se), sidecar())
    tcp = lb_endpoints(cs["outbound|444||tcpdns.com"]["load_assignment"])
    assert [addr(lb) for lb in tcp] == ["in.google.com:444", "lon.google.com:444"]
    assert all(
        lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
        for lb in tcp
    )
    http = lb_endpoints(cs["outbound|80||tcpdns.com"]["load_assignment"])
    assert [addr(lb) for lb in http] == ["in.google.com:80", "lon.google.com:7080"]


def test_dns_target_port() -> None:
    # dnsTargetPort: the DNS entry without endpoints resolves its host at targetPort 8080.
    se = service_entry(
        "dnstargetport",
        """
hosts: [google.com]
ports: [{number: 80, name: http-port, protocol: http, targetPort: 8080}]
location: MESH_EXTERNAL
resolution: DNS
""",
    )
    c = clusters(snapshot(se), sidecar())["outbound|80||google.com"]
    assert [addr(lb) for lb in lb_endpoints(c["load_assignment"])] == ["google.com:8080"]


def test_dns_service_entry_without_endpoints_one_endpoint_per_host() -> None:
    # httpDNSnoEndpoints: one endpoint per host and port, at the host's own name.
    se = service_entry(
        "httpdnsnoendpoints",
        """
hosts: [google.com, www.wikipedia.org]
ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
location: MESH_EXTERNAL
resolution: DNS
""",
    )
    cs = clusters(snapshot(se), sidecar())
    for host in ("google.com", "www.wikipedia.org"):
        for port in (80, 8080):
            got = [addr(lb) for lb in lb_endpoints(cs[f"outbound|{port}||{host}"]["load_assignment"])]
            assert got == [f"{host}:{port}"]


def test_uds_local_endpoint_with_tls_mode() -> None:
    # udsLocal: a unix socket endpoint is a pipe (port 0), tlsMode from its label.
    se = service_entry(
        "udslocal",
        """
hosts: [uds.cluster.local]
ports: [{number: 6553, name: grpc-1, protocol: grpc}]
endpoints: [{address: "unix:///test/sock", labels: {security.istio.io/tlsMode: istio}}]
resolution: STATIC
""",
    )
    (lb,) = lb_endpoints(cla(snapshot(se), "outbound|6553||uds.cluster.local"))
    assert lb["endpoint"]["address"] == {"pipe": {"path": "/test/sock"}}
    assert lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}


def test_selector_dns_service_entry_uses_workload_entry_addresses() -> None:
    # selectorDNS: a DNS ServiceEntry with a workloadSelector has the selected WorkloadEntries' addresses.
    docs = (
        workload_entry("wle", "{address: 2.2.2.2, labels: {app: wle}, serviceAccount: default}"),
        service_entry(
            "selector",
            """
hosts: [selector.com]
ports: [{number: 444, name: tcp-444, protocol: tcp}, {number: 445, name: http-445, protocol: http}]
workloadSelector: {labels: {app: wle}}
resolution: DNS
""",
        ),
    )
    cs = clusters(snapshot(*docs), sidecar())
    for port in (444, 445):
        c = cs[f"outbound|{port}||selector.com"]
        assert [addr(lb) for lb in lb_endpoints(c["load_assignment"])] == [f"2.2.2.2:{port}"]


def test_eds_request_for_a_dns_cluster_is_empty() -> None:
    # TestEDSServiceResolutionUpdate: after a service turns DNS (STRICT_DNS / LOGICAL_DNS, endpoints
    # inline in CDS), an EDS request still naming its cluster gets an empty assignment (findShards skips
    # DNS clusters), never the host-name endpoints an EDS cluster would reject.
    for resolution in ("DNS", "DNS_ROUND_ROBIN"):
        se = service_entry(
            "edsdns",
            f"""
hosts: [edsdns.example.org]
ports: [{{number: 8080, name: http, protocol: HTTP}}]
resolution: {resolution}
endpoints: [{{address: 10.0.0.53}}]
""",
        )
        snap = snapshot(se)
        got = cla(snap, "outbound|8080||edsdns.example.org")
        assert got.get("endpoints", []) == [] and got["cluster_name"] == "outbound|8080||edsdns.example.org"
        # while the cluster itself still carries them inline
        c = clusters(snap, sidecar())["outbound|8080||edsdns.example.org"]
        assert [addr(lb) for lb in lb_endpoints(c["load_assignment"])] == ["10.0.0.53:8080"]


def test_workload_entry_metadata_labels_win_over_spec_labels_for_subsets() -> None:
    # ConvertWorkloadEntry: labels = MergeCopy(spec.labels, metadata.labels), the metadata's winning.
    we = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: default, labels: {version: v2}}
spec: {address: 10.5.0.1, labels: {app: reviews, version: v1}}
"""
    snap = snapshot(
        we, subsets_dr("reviews", "[{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]")
    )
    assert addrs(snap, "outbound|9080|v1|reviews.default.svc.cluster.local") == ["127.7.0.2:9080"]
    assert addrs(snap, "outbound|9080|v2|reviews.default.svc.cluster.local") == [
        "10.5.0.1:9080",
        "127.7.0.3:9080",
    ]
