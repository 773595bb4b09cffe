"""Parity with istiod's registry conversion tests: what Services, ServiceEntries and WorkloadEntries become.

Cases follow `pkg/config/protocol/instance_test.go` (Parse, IsHTTP...), `pkg/config/kube/conversion_test.go`
and `pilot/pkg/serviceregistry/kube/conversion_test.go` (ConvertProtocol, ConvertService: ports, exportTo,
ExternalName) and `pilot/pkg/serviceregistry/serviceentry/conversion_test.go` (TestConvertService,
TestConvertInstances, TestConvertWorkloadEntryToServiceInstances, TestConvertWorkloadEntryToWorkloadInstance),
written as the YAML a user would apply. Istio's `UnsupportedProtocol` is our `Protocol.AUTO` (sniffed).
Kubernetes object names must be lowercase, so Istio's camelCase test resource names are kebab-cased.

Where Isthmus departs by design the test says so and checks the documented behaviour:
- a headless Service (clusterIP: None) keeps EDS over its pods, as istiod with
  PILOT_ENABLE_EDS_FOR_HEADLESS_SERVICES: explicit-proxy sidecars have no original destination to pass
  through to (DESIGN.md §3);
- an ExternalName Service naming a service of the registry is an alias of it (Istio 1.21+); one naming a
  host the registry does not know is a STRICT_DNS service of its own (resolved outside the mesh, where
  Kubernetes DNS would send it);
- a ServiceEntry with several addresses is one service per host holding every address, where istiod makes
  one per host and address (same listeners and routes, one object).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from isthmus.api.loader import load_text
from isthmus.registry.build import Registry, build_registry
from isthmus.registry.types import Pod, Protocol, Resolution, Service, parse_protocol, protocol_from_kube_port

# The generator tests' helpers live beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, route_table, sidecar, snapshot, vhost

AUTO = Protocol.AUTO


def registry(*docs: str, pods: list[Pod] | None = None) -> Registry:
    text = "\n---\n".join(textwrap.dedent(d) for d in docs)
    return build_registry(load_text(text, "test.yaml"), pods or [])


def only_service(reg: Registry, host: str) -> Service:
    svc = reg.service(host)
    assert svc is not None, f"no service {host}: {[s.hostname for s in reg.services]}"
    return svc


def endpoints(reg: Registry, host: str) -> list[tuple[int, str, int, bool]]:
    """(service port, address, endpoint port, tlsMode istio) of every endpoint of a host, sorted."""
    out = []
    for svc in reg.by_host.get(host, []):
        for port in svc.ports:
            out += [(port.port, e.address, e.port, e.sidecar) for e in reg.endpoints(svc, port.port)]
    return sorted(out)


def kube_service(
    name: str = "svc",
    ports: str = "[{name: http, port: 80}]",
    *,
    namespace: str = "default",
    extra: str = "",
    meta: str = "",
) -> str:
    return f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: {name}, namespace: {namespace}{meta}}}
    spec:
      ports: {ports}
      {extra}
    """


def kube_port_protocol(
    port: int, name: str | None, app_protocol: str | None = None, kube_protocol: str = "TCP"
) -> Protocol:
    """The protocol of a one-port Service built from YAML."""
    fields = [f"port: {port}", f"protocol: {kube_protocol}"]
    if name:
        fields.append(f"name: {name}")
    if app_protocol is not None:
        fields.append(f"appProtocol: '{app_protocol}'")
    reg = registry(kube_service(ports="[{" + ", ".join(fields) + "}]", extra="selector: {app: svc}"))
    return only_service(reg, "svc.default.svc.cluster.local").ports[0].protocol


# --- pkg/config/protocol/instance_test.go -----------------------------------------------------------

PARSE_CASES = [
    ("tcp", Protocol.TCP),
    ("http", Protocol.HTTP),
    ("HTTP", Protocol.HTTP),
    ("Http", Protocol.HTTP),
    ("https", Protocol.HTTPS),
    ("http2", Protocol.HTTP2),
    ("grpc", Protocol.GRPC),
    ("grpc-web", Protocol.GRPC_WEB),
    ("gRPC-Web", Protocol.GRPC_WEB),
    ("grpc-Web", Protocol.GRPC_WEB),
    ("udp", Protocol.UDP),
    ("Mongo", Protocol.MONGO),
    ("mongo", Protocol.MONGO),
    ("MONGO", Protocol.MONGO),
    ("Redis", Protocol.REDIS),
    ("redis", Protocol.REDIS),
    ("REDIS", Protocol.REDIS),
    ("Mysql", Protocol.MYSQL),
    ("mysql", Protocol.MYSQL),
    ("MYSQL", Protocol.MYSQL),
    ("MySQL", Protocol.MYSQL),
    ("", AUTO),
    ("SMTP", AUTO),
]


@pytest.mark.parametrize(("name", "want"), PARSE_CASES, ids=[c[0] or "[empty]" for c in PARSE_CASES])
def test_istio_protocol_parse(name: str, want: Protocol) -> None:
    """TestParse (http_proxy is left out: HTTP_PROXY exists for Sidecar egress listeners only)."""
    assert parse_protocol(name) is want


