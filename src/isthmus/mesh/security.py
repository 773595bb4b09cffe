"""Workload identity for local pods: the mesh CA, its CSR service on :15012, and one SDS agent per proxy.

Each proxy's agent generates its key locally and gets its certificate through the same authenticated
CSR service a remote agent would use (a per-pod token the runner mints, bound to the pod's namespace and
service account). Kubernetes `kubernetes.io/tls` Secrets of the pod's namespace are served to its Envoy
as `kubernetes://<name>` (and `<name>-cacert`), for Gateway and DestinationRule `credentialName`.
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
from isthmus.security.sds import CACERT_SUFFIX, kubernetes_secret_name

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

    def sync_secrets(self, secrets: list[Any]) -> None:
        """Serve every pod the TLS Secrets of its own namespace (called when Secrets change)."""
        for ident in self.pods.values():
            self._sync_secrets(ident, secrets)

    def _sync_secrets(self, ident: PodIdentity, secrets: list[Any]) -> None:
        wanted: set[str] = set()
        for cfg in secrets:
            if cfg.namespace != ident.namespace:
                continue
            data = cfg.spec.decoded()
            name = kubernetes_secret_name(cfg.name)
            try:
                if cfg.name.endswith(CACERT_SUFFIX) and ("ca.crt" in data or "cacert" in data):
                    # A separate `<credential>-cacert` Secret holds the CA of a MUTUAL credential.
                    ident.agent.add_root(name, data.get("ca.crt") or data["cacert"])
                    wanted.add(name)
                    continue
                # A TLS Secret's tls.crt/tls.key, or a generic one's cert/key (Istio reads both).
                cert, key = data.get("tls.crt") or data.get("cert"), data.get("tls.key") or data.get("key")
                if cert and key:
                    ident.agent.add_secret(name, cert, key)
                    wanted.add(name)
                ca = data.get("ca.crt")
                if ca:
                    ident.agent.add_root(name + CACERT_SUFFIX, ca)
                    wanted.add(name + CACERT_SUFFIX)
                elif "cacert" in data:
                    ident.agent.add_root(name + CACERT_SUFFIX, data["cacert"])
                    wanted.add(name + CACERT_SUFFIX)
            except Exception as exc:
                log.warning("secret %s/%s not served: %s", cfg.namespace, cfg.name, exc)
        for stale in ident.secrets - wanted:
            ident.agent.remove_secret(stale)
        ident.secrets = wanted
