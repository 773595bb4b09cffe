"""YAML/JSON loading that keeps file:line for every field.

The YAML is composed into nodes (PyYAML's C parser when available), converted to plain data while
recording the line of every key and list item, then validated with the kind's pydantic model and
Istio's rules. Errors come back as ``ConfigError`` with the line of the offending field.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from isthmus.api.errors import ConfigError, ConfigErrors
from isthmus.api.kinds import BY_KIND, KINDS, KNOWN_UNMODELLED_KINDS, KindInfo, split_api_version
from isthmus.api.meta import ObjectMeta
from isthmus.api.paths import LineMap, Path, PathPart, alias_path, format_path
from isthmus.api.resource import DEFAULT_NAMESPACE, Origin, Resource
from isthmus.api.types import to_camel
from isthmus.api.validation import issue_to_error, validate_issues

try:  # the C parser is ~10x faster
    from yaml import CSafeLoader as _CLoader
except ImportError:  # pragma: no cover - libyaml missing
    _CLoader = None  # type: ignore[assignment, misc]

_RESOLVE_CACHE: dict[tuple, str] = {}
_BREAKS = "\0 \t\r\n\x85\u2028\u2029"
_FLOW_INDICATORS = ",?[]{}"


class _CachedResolve:
    """Caches implicit tag resolution (the regex work PyYAML does in Python for every scalar)."""

    def resolve(self, kind, value, implicit):
        key = (kind, value, implicit)
        tag = _RESOLVE_CACHE.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVE_CACHE) > 100_000:
                _RESOLVE_CACHE.clear()
            _RESOLVE_CACHE[key] = tag
        return tag


class _GoFlowScalarLoader(_CachedResolve, yaml.SafeLoader):
    """The pure-Python loader with Go YAML's rule for plain scalars in flow collections: a ':' ends one
    only when a blank follows. PyYAML and libyaml also end it before a flow indicator and then fail, so
    `addresses: [1.2.3.4, 2001:db8::]`, which Kubernetes and istiod read, would be refused. Used only when
    libyaml fails on such a ':' (pure-Python PyYAML would silently read `2001:db8:` as a mapping key);
    block-context scalars are scanned as before."""

    def scan_plain(self):
        if not self.flow_level:
            return super().scan_plain()
        start_mark = end_mark = self.get_mark()
        indent = self.indent + 1
        chunks: list[str] = []
        spaces: list[str] = []
        while self.peek() != "#":
            length = 0
            while True:
                ch = self.peek(length)
                if (
                    ch in _BREAKS
                    or ch in _FLOW_INDICATORS
                    or (ch == ":" and self.peek(length + 1) in _BREAKS)
                ):
                    break
                length += 1
            if length == 0:
                break
            self.allow_simple_key = False
            chunks += spaces
            chunks.append(self.prefix(length))
            self.forward(length)
            end_mark = self.get_mark()
            spaces = self.scan_plain_spaces(indent, start_mark)
            if not spaces:
                break
        return yaml.ScalarToken("".join(chunks), True, start_mark, end_mark)


if _CLoader is not None:

    class _YamlLoader(_CachedResolve, _CLoader):  # type: ignore[misc, valid-type]
        pass

else:  # pragma: no cover - libyaml missing
    _YamlLoader = _GoFlowScalarLoader  # type: ignore[misc]


def _go_reads_it(e: yaml.YAMLError) -> bool:
    """A ':' the fast loader refused inside a flow collection, which Go's YAML reads as scalar text."""
    return isinstance(e, yaml.MarkedYAMLError) and e.problem == "found unexpected ':'"


def safe_load_all(text: str) -> list[Any]:
    """Every document of `text` as plain data (no file:line), read as Kubernetes' YAML reads it."""
    try:
        return list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as e:
        if not _go_reads_it(e):
            raise
        return list(yaml.load_all(text, Loader=_GoFlowScalarLoader))


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"

