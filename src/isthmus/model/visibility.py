"""exportTo visibility (`pkg/config/visibility`): `.` private, `*` public, `~` none, or namespaces."""

from __future__ import annotations

from collections.abc import Iterable

PUBLIC = "*"
PRIVATE = "."
NONE = "~"


def normalize(export_to: Iterable[str] | None, default: Iterable[str]) -> frozenset[str]:
    values = frozenset(export_to or ())
    return values if values else frozenset(default)


def is_visible(export_to: frozenset[str], owner_namespace: str, viewer_namespace: str) -> bool:
    """Whether a resource of `owner_namespace` with this (normalized) exportTo is seen from `viewer_namespace`."""
    if NONE in export_to and len(export_to) == 1:
        return False
    if PUBLIC in export_to:
        return True
    if PRIVATE in export_to and owner_namespace == viewer_namespace:
        return True
    return viewer_namespace in export_to
