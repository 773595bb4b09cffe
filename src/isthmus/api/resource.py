"""The resource envelope: apiVersion, kind, metadata, spec (the kind's model), origin, status."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from isthmus.api.meta import ObjectMeta
from isthmus.api.paths import LineMap
from isthmus.api.types import ApiModel

DEFAULT_NAMESPACE = "default"


class Origin(NamedTuple):
    """Where a resource came from: file (None for stdin/API) and the 1-based line of its document."""

    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file or "<input>"
        return f"{self.file or '<input>'}:{self.line}"


@dataclass(frozen=True, eq=False)
class Resource:
    """One validated resource. Immutable: use ``with_namespace`` / ``dataclasses.replace`` for copies."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: ApiModel
    origin: Origin = field(default_factory=Origin)
    status: dict[str, Any] | None = None
    # Line of each field in the source YAML (for error messages about fields of a loaded resource).
    lines: LineMap = field(default_factory=LineMap, repr=False)

    # ---------------------------------------------------------------------------------------------
    @property
    def group(self) -> str:
        group, sep, _ = self.api_version.rpartition("/")
        return group if sep else ""

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def namespaced(self) -> bool:
        from isthmus.api.kinds import KINDS

        info = KINDS.get((self.group, self.kind))
        return info.namespaced if info is not None else True

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """The namespace: ``default`` when unset; ``""`` for cluster-scoped kinds (Namespace, MeshConfig)."""
        if not self.namespaced:
            return ""
        return self.metadata.namespace or DEFAULT_NAMESPACE

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name)."""
        return (self.kind, self.namespace, self.name)

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.annotations

    @property
    def ref(self) -> str:
        """``Kind namespace/name`` (``Kind name`` for cluster-scoped kinds), as used in messages."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespaced else f"{self.kind} {self.name}"

    def line_of(self, field_path: str | None = None) -> int | None:
        """Line of a field (``spec.http[0].route``) in the source, else of the document."""
        line = self.lines.get(field_path) if self.lines else None
        return line if line is not None else self.origin.line

    # ---------------------------------------------------------------------------------------------
    def with_namespace(self, namespace: str) -> Resource:
        """A copy in another namespace (cluster-scoped kinds are returned unchanged)."""
        if not self.namespaced or self.metadata.namespace == namespace:
            return self
        meta = self.metadata.model_copy(update={"namespace": namespace})
        return dataclasses.replace(self, metadata=meta)

    def to_dict(self) -> dict[str, Any]:
        """camelCase data with unset fields left out; loading it again gives an equal resource."""
        from isthmus.api.kinds import KINDS

        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind}
        out["metadata"] = self.metadata.model_dump(by_alias=True, exclude_unset=True, mode="json")
        spec = self.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
        info = KINDS.get((self.group, self.kind))
        if info is not None and info.top_level_fields:
            out.update(spec)
        elif spec or self.spec.model_fields_set:
            out["spec"] = spec
        if self.status is not None:
            out["status"] = self.status
        return out

    # ---------------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return (
            self.api_version == other.api_version
            and self.kind == other.kind
            and self.metadata == other.metadata
            and self.spec == other.spec
            and self.status == other.status
        )

    def __hash__(self) -> int:
        return hash((self.api_version, self.key))

    def __repr__(self) -> str:
        return f"<Resource {self.api_version} {self.ref} at {self.origin}>"
