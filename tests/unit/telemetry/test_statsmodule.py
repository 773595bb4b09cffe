"""isthmus.telemetry.statsmodule without processes: the datagram parser and the Envoy config builder."""

from __future__ import annotations

import bisect
import ctypes
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.dynamic_modules.v3 import dynamic_modules_pb2
from google.protobuf import json_format, wrappers_pb2

from isthmus.telemetry import statsmodule
from isthmus.telemetry.statsmodule import (
    BUCKET_BOUNDS,
    HttpSeries,
    Report,
    TcpSeries,
    access_logger,
    parse_datagram,
)

S = "\x1f"


def hist(*pairs: tuple[int, int]) -> list[int]:
    counts = [0] * 20
    for i, c in pairs:
        counts[i] = c
    return counts


def http_line(
    *,
    direction: str = "outbound",
    code: str = "200",
    flags: str = "-",
    cluster: str = "outbound|8080||echo.default.svc.cluster.local",
    route: str = "echo-route",
    local_port: str = "15001",
    authority: str = "",
    connect: str = "",
    proto: str = "http",
    grpc_status: str = "",
    requests: str = "3",
    duration: list[int] | None = None,
    extra: list[str] | None = None,
) -> str:
    d = duration if duration is not None else hist((0, 1), (6, 2))
    fields = [
        "H",
        direction,
        code,
        flags,
        cluster,
        route,
        "10.0.0.2",
        "10.0.0.1",
        local_port,
        "spiffe://cluster.local/ns/default/sa/echo",
        "spiffe://cluster.local/ns/default/sa/client",
        "",
        "",
        authority,
        connect,
        proto,
        grpc_status,
        requests,
        " ".join(map(str, d)),
        "120",
        " ".join(map(str, hist((5, 3)))),
        "150",
        " ".join(map(str, hist((10, 3)))),
        "3531",
        "3531",
        "150",
        "7",
        "9",
        *(extra or []),
    ]
    return S.join(fields)


def tcp_line(*, local_port: str = "9000", opened: str = "2") -> str:
    return S.join(
        [
            "T",
            "inbound",
            "UF,URX",
            "inbound|9000||",
            "",
            "127.0.0.6",
            "10.0.0.1",
            local_port,
            "",
            "",
            "spiffe://cluster.local/ns/default/sa/client",
            "spiffe://cluster.local/ns/default/sa/db",
            opened,
            "1",
            "4096",
            "512",
        ]
    )


def datagram(*lines: str, header: list[str] | None = None) -> bytes:
    head = header or [
        "ISTHMUS-STATS/1",
        "00ff12ab34cd56ef",
        "sidecar~10.0.0.1~c.default~default.svc",
        "7",
        "0",
        "1",
        "2",
        "3",
    ]
    return ("\n".join([S.join(head), *lines]) + "\n").encode()


# -- parser ----------------------------------------------------------------------------------------------


def test_parse_header_and_series() -> None:
    r = parse_datagram(datagram(http_line(), tcp_line()))
    assert isinstance(r, Report)
    assert (r.instance, r.node_id, r.seq, r.part, r.parts, r.dropped, r.send_errors) == (
        "00ff12ab34cd56ef",
        "sidecar~10.0.0.1~c.default~default.svc",
        7,
        0,
        1,
        2,
        3,
    )
    (h,) = r.http
    assert h == HttpSeries(
        direction="outbound",
        code=200,
        flags="-",
        cluster="outbound|8080||echo.default.svc.cluster.local",
        route="echo-route",
        upstream_ip="10.0.0.2",
        downstream_ip="10.0.0.1",
        local_port=15001,
        upstream_peer_san="spiffe://cluster.local/ns/default/sa/echo",
        upstream_local_san="spiffe://cluster.local/ns/default/sa/client",
        downstream_peer_san="",
        downstream_local_san="",
        authority="",
        connect=False,
        grpc=False,
        grpc_status="",
        requests=3,
        duration=tuple(hist((0, 1), (6, 2))),
        duration_sum=120,
        request_bytes=tuple(hist((5, 3))),
        request_bytes_sum=150,
        response_bytes=tuple(hist((10, 3))),
        response_bytes_sum=3531,
        wire_sent=3531,
        wire_received=150,
        request_messages=7,
        response_messages=9,
    )
    assert h.key() == (
        "outbound",
        200,
        "-",
        "outbound|8080||echo.default.svc.cluster.local",
        "echo-route",
        "10.0.0.2",
        "10.0.0.1",
        15001,
        "spiffe://cluster.local/ns/default/sa/echo",
        "spiffe://cluster.local/ns/default/sa/client",
        "",
        "",
        "",
        False,
        False,
        "",
    )
    (t,) = r.tcp
    assert t == TcpSeries(
        direction="inbound",
        flags="UF,URX",
        cluster="inbound|9000||",
        route="",
        upstream_ip="127.0.0.6",
        downstream_ip="10.0.0.1",
        local_port=9000,
        upstream_peer_san="",
        upstream_local_san="",
        downstream_peer_san="spiffe://cluster.local/ns/default/sa/client",
        downstream_local_san="spiffe://cluster.local/ns/default/sa/db",
        opened=2,
        closed=1,
        sent=4096,
        received=512,
    )
    assert t.key() == (
        "inbound",
        "UF,URX",
        "inbound|9000||",
        "",
        "127.0.0.6",
        "10.0.0.1",
        9000,
        "",
        "",
        "spiffe://cluster.local/ns/default/sa/client",
        "spiffe://cluster.local/ns/default/sa/db",
    )
    with pytest.raises(AttributeError):
        h.requests = 4  # type: ignore[misc]


