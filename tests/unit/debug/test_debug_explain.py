"""`explain`: access-log lines (TEXT and JSON) and response flags, with and without the mesh's config."""

from __future__ import annotations

import json
from typing import Any

import pytest
from debug_helpers import DR_SUBSETS, PODS, config_for, pod, snapshot, status_entry

from isthmus.debug import explain
from isthmus.debug.accesslog import looks_like_access_log, parse_line
from isthmus.debug.envoy_config import ProxyConfig
from isthmus.debug.flags import FLAGS, parse_policy_name, rbac_policy

ECHO = "echo.default.svc.cluster.local"
CLIENT = "127.9.0.5"


def line(
    code: int,
    flags: str,
    details: str,
    *,
    path: str = "/",
    cluster: str = "-",
    upstream: str = "-",
    route: str = "default",
    dla: str = f"{CLIENT}:15001",
    dra: str = f"{CLIENT}:40000",
    duration: int = 3,
    reason: str = "-",
    rid: str = "11111111-2222-3333-4444-555555555555",
    authority: str = "echo",
) -> str:
    return (
        f'[2026-01-01T00:00:00.000Z] "GET {path} HTTP/1.1" {code} {flags} {details} - "{reason}" 0 19 {duration} - '
        f'"-" "curl/8" "{rid}" "{authority}" "{upstream}" {cluster} - {dla} {dra} - {route}'
    )


