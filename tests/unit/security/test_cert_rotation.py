"""When the agent rotates, and how it backs off; the CSR it sends."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from isthmus.agent.certs import (
    WorkloadCertificate,
    build_csr,
    new_key_and_csr,
    retry_delay,
    rotation_time,
)
from isthmus.security.ca import CertificateAuthority, generate_key
from isthmus.security.identity import InvalidIdentity

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
ID = "spiffe://cluster.local/ns/default/sa/a"


def test_rotates_half_way_by_default() -> None:
    assert rotation_time(T0, T0 + dt.timedelta(hours=24)) == T0 + dt.timedelta(hours=12)
    assert rotation_time(T0, T0 + dt.timedelta(seconds=4)) == T0 + dt.timedelta(seconds=2)


def test_configurable_ratio() -> None:
    end = T0 + dt.timedelta(hours=10)
    assert rotation_time(T0, end, 0.8) == T0 + dt.timedelta(hours=8)
    assert rotation_time(T0, end, 1.0) == end
    assert rotation_time(T0, end, 0.0) == T0  # Istio's grace period ratio 1: rotate at once
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            rotation_time(T0, end, bad)


def test_jitter_spreads_within_bounds() -> None:
    end = T0 + dt.timedelta(seconds=1000)
    assert rotation_time(T0, end, 0.5, 0.01, rand=lambda: 0.0) == T0 + dt.timedelta(seconds=490)
    assert rotation_time(T0, end, 0.5, 0.01, rand=lambda: 1.0) == T0 + dt.timedelta(seconds=510)
    assert rotation_time(T0, end, 0.5, 0.01, rand=lambda: 0.5) == T0 + dt.timedelta(seconds=500)
    # Clamped to the lifetime.
    assert rotation_time(T0, end, 1.0, 0.2, rand=lambda: 1.0) == end
    with pytest.raises(ValueError):
        rotation_time(T0, end, 0.5, -1)


def test_expired_or_empty_lifetime_rotates_at_once() -> None:
    assert rotation_time(T0, T0) == T0
    assert rotation_time(T0, T0 - dt.timedelta(seconds=5)) == T0


def test_lifetime_counts_from_receipt_not_from_backdated_not_before() -> None:
    ca = CertificateAuthority.create_self_signed(key_type="ec")
    key_pem_bytes, csr = new_key_and_csr(ID)
    bundle = ca.sign_csr(csr, identity=ID, ttl=dt.timedelta(seconds=60))
    received = dt.datetime.now(dt.UTC)
    cert = WorkloadCertificate.from_bundle(ID, bundle, key_pem_bytes, received)
    assert cert.not_before < received - dt.timedelta(minutes=1)  # backdated 2 minutes
    assert cert.rotation_time() == received + (cert.not_after - received) / 2
    assert cert.lifetime <= dt.timedelta(seconds=60)
    assert cert.serial_number == bundle.leaf.serial_number


def test_backoff() -> None:
    assert [retry_delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert retry_delay(0, initial=0.01, maximum=0.05) == 0.01
    assert retry_delay(10, initial=0.01, maximum=0.05) == 0.05


def test_csr_carries_only_the_spiffe_id() -> None:
    key = generate_key("ec")
    csr = x509.load_pem_x509_csr(build_csr(key, ID))
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([])
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(ID)]
    with pytest.raises(InvalidIdentity):
        build_csr(key, "spiffe://cluster.local/not/an/identity")
