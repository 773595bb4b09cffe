"""Istio's outbound-traffic-policy and egress integration cases, re-expressed against a real Isthmus mesh.

Sources (istio/istio):
- tests/integration/pilot/outboundtrafficpolicy/ (helper.go, traffic_allow_any_test.go,
  traffic_registry_only_test.go): a client whose Sidecar resource imports only `service/*` and
  `istio-system/*`, so the `destination` next to it is unknown to it; every case calls that destination
  under ALLOW_ANY and REGISTRY_ONLY, plus through an egress gateway (Gateway + VirtualService bound to
  `mesh` and the gateway, and a ServiceEntry for `some-external-site.com`); a ServiceEntry with HTTP ports
  9443 and 9091 makes the "conflict" cases. allowany/egressproxy: a Sidecar `egressProxy`.
- tests/integration/security/egress_gateway_origination_test.go (TestSimpleTlsOrigination,
  TestMutualTlsOrigination) and filebasedtlsorigination (the DISABLE case): TLS origination at the
  egress gateway from a DestinationRule with `credentialName`, the sidecar reaching the gateway over
  ISTIO_MUTUAL.
- common/routing.go testServiceEntryWithMultipleVIPsAndResolutionNone: a MESH_EXTERNAL ServiceEntry
  with several addresses and resolution NONE reaches each address's own backend.

Where Isthmus departs by design: sidecars are explicit proxies, so there is no original destination IP.
"Calling the destination's ClusterIP the sidecar does not know" becomes calling the destination pod's
address (`http://<pod ip>:8080`), which no registry entry names: passthrough goes where the Host header
(HTTP) or the CONNECT target (TCP, TLS) says; TLS and TCP ride CONNECT tunnels. There is no DNS capture,
so a ServiceEntry endpoint that Istio writes as `destination.<ns>.svc.cluster.local` is given as the
destination's address. A blocked tunnel is a refused CONNECT (no 2xx, nothing reaches the server) where
Istio's BlackHoleCluster accepts and closes the connection. Metrics (PassthroughCluster/BlackHoleCluster
labels) are checked elsewhere. Hosts outside the mesh are simulated on 127.0.0.0/8 only.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for
from tests.e2e.test_istio_traffic_cases import h2c_get

pytestmark = pytest.mark.e2e

EGRESS_FQDN = "istio-egressgateway.istio-system.svc.cluster.local"
EXTERNAL = "external.example.com"  # the TLS-origination target (Istio: apps.External's FQDN)

# client: the caller, in `app`. destination: outside the mesh (no sidecar), next to it: HTTP on 8080,
# TCP echo on 9090 and 9091; the test binds TLS servers on its address at 8443 and 9443.
# external: two pods outside the mesh, whose addresses are a ServiceEntry's VIPs.
MESH = """
apiVersion: v1
kind: Service
metadata: {name: client, namespace: app}
spec:
  selector: {app: client}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: app, labels: {app: client, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: v1
kind: Service
metadata: {name: sleep, namespace: other}
spec:
  selector: {app: sleep}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: sleep, namespace: other, labels: {app: sleep}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: v1
kind: Service
metadata: {name: destination, namespace: app}
spec:
  selector: {app: destination}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp, port: 9090, targetPort: 9090}
  - {name: tcp-conflict, port: 9091, targetPort: 9091}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: destination, namespace: app, labels: {app: destination, version: v1}}
spec:
  sidecar: false
  ports: [8080, 9090, 9091]
  command: [isthmus, echo, --tcp, "9090", --tcp, "9091"]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: external, namespace: external, labels: {app: external}}
spec: {sidecar: false, replicas: 2, ports: [8080], command: [isthmus, echo]}
---
apiVersion: v1
kind: Service
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: istio-egressgateway
  namespace: istio-system
  labels: {istio: egressgateway, app: istio-egressgateway}
spec: {gateway: true}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http, namespace: service}
spec:
  hosts: [istio.io]
  location: MESH_EXTERNAL
  ports:
  - {name: http-for-https, number: 9443, protocol: HTTP}
  - {name: http-for-tcp, number: 9091, protocol: HTTP}
  resolution: DNS
