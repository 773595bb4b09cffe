"""istioctl's `proxy-config -o json|yaml` marshalling of Envoy's admin JSON.

Envoy's admin API prints its protos with snake_case names; istioctl parses them into go-control-plane
messages and marshals them again, so its output has the proto3 JSON names (`edsClusterConfig`,
`typedConfig`), int64 as strings, durations as "5s", enums by name and no default values. Three Go
marshallers are involved, each with its own layout (istioctl/pkg/writer/envoy/configdump/*.go):

- clusters, listeners, route configs (configdump) and `/clusters` host statuses (writer/envoy/clusters)
  are a `MessageSlice`: each message by `protomarshal.Marshal` (golang/protobuf's legacy jsonpb,
  compact), the whole re-indented by `json.MarshalIndent(..., "", "    ")`: a JSON array, 4 spaces,
  `{}`/`[]` for empty objects, `<`, `>`, `&` escaped as Go's encoding/json does;
- the secret and bootstrap dumps: `protomarshal.ToJSONWithIndent(msg, "    ")`, jsonpb's own indenting,
  which leaves empty messages as `{` blank line `}` and indents Struct contents one level deeper;
- ECDS: `protomarshal.MarshalIndentWithGlobalTypesResolver(dump, "    ")`, i.e. the newer
  `protojson.MarshalOptions{Multiline: true, Indent: "    "}`: the standard layout, no HTML escaping
  (its deliberately unstable extra space after some colons, per binary, is not reproduced).

`-o yaml` is `sigs.k8s.io/yaml.JSONToYAML` of that JSON: go-yaml v2 (a port of libyaml) re-reading it as
generic maps, so keys sorted in go-yaml's natural order, strings quoted only when they would read back
as another type. PyYAML's libyaml emitter is driven the same way here.

Instead of a protobuf round trip (json_format's ParseDict + MessageToDict: ~3x slower on a
1,000-cluster dump, and its order and number format are not jsonpb's anyway), the admin JSON is
walked along the message descriptors of the installed envoy/xds protos: field names and order
(declaration order, as jsonpb and protojson emit them) come from the schema, map and Struct keys are
left alone. The `@type` of an Any names its message; its package's `*_pb2` modules are imported on
first use. An entry naming a type or field these protos do not know is printed as Envoy gave it, with
a note on stderr, rather than failing the command as istioctl would.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import pkgutil
import re
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

INDENT = "    "
_POOL = descriptor_pool.Default()
_T = FieldDescriptor


class ConvertError(ValueError):
    """The JSON does not fit the schema we know (unknown type or field)."""


# --- tree nodes: what jsonpb's layout needs to know beyond plain JSON values -------------------------


class Float32(float):
    """A `float` field: Go formats it with 32-bit precision."""


class Float64(float):
    """A `double` field, or a Struct number."""


class MapNode(dict):  # type: ignore[type-arg]
    """A proto map field (keys already sorted)."""


class StructNode(dict):  # type: ignore[type-arg]
    """A google.protobuf.Struct: its values are Value contents."""


class ListValueNode(list):  # type: ignore[type-arg]
    """A google.protobuf.ListValue: its items are Value contents."""


class ValueNode:
    """A google.protobuf.Value field (not inside a Struct/ListValue)."""

    __slots__ = ("content",)

    def __init__(self, content: Any) -> None:
        self.content = content


class AnyWktNode(dict):  # type: ignore[type-arg]
    """An Any holding a well-known type: `{"@type": url, "value": <its JSON>}`."""


# --- type resolution ----------------------------------------------------------------------------------


@functools.cache
def _import_package(package: str) -> None:
    """Import every generated module of a Python package (one proto package), once."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        if info.name.endswith("_pb2"):
            try:
                importlib.import_module(f"{package}.{info.name}")
            except Exception:
                continue


@functools.cache
def message_descriptor(full_name: str) -> Descriptor | None:
    """The descriptor of a message by full name, importing its proto package's modules if needed."""
    try:
        return _POOL.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    parts = full_name.split(".")
    # Nested messages: the package is a prefix; try the longest first.
    for i in range(len(parts) - 1, 0, -1):
        _import_package(".".join(parts[:i]))
        try:
            return _POOL.FindMessageTypeByName(full_name)
        except KeyError:
            continue
    return None


