"""HTTP routes of the telemetry backend, mounted on the control plane's API (:15014) by `add_routes`.

| route | answer |
|---|---|
| `GET /api/logs?workload=W[&namespace=NS][&instance=I][&tail=N][&follow=1][&format=text\\|json][&prefix=1]` | access-log lines (text/plain), streamed with follow |
| `GET /api/traces?[service=S][&limit=N][&lookback=SECONDS][&minDuration=MS]` | trace summaries, newest first |
| `GET /api/traces/{traceId}` | `{"traceId", "spans": [Zipkin v2 spans]}` |
| `GET /api/graph?[window=SECONDS]` | `{"nodes", "edges": [{source, destination, rps, errorRate, p50, p99, mtls, ...}]}` |
| `GET /api/telemetry/metrics[?proxy=ID]` | istio_* metrics, merged or one proxy's (Prometheus text) |
| `GET /api/telemetry/status` | ingestion counters |
| `POST /api/v2/spans` | Zipkin v2 JSON spans in (what Envoy's Zipkin tracer sends); 202 |
| `GET /api/v2/services`, `/api/v2/spans?serviceName=`, `/api/v2/traces`, `/api/v2/trace/{id}` | Zipkin's read API |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from isthmus.telemetry.spans import SpanError

if TYPE_CHECKING:
    from isthmus.telemetry.core import LogLine, Telemetry

TELEMETRY_KEY: web.AppKey[Any] = web.AppKey("isthmus.telemetry")
MAX_SPAN_BODY = 16 * 1024 * 1024


def _t(request: web.Request) -> Telemetry:
    return request.app[TELEMETRY_KEY]


def _int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(float(raw))
    except ValueError as e:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be a number"}), content_type="application/json"
        ) from e


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _line(line: LogLine, prefix: bool) -> str:
    text = line.text if line.text.endswith("\n") else line.text + "\n"
    return f"[{line.instance}] {text}" if prefix else text


def _workload_problem(t: Telemetry, workload: str, namespace: str, instance: str | None) -> str | None:
    """Why no access logs can exist for this workload (None when it may have some)."""
    if t.workload_proxies(workload, namespace, instance):
        return None
    snap = t.snapshot()
    pods = getattr(getattr(snap, "registry", None), "pods", None)
    if pods is None:
        return None
    matching = [
        p
        for (ns, name), p in pods.items()
        if ns == namespace and (workload in (p.workload, name)) and (instance is None or name == instance)
    ]
    if not matching:
        return f"no workload {namespace}/{workload}" + (f" instance {instance}" if instance else "")
    if not any(p.sidecar or p.gateway for p in matching):
        return (
            f"workload {namespace}/{workload} has no sidecar, so no proxy logs its traffic (see its app log)"
        )
    return None


async def logs(request: web.Request) -> web.StreamResponse:
    t = _t(request)
    q = request.query
    workload = q.get("workload", "")
    if not workload:
        return web.json_response({"error": "workload is required"}, status=400)
    namespace = q.get("namespace") or "default"
    instance = q.get("instance") or None
    fmt = q.get("format") or None
    if fmt is not None and fmt.lower() not in ("text", "json"):
        return web.json_response({"error": "format must be text or json"}, status=400)
    tail = _int(request, "tail", None)
    prefix = _truthy(q.get("prefix"))
    problem = _workload_problem(t, workload, namespace, instance)
    if problem is not None:
        return web.json_response({"error": problem}, status=404)
    if not _truthy(q.get("follow")):
        lines = t.log_lines(t.workload_proxies(workload, namespace, instance), tail=tail, encoding=fmt)
        return web.Response(text="".join(_line(x, prefix) for x in lines), content_type="text/plain")
    resp = web.StreamResponse(
        headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"}
    )
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    gen = t.follow_logs(
        workload, namespace, instance=instance, tail=tail if tail is not None else 100, encoding=fmt
    )
    try:
        async for line in gen:
            await resp.write(_line(line, prefix).encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await gen.aclose()
    return resp


async def traces(request: web.Request) -> web.Response:
    t = _t(request)
    lookback = _int(request, "lookback", None)
    min_ms = _int(request, "minDuration", None)
    out = t.traces(
        request.query.get("service") or None,
        _int(request, "limit", 20) or 20,
        lookback_s=lookback,
        min_duration_us=min_ms * 1000 if min_ms is not None else None,
    )
    return web.json_response(out)


async def trace(request: web.Request) -> web.Response:
    spans = _t(request).trace(request.match_info["trace_id"])
    if spans is None:
        return web.json_response({"error": "no such trace"}, status=404)
    return web.json_response({"traceId": spans[0]["traceId"] if spans else "", "spans": spans})


async def graph(request: web.Request) -> web.Response:
    window = _int(request, "window", 60) or 60
    return web.json_response(_t(request).graph(window))


async def metrics(request: web.Request) -> web.Response:
    t = _t(request)
    proxy = request.query.get("proxy")
    if proxy:
        body = t.metrics_for_proxy(proxy)
        if body is None:
            return web.json_response({"error": f"no proxy {proxy} has reported telemetry"}, status=404)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return web.Response(body=t.metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    return web.json_response(_t(request).status())


async def post_spans(request: web.Request) -> web.Response:
    t = _t(request)
    if request.content_type not in ("application/json", "text/plain", ""):
        return web.json_response({"error": "only Zipkin v2 JSON spans are accepted"}, status=415)
    raw = await request.read()
    if len(raw) > MAX_SPAN_BODY:
        return web.json_response({"error": "body too large"}, status=413)
    try:
        data = json.loads(raw or b"[]")
    except ValueError:
        return web.json_response({"error": "the body is not JSON"}, status=400)
    if not isinstance(data, list):
        return web.json_response({"error": "the body must be a JSON array of spans"}, status=400)
    try:
        t.spans.add(data)
    except SpanError as e:
        return web.json_response({"error": str(e)}, status=400)
    return web.Response(status=202)


async def zipkin_services(request: web.Request) -> web.Response:
    return web.json_response(_t(request).spans.services())


async def zipkin_span_names(request: web.Request) -> web.Response:
    service = request.query.get("serviceName", "")
    return web.json_response(_t(request).spans.span_names(service) if service else [])


async def zipkin_traces(request: web.Request) -> web.Response:
    t = _t(request)
    lookback_ms = _int(request, "lookback", None)
    min_us = _int(request, "minDuration", None)
    out = t.spans.raw_traces(
        request.query.get("serviceName") or None,
        _int(request, "limit", 10) or 10,
        lookback_s=lookback_ms / 1000.0 if lookback_ms else None,
        min_duration_us=min_us,
        span_name=request.query.get("spanName") or None,
    )
    return web.json_response(out)


async def zipkin_trace(request: web.Request) -> web.Response:
    spans = _t(request).trace(request.match_info["trace_id"])
    if spans is None:
        return web.json_response({"error": "no such trace"}, status=404)
    return web.json_response(spans)


def add_routes(app: web.Application, telemetry: Telemetry) -> None:
    """Mount the telemetry routes on `app` (call before the app starts)."""
    app[TELEMETRY_KEY] = telemetry
    r = app.router
    r.add_get("/api/logs", logs)
    r.add_get("/api/traces", traces)
    r.add_get("/api/traces/{trace_id}", trace)
    r.add_get("/api/graph", graph)
    r.add_get("/api/telemetry/metrics", metrics)
    r.add_get("/api/telemetry/status", status)
    r.add_post("/api/v2/spans", post_spans)
    r.add_get("/api/v2/services", zipkin_services)
    r.add_get("/api/v2/spans", zipkin_span_names)
    r.add_get("/api/v2/traces", zipkin_traces)
    r.add_get("/api/v2/trace/{trace_id}", zipkin_trace)


def proxy_metrics_app(
    telemetry: Telemetry, proxy_id: str, envoy_admin_url: str | None = None
) -> web.Application:
    """Istio's merged per-pod endpoint (istio-agent's :15020 ``/stats/prometheus``): the proxy's own
    istio_* series followed by Envoy's ``/stats/prometheus``. Bind it on ``<podIP>:15020``."""
    import aiohttp

    async def handler(request: web.Request) -> web.Response:
        parts = [telemetry.metrics_text(proxy_id) if proxy_id in telemetry.proxies else b""]
        if envoy_admin_url:
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                async with (
                    aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                    session.get(envoy_admin_url.rstrip("/") + "/stats/prometheus") as resp,
                ):
                    parts.append(await resp.read())
            except (aiohttp.ClientError, TimeoutError):
                pass
        return web.Response(body=b"".join(parts), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/stats/prometheus", handler)
    app.router.add_get("/metrics", handler)
    return app
