"""The sidecar table over VHDS: a delta proxy gets `http_proxy` without virtual hosts, and each virtual
host as a VirtualHost resource named `http_proxy/<name>`; merged back, they are the inline table."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2
from gen_helpers import configs, sidecar, snapshot

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.xds.gen import naming
from isthmus.xds.gen.generator import MeshGenerator

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  http:
  - route: [{destination: {host: web}}]
"""


def changed(before: Snapshot, text: str) -> Snapshot:
    """The snapshot after a change of VirtualServices only, as the control plane builds it."""
    after = Snapshot.build_configs_changed(before, 2, configs(text), frozenset({"VirtualService"}))
    assert after is not None
    after.routes_changed_from = before
    return after


def delta(proxy: Proxy) -> Proxy:
    return dataclasses.replace(proxy, delta_xds=True)


def table(snap: Snapshot, proxy: Proxy) -> route_pb2.RouteConfiguration:
    out = MeshGenerator().generate(snap, proxy, naming.ROUTE_TYPE, frozenset({naming.HTTP_PROXY_ROUTE}))
    return route_pb2.RouteConfiguration.FromString(out[naming.HTTP_PROXY_ROUTE].value)


def vhds(snap: Snapshot, proxy: Proxy, watched: frozenset[str] | None = None) -> dict[str, bytes]:
    out = MeshGenerator().generate(snap, proxy, naming.VIRTUAL_HOST_TYPE, watched)
    assert all(a.type_url == naming.VIRTUAL_HOST_TYPE for a in out.values())
    return {name: a.value for name, a in out.items()}


def test_delta_sidecar_table_names_vhds_and_its_virtual_hosts_are_the_inline_ones():
    snap = snapshot(VS)
    inline = table(snap, sidecar())
    assert not inline.HasField("vhds") and len(inline.virtual_hosts) > 3

    over_vhds = table(snap, delta(sidecar()))
    assert over_vhds.HasField("vhds") and over_vhds.vhds.config_source.HasField("ads")
    assert not over_vhds.virtual_hosts
    # Everything else of the table is as inline.
    rest = route_pb2.RouteConfiguration()
    rest.CopyFrom(inline)
    rest.ClearField("virtual_hosts")
    over_vhds.ClearField("vhds")
    assert over_vhds == rest

    got = vhds(snap, delta(sidecar()))
    assert list(got) == [naming.vhds_name(naming.HTTP_PROXY_ROUTE, vh.name) for vh in inline.virtual_hosts]
    for vh in inline.virtual_hosts:
        named = route_components_pb2.VirtualHost.FromString(got[f"http_proxy/{vh.name}"])
        assert named.name == f"http_proxy/{vh.name}"
        named.name = vh.name
        assert named == vh
    assert "http_proxy/api.example.com:80" in got and "http_proxy/allow_any" in got


def test_vhds_only_for_delta_sidecars_that_watch_the_table():
    snap = snapshot(VS)
    assert vhds(snap, sidecar()) == {}  # SotW: Envoy has VHDS over delta ADS only
    gateway = dataclasses.replace(delta(sidecar()), kind="gateway")
    assert vhds(snap, gateway) == {}
    assert vhds(snap, delta(sidecar()), frozenset({"other"})) == {}
    assert vhds(snap, delta(sidecar()), frozenset({naming.HTTP_PROXY_ROUTE}))
    # Node metadata ISTHMUS_VHDS: "false" (MeshConfig proxyMetadata, set when its Envoy starts): inline.
    opted_out = dataclasses.replace(delta(sidecar()), metadata={"ISTHMUS_VHDS": "false"})
    assert vhds(snap, opted_out) == {}
    assert table(snap, opted_out) == table(snap, sidecar())


def test_a_virtual_service_change_changes_only_its_virtual_hosts_resources():
    before = snapshot(VS)
    after = snapshot(VS.replace("subset: v2", "subset: v3"))
    a = MeshGenerator().generate(before, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    b = MeshGenerator().generate(after, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    assert a.keys() == b.keys()
    differ = sorted(n for n in a if a[n].value != b[n].value)
    assert differ == ["http_proxy/reviews.default.svc.cluster.local:9080"]


def test_after_a_virtual_service_only_change_unchanged_virtual_hosts_are_the_same_objects():
    """So the server encodes and compares nothing new for them (the snapshot before is kept for a
    VirtualService-only change)."""
    before = snapshot(VS)
    after = changed(before, VS.replace("subset: v2", "subset: v3"))
    a = MeshGenerator().generate(before, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    b = MeshGenerator().generate(after, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    same = sorted(n for n in a if a[n] is b[n])
    assert "http_proxy/reviews.default.svc.cluster.local:9080" not in same
    assert len(same) == len(a) - 1


# After a change of VirtualServices only, a scope's default virtual hosts are the snapshot before's when
# nothing they depend on changed: whatever the change, the table must be the one built from scratch.
REVIEWS_TO_V3 = VS.replace("subset: v2", "subset: v3")
REVIEWS_ALSO_RATINGS = VS.replace("hosts: [reviews]", "hosts: [reviews, ratings.other.svc.cluster.local]")
EXTERNAL_TO_WEB = VS.replace("hosts: [api.example.com]", "hosts: [web.default.svc.cluster.local]")
EXTERNAL_TAKES_WEBS_DOMAIN = VS.replace("hosts: [api.example.com]", "hosts: [web.default.svc]")
NO_REVIEWS = VS.split("---")[1]
WEB_SHORT_NAME = (
    VS
    + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: short, namespace: other}
spec:
  hosts: [web.default]
  http:
  - route: [{destination: {host: ratings}}]
"""
)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (VS, REVIEWS_TO_V3),
        (VS, REVIEWS_ALSO_RATINGS),
        (REVIEWS_ALSO_RATINGS, VS),
        (VS, EXTERNAL_TO_WEB),
        (VS, NO_REVIEWS),
        (NO_REVIEWS, VS),
        (VS, WEB_SHORT_NAME),
        (WEB_SHORT_NAME, REVIEWS_TO_V3),
        (VS, EXTERNAL_TAKES_WEBS_DOMAIN),
        (EXTERNAL_TAKES_WEBS_DOMAIN, VS),
    ],
    ids=[
        "routes",
        "host-added",
        "host-removed",
        "host-moved",
        "vs-removed",
        "vs-added",
        "alias",
        "alias-gone",
        "domain-taken",
        "domain-freed",
    ],
)
@pytest.mark.parametrize(
    "proxy", [sidecar(), sidecar("ratings-v1-0", "other", {"app": "ratings"}, "127.7.0.4")]
)
def test_tables_after_a_virtual_service_only_change_are_those_built_from_scratch(first, then, proxy):
    before = snapshot(first)
    table(before, proxy)
    assert table(changed(before, then), proxy) == table(snapshot(then), proxy)


def test_default_virtual_hosts_are_reused_when_only_routes_changed():
    before = snapshot(VS)
    a = table(before, sidecar())
    after = changed(before, REVIEWS_TO_V3)
    b = table(after, sidecar())
    (key,) = [k for k in after._memo if k[0] == "vhost_defaults"]
    assert after._memo[key] is before._memo[key]
    assert [vh.name for vh in a.virtual_hosts] == [vh.name for vh in b.virtual_hosts]
