"""HTTP connection managers against istiod's own unit tests and HCM-building code.

Sources (istio/istio, `pilot/pkg/networking/core/`): listener_test.go (TestHttpProxyListener,
TestOutboundListenerConfigWithSidecarHTTPProxy, TestInboundHTTPListenerConfig, TestOutboundListenerRoute,
TestListenerTransportSocketConnectTimeoutForSidecar), listener_builder_test.go (TestHCMInternalAddressConfig),
listener_builder.go (buildHTTPConnectionManager), listener.go (buildHTTPProxy, buildListenerFromEntry,
buildGatewayListener), listener_inbound.go (buildSidecarInboundHTTPOpts) and gateway.go
(buildGatewayConnectionManager). Cases already ported elsewhere (inbound HCM defaults, filter order,
path normalization, proxyHeaders, listener filters) are not repeated.

Departures by design (DESIGN.md §1-5, no iptables):
- The sidecar's only outbound listener is its explicit HTTP proxy `virtualOutbound` on `<pod ip>:15001`
  (istiod's buildHTTPProxy binds `127.0.0.1:<proxyHttpPort>`, off by default, or node metadata
  HTTP_PROXY_PORT); it also takes CONNECT (an extra `CONNECT` upgrade), so there are no per-port
  outbound listeners and no per-port RDS names (`8080`, `test1.com:8080`): every outbound HTTP route is in
  RDS `http_proxy` (istiod's RDSHttpProxy).
- Inbound HCMs take their routes over RDS named like the inbound cluster, not inline.
- istio-proxy's own filters (metadata exchange, istio.alpn, stats) are not in upstream Envoy.
- No MeshNetworks, and istiod's EnableHCMInternalNetworks is off by default: no internal_address_config.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from gen_helpers import PODS, generate, sidecar, snapshot
from test_istio_gateway_parity import GW_POD, gateway_proxy

from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

HCM = "envoy.filters.network.http_connection_manager"
IP = "127.7.0.20"
APP = """
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  selector: {app: app}
  ports: [{name: http, port: 8080}, {name: grpc, port: 8082}, {name: tcp, port: 8083}]
"""
APP_POD = Pod(
    "app-0", "default", IP, {"app": "app"}, workload="app", app_ports={8080: 42001, 8082: 42002, 8083: 42003}
)
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - port: {number: 443, name: https, protocol: HTTPS}
    name: secure
    hosts: [secure.example.com]
    tls: {mode: SIMPLE, serverCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem}
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-routes, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: reviews}}]}]
  tcp: [{route: [{destination: {host: ratings.other.svc.cluster.local, port: {number: 5432}}}]}]
"""
HTTPS_ROUTE = "https.443.https.gw.istio-system"


def mesh(**spec: Any) -> str:
    return "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: " + json.dumps(
        spec
    )


def app_proxy(metadata: dict[str, Any] | None = None) -> Proxy:
    return dataclasses.replace(sidecar("app-0", "default", {"app": "app"}, IP), metadata=metadata or {})


