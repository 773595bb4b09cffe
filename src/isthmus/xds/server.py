"""The xDS server: Aggregated Discovery Service, state of the world and delta (incremental), on grpc.aio.

Serves `envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources` (SotW) and
`DeltaAggregatedResources` (delta, what Envoy uses with `ads_config.api_type: DELTA_GRPC`, istiod's
default since 1.22). Both run the same per-type state machine; a delta stream differs only on the wire
(see "Delta" below). Config comes from `update(snapshot, PushRequest)`; resources come from
a `Generator` plug-in; the server owns the protocol: subscriptions, ACK/NACK, nonces, versions,
debounce, push fan-out, status and metrics.

Protocol handling (see Envoy's "xDS REST and gRPC protocol"):
- The first request of a stream must carry the Node; `proxy_from_node(node)` turns it into a `Proxy`
  (an error ends the stream with INVALID_ARGUMENT).
- Subscriptions per type URL, any type: a type is a *wildcard* subscription when its first request names
  ``*``, or names no resource and is not one of EDS, RDS, SDS, ECDS (`typeurls.NAMED_ONLY`: for those,
  naming nothing subscribes to nothing and is not answered, as istiod's shouldUnsubscribe); otherwise
  the request's names are the watched set. Every request replaces the watched set; names newly watched
  are answered at once, names dropped are forgotten (so watching them again sends them again). The
  first request of a type is always answered (unless it subscribes to nothing), with an empty response
  if there is nothing to send.
- A new CDS subscription on a stream whose EDS was already answered (Envoy reconnecting asks EDS first)
  sends the watched EDS again: clusters rebuilt by the CDS answer wait for endpoints Envoy does not ask
  for again (envoy#13009; istiod's AlwaysRespond / forceEDSPush).
- Nonces come from a process-wide counter and are unique within a stream; proxies that get the same
  content at the same version share one encoded response and its nonce (a push to 1,000 proxies of a
  scope encodes once). ACKs repeating a long name list are decoded by `requests.RequestDecoder` without
  parsing the names again. A request whose `response_nonce` is the last
  nonce sent for its type ACKs that response, or NACKs it when `error_detail` is set; a request with an
  older nonce is *stale*: it does not ACK/NACK anything, but its subscription change is still applied
  (the server may have several responses in flight, so it does not drop those).
- NACK: recorded (version, nonce, message, time), logged, counted; the proxy keeps its last good config
  and the server keeps going. The rejected content is remembered as sent, so it is not sent again until
  the generator produces something different (no resend loop).
- Versions: ``<snapshot.version>-<16 hex digits>``, the digest covering every resource the proxy holds
  for that type. A push whose content is unchanged for a (proxy, type) is skipped. For wildcard types the
  whole set is sent (SotW); for named types only the resources that changed (SotW allows partial
  responses for non-wildcard types).
- Push order CDS, EDS, LDS, RDS, then other types (istiod's, make-before-break). After a CDS response
  that changed clusters, the EDS resources of those clusters (same name) are sent again even if
  unchanged: Envoy waits for a ClusterLoadAssignment after every cluster update before the new cluster
  leaves warming.

Delta: requests name subscription changes only (`resource_names_subscribe`/`_unsubscribe`;
`requests.DeltaRequestDecoder` keeps the subscribed set, so the state machine sees the same watched
sets as with SotW); a type's first request subscribing to nothing, or to ``*``, is a wildcard. An ACK or
NACK is a request carrying the response's nonce; a request without a nonce only changes the
subscription (it does not restart the type, unlike SotW). Responses carry only the resources the proxy
does not hold at their current content, each with `version` = the 16-hex-digit digest the server
keeps for it, and `removed_resources` for the names it holds that are gone (wildcard types, and named
ones the generator no longer returns); `system_version_info` is the SotW version. A reconnecting
proxy's `initial_resource_versions` count as sent, so what it holds unchanged is not sent again. The
first response of a type is sent even when empty. With 1,000 services an EDS ACK is ~100 bytes instead
of ~60 KB, and a new service sends one cluster instead of all of them.

Pushes: `update()` may be called from any thread. Updates are debounced (`debounce_after` quiet,
`debounce_max` at most) and merged (any full -> full; EDS cluster sets united); the push goes to every
connection, whose own task builds and writes the responses (full pushes under a semaphore of
`push_concurrency`).
A full push re-evaluates every subscribed type; an EDS-only push evaluates EDS for the named clusters
the proxy watches and nothing else. Requests (ACKs, new subscriptions) are served between types.

Status: `status()` lists connected proxies; per type the sent/ACKed versions and nonces, the last NACK,
the watched count and the sync state (SYNCED / STALE / NOT SENT). A type is *current at* snapshot
version V when the server built the proxy's config for V (sent or found unchanged) and the proxy ACKed
the response carrying it; a proxy's `config_version` is the oldest such version over its subscribed
types. `wait_synced(version)` waits until every (given) connected proxy's `config_version` >= version.

Generator contract (what `xds.gen` must know):
- `generate(snapshot, proxy, type_url, watched) -> Mapping[name, Any]` with packed `Any` messages;
  `watched` is None for wildcard subscriptions (return everything), else the names to build (names not
  in `watched` are dropped). Called on the event loop: keep it fast, cache by scope.
- Returned Any messages and mappings are treated as immutable: the server caches their encoding by object
  identity (for two snapshots), so returning the same objects to proxies of one scope makes a push to N
  proxies cost one serialization. Do not mutate them after returning them.
- Return a ClusterLoadAssignment (possibly with no endpoints) for every requested EDS name that is one of
  the proxy's clusters; name EDS resources after their cluster (as istiod does). Leave out names that
  are no cluster: the server answers those itself, with an empty assignment for SotW (else Envoy waits
  `initial_fetch_timeout`, 15 s) and in `removed_resources` for delta (as istiod does when a service
  goes away).
- To fail one proxy: raise. The server logs it, counts `pilot_total_xds_internal_errors_total{type}`,
  sends nothing of that type to that proxy (it keeps its last good config), and retries that type on
  the next push of any kind. Other proxies and types are unaffected. To drop just one resource, leave it
  out of the mapping (the generator's own error handling).

Metrics (prometheus-client, on the registry given; see `isthmus.xds.metrics` for the table):
`pilot_xds`, `pilot_inbound_updates_total{type}`, `pilot_push_triggers_total{type}`,
`pilot_debounce_time_seconds`, `pilot_proxy_queue_time_seconds`, `pilot_xds_pushes_total{type}`,
`pilot_xds_push_time_seconds{type}`, `pilot_xds_send_time_seconds`, `pilot_xds_send_bytes_total{type}`,
`pilot_xds_config_size_bytes{type}`, `pilot_proxy_convergence_time_seconds`,
`pilot_total_xds_rejects_total{type}`, `pilot_xds_expired_nonce_total{type}`,
`pilot_total_xds_internal_errors_total{type}`, `pilot_xds_write_timeout_total`,
`pilot_xds_skipped_pushes_total{type}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry

from isthmus.model.proxy import Proxy
from isthmus.xds import typeurls
from isthmus.xds.cache import (
    EncodeCache,
    Encoded,
    ResourceSet,
    ResponseEncoder,
    delta_resource,
    parse_resource_version,
)
from isthmus.xds.metrics import XdsMetrics
from isthmus.xds.push_queue import Debouncer, Push, PushRequest
from isthmus.xds.requests import DeltaRequestDecoder, Names, RequestDecoder, SubscriptionSets
from isthmus.xds.status import NOT_SENT, STALE, SYNCED, ProxyStatus, version_at_least, version_key

__all__ = ["Generator", "ProxyStatus", "PushRequest", "Subscriptions", "XdsServer"]

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
READ_HOLD_MAX = 1.0  # seconds an endpoint push may hold back reading ACKs (see XdsServer._gate)
_MASK = (1 << 64) - 1
_UNBOUNDED = contextlib.nullcontext()
_Request = discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest


def grpc_server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """The gRPC server's channel options (bench/grpc_floor.py measures the transport with the same)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


