"""The Access Log Service over real gRPC: identification, ingestion, stream accounting, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2
from telemetry_helpers import PRODUCTPAGE, http_entry, message, static_resolver

from isthmus.telemetry import Telemetry
from isthmus.telemetry.als import METHOD, SERVICE


async def _send(port: int, messages: Iterable[als_pb2.StreamAccessLogsMessage]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_unary(
            f"/{SERVICE}/{METHOD}",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )
        await call(iter(list(messages)))


async def _with_server(body) -> None:  # type: ignore[no-untyped-def]
    t = Telemetry(resolver=static_resolver)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(t.grpc_handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await body(t, port)
    finally:
        await server.stop(0)


def test_a_stream_is_identified_once_and_ingested() -> None:
    async def body(t: Telemetry, port: int) -> None:
        first = message(PRODUCTPAGE, "outbound", [http_entry()] * 2)
        later = message(None, "outbound", [http_entry(code=503, flags={"upstream_connection_failure": True})])
        await _send(port, [first, later, later])
        info = t.proxies[PRODUCTPAGE.id]
        assert info.streams == 0 and info.entries == 4
        assert info.proxy.workload == "productpage-v1" and info.me.app == "productpage"
        codes = {k[21]: s.requests for k, s in t.metrics.merged().http.items()}
        assert codes == {"200": 2, "503": 2}
        assert t.status()["entries"] == 4

    asyncio.run(asyncio.wait_for(_with_server(body), 30))


@pytest.mark.parametrize(
    "first",
    [
        message(None, "outbound", [http_entry()]),  # no identifier
        als_pb2.StreamAccessLogsMessage(
            identifier=als_pb2.StreamAccessLogsMessage.Identifier(log_name="isthmus.outbound")
        ),  # no node id
    ],
)
def test_streams_without_a_valid_identifier_are_refused(first: als_pb2.StreamAccessLogsMessage) -> None:
    async def body(t: Telemetry, port: int) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _send(port, [first])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not t.metrics.merged().http

    asyncio.run(asyncio.wait_for(_with_server(body), 30))


def test_unknown_log_names_are_refused() -> None:
    async def body(t: Telemetry, port: int) -> None:
        msg = message(PRODUCTPAGE, "outbound", [http_entry()])
        msg.identifier.log_name = "someone.else"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _send(port, [msg])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(asyncio.wait_for(_with_server(body), 30))
