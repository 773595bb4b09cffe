"""Talking to a running mesh's HTTP API, found through the state dir."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from isthmus.mesh.state import MeshNotRunning, read_state

# Never send control-plane calls through an HTTP_PROXY from the environment (apps in the mesh have one).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api_base(state_dir: Path | None) -> str:
    try:
        return str(read_state(state_dir)["api"]).rstrip("/")
    except MeshNotRunning as exc:
        raise click.ClickException(str(exc)) from exc


def call(
    state_dir: Path | None,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    url = api_base(state_dir) + path
    if params:
        url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, {"error": str(e)}
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(f"cannot reach the mesh at {url}: {getattr(e, 'reason', e)}") from e
