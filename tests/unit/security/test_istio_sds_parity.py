"""Gateway credentials over SDS: parity with istiod's SecretGen, case by case.

Sources (istio/istio):
- pilot/pkg/xds/sds_test.go (TestGenerateSDS: simple, sidecar, multiple, the full/incremental push cases
  as "what a change re-serves", unknown, tricky cacert name; TestCaching) with sds.go (generate,
  filterAuthorizedResources, relatedConfigs, toEnvoyTLSSecret / toEnvoyCaSecret);
- pilot/pkg/model/credentials/resource_test.go (TestParseResourceName, TestToResourceName);
- pilot/pkg/credentials/kube/secrets_test.go (TestSecretsController: generic and TLS Secrets, the
  `-cacert` companion and its precedence, CRLs, the OCSP staple, empty and wrong keys, wrong namespace).

Isthmus serves these from the pod's node agent, not from the control plane: the runner hands the agent
`isthmus.security.credentials.servable_credentials` for the pod (`MeshSecurity._sync_secrets`), so the
cases run against `credential` (one resource name, as istiod's generate) and the set handed over.

Disagreements found and fixed (the runner's per-pod secret set is now `servable_credentials`, built on
`credential`, which follows istiod's generate/filterAuthorizedResources name by name):
- `kubernetes://<own namespace>/<name>` (ParseResourceName's explicit form) was never served;
- a `-cacert` name is CA-only whatever the Secret holds ("tricky cacert name"): with Secrets `x-cacert`
  (holding a key) and `x-cacert-cacert`, `kubernetes://x-cacert` could be served the private key, and
  `kubernetes://x-cacert-cacert` was not served at all for a lone `x-cacert`;
- a TLS Secret's `tls.ocsp-staple` was dropped (toEnvoyTLSSecret's ocsp_staple; agent/sds.py);
- `builtin://` credentialNames (ToResourceName: the workload's own `default` certificate) became
  `kubernetes://builtin://` (security/sds.py);
- `kubernetes-gateway://<ns>/<name>` in an Istio Gateway of the gateway's namespace
  (VerifiedCertificateReferences) was never served (credentials.verified_references, wired through
  mesh/security.py, mesh/pods.py and mesh/runner.py).

Skipped, with the reason: "unauthenticated" (every Isthmus agent belongs to one pod, authenticated by
construction); "unauthorized" / "partially unauthorized" (no Kubernetes RBAC or SubjectAccessReview: every
pod may read its own namespace's Secrets, as an authorized gateway; the CA-only rule they also show is
covered by "tricky cacert name"); ConfigMap credentials (`configmap://`: no ConfigMap kind in Isthmus);
TestPrivateKeyProviderProxyConfig and the cryptomb/QAT cases (no private key providers in plain Envoy);
Gateway API's ReferenceGrant for `kubernetes-gateway://` (no Gateway API); multicluster ForCluster /
TestAuthorize (one cluster); docker credentials and Istio_DataSourceInlineBytes (no Wasm image pulls or
datasource Secrets); TestAtMostNJoin (a log helper).
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from isthmus.agent.sds import _tls_certificate_secret
from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.security import MeshSecurity, PodIdentity
from isthmus.security.credentials import (
    CertInfo,
    SecretResource,
    credential,
    extract_cert_info,
    extract_root,
    parse_resource_name,
    servable_credentials,
)
from isthmus.security.sds import kubernetes_secret_name

NS = "istio-system"

# sds_test.go's Secrets (contents are labels, as in secrets_test.go: nothing here parses them).
SECRETS: dict[str, dict[str, bytes]] = {
    "generic": {"cert": b"generic-cert", "key": b"generic-key"},
    "generic-mtls": {"cert": b"mtls-cert", "key": b"mtls-key", "cacert": b"mtls-ca"},
    "generic-mtls-crl": {"cert": b"crl-cert", "key": b"crl-key", "cacert": b"crl-ca", "crl": b"crl-crl"},
    "generic-mtls-split": {"cert": b"split-cert", "key": b"split-key"},
    "generic-mtls-split-cacert": {"cacert": b"split-ca"},
    "ca-only": {"cacert": b"ca-only-ca"},
}
ALL_RESOURCES = [
    "kubernetes://generic",
    "kubernetes://generic-mtls",
    "kubernetes://generic-mtls-cacert",
    "kubernetes://ca-only-cacert",
    "kubernetes://generic-mtls-split",
    "kubernetes://generic-mtls-split-cacert",
    "kubernetes://generic-mtls-crl",
    "kubernetes://generic-mtls-crl-cacert",
]


def data(secrets: dict[str, dict[str, bytes]] = SECRETS, namespace: str = NS) -> dict[Any, Any]:
    return {(namespace, name): d for name, d in secrets.items()}


def generate(resources: list[str], proxy_ns: str = NS, secrets: dict[Any, Any] | None = None) -> dict:
    """istiod's SecretGen.Generate as the test reads it: name -> (key, cert, ca, crl)."""
    got = {}
    for name in resources:
        info = credential(name, proxy_ns, data() if secrets is None else secrets)
        if info is not None:
            got[name] = expected(info)
    return got


