"""LDS: the sidecar's HTTP proxy listener, its inbound listeners, and gateway listeners.

Without transparent interception a sidecar has one outbound entry point, `virtualOutbound` on
`<pod ip>:15001`, which apps reach through HTTP_PROXY (requests routed by Host) or HTTP CONNECT (tunnels).
Inbound, the sidecar binds `<pod ip>:<target port>` for every workload port (Istio's bound-ingress
listener naming `<ip>_<port>`), and forwards to the app on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.filters.http.grpc_web.v3 import grpc_web_pb2
from envoy.extensions.request_id.uuid.v3 import uuid_pb2

from isthmus.api.types import parse_env_bool
from isthmus.model import authn
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import RESERVED_SIDECAR_PORTS, InboundPort, Snapshot
from isthmus.registry.types import Protocol, socket_port
from isthmus.telemetry import envoy as telemetry
from isthmus.telemetry.tracing import configure_hcm as configure_tracing
from isthmus.xds.gen import (
    authz,
    compression,
    connection_settings,
    gateway,
    naming,
    proxy_headers,
    session,
    tls,
)
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.clusters import any_resolves_authority, dns_cache_config, inbound_stat_name
from isthmus.xds.gen.guard import guarded

OUTBOUND_PORT = 15001
HCM_NAME = "envoy.filters.network.http_connection_manager"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
# istiod's EnvoyServerName: the `server` header of responses leaving a sidecar's inbound HCM.
INBOUND_SERVER_NAME = "istio-envoy"
# Plaintext ALPNs the HTTP inspector sets (istiod's plaintextHTTPALPNs, HTTP/1.0 off as by default).
PLAINTEXT_HTTP_ALPNS = ("http/1.1", "h2c")
# Appended to the stat_prefix of inbound plaintext (raw_buffer) chains (istio/istio#60415).
PLAINTEXT_STAT_SUFFIX = "_plaintext"
# istiod's UUIDRequestIDExtension, on every HCM it builds (BuildUUIDRequestIDExtension without a tracing
# context); Telemetry tracing's useRequestIdForTraceSampling replaces it (telemetry.tracing).
_UUID_REQUEST_ID = p.pack(uuid_pb2.UuidRequestIdConfig(use_request_id_for_trace_sampling={"value": True}))

_HCM = p.hcm.HttpConnectionManager
# MeshConfig pathNormalization → (normalize_path, merge_slashes, path_with_escaped_slashes_action), as
# istiod's buildHTTPConnectionManager; unset is DEFAULT (= BASE).
_PATH_NORMALIZATION = {
    "NONE": (False, False, _HCM.KEEP_UNCHANGED),
    "BASE": (True, False, _HCM.KEEP_UNCHANGED),
    "DEFAULT": (True, False, _HCM.KEEP_UNCHANGED),
    "MERGE_SLASHES": (True, True, _HCM.KEEP_UNCHANGED),
    "DECODE_AND_MERGE_SLASHES": (True, True, _HCM.UNESCAPE_AND_FORWARD),
}


def _disabled(setting: dict[str, Any] | None) -> bool:
    return bool(setting and setting.get("disabled"))


def _has_auto_ports(snapshot: Snapshot) -> bool:
    """Whether any service has a port of sniffed protocol (once per snapshot)."""
    return snapshot.memo(
        ("has_auto_ports",),
        lambda: any(
            sp.protocol is Protocol.AUTO
            for services in snapshot.registry.by_host.values()
            for svc in services
            for sp in svc.ports
        ),
    )


def _http_filters(
    snapshot: Snapshot,
    proxy: Proxy,
    *,
    dfp: bool,
    grpc_web: bool = False,
    suppress_envoy_headers: bool = False,
    outbound: bool = False,
    route_fixed: bool = False,
) -> list[p.hcm.HttpFilter]:
    filters = []
    if dfp:
        # Needed only on routes to a dynamic forward proxy cluster. Where the PassthroughCluster is the
        # only one (no service resolves the authority, the usual mesh), it is disabled by default and the
        # ALLOW_ANY virtual host enables it (routes.catch_all_vhost), so other requests do not run it.
        filters.append(
            p.hcm.HttpFilter(
                name=naming.DFP_FILTER,
                typed_config=p.pack(
                    p.dfp_filter.FilterConfig(
                        dns_cache_config=dns_cache_config(snapshot.mesh.dns_refresh_rate_s)
                    )
                ),
                disabled=not any_resolves_authority(snapshot, proxy),
            )
        )
    # istiod's order (buildHTTPConnectionManager): [grpc_web on GRPC-Web ports], grpc_stats, fault, cors,
    # router; fault and cors are there for per-route config. Where no earlier filter can clear the route
    # cache (`route_fixed`, authz.route_fixed_before), they are disabled by default: a route's
    # typed_per_filter_config (HTTPRoute.fault, corsPolicy) enables the filter for that route, so a route
    # without one, the usual request, does not instantiate them (route-based filter chain; behaviour is
    # istiod's, as the empty filter configs do nothing).
    if grpc_web:
        filters.append(
            p.hcm.HttpFilter(name="envoy.filters.http.grpc_web", typed_config=p.pack(grpc_web_pb2.GrpcWeb()))
        )
    # gRPC message counts for istio_request/response_messages_total, read by the telemetry ALS.
    filters.append(telemetry.grpc_stats_filter())
    filters.append(
        p.hcm.HttpFilter(
            name="envoy.filters.http.fault", typed_config=p.pack(p.fault.HTTPFault()), disabled=route_fixed
        )
    )
    filters.append(
        p.hcm.HttpFilter(
            name="envoy.filters.http.cors", typed_config=p.pack(p.cors.Cors()), disabled=route_fixed
        )
    )
    if outbound and session.in_use(snapshot):
        # istiod's EmptySessionFilter, on every HCM but the sidecar's inbound: stateful_session without a
        # session state does nothing; HTTPRoute.sessionPersistence turns it on per route. Only in meshes
        # that use it, so other meshes' listeners stay as they were.
        filters.append(session.stateful_session_filter())
    if outbound and compression.in_use(snapshot):
        # Disabled until a route to a decompressing destination enables them (xds/gen/compression.py).
        filters.extend(compression.decompressor_filters())
    if dfp and _has_auto_ports(snapshot):
        # The outbound HTTP proxy: CONNECT routes of auto ports set their tunnels' ALPN through it. Only
        # where a service has such a port: the filter runs on every request.
        filters.append(tls.tcp_tunnel_alpn_filter())
    router = p.router.Router(suppress_envoy_headers=suppress_envoy_headers)
    filters.append(p.hcm.HttpFilter(name="envoy.filters.http.router", typed_config=p.pack(router)))
    return filters


def _hcm(
    snapshot: Snapshot,
    proxy: Proxy,
    direction: str,
    stat_prefix: str,
    *,
    rds: str | None = None,
    route_config: Any = None,
    gateway: bool = False,
    dfp: bool = False,
    connect: bool = False,
    security_filters: Sequence[p.hcm.HttpFilter] = (),
    port_protocol: Protocol | None = None,
) -> p.hcm.HttpConnectionManager:
    """istiod's buildHTTPConnectionManager. `port_protocol` is the inbound port's protocol (None for the
    outbound HTTP proxy and gateways). `dfp` marks the sidecar's explicit HTTP proxy (buildHTTPProxy)."""
    m = _HCM(stat_prefix=stat_prefix, codec_type=_HCM.AUTO)
    if rds is not None:
        m.rds.route_config_name = rds
        m.rds.config_source.CopyFrom(p.ads_config_source())
    else:
        m.route_config.CopyFrom(route_config)
    # Every listener class honours proxyHeaders (istiod's GetProxyHeaders), gateways included but for XFCC.
    headers = proxy_headers.proxy_headers(snapshot)
    m.http_filters.extend(security_filters)
    m.http_filters.extend(
        _http_filters(
            snapshot,
            proxy,
            dfp=dfp,
            grpc_web=port_protocol is Protocol.GRPC_WEB,
            suppress_envoy_headers=headers is not None and _disabled(headers.envoy_debug_headers),
            outbound=direction != "inbound",
            route_fixed=authz.route_fixed_before(proxy, security_filters),
        )
    )
    m.stream_idle_timeout.CopyFrom(p.duration(0))
    idle = proxy_headers.node_idle_timeout_s(snapshot)
    if idle is not None:
        m.common_http_protocol_options.idle_timeout.CopyFrom(p.duration(idle))
    spec = snapshot.mesh.spec
    normalization = getattr(getattr(spec, "path_normalization", None), "normalization", None)
    normalize, merge, escaped = _PATH_NORMALIZATION[normalization or "DEFAULT"]
    m.normalize_path.value = normalize
    m.merge_slashes = merge
    m.path_with_escaped_slashes_action = escaped
    m.use_remote_address.value = gateway
    m.upgrade_configs.add(upgrade_type="websocket")
    if connect:
        m.upgrade_configs.add(upgrade_type="CONNECT")
    if gateway:
        _gateway_client_cert(m)
    elif direction == "inbound":
        _sidecar_inbound_client_cert(m, headers)
    # Outbound leaves XFCC at Envoy's default (SANITIZE), as istiod's outbound and HTTP proxy listeners.
    sidecar_outbound = direction == "outbound" and not gateway
    _server_and_request_id(m, headers, default_server_name="" if sidecar_outbound else INBOUND_SERVER_NAME)
    _http1_options(m, snapshot, proxy, http_proxy=dfp)
    _forwarded_port_and_header_case(m, snapshot)
    # istiod sets HTTP/2 options on inbound HCMs of HTTP/2 ports only (HTTP2, GRPC, GRPC-Web): neither
    # buildHTTPProxy nor buildGatewayConnectionManager sets them (Envoy's defaults are the same anyway).
    if port_protocol is not None and port_protocol.is_http2:
        m.http2_protocol_options.SetInParent()
    # istiod's ENABLE_100_CONTINUE_HEADERS (default true): `Expect: 100-continue` reaches the app.
    m.proxy_100_continue = True
    m.access_log.extend(telemetry.http_access_loggers(snapshot, proxy, direction))  # type: ignore[arg-type]
    m.request_id_extension.typed_config.CopyFrom(_UUID_REQUEST_ID)
    configure_tracing(m, snapshot, proxy, direction)
    # Last: ProxyConfig connectionSettings take precedence over the defaults and MeshConfig set above.
    connection_settings.apply_to_hcm(m, connection_settings.resolve(snapshot, proxy))
    return m


