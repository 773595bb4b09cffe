"""Helpers to run echo servers from tests: ``EchoProcess`` starts ``python -m isthmus.echo`` with the
environment Isthmus gives an app, waits until every port answers, and stops it (SIGTERM, then SIGKILL).

    with EchoProcess(ports={9080: free_port()}, labels={"app": "reviews", "version": "v2"}) as echo:
        sync.request(echo.url(9080, "/hello"))
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll ``predicate()`` until true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _http_healthy(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"GET /.echo/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EchoProcess:
    """An ``isthmus echo`` process.

    ``ports``: target port -> app port (becomes ``ISTHMUS_PORTS``); ``tcp``: target ports served as
    TCP echo; ``args``: extra CLI flags; ``env``: extra environment (``POD_NAME`` etc. default from
    ``instance``/``namespace``/``labels``/``workload``).
    """

    def __init__(
        self,
        ports: Mapping[int, int] | None = None,
        *,
        args: Sequence[str] = (),
        tcp: Sequence[int] = (),
        instance: str = "echo-0",
        namespace: str = "default",
        workload: str | None = None,
        labels: Mapping[str, str] | None = None,
        ip: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.ports = dict(ports) if ports else {8080: free_port()}
        self.tcp = list(tcp)
        self.host = host
        self.args = [*args, *(a for t in self.tcp for a in ("--tcp", str(t)))]
        base = {
            k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")
        }
        base.update(
            {
                "ISTHMUS_PORTS": json.dumps({str(k): v for k, v in self.ports.items()}),
                "POD_NAME": instance,
                "POD_NAMESPACE": namespace,
                "POD_IP": ip,
                "ISTHMUS_LABELS": json.dumps(dict(labels or {})),
                "ISTHMUS_LISTEN_HOST": host,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if workload:
            base["ISTHMUS_WORKLOAD"] = workload
        base.update(env or {})
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process

    def url(self, target_port: int | None = None, path: str = "/") -> str:
        port = self.app_port(target_port)
        return f"http://{self.host}:{port}{path}"

    def app_port(self, target_port: int | None = None) -> int:
        if target_port is None:
            target_port = next(t for t in self.ports if t not in self.tcp)
        return self.ports[target_port]

    @property
    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def start(self, timeout: float = 15.0) -> EchoProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isthmus.echo", *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"echo exited with {self.proc.returncode}: {self.stderr}")
            return all(
                _tcp_open(self.host, app) if target in self.tcp else _http_healthy(self.host, app)
                for target, app in self.ports.items()
            )

        try:
            wait_for(ready, timeout, what="the echo server to listen")
        except BaseException:
            self.stop()
            raise
        return self

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> EchoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()
