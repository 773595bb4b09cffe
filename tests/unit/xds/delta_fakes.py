"""A delta (incremental) ADS client playing Envoy: the `DeltaAggregatedResources` twin of `FakeEnvoy`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2
from xds_fakes import AdsStream, names_of

DeltaResponse = discovery_pb2.DeltaDiscoveryResponse


def names(resp: DeltaResponse) -> list[str]:
    """The names of the resources a delta response adds or replaces."""
    return sorted(r.name for r in resp.resources)


def packed_names(resp: DeltaResponse) -> list[str]:
    """The names inside the packed resources (decoded), to check them against `Resource.name`."""
    return names_of(discovery_pb2.DiscoveryResponse(resources=[r.resource for r in resp.resources]))


class FakeDeltaEnvoy(AdsStream):
    """A delta ADS stream driven step by step by the test, keeping a model of what the client holds.

    `held[type_url]` maps each resource name the client holds to its version, `contents[type_url]` to
    its packed resource: responses add or replace (`resources`) and delete (`removed_resources`), a NACK
    undoes its response, an unsubscribe drops the names, `initial_versions` seeds `held` (a reconnect;
    `contents` then has only what this stream received).
    """

    method = "DeltaAggregatedResources"

    def __init__(
        self,
        port: int,
        nid: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        with_node: bool = True,
    ) -> None:
        super().__init__(port, nid, metadata)
        self.held: dict[str, dict[str, str]] = {}
        self.contents: dict[str, dict[str, any_pb2.Any]] = {}
        self.last: dict[str, DeltaResponse] = {}
        self._undo: dict[str, tuple[str, dict[str, str], dict[str, any_pb2.Any]]] = {}
        self._sent_node = not with_node

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
        resp = await self._next(timeout)
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

    def describe(self, resp: DeltaResponse) -> str:
        return f"{resp.type_url} {resp.system_version_info} {names(resp)} removed={sorted(resp.removed_resources)}"

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
