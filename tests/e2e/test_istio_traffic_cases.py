"""Istio's integration traffic cases (tests/integration/pilot/common/routing.go), re-expressed against a
real Isthmus mesh: echo workloads behind sidecars, requests sent through the client's sidecar as
`isthmus curl` sends them, and the default ingress gateway.

Each test names the routing.go cases it ports. Cases the other e2e files already check (weighted
shifting, plain header add/set, rewrite of authority, direct responses, mirrors, JWT claim routes,
`ns/host` gateway binding, header/query/source-IP consistent hashing, ...) are not repeated here.

Where Isthmus cannot follow Istio by design (explicit-proxy sidecars: the Host header, not the
connection's original destination, says where a request goes; no DNS capture), the test keeps the
part of the case that still means something and says so. Headless services' per-pod names are in
test_headless_pods.py.
"""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import socket
import socketserver
import tempfile
import textwrap
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

FQDN = "b.default.svc.cluster.local"

# b: three single-instance versions, so an instance is named by its version (the TCP echo answers
# with it too); ports http 80 -> 8080, http2 85 -> 8085 (h2 to the app), tcp 9000 (a TCP echo).
# a: the client, itself a service (self calls). A Gateway starts the default ingress gateway.
MESH = """
# test_use_client_protocol_keeps_the_clients_http_version reads the sidecars' inbound connection
# managers' counters, which Envoy keeps only when the stats matcher includes them, as in Istio.
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig:
    proxyStatsMatcher: {inclusionPrefixes: [http.inbound_]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http2, port: 85, targetPort: 8085}
  - {name: tcp, port: 9000, targetPort: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  selector: {app: a}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b-v1, labels: {app: b, version: v1}}
spec: {ports: [8080, 8085, 9000], command: [isthmus, echo, --tcp, "9000"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b-v2, labels: {app: b, version: v2}}
spec: {ports: [8080, 8085, 9000], command: [isthmus, echo, --tcp, "9000"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b-v3, labels: {app: b, version: v3}}
spec: {ports: [8080, 8085, 9000], command: [isthmus, echo, --tcp, "9000"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, labels: {app: a, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: base}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [base.example.net]
"""

B_VERSIONS = {"v1", "v2", "v3"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-traffic"), MESH) as m:
        yield m


def curl(mesh: MeshProcess, url: str, **kw: Any) -> Response:
    return mesh.curl("a", url, **kw)


def body_of(mesh: MeshProcess, url: str, **kw: Any) -> dict[str, Any]:
    return echo_body(curl(mesh, url, **kw))


def vs(http: str, hosts: str = "[b]", name: str = "b") -> str:
    """A VirtualService with the given `http:` rules (YAML, indented as list items at column 0)."""
    rules = textwrap.indent(textwrap.dedent(http).strip(), "  ")
    return f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: {hosts}\n  http:\n{rules}\n"


def tcp_line(mesh: MeshProcess, url: str, body: str | bytes) -> Response:
    return sync.request(url, proxy=mesh.proxy_url("a"), body=body)


def inbound_stats(mesh: MeshProcess, workload: str, needle: str) -> int:
    """The sum of a sidecar's inbound HTTP stats whose name contains `needle`."""
    p = mesh.proxy(workload)
    url = f"http://{p['ip']}:{p['adminPort']}/stats?filter=downstream_rq_http"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    counts = [
        int(line.rsplit(":", 1)[1])
        for line in text.splitlines()
        if line.startswith("http.inbound_") and needle in line
    ]
    assert counts, f"{workload}'s sidecar keeps no inbound {needle} counter (MeshConfig proxyStatsMatcher)"
    return sum(counts)


def h2c_get(proxy_url: str, authority: str, path: str = "/") -> tuple[int, dict[str, Any]]:
    """One HTTP/2 (prior knowledge, cleartext) GET through a sidecar's outbound port."""
    import h2.config
    import h2.connection
    import h2.events

    host, _, port = proxy_url.removeprefix("http://").rpartition(":")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [(":method", "GET"), (":authority", authority), (":scheme", "http"), (":path", path)],
            end_stream=True,
        )
        s.sendall(conn.data_to_send())
        status, body, done = 0, b"", False
        while not done:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, stream)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    done = True
            s.sendall(conn.data_to_send())
    return status, json.loads(body) if status == 200 else {}


# --- virtualServiceCases: header operations ---------------------------------------------------------


