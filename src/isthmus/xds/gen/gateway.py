"""Gateway listeners (`pilot/pkg/networking/core/gateway.go`): HTTP, terminated HTTPS, TLS passthrough, TCP.

One listener per (bind, listen port). Plain HTTP servers share an HCM with RDS `http.<port>`; each
terminated HTTPS server gets a filter chain matching its hosts by SNI with RDS
`https.<port>.<portName>.<gwName>.<gwNs>`; PASSTHROUGH servers get one chain per VirtualService `tls`
route (SNI match -> tcp_proxy); TCP servers use the first matching VirtualService `tcp` route.
MeshConfig `defaultConfig.gatewayTopology` sets the trusted XFF hops and the PROXY protocol filter.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from isthmus.api.validation.common import is_hash_pin, is_spki_pin, is_valid_cipher_suite
from isthmus.model import hosts as h
from isthmus.model.destination_rules import effective_policy
from isthmus.model.gateways import GatewayServer, hosts_for_namespace
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import RESERVED_SIDECAR_PORTS, Snapshot
from isthmus.registry.build import UNIX_ADDRESS_PREFIX
from isthmus.registry.types import socket_port
from isthmus.security import sds
from isthmus.telemetry import envoy as telemetry
from isthmus.xds.gen import authz, naming, tls
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.clusters import build_stat_prefix, outbound_stat_name_pattern
from isthmus.xds.gen.routes import (
    RouteContext,
    TcpProxyPolicy,
    destination_cluster,
    destination_host_port,
    is_auto_port,
    scope_services,
    tcp_proxy_policy,
    tunnel_authority,
)

# Filled in by listeners.py (avoids an import cycle): the HCM builder and filter wrapper.
HCM_NAME = "envoy.filters.network.http_connection_manager"
# istiod's defaultGatewayTransportSocketConnectTimeout: the handshake bound of every chain of a gateway
# listener (buildGatewayListener) and of the sidecar's outbound ones (buildListenerFromEntry), against
# slow-handshake memory exhaustion.
TRANSPORT_SOCKET_CONNECT_TIMEOUT_S = 15
# What the gateway's Envoy already binds on its pod address (agent/bootstrap.py: admin, the health
# listener, Prometheus). A Gateway server on one of them would be NACKed as a whole LDS update ("cannot
# bind" / "duplicate address"), taking every other server's change down with it (istio#41239); istiod's
# conflictWithReservedListener skips such ports for sidecars, and so do we here, for gateways too. A
# gateway has the sidecar's ports but the outbound one.
RESERVED_GATEWAY_PORTS = {port: what for port, what in RESERVED_SIDECAR_PORTS.items() if what != "outbound"}
_WILDCARDS = ("0.0.0.0", "::")


def https_route_name(server: GatewayServer) -> str:
    return naming.gateway_https_route_name(
        server.port, server.port_name, server.gateway.name, server.gateway.namespace, server.bind
    )


def _server_names(server: GatewayServer) -> list[str]:
    names = sorted({entry.partition("/")[2] for entry in server.hosts})
    return [] if "*" in names else names


# istiod's util.ALPNHttp, and ALPNDownstreamWithMxc for a TLS (not HTTPS) server terminating ISTIO_MUTUAL.
HTTP_ALPNS = ("h2", "http/1.1")
TCP_ISTIO_MUTUAL_ALPNS = ("istio-peer-exchange", *HTTP_ALPNS)


def _cipher_suites(names: Sequence[str]) -> list[str]:
    """istiod's filteredGatewayCipherSuites: unknown suites would make Envoy NACK, repeats are dropped."""
    return list(dict.fromkeys(c for c in names if is_valid_cipher_suite(c)))


