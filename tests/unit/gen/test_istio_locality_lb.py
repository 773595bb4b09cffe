"""Locality load balancing, ported from istiod's pilot/pkg/networking/core/loadbalancer/loadbalancer_test.go.

istiod's cases apply ApplyLocalityLoadBalancer to hand-built assignments; here the same localities and
labels are ServiceEntry endpoints, and the priorities and weights are read from the ClusterLoadAssignment
the generator sends a proxy in locality region1/zone1/subzone1. Two differences of input, not of rule:
endpoints of one locality are one LocalityLbEndpoints (istiod's EDS groups them so too; its test builds
duplicates by hand), and every endpoint is in the one cluster "Kubernetes", so the test's
`topology.istio.io/cluster` label is a plain `cluster` label here.
"""

from __future__ import annotations

import dataclasses
import json

from gen_helpers import sidecar, snapshot

from isthmus.agent.bootstrap import build_bootstrap
from isthmus.api.networking import LocalityLoadBalancerSetting
from isthmus.model.destination_rules import EffectivePolicy
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Endpoint, Pod
from isthmus.xds.gen import endpoints, locality, naming
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.generator import MeshGenerator
from isthmus.xds.gen.locality import Group

HOST = "test.example.org"
CLUSTER = f"outbound|8080||{HOST}"
HERE = "region1/zone1/subzone1"
OUTLIER_DR = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: acme, namespace: default}}
spec:
  host: {HOST}
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1}}
    %s
"""


def _service_entry(*endpoints: tuple[str, str, dict[str, str]], resolution: str = "STATIC") -> str:
    eps = "\n".join(
        f"  - {{address: {addr}, locality: {json.dumps(loc)}, labels: {json.dumps(labels)}}}"
        for addr, loc, labels in endpoints
    )
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: test, namespace: default}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints:
{eps}
"""


def _mesh(setting: str) -> str:
    return f"""
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh, namespace: istio-system}}
spec:
  localityLbSetting: {setting}
"""


def _proxy(where: str = HERE, labels: dict[str, str] | None = None) -> Proxy:
    return dataclasses.replace(
        sidecar(labels=labels if labels is not None else {"app": "web"}), locality=where
    )


def _assignment(snap, proxy: Proxy) -> p.endpoint.ClusterLoadAssignment:
    out = MeshGenerator().generate(snap, proxy, naming.ENDPOINT_TYPE, frozenset({CLUSTER}))
    return p.endpoint.ClusterLoadAssignment.FromString(out[CLUSTER].value)


def _loc(group) -> str:
    return "/".join((group.locality.region, group.locality.zone, group.locality.sub_zone)).rstrip("/")


def _priorities(cla) -> dict[str, int]:
    return {_loc(g): g.priority for g in cla.endpoints}


def _by_address(cla) -> list[tuple[str, int, int]]:
    """(addresses, priority, weight) of each LocalityLbEndpoints, in order."""
    return [
        (",".join(lb.endpoint.address.socket_address.address for lb in g.lb_endpoints), g.priority, g.load_balancing_weight.value)
        for g in cla.endpoints
    ]  # fmt: skip


# buildFakeCluster's localities (its two region1/zone1/subzone1 groups are one here).
FAKE = (
    ("10.0.0.1", "region1/zone1/subzone1", {}),
    ("10.0.0.2", "region1/zone1/subzone1", {}),
    ("10.0.0.3", "region1/zone1/subzone2", {}),
    ("10.0.0.4", "region1/zone1/subzone3", {}),
    ("10.0.0.5", "region1/zone2", {}),
    ("10.0.0.6", "region2", {}),
    ("10.0.0.7", "region3", {}),
)


