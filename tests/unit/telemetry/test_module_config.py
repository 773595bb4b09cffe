"""Which metrics pipeline a proxy's listeners get: the in-proxy module where its agent loaded it (node
metadata ISTHMUS_STATS_COLLECTOR) and Telemetry keeps Istio's default metrics, else the gRPC access log."""

from __future__ import annotations

import dataclasses

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from google.protobuf import wrappers_pb2
from telemetry_helpers import PRODUCTPAGE, snap, snapshot, tel

from isthmus.model.proxy import Proxy
from isthmus.telemetry import envoy as tenvoy
from isthmus.telemetry import statsmodule

MODULE_PROXY = dataclasses.replace(
    PRODUCTPAGE, metadata={**PRODUCTPAGE.metadata, tenvoy.STATS_COLLECTOR_KEY: "127.1.0.1:15014"}
)


def _module_config(log: accesslog_pb2.AccessLog) -> str:
    cfg = statsmodule.DynamicModuleAccessLog()
    cfg.ParseFromString(log.typed_config.value)
    value = wrappers_pb2.StringValue()
    assert cfg.logger_config.Unpack(value)
    return value.value


def test_without_the_module_every_request_goes_to_the_access_log_service() -> None:
    for loggers in (
        tenvoy.http_access_loggers(snapshot(), PRODUCTPAGE, "outbound"),
        tenvoy.tcp_access_loggers(snapshot(), PRODUCTPAGE, "outbound"),
    ):
        (als,) = loggers
        assert als.name.startswith("envoy.access_loggers.")
        assert not als.HasField("filter")


def test_with_the_module_the_access_log_service_gets_grpc_and_failed_requests_only() -> None:
    module, grpc, als = tenvoy.http_access_loggers(snapshot(), MODULE_PROXY, "inbound")
    assert module.name == "envoy.access_loggers.dynamic_modules"
    assert module.typed_config.type_url.endswith("DynamicModuleAccessLog")
    assert (
        _module_config(module)
        == f"collector=127.1.0.1:15014 node={MODULE_PROXY.id} direction=inbound source={MODULE_PROXY.ip} grpc=skip"
    )
    # gRPC requests keep feeding the metrics through their entries (message counts).
    cfg = als_pb2.HttpGrpcAccessLogConfig()
    assert grpc.typed_config.Unpack(cfg)
    assert cfg.common_config.log_name == "isthmus.inbound"
    header = grpc.filter.header_filter.header
    assert header.name == "content-type" and not header.invert_match
    # Failed requests (not gRPC: those are logged above) are only logs.
    assert als.typed_config.Unpack(cfg)
    assert cfg.common_config.log_name == "isthmus.inbound.failed"
    failed, not_grpc = als.filter.and_filter.filters
    assert not_grpc.header_filter.header.invert_match
    assert not_grpc.header_filter.header.treat_missing_header_as_empty
    status, flagged = failed.or_filter.filters
    assert status.status_code_filter.comparison.op == accesslog_pb2.ComparisonFilter.GE
    assert status.status_code_filter.comparison.value.default_value == 400
    assert flagged.HasField("response_flag_filter") and not flagged.response_flag_filter.flags


def test_the_grpc_logger_takes_what_the_module_skips() -> None:
    """The module skips application/grpc* (grpc=skip); the gRPC logger's filter is the same prefix, and
    the failed-requests logger leaves those out, so every request is counted and logged once."""
    _module, grpc, failed = tenvoy.http_access_loggers(snapshot(), MODULE_PROXY, "outbound")
    header = grpc.filter.header_filter.header
    assert header.string_match.prefix == "application/grpc" and not header.invert_match
    _failed, not_grpc = failed.filter.and_filter.filters
    assert not_grpc.header_filter.header.string_match.prefix == "application/grpc"


def test_telemetry_overrides_keep_the_access_log_pipeline() -> None:
    """Tag overrides need per-request attributes the module does not keep: the gRPC logger keeps them."""
    s = snap(
        tel(
            "tags",
            "istio-system",
            """
metrics:
- providers: [{name: prometheus}]
  overrides:
  - match: {metric: REQUEST_COUNT}
    tagOverrides: {request_method: {value: request.method}}
""",
        )
    )
    (als,) = tenvoy.http_access_loggers(s, MODULE_PROXY, "outbound")
    assert als.name == "envoy.access_loggers.http_grpc"
    assert not als.HasField("filter")


def test_metrics_disabled_and_no_logs_means_no_logger() -> None:
    s = snap(
        tel(
            "metrics-off",
            "istio-system",
            """
metrics:
- providers: [{name: prometheus}]
  overrides:
  - disabled: true
""",
        )
    )
    assert tenvoy.http_access_loggers(s, MODULE_PROXY, "outbound") == []


def test_collector_metadata() -> None:
    def proxy(value: object) -> Proxy:
        return dataclasses.replace(PRODUCTPAGE, metadata={tenvoy.STATS_COLLECTOR_KEY: value})

    assert tenvoy.stats_collector(proxy("127.1.0.1:15014")) == ("127.1.0.1", 15014)
    assert tenvoy.stats_collector(proxy("[::1]:15014")) == ("::1", 15014)
    assert tenvoy.stats_collector(proxy("nonsense")) is None
    assert tenvoy.stats_collector(proxy("h:x")) is None
    assert tenvoy.stats_collector(PRODUCTPAGE) is None
