"""The node agent's SDS server, driven by an in-test SDS client over its unix socket (as Envoy would)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.rpc import status_pb2

from isthmus.agent.certs import build_csr
from isthmus.agent.sds import MAX_SOCKET_PATH, SdsAgent, SdsError
from isthmus.security.ca import CertBundle, CertificateAuthority, cert_pem, generate_key, key_pem, load_certs
from isthmus.security.ca_server import CaService, CaUnavailable, LocalCaClient, TokenRegistry
from isthmus.security.sds import SECRET_TYPE_URL, file_cert_name, file_root_name

ID = "spiffe://cluster.local/ns/default/sa/a"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed(key_type="ec")


def local_client(ca: CertificateAuthority, sa: str = "a") -> LocalCaClient:
    tokens = TokenRegistry()
    return LocalCaClient(CaService(ca, tokens), tokens.issue(f"{sa}-0", "default", sa))


class FakeEnvoy:
    """One SDS stream, as Envoy's gRPC mux drives it."""

    def __init__(self, path: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{path}")
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self.call = sds_pb2_grpc.SecretDiscoveryServiceStub(self.channel).StreamSecrets(self._requests())
        self.reader = asyncio.create_task(self._read())
        self.first = True

    async def _requests(self):  # type: ignore[no-untyped-def]
        while (req := await self.requests.get()) is not None:
            yield req

    async def _read(self) -> None:
        async for resp in self.call:
            await self.responses.put(resp)

    async def send(
        self, names: Sequence[str], *, nonce: str = "", version: str = "", error: str | None = None
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=SECRET_TYPE_URL, resource_names=list(names), response_nonce=nonce, version_info=version
        )
        if self.first:
            req.node.id = "sidecar~127.1.0.2~a-0.default~default.svc.cluster.local"
            self.first = False
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        await self.requests.put(req)

    async def recv(self, timeout: float = 5.0) -> tuple[discovery_pb2.DiscoveryResponse, dict[str, Any]]:
        resp = await asyncio.wait_for(self.responses.get(), timeout)
        assert resp.type_url == SECRET_TYPE_URL
        secrets = {}
        for res in resp.resources:
            assert res.type_url == SECRET_TYPE_URL
            secret = secret_pb2.Secret.FromString(res.value)
            secrets[secret.name] = secret
        return resp, secrets

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, names: Sequence[str]) -> None:
        await self.send(names, nonce=resp.nonce, version=resp.version_info)

    async def expect_nothing(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert self.responses.empty(), "unexpected SDS response"

    async def close(self) -> None:
        await self.requests.put(None)
        self.call.cancel()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.channel.close()


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout))


async def wait_until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _matches(chain: bytes, key: bytes) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    private = serialization.load_pem_private_key(key, None)
    return private.public_key().public_bytes(*fmt) == load_certs(chain)[0].public_key().public_bytes(*fmt)


# -- tests --------------------------------------------------------------------------------------------


def test_serves_default_and_rootca_and_handles_acks(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca), tmp_path / "pod")
        path = await agent.start()
        envoy = FakeEnvoy(path)
        try:
            assert path == str(tmp_path / "pod" / "sds.sock")
            assert (Path(path).stat().st_mode & 0o777) == 0o600
            cert = agent.current_certificate()
            assert cert is not None and agent.stats.certificates_issued == 1

            await envoy.send(["default", "ROOTCA"])
            resp, secrets = await envoy.recv()
            assert set(secrets) == {"default", "ROOTCA"}
            tls = secrets["default"].tls_certificate
            assert tls.certificate_chain.inline_bytes == cert.cert_chain_pem
            assert tls.private_key.inline_bytes == cert.private_key_pem
            assert _matches(tls.certificate_chain.inline_bytes, tls.private_key.inline_bytes)
            assert ca.verify_workload_certificate(tls.certificate_chain.inline_bytes).uri == ID
            assert secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes == ca.root_cert_pem
            assert resp.nonce and resp.version_info

            await envoy.ack(resp, ["default", "ROOTCA"])
            await envoy.expect_nothing()  # an ACK asks for nothing new
            assert await agent.wait_for_ack("default", timeout=2) == agent.version("default")
            assert agent.acked_version("ROOTCA") == agent.version("ROOTCA")
            status = agent.status()
            assert status["streams"][0]["node"].startswith("sidecar~127.1.0.2~a-0.default")
            assert status["certificate"]["serialNumber"] == f"{cert.serial_number:x}"
            assert agent.stats.acks == 1 and agent.stats.pushes == 1
        finally:
            await envoy.close()
            await agent.stop()
        assert not Path(path).exists()

    run(scenario)


