"""Zone-aware load balancing (DestinationRule ``loadBalancer.zoneAwareLbSetting``), as istiod does it
(istio/istio#60765, Istio 1.31).

Envoy's zone-aware routing compares how the *originating* cluster (the proxy's own service) and the
upstream cluster spread over the zones of the local region, and keeps as much traffic in the proxy's zone
as the upstream's local share allows, spilling the rest to other zones. It needs three things:
- the proxy's locality: the bootstrap's ``node.locality`` (the agent writes it from the pod's labels);
- the originating cluster: the bootstrap's ``cluster_manager.local_cluster_name``, which must name a
  *static* cluster. istio-agent adds an EDS cluster named ``local_cluster`` (over ADS) when the proxy is
  started with ``ISTIO_META_ENABLE_SELF_DISCOVERY=true`` (node metadata ``ENABLE_SELF_DISCOVERY``), and
  istiod answers EDS for it with the endpoints of the first service that selects the proxy, kept to the
  proxy's region, its workload (``service.istio.io/workload-name``) and its ``pod-template-hash``
  (pilot/pkg/xds/eds.go ``util.SelfDiscoveryCluster``: no DestinationRule applies to it);
- on each upstream cluster, ``common_lb_config.zone_aware_lb_config`` (``min_cluster_size`` from
  ``minClusterSize``; ``enabled: false`` sets ``routing_enabled`` to 0%, since Envoy's default is 100%).

Zone-aware routing only balances among the hosts of priority 0, so istiod partitions the upstream's
endpoints by region: the proxy's region is priority 0 (Envoy balances its zones), other regions are
lower tiers, ordered by ``failover`` (the region a rule from the proxy's region names comes before the
others) and under ``failoverPriority``'s label tiers. This partitioning applies whether or not outlier
detection is set (the DestinationRule docs: "the regional partitioning itself is always applied").

Without self-discovery the proxy has no local cluster, so none of this applies to it (the setting is
ignored for that proxy, as the docs list self-discovery as a precondition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from isthmus.api.types import parse_env_bool
from isthmus.model.proxy import Proxy
from isthmus.registry.types import Endpoint, Service, split_locality
from isthmus.xds.gen import locality
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.locality import Group

if TYPE_CHECKING:
    from isthmus.model.snapshot import Snapshot

# istiod's util.SelfDiscoveryCluster: the static cluster istio-agent's bootstrap adds, and the EDS
# resource name istiod answers for it.
SELF_DISCOVERY_CLUSTER = "local_cluster"
# Node metadata key (from the ISTIO_META_ENABLE_SELF_DISCOVERY proxyMetadata).
SELF_DISCOVERY_KEY = "ENABLE_SELF_DISCOVERY"
# Labels that tell one rollout of a workload from another: the local cluster keeps the proxy's own.
TEMPLATE_HASH_LABELS = ("pod-template-hash", "rollouts-pod-template-hash")


def self_discovery(proxy: Proxy) -> bool:
    """Whether the proxy was started with the self-discovery ``local_cluster`` (sidecars only: Istio
    supports zone-aware load balancing in sidecar mode)."""
    if proxy.kind != "sidecar":
        return False
    return parse_env_bool(_str(proxy.metadata.get(SELF_DISCOVERY_KEY)), False) is True


def _str(value: Any) -> str | None:
    """A metadata value as istio-agent's env string (ISTIO_METAJSON_ may have made it a JSON bool)."""
    return None if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def setting(policy: Any, proxy: Proxy) -> Any | None:
    """The ZoneAwareLoadBalancerSetting that applies to a cluster of `policy` for `proxy`, or None."""
    lb = policy.load_balancer
    za = lb.zone_aware_lb_setting if lb is not None else None
    if za is None or not self_discovery(proxy):
        return None
    return za


def routes_by_zone(za: Any) -> bool:
    """`enabled` unset counts as on (istiod: the setting's presence enables it)."""
    return za.enabled is not False


def apply_cluster(c: p.cluster.Cluster, za: Any) -> None:
    """The cluster's ``common_lb_config.zone_aware_lb_config``."""
    cfg = c.common_lb_config.zone_aware_lb_config
    cfg.SetInParent()
    if za.min_cluster_size is not None:
        cfg.min_cluster_size.value = int(za.min_cluster_size)
    if not routes_by_zone(za):
        # Envoy's routing_enabled defaults to 100%: an explicit 0% keeps `enabled: false` off.
        cfg.routing_enabled.value = 0.0


def apply_regions(groups: Sequence[Group], proxy: Proxy, za: Any) -> Sequence[Group]:
    """The upstream's endpoints partitioned by region (see the module doc), on new groups (`groups`
    itself when nothing changes). `enabled: false` leaves them as they are."""
    if not routes_by_zone(za) or not groups:
        return groups
    out: Sequence[Group] = groups
    if za.failover_priority:
        network = str(proxy.metadata.get("NETWORK") or "")
        proxy_labels = locality.topology_labels(proxy.labels, proxy.locality, network)
        out = locality.apply_failover_priorities(out, proxy_labels, za.failover_priority)
    region = split_locality(proxy.locality)[0]
    raw = [g.priority * 3 + _region_tier(region, split_locality(g.locality)[0], za.failover) for g in out]
    applied = locality.compacted(out, raw)
    if out is groups and all(a is b for a, b in zip(applied, groups, strict=True)):
        return groups
    return applied


def _region_tier(proxy_region: str, region: str, failover: Sequence[Any]) -> int:
    """0: the proxy's region; 1: another region (the one a `failover` rule from the proxy's region
    names, when there is such a rule); 2: any other region when a rule names one."""
    if region == proxy_region:
        return 0
    for rule in failover:
        if rule.from_ == proxy_region:
            return 1 if region == rule.to else 2
    return 1


# --- the self-discovery local cluster ---------------------------------------------------------------


def local_service(snapshot: Snapshot, proxy: Proxy) -> Service | None:
    """istiod's proxy.LocalService: the first service that selects the proxy's pod."""
    pod = snapshot.pod(proxy)
    if pod is None:
        return None
    services = snapshot.registry.services_selecting(pod)
    return services[0] if services else None


def local_endpoints(snapshot: Snapshot, proxy: Proxy) -> list[Endpoint]:
    """The local cluster's members: the local service's ready endpoints on its first port, in the
    proxy's region, of the proxy's workload and rollout (pod-template-hash)."""
    svc = local_service(snapshot, proxy)
    if svc is None or not svc.ports:
        return []
    region = split_locality(proxy.locality)[0]
    hashes = {k: proxy.labels[k] for k in TEMPLATE_HASH_LABELS if k in proxy.labels}
    out = []
    for ep in snapshot.registry.endpoints(svc, svc.ports[0].port):
        if not ep.ready or ep.workload != proxy.workload:
            continue
        if split_locality(ep.locality)[0] != region:
            continue
        if any(ep.labels.get(k) != v for k, v in hashes.items()):
            continue
        out.append(ep)
    return out


def local_groups(snapshot: Snapshot, proxy: Proxy) -> list[Group]:
    """The local cluster's LocalityLbEndpoints, one per locality (Envoy reads each host's zone from it)."""
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in local_endpoints(snapshot, proxy):
        by_locality.setdefault(ep.locality, []).append(ep)
    return [Group(where, eps) for where, eps in sorted(by_locality.items())]
