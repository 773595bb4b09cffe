"""Kubernetes kinds the mesh reads: v1 Service, Namespace, Secret, Pod, apps/v1 Deployment and
networking.k8s.io/v1 Ingress and IngressClass.

Service, Namespace, Secret, Ingress and IngressClass reject unknown fields; Pod and Deployment are huge
and we read a few of their fields, so unknown fields are kept there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from isthmus.api.types import ApiModel, ExtraAllowedModel, Int32, IntOrString

# ==================================================================================================
# Service


class ServicePort(ApiModel):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    app_protocol: str | None = None
    port: Int32
    target_port: IntOrString | None = None
    node_port: Int32 | None = None


class ServiceSpec(ApiModel):
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] | None = None
    external_name: str | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] = Field(default_factory=list, alias="clusterIPs")
    external_ips: list[str] = Field(default_factory=list, alias="externalIPs")
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] = Field(default_factory=list)
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    health_check_node_port: Int32 | None = None
    publish_not_ready_addresses: bool | None = None
    session_affinity: Literal["ClientIP", "None"] | None = None
    session_affinity_config: dict[str, Any] | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] = Field(default_factory=list)
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    traffic_distribution: str | None = None

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


# ==================================================================================================
# Namespace


class NamespaceSpec(ApiModel):
    finalizers: list[str] = Field(default_factory=list)


# ==================================================================================================
# Secret: its fields live at the top level of the document (no ``spec``).


class Secret(ApiModel):
    type: str | None = None
    data: dict[str, str] = Field(default_factory=dict)  # base64
    string_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None

    def decoded(self) -> dict[str, bytes]:
        """``data`` decoded, with ``stringData`` merged over it (as the API server does)."""
        import base64

        out = {k: base64.b64decode(v) for k, v in self.data.items()}
        out.update({k: v.encode() for k, v in self.string_data.items()})
        return out


# ==================================================================================================
# Pod / Deployment (lenient: unknown fields allowed)


class _KubeModel(ExtraAllowedModel):
    """A field given as ``null`` is unset, as the Kubernetes API server reads it (``args:`` with no value)."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v is None for v in data.values()):
            return {k: v for k, v in data.items() if v is not None}
        return data


class ContainerPort(_KubeModel):
    container_port: Int32
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    host_port: Int32 | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")


class Container(_KubeModel):
    name: str | None = None  # required by Kubernetes: a validation error, so that analysis still sees the pod
    image: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(default_factory=list)


class PodSpec(_KubeModel):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    service_account_name: str | None = None
    service_account: str | None = None  # deprecated alias of serviceAccountName
    host_network: bool | None = None


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class PodTemplateMetadata(_KubeModel):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplateSpec(_KubeModel):
    metadata: PodTemplateMetadata | None = None
    spec: PodSpec | None = None


class DeploymentSpec(_KubeModel):
    replicas: Int32 | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None


# ==================================================================================================
# networking.k8s.io/v1 Ingress and IngressClass (istiod turns the Ingresses of its class into Gateways
# and VirtualServices: isthmus.model.ingress)


class ServiceBackendPort(ApiModel):
    name: str | None = None
    number: Int32 | None = None


class IngressServiceBackend(ApiModel):
    name: str
    port: ServiceBackendPort | None = None


class TypedLocalObjectReference(ApiModel):
    api_group: str | None = None
    kind: str
    name: str


class IngressBackend(ApiModel):
    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


class HTTPIngressPath(ApiModel):
    path: str | None = None
    path_type: Literal["Exact", "Prefix", "ImplementationSpecific"] | None = None
    backend: IngressBackend


class HTTPIngressRuleValue(ApiModel):
    paths: list[HTTPIngressPath]


class IngressRule(ApiModel):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    secret_name: str | None = None


class IngressSpec(ApiModel):
    ingress_class_name: str | None = None
    default_backend: IngressBackend | None = None
    tls: list[IngressTLS] = Field(default_factory=list)
    rules: list[IngressRule] = Field(default_factory=list)


class IngressClassParametersReference(ApiModel):
    api_group: str | None = None
    kind: str
    name: str
    scope: Literal["Cluster", "Namespace"] | None = None
    namespace: str | None = None


class IngressClassSpec(ApiModel):
    controller: str | None = None
    parameters: IngressClassParametersReference | None = None
