"""bench/telemetry.py's pieces, without processes: the sidecar bootstraps of its variants (the module
variant must carry what the generator writes by default) and its synthetic module reports (they must
parse and be counted in full, or the in-process figure measures a pipeline that drops them)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from isthmus.telemetry import envoy as tenvoy
from isthmus.telemetry import statsmodule

BENCH = Path(__file__).resolve().parents[3] / "bench" / "telemetry.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_telemetry", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look modules up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _hcm(boot: dict[str, Any]) -> dict[str, Any]:
    (listener,) = boot["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def test_module_variant_logs_through_the_module_as_generated(bench: ModuleType) -> None:
    boot = bench.sidecar_bootstrap("module", 1001, 1002, 1003, stats_port=1004)
    hcm = _hcm(boot)
    assert [f["name"] for f in hcm["http_filters"]] == [tenvoy.GRPC_STATS_FILTER, "envoy.filters.http.router"]
    logs = hcm["access_log"]
    assert [x["name"] for x in logs] == [
        statsmodule.ACCESS_LOGGER_NAME,
        "envoy.access_loggers.http_grpc",
        "envoy.access_loggers.http_grpc",
    ]
    config = logs[0]["typed_config"]["logger_config"]["value"]
    assert config == statsmodule.logger_config(
        ("127.0.0.1", 1004), bench.SIDECAR.id, "outbound", skip_grpc=True, source=bench.SIDECAR_IP
    )
    # The gRPC access loggers: of gRPC requests (which the module skips; they feed the metrics) and of
    # failed requests (log only); a filter on each, so neither sends an entry for this load of 200s.
    assert [x["typed_config"]["common_config"]["log_name"] for x in logs[1:]] == [
        tenvoy.LOG_NAMES["outbound"],
        tenvoy.LOG_ONLY_NAMES["outbound"],
    ]
    assert all("filter" in x for x in logs[1:])
    assert boot["node"]["metadata"][tenvoy.STATS_COLLECTOR_KEY] == "127.0.0.1:1004"
    # The module sends from the sidecar's address, which the receiver checks against its proxy.
    assert boot["cluster_manager"]["upstream_bind_config"]["source_address"]["address"] == bench.SIDECAR_IP


def test_other_variants_have_no_module_logger(bench: ModuleType) -> None:
    for variant in ("none", "als", "als-bare", "als+tracing"):
        hcm = _hcm(bench.sidecar_bootstrap(variant, 1001, 1002, 1003, stats_port=1004))
        names = [x["name"] for x in hcm.get("access_log", [])]
        assert statsmodule.ACCESS_LOGGER_NAME not in names, variant
        assert names == ([] if variant == "none" else ["envoy.access_loggers.http_grpc"]), variant
    with pytest.raises(ValueError):
        bench.sidecar_bootstrap("module", 1001, 1002, 1003)


def test_synthetic_reports_parse_and_are_counted_in_full(bench: ModuleType) -> None:
    pods, _ = bench.micro_mesh(2)
    (data,) = bench.micro_datagrams(pods[0], 100, 3)
    report = statsmodule.parse_datagram(data)
    assert (report.node_id, report.seq, report.parts, len(report.http)) == (pods[0].id, 3, 1, 100)
    assert sum(s.direction == "inbound" for s in report.http) == 20
    assert all(s.requests == 3 * bench.MICRO_PER_SECOND for s in report.http)
    assert len({s.key() for s in report.http}) == 100
    # Too many series for one datagram: split in parts as the module splits, each parseable alone.
    parts = bench.micro_datagrams(pods[0], 200, 1)
    assert len(parts) > 1 and all(len(p) <= statsmodule.MAX_DATAGRAM for p in parts)
    assert sum(len(statsmodule.parse_datagram(p).http) for p in parts) == 200
    # The micro-benchmark raises unless istio_requests_total holds every request of every report.
    out = bench.module_ingest_micro(proxies=3, series=10, rounds=3)
    assert out["countedRequests"] == 3 * 10 * 3 * bench.MICRO_PER_SECOND
    assert out["datagrams"] == 3 * 2
