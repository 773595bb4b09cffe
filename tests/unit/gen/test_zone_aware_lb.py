"""Zone-aware load balancing (DestinationRule zoneAwareLbSetting), as istiod generates it (istio/istio#60765;
the expectations of tests/integration/pilot/common/loadbalancer.go assertZoneAwareConfig): the upstream
cluster's common_lb_config.zone_aware_lb_config, its endpoints partitioned by region (priority 0 the
proxy's region), the self-discovery `local_cluster` in the bootstrap and its EDS answer (the proxy's own
service, kept to its region, workload and pod-template-hash). All of it only for a sidecar started with
ISTIO_META_ENABLE_SELF_DISCOVERY=true.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from gen_helpers import sidecar, snapshot
from google.protobuf import json_format

from isthmus.agent.bootstrap import build_bootstrap
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming, zone_aware
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.generator import MeshGenerator

HOST = "zone-aware.example.com"
CLUSTER = f"outbound|80||{HOST}"
HERE = "region/zone/subzone"
LOCAL = zone_aware.SELF_DISCOVERY_CLUSTER


def _entry(*endpoints: tuple[str, str]) -> str:
    eps = "\n".join(f"  - {{address: {a}, locality: {json.dumps(loc)}}}" for a, loc in endpoints)
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zone-aware-svc, namespace: default}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{eps}
"""


def _dr(setting: str = "{enabled: true, minClusterSize: 1}", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: zone-aware-dr, namespace: default}}
spec:
  host: {HOST}
  trafficPolicy:
    connectionPool: {{tcp: {{connectTimeout: 250ms}}}}
    loadBalancer: {{zoneAwareLbSetting: {setting}}}
    {extra}
"""


def _proxy(self_discovery: bool = True, where: str = HERE, labels: dict[str, str] | None = None) -> Proxy:
    base = sidecar(labels=labels)
    meta = {zone_aware.SELF_DISCOVERY_KEY: "true"} if self_discovery else {}
    return dataclasses.replace(base, locality=where, metadata=meta)


def _cluster(snap, proxy: Proxy) -> p.cluster.Cluster:
    out = MeshGenerator().generate(snap, proxy, naming.CLUSTER_TYPE, None)
    return p.cluster.Cluster.FromString(out[CLUSTER].value)


def _priorities(snap, proxy: Proxy) -> dict[str, int]:
    out = MeshGenerator().generate(snap, proxy, naming.ENDPOINT_TYPE, frozenset({CLUSTER}))
    cla = p.endpoint.ClusterLoadAssignment.FromString(out[CLUSTER].value)
    return {
        lb.endpoint.address.socket_address.address: group.priority
        for group in cla.endpoints
        for lb in group.lb_endpoints
    }


def test_cluster_gets_zone_aware_lb_config_with_min_cluster_size() -> None:
    snap = snapshot(_entry(("10.0.0.1", HERE), ("10.0.0.2", "region/zone2/subzone")), _dr())
    common = _cluster(snap, _proxy()).common_lb_config
    assert common.WhichOneof("locality_config_specifier") == "zone_aware_lb_config"
    za = common.zone_aware_lb_config
    assert za.min_cluster_size.value == 1
    assert not za.HasField("routing_enabled")  # Envoy's default, 100%


def test_min_cluster_size_unset_leaves_envoys_default() -> None:
    snap = snapshot(_entry(("10.0.0.1", HERE)), _dr("{enabled: true}"))
    za = _cluster(snap, _proxy()).common_lb_config.zone_aware_lb_config
    assert za.ListFields() == []


def test_enabled_false_sets_routing_enabled_to_zero_and_keeps_endpoints_flat() -> None:
    snap = snapshot(
        _entry(("10.0.0.1", HERE), ("10.0.0.2", "notregion/notzone/notsubzone")), _dr("{enabled: false}")
    )
    za = _cluster(snap, _proxy()).common_lb_config.zone_aware_lb_config
    assert za.HasField("routing_enabled") and za.routing_enabled.value == 0
    assert _priorities(snap, _proxy()) == {"10.0.0.1": 0, "10.0.0.2": 0}


def test_without_self_discovery_the_setting_does_not_apply() -> None:
    """No local cluster, no zone-aware routing: the cluster and its endpoints are as without the setting."""
    snap = snapshot(_entry(("10.0.0.1", HERE), ("10.0.0.2", "notregion/notzone/notsubzone")), _dr())
    proxy = _proxy(self_discovery=False)
    assert _cluster(snap, proxy).common_lb_config.WhichOneof("locality_config_specifier") is None
    assert _priorities(snap, proxy) == {"10.0.0.1": 0, "10.0.0.2": 0}


@pytest.mark.parametrize(
    ("endpoints", "want"),
    [
        # OneSourceEndpointTwoDestinationLocalitiesSameRegionOverflows: one region, one tier (Envoy
        # balances its zones).
        ([("10.0.0.1", HERE), ("10.0.0.2", "region/zone2/subzone")], {"10.0.0.1": 0, "10.0.0.2": 0}),
        # CrossRegionEndpointIgnoredWhileSameRegionHealthy.
        ([("10.0.0.1", HERE), ("10.0.0.2", "notregion/notzone/notsubzone")], {"10.0.0.1": 0, "10.0.0.2": 1}),
        # CrossRegionEndpointIgnoredWhenSameRegionDifferentZoneAvailable.
        (
            [("10.0.0.1", "region/zone2/subzone"), ("10.0.0.2", "notregion/notzone/notsubzone")],
            {"10.0.0.1": 0, "10.0.0.2": 1},
        ),
        # CrossRegionEndpointUsedWhenSameRegionAbsent: priorities stay contiguous from 0.
        ([("10.0.0.2", "notregion/notzone/notsubzone")], {"10.0.0.2": 0}),
    ],
    ids=["same-region", "cross-region", "cross-region-other-zone", "only-cross-region"],
)
def test_endpoints_are_partitioned_by_region(endpoints: list[tuple[str, str]], want: dict[str, int]) -> None:
    """Without outlier detection too: the regional partitioning always applies."""
    snap = snapshot(_entry(*endpoints), _dr())
    assert _priorities(snap, _proxy()) == want


def test_failover_orders_the_other_regions() -> None:
    snap = snapshot(
        _entry(("10.0.0.1", "us-east/a"), ("10.0.0.2", "ap-south/a"), ("10.0.0.3", "eu-west/a")),
        _dr(
            "{enabled: true, failover: [{from: us-east, to: eu-west}]}",
            "outlierDetection: {consecutive5xxErrors: 1}",
        ),
    )
    assert _priorities(snap, _proxy(where="us-east/b")) == {"10.0.0.1": 0, "10.0.0.3": 1, "10.0.0.2": 2}


def test_failover_priority_label_tiers_come_first() -> None:
    """failoverPriority's label tiers, the regional tiers under each."""
    entry = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zone-aware-svc, namespace: default}}
