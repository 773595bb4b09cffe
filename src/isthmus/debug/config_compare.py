"""`proxy-status PROXY`: the control plane's config for a proxy against the Envoy's config dump.

istioctl's compare package (istioctl/pkg/writer/compare: comparator.go, cluster.go, listener.go,
route.go) over its configdump helpers (istioctl/pkg/util/configdump: GetDynamicClusterDump,
GetDynamicListenerDump, GetDynamicRouteDump, GetLastUpdatedDynamicRouteTime), on config dumps as dicts
in Envoy's admin JSON form (snake_case field names, `@type` on Any), both sides alike:

- Clusters: `dynamic_active_clusters` only, sorted by cluster name, each without `version_info` and
  `last_updated`.
- Listeners: `dynamic_listeners` that have an `active_state`, sorted by listener name, each without its
  `draining_state` (a reloaded listener drains its old version) and without the entry's `name` and the
  active state's `version_info` and `last_updated`.
- Routes: `dynamic_route_configs`, sorted by route config name, the virtual hosts of each sorted by
  name, each without `version_info` and `last_updated`. "RDS last loaded at" is the newest
  `last_updated` of Envoy's route configs, in local time, in Go's time.RFC1123 layout.

Each type prints "<Type> Match", or "<Type> Don't Match" and a unified diff of the two sides' JSON
("--- Istiod <Type>" / "+++ Envoy <Type>", 7 lines of context, as istioctl's difflib comparator). A
dump without the section compares as the error text in its place, as istioctl's difflib comparator
did. Differences from istioctl, each for a reason:
- The JSON is Envoy's admin JSON (snake_case, as `isthmus proxy-config -o json` prints it), not
  protojson's camelCase: converting needs every Any type resolved. Keys are sorted (map fields come in
  no fixed order from the two encoders) and numbers normalised (a float of integral value, 100.0 from
  Python's encoder, is Envoy's 100), so that only real differences show.
- The current istioctl prints cmp.Diff's Go-specific diff under its "Don't Match" line; this prints the
  unified diff of the istioctl releases before it, which reads the same for anyone.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from isthmus.debug.proxy_config import SECTIONS

# istioctl's Comparator.context: lines of context around each change.
CONTEXT = 7
# Go's time.RFC1123 names, fixed (not the C locale's strftime %a/%b, which a locale could change).
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _MissingSection(Exception):
    """istioctl's configdump Wrapper.getSection error: its text stands in for that side's JSON."""


def _section(dump: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    suffix = "." + SECTIONS[kind]
    for c in dump.get("configs") or ():
        if str(c.get("@type", "")).endswith(suffix):
            return c
    raise _MissingSection(
        f"config dump has no configuration type type.googleapis.com/envoy.admin.v3.{SECTIONS[kind]}"
    )


def _without(entry: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in keys}


def _name(message: Any) -> str:
    return str(message.get("name", "")) if isinstance(message, Mapping) else ""


def dynamic_clusters(dump: Mapping[str, Any]) -> dict[str, Any]:
    """istioctl's GetDynamicClusterDump(stripVersions=true), as a ClustersConfigDump dict."""
    dac = [
        _without(e, "version_info", "last_updated")
        for e in _section(dump, "cluster").get("dynamic_active_clusters") or ()
    ]
    dac.sort(key=lambda e: _name(e.get("cluster")))
    return {"dynamic_active_clusters": dac} if dac else {}


def dynamic_listeners(dump: Mapping[str, Any]) -> dict[str, Any]:
    """istioctl's GetDynamicListenerDump(stripVersions=true), as a ListenersConfigDump dict."""
    dal = []
    for e in _section(dump, "listener").get("dynamic_listeners") or ():
        active = e.get("active_state")
        if not active:
            continue
        # The entry's own name is Envoy's (istioctl: "In Istio 1.5, Envoy creates this; suppress it").
        out = _without(e, "draining_state", "name")
        out["active_state"] = _without(active, "version_info", "last_updated")
        dal.append(out)
    dal.sort(key=lambda e: _name(e["active_state"].get("listener")))
    return {"dynamic_listeners": dal} if dal else {}


def dynamic_routes(dump: Mapping[str, Any]) -> dict[str, Any]:
    """istioctl's GetDynamicRouteDump(stripVersions=true), as a RoutesConfigDump dict."""
    drc = []
    for e in _section(dump, "route").get("dynamic_route_configs") or ():
        out = _without(e, "version_info", "last_updated")
        rc = e.get("route_config")
        if isinstance(rc, Mapping) and rc.get("virtual_hosts"):
            # istioctl: "it is not enough just to sort the routes. The virtual hosts within a route
            # might have a different order" (and Envoy lists a table's VHDS virtual hosts after its own).
            out["route_config"] = {**rc, "virtual_hosts": sorted(rc["virtual_hosts"], key=_name)}
        drc.append(out)
    drc.sort(key=lambda e: _name(e.get("route_config")))
    return {"dynamic_route_configs": drc} if drc else {}


