"""Istio's Telemetry, ProxyConfig and MeshConfig validation tests, ported as YAML resources:
TestValidateTelemetry and TestValidateProxyConfig (``pkg/config/validation/validation_test.go``), and the
MeshConfig / ProxyConfig cases of ``pkg/config/validation/agent/validation_test.go`` that an
``isthmus.dev/v1alpha1 MeshConfig`` can express.

Each case is (Istio case name, YAML, valid, expected error fragment, expected warning); see
test_istio_validation_gateway.py for the meaning of the last two.

MeshConfig notes. Istio validates the mesh config after merging it over its defaults, so its "empty mesh
config" / "empty proxy config" cases (no configPath, binaryPath, discoveryAddress, ...) do not apply: an
Isthmus MeshConfig only holds what the user sets, and the rest comes from the defaults. A field set
explicitly to an invalid value is still checked. Not ported: controlPlaneAuthPolicy -1 (an enum value YAML
cannot name), MeshNetworks (not part of the MeshConfig resource), zoneAwareLbSetting (not modelled by
Isthmus), and ValidateExtensionProvider (Istio only logs those).
"""

from __future__ import annotations

import textwrap

import pytest
from istio_verdicts import assert_verdict

Case = tuple[str, str, bool, str | None, str | bool | None]


def telemetry(spec: str) -> str:
    return (
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: foo, namespace: bar}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")
        + "\n"
    )


def proxy_config(spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: foo, namespace: bar}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")
        + "\n"
    )


def mesh(spec: str) -> str:
    return (
        "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n"
        + textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")
        + "\n"
    )


# Istio's "valid" ProxyConfig of TestValidateMeshConfigProxyConfig; each case overrides one field.
VALID_PROXY = {
    "configPath": "/etc/istio/proxy",
    "binaryPath": "/usr/local/bin/envoy",
    "discoveryAddress": "istio-pilot.istio-system:15010",
    "proxyAdminPort": "15000",
    "drainDuration": "45s",
    "serviceCluster": "istio-proxy",
    "statsdUdpAddress": "istio-statsd-prom-bridge.istio-system:9125",
    "envoyMetricsService": "{address: 'metrics-service.istio-system:15000'}",
    "envoyAccessLogService": "{address: 'accesslog-service.istio-system:15000'}",
    "controlPlaneAuthPolicy": "MUTUAL_TLS",
    "statusPort": "15020",
}


def default_config(**override: str) -> str:
    fields = {**VALID_PROXY, **override}
    body = "\n".join(f"  {k}: {v}" for k, v in fields.items())
    return mesh("defaultConfig:\n" + body)


def check(case: Case) -> None:
    name, text, valid, fragment, warning = case
    assert_verdict(name, text, valid, fragment, warning, fragment_in_path=True)


ENV_TAG = "tracing: [{customTags: {clusterID: {environment: {name: FOO}}}}]"
GW_GROUP = "gateway.networking.k8s.io"

