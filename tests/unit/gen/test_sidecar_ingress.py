"""Sidecar `ingress` listeners (IstioIngressListener) against istiod.

Ports istiod's behaviour and tests: `pilot/pkg/networking/core/listener_inbound.go`
(buildInboundChainConfigs: a Sidecar with ingress replaces the service ports, chains `<bind>_<port>` to
`inbound|<port>||`; user TLS only where the port's mTLS mode is DISABLE), `cluster.go`
(buildInboundClustersFromSidecar: defaultEndpoint forms, findOrCreateService), `listener_test.go`
(TestSidecarInboundListenerFilters / testSidecarInboundListenerFilters: "simulate peer auth disabled on
port 80", "... strict", "... permissive") and `sidecar_simulation_test.go` (TestInboundSidecarTLSModes),
run as istiod's tests run them, with ENABLE_TLS_ON_SIDECAR_INGRESS on.

Isthmus departs by design (no iptables, loopback pods): each ingress port is its own listener on
`<pod ip>:<port>` (istiod's captureMode NONE form), and every defaultEndpoint form names the app's port P
as the pod sees it, which the app serves on 127.0.0.1 at ISTHMUS_PORTS[P]; a P the Workload does not
declare has no private port, so that ingress port is left out and reported.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from gen_helpers import configs, generate, sidecar, snapshot

from isthmus.api import loader
from isthmus.api.support import check_supported
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

IP = "127.7.0.9"
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
POD = Pod(
    "foo-0",
    "default",
    IP,
    {"app": "foo"},
    workload="foo",
    service_account="foo",
    app_ports={9080: 41080, 8080: 41081},
)
SERVICE = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "foo", "namespace": "default"},
        "spec": {"selector": {"app": "foo"}, "ports": [{"name": "http", "port": 80, "targetPort": 9080}]},
    }
)


def sidecar_doc(*ingress: dict[str, Any], name: str = "sidecar") -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"workloadSelector": {"labels": {"app": "foo"}}, "ingress": list(ingress)},
        }
    )


def port_mode(mode: str, port: int = 9080) -> str:
    """TestInboundSidecarTLSModes' peerAuthConfig: STRICT for the workload, `mode` on one port."""
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "peer-auth", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "foo"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {str(port): {"mode": mode}},
            },
        }
    )


def mesh_mode(mode: str) -> str:
    """listener_test.go's mtlsMode: a mesh-wide PeerAuthentication in istio-system."""
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": mode}},
        }
    )


SIMPLE = {"mode": "SIMPLE", "privateKey": "httpbinkey.pem", "serverCertificate": "httpbin.pem"}
MUTUAL = {**SIMPLE, "mode": "MUTUAL", "caCertificates": "rootCA.pem"}


def tls_ingress(protocol: str, tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "defaultEndpoint": "0.0.0.0:9080",
        "port": {"name": "tls", "number": 9080, "protocol": protocol},
        "tls": tls,
    }


def proxy() -> Any:
    return sidecar("foo-0", "default", dict(POD.labels), IP)


def snap(*docs: str) -> Any:
    return snapshot(SERVICE, *docs, pods=[POD])


def generated(type_url: str, *docs: str) -> dict[str, dict[str, Any]]:
    return generate(snap(*docs), proxy(), type_url)


def listeners(*docs: str) -> dict[str, dict[str, Any]]:
    return generated(naming.LISTENER_TYPE, *docs)


def clusters(*docs: str) -> dict[str, dict[str, Any]]:
    return generated(naming.CLUSTER_TYPE, *docs)


def chain_set(lst: dict[str, Any]) -> set[tuple[str, tuple[str, ...], str, str]]:
    """(transport, ALPNs, terminal filter, certificate) per chain: what Envoy selects and serves."""
    out = set()
    for c in lst["filter_chains"]:
        match = c.get("filter_chain_match", {})
        cert = ""
        if "transport_socket" in c:
            common = c["transport_socket"]["typed_config"]["common_tls_context"]
            cert = common["tls_certificate_sds_secret_configs"][0]["name"]
        out.add(
            (
                match.get("transport_protocol", ""),
                tuple(sorted(match.get("application_protocols", []))),
                "http" if c["filters"][-1]["name"] == HCM else "tcp",
                cert,
            )
        )
    return out


def endpoint_address(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]


# --- listeners and clusters come from the ingress listeners ------------------------------------------


def test_ingress_replaces_service_ports() -> None:
    """buildInboundChainConfigs: with ingress, only its ports (the service's 9080 is not served)."""
    docs = (
        sidecar_doc(
            {
                "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:9080",
            }
        ),
    )
    lds = listeners(*docs)
    assert f"{IP}_7070" in lds and f"{IP}_9080" not in lds
    cds = clusters(*docs)
    assert "inbound|7070||" in cds and "inbound|9080||" not in cds
    assert endpoint_address(cds["inbound|7070||"])["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 41080,
    }


