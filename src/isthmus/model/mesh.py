"""Effective mesh-wide settings: the MeshConfig resource with Istio's defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.api.networking import LocalityLoadBalancerSetting
from isthmus.api.types import parse_env_bool
from isthmus.model.durations import to_seconds

# proxyMetadata (and node metadata) key: "false" keeps a delta sidecar's http_proxy table inline, its
# virtual hosts named as istiod names them in Envoy's own config dump, instead of over VHDS.
VHDS_KEY = "ISTHMUS_VHDS"

# Istio's DefaultMeshConfig: locality load balancing on (it acts only with outlier detection or distribute).
_DEFAULT_LOCALITY_LB = LocalityLoadBalancerSetting(enabled=True)


@dataclass(frozen=True)
class MeshSettings:
    trust_domain: str = "cluster.local"
    trust_domain_aliases: tuple[str, ...] = ()
    root_namespace: str = "istio-system"
    domain_suffix: str = "cluster.local"
    outbound_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    connect_timeout_s: float = 10.0
    # The MeshConfig `defaultHttpRetryPolicy` (an HTTPRetry model) or None for Istio's built-in default.
    default_http_retry: Any = None
    default_service_export_to: frozenset[str] = frozenset({"*"})
    default_virtual_service_export_to: frozenset[str] = frozenset({"*"})
    default_destination_rule_export_to: frozenset[str] = frozenset({"*"})
    enable_auto_mtls: bool = True
    access_log_file: str = ""
    access_log_encoding: str = "TEXT"
    access_log_format: str = ""
    # Istio's DefaultMeshConfig: EnableTracing true (telemetry.tracing reads an unset value the same way).
    enable_tracing: bool = True
    h2_upgrade_policy: str = "DO_NOT_UPGRADE"
    protocol_detection_timeout_s: float = 0.0
    dns_refresh_rate_s: float = 60.0
    termination_drain_duration_s: float = 5.0
    drain_duration_s: float = 45.0
    tracing_sampling: float = 1.0
    tcp_keepalive: Any = None
    gateway_topology: Any = None
    # MeshConfig.tlsDefaults (TLSConfig): gateway TLS servers' and DestinationRule TLS origination's
    # defaults (istiod's applyDownstreamTLSDefaults / applyTLSDefaults).
    tls_defaults: Any = None
    # MeshConfig.localityLbSetting, Istio's default `{enabled: true}` when unset (DestinationRules' own
    # setting wins over it: xds.gen.locality.effective_setting).
    locality_lb_setting: Any = field(default_factory=lambda: _DEFAULT_LOCALITY_LB)
    # Kubernetes Ingress handling (istiod's DefaultMeshConfig: STRICT, class "istio", the
    # istio-ingressgateway Service, no selector of its own): see model.ingress.
    ingress_controller_mode: str = "STRICT"
    ingress_class: str = "istio"
    ingress_selector: str = ""
    ingress_service: str = "istio-ingressgateway"
    # Proxies speak delta (incremental) xDS unless proxyMetadata ISTIO_DELTA_XDS is false (Istio >= 1.22).
    delta_xds: bool = True
    # A delta sidecar's http_proxy virtual hosts come over VHDS unless proxyMetadata ISTHMUS_VHDS is false.
    vhds: bool = True
    spec: Any = field(default=None, compare=False)

    @classmethod
    def from_spec(cls, spec: Any | None) -> MeshSettings:
        if spec is None:
            return cls()

        def get(name: str, default: Any = None) -> Any:
            value = getattr(spec, name, None)
            # Unset and empty are the same in MeshConfig (proto3 semantics).
            return default if value is None or value == [] or value == "" else value

        otp = get("outbound_traffic_policy")
        # ALLOW_ANY is the default's mode, but a message that is set replaces the default one whole
        # (ApplyMeshConfig's jsonpb gives each field present a fresh value): `outboundTrafficPolicy: {}`
        # has the enum's zero value, REGISTRY_ONLY, as a Sidecar's empty policy does.
        outbound_policy: str = "ALLOW_ANY" if otp is None else (getattr(otp, "mode", None) or "REGISTRY_ONLY")
        default_config = get("default_config")

        def dc(n, d=None):
            return (getattr(default_config, n, None) if default_config is not None else None) or d

        tracing = dc("tracing")
        sampling = getattr(tracing, "sampling", None) if tracing is not None else None
        locality = get("locality_lb_setting")
        return cls(
            trust_domain=get("trust_domain", "cluster.local"),
            # ApplyMeshConfig keeps the aliases as a set, sorted (sets.New(...).SortedList()): the order
            # of the SAN matchers and of the principals expanded over the trust domain bundle.
            trust_domain_aliases=tuple(sorted(set(get("trust_domain_aliases", ())))),
            root_namespace=get("root_namespace", "istio-system"),
            outbound_policy=outbound_policy,
            connect_timeout_s=to_seconds(get("connect_timeout"), 10.0),
            default_http_retry=get("default_http_retry_policy"),
            default_service_export_to=frozenset(get("default_service_export_to", ["*"])),
            default_virtual_service_export_to=frozenset(get("default_virtual_service_export_to", ["*"])),
            default_destination_rule_export_to=frozenset(get("default_destination_rule_export_to", ["*"])),
            enable_auto_mtls=get("enable_auto_mtls", True),
            access_log_file=get("access_log_file", ""),
            access_log_encoding=get("access_log_encoding", "TEXT"),
            access_log_format=get("access_log_format", ""),
            enable_tracing=get("enable_tracing", True),
            h2_upgrade_policy=get("h2_upgrade_policy", "DO_NOT_UPGRADE"),
            protocol_detection_timeout_s=to_seconds(get("protocol_detection_timeout"), 0.0),
            dns_refresh_rate_s=to_seconds(get("dns_refresh_rate"), 60.0),
            termination_drain_duration_s=to_seconds(dc("termination_drain_duration"), 5.0),
            drain_duration_s=to_seconds(dc("drain_duration"), 45.0),
            tracing_sampling=float(sampling) if sampling is not None else 1.0,
            tcp_keepalive=get("tcp_keepalive"),
            gateway_topology=dc("gateway_topology"),
            tls_defaults=get("tls_defaults"),
            locality_lb_setting=locality if locality is not None else _DEFAULT_LOCALITY_LB,
            # An explicit UNSPECIFIED is kept: istiod then processes no Ingress (shouldProcessIngressWithClass).
            ingress_controller_mode=getattr(spec, "ingress_controller_mode", None) or "STRICT",
            ingress_class=get("ingress_class", "istio"),
            ingress_selector=get("ingress_selector", ""),
            ingress_service=get("ingress_service", "istio-ingressgateway"),
            # Not a boolean: the default, as istio-agent does (validation warns).
            delta_xds=parse_env_bool(dict(dc("proxy_metadata") or {}).get("ISTIO_DELTA_XDS"), True)
            is not False,
            vhds=parse_env_bool(dict(dc("proxy_metadata") or {}).get(VHDS_KEY), True) is not False,
            spec=spec,
        )
