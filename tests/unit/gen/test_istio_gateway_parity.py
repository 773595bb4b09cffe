"""Gateway translation against istiod's own unit tests, case by case where Istio YAML can say it.

Sources (istio/istio): `pilot/pkg/networking/core/gateway_test.go` (TestBuildGatewayListenerTlsContext,
TestCreateGatewayHTTPFilterChainOpts, TestGatewayHTTPRouteConfig, TestBuildGatewayListeners,
TestBuildGatewayListenersFilters, TestGatewayFilterChainSNIOverlap) and `pilot/pkg/model/gateway_test.go`
(TestMergeGateways). Left out: QUIC/HTTP3 listeners, WASM plugins, istio-proxy's metadata-exchange
filter, MeshConfig `tlsDefaults`, HTTP/1.0 node metadata, persistent-session labels, and servers
Isthmus validation rejects (ISTIO_MUTUAL with credentialName, SIMPLE without a certificate). Isthmus
shifts ports below 1024 by its port offset instead of dropping them on an unprivileged pod (DESIGN.md
§3); listener names keep the declared port either way.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml
from gen_helpers import PODS, generate, snapshot

from isthmus.model.proxy import Proxy
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

GW_LABELS = {"istio": "ingressgateway"}
GW_POD = Pod("gw-0", "istio-system", "127.7.0.9", GW_LABELS, workload="gw", gateway=True)


def gateway_proxy() -> Proxy:
    return Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels=GW_LABELS,
    )


def gateway(name: str, namespace: str, servers: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{textwrap.indent(textwrap.dedent(servers).strip(), "  ")}
"""


