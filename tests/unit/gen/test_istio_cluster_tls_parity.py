"""Upstream TLS of outbound clusters against istiod's `pilot/pkg/networking/core/cluster_tls_test.go`.

Ports TestApplyUpstreamTLSSettings, TestBuildUpstreamClusterTLSContext and TestBuildAutoMtlsSettings
(the cases test_istio_cluster_parity.py does not already cover) as Istio YAML checked on the clusters we
generate. istiod's tests call the builder functions with hand-made options (`h2`, `router`,
`isDrWithSelector`, `serviceRegistry: External`); here each option is the config that produces it: an
HTTP/2 port (`grpc`), a gateway proxy, a DestinationRule `workloadSelector`, a ServiceEntry.

Departures by design, checked as such:
- ALPN of mesh mTLS: plain Envoy has no `istio.alpn` / metadata-exchange filters, so a client offers
  `istio-http/1.1` / `istio-h2` on HTTP ports and `istio` on TCP ports (server chains match on them,
  see isthmus.xds.gen.tls) where istiod offers `[istio-peer-exchange, istio]` (`+ h2`).
- SAN checks of mesh mTLS are typed URI matchers (a SPIFFE id is a URI SAN) where istiod uses the
  untyped `match_subject_alt_names`; DestinationRule SIMPLE/MUTUAL SANs stay untyped, as istiod's.
- `credentialName` secrets come from the agent's SDS server (the `sds-grpc` cluster, no initial fetch
  timeout) where istiod serves them over ADS (SDSAdsConfig); the names are istiod's.
- Proxy metadata certificates (`ISTIO_META_TLS_CLIENT_*`, the "Metadata cert path" cases of
  TestBuildAutoMtlsSettings) do not exist: the agent always serves the workload certificate over SDS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from gen_helpers import clusters, sidecar, snapshot
from test_istio_cluster_parity import (
    MULTI,
    MULTI_HOST,
    REVIEWS,
    doc,
    dr,
    gateway,
    http_options,
    mesh,
    outbound,
    tls_context,
)

SAN = "SAN"
SNI = "some-sni.com"
ROOT = "path/to/cacert"
CERT = "/path/to/cert"
KEY = "/path/to/key"
CREDENTIAL = "some-fake-credential"
REVIEWS_ID = "spiffe://cluster.local/ns/default/sa/reviews"
TLS_1_2_TO_1_3 = {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
# istiod's SDS source for the workload's and file secrets (ConstructSdsSecretConfig) and for credentials
# (SDSAdsConfig: no initial_fetch_timeout, a missing Secret must not block the cluster).
SDS = {
    "api_config_source": {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
    },
    "initial_fetch_timeout": "0s",
    "resource_api_version": "V3",
}
CREDENTIAL_SDS = {k: v for k, v in SDS.items() if k != "initial_fetch_timeout"}


def secret(name: str) -> dict[str, Any]:
    credential = name.startswith(("kubernetes://", "configmap://"))
    return {"name": name, "sds_config": CREDENTIAL_SDS if credential else SDS}


def validation(root: str, sans: list[str] | None = None, crl: str | None = None) -> dict[str, Any]:
    """istiod's combined validation context: untyped exact SANs, CRL file, root over SDS."""
    default: dict[str, Any] = {}
    if sans:
        default["match_subject_alt_names"] = [{"exact": s} for s in sans]
    if crl:
        default["crl"] = {"filename": crl}
    return {"default_validation_context": default, "validation_context_sds_secret_config": secret(root)}


def upstream(
    common: dict[str, Any], sni: str | None = SNI, alpn: list[str] | None = None, cert: str | None = None
) -> dict[str, Any]:
    """An expected UpstreamTlsContext (JSON form) with TLS 1.2-1.3, as istiod's defaultUpstreamCommonTLSContext."""
    ctx: dict[str, Any] = {"tls_params": TLS_1_2_TO_1_3}
    if cert:
        ctx["tls_certificate_sds_secret_configs"] = [secret(cert)]
    ctx.update(common)
    if alpn:
        ctx["alpn_protocols"] = alpn
    out: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    }
    out["common_tls_context"] = ctx
    if sni:
        out["sni"] = sni
    return out


