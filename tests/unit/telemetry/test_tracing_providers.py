"""Tracing extension providers ``datadog`` and ``skywalking``, against istiod's
``pilot/pkg/networking/core/tracing.go`` (configureFromProviderConfig, datadogConfig, skywalkingConfig,
buildHCMTracing, configureSampling, configureCustomTags), ``pilot/pkg/model`` LookupCluster and
``pkg/config/validation`` (validateExtensionProviderTracingDatadog / SkyWalking)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import grpc_service_pb2
from envoy.config.trace.v3 import datadog_pb2, skywalking_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from telemetry_helpers import GATEWAY, PRODUCTPAGE, REVIEWS, mesh, snap, tel

from isthmus.api import loader
from isthmus.api.validation import validate_issues
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import tracing

DD_HOST = "datadog-agent.datadog.svc.cluster.local"
DD_CLUSTER = f"outbound|8126||{DD_HOST}"
SW_HOST = "skywalking-oap.istio-system.svc.cluster.local"
SW_CLUSTER = f"outbound|11800||{SW_HOST}"

COLLECTORS = """
apiVersion: v1
kind: Service
metadata: {name: datadog-agent, namespace: datadog}
spec:
  selector: {app: datadog-agent}
  ports: [{name: http, port: 8126}]
---
apiVersion: v1
kind: Service
metadata: {name: skywalking-oap, namespace: istio-system}
spec:
  selector: {app: skywalking-oap}
  ports: [{name: grpc, port: 11800}]
"""

PROVIDERS = f"""extensionProviders:
- {{name: dd, datadog: {{service: {DD_HOST}, port: 8126, maxTagLength: 99}}}}
- {{name: sw, skywalking: {{service: {SW_HOST}, port: 11800}}}}
"""

DATADOG = "envoy.tracers.datadog"
SKYWALKING = "envoy.tracers.skywalking"


def _snap(providers: str, *extra: str) -> Snapshot:
    return snap(COLLECTORS, mesh(providers), *extra)


def _telemetry(provider: str, extra: str = "") -> str:
    return tel("t", "istio-system", f"tracing:\n- providers: [{{name: {provider}}}]\n{extra}")


def _typed(trace: Any, message: Any) -> Any:
    out = message()
    assert trace.provider.typed_config.Unpack(out)
    return out


def _errors(s: Snapshot) -> str:
    return " | ".join(s.generation_errors.values())


# --- datadog ------------------------------------------------------------------------------------------------


def test_datadog_as_istiod() -> None:
    """datadogConfig: the agent's outbound cluster, its host as collector hostname, the proxy's service
    cluster (``<app>.<namespace>``) as service name; the provider's maxTagLength; Telemetry sampling;
    Istio's tags and the custom tags, sorted; no upstream span on a sidecar."""
    s = _snap(
        PROVIDERS,
        _telemetry("dd", "  randomSamplingPercentage: 42\n  customTags: {team: {literal: {value: a}}}"),
    )
    trace = tracing.tracing_config(s, PRODUCTPAGE, "outbound")
    assert trace is not None and trace.provider.name == DATADOG
    assert _typed(trace, datadog_pb2.DatadogConfig) == datadog_pb2.DatadogConfig(
        collector_cluster=DD_CLUSTER, collector_hostname=DD_HOST, service_name="productpage.default"
    )
    assert trace.max_path_tag_length.value == 99
    assert (trace.client_sampling.value, trace.random_sampling.value, trace.overall_sampling.value) == (
        100.0,
        42.0,
        100.0,
    )
    tags = [t.tag for t in trace.custom_tags]
    assert tags == sorted(tags) and "team" in tags and "istio.canonical_service" in tags
    assert {t.tag: t for t in trace.custom_tags}["team"].literal.value == "a"
    assert not trace.HasField("spawn_upstream_span")
    # The inbound HCMs (SERVER mode) get the same tracer.
    inbound = tracing.tracing_config(s, REVIEWS, "inbound")
    assert inbound is not None and inbound.provider.name == DATADOG
    assert _typed(inbound, datadog_pb2.DatadogConfig).service_name == "reviews.default"
    assert not s.generation_errors


def test_datadog_on_a_gateway_spawns_the_upstream_span() -> None:
    s = _snap(PROVIDERS, _telemetry("dd"))
    trace = tracing.tracing_config(s, GATEWAY, "outbound")
    assert trace is not None and trace.spawn_upstream_span.value is True
    cfg = _typed(trace, datadog_pb2.DatadogConfig)
    assert cfg.service_name == "istio-ingressgateway.istio-system" and cfg.collector_cluster == DD_CLUSTER


def test_datadog_as_default_provider_with_meshconfig_sampling_and_tag_length() -> None:
    """MeshConfig defaultProviders.tracing without Telemetry: defaultConfig.tracing's sampling, and its
    maxPathTagLength where the provider sets no maxTagLength (istiod's fallback)."""
    providers = f"""extensionProviders:
- {{name: dd, datadog: {{service: datadog/{DD_HOST}, port: 8126}}}}
defaultProviders: {{tracing: [dd]}}
defaultConfig: {{tracing: {{sampling: 25, maxPathTagLength: 77}}}}
"""
    s = _snap(providers)
    for proxy, direction in ((PRODUCTPAGE, "outbound"), (REVIEWS, "inbound")):
        trace = tracing.tracing_config(s, proxy, direction)
        assert trace is not None and trace.provider.name == DATADOG
        # `<namespace>/<host>` names the same service; the cluster and hostname are the host's.
        cfg = _typed(trace, datadog_pb2.DatadogConfig)
        assert (cfg.collector_cluster, cfg.collector_hostname) == (DD_CLUSTER, DD_HOST)
        assert trace.random_sampling.value == 25.0 and trace.max_path_tag_length.value == 77
    assert not s.generation_errors


