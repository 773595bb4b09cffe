"""Telemetry: Istio's metrics, access logs and traces from plain Envoy, computed by the control plane.

Design
------
Upstream Envoy has no ``istio.stats`` or ``istio.metadata_exchange`` filter, so proxies cannot label
their own metrics with their peer's identity. By default each proxy keeps raw series in a small dynamic
module and the control plane labels them (see "In-proxy metrics" below); the access-log pipeline
described here is what it replaces, and what a proxy uses with ``ISTHMUS_PROXY_METRICS: "false"``,
without a C compiler, or under a Telemetry metric override: every sidecar and gateway streams one gRPC
access log (ALS) entry per request / TCP connection to the control plane
(``envoy.access_loggers.http_grpc`` / ``tcp_grpc``,
`envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`, batched: up to 64 KiB or 1 s), and the
control plane turns entries into Istio's metrics (`core.Telemetry`):

- who reports: the stream's node (``identifier.node`` -> `Proxy.from_node`), and the direction from
  the log name (``isthmus.outbound``: reporter=source, sidecar outbound and gateways;
  ``isthmus.inbound``: reporter=destination);
- the peer (`resolver`, over the current snapshot): outbound, the cluster ``outbound|port|subset|host``
  names the service and the upstream address (an endpoint IP) the destination pod; inbound, the
  downstream address is the client pod (sidecars bind their pod IP upstream) and the TLS peer
  certificate's URI SAN is its principal; the upstream certificates' SANs come from formatter custom
  tags (``%UPSTREAM_PEER_URI_SAN%``, ``%UPSTREAM_LOCAL_URI_SAN%``);
- labels exactly as istio-proxy's stats filter sets them (`labels`), Envoy's default buckets
  (`istio.BUCKETS`), whole milliseconds, wire bytes; gRPC from the request content-type, its status as
  ``%GRPC_STATUS%`` computes it and message counts from the ``grpc_stats`` filter's state; CONNECT
  tunnels count as TCP connections; TCP opened/closed/bytes from the connect, periodic and end entries.

What this costs, and what it buys (measured by ``bench/telemetry.py`` on the 2-CPU dev box, wrk, the
sidecar Envoy, a backend Envoy and the control plane sharing the CPUs; medians of interleaved runs):

- sidecar: ~14 µs more Envoy CPU per request (41 -> 55 ms per 1,000 requests, 2026-12-06); the
  formatter tags are the dear part, so only what nothing else exposes uses one (outbound the two
  upstream certificate SANs, and everywhere ``%UPSTREAM_CLUSTER_RAW%``, for requests answered before a
  host is picked; inbound the upstream is the app over plaintext, so no SANs);
- control plane: ~2.2% of one core per 1,000 entries/s (8.3-8.8 µs of Python per real entry
  in-process, replayed from a dataplane run; the rest is gRPC and the event loop); a request crossing
  two sidecars is two entries: 36-56 µs of control-plane CPU per mesh request;
- in exchange: metrics, `isthmus logs` and the graph without any Envoy extension, peers resolved from
  the registry, one scrape for the whole mesh.
- tracing is off unless configured (as in Istio since 1.22); a tracer costs every request, sampled or
  not: at Istio's 1% +29-45 µs of Envoy CPU per request over two sidecars (bench/dataplane.py), at
  100% ~180 µs (-76% full-speed throughput) and +5% of a core per 1,000 spans/s for the built-in
  collector.

In-proxy metrics (the default; proxyMetadata / ProxyConfig ``ISTHMUS_PROXY_METRICS: "false"`` opts out)
-------------------------------------------------------------------------------------------------------
The per-request entry is what makes the data plane dearer than a plain Envoy: Envoy builds it (~30 µs
over two sidecars) and the control plane ingests it. Unless the setting says "false", the agent builds
`statsmodule`'s C access logger (``statsmod/isthmus_stats.c``; cached per source hash) and starts Envoy
with it as a dynamic module (without a C compiler it falls back to the access log: a note in the pod's
status, an error there if the setting asked for the module explicitly); the node metadata
``ISTHMUS_STATS_COLLECTOR`` tells the generators, which then give every HCM and tcp_proxy the module's
logger instead of the gRPC one (`envoy.http_access_loggers`). The module adds each request to a series
keyed by the same raw fields the control plane reads from an entry (code, flags, routed cluster, route,
peer addresses and URI SANs, and ``:authority`` only where labels need it) and sends the totals of the
series that grew over UDP once a second, all of them every 10 s (`receiver`, ``STATS_PORT`` on the
control plane's address). The control plane
records the growth of each series (`series.SeriesDeltas`) through the same label code
as entries (`Telemetry.ingest_report`), so the metrics are the same; the graph's latencies become bucket
bounds. A gRPC logger stays, filtered to failed requests (status >= 400 or a flag) and not counted, for
`isthmus logs` and explain. gRPC requests skip the module and keep their entries (a second gRPC logger,
filtered on the content-type): their message counts live in the grpc_stats filter state, which Envoy
1.40's module ABI cannot read. Telemetry metric overrides need per-request attributes: a proxy under one
gets the gRPC access log for everything, which reaches new connections; connections opened before keep
their listener config, module included, until they close, and their requests count with Istio's labels
(as istio-proxy's stats filter keeps its old config on draining connections). The UDP reports are not
authenticated: the module sends from its proxy's address and the control plane refuses a report from
any other.

Served: the merged istio_* metrics through `Telemetry.collector()` (registered into the control plane's
CollectorRegistry: one ``/metrics`` scrape covers the mesh; series of proxies that go away fold into
totals so counters never go back), one proxy's own series with `Telemetry.metrics_for_proxy(id)` /
``GET /api/telemetry/metrics?proxy=ID`` (what istio-proxy serves on :15090) or, as istio-agent does on
:15020, `api.proxy_metrics_app` merged with Envoy's own stats; access-log lines rendered from the last
1,000 entries per proxy in Istio's TEXT/JSON format (`accesslog`, ``GET /api/logs``, `isthmus logs`);
traces in a built-in Zipkin v2 collector (`spans`, ``POST /api/v2/spans``); the live service graph
(`graph`, ``GET /api/graph``).

Telemetry API
-------------
``telemetry.istio.io`` Telemetry resources are merged per workload and mode as istiod merges them
(`policy`): tracing changes the HCMs' tracer (`tracing.configure_hcm`), access logging adds Envoy file
access logs with CEL filters (`envoy.http_access_loggers`), and metrics overrides (``disabled``,
``tagOverrides``) are applied here, where the metrics are computed, per reporting proxy and direction
(`core.Telemetry.metrics_policy`; series whose labels an override changed live in
`metrics.ProxyStats.extra`). The ALS logger is the metrics pipeline: it is dropped only where Telemetry
disables every metric and no access log is configured.

Wiring (the lead's files)
-------------------------
1. ``xds/server.py``: ``XdsServer(..., extra_handlers=())`` kept in ``self._extra_handlers``, and in
   ``start()``: ``server.add_generic_rpc_handlers((handler, *self._extra_handlers))``.
2. ``mesh/control_plane.py`` (``ControlPlane.__init__``)::

       self.telemetry = Telemetry(lambda: self.snapshot)
       self.xds = XdsServer(self.generator, registry=self.metrics,
                            extra_handlers=self.telemetry.grpc_handlers())
       self.metrics.register(self.telemetry.collector())

3. ``mesh/http_api.py`` (``make_app``): ``mesh.cp.telemetry.add_routes(app)``; optionally
   ``/metrics?proxy=ID`` -> ``mesh.cp.telemetry.metrics_for_proxy(ID)``.
4. ``mesh/pods.py``: ``build_bootstrap(..., extra_static_clusters=telemetry.envoy.static_clusters(
   xds_address, (cp_ip, 15014)))`` and `envoy.RUNTIME_FLAGS` in the bootstrap's runtime layer (Zipkin
   batching). On pod removal, ``cp.telemetry.forget_proxy(proxy.id)`` (else done after 5 minutes).
5. ``xds/gen/listeners.py``: in every HCM ``access_log.extend(envoy.http_access_loggers(snapshot, proxy,
   direction))`` instead of ``access_logs(snapshot)``, ``envoy.grpc_stats_filter()`` just before the
   router, and ``tracing_config(snapshot, proxy)`` into ``hcm.tracing`` when not None; every tcp_proxy gets
   ``access_log.extend(envoy.tcp_access_loggers(...))`` and
   ``access_log_options.CopyFrom(envoy.tcp_access_log_options())``. ``direction`` is "outbound" for
   virtualOutbound and gateways, "inbound" for inbound listeners. The tracer's span tags carry the
   proxy's canonical service and namespace: include them in any sharing key.
6. ``cli/main.py``: ``"logs": "isthmus.cli.logs_cmd:logs_command"``.
7. ``api/support.py``: allow MeshConfig ``enableTracing``, ``extensionProviders``, ``defaultProviders``
   and ``defaultConfig.tracing``.
"""

from __future__ import annotations

from isthmus.telemetry.core import LogLine, ProxyInfo, Telemetry

__all__ = ["LogLine", "ProxyInfo", "Telemetry"]
