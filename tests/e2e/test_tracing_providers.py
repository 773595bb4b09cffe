"""Tracing extension providers ``datadog`` and ``skywalking`` through a real mesh.

The test runs its own collectors on 127.0.0.1 and makes them mesh services with ServiceEntries, as
Istio's suites deploy a Datadog agent or a SkyWalking OAP: an HTTP server standing in for the Datadog
agent (Envoy's Datadog tracer PUTs/POSTs msgpack-encoded traces to ``/v0.4/traces``) and a gRPC server
standing in for the SkyWalking OAP. A mesh-wide Telemetry sends every sidecar's spans to Datadog; a
workload Telemetry switches ``sw-client`` to SkyWalking.

Datadog: a request client -> server must reach the agent as trace payloads holding both sidecars' spans
(service names ``client.default`` and ``server.default``) under the trace id the server app saw in
``x-datadog-trace-id``. ``msgpack`` is not installed, so the payload is checked for those values' msgpack
encodings rather than decoded.

SkyWalking: the OAP's protos (skywalking.v3 TraceSegmentReportService) are not installed, so no segment is
decoded. The checks are that Envoy accepts the tracer (the proxy ACKs it: ``isthmus status`` shows every
xDS type SYNCED), that it is the HCM's tracer in Envoy's config dump (gRPC to the OAP's cluster, upstream
spans on), that traffic still flows and carries the ``sw8`` propagation header, and that Envoy opens
the segment-report stream to the OAP with the provider's ``accessToken`` as its ``authentication``
metadata. Waits poll (bounded); the collectors stop with the module.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from tests.e2e.harness import MeshProcess, echo_body, wait_for
from tests.e2e.test_istio_tracing_cases import _Collector, hcm_tracing

pytestmark = pytest.mark.e2e

DD_HOST = "datadog-agent.tracing.test"
SW_HOST = "skywalking-oap.tracing.test"
SW_TOKEN = "test-oap-token"
SW_COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  extensionProviders:
  - name: dd
    datadog: {{service: {dd}, port: {dd_port}, maxTagLength: 64}}
  - name: sw
    skywalking: {{service: istio-system/{sw}, port: {sw_port}, accessToken: {token}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: datadog-agent, namespace: istio-system}}
spec:
  hosts: [{dd}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {dd_port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: skywalking-oap, namespace: istio-system}}
spec:
  hosts: [{sw}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {sw_port}, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  tracing:
  - providers: [{{name: dd}}]
    randomSamplingPercentage: 100
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: skywalking, namespace: default}}
spec:
  selector: {{matchLabels: {{app: sw-client}}}}
  tracing:
  - providers: [{{name: sw}}]
    randomSamplingPercentage: 100
---
apiVersion: v1
kind: Service
metadata: {{name: server}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: server, labels: {{app: server, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: client, labels: {{app: client, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: sw-client, labels: {{app: sw-client, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
"""


# --- the collectors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Received:
    """What the collectors received: the Datadog agent's requests, the OAP's gRPC calls."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    agent: list[AgentRequest] = field(default_factory=list)
    oap: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (method, metadata)

    def agent_requests(self) -> list[AgentRequest]:
        with self.lock:
            return list(self.agent)

    def oap_calls(self) -> list[tuple[str, dict[str, str]]]:
        with self.lock:
            return list(self.oap)


class _Agent(_Collector):
    """The Datadog agent's trace intake: records each request, answers as the agent does (JSON). The Zipkin
    collector's handler reads the (chunked) body and keeps quiet."""

    received: Received

    def _record(self) -> None:
        body = self._body()
        with self.received.lock:
            self.received.agent.append(
                AgentRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        payload = b'{"rate_by_service": {}}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_PUT = do_GET = _record


class _Oap(grpc.GenericRpcHandler):
    """Any gRPC call: recorded by method and metadata, its stream drained as raw bytes (no protos)."""

    def __init__(self, received: Received) -> None:
        self.received = received

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        with self.received.lock:
            self.received.oap.append((details.method, dict(details.invocation_metadata)))

        def drain(requests: Iterator[bytes], context: Any) -> bytes:
            for _ in requests:
                pass
            return b""  # an empty skywalking.v3.Commands

        return grpc.stream_unary_rpc_method_handler(drain)


@pytest.fixture(scope="module")
def collectors() -> Iterator[tuple[int, int, Received]]:
    received = Received()
    agent = ThreadingHTTPServer(("127.0.0.1", 0), type("Agent", (_Agent,), {"received": received}))
    thread = threading.Thread(target=agent.serve_forever, daemon=True)
    thread.start()
    oap = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    oap.add_generic_rpc_handlers((_Oap(received),))
    oap_port = oap.add_insecure_port("127.0.0.1:0")
    oap.start()
    try:
        yield agent.server_address[1], oap_port, received
    finally:
        oap.stop(grace=None)
        agent.shutdown()
        agent.server_close()


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, collectors: tuple[int, int, Received]
) -> Iterator[MeshProcess]:
    dd_port, sw_port, _ = collectors
    yaml = MESH.format(dd=DD_HOST, dd_port=dd_port, sw=SW_HOST, sw_port=sw_port, token=SW_TOKEN)
    # Up means every proxy ACKed its config: Envoy took both tracers.
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("tracing-providers"), yaml) as m:
        yield m


