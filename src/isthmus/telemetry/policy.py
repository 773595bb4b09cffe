"""The Telemetry API (telemetry.istio.io): which Telemetry resources apply to a proxy, merged as istiod
merges them (``pilot/pkg/model/telemetry.go``), per workload mode.

Scope and precedence (`applicable`): the oldest selector-less Telemetry of the root namespace (MeshConfig
``rootNamespace``) applies mesh-wide, then the oldest selector-less one of the proxy's namespace, then
every one of that namespace whose ``selector.matchLabels`` all hold on the proxy, oldest first (istiod's
``applicableTelemetries`` appends each match, so a newer one overrides an older one where they overlap);
later entries override earlier ones as below. Resources are taken oldest first (creation timestamp, then
the order the store saw them); two selector-less Telemetries in a namespace (only the oldest is used),
or two selecting one workload, are ambiguous and ``isthmus analyze`` reports IST0160 / IST0159.

Modes: CLIENT is the sidecar's outbound HCM and gateways (reporter=source), SERVER the sidecar's inbound
listeners (reporter=destination); ``match.mode`` CLIENT_AND_SERVER (or no match) is both.

- tracing (`tracing_spec`): MeshConfig ``defaultProviders.tracing[0]`` first, then each ``tracing`` entry in
  order (root, namespace, workload) overrides, for the modes it matches, the provider (first of
  ``providers``), ``disableSpanReporting``, ``customTags`` (the whole map), ``randomSamplingPercentage``,
  ``useRequestIdForTraceSampling`` and ``enableIstioTags``. Without any Telemetry tracing and without a
  default provider, tracing stays as MeshConfig configures it (`tracing.tracing_config`'s legacy path).
  Isthmus difference: where a Telemetry tracing entry resolves to no provider (istiod then makes no
  span and only warns in its log), Isthmus uses its implicit one (``defaultConfig.tracing.zipkin`` or the
  built-in collector) unless ``enableTracing: false``. With no tracing configured at all there is no
  tracer, as in Istio since 1.22.
- access logging (`access_log_providers`, istiod's ``mergeLogs``): providers named, for this mode, by the
  most specific level that names any (else ``defaultProviders.accessLogging``); each entry matching the
  mode enables its providers (an entry without providers: its parent's) or, with ``disabled: true``,
  disables them. A provider's ``filter.expression`` (a CEL expression for Envoy's
  ``envoy.access_loggers.extension_filters.cel``) is the one of the last entry of this mode that names it.
  None means MeshConfig ``accessLogFile``: no Telemetry logging and no default provider, or (as istiod's
  ``len(cfgs) == 0`` fallback) no access-log provider enabled nor disabled for this mode; an empty list
  (providers disabled) means no file access log at all, MeshConfig's included.
- metrics (`metrics_policy`): providers as for logging (default ``prometheus``); overrides are a deep merge
  per metric and mode (``disabled``, ``tagOverrides`` by tag name); ``disabled: true`` with ``ALL_METRICS`` or
  no metric drops every metric for that mode, until a later override for that mode re-enables them. Applied by the control plane where it computes the metrics
  (`core.Telemetry`).

Providers (`find_provider`): MeshConfig ``extensionProviders`` (names compared case-insensitively), then
Istio's built-ins ``prometheus``, ``stackdriver`` (defined, not translated) and ``envoy`` (the file access
log to the proxy's stdout, which is its envoy.log here, in MeshConfig's accessLogEncoding/accessLogFormat;
as in Istio, never to ``accessLogFile``). Isthmus implements zipkin, opentelemetry, datadog and skywalking
tracers, the prometheus metrics and the access loggers envoyFileAccessLog, envoyHttpAls (Envoy's
http_grpc), envoyTcpAls (tcp_grpc) and envoyOtelAls (open_telemetry): the gRPC ones stream to the provider's service through its
``outbound|<port>||<host>`` cluster and, as in istiod, every access-log provider goes on HTTP connection
managers and TCP proxies alike (`telemetry.envoy`). A Telemetry naming any other kind (or a
provider no one defines, or a gRPC log provider whose service is not in the registry) is reported in the
snapshot's generation errors (status ``generationErrors``) and that provider is left out.

Everything here is a pure function of (snapshot, proxy labels and namespace), memoized in the snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from isthmus.config.store import Config
    from isthmus.model.proxy import Proxy
    from isthmus.model.snapshot import Snapshot

Mode = Literal["CLIENT", "SERVER"]

ALL_METRICS = "ALL_METRICS"
# Telemetry metric enum -> the istio_* metric it names.
METRIC_NAMES: dict[str, str] = {
    "REQUEST_COUNT": "istio_requests_total",
    "REQUEST_DURATION": "istio_request_duration_milliseconds",
    "REQUEST_SIZE": "istio_request_bytes",
    "RESPONSE_SIZE": "istio_response_bytes",
    "TCP_OPENED_CONNECTIONS": "istio_tcp_connections_opened_total",
    "TCP_CLOSED_CONNECTIONS": "istio_tcp_connections_closed_total",
    "TCP_SENT_BYTES": "istio_tcp_sent_bytes_total",
    "TCP_RECEIVED_BYTES": "istio_tcp_received_bytes_total",
    "GRPC_REQUEST_MESSAGES": "istio_request_messages_total",
    "GRPC_RESPONSE_MESSAGES": "istio_response_messages_total",
}
BUILTIN_METRICS_PROVIDER = "prometheus"
BUILTIN_LOG_PROVIDER = "envoy"
STDOUT = "/dev/stdout"
TRACING_KINDS = frozenset({"zipkin", "opentelemetry", "datadog", "skywalking"})
# The kinds istiod makes an access log of (`telemetryAccessLog`); only these count for the accessLogFile
# fallback. The gRPC ones stream to the service they name (`telemetry.envoy`).
LOGGING_KINDS = frozenset({"envoy_file_access_log", "envoy_http_als", "envoy_tcp_als", "envoy_otel_als"})
METRICS_KINDS = frozenset({"prometheus"})


def mode_of(direction: str) -> Mode:
    """Sidecar outbound and gateways are the CLIENT, sidecar inbound the SERVER."""
    return "SERVER" if direction == "inbound" else "CLIENT"


def _modes(match: Any) -> tuple[Mode, ...]:
    mode = getattr(match, "mode", None) if match is not None else None
    if mode == "CLIENT":
        return ("CLIENT",)
    if mode == "SERVER":
        return ("SERVER",)
    return ("CLIENT", "SERVER")


# --- providers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str  # ExtensionProvider oneof name: zipkin, opentelemetry, envoy_file_access_log, prometheus, ...
    body: Any = None
    builtin: bool = False


# Istio's DefaultMeshConfig extensionProviders: prometheus, stackdriver and envoy. A MeshConfig provider
# of the same name replaces one (ApplyMeshConfig merges them by name); the others stay defined.
# stackdriver is defined but not translated (reported where named, as an undefined name would be).
BUILTIN_STACKDRIVER_PROVIDER = "stackdriver"
_BUILTINS = {
    BUILTIN_METRICS_PROVIDER: Provider(BUILTIN_METRICS_PROVIDER, "prometheus", None, True),
    BUILTIN_STACKDRIVER_PROVIDER: Provider(BUILTIN_STACKDRIVER_PROVIDER, "stackdriver", None, True),
    BUILTIN_LOG_PROVIDER: Provider(BUILTIN_LOG_PROVIDER, "envoy_file_access_log", None, True),
}


def _mesh_spec(snapshot: Snapshot) -> Any:
    return snapshot.mesh.spec


def find_provider(snapshot: Snapshot, name: str) -> Provider | None:
    spec = _mesh_spec(snapshot)
    for p in (getattr(spec, "extension_providers", None) or []) if spec is not None else []:
        if p.name.lower() == name.lower() and p.kind is not None:
            return Provider(p.name, p.kind, p.body)
    return _BUILTINS.get(name.lower())


def _default_providers(snapshot: Snapshot, signal: str) -> list[str]:
    spec = _mesh_spec(snapshot)
    dp = getattr(spec, "default_providers", None) if spec is not None else None
    names = list(getattr(dp, signal, None) or []) if dp is not None else []
    if signal == "metrics" and not names:
        return [BUILTIN_METRICS_PROVIDER]  # Istio's default mesh config
    return names


def _names(providers: Any) -> list[str]:
    return [p.name for p in providers or () if p.name]


# --- scope --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applicable:
    """The Telemetry resources in scope for one workload, least specific first."""

    root: Config | None = None
    namespace: Config | None = None
    workloads: tuple[Config, ...] = ()  # every selector match, oldest first

    @property
    def configs(self) -> tuple[Config, ...]:
        return tuple(c for c in (self.root, self.namespace) if c is not None) + self.workloads

    def tracing(self) -> list[Any]:
        return [t for c in self.configs for t in c.spec.tracing]

    def metrics(self) -> list[Any]:
        return [m for c in self.configs for m in c.spec.metrics]

    def logging(self) -> list[list[Any]]:
        return [list(c.spec.access_logging) for c in self.configs if c.spec.access_logging]


def _selector(cfg: Config) -> Mapping[str, str]:
    sel = cfg.spec.selector
    return sel.match_labels if sel is not None else {}


def _namespace_wide(configs: list[Config], namespace: str) -> Config | None:
    for c in configs:
        if c.namespace == namespace and not _selector(c) and not c.spec.target_ref and not c.spec.target_refs:
            return c
    return None


def applicable(snapshot: Snapshot, namespace: str, labels: Mapping[str, str]) -> Applicable:
    def compute() -> Applicable:
        configs = snapshot.configs.get("Telemetry", [])  # oldest first
        if not configs:
            return Applicable()
        root_ns = snapshot.mesh.root_namespace
        root = _namespace_wide(configs, root_ns)
        ns = _namespace_wide(configs, namespace) if namespace != root_ns else None
        # No `break`: istiod (since targetRef support) applies every matching workload Telemetry in order.
        workloads = tuple(
            c
            for c in configs
            if c.namespace == namespace
            and (sel := _selector(c))
            and all(labels.get(k) == v for k, v in sel.items())
        )
        return Applicable(root, ns, workloads)

    return snapshot.memo(("telemetry", namespace, frozenset(labels.items())), compute)


def applicable_to(snapshot: Snapshot, proxy: Proxy) -> Applicable:
    return applicable(snapshot, proxy.namespace, proxy.labels)


def report(snapshot: Snapshot, proxy: Proxy, what: str, message: str) -> None:
    """Keep a problem in the snapshot's generation errors (shown in status), once per workload."""
    key = f"Telemetry {what} for {proxy.namespace}/{proxy.workload or proxy.instance}"
    errors = snapshot.generation_errors
    current = errors.get(key)
    if current is None:
        errors[key] = message
    elif message not in current:
        errors[key] = f"{current}; {message}"


