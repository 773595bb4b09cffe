"""Envoy bootstrap for a sidecar or gateway, modelled on Istio's ``envoy_bootstrap.json``.

What istio-agent renders from ``tools/packaging/common/envoy_bootstrap.json``, adapted to local mode:

- the node carries istiod's id format and istio-agent's metadata (see `isthmus.model.proxy.Proxy`), and
  ``node.cluster`` is Istio's service cluster ``<workload>.<namespace>``;
- the admin endpoint, the health listener (15021) and the Prometheus listener (15090) listen on the pod
  address, not on 127.0.0.1/0.0.0.0: every pod has its own loopback address and uses Istio's port numbers;
- LDS and CDS come over one ADS stream to the static cluster ``xds-grpc`` (plaintext gRPC to the control
  plane instead of istio-agent's unix socket); ``initial_fetch_timeout: 0s`` makes Envoy wait for its
  first LDS/CDS, so the admin ``/ready`` endpoint reports ``LIVE`` only once the proxy holds its config;
- ``/healthz/ready`` on the health port is routed to Envoy's own admin ``/ready`` (Istio routes it to
  istio-agent, which asks the same endpoint); ``/stats/prometheus`` on the Prometheus port is routed to
  the admin endpoint exactly as Istio does;
- every upstream connection binds the pod address (``cluster_manager.upstream_bind_config``): on loopback
  the kernel would otherwise pick 127.0.0.1 as the source, and peers must see the pod's address (ipBlocks,
  access logs). The bind is global, so generated clusters carry nothing proxy-specific and stay shareable;
- runtime, overload manager and stats tags follow Istio's defaults, and so does the stats matcher:
  Envoy keeps only the stats istio-agent's inclusion list names (`stats_matcher`), plus MeshConfig
  ``defaultConfig.proxyStatsMatcher``'s; every other counter, gauge and histogram is a null stat, which
  costs neither memory per cluster nor work per request;
- a sidecar started with ``ISTIO_META_ENABLE_SELF_DISCOVERY=true`` gets istio-agent's self-discovery
  cluster: a static EDS cluster ``local_cluster`` (over ADS) named by ``cluster_manager.local_cluster_name``,
  the originating cluster Envoy's zone-aware routing compares the upstream's zones against (Envoy wants
  the local cluster to be a static one; the control plane answers its EDS: `xds.gen.zone_aware`).

The result is plain v3 JSON (a ``dict``); `EnvoyProcess` writes it to ``envoy.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from isthmus.model.mesh import VHDS_KEY
from isthmus.model.proxy import Proxy
from isthmus.model.proxy_config import StatsInclusion
from isthmus.registry.types import split_locality
from isthmus.xds.gen import zone_aware

XDS_CLUSTER = "xds-grpc"
SDS_CLUSTER = "sds-grpc"
AGENT_CLUSTER = "agent"
PROMETHEUS_CLUSTER = "prometheus_stats"

DEFAULT_ADMIN_PORT = 15000
DEFAULT_HEALTH_PORT = 15021
DEFAULT_PROMETHEUS_PORT = 15090

# Istio's ProxyConfig.drainDuration default (passed to Envoy as --drain-time-s).
DEFAULT_DRAIN_TIME_S = 45.0

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FILE_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_DOWNSTREAM_CONNECTIONS = "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"

# Istio's runtime defaults (pkg/bootstrap/config.go extractRuntimeFlags), minus what only concerns
# istio-proxy builds or removed fields:
# - the global downstream connection limit lives in the overload manager below: Envoy 1.40 deprecates
#   the `overload.global_downstream_max_connections` runtime key in favour of that resource monitor
#   (and warns when both are set);
# - `re2.max_program_size.error_level` lets generated regexes (VirtualService regex matches, authz)
#   be as large as istiod allows;
# - `http_reject_path_with_fragment: false` makes Envoy strip a `#fragment` from the request path
#   instead of rejecting the request, as Istio does by default.
RUNTIME_FLAGS: dict[str, Any] = {
    "re2.max_program_size.error_level": "32768",
    "envoy.reloadable_features.http_reject_path_with_fragment": "false",
}

GLOBAL_DOWNSTREAM_MAX_CONNECTIONS = 2147483647

# Istio's stats tag extraction for cluster and listener names (`use_all_default_tags: false`), so that
# `/stats/prometheus` reads as an Istio sidecar's does: `cluster_name="outbound|9080||reviews..."`.
STATS_TAGS: list[dict[str, str]] = [
    {"tag_name": "cluster_name", "regex": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"},
    {"tag_name": "tcp_prefix", "regex": r"^tcp\.((.*?)\.)\w+?$"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
    {
        "tag_name": "http_conn_manager_listener_prefix",
        "regex": r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    },
    {
        "tag_name": "http_conn_manager_prefix",
        "regex": r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    },
    {
        "tag_name": "listener_address",
        "regex": r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    },
    {"tag_name": "authz_enforce_result", "regex": r"rbac(\.(allowed|denied))"},
    {"tag_name": "authz_dry_run_result", "regex": r"(\.shadow_(allowed|denied))"},
]


# istio-agent's stats inclusion list (pkg/bootstrap/config.go getStatsOptions; the template's
# stats_matcher). downstream_cx_active is istio-agent's only with EXIT_ON_ZERO_ACTIVE_CONNECTIONS; the
# local agent always ends a drain once no connection is left, reading it (mesh/pods.py _wait_drained).
REQUIRED_STATS_PREFIXES = ("cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm")
REQUIRED_STATS_SUFFIXES = (
    "rbac.allowed",
    "rbac.denied",
    "shadow_allowed",
    "shadow_denied",
    "downstream_cx_active",
)
REQUIRED_STATS_REGEXPS = (r"vhost\..*\.route\..*",)
POD_IP_VARIABLE = "{pod_ip}"


def _with_pod_ips(patterns: Sequence[str], ips: Sequence[str]) -> list[str]:
    """istio-agent's substituteValues: a pattern naming {pod_ip} once per instance IP."""
    out: list[str] = []
    for pattern in patterns:
        if POD_IP_VARIABLE in pattern:
            out.extend(pattern.replace(POD_IP_VARIABLE, ip) for ip in ips)
        else:
            out.append(pattern)
    return out


