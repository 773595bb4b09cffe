"""The rest of TestTraffic's case table (istio/istio tests/integration/pilot/common/routing.go, run by
common/traffic.go RunAllTrafficTests), re-expressed against a real Isthmus mesh, and the inventory of
every case of routing.go with where Isthmus checks it.

Inventory (case -> test; "here" = this module; T = test_istio_traffic_cases.py, R = ..._routing_more_cases,
P = ..._pilot_more_cases, H = ..._headers_mirror_cases, E = ..._egress_cases, J = ..._jwt_cases (all
test_istio_*), X = test_resilience.py, RT = test_routing.py, TR = test_tcp_routing.py, HP =
test_headless_pods.py):
- virtualServiceCases:'added header', 'set header' -> X::test_header_operations_at_rule_and_destination_level;
  'set authority header', 'set host header in destination', 'set authority header in destination', 'set
  host header in route and destination', '... in route and multi destination', 'set host header multi
  destination' -> T::test_authority_set_at_route_and_destination_levels; 'redirect', 'redirect port and
  scheme', 'redirect request port' -> T::test_redirects_keep_the_query_and_derive_the_port (its
  'non-default' child, Host "b" on port 85, means nothing to an explicit proxy: the Host names the port);
  'weird header matches', 'pseudo header matches' -> here; 'rewrite uri', 'cors', 'retry conditions',
  'fault abort', 'fault abort gRPC', 'catch all route short circuit the other routes', the three 'without
  headers' -> T; 'rewrite authority' -> X::test_rewrites_reach_the_backend; 'shifting-50|80' -> R.
- tlsOriginationCases: 'DNS' -> R; 'NONE', 'Redirect NONE' -> not ported (R: no original destination IP
  behind an explicit proxy).
- useClientProtocolCases 'with h2', 'with h1' -> T (now checking the app sees HTTP/2, see below);
  destinationRuleCases 'only idletimeout specified in DR' -> T; trafficLoopCases 15001, 15006 -> T.
- autoPassthroughCases -> here: Isthmus refuses AUTO_PASSTHROUGH servers (multi-network SNI-DNAT), so no
  SNI/ALPN reaches anything through one; the refusal is what is checked.
- gatewayCases: '404', 'https redirect', 'http redirect when vs port specify https', 'client protocol -
  http1', 'wildcard hostname' (HTTP/1.1), 'HTTP', 'HTTP scheme match', 'HTTPS', 'HTTPS scheme match',
  'cipher suite', 'optional mTLS' -> T; 'wildcard hostname' over HTTP/2 as Istio sends it, 'https with
  x-forwarded-proto', 'http return 400 with with x-forwarded-proto https when vs port specify https',
  'client protocol - http2', 'client protocol - http1|http2 use client with auto-http|http|http2' (6),
  'HTTPS re-encrypt' -> here.
- ProxyProtocolFilterAppliedGatewayCase -> here; TestUpstreamProxyProtocol 'proxy' ->
  TR::test_destination_rule_proxy_protocol_sends_the_client_address_first; XFFGatewayCase -> T, H.
- envoyFilterCases -> not applicable: Isthmus refuses EnvoyFilter (it generates its own Envoy config).
- hostCases -> T::test_host_header_forms; 'some-instances.<headless>' forms -> HP (no original destination:
  a pod name the registry lacks is refused, where Istio's wildcard vhost forwards to the DNS answer).
- serviceCases 1-4 -> T. externalNameCases: 'without port', 'with port' on http -> T; on auto-http, tcp and
  https (an ExternalName naming `secure`: the echo app serves no TLS), and 'gateway' -> here; 'service
  entry' (skipped in Istio: an SE has no VIP) -> not ported.
- consistentHashCases: 'no consistent', 'tcp source ip', 'http cookie with ttl' -> T; 'source ip', 'query
  param', 'http header' -> RT::test_consistent_hash_kinds; 'http cookie without ttl' (skipped in Istio for
  its client's cookie handling only) -> here.
- selfCallsCases: 'to service' -> T; 'to localhost', 'to podIP' -> not applicable: they check that what an
  app sends to itself is not intercepted; an Isthmus app meets its sidecar only through HTTP_PROXY.
- protocolSniffingCases: 'http', 'auto-http', 'grpc', 'auto-grpc', 'http10 to auto', 'http10 to external',
  'http10 to external auto' -> here; 'http10 to http' -> T; 'tcp', 'auto-tcp' (skipped in Istio) -> R.
- instanceIPTests -> R (the 200 cases; the 503 ones need an app bound to its pod IP only).
- DNSTestCases -> not applicable (no DNS capture). VMTestCases: 'k8s to vm', 'dns: VM to k8s cluster IP
  service ...' -> R; 'dns: VM to k8s headless|statefulset service' -> not ported (DNS on the VM).
- TestExternalService -> P; testServiceEntryWithMultipleVIPsAndResolutionNone -> E; serverFirstTestCases ->
  R; jwtClaimRoute -> J.
sidecarScopeCases and testServicesWithMultipleInstances (older revisions) are not in the stored routing.go
revisions (4b28972c, 00018ffd), so they are not inventoried.

Disagreement found and fixed: a DestinationRule's useClientProtocol applies to the server's inbound cluster
too (istiod's buildInboundCluster: setUpstreamProtocol, then applyConnectionPool's setUseDownstreamProtocol),
so the app sees the client's protocol even on HTTP and HTTP/2 ports (xds/gen/clusters.py).

How the cases are re-expressed (DESIGN §3, explicit-proxy sidecars): a client call goes through `a`'s
sidecar (TCP as a CONNECT tunnel); an ingress call goes to the default ingress gateway with the Host header
Istio's `fqdnHostHeader` sets; Istio's echo `https` port is `secure`, a TLS server behind a sidecar that
answers plaintext HTTP with Go's 400 as Istio's echo does; `external` is a pod without a sidecar that no
Service names (an address without a VIP). Set-ups Istio makes with an EnvoyFilter use the MeshConfig field
meaning the same (gatewayTopology), and the test says so.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

FQDN = "b.default.svc.cluster.local"
SECURE_FQDN = "secure.default.svc.cluster.local"
REPO = Path(__file__).resolve().parents[2]
# Istio's echo ports (pkg/test/framework/components/echo/common/ports): service port -> target port.
HTTP, HTTP2, AUTO_HTTP, TCP, GRPC, AUTO_GRPC = 80, 85, 81, 9090, 7070, 7071
TARGET = {HTTP: 8080, HTTP2: 8085, AUTO_HTTP: 8081, TCP: 9090, GRPC: 7070, AUTO_GRPC: 7071}
B_VERSIONS = {"v1", "v2"}

# The `secure` app: Istio's echo TLS port (tlstools.TlsServer) on its target port 8443.
SECURE_APP = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.e2e import tlstools as t
port = json.loads(os.environ["ISTHMUS_PORTS"])["8443"]
pem = t.Pem(Path({crt!r}).read_bytes(), Path({key!r}).read_bytes())
with t.TlsServer("127.0.0.1", port, pem, Path({work!r})):
    while True:
        time.sleep(3600)
"""