# --- tracing -----------------------------------------------------------------------------------------

# The implicit provider: MeshConfig's own tracing (defaultConfig.tracing.zipkin or the built-in collector).
IMPLICIT = Provider("", "implicit", None, True)


@dataclass
class TracingSpec:
    provider: Provider | None = None
    disabled: bool = False
    sampling: float | None = None
    custom_tags: Mapping[str, Any] | None = None
    use_request_id: bool = True
    enable_istio_tags: bool = True


def tracing_spec(snapshot: Snapshot, proxy: Proxy, mode: Mode) -> TracingSpec | None:
    """The merged tracing for `mode`, or None when no Telemetry tracing nor default provider applies."""
    entries = applicable_to(snapshot, proxy).tracing()
    defaults = _default_providers(snapshot, "tracing")
    if not entries and not defaults:
        return None
    spec = TracingSpec()
    if defaults:
        spec.provider = _tracing_provider(snapshot, proxy, defaults[0])
    elif getattr(_mesh_spec(snapshot), "enable_tracing", None) is not False:
        spec.provider = IMPLICIT
    for t in entries:
        if mode not in _modes(t.match):
            continue
        names = _names(t.providers)
        if names:
            spec.provider = _tracing_provider(snapshot, proxy, names[0])
        if t.disable_span_reporting is not None:
            spec.disabled = t.disable_span_reporting
        if t.custom_tags:
            spec.custom_tags = t.custom_tags
        if t.random_sampling_percentage is not None:
            spec.sampling = max(0.0, min(100.0, float(t.random_sampling_percentage)))
        if t.use_request_id_for_trace_sampling is not None:
            spec.use_request_id = t.use_request_id_for_trace_sampling
        if t.enable_istio_tags is not None:
            spec.enable_istio_tags = t.enable_istio_tags
    if spec.provider is None:
        spec.disabled = True
    return spec


