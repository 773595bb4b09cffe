"""Names in generated Envoy config, following istiod so Istio users' habits carry over."""

from __future__ import annotations

BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
HTTP_PROXY_ROUTE = "http_proxy"
ALLOW_ANY_VHOST = "allow_any"
BLOCK_ALL_VHOST = "block_all"
DEFAULT_ROUTE = "default"
DFP_CACHE = "isthmus_dynamic_forward_proxy"
DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"

TYPE_PREFIX = "type.googleapis.com/"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_TYPE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET_TYPE = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
EXTENSION_CONFIG_TYPE = TYPE_PREFIX + "envoy.config.core.v3.TypedExtensionConfig"
VIRTUAL_HOST_TYPE = TYPE_PREFIX + "envoy.config.route.v3.VirtualHost"

# The ECDS resource holding a proxy's jwt_authn config (RequestAuthentication).
JWT_EXTENSION = "envoy.filters.http.jwt_authn"  # an ECDS resource is named after its filter
EXT_AUTHZ_EXTENSION = "envoy.filters.http.ext_authz"
# CUSTOM policies: the RBAC filter denying the rules of providers that cannot be used, then per provider
# an RBAC filter marking its rules' requests and the ext_authz filter (over ECDS) they enable.
CUSTOM_RBAC_FILTER = "envoy.filters.http.rbac.custom"
# Appended to a CUSTOM rule's name when its provider cannot be used and the rule denies instead (istiod's
# badCustomActionSuffix): the name in `rbac_access_denied_matched_policy[...]` says why.
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"


def ext_authz_extension(provider: str) -> str:
    """The ext_authz filter (and its ECDS resource) of one CUSTOM provider: one per provider, so that
    several providers can serve one workload."""
    return f"{EXT_AUTHZ_EXTENSION}.{provider}"


def custom_rbac_filter(provider: str) -> str:
    """The RBAC filter marking the requests one CUSTOM provider is asked about (its per-route key)."""
    return f"{CUSTOM_RBAC_FILTER}.{provider}"


def outbound_cluster(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def parse_outbound_cluster(name: str) -> tuple[int, str, str] | None:
    """(port, subset, host) of an `outbound|port|subset|host` name, else None."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def outbound_sni(port: int, subset: str, host: str) -> str:
    return f"outbound_.{port}_.{subset}_.{host}"


def listener_name(address: str, port: int) -> str:
    return f"{address}_{port}"


def vhost_name(host: str, port: int) -> str:
    """istiod's util.DomainName (Go's net.JoinHostPort): an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def vhds_name(route_config: str, vhost: str) -> str:
    """A virtual host's VHDS resource name (and its name in Envoy): Envoy subscribes to a route
    configuration's virtual hosts by the namespace `route_config`, the name up to the last "/"."""
    return f"{route_config}/{vhost}"


def gateway_http_route_name(port: int, bind: str | None = None) -> str:
    return f"http.{port}" + (f".{bind}" if bind else "")


def gateway_https_route_name(
    port: int, port_name: str, gw_name: str, gw_ns: str, bind: str | None = None
) -> str:
    return f"https.{port}.{port_name}.{gw_name}.{gw_ns}" + (f".{bind}" if bind else "")