# TestValidateTelemetry. Skipped: "invalid message" (a Server passed as a Telemetry).
TELEMETRY_CASES: list[Case] = [
    ("empty", telemetry(""), True, None, False),
    (
        "multiple providers",
        telemetry("tracing: [{providers: [{name: a}, {name: b}]}]"),
        True,
        None,
        "multiple providers",
    ),
    ("multiple tracers", telemetry("tracing: [{}, {}]"), True, None, "multiple tracing"),
    (
        "bad randomSamplingPercentage",
        telemetry("tracing: [{randomSamplingPercentage: 101}]"),
        False,
        "randomSamplingPercentage",
        False,
    ),
    ("tracing with a good custom tag", telemetry(ENV_TAG), True, None, False),
    # Istio: "tag 'clusterID' may not have a nil value"; the schema rejects the null tag at its path
    (
        "tracing with a nil custom tag",
        telemetry("tracing: [{customTags: {clusterID: null}}]"),
        False,
        "clusterID",
        False,
    ),
    (
        "bad metrics operation",
        telemetry("metrics: [{overrides: [{tagOverrides: {my-tag: {operation: UPSERT, value: ''}}}]}]"),
        False,
        "must be set when operation is UPSERT",
        False,
    ),
    (
        "good metrics operation",
        telemetry(
            "metrics: [{overrides: [{tagOverrides: {my-tag: {operation: UPSERT, value: some-cel-expression}}}]}]"
        ),
        True,
        None,
        False,
    ),
    (
        "multi-accessloggings",
        telemetry("accessLogging: [{providers: [{name: envoy}]}, {providers: [{name: otel}]}]"),
        True,
        None,
        False,
    ),
    (
        "multi-accesslogging-providers",
        telemetry("accessLogging: [{providers: [{name: envoy}, {name: otel}]}]"),
        True,
        None,
        False,
    ),
    (
        "good targetRef",
        telemetry(f"{ENV_TAG}\ntargetRef: {{group: {GW_GROUP}, kind: Gateway, name: foo}}"),
        True,
        None,
        False,
    ),
    (
        "bad targetRef - empty name",
        telemetry(f"{ENV_TAG}\ntargetRef: {{group: {GW_GROUP}, kind: Gateway}}"),
        False,
        "name",
        False,
    ),
    (
        "bad targetRef - non-empty namespace",
        telemetry(f"{ENV_TAG}\ntargetRef: {{group: {GW_GROUP}, kind: Gateway, name: foo, namespace: bar}}"),
        False,
        "targetRef namespace must not be set",
        False,
    ),
    (
        "bad targetRef - wrong group",
        telemetry(f"{ENV_TAG}\ntargetRef: {{group: wrong-group, kind: Gateway, name: foo}}"),
        False,
        "but was wrong-group/Gateway",
        False,
    ),
    (
        "bad targetRef - wrong kind",
        telemetry(f"{ENV_TAG}\ntargetRef: {{group: {GW_GROUP}, kind: wrong-kind, name: foo}}"),
        False,
        f"but was {GW_GROUP}/wrong-kind",
        False,
    ),
    (
        "targetRef and selector cannot both be set",
        telemetry(
            f"{ENV_TAG}\ntargetRef: {{group: {GW_GROUP}, kind: wrong-kind, name: foo}}\n"
            "selector: {matchLabels: {app: httpbin}}"
        ),
        False,
        "only one of targetRefs or workloadSelector can be set",
        False,
    ),
]

# TestValidateTelemetryFilter (the access log filter is a CEL expression).
TELEMETRY_FILTER_CASES: list[Case] = [
    (
        "filter response.code >= 400",
        telemetry("accessLogging: [{filter: {expression: 'response.code >= 400'}}]"),
        True,
        None,
        None,
    ),
    (
        "filter with function call",
        telemetry(
            "accessLogging: [{filter: {expression: \"connection.mtls && request.url_path.contains('v1beta3')\"}}]"
        ),
        True,
        None,
        None,
    ),
    (
        "filter non-boolean",
        telemetry("accessLogging: [{filter: {expression: response.code}}]"),
        True,
        None,
        None,
    ),
    ("filter syntax error", telemetry("accessLogging: [{filter: {expression: ')++++'}}]"), False, None, None),
]

# TestValidateProxyConfig (the networking.istio.io ProxyConfig resource).
PROXY_CONFIG_CASES: list[Case] = [
    ("empty", proxy_config(""), True, None, False),
    (
        "invalid concurrency",
        proxy_config("concurrency: -1"),
        False,
        "concurrency must be greater than or equal to 0",
        None,
    ),
]

