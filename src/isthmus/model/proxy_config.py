"""The effective ProxyConfig of a pod: istiod's ``EffectiveProxyConfig`` (pilot/pkg/model/proxy_config.go).

Precedence, lowest first: MeshConfig ``defaultConfig`` < the root namespace's ProxyConfig without selector
< the pod namespace's ProxyConfig without selector < the first ProxyConfig of the pod's namespace whose
selector matches its labels. Within a namespace the oldest resource wins (istiod sorts by creation time
and takes the first match; the store lists oldest first). A ProxyConfig with ``selector: {}`` (no
matchLabels) is neither namespace-wide (istiod checks ``selector == nil``) nor a workload one (it needs
labels), so it applies to nothing, as in istiod; validation warns about it.

Only ``concurrency`` and ``environmentVariables`` (MeshConfig ``proxyMetadata``) take part: they are all
a ProxyConfig resource carries (istiod's toMeshConfigProxyConfig). Maps merge key by key, the higher
layer winning a key (proto.Merge); ``concurrency`` set to 0 still overrides (istiod's special case).
MeshConfig ``defaultConfig.connectionSettings.globalDownstreamConnectionLimit`` and
``defaultConfig.proxyStatsMatcher`` come along from the mesh default alone: they are bootstrap settings
(the overload manager, the stats matcher), so they too are fixed at pod start.

Istio applies the result when a pod is injected and started, so a pod keeps what it started with until
it restarts (`isthmus restart WORKLOAD`); the runner reports pods whose config is older.

What the local agent does with the environment (as istio-agent does in the istio-proxy container):
every variable is set in the Envoy process's environment; ``ISTIO_META_<KEY>`` also becomes node metadata
``<KEY>`` (a string) and ``ISTIO_METAJSON_<KEY>`` node metadata ``<KEY>`` (parsed JSON), istio-agent's
getNodeMetaData.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from isthmus.registry.build import labels_match

META_PREFIX = "ISTIO_META_"
METAJSON_PREFIX = "ISTIO_METAJSON_"


@dataclass(frozen=True)
class ProxyConfigLayer:
    """What one source contributes (istiod's meshconfig.ProxyConfig restricted to the merged fields)."""

    concurrency: int | None = None
    proxy_metadata: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # "namespace/name" of the ProxyConfig, "" for the mesh default


@dataclass(frozen=True)
class StatsInclusion:
    """MeshConfig ``defaultConfig.proxyStatsMatcher``: the Envoy stats a proxy keeps beside the ones
    istio-agent always keeps (`isthmus.agent.bootstrap.stats_matcher`)."""

    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    regexps: tuple[str, ...] = ()

    def summary(self) -> dict[str, list[str]]:
        return {
            "inclusionPrefixes": list(self.prefixes),
            "inclusionSuffixes": list(self.suffixes),
            "inclusionRegexps": list(self.regexps),
        }


@dataclass(frozen=True)
class EffectiveProxyConfig:
    """The merged result for one pod. `concurrency` None: set nowhere (the runner's default applies)."""

    concurrency: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    # The ProxyConfig resources that took part, lowest precedence first ("namespace/name").
    sources: tuple[str, ...] = ()
    # MeshConfig defaultConfig.connectionSettings.globalDownstreamConnectionLimit (None: unset). A
    # bootstrap setting, so, like the rest, fixed when the pod starts. ProxyConfig resources cannot
    # carry it (istiod's toMeshConfigProxyConfig has no connectionSettings).
    global_downstream_connection_limit: int | None = None
    # MeshConfig defaultConfig.proxyStatsMatcher (None: unset), also a bootstrap setting of the mesh
    # default alone.
    stats_inclusion: StatsInclusion | None = None

    def node_metadata(self) -> dict[str, Any]:
        """istio-agent's getNodeMetaData: ISTIO_META_* as strings, ISTIO_METAJSON_* parsed (an unparsable
        value is refused by validation, so it is skipped here only defensively)."""
        meta: dict[str, Any] = {}
        for key, value in sorted(self.environment.items()):
            if key.startswith(METAJSON_PREFIX):
                try:
                    meta[key.removeprefix(METAJSON_PREFIX)] = json.loads(value)
                except ValueError:
                    continue
            elif key.startswith(META_PREFIX):
                meta[key.removeprefix(META_PREFIX)] = value
        return meta

    def global_downstream_max_connections(self) -> int | None:
        """The overload manager's connection limit for the bootstrap: connectionSettings'
        globalDownstreamConnectionLimit, else the ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS proxy
        metadata (Istio's documented precedence); None (the agent's default) when neither is a positive
        number, since Envoy's DownstreamConnectionsConfig takes only a limit above 0."""
        for value in (
            self.global_downstream_connection_limit,
            self.environment.get(META_PREFIX + "GLOBAL_DOWNSTREAM_MAX_CONNECTIONS"),
        ):
            try:
                limit = int(value) if value is not None else 0
            except ValueError:
                continue
            if limit > 0:
                return limit
        return None

    def fingerprint(self) -> str:
        """Stable text to compare what a pod started with against what it would get now."""
        fields: dict[str, Any] = {"concurrency": self.concurrency, "environment": dict(self.environment)}
        if self.global_downstream_connection_limit is not None:
            fields["globalDownstreamConnectionLimit"] = self.global_downstream_connection_limit
        if self.stats_inclusion is not None:
            fields["proxyStatsMatcher"] = self.stats_inclusion.summary()
        return json.dumps(fields, sort_keys=True)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "concurrency": self.concurrency,
            "environment": dict(sorted(self.environment.items())),
            "sources": list(self.sources),
        }
        if self.global_downstream_connection_limit is not None:
            out["globalDownstreamConnectionLimit"] = self.global_downstream_connection_limit
        if self.stats_inclusion is not None:
            out["proxyStatsMatcher"] = self.stats_inclusion.summary()
        return out


