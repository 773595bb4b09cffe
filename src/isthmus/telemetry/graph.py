"""The live service graph: edges between workloads and services over a sliding window.

Fed with every aggregated request (`record_http`) and TCP connection (`record_tcp`), it keeps per edge and
per second: requests, errors, a bounded sample of durations, response codes, destination-side mTLS
counts. `graph(window_seconds)` summarizes the last window.

Counting follows Kiali: an edge's traffic is what the client proxy reported (reporter=source); what a
server sidecar reported (reporter=destination) counts only when no client proxy reports it (the source is
outside the mesh or unknown). mTLS comes from the destination side, the only one that sees the peer
certificate (istio-proxy reports connection_security_policy=unknown at the source).

Nodes: ``workload:<ns>/<name>`` for known workloads, ``service:<host>`` when the destination workload is
unknown (no route, no healthy upstream, an external host), ``unknown`` for sources outside the mesh.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus.telemetry import istio

I = istio.IDX  # noqa: E741
MAX_SAMPLES_PER_SLOT = 512


def samples_of_buckets(counts: Sequence[int]) -> list[float]:
    """Durations standing for bucketed ones (the in-proxy module's histograms): each bucket's upper bound
    (the last finite one for +Inf), as many times as it counted; scaled down to the samples a slot keeps,
    each bucket keeping its share. The graph's percentiles are then bucket bounds, as Prometheus'
    histogram_quantile gives bucket-grained figures."""
    total = sum(counts)
    scale = min(1.0, MAX_SAMPLES_PER_SLOT / total) if total else 1.0
    out: list[float] = []
    bounds = istio.BUCKETS
    for i, n in enumerate(counts):
        if n > 0:
            out.extend([float(bounds[min(i, len(bounds) - 1)])] * max(1, round(n * scale)))
    return out


_EDGE_CACHE_MAX = 50_000


@dataclass
class _Slot:
    second: int
    requests: int = 0
    errors: int = 0
    dest_reported: int = 0
    mtls: int = 0
    bytes: int = 0
    durations: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Edge:
    source: str
    destination: str
    protocol: str
    services: set[str] = field(default_factory=set)
    slots: deque[_Slot] = field(default_factory=deque)

    def slot(self, second: int, horizon: int) -> _Slot:
        if self.slots and self.slots[-1].second == second:
            return self.slots[-1]
        s = _Slot(second)
        self.slots.append(s)
        while self.slots and self.slots[0].second <= second - horizon:
            self.slots.popleft()
        return s


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    import math

    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _node(prefix: str, labels: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    wl = labels[I[f"{prefix}_workload"]]
    ns = labels[I[f"{prefix}_workload_namespace"]]
    if wl != istio.UNKNOWN:
        node = {
            "id": f"workload:{ns}/{wl}",
            "kind": "workload",
            "namespace": ns,
            "workload": wl,
            "app": labels[I[f"{prefix}_app"]],
            "version": labels[I[f"{prefix}_version"]],
            "canonicalService": labels[I[f"{prefix}_canonical_service"]],
            "canonicalRevision": labels[I[f"{prefix}_canonical_revision"]],
        }
        return node["id"], node
    if prefix == "destination":
        host = labels[I["destination_service"]]
        node = {
            "id": f"service:{host}",
            "kind": "service",
            "namespace": labels[I["destination_service_namespace"]],
            "service": host,
            "serviceName": labels[I["destination_service_name"]],
        }
        return node["id"], node
    return "unknown", {"id": "unknown", "kind": "unknown"}


class ServiceGraph:
    def __init__(self, horizon_s: int = 600, clock: Callable[[], float] = time.time) -> None:
        self.horizon = int(horizon_s)
        self.clock = clock
        self._edges: dict[tuple[str, str, str], _Edge] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        # The edge of a labels tuple, so a request does not rebuild both nodes' dicts (a quarter of the
        # control plane's per-request telemetry work); cleared whenever an edge is pruned.
        self._by_labels: dict[tuple[tuple[str, ...], str], _Edge] = {}

    def _edge(self, labels: tuple[str, ...], protocol: str) -> _Edge:
        edge = self._by_labels.get((labels, protocol))
        if edge is not None:
            return edge
        if len(self._by_labels) >= _EDGE_CACHE_MAX:
            self._by_labels.clear()
        edge = self._by_labels[(labels, protocol)] = self._new_edge(labels, protocol)
        return edge

    def _new_edge(self, labels: tuple[str, ...], protocol: str) -> _Edge:
        src_id, src = _node("source", labels)
        dst_id, dst = _node("destination", labels)
        key = (src_id, dst_id, protocol)
        edge = self._edges.get(key)
        if edge is None:
            edge = self._edges[key] = _Edge(src_id, dst_id, protocol)
            self._nodes.setdefault(src_id, src)
            self._nodes.setdefault(dst_id, dst)
        svc = labels[I["destination_service"]]
        if svc != istio.UNKNOWN:
            edge.services.add(svc)
        return edge

    def record_http(
        self,
        labels: tuple[str, ...],
        *,
        counted: bool,
        duration_ms: float | None,
        error: bool,
        code: str,
        now: float | None = None,
        requests: int = 1,
        durations: Sequence[float] = (),
    ) -> None:
        """One request (or `requests` alike, with `durations` instead of `duration_ms`: the in-proxy
        module's series). `labels` are HTTP_LABELS values; `counted` says whether this report counts the
        request (see the module doc); destination reports always feed the mTLS figures."""
        dest = labels[0] == istio.DESTINATION
        if not counted and not dest:
            return
        second = int(self.clock() if now is None else now)
        edge = self._edge(labels, labels[I["request_protocol"]])
        slot = edge.slot(second, self.horizon)
        if dest:
            slot.dest_reported += requests
            if labels[I["connection_security_policy"]] == istio.MUTUAL_TLS:
                slot.mtls += requests
        if not counted:
            return
        slot.requests += requests
        if error:
            slot.errors += requests
        slot.codes[code] = slot.codes.get(code, 0) + requests
        if duration_ms is not None and len(slot.durations) < MAX_SAMPLES_PER_SLOT:
            slot.durations.append(duration_ms)
        room = MAX_SAMPLES_PER_SLOT - len(slot.durations)
        if durations and room > 0:
            slot.durations.extend(durations[:room])

    def record_tcp(
        self,
        labels: tuple[str, ...],
        *,
        counted: bool,
        opened: int,
        bytes_: int,
        now: float | None = None,
    ) -> None:
        dest = labels[0] == istio.DESTINATION
        if not counted and not dest:
            return
        second = int(self.clock() if now is None else now)
        edge = self._edge(labels, "tcp")
        slot = edge.slot(second, self.horizon)
        if dest and opened:
            slot.dest_reported += opened
            if labels[len(istio.PEER_LABELS) + 2] == istio.MUTUAL_TLS:
                slot.mtls += opened
        if counted:
            slot.requests += opened
            slot.bytes += bytes_

    def graph(self, window_seconds: float = 60.0, now: float | None = None) -> dict[str, Any]:
        now_s = self.clock() if now is None else now
        window = max(1.0, min(float(window_seconds), float(self.horizon)))
        start = int(now_s - window)
        edges = []
        used: dict[str, dict[str, float]] = {}
        for edge in self._edges.values():
            slots = [s for s in edge.slots if s.second > start]
            if not slots:
                continue
            requests = sum(s.requests for s in slots)
            dest_reported = sum(s.dest_reported for s in slots)
            if not requests and not dest_reported:
                continue
            errors = sum(s.errors for s in slots)
            mtls = sum(s.mtls for s in slots)
            durations = sorted(d for s in slots for d in s.durations)
            codes: dict[str, int] = {}
            for s in slots:
                for c, n in s.codes.items():
                    codes[c] = codes.get(c, 0) + n
            out = {
                "source": edge.source,
                "destination": edge.destination,
                "services": sorted(edge.services),
                "protocol": edge.protocol,
                "requests": requests,
                "rps": round(requests / window, 3),
                "errorRate": round(errors / requests, 4) if requests else 0.0,
                "p50": _percentile(durations, 50) if durations else None,
                "p99": _percentile(durations, 99) if durations else None,
                "mtls": (mtls == dest_reported) if dest_reported else None,
                "mtlsPercent": round(100.0 * mtls / dest_reported, 1) if dest_reported else None,
                "codes": codes,
            }
            if edge.protocol == "tcp":
                out["bytesPerSecond"] = round(sum(s.bytes for s in slots) / window, 1)
            edges.append(out)
            for node_id, direction in ((edge.source, "out"), (edge.destination, "in")):
                n = used.setdefault(
                    node_id, {"rpsIn": 0.0, "rpsOut": 0.0, "errorsIn": 0.0, "requestsIn": 0.0}
                )
                if direction == "out":
                    n["rpsOut"] += requests / window
                else:
                    n["rpsIn"] += requests / window
                    n["requestsIn"] += requests
                    n["errorsIn"] += errors
        nodes = []
        for node_id, figures in sorted(used.items()):
            node = dict(self._nodes[node_id])
            node["rpsIn"] = round(figures["rpsIn"], 3)
            node["rpsOut"] = round(figures["rpsOut"], 3)
            node["errorRate"] = (
                round(figures["errorsIn"] / figures["requestsIn"], 4) if figures["requestsIn"] else 0.0
            )
            nodes.append(node)
        edges.sort(key=lambda e: (e["source"], e["destination"], e["protocol"]))
        return {"windowSeconds": window, "timestamp": now_s, "nodes": nodes, "edges": edges}

    def prune(self, now: float | None = None) -> None:
        """Forget edges with no traffic within the horizon."""
        horizon_start = int((self.clock() if now is None else now) - self.horizon)
        for key, edge in list(self._edges.items()):
            while edge.slots and edge.slots[0].second <= horizon_start:
                edge.slots.popleft()
            if not edge.slots:
                del self._edges[key]
                self._by_labels.clear()
        live = {e.source for e in self._edges.values()} | {e.destination for e in self._edges.values()}
        for node_id in list(self._nodes):
            if node_id not in live:
                del self._nodes[node_id]
