"""The control plane's HTTP API (port 15014): status, config changes, debug views and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from isthmus.analyze import analyze_snapshot
from isthmus.api.kinds import info_for_kind
from isthmus.api.loader import safe_load_all
from isthmus.config.ingest import ingest_text
from isthmus.debug.config_compare import merge_virtual_hosts
from isthmus.model import hosts as h
from isthmus.model.ingress import is_derived
from isthmus.xds.gen import naming
from isthmus.xds.server import Subscriptions

if TYPE_CHECKING:
    from isthmus.mesh.runner import Mesh

log = logging.getLogger(__name__)

API_SOURCE = "api"
MESH_KEY: web.AppKey[Mesh] = web.AppKey("mesh")


def _mesh(request: web.Request) -> Mesh:
    return request.app[MESH_KEY]


# After the ACKs, how long `--wait` also waits for listeners to leave warming (normally milliseconds: a
# certificate over SDS); longer means a certificate that is not coming, reported rather than waited for.
WARM_WAIT_S = 2.0


async def _wait_serving(mesh: Mesh, version: str, timeout: float) -> tuple[bool, list[str]]:
    """Whether every proxy ACKed `version` within `timeout` (the contract of `--wait`), after which it
    also waits, briefly, for listeners still warming; returns those proxies that still have one."""
    deadline = time.monotonic() + timeout
    if not await mesh.cp.wait_pushed(version, timeout=timeout):
        return False, []
    return True, await mesh.wait_warm(max(0.0, min(WARM_WAIT_S, deadline - time.monotonic())))


async def status(request: web.Request) -> web.Response:
    return web.json_response(_mesh(request).status())


def _pending(mesh: Mesh, version: str) -> list[dict[str, Any]]:
    """The proxies that have not ACKed `version`: which types lag, and the secrets they wait for (the
    usual reason a proxy never ACKs: a DestinationRule or Gateway naming a file or Secret that is not
    there keeps its cluster or listener warming)."""
    out = []
    for proxy in mesh.status()["proxies"]:
        acked = proxy.get("configVersion")
        if acked is not None and int(acked) >= int(version):
            continue
        out.append(
            {
                "proxy": f"{proxy['instance']}.{proxy['namespace']}",
                "sync": {t: v for t, v in proxy.get("sync", {}).items() if v != "SYNCED"},
                "secretsWaiting": proxy.get("secretsWaiting", {}),
            }
        )
    return out


def _reconciled(mesh: Mesh, version: str) -> dict[str, Any]:
    """Istio's `Reconciled` condition: has every connected proxy ACKed the config holding the change?"""
    proxies = mesh.cp.xds.status()
    done = sum(1 for p in proxies if p.config_version is not None and int(p.config_version) >= int(version))
    ok = done == len(proxies)
    return {
        "type": "Reconciled",
        "status": "True" if ok else "False",
        "reason": "Programmed" if ok else "Pending",
        "message": f"{done} of {len(proxies)} proxies have ACKed config version {version}",
    }


def _validation_message(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": {"code": msg.code, "name": msg.name},
        "level": msg.level.upper(),
        "message": msg.message,
    }
    if msg.code.startswith("IST"):
        out["documentationUrl"] = (
            f"https://istio.io/latest/docs/reference/config/analysis/{msg.code.lower()}/"
        )
    return out


def _describe(cfg: Any, analysis: dict[Any, list[Any]], reconciled: dict[str, Any]) -> dict[str, Any]:
    data = cfg.resource.to_dict()
    data.setdefault("metadata", {})
    if cfg.namespace:
        data["metadata"]["namespace"] = cfg.namespace
    data["metadata"]["creationTimestamp"] = cfg.creation_order[0].isoformat()
    data["metadata"]["generation"] = cfg.generation
    status: dict[str, Any] = {
        "source": cfg.source.removeprefix("file:"),
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Valid", "observedGeneration": cfg.generation},
            {**reconciled, "observedGeneration": cfg.generation},
        ],
    }
    messages = analysis.get(cfg.key) or []
    if messages:
        status["validationMessages"] = [_validation_message(m) for m in messages]
    data["status"] = status
    return data


