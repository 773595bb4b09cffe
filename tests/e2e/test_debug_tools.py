"""`isthmus explain`, `describe` and `x authz check` on a live mesh with real Envoy (issue 5 item 6,
issue 4 item 6).

Every failure here is real: a request is sent through the client's sidecar so that Envoy itself answers
NR, UH, UF, UO, URX, UT, DC or an RBAC denial; the access-log line is read back from the mesh (`isthmus
logs`, i.e. `/api/logs`) or found by the request's x-request-id, and `isthmus explain` (the CLI, JSON
output) must name the cause and the config involved (the VirtualService, DestinationRule, ServiceEntry
or AuthorizationPolicy by name). `describe` and `x authz check` are run on the same mesh with the
resources in force. The mesh is tests/e2e/meshes/resilience (its own instance for this module); each
test removes what it applied.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli.main import cli
from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied

pytestmark = pytest.mark.e2e

HTTPBIN = "http://httpbin:8000"
HTTPBIN_FQDN = "httpbin.default.svc.cluster.local"


# --- helpers ----------------------------------------------------------------------------------------


def run(mesh: MeshProcess, *args: str) -> str:
    """An isthmus command against the mesh (in-process CLI); its stdout."""
    result = CliRunner().invoke(cli, [*args, "--state-dir", str(mesh.state_dir)], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def rid(case: str) -> str:
    return f"dbg-{case}-{uuid.uuid4().hex[:12]}"


def log_lines(mesh: MeshProcess, workload: str, needle: str, *args: str) -> list[str]:
    """The access-log lines of `workload`'s proxies holding `needle`, from `isthmus logs [args]` (Envoy
    flushes about once a second)."""
    return wait_until(
        lambda: [
            ln for ln in run(mesh, "logs", workload, "--tail", "200", *args).splitlines() if needle in ln
        ],
        8.0,
        f"an access-log line of {workload} with {needle!r}",
    )


def explain_line(mesh: MeshProcess, line: str) -> dict[str, Any]:
    return json.loads(run(mesh, "explain", line, "-o", "json"))


def explain_request(mesh: MeshProcess, request_id: str, lines: int = 1) -> list[dict[str, Any]]:
    """`explain --request-id`: every proxy's line of the request, once `lines` of them are written."""

    def found() -> list[dict[str, Any]] | None:
        result = CliRunner().invoke(
            cli, ["explain", "--request-id", request_id, "-o", "json", "--state-dir", str(mesh.state_dir)]
        )
        if result.exit_code != 0:
            assert "no access-log line" in result.output, result.output
            return None
        out = json.loads(result.stdout)
        return out if len(out) >= lines else None

    return wait_until(found, 8.0, f"{lines} access-log line(s) of request {request_id}")


def at(explanations: list[dict[str, Any]], workload: str) -> list[dict[str, Any]]:
    return [e for e in explanations if (e.get("proxy") or "").startswith(workload)]


def curl(mesh: MeshProcess, url: str, request_id: str, **kw: Any) -> Any:
    headers = [("x-request-id", request_id), *kw.pop("headers", [])]
    return mesh.curl("client", url, headers=headers, **kw)


def direct(mesh: MeshProcess, workload: str, path: str) -> Any:
    """A request straight to a pod's inbound port (the echo's own /.echo/* endpoints)."""
    i = mesh.instance(workload)
    return sync.request(f"http://{i['ip']}:{i['ports'][0]['port']}{path}", timeout=5)


# --- explain: one real failure per response flag ---------------------------------------------------------