def test_distribution_between_subzones() -> None:
    mesh = _mesh(
        '{distribute: [{from: "region1/zone1/subzone1", to: {"region1/zone1/subzone1": 80, '
        '"region1/zone1/subzone2": 15, "region1/zone1/subzone3": 5}}]}'
    )
    snap = snapshot(_service_entry(*FAKE), OUTLIER_DR % "", mesh)
    cla = _assignment(snap, _proxy())
    # istiod: [40, 40, 15, 5, 0, 0, 0] over its seven groups, the first two sharing 80.
    weights = {_loc(g): (g.load_balancing_weight.value, len(g.lb_endpoints)) for g in cla.endpoints}
    assert weights == {
        "region1/zone1/subzone1": (80, 2),
        "region1/zone1/subzone2": (15, 1),
        "region1/zone1/subzone3": (5, 1),
        # Localities no `to` covers keep their weight and lose their endpoints.
        "region1/zone2": (1, 0),
        "region2": (1, 0),
        "region3": (1, 0),
    }
    assert all(g.priority == 0 for g in cla.endpoints)
    # Distribute applies without outlier detection too, and only from a matching locality.
    no_outlier = snapshot(_service_entry(*FAKE), mesh)
    assert _assignment(no_outlier, _proxy()) == cla
    elsewhere = _assignment(snap, _proxy("region2"))
    assert all(g.load_balancing_weight.value == len(g.lb_endpoints) for g in elsewhere.endpoints)


def test_distribute_shares_a_wildcard_weight_in_proportion_to_locality_weights() -> None:
    eps = (("10.0.0.1", "us-east/a", {}), ("10.0.0.2", "us-east/a", {}), ("10.0.0.3", "us-east/b", {}))
    eps += (("10.0.0.4", "us-west/a", {}),)
    dr = 'loadBalancer: {localityLbSetting: {distribute: [{from: "us-east/*", to: {"us-east/*": 90, "us-west/*": 10}}]}}'
    cla = _assignment(snapshot(_service_entry(*eps), OUTLIER_DR % dr), _proxy("us-east/a"))
    # 90 * 2/3 = 60 and 90 * 1/3 = 30 (rounded up, as istiod's math.Ceil).
    assert [(_loc(g), g.load_balancing_weight.value) for g in cla.endpoints] == [
        ("us-east/a", 60),
        ("us-east/b", 30),
        ("us-west/a", 10),
    ]


def test_failover_all_priorities() -> None:
    snap = snapshot(
        _service_entry(*FAKE), OUTLIER_DR % "", _mesh("{failover: [{from: region1, to: region2}]}")
    )
    assert _priorities(_assignment(snap, _proxy())) == {
        "region1/zone1/subzone1": 0,
        "region1/zone1/subzone2": 1,
        "region1/zone1/subzone3": 1,
        "region1/zone2": 2,
        "region2": 3,
        "region3": 4,  # not the failover target of region1
    }


def test_failover_priorities_with_gaps() -> None:
    eps = (("10.0.0.1", "region1/zone1/subzone2", {}), ("10.0.0.2", "region2/zone1/subzone2", {}))
    eps += (("10.0.0.3", "region2/zone1/subzone2", {}),)
    snap = snapshot(
        _service_entry(*eps), OUTLIER_DR % "", _mesh("{failover: [{from: region1, to: region2}]}")
    )
    assert _priorities(_assignment(snap, _proxy())) == {
        "region1/zone1/subzone2": 0,
        "region2/zone1/subzone2": 1,
    }


def test_failover_priorities_with_some_nil_localities() -> None:
    eps = (
        ("10.0.0.1", "region1/zone1/subzone2", {}),
        ("10.0.0.2", "", {}),
        ("10.0.0.3", "region2/zone1/subzone2", {}),
    )
    snap = snapshot(
        _service_entry(*eps), OUTLIER_DR % "", _mesh("{failover: [{from: region1, to: region2}]}")
    )
    cla = _assignment(snap, _proxy())
    assert {_loc(g) if g.HasField("locality") else None: g.priority for g in cla.endpoints} == {
        "region1/zone1/subzone2": 0,
        None: 2,
        "region2/zone1/subzone2": 1,
    }


