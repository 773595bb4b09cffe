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


# --- networking.k8s.io/v1 Ingress, IngressClass (pkg/apis/networking/validation) ---------------------

_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def _validate_ingress_backend(r: Report, p: str, backend: kube.IngressBackend) -> None:
    """validateIngressBackend: a service or a resource, and a service names its port by name or number."""
    if backend.service is not None and backend.resource is not None:
        r.error(p, "Invalid value: cannot set both resource and service backends")
        return
    if backend.service is None and backend.resource is None:
        r.error(p, "Invalid value: resource or service backend is required")
        return
    if backend.service is None:
        return
    sp = join(p, "service")
    err = dns1035_label_error(backend.service.name)
    if err:
        r.error(join(sp, "name"), f"Invalid value: {err}")
    port = backend.service.port
    if port is None or (port.name is None and port.number is None):
        r.error(join(sp, "port"), "Invalid value: port name or number is required")
    elif port.name is not None and port.number is not None:
        r.error(join(sp, "port"), "Invalid value: cannot set both port name & port number")
    elif port.name is not None:
        e = iana_svc_name_error(port.name)
        if e:
            r.error(join(sp, "port", "name"), f"Invalid value: {q(port.name)}: {e}")
    elif port.number is not None:
        r.error(join(sp, "port", "number"), _port_range(port.number))


def _ingress_host_error(host: str) -> str | None:
    """validateIngressRules' host rule (v1): a DNS-1123 subdomain, or a wildcard `*.` before one; no IP."""
    if is_ip(host):
        return f"Invalid value: {q(host)}: must be a DNS name, not an IP address"
    err = dns1123_subdomain_error(host[2:] if host.startswith("*.") else host)
    return f"Invalid value: {err}" if err else None


@register("Ingress")
def validate_ingress(res: Resource, r: Report) -> None:
    spec: kube.IngressSpec = res.spec  # type: ignore[assignment]
    if spec.default_backend is None and not spec.rules:
        r.error("spec", "Invalid value: either `defaultBackend` or `rules` must be specified")
    if spec.default_backend is not None:
        _validate_ingress_backend(r, "spec.defaultBackend", spec.default_backend)
    if spec.ingress_class_name is not None:
        err = dns1123_subdomain_error(spec.ingress_class_name)
        if err:
            r.error("spec.ingressClassName", f"Invalid value: {err}")
    for i, tls in enumerate(spec.tls):
        for j, host in enumerate(tls.hosts):
            err = _ingress_host_error(host)
            if err:
                r.error(f"spec.tls[{i}].hosts[{j}]", err)
    for i, rule in enumerate(spec.rules):
        rp = f"spec.rules[{i}]"
        if rule.host:
            err = _ingress_host_error(rule.host)
            if err:
                r.error(join(rp, "host"), err)
        if rule.http is None:
            continue
        if not rule.http.paths:
            r.error(join(rp, "http", "paths"), "Required value")
        for j, path in enumerate(rule.http.paths):
            pp = join(rp, "http", "paths", j)
            value = path.path or ""
            if path.path_type is None:
                r.error(join(pp, "pathType"), "Required value: pathType must be specified")
            elif path.path_type in ("Exact", "Prefix"):
                if not value.startswith("/"):
                    r.error(join(pp, "path"), f"Invalid value: {q(value)}: must be an absolute path")
                for seq in _INVALID_PATH_SEQUENCES:
                    if seq in value:
                        r.error(join(pp, "path"), f"Invalid value: {q(value)}: must not contain '{seq}'")
                for suffix in _INVALID_PATH_SUFFIXES:
                    if value.endswith(suffix):
                        r.error(join(pp, "path"), f"Invalid value: {q(value)}: cannot end with '{suffix}'")
            elif value and not value.startswith("/"):
                r.error(join(pp, "path"), f"Invalid value: {q(value)}: must be an absolute path")
            _validate_ingress_backend(r, join(pp, "backend"), path.backend)


_CONTROLLER_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/\S+$")


@register("IngressClass")
def validate_ingress_class(res: Resource, r: Report) -> None:
    spec: kube.IngressClassSpec = res.spec  # type: ignore[assignment]
    controller = spec.controller or ""
    if not controller:
        r.error("spec.controller", "Required value")
    elif len(controller) > 250:
        r.error("spec.controller", "Too long: must have at most 250 bytes")
    elif not _CONTROLLER_RE.fullmatch(controller):
        r.error(
            "spec.controller",
            f'Invalid value: {q(controller)}: must be a domain-prefixed path (such as "acme.io/foo")',
        )
