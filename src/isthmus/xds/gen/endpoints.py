"""EDS: ClusterLoadAssignments for outbound clusters, subset clusters filtered by their labels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.build import labels_match
from isthmus.registry.types import Endpoint
from isthmus.xds.gen import protos as p
from isthmus.xds.gen import tls

if TYPE_CHECKING:
    from isthmus.xds.gen.clusters import ClusterSpec


def _locality(locality: str) -> p.base.Locality:
    parts = (locality.split("/") + ["", "", ""])[:3]
    return p.base.Locality(region=parts[0], zone=parts[1], sub_zone=parts[2])


def _workload_metadata(ep: Endpoint) -> str:
    """Istio's `istio.workload` endpoint metadata: name;namespace;app;version;cluster."""
    app = ep.labels.get("app", ep.labels.get("app.kubernetes.io/name", ""))
    version = ep.labels.get("version", ep.labels.get("app.kubernetes.io/version", ""))
    return f"{ep.workload};{ep.namespace};{app};{version};Kubernetes"


def select_endpoints(snapshot: Snapshot, spec: ClusterSpec) -> list[Endpoint]:
    eps = snapshot.registry.endpoints(spec.service, spec.port.port)
    out = [e for e in eps if e.ready]
    if spec.subset_labels is not None:
        out = [e for e in out if labels_match(spec.subset_labels, e.labels)]
    return out


def _lb_endpoints(
    snapshot: Snapshot, cla: p.endpoint.ClusterLoadAssignment, endpoints: Iterable[Endpoint]
) -> None:
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        by_locality.setdefault(ep.locality, []).append(ep)
    for locality, eps in sorted(by_locality.items()):
        group = cla.endpoints.add()
        if locality:
            group.locality.CopyFrom(_locality(locality))
        total = 0
        for ep in eps:
            lb = group.lb_endpoints.add()
            lb.endpoint.address.CopyFrom(p.socket_address(ep.address, ep.port))
            lb.health_status = p.health_check.HEALTHY
            weight = ep.weight or 1
            total += weight
            if ep.weight:
                lb.load_balancing_weight.value = ep.weight
            md = {"workload": _workload_metadata(ep)}
            p.set_fields(lb.metadata.filter_metadata["istio"], md)
            if tls.endpoint_mtls_enabled(snapshot, ep):
                tls.endpoint_metadata(lb)
        group.load_balancing_weight.value = total


def load_assignment(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> p.endpoint.ClusterLoadAssignment:
    cla = p.endpoint.ClusterLoadAssignment(cluster_name=spec.name)
    _lb_endpoints(snapshot, cla, select_endpoints(snapshot, spec))
    return cla


def build_endpoints(
    snapshot: Snapshot, proxy: Proxy, names: Iterable[str]
) -> list[p.endpoint.ClusterLoadAssignment]:
    from isthmus.xds.gen.clusters import specs_by_name

    specs = specs_by_name(snapshot, proxy)
    out = []
    for name in names:
        spec = specs.get(name)
        if spec is None:
            # Envoy asked for a cluster we do not know (yet): an empty assignment keeps it from waiting.
            out.append(p.endpoint.ClusterLoadAssignment(cluster_name=name))
            continue
        out.append(load_assignment(snapshot, proxy, spec))
    return out
