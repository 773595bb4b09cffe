"""Loopback addresses and ports for a local mesh."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
from collections.abc import Iterator
from pathlib import Path


class AddressPool:
    """Hands out the addresses of a loopback block: the first to the control plane, then one per pod."""

    def __init__(self, subnet: str) -> None:
        net = ipaddress.ip_network(subnet, strict=False)
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"--subnet {subnet} must be inside 127.0.0.0/8 (loopback)")
        self.network = net
        self._hosts: Iterator[ipaddress.IPv4Address] = net.hosts()  # type: ignore[assignment]
        self._released: list[str] = []
        self.control_plane = self._next_free((15010, 15012, 15014))

    def _next_free(self, probe_ports: tuple[int, ...]) -> str:
        for ip in self._hosts:
            addr = str(ip)
            if all(port_free(addr, p) for p in probe_ports):
                return addr
        raise RuntimeError(f"no free address left in {self.network}")

    def allocate(self) -> str:
        """A pod address whose Istio ports are free (a crashed mesh may have left processes behind)."""
        try:
            return self._next_free((15000, 15001))
        except RuntimeError:
            while self._released:
                addr = self._released.pop(0)
                if port_free(addr, 15000) and port_free(addr, 15001):
                    return addr
            raise

    def release(self, address: str) -> None:
        # Reused only once the block runs out: a just-stopped pod's sockets may linger in TIME_WAIT.
        self._released.append(address)


def port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str = "127.0.0.1") -> int:
    return free_ports(address, 1)[0]


# Listen ports are picked below the kernel's ephemeral range: a port from it (what bind(0) hands out) can
# be taken as the source port of some outgoing connection between being chosen and the app binding it
# ("Address already in use"), and a local mesh makes many connections from 127.0.0.1.
_LISTEN_FLOOR = 10_000
_PICK_ATTEMPTS = 200


def _listen_range() -> tuple[int, int] | None:
    """[10000, start of ip_local_port_range), or None when that leaves too few ports to pick from."""
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (_LISTEN_FLOOR, start - 1) if start - _LISTEN_FLOOR >= 1_000 else None


def free_ports(address: str, n: int) -> list[int]:
    """`n` distinct free ports on `address`, below the ephemeral range when the kernel leaves room there
    (else from bind(0)). All are held open until every one is chosen (ports taken one after the other
    could come back equal)."""
    listen_range = _listen_range()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        attempts = 0
        while len(ports) < n:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            if listen_range is not None and attempts < _PICK_ATTEMPTS:
                attempts += 1
                try:
                    s.bind((address, random.randint(*listen_range)))
                except OSError:
                    continue  # taken (or lingering): try another
            else:
                s.bind((address, 0))
            ports.append(int(s.getsockname()[1]))
        return ports
