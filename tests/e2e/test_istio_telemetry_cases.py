"""Istio's integration telemetry cases on a real mesh (real Envoy sidecars, metrics from their access logs).

Ported from istio/istio tests/integration/telemetry:
- stats/prometheus (common/stats.go, api/stats_test.go): a -> b over HTTP, both reporters, with the label
  values those tests query (buildQuery), here checked as the whole 25-label set; the out-of-mesh server
  (buildOutOfMeshServerQuery: the client's metrics only, destination app/version "unknown" as the
  endpoint metadata has none); TCP (buildTCPQuery: istio_tcp_connections_opened_total, both reporters);
- outboundtrafficpolicy (traffic_allow_any_test.go, traffic_registry_only_test.go): HTTP and TCP to a
  host outside the registry count under destination_service_name="PassthroughCluster", and under
  "BlackHoleCluster" (HTTP 502) with REGISTRY_ONLY;
- api/customize_metrics_test.go: Telemetry tagOverrides (REMOVE source_principal, a literal
  custom_dimension, an attribute value) on REQUEST_COUNT, and metrics disabled for one mode;
and the label defaults of istio-proxy's stats filter (istio_stats.cc): canonical service/revision from
service.istio.io/canonical-* labels or app/version (else the workload name and "latest"), a client
without a sidecar seen by the server as "unknown" everywhere, failures before an upstream (404 NR,
503 UH, 503 UF) naming what the route or the Host header knew, a ServiceEntry host as its own
destination_service_name.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.client import sync
from tests.e2e.harness import _OPENER, MeshProcess, applied, wait_for

pytestmark = pytest.mark.e2e

NS = "default"
TD = "cluster.local"
WAIT_S = 20.0  # access-log batches flush every second

MESH = """
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: naked}
spec:
  selector: {app: naked}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: c}
spec:
  selector: {app: capp}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: d}
spec:
  selector: {role: d}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-selects-this}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a-v1, labels: {app: a, version: v1}}
