"""The service graph: edges from client reports, mTLS from server reports, a sliding window."""

from __future__ import annotations

from typing import Any

from telemetry_helpers import (
    OUTSIDER_IP,
    PP_PRINCIPAL,
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
    REVIEWS_IP,
    REVIEWS_PRINCIPAL,
    http_entry,
    message,
    static_resolver,
)

from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry
from isthmus.telemetry.graph import ServiceGraph


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(t: Telemetry, proxy: Proxy, direction: str, entries: list[Any]) -> None:
    msg = message(proxy, direction, entries)
    t.ingest(t.register_node(msg.identifier.node), direction, msg)


def inbound(**kw: Any) -> Any:
    base = {
        "cluster": "inbound|9080||",
        "upstream": "127.0.0.1:41002",
        "downstream": f"{PRODUCTPAGE_IP}:40000",
        "local": f"{REVIEWS_IP}:9080",
    }
    return http_entry(**{**base, **kw})


def test_edges_count_client_reports_once_with_mtls_from_the_server() -> None:
    clock = Clock()
    t = Telemetry(resolver=static_resolver, clock=clock)
    outbound = [http_entry(duration_ms=d) for d in range(1, 101)] + [http_entry(code=503, duration_ms=1)] * 10
    feed(t, PRODUCTPAGE, "outbound", outbound)
    feed(t, REVIEWS, "inbound", [inbound(peer_san=PP_PRINCIPAL, local_san=REVIEWS_PRINCIPAL)] * 110)
    g = t.graph(60)
    (edge,) = g["edges"]
    assert edge["source"] == "workload:default/productpage-v1"
    assert edge["destination"] == "workload:default/reviews-v2"
    assert edge["services"] == ["reviews.default.svc.cluster.local"]
    assert edge["requests"] == 110  # the server's reports do not count twice
    assert edge["rps"] == round(110 / 60, 3)
    assert edge["errorRate"] == round(10 / 110, 4)
    assert edge["p50"] == 45 and edge["p99"] == 99  # nearest rank over 11 x 1 ms, 2..100 ms
    assert edge["mtls"] is True and edge["mtlsPercent"] == 100.0
    assert edge["codes"] == {"200": 100, "503": 10}
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["workload:default/reviews-v2"]["app"] == "reviews"
    assert nodes["workload:default/reviews-v2"]["errorRate"] == round(10 / 110, 4)
    assert nodes["workload:default/productpage-v1"]["rpsOut"] == round(110 / 60, 3)


def test_sources_without_a_proxy_are_counted_from_the_server() -> None:
    t = Telemetry(resolver=static_resolver, clock=Clock())
    feed(t, REVIEWS, "inbound", [inbound(downstream=f"{OUTSIDER_IP}:1234")] * 4)
    feed(t, REVIEWS, "inbound", [inbound(downstream="10.0.0.1:1234")] * 2)
    edges = {e["source"]: e for e in t.graph(60)["edges"]}
    assert edges["workload:legacy/legacy"]["requests"] == 4
    assert edges["workload:legacy/legacy"]["mtls"] is False
    assert edges["unknown"]["requests"] == 2


def test_failures_without_a_destination_point_at_the_service() -> None:
    t = Telemetry(resolver=static_resolver, clock=Clock())
    feed(
        t,
        PRODUCTPAGE,
        "outbound",
        [http_entry(cluster="", upstream=None, code=404, flags={"no_route_found": True})],
    )
    (edge,) = t.graph(60)["edges"]
    assert edge["destination"] == "service:reviews:9080" and edge["errorRate"] == 0.0 and edge["mtls"] is None


def test_the_window_slides() -> None:
    clock = Clock()
    t = Telemetry(resolver=static_resolver, clock=clock)
    feed(t, PRODUCTPAGE, "outbound", [http_entry()] * 5)
    clock.now += 30
    feed(t, PRODUCTPAGE, "outbound", [http_entry()] * 3)
    assert t.graph(60)["edges"][0]["requests"] == 8
    assert t.graph(10)["edges"][0]["requests"] == 3
    clock.now += 61
    assert t.graph(60)["edges"] == []
    assert t.graph(600)["edges"][0]["requests"] == 8  # still within the horizon


def test_prune_forgets_idle_edges() -> None:
    clock = Clock()
    g = ServiceGraph(horizon_s=10, clock=clock)
    t = Telemetry(resolver=static_resolver, clock=clock)
    t.service_graph = g
    feed(t, PRODUCTPAGE, "outbound", [http_entry()])
    clock.now += 11
    g.prune()
    assert g.graph(10)["nodes"] == [] and not g._edges
    # The same peers again after the prune: a new edge, counted (not the forgotten one).
    feed(t, PRODUCTPAGE, "outbound", [http_entry()] * 2)
    (edge,) = g.graph(10)["edges"]
    assert edge["requests"] == 2 and len(g._edges) == 1