def stats_matcher(ips: Sequence[str], inclusion: StatsInclusion | None = None) -> dict[str, Any]:
    """The bootstrap's ``stats_config.stats_matcher``, in istio-agent's order: ``reporter=``, then the
    prefixes, suffixes and regexps (each the user's before the required ones), then ``component`` and
    ``istio``."""
    inc = inclusion or StatsInclusion()
    prefixes = _with_pod_ips([*inc.prefixes, *REQUIRED_STATS_PREFIXES], ips)
    suffixes = _with_pod_ips([*inc.suffixes, *REQUIRED_STATS_SUFFIXES], ips)
    regexps = _with_pod_ips([*inc.regexps, *REQUIRED_STATS_REGEXPS], ips)
    patterns: list[dict[str, Any]] = [{"prefix": "reporter="}]
    patterns += [{"prefix": p} for p in prefixes]
    patterns += [{"suffix": s} for s in suffixes]
    patterns += [{"safe_regex": {"regex": r}} for r in regexps]
    patterns += [{"prefix": "component"}, {"prefix": "istio"}]
    return {"inclusion_list": {"patterns": patterns}}


def service_cluster(proxy: Proxy) -> str:
    """Istio's service cluster (tracingServiceName APP_LABEL_AND_NAMESPACE, the default), which tracers
    report as the service name: ``<app label>.<namespace>``, else the workload's name."""
    name = proxy.labels.get("app") or proxy.workload or proxy.instance
    return f"{name}.{proxy.namespace}"


def _socket_address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"protocol": "TCP", "address": ip, "port_value": port}}