def _gateway_client_cert(m: p.hcm.HttpConnectionManager) -> None:
    """istiod's buildGatewayConnectionManager: gateways ignore proxyHeaders' XFCC settings (gatewayTopology
    overrides the mode, in gateway_hcm_builder); SANITIZE_SET with the client's subject, certificate, URI
    and DNS SANs, which only a mutual-TLS client presents."""
    m.forward_client_cert_details = _HCM.SANITIZE_SET
    details = m.set_current_client_cert_details
    details.subject.value = True
    details.cert = True
    details.uri = True
    details.dns = True


def _sidecar_inbound_client_cert(m: p.hcm.HttpConnectionManager, headers: Any | None) -> None:
    """proxyHeaders forwardedClientCert / setCurrentClientCertDetails on a sidecar's inbound HCM
    (buildSidecarInboundHTTPOpts): APPEND_FORWARD with the peer's subject, URI and DNS SANs by default."""
    xfcc = headers.forwarded_client_cert if headers is not None else None
    m.forward_client_cert_details = _HCM.ForwardClientCertDetails.Value(
        xfcc if xfcc and xfcc != "UNDEFINED" else "APPEND_FORWARD"
    )
    cert = headers.set_current_client_cert_details if headers is not None else None
    details = m.set_current_client_cert_details
    # subject/uri/dns default on, cert/chain off.
    details.subject.value = cert is None or cert.subject is not False
    details.uri = cert is None or cert.uri is not False
    details.dns = cert is None or cert.dns is not False
    details.cert = cert is not None and bool(cert.cert)
    details.chain = cert is not None and bool(cert.chain)


