"""The API: pydantic models of every kind, Istio's validation rules, YAML loading with file:line.

Main entry points:
- ``load_text`` / ``load_path`` / ``parse_resource`` (``isthmus.api.loader``)
- ``Resource`` / ``Origin`` (``isthmus.api.resource``)
- ``ConfigError`` / ``ConfigErrors`` (``isthmus.api.errors``)
- ``KINDS`` / ``kind_info`` (``isthmus.api.kinds``)
- ``check_supported`` (``isthmus.api.support``)
- ``validate`` (``isthmus.api.validation``): Istio's rules for one resource
- ``parse_duration`` / ``Duration`` (``isthmus.api.types``)
"""

from __future__ import annotations

from isthmus.api.errors import ConfigError, ConfigErrors
from isthmus.api.kinds import KINDS, KindInfo, kind_info
from isthmus.api.loader import (
    LoadReport,
    load_path,
    load_path_report,
    load_text,
    load_text_report,
    load_text_with_warnings,
    parse_resource,
)
from isthmus.api.meta import ObjectMeta
from isthmus.api.resource import Origin, Resource
from isthmus.api.support import check_supported
from isthmus.api.types import Duration, parse_duration
from isthmus.api.validation import validate

__all__ = [
    "KINDS",
    "Duration",
    "ConfigError",
    "ConfigErrors",
    "KindInfo",
    "LoadReport",
    "ObjectMeta",
    "Origin",
    "Resource",
    "check_supported",
    "kind_info",
    "load_path",
    "load_path_report",
    "load_text",
    "load_text_report",
    "load_text_with_warnings",
    "parse_duration",
    "parse_resource",
    "validate",
]
