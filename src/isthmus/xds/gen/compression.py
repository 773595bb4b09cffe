"""TrafficPolicy.compression.response.decompress as Envoy's decompressor filters.

istio/api's destination_rule.proto has the client proxy decompress what an upstream sends compressed.
No istiod translation of the field was at hand; this is the Envoy feature the proto names. Envoy 1.40
does not register the decompressor as an upstream (cluster) filter, so it runs on the connection
manager, where the response passes after the router: one `envoy.filters.http.decompressor` per encoding
Envoy ships (gzip, br, zstd), present but disabled (HttpFilter.disabled) on every HCM but the sidecar's
inbound, and enabled on each route whose destination's DestinationRule policy (after portLevelSettings
and subset layering, as the cluster's other settings) turns decompression on. Response direction only:
a request body is left as the client sent it. Each filter advertises its encoding in the upstream
request's Accept-Encoding (Envoy's default), so the hop to the upstream may be compressed while the
caller gets the plain body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy.config.route.v3 import route_components_pb2 as RC
from envoy.extensions.compression.brotli.decompressor.v3 import brotli_pb2
from envoy.extensions.compression.gzip.decompressor.v3 import gzip_pb2
from envoy.extensions.compression.zstd.decompressor.v3 import zstd_pb2
from envoy.extensions.filters.http.decompressor.v3 import decompressor_pb2

from isthmus.model.destination_rules import effective_policy
from isthmus.xds.gen import naming
from isthmus.xds.gen import protos as p

if TYPE_CHECKING:
    from isthmus.model.snapshot import Snapshot

# (filter name, decompressor library extension, library config)
DECOMPRESSORS = (
    ("envoy.filters.http.decompressor.gzip", "envoy.compression.gzip.decompressor", gzip_pb2.Gzip),
    ("envoy.filters.http.decompressor.brotli", "envoy.compression.brotli.decompressor", brotli_pb2.Brotli),
    ("envoy.filters.http.decompressor.zstd", "envoy.compression.zstd.decompressor", zstd_pb2.Zstd),
)
REQUEST_RUNTIME_KEY = "isthmus.decompressor.request.enabled"


def decompress_enabled(compression: Any | None) -> bool:
    """`response.decompress` given and not `enabled: false` (`decompress: {}` turns it on)."""
    decompress = getattr(getattr(compression, "response", None), "decompress", None)
    return decompress is not None and decompress.enabled is not False


def _policy_sets_it(policy: Any | None) -> bool:
    if policy is None:
        return False
    if getattr(policy, "compression", None) is not None:
        return True
    return any(pl.compression is not None for pl in policy.port_level_settings or ())


def in_use(snapshot: Snapshot) -> bool:
    """Whether any DestinationRule sets compression (once per snapshot): the filters are added only then,
    so other meshes' listeners stay as they were."""
    return bool(
        snapshot.memo(
            ("decompression_in_use",),
            lambda: any(
                _policy_sets_it(cfg.spec.traffic_policy)
                or any(_policy_sets_it(s.traffic_policy) for s in cfg.spec.subsets or ())
                for cfg in snapshot.configs.get("DestinationRule", [])
            ),
        )
    )


def decompressor_filters() -> list[p.hcm.HttpFilter]:
    """The HCM's filters, disabled until a route enables them."""
    out = []
    for name, library, config in DECOMPRESSORS:
        dc = decompressor_pb2.Decompressor()
        dc.decompressor_library.name = library
        dc.decompressor_library.typed_config.CopyFrom(p.pack(config()))
        common = dc.request_direction_config.common_config
        common.enabled.default_value.value = False
        common.enabled.runtime_key = REQUEST_RUNTIME_KEY
        out.append(p.hcm.HttpFilter(name=name, typed_config=p.pack(dc), disabled=True))
    return out


def cluster_decompresses(lookup: Any, cluster: str) -> bool:
    parsed = naming.parse_outbound_cluster(cluster)
    if parsed is None:
        return False
    port, subset, host = parsed
    return decompress_enabled(effective_policy(lookup(host), port, subset or None).compression)


def _filter_config(disabled: bool) -> RC.FilterConfig:
    out = RC.FilterConfig(disabled=disabled)
    if not disabled:
        # Envoy's PerFilterConfigs: a `config` that is set but empty (no type URL) enables a filter the HCM
        # disables, without a route-specific config (the decompressor has none; one would be refused).
        out.config.SetInParent()
    return out


def _set(typed_per_filter_config: Any, disabled: bool) -> None:
    for name, _, _ in DECOMPRESSORS:
        typed_per_filter_config[name].CopyFrom(p.pack(_filter_config(disabled)))


def apply_to_route(snapshot: Snapshot, lookup: Any, route: RC.Route) -> None:
    """Enable the decompressors on a route to clusters whose policy decompresses. `lookup(host)` is the
    route context's DestinationRule lookup. A split whose destinations disagree enables them on the route
    and disables them again on each weighted cluster that does not decompress."""
    if not in_use(snapshot) or not route.HasField("route"):
        return
    action = route.route
    if action.HasField("weighted_clusters"):
        wanted = [cluster_decompresses(lookup, cw.name) for cw in action.weighted_clusters.clusters]
        if not any(wanted):
            return
        _set(route.typed_per_filter_config, False)
        for cw, on in zip(action.weighted_clusters.clusters, wanted, strict=True):
            if not on:
                _set(cw.typed_per_filter_config, True)
        return
    if action.cluster and cluster_decompresses(lookup, action.cluster):
        _set(route.typed_per_filter_config, False)