def expected(info: CertInfo) -> dict[str, bytes | None]:
    if info.is_ca:
        return {"ca": info.cert, "crl": info.crl}
    return {"key": info.key, "cert": info.cert}


def tls(name: str) -> dict[str, bytes | None]:
    return {"key": SECRETS[name]["key"], "cert": SECRETS[name]["cert"]}


def ca(name: str, crl: bytes | None = None) -> dict[str, bytes | None]:
    return {"ca": SECRETS[name]["cacert"], "crl": crl}


# --- sds_test.go: TestGenerateSDS ---------------------------------------------------------------


def test_simple() -> None:
    assert generate(["kubernetes://generic"]) == {"kubernetes://generic": tls("generic")}


def test_sidecar_reads_its_namespace_secret_too() -> None:
    # "sidecar": istiod no longer limits SDS to routers; an authorized sidecar gets the same answer.
    # (The Isthmus agent serves a sidecar the same set as a gateway of its namespace.)
    assert servable_credentials(data(), NS)["kubernetes://generic"] == CertInfo(
        b"generic-cert", b"generic-key"
    )


def test_multiple() -> None:
    assert generate(ALL_RESOURCES) == {
        "kubernetes://generic": tls("generic"),
        "kubernetes://generic-mtls": tls("generic-mtls"),
        "kubernetes://ca-only-cacert": ca("ca-only"),
        "kubernetes://generic-mtls-cacert": ca("generic-mtls"),
        "kubernetes://generic-mtls-split": tls("generic-mtls-split"),
        "kubernetes://generic-mtls-split-cacert": ca("generic-mtls-split-cacert"),
        "kubernetes://generic-mtls-crl": tls("generic-mtls-crl"),
        "kubernetes://generic-mtls-crl-cacert": ca("generic-mtls-crl", crl=b"crl-crl"),
    }


def _plain_names(served: dict[str, CertInfo]) -> dict[str, CertInfo]:
    return {n: v for n, v in served.items() if n.startswith("kubernetes://") and "/" not in n[13:]}


@pytest.mark.parametrize(
    ("updated", "changed"),
    [
        # "incremental push with updates": istiod re-sends the updated Secret's names and their -cacert
        # companions (relatedConfigs); the agent sends a new version of exactly the names whose content
        # changed, which are always among those.
        ("generic", {"kubernetes://generic"}),
        ("generic-mtls", {"kubernetes://generic-mtls", "kubernetes://generic-mtls-cacert"}),
        ("generic-mtls-crl", {"kubernetes://generic-mtls-crl", "kubernetes://generic-mtls-crl-cacert"}),
        # "mtls split": the certificate Secret has no CA; its -cacert name reads the other Secret.
        ("generic-mtls-split", {"kubernetes://generic-mtls-split"}),
        # "mtls split ca update": the CA Secret (read as itself and, suffix stripped once, as
        # `...-cacert-cacert`); the certificate does not change.
        (
            "generic-mtls-split-cacert",
            {"kubernetes://generic-mtls-split-cacert", "kubernetes://generic-mtls-split-cacert-cacert"},
        ),
    ],
)
def test_a_secret_change_reaches_the_names_that_read_it(updated: str, changed: set[str]) -> None:
    before = _plain_names(servable_credentials(data(), NS))
    new = {k: dict(v) for k, v in SECRETS.items()}
    new[updated] = {key: value + b"-v2" for key, value in new[updated].items()}
    after = _plain_names(servable_credentials(data(new), NS))
    assert before.keys() == after.keys()
    assert {n for n in before if before[n] != after[n]} == changed


