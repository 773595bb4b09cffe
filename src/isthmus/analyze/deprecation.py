"""Deprecated fields (istioctl's ``deprecation.DeprecationAnalyzer``, ``analyzers/deprecation``).

IST0002 for the fields istioctl flags:
- a VirtualService HTTP fault ``delay.percent`` (replaced by ``delay.percentage``);
- a Sidecar ``outboundTrafficPolicy.egressProxy``. istioctl calls it ignored; Isthmus, like istiod, still
  sends ALLOW_ANY passthrough traffic of the sidecar's proxies to it, but the wording is istioctl's so
  that the finding reads the same in both tools.
"""

from __future__ import annotations

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context
from isthmus.analyze.registry import analyzer


def replaced(deprecated: str, replacement: str) -> str:
    return f"{deprecated} is deprecated; use {replacement}"


def ignored(field: str) -> str:
    return f"{field} ignored"


@analyzer(
    "deprecation.DeprecationAnalyzer",
    "Checks for deprecated Istio types and fields",
    ("IST0002",),
)
def deprecated_fields(ctx: Context) -> None:
    for cfg in ctx.configs("VirtualService"):
        for i, rule in enumerate(cfg.spec.http or ()):
            delay = rule.fault.delay if rule.fault is not None else None
            if delay is not None and (delay.percent or 0) > 0:
                ctx.report(
                    m.Deprecated,
                    cfg,
                    replaced("HTTPRoute.fault.delay.percent", "HTTPRoute.fault.delay.percentage"),
                    field=f"spec.http[{i}].fault.delay.percent",
                )
    for cfg in ctx.configs("Sidecar"):
        otp = cfg.spec.outbound_traffic_policy
        if otp is not None and otp.egress_proxy is not None:
            ctx.report(
                m.Deprecated,
                cfg,
                ignored("OutboundTrafficPolicy.EgressProxy"),
                field="spec.outboundTrafficPolicy.egressProxy",
            )
