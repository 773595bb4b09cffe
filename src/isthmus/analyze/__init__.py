"""Configuration analysis: istioctl's analyzers (IST codes) and Isthmus' own (ISM codes).

Every analyzer reads the same model the control plane builds (``model.snapshot.Snapshot``), so what
``isthmus analyze`` reports about a folder is what the running mesh does with it:

- ``analyze(resources, pods=None, ...)``: offline, on loaded resources. Workload instances come from the
  Kubernetes Pods, Deployments and Isthmus Workloads among them (see ``analyze.pods``).
- ``analyze_snapshot(snapshot)``: in the running mesh, on the snapshot the control plane just built;
  messages are grouped by resource key ``(kind, namespace, name)`` for status.

Families: ``schema`` (IST0106/0130/0131/0133), ``deprecation``, ``virtualservices``, ``destinationrules``, ``gateways``,
``sidecars``, ``services``, ``serviceentries``, ``security``, ``telemetry``. Codes are listed in
``analyze.messages``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from isthmus.analyze import messages
from isthmus.analyze.context import Context
from isthmus.analyze.messages import Message, sorted_unique
from isthmus.analyze.pods import default_gateway_resources, derive_pods, needs_default_gateway
from isthmus.analyze.registry import Analyzer, all_analyzers
from isthmus.analyze.schema import from_config_errors, validation_messages
from isthmus.api.errors import ConfigError
from isthmus.config.store import Config, Key
from isthmus.model.ingress import is_derived
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ANALYZE_SOURCE = "analyze"


def run_analyzers(ctx: Context, analyzers: Sequence[Analyzer] | None = None) -> list[Message]:
    """Run analyzers on a context; an analyzer that fails reports IST0001 instead of stopping the rest."""
    for a in analyzers if analyzers is not None else all_analyzers():
        ctx.analyzer = a.name
        try:
            a.fn(ctx)
        except Exception as exc:
            log.exception("analyzer %s failed", a.name)
            ctx.messages.append(Message.of(messages.InternalError, f"{a.name}: {exc!r}", analyzer=a.name))
    ctx.analyzer = ""
    return ctx.messages


def build_snapshot(
    resources: Iterable[Any], pods: Iterable[Pod] | None = None, *, implicit_ingress: bool = True
) -> tuple[Snapshot, Context, list[Any]]:
    """The control plane's snapshot of ``resources`` (creation order = input order), the analysis
    context on it, and the resources it holds (with the built-in ingress gateway when added)."""
    resources = list(resources)
    pod_info = None
    if pods is None:
        ns_labels = {r.name: dict(r.metadata.labels or {}) for r in resources if r.kind == "Namespace"}
        pods, pod_info = derive_pods(resources, ns_labels)
        if implicit_ingress and needs_default_gateway(resources, pods):
            resources += default_gateway_resources({r.key for r in resources})
            pods, pod_info = derive_pods(resources, ns_labels)
    configs = [Config(r, ANALYZE_SOURCE, _EPOCH, i + 1) for i, r in enumerate(resources)]
    snapshot = Snapshot.build(ANALYZE_SOURCE, configs, list(pods))
    return snapshot, Context(snapshot, pod_info=pod_info), resources


def analyze(
    resources: Iterable[Any],
    pods: Iterable[Pod] | None = None,
    *,
    load_messages: Iterable[ConfigError] | None = None,
    implicit_ingress: bool = True,
    analyzers: Sequence[Analyzer] | None = None,
) -> list[Message]:
    """Every analyzer over ``resources`` (api Resources), sorted, most severe first.

    ``pods``: workload instances; by default derived from the Pods, Deployments and Workloads among the
    resources. ``load_messages``: what loading reported (parse errors excluded): they become IST0106 /
    IST0133 / IST0130 / IST0131 / ISM0006; without them, Istio's validation runs on the resources.
    ``implicit_ingress``: add ``isthmus up``'s built-in ingress gateway when a Gateway needs it.
    """
    resources = list(resources)
    _, ctx, _ = build_snapshot(resources, pods, implicit_ingress=implicit_ingress)
    out = list(run_analyzers(ctx, analyzers))
    if analyzers is None:
        out += validation_messages(resources) if load_messages is None else from_config_errors(load_messages)
    return sorted_unique(out)


def analyze_snapshot(
    snapshot: Snapshot, analyzers: Sequence[Analyzer] | None = None
) -> dict[Key, list[Message]]:
    """Analysis of the running mesh's snapshot, by resource key, for resource status. Messages that
    belong to no resource are under the key ``("", "", "")``. The result is kept in the snapshot (which
    never changes), so asking twice costs nothing."""

    def compute() -> dict[Key, list[Message]]:
        ctx = Context(snapshot)
        found = list(run_analyzers(ctx, analyzers))
        if analyzers is None:
            found += validation_messages(
                c for cfgs in snapshot.configs.values() for c in cfgs if not is_derived(c)
            )
        out: dict[Key, list[Message]] = defaultdict(list)
        for msg in sorted_unique(found):
            out[msg.key or ("", "", "")].append(msg)
        return dict(out)

    if analyzers is not None:
        return compute()
    return snapshot.memo(("analyze", "result"), compute)


__all__ = [
    "Analyzer",
    "Context",
    "Message",
    "all_analyzers",
    "analyze",
    "analyze_snapshot",
    "build_snapshot",
    "run_analyzers",
]