"""


def sidecar_scope(mode: str | None) -> str:
    """helper.go's SidecarScope: only `service/*` and `istio-system/*`, with the case's mode
    (None: an `outboundTrafficPolicy` without a mode)."""
    otp = "{}" if mode is None else f"{{mode: {mode}}}"
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {{name: restrict-to-service-entry-namespace, namespace: app}}
    spec:
      egress:
      - hosts: ["service/*", "istio-system/*"]
      outboundTrafficPolicy: {otp}
    """


def mesh_policy(mode: str) -> str:
    return f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec:
      outboundTrafficPolicy: {{mode: {mode}}}
    """


def egress_gateway_route(destination_ip: str) -> str:
    """helper.go's Gateway: HTTP for some-external-site.com goes through the egress gateway, which adds
    `handled-by-egress-gateway` and sends it to the ServiceEntry's endpoint (the destination)."""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: istio-egressgateway, namespace: service}}
    spec:
      selector: {{istio: egressgateway}}
      servers:
      - port: {{number: 80, name: http, protocol: HTTP}}
        hosts: [some-external-site.com]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: route-via-egressgateway, namespace: service}}
    spec:
      hosts: [some-external-site.com]
      gateways: [istio-egressgateway, mesh]
      http:
      - match: [{{gateways: [mesh], port: 80}}]
        route:
        - destination: {{host: {EGRESS_FQDN}, port: {{number: 80}}}}
          weight: 100
      - match: [{{gateways: [istio-egressgateway], port: 80}}]
        route:
        - destination: {{host: some-external-site.com}}
        headers:
          request:
            add: {{handled-by-egress-gateway: "true"}}
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: ext-service-entry, namespace: service}}
    spec:
      hosts: [some-external-site.com]
      location: MESH_EXTERNAL
      endpoints:
      - address: {destination_ip}
        ports: {{http: 8080}}
      ports:
      - {{number: 80, name: http}}
      resolution: DNS
    """


# --- servers outside the mesh ------------------------------------------------------------------------


# --- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-egress"), MESH) as m:
        yield m


@pytest.fixture(scope="module")
def pki() -> dict[str, t.Pem]:
    ca = t.make_ca("external root")
    fake = t.make_ca("fake root")
    return {
        "ca": ca,
        "fake": fake,
        "server": t.issue(ca, [EXTERNAL]),
        # The client certificate Istio's credentials hold (CN=server.default.svc.cluster.local).
        "client": t.issue(ca, ["server.default.svc.cluster.local"], client=True),
        "fake-client": t.issue(fake, ["server.default.svc.cluster.local"], client=True),
    }


@pytest.fixture(scope="module")
def destination_ip(mesh: MeshProcess) -> str:
    return mesh.instance("destination", "app")["ip"]


@pytest.fixture(scope="module")
def https_servers(
    mesh: MeshProcess, pki: dict[str, t.Pem], destination_ip: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, t.TlsServer]]:
    """The destination's HTTPS ports: 8443 ("https") and 9443 ("https-conflict"), h2 and http/1.1."""
    work = tmp_path_factory.mktemp("dest-tls")
    alpn = ("h2", "http/1.1")
    with (
        t.TlsServer(destination_ip, 8443, pki["server"], work / "a", alpn=alpn) as a,
        t.TlsServer(destination_ip, 9443, pki["server"], work / "b", alpn=alpn) as b,
    ):
        yield {8443: a, 9443: b}


@contextmanager
def outbound_policy(mesh: MeshProcess, mode: str | None) -> Iterator[None]:
    with applied(mesh, sidecar_scope(mode)):
        yield


def call(mesh: MeshProcess, url: str, frm: str = "client", ns: str = "app", **kw: Any) -> Response:
    return mesh.curl(frm, url, namespace=ns, timeout=10, **kw)


def tcp(mesh: MeshProcess, target: str, line: str, frm: str = "client", ns: str = "app") -> Response:
    return sync.request(f"tcp://{target}", proxy=mesh.proxy_url(frm, ns), body=line, timeout=10)


