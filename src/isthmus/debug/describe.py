"""`isthmus describe pod|workload|service`: istioctl's `x describe`, on the control plane's model.

Everything comes from the same snapshot the generators use, so "what applies" here is what is pushed:
the pod's ports and the Services selecting it; per service its DestinationRule (subsets, and which of
them this pod is in), the effective traffic policy per port with Istio's defaults spelled out
(LEAST_REQUEST, unlimited circuit breakers, no outlier detection, auto mTLS), the VirtualServices bound
to the mesh for its host (rule by rule: matches, ports, destinations, and whether they reach this pod),
the route defaults (no timeout; Istio's retry policy) and the gateways exposing it; for the pod its
PeerAuthentication mode per port, AuthorizationPolicies, RequestAuthentications and Sidecar resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isthmus.model import authn
from isthmus.model import hosts as h
from isthmus.model.destination_rules import MergedDestinationRule, effective_policy
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.model.virtual_services import MESH_GATEWAY, VirtualServiceEntry
from isthmus.registry.build import labels_match
from isthmus.registry.types import Pod, Protocol, Service, ServicePort
from isthmus.xds.gen import naming

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
MAX_U32 = 4294967295


class DescribeError(Exception):
    pass


def _dump(model: Any) -> Any:
    if model is None:
        return None
    return model.model_dump(by_alias=True, exclude_unset=True, mode="json")


def _fmt_labels(labels: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


# --- finding what to describe -------------------------------------------------------------------------


def _pods(snapshot: Snapshot) -> list[Pod]:
    return sorted(snapshot.registry.pods.values(), key=lambda p: (p.namespace, p.name))


def find_pods(snapshot: Snapshot, kind: str, name: str, namespace: str | None) -> list[Pod]:
    pods = [p for p in _pods(snapshot) if namespace is None or p.namespace == namespace]
    if kind == "pod":
        if "." in name and namespace is None:
            inst, _, ns = name.rpartition(".")
            found = [p for p in pods if p.name == inst and p.namespace == ns]
            if found:
                return found
        found = [p for p in pods if p.name == name]
        if not found:
            found = [p for p in pods if p.workload == name][:1]
    else:
        found = [p for p in pods if p.workload == name] or [p for p in pods if p.name == name]
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise DescribeError(f"no {kind} {name!r}{where}")
    if namespace is None:
        ns = "default" if any(p.namespace == "default" for p in found) else found[0].namespace
        found = [p for p in found if p.namespace == ns]
    return found


def find_service(snapshot: Snapshot, name: str, namespace: str | None) -> Service:
    ns = namespace or "default"
    for svc in snapshot.registry.services:
        if svc.hostname == name or (svc.name == name and svc.namespace == ns):
            return svc
    if "." in name and namespace is None:
        # istioctl's `x describe svc NAME.NAMESPACE` (handlers.InferPodInfo splits at the last dot), as
        # pods are named above; istioctl_test.go TestDescribe describes `a.<ns>`.
        short, _, svc_ns = name.rpartition(".")
        for svc in snapshot.registry.services:
            if svc.name == short and svc.namespace == svc_ns:
                return svc
    if namespace is None:
        for svc in snapshot.registry.services:
            if svc.name == name:
                return svc
    raise DescribeError(f"no service {name!r} in namespace {ns}")


def proxy_of(pod: Pod) -> Proxy:
    return Proxy.of_pod(pod)


# --- pieces ---------------------------------------------------------------------------------------------


def _target_port(sp: ServicePort, pod: Pod | None) -> int | None:
    if sp.target_port_name is not None:
        return pod.named_ports.get(sp.target_port_name) if pod is not None else None
    return sp.target_port or sp.port


def _lb_text(lb: Any | None) -> str:
    if lb is None or (lb.simple is None and lb.consistent_hash is None):
        return "LEAST_REQUEST (Istio's default)"
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.http_header_name:
            key = f"header {ch.http_header_name}"
        elif ch.http_cookie is not None:
            key = f"cookie {ch.http_cookie.name}"
        elif ch.use_source_ip:
            key = "source IP"
        elif ch.http_query_parameter_name:
            key = f"query parameter {ch.http_query_parameter_name}"
        else:
            key = "?"
        kind = "maglev" if ch.maglev is not None else "ring hash"
        return f"consistent hash on {key} ({kind})"
    return str(lb.simple)


def _pool(pool: Any | None, connect_timeout_s: float) -> dict[str, Any]:
    tcp = pool.tcp if pool is not None else None
    http = pool.http if pool is not None else None

    def limit(value: Any) -> str:
        return "unlimited (Istio's default)" if value is None else str(value)

    out = {
        "maxConnections": limit(tcp.max_connections if tcp else None),
        "http1MaxPendingRequests": limit(http.http1_max_pending_requests if http else None),
        "http2MaxRequests": limit(http.http2_max_requests if http else None),
        "maxRetries": limit(http.max_retries if http else None),
        "maxRequestsPerConnection": (
            str(http.max_requests_per_connection)
            if http and http.max_requests_per_connection
            else "unlimited"
        ),
        "connectTimeout": (
            tcp.connect_timeout if tcp and tcp.connect_timeout else f"{connect_timeout_s:g}s (mesh)"
        ),
    }
    if http and http.idle_timeout:
        out["idleTimeout"] = http.idle_timeout
    return out


def _tls_text(snapshot: Snapshot, svc: Service, tls: Any | None) -> str:
    if tls is not None and tls.mode:
        extra = f" (sni {tls.sni})" if tls.sni else ""
        return f"{tls.mode}{extra}"
    if svc.mesh_external or not snapshot.mesh.enable_auto_mtls:
        return "plaintext (no DestinationRule TLS)"
    mode = authn.namespace_mode(
        snapshot.configs.get("PeerAuthentication", []), svc.namespace, snapshot.mesh.root_namespace
    )
    if mode == authn.DISABLE:
        return "plaintext (auto mTLS off: PeerAuthentication DISABLE)"
    return "ISTIO_MUTUAL to endpoints with a sidecar (auto mTLS)"


def effective_traffic_policy(
    snapshot: Snapshot, svc: Service, dr: MergedDestinationRule | None, port: int, subset: str | None
) -> dict[str, Any]:
    pol = effective_policy(dr, port, subset)
    od = pol.outlier_detection
    return {
        "loadBalancer": _lb_text(pol.load_balancer),
        "connectionPool": _pool(pol.connection_pool, snapshot.mesh.connect_timeout_s),
        "outlierDetection": _dump(od) if od is not None else "none (Istio's default)",
        "tls": _tls_text(snapshot, svc, pol.tls),
        # DestinationRule proxyProtocol: a PROXY header opens every upstream connection, under the TLS.
        "proxyProtocol": (pol.proxy_protocol.version or "V1") if pol.proxy_protocol is not None else "none",
    }


def default_retries(snapshot: Snapshot) -> dict[str, Any]:
    retry = snapshot.mesh.default_http_retry
    if retry is None:
        return {"attempts": 2, "retryOn": DEFAULT_RETRY_ON, "source": "Istio's default retry policy"}
    out = _dump(retry) or {}
    out["source"] = "MeshConfig defaultHttpRetryPolicy"
    return out


def _retries(snapshot: Snapshot, http: Any) -> dict[str, Any]:
    if http.retries is None:
        return default_retries(snapshot)
    if not http.retries.attempts:
        return {"attempts": 0, "source": "VirtualService (retries disabled)"}
    out = _dump(http.retries) or {}
    out.setdefault("retryOn", DEFAULT_RETRY_ON)
    out["source"] = "VirtualService"
    return out


def _timeout(http: Any) -> str:
    if http.timeout is None:
        return "none (Istio's default: no timeout)"
    if http.timeout in ("0s", "0"):
        return "disabled (0s)"
    return str(http.timeout)


def _describe_match(match: Any) -> str:
    from isthmus.debug.route_test import describe_vs_match

    return describe_vs_match(match)


def _applies_to(vs: VirtualServiceEntry, svc: Service) -> bool:
    return any(
        host == svc.hostname or (h.is_wildcard(host) and h.subset_of(svc.hostname, host)) for host in vs.hosts
    )


def _http_ports(svc: Service) -> list[int]:
    return [sp.port for sp in svc.ports if sp.protocol.is_http or sp.protocol is Protocol.AUTO]


def _dest_summary(
    snapshot: Snapshot,
    dest: Any,
    weight: int | None,
    svc: Service,
    dr: MergedDestinationRule | None,
    pod: Pod | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"host": dest.host}
    if dest.subset:
        out["subset"] = dest.subset
    if dest.port is not None and dest.port.number:
        out["port"] = int(dest.port.number)
    if weight is not None:
        out["weight"] = weight
    if dest.host == svc.hostname:
        out["thisService"] = True
        if dest.subset:
            sub = dr.subset(dest.subset) if dr is not None else None
            if sub is None:
                out["problem"] = f"subset {dest.subset!r} is not defined by a DestinationRule: 503 NC"
            elif pod is not None:
                out["reachesThisPod"] = labels_match(sub.labels or {}, pod.labels)
        elif pod is not None:
            out["reachesThisPod"] = True
    return out


def virtual_service_summary(
    snapshot: Snapshot,
    vs: VirtualServiceEntry,
    svc: Service,
    dr: MergedDestinationRule | None,
    pod: Pod | None,
) -> dict[str, Any]:
    ports = _http_ports(svc)
    rules = []
    for i, http in enumerate(vs.http):
        matches = list(http.match or ())
        rule_ports = sorted({int(m.port) for m in matches if m.port}) or ports
        rule: dict[str, Any] = {
            "index": i,
            "matches": [_describe_match(m) for m in matches] or ["any request"],
            "ports": [p for p in rule_ports if p in ports] or rule_ports,
        }
        if http.name:
            rule["name"] = http.name
        if http.redirect is not None:
            rule["redirect"] = _dump(http.redirect)
        elif http.direct_response is not None:
            rule["directResponse"] = _dump(http.direct_response)
        else:
            dests = list(http.route or ())
            rule["destinations"] = [
                _dest_summary(snapshot, d.destination, d.weight if len(dests) > 1 else None, svc, dr, pod)
                for d in dests
                if d.destination is not None
            ]
            rule["timeout"] = _timeout(http)
            rule["retries"] = _retries(snapshot, http)
        if http.fault is not None:
            rule["fault"] = _dump(http.fault)
        if http.mirror is not None or http.mirrors:
            rule["mirror"] = (
                _dump(http.mirror) if http.mirror is not None else [_dump(m) for m in http.mirrors]
            )
        if http.rewrite is not None:
            rule["rewrite"] = _dump(http.rewrite)
        if not matches:
            rule["catchAll"] = True
        rules.append(rule)
    out: dict[str, Any] = {
        "name": vs.name,
        "namespace": vs.namespace,
        "hosts": list(vs.hosts),
        "gateways": sorted(vs.gateways),
        "httpRules": rules,
    }
    if vs.tcp:
        out["tcpRules"] = len(vs.tcp)
    if vs.tls:
        out["tlsRules"] = len(vs.tls)
    if vs.http and not any(not (r.match or []) for r in vs.http):
        out["warning"] = "no catch-all rule: requests matching no rule get 404 NR"
    if vs.problems:
        out["problems"] = list(vs.problems)
    return out


def _gateways_exposing(snapshot: Snapshot, svc: Service) -> list[dict[str, Any]]:
    out = []
    for vs in snapshot.virtual_services.entries:
        gws = sorted(g for g in vs.gateways if g != MESH_GATEWAY)
        if not gws:
            continue
        paths = []
        for http in vs.http:
            if any(
                d.destination is not None and d.destination.host == svc.hostname for d in http.route or ()
            ):
                paths.extend(_describe_match(m) for m in (http.match or [None]))
        if not paths:
            continue
        for gw_name in gws:
            gw = snapshot.gateway(gw_name)
            entry: dict[str, Any] = {
                "gateway": gw_name,
                "virtualService": f"{vs.namespace}/{vs.name}",
                "hosts": list(vs.hosts),
                "routes": paths,
            }
            if gw is None:
                entry["problem"] = f"Gateway {gw_name} does not exist: the VirtualService is ignored there"
            else:
                servers = []
                for s in gw.spec.servers or ():
                    servers.append(f"{s.port.protocol} {s.port.number} hosts {','.join(s.hosts or [])}")
                entry["servers"] = servers
                addresses = []
                for pod in _pods(snapshot):
                    if pod.gateway and labels_match(gw.spec.selector or {}, pod.labels):
                        proxy = proxy_of(pod)
                        for srv in snapshot.gateway_servers(proxy):
                            if srv.gateway.key == gw.key:
                                addresses.append(
                                    f"{srv.protocol.value.lower()}://{pod.ip}:{srv.listen_port} ({pod.namespace}/{pod.name})"
                                )
                entry["addresses"] = sorted(set(addresses))
            out.append(entry)
    return out


def service_summary(snapshot: Snapshot, svc: Service, pod: Pod | None) -> dict[str, Any]:
    """What a caller in the service's namespace gets for this service (and how it reaches `pod`)."""
    dr = snapshot.destination_rules.lookup(svc.namespace, {}, svc.hostname, svc.namespace)
    ports = []
    for sp in svc.ports:
        entry: dict[str, Any] = {"name": sp.name, "port": sp.port, "protocol": sp.protocol.value}
        tp = _target_port(sp, pod)
        if tp is not None:
            entry["targetPort"] = tp
        ports.append(entry)
    out: dict[str, Any] = {
        "name": svc.name,
        "namespace": svc.namespace,
        "hostname": svc.hostname,
        "source": f"{svc.source.kind} {svc.source.namespace}/{svc.source.name}",
        "ports": ports,
    }
    matching_subsets: list[str] = []
    if dr is not None:
        subsets = []
        for s in dr.subsets:
            entry = {"name": s.name, "labels": dict(s.labels or {})}
            if pod is not None:
                entry["matchesThisPod"] = labels_match(s.labels or {}, pod.labels)
                if entry["matchesThisPod"]:
                    matching_subsets.append(s.name)
            pods = [
                p.name
                for p in _pods(snapshot)
                if p.namespace == svc.namespace
                and svc.selector is not None
                and labels_match(svc.selector, p.labels)
                and labels_match(s.labels or {}, p.labels)
            ]
            entry["pods"] = pods
            if not pods and svc.selector is not None:
                entry["warning"] = "selects no pod: routes to it get 503 UH"
            subsets.append(entry)
        out["destinationRule"] = {
            "name": dr.configs[0].name,
            "namespace": dr.namespace,
            "refs": dr.ref,
            "host": dr.host,
            "subsets": subsets,
        }
        if pod is not None:
            out["destinationRule"]["podSubsets"] = matching_subsets
    else:
        out["destinationRule"] = None
    policies = {}
    # For a pod, the subsets it is in; for the service alone, every subset (each may override the policy).
    shown_subsets = matching_subsets if pod is not None else [s.name for s in (dr.subsets if dr else ())]
    for sp in svc.ports:
        entry = {"default": effective_traffic_policy(snapshot, svc, dr, sp.port, None)}
        for subset in shown_subsets:
            pol = effective_traffic_policy(snapshot, svc, dr, sp.port, subset)
            if pol != entry["default"]:
                entry[f"subset {subset}"] = pol
        policies[str(sp.port)] = entry
    out["trafficPolicy"] = policies
    vses = [
        vs
        for vs in snapshot.virtual_services.for_namespace(svc.namespace, MESH_GATEWAY)
        if MESH_GATEWAY in vs.gateways and _applies_to(vs, svc)
    ]
    out["virtualServices"] = [virtual_service_summary(snapshot, vs, svc, dr, pod) for vs in vses]
    if not vses:
        out["defaultRoutes"] = [
            {
                "port": port,
                "cluster": naming.outbound_cluster(port, "", svc.hostname),
                "timeout": "none (Istio's default: no timeout)",
                "retries": default_retries(snapshot),
            }
            for port in _http_ports(svc)
        ]
    out["gateways"] = _gateways_exposing(snapshot, svc)
    return out


