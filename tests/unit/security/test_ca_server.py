"""The CA service: tokens, authorization, Istio's wire format, gRPC over TLS and over a unix socket."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from isthmus.agent.certs import build_csr
from isthmus.security.ca import CertBundle, CertificateAuthority, generate_key, load_certs
from isthmus.security.ca_server import (
    METHOD_PATH,
    CaAuthenticationError,
    CaClient,
    CaInvalidRequest,
    CaPermissionError,
    CaServer,
    CaService,
    CaUnavailable,
    IstioCertificateRequest,
    IstioCertificateResponse,
    LocalCaClient,
    PodIdentity,
    TokenRegistry,
)

ID_A = "spiffe://cluster.local/ns/default/sa/a"
ID_B = "spiffe://cluster.local/ns/default/sa/b"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed(key_type="ec")


# -- tokens ---------------------------------------------------------------------------------------


def test_tokens_issue_lookup_revoke() -> None:
    tokens = TokenRegistry()
    t1 = tokens.issue("a-0", "default", "a")
    t2 = tokens.issue("a-0", "prod", "a")
    assert t1 != t2 and len(t1) >= 40
    assert tokens.lookup(t1) == PodIdentity("a-0", "default", "a")
    assert tokens.lookup(t2) == PodIdentity("a-0", "prod", "a")
    assert tokens.lookup("") is None and tokens.lookup("nope") is None
    assert tokens.revoke("a-0", "default")
    assert tokens.lookup(t1) is None and tokens.lookup(t2) is not None
    assert tokens.revoke("a-0")  # every namespace
    assert tokens.lookup(t2) is None and len(tokens) == 0
    assert not tokens.revoke("a-0")


def test_reissuing_replaces_the_old_token() -> None:
    tokens = TokenRegistry()
    old = tokens.issue("a-0", "default", "a")
    new = tokens.issue("a-0", "default", "a")
    assert tokens.lookup(old) is None and tokens.lookup(new) is not None
    with pytest.raises(ValueError):
        tokens.issue("a-0", "default", "Bad_SA")


# -- the service ----------------------------------------------------------------------------------


def test_service_signs_only_the_token_identity(ca: CertificateAuthority) -> None:
    tokens = TokenRegistry()
    service = CaService(ca, tokens)
    token = tokens.issue("a-0", "default", "a")
    key = generate_key()
    chain = service.create_certificate(token, build_csr(key, ID_A), 3600)
    bundle = CertBundle.from_istio_chain(chain)
    assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID_A
    assert len(chain) == 2 and chain[-1] == ca.root_cert_pem.decode()

    with pytest.raises(
        CaPermissionError, match="pod default/a-0 may only get spiffe://cluster.local/ns/default/sa/a"
    ):
        service.create_certificate(token, build_csr(key, ID_B))
    with pytest.raises(CaAuthenticationError, match="no bearer token"):
        service.create_certificate(None, build_csr(key, ID_A))
    with pytest.raises(CaAuthenticationError, match="unknown or revoked"):
        service.create_certificate("forged", build_csr(key, ID_A))
    tokens.revoke("a-0")
    with pytest.raises(CaAuthenticationError, match="unknown or revoked"):
        service.create_certificate(token, build_csr(key, ID_A))
    assert (service.signed, service.refused) == (1, 4)


def test_service_invalid_requests(ca: CertificateAuthority) -> None:
    tokens = TokenRegistry()
    service = CaService(ca, tokens)
    token = tokens.issue("a-0", "default", "a")
    with pytest.raises(CaInvalidRequest, match="CSR signing error"):
        service.create_certificate(token, "not a csr")
    with pytest.raises(CaInvalidRequest, match="max allowed TTL"):
        service.create_certificate(token, build_csr(generate_key(), ID_A), 365 * 86400)


def test_local_client(ca: CertificateAuthority) -> None:
    tokens = TokenRegistry()
    client = LocalCaClient(CaService(ca, tokens), tokens.issue("b-1", "default", "b"))
    bundle = asyncio.run(client.sign_csr(build_csr(generate_key(), ID_B), ttl=dt.timedelta(seconds=10)))
    assert bundle.leaf.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=10)


# -- wire format ----------------------------------------------------------------------------------


def test_messages_use_istio_field_numbers() -> None:
    req = IstioCertificateRequest(csr="C", validity_duration=7)
    req.metadata.update({"ClusterID": "Kubernetes"})
    raw = req.SerializeToString()
    # csr: field 1 (string); validity_duration: field 3 (varint); metadata: field 4 (Struct).
    assert raw.startswith(b"\x0a\x01C\x18\x07\x22")
    assert raw[6] == len(raw) - 7
    assert struct_pb2.Struct.FromString(raw[7:])["ClusterID"] == "Kubernetes"
    resp = IstioCertificateResponse(cert_chain=["a", "b"])
    assert resp.SerializeToString() == b"\x0a\x01a\x0a\x01b"
    assert METHOD_PATH == "/istio.v1.auth.IstioCertificateService/CreateCertificate"


# -- over gRPC --------------------------------------------------------------------------------------


def test_grpc_over_tls(ca: CertificateAuthority) -> None:
    async def scenario() -> None:
        tokens = TokenRegistry()
        server = CaServer(ca, tokens)
        target = await server.start("127.0.0.1", 0)
        try:
            assert server.tls and target == f"127.0.0.1:{server.port}"
            serving = load_certs(server.serving_cert_pem or b"")[0]
            serving.verify_directly_issued_by(ca.signing_cert)  # agents verify it with the mesh root

            good = CaClient(target, tokens.issue("a-0", "default", "a"), root_cert_pem=ca.root_cert_pem)
            bundle = await good.sign_csr(build_csr(generate_key(), ID_A), ttl=dt.timedelta(minutes=5))
            assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID_A
            remaining = bundle.not_after - dt.datetime.now(dt.UTC)
            assert dt.timedelta(minutes=4) < remaining <= dt.timedelta(minutes=5)
            # The DNS name of istiod is in the serving certificate too.
            by_name = CaClient(
                target,
                tokens.issue("a-1", "default", "a"),
                root_cert_pem=ca.root_cert_pem,
                server_name="istiod.istio-system.svc",
            )
            await by_name.sign_csr(build_csr(generate_key(), ID_A))

            with pytest.raises(CaPermissionError, match="may only get"):
                await good.sign_csr(build_csr(generate_key(), ID_B))
            bad = CaClient(target, "forged-token", root_cert_pem=ca.root_cert_pem)
            with pytest.raises(CaAuthenticationError, match="authenticate failure") as info:
                await bad.sign_csr(build_csr(generate_key(), ID_A))
            assert info.value.code == "UNAUTHENTICATED"
            # A client that does not trust the mesh root cannot talk to the CA.
            other = CertificateAuthority.create_self_signed(key_type="ec")
            untrusting = CaClient(target, "x", root_cert_pem=other.root_cert_pem, timeout=2)
            with pytest.raises(CaUnavailable):
                await untrusting.sign_csr(build_csr(generate_key(), ID_A))
            for client in (good, by_name, bad, untrusting):
                await client.close()
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_grpc_over_unix_socket(ca: CertificateAuthority, tmp_path: Path) -> None:
    async def scenario() -> None:
        tokens = TokenRegistry()
        server = CaServer(ca, tokens)
        path = tmp_path / "ca.sock"
        target = await server.start(unix_path=path)
        try:
            assert target == f"unix:{path}" and not server.tls
            assert (path.stat().st_mode & 0o777) == 0o600
            client = CaClient(target, tokens.issue("b-0", "default", "b"))
            bundle = await client.sign_csr(build_csr(generate_key(), ID_B))
            assert ca.verify_workload_certificate(bundle.cert_chain_pem).uri == ID_B
            await client.close()

            # The raw RPC, as an istio-agent would send it (Bearer token in the metadata).
            async with grpc.aio.insecure_channel(target) as channel:
                call = channel.unary_unary(
                    METHOD_PATH,
                    request_serializer=IstioCertificateRequest.SerializeToString,
                    response_deserializer=IstioCertificateResponse.FromString,
                )
                token = tokens.issue("b-1", "default", "b")
                resp = await call(
                    IstioCertificateRequest(
                        csr=build_csr(generate_key(), ID_B).decode(), validity_duration=60
                    ),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
                assert len(resp.cert_chain) == 2
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(IstioCertificateRequest(csr="x"))
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop()
        assert not path.exists()

    asyncio.run(scenario())


def test_start_arguments(ca: CertificateAuthority) -> None:
    async def scenario() -> None:
        server = CaServer(ca, TokenRegistry())
        with pytest.raises(ValueError):
            await server.start()
        with pytest.raises(ValueError):
            await server.start("127.0.0.1", 0, unix_path="/tmp/x.sock")

    asyncio.run(scenario())
