"""A headless Service's pods by name and by IP (`xds/gen/headless.py`): what the sidecar's config says,
and that a change of its pods is a full push (each pod has routes of its own)."""

from __future__ import annotations

import dataclasses
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from gen_helpers import PODS, SERVICES, clusters, generate, route_table, sidecar, snapshot, vhost
from test_fuzz_findings import envoy_validate_routes

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.debug import matching
from isthmus.mesh.control_plane import ControlPlane
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

DB = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp, port: 5432}]
"""
HTTP = "outbound|80||db.default.svc.cluster.local"


def db_pod(i: int) -> Pod:
    return Pod(f"db-{i}", "default", f"127.7.0.{10 + i}", {"app": "db"}, workload="db",
               app_ports={8080: 41000 + i, 5432: 42000 + i})  # fmt: skip


def pods_of_route(route: dict[str, Any]) -> str | None:
    md = route.get("route", {}).get("metadata_match", {}).get("filter_metadata", {})
    return md.get("envoy.lb", {}).get("pod")


def authority_match(route: dict[str, Any]) -> dict[str, Any]:
    (header,) = route["match"]["headers"]
    assert header["name"] == ":authority" and header["string_match"]["ignore_case"] is True, header
    return {k: v for k, v in header["string_match"].items() if k != "ignore_case"}


def test_each_pod_gets_the_vhost_routes_pinned_to_it_then_a_503_then_the_plain_routes() -> None:
    table = route_table(snapshot(DB, pods=[*PODS, db_pod(0), db_pod(1)]), sidecar())
    vh = vhost(table, "db.default.svc.cluster.local:80")
    assert "*.db:80" in vh["domains"] and "db:80" in vh["domains"]
    routes = vh["routes"]
    # First by IP: each pod's `<ip>` and `<ip>:80` (port 80), exactly; then by name.
    by_ip = [(pods_of_route(r), "connect_matcher" in r["match"], authority_match(r)) for r in routes[:8]]
    assert by_ip == [
        (pod, connect, {"exact": authority})
        for pod, ip in (("db-0", "127.7.0.10"), ("db-1", "127.7.0.11"))
        for authority in (ip, f"{ip}:80")
        for connect in (True, False)
    ]
    pinned = [(pods_of_route(r), "connect_matcher" in r["match"]) for r in routes[8:12]]
    assert pinned == [("db-0", True), ("db-0", False), ("db-1", True), ("db-1", False)]
    assert all(
        authority_match(r) == {"prefix": f"{pod}."} for r, (pod, _) in zip(routes[8:12], pinned, strict=True)
    )
    guards = routes[12:14]
    assert [g["direct_response"]["status"] for g in guards] == [503, 503]
    # The guard matches what reached the vhost through a `*.` domain: none of its plain names (its pod
    # IPs included: a request by IP that no pinned copy takes goes on to the plain routes).
    excluded = {h["string_match"]["exact"] for h in guards[1]["match"]["headers"] if h.get("invert_match")}
    assert excluded == {d for d in vh["domains"] if not d.startswith("*.")}
    assert {"127.7.0.10", "127.7.0.11:80"} <= excluded
    assert [pods_of_route(r) for r in routes[14:]] == [None, None]
    assert routes[14]["route"]["cluster"] == HTTP


def test_tcp_ports_pin_tunnels_only() -> None:
    table = route_table(snapshot(DB, pods=[*PODS, db_pod(0)]), sidecar())
    routes = vhost(table, "db.default.svc.cluster.local:5432")["routes"]
    assert [("connect_matcher" in r["match"], pods_of_route(r)) for r in routes] == [
        (True, "db-0"), (True, "db-0"), (True, None), (True, None)]  # fmt: skip
    assert authority_match(routes[0]) == {"exact": "127.7.0.10:5432"}
    assert authority_match(routes[1]) == {"prefix": "db-0."}
    assert routes[2]["direct_response"]["status"] == 503


# --- a pod by its IP ------------------------------------------------------------------------------


def where(table: dict[str, Any], url: str, host: str | None = None) -> tuple[str, str, str | None]:
    """(virtual host, cluster, pinned pod) of a request (`http://...`, `host`: its Host header) or
    tunnel (`tcp://host:port`)."""
    request = matching.request_from_url(url, headers=[("host", host)] if host else ())
    found = matching.select_virtual_host(table, request.authority)
    assert found is not None, url
    route = matching.select_route(found.vhost, request).route
    assert route is not None and "route" in route, (url, route)
    return found.vhost["name"], route["route"]["cluster"], pods_of_route(route)


def test_a_pod_ip_reaches_that_pod_through_the_service_cluster() -> None:
    """istiod's per-IP outbound listeners of a headless service (listener.go): `<podIP>:<port>` goes
    through `outbound|<port>||<service>` to that pod (mesh mTLS), not to the PassthroughCluster."""
    table = route_table(snapshot(DB, pods=[*PODS, db_pod(0), db_pod(1)]), sidecar())
    http_vh, tcp_vh = "db.default.svc.cluster.local:80", "db.default.svc.cluster.local:5432"
    assert vhost(table, http_vh)["domains"][-4:] == [
        "127.7.0.10",
        "127.7.0.10:80",
        "127.7.0.11",
        "127.7.0.11:80",
    ]
    # Off port 80 a domain has its port, as every other one there.
    assert vhost(table, tcp_vh)["domains"][-2:] == ["127.7.0.10:5432", "127.7.0.11:5432"]
    tcp = "outbound|5432||db.default.svc.cluster.local"
    for pod, ip in (("db-0", "127.7.0.10"), ("db-1", "127.7.0.11")):
        assert where(table, f"http://{ip}/") == (http_vh, HTTP, pod)
        assert where(table, "http://x/", host=f"{ip}:80") == (http_vh, HTTP, pod)
        assert where(table, f"tcp://{ip}:5432") == (tcp_vh, tcp, pod)
        assert where(table, f"tcp://{ip}:80") == (http_vh, HTTP, pod)
    # The service's names still balance over every pod.
    assert where(table, "http://db/") == (http_vh, HTTP, None)


REDIRECTS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: db}}]
  - directResponse: {status: 418}
"""