def test_authority_set_at_route_and_destination_levels(mesh: MeshProcess) -> None:
    """'set authority header', 'set host header in destination', 'set authority header in destination',
    'set host header in route and destination', '... in route and multi destination', 'set host header
    multi destination': `Host` and `:authority` both rewrite the authority; the route's wins."""
    rules = vs(
        """
        - match: [{uri: {prefix: /route-only}}]
          headers: {request: {set: {":authority": my-custom-authority}}}
          route: [{destination: {host: b, port: {number: 80}}}]
        - match: [{uri: {prefix: /dest-host}}]
          route:
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {Host: my-custom-authority}}}
        - match: [{uri: {prefix: /dest-authority}}]
          route:
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {":authority": my-custom-authority}}}
        - match: [{uri: {prefix: /both}}]
          headers: {request: {set: {":authority": route-authority}}}
          route:
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {Host: dest-authority}}}
        - match: [{uri: {prefix: /route-multi}}]
          headers: {request: {set: {":authority": route-authority}}}
          route:
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {Host: dest-authority}}}
            weight: 50
          - destination: {host: b, port: {number: 80}}
            weight: 50
        - match: [{uri: {prefix: /multi}}]
          route:
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {Host: dest-authority}}}
            weight: 50
          - destination: {host: b, port: {number: 80}}
            headers: {request: {set: {Host: dest-authority}}}
            weight: 50
        - route: [{destination: {host: b, port: {number: 80}}}]
        """
    )
    with applied(mesh, rules):

        def hosts(path: str, n: int = 1) -> set[str]:
            return {body_of(mesh, "http://b" + path)["host"] for _ in range(n)}

        assert hosts("/route-only") == {"my-custom-authority"}
        assert hosts("/dest-host") == {"my-custom-authority"}
        assert hosts("/dest-authority") == {"my-custom-authority"}
        assert hosts("/both") == {"route-authority"}
        # Either weighted destination: the route's authority beats the destination's.
        assert hosts("/route-multi", 8) == {"route-authority"}
        assert hosts("/multi", 8) == {"dest-authority"}
        assert hosts("/other") == {"b"}


# --- virtualServiceCases: redirects and rewrites ----------------------------------------------------


def test_redirects_keep_the_query_and_derive_the_port(mesh: MeshProcess) -> None:
    """'redirect' (followed: the query survives), 'redirect port and scheme' (https with the request's
    port 80, which is not https's default, so it is written), 'redirect request port' (the port is
    written only when the request named it or it is not the scheme's default)."""
    rules = vs(
        """
        - match: [{uri: {exact: /foo}}]
          redirect: {uri: /new/path}
        - match: [{uri: {exact: /new/path}}]
          route: [{destination: {host: b, port: {number: 80}}}]
        - match: [{uri: {exact: /scheme}}]
          redirect: {derivePort: FROM_REQUEST_PORT, scheme: https}
        - match: [{uri: {exact: /port}}]
          redirect: {derivePort: FROM_REQUEST_PORT}
        """
    )
    with applied(mesh, rules):
        first = curl(mesh, "http://b/foo?key=value")
        assert (first.status, first.header("location")) == (301, "http://b/new/path?key=value")
        followed = body_of(mesh, first.header("location") or "")
        assert followed["path"] == "/new/path?key=value"

        def location(url: str, host: str | None = None) -> tuple[int, str | None]:
            resp = curl(mesh, url, headers=[("Host", host)] if host else None)
            return resp.status, resp.header("location")

        assert location("http://b/scheme") == (301, "https://b:80/scheme")
        assert location("http://b/port", "b") == (301, "http://b/port")  # to default
        assert location("http://b/port", "b:80") == (301, "http://b:80/port")  # to default with host port
        assert location("http://b:85/port", "b:85") == (301, "http://b:85/port")  # non-default with host port
        # ('non-default' with Host "b" has no meaning here: with an explicit proxy the Host is the
        # destination, so "b" is port 80.)


def test_rewrite_uri_keeps_the_query_and_drops_the_fragment(mesh: MeshProcess) -> None:
    """'rewrite uri': /foo?key=value#hash reaches the backend as /new/path?key=value."""
    rules = vs(
        """
        - match: [{uri: {exact: /foo}}]
          rewrite: {uri: /new/path}
          route: [{destination: {host: b, port: {number: 80}}}]
        - route: [{destination: {host: b, port: {number: 80}}}]
        """
    )
    with applied(mesh, rules):
        assert body_of(mesh, "http://b/foo?key=value#hash")["path"] == "/new/path?key=value"
        assert body_of(mesh, "http://b/foo/x?key=value")["path"] == "/foo/x?key=value"  # exact only


