"""Istio's own analyzer cases (``pkg/config/analysis/analyzers/analyzers_test.go`` and its ``testdata``):
the same (code, resource) pairs must be reported for the same input.

Each Istio case runs one analyzer; here every analyzer runs and the messages of the analyzers that
correspond to Istio's (and of the codes it can report) are compared, as a set of (code, resource) pairs.
Istio writes a resource without a namespace in its YAML as ``Kind name``; ours is always ``Kind default/name``
(namespace-less resources go to ``default``), so expectations are normalized that way.

Adaptations of Istio's input (each noted in the YAML file):
- ``gateway-secrets.yaml``: a Gateway named ``defaultgateway-bogusCredentialName`` is lower-cased
  (Kubernetes and Isthmus reject upper-case names; the case is about the credential);
- ``virtualservice_destinationhosts.yaml``, ``deployment-multi-service*.yaml``: Service ports with
  ``protocol: HTTP``/``HTTPS`` (rejected by Kubernetes, which accepts TCP, UDP, SCTP) read ``TCP``; the
  port names keep giving the Istio protocol the analyzers compare;
- ``gateway-secrets-validation.yaml``: the expired certificate is regenerated (same validity window);
- mesh config files are Isthmus ``MeshConfig`` resources; the ``*_beta`` files are the v1 files with
  ``networking.istio.io/v1beta1``;
- ``virtualservice_route_rule_no_effects_ingress.yaml``: the Service port ``protocol: HTTP`` reads ``TCP``;
- ``telemetry-selector.yaml``: the Telemetries' ``egress`` field (a Sidecar field, unknown to Telemetry, so
  the resource would be rejected) is dropped;
- ``gateway-duplicate-certificate.yaml`` is generated to the same content as Istio's.

Cases not ported (no counterpart in Isthmus, or kinds it does not read): annotations (misannotated,
alpha, deprecated/alpha annotations: Istio's annotation registry), external control plane and webhooks
(webhook configurations), sidecar injection, proxy image and ``image: auto`` checks (no injector),
EnvoyFilter patches (Isthmus refuses EnvoyFilter), Kubernetes Gateway API (``IneffectiveSelector``, CRD
versions), multicluster / MeshNetworks, the condition analyzer (resource status), DestinationRule
workload selectors on waypoint services (no waypoints), and ``DestinationRuleSubsetsWithTopologyLabels``
(it needs Node objects, which Isthmus does not model: pods have no node topology labels). The blocked-CIDRs
cases, the removed ``virtualservice.RegexAnalyzer`` case (IST0122: invalid regexes are schema errors,
IST0106, in current Istio) and the full inventory are in ``test_istio_analyzers_more_parity.py``.

Deviations (``isthmus`` in a case says what Isthmus reports instead, and why):
- ``gatewayCustomIngressGatewayBadPort``: Service port 8003 -> targetPort 80, Gateway server port 80.
  istioctl (this version of the case) reports IST0162; Isthmus serves port 80 on the pod, which the
  Service reaches through targetPort 80, so the port is available and nothing is reported.
- ``gatewaySecret``: the Secret ``httpbin-credential`` holds no certificate, so Isthmus also reports
  IST0161 for ``defaultgateway-noerrors`` (newer istioctl validates credentials too); only IST0101 is
  compared, as in Istio's case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from isthmus.analyze import analyze
from isthmus.api.loader import LoadReport, load_path_report

TESTDATA = Path(__file__).parent / "testdata"


@dataclass
class Case:
    name: str
    files: list[str]
    analyzers: set[str]
    expected: list[tuple[str, str]]
    codes: set[str] | None = None  # compare only these codes (default: every code of the analyzers)
    isthmus: list[tuple[str, str]] | None = None  # what Isthmus reports when it deliberately differs
    extra: list[str] = field(default_factory=list)


GW_PORT = {"gateway.IngressGatewayPortAnalyzer"}
GW_SECRET = {"gateway.SecretAnalyzer", "gateway.IngressGatewayPortAnalyzer"}
GW_CONFLICT = {"gateway.ConflictingGatewayAnalyzer"}
PORT_NAME = {"service.PortNameAnalyzer"}
SIDECAR = {"sidecar.SelectorAnalyzer"}
VS_MESH = {"virtualservice.ConflictingMeshGatewayHostsAnalyzer"}
VS_HOSTS = {"virtualservice.DestinationHostAnalyzer"}
VS_DR = {"virtualservice.DestinationRuleAnalyzer"}
VS_GW = {"virtualservice.GatewayAnalyzer"}
DEPLOY = {"deployment.MultiServiceAnalyzer"}
AUTHZ = {"auth.AuthorizationPoliciesAnalyzer"}
DR_CA = {"destinationrule.CaCertificateAnalyzer"}
DR_PODS = {"destinationrule.SubsetSelectPodAnalyzer"}
SCHEMA = {"schema.ValidationAnalyzer"}
SE_ADDR = {"serviceentry.Analyzer"}
SE_PROTO = {"serviceentry.ConflictingServiceEntryProtocolAnalyzer"}
DEPRECATION = {"deprecation.DeprecationAnalyzer"}
GW_CERT = {"gateway.CertificateAnalyzer"}
VS_JWT = {"virtualservice.JWTClaimRouteAnalyzer"}
APP_UID = {"applicationUID.Analyzer"}
TELEMETRY_PROVIDER = {"telemetry.ProviderAnalyzer"}
TELEMETRY_SELECTOR = {"telemetry.SelectorAnalyzer"}
TELEMETRY_LIGHTSTEP = {"telemetry.LightstepAnalyzer"}

CASES = [
    Case(
        "gatewayNoWorkload", ["gateway-no-workload.yaml"], GW_PORT, [("IST0101", "Gateway httpbin-gateway")]
    ),
    Case("gatewayBadPort", ["gateway-no-port.yaml"], GW_PORT, [("IST0162", "Gateway httpbin-gateway")]),
    Case("gatewayCorrectPort", ["gateway-correct-port.yaml"], GW_PORT, []),
    Case("gatewayCustomIngressGateway", ["gateway-custom-ingressgateway.yaml"], GW_PORT, []),
    Case(
        "gatewayCustomIngressGatewayBadPort",
        ["gateway-custom-ingressgateway-badport.yaml"],
        GW_PORT,
        [("IST0162", "Gateway httpbin-gateway")],
        isthmus=[],
    ),
    Case(
        "gatewayCustomIngressGatewayBadPortWithoutTarget",
        ["gateway-custom-ingressgateway-badport-notarget.yaml"],
        GW_PORT,
        [("IST0162", "Gateway httpbin-gateway")],
    ),
    Case(
        "gatewayCustomIngressGatewayTranslation",
        ["gateway-custom-ingressgateway-translation.yaml"],
        GW_PORT,
        [],
    ),
    Case(
        "gatewayServiceMatchPod",
        ["gateway-custom-ingressgateway-svcselector.yaml"],
        GW_PORT,
        [("IST0162", "Gateway httpbin8002-gateway")],
    ),
    Case(
        "gatewaySecret",
        ["gateway-secrets.yaml"],
        GW_SECRET,
        [
            ("IST0101", "Gateway defaultgateway-boguscredentialname"),
            ("IST0101", "Gateway customgateway-wrongnamespace"),
            ("IST0101", "Gateway bogusgateway"),
        ],
        codes={"IST0101"},
    ),
    Case(
        "gatewaySecretValidations",
        ["gateway-secrets-validation.yaml"],
        GW_SECRET,
        [
            ("IST0161", "Gateway defaultgateway-invalid-keys"),
            ("IST0161", "Gateway defaultgateway-missing-keys"),
            ("IST0161", "Gateway defaultgateway-invalid-cert"),
            ("IST0161", "Gateway defaultgateway-expired"),
        ],
    ),
    Case(
        "conflicting gateways detect",
        ["conflicting-gateways.yaml"],
        GW_CONFLICT,
        [("IST0145", "Gateway alpha"), ("IST0145", "Gateway beta")],
    ),
    Case(
        "gateways with different port are non-conflicting", ["gateway-different-port.yaml"], GW_CONFLICT, []
    ),
    Case(
        "conflicting gateways with multiple port declarations",
        ["conflicting-gateways-multiple-ports.yaml"],
        GW_CONFLICT,
        [("IST0145", "Gateway alpha"), ("IST0145", "Gateway beta")],
    ),
    Case(
        "conflicting gateways detect by sub selector",
        ["conflicting-gateways-subSelector.yaml"],
        GW_CONFLICT,
        [("IST0145", "Gateway alpha"), ("IST0145", "Gateway beta")],
    ),
    Case("conflicting gateways detect: no port", ["conflicting-gateways-invalid-port.yaml"], GW_CONFLICT, []),
    Case(
        "Analyze conflicting gateway with list type",
        ["analyze-list-type.yaml"],
        GW_CONFLICT,
        [("IST0145", "Gateway alpha"), ("IST0145", "Gateway alpha-l"), ("IST0145", "Gateway beta-l")],
    ),
    Case(
        "portNameNotFollowConvention",
        ["service-no-port-name.yaml"],
        PORT_NAME,
        [
            ("IST0118", "Service my-namespace1/my-service1"),
            ("IST0118", "Service my-namespace1/my-service1"),
            ("IST0118", "Service my-namespace2/my-service2"),
        ],
    ),
    Case("namedPort", ["service-port-name.yaml"], PORT_NAME, []),
    Case("unnamedPortInSystemNamespace", ["service-no-port-name-system-namespace.yaml"], PORT_NAME, []),
    Case(
        "ExternalNameServiceTypeInvalidPortName",
        ["incorrect-port-name-external-name-service-type.yaml"],
        PORT_NAME,
        [
            ("IST0150", "Service nginx-ns/nginx"),
            ("IST0150", "Service nginx-ns2/nginx-svc2"),
            ("IST0150", "Service nginx-ns3/nginx-svc3"),
        ],
    ),
    Case(
        "ExternalNameServiceTypeValidPortName",
        ["correct-port-name-external-name-service-type.yaml"],
        PORT_NAME,
        [],
    ),
    Case(
        "sidecarDefaultSelector",
        ["sidecar-default-selector.yaml"],
        SIDECAR,
        [
            ("IST0111", "Sidecar ns2/has-conflict-2"),
            ("IST0111", "Sidecar ns2/has-conflict-1"),
            ("IST0167", "Sidecar ns-ambient/namespace-scoped"),
            ("IST0167", "Sidecar ns-ambient/pod-scoped"),
        ],
    ),
    Case(
        "sidecarSelector",
        ["sidecar-selector.yaml"],
        SIDECAR,
        [
            ("IST0101", "Sidecar default/maps-to-nonexistent"),
            ("IST0101", "Sidecar other/maps-to-different-ns"),
            ("IST0110", "Sidecar default/dupe-1"),
            ("IST0110", "Sidecar default/dupe-2"),
            ("IST0110", "Sidecar default/overlap-1"),
            ("IST0110", "Sidecar default/overlap-2"),
        ],
    ),
    Case(
        "virtualServiceConflictingMeshGatewayHosts",
        ["virtualservice_conflictingmeshgatewayhosts.yaml"],
        VS_MESH,
        [
            ("IST0109", "VirtualService team3/ratings"),
            ("IST0109", "VirtualService team4/ratings"),
            ("IST0109", "VirtualService foo/ratings"),
            ("IST0109", "VirtualService bar/ratings"),
            ("IST0109", "VirtualService foo/productpage"),
            ("IST0109", "VirtualService foo/bogus-productpage"),
            ("IST0109", "VirtualService team2/ratings"),
        ],
    ),
    Case(
        "virtualServiceConflictingMeshGatewayHostsWithExportTo",
        ["virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml"],
        VS_MESH,
        [
            ("IST0109", "VirtualService foo/productpage"),
            ("IST0109", "VirtualService bar/productpage"),
            ("IST0109", "VirtualService foo/productpage-c"),
            ("IST0109", "VirtualService bar/productpage-c"),
            ("IST0109", "VirtualService foo/productpage-d"),
            ("IST0109", "VirtualService bar/productpage-d"),
        ],
    ),
    Case(
        "virtualServiceDestinationHosts",
        ["virtualservice_destinationhosts.yaml"],
        VS_HOSTS,
        [
            ("IST0101", "VirtualService default/reviews-bogushost"),
            ("IST0101", "VirtualService default/reviews-bookinfo-other"),
            ("IST0101", "VirtualService default/reviews-mirror-bogushost"),
            ("IST0101", "VirtualService default/reviews-bogusport"),
            ("IST0112", "VirtualService default/reviews-2port-missing"),
            ("IST0101", "VirtualService istio-system/cross-namespace-details"),
            ("IST0101", "VirtualService hello/hello-export-to-bogus"),
        ],
    ),
    Case(
        "virtualServiceDestinationRules",
        ["virtualservice_destinationrules.yaml"],
        VS_DR,
        [
            ("IST0101", "VirtualService default/reviews-bogussubset"),
            ("IST0101", "VirtualService default/reviews-mirror-bogussubset"),
        ],
    ),
    Case(
        "virtualServiceGateways",
        ["virtualservice_gateways.yaml"],
        VS_GW,
        [
            ("IST0101", "VirtualService httpbin-bogus"),
            ("IST0132", "VirtualService default/cross-test"),
            ("IST0132", "VirtualService httpbin-bogus"),
            ("IST0132", "VirtualService httpbin"),
        ],
    ),
    Case(
        "serviceMultipleDeployments",
        ["deployment-multi-service.yaml"],
        DEPLOY,
        [
            ("IST0116", "Deployment bookinfo/multiple-svc-multiple-prot"),
            ("IST0116", "Deployment bookinfo/multiple-without-port"),
            ("IST0137", "Deployment bookinfo/conflicting-ports"),
        ],
    ),
    Case(
        "deploymentMultiServicesInDifferentNamespace",
        ["deployment-multi-service-different-ns.yaml"],
        DEPLOY,
        [],
    ),
    Case("serviceWithNoSelector", ["deployment-service-no-selector.yaml"], DEPLOY, []),
    Case(
        "authorizationpolicies",
        ["authorizationpolicies.yaml"],
        AUTHZ,
        [
            ("IST0127", "AuthorizationPolicy istio-system/meshwide-httpbin-v1"),
            ("IST0127", "AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide"),
            ("IST0127", "AuthorizationPolicy httpbin/httpbin-nopods"),
            ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns"),
            ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-not-ns"),
            ("IST0127", "AuthorizationPolicy test-ambient/no-workload"),
        ],
    ),
    Case(
        "destinationrule with no cacert, simple at destinationlevel",
        ["destinationrule-simple-destination.yaml"],
        DR_CA,
        [("IST0128", "DestinationRule db-tls")],
    ),
    Case(
        "destinationrule with no cacert, mutual at destinationlevel",
        ["destinationrule-mutual-destination.yaml"],
        DR_CA,
        [("IST0128", "DestinationRule db-mtls")],
    ),
    Case(
        "destinationrule with no cacert, simple at portlevel",
        ["destinationrule-simple-port.yaml"],
        DR_CA,
        [("IST0129", "DestinationRule db-tls")],
    ),
    Case(
        "destinationrule with credentialname, simple at destinationlevel, no workloadSelector",
        ["destinationrule-simple-destination-credentialname.yaml"],
        DR_CA,
        [("IST0128", "DestinationRule db-tls")],
    ),
    Case(
        "destinationrule with credentialname, simple at destinationlevel, workloadSelector",
        ["destinationrule-simple-destination-credentialname-selector.yaml"],
        DR_CA,
        [],
    ),
    Case(
        "destinationrule with credentialname, simple at portlevel, no workloadSelector",
        ["destinationrule-simple-port-credentialname.yaml"],
        DR_CA,
        [("IST0129", "DestinationRule db-tls")],
    ),
    Case(
        "destinationrule with credentialname, simple at portlevel, workloadSelector",
        ["destinationrule-simple-port-credentialname-selector.yaml"],
        DR_CA,
        [],
    ),
    Case(
        "destinationrule with no cacert, mutual at portlevel",
        ["destinationrule-mutual-port.yaml"],
        DR_CA,
        [("IST0129", "DestinationRule db-mtls")],
    ),
    Case(
        "destinationrule with no cacert, mutual at destinationlevel and simple at port level",
        ["destinationrule-compound-simple-mutual.yaml"],
        DR_CA,
        [("IST0128", "DestinationRule db-mtls"), ("IST0129", "DestinationRule db-mtls")],
    ),
    Case(
        "destinationrule with no cacert, simple at destinationlevel and mutual at port level",
        ["destinationrule-compound-mutual-simple.yaml"],
        DR_CA,
        [("IST0129", "DestinationRule db-mtls"), ("IST0128", "DestinationRule db-mtls")],
    ),
    Case("destinationrule with both cacerts", ["destinationrule-with-ca.yaml"], DR_CA, []),
    Case(
        "dupmatches",
        ["virtualservice_dupmatches.yaml", "virtualservice_overlappingmatches.yaml"],
        SCHEMA,
        [
            ("IST0130", "VirtualService duplicate-match"),
            ("IST0130", "VirtualService foo/sample-foo-cluster01"),
            ("IST0131", "VirtualService almost-duplicate-match"),
            ("IST0131", "VirtualService duplicate-match"),
            ("IST0130", "VirtualService duplicate-tcp-match"),
            ("IST0130", "VirtualService duplicate-empty-tcp"),
            ("IST0131", "VirtualService almost-duplicate-tcp-match"),
            ("IST0131", "VirtualService duplicate-tcp-match"),
            ("IST0130", "VirtualService none/tls-routing"),
            ("IST0131", "VirtualService none/tls-routing-almostmatch"),
            ("IST0131", "VirtualService none/tls-routing"),
            ("IST0131", "VirtualService non-method-get"),
            ("IST0131", "VirtualService overlapping-in-single-match"),
            ("IST0131", "VirtualService overlapping-in-two-matches"),
            ("IST0131", "VirtualService overlapping-mathes-with-different-methods"),
        ],
        codes={"IST0130", "IST0131"},
    ),
    *[
        Case(
            f"host defined in virtualservice not found in the gateway{suffix}",
            [f"virtualservice_host_not_found_gateway{suffix}.yaml"],
            VS_GW,
            [
                ("IST0132", "VirtualService default/testing-service-02-test-01"),
                ("IST0132", "VirtualService default/testing-service-02-test-02"),
                ("IST0132", "VirtualService default/testing-service-02-test-03"),
                ("IST0132", "VirtualService default/testing-service-03-test-04"),
            ],
        )
        for suffix in ("", "_beta")
    ],
    *[
        Case(
            f"host defined in virtualservice not found in the gateway with ns{suffix}",
            [f"virtualservice_host_not_found_gateway_with_ns_prefix{suffix}.yaml"],
            VS_GW,
            [("IST0132", "VirtualService default/testing-service-01-test-01")],
        )
        for suffix in ("", "_beta")
    ],
    Case(
        "missing Addresses and Protocol in Service Entry",
        ["serviceentry-missing-addresses-protocol.yaml"],
        SE_ADDR,
        [
            ("IST0134", "ServiceEntry default/service-entry-test-03"),
            ("IST0134", "ServiceEntry default/service-entry-test-04"),
            ("IST0134", "ServiceEntry default/service-entry-test-07"),
        ],
    ),
    Case(
        "missing Addresses and Protocol in Service Entry with ISTIO_META_DNS_AUTO_ALLOCATE enabled",
        [
            "serviceentry-missing-addresses-protocol.yaml",
            "serviceentry-missing-addresses-protocol-mesh-cfg.yaml",
        ],
        SE_ADDR,
        [],
    ),
    Case(
        "ServiceEntry Addresses Required Lowercase Protocol",
        ["serviceentry-address-required-lowercase.yaml"],
        SE_ADDR,
        [("IST0134", "ServiceEntry address-missing-lowercase")],
    ),
    Case(
        "ServiceEntry Addresses Required Uppercase Protocol",
        ["serviceentry-address-required-uppercase.yaml"],
        SE_ADDR,
        [("IST0134", "ServiceEntry address-missing-uppercase")],
    ),
    Case(
        "ServiceEntry Addresses Allocated",
        ["serviceentry-address-allocated.yaml", "serviceentry-address-allocated-mesh-cfg.yaml"],
        SE_ADDR,
        [],
    ),
    Case(
        "ConflictingServiceEntryProtocol",
        ["serviceentry-conflicting-protocol.yaml"],
        SE_PROTO,
        [("IST0177", "ServiceEntry default/se-https"), ("IST0177", "ServiceEntry default/se-http")],
    ),
    Case(
        "deprecation",
        ["deprecation.yaml"],
        DEPRECATION,
        [("IST0002", "VirtualService foo/productpage"), ("IST0002", "Sidecar default/no-selector")],
    ),
    Case(
        "certificate duplication in Gateway",
        ["gateway-duplicate-certificate.yaml"],
        GW_CERT,
        [
            ("IST0138", "Gateway istio-system/gateway-01-test-01"),
            ("IST0138", "Gateway istio-system/gateway-02-test-01"),
            ("IST0138", "Gateway istio-system/gateway-01-test-02"),
            ("IST0138", "Gateway default/gateway-01-test-03"),
        ],
    ),
    Case(
        "virtualServiceJWTClaimRoute",
        ["virtualservice_jwtclaimroute.yaml"],
        VS_JWT,
        [("IST0149", "VirtualService foo")],
    ),
    Case(
        "virtualServiceInternalGatewayRef",
        ["virtualservice_internal_gateway_ref.yaml"],
        VS_GW,
        [("IST0165", "VirtualService httpbin")],
    ),
    Case(
        "Route Rule no effect on Ingress",
        ["virtualservice_route_rule_no_effects_ingress.yaml"],
        VS_HOSTS,
        [("IST0140", "VirtualService default/testing-service-01-test-01")],
    ),
    Case(
        "Application Pod SecurityContext with UID 1337",
        ["pod-sec-uid.yaml"],
        APP_UID,
        [("IST0144", "Pod pod-sec-uid")],
    ),
    Case(
        "Application Container SecurityContext with UID 1337",
        ["pod-con-sec-uid.yaml"],
        APP_UID,
        [("IST0144", "Pod con-sec-uid")],
    ),
    Case(
        "Deployment Pod SecurityContext with UID 1337",
        ["deployment-pod-sec-uid.yaml"],
        APP_UID,
        [("IST0144", "Deployment deploy-pod-sec-uid")],
    ),
    Case(
        "Deployment Container SecurityContext with UID 1337",
        ["deployment-con-sec-uid.yaml"],
        APP_UID,
        [("IST0144", "Deployment deploy-con-sec-uid")],
    ),
    Case(
        "Analyze invalid telemetry",
        ["telemetry-invalid-provider.yaml"],
        TELEMETRY_PROVIDER,
        [("IST0157", "Telemetry istio-system/mesh-default")],
    ),
    Case("Analyze disabled telemetry", ["telemetry-disable-provider.yaml"], TELEMETRY_PROVIDER, []),
    Case(
        "telemetrySelector",
        ["telemetry-selector.yaml"],
        TELEMETRY_SELECTOR,
        [
            ("IST0101", "Telemetry default/maps-to-nonexistent"),
            ("IST0101", "Telemetry other/maps-to-different-ns"),
            ("IST0159", "Telemetry default/dupe-1"),
            ("IST0159", "Telemetry default/dupe-2"),
            ("IST0159", "Telemetry default/overlap-1"),
            ("IST0159", "Telemetry default/overlap-2"),
        ],
    ),
    Case(
        "telemetryDefaultSelector",
        ["telemetry-default-selector.yaml"],
        TELEMETRY_SELECTOR,
        [("IST0160", "Telemetry ns2/has-conflict-2"), ("IST0160", "Telemetry ns2/has-conflict-1")],
        codes={"IST0160"},
    ),
    Case(
        "Telemetry Lightstep",
        ["telemetry-lightstep.yaml", "telemetry-lightstep-meshconfig.yaml"],
        TELEMETRY_LIGHTSTEP,
        [("IST0002", "Telemetry istio-system/mesh-default")],
    ),
    Case(
        "DestinationRuleWithFakeHost",
        ["destinationrule-with-fake-host.yaml"],
        DR_PODS,
        [("IST0174", "DestinationRule default/fake-host")],
    ),
    Case(
        "DestinationRuleSubsetsNotSelectPods",
        ["destinationrule-subsets-not-select-pods.yaml"],
        DR_PODS,
        [("IST0173", "DestinationRule default/subsets-not-select-pods")],
    ),
    Case(
        "DestinationRuleEmptyTopologyLabels",
        ["destinationrule-empty-topology-labels.yaml"],
        DR_PODS,
        [("IST0173", "DestinationRule default/empty-topology-labels")],
    ),
]


def _normalize(resource: str) -> str:
    kind, _, name = resource.partition(" ")
    return resource if "/" in name else f"{kind} default/{name}"


def _load(files: list[str]) -> LoadReport:
    report = LoadReport()
    for f in files:
        report.extend(load_path_report(TESTDATA / f, lenient=True))
    return report


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_istio_case(case: Case) -> None:
    report = _load(case.files)
    messages = analyze(report.resources, load_messages=report.messages)
    assert not [m for m in messages if m.code == "IST0001"], "an analyzer failed"
    from isthmus.analyze.registry import all_analyzers

    codes = case.codes or {c for a in all_analyzers() if a.name in case.analyzers for c in a.codes}
    got = {(m.code, m.resource) for m in messages if m.analyzer in case.analyzers and m.code in codes}
    want = case.isthmus if case.isthmus is not None else case.expected
    assert got == {(code, _normalize(res)) for code, res in want}, "\n".join(str(m) for m in messages)
