"""The mesh's certificate authority: a root (self-signed or plugged in) that signs workload certificates.

Modelled on istiod's built-in CA (``security/pkg/pki/ca``, ``security/pkg/pki/util/generate_cert.go``):

Root
    On first start `CertificateAuthority.load_or_create` creates a self-signed root exactly as istiod's
    self-signed CA does: **RSA 2048**, subject ``O=<trust domain>``, 10 years, basicConstraints CA,
    keyUsage keyCertSign. RSA (not ECDSA) is kept for fidelity with Istio's defaults (tools that inspect
    ``istio-ca-secret`` expect it); it costs ~0.1 s once, and workload keys are independent of it.
    The root is persisted in the CA directory under Istio's plug-in file names (``ca-cert.pem``,
    ``ca-key.pem`` with mode 0600, ``root-cert.pem``), so the next start loads the same root and
    certificates issued before a restart stay valid.

Plug-in CA (Istio's ``cacerts`` secret)
    A directory (or explicit files) with ``ca-cert.pem`` + ``ca-key.pem`` (the signing CA: a root, or an
    intermediate), ``root-cert.pem`` (the trust anchors) and ``cert-chain.pem`` (the chain from the
    signing cert up to the root, as Istio's ``cat ca-cert.pem root-cert.pem > cert-chain.pem``). Loading
    checks that the key matches the certificate, that the certificate may sign certificates, and that the
    chain verifies up to one of the roots. `CertificateAuthority.reload` reads the directory again while
    the mesh runs (istiod watches its ``cacerts`` mount the same way): a valid bundle replaces the old
    one at once, an invalid or half-written one is refused and the CA keeps signing with the old one.

Workload certificates (`CertificateAuthority.sign_csr`)
    The CSR signature is verified; the leaf carries **only** the authorized SPIFFE identity as a
    (critical) URI SAN and an empty subject (CN = the identity when the CSR has a CN: Istio's dual
    use), keyUsage digitalSignature + keyEncipherment, extKeyUsage serverAuth + clientAuth,
    basicConstraints CA:false, a random 159-bit serial, notBefore backdated by Istio's clock-skew
    grace period (2 minutes; the root is not backdated, as istiod's) and notAfter = now + TTL
    (default 24 h; a request above ``max_workload_ttl`` is refused; never past the signing
    certificate's own expiry). A CSR that asks for any other SAN than the authorized identity is
    refused (`IdentityMismatch`; a deliberate departure: istiod ignores the CSR's SANs altogether and
    signs for the caller); a CSR without a SAN extension gets the authorized identity. CSR keys must
    be RSA >= 2048 bits or ECDSA P-256/P-384 (what Envoy accepts).

Issued chains (`CertBundle`) put the leaf and the intermediates in ``cert_chain_pem`` (no root: a peer
needs the root in its trust store anyway) and the trust anchors in ``root_cert_pem``;
`CertBundle.to_istio_chain` gives istiod's wire form (``[leaf, intermediates (one element), roots]``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.security.identity import (
    DEFAULT_TRUST_DOMAIN,
    InvalidIdentity,
    SpiffeId,
    normalize_trust_domain,
    parse_spiffe_id,
)

CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
ROOT_CERT_FILE = "root-cert.pem"
CERT_CHAIN_FILE = "cert-chain.pem"

DEFAULT_ROOT_TTL = dt.timedelta(days=3650)  # istiod: CITADEL_SELF_SIGNED_CA_CERT_TTL
DEFAULT_WORKLOAD_TTL = dt.timedelta(hours=24)  # istiod: DEFAULT_WORKLOAD_CERT_TTL
DEFAULT_MAX_WORKLOAD_TTL = dt.timedelta(days=90)  # istiod: MAX_WORKLOAD_CERT_TTL
CLOCK_SKEW_GRACE = dt.timedelta(minutes=2)  # istio: util.ClockSkewGracePeriod
DEFAULT_SERVER_CERT_TTL = dt.timedelta(days=365)

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)


class CaError(Exception):
    """Base class of the CA's errors."""


