"""Istio's proxy-header, gateway-topology and mirroring integration cases, re-expressed against a real
Isthmus mesh.

Sources (istio/istio, tests/integration/pilot):
- headers_test.go (common/headers.go): TestProxyHeaders and TestXfccHeaders: a workload whose ProxyConfig
  `proxyHeaders` turns Envoy's own headers off calls a pod without a sidecar (`naked`), is called by it,
  and calls an external ServiceEntry host; the backend must see none of the proxy's `x-` headers.
- gw_topology_test.go (common/routing.go XFFGatewayCase) and custom_gateway_test.go: a custom ingress
  gateway deployment with its own Service (80 -> 8080) and `gatewayTopology.numTrustedProxies: 2`;
  unreachable before a Gateway selects it, then X-Forwarded-For / X-Envoy-External-Address as Envoy
  computes them with two trusted hops. Plus gatewayTopology.forwardClientCertDetails on a MUTUAL server
  and proxyHeaders on gateways (istiod's buildGatewayConnectionManager), which no Istio test covers.
- mirror_test.go (common/mirror.go, testdata/traffic-mirroring-template.yaml): `a -> b` with `b`
  mirrored to `c` at 100% (percentage absent), 50%, 10% and 0%, over HTTP and gRPC, the share `c`
  receives within Istio's thresholds; and TestMirroringExternalService, mirrored to an external host.

Where Isthmus departs by design:
- No per-workload ProxyConfig (the `proxy.istio.io/config` annotation): proxyHeaders and gatewayTopology
  are MeshConfig `defaultConfig`, applied for the duration of a test, so every proxy of the mesh has them.
- Istio's config is used as it is, `tracing: {}` included (a tracing block without a tracer: no trace
  headers) and `attemptCount: {disabled: true}`. `metadataExchangeHeaders: {mode: IN_MESH}` holds
  trivially: Isthmus never sends x-envoy-peer-metadata(-id) at all.
- Istio's gRPC echo call becomes an HTTP/2 (h2c) request on the service's `grpc` port: the sidecars
  carry it the same way; it runs for the deterministic shares (absent = 100%, 0%).
- The external service is a pod without a sidecar, named by a MESH_EXTERNAL ServiceEntry whose endpoint
  is its pod address (no DNS capture). Mirrored requests are counted from the echo app's
  `/.echo/requests` (Istio counts the test id in the workload logs).
- Requests from the custom gateway and mirrored requests are checked on loopback pod addresses.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for
from tests.e2e.test_istio_traffic_cases import h2c_get

pytestmark = pytest.mark.e2e

B_FQDN = "b.default.svc.cluster.local"
NAKED_FQDN = "naked.default.svc.cluster.local"
EXTERNAL_HOST = "fake.external.com"  # Istio's DeployExternalServiceEntry host
GW_NS = "custom-gateway"

# a: the client (Istio's `a` and the `no-headers` instance). b: the mirrored service; c (and c in
# `other`): mirror targets. naked: no sidecar. external: no sidecar, reached through a ServiceEntry.
# custom-gateway: a user gateway deployment with Istio's default labels, so no default one starts.
MESH = f"""
# The mirror test waits on a's outbound cluster counters, which Envoy keeps only when the stats matcher
# includes them, as in Istio.
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  defaultConfig:
    proxyStatsMatcher: {{inclusionPrefixes: ["cluster.outbound|"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: a}}
spec:
  selector: {{app: a}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: a, labels: {{app: a, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: b}}
spec:
  selector: {{app: b}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: grpc, port: 7070, targetPort: 7070}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: b, labels: {{app: b, version: v1}}}}
spec: {{ports: [8080, 7070], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: c}}
spec:
  selector: {{app: c}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: grpc, port: 7070, targetPort: 7070}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: c, labels: {{app: c, version: v1}}}}