# --- helpers -------------------------------------------------------------------------------------------


def call(mesh: MeshProcess, workload: str, path: str) -> dict[str, Any]:
    """`workload` -> server through both sidecars; the headers the server app received."""
    return echo_body(mesh.curl(workload, f"http://server{path}"))["headers"]


def msgpack_uint64(value: int) -> bytes:
    """msgpack's encoding of an unsigned integer too large for 32 bits (a Datadog span's trace_id)."""
    return b"\xcf" + struct.pack(">Q", value)


# --- cases ---------------------------------------------------------------------------------------------


def test_datadog_agent_receives_both_sidecars_spans(
    mesh: MeshProcess, collectors: tuple[int, int, Received]
) -> None:
    _, _, received = collectors
    headers = call(mesh, "client", "/datadog")
    # Envoy's Datadog tracer propagates its own headers to the app (it knows neither B3 nor Zipkin).
    trace_id = int(headers["x-datadog-trace-id"])
    assert "x-b3-traceid" not in headers

    def payloads() -> list[AgentRequest] | None:
        found = [r for r in received.agent_requests() if r.path == "/v0.4/traces"]
        body = b"".join(r.body for r in found)
        # The client sidecar's and the server sidecar's spans, each under its service cluster name.
        ok = b"client.default" in body and b"server.default" in body
        if trace_id >= 2**32:  # else msgpack packs it shorter (1 request in 4 billion)
            ok = ok and msgpack_uint64(trace_id) in body
        return found if ok else None

    found = wait_for("the trace's spans at the Datadog agent", payloads, timeout=20)
    for r in found:
        assert r.method in ("PUT", "POST"), r
        assert r.headers["content-type"] == "application/msgpack", r.headers
        # The collector hostname istiod sets: the agent's service host.
        assert r.headers["host"].split(":")[0] == DD_HOST, r.headers
        assert "datadog-meta-lang" in r.headers and "x-datadog-trace-count" in r.headers, r.headers


def test_datadog_tracer_in_envoy_config(mesh: MeshProcess, collectors: tuple[int, int, Received]) -> None:
    dd_port = collectors[0]
    tracing = hcm_tracing(mesh, "client", "default")  # one Telemetry: the same tracer on every HCM
    assert tracing["provider"]["name"] == "envoy.tracers.datadog"
    cfg = tracing["provider"]["typed_config"]
    assert cfg["collector_cluster"] == f"outbound|{dd_port}||{DD_HOST}"
    assert cfg["collector_hostname"] == DD_HOST and cfg["service_name"] == "client.default"
    assert tracing["max_path_tag_length"] == 64 and tracing["random_sampling"]["value"] == 100
    assert "spawn_upstream_span" not in tracing  # sidecars: only gateways spawn one


def test_skywalking_is_accepted_and_traffic_flows(
    mesh: MeshProcess, collectors: tuple[int, int, Received]
) -> None:
    """No SkyWalking protos here, so no segment is decoded: Envoy ACKs the tracer, runs it (the sw8 header
    reaches the app), and streams segments to the OAP with the access token."""
    _, sw_port, received = collectors
    proxy = mesh.proxy("sw-client")
    assert proxy["sync"] and set(proxy["sync"].values()) == {"SYNCED"}, proxy["sync"]
    errors = mesh.status()["generationErrors"]
    assert not errors, errors
    tracing = hcm_tracing(mesh, "sw-client", "default")
    assert tracing["provider"]["name"] == "envoy.tracers.skywalking"
    grpc_service = tracing["provider"]["typed_config"]["grpc_service"]["envoy_grpc"]
    assert grpc_service == {"cluster_name": f"outbound|{sw_port}||{SW_HOST}", "authority": SW_HOST}
    assert tracing["spawn_upstream_span"] is True  # istiod sets it for SkyWalking on every proxy
    assert "max_path_tag_length" not in tracing

    headers = call(mesh, "sw-client", "/skywalking")
    assert headers.get("sw8", "").startswith("1-"), headers  # sampled, per SkyWalking's sw8 format

    def collect_calls() -> list[dict[str, str]] | None:
        return [md for method, md in received.oap_calls() if method == SW_COLLECT] or None

    calls = wait_for("the SkyWalking segment stream at the OAP", collect_calls, timeout=20)
    assert any(md.get("authentication") == SW_TOKEN for md in calls), calls
