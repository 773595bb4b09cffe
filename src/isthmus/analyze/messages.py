"""Analysis messages: Istio's ``IST`` codes (``pkg/config/analysis/msg/messages.yaml``) and Isthmus' own.

Every message type has a code, a name, a level and a template. The ``IST`` entries keep istioctl's code,
name, level and wording (templates are Go format strings there; here they are ``str.format`` templates
whose arguments are formatted the way Go's ``%q`` and ``%v`` would print them, see ``go_q`` and
``go_list``).

Isthmus' own checks (mistakes istioctl does not catch) use the ``ISM`` range:

``ISM0001`` DestinationRuleNotVisibleForSubset (Warning)
    A VirtualService routes to a subset that some DestinationRule defines, but the DestinationRule
    that applies in a namespace where the VirtualService is used (DR lookup: the caller's namespace,
    then the service's, then the root namespace; exportTo) does not define it: calls from there get
    503 NC (no cluster for the subset).
``ISM0002`` QueryParamsWithUriRegexQuestionMark (Warning)
    An HTTP match combines ``queryParams`` with a ``uri`` regex that contains a literal ``?``. Envoy
    matches the uri against the path without the query string, so the match never applies.
``ISM0003`` OutlierDetectionNeverEjects (Warning)
    ``outlierDetection`` can never eject a host: with N endpoints, Envoy ejects only while the ejected
    share stays within ``maxEjectionPercent`` (10% when unset), so fewer than 100/maxEjectionPercent
    endpoints means not even one host can be ejected.
``ISM0004`` RetriesExceedRouteTimeout (Warning)
    ``retries.attempts`` x ``retries.perTryTimeout`` is longer than the route ``timeout``: the route
    timeout ends the request before the retries it promises can run.
``ISM0005`` RouteToUndefinedServicePort (Warning)
    A route sends traffic to a port of the destination service that the service does not define
    (the destination has no ``port`` and the listener port is not one of the service's ports), or an
    HTTP rule matches a ``port`` that none of the VirtualService's hosts serve: 503 NC, or a rule that
    never applies.
``ISM0006`` ResourceNotAnalyzed (Info)
    A document of a kind Isthmus does not model (ConfigMap, Node, ...) was skipped.
``ISM0007`` SidecarIngressNotServed (Warning)
    A Sidecar ingress listener that a pod it applies to cannot serve: its defaultEndpoint (or, without
    one, its own port) is not a port of the pod's Workload, so the app has no private port there, or the
    port is one of the sidecar's own (15000, 15001, 15021, 15090). The running mesh leaves the listener
    out for that pod.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

LEVELS = ("Error", "Warning", "Info")
LEVEL_RANK = {"Error": 0, "Warning": 1, "Info": 2}


def level_at_least(level: str, threshold: str) -> bool:
    """Whether ``level`` is as severe as ``threshold`` or more (Error > Warning > Info)."""
    return LEVEL_RANK.get(level, 2) <= LEVEL_RANK.get(threshold, 2)


# ==================================================================================================
# Go-style argument formatting


def go_q(value: Any) -> str:
    """Go's ``%q`` of a string."""
    return json.dumps(str(value), ensure_ascii=False)


def go_list(values: Iterable[Any]) -> str:
    """Go's ``%v`` of a slice: ``[a b c]``."""
    return "[" + " ".join(str(v) for v in values) + "]"


# ==================================================================================================
# Message types


@dataclass(frozen=True)
class MessageType:
    code: str
    name: str
    level: str
    description: str
    template: str

    def format(self, *args: Any) -> str:
        return self.template.format(*args)


_TYPES: dict[str, MessageType] = {}


def _t(code: str, name: str, level: str, description: str, template: str) -> MessageType:
    mt = MessageType(code, name, level, description, template)
    _TYPES[code] = mt
    return mt


# --- Istio's (wording from istioctl) ---------------------------------------------------------------