def mesh_yaml(secure_command: list[str]) -> str:
    b_ports = "\n".join(
        f"  - {{name: {name}, port: {port}, targetPort: {TARGET[port]}}}"
        for name, port in (
            ("http", HTTP),
            ("http2", HTTP2),
            ("auto-http", AUTO_HTTP),
            ("tcp", TCP),
            ("grpc", GRPC),
            ("auto-grpc", AUTO_GRPC),
        )
    )
    b_targets = ", ".join(str(p) for p in TARGET.values())
    return f"""
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
{b_ports}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: b-v1, labels: {{app: b, version: v1}}}}
spec: {{ports: [{b_targets}], command: [isthmus, echo, --tcp, "{TCP}"]}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: b-v2, labels: {{app: b, version: v2}}}}
spec: {{ports: [{b_targets}], command: [isthmus, echo, --tcp, "{TCP}"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: secure}}
spec:
  selector: {{app: secure}}
  ports: [{{name: https, port: 443, targetPort: 8443}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: secure, labels: {{app: secure, version: v1}}}}
spec: {{ports: [8443], command: {json.dumps(secure_command)}}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: external, labels: {{app: external}}}}
spec: {{sidecar: false, ports: [8080, 8081], command: [isthmus, echo]}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: base}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [base.example.net]
"""