def descriptor_for_url(type_url: str) -> Descriptor:
    desc = message_descriptor(type_url.rsplit("/", 1)[-1])
    if desc is None:
        raise ConvertError(f"unknown type {type_url}")
    return desc


# --- JSON -> tree, along the descriptors --------------------------------------------------------------

_INT32 = {_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32, _T.TYPE_UINT32, _T.TYPE_FIXED32}
_INT64 = {_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64, _T.TYPE_UINT64, _T.TYPE_FIXED64}
_WRAPPERS = {
    f"google.protobuf.{n}"
    for n in (
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
}
# jsonpb's wellKnownType(): inside an Any these print as {"@type", "value"}.
_WKT = _WRAPPERS | {
    f"google.protobuf.{n}" for n in ("Empty", "Any", "Duration", "Timestamp", "Struct", "Value", "ListValue")
}


class _Field:
    __slots__ = (
        "desc",
        "index",
        "json_name",
        "kind",
        "message",
        "repeated",
        "map_key",
        "map_value",
        "presence",
    )

    def __init__(self, fd: FieldDescriptor) -> None:
        self.desc = fd
        self.index = fd.index
        self.json_name = fd.json_name
        self.kind = fd.type
        self.message = fd.message_type
        self.presence = fd.has_presence
        self.map_key: _Field | None = None
        self.map_value: _Field | None = None
        self.repeated = fd.is_repeated
        if self.repeated and fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            entry = fd.message_type
            self.map_key = _Field(entry.fields_by_name["key"])
            self.map_value = _Field(entry.fields_by_name["value"])


@functools.cache
def _fields(desc: Descriptor) -> dict[str, _Field]:
    """Fields by proto name and by JSON name (Envoy prints the former; files may hold the latter)."""
    out: dict[str, _Field] = {}
    for fd in desc.fields:
        f = _Field(fd)
        out[fd.name] = f
        out[fd.json_name] = f
    return out


_OMIT = object()


def convert(desc: Descriptor, data: Any) -> Any:
    """Envoy's JSON of one message -> the tree jsonpb would print for it."""
    full = desc.full_name
    if full.startswith("google.protobuf.") and full in _WKT:
        return _convert_wkt(desc, data)
    if not isinstance(data, Mapping):
        if full == "google.protobuf.FieldMask" and isinstance(data, str):
            # Envoy prints "fooBar,baz"; jsonpb knows no FieldMask mapping: the message, snake paths.
            return {"paths": [_snake(p) for p in data.split(",") if p]}
        raise ConvertError(f"{full}: expected an object, got {type(data).__name__}")
    fields = _fields(desc)
    present: list[tuple[int, str, Any]] = []
    for key, value in data.items():
        if key == "@type":
            continue
        f = fields.get(key)
        if f is None:
            raise ConvertError(f"{full}: unknown field {key!r}")
        if value is None:
            continue
        out = _convert_field(f, value)
        if out is not _OMIT:
            present.append((f.index, f.json_name, out))
    present.sort(key=lambda p: p[0])
    return {name: value for _, name, value in present}


def _snake(path: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), path)


def _convert_field(f: _Field, value: Any) -> Any:
    if f.map_key is not None:
        assert f.map_value is not None
        if not value:
            return _OMIT
        return _convert_map(f.map_key, f.map_value, value)
    if f.repeated:
        if not value:
            return _OMIT
        return [_convert_single(f, v) for v in value]
    out = _convert_single(f, value)
    if not f.presence and _is_default(f, out):
        return _OMIT
    return out


def _is_default(f: _Field, value: Any) -> bool:
    if f.message is not None:
        return False
    if f.kind == _T.TYPE_ENUM:
        zero = f.desc.enum_type.values_by_number.get(0)
        return value == 0 or (zero is not None and value == zero.name)
    if f.kind in _INT64:
        return value == "0"
    return not value


