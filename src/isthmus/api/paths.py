"""Field paths: ``spec.http[0].route[1].weight`` <-> ``("spec", "http", 0, "route", 1, "weight")``,
and the map from a path to the YAML line it was written on."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from isthmus.api.types import to_camel

PathPart = str | int
Path = tuple[PathPart, ...]

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_TOKEN_RE = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_path(parts: Iterable[PathPart]) -> str:
    """``("spec", "http", 0, "match", 0, "headers", "x.y")`` -> ``spec.http[0].match[0].headers["x.y"]``."""
    out: list[str] = []
    for p in parts:
        if isinstance(p, int):
            out.append(f"[{p}]")
        elif _IDENT_RE.match(p):
            out.append(f".{p}" if out else p)
        else:
            out.append(f"[{json.dumps(p)}]")
    return "".join(out)


def parse_path(path: str) -> Path:
    """Inverse of ``format_path``."""
    parts: list[PathPart] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN_RE.match(path, pos)
        if not m:
            raise ValueError(f"bad field path {path!r} at {pos}")
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(json.loads(m.group(3)))
        pos = m.end()
    return tuple(parts)


def join(base: str, *parts: PathPart) -> str:
    """``join("spec.http[0]", "route", 1)`` -> ``spec.http[0].route[1]``."""
    tail = format_path(parts)
    if not base:
        return tail
    if not tail:
        return base
    return base + (tail if tail.startswith("[") else "." + tail)


def _norm(p: PathPart) -> PathPart:
    return to_camel(p) if isinstance(p, str) and "_" in p else p


def normalize(path: Iterable[PathPart]) -> Path:
    """snake_case keys (which Istio also accepts) compare equal to their camelCase names."""
    return tuple(_norm(p) for p in path)


class LineMap:
    """Path (relative to one resource document) -> 1-based line of the key or item in the YAML."""

    __slots__ = ("_lines", "_prefix")

    def __init__(self, lines: Mapping[Path, int] | None = None, prefix: Path = ()):
        self._lines: Mapping[Path, int] = lines if lines is not None else {}
        self._prefix = prefix

    def sub(self, *parts: PathPart) -> LineMap:
        return LineMap(self._lines, self._prefix + normalize(parts))

    def get(self, path: Iterable[PathPart] | str | None) -> int | None:
        """The line of ``path``, or of its nearest ancestor that is in the map."""
        if path is None:
            path = ()
        elif isinstance(path, str):
            try:
                path = parse_path(path)
            except ValueError:
                path = ()
        full = self._prefix + normalize(path)
        while True:
            line = self._lines.get(full)
            if line is not None:
                return line
            if len(full) <= len(self._prefix):
                return None
            full = full[:-1]

    def __bool__(self) -> bool:
        return bool(self._lines)


def alias_path(model: type, loc: Iterable[PathPart]) -> Path:
    """Map a pydantic error ``loc`` to YAML names: attribute names (when the input used the snake_case
    form) become their aliases; map keys and list indices are kept as they are."""
    import types
    import typing

    from pydantic import BaseModel

    def unwrap(tp: Any) -> Any:
        while True:
            origin = typing.get_origin(tp)
            if origin is typing.Annotated:
                tp = typing.get_args(tp)[0]
            elif origin in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(args) != 1:
                    return tp
                tp = args[0]
            else:
                return tp

    out: list[PathPart] = []
    tp: Any = model
    for part in loc:
        tp = unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            fields = tp.model_fields
            f = fields.get(part)
            if f is not None:
                out.append(f.alias or part)
                tp = f.annotation
                continue
            for fi in fields.values():  # already an alias
                if fi.alias == part:
                    out.append(part)
                    tp = fi.annotation
                    break
            else:
                out.append(part)
                tp = None
            continue
        if origin is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            tp = None
        out.append(part)
    return tuple(out)
