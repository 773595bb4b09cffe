"""Short names for the Envoy protobuf modules the generators use, and small constructors."""

from __future__ import annotations

import re
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2 as circuit_breaker
from envoy.config.cluster.v3 import cluster_pb2 as cluster
from envoy.config.cluster.v3 import outlier_detection_pb2 as outlier
from envoy.config.core.v3 import address_pb2 as address
from envoy.config.core.v3 import base_pb2 as base
from envoy.config.core.v3 import config_source_pb2 as config_source
from envoy.config.core.v3 import extension_pb2 as extension
from envoy.config.core.v3 import health_check_pb2 as health_check
from envoy.config.core.v3 import protocol_pb2 as protocol
from envoy.config.endpoint.v3 import endpoint_components_pb2 as endpoint_components
from envoy.config.endpoint.v3 import endpoint_pb2 as endpoint
from envoy.config.listener.v3 import listener_components_pb2 as listener_components
from envoy.config.listener.v3 import listener_pb2 as listener
from envoy.config.route.v3 import route_components_pb2 as route_components
from envoy.config.route.v3 import route_pb2 as route
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2 as dns_cache
from envoy.extensions.filters.http.cors.v3 import cors_pb2 as cors
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import dynamic_forward_proxy_pb2 as dfp_filter
from envoy.extensions.filters.http.fault.v3 import fault_pb2 as fault
from envoy.extensions.filters.http.router.v3 import router_pb2 as router
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2 as http_inspector
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2 as tls_inspector
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2 as tcp_proxy
from envoy.extensions.network.dns_resolver.getaddrinfo.v3 import getaddrinfo_dns_resolver_pb2 as getaddrinfo
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2 as previous_hosts
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as http_options
from envoy.type.matcher.v3 import regex_pb2 as regex_matcher
from envoy.type.matcher.v3 import string_pb2 as string_matcher
from envoy.type.v3 import percent_pb2 as percent
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2

from isthmus.model.durations import proto_duration
from isthmus.registry.build import UNIX_ADDRESS_PREFIX
from isthmus.xds.requests import read_varint

MAX_UINT32 = 4294967295

__all__ = [
    "address",
    "base",
    "circuit_breaker",
    "cluster",
    "config_source",
    "cors",
    "dfp_cluster",
    "dfp_filter",
    "dns_cache",
    "endpoint",
    "endpoint_components",
    "extension",
    "fault",
    "getaddrinfo",
    "hcm",
    "health_check",
    "http_inspector",
    "http_options",
    "listener",
    "listener_components",
    "outlier",
    "percent",
    "previous_hosts",
    "previous_priorities",
    "protocol",
    "regex_matcher",
    "route",
    "route_components",
    "router",
    "string_matcher",
    "tcp_proxy",
    "tls_inspector",
]


_Any = any_pb2.Any
_TYPE_URL_PREFIX = "type.googleapis.com/"


def pack(message: Any) -> any_pb2.Any:
    """Same bytes as Any.Pack (type.googleapis.com/<full name>, SerializeToString) in one constructor
    call: tens of thousands of calls per cold generation of a 1,000-service sidecar. Deterministic: map
    fields are otherwise written in a per-process order, and a delta xDS resource's version is the digest
    of these bytes, so a proxy reconnecting to a restarted control plane would be sent everything with a
    map again (every generator that writes bytes itself serializes deterministically for the same
    reason). It costs about 5 % of a cold 1,000-service generation (bench/generate.py: 98 -> 103-106 ms)."""
    return _Any(
        type_url=_TYPE_URL_PREFIX + message.DESCRIPTOR.full_name,
        value=message.SerializeToString(deterministic=True),
    )


def typed_extension(name: str, message: Any) -> extension.TypedExtensionConfig:
    return extension.TypedExtensionConfig(name=name, typed_config=pack(message))


def socket_address(ip: str, port: int) -> address.Address:
    return address.Address(socket_address=address.SocketAddress(address=ip, port_value=port))


def build_address(bind: str, port: int) -> address.Address:
    """istiod's BuildAddress: a `unix://` path is a pipe (the port is 0 then), anything else ip:port."""
    if bind.startswith(UNIX_ADDRESS_PREFIX):
        return address.Address(pipe=address.Pipe(path=bind[len(UNIX_ADDRESS_PREFIX) :]))
    return socket_address(bind, port)


# The longest duration Envoy converts (DurationUtil: seconds < 9223372036, int64 nanoseconds); a longer
# one, which istiod's validation accepts up to protobuf's 10,000 years, gets the resource NACKed
# ("Invalid duration: Duration out-of-range"). 292 years stands for "never" just as well.
MAX_ENVOY_DURATION_S = 9_223_372_035