def test_cors_preflight_get_and_no_origin(mesh: MeshProcess) -> None:
    """'cors': a preflight from an allowed origin is answered by the sidecar even for a method it does
    not list (the browser enforces allow-methods); a GET carries allow-origin; no Origin, no header."""
    rules = vs(
        """
        - corsPolicy:
            allowOrigins: [{exact: cors.com}]
            allowMethods: [POST, GET]
            allowCredentials: false
            allowHeaders: [X-Foo-Bar, X-Foo-Baz]
            maxAge: 24h
          route: [{destination: {host: b, port: {number: 80}}}]
        """
    )
    with applied(mesh, rules):
        pre = curl(
            mesh,
            "http://b/",
            method="OPTIONS",
            headers=[("Origin", "cors.com"), ("Access-Control-Request-Method", "DELETE")],
        )
        get = curl(mesh, "http://b/", headers=[("Origin", "cors.com")])
        plain = curl(mesh, "http://b/")
    assert pre.status == 200 and pre.body == b""  # not forwarded: no echo body
    h = pre.header_map()
    assert h["access-control-allow-origin"] == "cors.com"
    assert h["access-control-allow-methods"] == "POST,GET"
    assert h["access-control-allow-headers"] == "X-Foo-Bar,X-Foo-Baz"
    assert h["access-control-max-age"] == "86400"
    assert "access-control-allow-credentials" not in h
    assert get.status == 200 and get.header("access-control-allow-origin") == "cors.com"
    assert plain.status == 200 and plain.header("access-control-allow-origin") is None


