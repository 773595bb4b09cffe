"""Fetching what the debugging commands need from a running mesh: its HTTP API and Envoy admin.

The mesh is found through its state dir (`state.json` names the API address). Calls never go through
an HTTP_PROXY of the environment (apps in the mesh have one). Errors are `DebugError` with a message
fit for users; the CLI turns them into its own errors.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from isthmus.debug.envoy_config import ProxyConfig

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DebugError(Exception):
    pass


def _read(
    url: str, *, data: bytes | None = None, method: str = "GET", timeout: float = 15.0
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read() or b""
    except (urllib.error.URLError, OSError) as e:
        raise DebugError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from e


def _json(url: str, **kw: Any) -> tuple[int, Any]:
    code, body = _read(url, **kw)
    try:
        return code, json.loads(body or b"null")
    except ValueError:
        return code, {"error": body.decode("utf-8", "replace")[:500]}


def find_proxy_in(status: Mapping[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    """A proxy by id, instance, `instance.namespace`, `workload/instance` or workload (its first instance)."""
    proxies = list(status.get("proxies") or [])
    if "/" in name:
        workload, _, inst = name.partition("/")
        for p in proxies:
            if (
                (namespace is None or p["namespace"] == namespace)
                and p["workload"] == workload
                and (p["instance"] == inst or p["instance"] == f"{workload}-{inst}")
            ):
                return p
    if "." in name and namespace is None and "~" not in name:
        inst, _, ns = name.rpartition(".")
        for p in proxies:
            if p["instance"] == inst and p["namespace"] == ns:
                return p
    for p in proxies:
        if namespace and p["namespace"] != namespace:
            continue
        if name in (p["id"], p["instance"]):
            return p
    candidates = sorted(
        (p for p in proxies if (not namespace or p["namespace"] == namespace) and p["workload"] == name),
        key=lambda p: (p["namespace"] != "default", p["instance"]),
    )
    if candidates:
        return candidates[0]
    for inst in status.get("instances") or []:
        if (not namespace or inst["namespace"] == namespace) and name in (inst["workload"], inst["instance"]):
            raise DebugError(
                f"{inst['instance']}.{inst['namespace']} has no sidecar: its requests go straight to their "
                "destination, so no proxy routes them"
            )
    known = ", ".join(sorted(f"{p['instance']}.{p['namespace']}" for p in proxies))
    raise DebugError(
        f"no proxy {name!r}"
        + (f" in namespace {namespace}" if namespace else "")
        + f"; known proxies: {known}"
    )


class Mesh:
    """A running mesh, found through its state dir."""

    def __init__(self, state_dir: str | Path | None = None, *, api: str | None = None) -> None:
        self.state_dir = state_dir
        self._api = api

    @cached_property
    def api(self) -> str:
        if self._api:
            return self._api.rstrip("/")
        from isthmus.mesh.state import MeshNotRunning, read_state

        try:
            return str(read_state(self.state_dir)["api"]).rstrip("/")
        except MeshNotRunning as exc:
            raise DebugError(str(exc)) from exc

    @property
    def pods_dir(self) -> Path:
        from isthmus.mesh.state import resolve_state_dir

        return resolve_state_dir(self.state_dir) / "pods"

    # --- HTTP API ------------------------------------------------------------------------------
    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, timeout: float = 15.0
    ) -> tuple[int, Any]:
        url = self.api + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return _json(url, timeout=timeout)

    def get_text(
        self, path: str, params: Mapping[str, Any] | None = None, *, timeout: float = 15.0
    ) -> tuple[int, str]:
        url = self.api + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        code, body = _read(url, timeout=timeout)
        return code, body.decode("utf-8", "replace")

    @cached_property
    def status(self) -> dict[str, Any]:
        code, data = self.get("/api/status")
        if code != 200 or not isinstance(data, dict):
            raise DebugError(f"the mesh's status is not available: {data}")
        return data

    def find_proxy(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return find_proxy_in(self.status, name, namespace)

    def instances_by_ip(self) -> dict[str, str]:
        return {i["ip"]: i["instance"] for i in self.status.get("instances") or [] if i.get("ip")}

    def resources(
        self, kind: str, namespace: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        code, data = self.get("/api/resources", {"kind": kind, "namespace": namespace, "name": name})
        if code != 200 or not isinstance(data, list):
            raise DebugError(f"cannot list {kind}: {data}")
        return data

    # --- Envoy admin ---------------------------------------------------------------------------
    @staticmethod
    def admin_url(proxy: Mapping[str, Any]) -> str:
        return f"http://{proxy['ip']}:{proxy['adminPort']}"

    def admin_json(self, proxy: Mapping[str, Any], path: str) -> Any:
        code, data = _json(self.admin_url(proxy) + path, timeout=15.0)
        if code != 200:
            raise DebugError(
                f"Envoy admin {path} of {proxy['instance']}.{proxy['namespace']} answered {code}"
            )
        return data

    def admin_stats(self, proxy: Mapping[str, Any], pattern: str) -> dict[str, int]:
        code, body = _read(self.admin_url(proxy) + "/stats?filter=" + urllib.parse.quote(pattern), timeout=10)
        out: dict[str, int] = {}
        if code != 200:
            return out
        for line in body.decode("utf-8", "replace").splitlines():
            name, _, value = line.rpartition(": ")
            if value.strip().isdigit():
                out[name.strip()] = int(value)
        return out

    def held_config(self, proxy: Mapping[str, Any], *, health: bool = True) -> ProxyConfig:
        """What Envoy holds: its config dump with EDS, plus runtime host health from /clusters."""
        config = ProxyConfig.from_config_dump(self.admin_json(proxy, "/config_dump?include_eds"))
        if health:
            with contextlib.suppress(DebugError):
                config.add_cluster_status(self.admin_json(proxy, "/clusters?format=json"))
        return config

    def preview_config(
        self, proxy: Mapping[str, Any], candidate_text: str, filename: str = "candidate.yaml"
    ) -> ProxyConfig:
        """What the control plane would generate for the proxy with the candidate resources added."""
        url = (
            self.api
            + "/api/route-preview?"
            + urllib.parse.urlencode({"proxy": proxy["id"], "filename": filename})
        )
        code, data = _json(url, data=candidate_text.encode(), method="POST", timeout=60)
        if code == 404 and isinstance(data, dict) and "proxy" not in str(data.get("error", "")):
            raise DebugError(
                "this mesh's control plane has no /api/route-preview (started by an older isthmus?)"
            )
        if code != 200:
            errors = data.get("errors") if isinstance(data, dict) else None
            if errors:
                raise DebugError("the candidate config is refused:\n" + "\n".join(errors))
            raise DebugError(f"route preview failed: {data}")
        return ProxyConfig.from_generated(data, source="candidate")

    def describe(self, kind: str, name: str, namespace: str | None) -> dict[str, Any]:
        code, data = self.get("/api/describe", {"kind": kind, "name": name, "namespace": namespace})
        if code != 200:
            raise DebugError(str((data or {}).get("error") if isinstance(data, dict) else data))
        return data


def vs_lookup_from(mesh: Mesh | None, candidates: Sequence[Any] = ()) -> Any:
    """A VsLookup: candidate resources first, then the control plane's VirtualServices."""
    from isthmus.api import loader

    cache: dict[tuple[str, str], Any] = {}
    for res in candidates:
        if res.kind == "VirtualService":
            cache[(res.namespace, res.metadata.name)] = res.spec

    def lookup(namespace: str, name: str) -> Any:
        key = (namespace, name)
        if key in cache:
            return cache[key]
        spec = None
        if mesh is not None:
            try:
                found = mesh.resources("VirtualService", namespace, name)
                if found:
                    spec = loader.parse_resource(found[0]).spec
            except Exception:
                spec = None
        cache[key] = spec
        return spec

    return lookup