# What Envoy's HTTP_HEADER_NAME / HTTP_HEADER_VALUE rules (strict: false) refuse: NUL, CR, LF. istiod's
# validation lets them through in several fields; one such string gets the whole resource NACKed.
_NOT_IN_HEADERS = re.compile(r"[\x00\r\n]")


def header_safe(s: str) -> bool:
    """Whether Envoy takes `s` as a header name or value (no request can carry one it refuses)."""
    return _NOT_IN_HEADERS.search(s) is None


def duration(seconds: float) -> Any:
    return proto_duration(min(seconds, MAX_ENVOY_DURATION_S))


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def affix_matcher(value: str, *, ignore_case: bool = False) -> string_matcher.StringMatcher:
    """Istio's `*suffix` / `prefix*` / exact string in Envoy's StringMatcher (a lone `*` is the caller's)."""
    m = string_matcher.StringMatcher(ignore_case=ignore_case)
    if value.startswith("*"):
        m.suffix = value[1:]
    elif value.endswith("*"):
        m.prefix = value[:-1]
    else:
        m.exact = value
    return m


def set_fields(target: struct_pb2.Struct, data: dict[str, Any]) -> None:
    """Fill a Struct in place. Much faster than Struct.update, which matters on the hot paths
    (metadata on every endpoint and cluster): strings, numbers, bools, nested dicts and lists."""
    for key, value in data.items():
        _set_value(target.fields[key], value)


def _set_value(v: struct_pb2.Value, value: Any) -> None:
    if isinstance(value, str):
        v.string_value = value
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int | float):
        v.number_value = value
    elif isinstance(value, dict):
        set_fields(v.struct_value, value)
    elif isinstance(value, list | tuple):
        lst = v.list_value
        for item in value:
            _set_value(lst.values.add(), item)
    elif value is None:
        v.null_value = 0
    else:
        raise TypeError(f"cannot put {type(value).__name__} in a Struct")


def ads_config_source() -> config_source.ConfigSource:
    return config_source.ConfigSource(
        ads=config_source.AggregatedConfigSource(),
        initial_fetch_timeout=duration(0),
        resource_api_version=config_source.V3,
    )


def getaddrinfo_resolver() -> extension.TypedExtensionConfig:
    # The system resolver honours /etc/hosts (localhost) where c-ares would need a DNS server.
    return typed_extension(
        "envoy.network.dns_resolver.getaddrinfo", getaddrinfo.GetAddrInfoDnsResolverConfig()
    )


# --- protobuf wire encoding, for the hottest paths (EDS endpoints, per-cluster TLS contexts) ----------
# upb serializes fields in field-number order; bytes assembled here in that order (and then parsed, or
# carried in an Any) are what the API would produce. bench/gen_check.py compares the results.


def varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    if n < 0x4000:  # two bytes: most lengths of the assembled messages (an LbEndpoint, a virtual host)
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [bytes([i]) for i in range(0x80)]


def field_tag(message: type, field: str) -> bytes:
    """The key of a length-delimited field (wire type 2) of `message`, from its descriptor."""
    return varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SMALL_VARINTS[n] if n < 0x80 else varint(n)) + payload


def read_length_delimited(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """The length-delimited field at `pos` of wire bytes: (field number, payload, position after it)."""
    key, pos = read_varint(data, pos)
    if key & 7 != 2:
        raise ValueError(f"field {key >> 3} at {pos} is not length-delimited")
    n, pos = read_varint(data, pos)
    return key >> 3, data[pos : pos + n], pos + n


def wire_segments(message: Any, *gaps: int) -> list[bytes]:
    """The wire bytes of `message`'s set fields cut at the field numbers `gaps` (ascending, all unset in
    `message`): segment i holds the fields numbered between gaps[i-1] and gaps[i], in number order as
    upb writes them, so a caller fills a prototype's gaps by putting those fields' bytes in between."""
    fields = sorted(message.ListFields(), key=lambda f: f[0].number)
    segments: list[list[bytes]] = [[] for _ in range(len(gaps) + 1)]
    for fd, _ in fields:
        if fd.number in gaps:
            raise ValueError(f"{fd.name} is set in the prototype")
        one = type(message)()
        one.CopyFrom(message)
        for other, _ in fields:
            if other.number != fd.number:
                one.ClearField(other.name)
        segments[sum(1 for g in gaps if g < fd.number)].append(one.SerializeToString(deterministic=True))
    return [b"".join(seg) for seg in segments]