def test_retry_conditions_and_idle_timeout_only_rules_are_accepted(mesh: MeshProcess) -> None:
    """'retry conditions' and destinationRuleCases 'only idletimeout specified in DR': config that
    only has to be valid Envoy config (apply fails on a NACK) and keep traffic flowing."""
    rules = vs(
        """
        - route: [{destination: {host: b, port: {number: 80}}}]
          retries:
            attempts: 3
            perTryTimeout: 2s
            retryOn: gateway-error,connect-failure,refused-stream,reset-before-request
            retryRemoteLocalities: true
        """
    )
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: idletimeout-dr}
    spec:
      host: b
      trafficPolicy:
        tls: {mode: DISABLE}
        connectionPool: {http: {idleTimeout: 100s}}
    """
    with applied(mesh, rules, dr):
        result = mesh.load("a", "http://b/", 20)
        assert result.codes == {"200": 20}, result.codes
        status, body = h2c_get(mesh.proxy_url("a"), "b")
        assert status == 200 and body["version"] in B_VERSIONS


# --- virtualServiceCases: faults and matches ------------------------------------------------------


def test_fault_abort_http_and_grpc_status_and_catch_all_short_circuit(mesh: MeshProcess) -> None:
    """'fault abort' (418), 'fault abort gRPC' (UNAVAILABLE, as a gRPC trailers-only answer to a gRPC
    request on the HTTP/2 port) and 'catch all route short circuit the other routes' (a `regex: .*`
    URI match is a catch-all: the rule after it is never reached)."""
    grpc = vs(
        """
        - match: [{port: 85}]
          route: [{destination: {host: b, port: {number: 85}}}]
          fault: {abort: {percentage: {value: 100}, grpcStatus: UNAVAILABLE}}
        - route: [{destination: {host: b, port: {number: 80}}}]
          fault: {abort: {percentage: {value: 100}, httpStatus: 418}}
        """
    )
    with applied(mesh, grpc):
        assert curl(mesh, "http://b/").status == 418
        resp = curl(
            mesh,
            "http://b:85/echo.Echo/Call",
            method="POST",
            body=b"",
            headers=[("content-type", "application/grpc")],
        )
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.header("grpc-status") == "14"  # codes.Unavailable
    catch_all = vs(
        """
        - match: [{uri: {regex: ".*"}}]
          route: [{destination: {host: b, port: {number: 80}}}]
          fault: {abort: {percentage: {value: 100}, httpStatus: 418}}
        - route: [{destination: {host: b, port: {number: 80}}}]
        """
    )
    with applied(mesh, catch_all):
        assert {curl(mesh, "http://b" + path).status for path in ("/", "/x/y?z=1")} == {418}
    assert curl(mesh, "http://b/").status == 200


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        # 'without headers': only end-user=jason passes the 403 rule.
        ("{exact: jason}", {"jason": 200, "": 403, "not-jason": 403, None: 403}),
        # 'without headers regex convert to present_match': `regex: "*"` means "present".
        ('{regex: "*"}', {"jason": 200, "": 200, "not-jason": 200, None: 403}),
        # 'without headers regex match any string': `.*` matches an absent header too.
        ('{regex: ".*"}', {"jason": 200, "": 200, "not-jason": 200, None: 200}),
    ],
    ids=["exact", "regex-star-is-present", "regex-dot-star-matches-absent"],
)
def test_without_headers(mesh: MeshProcess, matcher: str, expected: dict[str | None, int]) -> None:
    rules = vs(
        f"""
        - match: [{{withoutHeaders: {{end-user: {matcher}}}}}]
          route: [{{destination: {{host: b, port: {{number: 80}}}}}}]
          fault: {{abort: {{percentage: {{value: 100}}, httpStatus: 403}}}}
        - route: [{{destination: {{host: b, port: {{number: 80}}}}}}]
        """
    )
    with applied(mesh, rules):
        seen = {
            value: curl(
                mesh, "http://b/foo", headers=[("end-user", value)] if value is not None else None
            ).status
            for value in expected
        }
    assert seen == expected


# --- hostCases, selfCallsCases, trafficLoopCases, protocol cases -----------------------------------


def test_host_header_forms(mesh: MeshProcess) -> None:
    """hostCases: every name form of the service, with and without its port, reaches it through the
    mesh (mTLS: the backend sees the client certificate in x-forwarded-client-cert); the pod address
    with its target port is passed through (plaintext), as Istio does for the IP case.

    Not ported here: 'some-instances.<name>' forms (headless services: test_headless_pods.py) and
    '<name>:12345', which Istio still sends to the service the connection was opened to; an explicit
    proxy routes by the Host header, so that names no service here."""
    forms = [
        FQDN,
        f"{FQDN}:80",
        "b.default.svc",
        "b.default.svc:80",
        "b",
        "b:80",
        "b.default",
        "b.default:80",
    ]
    for host in forms:
        body = body_of(mesh, "http://b/", headers=[("Host", host)])
        assert body["host"] == host and body["port"] == 8080, (host, body)
        assert "x-forwarded-client-cert" in body["headers"], (host, body["headers"])
    ip = mesh.instance("b-v2")["ip"]
    body = body_of(mesh, f"http://{ip}:8080/")
    assert body["version"] == "v2" and "x-forwarded-client-cert" not in body["headers"]


def test_self_call_through_the_service(mesh: MeshProcess) -> None:
    """selfCallsCases 'to service': a pod calling its own service goes through both sidecars."""
    body = body_of(mesh, "http://a/")
    assert body["workload"] == "a"
    assert body["headers"].get("x-envoy-attempt-count") == "1"


def test_traffic_to_the_proxy_ports_does_not_loop(mesh: MeshProcess) -> None:
    """trafficLoopCases: a request (or tunnel) to another pod's, or one's own, 15001 or 15006 fails,
    and at once: passed through to an explicit proxy it would be passed through again, forever."""
    targets = [mesh.instance("b-v1")["ip"], mesh.instance("a")["ip"]]
    for ip in targets:
        for port in (15001, 15006):
            resp = curl(mesh, f"http://{ip}:{port}/", timeout=5)
            assert resp.status == 503 and resp.latency_ms < 2000, (ip, port, resp.to_dict())
            tunnel = tcp_line(mesh, f"tcp://{ip}:{port}", "ping")
            assert tunnel.status == 503, (ip, port, tunnel.to_dict())
    # The sidecars are fine, and other pod ports still pass through.
    assert curl(mesh, "http://b/").status == 200
    assert curl(mesh, f"http://{targets[0]}:8080/").status == 200


def test_http10_to_an_http_port_is_refused_with_426(mesh: MeshProcess) -> None:
    """protocolSniffingCases 'http10 to http': HTTP/1.0 sent as raw bytes (a CONNECT tunnel here) to a
    port declared HTTP goes through the HTTP filters, which refuse HTTP/1.0."""
    resp = tcp_line(mesh, "tcp://b:80", b"GET / HTTP/1.0\r\n\r\n ")
    assert resp.status == 200 and resp.body == b"HTTP/1.1 426 Upgrade Required", resp.to_dict()
    # The TCP port answers the same bytes as plain data.
    resp = tcp_line(mesh, "tcp://b:9000", "GET / HTTP/1.0")
    assert resp.body.split(b" ", 1)[1] == b"GET / HTTP/1.0"


def test_use_client_protocol_keeps_the_clients_http_version(mesh: MeshProcess) -> None:
    """useClientProtocolCases 'with h2' / 'with h1': with useClientProtocol the client sidecar speaks
    to the server sidecar, and that one to the app, in the protocol the app used; without it, an HTTP
    port gets HTTP/1.1."""

    def h2_at_server(n: int, app_protocol: str) -> tuple[int, int]:
        """(h2, h1) requests b's sidecars received for n HTTP/2 GETs from a."""
        names = ("b-v1", "b-v2", "b-v3")
        h2_0 = sum(inbound_stats(mesh, w, "http2_total") for w in names)
        h1_0 = sum(inbound_stats(mesh, w, "http1_total") for w in names)
        for _ in range(n):
            status, body = h2c_get(mesh.proxy_url("a"), "b")
            assert status == 200 and body["protocol"] == app_protocol
        return (
            sum(inbound_stats(mesh, w, "http2_total") for w in names) - h2_0,
            sum(inbound_stats(mesh, w, "http1_total") for w in names) - h1_0,
        )

    assert h2_at_server(6, "HTTP/1.1") == (0, 6)  # an HTTP port: h1 to the server sidecar and the app
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: use-client-protocol}
    spec:
      host: b
      trafficPolicy:
        tls: {mode: DISABLE}
        connectionPool: {http: {useClientProtocol: true}}
    """
    with applied(mesh, dr):
        # The DestinationRule's pool applies to b's inbound cluster too (istiod's buildInboundCluster), so
        # the app gets HTTP/2 as well: check.Protocol("HTTP/2.0") in Istio.
        assert h2_at_server(6, "HTTP/2") == (6, 0)
        assert body_of(mesh, "http://b/")["protocol"] == "HTTP/1.1"  # h1 client: h1 all the way


# --- serviceCases, externalNameCases ---------------------------------------------------------------


def test_overlapping_services(mesh: MeshProcess) -> None:
    """serviceCases 1-4: other Services over b's pods, sharing its service port, its target port, or
    neither; each reaches the right target port with the right protocol."""
    services = """
    apiVersion: v1
    kind: Service
    metadata: {name: b-alt-1}
    spec:
      selector: {app: b}
      ports: [{name: http, port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: b-alt-2}
    spec:
      selector: {app: b}
      ports: [{name: tcp, port: 80, targetPort: 9000}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: b-alt-3}
    spec:
      selector: {app: b}
      ports: [{name: http, port: 12345, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: b-alt-4}
    spec:
      selector: {app: b}
      ports: [{name: http, port: 12346, targetPort: 8085}]
    """
    with applied(mesh, services):
        assert body_of(mesh, "http://b-alt-1/")["port"] == 8080
        tunnel = tcp_line(mesh, "tcp://b-alt-2:80", "hello")
        assert tunnel.status == 200 and tunnel.body.split(b" ", 1)[1] == b"hello"  # the TCP echo
        assert body_of(mesh, "http://b-alt-3:12345/")["port"] == 8080
        assert body_of(mesh, "http://b-alt-4:12346/")["port"] == 8085
    assert curl(mesh, "http://b-alt-3:12345/").status != 200  # gone with its Service


def test_external_name_service_to_a_mesh_service(mesh: MeshProcess) -> None:
    """externalNameCases 'without port' / 'with port': an ExternalName Service naming b reaches b
    over the mesh (mTLS)."""
    services = """
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
    with applied(mesh, services):
        for name in ("b-ext-no-port", "b-ext-port"):
            body = body_of(mesh, f"http://{name}/")
            assert body["port"] == 8080 and "x-forwarded-client-cert" in body["headers"]


# --- consistentHashCases ------------------------------------------------------------------------


def _hash_dr(consistent_hash: str) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: b}}
    spec:
      host: b
      trafficPolicy: {{loadBalancer: {{consistentHash: {consistent_hash}}}}}
    """


def _tcp_versions(mesh: MeshProcess, n: int) -> Counter[str]:
    out: Counter[str] = Counter()
    for i in range(n):
        resp = tcp_line(mesh, "tcp://b:9000", f"ping {i}")
        assert resp.status == 200, resp.to_dict()
        version, _, line = resp.text.partition(" ")
        assert line == f"ping {i}"
        out[version] += 1
    return out


def test_consistent_hash_tcp_source_ip_and_no_hash(mesh: MeshProcess) -> None:
    """'no consistent' (the negative: without a hash, requests spread) and 'tcp source ip': a tunnel's
    connections from one pod all land on one instance."""
    spread = mesh.load("a", "http://b/?some-query-param=bar", 12, headers=[("x-some-header", "baz")])
    assert len(spread.versions) > 1, spread.versions
    assert len(_tcp_versions(mesh, 16)) > 1
    with applied(mesh, _hash_dr("{useSourceIp: true}")):
        pinned = _tcp_versions(mesh, 16)
    assert len(pinned) == 1, pinned


def test_consistent_hash_cookie_with_ttl_is_issued_and_followed(mesh: MeshProcess) -> None:
    """'http cookie with ttl' (skipped in Istio for want of cookie propagation in its client): a
    request without the cookie gets one set by the sidecar; sent back, it pins the instance."""
    with applied(mesh, _hash_dr("{httpCookie: {name: session-cookie, ttl: 3600s}}")):
        first = curl(mesh, "http://b/")
        cookie = first.header("set-cookie") or ""
        assert cookie.startswith("session-cookie=") and "Max-Age=3600" in cookie, first.headers
        pair = cookie.split(";", 1)[0]
        pinned = mesh.load("a", "http://b/", 12, headers=[("cookie", pair)])
        assert pinned.codes == {"200": 12} and set(pinned.versions) == {echo_body(first)["version"]}
        # Without the cookie, each new connection gets a cookie of its own (Envoy derives it from the
        # downstream address), and they spread.
        fresh = [curl(mesh, "http://b/") for _ in range(8)]
        assert len({r.header("set-cookie") for r in fresh}) == 8
        assert len({echo_body(r)["version"] for r in fresh}) > 1


# --- gatewayCases --------------------------------------------------------------------------------


def _gateway(hosts: str = '"*"', extra: str = "", port: int = 80, protocol: str = "HTTP") -> str:
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


def _gateway_vs(host: str, port: int, dest: str = FQDN, scheme: str | None = None) -> str:
    match = (
        f"""
        match: [{{scheme: {{exact: {scheme}}}}}]
        headers: {{request: {{add: {{istio-custom-header: user-defined-value}}}}}}"""
        if scheme
        else ""
    )
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: "{host.replace("*", "wild")}"}}
    spec:
      gateways: [gateway]
      hosts: ["{host}"]
      http:
      - route: [{{destination: {{host: "{dest}", port: {{number: {port}}}}}}}]{match}
    """