_constructor = SafeConstructor()
_ENVELOPE_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


@dataclass
class LoadReport:
    """Everything one load produced: the resources, and every message (errors, warnings, info)."""

    resources: list[Resource] = field(default_factory=list)
    messages: list[ConfigError] = field(default_factory=list)

    @property
    def errors(self) -> list[ConfigError]:
        return [m for m in self.messages if m.level == "Error"]

    @property
    def warnings(self) -> list[ConfigError]:
        return [m for m in self.messages if m.level != "Error"]

    def extend(self, other: LoadReport) -> None:
        self.resources.extend(other.resources)
        self.messages.extend(other.messages)

    def raise_for_errors(self) -> None:
        errors = self.errors
        if errors:
            raise ConfigErrors(errors)


# ==================================================================================================
# YAML nodes -> data + line map


class _Converter:
    def __init__(self, filename: str | None, messages: list[ConfigError]):
        self.filename = filename
        self.messages = messages
        self.lines: dict[Path, int] = {}

    def convert(self, node: Node, path: Path) -> Any:
        """Plain data for ``node``; ``path`` is the normalized (camelCase) path of the node."""
        if isinstance(node, ScalarNode):
            tag = node.tag
            if tag in (_STR, _TIMESTAMP):  # timestamps stay strings, as in Kubernetes
                return node.value
            if tag == _NULL:
                return None
            if tag in (_INT, _FLOAT, _BOOL):
                return _constructor.construct_object(node, deep=True)
            try:
                return _constructor.construct_object(node, deep=True)
            except ConstructorError:
                return node.value
        if isinstance(node, SequenceNode):
            out_list = []
            for i, item in enumerate(node.value):
                p = (*path, i)
                self.lines[p] = item.start_mark.line + 1
                out_list.append(self.convert(item, p))
            return out_list
        if isinstance(node, MappingNode):
            if any(k.tag == _MERGE for k, _ in node.value):
                _constructor.flatten_mapping(node)
            out: dict[str, Any] = {}
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = self.convert(key_node, path)
                if isinstance(key, bool):
                    key = "true" if key else "false"
                elif key is None:
                    key = "null"
                elif not isinstance(key, str):
                    key = str(key)  # Kubernetes (JSON) keys are strings: 8080 -> "8080"
                line = key_node.start_mark.line + 1
                p = (*path, to_camel(key) if "_" in key else key)
                if key in seen:
                    self.messages.append(
                        ConfigError(
                            file=self.filename,
                            line=line,
                            field=format_path(p) or None,
                            message=f'mapping key "{key}" already defined at line {seen[key]}',
                        )
                    )
                seen[key] = line
                self.lines[p] = line
                out[key] = self.convert(value_node, p)
            return out
        return None  # pragma: no cover


def _yaml_error(e: yaml.YAMLError, filename: str | None) -> ConfigError:
    line = None
    message = str(e)
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        if mark is not None:
            line = mark.line + 1
        message = e.problem or e.context or message
        if e.context and e.problem:
            message = f"{e.problem} ({e.context})"
    return ConfigError(file=filename, line=line, message=message)


# ==================================================================================================
# data -> Resource


