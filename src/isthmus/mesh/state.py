"""The state dir: where `isthmus up` records what runs where, so other commands can find the mesh."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


def default_state_dir() -> Path:
    env = os.environ.get("ISTHMUS_STATE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "isthmus"


def resolve_state_dir(state_dir: str | Path | None) -> Path:
    return Path(state_dir) if state_dir else default_state_dir()


class MeshNotRunning(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(state_dir: str | Path | None) -> dict[str, Any]:
    path = resolve_state_dir(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MeshNotRunning(
            f"no mesh is running for state dir {path.parent} (no {STATE_FILE}); start one with `isthmus up DIR`"
        ) from exc
    pid = int(data.get("pid", 0))
    if pid and not _pid_alive(pid):
        raise MeshNotRunning(f"the mesh recorded in {path} (pid {pid}) is not running any more")
    return data


def write_state(state_dir: Path, data: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(state_dir / STATE_FILE)


def clear_state(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


def claim_state_dir(state_dir: Path) -> None:
    """Refuse to start a second mesh on a state dir whose mesh is still alive."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    pid = int(data.get("pid", 0) or 0)
    if pid and pid != os.getpid() and _pid_alive(pid):
        raise RuntimeError(
            f"a mesh (pid {pid}) already runs with state dir {state_dir}; stop it or use another --state-dir"
        )
