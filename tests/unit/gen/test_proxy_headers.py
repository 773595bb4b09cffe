"""ProxyConfig proxyHeaders preserveHttp1HeaderCase, xForwardedPort and xForwardedHost, ported from istiod:
pilot/pkg/networking/util/proxy_headers_test.go (TestGetProxyHeadersFromProxyConfig: both X-Forwarded
settings default off, `enabled` turns them on), listener_builder.go buildHTTPConnectionManager (every
HCM: the preserve_case formatter replaces its HTTP/1 options, append_x_forwarded_port),
cluster_builder.go setUpstreamProtocol (HTTP/1 and sniffed ports' clusters, inbound ones too) and
httproute.go buildCatchAllVirtualHost (append_x_forwarded_host on the ALLOW_ANY passthrough route)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import PODS, clusters, generate, route_table, sidecar, snapshot, vhost
from test_istio_gateway_parity import GW_POD, gateway_proxy

from isthmus.api.errors import ConfigErrors
from isthmus.api.loader import load_text
from isthmus.api.support import check_supported
from isthmus.xds.gen import naming

HCM = "envoy.filters.network.http_connection_manager"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
PRESERVE_CASE = {
    "header_key_format": {
        "stateful_formatter": {
            "name": "preserve_case",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig"
            },
        }
    }
}
# Services of every protocol family, each with its own pod so the sidecar has inbound ports of each.
SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: default}
spec:
  selector: {app: multi}
  ports:
  - {name: http, port: 8080}
  - {name: grpc, port: 8082}
  - {name: tcp, port: 8083}
  - {name: other, port: 8084}
"""
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-reviews, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: reviews}}]}]
"""


def mesh(headers: dict[str, Any], **spec: Any) -> str:
    body = {"defaultConfig": {"proxyHeaders": headers}, **spec}
    return "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: " + json.dumps(
        body
    )


PRESERVE = mesh({"preserveHttp1HeaderCase": True})
XFORWARDED = mesh({"xForwardedHost": {"enabled": True}, "xForwardedPort": {"enabled": True}})


def multi_pod() -> Any:
    from isthmus.registry.types import Pod

    ports = {8080: 41001, 8082: 41002, 8083: 41003, 8084: 41004}
    return Pod("multi-0", "default", "127.7.0.8", {"app": "multi"}, workload="multi", app_ports=ports)


def snap(*docs: str) -> Any:
    return snapshot(SERVICES, GATEWAY, *docs, pods=[*PODS, GW_POD, multi_pod()])


def multi() -> Any:
    return sidecar("multi-0", "default", {"app": "multi"}, "127.7.0.8")


def hcms(*docs: str) -> dict[str, dict[str, Any]]:
    """Every HCM of the multi sidecar (inbound and outbound) and of the gateway, by listener name."""
    s = snap(*docs)
    out = {}
    for proxy in (multi(), gateway_proxy()):
        for name, lst in generate(s, proxy, naming.LISTENER_TYPE).items():
            for i, chain in enumerate(lst["filter_chains"]):
                last = chain["filters"][-1]
                if last["name"] == HCM:
                    out[f"{name}#{i}"] = last["typed_config"]
    return out


def http_options(c: dict[str, Any]) -> dict[str, Any]:
    return c.get("typed_extension_protocol_options", {}).get(HTTP_OPTIONS, {})


def http1(c: dict[str, Any]) -> dict[str, Any] | None:
    """A cluster's HTTP/1 upstream options (explicit or use-downstream), None if it has none."""
    opts = http_options(c)
    if "explicit_http_config" in opts:
        return opts["explicit_http_config"].get("http_protocol_options")
    return opts.get("use_downstream_protocol_config", {}).get("http_protocol_options")


# Without the formatter only the explicit HTTP proxy has HTTP/1 options (buildHTTPProxy's absolute URLs).
HTTP_PROXY_ONLY = {f"{naming.VIRTUAL_OUTBOUND}#0": {"allow_absolute_url": True}}


def http1_options(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: m["http_protocol_options"] for name, m in found.items() if "http_protocol_options" in m}