def _pydantic_messages(
    exc: ValidationError,
    model: type,
    prefix: Path,
    lines: LineMap,
    origin: Origin,
    ident: Mapping[str, str | None],
) -> list[ConfigError]:
    out: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        loc: Path = prefix + alias_path(model, (p for p in err["loc"] if isinstance(p, str | int)))
        etype = err["type"]
        if etype == "extra_forbidden":
            message = f'unknown field "{loc[-1]}"'
        elif etype == "missing":
            message = "required field is missing"
        elif etype == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            message = f"invalid value {err.get('input')!r}: must be one of {expected}"
        else:
            message = err["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
        out.append(
            ConfigError(
                file=origin.file,
                line=lines.get(loc) or origin.line,
                field=format_path(loc) or None,
                message=message,
                **ident,
            )
        )
    return out


def _ident(data: Mapping[str, Any], info: KindInfo | None, default_namespace: str | None) -> dict:
    kind = data.get("kind") if isinstance(data.get("kind"), str) else None
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else None
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    if info is not None and not info.namespaced:
        ns = None
    elif ns is None and (info is not None or kind):
        ns = default_namespace or DEFAULT_NAMESPACE
    return {"kind": kind, "namespace": ns, "name": name}


def _build(
    data: Any,
    origin: Origin,
    lines: LineMap,
    *,
    default_namespace: str | None,
    lenient: bool,
    report: LoadReport,
) -> Resource | None:
    def msg(path: PathPart | str | None, message: str, level: str = "Error", ident: Mapping | None = None):
        p = path if isinstance(path, str) else format_path([path]) if path is not None else None
        report.messages.append(
            ConfigError(
                file=origin.file,
                line=(lines.get(p) if p else None) or origin.line,
                field=p or None,
                message=message,
                level=level,
                **(ident or {}),
            )
        )

    if not isinstance(data, dict):
        msg(None, f"expected a mapping with apiVersion and kind, found {type(data).__name__}")
        return None

    api_version = data.get("apiVersion")
    kind = data.get("kind")
    ident0 = _ident(data, None, default_namespace)
    if not isinstance(api_version, str) or not api_version:
        msg(
            "apiVersion",
            "apiVersion is required" if api_version is None else "apiVersion must be a string",
            ident=ident0,
        )
        return None
    if not isinstance(kind, str) or not kind:
        msg("kind", "kind is required" if kind is None else "kind must be a string", ident=ident0)
        return None

    group, version = split_api_version(api_version)
    info = KINDS.get((group, kind))
    if info is None:
        if lenient:
            msg(None, f"skipped: Isthmus does not model {kind} ({api_version})", "Info", ident0)
            return None
        other = BY_KIND.get(kind)
        hint = f" (did you mean apiVersion {other.api_version}?)" if other else ""
        if kind in KNOWN_UNMODELLED_KINDS:
            hint = " (Isthmus does not read this kind)"
        msg("kind", f'unknown kind "{kind}" for apiVersion "{api_version}"{hint}', ident=ident0)
        return None
    ident = _ident(data, info, default_namespace)
    if version not in info.versions:
        versions = ", ".join(f"{group}/{v}" if group else v for v in info.versions)
        msg(
            "apiVersion",
            f'apiVersion "{api_version}" is not served for {kind}; use one of: {versions}',
            ident=ident,
        )
        return None

    before = len(report.messages)
    allowed = _ENVELOPE_FIELDS | set(info.top_level_fields)
    for key in data:
        if key not in allowed:
            msg(key, f'unknown field "{key}"', ident=ident)

    raw_meta = data.get("metadata")
    meta: ObjectMeta | None = None
    if raw_meta is None:
        msg("metadata", "metadata.name is required", ident=ident)
    elif not isinstance(raw_meta, dict):
        msg("metadata", "metadata must be a mapping", ident=ident)
    else:
        try:
            meta = ObjectMeta.model_validate(raw_meta)
        except ValidationError as e:
            report.messages.extend(_pydantic_messages(e, ObjectMeta, ("metadata",), lines, origin, ident))
        else:
            if not meta.name:
                msg("metadata", "metadata.name is required", ident=ident)

    if info.top_level_fields:
        spec_data: Any = {k: data[k] for k in info.top_level_fields if k in data}
        spec_prefix: Path = ()
    else:
        spec_data = data.get("spec")
        spec_prefix = ("spec",)
        if spec_data is None:
            spec_data = {}
    spec = None
    if not isinstance(spec_data, dict):
        msg("spec", f"spec must be a mapping, found {type(spec_data).__name__}", ident=ident)
    else:
        try:
            spec = info.spec_model.model_validate(spec_data)
        except ValidationError as e:
            report.messages.extend(_pydantic_messages(e, info.spec_model, spec_prefix, lines, origin, ident))

    status = data.get("status")
    if status is not None and not isinstance(status, dict):
        msg("status", "status must be a mapping", ident=ident)

    if len(report.messages) > before or meta is None or spec is None:
        return None

    if info.namespaced and meta.namespace is None and default_namespace:
        meta = meta.model_copy(update={"namespace": default_namespace})
    resource = Resource(
        api_version=api_version,
        kind=kind,
        metadata=meta,
        spec=spec,
        origin=origin,
        status=status,
        lines=lines,
    )
    for issue in validate_issues(resource):
        report.messages.append(issue_to_error(resource, issue))
    return resource


def _handle_document(
    data: Any,
    origin: Origin,
    lines: LineMap,
    *,
    default_namespace: str | None,
    lenient: bool,
    report: LoadReport,
) -> None:
    if (
        isinstance(data, dict)
        and isinstance(data.get("kind"), str)
        and data["kind"].endswith("List")
        and "items" in data
    ):
        items = data.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            report.messages.append(
                ConfigError(
                    file=origin.file,
                    line=lines.get("items") or origin.line,
                    field="items",
                    message="items must be a list",
                )
            )
            return
        for i, item in enumerate(items):
            sub = lines.sub("items", i)
            _handle_document(
                item,
                Origin(origin.file, sub.get(()) or origin.line),
                sub,
                default_namespace=default_namespace,
                lenient=lenient,
                report=report,
            )
        return
    resource = _build(
        data, origin, lines, default_namespace=default_namespace, lenient=lenient, report=report
    )
    if resource is not None:
        report.resources.append(resource)


def _check_duplicates(report: LoadReport) -> None:
    seen: dict[tuple[str, str, str], Resource] = {}
    for r in report.resources:
        prev = seen.get(r.key)
        if prev is not None:
            report.messages.append(
                ConfigError(
                    file=r.origin.file,
                    line=r.origin.line,
                    kind=r.kind,
                    namespace=r.namespace or None,
                    name=r.name,
                    message=f"defined more than once (also at {prev.origin}); the last definition wins",
                    level="Warning",
                )
            )
        seen[r.key] = r


# ==================================================================================================
# Public API


def load_text_report(
    text: str,
    filename: str | None = None,
    *,
    default_namespace: str | None = None,
    lenient: bool = False,
) -> LoadReport:
    """Load every document of ``text``; never raises. The report holds the resources that are valid
    against their schema and every message (errors, warnings, info)."""
    report = LoadReport()
    try:
        _load_documents(text, _YamlLoader, filename, default_namespace, lenient, report)
    except yaml.YAMLError as e:
        if _go_reads_it(e):
            report = LoadReport()
            try:
                _load_documents(text, _GoFlowScalarLoader, filename, default_namespace, lenient, report)
            except yaml.YAMLError as again:
                report.messages.append(_yaml_error(again, filename))
        else:
            report.messages.append(_yaml_error(e, filename))
    _check_duplicates(report)
    return report


def _load_documents(
    text: str,
    loader: type,
    filename: str | None,
    default_namespace: str | None,
    lenient: bool,
    report: LoadReport,
) -> None:
    for node in yaml.compose_all(text, Loader=loader):
        if node is None:
            continue
        conv = _Converter(filename, report.messages)
        data = conv.convert(node, ())
        if data is None:
            continue
        lines = LineMap(conv.lines)
        conv.lines[()] = node.start_mark.line + 1
        origin = Origin(filename, node.start_mark.line + 1)
        _handle_document(
            data, origin, lines, default_namespace=default_namespace, lenient=lenient, report=report
        )


def load_text(
    text: str,
    filename: str | None = None,
    *,
    default_namespace: str | None = None,
    lenient: bool = False,
) -> list[Resource]:
    """Load multi-document YAML (or JSON). Raises ConfigErrors holding every error in ``text``."""
    return load_text_with_warnings(text, filename, default_namespace=default_namespace, lenient=lenient)[0]


def load_text_with_warnings(
    text: str,
    filename: str | None = None,
    *,
    default_namespace: str | None = None,
    lenient: bool = False,
) -> tuple[list[Resource], list[ConfigError]]:
    """Like ``load_text`` but also returns the warnings and info messages (which never raise)."""
    report = load_text_report(text, filename, default_namespace=default_namespace, lenient=lenient)
    report.raise_for_errors()
    return report.resources, report.warnings


def _read_path(path: str | FsPath) -> list[tuple[str, str | None]]:
    """(text, filename) pairs for a file, a directory's top-level *.yaml/*.yml, or ``-`` (stdin)."""
    if str(path) == "-":
        return [(sys.stdin.read(), "<stdin>")]
    p = FsPath(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".yaml", ".yml"))
        return [(f.read_text(encoding="utf-8"), str(f)) for f in files]
    return [(p.read_text(encoding="utf-8"), str(p))]


