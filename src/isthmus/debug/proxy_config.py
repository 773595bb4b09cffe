"""`isthmus proxy-config`: istioctl's summaries of what one Envoy holds, as pure functions.

Inputs are the JSON Envoy's admin API returns: `/config_dump?include_eds` (clusters, listeners, routes,
secrets, ECDS, bootstrap) and `/clusters?format=json` (endpoints with their real health and outlier
ejection, which the config dump does not carry; `proxy-config all` lists the dump's EDS section instead,
as istioctl's PrintFullSummary does). Every function takes those dicts and returns rows or the filtered
raw entries, so the CLI only fetches (or reads `--file`) and prints.

The tables follow istioctl's writers (`istioctl/pkg/writer/envoy/configdump/*.go`,
`istioctl/pkg/writer/envoy/clusters/clusters.go`, `istioctl/pkg/writer/compare/sds`): same columns,
same filters, same summaries of a filter chain ("Route: http_proxy", "Cluster: inbound|8080||",
"Inline Route: /stats/prometheus*") and of a route's match ("/pre*", "regex /re[0-9]+"). Where
istioctl would print nothing useful for our config, it says a little more, and says so here:

- a virtual host whose domains all carry a port (our `http_proxy` route config has only those) shows
  them, shortened, instead of an empty DOMAINS cell;
- a CONNECT route shows `CONNECT` instead of an empty MATCH cell;
- a cluster with a custom cluster type (the dynamic forward proxy behind `PassthroughCluster`) shows
  that type's name instead of `STATIC`;
- the VIRTUAL SERVICE / DESTINATION RULE cell reads the `istio.config` metadata of any API version.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.debug.envoy_config import address_of, with_vhost_names

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"

# Section names (`proxy-config TYPE`, plurals accepted) -> the config dump's @type suffix.
SECTIONS = {
    "bootstrap": "BootstrapConfigDump",
    "cluster": "ClustersConfigDump",
    "listener": "ListenersConfigDump",
    "route": "RoutesConfigDump",
    "endpoint": "EndpointsConfigDump",
    "secret": "SecretsConfigDump",
    "ecds": "EcdsConfigDump",
}
# istioctl's aliases of the subcommands.
ALIASES = {
    "clusters": "cluster",
    "c": "cluster",
    "listeners": "listener",
    "l": "listener",
    "routes": "route",
    "r": "route",
    "endpoints": "endpoint",
    "ep": "endpoint",
    "secrets": "secret",
    "s": "secret",
    "ec": "ecds",
    "b": "bootstrap",
    "a": "all",
}


def canonical_type(name: str) -> str:
    return ALIASES.get(name, name)


@dataclass
class Filters:
    """istioctl's per-type flags; None means "not given"."""

    fqdn: str | None = None  # cluster
    subset: str | None = None  # cluster
    direction: str | None = None  # cluster
    port: int | None = None  # cluster, listener, endpoint
    address: str | None = None  # listener, endpoint
    type: str | None = None  # listener: HTTP, TCP, HTTP+TCP, UNKNOWN
    name: str | None = None  # route
    cluster: str | None = None  # endpoint
    status: str | None = None  # endpoint: HEALTHY, UNHEALTHY, DRAINING, ...


# Which filters each type accepts (others are a usage error, as istioctl's flags are per subcommand).
APPLICABLE = {
    "cluster": {"fqdn", "port", "subset", "direction"},
    "listener": {"port", "address", "type"},
    "route": {"name"},
    "endpoint": {"cluster", "port", "address", "status"},
    "secret": set(),
    "ecds": set(),
    "bootstrap": set(),
    # istioctl's `all` has no --cluster / --status; its --port and --address also filter endpoints.
    "all": {"fqdn", "port", "subset", "direction", "address", "type", "name"},
}


def misapplied_filters(config_type: str, filters: Filters) -> list[str]:
    """The filters given that `config_type` does not take."""
    allowed = APPLICABLE.get(canonical_type(config_type), set())
    return [k for k, v in vars(filters).items() if v is not None and k not in allowed]


# --- tables ----------------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    padding: int = 5

    def render(self) -> str:
        """Like Go's tabwriter as istioctl sets it up: every column but the last padded to its widest
        cell plus `padding` spaces. Without headers (a label/value list), only the rows."""
        lines = [self.headers, *self.rows] if self.headers else list(self.rows)
        if not lines:
            return ""
        n = max(len(r) for r in lines)
        widths = [max((len(r[i]) for r in lines if i < len(r)), default=0) for i in range(n)]
        out = []
        for r in lines:
            cells = [c if i == len(r) - 1 else c.ljust(widths[i] + self.padding) for i, c in enumerate(r)]
            out.append("".join(cells).rstrip())
        return "\n".join(out)


# --- config dump sections --------------------------------------------------------------------------


def section(dump: Mapping[str, Any], config_type: str) -> dict[str, Any] | None:
    """One `configs[]` entry of a config dump, by type name ("cluster", "ecds", ...)."""
    suffix = SECTIONS[canonical_type(config_type)]
    for c in dump.get("configs", ()):
        if str(c.get("@type", "")).endswith("." + suffix):
            return c
    return None