def test_rotate_now_pushes_a_new_key_and_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca), tmp_path)
        # Envoy opens one stream per secret (one SdsApi per name): ROOTCA's stream must stay quiet.
        default, root = FakeEnvoy(await agent.start()), FakeEnvoy(str(agent.socket_path))
        try:
            await default.send(["default"])
            await root.send(["ROOTCA"])
            r1, s1 = await default.recv()
            rr, _ = await root.recv()
            await default.ack(r1, ["default"])
            await root.ack(rr, ["ROOTCA"])
            old = agent.current_certificate()

            new = await agent.rotate_now()
            r2, s2 = await default.recv()
            assert int(r2.version_info) > int(r1.version_info) and r2.nonce != r1.nonce
            assert s2["default"].tls_certificate.certificate_chain.inline_bytes == new.cert_chain_pem
            assert new.serial_number != old.serial_number
            assert new.private_key_pem != old.private_key_pem  # a new key every time
            await root.expect_nothing()
            await default.ack(r2, ["default"])
            await agent.wait_for_ack("default", timeout=2)
            assert agent.stats.rotations == 1 and agent.stats.certificates_issued == 2
            assert agent.stats.last_rotation_at is not None
        finally:
            await default.close()
            await root.close()
            await agent.stop()

    run(scenario)


def test_scheduled_rotation(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca), tmp_path, ttl=dt.timedelta(seconds=2), rotation_jitter=0)
        envoy = FakeEnvoy(await agent.start())
        try:
            first = agent.current_certificate()
            assert agent.rotate_at is not None and first is not None
            assert agent.rotate_at == first.issued_at + (first.not_after - first.issued_at) / 2
            await envoy.send(["default"])
            r1, _ = await envoy.recv()
            await envoy.ack(r1, ["default"])
            r2, s2 = await envoy.recv(timeout=5)  # pushed unasked, before the first one expired
            received = dt.datetime.now(dt.UTC)
            assert received < first.not_after
            assert agent.stats.rotations >= 1
            leaf = load_certs(s2["default"].tls_certificate.certificate_chain.inline_bytes)[0]
            assert leaf.serial_number != first.serial_number
        finally:
            await envoy.close()
            await agent.stop()

    run(scenario)


def test_nack_is_recorded_and_not_answered(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca), tmp_path)
        envoy = FakeEnvoy(await agent.start())
        try:
            await envoy.send(["default"])
            resp, _ = await envoy.recv()
            await envoy.send(["default"], nonce=resp.nonce, error="bad certificate")
            await envoy.expect_nothing()
            assert agent.stats.nacks == 1 and agent.stats.last_nack == "bad certificate"
            assert agent.acked_version("default") is None
            # A stale nonce is ignored.
            await envoy.send(["default"], nonce="stale")
            await envoy.expect_nothing()
        finally:
            await envoy.close()
            await agent.stop()

    run(scenario)


def test_file_secrets_are_served_and_reloaded(ca: CertificateAuthority, tmp_path: Path) -> None:
    def issue(name: str) -> tuple[bytes, bytes]:
        key = generate_key()
        bundle = ca.sign_csr(
            build_csr(key, f"spiffe://cluster.local/ns/default/sa/{name}"),
            identity=f"spiffe://cluster.local/ns/default/sa/{name}",
        )
        return bundle.cert_chain_pem, key_pem(key)

    async def scenario() -> None:
        cert_file, key_file, root_file = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
        chain1, key1 = issue("one")
        cert_file.write_bytes(chain1)
        key_file.write_bytes(key1)
        agent = SdsAgent(ID, local_client(ca), tmp_path / "pod", file_poll_interval=0.05)
        envoy = FakeEnvoy(await agent.start())
        cert_name, root_name = file_cert_name(str(cert_file), str(key_file)), file_root_name(str(root_file))
        try:
            await envoy.send([cert_name, root_name])
            resp, secrets = await envoy.recv()
            # The root file does not exist yet: only the certificate is served.
            assert set(secrets) == {cert_name}
            assert secrets[cert_name].tls_certificate.certificate_chain.inline_bytes == chain1
            assert "ca.crt" in (agent.stats.last_error or "")
            # What status and `apply --wait` show: the secret Envoy waits for, and why
            assert agent.waiting() == {root_name: f"cannot read {root_file}: No such file or directory"}
            await envoy.ack(resp, [cert_name, root_name])

            root_file.write_bytes(ca.root_cert_pem)
            resp, secrets = await envoy.recv()
            assert secrets[root_name].validation_context.trusted_ca.inline_bytes == ca.root_cert_pem
            assert agent.waiting() == {}
            await envoy.ack(resp, [cert_name, root_name])

            chain2, key2 = issue("two")
            key_file.write_bytes(key2)  # key first: until the cert matches, nothing is served
            cert_file.write_bytes(chain2)
            resp, secrets = await envoy.recv()
            while secrets[cert_name].tls_certificate.certificate_chain.inline_bytes != chain2:
                await envoy.ack(resp, [cert_name, root_name])
                resp, secrets = await envoy.recv()
            assert secrets[cert_name].tls_certificate.private_key.inline_bytes == key2
        finally:
            await envoy.close()
            await agent.stop()

    run(scenario)