def _authz(snapshot: Snapshot, proxy: Proxy) -> list[dict[str, Any]]:
    from isthmus.xds.gen import authz

    out = []
    for cfg in authz.policies_for(snapshot, "AuthorizationPolicy", proxy):
        rules = list(cfg.spec.rules or ())
        entry: dict[str, Any] = {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "action": cfg.spec.action or "ALLOW",
            "rules": len(rules),
            "scope": "mesh (root namespace)"
            if cfg.namespace == snapshot.mesh.root_namespace
            else ("workload selector" if authz._selector(cfg) else "namespace"),
            "policyNames": [
                f"ns[{cfg.namespace}]-policy[{cfg.name}]-rule[{i}]" for i in range(max(1, len(rules)))
            ],
        }
        if (cfg.metadata.annotations or {}).get(authz.DRY_RUN, "").lower() == "true":
            entry["dryRun"] = True
        if not rules and entry["action"] == "ALLOW":
            entry["note"] = "no rules: allows nothing (denies every request)"
        out.append(entry)
    return out


def _request_authn(snapshot: Snapshot, proxy: Proxy) -> list[dict[str, Any]]:
    from isthmus.xds.gen import authz

    out = []
    for cfg in authz.policies_for(snapshot, "RequestAuthentication", proxy):
        out.append(
            {
                "name": cfg.name,
                "namespace": cfg.namespace,
                "issuers": [r.issuer for r in cfg.spec.jwt_rules or ()],
            }
        )
    return out


