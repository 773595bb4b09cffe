"""The CA service the node agents call, with Istio's wire protocol, and its client.

Wire format: exactly istiod's ``istio.v1.auth.IstioCertificateService/CreateCertificate`` gRPC method
(``istio.io/api/security/v1alpha1/ca.proto``), protobuf-encoded, so an istio-agent could talk to it::

    message IstioCertificateRequest  { string csr = 1;  int64 validity_duration = 3;  // seconds
                                       google.protobuf.Struct metadata = 4; }
    message IstioCertificateResponse { repeated string cert_chain = 1; }

``cert_chain`` is ``[leaf, intermediates..., root bundle]`` (one PEM per element, the last element being
the trust anchors), as istiod answers. We have no generated stubs for Istio's protos, and no build step:
the two messages are built at import time from a hand-written `FileDescriptorProto` (four fields), which
gives byte-for-byte the same encoding as ``protoc`` output.

Authentication: the caller sends its token in the gRPC metadata ``authorization: Bearer <token>`` (where
istio-agent sends its Kubernetes service account JWT). In local mode the runner creates every pod, so it
mints a random per-pod token bound to (namespace, service account, pod) with `TokenRegistry.issue` and
gives it to that pod's agent only. The server maps token -> identity
(``spiffe://<trust domain>/ns/<ns>/sa/<sa>``) and signs the CSR for that identity and nothing else:

- no token / unknown or revoked token -> ``UNAUTHENTICATED`` (istiod: "request authenticate failure");
- the CSR asks for another identity   -> ``PERMISSION_DENIED``;
- unreadable CSR, bad CSR signature, weak key, TTL above the maximum -> ``INVALID_ARGUMENT``.

Transport: TCP with TLS (the control plane's 15012 port; the serving certificate is issued by the mesh CA
for ``istiod.istio-system.svc`` and the listen IP, so agents verify it with the mesh root), or a local
unix socket (plaintext; the token still decides). `CaServer.rpc_handler` returns the gRPC handler so that
the same service can be mounted on another gRPC server (e.g. the xDS server that shares port 15012).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

from isthmus.security.ca import (
    CaError,
    CertBundle,
    CertificateAuthority,
    CsrError,
    IdentityMismatch,
    TtlError,
)
from isthmus.security.identity import spiffe_id

log = logging.getLogger(__name__)

SERVICE = "istio.v1.auth.IstioCertificateService"
METHOD = "CreateCertificate"
METHOD_PATH = f"/{SERVICE}/{METHOD}"
AUTHORIZATION = "authorization"
BEARER = "Bearer "
ISTIOD_DNS_NAMES = ("istiod.istio-system.svc", "istiod.istio-system", "istiod")
"""DNS SANs of the CA's serving certificate (istiod's)."""


# -- Istio's messages, built without protoc ---------------------------------------------------------


def _build_messages() -> tuple[Any, Any]:
    fdp = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(
        name="isthmus/istio/security/v1alpha1/ca.proto",
        package="istio.v1.auth",
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    req = f.message_type.add(name="IstioCertificateRequest")
    req.field.add(name="csr", number=1, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    req.field.add(name="validity_duration", number=3, type=fdp.TYPE_INT64, label=fdp.LABEL_OPTIONAL)
    req.field.add(
        name="metadata",
        number=4,
        type=fdp.TYPE_MESSAGE,
        type_name=".google.protobuf.Struct",
        label=fdp.LABEL_OPTIONAL,
    )
    resp = f.message_type.add(name="IstioCertificateResponse")
    resp.field.add(name="cert_chain", number=1, type=fdp.TYPE_STRING, label=fdp.LABEL_REPEATED)
    svc = f.service.add(name="IstioCertificateService")
    svc.method.add(
        name=METHOD,
        input_type=".istio.v1.auth.IstioCertificateRequest",
        output_type=".istio.v1.auth.IstioCertificateResponse",
    )
    pool.Add(f)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("istio.v1.auth.IstioCertificateResponse")),
    )


IstioCertificateRequest, IstioCertificateResponse = _build_messages()


# -- errors ----------------------------------------------------------------------------------------


class CaRequestError(CaError):
    """A CreateCertificate call failed; `code` is the gRPC status code name."""

    code = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CaAuthenticationError(CaRequestError):
    """No token, or a token the CA does not know (never issued, or revoked)."""

    code = "UNAUTHENTICATED"


class CaPermissionError(CaRequestError, PermissionError):
    """The token is valid but the CSR asks for an identity it is not bound to."""

    code = "PERMISSION_DENIED"


class CaInvalidRequest(CaRequestError):
    """The CSR or the requested lifetime is not acceptable."""

    code = "INVALID_ARGUMENT"


class CaUnavailable(CaRequestError):
    """The CA could not be reached (retry later)."""

    code = "UNAVAILABLE"


_ERRORS_BY_CODE: dict[str, type[CaRequestError]] = {
    cls.code: cls for cls in (CaAuthenticationError, CaPermissionError, CaInvalidRequest, CaUnavailable)
}
_ERRORS_BY_CODE["DEADLINE_EXCEEDED"] = CaUnavailable


# -- tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodIdentity:
    pod: str
    namespace: str
    service_account: str


def _digest(token: str) -> bytes:
    # Tokens are kept (and looked up) by hash: no plaintext token at rest, and no timing side channel
    # on the secret itself in the dict lookup.
    return hashlib.sha256(token.encode()).digest()


class TokenRegistry:
    """Per-pod bootstrap tokens: random secrets bound to (namespace, service account, pod).

    Issuing a token for a pod that already has one replaces (revokes) the old one. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_digest: dict[bytes, PodIdentity] = {}
        self._by_pod: dict[tuple[str, str], bytes] = {}

    def issue(self, pod: str, namespace: str, service_account: str) -> str:
        spiffe_id("cluster.local", namespace, service_account)  # validates the names
        if not pod:
            raise ValueError("pod name must not be empty")
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        with self._lock:
            old = self._by_pod.pop((namespace, pod), None)
            if old is not None:
                self._by_digest.pop(old, None)
            self._by_pod[(namespace, pod)] = digest
            self._by_digest[digest] = PodIdentity(pod, namespace, service_account)
        return token

    def revoke(self, pod: str, namespace: str | None = None) -> bool:
        """Forget the token of `pod` (in `namespace`, or in every namespace). True if one was revoked."""
        with self._lock:
            keys = [k for k in self._by_pod if k[1] == pod and (namespace is None or k[0] == namespace)]
            for key in keys:
                self._by_digest.pop(self._by_pod.pop(key), None)
        return bool(keys)

    def lookup(self, token: str) -> PodIdentity | None:
        if not token:
            return None
        with self._lock:
            return self._by_digest.get(_digest(token))

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_digest)


