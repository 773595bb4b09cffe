"""Errors for users: every problem names file:line, the resource and the field path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LEVELS = ("Error", "Warning", "Info")


@dataclass(frozen=True)
class ConfigError:
    """One problem found in configuration.

    ``str()`` gives ``<file>:<line>: <Kind> <namespace>/<name>: <field>: <message>``, leaving out the
    parts that are unknown. Field paths use the YAML (camelCase) names with list indices, e.g.
    ``spec.http[0].route[1].weight``.
    """

    file: str | None = None
    line: int | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    field: str | None = None
    message: str = ""
    level: str = "Error"

    @property
    def is_error(self) -> bool:
        return self.level == "Error"

    @property
    def location(self) -> str | None:
        """``file:line`` (or the part of it that is known)."""
        if self.file is None and self.line is None:
            return None
        if self.line is None:
            return self.file
        return f"{self.file or '<input>'}:{self.line}"

    @property
    def resource(self) -> str | None:
        """``Kind namespace/name`` (or the part of it that is known)."""
        if self.kind is None and self.name is None:
            return None
        ref = self.name or ""
        if self.namespace and self.name:
            ref = f"{self.namespace}/{self.name}"
        return f"{self.kind} {ref}".strip() if self.kind else ref

    def __str__(self) -> str:
        parts = [p for p in (self.location, self.resource, self.field) if p]
        parts.append(self.message)
        return ": ".join(parts)


class ConfigErrors(Exception):
    """Raised when a document or a set of documents is refused; holds every problem found."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors: list[ConfigError] = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def __repr__(self) -> str:
        return f"ConfigErrors({self.errors!r})"
