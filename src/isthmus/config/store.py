"""The config store: validated resources, who owns them, their creation order, and status.

Every source (the watched directory, `isthmus apply`, the local runner's pods) writes through here;
only validated resources enter. Each write bumps `version` and notifies subscribers with a `Change`.
Creation order stands in for Kubernetes' creationTimestamp (istiod's tie-breaker for "oldest wins").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isthmus.registry.types import Pod

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class Config:
    """A stored resource with the store's bookkeeping; duck-types as the resource for readers."""

    resource: Any  # api.resource.Resource
    source: str
    created: datetime
    seq: int
    generation: int = 1

    @property
    def key(self) -> Key:
        return self.resource.key

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def namespace(self) -> str:
        return self.resource.namespace

    @property
    def metadata(self) -> Any:
        return self.resource.metadata

    @property
    def spec(self) -> Any:
        return self.resource.spec

    @property
    def origin(self) -> Any:
        return self.resource.origin

    @property
    def creation_order(self) -> tuple:
        """Oldest first: explicit creationTimestamp, else the time the store first saw it. Resources
        created together (one apply, one file, the initial load of a directory) tie on time, and istiod's
        sortConfigByCreationTime breaks such ties by name, then namespace; `seq` only orders kinds."""
        ts = self.resource.metadata.creation_timestamp or self.created
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return (ts, self.name, self.namespace, self.seq)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Change:
    version: int
    upserted: tuple[Key, ...] = ()
    deleted: tuple[Key, ...] = ()
    pods_changed: tuple[tuple[str, str], ...] = ()

    @property
    def config_changed(self) -> bool:
        return bool(self.upserted or self.deleted)


@dataclass
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class Store:
    def __init__(self) -> None:
        self._items: dict[Key, Config] = {}
        self._pods: dict[tuple[str, str], Pod] = {}
        self._seq = itertools.count(1)
        self._subscribers: list[Callable[[Change], None]] = []
        self.version = 0
        # Per-resource status messages (validation warnings, analysis) keyed like resources.
        self.messages: dict[Key, list[Any]] = {}
        # Errors of sources that were refused (file -> errors), shown by status and the dashboard.
        self.source_errors: dict[str, list[Any]] = {}

    # -- reading -------------------------------------------------------------------------------
    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Config]:
        out = [
            c
            for c in self._items.values()
            if (kind is None or c.kind == kind) and (namespace is None or c.namespace == namespace)
        ]
        out.sort(key=lambda c: c.creation_order)
        return out

    def get(self, key: Key) -> Config | None:
        return self._items.get(key)

    def pods(self) -> list[Pod]:
        return list(self._pods.values())

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        self._subscribers.append(callback)

    # -- writing -------------------------------------------------------------------------------
    def apply(self, resources: Iterable[Any], source: str, now: datetime | None = None) -> Change:
        """Create or update resources; a resource keeps its creation order across updates. Resources
        created by one call share their creation time (`now`, if given: several calls made as one)."""
        upserted: list[Key] = []
        now = now or datetime.now(UTC)
        for res in resources:
            key = res.key
            old = self._items.get(key)
            if old is not None and _same(old.resource, res):
                if old.source != source:
                    self._items[key] = Config(res, source, old.created, old.seq, old.generation)
                continue
            if old is None:
                self._items[key] = Config(res, source, now, next(self._seq))
            else:
                self._items[key] = Config(res, source, old.created, old.seq, old.generation + 1)
            upserted.append(key)
        return self._commit(upserted=upserted)

    def delete(self, keys: Iterable[Key]) -> Change:
        deleted = [k for k in keys if self._items.pop(k, None) is not None]
        for k in deleted:
            self.messages.pop(k, None)
        return self._commit(deleted=deleted)

    def replace_source(self, source: str, resources: Iterable[Any], now: datetime | None = None) -> Change:
        """Make `source` own exactly these resources: what it owned before and no longer has goes.
        New resources are created at `now` (default: this call's time), as in `apply`."""
        resources = list(resources)
        new_keys = {r.key for r in resources}
        stale = [k for k, c in self._items.items() if c.source == source and k not in new_keys]
        upserted: list[Key] = []
        deleted = [k for k in stale if self._items.pop(k, None) is not None]
        now = now or datetime.now(UTC)
        for res in resources:
            key = res.key
            old = self._items.get(key)
            if old is not None and _same(old.resource, res) and old.source == source:
                continue
            if old is None:
                self._items[key] = Config(res, source, now, next(self._seq))
            else:
                self._items[key] = Config(res, source, old.created, old.seq, old.generation + 1)
            upserted.append(key)
        return self._commit(upserted=upserted, deleted=deleted)

    def upsert_pod(self, pod: Pod) -> Change:
        key = (pod.namespace, pod.name)
        if self._pods.get(key) == pod:
            return Change(self.version)
        self._pods[key] = pod
        return self._commit(pods_changed=[key])

    def remove_pod(self, namespace: str, name: str) -> Change:
        if self._pods.pop((namespace, name), None) is None:
            return Change(self.version)
        return self._commit(pods_changed=[(namespace, name)])

    def _commit(
        self,
        upserted: Iterable[Key] = (),
        deleted: Iterable[Key] = (),
        pods_changed: Iterable[tuple[str, str]] = (),
    ) -> Change:
        change = Change(0, tuple(upserted), tuple(deleted), tuple(pods_changed))
        if not (change.upserted or change.deleted or change.pods_changed):
            return Change(self.version)
        self.version += 1
        change = Change(self.version, change.upserted, change.deleted, change.pods_changed)
        for cb in list(self._subscribers):
            cb(change)
        return change


def _same(a: Any, b: Any) -> bool:
    try:
        return a.to_dict() == b.to_dict()
    except Exception:
        return False
