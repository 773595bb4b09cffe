"""`Telemetry`: the control plane's telemetry backend (ALS ingestion, metrics, logs, traces, graph)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2 as al
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.service.accesslog.v3 import als_pb2

from isthmus.model.proxy import InvalidNode, Proxy
from isthmus.telemetry import accesslog, istio, policy
from isthmus.telemetry.envoy import DIRECTION_OF_LOG_NAME, DIRECTION_OF_LOG_ONLY_NAME, GRPC_STATS_FILTER
from isthmus.telemetry.graph import ServiceGraph, samples_of_buckets
from isthmus.telemetry.labels import (
    _SPECIAL_CLUSTERS,
    BLOCK_ALL_ROUTES,
    PeerLabels,
    peer_labels_inbound,
    peer_labels_outbound,
)
from isthmus.telemetry.metrics import Hist, IstioCollector, MetricsStore, ProxyStats, render
from isthmus.telemetry.resolver import PeerResolver, SnapshotResolver, Workload, workload_of_proxy
from isthmus.telemetry.series import SeriesDeltas
from isthmus.telemetry.spans import SpanStore

log = logging.getLogger(__name__)

OUTBOUND = "outbound"
INBOUND = "inbound"

_HTTP_FINAL = frozenset({al.NotSet, al.DownstreamEnd})
_TCP_CONNECTED = al.TcpUpstreamConnected
_TCP_PERIODIC = al.TcpPeriodic
_CONNECT = 6  # RequestMethod.CONNECT
_LABEL_CACHE_MAX = 50_000
_TCP_OPEN_MAX = 100_000
RETIRE_AFTER_S = 300.0


@dataclass
class ProxyInfo:
    """A proxy that streamed access logs: its identity, its own side's labels, its recent entries."""

    proxy: Proxy
    me: Workload
    streams: int = 0
    last_seen: float = 0.0
    entries: int = 0
    # (seq, t, http, entry): the entry's own bytes, or (its batch's wire bytes, its index in the batch)
    logs: deque[tuple[int, float, bool, bytes | tuple[bytes, int]]] = field(default_factory=deque)


@dataclass(frozen=True)
class LogLine:
    seq: int
    proxy_id: str
    instance: str
    namespace: str
    time: float
    text: str


def _is_grpc(content_type: str) -> bool:
    return content_type == "application/grpc" or content_type.startswith(
        ("application/grpc+", "application/grpc;")
    )


def _peer_san(common: Any) -> tuple[str, str]:
    if not common.HasField("tls_properties"):
        return "", ""
    tls = common.tls_properties
    return accesslog.uri_san(tls.peer_certificate_properties), accesslog.uri_san(
        tls.local_certificate_properties
    )


