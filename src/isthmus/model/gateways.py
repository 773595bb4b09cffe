"""Gateway servers that apply to a gateway proxy, with their listen ports resolved (`pilot/pkg/model/gateway.go`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.config.store import Config
from isthmus.registry.build import labels_match
from isthmus.registry.types import Protocol, Service, parse_protocol

# istiod's DisableGatewayPortTranslationLabel (Knative's local gateway): a Service with this label never
# maps a Gateway server port to its targetPort, so a server port is translated only by the others.
DISABLE_PORT_TRANSLATION_LABEL = "experimental.istio.io/disable-gateway-port-translation"


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
        return (tls.mode or "PASSTHROUGH") if tls is not None else None

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

    @property
    def is_tls_server(self) -> bool:
        """istiod's IsTLSServer: a non-HTTP server with TLS settings (terminated or passthrough)."""
        return self.server.tls is not None and not self.protocol.is_http


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
    """The servers of the Gateways whose selector matches the proxy, oldest Gateway first, that survive
    merging (`merge_servers`)."""
    out = []
    for gw in gateways:
        selector = gw.spec.selector or {}
        if not labels_match(selector, proxy_labels):
            continue
        for i, server in enumerate(gw.spec.servers or ()):
            number = int(server.port.number)
            listen = number
            for svc in selecting_services:
                if DISABLE_PORT_TRANSLATION_LABEL in svc.labels:
                    continue  # istiod's resolvePorts: this Service opted out of port translation
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
    return merge_servers(out)


def _can_merge(new: Protocol, current: Protocol) -> bool:
    """istiod's canMergeProtocols: only HTTP servers join a port first taken by an HTTP server."""
    return (new.is_http or new is current) and current.is_http


def _https_route(s: GatewayServer) -> tuple[int, str, str, str] | None:
    """What names a terminated HTTPS server's RDS (`https.<port>.<portName>.<gw>.<ns>[.<bind>]`)."""
    if s.serves_http and not s.protocol.is_http:
        return (s.port, s.port_name, s.gateway_name, s.bind or "")
    return None


def merge_servers(servers: Sequence[GatewayServer]) -> list[GatewayServer]:
    """istiod's mergeGateways: drop the servers Envoy could not tell apart on their listen port.

    In order: a TLS server whose host another TLS server on the same port and bind already has; a
    server on a port first taken by a plain-text server with the same bind, unless both are HTTP; a
    terminated HTTPS server repeating an RDS name; a second plain-text server on a port first taken
    by a TLS server with the same bind (istiod records the TLS server's bind only from the second
    server on, so the first plain-text one is still accepted: kept as istiod has it).
    """
    out = []
    first_plaintext: dict[int, GatewayServer] = {}
    seen_ports: set[int] = set()
    tls_hosts: dict[int, dict[str, str]] = {}  # port -> host -> bind
    tls_binds: dict[int, set[str]] = {}
    https_routes: set[tuple[int, str, str, str]] = set()
    for s in servers:
        port, bind = s.listen_port, s.bind or ""
        if s.server.tls is not None:
            known = tls_hosts.setdefault(port, {})
            if any(known.get(host) == bind for host in s.hosts):
                continue
            known.update(dict.fromkeys(s.hosts, bind))
        if port not in seen_ports:
            seen_ports.add(port)
            if not s.is_tls_server:
                first_plaintext[port] = s
        elif (current := first_plaintext.get(port)) is not None:
            if (current.bind or "") == bind and not _can_merge(s.protocol, current.protocol):
                continue
        else:
            if _https_route(s) in https_routes:
                continue
            binds = tls_binds.setdefault(port, set())
            new_bind = bind not in binds
            binds.add(bind)
            if s.server.tls is None and not new_bind:
                continue
        if (route := _https_route(s)) is not None:
            https_routes.add(route)
        out.append(s)
    return out


def hosts_for_namespace(server_hosts: Sequence[str], namespace: str) -> list[str]:
    """Istio's NamesForNamespace: server hosts a VirtualService of `namespace` may bind to."""
    out = []
    for entry in server_hosts:
        ns, _, name = entry.partition("/")
        if ns in ("*", namespace):
            out.append(name)
    return out
