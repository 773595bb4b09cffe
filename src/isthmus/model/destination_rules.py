"""DestinationRule lookup, merging and policy layering as istiod does them.

- Lookup for (proxy, host): proxy namespace, then the service's namespace, then the root namespace; in each,
  the most specific host wins; workloadSelector DRs (proxy namespace only) before selector-less ones
  (`pilot/pkg/model/push_context.go` destinationRule, `sidecar.go` DestinationRule).
- Several DRs for one host in one namespace with equal exportTo and selector merge: subsets concatenated
  (duplicate names dropped), the top-level trafficPolicy of the oldest rule that has one
  (`pilot/pkg/model/destination_rule.go`).
- Policy layering per cluster: DR top level < DR portLevelSettings (replace) < subset < subset portLevel
  (`pilot/pkg/networking/util/util.go` MergeSubsetTrafficPolicy, `pilot/pkg/model/destination_rule.go`
  MergeTrafficPolicy: a subset's tunnel, proxyProtocol and retryBudget override when set).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.virtual_services import config_creation_key
from isthmus.model.visibility import is_visible, normalize
from isthmus.registry.build import labels_match


@dataclass(frozen=True)
class MergedDestinationRule:
    host: str
    namespace: str
    configs: tuple[Config, ...]
    traffic_policy: Any | None
    subsets: tuple[Any, ...]
    export_to: frozenset[str]
    selector: Mapping[str, str] | None

    def subset(self, name: str) -> Any | None:
        for s in self.subsets:
            if s.name == name:
                return s
        return None

    @property
    def config_path(self) -> str:
        c = self.configs[0]
        return f"/apis/networking.istio.io/v1/namespaces/{c.namespace}/destination-rule/{c.name}"

    @property
    def ref(self) -> str:
        return ", ".join(f"{c.namespace}/{c.name}" for c in self.configs)


@dataclass(frozen=True)
class EffectivePolicy:
    """The policy blocks that apply to one cluster, after layering."""

    load_balancer: Any | None = None
    connection_pool: Any | None = None
    outlier_detection: Any | None = None
    tls: Any | None = None
    tunnel: Any | None = None
    proxy_protocol: Any | None = None
    retry_budget: Any | None = None

    @classmethod
    def of(cls, policy: Any | None) -> EffectivePolicy:
        if policy is None:
            return cls()
        return cls(
            load_balancer=policy.load_balancer,
            connection_pool=policy.connection_pool,
            outlier_detection=policy.outlier_detection,
            tls=policy.tls,
            tunnel=getattr(policy, "tunnel", None),
            proxy_protocol=getattr(policy, "proxy_protocol", None),
            retry_budget=getattr(policy, "retry_budget", None),
        )


def _port_level(policy: Any | None, port: int | None) -> tuple[EffectivePolicy | None, bool]:
    """Istio's GetPortLevelTrafficPolicy: a matching portLevelSettings entry replaces the blocks."""
    if policy is None:
        return None, False
    for p in getattr(policy, "port_level_settings", None) or ():
        if port is not None and p.port is not None and p.port.number == port:
            return (
                EffectivePolicy(
                    load_balancer=p.load_balancer,
                    connection_pool=p.connection_pool,
                    outlier_detection=p.outlier_detection,
                    tls=p.tls,
                ),
                True,
            )
    return EffectivePolicy.of(policy), False


def effective_policy(
    dr: MergedDestinationRule | None, port: int | None, subset: str | None
) -> EffectivePolicy:
    if dr is None:
        return EffectivePolicy()
    base, _ = _port_level(dr.traffic_policy, port)
    sub = dr.subset(subset) if subset else None
    sub_policy = getattr(sub, "traffic_policy", None) if sub is not None else None
    if sub_policy is None:
        return base or EffectivePolicy()
    sp, has_port_level = _port_level(sub_policy, port)
    assert sp is not None
    if base is None:
        return sp
    return EffectivePolicy(
        load_balancer=sp.load_balancer
        if (sp.load_balancer is not None or has_port_level)
        else base.load_balancer,
        connection_pool=sp.connection_pool
        if (sp.connection_pool is not None or has_port_level)
        else base.connection_pool,
        outlier_detection=sp.outlier_detection
        if (sp.outlier_detection is not None or has_port_level)
        else base.outlier_detection,
        tls=sp.tls if (sp.tls is not None or has_port_level) else base.tls,
        tunnel=sp.tunnel if sp.tunnel is not None else base.tunnel,
        proxy_protocol=sp.proxy_protocol if sp.proxy_protocol is not None else base.proxy_protocol,
        retry_budget=sp.retry_budget if sp.retry_budget is not None else base.retry_budget,
    )