def _parse_time(value: str) -> datetime | None:
    """A protobuf Timestamp in JSON (RFC 3339, UTC "Z", up to nanoseconds) as an aware datetime."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        # Python's fromisoformat takes at most microseconds: keep 6 fraction digits.
        head, _, rest = text.partition(".")
        n = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:n][:6].ljust(6, '0')}{rest[n:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def last_route_update(dump: Mapping[str, Any]) -> datetime | None:
    """istioctl's GetLastUpdatedDynamicRouteTime: the newest `last_updated` of the dynamic route
    configs, None when there is none (or no route section)."""
    try:
        sec = _section(dump, "route")
    except _MissingSection:
        return None
    times = [
        t
        for e in sec.get("dynamic_route_configs") or ()
        if isinstance(e.get("last_updated"), str)
        and (t := _parse_time(e["last_updated"])) is not None
        and t.timestamp() > 0
    ]
    return max(times) if times else None


def rfc1123(moment: datetime, tz: tzinfo | None = None) -> str:
    """Go's `t.In(loc).Format(time.RFC1123)`: "Mon, 02 Jan 2006 15:04:05 MST", in `tz` (None: the
    local zone, istioctl's time.Local)."""
    t = moment.astimezone(tz)
    zone = t.tzname() or "UTC"
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} {zone}"
    )


def _normalized(value: Any) -> Any:
    """Numbers as Envoy's JSON writes them: a float of integral value is an integer (Python's encoder
    writes a double 100 as 100.0, Envoy's as 100)."""
    if isinstance(value, Mapping):
        return {str(k): _normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalized(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _text(value: Any) -> str:
    return json.dumps(value, indent=4, sort_keys=True) + "\n"


def _side(dump: Mapping[str, Any], extract: Any) -> tuple[Any, str]:
    try:
        value = _normalized(extract(dump))
    except _MissingSection as exc:
        return None, str(exc)
    return value, _text(value)


def unified_diff(istiod_text: str, envoy_text: str, what: str) -> list[str]:
    """go-difflib's UnifiedDiff of the two texts, "--- Istiod <what>" / "+++ Envoy <what>"."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            istiod_text.splitlines(keepends=True),
            envoy_text.splitlines(keepends=True),
            fromfile=f"Istiod {what}",
            tofile=f"Envoy {what}",
            n=CONTEXT,
        )
    ]


def _compare(
    istiod: Mapping[str, Any], envoy: Mapping[str, Any], extract: Any, what: str
) -> list[str] | None:
    """None when the two sides match, else the diff lines."""
    i_value, i_text = _side(istiod, extract)
    e_value, e_text = _side(envoy, extract)
    if i_value is not None and e_value is not None and i_value == e_value:
        return None
    if i_text == e_text:
        return None
    return unified_diff(i_text, e_text, what)


def compare(istiod: Mapping[str, Any], envoy: Mapping[str, Any], tz: tzinfo | None = None) -> list[str]:
    """istioctl's Comparator.Diff: the lines `proxy-status PROXY` prints for clusters, listeners and
    routes, `istiod` being the control plane's config dump for the proxy and `envoy` the proxy's
    admin `/config_dump`. `tz` is the zone of the RDS time (None: local, as istioctl)."""
    lines: list[str] = []
    diff = _compare(istiod, envoy, dynamic_clusters, "Clusters")
    if diff is None:
        lines.append("Clusters Match")
    else:
        lines += ["Clusters Don't Match", *diff]
    diff = _compare(istiod, envoy, dynamic_listeners, "Listeners")
    if diff is None:
        lines.append("Listeners Match")
    else:
        lines += ["Listeners Don't Match. Diff:", *diff]
    loaded = last_route_update(envoy)
    suffix = f" (RDS last loaded at {rfc1123(loaded, tz)})" if loaded is not None else ""
    diff = _compare(istiod, envoy, dynamic_routes, "Routes")
    if diff is None:
        lines.append(f"Routes Match{suffix}")
    else:
        lines += [f"Routes Don't Match{suffix}", *diff]
    return lines


def merge_virtual_hosts(
    route_configs: Sequence[Mapping[str, Any]], virtual_hosts: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Route configs with the virtual hosts sent over VHDS merged in, as Envoy's config dump shows a
    table that names VHDS: its own virtual hosts, then those whose resource name begins with
    `<route config name>/` (Envoy's VHDS namespace), each by name (Envoy keeps both kinds in maps)."""
    by_table: dict[str, list[Mapping[str, Any]]] = {}
    for vh in virtual_hosts:
        table, sep, _ = _name(vh).rpartition("/")
        if sep:
            # A resource of its own carries its `@type`; inside the table it is a plain field.
            by_table.setdefault(table, []).append({k: v for k, v in vh.items() if k != "@type"})
    out = []
    for rc in route_configs:
        extra = by_table.get(_name(rc)) if "vhds" in rc else None
        if not extra:
            out.append(dict(rc))
            continue
        own = sorted(rc.get("virtual_hosts") or (), key=_name)
        out.append({**rc, "virtual_hosts": [*own, *sorted(extra, key=_name)]})
    return out
