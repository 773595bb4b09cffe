"""Istio's mesh-config tests (``pkg/config/mesh/mesh_test.go``), ported to the ``isthmus.dev/v1alpha1
MeshConfig`` resource: a MeshConfig YAML -> the effective mesh settings (`MeshSettings`) and, where it
matters, what a proxy gets from the generators.

How Istio overlays a user's mesh config (``ApplyMeshConfig`` in ``pkg/config/mesh/mesh.go``) and how this
file checks it:
- The YAML is unmarshalled over ``DefaultMeshConfig()`` with the legacy jsonpb decoder, which gives every
  field present a fresh value (``m.NewField``): a top-level field *replaces* its default, nested messages
  included (``outboundTrafficPolicy: {}`` is a new message whose mode is the enum's zero, REGISTRY_ONLY).
- ``defaultConfig`` (ProxyConfig) *merges* field by field over the default ProxyConfig, its
  ``proxyMetadata`` map key by key (mergeMap); a nested message in it (``tracing``) is replaced whole.
- ``defaultProviders`` merges per signal: setting ``tracing`` keeps the default ``metrics``.
- ``extensionProviders`` merge by name: a provider named like a built-in (prometheus, stackdriver, envoy)
  replaces it, any other is appended, so the built-ins stay defined.
- ``trustDomainAliases``: the union with the defaults' (none), deduplicated and sorted.

Defaults are Istio's current ``DefaultMeshConfig()`` / ``DefaultProxyConfig()`` (since 1.22 the default
ProxyConfig has no Zipkin tracer: istio/istio#49615; compatibility-version-1.21 puts it back), with the
standard install's ``defaultProviders.metrics: [prometheus]`` (istio-discovery's mesh ConfigMap).

Ported per Istio test function: TestApplyProxyConfig (apply again, apply proxy metadata, apply proxy
metadata to mesh config, apply should not modify), TestDefaultProxyConfig / TestDefaultMeshConfig (the
defaults written out validate, are accepted, and equal the implicit defaults, field by field and in the
generated xDS), TestApplyMeshConfigDefaults (one defaultConfig field; the overrides case), TestDeepMerge
(every case, against Istio's real defaults), kubemesh TestNewConfigMapWatcher (its steps, with the watched
directory's mesh file as the ConfigMap; ``trustDomain: something.new`` reaching the SANs), plus what a
proxy gets from each translated field.

Disagreements found and fixed: `MeshSettings` now keeps trustDomainAliases deduplicated and sorted, reads
``outboundTrafficPolicy: {}`` as REGISTRY_ONLY and defaults enableTracing to true; `telemetry.policy` knows
the built-in ``stackdriver`` provider.

Skipped groups:
- discoveryAddress, configPath, ingressClass, serviceCluster & co. ("apply single", the configPath case,
  ingressClass overrides): refused by `api.support` (not translated: the local agent and runner own them).
- Unknown fields (TestApplyMeshConfigDefaults' ``clusterLocalNamespaces`` and ``serviceSettings[].host``):
  Istio's ApplyYAML retries with AllowUnknownFields; Isthmus rejects unknown fields by design.
- ``concurrency`` default: the runner's ``--envoy-concurrency`` stands in for the injector's CPU-based one.
- TestApplyMeshNetworksDefaults, TestResolveHostsInNetworksConfig: multi-cluster mesh networks.
- TestExtraConfigmap (a user ConfigMap layered under istiod's), the file watchers
  (TestWatcherShouldNotifyHandlers, TestNewWatcherWithBadInputShouldFail, meshwatcher's): Kubernetes
  ConfigMap and file-watch machinery of istiod's mesh config (one MeshConfig resource here).
- enablePrometheusMerge, proxyListenPort, proxyInboundListenPort, ingress*: not translated (refused).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from isthmus.agent.bootstrap import build_bootstrap
from isthmus.agent.envoy import EnvoyProcess
from isthmus.api import check_supported, loader
from isthmus.api.networking import TrafficPolicy
from isthmus.config.directory import DirectorySource
from isthmus.config.store import Store
from isthmus.model.mesh import MeshSettings
from isthmus.model.proxy_config import effective_proxy_config
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import policy
from isthmus.xds.gen import naming
from isthmus.xds.gen.locality import effective_setting

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, generate, route_table, sidecar, snapshot, vhost

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
INBOUND = "127.7.0.5_8080"  # web-0's inbound listener (target port 8080)


def mesh(spec: str) -> str:
    return (
        "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")
        + "\n"
    )


def resource(spec: str) -> Any:
    (r,) = loader.load_text(mesh(spec), "mesh.yaml")
    return r


def settings(spec: str) -> MeshSettings:
    """The effective settings of a MeshConfig with this spec (refused fields fail the test)."""
    r = resource(spec)
    assert [e.message for e in check_supported(r)] == []
    return MeshSettings.from_spec(r.spec)


DEFAULTS = MeshSettings()


def with_defaults(**changes: Any) -> MeshSettings:
    return dataclasses.replace(DEFAULTS, **changes)


def comparable(s: MeshSettings) -> dict[str, Any]:
    """Every effective setting (the raw spec aside), models compared by value."""
    out = {}
    for f in dataclasses.fields(s):
        if f.name == "spec":
            continue
        v = getattr(s, f.name)
        out[f.name] = v.model_dump() if hasattr(v, "model_dump") else v
    return out


def listeners(snap: Any) -> dict[str, dict[str, Any]]:
    return generate(snap, sidecar(), naming.LISTENER_TYPE)


def outbound_hcm(snap: Any) -> dict[str, Any]:
    return listeners(snap)[naming.VIRTUAL_OUTBOUND]["filter_chains"][0]["filters"][0]["typed_config"]


def inbound_sans(snap: Any) -> list[str]:
    for fc in listeners(snap)[INBOUND]["filter_chains"]:
        ts = fc.get("transport_socket")
        if ts:
            ctx = ts["typed_config"]["common_tls_context"]["combined_validation_context"]
            return [
                m["matcher"]["prefix"]
                for m in ctx["default_validation_context"]["match_typed_subject_alt_names"]
            ]
    raise AssertionError("no mTLS chain on the inbound listener")


def upstream_sans(snap: Any) -> list[str]:
    (match,) = [
        m
        for m in clusters(snap, sidecar())[REVIEWS]["transport_socket_matches"]
        if m["name"] == "tlsMode-istio"
    ]
    ctx = match["transport_socket"]["typed_config"]["common_tls_context"]["combined_validation_context"]
    return [m["matcher"]["exact"] for m in ctx["default_validation_context"]["match_typed_subject_alt_names"]]


def file_log_paths(hcm: dict[str, Any]) -> list[str]:
    return [
        a["typed_config"]["path"]
        for a in hcm.get("access_log", [])
        if a["name"] == "envoy.access_loggers.file"
    ]


# ==================================================================================================
# TestDefaultMeshConfig / TestDefaultProxyConfig: Isthmus's defaults against Istio's, field by field.

# (MeshSettings field, Istio's default, where Istio sets it)
ISTIO_DEFAULTS: list[tuple[str, Any, str]] = [
    ("trust_domain", "cluster.local", "TrustDomain: constants.DefaultClusterLocalDomain"),
    ("trust_domain_aliases", (), "TrustDomainAliases: []string{}"),
    ("root_namespace", "istio-system", "RootNamespace: constants.IstioSystemNamespace"),
    ("outbound_policy", "ALLOW_ANY", "OutboundTrafficPolicy{Mode: ALLOW_ANY}"),
    ("connect_timeout_s", 10.0, "ConnectTimeout: 10s"),
    ("default_http_retry", None, "DefaultHttpRetryPolicy unset: the built-in retry policy"),
    ("default_service_export_to", frozenset({"*"}), 'DefaultServiceExportTo: ["*"]'),
    ("default_virtual_service_export_to", frozenset({"*"}), 'DefaultVirtualServiceExportTo: ["*"]'),
    ("default_destination_rule_export_to", frozenset({"*"}), 'DefaultDestinationRuleExportTo: ["*"]'),
    ("enable_auto_mtls", True, "EnableAutoMtls: true"),
    ("access_log_file", "", 'AccessLogFile: ""'),
    ("access_log_encoding", "TEXT", "AccessLogEncoding: TEXT"),
    ("access_log_format", "", 'AccessLogFormat: ""'),
    ("enable_tracing", True, "EnableTracing: true"),
    ("h2_upgrade_policy", "DO_NOT_UPGRADE", "H2UpgradePolicy unset: the enum's zero"),
    ("protocol_detection_timeout_s", 0.0, "ProtocolDetectionTimeout: 0s"),
    ("dns_refresh_rate_s", 60.0, "DnsRefreshRate: 60s"),
    ("termination_drain_duration_s", 5.0, "DefaultProxyConfig TerminationDrainDuration: 5s"),
    ("drain_duration_s", 45.0, "DefaultProxyConfig DrainDuration: 45s"),
    ("tracing_sampling", 1.0, "no sampling: istiod's PILOT_TRACE_SAMPLING, 1%"),
    ("tcp_keepalive", None, "TcpKeepalive unset"),
    ("gateway_topology", None, "DefaultProxyConfig GatewayTopology unset"),
    ("tls_defaults", None, "TlsDefaults unset"),
    ("delta_xds", True, "ISTIO_DELTA_XDS defaults to true since 1.22"),
]


@pytest.mark.parametrize(("field", "value", "source"), ISTIO_DEFAULTS, ids=[c[0] for c in ISTIO_DEFAULTS])
def test_default_mesh_config_field(field: str, value: Any, source: str) -> None:
    assert getattr(MeshSettings(), field) == value, source
    # No MeshConfig, and a MeshConfig with an empty spec, both mean Istio's defaults.
    assert getattr(MeshSettings.from_spec(None), field) == value, source
    assert getattr(settings(""), field) == value, source


def test_default_locality_lb_setting_is_enabled() -> None:
    # LocalityLbSetting: {Enabled: true}
    for s in (MeshSettings(), settings("")):
        assert s.locality_lb_setting.enabled is True
        assert not s.locality_lb_setting.distribute and not s.locality_lb_setting.failover


def test_default_extension_and_default_providers() -> None:
    """DefaultProviders: {} and ExtensionProviders prometheus, stackdriver, envoy (envoyFileAccessLog to
    /dev/stdout): all three are defined in a mesh that defines none."""
    snap = snapshot()
    assert policy._default_providers(snap, "tracing") == []
    assert policy._default_providers(snap, "access_logging") == []
    assert {n: policy.find_provider(snap, n).kind for n in ("prometheus", "stackdriver", "envoy")} == {
        "prometheus": "prometheus",
        "stackdriver": "stackdriver",
        "envoy": "envoy_file_access_log",
    }


# DefaultMeshConfig() and DefaultProxyConfig() written out, every field Isthmus translates.
ISTIO_DEFAULT_MESH_YAML = """
enableTracing: true
accessLogFile: ""
accessLogEncoding: TEXT
accessLogFormat: ""
protocolDetectionTimeout: 0s
trustDomain: cluster.local
trustDomainAliases: []
enableAutoMtls: true
outboundTrafficPolicy: {mode: ALLOW_ANY}
localityLbSetting: {enabled: true}
rootNamespace: istio-system
connectTimeout: 10s
defaultServiceExportTo: ["*"]
defaultVirtualServiceExportTo: ["*"]
defaultDestinationRuleExportTo: ["*"]
dnsRefreshRate: 60s
defaultProviders: {}
extensionProviders:
- name: prometheus
  prometheus: {}