def test_runner_provided_secrets(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca), tmp_path)
        envoy = FakeEnvoy(await agent.start())
        try:
            await envoy.send(["kubernetes://gw-cred"])
            await envoy.expect_nothing()  # unknown yet: Envoy keeps waiting (initial_fetch_timeout 0s)
            assert agent.waiting() == {"kubernetes://gw-cred": ""}  # the agent knows no reason
            key = generate_key()
            other = CertificateAuthority.create_self_signed(key_type="ec")
            bundle: CertBundle = other.sign_csr(
                build_csr(key, "spiffe://cluster.local/ns/istio-system/sa/gw"),
                identity="spiffe://cluster.local/ns/istio-system/sa/gw",
            )
            with pytest.raises(ValueError, match="does not match"):
                agent.add_secret("kubernetes://gw-cred", bundle.cert_chain_pem, key_pem(generate_key()))
            agent.add_secret("kubernetes://gw-cred", bundle.cert_chain_pem, key_pem(key))
            resp, secrets = await envoy.recv()
            assert set(secrets) == {"kubernetes://gw-cred"}
            await envoy.send(["kubernetes://gw-cred", "kubernetes://gw-cred-cacert"], nonce=resp.nonce)
            agent.add_root("kubernetes://gw-cred-cacert", cert_pem(other.signing_cert))
            resp, secrets = await envoy.recv()
            while set(secrets) != {"kubernetes://gw-cred", "kubernetes://gw-cred-cacert"}:
                await envoy.ack(resp, ["kubernetes://gw-cred", "kubernetes://gw-cred-cacert"])
                resp, secrets = await envoy.recv()
            assert "kubernetes://gw-cred" in agent.secret_names()
            assert agent.remove_secret("kubernetes://gw-cred")
            with pytest.raises(ValueError):
                agent.remove_secret("default")
        finally:
            await envoy.close()
            await agent.stop()

    run(scenario)


def test_start_fails_clearly_without_a_valid_token(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        client = LocalCaClient(CaService(ca, TokenRegistry()), "forged")
        agent = SdsAgent(ID, client, tmp_path, retry_initial=0.01, retry_max=0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(SdsError, match="the CA refused the request: request authenticate failure"):
            await agent.start(timeout=10)
        assert loop.time() - t0 < 2  # a refusal is final: no waiting for the timeout
        assert agent.stats.renew_failures >= 1
        assert not agent.socket_path.exists()

    run(scenario)


def test_another_identity_is_refused_by_the_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = SdsAgent(ID, local_client(ca, sa="b"), tmp_path, retry_initial=0.01, retry_max=0.05)
        with pytest.raises(SdsError, match="may only get spiffe://cluster.local/ns/default/sa/b"):
            await agent.start(timeout=10)

    run(scenario)


def test_transient_ca_failures_are_retried(ca: CertificateAuthority, tmp_path: Path) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.inner = local_client(ca)
            self.calls = 0

        async def sign_csr(self, csr_pem: bytes, *, ttl: dt.timedelta | None = None) -> CertBundle:
            self.calls += 1
            if self.calls <= 2:
                raise CaUnavailable("temporarily broken")
            return await self.inner.sign_csr(csr_pem, ttl=ttl)

    async def scenario() -> None:
        flaky = Flaky()
        agent = SdsAgent(ID, flaky, tmp_path, retry_initial=0.01, retry_max=0.05)
        await agent.start(timeout=5)
        try:
            assert flaky.calls == 3
            assert agent.stats.renew_failures == 2 and agent.stats.last_error == "temporarily broken"
            assert agent.current_certificate() is not None
        finally:
            await agent.stop()

    run(scenario)


def test_background_start_and_long_workdir(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        workdir = tmp_path / ("x" * 60) / ("y" * 60)
        agent = SdsAgent(ID, local_client(ca), workdir)
        assert len(os.fsencode(str(agent.socket_path))) <= MAX_SOCKET_PATH
        assert agent.socket_path != workdir / "sds.sock"
        path = await agent.start(wait_for_certificate=False)
        envoy = FakeEnvoy(path)
        try:
            await envoy.send(["default"])
            _, secrets = await envoy.recv()  # answered as soon as the first certificate arrives
            assert "default" in secrets
        finally:
            await envoy.close()
            await agent.stop()
        assert not Path(path).exists()

    run(scenario)


def test_rejects_bad_arguments(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SdsAgent("not-an-id", local_client(ca), tmp_path)
    with pytest.raises(ValueError):
        SdsAgent(ID, local_client(ca), tmp_path, rotation_ratio=0)