class Generator(Protocol):
    def generate(
        self, snapshot: Any, proxy: Proxy, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]: ...


def _is_eds_cluster(resource: Any) -> bool:
    if resource is None:
        return False
    from envoy.config.cluster.v3 import cluster_pb2

    c = cluster_pb2.Cluster()
    return resource.Unpack(c) and c.type == cluster_pb2.Cluster.EDS


@dataclasses.dataclass(frozen=True)
class Subscriptions:
    """A connected proxy's subscriptions (see `XdsServer.subscriptions`). `types`: type URL ->
    (wildcard, watched names); `sent_versions`: type URL -> the version of the last response (None: not
    sent yet)."""

    proxy: Proxy
    snapshot: Any
    types: dict[str, tuple[bool, frozenset[str]]]
    sent_versions: dict[str, str | None]


class _StreamClosed(Exception):
    pass


class _Diff(NamedTuple):
    """A wildcard type's change from `prev` (digests a proxy holds) to `rs`: names whose content changed,
    the new EDS clusters among them, and for delta the entries to send and the names removed."""

    prev: dict[str, int]
    rs: ResourceSet
    changed: frozenset[str]
    new_eds: frozenset[str]
    parts: list[tuple[str, Encoded, int]]
    removed: list[str]


class _TypeState:
    """One subscribed type on one stream."""

    __slots__ = (
        "acked_nonce",
        "acked_version",
        "checked",
        "combined",
        "dirty",
        "floor",
        "label",
        "last_nack",
        "push_start",
        "requested",
        "sent",
        "sent_nonce",
        "sent_shared",
        "sent_version",
        "short",
        "type_url",
        "watched",
        "wildcard",
    )

    def __init__(self, type_url: str, names: frozenset[str]) -> None:
        self.type_url = type_url
        self.short = typeurls.short_name(type_url)
        self.label = typeurls.metric_label(type_url)
        self.wildcard = _is_wildcard(type_url, names)
        self.watched: frozenset[str] = _without_star(names)
        # The resource names of the last request, as listed and as a set: ACKs repeat them (1,000+ EDS
        # names per ACK in a large mesh), so an unchanged list is recognized without building a set.
        self.requested: tuple[list[str], frozenset[str]] | None = None
        # name -> entry digest of what the proxy was sent (ACKed or not). Shared with the cache's
        # ResourceSet for wildcard types (then replaced, never mutated).
        self.sent: dict[str, int] = {}
        self.sent_shared = False
        self.combined = 0
        self.sent_version: str | None = None
        self.sent_nonce: str | None = None
        self.acked_version: str | None = None
        self.acked_nonce: str | None = None
        self.last_nack: dict[str, Any] | None = None
        self.push_start: float | None = None  # first update of the push the last response belongs to
        self.checked: str | None = None  # snapshot version the content was last built/verified for
        self.floor: str | None = None  # `checked` of the last ACKed content, while a newer one is in flight
        self.dirty = False  # the generator failed: rebuild on the next push of any kind

    def reset(self) -> None:
        self.sent = {}
        self.sent_shared = False
        self.combined = 0

    def unknown(self, names: Iterable[str]) -> None:
        """Count `names` as held at no known version: the next pass sends them, or names them removed."""
        if self.sent_shared:
            self.sent = dict(self.sent)
            self.sent_shared = False
        for name in names:
            self.combined = (self.combined - self.sent.get(name, 0)) & _MASK
            self.sent[name] = 0

    def holds(self, versions: Mapping[str, str]) -> None:
        """A reconnecting delta client's `initial_resource_versions`: what it holds counts as sent (a
        version that is not one of ours matches nothing, so that resource is sent again)."""
        for name, v in versions.items():
            d = parse_resource_version(v)
            self.sent[name] = d
            self.combined = (self.combined + d) & _MASK

    def forget(self, names: Iterable[str]) -> None:
        if self.sent_shared:
            self.sent = dict(self.sent)
            self.sent_shared = False
        for name in names:
            d = self.sent.pop(name, None)
            if d is not None:
                self.combined = (self.combined - d) & _MASK

    def synced_version(self) -> str | None:
        if not self.wildcard and not self.watched:
            return self.checked  # asks for nothing: current whenever the server looked
        if self.sent_nonce is None:
            return None
        if self.acked_nonce == self.sent_nonce:
            return self.checked
        return self.floor

    def sync_state(self) -> str:
        if self.sent_nonce is None:
            return NOT_SENT
        return SYNCED if self.acked_nonce == self.sent_nonce else STALE


