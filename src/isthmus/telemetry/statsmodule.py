"""The in-proxy metrics module (on by default): build it, configure Envoy to load it, parse what it sends.

`statsmod/isthmus_stats.c` is an Envoy dynamic-module access logger. Each sidecar aggregates its
requests (HTTP) and connections (TCP) into Istio-style series inside the proxy and sends the series'
cumulative values to the control plane over UDP once per second, instead of one gRPC access-log entry
per request. This module:

- `build(cache_dir)` compiles the C source into ``<cache_dir>/<hash>/libisthmus_stats.so`` and returns
  the directory to put in Envoy's ``ENVOY_DYNAMIC_MODULES_SEARCH_PATH``;
- `access_logger(collector, node_id, direction)` is the ``AccessLog`` that loads it;
- `parse_datagram(data)` turns one datagram into a `Report`.

The datagram format (text, fields separated by ``\\x1f``, lines ending with ``\\n``, each datagram at most
60,000 bytes and parseable alone)::

    ISTHMUS-STATS/1 instance node seq part parts dropped send_errors
    H direction code flags cluster route upstream_ip downstream_ip local_port upstream_peer_san
      upstream_local_san downstream_peer_san downstream_local_san authority C|"" grpc|http grpc_status
      requests duration[20] duration_sum request_bytes[20] request_bytes_sum response_bytes[20]
      response_bytes_sum wire_sent wire_received request_messages response_messages
    T direction flags cluster route upstream_ip downstream_ip local_port upstream_peer_san
      upstream_local_san downstream_peer_san downstream_local_san opened closed sent received

(histograms: 20 space-separated per-bucket counts over Istio's bounds, see `BUCKET_BOUNDS`). Every value
is cumulative since the module instance (``instance``, random per Envoy process) started.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, fields
from pathlib import Path

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.dynamic_modules.v3 import dynamic_modules_pb2
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

SOURCE: Path = Path(__file__).parent / "statsmod" / "isthmus_stats.c"
MODULE_NAME = "isthmus_stats"
LOGGER_NAME = "istio_metrics"
ACCESS_LOGGER_NAME = "envoy.access_loggers.dynamic_modules"
ACCESS_LOG_TYPE = "envoy.extensions.access_loggers.dynamic_modules.v3.DynamicModuleAccessLog"
ACCESS_LOG_TYPE_URL = f"type.googleapis.com/{ACCESS_LOG_TYPE}"
CFLAGS = ("-O2", "-fPIC", "-shared", "-pthread", "-Wall", "-Werror")
MAGIC = "ISTHMUS-STATS/1"
SEP = "\x1f"
BUCKETS = 20
# Istio's default bounds (duration in ms, sizes in bytes); the last bucket is +Inf. A value v goes in
# bucket bisect_left(BUCKET_BOUNDS, v): the number of bounds strictly less than v.
BUCKET_BOUNDS: tuple[float, ...] = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)
MAX_DATAGRAM = 60_000
# Pods start concurrently and each asks for the module: one compiles it, the others find it built.
_BUILD_LOCK = threading.Lock()


class ModuleUnavailable(RuntimeError):
    """The module cannot be built here (no C compiler, or the compiler failed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- build -----------------------------------------------------------------------------------------


def build(cache_dir: Path) -> Path:
    """Compile the module once per (source, flags); the directory holding ``libisthmus_stats.so``."""
    with _BUILD_LOCK:
        return _build(cache_dir)


def _build(cache_dir: Path) -> Path:
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + b"\0" + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out_dir = Path(cache_dir) / digest
    lib = out_dir / f"lib{MODULE_NAME}.so"
    if lib.is_file():  # built before: no compiler needed
        return out_dir
    compiler = shutil.which("cc")
    if compiler is None:
        raise ModuleUnavailable("no C compiler (cc) on PATH")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".lib{MODULE_NAME}.", suffix=".so.tmp", dir=out_dir)
    except OSError as e:
        raise ModuleUnavailable(f"cannot write the module under {cache_dir}: {e}") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            proc = subprocess.run(
                [compiler, *CFLAGS, "-o", str(tmp), str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ModuleUnavailable(f"compiling {SOURCE.name} failed: {e}") from e
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
            raise ModuleUnavailable(f"compiling {SOURCE.name} failed (exit {proc.returncode}): {tail}")
        os.replace(tmp, lib)
    finally:
        tmp.unlink(missing_ok=True)
    return out_dir


# -- Envoy config --------------------------------------------------------------------------------------


def _access_log_class() -> type:
    """The DynamicModuleAccessLog message class. The installed xds-protos lack it, so unless a generated
    module exists it is declared at runtime (field numbers from envoyproxy/envoy
    api/envoy/extensions/access_loggers/dynamic_modules/v3/dynamic_modules.proto) in the default pool,
    where json_format and Any resolution find it."""
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(ACCESS_LOG_TYPE))
    except KeyError:
        pass
    try:  # a later xds-protos may ship it
        from envoy.extensions.access_loggers.dynamic_modules.v3 import (  # type: ignore[import-not-found]
            dynamic_modules_pb2 as generated,
        )

        return generated.DynamicModuleAccessLog
    except ImportError:
        pass
    f = descriptor_pb2.FileDescriptorProto(
        name="envoy/extensions/access_loggers/dynamic_modules/v3/dynamic_modules.proto",
        package="envoy.extensions.access_loggers.dynamic_modules.v3",
        syntax="proto3",
        dependency=[dynamic_modules_pb2.DESCRIPTOR.name, any_pb2.DESCRIPTOR.name],
    )
    m = f.message_type.add(name="DynamicModuleAccessLog")
    fd = descriptor_pb2.FieldDescriptorProto
    m.field.add(
        name="dynamic_module_config",
        number=1,
        label=fd.LABEL_OPTIONAL,
        type=fd.TYPE_MESSAGE,
        type_name=".envoy.extensions.dynamic_modules.v3.DynamicModuleConfig",
        json_name="dynamicModuleConfig",
    )
    m.field.add(
        name="logger_name", number=2, label=fd.LABEL_OPTIONAL, type=fd.TYPE_STRING, json_name="loggerName"
    )
    m.field.add(
        name="logger_config",
        number=3,
        label=fd.LABEL_OPTIONAL,
        type=fd.TYPE_MESSAGE,
        type_name=".google.protobuf.Any",
        json_name="loggerConfig",
    )
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(ACCESS_LOG_TYPE))