def _static_cluster(name: str, address: dict[str, Any], *, connect_timeout: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _self_discovery_cluster(xds_source: Mapping[str, Any]) -> dict[str, Any]:
    """istio-agent's self-discovery cluster: EDS over ADS, the resource named as the cluster."""
    name = zone_aware.SELF_DISCOVERY_CLUSTER
    return {
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "eds_cluster_config": {"eds_config": dict(xds_source), "service_name": name},
    }


def _http2_options() -> dict[str, Any]:
    return {
        _HTTP_OPTIONS: {
            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _grpc_cluster(name: str, address: dict[str, Any]) -> dict[str, Any]:
    cluster = _static_cluster(name, address, connect_timeout="1s")
    cluster["typed_extension_protocol_options"] = _http2_options()
    return cluster


def _xds_cluster(xds_address: tuple[str, int]) -> dict[str, Any]:
    host, port = xds_address
    cluster = _grpc_cluster(XDS_CLUSTER, _socket_address(host, port))
    limits = {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}
    cluster["circuit_breakers"] = {
        "thresholds": [{"priority": "DEFAULT", **limits}, {"priority": "HIGH", **limits}]
    }
    cluster["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 300}}
    return cluster


def _sds_cluster(socket_path: str) -> dict[str, Any]:
    return _grpc_cluster(SDS_CLUSTER, {"pipe": {"path": socket_path}})


def _http_listener(
    name: str,
    ip: str,
    port: int,
    *,
    stat_prefix: str,
    prefix: str,
    cluster: str,
    prefix_rewrite: str | None = None,
) -> dict[str, Any]:
    route: dict[str, Any] = {"cluster": cluster}
    if prefix_rewrite is not None:
        route["prefix_rewrite"] = prefix_rewrite
    return {
        "name": name,
        "address": _socket_address(ip, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _HCM,
                            "codec_type": "AUTO",
                            "stat_prefix": stat_prefix,
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "backend",
                                        "domains": ["*"],
                                        "routes": [{"match": {"prefix": prefix}, "route": route}],
                                    }
                                ]
                            },
                            "http_filters": [
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}
                            ],
                        },
                    }
                ]
            }
        ],
    }


