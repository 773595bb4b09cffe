"""Helpers for the echo tests (imported by name: this directory is on sys.path under pytest)."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events


def h2_get(port: int, path: str, *, upgrade: bool = False, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET over h2c: prior knowledge, or an HTTP/1.1 ``Upgrade: h2c`` request."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        pending = b""
        if upgrade:
            settings = conn.initiate_upgrade_connection()
            assert settings is not None
            sock.sendall(
                (
                    f"GET {path} HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    f"Upgrade: h2c\r\nHTTP2-Settings: {settings.decode()}\r\n\r\n"
                ).encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, "connection closed during upgrade"
                buf += chunk
            head, _, pending = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
        else:
            conn.initiate_connection()
            conn.send_headers(
                1,
                [(":method", "GET"), (":path", path), (":authority", "echo"), (":scheme", "http")],
                end_stream=True,
            )
        sock.sendall(conn.data_to_send())
        status, body = 0, b""
        while True:
            data = pending or sock.recv(65536)
            pending = b""
            if not data:
                raise AssertionError("connection closed before the end of the stream")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                    return status, body
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