def server_tls_context(
    server: GatewayServer, tls_defaults: Any | None = None
) -> tls_pb2.DownstreamTlsContext:
    """istiod's BuildListenerTLSContext for SIMPLE / MUTUAL / OPTIONAL_MUTUAL / ISTIO_MUTUAL servers;
    `tls_defaults` is MeshConfig `tlsDefaults`, which the server's own settings override."""
    t = server.server.tls
    mode = t.mode or "SIMPLE"
    ctx = tls_pb2.DownstreamTlsContext()
    # Both ISTIO_MUTUAL and MUTUAL reject a client without a certificate; the rest ask for none.
    ctx.require_client_certificate.value = mode in ("MUTUAL", "ISTIO_MUTUAL")
    common = ctx.common_tls_context
    alpns = TCP_ISTIO_MUTUAL_ALPNS if mode == "ISTIO_MUTUAL" and not server.serves_http else HTTP_ALPNS
    if mode == "ISTIO_MUTUAL":
        # ApplyToCommonTLSContext: the workload certificate, any client chained to the mesh root, and only
        # the server's own subjectAltNames (no trust-domain check, as istiod).
        common.CopyFrom(sds.istio_mutual_common_tls_context(alpn_protocols=alpns))
        default = common.combined_validation_context.default_validation_context
        for san in t.subject_alt_names or ():
            default.match_subject_alt_names.add(exact=san)
        if t.ca_crl:
            default.crl.filename = t.ca_crl
        return ctx
    common.alpn_protocols.extend(alpns)
    credentials = _credentials(t)
    if credentials:
        _apply_credential_sds(common, t, mode, credentials)
        _apply_tls_params(common, t, tls_defaults)
        return ctx
    if t.tls_certificates:
        for cert in t.tls_certificates:
            common.tls_certificate_sds_secret_configs.append(
                sds.sds_secret_config(sds.file_cert_name(cert.server_certificate, cert.private_key))
            )
    elif t.server_certificate and t.private_key:
        common.tls_certificate_sds_secret_configs.append(
            sds.sds_secret_config(sds.file_cert_name(t.server_certificate, t.private_key))
        )
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        vc = common.combined_validation_context
        vc.default_validation_context.SetInParent()
        root = sds.file_root_name(t.ca_certificates) if t.ca_certificates else sds.FILE_ROOT_SYSTEM
        vc.validation_context_sds_secret_config.CopyFrom(sds.sds_secret_config(root))
        for san in t.subject_alt_names or ():
            vc.default_validation_context.match_subject_alt_names.add(exact=san)
        vc.default_validation_context.verify_certificate_spki.extend(_spki_pins(t))
        vc.default_validation_context.verify_certificate_hash.extend(_hash_pins(t))
        if t.ca_crl:
            vc.default_validation_context.crl.filename = t.ca_crl
        if t.insecure_skip_verify:
            vc.default_validation_context.trust_chain_verification = (
                common_pb2.CertificateValidationContext.ACCEPT_UNTRUSTED
            )
    _apply_tls_params(common, t, tls_defaults)
    return ctx


# Certificate pins Envoy can load that no certificate has (the SHA-256 of nothing real: all zeros).
_NO_SPKI = base64.b64encode(bytes(32)).decode()
_NO_HASH = "00" * 32


def _spki_pins(t: Any) -> list[str]:
    """`verifyCertificateSpki`, each a base64 SHA-256 (32 bytes) as Envoy requires. istiod passes any
    string through and Envoy NACKs the whole listener for one it cannot decode; such a pin matches no
    certificate, and neither does its stand-in, so the server accepts exactly the clients it would
    (validation warns about the pin when the resource is applied)."""
    return [pin if is_spki_pin(pin) else _NO_SPKI for pin in t.verify_certificate_spki or ()]


def _hash_pins(t: Any) -> list[str]:
    """`verifyCertificateHash`, each a hex SHA-256 (colons allowed), as `_spki_pins` for the same reason."""
    return [pin if is_hash_pin(pin) else _NO_HASH for pin in t.verify_certificate_hash or ()]


def _credentials(t: Any) -> list[str]:
    """`credentialNames` (an RSA and an ECDSA certificate) win over `credentialName`, as in istiod."""
    names = [n for n in t.credential_names or () if n]
    return names or ([t.credential_name] if t.credential_name else [])


