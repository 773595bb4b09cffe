"""The bookinfo demo as a user runs it: `isthmus up examples/bookinfo`, the gateway, the routing tasks,
and a clean stop that leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess

pytestmark = pytest.mark.e2e

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("bookinfo")
    shutil.copytree(BOOKINFO, work / "config", ignore=shutil.ignore_patterns("routing"))
    with MeshProcess(work / "config", work) as mesh:
        yield mesh


def productpage(mesh: MeshProcess, user: str | None = None) -> dict:
    address = mesh.gateway_address(80)
    headers = [("end-user", user)] if user else []
    resp = sync.request(f"http://{address}/productpage", headers=headers)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def reviews_version(page: dict) -> str:
    (call,) = [c for c in page["calls"] if "reviews" in c["url"]]
    assert call["status"] == 200, call
    return call["body"]["version"]


def test_gateway_to_productpage_to_details_reviews_ratings(bookinfo: MeshProcess) -> None:
    page = productpage(bookinfo)
    assert page["workload"] == "productpage-v1"
    details, reviews = page["calls"]
    assert details["status"] == 200 and details["body"]["workload"] == "details-v1"
    assert reviews["status"] == 200
    if reviews["body"]["version"] in ("v2", "v3"):
        assert reviews["body"]["calls"][0]["body"]["workload"] == "ratings-v1"
    # Istio's tracing headers are forwarded along the chain.
    assert reviews["body"]["headers"]["x-request-id"] == page["headers"]["x-request-id"]
    address = bookinfo.gateway_address(80)
    assert sync.request(f"http://{address}/nothing-here").status == 404


def test_routing_tasks(bookinfo: MeshProcess) -> None:
    seen = Counter(reviews_version(productpage(bookinfo)) for _ in range(30))
    assert set(seen) == {"v1", "v2", "v3"}
    for folder, user, expected in (
        ("all-v1", None, {"v1"}),
        ("jason-v2", "jason", {"v2"}),
        ("jason-v2", None, {"v1"}),
    ):
        text = "\n---\n".join(p.read_text() for p in sorted((BOOKINFO / "routing" / folder).glob("*.yaml")))
        bookinfo.apply(text)
        try:
            versions = {reviews_version(productpage(bookinfo, user)) for _ in range(10)}
            assert versions == expected, (folder, user, versions)
        finally:
            bookinfo.delete(text)
    text = (BOOKINFO / "routing" / "80-20" / "virtual-service-reviews-80-20.yaml").read_text()
    bookinfo.apply(text)
    try:
        result = bookinfo.load("productpage-v1", "http://reviews:9080/", 500, concurrency=4)
        assert result.codes == {"200": 500}
        assert abs(result.versions["v1"] - 400) <= 35 and abs(result.versions.get("v2", 0) - 100) <= 35, (
            result.versions
        )
    finally:
        bookinfo.delete(text)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(entry))
    return out


def test_sigterm_stops_everything_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(
        """
apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  selector: {app: a}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, labels: {app: a}}
spec:
  replicas: 2
  ports: [8080]
  command: [isthmus, echo]
"""
    )
    mesh = MeshProcess(config, tmp_path).start()
    assert mesh.proc is not None
    children = _children(mesh.proc.pid)
    grandchildren = set().union(*(_children(c) for c in children)) if children else set()
    assert len(children) >= 4  # two Envoys and two apps
    mesh.proc.send_signal(signal.SIGTERM)
    assert mesh.proc.wait(30) == 0
    assert not (mesh.state_dir / "state.json").exists()
    alive = [p for p in children | grandchildren if Path(f"/proc/{p}").exists()]
    assert not alive, f"left running: {alive}"
