"""Istio's telemetry integration suites, stats side, on one real mesh (Envoy sidecars, ALS-fed metrics).

Inventory of istio/istio tests/integration/telemetry (stats) and where each assertion lives in Isthmus
(E = tests/e2e/test_istio_telemetry_cases.py, B = test_bookinfo_telemetry.py, P = test_proxy_metrics.py,
U = tests/unit/telemetry/..., here = this module):
- api/stats_test.go (= common/stats.go, envoyfilter/nullvm/stats_filter_test.go):
  TestStatsFilter buildQuery both reporters: E (permissive), here under the mesh-wide STRICT
  PeerAuthentication the test applies; buildOutOfMeshServerQuery (naked): E, here under STRICT;
  ValidateBucket (DefaultBucketCount 20 `le` values): here; mockprom-to-metrics (OUTPUT_CERTS, a pod's
  :15014 over mTLS): n/a, Isthmus serves metrics from the control plane.
  TestStatsTCPFilter buildTCPQuery: E. TestStatsGatewayServerTCPFilter (sidecar -> egress gateway over
  ISTIO_MUTUAL TLS, buildGatewayTCPServerQuery): here. TestGRPCCountMetrics
  (istio_request/response_messages_total): here with a real gRPC server (P: the in-proxy module's).
- api/customize_metrics_test.go TestCustomizeMetrics: REMOVE source_principal and the literal
  custom_dimension: E; the gRPC request's labels under the same override: U test_istio_stats_more_parity;
  response_code/request_operation/grpc_response_status from attributegen (Wasm) values and the
  statsHistogramBuckets annotation (10 buckets): n/a (no Wasm, no pod annotations).
- outboundtrafficpolicy (traffic_allow_any_test.go, traffic_registry_only_test.go, helper.go): HTTP and
  TCP PassthroughCluster / BlackHoleCluster: E; "HTTP H2 Traffic": here; "HTTP Traffic Egress" (both
  modes, destination_service_name="istio-egressgateway"): here; "TCP Conflict" (a port an HTTP
  ServiceEntry also declares): here; HTTPS cases: the same CONNECT tunnels as TCP (E, here).
- Telemetry API metrics overrides / disable per mode: E, U test_telemetry_api.
- api/istioctl_metrics_test.go (`istioctl x metrics`), dashboard_test.go (Grafana), metrics_port_test.go
  and multiport_metrics_test.go (pilot-agent ports 15020/15090/15091), wasm/lua/ecds/attributegen,
  policy (rate limit), metadataexchange (an ALS sink reading Wasm filter state): n/a for Isthmus's
  stats (no such component); their label outcomes are what E and this module check.
- istio/proxy istio_stats.cc label rules: E, B, U test_istio_stats_parity, U test_istio_stats_more_parity
  (the reporting proxy's own unset app/version are "", its peer's "unknown"; a ServiceEntry's own
  endpoint at a pod's address carries the entry's endpoint metadata, not the pod's).

Adaptations: sidecars are explicit proxies, so "the destination the client does not know" is a pod
address; TCP rides CONNECT tunnels; gRPC is a grpcio client speaking h2c to the client's outbound port
with the service as :authority, and a grpcio server as the workload.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from isthmus.telemetry import istio
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied
from tests.e2e.test_istio_telemetry_cases import Samples, grown, only, scrape, wait_grown
from tests.e2e.test_istio_traffic_cases import h2c_get

pytestmark = pytest.mark.e2e

NS = "default"
TD = "cluster.local"
EGRESS = "istio-egressgateway"
EGRESS_FQDN = f"{EGRESS}.istio-system.svc.cluster.local"

# A gRPC server (unary /isthmus.Echo/Call returns its request) on the port the mesh gives the app.
GRPC_SERVER = """
import os, grpc
from concurrent import futures
def call(req, ctx):
    return req
