"""DestinationRule analyzers.

istioctl's (``pkg/config/analysis/analyzers/destinationrule``):
- ``destinationrule.CaCertificateAnalyzer``: IST0128 / IST0129 for SIMPLE or MUTUAL TLS without
  ``caCertificates`` (the server certificate is not verified), unless a ``credentialName`` on a
  DestinationRule with a ``workloadSelector`` supplies the CA.
- ``destinationrule.SubsetSelectPodAnalyzer``: IST0174 when the host matches no service visible to the
  DestinationRule, IST0173 for a subset that selects no endpoint of the service.

Isthmus' own: ``destinationrule.CredentialNameAnalyzer`` (IST0101 for a ``credentialName`` whose Secret does
not exist where the proxy reads it) and ISM0003 (outlier detection that can never eject a host).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context, selects
from isthmus.analyze.messages import go_q
from isthmus.analyze.registry import analyzer
from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.registry.types import Service

# Envoy's max_ejection_percent when unset (Istio leaves it unset when maxEjectionPercent is 0 or absent).
DEFAULT_MAX_EJECTION_PERCENT = 10


def _tls_blocks(spec: Any) -> Iterator[tuple[Any, str, bool]]:
    """(tls settings, field path, port level?) of a DestinationRule: top level, port level, subsets."""
    tp = spec.traffic_policy
    if tp is not None:
        if tp.tls is not None:
            yield tp.tls, "spec.trafficPolicy.tls", False
        for i, pls in enumerate(tp.port_level_settings or ()):
            if pls.tls is not None:
                yield pls.tls, f"spec.trafficPolicy.portLevelSettings[{i}].tls", True
    for s, subset in enumerate(spec.subsets or ()):
        stp = subset.traffic_policy
        if stp is None:
            continue
        if stp.tls is not None:
            yield stp.tls, f"spec.subsets[{s}].trafficPolicy.tls", False
        for i, pls in enumerate(stp.port_level_settings or ()):
            if pls.tls is not None:
                yield pls.tls, f"spec.subsets[{s}].trafficPolicy.portLevelSettings[{i}].tls", True


@analyzer(
    "destinationrule.CaCertificateAnalyzer",
    "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
    ("IST0128", "IST0129"),
)
def ca_certificates(ctx: Context) -> None:
    for cfg in ctx.configs("DestinationRule"):
        spec = cfg.spec
        name = f"{cfg.namespace}/{cfg.name}"
        tp = spec.traffic_policy
        if tp is None:
            continue
        if _unverified(tp.tls, spec):
            ctx.report(
                m.NoServerCertificateVerificationDestinationLevel,
                cfg,
                name,
                cfg.namespace,
                tp.tls.mode,
                spec.host,
                field="spec.trafficPolicy.tls",
            )
        for i, pls in enumerate(tp.port_level_settings or ()):
            if _unverified(pls.tls, spec):
                port = f"number:{pls.port.number}" if pls.port is not None and pls.port.number else ""
                ctx.report(
                    m.NoServerCertificateVerificationPortLevel,
                    cfg,
                    name,
                    cfg.namespace,
                    pls.tls.mode,
                    spec.host,
                    port,
                    field=f"spec.trafficPolicy.portLevelSettings[{i}].tls",
                )


def _unverified(tls: Any, spec: Any) -> bool:
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL") or tls.ca_certificates:
        return False
    # A credentialName carries the CA (ca.crt) for workloads selected by the DestinationRule.
    return not (tls.credential_name and spec.workload_selector is not None)


def dr_services(ctx: Context, cfg: Config) -> list[Service]:
    """The services a DestinationRule applies to (its host, after short-name resolution and exportTo)."""
    host = ctx.fqdn(cfg.spec.host, cfg.namespace)
    if h.is_wildcard(host):
        return [s for s in ctx.snapshot.registry.services if h.subset_of(s.hostname, host)]
    return list(ctx.snapshot.registry.by_host.get(host, ()))


def _subset_selects(ctx: Context, svc: Service, labels: Mapping[str, str]) -> bool:
    return any(selects(labels, ep) for ep in ctx.endpoint_labels(svc))


@analyzer(
    "destinationrule.SubsetSelectPodAnalyzer",
    "Checks if pods are selected by subsets in destination rules.",
    ("IST0173", "IST0174"),
)
def subsets_select_pods(ctx: Context) -> None:
    for cfg in ctx.configs("DestinationRule"):
        spec = cfg.spec
        found = ctx.lookup_service(cfg.namespace, list(spec.export_to or ()), spec.host)
        services = dr_services(ctx, cfg)
        # istioctl looks the host up as a destination of the DR's namespace; a wildcard host that covers
        # services is fine too (istioctl only matches wildcards against wildcard ServiceEntry hosts).
        if found is None and not (h.is_wildcard(spec.host) and services):
            ctx.report(m.UnknownDestinationRuleHost, cfg, spec.host, field="spec.host")
            continue
        if not services and found is not None:
            services = [found]
        for i, subset in enumerate(spec.subsets or ()):
            if not any(_subset_selects(ctx, svc, subset.labels or {}) for svc in services):
                ctx.report(m.DestinationRuleSubsetNotSelectPods, cfg, subset.name, field=f"spec.subsets[{i}]")


def secret_exists(ctx: Context, namespace: str, name: str) -> bool:
    index = ctx.snapshot.memo(
        ("analyze", "secrets"), lambda: {(c.namespace, c.name) for c in ctx.configs("Secret")}
    )
    return (namespace, name) in index


def credential_secret_name(credential: str) -> str | None:
    """The Secret a ``credentialName`` refers to; None for SDS names that are not Kubernetes Secrets."""
    if credential.startswith("kubernetes://"):
        credential = credential[len("kubernetes://") :]
    if ":" in credential or "/" in credential:
        return None
    return credential


@analyzer(
    "destinationrule.CredentialNameAnalyzer",
    "Checks that the Secret a DestinationRule credentialName refers to exists",
    ("IST0101",),
)
def credential_names(ctx: Context) -> None:
    gateway_namespaces = {p.namespace for p in ctx.pods if p.gateway or _looks_like_gateway(p.labels)}
    for cfg in ctx.configs("DestinationRule"):
        for tls, path, _ in _tls_blocks(cfg.spec):
            if not tls.credential_name:
                continue
            name = credential_secret_name(tls.credential_name)
            if name is None:
                continue
            # With a workloadSelector the sidecars of the DR's namespace read it; otherwise gateways do.
            namespaces = {cfg.namespace}
            if cfg.spec.workload_selector is None:
                namespaces |= gateway_namespaces
            if not any(secret_exists(ctx, ns, name) for ns in namespaces):
                ctx.report(
                    m.ReferencedResourceNotFound,
                    cfg,
                    "credentialName",
                    go_q(tls.credential_name),
                    field=f"{path}.credentialName",
                )


def _looks_like_gateway(labels: Mapping[str, str]) -> bool:
    return labels.get("istio") in ("ingressgateway", "egressgateway")


def _outlier_blocks(spec: Any) -> Iterator[tuple[Any, str, str | None, int | None]]:
    """(outlierDetection, field path, subset name, port) of every policy block that sets one."""

    def of(policy: Any, prefix: str, subset: str | None) -> Iterator[tuple[Any, str, str | None, int | None]]:
        if policy is None:
            return
        if policy.outlier_detection is not None:
            yield policy.outlier_detection, f"{prefix}.outlierDetection", subset, None
        for i, pls in enumerate(policy.port_level_settings or ()):
            if pls.outlier_detection is not None:
                port = int(pls.port.number) if pls.port is not None and pls.port.number else None
                yield pls.outlier_detection, f"{prefix}.portLevelSettings[{i}].outlierDetection", subset, port

    yield from of(spec.traffic_policy, "spec.trafficPolicy", None)
    for s, subset in enumerate(spec.subsets or ()):
        yield from of(subset.traffic_policy, f"spec.subsets[{s}].trafficPolicy", subset.name)


@analyzer(
    "isthmus.destinationrule.OutlierEjectionAnalyzer",
    "Checks that outlier detection can eject at least one host",
    ("ISM0003",),
)
def outlier_never_ejects(ctx: Context) -> None:
    for cfg in ctx.configs("DestinationRule"):
        services = None
        subsets = {s.name: s for s in cfg.spec.subsets or ()}
        for od, path, subset, port in _outlier_blocks(cfg.spec):
            percent = int(od.max_ejection_percent or 0) or DEFAULT_MAX_EJECTION_PERCENT
            if percent >= 100:
                continue
            if services is None:
                services = dr_services(ctx, cfg)
            for svc in services:
                labels = subsets[subset].labels if subset is not None else {}
                endpoints = [ep for ep in ctx.endpoint_labels(svc) if selects(labels or {}, ep)]
                n = len(endpoints)
                if n == 0 or 100.0 / n <= percent:
                    continue
                where = f" (subset {subset})" if subset else ""
                where += f" (port {port})" if port else ""
                ctx.report(
                    m.OutlierDetectionNeverEjects,
                    cfg,
                    where,
                    svc.hostname,
                    n,
                    percent,
                    math.ceil(100 / n),
                    field=f"{path}.maxEjectionPercent" if od.max_ejection_percent else path,
                )
                break