class Telemetry:
    """The telemetry backend. Create one per control plane; see the package docstring for wiring.

    `snapshot_getter` returns the current `model.Snapshot` (peers are resolved against its registry);
    tests and tools without a mesh pass `resolver` instead (a callable returning a `PeerResolver`).
    """

    def __init__(
        self,
        snapshot_getter: Callable[[], Any] | None = None,
        *,
        resolver: Callable[[], PeerResolver] | None = None,
        log_entries_per_proxy: int = 1000,
        max_traces: int = 2000,
        graph_horizon_s: int = 600,
        clock: Callable[[], float] = time.time,
        proxy_lookup: Callable[[str], Proxy | None] | None = None,
    ) -> None:
        """`proxy_lookup`: the connected proxy of a node id (the xDS server's), for the in-proxy metrics
        module's reports, which name their proxy by node id only."""
        if snapshot_getter is None and resolver is None:
            raise ValueError("Telemetry needs a snapshot_getter or a resolver")
        self._snapshot_getter = snapshot_getter
        self._resolver_factory = resolver
        self.clock = clock
        self.log_entries_per_proxy = log_entries_per_proxy
        self.metrics = MetricsStore()
        self.service_graph = ServiceGraph(graph_horizon_s, clock=clock)
        self.spans = SpanStore(max_traces=max_traces, clock=clock)
        self.proxies: dict[str, ProxyInfo] = {}
        self._resolver_key: Any = None
        self._resolver: PeerResolver | None = None
        self._labels: dict[tuple, PeerLabels] = {}
        # Telemetry API metrics policy per (proxy id, direction); None: Istio's default metrics.
        self._policies: dict[tuple[str, str], policy.MetricsPolicy | None] = {}
        self._tcp_open: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        self._seq = itertools.count(1)
        self._log_event: asyncio.Event | None = None
        self._last_housekeeping = 0.0
        self.lock = self.metrics.lock
        self.entries_total = 0
        self.messages_total = 0
        self.errors_total = 0
        self.proxy_lookup = proxy_lookup
        self._series = SeriesDeltas()
        self._receiver: asyncio.DatagramTransport | None = None
        self.reports_total = 0
        self.reports_unknown_proxy = 0
        self.reports_refused = 0  # sent from another address than their proxy's
        self.series_dropped: dict[str, int] = {}  # proxy id -> series its module's table had no room for

    # ------------------------------------------------------------------ resolution

    def snapshot(self) -> Any:
        return self._snapshot_getter() if self._snapshot_getter is not None else None

    def resolver(self) -> PeerResolver:
        """The resolver for the current snapshot (built once per snapshot; label cache reset with it)."""
        if self._resolver_factory is not None:
            r = self._resolver_factory()
            if r is not self._resolver:
                self._resolver, self._labels = r, {}
            return r
        snap = self.snapshot()
        if snap is not self._resolver_key or self._resolver is None:
            self._resolver_key = snap
            self._resolver = SnapshotResolver(snap)
            self._labels = {}
            self._policies = {}
        return self._resolver

    def metrics_policy(self, info: ProxyInfo, direction: str) -> policy.MetricsPolicy | None:
        """What Telemetry resources change in the metrics `info`'s proxy reports in `direction` (None: the
        default metrics). Computed once per snapshot (`resolver()` resets the cache)."""
        key = (info.proxy.id, direction)
        try:
            return self._policies[key]
        except KeyError:
            pass
        mp: policy.MetricsPolicy | None = None
        snap = self._resolver_key if self._resolver_factory is None else None
        if snap is not None and hasattr(snap, "configs"):
            try:
                found = policy.metrics_policy(snap, info.proxy, policy.mode_of(direction))
                mp = None if found.is_default else found
            except Exception:
                log.exception("telemetry: Telemetry metrics policy for %s", info.proxy.id)
        self._policies[key] = mp
        return mp

    def register_node(self, node: Any) -> ProxyInfo:
        """The ProxyInfo of an `envoy.config.core.v3.Node` (raises InvalidNode)."""
        info = self.proxies.get(node.id)
        if info is not None and info.proxy.id == node.id:
            return info
        proxy = Proxy.from_envoy_node(node)
        return self.register_proxy(proxy)

    def register_proxy(self, proxy: Proxy) -> ProxyInfo:
        info = self.proxies.get(proxy.id)
        if info is None:
            info = self.proxies[proxy.id] = ProxyInfo(
                proxy, workload_of_proxy(proxy), logs=deque(maxlen=self.log_entries_per_proxy)
            )
        else:
            info.proxy, info.me = proxy, workload_of_proxy(proxy)
        info.last_seen = self.clock()
        return info

    # ------------------------------------------------------------------ ingestion

    def ingest(
        self, info: ProxyInfo, direction: str, message: Any, raw: bytes | None = None, *, metrics: bool = True
    ) -> int:
        """One StreamAccessLogsMessage from `info`'s proxy (`raw`: its wire bytes, if at hand); returns the
        entries taken. `metrics` False: the entries are only kept for `isthmus logs` and explain (the
        proxy's metrics come from its in-proxy module)."""
        now = self.clock()
        info.last_seen = now
        self.messages_total += 1
        resolver = self.resolver()
        stats = self.metrics.stats(info.proxy.id)
        n = 0
        kept: list[tuple[int, bool, int, Any]] = []  # (seq, http, index in its list, entry)
        with self.lock:
            if message.HasField("http_logs"):
                for i, entry in enumerate(message.http_logs.log_entry):
                    n += 1
                    if entry.common_properties.access_log_type not in _HTTP_FINAL:
                        continue
                    kept.append((next(self._seq), True, i, entry))
                    if not metrics:
                        continue
                    try:
                        self._http(info, direction, entry, resolver, stats, now)
                    except Exception:
                        self.errors_total += 1
                        log.exception("telemetry: bad HTTP access-log entry from %s", info.proxy.id)
            if message.HasField("tcp_logs"):
                for i, entry in enumerate(message.tcp_logs.log_entry):
                    n += 1
                    if not metrics:
                        if entry.common_properties.access_log_type not in (_TCP_CONNECTED, _TCP_PERIODIC):
                            kept.append((next(self._seq), False, i, entry))
                        continue
                    try:
                        if self._tcp(info, direction, entry, resolver, stats, now):
                            kept.append((next(self._seq), False, i, entry))
                    except Exception:
                        self.errors_total += 1
                        log.exception("telemetry: bad TCP access-log entry from %s", info.proxy.id)
            self._remember(info, kept, n, raw, now)
        self.entries_total += n
        info.entries += n
        if n:
            self._notify_logs()
        if now - self._last_housekeeping > 30.0:
            self.housekeeping()
        return n

    def _peer_labels(
        self,
        info: ProxyInfo,
        direction: str,
        c: Any,
        resolver: PeerResolver,
        authority: str,
        tags: Any,
        tcp: bool = False,
    ) -> PeerLabels:
        """An entry's peer labels. `tcp`: a TCP connection or CONNECT tunnel (no Host header; metadata
        exchange needs mTLS)."""
        if direction == OUTBOUND:
            return self._outbound_labels(
                info,
                resolver,
                cluster=accesslog.upstream_cluster(c),
                upstream_ip=c.upstream_remote_address.socket_address.address,
                peer_san=tags.get(accesslog.TAG_UPSTREAM_PEER_SAN, ""),
                local_san=tags.get(accesslog.TAG_UPSTREAM_LOCAL_SAN, ""),
                route=c.route_name,
                authority=authority,
                tcp=tcp,
            )
        # The connection's own peer, not %DOWNSTREAM_REMOTE_ADDRESS%: behind a gateway that one is the
        # last X-Forwarded-For entry (the external client, or Envoy's host address for a loopback
        # client), which is no mesh pod.
        down_ip = (
            c.downstream_direct_remote_address.socket_address.address
            or c.downstream_remote_address.socket_address.address
        )
        peer_san, local_san = _peer_san(c)
        return self._inbound_labels(
            info,
            resolver,
            cluster=accesslog.upstream_cluster(c),
            local_port=c.downstream_local_address.socket_address.port_value or None,
            downstream_ip=down_ip,
            peer_san=peer_san,
            local_san=local_san,
            tcp=tcp,
        )

    def _outbound_labels(
        self,
        info: ProxyInfo,
        resolver: PeerResolver,
        *,
        cluster: str,
        upstream_ip: str,
        peer_san: str,
        local_san: str,
        route: str,
        authority: str,
        tcp: bool,
    ) -> PeerLabels:
        """Labels of a request or connection a proxy reports as its source (cached per snapshot)."""
        gateway = info.proxy.kind == "gateway"
        needs_host = not gateway and (
            not cluster.startswith("outbound|")
            or cluster in _SPECIAL_CLUSTERS
            or route == "allow_any"
            or route in BLOCK_ALL_ROUTES
        )
        key: tuple = (
            OUTBOUND,
            info.proxy.id,
            cluster,
            upstream_ip,
            peer_san,
            local_san,
            route,
            authority if needs_host else "",
            tcp,
        )
        pl = self._labels.get(key)
        if pl is None:
            pl = peer_labels_outbound(
                resolver,
                info.me,
                cluster=cluster,
                upstream_ip=upstream_ip,
                peer_san=peer_san,
                local_san=local_san,
                authority=authority,
                route_name=route,
                host_header_fallback=not gateway,
                tcp=tcp,
            )
            self._cache(key, pl)
        return pl

    def _inbound_labels(
        self,
        info: ProxyInfo,
        resolver: PeerResolver,
        *,
        cluster: str,
        local_port: int | None,
        downstream_ip: str,
        peer_san: str,
        local_san: str,
        tcp: bool,
    ) -> PeerLabels:
        """Labels of a request or connection a sidecar reports as its destination (cached per snapshot)."""
        key = (INBOUND, info.proxy.id, cluster, local_port or 0, downstream_ip, peer_san, local_san, tcp)
        pl = self._labels.get(key)
        if pl is None:
            pl = peer_labels_inbound(
                resolver,
                info.me,
                info.proxy,
                cluster=cluster,
                local_port=local_port,
                downstream_ip=downstream_ip,
                peer_san=peer_san,
                local_san=local_san,
                tcp=tcp,
            )
            self._cache(key, pl)
        return pl

    def _cache(self, key: tuple, pl: PeerLabels) -> None:
        if len(self._labels) >= _LABEL_CACHE_MAX:
            self._labels.clear()
        self._labels[key] = pl

    def _remember(
        self, info: ProxyInfo, kept: list[tuple[int, bool, int, Any]], n: int, raw: bytes | None, now: float
    ) -> None:
        """Keep the entries `isthmus logs` and explain show. When most of a batch is kept, the entries point
        into the batch's wire bytes (re-read when rendered) instead of each being serialized again: that
        copy was a fifth of the per-request ingestion cost. A batch mostly of entries not kept (open TCP
        connections' periodic reports) is not held for a few entries."""
        share = raw is not None and 2 * len(kept) >= n
        for seq, http, i, entry in kept:
            info.logs.append((seq, now, http, (raw, i) if share else entry.SerializeToString()))

    def _http(
        self,
        info: ProxyInfo,
        direction: str,
        entry: Any,
        resolver: PeerResolver,
        stats: ProxyStats,
        now: float,
    ) -> None:
        c = entry.common_properties
        tags = c.custom_tags
        req = entry.request
        flags = istio.response_flags(c)
        code = entry.response.response_code.value
        mp = self.metrics_policy(info, direction)
        if req.request_method == _CONNECT and direction == OUTBOUND:
            # A CONNECT tunnel is TCP traffic routed as Istio routes TCP: report it as a connection, whose
            # labels know no Host header (a TCP passthrough's destination_service is "unknown").
            pl = self._peer_labels(info, direction, c, resolver, "", tags, tcp=True)
            flags = _tunnel_flags(flags, c.route_name)
            key = (*pl.values, "tcp", flags, pl.security_policy)
            sent, received = c.downstream_wire_bytes_sent, c.downstream_wire_bytes_received
            if mp is None:
                t = stats.tcp_series(key)
                t.opened += 1
                t.closed += 1
                t.sent += sent
                t.received += received
            else:
                _record_tcp(stats, mp, key, entry, True, 1, 1, sent, received)
            counted = True
            self.service_graph.record_tcp(
                _graph_key(pl, key),
                counted=counted,
                opened=1,
                bytes_=c.downstream_wire_bytes_sent + c.downstream_wire_bytes_received,
                now=now,
            )
            return
        pl = self._peer_labels(info, direction, c, resolver, req.authority, tags)
        grpc = _is_grpc(tags.get(accesslog.TAG_CONTENT_TYPE, ""))
        grpc_status = accesslog.grpc_status(entry) if grpc else ""
        key = (*pl.values, "grpc" if grpc else "http", str(code), grpc_status, flags, pl.security_policy)
        duration = accesslog.duration_ms(c)
        received = c.downstream_wire_bytes_received or (req.request_headers_bytes + req.request_body_bytes)
        resp = entry.response
        sent = c.downstream_wire_bytes_sent or (resp.response_headers_bytes + resp.response_body_bytes)
        messages = None
        if grpc:
            fs = c.filter_state_objects
            if GRPC_STATS_FILTER in fs:
                obj = grpc_stats_pb2.FilterObject()
                if fs[GRPC_STATS_FILTER].Unpack(obj):
                    messages = (obj.request_message_count, obj.response_message_count)
        if mp is None:
            s = stats.http_series(key)
            s.requests += 1
            if duration is not None:
                s.duration.observe(duration)
            s.request_bytes.observe(received)
            s.response_bytes.observe(sent)
            if grpc:
                s.grpc = True
                if messages is not None:
                    s.request_messages += messages[0]
                    s.response_messages += messages[1]
        elif mp.enabled:
            values: list[tuple[str, Any]] = [
                (istio.REQUESTS_TOTAL, 1),
                (istio.REQUEST_BYTES, received),
                (istio.RESPONSE_BYTES, sent),
            ]
            if duration is not None:
                values.append((istio.REQUEST_DURATION, duration))
            if grpc:
                m = messages or (0, 0)
                values += [(istio.REQUEST_MESSAGES, m[0]), (istio.RESPONSE_MESSAGES, m[1])]
            _record(stats, mp, istio.HTTP_LABELS, key, entry, True, values)
        counted = pl.values[0] == istio.SOURCE or pl.peer is None or not pl.peer.has_proxy
        error = code >= 500 or code == 0 or (grpc and grpc_status not in ("", "0"))
        self.service_graph.record_http(
            key if pl.graph_values is None else _graph_key(pl, key),
            counted=counted,
            duration_ms=duration,
            error=error,
            code=str(code),
            now=now,
        )

    def _tcp(
        self,
        info: ProxyInfo,
        direction: str,
        entry: Any,
        resolver: PeerResolver,
        stats: ProxyStats,
        now: float,
    ) -> bool:
        """One TCP entry; True when it ends its connection (the entry `isthmus logs` shows)."""
        c = entry.common_properties
        kind = c.access_log_type
        if direction == INBOUND and kind in (_TCP_CONNECTED, _TCP_PERIODIC) and not _peer_san(c)[0]:
            # istio-proxy reports a server connection once metadata exchange read its peer, else only when
            # it closes. Envoy also logs "upstream connected" before the downstream TLS handshake is
            # done (no peer certificate yet): that report would carry a plaintext peer. The closing
            # entry carries the totals.
            return False
        pl = self._peer_labels(info, direction, c, resolver, "", c.custom_tags, tcp=True)
        key = (*pl.values, "tcp", istio.response_flags(c), pl.security_policy)
        sent, received = entry.connection_properties.sent_bytes, entry.connection_properties.received_bytes
        conn = (info.proxy.id, c.stream_id)
        state = self._tcp_open.get(conn) if c.stream_id else None
        opened = 0
        if state is None:
            opened = 1
            state = [0, 0]
        d_sent, d_received = max(0, sent - state[0]), max(0, received - state[1])
        delta = d_sent + d_received
        closed = 0
        if kind in (_TCP_CONNECTED, _TCP_PERIODIC) and c.stream_id:
            state[0], state[1] = max(sent, state[0]), max(received, state[1])
            self._tcp_open[conn] = state
            if len(self._tcp_open) > _TCP_OPEN_MAX:
                self._tcp_open.popitem(last=False)
        else:
            closed = 1
            self._tcp_open.pop(conn, None)
        mp = self.metrics_policy(info, direction)
        if mp is None:
            t = stats.tcp_series(key)
            t.opened += opened
            t.closed += closed
            t.sent += d_sent
            t.received += d_received
        else:
            _record_tcp(stats, mp, key, entry, False, opened, closed, d_sent, d_received)
        counted = pl.values[0] == istio.SOURCE or pl.peer is None or not pl.peer.has_proxy
        self.service_graph.record_tcp(
            key if pl.graph_values is None else _graph_key(pl, key),
            counted=counted,
            opened=opened,
            bytes_=delta,
            now=now,
        )
        return bool(closed)

    # ------------------------------------------------------------------ in-proxy metrics module

    def ingest_report(self, report: Any, source_ip: str | None = None) -> int:
        """One datagram of the in-proxy metrics module (`statsmodule.Report`): the growth of each series
        since its last report becomes Istio's metrics and the graph, as entries do. Returns the series
        that grew. A report from a proxy not connected (yet) is skipped: its totals come again. With
        `source_ip` (the datagram's), a report whose proxy has another address is refused: the module
        sends from its proxy's address, so that one is forged."""
        info = self.proxies.get(report.node_id)
        if info is None:
            proxy = self.proxy_lookup(report.node_id) if self.proxy_lookup is not None else None
            if proxy is None:
                self.reports_unknown_proxy += 1
                return 0
            info = self.register_proxy(proxy)
        if source_ip is not None and info.proxy.ip and source_ip != info.proxy.ip:
            self.reports_refused += 1
            return 0
        now = self.clock()
        info.last_seen = now
        self.reports_total += 1
        if report.dropped:
            if info.proxy.id not in self.series_dropped:
                # Once per proxy: its module's table is full, so requests of new label sets go uncounted.
                log.warning(
                    "telemetry: %s's metrics module has no room for new series; %d entries uncounted",
                    info.proxy.id,
                    report.dropped,
                )
            self.series_dropped[info.proxy.id] = report.dropped
        resolver = self.resolver()
        stats = self.metrics.stats(info.proxy.id)
        grown = self._series.deltas(info.proxy.id, report.instance, (*report.http, *report.tcp))
        with self.lock:
            for d in grown:
                try:
                    if hasattr(d, "requests"):
                        self._http_series(info, d, resolver, stats, now)
                    else:
                        self._tcp_series(info, d, resolver, stats, now)
                except Exception:
                    self.errors_total += 1
                    log.exception("telemetry: bad series from %s's metrics module", info.proxy.id)
        if now - self._last_housekeeping > 30.0:
            self.housekeeping()
        return len(grown)

    def _series_labels(self, info: ProxyInfo, d: Any, resolver: PeerResolver, tcp: bool) -> PeerLabels:
        if d.direction == OUTBOUND:
            return self._outbound_labels(
                info,
                resolver,
                cluster=d.cluster,
                upstream_ip=d.upstream_ip,
                peer_san=d.upstream_peer_san,
                local_san=d.upstream_local_san,
                route=d.route,
                authority="" if tcp else d.authority,
                tcp=tcp,
            )
        return self._inbound_labels(
            info,
            resolver,
            cluster=d.cluster,
            local_port=d.local_port,
            downstream_ip=d.downstream_ip,
            peer_san=d.downstream_peer_san,
            local_san=d.downstream_local_san,
            tcp=tcp,
        )

    def _http_series(
        self, info: ProxyInfo, d: Any, resolver: PeerResolver, stats: ProxyStats, now: float
    ) -> None:
        """The growth of one HTTP series: `d.requests` requests with the same labels. Recorded with Istio's
        labels even when a Telemetry override now applies to the proxy: the module only runs under
        Istio's default metrics, so these requests came over connections still on the listener config
        from before the override (which reaches new connections, through the gRPC access log), as
        istio-proxy's stats filter keeps its old config on draining connections."""
        flags = istio.sorted_flags(d.flags)
        if d.connect and d.direction == OUTBOUND:
            pl = self._series_labels(info, d, resolver, tcp=True)
            key = (*pl.values, "tcp", _tunnel_flags(flags, d.route), pl.security_policy)
            t = stats.tcp_series(key)
            t.opened += d.requests
            t.closed += d.requests
            t.sent += d.wire_sent
            t.received += d.wire_received
            self.service_graph.record_tcp(
                _graph_key(pl, key),
                counted=True,
                opened=d.requests,
                bytes_=d.wire_sent + d.wire_received,
                now=now,
            )
            return
        pl = self._series_labels(info, d, resolver, tcp=False)
        grpc_status = (d.grpc_status or accesslog.grpc_status_of_code(d.code)) if d.grpc else ""
        code = str(d.code)
        key = (*pl.values, "grpc" if d.grpc else "http", code, grpc_status, flags, pl.security_policy)
        s = stats.http_series(key)
        s.requests += d.requests
        s.duration.add_counts(d.duration, d.duration_sum)
        s.request_bytes.add_counts(d.request_bytes, d.request_bytes_sum)
        s.response_bytes.add_counts(d.response_bytes, d.response_bytes_sum)
        if d.grpc:
            s.grpc = True
            s.request_messages += d.request_messages
            s.response_messages += d.response_messages
        counted = pl.values[0] == istio.SOURCE or pl.peer is None or not pl.peer.has_proxy
        error = d.code >= 500 or d.code == 0 or (d.grpc and grpc_status not in ("", "0"))
        self.service_graph.record_http(
            key if pl.graph_values is None else _graph_key(pl, key),
            counted=counted,
            duration_ms=None,
            durations=samples_of_buckets(d.duration),
            requests=d.requests,
            error=error,
            code=code,
            now=now,
        )

    def _tcp_series(
        self, info: ProxyInfo, d: Any, resolver: PeerResolver, stats: ProxyStats, now: float
    ) -> None:
        """The growth of one TCP series: connections opened and closed, bytes moved (recorded as
        `_http_series` records its requests)."""
        pl = self._series_labels(info, d, resolver, tcp=True)
        key = (*pl.values, "tcp", istio.sorted_flags(d.flags), pl.security_policy)
        t = stats.tcp_series(key)
        t.opened += d.opened
        t.closed += d.closed
        t.sent += d.sent
        t.received += d.received
        counted = pl.values[0] == istio.SOURCE or pl.peer is None or not pl.peer.has_proxy
        self.service_graph.record_tcp(
            key if pl.graph_values is None else _graph_key(pl, key),
            counted=counted,
            opened=d.opened,
            bytes_=d.sent + d.received,
            now=now,
        )

    # ------------------------------------------------------------------ housekeeping

    def housekeeping(self) -> None:
        """Retire proxies gone for a while (their series fold into the merged totals), prune the graph."""
        now = self.clock()
        self._last_housekeeping = now
        snap = self.snapshot()
        pods = getattr(getattr(snap, "registry", None), "pods", None)
        for pid, info in list(self.proxies.items()):
            if info.streams > 0 or now - info.last_seen < RETIRE_AFTER_S:
                continue
            if pods is not None and (info.proxy.namespace, info.proxy.instance) in pods:
                continue
            self.metrics.retire(pid)
            del self.proxies[pid]
            self._series.forget(pid)
        self.service_graph.prune(now)

    def forget_proxy(self, proxy_id: str) -> None:
        """The proxy is gone for good (pod deleted): fold its series into the merged totals now."""
        self.metrics.retire(proxy_id)
        self.proxies.pop(proxy_id, None)
        self._series.forget(proxy_id)

    # ------------------------------------------------------------------ metrics

    def collector(self) -> IstioCollector:
        """A prometheus_client collector of the merged istio_* metrics, for the control plane's registry."""
        return IstioCollector(self.metrics, before=self._maybe_housekeeping)

    def _maybe_housekeeping(self) -> None:
        if self.clock() - self._last_housekeeping > 30.0:
            self.housekeeping()

    def metrics_text(self, proxy_id: str | None = None) -> bytes:
        """Prometheus text of the merged metrics, or of one proxy's (what its own :15090 would show)."""
        return render(self.metrics, proxy_id)

    def metrics_for_proxy(self, proxy: str) -> str | None:
        """One proxy's istio_* metrics (by id, instance or ``instance.namespace``); None if unknown."""
        info = self.find_proxy(proxy)
        if info is None:
            return None
        return render(self.metrics, info.proxy.id).decode()

    def find_proxy(self, name: str) -> ProxyInfo | None:
        if name in self.proxies:
            return self.proxies[name]
        for info in self.proxies.values():
            p = info.proxy
            if name in (p.instance, f"{p.instance}.{p.namespace}", f"{p.namespace}/{p.instance}"):
                return info
        return None

    # ------------------------------------------------------------------ access logs

    def _notify_logs(self) -> None:
        ev = self._log_event
        if ev is not None:
            self._log_event = None
            ev.set()

    def _wait_event(self) -> asyncio.Event:
        if self._log_event is None:
            self._log_event = asyncio.Event()
        return self._log_event

    def workload_proxies(
        self, workload: str, namespace: str = "default", instance: str | None = None
    ) -> list[ProxyInfo]:
        out = []
        for info in self.proxies.values():
            p = info.proxy
            if p.namespace != namespace:
                continue
            if instance is not None:
                if p.instance == instance and workload in (p.workload, p.instance, ""):
                    out.append(info)
                continue
            if workload in (p.workload, p.instance, p.id):
                out.append(info)
        return out

    def log_format(self) -> tuple[str, str]:
        """(encoding, format) from MeshConfig accessLogEncoding / accessLogFormat."""
        snap = self.snapshot()
        mesh = getattr(snap, "mesh", None)
        if mesh is None:
            return "TEXT", ""
        return (mesh.access_log_encoding or "TEXT").upper(), mesh.access_log_format or ""

    def log_lines(
        self,
        proxies: Iterable[ProxyInfo],
        *,
        after_seq: int = 0,
        tail: int | None = None,
        encoding: str | None = None,
    ) -> list[LogLine]:
        """Entries of the given proxies with seq > after_seq, oldest first, rendered as access-log lines."""
        enc, fmt = self.log_format()
        if encoding is not None and encoding.upper() != enc:
            enc, fmt = encoding.upper(), ""
        picked: list[tuple[int, float, bool, bytes | tuple[bytes, int], ProxyInfo]] = []
        for info in proxies:
            for seq, t, http, data in list(info.logs):
                if seq > after_seq:
                    picked.append((seq, t, http, data, info))
        picked.sort(key=lambda x: x[0])
        if tail is not None:
            picked = picked[-tail:] if tail > 0 else []
        out = []
        batches: dict[int, Any] = {}  # id(wire bytes) -> the batch, parsed once for all its entries
        for seq, t, http, data, info in picked:
            if isinstance(data, tuple):
                raw, i = data
                batch = batches.get(id(raw))
                if batch is None:
                    batch = batches[id(raw)] = als_pb2.StreamAccessLogsMessage.FromString(raw)
                entry = (batch.http_logs if http else batch.tcp_logs).log_entry[i]
            else:
                entry = al.HTTPAccessLogEntry() if http else al.TCPAccessLogEntry()
                entry.ParseFromString(data)
            text = accesslog.format_entry(entry, http, enc, fmt)
            out.append(LogLine(seq, info.proxy.id, info.proxy.instance, info.proxy.namespace, t, text))
        return out

    async def follow_logs(
        self,
        workload: str,
        namespace: str = "default",
        *,
        instance: str | None = None,
        tail: int | None = 100,
        encoding: str | None = None,
        poll_s: float = 1.0,
    ) -> AsyncIterator[LogLine]:
        """The last `tail` lines, then new ones as they arrive (forever; cancel to stop). Instances that
        appear later (a restart, a scale-up) are followed too."""
        lines = self.log_lines(
            self.workload_proxies(workload, namespace, instance), tail=tail, encoding=encoding
        )
        last = lines[-1].seq if lines else self.current_seq()
        for line in lines:
            yield line
        while True:
            ev = self._wait_event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), poll_s)
            lines = self.log_lines(
                self.workload_proxies(workload, namespace, instance), after_seq=last, encoding=encoding
            )
            for line in lines:
                last = line.seq
                yield line

    def current_seq(self) -> int:
        last = 0
        for info in self.proxies.values():
            if info.logs:
                last = max(last, info.logs[-1][0])
        return last

    # ------------------------------------------------------------------ traces and graph

    def traces(self, service: str | None = None, limit: int = 20, **kw: Any) -> list[dict[str, Any]]:
        return self.spans.traces(service, limit, **kw)

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        return self.spans.trace(trace_id)

    def graph(self, window_seconds: float = 60.0) -> dict[str, Any]:
        return self.service_graph.graph(window_seconds)

    # ------------------------------------------------------------------ integration

    def grpc_handlers(self) -> list[Any]:
        """Generic gRPC handlers (the Access Log Service) for `grpc.aio.Server.add_generic_rpc_handlers`."""
        from isthmus.telemetry.als import access_log_handler

        return [access_log_handler(self)]

    async def start_receiver(self, host: str, port: int) -> int:
        """Take the in-proxy metrics modules' reports on UDP host:port; returns the port bound."""
        from isthmus.telemetry.receiver import start_receiver

        self._receiver = await start_receiver(self, host, port)
        return self._receiver.get_extra_info("sockname")[1]

    def stop_receiver(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None

    def add_routes(self, app: Any) -> None:
        """Mount /api/logs, /api/traces, /api/graph, /api/v2/* (Zipkin) on an aiohttp app (before start)."""
        from isthmus.telemetry.api import add_routes

        add_routes(app, self)

    def status(self) -> dict[str, Any]:
        return {
            "proxies": len(self.proxies),
            "streams": sum(i.streams for i in self.proxies.values()),
            "messages": self.messages_total,
            "entries": self.entries_total,
            "errors": self.errors_total,
            "traces": len(self.spans),
            "spans": self.spans.received,
            "moduleReports": self.reports_total,
            "moduleReportsUnknownProxy": self.reports_unknown_proxy,
            "moduleReportsRefused": self.reports_refused,
            "moduleSeriesDropped": dict(self.series_dropped),
        }


_TUNNEL_TEARDOWN = frozenset({"DC", "DR"})


def _tunnel_flags(flags: str, route: str) -> str:
    """A CONNECT tunnel's flags as a TCP connection's: the client closing its tunnel is how every tunnel
    ends (Envoy flags the stream DC/DR), while tcp_proxy flags no normal close; a tunnel refused by
    REGISTRY_ONLY is Istio's tcp_proxy to the endpoint-less BlackHoleCluster, flagged UH."""
    if route == "connect-block_all":
        return "UH"
    if flags == "-":
        return flags
    return ",".join(f for f in flags.split(",") if f not in _TUNNEL_TEARDOWN) or "-"


def _graph_key(pl: PeerLabels, key: tuple[str, ...]) -> tuple[str, ...]:
    """The service graph's key: the metric key, with the peer the registry knows where istio-proxy knew
    none (a client without a sidecar, a passthrough destination)."""
    if pl.graph_values is None:
        return key
    return (*pl.graph_values, *key[len(pl.graph_values) :])


def _tag_value(value: policy.TagValue, entry: Any, http: bool) -> str:
    """A Telemetry tagOverrides UPSERT value for one access-log entry ("unknown" when not available)."""
    if value.kind == "literal":
        return value.arg
    if value.kind == "header":
        out = accesslog.operator_value("REQ", value.arg, entry, http) if http else None
        return str(out) if out is not None else istio.UNKNOWN
    a = value.arg
    if a == "request.method":
        op, arg = "REQ", ":method"
    elif a == "request.host":
        op, arg = "REQ", ":authority"
    elif a in ("request.path", "request.url_path"):
        op, arg = "REQ", ":path"
    elif a == "request.scheme":
        op, arg = "REQ", ":scheme"
    elif a == "request.id":
        op, arg = "REQ", "x-request-id"
    elif a == "request.useragent":
        op, arg = "REQ", "user-agent"
    elif a == "request.protocol":
        op, arg = "PROTOCOL", None
    elif a == "response.code":
        op, arg = "RESPONSE_CODE", None
    elif a == "response.grpc_status":
        op, arg = "GRPC_STATUS", None
    elif a == "upstream.address":
        op, arg = "UPSTREAM_HOST", None
    elif a == "source.address":
        op, arg = "DOWNSTREAM_REMOTE_ADDRESS", None
    elif a == "destination.address":
        op, arg = "DOWNSTREAM_LOCAL_ADDRESS", None
    else:
        return istio.UNKNOWN
    if op == "REQ" and not http:
        return istio.UNKNOWN
    out = accesslog.operator_value(op, arg, entry, http)
    if out is None:
        return istio.UNKNOWN
    text = str(out)
    if a == "request.url_path":
        text = text.split("?", 1)[0]
    return text


def _record(
    stats: ProxyStats,
    mp: policy.MetricsPolicy,
    names: tuple[str, ...],
    key: tuple[str, ...],
    entry: Any,
    http: bool,
    values: list[tuple[str, Any]],
) -> None:
    """Record metric values under a Telemetry metrics policy: disabled metrics are skipped, tag overrides
    remove or upsert labels (the series then has its own label set)."""
    if not mp.enabled:
        return
    base = tuple(zip(names, key, strict=True))
    for metric, value in values:
        o = mp.overrides.get(metric)
        pairs = base
        if o is not None:
            if o.disabled:
                continue
            if o.tags:
                labels = dict(base)
                for tag, tv in o.tags:
                    if tv is None:
                        labels.pop(tag, None)
                    else:
                        labels[tag] = _tag_value(tv, entry, http)
                pairs = tuple(labels.items())
        series = stats.extra_series((metric, pairs))
        if isinstance(series, Hist):
            series.observe(value)
        else:
            series.value += value


def _record_tcp(
    stats: ProxyStats,
    mp: policy.MetricsPolicy,
    key: tuple[str, ...],
    entry: Any,
    http: bool,
    opened: int,
    closed: int,
    sent: int,
    received: int,
) -> None:
    values = [(istio.TCP_SENT, sent), (istio.TCP_RECEIVED, received)]
    if opened:
        values.append((istio.TCP_OPENED, opened))
    if closed:
        values.append((istio.TCP_CLOSED, closed))
    _record(stats, mp, istio.TCP_LABELS, key, entry, http, values)


def direction_of(log_name: str) -> str | None:
    return DIRECTION_OF_LOG_NAME.get(log_name) or DIRECTION_OF_LOG_ONLY_NAME.get(log_name)


def feeds_metrics(log_name: str) -> bool:
    """Whether a log stream's entries are its proxy's metrics (not when its module keeps them)."""
    return log_name in DIRECTION_OF_LOG_NAME


__all__ = [
    "INBOUND",
    "OUTBOUND",
    "InvalidNode",
    "LogLine",
    "ProxyInfo",
    "Telemetry",
    "direction_of",
    "feeds_metrics",
]