def test_istio_protocol_is_http() -> None:
    """TestIsHTTP, and the other predicates of instance.go."""
    assert not Protocol.UDP.is_http
    assert Protocol.GRPC.is_http
    assert {p for p in Protocol if p.is_http} == {
        Protocol.HTTP,
        Protocol.HTTP2,
        Protocol.GRPC,
        Protocol.GRPC_WEB,
    }
    # IsHTTP2 counts gRPC-Web: its upstream connection is HTTP/2.
    assert {p for p in Protocol if p.is_http2} == {Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB}
    assert {p for p in Protocol if p.is_tcp} == {
        Protocol.TCP,
        Protocol.HTTPS,
        Protocol.TLS,
        Protocol.MONGO,
        Protocol.REDIS,
        Protocol.MYSQL,
    }
    assert {p for p in Protocol if p.is_tls} == {Protocol.HTTPS, Protocol.TLS}


# --- ConvertProtocol: pilot/pkg/serviceregistry/kube/conversion_test.go TestConvertProtocol --------

KUBE_PROTOCOL_CASES: list[tuple[int, str, str | None, str, Protocol]] = [
    (8888, "", None, "TCP", AUTO),
    (25, "", None, "TCP", Protocol.TCP),
    (53, "", None, "TCP", Protocol.TCP),
    (3306, "", None, "TCP", Protocol.TCP),
    (27017, "", None, "TCP", Protocol.TCP),
    (8888, "http", None, "TCP", Protocol.HTTP),
    (8888, "http-test", None, "TCP", Protocol.HTTP),
    (8888, "http", None, "UDP", Protocol.UDP),
    (8888, "httptest", None, "TCP", AUTO),
    (25, "httptest", None, "TCP", Protocol.TCP),
    (53, "httptest", None, "TCP", Protocol.TCP),
    (3306, "httptest", None, "TCP", Protocol.TCP),
    (27017, "httptest", None, "TCP", Protocol.TCP),
    (8888, "https", None, "TCP", Protocol.HTTPS),
    (8888, "https-test", None, "TCP", Protocol.HTTPS),
    (8888, "http2", None, "TCP", Protocol.HTTP2),
    (8888, "http2-test", None, "TCP", Protocol.HTTP2),
    (8888, "grpc", None, "TCP", Protocol.GRPC),
    (8888, "grpc-test", None, "TCP", Protocol.GRPC),
    (8888, "grpc-web", None, "TCP", Protocol.GRPC_WEB),
    (8888, "grpc-web-test", None, "TCP", Protocol.GRPC_WEB),
    (8888, "mongo", None, "TCP", Protocol.MONGO),
    (8888, "mongo-test", None, "TCP", Protocol.MONGO),
    (8888, "redis", None, "TCP", Protocol.REDIS),
    (8888, "redis-test", None, "TCP", Protocol.REDIS),
    (8888, "mysql", None, "TCP", Protocol.MYSQL),
    (8888, "mysql-test", None, "TCP", Protocol.MYSQL),
    (8888, "tcp", "http", "TCP", Protocol.HTTP),
]


def _case_id(c: tuple[Any, ...]) -> str:
    return "_".join(str(x) for x in c[:4] if x not in (None, ""))


@pytest.mark.parametrize(
    ("port", "name", "app", "kube", "want"), KUBE_PROTOCOL_CASES, ids=map(_case_id, KUBE_PROTOCOL_CASES)
)
def test_istio_kube_convert_protocol(
    port: int, name: str, app: str | None, kube: str, want: Protocol
) -> None:
    """Lowercase names through a Service's YAML; Istio's uppercase copies of each case go to the
    conversion directly, as the Kubernetes API refuses uppercase port names."""
    assert kube_port_protocol(port, name, app, kube) is want
    if name:
        assert protocol_from_kube_port(name.upper(), app, kube, port) is want


# pkg/config/kube/conversion_test.go TestConvertProtocol (Istio's port 0 is any port not well known: 8080).
APP_PROTOCOL_CASES: list[tuple[str, int, str, str | None, str, Protocol]] = [
    ("resolves empty", 8080, "", None, "TCP", AUTO),
    ("resolves from protocol directly", 8080, "", None, "UDP", Protocol.UDP),
    ("resolves from port name", 8080, "http-something", None, "TCP", Protocol.HTTP),
    ("prefers appProto over portName", 8080, "http-something", "https", "TCP", Protocol.HTTPS),
    ("resolves from appProto", 8080, "something-httpx", "https", "TCP", Protocol.HTTPS),
    ("resolves grpc-web", 8080, "grpc-web-x", None, "TCP", Protocol.GRPC_WEB),
    ("makes sure grpc-web is not resolved incorrectly", 8080, "grpcweb-x", None, "TCP", AUTO),
    ("resolves based on known ports", 3306, "random-name", None, "TCP", Protocol.TCP),
    # Kubernetes' standard appProtocol values (ConvertProtocol's switch on them).
    ("kubernetes.io/h2c", 8080, "web", "kubernetes.io/h2c", "TCP", Protocol.HTTP2),
    ("kubernetes.io/ws", 8080, "web", "kubernetes.io/ws", "TCP", Protocol.HTTP),
    ("kubernetes.io/wss", 8080, "web", "kubernetes.io/wss", "TCP", Protocol.HTTPS),
    ("appProtocol http2", 8080, "tcp-x", "http2", "TCP", Protocol.HTTP2),
    ("appProtocol grpc", 8080, "http", "grpc", "TCP", Protocol.GRPC),
    ("appProtocol is parsed as a name: prefix", 8080, "tcp", "grpc-web", "TCP", Protocol.GRPC_WEB),
    ("appProtocol is parsed as a name: dash", 8080, "tcp", "http-alt", "TCP", Protocol.HTTP),
    ("appProtocol case-insensitive", 8080, "tcp", "HTTP", "TCP", Protocol.HTTP),
    # A set appProtocol replaces the name even when Istio knows neither it nor ...
    ("unknown appProtocol hides the port name", 8080, "http", "example.com/custom", "TCP", AUTO),
    ("h2c is not a protocol name", 8080, "http", "h2c", "TCP", AUTO),
    # ... but a well-known port still falls back to TCP.
    ("unknown appProtocol on a well-known port", 3306, "http", "example.com/custom", "TCP", Protocol.TCP),
    ("UDP wins over appProtocol", 8080, "http", "http", "UDP", Protocol.UDP),
    ("a udp- name", 8080, "udp-dns", None, "TCP", Protocol.UDP),
]


