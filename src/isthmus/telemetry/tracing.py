"""Envoy's tracer for the HCMs: which collector, what sampling, which headers, as istiod configures it.

`tracing_config(snapshot, proxy)` returns the `HttpConnectionManager.Tracing` to set on every HCM of a
proxy (None: tracing is off). The provider is chosen as Istio does, first match wins:

1. MeshConfig ``defaultProviders.tracing`` naming an ``extensionProviders`` entry:
   - ``zipkin`` -> Envoy's Zipkin tracer, collector cluster ``outbound|<port>||<service host>``;
   - ``opentelemetry`` -> Envoy's OpenTelemetry tracer over gRPC (OTLP) to ``outbound|<port>||<host>``;
   - ``datadog`` -> Envoy's Datadog tracer posting to the agent at ``outbound|<port>||<host>`` (istiod's
     datadogConfig: the host is the HTTP authority, the span service name the proxy's service cluster);
   - ``skywalking`` -> Envoy's SkyWalking tracer streaming over gRPC to ``outbound|<port>||<host>`` (istiod's
     skywalkingConfig, the host as authority; ``accessToken`` is sent as the backend token, which istiod
     leaves out). Both name a mesh Service or ServiceEntry as istiod's LookupCluster resolves it
     (`xds.gen.ext_authz.lookup_cluster`): a service not in the registry, or a port this proxy has no
     cluster for (Envoy would reject the whole listener), turns tracing off and is reported in the
     generation errors. The control plane's built-in collector plays no part: spans go to the provider;
2. ``defaultConfig.tracing.zipkin.address`` (``host:port`` of a mesh service) -> Zipkin tracer there;
3. ``defaultConfig.tracing`` set, not empty, without a tracer address (e.g. only ``sampling``) -> the collector built
   into the control plane: the Zipkin tracer posting v2 JSON spans to ``/api/v2/spans`` on the control
   plane's HTTP API through the static cluster ``zipkin`` (`telemetry.envoy.static_clusters`), so asking
   for traces needs no collector of one's own (where Istio would silently have no tracer);
4. nothing configured -> no tracer, as in Istio since 1.22 (istio/istio#49615 dropped the default Zipkin
   tracer): the HCM keeps its tracing block (sampling, Istio's tags) without a provider, so Envoy's
   null tracer runs and no span is made. A tracer costs every request even when it samples 1% (the
   span and the B3 and W3C headers it injects: +29-45 µs of Envoy CPU per request over two sidecars in
   bench/dataplane.py), so it is opt-in.

Headers: the Zipkin tracer extracts and injects B3 (``x-b3-*``) and, with
``trace_context_option: USE_B3_WITH_W3C_PROPAGATION``, W3C ``traceparent``/``tracestate`` too (the
built-in collector always; a ``zipkin`` extension provider only when its ``traceContextOption`` says so,
else B3 only, as istiod's convertTraceContextOption); the HCM
generates ``x-request-id`` (Envoy's default), whose UUID carries the sampling decision across hops. The
OpenTelemetry tracer propagates W3C headers only (as in Istio).

Sampling: ``defaultConfig.tracing.sampling`` (percent) when set and not 0 (istiod's
``proxyConfigSamplingValue`` reads 0 as unset), else Istio's 1%
(`DEFAULT_SAMPLING_PERCENT`): tracing every request costs the sidecar about 180 µs of CPU. Where a tracer
is configured, a request can still be traced on demand with `x-b3-sampled: 1` or `x-client-trace-id`;
examples/bookinfo sets 100% for the demo. ``enableTracing: false`` removes the tracing block; unset means
on (Istio's default mesh config).

Span tags: Istio's ``istio.canonical_service``, ``istio.canonical_revision``, ``istio.namespace``,
``istio.mesh_id`` and ``istio.cluster_id`` literals and the four ``istio.authorization.dry_run.*`` RBAC
shadow-result tags (unless ``enableIstioTags: false``), plus ``defaultConfig.tracing.customTags``, all
sorted by name (istiod's configureCustomTags). ``max_path_tag_length`` is set only when configured
(Envoy's default is 256).

Telemetry resources (`telemetry.policy.tracing_spec`) override all of this per workload and per HCM
direction (``match.mode``: CLIENT is the outbound HCM and gateways, SERVER the inbound HCMs), as istiod's
``configureTracingFromTelemetry`` does: the provider, ``randomSamplingPercentage`` (else the MeshConfig
sampling), ``customTags`` (replacing ``defaultConfig.tracing.customTags``), ``enableIstioTags``,
``disableSpanReporting`` (no tracer on that HCM) and ``useRequestIdForTraceSampling`` (the HCM's UUID
request-id extension); with a named provider, its ``maxTagLength`` (skywalking has none) and, on gateways,
``spawn_upstream_span`` (istiod's SpawnUpstreamSpanForGateway: a gateway's server span and the client
span of its upstream call are two spans); a skywalking provider spawns upstream spans on every proxy, as
istiod sets it (Envoy's SkyWalking tracer needs them for a correct topology).
`configure_hcm(hcm, snapshot, proxy, direction)` sets both on an HCM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import base_pb2, grpc_service_pb2, http_service_pb2, http_uri_pb2
from envoy.config.trace.v3 import (
    datadog_pb2,
    http_tracer_pb2,
    opentelemetry_pb2,
    skywalking_pb2,
    zipkin_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from envoy.type.tracing.v3 import custom_tag_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf.message import Message

from isthmus.model.durations import to_seconds
from isthmus.telemetry import istio, policy
from isthmus.xds.gen.clusters import missing_cluster
from isthmus.xds.gen.ext_authz import ProviderError, lookup_cluster
from isthmus.xds.gen.protos import header_safe

if TYPE_CHECKING:
    from isthmus.model.proxy import Proxy
    from isthmus.model.snapshot import Snapshot

log = logging.getLogger(__name__)

ZIPKIN_CLUSTER = "zipkin"  # the built-in collector (static cluster to the control plane's HTTP API)
ZIPKIN_PATH = "/api/v2/spans"
DEFAULT_SAMPLING_PERCENT = 1.0
DEFAULT_MAX_PATH_TAG_LENGTH = 256
BUILTIN_COLLECTOR_HOST = "isthmus-control-plane"

_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning("%s", msg)


def _tracing_spec(snapshot: Snapshot) -> Any:
    """``defaultConfig.tracing``; None when unset or empty: Istio's `tracing: {}` (headers_test.go's
    proxy config) is a tracing block without a tracer, so it asks for nothing."""
    spec = snapshot.mesh.spec
    dc = getattr(spec, "default_config", None) if spec is not None else None
    tracing = getattr(dc, "tracing", None) if dc is not None else None
    return tracing if tracing is not None and tracing.model_fields_set else None


def tracing_enabled(snapshot: Snapshot) -> bool:
    spec = snapshot.mesh.spec
    value = getattr(spec, "enable_tracing", None) if spec is not None else None
    return value is not False


def sampling_percent(snapshot: Snapshot) -> float:
    """istiod's proxyConfigSamplingValue: 0 is proto3's unset, so it means the default 1% too, and a
    value over 100 is not clamped but reset to 1% (istiod's rule, so a typo like 1000 samples little)."""
    tracing = _tracing_spec(snapshot)
    value = getattr(tracing, "sampling", None) if tracing is not None else None
    if not value:
        return DEFAULT_SAMPLING_PERCENT
    if value > 100.0:
        return DEFAULT_SAMPLING_PERCENT
    return max(0.0, float(value))


def _extra(body: Any, *names: str) -> Any:
    for n in names:
        v = getattr(body, n, None)
        if v is not None:
            return v
        extra = getattr(body, "model_extra", None) or {}
        if n in extra:
            return extra[n]
    return None


_B3_ONLY = zipkin_pb2.ZipkinConfig.USE_B3
_B3_AND_W3C = zipkin_pb2.ZipkinConfig.USE_B3_WITH_W3C_PROPAGATION


def _zipkin(
    cluster: str,
    hostname: str,
    *,
    trace_id_128: bool = True,
    path: str = ZIPKIN_PATH,
    context: int = _B3_AND_W3C,
) -> http_tracer_pb2.Tracing.Http:
    """Envoy's Zipkin tracer with istiod's zipkinConfig fields (v2 JSON, 128-bit ids, no shared span
    context). `context`: istiod's default is B3 only (USE_B3) unless the provider asks for W3C too; the
    built-in collector keeps both so W3C-only apps join its traces."""
    cfg = zipkin_pb2.ZipkinConfig(
        collector_cluster=cluster,
        collector_endpoint=path or ZIPKIN_PATH,
        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
        trace_id_128bit=trace_id_128,
        collector_hostname=hostname,
        trace_context_option=context,  # type: ignore[arg-type]
    )
    cfg.shared_span_context.value = False
    return _http_tracer("envoy.tracers.zipkin", cfg)


def _http_tracer(name: str, cfg: Message) -> http_tracer_pb2.Tracing.Http:
    out = http_tracer_pb2.Tracing.Http(name=name)
    out.typed_config.Pack(cfg, deterministic=True)
    return out


def _envoy_grpc(cluster: str, authority: str) -> grpc_service_pb2.GrpcService:
    """A gRPC collector as istiod points tracers at one: Envoy's own gRPC client on the provider's
    outbound cluster, the service host as the :authority."""
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster, authority=authority)
    )


