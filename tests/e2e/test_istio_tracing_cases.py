"""Istio's tracing integration cases on a real mesh (real Envoy sidecars and ingress gateway).

Ported from istio/istio:
- tests/integration/telemetry/tracing/zipkin/server_tracing_test.go (TestServerTracing) and tracing.go's
  WantTraceRoot: a call client -> server makes two spans, the client sidecar's CLIENT span (the root,
  service ``client.<ns>``) and the server sidecar's SERVER span (its child, service ``server.<ns>``), both
  named by the route decorator ``server.<ns>.svc.cluster.local:80/*``;
- zipkin/client_tracing_test.go (TestClientTracing): ``x-client-trace-id`` forces a trace even where
  random sampling is 0 (Envoy's client_sampling 100%, which istiod sets);
- tracing.go's bookinfo WantTraceRoot: through the ingress gateway the gateway's span is the root
  (service ``istio-ingressgateway.istio-system``) and the server's span its child;
- otelcollector's WantOtelIngressTraceRoot and pilot's configureFromProviderConfig
  (SpawnUpstreamSpanForGateway, on by default since 1.28): with a tracing provider, a gateway makes a
  SERVER span and a child ``router outbound|80||<host> egress`` CLIENT span for its upstream call;
- zipkin/config_test.go (TestZipkinConfigDump: the gateway's Envoy config dump holds the Zipkin tracer,
  its trace context option, spawn_upstream_span, max_path_tag_length and sorted tags) and pilot's
  convertTraceContextOption: a ``zipkin`` extension provider without ``traceContextOption`` propagates B3
  only (no ``traceparent`` reaches the app); the built-in collector propagates B3 and W3C;
- pilot/pkg/networking/core/tracing_test.go: Istio's span tags (``istio.canonical_service``,
  ``istio.mesh_id``, ``istio.namespace``, ...), Telemetry ``customTags`` (literal, environment, header),
  ``enableIstioTags: false``, ``max_path_tag_length`` (Envoy's 256 by default, the provider's
  ``maxTagLength`` when set), Telemetry ``randomSamplingPercentage`` 100 vs 0 and
  ``disableSpanReporting``; Envoy's own tags ``http.status_code``, ``node_id``, ``upstream_cluster``,
  ``component: proxy``.

Departures by design: Istio's suites deploy a Zipkin server; here MeshConfig
``defaultConfig.tracing: {sampling: 100}`` sends spans to the collector built into the control plane
(read back through ``/api/traces/{id}``), where Istio since 1.22 would have no tracer at all. The
extension-provider cases use a real Zipkin-compatible collector run by this test (a ServiceEntry points
the mesh at it), as Istio's use a Zipkin deployment. The Istio namespace is ``echo-<random>``; here the
apps live in ``default``. Cases left out: OpenCensus, Stackdriver and OTel samplers (no such tracers in
Envoy 1.40 or Isthmus) and multi-cluster subtests; Datadog and SkyWalking are in test_tracing_providers.py,
the Zipkin ``timeout``/``headers`` HttpService in the unit tests. After a config change, as Istio's tests retry
traffic, requests are repeated until they run on the new config: a pooled sidecar-to-sidecar connection
keeps its listener's old HCM until Envoy drains it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.telemetry.spans import SpanStore
from tests.e2e.harness import _OPENER, MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

HOST = "server.default.svc.cluster.local"
OPERATION = f"{HOST}:80/*"  # istiod's TraceOperation / getRouteOperation for prefix "/"
OUT_CLUSTER = f"outbound|80||{HOST}"
COLLECTOR_HOST = "zipkin.tracing.test"
GATEWAY_SERVICE = "istio-ingressgateway.istio-system"

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  defaultConfig:
    tracing: {{sampling: 100}}
  extensionProviders:
  - name: test-zipkin
    zipkin: {{service: {collector}, port: {port}, maxTagLength: 64}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: zipkin-collector, namespace: istio-system}}
spec:
  hosts: [{collector}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1}}]
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
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: server-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: server}}
spec:
  hosts: ["*"]
  gateways: [server-gateway]
  http:
  - route:
    - destination: {{host: server, port: {{number: 80}}}}
"""


# --- a Zipkin collector of the test's own (Istio's suites deploy Zipkin) --------------------------------


