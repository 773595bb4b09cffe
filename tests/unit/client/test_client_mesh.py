from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from client_helpers import FakeMeshApi

from isthmus.client.mesh import MeshError, Source, find_source, find_source_in_status, read_state, resolve

STATUS: dict[str, Any] = {
    "controlPlane": {"xds": "127.1.0.1:15010", "api": "http://127.1.0.1:15014"},
    "proxies": [
        {
            "id": "sidecar~127.1.0.2~reviews-v2-0.default",
            "kind": "sidecar",
            "workload": "reviews-v2",
            "instance": "reviews-v2-0",
            "namespace": "default",
            "ip": "127.1.0.2",
            "outboundPort": 15001,
        },
        {
            "kind": "sidecar",
            "workload": "reviews-v2",
            "instance": "reviews-v2-1",
            "namespace": "default",
            "ip": "127.1.0.3",
            "outboundPort": 15001,
        },
        {
            "kind": "sidecar",
            "workload": "sleep",
            "instance": "sleep-0",
            "namespace": "other",
            "ip": "127.1.0.4",
            "outboundPort": 15001,
        },
        {
            "kind": "sidecar",
            "workload": "sleep",
            "instance": "sleep-0",
            "namespace": "default",
            "ip": "127.1.0.5",
            "outboundPort": 15001,
        },
        {
            "kind": "gateway",
            "workload": "istio-ingressgateway",
            "instance": "istio-ingressgateway-0",
            "namespace": "istio-system",
            "ip": "127.1.0.6",
        },
    ],
    "instances": [
        {
            "workload": "reviews-v2",
            "instance": "reviews-v2-0",
            "namespace": "default",
            "ip": "127.1.0.2",
            "sidecar": True,
        },
        {
            "workload": "legacy",
            "instance": "legacy-0",
            "namespace": "outside",
            "ip": "127.1.0.9",
            "sidecar": False,
        },
    ],
}
API = "http://127.1.0.1:15014"


def test_find_source_picks_sidecars_and_plain_pods() -> None:
    s = find_source_in_status(STATUS, API, "reviews-v2")
    assert s == Source("reviews-v2", "reviews-v2-0", "default", "127.1.0.2", "http://127.1.0.2:15001", API)
    assert find_source_in_status(STATUS, API, "reviews-v2", "reviews-v2-1").ip == "127.1.0.3"
    assert find_source_in_status(STATUS, API, "reviews-v2-1").instance == "reviews-v2-1"  # instance name
    assert find_source_in_status(STATUS, API, "sleep").namespace == "default"  # preferred when ambiguous
    assert find_source_in_status(STATUS, API, "sleep", namespace="other").ip == "127.1.0.4"
    legacy = find_source_in_status(STATUS, API, "legacy")
    assert (legacy.proxy_url, legacy.ip, legacy.namespace) == (None, "127.1.0.9", "outside")


def test_find_source_errors_list_known_workloads() -> None:
    with pytest.raises(MeshError) as e:
        find_source_in_status(STATUS, API, "ratings")
    assert "default/reviews-v2" in str(e.value) and "outside/legacy" in str(e.value)
    with pytest.raises(MeshError):
        find_source_in_status(STATUS, API, "reviews-v2", "reviews-v2-7")
    with pytest.raises(MeshError):
        find_source_in_status(STATUS, API, "istio-ingressgateway")  # gateways send nothing
    with pytest.raises(MeshError):
        find_source_in_status(STATUS, API, "reviews-v2", namespace="other")


def test_find_source_through_state_dir(tmp_path: Path, mesh_api: FakeMeshApi) -> None:
    with pytest.raises(MeshError, match="no running mesh"):
        find_source(tmp_path, "reviews-v2")
    mesh_api.status = STATUS
    mesh_api.write_state(tmp_path)
    assert read_state(tmp_path)["api"] == mesh_api.url
    src = find_source(str(tmp_path), "reviews-v2")
    assert src.proxy_url == "http://127.1.0.2:15001" and src.api == mesh_api.url
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(MeshError, match="api"):
        find_source(tmp_path, "reviews-v2")


def test_resolve_and_unreachable_api(mesh_api: FakeMeshApi) -> None:
    mesh_api.resolve[("reviews", 9080)] = ["127.1.0.2:9080", "127.1.0.3:9080"]
    assert resolve(mesh_api.url, "reviews", 9080, "default") == ["127.1.0.2:9080", "127.1.0.3:9080"]
    assert mesh_api.resolve_queries[-1] == {"host": "reviews", "port": "9080", "namespace": "default"}
    assert resolve(mesh_api.url, "unknown", 1, "default") == []
    with pytest.raises(MeshError, match="is the mesh running"):
        resolve("http://127.0.0.1:1", "reviews", 9080, "default", timeout=2)
