"""Encoding of DiscoveryResponses from the generators' packed resources, without re-serializing.

The generators return `google.protobuf.any_pb2.Any` messages and share them between proxies of the same
scope. A DiscoveryResponse on the wire is just its fields concatenated, in any order, so the server writes
responses as raw bytes: the `resources` field (number 2) once per resource, then `version_info`,
`type_url`, `nonce` and `control_plane`. A delta (incremental) response is built the same way from
`Resource` entries (`delta_resource`). Each Any is serialized once, framed as a `resources` field and
given a 64-bit content digest; that work is cached by object identity, so a thousand proxies sharing a
resource cost one serialization. A whole mapping returned by the generator is cached the same way (its
entries and digests), so a full push to many proxies of one scope digests it once; the server keeps the
encoded responses themselves, for content that several proxies get.

The cache keeps two generations (current and previous snapshot) and holds strong references to the
objects it has seen, so an `id()` is never reused while its entry lives. Generators must therefore treat a
returned Any or mapping as immutable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

_MASK = (1 << 64) - 1

# DiscoveryResponse field tags (field number << 3 | wire type 2).
_TAG_VERSION = 0x0A  # 1: version_info
_TAG_RESOURCES = 0x12  # 2: resources (repeated Any)
_TAG_TYPE_URL = 0x22  # 4: type_url
_TAG_NONCE = 0x2A  # 5: nonce
_TAG_CONTROL_PLANE = 0x32  # 6: control_plane (ControlPlane{identifier = 1})
# DeltaDiscoveryResponse: system_version_info (1), resources (2), type_url (4) and nonce (5) as above.
_TAG_REMOVED = 0x32  # 6: removed_resources (repeated string)
_TAG_DELTA_CONTROL_PLANE = 0x3A  # 7: control_plane
_TAG_RESOURCE_NAME = 0x1A  # Resource 3: name


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + varint(len(data)) + data


def digest64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class Encoded:
    """One packed resource: `data` is the framed `resources` field, `digest` its content digest;
    `delta` its framed delta `Resource` entries, by name (see `delta_resource`)."""

    __slots__ = ("data", "delta", "digest", "obj")

    def __init__(self, obj: Any, data: bytes, digest: int) -> None:
        self.obj = obj
        self.data = data
        self.digest = digest
        self.delta: dict[str, bytes] | None = None


def resource_version(entry_digest: int) -> str:
    """A delta `Resource.version`: the (name, content) digest the server keeps per sent resource."""
    return f"{entry_digest:016x}"


def parse_resource_version(version: str) -> int:
    """The digest a `resource_version` stands for; 0 (matching nothing) for versions not ours."""
    if len(version) != 16:
        return 0
    try:
        return int(version, 16)
    except ValueError:
        return 0


def delta_resource(name: str, enc: Encoded, entry_digest: int) -> bytes:
    """The framed `resources` entry of a DeltaDiscoveryResponse: a `Resource` {version (1), resource (2),
    name (3)}. Its `resource` field has the same number as a DiscoveryResponse's `resources`, so the
    encoded Any is reused as is; kept on the Encoded, so proxies sharing a resource share this too."""
    cached = enc.delta.get(name) if enc.delta is not None else None
    if cached is None:
        body = b"".join(
            (
                _field(_TAG_VERSION, resource_version(entry_digest).encode()),
                enc.data,
                _field(_TAG_RESOURCE_NAME, name.encode()),
            )
        )
        cached = _field(_TAG_RESOURCES, body)
        if enc.delta is None:
            enc.delta = {}
        enc.delta[name] = cached
    return cached


class ResourceSet:
    """Everything a generator returned for one (proxy, type), encoded: `entries` as (name, resource,
    entry digest), name -> entry digest and the combined digest (order independent)."""

    __slots__ = ("combined", "digests", "entries", "obj")

    def __init__(
        self, obj: Any, entries: list[tuple[str, Encoded, int]], digests: dict[str, int], combined: int
    ) -> None:
        self.obj = obj
        self.entries = entries
        self.digests = digests
        self.combined = combined


class EncodeCache:
    def __init__(self) -> None:
        self._cur: dict[int, Any] = {}
        self._old: dict[int, Any] = {}
        self._names: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    def rotate(self) -> None:
        """Start a new generation; entries not used since the previous rotation are dropped."""
        self._old = self._cur
        self._cur = {}
        if len(self._names) > 200_000:
            self._names = {}

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)

    def _lookup(self, obj: Any) -> Any:
        key = id(obj)
        entry = self._cur.get(key)
        if entry is not None and entry.obj is obj:
            self.hits += 1
            return entry
        entry = self._old.pop(key, None)
        if entry is not None and entry.obj is obj:
            self.hits += 1
            self._cur[key] = entry
            return entry
        self.misses += 1
        return None

    def encode(self, any_msg: Any) -> Encoded:
        entry = self._lookup(any_msg)
        if entry is None:
            raw = any_msg.SerializeToString()
            entry = Encoded(any_msg, _field(_TAG_RESOURCES, raw), digest64(raw))
            self._cur[id(any_msg)] = entry
        return entry

    def name_digest(self, name: str) -> int:
        d = self._names.get(name)
        if d is None:
            d = self._names[name] = digest64(name.encode())
        return d

    def entry_digest(self, name: str, enc: Encoded) -> int:
        """Digest of one (name, resource) pair, what the per-proxy state remembers as sent."""
        return (enc.digest ^ self.name_digest(name)) or 1

    def resource_set(self, resources: Mapping[str, Any]) -> ResourceSet:
        entry = self._lookup(resources)
        if entry is None:
            entries = []
            digests = {}
            combined = 0
            for name, any_msg in resources.items():
                enc = self.encode(any_msg)
                d = self.entry_digest(name, enc)
                entries.append((name, enc, d))
                digests[name] = d
                combined += d
            entry = ResourceSet(resources, entries, digests, combined & _MASK)
            self._cur[id(resources)] = entry
        return entry


class ResponseEncoder:
    """Builds the non-resource fields of a DiscoveryResponse (`version_info`, `type_url`, `nonce`,
    `control_plane`) around a body of framed resources."""

    def __init__(self, control_plane_id: str) -> None:
        identifier = _field(0x0A, control_plane_id.encode())
        self._control_plane = _field(_TAG_CONTROL_PLANE, identifier) if control_plane_id else b""
        self._delta_control_plane = _field(_TAG_DELTA_CONTROL_PLANE, identifier) if control_plane_id else b""
        self._type_urls: dict[str, bytes] = {}

    def _type_url(self, type_url: str) -> bytes:
        tu = self._type_urls.get(type_url)
        if tu is None:
            tu = self._type_urls[type_url] = _field(_TAG_TYPE_URL, type_url.encode())
        return tu

    def response(self, body: bytes, version: str, type_url: str, nonce: str) -> bytes:
        return b"".join(
            (
                body,
                _field(_TAG_VERSION, version.encode()),
                self._type_url(type_url),
                _field(_TAG_NONCE, nonce.encode()),
                self._control_plane,
            )
        )

    def delta_response(
        self, body: bytes, removed: Sequence[str], version: str, type_url: str, nonce: str
    ) -> bytes:
        """A DeltaDiscoveryResponse around `body`, framed `delta_resource` entries."""
        return b"".join(
            (
                body,
                *(_field(_TAG_REMOVED, name.encode()) for name in removed),
                _field(_TAG_VERSION, version.encode()),
                self._type_url(type_url),
                _field(_TAG_NONCE, nonce.encode()),
                self._delta_control_plane,
            )
        )
