"""A mesh run without root shifts every listen port below 1024 by `--port-offset` (DESIGN §3), sidecars'
inbound ports included: the listener keeps the declared port's name, binds the shifted one, and the
endpoints other proxies are sent for that pod name the shifted port, so traffic still arrives."""

from __future__ import annotations

import dataclasses
from typing import Any

from gen_helpers import generate, sidecar, snapshot

from isthmus.registry.types import Pod, socket_port
from isthmus.telemetry.resolver import SnapshotResolver
from isthmus.xds.gen import naming

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: low, namespace: default}
spec:
  selector: {app: low}
  ports: [{name: http, port: 80}, {name: http-alt, port: 8080, targetPort: 8080}]
"""
OFFSET = {"ISTHMUS_PORT_OFFSET": "8000"}


def low_pod(ports: dict[int, int], offset: int = 8000) -> Pod:
    return Pod(
        "low-0", "default", "127.7.0.30", {"app": "low"}, workload="low", app_ports=ports, port_offset=offset
    )


def low_proxy() -> Any:
    return dataclasses.replace(sidecar("low-0", "default", {"app": "low"}, "127.7.0.30"), metadata=OFFSET)


def bound_ports(listeners: dict[str, Any]) -> dict[str, int]:
    return {name: lst["address"]["socket_address"]["port_value"] for name, lst in listeners.items()}


def test_socket_port_shifts_only_privileged_ports() -> None:
    assert [socket_port(p, 8000) for p in (1, 80, 1023, 1024, 8080)] == [8001, 8080, 9023, 1024, 8080]
    assert socket_port(80, 0) == 80


def test_inbound_listener_binds_the_shifted_port_and_keeps_its_name() -> None:
    snap = snapshot(SERVICE, pods=[low_pod({80: 40030})], services=False)
    listeners = generate(snap, low_proxy(), naming.LISTENER_TYPE)
    assert bound_ports(listeners)["127.7.0.30_80"] == 8080
    # the inbound cluster and route keep the declared port
    clusters = generate(snap, low_proxy(), naming.CLUSTER_TYPE)
    assert "inbound|80||" in clusters


def test_clients_are_sent_the_shifted_port() -> None:
    snap = snapshot(SERVICE, pods=[low_pod({80: 40030})], services=False)
    cluster = "outbound|80||low.default.svc.cluster.local"
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]
    (lb,) = [lb for group in cla["endpoints"] for lb in group["lb_endpoints"]]
    assert lb["endpoint"]["address"]["socket_address"] == {"address": "127.7.0.30", "port_value": 8080}


def test_pod_without_offset_is_reached_on_the_declared_port() -> None:
    snap = snapshot(SERVICE, pods=[low_pod({80: 40030}, offset=0)], services=False)
    cluster = "outbound|80||low.default.svc.cluster.local"
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]
    (lb,) = [lb for group in cla["endpoints"] for lb in group["lb_endpoints"]]
    assert lb["endpoint"]["address"]["socket_address"]["port_value"] == 80


def test_shift_onto_a_declared_port_is_left_out_with_an_error() -> None:
    # 80 + 8000 is 8080, which the pod also serves: two listeners on one address would get the whole
    # LDS update NACKed, so the declared 8080 wins and 80 is reported.
    snap = snapshot(SERVICE, pods=[low_pod({80: 40030, 8080: 40031})], services=False)
    listeners = generate(snap, low_proxy(), naming.LISTENER_TYPE)
    ports = bound_ports(listeners)
    assert ports["127.7.0.30_8080"] == 8080 and "127.7.0.30_80" not in ports
    assert "served on 8080" in snap.generation_errors["listener 127.7.0.30_80"]


def test_telemetry_finds_the_inbound_service_by_the_shifted_port() -> None:
    # Envoy reports the socket's port as the local port of an inbound request.
    snap = snapshot(SERVICE, pods=[low_pod({80: 40030})], services=False)
    resolver = SnapshotResolver(snap)
    info = resolver.inbound_service(low_proxy(), 8080)
    assert info is not None and info.host == "low.default.svc.cluster.local"


def test_pod_without_sidecar_is_reached_on_the_shifted_port_too() -> None:
    # Its app listens on the pod address itself (the runner gives it the shifted port), plaintext.
    pod = dataclasses.replace(low_pod({80: 8080}), sidecar=False)
    snap = snapshot(SERVICE, pods=[pod], services=False)
    cluster = "outbound|80||low.default.svc.cluster.local"
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]
    (lb,) = [lb for group in cla["endpoints"] for lb in group["lb_endpoints"]]
    assert lb["endpoint"]["address"]["socket_address"]["port_value"] == 8080
