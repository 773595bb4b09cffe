"""In-proxy module series -> Istio metrics: the same requests reported as gRPC access-log entries and as the
module's cumulative series give the same metrics and the same service graph."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2 as al
from telemetry_helpers import (
    GRPC_TAGS,
    PP_PRINCIPAL,
    PRODUCTPAGE,
    PRODUCTPAGE_IP,
    REVIEWS,
    REVIEWS_IP,
    REVIEWS_PRINCIPAL,
    http_entry,
    message,
    snap,
    static_resolver,
    tcp_entry,
    tel,
)

from isthmus.model.proxy import Proxy
from isthmus.telemetry import Telemetry, accesslog, istio
from isthmus.telemetry.statsmodule import HttpSeries, Report, TcpSeries

NOW = 1_700_000_100.0


def telemetry(proxies: Sequence[Proxy] = (PRODUCTPAGE, REVIEWS)) -> Telemetry:
    r = static_resolver()
    by_id = {p.id: p for p in proxies}
    return Telemetry(resolver=lambda: r, clock=lambda: NOW, proxy_lookup=by_id.get)


def _hist(values: list[int]) -> tuple[int, ...]:
    counts = [0] * (len(istio.BUCKETS) + 1)
    for v in values:
        counts[bisect_left(istio.BUCKETS, v)] += 1
    return tuple(counts)


def _ip(a: Any) -> str:
    return a.socket_address.address


def series_of(direction: str, entries: list[al.HTTPAccessLogEntry]) -> HttpSeries:
    """What the module reports for these requests (all with the same key), from the entries' fields."""
    e = entries[0]
    c = e.common_properties
    tags = c.custom_tags
    outbound = direction == "outbound"
    cluster = accesslog.upstream_cluster(c)
    grpc = tags.get(accesslog.TAG_CONTENT_TYPE, "").startswith("application/grpc")
    tls = c.tls_properties
    durations = [accesslog.duration_ms(x.common_properties) for x in entries]
    # The wire figures, else headers and body (Envoy's HTTP/2 and HTTP/3 streams have no wire figures).
    received = [
        x.common_properties.downstream_wire_bytes_received
        or x.request.request_headers_bytes + x.request.request_body_bytes
        for x in entries
    ]
    sent = [
        x.common_properties.downstream_wire_bytes_sent
        or x.response.response_headers_bytes + x.response.response_body_bytes
        for x in entries
    ]
    return HttpSeries(
        direction=direction,
        code=e.response.response_code.value,
        flags=istio.response_flags(c),
        cluster=cluster,
        route=c.route_name,
        upstream_ip=_ip(c.upstream_remote_address),
        downstream_ip=_ip(c.downstream_remote_address),
        local_port=c.downstream_local_address.socket_address.port_value or None,
        upstream_peer_san=tags.get(accesslog.TAG_UPSTREAM_PEER_SAN, ""),
        upstream_local_san=tags.get(accesslog.TAG_UPSTREAM_LOCAL_SAN, ""),
        downstream_peer_san=accesslog.uri_san(tls.peer_certificate_properties),
        downstream_local_san=accesslog.uri_san(tls.local_certificate_properties),
        authority=e.request.authority if outbound and not cluster.startswith("outbound|") else "",
        connect=e.request.request_method == 6,
        grpc=grpc,
        grpc_status=(
            e.response.response_trailers.get("grpc-status")
            or e.response.response_headers.get("grpc-status")
            or ""
        )
        if grpc
        else "",
        requests=len(entries),
        duration=_hist([d for d in durations if d is not None]),
        duration_sum=sum(d for d in durations if d is not None),
        request_bytes=_hist(received),
        request_bytes_sum=sum(received),
        response_bytes=_hist(sent),
        response_bytes_sum=sum(sent),
        wire_sent=sum(x.common_properties.downstream_wire_bytes_sent for x in entries),
        wire_received=sum(x.common_properties.downstream_wire_bytes_received for x in entries),
        request_messages=0,
        response_messages=0,
    )


def report(proxy: Proxy, *series: Any, instance: str = "a1", seq: int = 1) -> Report:
    return Report(
        instance=instance,
        node_id=proxy.id,
        seq=seq,
        part=0,
        parts=1,
        dropped=0,
        send_errors=0,
        http=tuple(s for s in series if isinstance(s, HttpSeries)),
        tcp=tuple(s for s in series if isinstance(s, TcpSeries)),
    )


def via_als(proxy: Proxy, direction: str, entries: list[al.HTTPAccessLogEntry]) -> Telemetry:
    t = telemetry()
    msg = message(proxy, direction, http=entries)
    t.ingest(t.register_node(msg.identifier.node), direction, msg)
    return t


def via_module(proxy: Proxy, direction: str, entries: list[al.HTTPAccessLogEntry]) -> Telemetry:
    t = telemetry()
    assert t.ingest_report(report(proxy, series_of(direction, entries))) == 1
    return t


