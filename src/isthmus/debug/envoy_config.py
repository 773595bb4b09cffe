"""A proxy's xDS config as plain dicts in Envoy's JSON form (snake_case field names, `@type` on Any).

Two sources give the same shape: Envoy's admin `/config_dump?include_eds` (what the proxy holds) and
the control plane's generators (`MessageToDict(..., preserving_proto_field_name=True)`, what it would
hold). Everything here reads dicts, so the same evaluation runs on both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
HCM_NAME = "envoy.filters.network.http_connection_manager"


def with_vhost_names(rc: Mapping[str, Any]) -> Mapping[str, Any]:
    """A route configuration from a config dump with its virtual hosts named as generated. Envoy names
    those it got over VHDS by their resource name, `<route config>/<virtual host>` (a delta sidecar's
    `http_proxy` table): the prefix is taken off, so tools show Istio's names either way."""
    if "vhds" not in rc:
        return rc
    prefix = f"{rc.get('name', '')}/"
    vhosts = []
    for vh in rc.get("virtual_hosts") or ():
        name = str(vh.get("name", ""))
        vhosts.append({**vh, "name": name.removeprefix(prefix)} if name.startswith(prefix) else vh)
    return {**rc, "virtual_hosts": vhosts}


@dataclass
class EndpointInfo:
    address: str
    port: int
    health_status: str = "HEALTHY"  # EDS health (UNKNOWN counts as healthy in Envoy)
    weight: int = 1
    workload: str = ""  # istio.workload metadata: name;namespace;app;version;cluster
    locality: str = ""
    mtls: bool = False  # tlsMode istio (auto mTLS to a sidecar)
    pod: str = ""  # `envoy.lb` metadata `pod`: a headless service's endpoint, which routes may pin
    # From admin /clusters, when fetched: e.g. ["failed_outlier_check"]; None = not known.
    runtime_flags: list[str] | None = None

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def healthy(self) -> bool:
        if self.health_status not in ("HEALTHY", "UNKNOWN", "DEGRADED", ""):
            return False
        return not self.runtime_flags

    @property
    def workload_name(self) -> str:
        return self.workload.split(";", 1)[0] if self.workload else ""

    @property
    def version(self) -> str:
        parts = self.workload.split(";")
        return parts[3] if len(parts) > 3 else ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.key,
            "health": self.health_status or "HEALTHY",
            "healthy": self.healthy,
            "weight": self.weight,
        }
        if self.workload_name:
            out["workload"] = self.workload_name
        if self.version:
            out["version"] = self.version
        if self.locality:
            out["locality"] = self.locality
        if self.runtime_flags:
            out["flags"] = list(self.runtime_flags)
        if self.mtls:
            out["mtls"] = True
        return out


def address_of(addr: Mapping[str, Any]) -> tuple[str, int]:
    """An Envoy Address as (address, port): ip and port, `unix://path` for a pipe (a unix-socket
    endpoint), `envoy://listener/id` for an internal address."""
    if "socket_address" in addr:
        sa = addr["socket_address"] or {}
        return str(sa.get("address", "")), int(sa.get("port_value", 0) or 0)
    if "pipe" in addr:
        return "unix://" + str((addr["pipe"] or {}).get("path", "")), 0
    if "envoy_internal_address" in addr:
        internal = addr["envoy_internal_address"] or {}
        return f"envoy://{internal.get('server_listener_name', '')}/{internal.get('endpoint_id', '')}", 0
    return "unknown", 0


def _endpoints_of_assignment(cla: Mapping[str, Any]) -> list[EndpointInfo]:
    out = []
    for group in cla.get("endpoints", []) or []:
        loc = group.get("locality") or {}
        locality = "/".join(
            x for x in (loc.get("region", ""), loc.get("zone", ""), loc.get("sub_zone", "")) if x
        )
        for lb in group.get("lb_endpoints", []) or []:
            address, port = address_of((lb.get("endpoint") or {}).get("address") or {})
            md = (lb.get("metadata") or {}).get("filter_metadata") or {}
            weight = lb.get("load_balancing_weight", 1)
            if isinstance(weight, dict):  # a wrapper written out as {"value": n}
                weight = weight.get("value", 1)
            out.append(
                EndpointInfo(
                    address=address,
                    port=port,
                    health_status=str(lb.get("health_status", "HEALTHY") or "HEALTHY"),
                    weight=int(weight or 1),
                    workload=str((md.get("istio") or {}).get("workload", "")),
                    locality=locality,
                    mtls=(md.get("envoy.transport_socket_match") or {}).get("tlsMode") == "istio",
                    pod=str((md.get("envoy.lb") or {}).get("pod", "")),
                )
            )
    return out