def test_parse_grpc_connect_and_empty_port() -> None:
    line = http_line(
        code="0",
        flags="DC",
        cluster="PassthroughCluster",
        route="allow_any",
        local_port="",
        authority="api.example.com:443",
        connect="C",
        proto="grpc",
        grpc_status="14",
    )
    (h,) = parse_datagram(datagram(line)).http
    assert h.local_port is None and h.connect and h.grpc and h.grpc_status == "14"
    assert h.authority == "api.example.com:443" and h.code == 0 and h.flags == "DC"


def test_parse_header_only_datagram() -> None:
    r = parse_datagram(datagram())
    assert r.http == () and r.tcp == () and r.parts == 1


def test_parse_multi_part_and_invalid_utf8() -> None:
    head = ["ISTHMUS-STATS/1", "0123456789abcdef", "node", "9", "2", "3", "0", "0"]
    data = datagram(http_line(route="r\u00e9"), header=head).replace("r\u00e9".encode(), b"r\xff")
    r = parse_datagram(data)
    assert (r.part, r.parts) == (2, 3)
    assert r.http[0].route == "r\ufffd"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "newline"),
        (b"HELLO\n", "not an ISTHMUS-STATS/1 datagram"),
        (datagram(http_line())[:-1], "newline"),
        (datagram(header=["ISTHMUS-STATS/1", "ab", "n", "1", "0", "1", "0"]), "header has 7 fields"),
        (datagram(header=["ISTHMUS-STATS/1", "XYZ", "n", "1", "0", "1", "0", "0"]), "instance"),
        (datagram(header=["ISTHMUS-STATS/1", "ab", "n", "x", "0", "1", "0", "0"]), "seq"),
        (datagram(header=["ISTHMUS-STATS/1", "ab", "n", "1", "1", "1", "0", "0"]), "bad part"),
        (datagram(header=["ISTHMUS-STATS/1", "ab", "n", "1", "0", "0", "0", "0"]), "bad part"),
        (datagram(http_line(extra=["1"])), "29 fields"),
        (datagram(http_line()[:-2]), "27 fields"),
        (datagram(http_line(direction="sideways")), "direction"),
        (datagram(http_line(code="-1")), "response code"),
        (datagram(http_line(local_port="x")), "local port"),
        (datagram(http_line(local_port="70000")), "out of range"),
        (datagram(http_line(connect="yes")), "CONNECT"),
        (datagram(http_line(proto="tcp")), "protocol"),
        (datagram(http_line(requests="")), "requests"),
        (datagram(http_line(duration=[1] * 19)), "19 buckets"),
        (datagram(tcp_line(opened="two")), "opened"),
        (datagram(tcp_line() + S + "1"), "17 fields"),
        (datagram("X" + S + "y"), "unknown series kind"),
        (datagram(""), "unknown series kind"),
    ],
)
def test_parse_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_datagram(data)


def test_bucket_bounds_are_istios() -> None:
    assert len(BUCKET_BOUNDS) == 19
    # bucket index = number of bounds strictly less than the value (what the module computes).
    assert [bisect.bisect_left(BUCKET_BOUNDS, v) for v in (0, 1, 2, 5, 6, 1000, 1001, 3600000, 3600001)] == [
        0,
        1,
        2,
        2,
        3,
        9,
        10,
        18,
        19,
    ]


# -- config builder --------------------------------------------------------------------------------------


