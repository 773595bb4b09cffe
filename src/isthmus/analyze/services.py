"""Service and workload analyzers.

istioctl's:
- ``service.PortNameAnalyzer`` (``analyzers/service``): IST0118 for a Service port whose name or
  appProtocol gives no protocol (Istio then sniffs it), IST0150 for such ports of an ExternalName
  Service. System namespaces and the Istio control plane's own Services are skipped.
- ``deployment.MultiServiceAnalyzer`` (``analyzers/deployment``): for a workload in the mesh (a
  Deployment, or an Isthmus Workload), IST0116 when Services selecting it use one port with different
  protocols, IST0137 when they map one targetPort from different ports.
- ``applicationUID.Analyzer`` (``analyzers/deployment``): IST0144 for a Pod or Deployment (not the
  control plane's) whose pod or app container ``securityContext.runAsUser`` is 1337, once per resource
  (istioctl's output dedupes the identical messages it reports per field). Isthmus starts no
  containers, but these are Kubernetes manifests: there, traffic of UID 1337 bypasses the sidecar's
  capture, so such an app would talk past its proxy.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.context import SYSTEM_NAMESPACES, Context, selects
from isthmus.analyze.messages import go_list, go_q
from isthmus.analyze.registry import analyzer
from isthmus.config.store import Config
from isthmus.registry.types import Protocol, protocol_from_kube_port


def _is_control_plane(cfg: Config) -> bool:
    labels = cfg.metadata.labels or {}
    return "istio" in labels or labels.get("release") == "istio"


def _target_port_string(port: Any) -> str:
    tp = port.target_port
    return "0" if tp is None else str(tp)


@analyzer(
    "service.PortNameAnalyzer",
    "Checks the port names associated with each service",
    ("IST0118", "IST0150"),
)
def port_names(ctx: Context) -> None:
    for cfg in ctx.configs("Service"):
        if cfg.namespace in SYSTEM_NAMESPACES or _is_control_plane(cfg):
            continue
        spec = cfg.spec
        external = spec.type == "ExternalName"
        for i, port in enumerate(spec.ports or ()):
            protocol = protocol_from_kube_port(port.name, port.app_protocol, port.protocol)
            if protocol is not Protocol.AUTO and not (external and port.name == "tcp"):
                continue
            if external:
                ctx.report(m.ExternalNameServiceTypeInvalidPortName, cfg, field=f"spec.ports[{i}]")
            else:
                ctx.report(
                    m.PortNameIsNotUnderNamingConvention,
                    cfg,
                    port.name or "",
                    int(port.port),
                    _target_port_string(port),
                    field=f"spec.ports[{i}]",
                )


def _workload_template(cfg: Config) -> tuple[dict[str, str], dict[str, str], bool]:
    """(pod labels, pod annotations, in the mesh?) of a Deployment or Workload."""
    if cfg.kind == "Workload":
        return dict(cfg.metadata.labels or {}), {}, bool(cfg.spec.sidecar) and not cfg.spec.gateway
    template = cfg.spec.template
    meta = template.metadata if template is not None else None
    labels = dict(meta.labels) if meta is not None else {}
    annotations = dict(meta.annotations) if meta is not None else {}
    return labels, annotations, True


def _in_mesh(ctx: Context, cfg: Config, labels: dict[str, str], annotations: dict[str, str]) -> bool:
    flag = labels.get("sidecar.istio.io/inject") or annotations.get("sidecar.istio.io/inject")
    if flag is not None:
        return flag.lower() != "false"
    ns_labels = ctx.namespace_labels.get(cfg.namespace, {})
    return ns_labels.get("istio-injection") != "disabled"


@analyzer(
    "deployment.MultiServiceAnalyzer",
    "Checks association between services and pods",
    ("IST0116", "IST0137"),
)
def multi_service(ctx: Context) -> None:
    services_by_ns: dict[str, list[Config]] = defaultdict(list)
    for svc in ctx.configs("Service"):
        if svc.spec.selector:
            services_by_ns[svc.namespace].append(svc)
    for cfg in [*ctx.configs("Deployment"), *ctx.configs("Workload")]:
        labels, annotations, sidecar = _workload_template(cfg)
        if not sidecar or not _in_mesh(ctx, cfg, labels, annotations):
            continue
        matching = [s for s in services_by_ns.get(cfg.namespace, ()) if selects(s.spec.selector, labels)]
        if not matching:
            continue
        # port -> protocol -> service names; targetPort -> port -> service name
        protocols: dict[int, dict[Protocol, list[str]]] = defaultdict(lambda: defaultdict(list))
        targets: dict[str, dict[int, str]] = defaultdict(dict)
        for svc in matching:
            name = f"{svc.namespace}/{svc.name}"
            for p in svc.spec.ports or ():
                proto = protocol_from_kube_port(p.name, p.app_protocol, p.protocol)
                protocols[int(p.port)][proto].append(name)
                target = _target_port_string(p)
                if target in ("0", ""):
                    target = str(int(p.port))
                targets[target][int(p.port)] = name
        for port, by_proto in protocols.items():
            if len(by_proto) > 1:
                names = [n for ns in by_proto.values() for n in ns]
                ctx.report(
                    m.DeploymentAssociatedToMultipleServices,
                    cfg,
                    cfg.name,
                    port,
                    go_list(names),
                    field="metadata.name",
                )
        for target, ports in targets.items():
            if len(ports) > 1:
                ctx.report(
                    m.DeploymentConflictingPorts,
                    cfg,
                    cfg.name,
                    go_list(ports.values()),
                    go_q(target),
                    go_list(ports),
                    field="metadata.name",
                )


# The UID Istio's sidecar runs as; iptables capture exempts its traffic.
PROXY_UID = 1337
# Containers that run as the proxy UID on purpose (istio ``util.IstioProxyName`` / ``util.IstioOperator``).
_PROXY_CONTAINERS = frozenset({"istio-proxy", "istio-operator"})


def _run_as_user(model: Any) -> Any:
    """``securityContext.runAsUser`` of a pod spec or container (kept as an extra field by the API model)."""
    context = (model.model_extra or {}).get("securityContext") or {}
    return context.get("runAsUser") if isinstance(context, dict) else None


@analyzer(
    "applicationUID.Analyzer",
    "Checks invalid application UID",
    ("IST0144",),
)
def application_uid(ctx: Context) -> None:
    for kind in ("Pod", "Deployment"):
        for cfg in ctx.configs(kind):
            if _is_control_plane(cfg):
                continue
            if kind == "Pod":
                spec, path = cfg.spec, "spec"
            else:
                template = cfg.spec.template
                spec, path = (template.spec if template is not None else None), "spec.template.spec"
            if spec is None:
                continue
            # istioctl reports the same message (no line) for the pod spec and for each offending
            # container, and its output dedupes identical messages (SortedDedupedCopy): one per resource,
            # placed here at the first offending field.
            fields = [f"{path}.securityContext.runAsUser"] if _run_as_user(spec) == PROXY_UID else []
            fields += [
                f"{path}.containers[{i}].securityContext.runAsUser"
                for i, container in enumerate(spec.containers)
                if container.name not in _PROXY_CONTAINERS and _run_as_user(container) == PROXY_UID
            ]
            if fields:
                ctx.report(m.InvalidApplicationUID, cfg, field=fields[0])