def listeners(*docs: str, metadata: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The listeners of the app sidecar and of the ingress gateway (both given `metadata`)."""
    snap = snapshot(APP, GATEWAY, *docs, pods=[*PODS, APP_POD, GW_POD])
    out = {}
    gw = dataclasses.replace(gateway_proxy(), metadata=metadata or {})
    for proxy in (app_proxy(metadata), gw):
        out.update(generate(snap, proxy, naming.LISTENER_TYPE))
    return out


def hcms(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every HCM by `<listener>#<chain index>`."""
    out = {}
    for name, lst in found.items():
        for i, chain in enumerate(lst["filter_chains"]):
            last = chain["filters"][-1]
            if last["name"] == HCM:
                out[f"{name}#{i}"] = last["typed_config"]
    return out


def hcm(found: dict[str, dict[str, Any]], listener: str, chain: int = 0) -> dict[str, Any]:
    return hcms(found)[f"{listener}#{chain}"]


# Which HCM stands for which listener class: the explicit HTTP proxy, an inbound HTTP/1 port, an inbound
# gRPC port, the gateway's plain HTTP server and its HTTPS server.
HTTP_PROXY = f"{naming.VIRTUAL_OUTBOUND}#0"
INBOUND = f"{IP}_8080#0"
INBOUND_GRPC = f"{IP}_8082#0"
GW_HTTP = "0.0.0.0_80#0"
GW_HTTPS = "0.0.0.0_443#0"


def test_fixture_has_every_listener_class() -> None:
    assert {HTTP_PROXY, INBOUND, INBOUND_GRPC, GW_HTTP, GW_HTTPS} <= set(hcms(listeners()))


# --- TestHttpProxyListener / TestOutboundListenerConfigWithSidecarHTTPProxy (buildHTTPProxy) ---------


def test_http_proxy_listener() -> None:
    """An outbound listener with one HTTP chain, no listener filters (so buildListenerFromEntry sets no
    filter timeout: 0s, continue on timeout), stat prefix `outbound_...`, RDS `http_proxy` over ADS, no
    remote address, absolute URLs allowed."""
    lst = listeners()[naming.VIRTUAL_OUTBOUND]
    assert lst["address"]["socket_address"] == {"address": IP, "port_value": 15001}
    assert lst["traffic_direction"] == "OUTBOUND"
    assert "listener_filters" not in lst
    assert lst["listener_filters_timeout"] == "0s"
    assert lst["continue_on_listener_filters_timeout"] is True
    (chain,) = lst["filter_chains"]
    assert [f["name"] for f in chain["filters"]] == [HCM]
    m = chain["filters"][0]["typed_config"]
    assert m["stat_prefix"] == f"outbound_{IP}_15001"
    assert m["rds"] == {
        "route_config_name": naming.HTTP_PROXY_ROUTE,
        "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
    }
    assert m["use_remote_address"] is False  # features.UseRemoteAddress, off by default
    assert m["http_protocol_options"] == {"allow_absolute_url": True}
    # Departure: CONNECT too, for HTTPS_PROXY tunnels.
    assert [u["upgrade_type"] for u in m["upgrade_configs"]] == ["websocket", "CONNECT"]


def test_one_outbound_listener_for_every_port() -> None:
    """TestOutboundListenerRoute, by design otherwise: no per-port or per-VIP outbound listeners with RDS
    `8080` / `<host>:<port>`; the sidecar's outbound HTTP all goes through the proxy's `http_proxy`."""
    sidecar_listeners = {n for n in listeners() if not n.startswith("0.0.0.0_")}
    assert sidecar_listeners == {naming.VIRTUAL_OUTBOUND, f"{IP}_8080", f"{IP}_8082", f"{IP}_8083"}
    outbound = [m for n, m in hcms(listeners()).items() if n.startswith(naming.VIRTUAL_OUTBOUND)]
    assert [m["rds"]["route_config_name"] for m in outbound] == [naming.HTTP_PROXY_ROUTE]


# --- TestInboundHTTPListenerConfig (proxyHTTP10) and enableHTTP10 in every HCM builder --------------


HTTP10_MESH = mesh(defaultConfig={"proxyMetadata": {"ISTIO_META_HTTP10": "1"}})


@pytest.mark.parametrize(
    ("docs", "metadata", "accept"),
    [
        pytest.param((), None, False, id="off"),
        pytest.param((), {"HTTP10": "1"}, True, id="node metadata"),
        pytest.param((), {"HTTP10": "true"}, False, id="only '1' enables"),
        pytest.param((HTTP10_MESH,), None, True, id="defaultConfig proxyMetadata"),
        pytest.param((HTTP10_MESH,), {"HTTP10": "0"}, False, id="node metadata wins"),
    ],
)
def test_accept_http_10(docs: tuple[str, ...], metadata: dict[str, Any] | None, accept: bool) -> None:
    """enableHTTP10(node.Metadata.HTTP10): `accept_http_10` on the inbound (buildSidecarInboundHTTPOpts),
    HTTP proxy (buildHTTPProxy) and gateway (buildGatewayConnectionManager) HCMs alike."""
    found = hcms(listeners(*docs, metadata=metadata))
    for name in (HTTP_PROXY, INBOUND, INBOUND_GRPC, GW_HTTP, GW_HTTPS):
        assert found[name].get("http_protocol_options", {}).get("accept_http_10", False) is accept, name
    assert found[HTTP_PROXY]["http_protocol_options"]["allow_absolute_url"] is True


def test_preserve_case_replaces_the_http1_options() -> None:
    """buildHTTPConnectionManager replaces the HTTP/1 options with the preserve-case formatter when
    proxyHeaders.preserveHttp1HeaderCase is on: HTTP/1.0 and absolute URLs go with them, as in istiod."""
    config = mesh(
        defaultConfig={
            "proxyMetadata": {"ISTIO_META_HTTP10": "1"},
            "proxyHeaders": {"preserveHttp1HeaderCase": True},
        }
    )
    for name, m in hcms(listeners(config)).items():
        opts = m["http_protocol_options"]
        assert set(opts) == {"header_key_format"}, name
        assert opts["header_key_format"]["stateful_formatter"]["name"] == "preserve_case"


# --- buildHTTPConnectionManager: settings every HCM shares --------------------------------------------


def test_every_hcm_shares_the_builder_settings() -> None:
    """Codec AUTO, stream_idle_timeout 0s (disabled), websocket upgrades, Expect: 100-continue forwarded
    (ENABLE_100_CONTINUE_HEADERS), RDS over ADS with no initial fetch timeout, and istiod's UUID request id
    extension (useRequestIdForTraceSampling on)."""
    found = hcms(listeners())
    assert len(found) >= 5
    for name, m in found.items():
        assert m.get("codec_type", "AUTO") == "AUTO", name
        assert m["stream_idle_timeout"] == "0s", name
        assert m["upgrade_configs"][0] == {"upgrade_type": "websocket"}, name
        assert m["proxy_100_continue"] is True, name
        assert m["rds"]["config_source"]["initial_fetch_timeout"] == "0s", name
        assert m["request_id_extension"]["typed_config"] == {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
            "use_request_id_for_trace_sampling": True,
        }, name


def test_request_id_extension_follows_telemetry() -> None:
    """configureTracing's UUIDRequestIDExtensionContext: Telemetry useRequestIdForTraceSampling false."""
    telemetry = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: istio-system}
