"""Gateway analyzers (istioctl's ``pkg/config/analysis/analyzers/gateway``).

- ``gateway.IngressGatewayPortAnalyzer``: IST0101 when the selector matches no workload; IST0162 for a
  server port that no Service selecting the gateway workload exposes. Isthmus serves a server port on the
  target port of a Service port of that number (80 -> 8080), else on the port itself: the port is
  reachable through a Service when it is a Service port or a target port.
- ``gateway.SecretAnalyzer``: IST0101 for a ``credentialName`` with no Secret in the gateway workload's
  namespace, IST0161 when the Secret does not hold a usable certificate (keys ``tls.crt``/``tls.key`` or
  ``cert``/``key``, PEM that parses, not expired).
- ``gateway.ConflictingGatewayAnalyzer``: IST0145 for servers of different Gateways on the same workload
  (selectors that are equal, nested, or select a common pod), the same port and overlapping hosts.
- ``gateway.CertificateAnalyzer``: IST0138 when a Gateway shares a server certificate (same
  ``credentialName``, or same ``serverCertificate`` and ``privateKey`` files) with another Gateway whose
  selector contains its own: clients reusing an HTTP/2 connection for the other host get 404s.
"""

from __future__ import annotations

import datetime
from typing import Any

from isthmus.analyze import messages as m
from isthmus.analyze.context import Context, selector_string, selects
from isthmus.analyze.destinationrules import credential_secret_name
from isthmus.analyze.messages import go_list, go_q
from isthmus.analyze.registry import analyzer
from isthmus.api.paths import join
from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.registry.types import Pod


def _selector_field(cfg: Config) -> str:
    selector = cfg.spec.selector or {}
    return join("spec.selector", sorted(selector)[0]) if selector else "spec.selector"


def gateway_pods(ctx: Context, cfg: Config) -> list[Pod]:
    return ctx.snapshot.memo(
        ("analyze", "gateway-pods", cfg.key), lambda: ctx.pods_selected(cfg.spec.selector or {})
    )


def _selecting_services(ctx: Context, pod: Pod) -> list[Any]:
    """Kubernetes Services of the pod's namespace whose (non-empty) selector matches it."""
    in_namespace = ctx.snapshot.memo(
        ("analyze", "services-in", pod.namespace),
        lambda: [svc for svc in ctx.configs("Service") if svc.namespace == pod.namespace],
    )
    return [svc for svc in in_namespace if svc.spec.selector and selects(svc.spec.selector, pod.labels)]


def _reachable_ports(ctx: Context, pods: list[Pod]) -> set[int]:
    ports: set[int] = set()
    for pod in pods:
        for svc in _selecting_services(ctx, pod):
            for p in svc.spec.ports or ():
                if (p.protocol or "TCP") != "TCP":
                    continue
                ports.add(int(p.port))
                target = p.target_port
                if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
                    ports.add(int(target))
                elif isinstance(target, str):
                    resolved = pod.named_ports.get(target)
                    if resolved:
                        ports.add(int(resolved))
    return ports


@analyzer(
    "gateway.IngressGatewayPortAnalyzer",
    "Checks a gateway's ports against the gateway's Kubernetes service ports",
    ("IST0101", "IST0162"),
)
def ingress_gateway_ports(ctx: Context) -> None:
    for cfg in ctx.configs("Gateway"):
        selector = cfg.spec.selector or {}
        pods = gateway_pods(ctx, cfg)
        if not pods:
            ctx.report(
                m.ReferencedResourceNotFound,
                cfg,
                "selector",
                go_q(selector_string(selector)),
                field=_selector_field(cfg),
            )
            continue
        ports = _reachable_ports(ctx, pods)
        for i, server in enumerate(cfg.spec.servers or ()):
            number = int(server.port.number)
            if number not in ports:
                ctx.report(
                    m.GatewayPortNotDefinedOnService,
                    cfg,
                    number,
                    selector_string(selector),
                    field=f"spec.servers[{i}].port.number",
                )


def _secret(ctx: Context, namespace: str, name: str) -> Config | None:
    index = ctx.snapshot.memo(
        ("analyze", "secret-objects"), lambda: {(c.namespace, c.name): c for c in ctx.configs("Secret")}
    )
    return index.get((namespace, name))


def credential_problem(secret: Config) -> str | None:
    """Why a Secret cannot serve as a gateway credential (istio ``kube.ExtractCertInfo`` and
    ``xds.ValidateCertificate``), or None."""
    try:
        data = secret.spec.decoded()
    except Exception as exc:
        return f"data is not base64: {exc}"
    if data.get("cert") and data.get("key"):
        cert = data["cert"]
    elif data.get("tls.crt") and data.get("tls.key"):
        cert = data["tls.crt"]
    else:
        return "found secret, but didn't have expected keys (cert and key) or (tls.crt and tls.key)"
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        return f"failed to parse certificate: {exc}"
    now = datetime.datetime.now(datetime.UTC)
    for c in certs:
        if c.not_valid_after_utc < now:
            return f"certificate expired at {c.not_valid_after_utc.isoformat()}"
        if c.not_valid_before_utc > now:
            return f"certificate not valid before {c.not_valid_before_utc.isoformat()}"
    return None


