"""EnvoyProcess without starting Envoy: command line, addresses, launcher."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from isthmus.agent import envoy as envoy_module
from isthmus.agent.bootstrap import build_bootstrap
from isthmus.agent.envoy import EnvoyError, EnvoyProcess, default_envoy_path, pdeathsig_launch, tail
from isthmus.model.proxy import Proxy

IP = "127.1.0.9"


def make_envoy(tmp_path: Path, **kw) -> EnvoyProcess:
    proxy = Proxy(
        id=Proxy.node_id("sidecar", IP, "ratings-v1-0", "default"),
        kind="sidecar",
        ip=IP,
        namespace="default",
        instance="ratings-v1-0",
        workload="ratings-v1",
    )
    bootstrap = build_bootstrap(proxy, xds_address=("127.1.0.1", 15010), admin_port=23000)
    return EnvoyProcess(proxy, bootstrap, tmp_path / "w", **kw)


def test_command_line_follows_istio_agent(tmp_path: Path) -> None:
    e = make_envoy(tmp_path, drain_time_s=45, concurrency=2, extra_args=["--stats-tag", "mesh:test"])
    args = e.args()
    assert args[0] == str(default_envoy_path())
    assert "--disable-hot-restart" in args
    assert args[args.index("-c") + 1] == str(tmp_path / "w" / "envoy.json")
    assert args[args.index("--log-path") + 1] == str(tmp_path / "w" / "envoy.log")
    assert args[args.index("--drain-strategy") + 1] == "immediate"
    assert args[args.index("--drain-time-s") + 1] == "45"
    assert args[args.index("--concurrency") + 1] == "2"
    assert args[args.index("--local-address-ip-version") + 1] == "v4"
    assert args[args.index("-l") + 1] == "warning"
    assert args[args.index("--component-log-level") + 1] == "misc:error"
    assert args[-2:] == ["--stats-tag", "mesh:test"]


def test_admin_url_comes_from_the_bootstrap(tmp_path: Path) -> None:
    e = make_envoy(tmp_path)
    assert e.admin_url == f"http://{IP}:23000"
    assert e.admin_address == (IP, 23000)
    assert e.pid is None and e.returncode is None and not e.running


def test_not_started(tmp_path: Path) -> None:
    e = make_envoy(tmp_path)

    async def main() -> None:
        assert await e.stop() is None
        with pytest.raises(EnvoyError):
            await e.wait_ready(1)

    asyncio.run(main())


def test_pdeathsig_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envoy_module, "_setpriv", lambda: "/usr/bin/setpriv")
    argv, preexec = pdeathsig_launch(["/bin/envoy", "-c", "x"])
    assert argv == ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/envoy", "-c", "x"]
    assert preexec is None
    monkeypatch.setattr(envoy_module, "USE_SETPRIV", False)
    argv, preexec = pdeathsig_launch(["/bin/envoy"])
    assert argv == ["/bin/envoy"] and callable(preexec)
    monkeypatch.setattr(envoy_module, "USE_SETPRIV", True)
    monkeypatch.setattr(envoy_module, "_setpriv", lambda: None)
    argv, preexec = pdeathsig_launch(["/bin/envoy"])
    assert argv == ["/bin/envoy"] and callable(preexec)


def test_tail(tmp_path: Path) -> None:
    f = tmp_path / "log"
    assert tail(f) == ""
    f.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(f, 3) == "line 97\nline 98\nline 99"


def test_concurrency_zero_leaves_envoys_default(tmp_path: Path) -> None:
    """ProxyConfig concurrency 0: istio-agent passes no --concurrency, so Envoy uses every hardware thread."""
    assert "--concurrency" not in make_envoy(tmp_path, concurrency=0).args()