def _server_and_request_id(
    m: p.hcm.HttpConnectionManager, headers: Any | None, *, default_server_name: str
) -> None:
    """proxyHeaders server and requestId (GetProxyHeadersFromProxyConfig). The `server` header is
    `istio-envoy` on inbound and gateway HCMs; outbound keeps Envoy's own name (an istiod quirk kept for
    compatibility). Disabling it passes the upstream's `server` through instead of overwriting it."""
    server = headers.server if headers is not None else None
    if _disabled(server):
        m.server_header_transformation = _HCM.PASS_THROUGH
    else:
        name = (server or {}).get("value") or default_server_name
        if name:
            m.server_name = name
    if headers is not None and _disabled(headers.request_id):
        m.generate_request_id.value = False


def _http1_options(
    m: p.hcm.HttpConnectionManager, snapshot: Snapshot, proxy: Proxy, *, http_proxy: bool
) -> None:
    """The HCM's HTTP/1 options (before proxyHeaders' header case, which replaces them): the explicit HTTP
    proxy allows absolute URLs (buildHTTPProxy: what HTTP_PROXY clients send), and every listener class
    accepts HTTP/1.0 when node metadata HTTP10 is "1" (enableHTTP10)."""
    if http_proxy:
        m.http_protocol_options.allow_absolute_url.value = True
    if proxy_headers.accepts_http_10(snapshot, proxy):
        m.http_protocol_options.accept_http_10 = True


