"""Transport security in generated config: auto mTLS, DestinationRule TLS, inbound mTLS chains.

Plain Envoy has no `istio.alpn` filter, so mesh mTLS is marked by the client cluster's own ALPN list
(istiod's names: `istio-http/1.1` / `istio-h2` for HTTP, `istio` for TCP). Servers match those ALPNs
(tls_inspector) to tell mesh mTLS from an application's own TLS on PERMISSIVE ports, and match any
TLS on STRICT ports, as istiod's filter-chain options do (`pilot/pkg/networking/core/filterchain_options.go`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import base_pb2, proxy_protocol_pb2, substitution_format_string_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2 as filter_state_value_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import (
    set_filter_state_pb2 as network_set_filter_state_pb2,
)
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from isthmus.model import authn
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Endpoint, Protocol, Resolution, Service
from isthmus.security import sds
from isthmus.xds.gen import naming
from isthmus.xds.gen import protos as p

if TYPE_CHECKING:
    from isthmus.xds.gen.clusters import ClusterSpec

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"

ALPN_HTTP11 = "istio-http/1.1"
ALPN_H2 = "istio-h2"
ALPN_TCP = "istio"
MESH_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
MESH_TCP_ALPNS = ("istio", "istio-peer-exchange")
MESH_ALPNS = (*MESH_TCP_ALPNS, *MESH_HTTP_ALPNS)

# --- TCP tunnels to ports of sniffed protocol -------------------------------------------------------
# istiod's clusters offer the TCP ALPN (`istio`) and its istio.alpn HTTP filter overrides it per request
# with `istio-http/1.1` / `istio-h2`, so a server sidecar takes HTTP to its HTTP chain and raw TCP to its
# TCP chain, even on one auto-detected port. Without istio.alpn, the cluster of an auto port offers the
# HTTP ALPN (the port's HTTP traffic must land on the HCM chain), so a CONNECT tunnel riding that cluster
# would reach the server's HTTP chain too, and its bytes would be parsed as HTTP (400). The outbound HTTP
# proxy therefore carries a set_filter_state filter that sets Envoy's well-known
# `envoy.network.application_protocols` (the upstream ALPN override the router applies to the stream's
# upstream connection) from the route's metadata: the CONNECT routes of auto ports carry `istio` there,
# other routes nothing, and an empty value sets nothing. (Envoy refuses to enable a disabled filter from a
# route without a per-route config, which set_filter_state has none of, hence metadata.)
TCP_TUNNEL_ALPN_FILTER = "isthmus.tcp_tunnel_alpn"
_APPLICATION_PROTOCOLS_KEY = "envoy.network.application_protocols"
_ROUTE_METADATA = ("isthmus", "tunnel_alpn")


def _alpn_override(text: str, *, skip_if_empty: bool = False) -> filter_state_value_pb2.FilterStateValue:
    """The upstream ALPN override (`envoy.network.application_protocols`) set to `text`, a format string."""
    return filter_state_value_pb2.FilterStateValue(
        object_key=_APPLICATION_PROTOCOLS_KEY,
        format_string=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=text), omit_empty_values=skip_if_empty
        ),
        skip_if_empty=skip_if_empty,
    )


def tcp_tunnel_alpn_filter() -> p.hcm.HttpFilter:
    """The outbound HTTP proxy's filter overriding a tunnel's upstream ALPN with its route's choice."""
    namespace, key = _ROUTE_METADATA
    value = _alpn_override(f"%METADATA(ROUTE:{namespace}:{key})%", skip_if_empty=True)
    config = set_filter_state_pb2.Config(on_request_headers=[value])
    return p.hcm.HttpFilter(name=TCP_TUNNEL_ALPN_FILTER, typed_config=p.pack(config))


def enable_tcp_tunnel_alpn(route: Any) -> None:
    """Make a CONNECT route's tunnel offer the TCP ALPN (see tcp_tunnel_alpn_filter)."""
    namespace, key = _ROUTE_METADATA
    route.metadata.filter_metadata[namespace].fields[key].string_value = ALPN_TCP


def tunnel_takes_mesh_alpn(tls_settings: Any | None) -> bool:
    """Whether a tunnel's upstream TLS is the mesh's (auto mTLS or ISTIO_MUTUAL), whose ALPN marks TCP vs
    HTTP for the server sidecar; a DestinationRule's own TLS (SIMPLE, MUTUAL) keeps its ALPN, as istiod
    marks such clusters `alpn_override: false` for istio.alpn."""
    if tls_settings is None:
        return True
    return tls_settings.mode == "ISTIO_MUTUAL"


