"""The node agent's SDS server for one Envoy: the workload certificate, the mesh root, and file secrets.

istio-agent's secret path, in process (``security/pkg/nodeagent/sds``, ``.../cache/secretcache.go``):

1. `SdsAgent.start` listens on a unix socket in the pod's workdir (``<workdir>/sds.sock``; a short path
   under the temp dir when the workdir path is too long for a socket); the bootstrap's static cluster
   ``sds-grpc`` points Envoy at it (`isthmus.agent.bootstrap.build_bootstrap(sds_socket=...)`);
2. it generates a private key locally (ECDSA P-256 by default), builds a CSR whose only SAN is the
   workload's SPIFFE id, and has the CA sign it (`isthmus.security.ca_server.CaClient`, authenticated by
   the pod's token). The key never leaves this process and the Envoy it serves;
3. it serves ``envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets`` (state of the world, one
   version per change, a nonce per response, ACK/NACK tracking; Fetch/Delta are not served, as in Istio)
   with Istio's secret names: ``default`` (``tls_certificate``: chain + key) and ``ROOTCA``
   (``validation_context.trusted_ca``); ``file-cert:<cert>~<key>`` and ``file-root:<path>`` are read
   from disk on first request and re-read when the files change (polled); names handed over by the
   runner (`add_secret`/`add_root`, e.g. a Gateway's ``kubernetes://<credentialName>``) are served as
   given. A requested name that does not exist (yet) gets no answer, so Envoy keeps waiting for it
   (``initial_fetch_timeout: 0s``; 15 s for ``kubernetes://`` credentials, after which the listener
   serves without it, as with istiod), and receives it as soon as it exists;
4. it rotates the certificate once `rotation_ratio` of its lifetime has passed (Istio: half way, with a
   1 % jitter), with a new key, and pushes the new ``default`` secret on the open streams: Envoy uses it
   for new TLS handshakes while established connections carry on undisturbed. A failed renewal is
   retried with exponential backoff (0.5 s doubling to 30 s) and counted in `SdsAgent.stats`.

Stop Envoy before the agent: Envoy keeps retrying a vanished SDS socket (and logs about it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import os
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from isthmus.agent.certs import (
    DEFAULT_ROTATION_JITTER,
    DEFAULT_ROTATION_RATIO,
    WorkloadCertificate,
    build_csr,
    retry_delay,
)
from isthmus.security.ca import CaError, KeyType, generate_key, key_pem, load_certs
from isthmus.security.ca_server import (
    CaAuthenticationError,
    CaInvalidRequest,
    CaPermissionError,
    CertificateSigner,
)
from isthmus.security.identity import parse_spiffe_id
from isthmus.security.sds import (
    FILE_ROOT_SYSTEM,
    ROOT_CA,
    SECRET_TYPE_URL,
    WORKLOAD_CERT,
    parse_file_secret,
)

log = logging.getLogger(__name__)

SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SOCKET_NAME = "sds.sock"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux (104 on macOS): keep a margin
_INFLIGHT_KEPT = 16


class SdsError(RuntimeError):
    """The agent could not start, or could not get its first certificate."""


@dataclass
class SdsStats:
    """Counters of one agent (read them with `SdsAgent.stats`)."""

    certificates_issued: int = 0
    rotations: int = 0
    """Certificates issued after the first one (scheduled or `rotate_now`)."""
    renew_failures: int = 0
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    last_issue_seconds: float | None = None
    """Key generation + CSR + CA round trip of the latest certificate."""
    last_rotation_at: dt.datetime | None = None
    pushes: int = 0
    acks: int = 0
    nacks: int = 0
    last_nack: str | None = None
    streams_total: int = 0
    streams_active: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("last_error_at", "last_rotation_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass
class _Entry:
    name: str
    version: int
    data: bytes  # serialized envoy.extensions.transport_sockets.tls.v3.Secret
    source: str  # workload | root | file | provided


@dataclass
class _FileWatch:
    paths: tuple[str, ...]
    stamp: tuple[Any, ...] | None = None


@dataclass
class _Stream:
    id: int
    peer: str
    names: frozenset[str] = frozenset()
    sent: dict[str, int] = field(default_factory=dict)
    force: bool = False
    last_nonce: str = ""
    inflight: collections.OrderedDict[str, dict[str, int]] = field(default_factory=collections.OrderedDict)
    node_id: str = ""
    inbox: collections.deque[Any] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


def default_socket_path(workdir: Path) -> Path:
    """``<workdir>/sds.sock``, or a short per-workdir path in the temp dir when that is too long."""
    path = Path(workdir).absolute() / SOCKET_NAME
    if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(str(path))).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"isthmus-sds-{os.getuid()}" / f"{digest}.sock"


def _tls_certificate_secret(
    name: str, chain: bytes, key: bytes, staple: bytes | None = None
) -> secret_pb2.Secret:
    """istiod's toEnvoyTLSSecret: chain + key, and the Secret's OCSP staple when it has one."""
    out = secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=chain),
            private_key=base_pb2.DataSource(inline_bytes=key),
        ),
    )
    if staple:
        out.tls_certificate.ocsp_staple.inline_bytes = staple
    return out


def _root_secret(name: str, pem: bytes, crl: bytes | None = None) -> secret_pb2.Secret:
    """istiod's toEnvoyCaSecret: the trust anchors, and the Secret's CRL when it has one."""
    context = common_pb2.CertificateValidationContext(trusted_ca=base_pb2.DataSource(inline_bytes=pem))
    if crl:
        context.crl.inline_bytes = crl
    return secret_pb2.Secret(name=name, validation_context=context)


def _check_cert_and_key(chain: bytes, key: bytes, what: str) -> None:
    try:
        certs = load_certs(chain)
    except ValueError as e:
        raise ValueError(f"{what}: no readable PEM certificate ({e})") from e
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: no readable unencrypted PEM private key ({e})") from e
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*fmt) != certs[0].public_key().public_bytes(*fmt):
        raise ValueError(f"{what}: the private key does not match the certificate")


def _check_roots(pem: bytes, what: str) -> None:
    try:
        load_certs(pem)
    except ValueError as e:
        raise ValueError(f"{what}: no readable PEM certificate ({e})") from e


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SdsAgent:
    """SDS for one Envoy: ``SdsAgent(identity, ca_client, workdir)``, ``path = await start()``,
    ``await stop()``. `ca_client` is a `CertificateSigner` (`CaClient` or `LocalCaClient`); the caller
    owns it (and closes it). Use it from the event loop it was started in (not thread-safe)."""

    def __init__(
        self,
        identity: str,
        ca_client: CertificateSigner,
        workdir: Path | str,
        *,
        rotation_ratio: float = DEFAULT_ROTATION_RATIO,
        rotation_jitter: float = DEFAULT_ROTATION_JITTER,
        ttl: dt.timedelta | None = None,
        key_type: KeyType = "ec",
        socket_path: Path | str | None = None,
        file_poll_interval: float = 1.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        parse_spiffe_id(identity)
        if not 0.0 < rotation_ratio <= 1.0:
            raise ValueError(f"rotation_ratio must be in (0, 1], got {rotation_ratio}")
        self.identity = identity
        self.ca_client = ca_client
        self.workdir = Path(workdir)
        self.rotation_ratio = rotation_ratio
        self.rotation_jitter = rotation_jitter
        self.ttl = ttl
        self.key_type: KeyType = key_type
        self.socket_path = Path(socket_path) if socket_path is not None else default_socket_path(self.workdir)
        self.file_poll_interval = file_poll_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stats = SdsStats()

        self._cert: WorkloadCertificate | None = None
        self._rotate_at: dt.datetime | None = None
        self._secrets: dict[str, _Entry] = {}
        self._version = 0
        self._acked: dict[str, int] = {}
        self._ack_changed = asyncio.Event()
        self._files: dict[str, _FileWatch] = {}
        self._file_errors: dict[str, str] = {}  # file secret -> why it is not served (cleared once it is)
        self._streams: dict[int, _Stream] = {}
        self._stream_ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._renew_lock = asyncio.Lock()
        self._replan = asyncio.Event()
        self._first_cert = asyncio.Event()
        self._refused = asyncio.Event()  # the CA said no for good (token, identity, CSR): start() fails fast
        self._failures = 0
        self._trust_bundle: bytes | None = None  # the mesh's anchors, once a CA reload announced them
        self._trust_generation = 0  # bumped by update_trust_bundle: a CSR started before must be redone
        self._closing = False

    def __repr__(self) -> str:
        return f"SdsAgent({self.identity!r}, socket={str(self.socket_path)!r})"

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, *, wait_for_certificate: bool = True, timeout: float = 30.0) -> str:
        """Listen on the socket, get the first certificate (unless `wait_for_certificate` is False, in
        which case it is fetched in the background), keep it rotated. Returns the socket path.

        Raises SdsError (after cleaning up) if the socket cannot be bound or no certificate is obtained
        within `timeout` (the message has the CA's answer, e.g. a permission error)."""
        if self._server is not None:
            raise SdsError(f"{self!r} already started")
        self._closing = False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SDS_SERVICE,
                    {
                        "StreamSecrets": grpc.stream_stream_rpc_method_handler(
                            self._stream_secrets,
                            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                            response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        if not server.add_insecure_port(f"unix:{self.socket_path}"):
            raise SdsError(f"cannot listen on unix socket {self.socket_path}")
        await server.start()
        self._server = server
        with contextlib.suppress(OSError):
            self.socket_path.chmod(0o600)  # the private key goes through it
        self._tasks = [
            asyncio.create_task(self._rotation_loop(), name=f"sds-rotate-{self.identity}"),
            asyncio.create_task(self._file_loop(), name=f"sds-files-{self.identity}"),
        ]
        if wait_for_certificate:
            got = asyncio.ensure_future(self._first_cert.wait())
            refused = asyncio.ensure_future(self._refused.wait())
            try:
                await asyncio.wait({got, refused}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                got.cancel()
                refused.cancel()
            if not self._first_cert.is_set():
                error = self.stats.last_error or "no answer from the CA"
                why = (
                    "the CA refused the request"
                    if self._refused.is_set()
                    else f"no certificate within {timeout:g}s"
                )
                await self.stop()
                raise SdsError(f"{self.identity}: {why}: {error}")
        return str(self.socket_path)

    async def stop(self, grace: float = 0.2) -> None:
        # Python 3.11's wait_for returns the result instead of raising when the cancel lands in the same
        # loop turn as the _replan wake-up (a rotate_now or trust bundle update just before stop): the
        # rotation loop would then wait again, uncancelled. The flag makes it leave on its own.
        self._closing = True
        self._replan.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            for st in self._streams.values():
                st.closed = True
                st.wake.set()
            await server.stop(grace)
        self.socket_path.unlink(missing_ok=True)

    async def __aenter__(self) -> SdsAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- certificates -------------------------------------------------------------------------------

    def current_certificate(self) -> WorkloadCertificate | None:
        return self._cert

    @property
    def rotate_at(self) -> dt.datetime | None:
        """When the current certificate will be rotated."""
        return self._rotate_at

    async def rotate_now(self) -> WorkloadCertificate:
        """Get a new certificate (new key) at once and push it; the schedule restarts from it."""
        return await self._renew()

    async def _renew(self) -> WorkloadCertificate:
        async with self._renew_lock:
            t0 = time.perf_counter()
            generation = self._trust_generation
            try:
                key, key_bytes, csr = await asyncio.to_thread(self._key_and_csr)
                bundle = await self.ca_client.sign_csr(csr, ttl=self.ttl)
                leaf = bundle.leaf
                fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
                if leaf.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
                    raise CaError("the CA returned a certificate for another key")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._failures += 1
                self.stats.renew_failures += 1
                self.stats.last_error = str(e) if isinstance(e, CaError) else repr(e)
                self.stats.last_error_at = _utcnow()
                if isinstance(e, CaAuthenticationError | CaPermissionError | CaInvalidRequest):
                    self._refused.set()
                raise
            now = _utcnow()
            cert = WorkloadCertificate.from_bundle(self.identity, bundle, key_bytes, now)
            first = self._cert is None
            self._cert = cert
            self._rotate_at = cert.rotation_time(self.rotation_ratio, self.rotation_jitter)
            if generation != self._trust_generation:
                # The CA changed while this CSR was in flight: it may come from the old signing cert.
                self._rotate_at = now
            self._failures = 0
            self.stats.certificates_issued += 1
            self.stats.last_issue_seconds = time.perf_counter() - t0
            if not first:
                self.stats.rotations += 1
                self.stats.last_rotation_at = now
            self._put(
                WORKLOAD_CERT,
                _tls_certificate_secret(WORKLOAD_CERT, cert.cert_chain_pem, key_bytes),
                "workload",
            )
            # istio-agent compares the root of each CA answer with the one it holds and pushes ROOTCA when
            # it changed (GenerateSecret); _put sends it only when the bytes differ.
            self._put(ROOT_CA, _root_secret(ROOT_CA, self._trust_anchors()), "root")
            log.info(
                "%s: %s certificate serial %x valid until %s, rotation at %s (%.0f ms)",
                self.identity,
                "new" if first else "rotated",
                cert.serial_number,
                cert.not_after.isoformat(timespec="seconds"),
                self._rotate_at.isoformat(timespec="seconds"),
                self.stats.last_issue_seconds * 1000,
            )
            self._first_cert.set()
            self._replan.set()
            return cert

    def update_trust_bundle(self, root_cert_pem: bytes) -> bool:
        """The mesh's trust anchors changed (a reloaded plug-in CA): istio-agent's UpdateConfigTrustBundle,
        called when istiod pushes the new trust bundle (PCDS). ROOTCA is pushed at once with the new
        anchors added to those of the current certificate, and the workload certificate is requested again
        now rather than at its rotation time, so that it comes from the CA's new signing certificate and
        carries the new roots (which then replace the merged set). Returns False when nothing changed."""
        _check_roots(root_cert_pem, "trust bundle")
        if root_cert_pem == self._trust_bundle:
            return False
        self._trust_bundle = root_cert_pem
        self._trust_generation += 1
        if self._cert is not None:
            self._put(ROOT_CA, _root_secret(ROOT_CA, self._trust_anchors()), "root")
            # The rotation loop renews once _rotate_at has passed (with its retry backoff on failure).
            self._rotate_at = _utcnow()
            self._replan.set()
        return True

    def _trust_anchors(self) -> bytes:
        """ROOTCA: the current certificate's roots, then those of the trust bundle it lacks, without
        duplicates (istio-agent's mergeTrustAnchorBytes; it also sorts them, Isthmus keeps the CA's order).
        The bundle only adds anchors while the certificate that predates it is in use: once renewed, the
        certificate's roots are the bundle's."""
        assert self._cert is not None
        out: list[bytes] = []
        for pem in (self._cert.root_cert_pem, self._trust_bundle or b""):
            if not pem:
                continue
            for c in load_certs(pem):
                data = c.public_bytes(serialization.Encoding.PEM)
                if data not in out:
                    out.append(data)
        return b"".join(out)

    def _key_and_csr(self) -> tuple[Any, bytes, bytes]:
        key = generate_key(self.key_type)
        return key, key_pem(key), build_csr(key, self.identity)

    async def _rotation_loop(self) -> None:
        while not self._closing:
            if self._cert is None or self._failures:
                delay = (
                    0.0
                    if self._failures == 0
                    else retry_delay(self._failures - 1, initial=self.retry_initial, maximum=self.retry_max)
                )
            else:
                assert self._rotate_at is not None
                delay = max(0.0, (self._rotate_at - _utcnow()).total_seconds())
            self._replan.clear()
            try:
                await asyncio.wait_for(self._replan.wait(), delay)
                continue  # rotate_now() happened: plan again from the new certificate
            except TimeoutError:
                pass
            try:
                await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "%s: certificate request failed (attempt %d): %s", self.identity, self._failures, e
                )

    # -- secrets ------------------------------------------------------------------------------------

    def add_secret(
        self, name: str, cert_chain: bytes | str, key: bytes | str, ocsp_staple: bytes | None = None
    ) -> None:
        """Serve a certificate + key (and an OCSP staple, a Secret's ``tls.ocsp-staple``) under `name`
        (e.g. ``kubernetes://<credentialName>``)."""
        chain_b = cert_chain.encode() if isinstance(cert_chain, str) else cert_chain
        key_b = key.encode() if isinstance(key, str) else key
        _check_cert_and_key(chain_b, key_b, f"secret {name!r}")
        self._put(name, _tls_certificate_secret(name, chain_b, key_b, ocsp_staple), "provided")

    def add_root(self, name: str, pem: bytes | str, crl: bytes | str | None = None) -> None:
        """Serve trust anchors (and a CRL) under `name` (e.g. ``kubernetes://<credentialName>-cacert``)."""
        pem_b = pem.encode() if isinstance(pem, str) else pem
        crl_b = crl.encode() if isinstance(crl, str) else crl
        _check_roots(pem_b, f"secret {name!r}")
        self._put(name, _root_secret(name, pem_b, crl_b), "provided")

    def remove_secret(self, name: str) -> bool:
        """Stop serving `name` (Envoy keeps what it has). Workload secrets cannot be removed."""
        if name in (WORKLOAD_CERT, ROOT_CA):
            raise ValueError(f"{name!r} is the workload's own secret")
        self._files.pop(name, None)
        self._file_errors.pop(name, None)
        return self._secrets.pop(name, None) is not None

    def secret_names(self) -> list[str]:
        return sorted(self._secrets)

    def waiting(self) -> dict[str, str]:
        """The secrets Envoy asked for that are not served, and why (a file's error; "" when the agent
        knows no reason): each keeps a cluster or listener warming, so the proxy's config is not applied
        (its CDS/LDS ACK waits) until the secret exists."""
        asked = set().union(*(st.names for st in self._streams.values())) if self._streams else set()
        return {name: self._file_errors.get(name, "") for name in sorted(asked) if name not in self._secrets}

    def _put(self, name: str, secret: secret_pb2.Secret, source: str) -> bool:
        data = secret.SerializeToString(deterministic=True)
        old = self._secrets.get(name)
        if old is not None and old.data == data:
            return False
        self._version += 1
        self._secrets[name] = _Entry(name, self._version, data, source)
        for st in self._streams.values():
            if name in st.names:
                st.wake.set()
        return True

    def _ensure_dynamic(self, names: frozenset[str]) -> None:
        """Load the file secrets among `names` that are not known yet."""
        for name in names:
            if name in self._secrets or name in self._files:
                continue
            spec = parse_file_secret(name)
            if spec is None:
                continue
            if spec.is_root:
                path = spec.root_path
                if name == FILE_ROOT_SYSTEM:
                    paths = ssl.get_default_verify_paths()
                    path = paths.cafile or paths.openssl_cafile
                self._files[name] = _FileWatch((path,))
            else:
                self._files[name] = _FileWatch((spec.cert_path, spec.key_path))
            self._reload_file(name)

    def _reload_file(self, name: str) -> None:
        watch = self._files[name]
        try:
            stamp = tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in (os.stat(p) for p in watch.paths))
        except OSError as e:
            if watch.stamp != ():
                self._file_error(name, f"cannot read {e.filename}: {e.strerror}")
            else:
                self._file_errors[name] = f"cannot read {e.filename}: {e.strerror}"
            watch.stamp = ()
            return
        if stamp == watch.stamp:
            return
        watch.stamp = stamp
        try:
            contents = [Path(p).read_bytes() for p in watch.paths]
            if len(contents) == 1:
                _check_roots(contents[0], f"secret {name!r}")
                secret = _root_secret(name, contents[0])
            else:
                _check_cert_and_key(contents[0], contents[1], f"secret {name!r}")
                secret = _tls_certificate_secret(name, contents[0], contents[1])
        except (OSError, ValueError) as e:
            self._file_error(name, str(e))
            return
        self._file_errors.pop(name, None)
        if self._put(name, secret, "file"):
            log.info("%s: serving %s from %s", self.identity, name, ", ".join(watch.paths))

    def _file_error(self, name: str, message: str) -> None:
        self._file_errors[name] = message
        self.stats.last_error = message
        self.stats.last_error_at = _utcnow()
        log.warning("%s: secret %s not served: %s", self.identity, name, message)

    async def _file_loop(self) -> None:
        while True:
            await asyncio.sleep(self.file_poll_interval)
            for name in list(self._files):
                if name in self._files:
                    self._reload_file(name)

    # -- ACKs ---------------------------------------------------------------------------------------

    def version(self, name: str) -> int | None:
        """The current version of secret `name` (None when not served)."""
        entry = self._secrets.get(name)
        return entry.version if entry is not None else None

    def acked_version(self, name: str) -> int | None:
        """The newest version of `name` an Envoy has ACKed."""
        return self._acked.get(name)

    async def wait_for_ack(self, name: str = WORKLOAD_CERT, *, timeout: float = 10.0) -> int:
        """Wait until Envoy ACKed the current version of `name`; returns that version."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.version(name)
            if current is not None and (self._acked.get(name) or 0) >= current:
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.identity}: version {current} of {name!r} not ACKed within {timeout:g}s "
                    f"(acked {self._acked.get(name)}, last NACK {self.stats.last_nack!r})"
                )
            self._ack_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_changed.wait(), remaining)

    # -- the SDS stream -----------------------------------------------------------------------------

    async def _stream_secrets(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        st = _Stream(next(self._stream_ids), context.peer())
        self._streams[st.id] = st
        self.stats.streams_total += 1
        self.stats.streams_active = len(self._streams)
        reader = asyncio.create_task(self._read_requests(st, context), name=f"sds-read-{st.id}")
        try:
            while True:
                st.wake.clear()
                while st.inbox:
                    self._on_request(st, st.inbox.popleft())
                if st.closed:
                    return
                await self._push(st, context)
                await st.wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not st.closed:
                log.warning("%s: SDS stream %d failed: %r", self.identity, st.id, e)
        finally:
            reader.cancel()
            self._streams.pop(st.id, None)
            self.stats.streams_active = len(self._streams)

    async def _read_requests(self, st: _Stream, context: grpc.aio.ServicerContext) -> None:
        try:
            while True:
                req = await context.read()
                if req is grpc.aio.EOF:
                    break
                st.inbox.append(req)
                st.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("%s: SDS stream %d read ended: %r", self.identity, st.id, e)
        finally:
            st.closed = True
            st.wake.set()

    def _on_request(self, st: _Stream, req: discovery_pb2.DiscoveryRequest) -> None:
        if req.type_url and req.type_url != SECRET_TYPE_URL:
            log.warning("%s: SDS stream %d asked for %s: ignored", self.identity, st.id, req.type_url)
            return
        if req.node.id:
            st.node_id = req.node.id
        names = frozenset(req.resource_names)
        nonce = req.response_nonce
        if not nonce:
            # A new subscription, or Envoy starting over on this stream: answer in full.
            st.names = names
            st.force = True
            self._ensure_dynamic(names)
            return
        sent = st.inflight.get(nonce)
        if req.HasField("error_detail"):
            if nonce == st.last_nonce:
                self.stats.nacks += 1
                self.stats.last_nack = req.error_detail.message
                log.warning(
                    "%s: Envoy rejected secrets %s: %s",
                    self.identity,
                    ", ".join(sorted(sent or {})),
                    req.error_detail.message,
                )
        elif sent is not None:
            self.stats.acks += 1
            for name, version in sent.items():
                if version > self._acked.get(name, 0):
                    self._acked[name] = version
            self._ack_changed.set()
        if nonce != st.last_nonce:
            return  # stale: Envoy has not seen our latest response yet
        if names != st.names:
            st.names = names
            self._ensure_dynamic(names)

    async def _push(self, st: _Stream, context: grpc.aio.ServicerContext) -> None:
        available = {n: self._secrets[n].version for n in st.names if n in self._secrets}
        if not available:
            return  # nothing to say yet: Envoy waits (initial_fetch_timeout 0s)
        if not st.force and available == st.sent:
            return
        nonce = f"{st.id}-{next(self._nonces)}"
        response = discovery_pb2.DiscoveryResponse(
            version_info=str(max(available.values())),
            type_url=SECRET_TYPE_URL,
            nonce=nonce,
            resources=[
                any_pb2.Any(type_url=SECRET_TYPE_URL, value=self._secrets[n].data) for n in sorted(available)
            ],
        )
        await context.write(response)
        st.sent = available
        st.force = False
        st.last_nonce = nonce
        st.inflight[nonce] = available
        while len(st.inflight) > _INFLIGHT_KEPT:
            st.inflight.popitem(last=False)
        self.stats.pushes += 1
        log.debug("%s: pushed %s on SDS stream %d (nonce %s)", self.identity, available, st.id, nonce)

    # -- introspection ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready view (for debug endpoints and ``proxy-config secret``-like output)."""
        cert = self._cert
        return {
            "identity": self.identity,
            "socket": str(self.socket_path),
            "certificate": None
            if cert is None
            else {
                "serialNumber": f"{cert.serial_number:x}",
                "notBefore": cert.not_before.isoformat(),
                "notAfter": cert.not_after.isoformat(),
                "issuedAt": cert.issued_at.isoformat(),
                "rotateAt": self._rotate_at.isoformat() if self._rotate_at else None,
            },
            "secrets": {
                n: {"version": e.version, "source": e.source, "acked": self._acked.get(n)}
                for n, e in sorted(self._secrets.items())
            },
            "streams": [
                {"id": s.id, "node": s.node_id, "names": sorted(s.names), "nonce": s.last_nonce}
                for s in self._streams.values()
            ],
            "stats": self.stats.as_dict(),
        }