def _forwarded_port_and_header_case(m: p.hcm.HttpConnectionManager, snapshot: Snapshot) -> None:
    """proxyHeaders xForwardedPort and preserveHttp1HeaderCase, on every HCM (istiod's
    buildHTTPConnectionManager; the formatter replaces the whole HTTP/1 options, as there)."""
    m.append_x_forwarded_port = proxy_headers.appends_x_forwarded_port(snapshot)
    if proxy_headers.preserves_header_case(snapshot):
        m.http_protocol_options.CopyFrom(proxy_headers.PRESERVE_CASE_HTTP1)


def _filter(name: str, config: Any) -> p.listener_components.Filter:
    return p.listener_components.Filter(name=name, typed_config=p.pack(config))


# Node metadata (istio-agent's ISTIO_META_*) asking for Envoy's exact connection balancing across worker
# threads on the proxy's inbound / outbound listeners (istiod's NodeMetadata StringBools of those names).
INBOUND_EXACT_BALANCE = "INBOUND_LISTENER_EXACT_BALANCE"
OUTBOUND_EXACT_BALANCE = "OUTBOUND_LISTENER_EXACT_BALANCE"


def _apply_exact_balance(lst: p.listener.Listener, proxy: Proxy, key: str) -> None:
    """istiod sets `connection_balance_config.exact_balance` on the outbound listeners (here the explicit
    proxy, `virtualOutbound`) and on the inbound ones when the node metadata `key` is true (Go's
    strconv.ParseBool; anything else, or unset, leaves Envoy's default balancing)."""
    value = proxy.metadata.get(key)
    if parse_env_bool(value if isinstance(value, str) else None, False):
        lst.connection_balance_config.exact_balance.SetInParent()


def virtual_outbound_listener(
    snapshot: Snapshot, proxy: Proxy, port: int = OUTBOUND_PORT
) -> p.listener.Listener:
    # buildListenerFromEntry: no HTTP inspector, so no listener filter timeout; every chain bounds its
    # transport socket's handshake (TestListenerTransportSocketConnectTimeoutForSidecar).
    lst = p.listener.Listener(
        name=naming.VIRTUAL_OUTBOUND,
        address=p.socket_address(proxy.ip, port),
        traffic_direction=p.base.OUTBOUND,
        listener_filters_timeout=p.duration(0),
        continue_on_listener_filters_timeout=True,
    )
    chain = lst.filter_chains.add(name=f"{naming.VIRTUAL_OUTBOUND}-http-proxy")
    chain.transport_socket_connect_timeout.CopyFrom(p.duration(gateway.TRANSPORT_SOCKET_CONNECT_TIMEOUT_S))
    # The HCM but its stat prefix (the proxy's ip) is the same for a workload's proxies: built once per
    # snapshot and workload. Besides the snapshot it reads the proxy's kind, namespace and labels (access
    # log, metrics and tracing policies, tracing tags), its workload name (or instance, without one) and
    # its node metadata HTTP10; with the in-proxy metrics module, its node id (the module's reports
    # name it).
    key = (
        "outbound_hcm",
        proxy.kind,
        proxy.namespace,
        proxy.workload or proxy.instance,
        frozenset(proxy.labels.items()),
        proxy.metadata.get("HTTP10"),
        telemetry.stats_collector(proxy) and proxy.id,
    )
    prototype = snapshot.memo(
        key,
        lambda: _hcm(snapshot, proxy, "outbound", "", rds=naming.HTTP_PROXY_ROUTE, dfp=True, connect=True),
    )
    hcm = p.hcm.HttpConnectionManager()
    hcm.CopyFrom(prototype)
    hcm.stat_prefix = f"outbound_{proxy.ip}_{port}"
    chain.filters.append(_filter(HCM_NAME, hcm))
    _apply_exact_balance(lst, proxy, OUTBOUND_EXACT_BALANCE)
    return lst


