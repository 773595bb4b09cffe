"""Istio's ingress-gateway SDS integration cases, re-expressed against a real Isthmus mesh.

Sources (istio/istio): tests/integration/security/sds_ingress/ingress_test.go and util/util.go.
Every case is a Gateway selecting `istio: ingressgateway` with one HTTPS server on 443 (`credentialName`
= the case's Secret, one host), and a VirtualService routing `/<credentialName>` to the echo service `a`;
the client calls the gateway with the host as SNI and Host header and expects a status code or a failed
TLS handshake ("certificate signed by unknown authority", "connection reset by peer").

- TestSingleTlsGateway_SecretRotation: SIMPLE, TLS Secret A; rotated to B, the old CA fails, the new
  one works, without a restart.
- TestSingleMTLSGateway_ServerKeyCertRotation: MUTUAL with a separate `<name>-cacert` Secret, both
  created after the Gateway; a mismatched server key/cert fails, rotating back works.
- TestSingleMTLSGateway_CompoundSecretRotation / ...AndNotGeneric_...: one Secret with the server
  certificate and the client CA, generic keys (cert/key/cacert) and TLS keys (tls.crt/tls.key/ca.crt).
- TestTlsGateways / TestMtlsGateways (RunTestMulti*Gateways): five hosts on one port, each with its own
  credential; here each credential has its own certificate, so the test also checks which one is served
  for each SNI.
- TestMultiTlsGateway_InvalidSecret / TestMultiMtlsGateway_InvalidSecret: invalid key, invalid cert,
  mismatched key and cert, no key, no cert; invalid, missing and mismatched client CA: the handshake
  fails. Added: a host whose Secret does not exist at all, and a valid host on the same port, which
  must keep working (istiod's credential SDS config has no 0 s initial fetch timeout for that reason).
- TestMtlsGateway_CRL: a CRL in the Secret (generic key `crl`): a revoked client fails, a CRL revoking
  someone else does not, a CRL of another CA makes the client's chain unverifiable.
- Beyond the directory: MUTUAL `subjectAltNames` (the client certificate's SAN must match), and
  `credentialNames` (an ECDSA and an RSA certificate on one server; the CA comes from the first's
  `-cacert`). Deleting a Secret and creating it again with another certificate (the original
  RotateSecrets) serves the new one.

Where Isthmus departs by design: there is no Kubernetes API; Secrets are `v1 Secret` resources applied to
the mesh in the gateway's namespace (istio-system), served by the gateway's own SDS agent rather than
istiod. The gateway listens on its loopback pod address (443 is served on the Service's target port
8443). The echo backends "a" and the VM variant collapse into one workload. Certificates are made
per run (ECDSA, plus one RSA for credentialNames) instead of Istio's checked-in PEM files. QUIC is skipped.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, wait_for

pytestmark = pytest.mark.e2e

NS = "echo1"
GW_NS = "istio-system"

MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: echo1}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: echo1}
spec:
  selector: {app: a}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, namespace: echo1, labels: {app: a}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: plain, namespace: echo1}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["plain.example.com"]
"""

HANDSHAKE_FAILED = (ssl.SSLError, ConnectionError, OSError)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("sds-ingress"), MESH) as m:
        yield m


class Pki:
    """Istio's util/test_certs.go: roots A and B, a server and a client certificate under each."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.ca_a, self.ca_b = t.make_ca("Root CA A"), t.make_ca("Root CA B")
        self.server_a = t.issue(self.ca_a, ["*.example.com"])
        self.server_b = t.issue(self.ca_b, ["*.example.com"])
        self.client_a = t.issue(self.ca_a, ["client-a.example.com"], client=True)
        self.client_b = t.issue(self.ca_b, ["client-b.example.com"], client=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("sds-pki"))


# --- resources ------------------------------------------------------------------------------------


def secret(name: str, data: dict[str, bytes]) -> str:
    """A Secret in the gateway's namespace (util.go createSecret); empty values are kept, as there."""
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": GW_NS},
            "data": encoded,
        }
    )


def tls_data(server: t.Pem | None = None, ca: t.Pem | None = None) -> dict[str, bytes]:
    """A TLS Secret's keys (util.go: TLS call type, or a compound non-generic one)."""
    data = {"tls.crt": server.cert, "tls.key": server.key} if server else {}
    if ca is not None:
        data["ca.crt"] = ca.cert
    return data


