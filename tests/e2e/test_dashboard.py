"""The dashboard at /ui/ in a real browser (headless Debian Chromium driven by Playwright) against a real
bookinfo mesh: the live graph with its numbers, their refresh, a service page, one request's trace through
gateway -> productpage -> reviews -> ratings, and an analyzer message for a broken resource."""

from __future__ import annotations

import json
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess

pytestmark = pytest.mark.e2e

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
]  # fmt: skip
WAIT_MS = 15_000

GATEWAY = "workload:istio-system/istio-ingressgateway"
PRODUCTPAGE = "workload:default/productpage-v1"
DETAILS = "workload:default/details-v1"
REVIEWS_V1 = "workload:default/reviews-v1"
REVIEWS_V2 = "workload:default/reviews-v2"
RATINGS = "workload:default/ratings-v1"
REVIEWS_TEST_V2 = (BOOKINFO / "routing" / "jason-v2" / "virtual-service-reviews-test-v2.yaml").read_text()
BROKEN_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-broken}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v9}
"""


def productpage(mesh: MeshProcess, user: str | None = None, headers: list | None = None) -> dict[str, Any]:
    hdrs = list(headers or [])
    if user:
        hdrs.append(("end-user", user))
    resp = sync.request(f"http://{mesh.gateway_address(80)}/productpage", headers=hdrs)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def traffic(mesh: MeshProcess, n: int) -> None:
    """n requests as anonymous (reviews v1) and n as jason (reviews v2, which calls ratings)."""
    for _ in range(n):
        productpage(mesh)
        productpage(mesh, "jason")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("dashboard")
    shutil.copytree(BOOKINFO, work / "config", ignore=shutil.ignore_patterns("routing"))
    with MeshProcess(work / "config", work) as m:
        m.apply(REVIEWS_TEST_V2)
        traffic(m, 12)
        yield m


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, mesh: MeshProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # A 404 (a trace not collected yet, a workload without logs) is an answer the page shows, not a bug.
    pg.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None
        ),
    )
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors


def open_view(page: Any, mesh: MeshProcess, route: str) -> None:
    page.goto(f"{mesh.api}/ui/#{route}")
    refreshes = page.evaluate("Number(document.body.dataset.refreshes || 0)")
    page.wait_for_function(f"Number(document.body.dataset.refreshes || 0) > {refreshes}")


def edge_row(source: str, destination: str) -> str:
    return f'#edges tr.edge-row[data-source="{source}"][data-destination="{destination}"]'


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_dashboard_is_served(mesh: MeshProcess) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{mesh.api}/ui", timeout=5) as resp:  # redirected to /ui/
        assert resp.url.endswith("/ui/")
        assert "text/html" in resp.headers["Content-Type"]
        assert b'src="static/js/app.js"' in resp.read()
    for path, ctype in (("js/app.js", "text/javascript"), ("css/app.css", "text/css")):
        with opener.open(f"{mesh.api}/ui/static/{path}", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith(ctype)
    for bad in ("../__init__.py", "%2e%2e/__init__.py", "nothing.js"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            opener.open(f"{mesh.api}/ui/static/{bad}", timeout=5)
        assert exc.value.code == 404


def test_graph_shows_bookinfo_edges_with_live_numbers(page: Any, mesh: MeshProcess, tmp_path: Path) -> None:
    open_view(page, mesh, "/graph")
    # The SVG: a node per bookinfo workload, service nodes between them (Kiali's default).
    for wl in (GATEWAY, PRODUCTPAGE, DETAILS, REVIEWS_V1, REVIEWS_V2, RATINGS):
        page.wait_for_selector(f'#graph-svg g.node[data-id="{wl}"]', state="attached")
    page.wait_for_selector(
        '#graph-svg g.node[data-id="service:reviews.default.svc.cluster.local"]', state="attached"
    )
    # The edges as reported, with their figures.
    for src, dst in (
        (GATEWAY, PRODUCTPAGE),
        (PRODUCTPAGE, DETAILS),
        (PRODUCTPAGE, REVIEWS_V2),
        (REVIEWS_V2, RATINGS),
    ):
        row = page.locator(edge_row(src, dst))
        row.wait_for()
        # The proxies report every second and the page refreshes on its own: the last requests may
        # arrive after the row first shows.
        page.wait_for_function(
            "sel => Number(document.querySelector(sel)?.dataset.requests || 0) >= 12", arg=edge_row(src, dst)
        )
        assert float(row.get_attribute("data-rps")) > 0, (src, dst)
        p50, p99 = float(row.get_attribute("data-p50")), float(row.get_attribute("data-p99"))
        assert 0 < p50 <= p99, (src, dst, p50, p99)
    # Every request through the gateway was answered 200 (productpage() checks it).
    assert float(page.locator(edge_row(GATEWAY, PRODUCTPAGE)).get_attribute("data-error-rate")) == 0
    # Sidecar to sidecar is mutual TLS, and the edge label says so with its lock.
    assert page.locator(edge_row(PRODUCTPAGE, REVIEWS_V2)).get_attribute("data-mtls") == "true"
    # Workload-to-workload edges in the SVG once service nodes are off.
    page.uncheck("#opt-services")
    for src, dst in (
        (GATEWAY, PRODUCTPAGE),
        (PRODUCTPAGE, DETAILS),
        (PRODUCTPAGE, REVIEWS_V2),
        (REVIEWS_V2, RATINGS),
    ):
        edge = page.locator(f'#graph-svg g.edge[data-source="{src}"][data-destination="{dst}"]')
        edge.wait_for(state="attached")
        assert float(edge.get_attribute("data-rps")) > 0
        label = page.locator(f'#graph-svg g.elabel[data-source="{src}"][data-destination="{dst}"]')
        text = label.text_content()
        assert "rps" in text and "p50" in text and "p99" in text, text
    lock = page.locator(
        f'#graph-svg g.elabel[data-source="{PRODUCTPAGE}"][data-destination="{REVIEWS_V2}"] use.elock'
    )
    assert lock.count() == 1 and lock.get_attribute("href") == "#i-lock"
    path = shot(page, tmp_path, "graph")
    print(f"graph screenshot: {path}")

    # More traffic: the page refreshes by itself and the numbers go up, without a reload.
    before = int(page.locator(edge_row(REVIEWS_V2, RATINGS)).get_attribute("data-requests"))
    traffic(mesh, 6)
    page.wait_for_function(
        """([sel, before]) => {
            const row = document.querySelector(sel);
            return row && Number(row.dataset.requests) >= before + 6;
        }""",
        arg=[edge_row(REVIEWS_V2, RATINGS), before],
    )
    shot(page, tmp_path, "graph-refreshed")


def test_service_page_lists_routing_and_proxy_sync(page: Any, mesh: MeshProcess, tmp_path: Path) -> None:
    open_view(page, mesh, "/service/default/reviews")
    page.wait_for_selector('[data-part="config"] .vs[data-name="reviews"]')
    vs = page.locator('[data-part="config"] .vs[data-name="reviews"]').text_content()
    assert "header end-user exact jason" in vs and "reviews/v2" in vs and "reviews/v1" in vs, vs
    dr = page.locator('#svc-dr .dr[data-name="reviews"]')
    assert {s.get_attribute("data-subset") for s in dr.locator("tr.subset-row").all()} == {"v1", "v2", "v3"}
    rows = page.locator("#svc-proxies tr.proxy-row")
    assert {r.get_attribute("data-instance") for r in rows.all()} == {
        "reviews-v1-0",
        "reviews-v2-0",
        "reviews-v3-0",
    }
    assert all(r.get_attribute("data-synced") == "true" for r in rows.all())
    assert "SYNCED" in page.locator("#svc-proxies").text_content()
    page.wait_for_selector(f'#svc-traffic tr.traffic-row[data-destination="{REVIEWS_V2}"]')
    page.wait_for_selector("#svc-traces tr.trace-row")
    shot(page, tmp_path, "service-reviews")

    open_view(page, mesh, "/workload/default/reviews-v2")
    page.wait_for_selector('#wl-proxies tr.proxy-row[data-instance="reviews-v2-0"][data-synced="true"]')
    page.wait_for_selector(f'#wl-out tr.traffic-row[data-destination="{RATINGS}"]')
    assert "subset v2" in page.locator("#wl-services").text_content()
    # Its proxy keeps its metrics in the proxy (the default) and logs only failed requests: the log
    # panel says so rather than reading as no traffic.
    note = page.wait_for_selector("#wl-log-in-proxy")
    assert "reviews-v2-0 keep their metrics in the proxy" in note.text_content(), note.text_content()


def test_trace_of_one_request_through_the_chain(page: Any, mesh: MeshProcess, tmp_path: Path) -> None:
    trace_id = secrets.token_hex(16)
    b3 = [("x-b3-traceid", trace_id), ("x-b3-spanid", secrets.token_hex(8)), ("x-b3-sampled", "1")]
    body = productpage(mesh, "jason", headers=b3)
    assert body["calls"][1]["body"]["version"] == "v2"  # reviews v2 calls ratings
    # (service, proxy, span kind) of every hop: the gateway's client span, then server and client spans of
    # each sidecar along the chain. Spans carry Istio's tracing service name (app label.namespace); the
    # proxy's node id says which instance (reviews v2 here) reported them.
    want = [
        ("istio-ingressgateway.istio-system", "istio-ingressgateway-0.istio-system", "CLIENT"),
        ("productpage.default", "productpage-v1-0.default", "SERVER"),
        ("productpage.default", "productpage-v1-0.default", "CLIENT"),
        ("details.default", "details-v1-0.default", "SERVER"),
        ("reviews.default", "reviews-v2-0.default", "SERVER"),
        ("reviews.default", "reviews-v2-0.default", "CLIENT"),
        ("ratings.default", "ratings-v1-0.default", "SERVER"),
    ]
    open_view(page, mesh, f"/trace/{trace_id}")
    # Spans reach the collector when each Envoy flushes: the page picks them up as it refreshes.
    page.wait_for_function(
        """(want) => {
            const seen = new Set([...document.querySelectorAll('#waterfall .span-row')].map(
                (r) => `${r.dataset.service}/${r.dataset.instance}/${r.dataset.kind}`));
            return want.every(([s, i, k]) => seen.has(`${s}/${i}/${k}`));
        }""",
        arg=[list(w) for w in want],
    )
    rows = page.locator("#waterfall .span-row").all()
    spans = [
        (r.get_attribute("data-service"), r.get_attribute("data-instance"), r.get_attribute("data-kind"))
        for r in rows
    ]
    assert spans[0] == want[0], spans
    assert len(spans) == 8, spans  # productpage's second client span: to details
    assert page.locator("#span-count").text_content() == "8"
    # Children come after their parents: the waterfall follows the call chain.
    order = [s for s, _, _ in spans]
    assert (
        order.index("productpage.default") < order.index("reviews.default") < order.index("ratings.default")
    )
    assert "reviews-v2-0" in page.locator("#waterfall").text_content()
    rows[0].click()
    page.wait_for_selector("#waterfall .span-row.open .tags")
    assert "http.status_code" in page.locator("#waterfall .span-row.open .tags").text_content()
    shot(page, tmp_path, "trace")
    # The trace list links to it.
    open_view(page, mesh, "/traces")
    page.wait_for_selector(f'#trace-list tr.trace-row[data-trace-id="{trace_id}"]')


def test_validation_page_shows_analyzer_message(page: Any, mesh: MeshProcess, tmp_path: Path) -> None:
    open_view(page, mesh, "/validation")
    assert page.locator("tr.msg").count() == 0
    result = mesh.apply(BROKEN_VS)
    assert any("IST0101" in w for w in result["warnings"]), result
    try:
        sel = 'tr.msg[data-code="IST0101"][data-resource="VirtualService default/ratings-broken"]'
        row = page.locator(sel)
        row.wait_for()  # the page refreshes by itself
        assert "ratings+v9" in row.text_content()
        assert int(page.locator("#nav-issues").text_content()) >= 1
        shot(page, tmp_path, "validation")
    finally:
        mesh.delete(BROKEN_VS)
    page.wait_for_selector(sel, state="detached")
    page.wait_for_function("document.querySelector('#nav-issues').textContent === ''")


def test_clicking_an_edge_selects_the_rows_it_stands_for(page: Any, mesh: MeshProcess) -> None:
    open_view(page, mesh, "/graph")
    page.check("#opt-services")  # productpage -> reviews service: the reported edges to every version
    reviews = "service:reviews.default.svc.cluster.local"
    label = page.locator(f'#graph-svg g.elabel[data-source="{PRODUCTPAGE}"][data-destination="{reviews}"]')
    label.wait_for(state="attached")
    label.click()
    page.wait_for_selector(f"{edge_row(PRODUCTPAGE, REVIEWS_V2)}.selected")
    selected = page.locator("#edges tr.edge-row.selected")
    pairs = {(r.get_attribute("data-source"), r.get_attribute("data-destination")) for r in selected.all()}
    assert (PRODUCTPAGE, REVIEWS_V2) in pairs and all(
        s == PRODUCTPAGE and "reviews" in d for s, d in pairs
    ), pairs
    edge = page.locator(f'#graph-svg g.edge[data-source="{PRODUCTPAGE}"][data-destination="{reviews}"]')
    assert "selected" in (edge.get_attribute("class") or "")
    assert page.locator("#graph-svg g.edge.selected").count() == 1
    # The selection survives the page's own refresh, and a second click clears it.
    refreshes = page.evaluate("Number(document.body.dataset.refreshes || 0)")
    page.wait_for_function(f"Number(document.body.dataset.refreshes || 0) > {refreshes}")
    assert page.locator(f"{edge_row(PRODUCTPAGE, REVIEWS_V2)}.selected").count() == 1
    label.click()
    page.wait_for_function("document.querySelectorAll('#edges tr.edge-row.selected').length === 0")
    assert page.locator("#graph-svg g.edge.selected").count() == 0
