"""The dashboard at ``/ui/`` on the control plane's HTTP API (port 15014).

Plain HTML, CSS and ES modules under ``static/`` (no build step, no third-party code). The browser reads
only the control plane's public JSON API and polls it, so the dashboard shows nothing the CLI cannot:

| page | data |
|---|---|
| graph (``#/graph``) | ``GET /api/graph`` (every 3 s), ``GET /api/status`` (sync badges, idle workloads); options (window, service nodes, idle workloads, animation) kept in localStorage; the table under it lists the edges exactly as reported |
| lists (``#/services``, ``#/workloads``) | ``/api/resources`` (Services, VirtualServices, DestinationRules), ``/api/status``, ``/api/graph`` |
| service / workload (``#/service/NS/NAME``, ``#/workload/NS/NAME``) | ``GET /api/describe`` (VirtualServices, DestinationRule and subsets, PeerAuthentication, AuthorizationPolicies), ``/api/status`` (proxies' sync state, NACKs), ``/api/graph`` (traffic in/out), ``/api/analysis`` (messages on the related resources), ``/api/traces`` (recent traces), ``/api/logs`` (access-log lines, workload page) |
| traces (``#/traces``, ``#/trace/ID``) | ``/api/traces`` (newest first, by service), ``/api/traces/{id}`` (waterfall; late spans show up as it refreshes) |
| validation (``#/validation``) | ``/api/analysis``, ``configErrors`` and ``generationErrors`` of ``/api/status`` |

Every page refreshes itself every 3 s (the next refresh is scheduled when the previous one ended; a hidden
tab stops polling; "pause" in the header stops it). ``body[data-refreshes]`` counts finished refreshes and
the data the tests assert on is in ``data-*`` attributes (``tr.edge-row``, ``g.edge``, ``.span-row``, ...).
Tested in headless Chromium by ``tests/e2e/test_dashboard.py``.

Wiring: ``isthmus.ui.add_routes(app)`` in ``mesh.http_api.make_app``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain",
}
# The files change with the package: let browsers revalidate (ETag / Last-Modified) instead of caching.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _file(path: Path) -> web.FileResponse:
    resp = web.FileResponse(path, headers=_HEADERS)
    ctype = _TYPES.get(path.suffix.lower())
    if ctype is not None:
        resp.content_type = ctype
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            resp.charset = "utf-8"
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "index.html")


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def static(request: web.Request) -> web.StreamResponse:
    rel = request.match_info["path"]
    root = STATIC.resolve()
    try:
        path = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:
        raise web.HTTPNotFound() from exc
    if root not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return _file(path)


def add_routes(app: web.Application) -> None:
    """Serve the dashboard: ``/ui/`` (the page), ``/ui/static/...`` (its files); ``/ui`` and ``/``
    redirect to it (``/`` only when nothing else serves it)."""
    r = app.router
    r.add_get("/ui", redirect)
    r.add_get("/ui/", index)
    r.add_get("/ui/static/{path:.+}", static)
    if not any(getattr(res, "canonical", None) == "/" for res in r.resources()):
        r.add_get("/", redirect)