def multi_cluster(tls: dict[str, Any] | None, port: int, *extra: str, proxy: Any = None) -> dict[str, Any]:
    """MULTI's cluster on `port` (7070: HTTP/2, 9090: sniffed, 9000: TCP) under a rule with this `tls`."""
    spec: dict[str, Any] = {"host": "multi"}
    if tls is not None:
        spec["trafficPolicy"] = {"tls": tls}
    return clusters(snapshot(MULTI, doc("DestinationRule", "multi", spec), *extra), proxy or sidecar())[
        f"outbound|{port}||{MULTI_HOST}"
    ]


def with_tls(tls: dict[str, Any], **spec: Any) -> str:
    return dr({"trafficPolicy": {"tls": tls}, **spec})


SELECT_WEB = {"workloadSelector": {"matchLabels": {"app": "web"}}}


# --- TestApplyUpstreamTLSSettings ---------------------------------------------------------------------

ISTIO_MUTUAL_CUSTOM = {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["custom.foo.com"], "sni": "custom.foo.com"}
MUTUAL_WITH_CERTS = {
    "mode": "MUTUAL",
    "caCertificates": "root-cert.pem",
    "clientCertificate": "cert-chain.pem",
    "privateKey": "key.pem",
    "subjectAltNames": ["custom.foo.com"],
    "sni": "custom.foo.com",
}
SIMPLE_WITH_CERTS = {
    "mode": "SIMPLE",
    "caCertificates": "root-cert.pem",
    "subjectAltNames": ["custom.foo.com"],
    "sni": "custom.foo.com",
}


def test_apply_upstream_tls_user_specified_without_tls() -> None:
    """TestApplyUpstreamTLSSettings "user specified without tls": no tls and no auto mTLS, plaintext."""
    c = multi_cluster(None, 9090, mesh(enableAutoMtls=False))
    assert "transport_socket" not in c and "transport_socket_matches" not in c


@pytest.mark.parametrize(
    ("port", "alpn"),
    [(9090, ["istio-http/1.1"]), (7070, ["istio-h2"]), (9000, ["istio"])],
    ids=["istio_mutual", "istio_mutual with h2", "istio_mutual on tcp"],
)
def test_apply_upstream_tls_user_specified_istio_mutual(port: int, alpn: list[str]) -> None:
    """TestApplyUpstreamTLSSettings "user specified with istio_mutual tls" (and "with h2"): a plain
    transport_socket with the rule's SNI and SANs, the mesh ALPN of the port (departure: names, above)."""
    c = multi_cluster(ISTIO_MUTUAL_CUSTOM, port)
    assert "transport_socket_matches" not in c
    ctx = tls_context(c)
    assert ctx["sni"] == "custom.foo.com"
    common = ctx["common_tls_context"]
    assert common["alpn_protocols"] == alpn
    sans = common["combined_validation_context"]["default_validation_context"][
        "match_typed_subject_alt_names"
    ]
    assert sans == [{"san_type": "URI", "matcher": {"exact": "custom.foo.com"}}]


@pytest.mark.parametrize(("port", "alpn"), [(9090, None), (7070, ["h2"])], ids=["http/1.1", "h2"])
@pytest.mark.parametrize("tls", [SIMPLE_WITH_CERTS, MUTUAL_WITH_CERTS], ids=["simple", "mutual"])
def test_apply_upstream_tls_user_specified_simple_and_mutual(
    tls: dict[str, Any], port: int, alpn: list[str] | None
) -> None:
    """TestApplyUpstreamTLSSettings "user specified simple tls" / "mutual tls" (and "with h2"): the file
    root and (MUTUAL) file certificate over SDS, the rule's SNI, ALPN `h2` only on an HTTP/2 cluster."""
    c = multi_cluster(tls, port)
    assert "transport_socket_matches" not in c
    ctx = tls_context(c)
    common = ctx["common_tls_context"]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == (
        "file-root:root-cert.pem"
    )
    certs = [s["name"] for s in common.get("tls_certificate_sds_secret_configs", ())]
    assert certs == (["file-cert:cert-chain.pem~key.pem"] if tls["mode"] == "MUTUAL" else [])
    assert common.get("alpn_protocols") == alpn
    assert ctx["sni"] == "custom.foo.com"