def _tracing_provider(snapshot: Snapshot, proxy: Proxy, name: str) -> Provider | None:
    p = find_provider(snapshot, name)
    if p is None:
        report(snapshot, proxy, "tracing", f"tracing provider {name!r} is not defined in extensionProviders")
        return None
    if p.kind not in TRACING_KINDS:
        report(
            snapshot,
            proxy,
            "tracing",
            f"tracing provider {name!r} ({p.kind}) is not supported (Isthmus has zipkin, opentelemetry, "
            "datadog and skywalking tracers); tracing is off",
        )
        return None
    return p


# --- access logging ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LogSpec:
    disabled: bool = False
    expression: str | None = None


def _merge_logs(levels: list[list[Any]], defaults: list[str], mode: Mode) -> dict[str, _LogSpec]:
    """istiod's ``mergeLogs``: provider name -> enabled (with its filter) or disabled, for `mode`."""
    if not levels:
        return {n: _LogSpec() for n in defaults}
    in_scope = set(defaults)
    filters: dict[str, str | None] = {}
    for entries in levels:
        names: set[str] = set()
        for e in entries:
            if mode not in _modes(e.match):
                continue
            for n in _names(e.providers):
                names.add(n)
                filters[n] = (e.filter.expression if e.filter is not None else None) or None
        if names:
            in_scope = names
    out: dict[str, _LogSpec] = {}
    parent = list(defaults)
    for entries in levels:
        for e in entries:
            names = _names(e.providers) or parent
            parent = names
            if mode not in _modes(e.match):
                continue
            for n in names:
                if n in in_scope:
                    out[n] = _LogSpec(True) if e.disabled else _LogSpec(False, filters.get(n))
    return out