def sections_of(dump: Mapping[str, Any], config_type: str) -> list[dict[str, Any]]:
    """Every `configs[]` entry of that type: Envoy dumps ECDS in one section per filter kind (HTTP,
    network, listener filters), and istioctl's GetEcdsConfigDump merges them all."""
    suffix = "." + SECTIONS[canonical_type(config_type)]
    return [c for c in dump.get("configs", ()) if str(c.get("@type", "")).endswith(suffix)]


def render_config(path: str) -> str:
    """`/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME` -> `NAME.NS` (istioctl's
    renderConfig, for any API version)."""
    pieces = path.split("/")
    if path.startswith("/apis/networking.istio.io/") and len(pieces) == 8 and pieces[4] == "namespaces":
        return f"{pieces[7]}.{pieces[5]}"
    return "<unknown>"


def describe_management(metadata: Mapping[str, Any] | None) -> str:
    """The Istio resource a cluster or route came from (`filter_metadata.istio.config`), or ""."""
    config = ((metadata or {}).get("filter_metadata") or {}).get("istio", {}).get("config")
    if not config:
        return ""
    return render_config(str(config))


# --- clusters --------------------------------------------------------------------------------------


def parse_subset_key(name: str) -> tuple[str, int, str, str] | None:
    """`outbound|80|v1|echo.default.svc.cluster.local` -> (direction, port, subset, fqdn); None for a
    name that is not one (istioctl's ParseSubsetKey: more than three `|`-separated parts)."""
    parts = name.split("|")
    if len(parts) < 4:
        return None
    try:
        port = int(parts[1])
    except ValueError:
        port = 0
    return parts[0], port, parts[2], parts[3]


def _cluster_sort_key(name: str) -> tuple[str, str, int, str]:
    parsed = parse_subset_key(name)
    if parsed is None:
        return name, "", 0, ""
    direction, port, subset, fqdn = parsed
    return fqdn, subset, port, direction


