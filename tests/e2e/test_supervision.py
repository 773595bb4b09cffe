"""A crashed proxy or app is restarted, as kubelet restarts a container: the instance leaves the endpoint
set meanwhile, comes back once its proxy holds its config and its app listens, and status counts it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import MeshProcess, echo_body

pytestmark = pytest.mark.e2e

MESH = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec: {ports: [8080], command: [isthmus, echo]}
"""


def pids_of(match: Callable[[list[str], Path], bool]) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if match(argv, cwd):
            out.append(int(entry.name))
    return out


def instance(mesh: MeshProcess, name: str) -> dict[str, Any]:
    return next(i for i in mesh.status()["instances"] if i["instance"] == name)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_crashed_proxy_and_app_are_restarted(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    with MeshProcess(config, tmp_path) as mesh:
        pod_dir = mesh.state_dir / "pods" / "default" / "web-0"
        assert echo_body(mesh.curl("client", "http://web/"))["workload"] == "web"

        envoys = pids_of(lambda argv, _: str(pod_dir / "envoy.json") in argv)
        assert len(envoys) == 1, envoys
        os.kill(envoys[0], signal.SIGKILL)
        wait_for(lambda: instance(mesh, "web-0")["state"] == "Restarting", 10, "the pod to be restarting")
        # Out of the endpoint set while its proxy is down: callers get a 503 (no healthy upstream), not a hang.
        assert mesh.curl("client", "http://web/").status == 503
        wait_for(
            lambda: instance(mesh, "web-0")["state"] == "Running" and mesh._settled(mesh.status()),
            30,
            "the proxy to be back with its config",
        )
        web = instance(mesh, "web-0")
        assert web["restarts"] == 1 and "proxy exited with code -9" in web["lastCrash"], web
        assert echo_body(mesh.curl("client", "http://web/"))["workload"] == "web"
        assert pids_of(lambda argv, _: str(pod_dir / "envoy.json") in argv) != envoys

        apps = pids_of(lambda argv, cwd: cwd == pod_dir and "echo" in argv)
        assert apps, "the app process"
        for pid in apps:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: instance(mesh, "web-0")["restarts"] == 2, 10, "the app crash to be seen")
        wait_for(lambda: instance(mesh, "web-0")["state"] == "Running", 30, "the app to be back")
        assert "app exited" in instance(mesh, "web-0")["lastCrash"]
        wait_for(lambda: mesh.curl("client", "http://web/").status == 200, 10, "traffic to flow again")
        assert instance(mesh, "client-0")["restarts"] == 0
