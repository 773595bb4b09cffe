"""Locality load balancing, as istiod's `pilot/pkg/networking/core/loadbalancer` (ApplyLocalityLoadBalancer).

An assignment's localities are ranked against the proxy's own locality: `distribute` reweighs them, and
failover (only with outlier detection, or Envoy would never leave priority 0) gives each a priority:
by region/zone/subzone (`applyLocalityFailover`), by labels (`failoverPriority`), or both. The functions
here work on `Group`s (one LocalityLbEndpoints each) and never change the ones they are given: those are
the snapshot's, shared by every proxy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from isthmus.api.networking import LocalityLoadBalancerSetting
from isthmus.model.proxy import Proxy
from isthmus.registry.build import REGION_LABELS, SUBZONE_LABEL, ZONE_LABELS
from isthmus.registry.types import (
    TRAFFIC_DISTRIBUTION_SAME_NODE,
    TRAFFIC_DISTRIBUTION_SAME_ZONE,
    Endpoint,
    Service,
    split_locality,
)

NETWORK_LABEL = "topology.istio.io/network"
CLUSTER_LABEL = "topology.istio.io/cluster"
# Every endpoint and proxy of a local mesh is in one cluster, istiod's default cluster id.
CLUSTER_ID = "Kubernetes"
HOSTNAME_LABEL = "kubernetes.io/hostname"

# istiod's GetLocalityLbSetting for a Service with a trafficDistribution (and no DestinationRule setting):
# failover by these labels, forced (it applies without outlier detection).
_TRAFFIC_DISTRIBUTION_SETTINGS = {
    TRAFFIC_DISTRIBUTION_SAME_ZONE: LocalityLoadBalancerSetting(
        enabled=True, failover_priority=[NETWORK_LABEL, REGION_LABELS[0], ZONE_LABELS[0]]
    ),
    TRAFFIC_DISTRIBUTION_SAME_NODE: LocalityLoadBalancerSetting(
        enabled=True,
        failover_priority=[NETWORK_LABEL, REGION_LABELS[0], ZONE_LABELS[0], SUBZONE_LABEL, HOSTNAME_LABEL],
    ),
}


class Group(NamedTuple):
    """One LocalityLbEndpoints: its locality (`region/zone/subzone`, "" for none), endpoints, weight (None:
    the sum of its endpoints' weights, counted when they are encoded) and priority. `drained`:
    `distribute` sends it no traffic, so it is sent without its endpoints (istiod keeps the locality and
    drops its lb_endpoints). A tuple: every assignment is made of them, so they must be cheap."""

    locality: str
    endpoints: Sequence[Endpoint]
    weight: int | None = None
    priority: int = 0
    drained: bool = False


def endpoints_weight(endpoints: Iterable[Endpoint]) -> int:
    """A locality's weight: the sum of its endpoints', as istiod's EDS builder gives it."""
    return sum(ep.weight for ep in endpoints)


def group_weight(group: Group) -> int:
    return endpoints_weight(group.endpoints) if group.weight is None else group.weight


@dataclass(frozen=True, slots=True)
class LocalityLb:
    """The setting that applies to a cluster, and whether it may fail over (it has outlier detection)."""

    setting: Any  # api.networking.LocalityLoadBalancerSetting
    failover: bool


def _traffic_distribution(service: Service | None) -> str:
    return service.traffic_distribution if service is not None else ""


def _setting_and_forced(mesh_setting: Any, policy: Any, service: Service | None) -> tuple[Any | None, bool]:
    """istiod's GetLocalityLbSetting: the DestinationRule's setting wins; then the Service's
    trafficDistribution (failover by labels, forced: True); then the mesh's. `enabled: false` on the one
    that applies turns locality load balancing off (None)."""
    lb = policy.load_balancer
    if lb is not None and lb.locality_lb_setting is not None:
        setting = lb.locality_lb_setting
        return (None if setting.enabled is False else setting), False
    by_service = _TRAFFIC_DISTRIBUTION_SETTINGS.get(_traffic_distribution(service))
    if by_service is not None:
        return by_service, True
    if mesh_setting is None or mesh_setting.enabled is False:
        return None, False
    return mesh_setting, False


def effective_setting(mesh_setting: Any, policy: Any, service: Service | None = None) -> Any | None:
    """istiod's GetLocalityLbSetting: the setting that applies (see `_setting_and_forced`), or None."""
    return _setting_and_forced(mesh_setting, policy, service)[0]


def locality_lb(mesh_setting: Any, policy: Any, service: Service | None = None) -> LocalityLb | None:
    """What ApplyLocalityLoadBalancer would do to a cluster of this policy: None when it changes nothing
    (no setting, or neither `distribute` nor failover: outlier detection, or a Service trafficDistribution
    that forces it), so the assignment stays the shared one."""
    failover = policy.outlier_detection is not None
    if (
        not failover
        and policy.load_balancer is None
        and (mesh_setting is None or not mesh_setting.distribute)
        and not _traffic_distribution(service)
    ):
        return None  # the usual cluster, asked about by every assignment: answered without more lookups
    setting, forced = _setting_and_forced(mesh_setting, policy, service)
    failover = failover or forced
    if setting is None or not (setting.distribute or failover):
        return None
    return LocalityLb(setting, failover)


def weighted_lb_config(mesh_setting: Any, policy: Any, service: Service | None = None) -> bool:
    """Whether the cluster gets `common_lb_config.locality_weighted_lb_config` (istiod's
    applyLocalityLoadBalancer, ENABLE_LOCALITY_WEIGHTED_LB_CONFIG off): locality weights only act with
    it, and it would change how other LB policies (least request) pick, so only when the setting needs it."""
    setting, forced = _setting_and_forced(mesh_setting, policy, service)
    if setting is None:
        return False
    failover = policy.outlier_detection is not None or forced
    return bool(setting.distribute) or (failover and bool(setting.failover or setting.failover_priority))


def locality_match(locality: tuple[str, str, str], rule: str) -> bool:
    """istio's LocalityMatch: `rule` (`region[/zone[/subzone]]`, `*` for any) covers the locality."""
    region, zone, subzone = split_locality(rule)
    return (
        (region == "*" or locality[0] == region)
        and (zone in ("*", "") or locality[1] == zone)
        and (subzone in ("*", "") or locality[2] == subzone)
    )


def lb_priority(proxy: tuple[str, str, str], endpoints: tuple[str, str, str]) -> int:
    """istio's LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    if proxy[0] != endpoints[0]:
        return 3
    if proxy[1] != endpoints[1]:
        return 2
    return 0 if proxy[2] == endpoints[2] else 1


def topology_labels(labels: Mapping[str, str], locality: str, network: str) -> dict[str, str]:
    """istio's AugmentLabels: the labels with the topology ones its locality, network and cluster give
    (failoverPriority compares proxy and endpoint labels, these included)."""
    out = dict(labels)
    region, zone, subzone = split_locality(locality)
    for key, value in (
        (REGION_LABELS[0], region),
        (ZONE_LABELS[0], zone),
        (SUBZONE_LABEL, subzone),
        (CLUSTER_LABEL, CLUSTER_ID),
    ):
        if value:
            out[key] = value
    # The network label the workload carries wins over its network (AugmentLabels sets it only if unset).
    if network and not out.get(NETWORK_LABEL):
        out[NETWORK_LABEL] = network
    return out


# The labels topology_labels may add.
TOPOLOGY_KEYS = frozenset((REGION_LABELS[0], ZONE_LABELS[0], SUBZONE_LABEL, CLUSTER_LABEL, NETWORK_LABEL))


def apply(groups: Sequence[Group], proxy: Proxy, lb: LocalityLb) -> Sequence[Group]:
    """istiod's ApplyLocalityLoadBalancer, on new groups (`groups` itself when nothing changes)."""
    setting = lb.setting
    if setting.distribute:
        return _apply_weights(groups, split_locality(proxy.locality), setting.distribute)
    if not setting.failover_priority:
        if len(groups) < 2:
            return groups  # one locality is priority 0 whatever it is (priorities are made contiguous)
        return _apply_locality_failover(groups, split_locality(proxy.locality), setting.failover)
    out: Sequence[Group] = groups
    if out:
        network = str(proxy.metadata.get("NETWORK") or "")
        proxy_labels = topology_labels(proxy.labels, proxy.locality, network)
        out = apply_failover_priorities(out, proxy_labels, setting.failover_priority)
    # An explicit failover applies on top of failoverPriority; the default one does not.
    if setting.failover:
        out = _apply_locality_failover(out, split_locality(proxy.locality), setting.failover)
    return out


def _apply_weights(
    groups: Sequence[Group], proxy: tuple[str, str, str], distribute: Sequence[Any]
) -> list[Group]:
    """applyLocalityWeights: the first rule whose `from` covers the proxy shares each `to` weight among the
    localities it covers (in proportion to their own weights); localities no `to` covers are drained."""
    for rule in distribute:
        if rule is None or not locality_match(proxy, rule.from_ or ""):
            continue
        unmatched = set(range(len(groups)))
        weights: dict[int, int] = {}
        for dest, weight in rule.to.items():
            covered = {
                i: group_weight(groups[i])
                for i in sorted(unmatched)
                if locality_match(split_locality(groups[i].locality), dest)
            }
            unmatched -= covered.keys()
            total = sum(covered.values())
            for i, original in covered.items():
                share = float(original * weight) / float(total)
                if share > 0:
                    weights[i] = math.ceil(share)
        return [
            g._replace(weight=weights.get(i, group_weight(g)), drained=i in unmatched)
            for i, g in enumerate(groups)
        ]
    return list(groups)


def _apply_locality_failover(
    groups: Sequence[Group], proxy: tuple[str, str, str], failover: Sequence[Any]
) -> list[Group]:
    """applyLocalityFailover: priority by region/zone/subzone; another region than the one a `failover`
    rule from the proxy's region names comes after it (4). Combined with failoverPriority's priorities
    (times 5), then made contiguous from 0."""
    raw = []
    for g in groups:
        priority = lb_priority(proxy, split_locality(g.locality))
        if priority == 3:
            for rule in failover:
                if rule.from_ == proxy[0]:
                    if not g.locality or split_locality(g.locality)[0] != rule.to:
                        priority = 4
                    break
        raw.append(g.priority * 5 + priority)
    return compacted(groups, raw)


def apply_failover_priorities(
    groups: Sequence[Group], proxy_labels: Mapping[str, str], failover_priority: Sequence[str]
) -> list[Group]:
    """applyFailoverPriorities: each locality split by how many of the labels, in order, an endpoint shares
    with the proxy (`label=value` compares with that value instead of the proxy's); then contiguous."""
    names: list[str] = []
    overrides: dict[str, str] = {}
    for item in failover_priority:
        parts = item.split("=")
        names.append(parts[0])
        if len(parts) == 2:
            overrides[parts[0]] = parts[1]
    wanted = [overrides.get(name, proxy_labels.get(name, "")) for name in names]
    lowest = len(failover_priority)
    out: list[Group] = []
    for g in groups:
        by_priority: dict[int, list[Endpoint]] = {}
        for ep in g.endpoints:
            labels = topology_labels(ep.labels, ep.locality, ep.network)
            priority = 0
            for j, name in enumerate(names):
                if wanted[j] != labels.get(name, ""):
                    priority = lowest - j
                    break
            by_priority.setdefault(priority, []).append(ep)
        for priority in sorted(by_priority):
            eps = by_priority[priority]
            out.append(Group(g.locality, eps, endpoints_weight(eps), priority))
    return compacted(out, [g.priority for g in out])


def compacted(groups: Sequence[Group], priorities: Sequence[int]) -> list[Group]:
    """Priorities renumbered 0..N in order, without gaps (Envoy wants them contiguous). Groups whose
    priority stays are kept as they are (the usual case: one locality, or all at priority 0)."""
    rank = {p: i for i, p in enumerate(sorted(set(priorities)))}
    return [
        g if g.priority == rank[p] else g._replace(priority=rank[p])
        for g, p in zip(groups, priorities, strict=True)
    ]


def variant(base: Sequence[Group], applied: Sequence[Group]) -> tuple | None:
    """What tells `applied` apart from `base` (None: the same assignment): proxies whose applied groups
    have equal variants share one assignment."""
    if applied is base:
        return None
    same_split = len(applied) == len(base)
    if same_split and all(a == b for a, b in zip(applied, base, strict=True)):
        return None
    shape = tuple((g.locality, g.priority, g.weight, g.drained) for g in applied)
    # Without a split each group keeps its endpoints; after one, which endpoints went where matters.
    members = None if same_split else tuple(tuple(id(e) for e in g.endpoints) for g in applied)
    return (shape, members)