@analyzer(
    "gateway.SecretAnalyzer",
    "Checks a gateway's referenced secrets for correctness",
    ("IST0101", "IST0161"),
)
def gateway_secrets(ctx: Context) -> None:
    for cfg in ctx.configs("Gateway"):
        pods = gateway_pods(ctx, cfg)
        if not pods:
            continue  # gateway.IngressGatewayPortAnalyzer reports the selector
        gw_ns = pods[0].namespace
        for i, server in enumerate(cfg.spec.servers or ()):
            tls = server.tls
            if tls is None:
                continue
            names = (
                [(tls.credential_name, f"spec.servers[{i}].tls.credentialName")]
                if tls.credential_name
                else []
            )
            names += [
                (n, f"spec.servers[{i}].tls.credentialNames[{j}]")
                for j, n in enumerate(tls.credential_names or ())
            ]
            for credential, path in names:
                name = credential_secret_name(credential)
                if name is None:
                    continue
                secret = _secret(ctx, gw_ns, name)
                if secret is None:
                    ctx.report(
                        m.ReferencedResourceNotFound, cfg, "credentialName", go_q(credential), field=path
                    )
                elif credential_problem(secret) is not None:
                    ctx.report(m.InvalidGatewayCredential, cfg, cfg.name, gw_ns, field=path)


def _bare(host: str) -> str:
    return host.partition("/")[2] if "/" in host else host


def _pods_of(ctx: Context, cfg: Config) -> set[tuple[str, str]]:
    return {(p.namespace, p.name) for p in gateway_pods(ctx, cfg)}


@analyzer(
    "gateway.ConflictingGatewayAnalyzer",
    "Checks a gateway's selector, port number and hosts",
    ("IST0145",),
)
def conflicting_gateways(ctx: Context) -> None:
    gws = ctx.configs("Gateway")
    names = [f"{c.namespace}/{c.name}" for c in gws]
    selectors = [dict(c.spec.selector or {}) for c in gws]
    # port -> [(gateway index, hosts)]
    by_port: dict[int, list[tuple[int, list[str]]]] = {}
    for gi, cfg in enumerate(gws):
        for server in cfg.spec.servers or ():
            by_port.setdefault(int(server.port.number), []).append(
                (gi, [_bare(x) for x in server.hosts or ()])
            )
    pods: dict[int, set[tuple[str, str]]] = {}
    overlap: dict[tuple[int, int], bool] = {}

    def same_workload(a: int, b: int) -> bool:
        """Selectors that are equal or nested, or that select a common pod."""
        key = (min(a, b), max(a, b))
        if key not in overlap:
            sa, sb = selectors[a], selectors[b]
            if selects(sa, sb) or selects(sb, sa):
                overlap[key] = True
            else:
                for i in key:
                    if i not in pods:
                        pods[i] = _pods_of(ctx, gws[i])
                overlap[key] = bool(pods[a] & pods[b])
        return overlap[key]

    for gi, cfg in enumerate(gws):
        for i, server in enumerate(cfg.spec.servers or ()):
            port = int(server.port.number)
            hosts = [_bare(x) for x in server.hosts or ()]
            conflicting: list[str] = []
            for gj, other_hosts in by_port.get(port, ()):
                if gj == gi or names[gj] in conflicting:
                    continue
                if not any(h.matches(a, b) for a in hosts for b in other_hosts):
                    continue
                if same_workload(gi, gj):
                    conflicting.append(names[gj])
            if conflicting:
                ctx.report(
                    m.ConflictingGateways,
                    cfg,
                    ",".join(conflicting),
                    selector_string(selectors[gi]),
                    str(port),
                    ",".join(server.hosts or ()),
                    field=f"spec.servers[{i}]",
                )


def _same_certificate(a: Any, b: Any) -> bool:
    """istioctl's ``haveSameCertificate``: equal credential names, or (neither has one) equal certificate
    and key files."""
    if a.credential_name and b.credential_name:
        return a.credential_name == b.credential_name
    if a.credential_name or b.credential_name:
        return False
    return bool(
        a.server_certificate
        and a.server_certificate == b.server_certificate
        and a.private_key
        and a.private_key == b.private_key
    )


@analyzer(
    "gateway.CertificateAnalyzer",
    "Checks a gateway certificate",
    ("IST0138",),
)
def duplicate_certificates(ctx: Context) -> None:
    # istioctl compares across namespaces unless PILOT_SCOPE_GATEWAY_TO_NAMESPACE is set, which Isthmus
    # does not have.
    gws = ctx.configs("Gateway")
    for cfg in gws:
        selector = dict(cfg.spec.selector or {})
        for other in gws:
            # Only gateways whose selector contains this one's (every gateway when this one has none).
            if other is cfg or not selects(selector, dict(other.spec.selector or {})):
                continue
            for server in cfg.spec.servers or ():
                for other_server in other.spec.servers or ():
                    if server.tls is None or other_server.tls is None:
                        continue
                    if _same_certificate(server.tls, other_server.tls):
                        ctx.report(
                            m.GatewayDuplicateCertificate,
                            cfg,
                            go_list([f"{cfg.namespace}/{cfg.name}", f"{other.namespace}/{other.name}"]),
                            field="metadata.name",
                        )