def _locality(locality: str) -> dict[str, str]:
    region, zone, sub_zone = split_locality(locality)
    return {k: v for k, v in (("region", region), ("zone", zone), ("sub_zone", sub_zone)) if v}


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def build_bootstrap(
    proxy: Proxy,
    *,
    xds_address: tuple[str, int],
    admin_port: int = DEFAULT_ADMIN_PORT,
    health_port: int | None = DEFAULT_HEALTH_PORT,
    prometheus_port: int | None = DEFAULT_PROMETHEUS_PORT,
    concurrency: int = 2,
    cluster_name: str | None = None,
    tracing: Mapping[str, Any] | None = None,
    extra_static_clusters: Sequence[Mapping[str, Any]] = (),
    sds_socket: str | None = None,
    drain_time_s: float = DEFAULT_DRAIN_TIME_S,
    runtime: Mapping[str, Any] | None = None,
    delta_xds: bool = True,
    vhds: bool = True,
    global_downstream_max_connections: int | None = None,
    stats_inclusion: StatsInclusion | None = None,
) -> dict[str, Any]:
    """The Envoy v3 bootstrap (JSON-ready dict) for `proxy`.

    `xds_address` is the control plane's plaintext ADS address. Ports are parameters because the runner
    may shift them; `health_port`/`prometheus_port` set to None leave that listener out. `cluster_name`
    overrides the node's service cluster. `tracing` is put in the bootstrap as given (with the collector
    cluster in `extra_static_clusters`). `sds_socket` adds Istio's ``sds-grpc`` cluster on that unix
    socket. `concurrency` and `drain_time_s` are not bootstrap fields: like istio-agent, they are recorded
    in the node metadata (``PROXY_CONFIG``), the process flags are set by `EnvoyProcess`. `delta_xds`:
    the ADS stream speaks delta (incremental) xDS, as istio-agent's default ``ISTIO_DELTA_XDS=true``;
    False for state of the world. `vhds` False puts ``ISTHMUS_VHDS: "false"`` in the node metadata: the
    control plane then sends the sidecar table inline instead of its virtual hosts over VHDS.
    `global_downstream_max_connections` (ProxyConfig connectionSettings.globalDownstreamConnectionLimit)
    replaces Istio's default limit in the overload manager's downstream connections monitor.
    `stats_inclusion` (MeshConfig defaultConfig.proxyStatsMatcher) adds to the stats Envoy keeps.
    """
    ip = proxy.ip
    host, port = xds_address

    metadata = proxy.node_metadata()
    proxy_config = dict(metadata.get("PROXY_CONFIG") or {})
    proxy_config.update(
        {
            "discoveryAddress": f"{host}:{port}",
            "proxyAdminPort": admin_port,
            "concurrency": concurrency,
            "drainDuration": _format_seconds(drain_time_s),
        }
    )
    if health_port is not None:
        proxy_config["statusPort"] = health_port
    if stats_inclusion is not None:
        # istio-agent's node metadata carries the whole effective ProxyConfig, empty fields left out.
        matcher = {k: v for k, v in stats_inclusion.summary().items() if v}
        if matcher:
            proxy_config["proxyStatsMatcher"] = matcher
    metadata["PROXY_CONFIG"] = proxy_config
    if not vhds:
        metadata[VHDS_KEY] = "false"

    admin_address = _socket_address(ip, admin_port)
    clusters: list[dict[str, Any]] = []
    listeners: list[dict[str, Any]] = []
    if prometheus_port is not None:
        clusters.append(_static_cluster(PROMETHEUS_CLUSTER, admin_address, connect_timeout="0.250s"))
        listeners.append(
            _http_listener(
                f"{ip}_{prometheus_port}",
                ip,
                prometheus_port,
                stat_prefix="stats",
                prefix="/stats/prometheus",
                cluster=PROMETHEUS_CLUSTER,
            )
        )
    if health_port is not None:
        # Istio's agent cluster points at istio-agent (15020), which answers /healthz/ready by asking
        # Envoy's /ready; we have no agent, so the cluster is the admin endpoint and the path is rewritten.
        clusters.append(_static_cluster(AGENT_CLUSTER, admin_address, connect_timeout="0.250s"))
        listeners.append(
            _http_listener(
                f"{ip}_{health_port}",
                ip,
                health_port,
                stat_prefix="agent",
                prefix="/healthz/ready",
                cluster=AGENT_CLUSTER,
                prefix_rewrite="/ready",
            )
        )
    if sds_socket is not None:
        clusters.append(_sds_cluster(sds_socket))
    clusters.append(_xds_cluster(xds_address))
    clusters.extend(copy.deepcopy(dict(c)) for c in extra_static_clusters)

    xds_source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    cluster_manager: dict[str, Any] = {
        "upstream_bind_config": {"source_address": {"address": ip, "port_value": 0}},
    }
    if zone_aware.self_discovery(proxy):
        clusters.append(_self_discovery_cluster(xds_source))
        cluster_manager["local_cluster_name"] = zone_aware.SELF_DISCOVERY_CLUSTER
    bootstrap: dict[str, Any] = {
        "node": {
            "id": proxy.id,
            "cluster": cluster_name or service_cluster(proxy),
            "metadata": metadata,
            # As istio-agent's bootstrap: Envoy reports it in its node, and the control plane falls back
            # on it when the proxy's labels give no locality.
            **({"locality": _locality(proxy.locality)} if proxy.locality else {}),
        },
        "layered_runtime": {
            "layers": [
                {"name": "global config", "static_layer": {**RUNTIME_FLAGS, **(runtime or {})}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS,
                        "max_active_downstream_connections": global_downstream_max_connections
                        or GLOBAL_DOWNSTREAM_MAX_CONNECTIONS,
                    },
                }
            ]
        },
        "stats_config": {
            "use_all_default_tags": False,
            "stats_tags": copy.deepcopy(STATS_TAGS),
            "stats_matcher": stats_matcher([ip], stats_inclusion),
        },
        "admin": {
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {"@type": _FILE_ACCESS_LOG, "path": "/dev/null"},
                }
            ],
            "address": admin_address,
        },
        "dynamic_resources": {
            "lds_config": dict(xds_source),
            "cds_config": dict(xds_source),
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta_xds else "GRPC",
                "set_node_on_first_message_only": True,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
        },
        "cluster_manager": cluster_manager,
        "static_resources": {"clusters": clusters, "listeners": listeners},
    }
    if tracing is not None:
        bootstrap["tracing"] = copy.deepcopy(dict(tracing))
    return bootstrap