# A gateway's tcp_proxy (VirtualService `tcp` and `tls` routes) to an auto port has the same problem with
# no HTTP stream to hang the choice on: a network set_filter_state filter before the tcp_proxy sets the
# override for every connection of the chain, and tcp_proxy applies the downstream connection's
# `envoy.network.application_protocols` to its upstream connection's transport socket.
TCP_PROXY_ALPN_FILTER = "isthmus.tcp_proxy_alpn"


def tcp_proxy_alpn_filter() -> p.listener_components.Filter:
    """The network filter making a gateway tcp_proxy's mesh mTLS offer the TCP ALPN (`istio`)."""
    config = network_set_filter_state_pb2.Config(on_new_connection=[_alpn_override(ALPN_TCP)])
    return p.listener_components.Filter(name=TCP_PROXY_ALPN_FILTER, typed_config=p.pack(config))


_TLS_VERSIONS = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


def tls_version(name: str | None) -> int | None:
    return _TLS_VERSIONS.get(name.upper()) if name else None


def transport_socket(context: Any) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=p.pack(context))


def raw_socket() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_SOCKET, typed_config=p.pack(raw_buffer_pb2.RawBuffer()))


def _auto_mtls_matches() -> tuple[Any, Any]:
    """Prototypes of auto mTLS's two transport_socket_matches (copied, never modified): the TLS one
    without its transport_socket, which differs per cluster, and the plaintext one."""
    tls_match = p.cluster.Cluster.TransportSocketMatch(name="tlsMode-istio")
    tls_match.match.fields["tlsMode"].string_value = "istio"
    plain = p.cluster.Cluster.TransportSocketMatch(
        name="tlsMode-disabled", match=struct_pb2.Struct(), transport_socket=raw_socket()
    )
    return tls_match, plain


_TLS_MATCH, _PLAIN_MATCH = _auto_mtls_matches()
_UPSTREAM_TLS_TYPE_URL = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name


# --- identities ---------------------------------------------------------------------------------


def spiffe(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def service_identities(snapshot: Snapshot, svc: Service) -> list[str]:
    """The SPIFFE ids a client accepts from a service: its endpoints' service accounts (+ SE SANs).
    Once per snapshot and service (every cluster of it, in every scope, asks); the snapshot's registry
    owns the service, so its id is stable for the memo's lifetime."""
    return snapshot.memo(("service_identities", id(svc)), lambda: _service_identities(snapshot, svc))


def _service_identities(snapshot: Snapshot, svc: Service) -> list[str]:
    """istiod's PushContext.initServiceAccounts: the service accounts of every endpoint (with a sidecar or
    not: a pod's identity is its service account, and a server without a sidecar may still hold a mesh
    certificate, as TestTrustDomainAliasSecureNaming's do), plus a ServiceEntry's subjectAltNames, each
    expanded to the MeshConfig trustDomainAliases (spiffe.ExpandWithTrustDomains). A Kubernetes
    Service's service-account annotations count as its declared accounts (istiod's ConvertService)."""
    td = snapshot.mesh.trust_domain
    ids = set(svc.subject_alt_names)
    ids.update(spiffe(td, svc.namespace, sa) for sa in svc.kube_service_accounts)
    for port in svc.ports:
        for ep in snapshot.registry.endpoints(svc, port.port):
            if ep.service_account:
                ids.add(spiffe(td, ep.namespace, ep.service_account))
    return sorted(expand_with_trust_domains(ids, snapshot.mesh.trust_domain_aliases))


def expand_with_trust_domains(ids: Iterable[str], aliases: Iterable[str]) -> set[str]:
    """istio's spiffe.ExpandWithTrustDomains: every SPIFFE id also under each trust domain alias (the
    originals kept). Only ids that spiffe.ParseIdentity reads (``spiffe://<td>/ns/<ns>/sa/<sa>``) are
    expanded; anything else (``spiffe://td/custom-suffix``, ``spiffe:///x``, not SPIFFE) is kept as is."""
    out = set(ids)
    aliases = tuple(aliases)
    for ident in list(out):
        if not ident.startswith("spiffe://"):
            continue
        parts = ident.removeprefix("spiffe://").split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            continue
        rest = "/".join(parts[1:])
        out.update(f"spiffe://{alias}/{rest}" for alias in aliases)
    return out


# --- endpoints ----------------------------------------------------------------------------------


def endpoint_mtls_enabled(snapshot: Snapshot, ep: Endpoint) -> bool:
    """An endpoint is sent mTLS when it has a sidecar and its (workload, port) mode is not DISABLE."""
    if not ep.sidecar:
        return False
    policies = snapshot.configs.get("PeerAuthentication", [])
    if not policies:
        return True
    mode = authn.workload_mtls(policies, ep.namespace, ep.labels, snapshot.mesh.root_namespace).for_port(
        ep.port
    )
    return mode != authn.DISABLE


def endpoint_metadata(lb_endpoint: Any) -> None:
    lb_endpoint.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].fields["tlsMode"].string_value = "istio"