def test_the_default_mesh_setting_fails_over_by_locality_only_with_outlier_detection() -> None:
    with_outlier = snapshot(_service_entry(*FAKE), OUTLIER_DR % "")
    assert _priorities(_assignment(with_outlier, _proxy())) == {
        "region1/zone1/subzone1": 0,
        "region1/zone1/subzone2": 1,
        "region1/zone1/subzone3": 1,
        "region1/zone2": 2,
        "region2": 3,
        "region3": 3,
    }
    without = snapshot(_service_entry(*FAKE))
    cla = _assignment(without, _proxy())
    assert set(_priorities(cla).values()) == {0}
    # Nothing locality-dependent: the proxy gets the object every proxy of the snapshot shares.
    assert (
        MeshGenerator().generate(without, _proxy(), naming.ENDPOINT_TYPE, frozenset({CLUSTER}))[CLUSTER]
        is MeshGenerator().generate(without, _proxy(""), naming.ENDPOINT_TYPE, frozenset({CLUSTER}))[CLUSTER]
    )


def test_failover_with_locality_lb_disabled() -> None:
    for docs in (
        (OUTLIER_DR % "loadBalancer: {localityLbSetting: {enabled: false}}",),
        (OUTLIER_DR % "", _mesh("{enabled: false}")),
    ):
        cla = _assignment(snapshot(_service_entry(*FAKE), *docs), _proxy())
        assert set(_priorities(cla).values()) == {0}
    # The DestinationRule's setting wins over the mesh's, enabled or not.
    enabled = OUTLIER_DR % "loadBalancer: {localityLbSetting: {enabled: true}}"
    cla = _assignment(snapshot(_service_entry(*FAKE), enabled, _mesh("{enabled: false}")), _proxy())
    assert max(_priorities(cla).values()) == 3


def test_get_locality_lb_setting() -> None:
    """TestGetLocalityLbSetting (trafficDistribution: test_field_coverage_gen.py)."""
    setting = LocalityLoadBalancerSetting
    on, off = setting(enabled=True), setting(enabled=False)
    failover = setting.model_validate({"failover": [{"from": "a", "to": "b"}]})

    def policy(dr: LocalityLoadBalancerSetting | None) -> EffectivePolicy:
        lb = None if dr is None else type("LB", (), {"locality_lb_setting": dr})()
        return EffectivePolicy(load_balancer=lb)

    cases = [
        ("all disabled", None, None, None),
        ("mesh only", setting(), None, setting()),
        ("dr only", None, setting(), setting()),
        ("dr only override", None, on, on),
        ("dr and mesh", setting(), failover, failover),
        ("mesh disabled", off, None, None),
        ("dr disabled", on, off, None),
        ("dr enabled override mesh disabled", off, on, on),
    ]
    for name, mesh, dr, want in cases:
        assert locality.effective_setting(mesh, policy(dr)) == want, name


# buildWrappedLocalityLbEndpoints: the labels of the endpoints of three localities.
LABELLED = (
    ("1.1.1.1", "region1/zone1/subzone1", {"topology.istio.io/network": "n1", "cluster": "c1"}),
    (
        "2.2.2.2",
        "region1/zone1/subzone1",
        {"key": "value", "topology.istio.io/network": "n2", "cluster": "c2"},
    ),
    (
        "3.3.3.3",
        "region2/zone2/subzone2",
        {"key": "value", "topology.istio.io/network": "n1", "cluster": "c3"},
    ),
    (
        "4.4.4.4",
        "region2/zone2/subzone2",
        {"key": "value", "topology.istio.io/network": "n2", "cluster": "c4"},
    ),
    (
        "1.2.3.4",
        "region3/zone3/subzone3",
        {"key": "value", "topology.istio.io/network": "n1", "cluster": "c1"},
    ),
    (
        "2.3.4.5",
        "region3/zone3/subzone3",
        {"key": "value", "topology.istio.io/network": "n2", "cluster": "c2"},
    ),
)


