"""Workload identity for local pods: the mesh CA, its CSR service on :15012, and one SDS agent per proxy.

Each proxy's agent generates its key locally and gets its certificate through the same authenticated
CSR service a remote agent would use (a per-pod token the runner mints, bound to the pod's namespace and
service account). Kubernetes Secrets of the pod's namespace (generic cert/key/cacert/crl or TLS
tls.crt/tls.key/ca.crt/ca.crl keys) are served to its Envoy as `kubernetes://<name>` (and
`<name>-cacert`), for Gateway and DestinationRule `credentialName`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.agent.sds import SdsAgent
from isthmus.model.durations import to_seconds
from isthmus.security.ca import CertificateAuthority
from isthmus.security.ca_server import CaClient, CaServer, TokenRegistry
from isthmus.security.identity import spiffe_id
from isthmus.security.sds import CACERT_SUFFIX, KUBERNETES_PREFIX, kubernetes_secret_name

log = logging.getLogger(__name__)

CA_PORT = 15012


@dataclass
class PodIdentity:
    agent: SdsAgent
    client: CaClient
    pod: str
    namespace: str
    secrets: set[str] = field(default_factory=set)


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
        self.rotation_ratio = float(meta.get("SECRET_GRACE_PERIOD_RATIO", 0.5))
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
        self, namespace: str, pod: str, service_account: str, workdir: Path, secrets: list[Any]
    ) -> str:
        """Start the pod's SDS agent (first certificate included); returns its socket path."""
        token = self.tokens.issue(pod, namespace, service_account)
        client = CaClient(self.target, token, root_cert_pem=self.ca.root_cert_pem)
        agent = SdsAgent(
            spiffe_id(self.trust_domain, namespace, service_account),
            client,
            workdir,
            rotation_ratio=self.rotation_ratio,
            ttl=self.ttl,
        )
        ident = PodIdentity(agent=agent, client=client, pod=pod, namespace=namespace)
        self.pods[(namespace, pod)] = ident
        self._sync_secrets(ident, secrets)
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
            if not reason and name.startswith(KUBERNETES_PREFIX):
                secret = name.removeprefix(KUBERNETES_PREFIX)
                reason = f"no Secret {secret!r} with a certificate (or CA) in namespace {namespace}"
            out[name] = reason or "not served yet"
        return out

    def sync_secrets(self, secrets: list[Any]) -> None:
        """Serve every pod the TLS Secrets of its own namespace (called when Secrets change)."""
        for ident in self.pods.values():
            self._sync_secrets(ident, secrets)

    def _sync_secrets(self, ident: PodIdentity, secrets: list[Any]) -> None:
        """istiod's credentials controller for one pod: every Secret of its namespace with a certificate
        is served as ``kubernetes://<name>``, and the CA of ``<name>`` as ``kubernetes://<name>-cacert``:
        from a Secret named ``<name>-cacert`` when one exists (even one without a CA: then none is
        served, as GetCaCert does not fall back), else from ``<name>`` itself."""
        by_name = {cfg.name: cfg.spec.decoded() for cfg in secrets if cfg.namespace == ident.namespace}
        wanted: set[str] = set()
        # A `kubernetes://<x>-cacert` request is always a CA one (istiod's isCAOnlySecret), so a Secret
        # named `<x>-cacert` only ever serves the CA of `<x>`.
        bases = {n.removesuffix(CACERT_SUFFIX) for n in by_name} - {""}
        for base in bases:
            sds_name = kubernetes_secret_name(base)
            cert_info = extract_cert_info(by_name.get(base, {}))
            if cert_info is not None:
                self._serve(ident, wanted, sds_name, ident.agent.add_secret, *cert_info)
            root = extract_root(by_name.get(base + CACERT_SUFFIX, by_name.get(base, {})))
            if root is not None:
                root_name = sds_name + CACERT_SUFFIX
                self._serve(ident, wanted, root_name, ident.agent.add_root, *root)
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
            return
        wanted.add(name)


def _value(data: dict[str, bytes], key: str) -> bytes | None:
    return data.get(key) or None  # Kubernetes keeps empty keys; istiod's hasValue ignores them


def extract_cert_info(data: dict[str, bytes]) -> tuple[bytes, bytes] | None:
    """istiod's ExtractCertInfo: a generic Secret's cert/key first, then a TLS Secret's tls.crt/tls.key."""
    for cert_key, key_key in (("cert", "key"), ("tls.crt", "tls.key")):
        cert, key = _value(data, cert_key), _value(data, key_key)
        if cert and key:
            return cert, key
    return None


def extract_root(data: dict[str, bytes]) -> tuple[bytes, bytes | None] | None:
    """istiod's ExtractRoot: a generic Secret's cacert (+ crl) first, then a TLS Secret's ca.crt
    (+ ca.crl)."""
    for ca_key, crl_key in (("cacert", "crl"), ("ca.crt", "ca.crl")):
        ca = _value(data, ca_key)
        if ca:
            return ca, _value(data, crl_key)
    return None