def test_unknown_names_are_dropped_and_the_rest_served() -> None:
    # "unknown": an unknown type, a missing Secret, the workload's own names: only what istiod knows.
    names = ["kubernetes://generic", "foo://invalid", "kubernetes://not-found", "default", "builtin://"]
    assert generate(names) == {"kubernetes://generic": tls("generic")}


def test_tricky_cacert_name_never_serves_the_private_key() -> None:
    # "tricky cacert name": a Secret named with the -cacert suffix, holding a key, is only ever a CA.
    tricky = {"tricky-cacert": {"cert": b"t-cert", "key": b"t-key", "cacert": b"t-ca"}}
    names = ["kubernetes://tricky-cacert", "kubernetes://tricky-cacert-cacert"]
    want = {n: {"ca": b"t-ca", "crl": None} for n in names}
    assert generate(names, secrets=data(tricky)) == want
    served = servable_credentials(data(tricky), NS)
    assert {n: expected(v) for n, v in served.items() if n in names} == want
    assert all(v.is_ca for v in served.values())


def test_tricky_cacert_beside_its_own_cacert_secret() -> None:
    # A Secret `x-cacert` with a key beside a Secret `x-cacert-cacert`: `kubernetes://x-cacert` reads the
    # CA of `x-cacert` (GetCaCert finds that exact name); no name ever yields the key.
    secrets = {
        "x-cacert": {"cert": b"c", "key": b"k", "cacert": b"x-ca"},
        "x-cacert-cacert": {"cacert": b"xx-ca"},
    }
    served = servable_credentials(data(secrets), NS)
    assert expected(served["kubernetes://x-cacert"]) == {"ca": b"x-ca", "crl": None}
    assert expected(served["kubernetes://x-cacert-cacert"]) == {"ca": b"xx-ca", "crl": None}
    assert all(v.is_ca for v in served.values())


# --- sds_test.go: TestCaching; filterAuthorizedResources' namespace rule ----------------------


def test_another_namespace_gets_nothing() -> None:
    assert generate(["kubernetes://generic"], proxy_ns="other-namespace") == {}
    assert generate(["kubernetes://istio-system/generic"], proxy_ns="other-namespace") == {}
    assert servable_credentials(data(), "other-namespace") == {}


def test_explicit_own_namespace_is_allowed() -> None:
    # ParseResourceName's kubernetes://<ns>/<name>: the same namespace as the proxy is allowed.
    assert generate(["kubernetes://istio-system/generic"]) == {
        "kubernetes://istio-system/generic": tls("generic")
    }
    served = servable_credentials(data(), NS)
    assert expected(served["kubernetes://istio-system/generic-mtls-cacert"]) == ca("generic-mtls")


def test_kubernetes_gateway_names_need_a_verified_reference() -> None:
    # filterAuthorizedResources: kubernetes-gateway:// only for VerifiedCertificateReferences.
    name = "kubernetes-gateway://istio-system/generic"
    assert credential(name, NS, data()) is None
    assert credential(name, NS, data(), verified=[name]) == CertInfo(b"generic-cert", b"generic-key")
    assert name in servable_credentials(data(), NS, verified=[name])


# --- resource_test.go: TestParseResourceName / TestToResourceName ----------------------------