class _Collector(BaseHTTPRequestHandler):
    store: SpanStore

    def do_POST(self) -> None:
        self.store.add(json.loads(self._body() or b"[]"))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def _body(self) -> bytes:
        """The request body; Envoy's Zipkin tracer posts it chunked (no content-length)."""
        if "chunked" not in (self.headers.get("transfer-encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("content-length") or 0))
        out = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            out += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk
        self.rfile.readline()  # the CRLF after the last (empty) chunk
        return out

    def log_message(self, *args: Any) -> None:  # quiet: Envoy posts every second
        pass


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[int, SpanStore]]:
    store = SpanStore()
    handler = type("Handler", (_Collector,), {"store": store})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], store
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, collector: tuple[int, SpanStore]) -> Iterator[MeshProcess]:
    yaml = MESH.format(collector=COLLECTOR_HOST, port=collector[0])
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-tracing"), yaml) as m:
        yield m


# --- helpers -------------------------------------------------------------------------------------------


def builtin_spans(mesh: MeshProcess, trace_id: str) -> list[dict[str, Any]]:
    """The built-in collector's spans of a trace ([] until some arrive)."""
    try:
        with _OPENER.open(f"{mesh.api}/api/traces/{trace_id}", timeout=10) as resp:
            return json.loads(resp.read())["spans"]
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
        return []


def wait_spans(fetch: Any, trace_id: str, count: int) -> list[dict[str, Any]]:
    """Poll until `count` spans of the trace arrived (Envoy's Zipkin tracer flushes every second)."""
    return wait_for(
        f"{count} spans of trace {trace_id}", lambda: (s := fetch(trace_id)) and len(s) >= count and s
    )


def stays_untraced(fetch: Any, trace_id: str, seconds: float = 2.5) -> bool:
    """No span of the trace arrives within a few flush intervals (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if fetch(trace_id):
            return False
        time.sleep(0.2)
    return True


def hcm_tracing(mesh: MeshProcess, workload: str, namespace: str) -> dict[str, Any]:
    """The tracing block of the first HCM in a proxy's Envoy config dump (admin API)."""
    p = mesh.proxy(workload, namespace=namespace)
    url = f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=dynamic_listeners"
    with _OPENER.open(url, timeout=10) as resp:
        dump = json.loads(resp.read())
    for listener in dump["configs"]:
        for chain in listener["active_state"]["listener"].get("filter_chains", []):
            for f in chain.get("filters", []):
                tracing = f.get("typed_config", {}).get("tracing")
                if tracing is not None:
                    return tracing
    raise AssertionError(f"no HCM tracing in {workload}'s config dump")


