"""More of Istio's analyzer cases, and the inventory of ``analyzers_test.go`` against Isthmus.

Sources (istio/istio): ``pkg/config/analysis/analyzers/analyzers_test.go`` (``testGrid``, several stored
versions: the current one with ``DestinationRuleSubsetsWithTopologyLabels``, and older ones with
``regexes`` / ``jwtTargetsInvalidServicePortName`` / ``mtlsAnalyzer*`` / ``virtualServiceDestinationHosts custom
domain``), its ``testdata/``, the analyzers themselves (``authn/blockedcidrs.go``,
``serviceentry/conflictingserviceentries.go``, ``gateway/conflictinggateway.go``, ``util/service_lookup.go``,
``destinationrule/subset.go``) and ``pkg/config/analysis/msg/messages.yaml``. Inputs are run through the
CLI's own loader (``cli.analyze_cmd.load_inputs``) and ``analyze``, as ``isthmus analyze`` does.

Inventory of every ``testGrid`` case (P = ``test_istio_parity.py``, M = this module, - = not applicable):
P  deprecation; gateway{NoWorkload,BadPort,CorrectPort,CustomIngressGateway,CustomIngressGatewayBadPort,
   CustomIngressGatewayBadPortWithoutTarget,CustomIngressGatewayTranslation,ServiceMatchPod,Secret,
   SecretValidations}; conflicting gateways {detect, different port, multiple ports, sub selector, no port,
   list type}; portNameNotFollowConvention, namedPort, unnamedPortInSystemNamespace,
   ExternalNameServiceType{Invalid,Valid}PortName; sidecar{Default,}Selector;
   virtualService{ConflictingMeshGatewayHosts{,WithExportTo},DestinationHosts,DestinationRules,Gateways,
   JWTClaimRoute,InternalGatewayRef}; Route Rule no effect on Ingress; dupmatches; host not found in the
   gateway {,with ns}x{v1,beta}; serviceMultipleDeployments, deploymentMultiServicesInDifferentNamespace,
   serviceWithNoSelector; authorizationpolicies; 11 destinationrule CA-certificate cases; 4 UID 1337 cases;
   ServiceEntry {missing addresses (+mesh cfg), Required Lower/Uppercase, Addresses Allocated};
   ConflictingServiceEntryProtocol; Analyze invalid/disabled telemetry, telemetry{,Default}Selector,
   Telemetry Lightstep; DestinationRule{WithFakeHost,SubsetsNotSelectPods,EmptyTopologyLabels}.
M  regexes (old ``virtualservice.RegexAnalyzer``, IST0122 InvalidRegexp, retired: current Istio rejects the
   same regexes in schema validation, so IST0106 for the same resources, one per regex);
   virtualServiceDestinationHosts custom domain (see below); ConflictingServiceEntryProtocol with
   namespace-local exportTo (``serviceentry-conflicting-exportto.yaml``); conflicting gateways, no conflict
   (``conflicting-gateways-no-conflict.yaml``); blocked CIDRs missing/configured/no RequestAuthentication
   (``authn.BlockedCIDRsAnalyzer``, IST0175, implemented here in ``analyze.security.blocked_cidrs``).
   The last three cases' expectations are derived from the analyzers' code (their testGrid entries are
   not in the stored sources). Also counts (P compares sets) for portNameNotFollowConvention,
   authorizationpolicies and the 4 UID 1337 cases: istioctl dedupes identical messages, so a Deployment with
   pod- and container-level UID 1337 gets one IST0144 (Isthmus gave two; fixed in
   ``analyze.services.application_uid``). Not checked: the current grid counts IST0101 twice for
   ``reviews-bogushost`` (virtualServiceDestinationHosts), where the stored testdata has one bogus
   destination and Isthmus reports one; the input that gives two is not in the stored sources.
-  misannoted, alpha (Istio's annotation registry, which Isthmus does not have);
   externalControlPlane* x5, webook (webhook configurations); istioInjection*, injectionImageDistroless*,
   istioInjectionProxyImageMismatch* (IST0102/0103/0123/0148/0105/0158), Detect `image: auto`
   (IST0146/0147): no injector; EnvoyFilter* x6 and envoy-filter-route-cache (Isthmus refuses EnvoyFilter);
   KubernetesGatewaySelector, gateway-api-crd-version (Kubernetes Gateway API); unknown service registry
   in mesh networks, multicluster inconsistent service (MeshNetworks, clusters); Condition Analyzer
   (resource status conditions); DestinationRuleSubsetsWithTopologyLabels (Node objects); destinationrule
   waypoint workload-selector cases (no ambient waypoints); serviceentry-address-allocated-no-dns-capture
   (its expectation is in no stored source).
-  retired codes, whose old cases current Istio expects differently: gatewayBadPort & co. with
   GatewayPortNotOnWorkload IST0104 (now IST0162, in P); serviceMultipleDeployments with
   DeploymentRequiresServiceAssociated IST0117 (now nothing, in P); jwtTargets{In,}ValidServicePortName
   (IST0119, v1alpha1 authentication Policy), mtlsAnalyzer* (IST0113/0115, MeshPolicy/Policy),
   serviceRoleBindings/serviceRoleServices (RBAC v1alpha1): kinds removed from Istio. ``test_retired_codes``
   checks that Isthmus defines none of the retired codes.

``virtualServiceDestinationHosts custom domain``: Istio briefly took MeshConfig ``trustDomain`` as the
cluster domain of Services (``util.GetCustomClusterDomain``) and expected IST0101 for ``hello2/hello``
(``*.svc.cluster.local``). Current Istio dropped that (``util.GetDestinationHost`` has no domain argument
any more; the case left the grid): Services are ``*.svc.cluster.local`` whatever the trust domain, as in
Isthmus, so ``hello1/hello`` (``*.svc.custom.local``) is the one not found.

``test_message_wording`` checks every IST message type Isthmus defines against messages.yaml (name, level,
description and template, Go verbs read as ``{}``); IST0175 and IST0177 are newer than the stored
messages.yaml and are checked against their istio.io reference pages' example messages.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from isthmus.analyze import analyze
from isthmus.analyze import messages as m
from isthmus.analyze.messages import Message
from isthmus.cli.analyze_cmd import load_inputs
from isthmus.cli.main import cli

TESTDATA = Path(__file__).parent / "testdata"


def run(files: list[str]) -> list[Message]:
    report = load_inputs(tuple(str(TESTDATA / f) for f in files))
    out = analyze(report.resources, load_messages=report.messages)
    assert not [x for x in out if x.code == "IST0001"], [str(x) for x in out if x.code == "IST0001"]
    return out


@dataclass
class Case:
    name: str
    files: list[str]
    analyzers: set[str]
    codes: set[str]
    expected: list[tuple[str, str]]  # (code, "Kind namespace/name"), with multiplicity


CASES = [
    Case(
        "regexes",
        ["virtualservice_regexes.yaml"],
        {"schema.ValidationAnalyzer"},
        {"IST0106"},
        [
            ("IST0106", "VirtualService default/bad-match"),
            ("IST0106", "VirtualService default/ecma-not-v2"),
            *[("IST0106", "VirtualService default/lots-of-regexes")] * 6,
        ],
    ),
    Case(
        "virtualServiceDestinationHosts custom domain",
        ["virtualservice_destinationhosts_customdomain.yaml", "custom-domain-mesh-cfg.yaml"],
        {"virtualservice.DestinationHostAnalyzer"},
        {"IST0101", "IST0112"},
        [("IST0101", "VirtualService hello1/hello")],
    ),
    Case(
        "ConflictingServiceEntryProtocol namespace-local exportTo",
        ["serviceentry-conflicting-exportto.yaml"],
        {"serviceentry.ConflictingServiceEntryProtocolAnalyzer"},
        {"IST0177"},
        [],
    ),
    Case(
        "conflicting gateways no conflict",
        ["conflicting-gateways-no-conflict.yaml"],
        {"gateway.ConflictingGatewayAnalyzer"},
        {"IST0145"},
        [],
    ),
    Case(
        "blocked CIDRs missing",
        ["blocked-cidrs-missing.yaml"],
        {"authn.BlockedCIDRsAnalyzer"},
        {"IST0175"},
        [("IST0175", "Deployment istio-system/istiod")],
    ),
    Case(
        "blocked CIDRs configured",
        ["blocked-cidrs-configured.yaml"],
        {"authn.BlockedCIDRsAnalyzer"},
        {"IST0175"},
        [],
    ),
    Case(
        "blocked CIDRs no RequestAuthentication",
        ["blocked-cidrs-no-ra.yaml"],
        {"authn.BlockedCIDRsAnalyzer"},
        {"IST0175"},
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_istio_case(case: Case) -> None:
    messages = run(case.files)
    got = Counter(
        (x.code, x.resource) for x in messages if x.analyzer in case.analyzers and x.code in case.codes
    )
    assert got == Counter(case.expected), "\n".join(str(x) for x in messages)


# Cases of ``test_istio_parity.py`` (which compares sets) whose testGrid entries count a message more than
# once, or once where an analyzer reports it for several fields: istioctl's output keeps one of identical
# messages (``diag.Messages.SortedDedupedCopy``), so these check the counts too.
MULTIPLICITY = [
    Case(
        "portNameNotFollowConvention",
        ["service-no-port-name.yaml"],
        {"service.PortNameAnalyzer"},
        {"IST0118"},
        [
            *[("IST0118", "Service my-namespace1/my-service1")] * 2,
            ("IST0118", "Service my-namespace2/my-service2"),
        ],
    ),
    Case(
        "authorizationpolicies",
        ["authorizationpolicies.yaml"],
        {"auth.AuthorizationPoliciesAnalyzer"},
        {"IST0101"},
        [
            *[("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns")] * 2,
            *[("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-not-ns")] * 2,
        ],
    ),
    *[
        Case(name, [f], {"applicationUID.Analyzer"}, {"IST0144"}, [("IST0144", res)])
        for name, f, res in (
            ("Application Pod SecurityContext with UID 1337", "pod-sec-uid.yaml", "Pod default/pod-sec-uid"),
            (
                "Application Container SecurityContext with UID 1337",
                "pod-con-sec-uid.yaml",
                "Pod default/con-sec-uid",
            ),
            (
                "Deployment Pod SecurityContext with UID 1337",
                "deployment-pod-sec-uid.yaml",
                "Deployment default/deploy-pod-sec-uid",
            ),
            (
                "Deployment Container SecurityContext with UID 1337",
                "deployment-con-sec-uid.yaml",
                "Deployment default/deploy-con-sec-uid",
            ),
        )
    ],
]


@pytest.mark.parametrize("case", MULTIPLICITY, ids=[c.name for c in MULTIPLICITY])
def test_istio_case_counts(case: Case) -> None:
    test_istio_case(case)


def test_regexes_messages() -> None:
    """Current Istio's wording for the regexes case (``validateStringMatchRegexp``, RE2 syntax)."""
    messages = {x.message for x in run(["virtualservice_regexes.yaml"]) if x.code == "IST0106"}
    suffix = "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
    assert any(
        msg.startswith(
            'Schema validation error: "uri": error parsing regexp: invalid perl operator: (?!' + suffix
        )
        for msg in messages
    ), messages
    assert any(msg.startswith('Schema validation error: "corsPolicy.allowOrigins": ') for msg in messages), (
        messages
    )