def _failover_priority(
    priority: list[str], proxy_labels: dict[str, str], failover: str = ""
) -> list[tuple[str, int, int]]:
    setting = json.dumps(
        {"failoverPriority": priority, **({"failover": json.loads(failover)} if failover else {})}
    )
    snap = snapshot(_service_entry(*LABELLED), OUTLIER_DR % "", _mesh(setting))
    return _by_address(_assignment(snap, _proxy(labels=proxy_labels)))


def test_failover_priority_match_none_label() -> None:
    got = _failover_priority(
        ["topology.istio.io/network", "cluster"], {"topology.istio.io/network": "test", "cluster": "test"}
    )
    assert got == [("1.1.1.1,2.2.2.2", 0, 2), ("3.3.3.3,4.4.4.4", 0, 2), ("1.2.3.4,2.3.4.5", 0, 2)]


def test_failover_priority_match_network_label() -> None:
    got = _failover_priority(
        ["topology.istio.io/network", "cluster"], {"topology.istio.io/network": "n1", "cluster": "test"}
    )
    assert got == [
        ("1.1.1.1", 0, 1), ("2.2.2.2", 1, 1), ("3.3.3.3", 0, 1), ("4.4.4.4", 1, 1), ("1.2.3.4", 0, 1), ("2.3.4.5", 1, 1),
    ]  # fmt: skip


def test_failover_priority_not_match_the_first_n_label() -> None:
    got = _failover_priority(
        ["topology.istio.io/network", "cluster"], {"topology.istio.io/network": "test", "cluster": "c1"}
    )
    assert got == [("1.1.1.1,2.2.2.2", 0, 2), ("3.3.3.3,4.4.4.4", 0, 2), ("1.2.3.4,2.3.4.5", 0, 2)]


def test_failover_priority_match_all_labels() -> None:
    labels = {"key": "value", "topology.istio.io/network": "n2", "cluster": "c2"}
    got = _failover_priority(["key", "topology.istio.io/network", "cluster"], labels)
    assert got == [
        ("2.2.2.2", 0, 1), ("1.1.1.1", 3, 1), ("4.4.4.4", 1, 1), ("3.3.3.3", 2, 1), ("2.3.4.5", 0, 1), ("1.2.3.4", 2, 1),
    ]  # fmt: skip


def test_failover_priority_as_per_the_overridden_value() -> None:
    got = _failover_priority(
        ["topology.istio.io/network=n1"], {"topology.istio.io/network": "n2", "cluster": "test"}
    )
    assert got == [
        ("1.1.1.1", 0, 1), ("2.2.2.2", 1, 1), ("3.3.3.3", 0, 1), ("4.4.4.4", 1, 1), ("1.2.3.4", 0, 1), ("2.3.4.5", 1, 1),
    ]  # fmt: skip


def test_failover_priority_no_endpoints_with_overridden_value() -> None:
    got = _failover_priority(
        ["topology.istio.io/network=n3"], {"topology.istio.io/network": "n1", "cluster": "test"}
    )
    assert got == [("1.1.1.1,2.2.2.2", 0, 2), ("3.3.3.3,4.4.4.4", 0, 2), ("1.2.3.4,2.3.4.5", 0, 2)]


