"""Parity with the rest of istiod's registry tests: `pilot/pkg/serviceregistry/**` and `pkg/config/kube`.

Inventory (istio/istio test file: Test function -> here / elsewhere / n/a, with the reason). "registry" is
test_istio_registry_parity.py, "controller" test_istio_controller_parity.py, "eds" and "locality" are
tests/unit/gen/test_istio_endpoint_parity.py and test_istio_locality_lb.py.

pkg/config/kube/conversion_test.go: TestConvertProtocol -> registry.
kube/conversion_test.go: TestConvertProtocol, TestServiceConversionWithExportToAnnotation,
  TestExternalServiceConversion, TestExternalClusterLocalServiceConversion -> registry; TestServiceConversion
  (hostname, ports, selector -> registry; its service-account annotations -> here, FIXED),
  TestServiceConversionWithEmptyServiceAccountsAnnotation -> here; TestSecureNamingSAN -> here;
  TestLBServiceConversion: n/a (status.loadBalancer ingress addresses feed multi-network gateways only;
  Isthmus reads no Service status); TestInternalTrafficPolicyServiceConversion: n/a (NodeLocal filters
  endpoints to the proxy's node; a local mesh is one node, so every endpoint is node-local);
  TestProbesToPortsConversion (old versions): n/a (removed from Istio; no probes in Isthmus Workloads).
kube/controller/controller_test.go -> controller (its docstring lists what is skipped and why), but for
  TestController_GetIstioServiceAccounts (and the annotated accounts of TestGetProxyServiceInstances) -> here.
kube/controller/controller_utils_test.go: TestServiceSelectorCache_GetPodServiceMemberships -> here;
  TestServiceSelectorCache_Update: n/a (selector cache). endpoint_test.go TestEndpointsEqual: n/a (Endpoints
  objects compared to drop no-op events; Isthmus has none).
kube/controller/endpoint_builder_test.go: TestNewEndpointBuilderTopologyLabels -> here, FIXED (subsets
  select by the topology labels istiod adds); TestNewEndpointBuilderFromMetadataTopologyLabels: n/a (a
  proxy's own metadata labels: Isthmus proxies are its pods, whose labels are the registry's).
kube/controller/endpointslice_test.go: TestGetLocalityFromTopology -> here; TestEndpointSliceFromMCSShouldBeIgnored:
  n/a (MCS); TestEndpointSliceCache: n/a (slice bookkeeping, no observable effect: endpoints are rebuilt
  from pods).
kube/controller/pod_test.go: TestPodCache, TestHostNetworkPod, TestIPReuse, TestPodCacheEvents: n/a (informer
  caches keyed by pod IP; Isthmus gives each pod its own address and builds the registry from its pods,
  readiness -> test_publish_not_ready.py and controller).
kube/controller/namespacecontroller_test.go (root-cert ConfigMaps), network_test.go and multicluster_test.go
  (meshNetworks, remote clusters), serviceexportcache_test.go / autoserviceexportcontroller_test.go (MCS),
  nodeuntainter_test.go, leak_test.go, fuzz_test.go, bench_test.go, ambient*/ (ambient mode): n/a.
serviceentry/conversion_test.go: TestConvertService, TestConvertInstances, TestConvertWorkloadEntryToServiceInstances,
  TestConvertWorkloadEntryToWorkloadInstance -> registry and eds; their "augment label(s)" cases -> here, FIXED.
serviceentry/controller_test.go (servicediscovery_test.go in older versions) -> controller.
serviceentry/store_test.go: TestServiceInstancesForDnsRoundRobinLB -> here, FIXED; TestServiceInstancesStore,
  TestServiceStore: n/a (the store's own maps; what they feed is checked through the registry above).
serviceentry/util_test.go: TestGetWorkloadServiceEntries -> here; TestCompareServiceEntries: n/a (diff of
  selected entry names, push bookkeeping).
serviceentry/leak_test.go, aggregate/*, util/workloadinstances/index_test.go (index of WorkloadEntries by IP for
  proxy lookup: WorkloadEntries are not proxies Isthmus runs), util/xdsfake: n/a.

Fixed in Isthmus for these cases:
- a Kubernetes Service's `alpha.istio.io/kubernetes-serviceaccounts` and `alpha.istio.io/canonical-serviceaccounts`
  annotations are its accounts too (SANs its clients verify), as istiod's ConvertService;
- a DestinationRule subset selects endpoints by the topology labels istiod's AugmentLabels adds (region,
  zone, subzone, `topology.istio.io/cluster`, network), for pods, WorkloadEntries and inline endpoints;
  a network label the workload carries wins over its network, as in AugmentLabels;
- a DNS_ROUND_ROBIN host keeps one endpoint per namespace and port, the first entry's (istiod's store skips
  the rest: a LOGICAL_DNS cluster takes a single endpoint, which Envoy enforces).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from isthmus.api.loader import load_text
from isthmus.registry.build import Registry, build_registry, locality_from_labels
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.tls import service_identities

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, generate, sidecar, snapshot


def registry(*docs: str, pods: list[Pod] | None = None) -> Registry:
    text = "\n---\n".join(textwrap.dedent(d) for d in docs)
    return build_registry(load_text(text, "test.yaml"), pods or [])


def eps(reg: Registry, host: str, namespace: str) -> list[tuple[int, str, int]]:
    svc = reg.service(host, namespace)
    assert svc is not None, f"no service {host} in {namespace}"
    return sorted((p.port, e.address, e.port) for p in svc.ports for e in reg.endpoints(svc, p.port))


def cla_addresses(snap: Any, cluster: str) -> list[str]:
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster}).get(cluster, {})
    return sorted(
        f"{lb['endpoint']['address']['socket_address']['address']}:"
        f"{lb['endpoint']['address']['socket_address']['port_value']}"
        for group in cla.get("endpoints", [])
        for lb in group["lb_endpoints"]
    )


# --- kube/conversion_test.go: TestServiceConversion's service accounts, TestSecureNamingSAN -----------


def annotated_service(annotations: str) -> str:
    return f"""
    apiVersion: v1
    kind: Service
    metadata:
      name: service1
      namespace: default
      annotations: {annotations}
    spec:
      clusterIP: 10.0.0.1
      selector: {{foo: bar}}
      ports: [{{name: http, port: 8080, protocol: TCP}}, {{name: https, port: 443, protocol: TCP}}]
    """


SA_C = "spiffe://accounts.google.com/serviceaccountC@cloudservices.gserviceaccount.com"
SA_D = "spiffe://accounts.google.com/serviceaccountD@developer.gserviceaccount.com"


def test_service_conversion_service_accounts_from_annotations() -> None:
    """TestServiceConversion: the kubernetes-serviceaccounts names become SPIFFE ids of the Service's
    namespace, the canonical-serviceaccounts ids are kept as written; other annotations do not count.
    They are the SANs a client of the service verifies (istiod's initServiceAccounts adds a service's
    own ServiceAccounts to its endpoints')."""
    snap = snapshot(
        annotated_service(
            "{alpha.istio.io/kubernetes-serviceaccounts: 'serviceaccountA,serviceaccountB', "
            f"alpha.istio.io/canonical-serviceaccounts: '{SA_C},{SA_D}', other/annotation: test}}"
        ),
        services=False,
        pods=[],
    )
    svc = snap.registry.service("service1.default.svc.cluster.local")
    assert svc is not None
    assert service_identities(snap, svc) == [
        SA_C,
        SA_D,
        "spiffe://cluster.local/ns/default/sa/serviceaccountA",
        "spiffe://cluster.local/ns/default/sa/serviceaccountB",
    ]


@pytest.mark.parametrize("annotations", ["{}", "{alpha.istio.io/kubernetes-serviceaccounts: ''}"])
def test_service_conversion_with_empty_service_accounts_annotation(annotations: str) -> None:
    """TestServiceConversionWithEmptyServiceAccountsAnnotation: no annotation (or an empty one), no accounts."""
    snap = snapshot(annotated_service(annotations), services=False, pods=[])
    svc = snap.registry.service("service1.default.svc.cluster.local")
    assert svc is not None
    assert service_identities(snap, svc) == []


def test_service_accounts_annotation_joins_the_endpoints_accounts() -> None:
    """The annotated accounts add to those of the selected pods (TestSecureNamingSAN: a pod's identity is
    spiffe://<trust domain>/ns/<namespace>/sa/<service account>)."""
    pod = Pod("p1", "anything", "127.7.0.9", {"foo": "bar"}, workload="p", service_account="foo")
    snap = snapshot(
        annotated_service("{alpha.istio.io/kubernetes-serviceaccounts: extra}").replace(
            "namespace: default", "namespace: anything"
        ),
        services=False,
        pods=[pod],
    )
    svc = snap.registry.service("service1.anything.svc.cluster.local")
    assert svc is not None
    assert service_identities(snap, svc) == [
        "spiffe://cluster.local/ns/anything/sa/extra",
        "spiffe://cluster.local/ns/anything/sa/foo",
    ]


# --- serviceentry/store_test.go: TestServiceInstancesForDnsRoundRobinLB ---------------------------------


def dns_rr(name: str, namespace: str, address: str, ports: str) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: {name}, namespace: {namespace}}}
    spec:
      hosts: [example.com]
      ports: {ports}
      resolution: DNS_ROUND_ROBIN
      endpoints: [{{address: {address}}}]
    """


TWO_PORTS = "[{number: 444, name: http-444, protocol: http}, {number: 445, name: http-445, protocol: http}]"
ONE_PORT = "[{number: 444, name: http-444, protocol: http}]"


def test_service_instances_for_dns_round_robin_lb() -> None:
    """TestServiceInstancesForDnsRoundRobinLB: a second DNS_ROUND_ROBIN entry for the same host in the
    same namespace adds no endpoint (Envoy's LOGICAL_DNS cluster takes a single one); the same entry in
    another namespace keeps its own."""
    reg = registry(
        dns_rr("dns-round-robin-1", "dns", "1.1.1.1", TWO_PORTS),
        dns_rr("dns-round-robin-1", "other", "1.1.1.1", TWO_PORTS),
        dns_rr("dns-round-robin-2", "dns", "2.2.2.2", ONE_PORT),
    )
    assert eps(reg, "example.com", "dns") == [(444, "1.1.1.1", 444), (445, "1.1.1.1", 445)]
    assert eps(reg, "example.com", "other") == [(444, "1.1.1.1", 444), (445, "1.1.1.1", 445)]


def test_dns_round_robin_cluster_has_a_single_endpoint() -> None:
    """What the store's rule protects: the LOGICAL_DNS cluster a sidecar gets has one endpoint, the
    first entry's: the oldest, ties by name (istiod's full sync adds entries in sortConfigByCreationTime
    order), whatever order they are listed in their file."""
    snap = snapshot(
        dns_rr("dns-round-robin-2", "default", "two.example.org", ONE_PORT),
        dns_rr("dns-round-robin-1", "default", "one.example.org", TWO_PORTS),
        services=False,
        pods=[],
    )
    cluster = clusters(snap, sidecar())["outbound|444||example.com"]
    assert cluster["type"] == "LOGICAL_DNS"
    lbs = [lb for g in cluster["load_assignment"]["endpoints"] for lb in g["lb_endpoints"]]
    assert [lb["endpoint"]["address"]["socket_address"]["address"] for lb in lbs] == ["one.example.org"]


# --- serviceentry/util_test.go: TestGetWorkloadServiceEntries ---------------------------------------------


def selecting_entry(name: str, host: str, app: str) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: {name}, namespace: default}}
    spec:
      hosts: ['{host}']
      ports:
      - {{number: 80, name: http-number, protocol: http}}
      - {{number: 8080, name: http2-number, protocol: http2}}
      resolution: STATIC
      workloadSelector: {{labels: {{app: {app}}}}}
    """