def _apply_credential_sds(common: Any, t: Any, mode: str, credentials: list[str]) -> None:
    """istiod's ApplyCredentialSDSToServerCommonTLSContext: the certificates come from the Secrets; for
    MUTUAL / OPTIONAL_MUTUAL the client CA (and CRL) from `<first credential>-cacert` (the Secret of that
    name, else the credential's own CA keys), checked against the server's SANs, SPKIs and hashes. The
    file-based `caCrl`/`caCertificates` settings do not apply here."""
    for name in credentials:
        common.tls_certificate_sds_secret_configs.append(
            sds.sds_secret_config(sds.kubernetes_secret_name(name))
        )
    if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        vc = common.combined_validation_context
        default = vc.default_validation_context
        default.SetInParent()
        for san in t.subject_alt_names or ():
            default.match_subject_alt_names.add(exact=san)
        default.verify_certificate_spki.extend(_spki_pins(t))
        default.verify_certificate_hash.extend(_hash_pins(t))
        if t.ca_cert_credential_name:
            root = sds.kubernetes_secret_name(t.ca_cert_credential_name)
        else:
            root = sds.kubernetes_secret_name(credentials[0]) + sds.CACERT_SUFFIX
        vc.validation_context_sds_secret_config.CopyFrom(sds.sds_secret_config(root))
    elif t.subject_alt_names:
        # SIMPLE keeps a static SAN check of the client (which Envoy applies only if one presents).
        for san in t.subject_alt_names:
            common.validation_context.match_subject_alt_names.add(exact=san)


def _apply_tls_params(common: Any, t: Any, tls_defaults: Any | None) -> None:
    # istiod's applyDownstreamTLSDefaults (MeshConfig tlsDefaults), then applyServerTLSSettings: only what
    # they set; Envoy's downstream defaults (TLS 1.2 to 1.3, its cipher list) stand for the rest.
    if tls_defaults is not None:
        common.tls_params.ecdh_curves.extend(tls_defaults.ecdh_curves or ())
        common.tls_params.cipher_suites.extend(tls_defaults.cipher_suites or ())
        if tls_defaults.min_protocol_version and tls_defaults.min_protocol_version != "TLS_AUTO":
            common.tls_params.tls_minimum_protocol_version = tls.tls_version(
                tls_defaults.min_protocol_version
            )
    if t.min_protocol_version and t.min_protocol_version != "TLS_AUTO":
        common.tls_params.tls_minimum_protocol_version = tls.tls_version(t.min_protocol_version)
    if t.max_protocol_version and t.max_protocol_version != "TLS_AUTO":
        common.tls_params.tls_maximum_protocol_version = tls.tls_version(t.max_protocol_version)
    if ciphers := _cipher_suites(t.cipher_suites or ()):
        del common.tls_params.cipher_suites[:]
        common.tls_params.cipher_suites.extend(ciphers)


def _tcp_filter(
    snapshot: Snapshot,
    proxy: Proxy,
    clusters: Sequence[tuple[str, int]],
    stat_prefix: str,
    policy: TcpProxyPolicy | None = None,
) -> Any:
    config = p.tcp_proxy.TcpProxy(stat_prefix=stat_prefix)
    config.access_log.extend(telemetry.tcp_access_loggers(snapshot, proxy, "outbound"))
    config.access_log_options.CopyFrom(telemetry.tcp_access_log_options())
    if len(clusters) == 1:
        config.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            config.weighted_clusters.clusters.add(name=name, weight=weight)
    tunnel = policy.tunnel if policy is not None else None
    if tunnel is not None:
        # istiod's tunnelingconfig.Apply: the connection travels in a CONNECT (or POST) to the cluster.
        config.tunneling_config.hostname = tunnel_authority(tunnel)
        config.tunneling_config.use_post = tunnel.protocol == "POST"
    if policy is not None:
        if policy.source_ip_hash:
            config.hash_policy.add().source_ip.SetInParent()
        if policy.idle_timeout_s is not None:
            config.idle_timeout.CopyFrom(p.duration(policy.idle_timeout_s))
        if policy.max_connection_duration_s is not None:
            config.max_downstream_connection_duration.CopyFrom(p.duration(policy.max_connection_duration_s))
    return p.listener_components.Filter(name="envoy.filters.network.tcp_proxy", typed_config=p.pack(config))


def _route_policy(snapshot: Snapshot, proxy: Proxy, rule: Any, services: Any) -> TcpProxyPolicy | None:
    """The DestinationRule settings of the rule's tcp_proxy (buildOutboundNetworkFilters): the first
    destination's rule; a single destination's subset, several destinations' top level only."""
    dests = [d for d in rule.route or () if d.destination is not None]
    if not dests:
        return None
    ctx = RouteContext(snapshot, proxy, services)
    first = dests[0].destination
    return tcp_proxy_policy(ctx, first.host, first.subset if len(dests) == 1 else None)