- name: stackdriver
  stackdriver: {}
- name: envoy
  envoyFileAccessLog: {path: /dev/stdout}
defaultConfig:
  drainDuration: 45s
  terminationDrainDuration: 5s
"""


def test_default_mesh_config_validates_and_equals_implicit_defaults() -> None:
    """TestDefaultMeshConfig / TestDefaultProxyConfig: the defaults validate (and are accepted by the
    running mesh); written out, they change nothing."""
    assert comparable(settings(ISTIO_DEFAULT_MESH_YAML)) == comparable(DEFAULTS)


@pytest.mark.parametrize("type_url", [naming.CLUSTER_TYPE, naming.LISTENER_TYPE, naming.ROUTE_TYPE])
def test_default_mesh_config_generates_what_no_mesh_config_does(type_url: str) -> None:
    implicit = generate(snapshot(), sidecar(), type_url)
    explicit = generate(snapshot(mesh(ISTIO_DEFAULT_MESH_YAML)), sidecar(), type_url)
    assert explicit == implicit


# ==================================================================================================
# TestApplyProxyConfig


def test_apply_proxy_config_apply_again() -> None:
    """drainDuration: 5s changes that field only; the other ProxyConfig defaults stay."""
    assert comparable(settings("defaultConfig: {drainDuration: 5s}")) == comparable(
        with_defaults(drain_duration_s=5.0)
    )


def test_apply_proxy_config_fields_merge_one_by_one() -> None:
    """defaultConfig merges field by field: setting one ProxyConfig field keeps every other default."""
    s = settings("defaultConfig: {terminationDrainDuration: 7s}")
    assert comparable(s) == comparable(with_defaults(termination_drain_duration_s=7.0))


PROXY_METADATA_MESH = "defaultConfig: {proxyMetadata: {merged: original, default: foo}}"


@pytest.mark.parametrize("case", ["apply proxy metadata", "apply proxy metadata to mesh config"])
def test_apply_proxy_metadata_merges_key_by_key(case: str) -> None:
    """mergeMap: the overlay's proxyMetadata keys win, the others are kept. Isthmus's overlay of the
    mesh's defaultConfig is a ProxyConfig resource (istiod's EffectiveProxyConfig merges the same way)."""
    (pc,) = loader.load_text(
        "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"
        "metadata: {name: pc, namespace: istio-system}\n"
        "spec: {environmentVariables: {merged: override, override: bar}}\n",
        "pc.yaml",
    )
    effective = effective_proxy_config(
        [pc],
        default_config=resource(PROXY_METADATA_MESH).spec.default_config,
        root_namespace="istio-system",
        namespace="default",
        labels={},
    )
    assert dict(effective.environment) == {"merged": "override", "default": "foo", "override": "bar"}


def test_apply_proxy_metadata_over_defaults() -> None:
    """Istio's default ProxyConfig has no proxyMetadata: the mesh's is the whole map."""
    effective = effective_proxy_config(
        [],
        default_config=resource(PROXY_METADATA_MESH).spec.default_config,
        root_namespace="istio-system",
        namespace="default",
        labels={},
    )
    assert dict(effective.environment) == {"merged": "original", "default": "foo"}


def test_apply_should_not_modify() -> None:
    """Computing the effective settings and proxy config leaves the MeshConfig as it was."""
    r = resource(PROXY_METADATA_MESH + "\ntrustDomainAliases: [b, a, b]")
    before = r.spec.model_dump()
    MeshSettings.from_spec(r.spec)
    effective_proxy_config(
        [], default_config=r.spec.default_config, root_namespace="istio-system", namespace="x", labels={}
    )
    snapshot(mesh(PROXY_METADATA_MESH + "\ntrustDomainAliases: [b, a, b]"))
    assert r.spec.model_dump() == before


# ==================================================================================================
# TestApplyMeshConfigDefaults

OVERRIDES = """
enableTracing: false
trustDomainAliases: ["default", "both"]
defaultServiceExportTo:
- "foo"
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
defaultProviders:
  tracing: [foo]