def _zipkin_service(tracer: http_tracer_pb2.Tracing.Http, timeout_s: float | None, headers: Any) -> None:
    """A zipkin provider's `timeout` and `headers` (istiod's zipkinConfig for Istio 1.29+ proxies): the
    collector is then an HttpService (the legacy collector fields cannot carry them), 5 s unless set;
    a header's `envName` is Envoy's %ENVIRONMENT(...)% of the proxy, as istiod's buildHTTPHeaders."""
    cfg = zipkin_pb2.ZipkinConfig()
    tracer.typed_config.Unpack(cfg)
    service = http_service_pb2.HttpService(
        http_uri=http_uri_pb2.HttpUri(
            uri=f"http://{cfg.collector_hostname}{cfg.collector_endpoint}", cluster=cfg.collector_cluster
        )
    )
    service.http_uri.timeout.FromNanoseconds(int((timeout_s if timeout_s is not None else 5.0) * 1e9))
    for h in headers or ():
        name = h.get("name") if isinstance(h, dict) else getattr(h, "name", None)
        value = h.get("value") if isinstance(h, dict) else getattr(h, "value", None)
        env = (h.get("envName") or h.get("env_name")) if isinstance(h, dict) else getattr(h, "env_name", None)
        if not name:
            continue
        service.request_headers_to_add.add(
            header=base_pb2.HeaderValue(key=name, value=f"%ENVIRONMENT({env})%" if env else str(value or ""))
        )
    for f in ("collector_cluster", "collector_endpoint", "collector_hostname"):
        cfg.ClearField(f)
    cfg.collector_service.CopyFrom(service)
    tracer.typed_config.Pack(cfg, deterministic=True)