# TestValidateMeshConfigProxyConfig (as the MeshConfig's defaultConfig).
MESH_PROXY_CASES: list[Case] = [
    ("valid proxy config", default_config(), True, None, False),
    ("config path invalid", default_config(configPath="''"), False, "config path must be set", None),
    ("binary path invalid", default_config(binaryPath="''"), False, "binary path must be set", None),
    (
        "discovery address invalid",
        default_config(discoveryAddress="10.0.0.100"),
        False,
        "discovery address",
        None,
    ),
    (
        "proxy admin port invalid (0)",
        default_config(proxyAdminPort="0"),
        False,
        "invalid proxy admin port",
        None,
    ),
    (
        "proxy admin port invalid (65536)",
        default_config(proxyAdminPort="65536"),
        False,
        "invalid proxy admin port",
        None,
    ),
    ("validate status port", default_config(statusPort="0"), False, "invalid status port", None),
    ("validate vstatus port", default_config(statusPort="65536"), False, "invalid status port", None),
    ("drain duration invalid", default_config(drainDuration="-1s"), False, "drain", None),
    (
        "service cluster invalid",
        default_config(serviceCluster="''"),
        False,
        "service cluster must be specified",
        None,
    ),
    (
        "statsd udp address invalid",
        default_config(statsdUdpAddress="10.0.0.100"),
        False,
        "invalid statsd udp address",
        None,
    ),
    (
        "envoy metrics service address invalid",
        default_config(envoyMetricsService="{address: metrics-service.istio-system}"),
        False,
        "invalid envoy metrics service address",
        None,
    ),
    (
        "envoy access log service address invalid",
        default_config(envoyAccessLogService="{address: accesslog-service.istio-system}"),
        False,
        "invalid envoy access log service address",
        None,
    ),
    (
        "zipkin address is valid",
        default_config(tracing="{zipkin: {address: 'zipkin.istio-system:9411'}}"),
        True,
        None,
        None,
    ),
    (
        "zipkin address with $(HOST_IP) is valid",
        default_config(tracing="{zipkin: {address: '$(HOST_IP):9411'}}"),
        True,
        None,
        None,
    ),
    (
        "zipkin config invalid",
        default_config(tracing="{zipkin: {address: 10.0.0.100}}"),
        False,
        "invalid zipkin config",
        None,
    ),
    (
        "lightstep config is valid",
        default_config(
            tracing="{lightstep: {address: 'collector.lightstep:8080', accessToken: abcdefg1234567}}"
        ),
        True,
        None,
        None,
    ),
    (
        "lightstep address invalid",
        default_config(tracing="{lightstep: {address: 10.0.0.100, accessToken: abcdefg1234567}}"),
        False,
        "invalid lightstep config",
        None,
    ),
    (
        "lightstep address empty but lightstep access token is not",
        default_config(tracing="{lightstep: {address: '', accessToken: abcdefg1234567}}"),
        False,
        "address is required",
        None,
    ),
    (
        "lightstep address is valid but access token is empty",
        default_config(tracing="{lightstep: {address: 'collector.lightstep:8080', accessToken: ''}}"),
        False,
        "access token is required",
        None,
    ),
    (
        "lightstep access token empty but lightstep address is not",
        default_config(tracing="{lightstep: {address: 10.0.0.100, accessToken: ''}}"),
        False,
        "invalid lightstep config",
        None,
    ),
    (
        "lightstep address and lightstep token both empty",
        default_config(tracing="{lightstep: {address: '', accessToken: ''}}"),
        False,
        "invalid lightstep config",
        None,
    ),
    (
        "datadog without address",
        default_config(tracing="{datadog: {}}"),
        False,
        "invalid datadog config",
        None,
    ),
    (
        "datadog with correct address",
        default_config(tracing="{datadog: {address: 'datadog-agent:8126'}}"),
        True,
        None,
        None,
    ),
    (
        "datadog with invalid address",
        default_config(tracing="{datadog: {address: address-missing-port-number}}"),
        False,
        "invalid datadog config",
        None,
    ),
    (
        "custom tags with a literal value",
        default_config(tracing="{customTags: {clusterID: {literal: {value: cluster1}}}}"),
        True,
        None,
        None,
    ),
    # Istio: "encountered nil value for custom tag: clusterID"; the schema rejects the null at its path
    (
        "custom tags with a nil value",
        default_config(tracing="{customTags: {clusterID: null}}"),
        False,
        "clusterID",
        None,
    ),
    (
        "private key provider with empty provider",
        default_config(privateKeyProvider="{}"),
        False,
        "private key provider configuration is required",
        None,
    ),
    (
        "private key provider with cryptomb without poll_delay",
        default_config(privateKeyProvider="{cryptomb: {}}"),
        False,
        "pollDelay is required",
        None,
    ),
    (
        "private key provider with cryptomb zero poll_delay",
        default_config(privateKeyProvider="{cryptomb: {pollDelay: 0s}}"),
        False,
        "pollDelay must be non zero",
        None,
    ),
    (
        "private key provider with cryptomb",
        default_config(privateKeyProvider="{cryptomb: {pollDelay: 10us}}"),
        True,
        None,
        None,
    ),
    (
        "private key provider with qat without poll_delay",
        default_config(privateKeyProvider="{qat: {}}"),
        False,
        "pollDelay is required",
        None,
    ),
    (
        "private key provider with qat zero poll_delay",
        default_config(privateKeyProvider="{qat: {pollDelay: 0s}}"),
        False,
        "pollDelay must be non zero",
        None,
    ),
    (
        "private key provider with qat",
        default_config(privateKeyProvider="{qat: {pollDelay: 1us}}"),
        True,
        None,
        None,
    ),
    (
        "ISTIO_META_DNS_AUTO_ALLOCATE is deprecated",
        default_config(proxyMetadata="{ISTIO_META_DNS_AUTO_ALLOCATE: 'true'}"),
        True,
        None,
        "ISTIO_META_DNS_AUTO_ALLOCATE",
    ),
]