def _is_wildcard(type_url: str, names: frozenset[str]) -> bool:
    """Whether a type's first request (or a SotW restart) subscribes to everything: it names ``*``, or
    names nothing for a type that has wildcard subscriptions (CDS, LDS, others but `typeurls.NAMED_ONLY`).
    An EDS/RDS/SDS/ECDS request naming nothing asks for nothing (istiod's shouldUnsubscribe)."""
    return "*" in names or (not names and type_url not in typeurls.NAMED_ONLY)


def _without_star(names: frozenset[str]) -> frozenset[str]:
    """`names` minus the wildcard name; the same object when there is none (no copy on every ACK)."""
    return names - {"*"} if "*" in names else names


class _Connection:
    __slots__ = (
        "closed",
        "connected_at",
        "context",
        "decoder",
        "delta",
        "gated",
        "id",
        "inbox",
        "new_eds_clusters",
        "peer",
        "pending",
        "proxy",
        "reads",
        "snapshot",
        "types",
        "wake",
    )

    def __init__(
        self,
        cid: str,
        proxy: Proxy,
        peer: str,
        context: Any,
        snapshot: Any,
        decoder: RequestDecoder | DeltaRequestDecoder,
    ) -> None:
        self.id = cid
        self.proxy = proxy
        self.peer = peer
        self.context = context
        self.connected_at = time.time()
        self.types: dict[str, _TypeState] = {}
        self.inbox: deque[tuple[_Request, Names]] = deque()
        self.decoder = decoder  # the one that decoded the stream's first request
        self.delta = isinstance(decoder, DeltaRequestDecoder)  # incremental xDS: send only what changed
        self.pending: Push | None = None
        self.wake = asyncio.Event()
        self.closed = False
        self.snapshot = snapshot  # the snapshot this connection's config was last built from
        self.new_eds_clusters: frozenset[str] = frozenset()  # set by the last CDS send
        self.gated = False  # has an endpoint push still to write (counted in XdsServer._gate)
        self.reads = asyncio.Event()  # cleared while its requests are held back (XdsServer._held)
        self.reads.set()

    def enqueue(self, push: Push) -> None:
        self.pending = push if self.pending is None else self.pending.merge(push)
        self.wake.set()


