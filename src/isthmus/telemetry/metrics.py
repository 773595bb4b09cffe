"""The aggregated Istio metrics: series per reporting proxy, exposed in Prometheus text format.

Series are kept per proxy (so each proxy's own endpoint can be served, as istio-proxy serves its own on
:15090) and summed over proxies for the control plane's merged `/metrics`. When a proxy goes away its
series are folded into a "retired" set, so merged counters never go backwards.

Histograms use Envoy's default buckets (`istio.BUCKETS`) with `le` printed as Envoy prints it; values are
recorded as istio-proxy records them (whole milliseconds, bytes).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from isthmus.telemetry import istio

_NB = len(istio.BUCKETS)


class Hist:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (_NB + 1)  # per bucket (not cumulative); the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(istio.BUCKETS, value)] += 1
        self.sum += value

    def add_counts(self, counts: Sequence[int], total: float) -> None:
        """Observations already bucketed over the same bounds (per bucket, the last one +Inf)."""
        c = self.counts
        for i, n in enumerate(counts):
            c[i] += n
        self.sum += total

    def add(self, other: Hist) -> None:
        c = self.counts
        for i, n in enumerate(other.counts):
            c[i] += n
        self.sum += other.sum

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        out = []
        total = 0
        for le, n in zip(istio.BUCKET_LABELS, self.counts, strict=False):
            total += n
            out.append((le, total))
        total += self.counts[-1]
        out.append(("+Inf", total))
        return out

    def copy(self) -> Hist:
        h = Hist()
        h.counts = list(self.counts)
        h.sum = self.sum
        return h


class HttpSeries:
    __slots__ = (
        "duration",
        "grpc",
        "request_bytes",
        "request_messages",
        "requests",
        "response_bytes",
        "response_messages",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.duration = Hist()
        self.request_bytes = Hist()
        self.response_bytes = Hist()
        self.grpc = False
        self.request_messages = 0
        self.response_messages = 0

    def add(self, other: HttpSeries) -> None:
        self.requests += other.requests
        self.duration.add(other.duration)
        self.request_bytes.add(other.request_bytes)
        self.response_bytes.add(other.response_bytes)
        self.grpc = self.grpc or other.grpc
        self.request_messages += other.request_messages
        self.response_messages += other.response_messages


class TcpSeries:
    __slots__ = ("closed", "opened", "received", "sent")

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.sent = 0
        self.received = 0

    def add(self, other: TcpSeries) -> None:
        self.opened += other.opened
        self.closed += other.closed
        self.sent += other.sent
        self.received += other.received


class Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def add(self, other: Count) -> None:
        self.value += other.value


# Histogram metrics (the others are counters).
HISTOGRAMS = frozenset({istio.REQUEST_DURATION, istio.REQUEST_BYTES, istio.RESPONSE_BYTES})
ExtraKey = tuple[str, tuple[tuple[str, str], ...]]  # (istio_* metric name, ((label, value), ...))


class ProxyStats:
    """The series one proxy reported. Keys are label-value tuples (`istio.HTTP_LABELS` / `TCP_LABELS`).

    `extra` holds series whose labels a Telemetry ``tagOverrides`` changed (or a proxy whose Telemetry
    changes any metric): one metric each, keyed by its name and its own (label, value) pairs."""

    __slots__ = ("extra", "http", "tcp")

    def __init__(self) -> None:
        self.http: dict[tuple[str, ...], HttpSeries] = {}
        self.tcp: dict[tuple[str, ...], TcpSeries] = {}
        self.extra: dict[ExtraKey, Count | Hist] = {}

    def extra_series(self, key: ExtraKey) -> Any:
        s = self.extra.get(key)
        if s is None:
            s = self.extra[key] = Hist() if key[0] in HISTOGRAMS else Count()
        return s

    def http_series(self, key: tuple[str, ...]) -> HttpSeries:
        s = self.http.get(key)
        if s is None:
            s = self.http[key] = HttpSeries()
        return s

    def tcp_series(self, key: tuple[str, ...]) -> TcpSeries:
        s = self.tcp.get(key)
        if s is None:
            s = self.tcp[key] = TcpSeries()
        return s

    def merge_into(self, other: ProxyStats) -> None:
        for key, s in self.http.items():
            other.http_series(key).add(s)
        for key, t in self.tcp.items():
            other.tcp_series(key).add(t)
        for key, e in self.extra.items():
            other.extra_series(key).add(e)


class MetricsStore:
    """Series of every proxy; thread-safe enough for one writer (the event loop) and scrapes."""

    def __init__(self) -> None:
        self.proxies: dict[str, ProxyStats] = {}
        self.retired = ProxyStats()
        self.lock = threading.Lock()

    def stats(self, proxy_id: str) -> ProxyStats:
        s = self.proxies.get(proxy_id)
        if s is None:
            s = self.proxies[proxy_id] = ProxyStats()
        return s

    def retire(self, proxy_id: str) -> None:
        with self.lock:
            s = self.proxies.pop(proxy_id, None)
            if s is not None:
                s.merge_into(self.retired)

    def merged(self, proxy_id: str | None = None) -> ProxyStats:
        """A copy: one proxy's series, or the sum over every proxy (retired ones included)."""
        out = ProxyStats()
        with self.lock:
            sources: Iterable[ProxyStats]
            if proxy_id is not None:
                s = self.proxies.get(proxy_id)
                sources = [s] if s is not None else []
            else:
                sources = [self.retired, *self.proxies.values()]
            for s in sources:
                s.merge_into(out)
        return out


