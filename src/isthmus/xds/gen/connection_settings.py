"""ProxyConfig.connectionSettings (MeshConfig defaultConfig), as istiod's connection_settings.go.

Explicitly set fields apply to every proxy: per-connection buffer limits on its listeners and clusters,
and timeouts, HTTP/2 settings and header/path normalization on every HTTP connection manager (taking
precedence over MeshConfig pathNormalization). The EDGE profile adds Envoy's edge best-practice defaults
for the fields left unset, on gateways only (istiod's applyEdgeProfileDefaults: Router proxies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isthmus.model.durations import to_seconds
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import protos as p

# applyEdgeProfileDefaults: Envoy's edge proxy recommendations, in the API's own (YAML) terms.
EDGE_DEFAULTS: dict[str, Any] = {
    "listener_per_connection_buffer_limit_bytes": 32768,
    "cluster_per_connection_buffer_limit_bytes": 32768,
    "http_idle_timeout": "3600s",
    "http_stream_idle_timeout": "300s",
    "http_request_timeout": "300s",
    "http_request_headers_timeout": "60s",
    "http_max_concurrent_streams": 100,
    "http2_initial_stream_window_size": 65536,
    "http2_initial_connection_window_size": 1048576,
    "http_headers_with_underscores_action": "HEADERS_WITH_UNDERSCORES_REJECT_REQUEST",
    "http_merge_slashes": True,
    "http_path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
}
# The enums' zero values: unset, as a nil field is.
_UNSPECIFIED = ("HEADERS_WITH_UNDERSCORES_UNSPECIFIED", "PATH_WITH_ESCAPED_SLASHES_UNSPECIFIED")

_HCM = p.hcm.HttpConnectionManager
_HEADERS_WITH_UNDERSCORES = {
    "HEADERS_WITH_UNDERSCORES_ALLOW": p.protocol.HttpProtocolOptions.ALLOW,
    "HEADERS_WITH_UNDERSCORES_REJECT_REQUEST": p.protocol.HttpProtocolOptions.REJECT_REQUEST,
    "HEADERS_WITH_UNDERSCORES_DROP_HEADER": p.protocol.HttpProtocolOptions.DROP_HEADER,
}
_PATH_WITH_ESCAPED_SLASHES = {
    "KEEP_UNCHANGED": _HCM.KEEP_UNCHANGED,
    "REJECT_REQUEST": _HCM.REJECT_REQUEST,
    "UNESCAPE_AND_REDIRECT": _HCM.UNESCAPE_AND_REDIRECT,
    "UNESCAPE_AND_FORWARD": _HCM.UNESCAPE_AND_FORWARD,
}
# HCM duration fields by setting; idle, max connection and max stream durations are the common options'.
_HCM_TIMEOUTS = {
    "http_stream_idle_timeout": "stream_idle_timeout",
    "http_request_timeout": "request_timeout",
    "http_request_headers_timeout": "request_headers_timeout",
    "http_drain_timeout": "drain_timeout",
}
_COMMON_TIMEOUTS = {
    "http_idle_timeout": "idle_timeout",
    "http_max_connection_duration": "max_connection_duration",
    "http_max_stream_duration": "max_stream_duration",
}
_HTTP2 = {
    "http_max_concurrent_streams": "max_concurrent_streams",
    "http2_initial_stream_window_size": "initial_stream_window_size",
    "http2_initial_connection_window_size": "initial_connection_window_size",
}


@dataclass(frozen=True)
class Settings:
    """The effective settings of a proxy: field name (the model's) -> value, unset fields left out."""

    values: dict[str, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def size(self, name: str) -> int | None:
        """An Int32Value setting as Envoy's UInt32Value (istiod's safeUint32: a negative one is unset)."""
        value = self.values.get(name)
        return value if value is not None and value >= 0 else None


def resolve(snapshot: Snapshot, proxy: Proxy) -> Settings | None:
    """istiod's resolveConnectionSettings: MeshConfig defaultConfig.connectionSettings, with the EDGE
    profile's defaults for gateways. None when not set."""
    return snapshot.memo(("connection_settings", proxy.kind == "gateway"), lambda: _resolve(snapshot, proxy))


def _resolve(snapshot: Snapshot, proxy: Proxy) -> Settings | None:
    spec = snapshot.mesh.spec
    default_config = getattr(spec, "default_config", None) if spec is not None else None
    cs = getattr(default_config, "connection_settings", None) if default_config is not None else None
    if cs is None:
        return None
    values = {
        name: value
        for name, value in cs.model_dump(exclude_none=True).items()
        if name != "profile" and value not in _UNSPECIFIED
    }
    if cs.profile == "EDGE" and proxy.kind == "gateway":
        values = {**EDGE_DEFAULTS, **values}
    return Settings(values)


def apply_to_hcm(m: p.hcm.HttpConnectionManager, settings: Settings | None) -> None:
    """istiod's applyConnectionSettingsToHCM: the set fields replace what the HCM had (its stream idle
    timeout, MeshConfig pathNormalization's merge_slashes and escaped-slashes action)."""
    if settings is None:
        return
    for name, field in _COMMON_TIMEOUTS.items():
        value = settings.get(name)
        if value is not None:
            getattr(m.common_http_protocol_options, field).CopyFrom(p.duration(to_seconds(value)))
    for name, field in _HCM_TIMEOUTS.items():
        value = settings.get(name)
        if value is not None:
            getattr(m, field).CopyFrom(p.duration(to_seconds(value)))
    if any(settings.get(name) is not None for name in _HTTP2):
        m.http2_protocol_options.SetInParent()
        for name, field in _HTTP2.items():
            size = settings.size(name)
            if size is not None:
                getattr(m.http2_protocol_options, field).value = size
    action = settings.get("http_headers_with_underscores_action")
    if action is not None:
        m.common_http_protocol_options.headers_with_underscores_action = _HEADERS_WITH_UNDERSCORES[action]
    merge = settings.get("http_merge_slashes")
    if merge is not None:
        m.merge_slashes = merge
    escaped = settings.get("http_path_with_escaped_slashes_action")
    if escaped is not None:
        m.path_with_escaped_slashes_action = _PATH_WITH_ESCAPED_SLASHES[escaped]


def listener_buffer_limit(snapshot: Snapshot, proxy: Proxy) -> int | None:
    """listenerPerConnectionBufferLimitBytes, for every listener of the proxy."""
    settings = resolve(snapshot, proxy)
    return settings.size("listener_per_connection_buffer_limit_bytes") if settings is not None else None


def cluster_buffer_limit(snapshot: Snapshot, proxy: Proxy) -> int | None:
    """clusterPerConnectionBufferLimitBytes, for every outbound and inbound cluster of the proxy."""
    settings = resolve(snapshot, proxy)
    return settings.size("cluster_per_connection_buffer_limit_bytes") if settings is not None else None
