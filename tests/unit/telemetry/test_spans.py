"""The built-in Zipkin collector: ingestion, bounds, queries, and its HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from telemetry_helpers import static_resolver

from isthmus.telemetry import Telemetry
from isthmus.telemetry.spans import SpanError, SpanStore, normalize_id

T1 = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(trace: str, sid: str, parent: str | None = None, *, service: str = "productpage-v1.default",
         kind: str = "SERVER", ts: int = 1_000_000, dur: int = 5000, **tags: str) -> dict[str, Any]:  # fmt: skip
    s: dict[str, Any] = {
        "traceId": trace,
        "id": sid,
        "name": "reviews:9080/*",
        "kind": kind,
        "timestamp": ts,
        "duration": dur,
        "localEndpoint": {"serviceName": service, "ipv4": "127.1.0.2"},
        "tags": {"http.status_code": "200", **tags},
    }
    if parent:
        s["parentId"] = parent
    return s


def test_ids_are_normalized() -> None:
    assert normalize_id("ABC", trace=True) == "0000000000000abc"
    assert normalize_id("0" * 16 + "a" * 16, trace=True) == "a" * 16
    assert normalize_id(T1, trace=True) == T1
    with pytest.raises(SpanError):
        normalize_id("xyz")


def test_a_trace_joins_its_spans_and_summarizes() -> None:
    store = SpanStore(clock=lambda: 2.0)
    store.add(
        [
            span(
                T1, "a1", service="istio-ingressgateway.istio-system", kind="CLIENT", ts=1_000_000, dur=9000
            ),
            span(T1, "b2", "a1", service="productpage-v1.default", ts=1_001_000, dur=7000),
            span(T1, "c3", "b2", service="productpage-v1.default", kind="CLIENT", ts=1_002_000, dur=3000),
            span(
                T1,
                "d4",
                "c3",
                service="reviews-v2.default",
                ts=1_002_500,
                dur=2000,
                **{"http.status_code": "503"},
            ),
        ]
    )
    spans = store.trace(T1.upper())
    assert spans is not None and [s["id"][-2:] for s in spans] == ["a1", "b2", "c3", "d4"]
    (summary,) = store.traces()
    assert summary["traceId"] == T1 and summary["spanCount"] == 4
    assert summary["rootService"] == "istio-ingressgateway.istio-system"
    assert summary["durationUs"] == 9000 and summary["error"] is True
    assert summary["services"] == [
        "istio-ingressgateway.istio-system",
        "productpage-v1.default",
        "reviews-v2.default",
    ]
    assert store.services() == summary["services"]
    assert store.traces(service="reviews-v2.default")[0]["traceId"] == T1
    assert store.traces(service="ratings-v1.default") == []


def test_shared_span_ids_keep_both_sides() -> None:
    store = SpanStore()
    store.add([span(T1, "a1", kind="CLIENT"), {**span(T1, "a1", kind="SERVER"), "shared": True}])
    assert len(store.trace(T1) or []) == 2


def test_bounds_evict_the_oldest_traces() -> None:
    store = SpanStore(max_traces=3, max_spans=2)
    for i in range(5):
        store.add([span(f"{i + 1:032x}", "1", ts=i * 1000)])
    assert len(store) == 3
    assert store.trace(f"{1:032x}") is None and store.trace(f"{5:032x}") is not None
    store.add([span(T1, f"{i:x}") for i in range(1, 5)])
    assert len(store.trace(T1) or []) == 2 and store.dropped == 2


def test_queries_filter_and_order() -> None:
    store = SpanStore(clock=lambda: 100.0)
    store.add([span(f"{i + 1:032x}", "1", ts=int((90 + i) * 1e6), dur=i * 1000) for i in range(5)])
    out = store.traces(limit=2)
    assert [s["start"] for s in out] == [int(94e6), int(93e6)]
    assert len(store.traces(lookback_s=8.5)) == 3
    assert len(store.traces(min_duration_us=3000)) == 2


def test_invalid_spans_are_refused() -> None:
    with pytest.raises(SpanError):
        SpanStore().add([{"traceId": "zz", "id": "1"}])
    with pytest.raises(SpanError):
        SpanStore().add(["nope"])


def test_http_api() -> None:
    async def scenario() -> None:
        t = Telemetry(resolver=static_resolver)
        app = web.Application()
        t.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/api/v2/spans", json=[span(T1, "a1"), span(T1, "b2", "a1", kind="CLIENT")])
            assert r.status == 202
            r = await client.post("/api/v2/spans", data=b"{}", headers={"Content-Type": "application/json"})
            assert r.status == 400
            r = await client.get("/api/traces", params={"service": "productpage-v1.default"})
            (summary,) = await r.json()
            assert summary["traceId"] == T1 and summary["spanCount"] == 2
            r = await client.get(f"/api/traces/{T1}")
            body = await r.json()
            assert body["traceId"] == T1 and len(body["spans"]) == 2
            assert (await client.get("/api/traces/ffff")).status == 404
            assert await (await client.get("/api/v2/services")).json() == ["productpage-v1.default"]
            names = await (
                await client.get("/api/v2/spans", params={"serviceName": "productpage-v1.default"})
            ).json()
            assert names == ["reviews:9080/*"]
            traces = await (
                await client.get("/api/v2/traces", params={"serviceName": "productpage-v1.default"})
            ).json()
            assert len(traces) == 1 and len(traces[0]) == 2
            assert len(await (await client.get(f"/api/v2/trace/{T1}")).json()) == 2

    asyncio.run(asyncio.wait_for(scenario(), 30))
