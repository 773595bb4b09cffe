"""PeerAuthentication: the effective mTLS mode of a workload port, with Istio's precedence.

workload (selector) > namespace (no selector) > mesh (root namespace, no selector) > PERMISSIVE; the
oldest policy wins within a level; UNSET inherits the level above; `portLevelMtls[targetPort]` overrides
the workload's mode and an UNSET port inherits it (`pilot/pkg/security/authn/policy_applier.go`
ComposePeerAuthentication, `pilot/pkg/model/authentication.go`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from isthmus.config.store import Config
from isthmus.model.virtual_services import config_creation_key
from isthmus.registry.build import labels_match

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"
UNSET = "UNSET"


def _mode(value: str | None) -> str:
    return value or UNSET


def _selector(cfg: Config) -> Mapping[str, str] | None:
    sel = cfg.spec.selector
    if sel is None or not sel.match_labels:
        return None
    return sel.match_labels


@dataclass(frozen=True)
class MtlsPolicy:
    """The resolved mode of a workload, plus its per-port overrides."""

    mode: str
    ports: Mapping[int, str]
    policies: tuple[Config, ...] = ()

    def for_port(self, port: int) -> str:
        return self.ports.get(port, self.mode)


def _oldest(configs: Sequence[Config]) -> Config | None:
    return min(configs, key=config_creation_key) if configs else None


def namespace_mode(policies: Sequence[Config], namespace: str, root_namespace: str) -> str:
    """Namespace- and mesh-level mode only: what client-side auto-mTLS uses (GetNamespaceMutualTLSMode)."""
    ns_policy = _oldest([c for c in policies if c.namespace == namespace and _selector(c) is None])
    mesh_policy = _oldest([c for c in policies if c.namespace == root_namespace and _selector(c) is None])
    mode = UNSET
    for cfg in (ns_policy, mesh_policy):
        if mode == UNSET and cfg is not None and cfg.spec.mtls is not None:
            mode = _mode(cfg.spec.mtls.mode)
    return PERMISSIVE if mode == UNSET else mode


def workload_mtls(
    policies: Sequence[Config], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> MtlsPolicy:
    workload = _oldest(
        [
            c
            for c in policies
            if c.namespace == namespace
            and _selector(c) is not None
            and namespace != root_namespace
            and labels_match(_selector(c), labels)
        ]
    )
    ns_policy = _oldest([c for c in policies if c.namespace == namespace and _selector(c) is None])
    mesh_policy = _oldest([c for c in policies if c.namespace == root_namespace and _selector(c) is None])
    mode = UNSET
    for cfg in (workload, ns_policy, mesh_policy):
        if mode == UNSET and cfg is not None and cfg.spec.mtls is not None:
            mode = _mode(cfg.spec.mtls.mode)
    if mode == UNSET:
        mode = PERMISSIVE
    ports: dict[int, str] = {}
    if workload is not None:
        for port, setting in (workload.spec.port_level_mtls or {}).items():
            port_mode = _mode(setting.mode if setting is not None else None)
            ports[int(port)] = mode if port_mode == UNSET else port_mode
    used = tuple(c for c in (workload, ns_policy, mesh_policy) if c is not None)
    return MtlsPolicy(mode=mode, ports=ports, policies=used)
