"""Generator side of the field-coverage audit: fields that were accepted and dropped, now translated."""

from __future__ import annotations

import dataclasses

from gen_helpers import generate, sidecar, snapshot

from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

# --- Service trafficDistribution (istiod's GetLocalityLbSetting) ------------------------------------

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
ZONED_PODS = [
    Pod(
        f"reviews-{zone}-0",
        "default",
        ip,
        {"app": "reviews", "topology.kubernetes.io/region": "region1", "topology.kubernetes.io/zone": zone},
        workload=f"reviews-{zone}",
        app_ports={9080: port},
    )
    for zone, ip, port in (("zone1", "127.7.0.2", 40001), ("zone2", "127.7.0.3", 40002))
] + [Pod("web-0", "default", "127.7.0.5", {"app": "web"}, workload="web", app_ports={8080: 40005})]


def _reviews(distribution: str = "", annotation: str = "") -> str:
    spec = f"trafficDistribution: {distribution}, " if distribution else ""
    meta = f", annotations: {{networking.istio.io/traffic-distribution: {annotation}}}" if annotation else ""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default{meta}}}
spec: {{{spec}selector: {{app: reviews}}, ports: [{{name: http, port: 9080}}]}}
"""


def _priorities(*docs: str) -> dict[str, int]:
    """Pod address -> priority in the reviews assignment a proxy in region1/zone1 gets."""
    snap = snapshot(*docs, pods=ZONED_PODS, services=False)
    proxy = dataclasses.replace(sidecar(labels={"app": "web"}), locality="region1/zone1")
    (cla,) = generate(snap, proxy, naming.ENDPOINT_TYPE, {REVIEWS}).values()
    return {
        lb["endpoint"]["address"]["socket_address"]["address"]: group.get("priority", 0)
        for group in cla["endpoints"]
        for lb in group.get("lb_endpoints", [])
    }


def _weighted(*docs: str) -> bool:
    snap = snapshot(*docs, pods=ZONED_PODS, services=False)
    proxy = dataclasses.replace(sidecar(labels={"app": "web"}), locality="region1/zone1")
    cluster = generate(snap, proxy, naming.CLUSTER_TYPE, {REVIEWS})[REVIEWS]
    return "locality_weighted_lb_config" in cluster.get("common_lb_config", {})


SAME_ZONE = {"127.7.0.2": 0, "127.7.0.3": 1}
ANYWHERE = {"127.7.0.2": 0, "127.7.0.3": 0}


def test_traffic_distribution_prefers_the_proxy_zone_without_outlier_detection() -> None:
    """A Service's trafficDistribution was accepted and dropped. istiod gives such a service (when no
    DestinationRule sets localityLbSetting) a failoverPriority of network, region and zone, applied even
    without outlier detection: endpoints in the proxy's zone come first."""
    assert _priorities(_reviews()) == ANYWHERE
    assert not _weighted(_reviews())
    for value in ("PreferClose", "PreferSameZone"):
        assert _priorities(_reviews(value)) == SAME_ZONE, value
    assert _weighted(_reviews("PreferClose"))
    # PreferSameNode adds subzone and node: every pod of a local mesh is on the one node.
    assert _priorities(_reviews("PreferSameNode")) == SAME_ZONE
    # Istio's annotation, for clusters older than the field (case-insensitive).
    assert _priorities(_reviews(annotation="preferclose")) == SAME_ZONE
    assert _priorities(_reviews("Unknown")) == ANYWHERE


def test_a_destination_rule_locality_setting_wins_over_traffic_distribution() -> None:
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {localityLbSetting: {enabled: false}}}
"""
    assert _priorities(_reviews("PreferClose"), dr) == ANYWHERE
    assert not _weighted(_reviews("PreferClose"), dr)
    # A DestinationRule without a locality setting leaves the service's preference in force.
    simple = dr.replace("{localityLbSetting: {enabled: false}}", "{simple: LEAST_REQUEST}")
    assert _priorities(_reviews("PreferClose"), simple) == SAME_ZONE


def test_traffic_distribution_does_not_leak_through_shared_cluster_bases() -> None:
    """Clusters of services without a DestinationRule share their base (clusters._base_key): the
    service's preference must be part of what they share."""
    other = _reviews().replace("name: reviews,", "name: details,").replace("app: reviews", "app: reviews")
    snap = snapshot(_reviews("PreferClose"), other, pods=ZONED_PODS, services=False)
    proxy = dataclasses.replace(sidecar(labels={"app": "web"}), locality="region1/zone1")
    details = "outbound|9080||details.default.svc.cluster.local"
    clusters = generate(snap, proxy, naming.CLUSTER_TYPE, {REVIEWS, details})
    assert "locality_weighted_lb_config" in clusters[REVIEWS]["common_lb_config"]
    assert "locality_weighted_lb_config" not in clusters[details].get("common_lb_config", {})