def _otel(cluster: str, authority: str, service_name: str) -> http_tracer_pb2.Tracing.Http:
    cfg = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=_envoy_grpc(cluster, authority), service_name=service_name
    )
    return _http_tracer("envoy.tracers.opentelemetry", cfg)


def _datadog(proxy: Proxy, body: Any, hostname: str, cluster: str) -> http_tracer_pb2.Tracing.Http:
    """istiod's datadogConfig: the agent's cluster, its host as the HTTP authority and, as for
    OpenTelemetry, the proxy's service cluster as the span service name."""
    cfg = datadog_pb2.DatadogConfig(
        collector_cluster=cluster, collector_hostname=hostname, service_name=tracing_service_name(proxy)
    )
    return _http_tracer("envoy.tracers.datadog", cfg)


def _skywalking(proxy: Proxy, body: Any, hostname: str, cluster: str) -> http_tracer_pb2.Tracing.Http:
    """istiod's skywalkingConfig: only the gRPC collector, so Envoy names the service after the node's
    cluster (the bootstrap's ``<app>.<namespace>``) and the instance after the node id. istiod drops the
    provider's ``accessToken``; here it is the tracer's backend token (the OAP's authentication), since
    dropping a credential the user gave would leave the OAP refusing every segment without a word."""
    cfg = skywalking_pb2.SkyWalkingConfig(grpc_service=_envoy_grpc(cluster, hostname))
    if body.access_token:
        cfg.client_config.backend_token = body.access_token
    return _http_tracer("envoy.tracers.skywalking", cfg)