# --- GetProxyHeadersFromProxyConfig and the API ---------------------------------------------------


def test_every_proto_field_is_accepted_and_translated() -> None:
    """The model has every field of ProxyConfig.ProxyHeaders; all of them are translated."""
    headers = {
        "forwardedClientCert": "SANITIZE",
        "requestId": {"disabled": True},
        "server": {"value": "x"},
        "attemptCount": {"disabled": True},
        "envoyDebugHeaders": {"disabled": True},
        "metadataExchangeHeaders": {"mode": "IN_MESH"},
        "setCurrentClientCertDetails": {"cert": True},
        "preserveHttp1HeaderCase": True,
        "xForwardedHost": {"enabled": True},
        "xForwardedPort": {"enabled": False},
    }
    (resource,) = load_text(mesh(headers), "mesh.yaml")
    assert check_supported(resource) == []


@pytest.mark.parametrize(
    "headers",
    [{"bogus": True}, {"xForwardedHost": {"disabled": True}}, {"xForwardedPort": {"enabled": "maybe"}}],
)
def test_unknown_or_ill_typed_fields_are_rejected(headers: dict[str, Any]) -> None:
    with pytest.raises(ConfigErrors):
        load_text(mesh(headers), "mesh.yaml")


@pytest.mark.parametrize(
    ("headers", "port", "host"),
    [
        ({}, False, False),  # "nil config" / "sidecar outbound class": both off by default
        ({"server": {"value": "custom-server"}, "attemptCount": {"disabled": True}}, False, False),
        ({"xForwardedPort": {"enabled": True}, "xForwardedHost": {"enabled": True}}, True, True),
        ({"xForwardedPort": {"enabled": False}, "xForwardedHost": {}}, False, False),
        ({"xForwardedPort": {"enabled": True}}, True, False),
    ],
)
def test_x_forwarded_settings(headers: dict[str, Any], port: bool, host: bool) -> None:
    """TestGetProxyHeadersFromProxyConfig's X-Forwarded cases, as the config they become."""
    docs = (mesh(headers),) if headers else ()
    for name, m in hcms(*docs).items():
        assert m.get("append_x_forwarded_port", False) is port, name
    allow_any = vhost(route_table(snap(*docs), sidecar()), naming.ALLOW_ANY_VHOST)
    passthrough = [r for r in allow_any["routes"] if r["name"] == naming.ALLOW_ANY_VHOST]
    assert [r["route"].get("append_x_forwarded_host", False) for r in passthrough] == [host]


# --- xForwardedPort: every HCM ---------------------------------------------------------------------


def test_x_forwarded_port_on_every_listener_class() -> None:
    found = hcms(XFORWARDED)
    classes = {name.split("#")[0] for name in found}
    # The sidecar's outbound proxy listener, its inbound HTTP and sniffed ports, the gateway's port.
    assert {naming.VIRTUAL_OUTBOUND, "127.7.0.8_8080", "127.7.0.8_8084", "0.0.0.0_80"} <= classes
    assert all(m["append_x_forwarded_port"] is True for m in found.values())


# --- xForwardedHost: the passthrough route only ----------------------------------------------------


def test_x_forwarded_host_only_on_the_passthrough_route() -> None:
    table = route_table(snap(XFORWARDED), sidecar())
    for vh in table["virtual_hosts"]:
        for r in vh["routes"]:
            appended = r.get("route", {}).get("append_x_forwarded_host", False)
            assert appended is (vh["name"] == r.get("name") == naming.ALLOW_ANY_VHOST), (vh["name"], r)
    gw = generate(snap(XFORWARDED), gateway_proxy(), naming.ROUTE_TYPE, {"http.80"})["http.80"]
    assert "append_x_forwarded_host" not in json.dumps(gw)


def test_x_forwarded_host_with_registry_only_has_no_route_to_set() -> None:
    blocked = mesh({"xForwardedHost": {"enabled": True}}, outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})
    table = route_table(snap(blocked), sidecar())
    assert "append_x_forwarded_host" not in json.dumps(table)
    assert vhost(table, naming.BLOCK_ALL_VHOST)