def test_datadog_reaches_the_connection_manager() -> None:
    """configure_hcm (what the listener generator calls) sets the tracer, and the request-id extension
    Telemetry asks for, as for any provider."""
    s = _snap(PROVIDERS, _telemetry("dd", "  useRequestIdForTraceSampling: false"))
    m = hcm.HttpConnectionManager()
    tracing.configure_hcm(m, s, PRODUCTPAGE, "outbound")
    assert m.tracing.provider.name == DATADOG
    assert m.request_id_extension.typed_config.type_url.endswith("UuidRequestIdConfig")


# --- skywalking ---------------------------------------------------------------------------------------------


def test_skywalking_as_istiod() -> None:
    """skywalkingConfig: only the gRPC collector (Envoy's client on the OAP's cluster, the host as
    authority), no max path tag length (istiod sets 0), and an upstream span on every proxy."""
    s = _snap(PROVIDERS, _telemetry("sw", "  randomSamplingPercentage: 100"))
    for proxy, direction in ((PRODUCTPAGE, "outbound"), (REVIEWS, "inbound"), (GATEWAY, "outbound")):
        trace = tracing.tracing_config(s, proxy, direction)
        assert trace is not None and trace.provider.name == SKYWALKING
        grpc = grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SW_CLUSTER, authority=SW_HOST)
        )
        assert _typed(trace, skywalking_pb2.SkyWalkingConfig) == skywalking_pb2.SkyWalkingConfig(
            grpc_service=grpc
        )
        assert trace.spawn_upstream_span.value is True
        assert not trace.HasField("max_path_tag_length")
        assert trace.random_sampling.value == 100.0
        assert "istio.canonical_service" in {t.tag for t in trace.custom_tags}
    assert not s.generation_errors


def test_skywalking_access_token_is_the_backend_token() -> None:
    """istiod drops accessToken; Isthmus sends it as the tracer's backend token rather than lose it."""
    providers = f"extensionProviders:\n- {{name: sw, skywalking: {{service: {SW_HOST}, port: 11800, accessToken: s3cret}}}}\n"
    trace = tracing.tracing_config(_snap(providers, _telemetry("sw")), PRODUCTPAGE, "outbound")
    assert trace is not None
    cfg = _typed(trace, skywalking_pb2.SkyWalkingConfig)
    assert cfg.client_config.backend_token == "s3cret"
    assert not cfg.client_config.service_name  # Envoy takes the node's cluster, as with istiod


# --- the collector must be a mesh service -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "service", "port", "reason"),
    [
        (
            "datadog",
            "dd.nowhere.svc.cluster.local",
            8126,
            "could not find service dd.nowhere.svc.cluster.local",
        ),
        ("skywalking", f"default/{SW_HOST}", 11800, f"could not find service {SW_HOST} in namespace default"),
        ("datadog", DD_HOST, 9999, f"cluster outbound|9999||{DD_HOST} is not in this proxy's config"),
        ("skywalking", "", 11800, "service must not be empty"),
    ],
)
def test_a_collector_that_is_not_a_mesh_service_turns_tracing_off_and_is_reported(
    kind: str, service: str, port: int, reason: str
) -> None:
    """istiod's LookupCluster fails -> no tracing on that HCM (istiod only logs it); Isthmus also refuses
    a port the proxy has no cluster for, which Envoy would reject with the listener."""
    providers = f"extensionProviders:\n- {{name: p, {kind}: {{service: '{service}', port: {port}}}}}\n"
    s = _snap(providers, _telemetry("p"))
    assert tracing.tracing_config(s, PRODUCTPAGE, "outbound") is None
    errors = _errors(s)
    assert f"tracing provider 'p' ({kind}): {reason}" in errors and "tracing is off" in errors


# --- the API: strict models and validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("datadog", "collectorHostname"),
        ("datadog", "accessToken"),
        ("skywalking", "maxTagLength"),  # not in Istio's SkyWalkingTracingProvider
        ("skywalking", "serviceName"),
    ],
)
def test_unknown_field_is_refused_with_its_name(kind: str, field: str) -> None:
    doc = mesh(
        f"extensionProviders:\n- {{name: p, {kind}: {{service: {DD_HOST}, port: 8126, {field}: x}}}}\n"
    )
    with pytest.raises(Exception, match=f'unknown field "{field}"'):
        loader.load_text(doc, "mesh.yaml")


def test_validation_as_istiod() -> None:
    """validateExtensionProviderTracingDatadog / SkyWalking: service and port are required."""
    (res,) = loader.load_text(
        mesh(
            "extensionProviders:\n- {name: a, datadog: {port: 8126}}\n- {name: b, skywalking: {service: x.y, port: 0}}\n"
        ),
        "mesh.yaml",
    )
    text = " | ".join(f"{i.path}: {i.message}" for i in validate_issues(res))
    assert "extensionProviders[0].datadog: service must not be empty" in text
    assert "extensionProviders[1].skywalking.port: port number 0 must be in the range 1..65535" in text
