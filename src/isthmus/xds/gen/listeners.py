"""LDS: the sidecar's HTTP proxy listener, its inbound listeners, and gateway listeners.

Without transparent interception a sidecar has one outbound entry point, `virtualOutbound` on
`<pod ip>:15001`, which apps reach through HTTP_PROXY (requests routed by Host) or HTTP CONNECT (tunnels).
Inbound, the sidecar binds `<pod ip>:<target port>` for every workload port (Istio's bound-ingress
listener naming `<ip>_<port>`), and forwards to the app on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from isthmus.model import authn
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import InboundPort, Snapshot
from isthmus.registry.types import Protocol
from isthmus.telemetry import envoy as telemetry
from isthmus.telemetry.tracing import configure_hcm as configure_tracing
from isthmus.xds.gen import authz, gateway, naming, tls
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.clusters import dns_cache_config
from isthmus.xds.gen.guard import guarded

OUTBOUND_PORT = 15001
HCM_NAME = "envoy.filters.network.http_connection_manager"


def _http_filters(snapshot: Snapshot, *, dfp: bool) -> list[p.hcm.HttpFilter]:
    filters = []
    if dfp:
        filters.append(
            p.hcm.HttpFilter(
                name="envoy.filters.http.dynamic_forward_proxy",
                typed_config=p.pack(
                    p.dfp_filter.FilterConfig(
                        dns_cache_config=dns_cache_config(snapshot.mesh.dns_refresh_rate_s)
                    )
                ),
            )
        )
    filters.append(
        p.hcm.HttpFilter(name="envoy.filters.http.fault", typed_config=p.pack(p.fault.HTTPFault()))
    )
    filters.append(p.hcm.HttpFilter(name="envoy.filters.http.cors", typed_config=p.pack(p.cors.Cors())))
    # gRPC message counts for istio_request/response_messages_total, read by the telemetry ALS.
    filters.append(telemetry.grpc_stats_filter())
    filters.append(p.hcm.HttpFilter(name="envoy.filters.http.router", typed_config=p.pack(p.router.Router())))
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
) -> p.hcm.HttpConnectionManager:
    m = p.hcm.HttpConnectionManager(stat_prefix=stat_prefix, codec_type=p.hcm.HttpConnectionManager.AUTO)
    if rds is not None:
        m.rds.route_config_name = rds
        m.rds.config_source.CopyFrom(p.ads_config_source())
    else:
        m.route_config.CopyFrom(route_config)
    m.http_filters.extend(security_filters)
    m.http_filters.extend(_http_filters(snapshot, dfp=dfp))
    m.stream_idle_timeout.CopyFrom(p.duration(0))
    m.normalize_path.value = True
    m.path_with_escaped_slashes_action = p.hcm.HttpConnectionManager.KEEP_UNCHANGED
    m.use_remote_address.value = gateway
    m.upgrade_configs.add(upgrade_type="websocket")
    if connect:
        m.upgrade_configs.add(upgrade_type="CONNECT")
    if gateway:
        m.forward_client_cert_details = p.hcm.HttpConnectionManager.SANITIZE_SET
    else:
        m.forward_client_cert_details = p.hcm.HttpConnectionManager.APPEND_FORWARD
        details = m.set_current_client_cert_details
        details.subject.value = True
        details.dns = True
        details.uri = True
    m.http2_protocol_options.SetInParent()
    m.access_log.extend(telemetry.http_access_loggers(snapshot, proxy, direction))  # type: ignore[arg-type]
    configure_tracing(m, snapshot, proxy, direction)
    return m


def _filter(name: str, config: Any) -> p.listener_components.Filter:
    return p.listener_components.Filter(name=name, typed_config=p.pack(config))


def virtual_outbound_listener(
    snapshot: Snapshot, proxy: Proxy, port: int = OUTBOUND_PORT
) -> p.listener.Listener:
    lst = p.listener.Listener(
        name=naming.VIRTUAL_OUTBOUND,
        address=p.socket_address(proxy.ip, port),
        traffic_direction=p.base.OUTBOUND,
    )
    chain = lst.filter_chains.add(name=f"{naming.VIRTUAL_OUTBOUND}-http-proxy")
    # The HCM but its stat prefix (the proxy's ip) is the same for a workload's proxies: built once per
    # snapshot and workload. Besides the snapshot it reads the proxy's kind, namespace and labels (access
    # log, metrics and tracing policies, tracing tags) and its workload name (or instance, without one).
    key = (
        "outbound_hcm",
        proxy.kind,
        proxy.namespace,
        proxy.workload or proxy.instance,
        frozenset(proxy.labels.items()),
    )
    prototype = snapshot.memo(
        key,
        lambda: _hcm(snapshot, proxy, "outbound", "", rds=naming.HTTP_PROXY_ROUTE, dfp=True, connect=True),
    )
    hcm = p.hcm.HttpConnectionManager()
    hcm.CopyFrom(prototype)
    hcm.stat_prefix = f"outbound_{proxy.ip}_{port}"
    chain.filters.append(_filter(HCM_NAME, hcm))
    return lst


def _tcp_proxy(
    snapshot: Snapshot, proxy: Proxy, direction: str, cluster: str, stat_prefix: str
) -> p.listener_components.Filter:
    config = p.tcp_proxy.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
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
        address=p.socket_address(proxy.ip, inbound.port),
        traffic_direction=p.base.INBOUND,
    )
    cluster = naming.inbound_cluster(inbound.port)
    name = naming.listener_name("0.0.0.0", inbound.port)
    stat = f"inbound_0.0.0.0_{inbound.port}"
    mode = tls.inbound_mode(snapshot, proxy, inbound.port)
    http_security = authz.inbound_http_filters(snapshot, proxy)
    tcp_security = authz.inbound_network_filters(snapshot, proxy)

    def hcm() -> list[p.listener_components.Filter]:
        # Inbound routes come over RDS (named like the cluster, as istiod names them inline) so that
        # authorization changes reach open connections without replacing the listener.
        config = _hcm(snapshot, proxy, "inbound", stat, rds=cluster, security_filters=http_security)
        return [_filter(HCM_NAME, config)]

    def tcp() -> list[p.listener_components.Filter]:
        return [*tcp_security, _tcp_proxy(snapshot, proxy, "inbound", cluster, cluster)]

    http, auto = inbound.protocol.is_http, inbound.protocol is Protocol.AUTO
    mtls_http = tls.inbound_tls_context(snapshot, http=True)
    mtls_tcp = tls.inbound_tls_context(snapshot, http=False)
    if mode == authn.STRICT:
        if http:
            _chain(lst, name, hcm(), transport="tls", tls_context=mtls_http)
        elif auto:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_HTTP_ALPNS, tls_context=mtls_http)
            _chain(lst, name + "-tcp", tcp(), transport="tls", tls_context=mtls_tcp)
        else:
            _chain(lst, name, tcp(), transport="tls", tls_context=mtls_tcp)
    elif mode == authn.PERMISSIVE:
        if http:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_ALPNS, tls_context=mtls_http)
            _chain(lst, name + "-plaintext", hcm(), transport="raw_buffer")
        elif auto:
            _chain(lst, name, hcm(), transport="tls", alpns=tls.MESH_HTTP_ALPNS, tls_context=mtls_http)
            _chain(lst, name + "-tcp", tcp(), transport="tls", alpns=tls.MESH_TCP_ALPNS, tls_context=mtls_tcp)
            _chain(lst, name + "-plaintext", hcm(), transport="raw_buffer", alpns=("http/1.1", "h2c"))
            _chain(lst, name + "-plaintext-tcp", tcp(), transport="raw_buffer")
            _chain(lst, name + "-app-tls", tcp(), transport="tls")
        else:
            _chain(lst, name, tcp(), transport="tls", alpns=tls.MESH_ALPNS, tls_context=mtls_tcp)
            _chain(lst, name + "-app-tls", tcp(), transport="tls")
            _chain(lst, name + "-plaintext", tcp(), transport="raw_buffer")
    else:
        if http:
            _chain(lst, name, hcm(), transport="raw_buffer")
        elif auto:
            _chain(lst, name, hcm(), transport="raw_buffer", alpns=("http/1.1", "h2c"))
            _chain(lst, name + "-tcp", tcp(), transport="raw_buffer")
        else:
            _chain(lst, name, tcp(), transport="raw_buffer")
    if mode != authn.DISABLE:
        lst.listener_filters.add(
            name="envoy.filters.listener.tls_inspector", typed_config=p.pack(p.tls_inspector.TlsInspector())
        )
    if auto:
        # Istio's protocol sniffing: the HTTP inspector tells HTTP from opaque TCP.
        lst.listener_filters.add(
            name="envoy.filters.listener.http_inspector",
            typed_config=p.pack(p.http_inspector.HttpInspector()),
        )
    if lst.listener_filters:
        lst.listener_filters_timeout.CopyFrom(p.duration(snapshot.mesh.protocol_detection_timeout_s))
        lst.continue_on_listener_filters_timeout = True
    return lst


def gateway_hcm_builder(snapshot: Snapshot, proxy: Proxy) -> Any:
    topology = snapshot.mesh.gateway_topology
    security = authz.inbound_http_filters(snapshot, proxy)

    def build(stat_prefix: str, rds: str) -> p.hcm.HttpConnectionManager:
        m = _hcm(snapshot, proxy, "outbound", stat_prefix, rds=rds, gateway=True, security_filters=security)
        if topology is not None:
            if topology.num_trusted_proxies:
                m.xff_num_trusted_hops = int(topology.num_trusted_proxies)
            if topology.forward_client_cert_details:
                m.forward_client_cert_details = p.hcm.HttpConnectionManager.ForwardClientCertDetails.Value(
                    topology.forward_client_cert_details
                )
        return m

    return build


def build_listeners(snapshot: Snapshot, proxy: Proxy, port_offset: int = 0) -> list[p.listener.Listener]:
    if proxy.kind == "gateway":
        return gateway.gateway_listeners(
            snapshot, proxy, port_offset, gateway_hcm_builder(snapshot, proxy), _filter
        )
    out = [virtual_outbound_listener(snapshot, proxy)]
    for ib in snapshot.inbound_ports(proxy):
        lst = guarded(
            snapshot, f"listener {proxy.ip}_{ib.port}", lambda ib=ib: inbound_listener(snapshot, proxy, ib)
        )
        if lst is not None:
            out.append(lst)
    return out