@pytest.fixture(scope="module")
def ca() -> t.Pem:
    return t.make_ca()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, ca: t.Pem) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("istio-traffic-table")
    app = work / "secure-app"
    app.mkdir()
    pem = t.issue(ca, [SECURE_FQDN, "secure"])
    (app / "tls.crt").write_bytes(pem.cert)
    (app / "tls.key").write_bytes(pem.key)
    script = app / "secure.py"
    script.write_text(
        SECURE_APP.format(
            repo=str(REPO), crt=str(app / "tls.crt"), key=str(app / "tls.key"), work=str(app / "run")
        )
    )
    with MeshProcess.from_yaml(work, mesh_yaml([sys.executable, str(script)])) as m:
        yield m


# --- helpers -----------------------------------------------------------------------------------------


def curl(mesh: MeshProcess, url: str, **kw: Any) -> Response:
    return mesh.curl("a", url, **kw)


def tunnel(mesh: MeshProcess, authority: str, data: bytes | str) -> Response:
    """A CONNECT tunnel from a's sidecar to `authority`, `data` sent once, what came back as the body."""
    return sync.request(f"tcp://{authority}", proxy=mesh.proxy_url("a"), body=data, timeout=10)


def raw_tunnel(mesh: MeshProcess, authority: str, data: bytes) -> bytes:
    """`data` as is through a CONNECT tunnel from a's sidecar (`isthmus curl` sends one line); all that
    comes back until the far end closes, or 10 s pass."""
    host, _, port = mesh.proxy_url("a").removeprefix("http://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        head = t.read_head(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        s.sendall(data)
        out = head.split(b"\r\n\r\n", 1)[1]
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def vs_b(http: str) -> str:
    rules = textwrap.indent(textwrap.dedent(http).strip(), "  ")
    return f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: b}}\nspec:\n  hosts: [b]\n  http:\n{rules}\n"


def h2c(
    address: str,
    authority: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/2 request with prior knowledge, in cleartext, to `address` (host:port): the status, the
    response headers and trailers, and the body."""
    import h2.config
    import h2.connection
    import h2.events

    host, _, port = address.removeprefix("http://").rpartition(":")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        request = [(":method", method), (":authority", authority), (":scheme", "http"), (":path", path)]
        conn.send_headers(stream, request + list(headers or []), end_stream=not body)
        if body:
            conn.send_data(stream, body, end_stream=True)
        s.sendall(conn.data_to_send())
        status, seen, data, done = 0, {}, b"", False
        while not done:
            chunk = s.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    seen.update({k.decode(): v.decode() for k, v in ev.headers})
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, stream)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    done = True
            s.sendall(conn.data_to_send())
    status = int(seen.pop(":status", "0"))
    return status, seen, data


def gateway(hosts: str = '"*"', extra: str = "", port: int = 80, protocol: str = "HTTP") -> str:
    """routing.go's gatewayTmpl (the default ingress gateway's labels)."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: gateway}}
    spec:
      selector: {{istio: ingressgateway}}
      servers:
      - port: {{number: {port}, name: {protocol.lower()}, protocol: {protocol}}}
        hosts: [{hosts}]{extra}
    """


def gateway_vs(host: str, port: int, dest: str | None = None, name: str | None = None) -> str:
    """routing.go's httpVirtualServiceTmpl."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: "{name or host.replace("*", "wild")}"}}
    spec:
      gateways: [gateway]
      hosts: ["{host}"]
      http:
      - route: [{{destination: {{host: "{dest or host}", port: {{number: {port}}}}}}}]
    """


def via_gateway(mesh: MeshProcess, host: str, path: str = "/", **kw: Any) -> Response:
    headers = [("Host", host), *kw.pop("headers", [])]
    return sync.request(f"http://{mesh.gateway_address(80)}{path}", headers=headers, **kw)


def mesh_config(default_config: str) -> str:
    return f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec:
      defaultConfig: {default_config}
    """