handler = grpc.method_handlers_generic_handler(
    "isthmus.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)})
server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[handler])
server.add_insecure_port("127.0.0.1:" + os.environ["PORT"])
server.start()
server.wait_for_termination()
"""

MESH = f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: b}}
spec:
  selector: {{app: b}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: b-v1, labels: {{app: b, version: v1}}}}
spec: {{serviceAccount: b, ports: [8080], command: [isthmus, echo]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: a-v1, labels: {{app: a, version: v1}}}}
spec: {{serviceAccount: a, ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: naked}}
spec:
  selector: {{app: naked}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: naked, labels: {{app: naked, version: v1}}}}
spec: {{ports: [8080, 9091], sidecar: false, command: [isthmus, echo, --tcp, "9091"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: g}}
spec:
  selector: {{app: g}}
  ports: [{{name: grpc, port: 7070, targetPort: 7070}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: g-v1, labels: {{app: g, version: v1}}}}
spec:
  serviceAccount: g
  ports: [7070]
  command: [{sys.executable}, -c, {json.dumps(GRPC_SERVER)}]
---
apiVersion: v1
kind: Service
metadata: {{name: {EGRESS}, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  ports: [{{name: http2, port: 80, targetPort: 8080}}, {{name: https, port: 443, targetPort: 8443}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: {EGRESS}
  namespace: istio-system
  labels: {{istio: egressgateway, app: {EGRESS}}}
spec: {{gateway: true}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: http-conflicts}}
spec:
  hosts: [istio.io]
  location: MESH_EXTERNAL
  ports:
  - {{name: http-for-https, number: 9443, protocol: HTTP}}
  - {{name: http-for-tcp, number: 9091, protocol: HTTP}}
  resolution: DNS
"""