extensionProviders:
- name: sd
  stackdriver: {}
defaultConfig:
  tracing: {}
  concurrency: 4
"""


def test_apply_mesh_config_defaults_overrides() -> None:
    s = settings(OVERRIDES)
    assert s.enable_tracing is False
    assert s.trust_domain_aliases == ("both", "default")  # "trust domain aliases deep merge": 2, sorted
    assert s.default_service_export_to == frozenset({"foo"})
    assert s.outbound_policy == "REGISTRY_ONLY"
    # What is not set keeps its default.
    assert s.connect_timeout_s == 10.0 and s.drain_duration_s == 45.0 and s.enable_auto_mtls is True


def test_apply_mesh_config_defaults_overrides_providers() -> None:
    snap = snapshot(mesh(OVERRIDES))
    # "default providers deep merge": tracing set, metrics not: the default (prometheus, the standard
    # install's) stays.
    assert policy._default_providers(snap, "tracing") == ["foo"]
    assert policy._default_providers(snap, "metrics") == ["prometheus"]
    # "extension providers deep merge": prometheus, stackdriver, envoy, sd.
    for name, kind in [
        ("prometheus", "prometheus"),
        ("stackdriver", "stackdriver"),
        ("envoy", "envoy_file_access_log"),
        ("sd", "stackdriver"),
    ]:
        assert policy.find_provider(snap, name).kind == kind, name


def test_apply_mesh_config_defaults_tracing_override() -> None:
    """``tracing: {}`` replaces the ProxyConfig's tracing ("Failed to override tracing"): no tracer. With
    enableTracing: false there is no tracing block at all."""
    assert "tracing" not in outbound_hcm(snapshot(mesh(OVERRIDES)))
    assert "provider" not in outbound_hcm(snapshot(mesh("defaultConfig: {tracing: {}}")))["tracing"]


def test_apply_mesh_config_defaults_concurrency() -> None:
    effective = effective_proxy_config(
        [],
        default_config=resource(OVERRIDES).spec.default_config,
        root_namespace="istio-system",
        namespace="default",
        labels={},
    )
    assert effective.concurrency == 4


@pytest.mark.parametrize(
    "field",
    ["clusterLocalNamespaces: [foons]", "serviceSettings: [{settings: {clusterLocal: true}, host: ['*.x']}]"],
)
def test_unknown_fields_are_rejected(field: str) -> None:
    """Not Istio's behaviour (its ApplyYAML drops unknown fields): Isthmus rejects them by design."""
    with pytest.raises(loader.ConfigErrors):
        resource(field)


