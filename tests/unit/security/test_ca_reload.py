"""Reloading a plug-in CA while the mesh runs (istiod's cacerts watch: handleCACertsFileWatch/handleEvent).

The CA level: a valid bundle replaces the old one, a broken or half-written one is refused and the CA
keeps signing with the old one, and the root may only grow or shrink (istiod's multi-root rule). The mesh
level (`MeshSecurity`, its CA server over TLS and a pod's SDS agent, with an in-test Envoy): the watched
directory's change reaches the pod's ROOTCA and re-signs its workload certificate with the new signing
certificate, over a CA connection that follows the new roots, through Istio's three rotation steps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_sds_agent import FakeEnvoy, run, wait_until

from isthmus.agent.certs import build_csr
from isthmus.mesh.security import MeshSecurity
from isthmus.security.ca import (
    CaLoadError,
    CaReload,
    CertificateAuthority,
    RootChangeRefused,
    generate_key,
    load_certs,
)

ID = "spiffe://cluster.local/ns/default/sa/a"


@dataclass
class Signed:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _ca(cn: str, issuer: Signed | None = None) -> Signed:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Signed(cert, key)


@dataclass
class Pki:
    """Two roots, an intermediate under each (Istio's ca-cert.pem and ca-cert-alt.pem), and a stranger."""

    root_a: Signed
    inter_a: Signed
    root_b: Signed
    inter_b: Signed
    root_c: Signed
    inter_c: Signed


@pytest.fixture(scope="module")
def pki() -> Pki:
    a, b, c = _ca("Root A"), _ca("Root B"), _ca("Root C")
    return Pki(a, _ca("Intermediate A", a), b, _ca("Intermediate B", b), c, _ca("Intermediate C", c))


def write(ca_dir: Path, inter: Signed, root: Signed, roots: list[Signed]) -> None:
    """The cacerts layout, one file after the other (as a Secret update lands in a mount)."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "ca-cert.pem").write_bytes(inter.pem)
    (ca_dir / "ca-key.pem").write_bytes(inter.key_pem)
    (ca_dir / "cert-chain.pem").write_bytes(inter.pem + root.pem)
    (ca_dir / "root-cert.pem").write_bytes(b"".join(r.pem for r in roots))


def issuer_of_new_cert(ca: CertificateAuthority) -> x509.Name:
    return ca.sign_csr(build_csr(generate_key(), ID), identity=ID).leaf.issuer


# -- the CA -----------------------------------------------------------------------------------------


def test_reload_takes_valid_bundles_through_a_root_rotation(pki: Pki, tmp_path: Path) -> None:
    write(tmp_path, pki.inter_a, pki.root_a, [pki.root_a])
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert ca.reload() == CaReload(signing_changed=False, roots_changed=False)

    # Step 1: the combined root (A + B); the signing certificate stays.
    write(tmp_path, pki.inter_a, pki.root_a, [pki.root_a, pki.root_b])
    assert ca.reload() == CaReload(signing_changed=False, roots_changed=True)
    assert ca.roots == (pki.root_a.cert, pki.root_b.cert)
    assert ca.root_cert_pem == pki.root_a.pem + pki.root_b.pem

    # Step 2: intermediate B signs from now on; the same anchors written again with a repeated root
    # (Istio's root-cert-combined-2.pem) count as a root change, which is what re-signs workloads.
    write(tmp_path, pki.inter_b, pki.root_b, [pki.root_a, pki.root_b, pki.root_b])
    assert ca.reload() == CaReload(signing_changed=True, roots_changed=True)
    assert ca.signing_cert == pki.inter_b.cert and ca.cert_chain_pem == pki.inter_b.pem
    assert issuer_of_new_cert(ca) == pki.inter_b.cert.subject
    bundle = ca.sign_csr(build_csr(generate_key(), ID), identity=ID)
    assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID

    # Step 3: root A removed.
    write(tmp_path, pki.inter_b, pki.root_b, [pki.root_b])
    assert ca.reload() == CaReload(signing_changed=False, roots_changed=True)
    assert ca.roots == (pki.root_b.cert,)


def test_broken_bundles_are_kept_out(pki: Pki, tmp_path: Path) -> None:
    write(tmp_path, pki.inter_a, pki.root_a, [pki.root_a, pki.root_b])
    ca = CertificateAuthority.load_or_create(tmp_path)
    before = (ca.signing_cert, ca.roots, ca.root_cert_pem, ca.cert_chain_pem)

    def refused(error: type[Exception], match: str) -> None:
        with pytest.raises(error, match=match):
            ca.reload()
        assert (ca.signing_cert, ca.roots, ca.root_cert_pem, ca.cert_chain_pem) == before
        assert issuer_of_new_cert(ca) == pki.inter_a.cert.subject  # still signing with the old bundle

    # Half-written: the new certificate has landed, its key not yet.
    (tmp_path / "ca-cert.pem").write_bytes(pki.inter_b.pem)
    refused(CaLoadError, "does not match")
    # The key too, but cert-chain.pem is still the old one: the chain is broken.
    (tmp_path / "ca-key.pem").write_bytes(pki.inter_b.key_pem)
    refused(CaLoadError, "chain broken")
    # A key file in the middle of its write, and one removed.
    (tmp_path / "ca-key.pem").write_bytes(pki.inter_b.key_pem[:40])
    refused(CaLoadError, "not a readable")
    (tmp_path / "ca-key.pem").unlink()
    refused(CaLoadError, "cannot read the CA key")
    # An unreadable root bundle.
    write(tmp_path, pki.inter_b, pki.root_b, [pki.root_a, pki.root_b])
    (tmp_path / "root-cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    refused(CaLoadError, "root certificate")
    # A root swapped outright (istiod: "Updating new ROOT-CA not supported").
    write(tmp_path, pki.inter_c, pki.root_c, [pki.root_c])
    refused(RootChangeRefused, "neither contains")
    # A root removed while the signing certificate still chains up to it.
    write(tmp_path, pki.inter_a, pki.root_a, [pki.root_b])
    refused(CaLoadError, "does not lead to a root")

    # The next good write is taken (istiod retries on the next change as well).
    write(tmp_path, pki.inter_b, pki.root_b, [pki.root_a, pki.root_b])
    assert ca.reload() == CaReload(signing_changed=True, roots_changed=False)
    assert issuer_of_new_cert(ca) == pki.inter_b.cert.subject


def test_a_ca_without_directory_cannot_reload() -> None:
    with pytest.raises(CaLoadError, match="not loaded from a directory"):
        CertificateAuthority.create_self_signed(key_type="ec").reload()


# -- the mesh: CA server, agents, SDS ----------------------------------------------------------------


def _roots(secret: object) -> list[x509.Name]:
    pem = secret.validation_context.trusted_ca.inline_bytes  # type: ignore[attr-defined]
    return [c.subject for c in load_certs(pem)]


def test_reload_reaches_rootca_and_resigns_workloads(pki: Pki, tmp_path: Path) -> None:
    """Istio's TestReachability steps against one pod: each change of the watched directory is picked up,
    ROOTCA follows the root bundle, the workload certificate is re-signed (over TLS to the CA server,
    whose serving certificate follows the signing certificate), and a broken write changes nothing."""
    ca_dir = tmp_path / "state" / "ca"
    write(ca_dir, pki.inter_a, pki.root_a, [pki.root_a])
    events: list[str] = []
    security = MeshSecurity(tmp_path / "state", "cluster.local", on_event=events.append)

    async def scenario() -> None:
        await security.start("127.0.0.1", 0)
        envoy: FakeEnvoy | None = None
        try:
            path = await security.start_pod("default", "a-0", "a", tmp_path / "pod", [])
            agent = security.pods[("default", "a-0")].agent
            envoy = FakeEnvoy(path)
            await envoy.send(["default", "ROOTCA"])
            resp, secrets = await envoy.recv()
            assert _roots(secrets["ROOTCA"]) == [pki.root_a.cert.subject]
            await envoy.ack(resp, ["default", "ROOTCA"])
            state = {"default": secrets["default"], "ROOTCA": secrets["ROOTCA"]}

            async def update(write_files: Callable[[], None]) -> None:
                """Change the files, then take the agent's pushes until its new certificate."""
                reloads = security.ca_reloads
                serial = agent.current_certificate().serial_number  # type: ignore[union-attr]
                write_files()
                await wait_until("CA reload", lambda: security.ca_reloads == reloads + 1)
                while True:
                    resp, secrets = await envoy.recv()
                    state.update(secrets)
                    await envoy.ack(resp, ["default", "ROOTCA"])
                    leaf = load_certs(state["default"].tls_certificate.certificate_chain.inline_bytes)[0]
                    if leaf.serial_number != serial:
                        return

            def issuer() -> x509.Name:
                chain = state["default"].tls_certificate.certificate_chain.inline_bytes
                return load_certs(chain)[0].issuer

            # Step 1: combined root; ROOTCA gets both, the workload is re-signed (still by A).
            await update(lambda: write(ca_dir, pki.inter_a, pki.root_a, [pki.root_a, pki.root_b]))
            assert _roots(state["ROOTCA"]) == [pki.root_a.cert.subject, pki.root_b.cert.subject]
            assert issuer() == pki.inter_a.cert.subject

            # A broken write: refused, reported, nothing pushed; the CA keeps signing with A.
            (ca_dir / "ca-cert.pem").write_bytes(pki.inter_b.pem)
            await wait_until("refusal", lambda: security.ca_reload_error is not None)
            assert "does not match" in (security.ca_status()["reloadError"] or "")
            assert any("refused" in e for e in events)
            await envoy.expect_nothing()
            assert security.ca.signing_cert == pki.inter_a.cert

            # Step 2: intermediate B, combined root written again (a repeated root): re-signed by B.
            await update(lambda: write(ca_dir, pki.inter_b, pki.root_b, [pki.root_a, pki.root_b, pki.root_b]))
            assert issuer() == pki.inter_b.cert.subject
            assert _roots(state["ROOTCA"]) == [pki.root_a.cert.subject, pki.root_b.cert.subject]
            serving = load_certs(security.server.serving_cert_pem or b"")[0]
            assert serving.issuer == pki.inter_b.cert.subject
            assert security.ca_status()["reloadError"] is None

            # Step 3: root A removed; the agent reaches the CA trusting root B only.
            await update(lambda: write(ca_dir, pki.inter_b, pki.root_b, [pki.root_b]))
            assert _roots(state["ROOTCA"]) == [pki.root_b.cert.subject]
            assert security.pods[("default", "a-0")].client.root_cert_pem == pki.root_b.pem
            await agent.rotate_now()  # a CSR over a fresh TLS connection, verified with root B only
            assert agent.stats.renew_failures == 0
        finally:
            if envoy is not None:
                await envoy.close()
            await security.stop()

    run(scenario, timeout=60)


def test_a_signing_change_alone_pushes_nothing(pki: Pki, tmp_path: Path) -> None:
    """As in Istio: a new intermediate under the same, byte-identical root bundle re-issues the CA's
    serving certificate, but pushes no trust bundle, so workloads move to it on their next rotation."""
    ca_dir = tmp_path / "state" / "ca"
    write(ca_dir, pki.inter_a, pki.root_a, [pki.root_a, pki.root_b])
    security = MeshSecurity(tmp_path / "state", "cluster.local")

    async def scenario() -> None:
        await security.start("127.0.0.1", 0, watch=False)
        try:
            await security.start_pod("default", "a-0", "a", tmp_path / "pod", [])
            agent = security.pods[("default", "a-0")].agent
            issued = agent.stats.certificates_issued
            write(ca_dir, pki.inter_b, pki.root_b, [pki.root_a, pki.root_b])
            assert security.reload_ca()
            assert not security.reload_ca()  # nothing changed since
            await asyncio.sleep(0.3)
            assert agent.stats.certificates_issued == issued
            cert = await agent.rotate_now()
            assert cert.leaf.issuer == pki.inter_b.cert.subject
        finally:
            await security.stop()

    run(scenario)


def test_a_failed_watch_does_not_stop_the_shutdown(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA directory's watch can end with an error (inotify's watch limit, the directory removed):
    stop() must still stop every pod's agent and the CA server. Before, stop() re-raised the watch's
    error from `wait_for` and left the agents and the CA server running (a mesh that never exits)."""
    ca_dir = tmp_path / "state" / "ca"
    write(ca_dir, pki.inter_a, pki.root_a, [pki.root_a])
    security = MeshSecurity(tmp_path / "state", "cluster.local")

    async def broken_watch(directory: Path) -> None:
        raise OSError(28, "OS file watch limit reached")

    monkeypatch.setattr(security, "_watch_ca_dir", broken_watch)

    async def scenario() -> None:
        await security.start("127.0.0.1", 0)
        await security.start_pod("default", "a-0", "a", tmp_path / "pod", [])
        await asyncio.sleep(0)  # the watch task runs, and fails
        await security.stop()
        assert not security.pods
        assert security.server._server is None

    run(scenario)


def test_a_failed_watch_is_reported(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch that fails while the mesh runs is reported at once (event and `isthmus status`'s
    reloadError): before, it died silently and later updates of the directory were never seen."""
    import watchfiles

    ca_dir = tmp_path / "state" / "ca"
    write(ca_dir, pki.inter_a, pki.root_a, [pki.root_a])
    events: list[str] = []
    security = MeshSecurity(tmp_path / "state", "cluster.local", on_event=events.append)

    async def broken_awatch(*args: object, **kwargs: object) -> AsyncIterator[set[tuple[int, str]]]:
        raise OSError(28, "OS file watch limit reached")
        yield set()

    monkeypatch.setattr(watchfiles, "awatch", broken_awatch)

    async def scenario() -> None:
        await security.start("127.0.0.1", 0)
        try:
            await wait_until("report", lambda: security.ca_reload_error is not None)
            assert "no longer watched" in (security.ca_status()["reloadError"] or "")
            assert any("will not be picked up" in e for e in events)
        finally:
            await security.stop()

    run(scenario)
