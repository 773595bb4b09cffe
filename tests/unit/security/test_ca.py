"""The CA: root creation/persistence/reload, plug-in certificates, workload CSR signing."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from isthmus.agent.certs import build_csr
from isthmus.security.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_CHAIN_FILE,
    CLOCK_SKEW_GRACE,
    ROOT_CERT_FILE,
    CaError,
    CaLoadError,
    CertBundle,
    CertificateAuthority,
    CsrError,
    IdentityMismatch,
    TtlError,
    cert_pem,
    generate_key,
    key_pem,
    load_certs,
)

ID = "spiffe://cluster.local/ns/default/sa/reviews"
OTHER = "spiffe://cluster.local/ns/default/sa/ratings"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _csr(key, sans: list[x509.GeneralName] | None, *, subject: x509.Name | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _ca_cert(
    name: str,
    key,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key=None,
    ca: bool = True,
    days: int = 365,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment"), False
        )
        usage |= dict.fromkeys(("key_agreement", "encipher_only", "decipher_only"), False)
        builder = builder.add_extension(
            x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


# -- creation, persistence, reload --------------------------------------------------------------------


def test_self_signed_root_is_istio_like(ca: CertificateAuthority) -> None:
    root = ca.signing_cert
    assert ca.self_signed and ca.created
    assert isinstance(root.public_key(), rsa.RSAPublicKey) and root.public_key().key_size == 2048
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster.local"
    assert root.issuer == root.subject
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert ca.root_cert_pem == cert_pem(root)
    assert ca.cert_chain_pem == b""


def test_load_or_create_persists_and_reloads(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    first = CertificateAuthority.load_or_create(d, trust_domain="corp.example")
    assert first.created
    assert {p.name for p in d.iterdir()} == {CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE}
    assert stat.S_IMODE((d / CA_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert first.trust_domain == "corp.example"
    assert first.signing_cert.subject.rfc4514_string() == "O=corp.example"

    again = CertificateAuthority.load_or_create(d, trust_domain="corp.example")
    assert not again.created
    assert again.root_cert_pem == first.root_cert_pem
    # A certificate issued before the "restart" verifies against the reloaded CA.
    key = generate_key()
    bundle = first.sign_csr(
        build_csr(key, "spiffe://corp.example/ns/a/sa/b"), identity="spiffe://corp.example/ns/a/sa/b"
    )
    assert again.verify_workload_certificate(bundle.cert_chain_pem).uri == "spiffe://corp.example/ns/a/sa/b"


def test_load_rejects_inconsistent_files(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    CertificateAuthority.load_or_create(d)
    (d / CA_KEY_FILE).write_bytes(key_pem(generate_key("ec")))  # not the certificate's key
    with pytest.raises(CaLoadError, match="does not match"):
        CertificateAuthority.load_or_create(d)
    (d / CA_KEY_FILE).write_bytes(b"garbage")
    with pytest.raises(CaLoadError, match="not a readable"):
        CertificateAuthority.load_or_create(d)
    with pytest.raises(CaLoadError, match="cannot read"):
        CertificateAuthority.load(tmp_path / "missing.pem", tmp_path / "missing.key")


def test_load_rejects_a_non_ca_certificate(tmp_path: Path) -> None:
    key = generate_key("ec")
    leaf = _ca_cert("not-a-ca", key, ca=False)
    (tmp_path / "c.pem").write_bytes(cert_pem(leaf))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    with pytest.raises(CaLoadError, match="not a CA"):
        CertificateAuthority.load_or_create(
            tmp_path, root_cert_file=tmp_path / "c.pem", root_key_file=tmp_path / "k.pem"
        )


# -- plug-in CA ----------------------------------------------------------------------------------------


def test_plugin_root_from_user_files(tmp_path: Path) -> None:
    key = generate_key("ec")
    root = _ca_cert("My Root", key)
    (tmp_path / "root.pem").write_bytes(cert_pem(root))
    (tmp_path / "root.key").write_bytes(key_pem(key))
    state = tmp_path / "state"
    ca = CertificateAuthority.load_or_create(
        state, root_cert_file=tmp_path / "root.pem", root_key_file=tmp_path / "root.key"
    )
    assert not ca.created and ca.self_signed
    assert ca.root_cert_pem == cert_pem(root)
    assert not state.exists(), "a user-supplied CA is never copied"
    bundle = ca.sign_csr(build_csr(generate_key(), ID), identity=ID)
    assert bundle.leaf.issuer == root.subject
    assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID


def test_plugin_intermediate_with_chain(tmp_path: Path) -> None:
    root_key, int_key = generate_key("ec"), generate_key("ec")
    root = _ca_cert("Root", root_key)
    inter = _ca_cert("Intermediate", int_key, issuer=root, issuer_key=root_key)
    # Istio's cacerts layout.
    (tmp_path / CA_CERT_FILE).write_bytes(cert_pem(inter))
    (tmp_path / CA_KEY_FILE).write_bytes(key_pem(int_key))
    (tmp_path / ROOT_CERT_FILE).write_bytes(cert_pem(root))
    (tmp_path / CERT_CHAIN_FILE).write_bytes(cert_pem(inter) + cert_pem(root))
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert not ca.self_signed
    assert ca.intermediates == (inter,)
    assert ca.root_cert_pem == cert_pem(root)

    bundle = ca.sign_csr(build_csr(generate_key(), ID), identity=ID)
    chain = load_certs(bundle.cert_chain_pem)
    assert chain[1:] == [inter]  # leaf + intermediate, no root
    assert bundle.root_cert_pem == cert_pem(root)
    verified = (
        PolicyBuilder().store(Store([root])).time(_now()).build_client_verifier().verify(chain[0], chain[1:])
    )
    assert [n.value for n in verified.subjects] == [ID]
    # Istio's wire form: one PEM per chain element, roots last.
    wire = bundle.to_istio_chain()
    assert len(wire) == 3 and wire[-1] == cert_pem(root).decode()
    assert CertBundle.from_istio_chain(wire) == bundle


def test_intermediate_without_root_is_refused(tmp_path: Path) -> None:
    root_key, int_key = generate_key("ec"), generate_key("ec")
    root = _ca_cert("Root", root_key)
    inter = _ca_cert("Intermediate", int_key, issuer=root, issuer_key=root_key)
    other_root = _ca_cert("Other", generate_key("ec"))
    (tmp_path / "c.pem").write_bytes(cert_pem(inter))
    (tmp_path / "k.pem").write_bytes(key_pem(int_key))
    with pytest.raises(CaLoadError, match="no root"):
        CertificateAuthority.load(tmp_path / "c.pem", tmp_path / "k.pem")
    (tmp_path / "r.pem").write_bytes(cert_pem(other_root))
    with pytest.raises(CaLoadError, match="does not lead to a root"):
        CertificateAuthority.load(
            tmp_path / "c.pem", tmp_path / "k.pem", trust_bundle_file=tmp_path / "r.pem"
        )


# -- signing --------------------------------------------------------------------------------------------


def test_workload_certificate_fields(ca: CertificateAuthority) -> None:
    key = generate_key("ec")
    before = _now().replace(microsecond=0)
    bundle = ca.sign_csr(build_csr(key, ID), identity=ID)
    after = _now()
    leaf = bundle.leaf

    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject => critical SAN (RFC 5280), as Istio
    assert list(san.value) == [x509.UniformResourceIdentifier(ID)]
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(ca.signing_cert.public_key()).digest
    )
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    # Default lifetime 24 h, notBefore backdated by the clock-skew grace period.
    assert before + dt.timedelta(hours=24) - dt.timedelta(seconds=1) <= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc <= after + dt.timedelta(hours=24)
    assert leaf.not_valid_before_utc <= before - CLOCK_SKEW_GRACE + dt.timedelta(seconds=1)
    assert bundle.not_after == leaf.not_valid_after_utc
    assert bundle.root_cert_pem == ca.root_cert_pem
    assert leaf.signature_hash_algorithm.name == "sha256"
    # A strict RFC 5280 verifier accepts it as a client certificate.
    verified = (
        PolicyBuilder().store(Store(list(ca.roots))).time(_now()).build_client_verifier().verify(leaf, [])
    )
    assert [n.value for n in verified.subjects] == [ID]


def test_serials_are_random_and_large(ca: CertificateAuthority) -> None:
    key = generate_key()
    serials = {ca.sign_csr(build_csr(key, ID), identity=ID).leaf.serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(s.bit_length() > 100 for s in serials)


def test_requested_ttl_and_limits(ca: CertificateAuthority) -> None:
    csr = build_csr(generate_key(), ID)
    short = ca.sign_csr(csr, identity=ID, ttl=dt.timedelta(seconds=4))
    remaining = short.not_after - _now()
    assert dt.timedelta(seconds=2) <= remaining <= dt.timedelta(seconds=4)
    with pytest.raises(TtlError, match="greater than the max allowed TTL"):
        ca.sign_csr(csr, identity=ID, ttl=dt.timedelta(days=91))
    # Zero or negative means "the default".
    assert ca.sign_csr(csr, identity=ID, ttl=dt.timedelta(0)).not_after > _now() + dt.timedelta(hours=23)


def test_configured_lifetimes(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(
        tmp_path,
        key_type="ec",
        default_workload_ttl=dt.timedelta(hours=1),
        max_workload_ttl=dt.timedelta(hours=2),
    )
    csr = build_csr(generate_key(), ID)
    assert ca.sign_csr(csr, identity=ID).not_after < _now() + dt.timedelta(hours=1, seconds=1)
    with pytest.raises(TtlError):
        ca.sign_csr(csr, identity=ID, ttl=dt.timedelta(hours=3))
    # A default above the maximum is allowed, as in istiod (test_istio_pki_parity.py).


def test_lifetime_never_exceeds_the_signing_certificate(tmp_path: Path) -> None:
    key = generate_key("ec")
    root = _ca_cert("Short", key, days=1)
    (tmp_path / "c.pem").write_bytes(cert_pem(root))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    ca = CertificateAuthority.load(tmp_path / "c.pem", tmp_path / "k.pem")
    bundle = ca.sign_csr(build_csr(generate_key(), ID), identity=ID, ttl=dt.timedelta(days=30))
    assert bundle.not_after == root.not_valid_after_utc


def test_csr_for_another_identity_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(IdentityMismatch, match="only authorized for"):
        ca.sign_csr(build_csr(generate_key(), OTHER), identity=ID)
    key = generate_key()
    extra = _csr(key, [x509.UniformResourceIdentifier(ID), x509.DNSName("evil.example.com")])
    with pytest.raises(IdentityMismatch, match="DNS:evil.example.com"):
        ca.sign_csr(extra, identity=ID)
    # Identities outside the CA's trust domain are refused whatever the CSR says.
    foreign = "spiffe://other.domain/ns/default/sa/reviews"
    with pytest.raises(IdentityMismatch, match="trust domain"):
        ca.sign_csr(build_csr(key, foreign), identity=foreign)


def test_csr_without_san_gets_the_authorized_identity(ca: CertificateAuthority) -> None:
    csr = _csr(generate_key(), None, subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever")]))
    bundle = ca.sign_csr(csr, identity=ID)
    # Istio's dual use: a CSR with a CommonName gets CN = the identity (test_istio_pki_parity.py).
    assert bundle.leaf.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ID)])
    assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID


def test_bad_csrs_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CsrError, match="not a readable"):
        ca.sign_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", identity=ID
        )
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CsrError, match="1024 bits"):
        ca.sign_csr(_csr(weak, [x509.UniformResourceIdentifier(ID)]), identity=ID)
    odd_curve = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CsrError, match="curve"):
        ca.sign_csr(_csr(odd_curve, [x509.UniformResourceIdentifier(ID)]), identity=ID)


def test_csr_with_a_forged_signature_is_refused(ca: CertificateAuthority) -> None:
    # RSA signatures have a fixed length, so grafting one CSR's signature on another's body keeps a
    # well-formed DER (with a signature that does not match).
    key, other = generate_key("rsa"), generate_key("rsa")
    good = x509.load_pem_x509_csr(build_csr(key, ID))
    forged_by = x509.load_pem_x509_csr(build_csr(other, ID))
    forged = good.public_bytes(serialization.Encoding.DER).replace(good.signature, forged_by.signature)
    pem = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match="signature is invalid"):
        ca.sign_csr(pem, identity=ID)


def test_rsa_workload_keys_are_accepted(ca: CertificateAuthority) -> None:
    key = generate_key("rsa")
    bundle = ca.sign_csr(build_csr(key, ID), identity=ID)
    assert isinstance(bundle.leaf.public_key(), rsa.RSAPublicKey)


def test_verify_workload_certificate_rejects_foreign_and_expired(ca: CertificateAuthority) -> None:
    rogue = CertificateAuthority.create_self_signed(key_type="ec")
    bundle = rogue.sign_csr(build_csr(generate_key(), ID), identity=ID)
    with pytest.raises(CaError, match="not issued by this CA"):
        ca.verify_workload_certificate(bundle.cert_chain_pem)
    mine = ca.sign_csr(build_csr(generate_key(), ID), identity=ID, ttl=dt.timedelta(seconds=5))
    with pytest.raises(CaError, match="not valid at"):
        ca.verify_workload_certificate(mine.cert_chain_pem, at=_now() + dt.timedelta(minutes=1))


def test_server_certificate_for_the_ca_port(ca: CertificateAuthority) -> None:
    chain, key = ca.issue_server_certificate(["istiod.istio-system.svc"], ["127.1.0.1"])
    leaf = load_certs(chain)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.1.0.1"]
    private = serialization.load_pem_private_key(key, None)
    assert private.public_key().public_numbers() == leaf.public_key().public_numbers()


def test_from_istio_chain_validation() -> None:
    with pytest.raises(CaError, match="expected a leaf and the root"):
        CertBundle.from_istio_chain(["only one"])
    with pytest.raises(CaError, match="unreadable"):
        CertBundle.from_istio_chain(["junk", "junk"])


def test_presented_chain_ends_in_the_root(tmp_path: Path) -> None:
    """What a sidecar presents (istio-agent's certificate chain, TestSecureNaming's 3 certificates with a
    plug-in intermediate): leaf, intermediate, and the root they chain up to; other anchors of the trust
    bundle are not presented. A self-signed mesh root gives leaf + root."""
    from isthmus.agent.certs import presented_chain

    root_key, int_key, other_key = generate_key("ec"), generate_key("ec"), generate_key("ec")
    root = _ca_cert("Root", root_key)
    inter = _ca_cert("Intermediate", int_key, issuer=root, issuer_key=root_key)
    other = _ca_cert("Other root", other_key)
    (tmp_path / CA_CERT_FILE).write_bytes(cert_pem(inter))
    (tmp_path / CA_KEY_FILE).write_bytes(key_pem(int_key))
    (tmp_path / ROOT_CERT_FILE).write_bytes(cert_pem(other) + cert_pem(root))
    (tmp_path / CERT_CHAIN_FILE).write_bytes(cert_pem(inter) + cert_pem(root))
    bundle = CertificateAuthority.load_or_create(tmp_path).sign_csr(
        build_csr(generate_key(), ID), identity=ID
    )
    chain = load_certs(presented_chain(bundle))
    assert chain[1:] == [inter, root]

    self_signed = CertificateAuthority.create_self_signed(key_type="ec")
    bundle = self_signed.sign_csr(build_csr(generate_key(), ID), identity=ID)
    assert load_certs(presented_chain(bundle))[1:] == load_certs(self_signed.root_cert_pem)