async def apply(request: web.Request) -> web.Response:
    mesh = _mesh(request)
    text = await request.text()
    filename = request.query.get("filename") or "<stdin>"
    result = ingest_text(text, filename)
    if not result.ok:
        return web.json_response({"errors": [str(e) for e in result.errors]}, status=400)
    before = {r.key: mesh.store.get(r.key) for r in result.resources}
    change = mesh.store.apply(result.resources, API_SOURCE)
    snap = mesh.cp.rebuild()
    applied = []
    for r in result.resources:
        verb = "unchanged"
        if r.key in change.upserted:
            verb = "created" if before[r.key] is None else "configured"
        applied.append(f"{r.kind} {r.namespace}/{r.metadata.name} {verb}")
    synced, warming = None, []
    wait = float(request.query.get("wait", "0") or 0)
    if wait > 0 and change.upserted:
        synced, warming = await _wait_serving(mesh, snap.version, wait)
    # What the analyzers say about the applied resources, so mistakes show at apply time.
    analysis = analyze_snapshot(snap)
    findings = [
        str(m) for r in result.resources for m in analysis.get(r.key, ()) if m.level in ("Error", "Warning")
    ]
    return web.json_response(
        {
            "version": snap.version,
            "applied": applied,
            "synced": synced,
            "warming": warming,
            "pending": _pending(mesh, snap.version) if synced is False else [],
            "warnings": [str(w) for w in result.warnings] + findings,
        }
    )


