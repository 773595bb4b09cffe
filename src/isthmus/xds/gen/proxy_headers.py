"""ProxyConfig proxyHeaders fields read by more than one generator (istiod's GetProxyHeadersFromProxyConfig
and the places that consume it): attempt counts, HTTP/1 header case, X-Forwarded-Port and X-Forwarded-Host.

Isthmus has no per-workload ProxyConfig, so MeshConfig's defaultConfig is every proxy's ProxyConfig.

- preserveHttp1HeaderCase: every HCM istiod builds (buildHTTPConnectionManager: sidecar inbound and
  outbound, gateways) replaces its `http_protocol_options` with the stateful `preserve_case` formatter;
  clusters of HTTP/1 ports (HTTP or sniffed) carry it in their HTTP/1 upstream options
  (ClusterBuilder.setUpstreamProtocol). Envoy only keeps a header name's case when both codecs of a hop
  preserve it, hence both sides.
- xForwardedPort: every HCM's `append_x_forwarded_port`.
- xForwardedHost: `append_x_forwarded_host` on the sidecar's ALLOW_ANY passthrough route only
  (buildCatchAllVirtualHost); Envoy appends the header when a host rewrite changes the authority.

Also proxyMetadata ISTIO_META_IDLE_TIMEOUT (node metadata IDLE_TIMEOUT), read by the HCMs, the inbound
tcp_proxy and the sidecar's CONNECT tunnels, and ISTIO_META_HTTP10 (node metadata HTTP10), which makes
every HCM accept HTTP/1.0.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.http.header_formatters.preserve_case.v3 import preserve_case_pb2

from isthmus.model.durations import parse_seconds
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import protos as p

# istiod's preserveCaseFormatterConfig / defaultPreserveCaseFormatterConfig.
PRESERVE_CASE_HTTP1 = p.protocol.Http1ProtocolOptions(
    header_key_format=p.protocol.Http1ProtocolOptions.HeaderKeyFormat(
        stateful_formatter=p.typed_extension("preserve_case", preserve_case_pb2.PreserveCaseFormatterConfig())
    )
)


def _default_config(snapshot: Snapshot) -> Any | None:
    """MeshConfig defaultConfig: the ProxyConfig every proxy runs with (no per-workload ProxyConfig here)."""
    spec = snapshot.mesh.spec
    return getattr(spec, "default_config", None) if spec is not None else None


def proxy_headers(snapshot: Snapshot) -> Any | None:
    """MeshConfig defaultConfig.proxyHeaders (None when unset)."""
    dc = _default_config(snapshot)
    return getattr(dc, "proxy_headers", None) if dc is not None else None


def _default_metadata(snapshot: Snapshot, key: str) -> str | None:
    """Node metadata `key` as defaultConfig.proxyMetadata ISTIO_META_<key> sets it for every proxy."""
    dc = _default_config(snapshot)
    return dict(dc.proxy_metadata or {}).get(f"ISTIO_META_{key}") if dc is not None else None


def node_idle_timeout_s(snapshot: Snapshot) -> float | None:
    """Node metadata IDLE_TIMEOUT (proxyMetadata ISTIO_META_IDLE_TIMEOUT): the HCM and tcp_proxy idle
    timeout istiod sets; an unparsable value is ignored, as istiod's parseDuration does. Read once per
    snapshot: every CONNECT route of a TCP or auto port asks."""
    return snapshot.memo(
        ("node_idle_timeout_s",), lambda: _parse_idle(_default_metadata(snapshot, "IDLE_TIMEOUT"))
    )


def _parse_idle(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parse_seconds(value)
    except ValueError:
        return None


def accepts_http_10(snapshot: Snapshot, proxy: Proxy) -> bool:
    """Node metadata HTTP10 = "1" (proxyMetadata ISTIO_META_HTTP10): istiod's enableHTTP10, which sets
    `accept_http_10` on every HCM of the proxy. The node's own metadata wins (a ProxyConfig resource may
    set it per workload); a proxy that sent none falls back to MeshConfig defaultConfig."""
    value = proxy.metadata.get("HTTP10")
    if value is None:
        value = _default_metadata(snapshot, "HTTP10")
    return value == "1"


def counts_attempts(snapshot: Snapshot) -> bool:
    """attemptCount: every virtual host of sidecars and gateways sends x-envoy-attempt-count upstream
    unless it is disabled."""
    headers = proxy_headers(snapshot)
    setting = headers.attempt_count if headers is not None else None
    return not (setting and setting.get("disabled"))


def preserves_header_case(snapshot: Snapshot) -> bool:
    headers = proxy_headers(snapshot)
    return headers is not None and bool(headers.preserve_http1_header_case)


def appends_x_forwarded_port(snapshot: Snapshot) -> bool:
    headers = proxy_headers(snapshot)
    setting = headers.x_forwarded_port if headers is not None else None
    return setting is not None and bool(setting.enabled)


def appends_x_forwarded_host(snapshot: Snapshot) -> bool:
    headers = proxy_headers(snapshot)
    setting = headers.x_forwarded_host if headers is not None else None
    return setting is not None and bool(setting.enabled)


def preserve_upstream_header_case(opts: p.http_options.HttpProtocolOptions) -> None:
    """The formatter on a cluster's HTTP/1 options, explicit or (sniffed port) use-downstream; HTTP/2-only
    options are left alone. Callers decide whether istiod would (see `upstream_preserves_case`)."""
    if opts.HasField("explicit_http_config"):
        if opts.explicit_http_config.HasField("http_protocol_options"):
            opts.explicit_http_config.http_protocol_options.MergeFrom(PRESERVE_CASE_HTTP1)
    elif opts.HasField("use_downstream_protocol_config"):
        opts.use_downstream_protocol_config.http_protocol_options.MergeFrom(PRESERVE_CASE_HTTP1)


def upstream_preserves_case(snapshot: Snapshot, http_port: bool, use_client_protocol: bool) -> bool:
    """Whether istiod leaves the formatter on a cluster's HTTP/1 options. setUpstreamProtocol sets it on
    HTTP/1 ports (HTTP or sniffed); a DestinationRule's useClientProtocol then calls
    setUseDownstreamProtocol twice (applyTrafficPolicy, applyConnectionPool) and the second call, finding
    no explicit HTTP/1 options any more, replaces them with empty ones: the formatter is lost."""
    return http_port and not use_client_protocol and preserves_header_case(snapshot)
