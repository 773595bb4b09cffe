"""Kubernetes ObjectMeta, with the name rules Kubernetes applies."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from isthmus.api.types import ApiModel


def q(s: str) -> str:
    """Go's %q: a double-quoted string."""
    return json.dumps(s, ensure_ascii=False)


# Applied with `fullmatch`: Python's `$` also matches before a final "\n", Go's does not, and the API
# server refuses a name or label ending in a newline.
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns1123_label(s: str) -> bool:
    return len(s) <= 63 and bool(DNS1123_LABEL_RE.fullmatch(s))


def is_dns1123_subdomain(s: str) -> bool:
    return len(s) <= 253 and bool(DNS1123_SUBDOMAIN_RE.fullmatch(s))


def is_dns1035_label(s: str) -> bool:
    return len(s) <= 63 and bool(DNS1035_LABEL_RE.fullmatch(s))


def dns1123_label_error(s: str) -> str | None:
    """Kubernetes' wording for an invalid DNS-1123 label, or None when valid."""
    if is_dns1123_label(s):
        return None
    if len(s) > 63:
        return f"{q(s)}: must be no more than 63 characters"
    return (
        f"{q(s)}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
    )


def dns1123_subdomain_error(s: str) -> str | None:
    if is_dns1123_subdomain(s):
        return None
    if len(s) > 253:
        return f"{q(s)}: must be no more than 253 characters"
    return (
        f"{q(s)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
    )


def dns1035_label_error(s: str) -> str | None:
    if is_dns1035_label(s):
        return None
    if len(s) > 63:
        return f"{q(s)}: must be no more than 63 characters"
    return (
        f"{q(s)}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
        "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')"
    )


def qualified_name_error(key: str) -> str | None:
    """Kubernetes label/annotation key syntax: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return f"{q(key)}: prefix part must be non-empty"
    if prefix and not is_dns1123_subdomain(prefix):
        return f"{q(key)}: prefix part must be a lowercase RFC 1123 subdomain"
    if not name:
        return f"{q(key)}: name part must be non-empty"
    if len(name) > 63:
        return f"{q(key)}: name part must be no more than 63 characters"
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        return (
            f"{q(key)}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return None


def label_value_error(value: str) -> str | None:
    if len(value) > 63:
        return f"{q(value)}: must be no more than 63 characters"
    if not _LABEL_VALUE_RE.fullmatch(value):
        return (
            f"{q(value)}: a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return None


class ObjectMeta(ApiModel):
    """metadata of every resource. ``namespace`` stays None when the document has none."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: int | None = None
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None
    self_link: str | None = None
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)
    managed_fields: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None:
            if v == "":
                raise PydanticCustomError("name", "name must not be empty")
            err = dns1123_subdomain_error(v)
            if err:
                raise PydanticCustomError("name", "invalid name {err}", {"err": err})
        return v

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, v: str | None) -> str | None:
        if v is not None and v != "":
            err = dns1123_label_error(v)
            if err:
                raise PydanticCustomError("namespace", "invalid namespace {err}", {"err": err})
        return v

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            err = qualified_name_error(key) or label_value_error(value)
            if err:
                raise PydanticCustomError("label", "invalid label {err}", {"err": err})
        return v

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            err = qualified_name_error(key)
            if err:
                raise PydanticCustomError("annotation", "invalid annotation key {err}", {"err": err})
        return v