# --- clusters -----------------------------------------------------------------------------------


def _client_alpn(protocol: Protocol, h2: bool) -> list[str]:
    if protocol.is_http or protocol is Protocol.AUTO:
        return [ALPN_H2] if h2 else [ALPN_HTTP11]
    return [ALPN_TCP]


def _istio_mutual_bytes(spec: ClusterSpec, sni: str, sans: Sequence[str], h2: bool) -> bytes:
    """The ISTIO_MUTUAL UpstreamTlsContext's bytes (sds.istio_mutual_upstream_tls_context, serialized),
    from the shared serialized common context: building the context to pack it copied all of it."""
    return sds.istio_mutual_upstream_tls_context_bytes(
        sans, sni=sni, alpn_protocols=_client_alpn(spec.port.protocol, h2)
    )


def _set_tls_socket(sock: base_pb2.TransportSocket, context: bytes) -> None:
    """`transport_socket(UpstreamTlsContext)` in place, from the context's bytes."""
    sock.name = TLS_SOCKET
    sock.typed_config.type_url = _UPSTREAM_TLS_TYPE_URL
    sock.typed_config.value = context


def _uses_h2(cluster: Any) -> bool:
    any_opts = cluster.typed_extension_protocol_options.get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    )
    if any_opts is None:
        return False
    # Clusters of one policy share their options: decode each distinct value once.
    value = any_opts.value
    h2 = _H2_BY_OPTIONS.get(value)
    if h2 is None:
        opts = p.http_options.HttpProtocolOptions.FromString(value)
        h2 = _H2_BY_OPTIONS[value] = opts.explicit_http_config.HasField("http2_protocol_options")
        if len(_H2_BY_OPTIONS) > 4096:
            _H2_BY_OPTIONS.clear()
    return h2


_H2_BY_OPTIONS: dict[bytes, bool] = {}


def _simple_or_mutual(tls: Any, h2: bool, default_sans: Iterable[str]) -> tls_pb2.UpstreamTlsContext:
    """DestinationRule SIMPLE / MUTUAL (TLS origination), istiod's constructUpstreamTLS. `default_sans` are
    checked when the rule names none (a ServiceEntry's subjectAltNames). The caller has already dropped
    the TLS of a Secret credential a sidecar may not have (_privileged_credential)."""
    ctx = tls_pb2.UpstreamTlsContext()
    common = ctx.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    credential = tls.credential_name
    if tls.mode == "MUTUAL":
        if credential:
            common.tls_certificate_sds_secret_configs.append(
                sds.sds_secret_config(sds.kubernetes_secret_name(credential))
            )
        elif tls.client_certificate and tls.private_key:
            common.tls_certificate_sds_secret_configs.append(
                sds.sds_secret_config(sds.file_cert_name(tls.client_certificate, tls.private_key))
            )
    if tls.insecure_skip_verify:
        # istiod: a credential's context then has no validation at all (ApplyCustomSDSToClientCommonTLSContext
        # returns early), a file one an empty validation_context; both verify nothing.
        if not credential:
            common.validation_context.SetInParent()
    else:
        vc = common.combined_validation_context
        vc.default_validation_context.SetInParent()
        for san in tls.subject_alt_names or default_sans:
            vc.default_validation_context.match_subject_alt_names.append(string_pb2.StringMatcher(exact=san))
        if tls.ca_crl:
            vc.default_validation_context.crl.filename = tls.ca_crl
        if credential:
            root = sds.kubernetes_secret_name(credential) + sds.CACERT_SUFFIX
        else:
            root = sds.file_root_name(tls.ca_certificates) if tls.ca_certificates else sds.FILE_ROOT_SYSTEM
        vc.validation_context_sds_secret_config.CopyFrom(sds.sds_secret_config(root))
    if h2:
        common.alpn_protocols.append("h2")
    if tls.sni:
        ctx.sni = tls.sni
    return ctx