def tracing_service_name(proxy: Proxy) -> str:
    """Istio's default APP_LABEL_AND_NAMESPACE: ``<app or canonical name>.<namespace>``."""
    name = proxy.labels.get("app") or istio.canonical_service(proxy.labels, proxy.workload or proxy.instance)
    return f"{name}.{proxy.namespace}"


def _named_provider(snapshot: Snapshot) -> Any:
    spec = snapshot.mesh.spec
    if spec is None:
        return None
    defaults = getattr(spec, "default_providers", None)
    names = list(getattr(defaults, "tracing", None) or []) if defaults is not None else []
    if not names:
        return None
    for provider in getattr(spec, "extension_providers", None) or []:
        if provider.name == names[0]:
            return provider
    _warn_once(f"MeshConfig defaultProviders.tracing names {names[0]!r}, which no extensionProvider defines")
    return None


def _collector(snapshot: Snapshot, proxy: Proxy, body: Any) -> tuple[str, str]:
    """istiod's LookupCluster for a tracer's collector: (service host, ``outbound|<port>||<host>``).
    Beyond istiod, the cluster must be in this proxy's CDS: Envoy rejects a Datadog tracer (and with it
    the listener) whose cluster it lacks, and a gRPC tracer without one drops every span."""
    hostname, cluster = lookup_cluster(snapshot, body.service, int(body.port or 0))
    reason = missing_cluster(snapshot, proxy, cluster)
    if reason is not None:
        raise ProviderError(reason)
    return hostname, cluster


def _extension_tracer(
    snapshot: Snapshot, proxy: Proxy, kind: str | None, body: Any
) -> http_tracer_pb2.Tracing.Http:
    """The tracer of an extension provider; ProviderError says why there is none."""
    build = _COLLECTOR_TRACERS.get(kind or "")
    if build is None:
        raise ProviderError(f"{kind} is not a tracer")
    return build(proxy, body, *_collector(snapshot, proxy, body))


def _zipkin_provider(proxy: Proxy, body: Any, service: str, cluster: str) -> http_tracer_pb2.Tracing.Http:
    """istiod's zipkinConfig: 128-bit ids unless enable64bitTraceId, the provider's path, its
    traceContextOption, and its timeout / headers (an HttpService collector)."""
    no_128 = bool(_extra(body, "enable_64bit_trace_id", "enable64bitTraceId"))
    option = str(_extra(body, "trace_context_option", "traceContextOption") or "")
    tracer = _zipkin(
        cluster,
        service,
        trace_id_128=not no_128,
        path=str(_extra(body, "path") or ZIPKIN_PATH),
        # istiod's convertTraceContextOption: anything but USE_B3_WITH_W3C_PROPAGATION is B3 only.
        context=_B3_AND_W3C if option == "USE_B3_WITH_W3C_PROPAGATION" else _B3_ONLY,
    )
    timeout = getattr(body, "timeout", None)
    headers = _extra(body, "headers")
    if timeout is not None or headers:
        _zipkin_service(tracer, to_seconds(timeout) if timeout is not None else None, headers)
    return tracer


