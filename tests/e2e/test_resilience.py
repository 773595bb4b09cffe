"""Resilience end to end (issue 3): timeouts, retries, faults, circuit breaking, outlier detection,
mirroring, request shaping, delegation and graceful drain, with real Envoy sidecars and the echo app.

Every test applies its own config through the API (waiting for every proxy to ACK it), measures the
behaviour and checks its negative case. Figures are printed (``pytest -s`` shows them). The shared mesh
is tests/e2e/meshes/resilience (see its header for who is who).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e.harness import MeshProcess, applied, echo_body

pytestmark = pytest.mark.e2e

HTTPBIN = "http://httpbin:8000"
HTTPBIN_FQDN = "httpbin.default.svc.cluster.local"

DR_HTTPBIN_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


# --- helpers ----------------------------------------------------------------------------------------


def figure(name: str, value: object) -> None:
    """The measured figures the issue asks for, printed for the closing note (pytest -s)."""
    print(f"[resilience] {name}: {value}")


def instance(mesh: MeshProcess, workload: str, index: int = 0) -> dict[str, Any]:
    found = sorted(
        (i for i in mesh.status()["instances"] if i["workload"] == workload), key=lambda i: i["instance"]
    )
    assert found, f"no instance of {workload}"
    return found[index]


def direct(mesh: MeshProcess, workload: str, path: str, index: int = 0) -> Response:
    """A request straight to the pod's sidecar inbound port (the echo's own endpoints live there)."""
    i = instance(mesh, workload, index)
    return sync.request(f"http://{i['ip']}:{i['ports'][0]['port']}{path}", timeout=5)


def echo_count(mesh: MeshProcess, workload: str) -> int:
    return direct(mesh, workload, "/.echo/count").json()["count"]


def echo_requests(mesh: MeshProcess, workload: str) -> list[dict[str, Any]]:
    return direct(mesh, workload, "/.echo/requests").json()


def echo_reset(mesh: MeshProcess, workload: str, query: str = "") -> None:
    resp = direct(mesh, workload, "/.echo/reset" + (f"?{query}" if query else ""))
    assert resp.status == 200, resp.text


def stats(mesh: MeshProcess, workload: str, pattern: str) -> dict[str, int]:
    """Counters and gauges of a workload's sidecar whose names match the regex `pattern`."""
    p = mesh.proxy(workload)
    resp = sync.request(f"http://{p['ip']}:{p['adminPort']}/stats?filter={quote(pattern)}", timeout=5)
    out: dict[str, int] = {}
    for line in resp.text.splitlines():
        name, _, value = line.rpartition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def cluster_stat(mesh: MeshProcess, workload: str, cluster: str, stat: str) -> int:
    """A cluster counter or gauge; an error when the proxy does not keep it (the stats matcher), so
    that a wait for it to reach 0 cannot pass on its absence."""
    name = f"cluster.{cluster}.{stat}"
    found = stats(mesh, workload, "^" + re.escape(name) + "$")
    assert name in found, f"{workload}'s sidecar keeps no {name} (MeshConfig proxyStatsMatcher)"
    return found[name]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def timed(mesh: MeshProcess, url: str, **kw: Any) -> tuple[Response, float]:
    t0 = time.monotonic()
    resp = mesh.curl("client", url, **kw)
    return resp, time.monotonic() - t0


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls concurrently (to overlap their waits) and return their results in order."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except BaseException as e:  # re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def send_many(mesh: MeshProcess, url: str, n: int, *, concurrency: int = 8, **kw: Any) -> list[Response]:
    """`n` requests through the client's sidecar, every response kept (with its latency)."""
    import asyncio

    from isthmus.client.http import HttpClient

    proxy = mesh.proxy_url("client")

    async def run() -> list[Response]:
        out: list[Response] = []
        todo = iter(range(n))

        async def worker() -> None:
            async with HttpClient(proxy=proxy, timeout=30) as client:
                for _ in todo:
                    out.append(await client.request(url, **kw))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out

    return asyncio.run(run())


class Stream:
    """`/stream?interval=100ms&count=N` through the client's sidecar, in a thread: N lines, 100 ms apart."""

    def __init__(self, mesh: MeshProcess, url: str) -> None:
        self.mesh, self.url = mesh, url
        self.response: Response | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        self.response = self.mesh.curl("client", self.url, timeout=60)
        self.seconds = time.monotonic() - t0

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(60)

    def wait_open(self, cluster: str) -> None:
        """Until the client's sidecar has a request in flight to `cluster` (the stream)."""
        wait_until(
            lambda: (
                self.response is None and cluster_stat(self.mesh, "client", cluster, "upstream_rq_active") > 0
            ),
            5,
            f"the stream to {cluster} to open",
        )

    def lines(self) -> list[dict[str, Any]]:
        assert self.response is not None
        return [json.loads(line) for line in self.response.body.splitlines() if line.strip()]


# --- timeouts ---------------------------------------------------------------------------------------


def test_timeout_gives_504_after_the_timeout_and_none_without_it(resilience_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /timeout}}]
        route: [{destination: {host: httpbin}}]
        timeout: 1s
      - route: [{destination: {host: httpbin}}]
    """
    with applied(resilience_mesh, vs):
        (cut, cut_s), (slow, slow_s) = in_threads(
            lambda: timed(resilience_mesh, HTTPBIN + "/timeout?delay=3s"),
            lambda: timed(resilience_mesh, HTTPBIN + "/slow?delay=3s"),
        )
    assert cut.status == 504, cut.text
    assert cut.text == "upstream request timeout"
    assert 0.95 <= cut_s < 1.8, cut_s
    assert slow.status == 200, slow.text
    assert 2.95 <= slow_s < 4.5, slow_s
    figure("timeout 1s on a 3s backend", f"504 after {cut_s:.2f}s; without timeout 200 after {slow_s:.2f}s")


# --- retries ----------------------------------------------------------------------------------------

RETRIES_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky]
  http:
  - match: [{uri: {prefix: /5xx}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
  - match: [{uri: {prefix: /connect-failure}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: connect-failure}
  - match: [{uri: {prefix: /gateway-error}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: gateway-error}
  - match: [{uri: {prefix: /status-503}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: "503"}
  - match: [{uri: {prefix: /retriable-4xx}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: retriable-4xx}
  - match: [{uri: {prefix: /no-retries}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 0}
  - match: [{uri: {prefix: /per-try}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: 5xx}
  - match: [{uri: {prefix: /no-per-try}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 2, retryOn: 5xx}
  - route: [{destination: {host: flaky}}]
"""


