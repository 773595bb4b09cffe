"""VirtualService analyzers: destinations, subsets, gateways, conflicting hosts, and Isthmus' own checks.

istioctl's (``pkg/config/analysis/analyzers/virtualservice``):
- ``virtualservice.DestinationHostAnalyzer``: IST0101 for a destination or mirror host no service (visible
  after exportTo) has, IST0101 ``host:port`` for a port the service lacks, IST0112 when the port is
  omitted and the service has several.
- ``virtualservice.DestinationRuleAnalyzer``: IST0101 for a subset no DestinationRule defines.
- ``virtualservice.GatewayAnalyzer``: IST0101 for a missing gateway, IST0132 when none of the VirtualService
  hosts is among the gateway's hosts (for the VirtualService's namespace).
- ``virtualservice.ConflictingMeshGatewayHostsAnalyzer``: IST0109 for VirtualServices bound to the mesh
  gateway that claim the same host where both are visible (only the first one is used by sidecars).

Isthmus' own: ISM0001 (subset not defined by the DestinationRule that applies where the VirtualService is
used), ISM0002 (queryParams with a uri regex containing ``?``), ISM0004 (retries longer than the route
timeout), ISM0005 (routes to, or matches on, ports the service does not have).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context
from isthmus.analyze.messages import go_list, go_q
from isthmus.analyze.registry import analyzer
from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.durations import to_seconds
from isthmus.model.gateways import normalize_server_host
from isthmus.model.visibility import is_visible
from isthmus.registry.types import Service

MESH = "mesh"


@dataclass(frozen=True)
class Dest:
    """A destination of a VirtualService with where it sits."""

    kind: str  # "http" | "tcp" | "tls" | "mirror"
    rule: int
    index: int
    destination: Any
    path: str  # field path of destination.host

    @property
    def host(self) -> str:
        return self.destination.host

    @property
    def port(self) -> int | None:
        p = self.destination.port
        return int(p.number) if p is not None and p.number else None


def route_destinations(spec: Any) -> Iterator[Dest]:
    """Route destinations in istioctl's order: tcp, tls, then http."""
    for kind, rules in (("tcp", spec.tcp), ("tls", spec.tls), ("http", spec.http)):
        for i, rule in enumerate(rules or ()):
            for j, rd in enumerate(rule.route or ()):
                if rd.destination is not None:
                    yield Dest(kind, i, j, rd.destination, f"spec.{kind}[{i}].route[{j}].destination.host")


def mirror_destinations(spec: Any) -> Iterator[Dest]:
    for i, rule in enumerate(spec.http or ()):
        if rule.mirror is not None:
            yield Dest("mirror", i, 0, rule.mirror, f"spec.http[{i}].mirror.host")
        for j, mp in enumerate(rule.mirrors or ()):
            if mp.destination is not None:
                yield Dest("mirror", i, j, mp.destination, f"spec.http[{i}].mirrors[{j}].destination.host")


def rule_name(rule: Any, index: int) -> str:
    """istioctl's name of a rule: its quoted name, else ``#index``."""
    name = getattr(rule, "name", None)
    return go_q(name) if name else f"#{index}"


def bound_to_mesh(spec: Any) -> bool:
    return not spec.gateways or MESH in spec.gateways


# ==================================================================================================
# istioctl's analyzers


@analyzer(
    "virtualservice.DestinationHostAnalyzer",
    "Checks the destination hosts associated with each virtual service",
    ("IST0101", "IST0112"),
)
def destination_hosts(ctx: Context) -> None:
    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        export_to = list(spec.export_to or ())
        for mirror, dests in ((False, route_destinations(spec)), (True, mirror_destinations(spec))):
            for d in dests:
                svc = ctx.lookup_service(ns, export_to, d.host)
                if svc is None:
                    ctx.report(
                        m.ReferencedResourceNotFound,
                        cfg,
                        "mirror host" if mirror else "host",
                        go_q(d.host),
                        field=d.path,
                    )
                    continue
                ports = [p.port for p in svc.ports]
                if d.port is None:
                    if len(ports) > 1:
                        ctx.report(
                            m.VirtualServiceDestinationPortSelectorRequired,
                            cfg,
                            go_q(d.host),
                            go_list(ports),
                            field=d.path,
                        )
                elif d.port not in ports:
                    ctx.report(
                        m.ReferencedResourceNotFound,
                        cfg,
                        "host:port",
                        go_q(f"{d.host}:{d.port}"),
                        field=d.path,
                    )


