"""Istio's RunZoneAwareLBTests (tests/integration/pilot/common/loadbalancer.go), re-expressed against a
real Isthmus mesh: DestinationRule zoneAwareLbSetting, Envoy zone-aware routing.

As in Istio: the caller `zone-aware-caller` is in locality region/zone/subzone and is started with
ISTIO_META_ENABLE_SELF_DISCOVERY=true (here through a ProxyConfig selecting it, Istio sets it in the pod's
proxy.istio.io/config annotation), so its bootstrap has the static `local_cluster`. Each case applies:
- the caller's own service (`local-svc`), whose endpoints are the source zones Envoy compares against:
  Istio makes it a ServiceEntry selecting WorkloadEntries, one of them at the caller's address (istiod
  finds a proxy's services by its IP). An Isthmus proxy's services are those that select its pod, so
  here the ServiceEntry selects the caller's labels: the caller pod itself is the region/zone/subzone
  member, and a WorkloadEntry labelled `service.istio.io/workload-name: zone-aware-caller` (as Istio's
  are) at b's address adds a region/zone2/subzone member where a case has two source zones;
- the destination ServiceEntry (`zone-aware-svc`) whose endpoints are b and c (WorkloadEntries at their
  addresses, with the case's localities), and the DestinationRule.
Then, as assertZoneAwareConfig: `local_cluster` is a static cluster with the case's number of hosts, the
destination cluster has common_lb_config.zone_aware_lb_config and its hosts the expected priorities
(0 in the caller's region, 1 elsewhere); then the traffic split is checked.

The two cases with zone-aware disabled (no zoneAwareLbSetting) are in test_istio_pilot_more_cases.py.
Istio's fixed 10.99.99.99 (an endpoint that never answers) is an unused address of the mesh's block.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import MeshProcess, applied, wait_for

pytestmark = pytest.mark.e2e

LOCAL = "region/zone/subzone"
ZONE2 = "region/zone2/subzone"
ZONE3 = "region/zone3/subzone"
ZONE4 = "region/zone4/subzone"
REMOTE = "notregion/notzone/notsubzone"
LOCAL_CLUSTER = "local_cluster"
SEND = 60

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: zone-aware-caller, labels: {app: zone-aware-caller, istio-locality: region.zone.subzone}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: self-discovery}
spec:
  selector: {matchLabels: {app: zone-aware-caller}}
  environmentVariables: {ISTIO_META_ENABLE_SELF_DISCOVERY: "true"}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b, labels: {app: b}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: c, labels: {app: c}}
spec: {ports: [8080], command: [isthmus, echo]}
"""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-zone-aware"), MESH) as m:
        yield m


def ip_of(mesh: MeshProcess, workload: str) -> str:
    return mesh.instance(workload)["ip"]


def unused_ip(mesh: MeshProcess) -> str:
    return str(ipaddress.ip_network(mesh.subnet).broadcast_address - 1)


def _admin(mesh: MeshProcess, path: str) -> Any:
    p = mesh.proxy("zone-aware-caller")
    with _NO_PROXY.open(f"http://{p['ip']}:{p['adminPort']}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _config(
    case: int,
    local: list[tuple[str, str]],
    dest: list[tuple[str, str]],
    *,
    min_cluster_size: int = 1,
    outlier: bool = False,
) -> str:
    """loadbalancer.go's zoneAwareConfig. `local`: extra members of the caller's service (address,
    locality) besides the caller pod itself; `dest`: the destination's endpoints."""
    docs = [
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-svc}}
spec:
  hosts: ["local-case-{case}.example.com"]
  ports: [{{name: http, number: 80, protocol: HTTP, targetPort: 8080}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: zone-aware-caller}}}}
""",
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zone-aware-svc}}
spec:
  hosts: ["zone-aware-case-{case}.example.com"]
  ports: [{{name: http, number: 80, protocol: HTTP, targetPort: 8080}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: zone-aware-backend}}}}
""",
        f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: zone-aware-dr}}