def clusters(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every cluster Envoy holds (dynamic active, then static), sorted as istioctl does: by FQDN,
    subset, port, direction."""
    sec = section(dump, "cluster") or {}
    out = [
        e["cluster"]
        for e in [*sec.get("dynamic_active_clusters", ()), *sec.get("static_clusters", ())]
        if e.get("cluster")
    ]
    return sorted(out, key=lambda c: _cluster_sort_key(str(c.get("name", ""))))


def cluster_matches(c: Mapping[str, Any], f: Filters) -> bool:
    """istioctl's ClusterFilter.Verify: substring checks on the name; the port as `|PORT|`."""
    name = str(c.get("name", ""))
    if f.fqdn and f.fqdn not in name:
        return False
    if f.direction and f.direction not in name:
        return False
    if f.subset and f.subset not in name:
        return False
    return not (f.port and f"|{f.port}|" not in name)


def cluster_type(c: Mapping[str, Any]) -> str:
    if "type" in c:
        return str(c["type"])
    custom = c.get("cluster_type")
    if custom:
        return str(custom.get("name", "CUSTOM"))
    return "STATIC"  # the enum's default: Envoy leaves it out of the dump


def filter_clusters(items: Iterable[Mapping[str, Any]], f: Filters) -> list[Mapping[str, Any]]:
    return [c for c in items if cluster_matches(c, f)]


def cluster_table(items: Iterable[Mapping[str, Any]], *, named: bool = False) -> Table:
    """`named` is `proxy-config all`'s form: a first NAME column `cluster/<name>`; a name that is not a
    subset key shows that way in SERVICE FQDN too (proxyconfig testdata/config_dump_summary.txt)."""
    rows = []
    for c in items:
        name = str(c.get("name", ""))
        parsed = parse_subset_key(name)
        mgmt = describe_management(c.get("metadata"))
        head = [f"cluster/{name}"] if named else []
        if parsed is None:
            rows.append([*head, head[0] if named else name, "-", "-", "-", cluster_type(c), mgmt])
        else:
            direction, port, subset, fqdn = parsed
            rows.append([*head, fqdn, str(port), subset or "-", direction, cluster_type(c), mgmt])
    headers = ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    return Table(["NAME", *headers] if named else headers, rows)


# --- listeners -------------------------------------------------------------------------------------


def listeners(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Active dynamic listeners, then static ones (warming and draining states are left out, as
    istioctl does)."""
    sec = section(dump, "listener") or {}
    out = [
        e["active_state"]["listener"]
        for e in sec.get("dynamic_listeners", ())
        if (e.get("active_state") or {}).get("listener")
    ]
    out += [e["listener"] for e in sec.get("static_listeners", ()) if e.get("listener")]
    return out


def listener_address(lst: Mapping[str, Any]) -> str:
    addr = lst.get("address") or {}
    if "socket_address" in addr:
        return str(addr["socket_address"].get("address", ""))
    if "pipe" in addr:
        return str(addr["pipe"].get("path", ""))
    return ""


def listener_addresses(lst: Mapping[str, Any]) -> list[str]:
    extra = [
        str(((a.get("address") or {}).get("socket_address") or {}).get("address", ""))
        for a in lst.get("additional_addresses", ())
    ]
    return [listener_address(lst), *extra]


def listener_port(lst: Mapping[str, Any]) -> int:
    return int(((lst.get("address") or {}).get("socket_address") or {}).get("port_value", 0))


def filter_chains(lst: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    chains = list(lst.get("filter_chains", ()))
    if lst.get("default_filter_chain"):
        chains.append(lst["default_filter_chain"])
    return chains


def _is_blackhole_tcp(flt: Mapping[str, Any]) -> bool:
    return BLACKHOLE in repr(flt.get("typed_config", {}))


def listener_type(lst: Mapping[str, Any]) -> str:
    """HTTP, TCP, HTTP+TCP or UNKNOWN, by the filter chains' terminal filters (a tcp_proxy to the
    BlackHoleCluster does not count)."""
    n_http = n_tcp = 0
    for fc in filter_chains(lst):
        for flt in fc.get("filters", ()):
            if flt.get("name") == HCM:
                n_http += 1
            elif flt.get("name") == TCP_PROXY and not _is_blackhole_tcp(flt):
                n_tcp += 1
    if n_http:
        return "HTTP+TCP" if n_tcp else "HTTP"
    return "TCP" if n_tcp else "UNKNOWN"


def listener_matches(lst: Mapping[str, Any], f: Filters) -> bool:
    """istioctl's ListenerFilter.Verify: the address may be the listener's or one of its additional
    addresses (case-insensitive); port and type compare exactly."""
    if f.address and f.address.lower() not in (a.lower() for a in listener_addresses(lst)):
        return False
    if f.port and listener_port(lst) != f.port:
        return False
    return not (f.type and listener_type(lst).lower() != f.type.lower())


def filter_listeners(items: Iterable[Mapping[str, Any]], f: Filters) -> list[Mapping[str, Any]]:
    return [lst for lst in items if listener_matches(lst, f)]


_PROTOCOL_DESCRIPTIONS = {
    ("http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"): "App: HTTP TLS",
    ("istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"): "App: Istio HTTP Plain",
    ("istio-peer-exchange", "istio"): "App: TCP TLS",
    ("http/1.0", "http/1.1", "h2c"): "App: HTTP",
}


def describe_chain_match(match: Mapping[str, Any] | None) -> str:
    """A filter chain match as istioctl words it: `SNI: ...; Trans: tls; App: ...; Addr: ...`, `ALL`."""
    m = match or {}
    descrs = []
    if m.get("server_names"):
        descrs.append("SNI: " + ",".join(m["server_names"]))
    if m.get("transport_protocol"):
        descrs.append("Trans: " + str(m["transport_protocol"]))
    alpn = tuple(m.get("application_protocols") or ())
    if alpn:
        descrs.append(_PROTOCOL_DESCRIPTIONS.get(alpn, "App: " + ",".join(alpn)))
    port = f":{m['destination_port']}" if m.get("destination_port") is not None else ""
    if m.get("prefix_ranges"):
        ranges = ",".join(
            f"{p.get('address_prefix', '')}/{p.get('prefix_len', 0)}" for p in m["prefix_ranges"]
        )
        descrs.append(f"Addr: {ranges}{port}")
    elif port:
        descrs.append(f"Addr: *{port}")
    return "; ".join(descrs) or "ALL"


def _cluster_ref(cluster: str) -> str:
    return cluster if "Cluster" in cluster else f"Cluster: {cluster}"


def describe_match(match: Mapping[str, Any]) -> str:
    """A route match's path part (headers are left out, as istioctl does)."""
    conds = []
    if match.get("prefix"):
        conds.append(f"{match['prefix']}*")
    if match.get("path_separated_prefix"):
        conds.append(f"PathPrefix:{match['path_separated_prefix']}")
    if match.get("path"):
        conds.append(str(match["path"]))
    if match.get("safe_regex"):
        conds.append(f"regex {match['safe_regex'].get('regex', '')}")
    if "connect_matcher" in match:
        conds.append("CONNECT")
    return " ".join(conds)


def _match_all_cluster(rc: Mapping[str, Any]) -> str:
    vhosts = rc.get("virtual_hosts") or []
    if len(vhosts) != 1 or list(vhosts[0].get("domains") or []) != ["*"]:
        return ""
    routes = vhosts[0].get("routes") or []
    if len(routes) != 1 or routes[0].get("match", {}).get("prefix") != "/":
        return ""
    cluster = (routes[0].get("route") or {}).get("cluster")
    return _cluster_ref(cluster) if cluster else ""


def describe_route_config(rc: Mapping[str, Any]) -> str:
    cluster = _match_all_cluster(rc)
    if cluster:
        return cluster
    parts = []
    for vh in rc.get("virtual_hosts") or ():
        domains = list(vh.get("domains") or [])
        routes = ", ".join(describe_match(r.get("match", {})) for r in vh.get("routes") or ())
        parts.append(routes if domains == ["*"] else f"{'/'.join(domains)} {routes}")
    return "Inline Route: " + "; ".join(parts)


def describe_destination(filters: Sequence[Mapping[str, Any]]) -> str:
    """Where a filter chain sends traffic: `Route: NAME` (RDS), an inline route, `Cluster: NAME`."""
    for flt in filters:
        name = flt.get("name")
        cfg = flt.get("typed_config") or {}
        if name == HCM:
            if cfg.get("route_config") is not None:
                return describe_route_config(cfg["route_config"])
            rds = (cfg.get("rds") or {}).get("route_config_name")
            return f"Route: {rds}" if rds else "HTTP"
        if name == TCP_PROXY and not _is_blackhole_tcp(flt):
            if cfg.get("cluster"):
                return _cluster_ref(str(cfg["cluster"]))
            weighted = (cfg.get("weighted_clusters") or {}).get("clusters") or []
            return "Cluster: " + ",".join(str(w.get("name", "")) for w in weighted)
    return "Non-HTTP/Non-TCP"


def listener_rows(lst: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(MATCH, DESTINATION) per filter chain, by destination descending (as istioctl sorts them)."""
    rows = [
        (describe_chain_match(fc.get("filter_chain_match")), describe_destination(fc.get("filters") or ()))
        for fc in filter_chains(lst)
    ]
    return sorted(rows, key=lambda r: r[1], reverse=True)


def sort_listeners(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """By port, address, type."""
    return sorted(items, key=lambda lst: (listener_port(lst), listener_address(lst), listener_type(lst)))


def listener_table(items: Iterable[Mapping[str, Any]], *, verbose: bool = True, named: bool = False) -> Table:
    """`named`: `proxy-config all`'s first NAME column, `listener/<name>` (`listener/` for an unnamed
    static listener)."""
    rows = []
    for lst in sort_listeners(items):
        head = [f"listener/{lst.get('name', '')}"] if named else []
        addresses = ",".join(listener_addresses(lst))
        port = str(listener_port(lst))
        if not verbose:
            rows.append([*head, addresses, port, listener_type(lst)])
            continue
        for match, dest in listener_rows(lst):
            rows.append([*head, addresses, port, match, dest])
    headers = ["ADDRESSES", "PORT", "MATCH", "DESTINATION"] if verbose else ["ADDRESSES", "PORT", "TYPE"]
    return Table(["NAME", *headers] if named else headers, rows, padding=1)


# --- routes ----------------------------------------------------------------------------------------


def route_configs(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Dynamic (RDS) route configs, then static ones (inline in listeners have no entry here); those
    with numeric names (istiod's per-port route configs) sorted by number first."""
    sec = section(dump, "route") or {}
    out = [
        dict(with_vhost_names(e["route_config"]))
        for e in [*sec.get("dynamic_route_configs", ()), *sec.get("static_route_configs", ())]
        if e.get("route_config")
    ]

    def key(rc: Mapping[str, Any]) -> tuple[int, int]:
        name = str(rc.get("name", ""))
        return (0, int(name)) if name.isdigit() else (1, 0)

    return sorted(out, key=key)


def filter_routes(items: Iterable[Mapping[str, Any]], f: Filters) -> list[Mapping[str, Any]]:
    return [rc for rc in items if not f.name or rc.get("name", "") == f.name]


def _strip_host(domain: str) -> tuple[str, str]:
    """`host:port` -> (host, ":port"); IPv6 literals keep their colons."""
    if domain.startswith("["):
        host, sep, rest = domain.partition("]")
        return host + sep, rest
    host, sep, port = domain.rpartition(":")
    return (host, sep + port) if sep and port.isdigit() else (domain, "")


def unexpand_domains(domains: Sequence[str]) -> list[str]:
    """Drop the long forms of a host when a short one is also there (`x.ns.svc.cluster.local` when
    `x.ns` is; `x.ns.svc` when `x.ns` is; a fully qualified `x.` when `x` is), keeping the order."""
    unique = set(domains)
    drop = set()
    for d in domains:
        host, port = _strip_host(d)
        for suffix in (".svc.cluster.local", ".svc", "."):
            short = host.removesuffix(suffix)
            if short != host and short + port in unique:
                drop.add(d)
    return [d for d in domains if d not in drop]


def describe_route_domains(domains: Sequence[str], limit: int = 2) -> str:
    """The shortest forms of a virtual host's domains, at most `limit` then `+ N more...` (istioctl's
    describeRouteDomains). When every domain carries a port, as on our `http_proxy` route config, those
    are shown rather than nothing."""
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    without_port = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    shown = unexpand_domains(without_port or list(domains))
    if len(shown) > limit:
        return f"{', '.join(shown[:limit])} + {len(shown) - limit} more..."
    return ", ".join(shown)


def _is_passthrough(route: Mapping[str, Any]) -> bool:
    return (route.get("route") or {}).get("cluster") == PASSTHROUGH


def route_rows(rc: Mapping[str, Any], *, named: bool = False) -> list[list[str]]:
    rows = []
    name = ("route/" if named else "") + str(rc.get("name", ""))
    for vh in rc.get("virtual_hosts") or ():
        domains = describe_route_domains(list(vh.get("domains") or []))
        vh_name = str(vh.get("name", ""))
        routes = vh.get("routes") or []
        for r in routes:
            if not _is_passthrough(r):
                rows.append(
                    [
                        name,
                        vh_name,
                        domains,
                        describe_match(r.get("match", {})),
                        describe_management(r.get("metadata")),
                    ]
                )
        if not routes:
            rows.append([name, vh_name, domains, "/*", "404"])
    return rows


def route_table(items: Iterable[Mapping[str, Any]], *, verbose: bool = True, named: bool = False) -> Table:
    """`named`: `proxy-config all`'s form, the NAME cell as `route/<name>`."""
    items = list(items)
    prefix = "route/" if named else ""
    if not verbose:
        return Table(
            ["NAME", "VIRTUAL HOSTS"],
            [[prefix + str(rc.get("name", "")), str(len(rc.get("virtual_hosts") or []))] for rc in items],
        )
    rows = [row for rc in items for row in route_rows(rc, named=named)]
    return Table(["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"], rows)


# --- endpoints (admin /clusters?format=json) -------------------------------------------------------


@dataclass
class HostRow:
    address: str
    port: int
    cluster: str
    status: str
    failed_outlier_check: bool

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}" if self.port else self.address


