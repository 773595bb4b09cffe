"""`isthmus route test`: where a request would go, evaluated on a proxy's route table.

The table is either what the proxy holds (Envoy's config dump) or what the control plane would generate
with candidate config added (`preview`); both arrive as a `ProxyConfig`, and the evaluation is the same:
Envoy's virtual-host and route selection (`matching`), then what the chosen route does (clusters and
their split, endpoints from EDS, timeout, retries, faults, mirrors, rewrites, hash policy, redirects,
direct responses) and what Envoy answers when it cannot route (404 NR, 503 NC, 503 UH).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from isthmus.api.validation.common import routing_claim
from isthmus.debug import matching as m
from isthmus.debug.envoy_config import (
    ProxyConfig,
    hcm_serving,
    http_route_names,
    listener_port,
    typed_per_filter,
)

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ENVOY_DEFAULT_TIMEOUT = "15s"
MAX_U32 = 4294967295
VS_CONFIG_PREFIX = "/apis/networking.istio.io/v1/namespaces/"

_REDIRECT_CODES = {
    "MOVED_PERMANENTLY": 301,
    "FOUND": 302,
    "SEE_OTHER": 303,
    "TEMPORARY_REDIRECT": 307,
    "PERMANENT_REDIRECT": 308,
}
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}

# (namespace, name) -> the VirtualService spec model (api.networking), or None when unknown.
VsLookup = Callable[[str, str], Any]


class RouteTestError(Exception):
    pass


# --- small formatting helpers ------------------------------------------------------------------


def percent(fraction: Mapping[str, Any] | None) -> float:
    """envoy.type.v3.FractionalPercent as a percentage (no fraction = 100%)."""
    if not fraction:
        return 100.0
    num = float(fraction.get("numerator", 0) or 0)
    den = _DENOMINATORS.get(str(fraction.get("denominator", "HUNDRED")), 100)
    return num * 100.0 / den


def fmt_percent(value: float) -> str:
    return f"{value:.4g}%"


def parse_vs_path(path: str) -> tuple[str, str] | None:
    """(namespace, name) of `/apis/networking.istio.io/v1/namespaces/<ns>/virtual-service/<name>`."""
    if not path.startswith(VS_CONFIG_PREFIX):
        return None
    rest = path[len(VS_CONFIG_PREFIX) :].split("/")
    if len(rest) == 3 and rest[1] == "virtual-service":
        return rest[0], rest[2]
    return None


def parse_dr_path(path: str) -> tuple[str, str] | None:
    if not path.startswith(VS_CONFIG_PREFIX):
        return None
    rest = path[len(VS_CONFIG_PREFIX) :].split("/")
    if len(rest) == 3 and rest[1] == "destination-rule":
        return rest[0], rest[2]
    return None


def parse_cluster(name: str) -> dict[str, Any]:
    parts = name.split("|")
    if len(parts) == 4 and parts[0] in ("outbound", "inbound") and parts[1].isdigit():
        return {"direction": parts[0], "port": int(parts[1]), "subset": parts[2], "host": parts[3]}
    return {}


# --- which table ----------------------------------------------------------------------------------


def gateway_route_table(
    config: ProxyConfig, ports: Sequence[int], sni: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """(route config name, listener) serving one of `ports` on a gateway (first port that has one)."""
    for port in ports:
        for lst in config.listeners:
            if listener_port(lst) != port:
                continue
            for name in http_route_names(lst, sni):
                if name in config.routes:
                    return name, lst
    return None


# --- VirtualService rule index -------------------------------------------------------------------


def _match_dict(match: Any) -> dict[str, Any] | None:
    """The Envoy match a rule's match becomes; None for one the generator refuses (its VirtualService is
    left out of the config, so no route of the proxy comes from it)."""
    from google.protobuf.json_format import MessageToDict

    from isthmus.xds.gen.routes import translate_route_match

    try:
        return MessageToDict(translate_route_match(match), preserving_proto_field_name=True)
    except ValueError:
        return None


def _source_ok(match: Any, labels: Mapping[str, str], namespace: str, gateways: frozenset[str]) -> bool:
    if match is None:
        return True
    if match.gateways:
        return bool(set(match.gateways) & gateways) or any(
            g.split("/")[-1] in {x.split("/")[-1] for x in gateways} for g in match.gateways
        )
    for k, v in (match.source_labels or {}).items():
        if labels.get(k) != v:
            return False
    return not match.source_namespace or match.source_namespace == namespace


def vs_rule_index(
    spec: Any,
    route: Mapping[str, Any],
    port: int | None,
    labels: Mapping[str, str] | None = None,
    namespace: str = "",
    gateways: frozenset[str] = frozenset({"mesh"}),
) -> tuple[int, int | None] | None:
    """(http rule index, match index or None) of the VirtualService rule that produced `route`.

    Rules are re-translated with the generator's own match translation and compared with the route's
    match; names, `port` and source conditions narrow the choice as they did at generation.
    """
    want = route.get("match") or {}
    name = route.get("name", "")
    for i, http in enumerate(getattr(spec, "http", None) or ()):
        if getattr(http, "delegate", None) is not None:
            continue
        matches = list(http.match or ()) or [None]
        for j, match in enumerate(matches):
            rname = http.name or ""
            if match is not None and match.name:
                rname = f"{rname}.{match.name}"
            if rname != name:
                continue
            if match is not None and match.port and port is not None and int(match.port) != port:
                continue
            if labels is not None and not _source_ok(match, labels, namespace, gateways):
                continue
            if _match_dict(match) != want:
                continue
            return i, (j if match is not None else None)
    return None


def describe_vs_match(match: Any) -> str:
    if match is None:
        return "any request"
    parts = []

    def sm(x: Any) -> str:
        for kind in ("exact", "prefix", "suffix", "regex"):
            v = getattr(x, kind, None)
            if v is not None:
                return f"{kind} {v}"
        return "present"

    if match.uri is not None:
        parts.append(f"uri {sm(match.uri)}" + (" (ignore case)" if match.ignore_uri_case else ""))

    def header(k: str) -> str:
        claim = routing_claim(k)
        return f"header {k}" if claim is None else f"JWT claim {'.'.join(claim)}"

    for k, v in (match.headers or {}).items():
        parts.append(f"{header(k)} {sm(v) if v is not None else 'present'}")
    for k, v in (match.without_headers or {}).items():
        parts.append(f"without {header(k)} {sm(v) if v is not None else 'present'}")
    for k, v in (match.query_params or {}).items():
        parts.append(f"query {k} {sm(v) if v is not None else 'present'}")
    for attr in ("method", "authority", "scheme"):
        v = getattr(match, attr)
        if v is not None:
            parts.append(f"{attr} {sm(v)}")
    if match.port:
        parts.append(f"port {match.port}")
    if match.source_labels:
        parts.append("sourceLabels " + ",".join(f"{k}={v}" for k, v in match.source_labels.items()))
    if match.source_namespace:
        parts.append(f"sourceNamespace {match.source_namespace}")
    if match.gateways:
        parts.append("gateways " + ",".join(match.gateways))
    return ", ".join(parts) or "any request"


# --- what the route does ---------------------------------------------------------------------------


def describe_retry(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not policy:
        return None
    out: dict[str, Any] = {
        "attempts": int(policy.get("num_retries", 1) if policy.get("num_retries") is not None else 1),
        "retryOn": policy.get("retry_on", ""),
    }
    if policy.get("retriable_status_codes"):
        out["retriableStatusCodes"] = list(policy["retriable_status_codes"])
    if policy.get("per_try_timeout"):
        out["perTryTimeout"] = policy["per_try_timeout"]
    if policy.get("retry_back_off"):
        out["backoff"] = (policy["retry_back_off"] or {}).get("base_interval")
    preds = [p.get("name", "") for p in policy.get("retry_host_predicate", []) or []]
    if preds:
        out["hostPredicates"] = preds
    return out


def is_istio_default_retry(policy: Mapping[str, Any] | None) -> bool:
    if not policy:
        return False
    return (
        policy.get("retry_on") == DEFAULT_RETRY_ON
        and int(policy.get("num_retries", 1) or 0) == 2
        and not policy.get("per_try_timeout")
        and not policy.get("retriable_status_codes")
    )


def describe_fault(route: Mapping[str, Any]) -> dict[str, Any] | None:
    fault = typed_per_filter(route, "envoy.filters.http.fault")
    if not fault:
        return None
    out: dict[str, Any] = {}
    delay = fault.get("delay")
    if delay:
        out["delay"] = {
            "fixedDelay": delay.get("fixed_delay"),
            "percent": percent(delay.get("percentage")),
        }
    abort = fault.get("abort")
    if abort:
        a: dict[str, Any] = {"percent": percent(abort.get("percentage"))}
        if "http_status" in abort:
            a["httpStatus"] = int(abort["http_status"])
        if "grpc_status" in abort:
            a["grpcStatus"] = int(abort["grpc_status"])
        out["abort"] = a
    return out or None


def describe_hash_policy(policies: Sequence[Mapping[str, Any]] | None) -> list[str]:
    out = []
    for hp in policies or ():
        if "header" in hp:
            out.append(f"header {hp['header'].get('header_name', '')}")
        elif "cookie" in hp:
            c = hp["cookie"]
            ttl = f" ttl {c['ttl']}" if c.get("ttl") else ""
            out.append(f"cookie {c.get('name', '')}{ttl}")
        elif "connection_properties" in hp:
            out.append("source IP")
        elif "query_parameter" in hp:
            out.append(f"query parameter {hp['query_parameter'].get('name', '')}")
        else:
            out.append(str(hp))
    return out


def _rewritten_path(route: Mapping[str, Any], action: Mapping[str, Any], request: m.Request) -> str | None:
    path = request.normalized_path
    only, q, query = path.partition("?")
    match = route.get("match") or {}
    if "prefix_rewrite" in action:
        new = action["prefix_rewrite"]
        if "prefix" in match:
            return new + only[len(match["prefix"]) :] + (q + query)
        if "path" in match:
            return new + (q + query)
        if "path_separated_prefix" in match:
            return new + only[len(match["path_separated_prefix"]) :] + (q + query)
        return None
    rr = action.get("regex_rewrite")
    if rr:
        pattern = (rr.get("pattern") or {}).get("regex", "")
        try:
            new_only = m._re.sub(pattern, rr.get("substitution", ""), only)
        except Exception:
            return None
        return new_only + (q + query)
    return None


def describe_redirect(
    redirect: Mapping[str, Any], route: Mapping[str, Any], request: m.Request
) -> dict[str, Any]:
    code = _REDIRECT_CODES.get(str(redirect.get("response_code", "MOVED_PERMANENTLY")), 301)
    scheme = redirect.get("scheme_redirect") or (
        "https" if redirect.get("https_redirect") else request.scheme
    )
    host = request.authority
    i = m.port_start(host)
    hostname, port = (host[:i], host[i + 1 :]) if i >= 0 else (host, "")
    if redirect.get("host_redirect"):
        hostname = redirect["host_redirect"]
    if redirect.get("port_redirect"):
        port = str(redirect["port_redirect"])
    elif redirect.get("scheme_redirect") or redirect.get("https_redirect"):
        port = ""
    path = request.normalized_path
    only, q, query = path.partition("?")
    if redirect.get("path_redirect"):
        only = redirect["path_redirect"]
        if "?" in only:
            only, _, query = only.partition("?")
            q = "?"
    elif "prefix_rewrite" in redirect:
        match = route.get("match") or {}
        if "prefix" in match:
            only = redirect["prefix_rewrite"] + only[len(match["prefix"]) :]
        else:
            only = redirect["prefix_rewrite"]
    if redirect.get("strip_query"):
        q = query = ""
    location = f"{scheme}://{hostname}{':' + port if port else ''}{only}{q}{query}"
    return {"status": code, "location": location}


def describe_cluster(config: ProxyConfig, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, **parse_cluster(name)}
    cl = config.clusters.get(name)
    out["exists"] = cl is not None
    if cl is None:
        return out
    ctype = cl.get("type") or ((cl.get("cluster_type") or {}).get("name")) or "STATIC"
    out["type"] = ctype
    md = ((cl.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
    if md.get("config"):
        dr = parse_dr_path(md["config"])
        if dr:
            out["destinationRule"] = f"{dr[0]}/{dr[1]}"
    if md.get("services"):
        svc = md["services"][0]
        out["service"] = f"{svc.get('host', '')}"
    lb = cl.get("lb_policy") or "ROUND_ROBIN"
    out["loadBalancer"] = lb
    thresholds = (cl.get("circuit_breakers") or {}).get("thresholds") or []
    default_t = next((t for t in thresholds if t.get("priority", "DEFAULT") == "DEFAULT"), None)
    if default_t is not None:
        cb = {}
        for key, label in (
            ("max_connections", "maxConnections"),
            ("max_pending_requests", "maxPendingRequests"),
            ("max_requests", "maxRequests"),
            ("max_retries", "maxRetries"),
        ):
            value = default_t.get(key)
            cb[label] = (
                1024 if value is None and key != "max_retries" else (3 if value is None else int(value))
            )
        out["circuitBreakers"] = cb
    else:
        out["circuitBreakers"] = {
            "maxConnections": 1024,
            "maxPendingRequests": 1024,
            "maxRequests": 1024,
            "maxRetries": 3,
        }
    od = cl.get("outlier_detection")
    if od is not None:
        out["outlierDetection"] = {
            k: od[k]
            for k in (
                "consecutive_5xx",
                "consecutive_gateway_failure",
                "consecutive_local_origin_failure",
                "interval",
                "base_ejection_time",
                "max_ejection_percent",
                "enforcing_consecutive_5xx",
                "split_external_local_origin_errors",
            )
            if k in od
        }
    out["connectTimeout"] = cl.get("connect_timeout", "5s")
    tls = None
    for tsm in cl.get("transport_socket_matches", []) or []:
        if (tsm.get("match") or {}).get("tlsMode") == "istio":
            tls = "ISTIO_MUTUAL to endpoints with a sidecar (auto mTLS)"
    ts, proxy_protocol = _unwrap_proxy_protocol(cl.get("transport_socket"))
    if ts and "tls" in str(ts.get("name", "")):
        tc = (ts.get("typed_config") or {}).get("common_tls_context") or {}
        tls = (
            "MUTUAL"
            if tc.get("tls_certificates") or tc.get("tls_certificate_sds_secret_configs")
            else "SIMPLE"
        )
        sni = (ts.get("typed_config") or {}).get("sni")
        if sni:
            tls += f" (sni {sni})"
    out["tls"] = tls or "plaintext"
    matches = cl.get("transport_socket_matches") or []
    proxy_protocol = proxy_protocol or next(
        (v for v in (_unwrap_proxy_protocol(m.get("transport_socket"))[1] for m in matches) if v), None
    )
    if proxy_protocol:
        out["proxyProtocol"] = proxy_protocol
    if ctype == "envoy.clusters.dynamic_forward_proxy":
        out["dynamicForwardProxy"] = True
    return out


def _unwrap_proxy_protocol(ts: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, str | None]:
    """DestinationRule proxyProtocol wraps the cluster's transport socket: (the wrapped socket, the
    PROXY protocol version), or (the socket, None) when it is not wrapped."""
    if not ts or ts.get("name") != "envoy.transport_sockets.upstream_proxy_protocol":
        return ts, None
    cfg = ts.get("typed_config") or {}
    return cfg.get("transport_socket"), (cfg.get("config") or {}).get("version", "V1")


def pinned_pod(action: Mapping[str, Any]) -> str | None:
    """The pod a route asks for (`metadata_match` on `envoy.lb` `pod`: a headless service's pod named by
    the authority, `xds.gen.headless`), else None."""
    md = ((action.get("metadata_match") or {}).get("filter_metadata") or {}).get("envoy.lb") or {}
    pod = md.get("pod")
    return str(pod) if pod else None


def _endpoint_summary(
    config: ProxyConfig, cluster: str, instances: Mapping[str, str], pod: str | None = None
) -> dict[str, Any]:
    eps = config.endpoints(cluster)
    if eps is None:
        return {"known": False, "endpoints": [], "healthy": 0, "total": 0}
    if pod is not None:
        # The subset load balancer sends to that pod's endpoint or nowhere (NO_FALLBACK: 503 UH).
        eps = [ep for ep in eps if ep.pod == pod]
    out = []
    for ep in eps:
        d = ep.to_dict()
        inst = instances.get(ep.address)
        if inst:
            d["instance"] = inst
        out.append(d)
    return {
        "known": True,
        "endpoints": out,
        "healthy": sum(1 for e in eps if e.healthy),
        "total": len(eps),
    }


@dataclass
class Context:
    """Optional knowledge that makes the answer richer: who is asking, and the VirtualServices."""

    proxy: Mapping[str, Any] | None = None  # a status `proxies[]` entry
    vs_lookup: VsLookup | None = None
    instances_by_ip: Mapping[str, str] | None = None


def evaluate(
    config: ProxyConfig,
    route_config_name: str,
    request: m.Request,
    ctx: Context | None = None,
) -> dict[str, Any]:
    """Where `request` goes on the proxy's route config `route_config_name` (see module doc)."""
    ctx = ctx or Context()
    # Routes see the path as the HCM that serves this route config normalized it (MeshConfig
    # pathNormalization); without that HCM at hand, istiod's default.
    hcm = hcm_serving(config.listeners, route_config_name)
    if hcm is not None:
        request = replace(request, path_normalization=m.PathNormalization.of_hcm(hcm))
    rc = config.routes.get(route_config_name)
    if rc is None:
        raise RouteTestError(
            f"the proxy has no route configuration {route_config_name!r} (it has: "
            f"{', '.join(config.route_names()) or 'none'})"
        )
    result: dict[str, Any] = {
        "request": request.to_dict(),
        "source": "held" if config.source == "envoy" else config.source,
        "configVersion": config.version,
        "routeConfig": route_config_name,
        "ignorePortInHostMatching": bool(rc.get("ignore_port_in_host_matching")),
    }
    if ctx.proxy:
        p = ctx.proxy
        result["proxy"] = {
            "id": p.get("id"),
            "name": f"{p.get('instance')}.{p.get('namespace')}",
            "kind": p.get("kind"),
        }
    vhm = m.select_virtual_host(rc, request.authority)
    if vhm is None:
        result["virtualHost"] = None
        result["expected"] = {
            "status": 404,
            "flags": "NR",
            "details": "route_not_found",
            "reason": f"no virtual host of {route_config_name} has a domain matching {request.authority!r}",
        }
        return result
    vh = vhm.vhost
    result["virtualHost"] = {"name": vh.get("name", ""), "domain": vhm.domain, "match": vhm.how}
    # A sidecar's outbound listener has no jwt_authn (istiod puts it on inbound and gateway listeners
    # only), so its `@request.auth.claims` routes never see a claim; a gateway's do.
    metadata = {} if ctx.proxy and ctx.proxy.get("kind") == "sidecar" else None
    rm = m.select_route(vh, request, metadata)
    result["notMatched"] = [
        {"index": i, "name": r.get("name", ""), "match": m.describe_match(r.get("match") or {}), "why": why}
        for i, r, why in rm.skipped
        if "connect_matcher" not in (r.get("match") or {})
    ]
    if rm.route is None:
        catch_all = [r for r in vh.get("routes", []) if "connect_matcher" not in (r.get("match") or {})]
        result["route"] = None
        if not catch_all:
            result["expected"] = {
                "status": 404,
                "flags": "NR",
                "details": "route_not_found",
                "reason": f"virtual host {vh.get('name', '')} has no routes: nothing on this proxy serves "
                f"host {request.authority!r} (no VirtualService bound here lists it)",
            }
            return result
        result["expected"] = {
            "status": 404,
            "flags": "NR",
            "details": "route_not_found",
            "reason": (
                f"virtual host {vh.get('name', '')} has {len(catch_all)} route(s) and none matches "
                f"{request.method} {m.path_only(request.normalized_path)!r}"
            ),
        }
        return result
    route = rm.route
    result["route"] = {
        "name": route.get("name", ""),
        "index": rm.index,
        "match": m.describe_match(route.get("match") or {}),
    }
    _virtual_service(result, route, vh, ctx)
    if "redirect" in route:
        red = describe_redirect(route["redirect"], route, request)
        result["action"] = "redirect"
        result["redirect"] = red
        result["expected"] = {
            "status": red["status"],
            "flags": "-",
            "details": "direct_response",
            "reason": f"redirect to {red['location']}",
        }
        _common(result, route, vh)
        return result
    if "direct_response" in route:
        dr = route["direct_response"]
        body = (dr.get("body") or {}).get("inline_string")
        if body is None and (dr.get("body") or {}).get("inline_bytes"):
            try:
                body = base64.b64decode(dr["body"]["inline_bytes"]).decode("utf-8", "replace")
            except (ValueError, TypeError):
                body = None
        result["action"] = "direct_response"
        result["directResponse"] = {"status": int(dr.get("status", 200)), "body": body}
        reason = "answered by the proxy itself (direct response)"
        if vh.get("name") == "block_all":
            reason = "the host is not in the registry and outboundTrafficPolicy is REGISTRY_ONLY (block_all)"
        result["expected"] = {
            "status": int(dr.get("status", 200)),
            "flags": "-",
            "details": "direct_response",
            "reason": reason,
        }
        _common(result, route, vh)
        return result
    action = route.get("route") or {}
    result["action"] = "route"
    _route_action(result, config, route, action, vh, request, ctx)
    _common(result, route, vh)
    return result


