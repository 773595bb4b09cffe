"""Requests to one pod of a headless Service (`Host: web-0.db.ns.svc.cluster.local`).

Istio gives a headless Kubernetes Service `*.`-prefixed virtual host domains and an ORIGINAL_DST
cluster: the app resolved `web-0.db...` to that pod's IP with DNS, so the connection goes to that pod.
An explicit proxy has no original destination, so the pod is named by the Host header (or the CONNECT
target) instead: the service's clusters carry Envoy subset load balancing keyed on each endpoint's pod
name (`envoy.lb` metadata `pod`), and its virtual hosts start with a copy of each route per pod that
matches `<pod>.` in the authority and asks for that pod (`metadata_match`). A pod name no endpoint has
gets a 503 saying so (where Istio's DNS lookup would fail) rather than another pod; the service's own
names keep the plain routes, balanced over every pod.

A pod is reached by its IP the same way. For a headless service's TCP (and sniffed) ports istiod builds
one outbound listener per endpoint address, `<podIP>:<port>` (listener.go buildSidecarOutboundListeners),
so a connection to a pod's IP goes through `outbound|<port>||<service>` with mesh mTLS rather than the
PassthroughCluster. Here the authority names the IP: each service port's virtual host also has its pods'
`<podIP>:<port>` domains (and `<podIP>` on port 80, as every port-80 domain), and copies of its routes
that match that authority exactly and ask for that pod. Only the addresses of the service port's own
endpoints, ready or not (so readiness stays EDS-only); any other IP keeps the catch-all's routes. HTTP
ports get them too: istiod's HTTP ports share one `0.0.0.0:<port>` listener, where a Host that is a pod
IP meets only the catch-all (its transparent capture still reaches the pod), but an explicit proxy has
nothing else to go by, so the IP is routed as on the TCP ports. Two services (or a ServiceEntry
address) naming one `<ip>:<port>` keep it in the first virtual host built, as any duplicated domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from isthmus.model import hosts as h
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


def pods(snapshot: Snapshot, svc: Service, port: int) -> tuple[tuple[str, str], ...]:
    """(name, address) of the pods behind the service port, ready or not, by name (a pod that is not
    ready stays addressable and fails as unavailable; readiness changes are then EDS-only). Memoized
    per snapshot: every scope's table asks for every headless service port."""
    key = (svc.hostname, svc.namespace, port)
    cache: dict[tuple[str, str, int], tuple[tuple[str, str], ...]] = snapshot.memo(("headless_pods",), dict)
    found = cache.get(key)
    if found is None:
        found = cache[key] = tuple(sorted(_pods_of_port(snapshot.registry, svc, port)))
    return found


def pod_names(snapshot: Snapshot, svc: Service, port: int) -> list[str]:
    """The names of the pods behind the service port, ready or not (see `pods`)."""
    return [name for name, _ in pods(snapshot, svc, port)]


def _pods_of_port(registry: Registry, svc: Service, port: int) -> frozenset[tuple[str, str]]:
    return frozenset((e.instance, e.address) for e in registry.endpoints(svc, port) if e.instance)


def pods_of(
    registry: Registry, hosts: Iterable[str]
) -> dict[tuple[str, str, int], frozenset[tuple[str, str]]]:
    """(name, address) of the pods of every port of the headless services of `hosts`, ready or not: what
    their routes depend on beyond the config (a change is a full push, not an EDS-only one)."""
    out: dict[tuple[str, str, int], frozenset[tuple[str, str]]] = {}
    for host in set(hosts):
        for svc in registry.by_host.get(host, ()):
            if pins_pods(svc):
                for sp in svc.ports:
                    out[(host, svc.namespace, sp.port)] = _pods_of_port(registry, svc, sp.port)
    return out


