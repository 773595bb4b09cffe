"""Telemetry on the real bookinfo demo (`isthmus up examples/bookinfo`, 100% trace sampling):

- the control plane's ``/metrics`` holds ``istio_requests_total`` and the duration histogram for every edge
  (gateway -> productpage -> details / reviews -> ratings), from both reporters, with Istio's labels, and
  counts that equal the requests sent; a fault abort (Istio's ratings test-abort task) shows as
  ``response_code="500", response_flags="FI"`` from the source reporter alone;
- access-log lines (``/api/logs`` and ``isthmus logs``) are in Istio's default TEXT format (on a second
  bookinfo whose proxies keep the access-log pipeline, ``ISTHMUS_PROXY_METRICS: "false"``: by default
  they keep their metrics in the proxy and only log failed requests);
- one request through gateway -> productpage -> reviews -> ratings is one trace in the built-in collector
  (``/api/traces``, ``/api/traces/{id}``, Zipkin's ``/api/v2/...``) with a span per proxy hop and the
  right parents;
- control-plane metrics named as istiod's (``pilot_*``), in seconds and with ``_total`` counters.

Expected counts follow the bookinfo topology: every page calls details and reviews; reviews v2 and v3
call ratings, v1 does not. Which reviews version served a page is read from the page itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.client import sync
from tests.e2e import harness
from tests.e2e.harness import _OPENER, MeshProcess

pytestmark = pytest.mark.e2e

BOOKINFO = Path(__file__).resolve().parents[2] / "examples" / "bookinfo"
TD = "cluster.local"
SUFFIX = "default.svc.cluster.local"
WAIT_S = 20.0  # ALS batches flush every second, Zipkin spans every second: generous bounds


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("bookinfo-telemetry")
    shutil.copytree(BOOKINFO, work / "config", ignore=shutil.ignore_patterns("routing"))
    with MeshProcess(work / "config", work) as mesh:
        yield mesh


# Mesh-wide (a ProxyConfig without selector in the root namespace): every proxy, the gateway included,
# sends an access-log entry per request instead of keeping its metrics in the proxy.
ACCESS_LOG_PIPELINE = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: access-log-metrics, namespace: istio-system}
spec:
  environmentVariables: {ISTHMUS_PROXY_METRICS: "false"}
"""


