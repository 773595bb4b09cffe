"""free_ports: distinct ports that are free when returned (two free_port calls can return the same)."""

from __future__ import annotations

import socket

from isthmus.mesh.addresses import free_ports


def test_ports_are_distinct_and_bindable() -> None:
    ports = free_ports("127.0.0.1", 20)
    assert len(set(ports)) == 20
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", ports[0]))
        b.bind(("127.0.0.1", ports[1]))
