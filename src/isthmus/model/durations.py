"""Duration values from config (Go-style strings such as `1.5s`, `2m30s`, `100ms`) for generators."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")


def parse_seconds(text: str) -> float:
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def to_seconds(value: Any, default: float | None = None) -> float:
    if value is None:
        if default is None:
            raise ValueError("duration required")
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    return parse_seconds(str(value))


def proto_duration(seconds: float) -> Duration:
    d = Duration()
    whole = int(seconds)
    d.seconds = whole
    d.nanos = int(round((seconds - whole) * 1e9))
    return d


def duration_of(value: Any) -> Duration:
    return proto_duration(to_seconds(value))