# --- virtualServiceCases -------------------------------------------------------------------------------


def test_weird_header_matches(mesh: MeshProcess) -> None:
    """'weird header matches': a header name with every special character a token allows matches exactly;
    'no match' (header absent) is 404, 'match' is 200."""
    absurd = "a!#$%&'*+-.^_`|~z"
    rules = vs_b(
        f"""
        - match: [{{headers: {{{json.dumps(absurd)}: {{exact: why}}}}}}]
          route: [{{destination: {{host: b}}}}]
        """
    )
    with applied(mesh, rules):
        assert curl(mesh, "http://b/").status == 404
        assert echo_body(curl(mesh, "http://b/", headers=[(absurd, "why")]))["version"] in B_VERSIONS
        assert curl(mesh, "http://b/", headers=[(absurd, "why not")]).status == 404


def test_pseudo_header_matches(mesh: MeshProcess) -> None:
    """'pseudo header matches': `:method` is matched as the request's method: POST is 404, GET is 200."""
    rules = vs_b(
        """
        - match: [{headers: {":method": {exact: GET}}}]
          route: [{destination: {host: b}}]
        """
    )
    with applied(mesh, rules):
        assert curl(mesh, "http://b/", method="POST", body=b"x").status == 404
        assert echo_body(curl(mesh, "http://b/", method="GET"))["method"] == "GET"


# --- protocolSniffingCases -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "port"), [("http", HTTP), ("auto-http", AUTO_HTTP)])
def test_sniffing_http_keeps_the_host(mesh: MeshProcess, name: str, port: int) -> None:
    """protocolSniffingCases 'http' and 'auto-http': HTTP to a declared and to a sniffed port reaches b
    with the Host the client sent (check.Host(opts.GetHost()))."""
    host = f"b:{port}"
    body = echo_body(curl(mesh, f"http://{host}/", headers=[("Host", host)]))
    assert (body["host"], body["port"]) == (host, TARGET[port]), body
    assert "x-forwarded-client-cert" in body["headers"]  # through both sidecars, mTLS


@pytest.mark.parametrize(("name", "port"), [("grpc", GRPC), ("auto-grpc", AUTO_GRPC)])
def test_sniffing_grpc_keeps_the_host(mesh: MeshProcess, name: str, port: int) -> None:
    """protocolSniffingCases 'grpc' and 'auto-grpc': a gRPC call (HTTP/2 with prior knowledge, as a gRPC
    client sends it) to a declared and to a sniffed port reaches b over HTTP/2 with its authority. The
    echo app is not a gRPC server: its JSON answer stands for the reply."""
    host = f"b:{port}"
    status, _, raw = h2c(
        mesh.proxy_url("a"),
        host,
        "/proto.EchoTestService/Echo",
        method="POST",
        headers=[("content-type", "application/grpc"), ("te", "trailers")],
        body=b"\x00\x00\x00\x00\x00",
    )
    assert status == 200, raw
    body = json.loads(raw)
    assert (body["host"], body["port"], body["protocol"]) == (host, TARGET[port], "HTTP/2"), body