def test_blocked_cidrs_message() -> None:
    """istio.io's IST0175 page: ``BLOCKED_CIDRS_IN_JWKS_URIS is not configured but 2 RequestAuthentication
    resource(s) exist (default/jwt-example, foo/jwt-example). Consider configuring it ...``."""
    (msg,) = [x for x in run(["blocked-cidrs-missing.yaml"]) if x.code == "IST0175"]
    assert (msg.level, msg.name) == ("Warning", "JwksUriFetchUnrestricted")
    assert msg.message == (
        "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but 2 RequestAuthentication resource(s) exist "
        "(default/jwt-auth, istio-system/jwt-auth-2). Consider configuring it to restrict JWKS URI fetches to "
        "trusted networks."
    )


def test_blocked_cidrs_names_elided(tmp_path: Path) -> None:
    """istioctl's ``formatRANames``: five names, then ``, and N more``; an empty value does not count as set."""
    docs = [
        f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: ra{i}, namespace: ns}}\n"
        "spec: {}\n"
        for i in range(7)
    ]
    istiod = (TESTDATA / "blocked-cidrs-configured.yaml").read_text().split("---\n")[1]
    docs.append(istiod.replace('"10.0.0.0/8,192.168.0.0/16,172.16.0.0/12"', '""'))
    path = tmp_path / "in.yaml"
    path.write_text("---\n".join(docs))
    report = load_inputs((str(path),))
    (msg,) = [x for x in analyze(report.resources, load_messages=report.messages) if x.code == "IST0175"]
    assert (
        "7 RequestAuthentication resource(s) exist (ns/ra0, ns/ra1, ns/ra2, ns/ra3, ns/ra4, and 2 more)"
        in (msg.message)
    )


