"""Workload identity for local pods: the mesh CA, its CSR service on :15012, and one SDS agent per proxy.

Each proxy's agent generates its key locally and gets its certificate through the same authenticated
CSR service a remote agent would use (a per-pod token the runner mints, bound to the pod's namespace and
service account). Kubernetes Secrets of the pod's namespace (generic cert/key/cacert/crl or TLS
tls.crt/tls.key/ca.crt/ca.crl/tls.ocsp-staple keys) are served to its Envoy under the names istiod's
SecretGen would answer (`isthmus.security.credentials`): `kubernetes://<name>` and
`kubernetes://<namespace>/<name>`, their CA-only `-cacert` companions, and for a gateway the
`kubernetes-gateway://` names its own Gateways verify; for Gateway and DestinationRule `credentialName`.

The CA's directory (``<state dir>/ca``, Istio's ``cacerts`` layout) is watched while the mesh runs, as
istiod watches its ``cacerts`` mount (pilot/pkg/bootstrap/istio_ca.go: handleCACertsFileWatch, 100 ms
debounce, then handleEvent): a change is validated and loaded (`CertificateAuthority.reload`); a bundle
that does not load (a half-written update, a key that does not match, a root replaced outright) is
refused, logged and reported (`ca_status`, `isthmus status`), the CA keeps the old one and tries again on
the next change. A loaded bundle re-issues the CA server's own serving certificate (istiod's
updateRootCertAndGenKeyCert) and, when the root bundle changed, reaches every pod as istiod's trust bundle
push does (PCDS -> istio-agent's UpdateConfigTrustBundle): the agent trusts the new roots for its CA
connection, pushes them in ROOTCA (sidecars' mTLS, gateways' ISTIO_MUTUAL) and asks for a new workload
certificate at once, which the CA signs with its new signing certificate. A change of the signing
certificate alone pushes nothing, as in Istio: workloads get it on their next rotation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.agent.sds import SdsAgent
from isthmus.model.durations import to_seconds
from isthmus.security.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_CHAIN_FILE,
    ROOT_CERT_FILE,
    CaError,
    CertificateAuthority,
    KeyType,
)
from isthmus.security.ca_server import CaClient, CaServer, TokenRegistry
from isthmus.security.credentials import servable_credentials, verified_references
from isthmus.security.identity import spiffe_id
from isthmus.security.sds import KUBERNETES_PREFIX

log = logging.getLogger(__name__)

CA_PORT = 15012
CA_FILES = frozenset({CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE})
CA_WATCH_DEBOUNCE_MS = 100  # istiod's handleCACertsFileWatch waits 100 ms after the first event


@dataclass
class PodIdentity:
    agent: SdsAgent
    client: CaClient
    pod: str
    namespace: str
    secrets: set[str] = field(default_factory=set)
    # A gateway's labels: which Gateways select it (their kubernetes-gateway:// credentials).
    gateway_labels: dict[str, str] | None = None
    # Credentials its namespace has but that could not be served (bad PEM, key not matching), with why:
    # what `waiting` reports for them instead of "no Secret".
    rejected: dict[str, str] = field(default_factory=dict)
    # What each credential held when last handed to the agent (served or refused): a sync leaves those
    # unchanged alone, rather than parsing every certificate and key again on each Secret/Gateway change.
    handed: dict[str, Any] = field(default_factory=dict)


def workload_key_type(ecc_signature_algorithm: str | None) -> KeyType:
    """istio-agent's ECC_SIGNATURE_ALGORITHM: `ECDSA` makes the workload key ECDSA P-256, any other value
    RSA 2048. Unset, Isthmus departs from Istio (RSA) and uses ECDSA too: a key in ~1 ms instead of
    ~50-200 ms per pod and rotation (agent/certs.py)."""
    if ecc_signature_algorithm is None or ecc_signature_algorithm == "ECDSA":
        return "ec"
    return "rsa"


def rotation_ratio_from_grace(grace_period_ratio: str | float | None) -> float:
    """istio-agent's SECRET_GRACE_PERIOD_RATIO (default 0.5) is the fraction of the lifetime left when it
    rotates (secretcache.go rotateTime: expiry - ratio * lifetime); the agent's `rotation_ratio` is the
    fraction that has passed, so 1 - ratio: 0.2 rotates 80 % of the way through, not 20 %."""
    grace = 0.5 if grace_period_ratio is None or grace_period_ratio == "" else float(grace_period_ratio)
    if not 0.0 <= grace < 1.0:
        # 1 would rotate continuously; Istio clamps the (jittered) ratio to [0, 1].
        raise ValueError(f"SECRET_GRACE_PERIOD_RATIO must be in [0, 1), got {grace_period_ratio}")
    return 1.0 - grace


class MeshSecurity:
    def __init__(
        self,
        state_dir: Path,
        trust_domain: str,
        proxy_metadata: dict[str, str] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.ca = CertificateAuthority.load_or_create(state_dir / "ca", trust_domain=trust_domain)
        # Where reloads and refused CA updates are reported (the runner's event stream).
        self.on_event = on_event or (lambda msg: log.warning("%s", msg))
        self.ca_reloads = 0
        self.ca_reloaded_at: dt.datetime | None = None
        self.ca_reload_error: str | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_stop = asyncio.Event()
        self.tokens = TokenRegistry()
        self.server = CaServer(self.ca, self.tokens)
        self.target = ""
        meta = proxy_metadata or {}
        # istio-agent's own knobs, from MeshConfig defaultConfig.proxyMetadata.
        self.ttl = dt.timedelta(seconds=to_seconds(meta["SECRET_TTL"])) if meta.get("SECRET_TTL") else None
        self.rotation_ratio = rotation_ratio_from_grace(meta.get("SECRET_GRACE_PERIOD_RATIO"))
        self.key_type = workload_key_type(meta.get("ECC_SIGNATURE_ALGORITHM"))
        self.pods: dict[tuple[str, str], PodIdentity] = {}

    @property
    def trust_domain(self) -> str:
        return self.ca.trust_domain

    async def start(self, host: str, port: int = CA_PORT, *, watch: bool = True) -> str:
        self.target = await self.server.start(host, port)
        if watch and self.ca.directory is not None:
            self._watch_stop.clear()
            self._watch_task = asyncio.get_running_loop().create_task(
                self._watch_ca_dir(self.ca.directory), name="ca-dir-watch"
            )
        return self.target

    async def stop(self) -> None:
        self._watch_stop.set()
        task, self._watch_task = self._watch_task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, 2)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                # The watch ended with an error (inotify's watch limit, the directory gone): reported,
                # and the shutdown goes on, or every pod's agent and the CA server would stay up.
                log.exception("the CA directory watch failed")
        for key in list(self.pods):
            await self.stop_pod(*key)
        await self.server.stop()

    # -- the plug-in CA, reloaded while the mesh runs ---------------------------------------------

    async def _watch_ca_dir(self, directory: Path) -> None:
        from watchfiles import awatch

        try:
            async for changes in awatch(
                directory,
                stop_event=self._watch_stop,
                debounce=CA_WATCH_DEBOUNCE_MS,
                step=50,
                recursive=False,
            ):
                # Any write, creation or removal of one of the four files (istiod reacts to Write and
                # Create; a removal is reported here too, and refused by the reload as an incomplete bundle).
                if any(Path(p).name in CA_FILES for _, p in changes):
                    try:
                        self.reload_ca()
                    except Exception:  # a bug must not end the watch: later updates would be missed
                        log.exception("plug-in CA reload failed")
        except Exception as exc:
            # The watch itself failed (inotify's watch limit, the directory removed): from now on an
            # update of the directory is not seen. Say so where a refused update is said, not only in
            # a task's exception nobody reads until shutdown.
            self.ca_reload_error = f"the CA directory {directory} is no longer watched: {exc}"
            self.on_event(f"plug-in CA updates will not be picked up: {self.ca_reload_error}")
            log.exception("the CA directory watch failed")

    def reload_ca(self) -> bool:
        """Load the CA directory again and hand a changed bundle to the mesh (see the module docstring).
        Returns True when a new bundle was taken, False when nothing changed or it was refused."""
        try:
            result = self.ca.reload()
        except CaError as exc:
            self.ca_reload_error = str(exc)
            self.on_event(f"plug-in CA update refused, the CA keeps signing with its current bundle: {exc}")
            return False
        self.ca_reload_error = None
        if not result.changed:
            return False
        self.ca_reloads += 1
        self.ca_reloaded_at = dt.datetime.now(dt.UTC)
        self.server.refresh_serving_certificate()
        roots = self.ca.root_cert_pem
        if result.roots_changed:
            for ident in self.pods.values():
                # The agent's own trust first: the CSR it sends next meets the re-issued serving cert.
                ident.client.update_root_cert(roots)
                ident.agent.update_trust_bundle(roots)
        what = []
        if result.signing_changed:
            what.append(f"signing certificate {self.ca.signing_cert.subject.rfc4514_string()}")
        if result.roots_changed:
            subjects = ", ".join(r.subject.rfc4514_string() for r in self.ca.roots)
            what.append(f"root bundle [{subjects}], pushed to {len(self.pods)} pod(s)")
        self.on_event("plug-in CA reloaded: " + "; ".join(what))
        return True

    def ca_status(self) -> dict[str, Any]:
        """The CA's current bundle and the outcome of the last reload (for `isthmus status`)."""
        ca = self.ca
        return {
            "directory": str(ca.directory) if ca.directory is not None else None,
            "signingCert": ca.signing_cert.subject.rfc4514_string(),
            "notAfter": ca.not_after.isoformat(),
            "roots": [r.subject.rfc4514_string() for r in ca.roots],
            "reloads": self.ca_reloads,
            "reloadedAt": self.ca_reloaded_at.isoformat() if self.ca_reloaded_at else None,
            "reloadError": self.ca_reload_error,
        }

    async def start_pod(
        self,
        namespace: str,
        pod: str,
        service_account: str,
        workdir: Path,
        secrets: list[Any],
        gateways: list[Any] | None = None,
        gateway_labels: dict[str, str] | None = None,
    ) -> str:
        """Start the pod's SDS agent (first certificate included); returns its socket path.
        `gateway_labels`: the pod is a gateway with these labels (`gateways` may then verify
        ``kubernetes-gateway://`` credentials for it)."""
        token = self.tokens.issue(pod, namespace, service_account)
        client = CaClient(self.target, token, root_cert_pem=self.ca.root_cert_pem)
        agent = SdsAgent(
            spiffe_id(self.trust_domain, namespace, service_account),
            client,
            workdir,
            rotation_ratio=self.rotation_ratio,
            ttl=self.ttl,
            key_type=self.key_type,
        )
        ident = PodIdentity(
            agent=agent, client=client, pod=pod, namespace=namespace, gateway_labels=gateway_labels
        )
        self.pods[(namespace, pod)] = ident
        self._sync_secrets(ident, secrets, gateways or [])
        try:
            return await agent.start()
        except Exception:
            await self.stop_pod(namespace, pod)
            raise

    async def stop_pod(self, namespace: str, pod: str) -> None:
        ident = self.pods.pop((namespace, pod), None)
        if ident is None:
            return
        await ident.agent.stop()
        await ident.client.close()
        self.tokens.revoke(pod, namespace)

    def waiting(self, namespace: str, pod: str) -> dict[str, str]:
        """The secrets the pod's Envoy asked for and does not have, each with why (`SdsAgent.waiting`; for
        a credentialName, the Secret it names)."""
        ident = self.pods.get((namespace, pod))
        if ident is None:
            return {}
        out = {}
        for name, reason in ident.agent.waiting().items():
            if not reason and name in ident.rejected:
                reason = f"Secret not served: {ident.rejected[name]}"
            elif not reason and name.startswith(KUBERNETES_PREFIX):
                secret = name.removeprefix(KUBERNETES_PREFIX)
                reason = f"no Secret {secret!r} with a certificate (or CA) in namespace {namespace}"
            out[name] = reason or "not served yet"
        return out

    def sync_secrets(self, secrets: list[Any], gateways: list[Any] | None = None) -> None:
        """Serve every pod the TLS Secrets of its own namespace (called when Secrets or Gateways change)."""
        for ident in self.pods.values():
            self._sync_secrets(ident, secrets, gateways or [])

    def _sync_secrets(self, ident: PodIdentity, secrets: list[Any], gateways: Sequence[Any] = ()) -> None:
        """istiod's SecretGen for one pod (`isthmus.security.credentials`): every credential name its
        Envoy may ask for, from the Secrets of its own namespace (``kubernetes://<name>``,
        ``kubernetes://<ns>/<name>`` and the ``-cacert`` CA-only companions), and for a gateway the
        ``kubernetes-gateway://`` names its Gateways verify."""
        data = {(c.namespace, c.name): c.spec.decoded() for c in secrets if c.namespace == ident.namespace}
        verified: frozenset[str] = frozenset()
        if ident.gateway_labels is not None:
            verified = verified_references(gateways, ident.namespace, ident.gateway_labels)
        wanted: set[str] = set()
        servable = servable_credentials(data, ident.namespace, verified)
        for gone in set(ident.handed) - set(servable):
            ident.handed.pop(gone)
            ident.rejected.pop(gone, None)
        for name, info in servable.items():
            if ident.handed.get(name) == info:
                if name not in ident.rejected:
                    wanted.add(name)
                continue
            ident.handed[name] = info
            ident.rejected.pop(name, None)
            if info.is_ca:
                self._serve(ident, wanted, name, ident.agent.add_root, info.cert, info.crl)
            else:
                self._serve(ident, wanted, name, ident.agent.add_secret, info.cert, info.key, info.staple)
        for stale in ident.secrets - wanted:
            ident.agent.remove_secret(stale)
        ident.secrets = wanted

    @staticmethod
    def _serve(ident: PodIdentity, wanted: set[str], name: str, add: Any, *args: Any) -> None:
        """Hand one secret to the agent; an unreadable one (bad PEM, key not matching) is not served,
        like istiod skipping an invalid certificate: Envoy's filter chain then fails its handshakes."""
        try:
            add(name, *args)
        except Exception as exc:
            log.warning("secret %s/%s not served: %s", ident.namespace, name, exc)
            ident.rejected[name] = str(exc)
            return
        wanted.add(name)
