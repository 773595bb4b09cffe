"""The snapshot: an immutable, indexed view of all config and the registry at one version.

Generators are pure functions of (snapshot, proxy). Per-scope results (sidecar scopes, DR lookups) are
memoized inside the snapshot, which is safe because it never changes after it is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from isthmus.config.store import Config
from isthmus.model.destination_rules import DestinationRuleIndex, MergedDestinationRule
from isthmus.model.gateways import GatewayServer, gateway_servers
from isthmus.model.ingress import INGRESS_KINDS, with_derived
from isthmus.model.jwks import JwksEntry, JwksKey
from isthmus.model.mesh import MeshSettings
from isthmus.model.proxy import Proxy
from isthmus.model.sidecar_scope import SidecarScope, build_scope, select_candidate, sidecar_candidates
from isthmus.model.virtual_services import MESH_GATEWAY, VirtualServiceEntry, VirtualServiceIndex
from isthmus.model.visibility import is_visible, normalize
from isthmus.registry.build import (
    UNIX_ADDRESS_PREFIX,
    Registry,
    build_registry,
    entry_target_port,
    update_registry,
)
from isthmus.registry.types import Pod, Protocol, Service, ServicePort, parse_protocol


@dataclass(frozen=True)
class InboundPort:
    port: int  # the target port the sidecar listens on, on the pod address
    protocol: Protocol  # for a Sidecar ingress port with `tls`, the protocol after TLS termination
    app_port: int  # where the app listens, on 127.0.0.1 (0 when `app_address` is a unix socket)
    services: tuple[tuple[Service, ServicePort], ...] = ()
    # Where the inbound cluster sends traffic: 127.0.0.1 (the app's private port), or `unix:///path`.
    app_address: str = "127.0.0.1"
    # Set for a port built from a Sidecar's `ingress` listener (istiod's sidecar inboundChainConfig).
    sidecar: Config | None = None
    tls: Any | None = None  # that listener's ServerTLSSettings

    @property
    def sidecar_host(self) -> str | None:
        """istiod's synthetic telemetry hostname for a Sidecar ingress chain: `<sidecar name>.<namespace>`."""
        return f"{self.sidecar.name}.{self.sidecar.namespace}" if self.sidecar is not None else None


# Ports an Isthmus sidecar already binds on its pod address (admin, outbound, health, Prometheus): a
# Sidecar ingress port on one of them is skipped, as istiod's CanBindToPort skips ports of static
# listeners (conflictWithReservedListener).
RESERVED_SIDECAR_PORTS = {15000: "admin", 15001: "outbound", 15021: "health", 15090: "Prometheus"}


def _services_on_port(
    pod: Pod, services: Iterable[Service], target: int
) -> tuple[tuple[Service, ServicePort], ...]:
    """The (service, port) pairs that send to this target port of the pod (named target ports resolved)."""
    matched: list[tuple[Service, ServicePort]] = []
    for svc in services:
        for sp in svc.ports:
            if not svc.is_kubernetes:
                resolved = entry_target_port(sp, pod.named_ports)
            elif sp.target_port_name is None:
                resolved = sp.target_port
            else:
                resolved = pod.named_ports.get(sp.target_port_name)
            if resolved == target:
                matched.append((svc, sp))
    # istiod's Proxy.SetServiceTargets order: oldest first, then by hostname for services created at
    # the same time (one apply here, the same second in Kubernetes), not by apply order. The first
    # decides the port's protocol; all are the inbound cluster's telemetry services, in this order.
    matched.sort(key=lambda m: (m[0].creation_order[:1], m[0].hostname))
    return tuple(matched)


def _after_tls_termination(protocol: Protocol) -> Protocol:
    """istiod's Instance.AfterTLSTermination: what a port carries once the sidecar terminated its TLS."""
    return {Protocol.HTTPS: Protocol.HTTP, Protocol.TLS: Protocol.TCP}.get(protocol, protocol)