def _route_clusters(rule: Any, services: Any, port: int) -> list[tuple[str, int]]:
    dests = [d for d in rule.route or () if d.destination is not None]
    if len(dests) == 1:
        return [(destination_cluster(dests[0].destination, services, port), 100)]
    return [
        (destination_cluster(d.destination, services, port), int(d.weight or 0)) for d in dests if d.weight
    ]


def _needs_tcp_alpn(snapshot: Snapshot, proxy: Proxy, rule: Any, services: Any, port: int) -> bool:
    """Whether the rule's tcp_proxy must override its upstream ALPN with the mesh's TCP one (see
    tls.TCP_PROXY_ALPN_FILTER): some destination is a service port of sniffed protocol under mesh mTLS,
    whose cluster offers the HTTP ALPN. The override is per connection, not per cluster, so a split with
    a destination of the DestinationRule's own TLS (SIMPLE, MUTUAL: its ALPN is the application's) keeps
    the clusters' ALPNs; for other destinations `istio` is what their clusters offer anyway, or unused."""
    ctx = RouteContext(snapshot, proxy, services)
    needed = False
    for d in rule.route or ():
        dest = d.destination
        svc = services.get(dest.host) if dest is not None and dest.host else None
        if svc is None:
            continue
        _, dest_port = destination_host_port(dest, services, port)
        policy = effective_policy(ctx.destination_rule(dest.host), dest_port, dest.subset or None)
        mode = policy.tls.mode if policy.tls is not None else None
        if mode in ("SIMPLE", "MUTUAL"):
            return False
        needed = needed or (is_auto_port(svc, dest_port) and tls.tunnel_takes_mesh_alpn(policy.tls))
    return needed


def _tcp_stat_prefix(
    snapshot: Snapshot,
    vs: Any,
    rule: Any,
    services: Any,
    clusters: Sequence[tuple[str, int]],
    server: GatewayServer,
) -> str:
    """istiod's buildOutboundNetworkFilters: a single destination's cluster name, or MeshConfig
    outboundClusterStatName filled in from the destination (its host, subset, and the server's port number
    and name) when set and the host is a known service; `<vs name>.<vs namespace>` for a weighted split."""
    if len(clusters) != 1:
        return f"{vs.name}.{vs.namespace}"
    pattern = outbound_stat_name_pattern(snapshot)
    dests = [d.destination for d in rule.route or () if d.destination is not None]
    svc = services.get(dests[0].host) if pattern is not None and dests and dests[0].host else None
    if pattern is None or svc is None:
        return clusters[0][0]
    dest = dests[0]
    return build_stat_prefix(pattern, dest.host, svc, dest.subset or "", server.port, server.port_name)


def _rule_tcp_filters(
    snapshot: Snapshot, proxy: Proxy, vs: Any, rule: Any, services: Any, server: GatewayServer
) -> list[Any]:
    """The tcp_proxy of a `tls` or `tcp` rule (buildOutboundNetworkFilters), stats named as
    _tcp_stat_prefix says; preceded by the ALPN
    override when it goes to an auto port over mesh mTLS (not through a DestinationRule tunnel, whose
    CONNECT is HTTP to the forward proxy)."""
    port = server.port
    clusters = _route_clusters(rule, services, port)
    stat_prefix = _tcp_stat_prefix(snapshot, vs, rule, services, clusters, server)
    policy = _route_policy(snapshot, proxy, rule, services)
    filters = [_tcp_filter(snapshot, proxy, clusters, stat_prefix, policy)]
    tunneled = policy is not None and policy.tunnel is not None
    if not tunneled and _needs_tcp_alpn(snapshot, proxy, rule, services, port):
        filters.insert(0, tls.tcp_proxy_alpn_filter())
    return filters


def _gateway_match(match: Any, gw_name: str, port: int) -> bool:
    if match.port and int(match.port) != port:
        return False
    return not match.gateways or gw_name in match.gateways


def _binds_to_server(vs: Any, server: GatewayServer) -> bool:
    """istiod's pickMatchingGatewayHosts: a host of the VirtualService overlaps a server host it may use."""
    allowed = hosts_for_namespace(server.hosts, vs.namespace)
    return any(h.matches(gw_host, vs_host) for gw_host in allowed for vs_host in vs.hosts)