@pytest.mark.parametrize(
    ("resource", "want"),
    [
        ("kubernetes://cert", SecretResource("kubernetes", "cert", "default", "kubernetes://cert")),
        (
            "kubernetes://namespace/cert",
            SecretResource("kubernetes", "cert", "namespace", "kubernetes://namespace/cert"),
        ),
        (
            "kubernetes-gateway://namespace/cert",
            SecretResource("kubernetes-gateway", "cert", "namespace", "kubernetes-gateway://namespace/cert"),
        ),
        ("kubernetes-gateway://cert", None),
        ("kubernetes-gateway:///cert", None),
        ("kubernetes-gateway://ns/", None),
        ("cert", None),
        ("vault://cert", None),
    ],
)
def test_parse_resource_name(resource: str, want: SecretResource | None) -> None:
    assert parse_resource_name(resource, "default") == want


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("foo", "kubernetes://foo"),
        ("kubernetes://bar", "kubernetes://bar"),
        ("kubernetes-gateway://bar", "kubernetes-gateway://bar"),
        ("builtin://", "default"),
        ("builtin://extra", "default"),
    ],
)
def test_to_resource_name(name: str, want: str) -> None:
    assert kubernetes_secret_name(name) == want


# --- secrets_test.go: TestSecretsController ------------------------------------------------------

CONTROLLER_SECRETS: dict[str, dict[str, bytes]] = {
    "generic": {"cert": b"generic-cert", "key": b"generic-key"},
    "generic-mtls": {"cert": b"generic-mtls-cert", "key": b"generic-mtls-key", "cacert": b"generic-mtls-ca"},
    "generic-mtls-split": {"cert": b"generic-mtls-split-cert", "key": b"generic-mtls-split-key"},
    "generic-mtls-split-cacert": {"cacert": b"generic-mtls-split-ca"},
    "overlap": {"cert": b"cert", "key": b"key", "cacert": b"main-ca"},
    "overlap-cacert": {"cacert": b"split-ca"},
    "tls": {"tls.crt": b"tls-cert", "tls.key": b"tls-key", "tls.ocsp-staple": b"tls-ocsp-staple"},
    "tls-mtls": {"tls.crt": b"tls-mtls-cert", "tls.key": b"tls-mtls-key", "ca.crt": b"tls-mtls-ca"},
    "tls-mtls-crl": {
        "tls.crt": b"tls-mtls-cert",
        "tls.key": b"tls-mtls-key",
        "ca.crt": b"tls-mtls-ca",
        "ca.crl": b"tls-mtls-crl",
    },
    "tls-mtls-split": {"tls.crt": b"tls-mtls-split-cert", "tls.key": b"tls-mtls-split-key"},
    "tls-mtls-split-cacert": {"ca.crt": b"tls-mtls-split-ca"},
    "tls-mtls-split-crl-cacert": {"ca.crt": b"tls-mtls-split-ca", "ca.crl": b"tls-mtls-split-crl"},
    "tls-mtls-split-crl": {"tls.crt": b"tls-mtls-split-crl-cert", "tls.key": b"tls-mtls-split-crl-key"},
    "empty-cert": {"tls.crt": b"", "tls.key": b"tls-key"},
    "wrong-keys": {"foo-bar": b"my-cert", "tls.key": b"tls-key"},
}


@pytest.mark.parametrize(
    ("name", "cert_info", "ca_info"),
    [
        ("generic", CertInfo(b"generic-cert", b"generic-key"), None),
        ("generic-mtls", CertInfo(b"generic-mtls-cert", b"generic-mtls-key"), CertInfo(b"generic-mtls-ca")),
        ("generic-mtls-split", CertInfo(b"generic-mtls-split-cert", b"generic-mtls-split-key"), None),
        ("generic-mtls-split-cacert", None, CertInfo(b"generic-mtls-split-ca")),
        ("overlap-cacert", None, CertInfo(b"split-ca")),
        ("tls", CertInfo(b"tls-cert", b"tls-key", staple=b"tls-ocsp-staple"), None),
        ("tls-mtls", CertInfo(b"tls-mtls-cert", b"tls-mtls-key"), CertInfo(b"tls-mtls-ca")),
        (
            "tls-mtls-crl",
            CertInfo(b"tls-mtls-cert", b"tls-mtls-key", crl=b"tls-mtls-crl"),
            CertInfo(b"tls-mtls-ca", crl=b"tls-mtls-crl"),
        ),
        ("tls-mtls-split", CertInfo(b"tls-mtls-split-cert", b"tls-mtls-split-key"), None),
        ("tls-mtls-split-cacert", None, CertInfo(b"tls-mtls-split-ca")),
        ("tls-mtls-split-crl-cacert", None, CertInfo(b"tls-mtls-split-ca", crl=b"tls-mtls-split-crl")),
        ("tls-mtls-split-crl", CertInfo(b"tls-mtls-split-crl-cert", b"tls-mtls-split-crl-key"), None),
        ("empty-cert", None, None),
        ("wrong-keys", None, None),
    ],
)
def test_secrets_controller(name: str, cert_info: CertInfo | None, ca_info: CertInfo | None) -> None:
    # GetCertInfo / GetCaCert of a Secret by its own name.
    d = CONTROLLER_SECRETS[name]
    assert extract_cert_info(d) == cert_info
    assert extract_root(d) == ca_info


