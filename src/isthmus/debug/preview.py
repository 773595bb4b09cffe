"""The config a proxy *would* get: the running config plus candidate resources, through the generators.

Used by the HTTP API's `POST /api/route-preview` (see `mesh/http_api.py`): candidate resources are
validated like `isthmus apply` input, added to (or replacing, same kind/namespace/name) a copy of the
store's config — a replaced resource keeps its creation order, as an apply would — and a snapshot is
built with the current pods. Nothing is stored or pushed. The answer is the proxy's listeners, routes,
clusters and endpoints in Envoy's JSON form, which `ProxyConfig.from_generated` reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from isthmus.config.jwks_resolver import with_local_files
from isthmus.config.store import Config
from isthmus.model.jwks import JwksEntry, JwksKey, wanted
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.generator import MeshGenerator

CANDIDATE_SOURCE = "candidate"
_SEQ_BASE = 1_000_000_000


def candidate_configs(current: Iterable[Config], resources: Sequence[Any]) -> list[Config]:
    """The store's configs with `resources` added or replacing theirs (creation order kept)."""
    by_key = {c.key: c for c in current}
    now = datetime.now(UTC)
    seq = itertools.count(_SEQ_BASE)
    for res in resources:
        old = by_key.get(res.key)
        if old is not None:
            by_key[res.key] = Config(res, CANDIDATE_SOURCE, old.created, old.seq, old.generation + 1)
        else:
            by_key[res.key] = Config(res, CANDIDATE_SOURCE, now, next(seq))
    return list(by_key.values())


def candidate_snapshot(
    version: str,
    current: Iterable[Config],
    pods: Iterable[Pod],
    resources: Sequence[Any],
    jwks: Mapping[JwksKey, JwksEntry] | None = None,
) -> Snapshot:
    """The candidate config's snapshot. `jwks`: the key sets the JWKS resolver holds now (the running
    snapshot's); a file:// jwksUri only the candidate names is read here, as the resolver would once it
    is applied (the generators read no file), and a new http(s) one shows as not fetched yet."""
    snap = Snapshot.build(f"{version}+candidate", candidate_configs(current, resources), pods)
    snap.jwks = with_local_files(jwks or {}, wanted(snap.configs))
    return snap


def _to_dicts(messages: Iterable[Any]) -> list[dict[str, Any]]:
    return [MessageToDict(msg, preserving_proto_field_name=True) for msg in messages]


def route_names_for(snapshot: Snapshot, proxy: Proxy) -> list[str]:
    """Every RDS name the proxy's listeners ask for."""
    from isthmus.xds.gen.gateway import https_route_name

    if proxy.kind == "sidecar":
        names = [naming.HTTP_PROXY_ROUTE]
        names += [naming.inbound_cluster(ib.port) for ib in snapshot.inbound_ports(proxy)]
        return names
    names = []
    for s in snapshot.gateway_servers(proxy):
        if s.terminates_tls and s.serves_http:
            names.append(https_route_name(s))
        elif s.serves_http:
            names.append(naming.gateway_http_route_name(s.listen_port, s.bind))
    return sorted(set(names))


def generate_proxy_config(
    snapshot: Snapshot, proxy: Proxy, generator: MeshGenerator | None = None
) -> dict[str, Any]:
    """The proxy's listeners, routes, clusters and endpoints as Envoy JSON dicts."""
    from isthmus.xds.gen import protos as p

    gen = generator or MeshGenerator()

    def unpacked(type_url: str, names: frozenset[str] | None, cls: Any) -> list[Any]:
        out = []
        for packed in gen.generate(snapshot, proxy, type_url, names).values():
            msg = cls()
            packed.Unpack(msg)
            out.append(msg)
        return out

    clusters = unpacked(naming.CLUSTER_TYPE, None, p.cluster.Cluster)
    listeners = unpacked(naming.LISTENER_TYPE, None, p.listener.Listener)
    routes = unpacked(
        naming.ROUTE_TYPE, frozenset(route_names_for(snapshot, proxy)), p.route.RouteConfiguration
    )
    eds_names = frozenset(c.name for c in clusters if c.type == p.cluster.Cluster.EDS)
    endpoints = unpacked(naming.ENDPOINT_TYPE, eds_names, p.endpoint.ClusterLoadAssignment)
    return {
        "version": snapshot.version,
        "proxy": proxy.id,
        "listeners": _to_dicts(listeners),
        "routes": _to_dicts(routes),
        "clusters": _to_dicts(clusters),
        "endpoints": _to_dicts(endpoints),
    }
