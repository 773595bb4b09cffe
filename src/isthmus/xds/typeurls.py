"""xDS resource type URLs, their short names (CDS, EDS, ...) and the order in which a push sends them.

The server handles any type URL a client subscribes to; this module only knows the usual ones so that it
can order a push make-before-break (clusters and their endpoints before the listeners and routes that
use them, as istiod does) and give readable names in status and metrics.
"""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
EXTENSION_CONFIG = _PREFIX + "envoy.config.core.v3.TypedExtensionConfig"
RUNTIME = _PREFIX + "envoy.service.runtime.v3.Runtime"
SCOPED_ROUTE = _PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
VIRTUAL_HOST = _PREFIX + "envoy.config.route.v3.VirtualHost"

#: istiod's push order CDS, EDS, LDS, RDS, then the rest (SDS, ...), with filter configs (ECDS) before the
#: listeners and routes that use them (make-before-break). Types not listed go last, sorted.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET)

_SHORT = {
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    LISTENER: "LDS",
    ROUTE: "RDS",
    SECRET: "SDS",
    EXTENSION_CONFIG: "ECDS",
    RUNTIME: "RTDS",
    SCOPED_ROUTE: "SRDS",
    VIRTUAL_HOST: "VHDS",
}
_LONG = {v: k for k, v in _SHORT.items()}
_ORDER = {t: i for i, t in enumerate(PUSH_ORDER)}


def short_name(type_url: str) -> str:
    """`CDS`, `EDS`, `LDS`, `RDS`, `SDS`, ... for known types; the full type URL otherwise."""
    return _SHORT.get(type_url, type_url)


def metric_label(type_url: str) -> str:
    """The `type` label of metrics: istiod's lowercase short names (`cds`, `eds`, ...), else the message name."""
    short = _SHORT.get(type_url)
    if short is not None:
        return short.lower()
    return type_url.rsplit("/", 1)[-1]


def type_url_of(name: str) -> str:
    """Inverse of `short_name` (accepts `CDS`/`cds` or a full type URL)."""
    return _LONG.get(name.upper(), name)


#: Types whose SotW subscription names nothing mean "nothing", not "everything" (istiod's
#: IsWildcardTypeURL; the xDS spec's wildcard is for Listener and Cluster). A first request of one of these
#: that names no resource is an unsubscribe: istiod registers nothing and sends nothing.
NAMED_ONLY: frozenset[str] = frozenset((ENDPOINT, ROUTE, SECRET, EXTENSION_CONFIG))


def push_order_key(type_url: str) -> tuple[int, str]:
    return (_ORDER.get(type_url, len(_ORDER)), type_url)