@pytest.mark.parametrize(
    ("port", "name", "app", "kube", "want"),
    [c[1:] for c in APP_PROTOCOL_CASES],
    ids=[c[0] for c in APP_PROTOCOL_CASES],
)
def test_istio_kube_convert_protocol_app_protocol(
    port: int, name: str, app: str | None, kube: str, want: Protocol
) -> None:
    assert kube_port_protocol(port, name, app, kube) is want


def test_istio_kube_standard_app_protocols_match_exactly() -> None:
    """ConvertProtocol switches on the exact `kubernetes.io/...` spelling; any other spelling is a name."""
    assert protocol_from_kube_port("http", "Kubernetes.io/h2c", "TCP", 8080) is AUTO


# --- ConvertService: pilot/pkg/serviceregistry/kube/conversion_test.go -------------------------------


def test_istio_service_conversion() -> None:
    """TestServiceConversion: hostname, ports and protocols, not external, the selector kept, EDS."""
    reg = registry(
        kube_service(
            "service1",
            "[{name: http, port: 8080, protocol: TCP}, {name: https, port: 443, protocol: TCP}]",
            extra="clusterIP: 10.0.0.1\n      selector: {foo: bar}",
            meta=", annotations: {other/annotation: test}, labels: {app: service1}",
        ),
        pods=[Pod("p", "default", "127.8.0.2", {"foo": "bar"}, workload="p")],
    )
    svc = only_service(reg, "service1.default.svc.cluster.local")
    assert (svc.name, svc.namespace) == ("service1", "default")
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [
        ("http", 8080, Protocol.HTTP),
        ("https", 443, Protocol.HTTPS),
    ]
    assert not svc.mesh_external
    assert svc.resolution is Resolution.CLIENT_SIDE_LB
    assert svc.selector == {"foo": "bar"}
    assert dict(svc.labels) == {"app": "service1"}
    assert svc.export_to == frozenset()
    assert endpoints(reg, svc.hostname) == [(443, "127.8.0.2", 443, True), (8080, "127.8.0.2", 8080, True)]


EXPORT_TO_CASES = [
    ("", set()),
    (".", {"."}),
    ("*", {"*"}),
    ("~", {"~"}),
    ("ns", {"ns"}),
    ("ns1,ns2", {"ns1", "ns2"}),
    ("ns1, ns2", {"ns1", "ns2"}),
    ("ns1 ,ns2", {"ns1", "ns2"}),
]


@pytest.mark.parametrize(
    ("annotation", "want"), EXPORT_TO_CASES, ids=[c[0] or "[empty]" for c in EXPORT_TO_CASES]
)
def test_istio_service_conversion_with_export_to_annotation(annotation: str, want: set[str]) -> None:
    """TestServiceConversionWithExportToAnnotation."""
    meta = f", annotations: {{networking.istio.io/exportTo: '{annotation}'}}"
    reg = registry(kube_service("service1", extra="clusterIP: 10.0.0.1", meta=meta))
    assert only_service(reg, "service1.default.svc.cluster.local").export_to == frozenset(want)


@pytest.mark.parametrize("external_name", ["google.com", "some.test.svc.cluster.local"])
def test_istio_external_service_conversion(external_name: str) -> None:
    """TestExternalServiceConversion, TestExternalClusterLocalServiceConversion: an ExternalName service
    is external (even a cluster.local one), keeps its ports, and its one endpoint per port is the external
    name on the *service* port (ExternalNameEndpoints: targetPort means nothing to a DNS alias). A
    selector is ignored."""
    reg = registry(
        kube_service(
            "service1",
            "[{name: http, port: 80, targetPort: 8080, protocol: TCP}]",
            extra=f"type: ExternalName\n      externalName: {external_name}\n      selector: {{app: a}}",
        ),
        pods=[Pod("a", "default", "127.8.0.2", {"app": "a"}, workload="a")],
    )
    svc = only_service(reg, "service1.default.svc.cluster.local")
    assert svc.mesh_external
    assert svc.external_name == external_name
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [("http", 80, Protocol.HTTP)]
    assert svc.resolution is Resolution.DNS  # departs: istiod's newer `Alias` (see the module docstring)
    assert endpoints(reg, svc.hostname) == [(80, external_name, 80, False)]


