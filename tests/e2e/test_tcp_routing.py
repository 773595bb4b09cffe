"""VirtualService tcp rules on sidecars, with real Envoy: TCP crosses the mesh through the sidecar's
CONNECT tunnel (no transparent interception), and goes where Istio's TCP routing sends it."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, tcp_versions

pytestmark = pytest.mark.e2e

MESH = """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: db-v1, labels: {app: db, version: v1}}
spec: {ports: [5432], command: [isthmus, echo, --tcp, "5432"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: db-v2, labels: {app: db, version: v2}}
spec: {ports: [5432], command: [isthmus, echo, --tcp, "5432"]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: legacy-db}
spec:
  selector: {app: legacy-db}
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: legacy-db, labels: {app: legacy-db, version: legacy}}
spec: {ports: [5432], sidecar: false, command: [isthmus, echo, --tcp, "5432"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: canary-client, labels: {app: client, version: canary}}
spec: {ports: [8080], command: [isthmus, echo]}
"""


@pytest.fixture(scope="module")
def tcp_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("tcp"), MESH) as mesh:
        yield mesh


def versions(mesh: MeshProcess, client: str, n: int) -> Counter[str]:
    """Each connection through the client's sidecar gets one line back: '<version> <line>'."""
    return tcp_versions(mesh, "db:5432", n, client)


def test_tcp_rules_route_by_source_labels_and_weights(tcp_mesh: MeshProcess) -> None:
    both = versions(tcp_mesh, "client", 40)
    assert set(both) == {"v1", "v2"}, both  # no rule: the service's endpoints
    vs = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: db}
        spec:
          hosts: [db]
          tcp:
          - match: [{port: 5432, sourceLabels: {version: canary}}]
            route: [{destination: {host: db, subset: v2}}]
          - route:
            - {destination: {host: db, subset: v1}, weight: 75}
            - {destination: {host: db, subset: v2}, weight: 25}
        """
    )
    tcp_mesh.apply(vs)
    try:
        assert versions(tcp_mesh, "canary-client", 20) == Counter({"v2": 20})
        split = versions(tcp_mesh, "client", 200)
        assert 0.63 <= split["v1"] / 200 <= 0.87, split
    finally:
        tcp_mesh.delete(vs)
    assert set(versions(tcp_mesh, "client", 40)) == {"v1", "v2"}


def test_destination_rule_proxy_protocol_sends_the_client_address_first(tcp_mesh: MeshProcess) -> None:
    """trafficPolicy.proxyProtocol, for a server outside the mesh that reads PROXY headers (as Istio
    means it: an in-mesh server's sidecar would take the header for its first bytes): the client sidecar
    opens each upstream connection with a PROXY v1 header naming the downstream connection, so the TCP
    echo answers that header as the connection's first line."""
    sidecar_ip = tcp_mesh.proxy("client")["ip"]
    rule = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: legacy-db}
        spec:
          host: legacy-db
          trafficPolicy: {proxyProtocol: {version: V1}}
        """
    )

    def first_line() -> str:
        resp = sync.request("tcp://legacy-db:5432", proxy=tcp_mesh.proxy_url("client"), body="ping")
        assert resp.status == 200, resp
        version, _, line = resp.text.strip().partition(" ")
        assert version == "legacy"
        return line

    assert first_line() == "ping"
    tcp_mesh.apply(rule)
    try:
        words = first_line().split()
        # PROXY TCP4 <source> <destination> <source port> <destination port>: the destination is where
        # the connection reached the client's sidecar (its outbound port on its pod address).
        assert words[:2] == ["PROXY", "TCP4"] and len(words) == 6, words
        assert (words[3], words[5]) == (sidecar_ip, "15001"), words
    finally:
        tcp_mesh.delete(rule)
    assert first_line() == "ping"