def apply_upstream_tls(snapshot: Snapshot, proxy: Proxy, cluster: Any, spec: ClusterSpec) -> None:
    """istiod's buildUpstreamTLSSettings: the DR's tls if set, else auto mTLS for in-mesh services.

    A passthrough (resolution NONE) service's cluster is istiod's ORIGINAL_DST one, which takes the
    DR's tls as any cluster does (TestPassThroughFilterChain forces mTLS that way); here it is the
    dynamic forward proxy cluster standing for it, which carries the same transport socket, with the
    same SNI and SAN checks for CONNECT tunnels as for HTTP (_keep_dfp_tls_checks). A DYNAMIC_DNS service's
    cluster takes the DR's tls too (never auto mTLS), with the request's host as SNI and SAN unless the
    rule names them (istiod's TestSidecarDynamicDNSClusters)."""
    _apply_upstream_tls(snapshot, proxy, cluster, spec)
    _keep_dfp_tls_checks(cluster)


def _apply_upstream_tls(snapshot: Snapshot, proxy: Proxy, cluster: Any, spec: ClusterSpec) -> None:
    svc = spec.service
    if svc.resolution is Resolution.DYNAMIC_DNS and spec.policy.tls is None:
        # No auto mTLS: the hosts a DYNAMIC_DNS cluster resolves are no registry endpoints.
        return
    sni_default = naming.outbound_sni(spec.port.port, spec.subset, svc.hostname)
    h2 = _uses_h2(cluster)
    tls = spec.policy.tls
    if tls is not None and len((tls.sni or "").encode()) > 255:
        # istiod passes `sni` through unchecked; Envoy's UpstreamTlsContext.sni is at most 255 bytes (no
        # TLS server name is longer) and the whole CDS update would be NACKed: the guard leaves it out.
        raise ValueError(f"tls.sni is {len(tls.sni.encode())} bytes long; a TLS server name has at most 255")
    if tls is not None:
        # A tls block without a mode is DISABLE, the enum's zero value (istiod's buildUpstreamTLSSettings
        # takes any non-nil settings as the user's): plaintext, not auto mTLS.
        mode = tls.mode or "DISABLE"
        if mode == "DISABLE":
            return
        if mode == "ISTIO_MUTUAL":
            sans = list(tls.subject_alt_names or ()) or service_identities(snapshot, svc)
            if svc.resolution is Resolution.DYNAMIC_DNS and not tls.sni:
                # The upstream host is the request's: its name is the SNI and the SAN checked (below).
                _auto_sni_and_san(cluster, tls)
                ctx_bytes = _istio_mutual_bytes(spec, "", sans, h2)
            else:
                ctx_bytes = _istio_mutual_bytes(spec, tls.sni or sni_default, sans, h2)
            _set_tls_socket(cluster.transport_socket, ctx_bytes)
            return
        dr_selector = spec.dr is not None and spec.dr.selector is not None
        if _privileged_credential(tls.credential_name) and proxy.kind == "sidecar" and not dr_selector:
            # istiod keeps Secrets from every sidecar a selector-less rule reaches: no TLS at all.
            return
        # istiod's constructUpstreamTLS: a ServiceEntry's (External registry) identities when the rule has none.
        default_sans = () if svc.is_kubernetes else service_identities(snapshot, svc)
        ctx = _simple_or_mutual(tls, h2, default_sans)
        # istiod's applyTLSDefaults: MeshConfig tlsDefaults' curves and ciphers for TLS origination.
        defaults = snapshot.mesh.tls_defaults
        if defaults is not None:
            if defaults.ecdh_curves:
                ctx.common_tls_context.tls_params.ecdh_curves[:] = defaults.ecdh_curves
            if defaults.cipher_suites:
                ctx.common_tls_context.tls_params.cipher_suites[:] = defaults.cipher_suites
        if not tls.sni:
            _auto_sni_and_san(cluster, tls)
        cluster.transport_socket.CopyFrom(transport_socket(ctx))
        return
    if svc.resolution is Resolution.DYNAMIC_DNS:
        return
    if not _auto_mtls(snapshot, svc):
        return
    ctx = _istio_mutual_bytes(spec, sni_default, service_identities(snapshot, svc), h2)
    # A passthrough service's cluster stands for istiod's ORIGINAL_DST one (no per-endpoint matches) where
    # it resolves the authority; on a gateway it is EDS (clusters._resolves_authority) and takes the
    # per-endpoint matches below, as istiod's EDS fallback does.
    dfp = cluster.cluster_type.name == DFP_CLUSTER_TYPE
    if (svc.resolution is Resolution.PASSTHROUGH and dfp) or _passthrough_lb(spec):
        _apply_passthrough_auto_mtls(snapshot, cluster, spec, ctx)
        return
    matches = cluster.transport_socket_matches
    matches.append(_TLS_MATCH)
    _set_tls_socket(matches[-1].transport_socket, ctx)
    matches.append(_PLAIN_MATCH)