def test_explain_nr_names_the_virtual_service_without_a_catch_all(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: dbg-nr}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /only}}]
        route: [{destination: {host: httpbin}}]
    """
    request_id = rid("nr")
    with applied(mesh, vs):
        resp = curl(mesh, HTTPBIN + "/other", request_id)
        assert resp.status == 404, resp.text
        (line,) = log_lines(mesh, "client", request_id)
        assert '" 404 NR route_not_found ' in line, line
        ex = explain_line(mesh, line)
        # The same entry in the JSON encoding, and with `isthmus logs --prefix`'s prefix read from stdin.
        (json_line,) = log_lines(mesh, "client", request_id, "-o", "json")
        from_json = explain_line(mesh, json_line)
        (prefixed,) = log_lines(mesh, "client", request_id, "--prefix")
        stdin = CliRunner().invoke(
            cli, ["explain", "-", "-o", "json", "--state-dir", str(mesh.state_dir)], input=prefixed + "\n"
        )
        # The real entry point too (a subprocess, text output), on the same line.
        text = subprocess.run(
            [sys.executable, "-m", "isthmus.cli.main", "explain", line, "--state-dir", str(mesh.state_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    assert ex["kind"] == "NR" and ex["status"] == 404
    assert ex["proxy"] == "client-0.default" and ex["direction"] == "outbound" and ex["configChecked"]
    assert "none is a catch-all" in ex["cause"] and "VirtualService default/dbg-nr" in ex["cause"]
    assert "VirtualService default/dbg-nr" in ex["resources"]
    assert any("path prefix '/only' does not match '/other'" in c for c in ex["config"]), ex["config"]
    assert "Cause: virtual host httpbin.default.svc.cluster.local:8000" in text
    assert "Resources: VirtualService default/dbg-nr" in text
    assert json.loads(json_line)["request_id"] == request_id
    assert from_json["kind"] == "NR" and from_json["cause"] == ex["cause"]
    assert prefixed.startswith("[client-0] ") and stdin.exit_code == 0, stdin.output
    from_stdin = json.loads(stdin.stdout)
    assert from_stdin["line"]["instance"] == "client-0" and from_stdin["cause"] == ex["cause"]


def test_explain_uh_names_the_subset_that_selects_no_pod(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: dbg-subsets}
    spec:
      host: httpbin
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v3, labels: {version: v3}}
    """
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: dbg-uh}
    spec:
      hosts: [httpbin]
      http:
      - route: [{destination: {host: httpbin, subset: v3}}]
    """
    request_id = rid("uh")
    with applied(mesh, dr, vs):
        resp = curl(mesh, HTTPBIN + "/", request_id)
        assert resp.status == 503 and resp.text == "no healthy upstream", resp.text
        (line,) = log_lines(mesh, "client", request_id)
        assert '" 503 UH no_healthy_upstream ' in line, line
        ex = explain_line(mesh, line)
    assert ex["kind"] == "UH"
    cluster = f"outbound|8000|v3|{HTTPBIN_FQDN}"
    assert f"cluster {cluster} has no endpoints at all" in ex["cause"], ex["cause"]
    assert "subset 'v3' selects pods with version=v3" in ex["cause"]
    assert {"DestinationRule default/dbg-subsets", "VirtualService default/dbg-uh"} <= set(ex["resources"])
    assert any("httpbin-v1-0 (app=httpbin,version=v1)" in c for c in ex["config"]), ex["config"]


def test_explain_uf_names_the_service_entry_with_a_closed_port(resilience_mesh: MeshProcess) -> None:
    from isthmus.echo.testing import free_port

    mesh = resilience_mesh
    closed = free_port()
    se = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: dbg-closed}}
    spec:
      hosts: [closed.example.com]
      location: MESH_EXTERNAL
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]
    """
    request_id = rid("uf")
    with applied(mesh, se):
        resp = curl(mesh, "http://closed.example.com/", request_id)
        assert resp.status == 503, resp.text
        (line,) = log_lines(mesh, "client", request_id)
        # Istio's default retry policy retries connect failures: UF, then URX when they run out.
        assert '" 503 UF,URX upstream_reset_before_response_started{remote_connection_failure' in line, line
        ex = explain_line(mesh, line)
    assert ex["kind"] == "UF"
    assert f"connecting to 127.0.0.1:{closed} failed: connection refused" in ex["cause"], ex["cause"]
    assert "ServiceEntry default/dbg-closed" in ex["resources"]
    assert any("retries ran out" in c for c in ex["config"]), ex["config"]
    assert any("ServiceEntry endpoint/ports" in f for f in ex["fixes"])


