"""Workload identity for local pods: the mesh CA, its CSR service on :15012, and one SDS agent per proxy.

Each proxy's agent generates its key locally and gets its certificate through the same authenticated
CSR service a remote agent would use (a per-pod token the runner mints, bound to the pod's namespace and
service account). Kubernetes Secrets of the pod's namespace (generic cert/key/cacert/crl or TLS
tls.crt/tls.key/ca.crt/ca.crl/tls.ocsp-staple keys) are served to its Envoy under the names istiod's
SecretGen would answer (`isthmus.security.credentials`): `kubernetes://<name>` and
`kubernetes://<namespace>/<name>`, their CA-only `-cacert` companions, and for a gateway the
`kubernetes-gateway://` names its own Gateways verify; for Gateway and DestinationRule `credentialName`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.agent.sds import SdsAgent
from isthmus.model.durations import to_seconds
from isthmus.security.ca import CertificateAuthority, KeyType
from isthmus.security.ca_server import CaClient, CaServer, TokenRegistry
from isthmus.security.credentials import servable_credentials, verified_references
from isthmus.security.identity import spiffe_id
from isthmus.security.sds import KUBERNETES_PREFIX

log = logging.getLogger(__name__)

CA_PORT = 15012


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
        self, state_dir: Path, trust_domain: str, proxy_metadata: dict[str, str] | None = None
    ) -> None:
        self.ca = CertificateAuthority.load_or_create(state_dir / "ca", trust_domain=trust_domain)
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

    async def start(self, host: str) -> str:
        self.target = await self.server.start(host, CA_PORT)
        return self.target

    async def stop(self) -> None:
        for key in list(self.pods):
            await self.stop_pod(*key)
        await self.server.stop()

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