def _auto_sni_and_san(cluster: Any, tls: Any) -> None:
    """istiod's setAutoSniAndAutoSanValidation, decided on the rule's own SANs: the SNI is the request's
    host, and so is the SAN checked unless the rule names SANs or skips verification. The options are made
    for a TCP cluster too (HTTP/1.1, as istiod's clusterWrapper.build). Also the TLS of a DYNAMIC_DNS
    (dynamic forward proxy) cluster without `sni`, as istiod's TestSidecarDynamicDNSClusters expects: each
    request may reach another host of the wildcard."""
    opts = _http_options(cluster)
    if opts is None:
        opts = p.http_options.HttpProtocolOptions()
        opts.explicit_http_config.http_protocol_options.SetInParent()
    opts.upstream_http_protocol_options.auto_sni = True
    if not tls.subject_alt_names and not tls.insecure_skip_verify:
        opts.upstream_http_protocol_options.auto_san_validation = True
    _store_http_options(cluster, opts)


def apply_upstream_proxy_protocol(cluster: Any, proxy_protocol: Any | None) -> None:
    """istiod's applyUpstreamProxyProtocol (DestinationRule trafficPolicy.proxyProtocol): the PROXY header
    goes first on every upstream connection, before any TLS, so whatever transport socket the cluster
    has (plaintext, TLS, or each auto-mTLS match) is wrapped in the PROXY protocol one."""
    if proxy_protocol is None:
        return
    config = proxy_protocol_pb2.ProxyProtocolConfig(
        version=proxy_protocol_pb2.ProxyProtocolConfig.V2
        if proxy_protocol.version == "V2"
        else proxy_protocol_pb2.ProxyProtocolConfig.V1
    )

    def wrapped(inner: base_pb2.TransportSocket) -> base_pb2.TransportSocket:
        transport = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(config=config)
        transport.transport_socket.CopyFrom(inner)
        return base_pb2.TransportSocket(name=PROXY_PROTOCOL_SOCKET, typed_config=p.pack(transport))

    if cluster.HasField("transport_socket") or not cluster.transport_socket_matches:
        inner = cluster.transport_socket if cluster.HasField("transport_socket") else raw_socket()
        cluster.transport_socket.CopyFrom(wrapped(inner))
    for match in cluster.transport_socket_matches:
        match.transport_socket.CopyFrom(wrapped(match.transport_socket))


def _passthrough_lb(spec: ClusterSpec) -> bool:
    lb = spec.policy.load_balancer
    return lb is not None and lb.simple == "PASSTHROUGH"


def _apply_passthrough_auto_mtls(snapshot: Snapshot, cluster: Any, spec: ClusterSpec, ctx: bytes) -> None:
    """Auto mTLS for a passthrough service or under a DestinationRule `loadBalancer: PASSTHROUGH`
    (istiod's BestEffortInferServiceMTLSMode + applyUpstreamTLSSettings): the cluster is ORIGINAL_DST, which
    has no per-endpoint transport socket matches, so mTLS is all or nothing: on when every endpoint of
    the port has a sidecar, plaintext for all when any lacks one (or there is none)."""
    endpoints = snapshot.registry.endpoints(spec.service, spec.port.port)
    if not endpoints or not all(ep.sidecar for ep in endpoints):
        return
    _set_tls_socket(cluster.transport_socket, ctx)


DFP_CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"