spec: {{ports: [8080, 7070], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: c, namespace: other}}
spec:
  selector: {{app: c}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: c, namespace: other, labels: {{app: c, version: v1}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
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
metadata: {{name: naked, labels: {{app: naked}}}}
spec: {{ports: [8080], sidecar: false, command: [isthmus, echo]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: external, namespace: external, labels: {{app: external}}}}
spec: {{ports: [8080], sidecar: false, command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: custom-gateway, namespace: {GW_NS}, labels: {{istio: ingressgateway}}}}
spec:
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: https, port: 443, targetPort: 8443}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: custom-gateway, namespace: {GW_NS}, labels: {{istio: ingressgateway}}}}
spec: {{gateway: true}}
"""

# headers_test.go's proxy config.
NO_PROXY_HEADERS = """
tracing: {}
proxyHeaders:
  forwardedClientCert: SANITIZE
  server: {disabled: true}
  requestId: {disabled: true}
  attemptCount: {disabled: true}
  envoyDebugHeaders: {disabled: true}
  metadataExchangeHeaders: {mode: IN_MESH}
"""

XFCC_HEADERS = """
proxyHeaders:
  forwardedClientCert: APPEND_FORWARD
  setCurrentClientCertDetails: {subject: true, cert: true}
  server: {disabled: true}
  requestId: {disabled: true}
  envoyDebugHeaders: {disabled: true}
  metadataExchangeHeaders: {mode: IN_MESH}
