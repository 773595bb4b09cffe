"""What `isthmus apply --wait` prints for the API's answers: ACKed, ACKed with listeners still warming
(a warning, not a failure: the ACK is the contract), and a timeout (a failure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli import mesh_cmds

GATEWAY = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n"


def run_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, answer: dict[str, Any]) -> Any:
    def fake_call(state_dir: Any, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        assert (method, path) == ("POST", "/api/apply") and kw["params"]["wait"] == 5.0
        return 200, {"version": "7", "applied": ["Gateway default/gw created"], **answer}

    monkeypatch.setattr(mesh_cmds, "call", fake_call)
    f = tmp_path / "gw.yaml"
    f.write_text(GATEWAY)
    return CliRunner().invoke(mesh_cmds.apply_command, ["-f", str(f), "--wait", "5"])


def test_acked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = run_apply(monkeypatch, tmp_path, {"synced": True, "warming": []})
    assert r.exit_code == 0, r.output
    assert "config version 7 ACKed by every proxy" in r.output and "warming" not in r.output


def test_acked_with_a_listener_waiting_for_its_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    r = run_apply(monkeypatch, tmp_path, {"synced": True, "warming": ["ingressgateway-0.istio-system"]})
    assert r.exit_code == 0, r.output
    assert "warning: listeners are still warming on ingressgateway-0.istio-system" in r.output
    assert "credentialName" in r.output


def test_not_acked_in_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = run_apply(monkeypatch, tmp_path, {"synced": False, "warming": []})
    assert r.exit_code != 0
    assert "timed out after 5.0s waiting for every proxy to ACK version 7" in r.output


def test_not_acked_names_the_lagging_proxies_and_the_secrets_they_wait_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pending = {
        "proxy": "client-0.default",
        "sync": {"CDS": "STALE"},
        "secretsWaiting": {"file-cert:/x.pem~/x.key": "cannot read /x.pem: No such file or directory"},
    }
    r = run_apply(monkeypatch, tmp_path, {"synced": False, "warming": [], "pending": [pending]})
    assert r.exit_code != 0
    assert "  client-0.default: CDS:STALE" in r.output
    assert (
        "    waits for secret file-cert:/x.pem~/x.key: cannot read /x.pem: No such file or directory"
        in r.output
    )