def access_log_providers(
    snapshot: Snapshot, proxy: Proxy, mode: Mode
) -> list[tuple[Provider, str | None]] | None:
    """(provider, CEL filter expression or None) in provider-name order; None: MeshConfig's file log."""
    levels = applicable_to(snapshot, proxy).logging()
    defaults = _default_providers(snapshot, "access_logging")
    if not levels and not defaults:
        return None
    configured = False  # istiod's cfgs non-empty: some access-log provider is enabled or disabled
    out = []
    for name, spec in sorted(_merge_logs(levels, defaults, mode).items()):
        p = find_provider(snapshot, name)
        if p is None:
            report(snapshot, proxy, "accessLogging", f"access log provider {name!r} is not defined")
            continue
        configured = configured or p.kind in LOGGING_KINDS
        if spec.disabled:
            continue
        if p.kind not in LOGGING_KINDS:
            report(
                snapshot,
                proxy,
                "accessLogging",
                f"access log provider {name!r} ({p.kind}) is not supported (istiod makes no access log of "
                "it; the access log kinds are envoyFileAccessLog, envoyHttpAls, envoyTcpAls and envoyOtelAls); "
                "it is left out",
            )
            continue
        out.append((p, spec.expression))
    return out if configured else None


# --- metrics ----------------------------------------------------------------------------------------------

# A tag override's UPSERT value: what Isthmus can compute from an access-log entry.
_LITERAL = re.compile(r"""^\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*$""")
_HEADER = re.compile(r"""^\s*request\.headers\s*\[\s*(?:'([^'\\]+)'|"([^"\\]+)")\s*\]\s*$""")
ATTRIBUTES = frozenset(
    {
        "request.method",
        "request.host",
        "request.path",
        "request.url_path",
        "request.scheme",
        "request.protocol",
        "request.id",
        "request.useragent",
        "response.code",
        "response.grpc_status",
        "upstream.address",
        "source.address",
        "destination.address",
    }
)


@dataclass(frozen=True)
class TagValue:
    """A parsed UPSERT value: a literal, a request header, an attribute, or an existing label's value."""

    kind: Literal["literal", "header", "attribute"]
    arg: str


def parse_tag_value(expr: str) -> TagValue | None:
    """The forms Isthmus evaluates: 'literal' / "literal", request.headers['name'], a few attributes
    (`ATTRIBUTES`). Anything else is None (refused at apply time)."""
    m = _LITERAL.match(expr)
    if m:
        return TagValue("literal", m.group(1) if m.group(1) is not None else m.group(2))
    m = _HEADER.match(expr)
    if m:
        return TagValue("header", (m.group(1) or m.group(2)).lower())
    if expr.strip() in ATTRIBUTES:
        return TagValue("attribute", expr.strip())
    return None


