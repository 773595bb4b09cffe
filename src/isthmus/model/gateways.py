"""Gateway servers that apply to a gateway proxy, with their listen ports resolved (`pilot/pkg/model/gateway.go`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.config.store import Config
from isthmus.registry.build import labels_match
from isthmus.registry.types import Protocol, Service, parse_protocol


@dataclass(frozen=True)
class GatewayServer:
    gateway: Config
    index: int
    server: Any
    port: int  # the server port as declared
    listen_port: int  # after mapping through a Service selecting the gateway (80 -> targetPort 8080)
    port_name: str
    protocol: Protocol
    hosts: tuple[str, ...]  # "ns/host", with "." resolved to the gateway namespace and no-ns as "*/host"
    bind: str | None

    @property
    def gateway_name(self) -> str:
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def tls_mode(self) -> str | None:
        tls = self.server.tls
        return (tls.mode or "SIMPLE") if tls is not None else None

    @property
    def https_redirect(self) -> bool:
        tls = self.server.tls
        return bool(tls is not None and tls.https_redirect)

    @property
    def terminates_tls(self) -> bool:
        return self.protocol in (Protocol.HTTPS, Protocol.TLS) and self.tls_mode not in (
            None,
            "PASSTHROUGH",
            "AUTO_PASSTHROUGH",
        )

    @property
    def serves_http(self) -> bool:
        """An HCM serves it: plain HTTP(S) servers, or HTTPS terminated here."""
        if self.protocol.is_http:
            return True
        return self.protocol is Protocol.HTTPS and self.terminates_tls


def normalize_server_host(host: str, gateway_ns: str) -> str:
    if "/" not in host:
        return f"*/{host}"
    ns, _, name = host.partition("/")
    if ns == ".":
        ns = gateway_ns
    return f"{ns}/{name}"


def gateway_servers(
    gateways: Sequence[Config], proxy_labels: Mapping[str, str], selecting_services: Sequence[Service]
) -> list[GatewayServer]:
    """Every server of every Gateway whose selector matches the proxy, oldest Gateway first."""
    out = []
    for gw in gateways:
        selector = gw.spec.selector or {}
        if not labels_match(selector, proxy_labels):
            continue
        for i, server in enumerate(gw.spec.servers or ()):
            number = int(server.port.number)
            listen = number
            for svc in selecting_services:
                sp = svc.port(number)
                if sp is not None and sp.target_port:
                    listen = sp.target_port
                    break
            out.append(
                GatewayServer(
                    gateway=gw,
                    index=i,
                    server=server,
                    port=number,
                    listen_port=listen,
                    port_name=server.port.name or "",
                    protocol=parse_protocol(server.port.protocol),
                    hosts=tuple(normalize_server_host(x, gw.namespace) for x in server.hosts or ()),
                    bind=server.bind or None,
                )
            )
    return out


def hosts_for_namespace(server_hosts: Sequence[str], namespace: str) -> list[str]:
    """Istio's NamesForNamespace: server hosts a VirtualService of `namespace` may bind to."""
    out = []
    for entry in server_hosts:
        ns, _, name = entry.partition("/")
        if ns in ("*", namespace):
            out.append(name)
    return out