spec:
  host: zone-aware-case-{case}.example.com
  trafficPolicy:
    connectionPool: {{tcp: {{connectTimeout: 250ms}}}}
    {"outlierDetection: {interval: 1s, baseEjectionTime: 10m, maxEjectionPercent: 100}" if outlier else ""}
    loadBalancer: {{zoneAwareLbSetting: {{enabled: true, minClusterSize: {min_cluster_size}}}}}
""",
    ]
    for i, (address, where) in enumerate(local):
        docs.append(f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: zone-aware-local-we-{i}
  labels: {{service.istio.io/workload-name: zone-aware-caller}}
spec: {{address: {address}, locality: {where}, labels: {{app: zone-aware-caller}}}}
""")
    for i, (address, where) in enumerate(dest):
        docs.append(f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: zone-aware-we-{i}}}
spec: {{address: {address}, locality: {where}, labels: {{app: zone-aware-backend}}}}
""")
    return "\n---\n".join(docs)


def _expected_priorities(dest: list[tuple[str, str]]) -> dict[str, int]:
    """loadbalancer.go expectedDestinationHostPriorities: 0 in the caller's region, 1 elsewhere, made
    contiguous from 0."""
    raw = {address: 0 if where.split("/")[0] == "region" else 1 for address, where in dest}
    shift = min(raw.values())
    return {address: p - shift for address, p in raw.items()}


def _assert_zone_aware_config(
    mesh: MeshProcess, case: int, local_hosts: int, dest: list[tuple[str, str]]
) -> None:
    """loadbalancer.go assertZoneAwareConfig (bounded polling, as Istio's retry)."""
    remote = f"outbound|80||zone-aware-case-{case}.example.com"

    def config() -> bool | None:
        dump = _admin(mesh, "/config_dump")
        section = next(c for c in dump["configs"] if c["@type"].endswith("ClustersConfigDump"))
        static = {c["cluster"]["name"] for c in section.get("static_clusters", [])}
        dynamic = {c["cluster"]["name"]: c["cluster"] for c in section.get("dynamic_active_clusters", [])}
        assert LOCAL_CLUSTER in static, "no static local_cluster: self-discovery did not reach the bootstrap"
        cluster = dynamic.get(remote)
        if cluster is None:
            return None
        assert "zone_aware_lb_config" in cluster.get("common_lb_config", {}), cluster.get("common_lb_config")
        return True

    wait_for("the zone-aware destination cluster", config, timeout=30)
    want = _expected_priorities(dest)

    def hosts() -> dict[str, Any] | None:
        statuses = {s["name"]: s for s in _admin(mesh, "/clusters?format=json")["cluster_statuses"]}
        local = statuses.get(LOCAL_CLUSTER, {}).get("host_statuses", [])
        got = {
            h["address"]["socket_address"]["address"]: h.get("priority", 0)
            for h in statuses.get(remote, {}).get("host_statuses", [])
        }
        if len(local) != local_hosts or got != want:
            return None
        return got

    wait_for(f"{local_hosts} local_cluster hosts and destination priorities {want}", hosts, timeout=30)


def _served(mesh: MeshProcess, case: int, n: int = SEND) -> dict[str, int]:
    result = mesh.load("zone-aware-caller", f"http://zone-aware-case-{case}.example.com/", n, concurrency=4)
    assert result.codes == {"200": n}, (result.codes, result.errors)
    return result.served_by


def _run(
    mesh: MeshProcess,
    case: int,
    local: list[tuple[str, str]],
    dest: list[tuple[str, str]],
    expected: str | None,
    **kwargs: Any,
) -> None:
    """One case: `expected` names the workload that gets all traffic, None for an even b/c split."""
    with applied(mesh, _config(case, local, dest, **kwargs)):
        _assert_zone_aware_config(mesh, case, 1 + len(local), dest)
        split = _served(mesh, case)
        if expected is not None:
            assert split == {expected: SEND}, split
        else:
            assert set(split) == {"b", "c"} and min(split.values()) > SEND // 5, split


@pytest.fixture(scope="module")
def addrs(mesh: MeshProcess) -> dict[str, str]:
    return {"b": ip_of(mesh, "b"), "c": ip_of(mesh, "c")}


def test_one_source_endpoint_one_destination_endpoint_same_locality(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """OneSourceEndpointOneDestinationEndpointSameLocality."""
    _run(mesh, 0, [], [(addrs["b"], LOCAL)], "b")


def test_one_source_endpoint_two_destination_localities_same_region_overflows(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """OneSourceEndpointTwoDestinationLocalitiesSameRegionOverflows: the caller's zone holds all of the
    source but half of the destination, so Envoy keeps half local and spills the rest."""
    _run(mesh, 1, [], [(addrs["b"], LOCAL), (addrs["c"], ZONE2)], None)


def test_two_source_zones_two_destination_endpoints_matching_source_zones(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """TwoSourceZonesTwoDestinationEndpointsMatchingSourceZones: source and destination spread alike,
    so all traffic stays in the caller's zone."""
    _run(mesh, 2, [(addrs["b"], ZONE2)], [(addrs["b"], LOCAL), (addrs["c"], ZONE2)], "b")


def test_high_min_cluster_size_disables_zone_aware_routing(mesh: MeshProcess, addrs: dict[str, str]) -> None:
    """HighMinClusterSizeDisablesZoneAwareRouting."""
    _run(
        mesh, 3, [(addrs["b"], ZONE2)], [(addrs["b"], LOCAL), (addrs["c"], ZONE2)], None, min_cluster_size=10
    )


def test_two_source_zones_two_destination_endpoints_different_source_zones(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """TwoSourceZonesTwoDestinationEndpointsDifferentSourceZones: no destination in the caller's zone."""
    _run(mesh, 4, [(addrs["b"], ZONE2)], [(addrs["b"], ZONE3), (addrs["c"], ZONE4)], None)


def test_cross_region_endpoint_ignored_while_same_region_healthy(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """CrossRegionEndpointIgnoredWhileSameRegionHealthy."""
    _run(mesh, 5, [], [(addrs["b"], LOCAL), (addrs["c"], REMOTE)], "b")


def test_cross_region_endpoint_ignored_when_same_region_different_zone_available(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """CrossRegionEndpointIgnoredWhenSameRegionDifferentZoneAvailable."""
    _run(mesh, 6, [], [(addrs["b"], ZONE2), (addrs["c"], REMOTE)], "b")


def test_cross_region_endpoint_used_when_same_region_absent(mesh: MeshProcess, addrs: dict[str, str]) -> None:
    """CrossRegionEndpointUsedWhenSameRegionAbsent."""
    _run(mesh, 7, [], [(addrs["c"], REMOTE)], "c")


def test_cross_region_endpoint_used_after_same_region_ejection(
    mesh: MeshProcess, addrs: dict[str, str]
) -> None:
    """CrossRegionEndpointUsedAfterSameRegionEjection: the caller-region endpoint never answers; outlier
    detection ejects it and traffic fails over to the other region (after the failed attempts the
    ejection takes: Istio's check retries until the traffic settles)."""
    dest = [(unused_ip(mesh), LOCAL), (addrs["c"], REMOTE)]
    with applied(mesh, _config(8, [], dest, outlier=True)):
        _assert_zone_aware_config(mesh, 8, 1, dest)
        deadline = time.monotonic() + 30
        while True:
            result = mesh.load(
                "zone-aware-caller", "http://zone-aware-case-8.example.com/", 20, concurrency=1
            )
            if result.codes == {"200": 20} and result.served_by == {"c": 20}:
                break
            assert time.monotonic() < deadline, (result.codes, result.served_by)
            time.sleep(0.5)
        assert _served(mesh, 8) == {"c": SEND}