def _pod_ips(snapshot: Snapshot, svc: Service, port: int) -> tuple[tuple[str, str], ...]:
    """(name, IP) of the service port's pods that have an IP address (an endpoint named by a hostname,
    a WorkloadEntry's, is left out, as istiod leaves it out of its per-IP listeners). Memoized per
    snapshot, as `pods`."""
    key = (svc.hostname, svc.namespace, port)
    cache: dict[tuple[str, str, int], tuple[tuple[str, str], ...]] = snapshot.memo(
        ("headless_pod_ips",), dict
    )
    found = cache.get(key)
    if found is None:
        found = cache[key] = tuple((name, addr) for name, addr in pods(snapshot, svc, port) if h.is_ip(addr))
    return found


def _ip_authorities(ip: str, port: int) -> tuple[str, str]:
    """The authorities naming the pod IP on the port: `<ip>` then `<ip>:<port>` (IPv6 in brackets)."""
    host = f"[{ip}]" if ":" in ip else ip
    return host, f"{host}:{port}"


def pod_ip_domains(snapshot: Snapshot, svc: Service, port: int) -> list[str]:
    """The virtual host domains naming the service port's pods by IP: `<ip>:<port>`, and `<ip>` on port
    80 (as every port-80 domain); none unless `pins_pods`. Chosen here rather than by the caller's "has a
    colon" test, which a bracketed IPv6 address passes without a port."""
    if not pins_pods(svc):
        return []
    out = []
    for _, ip in _pod_ips(snapshot, svc, port):
        bare, with_port = _ip_authorities(ip, port)
        out.extend((bare, with_port) if port == 80 else (with_port,))
    return out


def apply_subset_lb(cluster: p.cluster.Cluster) -> None:
    """Subsets by pod: a route naming a pod gets that pod or nothing; any other request balances over
    all endpoints with the cluster's policy."""
    cfg = cluster.lb_subset_config
    cfg.fallback_policy = p.cluster.Cluster.LbSubsetConfig.ANY_ENDPOINT
    selector = cfg.subset_selectors.add(keys=[POD_KEY])
    selector.fallback_policy = p.cluster.Cluster.LbSubsetConfig.LbSubsetSelector.NO_FALLBACK


def _pinned(route: RC.Route, pod: str, authority: p.string_matcher.StringMatcher) -> RC.Route:
    out = RC.Route()
    out.CopyFrom(route)
    out.match.headers.add(name=":authority", string_match=authority)
    if out.HasField("route"):  # a redirect or direct response has no upstream to pin
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
    """`routes` of the service port's virtual host, preceded by their copies for each pod IP among its
    `domains` (exact authority), then for each pod name (`<pod>.` prefix), then by the 503 for pod
    names it does not have (one for CONNECT, one for other requests). IPs come first: an IP authority
    is never a pod-named one, while a pod named like an IP's first label would take the IP's requests."""
    forwarding = [r for r in routes if r.HasField("route")]
    if not forwarding:
        return list(routes)
    # Every route is copied, in order, so a pod-named request meets the rules the plain names meet
    # (a redirect or direct response before or after a forwarding route); only forwarding ones are pinned.
    out: list[RC.Route] = []
    ips = _pod_ips(snapshot, svc, port)
    if ips:
        # The IP domains another virtual host kept (an address two services share) are not this one's.
        held = {d.lower() for d in domains}
        for pod, ip in ips:
            for authority in _ip_authorities(ip, port):
                if authority.lower() in held:
                    exact = p.string_matcher.StringMatcher(exact=authority, ignore_case=True)
                    out.extend(_pinned(r, pod, exact) for r in routes)
    for pod in pod_names(snapshot, svc, port):
        prefix = p.string_matcher.StringMatcher(prefix=pod + ".", ignore_case=True)
        out.extend(_pinned(r, pod, prefix) for r in routes)
    names = [d for d in domains if not d.startswith("*.")]
    for connect in (True, False):
        if any(r.match.HasField("connect_matcher") is connect for r in forwarding):
            out.append(_no_such_pod(connect, names, svc))
    out.extend(routes)
    return out