def test_http10_to_a_sniffed_port_is_tcp(mesh: MeshProcess) -> None:
    """protocolSniffingCases 'http10 to auto': HTTP/1.0 to a sniffed port is not taken as HTTP (Envoy's
    HTTP inspector offers http/1.0, which istiod's HTTP filter chains do not match), so it is carried as
    TCP and the app itself answers 200."""
    answer = raw_tunnel(mesh, f"b:{AUTO_HTTP}", b"GET / HTTP/1.0\r\n\r\n")
    assert_app_answered_http10(answer, "b-v")


def assert_app_answered_http10(answer: bytes, workload: str) -> None:
    """The app's own 200 to an HTTP/1.0 request that no Envoy HTTP filter saw: the request reached the
    app as sent (HTTP/1.0, no Host, none of the headers a sidecar adds). Istio's Go echo answers with an
    `HTTP/1.0` status line; Isthmus's echo app (h11) answers `HTTP/1.1` to any request, so only the
    status is compared, and the protocol the app saw stands for the rest."""
    head, _, raw = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1:2] == [b"200"], answer[:300]
    assert b"\nserver: envoy" not in head.lower(), head  # not an answer Envoy's HCM relayed
    body = json.loads(raw)
    assert body["workload"].startswith(workload) and body["protocol"] == "HTTP/1.0", body
    assert not {"x-request-id", "x-forwarded-proto", "x-forwarded-client-cert"} & set(body["headers"]), body


@pytest.mark.parametrize("port", [8080, 8081], ids=["http", "auto-http"])
def test_http10_to_an_external_address(mesh: MeshProcess, port: int) -> None:
    """protocolSniffingCases 'http10 to external' and 'http10 to external auto': an address without a
    VIP falls to the passthrough, which carries HTTP/1.0 as bytes: the server itself answers 200."""
    ip = mesh.instance("external")["ip"]
    answer = raw_tunnel(mesh, f"{ip}:{port}", b"GET / HTTP/1.0\r\nHost: external\r\n\r\n")
    assert_app_answered_http10(answer, "external")


# --- externalNameCases ---------------------------------------------------------------------------------

EXTERNAL_NAMES = """
apiVersion: v1
kind: Service
metadata: {name: b-ext-no-port}
spec: {type: ExternalName, externalName: b.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: b-ext-port}
spec:
  type: ExternalName
  externalName: b.default.svc.cluster.local
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
"""


@pytest.mark.parametrize("name", ["b-ext-no-port", "b-ext-port"], ids=["without port", "with port"])
def test_external_name_on_auto_http_and_tcp_ports(mesh: MeshProcess, name: str) -> None:
    """externalNameCases 'without port' / 'with port', the auto-http and tcp calls (the http one is in
    test_istio_traffic_cases.py): the ExternalName Service is an alias of b on every one of b's ports,
    whatever ports it declares itself; HTTP arrives over mTLS."""
    with applied(mesh, EXTERNAL_NAMES):
        body = echo_body(curl(mesh, f"http://{name}:{AUTO_HTTP}/"))
        assert body["port"] == TARGET[AUTO_HTTP] and "x-forwarded-client-cert" in body["headers"], body
        resp = tunnel(mesh, f"{name}:{TCP}", "hello")
        assert resp.status == 200, resp.to_dict()
        version, _, line = resp.text.strip().partition(" ")
        assert version in B_VERSIONS and line == "hello", resp.text


def test_external_name_on_an_https_port(mesh: MeshProcess, ca: t.Pem) -> None:
    """externalNameCases, the https call: TLS from the client app to the echo's TLS port, named by an
    ExternalName Service, crosses both sidecars as TCP (a CONNECT tunnel here) and the server answers
    with the SNI the client sent. b has no TLS port (the echo app serves none), so the ExternalName names
    `secure`, Istio's echo https port here."""
    service = """
    apiVersion: v1
    kind: Service
    metadata: {name: secure-ext}
    spec: {type: ExternalName, externalName: secure.default.svc.cluster.local}
    """
    with applied(mesh, service):
        seen = https_through_tunnel(mesh, "secure-ext:443", SECURE_FQDN, ca)
    assert seen["sni"] == SECURE_FQDN and seen["host"] == SECURE_FQDN, seen


