"""Parsing of the echo server's knobs: durations and fortio-style ``VALUE[:PERCENT]`` lists.

fortio's echo server reads query parameters such as ``status=503:50`` (503 for half of the requests) or
``delay=10ms:20,1s:5``: a comma-separated list of ``value:percent`` pairs. One random number in [0, 100)
is drawn per request and walked through the list, so the percentages add up (20% 10ms, 5% 1s, 75%
nothing). A value without a percent applies to every request that reaches it (100%).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class BadParameter(ValueError):
    """A query parameter or flag value that cannot be parsed."""


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``100ms``, ``1.5s``, ``2m``, ``1h30m``, ``250us``) into seconds.

    A bare number is a number of seconds.
    """
    s = text.strip()
    if not s:
        raise BadParameter("empty duration")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise BadParameter(f"negative duration {text!r}")
        return value
    pos = 0
    total = 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise BadParameter(f"invalid duration {text!r} (use e.g. 100ms, 1.5s, 2m)")
    return total


@dataclass(frozen=True)
class Weighted(Generic[T]):
    """One ``value[:percent]`` entry."""

    value: T
    percent: float  # 0..100


def parse_weighted(text: str, parse_value: Callable[[str], T]) -> list[Weighted[T]]:
    """Parse ``v1:p1,v2:p2,...`` (fortio syntax); a value without ``:percent`` has 100%."""
    out: list[Weighted[T]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        value_text, sep, percent_text = item.rpartition(":")
        if not sep:
            value_text, percent_text = item, "100"
        try:
            percent = float(percent_text)
        except ValueError as e:
            raise BadParameter(f"invalid percentage in {item!r}") from e
        if not 0 <= percent <= 100:
            raise BadParameter(f"percentage out of range in {item!r}")
        out.append(Weighted(parse_value(value_text), percent))
    if not out:
        raise BadParameter(f"empty value {text!r}")
    return out


def pick_weighted(entries: list[Weighted[T]], rng: Callable[[], float] = random.random) -> T | None:
    """Draw one of the entries as fortio does; None when the draw falls past all percentages."""
    if len(entries) == 1 and entries[0].percent >= 100:
        return entries[0].value
    roll = rng() * 100.0
    for entry in entries:
        if roll < entry.percent:
            return entry.value
        roll -= entry.percent
    return None


def parse_status_code(text: str) -> int:
    try:
        code = int(text)
    except ValueError as e:
        raise BadParameter(f"invalid status code {text!r}") from e
    if not 100 <= code <= 599:
        raise BadParameter(f"status code {code} out of range 100..599")
    return code


def parse_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError as e:
        raise BadParameter(f"invalid size {text!r}") from e
    if size < 0:
        raise BadParameter(f"negative size {text!r}")
    if size > 64 * 1024 * 1024:
        raise BadParameter(f"size {size} too large (max 64 MiB)")
    return size


MAX_DELAY_S = 300.0


def parse_delay(text: str) -> float:
    d = parse_duration(text)
    if d > MAX_DELAY_S:
        raise BadParameter(f"delay {text!r} exceeds the maximum of {MAX_DELAY_S:.0f}s")
    return d


def parse_header_line(text: str, sep: str = ":") -> tuple[str, str]:
    """Split ``name: value`` (value may be empty); raise BadParameter on an empty name."""
    name, found, value = text.partition(sep)
    name = name.strip()
    if not found or not name or any(c.isspace() for c in name):
        raise BadParameter(f"invalid header {text!r} (expected 'name: value')")
    return name, value.strip()