@dataclass(frozen=True)
class MetricOverride:
    disabled: bool = False
    tags: tuple[tuple[str, TagValue | None], ...] = ()  # (label, value); None = REMOVE; sorted by label


@dataclass(frozen=True)
class MetricsPolicy:
    enabled: bool = True
    overrides: Mapping[str, MetricOverride] = field(default_factory=dict)  # by istio_* metric name

    @property
    def is_default(self) -> bool:
        return self.enabled and not self.overrides

    def headers(self) -> tuple[str, ...]:
        """Request headers the UPSERT values read (the access logger must log them)."""
        out = {
            v.arg for o in self.overrides.values() for _, v in o.tags if v is not None and v.kind == "header"
        }
        return tuple(sorted(out))


DEFAULT_METRICS = MetricsPolicy()
NO_METRICS = MetricsPolicy(enabled=False)


def metrics_policy(snapshot: Snapshot, proxy: Proxy, mode: Mode) -> MetricsPolicy:
    app = applicable_to(snapshot, proxy)
    if not app.configs and _default_providers(snapshot, "metrics") == [BUILTIN_METRICS_PROVIDER]:
        return DEFAULT_METRICS
    return snapshot.memo(
        ("telemetry_metrics", tuple(c.key for c in app.configs), mode),
        lambda: _metrics_policy(snapshot, proxy, app, mode),
    )


def _metrics_policy(snapshot: Snapshot, proxy: Proxy, app: Applicable, mode: Mode) -> MetricsPolicy:
    entries = app.metrics()
    defaults = _default_providers(snapshot, "metrics")
    in_scope = list(defaults)
    for m in entries:
        names = _names(m.providers)
        if names:
            in_scope = names
    prometheus = []
    for name in in_scope:
        p = find_provider(snapshot, name)
        if p is None:
            report(snapshot, proxy, "metrics", f"metrics provider {name!r} is not defined")
        elif p.kind not in METRICS_KINDS:
            report(
                snapshot,
                proxy,
                "metrics",
                f"metrics provider {name!r} ({p.kind}) is not supported (Isthmus serves prometheus metrics "
                "only); it is left out",
            )
        else:
            prometheus.append(name)
    if not prometheus:
        return NO_METRICS
    # Istio configures each provider on its own; with one prometheus pipeline here, the first one's view
    # (in provider-name order) is the one served.
    target = sorted(prometheus)[0]
    all_disabled = False
    merged: dict[str, dict[str, Any]] = {}  # metric -> {"disabled": bool|None, "tags": {name: TagValue|None}}
    parent = list(defaults)
    for m in entries:
        names = _names(m.providers) or parent
        parent = names
        if target not in names:
            continue
        for o in m.overrides:
            match = o.match
            metric = getattr(match, "metric", None) if match is not None else None
            if mode not in _modes(match):
                continue
            # istiod's isAllMetrics: ALL_METRICS or no metric at all.
            if metric in (None, ALL_METRICS) and o.disabled:
                all_disabled = True
                continue
            all_disabled = False
            metrics = list(METRIC_NAMES) if metric in (None, ALL_METRICS) else [metric]
            for name in metrics:
                cur = merged.setdefault(METRIC_NAMES[name], {"disabled": None, "tags": {}})
                if o.disabled is not None:
                    cur["disabled"] = o.disabled
                for tag, to in o.tag_overrides.items():
                    if to.operation == "REMOVE":
                        cur["tags"][tag] = None
                    else:
                        value = parse_tag_value(to.value or "")
                        if value is None:  # refused at apply time; never reached for stored resources
                            continue
                        cur["tags"][tag] = value
    if all_disabled:
        return NO_METRICS
    overrides = {
        name: MetricOverride(bool(cur["disabled"]), tuple(sorted(cur["tags"].items())))
        for name, cur in merged.items()
        if cur["disabled"] or cur["tags"]
    }
    return MetricsPolicy(True, overrides) if overrides else DEFAULT_METRICS


__all__ = [
    "ALL_METRICS",
    "METRIC_NAMES",
    "Applicable",
    "MetricOverride",
    "MetricsPolicy",
    "Provider",
    "TagValue",
    "TracingSpec",
    "access_log_providers",
    "applicable",
    "find_provider",
    "metrics_policy",
    "mode_of",
    "parse_tag_value",
    "report",
    "tracing_spec",
]