"""

# headers_test.go: headers Envoy cannot turn off, or Istio leaves on.
ALLOWED_CLIENT_HEADERS = frozenset(
    {"x-forwarded-proto", "x-envoy-peer-metadata", "x-envoy-peer-metadata-id", "x-envoy-decorator-operation"}
)
PROXY_HEADERS = frozenset({"server", "x-forwarded-client-cert", "x-request-id", "x-envoy-attempt-count"})


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-headers-mirror"), MESH) as m:
        yield m


# --- helpers ----------------------------------------------------------------------------------------


def mesh_config(default_config: str) -> str:
    body = textwrap.indent(textwrap.dedent(default_config).strip(), "    ")
    return f"apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec:\n  defaultConfig:\n{body}\n"


def external_service_entry(mesh: MeshProcess) -> str:
    """DeployExternalServiceEntry: `fake.external.com` on port 80, at the external pod's address."""
    ip = mesh.instance("external", "external")["ip"]
    return f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: external}}
    spec:
      hosts: [{EXTERNAL_HOST}]
      location: MESH_EXTERNAL
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      endpoints: [{{address: {ip}, ports: {{http: 8080}}}}]
    """


def from_naked(mesh: MeshProcess, url: str, **kw: Any) -> Response:
    """A call from the pod without a sidecar (Istio's apps.Naked)."""
    return mesh.curl_direct("naked", url, **kw)


def unexpected_proxy_headers(
    headers: dict[str, str], allowed: frozenset[str] = frozenset()
) -> dict[str, str]:
    """headers_test.go checkNoProxyHeaders: any `x-` or known proxy header the backend saw."""
    ok = ALLOWED_CLIENT_HEADERS | allowed
    return {k: v for k, v in headers.items() if k not in ok and (k in PROXY_HEADERS or k.startswith("x-"))}


def envoy_response_headers(resp: Response) -> list[str]:
    """Envoy's own `x-envoy-` response headers (x-envoy-upstream-service-time, ...), but the tracing
    decorator, which headers_test.go allows."""
    names = {k.lower() for k, _ in resp.headers}
    return sorted(n for n in names if n.startswith("x-envoy-") and n not in ALLOWED_CLIENT_HEADERS)


def peer_metadata_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-envoy-peer-metadata")}


def direct(mesh: MeshProcess, workload: str, path: str, namespace: str = "default") -> Response:
    """Straight to the pod's first port (its sidecar's inbound listener, or the app without one)."""
    i = mesh.instance(workload, namespace)
    return sync.request(f"http://{i['ip']}:{i['ports'][0]['port']}{path}", timeout=5)


def requests_with(mesh: MeshProcess, workload: str, test_id: str, namespace: str = "default") -> list[dict]:
    """The requests (of the echo app's last 100) whose path carries `test_id`."""
    return [r for r in direct(mesh, workload, "/.echo/requests", namespace).json() if test_id in r["path"]]


def cluster_stat(mesh: MeshProcess, workload: str, cluster: str, stat: str) -> int:
    p = mesh.proxy(workload)
    name = f"cluster.{cluster}.{stat}"
    url = f"http://{p['ip']}:{p['adminPort']}/stats?filter=^{re.escape(name)}$"
    for line in sync.request(url, timeout=5).text.splitlines():
        key, _, value = line.rpartition(": ")
        if key == name and value.isdigit():
            return int(value)
    raise AssertionError(f"{workload}'s sidecar keeps no {name} (MeshConfig proxyStatsMatcher)")


# --- headers_test.go ------------------------------------------------------------------------------------


def test_proxy_headers_default_are_present(mesh: MeshProcess) -> None:
    """The baseline TestProxyHeaders turns off: without proxyHeaders the backend sees x-request-id and
    x-envoy-attempt-count, an inbound sidecar answers `server: istio-envoy`, and the outbound one
    `server: envoy` with x-envoy-upstream-service-time."""
    out = mesh.curl("a", f"http://{NAKED_FQDN}/")
    seen = echo_body(out)["headers"]
    assert "x-request-id" in seen and seen.get("x-envoy-attempt-count") == "1", seen
    assert out.header("server") == "envoy" and out.header("x-envoy-upstream-service-time"), out.headers
    inbound = from_naked(mesh, f"http://{B_FQDN}/")
    assert "x-request-id" in echo_body(inbound)["headers"]
    assert inbound.header("server") == "istio-envoy", inbound.headers


def test_proxy_headers_disabled(mesh: MeshProcess) -> None:
    """TestProxyHeaders: with server, requestId, envoyDebugHeaders disabled, forwardedClientCert
    SANITIZE and metadataExchangeHeaders IN_MESH, neither the naked pod (called through the outbound
    sidecar) nor the workload (called by the naked pod, through its inbound sidecar) sees a proxy header;
    nor does the external ServiceEntry host see peer metadata. Responses carry no Envoy header and the
    upstream's own `server` passes through."""
    with applied(mesh, mesh_config(NO_PROXY_HEADERS)):
        out = mesh.curl("a", f"http://{NAKED_FQDN}/")
        inbound = from_naked(mesh, f"http://{B_FQDN}/")
        with applied(mesh, external_service_entry(mesh)):
            external = mesh.curl("a", f"http://{EXTERNAL_HOST}/")
    assert unexpected_proxy_headers(echo_body(out)["headers"]) == {}
    assert unexpected_proxy_headers(echo_body(inbound)["headers"]) == {}
    assert peer_metadata_headers(echo_body(external)["headers"]) == {}
    for resp in (out, inbound):
        assert resp.header("server") not in ("envoy", "istio-envoy"), resp.headers
        assert envoy_response_headers(resp) == [], resp.headers


def test_xfcc_headers_append_forward_with_subject_and_cert(mesh: MeshProcess) -> None:
    """TestXfccHeaders: forwardedClientCert APPEND_FORWARD with setCurrentClientCertDetails subject and
    cert; no other proxy header. Between two sidecars (mTLS) the backend's XFCC carries the client's
    certificate and subject; from the naked pod (plaintext) there is none to forward."""
    with applied(mesh, mesh_config(XFCC_HEADERS)):
        meshed = echo_body(mesh.curl("a", f"http://{B_FQDN}/"))["headers"]
        out = echo_body(mesh.curl("a", f"http://{NAKED_FQDN}/"))["headers"]
        inbound = echo_body(from_naked(mesh, f"http://{B_FQDN}/"))["headers"]
        with applied(mesh, external_service_entry(mesh)):
            external = echo_body(mesh.curl("a", f"http://{EXTERNAL_HOST}/"))["headers"]
    xfcc = meshed["x-forwarded-client-cert"]
    assert "Subject=" in xfcc and "Cert=" in xfcc and "By=spiffe://cluster.local/ns/default/sa/" in xfcc, xfcc
    # Unset fields keep their defaults (buildSidecarInboundHTTPOpts): URI (the client's SPIFFE id) stays.
    assert "URI=spiffe://cluster.local/ns/default/sa/" in xfcc, xfcc
    allowed = frozenset({"x-forwarded-client-cert"})
    assert unexpected_proxy_headers(meshed, allowed | {"x-envoy-attempt-count"}) == {}
    assert unexpected_proxy_headers(out, allowed | {"x-envoy-attempt-count"}) == {}
    assert unexpected_proxy_headers(inbound, allowed) == {} and "x-forwarded-client-cert" not in inbound
    assert peer_metadata_headers(external) == {}


# --- gateways: gw_topology_test.go, custom_gateway_test.go ----------------------------------------------


def gateway_config(*servers: str, backend: str = B_FQDN) -> tuple[str, str]:
    """httpGateway("*", 80, ...) + httpVirtualService("gateway", fqdn, 80), bound to the custom gateway;
    `servers` (YAML flow mappings) are more servers of the Gateway."""
    http = '{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}'
    gw = f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: gateway}}
    spec:
      selector: {{istio: ingressgateway}}
      servers: [{", ".join((http, *servers))}]
    """
    vs = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: gateway}}
    spec:
      hosts: ["*"]
      gateways: [gateway]
      http:
      - route: [{{destination: {{host: {backend}, port: {{number: 80}}}}}}]
    """
    return gw, vs