@pytest.fixture  # one test uses it: stopped right after
def bookinfo_als(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("bookinfo-telemetry-als")
    shutil.copytree(BOOKINFO, work / "config", ignore=shutil.ignore_patterns("routing"))
    (work / "config" / "access-log-pipeline.yaml").write_text(ACCESS_LOG_PIPELINE)
    with MeshProcess(work / "config", work) as mesh:
        pipelines = {p["instance"]: p["metrics"]["pipeline"] for p in mesh.status()["proxies"]}
        assert set(pipelines.values()) == {"access-log"}, pipelines
        yield mesh


# --- helpers ------------------------------------------------------------------------------------------


def wait_for(what: str, fn: Callable[[], Any]) -> Any:
    return harness.wait_for(what, fn, timeout=WAIT_S)


def get(mesh: MeshProcess, path: str, **params: Any) -> bytes:
    url = mesh.api + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with _OPENER.open(url, timeout=10) as resp:
        assert resp.status == 200, (url, resp.status)
        return resp.read()


def get_json(mesh: MeshProcess, path: str, **params: Any) -> Any:
    return json.loads(get(mesh, path, **params))


Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def scrape(mesh: MeshProcess) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(get(mesh, "/metrics").decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def delta(after: Samples, before: Samples, name: str) -> dict[Labels, float]:
    """Per label set, how much sample `name` grew."""
    out = {}
    for (n, labels), value in after.items():
        if n == name:
            d = value - before.get((n, labels), 0.0)
            if d:
                out[labels] = d
    return out


def page(mesh: MeshProcess, user: str | None = None) -> dict[str, Any]:
    """GET /productpage through the ingress gateway; the echo chain's JSON answer."""
    headers = [("end-user", user)] if user else []
    resp = sync.request(f"http://{mesh.gateway_address(80)}/productpage", headers=headers)
    assert resp.status == 200, resp
    body = json.loads(resp.body)
    assert body["workload"] == "productpage-v1"
    details, reviews = body["calls"]
    assert details["status"] == 200 and details["body"]["workload"] == "details-v1", details
    assert reviews["status"] == 200, reviews
    return body


def reviews_of(body: dict[str, Any]) -> dict[str, Any]:
    return body["calls"][1]["body"]


def calls_ratings(version: str) -> bool:
    return version in ("v2", "v3")


@dataclass(frozen=True)
class Side:
    workload: str
    namespace: str
    app: str
    version: str
    canonical_revision: str
    service_account: str

    @property
    def principal(self) -> str:
        return f"spiffe://{TD}/ns/{self.namespace}/sa/{self.service_account}"


GATEWAY = Side(
    "istio-ingressgateway",
    "istio-system",
    "istio-ingressgateway",
    "unknown",
    "latest",
    "istio-ingressgateway-service-account",
)


def pod(workload: str) -> Side:
    app, version = workload.rsplit("-", 1)
    return Side(workload, "default", app, version, version, f"bookinfo-{app}")


def istio_labels(
    reporter: str, src: Side, dst: Side | None, service: str, code: int = 200, flags: str = "-"
) -> Labels:
    """The 25 labels istio-proxy puts on istio_requests_total for one edge."""
    labels = {
        "reporter": reporter,
        "source_workload": src.workload,
        "source_canonical_service": src.app,
        "source_canonical_revision": src.canonical_revision,
        "source_workload_namespace": src.namespace,
        "source_principal": src.principal if dst is not None else "unknown",
        "source_app": src.app,
        # The gateway has no version label: its peers say "unknown", while as the reporter it gives its
        # own label as is, "" (istio_stats.cc pushes the node's LABELS["version"] unchanged).
        "source_version": "" if reporter == "source" and src is GATEWAY else src.version,
        "source_cluster": "Kubernetes",
        "destination_service": f"{service}.{SUFFIX}",
        "destination_service_name": service,
        "request_protocol": "http",
        "response_code": str(code),
        "grpc_response_status": "",
        "response_flags": flags,
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
    }
    if dst is None:
        # No upstream was chosen (a local fault): istio-proxy knows the service (cluster metadata) and
        # nothing of a destination pod, not even its namespace, nor its own upstream certificate.
        labels.update(
            destination_workload="unknown",
            destination_workload_namespace="unknown",
            destination_principal="unknown",
            destination_app="unknown",
            destination_version="unknown",
            destination_canonical_service="unknown",
            destination_canonical_revision="latest",
            destination_service_namespace="unknown",
            destination_cluster="unknown",
        )
    else:
        labels.update(
            destination_workload=dst.workload,
            destination_workload_namespace=dst.namespace,
            destination_principal=dst.principal,
            destination_app=dst.app,
            destination_version=dst.version,
            destination_canonical_service=dst.app,
            destination_canonical_revision=dst.canonical_revision,
            destination_service_namespace="default",
            destination_cluster="Kubernetes",
        )
    return frozenset(labels.items())


def expected_edges(versions: Counter[str], *, ratings_code: int = 200) -> dict[Labels, int]:
    """Requests per labelled series for len(versions) pages, given which reviews version served each."""
    n = sum(versions.values())
    edges: list[tuple[Side, Side | None, str, int, int]] = [
        (GATEWAY, pod("productpage-v1"), "productpage", n, 200),
        (pod("productpage-v1"), pod("details-v1"), "details", n, 200),
    ]
    for version, count in versions.items():
        edges.append((pod("productpage-v1"), pod(f"reviews-{version}"), "reviews", count, 200))
        if calls_ratings(version):
            ratings = pod("ratings-v1") if ratings_code == 200 else None
            edges.append((pod(f"reviews-{version}"), ratings, "ratings", count, ratings_code))
    out: dict[Labels, int] = {}
    for src, dst, service, count, code in edges:
        flags = "-" if code == 200 else "FI"
        out[istio_labels("source", src, dst, service, code, flags)] = count
        if dst is not None:
            # The server sidecar reports what reached it (a fault never leaves the client's sidecar).
            out[istio_labels("destination", src, dst, service, code, flags)] = count
    return out


def describe(series: dict[Labels, float]) -> str:
    def short(labels: Labels) -> str:
        d = dict(labels)
        return (
            f"{d['reporter']}: {d['source_workload']} -> {d['destination_workload']} "
            f"({d['destination_service_name']}) {d['response_code']} {d['response_flags']}"
        )

    return "\n".join(f"  {short(k)} = {v}" for k, v in sorted(series.items(), key=lambda kv: short(kv[0])))


def assert_request_metrics(mesh: MeshProcess, before: Samples, expected: dict[Labels, int]) -> Samples:
    """Wait until every expected series reached its count, then check counts and histograms exactly."""

    def reached() -> Samples | None:
        after = scrape(mesh)
        got = delta(after, before, "istio_requests_total")
        return after if all(got.get(k, 0) >= v for k, v in expected.items()) else None

    try:
        after = wait_for("istio_requests_total to count every request", reached)
    except AssertionError:
        got = delta(scrape(mesh), before, "istio_requests_total")
        raise AssertionError(f"expected:\n{describe(expected)}\ngot:\n{describe(got)}") from None
    got = delta(after, before, "istio_requests_total")
    assert got == expected, f"expected:\n{describe(expected)}\ngot:\n{describe(got)}"
    # The duration (and size) histograms: same series, same counts; Envoy's buckets.
    for histogram in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        hist_count = delta(after, before, histogram + "_count")
        assert hist_count == expected, f"{histogram}:\n{describe(hist_count)}"
    buckets = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000"]
    buckets += ["30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"]
    for labels, count in expected.items():
        cumulative = [
            after.get(("istio_request_duration_milliseconds_bucket", labels | {("le", le)})) for le in buckets
        ]
        assert None not in cumulative, (dict(labels), cumulative)
        assert cumulative == sorted(cumulative), cumulative
        grew = after[("istio_request_duration_milliseconds_bucket", labels | {("le", "+Inf")})] - before.get(
            ("istio_request_duration_milliseconds_bucket", labels | {("le", "+Inf")}), 0.0
        )
        assert grew == count
        assert ("istio_request_duration_milliseconds_sum", labels) in after
    return after


# --- 1. metrics -----------------------------------------------------------------------------------------

RATINGS_TEST_ABORT = """
# samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      abort:
        percentage:
          value: 100.0
        httpStatus: 500
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"""


def test_istio_metrics_for_every_edge_from_both_reporters(bookinfo: MeshProcess) -> None:
    if shutil.which("cc") is not None:  # the default: every proxy, the gateway's too, keeps its metrics
        pipelines = {p["instance"]: p["metrics"]["pipeline"] for p in bookinfo.status()["proxies"]}
        assert set(pipelines.values()) == {"proxy"}, pipelines
    before = scrape(bookinfo)
    versions = Counter(reviews_of(page(bookinfo))["version"] for _ in range(12))
    assert set(versions) <= {"v1", "v2", "v3"} and len(versions) >= 2, versions
    assert_request_metrics(bookinfo, before, expected_edges(versions))

    # An injected failure: Istio's fault-injection task, ratings aborts with 500 for jason. The abort
    # happens in the reviews sidecar, so only the source reporter sees it.
    bookinfo.apply(RATINGS_TEST_ABORT)
    try:
        base = scrape(bookinfo)
        jason: Counter[str] = Counter()
        aborted_ids = []
        for _ in range(30):
            body = page(bookinfo, "jason")
            reviews = reviews_of(body)
            jason[reviews["version"]] += 1
            if calls_ratings(reviews["version"]):
                assert reviews["calls"][0]["status"] == 500, reviews["calls"]
                aborted_ids.append((reviews["workload"], body["headers"]["x-request-id"]))
            if len(aborted_ids) >= 3:
                break
        anonymous = Counter(reviews_of(page(bookinfo))["version"] for _ in range(4))
        expected = expected_edges(jason, ratings_code=500)
        for labels, count in expected_edges(anonymous).items():
            expected[labels] = expected.get(labels, 0) + count
        assert_request_metrics(bookinfo, base, expected)
        flagged = {
            dict(k)["source_workload"]: v for k, v in expected.items() if ("response_flags", "FI") in k
        }
        assert sum(flagged.values()) == len(aborted_ids) >= 3, flagged

        # The access log of the aborting sidecar says the same.
        workload, request_id = aborted_ids[0]

        def fault_line() -> str | None:
            text = get(bookinfo, "/api/logs", workload=workload).decode()
            return next((x for x in text.splitlines() if request_id in x and "/ratings/" in x), None)

        line = wait_for(f"the aborted request in {workload}'s access log", fault_line)
        m = ISTIO_TEXT.match(line)
        assert m, line
        assert (m["code"], m["flags"], m["details"]) == ("500", "FI", "fault_filter_abort"), line
        assert m["upstream_cluster"] == f"outbound|9080|v1|ratings.{SUFFIX}", line
        assert m["upstream_host"] == "-", line
    finally:
        bookinfo.delete(RATINGS_TEST_ABORT)


# --- 2. access logs -------------------------------------------------------------------------------------

# Istio's default TEXT format (EnvoyTextLogFormat), one group per command operator.
ISTIO_TEXT = re.compile(
    r"^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<protocol>HTTP/[\d.]+)" '
    r"(?P<code>\d{1,3}) (?P<flags>[A-Z,]+|-) (?P<details>\S+) (?P<termination>\S+) "
    r'"(?P<transport_failure>[^"]*)" (?P<bytes_received>\d+) (?P<bytes_sent>\d+) (?P<duration>\d+) '
    r'(?P<upstream_service_time>\d+|-) "(?P<xff>[^"]*)" "(?P<user_agent>[^"]*)" "(?P<request_id>[^"]*)" '
    r'"(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" (?P<upstream_cluster>\S+) '
    r"(?P<upstream_local>\S+) (?P<downstream_local>\S+) (?P<downstream_remote>\S+) "
    r"(?P<sni>\S+) (?P<route>\S+)$"
)
JSON_KEYS = {
    "start_time", "method", "path", "protocol", "response_code", "response_flags", "response_code_details",
    "connection_termination_details", "upstream_transport_failure_reason", "bytes_received", "bytes_sent",
    "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority",
    "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
    "downstream_remote_address", "requested_server_name", "route_name",
}  # fmt: skip


def log_lines(mesh: MeshProcess, workload: str, request_id: str, n: int, namespace: str = "default"):
    def found() -> list[re.Match[str]] | None:
        text = get(mesh, "/api/logs", workload=workload, namespace=namespace).decode()
        lines = [x for x in text.splitlines() if request_id in x]
        if len(lines) < n:
            return None
        matches = [ISTIO_TEXT.match(x) for x in lines]
        assert all(matches), "not Istio's TEXT format:\n" + "\n".join(lines)
        return matches  # type: ignore[return-value]

    lines = wait_for(f"{n} access-log lines of {workload} for {request_id}", found)
    assert len(lines) == n, [m.string for m in lines]
    return lines


def isthmus_logs(mesh: MeshProcess, *args: str) -> str:
    cmd = [sys.executable, "-m", "isthmus.cli.main", "logs", *args, "--state-dir", str(mesh.state_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_access_log_lines_match_istios_format(bookinfo_als: MeshProcess) -> None:
    bookinfo = bookinfo_als
    status = bookinfo.status()
    ip = {p["workload"]: p["ip"] for p in status["proxies"]}
    body = page(bookinfo)
    rid = body["headers"]["x-request-id"]
    version = reviews_of(body)["version"]
    reviews = f"reviews-{version}"

    (gw,) = log_lines(bookinfo, "istio-ingressgateway", rid, 1, namespace="istio-system")
    assert (gw["method"], gw["path"], gw["protocol"], gw["code"], gw["flags"], gw["details"]) == (
        "GET",
        "/productpage",
        "HTTP/1.1",
        "200",
        "-",
        "via_upstream",
    ), gw.string
    assert gw["upstream_cluster"] == f"outbound|9080||productpage.{SUFFIX}", gw.string
    assert gw["upstream_host"] == f"{ip['productpage-v1']}:9080", gw.string
    assert gw["downstream_local"] == bookinfo.gateway_address(80), gw.string
    assert gw["upstream_local"].startswith(ip["istio-ingressgateway"] + ":"), gw.string
    assert int(gw["bytes_sent"]) > 0 and gw["upstream_service_time"] != "-", gw.string

    pp = log_lines(bookinfo, "productpage-v1", rid, 3)
    (inbound,) = [m for m in pp if m["upstream_cluster"] == "inbound|9080||"]
    assert inbound["path"] == "/productpage" and inbound["code"] == "200", inbound.string
    assert inbound["downstream_local"] == f"{ip['productpage-v1']}:9080", inbound.string
    assert inbound["sni"] == f"outbound_.9080_._.productpage.{SUFFIX}", inbound.string  # mTLS, Istio's SNI
    outbound = {m["upstream_cluster"]: m for m in pp if m is not inbound}
    assert set(outbound) == {f"outbound|9080||details.{SUFFIX}", f"outbound|9080||reviews.{SUFFIX}"}
    to_details = outbound[f"outbound|9080||details.{SUFFIX}"]
    assert (to_details["path"], to_details["authority"], to_details["code"]) == (
        "/details/0",
        "details:9080",
        "200",
    ), to_details.string
    assert to_details["upstream_host"] == f"{ip['details-v1']}:9080", to_details.string
    assert to_details["upstream_local"].startswith(ip["productpage-v1"] + ":"), to_details.string
    assert to_details["downstream_local"] == f"{ip['productpage-v1']}:15001", to_details.string
    assert to_details["route"] == "default", to_details.string
    to_reviews = outbound[f"outbound|9080||reviews.{SUFFIX}"]
    assert to_reviews["upstream_host"] == f"{ip[reviews]}:9080", to_reviews.string

    (details_in,) = log_lines(bookinfo, "details-v1", rid, 1)
    assert details_in["upstream_cluster"] == "inbound|9080||", details_in.string
    assert details_in["sni"] == f"outbound_.9080_._.details.{SUFFIX}", details_in.string
    hops = 2 if calls_ratings(version) else 1
    reviews_lines = log_lines(bookinfo, reviews, rid, hops)
    if calls_ratings(version):
        (ratings_in,) = log_lines(bookinfo, "ratings-v1", rid, 1)
        assert ratings_in["path"] == "/ratings/0", ratings_in.string
        assert any(m["upstream_cluster"] == f"outbound|9080||ratings.{SUFFIX}" for m in reviews_lines)

    # `isthmus logs` prints the same lines; `-o json` uses Istio's JSON keys.
    text = isthmus_logs(bookinfo, "productpage-v1")
    assert sorted(x for x in text.splitlines() if rid in x) == sorted(m.string for m in pp)
    records = [
        json.loads(x)
        for x in isthmus_logs(bookinfo, "productpage-v1", "--tail", "2", "-o", "json").splitlines()
    ]
    assert len(records) == 2 and all(set(r) == JSON_KEYS for r in records), records
    assert all(isinstance(r["response_code"], int) for r in records), records


# --- 3. traces ------------------------------------------------------------------------------------------


def test_one_trace_through_gateway_productpage_reviews_ratings(bookinfo: MeshProcess) -> None:
    body = next(
        (b for b in (page(bookinfo) for _ in range(12)) if calls_ratings(reviews_of(b)["version"])), None
    )
    assert body is not None, "no page was served by reviews v2 or v3"
    reviews_workload = reviews_of(body)["workload"]
    headers = body["headers"]
    trace_id = headers["x-b3-traceid"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), headers
    assert headers["traceparent"].split("-")[1] == trace_id, headers  # B3 and W3C agree
    rid = headers["x-request-id"]
    # Every hop received the same trace: the apps forwarded the headers.
    assert reviews_of(body)["headers"]["x-b3-traceid"] == trace_id
    assert reviews_of(body)["calls"][0]["body"]["headers"]["x-b3-traceid"] == trace_id

    def complete() -> dict[str, Any] | None:
        try:
            got = get_json(bookinfo, f"/api/traces/{trace_id}")
        except urllib.error.HTTPError as e:  # 404 until the first spans arrive
            assert e.code == 404, e
            return None
        return got if len(got["spans"]) >= 8 else None

    doc = wait_for(f"the 8 spans of trace {trace_id}", complete)
    spans = doc["spans"]
    assert doc["traceId"] == trace_id
    assert len(spans) == 8, [(s["kind"], s["tags"].get("node_id")) for s in spans]
    assert {s["traceId"] for s in spans} == {trace_id}
    assert len({s["id"] for s in spans}) == 8  # no shared span ids (one span per side of each hop)
    assert {s["tags"]["guid:x-request-id"] for s in spans} == {rid}
    assert all(s["tags"]["http.status_code"] == "200" for s in spans)

    def one(kind: str, workload: str, cluster: str | None = None) -> dict[str, Any]:
        found = [
            s
            for s in spans
            if s["kind"] == kind
            and f"~{workload}-0." in s["tags"]["node_id"]
            and (cluster is None or s["tags"]["upstream_cluster"] == cluster)
        ]
        assert len(found) == 1, (kind, workload, cluster, spans)
        return found[0]

    gateway = one("CLIENT", "istio-ingressgateway", f"outbound|9080||productpage.{SUFFIX}")
    pp_server = one("SERVER", "productpage-v1")
    pp_details = one("CLIENT", "productpage-v1", f"outbound|9080||details.{SUFFIX}")
    pp_reviews = one("CLIENT", "productpage-v1", f"outbound|9080||reviews.{SUFFIX}")
    details = one("SERVER", "details-v1")
    reviews_server = one("SERVER", reviews_workload)
    reviews_ratings = one("CLIENT", reviews_workload, f"outbound|9080||ratings.{SUFFIX}")
    ratings = one("SERVER", "ratings-v1")
    assert "parentId" not in gateway  # the root: the gateway started the trace
    for child, parent in (
        (pp_server, gateway),
        (pp_details, pp_server),
        (pp_reviews, pp_server),
        (details, pp_details),
        (reviews_server, pp_reviews),
        (reviews_ratings, reviews_server),
        (ratings, reviews_ratings),
    ):
        assert child.get("parentId") == parent["id"], (child, parent)
        # A child lies within its parent (both measured on one machine's clock).
        assert parent["timestamp"] <= child["timestamp"], (child, parent)
        assert child["timestamp"] + child["duration"] <= parent["timestamp"] + parent["duration"] + 1000
    for s, (service, ns) in (
        (gateway, ("istio-ingressgateway", "istio-system")),
        (pp_server, ("productpage", "default")),
        (ratings, ("ratings", "default")),
    ):
        assert (s["tags"]["istio.canonical_service"], s["tags"]["istio.namespace"]) == (service, ns), s

    # The trace list, newest first, summarizes it.
    summary = next(t for t in get_json(bookinfo, "/api/traces", limit=100) if t["traceId"] == trace_id)
    assert summary["spanCount"] == 8 and not summary["error"], summary
    assert summary["rootService"] == gateway["localEndpoint"]["serviceName"], summary
    assert summary["rootService"] == "istio-ingressgateway.istio-system", summary
    services = {s["localEndpoint"]["serviceName"] for s in spans}
    assert set(summary["services"]) == services and len(services) == 5, summary

    # Zipkin's read API serves the same spans (what the Zipkin UI and clients read).
    assert sorted(s["id"] for s in get_json(bookinfo, f"/api/v2/trace/{trace_id}")) == sorted(
        s["id"] for s in spans
    )
    ratings_service = ratings["localEndpoint"]["serviceName"]
    assert ratings_service in get_json(bookinfo, "/api/v2/services")
    zipkin = get_json(bookinfo, "/api/v2/traces", serviceName=ratings_service, limit=100)
    (listed,) = [t for t in zipkin if t and t[0]["traceId"] == trace_id]
    assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in spans)
    assert all(any(s["localEndpoint"]["serviceName"] == ratings_service for s in t) for t in zipkin)


# --- 4. control-plane metrics ---------------------------------------------------------------------------

NOOP_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
spec:
  hosts: [details]
  http:
  - route:
    - destination: {host: details, subset: v1}
"""


def test_control_plane_metrics_like_istiods(bookinfo: MeshProcess) -> None:
    proxies = len(bookinfo.status()["proxies"])
    before = scrape(bookinfo)
    families = {f.name: f for f in text_string_to_metric_families(get(bookinfo, "/metrics").decode())}
    pilot = {name: f for name, f in families.items() if name.startswith("pilot_")}
    for name in (
        "pilot_xds",
        "pilot_xds_pushes",
        "pilot_xds_push_time_seconds",
        "pilot_proxy_convergence_time_seconds",
        "pilot_proxy_queue_time_seconds",
        "pilot_total_xds_rejects",
        "pilot_inbound_updates",
    ):
        assert name in pilot, sorted(pilot)
    # Prometheus naming: counters end in _total, durations are in seconds, sizes in bytes.
    for name, f in pilot.items():
        assert "millisecond" not in name and not name.endswith("_ms"), name
        if f.type == "counter":
            assert all(s.name in (name + "_total", name + "_created") for s in f.samples), (name, f.samples)
        if f.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name
    assert before[("pilot_xds", frozenset())] == proxies
    pushed = {dict(k)["type"] for (n, k), v in before.items() if n == "pilot_xds_pushes_total" and v > 0}
    assert {"cds", "eds", "lds", "rds"} <= pushed, pushed

    # A config change is pushed (RDS; a delta sidecar's virtual hosts go over VHDS), measured and
    # acknowledged: the numbers move.
    bookinfo.apply(NOOP_VS)
    try:

        def moved() -> Samples | None:
            after = scrape(bookinfo)
            pushes = delta(after, before, "pilot_xds_pushes_total")
            rds = sum(pushes.get(frozenset({("type", t)}), 0) for t in ("rds", "vhds"))
            converged = delta(after, before, "pilot_proxy_convergence_time_seconds_count")
            return after if rds >= 1 and converged else None

        after = wait_for("an RDS push and its convergence in /metrics", moved)
        push_time = delta(after, before, "pilot_xds_push_time_seconds_count")
        assert sum(push_time.get(frozenset({("type", t)}), 0) for t in ("rds", "vhds")) >= 1, push_time
        assert delta(after, before, "pilot_inbound_updates_total"), "no config update counted"
        assert not delta(after, before, "pilot_total_xds_rejects_total")
    finally:
        bookinfo.delete(NOOP_VS)
