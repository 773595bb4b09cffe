"""What the xDS server knows about each connected proxy, for the CLI, the HTTP API and tests.

Sync states per subscribed type (the words of `istioctl proxy-status` and DESIGN §4):
- ``SYNCED``: the proxy ACKed the latest response sent for that type;
- ``STALE``: a response was sent and not ACKed yet, or it was NACKed;
- ``NOT SENT``: the proxy subscribed, nothing was sent yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.model.proxy import Proxy

SYNCED = "SYNCED"
STALE = "STALE"
NOT_SENT = "NOT SENT"


def version_key(version: str) -> tuple[int, int | str]:
    """Snapshot versions are integers as strings; compare them as integers (others sort after, as text)."""
    try:
        return (0, int(version))
    except (TypeError, ValueError):
        return (1, str(version))


def version_at_least(version: str | None, wanted: str) -> bool:
    if version is None:
        return False
    a, b = version_key(version), version_key(wanted)
    if a[0] != b[0]:
        return False
    return a >= b


@dataclass(frozen=True)
class ProxyStatus:
    """One connected proxy.

    `types` is keyed by short type name (`CDS`, `EDS`, `LDS`, `RDS`, `SDS`, or the full type URL for
    others), each value a dict: `type_url`, `sent_version`, `sent_nonce`, `acked_version`, `acked_nonce`,
    `last_nack` (`{"version", "nonce", "message", "code", "time"}` or None), `watched` (number of names
    the proxy asked for; 0 for a wildcard subscription), `wildcard`, `resources` (number the proxy holds
    from us), `sync` and `synced_version` (the snapshot version this type is known current at, ACKed).
    `config_version` is the snapshot version the proxy has ACKed for every subscribed type (None until
    it has). `connected_at` is a Unix time. `protocol`: "delta" or "sotw" (the stream's xDS variant).
    """

    id: str
    connection_id: str
    proxy: Proxy
    peer: str
    connected_at: float
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_version: str | None = None
    protocol: str = "sotw"

    @property
    def sync(self) -> dict[str, str]:
        return {name: t["sync"] for name, t in self.types.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "connectionId": self.connection_id,
            "kind": self.proxy.kind,
            "namespace": self.proxy.namespace,
            "instance": self.proxy.instance,
            "workload": self.proxy.workload,
            "ip": self.proxy.ip,
            "peer": self.peer,
            "connectedAt": self.connected_at,
            "configVersion": self.config_version,
            "protocol": self.protocol,
            "sync": self.sync,
            "types": {
                name: {
                    "typeUrl": t["type_url"],
                    "sentVersion": t["sent_version"],
                    "sentNonce": t["sent_nonce"],
                    "ackedVersion": t["acked_version"],
                    "ackedNonce": t["acked_nonce"],
                    "lastNack": t["last_nack"],
                    "watched": t["watched"],
                    "wildcard": t["wildcard"],
                    "resources": t["resources"],
                    "sync": t["sync"],
                    "syncedVersion": t["synced_version"],
                }
                for name, t in self.types.items()
            },
        }
