"""SPIFFE identities of workloads, as Istio writes them.

A workload's identity is ``spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>``
(Istio's ``pkg/spiffe`` ``genSpiffeURI``); the trust domain defaults to ``cluster.local``.
AuthorizationPolicy principals are the same string without the ``spiffe://`` scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPIFFE_SCHEME = "spiffe://"
DEFAULT_TRUST_DOMAIN = "cluster.local"

# Kubernetes names (DNS-1123 labels / subdomains) for namespaces and service accounts.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# A SPIFFE trust domain: lowercase letters, digits, dots, dashes and underscores (SPIFFE-ID spec §2.1).
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")


class InvalidIdentity(ValueError):
    """A string that is not a workload SPIFFE id (``spiffe://<td>/ns/<ns>/sa/<sa>``)."""


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return f"{SPIFFE_SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The AuthorizationPolicy principal form: the URI without ``spiffe://``."""
        return self.uri[len(SPIFFE_SCHEME) :]

    def __str__(self) -> str:
        return self.uri


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> None:
    if not value or len(value) > 253 or not pattern.match(value):
        raise InvalidIdentity(f"invalid {kind} {value!r}")


def normalize_trust_domain(trust_domain: str) -> str:
    """Istio's spiffe.SetTrustDomain: ``@`` becomes ``.`` (a GCP service-account style trust domain,
    ``kube-federating-id@testproj.iam.gserviceaccount.com``, is not a valid URI authority)."""
    return trust_domain.replace("@", ".")


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``; raises InvalidIdentity."""
    if not namespace or not service_account:
        # Istio's GenSpiffeURI wording.
        raise InvalidIdentity(
            f"namespace or service account empty for SPIFFE uri ns={namespace} serviceAccount={service_account}"
        )
    trust_domain = normalize_trust_domain(trust_domain)
    _check("trust domain", trust_domain, _TRUST_DOMAIN)
    _check("namespace", namespace, _NAME)
    _check("service account", service_account, _NAME)
    return SpiffeId(trust_domain, namespace, service_account).uri


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Parse a workload SPIFFE URI (or its principal form without the scheme)."""
    rest = uri[len(SPIFFE_SCHEME) :] if uri.startswith(SPIFFE_SCHEME) else uri
    parts = rest.split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise InvalidIdentity(f"{uri!r} is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>")
    trust_domain, _, namespace, _, service_account = parts
    spiffe_id(trust_domain, namespace, service_account)  # validates each part
    return SpiffeId(trust_domain, namespace, service_account)


def is_spiffe_uri(value: str) -> bool:
    try:
        parse_spiffe_id(value)
    except InvalidIdentity:
        return False
    return value.startswith(SPIFFE_SCHEME)


def trust_domain_prefix(trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    """``spiffe://<trust_domain>/``: the SAN prefix Istio's inbound listeners accept."""
    _check("trust domain", trust_domain, _TRUST_DOMAIN)
    return f"{SPIFFE_SCHEME}{trust_domain}/"