def attempt(mesh: MeshProcess, path: str, fail_first: int, fail_status: int = 503) -> tuple[int, int]:
    """Arm flaky to fail its next `fail_first` requests, send one request; (status, attempts seen)."""
    echo_reset(mesh, "flaky", f"fail-first={fail_first}&fail-status={fail_status}")
    resp = mesh.curl("client", "http://flaky" + path)
    return resp.status, echo_count(mesh, "flaky")


def test_retries_succeed_and_the_backend_counts_every_attempt(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    with applied(mesh, RETRIES_VS):
        for n in (1, 2, 3):
            assert attempt(mesh, "/5xx", n) == (200, n + 1), n
        # Attempts bound the retries: 1 try + 3 retries, then the failure reaches the client.
        assert attempt(mesh, "/5xx", 4) == (503, 4)
        echo_reset(mesh, "flaky", "fail-first=2")
        resp = mesh.curl("client", "http://flaky/5xx")
        seen = [r["headers"].get("x-envoy-attempt-count") for r in echo_requests(mesh, "flaky")]
        assert resp.status == 200 and seen == ["1", "2", "3"], seen
        # attempts: 0 disables retries altogether.
        assert attempt(mesh, "/no-retries", 1) == (503, 1)
    figure(
        "retries attempts=3 retryOn=5xx",
        "backend failing first N=1,2,3 -> 200 after N+1 attempts; N=4 -> 503",
    )


def test_retry_on_limits_which_failures_are_retried(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    with applied(mesh, RETRIES_VS):
        cases = {
            ("/5xx", 503): (200, 2),
            ("/5xx", 500): (200, 2),
            ("/connect-failure", 503): (503, 1),  # a 503 response is not a connect failure
            ("/gateway-error", 503): (200, 2),  # gateway-error: 502, 503, 504
            ("/gateway-error", 500): (500, 1),
            ("/status-503", 503): (200, 2),  # a status code in retryOn: retriable-status-codes
            ("/status-503", 500): (500, 1),
            ("/retriable-4xx", 409): (200, 2),
            ("/retriable-4xx", 503): (503, 1),
        }
        seen = {case: attempt(mesh, case[0], 1, case[1]) for case in cases}
    assert seen == cases
    figure("retryOn", {f"{p} {s}": v for (p, s), v in seen.items()})


def test_per_try_timeout_bounds_each_try(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    with applied(mesh, RETRIES_VS):
        echo_reset(mesh, "flaky")
        (bounded, bounded_s), (unbounded, unbounded_s) = in_threads(
            lambda: timed(mesh, "http://flaky/per-try?delay=2s"),
            lambda: timed(mesh, "http://flaky/no-per-try?delay=2s"),
        )
        tries = Counter(r["path"].split("?")[0] for r in echo_requests(mesh, "flaky"))
    # Each try is cut after 500 ms and retried (a per-try timeout counts as a 5xx): 3 tries, then 504.
    assert bounded.status == 504, bounded.text
    assert 1.45 <= bounded_s < 2.3, bounded_s
    assert tries["/per-try"] == 3, tries
    # Without perTryTimeout the single try waits for the backend.
    assert unbounded.status == 200
    assert 1.95 <= unbounded_s < 3.0, unbounded_s
    assert tries["/no-per-try"] == 1, tries
    figure(
        "perTryTimeout 500ms x 3 tries on a 2s backend",
        f"504 after {bounded_s:.2f}s ({tries['/per-try']} tries); without: 200 after {unbounded_s:.2f}s",
    )


@pytest.fixture
def refusing_service_entry() -> Iterator[str]:
    """A ServiceEntry with two endpoints: a live echo outside the mesh and a port nothing listens on."""
    from isthmus.echo.testing import EchoProcess
    from isthmus.mesh.addresses import free_ports

    live, dead = free_ports("127.0.0.1", 2)
    proc = EchoProcess(ports={live: live}, workload="external", instance="external-0")
    proc.start()
    try:
        yield f"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: half-dead}}
        spec:
          hosts: [half-dead.example.com]
          location: MESH_EXTERNAL
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          resolution: STATIC
          endpoints:
          - {{address: 127.0.0.1, ports: {{http: {live}}}}}
          - {{address: 127.0.0.1, ports: {{http: {dead}}}}}
        """
    finally:
        proc.stop()


def test_default_retry_policy_applies_without_retries(
    resilience_mesh: MeshProcess, refusing_service_entry: str
) -> None:
    mesh = resilience_mesh
    # Istio's default: 2 retries on connect-failure,refused-stream,unavailable,cancelled,
    # retriable-status-codes, with no status code listed: since istio#52111 a 503 is not retried.
    assert attempt(mesh, "/", 1) == (503, 1)
    no_retries = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: half-dead}
    spec:
      hosts: [half-dead.example.com]
      http:
      - route: [{destination: {host: half-dead.example.com}}]
        retries: {attempts: 0}
    """
    round_robin = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: half-dead}
    spec:
      host: half-dead.example.com
      trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
    """
    with applied(mesh, refusing_service_entry, round_robin):
        # A refused connection is retried on the other endpoint (previous_hosts predicate).
        default = mesh.load("client", "http://half-dead.example.com/", 40, concurrency=1)
        with applied(mesh, no_retries):
            disabled = mesh.load("client", "http://half-dead.example.com/", 40, concurrency=1)
    assert default.codes == {"200": 40}, default.codes
    assert disabled.codes == {"200": 20, "503": 20}, disabled.codes  # round robin: every other one
    figure(
        "default retry policy, one endpoint refusing connections",
        f"{default.codes} (without retries: {disabled.codes})",
    )


def test_mesh_default_http_retry_policy_overrides_the_default(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    meshconfig = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      defaultHttpRetryPolicy: {attempts: 4, retryOn: "503"}
    """
    vs_without_retries = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: flaky}
    spec:
      hosts: [flaky]
      http:
      - route: [{destination: {host: flaky}}]
    """
    assert attempt(mesh, "/", 3) == (503, 1)
    with applied(mesh, meshconfig):
        # Services without a VirtualService and VirtualService routes without `retries` alike.
        assert attempt(mesh, "/", 3) == (200, 4)
        assert attempt(mesh, "/", 5) == (503, 5)
        with applied(mesh, vs_without_retries):
            assert attempt(mesh, "/", 2) == (200, 3)
    assert attempt(mesh, "/", 3) == (503, 1)


# --- fault injection (istio.io/latest/docs/tasks/traffic-management/fault-injection/) ----------------

CALLER_TIMEOUT_3S = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    timeout: 3s
"""


def test_fault_delay_for_jason_trips_the_callers_timeout(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    ratings_delay = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: ratings}
    spec:
      hosts: [ratings]
      http:
      - match: [{headers: {end-user: {exact: jason}}}]
        fault: {delay: {percentage: {value: 100.0}, fixedDelay: 7s}}
        route: [{destination: {host: ratings}}]
      - route: [{destination: {host: ratings}}]
    """
    with applied(mesh, CALLER_TIMEOUT_3S, ratings_delay):
        (jason, jason_s), (other, other_s) = in_threads(
            lambda: timed(mesh, "http://reviews:9080/", headers=[("end-user", "jason")]),
            lambda: timed(mesh, "http://reviews:9080/", headers=[("end-user", "ana")]),
        )
    # reviews calls ratings, which holds jason's call for 7 s: the caller's 3 s timeout fires first.
    assert jason.status == 504, jason.text
    assert 2.95 <= jason_s < 4.0, jason_s
    assert other.status == 200 and other_s < 1.0, (other.status, other_s)
    assert echo_body(other)["calls"][0]["status"] == 200
    figure(
        "fault delay 7s for jason, caller timeout 3s",
        f"jason 504 after {jason_s:.2f}s; others 200 in {other_s:.3f}s",
    )


def test_fault_abort_for_jason_only(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    ratings_abort = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: ratings}
    spec:
      hosts: [ratings]
      http:
      - match: [{headers: {end-user: {exact: jason}}}]
        fault: {abort: {percentage: {value: 100.0}, httpStatus: 500}}
        route: [{destination: {host: ratings}}]
      - route: [{destination: {host: ratings}}]
    """
    with applied(mesh, ratings_abort):
        jason = echo_body(mesh.curl("client", "http://reviews:9080/", headers=[("end-user", "jason")]))
        other = echo_body(mesh.curl("client", "http://reviews:9080/", headers=[("end-user", "ana")]))
        direct_abort = mesh.curl("client", "http://ratings:9080/", headers=[("end-user", "jason")])
        # reviews forwards x-request-id: which of the two calls reached ratings?
        reached = {r["headers"].get("x-request-id") for r in echo_requests(mesh, "ratings-v1")}
    assert jason["calls"][0]["status"] == 500 and jason["calls"][0]["body"] == "fault filter abort"
    assert other["calls"][0]["status"] == 200
    assert direct_abort.status == 500 and direct_abort.text == "fault filter abort"
    assert other["headers"]["x-request-id"] in reached
    assert jason["headers"]["x-request-id"] not in reached


def test_fault_percentages_within_a_few_percent(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: ratings}
    spec:
      hosts: [ratings]
      http:
      - fault:
          delay: {percentage: {value: 30.0}, fixedDelay: 200ms}
          abort: {percentage: {value: 25.0}, httpStatus: 503}
        route: [{destination: {host: ratings}}]
    """
    n = 1000
    with applied(mesh, vs):
        responses = send_many(mesh, "http://ratings:9080/", n, concurrency=32)
    codes = Counter(r.status for r in responses)
    aborted = codes[503]
    # Envoy's timer may fire a few ms early; undelayed requests take a few ms.
    delayed = sum(1 for r in responses if r.latency_ms >= 150)
    assert codes[200] + aborted == n, codes
    # Within 5 percentage points (binomial: 3.6 and 3.5 standard deviations).
    assert abs(aborted - 0.25 * n) <= 0.05 * n, aborted
    assert abs(delayed - 0.30 * n) <= 0.05 * n, delayed
    figure(
        "fault abort 25% / delay 30% over 1000 requests",
        f"{aborted} aborted ({aborted / n:.1%}), {delayed} delayed ({delayed / n:.1%})",
    )


# --- circuit breaking (istio.io/latest/docs/tasks/traffic-management/circuit-breaking/) --------------

CIRCUIT_BREAKER_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


def test_circuit_breaking_overflows_with_uo_and_not_without_limits(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    cluster = f"outbound|8000||{HTTPBIN_FQDN}"
    access_log = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      accessLogFile: /dev/stdout
    """
    url = HTTPBIN + "/?delay=50ms"
    # The task's fortio run: 3 concurrent connections, 30 requests.
    unlimited = mesh.load("client", url, 30, concurrency=3)
    with applied(mesh, access_log, CIRCUIT_BREAKER_DR):
        before = cluster_stat(mesh, "client", cluster, "upstream_rq_pending_overflow")
        limited = mesh.load("client", url, 30, concurrency=3)
        overflow = cluster_stat(mesh, "client", cluster, "upstream_rq_pending_overflow") - before
        log_path = mesh.state_dir / "pods" / "default" / "client-0" / "envoy.log"

        def uo_lines() -> list[str]:
            return [ln for ln in log_path.read_text(errors="replace").splitlines() if '" 503 UO ' in ln]

        # Envoy flushes access logs every second.
        wait_until(lambda: len(uo_lines()) >= overflow > 0, 5, "the UO entries in the client's access log")
    assert unlimited.codes == {"200": 30}, unlimited.codes
    rejected = limited.codes.get("503", 0)
    assert rejected >= 5 and limited.codes.get("200", 0) >= 2, limited.codes
    assert overflow == rejected, (overflow, limited.codes)
    overloaded = [r for r in limited.responses if r["status"] == 503]
    assert overloaded and all(r["headers"].get("x-envoy-overloaded") == "true" for r in overloaded)
    assert all(
        r["body"] == "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        for r in overloaded
    ), overloaded[0]
    figure(
        "circuit breaking maxConnections 1, http1MaxPendingRequests 1, 3 concurrent",
        f"{limited.codes} ({rejected / 30:.0%} UO, upstream_rq_pending_overflow +{overflow}); "
        f"without limits {unlimited.codes}",
    )


# --- outlier detection ---------------------------------------------------------------------------------
#
# Envoy applies health changes (ejections) to its load balancers at once, but merges the ones that follow
# within a second (`common_lb_config.update_merge_window`, 1 s by default, which istiod leaves unset):
# an instance ejected again right after its return still gets traffic for up to a second. The tests
# therefore drive requests until the state they wait for is reached, and check what happened on the way.


def od_rule(host: str, *, outlier_detection: bool = True, **fields: Any) -> str:
    """ROUND_ROBIN so that a failing instance's share is exact; `fields` go to outlierDetection."""
    od = {"consecutive5xxErrors": 3, "interval": "500ms", "baseEjectionTime": "3s", **fields}
    outlier = f"outlierDetection: {json.dumps(od)}" if outlier_detection else ""
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: {host}}}
    spec:
      host: {host}
      trafficPolicy:
        loadBalancer: {{simple: ROUND_ROBIN}}
        {outlier}
    """


def od_stat(mesh: MeshProcess, host: str, stat: str) -> int:
    return cluster_stat(
        mesh, "client", f"outbound|80||{host}.default.svc.cluster.local", "outlier_detection." + stat
    )


def drive(
    mesh: MeshProcess, url: str, done: Callable[[list[Response]], bool], limit: int = 300
) -> list[Response]:
    """Sequential requests until `done(responses so far)` (checked after each one)."""
    out: list[Response] = []
    while len(out) < limit:
        out.append(mesh.curl("client", url))
        if done(out):
            return out
    raise AssertionError(f"not done after {limit} requests: {Counter(r.status for r in out)}")


def about(codes: dict[str, int], n: int, failing: float) -> bool:
    """Round robin gives each instance its share of `n` (give or take a couple: the starting point of
    Envoy's round robin is random and moves when the host set changes)."""
    return sum(codes.values()) == n and abs(codes.get("503", 0) - failing * n) <= 3


def tail_ok(n: int) -> Callable[[list[Response]], bool]:
    return lambda rs: len(rs) >= n and all(r.status == 200 for r in rs[-n:])


def instances_of(responses: list[Response]) -> set[str]:
    return {echo_body(r)["instance"] for r in responses if r.status == 200}


def test_outlier_detection_ejects_the_failing_instance_and_brings_it_back(
    resilience_mesh: MeshProcess,
) -> None:
    mesh = resilience_mesh
    with applied(mesh, od_rule("od", outlier_detection=False)):
        baseline = mesh.load("client", "http://od/", 60, concurrency=1)
    with applied(mesh, od_rule("od", maxEjectionPercent=100)):
        first = mesh.load("client", "http://od/", 60, concurrency=1)
        ejected_at = time.monotonic()
        assert od_stat(mesh, "od", "ejections_active") == 1
        healthy = mesh.load("client", "http://od/", 60, concurrency=1)
        # The ejection ends at the first detector sweep (every `interval`) after baseEjectionTime.
        wait_until(lambda: od_stat(mesh, "od", "ejections_active") == 0, 8, "the instance's return")
        back_after = time.monotonic() - ejected_at
        # Back in rotation: it fails again, and is ejected again (for 2 x baseEjectionTime).
        again = drive(
            mesh,
            "http://od/",
            lambda rs: od_stat(mesh, "od", "ejections_enforced_consecutive_5xx") == 2 and tail_ok(15)(rs),
        )
    # Without outlier detection the failing instance keeps its share (round robin: a third).
    assert about(baseline.codes, 60, 1 / 3), baseline.codes
    # With it: exactly consecutive5xxErrors failures, then only the two healthy instances answer.
    assert first.codes == {"200": 57, "503": 3}, first.codes
    assert healthy.codes == {"200": 60} and set(healthy.instances) == {"od-good-a-0", "od-good-b-0"}
    assert 2.9 <= back_after <= 4.5, back_after
    failed_again = sum(r.status == 503 for r in again)
    assert failed_again >= 3, failed_again
    assert instances_of(again[-15:]) == {"od-good-a-0", "od-good-b-0"}
    figure(
        "outlier detection, 1 of 3 failing, consecutive5xxErrors 3, baseEjectionTime 3s",
        f"no OD {baseline.codes}; OD {first.codes} then {healthy.codes} from {sorted(healthy.instances)}; "
        f"back after {back_after:.2f}s, ejected again after {failed_again} failures",
    )


def test_outlier_detection_honours_max_ejection_percent(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    # Unset, Envoy's default applies (10%): with three instances none may be ejected (istiod sets only
    # what the user sets; Istio's examples set maxEjectionPercent for this reason).
    with applied(mesh, od_rule("od")):
        default = mesh.load("client", "http://od/", 60, concurrency=1)
        default_active = od_stat(mesh, "od", "ejections_active")
        default_overflow = od_stat(mesh, "od", "ejections_overflow")
    # od2: one healthy instance and two failing. Ejecting one is 33%, two 67%.
    with applied(mesh, od_rule("od2", maxEjectionPercent=50, baseEjectionTime="1m")):
        drive(
            mesh, "http://od2/", lambda rs: len(rs) >= 60 and od_stat(mesh, "od2", "ejections_overflow") > 0
        )
        capped_active = od_stat(mesh, "od2", "ejections_active")
        capped_tail = mesh.load("client", "http://od2/", 40, concurrency=1).codes
    with applied(mesh, od_rule("od2", maxEjectionPercent=100, baseEjectionTime="1m")):
        full = drive(
            mesh, "http://od2/", lambda rs: od_stat(mesh, "od2", "ejections_active") == 2 and tail_ok(15)(rs)
        )
    assert about(default.codes, 60, 1 / 3) and default_active == 0 and default_overflow >= 1, default.codes
    assert capped_active == 1, capped_active
    assert about(capped_tail, 40, 1 / 2), capped_tail  # the second failing instance stays in
    assert instances_of(full[-15:]) == {"od-good-a-0"}
    figure(
        "maxEjectionPercent",
        f"unset (10%), 1 of 3 failing: {default.codes}, {default_overflow} ejections refused; "
        f"50%, 2 of 3 failing: 1 ejected, then {capped_tail}; 100%: both ejected after "
        f"{sum(r.status == 503 for r in full)} failures",
    )


def test_outlier_detection_honours_min_health_percent(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    # One of three ejected leaves 67% healthy: below minHealthPercent 70 Envoy's panic mode routes to
    # every instance, ejected or not. (Unset, istiod disables panic mode: the test above.)
    rule = od_rule("od", maxEjectionPercent=100, minHealthPercent=70, baseEjectionTime="1m")
    with applied(mesh, rule):
        drive(mesh, "http://od/", lambda rs: od_stat(mesh, "od", "ejections_active") == 1)
        panic = mesh.load("client", "http://od/", 60, concurrency=1)
        panics = cluster_stat(mesh, "client", "outbound|80||od.default.svc.cluster.local", "lb_healthy_panic")
    assert about(panic.codes, 60, 1 / 3), panic.codes
    assert panics >= 60, panics
    figure("minHealthPercent 70, 1 of 3 ejected", f"{panic.codes} ({panics} panic-mode picks)")


# --- mirroring -------------------------------------------------------------------------------------------


def test_mirror_reaches_the_mirror_and_its_responses_are_ignored(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    v2_cluster = f"outbound|8000|v2|{HTTPBIN_FQDN}"
    flaky_cluster = "outbound|80||flaky.default.svc.cluster.local"

    def run(mirroring: dict[str, Any], n: int) -> tuple[int, int]:
        """n requests to httpbin v1 with `mirroring`; (requests httpbin-v2 got, requests flaky got)."""
        echo_reset(mesh, "httpbin-v2")
        echo_reset(mesh, "flaky", "fail-first=1000000")  # a mirror that fails every request
        rule = {"route": [{"destination": {"host": "httpbin", "subset": "v1"}}], **mirroring}
        vs = f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: httpbin}}
        spec:
          hosts: [httpbin]
          http: [{json.dumps(rule)}]
        """
        with applied(mesh, DR_HTTPBIN_SUBSETS, vs):
            result = mesh.load("client", HTTPBIN + "/mirrored", n, concurrency=8)
            # Mirrored requests run in the background: wait until none is in flight.
            wait_until(
                lambda: (
                    cluster_stat(mesh, "client", v2_cluster, "upstream_rq_active") == 0
                    and cluster_stat(mesh, "client", flaky_cluster, "upstream_rq_active") == 0
                ),
                10,
                "mirrored requests to finish",
            )
        assert result.codes == {"200": n}, result.codes
        assert set(result.instances) == {"httpbin-v1-0"}, result.instances
        return echo_count(mesh, "httpbin-v2"), echo_count(mesh, "flaky")

    # mirror (100% by default) to a subset; mirrored requests carry the `-shadow` authority.
    mirror = {"mirror": {"host": "httpbin", "subset": "v2"}}
    v2, _ = run(mirror, 50)
    shadow_hosts = {r["host"] for r in echo_requests(mesh, "httpbin-v2")}
    # mirrorPercentage; an explicit 0 means no mirroring.
    v2_half, _ = run({**mirror, "mirrorPercentage": {"value": 50.0}}, 400)
    v2_zero, _ = run({**mirror, "mirrorPercentage": {"value": 0.0}}, 50)
    # mirrors: several, each with its own percentage; the failing mirror's 503s are ignored.
    v2_m, flaky_m = run(
        {
            "mirrors": [
                {"destination": {"host": "httpbin", "subset": "v2"}},
                {"destination": {"host": "flaky"}, "percentage": {"value": 25.0}},
            ]
        },
        400,
    )
    assert v2 == 50
    assert shadow_hosts == {"httpbin-shadow:8000"}, shadow_hosts
    assert 140 <= v2_half <= 260, v2_half  # binomial(400, 0.5): 3 sd = 30
    assert v2_zero == 0
    assert v2_m == 400 and 70 <= flaky_m <= 130, (v2_m, flaky_m)  # binomial(400, 0.25): 3 sd = 26
    figure(
        "mirroring",
        f"100%: {v2}/50; mirrorPercentage 50: {v2_half}/400; 0: {v2_zero}/50; mirrors 100% + 25% "
        f"(failing): {v2_m}/400 and {flaky_m}/400; the client always got 200 from v1",
    )


# --- request shaping -------------------------------------------------------------------------------------


def test_rewrites_reach_the_backend(resilience_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /old}}]
        rewrite: {uri: /new}
        route: [{destination: {host: httpbin}}]
      - match: [{uri: {prefix: /re/}}]
        rewrite: {uriRegexRewrite: {match: "^/re/([a-z]+)/(.*)$", rewrite: '/\\2/\\1'}}
        route: [{destination: {host: httpbin}}]
      - match: [{uri: {prefix: /authority}}]
        rewrite: {authority: backend.example.com}
        route: [{destination: {host: httpbin}}]
      - route: [{destination: {host: httpbin}}]
    """
    with applied(resilience_mesh, vs):
        get = lambda path: echo_body(resilience_mesh.curl("client", HTTPBIN + path))  # noqa: E731
        assert get("/old/x?q=1")["path"] == "/new/x?q=1"
        assert get("/older")["path"] == "/newer"  # a prefix rewrite, as Envoy's prefix_rewrite
        assert get("/re/abc/def")["path"] == "/def/abc"
        body = get("/authority/a")
        assert body["host"] == "backend.example.com" and body["path"] == "/authority/a"
        assert body["headers"].get("x-forwarded-host") is None
        assert get("/other")["host"] == "httpbin:8000"


def test_redirects_are_what_the_client_sees(resilience_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {exact: /uri}}]
        redirect: {uri: /moved}
      - match: [{uri: {exact: /authority}}]
        redirect: {authority: new.example.com, redirectCode: 302}
      - match: [{uri: {exact: /port}}]
        redirect: {port: 8443, scheme: https, redirectCode: 307}
      - match: [{uri: {exact: /derive}}]
        redirect: {authority: other.example.com, derivePort: FROM_REQUEST_PORT, redirectCode: 308}
      - match: [{uri: {exact: /default-port}}]
        redirect: {authority: plain.example.com, port: 80, redirectCode: 303}
      - match: [{uri: {exact: /scheme}}]
        redirect: {scheme: https, authority: secure.example.com, derivePort: FROM_PROTOCOL_DEFAULT}
      - route: [{destination: {host: httpbin}}]
    """
    echo_reset(resilience_mesh, "httpbin-v1")
    echo_reset(resilience_mesh, "httpbin-v2")
    with applied(resilience_mesh, vs):
        seen = {}
        for path in ("/uri", "/authority", "/port", "/derive", "/default-port", "/scheme"):
            resp = resilience_mesh.curl("client", HTTPBIN + path)
            seen[path] = (resp.status, resp.header("location"))
    assert seen == {
        "/uri": (301, "http://httpbin:8000/moved"),
        "/authority": (302, "http://new.example.com/authority"),
        "/port": (307, "https://httpbin:8443/port"),
        "/derive": (308, "http://other.example.com:8000/derive"),
        "/default-port": (303, "http://plain.example.com/default-port"),
        "/scheme": (301, "https://secure.example.com/scheme"),
    }, seen
    assert echo_count(resilience_mesh, "httpbin-v1") + echo_count(resilience_mesh, "httpbin-v2") == 0


def test_direct_response(resilience_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {exact: /teapot}}]
        directResponse: {status: 418, body: {string: "short and stout"}}
        headers: {response: {set: {content-type: text/plain}}}
      - match: [{uri: {exact: /bytes}}]
        directResponse: {status: 200, body: {bytes: "aXN0aG11cw=="}}
      - match: [{uri: {exact: /empty}}]
        directResponse: {status: 503}
      - route: [{destination: {host: httpbin}}]
    """
    echo_reset(resilience_mesh, "httpbin-v1")
    echo_reset(resilience_mesh, "httpbin-v2")
    with applied(resilience_mesh, vs):
        teapot = resilience_mesh.curl("client", HTTPBIN + "/teapot")
        raw = resilience_mesh.curl("client", HTTPBIN + "/bytes")
        empty = resilience_mesh.curl("client", HTTPBIN + "/empty")
        passed = resilience_mesh.curl("client", HTTPBIN + "/other")
    assert (teapot.status, teapot.text, teapot.header("content-type")) == (
        418,
        "short and stout",
        "text/plain",
    )
    assert (raw.status, raw.body) == (200, b"isthmus")
    assert (empty.status, empty.body) == (503, b"")
    assert passed.status == 200
    assert echo_count(resilience_mesh, "httpbin-v1") + echo_count(resilience_mesh, "httpbin-v2") == 1


def test_cors_preflight_and_actual_requests(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /ignore}}]
        route: [{destination: {host: httpbin}}]
        corsPolicy:
          allowOrigins: [{exact: "https://ok.example"}]
          allowMethods: [GET]
          unmatchedPreflights: IGNORE
      - route: [{destination: {host: httpbin}}]
        corsPolicy:
          allowOrigins: [{exact: "https://ok.example"}, {regex: "https://.*\\\\.trusted\\\\.example"}]
          allowMethods: [GET, POST]
          allowHeaders: [x-custom]
          exposeHeaders: [x-exposed]
          maxAge: 24h
          allowCredentials: true
    """

    def preflight(origin: str, path: str = "/api") -> Response:
        return mesh.curl(
            "client",
            HTTPBIN + path,
            method="OPTIONS",
            headers=[("Origin", origin), ("Access-Control-Request-Method", "POST")],
        )

    def counts() -> int:
        return echo_count(mesh, "httpbin-v1") + echo_count(mesh, "httpbin-v2")

    echo_reset(mesh, "httpbin-v1")
    echo_reset(mesh, "httpbin-v2")
    with applied(mesh, vs):
        ok = preflight("https://ok.example")
        regex = preflight("https://app.trusted.example")
        assert counts() == 0  # preflights of allowed origins are answered by the sidecar
        evil = preflight("https://evil.example")
        assert counts() == 1  # FORWARD (the default): an unmatched preflight goes to the backend
        ignored = preflight("https://evil.example", "/ignore")
        assert counts() == 1  # IGNORE: answered without CORS headers, not forwarded
        actual = mesh.curl("client", HTTPBIN + "/api", headers=[("Origin", "https://ok.example")])
        actual_evil = mesh.curl("client", HTTPBIN + "/api", headers=[("Origin", "https://evil.example")])
    h = ok.header_map()
    assert ok.status == 200
    assert h["access-control-allow-origin"] == "https://ok.example"
    assert h["access-control-allow-methods"] == "GET,POST"
    assert h["access-control-allow-headers"] == "x-custom"
    assert h["access-control-max-age"] == "86400"
    assert h["access-control-allow-credentials"] == "true"
    assert regex.header("access-control-allow-origin") == "https://app.trusted.example"
    assert evil.status == 200 and evil.header("access-control-allow-origin") is None
    assert echo_body(evil)["method"] == "OPTIONS"
    assert ignored.status == 200 and ignored.header("access-control-allow-origin") is None
    assert ignored.body == b""
    assert actual.header("access-control-allow-origin") == "https://ok.example"
    assert actual.header("access-control-expose-headers") == "x-exposed"
    assert actual.header("access-control-allow-credentials") == "true"
    assert actual_evil.status == 200 and actual_evil.header("access-control-allow-origin") is None


def test_header_operations_at_rule_and_destination_level(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - match: [{uri: {prefix: /single}}]
        headers:
          request:
            set: {x-set: rule, x-both: rule}
            add: {x-add: rule}
            remove: [x-remove]
          response:
            set: {x-resp-set: rule}
            add: {x-resp-add: rule}
            remove: [x-resp-remove]
        route:
        - destination: {host: httpbin, subset: v1}
          headers:
            request: {set: {x-dest: v1, x-both: destination}}
            response: {add: {x-dest-resp: v1}, remove: [x-dest-remove]}
      - match: [{uri: {prefix: /weighted}}]
        route:
        - destination: {host: httpbin, subset: v1}
          weight: 50
          headers:
            request: {set: {x-dest: v1, ":authority": v1.httpbin.internal}}
            response: {set: {x-served-by: v1}}
        - destination: {host: httpbin, subset: v2}
          weight: 50
          headers:
            request: {set: {x-dest: v2}}
            response: {set: {x-served-by: v2}}
      - route: [{destination: {host: httpbin}}]
    """
    with applied(mesh, DR_HTTPBIN_SUBSETS, vs):
        resp = mesh.curl(
            "client",
            HTTPBIN + "/single?header=x-resp-remove:gone&header=x-dest-remove:gone&header=x-resp-add:backend",
            headers=[("x-remove", "1"), ("x-set", "client"), ("x-add", "client")],
        )
        weighted = mesh.load("client", HTTPBIN + "/weighted", 40, concurrency=4)
    body = echo_body(resp)
    seen = body["headers"]
    # What the backend sees.
    assert seen["x-set"] == "rule"  # set overwrites
    assert seen["x-add"] == "client,rule"  # add appends
    assert "x-remove" not in seen
    assert seen["x-dest"] == "v1"
    assert seen["x-both"] == "destination"  # destination-level ops come after the rule's
    # What the client sees.
    h = resp.header_map()
    assert h["x-resp-set"] == "rule"
    assert h["x-resp-add"] == "backend,rule"
    assert "x-resp-remove" not in h and "x-dest-remove" not in h
    assert h["x-dest-resp"] == "v1"
    # Weighted destinations carry their own operations (and host rewrite).
    assert weighted.codes == {"200": 40} and set(weighted.versions) == {"v1", "v2"}, weighted.versions
    for r in weighted.responses:
        version = r["body"]["version"]
        assert r["body"]["headers"]["x-dest"] == version
        assert r["headers"]["x-served-by"] == version
        assert r["body"]["host"] == ("v1.httpbin.internal" if version == "v1" else "httpbin:8000")