def _keep_dfp_tls_checks(cluster: Any) -> None:
    """Keep a dynamic forward proxy cluster's TLS checks those of its UpstreamTlsContext.

    Envoy's DFP cluster factory turns the cluster-level `upstream_http_protocol_options` auto_sni and
    auto_san_validation on when the cluster has no such options of its own (ClusterFactory::
    createClusterWithConfig), which is the case of a TCP port's cluster: no HttpProtocolOptions. The
    router then takes the SNI and the one SAN it checks from the request's authority; for a CONNECT
    tunnel that is the tunnel's `host:port`, so the SAN list (the pod address) replaces the context's
    SPIFFE identities and mTLS to a sidecar fails (`ssl.fail_verify_san`), while HTTP ports, whose
    clusters carry HttpProtocolOptions, keep the context's checks. Explicit HTTP/1.1 options (as istiod's
    clusterWrapper.build gives a TCP cluster) keep those defaults off: tunnels then carry the SNI and
    the verified identity istiod sets, as HTTP does. Options already there (a DR's auto SNI) are kept."""
    if cluster.cluster_type.name != DFP_CLUSTER_TYPE:
        return
    if not cluster.HasField("transport_socket") and not cluster.transport_socket_matches:
        return  # plaintext: the filter state's SNI and SANs have nothing to act on
    if _http_options(cluster) is not None:
        return
    opts = p.http_options.HttpProtocolOptions()
    opts.explicit_http_config.http_protocol_options.SetInParent()
    _store_http_options(cluster, opts)


def _privileged_credential(name: str | None) -> bool:
    """A credentialName naming a Secret (a ConfigMap of CA certificates is readable by anyone)."""
    return bool(name) and not name.startswith(sds.CONFIGMAP_PREFIX)


def _auto_mtls(snapshot: Snapshot, svc: Service) -> bool:
    if not snapshot.mesh.enable_auto_mtls or svc.mesh_external:
        return False
    namespace = svc.namespace
    return snapshot.memo(("auto_mtls", namespace), lambda: _namespace_allows_mtls(snapshot, namespace))


def _namespace_allows_mtls(snapshot: Snapshot, namespace: str) -> bool:
    """Whether the namespace's (and mesh's) PeerAuthentication leaves auto mTLS on: once per snapshot and
    namespace (every cluster asks, and the answer scans every policy)."""
    policies = snapshot.configs.get("PeerAuthentication", [])
    return authn.namespace_mode(policies, namespace, snapshot.mesh.root_namespace) != authn.DISABLE


def _http_options(cluster: Any) -> Any | None:
    any_opts = cluster.typed_extension_protocol_options.get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    )
    if any_opts is None:
        return None
    opts = p.http_options.HttpProtocolOptions()
    any_opts.Unpack(opts)
    return opts


def _store_http_options(cluster: Any, opts: Any) -> None:
    cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].CopyFrom(p.pack(opts))


# --- inbound ------------------------------------------------------------------------------------


# istiod's SupportedCiphers (`pilot/pkg/security/authn/utils/utils.go`): what mesh mTLS servers accept
# unless MeshConfig meshMTLS.cipherSuites names others.
INBOUND_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)


def inbound_tls_context(snapshot: Snapshot, http: bool) -> tls_pb2.DownstreamTlsContext:
    """istiod's BuildInboundTLS: a client certificate from the trust domain or an alias (deduplicated,
    TrustDomainsForValidation), TLS 1.2 (1.3 with meshMTLS.minProtocolVersion TLSV1_3) to 1.3, and the mesh's
    ciphers. Once per snapshot: every inbound chain shares it (read-only)."""
    return snapshot.memo(("inbound_tls_context", http), lambda: _inbound_tls_context(snapshot, http))


def _inbound_tls_context(snapshot: Snapshot, http: bool) -> tls_pb2.DownstreamTlsContext:
    mesh = snapshot.mesh
    domains = tuple(dict.fromkeys((mesh.trust_domain, *mesh.trust_domain_aliases)))
    alpn = ("h2", "http/1.1") if http else ("istio-peer-exchange", "h2", "http/1.1")
    ctx = sds.istio_mutual_downstream_tls_context(trust_domains=domains, alpn_protocols=alpn)
    settings = getattr(mesh.spec, "mesh_mtls", None) if mesh.spec is not None else None
    params = ctx.common_tls_context.tls_params
    if settings is not None and settings.min_protocol_version == "TLSV1_3":
        params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    params.cipher_suites.extend(
        (settings.cipher_suites if settings is not None else None) or INBOUND_CIPHER_SUITES
    )
    return ctx


def inbound_mode(snapshot: Snapshot, proxy: Proxy, port: int) -> str:
    policies = snapshot.configs.get("PeerAuthentication", [])
    if not policies:
        return authn.PERMISSIVE
    return authn.workload_mtls(
        policies, proxy.namespace, proxy.labels, snapshot.mesh.root_namespace
    ).for_port(port)
