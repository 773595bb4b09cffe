"""A pod's port offset reaches the registry whatever listens on its address: its sidecar, or (without
one) its app, which the runner gives the shifted port (DESIGN §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.mesh.pods import PodProcess, PodSpec


@pytest.mark.parametrize("sidecar", [True, False])
def test_registry_pod_carries_the_offset(tmp_path: Path, sidecar: bool) -> None:
    spec = PodSpec(
        workload="low",
        namespace="default",
        name="low-0",
        ip="127.1.0.9",
        labels={"app": "low"},
        service_account="default",
        sidecar=sidecar,
        gateway=False,
        command=["isthmus", "echo"],
        env={},
        app_ports={80: 40000 if sidecar else 8080},
    )
    pod = PodProcess(
        spec,
        store=None,  # type: ignore[arg-type]
        control_plane=None,
        xds_address=("127.1.0.1", 15010),
        workdir=tmp_path,
        port_offset=8000,
    )
    assert pod.pod(ready=True).port_offset == 8000
