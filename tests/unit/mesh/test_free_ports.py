"""free_ports: distinct ports that are free when returned (two free_port calls can return the same)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from isthmus.mesh.addresses import free_ports


def test_ports_are_distinct_and_bindable() -> None:
    ports = free_ports("127.0.0.1", 20)
    assert len(set(ports)) == 20
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", ports[0]))
        b.bind(("127.0.0.1", ports[1]))


def test_ports_come_from_below_the_ephemeral_range() -> None:
    # A port of the ephemeral range can become some outgoing connection's source port before the app
    # binds it; below the range only listeners take ports.
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if start - 10_000 < 1_000:
        pytest.skip("the kernel leaves no room below its ephemeral range: bind(0) it is")
    assert all(10_000 <= p < start for p in free_ports("127.0.0.1", 50))