def test_blocked_cidrs_cli_json() -> None:
    """``isthmus analyze -o json``: the IST0175 entry as istioctl's JSON has it (a Warning: exit 79 only from
    the Warning threshold on)."""
    path = str(TESTDATA / "blocked-cidrs-missing.yaml")
    result = CliRunner().invoke(cli, ["analyze", "-o", "json", "--failure-threshold", "Warning", path])
    assert result.exit_code == 79, result.output
    entries = [e for e in json.loads(result.output) if e["code"] == "IST0175"]
    assert [(e["name"], e["level"], e["resource"]) for e in entries] == [
        ("JwksUriFetchUnrestricted", "Warning", "Deployment istio-system/istiod")
    ]


# --- messages.yaml ---------------------------------------------------------------------------------

# Codes retired in messages.yaml (``# IST0104 RETIRED`` ...): current istioctl never reports them.
RETIRED = {
    "IST0104",
    "IST0105",
    "IST0113",
    "IST0114",
    "IST0115",
    "IST0117",
    "IST0119",
    "IST0120",
    "IST0121",
    "IST0122",
}


def test_retired_codes() -> None:
    assert not RETIRED & {t.code for t in m.all_message_types()}


# (name, level, description, Go template) of messages.yaml for every IST code Isthmus defines.
MESSAGES_YAML: dict[str, tuple[str, str, str, str]] = {
    "IST0001": (
        "InternalError",
        "Error",
        "There was an internal error in the toolchain. This is almost always a bug in the implementation.",
        "Internal error: %v",
    ),
    "IST0002": (
        "Deprecated",
        "Warning",
        "A feature that the configuration is depending on is now deprecated.",
        "Deprecated: %s",
    ),
    "IST0101": (
        "ReferencedResourceNotFound",
        "Error",
        "A resource being referenced does not exist.",
        "Referenced %s not found: %q",
    ),
    "IST0106": (
        "SchemaValidationError",
        "Error",
        "The resource has a schema validation error.",
        "Schema validation error: %v",
    ),
    "IST0109": (
        "ConflictingMeshGatewayVirtualServiceHosts",
        "Error",
        "Conflicting hosts on VirtualServices associated with mesh gateway",
        "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined "
        "behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
    ),
    "IST0110": (
        "ConflictingSidecarWorkloadSelectors",
        "Error",
        "A Sidecar resource selects the same workloads as another Sidecar resource",
        "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    ),
    "IST0111": (
        "MultipleSidecarsWithoutWorkloadSelectors",
        "Error",
        "More than one sidecar resource in a namespace has no workload selector",
        "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    ),
    "IST0112": (
        "VirtualServiceDestinationPortSelectorRequired",
        "Error",
        "A VirtualService routes to a service with more than one port exposed, but does not specify which to use.",
        "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the "
        "destination is required to disambiguate.",
    ),
    "IST0116": (
        "DeploymentAssociatedToMultipleServices",
        "Warning",
        "The resulting pods of a service mesh deployment can't be associated with multiple services using the same "
        "port but different protocols.",
        "This deployment %s is associated with multiple services using port %d but different protocols: %v",
    ),
    "IST0118": (
        "PortNameIsNotUnderNamingConvention",
        "Info",
        "Port name is not under naming convention. Protocol detection is applied to the port.",
        "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.",
    ),
    "IST0127": (
        "NoMatchingWorkloadsFound",
        "Warning",
        "There aren't workloads matching the resource labels",
        "No matching workloads for this resource with the following labels: %s",
    ),
    "IST0128": (
        "NoServerCertificateVerificationDestinationLevel",
        "Warning",
        "No caCertificates are set in DestinationRule, this results in no verification of presented server "
        "certificate.",
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server "
        "identity for host: %s",
    ),
    "IST0129": (
        "NoServerCertificateVerificationPortLevel",
        "Warning",
        "No caCertificates are set in DestinationRule, this results in no verification of presented server "
        "certificate for traffic to a given port.",
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server "
        "identity for host: %s at port %s",
    ),
    "IST0130": (
        "VirtualServiceUnreachableRule",
        "Warning",
        "A VirtualService rule will never be used because a previous rule uses the same match.",
        "VirtualService rule %v not used (%s).",
    ),
    "IST0131": (
        "VirtualServiceIneffectiveMatch",
        "Info",
        "A VirtualService rule match duplicates a match in a previous rule.",
        "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).",
    ),
    "IST0132": (
        "VirtualServiceHostNotFoundInGateway",
        "Warning",
        "Host defined in VirtualService not found in Gateway.",
        "one or more host %v defined in VirtualService %s not found in Gateway %s.",
    ),
    "IST0133": (
        "SchemaWarning",
        "Warning",
        "The resource has a schema validation warning.",
        "Schema validation warning: %v",
    ),
    "IST0134": (
        "ServiceEntryAddressesRequired",
        "Warning",
        "Virtual IP addresses are required for ports serving TCP (or unset) protocol when "
        "PILOT_ENABLE_IP_AUTOALLOCATE is not set on a proxy",
        "ServiceEntry addresses are required for this protocol.",
    ),
    "IST0137": (
        "DeploymentConflictingPorts",
        "Warning",
        "Two services selecting the same workload with the same targetPort MUST refer to the same port.",
        "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.",
    ),
    "IST0138": (
        "GatewayDuplicateCertificate",
        "Warning",
        "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 connections.",
        "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections.",
    ),
    "IST0140": (
        "IngressRouteRulesNotAffected",
        "Warning",
        "Route rules have no effect on ingress gateway requests",
        "Subset in virtual service %s has no effect on ingress gateway %s requests",
    ),
    "IST0144": (
        "InvalidApplicationUID",
        "Warning",
        "Application pods should not run as user ID (UID) 1337",
        "User ID (UID) 1337 is reserved for the sidecar proxy.",
    ),
    "IST0145": (
        "ConflictingGateways",
        "Error",
        "Gateway should not have the same selector, port and matched hosts of server",
        "Conflict with gateways %s (workload selector %s, port %s, hosts %v).",
    ),
    "IST0149": (
        "JwtClaimBasedRoutingWithoutRequestAuthN",
        "Error",
        "Virtual service using JWT claim based routing without request authentication.",
        "The virtual service uses the JWT claim based routing (key: %s) but found no request authentication for the "
        "gateway (%s) pod (%s). The request authentication must first be applied for the gateway pods to validate "
        "the JWT token and make the claims available for routing.",
    ),
    "IST0150": (
        "ExternalNameServiceTypeInvalidPortName",
        "Warning",
        "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded "
        "correctly for ExternalName services.",
        "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for "
        "ports serving TCP protocol from being forwarded correctly",
    ),
    "IST0157": (
        "InvalidTelemetryProvider",
        "Warning",
        "The Telemetry with empty providers will be ignored",
        "The Telemetry %v in namespace %q with empty providers will be ignored.",
    ),
    "IST0159": (
        "ConflictingTelemetryWorkloadSelectors",
        "Error",
        "A Telemetry resource selects the same workloads as another Telemetry resource",
        "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.",
    ),
    "IST0160": (
        "MultipleTelemetriesWithoutWorkloadSelectors",
        "Error",
        "More than one telemetry resource in a namespace has no workload selector",
        "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.",
    ),
    "IST0161": (
        "InvalidGatewayCredential",
        "Error",
        "The credential provided for the Gateway resource is invalid",
        "The credential referenced by the Gateway %s in namespace %s is invalid, which can cause the traffic not to "
        "work as expected.",
    ),
    "IST0162": (
        "GatewayPortNotDefinedOnService",
        "Warning",
        "Gateway port not exposed by service",
        "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its "
        "workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, "
        "it will not be available.",
    ),
    "IST0165": (
        "ReferencedInternalGateway",
        "Warning",
        "VirtualServices should not reference internal Gateways.",
        "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s.",
    ),
    "IST0167": (
        "IneffectivePolicy",
        "Warning",
        "The policy applied has no impact.",
        "The policy has no impact: %s.",
    ),
    "IST0173": (
        "DestinationRuleSubsetNotSelectPods",
        "Error",
        "Subsets defined in destination does not select any pods.",
        "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
        "(NoHealthyUpstream).",
    ),
    "IST0174": (
        "UnknownDestinationRuleHost",
        "Warning",
        "Host defined in destination rule does not match any services in the mesh.",
        "The host %s defined in the DestinationRule does not match any services in the mesh.",
    ),
}

# Newer than the stored messages.yaml: name and level from the code table, wording from the istio.io
# page's example (the rendered message).
EXAMPLES: dict[str, tuple[str, str, tuple, str]] = {
    "IST0175": (
        "JwksUriFetchUnrestricted",
        "Warning",
        (2, "default/jwt-example, foo/jwt-example"),
        "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but 2 RequestAuthentication resource(s) exist "
        "(default/jwt-example, foo/jwt-example). Consider configuring it to restrict JWKS URI fetches to trusted "
        "networks.",
    ),
    "IST0177": (
        "ConflictingServiceEntryProtocol",
        "Warning",
        ("default/api-http, default/api-tls", '"api.example.com"', 443, "HTTP, TLS"),
        'Multiple ServiceEntries (default/api-http, default/api-tls) define the same host "api.example.com" and '
        "port 443 with conflicting protocols (HTTP, TLS).",
    ),
}


def test_message_wording() -> None:
    defined = {t.code: t for t in m.all_message_types() if t.code.startswith("IST")}
    assert set(defined) == set(MESSAGES_YAML) | set(EXAMPLES)
    for code, (name, level, description, template) in MESSAGES_YAML.items():
        t = defined[code]
        assert (t.name, t.level, t.description) == (name, level, description), code
        assert t.template == re.sub(r"%[vsdqt]", "{}", template), code
    for code, (name, level, args, rendered) in EXAMPLES.items():
        t = defined[code]
        assert (t.name, t.level) == (name, level), code
        assert t.format(*args) == rendered, code