def test_delegate_virtual_services(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    root = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - name: api
        match: [{uri: {prefix: /api}}]
        delegate: {name: httpbin-api}
        timeout: 1s
        headers: {request: {set: {x-root: "yes"}}}
      - route: [{destination: {host: httpbin, subset: v2}}]
        headers: {request: {set: {x-root-default: "yes"}}}
    """
    delegate = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin-api}
    spec:
      http:
      - name: v1
        match: [{uri: {prefix: /api/v1}}]
        route: [{destination: {host: httpbin, subset: v1}}]
      - name: conflicting
        match: [{uri: {prefix: /elsewhere}}]
        route: [{destination: {host: httpbin, subset: v1}}]
      - name: rest
        route: [{destination: {host: httpbin, subset: v2}}]
        headers: {request: {set: {x-delegate: "yes"}}}
    """
    with applied(mesh, DR_HTTPBIN_SUBSETS, delegate, root):
        v1 = echo_body(mesh.curl("client", HTTPBIN + "/api/v1/x"))
        rest = echo_body(mesh.curl("client", HTTPBIN + "/api/other"))
        elsewhere = echo_body(mesh.curl("client", HTTPBIN + "/elsewhere"))
        slow = mesh.curl("client", HTTPBIN + "/api/v1/slow?delay=2s")
    # The delegate's routes replace the root's, under the root's match, inheriting what they leave unset.
    assert v1["version"] == "v1" and v1["headers"].get("x-root") == "yes"
    assert rest["version"] == "v2"
    assert rest["headers"].get("x-delegate") == "yes" and "x-root" not in rest["headers"]
    # A delegate route whose match conflicts with the root's is dropped.
    assert elsewhere["version"] == "v2" and elsewhere["headers"].get("x-root-default") == "yes"
    assert slow.status == 504  # the root's timeout


# --- graceful drain and config pushes -------------------------------------------------------------


def test_config_pushes_do_not_cut_an_open_stream(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    route_change = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: httpbin}
    spec:
      hosts: [httpbin]
      http:
      - route: [{destination: {host: httpbin, subset: v2}}]
    """
    listener_change = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      accessLogFile: /dev/stdout
    """
    with Stream(mesh, HTTPBIN + "/stream?interval=100ms&count=60") as stream:
        stream.wait_open(f"outbound|8000||{HTTPBIN_FQDN}")
        # RDS (a route change), then LDS (every HTTP connection manager changes).
        with applied(mesh, DR_HTTPBIN_SUBSETS, route_change), applied(mesh, listener_change):
            moved = mesh.load("client", HTTPBIN + "/", 10)
    assert moved.versions == {"v2": 10}
    assert stream.response is not None and stream.response.error is None, stream.response
    lines = stream.lines()
    assert [ln["seq"] for ln in lines] == list(range(60))
    assert len({ln["instance"] for ln in lines}) == 1
    figure(
        "stream across a route (RDS) and listener (LDS) change",
        f"{len(lines)}/60 lines in {stream.seconds:.2f}s",
    )


ROLL_CLUSTER = "outbound|80||roll.default.svc.cluster.local"


def roll_instances(mesh: MeshProcess) -> list[str]:
    return sorted(i["instance"] for i in mesh.status()["instances"] if i["workload"] == "roll")


def restart(mesh: MeshProcess, workload: str) -> tuple[list[dict[str, Any]], float]:
    t0 = time.monotonic()
    code, data = mesh._call("POST", "/api/restart", params={"workload": workload}, timeout=120)
    assert code == 200, data
    return data["instances"], time.monotonic() - t0


def test_rolling_restart_under_load_drops_nothing(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    drain = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      defaultConfig: {terminationDrainDuration: 15s}
    """
    before = roll_instances(mesh)
    assert len(before) == 3
    proxy = mesh.proxy_url("client")
    watched = (
        "upstream_rq_retry",  # nothing needed the default retry policy
        "upstream_cx_connect_fail",  # nothing connected to a pod that had stopped listening
        "upstream_cx_destroy_remote_with_active_rq",  # no request in flight was cut
        "upstream_cx_destroy_local_with_active_rq",
        "upstream_rq_rx_reset",
        "upstream_rq_tx_reset",
        "upstream_cx_destroy_local",  # the client closing its pooled connections to a removed pod
    )
    start = {k: cluster_stat(mesh, "client", ROLL_CLUSTER, k) for k in watched}
    with applied(mesh, drain):
        fast = sync.LoadGenerator("http://roll/", proxy=proxy, concurrency=4, qps=100)
        slow = sync.LoadGenerator("http://roll/slow?delay=300ms", proxy=proxy, concurrency=4)
        with fast, slow, Stream(mesh, "http://roll/stream?interval=100ms&count=100") as stream:
            fast.wait_for(50)
            slow.wait_for(8)
            report, took = restart(mesh, "roll")
            fast.wait_for(fast.completed + 50)
        after = roll_instances(mesh)
        client = {k: cluster_stat(mesh, "client", ROLL_CLUSTER, k) - v for k, v in start.items()}
    assert fast.result is not None and slow.result is not None
    assert fast.result.all_ok, fast.result.to_dict()
    assert slow.result.all_ok, slow.result.to_dict()
    assert stream.response is not None and stream.response.error is None, stream.response
    lines = stream.lines()
    assert [ln["seq"] for ln in lines] == list(range(100)), len(lines)
    streamed_by = {ln["instance"] for ln in lines}
    assert len(streamed_by) == 1 and streamed_by <= set(before)
    assert set(after).isdisjoint(before) and len(after) == 3
    assert {e["old"] for e in report} == set(before) and {e["new"] for e in report} == set(after)
    assert all(e["endpointsAcked"] and e["connectionsLeft"] == 0 for e in report), report
    # The instance holding the stream waited for it; the others had nothing left once out of EDS.
    (stream_pod,) = [e for e in report if e["old"] in streamed_by]
    assert stream_pod["drainedMs"] > 500, report
    # The client's sidecar closed its idle connections to each old pod itself (EDS removal drains the
    # pools of removed hosts): no resets, no connect failures, no retries.
    assert client["upstream_cx_destroy_local"] >= 3, client
    assert all(v == 0 for k, v in client.items() if k != "upstream_cx_destroy_local"), client
    served = Counter(fast.result.instances)
    figure(
        "rolling restart of 3 instances under load",
        f"{took:.1f}s; {fast.result.requests} requests at 100 qps {fast.result.codes}, "
        f"{slow.result.requests} slow requests {slow.result.codes}, p99 {fast.result.latency_ms['p99']:.1f} ms; "
        f"10s stream {len(lines)}/100 lines uncut; served by {dict(served)}; client sidecar: {client}",
    )
    for e in report:
        figure(
            f"  drain {e['old']} -> {e['new']}",
            f"new ready in {e['startMs']:.0f} ms; endpoints left (all proxies ACKed) in "
            f"{e['leftEndpointsMs']:.0f} ms; drained in {e['drainedMs']:.0f} ms; stopped in {e['stoppedMs']:.0f} ms",
        )


def test_a_stream_longer_than_the_drain_period_is_cut_at_its_end(resilience_mesh: MeshProcess) -> None:
    mesh = resilience_mesh
    drain = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      defaultConfig: {terminationDrainDuration: 1s}
    """
    with applied(mesh, drain), Stream(mesh, "http://roll/stream?interval=100ms&count=150") as stream:
        stream.wait_open(ROLL_CLUSTER)
        report, took = restart(mesh, "roll")
    assert stream.response is not None and stream.response.error is not None
    lines = stream.lines()
    assert 0 < len(lines) < 150
    (cut,) = [e for e in report if e["connectionsLeft"]]
    assert 900 <= cut["drainedMs"] <= 1600, cut
    figure(
        "terminationDrainDuration 1s, 15s stream",
        f"cut after {len(lines)} lines ({stream.seconds:.1f}s): drained {cut['drainedMs']:.0f} ms, "
        f"then the app's own shutdown {cut['stoppedMs']:.0f} ms",
    )


def mesh_config_with_proxy_metadata(key: str, value: str) -> str:
    return f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec:
      defaultConfig: {{proxyMetadata: {{{key}: "{value}"}}}}
    """


def test_istio_delta_xds_false_gives_restarted_proxies_state_of_the_world(
    resilience_mesh: MeshProcess,
) -> None:
    """Proxies speak delta xDS unless MeshConfig proxyMetadata ISTIO_DELTA_XDS is false (istio-agent's
    switch): the setting applies to proxies started after it, and they route as before."""
    mesh = resilience_mesh
    assert mesh.proxy("client")["xdsProtocol"] == "delta"
    sotw = mesh_config_with_proxy_metadata("ISTIO_DELTA_XDS", "false")
    try:
        with applied(mesh, sotw):
            assert mesh.proxy("client")["xdsProtocol"] == "delta"  # running proxies keep their stream
            restart(mesh, "client")
            assert mesh.proxy("client")["xdsProtocol"] == "sotw"
            assert mesh.wait_settled()["proxies"]
            result = mesh.load("client", HTTPBIN + "/", 5)
            assert result.codes == {"200": 5}, result
    finally:
        restart(mesh, "client")
    assert mesh.proxy("client")["xdsProtocol"] == "delta"


def _sidecar_table(mesh: MeshProcess, workload: str) -> dict[str, Any]:
    """The `http_proxy` route configuration the workload's Envoy holds (its admin config dump)."""
    p = mesh.proxy(workload)
    resp = sync.request(
        f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=dynamic_route_configs", timeout=5
    )
    tables = [c["route_config"] for c in json.loads(resp.body)["configs"]]
    (table,) = [t for t in tables if t["name"] == "http_proxy"]
    return table


def test_isthmus_vhds_false_keeps_restarted_sidecars_tables_inline(resilience_mesh: MeshProcess) -> None:
    """A delta sidecar's table comes with its virtual hosts over VHDS (Envoy names them
    `http_proxy/<host:port>`); MeshConfig proxyMetadata ISTHMUS_VHDS: "false" gives proxies started after
    it the table inline, virtual hosts named as istiod names them, and they route as before."""
    mesh = resilience_mesh
    table = _sidecar_table(mesh, "client")
    assert "vhds" in table and all(vh["name"].startswith("http_proxy/") for vh in table["virtual_hosts"])
    inline = mesh_config_with_proxy_metadata("ISTHMUS_VHDS", "false")
    try:
        with applied(mesh, inline):
            restart(mesh, "client")
            assert mesh.proxy("client")["xdsProtocol"] == "delta"
            assert mesh.wait_settled()["proxies"]
            table = _sidecar_table(mesh, "client")
            assert "vhds" not in table
            names = {vh["name"] for vh in table["virtual_hosts"]}
            assert "allow_any" in names and not any(n.startswith("http_proxy/") for n in names)
            result = mesh.load("client", HTTPBIN + "/", 5)
            assert result.codes == {"200": 5}, result
    finally:
        restart(mesh, "client")
    assert "vhds" in _sidecar_table(mesh, "client")