def _otel_provider(proxy: Proxy, body: Any, service: str, cluster: str) -> http_tracer_pb2.Tracing.Http:
    return _otel(cluster, service, tracing_service_name(proxy))


# Every extension-provider tracer, built from (proxy, provider body, service host, its cluster): istiod
# finds the collector with LookupCluster and this proxy must have a cluster for it. Not every builder
# needs every argument.
_COLLECTOR_TRACERS: dict[str, Callable[[Proxy, Any, str, str], http_tracer_pb2.Tracing.Http]] = {
    "zipkin": _zipkin_provider,
    "opentelemetry": _otel_provider,
    "datadog": _datadog,
    "skywalking": _skywalking,
}


def provider_config(snapshot: Snapshot, proxy: Proxy) -> http_tracer_pb2.Tracing.Http | None:
    """The tracer (`HttpConnectionManager.Tracing.provider`) for this proxy (None: none configured)."""
    provider = _named_provider(snapshot)
    if provider is not None:
        try:
            return _extension_tracer(snapshot, proxy, provider.kind, provider.body)
        except ProviderError as exc:
            _warn_once(
                f"tracing provider {provider.name!r} ({provider.kind}): {exc}; spans go to the built-in "
                "collector"
            )
    return _legacy_tracer(snapshot, proxy)


def _legacy_tracer(snapshot: Snapshot, proxy: Proxy) -> http_tracer_pb2.Tracing.Http | None:
    """``defaultConfig.tracing.zipkin.address`` when it names a mesh service, else the built-in collector
    when ``defaultConfig.tracing`` is set at all; None without it (Istio's default: no tracer)."""
    tracing = _tracing_spec(snapshot)
    if tracing is None:
        return None
    zipkin = getattr(tracing, "zipkin", None)
    address = getattr(zipkin, "address", None) if zipkin is not None else None
    if address:
        host, _, port = address.rpartition(":")
        if host and port.isdigit():
            fqdn = host
            if "." not in host:
                fqdn = f"{host}.{proxy.namespace}.svc.{snapshot.mesh.domain_suffix}"
            elif host.count(".") == 1:
                fqdn = f"{host}.svc.{snapshot.mesh.domain_suffix}"
            if snapshot.registry.service(fqdn) is not None:
                return _zipkin(f"outbound|{port}||{fqdn}", fqdn)
        _warn_once(
            f"defaultConfig.tracing.zipkin.address {address!r} is not a mesh service; using the built-in collector"
        )
    return _zipkin(ZIPKIN_CLUSTER, BUILTIN_COLLECTOR_HOST)


# istiod's optionalPolicyTags: the RBAC filter's shadow (dry-run) results, read from its dynamic
# metadata; with no default value a tag stays off the span unless a dry-run policy ran.
_DRY_RUN_TAGS = (
    ("istio.authorization.dry_run.allow_policy.name", "istio_dry_run_allow_shadow_effective_policy_id"),
    ("istio.authorization.dry_run.allow_policy.result", "istio_dry_run_allow_shadow_engine_result"),
    ("istio.authorization.dry_run.deny_policy.name", "istio_dry_run_deny_shadow_effective_policy_id"),
    ("istio.authorization.dry_run.deny_policy.result", "istio_dry_run_deny_shadow_engine_result"),
)


def _dry_run_tags() -> list[custom_tag_pb2.CustomTag]:
    out = []
    for tag, key in _DRY_RUN_TAGS:
        ct = custom_tag_pb2.CustomTag(tag=tag)
        ct.metadata.kind.request.SetInParent()
        ct.metadata.metadata_key.key = "envoy.filters.http.rbac"
        ct.metadata.metadata_key.path.add(key=key)
        out.append(ct)
    return out