def test_explain_uo_names_the_circuit_breaker_and_its_destination_rule(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: dbg-breaker}
    spec:
      host: httpbin
      trafficPolicy:
        connectionPool:
          tcp: {maxConnections: 1}
          http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    """
    with applied(mesh, dr):
        result = mesh.load("client", HTTPBIN + "/uo?delay=200ms", 8, concurrency=8)
        assert result.codes.get("503", 0) >= 1, result.codes
        line = log_lines(mesh, "client", '" 503 UO upstream_reset_before_response_started{overflow} ')[0]
        ex = explain_line(mesh, line)
    assert ex["kind"] == "UO"
    assert f"the circuit breaker of outbound|8000||{HTTPBIN_FQDN} was open" in ex["cause"], ex["cause"]
    assert "DestinationRule default/dbg-breaker" in ex["resources"]
    assert any("maxConnections 1, maxPendingRequests 1" in c for c in ex["config"]), ex["config"]
    counters = next(c for c in ex["config"] if c.startswith("counters:"))
    assert "upstream_rq_pending_overflow" in counters and "upstream_rq_pending_overflow 0" not in counters
    assert any("DestinationRule default/dbg-breaker" in f for f in ex["fixes"])


def test_explain_urx_names_the_retry_policy_and_every_attempt(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: dbg-retries}
    spec:
      hosts: [flaky]
      http:
      - route: [{destination: {host: flaky}}]
        retries: {attempts: 2, retryOn: 5xx}
    """
    request_id = rid("urx")
    with applied(mesh, vs):
        assert direct(mesh, "flaky", "/.echo/reset?fail-first=10&fail-status=503").status == 200
        try:
            resp = curl(mesh, "http://flaky/", request_id)
        finally:
            direct(mesh, "flaky", "/.echo/reset")
        assert resp.status == 503
        found = explain_request(mesh, request_id, lines=4)  # the client's line and flaky's three
    (client,) = at(found, "client-0")
    assert client["kind"] == "URX" and client["line"]["response_flags"] == "URX"
    assert "every attempt failed and the retries ran out (2 retries, so 3 attempts)" in client["cause"]
    assert "answered 503 to the last attempt" in client["cause"]
    assert "VirtualService default/dbg-retries" in client["resources"]
    assert "retry policy: 2 retries on 5xx" in client["config"], client["config"]
    # flaky's sidecar logged each attempt: the app's 503, passed on unchanged; or, when the client's
    # sidecar reset an attempt it retries before the answer was complete (real Envoy does), DC.
    attempts = at(found, "flaky-0")
    assert len(attempts) == 3 and all(a["direction"] == "inbound" and a["status"] == 503 for a in attempts)
    for a in attempts:
        if a["kind"] == "DC":
            assert "the caller (client-0.default) dropped this attempt" in a["cause"], a["cause"]
            assert "retries 503" in a["cause"] and "VirtualService default/dbg-retries" in a["resources"]
        else:
            assert a["kind"] == "UPSTREAM", a
            assert "the application behind" in a["cause"] and "answered 503" in a["cause"], a["cause"]


def test_explain_ut_and_dc_on_both_sides_of_a_timeout(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: dbg-timeout}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /timeout}}]
        route: [{destination: {host: httpbin}}]
        timeout: 500ms
      - route: [{destination: {host: httpbin}}]
    """
    timed_out, gave_up = rid("ut"), rid("dc")
    with applied(mesh, vs):
        resp = curl(mesh, HTTPBIN + "/timeout?delay=2s", timed_out)
        assert resp.status == 504 and resp.text == "upstream request timeout"
        # The app behind the client's sidecar gives up first: no route timeout on /slow.
        resp = curl(mesh, HTTPBIN + "/slow?delay=2s", gave_up, timeout=0.3)
        assert resp.status == 0, resp
        ut = explain_request(mesh, timed_out, lines=2)
        dc = explain_request(mesh, gave_up, lines=2)
    (client,) = at(ut, "client-0")
    assert client["kind"] == "UT" and client["status"] == 504
    assert client["cause"].startswith("the upstream did not answer within the route's timeout")
    assert "the route's timeout: 0.500s" in client["config"], client["config"]
    assert "VirtualService default/dbg-timeout" in client["resources"]
    assert any("raise `timeout` in VirtualService default/dbg-timeout" in f for f in client["fixes"])
    # The server's sidecar saw its caller hang up: DC, pointing back at the caller.
    (server,) = at(ut, "httpbin-")
    assert server["kind"] == "DC" and server["direction"] == "inbound"
    assert "the caller (client-0.default) closed the connection" in server["cause"], server["cause"]
    (client,) = at(dc, "client-0")
    assert client["kind"] == "DC" and client["direction"] == "outbound"
    assert client["cause"].startswith("the client (the app sending through this proxy) closed the connection")
    assert f"outbound|8000||{HTTPBIN_FQDN}" in " ".join(client["config"])


# --- RBAC: explain and x authz check ----------------------------------------------------------------------

POLICIES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dbg-deny-admin}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dbg-allow-get}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/default]}}]
    to: [{operation: {methods: [GET]}}]
"""


