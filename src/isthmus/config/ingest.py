"""Turn user input (YAML text) into resources the store accepts, or a complete list of reasons why not.

The same path serves the watched directory and `isthmus apply`: parse and validate with `isthmus.api`,
then refuse what the running mesh cannot translate yet, so nothing is accepted and then ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.api import loader, support
from isthmus.api.errors import ConfigError, ConfigErrors

# Kinds that describe the local mesh itself rather than traffic; they pass through as they are.
CLUSTER_SCOPED = {"Namespace", "MeshConfig"}


@dataclass
class Ingested:
    resources: list[Any] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def ingest_text(text: str, filename: str | None) -> Ingested:
    out = Ingested()
    try:
        resources, warnings = loader.load_text_with_warnings(text, filename)
    except ConfigErrors as exc:
        out.errors.extend(exc.errors)
        return out
    out.warnings.extend(warnings)
    for res in resources:
        out.errors.extend(support.check_supported(res))
    seen: dict[tuple, Any] = {}
    for res in resources:
        if res.key in seen:
            out.errors.append(
                ConfigError(
                    file=res.origin.file,
                    line=res.origin.line,
                    kind=res.kind,
                    namespace=res.namespace,
                    name=res.metadata.name,
                    field="metadata.name",
                    message=f"defined twice in the same input (first at line {seen[res.key].origin.line})",
                )
            )
        seen[res.key] = res
    if not out.errors:
        out.resources = resources
    return out


def format_errors(errors: list[ConfigError]) -> str:
    return "\n".join(str(e) for e in errors)