@pytest.mark.parametrize(("port", "alpn"), [(9090, ["istio-http/1.1"]), (7070, ["istio-h2"])])
def test_apply_upstream_tls_auto_detected(port: int, alpn: list[str]) -> None:
    """TestApplyUpstreamTLSSettings "auto detect with tls" (and "h2 options"): no transport_socket, the
    mTLS context in the `tlsMode-istio` match with the service's SNI and identities, plaintext otherwise."""
    c = multi_cluster(None, port)
    assert "transport_socket" not in c
    tls_match, plain = c["transport_socket_matches"]
    assert (tls_match["name"], plain["name"]) == ("tlsMode-istio", "tlsMode-disabled")
    ctx = tls_match["transport_socket"]["typed_config"]
    assert ctx["sni"] == f"outbound_.{port}_._.{MULTI_HOST}"
    assert ctx["common_tls_context"]["alpn_protocols"] == alpn
    assert plain["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"


# --- TestBuildUpstreamClusterTLSContext ---------------------------------------------------------------


def test_tls_mode_disabled() -> None:
    """ "tls mode disabled": no TLS at all, auto mTLS included (the rule's DISABLE is the user's choice)."""
    c = outbound(with_tls({"mode": "DISABLE"}))
    assert "transport_socket" not in c and "transport_socket_matches" not in c


def test_tls_without_mode_is_disable() -> None:
    """buildUpstreamTLSSettings: a `tls` block is a ClientTLSSettings whose mode defaults to DISABLE
    (the enum's zero), so `tls: {sni: ...}` with no mode is plaintext, not auto mTLS."""
    c = outbound(with_tls({"sni": SNI}))
    assert "transport_socket" not in c and "transport_socket_matches" not in c


@pytest.mark.parametrize(("port", "alpn"), [(9090, ["istio-http/1.1"]), (7070, ["istio-h2"])], ids=["", "H2"])
def test_tls_mode_istio_mutual(port: int, alpn: list[str]) -> None:
    """ "tls mode ISTIO_MUTUAL" (and "and H2"): the workload certificate and ROOTCA over SDS, the rule's
    SANs and SNI, TLS 1.2-1.3 (departures: ALPN names, typed URI SANs)."""
    ctx = tls_context(multi_cluster({"mode": "ISTIO_MUTUAL", "subjectAltNames": [SAN], "sni": SNI}, port))
    assert ctx == upstream(
        {
            "combined_validation_context": {
                "default_validation_context": {
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": SAN}}]
                },
                "validation_context_sds_secret_config": secret("ROOTCA"),
            }
        },
        alpn=alpn,
        cert="default",
    )


def test_tls_mode_istio_mutual_ignores_mesh_ecdh_curves() -> None:
    """ "tls mode ISTIO_MUTUAL with EcdhCurves specified in Mesh Config": tlsDefaults are not for mesh mTLS."""
    defaults = mesh(tlsDefaults={"ecdhCurves": ["P-256", "P-384"]})
    ctx = tls_context(
        outbound(defaults, with_tls({"mode": "ISTIO_MUTUAL", "subjectAltNames": [SAN], "sni": SNI}))
    )
    assert ctx["common_tls_context"]["tls_params"] == TLS_1_2_TO_1_3


@pytest.mark.parametrize(
    ("tls", "common", "auto"),
    [
        pytest.param(
            {"subjectAltNames": [SAN], "sni": SNI},
            {"combined_validation_context": validation("file-root:system", [SAN])},
            None,
            id="no certs specified in tls",
        ),
        pytest.param(
            # istiod's case also names SANs, which its validation (and ours) rejects with insecureSkipVerify.
            {"sni": SNI, "insecureSkipVerify": True},
            {"validation_context": {}},
            None,
            id="no certs specified in tls insecure",
        ),
        pytest.param(
            {"subjectAltNames": [SAN]},
            {"combined_validation_context": validation("file-root:system", [SAN])},
            {"auto_sni": True},
            id="AutoSni enabled and no sni specified in tls",
        ),
        pytest.param(
            {"sni": SNI},
            {"combined_validation_context": validation("file-root:system")},
            None,
            id="VerifyCert and AutoSni enabled without SubjectAltNames set",
        ),
        pytest.param(
            {"caCertificates": ROOT, "subjectAltNames": [SAN], "sni": SNI},
            {"combined_validation_context": validation(f"file-root:{ROOT}", [SAN])},
            None,
            id="certs specified in tls",
        ),
        pytest.param(
            {"caCertificates": ROOT, "subjectAltNames": [SAN], "sni": SNI, "caCrl": "path/to/crl"},
            {"combined_validation_context": validation(f"file-root:{ROOT}", [SAN], crl="path/to/crl")},
            None,
            id="certs specified in tls, with crl",
        ),
        pytest.param(
            {},
            {"combined_validation_context": validation("file-root:system")},
            {"auto_sni": True, "auto_san_validation": True},
            id="no sni nor SANs: auto SNI and auto SAN validation from the Host header",
        ),
        pytest.param(
            {"insecureSkipVerify": True},
            {"validation_context": {}},
            {"auto_sni": True},
            id="insecure without sni: auto SNI, no SAN validation",
        ),
    ],
)
def test_tls_mode_simple(tls: dict[str, Any], common: dict[str, Any], auto: dict[str, bool] | None) -> None:
    """ "tls mode SIMPLE, ...": the whole context, and setAutoSniAndAutoSanValidation (istiod's current
    behaviour, formerly ENABLE_AUTO_SNI / VERIFY_CERTIFICATE_AT_CLIENT: auto SNI when the rule names no
    SNI, auto SAN validation when it names neither SNI nor SANs and verifies)."""
    c = outbound(with_tls({"mode": "SIMPLE", **tls}))
    assert tls_context(c) == upstream(common, sni=tls.get("sni"))
    assert http_options(c).get("upstream_http_protocol_options") == auto


@pytest.mark.parametrize("port", [9000, 9090])
def test_auto_sni_on_tcp_and_sniffed_ports(port: int) -> None:
    """setAutoSniAndAutoSanValidation makes HttpProtocolOptions for any cluster, a TCP one included
    (clusterWrapper.build gives it explicit HTTP/1.1 options)."""
    opts = http_options(multi_cluster({"mode": "SIMPLE"}, port))
    assert opts["upstream_http_protocol_options"] == {"auto_sni": True, "auto_san_validation": True}
    if port == 9000:
        assert opts["explicit_http_config"] == {"http_protocol_options": {}}


def test_tls_mode_simple_with_certs_and_h2() -> None:
    """ "tls mode SIMPLE, with certs specified in tls with h2": ALPN h2 only."""
    tls = {"mode": "SIMPLE", "caCertificates": ROOT, "subjectAltNames": [SAN], "sni": SNI}
    assert tls_context(multi_cluster(tls, 7070)) == upstream(
        {"combined_validation_context": validation(f"file-root:{ROOT}", [SAN])}, alpn=["h2"]
    )


def test_tls_mode_simple_with_sans_from_service_entry() -> None:
    """ "tls mode SIMPLE, with SANs specified in service entries": a ServiceEntry's (External registry)
    subjectAltNames are checked when the rule names none."""
    entry = doc(
        "ServiceEntry",
        "ext",
        {
            "hosts": ["api.example.com"],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "subjectAltNames": ["se-san.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    )
    rule = doc(
        "DestinationRule",
        "ext",
        {
            "host": "api.example.com",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "caCertificates": ROOT, "sni": SNI}},
        },
    )
    ctx = tls_context(clusters(snapshot(entry, rule), sidecar())["outbound|443||api.example.com"])
    assert ctx == upstream({"combined_validation_context": validation(f"file-root:{ROOT}", ["se-san.com"])})


def test_tls_mode_simple_kubernetes_service_takes_no_identities_as_sans() -> None:
    """constructUpstreamTLS only fills SANs from the service for the External registry: a Kubernetes
    service's workload identities are not checked on the rule's own TLS."""
    ctx = tls_context(outbound(with_tls({"mode": "SIMPLE", "sni": SNI})))
    assert ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"] == {}


@pytest.mark.parametrize(
    ("tls", "root"),
    [
        (
            {"clientCertificate": CERT, "privateKey": KEY, "subjectAltNames": [SAN], "sni": SNI},
            "file-root:system",
        ),
        (
            {
                "clientCertificate": CERT,
                "privateKey": KEY,
                "caCertificates": ROOT,
                "subjectAltNames": [SAN],
                "sni": SNI,
            },
            f"file-root:{ROOT}",
        ),
    ],
    ids=["no root CA specified", "with root CA"],
)
def test_tls_mode_mutual_with_files(tls: dict[str, Any], root: str) -> None:
    """ "tls mode MUTUAL, with node metadata sdsEnabled true [no root CA specified]"."""
    ctx = tls_context(outbound(with_tls({"mode": "MUTUAL", **tls})))
    assert ctx == upstream(
        {"combined_validation_context": validation(root, [SAN])}, cert=f"file-cert:{CERT}~{KEY}"
    )


def test_tls_mode_mutual_with_crl() -> None:
    """ "tls mode MUTUAL, with node metadata sdsEnabled true, with crl"."""
    tls = {
        "mode": "MUTUAL",
        "clientCertificate": CERT,
        "privateKey": KEY,
        "caCertificates": ROOT,
        "caCrl": "path/to/crl",
        "subjectAltNames": [SAN],
        "sni": SNI,
    }
    assert tls_context(outbound(with_tls(tls))) == upstream(
        {"combined_validation_context": validation(f"file-root:{ROOT}", [SAN], crl="path/to/crl")},
        cert=f"file-cert:{CERT}~{KEY}",
    )


@pytest.mark.parametrize("missing", ["clientCertificate", "privateKey"])
def test_tls_mode_mutual_without_client_certificate_or_key_is_rejected(missing: str) -> None:
    """ "tls mode MUTUAL, with no client certificate / key": istiod's builder errors (and the cluster gets
    no TLS); its validation rejects the rule first, as our store does, so the rule never reaches us."""
    tls = {"mode": "MUTUAL", "clientCertificate": "some-fake-cert", "privateKey": "some-fake-key"}
    del tls[missing]
    with pytest.raises(Exception, match="required for mutual tls"):
        snapshot(with_tls(tls))


@pytest.mark.parametrize(
    ("mode", "port", "sans", "alpn"),
    [
        ("SIMPLE", 9090, [SAN], None),
        ("SIMPLE", 7070, None, ["h2"]),
        ("MUTUAL", 9090, [SAN], None),
        ("MUTUAL", 7070, None, ["h2"]),
    ],
    ids=[
        "SIMPLE, with CredentialName specified",
        "SIMPLE, with CredentialName specified with h2 and no SAN",
        "MUTUAL, with CredentialName specified",
        "MUTUAL, with CredentialName specified with h2 and no SAN",
    ],
)
def test_tls_credential_name_on_gateway(
    mode: str, port: int, sans: list[str] | None, alpn: list[str] | None
) -> None:
    """ "tls mode SIMPLE/MUTUAL, with CredentialName specified" (router): the credential's certificate
    (MUTUAL) and its `-cacert` root over SDS with ADS-style timeouts (SDSAdsConfig)."""
    tls: dict[str, Any] = {"mode": mode, "credentialName": CREDENTIAL, "sni": SNI}
    if sans:
        tls["subjectAltNames"] = sans
    ctx = tls_context(multi_cluster(tls, port, proxy=gateway()))
    cert = f"kubernetes://{CREDENTIAL}" if mode == "MUTUAL" else None
    root = f"kubernetes://{CREDENTIAL}-cacert"
    assert ctx == upstream({"combined_validation_context": validation(root, sans)}, alpn=alpn, cert=cert)


@pytest.mark.parametrize("mode", ["SIMPLE", "MUTUAL"])
def test_tls_credential_name_on_sidecar(mode: str) -> None:
    """ "tls mode SIMPLE/MUTUAL, credentialName is set with proxy type Sidecar [and destinationRule has
    workload Selector]": no TLS without a selector (the Secret would reach every sidecar), the credential
    with one."""
    tls = {"mode": mode, "credentialName": CREDENTIAL, "subjectAltNames": [SAN], "sni": SNI}
    unselected = outbound(with_tls(tls))
    assert "transport_socket" not in unselected and "transport_socket_matches" not in unselected
    cert = f"kubernetes://{CREDENTIAL}" if mode == "MUTUAL" else None
    assert tls_context(outbound(with_tls(tls, **SELECT_WEB))) == upstream(
        {"combined_validation_context": validation(f"kubernetes://{CREDENTIAL}-cacert", [SAN])}, cert=cert
    )


def test_tls_configmap_credential_name_on_sidecar_without_selector() -> None:
    """buildUpstreamClusterTLSContext: a `configmap://` credential (CA certificates anyone may read) is
    not privileged, so even a selector-less rule gives it to sidecars: its root is the ConfigMap's."""
    tls = {"mode": "SIMPLE", "credentialName": "configmap://default/ca-bundle", "sni": SNI}
    root = tls_context(outbound(with_tls(tls)))["common_tls_context"]["combined_validation_context"]
    assert root["validation_context_sds_secret_config"] == secret("configmap://default/ca-bundle-cacert")


def test_tls_credential_name_insecure_skip_verify() -> None:
    """ApplyCustomSDSToClientCommonTLSContext: with insecureSkipVerify no root nor SANs are checked."""
    tls = {"mode": "MUTUAL", "credentialName": CREDENTIAL, "insecureSkipVerify": True, "sni": SNI}
    common = tls_context(outbound(with_tls(tls), proxy=gateway()))["common_tls_context"]
    assert "combined_validation_context" not in common
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [f"kubernetes://{CREDENTIAL}"]


@pytest.mark.parametrize(
    ("mode", "curves"), [("SIMPLE", ["P-256"]), ("MUTUAL", ["P-256", "P-384"])], ids=["SIMPLE", "MUTUAL"]
)
def test_tls_mesh_ecdh_curves(mode: str, curves: list[str]) -> None:
    """ "tls mode SIMPLE/MUTUAL, with EcdhCurves specified in Mesh Config" (credential, DR with selector)."""
    tls = {"mode": mode, "credentialName": CREDENTIAL, "subjectAltNames": [SAN], "sni": SNI}
    ctx = tls_context(outbound(mesh(tlsDefaults={"ecdhCurves": curves}), with_tls(tls, **SELECT_WEB)))
    assert ctx["common_tls_context"]["tls_params"] == {**TLS_1_2_TO_1_3, "ecdh_curves": curves}


def test_tls_mesh_min_protocol_version_is_not_for_upstreams() -> None:
    """applyTLSDefaults takes only tlsDefaults' ecdhCurves and cipherSuites: TLS origination stays
    TLS 1.2-1.3 whatever tlsDefaults.minProtocolVersion says (that one is for gateway servers)."""
    ctx = tls_context(
        outbound(mesh(tlsDefaults={"minProtocolVersion": "TLSV1_3"}), with_tls({"mode": "SIMPLE"}))
    )
    assert ctx["common_tls_context"]["tls_params"] == TLS_1_2_TO_1_3


@pytest.mark.parametrize(
    ("tls", "alpn"),
    [(None, ["istio-h2"]), ({"mode": "ISTIO_MUTUAL"}, ["istio-h2"]), ({"mode": "SIMPLE"}, ["h2"])],
    ids=["auto mTLS", "ISTIO_MUTUAL", "SIMPLE"],
)
def test_h2_upgraded_cluster_advertises_h2(tls: dict[str, Any] | None, alpn: list[str]) -> None:
    """isHttp2Cluster: an HTTP/1.1 port upgraded by MeshConfig h2UpgradePolicy is an HTTP/2 cluster, so its
    TLS offers the HTTP/2 ALPN (mesh name for mTLS, `h2` for TLS origination)."""
    c = outbound(mesh(h2UpgradePolicy="UPGRADE"), *((with_tls(tls),) if tls else ()))
    ctx = (
        c["transport_socket_matches"][0]["transport_socket"]["typed_config"]
        if tls is None
        else tls_context(c)
    )
    assert ctx["common_tls_context"]["alpn_protocols"] == alpn


# --- TLS from port-level settings and subsets (buildCluster's MergeTrafficPolicy, then the above) --------


def test_port_level_tls_replaces_top_level_tls() -> None:
    """A port's tls replaces the rule's for that port's cluster only; other ports keep the top-level one."""
    rule = doc(
        "DestinationRule",
        "multi",
        {
            "host": "multi",
            "trafficPolicy": {
                "tls": {"mode": "SIMPLE", "sni": "top.example.com"},
                "portLevelSettings": [{"port": {"number": 9000}, "tls": {"mode": "ISTIO_MUTUAL"}}],
            },
        },
    )
    cs = clusters(snapshot(MULTI, rule), sidecar())
    assert tls_context(cs[f"outbound|9090||{MULTI_HOST}"])["sni"] == "top.example.com"
    port_level = tls_context(cs[f"outbound|9000||{MULTI_HOST}"])
    assert port_level["sni"] == f"outbound_.9000_._.{MULTI_HOST}"
    assert port_level["common_tls_context"]["alpn_protocols"] == ["istio"]


def test_subset_tls_overrides_and_default_sni_names_the_subset() -> None:
    """A subset's tls replaces the rule's for its clusters; ISTIO_MUTUAL's default SNI is the subset's
    cluster in DNS SRV form; a subset without tls inherits the top-level one."""
    rule = dr(
        {
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "top.example.com"}},
            "subsets": [
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                },
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        }
    )
    v1 = tls_context(outbound(rule, subset="v1"))
    assert v1["sni"] == f"outbound_.9080_.v1_.{REVIEWS}"
    assert v1["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    assert tls_context(outbound(rule, subset="v2"))["sni"] == "top.example.com"
    assert tls_context(outbound(rule))["sni"] == "top.example.com"


def test_subset_port_level_tls() -> None:
    """A subset's port-level tls applies to that subset's cluster of the port."""
    rule = dr(
        {
            "subsets": [
                {
                    "name": "v1",
                    "labels": {"version": "v1"},
                    "trafficPolicy": {
                        "portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "DISABLE"}}]
                    },
                }
            ],
        }
    )
    v1 = outbound(rule, subset="v1")
    assert "transport_socket" not in v1 and "transport_socket_matches" not in v1
    assert len(outbound(rule)["transport_socket_matches"]) == 2


# --- TestBuildAutoMtlsSettings ------------------------------------------------------------------------


def test_auto_mtls_settings_destination_rule_sni_and_san_override() -> None:
    """ "Destination rule TLS sni and SAN override": the rule's ISTIO_MUTUAL is user supplied (a plain
    transport_socket, not matches) with its own SNI and SANs, whether auto mTLS is on or off."""
    for extra in ((), (mesh(enableAutoMtls=False),)):
        c = outbound(*extra, with_tls(ISTIO_MUTUAL_CUSTOM))
        assert "transport_socket_matches" not in c
        ctx = tls_context(c)
        sans = ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"]
        assert (ctx["sni"], sans["match_typed_subject_alt_names"][0]["matcher"]["exact"]) == (
            "custom.foo.com",
            "custom.foo.com",
        )


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
def test_auto_mtls_settings_internal_service(mode: str) -> None:
    """ "Auto fill nil settings when mTLS nil for internal service in strict / permissive mode": auto
    detected ISTIO_MUTUAL with the service's identities and the cluster's SNI."""
    c = outbound(doc("PeerAuthentication", "default", {"mtls": {"mode": mode}}))
    ctx = c["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    assert ctx["sni"] == f"outbound_.9080_._.{REVIEWS}"
    sans = ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert sans["match_typed_subject_alt_names"] == [{"san_type": "URI", "matcher": {"exact": REVIEWS_ID}}]


@pytest.mark.parametrize(
    "docs",
    [
        pytest.param(
            (doc("PeerAuthentication", "default", {"mtls": {"mode": "DISABLE"}}),), id="plaintext mode"
        ),
        pytest.param(
            (mesh(enableAutoMtls=False), doc("PeerAuthentication", "default", {"mtls": {"mode": "DISABLE"}})),
            id="server mTLS is disabled",
        ),
        pytest.param((mesh(enableAutoMtls=False),), id="auto mTLS off"),
    ],
)
def test_auto_mtls_settings_no_tls(docs: tuple[str, ...]) -> None:
    """ "... internal service in plaintext mode", "Do not auto fill nil settings if server mTLS is disabled"."""
    c = outbound(*docs)
    assert "transport_socket" not in c and "transport_socket_matches" not in c


def test_auto_mtls_settings_unset_namespace_mode_is_permissive() -> None:
    """BestEffortInferServiceMTLSMode: a namespace PeerAuthentication with no mode (UNSET) defers to the
    mesh-wide one, and with none at all the mode is PERMISSIVE (auto mTLS on); istiod's MTLSUnknown
    ("... in unknown mode") only happens for mesh-external services."""
    unset = doc("PeerAuthentication", "default", {})
    assert len(outbound(unset)["transport_socket_matches"]) == 2
    mesh_disable = doc("PeerAuthentication", "default", {"mtls": {"mode": "DISABLE"}}, "istio-system")
    assert "transport_socket_matches" not in outbound(unset, mesh_disable)


def test_auto_mtls_settings_not_for_external() -> None:
    """ "Do not auto fill nil settings for external": a MESH_EXTERNAL ServiceEntry gets no auto mTLS;
    MESH_INTERNAL one with sidecar endpoints does."""

    def entry(location: str) -> str:
        return doc(
            "ServiceEntry",
            "se",
            {
                "hosts": ["svc.example.com"],
                "location": location,
                "resolution": "STATIC",
                "endpoints": [{"address": "127.7.0.9"}],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            },
        )

    ext = clusters(snapshot(entry("MESH_EXTERNAL")), sidecar())["outbound|80||svc.example.com"]
    assert "transport_socket" not in ext and "transport_socket_matches" not in ext
    internal = clusters(snapshot(entry("MESH_INTERNAL")), sidecar())["outbound|80||svc.example.com"]
    assert [m["name"] for m in internal["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]


def test_auto_mtls_settings_simple_tls_keeps_user_settings() -> None:
    """ "Simple TLS": SIMPLE is user supplied as written; its client certificate is not sent."""
    tls = {
        "mode": "SIMPLE",
        "privateKey": "/custom/key.pem",
        "clientCertificate": "/custom/chain.pem",
        "caCertificates": "/custom/root.pem",
    }
    c = outbound(with_tls(tls))
    assert "transport_socket_matches" not in c
    common = tls_context(c)["common_tls_context"]
    assert "tls_certificate_sds_secret_configs" not in common
    assert (
        common["combined_validation_context"]["validation_context_sds_secret_config"]["name"]
        == "file-root:/custom/root.pem"
    )


def test_auto_mtls_settings_mutual_for_mesh_external_keeps_user_settings() -> None:
    """ "Metadata certs with Mesh Exteranl": a MUTUAL rule for an external service is used as written
    (no proxy metadata certificates exist here to prefer; see the module's departures)."""
    entry = doc(
        "ServiceEntry",
        "ext",
        {
            "hosts": ["api.example.com"],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    )
    tls = {
        "mode": "MUTUAL",
        "privateKey": "/custom/external/key.pem",
        "clientCertificate": "/custom/external/chain.pem",
        "caCertificates": "/custom/external/root.pem",
    }
    rule = doc("DestinationRule", "ext", {"host": "api.example.com", "trafficPolicy": {"tls": tls}})
    common = tls_context(clusters(snapshot(entry, rule), sidecar())["outbound|443||api.example.com"])[
        "common_tls_context"
    ]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == [
        "file-cert:/custom/external/chain.pem~/custom/external/key.pem"
    ]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == (
        "file-root:/custom/external/root.pem"
    )


# --- PushContext.initServiceAccounts: identities of every endpoint, expanded to the aliases ------------


def _auto_sans(*docs: str, pods: list[Any] | None = None) -> list[str]:
    c = clusters(snapshot(*docs, pods=pods), sidecar())[f"outbound|9080||{REVIEWS}"]
    ctx = c["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    vc = ctx["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    return [m["matcher"]["exact"] for m in vc["match_typed_subject_alt_names"]]


def test_service_identities_expand_to_trust_domain_aliases() -> None:
    """istiod expands a service's accounts with MeshConfig trustDomainAliases (spiffe.ExpandWithTrustDomains),
    so a server holding an alias identity passes secure naming (TestTrustDomainAliasSecureNaming)."""
    sans = _auto_sans(mesh(trustDomainAliases=["some-other", "trust-domain-foo"]))
    assert sans == sorted(
        f"spiffe://{td}/ns/default/sa/reviews" for td in ("cluster.local", "some-other", "trust-domain-foo")
    )


def test_service_identities_include_endpoints_without_sidecar() -> None:
    """A pod's identity is its service account whether or not it runs a sidecar (istiod's endpoint
    ServiceAccount), so ISTIO_MUTUAL to a naked pod holding a mesh certificate verifies it."""
    from gen_helpers import PODS

    naked = dataclasses.replace(PODS[1], sidecar=False, service_account="legacy")
    pods = [PODS[0], naked, *PODS[2:]]
    sans = _auto_sans(pods=pods)
    assert sans == ["spiffe://cluster.local/ns/default/sa/legacy", REVIEWS_ID]
