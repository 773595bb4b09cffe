"""What every analyzer reads: the control plane's snapshot plus a few indexes istioctl's analyzers use.

The snapshot (``model.snapshot.Snapshot``) is the very object the generators read: services and endpoints
from the registry, VirtualServices with short names resolved and delegates merged, the DestinationRule
index, Sidecars, Gateways. On top of it the context keeps istioctl's service lookup (which hosts a
resource in a namespace can refer to, after exportTo) and the pods' Kubernetes annotations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from isthmus.analyze.messages import Message, MessageType, go_list, go_q
from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.ingress import is_derived
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod, Service

# Namespaces istioctl's analyzers treat as system namespaces (istio pkg/kube/inject IgnoredNamespaces).
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})

INJECT_ANNOTATION = "sidecar.istio.io/inject"
AMBIENT_REDIRECTION_ANNOTATION = "ambient.istio.io/redirection"
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"


@dataclass(frozen=True)
class PodInfo:
    """What a pod's Kubernetes metadata says beyond ``registry.types.Pod``."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    source: Config | None = None  # the Pod / Deployment / Workload it comes from


def selector_string(labels: Mapping[str, str] | None) -> str:
    """Kubernetes' ``labels.SelectorFromSet(...).String()``: ``k1=v1,k2=v2`` sorted by key."""
    if not labels:
        return ""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """An equality selector; an empty selector selects everything (``labels.SelectorFromSet``)."""
    if not selector:
        return True
    return all(k in labels and labels[k] == v for k, v in selector.items())


