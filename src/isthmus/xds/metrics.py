"""Prometheus metrics of the xDS server, named as istiod's (`pilot_*`) but in seconds and with `_total`.

| name | kind | labels | meaning |
|---|---|---|---|
| `pilot_xds` | gauge | | connected ADS streams (proxies) |
| `pilot_inbound_updates_total` | counter | `type` = full\\|eds | `update()` calls |
| `pilot_push_triggers_total` | counter | `type` = full\\|eds | debounced pushes dispatched |
| `pilot_debounce_time_seconds` | histogram | | first update of a batch -> its push dispatched |
| `pilot_proxy_queue_time_seconds` | histogram | | push dispatched -> a connection starts it |
| `pilot_xds_pushes_total` | counter | `type` = cds\\|eds\\|lds\\|rds\\|sds\\|... | DiscoveryResponses sent |
| `pilot_xds_push_time_seconds` | histogram | `type` | generate + encode + write of one response |
| `pilot_xds_send_time_seconds` | histogram | | the write alone (flow control) |
| `pilot_xds_send_bytes_total` | counter | `type` | bytes of responses sent |
| `pilot_xds_config_size_bytes` | histogram | `type` | size of each response |
| `pilot_proxy_convergence_time_seconds` | histogram | | first update of a push -> the proxy ACKs that push's response |
| `pilot_total_xds_rejects_total` | counter | `type` | NACKs received |
| `pilot_xds_expired_nonce_total` | counter | `type` | requests with a stale nonce (ignored as ACK/NACK) |
| `pilot_total_xds_internal_errors_total` | counter | `type` | generator failures (that proxy keeps its last config) |
| `pilot_xds_write_timeout_total` | counter | | writes that timed out (stream closed, the proxy reconnects) |
| `pilot_xds_skipped_pushes_total` | counter | `type` | pushes skipped because nothing changed for that proxy |
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CONVERGENCE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
_SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 4e6, 1e7, 4e7)


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connected = Gauge("pilot_xds", "Connected ADS streams (proxies).", registry=registry)
        self.inbound_updates = Counter(
            "pilot_inbound_updates", "Config updates received by the xDS server.", ["type"], registry=registry
        )
        self.push_triggers = Counter(
            "pilot_push_triggers", "Debounced pushes dispatched.", ["type"], registry=registry
        )
        self.debounce_time = Histogram(
            "pilot_debounce_time_seconds",
            "Delay between the first config update of a batch and its push.",
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "pilot_proxy_queue_time_seconds",
            "Delay between a push being dispatched and a connection starting it.",
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.pushes = Counter(
            "pilot_xds_pushes", "DiscoveryResponses sent, by type.", ["type"], registry=registry
        )
        self.push_time = Histogram(
            "pilot_xds_push_time_seconds",
            "Time to generate, encode and write one DiscoveryResponse.",
            ["type"],
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.send_time = Histogram(
            "pilot_xds_send_time_seconds",
            "Time to write one DiscoveryResponse to its stream.",
            buckets=_TIME_BUCKETS,
            registry=registry,
        )
        self.send_bytes = Counter(
            "pilot_xds_send_bytes", "Bytes of DiscoveryResponses sent.", ["type"], registry=registry
        )
        self.config_size = Histogram(
            "pilot_xds_config_size_bytes",
            "Size of DiscoveryResponses sent.",
            ["type"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time_seconds",
            "Delay between a config update and the proxy ACKing the config that holds it.",
            buckets=_CONVERGENCE_BUCKETS,
            registry=registry,
        )
        self.rejects = Counter(
            "pilot_total_xds_rejects", "Responses rejected (NACKed) by proxies.", ["type"], registry=registry
        )
        self.expired_nonce = Counter(
            "pilot_xds_expired_nonce", "Requests carrying a stale nonce.", ["type"], registry=registry
        )
        self.internal_errors = Counter(
            "pilot_total_xds_internal_errors",
            "Generator failures while building a proxy's config.",
            ["type"],
            registry=registry,
        )
        self.write_timeouts = Counter(
            "pilot_xds_write_timeout", "Response writes that timed out.", registry=registry
        )
        self.skipped = Counter(
            "pilot_xds_skipped_pushes",
            "Pushes skipped for a proxy and type because nothing changed.",
            ["type"],
            registry=registry,
        )
        self._per_type: dict[str, TypeMetrics] = {}

    def per_type(self, label: str) -> TypeMetrics:
        """The `type`-labelled series of one type; `labels()` takes a lock and builds a key on each call,
        which a push to 1,000 proxies would pay five times per response."""
        m = self._per_type.get(label)
        if m is None:
            m = self._per_type[label] = TypeMetrics(
                pushes=self.pushes.labels(label),
                send_bytes=self.send_bytes.labels(label),
                config_size=self.config_size.labels(label),
                push_time=self.push_time.labels(label),
                skipped=self.skipped.labels(label),
            )
        return m


@dataclass(frozen=True)
class TypeMetrics:
    pushes: Counter
    send_bytes: Counter
    config_size: Histogram
    push_time: Histogram
    skipped: Counter