spec:
  hosts: [{HOST}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.0.0.1, locality: {HERE}, labels: {{version: v1}}}}
  - {{address: 10.0.0.2, locality: other/zone, labels: {{version: v1}}}}
  - {{address: 10.0.0.3, locality: {HERE}, labels: {{version: v2}}}}
"""
    snap = snapshot(
        entry,
        _dr("{enabled: true, failoverPriority: [version]}", "outlierDetection: {consecutive5xxErrors: 1}"),
    )
    proxy = _proxy(labels={"app": "web", "version": "v1"})
    assert _priorities(snap, proxy) == {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 2}


def test_zone_aware_replaces_the_mesh_locality_setting() -> None:
    mesh = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh, namespace: istio-system}
spec:
  localityLbSetting: {distribute: [{from: "region/*", to: {"region/zone2/*": 100}}]}
"""
    snap = snapshot(_entry(("10.0.0.1", HERE), ("10.0.0.2", "region/zone2/subzone")), _dr(), mesh)
    common = _cluster(snap, _proxy()).common_lb_config
    assert common.WhichOneof("locality_config_specifier") == "zone_aware_lb_config"
    assert _priorities(snap, _proxy()) == {"10.0.0.1": 0, "10.0.0.2": 0}


# --- the self-discovery local cluster ------------------------------------------------------------

WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def _pod(name: str, ip: str, where: str, workload: str = "web", **labels: str) -> Pod:
    return Pod(
        name,
        "default",
        ip,
        {"app": "web", "istio-locality": where.replace("/", "."), **labels},
        workload=workload,
        app_ports={8080: 40000},
    )


def _local_members(snap, proxy: Proxy) -> dict[str, str]:
    out = MeshGenerator().generate(snap, proxy, naming.ENDPOINT_TYPE, frozenset({CLUSTER, LOCAL}))
    cla = p.endpoint.ClusterLoadAssignment.FromString(out[LOCAL].value)
    assert cla.cluster_name == LOCAL
    return {
        lb.endpoint.address.socket_address.address: f"{g.locality.region}/{g.locality.zone}/{g.locality.sub_zone}"
        for g in cla.endpoints
        for lb in g.lb_endpoints
    }


