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


def test_app_env_follows_design(tmp_path: Path) -> None:
    """DESIGN §3's app environment; PORT is the app port of the *first* listed target port."""
    import json

    spec = PodSpec(
        workload="reviews-v2",
        namespace="default",
        name="reviews-v2-0",
        ip="127.1.0.9",
        labels={"app": "reviews", "version": "v2"},
        service_account="bookinfo-reviews",
        sidecar=True,
        gateway=False,
        command=["isthmus", "echo"],
        env={"KEY": "value"},
        app_ports={9090: 41002, 9080: 41001},
    )
    pod = PodProcess(
        spec,
        store=None,  # type: ignore[arg-type]
        control_plane=None,
        xds_address=("127.1.0.1", 15010),
        workdir=tmp_path,
        port_offset=0,
    )
    env = pod.app_env()
    assert env["PORT"] == "41002"
    assert json.loads(env["ISTHMUS_PORTS"]) == {"9080": 41001, "9090": 41002}
    assert (env["POD_IP"], env["POD_NAME"], env["POD_NAMESPACE"]) == ("127.1.0.9", "reviews-v2-0", "default")
    assert env["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    assert json.loads(env["ISTHMUS_LABELS"]) == {"app": "reviews", "version": "v2"}
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.1.0.9:15001"
    assert env["KEY"] == "value"