def test_get_workload_service_entries() -> None:
    """TestGetWorkloadServiceEntries: a WorkloadEntry labelled app=foo, version=v1 is selected by se-1
    (*.google.com) and se-3 (www.wikipedia.org), not se-2 (app=bar); it is reached on its named ports."""
    reg = registry(
        selecting_entry("se-1", "*.google.com", "foo"),
        selecting_entry("se-2", "www.bing.com", "bar"),
        selecting_entry("se-3", "www.wikipedia.org", "foo"),
        """
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: wle, namespace: default}
        spec:
          address: 2.3.4.5
          labels: {app: foo, version: v1}
          ports: {http-number: 8081, http2-number: 8088}
        """,
    )
    selected = [(80, "2.3.4.5", 8081), (8080, "2.3.4.5", 8088)]
    assert eps(reg, "*.google.com", "default") == selected
    assert eps(reg, "www.wikipedia.org", "default") == selected
    assert eps(reg, "www.bing.com", "default") == []


# --- endpointslice_test.go: TestGetLocalityFromTopology ----------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "want"),
    [
        ({"topology.kubernetes.io/region": "region", "topology.kubernetes.io/zone": "zone"}, "region/zone"),
        (
            {
                "topology.kubernetes.io/region": "region",
                "topology.kubernetes.io/zone": "zone",
                "topology.istio.io/subzone": "subzone",
            },
            "region/zone/subzone",
        ),
        ({"topology.kubernetes.io/region": "region"}, "region"),
    ],
    ids=["all standard kubernetes labels", "standard and Istio custom labels", "missing zone"],
)
def test_get_locality_from_topology(topology: dict[str, str], want: str) -> None:
    """TestGetLocalityFromTopology (a local pod's own labels stand for its node's topology)."""
    assert locality_from_labels(topology) == want