def _convert_map(kf: _Field, vf: _Field, value: Mapping[str, Any]) -> MapNode:
    if kf.kind in _INT32 or kf.kind in _INT64:
        keys = sorted(value, key=int)
        return MapNode((str(int(k)), _convert_single(vf, value[k])) for k in keys)
    if kf.kind == _T.TYPE_BOOL:
        keys = sorted(value, key=lambda k: k == "true")
        return MapNode((k, _convert_single(vf, value[k])) for k in keys)
    return MapNode((k, _convert_single(vf, value[k])) for k in sorted(value))


def _convert_single(f: _Field, value: Any) -> Any:
    kind = f.kind
    if f.message is not None:
        return convert(f.message, value)
    if kind == _T.TYPE_STRING:
        return str(value)
    if kind == _T.TYPE_BOOL:
        return bool(value)
    if kind in _INT32:
        return int(value)
    if kind in _INT64:
        return str(int(value))
    if kind == _T.TYPE_DOUBLE:
        return _float(value, Float64)
    if kind == _T.TYPE_FLOAT:
        return _float(value, Float32)
    if kind == _T.TYPE_ENUM:
        if isinstance(value, int):
            ev = f.desc.enum_type.values_by_number.get(value)
            return ev.name if ev is not None else value
        return str(value)
    if kind == _T.TYPE_BYTES:
        return str(value)
    raise ConvertError(f"{f.desc.full_name}: unsupported field type {kind}")


def _float(value: Any, cls: type[float]) -> Any:
    if isinstance(value, str):
        # "NaN", "Infinity", "-Infinity" stay strings, as jsonpb writes them.
        if value in ("NaN", "Infinity", "-Infinity"):
            return value
        value = float(value)
    return cls(value)


def _convert_wkt(desc: Descriptor, data: Any) -> Any:
    full = desc.full_name
    if full == "google.protobuf.Any":
        return _convert_any(data)
    if full == "google.protobuf.Struct":
        return _struct(data)
    if full == "google.protobuf.ListValue":
        return _list_value(data)
    if full == "google.protobuf.Value":
        return ValueNode(_value(data))
    if full == "google.protobuf.Duration":
        return _duration(data)
    if full == "google.protobuf.Timestamp":
        return _timestamp(data)
    if full == "google.protobuf.Empty":
        return {}
    # A wrapper: Envoy prints the bare value.
    if isinstance(data, Mapping):
        data = data.get("value")
    return _convert_single(_fields(desc)["value"], data) if data is not None else _zero(desc)


def _zero(desc: Descriptor) -> Any:
    return _convert_single(
        _fields(desc)["value"], {"google.protobuf.BoolValue": False}.get(desc.full_name, 0)
    )


def _convert_any(data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConvertError("google.protobuf.Any: expected an object")
    if not data:
        return {}  # an unset Any (protojson prints `{}`)
    url = data.get("@type")
    if not url:
        raise ConvertError("google.protobuf.Any without @type")
    desc = descriptor_for_url(str(url))
    if desc.full_name in _WKT:
        return AnyWktNode((("@type", url), ("value", _convert_wkt(desc, data.get("value", {})))))
    return {"@type": url, **convert(desc, data)}


def _struct(data: Any) -> StructNode:
    if not isinstance(data, Mapping):
        raise ConvertError("google.protobuf.Struct: expected an object")
    return StructNode((k, _value(data[k])) for k in sorted(data))


def _list_value(data: Any) -> ListValueNode:
    if not isinstance(data, list):
        raise ConvertError("google.protobuf.ListValue: expected an array")
    return ListValueNode(_value(v) for v in data)


def _value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, float)):
        return Float64(v)
    if isinstance(v, Mapping):
        return _struct(v)
    if isinstance(v, list):
        return _list_value(v)
    raise ConvertError(f"google.protobuf.Value: unexpected {type(v).__name__}")


_DURATION = re.compile(r"^(-)?(\d+)(?:\.(\d{1,9}))?s$")