def merge_with_precedence(*layers: ProxyConfigLayer | None) -> ProxyConfigLayer:
    """istiod's mergeWithPrecedence: earlier layers win; maps merge per key; concurrency 0 counts as set."""
    concurrency: int | None = None
    metadata: dict[str, str] = {}
    sources: list[str] = []
    for layer in reversed(layers):
        if layer is None:
            continue
        metadata.update(layer.proxy_metadata)
        if layer.concurrency is not None:
            concurrency = layer.concurrency
        if layer.source:
            sources.append(layer.source)
    return ProxyConfigLayer(concurrency, metadata, ",".join(sources))


def layer_of_resource(cfg: Any) -> ProxyConfigLayer:
    """istiod's toMeshConfigProxyConfig for a stored ProxyConfig (a store Config or a Resource)."""
    spec = cfg.spec
    return ProxyConfigLayer(
        concurrency=spec.concurrency,
        proxy_metadata=dict(spec.environment_variables or {}),
        source=f"{cfg.namespace}/{cfg.name}",
    )


def layer_of_mesh_default(default_config: Any | None) -> ProxyConfigLayer | None:
    """MeshConfig defaultConfig (a MeshProxyConfig model), or None when the mesh sets none."""
    if default_config is None:
        return None
    return ProxyConfigLayer(
        concurrency=default_config.concurrency, proxy_metadata=dict(default_config.proxy_metadata or {})
    )


def _namespace_layer(configs: list[Any], namespace: str) -> ProxyConfigLayer | None:
    """istiod's mergedNamespaceConfig: the oldest ProxyConfig of the namespace without a selector."""
    for cfg in configs:
        if cfg.namespace == namespace and cfg.spec.selector is None:
            return layer_of_resource(cfg)
    return None


def _workload_layer(configs: list[Any], namespace: str, labels: Mapping[str, str]) -> ProxyConfigLayer | None:
    """istiod's mergedWorkloadConfig: the oldest ProxyConfig of the namespace whose matchLabels are a
    subset of the pod's labels."""
    for cfg in configs:
        selector = cfg.spec.selector
        match = dict(selector.match_labels or {}) if selector is not None else {}
        if cfg.namespace != namespace or not match:
            continue
        if labels_match(match, labels):
            return layer_of_resource(cfg)
    return None


def effective_proxy_config(
    proxy_configs: Iterable[Any],
    *,
    default_config: Any | None,
    root_namespace: str,
    namespace: str,
    labels: Mapping[str, str],
) -> EffectiveProxyConfig:
    """The ProxyConfig a pod of `namespace` with `labels` starts with. `proxy_configs`: stored
    ProxyConfig resources, oldest first (Store.list order)."""
    configs = list(proxy_configs)
    merged = merge_with_precedence(layer_of_mesh_default(default_config))
    if root_namespace:
        merged = merge_with_precedence(_namespace_layer(configs, root_namespace), merged)
    if namespace != root_namespace:
        merged = merge_with_precedence(_namespace_layer(configs, namespace), merged)
    merged = merge_with_precedence(_workload_layer(configs, namespace, labels), merged)
    sources = tuple(s for s in merged.source.split(",") if s)
    settings = getattr(default_config, "connection_settings", None) if default_config is not None else None
    limit = settings.global_downstream_connection_limit if settings is not None else None
    matcher = getattr(default_config, "proxy_stats_matcher", None) if default_config is not None else None
    inclusion = (
        StatsInclusion(
            tuple(matcher.inclusion_prefixes),
            tuple(matcher.inclusion_suffixes),
            tuple(matcher.inclusion_regexps),
        )
        if matcher is not None
        else None
    )
    return EffectiveProxyConfig(merged.concurrency, dict(merged.proxy_metadata), sources, limit, inclusion)