def test_without_ingress_service_ports_stay() -> None:
    egress_only = json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "sidecar", "namespace": "default"},
            "spec": {"egress": [{"hosts": ["./*"]}]},
        }
    )
    assert {f"{IP}_9080", f"{IP}_8080"} <= set(listeners(egress_only))


def test_chain_and_route_names_follow_istiod() -> None:
    docs = (
        sidecar_doc(
            {
                "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:9080",
            }
        ),
    )
    lst = listeners(*docs)[f"{IP}_7070"]
    assert {c["name"] for c in lst["filter_chains"]} == {"0.0.0.0_7070"}
    hcm = next(
        c["filters"][-1]["typed_config"] for c in lst["filter_chains"] if c["filters"][-1]["name"] == HCM
    )
    assert hcm["rds"]["route_config_name"] == "inbound|7070||"
    assert hcm["stat_prefix"] == "inbound_0.0.0.0_7070"
    # BuildConfigInfoMetadata: the chains say which Sidecar made them.
    meta = lst["filter_chains"][0]["metadata"]["filter_metadata"]["istio"]["config"]
    assert meta == "/apis/networking.istio.io/v1/namespaces/default/sidecar/sidecar"
    routes = generate(snap(*docs), proxy(), naming.ROUTE_TYPE, {"inbound|7070||"})
    vh = routes["inbound|7070||"]["virtual_hosts"][0]
    assert vh["name"] == "inbound|http|7070"
    assert vh["routes"][0]["route"]["cluster"] == "inbound|7070||"
    # TraceOperation on the chain's telemetry host, `<sidecar>.<namespace>`.
    assert vh["routes"][0]["decorator"]["operation"] == "sidecar.default:7070/*"


@pytest.mark.parametrize(
    ("endpoint", "port", "app_port"),
    [
        ("127.0.0.1:9080", 7070, 41080),
        ("0.0.0.0:8080", 7070, 41081),  # the pod IP's port 8080: the app's private 8080
        ("[::1]:9080", 7070, 41080),
        ("[::]:8080", 7070, 41081),
        (None, 8080, 41081),  # no defaultEndpoint: the same port on the instance
    ],
)
def test_default_endpoint_forms_map_to_private_ports(endpoint: str | None, port: int, app_port: int) -> None:
    ingress: dict[str, Any] = {"port": {"number": port, "protocol": "HTTP", "name": "http"}}
    if endpoint is not None:
        ingress["defaultEndpoint"] = endpoint
    c = clusters(sidecar_doc(ingress))[f"inbound|{port}||"]
    assert c["type"] == "STATIC"
    assert endpoint_address(c)["socket_address"] == {"address": "127.0.0.1", "port_value": app_port}


def test_literal_private_port_is_taken_as_is() -> None:
    """127.0.0.1:<the app's private port> names where the app does listen: no mapping needed."""
    ingress = {
        "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
        "defaultEndpoint": "127.0.0.1:41081",
    }
    c = clusters(sidecar_doc(ingress))["inbound|7070||"]
    assert endpoint_address(c)["socket_address"] == {"address": "127.0.0.1", "port_value": 41081}


def test_unix_default_endpoint() -> None:
    ingress = {
        "port": {"number": 7070, "protocol": "TCP", "name": "tcp"},
        "defaultEndpoint": "unix:///var/run/app.sock",
    }
    c = clusters(sidecar_doc(ingress))["inbound|7070||"]
    assert endpoint_address(c) == {"pipe": {"path": "/var/run/app.sock"}}


def test_undeclared_app_port_is_left_out_and_reported() -> None:
    docs = (
        sidecar_doc(
            {
                "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:5555",
            },
            {
                "port": {"number": 7071, "protocol": "HTTP", "name": "http2"},
                "defaultEndpoint": "127.0.0.1:9080",
            },
        ),
    )
    s = snap(*docs)
    lds = generate(s, proxy(), naming.LISTENER_TYPE)
    assert f"{IP}_7070" not in lds and f"{IP}_7071" in lds
    assert "inbound|7070||" not in generate(s, proxy(), naming.CLUSTER_TYPE)
    error = s.generation_errors[f"listener {IP}_7070"]
    assert "Sidecar default/sidecar spec.ingress[0]" in error and "5555" in error and "9080" in error