InternalError = _t(
    "IST0001",
    "InternalError",
    "Error",
    "There was an internal error in the toolchain. This is almost always a bug in the implementation.",
    "Internal error: {}",
)
Deprecated = _t(
    "IST0002",
    "Deprecated",
    "Warning",
    "A feature that the configuration is depending on is now deprecated.",
    "Deprecated: {}",
)
ReferencedResourceNotFound = _t(
    "IST0101",
    "ReferencedResourceNotFound",
    "Error",
    "A resource being referenced does not exist.",
    "Referenced {} not found: {}",  # reftype, %q refval
)
SchemaValidationError = _t(
    "IST0106",
    "SchemaValidationError",
    "Error",
    "The resource has a schema validation error.",
    "Schema validation error: {}",
)
ConflictingMeshGatewayVirtualServiceHosts = _t(
    "IST0109",
    "ConflictingMeshGatewayVirtualServiceHosts",
    "Error",
    "Conflicting hosts on VirtualServices associated with mesh gateway",
    "The VirtualServices {} associated with mesh gateway define the same host {} which can lead to "
    "undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.",
)
ConflictingSidecarWorkloadSelectors = _t(
    "IST0110",
    "ConflictingSidecarWorkloadSelectors",
    "Error",
    "A Sidecar resource selects the same workloads as another Sidecar resource",
    "The Sidecars {} in namespace {} select the same workload pod {}, which can lead to undefined behavior.",
)
MultipleSidecarsWithoutWorkloadSelectors = _t(
    "IST0111",
    "MultipleSidecarsWithoutWorkloadSelectors",
    "Error",
    "More than one sidecar resource in a namespace has no workload selector",
    "The Sidecars {} in namespace {} have no workload selector, which can lead to undefined behavior.",
)
VirtualServiceDestinationPortSelectorRequired = _t(
    "IST0112",
    "VirtualServiceDestinationPortSelectorRequired",
    "Error",
    "A VirtualService routes to a service with more than one port exposed, but does not specify which to use.",
    "This VirtualService routes to a service {} that exposes multiple ports {}. Specifying a port in the "
    "destination is required to disambiguate.",
)
DeploymentAssociatedToMultipleServices = _t(
    "IST0116",
    "DeploymentAssociatedToMultipleServices",
    "Warning",
    "The resulting pods of a service mesh deployment can't be associated with multiple services using the "
    "same port but different protocols.",
    "This deployment {} is associated with multiple services using port {} but different protocols: {}",
)
PortNameIsNotUnderNamingConvention = _t(
    "IST0118",
    "PortNameIsNotUnderNamingConvention",
    "Info",
    "Port name is not under naming convention. Protocol detection is applied to the port.",
    "Port name {} (port: {}, targetPort: {}) doesn't follow the naming convention of Istio port.",
)
NoMatchingWorkloadsFound = _t(
    "IST0127",
    "NoMatchingWorkloadsFound",
    "Warning",
    "There aren't workloads matching the resource labels",
    "No matching workloads for this resource with the following labels: {}",
)
NoServerCertificateVerificationDestinationLevel = _t(
    "IST0128",
    "NoServerCertificateVerificationDestinationLevel",
    "Warning",
    "No caCertificates are set in DestinationRule, this results in no verification of presented server "
    "certificate.",
    "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set to validate "
    "server identity for host: {}",
)
NoServerCertificateVerificationPortLevel = _t(
    "IST0129",
    "NoServerCertificateVerificationPortLevel",
    "Warning",
    "No caCertificates are set in DestinationRule, this results in no verification of presented server "
    "certificate for traffic to a given port.",
    "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set to validate "
    "server identity for host: {} at port {}",
)
VirtualServiceUnreachableRule = _t(
    "IST0130",
    "VirtualServiceUnreachableRule",
    "Warning",
    "A VirtualService rule will never be used because a previous rule uses the same match.",
    "VirtualService rule {} not used ({}).",
)
VirtualServiceIneffectiveMatch = _t(
    "IST0131",
    "VirtualServiceIneffectiveMatch",
    "Info",
    "A VirtualService rule match duplicates a match in a previous rule.",
    "VirtualService rule {} match {} is not used (duplicate/overlapping match in rule {}).",
)
VirtualServiceHostNotFoundInGateway = _t(
    "IST0132",
    "VirtualServiceHostNotFoundInGateway",
    "Warning",
    "Host defined in VirtualService not found in Gateway.",
    "one or more host {} defined in VirtualService {} not found in Gateway {}.",
)
SchemaWarning = _t(
    "IST0133",
    "SchemaWarning",
    "Warning",
    "The resource has a schema validation warning.",
    "Schema validation warning: {}",
)
ServiceEntryAddressesRequired = _t(
    "IST0134",
    "ServiceEntryAddressesRequired",
    "Warning",
    "Virtual IP addresses are required for ports serving TCP (or unset) protocol when "
    "PILOT_ENABLE_IP_AUTOALLOCATE is not set on a proxy",
    "ServiceEntry addresses are required for this protocol.",
)
DeploymentConflictingPorts = _t(
    "IST0137",
    "DeploymentConflictingPorts",
    "Warning",
    "Two services selecting the same workload with the same targetPort MUST refer to the same port.",
    "This deployment {} is associated with multiple services {} using targetPort {} but different ports: {}.",
)
GatewayDuplicateCertificate = _t(
    "IST0138",
    "GatewayDuplicateCertificate",
    "Warning",
    "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 connections.",
    "Duplicate certificate in multiple gateways {} may cause 404s if clients re-use HTTP2 connections.",
)
IngressRouteRulesNotAffected = _t(
    "IST0140",
    "IngressRouteRulesNotAffected",
    "Warning",
    "Route rules have no effect on ingress gateway requests",
    "Subset in virtual service {} has no effect on ingress gateway {} requests",
)
InvalidApplicationUID = _t(
    "IST0144",
    "InvalidApplicationUID",
    "Warning",
    "Application pods should not run as user ID (UID) 1337",
    "User ID (UID) 1337 is reserved for the sidecar proxy.",
)
ConflictingGateways = _t(
    "IST0145",
    "ConflictingGateways",
    "Error",
    "Gateway should not have the same selector, port and matched hosts of server",
    "Conflict with gateways {} (workload selector {}, port {}, hosts {}).",
)
JwtClaimBasedRoutingWithoutRequestAuthN = _t(
    "IST0149",
    "JwtClaimBasedRoutingWithoutRequestAuthN",
    "Error",
    "Virtual service using JWT claim based routing without request authentication.",
    "The virtual service uses the JWT claim based routing (key: {}) but found no request authentication for "
    "the gateway ({}) pod ({}). The request authentication must first be applied for the gateway pods to "
    "validate the JWT token and make the claims available for routing.",
)
ExternalNameServiceTypeInvalidPortName = _t(
    "IST0150",
    "ExternalNameServiceTypeInvalidPortName",
    "Warning",
    "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being "
    "forwarded correctly for ExternalName services.",
    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic "
    "for ports serving TCP protocol from being forwarded correctly",
)
InvalidTelemetryProvider = _t(
    "IST0157",
    "InvalidTelemetryProvider",
    "Warning",
    "The Telemetry with empty providers will be ignored",
    "The Telemetry {} in namespace {} with empty providers will be ignored.",
)
ConflictingTelemetryWorkloadSelectors = _t(
    "IST0159",
    "ConflictingTelemetryWorkloadSelectors",
    "Error",
    "A Telemetry resource selects the same workloads as another Telemetry resource",
    "The Telemetries {} in namespace {} select the same workload pod {}, which can lead to undefined behavior.",
)
MultipleTelemetriesWithoutWorkloadSelectors = _t(
    "IST0160",
    "MultipleTelemetriesWithoutWorkloadSelectors",
    "Error",
    "More than one telemetry resource in a namespace has no workload selector",
    "The Telemetries {} in namespace {} have no workload selector, which can lead to undefined behavior.",
)
InvalidGatewayCredential = _t(
    "IST0161",
    "InvalidGatewayCredential",
    "Error",
    "The credential provided for the Gateway resource is invalid",
    "The credential referenced by the Gateway {} in namespace {} is invalid, which can cause the traffic "
    "not to work as expected.",
)
GatewayPortNotDefinedOnService = _t(
    "IST0162",
    "GatewayPortNotDefinedOnService",
    "Warning",
    "Gateway port not exposed by service",
    "The gateway is listening on a target port (port {}) that is not defined in the Service associated with "
    "its workload instances (Pod selector {}). If you need to access the gateway port through the gateway "
    "Service, it will not be available.",
)
ReferencedInternalGateway = _t(
    "IST0165",
    "ReferencedInternalGateway",
    "Warning",
    "VirtualServices should not reference internal Gateways.",
    "Gateway reference in VirtualService {} is to an implementation-generated internal Gateway: {}.",
)
IneffectivePolicy = _t(
    "IST0167",
    "IneffectivePolicy",
    "Warning",
    "The policy applied has no impact.",
    "The policy has no impact: {}.",
)
DestinationRuleSubsetNotSelectPods = _t(
    "IST0173",
    "DestinationRuleSubsetNotSelectPods",
    "Error",
    "Subsets defined in destination does not select any pods.",
    "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
    "(NoHealthyUpstream).",
)
UnknownDestinationRuleHost = _t(
    "IST0174",
    "UnknownDestinationRuleHost",
    "Warning",
    "Host defined in destination rule does not match any services in the mesh.",
    "The host {} defined in the DestinationRule does not match any services in the mesh.",
)
JwksUriFetchUnrestricted = _t(
    "IST0175",
    "JwksUriFetchUnrestricted",
    "Warning",
    "RequestAuthentication resources exist but BLOCKED_CIDRS_IN_JWKS_URIS is not configured on istiod.",
    # The wording of istio.io's IST0175 page (count %d, names %s).
    "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but {} RequestAuthentication resource(s) exist ({}). Consider "
    "configuring it to restrict JWKS URI fetches to trusted networks.",
)
ConflictingServiceEntryProtocol = _t(
    "IST0177",
    "ConflictingServiceEntryProtocol",
    "Warning",
    "Multiple ServiceEntries define the same host and port with conflicting protocols.",
    "Multiple ServiceEntries ({}) define the same host {} and port {} with conflicting protocols ({}).",
)