def _via_gateway(mesh: MeshProcess, host: str, path: str = "/", port: int = 80, **kw: Any) -> Response:
    headers = [("Host", host), *kw.pop("headers", [])]
    return sync.request(f"http://{mesh.gateway_address(port)}{path}", headers=headers, **kw)


def test_gateway_404_and_https_redirects(mesh: MeshProcess) -> None:
    """'404' (a host no VirtualService serves), 'https redirect' and 'http redirect when vs port
    specify https' (the server's httpsRedirect answers before any route)."""
    with applied(mesh, _gateway()):
        assert _via_gateway(mesh, "foo.bar").status == 404
    redirect = "\n        tls: {httpsRedirect: true}"
    with applied(mesh, _gateway(extra=redirect)):
        resp = _via_gateway(mesh, FQDN)
        assert (resp.status, resp.header("location")) == (301, f"https://{FQDN}/")
    with applied(mesh, _gateway(extra=redirect), _gateway_vs(FQDN, 443)):
        resp = _via_gateway(mesh, FQDN, "/x")
        assert (resp.status, resp.header("location")) == (301, f"https://{FQDN}/x")


def test_gateway_client_protocol_and_wildcard_hosts_with_any_port(mesh: MeshProcess) -> None:
    """'client protocol - http1' (the gateway reaches an HTTP port with HTTP/1.1, an HTTP/2 port with
    HTTP/2) and 'wildcard hostname' (no port, the right port, a random port in the Host: all match)."""
    with applied(mesh, _gateway(), _gateway_vs(FQDN, 80)):
        body = echo_body(_via_gateway(mesh, FQDN))
        assert body["protocol"] == "HTTP/1.1" and body["port"] == 8080
        # Not a sidecar: it must not look like a TCP-proxied request either.
        assert "x-envoy-peer-metadata" not in body["headers"]
    with applied(mesh, _gateway(), _gateway_vs(FQDN, 85)):
        body = echo_body(_via_gateway(mesh, FQDN))
        assert body["protocol"] == "HTTP/2" and body["port"] == 8085
    with applied(mesh, _gateway('"*.example.com"'), _gateway_vs("*.example.com", 80)):
        for host in ("foo.example.com", "foo.example.com:80", "foo.example.com:12345"):
            assert _via_gateway(mesh, host).status == 200, host
        assert _via_gateway(mesh, "foo.example.org").status == 404