def via_gateway(mesh: MeshProcess, host: str = B_FQDN, headers: list[tuple[str, str]] = ()) -> Response:
    """From the naked pod to the custom gateway's HTTP listener (Service port 80 -> 8080)."""
    address = mesh.gateway_address(80, "custom-gateway", GW_NS)
    naked = mesh.instance("naked")["ip"]
    return sync.request(
        f"http://{host}/", headers=[("Host", host), *headers], connect_to=address, source_ip=naked, timeout=10
    )


def test_custom_gateway_serves_only_once_a_gateway_selects_it(mesh: MeshProcess) -> None:
    """TestAccessAppViaCustomGateway: a user's gateway deployment refuses traffic until a Gateway and a
    VirtualService bound to it exist, then routes to the app. (gw_topology_test.go's gateway Service maps
    80 -> 8080: the listener is on the target port.)"""
    gw_ip = mesh.proxy("custom-gateway", namespace=GW_NS)["ip"]
    before = sync.request(f"http://{gw_ip}:8080/", headers=[("Host", B_FQDN)], timeout=5)
    assert before.status == 0, (before.status, before.error)
    with applied(mesh, *gateway_config()):
        body = echo_body(via_gateway(mesh))
    assert body["workload"] == "b", body


def test_gateway_topology_num_trusted_proxies(mesh: MeshProcess) -> None:
    """TestXFFGateway (XFFGatewayCase) on the custom gateway with numTrustedProxies 2: the client
    address is the second entry from the right of X-Forwarded-For (X-Envoy-External-Address), and the
    gateway appends its peer, the naked pod, as the fourth."""
    xff = [("X-Forwarded-For", "56.5.6.7, 72.9.5.6, 98.1.2.3")]
    topology = mesh_config("gatewayTopology: {numTrustedProxies: 2}")
    with applied(mesh, *gateway_config()), applied(mesh, topology):
        seen = echo_body(via_gateway(mesh, headers=xff))["headers"]
    assert seen.get("x-envoy-external-address") == "72.9.5.6", seen
    hops = [h.strip() for h in seen["x-forwarded-for"].split(",")]
    assert len(hops) == 4 and hops[1] == "72.9.5.6", hops
    assert hops[3] == mesh.instance("naked")["ip"], hops