# ==================================================================================================
# TestDeepMerge, against Istio's real defaults (its test seeds metrics [stackdriver] and a stackdriver
# provider; Isthmus's defaults are the standard install's).


def test_deep_merge_set_other_default_provider() -> None:
    snap = snapshot(mesh("defaultProviders: {tracing: [foo]}"))
    assert policy._default_providers(snap, "tracing") == ["foo"]
    assert policy._default_providers(snap, "metrics") == ["prometheus"]


def test_deep_merge_override_default_provider() -> None:
    snap = snapshot(mesh("defaultProviders: {metrics: [foo]}"))
    assert policy._default_providers(snap, "metrics") == ["foo"]
    assert policy.metrics_policy(snap, sidecar(), "CLIENT") is policy.NO_METRICS


ACCESS_LOG_ENVOY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
"""


def test_deep_merge_replace_builtin_provider() -> None:
    """A provider named like a built-in replaces it."""
    snap = snapshot(
        mesh("extensionProviders: [{name: envoy, envoyFileAccessLog: {path: /tmp/envoy.log}}]"),
        ACCESS_LOG_ENVOY,
    )
    assert policy.find_provider(snap, "envoy").builtin is False
    assert file_log_paths(outbound_hcm(snap)) == ["/tmp/envoy.log"]


def test_deep_merge_add_provider_with_existing_type() -> None:
    """Another provider of a built-in's kind is appended: the built-in stays."""
    snap = snapshot(
        mesh("extensionProviders: [{name: envoy-file, envoyFileAccessLog: {path: /tmp/envoy.log}}]"),
        ACCESS_LOG_ENVOY,
    )
    assert policy.find_provider(snap, "envoy-file").kind == "envoy_file_access_log"
    assert file_log_paths(outbound_hcm(snap)) == ["/dev/stdout"]


