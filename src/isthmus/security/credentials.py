"""`credentialName` secrets a proxy may read, and what each one holds: istiod's SecretGen, as pure functions.

In Istio, istiod serves a gateway's (or a sidecar's) ``kubernetes://<name>`` credentials over SDS
(``pilot/pkg/xds/sds.go``): it parses the resource name (``pilot/pkg/model/credentials``
``ParseResourceName``), drops what the proxy may not read (``filterAuthorizedResources``: a Secret of
the proxy's own namespace only), and reads the Secret (``pilot/pkg/credentials/kube`` ``ExtractCertInfo``
/ ``ExtractRoot``). Here the node agent serves them (`isthmus.agent.sds.SdsAgent`), and the runner hands it
`servable_credentials` for the pod (`isthmus.mesh.security.MeshSecurity`).

The rules kept from istiod:

- ``kubernetes://<name>`` reads ``<name>`` in the proxy's namespace; ``kubernetes://<ns>/<name>`` reads it
  in ``<ns>``, which must be the proxy's namespace (no cross-namespace Secret, ever);
- a name ending in ``-cacert`` is always a CA-only resource (never the private key, whatever the Secret
  holds): the Secret of that exact name when there is one (and then only its CA keys, without falling
  back), else the CA keys of the Secret without the suffix;
- any other name is a certificate: a generic Secret's ``cert``/``key`` (+ ``crl``) first, then a TLS
  Secret's ``tls.crt``/``tls.key`` (+ ``tls.ocsp-staple``, ``ca.crl``); a CA from ``cacert`` (+ ``crl``)
  first, then ``ca.crt`` (+ ``ca.crl``); an empty key counts as missing;
- ``kubernetes-gateway://<ns>/<name>`` (Gateway API's form) only when verified for this proxy: istiod's
  ``MergedGateway.VerifiedCertificateReferences`` (a Gateway of the proxy's namespace naming a Secret of
  that namespace: `verified_references`); the caller passes that set (`verified`);
- any other name (``foo://x``, ``default``, ``builtin://``...) is not a credential: nothing.

Istio's RBAC step (a SubjectAccessReview: may the proxy's service account list Secrets?) has no
counterpart: Isthmus has no Kubernetes RBAC, so every pod may read its own namespace's Secrets, as an
authorized gateway may in Istio (a sidecar's service account usually is not, except for CA-only names).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.registry.build import labels_match
from isthmus.security.sds import (
    BUILTIN_PREFIX,
    CACERT_SUFFIX,
    KUBERNETES_GATEWAY_PREFIX,
    KUBERNETES_PREFIX,
    kubernetes_secret_name,
)

# Secret keys (pilot/pkg/credentials/kube): generic Secrets, then kubernetes.io/tls ones.
GENERIC_CERT, GENERIC_KEY, GENERIC_CA, GENERIC_CRL = "cert", "key", "cacert", "crl"
TLS_CERT, TLS_KEY, TLS_CA, TLS_CRL, TLS_OCSP_STAPLE = (
    "tls.crt",
    "tls.key",
    "ca.crt",
    "ca.crl",
    "tls.ocsp-staple",
)


@dataclass(frozen=True)
class SecretResource:
    """A parsed SDS resource name (istiod's credentials.SecretResource)."""

    type: str  # "kubernetes" | "kubernetes-gateway"
    name: str
    namespace: str
    resource_name: str

    @property
    def ca_only(self) -> bool:
        return self.name.endswith(CACERT_SUFFIX)


@dataclass(frozen=True)
class CertInfo:
    """What one SDS credential holds: a certificate + key (`key` set), or a CA bundle (`key` empty)."""

    cert: bytes
    key: bytes = b""
    staple: bytes | None = None
    crl: bytes | None = None

    @property
    def is_ca(self) -> bool:
        return not self.key


def parse_resource_name(name: str, proxy_namespace: str) -> SecretResource | None:
    """istiod's ParseResourceName; None for a name that is not a Secret credential's."""
    if name.startswith(KUBERNETES_PREFIX):
        parts = name[len(KUBERNETES_PREFIX) :].split("/")
        namespace, secret = (parts[0], parts[1]) if len(parts) > 1 else (proxy_namespace, parts[0])
        return SecretResource("kubernetes", secret, namespace, name)
    if name.startswith(KUBERNETES_GATEWAY_PREFIX):
        parts = name[len(KUBERNETES_GATEWAY_PREFIX) :].split("/")
        if len(parts) <= 1 or not parts[0] or not parts[1]:
            return None  # a namespace and a name are required
        return SecretResource("kubernetes-gateway", parts[1], parts[0], name)
    return None


def _value(data: Mapping[str, bytes], key: str) -> bytes | None:
    return data.get(key) or None  # Kubernetes keeps empty keys; istiod's hasValue ignores them


def extract_cert_info(data: Mapping[str, bytes]) -> CertInfo | None:
    """istiod's ExtractCertInfo: a generic Secret's cert/key (+ crl) first, then a TLS Secret's
    tls.crt/tls.key (+ OCSP staple and ca.crl)."""
    cert, key = _value(data, GENERIC_CERT), _value(data, GENERIC_KEY)
    if cert and key:
        return CertInfo(cert, key, crl=_value(data, GENERIC_CRL))
    cert, key = _value(data, TLS_CERT), _value(data, TLS_KEY)
    if cert and key:
        return CertInfo(cert, key, staple=_value(data, TLS_OCSP_STAPLE), crl=_value(data, TLS_CRL))
    return None


def extract_root(data: Mapping[str, bytes]) -> CertInfo | None:
    """istiod's ExtractRoot: a generic Secret's cacert (+ crl) first, then a TLS Secret's ca.crt (+ ca.crl)."""
    for ca_key, crl_key in ((GENERIC_CA, GENERIC_CRL), (TLS_CA, TLS_CRL)):
        ca = _value(data, ca_key)
        if ca:
            return CertInfo(ca, crl=_value(data, crl_key))
    return None


SecretData = Mapping[tuple[str, str], Mapping[str, bytes]]  # (namespace, name) -> decoded data


def credential(
    name: str, proxy_namespace: str, secrets: SecretData, verified: Collection[str] = ()
) -> CertInfo | None:
    """What istiod's SecretGen sends a proxy of `proxy_namespace` for the resource `name`, or None (not a
    credential, not allowed, no such Secret, or a Secret without the keys)."""
    res = parse_resource_name(name, proxy_namespace)
    if res is None:
        return None
    if res.type == "kubernetes-gateway":
        if name not in verified:
            return None
    elif res.namespace != proxy_namespace:
        return None  # istiod: "cross namespace secret reference requires ReferencePolicy"
    if res.ca_only:
        # GetCaCert: the Secret of that exact name (no fallback when it lacks a CA), else the base one.
        data = secrets.get((res.namespace, res.name))
        if data is None:
            data = secrets.get((res.namespace, res.name.removesuffix(CACERT_SUFFIX)))
        return extract_root(data) if data is not None else None
    data = secrets.get((res.namespace, res.name))
    return extract_cert_info(data) if data is not None else None


def servable_credentials(
    secrets: SecretData, proxy_namespace: str, verified: Iterable[str] = ()
) -> dict[str, CertInfo]:
    """Every resource name `credential` answers for this proxy, with its content: what the node agent is
    handed up front (it serves names, it cannot ask). Both spellings (``kubernetes://x`` and
    ``kubernetes://<ns>/x``) of each Secret of the proxy's namespace and of its ``-cacert`` companion."""
    verified = frozenset(verified)
    candidates: set[str] = set(verified)
    for namespace, secret in secrets:
        if namespace != proxy_namespace:
            continue
        for base in (secret, secret + CACERT_SUFFIX):
            candidates.add(KUBERNETES_PREFIX + base)
            candidates.add(f"{KUBERNETES_PREFIX}{namespace}/{base}")
    out: dict[str, CertInfo] = {}
    for name in sorted(candidates):
        info = credential(name, proxy_namespace, secrets, verified)
        if info is not None:
            out[name] = info
    return out


def verified_references(
    gateways: Iterable[Any], proxy_namespace: str, proxy_labels: Mapping[str, str]
) -> frozenset[str]:
    """istiod's MergedGateway.VerifiedCertificateReferences for a gateway proxy (mergeGateways): the
    credentials of the Gateways that select it and live in its namespace, naming Secrets of that same
    namespace, plus their ``-cacert`` companions for MUTUAL / OPTIONAL_MUTUAL servers (the listener asks
    for those in both modes) and a ``caCertCredentialName``. Only ``kubernetes-gateway://`` names need
    it (`credential`); ReferenceGrants, which widen it across namespaces, are Gateway API's."""
    out: set[str] = set()
    for gw in gateways:
        if gw.namespace != proxy_namespace or not labels_match(gw.spec.selector, proxy_labels):
            continue
        for server in gw.spec.servers or ():
            tls = server.tls
            if tls is None:
                continue
            mutual = tls.mode in ("MUTUAL", "OPTIONAL_MUTUAL")
            names = [n for n in tls.credential_names or () if n] or [tls.credential_name or ""]
            refs = [(n, mutual) for n in names if n] + [(tls.ca_cert_credential_name or "", False)]
            for name, with_ca in refs:
                if not name or name.startswith(BUILTIN_PREFIX):
                    continue  # builtin:// is the workload's own certificate, no Secret
                resource = kubernetes_secret_name(name)
                parsed = parse_resource_name(resource, proxy_namespace)
                if parsed is None or parsed.namespace != proxy_namespace:
                    continue
                out.add(resource)
                if with_ca:
                    out.add(resource + CACERT_SUFFIX)
    return frozenset(out)