spec: {tracing: [{useRequestIdForTraceSampling: false}]}
"""
    for name, m in hcms(listeners(telemetry)).items():
        config = m["request_id_extension"]["typed_config"]
        assert config["use_request_id_for_trace_sampling"] is False, name


def test_no_internal_address_config() -> None:
    """TestHCMInternalAddressConfig "nil networks": without MeshNetworks (and with EnableHCMInternalNetworks
    off, its default) no HCM lists internal addresses, so Envoy's default (private ranges) stands."""
    assert all("internal_address_config" not in m for m in hcms(listeners()).values())


def test_http2_options_only_on_inbound_http2_ports() -> None:
    """buildSidecarInboundHTTPOpts sets Http2ProtocolOptions on HTTP/2 ports; buildHTTPProxy and
    buildGatewayConnectionManager never do (the codec still speaks h2 by Envoy's defaults)."""
    found = hcms(listeners())
    assert "http2_protocol_options" in found[INBOUND_GRPC]
    for name in (HTTP_PROXY, INBOUND, GW_HTTP, GW_HTTPS):
        assert "http2_protocol_options" not in found[name], name


@pytest.mark.parametrize(
    ("name", "remote"), [(HTTP_PROXY, False), (INBOUND, False), (GW_HTTP, True), (GW_HTTPS, True)]
)
def test_use_remote_address(name: str, remote: bool) -> None:
    """useRemoteAddress: false on sidecars (inbound, and outbound with UseRemoteAddress off), true on
    gateways, where the client's address is the edge's."""
    assert hcms(listeners())[name]["use_remote_address"] is remote


# --- buildGatewayConnectionManager ---------------------------------------------------------------


def test_gateway_hcm_defaults() -> None:
    """SANITIZE_SET with the client's subject, certificate, URIs and DNS SANs; no trusted XFF hops;
    `istio-envoy` server name; the HTTP server's stat prefix from the listener, the HTTPS server's its name
    (buildGatewayHTTPFilterChainOpts); RDS http.<port> / https.<port>.<port name>.<gateway>.<namespace>."""
    found = hcms(listeners())
    for name in (GW_HTTP, GW_HTTPS):
        m = found[name]
        assert m["forward_client_cert_details"] == "SANITIZE_SET", name
        assert m["set_current_client_cert_details"] == {
            "subject": True,
            "cert": True,
            "uri": True,
            "dns": True,
        }
        assert "xff_num_trusted_hops" not in m, name
        assert m["server_name"] == "istio-envoy", name
    assert found[GW_HTTP]["stat_prefix"] == "outbound_0.0.0.0_80"
    assert found[GW_HTTP]["rds"]["route_config_name"] == "http.80"
    assert found[GW_HTTPS]["stat_prefix"] == "secure"
    assert found[GW_HTTPS]["rds"]["route_config_name"] == HTTPS_ROUTE