def test_deep_merge_add_provider() -> None:
    """Adding `prometheus` (a built-in's name) replaces it with the same thing; the others stay."""
    snap = snapshot(mesh("extensionProviders: [{name: prometheus, prometheus: {}}]"))
    assert policy.find_provider(snap, "prometheus").kind == "prometheus"
    assert policy.find_provider(snap, "envoy").kind == "envoy_file_access_log"
    assert policy.metrics_policy(snap, sidecar(), "CLIENT").enabled


def test_deep_merge_add_trust_domain_aliases() -> None:
    """The aliases are a set, sorted: ["added", "both"] plus the same again gives added, both."""
    assert settings('trustDomainAliases: ["both", "added", "both"]').trust_domain_aliases == ("added", "both")


# ==================================================================================================
# What a proxy gets (each translated field; meshwatcher TestNewConfigMapWatcher's trustDomain among them)


def test_trust_domain_in_sans() -> None:
    snap = snapshot(mesh("trustDomain: something.new"))
    assert upstream_sans(snap) == ["spiffe://something.new/ns/default/sa/reviews"]
    assert inbound_sans(snap) == ["spiffe://something.new/"]
    assert upstream_sans(snapshot()) == ["spiffe://cluster.local/ns/default/sa/reviews"]
    assert inbound_sans(snapshot()) == ["spiffe://cluster.local/"]