@dataclass
class ProxyConfig:
    listeners: list[dict[str, Any]] = field(default_factory=list)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    # cluster name -> ClusterLoadAssignment (EDS, or the cluster's own load_assignment)
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str = ""
    source: str = "envoy"  # "envoy" (held by the proxy) or "candidate" (generated with candidate config)
    # cluster -> "ip:port" -> runtime health flags, from admin /clusters?format=json (when fetched)
    runtime_health: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # cluster -> circuit-breaker/overflow counters (when fetched)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_config_dump(cls, dump: Mapping[str, Any]) -> ProxyConfig:
        """From Envoy's admin `/config_dump?include_eds`."""
        out = cls(source="envoy")
        for c in dump.get("configs", []) or []:
            t = str(c.get("@type", ""))
            if t.endswith("ListenersConfigDump"):
                for entry in c.get("static_listeners", []) or []:
                    if entry.get("listener"):
                        out.listeners.append(entry["listener"])
                for entry in c.get("dynamic_listeners", []) or []:
                    state = entry.get("active_state") or entry.get("warming_state") or {}
                    if state.get("listener"):
                        out.listeners.append(state["listener"])
                out.version = out.version or str(c.get("version_info", ""))
            elif t.endswith("RoutesConfigDump"):
                for entry in c.get("dynamic_route_configs", []) or []:
                    rc = entry.get("route_config") or {}
                    if rc.get("name"):
                        out.routes[rc["name"]] = with_vhost_names(rc)
                for entry in c.get("static_route_configs", []) or []:
                    rc = entry.get("route_config") or {}
                    if rc.get("name"):
                        out.routes.setdefault(rc["name"], rc)
            elif t.endswith("ClustersConfigDump"):
                for key in ("static_clusters", "dynamic_active_clusters", "dynamic_warming_clusters"):
                    for entry in c.get(key, []) or []:
                        cl = entry.get("cluster") or {}
                        if cl.get("name"):
                            out.clusters.setdefault(cl["name"], cl)
                if c.get("version_info"):
                    out.version = str(c["version_info"])
            elif t.endswith("EndpointsConfigDump"):
                for key in ("static_endpoint_configs", "dynamic_endpoint_configs"):
                    for entry in c.get(key, []) or []:
                        cla = entry.get("endpoint_config") or {}
                        if cla.get("cluster_name"):
                            out.assignments[cla["cluster_name"]] = cla
        out._add_inline_assignments()
        return out

    @classmethod
    def from_generated(cls, data: Mapping[str, Any], source: str = "candidate") -> ProxyConfig:
        """From the HTTP API's preview: `{"version", "listeners": [...], "routes": [...], ...}`."""
        out = cls(source=source, version=str(data.get("version", "")))
        out.listeners = list(data.get("listeners", []) or [])
        out.routes = {r["name"]: r for r in data.get("routes", []) or [] if r.get("name")}
        out.clusters = {c["name"]: c for c in data.get("clusters", []) or [] if c.get("name")}
        for cla in data.get("endpoints", []) or []:
            if cla.get("cluster_name"):
                out.assignments[cla["cluster_name"]] = cla
        out._add_inline_assignments()
        return out

    def _add_inline_assignments(self) -> None:
        """Clusters that carry their endpoints inline (STATIC, STRICT_DNS) have no EDS assignment."""
        for name, cl in self.clusters.items():
            if name not in self.assignments and cl.get("load_assignment"):
                self.assignments[name] = cl["load_assignment"]

    def add_cluster_status(self, clusters_json: Mapping[str, Any]) -> None:
        """Runtime host health from admin `/clusters?format=json` (outlier ejections, EDS health)."""
        for cs in clusters_json.get("cluster_statuses", []) or []:
            hosts: dict[str, list[str]] = {}
            for hs in cs.get("host_statuses", []) or []:
                address, port = address_of(hs.get("address") or {})
                key = f"{address}:{port}"
                flags = []
                for flag, value in (hs.get("health_status") or {}).items():
                    if flag == "eds_health_status":
                        if value not in ("HEALTHY", "UNKNOWN", "DEGRADED"):
                            flags.append(f"eds_{str(value).lower()}")
                    elif value is True:
                        flags.append(flag)
                hosts[key] = flags
            self.runtime_health[cs.get("name", "")] = hosts

    # --- lookups -----------------------------------------------------------------------------
    def endpoints(self, cluster: str) -> list[EndpointInfo] | None:
        """The cluster's endpoints; None when the proxy has no assignment for it (unknown)."""
        cla = self.assignments.get(cluster)
        if cla is None:
            return None
        eps = _endpoints_of_assignment(cla)
        health = self.runtime_health.get(cluster)
        if health is not None:
            for ep in eps:
                ep.runtime_flags = health.get(ep.key, [])
        return eps

    def route_names(self) -> list[str]:
        return sorted(self.routes)