# --- Isthmus' own (beyond istioctl) -----------------------------------------------------------------

DestinationRuleNotVisibleForSubset = _t(
    "ISM0001",
    "DestinationRuleNotVisibleForSubset",
    "Warning",
    "A VirtualService routes to a subset whose DestinationRule does not apply in a namespace where the "
    "VirtualService is used.",
    "Subset {} of host {} is defined in DestinationRule {}, but the DestinationRule that applies in "
    "namespace(s) {} ({}) does not define it: requests from there get 503 NC (no cluster for the subset).",
)
QueryParamsWithUriRegexQuestionMark = _t(
    "ISM0002",
    "QueryParamsWithUriRegexQuestionMark",
    "Warning",
    "A match combines queryParams with a uri regex that contains '?'.",
    "HTTP rule {} match {} combines queryParams with a uri regex containing '?' ({}): Envoy matches the uri "
    "against the path without the query string, so this match never applies. Match the query with "
    "queryParams only.",
)
OutlierDetectionNeverEjects = _t(
    "ISM0003",
    "OutlierDetectionNeverEjects",
    "Warning",
    "outlierDetection can never eject a host: maxEjectionPercent is too low for the number of endpoints.",
    "outlierDetection{} for host {} can never eject a host: {} endpoint(s) and maxEjectionPercent {}% allow "
    "less than one ejection. Set maxEjectionPercent to at least {}.",
)
RetriesExceedRouteTimeout = _t(
    "ISM0004",
    "RetriesExceedRouteTimeout",
    "Warning",
    "Retries (attempts x perTryTimeout) take longer than the route timeout.",
    "HTTP rule {}: {} attempts x perTryTimeout {} = {} exceed the route timeout {}; the timeout ends the "
    "request after at most {} tries.",
)
RouteToUndefinedServicePort = _t(
    "ISM0005",
    "RouteToUndefinedServicePort",
    "Warning",
    "A route sends traffic to, or matches, a port the service does not define.",
    "{}",
)
SidecarIngressNotServed = _t(
    "ISM0007",
    "SidecarIngressNotServed",
    "Warning",
    "A Sidecar ingress listener cannot be served by a pod it applies to.",
    "{}",
)
ResourceNotAnalyzed = _t(
    "ISM0006",
    "ResourceNotAnalyzed",
    "Info",
    "A document of a kind Isthmus does not model was skipped.",
    "{}",
)