def test_trust_domain_aliases_in_sans_sorted() -> None:
    snap = snapshot(mesh("trustDomain: td.example\ntrustDomainAliases: [zeta, alpha, zeta]"))
    assert inbound_sans(snap) == ["spiffe://td.example/", "spiffe://alpha/", "spiffe://zeta/"]


@pytest.mark.parametrize(("spec", "timeout"), [("", "10s"), ("connectTimeout: 2s", "2s")])
def test_connect_timeout_on_every_cluster(spec: str, timeout: str) -> None:
    got = {name: c["connect_timeout"] for name, c in clusters(snapshot(mesh(spec)), sidecar()).items()}
    assert got and set(got.values()) == {timeout}, got
    assert {naming.BLACKHOLE_CLUSTER, naming.PASSTHROUGH_CLUSTER, REVIEWS, "inbound|8080||"} <= set(got)


@pytest.mark.parametrize(("spec", "timeout"), [("", "0s"), ("protocolDetectionTimeout: 1s", "1s")])
def test_protocol_detection_timeout_on_inbound_listener(spec: str, timeout: str) -> None:
    lst = listeners(snapshot(mesh(spec)))[INBOUND]
    assert lst["listener_filters_timeout"] == timeout
    assert lst["continue_on_listener_filters_timeout"] is True


@pytest.mark.parametrize(
    ("spec", "catch_all"),
    [
        pytest.param("", naming.ALLOW_ANY_VHOST, id="default ALLOW_ANY"),
        pytest.param("outboundTrafficPolicy: {mode: ALLOW_ANY}", naming.ALLOW_ANY_VHOST, id="ALLOW_ANY"),
        pytest.param(
            "outboundTrafficPolicy: {mode: REGISTRY_ONLY}", naming.BLOCK_ALL_VHOST, id="REGISTRY_ONLY"
        ),
        # A new message replaces the default one: its mode is the enum's zero value, REGISTRY_ONLY.
        pytest.param("outboundTrafficPolicy: {}", naming.BLOCK_ALL_VHOST, id="empty message"),
        pytest.param("outboundTrafficPolicy: null", naming.ALLOW_ANY_VHOST, id="null keeps the default"),
    ],
)
def test_outbound_traffic_policy(spec: str, catch_all: str) -> None:
    names = [v["name"] for v in route_table(snapshot(mesh(spec)), sidecar())["virtual_hosts"]]
    assert names[-1] == catch_all


@pytest.mark.parametrize(
    ("spec", "auto"), [("", True), ("enableAutoMtls: true", True), ("enableAutoMtls: false", False)]
)
def test_enable_auto_mtls(spec: str, auto: bool) -> None:
    c = clusters(snapshot(mesh(spec)), sidecar())[REVIEWS]
    assert ("transport_socket_matches" in c) is auto
    assert "transport_socket" not in c


