"""Locality load balancing end to end, with real Envoy sidecars and the echo app.

The mesh: a client in us-east/zone1 and a service `geo` with one instance there (geo-east) and one in
us-west/zone2 (geo-west), their localities given by Kubernetes topology labels on the Workloads. As in
Istio: with outlier detection, the client's sidecar sends everything to its own locality and fails over
to the other when the local instance is ejected; `distribute` splits traffic by the given weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

URL = "http://geo/"
MESH = """
apiVersion: v1
kind: Service
metadata: {name: geo}
spec:
  selector: {app: geo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: client
  labels: {app: client, topology.kubernetes.io/region: us-east, topology.kubernetes.io/zone: zone1}
spec:
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: geo-east
  labels: {app: geo, version: east, topology.kubernetes.io/region: us-east, topology.kubernetes.io/zone: zone1}
spec:
  ports: [8080]
  command: [isthmus, echo]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: geo-west
  labels: {app: geo, version: west, topology.kubernetes.io/region: us-west, topology.kubernetes.io/zone: zone2}
spec:
  ports: [8080]
  command: [isthmus, echo]
"""


def dr(traffic_policy: dict) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: geo}}
    spec:
      host: geo
      trafficPolicy: {json.dumps(traffic_policy)}
    """


# Ejecting one of two hosts is 50%: above Envoy's default maxEjectionPercent (10%).
OUTLIER = {
    "consecutive5xxErrors": 1,
    "interval": "500ms",
    "baseEjectionTime": "30s",
    "maxEjectionPercent": 100,
}


@pytest.fixture(scope="module")
def geo_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("locality"), MESH) as mesh:
        yield mesh


def arm_failures(mesh: MeshProcess, workload: str, count: int) -> None:
    """The next `count` requests the instance serves fail with 503 (0: it is healthy again)."""
    inst = mesh.instance(workload)
    resp = sync.request(
        f"http://{inst['ip']}:{inst['ports'][0]['port']}/.echo/reset?fail-first={count}", timeout=5
    )
    assert resp.status == 200, resp.text


def test_outlier_detection_keeps_traffic_in_the_client_locality(geo_mesh: MeshProcess) -> None:
    mesh = geo_mesh
    # No outlier detection: locality failover does not apply (Envoy could never leave priority 0).
    spread = mesh.load("client", URL, 40, concurrency=1)
    with applied(mesh, dr({"outlierDetection": OUTLIER})):
        local = mesh.load("client", URL, 40, concurrency=1)
    assert spread.codes == {"200": 40} and set(spread.served_by) == {"geo-east", "geo-west"}, spread.served_by
    assert local.codes == {"200": 40} and local.served_by == {"geo-east": 40}, local.served_by


def test_traffic_fails_over_to_the_remote_locality(geo_mesh: MeshProcess) -> None:
    mesh = geo_mesh
    with applied(mesh, dr({"outlierDetection": OUTLIER})):
        before = mesh.load("client", URL, 10, concurrency=1)
        arm_failures(mesh, "geo-east", 1_000_000)
        try:
            responses = []

            def failed_over() -> bool:
                responses.append(mesh.curl("client", URL))
                tail = responses[-10:]
                return len(tail) == 10 and all(
                    r.status == 200 and echo_body(r)["workload"] == "geo-west" for r in tail
                )

            wait_for("traffic to fail over to geo-west", failed_over, timeout=20)
        finally:
            arm_failures(mesh, "geo-east", 0)
    assert before.served_by == {"geo-east": 10}, before.served_by
    failures = sum(r.status == 503 for r in responses)
    # consecutive5xxErrors: 1 ejects geo-east at its first failure; then only the remote locality answers.
    assert 1 <= failures <= 3, [r.status for r in responses]
    first_ok = next(i for i, r in enumerate(responses) if r.status == 200)
    assert all(r.status == 200 and echo_body(r)["workload"] == "geo-west" for r in responses[first_ok:])


def test_distribute_splits_traffic_by_the_given_weights(geo_mesh: MeshProcess) -> None:
    mesh = geo_mesh
    setting = {
        "distribute": [{"from": "us-east/zone1/*", "to": {"us-east/zone1/*": 70, "us-west/zone2/*": 30}}]
    }
    with applied(mesh, dr({"loadBalancer": {"localityLbSetting": setting}})):
        split = mesh.load("client", URL, 200, concurrency=4)
    # A `from` that does not cover the client: no weights, both localities get their round share.
    other = {"distribute": [{"from": "eu-west/*", "to": {"us-east/zone1/*": 10, "us-west/zone2/*": 90}}]}
    with applied(mesh, dr({"loadBalancer": {"localityLbSetting": other}})):
        unweighted = mesh.load("client", URL, 200, concurrency=4)
    assert split.codes == {"200": 200}, split.codes
    east = split.served_by.get("geo-east", 0) / 200
    assert abs(east - 0.70) <= 0.08, split.served_by
    west = unweighted.served_by.get("geo-west", 0) / 200
    assert abs(west - 0.5) <= 0.15, unweighted.served_by
    print(
        f"[locality] distribute 70/30: {split.served_by}; not from the client's locality: {unweighted.served_by}"
    )
