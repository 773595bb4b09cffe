"""Telemetry analyzers (istioctl's ``telemetry.SelectorAnalyzer``).

- IST0101 for a ``selector`` that matches no pod of the Telemetry's namespace;
- IST0159 when several Telemetries with selectors select the same pod (the control plane uses the
  oldest, see `telemetry.policy`);
- IST0160 when several Telemetries of a namespace have no selector (the oldest is used).
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