def test_explain_rbac_denials_and_authz_check(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    denied, not_allowed, allowed = rid("deny"), rid("none"), rid("allow")
    with applied(mesh, POLICIES):
        assert curl(mesh, HTTPBIN + "/admin/x", denied).status == 403
        assert curl(mesh, HTTPBIN + "/x", not_allowed, method="POST", body=b"x").status == 403
        assert curl(mesh, HTTPBIN + "/x", allowed).status == 200
        deny = explain_request(mesh, denied, lines=2)
        none = explain_request(mesh, not_allowed, lines=2)
        # The allowed request has no line: the proxies keep their metrics in the proxy (the default) and
        # only log failed requests, which explain says (the denials' lines were found: flushed by now).
        ok = CliRunner().invoke(
            cli, ["explain", "--request-id", allowed, "-o", "json", "--state-dir", str(mesh.state_dir)]
        )
        table = run(mesh, "x", "authz", "check", "httpbin-v1", "--details")
        as_json = json.loads(run(mesh, "x", "authz", "check", "httpbin-v2", "-o", "json"))
        client_table = run(mesh, "x", "authz", "check", "client")
    # A DENY rule matched: the server's sidecar names the policy and its rule.
    (server,) = at(deny, "httpbin-")
    assert server["kind"] == "RBAC" and server["status"] == 403 and server["direction"] == "inbound"
    assert (
        server["details"] == "rbac_access_denied_matched_policy[ns[default]-policy[dbg-deny-admin]-rule[0]]"
    )
    assert server["cause"].startswith(
        "denied by DENY AuthorizationPolicy dbg-deny-admin.default rule 0 on httpbin-"
    )
    assert server["resources"] == ["AuthorizationPolicy default/dbg-deny-admin"]
    assert "DENY dbg-deny-admin.default rule[0]: from: any; to: path prefix '/admin'" in server["config"]
    # The client's sidecar only saw a 403 come back, and says where to look.
    (client,) = at(deny, "client-0")
    assert client["kind"] == "UPSTREAM" and server["proxy"] in client["cause"]
    assert "most likely its sidecar denied the request by AuthorizationPolicy" in client["cause"]
    assert "ALLOW dbg-allow-get.default, DENY dbg-deny-admin.default in force there" in client["cause"]
    # No ALLOW rule matched (POST): the ALLOW policy and what it allows.
    (server,) = at(none, "httpbin-")
    assert server["kind"] == "RBAC" and server["details"] == "rbac_access_denied_matched_policy[none]"
    assert "ALLOW policies apply to it (dbg-allow-get.default)" in server["cause"], server["cause"]
    assert server["resources"] == ["AuthorizationPolicy default/dbg-allow-get"]
    assert any("method exact 'GET'" in c for c in server["config"]), server["config"]
    assert ok.exit_code != 0 and "keep their metrics in the proxy (the default)" in ok.output, ok.output
    # x authz check: the policies in force on the proxy and what each rule allows or denies.
    rows = table.splitlines()
    assert rows[0].split() == ["ACTION", "AuthorizationPolicy", "RULES"]
    assert rows[1].split() == ["DENY", "dbg-deny-admin.default", "1"]
    assert rows[2].split() == ["ALLOW", "dbg-allow-get.default", "1"]
    assert "DENY dbg-deny-admin.default rule[0]: from: any; to: path prefix '/admin'" in table
    assert (
        "ALLOW dbg-allow-get.default rule[0]: from: source.principal cluster.local/ns/default/sa/default; "
        "to: method exact 'GET'" in table
    )
    assert "Enforced on: HTTP route inbound|8080||" in table
    assert as_json["proxy"] == "httpbin-v2-0.default"
    policies = {(p["action"], p["authorizationPolicy"], p["rules"]) for p in as_json["policies"]}
    assert policies == {("DENY", "dbg-deny-admin.default", 1), ("ALLOW", "dbg-allow-get.default", 1)}
    assert client_table == "ACTION   AuthorizationPolicy   RULES\n"  # istioctl prints only the header


# --- describe -------------------------------------------------------------------------------------------

DESCRIBED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dbg-httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 10}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dbg-httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: httpbin, subset: v2}}]
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: 5xx}
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 90}
    - {destination: {host: httpbin, subset: v2}, weight: 10}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: dbg-strict}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dbg-allow-client}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/default]}}]