def passthrough_chains(
    snapshot: Snapshot, proxy: Proxy, server: GatewayServer, network_filters: list[Any]
) -> list[Any]:
    """VirtualService `tls` routes bound to the server: SNI -> tcp_proxy (istiod's
    buildGatewayNetworkFiltersFromTLSRoutes). The match's sniHosts are the chain's server names as
    written; a match repeating an SNI host already taken on this server is skipped, as Envoy would
    reject two chains with the same match."""
    services = scope_services(snapshot, proxy)
    chains = []
    seen: set[str] = set()
    for vs in snapshot.virtual_services_for_gateway(proxy.namespace, server.gateway_name):
        if not _binds_to_server(vs, server):
            continue
        for rule in vs.tls:
            for match in rule.match or ():
                if not _gateway_match(match, server.gateway_name, server.port):
                    continue
                snis = list(match.sni_hosts or ())
                if any(sni in seen for sni in snis):
                    continue
                seen.update(snis)
                chain = p.listener_components.FilterChain(name=f"{vs.namespace}/{vs.name}")
                if "*" not in snis:
                    chain.filter_chain_match.server_names.extend(snis)
                chain.filters.extend(network_filters)
                chain.filters.extend(_rule_tcp_filters(snapshot, proxy, vs, rule, services, server))
                chains.append(chain)
    return chains


def tcp_chain(
    snapshot: Snapshot, proxy: Proxy, server: GatewayServer, network_filters: list[Any]
) -> Any | None:
    """The first VirtualService `tcp` route bound to the server (istiod's
    buildGatewayNetworkFiltersFromTCPRoutes)."""
    services = scope_services(snapshot, proxy)
    for vs in snapshot.virtual_services_for_gateway(proxy.namespace, server.gateway_name):
        if not _binds_to_server(vs, server):
            continue
        for rule in vs.tcp:
            matches = rule.match or [None]
            if any(m is None or _gateway_match(m, server.gateway_name, server.port) for m in matches):
                chain = p.listener_components.FilterChain(name=f"{vs.namespace}/{vs.name}")
                chain.filters.extend(network_filters)
                chain.filters.extend(_rule_tcp_filters(snapshot, proxy, vs, rule, services, server))
                return chain
    return None


def _drop_repeated_matches(lst: p.listener.Listener) -> None:
    """Keep the first of the filter chains that match the same connections: Envoy rejects a listener
    that repeats a match, e.g. a passthrough SNI both a specific and a `*` server route (istiod's
    TestGatewayFilterChainSNIOverlap)."""
    seen: set[bytes] = set()
    kept = []
    for chain in lst.filter_chains:
        key = chain.filter_chain_match.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(chain)
    if len(kept) != len(lst.filter_chains):
        del lst.filter_chains[:]
        lst.filter_chains.extend(kept)


def _sort_filter_chains(lst: p.listener.Listener) -> None:
    """istiod's sortFilterChains: a gateway listener's chains in an order that depends on their content
    only, not on the order servers and routes were declared in, so that the same chains make the same
    listener (Envoy compares listeners as a whole: another order is an update that drains the chains).
    Chains that match every connection (no filter_chain_match) go last; the others by the deterministic
    serialization of their match, then of the whole chain. Envoy's choice of chain does not depend on
    their order (the most specific match wins), so this changes no routing."""
    if len(lst.filter_chains) < 2:
        return

    def key(chain: p.listener_components.FilterChain) -> tuple[bool, bytes, bytes]:
        match = chain.filter_chain_match.SerializeToString(deterministic=True)
        return (not match, match, chain.SerializeToString(deterministic=True))

    ordered = sorted(lst.filter_chains, key=key)
    kept = [p.listener_components.FilterChain() for _ in ordered]
    for new, old in zip(kept, ordered, strict=True):
        new.CopyFrom(old)
    del lst.filter_chains[:]
    lst.filter_chains.extend(kept)