def _duration(data: Any) -> str:
    m = _DURATION.match(str(data))
    if m is None:
        raise ConvertError(f"bad duration {data!r}")
    sign, secs, frac = m.group(1) or "", int(m.group(2)), (m.group(3) or "").ljust(9, "0")
    return f"{sign}{_trim_fraction(f'{secs}.{frac}')}s"


def _trim_fraction(x: str) -> str:
    """jsonpb's 0, 3, 6 or 9 fractional digits."""
    for suffix in ("000", "000"):
        x = x.removesuffix(suffix)
    return x.removesuffix(".000")


_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def _timestamp(data: Any) -> str:
    m = _TIMESTAMP.match(str(data))
    if m is None:
        raise ConvertError(f"bad timestamp {data!r}")
    if m.group(3) != "Z":
        import datetime as dt

        t = dt.datetime.fromisoformat(f"{m.group(1)}{m.group(3)}").astimezone(dt.UTC)
        base = t.strftime("%Y-%m-%dT%H:%M:%S")
    else:
        base = m.group(1)
    frac = (m.group(2) or "").ljust(9, "0")
    return f"{_trim_fraction(f'{base}.{frac}')}Z"


# --- scalars as Go prints them ------------------------------------------------------------------------


def go_float(f: float, bits: int = 64) -> str:
    """encoding/json's float format (protojson's too): shortest repr, exponent only below 1e-6 or from
    1e21, `e-07` cleaned to `e-7`."""
    if math.isnan(f):
        return '"NaN"'
    if math.isinf(f):
        return '"Infinity"' if f > 0 else '"-Infinity"'
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    digits = _shortest32(f) if bits == 32 else repr(float(f))
    a = abs(float(digits))
    if a < 1e-6 or a >= 1e21:
        d = Decimal(digits)
        mant, exp = _sci(d)
        sign = "-" if exp < 0 else "+"
        e = f"{abs(exp):02d}"
        if exp < 0 and e.startswith("0"):
            e = e[1:]
        return f"{'-' if d < 0 else ''}{mant}e{sign}{e}"
    text = format(Decimal(digits), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _sci(d: Decimal) -> tuple[str, int]:
    t = d.normalize().as_tuple()
    ds = "".join(map(str, t.digits))
    exp = t.exponent + len(ds) - 1  # type: ignore[operator]
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return mant, exp


def _shortest32(f: float) -> str:
    target = struct.unpack("f", struct.pack("f", f))[0]
    for p in range(1, 10):
        s = f"{target:.{p}g}"
        if struct.unpack("f", struct.pack("f", float(s)))[0] == target:
            return s
    return repr(target)


_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1 << 16)  # field names and most values repeat across a dump
def go_string(s: str, html: bool = True) -> str:
    """encoding/json's string (html=True: its HTML-safe escapes) or protojson's (html=False)."""
    out = _encode_basestring(s)
    if html:
        return out.translate(_HTML)
    return out.replace("\x7f", "\\u007f")


def _scalar(v: Any, html: bool) -> str:
    if isinstance(v, str):
        return go_string(v, html)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, Float32):
        return go_float(v, 32)
    if isinstance(v, float):
        return go_float(v, 64)
    return str(v)


# --- JSON layouts -------------------------------------------------------------------------------------


def dump_std(node: Any, *, html: bool = True, indent: str = INDENT) -> str:
    """Go's json.MarshalIndent / protojson Multiline layout of a tree."""
    out: list[str] = []
    _std(node, "", indent, html, out)
    return "".join(out)


def _std(node: Any, cur: str, step: str, html: bool, out: list[str]) -> None:
    if isinstance(node, ValueNode):
        node = node.content
    if isinstance(node, dict):
        if not node:
            out.append("{}")
            return
        inner = cur + step
        out.append("{")
        first = True
        for k, v in node.items():
            out.append("\n" if first else ",\n")
            first = False
            out.append(inner)
            out.append(go_string(k, html))
            out.append(": ")
            _std(v, inner, step, html, out)
        out.append("\n" + cur + "}")
    elif isinstance(node, list):
        if not node:
            out.append("[]")
            return
        inner = cur + step
        out.append("[")
        first = True
        for v in node:
            out.append("\n" if first else ",\n")
            first = False
            out.append(inner)
            _std(v, inner, step, html, out)
        out.append("\n" + cur + "]")
    else:
        out.append(_scalar(node, html))