def ingress_endpoint(ingress: Any, pod: Pod) -> tuple[str, int]:
    """Where a Sidecar ingress listener forwards: (address, app port). istiod's
    buildInboundClustersFromSidecar sends `127.0.0.1:P`/`[::1]:P` to localhost and `0.0.0.0:P`/`[::]:P`
    to the pod IP, port P; without a defaultEndpoint, to the original destination (the same port). An
    Isthmus app listens on 127.0.0.1 only, on the private port ISTHMUS_PORTS gives for each of its
    Workload's ports: every form names the app's port P as the pod sees it, so all map to 127.0.0.1 and
    ISTHMUS_PORTS[P]. Raises ValueError when the listener cannot be served: its port is one of the
    sidecar's own, or P is not a Workload port (the app has nothing there)."""
    number = int(ingress.port.number)
    if number in RESERVED_SIDECAR_PORTS:
        raise ValueError(f"port {number} is the sidecar's {RESERVED_SIDECAR_PORTS[number]} port")
    endpoint = ingress.default_endpoint or ""
    if endpoint.startswith(UNIX_ADDRESS_PREFIX):
        return endpoint, 0
    target = int(endpoint.rpartition(":")[2]) if endpoint else number
    app_port = pod.app_ports.get(target)
    if app_port is None and endpoint and target in pod.app_ports.values():
        # The app's actual private port, named literally: the app does listen there, on 127.0.0.1.
        app_port = target
    if app_port is None:
        declared = ", ".join(str(p) for p in sorted(pod.app_ports)) or "none"
        what = (
            f"defaultEndpoint {endpoint}"
            if endpoint
            else f"port {target} (no defaultEndpoint: the same port)"
        )
        raise ValueError(
            f"{what}: {target} is not a port of Workload {pod.namespace}/{pod.workload or pod.name} "
            f"(spec.ports: {declared}), so its app has no private port there; add {target} to the "
            "Workload's ports or point defaultEndpoint at one of them"
        )
    return "127.0.0.1", app_port


def _by_kind(configs: Iterable[Config]) -> dict[str, list[Config]]:
    """Configs by kind, each list in creation order (Istio's precedence among equals)."""
    by_kind: dict[str, list[Config]] = {}
    for cfg in sorted(configs, key=lambda c: c.creation_order):
        by_kind.setdefault(cfg.kind, []).append(cfg)
    return by_kind


# Config kinds the registry or the mesh settings are built from: a change to one needs a full build.
REGISTRY_KINDS = frozenset({"Service", "ServiceEntry", "WorkloadEntry", "MeshConfig"})


