"""DestinationRule lookup, merging and policy layering as istiod does them.

- Lookup for (proxy, host) (`pilot/pkg/model/push_context.go` destinationRule, `sidecar.go` DestinationRule):
  the rules of the proxy's namespace (for a root-namespace proxy, only the root's private ones), else those
  the service's namespace exports to the proxy's, else those the root namespace exports to it. In each,
  the most specific host wins, and the first namespace with a rule for that host decides: its first
  workloadSelector rule matching the proxy (proxy namespace only), else its selector-less rule.
- Rules for one host in one namespace merge (`pilot/pkg/model/destination_rule.go` mergeDestinationRule,
  enhanced merge on): subsets concatenated (duplicate names dropped), the top-level trafficPolicy of the
  first rule that has one; rules of other exportTo or other selectors stay apart (see `_merge`).
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
from isthmus.model.visibility import PRIVATE, PUBLIC
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
    # TrafficPolicy.compression: port-level like the four blocks above (PortTrafficPolicy has it too).
    compression: Any | None = None

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
            compression=getattr(policy, "compression", None),
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
                    compression=getattr(p, "compression", None),
                ),
                True,
            )
    return EffectivePolicy.of(policy), False


# The policy of clusters no DestinationRule applies to (most of a mesh's): one shared frozen instance.
NO_POLICY = EffectivePolicy()


def effective_policy(
    dr: MergedDestinationRule | None, port: int | None, subset: str | None
) -> EffectivePolicy:
    if dr is None:
        return NO_POLICY
    base, _ = _port_level(dr.traffic_policy, port)
    sub = dr.subset(subset) if subset else None
    sub_policy = getattr(sub, "traffic_policy", None) if sub is not None else None
    if sub_policy is None:
        return base or NO_POLICY
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
        compression=sp.compression if (sp.compression is not None or has_port_level) else base.compression,
    )


@dataclass
class _Rule:
    """One consolidated rule while the index is built (istiod's ConsolidatedDestRule)."""

    host: str
    namespace: str
    configs: list[Config]
    traffic_policy: Any | None
    subsets: list[Any]
    export_to: frozenset[str]
    selector: dict[str, str] | None

    @classmethod
    def of(cls, cfg: Config, host: str, export_to: frozenset[str], selector: dict[str, str] | None) -> _Rule:
        spec = cfg.spec
        return cls(
            host, cfg.namespace, [cfg], spec.traffic_policy, list(spec.subsets or ()), export_to, selector
        )

    def absorb(self, cfg: Config) -> None:
        """Subsets of new names are appended; the top-level policy is taken only when this rule has none."""
        names = {s.name for s in self.subsets}
        self.subsets.extend(s for s in cfg.spec.subsets or () if s.name not in names)
        if self.traffic_policy is None:
            self.traffic_policy = cfg.spec.traffic_policy
        self.configs.append(cfg)

    def freeze(self) -> MergedDestinationRule:
        return MergedDestinationRule(
            host=self.host,
            namespace=self.namespace,
            configs=tuple(self.configs),
            traffic_policy=self.traffic_policy,
            subsets=tuple(self.subsets),
            export_to=self.export_to,
            selector=self.selector,
        )


def _merge(
    rules: dict[str, list[_Rule]], cfg: Config, host: str, export_to: frozenset[str], selector: Any
) -> None:
    """istiod's mergeDestinationRule (ENABLE_ENHANCED_DESTINATIONRULE_MERGE on, its default).

    The incoming rule is folded into each rule already kept for the host whose exportTo equals its own or
    is a subset of it, unless both have workload selectors that differ. Whether it is also kept on its own
    is decided, as in istiod, by the last kept rule examined: not when that one has the same selector (or
    both have none). So a selector-less rule listing `.` feeds its subsets into the workload-specific
    rules of its namespace (sorted before it) and stays a rule of its own."""
    kept = rules.get(host)
    if not kept:
        rules[host] = [_Rule.of(cfg, host, export_to, selector)]
        return
    append = True
    for m in kept:
        both_without = selector is None and m.selector is None
        both_with = selector is not None and m.selector is not None
        same_selector = (selector or {}) == (m.selector or {})
        if export_to == m.export_to:
            append = not (both_without or (both_with and same_selector))
        elif m.export_to and export_to >= m.export_to:
            append = True
        else:
            append = True
            continue
        if both_with and not same_selector:
            append = True
            continue
        if both_without or (both_with and same_selector):
            append = False
        m.absorb(cfg)
    if append:
        kept.append(_Rule.of(cfg, host, export_to, selector))


@dataclass
class _Bucket:
    """The rules of one index (istiod's consolidatedDestRules), by exact and by wildcard host."""

    exact: dict[str, list[MergedDestinationRule]] = field(default_factory=dict)
    wildcards: dict[str, list[MergedDestinationRule]] = field(default_factory=dict)

    @classmethod
    def freeze(cls, rules: dict[str, list[_Rule]]) -> _Bucket:
        bucket = cls()
        for host, kept in rules.items():
            target = bucket.wildcards if h.is_wildcard(host) else bucket.exact
            target[host] = [r.freeze() for r in kept]
        return bucket

    def match(self, hostname: str) -> list[MergedDestinationRule]:
        """MostSpecificHostMatch: the rules of the exact host, else of the longest covering wildcard."""
        found = self.exact.get(hostname)
        if found:
            return found
        best = h.most_specific_match(hostname, self.wildcards) if self.wildcards else None
        return self.wildcards[best] if best is not None else []

    def all(self) -> list[MergedDestinationRule]:
        return [r for group in (self.exact, self.wildcards) for rules in group.values() for r in rules]


def _select(
    rules: list[MergedDestinationRule], proxy_namespace: str, proxy_labels: Mapping[str, str]
) -> MergedDestinationRule | None:
    """SidecarScope.DestinationRule: the first rule of the proxy's namespace whose selector matches it,
    else the last selector-less one. No fallback to other namespaces: the host already matched here."""
    catch_all = None
    for r in rules:
        if r.selector is None:
            catch_all = r
        elif r.namespace == proxy_namespace and labels_match(r.selector, proxy_labels):
            return r
    return catch_all


def _exported_to(rule: MergedDestinationRule, namespace: str) -> bool:
    # getExportedDestinationRuleFromNamespace: `.` does not count here (a root-namespace proxy looking at
    # root rules exported to `.` and others does not see them, as in istiod).
    return not rule.export_to or PUBLIC in rule.export_to or namespace in rule.export_to


@dataclass
class DestinationRuleIndex:
    """istiod's destinationRuleIndex: per namespace, the rules its own proxies see (namespaceLocal) and the
    rules it exports to others (exportedByNamespace); plus the root namespace's private rules."""

    namespace_local: dict[str, _Bucket] = field(default_factory=dict)
    exported: dict[str, _Bucket] = field(default_factory=dict)
    root_local: _Bucket = field(default_factory=_Bucket)
    root_namespace: str = "istio-system"
    # Every rule's exact host, and whether any rule has a wildcard host (None: not computed yet). Most
    # services have no DestinationRule: their lookups (one per scope and service) end here.
    _exact_hosts: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _any_wildcard: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def build(
        cls, configs: Iterable[Config], default_export_to: frozenset[str], root_namespace: str, domain: str
    ) -> DestinationRuleIndex:
        local: dict[str, dict[str, list[_Rule]]] = defaultdict(dict)
        exported: dict[str, dict[str, list[_Rule]]] = defaultdict(dict)
        root_local: dict[str, list[_Rule]] = {}
        # sortConfigBySelectorAndCreationTime: workload-specific rules first, then the oldest.
        ordered = sorted(configs, key=lambda c: (c.spec.workload_selector is None, config_creation_key(c)))
        for cfg in ordered:
            spec, ns = cfg.spec, cfg.namespace
            host = h.resolve_short_name(spec.host, ns, domain)
            selector = None
            if spec.workload_selector is not None:
                selector = dict(spec.workload_selector.match_labels or {})
            # A workloadSelector rule is only ever seen from its own namespace; otherwise exportTo as
            # written (empty when unset: the mesh default decides below).
            export_to = frozenset({PRIVATE}) if selector is not None else frozenset(spec.export_to or ())
            if not export_to or export_to & {PUBLIC, PRIVATE, ns}:
                _merge(local[ns], cfg, host, export_to, selector)
            private_only = (not export_to and PRIVATE in default_export_to) or (
                len(export_to) == 1 and bool(export_to & {PRIVATE, ns})
            )
            if not private_only:
                _merge(exported[ns], cfg, host, export_to, selector)
            elif ns == root_namespace:
                _merge(root_local, cfg, host, export_to, selector)
        return cls(
            namespace_local={ns: _Bucket.freeze(rules) for ns, rules in local.items()},
            exported={ns: _Bucket.freeze(rules) for ns, rules in exported.items()},
            root_local=_Bucket.freeze(root_local),
            root_namespace=root_namespace,
        )

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
        """push_context.go destinationRule + SidecarScope.DestinationRule. The first namespace with a rule
        for the host decides, even when none of its rules applies to this proxy's labels."""
        if not self._may_match(hostname):
            return None
        # 1. The proxy's namespace. A root-namespace proxy (a gateway in istio-system) looks only at the
        # root's private rules here, so the service's own namespace wins over mesh-wide root rules.
        if proxy_namespace != self.root_namespace:
            bucket = self.namespace_local.get(proxy_namespace)
            rules = bucket.match(hostname) if bucket is not None else []
        else:
            rules = self.root_local.match(hostname)
        if rules:
            return _select(rules, proxy_namespace, proxy_labels)
        # 2. Rules the service's namespace, then the root namespace, export to the proxy's namespace.
        for ns in (service_namespace, self.root_namespace):
            bucket = self.exported.get(ns)
            visible = (
                [r for r in bucket.match(hostname) if _exported_to(r, proxy_namespace)] if bucket else []
            )
            if visible:
                return _select(visible, proxy_namespace, proxy_labels)
        return None

    def all(self) -> list[MergedDestinationRule]:
        buckets = [*self.namespace_local.values(), *self.exported.values(), self.root_local]
        return [r for b in buckets for r in b.all()]
