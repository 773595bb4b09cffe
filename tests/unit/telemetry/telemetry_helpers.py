"""Synthetic gRPC access-log entries and a small mesh, as the telemetry tests need them."""

from __future__ import annotations

from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.service.accesslog.v3 import als_pb2

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.telemetry import accesslog
from isthmus.telemetry.envoy import GRPC_STATS_FILTER, LOG_NAMES
from isthmus.telemetry.resolver import ServiceInfo, StaticResolver, Workload

PRODUCTPAGE_IP = "127.1.0.2"
REVIEWS_IP = "127.1.0.3"
GATEWAY_IP = "127.1.0.4"
OUTSIDER_IP = "127.1.0.9"  # a pod without sidecar
REVIEWS_HOST = "reviews.default.svc.cluster.local"
REVIEWS_CLUSTER = f"outbound|9080|v2|{REVIEWS_HOST}"
PP_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
REVIEWS_PRINCIPAL = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"

PRODUCTPAGE = Proxy(
    id=Proxy.node_id("sidecar", PRODUCTPAGE_IP, "productpage-v1-0", "default"),
    kind="sidecar",
    ip=PRODUCTPAGE_IP,
    namespace="default",
    instance="productpage-v1-0",
    workload="productpage-v1",
    labels={"app": "productpage", "version": "v1"},
    service_account="bookinfo-productpage",
)
REVIEWS = Proxy(
    id=Proxy.node_id("sidecar", REVIEWS_IP, "reviews-v2-0", "default"),
    kind="sidecar",
    ip=REVIEWS_IP,
    namespace="default",
    instance="reviews-v2-0",
    workload="reviews-v2",
    labels={"app": "reviews", "version": "v2"},
    service_account="bookinfo-reviews",
)
GATEWAY = Proxy(
    id=Proxy.node_id("gateway", GATEWAY_IP, "istio-ingressgateway-0", "istio-system"),
    kind="gateway",
    ip=GATEWAY_IP,
    namespace="istio-system",
    instance="istio-ingressgateway-0",
    workload="istio-ingressgateway",
    labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
    service_account="istio-ingressgateway-service-account",
)

# The tracing collectors are Services: istiod finds a tracer's collector in the registry (LookupCluster).
MESH_YAML = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext, namespace: default}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: zipkin, namespace: istio-system}
spec:
  ports: [{name: http-query, port: 9411}]
---
apiVersion: v1
kind: Service
metadata: {name: zipkin2, namespace: istio-system}
spec:
  ports: [{name: http-query, port: 9411}]
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: istio-system}
spec:
  ports: [{name: grpc-otlp, port: 4317}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-ratings, namespace: default}
spec:
  address: 10.9.9.9
  labels: {app: ratings, version: v9}
  serviceAccount: ratings-vm
