"""A delta (incremental) ADS client playing Envoy: the `DeltaAggregatedResources` twin of `FakeEnvoy`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.rpc import status_pb2
from xds_fakes import MAX_MSG, names_of, node_id

DeltaResponse = discovery_pb2.DeltaDiscoveryResponse


def names(resp: DeltaResponse) -> list[str]:
    """The names of the resources a delta response adds or replaces."""
    return sorted(r.name for r in resp.resources)


def packed_names(resp: DeltaResponse) -> list[str]:
    """The names inside the packed resources (decoded), to check them against `Resource.name`."""
    return names_of(discovery_pb2.DiscoveryResponse(resources=[r.resource for r in resp.resources]))


class FakeDeltaEnvoy:
    """A delta ADS stream driven step by step by the test, keeping a model of what the client holds.

    `held[type_url]` maps each resource name the client holds to its version, `contents[type_url]` to
    its packed resource: responses add or replace (`resources`) and delete (`removed_resources`), a NACK
    undoes its response, an unsubscribe drops the names, `initial_versions` seeds `held` (a reconnect;
    `contents` then has only what this stream received).
    """

    def __init__(
        self,
        port: int,
        nid: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        with_node: bool = True,
    ) -> None:
        self.port = port
        self.node = base_pb2.Node(id=nid or node_id())
        if metadata:
            s = struct_pb2.Struct()
            s.update(dict(metadata))
            self.node.metadata.CopyFrom(s)
        self.held: dict[str, dict[str, str]] = {}
        self.contents: dict[str, dict[str, any_pb2.Any]] = {}
        self.last: dict[str, DeltaResponse] = {}
        self._undo: dict[str, tuple[str, dict[str, str], dict[str, any_pb2.Any]]] = {}
        self._sent_node = not with_node
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeDeltaEnvoy:
        self._channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.port}",
            options=[("grpc.max_receive_message_length", MAX_MSG), ("grpc.max_send_message_length", MAX_MSG)],
        )
        self._call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel).DeltaAggregatedResources()
        # One reader task: cancelling a pending read would cancel the whole call.
        self._reader = asyncio.create_task(self._read_loop())
        return self

    async def _read_loop(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                await self._responses.put(resp)
                if resp is grpc.aio.EOF:
                    return
        except Exception as e:
            await self._responses.put(e)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        error: str | None = None,
        initial_versions: Mapping[str, str] | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
        )
        if not self._sent_node:
            req.node.CopyFrom(self.node)
            self._sent_node = True
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if initial_versions is not None:
            req.initial_resource_versions.update(initial_versions)
            self.held[type_url] = dict(initial_versions)
        held = self.held.setdefault(type_url, {})
        contents = self.contents.setdefault(type_url, {})
        for name in req.resource_names_unsubscribe:
            held.pop(name, None)
            contents.pop(name, None)
        await self._call.write(req)

    async def recv(self, type_url: str | None = None, timeout: float = 5.0) -> DeltaResponse:
        """The next response (of `type_url`, if given: another type fails the test); updates `held`."""
        resp = await asyncio.wait_for(self._responses.get(), timeout)
        if isinstance(resp, Exception):
            raise resp
        assert resp is not grpc.aio.EOF, "stream ended"
        if type_url is not None:
            assert resp.type_url == type_url, f"expected {type_url}, got {resp.type_url} {names(resp)}"
        held = self.held.setdefault(resp.type_url, {})
        contents = self.contents.setdefault(resp.type_url, {})
        self._undo[resp.type_url] = (resp.nonce, dict(held), dict(contents))
        for r in resp.resources:
            held[r.name] = r.version
            contents[r.name] = r.resource
        for name in resp.removed_resources:
            held.pop(name, None)
            contents.pop(name, None)
        self.last[resp.type_url] = resp
        return resp

    async def expect_nothing(self, within: float = 0.3) -> None:
        """Bounded check that the server sends nothing more for a while."""
        try:
            resp = await asyncio.wait_for(self._responses.get(), within)
        except TimeoutError:
            return
        if isinstance(resp, Exception):
            raise resp
        if resp is grpc.aio.EOF:
            raise AssertionError("stream ended")
        raise AssertionError(
            f"unexpected response: {resp.type_url} {resp.system_version_info} "
            f"{names(resp)} removed={sorted(resp.removed_resources)}"
        )

    async def ack(self, resp: DeltaResponse) -> None:
        await self.send(resp.type_url, nonce=resp.nonce)

    async def nack(self, resp: DeltaResponse, message: str) -> None:
        """Reject `resp`: the client keeps what it held before it."""
        undo = self._undo.get(resp.type_url)
        if undo is not None and undo[0] == resp.nonce:
            self.held[resp.type_url], self.contents[resp.type_url] = undo[1], undo[2]
        await self.send(resp.type_url, nonce=resp.nonce, error=message)

    async def recv_ack(self, type_url: str | None = None, timeout: float = 5.0) -> DeltaResponse:
        resp = await self.recv(type_url, timeout)
        await self.ack(resp)
        return resp