def test_failover_priority_with_failover() -> None:
    eps = (
        ("1.1.1.1", "region1/zone1/subzone1", {"topology.istio.io/network": "n1", "cluster": "c1"}),
        (
            "2.2.2.2",
            "region1/zone2/subzone2",
            {"key": "value", "topology.istio.io/network": "n2", "cluster": "c2"},
        ),
        (
            "3.3.3.3",
            "region2/zone2/subzone2",
            {"key": "value", "topology.istio.io/network": "n1", "cluster": "c3"},
        ),
        (
            "4.4.4.4",
            "region3/zone3/subzone3",
            {"key": "value", "topology.istio.io/network": "n2", "cluster": "c4"},
        ),
        (
            "5.5.5.5",
            "region2/zone2/subzone2",
            {"key": "value", "topology.istio.io/network": "n2", "cluster": "c2"},
        ),
        (
            "6.6.6.6",
            "region3/zone3/subzone3",
            {"key": "value", "topology.istio.io/network": "n1", "cluster": "c2"},
        ),
    )
    setting = json.dumps(
        {
            "failoverPriority": ["topology.istio.io/network", "cluster"],
            "failover": [{"from": "region1", "to": "region2"}],
        }
    )
    snap = snapshot(_service_entry(*eps), OUTLIER_DR % "", _mesh(setting))
    got = _by_address(_assignment(snap, _proxy(labels={"topology.istio.io/network": "n2", "cluster": "c2"})))
    assert {addr: priority for addr, priority, _ in got} == {
        "1.1.1.1": 3,  # does not match failoverPriority but matches the client's locality
        "2.2.2.2": 0,  # matches the labels, same region
        "3.3.3.3": 4,  # matches neither, but in the failover region of the client's
        "4.4.4.4": 2,  # matches the first label of failoverPriority but not the second
        "5.5.5.5": 1,  # matches the labels, another locality
        "6.6.6.6": 5,  # matches nothing
    }


def test_failover_priority_on_topology_labels_from_localities() -> None:
    """Endpoints and proxies carry their locality as topology labels (istio's AugmentLabels)."""
    eps = (("10.0.0.1", "us-east/a", {}), ("10.0.0.2", "us-east/b", {}), ("10.0.0.3", "us-west/a", {}))
    dr = "loadBalancer: {localityLbSetting: {failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]}}"
    cla = _assignment(snapshot(_service_entry(*eps), OUTLIER_DR % dr), _proxy("us-east/b"))
    assert _priorities(cla) == {"us-east/b": 0, "us-east/a": 1, "us-west/a": 2}


def test_clusters_enable_locality_weighted_lb_only_when_the_setting_needs_it() -> None:
    def common_lb(*docs: str) -> p.cluster.Cluster.CommonLbConfig:
        out = MeshGenerator().generate(
            snapshot(_service_entry(*FAKE), *docs), _proxy(), naming.CLUSTER_TYPE, None
        )
        return p.cluster.Cluster.FromString(out[CLUSTER].value).common_lb_config

    assert not common_lb().HasField("locality_weighted_lb_config")
    assert not common_lb(OUTLIER_DR % "").HasField("locality_weighted_lb_config")  # the default failover
    explicit = "loadBalancer: {localityLbSetting: {failover: [{from: region1, to: region2}]}}"
    assert common_lb(OUTLIER_DR % explicit).HasField("locality_weighted_lb_config")
    distribute = _mesh('{distribute: [{from: "*", to: {"region1/*": 100}}]}')
    assert common_lb(distribute).HasField("locality_weighted_lb_config")


def test_dns_clusters_rank_their_inline_endpoints_by_the_proxy_locality() -> None:
    eps = (("a.example.org", "region1/zone1/subzone1", {}), ("b.example.org", "region2", {}))
    snap = snapshot(_service_entry(*eps, resolution="DNS"), OUTLIER_DR % "")

    def inline(proxy: Proxy) -> dict[str, int]:
        out = MeshGenerator().generate(snap, proxy, naming.CLUSTER_TYPE, None)
        return _priorities(p.cluster.Cluster.FromString(out[CLUSTER].value).load_assignment)

    assert inline(_proxy()) == {"region1/zone1/subzone1": 0, "region2": 1}
    assert inline(_proxy("region2")) == {"region1/zone1/subzone1": 1, "region2": 0}


def test_eds_is_shared_per_scope_and_locality() -> None:
    snap = snapshot(_service_entry(*FAKE), OUTLIER_DR % "")

    def eds(proxy: Proxy) -> object:
        return MeshGenerator().generate(snap, proxy, naming.ENDPOINT_TYPE, frozenset({CLUSTER}))[CLUSTER]

    def twin(proxy: Proxy) -> Proxy:
        return dataclasses.replace(proxy, instance="web-1", ip="127.7.0.9")

    assert eds(_proxy("")) is eds(twin(_proxy("")))
    assert eds(_proxy()) is eds(twin(_proxy()))
    assert eds(_proxy()) is not eds(_proxy("region2"))
    # Localities that rank the endpoints alike share the assignment.
    assert eds(_proxy("region1/zone1/subzone1")) is eds(_proxy("region1/zone1/subzone1", {"app": "other"}))