def dump_jsonpb_indent(node: Any, indent: str = INDENT) -> str:
    """golang/protobuf jsonpb.Marshaler{Indent: indent} of one message (protomarshal.ToJSONWithIndent),
    quirks included: it follows jsonpb's marshalMessage / marshalValue recursion."""
    out: list[str] = []
    _lg_message(node, "", indent, out)
    return "".join(out)


def _is_msg(v: Any) -> bool:
    return isinstance(v, (dict, list, ValueNode))


def _lg_message(node: Any, ind: str, step: str, out: list[str]) -> None:
    if isinstance(node, StructNode):
        _lg_map(node, ind, step, out, values_are_value=True)
    elif isinstance(node, ListValueNode):
        _lg_list(node, ind, step, out, items_are_value=True)
    elif isinstance(node, ValueNode):
        _lg_value_content(node.content, ind, step, out)
    elif isinstance(node, AnyWktNode):
        out.append(
            "{\n" + ind + step + '"@type": ' + go_string(node["@type"]) + ",\n" + ind + step + '"value": '
        )
        _lg_message(node["value"], ind + step, step, out)
        out.append("\n" + ind + "}")
    elif isinstance(node, dict):
        out.append("{\n")
        first = True
        for k, v in node.items():
            if not first:
                out.append(",\n")
            first = False
            out.append(ind + step + go_string(k) + ": ")
            if isinstance(v, MapNode):
                _lg_map(v, ind, step, out, values_are_value=False)
            elif isinstance(v, list) and not isinstance(v, ListValueNode):
                _lg_list(v, ind, step, out, items_are_value=False)
            elif _is_msg(v):
                _lg_message(v, ind + step, step, out)
            else:
                out.append(_scalar(v, True))
        out.append("\n" + ind + "}")
    else:
        out.append(_scalar(node, True))


def _lg_value_content(v: Any, ind: str, step: str, out: list[str]) -> None:
    # jsonpb's "Value" case: marshalValue(kind field, v, indent); a Struct/ListValue kind is a message.
    if isinstance(v, (StructNode, ListValueNode)):
        _lg_message(v, ind + step, step, out)
    else:
        out.append(_scalar(v, True))


def _lg_list(items: list[Any], ind: str, step: str, out: list[str], *, items_are_value: bool) -> None:
    _lg_items(((None, v) for v in items), "[]", ind, step, out, are_values=items_are_value)


def _lg_map(m: Mapping[str, Any], ind: str, step: str, out: list[str], *, values_are_value: bool) -> None:
    _lg_items(m.items(), "{}", ind, step, out, are_values=values_are_value)


def _lg_items(
    items: Iterable[tuple[str | None, Any]],
    brackets: str,
    ind: str,
    step: str,
    out: list[str],
    *,
    are_values: bool,
) -> None:
    """A list (keys None) or a map's entries, one per line two steps in, as the old jsonpb indents them."""
    out.append(brackets[0])
    comma = ""
    inner = ind + step + step
    for k, v in items:
        out.append(comma + "\n" + inner + (go_string(k) + ": " if k is not None else ""))
        if are_values:
            _lg_value_content(v, inner, step, out)
        elif _is_msg(v):
            _lg_message(v, inner, step, out)
        else:
            out.append(_scalar(v, True))
        comma = ","
    out.append("\n" + ind + step + brackets[1])


# --- YAML: sigs.k8s.io/yaml.JSONToYAML (go-yaml v2) ---------------------------------------------------


def _go_key_less(a: str, b: str) -> bool:
    """go-yaml v2's keyList.Less for string keys: letters after non-letters, digit runs by value."""
    ar, br = a, b
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            continue
        al, bl = ar[i].isalpha(), br[i].isalpha()
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return bl
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and ar[j].isdigit():
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(ar) and ar[ai].isdigit():
            an = an * 10 + int(ar[ai])
            ai += 1
        bi = i
        while bi < len(br) and br[bi].isdigit():
            bn = bn * 10 + int(br[bi])
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ar[i] < br[i]
    return len(ar) < len(br)