# -- the service (transport independent) -----------------------------------------------------------


class CaService:
    """Authorizes and signs one CreateCertificate request. Used by `CaServer` and `LocalCaClient`."""

    def __init__(self, ca: CertificateAuthority, tokens: TokenRegistry) -> None:
        self.ca = ca
        self.tokens = tokens
        self.signed = 0
        self.refused = 0

    def create_certificate(
        self, token: str | None, csr_pem: str | bytes, validity_seconds: int = 0
    ) -> list[str]:
        """Istio's response (``cert_chain``) for a request; raises a CaRequestError subclass."""
        try:
            caller = self.tokens.lookup(token or "")
            if caller is None:
                reason = "no bearer token" if not token else "unknown or revoked token"
                raise CaAuthenticationError(f"request authenticate failure: {reason}")
            identity = spiffe_id(self.ca.trust_domain, caller.namespace, caller.service_account)
            ttl = dt.timedelta(seconds=validity_seconds) if validity_seconds > 0 else None
            try:
                bundle = self.ca.sign_csr(csr_pem, identity=identity, ttl=ttl)
            except IdentityMismatch as e:
                raise CaPermissionError(
                    f"pod {caller.namespace}/{caller.pod} may only get {identity}: {e}"
                ) from e
            except (CsrError, TtlError) as e:
                # istiod's wording: status.Errorf(code, "CSR signing error (%v)", err).
                raise CaInvalidRequest(f"CSR signing error ({e})") from e
        except CaRequestError as e:
            self.refused += 1
            log.warning("CA refused a certificate request: %s", e)
            raise
        self.signed += 1
        log.debug("signed a certificate for %s (pod %s), until %s", identity, caller.pod, bundle.not_after)
        return bundle.to_istio_chain()


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key.lower() == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else str(value)
            return text[len(BEARER) :].strip() if text.startswith(BEARER) else text.strip()
    return None