def virtual_service(name: str, namespace: str, spec: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{textwrap.indent(textwrap.dedent(spec).strip(), "  ")}
"""


def listeners(*docs: str) -> dict[str, dict[str, Any]]:
    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    return generate(snap, gateway_proxy(), naming.LISTENER_TYPE)


def route_config(*docs: str, name: str) -> dict[str, Any]:
    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    return generate(snap, gateway_proxy(), naming.ROUTE_TYPE, {name})[name]


def tls_context(chain: dict[str, Any]) -> dict[str, Any]:
    ctx = dict(chain["transport_socket"]["typed_config"])
    del ctx["@type"]
    return ctx


def sds_names(configs: list[dict[str, Any]]) -> list[str]:
    # Every SDS reference goes to the agent over gRPC, as istiod's `sds-grpc` ConfigSource does.
    for c in configs:
        assert c["sds_config"]["api_config_source"]["grpc_services"] == [
            {"envoy_grpc": {"cluster_name": "sds-grpc"}}
        ]
    return [c["name"] for c in configs]


# --- TestBuildGatewayListenerTlsContext -----------------------------------------------------------


def https_context(tls: str, protocol: str = "HTTPS") -> dict[str, Any]:
    """The downstream TLS context istiod builds for one server with these `tls` settings."""
    gw = gateway(
        "gw",
        "istio-system",
        f"""
        - port: {{number: 443, name: https, protocol: {protocol}}}
          hosts: [httpbin.example.com, bookinfo.example.com]
          tls: {tls}
        """,
    )
    # A TLS (not HTTPS) server only gets a chain for a VirtualService `tcp` route.
    vs = virtual_service(
        "tcp",
        "istio-system",
        """
        hosts: [httpbin.example.com]
        gateways: [gw]
        tcp: [{route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]}]
        """,
    )
    (chain,) = listeners(gw, vs)["0.0.0.0_443"]["filter_chains"]
    return tls_context(chain)


def validation(ctx: dict[str, Any]) -> tuple[dict[str, Any], str]:
    combined = ctx["common_tls_context"]["combined_validation_context"]
    return combined.get("default_validation_context", {}), combined["validation_context_sds_secret_config"][
        "name"
    ]


def exact(*names: str) -> list[dict[str, str]]:
    return [{"exact": n} for n in names]


def test_istio_mutual_uses_the_workload_certificate_and_mesh_root() -> None:
    # "mesh SDS enabled, tls mode ISTIO_MUTUAL": no SAN check beyond the server's own.
    ctx = https_context("{mode: ISTIO_MUTUAL}")
    common = ctx["common_tls_context"]
    assert ctx["require_client_certificate"] is True
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert sds_names(common["tls_certificate_sds_secret_configs"]) == ["default"]
    default, root = validation(ctx)
    assert (default, root) == ({}, "ROOTCA")


def test_istio_mutual_with_crl_and_subject_alt_names() -> None:
    # "mesh SDS enabled, tls mode ISTIO_MUTUAL, CRL specified"; subjectAltNames as ApplyToCommonTLSContext.
    ctx = https_context("{mode: ISTIO_MUTUAL, caCrl: /custom/path/to/crl.pem, subjectAltNames: [a.com]}")
    default, root = validation(ctx)
    assert root == "ROOTCA"
    assert default == {
        "crl": {"filename": "/custom/path/to/crl.pem"},
        "match_subject_alt_names": exact("a.com"),
    }


def test_simple_with_credential_name() -> None:
    # "credential name no key no cert tls SIMPLE": no client validation, no TLS parameters of its own.
    ctx = https_context("{mode: SIMPLE, credentialName: ingress-sds-resource-name}")
    assert ctx == {
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificate_sds_secret_configs": ctx["common_tls_context"][
                "tls_certificate_sds_secret_configs"
            ],
        },
        "require_client_certificate": False,
    }
    names = sds_names(ctx["common_tls_context"]["tls_certificate_sds_secret_configs"])
    assert names == ["kubernetes://ingress-sds-resource-name"]


def test_simple_with_credential_name_checks_subject_alt_names() -> None:
    # "credential name subject alternative name no key no cert tls SIMPLE": a static validation context.
    ctx = https_context(
        "{mode: SIMPLE, credentialName: ingress-sds-resource-name, "
        "subjectAltNames: [subject.name.a.com, subject.name.b.com]}"
    )
    common = ctx["common_tls_context"]
    assert common["validation_context"] == {
        "match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com")
    }
    assert "combined_validation_context" not in common
    assert ctx["require_client_certificate"] is False


def test_simple_with_file_certificates() -> None:
    # "no credential name key and cert tls SIMPLE".
    ctx = https_context("{mode: SIMPLE, serverCertificate: server-cert.crt, privateKey: private-key.key}")
    common = ctx["common_tls_context"]
    assert sds_names(common["tls_certificate_sds_secret_configs"]) == [
        "file-cert:server-cert.crt~private-key.key"
    ]
    assert "combined_validation_context" not in common and "validation_context" not in common
    assert ctx["require_client_certificate"] is False


FILES = "serverCertificate: server-cert.crt, privateKey: private-key.key, caCertificates: ca-cert.crt"
SANS = "subjectAltNames: [subject.name.a.com, subject.name.b.com]"


@pytest.mark.parametrize(
    ("tls", "required", "default"),
    [
        # "no credential name key and cert tls MUTUAL"
        (f"{{mode: MUTUAL, {FILES}}}", True, {}),
        # "no credential name key and cert subject alt names tls MUTUAL" (with and without a CRL)
        (
            f"{{mode: MUTUAL, {FILES}, {SANS}}}",
            True,
            {"match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com")},
        ),
        (
            f"{{mode: MUTUAL, {FILES}, {SANS}, caCrl: /custom/path/to/crl.pem}}",
            True,
            {
                "match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com"),
                "crl": {"filename": "/custom/path/to/crl.pem"},
            },
        ),
        # "no credential name key and cert subject alt names tls OPTIONAL_MUTUAL" (both)
        (
            f"{{mode: OPTIONAL_MUTUAL, {FILES}, {SANS}}}",
            False,
            {"match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com")},
        ),
        (
            f"{{mode: OPTIONAL_MUTUAL, {FILES}, caCrl: /custom/path/to/crl.pem, {SANS}}}",
            False,
            {
                "match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com"),
                "crl": {"filename": "/custom/path/to/crl.pem"},
            },
        ),
    ],
)
def test_mutual_with_file_certificates(tls: str, required: bool, default: dict[str, Any]) -> None:
    ctx = https_context(tls)
    assert ctx["require_client_certificate"] is required
    assert sds_names(ctx["common_tls_context"]["tls_certificate_sds_secret_configs"]) == [
        "file-cert:server-cert.crt~private-key.key"
    ]
    assert validation(ctx) == (default, "file-root:ca-cert.crt")


@pytest.mark.parametrize(
    ("tls", "required", "default"),
    [
        # "credential name subject alternative name key and cert tls MUTUAL" / OPTIONAL_MUTUAL (Isthmus
        # rejects credentialName together with serverCertificate, as Istio's validation does).
        (f"{{mode: MUTUAL, credentialName: ingress-sds-resource-name, {SANS}}}", True, "san"),
        (f"{{mode: OPTIONAL_MUTUAL, credentialName: ingress-sds-resource-name, {SANS}}}", False, "san"),
        # "credential name verify spki key and cert tls MUTUAL" / "... verify hash ...". istiod passes its
        # test's pins through; Envoy cannot decode them (not a SHA-256) and NACKs the listener, so Isthmus
        # sends a well-formed pin that matches no certificate, as they match none (test_fuzz_findings.py).
        (
            "{mode: MUTUAL, credentialName: ingress-sds-resource-name, verifyCertificateSpki: [abcdef]}",
            True,
            {"verify_certificate_spki": ["A" * 43 + "="]},
        ),
        (
            "{mode: MUTUAL, credentialName: ingress-sds-resource-name, verifyCertificateHash: [fedcba]}",
            True,
            {"verify_certificate_hash": ["0" * 64]},
        ),
    ],
)
def test_mutual_with_credential_name(tls: str, required: bool, default: Any) -> None:
    if default == "san":
        default = {"match_subject_alt_names": exact("subject.name.a.com", "subject.name.b.com")}
    ctx = https_context(tls)
    assert ctx["require_client_certificate"] is required
    assert sds_names(ctx["common_tls_context"]["tls_certificate_sds_secret_configs"]) == [
        "kubernetes://ingress-sds-resource-name"
    ]
    assert validation(ctx) == (default, "kubernetes://ingress-sds-resource-name-cacert")


def test_duplicated_and_unknown_cipher_suites_are_dropped() -> None:
    # "duplicated cipher suites with tls SIMPLE" (and filteredGatewayCipherSuites' unknown ones).
    ctx = https_context(
        "{mode: SIMPLE, serverCertificate: server-cert.crt, privateKey: private-key.key, "
        "cipherSuites: [ECDHE-ECDSA-AES128-SHA, ECDHE-ECDSA-AES128-SHA, NOT-A-CIPHER]}"
    )
    assert ctx["common_tls_context"]["tls_params"] == {"cipher_suites": ["ECDHE-ECDSA-AES128-SHA"]}


@pytest.mark.parametrize(
    ("versions", "params"),
    [
        ("minProtocolVersion: TLSV1_3", {"tls_minimum_protocol_version": "TLSv1_3"}),
        ("maxProtocolVersion: TLSV1_2", {"tls_maximum_protocol_version": "TLSv1_2"}),
        (
            "minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3",
            {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        ),
        ("minProtocolVersion: TLS_AUTO", None),
    ],
)
def test_protocol_versions_only_as_set(versions: str, params: dict[str, str] | None) -> None:
    # applyServerTLSSettings: only a version the server names; Envoy's defaults stand for the rest.
    ctx = https_context(f"{{mode: SIMPLE, credentialName: cert, {versions}}}")
    assert ctx["common_tls_context"].get("tls_params") == params


@pytest.mark.parametrize(
    ("tls", "alpn"),
    [
        # "tcp server with terminating (non-istio)mutual tls": the HTTP ALPN list all the same.
        (f"{{mode: MUTUAL, {FILES}, {SANS}}}", ["h2", "http/1.1"]),
        # "tcp server, tls SIMPLE"
        ("{mode: SIMPLE, credentialName: ingress-sds-resource-name}", ["h2", "http/1.1"]),
        # "mesh SDS enabled, tcp server, tls mode ISTIO_MUTUAL": ALPNDownstreamWithMxc.
        ("{mode: ISTIO_MUTUAL}", ["istio-peer-exchange", "h2", "http/1.1"]),
    ],
)
def test_tls_server_terminated_for_tcp_routes(tls: str, alpn: list[str]) -> None:
    ctx = https_context(tls, protocol="TLS")
    assert ctx["common_tls_context"]["alpn_protocols"] == alpn


def test_passthrough_has_no_tls_context() -> None:
    # "no credential name key and cert tls PASSTHROUGH": result nil; the chain forwards the bytes.
    gw = gateway(
        "gw",
        "istio-system",
        """
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [httpbin.example.com]
          tls: {mode: PASSTHROUGH}
        """,
    )
    vs = virtual_service(
        "tls",
        "istio-system",
        """
        hosts: [httpbin.example.com]
        gateways: [gw]
        tls:
        - match: [{sniHosts: [httpbin.example.com]}]
          route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]
        """,
    )
    (chain,) = listeners(gw, vs)["0.0.0.0_443"]["filter_chains"]
    assert "transport_socket" not in chain
    assert chain["filter_chain_match"]["server_names"] == ["httpbin.example.com"]
    assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"


# --- TestCreateGatewayHTTPFilterChainOpts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "sni"),
    [
        ("[example.org, example.org]", ["example.org"]),  # "Duplicate hosts in TLS filterChain"
        ("[example.org, test.org]", ["example.org", "test.org"]),  # "Unique hosts in TLS filterChain"
        ("['*.example.org', example.org]", ["*.example.org", "example.org"]),  # wildcards are no duplicates
        ("[ns/example.org]", ["example.org"]),  # GetSNIHostsForServer strips the namespace
        ("['*']", None),  # a full wildcard matches any SNI
    ],
)
def test_https_filter_chain_server_names(hosts: str, sni: list[str] | None) -> None:
    gw = gateway(
        "gw",
        "istio-system",
        f"""
        - name: server1
          port: {{number: 443, name: https, protocol: HTTPS}}
          hosts: {hosts}
          tls: {{mode: ISTIO_MUTUAL}}
        """,
    )
    (chain,) = listeners(gw)["0.0.0.0_443"]["filter_chains"]
    assert chain.get("filter_chain_match", {}).get("server_names") == sni
    hcm = chain["filters"][-1]["typed_config"]
    # "HTTPS Protocol with server name": the server's name is the HCM's stat prefix.
    assert hcm["stat_prefix"] == "server1"
    assert hcm["rds"]["route_config_name"] == "https.443.https.gw.istio-system"
    assert hcm["use_remote_address"] is True


# --- TestGatewayHTTPRouteConfig -------------------------------------------------------------------

ROUTE_SERVICES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: example, namespace: default}
spec:
  hosts: [example.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: example-svc, namespace: default}
spec:
  hosts: [example.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: DNS
"""