class CaLoadError(CaError):
    """The CA's certificate/key files are missing, unreadable or inconsistent."""


class CsrError(CaError, ValueError):
    """The CSR cannot be parsed, its signature is invalid, or its key is not acceptable."""


class IdentityMismatch(CaError, PermissionError):
    """The CSR asks for SANs other than the identity the caller is authorized for."""


class TtlError(CaError, ValueError):
    """The requested certificate lifetime exceeds the CA's maximum."""


class RootChangeRefused(CaLoadError):
    """A reloaded ``root-cert.pem`` neither extends nor trims the current trust anchors (istiod: "Updating
    new ROOT-CA not supported")."""


@dataclass(frozen=True)
class CaReload:
    """What a successful `CertificateAuthority.reload` changed."""

    signing_changed: bool
    """The signing certificate (or its chain) is another one: new workload certificates come from it."""
    roots_changed: bool
    """The root bundle differs: the trust anchors every proxy holds must follow."""

    @property
    def changed(self) -> bool:
        return self.signing_changed or self.roots_changed


# -- PEM helpers ------------------------------------------------------------------------------------


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert_pem(c) for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_certs(data: bytes | str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (ValueError if there is none)."""
    raw = data.encode() if isinstance(data, str) else data
    return x509.load_pem_x509_certificates(raw)


def generate_key(key_type: KeyType = "ec", *, rsa_bits: int = 2048) -> PrivateKey:
    """A new private key: ECDSA P-256 (``ec``) or RSA (``rsa``, 2048 bits by default)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key type {key_type!r} (rsa or ec)")


def go_duration(d: dt.timedelta) -> str:
    """`d` as Go's time.Duration.String() prints it (``3h0m0s``, ``1m30s``, ``2.5s``, ``0s``): istiod's error
    messages embed durations that way ("requested TTL 3h0m0s is greater than the max allowed TTL 2h0m0s")."""
    us = d // dt.timedelta(microseconds=1)
    sign, us = ("-", -us) if us < 0 else ("", us)
    if us == 0:
        return "0s"
    if us < 1_000_000:  # Go switches to ms/µs below one second
        return f"{sign}{us / 1000:g}ms" if us >= 1000 else f"{sign}{us}µs"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    secs = f"{rest / 1_000_000:.6f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_public_key(key: object, what: str) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"{what}: RSA key of {key.key_size} bits (at least 2048 required)")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ALLOWED_CURVES):
            raise CsrError(f"{what}: ECDSA curve {key.curve.name} not supported (P-256 or P-384)")
        return
    raise CsrError(f"{what}: unsupported key type {type(key).__name__} (RSA or ECDSA)")


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomically write `data` to `path` with permissions `mode` (set at creation, never wider)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)


# -- issued bundles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertBundle:
    """A signed workload certificate: leaf (+ intermediates), the trust anchors, the expiry."""

    cert_chain_pem: bytes
    """The leaf first, then any intermediates up to (not including) the root."""
    root_cert_pem: bytes
    """The trust anchors (one or more root certificates)."""
    not_after: dt.datetime
    """The leaf's expiry (timezone-aware, UTC)."""

    @property
    def leaf(self) -> x509.Certificate:
        return load_certs(self.cert_chain_pem)[0]

    def to_istio_chain(self) -> list[str]:
        """istiod's ``IstioCertificateResponse.cert_chain`` (security/pkg/server/ca/server.go): the leaf, then
        the CA's whole cert chain as one element (when it has one), then the root bundle."""
        leaf, *intermediates = load_certs(self.cert_chain_pem)
        middle = [certs_pem(intermediates).decode()] if intermediates else []
        return [cert_pem(leaf).decode(), *middle, self.root_cert_pem.decode()]

    @classmethod
    def from_istio_chain(cls, chain: Sequence[str]) -> CertBundle:
        """The inverse of `to_istio_chain` (as istio-agent reads a CSR response: the last element holds
        the roots). Root certificates repeated in the chain part are dropped."""
        if len(chain) < 2:
            raise CaError(f"the CA returned {len(chain)} certificate(s); expected a leaf and the root")
        try:
            roots = load_certs(chain[-1])
            certs = [c for part in chain[:-1] for c in load_certs(part)]
        except ValueError as e:
            raise CaError(f"the CA returned an unreadable certificate chain: {e}") from e
        root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
        certs = [c for c in certs if c.public_bytes(serialization.Encoding.DER) not in root_ders]
        if not certs:
            raise CaError("the CA returned no leaf certificate")
        return cls(certs_pem(certs), certs_pem(roots), certs[0].not_valid_after_utc)


