"""The node agent's side of workload certificates: local key + CSR, and when to rotate.

As istio-agent (``security/pkg/nodeagent/cache/secretcache.go``):

- a new private key is generated locally for every certificate (it never leaves the agent and Envoy);
  ECDSA P-256 by default (Istio's ``ECC_SIGNATURE_ALGORITHM=ECDSA``: ~1 ms instead of ~50-200 ms for
  RSA 2048, which matters with many pods rotating), RSA 2048 on request (Istio's default);
- the CSR carries the workload's SPIFFE id as its only SAN (a URI), and an empty subject;
- the certificate is rotated once `rotation_ratio` of its lifetime has passed, the lifetime being counted
  from the moment the agent received it (Istio's ``CreatedTime``), not from the backdated notBefore:
  Istio rotates at ``expiry - SECRET_GRACE_PERIOD_RATIO * lifetime`` with a ratio of 0.5, i.e. half way,
  and spreads rotations with a small random jitter (``SECRET_GRACE_PERIOD_RATIO_JITTER``, 0.01).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from isthmus.security.ca import CertBundle, KeyType, PrivateKey, generate_key, key_pem, load_certs
from isthmus.security.identity import parse_spiffe_id

DEFAULT_ROTATION_RATIO = 0.5
DEFAULT_ROTATION_JITTER = 0.01


def build_csr(key: PrivateKey, identity: str) -> bytes:
    """A PEM CSR for `identity` (a SPIFFE URI, the only SAN), signed with `key`."""
    parse_spiffe_id(identity)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def new_key_and_csr(identity: str, key_type: KeyType = "ec") -> tuple[bytes, bytes]:
    """(private key PEM, CSR PEM) for `identity`."""
    key = generate_key(key_type)
    return key_pem(key), build_csr(key, identity)


def presented_chain(bundle: CertBundle) -> bytes:
    """The chain a workload presents: the leaf, its intermediates and the root they chain up to, as
    istio-agent serves the CA's whole response chain (istiod signs with the plug-in CA's cert-chain.pem,
    which ends in the root; TestSecureNaming expects leaf, intermediate and root from a sidecar). Other
    trust anchors of the bundle stay in ROOTCA only."""
    certs = load_certs(bundle.cert_chain_pem)
    top = certs[-1]
    if top.issuer == top.subject:
        return bundle.cert_chain_pem
    for root in load_certs(bundle.root_cert_pem):
        if root.subject == top.issuer:
            try:
                top.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return bundle.cert_chain_pem + root.public_bytes(serialization.Encoding.PEM)
    return bundle.cert_chain_pem


@dataclass(frozen=True)
class WorkloadCertificate:
    """The agent's current certificate: what it serves as the ``default`` and ``ROOTCA`` secrets."""

    identity: str
    cert_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    root_cert_pem: bytes
    issued_at: dt.datetime
    """When the agent received it (UTC): the start of the lifetime rotation is computed on."""
    not_after: dt.datetime

    @classmethod
    def from_bundle(
        cls, identity: str, bundle: CertBundle, private_key_pem: bytes, issued_at: dt.datetime
    ) -> WorkloadCertificate:
        return cls(
            identity,
            presented_chain(bundle),
            private_key_pem,
            bundle.root_cert_pem,
            issued_at,
            bundle.not_after,
        )

    @property
    def leaf(self) -> x509.Certificate:
        return load_certs(self.cert_chain_pem)[0]

    @property
    def serial_number(self) -> int:
        return self.leaf.serial_number

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.issued_at

    def rotation_time(
        self,
        ratio: float = DEFAULT_ROTATION_RATIO,
        jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> dt.datetime:
        return rotation_time(self.issued_at, self.not_after, ratio, jitter, rand)


def rotation_time(
    issued_at: dt.datetime,
    not_after: dt.datetime,
    ratio: float = DEFAULT_ROTATION_RATIO,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> dt.datetime:
    """When to rotate a certificate received at `issued_at` and expiring at `not_after`.

    ``issued_at + r * (not_after - issued_at)`` where ``r = ratio ± jitter`` (uniform), clamped to
    [0, 1]. `ratio` is the fraction of the lifetime that may pass before rotating (Istio's
    ``1 - SECRET_GRACE_PERIOD_RATIO``; both are 0.5 by default). A ratio of 0 (a grace period ratio
    of 1) rotates at once, as Istio's rotateTime does (the agent itself refuses it: see SdsAgent).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"rotation ratio must be in [0, 1], got {ratio}")
    if jitter < 0:
        raise ValueError("jitter must be >= 0")
    r = ratio + (2.0 * rand() - 1.0) * jitter if jitter else ratio
    r = min(1.0, max(0.0, r))
    lifetime = not_after - issued_at
    if lifetime <= dt.timedelta(0):
        return issued_at
    return issued_at + lifetime * r


def retry_delay(attempt: int, *, initial: float = 0.5, maximum: float = 30.0) -> float:
    """Exponential backoff for a failed CSR: `initial` * 2^attempt, at most `maximum` seconds."""
    return min(maximum, initial * (2 ** max(0, attempt)))
