"""Synchronous wrappers for tests and scripts.

``request`` and ``run_load`` run the async versions on a private event loop (in a helper thread when
the caller already runs one). ``LoadGenerator`` runs load in a background thread until ``stop()``::

    with LoadGenerator(url, proxy=p, concurrency=4, qps=100) as gen:
        gen.wait_for(20)
        ...                     # change the config while traffic flows
    assert gen.result.all_ok, gen.result.codes
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from isthmus.client import http, load
from isthmus.client.http import DEFAULT_TIMEOUT, HeadersLike, Response
from isthmus.client.load import LoadResult

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def request(
    url: str,
    *,
    proxy: str | None = None,
    method: str = "GET",
    headers: HeadersLike | None = None,
    body: bytes | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_to: str | Sequence[str] | None = None,
    source_ip: str | None = None,
) -> Response:
    """See ``isthmus.client.http.request``."""
    return _run(
        http.request(
            url,
            proxy=proxy,
            method=method,
            headers=headers,
            body=body,
            timeout=timeout,
            connect_to=connect_to,
            source_ip=source_ip,
        )
    )


def run_load(url: str, **kwargs: Any) -> LoadResult:
    """See ``isthmus.client.load.run_load`` (same keyword arguments)."""
    return _run(load.run_load(url, **kwargs))


class LoadGenerator:
    """Background load in its own thread and event loop; same arguments as
    ``isthmus.client.load.LoadGenerator``. ``stop()`` lets in-flight requests finish."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._gen = load.LoadGenerator(url, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.result: LoadResult | None = None

    @property
    def completed(self) -> int:
        return self._gen.completed

    def start(self) -> LoadGenerator:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="isthmus-load", daemon=True)
        self._thread.start()
        self._call(self._gen.start(), timeout=10.0)
        return self

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def snapshot(self) -> LoadResult:
        assert self._loop is not None
        return self._call(_snapshot(self._gen), timeout=10.0)

    def wait_for(self, requests: int, timeout: float = 10.0) -> None:
        """Block until ``requests`` responses were collected (TimeoutError after ``timeout``)."""
        self._call(self._gen.wait_for(requests, timeout), timeout=timeout + 5.0)

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for a bounded run (count/duration) to end."""
        return self._finish(self._gen.wait(), timeout)

    def stop(self, timeout: float | None = None) -> LoadResult:
        """Stop, wait for in-flight requests (bounded by ``timeout``, default the request timeout + 5 s)."""
        if self.result is not None:
            return self.result
        return self._finish(self._gen.stop(), timeout)

    def _finish(self, coro: Coroutine[Any, Any, LoadResult], timeout: float | None) -> LoadResult:
        if self._loop is None:
            raise RuntimeError("start() first")
        try:
            self.result = self._call(coro, timeout if timeout is not None else self._gen.timeout + 5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5.0)
            if not self._loop.is_running():
                self._loop.close()
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.result is None and self._loop is not None:
            self.stop()


async def _snapshot(gen: load.LoadGenerator) -> LoadResult:
    return gen.snapshot()
