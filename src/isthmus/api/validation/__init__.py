"""Istio's admission validation rules (``pkg/config/validation``), one module per kind.

``validate(resource)`` returns every problem as a ``ConfigError`` (errors and warnings), with the
field path and, for loaded resources, the line of that field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from isthmus.api.errors import ConfigError
from isthmus.api.validation.common import Issue, Report

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

Validator = Callable[["Resource", Report], None]

_VALIDATORS: dict[str, Validator] = {}


def register(kind: str) -> Callable[[Validator], Validator]:
    def deco(fn: Validator) -> Validator:
        _VALIDATORS[kind] = fn
        return fn

    return deco


def _load_validators() -> None:
    # Imported for their @register side effects.
    from isthmus.api.validation import (  # noqa: F401
        destinationrule,
        gateway,
        kube,
        meshconfig,
        misc,
        security,
        serviceentry,
        sidecar,
        virtualservice,
        workload,
    )


def validate_issues(resource: Resource) -> list[Issue]:
    """Istio's rules for this resource's kind, as (path, message, level) issues."""
    if not _VALIDATORS:
        _load_validators()
    fn = _VALIDATORS.get(resource.kind)
    report = Report()
    if resource.group.endswith("istio.io"):
        _validate_istio_metadata(resource, report)
    if fn is not None:
        fn(resource, report)
    return report.issues


DRY_RUN_ANNOTATION = "istio.io/dry-run"
_GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def _validate_istio_metadata(resource: Resource, report: Report) -> None:
    """Istio's ``validateMetadata``: the dry-run annotation is for ALLOW/DENY AuthorizationPolicy only."""
    value = resource.annotations.get(DRY_RUN_ANNOTATION)
    if value is None:
        return
    path = f'metadata.annotations["{DRY_RUN_ANNOTATION}"]'
    ns, name = resource.namespace, resource.name
    if resource.kind != "AuthorizationPolicy":
        report.error(
            path, f"{ns}/{name} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation"
        )
        return
    action = getattr(resource.spec, "action", None) or "ALLOW"
    if action not in ("ALLOW", "DENY"):
        report.error(
            path,
            f"the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {action} "
            f"in {ns}/{name}",
        )
    elif value not in _GO_BOOLS:
        report.error(
            path,
            f"{ns}/{name} has annotation {DRY_RUN_ANNOTATION} with invalid value ({value}): strconv.ParseBool: "
            f'parsing "{value}": invalid syntax',
        )


def validate(resource: Resource) -> list[ConfigError]:
    """Istio's rules for this resource's kind, as ConfigErrors (errors and warnings) with file:line."""
    return [issue_to_error(resource, i) for i in validate_issues(resource)]


def issue_to_error(resource: Resource, issue: Issue) -> ConfigError:
    return ConfigError(
        file=resource.origin.file,
        line=resource.line_of(issue.path),
        kind=resource.kind,
        namespace=resource.namespace or None,
        name=resource.name,
        field=issue.path or None,
        message=issue.message,
        level=issue.level,
    )


__all__ = ["Issue", "Report", "issue_to_error", "register", "validate", "validate_issues"]