def https_through_tunnel(mesh: MeshProcess, authority: str, sni: str, ca: t.Pem) -> dict[str, Any]:
    """A TLS GET (SNI `sni`, verified against `ca`) inside a CONNECT tunnel from a's sidecar: the JSON
    the TLS server answered."""
    import ssl

    host, _, port = mesh.proxy_url("a").removeprefix("http://").rpartition(":")
    ctx = ssl.create_default_context(cadata=ca.cert.decode())
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        head = t.read_head(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        with ctx.wrap_socket(s, server_hostname=sni) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while chunk := tls.recv(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    return json.loads(body)


def test_external_name_through_the_gateway(mesh: MeshProcess) -> None:
    """externalNameCases 'gateway': a gateway VirtualService for the ExternalName's own FQDN, routing to
    it, reaches b."""
    host = "b-ext-se.default.svc.cluster.local"
    service = """
    apiVersion: v1
    kind: Service
    metadata: {name: b-ext-se}
    spec: {type: ExternalName, externalName: b.default.svc.cluster.local}
    """
    with applied(mesh, service, gateway(), gateway_vs(host, HTTP)):
        body = echo_body(via_gateway(mesh, host))
        assert body["version"] in B_VERSIONS and body["port"] == TARGET[HTTP], body


# --- consistentHashCases -------------------------------------------------------------------------------


def test_consistent_hash_cookie_without_ttl(mesh: MeshProcess) -> None:
    """'http cookie without ttl' (skipped in Istio only for its client's cookie handling): a request
    carrying the cookie hashes on it, so ten requests land on one instance; without the cookie nothing
    is hashed (Envoy issues a cookie only when a ttl is set), and requests spread."""
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: b}
    spec:
      host: b
      trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: session-cookie}}}}
    """
    url = "http://b/?some-query-param=bar"
    with applied(mesh, dr):
        pinned = mesh.load(
            "a", url, 10, headers=[("x-some-header", "baz"), ("Cookie", "session-cookie=somecookie")]
        )
        spread = mesh.load("a", url, 16)
        issued = curl(mesh, url)
    assert pinned.codes == {"200": 10} and len(pinned.versions) == 1, pinned.versions
    assert len(spread.versions) > 1, spread.versions
    assert issued.header("set-cookie") is None, issued.headers


# --- gatewayCases --------------------------------------------------------------------------------------


def test_gateway_client_protocol_http2_to_a_sniffed_port(mesh: MeshProcess) -> None:
    """gatewayCases 'client protocol - http2': an HTTP/2 client of the gateway, routed to b's auto-http
    port, reaches the app with HTTP/1.1 (a gateway does not use the downstream protocol implicitly),
    and b's sidecar treats it as HTTP (no X-Envoy-Peer-Metadata, the mark of a TCP-proxied request)."""
    with applied(mesh, gateway(), gateway_vs(FQDN, AUTO_HTTP)):
        status, _, raw = h2c(mesh.gateway_address(80), FQDN)
        assert status == 200, raw
        body = json.loads(raw)
    assert (body["protocol"], body["port"]) == ("HTTP/1.1", TARGET[AUTO_HTTP]), body
    assert "x-envoy-peer-metadata" not in body["headers"]


def test_gateway_wildcard_hostname_over_http2(mesh: MeshProcess) -> None:
    """gatewayCases 'wildcard hostname' as Istio sends it, over HTTP/2 (the HTTP/1.1 calls are in
    test_istio_traffic_cases.py): a server for `*.example.com` and a VirtualService for it match an
    authority without a port ('no port'), with the listener's ('correct port') or any other ('random
    port')."""
    docs = [gateway('"*.example.com"'), gateway_vs("*.example.com", HTTP, dest=FQDN)]
    with applied(mesh, *docs):
        for authority in ("foo.example.com", "foo.example.com:80", "foo.example.com:12345"):
            status, _, raw = h2c(mesh.gateway_address(80), authority)
            assert status == 200, (authority, raw)
            assert json.loads(raw)["host"] == authority


