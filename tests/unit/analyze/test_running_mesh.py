"""The analyzers inside the running mesh: on the control plane's snapshot (store configs and the runner's
pods), grouped by resource for status, and served by GET /api/analysis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer

from isthmus.analyze import analyze_snapshot
from isthmus.analyze.pods import DEFAULT_GATEWAY_YAML, derive_pods
from isthmus.api.loader import load_path, load_text
from isthmus.config.store import Store
from isthmus.model.snapshot import Snapshot

BOOKINFO = Path(__file__).resolve().parents[3] / "examples" / "bookinfo"

EXTRA = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v4}}]
    timeout: 1s
    retries: {attempts: 3, perTryTimeout: 1s}
"""


def _snapshot() -> Snapshot:
    store = Store()
    # The runner adds the default ingress gateway (bookinfo's Gateway selects it).
    resources = (
        load_path(BOOKINFO) + load_text(EXTRA, "extra.yaml") + load_text(DEFAULT_GATEWAY_YAML, "builtin")
    )
    store.apply(resources, "test")
    for pod in derive_pods(resources)[0]:  # stands in for the pods the local runner starts
        store.upsert_pod(pod)
    return Snapshot.build(store.version, store.list(), store.pods())


def test_messages_by_resource_key() -> None:
    by_key = analyze_snapshot(_snapshot())
    msgs = by_key[("VirtualService", "default", "reviews")]
    assert {m.code for m in msgs} == {"IST0101", "ISM0004"}
    assert all(m.resource == "VirtualService default/reviews" for m in msgs)
    assert ("DestinationRule", "default", "reviews") not in by_key


def test_results_are_kept_per_snapshot() -> None:
    snap = _snapshot()
    assert analyze_snapshot(snap) is analyze_snapshot(snap)


def test_http_api_analysis() -> None:
    from aiohttp import web

    from isthmus.mesh import http_api

    snap = _snapshot()
    app = web.Application()
    app[http_api.MESH_KEY] = SimpleNamespace(cp=SimpleNamespace(current=lambda: snap))
    app.router.add_get("/api/analysis", http_api.analysis)

    async def scenario() -> None:
        async with TestClient(TestServer(app)) as client:
            body = await (await client.get("/api/analysis")).json()
            assert body["version"] == snap.version
            assert {m["code"] for m in body["messages"]} == {"IST0101", "ISM0004"}
            one = await (await client.get("/api/analysis", params={"kind": "Gateway"})).json()
            assert one["messages"] == []

    asyncio.run(asyncio.wait_for(scenario(), 30))
