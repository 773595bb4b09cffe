"""HTTPRoute.sessionPersistence as Envoy's stateful_session filter.

istio/api's virtual_service.proto has a route keep a client on the upstream host it first reached, by a
cookie or a header the client sends back. No istiod translation of the field was at hand; this is the
Envoy feature the proto comment names, built the way istiod already builds its annotation-driven
persistent sessions (istio/istio#42592, #42840): an empty `envoy.filters.http.stateful_session` filter on
every HCM but the sidecar's inbound (istiod's EmptySessionFilter) and a StatefulSessionPerRoute on each
route that asks for it. Envoy encodes the chosen host's address in the cookie or header it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2 as stateful
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2
from envoy.extensions.http.stateful_session.header.v3 import header_pb2

from isthmus.model.durations import to_seconds
from isthmus.xds.gen import protos as p

if TYPE_CHECKING:
    from isthmus.model.snapshot import Snapshot

FILTER = "envoy.filters.http.stateful_session"
COOKIE_STATE = "envoy.http.stateful_session.cookie"
HEADER_STATE = "envoy.http.stateful_session.header"


def in_use(snapshot: Snapshot) -> bool:
    """Whether any HTTP route (delegates merged) sets sessionPersistence (once per snapshot). The HCMs
    carry the filter only then, so meshes without it keep their listeners as they were; this is also the
    one thing of VirtualServices a sidecar's listeners depend on (generator._listeners)."""
    return bool(
        snapshot.memo(
            ("session_persistence_in_use",),
            lambda: any(
                getattr(http, "session_persistence", None) is not None
                for vs in snapshot.virtual_services.entries
                for http in vs.http
            ),
        )
    )


def stateful_session_filter() -> p.hcm.HttpFilter:
    """The HCM's filter: no session state, so it does nothing until a route's config turns it on."""
    return p.hcm.HttpFilter(name=FILTER, typed_config=p.pack(stateful.StatefulSession()))


def session_per_route(sp: Any) -> stateful.StatefulSessionPerRoute:
    """A route's sessionPersistence. Raises ValueError for what Envoy cannot express, which leaves the
    VirtualService out with that reason (build_vs_routes' guard) rather than dropping the setting."""
    out = stateful.StatefulSessionPerRoute()
    state = out.stateful_session.session_state
    if (sp.type or "COOKIE") == "HEADER":
        state.name = HEADER_STATE
        state.typed_config.CopyFrom(p.pack(header_pb2.HeaderBasedSessionState(name=sp.header.name)))
        if sp.absolute_timeout is not None:
            raise ValueError(
                "sessionPersistence: absoluteTimeout applies to COOKIE sessions only; Envoy's header based "
                "session state has no expiry"
            )
        return out
    cookie = cookie_pb2.CookieBasedSessionState()
    cookie.cookie.name = sp.cookie.name
    if sp.cookie.path:
        cookie.cookie.path = sp.cookie.path
    lifetime = sp.cookie.lifetime_type or "SESSION"
    if lifetime == "PERMANENT":
        # Envoy's cookie ttl is both the cookie's Max-Age and the expiry it encodes in the value: the
        # session ends after absoluteTimeout even if the client keeps the cookie.
        if sp.absolute_timeout is None:
            raise ValueError("sessionPersistence: a PERMANENT cookie needs absoluteTimeout (its lifetime)")
        cookie.cookie.ttl.CopyFrom(p.duration(to_seconds(sp.absolute_timeout)))
    elif sp.absolute_timeout is not None:
        # A ttl would make the cookie permanent (Max-Age): a session cookie cannot carry it in Envoy.
        raise ValueError(
            "sessionPersistence: absoluteTimeout needs cookie.lifetimeType PERMANENT; Envoy gives a session "
            "cookie no expiry"
        )
    state.name = COOKIE_STATE
    state.typed_config.CopyFrom(p.pack(cookie))
    return out