def _tcp_proxy(
    snapshot: Snapshot, proxy: Proxy, direction: str, cluster: str, stat_prefix: str
) -> p.listener_components.Filter:
    config = p.tcp_proxy.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    idle = proxy_headers.node_idle_timeout_s(snapshot)
    if idle is not None:
        config.idle_timeout.CopyFrom(p.duration(idle))
    config.access_log.extend(telemetry.tcp_access_loggers(snapshot, proxy, direction))  # type: ignore[arg-type]
    config.access_log_options.CopyFrom(telemetry.tcp_access_log_options())
    return _filter("envoy.filters.network.tcp_proxy", config)


def _chain(
    lst: p.listener.Listener,
    name: str,
    filters: Sequence[p.listener_components.Filter],
    *,
    transport: str | None = None,
    alpns: Sequence[str] = (),
    tls_context: Any = None,
) -> None:
    chain = lst.filter_chains.add(name=name)
    if transport:
        chain.filter_chain_match.transport_protocol = transport
    chain.filter_chain_match.application_protocols.extend(alpns)
    chain.filters.extend(filters)
    if tls_context is not None:
        chain.transport_socket.CopyFrom(tls.transport_socket(tls_context))


def inbound_listener(snapshot: Snapshot, proxy: Proxy, inbound: InboundPort) -> p.listener.Listener:
    """istiod's inbound filter chains for the port's PeerAuthentication mode and protocol (§2.11)."""
    lst = p.listener.Listener(
        name=naming.listener_name(proxy.ip, inbound.port),
        address=p.socket_address(proxy.ip, socket_port(inbound.port, proxy.port_offset)),
        traffic_direction=p.base.INBOUND,
    )
    cluster = naming.inbound_cluster(inbound.port)
    # Every chain of the port has the same name, as istiod's (inboundChainConfig.Name); Envoy allows it.
    name = naming.listener_name("0.0.0.0", inbound.port)
    stat = f"inbound_0.0.0.0_{inbound.port}"
    mode = tls.inbound_mode(snapshot, proxy, inbound.port)
    http_security = authz.inbound_http_filters(snapshot, proxy)
    tcp_security = authz.inbound_network_filters(snapshot, proxy)

    # Under PERMISSIVE a plaintext (raw_buffer) chain's stats get their own prefix (istiod's
    # TestInboundStatPrefixUniqueness): Envoy interns stats by name, so the port's TLS and plaintext chains
    # would otherwise share (and overwrite) each other's gauges. TLS chains, and the chains of a
    # plaintext-only (DISABLE) port, keep the plain name.
    def hcm(plaintext: bool = False) -> list[p.listener_components.Filter]:
        # Inbound routes come over RDS (named like the cluster, as istiod names them inline) so that
        # authorization changes reach open connections without replacing the listener.
        config = _hcm(
            snapshot,
            proxy,
            "inbound",
            stat + PLAINTEXT_STAT_SUFFIX if plaintext else stat,
            rds=cluster,
            security_filters=http_security,
            port_protocol=inbound.protocol,
        )
        return [_filter(HCM_NAME, config)]

    # istiod's buildInboundNetworkFilters: the tcp_proxy's stats are named by MeshConfig
    # inboundClusterStatName when set (as the cluster's alt_stat_name), else after the cluster.
    tcp_base = inbound_stat_name(snapshot, inbound) or cluster

    def tcp(plaintext: bool = False) -> list[p.listener_components.Filter]:
        tcp_stat = tcp_base + PLAINTEXT_STAT_SUFFIX if plaintext else tcp_base
        return [*tcp_security, _tcp_proxy(snapshot, proxy, "inbound", cluster, tcp_stat)]

    http, auto = inbound.protocol.is_http, inbound.protocol is Protocol.AUTO
    mtls_http = tls.inbound_tls_context(snapshot, http=True)
    mtls_tcp = tls.inbound_tls_context(snapshot, http=False)
    if inbound.tls is not None and mode == authn.DISABLE:
        # A Sidecar ingress port with its own TLS (istiod with ENABLE_TLS_ON_SIDECAR_INGRESS, as its tests
        # run): only where mesh mTLS is off; one TLS chain terminating with the given certificates.
        context = _sidecar_ingress_tls_context(snapshot, inbound)
        _chain(lst, name, hcm() if http else tcp(), transport="tls", tls_context=context)
    elif mode == authn.STRICT:
        if http:
            _chain(lst, name, hcm(), transport="tls", tls_context=mtls_http)
        elif auto:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_HTTP_ALPNS, tls_context=mtls_http)
            _chain(lst, name, tcp(), transport="tls", tls_context=mtls_tcp)
        else:
            _chain(lst, name, tcp(), transport="tls", tls_context=mtls_tcp)
    elif mode == authn.PERMISSIVE:
        if http:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_ALPNS, tls_context=mtls_http)
            _chain(lst, name, hcm(plaintext=True), transport="raw_buffer")
        elif auto:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_HTTP_ALPNS, tls_context=mtls_http)
            _chain(lst, name, tcp(), transport="tls", alpns=tls.MESH_TCP_ALPNS, tls_context=mtls_tcp)
            _chain(lst, name, hcm(plaintext=True), transport="raw_buffer", alpns=PLAINTEXT_HTTP_ALPNS)
            _chain(lst, name, tcp(plaintext=True), transport="raw_buffer")
            _chain(lst, name, tcp(), transport="tls")
        else:
            _chain(lst, name, tcp(), transport="tls", alpns=tls.MESH_ALPNS, tls_context=mtls_tcp)
            _chain(lst, name, tcp(), transport="tls")
            _chain(lst, name, tcp(plaintext=True), transport="raw_buffer")
    else:
        # Plaintext only: no TLS chain to collide with, so the stats keep the port's plain name.
        if http:
            _chain(lst, name, hcm(), transport="raw_buffer")
        elif auto:
            _chain(lst, name, hcm(), transport="raw_buffer", alpns=PLAINTEXT_HTTP_ALPNS)
            _chain(lst, name, tcp(), transport="raw_buffer")
        else:
            _chain(lst, name, tcp(), transport="raw_buffer")
    if inbound.sidecar is not None:
        _sidecar_chain_metadata(lst, inbound.sidecar)
    _add_listener_filters(lst)
    lst.listener_filters_timeout.CopyFrom(p.duration(snapshot.mesh.protocol_detection_timeout_s))
    lst.continue_on_listener_filters_timeout = True
    _apply_exact_balance(lst, proxy, INBOUND_EXACT_BALANCE)
    return lst


