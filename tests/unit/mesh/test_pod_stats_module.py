"""A pod's agent and ISTHMUS_PROXY_METRICS: the module's directory and collector when it builds, the
access log (and the reason, in status) when it cannot."""

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
    assert "no C compiler" in (pod.stats_module_error or "")
    assert tenvoy.STATS_COLLECTOR_KEY not in pod.make_proxy().metadata
    assert "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" not in (pod.proxy_env() or {})


@pytest.mark.parametrize(("value", "error"), [(None, None), ("false", None), ("maybe", "is not a boolean")])
def test_off_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, error: str | None
) -> None:
    monkeypatch.setattr(statsmodule, "build", lambda cache: pytest.fail("built without being asked"))
    pod = make_pod(tmp_path, {} if value is None else {"ISTHMUS_PROXY_METRICS": value})
    asyncio.run(pod._prepare_stats_module())
    assert pod.stats_module_dir is None
    assert (pod.stats_module_error is None) if error is None else (error in (pod.stats_module_error or ""))


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pods._module_cache_dir() == tmp_path / "isthmus" / "modules"