class CaServer:
    """The gRPC CA endpoint: ``CaServer(ca, tokens)``, ``await start(host, port)`` (TLS) or
    ``await start(unix_path=...)`` (plaintext), ``await stop()``."""

    def __init__(
        self,
        ca: CertificateAuthority,
        tokens: TokenRegistry,
        *,
        server_names: tuple[str, ...] = ISTIOD_DNS_NAMES,
    ) -> None:
        self.service = CaService(ca, tokens)
        self.server_names = server_names
        self._server: grpc.aio.Server | None = None
        self.target: str | None = None
        """What a client dials: ``host:port`` or ``unix:/path`` (set by start)."""
        self.port: int | None = None
        self.tls = False
        self.serving_cert_pem: bytes | None = None
        self._serving_ips: list[str] = []
        # The next serving certificate, for the TLS handshakes to come: gRPC's dynamic credentials ask
        # for it (from a core thread) on every new connection; None means "keep the current one".
        self._next_serving_config: grpc.ServerCertificateConfiguration | None = None

    @property
    def ca(self) -> CertificateAuthority:
        return self.service.ca

    @property
    def tokens(self) -> TokenRegistry:
        return self.service.tokens

    async def _create_certificate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = _bearer(context.invocation_metadata())
        try:
            # Signing is ~1 ms (one RSA/ECDSA signature): cheaper inline than in a thread.
            chain = self.service.create_certificate(token, request.csr, int(request.validity_duration))
        except CaRequestError as e:
            await context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.INTERNAL), str(e))
        except Exception as e:  # pragma: no cover - a bug: report it to the caller, keep serving
            log.exception("CA request failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"CA internal error: {e}")
        return IstioCertificateResponse(cert_chain=chain)

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        """The service's handler, to mount on any grpc.aio server."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.unary_unary_rpc_method_handler(
                    self._create_certificate,
                    request_deserializer=IstioCertificateRequest.FromString,
                    response_serializer=IstioCertificateResponse.SerializeToString,
                )
            },
        )

    async def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        unix_path: str | Path | None = None,
        tls: bool | None = None,
    ) -> str:
        """Listen on host:port (TLS unless ``tls=False``; port 0 picks a free one) or on `unix_path`
        (plaintext unless ``tls=True``). Returns the client target (see `target`)."""
        if self._server is not None:
            raise RuntimeError("CaServer already started")
        if (unix_path is None) == (host is None):
            raise ValueError("give either host and port, or unix_path")
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self.rpc_handler(),))
        use_tls = tls if tls is not None else unix_path is None
        if unix_path is not None:
            path = Path(unix_path)
            path.unlink(missing_ok=True)
            address = f"unix:{path}"
        else:
            address = f"[{host}]:{port or 0}" if ":" in str(host) else f"{host}:{port or 0}"
        if use_tls:
            ips = []
            if host is not None:
                with contextlib.suppress(ValueError):
                    ips = [str(ipaddress.ip_address(host))]
            self._serving_ips = ips
            # Dynamic credentials, so that a reloaded CA re-issues this certificate without a restart
            # (istiod's updateRootCertAndGenKeyCert regenerates its DNS certificate the same way).
            credentials = grpc.dynamic_ssl_server_credentials(
                self._new_serving_config(), self._fetch_serving_config
            )
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise OSError(f"the CA server could not listen on {address}")
        await server.start()
        self._server = server
        self.tls = use_tls
        if unix_path is not None:
            Path(unix_path).chmod(0o600)
            self.target = address
        else:
            self.port = bound
            self.target = f"[{host}]:{bound}" if ":" in str(host) else f"{host}:{bound}"
        log.info("CA server listening on %s (%s)", self.target, "TLS" if use_tls else "plaintext")
        return self.target

    def _new_serving_config(self) -> grpc.ServerCertificateConfiguration:
        chain, key = self.ca.issue_server_certificate(self.server_names, self._serving_ips)
        self.serving_cert_pem = chain
        return grpc.ssl_server_certificate_configuration([(key, chain)])

    def _fetch_serving_config(self) -> grpc.ServerCertificateConfiguration | None:
        config, self._next_serving_config = self._next_serving_config, None
        return config

    def refresh_serving_certificate(self) -> None:
        """Serve a certificate from the CA's current signing certificate on the next TLS handshakes (after
        `CertificateAuthority.reload`); established connections keep theirs, as with istiod."""
        if self._server is None or not self.tls:
            return
        self._next_serving_config = self._new_serving_config()
        log.info("CA server: new serving certificate from %s", self.ca.signing_cert.subject.rfc4514_string())

    async def stop(self, grace: float | None = 0.5) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if self.target and self.target.startswith("unix:"):
            Path(self.target[len("unix:") :]).unlink(missing_ok=True)

    async def __aenter__(self) -> CaServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# -- clients ----------------------------------------------------------------------------------------


class CertificateSigner(Protocol):
    """What the node agent needs from the CA (see `CaClient` and `LocalCaClient`)."""

    async def sign_csr(self, csr_pem: bytes, *, ttl: dt.timedelta | None = None) -> CertBundle: ...


_closing: set[asyncio.Task[None]] = set()  # channels being closed after a trust change (kept referenced)


class CaClient:
    """Calls a `CaServer` (or istiod) with one pod's token.

    `target` is ``host:port`` (TLS when `root_cert_pem` is given, verified against it; `server_name`
    overrides the name checked, e.g. ``istiod.istio-system.svc``) or ``unix:/path``.
    The channel is created on first use, in the running event loop.
    """

    def __init__(
        self,
        target: str,
        token: str,
        *,
        root_cert_pem: bytes | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self._token = token
        self.root_cert_pem = root_cert_pem
        self.server_name = server_name
        self.timeout = timeout
        self.metadata = dict(metadata or {})
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"CaClient({self.target!r}, tls={self.root_cert_pem is not None})"

    def _get_channel(self) -> grpc.aio.Channel:
        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            options: list[tuple[str, Any]] = []
            if self.root_cert_pem is not None:
                if self.server_name:
                    options.append(("grpc.ssl_target_name_override", self.server_name))
                creds = grpc.ssl_channel_credentials(root_certificates=self.root_cert_pem)
                self._channel = grpc.aio.secure_channel(self.target, creds, options=options)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=options)
            self._loop = loop
        return self._channel

    async def create_certificate(self, csr_pem: bytes | str, validity_seconds: int = 0) -> list[str]:
        """The raw call: Istio's ``cert_chain``."""
        call = self._get_channel().unary_unary(
            METHOD_PATH,
            request_serializer=IstioCertificateRequest.SerializeToString,
            response_deserializer=IstioCertificateResponse.FromString,
        )
        request = IstioCertificateRequest(
            csr=csr_pem.decode() if isinstance(csr_pem, bytes) else csr_pem,
            validity_duration=int(validity_seconds),
        )
        if self.metadata:
            request.metadata.update(self.metadata)
        try:
            response = await call(
                request,
                timeout=self.timeout,
                metadata=((AUTHORIZATION, f"{BEARER}{self._token}"),),
            )
        except grpc.aio.AioRpcError as e:
            code = e.code().name
            error = _ERRORS_BY_CODE.get(code, CaRequestError)
            raise error(f"CA {self.target}: {e.details() or code}", code=code) from None
        return list(response.cert_chain)

    async def sign_csr(self, csr_pem: bytes, *, ttl: dt.timedelta | None = None) -> CertBundle:
        seconds = int(ttl.total_seconds()) if ttl is not None else 0
        if ttl is not None and seconds < 1:
            seconds = 1
        return CertBundle.from_istio_chain(await self.create_certificate(csr_pem, seconds))

    def update_root_cert(self, root_cert_pem: bytes) -> None:
        """Trust `root_cert_pem` for the CA's serving certificate from the next call on (istio-agent
        re-reads the mesh's root, istio-ca-root-cert, for its connection to istiod): a channel's
        credentials are fixed, so the next call opens a new one; the old one is closed in the background,
        letting a call in flight finish."""
        if self.root_cert_pem is None or root_cert_pem == self.root_cert_pem:
            return
        self.root_cert_pem = root_cert_pem
        channel, self._channel = self._channel, None
        if channel is not None and self._loop is not None and not self._loop.is_closed():
            task = self._loop.create_task(channel.close(grace=self.timeout))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


class LocalCaClient:
    """The same authorization and signing as `CaClient`, in process (no network): for a runner that hosts
    the CA itself, and for tests."""

    def __init__(self, service: CaService, token: str) -> None:
        self.service = service
        self._token = token

    def __repr__(self) -> str:
        return "LocalCaClient()"

    async def sign_csr(self, csr_pem: bytes, *, ttl: dt.timedelta | None = None) -> CertBundle:
        seconds = max(1, int(ttl.total_seconds())) if ttl is not None else 0
        return CertBundle.from_istio_chain(self.service.create_certificate(self._token, csr_pem, seconds))

    async def close(self) -> None:
        return None