class XdsServer:
    def __init__(
        self,
        generator: Generator,
        proxy_from_node: Callable[[Any], Proxy] = Proxy.from_envoy_node,
        registry: CollectorRegistry | None = None,
        debounce_after: float = 0.1,
        debounce_max: float = 1.0,
        push_concurrency: int = 100,
        *,
        send_timeout: float = 30.0,
        required_types: Iterable[str] = (typeurls.CLUSTER, typeurls.LISTENER),
        control_plane_id: str = "isthmus",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        extra_handlers: Iterable[grpc.GenericRpcHandler] = (),
    ) -> None:
        self._generator = generator
        self._proxy_from_node = proxy_from_node
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = XdsMetrics(self.registry)
        self._push_concurrency = max(1, push_concurrency)
        self._send_timeout = send_timeout
        self._required_types = frozenset(required_types)
        self._max_message_bytes = max_message_bytes
        # Other gRPC services sharing the port (the telemetry access-log service).
        self._extra_handlers = tuple(extra_handlers)
        self._cache = EncodeCache()
        # Whole responses shared by proxies that get the same content at the same version (a scope's
        # route table, one changed cluster's endpoints): encoded once, written to each with one nonce.
        # (content ids, version, type, delta shape: names and removals) -> (content objects, nonce, bytes);
        # emptied with the cache.
        # Wildcard diffs shared by the proxies of a scope (see `_wildcard_diff`); emptied with the cache.
        self._diffs: dict[tuple[int, int, bool], _Diff] = {}
        self._empty_assignments: dict[str, Any] = {}  # SotW answers for unknown EDS names, by name
        self._subscription_sets = SubscriptionSets()  # streams' subscribed names, shared
        self._responses: dict[
            tuple[tuple[int, ...], str, str, tuple[Any, ...]], tuple[tuple[Any, ...], str, bytes]
        ] = {}
        self._encoder = ResponseEncoder(control_plane_id)
        self._debouncer = Debouncer(
            self._dispatch, debounce_after, debounce_max, on_debounced=self._on_debounced
        )
        self._nonces = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._conns: dict[str, _Connection] = {}
        self._by_proxy: dict[str, list[_Connection]] = {}  # proxy id -> its streams, newest last
        self._snapshot: Any = None  # latest given to update()
        self._pushed: Any = None  # latest dispatched to the connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._debounce_task: asyncio.Task[None] | None = None
        self._sem: asyncio.Semaphore | None = None
        self._changed = asyncio.Event()
        self._port: int | None = None
        # Endpoint pushes write before they read. While connections still have an endpoint-only push to
        # write (`_gate` counts them), a connection that has written its own does not read its requests
        # (its ACK waits, buffered in gRPC): reading 1,000 ACKs of ~60 KB each would otherwise come
        # between the writes, and the last proxy would get its endpoints after all of them. Held
        # connections (`_held`) read again once the gate is 0, or READ_HOLD_MAX after it closed; a
        # connection that needs its requests (a full push, waiting for a subscription) is never held.
        self._gate = 0
        self._held: set[_Connection] = set()
        self._hold_timer: asyncio.TimerHandle | None = None

    def proxy(self, proxy_id: str) -> Proxy | None:
        """The connected proxy of that node id (its newest stream), if any."""
        streams = self._by_proxy.get(proxy_id)
        return streams[-1].proxy if streams else None

    def subscriptions(self, proxy_id: str) -> Subscriptions | None:
        """What the newest stream of that proxy was last configured from, None if it is not connected:
        the proxy as it connected (delta or not), the snapshot of its last push, and per subscribed type
        whether it is a wildcard and the names it watches. The generator is a pure function of these,
        so they rebuild what was sent (istiod's debug config dump builds from the proxy's last push
        context and its watched routes alike)."""
        streams = self._by_proxy.get(proxy_id)
        if not streams:
            return None
        conn = streams[-1]
        return Subscriptions(
            proxy=conn.proxy,
            snapshot=conn.snapshot,
            types={t: (st.wildcard, st.watched) for t, st in conn.types.items()},
            sent_versions={t: st.sent_version for t, st in conn.types.items()},
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, credentials: grpc.ServerCredentials | None = None) -> int:
        """Listen on host:port (0: any free port); returns the port bound."""
        if self._server is not None:
            raise RuntimeError("XdsServer already started")
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self._push_concurrency)
        server = grpc.aio.server(options=grpc_server_options(self._max_message_bytes))
        handler = grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._stream,
                    request_deserializer=None,  # raw bytes: see `RequestDecoder`
                    response_serializer=None,  # responses are written pre-encoded (bytes)
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._delta_stream, request_deserializer=None, response_serializer=None
                ),
            },
        )
        server.add_generic_rpc_handlers((handler, *self._extra_handlers))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
        if not bound:
            raise OSError(f"xDS server could not listen on {address}")
        await server.start()
        self._server = server
        self._port = bound
        self._debounce_task = asyncio.create_task(self._debouncer.run(), name="xds-debounce")
        log.info("xDS server listening on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float | None = None) -> None:
        if self._debounce_task is not None:
            self._debounce_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._debounce_task
            self._debounce_task = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def snapshot(self) -> Any:
        """The latest snapshot given to `update()`."""
        return self._snapshot

    @property
    def pushed_snapshot(self) -> Any:
        """The latest snapshot whose push has been dispatched to the connections."""
        return self._pushed

    # ------------------------------------------------------------------ updates and pushes

    def update(self, snapshot: Any, request: PushRequest) -> None:
        """Set the current snapshot and schedule a (debounced) push. Callable from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._update, snapshot, request)
                return
        self._update(snapshot, request)

    def _update(self, snapshot: Any, request: PushRequest) -> None:
        self._snapshot = snapshot
        self.metrics.inbound_updates.labels("full" if request.full else "eds").inc()
        self._debouncer.add(snapshot, request)

    def flush(self) -> None:
        """Dispatch the pending (debounced) push now. Must be called on the server's loop."""
        self._debouncer.flush()

    def _on_debounced(self, waited: float, updates: int) -> None:
        self.metrics.debounce_time.observe(waited)

    def _dispatch(self, push: Push) -> None:
        if push.snapshot is not self._pushed:
            self._cache.rotate()
            self._responses.clear()
            self._diffs.clear()
            if len(self._empty_assignments) > 10_000:
                self._empty_assignments.clear()
        self._pushed = push.snapshot
        req = push.request
        self.metrics.push_triggers.labels("full" if req.full else "eds").inc()
        log.debug(
            "push v%s full=%s eds=%d reason=%s to %d proxies (%d updates)",
            getattr(push.snapshot, "version", "?"),
            req.full,
            len(req.eds_only_clusters),
            req.reason,
            len(self._conns),
            push.updates,
        )
        if not req.full and self._conns:
            for conn in self._conns.values():
                if not conn.gated:
                    conn.gated = True
                    self._gate += 1
            if self._hold_timer is None:
                self._hold_timer = asyncio.get_running_loop().call_later(READ_HOLD_MAX, self._open_gate)
        for conn in self._conns.values():
            conn.enqueue(push)

    # ------------------------------------------------------------------ streams

    async def _stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self._run_stream(context, RequestDecoder(self._subscription_sets))

    async def _delta_stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self._run_stream(context, DeltaRequestDecoder(self._subscription_sets))

    async def _run_stream(
        self, context: grpc.aio.ServicerContext, decoder: RequestDecoder | DeltaRequestDecoder
    ) -> None:
        data = await context.read()
        if data is grpc.aio.EOF:
            return
        try:
            first = decoder.decode(data)
        except DecodeError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed DiscoveryRequest: {e}")
        if not first[0].HasField("node") or not first[0].node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry the node")
        try:
            proxy = self._proxy_from_node(first[0].node)
        except Exception as e:
            node_id = first[0].node.id
            log.warning("refusing xDS stream from %s (node %r): %s", context.peer(), node_id, e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid node {node_id!r}: {e}")
        if isinstance(decoder, DeltaRequestDecoder):
            proxy = dataclasses.replace(proxy, delta_xds=True)
        conn = _Connection(
            f"{proxy.id}-{next(self._conn_ids)}", proxy, context.peer(), context, self._pushed, decoder
        )
        self._register(conn)
        reader = asyncio.create_task(self._read_loop(conn), name=f"xds-read-{conn.id}")
        conn.inbox.append(first)
        try:
            await self._serve(conn)
        except _StreamClosed:
            pass
        except asyncio.CancelledError:
            # gRPC cancels the handler when the client goes away or the server stops; the RPC is over
            # either way. Returning (rather than re-raising) keeps grpc from printing a traceback per
            # stream; the task ends right here.
            log.debug("xDS stream %s cancelled", conn.id)
        except Exception as e:
            if not conn.closed:
                log.warning("xDS stream %s failed: %r", conn.id, e)
        finally:
            reader.cancel()
            self._unregister(conn)

    async def _read_loop(self, conn: _Connection) -> None:
        try:
            while True:
                if not conn.reads.is_set():
                    await conn.reads.wait()
                data = await conn.context.read()
                if data is grpc.aio.EOF:
                    break
                conn.inbox.append(conn.decoder.decode(data))
                conn.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("xDS stream %s read ended: %r", conn.id, e)
        finally:
            conn.closed = True
            conn.wake.set()

    def _register(self, conn: _Connection) -> None:
        self._conns[conn.id] = conn
        self._by_proxy.setdefault(conn.proxy.id, []).append(conn)
        self.metrics.connected.set(len(self._conns))
        log.info("proxy %s connected from %s (%s)", conn.proxy.id, conn.peer, conn.id)
        self._notify()

    def _ungate(self, conn: _Connection, hold: bool) -> None:
        """`conn` has no endpoint push left to write; `hold`: keep its requests until the others have."""
        if conn.gated:
            conn.gated = False
            self._gate -= 1
            if self._gate > 0 and hold:
                conn.reads.clear()
                self._held.add(conn)
            elif self._gate <= 0:
                self._open_gate()

    def _release(self, conn: _Connection) -> None:
        conn.reads.set()
        self._held.discard(conn)

    def _open_gate(self) -> None:
        """Everyone reads again (all written, or READ_HOLD_MAX passed: a slow writer holds nobody back)."""
        for conn in self._held:
            conn.reads.set()
        self._held.clear()
        if self._gate > 0:
            for conn in self._conns.values():
                conn.gated = False
        self._gate = 0
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _unregister(self, conn: _Connection) -> None:
        self._ungate(conn, hold=False)
        self._release(conn)
        conn.closed = True
        if self._conns.pop(conn.id, None) is None:
            return
        streams = self._by_proxy.get(conn.proxy.id, [])
        if conn in streams:
            streams.remove(conn)
        if not streams:
            self._by_proxy.pop(conn.proxy.id, None)
        self.metrics.connected.set(len(self._conns))
        log.info("proxy %s disconnected (%s)", conn.proxy.id, conn.id)
        self._notify()

    async def _serve(self, conn: _Connection) -> None:
        """The connection's task: handles its requests and its pushes, in order; the only writer."""
        while True:
            while conn.inbox:
                await self._handle_request(conn, *conn.inbox.popleft())
            if conn.closed:
                return
            if conn.pending is not None:
                push, conn.pending = conn.pending, None
                if push.request.full:
                    # A full push may wait for requests (Envoy subscribing to new clusters): never hold.
                    self._ungate(conn, hold=False)
                    self._release(conn)
                await self._process_push(conn, push)
                if conn.pending is None:
                    self._ungate(conn, hold=True)
                continue
            conn.wake.clear()
            await conn.wake.wait()

    async def _handle_request(self, conn: _Connection, req: _Request, requested: Names) -> None:
        type_url = req.type_url
        if not type_url:
            log.debug("request without type_url from %s ignored", conn.id)
            return
        listed, names = requested
        nonce = req.response_nonce
        st = conn.types.get(type_url)
        if (
            st is not None
            and st.requested is not None
            and (st.requested[0] is listed or st.requested[0] == listed)
        ):
            names = st.requested[1]  # the decoder parsed the list anew: keep the set the state holds
        elif st is not None:
            st.requested = requested
        if st is None or (not nonce and not conn.delta):
            # A new subscription (or the client starting over on this type): answer it in full.
            if st is None:
                st = conn.types[type_url] = _TypeState(type_url, names)
                if conn.delta:
                    assert isinstance(conn.decoder, DeltaRequestDecoder)
                    st.holds(conn.decoder.take_initial(type_url))
            else:
                st.wildcard = _is_wildcard(type_url, names)
                st.watched = _without_star(names)
                st.reset()
            st.requested = (listed, names)
            self._notify()
            if conn.snapshot is not None:
                await self._send_type(conn, st, conn.snapshot, None, frozenset(), None, initial=True)
                if type_url == typeurls.CLUSTER:
                    await self._rewarm_endpoints(conn)
            return

        if not nonce:
            pass  # delta: a subscription change alone (Envoy sends those without a nonce)
        elif nonce != st.sent_nonce:
            self.metrics.expired_nonce.labels(st.label).inc()
            log.debug("stale nonce %s for %s from %s (latest %s)", nonce, st.short, conn.id, st.sent_nonce)
        elif req.HasField("error_detail"):
            self._on_nack(conn, st, req)
        elif st.acked_nonce != nonce:
            st.acked_nonce = nonce
            st.acked_version = st.sent_version
            if st.push_start is not None:
                self.metrics.convergence.observe(time.monotonic() - st.push_start)
                st.push_start = None
            self._notify()

        # Subscription changes, from any request (stale ones included).
        if isinstance(req, discovery_pb2.DeltaDiscoveryRequest):
            await self._delta_subscription(conn, st, req, names)
            return
        wildcard = "*" in names or (st.wildcard and not names)
        watched = _without_star(names)
        if watched is st.watched and wildcard == st.wildcard:
            return  # the usual ACK: same names as before
        if wildcard != st.wildcard:
            st.wildcard, st.watched = wildcard, watched
            st.reset()
            self._notify()
            if conn.snapshot is not None and st.sent_nonce is not None:
                await self._send_type(conn, st, conn.snapshot, None, frozenset(), None, initial=True)
        elif not wildcard and watched != st.watched:
            added = watched - st.watched
            st.forget(st.watched - watched)
            st.watched = watched
            self._notify()
            if added and conn.snapshot is not None and st.sent_nonce is not None:
                await self._send_type(conn, st, conn.snapshot, added, frozenset(), None, initial=False)

    async def _rewarm_endpoints(self, conn: _Connection) -> None:
        """A new CDS subscription on a stream whose EDS was already answered (Envoy reconnecting sends EDS
        before CDS): the clusters it receives may be rebuilt and then wait, warming, for endpoints that
        Envoy will not ask for again (envoy#13009). Send the watched endpoints again, as istiod does
        (AlwaysRespond for SotW, forceEDSPush for delta); on a first connection CDS comes first: no-op."""
        eds = conn.types.get(typeurls.ENDPOINT)
        if eds is None or eds.sent_nonce is None or (not eds.wildcard and not eds.watched):
            return
        await self._send_type(conn, eds, conn.snapshot, None, eds.watched, None, initial=True)

    async def _delta_subscription(
        self,
        conn: _Connection,
        st: _TypeState,
        req: discovery_pb2.DeltaDiscoveryRequest,
        names: frozenset[str],
    ) -> None:
        """Apply a delta request's subscription changes. The protocol asks more than SotW's "send what is
        newly watched": a name subscribed again is sent again even if held (Envoy re-subscribes a
        cluster's endpoints when it rebuilds the cluster), a subscribed name that does not exist comes back
        in `removed_resources`, and under a wildcard every name explicitly (un)subscribed is answered,
        with its resource or as removed."""
        subscribe = frozenset(req.resource_names_subscribe) - {"*"}
        unsubscribe = frozenset(req.resource_names_unsubscribe) - {"*"}
        wildcard = "*" in names
        if not subscribe and not unsubscribe and wildcard == st.wildcard:
            return  # the usual ACK
        watched = _without_star(names)
        if st.wildcard and not wildcard:
            # Leaving the wildcard: the proxy keeps only what it names.
            st.forget([n for n in st.sent if n not in watched])
        st.wildcard, st.watched = wildcard, watched
        self._notify()
        if conn.snapshot is None or st.sent_nonce is None:
            return  # nothing answered yet: the first response will carry it all
        if wildcard:
            st.unknown(subscribe | unsubscribe)  # answered on this pass: resent, or removed if gone
            await self._send_type(conn, st, conn.snapshot, None, frozenset(), None, initial=False)
        else:
            st.forget(unsubscribe | subscribe)  # subscribed again: sent again
            if subscribe:
                await self._send_type(conn, st, conn.snapshot, subscribe, frozenset(), None, initial=False)

    def _on_nack(self, conn: _Connection, st: _TypeState, req: _Request) -> None:
        if st.last_nack is not None and st.last_nack["nonce"] == req.response_nonce:
            return  # the same NACK again
        message = req.error_detail.message
        st.last_nack = {
            "type": st.short,
            "version": st.sent_version,
            "nonce": req.response_nonce,
            "message": message,
            "code": req.error_detail.code,
            "time": time.time(),
        }
        st.push_start = None
        self.metrics.rejects.labels(st.label).inc()
        log.warning(
            "proxy %s rejected %s version %s (nonce %s), keeping %s: %s",
            conn.proxy.id,
            st.short,
            st.sent_version,
            req.response_nonce,
            getattr(req, "version_info", "") or "nothing",
            message,
        )
        self._notify()

    async def _process_push(self, conn: _Connection, push: Push) -> None:
        self.metrics.queue_time.observe(max(0.0, time.monotonic() - push.dispatched))
        conn.snapshot = push.snapshot
        if not conn.types:
            return
        version = str(push.snapshot.version)
        req = push.request
        assert self._sem is not None
        # The semaphore bounds full pushes (each may build and hold a scope's config); an endpoint push
        # writes a few shared ClusterLoadAssignments, and waiting in line would cost 1,000 proxies a
        # wake-up each.
        async with self._sem if req.full else _UNBOUNDED:
            changed_clusters: frozenset[str] = frozenset()
            for type_url in sorted(conn.types, key=typeurls.push_order_key):
                while conn.inbox:  # ACKs and subscription changes that arrived meanwhile
                    await self._handle_request(conn, *conn.inbox.popleft())
                if conn.closed:
                    return
                st = conn.types[type_url]
                only: frozenset[str] | None
                if req.full or st.sent_nonce is None or st.dirty:
                    only = None
                elif type_url == typeurls.ENDPOINT:
                    only = req.eds_only_clusters
                else:
                    only = frozenset()
                force = changed_clusters if type_url == typeurls.ENDPOINT else frozenset()
                if only is not None:
                    only = only | force
                    if not only:
                        st.checked = version  # this push changes nothing of this type
                        continue
                initial = st.sent_nonce is None
                conn.new_eds_clusters = frozenset()
                changed = await self._send_type(conn, st, push.snapshot, only, force, push, initial=initial)
                if type_url == typeurls.CLUSTER:
                    changed_clusters = changed
                    if conn.new_eds_clusters and not initial:
                        answered = await self._await_eds_subscription(conn, conn.new_eds_clusters)
                        changed_clusters = changed - answered
        self._notify()  # versions advanced even where nothing was sent

    async def _await_eds_subscription(
        self, conn: _Connection, names: frozenset[str], timeout: float = 3.0
    ) -> frozenset[str]:
        """Make-before-break: new EDS clusters must get their endpoints before routes that use them.

        Envoy answers a CDS update by subscribing to the new clusters' endpoints; until they arrive those
        clusters stay warming and a route to them would 503. So LDS/RDS wait (bounded) for that
        subscription, whose endpoints `_handle_request` sends as soon as it comes in. Returns the names
        that subscription added (already answered from the push's snapshot: no need to force them again).
        """
        deadline = time.monotonic() + timeout
        eds = conn.types.get(typeurls.ENDPOINT)
        before = eds.watched if eds is not None and not eds.wildcard else None
        while not conn.closed:
            while conn.inbox:
                await self._handle_request(conn, *conn.inbox.popleft())
            eds = conn.types.get(typeurls.ENDPOINT)
            if eds is not None and (eds.wildcard or names <= eds.watched):
                if before is None or eds.wildcard:
                    return frozenset()
                return names & (eds.watched - before)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.debug("%s did not subscribe to %d new clusters' endpoints in time", conn.id, len(names))
                return frozenset()
            conn.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), remaining)
        return frozenset()

    async def _send_type(
        self,
        conn: _Connection,
        st: _TypeState,
        snapshot: Any,
        only: frozenset[str] | None,
        force: frozenset[str],
        push: Push | None,
        *,
        initial: bool,
    ) -> frozenset[str]:
        """Build `st.type_url` for the connection (restricted to `only` if given), send what changed (all
        of it if `initial`) and return the names sent. Resources named in `force` are sent even if
        unchanged."""
        version = str(snapshot.version)
        type_url = st.type_url
        watched: frozenset[str] | None
        if st.wildcard:
            watched = None
        else:
            watched = st.watched if only is None else st.watched & only
            if not watched:
                # Nothing asked for (even on the first request: a named type's empty subscription is an
                # unsubscribe, which istiod does not answer): current at this version, nothing to send.
                st.checked = version
                return frozenset()
        t0 = time.perf_counter()
        try:
            resources = self._generator.generate(snapshot, conn.proxy, type_url, watched)
            if type_url == typeurls.ENDPOINT and not conn.delta and watched and len(resources) < len(watched):
                resources = self._with_empty_assignments(resources, watched)
            rs = self._cache.resource_set(resources)
        except Exception:
            st.dirty = True
            self.metrics.internal_errors.labels(st.label).inc()
            log.exception(
                "generating %s for proxy %s at version %s failed; it keeps its last config",
                st.short,
                conn.proxy.id,
                version,
            )
            self._notify()
            return frozenset()
        st.dirty = False

        removed: list[str] = []
        if st.wildcard:
            if (
                not initial
                and st.sent_nonce is not None
                and rs.combined == st.combined
                and len(rs.digests) == len(st.sent)
            ):
                return self._skip(st, version)
            diff = self._wildcard_diff(st, rs, resources, delta=conn.delta)
            changed, conn.new_eds_clusters = diff.changed, diff.new_eds
            if conn.delta:
                # Only what the proxy does not hold, and the names it holds that are gone.
                parts, removed = diff.parts, diff.removed
                if not parts and not removed and not initial:
                    st.sent, st.sent_shared, st.combined = rs.digests, True, rs.combined
                    return self._skip(st, version)
            else:
                parts = rs.entries
            st.sent, st.sent_shared, st.combined = rs.digests, True, rs.combined
        else:
            assert watched is not None
            sent = st.sent
            if (
                not initial
                and not force
                and rs.combined == st.combined
                and len(rs.entries) == len(sent) == len(watched)
            ):
                # Every watched name, each with the content last sent (the digests of (name, content)
                # pairs sum the same; the wildcard types rely on the same sum): nothing to compare.
                return self._skip(st, version)
            to_send = [
                (name, enc, d)
                for name, enc, d in rs.entries
                if name in watched and (name in force or sent.get(name) != d)
            ]
            if conn.delta and len(rs.digests) < len(watched):
                # Watched names the generator does not have: a delta client is told they are gone (once:
                # they stay in `sent` at digest 0 until they exist).
                removed = [n for n in watched if n not in rs.digests and sent.get(n) != 0]
            if not to_send and not removed and not initial:
                return self._skip(st, version)
            if st.sent_shared:
                st.sent, st.sent_shared = dict(sent), False
                sent = st.sent
            combined = st.combined
            for name, _, d in to_send:
                combined += d - sent.get(name, 0)
                sent[name] = d
            for name in removed:
                combined -= sent.get(name, 0)
                sent[name] = 0
            st.combined = combined & _MASK
            parts = to_send
            changed = frozenset(name for name, _, _ in to_send)

        count = len(parts)
        # What the response is made of, to share it: the few resources themselves (generators build
        # small named-type mappings per proxy around shared resources), else the whole set.
        owners: tuple[Any, ...] | None
        if count <= 8:
            owners = tuple(enc for _, enc, _ in parts)
        elif count == len(rs.entries):
            owners = (rs,)
        else:
            owners = None
        response_version = f"{version}-{st.combined:016x}"
        nonce, data = self._response(conn, st, owners, parts, removed, response_version)
        if st.sent_nonce is not None and st.acked_nonce == st.sent_nonce:
            st.floor = st.checked
        st.sent_version, st.sent_nonce, st.checked = response_version, nonce, version
        st.push_start = push.first_update if push is not None else None
        await self._write(conn, data)
        m = self.metrics.per_type(st.label)
        m.pushes.inc()
        m.send_bytes.inc(len(data))
        m.config_size.observe(len(data))
        m.push_time.observe(time.perf_counter() - t0)
        log.debug(
            "sent %s %s (%d resources, %d bytes, nonce %s) to %s",
            st.short,
            response_version,
            count,
            len(data),
            nonce,
            conn.id,
        )
        self._notify()
        return changed

    def _with_empty_assignments(
        self, resources: Mapping[str, Any], watched: frozenset[str]
    ) -> dict[str, Any]:
        """SotW EDS: an empty ClusterLoadAssignment for each watched name the generator does not know (a
        cluster just removed, or never ours), so Envoy does not wait `initial_fetch_timeout` for it."""
        out = dict(resources)
        for name in watched - resources.keys():
            empty = self._empty_assignments.get(name)
            if empty is None:
                empty = self._empty_assignments[name] = any_pb2.Any()
                empty.Pack(endpoint_pb2.ClusterLoadAssignment(cluster_name=name))
            out[name] = empty
        return out

    def _wildcard_diff(
        self, st: _TypeState, rs: ResourceSet, resources: Mapping[str, Any], *, delta: bool
    ) -> _Diff:
        """What changed between what `st` holds and `rs`. Proxies of a scope hold the same (shared)
        digests and get the same new set, so the comparison of 1,200 clusters is made once per scope,
        not once per proxy."""
        prev = st.sent
        key = (id(prev), id(rs), delta) if st.sent_shared else None
        if key is not None:
            hit = self._diffs.get(key)
            if hit is not None and hit.prev is prev and hit.rs is rs:
                return hit
        if st.type_url == typeurls.CLUSTER:
            changed = frozenset(n for n, d in rs.digests.items() if prev.get(n) != d)
            new_eds = frozenset(n for n in changed if n not in prev and _is_eds_cluster(resources.get(n)))
        else:
            changed = new_eds = frozenset()
        parts: list[tuple[str, Encoded, int]] = []
        removed: list[str] = []
        if delta:
            parts = [e for e in rs.entries if prev.get(e[0]) != e[2]]
            removed = [n for n in prev if n not in rs.digests]
        diff = _Diff(prev, rs, changed, new_eds, parts, removed)
        if key is not None:
            self._diffs[key] = diff
        return diff

    def _response(
        self,
        conn: _Connection,
        st: _TypeState,
        owners: tuple[Any, ...] | None,
        parts: Sequence[tuple[str, Encoded, int]],
        removed: Sequence[str],
        response_version: str,
    ) -> tuple[str, bytes]:
        """The response's nonce and bytes. Content that another proxy got at the same version (`owners`:
        the objects it is made of) is encoded once and sent with that proxy's nonce: nonces only need to
        be unique within a stream, where it is used once. Only content sent twice is kept (a proxy's
        own CDS, with its inbound clusters, is ~1.2 MB in a 1,000-service mesh). A delta response also
        names its resources and the removed ones, which are then part of what is shared."""
        type_url = st.type_url
        delta = conn.delta

        def encode(nonce: str) -> bytes:
            if delta:
                body = b"".join(delta_resource(name, enc, d) for name, enc, d in parts)
                return self._encoder.delta_response(body, removed, response_version, type_url, nonce)
            body = parts[0][1].data if len(parts) == 1 else b"".join(enc.data for _, enc, _ in parts)
            return self._encoder.response(body, response_version, type_url, nonce)

        if owners is None:
            nonce = str(next(self._nonces))
            return nonce, encode(nonce)
        shape: tuple[Any, ...] = ()
        if delta:
            shape = (tuple(name for name, _, _ in parts) if len(owners) == len(parts) else (), tuple(removed))
        key = (tuple(map(id, owners)), response_version, type_url, shape)
        hit = self._responses.get(key)
        if (
            hit is not None
            and all(a is b for a, b in zip(hit[0], owners, strict=True))
            and hit[1] != st.sent_nonce
            and hit[1] != st.acked_nonce
        ):
            nonce, data = hit[1], hit[2]
            if not data:  # second sighting: keep the bytes now that they are shared
                data = encode(nonce)
                self._responses[key] = (owners, nonce, data)
            return nonce, data
        nonce = str(next(self._nonces))
        if hit is None:
            # First sighting: remember the nonce only, so content only one proxy gets costs no memory.
            self._responses[key] = (owners, nonce, b"")
        return nonce, encode(nonce)

    def _skip(self, st: _TypeState, version: str) -> frozenset[str]:
        st.checked = version
        self.metrics.per_type(st.label).skipped.inc()
        self._notify()
        return frozenset()

    async def _write(self, conn: _Connection, data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: no task is created per write (1,000 per push).
            async with asyncio.timeout(self._send_timeout):
                await conn.context.write(data)
        except TimeoutError:
            self.metrics.write_timeouts.inc()
            log.warning("write to %s timed out after %.1fs; closing the stream", conn.id, self._send_timeout)
            conn.closed = True
            raise _StreamClosed() from None
        self.metrics.send_time.observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------ status

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _config_version(self, conn: _Connection) -> str | None:
        if not conn.types or not self._required_types <= conn.types.keys():
            return None
        oldest: str | None = None
        for st in conn.types.values():
            v = st.synced_version()
            if v is None:
                return None
            if oldest is None or version_key(v) < version_key(oldest):
                oldest = v
        return oldest

    def status(self) -> list[ProxyStatus]:
        out = []
        for conn in list(self._conns.values()):
            types: dict[str, dict[str, Any]] = {}
            for type_url in sorted(conn.types, key=typeurls.push_order_key):
                st = conn.types[type_url]
                types[st.short] = {
                    "type_url": type_url,
                    "sent_version": st.sent_version,
                    "sent_nonce": st.sent_nonce,
                    "acked_version": st.acked_version,
                    "acked_nonce": st.acked_nonce,
                    "last_nack": dict(st.last_nack) if st.last_nack else None,
                    "watched": len(st.watched),
                    "wildcard": st.wildcard,
                    "resources": len(st.sent),
                    "sync": st.sync_state(),
                    "synced_version": st.synced_version(),
                }
            out.append(
                ProxyStatus(
                    id=conn.proxy.id,
                    connection_id=conn.id,
                    proxy=conn.proxy,
                    peer=conn.peer,
                    connected_at=conn.connected_at,
                    types=types,
                    config_version=self._config_version(conn),
                    protocol="delta" if conn.delta else "sotw",
                )
            )
        return out

    def proxy_ids(self) -> set[str]:
        return set(self._by_proxy)

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if done():
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return done()

    async def wait_connected(self, proxy_id: str, timeout: float = 10.0) -> bool:
        return await self._wait(lambda: proxy_id in self._by_proxy, timeout)

    async def wait_synced(
        self, version: str, proxy_ids: set[str] | None = None, timeout: float = 10.0
    ) -> bool:
        """True once every connected proxy (or every one of `proxy_ids`, which must be connected) has
        ACKed config built from snapshot version >= `version` for all the types it subscribed to
        (at least CDS and LDS); False on timeout."""
        version = str(version)
        confirmed: set[str] = set()  # connection ids: their synced versions only grow

        def done() -> bool:
            if proxy_ids is None:
                conns = list(self._conns.values())
            else:
                conns = []
                for pid in proxy_ids:
                    streams = self._by_proxy.get(pid)
                    if not streams:
                        return False
                    conns.append(streams[-1])  # the newest stream of that proxy
            for conn in conns:
                if conn.id in confirmed:
                    continue
                if not version_at_least(self._config_version(conn), version):
                    return False
                confirmed.add(conn.id)
            return True

        return await self._wait(done, timeout)