def _edges(t: Telemetry) -> tuple[list[dict[str, Any]], list[tuple[Any, Any]]]:
    """The graph's edges without their latencies, and the latencies."""
    edges = t.graph()["edges"]
    rest = [{k: v for k, v in e.items() if k not in ("p50", "p99")} for e in edges]
    return rest, [(e.get("p50"), e.get("p99")) for e in edges]


def _bucket_bound(ms: Any) -> Any:
    """The upper bound of the histogram bucket holding `ms` (what the module's samples stand for)."""
    if ms is None:
        return None
    i = bisect_left(istio.BUCKETS, ms)
    return istio.BUCKETS[min(i, len(istio.BUCKETS) - 1)]


def same(a: Telemetry, b: Telemetry) -> None:
    """`a` from entries, `b` from series: the same metrics; the same graph, whose latencies from the module are bucket bounds."""
    assert a.metrics_text() == b.metrics_text()
    (edges_a, lat_a), (edges_b, lat_b) = _edges(a), _edges(b)
    assert edges_a == edges_b
    assert [(_bucket_bound(p50), _bucket_bound(p99)) for p50, p99 in lat_a] == lat_b


CASES = {
    "outbound mTLS": (
        PRODUCTPAGE,
        "outbound",
        {
            "tags": {
                accesslog.TAG_UPSTREAM_PEER_SAN: REVIEWS_PRINCIPAL,
                accesslog.TAG_UPSTREAM_LOCAL_SAN: PP_PRINCIPAL,
            }
        },
    ),
    "outbound plaintext 503 UF": (
        PRODUCTPAGE,
        "outbound",
        {"code": 503, "flags": {"upstream_connection_failure": True}, "upstream": None},
    ),
    "outbound passthrough by Host": (
        PRODUCTPAGE,
        "outbound",
        {"cluster": "PassthroughCluster", "authority": "example.com", "upstream": "93.184.216.34:80"},
    ),
    "inbound mTLS": (
        REVIEWS,
        "inbound",
        {
            "cluster": "inbound|9080||",
            "downstream": f"{PRODUCTPAGE_IP}:40000",
            "local": f"{REVIEWS_IP}:9080",
            "upstream": "127.0.0.1:9080",
            "peer_san": PP_PRINCIPAL,
            "local_san": REVIEWS_PRINCIPAL,
        },
    ),
    "inbound plaintext from an unknown client": (
        REVIEWS,
        "inbound",
        {"cluster": "inbound|9080||", "downstream": "127.9.9.9:40000", "local": f"{REVIEWS_IP}:9080"},
    ),
    "grpc with status": (
        PRODUCTPAGE,
        "outbound",
        {"tags": GRPC_TAGS, "trailers": {"grpc-status": "14"}},
    ),
    "grpc without status": (PRODUCTPAGE, "outbound", {"tags": GRPC_TAGS, "code": 503}),
    "two flags": (
        PRODUCTPAGE,
        "outbound",
        {"code": 503, "flags": {"upstream_retry_limit_exceeded": True, "upstream_connection_failure": True}},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_series_and_entries_give_the_same_metrics(name: str) -> None:
    proxy, direction, kw = CASES[name]
    entries = [http_entry(duration_ms=d, wire=(100 + d, 300 * d), **kw) for d in (0, 3, 7, 70, 7000)]
    same(via_als(proxy, direction, entries), via_module(proxy, direction, entries))


def test_connect_tunnels_count_as_tcp_connections() -> None:
    entries = [
        http_entry(method=6, code=200, flags={"downstream_connection_termination": True}, wire=(10, 20))
        for _ in range(3)
    ]
    same(via_als(PRODUCTPAGE, "outbound", entries), via_module(PRODUCTPAGE, "outbound", entries))


def test_module_flags_take_the_access_log_order() -> None:
    entries = [
        http_entry(code=503, flags={"upstream_retry_limit_exceeded": True, "no_healthy_upstream": True})
    ]
    s = series_of("outbound", entries)
    a = via_als(PRODUCTPAGE, "outbound", entries)
    b = telemetry()
    b.ingest_report(report(PRODUCTPAGE, _replace(s, flags="URX,UH")))
    same(a, b)
    assert 'response_flags="UH,URX"' in b.metrics_text().decode()


def _replace(s: Any, **kw: Any) -> Any:
    from dataclasses import replace

    return replace(s, **kw)


def test_totals_are_recorded_once() -> None:
    """Reports carry totals: a repeat adds nothing, growth adds the difference, an older report arriving
    late is skipped, and a new module instance (Envoy restarted) counts from zero."""
    e1 = [http_entry(duration_ms=5)]
    e3 = [http_entry(duration_ms=5) for _ in range(3)]
    t = telemetry()
    s1, s3 = series_of("outbound", e1), series_of("outbound", e3)
    assert t.ingest_report(report(PRODUCTPAGE, s1, seq=1)) == 1
    assert t.ingest_report(report(PRODUCTPAGE, s1, seq=2)) == 0
    assert t.ingest_report(report(PRODUCTPAGE, s3, seq=3)) == 1
    assert t.ingest_report(report(PRODUCTPAGE, s1, seq=2)) == 0  # late
    assert t.ingest_report(report(PRODUCTPAGE, s1, instance="b2")) == 1  # restarted Envoy
    total = next(
        s.value
        for m in t.collector().collect()
        if m.name == "istio_requests"
        for s in m.samples
        if s.name == "istio_requests_total"
    )
    assert total == 4
    same(via_als(PRODUCTPAGE, "outbound", [http_entry(duration_ms=5) for _ in range(4)]), t)


def test_tcp_series() -> None:
    conn = [
        tcp_entry(log_type=al.TcpUpstreamConnected, sent=0, received=0),
        tcp_entry(log_type=al.TcpPeriodic, sent=100, received=40),
        tcp_entry(log_type=al.TcpConnectionEnd, sent=150, received=90),
    ]
    a = telemetry()
    msg = message(PRODUCTPAGE, "outbound", tcp=conn)
    a.ingest(a.register_node(msg.identifier.node), "outbound", msg)
    c = conn[0].common_properties
    s = TcpSeries(
        direction="outbound",
        flags="-",
        cluster=c.upstream_cluster,
        route="",
        upstream_ip=_ip(c.upstream_remote_address),
        downstream_ip=_ip(c.downstream_remote_address),
        local_port=c.downstream_local_address.socket_address.port_value,
        upstream_peer_san="",
        upstream_local_san="",
        downstream_peer_san="",
        downstream_local_san="",
        opened=1,
        closed=1,
        sent=150,
        received=90,
    )
    b = telemetry()
    b.ingest_report(report(PRODUCTPAGE, s))
    same(a, b)


def test_reports_of_unknown_proxies_wait_for_them() -> None:
    """A report of a proxy not connected yet is skipped; its totals are recorded once it is."""
    known: dict[str, Proxy] = {}
    r = static_resolver()
    t = Telemetry(resolver=lambda: r, clock=lambda: NOW, proxy_lookup=known.get)
    s = series_of("outbound", [http_entry()])
    assert t.ingest_report(report(PRODUCTPAGE, s)) == 0
    assert t.reports_unknown_proxy == 1
    known[PRODUCTPAGE.id] = PRODUCTPAGE
    assert t.ingest_report(report(PRODUCTPAGE, s)) == 1
    same(via_als(PRODUCTPAGE, "outbound", [http_entry()]), t)


def test_failed_only_logs_do_not_count() -> None:
    """Where the module keeps the metrics, the gRPC logger's failed-request entries are only logs."""
    t = telemetry()
    msg = message(PRODUCTPAGE, "outbound", http=[http_entry(code=503)])
    t.ingest(t.register_node(msg.identifier.node), "outbound", msg, metrics=False)
    assert b"istio_requests_total{" not in t.metrics_text()
    assert len(t.log_lines(t.proxies.values())) == 1


def test_reports_from_another_address_than_their_proxys_are_refused() -> None:
    """The module sends from its proxy's address: a report naming a proxy from elsewhere is forged."""
    t = telemetry()
    s = series_of("outbound", [http_entry()])
    assert t.ingest_report(report(PRODUCTPAGE, s), source_ip="127.9.9.9") == 0
    assert t.reports_refused == 1
    assert b"istio_requests_total{" not in t.metrics_text()
    assert t.ingest_report(report(PRODUCTPAGE, s), source_ip=PRODUCTPAGE_IP) == 1


def test_series_of_connections_from_before_an_override_keep_istios_labels() -> None:
    """A Telemetry override moves a proxy to the gRPC access log, but connections opened before keep
    the listener config with the module until they close: their requests still count, with Istio's
    labels, as istio-proxy's old stats config counts them."""
    s = snap(
        tel(
            "tags",
            "default",
            """
selector: {matchLabels: {app: productpage}}
metrics:
- providers: [{name: prometheus}]
  overrides:
  - match: {metric: REQUEST_COUNT}
    tagOverrides: {custom: {value: "'x'"}}
""",
        )
    )
    t = Telemetry(lambda: s, clock=lambda: NOW, proxy_lookup={PRODUCTPAGE.id: PRODUCTPAGE}.get)
    assert t.ingest_report(report(PRODUCTPAGE, series_of("outbound", [http_entry()]))) == 1
    text = t.metrics_text().decode()
    assert "istio_requests_total{" in text and "custom=" not in text


def test_a_full_module_table_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    t = telemetry()
    s = series_of("outbound", [http_entry()])
    for dropped in (3, 7):
        r = report(PRODUCTPAGE, s)
        t.ingest_report(Report(**{**{f: getattr(r, f) for f in r.__slots__}, "dropped": dropped}))
    assert t.series_dropped == {PRODUCTPAGE.id: 7}
    assert t.status()["moduleSeriesDropped"] == {PRODUCTPAGE.id: 7}
    assert len([m for m in caplog.messages if "no room for new series" in m]) == 1
