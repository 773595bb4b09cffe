"""CUSTOM AuthorizationPolicy providers: MeshConfig `extensionProviders` envoyExtAuthzHttp / envoyExtAuthzGrpc
as Envoy ext_authz filters, following istiod's `pilot/pkg/security/authz/builder/extauthz.go`.

Several providers may serve one workload (istio#58082): each provider gets its own pair of filters, an RBAC
filter in shadow mode holding the CUSTOM rules that name it (stat prefix `istio_ext_authz_`, rules named
`istio-ext-authz-<provider>-ns[..]-policy[..]-rule[i]`) and an ext_authz filter enabled by dynamic metadata
only when the effective shadow policy id carries that provider's prefix. All those RBAC filters write one
metadata key, and a mark stays there for the filters after it: the provider's own prefix keeps a later
pair from taking an earlier pair's mark as its own. So a request several providers' rules match is sent
to each of them in turn, and passes only if all allow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_ext
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_ext
from envoy.type.matcher.v3 import metadata_pb2, string_pb2
from envoy.type.v3 import http_status_pb2

from isthmus.model.durations import to_seconds
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import naming
from isthmus.xds.gen import protos as p

TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
NETWORK_FILTER = "envoy.filters.network.ext_authz"
MATCH_PREFIX = "istio-ext-authz"
STAT_PREFIX = "istio_ext_authz_"
RBAC_HTTP_METADATA = "envoy.filters.http.rbac"
RBAC_NETWORK_METADATA = "envoy.filters.network.rbac"
# istiod's placeholder when the provider sets no timeout.
DEFAULT_TIMEOUT_S = 600.0


class ProviderError(ValueError):
    """A CUSTOM provider cannot be used: istiod then denies the requests its policies' rules match."""


@dataclass(frozen=True)
class Provider:
    name: str
    http: http_ext.ExtAuthz
    tcp: network_ext.ExtAuthz | None  # gRPC providers only: an HTTP provider does not apply to TCP


def defined_providers(snapshot: Snapshot) -> list[str]:
    """The names of the mesh's ext_authz providers, sorted: the order their filters run in, as istiod
    orders the providers of a workload (it sorts their names)."""
    spec = snapshot.mesh.spec
    return sorted(
        {
            prov.name
            for prov in (getattr(spec, "extension_providers", None) or [])
            if prov.kind in ("envoy_ext_authz_http", "envoy_ext_authz_grpc") and prov.name
        }
    )


def rule_prefix(provider: str) -> str:
    """What a CUSTOM rule's RBAC policy name starts with (istiod's policyName with a provider)."""
    return f"{MATCH_PREFIX}-{provider}-" if provider else f"{MATCH_PREFIX}-"


def enabled_prefix(provider: str) -> str:
    """The shadow policy id prefix that enables this provider's ext_authz. istiod matches
    `istio-ext-authz-<provider>`; the `-ns[` that always follows is kept too, so that provider `a` is not
    enabled by a rule of provider `a-b` (both marks live under the same metadata key)."""
    return rule_prefix(provider) + "ns["


def inert() -> http_ext.ExtAuthz:
    """ext_authz that never runs (0% enabled, and only for requests CUSTOM rules marked): the filter's
    config while no CUSTOM policy applies to the proxy. Its service is never called."""
    config = http_ext.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        filter_enabled_metadata=_enabled_by(RBAC_HTTP_METADATA),
    )
    config.filter_enabled.default_value.numerator = 0
    config.filter_enabled.runtime_key = "isthmus.ext_authz.inert"
    config.http_service.server_uri.CopyFrom(
        http_uri_pb2.HttpUri(
            uri="http://ext-authz.invalid", cluster="BlackHoleCluster", timeout=p.duration(1)
        )
    )
    return config


def provider_for(snapshot: Snapshot, name: str) -> Provider:
    """The provider CUSTOM policies name (istiod's getExtAuthz for one provider), its filters enabled by
    that provider's marks only."""
    if not name:
        raise ProviderError("no provider specified in authorization policy")
    result = snapshot.memo(("ext_authz_provider", name), lambda: _build(snapshot, name))
    if isinstance(result, str):
        raise ProviderError(result)
    return result


def _build(snapshot: Snapshot, name: str) -> Provider | str:
    spec = snapshot.mesh.spec
    providers = {
        prov.name: prov
        for prov in (getattr(spec, "extension_providers", None) or [])
        if prov.kind in ("envoy_ext_authz_http", "envoy_ext_authz_grpc")
    }
    prov = providers.get(name)
    if prov is None:
        return f"available providers are {sorted(providers)} but found {name!r}"
    try:
        if prov.kind == "envoy_ext_authz_http":
            return _http_provider(snapshot, name, prov.body)
        return _grpc_provider(snapshot, name, prov.body)
    except ProviderError as exc:
        return f"found errors in provider {name}: {exc}"


def lookup_cluster(snapshot: Snapshot, service: str | None, port: int) -> tuple[str, str]:
    """`<namespace>/<hostname>` or a hostname defined in one namespace -> (hostname, outbound cluster)."""
    if not service:
        raise ProviderError("service must not be empty")
    namespace, sep, hostname = service.partition("/")
    if sep:
        svc = snapshot.registry.service(hostname, namespace)
        if svc is None:
            raise ProviderError(f"could not find service {hostname} in namespace {namespace}")
    else:
        hostname = service
        found = snapshot.registry.by_host.get(hostname, [])
        namespaces = sorted({s.namespace for s in found})
        if len(namespaces) > 1:
            raise ProviderError(
                f"found {hostname} in multiple namespaces {namespaces}, specify the namespace explicitly "
                "in the format of <Namespace>/<Hostname>"
            )
        if not found:
            raise ProviderError(f"could not find service {hostname} in Istio service registry")
    return hostname, naming.outbound_cluster(port, "", hostname)


