"""Telemetry analyzers (istioctl's ``pkg/config/analysis/analyzers/telemetry``).

``telemetry.SelectorAnalyzer``:
- IST0101 for a ``selector`` that matches no pod of the Telemetry's namespace;
- IST0159 when several Telemetries with selectors select the same pod (the control plane applies them
  all, oldest first, so a newer one overrides where both set a field, see `telemetry.policy`);
- IST0160 when several Telemetries of a namespace have no selector (the oldest is used).

``telemetry.ProviderAnalyzer``: IST0157 for an ``accessLogging`` entry (not ``disabled``) without providers
while the MeshConfig has no ``defaultProviders.accessLogging`` to fall back on: it logs nothing.

``telemetry.LightstepAnalyzer``: IST0002 for tracing through a MeshConfig ``lightstep`` extension provider.
"""

from __future__ import annotations

from collections import defaultdict

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context, selector_string
from isthmus.analyze.messages import go_q
from isthmus.analyze.registry import analyzer
from isthmus.api.paths import join
from isthmus.config.store import Config


@analyzer(
    "telemetry.SelectorAnalyzer",
    "Validates that telemetries that define a selector match at least one pod, and that there aren't "
    "multiple telemetry resources that select overlapping pods",
    ("IST0101", "IST0159", "IST0160"),
)
def telemetry_selectors(ctx: Context) -> None:
    pods_to_telemetries: dict[tuple[str, str], list[Config]] = defaultdict(list)
    no_selector: dict[str, list[Config]] = defaultdict(list)
    for cfg in ctx.configs("Telemetry"):
        spec = cfg.spec
        if spec.target_ref is not None or spec.target_refs:
            continue
        ns = cfg.namespace
        selector = dict(spec.selector.match_labels) if spec.selector is not None else {}
        if not selector:
            no_selector[ns].append(cfg)
            continue
        pods = ctx.pods_selected(selector, ns)
        if not pods:
            ctx.report(
                m.ReferencedResourceNotFound,
                cfg,
                "selector",
                go_q(selector_string(selector)),
                field=join("spec.selector.matchLabels", sorted(selector)[0]),
            )
            continue
        for pod in pods:
            pods_to_telemetries[(pod.namespace, pod.name)].append(cfg)

    ctx.report_selector_conflicts(
        pods_to_telemetries,
        no_selector,
        m.ConflictingTelemetryWorkloadSelectors,
        m.MultipleTelemetriesWithoutWorkloadSelectors,
    )


@analyzer(
    "telemetry.ProviderAnalyzer",
    "Validates that providers in telemery resource is valid",
    ("IST0157",),
)
def telemetry_providers(ctx: Context) -> None:
    spec = ctx.mesh.spec
    defaults = spec.default_providers if spec is not None else None
    if defaults is not None and defaults.access_logging:
        return
    for cfg in ctx.configs("Telemetry"):
        for i, logging in enumerate(cfg.spec.access_logging or ()):
            if logging.disabled or logging.providers:
                continue
            ctx.report(
                m.InvalidTelemetryProvider,
                cfg,
                cfg.name,
                go_q(cfg.namespace),
                field=f"spec.accessLogging[{i}]",
            )


@analyzer(
    "telemetry.LightstepAnalyzer",
    "Validates that lightstep provider is still used",
    ("IST0002",),
)
def lightstep_providers(ctx: Context) -> None:
    spec = ctx.mesh.spec
    names = {p.name for p in (spec.extension_providers or ()) if p.lightstep is not None} if spec else set()
    if not names:
        return
    for cfg in ctx.configs("Telemetry"):
        for i, tracing in enumerate(cfg.spec.tracing or ()):
            for j, provider in enumerate(tracing.providers or ()):
                if provider.name in names:
                    ctx.report(
                        m.Deprecated,
                        cfg,
                        f"The Lightstep provider {provider.name} is deprecated, please migrate to OpenTelemetry "
                        "provider.",
                        field=f"spec.tracing[{i}].providers[{j}].name",
                    )