def test_reserved_sidecar_port_is_skipped() -> None:
    """CanBindToPort / conflictWithReservedListener: a port of a static listener is skipped."""
    s = snap(
        sidecar_doc(
            {
                "port": {"number": 15021, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:9080",
            }
        )
    )
    assert f"{IP}_15021" not in generate(s, proxy(), naming.LISTENER_TYPE)
    assert "health" in s.generation_errors[f"listener {IP}_15021"]


# --- protocol, mTLS and user TLS --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "filter_"),
    [("HTTP", "http"), ("TCP", "tcp"), ("HTTPS", "tcp"), ("TLS", "tcp"), ("GRPC", "http")],
)
def test_port_protocol_picks_the_filter(protocol: str, filter_: str) -> None:
    ingress = {
        "port": {"number": 7070, "protocol": protocol, "name": "p"},
        "defaultEndpoint": "127.0.0.1:9080",
    }
    lst = listeners(sidecar_doc(ingress), mesh_mode("DISABLE"))[f"{IP}_7070"]
    assert {kind for _, _, kind, _ in chain_set(lst)} == {filter_}


def test_peer_authentication_applies_on_ingress_ports() -> None:
    """PeerAuthentication applies by port number to ingress ports as to service ports."""
    ingress = {
        "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
        "defaultEndpoint": "127.0.0.1:9080",
    }
    strict = chain_set(listeners(sidecar_doc(ingress), port_mode("STRICT", 7070))[f"{IP}_7070"])
    assert strict == {("tls", (), "http", "default")}
    disabled = chain_set(listeners(sidecar_doc(ingress), port_mode("DISABLE", 7070))[f"{IP}_7070"])
    assert disabled == {("raw_buffer", (), "http", "")}


