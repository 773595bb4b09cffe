"""Resources assembled from wire bytes (EDS assignments, the sidecar route table) must be what packing
the API-built message gives: the same message and the canonical size (fields in number order, one
Metadata per endpoint), so that Envoy and the xDS server's byte counts see no difference."""

from __future__ import annotations

from gen_helpers import route_table, sidecar, snapshot
from test_endpoint_encoding import PA_DISABLE, _reference

from isthmus.registry.types import Endpoint
from isthmus.xds.gen import endpoints, naming, routes
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.generator import MeshGenerator

RC = p.route_components

HASHED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
"""


def test_endpoint_bytes_have_the_canonical_size() -> None:
    snap = snapshot(PA_DISABLE)
    eps = [
        Endpoint("10.0.0.1", 8080, "default", {"app": "a"}, "sa", "a-v1", sidecar=True),  # mTLS metadata
        Endpoint("10.0.0.4", 80, "default", {}, workload="c", sidecar=False, weight=7),  # weight after it
        Endpoint("10.0.0.5", 80, "default", {}, workload="d", sidecar=True, locality="us/1a", weight=300),
        Endpoint("10.0.0.3", 0, "legacy", {"app": "b"}, workload="b", sidecar=True),  # mTLS DISABLE
    ]
    name = "outbound|80||a.default.svc.cluster.local"
    raw = endpoints._ld(endpoints._T_CLA_NAME, name.encode()) + endpoints._lb_endpoints_bytes(snap, eps)
    want = _reference(snap, name, eps)
    assert p.endpoint.ClusterLoadAssignment.FromString(raw) == want
    assert len(raw) == want.ByteSize()


def test_wire_segments_reassemble_the_prototype() -> None:
    route = RC.Route(name="default", match=RC.RouteMatch(prefix="/"))
    route.route.timeout.seconds = 3
    route.route.max_grpc_timeout.seconds = 3
    before, after = p.wire_segments(route.route, 15)
    hp = RC.RouteAction.HashPolicy(header=RC.RouteAction.HashPolicy.Header(header_name="x"))
    whole = RC.RouteAction()
    whole.CopyFrom(route.route)
    whole.hash_policy.append(hp)
    field = p.length_delimited(p.field_tag(RC.RouteAction, "hash_policy"), hp.SerializeToString())
    assert before + field + after == whole.SerializeToString()


def test_sidecar_route_table_is_packed_canonically() -> None:
    snap = snapshot(HASHED)
    proxy = sidecar()
    packed = MeshGenerator().generate(snap, proxy, naming.ROUTE_TYPE, frozenset({naming.HTTP_PROXY_ROUTE}))
    value = packed[naming.HTTP_PROXY_ROUTE].value
    message = p.route.RouteConfiguration.FromString(value)
    assert message.SerializeToString() == value  # no maps here: upb's bytes are the canonical bytes
    web = route_table(snap, proxy)
    hashed = [
        r for vh in web["virtual_hosts"] for r in vh["routes"] if r["route"].get("hash_policy")
    ]  # the DestinationRule's consistent hash reaches the default route
    assert hashed and hashed[0]["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    assert routes.http_proxy_route_config(snap, proxy) == message