def _go_key_cmp(a: Any, b: Any) -> int:
    if _go_key_less(str(a), str(b)):
        return -1
    if _go_key_less(str(b), str(a)):
        return 1
    return 0


_go_key = functools.cmp_to_key(_go_key_cmp)

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_TS_FORMATS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"),
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?$"),
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
)
_MAP_WORDS = {
    **dict.fromkeys(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"], "bool"),
    **dict.fromkeys(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"], "bool"),
    **dict.fromkeys(["", "~", "null", "Null", "NULL"], "null"),
    **dict.fromkeys([".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"], "float"),
    **dict.fromkeys(["-.inf", "-.Inf", "-.INF"], "float"),
    "<<": "merge",
}


def _go_timestamp(s: str) -> bool:
    import datetime as dt

    for rx in _TS_FORMATS:
        m = rx.match(s)
        if m is None:
            continue
        nums = [int(x) for x in m.groups()[:6] if x is not None and x[0].isdigit()]
        try:
            dt.datetime(*nums[:3])
            if len(nums) == 6 and not (nums[3] < 24 and nums[4] < 60 and nums[5] < 60):
                continue
        except ValueError:
            continue
        return True
    return False


def _go_int(plain: str) -> bool:
    body = plain[1:] if plain[:1] in "+-" else plain
    for prefix, base in (("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)):
        if body.startswith(prefix):
            try:
                return int(body[2:], base) < 2**64
            except ValueError:
                return False
    if len(body) > 1 and body[0] == "0":
        try:
            return int(body[1:], 8) < 2**64
        except ValueError:
            return False
    return body.isdigit() and body.isascii() and int(body) < 2**64


@functools.lru_cache(maxsize=65536)
def go_yaml_resolves_to_str(s: str) -> bool:
    """go-yaml v2's resolve("", s) is !!str (and s is no base-60 float): it may print unquoted."""
    if s in _MAP_WORDS:
        return False
    c = s[0]
    if c == "." and s != ".":
        try:
            float(s)
            return False
        except ValueError:
            return True
    if c.isdigit() or c in "+-":
        if _go_timestamp(s):
            return False
        plain = s.replace("_", "")
        if _go_int(plain):
            return False
        if _YAML_FLOAT.match(plain):
            return False
        if plain.startswith(("0b", "-0b")):
            return False
        return not _BASE60.match(s)
    return True


def _yaml_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), as go-yaml v2 prints a float."""
    if math.isnan(f):
        return ".nan"
    if math.isinf(f):
        return ".inf" if f > 0 else "-.inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    d = Decimal(repr(f))
    mant, exp = _sci(d)
    # 'g' with the shortest precision switches to an exponent below 1e-4 or from 1e6 (ftoa.go eprec 6).
    if exp < -4 or exp >= 6:
        return f"{'-' if f < 0 else ''}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@functools.lru_cache(maxsize=1 << 16)
def _str_style(s: str) -> str | None:
    """go-yaml v2's stringv: literal when multi-line, plain when it reads back as a string, else
    double-quoted (the emitter may still fall back to quotes when plain is not allowed)."""
    if "\n" in s:
        return "|"
    return None if s and go_yaml_resolves_to_str(s) else '"'


@functools.lru_cache(maxsize=4096)
def _go_sorted(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=_go_key))


def _yaml_dumper() -> type:
    import yaml

    # libyaml's emitter when PyYAML has it (go-yaml v2 is a port of it), else PyYAML's port.
    base: type = yaml.CDumper if getattr(yaml, "__with_libyaml__", False) else yaml.Dumper

    class GoYamlDumper(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            # A plain scalar's implicit tag as go-yaml resolves it: a string is plain only when it
            # reads back as a string there.
            if kind is yaml.ScalarNode and implicit[0]:
                if value in ("true", "false"):
                    return "tag:yaml.org,2002:bool"
                if value == "null":
                    return "tag:yaml.org,2002:null"
                return "tag:yaml.org,2002:str" if go_yaml_resolves_to_str(value) else "tag:yaml.org,2002:x"
            return str(super().resolve(kind, value, implicit))

    def rep_str(dumper: Any, s: str) -> Any:
        return yaml.ScalarNode("tag:yaml.org,2002:str", s, style=_str_style(s))

    def rep_int(dumper: Any, v: int) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:x", str(v))

    def rep_float(dumper: Any, v: float) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:x", _yaml_float(v))

    def rep_dict(dumper: Any, d: Mapping[Any, Any]) -> Any:
        return dumper.represent_mapping("tag:yaml.org,2002:map", [(k, d[k]) for k in _go_sorted(tuple(d))])

    def rep_bool(dumper: Any, v: bool) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:bool", "true" if v else "false")

    def rep_none(dumper: Any, v: None) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:null", "null")

    GoYamlDumper.add_representer(str, rep_str)
    GoYamlDumper.add_representer(bool, rep_bool)
    GoYamlDumper.add_representer(int, rep_int)
    GoYamlDumper.add_representer(float, rep_float)
    GoYamlDumper.add_representer(dict, rep_dict)
    GoYamlDumper.add_representer(type(None), rep_none)
    GoYamlDumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]
    return GoYamlDumper


_DUMPER: type | None = None


def json_to_yaml(text: str) -> str:
    """sigs.k8s.io/yaml.JSONToYAML: the JSON re-read as generic values and printed by go-yaml v2."""
    global _DUMPER
    import yaml

    if _DUMPER is None:
        _DUMPER = _yaml_dumper()
    data = json.loads(text)
    return yaml.dump(
        data, Dumper=_DUMPER, allow_unicode=True, default_flow_style=False, sort_keys=False, width=80
    )


# --- what istioctl prints -----------------------------------------------------------------------------


def _note(what: str, exc: Exception) -> None:
    print(f"isthmus: {what} printed as Envoy gave it ({exc})", file=sys.stderr)


def _raw_tree(v: Any) -> Any:
    """Envoy's own JSON as a tree (the fallback): floats as doubles."""
    if isinstance(v, dict):
        return {k: _raw_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_raw_tree(x) for x in v]
    if isinstance(v, float) and not isinstance(v, bool):
        return Float64(v)
    return v


def convert_items(
    type_name: str, items: Iterable[Mapping[str, Any]], label: Callable[[Mapping[str, Any]], str]
) -> list[Any]:
    desc = message_descriptor(type_name)
    assert desc is not None, type_name
    out = []
    for item in items:
        try:
            out.append(convert(desc, item))
        except (ConvertError, ValueError, TypeError) as exc:
            _note(label(item), exc)
            out.append(_raw_tree(item))
    return out


def message_slice(type_name: str, items: Iterable[Mapping[str, Any]], output: str) -> str:
    """istioctl's MessageSlice printing (clusters, listeners, routes, endpoint host statuses)."""
    tree = convert_items(type_name, items, lambda i: f"{type_name} {i.get('name', '')}".strip())
    text = dump_std(tree, html=True)
    return json_to_yaml(text) if output == "yaml" else text


def indented_message(type_name: str, data: Mapping[str, Any], output: str) -> str:
    """protomarshal.ToJSONWithIndent(msg, "    ") (secret, bootstrap), optionally JSONToYAML'd."""
    (tree,) = convert_items(type_name, [data], lambda _: type_name)
    text = dump_jsonpb_indent(tree)
    return json_to_yaml(text) if output == "yaml" else text


def protojson_message(type_name: str, data: Mapping[str, Any], output: str) -> str:
    """protojson.MarshalOptions{Multiline: true, Indent: "    "} (ecds), optionally JSONToYAML'd."""
    (tree,) = convert_items(type_name, [data], lambda _: type_name)
    text = dump_std(tree, html=False)
    return json_to_yaml(text) if output == "yaml" else text


__all__ = [
    "ConvertError",
    "convert",
    "dump_jsonpb_indent",
    "dump_std",
    "go_float",
    "go_string",
    "indented_message",
    "json_to_yaml",
    "message_slice",
    "protojson_message",
]