# TestValidateMeshConfig: each field of Istio's "invalid" mesh config on its own (the defaultConfig {} and
# the extension provider of that case are covered by the notes above), and its ECDH warnings.
MESH_CASES: list[Case] = [
    ("invalid proxy listen port", mesh("proxyListenPort: 0"), False, "invalid proxy listen port", None),
    ("invalid connect timeout", mesh("connectTimeout: -1s"), False, "invalid connect timeout", None),
    (
        "empty trust domain",
        mesh("trustDomain: ''"),
        False,
        "trustDomain: empty domain name not allowed",
        None,
    ),
    ("trust domain alias a.$b", mesh("trustDomainAliases: [a.$b]"), False, "trustDomainAliases[0]", None),
    (
        "trust domain alias a/b",
        mesh("trustDomainAliases: [ok.com, a/b]"),
        False,
        "trustDomainAliases[1]",
        None,
    ),
    (
        "trust domain alias empty",
        mesh("trustDomainAliases: [ok.com, ok.org, '']"),
        False,
        "trustDomainAliases[2]",
        None,
    ),
    (
        "mesh TLS ECDH curves",
        mesh("meshMTLS: {ecdhCurves: [P-256]}"),
        False,
        "mesh TLS does not support ECDH curves configuration",
        None,
    ),
    (
        "TLS defaults unrecognized ECDH curves",
        mesh("tlsDefaults: {ecdhCurves: [P-256, P-256, invalid]}"),
        True,
        None,
        "detected unrecognized ECDH curves",
    ),
    (
        "TLS defaults duplicate ECDH curves",
        mesh("tlsDefaults: {ecdhCurves: [P-256, P-256, invalid]}"),
        True,
        None,
        "detected duplicate ECDH curves",
    ),
    # TestValidateDrainDuration
    ("drain 1s", default_config(drainDuration="1s"), True, None, None),
    (
        "drain 1.001s",
        default_config(drainDuration="1.001s"),
        False,
        "drain time only supports durations to seconds precision",
        None,
    ),
    ("drain -1s", default_config(drainDuration="-1s"), False, "invalid drain duration", None),
    # TestValidateConnectTimeout
    ("connect timeout 1s", mesh("connectTimeout: 1s"), True, None, None),
    ("connect timeout 31s", mesh("connectTimeout: 31s"), True, None, None),
    (
        "connect timeout 999999999s",
        mesh("connectTimeout: 999999999s"),
        False,
        "invalid connect timeout",
        None,
    ),
    # TestValidateProtocolDetectionTimeout
    ("protocol detection 1s", mesh("protocolDetectionTimeout: 1s"), True, None, None),
    (
        "protocol detection 99999ns",
        mesh("protocolDetectionTimeout: 99999ns"),
        False,
        "only durations to ms precision are supported",
        None,
    ),
    ("protocol detection 0s", mesh("protocolDetectionTimeout: 0s"), True, None, None),
    # TestServiceSettings
    (
        "service settings good",
        mesh("serviceSettings: [{hosts: ['*.foo.bar', bar.baz.svc.cluster.local]}]"),
        True,
        None,
        None,
    ),
    (
        "service settings bad",
        mesh("serviceSettings: [{hosts: ['foo.bar.*']}]"),
        False,
        "serviceSettings[0]",
        None,
    ),
]