def test_istio_external_name_cluster() -> None:
    """The ExternalName service's cluster: STRICT_DNS to the name on the service port, marked external
    (MeshExternal: no auto mTLS)."""
    snap = snapshot(
        kube_service(
            "ext",
            "[{name: http, port: 80, targetPort: 8080}]",
            extra="type: ExternalName\n      externalName: example.org",
        ),
        services=False,
    )
    c = clusters(snap, sidecar())["outbound|80||ext.default.svc.cluster.local"]
    assert c["type"] == "STRICT_DNS"
    [lb] = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert lb["endpoint"]["address"]["socket_address"] == {"address": "example.org", "port_value": 80}
    assert c["metadata"]["filter_metadata"]["istio"]["external"] is True
    assert "transport_socket_matches" not in c


ALIASES = (
    kube_service("b", "[{name: http, port: 80, targetPort: 8080}]", extra="selector: {app: b}")
    + "---"
    + kube_service("b-ext", "[]", extra="type: ExternalName\n      externalName: b.default.svc.cluster.local")
    + "---"
    + kube_service(
        "b-ext-port",
        "[{name: tcp, port: 9999}]",
        extra="type: ExternalName\n      externalName: b.default.svc.cluster.local.",
    )
)
B_HOST, ALIAS_HOST = "b.default.svc.cluster.local", "b-ext.default.svc.cluster.local"


def test_external_name_naming_a_mesh_service_is_an_alias() -> None:
    """Istio 1.21 (ExternalName alias): no cluster or endpoints of its own, its ports ignored; the named
    service's virtual host answers to the alias's names as well, and a VirtualService destination or
    DestinationRule naming the alias means the named service."""
    reg = registry(ALIASES)
    b = only_service(reg, B_HOST)
    assert b.aliases == ("b-ext-port.default.svc.cluster.local", ALIAS_HOST)  # sorted
    assert only_service(reg, ALIAS_HOST).alias_of == B_HOST
    assert endpoints(reg, ALIAS_HOST) == [] and endpoints(reg, "b-ext-port.default.svc.cluster.local") == []
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: via-alias, namespace: default}
    spec:
      hosts: [other.example.com]
      http: [{route: [{destination: {host: b-ext.default.svc.cluster.local, subset: v1}}]}]
    """
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: b, namespace: default}
    spec: {host: b, subsets: [{name: v1, labels: {version: v1}}]}
    """
    snap = snapshot(ALIASES, vs, dr, services=False)
    names = set(clusters(snap, sidecar()))
    assert f"outbound|80||{B_HOST}" in names and f"outbound|80|v1|{B_HOST}" in names
    assert not any("b-ext" in n for n in names)
    table = route_table(snap, sidecar())
    domains = vhost(table, f"{B_HOST}:80")["domains"]
    assert {ALIAS_HOST, "b-ext", "b-ext:80", "b-ext-port", "b-ext-port.default"} <= set(domains)
    (route,) = vhost(table, "other.example.com:80")["routes"]
    assert route["route"]["cluster"] == f"outbound|80|v1|{B_HOST}"


def test_external_name_naming_an_unknown_host_keeps_its_dns_cluster() -> None:
    reg = registry(kube_service("ext", extra="type: ExternalName\n      externalName: example.org"))
    assert only_service(reg, "ext.default.svc.cluster.local").alias_of is None


def test_istio_service_without_selector_has_no_endpoints() -> None:
    """Kubernetes makes no endpoints for a Service without a selector (someone else manages them), so
    istiod's registry has none and no pod is an instance of it."""
    pod = Pod("a", "default", "127.8.0.2", {"app": "a"}, workload="a")
    reg = registry(
        kube_service("manual", extra="clusterIP: 10.0.0.2"),
        kube_service("auto", extra="selector: {app: a}"),
        pods=[pod],
    )
    assert endpoints(reg, "manual.default.svc.cluster.local") == []
    assert endpoints(reg, "auto.default.svc.cluster.local") == [(80, "127.8.0.2", 80, True)]
    assert [s.name for s in reg.services_selecting(pod)] == ["auto"]


def test_istio_headless_service_keeps_eds() -> None:
    """clusterIP: None is istiod's Passthrough (ORIGINAL_DST). Isthmus departs by design: explicit-proxy
    sidecars have no original destination, so a headless service is balanced over its pods by EDS, as
    istiod does with PILOT_ENABLE_EDS_FOR_HEADLESS_SERVICES."""
    pod = Pod("db-0", "default", "127.8.0.2", {"app": "db"}, workload="db")
    snap = snapshot(
        kube_service("db", "[{name: tcp, port: 5432}]", extra="clusterIP: None\n      selector: {app: db}"),
        pods=[pod],
        services=False,
    )
    svc = only_service(snap.registry, "db.default.svc.cluster.local")
    assert svc.resolution is Resolution.CLIENT_SIDE_LB
    assert endpoints(snap.registry, svc.hostname) == [(5432, "127.8.0.2", 5432, True)]
    assert clusters(snap, sidecar())["outbound|5432||db.default.svc.cluster.local"]["type"] == "EDS"


def test_istio_grpc_web_port_cluster_is_http2() -> None:
    """A grpc-web port's upstream is HTTP/2 (IsHTTP2 counts GRPC-Web), as for grpc and http2."""
    snap = snapshot(
        kube_service(
            "g", "[{name: grpc-web, port: 8080}, {name: http, port: 80}]", extra="selector: {app: g}"
        ),
        services=False,
    )
    out = clusters(snap, sidecar())
    key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

    def explicit(name: str) -> dict[str, Any]:
        return out[name]["typed_extension_protocol_options"][key]["explicit_http_config"]

    assert "http2_protocol_options" in explicit("outbound|8080||g.default.svc.cluster.local")
    assert "http2_protocol_options" not in explicit("outbound|80||g.default.svc.cluster.local")