DNS_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
"""


@pytest.mark.parametrize(("spec", "rate"), [("", "60s"), ("dnsRefreshRate: 30s", "30s")])
def test_dns_refresh_rate_on_dns_clusters(spec: str, rate: str) -> None:
    c = clusters(snapshot(mesh(spec), DNS_ENTRY), sidecar())["outbound|443||ext.example.com"]
    assert c["type"] == "STRICT_DNS"
    assert c["dns_refresh_rate"] == rate
    assert c["respect_dns_ttl"] is True


def _http2(c: dict[str, Any]) -> bool:
    opts = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    return "http2_protocol_options" in opts.get("explicit_http_config", {})


@pytest.mark.parametrize(
    ("spec", "h2"),
    [("", False), ("h2UpgradePolicy: DO_NOT_UPGRADE", False), ("h2UpgradePolicy: UPGRADE", True)],
)
def test_h2_upgrade_policy(spec: str, h2: bool) -> None:
    assert _http2(clusters(snapshot(mesh(spec)), sidecar())[REVIEWS]) is h2


@pytest.mark.parametrize(
    ("spec", "tracing"),
    [("", True), ("enableTracing: true", True), ("enableTracing: false", False)],
)
def test_enable_tracing(spec: str, tracing: bool) -> None:
    assert ("tracing" in outbound_hcm(snapshot(mesh(spec)))) is tracing


@pytest.mark.parametrize(("spec", "paths"), [("", []), ("accessLogFile: /dev/stdout", ["/dev/stdout"])])
def test_access_log_file(spec: str, paths: list[str]) -> None:
    assert file_log_paths(outbound_hcm(snapshot(mesh(spec)))) == paths


def _default_route_retry(snap: Any) -> dict[str, Any]:
    vh = vhost(route_table(snap, sidecar()), "reviews.default.svc.cluster.local:9080")
    (route,) = [r for r in vh["routes"] if r["name"] == "default"]
    return route["route"]["retry_policy"]


def test_default_http_retry_policy() -> None:
    """Unset: the built-in policy (2 retries); set: it replaces the built-in one."""
    builtin = _default_route_retry(snapshot())
    assert (builtin["num_retries"], builtin["retry_on"]) == (
        2,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    )
    custom = _default_route_retry(snapshot(mesh("defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx}")))
    assert (custom["num_retries"], custom["retry_on"]) == (5, "5xx")


@pytest.mark.parametrize(
    ("spec", "sees_other_namespace"),
    [("", True), ('defaultServiceExportTo: ["*"]', True), ('defaultServiceExportTo: ["."]', False)],
)
def test_default_service_export_to(spec: str, sees_other_namespace: bool) -> None:
    names = set(clusters(snapshot(mesh(spec)), sidecar()))
    assert ("outbound|9080||ratings.other.svc.cluster.local" in names) is sees_other_namespace
    assert REVIEWS in names  # the proxy's own namespace


def test_access_log_encoding_json() -> None:
    hcm = outbound_hcm(snapshot(mesh("accessLogFile: /dev/stdout\naccessLogEncoding: JSON")))
    (log,) = [a for a in hcm["access_log"] if a["name"] == "envoy.access_loggers.file"]
    assert "json_format" in log["typed_config"]["log_format"]
    assert "text_format_source" not in log["typed_config"]["log_format"]


@pytest.mark.parametrize(
    ("spec", "enabled"),
    [
        pytest.param("", True, id="default enabled"),
        # A new, empty message: `enabled` unset, which istiod's GetLocalityLbSetting reads as on.
        pytest.param("localityLbSetting: {}", True, id="empty message"),
        pytest.param("localityLbSetting: {enabled: false}", False, id="disabled"),
    ],
)
def test_locality_lb_setting(spec: str, enabled: bool) -> None:
    s = settings(spec)
    with_outlier = TrafficPolicy.model_validate({"outlierDetection": {"consecutive5xxErrors": 3}})
    assert (effective_setting(s.locality_lb_setting, with_outlier) is not None) is enabled


ROOT_TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: mesh-root}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
"""


@pytest.mark.parametrize(("spec", "paths"), [("", []), ("rootNamespace: mesh-root", ["/dev/stdout"])])
def test_root_namespace(spec: str, paths: list[str]) -> None:
    """A selector-less Telemetry of the root namespace applies mesh-wide; elsewhere only to its own."""
    assert settings(spec).root_namespace == ("mesh-root" if spec else "istio-system")
    assert file_log_paths(outbound_hcm(snapshot(mesh(spec), ROOT_TELEMETRY))) == paths


def _mesh_id_tag(snap: Any) -> str:
    (tag,) = [t for t in outbound_hcm(snap)["tracing"]["custom_tags"] if t["tag"] == "istio.mesh_id"]
    return tag["literal"]["value"]


def test_mesh_id_defaults_to_trust_domain() -> None:
    """istio-agent's mesh id defaults to the trust domain (defaultConfig.meshId is not translated)."""
    assert _mesh_id_tag(snapshot()) == "cluster.local"
    assert _mesh_id_tag(snapshot(mesh("trustDomain: something.new"))) == "something.new"