REGISTRY_ONLY = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a-registry-only, namespace: default}
spec:
  workloadSelector: {labels: {app: a}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""

Labels = dict[str, str]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-stats"), MESH) as m:
        yield m


def principal(sa: str, ns: str = NS) -> str:
    return f"spiffe://{TD}/ns/{ns}/sa/{sa}"


def svc(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local"


def subset(labels: Labels, keys: Labels) -> Labels:
    return {k: labels.get(k, "<absent>") for k in keys}


A_SOURCE = {
    "source_workload": "a-v1",
    "source_canonical_service": "a",
    "source_canonical_revision": "v1",
    "source_workload_namespace": NS,
    "source_app": "a",
    "source_version": "v1",
    "source_cluster": "Kubernetes",
}


def grpc_call(mesh: MeshProcess, client: str, authority: str, payload: bytes) -> bytes:
    """One unary gRPC call through `client`'s sidecar: h2c to its outbound port, routed by :authority."""
    import grpc

    target = mesh.proxy_url(client).removeprefix("http://")
    options = [("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary("/isthmus.Echo/Call")
        return call(payload, timeout=10)


# --- stats_test.go TestStatsFilter under STRICT mTLS, ValidateBucket -----------------------------------------


def test_stats_filter_under_strict_mtls(mesh: MeshProcess) -> None:
    """TestStatsFilter: with a mesh-wide STRICT PeerAuthentication, buildQuery's labels from both reporters
    over mTLS, buildOutOfMeshServerQuery's from the client (naked has no sidecar: auto mTLS sends it
    plaintext), and ValidateBucket's 20 `le` values (Envoy's default buckets and +Inf)."""
    before = scrape(mesh)
    for _ in range(2):
        assert mesh.curl("a-v1", "http://b/stats").status == 200
    assert mesh.curl("a-v1", "http://naked/stats").status == 200
    want = {
        "request_protocol": "http",
        "response_code": "200",
        "destination_app": "b",
        "destination_version": "v1",
        "destination_service": svc("b"),
        "destination_service_name": "b",
        "destination_workload_namespace": NS,
        "destination_service_namespace": NS,
        **A_SOURCE,
    }
    for reporter in ("source", "destination"):
        got = only(
            wait_grown(
                mesh, before, "istio_requests_total", 2, reporter=reporter, destination_service_name="b"
            )
        )
        assert subset(got, want) == want, reporter
        # STRICT: both sides hold the peer's certificate; only the server knows the policy.
        assert (got["source_principal"], got["destination_principal"]) == (principal("a"), principal("b"))
        policy = "mutual_tls" if reporter == "destination" else "unknown"
        assert got["connection_security_policy"] == policy, got
    naked = only(wait_grown(mesh, before, "istio_requests_total", 1, destination_service_name="naked"))
    want_naked = {
        **{k: v for k, v in want.items() if not k.startswith("destination_")},
        "reporter": "source",
        "destination_app": "unknown",  # endpoint metadata: no app, no version
        "destination_version": "unknown",
        "destination_service": svc("naked"),
        "destination_service_name": "naked",
        "destination_workload": "naked",
        "destination_workload_namespace": NS,
        "destination_service_namespace": NS,
        "destination_principal": "unknown",  # plaintext to a pod without a sidecar
    }
    assert subset(naked, want_naked) == want_naked
    after = scrape(mesh)
    bucket = "istio_request_duration_milliseconds_bucket"
    les = {
        dict(labels)["le"]
        for (name, labels), _ in after.items()
        if name == bucket
        and {("source_app", "a"), ("reporter", "source"), ("response_code", "200")} <= labels
    }
    assert len(les) == 20, sorted(les)
    assert les == {*istio.BUCKET_LABELS, "+Inf"}


# --- stats_test.go TestGRPCCountMetrics -------------------------------------------------------------------


def test_grpc_count_metrics(mesh: MeshProcess) -> None:
    """buildGRPCQuery: istio_request_messages_total and istio_response_messages_total carry the destination
    labels (Kiali needs them); each unary call is one message each way, reported by both sides."""
    before = scrape(mesh)
    for i in range(2):
        assert grpc_call(mesh, "a-v1", "g:7070", b"ping-%d" % i) == b"ping-%d" % i
    want = {
        "destination_app": "g",
        "destination_version": "v1",
        "destination_service": svc("g"),
        "destination_service_name": "g",
        "destination_workload_namespace": NS,
        "destination_service_namespace": NS,
        "request_protocol": "grpc",
        "response_code": "200",
        "grpc_response_status": "0",
    }
    for metric in ("istio_request_messages_total", "istio_response_messages_total", "istio_requests_total"):
        for reporter in ("source", "destination"):
            got = only(wait_grown(mesh, before, metric, 2, reporter=reporter, destination_service_name="g"))
            assert subset(got, want) == want, (metric, reporter)


# --- outboundtrafficpolicy: H2 passthrough, egress gateway, conflict ports ----------------------------------


def test_http2_passthrough_is_http(mesh: MeshProcess) -> None:
    """traffic_allow_any_test.go "HTTP H2 Traffic": PassthroughCluster, and HTTP/2 is request_protocol
    "http" (only gRPC is "grpc")."""
    naked_ip = mesh.instance("naked")["ip"]
    before = scrape(mesh)
    status, body = h2c_get(mesh.proxy_url("a-v1"), f"{naked_ip}:8080", "/h2-passthrough")
    assert status == 200 and body["path"] == "/h2-passthrough", body
    got = only(
        wait_grown(mesh, before, "istio_requests_total", 1, destination_service_name="PassthroughCluster")
    )
    want = {"reporter": "source", "request_protocol": "http", "response_code": "200", **A_SOURCE}
    assert subset(got, want) == want
    assert got["destination_service"] == f"{naked_ip}:8080", got


def egress_route(naked_ip: str) -> str:
    """helper.go's Gateway: HTTP for some-external-site.com from sidecars goes to the egress gateway, which
    adds `handled-by-egress-gateway` and sends it to the ServiceEntry's endpoint (naked)."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: {EGRESS}, namespace: default}}
    spec:
      selector: {{istio: egressgateway}}
      servers:
      - port: {{number: 80, name: http, protocol: HTTP}}
        hosts: [some-external-site.com]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: route-via-egressgateway, namespace: default}}
    spec:
      hosts: [some-external-site.com]
      gateways: [{EGRESS}, mesh]
      http:
      - match: [{{gateways: [mesh], port: 80}}]
        route: [{{destination: {{host: {EGRESS_FQDN}, port: {{number: 80}}}}, weight: 100}}]
      - match: [{{gateways: [{EGRESS}], port: 80}}]
        route: [{{destination: {{host: some-external-site.com}}, weight: 100}}]
        headers: {{request: {{add: {{handled-by-egress-gateway: "true"}}}}}}
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: some-external-site, namespace: default}}
    spec:
      hosts: [some-external-site.com]
      location: MESH_EXTERNAL
      endpoints: [{{address: {naked_ip}, ports: {{http: 8080}}}}]
      ports: [{{number: 80, name: http}}]
      resolution: STATIC
    """


def _egress_case(mesh: MeshProcess, tag: str) -> tuple[Labels, Labels, Samples]:
    before = scrape(mesh)
    resp = mesh.curl("a-v1", f"http://some-external-site.com/{tag}")
    assert resp.status == 200, resp
    assert b"handled-by-egress-gateway" in resp.body, resp.body
    client = only(
        wait_grown(
            mesh, before, "istio_requests_total", 1, source_workload="a-v1", destination_service_name=EGRESS
        )
    )
    gateway = only(
        wait_grown(
            mesh,
            before,
            "istio_requests_total",
            1,
            source_workload=EGRESS,
            reporter="source",
            response_code="200",
        )
    )
    return client, gateway, before


@pytest.mark.parametrize("mode", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_http_traffic_through_the_egress_gateway(mesh: MeshProcess, mode: str) -> None:
    """ "HTTP Traffic Egress": the client counts the request under destination_service_name
    "istio-egressgateway" with the gateway as its peer (metadata exchange: app, canonical service; no
    version label, so "unknown" and the canonical revision "latest"); the gateway reports it as a client
    only (router gateways have no reporter="destination"), its own unset version as "", and its
    destination as the ServiceEntry endpoint's metadata has it."""
    naked_ip = mesh.instance("naked")["ip"]
    docs = [egress_route(naked_ip)] + ([REGISTRY_ONLY] if mode == "REGISTRY_ONLY" else [])
    with applied(mesh, *docs):
        client, gateway, before = _egress_case(mesh, f"egress-{mode.lower()}")
        after = scrape(mesh)
    want_client = {
        "reporter": "source",
        **A_SOURCE,
        "response_code": "200",
        "destination_service": EGRESS_FQDN,
        "destination_service_name": EGRESS,
        "destination_service_namespace": "istio-system",
        "destination_workload": EGRESS,
        "destination_workload_namespace": "istio-system",
        "destination_app": EGRESS,
        "destination_version": "unknown",
        "destination_canonical_service": EGRESS,
        "destination_canonical_revision": "latest",
    }
    assert subset(client, want_client) == want_client
    want_gateway = {
        "source_workload": EGRESS,
        "source_workload_namespace": "istio-system",
        "source_app": EGRESS,
        "source_version": "",
        "source_canonical_service": EGRESS,
        "source_canonical_revision": "latest",
        "destination_service": "some-external-site.com",
        "destination_service_name": "some-external-site.com",
        "destination_principal": "unknown",  # plaintext to a pod without a sidecar
        # The ServiceEntry's own endpoint (naked's address): its metadata names no workload and no
        # namespace, whatever pod has that address (no sidecar there, so no metadata exchange either).
        "destination_workload": "unknown",
        "destination_workload_namespace": "unknown",
        "destination_canonical_service": "unknown",
        "destination_canonical_revision": "latest",
        "destination_service_namespace": "unknown",
    }
    assert subset(gateway, want_gateway) == want_gateway
    assert not grown(
        after, before, "istio_requests_total", reporter="destination", destination_workload=EGRESS
    )


@pytest.mark.parametrize(
    ("mode", "metric", "service_name"),
    [
        ("ALLOW_ANY", "istio_tcp_connections_opened_total", "PassthroughCluster"),
        ("REGISTRY_ONLY", "istio_tcp_connections_closed_total", "BlackHoleCluster"),
    ],
)
def test_tcp_to_a_port_an_http_service_entry_declares(
    mesh: MeshProcess, mode: str, metric: str, service_name: str
) -> None:
    """ "TCP Conflict": TCP to an unknown address on 9091, a port the istio.io ServiceEntry declares as
    HTTP: still passthrough (ALLOW_ANY) or blackhole (REGISTRY_ONLY), counted as TCP from the client."""
    naked_ip = mesh.instance("naked")["ip"]
    docs = [REGISTRY_ONLY] if mode == "REGISTRY_ONLY" else []
    with applied(mesh, *docs) if docs else contextlib.nullcontext():
        before = scrape(mesh)
        resp = sync.request(f"tcp://{naked_ip}:9091", proxy=mesh.proxy_url("a-v1"), body="ping")
        if mode == "ALLOW_ANY":
            assert resp.status == 200 and b"ping" in resp.body, resp
        else:
            assert resp.status != 200 or not resp.body, resp
        got = only(
            wait_grown(
                mesh,
                before,
                metric,
                1,
                reporter="source",
                source_workload="a-v1",
                destination_service_name=service_name,
            )
        )
    assert got["request_protocol"] == "tcp", got


# --- stats_test.go TestStatsGatewayServerTCPFilter ---------------------------------------------------------

SERVER_SVC = "server.default.svc"


def mtls_to_egress_gateway(naked_ip: str) -> str:
    """testdata/istio-mtls-{dest-rule,gateway,vs}.yaml and external-service-entry.yaml: TLS for
    server.default.svc goes from the sidecar to the egress gateway over ISTIO_MUTUAL, which forwards it as
    TCP to the external server (here a TLS server on naked's address, the ServiceEntry's endpoint)."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: egressgateway-for-external-app, namespace: default}}
    spec:
      host: {EGRESS_FQDN}
      trafficPolicy:
        portLevelSettings:
        - port: {{number: 443}}
          tls: {{mode: ISTIO_MUTUAL, sni: {SERVER_SVC}}}
    ---
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: {EGRESS}, namespace: default}}
    spec:
      selector: {{istio: egressgateway}}
      servers:
      - port: {{number: 443, name: mtls-tcp, protocol: TLS}}
        hosts: [{SERVER_SVC}]
        tls: {{mode: ISTIO_MUTUAL}}
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: direct-cnn-through-egress-gateway, namespace: default}}
    spec:
      hosts: [{SERVER_SVC}]
      gateways: [{EGRESS}, mesh]
      tls:
      - match: [{{gateways: [mesh], port: 443, sniHosts: [{SERVER_SVC}]}}]
        route: [{{destination: {{host: {EGRESS_FQDN}, port: {{number: 443}}}}}}]
      tcp:
      - match: [{{gateways: [{EGRESS}], port: 443}}]
        route: [{{destination: {{host: {SERVER_SVC}, port: {{number: 443}}}}}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: server-default-svc, namespace: default}}
    spec:
      hosts: [{SERVER_SVC}]
      location: MESH_EXTERNAL
      resolution: STATIC
      endpoints: [{{address: {naked_ip}, ports: {{https: 8443}}}}]
      ports: [{{name: https, number: 443, protocol: HTTPS}}]
    """


def https_through_tunnel(mesh: MeshProcess, ca: t.Pem) -> dict[str, object]:
    """The client's HTTPS call: CONNECT server.default.svc:443 through a's sidecar, TLS inside."""
    p = mesh.proxy("a-v1")
    target = f"{SERVER_SVC}:443"
    with socket.create_connection((p["ip"], p["outboundPort"]), timeout=10) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = t.read_head(raw)
        assert head.split(b" ", 2)[1] == b"200", head
        ctx = ssl.create_default_context(cadata=ca.cert.decode())
        with ctx.wrap_socket(raw, server_hostname=SERVER_SVC) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {SERVER_SVC}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_stats_gateway_server_tcp_filter(mesh: MeshProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    """buildGatewayTCPServerQuery: the client's TCP connection to the egress gateway (ISTIO_MUTUAL, so
    the TCP metadata exchange names the gateway) counts under the gateway's labels."""
    naked_ip = mesh.instance("naked")["ip"]
    ca = t.make_ca("external root")
    server = t.issue(ca, [SERVER_SVC])
    with (
        t.TlsServer(naked_ip, 8443, server, tmp_path_factory.mktemp("external-tls")),
        applied(mesh, mtls_to_egress_gateway(naked_ip)),
    ):
        before = scrape(mesh)
        answer = https_through_tunnel(mesh, ca)
        assert answer["sni"] == SERVER_SVC, answer
        got = only(
            wait_grown(
                mesh,
                before,
                "istio_tcp_connections_opened_total",
                1,
                reporter="source",
                source_workload="a-v1",
                destination_service_name=EGRESS,
            )
        )
    want = {
        "request_protocol": "tcp",
        "destination_service_name": EGRESS,
        "destination_canonical_revision": "latest",
        "destination_canonical_service": EGRESS,
        "destination_app": EGRESS,
        "destination_version": "unknown",
        "destination_workload_namespace": "istio-system",
        "destination_service_namespace": "istio-system",
        **A_SOURCE,
    }
    assert subset(got, want) == want
