"""Sidecar analyzers.

istioctl's (``pkg/config/analysis/analyzers/sidecar``), which is one ``sidecar.SelectorAnalyzer`` today:
- IST0101 for a ``workloadSelector`` that matches no pod of the Sidecar's namespace;
- IST0110 when several Sidecars with selectors select the same pod (the oldest is used);
- IST0111 when several Sidecars of a namespace have no selector (the oldest is used);
- IST0167 for a Sidecar in an ambient namespace, or whose selected pods all run in ambient mode.

Isthmus' own ``sidecar.IngressEndpointAnalyzer``: ISM0007 for an ingress listener a selected pod cannot
serve (its defaultEndpoint is no port of the pod's Workload, or its port is one of the sidecar's own).

Isthmus' own ``sidecar.EgressHostAnalyzer``: IST0101 for an egress ``ns/host`` that names no service that
namespace exports to the Sidecar's namespace (the listener then imports nothing), and for an
``outboundTrafficPolicy.egressProxy`` host that does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context, selector_string
from isthmus.analyze.messages import go_q
from isthmus.analyze.registry import analyzer
from isthmus.api.paths import join
from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import ingress_endpoint
from isthmus.registry.types import Pod


def _selector(cfg: Config) -> dict[str, str]:
    ws = cfg.spec.workload_selector
    return dict(ws.labels or {}) if ws is not None else {}


@analyzer(
    "sidecar.SelectorAnalyzer",
    "Validates that sidecars that define a workload selector match at least one pod, and that there "
    "aren't multiple sidecar resources that select overlapping pods",
    ("IST0101", "IST0110", "IST0111", "IST0167"),
)
def sidecar_selectors(ctx: Context) -> None:
    pods_to_sidecars: dict[tuple[str, str], list[Config]] = defaultdict(list)
    no_selector: dict[str, list[Config]] = defaultdict(list)
    for cfg in ctx.configs("Sidecar"):
        ns = cfg.namespace
        if cfg.spec.workload_selector is None:
            no_selector[ns].append(cfg)
            if ctx.is_ambient_namespace(ns):
                ctx.report(
                    m.IneffectivePolicy,
                    cfg,
                    "namespace is in ambient mode, the policy has no impact",
                    field="metadata.name",
                )
            continue
        selector = _selector(cfg)
        if not selector:
            continue
        pods = ctx.pods_selected(selector, ns)
        if not pods:
            first = sorted(selector)[0]
            ctx.report(
                m.ReferencedResourceNotFound,
                cfg,
                "selector",
                go_q(selector_string(selector)),
                field=join("spec.workloadSelector.labels", first),
            )
            continue
        for pod in pods:
            pods_to_sidecars[(pod.namespace, pod.name)].append(cfg)
        if all(ctx.is_ambient_pod(p) or ctx.is_ambient_namespace(p.namespace) for p in pods):
            ctx.report(
                m.IneffectivePolicy,
                cfg,
                "selected workload is in ambient mode, the policy has no impact",
                field="spec.workloadSelector",
            )

    ctx.report_selector_conflicts(
        pods_to_sidecars,
        no_selector,
        m.ConflictingSidecarWorkloadSelectors,
        m.MultipleSidecarsWithoutWorkloadSelectors,
    )


@analyzer(
    "sidecar.EgressHostAnalyzer",
    "Checks that Sidecar egress hosts and the egress proxy name services that exist",
    ("IST0101",),
)
def egress_hosts(ctx: Context) -> None:
    for cfg in ctx.configs("Sidecar"):
        ns = cfg.namespace
        visible = ctx.snapshot.visible_services(ns)
        for i, listener in enumerate(cfg.spec.egress or ()):
            for j, entry in enumerate(listener.hosts or ()):
                host_ns, sep, name = entry.partition("/")
                if not sep or host_ns == "~" or name == "*":
                    continue
                if host_ns == ".":
                    host_ns = ns
                if any(
                    (host_ns == "*" or s.namespace == host_ns) and h.matches(name, s.hostname)
                    for s in visible
                ):
                    continue
                ctx.report(
                    m.ReferencedResourceNotFound,
                    cfg,
                    "egress host",
                    go_q(entry),
                    field=f"spec.egress[{i}].hosts[{j}]",
                )
        otp = cfg.spec.outbound_traffic_policy
        proxy = otp.egress_proxy if otp is not None else None
        if proxy is not None and proxy.host and ctx.lookup_service(ns, None, proxy.host) is None:
            ctx.report(
                m.ReferencedResourceNotFound,
                cfg,
                "egressProxy host",
                go_q(proxy.host),
                field="spec.outboundTrafficPolicy.egressProxy.host",
            )


@analyzer(
    "sidecar.IngressEndpointAnalyzer",
    "Checks that every pod a Sidecar with ingress listeners applies to can serve them",
    ("ISM0007",),
)
def ingress_endpoints(ctx: Context) -> None:
    """The check the running mesh makes per proxy (Snapshot._ingress_ports), ahead of time: one message
    per listener and problem, whichever pods share it."""
    if not any(cfg.spec.ingress for cfg in ctx.configs("Sidecar")):
        return
    seen: set[tuple[tuple[str, str, str], int, str]] = set()
    for pod in ctx.pods:
        if not pod.sidecar or pod.gateway:
            continue
        proxy = Proxy(
            id=Proxy.node_id("sidecar", pod.ip, pod.name, pod.namespace), kind="sidecar", ip=pod.ip,
            namespace=pod.namespace, instance=pod.name, workload=pod.workload, labels=dict(pod.labels),
        )  # fmt: skip
        cfg = ctx.snapshot.sidecar_resource(proxy)
        if cfg is None or not cfg.spec.ingress:
            continue
        for i, ingress in enumerate(cfg.spec.ingress):
            problem = _ingress_problem(ingress, pod)
            if problem is None or (cfg.key, i, problem) in seen:
                continue
            seen.add((cfg.key, i, problem))
            field = (
                f"spec.ingress[{i}].defaultEndpoint"
                if ingress.default_endpoint
                else f"spec.ingress[{i}].port"
            )
            ctx.report(m.SidecarIngressNotServed, cfg, f"spec.ingress[{i}]: {problem}", field=field)


def _ingress_problem(ingress: Any, pod: Pod) -> str | None:
    try:
        ingress_endpoint(ingress, pod)
    except ValueError as exc:
        return str(exc)
    return None