# --- endpoint_builder_test.go TestNewEndpointBuilderTopologyLabels; serviceentry/conversion_test.go's
# "augment label(s)" cases: endpoint labels carry topology labels, which DestinationRule subsets select by.


def subsets(host: str, subsets_yaml: str, namespace: str = "default") -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: topo, namespace: {namespace}}}
    spec:
      host: {host}
      subsets:
{textwrap.indent(textwrap.dedent(subsets_yaml).strip(), " " * 6)}
    """


POD_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: topo, namespace: default}
spec:
  selector: {app: topo}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

TOPO_PODS = [
    Pod("a", "default", "127.7.0.21", {"app": "topo", "istio-locality": "myregion.myzone"}, workload="a"),
    Pod(
        "b",
        "default",
        "127.7.0.22",
        {
            "app": "topo",
            "istio-locality": "myregion.myzone.mysubzone",
            "topology.istio.io/network": "mynetwork",
        },
        workload="b",
    ),
    Pod("c", "default", "127.7.0.23", {"app": "topo"}, workload="c"),
]


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ("{topology.kubernetes.io/region: myregion}", ["127.7.0.21:8080", "127.7.0.22:8080"]),
        (
            "{topology.kubernetes.io/region: myregion, topology.kubernetes.io/zone: myzone}",
            ["127.7.0.21:8080", "127.7.0.22:8080"],
        ),
        ("{topology.istio.io/subzone: mysubzone}", ["127.7.0.22:8080"]),
        ("{topology.istio.io/network: mynetwork}", ["127.7.0.22:8080"]),
        # Every endpoint is in istiod's default cluster.
        (
            "{topology.istio.io/cluster: Kubernetes}",
            ["127.7.0.21:8080", "127.7.0.22:8080", "127.7.0.23:8080"],
        ),
        ("{topology.istio.io/cluster: other}", []),
        ("{topology.kubernetes.io/region: elsewhere}", []),
        ("{app: topo, topology.kubernetes.io/zone: myzone}", ["127.7.0.21:8080", "127.7.0.22:8080"]),
    ],
)
def test_pod_endpoint_topology_labels_select_subsets(labels: str, want: list[str]) -> None:
    """TestNewEndpointBuilderTopologyLabels: a pod's endpoint labels are its labels plus region, zone,
    subzone (from its locality), cluster and network, so a subset selects by them."""
    snap = snapshot(
        POD_SERVICE,
        subsets("topo.default.svc.cluster.local", f"- {{name: s, labels: {labels}}}"),
        services=False,
        pods=TOPO_PODS,
    )
    assert cla_addresses(snap, "outbound|80|s|topo.default.svc.cluster.local") == want


WLE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: selector, namespace: default}
spec:
  hosts: [selector.com]
  ports: [{number: 444, name: tcp-444, protocol: tcp}, {number: 445, name: http-445, protocol: http}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: wle}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: augmented, namespace: default}
spec:
  address: 1.1.1.1
  labels: {app: wle}
  locality: region1/zone1/subzone1
  network: network1
  serviceAccount: default
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: plain, namespace: default}
spec:
  address: 2.2.2.2
  labels: {app: wle, security.istio.io/tlsMode: disabled}
"""


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        (
            "{topology.kubernetes.io/region: region1, topology.kubernetes.io/zone: zone1, "
            "topology.istio.io/subzone: subzone1, topology.istio.io/network: network1}",
            ["1.1.1.1:445"],
        ),
        ("{topology.istio.io/cluster: Kubernetes, app: wle}", ["1.1.1.1:445", "2.2.2.2:445"]),
        ("{topology.istio.io/subzone: zone1}", []),
    ],
)
def test_workload_entry_topology_labels_select_subsets(labels: str, want: list[str]) -> None:
    """TestConvertWorkloadEntryToServiceInstances "augment label" and TestConvertWorkloadEntryToWorkloadInstance
    "augment labels": a WorkloadEntry's endpoint labels get region, zone, subzone, network and cluster."""
    snap = snapshot(
        WLE_ENTRY, subsets("selector.com", f"- {{name: s, labels: {labels}}}"), services=False, pods=[]
    )
    assert cla_addresses(snap, "outbound|445|s|selector.com") == want