def hcm_of_chain(chain: Mapping[str, Any]) -> dict[str, Any] | None:
    for f in chain.get("filters", []) or []:
        if f.get("name") == HCM_NAME or (f.get("typed_config") or {}).get("@type") == HCM_TYPE:
            return f.get("typed_config") or {}
    return None


def hcm_serving(listeners: Sequence[Mapping[str, Any]], route_config_name: str) -> dict[str, Any] | None:
    """The first HTTP connection manager whose route config (RDS or inline) is `route_config_name`."""
    for listener in listeners:
        chains = [*(listener.get("filter_chains") or []), listener.get("default_filter_chain") or {}]
        for chain in chains:
            hcm = hcm_of_chain(chain)
            if hcm is None:
                continue
            name = (hcm.get("rds") or {}).get("route_config_name") or (hcm.get("route_config") or {}).get(
                "name"
            )
            if name == route_config_name:
                return hcm
    return None


def listener_port(listener: Mapping[str, Any]) -> int | None:
    sa = (listener.get("address") or {}).get("socket_address") or {}
    port = sa.get("port_value")
    return int(port) if port is not None else None


def listener_address(listener: Mapping[str, Any]) -> str:
    sa = (listener.get("address") or {}).get("socket_address") or {}
    return str(sa.get("address", ""))


def http_route_names(listener: Mapping[str, Any], sni: str | None = None) -> list[str]:
    """RDS names of a listener's HTTP connection managers; with `sni`, of the chains that would take it."""
    out: list[str] = []
    fallback: list[str] = []
    for chain in listener.get("filter_chains", []) or []:
        hcm = hcm_of_chain(chain)
        if hcm is None:
            continue
        name = (hcm.get("rds") or {}).get("route_config_name")
        if not name:
            continue
        names = (chain.get("filter_chain_match") or {}).get("server_names") or []
        if sni is None or not names:
            (fallback if names else out).append(name)
            continue
        if any(_sni_matches(n, sni) for n in names):
            out.append(name)
    default = listener.get("default_filter_chain")
    if default:
        hcm = hcm_of_chain(default)
        name = ((hcm or {}).get("rds") or {}).get("route_config_name")
        if name:
            fallback.append(name)
    return out + [n for n in fallback if n not in out]


def _sni_matches(pattern: str, sni: str) -> bool:
    if pattern.startswith("*."):
        return sni.endswith(pattern[1:])
    return pattern.lower() == sni.lower()


def typed_per_filter(obj: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    tpf = obj.get("typed_per_filter_config") or {}
    value = tpf.get(name)
    if value is None:
        return None
    # An Any holding envoy.config.route.v3.FilterConfig wraps the real config.
    if str(value.get("@type", "")).endswith("envoy.config.route.v3.FilterConfig"):
        return value.get("config") or {}
    return value
