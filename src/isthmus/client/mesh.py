"""Finding a running mesh and the pod a request is sent from.

The runner of ``isthmus up`` writes ``<state-dir>/state.json`` holding at least
``{"api": "http://127.1.0.1:15014"}``. This module reads it and asks the HTTP API:

* ``GET <api>/api/status``: the status JSON of DESIGN.md §4 (``proxies[]`` with ``workload``,
  ``instance``, ``namespace``, ``kind``, ``ip``, ``outboundPort``; ``instances[]`` with ``sidecar``).
* ``GET <api>/api/resolve?host=H&port=P&namespace=NS`` -> ``{"addresses": ["127.1.0.7:9080", ...]}``:
  the pod addresses a mesh host name (``reviews``, ``reviews.default.svc.cluster.local``) stands for,
  seen from namespace NS. Used for pods without a sidecar, which have no proxy to route by Host; the
  client then dials one of them at random and keeps the URL's host as the Host header.

These calls bypass any ``HTTP_PROXY`` of the caller's environment.
"""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


class MeshError(Exception):
    """The mesh cannot be found or does not know what was asked."""


@dataclass(frozen=True)
class Source:
    """Where requests ``--from`` a workload come from.

    ``proxy_url`` is the sidecar's outbound listener (``http://<podIP>:15001``), None for a pod without
    sidecar (requests then go straight to their destination, from ``ip``).
    """

    workload: str
    instance: str
    namespace: str
    ip: str
    proxy_url: str | None
    api: str


def default_state_dir() -> Path:
    env = os.environ.get("ISTHMUS_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "isthmus"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, timeout: float) -> Any:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise MeshError(f"GET {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MeshError(f"GET {url}: {reason} (is the mesh running? start it with 'isthmus up DIR')") from e
    except ValueError as e:
        raise MeshError(f"GET {url}: the answer is not JSON") from e


def read_state(state_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The runner's ``state.json`` (MeshError when missing or invalid)."""
    path = Path(state_dir) if state_dir else default_state_dir()
    f = path / STATE_FILE
    try:
        state = json.loads(f.read_text())
    except FileNotFoundError:
        raise MeshError(f"no running mesh: {f} does not exist (start one with 'isthmus up DIR')") from None
    except (OSError, ValueError) as e:
        raise MeshError(f"cannot read {f}: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("api"), str):
        raise MeshError(f'{f} has no "api" address')
    return state


def api_address(state_dir: str | os.PathLike[str] | None = None) -> str:
    return read_state(state_dir)["api"].rstrip("/")


def get_status(api: str, timeout: float = 5.0) -> dict[str, Any]:
    status = _get_json(f"{api.rstrip('/')}/api/status", timeout)
    if not isinstance(status, dict):
        raise MeshError(f"{api}/api/status: unexpected answer")
    return status


def find_source_in_status(
    status: dict[str, Any],
    api: str,
    workload: str,
    instance: str | None = None,
    namespace: str | None = None,
) -> Source:
    """Pick the pod: by workload (or by instance name when ``workload`` names an instance), in
    ``namespace`` if given (else in any namespace, preferring ``default`` when several match); with no
    instance given, the first one listed. Sidecars come from ``proxies[]`` (kind sidecar), pods without
    sidecar from ``instances[]``."""
    pods: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for p in status.get("proxies") or []:
        if p.get("kind", "sidecar") != "sidecar":
            continue
        pods.append({**p, "_proxy": True})
        seen.add((p.get("namespace", ""), p.get("instance", "")))
    for i in status.get("instances") or []:
        if (i.get("namespace", ""), i.get("instance", "")) in seen:
            continue
        if i.get("sidecar") is False:
            pods.append({**i, "_proxy": False})

    def in_ns(p: dict[str, Any]) -> bool:
        return namespace is None or p.get("namespace") == namespace

    matches = [p for p in pods if p.get("workload") == workload and in_ns(p)]
    if not matches and instance is None:  # --from reviews-v2-0: an instance name
        matches = [p for p in pods if p.get("instance") == workload and in_ns(p)]
    if instance is not None:
        # WORKLOAD/INSTANCE names the instance in full (reviews-v2/reviews-v2-1) or by its ordinal
        # (reviews-v2/1), as pod names end in it.
        wanted = {instance, f"{workload}-{instance}"} if instance.isdigit() else {instance}
        matches = [p for p in matches if p.get("instance") in wanted]
    if not matches:
        known = sorted({f"{p.get('namespace')}/{p.get('workload')}" for p in pods})
        what = f"{workload}/{instance}" if instance else workload
        where = f" in namespace {namespace}" if namespace else ""
        raise MeshError(
            f"no workload instance {what!r}{where} in the mesh; known workloads: {', '.join(known) or 'none'}"
        )
    namespaces = {p.get("namespace") for p in matches}
    if len(namespaces) > 1:
        if "default" in namespaces:
            matches = [p for p in matches if p.get("namespace") == "default"]
        else:
            raise MeshError(
                f"workload {workload!r} exists in namespaces {', '.join(sorted(map(str, namespaces)))}: use -n"
            )
    pod = matches[0]
    ip = pod.get("ip") or ""
    proxy_url = None
    if pod["_proxy"]:
        port = pod.get("outboundPort") or 15001
        proxy_url = f"http://{ip}:{port}"
    return Source(
        workload=pod.get("workload", workload),
        instance=pod.get("instance", ""),
        namespace=pod.get("namespace", "default"),
        ip=ip,
        proxy_url=proxy_url,
        api=api,
    )


def find_source(
    state_dir: str | os.PathLike[str] | None,
    workload: str,
    instance: str | None = None,
    namespace: str | None = None,
) -> Source:
    """Find the pod to send from in the running mesh of ``state_dir`` (default: ``$ISTHMUS_STATE_DIR``,
    else ``~/.local/state/isthmus``). Raises MeshError listing the known workloads when not found."""
    api = api_address(state_dir)
    return find_source_in_status(get_status(api), api, workload, instance, namespace)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(api: str, host: str, port: int, namespace: str, timeout: float = 5.0) -> list[str]:
    """Ask the control plane which ``ip:port`` addresses a mesh host name stands for (may be empty)."""
    qs = urllib.parse.urlencode({"host": host, "port": port, "namespace": namespace})
    doc = _get_json(f"{api.rstrip('/')}/api/resolve?{qs}", timeout)
    addresses = doc.get("addresses") if isinstance(doc, dict) else None
    if not isinstance(addresses, list):
        raise MeshError(f"{api}/api/resolve: unexpected answer {doc!r}")
    return [str(a) for a in addresses]
