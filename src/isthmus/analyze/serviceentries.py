"""ServiceEntry analyzers (istioctl's ``pkg/config/analysis/analyzers/serviceentry``).

- ``serviceentry.Analyzer``: IST0134 for each TCP (or protocol-less) port of a ServiceEntry without
  ``addresses``, unless addresses were allocated (``status.addresses``) or the mesh auto-allocates them
  (``ISTIO_META_DNS_CAPTURE`` with ``ISTIO_META_DNS_AUTO_ALLOCATE`` / ``PILOT_ENABLE_IP_AUTOALLOCATE``).
- ``serviceentry.ConflictingServiceEntryProtocolAnalyzer``: IST0177 when ServiceEntries visible in the same
  namespace give one host and port different protocols.
"""

from __future__ import annotations

from collections import defaultdict

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context
from isthmus.analyze.messages import go_q
from isthmus.analyze.registry import analyzer
from isthmus.config.store import Config


def _auto_allocated(ctx: Context) -> bool:
    spec = ctx.mesh.spec
    dc = getattr(spec, "default_config", None) if spec is not None else None
    meta = dict(getattr(dc, "proxy_metadata", None) or {}) if dc is not None else {}
    if meta.get("ISTIO_META_DNS_CAPTURE") != "true":
        return False
    return (
        meta.get("ISTIO_META_DNS_AUTO_ALLOCATE") == "true"
        or meta.get("PILOT_ENABLE_IP_AUTOALLOCATE") == "true"
    )


def _status_addresses(cfg: Config) -> bool:
    status = cfg.resource.status or {}
    return bool(status.get("addresses")) if isinstance(status, dict) else False


@analyzer(
    "serviceentry.Analyzer",
    "Checks the validity of ServiceEntry",
    ("IST0134",),
)
def addresses_required(ctx: Context) -> None:
    if _auto_allocated(ctx):
        return
    for cfg in ctx.configs("ServiceEntry"):
        spec = cfg.spec
        if spec.addresses or _status_addresses(cfg):
            continue
        for i, port in enumerate(spec.ports or ()):
            if not port.protocol or port.protocol.upper() == "TCP":
                ctx.report(m.ServiceEntryAddressesRequired, cfg, field=f"spec.ports[{i}]")


@analyzer(
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
    "Checks if multiple ServiceEntries define the same host and port with different protocols",
    ("IST0177",),
)
def conflicting_protocols(ctx: Context) -> None:
    index: dict[tuple[str, str, int], list[tuple[str, Config]]] = defaultdict(list)
    for cfg in ctx.configs("ServiceEntry"):
        spec, ns = cfg.spec, cfg.namespace
        export_to = list(spec.export_to or ())
        if not export_to or "*" in export_to:
            scopes = ["*"]
        else:
            scopes = list(dict.fromkeys(ns if e == "." else e for e in export_to))
        for scope in scopes:
            for host in spec.hosts or ():
                for port in spec.ports or ():
                    index[(scope, host, int(port.number))].append(((port.protocol or "").upper(), cfg))
    reported: set[tuple[str, str, str]] = set()
    for (scope, host, port), entries in index.items():
        if scope != "*":
            entries = entries + index.get(("*", host, port), [])
        protocols = sorted({p for p, _ in entries})
        if len(protocols) < 2:
            continue
        names = sorted({f"{c.namespace}/{c.name}" for _, c in entries})
        for _, cfg in entries:
            if cfg.key in reported:
                continue
            reported.add(cfg.key)
            ctx.report(
                m.ConflictingServiceEntryProtocol,
                cfg,
                ", ".join(names),
                go_q(host),
                port,
                ", ".join(protocols),
                field="metadata.name",
            )