def _host_address(host: Mapping[str, Any]) -> tuple[str, int]:
    return address_of(host.get("address") or {})


def _host_row(cluster: str, host: Mapping[str, Any]) -> HostRow:
    address, port = _host_address(host)
    health = host.get("health_status") or {}
    return HostRow(
        address=address,
        port=port,
        cluster=cluster,
        # EDS health: UNKNOWN is the proto default, which Envoy's JSON leaves out.
        status=str(health.get("eds_health_status", "UNKNOWN")),
        failed_outlier_check=bool(health.get("failed_outlier_check")),
    )


def host_matches(row: HostRow, f: Filters) -> bool:
    if f.address and row.address.lower() != f.address.lower():
        return False
    if f.port and row.port != f.port:
        return False
    if f.cluster and row.cluster.lower() != f.cluster.lower():
        return False
    return not (f.status and row.status.lower() != f.status.lower())


def endpoint_rows(clusters_json: Mapping[str, Any], f: Filters) -> list[HostRow]:
    """Every host of every cluster that passes the filters, by address, port, cluster."""
    rows = [
        row
        for cs in clusters_json.get("cluster_statuses", ())
        for host in cs.get("host_statuses", ())
        if host_matches(row := _host_row(str(cs.get("name", "")), host), f)
    ]
    return sorted(rows, key=lambda r: (r.address, r.port, r.cluster))