# TestInboundSidecarTLSModes: (name, PeerAuthentication on 9080, Sidecar tls, protocol) -> chains.
TLS_MODES = [
    ("sidecar http over TLS simple mode with peer auth on port disabled", "DISABLE", SIMPLE, "HTTPS",
     {("tls", (), "http", "file-cert:httpbin.pem~httpbinkey.pem")}),
    ("sidecar TCP over TLS simple mode with peer auth on port disabled", "DISABLE", SIMPLE, "TLS",
     {("tls", (), "tcp", "file-cert:httpbin.pem~httpbinkey.pem")}),
    ("sidecar http over mTLS mutual mode with peer auth on port disabled", "DISABLE", MUTUAL, "HTTPS",
     {("tls", (), "http", "file-cert:httpbin.pem~httpbinkey.pem")}),
    ("sidecar tcp over mTLS mutual mode with peer auth on port disabled", "DISABLE", MUTUAL, "TLS",
     {("tls", (), "tcp", "file-cert:httpbin.pem~httpbinkey.pem")}),
    # The user TLS needs mTLS off: STRICT keeps mesh mTLS (protocol after termination: TCP).
    ("sidecar http over TLS SIMPLE mode with peer auth on port STRICT", "STRICT", MUTUAL, "TLS",
     {("tls", (), "tcp", "default")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "mode", "tls", "protocol", "expected"), TLS_MODES, ids=[c[0] for c in TLS_MODES]
)
def test_istio_inbound_sidecar_tls_modes(
    name: str, mode: str, tls: dict[str, Any], protocol: str, expected: set[tuple]
) -> None:
    lst = listeners(port_mode(mode), sidecar_doc(tls_ingress(protocol, tls)))[f"{IP}_9080"]
    # No raw_buffer chain: plaintext finds no filter chain (ErrNoFilterChain).
    assert chain_set(lst) == expected
    if mode == "DISABLE":
        context = lst["filter_chains"][0]["transport_socket"]["typed_config"]
        assert bool(context.get("require_client_certificate")) == (tls["mode"] == "MUTUAL")
        validation = context["common_tls_context"].get("combined_validation_context", {})
        if tls["mode"] == "MUTUAL":
            assert validation["validation_context_sds_secret_config"]["name"] == "file-root:rootCA.pem"
        else:
            assert not validation
        assert context["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
        assert {"envoy.filters.listener.tls_inspector"} == {f["name"] for f in lst["listener_filters"]}


@pytest.mark.parametrize(("mode", "user_tls"), [("DISABLE", True), ("STRICT", False), ("PERMISSIVE", False)])
def test_istio_sidecar_inbound_listener_filters(mode: str, user_tls: bool) -> None:
    """testSidecarInboundListenerFilters: "simulate peer auth disabled on port 80" gets the file
    certificate; strict and permissive keep Istio mTLS (the SDS secret `default`)."""
    ingress = {
        "port": {"name": "https-port", "protocol": "https", "number": 8080},
        "defaultEndpoint": "127.0.0.1:8080",
        "tls": {"mode": "SIMPLE", "serverCertificate": "cert.pem", "privateKey": "privatekey.pem"},
    }
    lst = listeners(mesh_mode(mode), sidecar_doc(ingress))[f"{IP}_8080"]
    certs = {cert for _, _, _, cert in chain_set(lst) if cert}
    assert certs == ({"file-cert:cert.pem~privatekey.pem"} if user_tls else {"default"})
    for chain in lst["filter_chains"]:
        if "transport_socket" in chain:
            # The user's SIMPLE TLS asks for no client certificate; mesh mTLS requires one.
            required = chain["transport_socket"]["typed_config"].get("require_client_certificate", False)
            assert required is not user_tls
    # After TLS termination HTTPS is HTTP: the chains run the HCM.
    assert all(c["filters"][-1]["name"] == HCM for c in lst["filter_chains"])


def test_mesh_tls_defaults_and_cipher_filter_apply_to_ingress_tls() -> None:
    ingress = tls_ingress(
        "HTTPS", {**SIMPLE, "cipherSuites": ["ECDHE-RSA-AES128-GCM-SHA256", "not-a-cipher"]}
    )
    lst = listeners(port_mode("DISABLE"), sidecar_doc(ingress))[f"{IP}_9080"]
    params = lst["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]["tls_params"]
    assert params["cipher_suites"] == ["ECDHE-RSA-AES128-GCM-SHA256"]


# --- clusters: pool, protocol, telemetry -------------------------------------------------------------


def test_ingress_connection_pool_sets_the_inbound_cluster() -> None:
    ingress = {
        "port": {"number": 7070, "protocol": "HTTP", "name": "http"},
        "defaultEndpoint": "127.0.0.1:9080",
        "connectionPool": {"tcp": {"maxConnections": 5}, "http": {"http1MaxPendingRequests": 4}},
    }
    thresholds = clusters(sidecar_doc(ingress))["inbound|7070||"]["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_connections"] == 5 and thresholds["max_pending_requests"] == 4


def test_cluster_telemetry_metadata() -> None:
    """findOrCreateService: the service whose target port is the ingress port, else `<sidecar>.<ns>`."""
    docs = (
        sidecar_doc(
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:9080",
            },
            {
                "port": {"number": 7070, "protocol": "HTTP", "name": "http2"},
                "defaultEndpoint": "127.0.0.1:9080",
            },
        ),
    )
    cds = clusters(*docs)
    services = cds["inbound|9080||"]["metadata"]["filter_metadata"]["istio"]["services"]
    assert services == [{"host": "foo.default.svc.cluster.local", "name": "foo", "namespace": "default"}]
    services = cds["inbound|7070||"]["metadata"]["filter_metadata"]["istio"]["services"]
    assert services == [{"host": "sidecar.default", "name": "sidecar", "namespace": "default"}]
    ports = {ib.port: ib for ib in snap(*docs).inbound_ports(proxy())}
    assert [s.name for s, _ in ports[9080].services] == ["foo"] and not ports[7070].services
    # The metrics' destination_service on those ports is the same service (istio-proxy reads it there).
    from isthmus.telemetry.resolver import ServiceInfo, SnapshotResolver

    resolver = SnapshotResolver(snap(*docs))
    assert resolver.inbound_service(proxy(), 7070) == ServiceInfo("sidecar.default", "sidecar", "default")
    assert resolver.inbound_service(proxy(), 9080) == ServiceInfo(
        "foo.default.svc.cluster.local", "foo", "default"
    )


def test_auto_protocol_port_uses_downstream_protocol() -> None:
    ingress = {"port": {"number": 7070, "name": "unnamed"}, "defaultEndpoint": "127.0.0.1:9080"}
    c = clusters(sidecar_doc(ingress))["inbound|7070||"]
    opts = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "use_downstream_protocol_config" in opts


# --- what the running mesh accepts -------------------------------------------------------------------


def supported_errors(ingress: dict[str, Any]) -> list[str]:
    (res,) = loader.load_text(sidecar_doc(ingress), "sidecar.yaml")
    return [str(e) for e in check_supported(res)]


def test_ingress_is_accepted_by_the_running_mesh() -> None:
    assert supported_errors(tls_ingress("HTTPS", SIMPLE)) == []
    none = {"port": {"number": 7070, "protocol": "HTTP", "name": "http"}, "captureMode": "NONE"}
    assert supported_errors(none) == []
    assert supported_errors({**none, "captureMode": "DEFAULT"}) == []


def test_capture_and_bind_are_refused() -> None:
    base = {"port": {"number": 7070, "protocol": "HTTP", "name": "http"}}
    (error,) = supported_errors({**base, "captureMode": "IPTABLES"})
    assert "spec.ingress[0].captureMode" in error and "no traffic capture" in error
    (error,) = supported_errors({**base, "bind": "127.0.0.5"})
    assert "spec.ingress[0].bind" in error


def test_istio_mutual_is_refused_by_validation() -> None:
    """validateSidecar: ISTIO_MUTUAL / AUTO_PASSTHROUGH cannot be set in sidecar ingress tls."""
    with pytest.raises(Exception, match="cannot set mode to ISTIO_MUTUAL in sidecar ingress tls"):
        configs(sidecar_doc(tls_ingress("HTTPS", {"mode": "ISTIO_MUTUAL"})))
