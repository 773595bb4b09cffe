"""Istio's access-log integration cases on a real mesh (echo workloads a and b, each with its sidecar).

Ported from istio/istio:
- tests/integration/telemetry/api/accesslogs_test.go: TestAccessLogs (the ``envoy`` provider enabled,
  then ``disabled: true``), TestAccessLogsFilter (testdata/accesslog/filter.yaml,
  ``request.path == '/filter-test'``), TestAccessLogsMode (mode-client/-server/-clientserver.yaml),
  TestAccessLogsDefaultProvider (no logs by default; MeshConfig ``defaultProviders.accessLogging:
  [envoy]`` turns them on);
- pilot/pkg/model/telemetry_logging.go and its tests (telemetryAccessLog, fileAccessLogFromTelemetry,
  FileAccessLogFromMeshConfig): the built-in ``envoy`` provider writes Istio's default TEXT format
  (``EnvoyTextLogFormat``) to the proxy's stdout, with MeshConfig accessLogEncoding/accessLogFormat;
  a ``labels`` provider writes JSON (``labels: {}`` is Istio's default JSON keys), a ``text`` provider
  its own format with a newline added.

Where Isthmus departs by design:
- Istio counts the test id in ``kubectl logs -c istio-proxy``; here a proxy's stdout is its
  ``envoy.log`` in the pod directory, and a relative provider ``path`` is relative to that directory
  (Envoy's working directory). These files are what the cases read: they are Envoy's own file loggers.
  ``isthmus logs`` (the gRPC access-log stream rendered by the control plane) shows every request
  whatever Telemetry says where that stream is also the metrics pipeline; a case checks that its lines
  are the same as Envoy's for the default format. Proxies keep their metrics in the in-proxy module by
  default and then stream only failed requests, so this mesh's ProxyConfig turns the module off
  (``ISTHMUS_PROXY_METRICS: "false"``) and keeps the access-log pipeline.
- The client-side line's downstream addresses are the app's connection to its sidecar's outbound port
  (explicit proxy, no iptables): Istio shows the service VIP and the pod IP there.
- Istio's negative cases sleep 2 s; here, where the same proxy logs something else (the other mode), a
  later request it does log is the sync point (Envoy writes a file's lines in completion order); only a
  proxy that logs nothing at all is watched for a bounded window.
- Not ported: ``enabled-with-targetref`` (a Gateway API gateway targeted by ``targetRefs``; Isthmus has
  no Gateway API deployment controller) and ``enable-filter-state-log.yaml`` (it reads istio-proxy's
  peer-metadata filter state, which plain Envoy does not have).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import MeshProcess, applied, wait_for

pytestmark = pytest.mark.e2e

MESH = """
# The access-log pipeline (an entry per request to the control plane, which `isthmus logs` shows), not
# the in-proxy metrics module of the default.
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: access-log-metrics, namespace: default}
spec:
  environmentVariables: {ISTHMUS_PROXY_METRICS: "false"}