@pytest.mark.parametrize("authority", ["db-0.db", "127.7.0.10", "db"])
def test_a_pod_named_request_meets_the_rules_in_their_order(authority: str) -> None:
    """A redirect before the forwarding route and a direct response after it apply to a request that
    names a pod (by name or IP) as to one for the service; only the forwarding route is pinned."""
    table = route_table(snapshot(DB, REDIRECTS, pods=[*PODS, db_pod(0), db_pod(1)]), sidecar())
    pinned = None if authority == "db" else "db-0"

    def route(path: str) -> dict[str, Any]:
        request = matching.request_from_url(f"http://{authority}{path}")
        found = matching.select_virtual_host(table, request.authority)
        assert found is not None and found.vhost["name"] == "db.default.svc.cluster.local:80"
        chosen = matching.select_route(found.vhost, request).route
        assert chosen is not None, path
        return chosen

    assert route("/old/x")["redirect"]["path_redirect"] == "/new"
    assert (route("/api/x")["route"]["cluster"], pods_of_route(route("/api/x"))) == (HTTP, pinned)
    assert route("/other")["direct_response"]["status"] == 418
    # a pod that does not exist still gets the 503 that says so, whatever the path
    if authority == "db-0.db":
        request = matching.request_from_url("http://db-9.db/old/x")
        found = matching.select_virtual_host(table, request.authority)
        assert found is not None
        assert matching.select_route(found.vhost, request).route["direct_response"]["status"] == 503


def test_an_ip_that_is_no_endpoint_of_the_port_keeps_the_catch_all() -> None:
    snap = snapshot(DB, pods=[*PODS, db_pod(0)])
    table = route_table(snap, sidecar())
    passthrough = (naming.ALLOW_ANY_VHOST, naming.PASSTHROUGH_CLUSTER, None)
    assert where(table, "tcp://127.7.0.11:5432") == passthrough  # no such pod
    assert where(table, "tcp://127.7.0.10:6000") == passthrough  # a pod's IP on a port the service lacks
    # A pod of a service with a cluster IP: reached by that address, not its own.
    assert where(table, "http://127.7.0.2:9080/") == passthrough


def test_a_pod_that_is_not_ready_keeps_its_ip_domains() -> None:
    """Routes name every pod, ready or not: readiness stays an EDS-only change."""
    table = route_table(snapshot(DB, pods=[*PODS, dataclasses.replace(db_pod(0), ready=False)]), sidecar())
    assert "127.7.0.10:5432" in vhost(table, "db.default.svc.cluster.local:5432")["domains"]


def test_only_kubernetes_headless_services_name_their_pods_by_ip() -> None:
    """A ServiceEntry of resolution NONE (istiod's other Passthrough services) has no pod names either."""
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
  workloadSelector: {labels: {app: db}}
"""
    table = route_table(snapshot(se, pods=[*PODS, db_pod(0)]), sidecar())
    domains = [d for vh in table["virtual_hosts"] for d in vh["domains"]]
    assert not [d for d in domains if d.startswith("127.7.0.10")], domains


SHARED = """
apiVersion: v1
kind: Service
metadata: {name: replicas, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp, port: 5432}, {name: tcp-admin, port: 7000}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.example.com]
  addresses: [127.7.0.11]
  ports: [{number: 5432, name: tcp, protocol: TCP}, {number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.7.0.99}]
"""
REPLICAS_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: replicas, namespace: default}
spec:
  hosts: [replicas]
  http: [{route: [{destination: {host: replicas}}]}]
"""