def pod_summary(snapshot: Snapshot, pod: Pod) -> dict[str, Any]:
    proxy = proxy_of(pod)
    inbound = {ib.port: ib for ib in snapshot.inbound_ports(proxy)}
    ports = []
    for target, app_port in sorted(pod.app_ports.items()):
        ib = inbound.get(target)
        ports.append(
            {
                "port": target,
                "appPort": app_port,
                "protocol": ib.protocol.value if ib is not None else Protocol.AUTO.value,
                "services": [f"{s.name}:{sp.port}" for s, sp in (ib.services if ib is not None else ())],
            }
        )
    out: dict[str, Any] = {
        "name": pod.name,
        "namespace": pod.namespace,
        "workload": pod.workload,
        "ip": pod.ip,
        "labels": dict(pod.labels),
        "serviceAccount": pod.service_account,
        "identity": f"spiffe://{snapshot.mesh.trust_domain}/ns/{pod.namespace}/sa/{pod.service_account}",
        "proxy": "gateway" if pod.gateway else ("sidecar" if pod.sidecar else "none"),
        "ready": pod.ready,
        "ports": ports,
    }
    if not pod.sidecar and not pod.gateway:
        out["warning"] = "no sidecar: not in the mesh (plaintext, no policies enforced on its side)"
    mtls = authn.workload_mtls(
        snapshot.configs.get("PeerAuthentication", []),
        pod.namespace,
        pod.labels,
        snapshot.mesh.root_namespace,
    )
    out["peerAuthentication"] = {
        "mode": mtls.mode,
        "ports": {str(p["port"]): mtls.for_port(p["port"]) for p in ports},
        "policies": [f"{c.namespace}/{c.name}" for c in mtls.policies],
    }
    if not mtls.policies:
        out["peerAuthentication"]["note"] = "no PeerAuthentication applies: PERMISSIVE (Istio's default)"
    out["authorizationPolicies"] = _authz(snapshot, proxy)
    out["requestAuthentications"] = _request_authn(snapshot, proxy)
    sidecar = snapshot.sidecar_resource(proxy)
    if sidecar is not None:
        out["sidecar"] = {
            "name": sidecar.name,
            "namespace": sidecar.namespace,
            "egressHosts": [h for eg in sidecar.spec.egress or () for h in eg.hosts or ()],
        }
    if proxy.kind == "sidecar":
        out["outboundTrafficPolicy"] = snapshot.scope(proxy).outbound_policy
    return out


