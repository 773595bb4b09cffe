"""Telemetry access-log providers envoyHttpAls, envoyTcpAls and envoyOtelAls through a real mesh.

The test runs its own collectors on 127.0.0.1 (one gRPC server: Envoy's AccessLogService and OTLP's
LogsService) and makes them mesh services with a ServiceEntry, as Istio's suites deploy an ALS / OTel
collector; a mesh-wide Telemetry enables the three providers. Requests from `client` to `server` cross
two sidecars, and each collector must receive their entries under the provider's log name, with the
headers, body and attributes the provider asks for. Waits poll the collectors (bounded).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, echo_body, wait_for

pytestmark = pytest.mark.e2e

ALS_HOST = "als.logs.test"
OTEL_HOST = "otel.logs.test"
SERVER_HOST = "server.default.svc.cluster.local"
OTLP_LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  extensionProviders:
  - name: http-als
    envoyHttpAls:
      service: {als}
      port: {port}
      additionalRequestHeadersToLog: [x-test-id]
      additionalResponseHeadersToLog: [content-type]
  - name: tcp-als
    envoyTcpAls: {{service: {als}, port: {port}, logName: my-tcp-log}}
  - name: otel
    envoyOtelAls:
      service: istio-system/{otel}
      port: {port}
      logFormat:
        text: "%REQ(X-TEST-ID)% %RESPONSE_CODE%"
        labels: {{test_id: "%REQ(X-TEST-ID)%", code: "%RESPONSE_CODE%"}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  accessLogging:
  - providers: [{{name: http-als}}, {{name: tcp-als}}, {{name: otel}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: server-filter, namespace: default}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  accessLogging:
  - providers: [{{name: http-als}}]
    filter: {{expression: "!request.headers['x-test-id'].startsWith('drop-')"}}
  - providers: [{{name: tcp-als}}, {{name: otel}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: log-collectors, namespace: istio-system}}
spec:
  hosts: [{als}, {otel}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: v1
kind: Service
metadata: {{name: server}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: tcp, port: 9000, targetPort: 9000}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: server, labels: {{app: server, version: v1}}}}
spec: {{ports: [8080, 9000], command: [isthmus, echo, --tcp, "9000"]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: client, labels: {{app: client, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
"""


# --- the collectors ------------------------------------------------------------------------------------


@dataclass
class Sink:
    """What the collectors received: ALS entries by log name, and OTLP log records."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    http: list[tuple[str, Any]] = field(default_factory=list)  # (log name, HTTPAccessLogEntry)
    tcp: list[tuple[str, Any]] = field(default_factory=list)  # (log name, TCPAccessLogEntry)
    otel: list[tuple[Any, Any]] = field(default_factory=list)  # (Resource, LogRecord)

    def add_als(self, messages: Iterable[als_pb2.StreamAccessLogsMessage]) -> None:
        log_name = ""
        for msg in messages:
            # Envoy sends the identifier (with the log name) on the first message of each stream only.
            if msg.HasField("identifier"):
                log_name = msg.identifier.log_name
            with self.lock:
                self.http.extend((log_name, e) for e in msg.http_logs.log_entry)
                self.tcp.extend((log_name, e) for e in msg.tcp_logs.log_entry)

    def snapshot(self, kind: str) -> list[tuple[str, Any]]:
        with self.lock:
            return list(getattr(self, kind))

    def add_otlp(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        with self.lock:
            for resource_logs in request.resource_logs:
                # The installed OTLP protos are old: ResourceLogs field 2 (scope_logs today) is named
                # instrumentation_library_logs there, with the same wire shape.
                for scope_logs in resource_logs.instrumentation_library_logs:
                    self.otel.extend((resource_logs.resource, r) for r in scope_logs.logs)


class _AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def StreamAccessLogs(self, request_iterator: Any, context: Any) -> als_pb2.StreamAccessLogsResponse:
        self.sink.add_als(request_iterator)
        return als_pb2.StreamAccessLogsResponse()


def _otlp_handler(sink: Sink) -> grpc.GenericRpcHandler:
    """OTLP's LogsService/Export (the package ships no *_pb2_grpc stubs for it)."""

    def export(request: logs_service_pb2.ExportLogsServiceRequest, context: Any) -> Any:
        sink.add_otlp(request)
        return logs_service_pb2.ExportLogsServiceResponse()

    return grpc.method_handlers_generic_handler(
        OTLP_LOGS_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=logs_service_pb2.ExportLogsServiceRequest.FromString,
                response_serializer=logs_service_pb2.ExportLogsServiceResponse.SerializeToString,
            )
        },
    )


@pytest.fixture(scope="module")
def collectors() -> Iterator[tuple[int, Sink]]:
    sink = Sink()
    # Envoy keeps one stream open per logger and thread: leave room for many.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(_AccessLogService(sink), server)
    server.add_generic_rpc_handlers((_otlp_handler(sink),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, sink
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, collectors: tuple[int, Sink]) -> Iterator[MeshProcess]:
    yaml = MESH.format(als=ALS_HOST, otel=OTEL_HOST, port=collectors[0])
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("telemetry-als"), yaml) as m:
        yield m