async def delete(request: web.Request) -> web.Response:
    mesh = _mesh(request)
    text = await request.text()
    keys = []
    try:
        docs = [d for d in safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        return web.json_response({"errors": [f"invalid YAML: {exc}"]}, status=400)
    for doc in docs:
        if not isinstance(doc, dict):
            return web.json_response({"errors": [f"not a resource: {doc!r}"]}, status=400)
        items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
        for item in items:
            md = item.get("metadata") if isinstance(item, dict) else None
            md = md if isinstance(md, dict) else {}
            if not isinstance(item, dict) or not item.get("kind") or not md.get("name"):
                return web.json_response(
                    {"errors": ["every document needs kind and metadata.name"]}, status=400
                )
            info = info_for_kind(item["kind"])
            # Cluster-scoped kinds (Namespace, MeshConfig, IngressClass) are keyed without a namespace.
            cluster_scoped = info is not None and not info.namespaced
            ns = "" if cluster_scoped else (md.get("namespace") or "default")
            keys.append((item["kind"], ns, md["name"]))
    existing = [k for k in keys if mesh.store.get(k) is not None]
    change = mesh.store.delete(existing)
    snap = mesh.cp.rebuild()
    wait = float(request.query.get("wait", "0") or 0)
    synced, warming = None, []
    if wait > 0 and change.deleted:
        synced, warming = await _wait_serving(mesh, snap.version, wait)
    return web.json_response(
        {
            "version": snap.version,
            "deleted": [f"{k[0]} {k[1]}/{k[2]} deleted" for k in existing],
            "notFound": [f"{k[0]} {k[1]}/{k[2]}" for k in keys if k not in existing],
            "synced": synced,
            "warming": warming,
            "pending": _pending(mesh, snap.version) if synced is False else [],
        }
    )


async def resources(request: web.Request) -> web.Response:
    mesh = _mesh(request)
    kind = request.query.get("kind") or None
    namespace = request.query.get("namespace") or None
    name = request.query.get("name") or None
    snapshot = mesh.cp.current()
    analysis = analyze_snapshot(snapshot)
    reconciled = _reconciled(mesh, snapshot.version)
    # With the Gateways and VirtualServices derived from Kubernetes Ingresses (source `derived:Ingress
    # ns/name`), which the generators use as they use the user's own.
    derived = [
        c
        for k, cfgs in snapshot.configs.items()
        if kind is None or k == kind
        for c in cfgs
        if is_derived(c) and (namespace is None or c.namespace == namespace)
    ]
    out = [
        _describe(c, analysis, reconciled)
        for c in [*mesh.store.list(kind, namespace), *derived]
        if name is None or c.name == name
    ]
    return web.json_response(out)


async def resolve(request: web.Request) -> web.Response:
    """Emulates cluster DNS + kube-proxy for workloads without a sidecar: host[:port] -> pod addresses."""
    mesh = _mesh(request)
    snapshot = mesh.cp.snapshot
    namespace = request.query.get("namespace") or "default"
    host = h.resolve_short_name(request.query.get("host", ""), namespace, snapshot.mesh.domain_suffix)
    port = int(request.query.get("port") or 80)
    for candidate in (host, host.rstrip(".")):
        for svc in snapshot.registry.by_host.get(candidate, []):
            if svc.port(port) is None:
                continue
            eps = [e for e in snapshot.registry.endpoints(svc, port) if e.ready]
            return web.json_response(
                {"host": svc.hostname, "addresses": [f"{e.address}:{e.port}" for e in eps]}
            )
    return web.json_response(
        {"host": host, "addresses": [], "error": f"no service {host} with port {port}"}, status=404
    )


def _find_proxy(mesh: Mesh, name: str) -> Any:
    for pod in mesh.all_pods():
        if pod.proxy is None:
            continue
        if name in (pod.proxy.id, pod.spec.name, f"{pod.spec.name}.{pod.spec.namespace}", pod.spec.workload):
            return pod.proxy
    return None


_ADMIN = "type.googleapis.com/envoy.admin.v3."


def _as_dict(message: Any) -> dict[str, Any]:
    # Envoy's admin JSON form (proto field names), as the proxy's own /config_dump.
    return MessageToDict(message, preserving_proto_field_name=True)


def proxy_resources(
    subs: Subscriptions, generator: Any, *, include_eds: bool = False
) -> dict[str, list[Any]]:
    """The packed resources of a connected proxy's last push, by type URL: each subscribed type built
    from that push's snapshot, whole for a wildcard subscription, else for the names watched (as the
    server sends them; istiod's debug config dump builds from the proxy's last push context and its
    watched routes alike). On the event loop, as the generator wants."""
    snapshot, proxy = subs.snapshot, subs.proxy
    types = [naming.CLUSTER_TYPE, naming.LISTENER_TYPE, naming.ROUTE_TYPE, naming.VIRTUAL_HOST_TYPE]
    if include_eds:
        types.append(naming.ENDPOINT_TYPE)
    out: dict[str, list[Any]] = {}
    for type_url in types:
        if snapshot is None or type_url not in subs.types:
            out[type_url] = []
            continue
        wildcard, watched = subs.types[type_url]
        resources = generator.generate(snapshot, proxy, type_url, None if wildcard else watched)
        out[type_url] = [a for _, a in sorted(resources.items())]
    return out


def render_config_dump(
    subs: Subscriptions, resources: dict[str, list[Any]], *, include_eds: bool = False
) -> dict[str, Any]:
    """`proxy_resources` in the shape of Envoy's admin `/config_dump`, Envoy's JSON field names. A
    delta sidecar's virtual hosts sent over VHDS are merged into their route config, as Envoy shows
    them. Reads the (immutable) resources only: may run off the event loop."""
    if subs.snapshot is None:
        return {"configs": []}

    def dicts(type_url: str) -> list[dict[str, Any]]:
        return [_as_dict(a) for a in resources.get(type_url, ())]

    def version(type_url: str) -> dict[str, str]:
        v = subs.sent_versions.get(type_url)
        return {"version_info": v} if v else {}

    routes = merge_virtual_hosts(dicts(naming.ROUTE_TYPE), dicts(naming.VIRTUAL_HOST_TYPE))
    configs: list[dict[str, Any]] = [
        {
            "@type": _ADMIN + "ClustersConfigDump",
            **version(naming.CLUSTER_TYPE),
            "dynamic_active_clusters": [
                {**version(naming.CLUSTER_TYPE), "cluster": c} for c in dicts(naming.CLUSTER_TYPE)
            ],
        },
        {
            "@type": _ADMIN + "ListenersConfigDump",
            **version(naming.LISTENER_TYPE),
            "dynamic_listeners": [
                {
                    "name": lst.get("name", ""),
                    "active_state": {**version(naming.LISTENER_TYPE), "listener": lst},
                }
                for lst in dicts(naming.LISTENER_TYPE)
            ],
        },
        {
            "@type": _ADMIN + "RoutesConfigDump",
            "dynamic_route_configs": [{**version(naming.ROUTE_TYPE), "route_config": rc} for rc in routes],
        },
    ]
    if include_eds:
        configs.append(
            {
                "@type": _ADMIN + "EndpointsConfigDump",
                "dynamic_endpoint_configs": [
                    {**version(naming.ENDPOINT_TYPE), "endpoint_config": e}
                    for e in dicts(naming.ENDPOINT_TYPE)
                ],
            }
        )
    return {"configs": configs}


def proxy_config_dump(subs: Subscriptions, generator: Any, *, include_eds: bool = False) -> dict[str, Any]:
    """The control plane's config dump of one connected proxy (istiod's `/debug/config_dump?proxyID=`):
    what its last push was, in Envoy's admin `/config_dump` shape, so that `proxy-status PROXY`
    compares what was sent with what Envoy holds."""
    resources = proxy_resources(subs, generator, include_eds=include_eds)
    return render_config_dump(subs, resources, include_eds=include_eds)


async def config_dump(request: web.Request) -> web.Response:
    """A connected proxy's config as the control plane last pushed it, in Envoy's config dump shape
    (`include_eds` adds its endpoints). Not what Envoy holds: see proxy-config."""
    mesh = _mesh(request)
    name = request.query.get("proxy", "")
    found = _find_proxy(mesh, name)
    proxy_id = found.id if found is not None else name
    subs = mesh.cp.xds.subscriptions(proxy_id)
    if subs is None:
        error = "unknown proxy" if found is None else f"proxy {proxy_id} is not connected"
        return web.json_response({"error": error}, status=404)
    include_eds = "include_eds" in request.query
    resources = proxy_resources(subs, mesh.cp.generator, include_eds=include_eds)

    def render() -> bytes:
        return json.dumps(render_config_dump(subs, resources, include_eds=include_eds)).encode()

    # A large mesh's clusters are megabytes of JSON: rendered off the event loop, which serves xDS.
    body = await asyncio.to_thread(render)
    return web.Response(body=body, content_type="application/json")


async def analysis(request: web.Request) -> web.Response:
    """`isthmus analyze` on the running mesh's current snapshot (optionally one kind/namespace/name)."""
    snapshot = _mesh(request).cp.current()
    want = [request.query.get(k) or None for k in ("kind", "namespace", "name")]
    out = [
        msg.to_dict()
        for key, msgs in analyze_snapshot(snapshot).items()
        if all(w is None or w == k for w, k in zip(want, key, strict=True))
        for msg in msgs
    ]
    return web.json_response({"version": snapshot.version, "messages": out})


async def syncz(request: web.Request) -> web.Response:
    return web.json_response([s.to_dict() for s in _mesh(request).cp.xds.status()])


async def metrics(request: web.Request) -> web.Response:
    proxy = request.query.get("proxy")
    if proxy:
        # One proxy's own istio_* series, as istio-proxy serves them on its Prometheus port.
        text = _mesh(request).cp.telemetry.metrics_for_proxy(proxy)
        if text is None:
            return web.json_response({"error": f"no proxy {proxy}"}, status=404)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    body = generate_latest(_mesh(request).cp.metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def restart(request: web.Request) -> web.Response:
    mesh = _mesh(request)
    namespace = request.query.get("namespace") or "default"
    workload = request.query.get("workload", "")
    try:
        instances = await mesh.restart(namespace, workload)
    except KeyError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    return web.json_response({"restarted": f"{namespace}/{workload}", "instances": instances})


# --- debugging commands (`isthmus route test -f`, `isthmus describe`): logic in isthmus.debug ----------


def _debug_proxy(mesh: Mesh, name: str) -> Any:
    for pod in mesh.all_pods():
        if pod.proxy is not None and name in (pod.proxy.id, f"{pod.spec.name}.{pod.spec.namespace}"):
            return pod.proxy
    return _find_proxy(mesh, name)


async def route_preview(request: web.Request) -> web.Response:
    """POST candidate YAML (may be empty): the proxy's config as the generators would make it with the
    candidate resources added to the running config. Nothing is stored or pushed."""
    from isthmus.debug.preview import candidate_snapshot, generate_proxy_config

    mesh = _mesh(request)
    proxy = _debug_proxy(mesh, request.query.get("proxy", ""))
    if proxy is None:
        return web.json_response({"error": f"unknown proxy {request.query.get('proxy', '')!r}"}, status=404)
    text = await request.text()
    resources: list[Any] = []
    if text.strip():
        result = ingest_text(text, request.query.get("filename") or "<candidate>")
        if not result.ok:
            return web.json_response({"errors": [str(e) for e in result.errors]}, status=400)
        resources = result.resources
    current = mesh.cp.current()
    # The key sets the JWKS resolver holds now (a candidate's new http(s) jwksUri shows as not fetched
    # yet; its new file:// one is read, as the resolver would).
    snap = candidate_snapshot(
        current.version, mesh.store.list(), mesh.store.pods(), resources, jwks=current.jwks
    )
    out = generate_proxy_config(snap, proxy, mesh.cp.generator)
    out["candidate"] = [f"{r.kind} {r.namespace}/{r.metadata.name}" for r in resources]
    return web.json_response(out)


async def describe_target(request: web.Request) -> web.Response:
    """istioctl x describe's data for a pod, workload or service, from the control plane's model."""
    from isthmus.debug.describe import DescribeError, describe

    q = request.query
    try:
        data = describe(
            _mesh(request).cp.current(), q.get("kind", "pod"), q.get("name", ""), q.get("namespace") or None
        )
    except DescribeError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    return web.json_response(data)


def add_debug_routes(app: web.Application) -> None:
    app.router.add_post("/api/route-preview", route_preview)
    app.router.add_get("/api/describe", describe_target)


# --- end of the debugging commands' block ------------------------------------------------------------


def make_app(mesh: Mesh) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MESH_KEY] = mesh
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/apply", apply)
    app.router.add_post("/api/delete", delete)
    app.router.add_get("/api/resources", resources)
    app.router.add_get("/api/resolve", resolve)
    app.router.add_get("/api/analysis", analysis)
    app.router.add_post("/api/restart", restart)
    app.router.add_get("/debug/config_dump", config_dump)
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/metrics", metrics)
    mesh.cp.telemetry.add_routes(app)
    add_debug_routes(app)
    from isthmus.ui import add_routes as add_ui_routes

    add_ui_routes(app)
    return app


async def start_http_api(mesh: Mesh, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(mesh), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