def filter_endpoint_clusters(clusters_json: Mapping[str, Any], f: Filters) -> list[Mapping[str, Any]]:
    """The cluster statuses with at least one host passing the filters (istioctl's `-o json`)."""
    return [
        cs
        for cs in clusters_json.get("cluster_statuses", ())
        if any(host_matches(_host_row(str(cs.get("name", "")), h), f) for h in cs.get("host_statuses", ()))
    ]


def endpoint_table(rows: Iterable[HostRow]) -> Table:
    return Table(
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
        [[r.endpoint, r.status, "FAILED" if r.failed_outlier_check else "OK", r.cluster] for r in rows],
    )


# --- endpoints from the config dump (EDS), as `proxy-config all` prints them -------------------------


def lb_endpoint_addresses(ep: Mapping[str, Any]) -> list[str]:
    """An LbEndpoint's address and additional addresses as istioctl writes them: `ip:port`, a pipe's
    path, `envoy://<internal listener>/<endpoint id>`, else `unknown` (retrieveEndpointAddresses)."""
    endpoint = ep.get("endpoint") or {}
    addrs = [endpoint.get("address") or {}]
    addrs += [a.get("address") or {} for a in endpoint.get("additional_addresses", ())]
    out = []
    for addr in addrs:
        if "socket_address" in addr:
            sa = addr["socket_address"]
            out.append(f"{sa.get('address', '')}:{sa.get('port_value', 0)}")
        elif "pipe" in addr:
            out.append(str(addr["pipe"].get("path", "")))
        elif (addr.get("envoy_internal_address") or {}).get("server_listener_name"):
            internal = addr["envoy_internal_address"]
            out.append(f"envoy://{internal['server_listener_name']}/{internal.get('endpoint_id', '')}")
        else:
            out.append("unknown")
    return out


def _lb_endpoint_port(ep: Mapping[str, Any]) -> int:
    addr = (ep.get("endpoint") or {}).get("address") or {}
    return int((addr.get("socket_address") or {}).get("port_value", 0))