def test_pod_and_proxy_localities_come_from_labels() -> None:
    topo = {"app": "web", "topology.kubernetes.io/region": "us-east", "topology.kubernetes.io/zone": "zone1"}
    pod = Pod("web-0", "default", "127.7.0.5", topo, workload="web", app_ports={8080: 40005})
    proxy = Proxy.of_pod(pod)
    assert proxy.locality == "us-east/zone1"
    labelled = Pod("web-1", "default", "127.7.0.6", {**topo, "istio-locality": "eu.z9.s1"}, workload="web")
    assert Proxy.of_pod(labelled).locality == "eu/z9/s1"  # the istio-locality label wins
    # The node carries it; from the node, labels win over its locality field (istiod's setTopologyLabels).
    node = p.base.Node(id=proxy.id)
    node.metadata.update(proxy.node_metadata())
    node.locality.region, node.locality.zone = "elsewhere", "z"
    assert Proxy.from_envoy_node(node).locality == "us-east/zone1"
    bare = dataclasses.replace(proxy, labels={"app": "web"}, locality="elsewhere/z")
    bootstrap = build_bootstrap(bare, xds_address=("127.0.0.1", 15010))
    assert bootstrap["node"]["locality"] == {"region": "elsewhere", "zone": "z"}
    node = p.base.Node(id=bare.id)
    node.metadata.update(bare.node_metadata())
    node.locality.region, node.locality.zone = "elsewhere", "z"
    assert Proxy.from_envoy_node(node).locality == "elsewhere/z"
    # Endpoints of pods get the same locality.
    snap = snapshot(pods=[pod])
    web = snap.registry.service("web.default.svc.cluster.local")
    assert [e.locality for e in snap.registry.endpoints(web, 80)] == ["us-east/zone1"]


def test_wire_encoded_priorities_and_drained_groups_equal_the_api_built_message() -> None:
    snap = snapshot()
    a = Endpoint("10.0.0.1", 80, "default", {"app": "a"}, workload="a", locality="r1/z1/s1")
    b = Endpoint("10.0.0.2", 80, "default", {"app": "b"}, workload="b", weight=3)
    c = Endpoint("10.0.0.3", 80, "default", {"app": "c"}, workload="c", locality="r2")
    groups = [
        Group("", (b,), 3, priority=2),
        Group("r1/z1/s1", (a,), 200, priority=300),
        Group("r2", (c,), 1, drained=True),
    ]
    raw = endpoints._ld(endpoints._T_CLA_NAME, CLUSTER.encode()) + endpoints._groups_bytes(snap, groups)
    got = p.endpoint.ClusterLoadAssignment.FromString(raw)

    want = p.endpoint.ClusterLoadAssignment(cluster_name=CLUSTER)
    for g in groups:
        group = want.endpoints.add()
        if g.locality:
            group.locality.CopyFrom(endpoints._locality(g.locality))
        if not g.drained:
            for ep in g.endpoints:
                lb = group.lb_endpoints.add()
                lb.CopyFrom(_lb_endpoint(snap, ep))
        group.load_balancing_weight.value = g.weight
        group.priority = g.priority
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)


def _lb_endpoint(snap, ep: Endpoint) -> p.endpoint_components.LbEndpoint:
    """The LbEndpoint as the (already API-checked) single-group encoding gives it."""
    raw = endpoints._ld(endpoints._T_CLA_NAME, b"x") + endpoints._lb_endpoints_bytes(snap, [ep])
    return p.endpoint.ClusterLoadAssignment.FromString(raw).endpoints[0].lb_endpoints[0]
