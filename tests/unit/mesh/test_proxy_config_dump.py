"""The control plane's `/debug/config_dump?proxy=` (mesh.http_api.proxy_config_dump): a connected proxy's
config as its last push was built, in Envoy's admin config dump shape, so that `proxy-status PROXY`
compares it with the Envoy's own (istiod's `/debug/config_dump?proxyID=`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2

from isthmus.debug.config_compare import compare
from isthmus.mesh.http_api import proxy_config_dump
from isthmus.model.proxy import Proxy
from isthmus.xds.gen import naming
from isthmus.xds.server import Subscriptions, XdsServer


def pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def vhost(name: str) -> route_components_pb2.VirtualHost:
    return route_components_pb2.VirtualHost(name=name, domains=[name.rsplit("/", 1)[-1]])


class Generator:
    """Resources by type; records the (type, watched) it is asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, frozenset[str] | None]] = []
        table = route_pb2.RouteConfiguration(name="http_proxy")
        table.vhds.config_source.ads.SetInParent()
        self.resources: dict[str, dict[str, any_pb2.Any]] = {
            naming.CLUSTER_TYPE: {
                "b": pack(cluster_pb2.Cluster(name="b")),
                "a": pack(cluster_pb2.Cluster(name="a")),
            },
            naming.LISTENER_TYPE: {"l": pack(listener_pb2.Listener(name="l"))},
            naming.ROUTE_TYPE: {
                "http_proxy": pack(table),
                "80": pack(route_pb2.RouteConfiguration(name="80", virtual_hosts=[vhost("x")])),
            },
            naming.VIRTUAL_HOST_TYPE: {
                n: pack(vhost(n)) for n in ("http_proxy/z.default:80", "http_proxy/y.default:80")
            },
        }

    def generate(
        self, snapshot: Any, proxy: Proxy, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]:
        self.asked.append((type_url, watched))
        data = self.resources.get(type_url, {})
        return data if watched is None else {n: a for n, a in data.items() if n in watched}


PROXY = Proxy(
    id="sidecar~10.0.0.1~a-0.default~default.svc.cluster.local",
    kind="sidecar",
    ip="10.0.0.1",
    namespace="default",
    instance="a-0",
    delta_xds=True,
)


def subscriptions(types: dict[str, tuple[bool, frozenset[str]]], snapshot: Any = object()) -> Subscriptions:
    return Subscriptions(
        proxy=PROXY,
        snapshot=snapshot,
        types=types,
        sent_versions={t: "7-00000000000000ab" for t in types},
    )


def test_dump_of_what_the_proxy_subscribed_to() -> None:
    gen = Generator()
    subs = subscriptions(
        {
            naming.CLUSTER_TYPE: (True, frozenset()),
            naming.LISTENER_TYPE: (True, frozenset()),
            naming.ROUTE_TYPE: (False, frozenset({"http_proxy"})),
            naming.VIRTUAL_HOST_TYPE: (True, frozenset()),
        }
    )
    dump = proxy_config_dump(subs, gen)
    # Wildcard types are built whole, named ones for the names watched (as the server sends them).
    assert (naming.ROUTE_TYPE, frozenset({"http_proxy"})) in gen.asked
    assert (naming.CLUSTER_TYPE, None) in gen.asked
    types = [c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]]
    assert types == ["ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump"]
    clusters, listeners, routes = dump["configs"]
    assert clusters["version_info"] == "7-00000000000000ab"
    assert [e["cluster"]["name"] for e in clusters["dynamic_active_clusters"]] == ["a", "b"]
    assert clusters["dynamic_active_clusters"][0]["cluster"]["@type"].endswith(
        "envoy.config.cluster.v3.Cluster"
    )
    assert listeners["dynamic_listeners"] == [
        {
            "name": "l",
            "active_state": {
                "version_info": "7-00000000000000ab",
                "listener": {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "l"},
            },
        }
    ]
    # The VHDS virtual hosts merged into the table that names VHDS, by name, as Envoy dumps it;
    # Envoy's admin JSON field names (snake_case).
    (table,) = [e["route_config"] for e in routes["dynamic_route_configs"]]
    assert table["vhds"] == {"config_source": {"ads": {}}}
    assert table["virtual_hosts"] == [
        {"name": "http_proxy/y.default:80", "domains": ["y.default:80"]},
        {"name": "http_proxy/z.default:80", "domains": ["z.default:80"]},
    ]


def test_types_not_subscribed_are_empty_and_eds_on_request() -> None:
    gen = Generator()
    subs = subscriptions({naming.CLUSTER_TYPE: (True, frozenset())})
    dump = proxy_config_dump(subs, gen, include_eds=True)
    assert dump["configs"][1]["dynamic_listeners"] == []
    assert dump["configs"][2]["dynamic_route_configs"] == []
    assert dump["configs"][3]["@type"].endswith("EndpointsConfigDump")
    assert {t for t, _ in gen.asked} == {naming.CLUSTER_TYPE}
    # Not pushed yet (no snapshot): nothing.
    assert proxy_config_dump(subscriptions({}, snapshot=None), gen) == {"configs": []}


def test_dump_compares_equal_with_itself_as_envoy_would_hold_it() -> None:
    subs = subscriptions({t: (True, frozenset()) for t in (naming.CLUSTER_TYPE, naming.LISTENER_TYPE)})
    dump = proxy_config_dump(subs, Generator())
    assert compare(dump, dump) == ["Clusters Match", "Listeners Match", "Routes Match"]


def test_server_subscriptions_of_an_unknown_proxy() -> None:
    assert XdsServer(Generator()).subscriptions("sidecar~1.2.3.4~x.default~default.svc.cluster.local") is None