def _istio_tags(snapshot: Snapshot, proxy: Proxy) -> list[custom_tag_pb2.CustomTag]:
    """istiod's buildServiceTags plus optionalPolicyTags."""
    tags = {
        "istio.canonical_revision": istio.canonical_revision(proxy.labels),
        "istio.canonical_service": istio.canonical_service(proxy.labels, proxy.workload or proxy.instance),
        "istio.cluster_id": istio.DEFAULT_CLUSTER,
        "istio.mesh_id": snapshot.mesh.trust_domain,
        "istio.namespace": proxy.namespace,
    }
    literal = [
        custom_tag_pb2.CustomTag(tag=k, literal=custom_tag_pb2.CustomTag.Literal(value=v))
        for k, v in tags.items()
    ]
    return literal + _dry_run_tags()


def _user_tag(name: str, tag: Any) -> custom_tag_pb2.CustomTag | None:
    ct = custom_tag_pb2.CustomTag(tag=name)
    if getattr(tag, "formatter", None) is not None:
        ct.value = tag.formatter.value or ""
    elif tag.literal is not None:
        ct.literal.value = tag.literal.value or ""
    elif tag.environment is not None:
        ct.environment.name = tag.environment.name or ""
        ct.environment.default_value = tag.environment.default_value or ""
    elif tag.header is not None and not header_safe(tag.header.name or ""):
        # istiod's validation accepts NUL/CR/LF in the header's name, Envoy's HTTP_HEADER_NAME rule
        # refuses it (the listener NACKed). No request has such a header, so the tag is always what
        # Envoy gives for a missing one: the default value, or no tag.
        if not tag.header.default_value:
            return None
        ct.literal.value = tag.header.default_value
    elif tag.header is not None:
        ct.request_header.name = tag.header.name or ""
        ct.request_header.default_value = tag.header.default_value or ""
    else:
        return None
    return ct


def _custom_tags(
    snapshot: Snapshot,
    proxy: Proxy,
    telemetry_tags: Any = None,
    *,
    istio_tags: bool | None = None,
) -> list[custom_tag_pb2.CustomTag]:
    """istiod's configureCustomTags: Istio's tags (unless disabled: by Telemetry ``enableIstioTags``, else
    by ``defaultConfig.tracing.enableIstioTags``), then Telemetry ``customTags`` or, when it has none,
    ``defaultConfig.tracing.customTags``; all sorted by tag name as istiod sorts them."""
    tracing = _tracing_spec(snapshot)
    if istio_tags is None:
        legacy = getattr(tracing, "enable_istio_tags", None) if tracing is not None else None
        istio_tags = legacy is not False
    out = _istio_tags(snapshot, proxy) if istio_tags else []
    user = telemetry_tags or (getattr(tracing, "custom_tags", None) if tracing is not None else None) or {}
    out.extend(ct for name, tag in user.items() if (ct := _user_tag(name, tag)) is not None)
    out.sort(key=lambda ct: ct.tag)
    return out


def tracing_config(
    snapshot: Snapshot, proxy: Proxy, direction: str = "outbound"
) -> hcm.HttpConnectionManager.Tracing | None:
    """The HCM tracing block for `proxy`'s HCMs of `direction` ("outbound": sidecar outbound and gateways,
    "inbound"), or None (no tracer): Telemetry disables span reporting or has no usable provider, or,
    without Telemetry tracing, MeshConfig enableTracing is false."""
    return _tracing_for(snapshot, proxy, policy.tracing_spec(snapshot, proxy, policy.mode_of(direction)))


def _tracing_for(
    snapshot: Snapshot, proxy: Proxy, spec: policy.TracingSpec | None
) -> hcm.HttpConnectionManager.Tracing | None:
    if spec is not None:
        return _telemetry_tracing(snapshot, proxy, spec)
    if not tracing_enabled(snapshot):
        return None
    return _block(
        snapshot, provider_config(snapshot, proxy), sampling_percent(snapshot), _custom_tags(snapshot, proxy)
    )