def locality(setting: str) -> str:
    return mesh(f"localityLbSetting: {setting}")


# TestValidateLocalityLbSetting, for the mesh-wide localityLbSetting (Istio passes an empty outlier
# detection there, so its "without outlier detection" warning cases do not apply).
LOCALITY_CASES: list[Case] = [
    (
        "invalid LocalityLoadBalancerSetting_Distribute total weight > 100",
        locality("{distribute: [{from: a/b/c, to: {a/b/c: 80, a/b1: 25}}]}"),
        False,
        "total locality weight",
        None,
    ),
    (
        "invalid LocalityLoadBalancerSetting_Distribute total weight < 100",
        locality("{distribute: [{from: a/b/c, to: {a/b/c: 80, a/b1: 15}}]}"),
        False,
        "total locality weight",
        None,
    ),
    (
        "invalid LocalityLoadBalancerSetting_Distribute weight = 0",
        locality("{distribute: [{from: a/b/c, to: {a/b/c: 0, a/b1: 100}}]}"),
        False,
        "locality weight must be in range [1, 100]",
        None,
    ),
    (
        "invalid LocalityLoadBalancerSetting specify both distribute and failover",
        locality(
            "{distribute: [{from: a/b/c, to: {a/b/c: 80, a/b1: 20}}], failover: [{from: region1, to: region2}]}"
        ),
        False,
        "can not simultaneously specify 'distribute' and 'failover'",
        None,
    ),
    (
        "invalid failover src and dst have same region",
        locality("{failover: [{from: region1, to: region1}]}"),
        False,
        "locality lb failover settings must specify different regions",
        None,
    ),
    (
        "invalid failover src contain '*' wildcard",
        locality("{failover: [{from: '*', to: region2}]}"),
        False,
        "should not contain '*' wildcard",
        None,
    ),
    (
        "invalid failover dst contain '*' wildcard",
        locality("{failover: [{from: region1, to: '*'}]}"),
        False,
        "should not contain '*' wildcard",
        None,
    ),
    (
        "invalid failover src contain '/' separator",
        locality("{failover: [{from: region1/zone1, to: region2}]}"),
        False,
        "locality lb failover only specify region",
        None,
    ),
    (
        "invalid failover dst contain '/' separator",
        locality("{failover: [{from: region1, to: region2/zone1}]}"),
        False,
        "locality lb failover only specify region",
        None,
    ),
    (
        "invalid LocalityLoadBalancerSetting specify both failoverPriority and region in failover",
        locality(
            "{failover: [{from: region1, to: region2}], failoverPriority: [topology.kubernetes.io/region]}"
        ),
        False,
        "can not simultaneously set 'failover' and topology label",
        None,
    ),
]

ALL = {
    "telemetry": TELEMETRY_CASES,
    "telemetry-filter": TELEMETRY_FILTER_CASES,
    "proxyconfig": PROXY_CONFIG_CASES,
    "mesh-proxy": MESH_PROXY_CASES,
    "mesh": MESH_CASES,
    "mesh-locality": LOCALITY_CASES,
}


@pytest.mark.parametrize(
    "case",
    [c for cases in ALL.values() for c in cases],
    ids=[f"{k}:{c[0]}" for k, cs in ALL.items() for c in cs],
)
def test_istio_telemetry_mesh_case(case: Case) -> None:
    check(case)
