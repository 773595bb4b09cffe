"""The built-in trace collector: Zipkin v2 JSON spans in a bounded in-memory store.

Envoy's Zipkin tracer posts batches of spans (``POST /api/v2/spans``, a JSON array of Zipkin v2 spans).
`SpanStore` keeps the newest `max_traces` traces (oldest evicted first), at most `max_spans` spans per
trace, and answers the dashboard's queries (`traces`, `trace`) and Zipkin's own read API
(`/api/v2/services`, `/api/v2/traces`, `/api/v2/trace/{id}`), so the Zipkin UI or any Zipkin client can
read it too.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_HEX = re.compile(r"^[0-9a-f]{1,32}$")


class SpanError(ValueError):
    """A span that is not valid Zipkin v2."""


def normalize_id(value: Any, *, trace: bool = False) -> str:
    s = str(value or "").strip().lower()
    if not _HEX.match(s):
        raise SpanError(f"invalid {'trace' if trace else 'span'} id {value!r}")
    if trace:
        # 64-bit ids are left-padded to 16 hex digits; 128-bit ids whose high half is zero equal the
        # 64-bit id (Zipkin's rule), so B3 64-bit and W3C 128-bit views of one trace meet.
        s = s.rjust(16, "0") if len(s) <= 16 else s.rjust(32, "0")
        if len(s) == 32 and s.startswith("0" * 16):
            s = s[16:]
        return s
    return s.rjust(16, "0")


@dataclass
class Trace:
    trace_id: str
    spans: dict[str, dict[str, Any]] = field(default_factory=dict)  # (span id + kind) -> span
    updated: float = 0.0

    @property
    def start_us(self) -> int:
        ts = [s["timestamp"] for s in self.spans.values() if s.get("timestamp")]
        return min(ts) if ts else 0

    @property
    def end_us(self) -> int:
        ends = [
            s.get("timestamp", 0) + s.get("duration", 0) for s in self.spans.values() if s.get("timestamp")
        ]
        return max(ends) if ends else 0

    def services(self) -> list[str]:
        names = set()
        for s in self.spans.values():
            for ep in ("localEndpoint", "remoteEndpoint"):
                name = (s.get(ep) or {}).get("serviceName")
                if name and ep == "localEndpoint":
                    names.add(name)
        return sorted(names)

    def root(self) -> dict[str, Any] | None:
        ids = {s["id"] for s in self.spans.values()}
        roots = [s for s in self.spans.values() if not s.get("parentId") or s["parentId"] not in ids]
        if not roots:
            return None
        return min(roots, key=lambda s: (s.get("timestamp", 0), 0 if s.get("kind") == "SERVER" else 1))

    def has_error(self) -> bool:
        for s in self.spans.values():
            tags = s.get("tags") or {}
            if "error" in tags:
                return True
            code = str(tags.get("http.status_code", ""))
            if code.isdigit() and int(code) >= 500:
                return True
        return False

    def summary(self) -> dict[str, Any]:
        root = self.root() or {}
        start, end = self.start_us, self.end_us
        return {
            "traceId": self.trace_id,
            "rootService": (root.get("localEndpoint") or {}).get("serviceName", ""),
            "rootName": root.get("name", ""),
            "start": start,
            "durationUs": max(0, end - start),
            "spanCount": len(self.spans),
            "services": self.services(),
            "error": self.has_error(),
        }

    def sorted_spans(self) -> list[dict[str, Any]]:
        return sorted(self.spans.values(), key=lambda s: (s.get("timestamp", 0), s.get("kind") != "CLIENT"))


def _clean_span(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpanError("a span must be a JSON object")
    span: dict[str, Any] = {
        "traceId": normalize_id(raw.get("traceId"), trace=True),
        "id": normalize_id(raw.get("id")),
    }
    if raw.get("parentId"):
        span["parentId"] = normalize_id(raw["parentId"])
    for key in ("name", "kind"):
        if raw.get(key):
            span[key] = str(raw[key])
    for key in ("timestamp", "duration"):
        if raw.get(key) is not None:
            try:
                span[key] = int(raw[key])
            except (TypeError, ValueError) as e:
                raise SpanError(f"{key} must be an integer (microseconds)") from e
    for key in ("localEndpoint", "remoteEndpoint"):
        if isinstance(raw.get(key), dict):
            span[key] = dict(raw[key])
    if isinstance(raw.get("tags"), dict):
        span["tags"] = {str(k): str(v) for k, v in raw["tags"].items()}
    if isinstance(raw.get("annotations"), list):
        span["annotations"] = raw["annotations"]
    for key in ("shared", "debug"):
        if raw.get(key):
            span[key] = True
    return span


class SpanStore:
    def __init__(self, max_traces: int = 2000, max_spans: int = 500, clock: Any = time.time) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self.clock = clock
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self.received = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, spans: Iterable[Any]) -> int:
        """Store Zipkin v2 spans (raises SpanError on the first invalid one, keeping those before it)."""
        n = 0
        now = self.clock()
        for raw in spans:
            span = _clean_span(raw)
            tid = span["traceId"]
            trace = self._traces.get(tid)
            if trace is None:
                trace = self._traces[tid] = Trace(tid)
            else:
                self._traces.move_to_end(tid)
            key = span["id"] + "/" + span.get("kind", "") + ("/shared" if span.get("shared") else "")
            if key not in trace.spans and len(trace.spans) >= self.max_spans:
                self.dropped += 1
                continue
            trace.spans[key] = span
            trace.updated = now
            n += 1
            self.received += 1
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        return n

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        try:
            tid = normalize_id(trace_id, trace=True)
        except SpanError:
            return None
        trace = self._traces.get(tid)
        return trace.sorted_spans() if trace is not None else None

    def traces(
        self,
        service: str | None = None,
        limit: int = 20,
        *,
        lookback_s: float | None = None,
        min_duration_us: int | None = None,
        span_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """Summaries of the newest traces (by start time), optionally of one service."""
        out = []
        horizon = (self.clock() - lookback_s) * 1e6 if lookback_s else None
        for trace in reversed(self._traces.values()):
            if service and service not in trace.services():
                continue
            if span_name and not any(s.get("name") == span_name for s in trace.spans.values()):
                continue
            summary = trace.summary()
            if horizon is not None and summary["start"] < horizon:
                continue
            if min_duration_us is not None and summary["durationUs"] < min_duration_us:
                continue
            out.append(summary)
        out.sort(key=lambda s: s["start"], reverse=True)
        return out[: max(0, limit)]

    def raw_traces(
        self, service: str | None = None, limit: int = 10, **kw: Any
    ) -> list[list[dict[str, Any]]]:
        """Zipkin's GET /api/v2/traces: a list of traces, each a list of spans."""
        return [self.trace(s["traceId"]) or [] for s in self.traces(service, limit, **kw)]

    def services(self) -> list[str]:
        names: set[str] = set()
        for trace in self._traces.values():
            names.update(trace.services())
        return sorted(names)

    def span_names(self, service: str) -> list[str]:
        names: set[str] = set()
        for trace in self._traces.values():
            for s in trace.spans.values():
                if (s.get("localEndpoint") or {}).get("serviceName") == service and s.get("name"):
                    names.add(s["name"])
        return sorted(names)
