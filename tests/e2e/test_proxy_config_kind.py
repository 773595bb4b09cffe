"""networking.istio.io/v1beta1 ProxyConfig on real Envoys: a ProxyConfig selecting one workload sets its
Envoy's worker count (--concurrency) and environment, another workload keeps the mesh default
(MeshConfig defaultConfig), and a change reaches a pod when it restarts, as Istio applies ProxyConfig at
pod start."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import MeshProcess

pytestmark = pytest.mark.e2e

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {defaultConfig: {concurrency: 1}}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: fast, namespace: default}
spec:
  selector: {matchLabels: {app: fast}}
  concurrency: 3
  environmentVariables: {PC_TEST_VAR: hello, ISTIO_META_PC_TEST: from-proxyconfig}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: fast, labels: {app: fast}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: plain, labels: {app: plain}}
spec: {ports: [8080], command: [isthmus, echo]}
"""

CHANGED = """
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: fast, namespace: default}
spec:
  selector: {matchLabels: {app: fast}}
  concurrency: 2
"""

# Admin calls must not go through an HTTP_PROXY of the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_info(proxy: dict[str, Any]) -> dict[str, Any]:
    url = f"http://{proxy['ip']}:{proxy['adminPort']}/server_info"
    with _OPENER.open(url, timeout=5) as resp:
        return json.loads(resp.read())


def envoy_environ(mesh: MeshProcess, instance: str) -> dict[str, str]:
    """The environment of the Envoy running from this pod's directory (/proc/PID/environ)."""
    config = str(mesh.state_dir / "pods" / "default" / instance / "envoy.json")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if config not in argv or not os.path.basename(argv[0]).startswith("envoy"):
                continue
            raw = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)
    raise AssertionError(f"no Envoy process for {instance}")


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("proxy-config"), MESH) as m:
        yield m


def test_selected_workload_gets_its_concurrency_and_environment(mesh: MeshProcess) -> None:
    fast, plain = mesh.proxy("fast"), mesh.proxy("plain")
    assert server_info(fast)["command_line_options"]["concurrency"] == 3
    assert server_info(plain)["command_line_options"]["concurrency"] == 1
    assert fast["proxyConfig"]["sources"] == ["default/fast"] and not fast["proxyConfig"]["outdated"]
    assert plain["proxyConfig"] == {"concurrency": 1, "environment": {}, "sources": [], "outdated": False}

    env = envoy_environ(mesh, fast["instance"])
    assert env["PC_TEST_VAR"] == "hello" and env["ISTIO_META_PC_TEST"] == "from-proxyconfig"
    assert "PC_TEST_VAR" not in envoy_environ(mesh, plain["instance"])
    # ISTIO_META_* became node metadata, as istio-agent does.
    assert server_info(fast)["node"]["metadata"]["PC_TEST"] == "from-proxyconfig"


def test_a_change_applies_when_the_pod_restarts(mesh: MeshProcess) -> None:
    mesh.apply(CHANGED)
    wait_for(
        lambda: mesh.proxy("fast")["proxyConfig"]["outdated"], 15, "the fast pod to be reported outdated"
    )
    # Istio applies ProxyConfig at pod start: the running Envoy keeps its workers until it restarts.
    assert server_info(mesh.proxy("fast"))["command_line_options"]["concurrency"] == 3
    assert not mesh.proxy("plain")["proxyConfig"]["outdated"]
    assert "runs with an older ProxyConfig" in mesh.log_tail(200)

    code, data = mesh._call("POST", "/api/restart", params={"workload": "fast"}, timeout=120)
    assert code == 200, data
    fast = mesh.proxy("fast")
    assert fast["proxyConfig"]["concurrency"] == 2 and not fast["proxyConfig"]["outdated"]
    assert server_info(fast)["command_line_options"]["concurrency"] == 2
    assert "PC_TEST_VAR" not in envoy_environ(mesh, fast["instance"])