def test_cacert_companion_has_precedence() -> None:
    # "The -cacert secret has precedence": kubernetes://overlap-cacert reads overlap-cacert, not overlap.
    secrets = data(CONTROLLER_SECRETS, "default")
    assert credential("kubernetes://overlap-cacert", "default", secrets) == CertInfo(b"split-ca")
    assert credential("kubernetes://overlap", "default", secrets) == CertInfo(b"cert", b"key")
    # GetCaCert falls back to the Secret without the suffix only when no -cacert Secret exists.
    assert credential("kubernetes://tls-mtls-crl-cacert", "default", secrets) == CertInfo(
        b"tls-mtls-ca", crl=b"tls-mtls-crl"
    )
    # ... and does not fall back when the -cacert Secret exists without a CA.
    no_ca = data(
        {"a": {"cacert": b"a-ca", "cert": b"c", "key": b"k"}, "a-cacert": {"other": b"x"}}, "default"
    )
    assert credential("kubernetes://a-cacert", "default", no_ca) is None


def test_wrong_namespace_is_not_found() -> None:
    assert (
        credential("kubernetes://wrong-namespace/generic", "wrong-namespace", data(CONTROLLER_SECRETS))
        is None
    )


# --- the wire: what the agent serves (toEnvoyTLSSecret / toEnvoyCaSecret) ----------------------


def test_ocsp_staple_reaches_the_tls_certificate() -> None:
    # toEnvoyTLSSecret: certInfo.Staple becomes tls_certificate.ocsp_staple.
    msg = _tls_certificate_secret("kubernetes://tls", b"c", b"k", b"staple")
    assert msg.tls_certificate.ocsp_staple.inline_bytes == b"staple"
    assert not _tls_certificate_secret("kubernetes://tls", b"c", b"k").tls_certificate.HasField("ocsp_staple")


class _FakeAgent:
    def __init__(self) -> None:
        self.served: dict[str, tuple[str, tuple[Any, ...]]] = {}

    def add_secret(self, name: str, *args: Any) -> None:
        self.served[name] = ("tls", args)

    def add_root(self, name: str, *args: Any) -> None:
        self.served[name] = ("ca", args)

    def remove_secret(self, name: str) -> bool:
        return self.served.pop(name, None) is not None


def _secrets_yaml(namespace: str) -> list[Any]:
    text = f"""
apiVersion: v1
kind: Secret
metadata: {{name: gw-cred, namespace: {namespace}}}
type: kubernetes.io/tls
stringData: {{tls.crt: CERT, tls.key: KEY, ca.crt: CA, tls.ocsp-staple: STAPLE}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tricky-cacert, namespace: {namespace}}}
stringData: {{cert: C, key: K, cacert: TCA}}
---
apiVersion: v1
kind: Secret
metadata: {{name: elsewhere, namespace: other}}
stringData: {{cert: C, key: K}}
"""
    store = Store()
    store.apply(loader.load_text(text, "secrets.yaml"), "test")
    return store.list("Secret")


