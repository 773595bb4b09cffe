"""`isthmus explain`: an access-log line (or a response flag) in plain words, joined with the config.

The flags and response code details say what Envoy did; the config of the proxy that wrote the line
says why: the route table it holds (NR: which routes were tried; UT: the route's timeout; FI/DI: the
fault), the cluster (NC: missing, and the DestinationRule's subsets; UH: its endpoints, their health and
outlier ejections, and the pods a subset's labels miss; UO: circuit breakers and overflow counters;
UF: the endpoint and why the connection failed), and the AuthorizationPolicies for RBAC denials.

The mesh is reached through a `MeshView` so that the same code runs on a live mesh (`LiveView`) and
on fixed data in tests; without one, only the flag's general explanation is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from isthmus.debug import authz as authz_mod
from isthmus.debug import flags as fl
from isthmus.debug import matching as m
from isthmus.debug import route_test as rt
from isthmus.debug.accesslog import AccessLogEntry
from isthmus.debug.envoy_config import ProxyConfig

# The flag that names the cause when several are set, most specific first.
PRIORITY = ("NR", "NC", "UH", "UO", "UF", "UT", "UC", "UR", "LR", "FI", "DI", "RL", "UAEX", "DC", "DPE", "UPE",
            "SI", "UMSDR", "DF", "DO", "OM", "IH", "LH", "NFCF", "DT", "RLSE", "URX")  # fmt: skip


class MeshView(Protocol):
    def proxies(self) -> list[dict[str, Any]]: ...

    def instances(self) -> list[dict[str, Any]]: ...

    def held_config(self, proxy: Mapping[str, Any]) -> ProxyConfig | None: ...

    def resources(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def stats(self, proxy: Mapping[str, Any], pattern: str) -> dict[str, int]: ...


class LiveView:
    """A MeshView on a running mesh (`isthmus.debug.live.Mesh`), caching what it fetches."""

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self._configs: dict[str, ProxyConfig | None] = {}
        self._resources: dict[tuple[str, str | None], list[dict[str, Any]]] = {}

    def proxies(self) -> list[dict[str, Any]]:
        return list(self.mesh.status.get("proxies") or [])

    def instances(self) -> list[dict[str, Any]]:
        return list(self.mesh.status.get("instances") or [])

    def held_config(self, proxy: Mapping[str, Any]) -> ProxyConfig | None:
        key = str(proxy.get("id"))
        if key not in self._configs:
            try:
                self._configs[key] = self.mesh.held_config(proxy)
            except Exception:
                self._configs[key] = None
        return self._configs[key]

    def resources(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        key = (kind, namespace)
        if key not in self._resources:
            try:
                self._resources[key] = self.mesh.resources(kind, namespace)
            except Exception:
                self._resources[key] = []
        return self._resources[key]

    def stats(self, proxy: Mapping[str, Any], pattern: str) -> dict[str, int]:
        try:
            return self.mesh.admin_stats(proxy, pattern)
        except Exception:
            return {}


# --- who logged the line ---------------------------------------------------------------------------


def _ip(address: str) -> str:
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if ":" in address else address


def _port(address: str) -> int | None:
    tail = address.rsplit(":", 1)[-1] if ":" in address else ""
    return int(tail) if tail.isdigit() else None


def locate(
    entry: AccessLogEntry, view: MeshView | None, proxy_hint: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """{"proxy": status entry or None, "direction": outbound|inbound|gateway|unknown}."""
    proxy = dict(proxy_hint) if proxy_hint else None
    dla = entry.get("downstream_local_address")
    if proxy is None and view is not None:
        ip = _ip(dla) if dla else ""
        candidates = [p for p in view.proxies() if p.get("ip") == ip] if ip else []
        if not candidates and entry.instance:
            candidates = [p for p in view.proxies() if p.get("instance") == entry.instance]
        proxy = candidates[0] if candidates else None
    cluster = entry.get("upstream_cluster")
    if proxy is not None and proxy.get("kind") == "gateway":
        direction = "gateway"
    elif cluster.startswith("inbound|"):
        direction = "inbound"
    elif cluster.startswith("outbound|") or _port(dla) == (proxy or {}).get("outboundPort", 15001):
        direction = "outbound"
    elif proxy is not None and _port(dla) in {i.get("port") for i in proxy.get("inbound") or []}:
        direction = "inbound"
    else:
        direction = "unknown"
    return {"proxy": proxy, "direction": direction}


def _proxy_name(proxy: Mapping[str, Any] | None) -> str:
    return f"{proxy['instance']}.{proxy['namespace']}" if proxy else "an unknown proxy"


# --- the route and cluster the line names -----------------------------------------------------------


def _route_table(config: ProxyConfig, where: Mapping[str, Any], entry: AccessLogEntry) -> str | None:
    direction = where["direction"]
    if direction == "outbound" and "http_proxy" in config.routes:
        return "http_proxy"
    if direction == "inbound":
        port = _port(entry.get("downstream_local_address"))
        name = f"inbound|{port}||"
        return name if name in config.routes else None
    if direction == "gateway":
        port = _port(entry.get("downstream_local_address"))
        found = rt.gateway_route_table(
            config, [port] if port else [], entry.get("requested_server_name") or None
        )
        if found:
            return found[0]
    return "http_proxy" if "http_proxy" in config.routes else None


def _request(entry: AccessLogEntry) -> m.Request:
    return m.Request(
        authority=entry.get("authority"),
        path=entry.get("path") or "/",
        method=entry.get("method") or "GET",
        headers=[("x-request-id", entry.get("request_id"))] if entry.get("request_id") else [],
    )


def _evaluate(
    config: ProxyConfig | None, where: Mapping[str, Any], entry: AccessLogEntry
) -> dict[str, Any] | None:
    if config is None or not entry.get("authority"):
        return None
    table = _route_table(config, where, entry)
    if table is None:
        return None
    try:
        return rt.evaluate(config, table, _request(entry), rt.Context(proxy=where.get("proxy")))
    except rt.RouteTestError:
        return None


def _route_by_name(
    config: ProxyConfig, table: str | None, name: str, authority: str
) -> dict[str, Any] | None:
    """The route called `name`, preferably in the virtual host serving `authority`."""
    if not name or config is None:
        return None
    tables = [table] if table and table in config.routes else list(config.routes)
    for t in tables:
        rc = config.routes[t]
        vhm = m.select_virtual_host(rc, authority) if authority else None
        vhosts = ([vhm.vhost] if vhm else []) + list(rc.get("virtual_hosts", []) or [])
        for vh in vhosts:
            for r in vh.get("routes", []) or []:
                if r.get("name") == name and "connect_matcher" not in (r.get("match") or {}):
                    return {"route": r, "vhost": vh, "table": t}
    return None


def _vs_of(route: Mapping[str, Any]) -> str | None:
    md = ((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
    ref = rt.parse_vs_path(str(md.get("config", "")))
    return f"{ref[0]}/{ref[1]}" if ref else None


def _vses_of_vhost(config: ProxyConfig | None, table: str | None, vhost: str) -> list[str]:
    """`ns/name` of the VirtualServices whose rules the virtual host `vhost` of `table` holds."""
    if config is None or not table or table not in config.routes:
        return []
    out: list[str] = []
    for vh in config.routes[table].get("virtual_hosts", []) or []:
        if vh.get("name") != vhost:
            continue
        for r in vh.get("routes", []) or []:
            ref = _vs_of(r)
            if ref and ref not in out:
                out.append(ref)
    return out


def _route_vs(out: _Out, ev: dict[str, Any] | None, entry: AccessLogEntry) -> None:
    """The VirtualService whose rule routed the request, when the evaluation found it."""
    if not ev or not ev.get("route") or not ev.get("virtualService"):
        return
    name = entry.get("route_name")
    if name and ev["route"].get("name") and ev["route"]["name"] != name:
        return  # the config changed since: the line's route is not the one found now
    vs = ev["virtualService"]
    ref = f"{vs['namespace']}/{vs['name']}"
    dests = ", ".join(d["name"] for d in ev.get("destinations") or []) or "its destination"
    rule = f" rule http[{vs['ruleIndex']}]" if isinstance(vs.get("ruleIndex"), int) else ""
    out.fact(f"VirtualService {ref}{rule} routes {entry.get('authority')} to {dests}")
    out.refs.append(f"VirtualService {ref}")


def _destination_rules_for(view: MeshView | None, host: str) -> list[dict[str, Any]]:
    """DestinationRules whose host (short names resolved in their namespace) covers `host`."""
    if view is None or not host:
        return []
    out = []
    for dr in view.resources("DestinationRule"):
        h = (dr.get("spec") or {}).get("host", "")
        ns = (dr.get("metadata") or {}).get("namespace") or "default"
        fq = h if ("." in h or h.startswith("*")) else f"{h}.{ns}.svc.cluster.local"
        if fq == host or (fq.startswith("*") and host.endswith(fq[1:])):
            out.append(dr)
    return out


def _service_pods(view: MeshView | None, host: str) -> tuple[dict[str, str] | None, list[dict[str, Any]]]:
    """(the Service's selector, the pods it selects) for a Kubernetes service host."""
    if view is None or ".svc." not in host:
        return None, []
    name, ns = host.split(".")[0], host.split(".")[1]
    selector = None
    for svc in view.resources("Service", ns):
        if (svc.get("metadata") or {}).get("name") == name:
            selector = (svc.get("spec") or {}).get("selector") or {}
    if selector is None:
        return None, []
    pods = [
        i for i in view.instances()
        if i.get("namespace") == ns and all((i.get("labels") or {}).get(k) == v for k, v in selector.items())
    ]  # fmt: skip
    return selector, pods


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


# --- per-cause analysis -------------------------------------------------------------------------------


class _Out:
    def __init__(self) -> None:
        self.cause = ""
        self.facts: list[str] = []
        self.fixes: list[str] = []
        self.refs: list[str] = []  # config resources involved

    def fact(self, text: str) -> None:
        if text and text not in self.facts:
            self.facts.append(text)


def _nr(
    out: _Out,
    entry: AccessLogEntry,
    ev: dict[str, Any] | None,
    where: Mapping[str, Any],
    config: ProxyConfig | None,
) -> None:
    req = f"{entry.get('method')} {entry.get('authority')}{entry.get('path')}"
    if ev is None:
        out.cause = f"no route for {req}: the proxy's route table has no virtual host or route for it"
        return
    table = ev["routeConfig"]
    if ev.get("virtualHost") is None:
        out.cause = (
            f"no virtual host of route table {table} accepts the authority {entry.get('authority')!r}: "
            "no VirtualService or service host on this proxy covers that host (and port)"
        )
        return
    vh = ev["virtualHost"]["name"]
    if ev.get("route") is None:
        tried = ev.get("notMatched", [])
        vses = _vses_of_vhost(config, table, vh)
        owner = f"VirtualService {', '.join(vses)}" if vses else "the VirtualService"
        out.cause = (
            f"virtual host {vh} has {len(tried)} route(s) and none matches {entry.get('method')} "
            f"{m.path_only(entry.get('path'))!r}: the rules of {owner} all have match conditions "
            "and none is a catch-all"
        )
        out.refs.extend(f"VirtualService {v}" for v in vses)
        for t in tried:
            out.fact(f"route {t['name'] or '(unnamed)'} ({t['match']}): {t['why']}")
        out.fact("(request headers are not in the access log: header matches cannot be checked from it)")
        out.fixes.append(f"add a last rule without `match` to {owner}, or a match for this request")
        return
    out.cause = (
        f"the route table {table} now routes this request (route {ev['route']['name']!r}): the config "
        "changed since the line was written, or a header decided (headers are not in the access log)"
    )


def _cluster_facts(out: _Out, config: ProxyConfig | None, cluster: str) -> dict[str, Any] | None:
    if config is None or not cluster:
        return None
    d = rt.describe_cluster(config, cluster)
    if not d["exists"]:
        out.fact(f"cluster {cluster} does not exist in the proxy now")
        return d
    bits = [f"lb {d.get('loadBalancer')}", f"tls {d.get('tls')}"]
    if d.get("destinationRule"):
        bits.append(f"DestinationRule {d['destinationRule']}")
        out.refs.append(f"DestinationRule {d['destinationRule']}")
    out.fact(f"cluster {cluster}: " + "; ".join(bits))
    return d


def _nc(
    out: _Out,
    entry: AccessLogEntry,
    ev: dict[str, Any] | None,
    config: ProxyConfig | None,
    view: MeshView | None,
) -> None:
    route_name = entry.get("route_name")
    cluster = ""
    if ev and ev.get("route"):
        missing = [d for d in ev.get("destinations", []) if not d["exists"]]
        if missing:
            cluster = missing[0]["name"]
        vs = ev.get("virtualService")
        if vs:
            out.refs.append(f"VirtualService {vs['namespace']}/{vs['name']}")
            out.fact(
                f"route {route_name or ev['route']['name']!r} (VirtualService {vs['namespace']}/{vs['name']}) sends to {cluster or 'a missing cluster'}"
            )
    parsed = rt.parse_cluster(cluster) if cluster else {}
    if parsed.get("subset"):
        host, subset = parsed["host"], parsed["subset"]
        drs = _destination_rules_for(view, host)
        if not drs:
            out.cause = f"the route sends to subset {subset!r} of {host}, but no DestinationRule for {host} exists, so the cluster {cluster} was never created"
            out.fixes.append(f"create a DestinationRule for {host} defining subset {subset!r}")
        else:
            names = [s.get("name") for dr in drs for s in (dr.get("spec") or {}).get("subsets", []) or []]
            refs = ", ".join(
                f"{dr['metadata'].get('namespace', 'default')}/{dr['metadata']['name']}" for dr in drs
            )
            out.cause = (
                f"the route sends to subset {subset!r} of {host}, which DestinationRule {refs} does not "
                f"define (it has {', '.join(names) or 'no subsets'}): cluster {cluster} does not exist"
            )
            out.refs.extend(f"DestinationRule {r.strip()}" for r in refs.split(","))
            out.fixes.append(
                f"add subset {subset!r} to DestinationRule {refs}, or route to one of {', '.join(names)}"
            )
    elif cluster:
        out.cause = f"the route sends to cluster {cluster}, which the proxy does not have (host or port not visible to it)"
    else:
        out.cause = "the matched route sends to a cluster the proxy does not have"


def _uh(out: _Out, entry: AccessLogEntry, config: ProxyConfig | None, view: MeshView | None) -> None:
    cluster = entry.get("upstream_cluster")
    d = _cluster_facts(out, config, cluster)
    parsed = rt.parse_cluster(cluster)
    eps = config.endpoints(cluster) if config is not None and cluster else None
    if eps is None:
        out.cause = f"cluster {cluster or '(unknown)'} had no healthy endpoint"
    elif not eps:
        out.cause = f"cluster {cluster} has no endpoints at all"
        subset = parsed.get("subset")
        host = parsed.get("host", "")
        selector, pods = _service_pods(view, host)
        if subset:
            labels: dict[str, str] | None = None
            for dr in _destination_rules_for(view, host):
                for s in (dr.get("spec") or {}).get("subsets", []) or []:
                    if s.get("name") == subset:
                        labels = s.get("labels") or {}
                        out.refs.append(
                            f"DestinationRule {dr['metadata'].get('namespace', 'default')}/{dr['metadata']['name']}"
                        )
            if labels is not None:
                out.cause += f": subset {subset!r} selects pods with {_fmt_labels(labels)}, and no pod of {host} has them"
                out.fixes.append(
                    f"fix the labels of subset {subset!r} or run pods of {host} with {_fmt_labels(labels)}"
                )
            if pods:
                out.fact(
                    "pods of the service: "
                    + "; ".join(f"{p['instance']} ({_fmt_labels(p.get('labels') or {})})" for p in pods)
                )
        elif selector is not None and not pods:
            out.cause += f": the Service selects {_fmt_labels(selector)} and no running pod has those labels"
            out.fixes.append("start the workload, or fix the Service selector")
        elif selector is not None:
            out.cause += ": its pods are not ready"
    else:
        unhealthy = [e for e in eps if not e.healthy]
        ejected = [e for e in eps if e.runtime_flags and "failed_outlier_check" in e.runtime_flags]
        if ejected and len(ejected) == len(eps):
            out.cause = f"all {len(eps)} endpoints of {cluster} are ejected by outlier detection"
            od = (d or {}).get("outlierDetection")
            if od:
                out.fact("outlier detection: " + ", ".join(f"{k} {v}" for k, v in od.items()))
            out.fixes.append(
                "fix the failing instances; or relax outlierDetection (maxEjectionPercent, baseEjectionTime)"
            )
        elif len(unhealthy) == len(eps):
            out.cause = f"none of the {len(eps)} endpoints of {cluster} is healthy now"
        else:
            out.cause = (
                f"cluster {cluster} has {len(eps) - len(unhealthy)} healthy endpoint(s) now: the endpoints were "
                "missing or unhealthy when the request was made (a rollout, restart or ejection since recovered)"
            )
        for e in eps:
            out.fact(
                f"endpoint {e.key} {e.health_status}{' ' + ','.join(e.runtime_flags) if e.runtime_flags else ''} {e.workload_name}".rstrip()
            )


def _uf(out: _Out, entry: AccessLogEntry, config: ProxyConfig | None, view: MeshView | None) -> None:
    host = entry.get("upstream_host")
    reason = entry.get("upstream_transport_failure_reason") or ""
    words = fl.transport_failure_words(reason) if reason else None
    detail = entry.details
    if words is None and "connection_failure" in detail:
        words = fl.transport_failure_words(detail) or "the connection could not be established"
    cluster = entry.get("upstream_cluster")
    out.cause = f"connecting to {host or 'the upstream'} failed" + (f": {words}" if words else "")
    _cluster_facts(out, config, cluster)
    pods = {i.get("ip"): i for i in (view.instances() if view else [])}
    if host:
        ip = _ip(host)
        if ip in pods:
            inst = pods[ip]
            ports = {p.get("port") for p in inst.get("ports") or []}
            port = _port(host)
            state = inst.get("state", "")
            out.fact(
                f"{host} is pod {inst['instance']}.{inst['namespace']}" + (f" ({state})" if state else "")
            )
            if port not in ports:
                out.fact(f"pod {inst['instance']} serves ports {sorted(p for p in ports if p)}, not {port}")
        elif view is not None:
            out.fact(
                f"{host} is not a pod of the mesh (an external endpoint: ServiceEntry, or a passed-through host)"
            )
    parsed = rt.parse_cluster(cluster)
    if parsed and view is not None and ".svc." not in parsed.get("host", ".svc."):
        for se in view.resources("ServiceEntry"):
            if parsed["host"] in ((se.get("spec") or {}).get("hosts") or []):
                ref = f"{se['metadata'].get('namespace', 'default')}/{se['metadata']['name']}"
                out.refs.append(f"ServiceEntry {ref}")
                out.fact(f"ServiceEntry {ref} gives the endpoints of {parsed['host']}")
    if "refused" in (words or ""):
        out.fixes.append(
            "make sure the upstream process listens on that port; fix the Service targetPort or the ServiceEntry endpoint/ports"
        )
    elif "TLS" in (words or ""):
        out.fixes.append(
            "align DestinationRule trafficPolicy.tls with the server's PeerAuthentication / TLS settings"
        )
    else:
        out.fixes.append("check the upstream is running and reachable on that address and port")
    if "URX" in entry.flags:
        out.fact("every attempt failed the same way and the retries ran out (URX)")


def _uo(
    out: _Out,
    entry: AccessLogEntry,
    config: ProxyConfig | None,
    view: MeshView | None,
    proxy: Mapping[str, Any] | None,
) -> None:
    cluster = entry.get("upstream_cluster")
    d = _cluster_facts(out, config, cluster)
    cb = (d or {}).get("circuitBreakers") or {}
    limits = ", ".join(f"{k} {v}" for k, v in cb.items() if v < rt.MAX_U32)
    out.cause = f"the circuit breaker of {cluster or 'the cluster'} was open: more requests or connections than it allows"
    if limits:
        out.fact(f"circuit breaker limits: {limits}")
    if view is not None and proxy is not None and cluster:
        import re

        stats = view.stats(
            proxy,
            "^cluster\\."
            + re.escape(cluster)
            + "\\.(upstream_rq_pending_overflow|upstream_cx_overflow|upstream_rq_retry_overflow|upstream_rq_pending_active|upstream_rq_active)$",
        )
        if stats:
            out.fact(
                "counters: " + ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in sorted(stats.items()))
            )
        else:
            # Istio's stats inclusion list turns cluster counters into null stats (agent/bootstrap.py).
            out.fact(
                "no overflow counters: the proxy keeps none for this cluster; MeshConfig defaultConfig."
                "proxyStatsMatcher inclusionSuffixes [upstream_rq_pending_overflow, upstream_cx_overflow] "
                "keeps them in pods started after it"
            )
    if d and d.get("destinationRule"):
        out.fixes.append(
            f"raise connectionPool limits in DestinationRule {d['destinationRule']} (tcp.maxConnections, http.http1MaxPendingRequests, http.http2MaxRequests) or send fewer concurrent requests"
        )
    else:
        out.fixes.append("raise the DestinationRule connectionPool limits or send fewer concurrent requests")