# --- preserveHttp1HeaderCase: HCMs -----------------------------------------------------------------


def test_preserve_case_replaces_every_hcm_http1_options() -> None:
    found = hcms(PRESERVE)
    assert len(found) >= 4
    for name, m in found.items():
        assert m["http_protocol_options"] == PRESERVE_CASE, name
    assert http1_options(hcms()) == HTTP_PROXY_ONLY


# --- preserveHttp1HeaderCase: clusters -------------------------------------------------------------


def test_preserve_case_on_http1_outbound_clusters_only() -> None:
    on = clusters(snap(PRESERVE), sidecar())
    off = clusters(snap(), sidecar())
    http = "outbound|8080||multi.default.svc.cluster.local"
    sniffed = "outbound|8084||multi.default.svc.cluster.local"
    assert http1(on[http]) == PRESERVE_CASE
    # A sniffed port's sidecar cluster uses the downstream protocol, with the HTTP/1 options it inherits.
    assert "use_downstream_protocol_config" in http_options(on[sniffed])
    assert http1(on[sniffed]) == PRESERVE_CASE
    grpc = on["outbound|8082||multi.default.svc.cluster.local"]
    assert "http2_protocol_options" in http_options(grpc)["explicit_http_config"]
    assert http1(grpc) is None
    assert http_options(on["outbound|8083||multi.default.svc.cluster.local"]) == {}
    for name in (naming.PASSTHROUGH_CLUSTER, naming.BLACKHOLE_CLUSTER):
        assert "header_key_format" not in json.dumps(on[name])
    assert "header_key_format" not in json.dumps(off)


def test_preserve_case_on_gateway_clusters() -> None:
    """Gateways build sniffed ports' clusters with explicit HTTP/1 options: the formatter is there too."""
    s = snap(PRESERVE)
    gw = generate(s, gateway_proxy(), naming.CLUSTER_TYPE)
    sniffed = gw["outbound|8084||multi.default.svc.cluster.local"]
    assert http_options(sniffed)["explicit_http_config"]["http_protocol_options"] == PRESERVE_CASE
    assert http1(gw["outbound|9080||reviews.default.svc.cluster.local"]) == PRESERVE_CASE


def dr(pool: dict[str, Any]) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: multi, namespace: default}\n"
        "spec: " + json.dumps({"host": "multi", "trafficPolicy": {"connectionPool": {"http": pool}}})
    )


def test_use_client_protocol_loses_the_formatter() -> None:
    """applyTrafficPolicy and applyConnectionPool both call setUseDownstreamProtocol: the second one finds
    no explicit HTTP/1 options and gives empty ones."""
    out = clusters(snap(PRESERVE, dr({"useClientProtocol": True})), sidecar())
    for port in (8080, 8084):
        c = out[f"outbound|{port}||multi.default.svc.cluster.local"]
        assert "use_downstream_protocol_config" in http_options(c)
        assert http1(c) == {}, port


def test_h2_upgrade_replaces_the_http1_options() -> None:
    out = clusters(snap(PRESERVE, dr({"h2UpgradePolicy": "UPGRADE"})), sidecar())
    c = out["outbound|8080||multi.default.svc.cluster.local"]
    assert "http2_protocol_options" in http_options(c)["explicit_http_config"]
    assert http1(c) is None


def test_preserve_case_on_inbound_clusters() -> None:
    """buildInboundCluster goes through setUpstreamProtocol with the service port."""
    on = clusters(snap(PRESERVE), multi())
    assert http1(on["inbound|8080||"]) == PRESERVE_CASE
    assert http1(on["inbound|8084||"]) == PRESERVE_CASE
    assert http1(on["inbound|8082||"]) is None
    assert "header_key_format" not in json.dumps(clusters(snap(), multi()))


def test_preserve_case_is_off_when_false() -> None:
    off = mesh({"preserveHttp1HeaderCase": False})
    assert "header_key_format" not in json.dumps(clusters(snap(off), sidecar()))
    assert http1_options(hcms(off)) == HTTP_PROXY_ONLY
