"""What `isthmus status` prints: one line per pod, names whole when piped, and a SYNC column that says
SYNCED when the proxy ACKed every type it subscribed to, else which types lag."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli import mesh_cmds

LONG = "a-workload-name-longer-than-eighty-columns-would-leave-room-for-0"


def status(sync: dict[str, str]) -> dict[str, Any]:
    pod = {
        "workload": "w",
        "instance": LONG,
        "namespace": "default",
        "ip": "127.1.0.2",
        "ports": [{"port": 9080}],
    }
    proxy = {"instance": LONG, "kind": "sidecar", "sync": sync, "listeners": []}
    bare = {**pod, "instance": "plain-0", "ip": "127.1.0.3"}
    return {
        "controlPlane": {"xds": "127.1.0.1:15010", "api": "http://127.1.0.1:15014"},
        "configVersion": "3",
        "proxies": [proxy],
        "instances": [pod, bare],
    }


def run_status(monkeypatch: pytest.MonkeyPatch, sync: dict[str, str]) -> str:
    monkeypatch.setattr(mesh_cmds, "call", lambda *a, **kw: (200, status(sync)))
    result = CliRunner().invoke(mesh_cmds.status_command, [])
    assert result.exit_code == 0, result.output
    return result.output


def test_all_synced_is_one_word(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_status(monkeypatch, {"CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "SYNCED"})
    (line,) = [x for x in out.splitlines() if LONG in x]
    assert line.split()[-1] == "SYNCED" and "CDS" not in line
    (plain,) = [x for x in out.splitlines() if "plain-0" in x]
    assert "no sidecar" in plain and "SYNCED" not in plain


def test_lagging_types_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_status(monkeypatch, {"CDS": "SYNCED", "LDS": "STALE", "RDS": "NOT SENT"})
    (line,) = [x for x in out.splitlines() if LONG in x]
    assert line.rstrip().endswith("LDS:STALE RDS:NOT SENT") and "CDS" not in line