def test_local_cluster_holds_the_proxys_workload_in_its_region() -> None:
    pods = [
        _pod("web-0", "127.7.0.5", HERE),
        _pod("web-1", "127.7.0.6", "region/zone2/subzone"),
        _pod("web-2", "127.7.0.7", "otherregion/zone/subzone"),  # another region: left out
        _pod("web-canary-0", "127.7.0.8", HERE, workload="web-canary"),  # another workload: left out
    ]
    # A WorkloadEntry of the same workload (service.istio.io/workload-name), as Istio's test adds them.
    we = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: extra
  namespace: default
  labels: {service.istio.io/workload-name: web}
spec: {address: 10.1.0.1, locality: region/zone3/subzone, labels: {app: web}}
"""
    snap = snapshot(WEB, we, _entry(("10.0.0.1", HERE)), _dr(), pods=pods, services=False)
    proxy = dataclasses.replace(_proxy(labels=dict(pods[0].labels)), workload="web")
    assert _local_members(snap, proxy) == {
        "127.7.0.5": HERE,
        "127.7.0.6": "region/zone2/subzone",
        "10.1.0.1": "region/zone3/subzone",
    }


def test_local_cluster_keeps_the_proxys_rollout() -> None:
    pods = [
        _pod("web-0", "127.7.0.5", HERE, **{"pod-template-hash": "abc"}),
        _pod("web-1", "127.7.0.6", HERE, **{"pod-template-hash": "old"}),
    ]
    snap = snapshot(WEB, _entry(("10.0.0.1", HERE)), _dr(), pods=pods, services=False)
    proxy = dataclasses.replace(_proxy(labels=dict(pods[0].labels)), workload="web")
    assert _local_members(snap, proxy) == {"127.7.0.5": HERE}


def test_local_cluster_is_empty_without_a_service_and_absent_without_self_discovery() -> None:
    snap = snapshot(
        _entry(("10.0.0.1", HERE)), _dr(), pods=[_pod("web-0", "127.7.0.5", HERE)], services=False
    )
    proxy = dataclasses.replace(_proxy(), workload="web")
    assert _local_members(snap, proxy) == {}
    out = MeshGenerator().generate(
        snap, _proxy(self_discovery=False), naming.ENDPOINT_TYPE, frozenset({LOCAL})
    )
    assert LOCAL not in out


def test_bootstrap_has_the_static_local_cluster_only_with_self_discovery() -> None:
    boot = build_bootstrap(_proxy(), xds_address=("127.1.0.1", 15010))
    assert boot["cluster_manager"]["local_cluster_name"] == LOCAL
    (local,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == LOCAL]
    assert local["type"] == "EDS"
    assert local["eds_cluster_config"]["service_name"] == LOCAL
    assert "ads" in local["eds_cluster_config"]["eds_config"]
    assert boot["node"]["locality"] == {"region": "region", "zone": "zone", "sub_zone": "subzone"}
    # The cluster is valid Envoy config as far as the proto goes.
    json_format.ParseDict(local, p.cluster.Cluster())
    plain = build_bootstrap(_proxy(self_discovery=False), xds_address=("127.1.0.1", 15010))
    assert "local_cluster_name" not in plain["cluster_manager"]
    assert LOCAL not in {c["name"] for c in plain["static_resources"]["clusters"]}
    gateway = dataclasses.replace(_proxy(), kind="gateway")
    assert (
        "local_cluster_name"
        not in build_bootstrap(gateway, xds_address=("127.1.0.1", 15010))["cluster_manager"]
    )


def test_proxies_with_and_without_self_discovery_do_not_share_the_cluster() -> None:
    """Clusters are shared across scopes per snapshot: a proxy without self-discovery building the
    cluster first must not hand its zone-aware-less cluster (or flat endpoints) to one with it."""
    snap = snapshot(_entry(("10.0.0.1", HERE), ("10.0.0.2", "notregion/notzone/notsubzone")), _dr())
    plain = dataclasses.replace(_proxy(self_discovery=False), ip="127.7.0.9", instance="other-0")
    assert _cluster(snap, plain).common_lb_config.WhichOneof("locality_config_specifier") is None
    assert _priorities(snap, plain) == {"10.0.0.1": 0, "10.0.0.2": 0}
    assert (
        _cluster(snap, _proxy()).common_lb_config.WhichOneof("locality_config_specifier")
        == "zone_aware_lb_config"
    )
    assert _priorities(snap, _proxy()) == {"10.0.0.1": 0, "10.0.0.2": 1}