def _virtual_service(
    result: dict[str, Any], route: Mapping[str, Any], vh: Mapping[str, Any], ctx: Context
) -> None:
    md = ((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
    ref = parse_vs_path(str(md.get("config", "")))
    if ref is None:
        result["virtualService"] = None
        return
    ns, name = ref
    vs: dict[str, Any] = {"namespace": ns, "name": name}
    result["virtualService"] = vs
    if ctx.vs_lookup is None:
        return
    spec = ctx.vs_lookup(ns, name)
    if spec is None:
        vs["note"] = "the VirtualService is not in the control plane's config (any more)"
        return
    vh_name = str(vh.get("name", ""))
    port = None
    if ":" in vh_name and vh_name.rsplit(":", 1)[1].isdigit():
        port = int(vh_name.rsplit(":", 1)[1])
    labels = None
    namespace = ""
    gateways: frozenset[str] = frozenset({"mesh"})
    if ctx.proxy:
        labels = ctx.proxy.get("labels") or {}
        namespace = ctx.proxy.get("namespace", "")
        if ctx.proxy.get("kind") == "gateway":
            labels = None  # gateway names are not known here: do not filter on source conditions
    found = vs_rule_index(spec, route, port, labels, namespace, gateways)
    if found is None and labels is not None:
        found = vs_rule_index(spec, route, port)
    if found is None:
        vs["note"] = "rule not identified (delegated or changed since)"
        return
    i, j = found
    vs["ruleIndex"] = i
    http = spec.http[i]
    if http.name:
        vs["ruleName"] = http.name
    if j is not None:
        vs["matchIndex"] = j
        vs["match"] = describe_vs_match(http.match[j])
    else:
        vs["match"] = "any request (no match: catch-all rule)"
    vs["setsRetries"] = http.retries is not None
    vs["setsTimeout"] = http.timeout is not None


def _route_action(
    result: dict[str, Any],
    config: ProxyConfig,
    route: Mapping[str, Any],
    action: Mapping[str, Any],
    vh: Mapping[str, Any],
    request: m.Request,
    ctx: Context,
) -> None:
    instances = dict(ctx.instances_by_ip or {})
    dests: list[tuple[str, int]] = []
    if action.get("cluster"):
        dests = [(action["cluster"], 100)]
    elif action.get("weighted_clusters"):
        for wc in action["weighted_clusters"].get("clusters", []) or []:
            w = wc.get("weight", 0)
            if isinstance(w, dict):
                w = w.get("value", 0)
            dests.append((wc.get("name", ""), int(w or 0)))
    elif action.get("cluster_header"):
        result["destinations"] = []
        result["expected"] = {
            "status": None,
            "flags": "",
            "details": "",
            "reason": f"cluster from request header {action['cluster_header']!r}",
        }
        return
    total = sum(w for _, w in dests) or 1
    pod = pinned_pod(action)
    destinations = []
    for name, weight in dests:
        d = describe_cluster(config, name)
        d["weight"] = weight
        d["percent"] = round(weight * 100.0 / total, 2)
        if pod is not None:
            d["pod"] = pod
        if d["exists"] and not d.get("dynamicForwardProxy"):
            d.update(_endpoint_summary(config, name, instances, pod))
        destinations.append(d)
    result["destinations"] = destinations
    # timeout
    if "timeout" in action:
        t = action["timeout"]
        result["timeout"] = {"value": t, "note": "disabled" if t in ("0s", "0") else ""}
    else:
        result["timeout"] = {"value": ENVOY_DEFAULT_TIMEOUT, "note": "Envoy's default (the route sets none)"}
    if result.get("virtualService") and not result["virtualService"].get("setsTimeout", True):
        result["timeout"]["note"] = (
            result["timeout"]["note"] + "; " if result["timeout"]["note"] else ""
        ) + ("Istio's default: the VirtualService rule sets no timeout")
    retry = action.get("retry_policy") or vh.get("retry_policy")
    r = describe_retry(retry)
    if r is None:
        result["retries"] = {"attempts": 0, "note": "no retries"}
    else:
        notes = []
        if is_istio_default_retry(retry):
            vs = result.get("virtualService")
            if vs is None:
                notes.append("Istio's default retry policy: no VirtualService")
            elif not vs.get("setsRetries", True):
                notes.append("Istio's default retry policy: the VirtualService rule sets no retries")
            else:
                notes.append("same as Istio's default retry policy")
        elif result.get("virtualService") and not result["virtualService"].get("setsRetries", True):
            notes.append("the mesh's defaultHttpRetryPolicy")
        r["note"] = "; ".join(notes)
        result["retries"] = r
    fault = describe_fault(route)
    if fault:
        result["fault"] = fault
    mirrors = []
    for mp in action.get("request_mirror_policies", []) or []:
        frac = (mp.get("runtime_fraction") or {}).get("default_value")
        mirrors.append(
            {
                "cluster": mp.get("cluster", ""),
                "percent": percent(frac),
                **parse_cluster(mp.get("cluster", "")),
            }
        )
    if mirrors:
        result["mirrors"] = mirrors
    rewrite: dict[str, Any] = {}
    new_path = _rewritten_path(route, action, request)
    if new_path is not None:
        rewrite["path"] = new_path
    if action.get("host_rewrite_literal"):
        rewrite["authority"] = action["host_rewrite_literal"]
    if rewrite:
        result["rewrite"] = rewrite
    hp = describe_hash_policy(action.get("hash_policy"))
    if hp:
        result["hashPolicy"] = hp
    connect = [u for u in action.get("upgrade_configs", []) or [] if u.get("upgrade_type") == "CONNECT"]
    if connect:
        # With connect_config the sidecar ends the CONNECT and carries the bytes; without it, the
        # CONNECT itself goes on to the cluster (a DestinationRule tunnel through a forward proxy).
        result["tunnel"] = True if "connect_config" in connect[0] else "forwarded"
    result["expected"] = _expected(destinations, fault, vh)


def _expected(
    destinations: list[dict[str, Any]], fault: dict[str, Any] | None, vh: Mapping[str, Any]
) -> dict[str, Any]:
    if (
        fault
        and fault.get("abort")
        and fault["abort"].get("percent", 0) >= 100
        and "httpStatus" in fault["abort"]
    ):
        return {
            "status": fault["abort"]["httpStatus"],
            "flags": "FI",
            "details": "fault_filter_abort",
            "reason": "every request is aborted by the VirtualService's fault injection",
        }
    problems = []
    worst: dict[str, Any] | None = None
    for d in destinations:
        if not d["exists"]:
            share = f" ({fmt_percent(d['percent'])} of requests)" if len(destinations) > 1 else ""
            why = f"cluster {d['name']} does not exist in the proxy{share}"
            if d.get("subset"):
                why += f": no DestinationRule defines subset {d['subset']!r} for {d.get('host', '')}"
            problems.append(why)
            worst = worst or {"status": 503, "flags": "NC", "details": "cluster_not_found"}
            continue
        if d.get("dynamicForwardProxy"):
            continue
        if d.get("known") and d.get("healthy", 0) == 0:
            share = f" ({fmt_percent(d['percent'])} of requests)" if len(destinations) > 1 else ""
            if d.get("total", 0) == 0:
                why = f"cluster {d['name']} has no endpoints{share}"
                if d.get("pod"):
                    why = f"cluster {d['name']} has no endpoint of pod {d['pod']}{share}"
                elif d.get("subset"):
                    why += f": no instance of {d.get('host', '')} has the labels of subset {d['subset']!r}"
            else:
                why = f"none of the {d['total']} endpoints of {d['name']} is healthy{share}"
            problems.append(why)
            if worst is None:
                worst = {"status": 503, "flags": "UH", "details": "no_healthy_upstream"}
    if worst is not None:
        return {**worst, "reason": "; ".join(problems)}
    if len(destinations) == 1 and destinations[0]["name"] == "PassthroughCluster":
        return {
            "status": None,
            "flags": "-",
            "details": "via_upstream",
            "reason": "passed through to the host named in the request (not in the registry; ALLOW_ANY)",
        }
    names = ", ".join(d["name"] for d in destinations)
    reason = f"forwarded to {names}; the status is the upstream's"
    if fault and (fault.get("abort") or fault.get("delay")):
        reason += " (with fault injection on part of the requests)"
    return {"status": None, "flags": "-", "details": "via_upstream", "reason": reason}


def _common(result: dict[str, Any], route: Mapping[str, Any], vh: Mapping[str, Any]) -> None:
    rbac = [
        name.rsplit(".", 1)[-1].upper()
        for name in (
            "envoy.filters.http.rbac.audit",
            "envoy.filters.http.rbac.deny",
            "envoy.filters.http.rbac.allow",
        )
        if typed_per_filter(vh, name) or typed_per_filter(route, name)
    ]
    if rbac:
        result["authorization"] = (
            f"AuthorizationPolicies ({', '.join(rbac)}) apply here: see `isthmus x authz check`"
        )
    if typed_per_filter(route, "envoy.filters.http.cors"):
        result["cors"] = True


# --- text rendering ---------------------------------------------------------------------------------


def render_text(result: Mapping[str, Any], *, verbose: bool = False) -> str:
    lines: list[str] = []

    def row(label: str, value: str) -> None:
        lines.append(f"{label + ':' if label else '':<16}{value}")

    req = result["request"]
    target = f"{req['method']} {req['scheme']}://{req['authority']}{req['path']}"
    row("Request", target)
    src = (
        "held by the proxy (Envoy config dump)"
        if result["source"] == "held"
        else ("the control plane would generate with the candidate config")
    )
    proxy = result.get("proxy")
    where = f"{proxy['name']} ({proxy['kind']}), " if proxy else ""
    version = f", version {result['configVersion']}" if result.get("configVersion") else ""
    row("Route table", f"{where}{result['routeConfig']}: {src}{version}")
    vh = result.get("virtualHost")
    if vh is None:
        row("Virtual host", "none matches")
    else:
        row("Virtual host", f"{vh['name']} (domain {vh['domain']!r}, {vh['match']})")
    if verbose or result.get("route") is None:
        for nm in result.get("notMatched", []):
            lines.append(f"{'':<16}skipped route #{nm['index']} {nm['name'] or '(unnamed)'}: {nm['why']}")
    route = result.get("route")
    if vh is not None:
        if route is None:
            row("Route", "none matches")
        else:
            row(
                "Route",
                f"{route['name'] or '(unnamed)'} (#{route['index']} in the virtual host: {route['match']})",
            )
    vs = result.get("virtualService")
    if route is not None:
        if vs:
            detail = ""
            if "ruleIndex" in vs:
                detail = f", http[{vs['ruleIndex']}]"
                if vs.get("ruleName"):
                    detail += f" {vs['ruleName']!r}"
                if vs.get("matchIndex") is not None:
                    detail += f", match[{vs['matchIndex']}]"
                detail += f": {vs['match']}"
            elif vs.get("note"):
                detail = f" ({vs['note']})"
            row("VirtualService", f"{vs['namespace']}/{vs['name']}{detail}")
        else:
            row("VirtualService", "none (the service's default route)")
    action = result.get("action")
    if action == "redirect":
        red = result["redirect"]
        row("Redirect", f"{red['status']} to {red['location']}")
    elif action == "direct_response":
        dr = result["directResponse"]
        body = f", body {dr['body']!r}" if dr.get("body") else ""
        row("Direct response", f"{dr['status']}{body}")
    elif action == "route":
        dests = result.get("destinations", [])
        for i, d in enumerate(dests):
            label = "Destination" if i == 0 else ""
            share = f" ({fmt_percent(d['percent'])})" if len(dests) > 1 else ""
            exists = "" if d["exists"] else "  [NOT IN THE PROXY: 503 NC]"
            row(label, f"{d['name']}{share}{exists}")
            if not d["exists"]:
                continue
            bits = []
            if d.get("subset"):
                bits.append(f"subset {d['subset']}")
            if d.get("pod"):
                bits.append(f"pod {d['pod']} alone (named by the authority)")
            if d.get("destinationRule"):
                bits.append(f"DestinationRule {d['destinationRule']}")
            bits.append(f"lb {d.get('loadBalancer')}")
            bits.append(f"tls {d.get('tls')}")
            if d.get("proxyProtocol"):
                bits.append(f"PROXY protocol {d['proxyProtocol']} first")
            lines.append(f"{'':<18}{'; '.join(bits)}")
            cb = d.get("circuitBreakers") or {}
            cb_text = ", ".join(f"{k} {'unlimited' if v >= MAX_U32 else v}" for k, v in cb.items())
            lines.append(f"{'':<18}circuit breakers: {cb_text}")
            od = d.get("outlierDetection")
            lines.append(
                f"{'':<18}outlier detection: "
                + (", ".join(f"{k} {v}" for k, v in od.items()) if od else "none")
            )
            if d.get("dynamicForwardProxy"):
                lines.append(
                    f"{'':<18}endpoints: resolved per request from the authority (dynamic forward proxy)"
                )
            elif d.get("known"):
                eps = d.get("endpoints", [])
                if not eps:
                    lines.append(f"{'':<18}endpoints: none")
                for ep in eps:
                    who = ep.get("instance") or ep.get("workload") or ""
                    ver = f" version {ep['version']}" if ep.get("version") else ""
                    flags = f" {','.join(ep['flags'])}" if ep.get("flags") else ""
                    lines.append(
                        f"{'':<18}endpoint {ep['address']} {ep['health']}{flags} {who}{ver}".rstrip()
                    )
            else:
                lines.append(f"{'':<18}endpoints: not known to the proxy")
        t = result.get("timeout") or {}
        row("Timeout", f"{t.get('value')}" + (f" ({t['note']})" if t.get("note") else ""))
        r = result.get("retries") or {}
        if r.get("attempts"):
            text = f"{r['attempts']} attempts on {r.get('retryOn', '')}"
            if r.get("retriableStatusCodes"):
                text += f" (status {','.join(str(c) for c in r['retriableStatusCodes'])})"
            if r.get("perTryTimeout"):
                text += f", per try timeout {r['perTryTimeout']}"
            if r.get("note"):
                text += f" ({r['note']})"
            row("Retries", text)
        else:
            row("Retries", "none")
        f = result.get("fault")
        if f:
            parts = []
            if f.get("delay"):
                parts.append(f"delay {f['delay']['fixedDelay']} for {fmt_percent(f['delay']['percent'])}")
            if f.get("abort"):
                a = f["abort"]
                code = a.get("httpStatus", a.get("grpcStatus"))
                parts.append(f"abort {code} for {fmt_percent(a['percent'])}")
            row("Fault", "; ".join(parts))
        else:
            row("Fault", "none")
        mirrors = result.get("mirrors") or []
        row(
            "Mirror", ", ".join(f"{mm['cluster']} ({fmt_percent(mm['percent'])})" for mm in mirrors) or "none"
        )
        rw = result.get("rewrite") or {}
        row("Rewrite", ", ".join(f"{k} {v}" for k, v in rw.items()) or "none")
        hp = result.get("hashPolicy") or []
        row("Hash policy", ", ".join(hp) or "none")
        if result.get("tunnel") == "forwarded":
            target = (result.get("rewrite") or {}).get("authority", "")
            row("Tunnel", f"CONNECT forwarded to the cluster (a forward proxy), naming {target}")
        elif result.get("tunnel"):
            row("Tunnel", "CONNECT: a TCP tunnel to the cluster")
    if result.get("authorization"):
        row("Authorization", result["authorization"])
    exp = result.get("expected") or {}
    status = exp.get("status")
    flags = exp.get("flags") or "-"
    head = f"{status} {flags}" if status else "forwarded"
    if status and flags == "-":
        head = str(status)
    reason = exp.get("reason", "")
    if not status and reason.startswith("forwarded to "):
        reason = reason[len("forwarded to ") :]
    row("Result", f"{head}: {reason}")
    return "\n".join(lines) + "\n"