# --- pilot/pkg/serviceregistry/serviceentry/conversion_test.go ----------------------------------------


def service_entry(name: str, spec: str, *, namespace: str | None = None, labels: str = "") -> str:
    meta = f"name: {name}, namespace: {namespace or name}" + (f", labels: {labels}" if labels else "")
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{{meta}}}\nspec:\n{body}\n"


def workload_entry(name: str, namespace: str, spec: str, *, meta: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: {namespace}{meta}}}\nspec:\n{body}\n"


SE = {
    "http-none": """
        hosts: ["*.google.com"]
        ports: [{number: 80, name: http-number, protocol: http}, {number: 8080, name: http2-number, protocol: http2}]
        location: MESH_EXTERNAL
        resolution: NONE
    """,
    "tcp-none": """
        hosts: [tcpnone.com]
        addresses: [172.217.0.0/16]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        location: MESH_EXTERNAL
        resolution: NONE
    """,
    "http-static": """
        hosts: ["*.google.com"]
        ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
        endpoints:
        - {address: 2.2.2.2, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
        - {address: 3.3.3.3, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
        - {address: 4.4.4.4, ports: {http-port: 1080}, labels: {foo: bar}}
        location: MESH_EXTERNAL
        resolution: STATIC
    """,
    "http-dns-no-endpoints": """
        hosts: [google.com, www.wikipedia.org]
        ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
        location: MESH_EXTERNAL
        resolution: DNS
        subjectAltNames: [google.com]
    """,
    "http-dnsrr-no-endpoints": """
        hosts: [api.istio.io]
        ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
        location: MESH_EXTERNAL
        resolution: DNS_ROUND_ROBIN
        subjectAltNames: [api.istio.io]
    """,
    "dns-target-port": """
        hosts: [google.com]
        ports: [{number: 80, name: http-port, protocol: http, targetPort: 8080}]
        location: MESH_EXTERNAL
        resolution: DNS
    """,
    "http-dns": """
        hosts: ["*.google.com"]
        ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
        endpoints:
        - {address: us.google.com, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
        - {address: uk.google.com, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
        - {address: de.google.com, labels: {foo: bar, security.istio.io/tlsMode: istio}}
        location: MESH_EXTERNAL
        resolution: DNS
    """,
    "tcp-dns": """
        hosts: [tcpdns.com]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        endpoints:
        - {address: lon.google.com, labels: {security.istio.io/tlsMode: istio}}
        - {address: in.google.com, labels: {security.istio.io/tlsMode: istio}}
        location: MESH_EXTERNAL
        resolution: DNS
    """,
    "tcp-static": """
        hosts: [tcpstatic.com]
        addresses: [172.217.0.1]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        endpoints:
        - {address: 1.1.1.1, labels: {security.istio.io/tlsMode: istio}}
        - {address: 2.2.2.2, labels: {security.istio.io/tlsMode: istio}}
        location: MESH_EXTERNAL
        resolution: STATIC
    """,
    "http-none-internal": """
        hosts: ["*.google.com"]
        ports: [{number: 80, name: http-number, protocol: http}, {number: 8080, name: http2-number, protocol: http2}]
        location: MESH_INTERNAL
        resolution: NONE
    """,
    "tcp-none-internal": """
        hosts: [tcpinternal.com]
        addresses: [172.217.0.0/16]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        location: MESH_INTERNAL
        resolution: NONE
    """,
    "multi-addr-internal": """
        hosts: [tcp1.com, tcp2.com]
        addresses: [1.1.1.0/16, 2.2.2.0/16]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        location: MESH_INTERNAL
        resolution: NONE
    """,
    "selector": """
        hosts: [selector.com]
        ports: [{number: 444, name: tcp-444, protocol: tcp}, {number: 445, name: http-445, protocol: http}]
        workloadSelector: {labels: {app: wle}}
        resolution: STATIC
    """,
    "selector-dns": """
        hosts: [selector.com]
        ports: [{number: 444, name: tcp-444, protocol: tcp}, {number: 445, name: http-445, protocol: http}]
        workloadSelector: {labels: {app: wle}}
        resolution: DNS
    """,
}

HTTP_PORTS = [("http-port", 80, Protocol.HTTP), ("http-alt-port", 8080, Protocol.HTTP)]
NUMBER_PORTS = [("http-number", 80, Protocol.HTTP), ("http2-number", 8080, Protocol.HTTP2)]
TCP_444 = [("tcp-444", 444, Protocol.TCP)]
R = Resolution