def _port(body: Any) -> int:
    port = int(body.port or 0)
    if not 1 <= port <= 65535:
        raise ProviderError(f"port must be in the range [1, 65535], found: {port}")
    return port


def _status(value: str | None) -> http_status_pb2.HttpStatus | None:
    if not value:
        return None
    try:
        code = int(value)
    except ValueError as exc:
        raise ProviderError(f"invalid statusOnError {value!r}: not a number") from exc
    if code not in http_status_pb2.StatusCode.values() or code == 0:
        raise ProviderError(f"unsupported statusOnError {value}")
    return http_status_pb2.HttpStatus(code=code)  # type: ignore[arg-type]


def _headers(field: str, values: list[str]) -> string_pb2.ListStringMatcher | None:
    """Header names, `x-*` prefix and `*-x` suffix, case-insensitive (istiod's generateHeaders)."""
    if not values:
        return None
    out = string_pb2.ListStringMatcher()
    for value in values:
        if value == "*":
            raise ProviderError(
                f'a single wildcard ("*") is not supported, change it to either prefix or suffix match: {field}'
            )
        out.patterns.append(p.affix_matcher(value, ignore_case=True))
    return out


def _enabled_by(rbac_metadata: str, provider: str | None = None) -> metadata_pb2.MetadataMatcher:
    """Where the RBAC filters (HTTP or network) put the id of the CUSTOM rule that matched: any CUSTOM
    rule when `provider` is None (the inert config), else only that provider's rules."""
    m = metadata_pb2.MetadataMatcher(filter=rbac_metadata)
    m.path.add(key=STAT_PREFIX + "shadow_effective_policy_id")
    m.value.string_match.prefix = MATCH_PREFIX if provider is None else enabled_prefix(provider)
    return m


def _body(body: Any) -> http_ext.BufferSettings | None:
    req = body.include_request_body_in_check
    if req is None:
        return None
    return http_ext.BufferSettings(
        max_request_bytes=int(req.max_request_bytes or 0),
        allow_partial_message=bool(req.allow_partial_message),
        pack_as_bytes=bool(req.pack_as_bytes),
    )


def _common(name: str, body: Any) -> http_ext.ExtAuthz:
    config = http_ext.ExtAuthz(
        failure_mode_allow=bool(body.fail_open),
        transport_api_version=config_source_pb2.V3,
        filter_enabled_metadata=_enabled_by(RBAC_HTTP_METADATA, name),
    )
    status = _status(body.status_on_error)
    if status is not None:
        config.status_on_error.CopyFrom(status)
    settings = _body(body)
    if settings is not None:
        config.with_request_body.CopyFrom(settings)
    if body.clear_route_cache:
        config.clear_route_cache = True
    return config


def _timeout(body: Any) -> Any:
    return p.duration(to_seconds(body.timeout, DEFAULT_TIMEOUT_S))


def _http_provider(snapshot: Snapshot, name: str, body: Any) -> Provider:
    hostname, cluster = lookup_cluster(snapshot, body.service, _port(body))
    if body.path_prefix and not body.path_prefix.startswith("/"):
        raise ProviderError(f"pathPrefix must begin with `/`, found: {body.path_prefix!r}")
    config = _common(name, body)
    service = config.http_service
    service.path_prefix = body.path_prefix or ""
    service.server_uri.CopyFrom(
        http_uri_pb2.HttpUri(uri=f"http://{hostname}", cluster=cluster, timeout=_timeout(body))
    )
    # includeHeadersInCheck is the deprecated spelling, used only when the new one is absent.
    allowed = _headers("IncludeRequestHeadersInCheck", body.include_request_headers_in_check)
    if allowed is None:
        allowed = _headers("IncludeHeadersInCheck", body.include_headers_in_check)
    if allowed is not None:
        config.allowed_headers.CopyFrom(allowed)
    for key in sorted(body.include_additional_headers_in_check):
        service.authorization_request.headers_to_add.add(
            key=key, value=body.include_additional_headers_in_check[key]
        )
    response = service.authorization_response
    for field, target, values in (
        ("HeadersToUpstreamOnAllow", response.allowed_upstream_headers, body.headers_to_upstream_on_allow),
        ("HeadersToDownstreamOnDeny", response.allowed_client_headers, body.headers_to_downstream_on_deny),
        (
            "HeadersToDownstreamOnAllow",
            response.allowed_client_headers_on_success,
            body.headers_to_downstream_on_allow,
        ),
    ):
        matchers = _headers(field, values)
        if matchers is not None:
            target.CopyFrom(matchers)
    return Provider(name, config, None)


def _grpc_provider(snapshot: Snapshot, name: str, body: Any) -> Provider:
    _, cluster = lookup_cluster(snapshot, body.service, _port(body))
    # `|` is not valid in a gRPC authority; Envoy would otherwise send the cluster name.
    grpc = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
            cluster_name=cluster, authority=cluster.replace("|", "_.")
        ),
        timeout=_timeout(body),
    )
    config = _common(name, body)
    config.grpc_service.CopyFrom(grpc)
    tcp = network_ext.ExtAuthz(
        stat_prefix="tcp.",
        failure_mode_allow=bool(body.fail_open),
        transport_api_version=config_source_pb2.V3,
        grpc_service=grpc,
        filter_enabled_metadata=_enabled_by(RBAC_NETWORK_METADATA, name),
    )
    return Provider(name, config, tcp)


__all__ = [
    "Provider",
    "ProviderError",
    "defined_providers",
    "enabled_prefix",
    "lookup_cluster",
    "provider_for",
    "rule_prefix",
]