class Context:
    def __init__(
        self,
        snapshot: Snapshot,
        *,
        pod_info: Mapping[tuple[str, str], PodInfo] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.mesh = snapshot.mesh
        self.domain = snapshot.mesh.domain_suffix
        self.root_namespace = snapshot.mesh.root_namespace
        self.pod_info: Mapping[tuple[str, str], PodInfo] = pod_info or {}
        self.messages: list[Message] = []
        self.analyzer = ""
        self._fqdn: dict[tuple[str, str], str] = {}
        self._endpoint_labels: dict[tuple[str, str], list[Mapping[str, str]]] = {}

    # --- reporting ----------------------------------------------------------------------------
    def report(self, mtype: MessageType, cfg: Any, *args: Any, field: str | None = None) -> None:
        """Report a message about ``cfg`` (a Config or a Resource); ``field`` gives the origin line."""
        res = getattr(cfg, "resource", cfg)
        line = res.line_of(field) if field else res.origin.line
        file = res.origin.file
        origin = None
        if file is not None or line is not None:
            origin = f"{file or '<input>'}:{line}" if line is not None else file
        self.messages.append(
            Message.of(
                mtype,
                *args,
                resource=res.ref,
                origin=origin,
                key=res.key,
                field=field,
                analyzer=self.analyzer,
            )
        )

    def report_selector_conflicts(
        self,
        by_pod: Mapping[tuple[str, str], Sequence[Config]],
        no_selector: Mapping[str, Sequence[Config]],
        per_pod: MessageType,
        per_namespace: MessageType,
    ) -> None:
        """Istio's selector-conflict checks of one kind (Sidecar, Telemetry): every resource of a group of
        two or more selecting the same pod gets `per_pod`; of two or more without a selector in one
        namespace, `per_namespace`."""
        for (ns, pod), cfgs in by_pod.items():
            if len(cfgs) < 2:
                continue
            names = go_list(c.name for c in cfgs)
            for cfg in cfgs:
                self.report(per_pod, cfg, names, go_q(ns), go_q(pod), field="metadata.name")
        for ns, cfgs in no_selector.items():
            if len(cfgs) < 2:
                continue
            names = go_list(c.name for c in cfgs)
            for cfg in cfgs:
                self.report(per_namespace, cfg, names, go_q(ns), field="metadata.name")

    # --- names ---------------------------------------------------------------------------------
    def fqdn(self, host: str, namespace: str) -> str:
        """``host`` as istiod resolves it in ``namespace`` (a short name gets ``.<ns>.svc.<domain>``)."""
        key = (host, namespace)
        out = self._fqdn.get(key)
        if out is None:
            out = self._fqdn[key] = h.resolve_short_name(host, namespace, self.domain)
        return out

    # --- config --------------------------------------------------------------------------------
    def configs(self, kind: str) -> list[Config]:
        """The user's configs of a kind: what a Kubernetes Ingress derives (Gateways, VirtualServices) is
        left out, as istioctl analyze never sees istiod's ingress conversion."""
        return self._user_configs.get(kind, [])

    @cached_property
    def _user_configs(self) -> dict[str, list[Config]]:
        return {kind: [c for c in cfgs if not is_derived(c)] for kind, cfgs in self.snapshot.configs.items()}

    @cached_property
    def namespace_labels(self) -> dict[str, Mapping[str, str]]:
        return dict(self.snapshot.namespaces)

    @cached_property
    def namespaces(self) -> set[str]:
        """Every namespace the config knows of: declared ones and those resources and pods live in."""
        out = set(self.snapshot.namespaces) | {"default", self.root_namespace}
        for cfgs in self.snapshot.configs.values():
            for c in cfgs:
                if c.namespace:
                    out.add(c.namespace)
        out.update(p.namespace for p in self.pods)
        return out

    # --- pods ----------------------------------------------------------------------------------
    @cached_property
    def pods(self) -> list[Pod]:
        return sorted(self.snapshot.registry.pods.values(), key=lambda p: (p.namespace, p.name))

    @cached_property
    def pods_by_namespace(self) -> dict[str, list[Pod]]:
        out: dict[str, list[Pod]] = defaultdict(list)
        for p in self.pods:
            out[p.namespace].append(p)
        return out

    def annotations(self, pod: Pod) -> Mapping[str, str]:
        info = self.pod_info.get((pod.namespace, pod.name))
        return info.annotations if info is not None else {}

    def pods_selected(self, selector: Mapping[str, str] | None, namespace: str | None = None) -> list[Pod]:
        """Pods whose labels match ``selector`` (all namespaces unless one is given)."""
        pods = self.pods_by_namespace.get(namespace, []) if namespace is not None else self.pods
        return [p for p in pods if selects(selector, p.labels)]

    def in_mesh(self, pod: Pod) -> bool:
        """A pod with a proxy (sidecar or gateway), or one captured by ambient."""
        return pod.sidecar or pod.gateway or self.is_ambient_pod(pod)

    def is_ambient_namespace(self, namespace: str) -> bool:
        labels = self.namespace_labels.get(namespace, {})
        return (
            labels.get(DATAPLANE_MODE_LABEL) == "ambient"
            and labels.get("istio-injection") != "enabled"
            and "istio.io/rev" not in labels
        )

    def is_ambient_pod(self, pod: Pod) -> bool:
        if self.annotations(pod).get(AMBIENT_REDIRECTION_ANNOTATION) == "enabled":
            return True
        return pod.labels.get(DATAPLANE_MODE_LABEL) == "ambient"

    # --- services ------------------------------------------------------------------------------
    @cached_property
    def _service_scopes(self) -> tuple[dict[tuple[str, str], Service], list[tuple[str, str, Service]]]:
        """istioctl's ``InitServiceEntryHostMap``: (scope, host) -> service, where a scope is ``*`` or the
        namespace a service is exported to; wildcard hosts are kept apart."""
        exact: dict[tuple[str, str], Service] = {}
        wild: list[tuple[str, str, Service]] = []
        default = self.mesh.default_service_export_to
        for svc in self.snapshot.registry.services:
            for scope in _scopes(svc.export_to or default, svc.namespace):
                if svc.hostname.startswith("*"):
                    wild.append((scope, svc.hostname, svc))
                exact.setdefault((scope, svc.hostname), svc)
        return exact, wild

    def lookup_service(self, namespace: str, export_to: Sequence[str] | None, host: str) -> Service | None:
        """istioctl's ``GetDestinationHost``: the service ``host`` names for a resource of ``namespace``
        exported to ``export_to`` (short names resolve in ``namespace``), or None."""
        exact, wild = self._service_scopes
        fqdn = self.fqdn(host, namespace)
        svc = exact.get(("*", fqdn))
        if svc is not None:
            return svc
        if not export_to:
            svc = exact.get((namespace, fqdn))
            if svc is not None:
                return svc
        else:
            for e in export_to:
                svc = exact.get((namespace if e == "." else e, fqdn))
                if svc is not None:
                    return svc
        bare = host.lstrip("*")
        for scope, svc_host, svc in wild:
            if scope not in ("*", namespace):
                continue
            if bare.endswith(svc_host[1:]):
                return svc
        return None

    def services_matching(self, host: str, namespace: str) -> list[Service]:
        """Registry services a (possibly wildcard) host of ``namespace`` covers, visible there."""
        fqdn = self.fqdn(host, namespace)
        visible = self.snapshot.visible_services(namespace)
        if not h.is_wildcard(fqdn):
            return [s for s in visible if s.hostname == fqdn]
        return [s for s in visible if h.matches(fqdn, s.hostname)]

    def endpoint_labels(self, svc: Service) -> list[Mapping[str, str]]:
        """Labels of every endpoint of ``svc`` (one entry per workload instance)."""
        key = (svc.hostname, svc.namespace)
        cached = self._endpoint_labels.get(key)
        if cached is None:
            seen: dict[tuple[str, str], Mapping[str, str]] = {}
            for port in svc.ports:
                for ep in self.snapshot.registry.endpoints(svc, port.port):
                    seen.setdefault((ep.address, ep.instance), ep.labels)
            cached = self._endpoint_labels[key] = list(seen.values())
        return cached


def _scopes(export_to: Iterable[str], namespace: str) -> list[str]:
    out: list[str] = []
    for e in export_to:
        if e == "*":
            return ["*"]
        if e == "~":
            continue
        out.append(namespace if e == "." else e)
    return out