def test_gateway_proxy_headers(mesh: MeshProcess) -> None:
    """istiod's buildGatewayConnectionManager: gateways answer `server: istio-envoy` (not Envoy's own
    name) and honour proxyHeaders server, requestId and envoyDebugHeaders like sidecars do. The backend
    is the naked pod, so the gateway is the only proxy on the way."""
    with applied(mesh, *gateway_config(backend=NAKED_FQDN)):
        default = via_gateway(mesh, NAKED_FQDN)
        with applied(mesh, mesh_config(NO_PROXY_HEADERS)):
            quiet = via_gateway(mesh, NAKED_FQDN)
    assert default.header("server") == "istio-envoy", default.headers
    assert default.header("x-envoy-upstream-service-time"), default.headers
    assert "x-request-id" in echo_body(default)["headers"]
    assert quiet.header("server") not in ("envoy", "istio-envoy"), quiet.headers
    assert envoy_response_headers(quiet) == [], quiet.headers
    assert "x-request-id" not in echo_body(quiet)["headers"]


def https_server(credential: str) -> str:
    return (
        "{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], "
        f"tls: {{mode: MUTUAL, credentialName: {credential}}}}}"
    )


def test_gateway_topology_forward_client_cert_details(mesh: MeshProcess, tmp_path: Path) -> None:
    """gatewayTopology.forwardClientCertDetails on a MUTUAL gateway server. By default (SANITIZE_SET)
    the backend's XFCC starts with the client certificate's element: its hash, the certificate, its
    subject and DNS SAN (istiod sets subject, cert, URI and DNS on every gateway); SANITIZE drops it, so
    only the element the backend's sidecar appends for the gateway's mesh identity is left; UNDEFINED
    keeps the default."""
    ca = t.make_ca()
    server = t.issue(ca, ["gw.example.com"])
    client = t.issue(ca, ["client.example.com"], client=True)
    secret = t.tls_secret("gw-mtls", server, ca, namespace=GW_NS)
    sanitize = mesh_config("gatewayTopology: {forwardClientCertDetails: SANITIZE}")

    def xfcc() -> str:
        address = mesh.gateway_address(443, "custom-gateway", GW_NS)
        status, _, raw = t.https_get(address, "gw.example.com", "/", ca, client=client, tmp=tmp_path)
        assert status == 200, raw
        return json.loads(raw)["headers"].get("x-forwarded-client-cert", "")

    with applied(mesh, secret, *gateway_config(https_server("gw-mtls"))):
        sanitize_set = xfcc()
        with applied(mesh, sanitize):
            sanitized = xfcc()
        # UNDEFINED, the MeshConfig enum's zero value, keeps the gateway default.
        with applied(mesh, mesh_config("gatewayTopology: {forwardClientCertDetails: UNDEFINED}")):
            undefined = xfcc()
    client_element = sanitize_set.split(",By=")[0]
    assert "Hash=" in client_element and 'Subject="CN=client.example.com"' in client_element, sanitize_set
    assert "Cert=" in client_element and "DNS=client.example.com" in client_element, sanitize_set
    assert "client.example.com" not in sanitized, sanitized
    assert 'Subject="CN=client.example.com"' in undefined.split(",By=")[0], undefined
    assert sanitized.startswith("By=spiffe://cluster.local/ns/default/sa/"), sanitized


# --- mirror_test.go ---------------------------------------------------------------------------------------