def provider_trace(store: SpanStore, headers: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Both spans of the request's trace in the test's collector, or None when one of them is missing
    after a few flush intervals (bounded)."""
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        spans = store.trace(headers["x-b3-traceid"]) or []
        if len(spans) >= 2:
            return spans
        time.sleep(0.2)
    return None


def url_path(url: str) -> str:
    """The path part of Envoy's ``http.url`` tag (scheme and host are not counted by max_path_tag_length)."""
    return url[url.index("/", len("http://")) :]


def one(spans: list[dict[str, Any]], kind: str, service: str) -> dict[str, Any]:
    found = [s for s in spans if s.get("kind") == kind and s["localEndpoint"]["serviceName"] == service]
    assert len(found) == 1, (kind, service, spans)
    return found[0]


def call(mesh: MeshProcess, path: str, headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """client -> server through both sidecars; the headers the server app received."""
    return echo_body(mesh.curl("client", f"http://server{path}", headers=headers or []))["headers"]


def through_gateway(mesh: MeshProcess, path: str) -> dict[str, Any]:
    resp = sync.request(f"http://{mesh.gateway_address(80)}{path}")
    return echo_body(resp)["headers"]


# --- cases ---------------------------------------------------------------------------------------------


def test_server_tracing_client_root_and_server_child(mesh: MeshProcess) -> None:
    """server_tracing_test.go + tracing.go WantTraceRoot, with the tags pilot's tracing_test.go sets."""
    long_path = "/server-tracing/" + "x" * 400
    headers = call(mesh, long_path)
    trace_id = headers["x-b3-traceid"]
    assert headers["traceparent"].split("-")[1] == trace_id  # built-in collector: B3 and W3C
    spans = wait_spans(lambda t: builtin_spans(mesh, t), trace_id, 2)
    assert len(spans) == 2, spans
    client = one(spans, "CLIENT", "client.default")
    server = one(spans, "SERVER", "server.default")
    assert client["name"] == server["name"] == OPERATION
    assert "parentId" not in client and server["parentId"] == client["id"]
    for span, app, cluster in ((client, "client", OUT_CLUSTER), (server, "server", "inbound|8080||")):
        tags = span["tags"]
        assert tags["istio.canonical_service"] == app, tags
        assert tags["istio.canonical_revision"] == "v1", tags
        assert tags["istio.namespace"] == "default", tags
        assert tags["istio.mesh_id"] == "cluster.local", tags
        assert tags["http.status_code"] == "200", tags
        assert tags["component"] == "proxy", tags
        assert f"~{app}-0" in tags["node_id"], tags
        assert tags["upstream_cluster"].startswith(cluster), tags
        # Envoy's default max_path_tag_length (istiod leaves it unset): the URL's path is cut at 256.
        assert tags["http.url"].startswith("http://server/server-tracing/"), tags
        assert len(url_path(tags["http.url"])) == 256, tags


def test_client_tracing_x_client_trace_id_forces_a_trace(mesh: MeshProcess) -> None:
    """client_tracing_test.go: at randomSamplingPercentage 0 only a request with x-client-trace-id is traced."""
    zero = """
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: no-sampling, namespace: default}
    spec:
      tracing: [{randomSamplingPercentage: 0}]
    """
    fetch = lambda t: builtin_spans(mesh, t)  # noqa: E731
    with applied(mesh, zero):
        untraced = call(mesh, "/client-tracing-unforced")["x-b3-traceid"]
        forced_id = str(uuid.uuid4())
        headers = call(mesh, "/client-tracing-forced", [("x-client-trace-id", forced_id)])
        spans = wait_spans(fetch, headers["x-b3-traceid"], 2)
        assert stays_untraced(fetch, untraced)
    client = one(spans, "CLIENT", "client.default")
    server = one(spans, "SERVER", "server.default")
    assert server["parentId"] == client["id"] and client["name"] == OPERATION
    assert {s["tags"]["guid:x-client-trace-id"] for s in spans} == {forced_id}


def test_ingress_gateway_span_is_the_root(mesh: MeshProcess) -> None:
    """tracing.go's bookinfo WantTraceRoot: the gateway's span is the root, the server's its child."""
    headers = through_gateway(mesh, "/ingress-tracing")
    spans = wait_spans(lambda t: builtin_spans(mesh, t), headers["x-b3-traceid"], 2)
    assert len(spans) == 2, spans
    gateway = one(spans, "CLIENT", GATEWAY_SERVICE)  # no provider: no upstream span of its own
    server = one(spans, "SERVER", "server.default")
    assert "parentId" not in gateway and server["parentId"] == gateway["id"]
    assert gateway["name"] == server["name"] == OPERATION
    assert gateway["tags"]["upstream_cluster"] == OUT_CLUSTER
    assert (gateway["tags"]["istio.canonical_service"], gateway["tags"]["istio.namespace"]) == (
        "istio-ingressgateway",
        "istio-system",
    )


def test_telemetry_provider_gateway_upstream_span_tags_and_b3(
    mesh: MeshProcess, collector: tuple[int, SpanStore]
) -> None:
    """A mesh-wide Telemetry naming the zipkin extension provider (otelcollector's ingress trace shape,
    pilot's spawn_upstream_span for gateways, provider maxTagLength, customTags, B3-only context)."""
    _, store = collector
    telemetry = """
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: mesh-default, namespace: istio-system}
    spec:
      tracing:
      - providers: [{name: test-zipkin}]
        randomSamplingPercentage: 100
        customTags:
          team: {literal: {value: tracing-e2e}}
          from-env: {environment: {name: ISTHMUS_NO_SUCH_VARIABLE, defaultValue: env-default}}
          from-header: {header: {name: x-tag-me, defaultValue: header-default}}
    """
    fetch = lambda t: store.trace(t) or []  # noqa: E731
    with applied(mesh, telemetry):
        # As Istio's tests, send traffic until the new config serves it: a pooled gateway -> server
        # connection keeps the server's old inbound HCM (B3 and W3C) until Envoy drains it. USE_B3
        # (istiod's default for a zipkin provider) leaves the app without `traceparent`.
        headers = wait_for(
            "a request served by the provider's B3-only tracer on both hops",
            lambda: "traceparent" not in (h := through_gateway(mesh, "/provider-tracing/" + "y" * 100)) and h,
        )
        trace_id = headers["x-b3-traceid"]
        spans = wait_spans(fetch, trace_id, 3)
        gateway_hcm_tracing = hcm_tracing(mesh, "istio-ingressgateway", "istio-system")
        # Again until a pooled client -> server connection no longer serves the server's old HCM (whose
        # span would go to the built-in collector).
        tag_spans = wait_for(
            "a client -> server trace in the provider's collector",
            lambda: provider_trace(store, call(mesh, "/provider-tags", [("x-tag-me", "from-request")])),
            timeout=20,
        )
    assert builtin_spans(mesh, trace_id) == []  # the provider replaced the built-in collector
    # config_test.go (TestZipkinConfigDump) and pilot's tracing.go, read from the gateway's config dump.
    zipkin = gateway_hcm_tracing["provider"]["typed_config"]
    assert gateway_hcm_tracing["provider"]["name"] == "envoy.tracers.zipkin"
    assert (
        zipkin["collector_cluster"].endswith(f"||{COLLECTOR_HOST}")
        and zipkin["collector_endpoint"] == "/api/v2/spans"
    )
    assert "trace_context_option" not in zipkin  # USE_B3, the enum's zero value
    assert gateway_hcm_tracing["spawn_upstream_span"] is True
    assert gateway_hcm_tracing["max_path_tag_length"] == 64
    names = [t["tag"] for t in gateway_hcm_tracing["custom_tags"]]
    assert names == sorted(names) and "istio.authorization.dry_run.allow_policy.name" in names, names
    assert len(spans) == 3, spans
    gw_server = one(spans, "SERVER", GATEWAY_SERVICE)
    gw_client = one(spans, "CLIENT", GATEWAY_SERVICE)
    server = one(spans, "SERVER", "server.default")
    assert "parentId" not in gw_server and gw_server["name"] == OPERATION
    assert gw_client["parentId"] == gw_server["id"]
    assert gw_client["name"] == f"router {OUT_CLUSTER} egress", gw_client
    assert server["parentId"] == gw_client["id"] and server["name"] == OPERATION
    assert len(url_path(server["tags"]["http.url"])) == 64  # the provider's maxTagLength
    for span in spans:
        tags = span["tags"]
        assert (tags["team"], tags["from-env"], tags["from-header"]) == (
            "tracing-e2e",
            "env-default",
            "header-default",
        )
        assert "istio.canonical_service" in tags  # Istio's tags stay beside customTags
    assert {s["tags"]["from-header"] for s in tag_spans} == {"from-request"}


def test_disable_span_reporting_and_istio_tags(mesh: MeshProcess) -> None:
    """Telemetry disableSpanReporting on the server: only the client's span arrives; enableIstioTags:
    false on the client drops Istio's tags from its span."""
    telemetries = """
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: server-quiet, namespace: default}
    spec:
      selector: {matchLabels: {app: server}}
      tracing: [{disableSpanReporting: true}]
    ---
    apiVersion: telemetry.istio.io/v1
    kind: Telemetry
    metadata: {name: client-plain, namespace: default}
    spec:
      selector: {matchLabels: {app: client}}
      tracing: [{enableIstioTags: false, randomSamplingPercentage: 100}]
    """
    fetch = lambda t: builtin_spans(mesh, t)  # noqa: E731
    with applied(mesh, telemetries):
        # Until the server's inbound HCM is the new one (see above): without a tracer it makes no span,
        # so the app receives the client span's B3 headers unchanged (the client's root span has no parent).
        headers = wait_for(
            "a request the server did not trace",
            lambda: "x-b3-parentspanid" not in (h := call(mesh, "/disabled-reporting")) and h,
        )
        trace_id = headers["x-b3-traceid"]
        (client,) = wait_spans(fetch, trace_id, 1)
        assert stays_untraced(lambda t: [s for s in fetch(t) if s.get("kind") == "SERVER"], trace_id)
    assert client["id"] == headers["x-b3-spanid"]
    assert client["kind"] == "CLIENT" and client["localEndpoint"]["serviceName"] == "client.default"
    assert not any(k.startswith("istio.") for k in client["tags"]), client["tags"]
    assert client["tags"]["upstream_cluster"] == OUT_CLUSTER