"""


def pods() -> list[Pod]:
    return [
        Pod(
            name="productpage-v1-0",
            namespace="default",
            ip=PRODUCTPAGE_IP,
            labels={"app": "productpage", "version": "v1"},
            workload="productpage-v1",
            service_account="bookinfo-productpage",
            app_ports={9080: 41001},
        ),
        Pod(
            name="reviews-v2-0",
            namespace="default",
            ip=REVIEWS_IP,
            labels={"app": "reviews", "version": "v2"},
            workload="reviews-v2",
            service_account="bookinfo-reviews",
            app_ports={9080: 41002},
        ),
        Pod(
            name="istio-ingressgateway-0",
            namespace="istio-system",
            ip=GATEWAY_IP,
            labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
            workload="istio-ingressgateway",
            service_account="istio-ingressgateway-service-account",
            sidecar=False,
            gateway=True,
        ),
        Pod(
            name="legacy-0",
            namespace="legacy",
            ip=OUTSIDER_IP,
            labels={"app": "legacy"},
            workload="legacy",
            sidecar=False,
        ),
    ]


def snapshot(extra_yaml: str = "") -> Snapshot:
    store = Store()
    store.apply(
        loader.load_text(MESH_YAML + ("---\n" + extra_yaml if extra_yaml else ""), "mesh.yaml"), "test"
    )
    for pod in pods():
        store.upsert_pod(pod)
    return Snapshot.build(store.version, store.list(), store.pods())


def static_resolver() -> StaticResolver:
    reviews = ServiceInfo(REVIEWS_HOST, "reviews", "default")
    return StaticResolver(
        workloads={
            PRODUCTPAGE_IP: Workload(
                "productpage-v1", "default", {"app": "productpage", "version": "v1"}, "bookinfo-productpage"
            ),
            REVIEWS_IP: Workload(
                "reviews-v2", "default", {"app": "reviews", "version": "v2"}, "bookinfo-reviews"
            ),
            GATEWAY_IP: Workload(
                "istio-ingressgateway",
                "istio-system",
                {"app": "istio-ingressgateway"},
                "istio-ingressgateway-service-account",
            ),
            OUTSIDER_IP: Workload("legacy", "legacy", {"app": "legacy"}, None, has_proxy=False),
        },
        services=[reviews, ServiceInfo("productpage.default.svc.cluster.local", "productpage", "default")],
        inbound={(REVIEWS.id, 9080): reviews},
    )


def _addr(msg: Any, hostport: str | None) -> None:
    if not hostport:
        return
    host, _, port = hostport.rpartition(":")
    msg.socket_address.address = host
    msg.socket_address.port_value = int(port)


def http_entry(
    *,
    cluster: str = REVIEWS_CLUSTER,
    upstream: str | None = f"{REVIEWS_IP}:9080",
    downstream: str | None = "127.0.0.1:50000",
    local: str | None = f"{PRODUCTPAGE_IP}:15001",
    upstream_local: str | None = f"{PRODUCTPAGE_IP}:40000",
    code: int = 200,
    duration_ms: int = 7,
    method: int = 1,  # GET
    path: str = "/reviews/0",
    authority: str = "reviews:9080",
    request_id: str = "6b4c5a2e-6a0f-4a1e-9b1e-0e1f2a3b4c5d",
    user_agent: str = "curl/8.0",
    flags: dict[str, bool] | None = None,
    tags: dict[str, str] | None = None,
    peer_san: str = "",
    local_san: str = "",
    route: str = "default",
    wire: tuple[int, int] = (120, 340),
    body: tuple[int, int] = (0, 178),
    grpc_messages: tuple[int, int] | None = None,
    start_ms: int = 1_700_000_000_123,
    details: str = "via_upstream",
    log_type: int = al.DownstreamEnd,
    response_headers: dict[str, str] | None = None,
    trailers: dict[str, str] | None = None,
) -> al.HTTPAccessLogEntry:
    e = al.HTTPAccessLogEntry(protocol_version=al.HTTPAccessLogEntry.HTTP11)
    c = e.common_properties
    c.access_log_type = log_type
    c.start_time.FromMilliseconds(start_ms)
    c.duration.FromMilliseconds(duration_ms)
    c.time_to_last_downstream_tx_byte.FromMilliseconds(duration_ms)
    _addr(c.upstream_remote_address, upstream)
    _addr(c.downstream_remote_address, downstream)
    _addr(c.downstream_local_address, local)
    _addr(c.upstream_local_address, upstream_local)
    c.upstream_cluster = cluster
    c.route_name = route
    c.downstream_wire_bytes_received, c.downstream_wire_bytes_sent = wire
    for name, value in (flags or {}).items():
        setattr(c.response_flags, name, value)
    if peer_san or local_san:
        if peer_san:
            c.tls_properties.peer_certificate_properties.subject_alt_name.add(uri=peer_san)
        if local_san:
            c.tls_properties.local_certificate_properties.subject_alt_name.add(uri=local_san)
        c.tls_properties.tls_version = al.TLSProperties.TLSv1_3
    for k, v in (tags or {}).items():
        c.custom_tags[k] = v
    if grpc_messages is not None:
        obj = grpc_stats_pb2.FilterObject(
            request_message_count=grpc_messages[0], response_message_count=grpc_messages[1]
        )
        c.filter_state_objects[GRPC_STATS_FILTER].Pack(obj)
    r = e.request
    r.request_method = method
    r.path = path
    r.authority = authority
    r.request_id = request_id
    r.user_agent = user_agent
    r.scheme = "http"
    r.request_body_bytes = body[0]
    e.response.response_code.value = code
    e.response.response_body_bytes = body[1]
    e.response.response_code_details = details
    for k, v in (response_headers or {}).items():
        e.response.response_headers[k] = v
    for k, v in (trailers or {}).items():
        e.response.response_trailers[k] = v
    return e


def tcp_entry(
    *,
    cluster: str = "outbound|3306||mysql.default.svc.cluster.local",
    upstream: str | None = f"{REVIEWS_IP}:3306",
    downstream: str = "127.0.0.1:50000",
    local: str = f"{PRODUCTPAGE_IP}:15001",
    sent: int = 0,
    received: int = 0,
    stream_id: str = "conn-1",
    log_type: int = al.TcpConnectionEnd,
    flags: dict[str, bool] | None = None,
) -> al.TCPAccessLogEntry:
    e = al.TCPAccessLogEntry()
    c = e.common_properties
    c.access_log_type = log_type
    c.start_time.FromSeconds(1_700_000_000)
    _addr(c.upstream_remote_address, upstream)
    _addr(c.downstream_remote_address, downstream)
    _addr(c.downstream_local_address, local)
    c.upstream_cluster = cluster
    c.stream_id = stream_id
    for name, value in (flags or {}).items():
        setattr(c.response_flags, name, value)
    e.connection_properties.sent_bytes = sent
    e.connection_properties.received_bytes = received
    return e


def message(
    proxy: Proxy | None,
    direction: str,
    http: list[al.HTTPAccessLogEntry] | None = None,
    tcp: list[al.TCPAccessLogEntry] | None = None,
) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    if proxy is not None:
        msg.identifier.log_name = LOG_NAMES[direction]
        node = msg.identifier.node
        node.id = proxy.id
        node.metadata.update(proxy.node_metadata())
    if http:
        msg.http_logs.log_entry.extend(http)
    if tcp:
        msg.tcp_logs.log_entry.extend(tcp)
    return msg


GRPC_TAGS = {accesslog.TAG_CONTENT_TYPE: "application/grpc"}


def tel(name: str, namespace: str, spec: str, ts: str | None = None) -> str:
    """A Telemetry resource (YAML) with `spec` (YAML lines), optionally with a creation timestamp."""
    meta = f"name: {name}, namespace: {namespace}"
    if ts:
        meta += f", creationTimestamp: '{ts}'"
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{{meta}}}\nspec:\n{body}\n"


def mesh(spec: str) -> str:
    """The MeshConfig resource (YAML) with `spec` (YAML lines)."""
    body = "\n".join("  " + line for line in spec.strip().splitlines())
    return f"apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec:\n{body}\n"


def snap(*docs: str) -> Snapshot:
    """The test mesh plus these YAML documents."""
    return snapshot("---\n".join(docs))


def file_logs(logs: Any) -> list[tuple[file_pb2.FileAccessLog, str | None]]:
    """The file access loggers among Envoy `AccessLog`s, each with its CEL filter expression (or None)."""
    out = []
    for log in logs:
        if log.name == "envoy.access_loggers.file":
            fal = file_pb2.FileAccessLog()
            log.typed_config.Unpack(fal)
            expr = None
            if log.HasField("filter"):
                cel = cel_pb2.ExpressionFilter()
                assert log.filter.extension_filter.name == "envoy.access_loggers.extension_filters.cel"
                log.filter.extension_filter.typed_config.Unpack(cel)
                expr = cel.expression
            out.append((fal, expr))
    return out
