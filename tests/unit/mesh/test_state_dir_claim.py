"""DESIGN §4: one mesh per state dir. A second `isthmus up` on a live mesh's state dir is refused, and
leaves that mesh's state.json alone (every command finds the running mesh through it)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from isthmus.mesh.runner import MeshOptions, run_mesh


def test_refused_up_keeps_the_running_mesh_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state = state_dir / "state.json"
    running = {"pid": os.getppid(), "api": "http://127.1.0.1:15014"}  # a live process that is not us
    state.write_text(json.dumps(running))
    options = MeshOptions(config_dir=tmp_path, state_dir=state_dir, subnet="127.251.0.0/16")
    with pytest.raises(RuntimeError, match="already runs"):
        asyncio.run(asyncio.wait_for(run_mesh(options), 30))
    assert json.loads(state.read_text()) == running