GATEWAYS = {
    "httpRedirectGateway": gateway(
        "gateway-redirect",
        "default",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [example.org]
          tls: {httpsRedirect: true}
        """,
    ),
    "httpRedirectGatewayWithoutVS": gateway(
        "gateway-redirect-noroutes",
        "default",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [example.org]
          tls: {httpsRedirect: true}
        """,
    ),
    "httpGateway": gateway(
        "gateway", "default", "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [example.org]"
    ),
    "httpCaseInSensitiveGateway": gateway(
        "case-insensitive-gateway",
        "default",
        "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [Example.org]",
    ),
    "httpsGateway": gateway(
        "gateway-https",
        "default",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [Example.org]
          tls: {httpsRedirect: true}
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [example.org]
          tls: {mode: SIMPLE, credentialName: cert}
        """,
    ),
    "httpsGatewayRedirect": gateway(
        "gateway-https",
        "default",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [example.org]
          tls: {httpsRedirect: true}
        - port: {number: 443, name: https, protocol: HTTPS}
          hosts: [example.org]
          tls: {httpsRedirect: true, mode: SIMPLE, credentialName: cert}
        """,
    ),
    "httpGatewayWildcard": gateway(
        "gateway", "default", "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']"
    ),
}

TO_EXAMPLE = "http: [{route: [{destination: {host: example.org, port: {number: 80}}}]}]"
VIRTUAL_SERVICES = {
    "virtualService": virtual_service(
        "virtual-service",
        "default",
        f"hosts: [example.org]\ngateways: [gateway, gateway-redirect]\n{TO_EXAMPLE}",
    ),
    "virtualServiceCopy": virtual_service(
        "virtual-service-copy",
        "default",
        f"hosts: [example.org]\ngateways: [gateway, gateway-redirect]\n{TO_EXAMPLE}",
    ),
    "virtualServiceCaseInsensitive": virtual_service(
        "virtual-service-case-insensitive",
        "default",
        f"hosts: [Example.org]\ngateways: [case-insensitive-gateway, gateway-redirect]\n{TO_EXAMPLE}",
    ),
    "virtualServiceHTTPS": virtual_service(
        "virtual-service-https",
        "default",
        """
        hosts: [example.org]
        gateways: [gateway-https]
        http:
        - match: [{port: 443}]
          route: [{destination: {host: example.default.svc.cluster.local, port: {number: 8080}}}]
        """,
    ),
    "virtualServiceWildcard": virtual_service(
        "virtual-service-wildcard",
        "default",
        f"hosts: ['*.org']\ngateways: [gateway, gateway-redirect]\n{TO_EXAMPLE}",
    ),
}