def test_empty_trust_domain_is_rejected() -> None:
    """`trustDomain: ""` would replace the default with an empty one, which ValidateMeshConfig refuses."""
    with pytest.raises(loader.ConfigErrors, match="trustDomain"):
        resource('trustDomain: ""')


@pytest.mark.parametrize(("value", "delta"), [(None, True), ('"false"', False), ('"true"', True)])
def test_proxy_metadata_delta_xds(value: str | None, delta: bool) -> None:
    """Delta xDS is the default since 1.22; compatibility-version-1.21 sets ISTIO_DELTA_XDS: "false"."""
    spec = "" if value is None else f"defaultConfig: {{proxyMetadata: {{ISTIO_DELTA_XDS: {value}}}}}"
    assert settings(spec).delta_xds is delta


# ==================================================================================================
# kubemesh TestNewConfigMapWatcher's steps, with the watched config directory's mesh file standing in
# for istiod's mesh ConfigMap: a refused update keeps the last good mesh config, a deletion restores the
# defaults.

GOOD = mesh("trustDomain: something.new")
# The ConfigMap without the MeshConfig key: here a MeshConfig not named `mesh`, which is refused.
BAD_KEY = mesh("trustDomain: other.domain").replace("name: mesh", "name: other-key")
BAD_YAML = "bad yaml"


def test_new_config_map_watcher_steps(tmp_path: Path) -> None:
    store = Store()
    source = DirectorySource(tmp_path, store)
    path = tmp_path / "mesh.yaml"
    want = with_defaults(trust_domain="something.new")

    def current() -> dict[str, Any]:
        return comparable(Snapshot.build(1, store.list(), []).mesh)

    def write(text: str) -> None:
        path.write_text(text)
        source.load_file(path)

    steps: list[tuple[str, str | None, MeshSettings]] = [
        ("initial", None, DEFAULTS),
        ("added cm", GOOD, want),
        ("updated badCM", BAD_KEY, want),
        ("updated cm", GOOD, want),
        ("updated badCM2", BAD_YAML, want),
        ("updated badCM again", BAD_KEY, want),
        ("updated cm again", GOOD, want),
        ("deleted cm", "", DEFAULTS),
        ("added badCM", BAD_KEY, DEFAULTS),
    ]
    for name, text, expect in steps:
        if text == "":
            path.unlink()
            source.load_file(path)
        elif text is not None:
            write(text)
        assert current() == comparable(expect), name
        assert bool(store.source_errors) is (text in (BAD_KEY, BAD_YAML)), name


# ==================================================================================================
# defaultConfig drainDuration / concurrency on the proxy's Envoy command line (as the runner wires them:
# MeshSettings.drain_duration_s and the pod's effective ProxyConfig concurrency).


@pytest.mark.parametrize(
    ("spec", "drain", "concurrency", "flag"),
    [
        # Unset everywhere: the runner's --envoy-concurrency applies (not Istio's; see the docstring).
        pytest.param("", "45", None, "1", id="defaults"),
        pytest.param("defaultConfig: {drainDuration: 5s, concurrency: 4}", "5", 4, "4", id="set"),
        # 0: Envoy's own default (a worker per core), so no flag, as istio-agent does.
        pytest.param("defaultConfig: {concurrency: 0}", "45", 0, None, id="concurrency 0"),
    ],
)
def test_drain_and_concurrency_on_envoy_command_line(
    tmp_path: Path, spec: str, drain: str, concurrency: int | None, flag: str | None
) -> None:
    proxy = sidecar()
    r = resource(spec)
    pc = effective_proxy_config(
        [],
        default_config=r.spec.default_config,
        root_namespace="istio-system",
        namespace="default",
        labels={},
    )
    assert pc.concurrency == concurrency
    bootstrap = build_bootstrap(proxy, xds_address=("127.7.0.1", 15010), admin_port=23000)
    args = EnvoyProcess(
        proxy,
        bootstrap,
        tmp_path,
        drain_time_s=MeshSettings.from_spec(r.spec).drain_duration_s,
        concurrency=1 if pc.concurrency is None else pc.concurrency,
    ).args()
    assert args[args.index("--drain-time-s") + 1] == drain
    assert (args[args.index("--concurrency") + 1] if "--concurrency" in args else None) == flag
