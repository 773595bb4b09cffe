"""Schema messages: what loading and Istio's admission validation found, as istioctl reports it.

istioctl's ``schema.ValidationAnalyzer`` runs the admission validation of each resource: an error is
IST0106 SchemaValidationError, a warning IST0133 SchemaWarning, except the two kinds of warning that
validation raises for VirtualService rules, which become IST0130 VirtualServiceUnreachableRule and
IST0131 VirtualServiceIneffectiveMatch. Documents of kinds Isthmus does not model are skipped with an
Info note (ISM0006).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.messages import Message
from isthmus.api.errors import ConfigError

ANALYZER = "schema.ValidationAnalyzer"

# Our validators word these two warnings as Istio's validation does (pkg/config/validation).
_INEFFECTIVE = re.compile(
    r"^virtualService rule (?P<rule>.+?) match (?P<match>.+) is not used "
    r"\(duplicate/overlapping match in rule (?P<dup>.+)\)$"
)
_UNREACHABLE = re.compile(r"^virtualService rule (?P<rule>.+?) not used \((?P<reason>.+)\)$")


def is_parse_error(err: ConfigError) -> bool:
    """A problem with the input itself (YAML syntax, duplicate keys, an unreadable file, a document that
    is not a resource: not a mapping, no apiVersion or kind): no kind identifies what it is about."""
    return err.level == "Error" and not err.kind


def _ref(err: ConfigError) -> str:
    if err.kind and err.name:
        return f"{err.kind} {err.namespace}/{err.name}" if err.namespace else f"{err.kind} {err.name}"
    return err.resource or ""


def _origin(err: ConfigError) -> str | None:
    return err.location


def _detail(err: ConfigError) -> str:
    return f"{err.message} (at {err.field})" if err.field else err.message


def from_config_error(err: ConfigError) -> Message:
    """IST0106 / IST0133 / IST0130 / IST0131 / ISM0006 for one loading or validation problem."""
    key = (err.kind, err.namespace or "", err.name) if err.kind and err.name else None
    common: dict[str, Any] = {
        "resource": _ref(err),
        "origin": _origin(err),
        "key": key,
        "field": err.field,
        "analyzer": ANALYZER,
    }
    if err.level == "Error":
        return Message.of(m.SchemaValidationError, _detail(err), **common)
    if err.level == "Info":
        return Message.of(m.ResourceNotAnalyzed, err.message, **common)
    match = _INEFFECTIVE.match(err.message)
    if match:
        return Message.of(
            m.VirtualServiceIneffectiveMatch, match["rule"], match["match"], match["dup"], **common
        )
    match = _UNREACHABLE.match(err.message)
    if match:
        return Message.of(m.VirtualServiceUnreachableRule, match["rule"], match["reason"], **common)
    return Message.of(m.SchemaWarning, _detail(err), **common)


def from_config_errors(errors: Iterable[ConfigError]) -> list[Message]:
    return [from_config_error(e) for e in errors if not is_parse_error(e)]


# Validation is pure: remember the result per resource object (the store replaces objects on change),
# so that the running mesh re-validates only what changed between two snapshots.
_CACHE: dict[int, tuple[weakref.ref, list[ConfigError]]] = {}


def _validate(resource: Any) -> list[ConfigError]:
    from isthmus.api.validation import validate

    rid = id(resource)
    cached = _CACHE.get(rid)
    if cached is not None and cached[0]() is resource:
        return cached[1]
    errors = validate(resource)
    try:
        ref = weakref.ref(resource, lambda _r, rid=rid: _CACHE.pop(rid, None))
    except TypeError:
        return errors
    _CACHE[rid] = (ref, errors)
    return errors


def validation_messages(resources: Iterable[Any]) -> list[Message]:
    """Run Istio's admission validation on resources that are already loaded (the running mesh, or
    resources given to ``analyze`` without their load report)."""
    out: list[Message] = []
    for res in resources:
        res = getattr(res, "resource", res)
        out.extend(from_config_error(e) for e in _validate(res))
    return out
