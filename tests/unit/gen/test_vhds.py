"""The sidecar table over VHDS: a delta proxy gets `http_proxy` without virtual hosts, and each virtual
host as a VirtualHost resource named `http_proxy/<name>`; merged back, they are the inline table."""

from __future__ import annotations

import dataclasses

from envoy.config.route.v3 import route_components_pb2, route_pb2
from gen_helpers import sidecar, snapshot

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


def test_a_virtual_service_change_changes_only_its_virtual_hosts_resources():
    before = snapshot(VS)
    changed = VS.replace("subset: v2", "subset: v3")
    after = snapshot(changed)
    a = MeshGenerator().generate(before, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    b = MeshGenerator().generate(after, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    assert a.keys() == b.keys()
    differ = sorted(n for n in a if a[n].value != b[n].value)
    assert differ == ["http_proxy/reviews.default.svc.cluster.local:9080"]


def test_after_a_virtual_service_only_change_unchanged_virtual_hosts_are_the_same_objects():
    """So the server encodes and compares nothing new for them (the snapshot before is kept for a
    VirtualService-only change)."""
    before = snapshot(VS)
    after = snapshot(VS.replace("subset: v2", "subset: v3"))
    after.routes_changed_from = before
    a = MeshGenerator().generate(before, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    b = MeshGenerator().generate(after, delta(sidecar()), naming.VIRTUAL_HOST_TYPE, None)
    same = sorted(n for n in a if a[n] is b[n])
    assert "http_proxy/reviews.default.svc.cluster.local:9080" not in same
    assert len(same) == len(a) - 1
