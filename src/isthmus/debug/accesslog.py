"""Istio access-log lines: the default TEXT format and the JSON encoding (MeshConfig accessLogEncoding).

TEXT (istiod's EnvoyTextLogFormat)::

  [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
  %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
  "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
  %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
  "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
  %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
  %REQUESTED_SERVER_NAME% %ROUTE_NAME%

Fields are kept under the JSON encoding's keys; Envoy's "-" (unset) becomes "". A line may carry an
`[instance] ` prefix (`isthmus logs --prefix`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

KEYS = (
    "start_time", "method", "path", "protocol", "response_code", "response_flags", "response_code_details",
    "connection_termination_details", "upstream_transport_failure_reason", "bytes_received", "bytes_sent",
    "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority",
    "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
    "downstream_remote_address", "requested_server_name", "route_name",
)  # fmt: skip

_Q = r'"(?P<{}>(?:[^"\\]|\\.)*)"'
_TEXT = re.compile(
    r"^\[(?P<start_time>[^\]]*)\] "
    r'"(?P<method>\S+) (?P<path>.*?) (?P<protocol>\S+)" '
    r"(?P<response_code>\d+) (?P<response_flags>\S+) (?P<response_code_details>\S+) "
    r"(?P<connection_termination_details>\S+) "
    + _Q.format("upstream_transport_failure_reason")
    + r" (?P<bytes_received>\S+) (?P<bytes_sent>\S+) (?P<duration>\S+) (?P<upstream_service_time>\S+) "
    + _Q.format("x_forwarded_for")
    + " "
    + _Q.format("user_agent")
    + " "
    + _Q.format("request_id")
    + " "
    + _Q.format("authority")
    + " "
    + _Q.format("upstream_host")
    + r" (?P<upstream_cluster>\S+) (?P<upstream_local_address>\S+) (?P<downstream_local_address>\S+)"
    r" (?P<downstream_remote_address>\S+)(?: (?P<requested_server_name>\S+))?(?: (?P<route_name>\S+))?\s*$"
)
_PREFIX = re.compile(r"^\[(?P<instance>[A-Za-z0-9._-]+)\] (?=[\[{])")
# Loose fallback: `" 503 UH no_healthy_upstream ` anywhere after the request line.
_LOOSE = re.compile(
    r'"\s+(?P<response_code>\d{1,3})\s+(?P<response_flags>[A-Z,\-]+)\s+(?P<response_code_details>\S+)'
)


@dataclass
class AccessLogEntry:
    fields: dict[str, str]
    raw: str = ""
    instance: str | None = None  # from an `[instance] ` prefix
    encoding: str = "TEXT"  # TEXT, JSON or PARTIAL (only code/flags/details recognised)
    source: str | None = None  # where it was read (file or proxy), when known
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.fields.get(key, "")

    @property
    def code(self) -> int:
        try:
            return int(self.get("response_code") or 0)
        except ValueError:
            return 0

    @property
    def flags(self) -> list[str]:
        raw = self.get("response_flags")
        return [f for f in raw.split(",") if f and f != "-"]

    @property
    def details(self) -> str:
        return self.get("response_code_details")

    @property
    def duration_ms(self) -> int | None:
        try:
            return int(self.get("duration"))
        except ValueError:
            return None

    @property
    def is_tcp(self) -> bool:
        return not self.get("method") and not self.get("path")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.fields.get(k, "") for k in KEYS if self.fields.get(k, "")}
        if self.instance:
            out["instance"] = self.instance
        if self.source:
            out["source"] = self.source
        return out


def _clean(value: Any) -> str:
    if value is None:
        return ""
    s = str(value)
    return "" if s == "-" else s


def parse_line(line: str) -> AccessLogEntry | None:
    """An access-log line in Istio's TEXT format or JSON encoding; None when it is neither."""
    text = line.strip()
    if not text:
        return None
    instance = None
    pm = _PREFIX.match(text)
    if pm:
        instance = pm.group("instance")
        text = text[pm.end() :]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and ("response_code" in data or "response_flags" in data):
            fields = {k: _clean(v) for k, v in data.items()}
            return AccessLogEntry(fields=fields, raw=line.rstrip("\n"), instance=instance, encoding="JSON")
    m = _TEXT.match(text)
    if m:
        fields = {k: _clean(v) for k, v in m.groupdict().items()}
        return AccessLogEntry(fields=fields, raw=line.rstrip("\n"), instance=instance, encoding="TEXT")
    m = _LOOSE.search(text)
    if m:
        fields = {k: _clean(v) for k, v in m.groupdict().items()}
        rid = re.search(r'"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"', text)
        if rid:
            fields["request_id"] = rid.group(1)
        return AccessLogEntry(fields=fields, raw=line.rstrip("\n"), instance=instance, encoding="PARTIAL")
    return None


def looks_like_access_log(line: str) -> bool:
    """Cheap test used when scanning files that also hold Envoy's own log (envoy.log)."""
    s = line.lstrip()
    if s.startswith("[") and not s.startswith("[20") and _PREFIX.match(s):
        s = s[_PREFIX.match(s).end() :]  # type: ignore[union-attr]
    if s.startswith("{"):
        return '"response_code"' in s
    # Envoy's own lines: `[2026-..][pid][level][component] ...`; access logs: `[2026-...] "GET ...`
    return s.startswith("[") and '] "' in s[:60]