def _sidecar_ingress_tls_context(snapshot: Snapshot, inbound: InboundPort) -> Any:
    """istiod's BuildListenerTLSContext for a Sidecar ingress `tls` (the gateway server function, with
    MeshConfig tlsDefaults and the cipher filter): file certificates over SDS (`file-cert:`/`file-root:`)."""
    server = SimpleNamespace(server=SimpleNamespace(tls=inbound.tls), serves_http=inbound.protocol.is_http)
    return gateway.server_tls_context(server, snapshot.mesh.tls_defaults)  # type: ignore[arg-type]


def _sidecar_chain_metadata(lst: p.listener.Listener, sidecar: Any) -> None:
    """istiod's BuildConfigInfoMetadata on the chains a Sidecar ingress listener made."""
    path = f"/apis/networking.istio.io/v1/namespaces/{sidecar.namespace}/sidecar/{sidecar.name}"
    for chain in lst.filter_chains:
        chain.metadata.filter_metadata["istio"].fields["config"].string_value = path


def _add_listener_filters(lst: p.listener.Listener) -> None:
    """istiod's populateListenerFilters: the inspectors the chains' matches need. The TLS inspector when a
    chain matches `tls`; the HTTP inspector (after it, so it skips TLS) when one matches a plaintext HTTP
    ALPN, i.e. protocol sniffing on a port that takes plaintext (not on a STRICT one)."""
    matches = [c.filter_chain_match for c in lst.filter_chains]
    if any(m.transport_protocol == "tls" for m in matches):
        lst.listener_filters.add(name=TLS_INSPECTOR, typed_config=p.pack(p.tls_inspector.TlsInspector()))
    if any(alpn in PLAINTEXT_HTTP_ALPNS for m in matches for alpn in m.application_protocols):
        lst.listener_filters.add(name=HTTP_INSPECTOR, typed_config=p.pack(p.http_inspector.HttpInspector()))


