"""Test doubles for the xDS server: a generator serving fixed resources, and an ADS client playing Envoy."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.rpc import status_pb2

from isthmus.model.proxy import Proxy
from isthmus.xds import typeurls
from isthmus.xds.server import XdsServer

CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE
MAX_MSG = 64 * 1024 * 1024


def run(timeout: float = 30.0) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., None]]:
    """Decorator: run an async test function in a fresh event loop, bounded by `timeout`."""

    def deco(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout))

        return wrapper

    return deco


def pack(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def cluster(name: str, timeout_s: int = 1) -> any_pb2.Any:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    c.eds_cluster_config.eds_config.ads.SetInParent()
    return pack(c)


def cla(name: str, *ports: int) -> any_pb2.Any:
    la = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    if ports:
        loc = la.endpoints.add()
        for p in ports:
            lb = endpoint_components_pb2.LbEndpoint()
            lb.endpoint.address.socket_address.CopyFrom(
                address_pb2.SocketAddress(address="127.0.0.1", port_value=p)
            )
            loc.lb_endpoints.append(lb)
    return pack(la)


def listener(name: str, port: int = 0, stat_prefix: str = "") -> any_pb2.Any:
    lis = listener_pb2.Listener(name=name, stat_prefix=stat_prefix)
    lis.address.socket_address.address = "127.0.0.1"
    lis.address.socket_address.port_value = port
    return pack(lis)


def route(name: str, body: str = "ok") -> any_pb2.Any:
    rc = route_pb2.RouteConfiguration(name=name)
    vh = rc.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add()
    r.match.prefix = "/"
    r.direct_response.status = 200
    r.direct_response.body.inline_string = body
    return pack(rc)


@dataclass
class Snap:
    version: str
    resources: dict[str, dict[str, any_pb2.Any]] = field(default_factory=dict)


def snap(version: int | str, **by_short: Mapping[str, any_pb2.Any]) -> Snap:
    """`snap(3, CDS={...}, EDS={...})`."""
    return Snap(str(version), {typeurls.type_url_of(k): dict(v) for k, v in by_short.items()})


class FakeGenerator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, frozenset[str] | None]] = []
        self.fail: set[tuple[str, str]] = set()  # (proxy id, type url) that raise

    def generate(
        self, snapshot: Snap, proxy: Proxy, type_url: str, watched: frozenset[str] | None
    ) -> Mapping[str, Any]:
        self.calls.append((snapshot.version, proxy.id, type_url, watched))
        if (proxy.id, type_url) in self.fail:
            raise RuntimeError(f"generator failure for {proxy.id}")
        data = snapshot.resources.get(type_url, {})
        if watched is None:
            return data
        return {n: a for n, a in data.items() if n in watched}

    def count(self, type_url: str, proxy_id: str | None = None) -> int:
        return sum(1 for c in self.calls if c[2] == type_url and (proxy_id is None or c[1] == proxy_id))


def node_id(i: int | str = 0, ns: str = "default") -> str:
    return f"sidecar~127.0.0.1~test-{i}.{ns}~{ns}.svc.cluster.local"


@contextlib.asynccontextmanager
async def running_server(generator: Any, **kwargs: Any) -> AsyncIterator[XdsServer]:
    kwargs.setdefault("debounce_after", 0.01)
    kwargs.setdefault("debounce_max", 0.05)
    server = XdsServer(generator, **kwargs)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop(0)


class AdsStream:
    """One ADS stream on its own channel, with one reader task queueing the responses (cancelling a
    pending read would cancel the whole call). `method` names the stub's stream."""

    method = "StreamAggregatedResources"

    def __init__(self, port: int, nid: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        self.port = port
        self.node = base_pb2.Node(id=nid or node_id())
        if metadata:
            s = struct_pb2.Struct()
            s.update(dict(metadata))
            self.node.metadata.CopyFrom(s)
        self._sent_node = False
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.port}",
            options=[("grpc.max_receive_message_length", MAX_MSG), ("grpc.max_send_message_length", MAX_MSG)],
        )
        self._call = getattr(ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel), self.method)()
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

    async def _next(self, timeout: float) -> Any:
        resp = await asyncio.wait_for(self._responses.get(), timeout)
        if isinstance(resp, Exception):
            raise resp
        assert resp is not grpc.aio.EOF, "stream ended"
        return resp

    def describe(self, resp: Any) -> str:
        return f"{resp.type_url} {resp.version_info} {names_of(resp)}"

    async def expect_nothing(self, within: float = 0.3) -> None:
        """Bounded check that the server sends nothing more for a while."""
        try:
            resp = await self._next(within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected response: {self.describe(resp)}")

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


class FakeEnvoy(AdsStream):
    """An ADS stream that behaves like Envoy, driven step by step by the test."""

    def __init__(self, port: int, nid: str | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(port, nid, metadata)
        self.last: dict[str, discovery_pb2.DiscoveryResponse] = {}
        self.accepted: dict[str, str] = {}  # type -> last ACKed version
        self.names: dict[str, list[str]] = {}

    async def send(
        self,
        type_url: str,
        names: Iterable[str] = (),
        nonce: str = "",
        version: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            response_nonce=nonce,
            version_info=version,
        )
        if not self._sent_node:
            req.node.CopyFrom(self.node)
            self._sent_node = True
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.names[type_url] = list(names)
        await self._call.write(req)

    async def subscribe(self, type_url: str, names: Iterable[str] = ()) -> None:
        """First request of a type (or a change of names, carrying the last nonce received)."""
        last = self.last.get(type_url)
        await self.send(
            type_url,
            names,
            nonce=last.nonce if last else "",
            version=self.accepted.get(type_url, ""),
        )

    async def recv(self, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        resp = await self._next(timeout)
        self.last[resp.type_url] = resp
        return resp

    async def ack(self, resp: discovery_pb2.DiscoveryResponse, names: Iterable[str] | None = None) -> None:
        self.accepted[resp.type_url] = resp.version_info
        await self.send(
            resp.type_url,
            self.names.get(resp.type_url, []) if names is None else names,
            nonce=resp.nonce,
            version=resp.version_info,
        )

    async def nack(self, resp: discovery_pb2.DiscoveryResponse, message: str) -> None:
        await self.send(
            resp.type_url,
            self.names.get(resp.type_url, []),
            nonce=resp.nonce,
            version=self.accepted.get(resp.type_url, ""),
            error=message,
        )

    async def recv_ack(self, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        resp = await self.recv(timeout)
        await self.ack(resp)
        return resp


def names_of(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    """Resource names in a response (decoded from the packed messages)."""
    out = []
    for a in resp.resources:
        if a.type_url == CDS:
            m: Any = cluster_pb2.Cluster()
        elif a.type_url == EDS:
            m = endpoint_pb2.ClusterLoadAssignment()
        elif a.type_url == LDS:
            m = listener_pb2.Listener()
        elif a.type_url == RDS:
            m = route_pb2.RouteConfiguration()
        else:
            out.append(a.type_url)
            continue
        a.Unpack(m)
        out.append(m.cluster_name if a.type_url == EDS else m.name)
    return sorted(out)


def metric(server: XdsServer, name: str, **labels: str) -> float:
    v = server.registry.get_sample_value(name, labels or None)
    return 0.0 if v is None else v