def test_access_logger_decodes_back() -> None:
    log = access_logger(("10.1.2.3", 15020), "sidecar~10.0.0.1~c.default~default.svc", "inbound")
    assert isinstance(log, accesslog_pb2.AccessLog)
    assert log.name == "envoy.access_loggers.dynamic_modules"
    assert log.typed_config.type_url == (
        "type.googleapis.com/envoy.extensions.access_loggers.dynamic_modules.v3.DynamicModuleAccessLog"
    )
    cfg = statsmodule.DynamicModuleAccessLog()
    cfg.ParseFromString(log.typed_config.value)
    assert cfg.dynamic_module_config.name == "isthmus_stats"
    assert cfg.logger_name == "istio_metrics"
    assert cfg.logger_config.type_url == "type.googleapis.com/google.protobuf.StringValue"
    value = wrappers_pb2.StringValue()
    assert cfg.logger_config.Unpack(value)
    assert (
        value.value
        == "collector=10.1.2.3:15020 node=sidecar~10.0.0.1~c.default~default.svc direction=inbound"
    )


def test_access_logger_wire_format_by_hand() -> None:
    """The field numbers, read without the runtime descriptor: 1 module config, 2 name, 3 Any."""
    raw = access_logger(("127.0.0.1", 9), "n", "outbound").typed_config.value
    module = dynamic_modules_pb2.DynamicModuleConfig(name="isthmus_stats").SerializeToString()
    any_value = wrappers_pb2.StringValue(
        value="collector=127.0.0.1:9 node=n direction=outbound"
    ).SerializeToString()
    type_url = b"type.googleapis.com/google.protobuf.StringValue"
    any_bytes = b"\x0a" + bytes([len(type_url)]) + type_url + b"\x12" + bytes([len(any_value)]) + any_value
    expected = (
        b"\x0a"
        + bytes([len(module)])
        + module
        + b"\x12\x0distio_metrics"
        + b"\x1a"
        + bytes([len(any_bytes)])
        + any_bytes
    )
    assert raw == expected


def test_access_logger_is_deterministic_and_json_resolvable() -> None:
    a = access_logger(("127.0.0.1", 9999), "node-1", "outbound")
    b = access_logger(("127.0.0.1", 9999), "node-1", "outbound")
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    doc = json_format.MessageToDict(a, preserving_proto_field_name=True)
    assert doc["typed_config"]["dynamic_module_config"] == {"name": "isthmus_stats"}
    assert (
        doc["typed_config"]["logger_config"]["value"]
        == "collector=127.0.0.1:9999 node=node-1 direction=outbound"
    )
    again = json_format.ParseDict(doc, accesslog_pb2.AccessLog())
    assert again == a


def test_access_logger_ipv6_and_validation() -> None:
    log = access_logger(("::1", 9999), "n", "outbound")
    cfg = statsmodule.DynamicModuleAccessLog.FromString(log.typed_config.value)
    value = wrappers_pb2.StringValue()
    cfg.logger_config.Unpack(value)
    assert value.value.startswith("collector=[::1]:9999 ")
    with pytest.raises(ValueError, match="direction"):
        access_logger(("127.0.0.1", 1), "n", "sideways")
    with pytest.raises(ValueError, match="node id"):
        access_logger(("127.0.0.1", 1), "a b", "outbound")
    with pytest.raises(ValueError, match="port"):
        access_logger(("127.0.0.1", 0), "n", "outbound")
    with pytest.raises(ValueError):
        access_logger(("127.0.0.1", 1), "n", "outbound", source="pod-a")


def test_logger_config_options() -> None:
    text = statsmodule.logger_config(("127.1.0.1", 15014), "n", "inbound", skip_grpc=True, source="127.1.0.5")
    assert text == "collector=127.1.0.1:15014 node=n direction=inbound source=127.1.0.5 grpc=skip"