def gateway_hcm_builder(snapshot: Snapshot, proxy: Proxy) -> Any:
    topology = snapshot.mesh.gateway_topology
    security = authz.inbound_http_filters(snapshot, proxy)

    def build(stat_prefix: str, rds: str) -> p.hcm.HttpConnectionManager:
        m = _hcm(snapshot, proxy, "outbound", stat_prefix, rds=rds, gateway=True, security_filters=security)
        if topology is not None:
            if topology.num_trusted_proxies:
                m.xff_num_trusted_hops = int(topology.num_trusted_proxies)
            # UNDEFINED (MeshConfig's zero value, which Envoy's enum lacks) keeps SANITIZE_SET, as istiod.
            if topology.forward_client_cert_details not in (None, "UNDEFINED"):
                m.forward_client_cert_details = p.hcm.HttpConnectionManager.ForwardClientCertDetails.Value(
                    topology.forward_client_cert_details
                )
        return m

    return build


def listener_access_logs(snapshot: Snapshot, proxy: Proxy, direction: str) -> list[accesslog_pb2.AccessLog]:
    """istiod's setListenerAccessLog: the listener-level logs of connections no filter chain takes
    (response flag NR, e.g. plaintext to a STRICT port), which no HCM or tcp_proxy sees. They are the
    file / Telemetry provider logs the listener's traffic gets (MeshConfig accessLogFile when no Telemetry
    logs), each filtered on NR (ANDed with a provider's own filter); none with disableEnvoyListenerLog.
    The metrics pipeline's gRPC loggers are not among them: a connection without a chain is no request."""
    spec = snapshot.mesh.spec
    if spec is not None and getattr(spec, "disable_envoy_listener_log", None):
        return []
    no_chain = accesslog_pb2.AccessLogFilter(
        response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["NR"])
    )
    out = []
    for log in telemetry.tcp_access_loggers(snapshot, proxy, direction, als=False):  # type: ignore[arg-type]
        entry = accesslog_pb2.AccessLog()
        entry.CopyFrom(log)
        if entry.HasField("filter"):
            both = accesslog_pb2.AccessLogFilter()
            both.and_filter.filters.extend([no_chain, log.filter])
            entry.filter.CopyFrom(both)
        else:
            entry.filter.CopyFrom(no_chain)
        out.append(entry)
    return out


def build_listeners(snapshot: Snapshot, proxy: Proxy) -> list[p.listener.Listener]:
    out = _build_listeners(snapshot, proxy)
    limit = connection_settings.listener_buffer_limit(snapshot, proxy)
    if limit is not None:
        for lst in out:
            lst.per_connection_buffer_limit_bytes.value = limit
    return out


def _build_listeners(snapshot: Snapshot, proxy: Proxy) -> list[p.listener.Listener]:
    if proxy.kind == "gateway":
        out = gateway.gateway_listeners(snapshot, proxy, gateway_hcm_builder(snapshot, proxy), _filter)
        # Gateway listeners log as their HCMs do (the "outbound" direction, istiod's gateway class).
        logs = listener_access_logs(snapshot, proxy, "outbound")
        for lst in out:
            lst.access_log.extend(logs)
        return out
    out = [virtual_outbound_listener(snapshot, proxy)]
    out[0].access_log.extend(listener_access_logs(snapshot, proxy, "outbound"))
    inbound_logs = listener_access_logs(snapshot, proxy, "inbound")
    inbound_ports = snapshot.inbound_ports(proxy)
    declared = {ib.port for ib in inbound_ports}
    for ib in inbound_ports:
        real = socket_port(ib.port, proxy.port_offset)
        if real != ib.port and (real in declared or real in RESERVED_SIDECAR_PORTS):
            # Two listeners on one address would get the whole LDS update NACKed: the declared port wins.
            snapshot.generation_errors.setdefault(
                f"listener {proxy.ip}_{ib.port}",
                f"port {ib.port} is served on {real} (port offset {proxy.port_offset}), which the sidecar "
                "already listens on; it is left out",
            )
            continue
        lst = guarded(
            snapshot, f"listener {proxy.ip}_{ib.port}", lambda ib=ib: inbound_listener(snapshot, proxy, ib)
        )
        if lst is not None:
            lst.access_log.extend(inbound_logs)
            out.append(lst)
    return out