def mirror_vs(name: str, mirror_host: str, percent: float | None) -> str:
    """testdata/traffic-mirroring-template.yaml."""
    percentage = f"\n        mirrorPercentage: {{value: {percent}}}" if percent is not None else ""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: {name}}}
    spec:
      hosts: [b]
      http:
      - route: [{{destination: {{host: b}}}}]
        mirror: {{host: {mirror_host}}}{percentage}
    """


def send_http(mesh: MeshProcess, test_id: str) -> None:
    result = mesh.load("a", f"http://b/{test_id}", 100, concurrency=4)
    assert result.codes == {"200": 100}, result.codes


def send_h2(mesh: MeshProcess, test_id: str) -> None:
    """Istio's gRPC call: HTTP/2 on b's grpc port."""
    proxy = mesh.proxy_url("a")
    codes = [h2c_get(proxy, "b:7070", f"/{test_id}")[0] for _ in range(100)]
    assert codes == [200] * 100, codes


def mirror_share(
    mesh: MeshProcess, send: Callable[[MeshProcess, str], None], target: tuple[str, str], cluster: str
) -> tuple[float, list[dict]]:
    """sendTrafficMirror + verifyTrafficMirror: 100 calls a -> b, then (once no mirrored request is in
    flight) the percent of them the mirror target received, and those requests."""
    test_id = secrets.token_hex(8)
    send(mesh, test_id)
    wait_for(
        "mirrored requests to finish", lambda: cluster_stat(mesh, "a", cluster, "upstream_rq_active") == 0
    )
    count_b = len(requests_with(mesh, "b", test_id))
    mirrored = requests_with(mesh, target[0], test_id, target[1])
    return 100.0 * len(mirrored) / count_b, mirrored


C_CLUSTER = "outbound|80||c.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("name", "percent", "threshold"),
    [
        ("mirror-percent-absent", None, 0.0),
        ("mirror-50", 50.0, 10.0),
        ("mirror-10", 10.0, 5.0),
        ("mirror-0", 0.0, 0.0),
    ],
)
def test_mirroring(mesh: MeshProcess, name: str, percent: float | None, threshold: float) -> None:
    """TestMirroring: c receives the configured share of b's requests (100% when mirrorPercentage is
    absent, none at 0), within Istio's thresholds, retried with a fresh test id as Istio retries. The
    mirrored requests carry b's authority with Envoy's `-shadow` suffix."""
    expected = 100.0 if percent is None else percent
    with applied(mesh, mirror_vs(name, "c", percent)):
        for attempt in range(5):
            share, mirrored = mirror_share(mesh, send_http, ("c", "default"), C_CLUSTER)
            if abs(share - expected) <= threshold:
                break
            assert attempt < 4, f"{name}: expected {expected}%, got {share}% (threshold {threshold}%)"
        assert {r["host"] for r in mirrored} <= {"b-shadow"}, mirrored
        if percent in (None, 0.0):
            grpc_share, _ = mirror_share(
                mesh, send_h2, ("c", "default"), "outbound|7070||c.default.svc.cluster.local"
            )
            assert grpc_share == expected, grpc_share


def test_mirroring_to_another_namespace(mesh: MeshProcess) -> None:
    """The mirror host `c.other.svc.cluster.local`: all of b's requests reach c in `other`, none c in
    b's namespace."""
    with applied(mesh, mirror_vs("mirror-other-ns", "c.other.svc.cluster.local", None)):
        share, mirrored = mirror_share(
            mesh, send_http, ("c", "other"), "outbound|80||c.other.svc.cluster.local"
        )
    assert share == 100.0 and {r["host"] for r in mirrored} == {"b-shadow"}, (share, mirrored)
    assert requests_with(mesh, "c", mirrored[0]["path"].strip("/")) == []


def test_mirroring_external_service(mesh: MeshProcess) -> None:
    """TestMirroringExternalService: mirrored to the external ServiceEntry host, every request reaches
    the pod outside the mesh (plaintext, the `-shadow` authority)."""
    with (
        applied(mesh, external_service_entry(mesh)),
        applied(mesh, mirror_vs("mirror-external", EXTERNAL_HOST, None)),
    ):
        share, mirrored = mirror_share(
            mesh, send_http, ("external", "external"), f"outbound|80||{EXTERNAL_HOST}"
        )
    assert share == 100.0, share
    assert {r["host"] for r in mirrored} == {"b-shadow"}, mirrored
    assert "x-forwarded-client-cert" not in mirrored[0]["headers"], mirrored[0]