# TestConvertService: entry -> per host: (ports, external, resolution, addresses).
CONVERT_SERVICE_CASES: list[tuple[str, dict[str, tuple[list, bool, Resolution, tuple[str, ...]]]]] = [
    ("http-none", {"*.google.com": (NUMBER_PORTS, True, R.PASSTHROUGH, ())}),
    ("tcp-none", {"tcpnone.com": (TCP_444, True, R.PASSTHROUGH, ("172.217.0.0/16",))}),
    ("http-static", {"*.google.com": (HTTP_PORTS, True, R.CLIENT_SIDE_LB, ())}),
    (
        "http-dns-no-endpoints",
        {
            "google.com": (HTTP_PORTS, True, R.DNS, ()),
            "www.wikipedia.org": (HTTP_PORTS, True, R.DNS, ()),
        },
    ),
    ("http-dns", {"*.google.com": (HTTP_PORTS, True, R.DNS, ())}),
    ("dns-target-port", {"google.com": ([("http-port", 80, Protocol.HTTP)], True, R.DNS, ())}),
    ("tcp-dns", {"tcpdns.com": (TCP_444, True, R.DNS, ())}),
    ("tcp-static", {"tcpstatic.com": (TCP_444, True, R.CLIENT_SIDE_LB, ("172.217.0.1",))}),
    ("http-none-internal", {"*.google.com": (NUMBER_PORTS, False, R.PASSTHROUGH, ())}),
    ("tcp-none-internal", {"tcpinternal.com": (TCP_444, False, R.PASSTHROUGH, ("172.217.0.0/16",))}),
    # istiod: one service per host and address; here one per host with both (see the module docstring).
    (
        "multi-addr-internal",
        {
            "tcp1.com": (TCP_444, False, R.PASSTHROUGH, ("1.1.1.0/16", "2.2.2.0/16")),
            "tcp2.com": (TCP_444, False, R.PASSTHROUGH, ("1.1.1.0/16", "2.2.2.0/16")),
        },
    ),
    (
        "selector",
        {
            "selector.com": (
                [("tcp-444", 444, Protocol.TCP), ("http-445", 445, Protocol.HTTP)],
                False,
                R.CLIENT_SIDE_LB,
                (),
            )
        },
    ),
]


@pytest.mark.parametrize(("entry", "want"), CONVERT_SERVICE_CASES, ids=[c[0] for c in CONVERT_SERVICE_CASES])
def test_istio_convert_service_entry(
    entry: str, want: dict[str, tuple[list, bool, Resolution, tuple[str, ...]]]
) -> None:
    """TestConvertService: one service per host, the entry's ports, location, resolution and addresses.
    (The `selector` case is MESH_EXTERNAL in istiod's table only because its expectation ignores location:
    the entry leaves it unset, which is MESH_EXTERNAL; a selector picks mesh workloads, so we write
    MESH_INTERNAL in the YAML.)"""
    spec = textwrap.dedent(SE[entry]) + ("location: MESH_INTERNAL\n" if entry == "selector" else "")
    reg = registry(service_entry(entry, spec))
    assert sorted(s.hostname for s in reg.services) == sorted(want)
    for host, (ports, external, resolution, addresses) in want.items():
        svc = only_service(reg, host)
        assert (svc.name, svc.namespace) == (entry, entry)
        assert [(p.name, p.port, p.protocol) for p in svc.ports] == ports
        assert (svc.mesh_external, svc.resolution, svc.addresses) == (external, resolution, addresses)
    if entry == "selector":
        assert only_service(reg, "selector.com").selector == {"app": "wle"}
    if entry == "http-dns-no-endpoints":
        assert only_service(reg, "google.com").subject_alt_names == ("google.com",)


def test_istio_service_entry_single_address_cidr_is_an_ip() -> None:
    """convertServices: a /32 (or /128) CIDR is that IP; anything neither IP nor CIDR is dropped. The
    address is a domain of the service's virtual host."""
    spec = """
        hosts: [db.example.com]
        addresses: [10.9.9.9/32, "fd00::1/128", 10.8.0.0/16, 10.7.7.7]
        ports: [{number: 80, name: http, protocol: HTTP}]
        resolution: STATIC
        endpoints: [{address: 10.9.9.10}]
    """
    snap = snapshot(service_entry("addr", spec, namespace="default"), services=False)
    svc = only_service(snap.registry, "db.example.com")
    assert svc.addresses == ("10.9.9.9", "fd00::1", "10.8.0.0/16", "10.7.7.7")
    domains = vhost(route_table(snap, sidecar()), "db.example.com:80")["domains"]
    assert "10.9.9.9" in domains and "10.9.9.9/32" not in domains


# TestConvertInstances: entry -> (service port, address, endpoint port, tlsMode istio).
CONVERT_INSTANCES_CASES: list[tuple[str, list[tuple[int, str, int, bool]]]] = [
    # Resolution NONE: no instances.
    ("http-none", []),
    ("tcp-none", []),
    (
        "http-static",
        [
            (80, "2.2.2.2", 7080, True),
            (80, "3.3.3.3", 1080, True),
            (80, "4.4.4.4", 1080, False),
            (8080, "2.2.2.2", 18080, True),
            (8080, "3.3.3.3", 8080, True),
            (8080, "4.4.4.4", 8080, False),
        ],
    ),
    (
        "http-dns-no-endpoints",
        [
            (80, "google.com", 80, False),
            (80, "www.wikipedia.org", 80, False),
            (8080, "google.com", 8080, False),
            (8080, "www.wikipedia.org", 8080, False),
        ],
    ),
    ("http-dnsrr-no-endpoints", [(80, "api.istio.io", 80, False), (8080, "api.istio.io", 8080, False)]),
    # DNS with a workload selector and nothing selected: no instances (not the host itself).
    ("selector-dns", []),
    (
        "http-dns",
        [
            (80, "de.google.com", 80, True),
            (80, "uk.google.com", 1080, True),
            (80, "us.google.com", 7080, True),
            (8080, "de.google.com", 8080, True),
            (8080, "uk.google.com", 8080, True),
            (8080, "us.google.com", 18080, True),
        ],
    ),
    ("dns-target-port", [(80, "google.com", 8080, False)]),
    ("tcp-dns", [(444, "in.google.com", 444, True), (444, "lon.google.com", 444, True)]),
    ("tcp-static", [(444, "1.1.1.1", 444, True), (444, "2.2.2.2", 444, True)]),
]


