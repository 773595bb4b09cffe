"""Deltas of the in-proxy metrics module's cumulative series (`statsmodule`).

The module sends a series' totals since the Envoy process loaded it over UDP: in the next second's
report after it grew, and in every report of all series (at least every 10 s). A lost datagram costs
nothing (a later one carries the same totals and more) and a late one is recognised by totals that went
down, and skipped. Each (proxy, module instance) keeps the last totals
seen per series; what the control plane records is the difference. A new instance (Envoy restarted)
starts from zero, so everything it counted is recorded once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from operator import sub
from typing import Any

from isthmus.telemetry import statsmodule

__all__ = ["SeriesDeltas"]

_MAX_INSTANCES_PER_PROXY = 4  # an Envoy restart leaves its old instance behind; keep a few


def _values(series: Any) -> tuple[Any, ...]:
    return tuple(getattr(series, name) for name in _value_fields(type(series)))


def _value_fields(cls: type) -> tuple[str, ...]:
    """The fields of a series type that hold totals (the rest is its key)."""
    return statsmodule.HTTP_VALUE_FIELDS if cls is statsmodule.HttpSeries else statsmodule.TCP_VALUE_FIELDS


_STALE = object()  # `_minus`'s answer for totals that went down
_ZEROS = (0,) * statsmodule.BUCKETS  # a histogram that did not grow


def _minus(new: Any, totals: tuple[Any, ...], before: tuple[Any, ...]) -> Any:
    """The series `new` (whose totals are `totals`) less the totals `before`, field by field (histograms
    bucket by bucket); None when nothing grew, `_STALE` when some total went down (an older datagram
    arriving after a newer one)."""
    changed = False
    diff: dict[str, Any] = {}
    for name, a, b in zip(_value_fields(type(new)), totals, before, strict=True):
        if a == b:  # most fields of most series between two reports: no arithmetic
            diff[name] = _ZEROS if type(a) is tuple else 0
            continue
        changed = True
        if type(a) is tuple:
            d: Any = tuple(map(sub, a, b))
            if min(d) < 0:
                return _STALE
        else:
            d = a - b
            if d < 0:
                return _STALE
        diff[name] = d
    return replace(new, **diff) if changed else None


def _interned(key: tuple[str, tuple[Any, ...]]) -> tuple[str, tuple[Any, ...]]:
    """A series key whose strings are interned: a proxy's series repeat its clusters, addresses and SANs,
    so a stored key shares them instead of holding each report's copies."""
    kind, fields = key
    return kind, tuple(sys.intern(f) if type(f) is str else f for f in fields)


class SeriesDeltas:
    """Last totals per (proxy id, module instance, series key)."""

    def __init__(self) -> None:
        # proxy id -> module instance -> series key -> the totals last seen
        self._last: dict[str, dict[str, dict[tuple, tuple[Any, ...]]]] = {}

    def deltas(self, proxy_id: str, instance: str, series: Iterator[Any] | tuple[Any, ...]) -> list[Any]:
        """The growth of each series since the totals last seen from this instance (the whole totals for
        a series seen the first time)."""
        instances = self._last.setdefault(proxy_id, {})
        last = instances.get(instance)
        if last is None:
            if len(instances) >= _MAX_INSTANCES_PER_PROXY:
                instances.pop(next(iter(instances)))
            last = instances[instance] = {}
        out = []
        for s in series:
            key = (type(s).__name__, s.key())
            totals = _values(s)
            before = last.get(key)
            if before is None:
                if any(totals):
                    out.append(s)
                # Only the totals are kept (not the parsed series and its strings), under the interned key.
                last[_interned(key)] = totals
                continue
            d = _minus(s, totals, before)
            if d is _STALE:
                continue  # older than what was recorded: keep the newer totals
            last[key] = totals  # an equal key: the dict keeps the interned one
            if d is not None:
                out.append(d)
        return out

    def forget(self, proxy_id: str) -> None:
        self._last.pop(proxy_id, None)
