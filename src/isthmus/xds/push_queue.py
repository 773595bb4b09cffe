"""Push requests and the debouncer that merges them.

`update()` calls on the server land here. A burst of updates becomes one push: the debouncer waits until
`debounce_after` seconds pass with no new update, but never longer than `debounce_max` after the first
update it holds (istiod's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX). Merging: any full request makes the
merged push full; the EDS cluster sets of endpoint-only requests are united; the newest snapshot wins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushRequest:
    """What changed. `full`: any config change, every type to every proxy. Otherwise an endpoint-only change:
    EDS only, only to proxies watching one of `eds_only_clusters`, and only those clusters' resources."""

    full: bool
    eds_only_clusters: frozenset[str] = frozenset()
    reason: str = ""

    def merge(self, other: PushRequest) -> PushRequest:
        full = self.full or other.full
        reasons = [r for r in (self.reason, other.reason) if r]
        reason = self.reason if self.reason == other.reason else "; ".join(dict.fromkeys(reasons))
        return PushRequest(
            full=full,
            eds_only_clusters=frozenset() if full else self.eds_only_clusters | other.eds_only_clusters,
            reason=reason,
        )


@dataclass(frozen=True)
class Push:
    """A debounced push as handed to the connections: the snapshot to build from, the merged request,
    when the first update of the batch arrived (monotonic clock; for convergence time) and when the push
    was dispatched."""

    snapshot: Any
    request: PushRequest
    first_update: float
    dispatched: float
    updates: int = 1

    def merge(self, newer: Push) -> Push:
        """Fold a newer push into this one (a connection that had not started this one yet)."""
        return Push(
            snapshot=newer.snapshot,
            request=self.request.merge(newer.request),
            first_update=min(self.first_update, newer.first_update),
            dispatched=min(self.dispatched, newer.dispatched),
            updates=self.updates + newer.updates,
        )


class Debouncer:
    """Collects `(snapshot, PushRequest)` updates and calls `dispatch(push)` once per quiet period.

    `add` must be called on the event loop's thread; `run` is the task that dispatches.
    """

    def __init__(
        self,
        dispatch: Callable[[Push], None],
        debounce_after: float,
        debounce_max: float,
        clock: Callable[[], float] = time.monotonic,
        on_debounced: Callable[[float, int], None] | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._after = max(0.0, debounce_after)
        self._max = max(self._after, debounce_max)
        self._clock = clock
        self._on_debounced = on_debounced
        self._snapshot: Any = None
        self._request: PushRequest | None = None
        self._first = 0.0
        self._last = 0.0
        self._count = 0
        self._wake = asyncio.Event()

    @property
    def pending(self) -> PushRequest | None:
        return self._request

    def add(self, snapshot: Any, request: PushRequest) -> None:
        now = self._clock()
        self._snapshot = snapshot
        if self._request is None:
            self._request = request
            self._first = now
            self._count = 0
        else:
            self._request = self._request.merge(request)
        self._last = now
        self._count += 1
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._request is None:
                continue
            while True:
                now = self._clock()
                left = min(self._last + self._after - now, self._first + self._max - now)
                if left <= 0:
                    break
                await asyncio.sleep(left)
            self.flush()

    def flush(self) -> None:
        """Dispatch what is pending now, without waiting."""
        request, snapshot = self._request, self._snapshot
        if request is None:
            return
        now = self._clock()
        push = Push(
            snapshot=snapshot, request=request, first_update=self._first, dispatched=now, updates=self._count
        )
        self._request = None
        self._wake.clear()
        if self._on_debounced is not None:
            self._on_debounced(now - self._first, self._count)
        try:
            self._dispatch(push)
        except Exception:  # a bug in dispatch must not kill the debouncer
            log.exception("dispatching push failed")
