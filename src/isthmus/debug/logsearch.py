"""Finding access-log lines by x-request-id across the mesh's proxies.

Envoy's admin API cannot search its access log, so the lines are read where they are written:
1. the control plane's `GET /api/logs?workload=...` (telemetry, when the mesh serves it), per workload;
2. else the files under `<state-dir>/pods/<ns>/<instance>/`: `envoy.log` (where `accessLogFile:
   /dev/stdout` lands, Envoy's stdout being its log file) and the MeshConfig `accessLogFile` (a relative
   path is relative to the pod's directory, Envoy's working directory; an absolute one is read once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from isthmus.debug.accesslog import AccessLogEntry, looks_like_access_log, parse_line

MAX_FILE_BYTES = 64 * 1024 * 1024


def _grep(path: Path, needle: str) -> list[str]:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            if size > MAX_FILE_BYTES:
                f.seek(size - MAX_FILE_BYTES)
            data = f.read()
    except OSError:
        return []
    raw = needle.encode()
    if raw not in data:
        return []
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        if needle in line and looks_like_access_log(line):
            out.append(line)
    return out


def access_log_files(pods_dir: Path, access_log_file: str) -> list[tuple[Path, str, str]]:
    """(file, namespace, instance) for every pod directory; instance "" for a shared absolute file."""
    out: list[tuple[Path, str, str]] = []
    if pods_dir.is_dir():
        for ns_dir in sorted(p for p in pods_dir.iterdir() if p.is_dir()):
            for pod_dir in sorted(p for p in ns_dir.iterdir() if p.is_dir()):
                names = ["envoy.log"]
                if access_log_file and not access_log_file.startswith("/"):
                    names.append(access_log_file)
                for name in names:
                    f = pod_dir / name
                    if f.is_file():
                        out.append((f, ns_dir.name, pod_dir.name))
    if access_log_file.startswith("/") and not access_log_file.startswith("/dev/"):
        f = Path(access_log_file)
        if f.is_file():
            out.append((f, "", ""))
    return out


def search_files(pods_dir: Path, access_log_file: str, request_id: str) -> list[AccessLogEntry]:
    found: list[AccessLogEntry] = []
    seen: set[str] = set()
    for path, ns, inst in access_log_files(pods_dir, access_log_file):
        for line in _grep(path, request_id):
            entry = parse_line(line)
            if entry is None or entry.get("request_id") != request_id or line in seen:
                continue
            seen.add(line)
            if inst and not entry.instance:
                entry.instance = inst
            entry.extra["namespace"] = ns
            entry.source = str(path)
            found.append(entry)
    return found


def search_api(
    mesh: Any, proxies: Iterable[Mapping[str, Any]], request_id: str
) -> list[AccessLogEntry] | None:
    """Lines from the control plane's /api/logs; None when the mesh does not serve it."""
    found: list[AccessLogEntry] = []
    workloads = sorted({(p["workload"] or p["instance"], p["namespace"]) for p in proxies})
    for workload, ns in workloads:
        code, text = mesh.get_text(
            "/api/logs", {"workload": workload, "namespace": ns, "prefix": "1"}, timeout=10
        )
        if code == 404 and "error" not in text:
            return None  # no such route: telemetry not served by this mesh
        if code != 200:
            continue
        for line in text.splitlines():
            if request_id not in line:
                continue
            entry = parse_line(line)
            if entry is not None and entry.get("request_id") == request_id:
                entry.extra["namespace"] = ns
                entry.source = f"/api/logs?workload={workload}&namespace={ns}"
                found.append(entry)
    return found


def find_request(mesh: Any, request_id: str) -> list[AccessLogEntry]:
    """Every access-log line of the request, oldest first."""
    proxies = list(mesh.status.get("proxies") or [])
    found = None
    try:
        found = search_api(mesh, proxies, request_id)
    except Exception:
        found = None
    if not found:
        log_file = ""
        try:
            meshconfigs = mesh.resources("MeshConfig")
            if meshconfigs:
                log_file = str((meshconfigs[0].get("spec") or {}).get("accessLogFile") or "")
        except Exception:
            log_file = ""
        found = search_files(mesh.pods_dir, log_file, request_id)
    found.sort(key=lambda e: e.get("start_time"))
    return found


def proxy_of_entry(entry: AccessLogEntry, proxies: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ns = entry.extra.get("namespace")
    for p in proxies:
        if entry.instance and p.get("instance") == entry.instance and (not ns or p.get("namespace") == ns):
            return p
    return None