def tunnel_tls(
    mesh: MeshProcess, target: str, sni: str, ca: t.Pem, *, alpn: tuple[str, ...] = ("http/1.1",)
) -> tuple[int, str | None, dict[str, Any] | None]:
    """CONNECT to `target` through the client's sidecar, then TLS inside the tunnel: the CONNECT status,
    the ALPN negotiated end to end, and the server's answer to a GET (None if h2 or no tunnel)."""
    p = mesh.proxy("client", namespace="app")
    with socket.create_connection((p["ip"], p["outboundPort"]), timeout=10) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = t.read_head(raw)
        status = int(head.split(b" ", 2)[1]) if head else 0
        if status != 200:
            return status, None, None
        ctx = ssl.create_default_context(cadata=ca.cert.decode())
        ctx.set_alpn_protocols(list(alpn))
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            negotiated = tls.selected_alpn_protocol()
            if negotiated == "h2":
                return status, negotiated, None
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return status, negotiated, json.loads(data.partition(b"\r\n\r\n")[2])


def secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> str:
    """A Secret in istio-system (the egress gateway's namespace), as credentialName refers to it."""
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "istio-system"},
            "type": kind,
            "data": encoded,
        }
    )


def assert_refused(resp: Response) -> None:
    """A blocked tunnel: the CONNECT gets no 2xx (or no answer), and nothing is echoed back."""
    assert not (200 <= resp.status < 300), (resp.status, resp.body)
    assert b"hello" not in resp.body


# --- outboundtrafficpolicy: ALLOW_ANY ---------------------------------------------------------------


def test_allow_any_passes_unknown_traffic_through(
    mesh: MeshProcess, destination_ip: str, https_servers: dict[int, t.TlsServer], pki: dict[str, t.Pem]
) -> None:
    """TestOutboundTrafficPolicy_AllowAny 'HTTP Traffic', 'HTTP H2 Traffic' (the protocol is kept end to
    end), 'HTTPS Traffic', 'HTTPS Traffic Conflict', 'HTTPS H2 Traffic' (+ Conflict: h2 negotiated with
    the server through the tunnel), 'TCP', 'TCP Conflict': all reach the unknown destination, the Host
    it sees being the one the client sent. The conflicts (istio.io has HTTP ports 9443 and 9091) change
    nothing: a CONNECT to another host is not that ServiceEntry's."""
    with outbound_policy(mesh, "ALLOW_ANY"):
        seen = echo_body(call(mesh, f"http://{destination_ip}:8080/path"))
        assert (seen["workload"], seen["host"], seen["protocol"]) == (
            "destination",
            f"{destination_ip}:8080",
            "HTTP/1.1",
        )
        # The catch-all counts attempts as istiod's does (x-envoy-attempt-count reaches the server).
        assert seen["headers"].get("x-envoy-attempt-count") == "1"
        status, h2 = h2c_get(mesh.proxy_url("client", "app"), f"{destination_ip}:8080", "/h2")
        assert (status, h2["workload"], h2["protocol"]) == (200, "destination", "HTTP/2")
        for port in (8443, 9443):
            code, alpn, body = tunnel_tls(mesh, f"{destination_ip}:{port}", EXTERNAL, pki["ca"])
            assert (code, alpn) == (200, "http/1.1"), port
            assert body is not None and (body["sni"], body["host"]) == (EXTERNAL, EXTERNAL)
            code, alpn, _ = tunnel_tls(mesh, f"{destination_ip}:{port}", EXTERNAL, pki["ca"], alpn=("h2",))
            assert (code, alpn) == (200, "h2"), port
        for port in (9090, 9091):
            resp = tcp(mesh, f"{destination_ip}:{port}", "hello")
            assert (resp.status, resp.text) == (200, "v1 hello"), port


# --- outboundtrafficpolicy: REGISTRY_ONLY ------------------------------------------------------------


def test_registry_only_blocks_unknown_traffic(
    mesh: MeshProcess, destination_ip: str, https_servers: dict[int, t.TlsServer], pki: dict[str, t.Pem]
) -> None:
    """TestOutboundTrafficPolicy_RegistryOnly 'HTTP Traffic' (502, from the sidecar itself), 'HTTPS
    Traffic', 'HTTPS Traffic Conflict', 'TCP', 'TCP Conflict' (no connection: the tunnel is refused and
    the server sees nothing)."""
    before = {port: s.connections for port, s in https_servers.items()}
    with outbound_policy(mesh, "REGISTRY_ONLY"):
        resp = call(mesh, f"http://{destination_ip}:8080/path")
        assert resp.status == 502 and b"workload" not in resp.body
        for port in (8443, 9443):
            code, _, body = tunnel_tls(mesh, f"{destination_ip}:{port}", EXTERNAL, pki["ca"])
            assert code != 200 and body is None, port
        for port in (9090, 9091):
            assert_refused(tcp(mesh, f"{destination_ip}:{port}", "hello"))
    assert {port: s.connections for port, s in https_servers.items()} == before


