"""Workload instances for offline analysis, derived from the config itself.

The running mesh knows its pods (the local runner starts them); a folder of YAML does not. So that
selector analyzers work offline, every Kubernetes ``Pod``, every replica of a ``Deployment`` and every
replica of an Isthmus ``Workload`` becomes a ``registry.types.Pod`` with its labels, service account,
named container ports and sidecar flag, exactly what the registry needs to compute endpoints.

As ``isthmus up`` does, a Gateway that selects the default ingress gateway's labels, when no workload of
the user's provides it, gets the built-in ``istio-ingressgateway`` Workload and Service in istio-system
(istioctl adds a similar dummy ingress gateway for file-only analysis).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from isthmus.analyze.context import INJECT_ANNOTATION, PodInfo, selects
from isthmus.config.store import Config
from isthmus.mesh.default_gateway import BUILTIN_ORIGIN, DEFAULT_GATEWAY_LABELS, DEFAULT_GATEWAY_YAML
from isthmus.model.ingress import derived_gateways
from isthmus.registry.types import Pod

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Replicas beyond this many add nothing to the analysis but time.
MAX_REPLICAS = 256


class _Addresses:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        n = self.n
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _injected(
    annotations: Mapping[str, str], labels: Mapping[str, str], ns_labels: Mapping[str, str]
) -> bool:
    flag = labels.get(INJECT_ANNOTATION) or annotations.get(INJECT_ANNOTATION)
    if flag is not None:
        return flag.lower() != "false"
    return ns_labels.get("istio-injection") != "disabled"


def _is_gateway(labels: Mapping[str, str], spec: Any) -> bool:
    """An Istio gateway deployment: the gateway labels, or a lone ``istio-proxy`` container."""
    if labels.get("istio") in ("ingressgateway", "egressgateway"):
        return True
    containers = list(spec.containers) if spec is not None else []
    return len(containers) == 1 and containers[0].name == "istio-proxy"


def _container_ports(spec: Any) -> tuple[dict[int, int], dict[str, int]]:
    app_ports: dict[int, int] = {}
    named: dict[str, int] = {}
    if spec is None:
        return app_ports, named
    for c in [*spec.containers, *spec.init_containers]:
        for p in c.ports:
            port = int(p.container_port)
            app_ports[port] = port
            if p.name:
                named[p.name] = port
    return app_ports, named


def derive_pods(
    resources: Iterable[Any], namespace_labels: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[list[Pod], dict[tuple[str, str], PodInfo]]:
    """Pods (and their annotations) for every Pod, Deployment and Workload among ``resources``
    (api Resources or store Configs)."""
    ns_labels = namespace_labels or {}
    addrs = _Addresses()
    pods: list[Pod] = []
    info: dict[tuple[str, str], PodInfo] = {}
    taken: set[tuple[str, str]] = set()

    def add(pod: Pod, annotations: Mapping[str, str], source: Any) -> None:
        key = (pod.namespace, pod.name)
        if key in taken:
            return
        taken.add(key)
        pods.append(pod)
        info[key] = PodInfo(annotations=dict(annotations), source=source)

    for res in resources:
        kind = res.kind
        ns = res.namespace
        if kind == "Pod":
            spec = res.spec
            meta = res.metadata
            labels = dict(meta.labels or {})
            annotations = dict(meta.annotations or {})
            app_ports, named = _container_ports(spec)
            add(
                Pod(
                    name=meta.name,
                    namespace=ns,
                    ip=addrs.next(),
                    labels=labels,
                    workload=meta.name,
                    service_account=spec.service_account_name or spec.service_account or "default",
                    sidecar=_injected(annotations, labels, ns_labels.get(ns, {}))
                    and not _is_gateway(labels, spec),
                    gateway=_is_gateway(labels, spec),
                    app_ports=app_ports,
                    named_ports=named,
                ),
                annotations,
                res,
            )
        elif kind == "Deployment":
            spec = res.spec
            template = spec.template
            tmeta = template.metadata if template is not None else None
            pspec = template.spec if template is not None else None
            labels = dict(tmeta.labels) if tmeta is not None else {}
            annotations = dict(tmeta.annotations) if tmeta is not None else {}
            replicas = 1 if spec.replicas is None else int(spec.replicas)
            app_ports, named = _container_ports(pspec)
            gateway = _is_gateway(labels, pspec)
            sa = (pspec.service_account_name or pspec.service_account) if pspec is not None else None
            for i in range(min(replicas, MAX_REPLICAS)):
                add(
                    Pod(
                        name=f"{res.metadata.name}-{i}",
                        namespace=ns,
                        ip=addrs.next(),
                        labels=labels,
                        workload=res.metadata.name,
                        service_account=sa or "default",
                        sidecar=_injected(annotations, labels, ns_labels.get(ns, {})) and not gateway,
                        gateway=gateway,
                        app_ports=app_ports,
                        named_ports=named,
                    ),
                    annotations,
                    res,
                )
        elif kind == "Workload":
            spec = res.spec
            labels = dict(res.metadata.labels or {})
            gateway = bool(spec.gateway)
            ports = {int(p): int(p) for p in spec.ports or ()}
            for i in range(min(int(spec.replicas), MAX_REPLICAS)):
                add(
                    Pod(
                        name=f"{res.metadata.name}-{i}",
                        namespace=ns,
                        ip=addrs.next(),
                        labels=labels,
                        workload=res.metadata.name,
                        service_account=spec.service_account or "default",
                        sidecar=bool(spec.sidecar) and not gateway,
                        gateway=gateway,
                        app_ports=ports,
                    ),
                    dict(res.metadata.annotations or {}),
                    res,
                )
    return pods, info


def needs_default_gateway(resources: Iterable[Any], pods: Iterable[Pod]) -> bool:
    """``isthmus up``'s rule: a Gateway selects the default ingress gateway labels and no pod serves it."""
    resources = list(resources)
    # With the Gateways istiod derives from Kubernetes Ingresses of its class, as `isthmus up` counts them.
    derived = derived_gateways(Config(r, "analyze", _EPOCH, i + 1) for i, r in enumerate(resources))
    gateway_selectors = [
        r.spec.selector or {}
        for r in [*resources, *derived]
        if r.kind == "Gateway" and selects(r.spec.selector or {}, DEFAULT_GATEWAY_LABELS)
    ]
    if not gateway_selectors:
        return False
    pods = list(pods)
    return not any(selects(sel, p.labels) for sel in gateway_selectors for p in pods)


def default_gateway_resources(existing_keys: set[tuple[str, str, str]]) -> list[Any]:
    """The built-in ingress gateway Workload and Service (a user's own Service of that name wins)."""
    from isthmus.api.loader import load_text

    return [r for r in load_text(DEFAULT_GATEWAY_YAML, BUILTIN_ORIGIN) if r.key not in existing_keys]
