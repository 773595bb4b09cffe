"""Every Istio field Isthmus accepts is either translated or refused by name (never dropped silently).

These are the fields a field-by-field audit found accepted but read by no generator: each is now refused
by the running mesh (`api.support.check_supported`) with a message that names it and says why, while the
same resource without the field stays accepted.
"""

from __future__ import annotations

import textwrap

import pytest

from isthmus.api.errors import ConfigErrors
from isthmus.api.loader import load_text
from isthmus.api.support import check_supported

MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig:
    tracing:
      %s
"""

CASES = [
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: v, namespace: default}
        spec:
          hosts: [db]
          gateways: [gw]
          tcp:
          - match: [{port: 5432, sourceSubnet: 10.0.0.0/8}]
            route: [{destination: {host: db}}]
        """,
        ", sourceSubnet: 10.0.0.0/8",
        "spec.tcp[0].match[0].sourceSubnet",
        "Istio itself does not translate it",
        id="vs-tcp-sourceSubnet",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: d, namespace: default}
        spec:
          host: reviews
          trafficPolicy:
            retryBudget: {percent: 10, budgetInterval: 5s}
        """,
        ", budgetInterval: 5s",
        "spec.trafficPolicy.retryBudget.budgetInterval",
        "Envoy's retry budget has no interval",
        id="dr-retryBudget-budgetInterval",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: d, namespace: default}
        spec:
          host: reviews
          subsets:
          - name: v1
            labels: {version: v1}
            trafficPolicy:
              retryBudget: {minRetryConcurrency: 2, budgetInterval: 1s}
        """,
        ", budgetInterval: 1s",
        "spec.subsets[0].trafficPolicy.retryBudget.budgetInterval",
        "Envoy's retry budget has no interval",
        id="dr-subset-retryBudget-budgetInterval",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: g, namespace: default}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"], defaultEndpoint: 127.0.0.1:8080}
        """,
        ", defaultEndpoint: 127.0.0.1:8080",
        "spec.servers[0].defaultEndpoint",
        "Istio documents it as not implemented",
        id="gateway-defaultEndpoint",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: g, namespace: default}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 443, name: https, protocol: HTTPS}
            hosts: ["*"]
            tls:
              mode: MUTUAL
              caCertificates: /etc/ca.pem
              tlsCertificates:
              - {serverCertificate: /etc/rsa.pem, privateKey: /etc/rsa.key, caCertificates: /etc/other-ca.pem}
        """,
        ", caCertificates: /etc/other-ca.pem",
        "spec.servers[0].tls.tlsCertificates[0].caCertificates",
        "set the CA bundle there",
        id="gateway-tlsCertificates-caCertificates",
    ),
    pytest.param(
        MESH % "datadog: {address: 'datadog-agent:8126'}",
        "datadog: {address: 'datadog-agent:8126'}",
        "spec.defaultConfig.tracing.datadog",
        "builds only the Zipkin tracer",
        id="mesh-legacy-datadog",
    ),
    pytest.param(
        MESH % "lightstep: {address: 'ls:8080', accessToken: t}",
        "lightstep: {address: 'ls:8080', accessToken: t}",
        "spec.defaultConfig.tracing.lightstep",
        "no Lightstep tracer",
        id="mesh-legacy-lightstep",
    ),
    pytest.param(
        MESH % "stackdriver: {debug: true}",
        "stackdriver: {debug: true}",
        "spec.defaultConfig.tracing.stackdriver",
        "no Stackdriver tracer",
        id="mesh-legacy-stackdriver",
    ),
    pytest.param(
        MESH % "openCensusAgent: {address: 'oc:55678'}",
        "openCensusAgent: {address: 'oc:55678'}",
        "spec.defaultConfig.tracing.openCensusAgent",
        "no OpenCensus tracer",
        id="mesh-legacy-opencensus",
    ),
    pytest.param(
        MESH % "{zipkin: {address: 'zipkin.istio-system:9411'}, tlsSettings: {mode: SIMPLE}}",
        ", tlsSettings: {mode: SIMPLE}",
        "spec.defaultConfig.tracing.tlsSettings",
        "TLS to the tracing backend is not implemented",
        id="mesh-legacy-tracing-tlsSettings",
    ),
    pytest.param(
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: MeshConfig
        metadata: {name: mesh}
        spec:
          defaultConfig:
            gatewayTopology: {numTrustedProxies: 1, setCurrentClientCertDetails: {subject: true}}
        """,
        ", setCurrentClientCertDetails: {subject: true}",
        "spec.defaultConfig.gatewayTopology.setCurrentClientCertDetails",
        "buildGatewayConnectionManager",
        id="mesh-gatewayTopology-setCurrentClientCertDetails",
    ),
    pytest.param(
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: MeshConfig
        metadata: {name: mesh}
        spec:
          extensionProviders:
          - name: zipkin
            zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
          - name: vault
            sds: {service: vault.default.svc.cluster.local, port: 8200}
        """,
        "- name: vault\n    sds: {service: vault.default.svc.cluster.local, port: 8200}",
        "spec.extensionProviders[1].sds",
        "external SDS providers are not implemented",
        id="mesh-extensionProviders-sds",
    ),
]


def _errors(text: str) -> list[str]:
    resources = load_text(text, "f.yaml")
    return [str(e) for r in resources for e in check_supported(r)]


@pytest.mark.parametrize(("doc", "field_text", "path", "reason"), CASES)
def test_accepted_but_untranslated_fields_are_refused_by_name(
    doc: str, field_text: str, path: str, reason: str
) -> None:
    text = textwrap.dedent(doc)
    (error,) = _errors(text)
    assert f"{path} is not supported yet: " in error
    assert reason in error
    # The same resource without the field is accepted: the refusal is the field's alone.
    assert text.count(field_text) == 1
    without = text.replace(field_text, "" if field_text.startswith((",", "-")) else "zipkin: {}")
    assert _errors(without) == []


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: d, namespace: default}
            spec:
              host: reviews
              trafficPolicy:
                loadBalancer: {simple: ROUND_ROBIN, backendUtilization: {}}
            """,
            "spec.trafficPolicy.loadBalancer.backendUtilization",
            id="dr-backendUtilization",
        ),
        pytest.param(
            # egressProxy is a Sidecar OutboundTrafficPolicy field; MeshConfig's has a mode only.
            """
            apiVersion: isthmus.dev/v1alpha1
            kind: MeshConfig
            metadata: {name: mesh}
            spec:
              outboundTrafficPolicy:
                mode: ALLOW_ANY
                egressProxy: {host: egress.example, port: {number: 80}}
            """,
            "spec.outboundTrafficPolicy.egressProxy",
            id="mesh-outboundTrafficPolicy-egressProxy",
        ),
    ],
)
def test_unmodelled_istio_fields_are_unknown_field_errors(doc: str, path: str) -> None:
    """Istio fields the models leave out (istiod translates neither) fail loading with an error naming them."""
    with pytest.raises(ConfigErrors) as info:
        load_text(textwrap.dedent(doc), "f.yaml")
    field = path.rsplit(".", 1)[1]
    assert f'{path}: unknown field "{field}"' in str(info.value)


def test_translated_mesh_fields_are_not_refused() -> None:
    """The other side of the rule: MeshConfig fields the generators translate (listener-level access logs,
    clusters' alt_stat_name) were missing from the allow-list, so the running mesh refused them."""
    text = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  accessLogFile: /dev/stdout
  disableEnvoyListenerLog: true
  inboundClusterStatName: "LocalService_%SERVICE%"
  outboundClusterStatName: "%SERVICE%_%SERVICE_PORT%"
"""
    assert _errors(text) == []