def lb_endpoint_matches(ep: Mapping[str, Any], cluster: str, f: Filters) -> bool:
    """istioctl's configdump EndpointFilter.Verify. Its address filter compares with the `ip:port` forms
    above (so a bare IP never matches there, unlike `proxy-config endpoint`'s); kept as istioctl has it."""
    if f.address and f.address.lower() not in (a.lower() for a in lb_endpoint_addresses(ep)):
        return False
    if f.port and _lb_endpoint_port(ep) != f.port:
        return False
    if f.cluster and cluster.lower() != f.cluster.lower():
        return False
    return not (f.status and str(ep.get("health_status", "UNKNOWN")).lower() != f.status.lower())


def locality_text(locality: Mapping[str, Any] | None) -> str:
    """`region/zone/subzone`, stopping at the first empty part (Istio's LocalityToString)."""
    loc = locality or {}
    out = str(loc.get("region", ""))
    for key in ("zone", "sub_zone"):
        if not loc.get(key):
            break
        out += "/" + str(loc[key])
    return out


def eds_assignments(dump: Mapping[str, Any], f: Filters) -> list[dict[str, Any]]:
    """The ClusterLoadAssignments of the config dump's EDS section (dynamic, then static) with only the
    endpoints passing the filters, those left without any dropped, sorted as clusters are."""
    sec = section(dump, "endpoint") or {}
    out = []
    for entry in [*sec.get("dynamic_endpoint_configs", ()), *sec.get("static_endpoint_configs", ())]:
        cla = dict(entry.get("endpoint_config") or {})
        name = str(cla.get("cluster_name", ""))
        localities = []
        for llb in cla.get("endpoints", ()):
            kept = [ep for ep in llb.get("lb_endpoints", ()) if lb_endpoint_matches(ep, name, f)]
            localities.append({**llb, "lb_endpoints": kept})
        if any(llb["lb_endpoints"] for llb in localities):
            out.append({**cla, "endpoints": localities})
    return sorted(out, key=lambda cla: _cluster_sort_key(str(cla.get("cluster_name", ""))))


def eds_endpoint_table(assignments: Iterable[Mapping[str, Any]], *, prefix: str = "") -> Table:
    """istioctl's configdump PrintEndpointsSummary: NAME (the addresses), STATUS (EDS health),
    LOCALITY, CLUSTER."""
    rows = [
        [
            prefix + ",".join(lb_endpoint_addresses(ep)),
            str(ep.get("health_status", "UNKNOWN")),
            locality_text(llb.get("locality")),
            str(cla.get("cluster_name", "")),
        ]
        for cla in assignments
        for llb in cla.get("endpoints", ())
        for ep in llb.get("lb_endpoints", ())
    ]
    return Table(["NAME", "STATUS", "LOCALITY", "CLUSTER"], rows)


# --- secrets ---------------------------------------------------------------------------------------


@dataclass
class SecretItem:
    name: str
    state: str  # ACTIVE, WARMING
    type: str = ""  # "CA" or "Cert Chain"; "" when no certificate could be read
    valid: bool = False  # parsed, and now within its validity period
    serial_number: str = ""
    not_after: str = ""
    not_before: str = ""


def _data_source_bytes(ds: Mapping[str, Any] | None) -> bytes:
    if not ds:
        return b""
    if "inline_bytes" in ds:
        try:
            return base64.b64decode(ds["inline_bytes"])
        except ValueError:
            return b""
    if "inline_string" in ds:
        return str(ds["inline_string"]).encode()
    return b""


