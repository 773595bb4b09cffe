"""Who is asking for config: the identity of a proxy, as carried in Envoy's node (id + metadata).

The node id follows istiod's format so that tools reading it keep working:
``<type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`` where type is ``sidecar`` or ``router``
(gateways). Metadata keys follow istio-agent's (NAMESPACE, LABELS, WORKLOAD_NAME, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from google.protobuf import json_format

from isthmus.registry.build import locality_from_labels

if TYPE_CHECKING:
    from isthmus.registry.types import Pod

ProxyKind = Literal["sidecar", "gateway"]

_NODE_TYPE = {"sidecar": "sidecar", "gateway": "router"}
_KIND_OF_NODE_TYPE = {"sidecar": "sidecar", "router": "gateway"}


class InvalidNode(ValueError):
    """The node id or metadata does not identify a proxy of this mesh."""


@dataclass(frozen=True)
class Proxy:
    id: str
    kind: ProxyKind
    ip: str
    namespace: str
    instance: str
    workload: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # `region/zone/subzone` (empty: unknown): what locality load balancing ranks endpoints against.
    locality: str = ""
    # Set by the xDS server when the proxy's ADS stream is delta (incremental) xDS: only then can its
    # sidecar table's virtual hosts go over VHDS, which Envoy serves over delta ADS only.
    delta_xds: bool = False

    @property
    def port_offset(self) -> int:
        """The shift of its listen ports below 1024 (node metadata ISTHMUS_PORT_OFFSET; DESIGN §3)."""
        try:
            return int(self.metadata.get("ISTHMUS_PORT_OFFSET", 0) or 0)
        except (TypeError, ValueError):
            return 0

    @staticmethod
    def node_id(kind: ProxyKind, ip: str, instance: str, namespace: str) -> str:
        return f"{_NODE_TYPE[kind]}~{ip}~{instance}.{namespace}~{namespace}.svc.cluster.local"

    @classmethod
    def of_pod(cls, pod: Pod, metadata: Mapping[str, Any] | None = None) -> Proxy:
        """The proxy of a pod with a sidecar, or of a gateway pod."""
        kind: ProxyKind = "gateway" if pod.gateway else "sidecar"
        return cls(
            id=cls.node_id(kind, pod.ip, pod.name, pod.namespace),
            kind=kind,
            ip=pod.ip,
            namespace=pod.namespace,
            instance=pod.name,
            workload=pod.workload,
            labels=dict(pod.labels),
            service_account=pod.service_account,
            metadata=dict(metadata or {}),
            locality=pod.locality or locality_from_labels(pod.labels),
        )

    def node_metadata(self) -> dict[str, Any]:
        """Metadata the agent puts in the bootstrap; `from_node` reads it back."""
        meta: dict[str, Any] = dict(self.metadata)
        meta.update(
            {
                "NAMESPACE": self.namespace,
                "NAME": self.instance,
                "WORKLOAD_NAME": self.workload,
                "LABELS": dict(self.labels),
                "SERVICE_ACCOUNT": self.service_account,
                "INSTANCE_IPS": self.ip,
                "ISTHMUS_PROXY_KIND": self.kind,
            }
        )
        return meta

    @classmethod
    def from_node(cls, node_id: str, metadata: Mapping[str, Any], locality: str = "") -> Proxy:
        """`locality`: the node's own (`region/zone/subzone`), used when its labels give none (istiod's
        setTopologyLabels: the registry's locality, from the labels, before the one the proxy sends)."""
        parts = node_id.split("~")
        if len(parts) != 4 or parts[0] not in _KIND_OF_NODE_TYPE:
            raise InvalidNode(f"node id {node_id!r} is not <sidecar|router>~<ip>~<pod>.<ns>~<domain>")
        node_type, ip, pod_ns, _domain = parts
        instance, _, ns_from_id = pod_ns.rpartition(".")
        namespace = str(metadata.get("NAMESPACE") or ns_from_id)
        if not instance or not namespace:
            raise InvalidNode(f"node id {node_id!r} has no pod name or namespace")
        labels = {str(k): str(v) for k, v in dict(metadata.get("LABELS") or {}).items()}
        return cls(
            id=node_id,
            kind=_KIND_OF_NODE_TYPE[node_type],  # type: ignore[arg-type]
            ip=ip,
            namespace=namespace,
            instance=str(metadata.get("NAME") or instance),
            workload=str(metadata.get("WORKLOAD_NAME") or ""),
            labels=labels,
            service_account=str(metadata.get("SERVICE_ACCOUNT") or "default"),
            metadata=dict(metadata),
            locality=locality_from_labels(labels) or locality,
        )

    @classmethod
    def from_envoy_node(cls, node: Any) -> Proxy:
        """From an `envoy.config.core.v3.Node` message."""
        metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
        loc = node.locality
        return cls.from_node(node.id, metadata, "/".join((loc.region, loc.zone, loc.sub_zone)).rstrip("/"))