def test_runner_hands_the_agent_what_istiod_would_serve() -> None:
    agent = _FakeAgent()
    ident = PodIdentity(agent=agent, client=None, pod="gw-0", namespace=NS)  # type: ignore[arg-type]
    security = object.__new__(MeshSecurity)
    security._sync_secrets(ident, _secrets_yaml(NS))
    assert agent.served == {
        "kubernetes://gw-cred": ("tls", (b"CERT", b"KEY", b"STAPLE")),
        "kubernetes://istio-system/gw-cred": ("tls", (b"CERT", b"KEY", b"STAPLE")),
        "kubernetes://gw-cred-cacert": ("ca", (b"CA", None)),
        "kubernetes://istio-system/gw-cred-cacert": ("ca", (b"CA", None)),
        "kubernetes://tricky-cacert": ("ca", (b"TCA", None)),
        "kubernetes://istio-system/tricky-cacert": ("ca", (b"TCA", None)),
        "kubernetes://tricky-cacert-cacert": ("ca", (b"TCA", None)),
        "kubernetes://istio-system/tricky-cacert-cacert": ("ca", (b"TCA", None)),
    }
    # A Secret deleted: its names are withdrawn.
    security._sync_secrets(ident, [s for s in _secrets_yaml(NS) if s.name != "tricky-cacert"])
    assert sorted(agent.served) == [
        "kubernetes://gw-cred",
        "kubernetes://gw-cred-cacert",
        "kubernetes://istio-system/gw-cred",
        "kubernetes://istio-system/gw-cred-cacert",
    ]


def test_a_sync_hands_the_agent_only_what_changed() -> None:
    """Secrets and Gateways change often; each certificate is parsed (and checked against its key) by the
    agent when handed over, so an unchanged credential is not handed again; a changed one is."""

    class Counting(_FakeAgent):
        def __init__(self) -> None:
            super().__init__()
            self.handed: list[str] = []

        def add_secret(self, name: str, *args: Any) -> None:
            self.handed.append(name)
            super().add_secret(name, *args)

        def add_root(self, name: str, *args: Any) -> None:
            self.handed.append(name)
            super().add_root(name, *args)

    agent = Counting()
    ident = PodIdentity(agent=agent, client=None, pod="gw-0", namespace=NS)  # type: ignore[arg-type]
    security = object.__new__(MeshSecurity)
    security._sync_secrets(ident, _secrets_yaml(NS))
    first, served = len(agent.handed), dict(agent.served)
    assert first == 8
    security._sync_secrets(ident, _secrets_yaml(NS))
    assert len(agent.handed) == first and agent.served == served
    changed = [s for s in _secrets_yaml(NS) if s.name != "tricky-cacert"]
    for sec in changed:
        if sec.name == "gw-cred":
            sec.spec.string_data["tls.crt"] = "CERT2"
    security._sync_secrets(ident, changed)
    assert sorted(agent.handed[first:]) == ["kubernetes://gw-cred", "kubernetes://istio-system/gw-cred"]
    assert agent.served["kubernetes://gw-cred"] == ("tls", (b"CERT2", b"KEY", b"STAPLE"))
    assert "kubernetes://tricky-cacert" not in agent.served


def test_secret_proto_roundtrip_names() -> None:
    # The agent's Secret carries the resource name it was asked for (toEnvoyTLSSecret(name, ...)).
    msg = secret_pb2.Secret.FromString(
        _tls_certificate_secret("kubernetes://x", b"c", b"k").SerializeToString()
    )
    assert msg.name == "kubernetes://x"


# --- gateway.go mergeGateways: VerifiedCertificateReferences for kubernetes-gateway:// -------------


def _gateways_yaml() -> list[Any]:
    text = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: MUTUAL, credentialName: 'kubernetes-gateway://istio-system/gw-cred'}
  - port: {number: 8443, name: https-other, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: 'kubernetes-gateway://other/elsewhere'}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: elsewhere, namespace: other}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: 'kubernetes-gateway://other/elsewhere'}