def test_gateway_scheme_match_over_http_and_https_with_a_credential(mesh: MeshProcess) -> None:
    """'HTTP', 'HTTP scheme match', 'HTTPS', 'HTTPS scheme match': a route matching scheme http serves
    plain HTTP; one matching https serves TLS (SIMPLE, credentialName naming a Secret) and not HTTP."""
    from tests.e2e import tlstools as t

    with applied(mesh, _gateway(), _gateway_vs(FQDN, 80, scheme="http")):
        body = echo_body(_via_gateway(mesh, FQDN))
        assert body["headers"].get("istio-custom-header") == "user-defined-value"
    with applied(mesh, _gateway(), _gateway_vs(FQDN, 80, scheme="https")):
        assert _via_gateway(mesh, FQDN).status == 404

    ca = t.make_ca()
    tls = "\n        tls: {mode: SIMPLE, credentialName: cred}"
    docs = [t.tls_secret("cred", t.issue(ca, [FQDN])), _gateway(f'"{FQDN}"', tls, 443, "HTTPS")]
    with applied(mesh, *docs, _gateway_vs(FQDN, 80, scheme="https")):
        status, _, raw = t.https_get(mesh.gateway_address(443), FQDN, "/secure", ca)
        assert status == 200, raw
        body = json.loads(raw)
        assert (
            body["path"] == "/secure" and body["headers"].get("istio-custom-header") == "user-defined-value"
        )
        assert body["headers"].get("x-forwarded-proto") == "https"

    # 'cipher suite' (every valid suite and a fake one, which the control plane drops) and 'optional
    # mTLS' (a client without a certificate is served).
    ciphers = ", ".join(["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "fake"])
    for extra in (
        f"\n        tls: {{mode: SIMPLE, credentialName: cred, cipherSuites: [{ciphers}]}}",
        "\n        tls: {mode: OPTIONAL_MUTUAL, credentialName: cred-ca}",
    ):
        docs = [
            t.tls_secret("cred", t.issue(ca, [FQDN])),
            t.tls_secret("cred-ca", t.issue(ca, [FQDN]), ca=ca),
            _gateway(f'"{FQDN}"', extra, 443, "HTTPS"),
        ]
        with applied(mesh, *docs, _gateway_vs(FQDN, 80)):
            status, _, raw = t.https_get(mesh.gateway_address(443), FQDN, "/", ca)
            assert status == 200, (extra, raw)


def test_gateway_tcp_server_routes_to_a_tcp_port(mesh: MeshProcess) -> None:
    """A TCP server on the gateway with a `tcp` route (the TCP gateway of ProxyProtocolFilterApplied-
    GatewayCase, without its EnvoyFilter): bytes reach b's TCP echo and come back."""
    route = f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: b-tcp}}
    spec:
      gateways: [gateway]
      hosts: ["*"]
      tcp:
      - match: [{{port: 31400}}]
        route: [{{destination: {{host: {FQDN}, port: {{number: 9000}}}}}}]
    """
    with applied(mesh, _gateway(port=31400, protocol="TCP"), route):
        host, _, port = mesh.gateway_address(31400).rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"This is a test TCP message\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                answer += chunk
    version, _, line = answer.decode().strip().partition(" ")
    assert version in B_VERSIONS and line == "This is a test TCP message", answer


def test_gateway_trusts_the_configured_number_of_proxies_in_xff(mesh: MeshProcess) -> None:
    """XFFGatewayCase: with gatewayTopology.numTrustedProxies 2, the client address is the second
    from the right of X-Forwarded-For (x-envoy-external-address), and the gateway appends the peer."""
    topology = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      defaultConfig: {gatewayTopology: {numTrustedProxies: 2}}
    """
    xff = [("X-Forwarded-For", "56.5.6.7, 72.9.5.6, 98.1.2.3")]
    with applied(mesh, _gateway(), _gateway_vs(FQDN, 80)):
        untrusted = echo_body(_via_gateway(mesh, FQDN, headers=xff))["headers"]
        with applied(mesh, topology):
            trusted = echo_body(_via_gateway(mesh, FQDN, headers=xff))["headers"]
    assert trusted.get("x-envoy-external-address") == "72.9.5.6", trusted
    hops = [x.strip() for x in trusted["x-forwarded-for"].split(",")]
    assert len(hops) == 4 and hops[1] == "72.9.5.6", hops
    # Without it (the default, 0), the peer itself is the client.
    assert untrusted.get("x-envoy-external-address") != "72.9.5.6", untrusted