def serial_hex(serial: int) -> str:
    """A certificate serial as istioctl prints it: the hex of its bytes, so whole bytes (a leading 0
    when the top nibble is empty: `0193a5...`, as testdata/secret/istio/output shows)."""
    digits = format(serial, "x")
    return digits.zfill(len(digits) + len(digits) % 2)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret_item(entry: Mapping[str, Any], state: str, now: dt.datetime) -> SecretItem:
    from cryptography import x509

    item = SecretItem(name=str(entry.get("name", "")), state=state)
    secret = entry.get("secret") or {}
    data = _data_source_bytes((secret.get("tls_certificate") or {}).get("certificate_chain"))
    if not data:
        data = _data_source_bytes((secret.get("validation_context") or {}).get("trusted_ca"))
    if not data:
        return item
    try:
        # The first certificate of the chain (the leaf), PEM or DER.
        cert = (
            x509.load_pem_x509_certificates(data)[0]
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        return item
    try:
        is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    item.type = "CA" if is_ca else "Cert Chain"
    item.serial_number = serial_hex(cert.serial_number)
    item.not_after = _rfc3339(not_after)
    item.not_before = _rfc3339(not_before)
    # Strictly inside the validity period, as Go's After/Before compare.
    item.valid = not_before < now < not_after
    return item


def _active_state(entry: Mapping[str, Any]) -> str:
    # An SDS resource Envoy asked for and never got shows version "uninitialized" (istioctl's sds util).
    return "UNINITIALIZED" if entry.get("version_info") == "uninitialized" else "ACTIVE"


def secrets(dump: Mapping[str, Any], now: dt.datetime | None = None) -> list[SecretItem]:
    """Warming secrets, then active ones, with their certificate's type, serial and validity. Static
    secrets are left out, as istioctl's GetEnvoySecrets does (only SDS-delivered ones are listed)."""
    now = now or dt.datetime.now(dt.UTC)
    sec = section(dump, "secret") or {}
    items = [_secret_item(e, "WARMING", now) for e in sec.get("dynamic_warming_secrets", ())]
    items += [_secret_item(e, _active_state(e), now) for e in sec.get("dynamic_active_secrets", ())]
    return items


def secret_table(items: Iterable[SecretItem], *, named: bool = False) -> Table:
    """`named`: `proxy-config all`'s form, RESOURCE NAME as `secret/<name>`."""
    prefix = "secret/" if named else ""
    return Table(
        ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"],
        [
            [
                prefix + s.name,
                s.type,
                s.state,
                str(s.valid).lower(),
                s.serial_number,
                s.not_after,
                s.not_before,
            ]
            for s in items
        ],
    )


# --- ECDS and bootstrap ----------------------------------------------------------------------------

TYPE_URL_PREFIX = "type.googleapis.com/"


def ecds_entries(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `ecds_filters` of every ECDS section, in dump order (istioctl's GetEcdsConfigDump)."""
    return [e for sec in sections_of(dump, "ecds") for e in sec.get("ecds_filters", ())]


def ecds_configs(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The TypedExtensionConfigs received over ECDS, by type then name."""
    out = [e["ecds_filter"] for e in ecds_entries(dump) if e.get("ecds_filter")]
    return sorted(out, key=lambda c: (_typed_config_type(c), str(c.get("name", ""))))


def _typed_config_type(c: Mapping[str, Any]) -> str:
    return str((c.get("typed_config") or {}).get("@type", ""))


def ecds_table(items: Iterable[Mapping[str, Any]]) -> Table:
    return Table(
        ["ECDS NAME", "TYPE"],
        [[str(c.get("name", "")), _typed_config_type(c).removeprefix(TYPE_URL_PREFIX)] for c in items],
    )


def _istio_version_info(dump: Mapping[str, Any]) -> tuple[str, str]:
    """(ISTIO_VERSION, the sha of ISTIO_PROXY_SHA after its `name:` prefix) from the bootstrap node."""
    node = ((section(dump, "bootstrap") or {}).get("bootstrap") or {}).get("node") or {}
    md = node.get("metadata") or {}
    sha = str(md.get("ISTIO_PROXY_SHA", ""))
    parts = sha.split(":")
    return str(md.get("ISTIO_VERSION", "")), parts[1] if len(parts) > 1 else sha


def version_summary(dump: Mapping[str, Any]) -> str:
    """istioctl's PrintBootstrapSummary (`proxy-config bootstrap -o short`, the head of `all`): the
    Istio, Istio proxy and Envoy versions the bootstrap names, each line only when known."""
    istio, proxy_sha = _istio_version_info(dump)
    rows = [
        [label, value]
        for label, value in (
            ("Istio Version:", istio),
            ("Istio Proxy Version:", proxy_sha),
            ("Envoy Version:", envoy_version(dump)),
        )
        if value
    ]
    return Table([], rows, padding=1).render() if rows else ""


def envoy_version(dump: Mapping[str, Any]) -> str:
    """`1.40.0-dev/Clean/RELEASE/BoringSSL` from the bootstrap node's user-agent build version."""
    node = ((section(dump, "bootstrap") or {}).get("bootstrap") or {}).get("node") or {}
    if section(dump, "bootstrap") is None:
        return ""
    # A bootstrap without a build version prints proto zero values, `0.0.0` (istioctl's
    # proxyconfig testdata/config_dump_summary.txt), rather than dropping the line.
    build = node.get("user_agent_build_version") or {}
    v = build.get("version") or {}
    out = f"{v.get('major_number', 0)}.{v.get('minor_number', 0)}.{v.get('patch', 0)}"
    md = build.get("metadata") or {}
    if md.get("build.label"):
        out += f"-{md['build.label']}"
    for key in ("revision.status", "build.type", "ssl.version"):
        if md.get(key):
            out += f"/{md[key]}"
    return out


# --- the command's two outputs ---------------------------------------------------------------------


def summary(
    config_type: str,
    dump: Mapping[str, Any],
    clusters_json: Mapping[str, Any] | None,
    f: Filters,
    *,
    verbose: bool = True,
    now: dt.datetime | None = None,
) -> str:
    """The table `proxy-config TYPE` prints (bootstrap: its JSON, as istioctl prints it)."""
    t = canonical_type(config_type)
    if t == "cluster":
        return cluster_table(filter_clusters(clusters(dump), f)).render()
    if t == "listener":
        return listener_table(filter_listeners(listeners(dump), f), verbose=verbose).render()
    if t == "route":
        return route_table(filter_routes(route_configs(dump), f), verbose=verbose).render()
    if t == "endpoint":
        return endpoint_table(endpoint_rows(clusters_json or {}, f)).render()
    if t == "secret":
        items = secrets(dump, now)
        return secret_table(items).render() if items else "No active or warming secrets found."
    if t == "ecds":
        return ecds_table(ecds_configs(dump)).render()
    if t == "all":
        return full_summary(dump, f, verbose=verbose, now=now)
    raise ValueError(f"no table for {config_type!r}")


def full_summary(
    dump: Mapping[str, Any], f: Filters, *, verbose: bool = True, now: dt.datetime | None = None
) -> str:
    """istioctl's PrintFullSummary (`proxy-config all`): the version summary, then clusters, listeners,
    routes, secrets and the endpoints of the dump's EDS section, each row named `<type>/<name>`, one
    blank line between tables. Endpoints come from the config dump here, not from `/clusters` (so no
    OUTLIER CHECK, a LOCALITY instead), and ECDS is not part of it, as in istioctl."""
    parts = []
    version = version_summary(dump)
    if version:
        parts.append(version)
    parts.append(cluster_table(filter_clusters(clusters(dump), _only("cluster", f)), named=True).render())
    parts.append(
        listener_table(
            filter_listeners(listeners(dump), _only("listener", f)), verbose=verbose, named=True
        ).render()
    )
    parts.append(
        route_table(
            filter_routes(route_configs(dump), _only("route", f)), verbose=verbose, named=True
        ).render()
    )
    items = secrets(dump, now)
    parts.append(secret_table(items, named=True).render() if items else "No active or warming secrets found.")
    parts.append(eds_endpoint_table(eds_assignments(dump, _only("endpoint", f)), prefix="endpoint/").render())
    return "\n\n".join(parts)


def _only(config_type: str, f: Filters) -> Filters:
    """The filters of `f` that `config_type` takes (for `all`, each section gets its own)."""
    allowed = APPLICABLE[config_type]
    return Filters(**{k: v for k, v in vars(f).items() if k in allowed})


def selected(
    config_type: str, dump: Mapping[str, Any], clusters_json: Mapping[str, Any] | None, f: Filters
) -> Any:
    """The entries `-o json|yaml` prints, filtered as istioctl's PrintXDump does, in Envoy's admin JSON
    (`structured` marshals them as istioctl does)."""
    t = canonical_type(config_type)
    if t == "cluster":
        return filter_clusters(clusters(dump), f)
    if t == "listener":
        return filter_listeners(listeners(dump), f)
    if t == "route":
        return filter_routes(route_configs(dump), f)
    if t == "endpoint":
        return filter_endpoint_clusters(clusters_json or {}, f)
    if t == "all":
        return dict(dump)
    if t == "ecds":
        # istioctl prints the merged EcdsConfigDump message itself (no `@type`).
        return {"ecds_filters": ecds_entries(dump)}
    return section(dump, t) or {}


# The proto each `-o json|yaml` prints, and how istioctl marshals it (see protojson.py).
_SLICE_TYPES = {
    "cluster": "envoy.config.cluster.v3.Cluster",
    "listener": "envoy.config.listener.v3.Listener",
    "route": "envoy.config.route.v3.RouteConfiguration",
    "endpoint": "envoy.admin.v3.ClusterStatus",
}
_INDENTED_TYPES = {
    "secret": "envoy.admin.v3.SecretsConfigDump",
    "bootstrap": "envoy.admin.v3.BootstrapConfigDump",
}
# istioctl reads these two from a proxy with `config_dump?mask=...` (proxyconfig.go secretPath,
# bootstrapPath), so Envoy leaves out the other fields (static secrets, the bootstrap's lastUpdated).
_ADMIN_MASKS = {
    "secret": ("dynamic_active_secrets", "dynamic_warming_secrets"),
    "bootstrap": ("bootstrap",),
}


def structured(
    config_type: str,
    dump: Mapping[str, Any],
    clusters_json: Mapping[str, Any] | None,
    f: Filters,
    output: str,
    *,
    raw_dump: str | None = None,
    from_proxy: bool = False,
) -> str:
    """What `-o json|yaml` prints, as istioctl prints it (without Fprintln's final newline): the
    selection re-marshalled from Envoy's admin JSON the way istioctl's writers marshal the protos. `all`
    prints the dump itself, as fetched (`raw_dump`), or JSONToYAML of it. `from_proxy`: the dump came
    from a proxy rather than a file, where istioctl's admin mask applies."""
    from isthmus.debug import protojson

    t = canonical_type(config_type)
    if t == "all":
        text = raw_dump if raw_dump is not None else json.dumps(dump, indent=1, ensure_ascii=False)
        return protojson.json_to_yaml(text) if output == "yaml" else text
    data = selected(t, dump, clusters_json, f)
    if from_proxy and t in _ADMIN_MASKS:
        data = {k: v for k, v in data.items() if k in _ADMIN_MASKS[t]}
    if t in _SLICE_TYPES:
        return protojson.message_slice(_SLICE_TYPES[t], data, output)
    if t == "ecds":
        return protojson.protojson_message("envoy.admin.v3.EcdsConfigDump", data, output)
    return protojson.indented_message(_INDENTED_TYPES[t], data, output)