@pytest.mark.parametrize(
    ("entry", "want"), CONVERT_INSTANCES_CASES, ids=[c[0] for c in CONVERT_INSTANCES_CASES]
)
def test_istio_convert_instances(entry: str, want: list[tuple[int, str, int, bool]]) -> None:
    """TestConvertInstances: endpoint port by the endpoint's `ports[port name]`, else targetPort, else
    the port number; tlsMode from the endpoint's label. (udsLocal is left out: see the report.)"""
    reg = registry(service_entry(entry, SE[entry]))
    got = sorted(x for s in reg.services for x in endpoints(reg, s.hostname))
    assert got == sorted(set(want))


SELECTOR = service_entry(
    "selector", textwrap.dedent(SE["selector"]) + "location: MESH_INTERNAL\n", namespace="default"
)
SELECTOR_DNS = service_entry(
    "selector-dns", SE["selector-dns"].replace("selector.com", "dns.selector.com"), namespace="default"
)


def wle(spec: str, *, meta: str = "", name: str = "wle") -> str:
    return workload_entry(name, "default", spec, meta=meta)


# TestConvertWorkloadEntryToServiceInstances: WorkloadEntry spec -> (service port, address, port, mTLS).
WLE_CASES: list[tuple[str, str, list[tuple[int, str, int, bool]]]] = [
    (
        "simple",
        "{address: 1.1.1.1, labels: {app: wle}}",
        [(444, "1.1.1.1", 444, False), (445, "1.1.1.1", 445, False)],
    ),
    (
        "mtls",
        "{address: 1.1.1.1, labels: {app: wle}, serviceAccount: default}",
        [(444, "1.1.1.1", 444, True), (445, "1.1.1.1", 445, True)],
    ),
    (
        "replace-port",
        "{address: 1.1.1.1, labels: {app: wle}, ports: {http-445: 8080}}",
        [(444, "1.1.1.1", 444, False), (445, "1.1.1.1", 8080, False)],
    ),
    (
        "augment label",
        "{address: 1.1.1.1, labels: {app: wle}, locality: region1/zone1/sunzone1, network: network1, serviceAccount: default}",
        [(444, "1.1.1.1", 444, True), (445, "1.1.1.1", 445, True)],
    ),
]


@pytest.mark.parametrize(("spec", "want"), [c[1:] for c in WLE_CASES], ids=[c[0] for c in WLE_CASES])
def test_istio_convert_workload_entry_to_service_instances(
    spec: str, want: list[tuple[int, str, int, bool]]
) -> None:
    reg = registry(SELECTOR, workload_entry("wle", "default", spec))
    assert endpoints(reg, "selector.com") == want
    for ep in reg.endpoints(only_service(reg, "selector.com"), 444):
        assert ep.service_account == ("default" if "serviceAccount" in spec else None)
        assert (ep.locality, ep.network) == (
            ("region1/zone1/sunzone1", "network1") if "locality" in spec else ("", "")
        )


def selected(*docs: str, host: str = "selector.com") -> list[tuple[str, bool, dict[str, str]]]:
    """(address, tlsMode istio, labels) of the endpoints on port 444 of a selector ServiceEntry."""
    reg = registry(*docs)
    return [(e.address, e.sidecar, dict(e.labels)) for e in reg.endpoints(only_service(reg, host), 444)]


def test_istio_workload_entry_tls_mode() -> None:
    """TestConvertWorkloadEntryToWorkloadInstance "simple" and "simple - tls mode disabled": a service
    account means a proxy (tlsMode istio) unless the tlsMode label says otherwise; the same for a
    ServiceEntry's inline endpoints."""
    istio = "{address: 1.1.1.1, labels: {app: wle}, serviceAccount: scooby}"
    disabled = (
        "{address: 1.1.1.1, labels: {app: wle, security.istio.io/tlsMode: disabled}, serviceAccount: scooby}"
    )
    assert [s for _, s, _ in selected(SELECTOR, wle(istio))] == [True]
    assert [s for _, s, _ in selected(SELECTOR, wle(disabled))] == [False]
    inline = """
        hosts: [inline.example.com]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        location: MESH_INTERNAL
        resolution: STATIC
        endpoints:
        - {address: 1.1.1.1, serviceAccount: scooby}
        - {address: 1.1.1.2, serviceAccount: scooby, labels: {security.istio.io/tlsMode: disabled}}
        - {address: 1.1.1.3, labels: {security.istio.io/tlsMode: istio}}
    """
    got = selected(service_entry("inline", inline, namespace="default"), host="inline.example.com")
    assert [(a, s) for a, s, _ in got] == [("1.1.1.1", True), ("1.1.1.2", False), ("1.1.1.3", True)]


def test_istio_workload_entry_labels_from_metadata() -> None:
    """ "metadata labels only" and "labels merge": metadata.labels join spec.labels (metadata wins), and
    selection sees the merged set."""
    only_meta = wle("{address: 1.1.1.1, serviceAccount: scooby}", meta=", labels: {app: wle}")
    assert selected(SELECTOR, only_meta) == [("1.1.1.1", True, {"app": "wle"})]
    merged = wle(
        "{address: 1.1.1.1, labels: {app: wle, tier: spec}}", meta=", labels: {my-label: bar, tier: meta}"
    )
    assert selected(SELECTOR, merged) == [
        ("1.1.1.1", False, {"app": "wle", "tier": "meta", "my-label": "bar"})
    ]