@pytest.mark.parametrize("with_vs", [False, True], ids=["defaults", "virtual-service"])
def test_a_pod_ip_two_services_share_is_one_domain_of_one_vhost(with_vs: bool, tmp_path: Path) -> None:
    """Two headless services select the same pods on the same ports, and a ServiceEntry has one of their
    IPs as its address: each `<ip>[:port]` is a domain of one virtual host only (Envoy NACKs a table
    with a domain twice), whose routes alone pin it; Envoy takes the table."""
    docs = (DB, SHARED, REPLICAS_VS) if with_vs else (DB, SHARED)
    table = route_table(snapshot(*docs, pods=[*PODS, db_pod(0), db_pod(1)]), sidecar())
    domains = Counter(d.lower() for vh in table["virtual_hosts"] for d in vh["domains"])
    assert [d for d, n in domains.items() if n > 1] == []
    for ip in ("127.7.0.10", "127.7.0.11"):
        for authority in (ip, f"{ip}:80", f"{ip}:5432", f"{ip}:7000"):
            holders = [vh for vh in table["virtual_hosts"] if authority in vh["domains"]]
            assert len(holders) == 1, authority
            pinning = [
                vh["name"]
                for vh in table["virtual_hosts"]
                for r in vh["routes"]
                if r["match"].get("headers") and authority_match_or_none(r) == {"exact": authority}
            ]
            assert set(pinning) <= {holders[0]["name"]}, (authority, pinning)
    # Each authority still reaches its pod, through the one service that holds it.
    name, cluster, pod = where(table, "tcp://127.7.0.10:7000")
    assert (cluster, pod) == ("outbound|7000||replicas.default.svc.cluster.local", "db-0")
    port80 = where(table, "http://127.7.0.10/")
    expected_host = "replicas" if with_vs else "db"
    assert port80[1:] == (f"outbound|80||{expected_host}.default.svc.cluster.local", "db-0")
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr


def authority_match_or_none(route: dict[str, Any]) -> dict[str, Any] | None:
    headers = [h for h in route["match"].get("headers", []) if not h.get("invert_match")]
    if len(headers) != 1 or headers[0]["name"] != ":authority":
        return None
    return {k: v for k, v in headers[0]["string_match"].items() if k != "ignore_case"}


def test_subsets_by_pod_on_the_cluster_and_pod_names_on_its_endpoints() -> None:
    snap = snapshot(DB, pods=[*PODS, db_pod(0), db_pod(1)])
    proxy = sidecar()
    cluster = clusters(snap, proxy)[HTTP]
    assert cluster["lb_subset_config"] == {
        "fallback_policy": "ANY_ENDPOINT",
        "subset_selectors": [{"keys": ["pod"], "fallback_policy": "NO_FALLBACK"}],
    }
    cla = generate(snap, proxy, naming.ENDPOINT_TYPE, {HTTP})[HTTP]
    lb = cla["endpoints"][0]["lb_endpoints"]
    assert [e["metadata"]["filter_metadata"]["envoy.lb"] for e in lb] == [{"pod": "db-0"}, {"pod": "db-1"}]
    # A service with a cluster IP keeps plain load balancing and endpoints.
    reviews = "outbound|9080||reviews.default.svc.cluster.local"
    assert "lb_subset_config" not in clusters(snap, proxy)[reviews]
    plain = generate(snap, proxy, naming.ENDPOINT_TYPE, {reviews})[reviews]
    assert all(
        "envoy.lb" not in e["metadata"]["filter_metadata"] for e in plain["endpoints"][0]["lb_endpoints"]
    )


def test_a_new_pod_of_a_headless_service_is_a_full_push_and_readiness_is_not() -> None:
    store = Store()
    store.apply(loader.load_text(textwrap.dedent(SERVICES + "---" + DB), "svc.yaml"), "test")
    for pod in [*PODS, db_pod(0)]:
        store.upsert_pod(pod)
    cp = ControlPlane(store)
    pushes: list[Any] = []
    cp.xds.update = lambda snapshot, request: pushes.append(request)  # type: ignore[method-assign]
    cp.rebuild()
    store.upsert_pod(db_pod(1))
    assert pushes[-1].full and pushes[-1].reason == "pods of a headless service", pushes[-1]
    routes = route_table(cp.snapshot, sidecar())
    assert "db-1" in {pods_of_route(r) for r in vhost(routes, "db.default.svc.cluster.local:80")["routes"]}
    store.upsert_pod(dataclasses.replace(db_pod(1), ready=False))
    assert not pushes[-1].full and HTTP in pushes[-1].eds_only_clusters, pushes[-1]
    # The same pod at another IP: its IP domains change, so the routes do.
    store.upsert_pod(dataclasses.replace(db_pod(1), ip="127.7.0.31", ready=False))
    assert pushes[-1].full and pushes[-1].reason == "pods of a headless service", pushes[-1]
    routes = route_table(cp.snapshot, sidecar())
    domains = vhost(routes, "db.default.svc.cluster.local:5432")["domains"]
    assert "127.7.0.31:5432" in domains and "127.7.0.11:5432" not in domains
