"""Failure isolation: a resource whose generation fails is left out (and reported), not the whole push."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from isthmus.model.snapshot import Snapshot

log = logging.getLogger(__name__)
T = TypeVar("T")


def guarded(snapshot: Snapshot, what: str, build: Callable[[], T], default: Any = None) -> T | Any:
    """`build()`, or `default` if it raises; the error is logged once per snapshot and kept on it."""
    try:
        return build()
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if what not in snapshot.generation_errors:
            log.exception("generating %s failed; it is left out of the config", what)
            snapshot.generation_errors[what] = message
        return default