def generic_data(server: t.Pem | None = None, ca: t.Pem | None = None, crl: bytes = b"") -> dict[str, bytes]:
    """A generic Secret's keys (util.go: Mtls call type): cert/key/cacert/crl, absent ones empty."""
    return {
        "cert": server.cert if server else b"",
        "key": server.key if server else b"",
        "cacert": ca.cert if ca else b"",
        "crl": crl,
    }


def gateway_config(cred: str, host: str, mode: str, **tls_extra: object) -> str:
    """util.go vsTemplate + gwTemplate."""
    tls = {"mode": mode, "credentialName": cred, **tls_extra}
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": cred, "namespace": NS},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "tls": tls, "hosts": [host]}
            ],
        },
    }
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": cred, "namespace": NS},
        "spec": {
            "hosts": [host],
            "gateways": [cred],
            "http": [
                {
                    "match": [{"uri": {"exact": f"/{cred}"}}],
                    "route": [{"destination": {"host": "a", "port": {"number": 80}}}],
                }
            ],
        },
    }
    return json.dumps(gateway) + "\n---\n" + json.dumps(vs)


# --- client -----------------------------------------------------------------------------------------


def call(
    mesh: MeshProcess, host: str, path: str, ca: t.Pem, client: t.Pem | None = None, tmp: Path | None = None
) -> tuple[int, str]:
    """HTTPS GET to the gateway's 443 with `host` as SNI and Host: (status, the served certificate's CN)."""
    ctx = ssl.create_default_context(cadata=ca.cert.decode())
    if client is not None:
        assert tmp is not None
        cert_file, key_file = tmp / "client.crt", tmp / "client.key"
        cert_file.write_bytes(client.cert)
        key_file.write_bytes(client.key)
        ctx.load_cert_chain(cert_file, key_file)
    ip, _, port = mesh.gateway_address(443).rpartition(":")
    with (
        socket.create_connection((ip, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as s,
    ):
        served = dict(item[0] for item in s.getpeercert()["subject"])["commonName"]
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), served


def expect_status(
    mesh: MeshProcess, host: str, path: str, ca: t.Pem, status: int = 200, timeout: float = 25.0, **kw: object
) -> str:
    """Istio's SendRequestOrFail with a status: retried (bounded) while the certificate propagates."""

    def attempt() -> str | None:
        try:
            code, served = call(mesh, host, path, ca, **kw)  # type: ignore[arg-type]
        except HANDSHAKE_FAILED:
            return None
        return served if code == status else None

    return wait_for(f"{status} from https://{host}{path}", attempt, timeout)


def expect_handshake_failure(
    mesh: MeshProcess, host: str, path: str, ca: t.Pem, timeout: float = 25.0, **kw: object
) -> None:
    """Istio's SendRequestOrFail with an ErrorMessage: the call fails before any HTTP status."""

    def attempt() -> bool:
        try:
            call(mesh, host, path, ca, **kw)  # type: ignore[arg-type]
        except HANDSHAKE_FAILED:
            return True
        return False

    wait_for(f"a failed TLS handshake with {host}", attempt, timeout)


def unknown_authority(mesh: MeshProcess, host: str, path: str, ca: t.Pem, **kw: object) -> None:
    """ "certificate signed by unknown authority": the client rejects the served certificate."""

    def attempt() -> bool:
        try:
            call(mesh, host, path, ca, **kw)  # type: ignore[arg-type]
        except ssl.SSLCertVerificationError:
            return True
        except HANDSHAKE_FAILED:
            return False
        return False

    wait_for(f"{host} to serve a certificate the old CA does not trust", attempt, 25.0)


# --- single gateway, rotation ---------------------------------------------------------------------


def test_single_tls_gateway_secret_rotation(mesh: MeshProcess, pki: Pki) -> None:
    cred, host = "testsingletlsgateway-secretrotation", "testsingletlsgateway-secretrotation.example.com"
    with applied(mesh, secret(cred, tls_data(pki.server_a)), gateway_config(cred, host, "SIMPLE")):
        expect_status(mesh, host, f"/{cred}", pki.ca_a)
        mesh.apply(secret(cred, tls_data(pki.server_b)))
        unknown_authority(mesh, host, f"/{cred}", pki.ca_a)  # old cert should fail
        expect_status(mesh, host, f"/{cred}", pki.ca_b)  # new cert should succeed


def test_single_mtls_gateway_server_key_cert_rotation(mesh: MeshProcess, pki: Pki, tmp_path: Path) -> None:
    """The Gateway comes first: its listener works once the Secrets exist (a separate `-cacert` one)."""
    cred, host = "testsinglemtlsgateway-serverkeycertrotation", "testsinglemtlsgateway-skcr.example.com"
    ca_cred = f"{cred}-cacert"
    client = {"client": pki.client_a, "tmp": tmp_path}
    with applied(mesh, gateway_config(cred, host, "MUTUAL")):
        try:
            mesh.apply(secret(ca_cred, generic_data(ca=pki.ca_a)))
            mesh.apply(secret(cred, generic_data(pki.server_a)))
            expect_status(mesh, host, f"/{cred}", pki.ca_a, **client)
            # mismatched key/cert should fail: the client does not trust the new server certificate.
            mesh.apply(secret(cred, generic_data(pki.server_b)))
            unknown_authority(mesh, host, f"/{cred}", pki.ca_a, **client)
            # matched key/cert should succeed
            mesh.apply(secret(cred, generic_data(pki.server_a)))
            expect_status(mesh, host, f"/{cred}", pki.ca_a, **client)
        finally:
            mesh.delete(secret(cred, {}) + "\n---\n" + secret(ca_cred, {}))


@pytest.mark.parametrize("generic", [True, False], ids=["generic", "tls-keys"])
def test_single_mtls_gateway_compound_secret_rotation(
    mesh: MeshProcess, pki: Pki, tmp_path: Path, generic: bool
) -> None:
    """One Secret holds the server certificate and the client CA (cert/key/cacert, or tls.* + ca.crt)."""
    data = generic_data if generic else tls_data
    cred = f"testsinglemtlsgateway-compound-{'generic' if generic else 'tls'}"
    host = f"{cred}.example.com"
    with applied(mesh, secret(cred, data(pki.server_a, pki.ca_a)), gateway_config(cred, host, "MUTUAL")):
        expect_status(mesh, host, f"/{cred}", pki.ca_a, client=pki.client_a, tmp=tmp_path)
        mesh.apply(secret(cred, data(pki.server_b, pki.ca_b)))
        unknown_authority(mesh, host, f"/{cred}", pki.ca_a, client=pki.client_a, tmp=tmp_path)
        expect_status(mesh, host, f"/{cred}", pki.ca_b, client=pki.client_b, tmp=tmp_path)
        # Client A's certificate is no longer trusted by the gateway (its CA was rotated to B).
        expect_handshake_failure(mesh, host, f"/{cred}", pki.ca_b, client=pki.client_a, tmp=tmp_path)


def test_deleted_secret_recreated_with_another_certificate(mesh: MeshProcess, pki: Pki) -> None:
    """The original RotateSecrets: delete the Secret, create it again with B; B is served."""
    cred, host = "testsingletlsgateway-deleterecreate", "testsingletlsgateway-deleterecreate.example.com"
    with applied(mesh, secret(cred, tls_data(pki.server_a)), gateway_config(cred, host, "SIMPLE")):
        expect_status(mesh, host, f"/{cred}", pki.ca_a)
        mesh.delete(secret(cred, {}))
        mesh.apply(secret(cred, tls_data(pki.server_b)))
        expect_status(mesh, host, f"/{cred}", pki.ca_b)


# --- several hosts on one port ----------------------------------------------------------------------


def _own_certs(pki: Pki, hosts: list[str]) -> list[t.Pem]:
    return [t.issue(pki.ca_a, [h]) for h in hosts]


def test_tls_gateways_each_host_serves_its_own_credential(mesh: MeshProcess, pki: Pki) -> None:
    creds = [f"runtestmultitlsgateways-{i}" for i in range(1, 6)]
    hosts = [f"runtestmultitlsgateways{i}.example.com" for i in range(1, 6)]
    certs = _own_certs(pki, hosts)
    docs = [secret(c, tls_data(pem)) for c, pem in zip(creds, certs, strict=True)]
    docs += [gateway_config(c, h, "SIMPLE") for c, h in zip(creds, hosts, strict=True)]
    with applied(mesh, *docs):
        for cred, host in zip(creds, hosts, strict=True):
            assert expect_status(mesh, host, f"/{cred}", pki.ca_a) == host  # the host's own certificate


def test_mtls_gateways_each_host_serves_its_own_credential(
    mesh: MeshProcess, pki: Pki, tmp_path: Path
) -> None:
    creds = [f"runtestmultimtlsgateways-{i}" for i in range(1, 6)]
    hosts = [f"runtestmultimtlsgateways{i}.example.com" for i in range(1, 6)]
    certs = _own_certs(pki, hosts)
    docs = [secret(c, generic_data(pem, pki.ca_a)) for c, pem in zip(creds, certs, strict=True)]
    docs += [gateway_config(c, h, "MUTUAL") for c, h in zip(creds, hosts, strict=True)]
    with applied(mesh, *docs):
        for cred, host in zip(creds, hosts, strict=True):
            served = expect_status(mesh, host, f"/{cred}", pki.ca_a, client=pki.client_a, tmp=tmp_path)
            assert served == host
        # MUTUAL: no client certificate, no handshake.
        expect_handshake_failure(mesh, hosts[0], f"/{creds[0]}", pki.ca_a)


# --- client checks: SANs, CRL, credentialNames ------------------------------------------------------


def test_mtls_gateway_subject_alt_names(mesh: MeshProcess, pki: Pki, tmp_path: Path) -> None:
    """MUTUAL `subjectAltNames`: only a client certificate with one of them passes."""
    cred, host = "testmtlsgateway-san", "testmtlsgateway-san.example.com"
    config = gateway_config(cred, host, "MUTUAL", subjectAltNames=["client-a.example.com"])
    with applied(mesh, secret(cred, generic_data(pki.server_a, pki.ca_a)), config):
        expect_status(mesh, host, f"/{cred}", pki.ca_a, client=pki.client_a, tmp=tmp_path)
        other = t.issue(pki.ca_a, ["client-other.example.com"], client=True)
        expect_handshake_failure(mesh, host, f"/{cred}", pki.ca_a, client=other, tmp=tmp_path)


def _crl(ca: t.Pem, revoked: list[int]) -> bytes:
    """A CRL signed by `ca`, revoking the serial numbers `revoked`."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _serial(pem: t.Pem) -> int:
    return x509.load_pem_x509_certificate(pem.cert).serial_number


def test_mtls_gateway_crl(mesh: MeshProcess, pki: Pki, tmp_path: Path) -> None:
    """TestMtlsGateway_CRL: the Secret's CRL goes with its CA (one host, the Secret rewritten per case)."""
    cred, host = "testmtlsgateway-crl", "testmtlsgateway-crl.example.com"
    path = f"/{cred}"
    a = {"client": pki.client_a, "tmp": tmp_path}
    b = {"client": pki.client_b, "tmp": tmp_path}
    with applied(
        mesh, secret(cred, generic_data(pki.server_a, pki.ca_a)), gateway_config(cred, host, "MUTUAL")
    ):
        expect_status(mesh, host, path, pki.ca_a, **a)  # TC1: no CRL, client A
        mesh.apply(secret(cred, generic_data(pki.server_b, pki.ca_b)))
        expect_status(mesh, host, path, pki.ca_b, **b)  # TC2: no CRL, client B
        mesh.apply(
            secret(cred, generic_data(pki.server_a, pki.ca_a, _crl(pki.ca_a, [_serial(pki.client_a)])))
        )
        expect_handshake_failure(mesh, host, path, pki.ca_a, **a)  # TC3: client A revoked
        dummy = t.issue(pki.ca_a, ["dummy.example.com"], client=True)
        mesh.apply(secret(cred, generic_data(pki.server_a, pki.ca_a, _crl(pki.ca_a, [_serial(dummy)]))))
        expect_status(mesh, host, path, pki.ca_a, **a)  # TC4: someone else revoked
        mesh.apply(
            secret(cred, generic_data(pki.server_b, pki.ca_b, _crl(pki.ca_a, [_serial(pki.client_a)])))
        )
        expect_handshake_failure(mesh, host, path, pki.ca_b, **b)  # TC5: a CRL of another CA


def _rsa_server(ca: t.Pem, host: str) -> t.Pem:
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rsa.{host}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return t.Pem(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def test_mtls_gateway_credential_names(mesh: MeshProcess, pki: Pki, tmp_path: Path) -> None:
    """`credentialNames`: an ECDSA and an RSA certificate on one server; the client CA is the first
    credential's (`<first>-cacert`, here its `cacert` key), whatever `credentialName` would say."""
    host = "testmtlsgateway-credentialnames.example.com"
    ec_cred, rsa_cred = "testmtlsgateway-credentialnames-ec", "testmtlsgateway-credentialnames-rsa"
    config = json.loads(gateway_config(ec_cred, host, "MUTUAL").split("\n---\n")[0])
    tls = config["spec"]["servers"][0]["tls"]
    del tls["credentialName"]
    tls["credentialNames"] = [ec_cred, rsa_cred]
    vs = gateway_config(ec_cred, host, "MUTUAL").split("\n---\n")[1]
    docs = [
        secret(ec_cred, generic_data(t.issue(pki.ca_a, [host]), pki.ca_a)),
        secret(rsa_cred, generic_data(_rsa_server(pki.ca_a, host), pki.ca_b)),
        json.dumps(config),
        vs,
    ]
    with applied(mesh, *docs):
        expect_status(mesh, host, f"/{ec_cred}", pki.ca_a, client=pki.client_a, tmp=tmp_path)
        expect_handshake_failure(mesh, host, f"/{ec_cred}", pki.ca_a, client=pki.client_b, tmp=tmp_path)


# --- invalid and missing Secrets (last: their listener waits for secrets that never come) ------------

INVALID_TLS = {
    "invalid private key": lambda p: {"tls.crt": p.server_a.cert, "tls.key": b"invalid"},
    "invalid server cert": lambda p: {"tls.crt": b"invalid", "tls.key": p.server_a.key},
    "mis-matched key and cert": lambda p: {"tls.crt": p.server_b.cert, "tls.key": p.server_a.key},
    "no private key": lambda p: {"tls.crt": p.server_a.cert},
    "no server cert": lambda p: {"tls.key": p.server_a.key},
}
INVALID_MTLS = {
    "invalid CA cert": lambda p: {**generic_data(p.server_a), "cacert": b"invalid"},
    "no CA cert": lambda p: generic_data(p.server_a),
    "mismatched CA cert": lambda p: generic_data(p.server_a, p.ca_b),
}


def test_invalid_and_missing_secrets_fail_only_their_own_host(
    mesh: MeshProcess, pki: Pki, tmp_path: Path
) -> None:
    """TestMultiTlsGateway_InvalidSecret and TestMultiMtlsGateway_InvalidSecret (all on one port at
    once), plus a host whose Secret does not exist: each fails its handshake, while a valid host next to
    them is served (within Envoy's 15 s initial fetch timeout for the secrets that never come)."""
    docs, cases = [], []
    for i, (name, make) in enumerate(INVALID_TLS.items(), 1):
        cred = f"testmultitlsgateway-invalidsecret-{i}"
        docs += [secret(cred, make(pki)), gateway_config(cred, f"{cred}.example.com", "SIMPLE")]
        cases.append((name, cred, {}))
    client = {"client": pki.client_a, "tmp": tmp_path}
    for i, (name, make) in enumerate(INVALID_MTLS.items(), 1):
        cred = f"testmultimtlsgateway-invalidsecret-{i}"
        docs += [secret(cred, make(pki)), gateway_config(cred, f"{cred}.example.com", "MUTUAL")]
        cases.append((name, cred, client))
    docs.append(gateway_config("testmissingsecret", "testmissingsecret.example.com", "SIMPLE"))
    cases.append(("missing secret", "testmissingsecret", {}))
    valid = "testvalidnexttoinvalid"
    docs += [secret(valid, tls_data(pki.server_a)), gateway_config(valid, f"{valid}.example.com", "SIMPLE")]
    text = "\n---\n".join(docs)
    try:
        mesh.apply(text, wait=15, expect_ok=False)
        expect_status(mesh, f"{valid}.example.com", f"/{valid}", pki.ca_a, timeout=40)
        for name, cred, kw in cases:
            try:
                expect_handshake_failure(mesh, f"{cred}.example.com", f"/{cred}", pki.ca_a, timeout=5, **kw)
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from e
    finally:
        mesh.delete(text)
