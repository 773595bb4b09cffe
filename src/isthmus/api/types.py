"""Building blocks shared by every API model: the base model, durations, percentages, selectors."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from pydantic_core import PydanticCustomError


def to_camel(name: str) -> str:
    """snake_case attribute name -> Istio's JSON (lowerCamelCase) name.

    A trailing underscore (``from_``) is dropped; digits stay attached (``consecutive_5xx_errors`` ->
    ``consecutive5xxErrors``, ``http1_max_pending_requests`` -> ``http1MaxPendingRequests``).
    """
    name = name.rstrip("_")
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class ApiModel(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected, immutable.

    ``__oneofs__`` lists groups of attribute names of which at most one may be set (proto oneofs).
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        alias_generator=to_camel,
        validate_default=False,
    )

    __oneofs__: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @model_validator(mode="after")
    def _check_oneofs(self) -> Any:
        for group in type(self).__oneofs__:
            present = [f for f in group if getattr(self, f) is not None]
            if len(present) > 1:
                fields = type(self).model_fields
                names = [fields[f].alias or f for f in group]
                got = [fields[f].alias or f for f in present]
                raise PydanticCustomError(
                    "oneof",
                    "only one of {names} may be set (found {got})",
                    {"names": ", ".join(names), "got": ", ".join(got)},
                )
        return self

    def is_set(self, name: str) -> bool:
        """Whether the attribute was given in the input (as opposed to defaulted)."""
        return name in self.model_fields_set


class ExtraAllowedModel(ApiModel):
    """For huge Kubernetes kinds of which we read a few fields (Pod, Deployment): unknown fields kept."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------------------------------
# Integers as the proto/CRD types declare them.

UInt32 = Annotated[int, Field(ge=0, le=4294967295)]
Int32 = Annotated[int, Field(ge=-2147483648, le=2147483647)]
UInt64 = Annotated[int, Field(ge=0, le=18446744073709551615)]
Int64 = Annotated[int, Field(ge=-9223372036854775808, le=9223372036854775807)]

# --------------------------------------------------------------------------------------------------
# Durations: Go's time.ParseDuration syntax ("1s", "100ms", "1.5s", "1m", "1h", "2m30s", "0").

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_UNIT_RE = "ns|us|µs|μs|ms|s|m|h"
_NUM_RE = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_RE = re.compile(rf"^[-+]?(?:0|(?:{_NUM_RE}(?:{_UNIT_RE}))+)$")
_DURATION_PART_RE = re.compile(rf"({_NUM_RE})({_UNIT_RE})")


def is_duration(s: str) -> bool:
    return bool(_DURATION_RE.match(s))


def parse_duration(s: str) -> timedelta:
    """Parse a Go/Istio duration string ("1s", "100ms", "1.5s", "1m", "1h", "2m30s", "0")."""
    if not isinstance(s, str) or not _DURATION_RE.match(s):
        raise ValueError(f"invalid duration {s!r}")
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    if body == "0":
        return timedelta(0)
    total = 0.0
    for num, unit in _DURATION_PART_RE.findall(body):
        total += float(num) * _DURATION_UNITS[unit]
    return timedelta(seconds=sign * total)


def duration_seconds(s: str) -> float:
    return parse_duration(s).total_seconds()


def _check_duration(v: str) -> str:
    if not _DURATION_RE.match(v):
        raise PydanticCustomError(
            "duration",
            'invalid duration "{value}": use a number with a unit, e.g. "1s", "100ms", "1.5s", "2m30s"',
            {"value": v},
        )
    return v


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration kept as the string the user wrote; ``parse_duration`` turns it into a timedelta."""

# --------------------------------------------------------------------------------------------------
# bytes fields (protobuf JSON: base64 text).


_B64_RE = re.compile(r"^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$")


def decode_base64(v: str) -> bytes:
    """protobuf JSON bytes: standard or URL-safe base64, padding optional, whitespace ignored."""
    compact = "".join(v.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))


def _check_base64(v: str) -> str:
    if not _B64_RE.match("".join(v.split())):
        raise PydanticCustomError("base64", "invalid base64 data")
    try:
        decode_base64(v)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "invalid base64 data") from None
    return v


Base64 = Annotated[str, AfterValidator(_check_base64)]


def _int_or_string(v: Any) -> int | str:
    if isinstance(v, bool):
        raise PydanticCustomError("int_or_string", "must be an integer or a string")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        return v
    raise PydanticCustomError("int_or_string", "must be an integer or a string")


IntOrString = Annotated[Any, AfterValidator(_int_or_string), PlainSerializer(lambda v: v, return_type=Any)]
"""Kubernetes IntOrString (Service targetPort)."""

Struct = dict[str, Any]
"""google.protobuf.Struct: any JSON object."""


# --------------------------------------------------------------------------------------------------
# Small messages shared by several kinds.


class Percent(ApiModel):
    """istio.networking.v1alpha3.Percent: ``{value: 0.0-100.0}``."""

    value: float | None = None


class WorkloadSelector(ApiModel):
    """istio.type.v1beta1.WorkloadSelector (security, telemetry, ProxyConfig): ``matchLabels``."""

    match_labels: dict[str, str] = Field(default_factory=dict)


class PolicyTargetReference(ApiModel):
    """istio.type.v1beta1.PolicyTargetReference."""

    group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class NetworkingWorkloadSelector(ApiModel):
    """istio.networking.v1alpha3.WorkloadSelector (Sidecar, ServiceEntry, EnvoyFilter): ``labels``."""

    labels: dict[str, str] = Field(default_factory=dict)


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_env_bool(value: str | None, default: bool) -> bool | None:
    """An istio-agent boolean environment setting as Go's strconv.ParseBool reads it; `default` when
    unset, None when set to something that is not a boolean."""
    if value is None or value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None