def message_type(code: str) -> MessageType:
    return _TYPES[code]


def all_message_types() -> list[MessageType]:
    return sorted(_TYPES.values(), key=lambda t: t.code)


# ==================================================================================================
# Messages


@dataclass(frozen=True)
class Message:
    """One finding: ``Level [CODE] (Kind ns/name file:line) text``."""

    code: str
    name: str
    level: str
    resource: str  # "Kind ns/name" ("Kind name" for cluster-scoped kinds; "" when unknown)
    origin: str | None  # "file:line"
    message: str
    # Not part of the JSON output:
    key: tuple[str, str, str] | None = dc_field(default=None, compare=False)  # (kind, namespace, name)
    field: str | None = dc_field(default=None, compare=False)  # field path the message is about
    analyzer: str = dc_field(default="", compare=False)

    @classmethod
    def of(
        cls,
        mtype: MessageType,
        *args: Any,
        resource: str = "",
        origin: str | None = None,
        key: tuple[str, str, str] | None = None,
        field: str | None = None,
        analyzer: str = "",
    ) -> Message:
        return cls(
            code=mtype.code,
            name=mtype.name,
            level=mtype.level,
            resource=resource,
            origin=origin,
            message=mtype.format(*args),
            key=key,
            field=field,
            analyzer=analyzer,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "resource": self.resource,
            "origin": self.origin,
            "message": self.message,
        }

    def __str__(self) -> str:
        """istioctl's text form: ``Error [IST0101] (VirtualService default/reviews f.yaml:12) ...``."""
        where = " ".join(p for p in (self.resource, self.origin) if p)
        head = f"{self.level} [{self.code}]"
        return f"{head} ({where}) {self.message}" if where else f"{head} {self.message}"

    def sort_key(self) -> tuple:
        file, _, line = (self.origin or "").rpartition(":")
        return (
            LEVEL_RANK.get(self.level, 3),
            self.code,
            self.resource,
            file,
            int(line) if line.isdigit() else 0,
            self.message,
        )


def sorted_unique(messages: Iterable[Message]) -> list[Message]:
    """Messages sorted (most severe first, then code, resource, origin) with exact duplicates dropped."""
    seen: set[tuple] = set()
    out = []
    for m in messages:
        k = (m.code, m.resource, m.origin, m.message)
        if k in seen:
            continue
        seen.add(k)
        out.append(m)
    out.sort(key=Message.sort_key)
    return out