def test_gateway_binds_a_unix_socket_and_an_address_the_host_lacks(mesh: MeshProcess) -> None:
    """Gateway `bind`: a `unix://` path with port 0 is a listener on that socket (istiod's BuildAddress
    pipe) that serves the gateway's routes; an IP the host does not have (192.0.2.1, TEST-NET-1) does not
    get the gateway's LDS update rejected ("cannot bind"), so the other servers keep working."""
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-gw-"))  # a short path: sun_path holds 107 bytes
    sock = workdir / "gw.sock"
    gateway = f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: gateway}}
    spec:
      selector: {{istio: ingressgateway}}
      servers:
      - port: {{number: 80, name: http, protocol: HTTP}}
        hosts: ["*"]
      - port: {{number: 0, name: http-uds, protocol: HTTP}}
        bind: unix://{sock}
        hosts: ["*"]
      - port: {{number: 8081, name: http-elsewhere, protocol: HTTP}}
        bind: 192.0.2.1
        hosts: ["*"]
    """
    try:
        with applied(mesh, gateway, _gateway_vs(FQDN, 80)):  # apply raises on a NACK
            listeners = {
                lst["port"]: lst["address"]
                for lst in mesh.proxy("istio-ingressgateway", namespace="istio-system")["listeners"]
            }
            assert listeners[0] == f"unix://{sock}" and listeners[8081] == "192.0.2.1:8081", listeners
            assert echo_body(_via_gateway(mesh, FQDN))["port"] == 8080
            conn = _UnixHTTPConnection(str(sock))
            try:
                conn.request("GET", "/over-uds", headers={"Host": FQDN})
                resp = conn.getresponse()
                body = json.loads(resp.read())
            finally:
                conn.close()
            assert (resp.status, body["path"]) == (200, "/over-uds"), body
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_apply_wait_names_the_secrets_a_stale_proxy_waits_for(mesh: MeshProcess) -> None:
    """A DestinationRule naming client certificate files that do not exist (or a credentialName with no
    Secret) keeps the cluster warming, so the proxies never ACK that CDS (Istio's too). `--wait` then
    says which proxies lag and the secret each waits for, with why; status shows it as well."""
    files = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: a-files}
    spec:
      host: a.default.svc.cluster.local
      trafficPolicy:
        tls: {mode: MUTUAL, clientCertificate: /nonexistent/cert.pem, privateKey: /nonexistent/key.pem}
    """
    text = textwrap.dedent(files)
    try:
        result = mesh.apply(text, wait=2.0, expect_ok=False)
        assert result["code"] == 200 and result["synced"] is False, result
        pending = {p["proxy"]: p for p in result["pending"]}
        client = pending["a-0.default"]
        assert client["sync"].get("CDS") == "STALE", client
        (name, why), *_ = client["secretsWaiting"].items()
        assert name.startswith("file-cert:/nonexistent/cert.pem"), client
        assert why == "cannot read /nonexistent/cert.pem: No such file or directory", client
        status = mesh.proxy("a")
        assert status["secretsWaiting"] == client["secretsWaiting"], status
    finally:
        mesh.delete(text)
    # Envoy drops its subscription to the secret once the cluster that named it is gone: shortly after
    # the ACK, on its own SDS stream. (Only this rule's secrets: a listener another test removed keeps its
    # credentials subscribed while it drains.)
    mesh.wait_settled()

    def still_waiting() -> dict[str, list[str]]:
        return {
            p["instance"]: names
            for p in mesh.status()["proxies"]
            if (names := [n for n in p["secretsWaiting"] if n.startswith("file-cert:/nonexistent/")])
        }

    wait_for("no proxy to wait for the rule's files", lambda: not still_waiting() or None, timeout=10)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


# --- unix-socket endpoints ------------------------------------------------------------------------


def test_service_entry_endpoint_on_a_unix_socket(mesh: MeshProcess, tmp_path) -> None:
    """A STATIC ServiceEntry endpoint `unix:///path` (istiod's BuildAddress: an Envoy pipe address):
    the sidecar reaches an HTTP server listening on that socket."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"from the unix socket"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"

        def log_message(self, *args: Any) -> None:
            pass

    path = tmp_path / "app.sock"
    server = socketserver.UnixStreamServer(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    entry = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: uds}}
    spec:
      hosts: [uds.local]
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      location: MESH_EXTERNAL
      endpoints: [{{address: "unix://{path}"}}]
    """
    try:
        with applied(mesh, entry):
            resp = curl(mesh, "http://uds.local/")
            assert (resp.status, resp.text) == (200, "from the unix socket"), resp.to_dict()
    finally:
        server.shutdown()
        server.server_close()