"""


def test_describe_pod_workload_and_service(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    # Without config: Istio's defaults are spelled out.
    bare = run(mesh, "describe", "svc", "flaky", "--details")
    assert "DestinationRule: none" in bare
    assert (
        "Default route, port 80 (no VirtualService): outbound|80||flaky.default.svc.cluster.local; timeout "
        "none (Istio's default: no timeout); retries 2 attempts on connect-failure,refused-stream,"
        "unavailable,cancelled,retriable-status-codes (Istio's default retry policy)" in bare
    )
    with applied(mesh, DESCRIBED):
        # The config is in force on the real proxies: mTLS STRICT and the ALLOW policy let the client in.
        assert mesh.curl("client", HTTPBIN + "/v2").status == 200
        pod_text = run(mesh, "describe", "pod", "httpbin-v1-0", "--details")
        pod = json.loads(run(mesh, "describe", "pod", "httpbin-v1-0", "-o", "json"))
        workload = json.loads(run(mesh, "describe", "workload", "httpbin-v2", "-o", "json"))
        svc_text = run(mesh, "describe", "service", "httpbin", "--details")
        svc = json.loads(run(mesh, "describe", "service", "httpbin", "-o", "json"))

    # pod: its DestinationRule and subset, the VirtualService rule by rule with the effective
    # timeouts and retries, PeerAuthentication and AuthorizationPolicies.
    assert "DestinationRule: default/dbg-httpbin for 'httpbin.default.svc.cluster.local'" in pod_text
    assert "Matching subsets: v1" in pod_text and "(Non-matching subsets v2)" in pod_text
    assert "VirtualService: dbg-httpbin.default" in pod_text
    assert (
        "timeout: 3s" in pod_text
        and "retries: 2 attempts on 5xx, perTryTimeout 1s (VirtualService)" in pod_text
    )
    assert "timeout: none (Istio's default: no timeout)" in pod_text
    assert "(Istio's default retry policy)" in pod_text
    assert "route to httpbin.default.svc.cluster.local, subset v1, weight 90%, -> this pod" in pod_text
    assert "maxConnections 10" in pod_text
    assert "PeerAuthentication: STRICT (ports: 8080 STRICT) from default/dbg-strict" in pod_text
    assert "ALLOW  dbg-allow-client.default (1 rules, workload selector)" in pod_text
    (service,) = pod["services"]
    rules = service["virtualServices"][0]["httpRules"]
    assert rules[0]["timeout"] == "3s"
    assert rules[0]["retries"] == {
        "attempts": 2,
        "perTryTimeout": "1s",
        "retryOn": "5xx",
        "source": "VirtualService",
    }
    assert (
        rules[1]["retries"]["source"] == "Istio's default retry policy"
        and rules[1]["retries"]["attempts"] == 2
    )
    assert pod["pod"]["peerAuthentication"]["policies"] == ["default/dbg-strict"]
    assert [a["name"] for a in pod["pod"]["authorizationPolicies"]] == ["dbg-allow-client"]
    # workload: the v2 instance is in subset v2, whose own traffic policy overrides the load balancer.
    assert workload["workload"]["instances"] == ["httpbin-v2-0"]
    (service,) = workload["services"]
    assert service["destinationRule"]["podSubsets"] == ["v2"]
    assert service["trafficPolicy"]["8000"]["subset v2"]["loadBalancer"] == "ROUND_ROBIN"
    assert service["trafficPolicy"]["8000"]["default"]["loadBalancer"] == "LEAST_REQUEST (Istio's default)"
    # service: every subset with its pods and policy, and per pod its mTLS and policies.
    assert (
        "Subset v1 (version=v1): httpbin-v1-0" in svc_text
        and "Subset v2 (version=v2): httpbin-v2-0" in svc_text
    )
    assert "   subset v2:" in svc_text and "Load balancer: ROUND_ROBIN" in svc_text
    assert "timeout: 3s" in svc_text
    assert "mTLS STRICT (PeerAuthentication default/dbg-strict)" in svc_text
    assert "AuthorizationPolicies: ALLOW dbg-allow-client.default" in svc_text
    pods = {p["name"]: p for p in svc["pods"]}
    assert set(pods) == {"httpbin-v1-0", "httpbin-v2-0"}
    assert pods["httpbin-v2-0"]["subsets"] == ["v2"] and pods["httpbin-v2-0"]["mtls"] == "STRICT"
    assert pods["httpbin-v1-0"]["peerAuthentications"] == ["default/dbg-strict"]
    assert [a["name"] for a in pods["httpbin-v1-0"]["authorizationPolicies"]] == ["dbg-allow-client"]


def test_errors_are_said_plainly(resilience_mesh: MeshProcess) -> None:
    def fails(*args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "--state-dir", str(resilience_mesh.state_dir)])
        assert result.exit_code != 0, (args, result.output)
        return result.output

    assert "no pod 'nosuch'" in fails("describe", "pod", "nosuch")
    assert "no service 'nosuch' in namespace default" in fails("describe", "svc", "nosuch")
    assert "no proxy 'nosuch'" in fails("x", "authz", "check", "nosuch")
    assert "no access-log line has request id 'nosuch'" in fails("explain", "--request-id", "nosuch")
    assert "not an Istio access-log line" in fails("explain", "hello")
    assert "give exactly one of" in fails("explain")