"""
    store = Store()
    store.apply(loader.load_text(text, "gateways.yaml"), "test")
    return store.list("Gateway")


def test_verified_references_same_namespace_only() -> None:
    # mergeGateways: a Gateway of the proxy's namespace naming a Secret of that namespace is verified
    # (with its -cacert for MUTUAL); another namespace's Secret, or another namespace's Gateway, is not.
    from isthmus.security.credentials import verified_references

    refs = verified_references(_gateways_yaml(), NS, {"istio": "ingressgateway"})
    assert refs == {
        "kubernetes-gateway://istio-system/gw-cred",
        "kubernetes-gateway://istio-system/gw-cred-cacert",
    }
    assert verified_references(_gateways_yaml(), NS, {"istio": "other"}) == frozenset()


def test_gateway_pod_is_served_its_verified_kubernetes_gateway_credentials() -> None:
    agent = _FakeAgent()
    labels = {"istio": "ingressgateway"}
    ident = PodIdentity(agent=agent, client=None, pod="gw-0", namespace=NS, gateway_labels=labels)  # type: ignore[arg-type]
    security = object.__new__(MeshSecurity)
    security._sync_secrets(ident, _secrets_yaml(NS), _gateways_yaml())
    assert agent.served["kubernetes-gateway://istio-system/gw-cred"] == ("tls", (b"CERT", b"KEY", b"STAPLE"))
    assert agent.served["kubernetes-gateway://istio-system/gw-cred-cacert"] == ("ca", (b"CA", None))
    # A sidecar has no merged gateway: no kubernetes-gateway:// names.
    sidecar = PodIdentity(agent=_FakeAgent(), client=None, pod="app-0", namespace=NS)  # type: ignore[arg-type]
    security._sync_secrets(sidecar, _secrets_yaml(NS), _gateways_yaml())
    assert not any(n.startswith("kubernetes-gateway://") for n in sidecar.agent.served)


@pytest.mark.xfail(
    strict=True,
    reason="istiod's SDS name for an Istio Gateway's caCertCredentialName (1.28) is not confirmed from the "
    "stored sources: Isthmus asks for kubernetes://<name> (a certificate resource, which a CA-only Secret "
    "cannot answer); Gateway API conversion appends -cacert itself (gateway_test.go), which would make it "
    "a CA-only name",
)
def test_ca_cert_credential_name_of_a_ca_only_secret_is_served_as_a_ca() -> None:
    ca_only = data({"client-ca": {"cacert": b"client-ca"}})
    assert credential(kubernetes_secret_name("client-ca"), NS, ca_only) == CertInfo(b"client-ca")


def test_ecc_signature_algorithm_picks_the_workload_key() -> None:
    """istio-agent's ECC_SIGNATURE_ALGORITHM (MeshConfig defaultConfig.proxyMetadata): ECDSA keys for
    `ECDSA`, RSA for any other value; unset, Isthmus's default is ECDSA (Istio's is RSA)."""
    from isthmus.mesh.security import workload_key_type

    assert workload_key_type("ECDSA") == "ec"
    assert workload_key_type(None) == "ec"
    assert workload_key_type("RSA") == "rsa"


def test_waiting_names_why_a_secret_was_not_served() -> None:
    """A credential the agent refused (istio-agent: "Secret is not supplied by SDS") is reported as
    refused, with the reason, not as a missing Secret (TestSidecarMutualTlsOrigination 'invalid client
    cert'); once a valid one replaces it the reason is gone."""

    class Refusing(_FakeAgent):
        def add_secret(self, name: str, *args: Any) -> None:
            if name.endswith("gw-cred"):
                raise ValueError(f"secret {name!r}: the private key does not match the certificate")
            super().add_secret(name, *args)

        def waiting(self) -> dict[str, str]:
            return {"kubernetes://gw-cred": "", "kubernetes://absent": ""}

    agent = Refusing()
    ident = PodIdentity(agent=agent, client=None, pod="gw-0", namespace=NS)  # type: ignore[arg-type]
    security = object.__new__(MeshSecurity)
    security.pods = {(NS, "gw-0"): ident}
    security._sync_secrets(ident, _secrets_yaml(NS))
    waiting = security.waiting(NS, "gw-0")
    assert "private key does not match" in waiting["kubernetes://gw-cred"]
    assert waiting["kubernetes://absent"].startswith("no Secret 'absent'")
    security._sync_secrets(ident, [])
    assert security.waiting(NS, "gw-0")["kubernetes://gw-cred"].startswith("no Secret 'gw-cred'")