@analyzer(
    "virtualservice.DestinationRuleAnalyzer",
    "Checks the destination rules associated with each virtual service",
    ("IST0101",),
)
def destination_subsets(ctx: Context) -> None:
    index = _subset_index(ctx)
    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        for mirror, dests in ((False, route_destinations(spec)), (True, mirror_destinations(spec))):
            for d in dests:
                subset = d.destination.subset
                if not subset:
                    continue
                fqdn = ctx.fqdn(d.host, ns)
                if index.defines(fqdn, subset):
                    continue
                ctx.report(
                    m.ReferencedResourceNotFound,
                    cfg,
                    "mirror+subset in destinationrule" if mirror else "host+subset in destinationrule",
                    go_q(f"{d.host}+{subset}"),
                    field=d.path,
                )


class _SubsetIndex:
    """Which DestinationRules define a subset for a host (exact hosts, then wildcard hosts)."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, str], list[Config]] = defaultdict(list)
        self.wildcard: list[tuple[str, str, Config]] = []

    def defines(self, fqdn: str, subset: str) -> bool:
        return bool(self.definers(fqdn, subset))

    def definers(self, fqdn: str, subset: str) -> list[Config]:
        out = list(self.exact.get((fqdn, subset), ()))
        for host, name, cfg in self.wildcard:
            if name == subset and h.subset_of(fqdn, host):
                out.append(cfg)
        return out


def _subset_index(ctx: Context) -> _SubsetIndex:
    def build() -> _SubsetIndex:
        index = _SubsetIndex()
        for cfg in ctx.configs("DestinationRule"):
            host = ctx.fqdn(cfg.spec.host, cfg.namespace)
            for s in cfg.spec.subsets or ():
                if h.is_wildcard(host):
                    index.wildcard.append((host, s.name, cfg))
                else:
                    index.exact[(host, s.name)].append(cfg)
        return index

    return ctx.snapshot.memo(("analyze", "subsets"), build)


def gateway_index(ctx: Context) -> dict[str, Config]:
    return ctx.snapshot.memo(
        ("analyze", "gateways"), lambda: {f"{c.namespace}/{c.name}": c for c in ctx.configs("Gateway")}
    )


def _gateway_hosts_for(gateway: Config | None, vs_namespace: str) -> list[str]:
    """istioctl's ``sanitizeServerHostNamespace`` + ``host.NamesForNamespace``: the server hosts a
    VirtualService of ``vs_namespace`` may bind to."""
    if gateway is None:
        return []
    out: list[str] = []
    for server in gateway.spec.servers or ():
        for entry in server.hosts or ():
            ns, _, name = normalize_server_host(entry, gateway.namespace).partition("/")
            if ns in ("*", vs_namespace):
                out.append(name)
    return out


@analyzer(
    "virtualservice.GatewayAnalyzer",
    "Checks the gateways associated with each virtual service",
    ("IST0101", "IST0132"),
)
def gateways(ctx: Context) -> None:
    index = gateway_index(ctx)
    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        for i, name in enumerate(spec.gateways or ()):
            if name == MESH:
                continue
            full = h.resolve_gateway_name(name, ns)
            gateway = index.get(full)
            if gateway is None:
                ctx.report(
                    m.ReferencedResourceNotFound, cfg, "gateway", go_q(name), field=f"spec.gateways[{i}]"
                )
            gateway_hosts = _gateway_hosts_for(gateway, ns)
            if not any(h.matches(gh, vh) for gh in gateway_hosts for vh in spec.hosts or ()):
                ctx.report(
                    m.VirtualServiceHostNotFoundInGateway,
                    cfg,
                    go_list(spec.hosts or ()),
                    f"{ns}/{cfg.name}",
                    full,
                    field=f"spec.gateways[{i}]",
                )
        # Match-level gateways bind rules too (the model reads them); a missing one is as broken.
        for kind in ("http", "tcp", "tls"):
            for i, rule in enumerate(getattr(spec, kind) or ()):
                for j, match in enumerate(rule.match or ()):
                    for k, name in enumerate(match.gateways or ()):
                        if name != MESH and h.resolve_gateway_name(name, ns) not in index:
                            ctx.report(
                                m.ReferencedResourceNotFound,
                                cfg,
                                "gateway",
                                go_q(name),
                                field=f"spec.{kind}[{i}].match[{j}].gateways[{k}]",
                            )


@analyzer(
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
    "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts",
    ("IST0109",),
)
def conflicting_mesh_hosts(ctx: Context) -> None:
    scoped: dict[tuple[str, str], list[Config]] = {}
    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        if not bound_to_mesh(spec):
            continue
        export_to = list(spec.export_to or ())
        if not export_to or "*" in export_to:
            scopes = ["*"]
        else:
            scopes = list(dict.fromkeys(ns if e == "." else e for e in export_to))
        for scope in scopes:
            for host in spec.hosts or ():
                scoped.setdefault((scope, ctx.fqdn(host, ns)), []).append(cfg)

    public_exact: dict[str, list[Config]] = {}
    public_wild: list[tuple[str, list[Config]]] = []
    for (scope, host), cfgs in scoped.items():
        if scope == "*":
            if h.is_wildcard(host):
                public_wild.append((host, cfgs))
            else:
                public_exact[host] = cfgs

    reported: set[tuple[str, str, str]] = set()
    for (scope, host), cfgs in scoped.items():
        group = list(cfgs)
        if scope != "*":
            # istioctl: VirtualServices exported everywhere also conflict in this namespace.
            if h.is_wildcard(host):
                group += [c for ph, cs in public_exact.items() if h.matches(host, ph) for c in cs]
            else:
                group += public_exact.get(host, [])
            group += [c for ph, cs in public_wild if h.matches(host, ph) for c in cs]
        if len(group) < 2:
            continue
        names = ",".join(f"{c.namespace}/{c.name}" for c in group)
        for c in group:
            if c.key in reported:
                continue
            reported.add(c.key)
            ctx.report(
                m.ConflictingMeshGatewayVirtualServiceHosts,
                c,
                names,
                f"{scope}/{host}",
                field="metadata.name",
            )


# ==================================================================================================
# Isthmus' own


def _service_for(ctx: Context, hostname: str, caller_ns: str) -> Service | None:
    """The service a caller in ``caller_ns`` reaches for ``hostname`` (its own namespace's first, then a
    Kubernetes Service, then the oldest), as the sidecar scope picks it."""
    candidates = [s for s in ctx.snapshot.registry.by_host.get(hostname, ()) if _visible(ctx, s, caller_ns)]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (s.namespace != caller_ns, not s.is_kubernetes, s.creation_order))


def _visible(ctx: Context, svc: Service, namespace: str) -> bool:
    return is_visible(svc.export_to or ctx.mesh.default_service_export_to, svc.namespace, namespace)


def _caller_namespaces(ctx: Context, cfg: Config) -> list[str]:
    """Namespaces whose proxies use this VirtualService: for the mesh gateway, the namespaces it is
    visible in that run sidecars (and its own); for gateways, the namespaces of the gateway pods."""
    spec, ns = cfg.spec, cfg.namespace
    out: set[str] = set()
    if bound_to_mesh(spec):
        export_to = frozenset(spec.export_to or ()) or ctx.mesh.default_virtual_service_export_to
        for cand in {ns, *(p.namespace for p in ctx.pods if p.sidecar)}:
            if is_visible(export_to, ns, cand):
                out.add(cand)
    gw_index = gateway_index(ctx)
    for name in spec.gateways or ():
        if name == MESH:
            continue
        gw = gw_index.get(h.resolve_gateway_name(name, ns))
        if gw is None:
            continue
        pods = ctx.pods_selected(gw.spec.selector or {})
        if pods:
            out.update(p.namespace for p in pods)
        else:
            out.add(gw.namespace)
    return sorted(out)


@analyzer(
    "isthmus.virtualservice.SubsetVisibilityAnalyzer",
    "Checks that the DestinationRule applying where a VirtualService is used defines its subsets",
    ("ISM0001",),
)
def subset_visibility(ctx: Context) -> None:
    index = _subset_index(ctx)
    rules: dict[tuple[str, str], Any] = {}

    def rule_for(caller: str, fqdn: str) -> tuple[bool, Any]:
        """(a service is reachable, the DestinationRule that applies) for a caller namespace."""
        key = (caller, fqdn)
        if key not in rules:
            svc = _service_for(ctx, fqdn, caller)
            dr = None
            if svc is not None:
                dr = ctx.snapshot.destination_rules.lookup(caller, {}, fqdn, svc.namespace)
            rules[key] = (svc is not None, dr)
        return rules[key]

    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        if not spec.hosts:
            continue  # delegates are used through their root
        callers: list[str] | None = None
        for d in [*route_destinations(spec), *mirror_destinations(spec)]:
            subset = d.destination.subset
            if not subset:
                continue
            fqdn = ctx.fqdn(d.host, ns)
            definers = index.definers(fqdn, subset)
            if not definers:
                continue  # IST0101 says it
            if callers is None:
                callers = _caller_namespaces(ctx, cfg)
            missing: dict[str, list[str]] = defaultdict(list)
            for caller in callers:
                reachable, dr = rule_for(caller, fqdn)
                if not reachable:
                    continue
                if dr is not None and dr.subset(subset) is not None:
                    continue
                applies = (
                    f"DestinationRule {dr.ref} applies there" if dr is not None else "none applies there"
                )
                missing[applies].append(caller)
            for applies, namespaces in missing.items():
                ctx.report(
                    m.DestinationRuleNotVisibleForSubset,
                    cfg,
                    go_q(subset),
                    d.host,
                    ", ".join(f"{c.namespace}/{c.name}" for c in definers),
                    ", ".join(namespaces),
                    applies,
                    field=d.path,
                )


_LITERAL_QUESTION_MARK = re.compile(r"\\\?|\[[^\]]*\?[^\]]*\]|\?[\w%.\-]+=")


@analyzer(
    "isthmus.virtualservice.QueryParamsRegexAnalyzer",
    "Checks for queryParams matches combined with a uri regex that expects a query string",
    ("ISM0002",),
)
def query_params_with_uri_regex(ctx: Context) -> None:
    for cfg in ctx.configs("VirtualService"):
        for i, rule in enumerate(cfg.spec.http or ()):
            for j, match in enumerate(rule.match or ()):
                regex = match.uri.regex if match.uri is not None else None
                if not match.query_params or not regex or "?" not in regex:
                    continue
                if not _LITERAL_QUESTION_MARK.search(regex):
                    continue
                ctx.report(
                    m.QueryParamsWithUriRegexQuestionMark,
                    cfg,
                    rule_name(rule, i),
                    go_q(match.name) if match.name else f"#{j}",
                    go_q(regex),
                    field=f"spec.http[{i}].match[{j}].uri.regex",
                )


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


@analyzer(
    "isthmus.virtualservice.RetryTimeoutAnalyzer",
    "Checks that retries fit in the route timeout",
    ("ISM0004",),
)
def retries_exceed_timeout(ctx: Context) -> None:
    default_retry = ctx.mesh.default_http_retry
    for cfg in ctx.configs("VirtualService"):
        for i, rule in enumerate(cfg.spec.http or ()):
            if rule.delegate is not None or not rule.timeout:
                continue
            timeout = to_seconds(rule.timeout)
            if timeout <= 0:
                continue
            retries = rule.retries if rule.retries is not None else default_retry
            if retries is None or not retries.per_try_timeout:
                continue
            attempts = int(retries.attempts or 0)
            per_try = to_seconds(retries.per_try_timeout)
            if attempts <= 0 or per_try <= 0 or attempts * per_try <= timeout:
                continue
            field = f"spec.http[{i}].retries" if rule.retries is not None else f"spec.http[{i}].timeout"
            ctx.report(
                m.RetriesExceedRouteTimeout,
                cfg,
                rule_name(rule, i),
                attempts,
                _fmt_seconds(per_try),
                _fmt_seconds(attempts * per_try),
                _fmt_seconds(timeout),
                max(1, math.ceil(timeout / per_try)),
                field=field,
            )


def _listener_ports(ctx: Context, cfg: Config) -> dict[str, set[int]]:
    """Ports this VirtualService's routes are served on: for the mesh gateway, the ports of the services
    its hosts name; for each gateway, the ports of the servers whose hosts it binds to."""
    spec, ns = cfg.spec, cfg.namespace
    out: dict[str, set[int]] = {}
    if bound_to_mesh(spec):
        ports: set[int] = set()
        for host in spec.hosts or ():
            for svc in ctx.services_matching(host, ns):
                ports.update(p.port for p in svc.ports)
        out[MESH] = ports
    gw_index = gateway_index(ctx)
    for name in spec.gateways or ():
        if name == MESH:
            continue
        full = h.resolve_gateway_name(name, ns)
        gw = gw_index.get(full)
        if gw is None:
            continue
        ports = set()
        for server in gw.spec.servers or ():
            names = _gateway_hosts_for_server(server, gw.namespace, ns)
            if any(h.matches(gh, vh) for gh in names for vh in spec.hosts or ()):
                ports.add(int(server.port.number))
        out[full] = ports
    return out


def _gateway_hosts_for_server(server: Any, gateway_ns: str, vs_ns: str) -> list[str]:
    out = []
    for entry in server.hosts or ():
        ns, _, name = normalize_server_host(entry, gateway_ns).partition("/")
        if ns in ("*", vs_ns):
            out.append(name)
    return out


@analyzer(
    "isthmus.virtualservice.DestinationPortAnalyzer",
    "Checks that routes reach ports their destination services define, and match ports that are served",
    ("ISM0005",),
)
def destination_ports(ctx: Context) -> None:
    for cfg in ctx.configs("VirtualService"):
        spec, ns = cfg.spec, cfg.namespace
        if not spec.hosts:
            continue
        listeners = _listener_ports(ctx, cfg)
        served = set().union(*listeners.values()) if listeners else set()
        export_to = list(spec.export_to or ())
        for kind in ("http", "tcp", "tls"):
            for i, rule in enumerate(getattr(spec, kind) or ()):
                match_ports: set[int] = set()
                for j, match in enumerate(rule.match or ()):
                    if not match.port:
                        continue
                    port = int(match.port)
                    match_ports.add(port)
                    if served and port not in served:
                        ctx.report(
                            m.RouteToUndefinedServicePort,
                            cfg,
                            f"{kind.upper()} rule {rule_name(rule, i)} matches port {port}, on which none of "
                            f"the VirtualService's hosts {go_list(spec.hosts)} is served (ports "
                            f"{go_list(sorted(served))}): the rule never applies",
                            field=f"spec.{kind}[{i}].match[{j}].port",
                        )
                ports = (served & match_ports) if match_ports else served
                for j, rd in enumerate(rule.route or ()):
                    dest = rd.destination
                    if dest is None or (dest.port is not None and dest.port.number):
                        continue
                    svc = ctx.lookup_service(ns, export_to, dest.host)
                    if svc is None or len(svc.ports) < 2:
                        continue  # IST0101, or the single port is used
                    dest_ports = {p.port for p in svc.ports}
                    bad = sorted(ports - dest_ports)
                    if not bad:
                        continue
                    ctx.report(
                        m.RouteToUndefinedServicePort,
                        cfg,
                        f"{kind.upper()} rule {rule_name(rule, i)} routes to {dest.host} without a port: "
                        f"traffic arriving on port(s) {go_list(bad)} goes to that port of {dest.host}, "
                        f"which only defines {go_list(sorted(dest_ports))}, and gets 503 NC; set "
                        "destination.port",
                        field=f"spec.{kind}[{i}].route[{j}].destination.host",
                    )