# -- the CA -----------------------------------------------------------------------------------------


class CertificateAuthority:
    """Signs workload certificates for one trust domain. Build it with `load_or_create` (or `load`,
    `create_self_signed`)."""

    def __init__(
        self,
        signing_cert: x509.Certificate,
        signing_key: PrivateKey,
        *,
        intermediates: Sequence[x509.Certificate] = (),
        roots: Sequence[x509.Certificate] = (),
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        default_workload_ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        max_workload_ttl: dt.timedelta = DEFAULT_MAX_WORKLOAD_TTL,
        directory: Path | None = None,
        created: bool = False,
    ) -> None:
        if not isinstance(signing_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CaLoadError(f"unsupported CA key type {type(signing_key).__name__} (RSA or ECDSA)")
        if _public_bytes(signing_key.public_key()) != _public_bytes(signing_cert.public_key()):
            raise CaLoadError("the CA private key does not match the CA certificate")
        try:
            bc = signing_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise CaLoadError("the CA certificate is not a CA (basicConstraints CA:TRUE missing)")
        try:
            ku = signing_cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not ku.key_cert_sign:
                raise CaLoadError("the CA certificate's keyUsage lacks keyCertSign")
        except x509.ExtensionNotFound:
            pass
        if default_workload_ttl <= dt.timedelta(0) or max_workload_ttl <= dt.timedelta(0):
            raise ValueError("certificate lifetimes must be positive")
        # A default above the maximum is allowed, as istiod's IstioCA does (TestCreatePluggedCertCA uses a
        # 99999 h default with a 1 h maximum): the maximum bounds what a request asks for, not the default.
        trust_domain = normalize_trust_domain(trust_domain)  # as Istio's SetTrustDomain: '@' -> '.'
        parse_spiffe_id(f"spiffe://{trust_domain}/ns/default/sa/default")  # validates the trust domain

        self_signed = _is_self_signed(signing_cert)
        roots = list(roots) or ([signing_cert] if self_signed else [])
        if not roots:
            raise CaLoadError("the CA certificate is not self-signed and no root certificate was given")
        # The chain from the signing cert up to (not including) a root: what issued leaves are sent with.
        chain = [] if self_signed else [signing_cert]
        for c in intermediates:
            if _is_self_signed(c) or any(c == x for x in chain):
                continue
            chain.append(c)
        for child, parent in zip(chain, chain[1:], strict=False):
            if not _issued_by(child, parent):
                raise CaLoadError(
                    f"certificate chain broken: {child.subject.rfc4514_string()!r} is not issued by "
                    f"{parent.subject.rfc4514_string()!r}"
                )
        top = chain[-1] if chain else signing_cert
        if not any(_issued_by(top, r) for r in roots):
            raise CaLoadError(
                f"certificate chain does not lead to a root: {top.subject.rfc4514_string()!r} is not "
                "issued by any certificate of the root bundle"
            )

        self.signing_cert = signing_cert
        self._key = signing_key
        self.intermediates: tuple[x509.Certificate, ...] = tuple(chain)
        self.roots: tuple[x509.Certificate, ...] = tuple(roots)
        self.trust_domain = trust_domain
        self.default_workload_ttl = default_workload_ttl
        self.max_workload_ttl = max_workload_ttl
        self.directory = directory
        self.self_signed = self_signed
        self.created = created
        """True when this start created the self-signed root (False when it was loaded)."""
        self._root_pem = certs_pem(self.roots)
        self._chain_pem = certs_pem(self.intermediates)
        self.issued = 0
        """Workload certificates signed since this object was created."""

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def create_self_signed(
        cls,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        root_ttl: dt.timedelta = DEFAULT_ROOT_TTL,
        key_type: KeyType = "rsa",
        default_workload_ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        max_workload_ttl: dt.timedelta = DEFAULT_MAX_WORKLOAD_TTL,
    ) -> CertificateAuthority:
        """A new self-signed root, in memory (see `save`)."""
        key = generate_key(key_type)
        now = _utcnow()
        trust_domain = normalize_trust_domain(trust_domain)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # Not backdated, unlike leaves: istiod's self-signed root has NotAfter - NotBefore == its TTL
            # exactly (genCertTemplateFromOptions; TestCreateSelfSignedIstioCAWithoutSecret).
            .not_valid_before(now)
            .not_valid_after(now + root_ttl)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(
            cert,
            key,
            trust_domain=trust_domain,
            default_workload_ttl=default_workload_ttl,
            max_workload_ttl=max_workload_ttl,
            created=True,
        )

    @classmethod
    def load(
        cls,
        cert_file: Path | str,
        key_file: Path | str,
        *,
        cert_chain_file: Path | str | None = None,
        trust_bundle_file: Path | str | None = None,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        default_workload_ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        max_workload_ttl: dt.timedelta = DEFAULT_MAX_WORKLOAD_TTL,
        directory: Path | None = None,
    ) -> CertificateAuthority:
        """Load a signing CA (root or intermediate) from PEM files, with Istio's plug-in semantics:
        `cert_chain_file` = ``cert-chain.pem``, `trust_bundle_file` = ``root-cert.pem``."""

        def read(path: Path | str, what: str) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as e:
                raise CaLoadError(f"cannot read the {what} {path}: {e.strerror or e}") from e

        def parse_certs(path: Path | str, what: str) -> list[x509.Certificate]:
            try:
                return load_certs(read(path, what))
            except ValueError as e:
                raise CaLoadError(f"the {what} {path} holds no readable PEM certificate: {e}") from e

        certs = parse_certs(cert_file, "CA certificate")
        try:
            key = serialization.load_pem_private_key(read(key_file, "CA key"), password=None)
        except (ValueError, TypeError) as e:
            raise CaLoadError(f"the CA key {key_file} is not a readable unencrypted PEM key: {e}") from e
        chain = parse_certs(cert_chain_file, "certificate chain") if cert_chain_file else []
        roots = parse_certs(trust_bundle_file, "root certificate") if trust_bundle_file else []
        return cls(
            certs[0],
            key,  # type: ignore[arg-type]  # checked in __init__
            intermediates=[*certs[1:], *chain],
            roots=roots,
            trust_domain=trust_domain,
            default_workload_ttl=default_workload_ttl,
            max_workload_ttl=max_workload_ttl,
            directory=directory,
        )

    @classmethod
    def load_or_create(
        cls,
        directory: Path | str,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        root_cert_file: Path | str | None = None,
        root_key_file: Path | str | None = None,
        cert_chain_file: Path | str | None = None,
        trust_bundle_file: Path | str | None = None,
        root_ttl: dt.timedelta = DEFAULT_ROOT_TTL,
        default_workload_ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        max_workload_ttl: dt.timedelta = DEFAULT_MAX_WORKLOAD_TTL,
        key_type: KeyType = "rsa",
    ) -> CertificateAuthority:
        """The mesh's CA, in this order of preference (as istiod):

        1. `root_cert_file` + `root_key_file` given: the user's CA (a root, or an intermediate with
           `cert_chain_file` and `trust_bundle_file`); nothing is written to `directory`;
        2. `directory` holds ``ca-cert.pem`` + ``ca-key.pem`` (Istio's ``cacerts`` layout, with optional
           ``cert-chain.pem`` and ``root-cert.pem``; also what step 3 wrote on an earlier start): load it;
        3. otherwise create a self-signed root and persist it there (key file mode 0600).
        """
        directory = Path(directory)
        ttls = {"default_workload_ttl": default_workload_ttl, "max_workload_ttl": max_workload_ttl}
        if (root_cert_file is None) != (root_key_file is None):
            raise CaLoadError("give both the CA certificate file and its key file, or neither")
        if root_cert_file is not None and root_key_file is not None:
            return cls.load(
                root_cert_file,
                root_key_file,
                cert_chain_file=cert_chain_file,
                trust_bundle_file=trust_bundle_file,
                trust_domain=trust_domain,
                directory=directory,
                **ttls,
            )
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            chain_path, root_path = directory / CERT_CHAIN_FILE, directory / ROOT_CERT_FILE
            return cls.load(
                cert_path,
                key_path,
                cert_chain_file=chain_path if chain_path.exists() else None,
                trust_bundle_file=root_path if root_path.exists() else None,
                trust_domain=trust_domain,
                directory=directory,
                **ttls,
            )
        ca = cls.create_self_signed(trust_domain=trust_domain, root_ttl=root_ttl, key_type=key_type, **ttls)
        ca.save(directory)
        return ca

    def save(self, directory: Path | str) -> None:
        """Write the CA in Istio's plug-in layout (ca-key.pem with mode 0600)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_file(directory / CA_KEY_FILE, key_pem(self._key), 0o600)
        _write_file(directory / CA_CERT_FILE, cert_pem(self.signing_cert), 0o644)
        _write_file(directory / ROOT_CERT_FILE, self._root_pem, 0o644)
        if self.intermediates:
            _write_file(directory / CERT_CHAIN_FILE, self._chain_pem + self._root_pem, 0o644)
        self.directory = directory

    def reload(self) -> CaReload:
        """Read the plug-in files of `directory` again and, when they hold a valid bundle, sign with it from
        now on (istiod's handleEvent on a ``cacerts`` change: UpdateVerifiedKeyCertBundleFromFile).

        Raises CaLoadError, leaving this CA exactly as it was, when the files are missing, unreadable or
        inconsistent (a key that does not match its certificate, a chain that does not lead to a root:
        what a half-written update looks like), and RootChangeRefused when ``root-cert.pem`` changes to a
        bundle that neither contains the current anchors nor is contained in them. That is istiod's
        multi-root rule (ISTIO_MULTIROOT_MESH, which Isthmus always applies): a root is rotated by first
        adding the new one, then moving the signing certificate under it, then dropping the old one, so
        that workloads holding either keep trusting each other at every step. istiod compares the PEM
        bytes (bytes.Contains); Isthmus compares the sets of certificates, the same rule without
        depending on order or whitespace."""
        if self.directory is None:
            raise CaLoadError("this CA was not loaded from a directory: nothing to reload")
        directory = self.directory
        chain_path, root_path = directory / CERT_CHAIN_FILE, directory / ROOT_CERT_FILE
        fresh = CertificateAuthority.load(
            directory / CA_CERT_FILE,
            directory / CA_KEY_FILE,
            cert_chain_file=chain_path if chain_path.exists() else None,
            trust_bundle_file=root_path if root_path.exists() else None,
            trust_domain=self.trust_domain,
            default_workload_ttl=self.default_workload_ttl,
            max_workload_ttl=self.max_workload_ttl,
            directory=directory,
        )
        roots_changed = fresh.root_cert_pem != self._root_pem
        if roots_changed:
            der = serialization.Encoding.DER
            old = {r.public_bytes(der) for r in self.roots}
            new = {r.public_bytes(der) for r in fresh.roots}
            if not (old <= new or new <= old):
                raise RootChangeRefused(
                    f"{ROOT_CERT_FILE} neither contains the current root certificates nor is contained in "
                    "them: add the new root next to the old one first (a combined root-cert.pem), move the "
                    "signing certificate under it, then remove the old root"
                )
        signing_changed = (
            fresh.signing_cert != self.signing_cert
            or fresh.cert_chain_pem != self._chain_pem
            or _public_bytes(fresh._key.public_key()) != _public_bytes(self._key.public_key())
        )
        if signing_changed or roots_changed:
            # One assignment after another with no await in between: a CSR signed on the event loop sees
            # either the whole old bundle or the whole new one.
            self.signing_cert = fresh.signing_cert
            self._key = fresh._key
            self.intermediates = fresh.intermediates
            self.roots = fresh.roots
            self.self_signed = fresh.self_signed
            self._root_pem = fresh._root_pem
            self._chain_pem = fresh._chain_pem
        return CaReload(signing_changed=signing_changed, roots_changed=roots_changed)

    # -- views -----------------------------------------------------------------------------------

    @property
    def root_cert_pem(self) -> bytes:
        """The trust anchors, PEM (what Istio distributes as ``istio-ca-root-cert``)."""
        return self._root_pem

    @property
    def cert_chain_pem(self) -> bytes:
        """The intermediates from the signing cert up to the root (empty for a self-signed root)."""
        return self._chain_pem

    @property
    def not_after(self) -> dt.datetime:
        return self.signing_cert.not_valid_after_utc

    def __repr__(self) -> str:
        kind = "self-signed" if self.self_signed else "intermediate"
        return (
            f"CertificateAuthority({self.trust_domain!r}, {kind}, "
            f"subject={self.signing_cert.subject.rfc4514_string()!r}, not_after={self.not_after:%Y-%m-%d})"
        )

    # -- signing ---------------------------------------------------------------------------------

    def workload_ttl(self, ttl: dt.timedelta | None) -> dt.timedelta:
        """The lifetime a request gets: the default when unset or <= 0; TtlError above the maximum."""
        if ttl is None or ttl <= dt.timedelta(0):
            return self.default_workload_ttl
        if ttl > self.max_workload_ttl:
            raise TtlError(
                f"requested TTL {go_duration(ttl)} is greater than the max allowed TTL "
                f"{go_duration(self.max_workload_ttl)}"
            )
        return ttl

    def sign_csr(self, csr_pem: bytes | str, *, identity: str, ttl: dt.timedelta | None = None) -> CertBundle:
        """Sign a workload CSR for `identity` (``spiffe://<trust domain>/ns/<ns>/sa/<sa>``).

        Raises CsrError (unreadable CSR, bad signature, weak key), IdentityMismatch (the CSR asks for
        other SANs, or `identity` is not in this CA's trust domain) and TtlError.
        """
        try:
            sid = parse_spiffe_id(identity)
        except InvalidIdentity as e:
            raise IdentityMismatch(str(e)) from e
        if sid.trust_domain != self.trust_domain or not identity.startswith("spiffe://"):
            raise IdentityMismatch(f"identity {identity!r} is not in trust domain {self.trust_domain!r}")
        raw = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(raw)
        except ValueError as e:
            raise CsrError(f"the CSR is not a readable PEM certificate request: {e}") from e
        if not csr.is_signature_valid:
            raise CsrError("the CSR signature is invalid")
        public_key = csr.public_key()
        _check_public_key(public_key, "CSR")
        requested = csr_subject_alt_names(csr)
        if requested and requested != [identity]:
            raise IdentityMismatch(
                f"the CSR asks for {', '.join(requested)}; the caller is only authorized for {identity}"
            )
        # Dual use (istio's genCertTemplateFromCSR): a CSR with a subject CommonName gets CN = the identity,
        # when it fits RFC 5280's 64-character bound (DualUseCommonName); otherwise the subject stays empty.
        dual_use = bool(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)) and len(sid.uri) <= 64
        cert = self._issue(
            public_key, ttl=self.workload_ttl(ttl), uris=[sid.uri], common_name=sid.uri if dual_use else None
        )
        self.issued += 1
        return CertBundle(cert_pem(cert) + self._chain_pem, self._root_pem, cert.not_valid_after_utc)

    def issue_server_certificate(
        self,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        *,
        ttl: dt.timedelta = DEFAULT_SERVER_CERT_TTL,
        key_type: KeyType = "ec",
    ) -> tuple[bytes, bytes]:
        """A serving certificate for the control plane's TLS port (istiod's ``istiod.istio-system.svc``
        DNS cert): returns (cert chain PEM, private key PEM). Not bound by the workload TTL limits."""
        key = generate_key(key_type)
        cert = self._issue(key.public_key(), ttl=ttl, dns_names=dns_names, ips=ip_addresses)
        return cert_pem(cert) + self._chain_pem, key_pem(key)

    def _issue(
        self,
        public_key: object,
        *,
        ttl: dt.timedelta,
        uris: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
        common_name: str | None = None,
    ) -> x509.Certificate:
        now = _utcnow()
        not_after = min(now + ttl, self.signing_cert.not_valid_after_utc)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.DNSName(d) for d in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if not names:
            raise ValueError("a certificate needs at least one subject alternative name")
        issuer_ski = x509.SubjectKeyIdentifier.from_public_key(self.signing_cert.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
            )
            .issuer_name(self.signing_cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW_GRACE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            # An empty subject makes the SAN extension critical (RFC 5280 §4.2.1.6); Istio's
            # BuildSANExtension marks it critical always, dual-use CN or not.
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
            )
        )
        return builder.sign(self._key, hashes.SHA256())

    # -- verification (diagnostics and tests) ----------------------------------------------------

    def verify_workload_certificate(
        self, chain_pem: bytes | str, *, at: dt.datetime | None = None
    ) -> SpiffeId:
        """Check that `chain_pem` (leaf first) chains up to this CA's roots and is valid at `at` (now):
        returns the leaf's SPIFFE identity. Raises CaError otherwise."""
        try:
            certs = load_certs(chain_pem)
        except ValueError as e:
            raise CaError(f"unreadable certificate chain: {e}") from e
        leaf = certs[0]
        when = at or _utcnow()
        if not (leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc):
            raise CaError(
                f"certificate not valid at {when:%Y-%m-%dT%H:%M:%SZ} "
                f"({leaf.not_valid_before_utc:%H:%M:%S}..{leaf.not_valid_after_utc:%H:%M:%S})"
            )
        path = [leaf, *certs[1:]]
        for child, parent in zip(path, path[1:], strict=False):
            if not _issued_by(child, parent):
                raise CaError("certificate chain broken")
        if not any(_issued_by(path[-1], r) for r in self.roots):
            raise CaError("certificate not issued by this CA")
        uris = [n for n in csr_subject_alt_names(leaf) if n.startswith("spiffe://")]
        if len(uris) != 1:
            raise CaError(f"certificate has {len(uris)} SPIFFE URI SANs")
        return parse_spiffe_id(uris[0])


def csr_subject_alt_names(obj: x509.CertificateSigningRequest | x509.Certificate) -> list[str]:
    """The SANs of a CSR or certificate as strings: URIs as is, ``DNS:name``, ``IP:addr``, ``email:x``."""
    try:
        san = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for name in san:
        if isinstance(name, x509.UniformResourceIdentifier):
            out.append(name.value)
        elif isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        else:
            out.append(f"{type(name).__name__}:{name.value!r}")
    return out
