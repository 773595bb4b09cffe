"""The registry of analyzers: each is a function of the analysis ``Context`` that reports messages.

Analyzer names follow istioctl's (``virtualservice.DestinationHostAnalyzer``, ...); Isthmus' own carry an
``isthmus.`` prefix. ``codes`` lists the message codes an analyzer may report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from isthmus.analyze.context import Context

AnalyzerFn = Callable[["Context"], None]


@dataclass(frozen=True)
class Analyzer:
    name: str
    description: str
    codes: tuple[str, ...]
    fn: AnalyzerFn


ANALYZERS: list[Analyzer] = []


def analyzer(name: str, description: str, codes: tuple[str, ...]) -> Callable[[AnalyzerFn], AnalyzerFn]:
    def deco(fn: AnalyzerFn) -> AnalyzerFn:
        if any(a.name == name for a in ANALYZERS):
            raise ValueError(f"analyzer {name} registered twice")
        ANALYZERS.append(Analyzer(name, description, codes, fn))
        return fn

    return deco


def all_analyzers() -> list[Analyzer]:
    """Every analyzer, importing the families on first use."""
    from isthmus.analyze import (  # noqa: F401  (registration side effects)
        deprecation,
        destinationrules,
        gateways,
        security,
        serviceentries,
        services,
        sidecars,
        telemetry,
        virtualservices,
    )

    return list(ANALYZERS)