class FakeView:
    def __init__(
        self,
        *docs: str,
        health: dict[str, dict[str, list[str]]] | None = None,
        stats: dict[str, int] | None = None,
    ) -> None:
        self.snap, self.store = snapshot(*docs)
        self._stats = stats or {}
        self._health = health or {}

    def proxies(self) -> list[dict[str, Any]]:
        return [status_entry(p) for p in PODS if p.sidecar or p.gateway]

    def instances(self) -> list[dict[str, Any]]:
        return [
            {"workload": p.workload, "instance": p.name, "namespace": p.namespace, "labels": dict(p.labels), "ip": p.ip,
             "ports": [{"port": k, "appPort": v} for k, v in p.app_ports.items()]}
            for p in PODS
        ]  # fmt: skip

    def held_config(self, proxy: dict[str, Any]) -> ProxyConfig:
        config = config_for(self.snap, proxy["instance"], proxy["namespace"])
        config.runtime_health.update(self._health)
        return config

    def resources(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [c.resource.to_dict() | {"metadata": {**c.resource.to_dict()["metadata"], "namespace": c.namespace}}
                for c in self.store.list(kind, namespace)]  # fmt: skip

    def stats(self, proxy: dict[str, Any], pattern: str) -> dict[str, int]:
        return self._stats


def ex(text: str, view: Any = None) -> dict[str, Any]:
    entry = parse_line(text)
    assert entry is not None, text
    return explain.explain_entry(entry, view)


# --- parsing ------------------------------------------------------------------------------------------


def test_parses_istio_text_lines() -> None:
    raw = (
        '[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" '
        '"curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.44.1.27:80" '
        "outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default"
    )
    e = parse_line(raw)
    assert e is not None and e.encoding == "TEXT"
    assert (e.code, e.flags, e.details) == (418, [], "via_upstream")
    assert e.get("upstream_cluster") == "outbound|8000||httpbin.foo.svc.cluster.local"
    assert e.get("authority") == "httpbin:8000" and e.get("route_name") == "default"
    assert e.duration_ms == 4
    uf = parse_line(
        line(
            503,
            "UF,URX",
            "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
            reason="delayed_connect_error:_Connection_refused",
        )
    )
    assert uf is not None and uf.flags == ["UF", "URX"]
    assert uf.get("upstream_transport_failure_reason") == "delayed_connect_error:_Connection_refused"


def test_parses_json_lines_and_prefixes() -> None:
    data = {"response_code": 503, "response_flags": "UH", "response_code_details": "no_healthy_upstream",
            "upstream_cluster": f"outbound|80|v3|{ECHO}", "authority": "echo", "path": "/uh", "method": "GET"}  # fmt: skip
    e = parse_line("[client-0] " + json.dumps(data))
    assert e is not None and e.encoding == "JSON" and e.instance == "client-0"
    assert (e.code, e.flags) == (503, ["UH"])
    assert parse_line("not a log line") is None
    assert looks_like_access_log(line(200, "-", "via_upstream"))
    assert not looks_like_access_log("[2026-01-01 00:00:00.000][12][info][main] starting")


def test_policy_names() -> None:
    assert parse_policy_name("ns[default]-policy[deny-admin]-rule[2]") == ("default", "deny-admin", 2)
    assert rbac_policy("rbac_access_denied_matched_policy[none]") == "none"
    assert rbac_policy("via_upstream") is None
    # CUSTOM rules carry their provider, and a suffix when the provider cannot be used (istio#58082).
    assert parse_policy_name("istio-ext-authz-authz-a-ns[default]-policy[ext]-rule[1]") == (
        "default",
        "ext",
        1,
    )
    bad = "istio-ext-authz-gone-ns[default]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"
    assert parse_policy_name(bad) == ("default", "ext", 0)


# --- every flag, without the mesh ----------------------------------------------------------------------

CASES = [
    ("NR", 404, "route_not_found", "no route"),
    ("UH", 503, "no_healthy_upstream", "healthy"),
    ("UF", 503, "upstream_reset_before_response_started{remote_connection_failure}", "connect"),
    ("UO", 503, "upstream_reset_before_response_started{overflow}", "circuit breaker"),
    ("URX", 503, "via_upstream", "retries"),
    ("UT", 504, "response_timeout", "timeout"),
    ("DC", 0, "downstream_remote_disconnect", "closed the connection"),
    ("NC", 503, "cluster_not_found", "cluster"),
    ("UC", 503, "upstream_reset_before_response_started{connection_termination}", "closed the connection"),
    ("UR", 503, "upstream_reset_before_response_started{remote_reset}", "reset"),
    ("LR", 503, "upstream_reset_before_response_started{local_reset}", "reset"),
    ("DI", 200, "via_upstream", "delayed"),
    ("FI", 500, "fault_filter_abort", "aborted"),
    ("RL", 429, "local_rate_limited", "rate limit"),
    ("UAEX", 403, "ext_authz_denied", "external authorization"),
]


@pytest.mark.parametrize(("flag", "code", "details", "words"), CASES)
def test_each_flag_is_explained_offline(flag: str, code: int, details: str, words: str) -> None:
    result = ex(line(code, flag, details, cluster=f"outbound|80||{ECHO}"))
    assert result["kind"] == flag
    assert words in result["cause"].lower()
    assert result["fixes"], result
    assert result["flags"][0]["flag"] == flag
    assert explain.render_explanation(result).startswith(f"{code} {flag}")


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_flag_reference_for_every_flag(flag: str) -> None:
    info = explain.explain_flag(flag)
    assert info["flag"] == flag and info["meaning"]
    assert flag in explain.render_flag(info)


def test_long_flag_names_and_rbac() -> None:
    assert explain.explain_flag("NoHealthyUpstream")["flag"] == "UH"
    assert explain.explain_flag("rbac")["flag"] == "RBAC"
    with pytest.raises(KeyError):
        explain.explain_flag("ZZ")


def test_rbac_denied_offline() -> None:
    result = ex(line(403, "-", "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]"))
    assert result["kind"] == "RBAC"
    assert "deny-admin.default" in result["cause"] and "DENY" in result["cause"]
    none = ex(line(403, "-", "rbac_access_denied_matched_policy[none]"))
    assert "none of their rules matched" in none["cause"]
    bad = "istio-ext-authz-gone-ns[default]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"
    custom = ex(line(403, "-", f"rbac_access_denied_matched_policy[{bad}]"))
    assert "CUSTOM AuthorizationPolicy ext.default rule 0" in custom["cause"]
    assert "provider cannot be used" in custom["cause"]


def test_ok_and_upstream_errors() -> None:
    assert ex(line(200, "-", "via_upstream"))["kind"] == "OK"
    up = ex(line(500, "-", "via_upstream", upstream="127.9.0.2:8080", cluster=f"outbound|80||{ECHO}"))
    assert up["kind"] == "UPSTREAM" and "answered 500" in up["cause"]


# --- joined with the config -----------------------------------------------------------------------------

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: a
    match: [{uri: {prefix: /a}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: uh
    match: [{uri: {prefix: /uh}}]
    route: [{destination: {host: echo, subset: v3}}]
  - name: nc
    match: [{uri: {prefix: /nc}}]
    route: [{destination: {host: echo, subset: v9}}]
  - name: ut
    match: [{uri: {prefix: /ut}}]
    timeout: 0.5s
    route: [{destination: {host: echo, subset: v1}}]
  - name: fi
    match: [{uri: {prefix: /fi}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
"""


def test_nr_lists_the_routes_tried() -> None:
    result = ex(line(404, "NR", "route_not_found", path="/nope", route="-"), FakeView(DR_SUBSETS, VS))
    assert result["proxy"] == "client-0.default" and result["direction"] == "outbound"
    assert "none is a catch-all" in result["cause"]
    assert any(c.startswith("route a (path prefix '/a')") for c in result["config"])
    # the VirtualService whose rules the virtual host holds is named
    assert "VirtualService default/echo" in result["cause"]
    assert result["resources"] == ["VirtualService default/echo"]


def test_nc_names_the_missing_subset_and_the_destination_rule() -> None:
    result = ex(line(503, "NC", "cluster_not_found", path="/nc", route="nc"), FakeView(DR_SUBSETS, VS))
    assert "subset 'v9'" in result["cause"] and "default/echo" in result["cause"]
    assert "v1, v2, v3" in result["cause"]
    assert "DestinationRule default/echo" in result["resources"]


def test_uh_explains_the_subset_labels_and_the_pods() -> None:
    result = ex(
        line(503, "UH", "no_healthy_upstream", path="/uh", route="uh", cluster=f"outbound|80|v3|{ECHO}"),
        FakeView(DR_SUBSETS, VS),
    )
    assert "no endpoints at all" in result["cause"] and "version=v3" in result["cause"]
    # the route that sent it there, and its VirtualService
    assert {"DestinationRule default/echo", "VirtualService default/echo"} <= set(result["resources"])
    assert any("echo-v1-0" in c for c in result["config"])
    # a rendering without the cluster: the route gives it
    no_cluster = ex(line(503, "UH", "no_healthy_upstream", path="/uh", route="uh"), FakeView(DR_SUBSETS, VS))
    assert "version=v3" in no_cluster["cause"]


def test_uh_with_every_endpoint_ejected() -> None:
    cluster = f"outbound|80|v1|{ECHO}"
    health = {
        cluster: {"127.9.0.2:8080": ["failed_outlier_check"], "127.9.0.3:8080": ["failed_outlier_check"]}
    }
    result = ex(
        line(503, "UH", "no_healthy_upstream", cluster=cluster), FakeView(DR_SUBSETS, VS, health=health)
    )
    assert "ejected by outlier detection" in result["cause"]


def test_uf_to_a_closed_port_of_a_service_entry() -> None:
    se = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: closed, namespace: default}
    spec:
      hosts: [closed.example.com]
      location: MESH_EXTERNAL
      ports: [{number: 80, name: http, protocol: HTTP}]
      resolution: STATIC
      endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
    """
    text = line(
        503, "UF,URX",
        "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
        cluster="outbound|80||closed.example.com", upstream="127.0.0.1:1", authority="closed.example.com",
        reason="delayed_connect_error:_Connection_refused",
    )  # fmt: skip
    result = ex(text, FakeView(se))
    assert result["kind"] == "UF"
    assert "connection refused" in result["cause"]
    assert "ServiceEntry default/closed" in result["resources"]
    assert any("retries ran out" in c for c in result["config"])


def test_uo_reports_the_circuit_breaker() -> None:
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo, namespace: default}
    spec:
      host: echo
      trafficPolicy:
        connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
    """
    cluster = f"outbound|80||{ECHO}"
    view = FakeView(dr, stats={f"cluster.{cluster}.upstream_rq_pending_overflow": 7})
    result = ex(line(503, "UO", "upstream_reset_before_response_started{overflow}", cluster=cluster), view)
    assert "circuit breaker" in result["cause"]
    assert any("maxConnections 1" in c and "maxPendingRequests 1" in c for c in result["config"])
    assert any("upstream_rq_pending_overflow 7" in c for c in result["config"])
    assert any("DestinationRule default/echo" in f for f in result["fixes"])
    # A proxy with Istio's default stats inclusion list keeps no cluster counters: explain says how to.
    bare = ex(
        line(503, "UO", "upstream_reset_before_response_started{overflow}", cluster=cluster), FakeView(dr)
    )
    assert not any(c.startswith("counters:") for c in bare["config"])
    assert any("proxyStatsMatcher" in c and "upstream_rq_pending_overflow" in c for c in bare["config"])


def test_ut_reports_the_route_timeout() -> None:
    text = line(
        504,
        "UT",
        "response_timeout",
        path="/ut?delay=2s",
        route="ut",
        cluster=f"outbound|80|v1|{ECHO}",
        upstream="127.9.0.2:8080",
        duration=501,
    )
    result = ex(text, FakeView(DR_SUBSETS, VS))
    assert "501 ms" in result["cause"]
    assert "route 'ut' timeout: 0.500s" in result["config"], result["config"]
    assert "VirtualService default/echo" in result["resources"]


def test_dc_on_the_inbound_side_points_at_the_caller() -> None:
    echo = pod("echo-v1-0")
    text = line(
        0,
        "DC",
        "downstream_remote_disconnect",
        cluster="inbound|8080||",
        dla=f"{echo.ip}:8080",
        dra=f"{CLIENT}:51000",
        duration=500,
    )
    result = ex(text, FakeView())
    assert result["direction"] == "inbound" and result["proxy"] == "echo-v1-0.default"
    assert "client-0.default" in result["cause"]


def test_fault_abort_names_the_virtual_service() -> None:
    result = ex(line(418, "FI", "fault_filter_abort", path="/fi", route="fi"), FakeView(DR_SUBSETS, VS))
    assert result["kind"] == "FI"
    assert any("status 418" in c for c in result["config"])
    assert "VirtualService default/echo" in result["resources"]


def test_rbac_with_the_proxy_policies() -> None:
    ap = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: deny-admin, namespace: default}
    spec:
      selector: {matchLabels: {app: echo}}
      action: DENY
      rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: allow-get, namespace: default}
    spec:
      selector: {matchLabels: {app: echo}}
      rules: [{to: [{operation: {methods: [GET]}}]}]
    """
    echo = pod("echo-v2-0")
    deny = line(
        403,
        "-",
        "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]",
        path="/admin",
        dla=f"{echo.ip}:8080",
        cluster="-",
    )
    result = ex(deny, FakeView(ap))
    assert result["proxy"] == "echo-v2-0.default"
    assert any("path prefix '/admin'" in c for c in result["config"])
    none = line(403, "-", "rbac_access_denied_matched_policy[none]", dla=f"{echo.ip}:8080")
    result = ex(none, FakeView(ap))
    assert "allow-get.default" in result["cause"]
    assert any("method exact 'GET'" in c for c in result["config"])
    # resources are named namespace/name, for ALLOW as for DENY policies
    assert result["resources"] == ["AuthorizationPolicy default/allow-get"]
    # the caller's line only has the 403: the policies in force on the destination are named
    caller = line(403, "-", "via_upstream", cluster=f"outbound|80||{ECHO}", upstream=f"{echo.ip}:8080")
    result = ex(caller, FakeView(ap))
    assert result["kind"] == "UPSTREAM"
    assert "(echo-v2-0.default) answered 403: most likely its sidecar denied" in result["cause"]
    assert "ALLOW allow-get.default, DENY deny-admin.default in force there" in result["cause"]
    assert result["resources"] == [
        "AuthorizationPolicy default/allow-get",
        "AuthorizationPolicy default/deny-admin",
    ]
    result = ex(caller, FakeView())
    assert "no AuthorizationPolicy is in force on its sidecar: the app itself" in result["cause"]


RETRIES_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-retries, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo}}]
    retries: {attempts: 2, retryOn: 5xx}
"""


def test_urx_names_the_retry_policy_and_its_virtual_service() -> None:
    text = line(
        503, "URX", "via_upstream", cluster=f"outbound|80||{ECHO}", upstream="127.9.0.2:8080", route=""
    )
    result = ex(text, FakeView(RETRIES_VS))
    assert result["kind"] == "URX"
    assert "retries ran out (2 retries, so 3 attempts)" in result["cause"]
    assert "127.9.0.2:8080 answered 503 to the last attempt" in result["cause"]
    assert "retry policy: 2 retries on 5xx" in result["config"]
    assert "VirtualService default/echo-retries" in result["resources"]
    # without a VirtualService: Istio's default retries, said so
    plain = ex(text, FakeView())
    assert "(2 retries, so 3 attempts)" in plain["cause"] and plain["resources"] == []
    assert any("Istio's default" in c for c in plain["config"])


def test_dc_on_the_inbound_side_of_an_attempt_the_caller_retried() -> None:
    echo = pod("echo-v1-0")
    text = line(
        503,
        "DC",
        "downstream_remote_disconnect",
        cluster="inbound|8080||",
        dla=f"{echo.ip}:8080",
        dra=f"{CLIENT}:51000",
        duration=7,
    )
    result = ex(text, FakeView(RETRIES_VS))
    assert result["kind"] == "DC" and result["direction"] == "inbound"
    assert (
        "the caller (client-0.default) dropped this attempt after 7 ms, after the app had answered 503"
        in (result["cause"])
    )
    assert "retries 503" in result["cause"]
    assert result["resources"] == ["VirtualService default/echo-retries"]
    # a caller without retries on that status: it hung up (timeout or its client)
    other = ex(text.replace('" 503 DC', '" 0 DC'), FakeView(RETRIES_VS))
    assert "closed the connection after 7 ms, before this pod's answer was complete" in other["cause"]