@dataclass
class Snapshot:
    version: str
    mesh: MeshSettings
    registry: Registry
    configs: dict[str, list[Config]]
    virtual_services: VirtualServiceIndex
    destination_rules: DestinationRuleIndex
    namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    # Resources left out of generated config because building them failed: what -> error.
    generation_errors: dict[str, str] = field(default_factory=dict, repr=False)
    # The key sets the control plane's JWKS resolver had when this snapshot was built (model.jwks):
    # (issuer, jwksUri) -> fetched keys or why there are none. Set by the control plane.
    jwks: Mapping[JwksKey, JwksEntry] = field(default_factory=dict, repr=False, compare=False)
    # The snapshot this one differs from by VirtualServices only (set by the control plane): clusters
    # and endpoints of a scope that imports the same services can be taken from it.
    routes_changed_from: Snapshot | None = field(default=None, repr=False, compare=False)
    # The snapshot this one differs from by the endpoints of these clusters only (set by the control
    # plane): a scope's other endpoint assignments are taken from it.
    endpoints_changed_from: tuple[Snapshot, frozenset[str]] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def build(cls, version: str | int, configs: Iterable[Config], pods: Iterable[Pod]) -> Snapshot:
        by_kind = _by_kind(configs)
        mesh_cfgs = by_kind.get("MeshConfig", [])
        mesh = MeshSettings.from_spec(mesh_cfgs[0].spec if mesh_cfgs else None)
        # Kubernetes Ingresses of Istio's class as the Gateways and VirtualServices istiod derives.
        by_kind = with_derived(by_kind, mesh)
        registry = build_registry(
            [c for k in ("Service", "ServiceEntry", "WorkloadEntry") for c in by_kind.get(k, [])],
            pods,
            domain=mesh.domain_suffix,
        )
        return cls(
            version=str(version),
            mesh=mesh,
            registry=registry,
            configs=by_kind,
            virtual_services=VirtualServiceIndex.build(
                by_kind.get("VirtualService", []), mesh.default_virtual_service_export_to, mesh.domain_suffix
            ),
            destination_rules=DestinationRuleIndex.build(
                by_kind.get("DestinationRule", []),
                mesh.default_destination_rule_export_to,
                mesh.root_namespace,
                mesh.domain_suffix,
            ),
            namespaces={c.name: dict(c.metadata.labels or {}) for c in by_kind.get("Namespace", [])},
        )

    @classmethod
    def build_configs_changed(
        cls, previous: Snapshot, version: str | int, configs: Iterable[Config], kinds: frozenset[str]
    ) -> Snapshot | None:
        """`build` after changes to configs of `kinds` only (pods unchanged), reusing what those kinds do
        not feed: the registry (a VirtualService edit need not rebuild 1,000 services' endpoints) and the
        indexes of unchanged kinds. None when a kind feeds the registry or the mesh settings."""
        if kinds & REGISTRY_KINDS:
            return None
        mesh = previous.mesh
        by_kind = with_derived(_by_kind(configs), mesh)
        if kinds & INGRESS_KINDS:
            kinds = kinds | {"VirtualService", "Gateway"}
        return cls(
            version=str(version),
            mesh=mesh,
            registry=previous.registry,
            configs=by_kind,
            virtual_services=VirtualServiceIndex.build(
                by_kind.get("VirtualService", []), mesh.default_virtual_service_export_to, mesh.domain_suffix
            )
            if "VirtualService" in kinds
            else previous.virtual_services,
            destination_rules=DestinationRuleIndex.build(
                by_kind.get("DestinationRule", []),
                mesh.default_destination_rule_export_to,
                mesh.root_namespace,
                mesh.domain_suffix,
            )
            if "DestinationRule" in kinds
            else previous.destination_rules,
            namespaces={c.name: dict(c.metadata.labels or {}) for c in by_kind.get("Namespace", [])}
            if "Namespace" in kinds
            else previous.namespaces,
            jwks=previous.jwks,
        )

    @classmethod
    def build_pods_changed(
        cls, previous: Snapshot, version: str | int, pods: Iterable[Pod]
    ) -> Snapshot | None:
        """`build` of `previous`'s config with these pods, reusing what pods do not feed; None if it can't.

        The config indexes are taken over as they are (they depend on config alone); the registry is
        updated for the pods that changed. The caller must know that config did not change since
        `previous` was built; memos are not taken over (the control plane decides which stay valid).
        """
        registry = update_registry(previous.registry, pods)
        if registry is None:
            return None
        return cls(
            version=str(version),
            mesh=previous.mesh,
            registry=registry,
            configs=previous.configs,
            virtual_services=previous.virtual_services,
            destination_rules=previous.destination_rules,
            namespaces=previous.namespaces,
            jwks=previous.jwks,
        )

    # --- memo helper -------------------------------------------------------------------------
    def memo(self, key: Any, compute: Any) -> Any:
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    # --- services ----------------------------------------------------------------------------
    def visible_services(self, namespace: str) -> list[Service]:
        def compute() -> list[Service]:
            default = self.mesh.default_service_export_to
            return [
                s
                for s in self.registry.services
                if is_visible(normalize(s.export_to, default), s.namespace, namespace)
            ]

        return self.memo(("visible_services", namespace), compute)

    def routable_services(self, namespace: str) -> list[Service]:
        """The visible services that have config of their own: not ExternalName aliases, which are more
        names of the service they name (`Service.aliases`)."""
        return self.memo(
            ("routable_services", namespace),
            lambda: [s for s in self.visible_services(namespace) if s.alias_of is None],
        )

    def sidecar_resource(self, proxy: Proxy) -> Config | None:
        """select_sidecar, with the per-namespace part once per snapshot (asked on every generate)."""
        if proxy.kind != "sidecar":
            return None
        candidates = self.memo(
            ("sidecar_candidates", proxy.namespace),
            lambda: sidecar_candidates(
                self.configs.get("Sidecar", []), proxy.namespace, self.mesh.root_namespace
            ),
        )
        return select_candidate(candidates, proxy.labels)

    def scope(self, proxy: Proxy) -> SidecarScope:
        sidecar = self.sidecar_resource(proxy)
        key = ("scope", proxy.namespace, sidecar.key if sidecar is not None else None)
        return self.memo(
            key,
            lambda: build_scope(
                proxy.namespace,
                sidecar,
                self.routable_services(proxy.namespace),
                self.virtual_services.for_namespace(proxy.namespace, MESH_GATEWAY),
                self.mesh.outbound_policy,
                self.mesh.default_service_export_to,
            ),
        )

    def destination_rule(self, proxy: Proxy, service: Service) -> MergedDestinationRule | None:
        return self.destination_rules.lookup(
            proxy.namespace, proxy.labels, service.hostname, service.namespace
        )

    def virtual_services_for_gateway(self, namespace: str, gateway_name: str) -> list[VirtualServiceEntry]:
        return self.memo(
            ("vs_gw", namespace, gateway_name),
            lambda: self.virtual_services.for_namespace(namespace, gateway_name),
        )

    # --- proxies -----------------------------------------------------------------------------
    def pod(self, proxy: Proxy) -> Pod | None:
        return self.registry.pods.get((proxy.namespace, proxy.instance))

    def inbound_ports(self, proxy: Proxy) -> list[InboundPort]:
        """The target ports a sidecar serves: the workload's ports, with protocols from the Services."""
        pod = self.pod(proxy)
        if pod is None:
            return []
        sidecar = self.sidecar_resource(proxy)
        if sidecar is not None and sidecar.spec.ingress:
            # istiod's buildInboundChainConfigs: a Sidecar with ingress listeners replaces the service
            # ports (PILOT_ALLOW_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE off, its default).
            return self.memo(
                ("ingress_ports", proxy.ip, pod.namespace, pod.name, sidecar.key),
                lambda: self._ingress_ports(proxy, pod, sidecar),
            )
        services = self.registry.services_selecting(pod)
        out = []
        for target, app_port in sorted(pod.app_ports.items()):
            matched = _services_on_port(pod, services, target)
            protocol = matched[0][1].protocol if matched else Protocol.AUTO
            out.append(InboundPort(port=target, protocol=protocol, app_port=app_port, services=matched))
        return out

    def _ingress_ports(self, proxy: Proxy, pod: Pod, sidecar: Config) -> list[InboundPort]:
        """One inbound port per Sidecar ingress listener, sorted by port (istiod's stable chain order).
        A listener that cannot be served is left out and reported, as generators report failures."""
        services = self.registry.services_selecting(pod)
        by_port: dict[int, InboundPort] = {}
        for i, ingress in enumerate(sidecar.spec.ingress):
            number = int(ingress.port.number)
            where = f"Sidecar {sidecar.namespace}/{sidecar.name} spec.ingress[{i}]"
            if number in by_port:
                continue  # validation refuses duplicates; istiod keeps the first (reportInboundConflict)
            try:
                address, app_port = ingress_endpoint(ingress, pod)
            except ValueError as exc:
                self._ingress_error(proxy, number, f"{where}: {exc}")
                continue
            protocol = parse_protocol(ingress.port.protocol)
            if ingress.tls is not None:
                protocol = _after_tls_termination(protocol)
            by_port[number] = InboundPort(
                port=number,
                protocol=protocol,
                app_port=app_port,
                services=_services_on_port(pod, services, number),
                app_address=address,
                sidecar=sidecar,
                tls=ingress.tls,
            )
        return [by_port[n] for n in sorted(by_port)]

    def _ingress_error(self, proxy: Proxy, port: int, message: str) -> None:
        # Named like the listener generators would report it, so it stays reported across
        # VirtualService-only snapshots (generator._listeners carries `listener <ip>_` errors over).
        self.generation_errors.setdefault(f"listener {proxy.ip}_{port}", message)

    def gateway_servers(self, proxy: Proxy) -> list[GatewayServer]:
        pod = self.pod(proxy)
        selecting = self.registry.services_selecting(pod) if pod is not None else []
        return gateway_servers(self.configs.get("Gateway", []), proxy.labels, selecting)

    def gateway(self, name: str) -> Config | None:
        ns, _, gw = name.partition("/")
        for c in self.configs.get("Gateway", []):
            if c.namespace == ns and c.name == gw:
                return c
        return None
