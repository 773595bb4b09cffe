"""Configuration of the echo server: flags plus the environment Isthmus gives every app process.

Environment (DESIGN.md §3): ``ISTHMUS_PORTS`` (JSON map target port -> private app port), ``PORT``,
``POD_NAME``, ``POD_NAMESPACE``, ``POD_IP``, ``ISTHMUS_LABELS`` (JSON), ``ISTHMUS_WORKLOAD`` and
``HTTP_PROXY``/``http_proxy`` (used by ``--call``). ``ISTHMUS_LISTEN_HOST`` (default ``127.0.0.1``) is
the address the app ports are bound on: a pod without sidecar is reached on its pod address directly,
so its runner sets it to the pod IP.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from isthmus.echo.behaviour import BadParameter, parse_header_line

DEFAULT_PORT = 8080


@dataclass(frozen=True)
class PortBinding:
    """One listening port: ``target`` is the port clients address, ``app`` the one we bind."""

    target: int
    app: int


@dataclass
class EchoConfig:
    http_ports: list[PortBinding]
    tcp_ports: list[PortBinding] = field(default_factory=list)
    host: str = "127.0.0.1"
    workload: str | None = None
    instance: str = "echo"
    namespace: str | None = None
    ip: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tcp_prefix: str = "echo"
    fail_status: int | None = None
    fail_rate: float = 0.0
    fail_first: int = 0
    delay: float = 0.0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    call_timeout: float = 15.0
    verbose: bool = False
    graceful_timeout: float = 3.0

    @property
    def version(self) -> str | None:
        return self.labels.get("version")


def _parse_ports_env(text: str) -> dict[int, int]:
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return {int(k): int(v) for k, v in raw.items()}
    except (ValueError, TypeError) as e:
        raise BadParameter(f"ISTHMUS_PORTS is not a JSON map of port -> port: {text!r} ({e})") from e


def _parse_labels_env(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise BadParameter(f"ISTHMUS_LABELS is not JSON: {text!r}") from e
    if not isinstance(raw, dict):
        raise BadParameter(f"ISTHMUS_LABELS is not a JSON object: {text!r}")
    return {str(k): str(v) for k, v in raw.items()}


def build_config(
    *,
    port: int | None = None,
    host: str | None = None,
    tcp: Iterable[int] = (),
    tcp_prefix: str | None = None,
    fail_status: int | None = None,
    fail_rate: float | None = None,
    fail_first: int | None = None,
    delay: float = 0.0,
    response_headers: Iterable[str] = (),
    calls: Iterable[str] = (),
    call_timeout: float = 15.0,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> EchoConfig:
    """Build the configuration from flags and the environment (``os.environ`` by default).

    Ports: every target port of ``ISTHMUS_PORTS`` is served (HTTP, or TCP echo for the ``tcp`` ones),
    bound on its app port. Without ``ISTHMUS_PORTS``, HTTP is served on ``port`` (else ``$PORT``,
    else 8080, unless only ``tcp`` ports were asked for) and TCP ports are bound as given.
    """
    env = os.environ if env is None else env
    tcp_targets = list(dict.fromkeys(int(p) for p in tcp))
    ports_env = env.get("ISTHMUS_PORTS", "").strip()
    http_ports: list[PortBinding] = []
    tcp_ports: list[PortBinding] = []
    if ports_env:
        mapping = _parse_ports_env(ports_env)
        for t in tcp_targets:
            if t not in mapping:
                known = ", ".join(str(p) for p in mapping) or "none"
                raise BadParameter(f"--tcp {t}: not a target port of ISTHMUS_PORTS (known: {known})")
            tcp_ports.append(PortBinding(t, mapping[t]))
        http_ports = [PortBinding(t, a) for t, a in mapping.items() if t not in tcp_targets]
    else:
        explicit = port if port is not None else (int(env["PORT"]) if env.get("PORT") else None)
        if explicit is None and not tcp_targets:
            explicit = DEFAULT_PORT
        if explicit is not None and explicit not in tcp_targets:
            http_ports = [PortBinding(explicit, explicit)]
        tcp_ports = [PortBinding(t, t) for t in tcp_targets]
    if not http_ports and not tcp_ports:
        raise BadParameter("no port to serve")

    labels = _parse_labels_env(env.get("ISTHMUS_LABELS"))
    instance = env.get("POD_NAME") or socket.gethostname()
    workload = env.get("ISTHMUS_WORKLOAD") or labels.get("app")

    if fail_status is None and (fail_rate or fail_first):
        fail_status = 503
    if fail_status is not None and not 100 <= fail_status <= 599:
        raise BadParameter(f"--fail-status {fail_status} out of range 100..599")
    rate = fail_rate if fail_rate is not None else 0.0
    if not 0.0 <= rate <= 1.0:
        raise BadParameter(f"--fail-rate {rate} out of range 0..1")
    first = fail_first or 0
    if fail_status is not None and fail_rate is None and not first:
        rate = 1.0  # --fail-status alone: every request fails

    return EchoConfig(
        http_ports=http_ports,
        tcp_ports=tcp_ports,
        host=host or env.get("ISTHMUS_LISTEN_HOST") or "127.0.0.1",
        workload=workload,
        instance=instance,
        namespace=env.get("POD_NAMESPACE"),
        ip=env.get("POD_IP"),
        labels=labels,
        tcp_prefix=tcp_prefix if tcp_prefix is not None else (labels.get("version") or instance),
        fail_status=fail_status,
        fail_rate=rate,
        fail_first=first,
        delay=delay,
        response_headers=[parse_header_line(h) for h in response_headers],
        calls=list(calls),
        call_timeout=call_timeout,
        verbose=verbose,
    )
