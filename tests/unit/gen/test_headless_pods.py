"""A headless Service's pods by name (`xds/gen/headless.py`): what the sidecar's config says, and that a
change of its pods is a full push (each pod has routes of its own)."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from gen_helpers import PODS, SERVICES, clusters, generate, route_table, sidecar, snapshot, vhost

from isthmus.api import loader
from isthmus.config.store import Store
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


def test_each_pod_gets_the_vhost_routes_pinned_to_it_then_a_503_then_the_plain_routes() -> None:
    table = route_table(snapshot(DB, pods=[*PODS, db_pod(0), db_pod(1)]), sidecar())
    vh = vhost(table, "db.default.svc.cluster.local:80")
    assert "*.db:80" in vh["domains"] and "db:80" in vh["domains"]
    routes = vh["routes"]
    pinned = [(pods_of_route(r), "connect_matcher" in r["match"]) for r in routes[:4]]
    assert pinned == [("db-0", True), ("db-0", False), ("db-1", True), ("db-1", False)]
    assert all(
        r["match"]["headers"]
        == [{"name": ":authority", "string_match": {"prefix": f"{pod}.", "ignore_case": True}}]
        for r, (pod, _) in zip(routes[:4], pinned, strict=True)
    )
    guards = routes[4:6]
    assert [g["direct_response"]["status"] for g in guards] == [503, 503]
    # The guard matches what reached the vhost through a `*.` domain: none of its plain names.
    excluded = {h["string_match"]["exact"] for h in guards[1]["match"]["headers"] if h.get("invert_match")}
    assert excluded == {d for d in vh["domains"] if not d.startswith("*.")}
    assert [pods_of_route(r) for r in routes[6:]] == [None, None]
    assert routes[6]["route"]["cluster"] == HTTP


def test_tcp_ports_pin_tunnels_only() -> None:
    table = route_table(snapshot(DB, pods=[*PODS, db_pod(0)]), sidecar())
    routes = vhost(table, "db.default.svc.cluster.local:5432")["routes"]
    assert [("connect_matcher" in r["match"], pods_of_route(r)) for r in routes] == [
        (True, "db-0"), (True, None), (True, None)]  # fmt: skip
    assert routes[1]["direct_response"]["status"] == 503


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