def test_inline_endpoint_topology_labels_select_subsets() -> None:
    """convertServiceEntryToInstances: inline endpoints are converted as WorkloadEntries (convertEndpoint,
    AugmentLabels), so their locality label selects a subset too."""
    snap = snapshot(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: static, namespace: default}
        spec:
          hosts: [static.example.com]
          ports: [{number: 80, name: http, protocol: http}]
          resolution: STATIC
          endpoints:
          - {address: 10.0.0.1, labels: {istio-locality: r1.z1}}
          - {address: 10.0.0.2, locality: r2/z2}
        """,
        subsets(
            "static.example.com",
            "- {name: z1, labels: {topology.kubernetes.io/zone: z1}}\n- {name: r2, labels: {topology.kubernetes.io/region: r2}}",
        ),
        services=False,
        pods=[],
    )
    assert cla_addresses(snap, "outbound|80|z1|static.example.com") == ["10.0.0.1:80"]
    assert cla_addresses(snap, "outbound|80|r2|static.example.com") == ["10.0.0.2:80"]


def test_dns_host_endpoint_has_no_topology_labels() -> None:
    """convertServiceEntryToInstances: a DNS entry without endpoints resolves its host with an endpoint of
    nil labels, so a subset by cluster label has no endpoint, and no cluster (an inline endpoint of a DNS
    entry has the label)."""
    snap = snapshot(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: dns, namespace: default}
        spec:
          hosts: [dns.example.com]
          ports: [{number: 80, name: http, protocol: http}]
          resolution: DNS
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: dns-ep, namespace: default}
        spec:
          hosts: [dns-ep.example.com]
          ports: [{number: 80, name: http, protocol: http}]
          resolution: DNS
          endpoints: [{address: backend.example.org}]
        """,
        subsets("dns.example.com", "- {name: c, labels: {topology.istio.io/cluster: Kubernetes}}"),
        subsets("dns-ep.example.com", "- {name: c, labels: {topology.istio.io/cluster: Kubernetes}}").replace(
            "name: topo", "name: topo-ep"
        ),
        services=False,
        pods=[],
    )
    out = clusters(snap, sidecar())

    def inline(name: str) -> list[str]:
        groups = out[name].get("load_assignment", {}).get("endpoints", [])
        return [
            lb["endpoint"]["address"]["socket_address"]["address"] for g in groups for lb in g["lb_endpoints"]
        ]

    assert inline("outbound|80||dns.example.com") == ["dns.example.com"]
    # No endpoint: istiod's buildSubsetCluster builds no DNS cluster without one.
    assert "outbound|80|c|dns.example.com" not in out
    assert inline("outbound|80|c|dns-ep.example.com") == ["backend.example.org"]


