"""Test certificates, a TLS backend outside the mesh, and TLS / PROXY-protocol clients."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pem:
    cert: bytes
    key: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "isthmus test CA") -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def issue(ca: Pem, dns_names: list[str], *, client: bool = False) -> Pem:
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Pem(_cert_pem(cert), _key_pem(key))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def tls_secret(name: str, pem: Pem, ca: Pem | None = None, namespace: str = "istio-system") -> str:
    """A `kubernetes.io/tls` Secret, as a gateway credentialName refers to it."""
    data = {"tls.crt": pem.cert, "tls.key": pem.key}
    if ca is not None:
        data["ca.crt"] = ca.cert
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": encoded,
        }
    )


def https_get(
    address: str,
    sni: str,
    path: str,
    ca: Pem,
    *,
    client: Pem | None = None,
    tmp: Path | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict, bytes]:
    """GET over TLS to `address` with `sni` (also the Host header); raises ssl.SSLError on handshake failure."""
    ctx = ssl.create_default_context(cadata=ca.cert.decode())
    if client is not None:
        assert tmp is not None
        cert_file, key_file = tmp / "client.crt", tmp / "client.key"
        cert_file.write_bytes(client.cert)
        key_file.write_bytes(client.key)
        ctx.load_cert_chain(cert_file, key_file)
    host, _, port = address.rpartition(":")
    with (
        socket.create_connection((host, int(port)), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return _parse(data)


def _parse(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def proxy_v2_header(src: str, dst: str, src_port: int, dst_port: int) -> bytes:
    """A PROXY protocol v2 header for TCP over IPv4 (what a load balancer sends first)."""
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", src_port, dst_port)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def http_get_with_proxy_protocol(
    address: str, host: str, path: str, src: str | None
) -> tuple[int, dict, bytes]:
    """Plain HTTP/1.1 GET, preceded by a PROXY v2 header claiming `src` as the client (None: no header)."""
    ip, _, port = address.rpartition(":")
    with socket.create_connection((ip, int(port)), timeout=5) as s:
        if src is not None:
            s.sendall(proxy_v2_header(src, ip, 40000, int(port)))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return _parse(data)


class TlsBackend:
    """An HTTPS server outside the mesh: answers JSON saying which SNI it saw and whether the client
    presented a certificate (client certificates are optional and checked against `client_ca`)."""

    def __init__(self, server: Pem, workdir: Path, client_ca: Pem | None = None) -> None:
        cert_file, key_file = workdir / "backend.crt", workdir / "backend.key"
        cert_file.write_bytes(server.cert)
        key_file.write_bytes(server.key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        if client_ca is not None:
            self.ctx.load_verify_locations(cadata=client_ca.cert.decode())
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self._local = threading.local()
        self.ctx.sni_callback = self._on_sni
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TlsBackend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(5)

    def _on_sni(self, _obj: object, name: str | None, _ctx: object) -> None:
        self._local.sni = name

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                body = json.dumps(
                    {
                        "backend": "tls",
                        "sni": getattr(self._local, "sni", None),
                        "clientCert": bool(tls.getpeercert()),
                    }
                ).encode()
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
        except (OSError, ssl.SSLError):
            pass


class TlsServer:
    """A TLS server outside the mesh on `address:port`, as Istio's echo serves a TLS port.

    HTTP/1.1 requests (and h2, when that is the ALPN negotiated) get JSON with the SNI, ALPN, client
    certificate subject, host and headers it saw; anything else is a TCP echo, answering each line with
    `tls <line>`. A plaintext request gets Go's `400 Bad Request` (what Istio's echo answers when no TLS
    is originated). `connections` counts accepted TCP connections."""

    def __init__(
        self,
        address: str,
        port: int,
        cert: Pem,
        workdir: Path,
        *,
        client_ca: Pem | None = None,
        alpn: tuple[str, ...] = ("http/1.1",),
        client_cert_optional: bool = False,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "server.crt").write_bytes(cert.cert)
        (workdir / "server.key").write_bytes(cert.key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(workdir / "server.crt", workdir / "server.key")
        self.ctx.set_alpn_protocols(list(alpn))
        if client_ca is not None:
            # Istio's mTLS echo port: a client certificate from this CA is required.
            self.ctx.load_verify_locations(cadata=client_ca.cert.decode())
            # Optional: the server asks for a certificate (and reports its subject) but serves without
            # one, as Istio's echo TLS port that does not enforce client certificates.
            self.ctx.verify_mode = ssl.CERT_OPTIONAL if client_cert_optional else ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":
                read_head(conn)
                conn.sendall(
                    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
                )
                conn.close()
                return
            sni: list[str | None] = [None]
            self.ctx.sni_callback = lambda _s, name, _c: sni.__setitem__(0, name)  # type: ignore[assignment]
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                alpn = tls.selected_alpn_protocol()
                peer = tls.getpeercert() or {}
                subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
                seen = {"sni": sni[0], "alpn": alpn, "clientCertSubject": subject.replace("commonName", "CN")}
                if alpn == "h2":
                    _answer_h2(tls, seen)
                    return
                head = read_head(tls, first_line_only=True)
                if not _HTTP_REQUEST_LINE.match(head.split(b"\n")[0].rstrip(b"\r").decode("latin-1")):
                    _echo_lines(tls, head)
                    return
                while b"\r\n\r\n" not in head and (chunk := tls.recv(4096)):
                    head += chunk
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = json.dumps({**seen, "host": headers.get("host"), "headers": headers}).encode()
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except (OSError, ssl.SSLError):
            pass


_HTTP_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+ HTTP/1\.[01]$")


def read_head(sock: socket.socket, *, first_line_only: bool = False) -> bytes:
    """What a peer sent up to the end of an HTTP head (or until it stops sending); with
    `first_line_only`, up to the end of its first line."""
    data = b""
    end = b"\n" if first_line_only else b"\r\n\r\n"
    while end not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _echo_lines(tls: ssl.SSLSocket, first: bytes) -> None:
    """A TCP echo over TLS: `tls <line>` for every line, starting with those already read."""
    buffered = first
    while True:
        while b"\n" in buffered:
            line, _, buffered = buffered.partition(b"\n")
            tls.sendall(b"tls " + line.rstrip(b"\r") + b"\n")
        chunk = tls.recv(4096)
        if not chunk:
            return
        buffered += chunk


def _answer_h2(tls: ssl.SSLSocket, seen: dict[str, object]) -> None:
    """Answer every h2 request on the connection with the JSON of what the server saw."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    while data := tls.recv(65536):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                headers = {k.decode(): v.decode() for k, v in ev.headers}
                body = json.dumps({**seen, "host": headers.get(":authority"), "headers": headers}).encode()
                conn.send_headers(
                    ev.stream_id,
                    [
                        (":status", "200"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
                conn.send_data(ev.stream_id, body, end_stream=True)
        tls.sendall(conn.data_to_send())