def _telemetry_tracing(
    snapshot: Snapshot, proxy: Proxy, spec: policy.TracingSpec
) -> hcm.HttpConnectionManager.Tracing | None:
    if spec.disabled or spec.provider is None:
        return None
    max_tag_length = None
    spawn_upstream = False
    if spec.provider is policy.IMPLICIT:
        # A Telemetry resource asking for tracing without naming a provider: istiod would warn in its log
        # and make no span; the built-in collector takes them instead.
        tracer = _legacy_tracer(snapshot, proxy) or _zipkin(ZIPKIN_CLUSTER, BUILTIN_COLLECTOR_HOST)
    else:
        try:
            tracer = _extension_tracer(snapshot, proxy, spec.provider.kind, spec.provider.body)
        except ProviderError as exc:
            # istiod only logs it (configureFromProviderConfig's error) and leaves the HCM without tracing.
            policy.report(
                snapshot,
                proxy,
                "tracing",
                f"tracing provider {spec.provider.name!r} ({spec.provider.kind}): {exc}; tracing is off",
            )
            return None
        # istiod's configureFromProviderConfig: the provider's maxTagLength wins over ProxyConfig's, and a
        # gateway (Router) spawns an upstream span (SpawnUpstreamSpanForGateway, on since 1.28, always
        # since 1.31), so its server span and the client span of its upstream call are two spans; a
        # SkyWalking tracer spawns them on every proxy (its topology needs the client span).
        max_tag_length = getattr(spec.provider.body, "max_tag_length", None) or None
        spawn_upstream = proxy.kind == "gateway" or spec.provider.kind == "skywalking"
    sampling = spec.sampling if spec.sampling is not None else sampling_percent(snapshot)
    tags = _custom_tags(snapshot, proxy, spec.custom_tags, istio_tags=spec.enable_istio_tags)
    out = _block(snapshot, tracer, sampling, tags, max_tag_length)
    if spawn_upstream:
        out.spawn_upstream_span.value = True
    return out


def _block(
    snapshot: Snapshot,
    tracer: http_tracer_pb2.Tracing.Http | None,
    sampling: float,
    tags: list[custom_tag_pb2.CustomTag],
    max_tag_length: int | None = None,
) -> hcm.HttpConnectionManager.Tracing:
    """The HCM tracing block; without `tracer` it has no provider (Envoy's null tracer), as istiod's.
    ``max_path_tag_length``: the provider's, else ``defaultConfig.tracing.maxPathTagLength``, else unset
    as istiod leaves it (Envoy's default is 256, `DEFAULT_MAX_PATH_TAG_LENGTH`)."""
    out = hcm.HttpConnectionManager.Tracing(
        client_sampling=percent_pb2.Percent(value=100.0),
        random_sampling=percent_pb2.Percent(value=sampling),
        overall_sampling=percent_pb2.Percent(value=100.0),
    )
    if tracer is not None:
        out.provider.CopyFrom(tracer)
    tracing = _tracing_spec(snapshot)
    max_len = max_tag_length or (
        getattr(tracing, "max_path_tag_length", None) if tracing is not None else None
    )
    if max_len:
        out.max_path_tag_length.value = int(max_len)
    out.custom_tags.extend(tags)
    return out


def configure_hcm(m: hcm.HttpConnectionManager, snapshot: Snapshot, proxy: Proxy, direction: str) -> None:
    """Set an HCM's tracer and, under Telemetry tracing, its UUID request-id extension
    (``useRequestIdForTraceSampling``), as istiod does."""
    spec = policy.tracing_spec(snapshot, proxy, policy.mode_of(direction))
    trace = _tracing_for(snapshot, proxy, spec)
    if trace is not None:
        m.tracing.CopyFrom(trace)
    if spec is not None and not spec.use_request_id:
        cfg = uuid_pb2.UuidRequestIdConfig()
        cfg.use_request_id_for_trace_sampling.value = False
        m.request_id_extension.typed_config.Pack(cfg, deterministic=True)


# Headers an app must forward for its spans to join one trace (Istio's FAQ), for tools and docs.
PROPAGATED_HEADERS = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)