def _route_info(
    out: _Out,
    entry: AccessLogEntry,
    ev: dict[str, Any] | None,
    config: ProxyConfig | None,
    where: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The route the line names, from the evaluation (if it agrees) or by name."""
    name = entry.get("route_name")
    if ev and ev.get("route") and (not name or ev["route"]["name"] == name):
        return {"timeout": ev.get("timeout"), "retries": ev.get("retries"), "fault": ev.get("fault"),
                "vs": ev.get("virtualService"), "name": ev["route"]["name"]}  # fmt: skip
    if config is None:
        return None
    table = _route_table(config, where, entry)
    found = _route_by_name(config, table, name, entry.get("authority"))
    if found is None:
        return None
    r = found["route"]
    action = r.get("route") or {}
    vs = _vs_of(r)
    return {
        "timeout": {"value": action.get("timeout", rt.ENVOY_DEFAULT_TIMEOUT)},
        "retries": rt.describe_retry(action.get("retry_policy")),
        "fault": rt.describe_fault(r),
        "vs": {"namespace": vs.split("/")[0], "name": vs.split("/")[1]} if vs else None,
        "name": r.get("name", ""),
    }


def _ut(out: _Out, entry: AccessLogEntry, info: dict[str, Any] | None) -> None:
    dur = entry.duration_ms
    out.cause = "the upstream did not answer within the route's timeout" + (
        f" ({dur} ms elapsed)" if dur is not None else ""
    )
    if info:
        t = (info.get("timeout") or {}).get("value")
        if t:
            label = f"route {info['name']!r}" if info.get("name") else "the route's"
            out.fact(f"{label} timeout: {t}")
        r = info.get("retries") or {}
        if r.get("perTryTimeout"):
            out.fact(f"per-try timeout: {r['perTryTimeout']} ({r.get('attempts')} retries)")
        if info.get("vs"):
            vs = info["vs"]
            out.refs.append(f"VirtualService {vs['namespace']}/{vs['name']}")
            out.fixes.append(
                f"raise `timeout` in VirtualService {vs['namespace']}/{vs['name']}, or make the upstream faster"
            )
        f = info.get("fault") or {}
        if f.get("delay"):
            out.fact(
                f"the route also injects a delay of {f['delay']['fixedDelay']} for {rt.fmt_percent(f['delay']['percent'])} of requests"
            )
    if not out.fixes:
        out.fixes.append("raise the VirtualService `timeout` or make the upstream faster")
    if entry.get("upstream_host"):
        out.fact(f"the request was waiting on {entry.get('upstream_host')}")


def _urx(out: _Out, entry: AccessLogEntry, info: dict[str, Any] | None) -> None:
    up = entry.get("upstream_host") or "the upstream"
    if entry.details == "via_upstream":
        last = f": {up} answered {entry.code} to the last attempt too, and Envoy passed that answer on"
    else:
        last = f" ({entry.details})" if entry.details else ""
    r = (info or {}).get("retries") or {}
    tries = f" ({r['attempts']} retries, so {r['attempts'] + 1} attempts)" if r.get("attempts") else ""
    out.cause = f"every attempt failed and the retries ran out{tries}{last}"
    if r:
        text = f"retry policy: {r.get('attempts')} retries on {r.get('retryOn', '')}"
        if r.get("retriableStatusCodes"):
            text += f" (status codes {', '.join(str(c) for c in r['retriableStatusCodes'])})"
        if r.get("perTryTimeout"):
            text += f", perTryTimeout {r['perTryTimeout']}"
        out.fact(text)
    vs = (info or {}).get("vs")
    if vs:
        ref = f"{vs['namespace']}/{vs['name']}"
        out.refs.append(f"VirtualService {ref}")
        out.fact(f"the retries come from VirtualService {ref}")
        out.fixes.append(
            f"fix why {up} fails (see its own log for the same request id); retrying more only helps "
            f"passing failures (VirtualService {ref} `retries`)"
        )
    elif r:
        out.fact(
            "no VirtualService sets these retries: Istio's default (or MeshConfig defaultHttpRetryPolicy)"
        )
    if entry.get("request_id"):
        out.fixes.append(f"see every attempt: `isthmus explain --request-id {entry.get('request_id')}`")


def _retry_covers(retry: Mapping[str, Any], code: int) -> bool:
    """Whether an Envoy retry policy (`rt.describe_retry`) retries an answer with status `code`."""
    if not retry or not retry.get("attempts"):
        return False
    on = {t.strip() for t in str(retry.get("retryOn", "")).split(",")}
    return (
        ("5xx" in on and code >= 500)
        or ("gateway-error" in on and code in (502, 503, 504))
        or ("retriable-4xx" in on and code == 409)
        or (
            "retriable-status-codes" in on and code in [int(c) for c in retry.get("retriableStatusCodes", [])]
        )
    )


def _caller_route(entry: AccessLogEntry, caller: Mapping[str, Any], view: MeshView) -> dict[str, Any] | None:
    """The caller sidecar's route for the request (its retries and timeout), from its config now."""
    config = view.held_config(caller)
    ev = _evaluate(config, {"proxy": caller, "direction": "outbound"}, entry)
    return ev if ev and ev.get("route") else None


def _dc(out: _Out, entry: AccessLogEntry, where: Mapping[str, Any], view: MeshView | None) -> None:
    dur = entry.duration_ms
    took = f" after {dur} ms" if dur is not None else ""
    if where["direction"] == "inbound":
        caller_ip = _ip(entry.get("downstream_remote_address"))
        callers = [p for p in (view.proxies() if view else []) if p.get("ip") == caller_ip]
        who = _proxy_name(callers[0]) if callers else caller_ip or "the caller"
        caller_route = _caller_route(entry, callers[0], view) if callers and view is not None else None
        retry = (caller_route or {}).get("retries") or {}
        if entry.code and _retry_covers(retry, entry.code):
            # The app's answer had started (its status is logged): the caller read the status, decided to
            # retry, and reset this attempt, as Envoy does with an attempt it retries.
            out.cause = (
                f"the caller ({who}) dropped this attempt{took}, after the app had answered {entry.code}: "
                f"its retry policy ({retry.get('attempts')} retries on {retry.get('retryOn', '')}) retries "
                f"{entry.code} and abandons the failed attempt (this is one of the request's attempts)"
            )
            vs = (caller_route or {}).get("virtualService")
            if vs:
                out.refs.append(f"VirtualService {vs['namespace']}/{vs['name']}")
                out.fact(f"the caller's retries come from VirtualService {vs['namespace']}/{vs['name']}")
            out.fixes.append(f"fix why the app answers {entry.code}; the retries hide passing failures only")
        else:
            out.cause = (
                f"the caller ({who}) closed the connection{took}, before this pod's answer was complete: "
                "typically the caller's own route timeout (its log shows UT for the same request) or its "
                "client gave up"
            )
            timeout = ((caller_route or {}).get("timeout") or {}).get("value")
            if timeout and timeout not in ("0s", "0"):
                out.fact(f"the caller's route timeout for this request: {timeout}")
        out.fixes.append(
            "look up the same request id in the caller's log: `isthmus explain --request-id "
            + (entry.get("request_id") or "ID")
            + "`"
        )
    else:
        out.cause = f"the client (the app sending through this proxy) closed the connection{took}, before the response was complete: its own timeout is shorter than the upstream's response time"
        out.fixes.append("raise the client's timeout, or find why the upstream is slow")
    if entry.get("upstream_host"):
        out.fact(f"the upstream was {entry.get('upstream_host')} ({entry.get('upstream_cluster')})")


def _fault(out: _Out, entry: AccessLogEntry, info: dict[str, Any] | None, flag: str) -> None:
    what = "aborted" if flag == "FI" else "delayed"
    out.cause = f"the request was {what} on purpose by fault injection configured on its route"
    if info and info.get("fault"):
        f = info["fault"]
        if f.get("abort"):
            a = f["abort"]
            out.fact(
                f"fault abort: status {a.get('httpStatus', a.get('grpcStatus'))} for {rt.fmt_percent(a['percent'])} of requests"
            )
        if f.get("delay"):
            out.fact(
                f"fault delay: {f['delay']['fixedDelay']} for {rt.fmt_percent(f['delay']['percent'])} of requests"
            )
    if info and info.get("vs"):
        vs = info["vs"]
        out.refs.append(f"VirtualService {vs['namespace']}/{vs['name']}")
        out.fixes.append(
            f"remove the `fault` of VirtualService {vs['namespace']}/{vs['name']} if it is not intended"
        )


def _rbac(
    out: _Out, entry: AccessLogEntry, config: ProxyConfig | None, proxy: Mapping[str, Any] | None
) -> None:
    policy = fl.rbac_policy(entry.details) or "none"
    rules = authz_mod.collect(config) if config is not None else []
    name = _proxy_name(proxy)
    if policy == "none":
        allows = sorted({r.policy_ref for r in rules if r.action == "ALLOW" and not r.dry_run})
        out.cause = (
            f"denied by authorization on {name}: ALLOW policies apply to it"
            + (f" ({', '.join(allows)})" if allows else "")
            + " and none of their rules matched this request"
        )
        for r in rules:
            if r.action == "ALLOW" and not r.dry_run:
                out.fact(f"ALLOW {r.policy_ref} rule[{r.rule_index}]: {r.summary()}")
        out.refs.extend(
            f"AuthorizationPolicy {r.parsed[0]}/{r.parsed[1]}"
            for r in rules
            if r.action == "ALLOW" and not r.dry_run and r.parsed
        )
        out.fixes.append(
            "add an ALLOW rule that matches this source and operation (or remove the ALLOW policy)"
        )
    else:
        parsed = fl.parse_policy_name(policy)
        ref = f"{parsed[1]}.{parsed[0]}" if parsed else policy
        rule = f" rule {parsed[2]}" if parsed else ""
        # A CUSTOM rule whose provider cannot be used denies instead (istiod's bad-CUSTOM-action rules).
        bad_custom = policy.endswith(fl.BAD_CUSTOM_SUFFIX)
        action = "CUSTOM" if bad_custom else "DENY"
        out.cause = f"denied by {action} AuthorizationPolicy {ref}{rule} on {name}"
        if bad_custom:
            out.cause += ": its ext_authz provider cannot be used, so what its rules match is denied"
        for r in rules:
            if r.name == policy:
                out.fact(f"{action} {r.policy_ref} rule[{r.rule_index}]: {r.summary()}")
        if parsed and bad_custom:
            out.refs.append(f"AuthorizationPolicy {parsed[0]}/{parsed[1]}")
            out.fixes.append(
                f"fix the provider CUSTOM policy {parsed[0]}/{parsed[1]} names (MeshConfig extensionProviders: "
                "its name, service and port); the control plane's status says what is wrong with it"
            )
        elif parsed:
            out.refs.append(f"AuthorizationPolicy {parsed[0]}/{parsed[1]}")
            out.fixes.append(
                f"narrow the rule of DENY policy {parsed[0]}/{parsed[1]} if this request should pass"
            )
    if proxy:
        out.fixes.append(
            f"see every policy on the proxy: `isthmus x authz check {proxy['instance']} -n {proxy['namespace']}`"
        )


def _via_upstream_error(
    out: _Out, entry: AccessLogEntry, where: Mapping[str, Any], view: MeshView | None = None
) -> None:
    code = entry.code
    up = entry.get("upstream_host") or "the upstream"
    if code == 403 and where["direction"] in ("outbound", "gateway"):
        dest = None
        if view is not None and entry.get("upstream_host"):
            ip = _ip(entry.get("upstream_host"))
            dest = next((p for p in view.proxies() if p.get("ip") == ip), None)
        dest_config = view.held_config(dest) if view is not None and dest is not None else None
        rules = (
            [r for r in authz_mod.collect(dest_config) if not r.dry_run] if dest_config is not None else []
        )
        if dest is not None and dest_config is not None and not rules:
            out.cause = (
                f"{up} ({_proxy_name(dest)}) answered 403, and no AuthorizationPolicy is in force on its "
                "sidecar: the app itself refused the request"
            )
        elif rules:
            names = sorted({f"{r.action} {r.policy_ref}" for r in rules})
            out.cause = (
                f"{up} ({_proxy_name(dest)}) answered 403: most likely its sidecar denied the request by "
                f"AuthorizationPolicy ({', '.join(names)} in force there; its own log line says "
                "rbac_access_denied_matched_policy[...]), else the app itself"
            )
            out.refs.extend(f"AuthorizationPolicy {r.parsed[0]}/{r.parsed[1]}" for r in rules if r.parsed)
        else:
            out.cause = (
                f"{up} answered 403: most likely the destination's sidecar denied it by AuthorizationPolicy "
                "(its own log line says rbac_access_denied_matched_policy[...]), else the app itself"
            )
        out.fixes.append(
            "explain the destination's line: `isthmus explain --request-id "
            + (entry.get("request_id") or "ID")
            + "`"
        )
    elif code == 503 and where["direction"] in ("outbound", "gateway"):
        out.cause = f"{up} answered 503 itself: the destination's sidecar or app failed (see its log for the same request id)"
    else:
        out.cause = f"the application behind {up} answered {code}: Envoy forwarded the answer unchanged"


# --- the entry point ---------------------------------------------------------------------------------


def primary_flag(flags: Sequence[str]) -> str | None:
    for f in PRIORITY:
        if f in flags:
            return f
    return flags[0] if flags else None


def explain_flag(flag: str) -> dict[str, Any]:
    info = fl.lookup(flag)
    if info is None:
        if flag.upper() in ("RBAC", "403"):
            info = fl.RBAC_INFO
        else:
            raise KeyError(flag)
    return {
        "flag": info.flag,
        "name": info.name,
        "status": info.status,
        "meaning": info.meaning,
        "causes": list(info.causes),
        "fixes": list(info.fixes),
        "details": list(info.details),
    }


def explain_entry(
    entry: AccessLogEntry, view: MeshView | None = None, proxy_hint: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    where = locate(entry, view, proxy_hint)
    proxy = where["proxy"]
    config = view.held_config(proxy) if view is not None and proxy is not None else None
    flags = entry.flags
    primary = primary_flag(flags)
    rbac_policy = fl.rbac_policy(entry.details)
    out = _Out()
    ev = None
    if primary in ("NR", "NC", "UT", "FI", "DI", "URX", "UH", "UO", "UF") or (
        primary is None and entry.code >= 400
    ):
        ev = _evaluate(config, where, entry)
    if not entry.get("upstream_cluster") and ev and ev.get("route"):
        # Some renderings leave the cluster out (e.g. UH before an upstream was chosen): the route has it.
        dests = ev.get("destinations") or []
        if len(dests) == 1:
            entry.fields["upstream_cluster"] = dests[0]["name"]
            entry.extra["cluster_from_route"] = True
    if rbac_policy is not None:
        _rbac(out, entry, config, proxy)
        kind = "RBAC"
    elif primary == "NR":
        _nr(out, entry, ev, where, config)
        kind = primary
    elif primary == "NC":
        _nc(out, entry, ev, config, view)
        kind = primary
    elif primary == "UH":
        _uh(out, entry, config, view)
        _route_vs(out, ev, entry)
        kind = primary
    elif primary == "UO":
        _uo(out, entry, config, view, proxy)
        _route_vs(out, ev, entry)
        kind = primary
    elif primary == "UF":
        _uf(out, entry, config, view)
        _route_vs(out, ev, entry)
        kind = primary
    elif primary == "UT":
        _ut(out, entry, _route_info(out, entry, ev, config, where))
        kind = primary
    elif primary == "DC":
        _dc(out, entry, where, view)
        kind = primary
    elif primary in ("FI", "DI"):
        _fault(out, entry, _route_info(out, entry, ev, config, where), primary)
        kind = primary
    elif primary == "URX":
        _urx(out, entry, _route_info(out, entry, ev, config, where))
        _cluster_facts(out, config, entry.get("upstream_cluster"))
        kind = primary
    elif primary is not None:
        info = fl.lookup(primary)
        out.cause = info.meaning if info else f"response flag {primary}"
        if primary in ("UC", "UR", "LR"):
            _cluster_facts(out, config, entry.get("upstream_cluster"))
        kind = primary
    elif entry.code >= 400 or entry.code == 0:
        if entry.details == "via_upstream":
            _via_upstream_error(out, entry, where, view)
        else:
            out.cause = f"status {entry.code} ({entry.details or 'no details'})"
        kind = "UPSTREAM"
    else:
        out.cause = f"nothing went wrong: {entry.code} {entry.details or ''}".strip()
        kind = "OK"
    infos = [fl.lookup(f) for f in flags]
    flag_list = [{"flag": i.flag, "name": i.name, "meaning": i.meaning} for i in infos if i is not None]
    if rbac_policy is not None:
        flag_list.insert(0, {"flag": "RBAC", "name": fl.RBAC_INFO.name, "meaning": fl.RBAC_INFO.meaning})
    general = (
        fl.RBAC_INFO if kind == "RBAC" else (fl.lookup(kind) if kind not in ("OK", "UPSTREAM") else None)
    )
    fixes = list(out.fixes)
    if general is not None and not fixes:
        fixes.extend(general.fixes)
    return {
        "line": entry.to_dict(),
        "kind": kind,
        "status": entry.code,
        "flags": flag_list,
        "details": entry.details,
        "proxy": _proxy_name(proxy) if proxy else None,
        "direction": where["direction"],
        "cause": out.cause,
        "config": out.facts,
        "resources": sorted(set(out.refs)),
        "fixes": fixes,
        "configChecked": config is not None,
    }


# --- text ---------------------------------------------------------------------------------------------


def render_flag(info: Mapping[str, Any]) -> str:
    lines = [
        f"{info['flag']} ({info['name']}){' -> ' + info['status'] if info.get('status') else ''}: {info['meaning']}"
    ]
    if info.get("details"):
        lines.append("Response code details: " + ", ".join(info["details"]))
    if info.get("causes"):
        lines.append("Likely causes:")
        lines.extend(f"  - {c}" for c in info["causes"])
    if info.get("fixes"):
        lines.append("What to do:")
        lines.extend(f"  - {f}" for f in info["fixes"])
    return "\n".join(lines) + "\n"


def render_explanation(ex: Mapping[str, Any]) -> str:
    line = ex["line"]
    flags = ",".join(f["flag"] for f in ex["flags"] if f["flag"] != "RBAC") or "-"
    where = f" at {ex['proxy']} ({ex['direction']})" if ex.get("proxy") else ""
    req = f"{line.get('method', '')} {line.get('authority', '')}{line.get('path', '')}".strip()
    head = f"{ex['status']} {flags} {ex.get('details') or ''}".strip()
    lines = [f"{head}{where}: {req}" if req else f"{head}{where}"]
    if line.get("route_name") or line.get("upstream_cluster"):
        lines.append(
            f"  route {line.get('route_name', '-') or '-'}, cluster {line.get('upstream_cluster', '-') or '-'}, request id {line.get('request_id', '-') or '-'}"
        )
    for f in ex["flags"]:
        lines.append(f"  {f['flag']}: {f['meaning']}")
    lines.append(f"Cause: {ex['cause']}")
    if ex.get("config"):
        lines.append("Config involved:")
        lines.extend(f"  - {c}" for c in ex["config"])
    if ex.get("resources"):
        lines.append("Resources: " + ", ".join(ex["resources"]))
    if ex.get("fixes"):
        lines.append("Fix:")
        lines.extend(f"  - {f}" for f in ex["fixes"])
    if not ex.get("configChecked"):
        lines.append("(the proxy's current config was not consulted)")
    return "\n".join(lines) + "\n"