@dataclass
class DestinationRuleIndex:
    # namespace -> merged rules, selector-bearing first, then by creation order.
    by_namespace: dict[str, list[MergedDestinationRule]] = field(default_factory=dict)
    root_namespace: str = "istio-system"
    # namespace -> (rules by exact host, rules with a wildcard host), each in by_namespace's order.
    _hosts: dict[str, tuple[dict[str, list[MergedDestinationRule]], list[MergedDestinationRule]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # Every rule's exact host, and whether any rule has a wildcard host (None: not computed yet). Most
    # services have no DestinationRule: their lookups (one per scope and service) end here.
    _exact_hosts: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _any_wildcard: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def build(
        cls, configs: Iterable[Config], default_export_to: frozenset[str], root_namespace: str, domain: str
    ) -> DestinationRuleIndex:
        grouped: dict[tuple, list[Config]] = defaultdict(list)
        order: list[tuple] = []
        for cfg in sorted(configs, key=config_creation_key):
            spec = cfg.spec
            selector = None
            if spec.workload_selector is not None:
                selector = dict(spec.workload_selector.match_labels or {})
            host = h.resolve_short_name(spec.host, cfg.namespace, domain)
            # A workloadSelector DR is only ever seen from its own namespace (exportTo forced to ".").
            export_to = (
                frozenset({"."}) if selector is not None else normalize(spec.export_to, default_export_to)
            )
            key = (
                cfg.namespace,
                host,
                export_to,
                tuple(sorted(selector.items())) if selector is not None else None,
            )
            if key not in grouped:
                order.append(key)
            grouped[key].append(cfg)
        index = cls(root_namespace=root_namespace)
        for key in order:
            ns, host, export_to, sel = key
            cfgs = grouped[key]
            subsets: list[Any] = []
            seen: set[str] = set()
            for c in cfgs:
                for s in c.spec.subsets or ():
                    if s.name in seen:
                        continue
                    seen.add(s.name)
                    subsets.append(s)
            policy = next((c.spec.traffic_policy for c in cfgs if c.spec.traffic_policy is not None), None)
            index.by_namespace.setdefault(ns, []).append(
                MergedDestinationRule(
                    host=host,
                    namespace=ns,
                    configs=tuple(cfgs),
                    traffic_policy=policy,
                    subsets=tuple(subsets),
                    export_to=export_to,
                    selector=dict(sel) if sel is not None else None,
                )
            )
        for rules in index.by_namespace.values():
            rules.sort(key=lambda r: (r.selector is None, config_creation_key(r.configs[0])))
        return index

    def _best_in(
        self,
        namespace: str,
        viewer_ns: str,
        viewer_labels: Mapping[str, str],
        hostname: str,
        allow_selector: bool,
    ) -> MergedDestinationRule | None:
        def applies(r: MergedDestinationRule) -> bool:
            return is_visible(r.export_to, r.namespace, viewer_ns) and (
                r.selector is None or (allow_selector and labels_match(r.selector, viewer_labels))
            )

        # Istio's MostSpecificHostMatch over the rules that apply: an exact host wins outright, so look
        # it up directly (thousands of lookups per snapshot), then the longest covering wildcard.
        exact, wildcards = self._host_index(namespace)
        for r in exact.get(hostname, ()):
            if applies(r):
                return r
        rules = [r for r in wildcards if applies(r)]
        if not rules:
            return None
        best = h.most_specific_match(hostname, [r.host for r in rules])
        if best is None:
            return None
        for r in rules:
            if r.host == best:
                return r
        return None

    def _host_index(
        self, namespace: str
    ) -> tuple[dict[str, list[MergedDestinationRule]], list[MergedDestinationRule]]:
        index = self._hosts.get(namespace)
        if index is None:
            exact: dict[str, list[MergedDestinationRule]] = {}
            wildcards: list[MergedDestinationRule] = []
            for r in self.by_namespace.get(namespace, ()):
                if h.is_wildcard(r.host):
                    wildcards.append(r)
                else:
                    exact.setdefault(r.host, []).append(r)
            index = self._hosts[namespace] = (exact, wildcards)
        return index

    def _may_match(self, hostname: str) -> bool:
        """False when no rule in any namespace can apply to `hostname` (no exact host, no wildcard)."""
        if self._exact_hosts is None:
            rules = self.all()
            self._any_wildcard = any(h.is_wildcard(r.host) for r in rules)
            self._exact_hosts = frozenset(r.host for r in rules if not h.is_wildcard(r.host))
        return self._any_wildcard or hostname in self._exact_hosts

    def lookup(
        self, proxy_namespace: str, proxy_labels: Mapping[str, str], hostname: str, service_namespace: str
    ) -> MergedDestinationRule | None:
        if not self._may_match(hostname):
            return None
        found = self._best_in(proxy_namespace, proxy_namespace, proxy_labels, hostname, allow_selector=True)
        if found is not None:
            return found
        if service_namespace != proxy_namespace:
            found = self._best_in(
                service_namespace, proxy_namespace, proxy_labels, hostname, allow_selector=False
            )
            if found is not None:
                return found
        if self.root_namespace not in (proxy_namespace, service_namespace):
            return self._best_in(
                self.root_namespace, proxy_namespace, proxy_labels, hostname, allow_selector=False
            )
        return None

    def all(self) -> list[MergedDestinationRule]:
        return [r for rules in self.by_namespace.values() for r in rules]
