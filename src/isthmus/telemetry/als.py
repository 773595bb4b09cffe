"""The gRPC Access Log Service (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs).

Each Envoy worker opens one client stream per logger config; the first message names the node (the
proxy, as in xDS) and the log name (the direction, see `telemetry.envoy.LOG_NAMES`); later messages carry
batches of HTTP or TCP entries. The stream ends with an empty response when Envoy closes it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from isthmus.model.proxy import InvalidNode

if TYPE_CHECKING:
    from isthmus.telemetry.core import Telemetry

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
METHOD = "StreamAccessLogs"


def access_log_handler(telemetry: Telemetry) -> grpc.GenericRpcHandler:
    from isthmus.telemetry.core import direction_of, feeds_metrics

    async def stream_access_logs(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        info = None
        direction = None
        metrics = True
        try:
            async for raw in request_iterator:
                # Parsed here rather than by gRPC so the wire bytes stay at hand: `ingest` keeps log
                # entries as pointers into them instead of serializing each entry again.
                message = als_pb2.StreamAccessLogsMessage.FromString(raw)
                if message.HasField("identifier"):
                    ident = message.identifier
                    direction = direction_of(ident.log_name)
                    metrics = feeds_metrics(ident.log_name)
                    if direction is None:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, f"unknown log name {ident.log_name!r}"
                        )
                    try:
                        new = telemetry.register_node(ident.node)
                    except InvalidNode as e:
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, f"invalid node {ident.node.id!r}: {e}"
                        )
                    if new is not info:
                        if info is not None:
                            info.streams -= 1
                        info = new
                        info.streams += 1
                if info is None or direction is None:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the identifier"
                    )
                telemetry.ingest(info, direction, message, raw, metrics=metrics)
        finally:
            if info is not None:
                info.streams -= 1
        return als_pb2.StreamAccessLogsResponse()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            METHOD: grpc.stream_unary_rpc_method_handler(
                stream_access_logs,
                response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
            )
        },
    )
