"""What the running mesh does not translate yet.

The lead edits these tables as features land. ``check_supported(resource)`` is called by the running
mesh (``isthmus up`` / ``apply``); ``isthmus analyze`` does not call it.

Pattern syntax (field paths with YAML names): ``spec.tcp``; ``[]`` after a segment means "every item
of that list" (``spec.http[].mirror``); a ``*`` segment means "every value of that map"
(``spec.portLevelMtls.*.mode``). A field matches when it is set to anything but null or an empty list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from isthmus.api.errors import ConfigError
from isthmus.api.paths import join

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

SECURITY_WORK = "arrives with the security work"
TCP_TLS_ROUTING = "sidecar TCP/TLS routing needs CONNECT tunnels; not yet translated"
UPSTREAM_TLS = "TLS origination from the sidecar arrives with the security work"

# Whole kinds the running mesh refuses.
UNSUPPORTED_KINDS: dict[str, str] = {
    "EnvoyFilter": "Isthmus generates its own Envoy config and does not apply EnvoyFilter patches",
    "WorkloadGroup": "VM auto-registration is not implemented",
    "Telemetry": "arrives with the telemetry work",
    "ProxyConfig": "arrives with the agent work",
    "PeerAuthentication": SECURITY_WORK,
    "AuthorizationPolicy": SECURITY_WORK,
    "RequestAuthentication": SECURITY_WORK,
}

# Fields of supported kinds the running mesh refuses: kind -> {field pattern: reason}.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "VirtualService": {
        "spec.tcp": TCP_TLS_ROUTING,
        "spec.tls": TCP_TLS_ROUTING,
    },
    "DestinationRule": {
        "spec.trafficPolicy.tls": UPSTREAM_TLS,
        "spec.trafficPolicy.portLevelSettings[].tls": UPSTREAM_TLS,
        "spec.subsets[].trafficPolicy.tls": UPSTREAM_TLS,
        "spec.subsets[].trafficPolicy.portLevelSettings[].tls": UPSTREAM_TLS,
        "spec.trafficPolicy.tunnel": "tunnels (CONNECT/POST upstream) are not translated yet",
        "spec.subsets[].trafficPolicy.tunnel": "tunnels (CONNECT/POST upstream) are not translated yet",
        "spec.trafficPolicy.proxyProtocol": "upstream PROXY protocol is not translated yet",
        "spec.subsets[].trafficPolicy.proxyProtocol": "upstream PROXY protocol is not translated yet",
    },
    "Gateway": {
        "spec.servers[].tls": "TLS at gateways (termination, passthrough) " + SECURITY_WORK,
    },
}


def _walk(data: Any, segments: list[str], path: str, out: list[str]) -> None:
    if not segments:
        if data is None or (isinstance(data, list) and not data):
            return
        out.append(path)
        return
    seg, rest = segments[0], segments[1:]
    if seg == "*":
        if isinstance(data, dict):
            for k, v in data.items():
                _walk(v, rest, join(path, k), out)
        return
    is_list = seg.endswith("[]")
    name = seg[:-2] if is_list else seg
    if not isinstance(data, dict) or name not in data:
        return
    value = data[name]
    here = join(path, name)
    if is_list:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, rest, join(here, i), out)
        return
    _walk(value, rest, here, out)


def matching_fields(data: dict[str, Any], pattern: str) -> list[str]:
    """Concrete field paths of ``data`` (a ``Resource.to_dict()``) that match ``pattern``."""
    out: list[str] = []
    _walk(data, pattern.split("."), "", out)
    return out


def check_supported(resource: Resource) -> list[ConfigError]:
    """One error per unsupported kind or set unsupported field of ``resource``."""
    ident = {
        "file": resource.origin.file,
        "kind": resource.kind,
        "namespace": resource.namespace or None,
        "name": resource.name,
    }
    reason = UNSUPPORTED_KINDS.get(resource.kind)
    if reason is not None:
        return [
            ConfigError(
                line=resource.origin.line, message=f"{resource.kind} is not supported yet: {reason}", **ident
            )
        ]
    patterns = UNSUPPORTED.get(resource.kind)
    if not patterns:
        return []
    data = resource.to_dict()
    errors: list[ConfigError] = []
    for pattern, why in patterns.items():
        for path in matching_fields(data, pattern):
            errors.append(
                ConfigError(
                    line=resource.line_of(path), message=f"{path} is not supported yet: {why}", **ident
                )
            )
    return errors


def is_supported(resource: Resource) -> bool:
    return not check_supported(resource)