DynamicModuleAccessLog = _access_log_class()


def logger_config(
    collector: tuple[str, int],
    node_id: str,
    direction: str,
    *,
    skip_grpc: bool = False,
    source: str | None = None,
) -> str:
    """The module's config string (Envoy passes a StringValue's text to the module as is). `skip_grpc`:
    gRPC requests are not counted (the gRPC access log keeps them, message counts included); `source`:
    the IP the reports are sent from (the proxy's own, which the control plane checks)."""
    host, port = collector
    if direction not in ("outbound", "inbound"):
        raise ValueError(f"direction must be outbound or inbound, not {direction!r}")
    if not node_id or any(c.isspace() for c in node_id):
        raise ValueError(f"node id must be non-empty without whitespace: {node_id!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"bad collector port {port!r}")
    address = f"[{host}]" if ":" in host else host
    out = f"collector={address}:{int(port)} node={node_id} direction={direction}"
    if source:
        ipaddress.ip_address(source)  # ValueError when not an IP
        out += f" source={source}"
    return out + " grpc=skip" if skip_grpc else out


def access_logger(
    collector: tuple[str, int],
    node_id: str,
    direction: str,
    *,
    skip_grpc: bool = False,
    source: str | None = None,
) -> accesslog_pb2.AccessLog:
    """An ``AccessLog`` that loads the module's ``istio_metrics`` logger (deterministic bytes)."""
    config = DynamicModuleAccessLog(
        dynamic_module_config=dynamic_modules_pb2.DynamicModuleConfig(name=MODULE_NAME),
        logger_name=LOGGER_NAME,
    )
    text = logger_config(collector, node_id, direction, skip_grpc=skip_grpc, source=source)
    config.logger_config.Pack(wrappers_pb2.StringValue(value=text))
    log = accesslog_pb2.AccessLog(name=ACCESS_LOGGER_NAME)
    log.typed_config.type_url = ACCESS_LOG_TYPE_URL
    log.typed_config.value = config.SerializeToString(deterministic=True)
    return log


# -- datagrams -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpSeries:
    direction: str
    code: int
    flags: str
    cluster: str
    route: str
    upstream_ip: str
    downstream_ip: str
    local_port: int | None
    upstream_peer_san: str
    upstream_local_san: str
    downstream_peer_san: str
    downstream_local_san: str
    authority: str
    connect: bool
    grpc: bool
    grpc_status: str
    requests: int
    duration: tuple[int, ...]
    duration_sum: int
    request_bytes: tuple[int, ...]
    request_bytes_sum: int
    response_bytes: tuple[int, ...]
    response_bytes_sum: int
    wire_sent: int
    wire_received: int
    request_messages: int
    response_messages: int

    def key(self) -> tuple:
        """The key fields (direction .. grpc_status), which name the series."""
        return tuple(getattr(self, name) for name in HTTP_KEY_FIELDS)


@dataclass(frozen=True, slots=True)
class TcpSeries:
    direction: str
    flags: str
    cluster: str
    route: str
    upstream_ip: str
    downstream_ip: str
    local_port: int | None
    upstream_peer_san: str
    upstream_local_san: str
    downstream_peer_san: str
    downstream_local_san: str
    opened: int
    closed: int
    sent: int
    received: int

    def key(self) -> tuple:
        """The key fields (direction .. downstream_local_san), which name the series."""
        return tuple(getattr(self, name) for name in TCP_KEY_FIELDS)


def _split_fields(cls: type, first_value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = tuple(f.name for f in fields(cls))
    i = names.index(first_value)
    return names[:i], names[i:]


# The fields that name a series, and those that hold its totals (what the control plane diffs).
HTTP_KEY_FIELDS, HTTP_VALUE_FIELDS = _split_fields(HttpSeries, "requests")
TCP_KEY_FIELDS, TCP_VALUE_FIELDS = _split_fields(TcpSeries, "opened")


@dataclass(frozen=True, slots=True)
class Report:
    instance: str
    node_id: str
    seq: int
    part: int
    parts: int
    dropped: int
    send_errors: int
    http: tuple[HttpSeries, ...]
    tcp: tuple[TcpSeries, ...]


HTTP_FIELDS = 28  # 17 key fields (with the leading "H") + 11 values
TCP_FIELDS = 16  # 12 key fields (with the leading "T") + 4 values
_DIRECTIONS = ("outbound", "inbound")


def _int(text: str, what: str, line: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"line {line}: {what} is not a non-negative integer: {text!r}")
    return int(text)


def _port(text: str, line: int) -> int | None:
    if text == "":
        return None
    port = _int(text, "local port", line)
    if port > 65535:
        raise ValueError(f"line {line}: local port out of range: {port}")
    return port


def _hist(text: str, what: str, line: int) -> tuple[int, ...]:
    parts = text.split(" ")
    if len(parts) != BUCKETS:
        raise ValueError(f"line {line}: {what} has {len(parts)} buckets, expected {BUCKETS}")
    # One check of the whole field (ASCII digits and single spaces: no empty bucket), then the buckets:
    # this runs for three histograms of every series of every report.
    digits = text.replace(" ", "")
    if "" in parts or not digits.isascii() or not digits.isdigit():
        return tuple(_int(p, what, line) for p in parts)  # raises, naming the bad bucket
    return tuple(map(int, parts))


def _direction(text: str, line: int) -> str:
    if text not in _DIRECTIONS:
        raise ValueError(f"line {line}: bad direction {text!r}")
    return text


def _http(f: list[str], n: int) -> HttpSeries:
    if len(f) != HTTP_FIELDS:
        raise ValueError(f"line {n}: HTTP series has {len(f)} fields, expected {HTTP_FIELDS}")
    if f[14] not in ("C", ""):
        raise ValueError(f"line {n}: bad CONNECT marker {f[14]!r}")
    if f[15] not in ("grpc", "http"):
        raise ValueError(f"line {n}: bad protocol {f[15]!r}")
    return HttpSeries(
        direction=_direction(f[1], n),
        code=_int(f[2], "response code", n),
        flags=f[3],
        cluster=f[4],
        route=f[5],
        upstream_ip=f[6],
        downstream_ip=f[7],
        local_port=_port(f[8], n),
        upstream_peer_san=f[9],
        upstream_local_san=f[10],
        downstream_peer_san=f[11],
        downstream_local_san=f[12],
        authority=f[13],
        connect=f[14] == "C",
        grpc=f[15] == "grpc",
        grpc_status=f[16],
        requests=_int(f[17], "requests", n),
        duration=_hist(f[18], "duration", n),
        duration_sum=_int(f[19], "duration sum", n),
        request_bytes=_hist(f[20], "request bytes", n),
        request_bytes_sum=_int(f[21], "request bytes sum", n),
        response_bytes=_hist(f[22], "response bytes", n),
        response_bytes_sum=_int(f[23], "response bytes sum", n),
        wire_sent=_int(f[24], "wire sent", n),
        wire_received=_int(f[25], "wire received", n),
        request_messages=_int(f[26], "request messages", n),
        response_messages=_int(f[27], "response messages", n),
    )


def _tcp(f: list[str], n: int) -> TcpSeries:
    if len(f) != TCP_FIELDS:
        raise ValueError(f"line {n}: TCP series has {len(f)} fields, expected {TCP_FIELDS}")
    return TcpSeries(
        direction=_direction(f[1], n),
        flags=f[2],
        cluster=f[3],
        route=f[4],
        upstream_ip=f[5],
        downstream_ip=f[6],
        local_port=_port(f[7], n),
        upstream_peer_san=f[8],
        upstream_local_san=f[9],
        downstream_peer_san=f[10],
        downstream_local_san=f[11],
        opened=_int(f[12], "opened", n),
        closed=_int(f[13], "closed", n),
        sent=_int(f[14], "sent", n),
        received=_int(f[15], "received", n),
    )


def parse_datagram(data: bytes) -> Report:
    """One datagram of the module; ValueError (with what is wrong) when it is not well formed."""
    text = bytes(data).decode("utf-8", errors="replace")
    if not text.endswith("\n"):
        raise ValueError("datagram does not end with a newline (truncated?)")
    lines = text[:-1].split("\n")
    head = lines[0].split(SEP)
    if head[0] != MAGIC:
        raise ValueError(f"not an {MAGIC} datagram: starts with {head[0][:40]!r}")
    if len(head) != 8:
        raise ValueError(f"header has {len(head)} fields, expected 8")
    if not head[1] or any(c not in "0123456789abcdef" for c in head[1]):
        raise ValueError(f"bad instance id {head[1]!r}")
    seq, part, parts, dropped, errors = (
        _int(v, w, 1)
        for v, w in zip(head[3:], ("seq", "part", "parts", "dropped", "send errors"), strict=True)
    )
    if parts < 1 or part >= parts:
        raise ValueError(f"bad part {part} of {parts}")
    http: list[HttpSeries] = []
    tcp: list[TcpSeries] = []
    for n, line in enumerate(lines[1:], start=2):
        f = line.split(SEP)
        if f[0] == "H":
            http.append(_http(f, n))
        elif f[0] == "T":
            tcp.append(_tcp(f, n))
        else:
            raise ValueError(f"line {n}: unknown series kind {f[0][:20]!r}")
    return Report(
        instance=head[1],
        node_id=head[2],
        seq=seq,
        part=part,
        parts=parts,
        dropped=dropped,
        send_errors=errors,
        http=tuple(http),
        tcp=tuple(tcp),
    )