USE_CLIENT_PROTOCOL = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: use-client-protocol}}
spec:
  host: {FQDN}
  trafficPolicy:
    tls: {{mode: DISABLE}}
    connectionPool: {{http: {{useClientProtocol: true}}}}
"""


@pytest.mark.parametrize("h2", [True, False], ids=["http2", "http1"])
@pytest.mark.parametrize("port", [AUTO_HTTP, HTTP, HTTP2], ids=["auto-http", "http", "http2"])
def test_gateway_client_protocol_use_client(mesh: MeshProcess, port: int, h2: bool) -> None:
    """gatewayCases 'client protocol - <http1|http2> use client with <auto-http|http|http2>': with a
    DestinationRule useClientProtocol (and tls DISABLE), the gateway speaks to b in the protocol its
    client used, on every kind of port, and the app sees it."""
    with applied(mesh, gateway(), gateway_vs(FQDN, port), USE_CLIENT_PROTOCOL):
        if h2:
            status, _, raw = h2c(mesh.gateway_address(80), FQDN)
            assert status == 200, raw
            body = json.loads(raw)
        else:
            body = echo_body(via_gateway(mesh, FQDN))
    assert body["port"] == TARGET[port], body
    assert body["protocol"] == ("HTTP/2" if h2 else "HTTP/1.1"), body
    assert "x-envoy-peer-metadata" not in body["headers"]


HTTPS_REDIRECT = "\n        tls: {httpsRedirect: true}"
# Istio's 'https with x-forwarded-proto' sets xff_num_trusted_hops: 1 on the gateway with an EnvoyFilter;
# MeshConfig gatewayTopology.numTrustedProxies is the same setting (istiod's buildGatewayConnectionManager).
TRUST_ONE_HOP = mesh_config("{gatewayTopology: {numTrustedProxies: 1}}")


def test_gateway_https_redirect_honours_a_trusted_x_forwarded_proto(mesh: MeshProcess) -> None:
    """gatewayCases 'https with x-forwarded-proto' (istio#27315) and 'http return 400 with with
    x-forwarded-proto https when vs port specify https' (istio#34609): behind one trusted hop, a request
    whose X-Forwarded-Proto is https is not redirected but routed: to b's http port it is served (200);
    to the https port of `secure` it arrives as plaintext at a TLS server, which answers 400. An
    untrusted X-Forwarded-Proto is overwritten, and the request redirected (301)."""
    xfp = [("X-Forwarded-Proto", "https")]
    with applied(mesh, gateway(extra=HTTPS_REDIRECT), gateway_vs(FQDN, HTTP)):
        assert via_gateway(mesh, FQDN, headers=xfp).status == 301
        with applied(mesh, TRUST_ONE_HOP):
            assert echo_body(via_gateway(mesh, FQDN, headers=xfp))["port"] == TARGET[HTTP]
            assert via_gateway(mesh, FQDN).status == 301  # plain http from the trusted hop
    with applied(mesh, gateway(extra=HTTPS_REDIRECT), gateway_vs(SECURE_FQDN, 443), TRUST_ONE_HOP):
        resp = via_gateway(mesh, SECURE_FQDN, headers=xfp)
        assert resp.status == 400 and b"HTTP request to an HTTPS server" in resp.body, resp.to_dict()


def test_gateway_https_re_encrypt(mesh: MeshProcess, ca: t.Pem) -> None:
    """gatewayCases 'HTTPS re-encrypt': an HTTPS server (SIMPLE, credentialName) routes to the https port
    of `secure`, and a DestinationRule in the gateway's namespace (originateTLSTmpl: SIMPLE,
    insecureSkipVerify) makes the gateway originate TLS again: the TLS server behind the sidecar
    answers."""
    originate = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: secure-originate, namespace: istio-system}}
    spec:
      host: {SECURE_FQDN}
      trafficPolicy: {{tls: {{mode: SIMPLE, insecureSkipVerify: true}}}}
    """
    tls = "\n        tls: {mode: SIMPLE, credentialName: cred}"
    docs = [
        t.tls_secret("cred", t.issue(ca, [SECURE_FQDN])),
        gateway(f'"{SECURE_FQDN}"', tls, 443, "HTTPS"),
        gateway_vs(SECURE_FQDN, 443),
        originate,
    ]
    with applied(mesh, *docs):
        status, _, raw = t.https_get(mesh.gateway_address(443), SECURE_FQDN, "/re-encrypt", ca)
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen["host"] == SECURE_FQDN and seen["alpn"] in (None, "http/1.1"), seen


