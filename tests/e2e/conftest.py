from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import MeshProcess

MESHES = Path(__file__).parent / "meshes"


@pytest.fixture(scope="module")
def routing_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("routing")
    config = work / "config"
    shutil.copytree(MESHES / "routing", config)
    with MeshProcess(config, work) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def security_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("security")
    config = work / "config"
    shutil.copytree(MESHES / "security", config)
    with MeshProcess(config, work) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def resilience_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("resilience")
    config = work / "config"
    shutil.copytree(MESHES / "resilience", config)
    with MeshProcess(config, work) as mesh:
        yield mesh