def describe(snapshot: Snapshot, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    kind = {"po": "pod", "pods": "pod", "workloads": "workload", "deploy": "workload", "deployment": "workload",
            "svc": "service", "services": "service"}.get(kind.lower(), kind.lower())  # fmt: skip
    if kind not in ("pod", "workload", "service"):
        raise DescribeError(f"cannot describe {kind!r}: use pod, workload or service")
    if not name:
        raise DescribeError("a name is required")
    out: dict[str, Any] = {"kind": kind, "configVersion": snapshot.version}
    if kind == "service":
        svc = find_service(snapshot, name, namespace)
        pods = [
            p
            for p in _pods(snapshot)
            if svc.selector is not None
            and p.namespace == svc.namespace
            and labels_match(svc.selector, p.labels)
        ]
        out["service"] = service_summary(snapshot, svc, None)
        out["istioctl"] = istioctl_service_lines(snapshot, svc, pods, namespace or "default")
        dr = snapshot.destination_rules.lookup(svc.namespace, {}, svc.hostname, svc.namespace)
        out["pods"] = []
        for p in pods:
            subsets = [s.name for s in (dr.subsets if dr else ()) if labels_match(s.labels or {}, p.labels)]
            mtls = authn.workload_mtls(
                snapshot.configs.get("PeerAuthentication", []),
                p.namespace,
                p.labels,
                snapshot.mesh.root_namespace,
            )
            out["pods"].append(
                {
                    "name": p.name,
                    "ip": p.ip,
                    "labels": dict(p.labels),
                    "ready": p.ready,
                    "sidecar": p.sidecar,
                    "subsets": subsets,
                    "mtls": mtls.mode,
                    "peerAuthentications": [f"{c.namespace}/{c.name}" for c in mtls.policies],
                    "authorizationPolicies": [
                        {k: a[k] for k in ("name", "namespace", "action", "rules", "dryRun") if k in a}
                        for a in (_authz(snapshot, proxy_of(p)) if p.sidecar or p.gateway else [])
                    ],
                }
            )
        return out
    pods = find_pods(snapshot, kind, name, namespace)
    first = pods[0]
    if kind == "workload":
        out["workload"] = {"name": first.workload or first.name, "namespace": first.namespace,
                           "instances": [p.name for p in pods]}  # fmt: skip
    out["pod"] = pod_summary(snapshot, first)
    out["istioctl"] = istioctl_pod_lines(snapshot, first, namespace or "default")
    out["services"] = [
        service_summary(snapshot, svc, first) for svc in snapshot.registry.services_selecting(first)
    ]
    if not out["services"]:
        out["warnings"] = ["no Service selects this pod: nothing routes to it by name"]
    return out


# --- istioctl's view ------------------------------------------------------------------------------------
# The lines `istioctl x describe` prints (istioctl/pkg/describe/describe.go), worded and indented as it
# does, computed on the model instead of a config dump. The text output leads with them; the Isthmus
# details (effective defaults, every rule) follow only with --details.

_LEVEL1, _LEVEL2 = "   ", "      "
_REQUIREMENTS_URL = "https://istio.io/latest/docs/ops/deployment/requirements/"
_SEPARATOR = "--------------------"


def _kname(name: str, namespace: str, current: str) -> str:
    """istioctl's kname: the bare name in istioctl's describeNamespace (the -n namespace, else the
    context's, `default`), else name.namespace. Every object of the output is named this way, so
    `describe svc a.echo` (no -n) prints `Service: a.echo` and `DestinationRule: a.echo`."""
    return name if namespace == current else f"{name}.{namespace}"


def _container(pod: Pod) -> str:
    return pod.labels.get("app") or pod.workload or pod.name


def _port_protocol(sp: ServicePort) -> str:
    """istioctl's findProtocolForPort: a port with neither a name nor an appProtocol, and not UDP, is
    sniffed ("auto-detect"); otherwise the protocol Istio reads from it (ConvertProtocol), an unknown
    one as Istio names it, "UnsupportedProtocol"."""
    if not sp.name and sp.app_protocol is None and sp.protocol is not Protocol.UDP:
        return "auto-detect"
    return "UnsupportedProtocol" if sp.protocol is Protocol.AUTO else sp.protocol.value


def _extend_fqdn(host: str, suffix: str) -> str:
    return host if host.startswith("*") or host.endswith("." + suffix) else f"{host}.{suffix}"


def _render_string_match(sm: Any) -> str:
    if sm is None:
        return ""
    if sm.exact is not None:
        return str(sm.exact)
    if sm.prefix is not None:
        return f"{sm.prefix}*"
    if sm.suffix is not None:
        return f"*{sm.suffix}"
    return f'regex:"{sm.regex}"'


def _render_match(m: Any) -> str:
    out = "Match: "
    if m.uri is not None:
        out += _render_string_match(m.uri)
        if m.ignore_uri_case:
            out += " uncased"
    if m.headers:
        conds = [f"{k}={_render_string_match(v)}" for k, v in sorted(m.headers.items())]
        out += " when headers are " + "; ".join(conds)
    return out.strip()


def _render_matches(matches: Any) -> str:
    return ", ".join(_render_match(m) for m in matches) if matches else "everything"


def _http_route_facts(
    vs: VirtualServiceEntry,
    route: Any,
    svc: Service,
    matching: list[str],
    nonmatching: list[str],
    dr: MergedDestinationRule | None,
    current: str,
) -> tuple[bool, list[str]]:
    """istioctl's httpRouteMatchSvc: whether the rule reaches the pods' subsets, and what it says."""
    suffix = svc.hostname.split(".", 2)[2]
    facts: list[str] = []
    mismatch: list[str] = []
    match = False
    for rd in route.route or ():
        dest = rd.destination
        if dest is None:
            continue
        weight = rd.weight or 0
        if _extend_fqdn(h.resolve_short_name(dest.host, vs.namespace), suffix) == svc.hostname:
            if dest.subset:
                if dest.subset in nonmatching:
                    mismatch.append(
                        f"Route to non-matching subset {dest.subset} for ({_render_matches(route.match)})"
                    )
                    continue
                if dest.subset not in matching:
                    if dr is None:
                        mismatch.append(
                            f"Warning: Route to subset {dest.subset} but NO DESTINATION RULE defining subsets!"
                        )
                    else:
                        mismatch.append(
                            f"Warning: Route to UNKNOWN subset {dest.subset}; check DestinationRule "
                            f"{_kname(dr.configs[0].name, dr.namespace, current)}"
                        )
                    continue
            match = True
            if weight > 0:
                fact = f'Route to host "{dest.host}"'
                if dest.subset:
                    fact += f' subset "{dest.subset}"'
                facts.append(f"{fact} with weight {weight}%")
        elif not dest.subset:
            facts.append(f'Route to host "{dest.host}" with weight {weight}%')
        else:
            facts.append(f"Route to {dest.host} with invalid config")
    if match:
        req = [f"Fault injection {_dump(route.fault)}"] if route.fault is not None else []
        req.extend(_render_match(m) for m in route.match or ())
        if req:
            facts.append(", ".join(req))
    elif mismatch:
        facts.extend(mismatch)
    return match, facts


def _tcp_route_facts(vs: VirtualServiceEntry, route: Any, svc: Service) -> tuple[bool, list[str]]:
    suffix = svc.hostname.split(".", 2)[2]
    match = any(
        rd.destination is not None
        and _extend_fqdn(h.resolve_short_name(rd.destination.host, vs.namespace), suffix) == svc.hostname
        for rd in route.route or ()
    )
    return match, ([str(_dump(m)) for m in route.match or ()] if match else [])


def _istioctl_vs_lines(
    indent: str,
    vs: VirtualServiceEntry,
    svc: Service,
    matching: list[str],
    nonmatching: list[str],
    dr: MergedDestinationRule | None,
    current: str,
) -> list[str]:
    """istioctl's printVirtualService."""
    lines = [f"{indent}VirtualService: {_kname(vs.name, vs.namespace, current)}"]
    l1, l2 = indent + _LEVEL1, indent + _LEVEL2
    # istioctl reads the VirtualService as written (hosts unresolved), not the merged entry.
    spec = vs.config.spec
    http, tcp = list(spec.http or ()), list(spec.tcp or ())
    matches = facts = 0
    mismatch: list[str] = []
    results = [_http_route_facts(vs, r, svc, matching, nonmatching, dr, current) for r in http]
    results += [_tcp_route_facts(vs, r, svc) for r in tcp]
    for ok, new in results:
        if ok:
            matches += 1
            lines.extend(l1 + f for f in new)
            facts += len(new)
        else:
            mismatch.extend(new)
    if matches == 0:
        if http:
            lines.append(f"{l1}WARNING: No destinations match pod subsets (checked {len(http)} HTTP routes)")
        if tcp:
            lines.append(f"{l1}WARNING: No destinations match pod subsets (checked {len(tcp)} TCP routes)")
        lines.extend(l2 + m for m in mismatch)
        return lines
    possible = len(http) + len(spec.tls or ()) + len(tcp)
    if matches < possible:
        lines.append(f"{l1}{possible - matches} additional destination(s) that will not reach this pod")
        if facts == 0:
            lines.extend(l2 + m for m in mismatch)
        return lines
    if facts == 0:
        if http:
            lines.append(f"{l1}{len(http)} HTTP route(s)")
        if tcp:
            lines.append(f"{l1}{len(tcp)} TCP route(s)")
    return lines


def _short_policies(lb: Any, pool: Any, od: Any) -> str | None:
    extra = [n for n, v in (("load balancer", lb), ("connection pool", pool), ("outlier detection", od)) if v]
    return f"Policies: {'/'.join(extra)}" if extra else None


def _istioctl_dr_lines(
    indent: str,
    dr: MergedDestinationRule,
    svc: Service,
    matching: list[str],
    nonmatching: list[str],
    current: str,
) -> list[str]:
    """istioctl's printDestinationRule (it names the first DestinationRule merged for the host)."""
    cfg = dr.configs[0]
    l1, l2 = indent + _LEVEL1, indent + _LEVEL2
    lines = [f'{indent}DestinationRule: {_kname(cfg.name, cfg.namespace, current)} for "{cfg.spec.host}"']
    if matching or nonmatching:
        if not matching:
            lines.append(
                f"{l1}WARNING POD DOES NOT MATCH ANY SUBSETS.  (Non matching subsets {','.join(nonmatching)})"
            )
        lines.append(f"{l1}Matching subsets: {','.join(matching)}")
        if nonmatching:
            lines.append(f"{l2}(Non-matching subsets {','.join(nonmatching)})")
    tp = cfg.spec.traffic_policy
    if tp is None:
        lines.append(f"{l1}No Traffic Policy")
        return lines
    if tp.tls is not None:
        lines.append(f"{l1}Traffic Policy TLS Mode: {tp.tls.mode or 'DISABLE'}")
    short = _short_policies(tp.load_balancer, tp.connection_pool, tp.outlier_detection)
    if short:
        lines.append(l1 + short)
    if tp.port_level_settings:
        lines.append(f"{l1}Port Level Settings:")
        for ps in tp.port_level_settings:
            lines.append(f"    {ps.port.number if ps.port is not None else 0}:")
            if ps.tls is not None:
                lines.append(f"{l2}TLS Mode: {ps.tls.mode or 'DISABLE'}")
            short = _short_policies(ps.load_balancer, ps.connection_pool, ps.outlier_detection)
            if short:
                lines.append(l2 + short)
    return lines


def _subset_split(dr: MergedDestinationRule | None, pods: list[Pod]) -> tuple[list[str], list[str]]:
    """istioctl's getDestRuleSubsets: subsets matching any of the pods, and the others."""
    matching: list[str] = []
    nonmatching: list[str] = []
    for s in dr.subsets if dr is not None else ():
        target = matching if any(labels_match(s.labels or {}, p.labels) for p in pods) else nonmatching
        target.append(s.name)
    return matching, nonmatching


def _mesh_vs(snapshot: Snapshot, svc: Service) -> VirtualServiceEntry | None:
    return next(
        (
            vs
            for vs in snapshot.virtual_services.for_namespace(svc.namespace, MESH_GATEWAY)
            if MESH_GATEWAY in vs.gateways and _applies_to(vs, svc)
        ),
        None,
    )


def _istioctl_services(
    snapshot: Snapshot, pod: Pod, services: list[Service], pods: list[Pod], current: str
) -> list[str]:
    """istioctl's describePodServices."""
    lines: list[str] = []
    proxy = proxy_of(pod)
    rbac = [n for a in _authz(snapshot, proxy) if a["action"] != "CUSTOM" for n in a["policyNames"]]
    for row, svc in enumerate(services):
        if row:
            lines.append(_SEPARATOR)
        lines.append(f"Service: {_kname(svc.name, svc.namespace, current)}")
        for sp in svc.ports:
            tp = _target_port(sp, pod)
            if tp is None:
                lines.append(f"   no matching port {sp.target_port_name!r} in pod {pod.name}")
            else:
                lines.append(f"   Port: {sp.name} {sp.port}/{_port_protocol(sp)} targets pod port {tp}")
        dr = snapshot.destination_rules.lookup(pod.namespace, pod.labels, svc.hostname, svc.namespace)
        matching, nonmatching = _subset_split(dr, pods)
        vs = _mesh_vs(snapshot, svc)
        multi = len(svc.ports) > 1
        indent = _LEVEL1 if multi else ""
        for sp in svc.ports:
            if multi:
                lines.append(f"{sp.port}:")
            if dr is not None:
                lines.extend(_istioctl_dr_lines(indent, dr, svc, matching, nonmatching, current))
            # istioctl finds the VirtualService on the HTTP route of the port: TCP ports have none.
            if vs is not None and (sp.protocol.is_http or sp.protocol is Protocol.AUTO):
                lines.extend(_istioctl_vs_lines(indent, vs, svc, matching, nonmatching, dr, current))
            if rbac and sp.protocol.is_http:
                lines.append((f"{sp.port} " if multi else "") + f"RBAC policies: {', '.join(sorted(rbac))}")
    return lines


def _istioctl_peer_authn(snapshot: Snapshot, pod: Pod) -> list[str]:
    """istioctl's describePeerAuthentication."""
    mtls = authn.workload_mtls(
        snapshot.configs.get("PeerAuthentication", []),
        pod.namespace,
        pod.labels,
        snapshot.mesh.root_namespace,
    )
    lines = ["Effective PeerAuthentication:", f"   Workload mTLS mode: {mtls.mode}"]
    if mtls.ports:
        lines.append("   Port Level mTLS mode:")
        lines.extend(f"      {port}: {mode}" for port, mode in sorted(mtls.ports.items()))
    if mtls.policies:
        lines.append("Applied PeerAuthentication:")
        lines.append("   " + ", ".join(f"{c.name}.{c.namespace}" for c in mtls.policies))
    return lines


def _istioctl_ingress(
    snapshot: Snapshot, services: list[Service], pods: list[Pod], current: str
) -> list[str]:
    """istioctl's printIngressInfo: each ingress gateway (pods labelled istio=ingressgateway) exposing
    the services through a gateway-bound VirtualService."""
    gw_pods = [p for p in _pods(snapshot) if p.labels.get("istio") == "ingressgateway" and p.ready]
    if not gw_pods:
        return ["Skipping Gateway information (no ingress gateway pods)"]
    ingresses = []
    for s in snapshot.registry.services:
        selected = [
            p
            for p in gw_pods
            if p.namespace == s.namespace and s.selector and labels_match(s.selector, p.labels)
        ]
        if selected:
            ingresses.append((s, selected))
    lines: list[str] = []
    if not ingresses:
        lines.append("Skipping Gateway information (no ingress gateway service)")
    seen: set[str] = set()
    for svc in services:
        dr = snapshot.destination_rules.lookup(svc.namespace, {}, svc.hostname, svc.namespace)
        matching, nonmatching = _subset_split(dr, pods)
        for vs in snapshot.virtual_services.entries:
            routes_here = any(
                d.destination is not None
                and _extend_fqdn(
                    h.resolve_short_name(d.destination.host, vs.namespace), svc.hostname.split(".", 2)[2]
                )
                == svc.hostname
                for r in vs.http
                for d in r.route or ()
            )
            if not routes_here:
                continue
            for gw_name in sorted(g for g in vs.gateways if g != MESH_GATEWAY):
                if gw_name in seen:
                    continue
                gw = snapshot.gateway(gw_name)
                if gw is None:
                    ns, _, name = gw_name.partition("/")
                    lines.append(
                        f"WARNING: Proxy is stale; it references to non-existent gateway {ns}/{name}"
                    )
                    continue
                seen.add(gw_name)
                selector = gw.spec.selector or {}
                chosen = [(s, ps) for s, ps in ingresses if any(labels_match(selector, p.labels) for p in ps)]
                if not chosen:
                    continue
                lines.append(_SEPARATOR)
                for s, ps in sorted(chosen, key=lambda x: x[1][0].ip):
                    for sp in s.ports:
                        if sp.name not in ("http", "http2"):
                            continue
                        suffix = "" if sp.port == 80 else f":{sp.port}"
                        lines.append(f"Exposed on Ingress Gateway http://{ps[0].ip}{suffix}")
                lines.extend(_istioctl_vs_lines("", vs, svc, matching, nonmatching, dr, current))
    return lines


def istioctl_pod_lines(snapshot: Snapshot, pod: Pod, current_ns: str) -> list[str]:
    """`istioctl x describe pod`: printPod, the Services, PeerAuthentication, ingress gateways."""
    name = _kname(pod.name, pod.namespace, current_ns)
    meshed = pod.sidecar or pod.gateway
    lines = [f"Pod: {name}", f"   Pod Revision: {'default' if meshed else ''}"]
    ports = [f"{port} ({_container(pod)})" for port in sorted(pod.app_ports)]
    lines.append(f"   Pod Ports: {', '.join(ports)}" if ports else "   Pod does not expose ports")
    if not pod.ready:
        lines.append(f"WARNING: Pod {name} Container {_container(pod)} NOT READY")
    if not meshed:
        lines.append(f"WARNING: {name} is not part of mesh; no Istio sidecar")
        return lines
    if not any(k in pod.labels for k in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")):
        lines.append(
            f"Suggestion: add required service name label for Istio telemetry. See {_REQUIREMENTS_URL}."
        )
    if not any(
        k in pod.labels
        for k in ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
    ):
        lines.append(
            f"Suggestion: add required service revision label for Istio telemetry. See {_REQUIREMENTS_URL}."
        )
    services = list(snapshot.registry.services_selecting(pod))
    if not services:
        lines.append(
            f"Warning: No Kubernetes Services select pod {name} "
            "(see https://istio.io/docs/setup/kubernetes/additional-setup/requirements/ )"
        )
    lines.append(_SEPARATOR)
    lines.extend(_istioctl_services(snapshot, pod, services, [pod], current_ns))
    lines.append(_SEPARATOR)
    lines.extend(_istioctl_peer_authn(snapshot, pod))
    lines.extend(_istioctl_ingress(snapshot, services, [pod], current_ns))
    return lines


def istioctl_service_lines(
    snapshot: Snapshot, svc: Service, selected: list[Pod], current_ns: str = "default"
) -> list[str]:
    """`istioctl x describe service`: described through its first ready pod with a sidecar."""
    name = _kname(svc.name, svc.namespace, current_ns)
    lines: list[str] = []
    pods = []
    for p in selected:
        if not (p.sidecar or p.gateway):
            lines.append(f'Pod {_kname(p.name, p.namespace, current_ns)}: no container "istio-proxy" in pod')
        elif not p.ready:
            lines.append(
                f"WARNING: Pod {_kname(p.name, p.namespace, current_ns)} Container istio-proxy NOT READY"
            )
        else:
            pods.append(p)
    if not pods:
        if not selected:
            return [*lines, f'Service "{name}" has no pods.']
        return [
            *lines,
            f'Service "{name}" has no Istio pods.  ({len(selected)} pods in service).',
            "Use `istioctl kube-inject` or redeploy with Istio automatic sidecar injection.",
        ]
    lines.extend(_istioctl_services(snapshot, pods[0], [svc], pods, current_ns))
    lines.extend(_istioctl_ingress(snapshot, [svc], pods, current_ns))
    return lines


# --- text ---------------------------------------------------------------------------------------------


def _policy_lines(pol: Mapping[str, Any], indent: str) -> list[str]:
    cp = pol["connectionPool"]
    od = pol["outlierDetection"]
    od_text = od if isinstance(od, str) else ", ".join(f"{k} {v}" for k, v in od.items())
    return [
        f"{indent}Load balancer: {pol['loadBalancer']}",
        f"{indent}Connection pool: maxConnections {cp['maxConnections']}, http1MaxPendingRequests "
        f"{cp['http1MaxPendingRequests']}, http2MaxRequests {cp['http2MaxRequests']}, maxRetries "
        f"{cp['maxRetries']}, connectTimeout {cp['connectTimeout']}",
        f"{indent}Outlier detection: {od_text}",
        f"{indent}TLS: {pol['tls']}",
        *(
            [f"{indent}PROXY protocol: {pol['proxyProtocol']} header first"]
            if pol["proxyProtocol"] != "none"
            else []
        ),
    ]


def _retry_text(r: Mapping[str, Any]) -> str:
    if not r.get("attempts") and r.get("attempts") is not None:
        return f"none ({r.get('source', '')})"
    text = f"{r.get('attempts', 2)} attempts on {r.get('retryOn', DEFAULT_RETRY_ON)}"
    if r.get("perTryTimeout"):
        text += f", perTryTimeout {r['perTryTimeout']}"
    return text + f" ({r.get('source', '')})"


def _service_lines(s: Mapping[str, Any], pod_name: str | None) -> list[str]:
    lines = [
        "--------------------",
        f"Service: {s['name']}.{s['namespace']} ({s['hostname']}, {s['source']})",
    ]
    for p in s["ports"]:
        target = f" targets pod port {p['targetPort']}" if "targetPort" in p else ""
        lines.append(f"   Port: {p['name'] or '-'} {p['port']}/{p['protocol']}{target}")
    dr = s.get("destinationRule")
    if dr is None:
        lines.append("DestinationRule: none")
    else:
        lines.append(f"DestinationRule: {dr['refs']} for {dr['host']!r}")
        if pod_name is not None:
            matching = dr.get("podSubsets") or []
            lines.append(f"   Matching subsets: {', '.join(matching) if matching else 'none'}")
            others = [x["name"] for x in dr["subsets"] if x["name"] not in matching]
            if others:
                lines.append(f"      (Non-matching subsets {', '.join(others)})")
        for sub in dr["subsets"]:
            pods = ", ".join(sub.get("pods", [])) or "no pod"
            warn = f"  WARNING: {sub['warning']}" if sub.get("warning") else ""
            lines.append(f"   Subset {sub['name']} ({_fmt_labels(sub['labels'])}): {pods}{warn}")
    for port, entry in s["trafficPolicy"].items():
        lines.append(f"Traffic policy, port {port}:")
        for key, pol in entry.items():
            lines.append(f"   {key}:")
            lines.extend(_policy_lines(pol, "      "))
    for vs in s["virtualServices"]:
        lines.append(f"VirtualService: {vs['name']}.{vs['namespace']} (hosts {', '.join(vs['hosts'])})")
        for rule in vs["httpRules"]:
            name = f" {rule['name']!r}" if rule.get("name") else ""
            lines.append(
                f"   http[{rule['index']}]{name} when {' OR '.join(rule['matches'])}; ports {','.join(str(p) for p in rule['ports'])}"
            )
            for d in rule.get("destinations", []):
                bits = [d["host"]]
                if d.get("subset"):
                    bits.append(f"subset {d['subset']}")
                if d.get("port"):
                    bits.append(f"port {d['port']}")
                if "weight" in d:
                    bits.append(f"weight {d['weight']}%")
                if pod_name is not None and d.get("thisService"):
                    bits.append("-> this pod" if d.get("reachesThisPod") else "-> not this pod")
                if d.get("problem"):
                    bits.append(f"WARNING: {d['problem']}")
                lines.append(f"      route to {', '.join(bits)}")
            if "redirect" in rule:
                lines.append(f"      redirect {rule['redirect']}")
            if "directResponse" in rule:
                lines.append(f"      direct response {rule['directResponse']}")
            if "timeout" in rule:
                lines.append(f"      timeout: {rule['timeout']}")
                lines.append(f"      retries: {_retry_text(rule['retries'])}")
            for key in ("fault", "mirror", "rewrite"):
                if key in rule:
                    lines.append(f"      {key}: {rule[key]}")
        if vs.get("warning"):
            lines.append(f"   WARNING: {vs['warning']}")
        for p in vs.get("problems", []):
            lines.append(f"   WARNING: {p}")
    for d in s.get("defaultRoutes", []):
        lines.append(
            f"Default route, port {d['port']} (no VirtualService): {d['cluster']}; timeout {d['timeout']}; "
            f"retries {_retry_text(d['retries'])}"
        )
    for g in s.get("gateways", []):
        lines.append(
            f"Exposed on Gateway {g['gateway']} by VirtualService {g['virtualService']} (hosts {', '.join(g['hosts'])})"
        )
        for a in g.get("addresses", []):
            lines.append(f"   {a}")
        lines.append(f"   routes: {'; '.join(g['routes'])}")
        if g.get("problem"):
            lines.append(f"   WARNING: {g['problem']}")
    return lines


def render_text(data: Mapping[str, Any], *, details: bool = False) -> str:
    """istioctl's output; with `details`, followed by the Isthmus view (every effective default and rule)."""
    lines = list(data.get("istioctl", []))
    if details or not lines:
        if lines:
            lines += ["", "==================== Isthmus details ===================="]
        lines.append(_details_text(data).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _details_text(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    if data["kind"] == "service":
        lines.extend(_service_lines(data["service"], None)[1:])
        lines.append("Pods:")
        for p in data.get("pods", []):
            subsets = f" subsets {','.join(p['subsets'])}" if p["subsets"] else ""
            pas = p.get("peerAuthentications") or []
            lines.append(
                f"   {p['name']} {p['ip']} ({_fmt_labels(p['labels'])}){subsets}, mTLS {p['mtls']}"
                + (f" (PeerAuthentication {', '.join(pas)})" if pas else "")
                + ("" if p["sidecar"] else ", no sidecar")
            )
            aps = p.get("authorizationPolicies") or []
            if aps:
                lines.append(
                    "      AuthorizationPolicies: "
                    + ", ".join(
                        f"{a['action']} {a['name']}.{a['namespace']}"
                        + (" (dry-run)" if a.get("dryRun") else "")
                        for a in aps
                    )
                )
        if not data.get("pods"):
            lines.append("   none")
        return "\n".join(lines) + "\n"
    pod = data["pod"]
    if data.get("workload"):
        w = data["workload"]
        lines.append(f"Workload: {w['name']}.{w['namespace']} (instances: {', '.join(w['instances'])})")
    lines.append(f"Pod: {pod['name']}.{pod['namespace']} ({pod['ip']}, {pod['proxy']})")
    lines.append(f"   Labels: {_fmt_labels(pod['labels'])}")
    lines.append(f"   Identity: {pod['identity']}")
    lines.append(
        "   Pod Ports: "
        + ", ".join(f"{p['port']}/{p['protocol']} (app {p['appPort']})" for p in pod["ports"])
    )
    if pod.get("warning"):
        lines.append(f"   WARNING: {pod['warning']}")
    for s in data.get("services", []):
        lines.extend(_service_lines(s, pod["name"]))
    lines.append("--------------------")
    pa = pod["peerAuthentication"]
    per_port = ", ".join(f"{p} {m}" for p, m in pa["ports"].items())
    src = ", ".join(pa["policies"]) or pa.get("note", "")
    lines.append(f"PeerAuthentication: {pa['mode']} (ports: {per_port}) from {src}")
    aps = pod.get("authorizationPolicies", [])
    if aps:
        lines.append("AuthorizationPolicies:")
        for ap in aps:
            extra = " (dry-run)" if ap.get("dryRun") else ""
            note = f" - {ap['note']}" if ap.get("note") else ""
            lines.append(
                f"   {ap['action']:<6} {ap['name']}.{ap['namespace']} ({ap['rules']} rules, {ap['scope']}){extra}{note}"
            )
    else:
        lines.append("AuthorizationPolicies: none (every request allowed)")
    for ra in pod.get("requestAuthentications", []):
        lines.append(
            f"RequestAuthentication: {ra['name']}.{ra['namespace']} issuers {', '.join(ra['issuers'])}"
        )
    if pod.get("sidecar"):
        sc = pod["sidecar"]
        lines.append(
            f"Sidecar: {sc['name']}.{sc['namespace']} egress {', '.join(sc['egressHosts']) or '*/*'}"
        )
    if pod.get("outboundTrafficPolicy"):
        lines.append(f"Outbound traffic policy: {pod['outboundTrafficPolicy']}")
    for w in data.get("warnings", []):
        lines.append(f"WARNING: {w}")
    return "\n".join(lines) + "\n"