# --- kube/controller/controller_test.go: TestController_GetIstioServiceAccounts ----------------------------


def test_controller_get_istio_service_accounts() -> None:
    """TestController_GetIstioServiceAccounts (trust domain company.com): svc1's accounts are its
    annotated ones plus those of the pod it selects (acct2), not of the pods it does not select; svc2
    selects nothing and has none. Checked on what a client verifies: the SANs of the auto-mTLS cluster."""
    pods = [
        Pod("pod1", "nsa", "127.7.0.31", {"app": "test-app"}, workload="pod1", service_account="acct1"),
        Pod("pod2", "nsa", "127.7.0.32", {"app": "prod-app"}, workload="pod2", service_account="acct2"),
        Pod("pod3", "nsb", "127.7.0.33", {"app": "prod-app"}, workload="pod3", service_account="acct3"),
    ]

    def service(name: str, selector: str, annotations: str = "{}") -> str:
        return f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: nsa, annotations: {annotations}}}
        spec:
          clusterIP: 10.0.0.1
          selector: {selector}
          ports: [{{name: tcp-port, port: 8080}}]
        """

    snap = snapshot(
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: MeshConfig
        metadata: {name: mesh}
        spec: {trustDomain: company.com}
        """,
        service(
            "svc1",
            "{app: prod-app}",
            "{alpha.istio.io/kubernetes-serviceaccounts: acct4, "
            "alpha.istio.io/canonical-serviceaccounts: acctvm@gserviceaccount.com}",
        ),
        service("svc2", "{app: staging-app}"),
        services=False,
        pods=pods,
    )
    svc1 = snap.registry.service("svc1.nsa.svc.cluster.local")
    svc2 = snap.registry.service("svc2.nsa.svc.cluster.local")
    assert svc1 is not None and svc2 is not None
    want = [
        "acctvm@gserviceaccount.com",
        "spiffe://company.com/ns/nsa/sa/acct2",
        "spiffe://company.com/ns/nsa/sa/acct4",
    ]
    assert service_identities(snap, svc1) == want
    assert service_identities(snap, svc2) == []
    cluster = clusters(snap, sidecar())["outbound|8080||svc1.nsa.svc.cluster.local"]
    ctx = cluster["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    vc = ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert sorted(m["matcher"]["exact"] for m in vc["match_typed_subject_alt_names"]) == want


# --- kube/controller/controller_utils_test.go: TestServiceSelectorCache_GetPodServiceMemberships -----------


def test_service_selector_cache_get_pod_service_memberships() -> None:
    """TestServiceSelectorCache_GetPodServiceMemberships: service-i selects app=test-i, so pod i (i < 3)
    belongs to service-i alone and pods 3 and 4 to none (Registry.services_selecting)."""
    docs = [
        f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: service-{i}, namespace: test}}
        spec:
          selector: {{app: test-{i}}}
          ports: [{{name: http, port: 80}}]
        """
        for i in range(3)
    ]
    pods = [
        Pod(f"test-pod-{i}", "test", f"127.7.0.{40 + i}", {"app": f"test-{i}", "label": f"label-{i}"})
        for i in range(5)
    ]
    reg = registry(*docs, pods=pods)
    got = [sorted(f"{s.namespace}/{s.name}" for s in reg.services_selecting(p)) for p in pods]
    assert got == [["test/service-0"], ["test/service-1"], ["test/service-2"], [], []]