def test_istio_workload_entry_locality() -> None:
    """ "augment labels": the entry's locality and network reach its endpoints; with no locality field,
    the `istio-locality` label gives it (dots for slashes)."""
    explicit = wle(
        "{address: 1.1.1.1, labels: {app: wle}, locality: region1/zone1/subzone1, network: network1}"
    )
    by_label = wle("{address: 1.1.1.2, labels: {app: wle, istio-locality: region2.zone2}}", name="wle2")
    reg = registry(SELECTOR, explicit, by_label)
    eps = reg.endpoints(only_service(reg, "selector.com"), 444)
    assert [(e.address, e.locality, e.network) for e in eps] == [
        ("1.1.1.1", "region1/zone1/subzone1", "network1"),
        ("1.1.1.2", "region2/zone2", ""),
    ]


def test_istio_workload_entry_dns_address_only_for_dns_services() -> None:
    """ "DNS address" / "unix domain socket" (DNSServiceEntryOnly): a WorkloadEntry at a host name is an
    endpoint of DNS ServiceEntries only, never of a Kubernetes Service or a STATIC ServiceEntry."""
    kube = kube_service("k8s", "[{name: tcp-444, port: 444}]", extra="selector: {app: wle}")
    dns_we = wle("{address: scooby.com, labels: {app: wle}, serviceAccount: scooby}")
    ip_we = wle("{address: 1.1.1.1, labels: {app: wle}}", name="wle-ip")
    reg = registry(SELECTOR, SELECTOR_DNS, kube, dns_we, ip_we)
    assert [a for p, a, *_ in endpoints(reg, "dns.selector.com") if p == 444] == ["1.1.1.1", "scooby.com"]
    assert [a for _, a, *_ in endpoints(reg, "selector.com")] == ["1.1.1.1", "1.1.1.1"]
    assert [a for _, a, *_ in endpoints(reg, "k8s.default.svc.cluster.local")] == ["1.1.1.1"]


def test_istio_empty_workload_selector_selects_nothing() -> None:
    """istiod selects instances for a service with a non-empty selector only (FilterSelectsNonEmpty): a
    ServiceEntry whose workloadSelector has no labels has no endpoints, not every workload."""
    spec = """
        hosts: [empty.example.com]
        ports: [{number: 444, name: tcp-444, protocol: tcp}]
        location: MESH_INTERNAL
        resolution: STATIC
        workloadSelector: {labels: {}}
    """
    pod = Pod("a", "default", "127.8.0.2", {"app": "wle"}, workload="a")
    reg = registry(
        service_entry("empty", spec, namespace="default"),
        wle("{address: 1.1.1.1, labels: {app: wle}}"),
        pods=[pod],
    )
    assert endpoints(reg, "empty.example.com") == []
    assert reg.services_selecting(pod) == []


def test_istio_selector_picks_pods_and_entries_of_its_namespace() -> None:
    """servicediscovery_test.go (TestServiceDiscoveryWorkloadInstance): a workloadSelector ServiceEntry's
    endpoints are the pods and WorkloadEntries of its namespace whose labels match, on the port of the same
    name (or the number)."""
    pods = [
        Pod("p1", "default", "127.8.0.2", {"app": "wle"}, workload="p1", service_account="sa1"),
        Pod("p2", "other", "127.8.0.3", {"app": "wle"}, workload="p2"),
        Pod("p3", "default", "127.8.0.4", {"app": "nope"}, workload="p3"),
    ]
    other_ns = workload_entry("far", "other", "{address: 2.2.2.2, labels: {app: wle}}")
    reg = registry(
        SELECTOR, wle("{address: 1.1.1.1, labels: {app: wle}, ports: {tcp-444: 9444}}"), other_ns, pods=pods
    )
    assert endpoints(reg, "selector.com") == [
        (444, "1.1.1.1", 9444, False),
        (444, "127.8.0.2", 444, True),
        (445, "1.1.1.1", 445, False),
        (445, "127.8.0.2", 445, True),
    ]


def test_istio_service_entries_of_one_host_merge_endpoints() -> None:
    """servicediscovery_test.go's httpStaticOverlay: a second ServiceEntry for the same host in the same
    namespace adds its endpoints (on its own ports) to the first one's."""
    overlay = """
        hosts: ["*.google.com"]
        ports: [{number: 4567, name: http-port, protocol: http}]
        endpoints: [{address: 5.5.5.5, labels: {overlay: bar}}]
        location: MESH_EXTERNAL
        resolution: STATIC
    """
    reg = registry(
        service_entry("http-static", SE["http-static"], namespace="http-static"),
        service_entry("http-static-overlay", overlay, namespace="http-static"),
    )
    assert endpoints(reg, "*.google.com") == [
        (80, "2.2.2.2", 7080, True),
        (80, "3.3.3.3", 1080, True),
        (80, "4.4.4.4", 1080, False),
        (4567, "5.5.5.5", 4567, False),
        (8080, "2.2.2.2", 18080, True),
        (8080, "3.3.3.3", 8080, True),
        (8080, "4.4.4.4", 8080, False),
    ]