@pytest.mark.parametrize(
    ("vses", "gws", "route_name", "vhosts", "routes", "redirect"),
    [
        pytest.param([], ["httpGateway"], "http.80", {"blackhole:80": ["*"]}, {"blackhole:80": 0}, False,
                     id="404 when no services"),
        pytest.param(["virtualService"], ["httpRedirectGatewayWithoutVS"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 0}, True,
                     id="tls redirect without virtual services"),
        pytest.param(["virtualService"], ["httpRedirectGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 1}, True,
                     id="virtual services with tls redirect"),
        pytest.param(["virtualService", "virtualServiceCopy"], ["httpRedirectGateway", "httpGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 4}, True,
                     id="merging of virtual services when tls redirect is set"),
        pytest.param(["virtualService", "virtualServiceCopy"], ["httpGateway", "httpRedirectGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 4}, True,
                     id="reverse merging of virtual services when tls redirect is set"),
        pytest.param(["virtualService", "virtualServiceCopy"], ["httpGateway", "httpRedirectGatewayWithoutVS"],
                     "http.80", {"example.org:80": ["example.org"]}, {"example.org:80": 2}, True,
                     id="merging of virtual services when tls redirect is set without VS"),
        pytest.param(["virtualService", "virtualServiceCopy"], ["httpRedirectGatewayWithoutVS", "httpGateway"],
                     "http.80", {"example.org:80": ["example.org"]}, {"example.org:80": 2}, True,
                     id="reverse merging of virtual services when tls redirect is set without VS"),
        pytest.param(["virtualService"], ["httpGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 1}, False,
                     id="add a route for a virtual service"),
        pytest.param(["virtualService", "virtualServiceCopy"], ["httpGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 2}, False,
                     id="duplicate virtual service should merge"),
        pytest.param(["virtualService", "virtualServiceCaseInsensitive"], ["httpGateway", "httpCaseInSensitiveGateway"],
                     "http.80", {"example.org:80": ["example.org"]}, {"example.org:80": 2}, False,
                     id="duplicate virtual service case insensitive"),
        pytest.param(["virtualService", "virtualServiceWildcard"], ["httpGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 2}, False,
                     id="duplicate by wildcard should merge"),
        pytest.param(["virtualServiceWildcard"], ["httpGatewayWildcard"], "http.80",
                     {"*.org:80": ["*.org"]}, {"*.org:80": 1}, False, id="wildcard virtual service"),
        pytest.param(["virtualServiceHTTPS"], ["httpsGateway"], "https.443.https.gateway-https.default",
                     {"example.org:443": ["example.org"]}, {"example.org:443": 1}, False,
                     id="https route of a redirecting gateway"),
        pytest.param(["virtualServiceHTTPS"], ["httpsGateway"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 0}, True,
                     id="http redirection when virtualservice does not match http port"),
        pytest.param(["virtualServiceHTTPS"], ["httpsGatewayRedirect"], "https.443.https.gateway-https.default",
                     {"example.org:443": ["example.org"]}, {"example.org:443": 1}, True,
                     id="https redirection on the https server"),
        pytest.param(["virtualServiceHTTPS"], ["httpsGatewayRedirect"], "http.80",
                     {"example.org:80": ["example.org"]}, {"example.org:80": 0}, True,
                     id="http & https redirection when virtualservice does not match http port"),
    ],
)  # fmt: skip
def test_gateway_http_route_config(
    vses: list[str],
    gws: list[str],
    route_name: str,
    vhosts: dict[str, list[str]],
    routes: dict[str, int],
    redirect: bool,
) -> None:
    docs = [ROUTE_SERVICES, *(GATEWAYS[g] for g in gws), *(VIRTUAL_SERVICES[v] for v in vses)]
    table = route_config(*docs, name=route_name)
    assert table["name"] == route_name
    assert table["max_direct_response_body_size_bytes"] == 1048576  # DefaultMaxDirectResponseBodySizeBytes
    assert table["validate_clusters"] is False
    got = table["virtual_hosts"]
    assert {vh["name"]: vh["domains"] for vh in got} == vhosts
    assert {vh["name"]: len(vh.get("routes", [])) for vh in got} == routes
    for vh in got:
        assert (vh.get("require_tls") == "ALL") is redirect, vh["name"]
        if vh["name"] != "blackhole:80":
            assert vh["include_request_attempt_count"] is True


def test_virtual_service_binds_by_namespace_qualified_gateway_and_server_host_namespace() -> None:
    # Server hosts `ns/host` only take VirtualServices of that namespace; `gateways: [ns/gw]` binds
    # from another namespace (host.NamesForNamespace in buildGatewayHTTPRouteConfig).
    gw = gateway(
        "gw",
        "istio-system",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: [default/a.example.com, ./b.example.com, '*/c.example.com']
        """,
    )
    docs = [gw]
    for ns, host in (
        ("default", "a"),
        ("other", "a"),
        ("default", "b"),
        ("istio-system", "b"),
        ("other", "c"),
    ):
        docs.append(
            virtual_service(
                f"{host}-{ns}",
                ns,
                f"""
                hosts: [{host}.example.com]
                gateways: [istio-system/gw]
                http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]
                """,
            )
        )
    table = route_config(*docs, name="http.80")
    by_vhost = {vh["name"]: vh["routes"] for vh in table["virtual_hosts"]}
    assert sorted(by_vhost) == ["a.example.com:80", "b.example.com:80", "c.example.com:80"]
    for name, ns in (("a", "default"), ("b", "istio-system"), ("c", "other")):
        (r,) = by_vhost[f"{name}.example.com:80"]
        assert r["metadata"]["filter_metadata"]["istio"]["config"].endswith(
            f"/namespaces/{ns}/virtual-service/{name}-{ns}"
        )


# --- TestBuildGatewayListeners --------------------------------------------------------------------

GATEWAY_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def test_target_port_overrides_service_port() -> None:
    gw = gateway("gw", "istio-system", "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: ['*']")
    got = listeners(GATEWAY_SERVICE, gw)
    assert sorted(got) == ["0.0.0.0_8080"]
    hcm = got["0.0.0.0_8080"]["filter_chains"][0]["filters"][-1]["typed_config"]
    assert hcm["rds"]["route_config_name"] == "http.8080"  # gatewayRDSRouteName uses the resolved port


def test_multiple_ports() -> None:
    gw = gateway(
        "gw",
        "istio-system",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: ['*']
        - port: {number: 801, name: http2, protocol: HTTP}
          hosts: ['*']
        """,
    )
    assert sorted(listeners(gw)) == ["0.0.0.0_80", "0.0.0.0_801"]


def test_gateway_with_bind() -> None:
    gw = gateway(
        "gw",
        "istio-system",
        """
        - port: {number: 80, name: http, protocol: HTTP}
          hosts: ['*']
        - port: {number: 8080, name: http2, protocol: HTTP}
          hosts: [externalgatewayclient.com]
        - port: {number: 8080, name: http3, protocol: HTTP}
          bind: 127.0.0.1
          hosts: [internalmesh.svc.cluster.local]
        """,
    )
    got = listeners(gw)
    assert sorted(got) == ["0.0.0.0_80", "0.0.0.0_8080", "127.0.0.1_8080"]
    hcm = got["127.0.0.1_8080"]["filter_chains"][0]["filters"][-1]["typed_config"]
    assert hcm["rds"]["route_config_name"] == "http.8080.127.0.0.1"
    assert got["127.0.0.1_8080"]["address"]["socket_address"]["address"] == "127.0.0.1"


SIMPLE_TLS = "{mode: SIMPLE, credentialName: test}"


def server_names(listener: dict[str, Any]) -> list[list[str] | None]:
    return [c.get("filter_chain_match", {}).get("server_names") for c in listener["filter_chains"]]


def test_gateway_with_simple_and_passthrough() -> None:
    first = gateway(
        "first",
        "default",
        f"""
        - port: {{number: 443, name: https, protocol: HTTPS}}
          hosts: ['*.example.com']
          tls: {SIMPLE_TLS}
        - port: {{number: 80, name: http, protocol: HTTP}}
          hosts: [foo.example.com]
        """,
    )
    passthrough = gateway(
        "passthrough-gateway",
        "testns",
        f"""
        - port: {{number: 443, name: https, protocol: HTTPS}}
          hosts: ['*.example.com']
          tls: {SIMPLE_TLS}
        - port: {{number: 9443, name: tcp, protocol: TLS}}
          hosts: [barone.example.com]
          tls: {{mode: PASSTHROUGH}}
        - port: {{number: 80, name: http, protocol: HTTP}}
          hosts: [bar.example.com]
        """,
    )
    vs = virtual_service(
        "barone",
        "default",
        """
        gateways: [testns/passthrough-gateway]
        hosts: [barone.example.com]
        tls:
        - match: [{port: 9443, sniHosts: [barone.example.com]}]
          route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]
        """,
    )
    got = listeners(first, passthrough, vs)
    assert sorted(got) == ["0.0.0.0_443", "0.0.0.0_80", "0.0.0.0_9443"]
    # The second `*.example.com` TLS server on 443 repeats a host: mergeGateways drops it.
    assert server_names(got["0.0.0.0_443"]) == [["*.example.com"]]
    (chain,) = got["0.0.0.0_443"]["filter_chains"]
    assert chain["name"] == "https.443.https.first.default"
    assert server_names(got["0.0.0.0_9443"]) == [["barone.example.com"]]


def test_gateway_with_multiple_http_servers() -> None:
    docs = [
        gateway(
            name,
            "testns",
            f"""
            - port: {{number: 443, name: https, protocol: HTTPS}}
              hosts: ['{host}']
              tls: {SIMPLE_TLS}
            - port: {{number: 80, name: http, protocol: HTTP}}
              hosts: [{http_host}]
            """,
        )
        for name, host, http_host in (
            ("gateway1", "*.example.com", "foo.example.com"),
            ("gateway2", "*.exampleone.com", "bar.example.com"),
        )
    ]
    got = listeners(*docs)
    assert sorted(got) == ["0.0.0.0_443", "0.0.0.0_80"]
    assert server_names(got["0.0.0.0_443"]) == [["*.example.com"], ["*.exampleone.com"]]
    assert [c["name"] for c in got["0.0.0.0_443"]["filter_chains"]] == [
        "https.443.https.gateway1.testns",
        "https.443.https.gateway2.testns",
    ]
    assert len(got["0.0.0.0_80"]["filter_chains"]) == 1


def test_gateway_with_multiple_tls_https_tcp_servers() -> None:
    gateway1 = gateway(
        "gateway1",
        "testns",
        f"""
        - port: {{number: 443, name: tcp, protocol: TLS}}
          hosts: ['*.example.com']
          tls: {SIMPLE_TLS}
        - port: {{number: 443, name: https, protocol: HTTPS}}
          hosts: [https.example.com]
          tls: {SIMPLE_TLS}
        - port: {{number: 9443, name: tcp2, protocol: TCP}}
          hosts: [tcp.example.com]
        """,
    )
    gateway2 = gateway(
        "gateway2",
        "testns",
        f"""
        - port: {{number: 443, name: http, protocol: HTTPS}}
          hosts: ['*.exampleone.com']
          tls: {SIMPLE_TLS}
        - port: {{number: 443, name: tcp, protocol: TLS}}
          hosts: ['*.exampleone.com']
          tls: {SIMPLE_TLS}
        """,
    )
    vs = virtual_service(
        "tcp",
        "default",
        """
        gateways: [testns/gateway1]
        hosts: [tcp.example.com]
        tcp:
        - match: [{port: 9443}]
          route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]
        """,
    )
    got = listeners(gateway1, gateway2, vs)
    assert sorted(got) == ["0.0.0.0_443", "0.0.0.0_9443"]
    # No tcp route for the TLS servers on 443; gateway2's TLS server repeats its HTTPS host. The chains
    # are in istiod's sortFilterChains order (by their serialized match), not the servers' order.
    assert server_names(got["0.0.0.0_443"]) == [["*.exampleone.com"], ["https.example.com"]]
    (chain,) = got["0.0.0.0_9443"]["filter_chains"]
    assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"


TCP_ANY = """
gateways: [testns/{gw}]
hosts: ['*']
tcp:
- match: [{{port: {port}}}]
  route: [{{destination: {{host: reviews.default.svc.cluster.local, port: {{number: 9080}}}}}}]
"""


def test_gateway_with_multiple_tcp_https_servers_with_bind() -> None:
    docs = [
        gateway("gateway1", "testns", "- port: {number: 8000, name: tcp, protocol: TCP}\n  hosts: ['*']\n  bind: 10.0.0.1"),
        gateway("gateway2", "testns", "- port: {number: 8000, name: tcp, protocol: TCP}\n  hosts: ['*']\n  bind: 10.0.0.2"),
        gateway(
            "gateway3",
            "testns",
            f"- port: {{number: 8000, name: https, protocol: HTTPS}}\n  hosts: ['*']\n  bind: 10.0.0.3\n  tls: {SIMPLE_TLS}",
        ),
        virtual_service("vs1", "default", TCP_ANY.format(gw="gateway1", port=8000)),
        virtual_service("vs2", "default", TCP_ANY.format(gw="gateway2", port=8000)),
    ]  # fmt: skip
    got = listeners(*docs)
    assert sorted(got) == ["10.0.0.1_8000", "10.0.0.2_8000", "10.0.0.3_8000"]
    for name in ("10.0.0.1_8000", "10.0.0.2_8000"):
        (chain,) = got[name]["filter_chains"]
        assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"


def test_gateway_with_https_grpc_servers_with_bind() -> None:
    docs = [
        gateway(
            "gateway1",
            "testns",
            f"- port: {{number: 443, name: https, protocol: HTTPS}}\n  hosts: ['*']\n  bind: 10.0.0.1\n  tls: {SIMPLE_TLS}",
        ),
        gateway("gateway2", "testns", "- port: {number: 443, name: grpc, protocol: GRPC}\n  hosts: ['*']\n  bind: 10.0.0.2"),
        gateway("gateway3", "testns", "- port: {number: 443, name: grpc, protocol: GRPC}\n  hosts: [grpc.example.org]"),
    ]  # fmt: skip
    assert sorted(listeners(*docs)) == ["0.0.0.0_443", "10.0.0.1_443", "10.0.0.2_443"]


def test_gateway_with_https_tcp_invalid_configuration() -> None:
    docs = []
    for i in (1, 2):
        docs.append(
            gateway(
                f"gateway{i}",
                "testns",
                f"""
                - port: {{number: 443, name: https, protocol: HTTPS}}
                  hosts: ['*.{i}.example.com']
                  tls: {SIMPLE_TLS}
                - port: {{number: 443, name: tcp, protocol: TCP}}
                  hosts: ['*.{i}.example.com']
                """,
            )
        )
        docs.append(
            virtual_service(
                f"vs{i}",
                "default",
                f"""
                gateways: [testns/gateway{i}]
                hosts: ['*']
                tcp: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local, port: {{number: 9080}}}}}}]}}]
                """,
            )
        )
    got = listeners(*docs)
    assert sorted(got) == ["0.0.0.0_443"]
    # mergeGateways keeps both HTTPS servers and the first plain TCP one (istiod registers the port's
    # binds from its second non-plain-text server on); the second TCP server would repeat a match.
    chains = {
        str(c.get("filter_chain_match", {}).get("server_names")): c
        for c in got["0.0.0.0_443"]["filter_chains"]
    }
    assert sorted(chains) == ["None", "['*.1.example.com']", "['*.2.example.com']"]
    assert chains["None"]["name"] == "default/vs1"


def test_gateway_with_multiple_https_servers_with_bind_and_same_host() -> None:
    docs = [
        gateway(
            f"gateway{i}",
            "testns",
            f"- port: {{number: 443, name: tcp, protocol: HTTPS}}\n  hosts: ['*']\n  bind: 10.0.0.{i}\n  tls: {SIMPLE_TLS}",
        )
        for i in (1, 2)
    ]
    got = listeners(*docs)
    assert sorted(got) == ["10.0.0.1_443", "10.0.0.2_443"]
    assert [len(lst["filter_chains"]) for lst in got.values()] == [1, 1]


# --- TestBuildGatewayListenersFilters / TestGatewayFilterChainSNIOverlap --------------------------


def test_passthrough_server_chain() -> None:
    gw = gateway(
        "passthrough-gateway",
        "testns",
        "- port: {number: 9443, name: tls, protocol: TLS}\n  hosts: [barone.example.com]\n  tls: {mode: PASSTHROUGH}",
    )
    vs = virtual_service(
        "barone",
        "default",
        """
        gateways: [testns/passthrough-gateway]
        hosts: [barone.example.com]
        tls:
        - match: [{port: 9443, sniHosts: [barone.example.com]}]
          route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]
        """,
    )
    lst = listeners(gw, vs)["0.0.0.0_9443"]
    (chain,) = lst["filter_chains"]
    assert [f["name"] for f in chain["filters"]][-1] == "envoy.filters.network.tcp_proxy"
    assert [f["name"] for f in lst["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]


def test_terminated_tls_server_chain_with_proxy_protocol() -> None:
    # "terminated-tls server with proxy proto": the PROXY protocol listener filter comes first.
    mesh = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig: {gatewayTopology: {proxyProtocol: {}}}
"""
    gw = gateway(
        "terminated-tls-gateway",
        "testns",
        f"- port: {{number: 5678, name: tls, protocol: TLS}}\n  hosts: [barone.example.com]\n  tls: {SIMPLE_TLS}",
    )
    vs = virtual_service("barone", "default", TCP_ANY.format(gw="terminated-tls-gateway", port=5678))
    lst = listeners(mesh, gw, vs)["0.0.0.0_5678"]
    (chain,) = lst["filter_chains"]
    assert chain["filter_chain_match"]["server_names"] == ["barone.example.com"]
    assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"
    assert tls_context(chain)["require_client_certificate"] is False
    assert [f["name"] for f in lst["listener_filters"]] == [
        "envoy.filters.listener.proxy_protocol",
        "envoy.filters.listener.tls_inspector",
    ]


def test_tcp_route_needs_a_virtual_service_host_of_the_server() -> None:
    # pickMatchingGatewayHosts: a VirtualService bound to the gateway whose hosts miss the server's
    # gets no chain (so the later one that matches is used).
    gw = gateway(
        "gateway", "testns", "- port: {number: 100, name: tcp, protocol: TCP}\n  hosts: [www.example.com]"
    )
    other = virtual_service(
        "other",
        "default",
        """
        gateways: [testns/gateway]
        hosts: [other.example.com]
        tcp: [{route: [{destination: {host: ratings.other.svc.cluster.local, port: {number: 9080}}}]}]
        """,
    )
    www = virtual_service(
        "www",
        "default",
        """
        gateways: [testns/gateway]
        hosts: [www.example.com]
        tcp: [{route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]}]
        """,
    )
    (chain,) = listeners(gw, other, www)["0.0.0.0_100"]["filter_chains"]
    assert (
        chain["filters"][-1]["typed_config"]["cluster"] == "outbound|9080||reviews.default.svc.cluster.local"
    )
    assert "0.0.0.0_100" not in listeners(gw, other)


def test_passthrough_sni_hosts_are_the_match_as_written() -> None:
    # buildGatewayNetworkFiltersFromTLSRoutes: sniHosts become the chain's server names verbatim, even
    # where they are wider than the server's host; the VirtualService's hosts must meet the server's.
    gw = gateway(
        "gw",
        "testns",
        "- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [a.example.com]\n  tls: {mode: PASSTHROUGH}",
    )
    route = "route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]"
    wide = virtual_service(
        "wide",
        "testns",
        f"hosts: ['*.example.com']\ngateways: [gw]\ntls:\n- match: [{{sniHosts: ['*.example.com']}}]\n  {route}",
    )
    unrelated = virtual_service(
        "unrelated",
        "testns",
        f"hosts: [b.example.com]\ngateways: [gw]\ntls:\n- match: [{{sniHosts: [b.example.com]}}]\n  {route}",
    )
    lst = listeners(gw, wide, unrelated)["0.0.0.0_443"]
    assert server_names(lst) == [["*.example.com"]]


@pytest.mark.parametrize("two_gateways", [False, True], ids=["sni overlap in one gateway", "in two gateways"])
def test_gateway_filter_chain_sni_overlap(two_gateways: bool) -> None:
    example = "- port: {number: 443, name: example, protocol: TLS}\n  hosts: [example.com]\n  tls: {mode: PASSTHROUGH}"
    wildcard = "- port: {number: 443, name: wildcard-tls, protocol: HTTPS}\n  hosts: ['*']\n  tls: {mode: PASSTHROUGH}"
    if two_gateways:
        gws = [gateway("gw1", "testns", example), gateway("gw2", "testns", wildcard)]
        bound = "gw2"
    else:
        gws = [gateway("gw", "testns", f"{example}\n{wildcard}")]
        bound = "gw"
    vs = virtual_service(
        "example",
        "testns",
        f"""
        gateways: [testns/{bound}]
        hosts: [example.com]
        tls:
        - match: [{{sniHosts: [example.com]}}]
          route: [{{destination: {{host: reviews.default.svc.cluster.local, port: {{number: 9080}}}}}}]
        """,
    )
    lst = listeners(*gws, vs)["0.0.0.0_443"]
    # A valid listener: no two chains with the same match.
    assert server_names(lst) == [["example.com"]]


def test_duplicate_sni_across_virtual_services_keeps_the_first() -> None:
    gw = gateway(
        "gw",
        "testns",
        "- port: {number: 443, name: tls, protocol: TLS}\n  hosts: ['*.example.com']\n  tls: {mode: PASSTHROUGH}",
    )
    docs = [gw]
    for name, snis, dest in (
        ("first", "[a.example.com, b.example.com]", "reviews.default.svc.cluster.local"),
        ("second", "[b.example.com]", "ratings.other.svc.cluster.local"),
        ("third", "[c.example.com]", "ratings.other.svc.cluster.local"),
    ):
        docs.append(
            virtual_service(
                name,
                "testns",
                f"""
                gateways: [gw]
                hosts: ['*.example.com']
                tls:
                - match: [{{sniHosts: {snis}}}]
                  route: [{{destination: {{host: {dest}, port: {{number: 9080}}}}}}]
                """,
            )
        )
    lst = listeners(*docs)["0.0.0.0_443"]
    assert server_names(lst) == [["a.example.com", "b.example.com"], ["c.example.com"]]


# --- pilot/pkg/model TestMergeGateways -------------------------------------------------------------


def merge_config(
    name: str, namespace: str, host: str, port_name: str, protocol: str, number: int, bind: str = ""
) -> str:
    bind_line = f"\n  bind: {bind}" if bind else ""
    return gateway(
        name,
        namespace,
        f"- port: {{number: {number}, name: {port_name}, protocol: {protocol}}}\n  hosts: ['{host}']{bind_line}",
    )


def created_at(doc: str, second: int) -> str:
    """The document with a creationTimestamp `second` seconds into the day."""
    data = yaml.safe_load(textwrap.dedent(doc))
    data["metadata"]["creationTimestamp"] = f"2024-01-01T00:00:{second:02d}Z"
    return yaml.safe_dump(data)


MERGE = {
    "gwHTTPFoo": merge_config("foo1", "not-default", "foo.bar.com", "name1", "http", 7),
    "gwHTTPbar": merge_config("bar1", "not-default", "bar.foo.com", "bname1", "http", 7),
    "gwHTTPlocalbar": merge_config("lcoalbar1", "not-default", "localbar.foo.com", "bname1", "http", 7, "127.0.0.1"),
    "gwHTTP2Wildcard": merge_config("foo5", "not-default", "*", "name5", "http2", 8),
    "gwHTTPWildcard": merge_config("foo3", "not-default", "*", "name3", "http", 8),
    "gwTCPWildcard": merge_config("foo4", "not-default-2", "*", "name4", "tcp", 8),
    "gwHTTPWildcardAlternate": merge_config("foo2", "not-default", "*", "name2", "http", 7),
}  # fmt: skip


@pytest.mark.parametrize(
    ("configs", "servers", "route_servers"),
    [
        (["gwHTTPFoo"], ["foo1"], {"http.7": 1}),
        (["gwHTTPFoo", "gwHTTPbar"], ["foo1", "bar1"], {"http.7": 2}),  # two servers on the same port
        (["gwHTTPbar", "gwHTTPlocalbar"], ["bar1", "lcoalbar1"], {"http.7": 1, "http.7.127.0.0.1": 1}),
        (["gwHTTPFoo", "gwHTTPWildcardAlternate"], ["foo1", "foo2"], {"http.7": 2}),
        (["gwHTTPFoo", "gwHTTPWildcardAlternate", "gwHTTPWildcard"], ["foo1", "foo2", "foo3"],
         {"http.7": 2, "http.8": 1}),
        (["gwHTTPFoo", "gwTCPWildcard"], ["foo1", "foo4"], {"http.7": 1}),  # http-tcp-wildcard-server-config
        (["gwTCPWildcard", "gwHTTPWildcard"], ["foo4"], {}),  # tcp-http: the port is TCP's
        (["gwHTTPWildcard", "gwTCPWildcard"], ["foo3"], {"http.8": 1}),  # order matters
        (["gwHTTPWildcard", "gwHTTP2Wildcard"], ["foo3", "foo5"], {"http.8": 2}),  # http and http2 merge
    ],
)  # fmt: skip
def test_merge_gateways(configs: list[str], servers: list[str], route_servers: dict[str, int]) -> None:
    # MergeGateways takes its input in list order: one second apart, so creation order is that order.
    docs = (created_at(MERGE[c], second) for second, c in enumerate(configs))
    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    proxy = gateway_proxy()
    merged = snap.gateway_servers(proxy)
    assert [s.gateway.name for s in merged] == servers
    by_route: dict[str, int] = {}
    for s in merged:
        if s.serves_http:
            name = naming.gateway_http_route_name(s.listen_port, s.bind)
            by_route[name] = by_route.get(name, 0) + 1
    assert by_route == route_servers
    # Every listener still built is one Envoy accepts: at most one chain without a match.
    for lst in generate(snap, proxy, naming.LISTENER_TYPE).values():
        assert sum("filter_chain_match" not in c for c in lst["filter_chains"]) <= 1


def test_https_servers_on_one_port_need_distinct_route_names() -> None:
    # mergeGateways: "non unique port name for HTTPS port" (two Gateways may share a port name).
    docs = [
        gateway(
            name,
            "testns",
            f"- port: {{number: 443, name: https, protocol: HTTPS}}\n  hosts: [{host}]\n  tls: {SIMPLE_TLS}",
        )
        for name, host in (("a", "a.example.com"), ("b", "b.example.com"))
    ]
    snap = snapshot(*docs, pods=[*PODS, GW_POD])
    assert [s.gateway.name for s in snap.gateway_servers(gateway_proxy())] == ["a", "b"]


MESH_TLS_DEFAULTS = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  tlsDefaults: {ecdhCurves: [P-256], cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384], minProtocolVersion: TLSV1_3}
"""


@pytest.mark.parametrize(
    ("server_tls", "params"),
    [
        # applyDownstreamTLSDefaults: MeshConfig tlsDefaults for SIMPLE/MUTUAL servers...
        (
            "",
            {
                "ecdh_curves": ["P-256"],
                "cipher_suites": ["ECDHE-ECDSA-AES256-GCM-SHA384"],
                "tls_minimum_protocol_version": "TLSv1_3",
            },
        ),
        # ...then applyServerTLSSettings: what the server sets wins.
        (
            ", cipherSuites: [ECDHE-ECDSA-AES128-SHA], minProtocolVersion: TLSV1_2",
            {
                "ecdh_curves": ["P-256"],
                "cipher_suites": ["ECDHE-ECDSA-AES128-SHA"],
                "tls_minimum_protocol_version": "TLSv1_2",
            },
        ),
    ],
)
def test_mesh_tls_defaults_apply_to_simple_servers(server_tls: str, params: dict[str, Any]) -> None:
    gw = gateway(
        "gw",
        "istio-system",
        f"""
        - port: {{number: 443, name: https, protocol: HTTPS}}
          hosts: [httpbin.example.com]
          tls: {{mode: SIMPLE, credentialName: cert{server_tls}}}
        """,
    )
    (chain,) = listeners(gw, MESH_TLS_DEFAULTS)["0.0.0.0_443"]["filter_chains"]
    assert tls_context(chain)["common_tls_context"]["tls_params"] == params
