"""A pod's agent and ISTHMUS_PROXY_METRICS: the module (on by default) with its directory and collector
when it builds, the access log (and the reason, in status: an error when asked for, a note when only the
default) when it cannot, and the access log without building anything when the setting says "false"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from isthmus.mesh import pods
from isthmus.mesh.pods import PodProcess, PodSpec
from isthmus.model.proxy_config import EffectiveProxyConfig
from isthmus.telemetry import envoy as tenvoy
from isthmus.telemetry import statsmodule


def make_pod(tmp_path: Path, environment: dict[str, str]) -> PodProcess:
    spec = PodSpec(
        workload="r",
        namespace="ns",
        name="r-0",
        ip="127.1.0.9",
        labels={"app": "r"},
        service_account="default",
        sidecar=True,
        gateway=False,
        command=None,
        env={},
        proxy_config=EffectiveProxyConfig(environment=environment),
    )
    return PodProcess(
        spec, store=None, control_plane=None, xds_address=("127.1.0.1", 15010), workdir=tmp_path
    )  # type: ignore[arg-type]


def test_module_built_sets_search_path_and_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = tmp_path / "modules" / "abc"
    monkeypatch.setattr(statsmodule, "build", lambda cache: built)
    pod = make_pod(tmp_path, {"ISTHMUS_PROXY_METRICS": "true"})
    asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir == built and pod.stats_module_error is None
    env = pod.proxy_env()
    assert env is not None and env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] == str(built)
    assert pod.make_proxy().metadata[tenvoy.STATS_COLLECTOR_KEY] == f"127.1.0.1:{tenvoy.STATS_PORT}"


def test_without_a_compiler_the_access_log_keeps_the_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(cache: Path) -> Path:
        raise statsmodule.ModuleUnavailable("no C compiler (cc) on PATH")

    monkeypatch.setattr(statsmodule, "build", fail)
    pod = make_pod(tmp_path, {"ISTHMUS_PROXY_METRICS": "1"})
    asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir is None
    assert "no C compiler" in (pod.stats_module_error or "") and pod.stats_module_note is None
    assert tenvoy.STATS_COLLECTOR_KEY not in pod.make_proxy().metadata
    assert "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" not in (pod.proxy_env() or {})


@pytest.mark.parametrize("environment", [{}, {"ISTHMUS_PROXY_METRICS": ""}])
def test_on_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    built = tmp_path / "modules" / "abc"
    monkeypatch.setattr(statsmodule, "build", lambda cache: built)
    pod = make_pod(tmp_path, environment)
    asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir == built
    assert pod.stats_module_error is None and pod.stats_module_note is None


def test_default_without_a_compiler_is_a_note_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(cache: Path) -> Path:
        raise statsmodule.ModuleUnavailable("no C compiler (cc) on PATH")

    monkeypatch.setattr(statsmodule, "build", fail)
    pod = make_pod(tmp_path, {})
    with caplog.at_level("INFO", logger=pods.__name__):
        asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir is None and pod.stats_module_error is None
    assert "no C compiler" in (pod.stats_module_note or "")
    assert [r.levelname for r in caplog.records if "no C compiler" in r.getMessage()] == ["INFO"]
    assert tenvoy.STATS_COLLECTOR_KEY not in pod.make_proxy().metadata


@pytest.mark.parametrize(("value", "error"), [("false", None), ("0", None), ("maybe", "is not a boolean")])
def test_off_when_asked_or_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, error: str | None
) -> None:
    monkeypatch.setattr(statsmodule, "build", lambda cache: pytest.fail("built although turned off"))
    pod = make_pod(tmp_path, {"ISTHMUS_PROXY_METRICS": value})
    asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir is None and pod.stats_module_note is None
    assert (pod.stats_module_error is None) if error is None else (error in (pod.stats_module_error or ""))


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pods._module_cache_dir() == tmp_path / "isthmus" / "modules"
