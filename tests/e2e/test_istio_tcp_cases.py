"""Outbound TCP and TLS routing with real Envoy: istiod's filter-chain choices (tls.go, networkfilter.go;
the cases of tests/unit/gen/test_istio_tcp_parity.py) checked on traffic. TCP crosses the mesh as a
CONNECT through the client's sidecar (DESIGN.md §3); the tunnel's host stands for the SNI.

- a TLS port takes `tls` rules by SNI and never `tcp` rules (buildSidecarOutboundTCPFilterChainOpts
  skips TLS ports); a TCP port takes the first applicable `tcp` rule, whose match needs every predicate
  (matchTCP: the mesh gateway and sourceLabels);
- DestinationRule connectionPool.tcp.idleTimeout closes an idle tunnel, as it closes istiod's tcp_proxy.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.harness import MeshProcess, applied, tcp_versions

pytestmark = pytest.mark.e2e

MESH = """
apiVersion: v1
kind: Service
metadata: {name: secure}
spec:
  selector: {app: secure}
  ports: [{name: tls, port: 9443}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure}
spec:
  host: secure
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def db_rule(policy: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db
  {policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


MESH += "---" + db_rule()
for _app, _port in (("secure", 9443), ("db", 5432)):
    for _version in ("v1", "v2"):
        MESH += f"""---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: {_app}-{_version}, labels: {{app: {_app}, version: {_version}}}}}
spec: {{ports: [{_port}], command: [isthmus, echo, --tcp, "{_port}"]}}
"""
MESH += """---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("tcp-cases"), MESH) as m:
        yield m


def test_tls_port_routes_by_sni_and_ignores_tcp_rules(mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: secure}
    spec:
      hosts: [secure]
      tls:
      - match: [{sniHosts: [secure]}]
        route: [{destination: {host: secure, subset: v2}}]
      tcp:
      - route: [{destination: {host: secure, subset: v1}}]
    """
    with applied(mesh, vs):
        assert tcp_versions(mesh, "secure:9443", 10) == Counter({"v2": 10})
    # A `tcp` rule alone does not apply to the TLS port: the service's endpoints, both versions.
    tcp_only = vs.split("      tls:")[0] + "      tcp:" + vs.split("      tcp:")[1]
    with applied(mesh, tcp_only):
        assert set(tcp_versions(mesh, "secure:9443", 30)) == {"v1", "v2"}


def test_tcp_match_on_the_mesh_gateway_still_needs_its_source_labels(mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: db}
    spec:
      hosts: [db]
      tcp:
      - match: [{gateways: [mesh], sourceLabels: {version: canary}}]
        route: [{destination: {host: db, subset: v2}}]
      - match: [{port: 5432}]
        route: [{destination: {host: db, subset: v1}}]
    """
    with applied(mesh, vs):
        assert tcp_versions(mesh, "db:5432", 10) == Counter({"v1": 10})


def open_tunnel(mesh: MeshProcess, authority: str) -> socket.socket:
    """A CONNECT tunnel through the client's sidecar, after one line echoed through it."""
    proxy = mesh.proxy("client")
    sock = socket.create_connection((proxy["ip"], proxy["outboundPort"]), timeout=10)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.split(b"\r\n", 1)[0].split()[1] == b"200", head
    sock.sendall(b"hello\n")
    assert sock.recv(4096).strip().endswith(b"hello")
    return sock


def idle_life(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the idle tunnel is closed by the sidecar, or None if it is still open after `limit`."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    finally:
        sock.close()
    assert data == b"", data
    return time.monotonic() - start


def test_destination_rule_tcp_idle_timeout_closes_idle_tunnels(mesh: MeshProcess) -> None:
    """connectionPool.tcp.idleTimeout is the tcp_proxy's idle_timeout in istiod; a tunnel idle that long
    is closed. Without it, the tunnel stays open (tcp_proxy's default is an hour)."""
    assert idle_life(open_tunnel(mesh, "db:5432"), 3.0) is None
    mesh.apply(db_rule("trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1s}}}"))
    try:
        life = idle_life(open_tunnel(mesh, "db:5432"), 10.0)
        assert life is not None and 0.5 <= life <= 8.0, life
    finally:
        mesh.apply(db_rule())


def test_sniffed_port_takes_weighted_tcp_rules(mesh: MeshProcess) -> None:
    """A port of sniffed protocol (no protocol in its name) keeps a TCP chain in istiod, built from the
    `tcp` rules as a TCP port's: a CONNECT to it follows the rule's weights (here all to v2, 0 to v1), over
    mesh mTLS to the auto port's own cluster (whose tunnel offers the TCP ALPN)."""
    sniffed = """
    apiVersion: v1
    kind: Service
    metadata: {name: sniffed}
    spec:
      selector: {app: db}
      ports: [{name: sniffed, port: 5432}]
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: sniffed}
    spec:
      host: sniffed
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
    """
    vs = """
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: sniffed}
    spec:
      hosts: [sniffed]
      tcp:
      - route:
        - {destination: {host: sniffed, subset: v1}, weight: 0}
        - {destination: {host: sniffed, subset: v2}, weight: 100}
    """
    with applied(mesh, sniffed):
        assert set(tcp_versions(mesh, "sniffed:5432", 20)) == {"v1", "v2"}
    with applied(mesh, sniffed + vs):
        assert tcp_versions(mesh, "sniffed:5432", 10) == Counter({"v2": 10})
