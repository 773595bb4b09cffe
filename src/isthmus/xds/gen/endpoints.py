"""EDS: ClusterLoadAssignments for outbound clusters, subset clusters filtered by their labels."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, struct_pb2, wrappers_pb2

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.build import UNIX_ADDRESS_PREFIX, labels_match
from isthmus.registry.types import Endpoint, Resolution, split_locality
from isthmus.xds.gen import headless, locality, tls, zone_aware
from isthmus.xds.gen import protos as p
from isthmus.xds.gen.locality import Group

if TYPE_CHECKING:
    from isthmus.xds.gen.clusters import ClusterSpec


def _locality(name: str) -> p.base.Locality:
    region, zone, sub_zone = split_locality(name)
    return p.base.Locality(region=region, zone=zone, sub_zone=sub_zone)


# kubelabels.CanonicalService's label lookups, first present wins.
_CANONICAL_NAME_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
_CANONICAL_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")


def _first_label(labels: Mapping[str, str], keys: Sequence[str]) -> str | None:
    # A loop, not next(genexpr): asked twice for every endpoint of the mesh.
    for k in keys:
        if k in labels:
            return labels[k]
    return None


def _workload_metadata(ep: Endpoint) -> str:
    """Istio's `istio.workload` endpoint metadata: workload;namespace;canonical name;revision;cluster.

    As AppendLbEndpointMetadata writes it: the canonical service is kubelabels.CanonicalService's
    (canonical-name, then app.kubernetes.io/name, then app, else the workload name; the revision from
    canonical-revision, app.kubernetes.io/version, version, else "latest", which is left out)."""
    name = _first_label(ep.labels, _CANONICAL_NAME_LABELS)
    revision = _first_label(ep.labels, _CANONICAL_REVISION_LABELS)
    if revision == "latest":
        revision = ""  # "don't bother sending the default value in config"
    # A ServiceEntry's own endpoint names no workload or namespace (istiod's empty config key).
    workload, namespace = ("", "") if ep.entry_own else (ep.workload, ep.namespace)
    return f"{workload};{namespace};{workload if name is None else name};{revision or ''};Kubernetes"


def select_endpoints(snapshot: Snapshot, spec: ClusterSpec) -> list[Endpoint]:
    eps = snapshot.registry.endpoints(spec.service, spec.port.port)
    if spec.service.resolution in INLINE_ASSIGNMENT:
        out = [e for e in eps if e.ready]
    else:
        # An EDS cluster takes IP (or pipe) addresses only: Envoy NACKs the whole EDS response for one
        # host name. A DNS ServiceEntry that repeats another registry's host in the same namespace shares
        # that service's endpoint key, and its own host-name endpoint is only for its DNS cluster.
        out = [e for e in eps if e.ready and not e.hostname]
    subset = spec.subset_labels
    if subset is not None:
        if any(k in locality.TOPOLOGY_KEYS for k in subset):
            # A subset may select by the topology labels istiod adds to endpoint labels
            # (TestNewEndpointBuilderTopologyLabels; serviceentry convertEndpoint's AugmentLabels).
            out = [
                e
                for e in out
                if labels_match(
                    subset,
                    locality.topology_labels(e.labels, e.locality, e.network) if e.topology else e.labels,
                )
            ]
        else:
            out = [e for e in out if labels_match(subset, e.labels)]
    return out


# --- wire encoding ---------------------------------------------------------------------------------
# EDS is the bulk of a large mesh's config (an LbEndpoint per endpoint per cluster, each with Struct
# metadata maps, which are slow to build through the protobuf API). Each endpoint is encoded once per
# snapshot as protobuf wire bytes (its metadata once per workload), each ClusterLoadAssignment is
# assembled from those bytes once per snapshot, in field-number order (the canonical bytes but for map
# entry order), and packed as is (parsed only for callers that want a message). Field numbers come from
# the descriptors (protos.field_tag); tests/unit/gen/test_endpoint_encoding.py, test_wire_assembly.py
# and bench/gen_check.py check the result against messages built through the protobuf API.


_varint = p.varint
_tag = p.field_tag
_ld = p.length_delimited

_LbEndpoint = p.endpoint_components.LbEndpoint
_LocalityLbEndpoints = p.endpoint_components.LocalityLbEndpoints
_CLA = p.endpoint.ClusterLoadAssignment
_T_LB_ENDPOINT = _tag(_LbEndpoint, "endpoint")
_T_LB_METADATA = _tag(_LbEndpoint, "metadata")
_T_EP_ADDRESS = _tag(p.endpoint_components.Endpoint, "address")
_T_SOCKET_ADDRESS = _tag(p.address.Address, "socket_address")
_T_SA_ADDRESS = _tag(p.address.SocketAddress, "address")
_T_SA_PORT = _varint(p.address.SocketAddress.DESCRIPTOR.fields_by_name["port_value"].number << 3)
_T_PIPE = _tag(p.address.Address, "pipe")
_T_PIPE_PATH = _tag(p.address.Pipe, "path")
_T_FILTER_METADATA = _tag(p.base.Metadata, "filter_metadata")
_T_STRUCT_FIELDS = _tag(struct_pb2.Struct, "fields")
_T_STRING_VALUE = _tag(struct_pb2.Value, "string_value")
_T_MAP_KEY, _T_MAP_VALUE = b"\x0a", b"\x12"  # map entries: key = 1, value = 2
_T_GROUP_LB = _tag(_LocalityLbEndpoints, "lb_endpoints")
_T_GROUP_LOCALITY = _tag(_LocalityLbEndpoints, "locality")
_T_GROUP_WEIGHT = _tag(_LocalityLbEndpoints, "load_balancing_weight")
_T_GROUP_PRIORITY = _varint(_LocalityLbEndpoints.DESCRIPTOR.fields_by_name["priority"].number << 3)
_T_UINT32 = _varint(wrappers_pb2.UInt32Value.DESCRIPTOR.fields_by_name["value"].number << 3)
_T_CLA_NAME = _tag(_CLA, "cluster_name")
_T_CLA_ENDPOINTS = _tag(_CLA, "endpoints")
_HEALTHY = _LbEndpoint(health_status=p.health_check.HEALTHY).SerializeToString(deterministic=True)
_ISTIO_KEY = _ld(_T_MAP_KEY, b"istio")
_WORKLOAD_KEY = _ld(_T_MAP_KEY, b"workload")


def _tls_mode_entry() -> bytes:
    """The `envoy.transport_socket_match` entry of Metadata.filter_metadata (one map entry's bytes)."""
    md = p.base.Metadata()
    md.filter_metadata[tls.TRANSPORT_SOCKET_MATCH].fields["tlsMode"].string_value = "istio"
    return md.SerializeToString(deterministic=True)


_TLS_MODE_ENTRY = _tls_mode_entry()


def _pod_entry(pod: str) -> bytes:
    """The `envoy.lb` entry naming the endpoint's pod, for a headless service's subsets (`headless`)."""
    md = p.base.Metadata()
    md.filter_metadata[headless.LB_NAMESPACE].fields[headless.POD_KEY].string_value = pod
    return md.SerializeToString(deterministic=True)


def _metadata_bytes(workload: str, mtls: bool, pod: str = "") -> bytes:
    """The LbEndpoint's `metadata` field. One Metadata whose filter_metadata map has every entry, so
    the bytes have the canonical size (upb's own map order is per process: compare decoded)."""
    value = _ld(_T_STRING_VALUE, workload.encode())
    struct = _ld(_T_STRUCT_FIELDS, _WORKLOAD_KEY + _ld(_T_MAP_VALUE, value))
    md = _ld(_T_FILTER_METADATA, _ISTIO_KEY + _ld(_T_MAP_VALUE, struct))
    if mtls:
        md += _TLS_MODE_ENTRY
    if pod:
        md += _pod_entry(pod)
    return _ld(_T_LB_METADATA, md)


def _address_bytes(ep: Endpoint) -> bytes:
    """The endpoint's Address: a unix socket (`unix:///path`, a ServiceEntry or WorkloadEntry address)
    as a pipe, as istiod's BuildAddress does; otherwise ip:port."""
    if ep.address.startswith(UNIX_ADDRESS_PREFIX):
        return _ld(_T_PIPE, _ld(_T_PIPE_PATH, ep.address[len(UNIX_ADDRESS_PREFIX) :].encode()))
    addr = ep.address.encode()
    return _ld(_T_SOCKET_ADDRESS, _T_SA_ADDRESS + _varint(len(addr)) + addr + _port_field(ep.port))


@functools.lru_cache(maxsize=4096)
def _port_field(port: int) -> bytes:
    """SocketAddress.port_value's field bytes (a mesh has few distinct ports; most need a 2-byte varint)."""
    return _T_SA_PORT + _varint(port)


@functools.lru_cache(maxsize=1024)
def _weight_field(weight: int) -> bytes:
    """LbEndpoint.load_balancing_weight's field bytes (every endpoint has one; most weigh 1)."""
    return _LbEndpoint(load_balancing_weight=p.u32(weight)).SerializeToString(deterministic=True)


@functools.lru_cache(maxsize=1024)
def _locality_field(where: str) -> bytes:
    """LocalityLbEndpoints.locality's field bytes, once per distinct locality."""
    return _ld(_T_GROUP_LOCALITY, _locality(where).SerializeToString(deterministic=True))


def _lb_endpoint_bytes(
    snapshot: Snapshot, ep: Endpoint, metadata: dict[tuple[str, bool, str], bytes], pods: bool
) -> bytes:
    """The LbEndpoint: address, HEALTHY, weight, `istio.workload` metadata, tlsMode for mTLS endpoints,
    the pod's name with `pods` (the metadata, the same for all instances of a workload but for the pod,
    from `metadata`)."""
    mtls = tls.endpoint_mtls_enabled(snapshot, ep)
    key = (_workload_metadata(ep), mtls, ep.instance if pods else "")
    md = metadata.get(key)
    if md is None:
        md = metadata[key] = _metadata_bytes(*key)
    # The weight is field 4, after metadata (3): fields in number order, as upb writes them.
    return b"".join(
        (_ld(_T_LB_ENDPOINT, _ld(_T_EP_ADDRESS, _address_bytes(ep))), _HEALTHY, md, _weight_field(ep.weight))
    )


_new_tuple = tuple.__new__


def _groups(endpoints: Iterable[Endpoint]) -> list[Group]:
    """One group per locality (sorted by locality)."""
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        by_locality.setdefault(ep.locality, []).append(ep)
    # Made as tuples, not through Group's generated __new__ (twice the cost): every assignment's
    # grouping goes through here.
    return [_new_tuple(Group, (where, eps, None, 0, False)) for where, eps in sorted(by_locality.items())]


def _groups_bytes(snapshot: Snapshot, groups: Iterable[Group], pods: bool = False) -> bytes:
    """The `endpoints` of a ClusterLoadAssignment: a LocalityLbEndpoints per group (locality, endpoints,
    weight, priority); with `pods`, each endpoint names its pod (a headless service)."""
    # An endpoint's bytes depend on the snapshot and the endpoint only: encoded once per snapshot (a
    # service's subset clusters, every scope that sees the service, and every locality variant share
    # them). The registry owns the endpoints for the snapshot's lifetime, so their ids are stable keys.
    # Kept as whole `lb_endpoints` fields (tag and length included), ready to join.
    built: dict[int, bytes] = snapshot.memo(("lb_endpoint_field_bytes", pods), dict)
    metadata: dict[tuple[str, bool, str], bytes] = snapshot.memo(("lb_endpoint_metadata_bytes",), dict)
    out = []
    for where, eps, weight, priority, drained in groups:
        group = [_locality_field(where)] if where else []
        total = 0
        if not drained:
            for ep in eps:
                lb = built.get(id(ep))
                if lb is None:
                    lb = built[id(ep)] = _ld(_T_GROUP_LB, _lb_endpoint_bytes(snapshot, ep, metadata, pods))
                group.append(lb)
                total += ep.weight
        group.append(_ld(_T_GROUP_WEIGHT, _T_UINT32 + _varint(total if weight is None else weight)))
        if priority:  # field 5, after the weight (3); 0 is proto3's default, left out
            group.append(_T_GROUP_PRIORITY + _varint(priority))
        out.append(_ld(_T_CLA_ENDPOINTS, b"".join(group)))
    return b"".join(out)


def _lb_endpoints_bytes(snapshot: Snapshot, endpoints: Iterable[Endpoint]) -> bytes:
    """The `endpoints` of a ClusterLoadAssignment without locality load balancing."""
    return _groups_bytes(snapshot, _groups(endpoints))


_CLA_TYPE_URL = "type.googleapis.com/" + _CLA.DESCRIPTOR.full_name


# Clusters that carry their assignment inline (STRICT_DNS, LOGICAL_DNS: clusters.py). Locality load
# balancing, failoverPriority included, applies to them as to EDS clusters (istiod pairs a DNS cluster's
# endpoints with their labels: TestFailoverPriorityWithDNSServiceEntry, istio/istio#61857).
INLINE_ASSIGNMENT = (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)


def packed_assignment(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> Any:
    """The cluster's assignment as a packed Any, made straight from the wire bytes (no message built,
    parsed or serialized again). Without locality load balancing (see `locality.locality_lb`) it depends
    on the snapshot, the service, port and subset only: one object per snapshot for every scope that has
    the cluster, so the server encodes it once. With it, priorities and weights follow the proxy's
    locality (and labels): one object per distinct result, and the shared one when nothing changes."""
    labels = spec.subset_labels
    key = (spec.name, id(spec.service), spec.port.port, None if labels is None else tuple(labels.items()))
    packed: dict[tuple, Any] = snapshot.memo(("cla_any",), dict)
    za = zone_aware.setting(spec.policy, proxy)
    # Zone-aware load balancing replaces locality load balancing (its regional tiers instead).
    lb = (
        None
        if za is not None
        else locality.locality_lb(snapshot.mesh.locality_lb_setting, spec.policy, spec.service)
    )
    groups: Sequence[Group] | None = None
    if lb is not None or za is not None:
        cached: dict[tuple, Sequence[Group]] = snapshot.memo(("cla_groups",), dict)
        groups = cached.get(key)
        if groups is None:
            groups = cached[key] = _groups(select_endpoints(snapshot, spec))
        applied = (
            zone_aware.apply_regions(groups, proxy, za) if lb is None else locality.apply(groups, proxy, lb)
        )
        variant = None if applied is groups else locality.variant(groups, applied)
        if variant is not None:
            key, groups = (*key, variant), applied
    out = packed.get(key)
    if out is None:
        if groups is None:
            groups = _groups(select_endpoints(snapshot, spec))
        out = packed[key] = any_pb2.Any(
            type_url=_CLA_TYPE_URL,
            value=_ld(_T_CLA_NAME, spec.name.encode())
            + _groups_bytes(snapshot, groups, headless.pins_pods(spec.service)),
        )
    return out


def load_assignment(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> p.endpoint.ClusterLoadAssignment:
    """The assignment as a message (each caller gets its own)."""
    return _CLA.FromString(packed_assignment(snapshot, proxy, spec).value)


def packed_endpoints(snapshot: Snapshot, proxy: Proxy, names: Iterable[str]) -> dict[str, Any]:
    """build_endpoints, packed: cluster name -> Any (the snapshot's shared objects), for the names that
    are clusters of the proxy; the others are left out (the xDS server answers them as the protocol
    wants: an empty assignment for SotW, a removal for delta)."""
    from isthmus.xds.gen.clusters import specs_by_name

    specs = specs_by_name(snapshot, proxy)
    out: dict[str, Any] = {}
    for name in names:
        spec = specs.get(name)
        if spec is not None:
            out[name] = _eds_assignment(snapshot, proxy, spec)
        elif name == zone_aware.SELF_DISCOVERY_CLUSTER and zone_aware.self_discovery(proxy):
            out[name] = local_cluster_assignment(snapshot, proxy)
    return out


def local_cluster_assignment(snapshot: Snapshot, proxy: Proxy) -> Any:
    """The self-discovery ``local_cluster``'s assignment (zone_aware.local_endpoints), packed; the same
    object for proxies with the same members."""
    groups = zone_aware.local_groups(snapshot, proxy)
    key = tuple((g.locality, tuple(id(e) for e in g.endpoints)) for g in groups)
    packed: dict[tuple, Any] = snapshot.memo(("cla_local_cluster",), dict)
    out = packed.get(key)
    if out is None:
        out = packed[key] = any_pb2.Any(
            type_url=_CLA_TYPE_URL,
            value=_ld(_T_CLA_NAME, zone_aware.SELF_DISCOVERY_CLUSTER.encode())
            + _groups_bytes(snapshot, groups),
        )
    return out


def _empty_assignment(snapshot: Snapshot, name: str) -> Any:
    """istiod's buildEmptyClusterLoadAssignment, packed (one object per snapshot and name)."""
    empty: dict[str, Any] = snapshot.memo(("cla_empty_any",), dict)
    out = empty.get(name)
    if out is None:
        out = empty[name] = any_pb2.Any(type_url=_CLA_TYPE_URL, value=_ld(_T_CLA_NAME, name.encode()))
    return out


def _eds_assignment(snapshot: Snapshot, proxy: Proxy, spec: ClusterSpec) -> Any:
    """What EDS sends for the cluster. A DNS cluster carries its endpoints inline (CDS): asked over EDS
    (an EDS cluster whose service turned DNS, before the new cluster replaces it), istiod's findShards
    skips it and the answer is empty, never host names an EDS cluster cannot take
    (TestEDSServiceResolutionUpdate)."""
    if spec.service.resolution in INLINE_ASSIGNMENT:
        return _empty_assignment(snapshot, spec.name)
    return packed_assignment(snapshot, proxy, spec)


def build_endpoints(
    snapshot: Snapshot, proxy: Proxy, names: Iterable[str]
) -> list[p.endpoint.ClusterLoadAssignment]:
    from isthmus.xds.gen.clusters import specs_by_name

    specs = specs_by_name(snapshot, proxy)
    out = []
    for name in names:
        spec = specs.get(name)
        if spec is None and name == zone_aware.SELF_DISCOVERY_CLUSTER and zone_aware.self_discovery(proxy):
            out.append(_CLA.FromString(local_cluster_assignment(snapshot, proxy).value))
            continue
        if spec is None:
            # Envoy asked for a cluster we do not know (yet): an empty assignment keeps it from waiting.
            out.append(p.endpoint.ClusterLoadAssignment(cluster_name=name))
            continue
        out.append(_CLA.FromString(_eds_assignment(snapshot, proxy, spec).value))
    return out