def test_build_into_an_unwritable_cache(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(statsmodule.ModuleUnavailable, match="cannot write the module"):
        statsmodule.build(blocker)


def test_build_without_compiler(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(statsmodule.shutil, "which", lambda name: None)
    with pytest.raises(statsmodule.ModuleUnavailable, match="no C compiler"):
        statsmodule.build(tmp_path)


def test_a_built_module_needs_no_compiler(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Built once (the module is on by default): a later start finds it without `cc`.
    source = statsmodule.SOURCE.read_bytes()
    digest = statsmodule.hashlib.sha256(source + b"\0" + " ".join(statsmodule.CFLAGS).encode()).hexdigest()
    built = tmp_path / digest[:16]
    built.mkdir()
    (built / f"lib{statsmodule.MODULE_NAME}.so").write_bytes(b"\x7fELF")
    monkeypatch.setattr(statsmodule.shutil, "which", lambda name: None)
    assert statsmodule.build(tmp_path) == built


def test_build_reports_compiler_errors(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    monkeypatch.setattr(statsmodule, "SOURCE", bad)
    if statsmodule.shutil.which("cc") is None:
        pytest.skip("no C compiler")
    with pytest.raises(statsmodule.ModuleUnavailable, match="undeclared"):
        statsmodule.build(tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.so*"))


# -- the C module against stub callbacks (no Envoy) -----------------------------------------------------
#
# The module is compiled together with stand-ins for Envoy's access-logger callbacks that answer from a
# struct the test fills through ctypes; the test calls the module's event hooks directly and reads the
# datagrams of the final flush (on_access_logger_config_destroy) from a UDP socket.

STUB_C = r"""
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
typedef struct { const char* ptr; size_t length; } ebuf_t;
struct stub {
  uint32_t code; uint64_t flags;
  const char* cluster; const char* route; const char* upstream_ip; const char* downstream_ip;
  const char* local_ip; uint32_t local_port;
  const char* sans[4];
  const char* authority; const char* method; const char* content_type;
  const char* grpc_trailer; const char* grpc_header;
  int64_t duration_ns; int32_t has_duration;
  uint64_t wire_rx, wire_tx, bytes_rx, bytes_tx, req_hdr, resp_hdr, conn_id, up_conn_id;
};
struct stub stub;
static bool str_out(const char* s, ebuf_t* out) {
  if (s == NULL) return false;
  out->ptr = s, out->length = strlen(s);
  return true;
}
static bool addr_out(const char* s, ebuf_t* out, uint32_t* port) { *port = 1234; return str_out(s, out); }
#define CB(name) envoy_dynamic_module_callback_access_logger_##name
uint32_t CB(get_response_code)(void* c) { (void)c; return stub.code; }
uint64_t CB(get_response_flags)(void* c) { (void)c; return stub.flags; }
bool CB(get_upstream_cluster)(void* c, ebuf_t* o) { (void)c; return str_out(stub.cluster, o); }
bool CB(get_route_name)(void* c, ebuf_t* o) { (void)c; return str_out(stub.route, o); }
bool CB(get_upstream_remote_address)(void* c, ebuf_t* a, uint32_t* p) { (void)c; return addr_out(stub.upstream_ip, a, p); }
bool CB(get_downstream_direct_remote_address)(void* c, ebuf_t* a, uint32_t* p) { (void)c; return addr_out(stub.downstream_ip, a, p); }
bool CB(get_downstream_local_address)(void* c, ebuf_t* a, uint32_t* p) {
  (void)c; bool ok = str_out(stub.local_ip, a); *p = stub.local_port; return ok;
}
#define SAN(fn, i) \
  size_t CB(fn##_size)(void* c) { (void)c; return stub.sans[i] ? 1 : 0; } \
  bool CB(fn)(void* c, ebuf_t* o) { (void)c; return str_out(stub.sans[i], o); }
SAN(get_upstream_peer_uri_san, 0)
SAN(get_upstream_local_uri_san, 1)
SAN(get_downstream_peer_uri_san, 2)
SAN(get_downstream_local_uri_san, 3)
bool CB(get_header_value)(void* c, int type, ebuf_t key, ebuf_t* out, size_t index, size_t* total) {
  (void)c, (void)index; *total = 0;
  const char* k = key.ptr; size_t n = key.length;
  const char* v = NULL;
  if (type == 0 && n == 10 && !memcmp(k, ":authority", n)) v = stub.authority;
  else if (type == 0 && n == 7 && !memcmp(k, ":method", n)) v = stub.method;
  else if (type == 0 && n == 12 && !memcmp(k, "content-type", n)) v = stub.content_type;
  else if (type == 3 && n == 11 && !memcmp(k, "grpc-status", n)) v = stub.grpc_trailer;
  else if (type == 2 && n == 11 && !memcmp(k, "grpc-status", n)) v = stub.grpc_header;
  if (v) *total = 1;
  return str_out(v, out);
}
typedef struct { int64_t ns[19]; bool has[19]; } timing_v2_t;
void CB(get_timing_info_v2)(void* c, timing_v2_t* t) {
  (void)c;
  for (int i = 0; i < 19; i++) t->ns[i] = -1, t->has[i] = false;
  t->ns[17] = stub.duration_ns, t->has[17] = stub.has_duration != 0;
}
typedef struct { uint64_t bytes_received, bytes_sent, wire_bytes_received, wire_bytes_sent; } bytes_info_t;
void CB(get_bytes_info)(void* c, bytes_info_t* o) {
  (void)c; o->bytes_received = stub.bytes_rx, o->bytes_sent = stub.bytes_tx, o->wire_bytes_received = 0, o->wire_bytes_sent = 0;
}
typedef struct { uint64_t rx, tx; } wire_t;
void CB(get_downstream_wire_bytes)(void* c, wire_t* o) { (void)c; o->rx = stub.wire_rx, o->tx = stub.wire_tx; }
uint64_t CB(get_request_headers_bytes)(void* c) { (void)c; return stub.req_hdr; }
uint64_t CB(get_response_headers_bytes)(void* c) { (void)c; return stub.resp_hdr; }
uint64_t CB(get_connection_id)(void* c) { (void)c; return stub.conn_id; }
uint64_t CB(get_upstream_connection_id)(void* c) { (void)c; return stub.up_conn_id; }
bool CB(get_filter_state)(void* c, ebuf_t k, ebuf_t* o) { (void)c, (void)k, (void)o; return false; }
"""


class _Stub(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("cluster", ctypes.c_char_p),
        ("route", ctypes.c_char_p),
        ("upstream_ip", ctypes.c_char_p),
        ("downstream_ip", ctypes.c_char_p),
        ("local_ip", ctypes.c_char_p),
        ("local_port", ctypes.c_uint32),
        ("sans", ctypes.c_char_p * 4),
        ("authority", ctypes.c_char_p),
        ("method", ctypes.c_char_p),
        ("content_type", ctypes.c_char_p),
        ("grpc_trailer", ctypes.c_char_p),
        ("grpc_header", ctypes.c_char_p),
        ("duration_ns", ctypes.c_int64),
        ("has_duration", ctypes.c_int32),
        ("wire_rx", ctypes.c_uint64),
        ("wire_tx", ctypes.c_uint64),
        ("bytes_rx", ctypes.c_uint64),
        ("bytes_tx", ctypes.c_uint64),
        ("req_hdr", ctypes.c_uint64),
        ("resp_hdr", ctypes.c_uint64),
        ("conn_id", ctypes.c_uint64),
        ("up_conn_id", ctypes.c_uint64),
    ]


class _Buf(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("length", ctypes.c_size_t)]


class StubbedModule:
    """One private copy of the module (its own globals) with stub callbacks and a UDP collector."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        self.stub = _Stub.in_dll(self.lib, "stub")
        self.lib.envoy_dynamic_module_on_access_logger_config_new.restype = ctypes.c_void_p
        self.lib.envoy_dynamic_module_on_access_logger_config_new.argtypes = [ctypes.c_void_p, _Buf, _Buf]
        self.lib.envoy_dynamic_module_on_access_logger_config_destroy.argtypes = [ctypes.c_void_p]
        self.lib.envoy_dynamic_module_on_access_logger_new.restype = ctypes.c_void_p
        self.lib.envoy_dynamic_module_on_access_logger_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib.envoy_dynamic_module_on_access_logger_log.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        self.lib.envoy_dynamic_module_on_program_init.restype = ctypes.c_char_p
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.keep: list[bytes] = []
        self.configs: list[int] = []
        self.reset()

    def reset(self, **values: object) -> None:
        ctypes.memset(ctypes.addressof(self.stub), 0, ctypes.sizeof(self.stub))
        defaults: dict[str, object] = {
            "code": 200,
            "cluster": "outbound|8080||echo.default.svc.cluster.local",
            "route": "default",
            "upstream_ip": "10.0.0.2",
            "downstream_ip": "10.0.0.1",
            "local_ip": "10.0.0.1",
            "local_port": 15001,
            "method": "GET",
            "authority": "echo:8080",
            "has_duration": 1,
            "duration_ns": 3_000_000,
        }
        defaults.update(values)
        for name, value in defaults.items():
            if name == "sans":
                for i, san in enumerate(value):  # type: ignore[arg-type]
                    self.stub.sans[i] = self._c(san)
            else:
                setattr(self.stub, name, self._c(value) if isinstance(value, str) else value)

    def _c(self, s: str | None) -> bytes | None:
        if s is None:
            return None
        b = s.encode()
        self.keep.append(b)
        return b

    def config(self, text: str | None = None, direction: str = "outbound") -> int | None:
        host, port = self.sock.getsockname()
        text = text if text is not None else f"collector={host}:{port} node=node-1 direction={direction}"
        raw = text.encode()
        self.keep.append(raw)
        cfg = self.lib.envoy_dynamic_module_on_access_logger_config_new(
            None, _Buf(b"istio_metrics", 13), _Buf(raw, len(raw))
        )
        if cfg:
            self.configs.append(cfg)
            return self.lib.envoy_dynamic_module_on_access_logger_new(cfg, None)
        return None

    def log(self, logger: int, log_type: int = 6) -> None:
        self.lib.envoy_dynamic_module_on_access_logger_log(None, logger, log_type)

    def destroy(self) -> None:
        """Destroy every config: the last one stops the flush thread after a final flush."""
        for cfg in self.configs:
            self.lib.envoy_dynamic_module_on_access_logger_config_destroy(cfg)
        self.configs.clear()

    def finish(self) -> list[Report]:
        """destroy(); the reports of the final flush."""
        self.destroy()
        reports: list[Report] = []
        self.sock.settimeout(1.0)
        try:
            while True:
                data = self.sock.recv(65536)
                assert len(data) <= statsmodule.MAX_DATAGRAM
                reports.append(parse_datagram(data))
                self.sock.settimeout(0.05)
        except TimeoutError:
            pass
        last = max(r.seq for r in reports)
        final = [r for r in reports if r.seq == last]
        assert sorted(r.part for r in final) == list(range(final[0].parts))
        return final


@pytest.fixture
def stubbed(tmp_path: Path) -> Iterator[StubbedModule]:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    (tmp_path / "stub.c").write_text(STUB_C)
    lib = tmp_path / "libstubbed.so"
    subprocess.run(
        ["cc", *statsmodule.CFLAGS, "-o", str(lib), str(statsmodule.SOURCE), str(tmp_path / "stub.c")],
        check=True,
        capture_output=True,
    )
    m = StubbedModule(lib)
    try:
        yield m
    finally:
        m.destroy()
        m.sock.close()


def _http(reports: list[Report]) -> dict[tuple, HttpSeries]:
    return {s.key(): s for r in reports for s in r.http}


def test_module_http_values_and_buckets(stubbed: StubbedModule) -> None:
    assert stubbed.lib.envoy_dynamic_module_on_program_init() == b"v0.2.0"
    logger = stubbed.config()
    durations_ms = [0, 1, 2, 5, 6, 1000, 1001, 3600000, 3600001]
    for ms in durations_ms:
        stubbed.reset(duration_ns=ms * 1_000_000 + 999_999, wire_rx=120, wire_tx=2000)
        stubbed.log(logger)
    stubbed.reset(has_duration=0, wire_rx=0, wire_tx=0, req_hdr=10, bytes_rx=20, resp_hdr=30, bytes_tx=1024)
    stubbed.log(logger)
    stubbed.log(logger, 4)  # DownstreamStart: ignored
    stubbed.log(logger, 5)  # DownstreamPeriodic: ignored
    stubbed.log(logger, 9)  # UpstreamEnd: ignored
    (s,) = _http(stubbed.finish()).values()
    n = len(durations_ms) + 1
    assert s.requests == n
    assert s.duration == tuple(
        sum(1 for ms in durations_ms if bisect.bisect_left(BUCKET_BOUNDS, ms) == i) for i in range(20)
    )
    # Whole ms (truncated); the request without a duration is in neither the buckets nor the sum.
    assert s.duration_sum == sum(durations_ms)
    assert s.request_bytes_sum == 120 * (n - 1) + 30 and s.response_bytes_sum == 2000 * (n - 1) + 1054
    assert s.request_bytes[bisect.bisect_left(BUCKET_BOUNDS, 120)] == n - 1
    assert s.request_bytes[bisect.bisect_left(BUCKET_BOUNDS, 30)] == 1
    assert bisect.bisect_left(BUCKET_BOUNDS, 1054) == bisect.bisect_left(BUCKET_BOUNDS, 2000) == 10
    assert s.response_bytes[10] == n and sum(s.response_bytes) == n
    assert (s.wire_received, s.wire_sent) == (120 * (n - 1), 2000 * (n - 1))
    assert (s.code, s.flags, s.route, s.local_port, s.upstream_ip, s.downstream_ip) == (
        200,
        "-",
        "default",
        15001,
        "10.0.0.2",
        "10.0.0.1",
    )
    assert s.authority == ""  # outbound|... cluster


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"flags": (1 << 1) | (1 << 15)}, {"flags": "UH,URX"}),
        (
            {"flags": (1 << 8) | (1 << 29), "cluster": None, "route": None},
            {"flags": "NR,UDO", "cluster": "", "route": ""},
        ),
        ({"cluster": "BlackHoleCluster"}, {"authority": "echo:8080"}),
        ({"cluster": "outbound|80||x", "route": "allow_any"}, {"authority": "echo:8080"}),
        ({"cluster": "inbound|80||"}, {"authority": "echo:8080"}),
        ({"cluster": "a\x1fb\nc", "route": "r\x1f"}, {"cluster": "a?b?c", "route": "r?"}),
        (  # fields longer than 1024 bytes are truncated; the line keeps all its fields
            {"cluster": "c" * 5000, "route": "r" * 5000, "authority": "a" * 5000, "sans": ["s" * 3000] * 4},
            {
                "cluster": "c" * 1024,
                "route": "r" * 1024,
                "authority": "a" * 1024,
                "downstream_local_san": "s" * 1024,
            },
        ),
        ({"method": "CONNECT"}, {"connect": True}),
        (
            {"content_type": "application/grpc", "grpc_trailer": "0", "grpc_header": "2"},
            {"grpc": True, "grpc_status": "0"},
        ),
        (
            {"content_type": "application/grpc+proto", "grpc_header": "14"},
            {"grpc": True, "grpc_status": "14"},
        ),
        ({"content_type": "application/grpc;x=y"}, {"grpc": True, "grpc_status": ""}),
        ({"content_type": "application/grpc-web", "grpc_header": "2"}, {"grpc": False, "grpc_status": ""}),
        (
            {"local_ip": None, "upstream_ip": None, "code": 0},
            {"local_port": None, "upstream_ip": "", "code": 0},
        ),
        (
            {"sans": ["spiffe://a", "spiffe://b", "spiffe://c", "spiffe://d"]},
            {
                "upstream_peer_san": "spiffe://a",
                "upstream_local_san": "spiffe://b",
                "downstream_peer_san": "spiffe://c",
                "downstream_local_san": "spiffe://d",
            },
        ),
    ],
)
def test_module_http_key_fields(stubbed: StubbedModule, values: dict, expected: dict) -> None:
    logger = stubbed.config()
    stubbed.reset(**values)
    stubbed.log(logger)
    (s,) = _http(stubbed.finish()).values()
    for name, value in expected.items():
        assert getattr(s, name) == value, name


def test_module_reads_a_connections_fields_once(stubbed: StubbedModule) -> None:
    """The fields of a downstream connection (remote address, local port, SANs) and of an upstream one
    (host address, SANs) are read on its first request and kept by connection id (Envoy never reuses
    one): a stub that changes them under the same id shows the kept ones; other ids read their own;
    id 0 (no connection) is never kept."""
    logger = stubbed.config()

    def log(**values: object) -> None:
        stubbed.reset(**values)
        stubbed.log(logger)

    first = {"downstream_ip": "10.0.0.1", "local_port": 15001, "upstream_ip": "10.0.0.2"}
    other = {"downstream_ip": "10.9.9.9", "local_port": 15006, "upstream_ip": "10.8.8.8"}
    sans = ["spiffe://up-peer", "spiffe://up-local", "spiffe://down-peer", "spiffe://down-local"]
    log(conn_id=5, up_conn_id=7, sans=sans, **first)
    log(conn_id=5, up_conn_id=7, sans=[None] * 4, **other)  # both kept
    log(conn_id=5, up_conn_id=8, sans=[None] * 4, **other)  # the upstream's read
    log(conn_id=6, up_conn_id=7, sans=[None] * 4, **other)  # the downstream's read
    log(conn_id=0, up_conn_id=0, sans=[None] * 4, **other)  # nothing kept...
    log(conn_id=0, up_conn_id=0, sans=sans, **first)  # ...so read again
    got = sorted(
        (
            s.downstream_ip,
            s.local_port,
            s.downstream_peer_san,
            s.downstream_local_san,
            s.upstream_ip,
            s.upstream_peer_san,
            s.upstream_local_san,
            s.requests,
        )
        for s in _http(stubbed.finish()).values()
    )
    down = ("10.0.0.1", 15001, "spiffe://down-peer", "spiffe://down-local")
    up = ("10.0.0.2", "spiffe://up-peer", "spiffe://up-local")
    assert got == sorted(
        [
            (*down, *up, 3),  # conn 5 + up 7 twice, and the last (id 0, the same values)
            (*down, "10.8.8.8", "", "", 1),  # conn 5 (kept), up 8 (read)
            ("10.9.9.9", 15006, "", "", *up, 1),  # conn 6 (read), up 7 (kept)
            ("10.9.9.9", 15006, "", "", "10.8.8.8", "", "", 1),  # id 0: read
        ]
    )


def test_module_reports_only_the_series_that_grew_until_the_heartbeat(stubbed: StubbedModule) -> None:
    """A second's report carries the series that grew since they were last sent; the others come with the
    heartbeat (every 10 s) and in the final report, which carries every series."""
    logger = stubbed.config()
    a, b = ("outbound|8080||a.default.svc.cluster.local", "outbound|8080||b.default.svc.cluster.local")

    def log(cluster: str) -> None:
        stubbed.reset(cluster=cluster)
        stubbed.log(logger)

    def next_report(after: int) -> Report:
        stubbed.sock.settimeout(5.0)
        while True:
            report = parse_datagram(stubbed.sock.recv(65536))
            if report.seq > after:
                return report

    log(a)
    log(b)
    first = next_report(0)
    assert {(s.cluster, s.requests) for s in first.http} == {(a, 1), (b, 1)}
    log(a)
    second = next_report(first.seq)
    assert {(s.cluster, s.requests) for s in second.http} == {(a, 2)}
    final = stubbed.finish()
    assert {(s.cluster, s.requests) for s in _http(final).values()} == {(a, 2), (b, 1)}


def test_module_inbound_never_reports_authority(stubbed: StubbedModule) -> None:
    logger = stubbed.config(direction="inbound")
    stubbed.reset(cluster="PassthroughCluster")
    stubbed.log(logger)
    (s,) = _http(stubbed.finish()).values()
    assert s.direction == "inbound" and s.authority == ""


def test_module_leaves_grpc_requests_to_the_access_log_when_asked(stubbed: StubbedModule) -> None:
    host, port = stubbed.sock.getsockname()
    logger = stubbed.config(f"collector={host}:{port} node=node-1 direction=outbound grpc=skip")
    for content_type in ("application/grpc", "application/grpc+proto", "application/grpc-web", "text/plain"):
        stubbed.reset(content_type=content_type)
        stubbed.log(logger)
    series = list(_http(stubbed.finish()).values())
    assert [(s.requests, s.grpc) for s in series] == [(1, False)]  # text/plain only


def test_module_sends_from_its_source_address(stubbed: StubbedModule) -> None:
    host, port = stubbed.sock.getsockname()
    logger = stubbed.config(f"collector={host}:{port} node=node-1 direction=outbound source=127.0.0.1")
    stubbed.log(logger)
    stubbed.destroy()
    stubbed.sock.settimeout(2.0)
    _data, (sender, _port) = stubbed.sock.recvfrom(65536)
    assert sender == "127.0.0.1"


def test_module_rejects_bad_configs(stubbed: StubbedModule) -> None:
    for text in (
        "",
        "collector=127.0.0.1:9 node=n",
        "collector=127.0.0.1 node=n direction=outbound",
        "collector=nohost:9 node=n direction=outbound",
        "collector=127.0.0.1:9 node=n direction=sideways",
        "collector=127.0.0.1:9 node=n direction=outbound extra=1",
        "collector=127.0.0.1:70000 node=n direction=outbound",
        "collector=127.0.0.1:9 node=n direction=outbound grpc=maybe",
        "collector=127.0.0.1:9 node=n direction=outbound source=nowhere",
    ):
        assert stubbed.config(text) is None, text
    assert stubbed.config("collector=[::1]:9 node=n direction=inbound") is not None


def test_module_capacity_and_parts(stubbed: StubbedModule) -> None:
    logger = stubbed.config()
    for i in range(8200):
        stubbed.reset(cluster=f"outbound|8080||svc-{i:05d}.default.svc.cluster.local")
        stubbed.log(logger)
    stubbed.reset(cluster="outbound|8080||svc-00000.default.svc.cluster.local")
    stubbed.log(logger)  # an existing series still counts
    final = stubbed.finish()
    assert len(final) > 1
    series = _http(final)
    assert len(series) == 8192
    assert sum(len(r.http) for r in final) == 8192  # each series in exactly one part
    assert {r.dropped for r in final} == {8}
    assert series[next(k for k in series if "svc-00000." in k[3])].requests == 2


def test_module_tcp_connection_state(stubbed: StubbedModule) -> None:
    out = stubbed.config()
    inbound = stubbed.config(direction="inbound")
    base = {"cluster": "outbound|9000||db", "route": None}
    # Outbound connection 1: connected, periodic (bytes move), end.
    stubbed.reset(**base, conn_id=1)
    stubbed.log(out, 1)
    stubbed.reset(**base, conn_id=1, bytes_rx=100, bytes_tx=40)
    stubbed.log(out, 2)
    stubbed.reset(**base, conn_id=1, bytes_rx=150, bytes_tx=40)
    stubbed.log(out, 2)
    stubbed.reset(**base, conn_id=1, bytes_rx=150, bytes_tx=90)
    stubbed.log(out, 3)
    # Outbound connection 2: only an end entry (no state): opened and closed at once.
    stubbed.reset(**base, conn_id=2, bytes_rx=5, bytes_tx=6)
    stubbed.log(out, 3)
    # Inbound without a peer SAN: periodic skipped, the end entry counts.
    stubbed.reset(**base, conn_id=3, bytes_rx=10, bytes_tx=10)
    stubbed.log(inbound, 1)
    stubbed.log(inbound, 2)
    stubbed.reset(**base, conn_id=3, bytes_rx=30, bytes_tx=20)
    stubbed.log(inbound, 3)
    # Inbound with a peer SAN: counted from the connected entry; left open.
    stubbed.reset(**base, conn_id=4, bytes_rx=7, bytes_tx=8, sans=[None, None, "spiffe://client", None])
    stubbed.log(inbound, 1)
    final = stubbed.finish()
    tcp = {(t.direction, t.downstream_peer_san): t for r in final for t in r.tcp}
    o = tcp[("outbound", "")]
    assert (o.opened, o.closed, o.received, o.sent) == (2, 2, 155, 96)
    assert o.route == "" and o.flags == "-" and o.local_port == 15001
    i = tcp[("inbound", "")]
    assert (i.opened, i.closed, i.received, i.sent) == (1, 1, 30, 20)
    m = tcp[("inbound", "spiffe://client")]
    assert (m.opened, m.closed, m.received, m.sent) == (1, 0, 7, 8)
