"""The generator the xDS server calls: (snapshot, proxy, type, watched names) -> packed resources."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from isthmus.api.types import parse_env_bool
from isthmus.model.mesh import VHDS_KEY
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry.envoy import STATS_COLLECTOR_KEY
from isthmus.xds.gen import authz, naming, session
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.clusters import build_inbound_clusters, outbound_cluster_specs, packed_outbound_clusters
from isthmus.xds.gen.endpoints import packed_endpoints
from isthmus.xds.gen.gateway import https_route_name
from isthmus.xds.gen.listeners import INBOUND_EXACT_BALANCE, OUTBOUND_EXACT_BALANCE, build_listeners
from isthmus.xds.gen.routes import (
    gateway_route_config,
    http_proxy_route_config,
    http_proxy_route_packed,
    http_proxy_vhds_route_packed,
    http_proxy_virtual_hosts,
    inbound_route_config,
)
from isthmus.xds.gen.scope import scope_key, shared_memo

log = logging.getLogger(__name__)


def build_routes(snapshot: Snapshot, proxy: Proxy, names: Iterable[str]) -> list[Any]:
    out = []
    gateway_servers = snapshot.gateway_servers(proxy) if proxy.kind == "gateway" else []
    inbound = {}
    if proxy.kind == "sidecar":
        inbound = {naming.inbound_cluster(ib.port): ib for ib in snapshot.inbound_ports(proxy)}
    per_filter = authz.rbac_per_route(snapshot, proxy) if inbound else {}
    for name in names:
        if name == naming.HTTP_PROXY_ROUTE and proxy.kind == "sidecar":
            out.append(http_proxy_route_config(snapshot, proxy))
            continue
        if name in inbound:
            out.append(inbound_route_config(inbound[name], per_filter))
            continue
        if name.startswith("https."):
            servers = [s for s in gateway_servers if s.terminates_tls and https_route_name(s) == name]
            if servers:
                out.append(gateway_route_config(snapshot, proxy, name, servers))
            continue
        if name.startswith("http."):
            parts = name.split(".", 2)
            try:
                listen_port = int(parts[1])
            except (IndexError, ValueError):
                continue
            bind = parts[2] if len(parts) > 2 else None
            servers = [
                s
                for s in gateway_servers
                if s.listen_port == listen_port and s.bind == bind and s.serves_http and not s.terminates_tls
            ]
            if servers:
                out.append(gateway_route_config(snapshot, proxy, name, servers))
    return out


def _pack_all(messages: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in messages:
        name = getattr(m, "name", None) or getattr(m, "cluster_name", "")
        out[name] = p.pack(m)
    return out


class MeshGenerator:
    """Pure functions of (snapshot, proxy). What proxies of one scope share is built once per snapshot
    and scope, and returned as the same packed objects, so the xDS server serializes it once."""

    def generate(
        self, snapshot: Snapshot, proxy: Proxy, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]:
        key = scope_key(snapshot, proxy)
        if type_url == naming.CLUSTER_TYPE:
            shared = shared_memo(
                snapshot, ("cds", key), proxy, lambda: packed_outbound_clusters(snapshot, proxy)
            )
            own = _pack_all(build_inbound_clusters(snapshot, proxy))
            return {**shared, **own} if own else shared
        if type_url == naming.LISTENER_TYPE:
            return _listeners(snapshot, proxy)
        if type_url == naming.ENDPOINT_TYPE:
            every = shared_memo(snapshot, ("eds", key), proxy, lambda: _scope_endpoints(snapshot, proxy, key))
            names = watched or frozenset()
            if _names_are_keys(snapshot, every, names):
                return every  # the usual case: one mapping per scope, so the server encodes it once
            out = {name: every[name] for name in names if name in every}
            missing = [name for name in names if name not in every]
            if missing:
                # Not the scope's outbound clusters: the proxy's own, or none (then left out: the server
                # answers a cluster that does not exist).
                out.update(packed_endpoints(snapshot, proxy, missing))
            return out
        if type_url == naming.EXTENSION_CONFIG_TYPE:
            ecds = snapshot.memo(
                ("ecds", key),
                lambda: _pack_all(
                    [authz.jwt_extension(snapshot, proxy), *authz.ext_authz_extensions(snapshot, proxy)]
                ),
            )
            return {name: ecds[name] for name in watched or () if name in ecds}
        if type_url == naming.ROUTE_TYPE:
            out = {}
            for name in sorted(watched or ()):
                if name == naming.HTTP_PROXY_ROUTE and serves_vhds(proxy):
                    # Its virtual hosts go over VHDS (the VIRTUAL_HOST_TYPE below).
                    out[name] = http_proxy_vhds_route_packed()
                elif name == naming.HTTP_PROXY_ROUTE and proxy.kind == "sidecar":
                    # Assembled packed (from the snapshot's shared virtual host bytes), not re-encoded.
                    out.update(
                        snapshot.memo(
                            ("rds", key, name),
                            lambda: {naming.HTTP_PROXY_ROUTE: http_proxy_route_packed(snapshot, proxy)},
                        )
                    )
                elif name.startswith("inbound|"):
                    # Inbound tables depend on the proxy's own ports.
                    out.update(_pack_all(build_routes(snapshot, proxy, [name])))
                else:
                    out.update(
                        snapshot.memo(
                            ("rds", key, name),
                            lambda name=name: _pack_all(build_routes(snapshot, proxy, [name])),
                        )
                    )
            return out
        if type_url == naming.VIRTUAL_HOST_TYPE:
            # VHDS: Envoy subscribes to virtual hosts as a wildcard and hands each to the route
            # configuration its name begins with; only a delta sidecar's own table has them here.
            if not serves_vhds(proxy):
                return {}
            if watched is not None and naming.HTTP_PROXY_ROUTE not in watched:
                return {}
            return snapshot.memo(("vhds", key), lambda: http_proxy_virtual_hosts(snapshot, proxy))
        return {}


def serves_vhds(proxy: Proxy) -> bool:
    """A sidecar on delta xDS gets its `http_proxy` table's virtual hosts over VHDS (Envoy serves VHDS
    over delta ADS only), unless its node metadata says ``ISTHMUS_VHDS: "false"``: set when its Envoy
    starts, so a proxy never switches (Envoy keeps VHDS virtual hosts when a table drops its source)."""
    if proxy.kind != "sidecar" or not proxy.delta_xds:
        return False
    return parse_env_bool(proxy.metadata.get(VHDS_KEY), True) is not False


def listener_key(proxy: Proxy) -> tuple:
    """Everything of the proxy its listeners are built from: addresses and stat prefixes (ip), inbound
    ports (its pod: namespace and instance), PeerAuthentication, authorization and Telemetry policies
    (namespace, labels), tracing and telemetry names (workload, instance), gateway port offset, exact
    connection balancing. Not the rest of its metadata, nor its service account. The ip makes it per
    proxy."""
    return (
        "lds",
        proxy.kind,
        proxy.ip,
        proxy.namespace,
        proxy.instance,
        proxy.workload,
        frozenset(proxy.labels.items()),
        proxy.port_offset,
        proxy.metadata.get(STATS_COLLECTOR_KEY),
        proxy.metadata.get(INBOUND_EXACT_BALANCE),
        proxy.metadata.get(OUTBOUND_EXACT_BALANCE),
    )


def _listeners(snapshot: Snapshot, proxy: Proxy) -> dict[str, Any]:
    """Once per snapshot and proxy (the same mapping on every full push of the snapshot). A sidecar's
    listeners read of VirtualServices only whether any route uses sessionPersistence (session.in_use):
    after a change of VirtualServices only that leaves it as it was, they are the previous snapshot's
    objects, which the server has already encoded."""
    key = listener_key(proxy)

    def compute() -> dict[str, Any]:
        before = snapshot.routes_changed_from
        if (
            proxy.kind == "sidecar"
            and before is not None
            and key in before._memo
            and session.in_use(before) == session.in_use(snapshot)
        ):
            # What building them reported stays reported: listeners left out, and problems with the
            # (unchanged) Telemetry and AuthorizationPolicy configs they apply.
            prefixes = (f"listener {proxy.ip}_", "Telemetry ", "AuthorizationPolicy ")
            for what, error in before.generation_errors.items():
                if what.startswith(prefixes):
                    snapshot.generation_errors.setdefault(what, error)
            return before._memo[key]
        return _pack_all(build_listeners(snapshot, proxy))

    return snapshot.memo(key, compute)


def _names_are_keys(snapshot: Snapshot, every: Mapping[str, Any], names: frozenset[str]) -> bool:
    """`every.keys() == names`, once per snapshot for each (mapping, set) pair: the delta streams of a
    scope share their subscribed sets (`requests.SubscriptionSets`), so a full push to 1,000 proxies
    compares 1,200 names once per scope, not once per proxy."""
    cache: dict[tuple[int, int], tuple[Mapping[str, Any], frozenset[str], bool]] = snapshot.memo(
        ("eds_names_are_keys",), dict
    )
    hit = cache.get((id(every), id(names)))
    if hit is not None and hit[0] is every and hit[1] is names:
        return hit[2]
    same = every.keys() == names
    cache[(id(every), id(names))] = (every, names, same)
    return same


def _scope_endpoints(snapshot: Snapshot, proxy: Proxy, key: tuple) -> dict[str, Any]:
    """Every endpoint assignment of the scope; after an endpoint-only change, only the changed clusters'
    are rebuilt and the rest are the previous snapshot's (same objects, already encoded)."""
    prior = snapshot.endpoints_changed_from
    previous = prior[0]._memo.get(("eds", key)) if prior is not None else None
    if prior is None or previous is None:
        return _all_endpoints(snapshot, proxy)
    changed = [name for name in sorted(prior[1]) if name in previous]
    return {**previous, **packed_endpoints(snapshot, proxy, changed)}


def _all_endpoints(snapshot: Snapshot, proxy: Proxy) -> dict[str, Any]:
    names = [spec.name for spec in outbound_cluster_specs(snapshot, proxy)]
    return packed_endpoints(snapshot, proxy, names)