def gateway_listeners(
    snapshot: Snapshot, proxy: Proxy, hcm_for: Any, filter_for: Any
) -> list[p.listener.Listener]:
    """`hcm_for(stat_prefix, rds)` builds the gateway HCM; `filter_for(name, config)` wraps a filter."""
    servers = snapshot.gateway_servers(proxy)
    by_key: dict[tuple[str | None, int], list[GatewayServer]] = {}
    for s in servers:
        by_key.setdefault((s.bind, s.listen_port), []).append(s)
    topology = snapshot.mesh.gateway_topology
    network_filters = authz.inbound_network_filters(snapshot, proxy)
    out = []
    for (bind, listen_port), group in sorted(by_key.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        real_port = socket_port(listen_port, proxy.port_offset)
        address = bind or "0.0.0.0"
        if real_port in RESERVED_GATEWAY_PORTS and (bind is None or bind == proxy.ip or bind in _WILDCARDS):
            snapshot.generation_errors.setdefault(
                f"listener {address}_{listen_port}",
                f"gateway port {listen_port} is the gateway proxy's own "
                f"{RESERVED_GATEWAY_PORTS[real_port]} port; its servers are left out",
            )
            continue
        if real_port != listen_port and (bind, real_port) in by_key:
            # Shifted by the port offset onto a port another server declares: two listeners on one
            # address would get the whole LDS update NACKed; the port written in the config wins.
            snapshot.generation_errors.setdefault(
                f"listener {address}_{listen_port}",
                f"gateway port {listen_port} is served on {real_port} (port offset {proxy.port_offset}), which "
                f"a server of port {real_port} already uses; its servers are left out",
            )
            continue
        lst = p.listener.Listener(
            name=naming.listener_name(address, listen_port),
            address=p.build_address(bind or proxy.ip, real_port),
            traffic_direction=p.base.OUTBOUND,
        )
        if bind and bind != proxy.ip and not bind.startswith(UNIX_ADDRESS_PREFIX):
            # An address this host lacks (yet) fails Envoy's bind, and Envoy rejects the whole LDS update
            # with it: every other server's change would stop reaching the gateway. IP_FREEBIND binds it
            # anyway; it serves once the host has the address.
            lst.freebind.value = True
        stat = f"outbound_{address}_{listen_port}"
        uses_tls = False
        plain_http = [s for s in group if s.serves_http and not s.terminates_tls]
        if plain_http:
            hcm = hcm_for(stat, naming.gateway_http_route_name(listen_port, bind))
            lst.filter_chains.add().filters.append(filter_for(HCM_NAME, hcm))
        for server in group:
            if server.terminates_tls and server.serves_http:
                chain = lst.filter_chains.add(name=https_route_name(server))
                chain.filter_chain_match.server_names.extend(_server_names(server))
                chain.filters.append(
                    filter_for(HCM_NAME, hcm_for(server.server.name or stat, https_route_name(server)))
                )
                chain.transport_socket.CopyFrom(
                    tls.transport_socket(server_tls_context(server, snapshot.mesh.tls_defaults))
                )
                uses_tls = True
            elif server.tls_mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
                lst.filter_chains.extend(passthrough_chains(snapshot, proxy, server, network_filters))
                uses_tls = True
            elif not server.serves_http:
                chain = tcp_chain(snapshot, proxy, server, network_filters)
                if chain is None:
                    continue
                if server.terminates_tls:
                    # A TLS server terminated here: VirtualService `tcp` routes carry the decrypted
                    # bytes, chosen by SNI among the servers sharing the port (istiod's gateway TCP chains).
                    chain.name = f"{chain.name}/{server.server.name or server.port}"
                    chain.filter_chain_match.server_names.extend(_server_names(server))
                    chain.transport_socket.CopyFrom(
                        tls.transport_socket(server_tls_context(server, snapshot.mesh.tls_defaults))
                    )
                    uses_tls = True
                lst.filter_chains.append(chain)
        _drop_repeated_matches(lst)
        if not lst.filter_chains:
            continue
        for chain in lst.filter_chains:
            chain.transport_socket_connect_timeout.CopyFrom(p.duration(TRANSPORT_SOCKET_CONNECT_TIMEOUT_S))
        _sort_filter_chains(lst)
        if topology is not None and topology.proxy_protocol is not None:
            # Istio's gatewayTopology.proxyProtocol; connections without a PROXY header are accepted too
            # (their true peer address is used), so local clients still reach the gateway directly.
            lst.listener_filters.add(
                name="envoy.filters.listener.proxy_protocol",
                typed_config=p.pack(
                    proxy_protocol_pb2.ProxyProtocol(allow_requests_without_proxy_protocol=True)
                ),
            )
        if uses_tls:
            lst.listener_filters.add(
                name="envoy.filters.listener.tls_inspector",
                typed_config=p.pack(p.tls_inspector.TlsInspector()),
            )
        out.append(lst)
    return out