@pytest.mark.parametrize(
    ("topology", "hops", "xfcc"),
    [
        pytest.param({"numTrustedProxies": 2}, 2, "SANITIZE_SET", id="trusted hops"),
        pytest.param({"numTrustedProxies": 0}, None, "SANITIZE_SET", id="zero hops"),
        pytest.param({"forwardClientCertDetails": "APPEND_FORWARD"}, None, "APPEND_FORWARD", id="xfcc"),
        pytest.param({"forwardClientCertDetails": "UNDEFINED"}, None, "SANITIZE_SET", id="undefined xfcc"),
    ],
)
def test_gateway_topology(topology: dict[str, Any], hops: int | None, xfcc: str) -> None:
    """ProxyConfig gatewayTopology: xff_num_trusted_hops and forward_client_cert_details on gateway HCMs
    only; the sidecar's HCMs ignore it."""
    found = hcms(listeners(mesh(defaultConfig={"gatewayTopology": topology})))
    for name in (GW_HTTP, GW_HTTPS):
        assert found[name].get("xff_num_trusted_hops") == hops, name
        assert found[name]["forward_client_cert_details"] == xfcc, name
    assert "xff_num_trusted_hops" not in found[INBOUND]
    assert found[INBOUND]["forward_client_cert_details"] == "APPEND_FORWARD"


def test_gateway_ignores_proxy_headers_xfcc() -> None:
    """ "Gateways do not use ProxyHeaders for XFCC": proxyHeaders.forwardedClientCert changes the sidecar's
    inbound HCM only."""
    found = hcms(
        listeners(mesh(defaultConfig={"proxyHeaders": {"forwardedClientCert": "ALWAYS_FORWARD_ONLY"}}))
    )
    assert found[INBOUND]["forward_client_cert_details"] == "ALWAYS_FORWARD_ONLY"
    for name in (GW_HTTP, GW_HTTPS):
        assert found[name]["forward_client_cert_details"] == "SANITIZE_SET", name


def test_server_header_pass_through_on_every_class() -> None:
    """GetProxyHeaders server.disabled: PASS_THROUGH and no server name, on sidecars and gateways alike."""
    for name, m in hcms(
        listeners(mesh(defaultConfig={"proxyHeaders": {"server": {"disabled": True}}}))
    ).items():
        assert m["server_header_transformation"] == "PASS_THROUGH", name
        assert "server_name" not in m, name


# --- transport_socket_connect_timeout and listener settings ------------------------------------------


def test_transport_socket_connect_timeout() -> None:
    """TestListenerTransportSocketConnectTimeoutForSidecar and buildGatewayListener: every chain of the
    sidecar's outbound listener and of gateway listeners (HTTP, HTTPS, TCP) bounds its handshake at 15s
    (defaultGatewayTransportSocketConnectTimeout); istiod's inbound chains set none."""
    found = listeners()
    gateway_listeners = [found[n] for n in ("0.0.0.0_80", "0.0.0.0_443", "0.0.0.0_9000")]
    for lst in [found[naming.VIRTUAL_OUTBOUND], *gateway_listeners]:
        for chain in lst["filter_chains"]:
            assert chain["transport_socket_connect_timeout"] == "15s", lst["name"]
    for port in (8080, 8082, 8083):
        for chain in found[f"{IP}_{port}"]["filter_chains"]:
            assert "transport_socket_connect_timeout" not in chain


def test_gateway_listener_has_no_filter_timeout() -> None:
    """buildGatewayListener sets no listener_filters_timeout (Envoy's 15s applies to its TLS inspector)."""
    found = listeners()
    for name in ("0.0.0.0_80", "0.0.0.0_443", "0.0.0.0_9000"):
        assert "listener_filters_timeout" not in found[name], name
        assert found[name]["traffic_direction"] == "OUTBOUND"


def test_no_per_connection_buffer_limit() -> None:
    """istiod sets no per_connection_buffer_limit_bytes on listeners: Envoy's 1MiB default applies."""
    assert all("per_connection_buffer_limit_bytes" not in lst for lst in listeners().values())