def load_path_report(
    path: str | FsPath,
    *,
    default_namespace: str | None = None,
    lenient: bool = False,
) -> LoadReport:
    """``load_text_report`` over a file, a directory (top-level *.yaml/*.yml, sorted) or ``-``."""
    report = LoadReport()
    try:
        sources = _read_path(path)
    except OSError as e:
        report.messages.append(ConfigError(file=str(path), message=f"cannot read: {e.strerror or e}"))
        return report
    except UnicodeDecodeError as e:
        report.messages.append(ConfigError(file=str(path), message=f"not UTF-8 text: {e}"))
        return report
    for text, filename in sources:
        report.extend(load_text_report(text, filename, default_namespace=default_namespace, lenient=lenient))
    if len(sources) > 1:
        # duplicates across files of the directory
        dup = LoadReport(resources=report.resources)
        _check_duplicates(dup)
        known = {(m.file, m.line, m.message) for m in report.messages}
        report.messages.extend(m for m in dup.messages if (m.file, m.line, m.message) not in known)
    return report


def load_path(
    path: str | FsPath,
    *,
    default_namespace: str | None = None,
    lenient: bool = False,
) -> list[Resource]:
    """Load a file, a directory's top-level *.yaml/*.yml files (sorted, not recursive), or ``-``
    (stdin). Raises ConfigErrors holding every error found in all of them."""
    report = load_path_report(path, default_namespace=default_namespace, lenient=lenient)
    report.raise_for_errors()
    return report.resources


