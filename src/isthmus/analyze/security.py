"""Security policy analyzers.

istioctl's ``auth.AuthorizationPoliciesAnalyzer`` (``analyzers/authz``):
- IST0127 when an AuthorizationPolicy's selector matches no workload in the mesh (its namespace; the
  whole mesh for a policy of the root namespace), or a namespace-wide policy's namespace runs none;
- IST0101 for a ``from.source.namespaces`` / ``notNamespaces`` entry (``*`` prefix and suffix wildcards
  allowed) that matches no namespace.

istioctl's ``authn.BlockedCIDRsAnalyzer`` (``analyzers/authn``): IST0175 on an istiod Deployment without
``BLOCKED_CIDRS_IN_JWKS_URIS`` when RequestAuthentications exist.

Isthmus also applies the IST0127 check to PeerAuthentication and RequestAuthentication selectors
(``auth.SelectorAnalyzer``): a selector that matches nothing makes the policy do nothing.
"""

from __future__ import annotations

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context, selector_string, selects
from isthmus.analyze.messages import go_q
from isthmus.analyze.registry import analyzer
from isthmus.config.store import Config
from isthmus.registry.types import Pod


def _mesh_pods(ctx: Context, namespace: str | None) -> list[Pod]:
    pods = ctx.pods if namespace is None else ctx.pods_by_namespace.get(namespace, [])
    return [p for p in pods if ctx.in_mesh(p)]


def _no_workloads(ctx: Context, cfg: Config, selector: dict[str, str] | None, field: str) -> None:
    root = cfg.namespace == ctx.root_namespace
    if root:
        # A mesh-wide policy: only one with a selector needs a workload somewhere in the mesh.
        if selector is not None and not any(selects(selector, p.labels) for p in _mesh_pods(ctx, None)):
            ctx.report(m.NoMatchingWorkloadsFound, cfg, selector_string(selector), field=field)
        return
    pods = _mesh_pods(ctx, cfg.namespace)
    if selector is None:
        if not pods:
            ctx.report(m.NoMatchingWorkloadsFound, cfg, "", field="metadata.name")
        return
    if not any(selects(selector, p.labels) for p in pods):
        ctx.report(m.NoMatchingWorkloadsFound, cfg, selector_string(selector), field=field)


def namespace_match(namespace: str, expr: str) -> bool:
    """istioctl's ``namespaceMatch``: ``*``, ``*suffix``, ``prefix*`` or an exact (case-insensitive) name."""
    if expr == "*":
        return True
    if expr.startswith("*"):
        return namespace.endswith(expr[1:])
    if expr.endswith("*"):
        return namespace.startswith(expr[:-1])
    return namespace.lower() == expr.lower()


@analyzer(
    "auth.AuthorizationPoliciesAnalyzer",
    "Checks the validity of authorization policies",
    ("IST0101", "IST0127"),
)
def authorization_policies(ctx: Context) -> None:
    namespaces = sorted(ctx.namespaces)
    for cfg in ctx.configs("AuthorizationPolicy"):
        spec = cfg.spec
        if not (spec.target_ref or spec.target_refs):
            selector = dict(spec.selector.match_labels) if spec.selector is not None else None
            _no_workloads(ctx, cfg, selector, "spec.selector")
        for i, rule in enumerate(spec.rules or ()):
            for j, frm in enumerate(rule.from_ or ()):
                src = frm.source
                if src is None:
                    continue
                for attr, yaml in (("namespaces", "namespaces"), ("not_namespaces", "notNamespaces")):
                    for k, expr in enumerate(getattr(src, attr) or ()):
                        if not any(namespace_match(ns, expr) for ns in namespaces):
                            ctx.report(
                                m.ReferencedResourceNotFound,
                                cfg,
                                "namespace",
                                go_q(expr),
                                field=f"spec.rules[{i}].from[{j}].source.{yaml}[{k}]",
                            )


@analyzer(
    "auth.SelectorAnalyzer",
    "Checks that PeerAuthentication and RequestAuthentication selectors match workloads",
    ("IST0127",),
)
def authentication_selectors(ctx: Context) -> None:
    for kind in ("PeerAuthentication", "RequestAuthentication"):
        for cfg in ctx.configs(kind):
            spec = cfg.spec
            if (
                spec.selector is None
                or getattr(spec, "target_ref", None)
                or getattr(spec, "target_refs", None)
            ):
                continue
            _no_workloads(ctx, cfg, dict(spec.selector.match_labels), "spec.selector")


# istiod's environment variable that keeps its JWKS fetches away from the listed networks.
BLOCKED_CIDRS_ENV = "BLOCKED_CIDRS_IN_JWKS_URIS"
# istioctl's formatRANames shows this many RequestAuthentication names, then "and N more".
_MAX_RA_NAMES = 5


def _has_blocked_cidrs(cfg: Config) -> bool:
    template = cfg.spec.template
    pod = template.spec if template is not None else None
    for container in pod.containers if pod is not None else ():
        for env in container.env:
            if env.get("name") == BLOCKED_CIDRS_ENV and env.get("value"):
                return True
    return False


@analyzer(
    "authn.BlockedCIDRsAnalyzer",
    "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is configured on istiod when RequestAuthentication resources exist",
    ("IST0175",),
)
def blocked_cidrs(ctx: Context) -> None:
    """istioctl's ``authn.BlockedCIDRsAnalyzer``: IST0175 on every istiod Deployment (label ``app: istiod``)
    in the input whose containers do not set ``BLOCKED_CIDRS_IN_JWKS_URIS``, when RequestAuthentications
    exist (istiod fetches their jwksUri itself). Only offline input holds an istiod Deployment."""
    names = sorted(f"{c.namespace}/{c.name}" for c in ctx.configs("RequestAuthentication"))
    if not names:
        return
    shown = ", ".join(names[:_MAX_RA_NAMES])
    if len(names) > _MAX_RA_NAMES:
        shown += f", and {len(names) - _MAX_RA_NAMES} more"
    for cfg in ctx.configs("Deployment"):
        labels = cfg.resource.metadata.labels or {}
        if labels.get("app") != "istiod" or _has_blocked_cidrs(cfg):
            continue
        ctx.report(m.JwksUriFetchUnrestricted, cfg, len(names), shown, field="metadata.name")
