"""Kubernetes kinds: the API server's rules for Service, Namespace, Secret, Pod and Deployment (the parts
the mesh depends on), with Kubernetes' wording."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

from isthmus.api import kube
from isthmus.api.meta import dns1035_label_error, dns1123_label_error, dns1123_subdomain_error
from isthmus.api.paths import join
from isthmus.api.validation import register
from isthmus.api.validation.common import Report, is_ip, q

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

_IANA_SVC_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


def iana_svc_name_error(name: str) -> str | None:
    """Kubernetes IANA_SVC_NAME (a named port): 1-15 chars, lower-case alphanumerics and '-', at least
    one letter, no '--', not starting or ending with '-'."""
    if len(name) > 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC_NAME_RE.match(name):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if "--" in name:
        return "must not contain consecutive hyphens"
    if not re.search(r"[a-z]", name):
        return "must contain at least one letter (a-z)"
    return None


def _port_range(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"Invalid value: {v}: must be between 1 and 65535, inclusive"


@register("Service")
def validate_service(res: Resource, r: Report) -> None:
    spec: kube.ServiceSpec = res.spec  # type: ignore[assignment]
    err = dns1035_label_error(res.name)
    if err:
        r.error("metadata.name", f"Invalid value: {err}")
    svc_type = spec.type or "ClusterIP"
    if svc_type == "ExternalName":
        if not spec.external_name:
            r.error("spec.externalName", "Required value")
        else:
            e = dns1123_subdomain_error(spec.external_name.rstrip("."))
            if e:
                r.error("spec.externalName", f"Invalid value: {e}")
    elif not spec.ports and spec.cluster_ip != "None":
        r.error("spec.ports", "Required value")
    if spec.cluster_ip not in (None, "", "None") and not is_ip(spec.cluster_ip):
        r.error(
            "spec.clusterIP",
            f"Invalid value: {q(spec.cluster_ip)}: must be empty, 'None', or a valid IP address",
        )
    for i, ip in enumerate(spec.cluster_ips):
        if ip != "None" and not is_ip(ip):
            r.error(f"spec.clusterIPs[{i}]", f"Invalid value: {q(ip)}: must be a valid IP address")
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        p = f"spec.ports[{i}]"
        if port.name:
            e = dns1123_label_error(port.name)
            if e:
                r.error(join(p, "name"), f"Invalid value: {e}")
            if port.name in names:
                r.error(join(p, "name"), f"Duplicate value: {q(port.name)}")
            names.add(port.name)
        elif len(spec.ports) > 1:
            r.error(join(p, "name"), "Required value")
        r.error(join(p, "port"), _port_range(port.port))
        key = (port.port, port.protocol or "TCP")
        if key in seen:
            r.error(p, f"Duplicate value: {{port: {port.port}, protocol: {q(port.protocol or 'TCP')}}}")
        seen.add(key)
        tp = port.target_port
        if isinstance(tp, int):
            r.error(join(p, "targetPort"), _port_range(tp))
        elif isinstance(tp, str):
            e = iana_svc_name_error(tp)
            if e:
                r.error(join(p, "targetPort"), f"Invalid value: {q(tp)}: {e}")
        if port.node_port is not None:
            if svc_type not in ("NodePort", "LoadBalancer"):
                r.error(join(p, "nodePort"), "Forbidden: may not be used when `type` is 'ClusterIP'")
            else:
                r.error(join(p, "nodePort"), _port_range(port.node_port))
    if spec.cluster_ip == "None" and svc_type != "ClusterIP":
        r.error(
            "spec.clusterIP", f"Invalid value: \"None\": may not be set to 'None' for {svc_type} services"
        )


@register("Namespace")
def validate_namespace(res: Resource, r: Report) -> None:
    err = dns1123_label_error(res.name)
    if err:
        r.error("metadata.name", f"Invalid value: {err}")


@register("Secret")
def validate_secret(res: Resource, r: Report) -> None:
    sec: kube.Secret = res.spec  # type: ignore[assignment]
    for key, value in sec.data.items():
        p = join("data", key)
        if not _SECRET_KEY_RE.match(key):
            r.error(
                p,
                f"Invalid value: {q(key)}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            )
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            r.error(p, "illegal base64 data")
    for key in sec.string_data:
        if not _SECRET_KEY_RE.match(key):
            r.error(
                join("stringData", key),
                f"Invalid value: {q(key)}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            )
    if sec.type == "kubernetes.io/tls":
        keys = set(sec.data) | set(sec.string_data)
        for required in ("tls.crt", "tls.key"):
            if required not in keys:
                r.error(join("data", required), "Required value")


def _validate_pod_spec(r: Report, p: str, spec: kube.PodSpec | None) -> None:
    if spec is None:
        return
    names: set[str] = set()
    for i, c in enumerate([*spec.init_containers, *spec.containers]):
        cp = join(
            p,
            "initContainers" if i < len(spec.init_containers) else "containers",
            i if i < len(spec.init_containers) else i - len(spec.init_containers),
        )
        if c.name is None:
            r.error(join(cp, "name"), "Required value")
        else:
            err = dns1123_label_error(c.name)
            if err:
                r.error(join(cp, "name"), f"Invalid value: {err}")
            if c.name in names:
                r.error(join(cp, "name"), f"Duplicate value: {q(c.name)}")
            names.add(c.name)
        for j, port in enumerate(c.ports):
            r.error(join(cp, "ports", j, "containerPort"), _port_range(port.container_port))
            if port.name:
                e = iana_svc_name_error(port.name)
                if e:
                    r.error(join(cp, "ports", j, "name"), f"Invalid value: {q(port.name)}: {e}")


@register("Pod")
def validate_pod(res: Resource, r: Report) -> None:
    _validate_pod_spec(r, "spec", res.spec)  # type: ignore[arg-type]


@register("Deployment")
def validate_deployment(res: Resource, r: Report) -> None:
    spec: kube.DeploymentSpec = res.spec  # type: ignore[assignment]
    if spec.replicas is not None and spec.replicas < 0:
        r.error("spec.replicas", f"Invalid value: {spec.replicas}: must be greater than or equal to 0")
    template = spec.template
    if template is None:
        r.error("spec.template", "Required value")
        return
    labels = template.metadata.labels if template.metadata is not None else {}
    if spec.selector is None:
        r.error("spec.selector", "Required value")
    elif not all(labels.get(k) == v for k, v in spec.selector.match_labels.items()):
        r.error("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
    _validate_pod_spec(r, "spec.template.spec", template.spec)