def test_gateway_tcp_server_with_proxy_protocol(mesh: MeshProcess) -> None:
    """ProxyProtocolFilterAppliedGatewayCase: a TCP Gateway server and a `tcp` route to b's tcp port; a
    client sends a PROXY v1 header then its message. With the PROXY listener filter (istio adds it with
    an EnvoyFilter; MeshConfig gatewayTopology.proxyProtocol is the setting that means it) the header is
    consumed and only the message echoed; without it the header is carried as data."""
    route = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: b-tcp}}
    spec:
      gateways: [gateway]
      hosts: ["*"]
      tcp:
      - match: [{{port: 31400}}]
        route: [{{destination: {{host: {FQDN}, port: {{number: {TCP}}}}}}}]
    """
    message = b"This is a test TCP message\n"

    def exchange() -> bytes | None:
        host, _, port = mesh.gateway_address(31400).rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"PROXY TCP4 10.1.2.3 " + host.encode() + b" 40000 " + port.encode() + b"\r\n")
                s.sendall(message)
                s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(4096):
                    out += chunk
            return out
        except ConnectionResetError:
            return None  # the gateway's listener is being replaced (new listener filters): retry

    def send() -> bytes:
        # Istio's ExecuteTrafficTest retries each call until it passes, as here (bounded).
        return wait_for("an answer from the TCP gateway", exchange, timeout=10)

    with applied(mesh, gateway(port=31400, protocol="TCP"), route):
        plain = send()
        with applied(mesh, mesh_config("{gatewayTopology: {proxyProtocol: {}}}")):
            consumed = send()
    assert b"PROXY TCP4" in plain, plain
    assert b"PROXY TCP4" not in consumed and consumed.strip().endswith(message.strip()), consumed


# --- autoPassthroughCases ------------------------------------------------------------------------------


def test_auto_passthrough_gateway_is_refused(mesh: MeshProcess) -> None:
    """autoPassthroughCases: Istio checks that no SNI/ALPN reaches an unexpected destination through an
    AUTO_PASSTHROUGH server, under each mesh-wide mTLS mode. Isthmus does not implement AUTO_PASSTHROUGH
    (multi-network SNI-DNAT) and refuses the Gateway whole, so the server never exists: checked here."""
    config = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default, namespace: istio-system}
    spec: {mtls: {mode: STRICT}}
    ---
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: cross-network-gateway-test, namespace: istio-system}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - port: {number: 443, name: tls, protocol: TLS}
        tls: {mode: AUTO_PASSTHROUGH}
        hosts: ["*.local"]
    """
    result = mesh.apply(textwrap.dedent(config), expect_ok=False)
    assert result["code"] != 200 and "AUTO_PASSTHROUGH" in json.dumps(result), result
    names = {r["metadata"]["name"] for r in mesh.resources("Gateway")}
    assert "cross-network-gateway-test" not in names
    assert not {r["metadata"]["name"] for r in mesh.resources("PeerAuthentication")}