# --- outboundtrafficpolicy: through the egress gateway ----------------------------------------------


@pytest.mark.parametrize("mode", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_http_traffic_egress_through_the_egress_gateway(
    mesh: MeshProcess, destination_ip: str, mode: str
) -> None:
    """'HTTP Traffic Egress' and 'HTTP H2 Traffic Egress', under both policies: Host
    some-external-site.com goes sidecar -> egress gateway -> the ServiceEntry's endpoint; the gateway's
    route adds `handled-by-egress-gateway`, and the gateway speaks HTTP/1.1 to the ServiceEntry's `http`
    port even when the client spoke h2 (Istio: "as configured by the ServiceEntry")."""
    with outbound_policy(mesh, mode), applied(mesh, egress_gateway_route(destination_ip)):
        seen = echo_body(call(mesh, "http://some-external-site.com/egress"))
        assert seen["workload"] == "destination" and seen["host"] == "some-external-site.com"
        assert seen["headers"].get("handled-by-egress-gateway") == "true"
        assert seen["protocol"] == "HTTP/1.1"
        status, h2 = h2c_get(mesh.proxy_url("client", "app"), "some-external-site.com", "/egress-h2")
        assert status == 200 and h2["headers"].get("handled-by-egress-gateway") == "true"
        assert h2["protocol"] == "HTTP/1.1"


# --- the Sidecar's policy against the mesh's ------------------------------------------------------


def test_sidecar_policy_overrides_the_mesh_policy(mesh: MeshProcess, destination_ip: str) -> None:
    """helper.go sets both the mesh-wide mode and the Sidecar's: the Sidecar's wins for its workloads,
    the mesh's holds for the others (here `sleep`, which no Sidecar selects). A Sidecar
    `outboundTrafficPolicy` without a mode is REGISTRY_ONLY (the enum's zero value: istiod takes the
    Sidecar's policy whole once it is set), even in an ALLOW_ANY mesh."""
    url = f"http://{destination_ip}:8080/"
    with applied(mesh, mesh_policy("REGISTRY_ONLY")), outbound_policy(mesh, "ALLOW_ANY"):
        assert echo_body(call(mesh, url))["workload"] == "destination"
        assert call(mesh, url, frm="sleep", ns="other").status == 502
        assert_refused(tcp(mesh, f"{destination_ip}:9090", "hello", frm="sleep", ns="other"))
    with applied(mesh, mesh_policy("ALLOW_ANY")), outbound_policy(mesh, "REGISTRY_ONLY"):
        assert call(mesh, url).status == 502
        assert echo_body(call(mesh, url, frm="sleep", ns="other"))["workload"] == "destination"
    # No MeshConfig: Istio's default mesh is ALLOW_ANY; a mode-less Sidecar policy blocks.
    with outbound_policy(mesh, None):
        assert call(mesh, url).status == 502
        assert_refused(tcp(mesh, f"{destination_ip}:9090", "hello"))
        assert echo_body(call(mesh, url, frm="sleep", ns="other"))["workload"] == "destination"


def test_egress_proxy_takes_unknown_traffic(mesh: MeshProcess, destination_ip: str) -> None:
    """allowany/egressproxy TestSidecarConfig: with `egressProxy` the catch-all (`allow_any`) route and
    the passthrough tunnel go to `outbound|80||<egress proxy>` instead of the PassthroughCluster. Here the
    egress gateway (listening on 80 for some-external-site.com), which has no route for this host,
    answers 404 where passthrough would reach the destination."""
    sidecar = f"""
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {{name: sidecar-with-egressproxy, namespace: other}}
    spec:
      outboundTrafficPolicy:
        mode: ALLOW_ANY
        egressProxy: {{host: {EGRESS_FQDN}, port: {{number: 80}}}}
    """
    with applied(mesh, sidecar, egress_gateway_route(destination_ip)):
        assert call(mesh, f"http://{destination_ip}:8080/", frm="sleep", ns="other").status == 404
        p = mesh.proxy("sleep", namespace="other")
        dump = json.loads(
            sync.request(f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=dynamic_route_configs").body
        )
        vhosts = [vh for c in dump["configs"] for vh in c["route_config"].get("virtual_hosts", [])]
        allow_any = [vh for vh in vhosts if vh["name"].endswith("allow_any")]
        assert allow_any, [vh["name"] for vh in vhosts]
        clusters = {r["route"].get("cluster") for r in allow_any[0]["routes"] if "route" in r}
        assert f"outbound|80||{EGRESS_FQDN}" in clusters
        assert "PassthroughCluster" not in clusters
    assert echo_body(call(mesh, f"http://{destination_ip}:8080/", frm="sleep", ns="other"))


# --- routing.go: ServiceEntry with several VIPs and resolution NONE ---------------------------------


def test_service_entry_with_multiple_vips_and_resolution_none(mesh: MeshProcess, destination_ip: str) -> None:
    """testServiceEntryWithMultipleVIPsAndResolutionNone: each VIP of a MESH_EXTERNAL, resolution NONE
    ServiceEntry reaches its own backend (the original destination: here the address the request
    names), even under REGISTRY_ONLY, where an address no entry lists stays blocked."""
    ips = sorted(i["ip"] for i in mesh.status()["instances"] if i["workload"] == "external")
    by_ip = {i["ip"]: i["instance"] for i in mesh.status()["instances"] if i["workload"] == "external"}
    se = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: server-without-dns, namespace: service}}
    spec:
      hosts: [server.without.dns]
      addresses: [{ips[0]}, {ips[1]}]
      location: MESH_EXTERNAL
      resolution: NONE
      ports: [{{number: 8080, name: http, protocol: HTTP}}]
    """
    with outbound_policy(mesh, "REGISTRY_ONLY"), applied(mesh, se):
        for ip in ips:
            seen = echo_body(call(mesh, f"http://{ip}:8080/vip"))
            assert (seen["instance"], seen["host"]) == (by_ip[ip], f"{ip}:8080")
        assert call(mesh, f"http://{destination_ip}:8080/").status == 502


# --- egress gateway TLS origination (credentialName) ------------------------------------------------


def tls_gateway(tls_port: int, mtls_port: int) -> str:
    """newTLSGateway: the sidecar sends HTTP for EXTERNAL to the egress gateway over ISTIO_MUTUAL (the
    `server` subset); the gateway adds the header and routes to EXTERNAL's HTTPS port, where a
    DestinationRule originates TLS. EXTERNAL is a ServiceEntry for the test's TLS servers."""
    return textwrap.dedent(
        f"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: external, namespace: other}}
        spec:
          hosts: [{EXTERNAL}]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports:
          - {{number: 80, name: http, protocol: HTTP}}
          - {{number: 443, name: https, protocol: HTTPS}}
          - {{number: 4443, name: https-mtls, protocol: HTTPS}}
          - {{number: 5443, name: https-missing, protocol: HTTPS}}
          - {{number: 6443, name: https-mtls-missing, protocol: HTTPS}}
          - {{number: 7443, name: https-mtls-no-cert, protocol: HTTPS}}
          endpoints:
          - address: 127.0.0.1
            ports:
              https: {tls_port}
              https-mtls: {mtls_port}
              https-missing: {tls_port}
              https-mtls-missing: {mtls_port}
              https-mtls-no-cert: {mtls_port}
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: istio-egressgateway-sds, namespace: other}}
        spec:
          selector: {{istio: egressgateway}}
          servers:
          - port: {{number: 443, name: https-sds, protocol: HTTPS}}
            hosts: [{EXTERNAL}]
            tls: {{mode: ISTIO_MUTUAL}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: egressgateway-for-server-sds, namespace: other}}
        spec:
          host: {EGRESS_FQDN}
          subsets:
          - name: server
            trafficPolicy:
              portLevelSettings:
              - port: {{number: 443}}
                tls: {{mode: ISTIO_MUTUAL, sni: {EXTERNAL}}}
        """
    )


def tls_gateway_route(port: int) -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: route-via-egressgateway-sds, namespace: other}}
    spec:
      hosts: [{EXTERNAL}]
      gateways: [istio-egressgateway-sds, mesh]
      http:
      - match: [{{gateways: [mesh], port: 80}}]
        route:
        - destination: {{host: {EGRESS_FQDN}, subset: server, port: {{number: 443}}}}
          weight: 100
      - match: [{{gateways: [istio-egressgateway-sds], port: 443}}]
        route:
        - destination: {{host: {EXTERNAL}, port: {{number: {port}}}}}
          weight: 100
        headers:
          request:
            add: {{handled-by-egress-gateway: "true"}}
    """