def load_paths(paths: Iterable[str | FsPath], **kw: Any) -> list[Resource]:
    """``load_path`` over several paths; every error of every path is raised together."""
    report = LoadReport()
    for p in paths:
        report.extend(load_path_report(p, **kw))
    report.raise_for_errors()
    return report.resources


def parse_resource(
    data: Mapping[str, Any],
    origin: Origin | None = None,
    lines: LineMap | Mapping[Path, int] | None = None,
    *,
    default_namespace: str | None = None,
    warnings: list[ConfigError] | None = None,
) -> Resource:
    """Validate data that is already parsed (the HTTP API receives JSON). Raises ConfigErrors;
    warnings are appended to ``warnings`` when given."""
    if lines is None:
        line_map = LineMap()
    elif isinstance(lines, LineMap):
        line_map = lines
    else:
        line_map = LineMap(lines)
    report = LoadReport()
    resource = _build(
        dict(data),
        origin or Origin(),
        line_map,
        default_namespace=default_namespace,
        lenient=False,
        report=report,
    )
    report.raise_for_errors()
    if warnings is not None:
        warnings.extend(report.warnings)
    assert resource is not None
    return resource


def dump_yaml(resources: Iterable[Resource]) -> str:
    """Multi-document YAML of ``to_dict()`` of each resource."""
    return yaml.safe_dump_all([r.to_dict() for r in resources], sort_keys=False, default_flow_style=False)
