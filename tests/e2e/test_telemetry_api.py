"""The Telemetry API on a real mesh (two echo workloads, a and b, each with its sidecar):

- a namespace Telemetry turns on the built-in ``envoy`` access-log provider with a CEL filter
  (``response.code >= 500``): only failed requests reach the proxies' stdout (their envoy.log);
- workload Telemetries set tracing sampling to 100% for a and 0% for b: a's requests leave spans in
  the built-in collector, b's do not;
- a metrics override (REQUEST_COUNT disabled in SERVER mode for b, applied at run time) stops the
  destination-reporter istio_requests_total of b while its other metrics keep counting.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import _OPENER, MeshProcess, echo_body, wait_for

pytestmark = pytest.mark.e2e


MESH = """
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
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 500"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: a, namespace: default}
spec:
  selector: {matchLabels: {app: a}}
  tracing: [{randomSamplingPercentage: 100}]
"""

B_TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: b, namespace: default}
spec:
  selector: {matchLabels: {app: b}}
  tracing: [{randomSamplingPercentage: 0}]
"""

B_METRICS = """
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      disabled: true
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("telemetry-api"), MESH + "---" + B_TELEMETRY) as m:
        yield m


def get_json(mesh: MeshProcess, path: str) -> Any:
    with _OPENER.open(mesh.api + path, timeout=10) as resp:
        return json.loads(resp.read())


def envoy_log(mesh: MeshProcess, workload: str) -> str:
    (path,) = list(Path(mesh.state_dir).glob(f"pods/default/{workload}-0*/envoy.log"))
    return path.read_text(errors="replace")


def test_namespace_access_logging_with_a_cel_filter(mesh: MeshProcess) -> None:
    assert mesh.curl("a", "http://b/telemetry-ok").status == 200
    assert mesh.curl("a", "http://b/telemetry-fail?status=503").status == 503

    def logged(workload: str) -> list[str] | None:
        lines = [line for line in envoy_log(mesh, workload).splitlines() if "/telemetry-" in line]
        return lines or None

    # Client side (a's outbound HCM) and server side (b's inbound HCM) both log the 503, not the 200.
    for workload in ("a", "b"):
        lines = wait_for(f"the access-log line of {workload}", lambda w=workload: logged(w))
        assert all('"GET /telemetry-fail?status=503 HTTP/1.1" 503' in line for line in lines), lines
    assert "/telemetry-ok" not in envoy_log(mesh, "a") + envoy_log(mesh, "b")


def _trace(mesh: MeshProcess, trace_id: str) -> dict[str, Any] | None:
    try:
        return get_json(mesh, f"/api/traces/{trace_id}")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
        return None


def test_workload_sampling_decides_whether_spans_arrive(mesh: MeshProcess) -> None:
    # b samples 0%: its request to a is not traced (a's sidecar follows the propagated decision).
    from_b = echo_body(mesh.curl("b", "http://a/sampled-zero"))
    untraced = from_b["headers"]["x-b3-traceid"]
    # a samples 100%: its request to b is traced on both sides.
    from_a = echo_body(mesh.curl("a", "http://b/sampled-all"))
    traced = from_a["headers"]["x-b3-traceid"]
    assert untraced != traced

    doc = wait_for("a's spans", lambda: (t := _trace(mesh, traced)) and len(t["spans"]) >= 2 and t)
    kinds = sorted(s["kind"] for s in doc["spans"])
    assert kinds == ["CLIENT", "SERVER"], doc["spans"]
    assert all("/sampled-all" in s["tags"].get("http.url", "") for s in doc["spans"])
    # b's request left no span: Envoy flushes spans every second; poll a few flush intervals.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert _trace(mesh, untraced) is None, "b's request was traced at 0% sampling"
        time.sleep(0.25)


def _requests(mesh: MeshProcess) -> dict[tuple[str, str], float]:
    """(metric sample name, reporter) -> value for requests to workload b."""
    with _OPENER.open(mesh.api + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("istio_requests_total", "istio_request_duration_milliseconds_count") and (
                s.labels.get("destination_workload") == "b"
            ):
                key = (s.name, s.labels["reporter"])
                out[key] = out.get(key, 0.0) + s.value
    return out


def test_metrics_override_disables_server_request_count(mesh: MeshProcess) -> None:
    mesh.apply(B_TELEMETRY + B_METRICS)

    # Connections opened before the override keep their listener config until they close: b keeps its
    # metrics in the proxy by default, so a request on a connection a's sidecar pooled before still
    # counts with Istio's default metrics (as with istio-proxy's stats filter on a draining connection),
    # and Envoy tells a's sidecar to go away in that response. Send until one counts under the override
    # (Istio's tests likewise retry until the new config shows).
    def probe() -> bool | None:
        start = _requests(mesh)
        assert mesh.curl("a", "http://b/override-probe").status == 200

        def counted() -> dict[tuple[str, str], float] | None:
            now = _requests(mesh)
            keys = (
                ("istio_requests_total", "source"),
                ("istio_request_duration_milliseconds_count", "destination"),
            )
            return now if all(now.get(k, 0.0) > start.get(k, 0.0) for k in keys) else None

        now = wait_for("the probe's metrics", counted)
        key = ("istio_requests_total", "destination")
        return True if now.get(key, 0.0) == start.get(key, 0.0) else None

    wait_for("a request counted under the override", probe)
    before = _requests(mesh)
    n = 3
    for i in range(n):
        assert mesh.curl("a", f"http://b/counted-{i}").status == 200

    def grown() -> dict[tuple[str, str], float] | None:
        now = _requests(mesh)
        done = all(
            now.get(k, 0.0) - before.get(k, 0.0) >= n
            for k in (
                ("istio_requests_total", "source"),
                ("istio_request_duration_milliseconds_count", "destination"),
            )
        )
        return now if done else None

    after = wait_for("source requests and destination durations for b", grown)
    key = ("istio_requests_total", "destination")
    assert after.get(key, 0.0) == before.get(key, 0.0), (before, after)