# --- helpers -------------------------------------------------------------------------------------------


def call(mesh: MeshProcess, test_id: str) -> None:
    """client -> server (HTTP) through both sidecars, tagged with `test_id`."""
    echo_body(mesh.curl("client", "http://server/als", headers=[("x-test-id", test_id)]))


def http_entries(sink: Sink, test_id: str) -> list[tuple[str, Any]]:
    return [
        (name, e)
        for name, e in sink.snapshot("http")
        if e.request.request_headers.get("x-test-id") == test_id
    ]


def server_entries(sink: Sink, test_id: str) -> list[Any]:
    """The server sidecar's (inbound) HTTP entries of a request."""
    return [
        e
        for _, e in http_entries(sink, test_id)
        if e.common_properties.upstream_cluster.startswith("inbound|")
    ]


def otel_records(sink: Sink, test_id: str) -> list[tuple[Any, Any]]:
    return [(name, r) for name, r in sink.snapshot("otel") if r.body.string_value.startswith(f"{test_id} ")]


def attributes(record: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in record.attributes}


# --- cases ---------------------------------------------------------------------------------------------


def test_http_als_receives_both_sidecars_entries(mesh: MeshProcess, collectors: tuple[int, Sink]) -> None:
    _, sink = collectors
    test_id = uuid.uuid4().hex
    call(mesh, test_id)
    # The client's outbound HCM and the server's inbound HCM each log the request.
    wait_for("two HTTP ALS entries of the request", lambda: len(http_entries(sink, test_id)) >= 2 or None)
    entries = http_entries(sink, test_id)
    assert {name for name, _ in entries} == {"http_envoy_accesslog"}
    clusters = {e.common_properties.upstream_cluster for _, e in entries}
    assert f"outbound|80||{SERVER_HOST}" in clusters
    for _, e in entries:
        assert e.response.response_code.value == 200
        assert e.request.path == "/als"
        # additionalRequestHeadersToLog / additionalResponseHeadersToLog
        assert e.request.request_headers["x-test-id"] == test_id
        assert e.response.response_headers["content-type"].startswith("application/json")


def test_otel_als_receives_body_and_attributes(mesh: MeshProcess, collectors: tuple[int, Sink]) -> None:
    _, sink = collectors
    test_id = uuid.uuid4().hex
    call(mesh, test_id)
    wait_for("two OTLP log records of the request", lambda: len(otel_records(sink, test_id)) >= 2 or None)
    for resource, record in otel_records(sink, test_id):
        # disableBuiltinLabels (as istiod): no log_name / node_name / cluster_name resource attributes,
        # so the log name travels nowhere in OTLP; only the provider's labels are attributes.
        assert not resource.attributes
        assert record.body.string_value == f"{test_id} 200"
        assert attributes(record) == {"code": "200", "test_id": test_id}


def test_tcp_als_receives_tcp_proxy_entries(mesh: MeshProcess, collectors: tuple[int, Sink]) -> None:
    _, sink = collectors
    before = len(sink.snapshot("tcp"))
    line = f"ping {uuid.uuid4().hex}"
    resp = sync.request(f"tcp://{SERVER_HOST}:9000", proxy=mesh.proxy_url("client"), body=line, timeout=10)
    assert resp.status == 200 and line in resp.text, (resp.status, resp.text)

    def server_tcp_entries() -> list[tuple[str, Any]]:
        return [
            (name, e)
            for name, e in sink.snapshot("tcp")[before:]
            if name == "my-tcp-log" and e.common_properties.upstream_cluster == "inbound|9000||"
        ]

    entries = wait_for("the server's inbound TCP proxy entry under logName my-tcp-log", server_tcp_entries)
    assert all(name == "my-tcp-log" for name, _ in entries)


def test_cel_filter_keeps_only_matching_requests(mesh: MeshProcess, collectors: tuple[int, Sink]) -> None:
    """The server's workload Telemetry filters http-als with CEL; the client's logger is unfiltered.
    (Set from the start: after an LDS update, pooled connections keep the old listener config while it
    drains, so a filter applied mid-test would not reliably cover the next request.)"""
    _, sink = collectors
    dropped, kept = f"drop-{uuid.uuid4().hex}", f"keep-{uuid.uuid4().hex}"
    call(mesh, dropped)
    call(mesh, kept)
    wait_for("the server's entry of the kept request", lambda: server_entries(sink, kept) or None)
    # The client's entry of the dropped request proves that one was logged by then (same flush
    # interval); the server's filter left it out.
    wait_for("the client's entry of the dropped request", lambda: http_entries(sink, dropped) or None)
    assert server_entries(sink, dropped) == []