spec: {serviceAccount: a, ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b-v1, labels: {app: b, version: v1}}
spec: {serviceAccount: b, ports: [8080, 9000], command: [isthmus, echo, --tcp, "9000"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: naked, labels: {app: naked, version: v1}}
spec: {ports: [8080], sidecar: false, command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: c-v9
  labels:
    app: capp
    version: v9
    service.istio.io/canonical-name: c-canonical
    service.istio.io/canonical-revision: c-rev
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: d, labels: {role: d}}
spec: {ports: [8080], command: [isthmus, echo]}
"""

Labels = dict[str, str]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-telemetry"), MESH) as m:
        yield m


@pytest.fixture(scope="module")
def outside() -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1, outside the mesh (a ServiceEntry's endpoint)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"outside": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- helpers ------------------------------------------------------------------------------------------


def scrape(mesh: MeshProcess) -> Samples:
    with _OPENER.open(mesh.api + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def grown(after: Samples, before: Samples, name: str, **match: str) -> dict[frozenset, float]:
    """Series of sample `name` that grew since `before` and carry every label in `match`."""
    out = {}
    for (n, labels), value in after.items():
        if n != name or not all((k, v) in labels for k, v in match.items()):
            continue
        d = value - before.get((n, labels), 0.0)
        if d:
            out[labels] = d
    return out


def wait_grown(
    mesh: MeshProcess, before: Samples, name: str, count: float, **match: str
) -> dict[frozenset, float]:
    """Until the series matching `match` grew by `count` in all; those series."""

    def check() -> dict[frozenset, float] | None:
        found = grown(scrape(mesh), before, name, **match)
        return found if sum(found.values()) >= count else None

    found = wait_for(f"{name}{match} +{count}", check, timeout=WAIT_S)
    assert sum(found.values()) == count, found
    return found


def only(series: dict[frozenset, float]) -> Labels:
    assert len(series) == 1, json.dumps([dict(s) for s in series], indent=1)
    return dict(next(iter(series)))


def principal(sa: str) -> str:
    return f"spiffe://{TD}/ns/{NS}/sa/{sa}"


def svc(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


A_SOURCE = {
    "source_workload": "a-v1",
    "source_canonical_service": "a",
    "source_canonical_revision": "v1",
    "source_workload_namespace": NS,
    "source_app": "a",
    "source_version": "v1",
    "source_cluster": "Kubernetes",
}
B_DESTINATION = {
    "destination_workload": "b-v1",
    "destination_workload_namespace": NS,
    "destination_principal": principal("b"),
    "destination_app": "b",
    "destination_version": "v1",
    "destination_canonical_service": "b",
    "destination_canonical_revision": "v1",
    "destination_cluster": "Kubernetes",
}
UNKNOWN_DESTINATION = {
    "destination_workload": "unknown",
    "destination_workload_namespace": "unknown",
    "destination_principal": "unknown",
    "destination_app": "unknown",
    "destination_version": "unknown",
    "destination_canonical_service": "unknown",
    "destination_canonical_revision": "latest",
    "destination_service_namespace": "unknown",
    "destination_cluster": "unknown",
}
UNKNOWN_SOURCE = {
    "source_workload": "unknown",
    "source_canonical_service": "unknown",
    "source_canonical_revision": "latest",
    "source_workload_namespace": "unknown",
    "source_principal": "unknown",
    "source_app": "unknown",
    "source_version": "unknown",
    "source_cluster": "unknown",
}


def http_labels(reporter: str, **values: str) -> Labels:
    base = {
        "reporter": reporter,
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown" if reporter == "source" else "mutual_tls",
    }
    return {**base, **values}


def curl(mesh: MeshProcess, workload: str, url: str, **kw: Any) -> int:
    return mesh.curl(workload, url, **kw).status


# --- stats/prometheus: HTTP, TCP, out-of-mesh server, canonical labels -----------------------------------


def test_http_both_reporters_carry_istios_labels(mesh: MeshProcess) -> None:
    before = scrape(mesh)
    for _ in range(3):
        assert curl(mesh, "a-v1", "http://b/stats") == 200
    service = {"destination_service": svc("b"), "destination_service_name": "b"}
    src = only(wait_grown(mesh, before, "istio_requests_total", 3, reporter="source", destination_app="b"))
    assert src == http_labels(
        "source",
        **A_SOURCE,
        source_principal=principal("a"),
        **B_DESTINATION,
        **service,
        destination_service_namespace=NS,
    )
    dst = only(wait_grown(mesh, before, "istio_requests_total", 3, reporter="destination", source_app="a"))
    assert dst == http_labels(
        "destination",
        **A_SOURCE,
        source_principal=principal("a"),
        **B_DESTINATION,
        **service,
        destination_service_namespace=NS,
    )
    # Every HTTP metric has the same labels; the histograms count the same requests.
    after = scrape(mesh)
    for metric in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        grew = grown(after, before, f"{metric}_count", reporter="destination", source_app="a")
        assert {frozenset(dst.items()): 3.0} == grew, metric


def test_server_errors_keep_the_labels_with_their_code(mesh: MeshProcess) -> None:
    before = scrape(mesh)
    assert curl(mesh, "a-v1", "http://b/fail?status=503") == 503
    for reporter in ("source", "destination"):
        (labels,) = wait_grown(
            mesh, before, "istio_requests_total", 1, reporter=reporter, response_code="503", source_app="a"
        )
        got = dict(labels)
        assert (got["response_flags"], got["destination_workload"]) == ("-", "b-v1"), got


def test_out_of_mesh_server_is_reported_by_the_client_only(mesh: MeshProcess) -> None:
    """buildOutOfMeshServerQuery: the endpoint metadata names the workload, not its app or version."""
    before = scrape(mesh)
    assert curl(mesh, "a-v1", "http://naked/") == 200
    src = only(wait_grown(mesh, before, "istio_requests_total", 1, destination_service_name="naked"))
    assert src == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        destination_workload="naked",
        destination_workload_namespace=NS,
        destination_principal="unknown",  # plaintext: no peer certificate
        destination_app="unknown",
        destination_version="unknown",
        destination_canonical_service="naked",
        destination_canonical_revision="v1",
        destination_service=svc("naked"),
        destination_service_name="naked",
        destination_service_namespace=NS,
        destination_cluster="Kubernetes",
    )


def test_client_without_a_sidecar_is_unknown_to_the_server(mesh: MeshProcess) -> None:
    """Only metadata exchange tells a server sidecar who its client is: a pod without one is unknown."""
    before = scrape(mesh)
    assert mesh.curl_direct("naked", "http://b/from-naked").status == 200
    dst = only(wait_grown(mesh, before, "istio_requests_total", 1, destination_app="b"))
    assert dst == http_labels(
        "destination",
        **UNKNOWN_SOURCE,
        **{**B_DESTINATION, "destination_principal": "unknown"},  # plaintext: no local certificate
        destination_service=svc("b"),
        destination_service_name="b",
        destination_service_namespace=NS,
        connection_security_policy="none",
    )


def test_canonical_service_labels_and_their_defaults(mesh: MeshProcess) -> None:
    before = scrape(mesh)
    assert curl(mesh, "a-v1", "http://c/") == 200
    assert curl(mesh, "a-v1", "http://d/") == 200
    c = only(
        wait_grown(mesh, before, "istio_requests_total", 1, reporter="source", destination_service_name="c")
    )
    assert (c["destination_canonical_service"], c["destination_canonical_revision"]) == (
        "c-canonical",
        "c-rev",
    )
    assert (c["destination_app"], c["destination_version"], c["destination_workload"]) == (
        "capp",
        "v9",
        "c-v9",
    )
    # No label at all: the injector's defaults, the workload name and "latest"; d reports its own app and
    # version labels as its node has them, unset: "" (istio_stats.cc has no "unknown" for its own side).
    d = only(
        wait_grown(
            mesh, before, "istio_requests_total", 1, reporter="destination", destination_service_name="d"
        )
    )
    assert (d["destination_canonical_service"], d["destination_canonical_revision"]) == ("d", "latest")
    assert (d["destination_app"], d["destination_version"], d["destination_workload"]) == ("", "", "d")


def test_tcp_connections_both_reporters(mesh: MeshProcess) -> None:
    """buildTCPQuery: istio_tcp_connections_opened_total with request_protocol="tcp"."""
    before = scrape(mesh)
    resp = sync.request("tcp://b:9000", proxy=mesh.proxy_url("a-v1"), body="ping")
    assert resp.status == 200 and b"ping" in resp.body, resp
    opened = "istio_tcp_connections_opened_total"
    dst = only(wait_grown(mesh, before, opened, 1, reporter="destination", destination_app="b"))
    src = only(wait_grown(mesh, before, opened, 1, reporter="source", destination_service_name="b"))
    service = {"destination_service": svc("b"), "destination_service_name": "b"}
    tcp = {"request_protocol": "tcp", "response_flags": "-"}
    # Metadata exchange rides on mTLS (the istio-peer-exchange ALPN): both sides know each other.
    want = {**tcp, **A_SOURCE, "source_principal": principal("a"), **B_DESTINATION, **service}
    want["destination_service_namespace"] = NS
    assert dst == {**want, "reporter": "destination", "connection_security_policy": "mutual_tls"}
    assert src == {**want, "reporter": "source", "connection_security_policy": "unknown"}
    wait_grown(mesh, before, "istio_tcp_connections_closed_total", 1, reporter="destination")
    after = scrape(mesh)
    for metric in ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"):
        assert grown(after, before, metric, reporter="destination", destination_app="b"), metric


# --- failures before an upstream, ServiceEntry hosts --------------------------------------------------------


def test_no_route_and_no_healthy_upstream(mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: b-only, namespace: default}
    spec:
      hosts: [b]
      http:
      - match: [{uri: {prefix: /only}}]
        route: [{destination: {host: b}}]
    """
    with applied(mesh, vs):
        before = scrape(mesh)
        assert curl(mesh, "a-v1", "http://b/elsewhere") == 404
        nr = only(wait_grown(mesh, before, "istio_requests_total", 1, response_flags="NR"))
    # No route: no cluster either, so istio-proxy falls back to the Host header.
    assert nr == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **UNKNOWN_DESTINATION,
        destination_service="b",
        destination_service_name="b",
        response_code="404",
        response_flags="NR",
    )
    before = scrape(mesh)
    assert curl(mesh, "a-v1", "http://empty/") == 503
    uh = only(wait_grown(mesh, before, "istio_requests_total", 1, response_flags="UH"))
    # The route chose the cluster: its service is known, no destination pod is.
    assert uh == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **UNKNOWN_DESTINATION,
        destination_service=svc("empty"),
        destination_service_name="empty",
        response_code="503",
        response_flags="UH",
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_service_entry_hosts_and_connection_failures(mesh: MeshProcess, outside: int) -> None:
    dead = _closed_port()
    entries = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: outside, namespace: default}}
    spec:
      hosts: [outside.example.com]
      location: MESH_EXTERNAL
      resolution: STATIC
      ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {outside}}}]
      endpoints: [{{address: 127.0.0.1}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: dead, namespace: default}}
    spec:
      hosts: [dead.example.com]
      location: MESH_EXTERNAL
      resolution: STATIC
      ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {dead}}}]
      endpoints: [{{address: 127.0.0.1}}]
    """
    with applied(mesh, entries):
        before = scrape(mesh)
        assert curl(mesh, "a-v1", "http://outside.example.com/") == 200
        assert curl(mesh, "a-v1", "http://dead.example.com/") == 503
        ok = only(
            wait_grown(mesh, before, "istio_requests_total", 1, destination_service="outside.example.com")
        )
        uf = only(wait_grown(mesh, before, "istio_requests_total", 1, destination_service="dead.example.com"))
    # A ServiceEntry's service name is its host; the destination namespace is the peer's (none here).
    # An inline endpoint's metadata names no workload, only the cluster (istiod's empty config key).
    assert ok == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **{**UNKNOWN_DESTINATION, "destination_cluster": "Kubernetes"},
        destination_service="outside.example.com",
        destination_service_name="outside.example.com",
    )
    assert "UF" in uf["response_flags"].split(","), uf
    assert uf == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **{**UNKNOWN_DESTINATION, "destination_cluster": "Kubernetes"},
        destination_service="dead.example.com",
        destination_service_name="dead.example.com",
        response_code="503",
        response_flags=uf["response_flags"],
    )


# --- outboundtrafficpolicy: PassthroughCluster and BlackHoleCluster -----------------------------------------


def test_allow_any_passthrough(mesh: MeshProcess) -> None:
    naked_ip = mesh.instance("naked")["ip"]
    b_ip = mesh.proxy("b-v1")["ip"]
    before = scrape(mesh)
    host = f"{naked_ip}:8080"
    assert curl(mesh, "a-v1", f"http://{host}/passthrough") == 200
    resp = sync.request(f"tcp://{b_ip}:9000", proxy=mesh.proxy_url("a-v1"), body="ping")
    assert resp.status == 200 and b"ping" in resp.body, resp
    http_src = only(
        wait_grown(mesh, before, "istio_requests_total", 1, destination_service_name="PassthroughCluster")
    )
    # ORIGINAL_DST endpoints carry no metadata and a server without a sidecar exchanges none.
    assert http_src == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **UNKNOWN_DESTINATION,
        destination_service=host,
        destination_service_name="PassthroughCluster",
    )
    tcp_src = only(
        wait_grown(
            mesh,
            before,
            "istio_tcp_connections_opened_total",
            1,
            destination_service_name="PassthroughCluster",
        )
    )
    # TCP has no Host header, and plaintext TCP exchanges no metadata, even with b's sidecar there.
    assert tcp_src == {
        "reporter": "source",
        **A_SOURCE,
        "source_principal": "unknown",
        **UNKNOWN_DESTINATION,
        "destination_service": "unknown",
        "destination_service_name": "PassthroughCluster",
        "request_protocol": "tcp",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    tcp_dst = only(
        wait_grown(
            mesh, before, "istio_tcp_connections_opened_total", 1, reporter="destination", destination_app="b"
        )
    )
    assert {k: tcp_dst[k] for k in UNKNOWN_SOURCE} == UNKNOWN_SOURCE
    assert tcp_dst["connection_security_policy"] == "none"


def test_registry_only_blackhole(mesh: MeshProcess) -> None:
    sidecar = """
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: a-registry-only, namespace: default}
    spec:
      workloadSelector: {labels: {app: a}}
      outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """
    naked_ip = mesh.instance("naked")["ip"]
    host = f"{naked_ip}:8080"
    with applied(mesh, sidecar):
        before = scrape(mesh)
        assert curl(mesh, "a-v1", f"http://{host}/blackhole") == 502
        resp = sync.request(f"tcp://{naked_ip}:8080", proxy=mesh.proxy_url("a-v1"), body="ping")
        assert resp.status != 200 or not resp.body, resp
        http_src = only(
            wait_grown(mesh, before, "istio_requests_total", 1, destination_service_name="BlackHoleCluster")
        )
        tcp = only(
            wait_grown(
                mesh,
                before,
                "istio_tcp_connections_closed_total",
                1,
                reporter="source",
                destination_service_name="BlackHoleCluster",
                source_workload="a-v1",
            )
        )
    # Istio's TCP blackhole is a tcp_proxy to the BlackHoleCluster, which has no endpoint: UH.
    assert (tcp["destination_service"], tcp["response_flags"]) == ("unknown", "UH"), tcp
    assert http_src == http_labels(
        "source",
        **A_SOURCE,
        source_principal="unknown",  # no mTLS upstream: no local certificate
        **UNKNOWN_DESTINATION,
        destination_service=host,
        destination_service_name="BlackHoleCluster",
        response_code="502",
    )


# --- api: Telemetry metric overrides ---------------------------------------------------------------------


def wait_until_overridden(mesh: MeshProcess, client: str, server: str, **override: str) -> None:
    """Until a request from `client` is counted by `server` (reporter=destination) with the override's
    labels. Connections opened before a Telemetry change keep their listener config until they close:
    the server's proxy keeps its metrics in the proxy by default, so a request on a connection the
    client's sidecar pooled before still counts with Istio's labels (as with istio-proxy's stats filter
    on a draining connection), and Envoy tells the client to go away in that response. Istio's tests
    likewise send traffic until the new labels show."""

    def once() -> bool | None:
        start = scrape(mesh)
        assert curl(mesh, client, f"http://{server}/override-probe") == 200
        counted = wait_grown(
            mesh, start, "istio_requests_total", 1, reporter="destination", destination_app=server
        )
        return True if all(override.items() <= dict(labels).items() for labels in counted) else None

    wait_for(f"a request counted with {override}", once, timeout=WAIT_S)


def test_tag_overrides_remove_and_upsert(mesh: MeshProcess) -> None:
    """customize_metrics_test.go: REMOVE source_principal, a literal custom_dimension (REQUEST_COUNT only)."""
    telemetry = """
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: b-overrides, namespace: default}
    spec:
      selector: {matchLabels: {app: b}}
      metrics:
      - providers: [{name: prometheus}]
        overrides:
        - match: {metric: REQUEST_COUNT, mode: SERVER}
          tagOverrides:
            source_principal: {operation: REMOVE}
            custom_dimension: {value: "'test'"}
            request_method: {value: request.method}
    """
    with applied(mesh, telemetry):
        wait_until_overridden(mesh, "a-v1", "b", custom_dimension="test")
        before = scrape(mesh)
        assert curl(mesh, "a-v1", "http://b/path") == 200
        assert curl(mesh, "a-v1", "http://b/path", method="POST", body="x") == 200
        found = wait_grown(
            mesh, before, "istio_requests_total", 2, reporter="destination", custom_dimension="test"
        )
        after = scrape(mesh)
    methods = sorted(dict(labels)["request_method"] for labels in found)
    assert methods == ["GET", "POST"]
    for labels in found:
        got = dict(labels)
        assert "source_principal" not in got, got
        assert (got["source_workload"], got["destination_service_name"]) == ("a-v1", "b")
    # Other metrics keep Istio's labels.
    sizes = grown(after, before, "istio_request_bytes_count", reporter="destination", source_app="a")
    assert sizes and all(("source_principal", principal("a")) in labels for labels in sizes), sizes
    assert all("custom_dimension" not in dict(labels) for labels in sizes)


def test_metrics_disabled_for_the_client_mode_only(mesh: MeshProcess) -> None:
    telemetry = """
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: a-no-client-metrics, namespace: default}
    spec:
      selector: {matchLabels: {app: a}}
      metrics:
      - providers: [{name: prometheus}]
        overrides:
        - match: {metric: ALL_METRICS, mode: CLIENT}
          disabled: true
    """
    with applied(mesh, telemetry):
        before = scrape(mesh)
        for _ in range(2):
            assert curl(mesh, "a-v1", "http://b/quiet") == 200
        # The server still reports; the client reports nothing.
        wait_grown(mesh, before, "istio_requests_total", 2, reporter="destination", source_app="a")
        after = scrape(mesh)
    assert not grown(after, before, "istio_requests_total", reporter="source", source_app="a")
    assert not grown(
        after, before, "istio_request_duration_milliseconds_count", reporter="source", source_app="a"
    )


def test_per_proxy_metrics_show_one_side(mesh: MeshProcess) -> None:
    """What a's own :15090 would show: its reporter=source series only."""
    assert curl(mesh, "a-v1", "http://b/own") == 200
    proxy_id = mesh.proxy("a-v1")["id"]

    def own() -> str | None:
        url = f"{mesh.api}/metrics?proxy={urllib.parse.quote(proxy_id)}"
        with contextlib.suppress(OSError), _OPENER.open(url, timeout=10) as resp:
            text = resp.read().decode()
            return text if 'destination_app="b"' in text else None
        return None

    text = wait_for("a's own metrics", own, timeout=WAIT_S)
    assert 'reporter="source"' in text and 'reporter="destination"' not in text
