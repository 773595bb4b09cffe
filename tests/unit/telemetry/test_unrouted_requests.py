"""Requests answered before Envoy picks an upstream host (fault abort FI, no healthy upstream UH, ...).

Envoy's gRPC entry then has no upstream_cluster (it copies upstreamHost()->cluster()), but the route did
choose a cluster: %UPSTREAM_CLUSTER_RAW% has it, as Istio's file log and istio-proxy's stats do. The
loggers carry it as a formatter tag, and both the metrics and the rendered log line use it.
"""

from __future__ import annotations

from telemetry_helpers import PRODUCTPAGE, REVIEWS_HOST, http_entry, message, static_resolver

from isthmus.telemetry import Telemetry, accesslog, istio
from isthmus.telemetry import envoy as tenvoy
from isthmus.telemetry.core import LogLine

ROUTED = f"outbound|9080|v1|{REVIEWS_HOST}"


def _fault(tag: str | None) -> tuple[dict[str, str], LogLine]:
    r = static_resolver()
    t = Telemetry(resolver=lambda: r)
    entry = http_entry(
        cluster="",
        upstream=None,
        upstream_local=None,
        code=500,
        duration_ms=0,
        flags={"fault_injected": True},
        details="fault_filter_abort",
        route="",
        tags={accesslog.TAG_UPSTREAM_CLUSTER: tag} if tag is not None else None,
    )
    msg = message(PRODUCTPAGE, "outbound", [entry])
    info = t.register_node(msg.identifier.node)
    t.ingest(info, "outbound", msg)
    (key,) = t.metrics.merged().http
    (line,) = t.log_lines([info])
    return dict(zip(istio.HTTP_LABELS, key, strict=True)), line


def test_the_routed_cluster_names_the_destination_service() -> None:
    labels, line = _fault(ROUTED)
    assert labels["reporter"] == "source"
    assert (labels["response_code"], labels["response_flags"]) == ("500", "FI")
    assert labels["destination_service"] == REVIEWS_HOST
    assert labels["destination_service_name"] == "reviews"
    # No upstream was picked: nothing is known of a destination pod (as in istio-proxy).
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_service_namespace"] == "unknown"
    assert labels["destination_canonical_revision"] == "latest"
    assert f'"-" {ROUTED} - ' in line.text, line.text
    assert " 500 FI fault_filter_abort " in line.text


def test_without_the_tag_the_host_header_is_the_fallback() -> None:
    for tag in (None, "-"):
        labels, line = _fault(tag)
        assert labels["destination_service"] == "reviews:9080", tag
        assert labels["destination_service_name"] == "reviews:9080", tag
        assert '"-" - - ' in line.text, line.text


def test_the_loggers_ask_envoy_for_the_routed_cluster() -> None:
    from envoy.extensions.access_loggers.grpc.v3 import als_pb2

    http_cfg = als_pb2.HttpGrpcAccessLogConfig()
    assert tenvoy.http_grpc_logger("outbound").typed_config.Unpack(http_cfg)
    tcp_cfg = als_pb2.TcpGrpcAccessLogConfig()
    assert tenvoy.tcp_grpc_logger("outbound").typed_config.Unpack(tcp_cfg)
    for common in (http_cfg.common_config, tcp_cfg.common_config):
        tags = {t.tag: t for t in common.custom_tags}
        assert tags[accesslog.TAG_UPSTREAM_CLUSTER].value == "%UPSTREAM_CLUSTER_RAW%"
