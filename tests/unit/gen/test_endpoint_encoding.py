"""EDS assignments are assembled from protobuf wire bytes: they must equal the API-built messages."""

from __future__ import annotations

from gen_helpers import snapshot

from isthmus.registry.types import Endpoint
from isthmus.xds.gen import endpoints, tls
from isthmus.xds.gen import protos as p

PA_DISABLE = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plaintext, namespace: legacy}
spec: {mtls: {mode: DISABLE}}
"""


def _reference(snap, name: str, eps: list[Endpoint]) -> p.endpoint.ClusterLoadAssignment:
    """The message built field by field through the protobuf API (the encoding's specification)."""
    cla = p.endpoint.ClusterLoadAssignment(cluster_name=name)
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in eps:
        by_locality.setdefault(ep.locality, []).append(ep)
    for locality, group_eps in sorted(by_locality.items()):
        group = cla.endpoints.add()
        if locality:
            parts = (locality.split("/") + ["", "", ""])[:3]
            group.locality.region, group.locality.zone, group.locality.sub_zone = parts
        total = 0
        for ep in group_eps:
            lb = group.lb_endpoints.add()
            if ep.address.startswith("unix://"):
                lb.endpoint.address.pipe.path = ep.address.removeprefix("unix://")
            else:
                lb.endpoint.address.CopyFrom(p.socket_address(ep.address, ep.port))
            lb.health_status = p.health_check.HEALTHY
            total += ep.weight or 1
            if ep.weight:
                lb.load_balancing_weight.value = ep.weight
            p.set_fields(lb.metadata.filter_metadata["istio"], {"workload": endpoints._workload_metadata(ep)})
            if tls.endpoint_mtls_enabled(snap, ep):
                tls.endpoint_metadata(lb)
        group.load_balancing_weight.value = total
    return cla


def _decoded(snap, name: str, eps: list[Endpoint]) -> p.endpoint.ClusterLoadAssignment:
    raw = endpoints._ld(endpoints._T_CLA_NAME, name.encode()) + endpoints._lb_endpoints_bytes(snap, eps)
    return p.endpoint.ClusterLoadAssignment.FromString(raw)


def test_wire_encoded_assignment_equals_the_api_built_one() -> None:
    snap = snapshot(PA_DISABLE)
    long_name = "w" * 200  # lengths >= 128 take multi-byte varints
    eps = [
        Endpoint("10.0.0.1", 8080, "default", {"app": "a", "version": "v1"}, "sa", "a-v1", sidecar=True),
        Endpoint("10.0.0.2", 65535, "default", {"app.kubernetes.io/name": "a"}, workload=long_name, sidecar=True),
        Endpoint("10.0.0.3", 0, "legacy", {"app": "b"}, workload="b", sidecar=True),  # PeerAuthentication DISABLE
        Endpoint("10.0.0.4", 80, "default", {}, workload="c", sidecar=False, weight=7),
        Endpoint("10.0.0.5", 80, "default", {}, workload="d", sidecar=True, locality="us-east/1a/r1", weight=300),
        Endpoint("host.example", 443, "default", {}, workload="", locality="eu", hostname=True),
        Endpoint("10.0.0.7", 80, "default", {"app": "é"}, workload="ünïcode", locality="us-east/1a/r1"),
        Endpoint("unix:///var/run/app.sock", 0, "default", {}, workload="uds"),  # a pipe, as istiod's BuildAddress
    ]  # fmt: skip
    for subset in (eps, eps[:1], eps[3:], []):
        name = "outbound|8080||a.default.svc.cluster.local"
        got, want = _decoded(snap, name, subset), _reference(snap, name, subset)
        assert got == want
        assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
