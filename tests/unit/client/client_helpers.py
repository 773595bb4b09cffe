"""Helpers for the client tests (imported by name: this directory is on sys.path under pytest)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from isthmus.echo.testing import wait_for


class FakeMeshApi:
    """Serves ``/api/status`` and ``/api/resolve`` as the control plane's HTTP API would."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {"proxies": [], "instances": []}
        self.resolve: dict[tuple[str, int], list[str]] = {}
        self.resolve_queries: list[dict[str, str]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/api/status":
                    self._json(200, api.status)
                elif parts.path == "/api/resolve":
                    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    api.resolve_queries.append(q)
                    self._json(200, {"addresses": api.resolve.get((q["host"], int(q["port"])), [])})
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, code: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def write_state(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "state.json").write_text(json.dumps({"api": self.url}))


# ------------------------------------------------------------------------------------------ Envoy
def envoy_binary() -> str | None:
    local = Path(sys.executable).parent / "envoy"
    return str(local) if local.exists() else shutil.which("envoy")


def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }


def envoy_bootstrap(
    admin_port: int, listen_port: int, http_port: int, other_port: int, tcp_port: int
) -> dict:
    """A static sidecar-like proxy: absolute-form HTTP routed by authority, CONNECT tunnels to TCP."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "outbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "outbound",
                                        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/"
                                                    "envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "other",
                                                    "domains": ["other.example", "other.example:*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "other"},
                                                        }
                                                    ],
                                                },
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"connect_matcher": {}},
                                                            "route": {
                                                                "cluster": "tcp_echo",
                                                                "upgrade_configs": [
                                                                    {
                                                                        "upgrade_type": "CONNECT",
                                                                        "connect_config": {},
                                                                    }
                                                                ],
                                                            },
                                                        },
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "http_echo"},
                                                        },
                                                    ],
                                                },
                                            ]
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                _cluster("http_echo", http_port),
                _cluster("other", other_port),
                _cluster("tcp_echo", tcp_port),
            ],
        },
    }


class EnvoyProxy:
    def __init__(self, bootstrap: dict, admin_port: int, listen_port: int) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.config = Path(self.dir.name) / "envoy.json"
        self.config.write_text(json.dumps(bootstrap))
        self.log = Path(self.dir.name) / "envoy.log"
        self.admin_port = admin_port
        self.url = f"http://127.0.0.1:{listen_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"envoy exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, binary: str) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "-c",
                    str(self.config),
                    "--use-dynamic-base-id",
                    "-l",
                    "warning",
                    "--drain-time-s",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 20, what="envoy to be ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.dir.cleanup()