---
apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  selector: {app: a}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, labels: {app: a, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b, labels: {app: b, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
"""

STDOUT = "envoy.log"  # where a proxy's /dev/stdout lands


def telemetry(body: str) -> str:
    """applyTelemetryResource / testdata/accesslog/*.yaml: the namespace's `logs` Telemetry."""
    return f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: logs, namespace: default}}\nspec:\n{body}"


def mesh_config(body: str) -> str:
    return f"apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec:\n{body}"


ENVOY_ENABLED = telemetry("  accessLogging:\n  - providers: [{name: envoy}]\n    disabled: false\n")
ENVOY_DISABLED = telemetry("  accessLogging:\n  - providers: [{name: envoy}]\n    disabled: true\n")
FILTER = telemetry(
    "  accessLogging:\n  - providers: [{name: envoy}]\n"
    "    filter: {expression: \"request.path == '/filter-test'\"}\n"
)


def mode(name: str) -> str:
    return telemetry(f"  accessLogging:\n  - providers: [{{name: envoy}}]\n    match: {{mode: {name}}}\n")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-accesslog"), MESH) as m:
        yield m


def new_id() -> str:
    return secrets.token_hex(8)


def log_text(mesh: MeshProcess, workload: str, name: str = STDOUT) -> str:
    paths = list(Path(mesh.state_dir).glob(f"pods/default/{workload}-0*/{name}"))
    return "".join(p.read_text(errors="replace") for p in paths)


def count(mesh: MeshProcess, workload: str, needle: str, name: str = STDOUT) -> int:
    """logCount: occurrences of the test id in the workload's proxy log."""
    return log_text(mesh, workload, name).count(needle)


def call(mesh: MeshProcess, src: str, dst: str, path: str) -> None:
    resp = mesh.curl(src, f"http://{dst}{path}")
    assert resp.status == 200, (resp.status, resp.body[:200])


def wait_logged(
    mesh: MeshProcess, workload: str, needle: str, name: str = STDOUT, timeout: float = 10
) -> list[str]:
    def lines() -> list[str] | None:
        return [x for x in log_text(mesh, workload, name).splitlines() if needle in x] or None

    return wait_for(f"{needle!r} in {workload}'s {name}", lines, timeout=timeout)


def send_until_logged(
    mesh: MeshProcess, src: str, dst: str, path: str, *where: tuple[str, str], timeout: float = 20
) -> None:
    """Istio's positive retry: resend the same request until every (workload, file) logged it. A
    connection opened before the config change keeps the old filter chain until its drain closes it."""
    deadline = time.monotonic() + timeout
    while True:
        call(mesh, src, dst, path)
        try:
            for workload, name in where:
                wait_logged(mesh, workload, path.split("?")[0], name, timeout=2.5)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def _quiet(mesh: MeshProcess, workloads: tuple[str, ...], needle: str, name: str = STDOUT) -> bool:
    """Envoy flushes file logs every second: watch a few flushes (Istio sleeps 2 s)."""
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        if any(count(mesh, w, needle, name) for w in workloads):
            return False
        time.sleep(0.25)
    return True


def assert_never_logged(mesh: MeshProcess, src: str, dst: str, attempts: int = 4) -> None:
    """Istio's negative retry: a new id each time (an old connection may still log), until one is not
    logged by either proxy. Neither logs anything, so this one waits out a window."""
    for _ in range(attempts):
        tid = new_id()
        call(mesh, src, dst, "/" + tid)
        if _quiet(mesh, (src, dst), tid):
            return
    raise AssertionError(f"every request {src} -> {dst} was logged: {log_text(mesh, dst)[-1500:]}")


def assert_not_logged_by(mesh: MeshProcess, src: str, dst: str, silent: str, attempts: int = 4) -> None:
    """`silent` (src or dst) logs only its other mode, so a call dst -> src, sent after ours, is logged
    by it: once that line is written, ours would have been too (Envoy writes in completion order)."""
    for _ in range(attempts):
        tid = new_id()
        call(mesh, src, dst, "/" + tid)
        send_until_logged(mesh, dst, src, "/marker-" + new_id(), (silent, STDOUT))
        if count(mesh, silent, tid) == 0:
            return
    raise AssertionError(f"{silent} logged every request {src} -> {dst}: {log_text(mesh, silent)[-1500:]}")


# --- TestAccessLogs ---------------------------------------------------------------------------------------

B_AND_A = (("b", STDOUT), ("a", STDOUT))  # no match: CLIENT_AND_SERVER, so server and client both log


def test_access_logs_enabled_then_disabled(mesh: MeshProcess) -> None:
    with applied(mesh, ENVOY_ENABLED):
        send_until_logged(mesh, "a", "b", "/" + new_id(), *B_AND_A)
    with applied(mesh, ENVOY_DISABLED):
        assert_never_logged(mesh, "a", "b")


# --- TestAccessLogsFilter ---------------------------------------------------------------------------------


def test_access_logs_filter(mesh: MeshProcess) -> None:
    with applied(mesh, FILTER):
        send_until_logged(mesh, "a", "b", "/filter-test", *B_AND_A)
        for _ in range(4):
            before = count(mesh, "b", "/filter-test ")
            other = "/" + new_id()
            call(mesh, "a", "b", other)
            call(mesh, "a", "b", "/filter-test")
            # The filtered-out request came first: once /filter-test is written, it would have been too.
            wait_for("a new /filter-test line", lambda n=before: count(mesh, "b", "/filter-test ") > n)
            if count(mesh, "b", other) + count(mesh, "a", other) == 0:
                return
        raise AssertionError(f"requests other than /filter-test were logged: {log_text(mesh, 'b')[-1500:]}")


# --- TestAccessLogsMode -----------------------------------------------------------------------------------


def test_access_logs_mode_client(mesh: MeshProcess) -> None:
    with applied(mesh, mode("CLIENT")):
        send_until_logged(mesh, "a", "b", "/" + new_id(), ("a", STDOUT))
        assert_not_logged_by(mesh, "a", "b", silent="b")  # b's outbound (CLIENT) is the sync point


def test_access_logs_mode_server(mesh: MeshProcess) -> None:
    with applied(mesh, mode("SERVER")):
        send_until_logged(mesh, "a", "b", "/" + new_id(), ("b", STDOUT))
        assert_not_logged_by(mesh, "a", "b", silent="a")  # a's inbound (SERVER) is the sync point


def test_access_logs_mode_client_and_server(mesh: MeshProcess) -> None:
    with applied(mesh, mode("CLIENT_AND_SERVER")):
        send_until_logged(mesh, "a", "b", "/" + new_id(), *B_AND_A)


# --- TestAccessLogsDefaultProvider ------------------------------------------------------------------------


def test_access_logs_default_provider(mesh: MeshProcess) -> None:
    assert_never_logged(mesh, "a", "b")  # Istio's default mesh config: no access log
    with applied(mesh, mesh_config("  defaultProviders: {accessLogging: [envoy]}\n")):
        send_until_logged(mesh, "a", "b", "/" + new_id(), *B_AND_A)


# --- EnvoyTextLogFormat: what a user reads ----------------------------------------------------------------

# Istio's default TEXT format, field by field (telemetry_logging.go EnvoyTextLogFormat).
TEXT_LINE = re.compile(
    r'^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" '
    r"(?P<code>\d+) (?P<flags>\S+) (?P<details>\S+) (?P<term>\S+) "
    r'"(?P<utfr>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) (?P<dur>\d+) (?P<ust>\S+) "(?P<xff>[^"]*)" '
    r'"(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<uhost>[^"]*)" (?P<cluster>\S+) '
    r"(?P<ulocal>\S+) (?P<dlocal>\S+) (?P<dremote>\S+) (?P<sni>\S+) (?P<route>\S+)$"
)


def isthmus_logs(mesh: MeshProcess, *args: str) -> str:
    cmd = [sys.executable, "-m", "isthmus.cli.main", "logs", *args, "--state-dir", str(mesh.state_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_default_text_format_fields_and_isthmus_logs(mesh: MeshProcess) -> None:
    ip = {p["workload"]: p["ip"] for p in mesh.status()["proxies"]}
    with applied(mesh, ENVOY_ENABLED):
        tid = new_id()
        send_until_logged(mesh, "a", "b", f"/{tid}?q=1", *B_AND_A)
        (client,) = wait_logged(mesh, "a", tid)
        (server,) = wait_logged(mesh, "b", tid)
    c, s = TEXT_LINE.match(client), TEXT_LINE.match(server)
    assert c and s, (client, server)
    for m in (c, s):
        assert (m["method"], m["path"], m["proto"], m["code"]) == ("GET", f"/{tid}?q=1", "HTTP/1.1", "200")
        assert (m["flags"], m["details"], m["term"], m["utfr"]) == ("-", "via_upstream", "-", "-")
        assert m["authority"] == "b" and m["rid"] == c["rid"] != "-"
    assert c["cluster"] == "outbound|80||b.default.svc.cluster.local", client
    # The client's downstream is the app's connection to its sidecar's outbound port (explicit proxy,
    # no iptables: Istio shows the service VIP as local address and the pod IP as remote).
    assert c["uhost"].startswith(ip["b"] + ":") and c["dlocal"] == f"{ip['a']}:15001", client
    assert c["ulocal"].startswith(ip["a"] + ":"), client  # upstream_bind_config: the pod address
    assert (c["route"], c["sni"]) == ("default", "-"), client
    assert s["cluster"] == "inbound|8080||" and s["dlocal"] == f"{ip['b']}:8080", server
    assert s["sni"] == "outbound_.80_._.b.default.svc.cluster.local", server
    assert s["dremote"].startswith(ip["a"] + ":"), server
    # `isthmus logs` renders the gRPC stream with the same operators: the same line, up to timings.
    timing = ("dur", "ust", "start")
    for workload, line in (("a", c), ("b", s)):
        rendered = wait_for(
            f"{workload}'s line in `isthmus logs`",
            lambda w=workload: [x for x in isthmus_logs(mesh, w).splitlines() if tid in x] or None,
        )
        (r,) = [TEXT_LINE.match(x) for x in rendered]
        assert r, rendered
        ours = {k: v for k, v in r.groupdict().items() if k not in timing}
        envoys = {k: v for k, v in line.groupdict().items() if k not in timing}
        assert ours == envoys, (rendered, line.string)


# --- file providers: labels (JSON), text, MeshConfig encoding ---------------------------------------------

PROVIDERS = """  extensionProviders:
  - name: json-labels
    envoyFileAccessLog:
      path: labels.json
      logFormat: {labels: {method: '%REQ(:METHOD)%', code: '%RESPONSE_CODE%', path: '%REQ(:PATH)%', peer: '%UPSTREAM_PEER_URI_SAN%'}}
  - name: json-default
    envoyFileAccessLog: {path: default.json, logFormat: {labels: {}}}
  - name: custom-text
    envoyFileAccessLog: {path: custom.log, logFormat: {text: 'CUSTOM %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%'}}
"""


def test_file_providers_labels_text_and_default_json(mesh: MeshProcess) -> None:
    providers = (
        "  accessLogging:\n  - providers: [{name: json-labels}, {name: json-default}, {name: custom-text}]\n"
    )
    with (
        applied(mesh, mesh_config(PROVIDERS)),
        applied(mesh, telemetry(providers + "    match: {mode: CLIENT}\n")),
    ):
        tid = new_id()
        where = [("a", f) for f in ("labels.json", "default.json", "custom.log")]
        send_until_logged(mesh, "a", "b", "/" + tid, *where)
        (labels,) = wait_logged(mesh, "a", tid, "labels.json")
        (default,) = wait_logged(mesh, "a", tid, "default.json")
        (text,) = wait_logged(mesh, "a", tid, "custom.log")
    # Envoy's typed JSON: the status code is a number; a SAN the upstream certificate carries.
    assert json.loads(labels) == {
        "method": "GET",
        "code": 200,
        "path": "/" + tid,
        "peer": "spiffe://cluster.local/ns/default/sa/default",
    }, labels
    doc = json.loads(default)
    assert set(doc) == {
        "start_time", "route_name", "method", "path", "protocol", "response_code", "response_flags",
        "response_code_details", "connection_termination_details", "bytes_received", "bytes_sent",
        "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority",
        "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
        "downstream_remote_address", "requested_server_name", "upstream_transport_failure_reason",
    }, doc  # fmt: skip
    assert (doc["path"], doc["response_code"], doc["authority"]) == ("/" + tid, 200, "b"), doc
    assert text == f"CUSTOM GET /{tid} 200", text  # Istio adds the missing newline: one line per request
    # The default stdout log is not written: the Telemetry names other providers.
    assert count(mesh, "a", tid) == 0


def test_envoy_provider_follows_meshconfig_encoding_and_writes_to_stdout(mesh: MeshProcess) -> None:
    """telemetryAccessLog: the built-in ``envoy`` provider (path /dev/stdout) takes MeshConfig's
    accessLogEncoding/accessLogFormat, but not its accessLogFile: the lines go to the proxy's stdout."""
    cfg = mesh_config("  accessLogFile: mesh-access.log\n  accessLogEncoding: JSON\n")
    with applied(mesh, cfg):
        tid = new_id()
        send_until_logged(mesh, "a", "b", "/" + tid, ("b", "mesh-access.log"))
        line = wait_logged(mesh, "b", tid, "mesh-access.log")[-1]  # no Telemetry: MeshConfig's file
        assert json.loads(line)["path"] == "/" + tid
        with applied(mesh, mode("SERVER")):
            send_until_logged(mesh, "a", "b", "/" + new_id(), ("b", STDOUT))  # the new chain is in use
            for _ in range(4):
                tid = new_id()
                call(mesh, "a", "b", "/" + tid)
                line = wait_logged(mesh, "b", tid)[-1]
                # A request on an old connection (old chain) would reach accessLogFile too: retry.
                if _quiet(mesh, ("b",), tid, "mesh-access.log"):
                    break
            else:
                raise AssertionError("the envoy provider kept writing to accessLogFile")
            doc = json.loads(line)
            assert (doc["path"], doc["response_code"]) == ("/" + tid, 200), doc
            # CLIENT mode names no provider: no Telemetry logging there, MeshConfig's file applies.
            wait_logged(mesh, "a", tid, "mesh-access.log")