def families(stats: ProxyStats) -> list[Metric]:
    """Prometheus metric families of a set of series (empty families are still described)."""
    requests = CounterMetricFamily(
        istio.REQUESTS_TOTAL, istio.HELP[istio.REQUESTS_TOTAL], labels=istio.HTTP_LABELS
    )
    duration = HistogramMetricFamily(
        istio.REQUEST_DURATION, istio.HELP[istio.REQUEST_DURATION], labels=istio.HTTP_LABELS
    )
    req_bytes = HistogramMetricFamily(
        istio.REQUEST_BYTES, istio.HELP[istio.REQUEST_BYTES], labels=istio.HTTP_LABELS
    )
    resp_bytes = HistogramMetricFamily(
        istio.RESPONSE_BYTES, istio.HELP[istio.RESPONSE_BYTES], labels=istio.HTTP_LABELS
    )
    req_msgs = CounterMetricFamily(
        istio.REQUEST_MESSAGES, istio.HELP[istio.REQUEST_MESSAGES], labels=istio.HTTP_LABELS
    )
    resp_msgs = CounterMetricFamily(
        istio.RESPONSE_MESSAGES, istio.HELP[istio.RESPONSE_MESSAGES], labels=istio.HTTP_LABELS
    )
    sent = CounterMetricFamily(istio.TCP_SENT, istio.HELP[istio.TCP_SENT], labels=istio.TCP_LABELS)
    received = CounterMetricFamily(
        istio.TCP_RECEIVED, istio.HELP[istio.TCP_RECEIVED], labels=istio.TCP_LABELS
    )
    opened = CounterMetricFamily(istio.TCP_OPENED, istio.HELP[istio.TCP_OPENED], labels=istio.TCP_LABELS)
    closed = CounterMetricFamily(istio.TCP_CLOSED, istio.HELP[istio.TCP_CLOSED], labels=istio.TCP_LABELS)
    for key in sorted(stats.http):
        s = stats.http[key]
        labels = list(key)
        requests.add_metric(labels, s.requests)
        duration.add_metric(labels, s.duration.cumulative(), s.duration.sum)
        req_bytes.add_metric(labels, s.request_bytes.cumulative(), s.request_bytes.sum)
        resp_bytes.add_metric(labels, s.response_bytes.cumulative(), s.response_bytes.sum)
        if s.grpc:
            req_msgs.add_metric(labels, s.request_messages)
            resp_msgs.add_metric(labels, s.response_messages)
    for key in sorted(stats.tcp):
        t = stats.tcp[key]
        labels = list(key)
        sent.add_metric(labels, t.sent)
        received.add_metric(labels, t.received)
        opened.add_metric(labels, t.opened)
        closed.add_metric(labels, t.closed)
    out = [requests, duration, req_bytes, resp_bytes, req_msgs, resp_msgs, sent, received, opened, closed]
    if stats.extra:
        by_name = {
            istio.REQUESTS_TOTAL: requests,
            istio.REQUEST_DURATION: duration,
            istio.REQUEST_BYTES: req_bytes,
            istio.RESPONSE_BYTES: resp_bytes,
            istio.REQUEST_MESSAGES: req_msgs,
            istio.RESPONSE_MESSAGES: resp_msgs,
            istio.TCP_SENT: sent,
            istio.TCP_RECEIVED: received,
            istio.TCP_OPENED: opened,
            istio.TCP_CLOSED: closed,
        }
        for (name, pairs), value in sorted(stats.extra.items(), key=lambda kv: kv[0]):
            family = by_name.get(name)
            if family is None:
                continue
            labels = dict(pairs)
            if isinstance(value, Hist):
                for le, n in value.cumulative():
                    family.samples.append(Sample(f"{family.name}_bucket", {**labels, "le": le}, n))
                family.samples.append(Sample(f"{family.name}_count", labels, value.count))
                family.samples.append(Sample(f"{family.name}_sum", labels, value.sum))
            else:
                family.samples.append(Sample(f"{family.name}_total", labels, value.value))
    return out


class IstioCollector(Collector):
    """A prometheus_client collector of the istio_* metrics: merged, or one proxy's."""

    def __init__(self, store: MetricsStore, proxy_id: str | None = None, before: Any = None) -> None:
        self.store = store
        self.proxy_id = proxy_id
        self._before = before  # called before each scrape (housekeeping), may be None

    def collect(self) -> Iterator[Metric]:
        if self._before is not None:
            self._before()
        yield from families(self.store.merged(self.proxy_id))

    def describe(self) -> Iterator[Metric]:
        yield from families(ProxyStats())


def render(store: MetricsStore, proxy_id: str | None = None) -> bytes:
    """Prometheus text exposition (0.0.4) of the merged or one proxy's istio_* metrics."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(IstioCollector(store, proxy_id))
    return generate_latest(registry)