def origination_rule(mode: str, credential: str | None, port: int) -> str:
    """newTLSGatewayDestinationRule (in istio-system, as Istio applies it)."""
    cred = f", credentialName: {credential}" if credential else ""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: originate-tls-for-server-sds, namespace: istio-system}}
    spec:
      host: {EXTERNAL}
      trafficPolicy:
        portLevelSettings:
        - port: {{number: {port}}}
          tls: {{mode: {mode}, sni: {EXTERNAL}{cred}}}
    """


def credentials(pki: dict[str, t.Pem]) -> list[str]:
    """The Secrets of TestSimpleTlsOrigination and TestMutualTlsOrigination (generic ones hold `cert`,
    `key`, `cacert`; `-cacert` ones only a CA)."""
    ca, client, fake = pki["ca"].cert, pki["client"], pki["fake-client"]
    return [
        secret("tls-credential-cacert", {"cacert": ca}),
        secret("fake-tls-credential-cacert", {"cacert": pki["fake"].cert}),
        secret("tls-credential-simple-cacert", {"cacert": ca}),
        secret("mtls-credential-generic", {"cert": client.cert, "key": client.key, "cacert": ca}),
        secret(
            "mtls-credential-not-generic",
            {"tls.crt": client.cert, "tls.key": client.key, "ca.crt": ca},
            "kubernetes.io/tls",
        ),
        secret("fake-mtls-credential-a", {"cert": fake.cert, "key": fake.key, "cacert": ca}),
    ]


@pytest.fixture(scope="module")
def tls_origination(
    mesh: MeshProcess, pki: dict[str, t.Pem], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, t.TlsServer]]:
    work = tmp_path_factory.mktemp("external-tls")
    with (
        t.TlsServer("127.0.0.1", 0, pki["server"], work / "tls") as simple,
        t.TlsServer("127.0.0.1", 0, pki["server"], work / "mtls", client_ca=pki["ca"]) as mutual,
        applied(mesh, tls_gateway(simple.port, mutual.port), *credentials(pki)),
    ):
        yield {"simple": simple, "mutual": mutual}


def originate(mesh: MeshProcess, mode: str, credential: str | None, port: int, status: int) -> Response:
    """Call EXTERNAL from `sleep` with this origination until it answers `status` (bounded). The config
    is applied without waiting for convergence: a cluster whose credential does not exist never warms
    (Envoy waits for its secret), which is the point of the 'missing' cases."""
    text = "\n---\n".join(
        textwrap.dedent(d) for d in (tls_gateway_route(port), origination_rule(mode, credential, port))
    )
    mesh.apply(text, expect_ok=False)
    try:
        return wait_for(
            f"{mode} {credential} -> {status}",
            lambda: (r := call(mesh, f"http://{EXTERNAL}/", frm="sleep", ns="other")).status == status and r,
        )
    finally:
        mesh.delete(text)


@pytest.mark.parametrize(
    ("credential", "status", "via_gateway"),
    [
        ("tls-credential", 200, True),  # "simple"
        ("fake-tls-credential", 503, False),  # "fake root"
    ],
)
def test_simple_tls_origination_at_the_egress_gateway(
    mesh: MeshProcess,
    tls_origination: dict[str, t.TlsServer],
    credential: str,
    status: int,
    via_gateway: bool,
) -> None:
    """TestSimpleTlsOrigination 'simple', 'fake root': the gateway originates TLS with the CA of
    `<credentialName>-cacert`; a CA that cannot verify the server gives 503."""
    resp = originate(mesh, "SIMPLE", credential, 443, status)
    assert resp.status == status, resp.body
    if via_gateway:
        seen = json.loads(resp.body)
        assert seen["headers"].get("handled-by-egress-gateway") == "true"
        assert (seen["sni"], seen["clientCertSubject"]) == (EXTERNAL, "")


@pytest.mark.parametrize(
    ("credential", "status"),
    [
        ("mtls-credential-generic", 200),  # "generic"
        ("mtls-credential-not-generic", 200),  # "non-generic"
        ("fake-mtls-credential-a", 503),  # "invalid client cert"
    ],
)
def test_mutual_tls_origination_at_the_egress_gateway(
    mesh: MeshProcess, tls_origination: dict[str, t.TlsServer], credential: str, status: int
) -> None:
    """TestMutualTlsOrigination 'generic', 'non-generic', 'invalid client cert': the gateway presents the
    credential's certificate, from a generic (cert/key/cacert) or a kubernetes.io/tls Secret (the
    server sees CN=server.default.svc.cluster.local); one the server does not trust gives 503. (The CRL
    cases are left out: Isthmus credentials carry no CRL.)"""
    resp = originate(mesh, "MUTUAL", credential, 4443, status)
    assert resp.status == status, resp.body
    if status == 200:
        seen = json.loads(resp.body)
        assert seen["headers"].get("handled-by-egress-gateway") == "true"
        assert seen["clientCertSubject"] == "CN=server.default.svc.cluster.local"


def test_no_tls_origination_reaches_the_https_server_in_plaintext(
    mesh: MeshProcess, tls_origination: dict[str, t.TlsServer]
) -> None:
    """filebasedtlsorigination 'No TLS origination from egress gateway to https endpoint': with mode
    DISABLE the gateway sends plaintext to the HTTPS port and the server answers 400."""
    assert originate(mesh, "DISABLE", None, 443, 400).status == 400


def test_missing_credentials_fail_with_503(
    mesh: MeshProcess, tls_origination: dict[str, t.TlsServer]
) -> None:
    """TestSimpleTlsOrigination 'missing secret', TestMutualTlsOrigination 'missing' and 'no client
    certs' (a credential with only a CA): 503. As istiod does for credentialName, Envoy gives up waiting
    for the secret after its initial fetch timeout (15 s) rather than keep the cluster warming for ever
    (the previous, plaintext, cluster answering meanwhile). The three wait together, one port each."""
    cases = {
        "/missing-simple": (5443, "SIMPLE", "tls-credential-not-created-cacert"),
        "/missing-mutual": (6443, "MUTUAL", "mtls-credential-not-created"),
        "/no-client-certs": (7443, "MUTUAL", "tls-credential-simple"),
    }
    gateway_routes = [
        {
            "match": [{"gateways": ["istio-egressgateway-sds"], "port": 443, "uri": {"prefix": path}}],
            "route": [{"destination": {"host": EXTERNAL, "port": {"number": port}}}],
        }
        for path, (port, _, _) in cases.items()
    ]
    to_gateway = {
        "match": [{"gateways": ["mesh"], "port": 80}],
        "route": [{"destination": {"host": EGRESS_FQDN, "subset": "server", "port": {"number": 443}}}],
    }
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "route-via-egressgateway-sds", "namespace": "other"},
        "spec": {
            "hosts": [EXTERNAL],
            "gateways": ["istio-egressgateway-sds", "mesh"],
            "http": [to_gateway, *gateway_routes],
        },
    }
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "originate-tls-for-server-sds", "namespace": "istio-system"},
        "spec": {
            "host": EXTERNAL,
            "trafficPolicy": {
                "portLevelSettings": [
                    {"port": {"number": port}, "tls": {"mode": mode, "sni": EXTERNAL, "credentialName": cred}}
                    for port, mode, cred in cases.values()
                ]
            },
        },
    }
    text = json.dumps(vs) + "\n---\n" + json.dumps(dr)
    mesh.apply(text, expect_ok=False)
    try:
        for path in cases:
            wait_for(
                f"{path} -> 503",
                lambda path=path: (
                    call(mesh, f"http://{EXTERNAL}{path}", frm="sleep", ns="other").status == 503
                ),
                timeout=40,
            )
    finally:
        mesh.delete(text)
