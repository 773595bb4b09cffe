"""The registry of every kind Isthmus reads: ``KINDS[(group, kind)] -> KindInfo``."""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.api import kube, mesh, networking, security, telemetry
from isthmus.api.isthmus_kinds import Workload
from isthmus.api.types import ApiModel

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
ISTHMUS = "isthmus.dev"
CORE = ""
APPS = "apps"
K8S_NETWORKING = "networking.k8s.io"


@dataclass(frozen=True)
class KindInfo:
    group: str
    kind: str
    spec_model: type[ApiModel]
    namespaced: bool = True
    versions: tuple[str, ...] = ("v1",)
    # Fields that live at the top level of the document rather than under ``spec`` (Secret: type, data).
    top_level_fields: tuple[str, ...] = field(default=())

    @property
    def preferred_version(self) -> str:
        return self.versions[0]

    @property
    def api_version(self) -> str:
        """``group/version`` of the preferred version (``v1`` for the core group)."""
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]


_NET_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SEC_VERSIONS = ("v1", "v1beta1")

_ALL = [
    KindInfo(NETWORKING, "VirtualService", networking.VirtualService, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "DestinationRule", networking.DestinationRule, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "Gateway", networking.Gateway, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "ServiceEntry", networking.ServiceEntry, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "Sidecar", networking.Sidecar, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "WorkloadEntry", networking.WorkloadEntry, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "WorkloadGroup", networking.WorkloadGroup, versions=_NET_VERSIONS),
    KindInfo(NETWORKING, "EnvoyFilter", networking.EnvoyFilter, versions=("v1alpha3",)),
    KindInfo(NETWORKING, "ProxyConfig", networking.ProxyConfig, versions=("v1beta1",)),
    KindInfo(SECURITY, "PeerAuthentication", security.PeerAuthentication, versions=_SEC_VERSIONS),
    KindInfo(SECURITY, "AuthorizationPolicy", security.AuthorizationPolicy, versions=_SEC_VERSIONS),
    KindInfo(SECURITY, "RequestAuthentication", security.RequestAuthentication, versions=_SEC_VERSIONS),
    KindInfo(TELEMETRY, "Telemetry", telemetry.Telemetry, versions=("v1", "v1alpha1")),
    KindInfo(CORE, "Service", kube.ServiceSpec),
    KindInfo(CORE, "Namespace", kube.NamespaceSpec, namespaced=False),
    KindInfo(
        CORE,
        "Secret",
        kube.Secret,
        top_level_fields=("type", "data", "stringData", "immutable"),
    ),
    KindInfo(CORE, "Pod", kube.PodSpec),
    KindInfo(APPS, "Deployment", kube.DeploymentSpec),
    KindInfo(K8S_NETWORKING, "Ingress", kube.IngressSpec),
    KindInfo(K8S_NETWORKING, "IngressClass", kube.IngressClassSpec, namespaced=False),
    KindInfo(ISTHMUS, "Workload", Workload, versions=("v1alpha1",)),
    KindInfo(ISTHMUS, "MeshConfig", mesh.MeshConfig, namespaced=False, versions=("v1alpha1",)),
]

KINDS: dict[tuple[str, str], KindInfo] = {(k.group, k.kind): k for k in _ALL}
BY_KIND: dict[str, KindInfo] = {k.kind: k for k in _ALL}

# Kubernetes kinds Isthmus does not model: skipped (with an Info note) by the analyzer's lenient loading.
KNOWN_UNMODELLED_KINDS = frozenset(
    {
        "ConfigMap",
        "ServiceAccount",
        "Endpoints",
        "EndpointSlice",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "CustomResourceDefinition",
        "WasmPlugin",
    }
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """``networking.istio.io/v1`` -> (``networking.istio.io``, ``v1``); ``v1`` -> (``""``, ``v1``)."""
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


def kind_info(api_version: str, kind: str) -> KindInfo | None:
    """The KindInfo for an apiVersion/kind pair, or None when the pair is not served."""
    group, version = split_api_version(api_version)
    info = KINDS.get((group, kind))
    if info is None or version not in info.versions:
        return None
    return info


def info_for_kind(kind: str) -> KindInfo | None:
    """The KindInfo for a kind name alone (kind names are unique across the groups we serve)."""
    return BY_KIND.get(kind)
