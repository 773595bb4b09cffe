"""Load: many requests with bounded concurrency, optional QPS pacing, and the summary of DESIGN.md §4.

``run_load`` runs a fixed number of requests (or for a duration); ``LoadGenerator`` runs in the background
until stopped, for "change the config while traffic flows" tests::

    async with LoadGenerator(url, proxy=p, concurrency=4, qps=100) as gen:
        await gen.wait_for(20)          # traffic is flowing
        ...                             # change the mesh
    result = gen.result                 # or: result = await gen.stop()
    assert result.all_ok, result.codes

Each worker keeps its own kept-alive connection (an ``HttpClient``). In-flight requests are never
cancelled by ``stop()``: it lets them finish, so a stop cannot itself produce failed requests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus.client.http import DEFAULT_TIMEOUT, HeadersLike, HttpClient, Response, normalize_headers

MAX_RESPONSES = 100


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadResult:
    """Summary of a run. ``to_dict()`` gives the JSON of ``isthmus curl --count N -o json``."""

    requests: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    # The first error of a request that got no HTTP response (code "0"); every error is in ``errors``.
    error: str | None = None

    @property
    def failed(self) -> int:
        """Requests that got no HTTP response (code "0")."""
        return self.codes.get("0", 0)

    @property
    def ok_count(self) -> int:
        return sum(n for code, n in self.codes.items() if code.startswith("2"))

    @property
    def all_ok(self) -> bool:
        """Every request got a complete 2xx response (and there was at least one)."""
        return self.requests > 0 and self.ok_count == self.requests and not self.errors

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "requests": self.requests,
            "codes": self.codes,
            "servedBy": self.served_by,
            "instances": self.instances,
            "versions": self.versions,
            "errors": self.errors,
            "latencyMs": self.latency_ms,
            "durationS": round(self.duration_s, 3),
            "qps": round(self.requests / self.duration_s, 1) if self.duration_s > 0 else 0.0,
            "responses": self.responses,
        }
        if self.error is not None:
            # DESIGN.md §4: a request without an HTTP response counts under "0" with the error in "error"
            # (also on each such entry of "responses").
            d["error"] = self.error
        return d


class Collector:
    """Accumulates responses into a LoadResult."""

    def __init__(self) -> None:
        self.requests = 0
        self.codes: dict[str, int] = {}
        self.served_by: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.responses: list[dict[str, Any]] = []
        self.first_error: str | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None

    def add(self, resp: Response) -> None:
        self.requests += 1
        code = str(resp.status)
        self.codes[code] = self.codes.get(code, 0) + 1
        if resp.error:
            self.errors[resp.error] = self.errors.get(resp.error, 0) + 1
            if not resp.status and self.first_error is None:
                self.first_error = resp.error
        self.latencies.append(resp.latency_ms)
        doc = resp.json_or_none()
        if isinstance(doc, dict):
            for key, counter in (
                ("workload", self.served_by),
                ("instance", self.instances),
                ("version", self.versions),
            ):
                value = doc.get(key)
                if isinstance(value, str) and value:
                    counter[value] = counter.get(value, 0) + 1
        if len(self.responses) < MAX_RESPONSES:
            d = resp.to_dict()
            if doc is not None:
                d["body"] = doc
            self.responses.append(d)

    def result(self) -> LoadResult:
        lat = sorted(self.latencies)
        end = self.finished if self.finished is not None else time.perf_counter()
        return LoadResult(
            requests=self.requests,
            codes=dict(sorted(self.codes.items())),
            served_by=dict(sorted(self.served_by.items())),
            instances=dict(sorted(self.instances.items())),
            versions=dict(sorted(self.versions.items())),
            errors=dict(self.errors),
            latency_ms={
                "p50": round(percentile(lat, 50), 3),
                "p90": round(percentile(lat, 90), 3),
                "p99": round(percentile(lat, 99), 3),
                "max": round(lat[-1], 3) if lat else 0.0,
            },
            responses=list(self.responses),
            duration_s=end - self.started,
            error=self.first_error,
        )


class LoadGenerator:
    """Background load (asyncio). ``count``/``duration`` bound it (None: until ``stop()``)."""

    def __init__(
        self,
        url: str,
        *,
        proxy: str | None = None,
        count: int | None = None,
        duration: float | None = None,
        concurrency: int = 1,
        qps: float | None = None,
        method: str = "GET",
        headers: HeadersLike | None = None,
        body: bytes | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_to: str | Sequence[str] | None = None,
        source_ip: str | None = None,
        keep_alive: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if qps is not None and qps <= 0:
            raise ValueError("qps must be positive")
        self.url = url
        self.count = count
        self.duration = duration
        self.concurrency = concurrency if count is None else max(1, min(concurrency, count))
        self.qps = qps
        self.method = method
        self.headers = normalize_headers(headers)
        self.body = body
        self.timeout = timeout
        self._client_args: dict[str, Any] = {
            "proxy": proxy,
            "timeout": timeout,
            "connect_to": connect_to,
            "source_ip": source_ip,
            "keep_alive": keep_alive,
            "max_idle": 1,
        }
        self.collector = Collector()
        self.result: LoadResult | None = None
        self._issued = 0
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        self._deadline: float | None = None

    @property
    def completed(self) -> int:
        return self.collector.requests

    def snapshot(self) -> LoadResult:
        """The summary so far, without stopping."""
        return self.collector.result()

    async def start(self) -> LoadGenerator:
        if self._tasks:
            return self
        self._stop_event = asyncio.Event()
        self._progress = asyncio.Condition()
        self.collector = Collector()
        start = time.perf_counter()
        self.collector.started = start
        self._deadline = start + self.duration if self.duration is not None else None
        self._running = self.concurrency
        self._tasks = [asyncio.create_task(self._worker(start)) for _ in range(self.concurrency)]
        return self

    def _next_slot(self) -> int | None:
        if self._stopping:
            return None
        if self.count is not None and self._issued >= self.count:
            return None
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return None
        slot = self._issued
        self._issued += 1
        return slot

    async def _worker(self, start: float) -> None:
        assert self._stop_event is not None and self._progress is not None
        client = HttpClient(**self._client_args)
        try:
            while True:
                slot = self._next_slot()
                if slot is None:
                    return
                if self.qps:
                    wait = start + slot / self.qps - time.perf_counter()
                    if self._deadline is not None:
                        wait = min(wait, self._deadline - time.perf_counter())
                    if wait > 0:
                        try:
                            await asyncio.wait_for(self._stop_event.wait(), wait)
                            return  # stopped while waiting: this slot is not sent
                        except TimeoutError:
                            pass
                        if self._deadline is not None and time.perf_counter() >= self._deadline:
                            return
                resp = await client.request(
                    self.url, method=self.method, headers=self.headers, body=self.body, timeout=self.timeout
                )
                self.collector.add(resp)
                async with self._progress:
                    self._progress.notify_all()
        finally:
            await client.aclose()
            self._running -= 1
            async with self._progress:
                self._progress.notify_all()  # wait_for() also ends when the load does

    async def wait(self) -> LoadResult:
        """Wait for a bounded run (count or duration) to finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks)
        return self._finish()

    async def stop(self) -> LoadResult:
        """Stop issuing requests, let in-flight ones finish, and return the summary."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        return await self.wait()

    def _finish(self) -> LoadResult:
        if self.result is None:
            self.collector.finished = time.perf_counter()
            self.result = self.collector.result()
        return self.result

    async def wait_for(self, requests: int, timeout: float = 10.0) -> None:
        """Wait until at least ``requests`` responses were collected; TimeoutError after ``timeout``."""
        assert self._progress is not None, "start() first"
        async with asyncio.timeout(timeout):
            async with self._progress:
                await self._progress.wait_for(
                    lambda: self.collector.requests >= requests or self._running == 0
                )
        if self.collector.requests < requests:
            raise TimeoutError(f"load ended after {self.collector.requests} of {requests} requests")

    async def __aenter__(self) -> LoadGenerator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_load(
    url: str,
    *,
    proxy: str | None = None,
    count: int | None = None,
    duration: float | None = None,
    concurrency: int = 1,
    qps: float | None = None,
    method: str = "GET",
    headers: HeadersLike | None = None,
    body: bytes | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_to: str | Sequence[str] | None = None,
    source_ip: str | None = None,
    keep_alive: bool = True,
) -> LoadResult:
    """Send ``count`` requests (or as many as fit in ``duration`` seconds) with ``concurrency`` workers,
    each keeping its connection alive; ``qps`` paces the total rate. Returns the summary."""
    if count is None and duration is None:
        raise ValueError("run_load needs count or duration")
    gen = LoadGenerator(
        url,
        proxy=proxy,
        count=count,
        duration=duration,
        concurrency=concurrency,
        qps=qps,
        method=method,
        headers=headers,
        body=body,
        timeout=timeout,
        connect_to=connect_to,
        source_ip=source_ip,
        keep_alive=keep_alive,
    )
    await gen.start()
    return await gen.wait()
