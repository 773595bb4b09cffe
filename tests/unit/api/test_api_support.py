from __future__ import annotations

from isthmus.api.loader import load_text, load_text_report
from isthmus.api.support import ADMISSION_CONTROL, UNSUPPORTED_KINDS, check_supported, matching_fields


def test_whole_kinds_are_refused():
    (r,) = load_text(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: d, namespace: ns}\n"
        "spec: {template: {serviceAccount: sa}}\n",
        "wg.yaml",
    )
    (e,) = check_supported(r)
    assert (
        str(e)
        == "wg.yaml:1: WorkloadGroup ns/d: WorkloadGroup is not supported yet: "
        + UNSUPPORTED_KINDS["WorkloadGroup"]
    )


def test_security_kinds_are_translated():
    (r,) = load_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: d, namespace: ns}\n"
        "spec: {mtls: {mode: STRICT}}\n",
        "pa.yaml",
    )
    assert check_supported(r) == []


def test_fields_are_reported_with_lines():
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [a.com]
  http:
  - route: [{destination: {host: a.com}}]
  tcp:
  - match: [{port: 5432}, {destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: a.com}}]
"""
    (r,) = load_text(text, "vs.yaml")
    (e,) = check_supported(r)
    assert e.line == 9
    assert e.message.startswith(
        "spec.tcp[0].match[1].destinationSubnets is not supported yet on sidecars (the mesh gateway)"
    )
    gateway_only = text.replace("  hosts: [a.com]\n", "  hosts: [a.com]\n  gateways: [gw]\n")
    (r,) = load_text(gateway_only, "vs.yaml")
    assert check_supported(r) == []


def test_nested_patterns_and_empty_values():
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {zoneAwareLbSetting: {enabled: true}}
    - port: {number: 81}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    trafficPolicy:
      outlierDetection: {consecutiveErrors: 3}
  - name: v2
"""
    (r,) = load_text(text, "dr.yaml")
    errs = check_supported(r)
    # zoneAwareLbSetting is translated (xds.gen.zone_aware): only the deprecated field is refused.
    assert [e.message.split(" is not")[0] for e in errs] == [
        "spec.subsets[0].trafficPolicy.outlierDetection.consecutiveErrors",
    ]
    assert {e.line for e in errs} == {15}


def test_locality_and_zone_aware_load_balancing_are_accepted():
    dr = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer:
      localityLbSetting: {failover: [{from: us-east, to: us-west}]}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {localityLbSetting: {distribute: [{from: "us-east/*", to: {"us-east/*": 80, "us-west/*": 20}}]}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {localityLbSetting: {enabled: false}}
"""
    (r,) = load_text(dr, "dr.yaml")
    assert check_supported(r) == []
    (zone_aware,) = load_text(
        dr.replace("localityLbSetting: {enabled: false}", "zoneAwareLbSetting: {enabled: true}"), "dr.yaml"
    )
    assert check_supported(zone_aware) == []
    mesh = """\
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  localityLbSetting: {enabled: true, failoverPriority: [topology.kubernetes.io/region]}
"""
    (m,) = load_text(mesh, "mesh.yaml")
    assert check_supported(m) == []


def test_supported_resources_have_no_errors_and_map_wildcards():
    (r,) = load_text(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
        "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n"
    )
    assert check_supported(r) == []
    data = {"spec": {"m": {"a": {"x": 1}, "b": {"y": 2}}, "l": []}}
    assert matching_fields(data, "spec.m.*.x") == ["spec.m.a.x"]
    assert matching_fields(data, "spec.l") == []


def test_admission_control_is_refused_everywhere_with_the_reason():
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: ns}
spec:
  host: d
  trafficPolicy:
    admissionControl: {successRate: {threshold: 95}}
    portLevelSettings:
    - port: {number: 80}
      admissionControl: {successRate: {threshold: 90}}
  subsets:
  - name: v1
    trafficPolicy:
      admissionControl: {successRate: {aggression: 2}}
      portLevelSettings:
      - port: {number: 81}
        admissionControl: {successRate: {maximumRejectionPercent: 50}}
  - name: v2
"""
    (r,) = load_text(text, "dr.yaml")
    errs = check_supported(r)
    assert sorted((e.line, e.message) for e in errs) == [
        (7, f"spec.trafficPolicy.admissionControl is not supported yet: {ADMISSION_CONTROL}"),
        (
            10,
            f"spec.trafficPolicy.portLevelSettings[0].admissionControl is not supported yet: {ADMISSION_CONTROL}",
        ),
        (14, f"spec.subsets[0].trafficPolicy.admissionControl is not supported yet: {ADMISSION_CONTROL}"),
        (
            17,
            "spec.subsets[0].trafficPolicy.portLevelSettings[0].admissionControl is not supported yet: "
            + ADMISSION_CONTROL,
        ),
    ]
    assert "admission_control filter" in ADMISSION_CONTROL
    # Valid for Istio: analyze (which does not apply these refusals) accepts it.
    assert not [m for m in load_text_report(text, "dr.yaml").messages if m.level == "Error"]


def test_jwt_claim_routing_is_supported_on_gateways():
    # Once refused as "not supported yet"; now translated to jwt_authn metadata matches as istiod does.
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [a.com]
  gateways: [gw]
  http:
  - match:
    - headers: {'@request.auth.claims.group': {exact: dev}}
    - withoutHeaders: {'@request.auth.claims[team][name]': {prefix: x}}
    route: [{destination: {host: a.com}}]
"""
    (r,) = load_text(text, "vs.yaml")
    assert check_supported(r) == []


def test_mesh_config_inbound_settings_are_translated_field_by_field():
    # What the sidecar connection managers and inbound mTLS honour is accepted; a sibling field they do
    # not (yet) translate is refused by name, never silently dropped.
    mesh = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  pathNormalization: {normalization: MERGE_SLASHES}
  meshMTLS: {minProtocolVersion: TLSV1_3}
  tlsDefaults: {ecdhCurves: [P-256], cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384], minProtocolVersion: TLSV1_2}
  enableAutoMtls: false
  trustDomainAliases: [old.example.com]
  defaultConfig:
    proxyMetadata: {ISTIO_META_IDLE_TIMEOUT: 30s}
    proxyHeaders:
      server: {disabled: true}
      requestId: {disabled: true}
      forwardedClientCert: SANITIZE
      preserveHttp1HeaderCase: true
      xForwardedHost: {enabled: true}
      xForwardedPort: {enabled: true}
    %s
"""
    (ok,) = load_text(mesh % "", "mesh.yaml")
    assert check_supported(ok) == []
    # concurrency is translated now (Envoy's --concurrency, model.proxy_config); statNameLength is not.
    (bad,) = load_text(mesh % "statNameLength: 100", "mesh.yaml")
    assert [e.message for e in check_supported(bad)] == [
        "spec.defaultConfig.statNameLength is not supported yet"
    ]


def test_tracing_provider_fields_that_are_not_translated_are_refused_by_name() -> None:
    (mesh,) = load_text(
        """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  extensionProviders:
  - name: otel
    opentelemetry: {service: otel.ns.svc.cluster.local, port: 4317, http: {path: /v1/traces}}
  - name: zk
    zipkin: {service: zk.ns.svc.cluster.local, port: 9411, timeout: 2s, path: /spans, headers: [{name: a, value: b}]}
""",
        "mesh.yaml",
    )
    assert [e.message for e in check_supported(mesh)] == [
        "spec.extensionProviders[0].opentelemetry.http is not supported yet: Isthmus's OpenTelemetry tracer "
        "exports spans over gRPC with the default sampler only"
    ]
