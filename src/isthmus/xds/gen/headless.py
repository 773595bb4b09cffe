"""Requests to one pod of a headless Service (`Host: web-0.db.ns.svc.cluster.local`).

Istio gives a headless Kubernetes Service `*.`-prefixed virtual host domains and an ORIGINAL_DST
cluster: the app resolved `web-0.db...` to that pod's IP with DNS, so the connection goes to that pod.
An explicit proxy has no original destination, so the pod is named by the Host header (or the CONNECT
target) instead: the service's clusters carry Envoy subset load balancing keyed on each endpoint's pod
name (`envoy.lb` metadata `pod`), and its virtual hosts start with a copy of each route per pod that
matches `<pod>.` in the authority and asks for that pod (`metadata_match`). A pod name no endpoint has
gets a 503 saying so (where Istio's DNS lookup would fail) rather than another pod; the service's own
names keep the plain routes, balanced over every pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from isthmus.model.snapshot import Snapshot
from isthmus.registry.build import Registry
from isthmus.registry.types import Service
from isthmus.xds.gen import protos as p

RC = p.route_components

LB_NAMESPACE = "envoy.lb"  # the metadata namespace Envoy's subset load balancer reads
POD_KEY = "pod"
NO_POD_STATUS = 503


def pins_pods(svc: Service) -> bool:
    """Whether requests may name one of the service's pods: a headless Kubernetes Service."""
    return svc.headless and svc.is_kubernetes


def pod_names(snapshot: Snapshot, svc: Service, port: int) -> list[str]:
    """The pods behind the service port, ready or not (a pod that is not ready stays addressable and
    fails as unavailable; readiness changes are then EDS-only)."""
    return sorted(pods_of(snapshot.registry, (svc.hostname,)).get((svc.hostname, svc.namespace, port), ()))


def pods_of(registry: Registry, hosts: Iterable[str]) -> dict[tuple[str, str, int], frozenset[str]]:
    """The pods of every port of the headless services of `hosts`, ready or not: what their routes
    depend on beyond the config (a change is a full push, not an EDS-only one)."""
    out: dict[tuple[str, str, int], frozenset[str]] = {}
    for host in set(hosts):
        for svc in registry.by_host.get(host, ()):
            if pins_pods(svc):
                for sp in svc.ports:
                    eps = registry.endpoints(svc, sp.port)
                    out[(host, svc.namespace, sp.port)] = frozenset(e.instance for e in eps if e.instance)
    return out


def apply_subset_lb(cluster: p.cluster.Cluster) -> None:
    """Subsets by pod: a route naming a pod gets that pod or nothing; any other request balances over
    all endpoints with the cluster's policy."""
    cfg = cluster.lb_subset_config
    cfg.fallback_policy = p.cluster.Cluster.LbSubsetConfig.ANY_ENDPOINT
    selector = cfg.subset_selectors.add(keys=[POD_KEY])
    selector.fallback_policy = p.cluster.Cluster.LbSubsetConfig.LbSubsetSelector.NO_FALLBACK


def _pinned(route: RC.Route, pod: str) -> RC.Route:
    out = RC.Route()
    out.CopyFrom(route)
    out.match.headers.add(
        name=":authority", string_match=p.string_matcher.StringMatcher(prefix=pod + ".", ignore_case=True)
    )
    out.route.metadata_match.filter_metadata[LB_NAMESPACE].fields[POD_KEY].string_value = pod
    return out


def _no_such_pod(connect: bool, service_names: Iterable[str], svc: Service) -> RC.Route:
    """503 for an authority that is none of the vhost's service names, so it reached the vhost through
    a `*.` domain naming a pod the service does not have (CONNECT or other requests)."""
    out = RC.Route()
    if connect:
        out.match.connect_matcher.SetInParent()
    else:
        out.match.prefix = "/"
    for name in service_names:
        out.match.headers.add(
            name=":authority",
            string_match=p.string_matcher.StringMatcher(exact=name, ignore_case=True),
            invert_match=True,
        )
    out.direct_response.status = NO_POD_STATUS
    out.direct_response.body.inline_string = f"no pod of that name behind headless service {svc.hostname}\n"
    return out


def pinned_routes(
    snapshot: Snapshot, svc: Service, port: int, domains: Sequence[str], routes: Sequence[RC.Route]
) -> list[RC.Route]:
    """`routes` of the service port's virtual host, preceded by their copies for each pod and by the
    503 for pod names it does not have (one for CONNECT, one for other requests)."""
    forwarding = [r for r in routes if r.HasField("route")]
    out = [_pinned(r, pod) for pod in pod_names(snapshot, svc, port) for r in forwarding]
    names = [d for d in domains if not d.startswith("*.")]
    for connect in (True, False):
        if any(r.match.HasField("connect_matcher") is connect for r in forwarding):
            out.append(_no_such_pod(connect, names, svc))
    out.extend(routes)
    return out
