"""Protocol tests of the ADS server with a real gRPC client playing Envoy."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from xds_fakes import (
    CDS,
    EDS,
    LDS,
    RDS,
    FakeEnvoy,
    FakeGenerator,
    cla,
    cluster,
    listener,
    metric,
    names_of,
    node_id,
    route,
    run,
    running_server,
    snap,
)

from isthmus.xds import typeurls
from isthmus.xds.server import PushRequest
from isthmus.xds.status import NOT_SENT, STALE, SYNCED

FULL = PushRequest(full=True, reason="test")


def base(version: int = 1, **over):
    parts = {
        "CDS": {"c1": cluster("c1"), "c2": cluster("c2")},
        "EDS": {"c1": cla("c1", 8001), "c2": cla("c2", 8002)},
        "LDS": {"l1": listener("l1", 15001)},
        "RDS": {"80": route("80")},
    }
    parts.update(over)
    return snap(version, **parts)


def with_c3(c1_port: int = 8001) -> tuple[dict, dict]:
    """base()'s clusters plus a new one, c3, and the endpoints of all three."""
    clusters = {"c1": cluster("c1"), "c2": cluster("c2"), "c3": cluster("c3")}
    return clusters, {"c1": cla("c1", c1_port), "c2": cla("c2", 8002), "c3": cla("c3", 8003)}


async def connect_and_sync(env: FakeEnvoy, eds=("c1", "c2"), rds=("80",)) -> None:
    """The usual Envoy start: CDS, then EDS for its clusters, LDS, then RDS; ACK everything."""
    await env.subscribe(CDS)
    await env.recv_ack()
    await env.subscribe(EDS, eds)
    await env.recv_ack()
    await env.subscribe(LDS)
    await env.recv_ack()
    await env.subscribe(RDS, rds)
    await env.recv_ack()


def status_of(server, proxy_id=None):
    statuses = server.status()
    if proxy_id is None:
        assert len(statuses) == 1
        return statuses[0]
    return next(s for s in statuses if s.id == proxy_id)


async def wait_for(cond, timeout=5.0):
    """Bounded polling of a condition on the server's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@run()
async def test_initial_requests_ack_and_status():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(CDS)
            resp = await env.recv()
            assert resp.type_url == CDS
            assert names_of(resp) == ["c1", "c2"]
            assert resp.version_info.startswith("1-")
            assert resp.nonce
            assert resp.control_plane.identifier == "isthmus"
            st = status_of(server)
            assert st.id == node_id()
            assert st.proxy.namespace == "default" and st.proxy.instance == "test-0"
            assert st.types["CDS"]["sync"] == STALE
            assert st.types["CDS"]["sent_nonce"] == resp.nonce
            assert st.config_version is None

            await env.ack(resp)
            await wait_for(lambda: status_of(server).types["CDS"]["sync"] == SYNCED)
            assert status_of(server).types["CDS"]["acked_version"] == resp.version_info

            await env.subscribe(EDS, ["c1"])
            eds = await env.recv()
            assert eds.type_url == EDS and names_of(eds) == ["c1"]  # only what was asked for
            await env.ack(eds)
            await env.subscribe(LDS)
            await env.recv_ack()
            await env.subscribe(RDS, ["80"])
            rds = await env.recv_ack()
            assert names_of(rds) == ["80"]

            assert await server.wait_synced("1", timeout=5)
            st = status_of(server)
            assert st.config_version == "1"
            assert st.sync == {"CDS": SYNCED, "EDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
            assert st.types["EDS"]["watched"] == 1 and not st.types["EDS"]["wildcard"]
            assert st.types["CDS"]["wildcard"] and st.types["CDS"]["resources"] == 2
            assert st.types["LDS"]["last_nack"] is None
            assert metric(server, "pilot_xds") == 1
            assert metric(server, "pilot_xds_pushes_total", type="cds") == 1
            d = st.to_dict()
            assert d["sync"]["RDS"] == SYNCED and d["types"]["CDS"]["resources"] == 2
            await env.expect_nothing()
        await wait_for(lambda: not server.status())
        assert metric(server, "pilot_xds") == 0


@run()
async def test_subscription_before_first_snapshot_is_answered_by_first_push():
    gen = FakeGenerator()
    async with running_server(gen) as server, FakeEnvoy(server.port) as env:
        await env.subscribe(CDS)
        assert await server.wait_connected(node_id(), timeout=5)
        await wait_for(lambda: "CDS" in status_of(server).types)
        assert status_of(server).types["CDS"]["sync"] == NOT_SENT
        await env.expect_nothing(0.1)
        assert not await server.wait_synced("1", timeout=0.05)
        server.update(base(1), PushRequest(full=False, eds_only_clusters=frozenset({"c1"})))
        resp = await env.recv()  # an EDS-only push still sends types never sent
        assert resp.type_url == CDS and names_of(resp) == ["c1", "c2"]


@run()
async def test_first_request_of_named_type_always_answered():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(EDS, ["unknown-cluster"])
            resp = await env.recv()
            # the generator has no such cluster: the server answers an empty assignment (SotW), so
            # Envoy does not wait initial_fetch_timeout for it
            assert resp.type_url == EDS and names_of(resp) == ["unknown-cluster"]
            (la,) = [endpoint_pb2.ClusterLoadAssignment.FromString(a.value) for a in resp.resources]
            assert not la.endpoints
            await env.ack(resp)
            await wait_for(lambda: status_of(server).types["EDS"]["sync"] == SYNCED)


@run()
async def test_push_order_and_only_changed_types():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            assert await server.wait_synced("1", timeout=5)
            # everything changes: the push goes CDS, EDS, LDS, RDS
            server.update(
                snap(
                    2,
                    RDS={"80": route("80", "v2")},
                    LDS={"l1": listener("l1", 15001, "v2")},
                    EDS={"c1": cla("c1", 9001), "c2": cla("c2", 9002)},
                    CDS={"c1": cluster("c1", 2), "c2": cluster("c2", 2)},
                ),
                FULL,
            )
            order = []
            for _ in range(4):
                resp = await env.recv_ack()
                order.append(resp.type_url)
                assert resp.version_info.startswith("2-")
            assert order == [CDS, EDS, LDS, RDS]
            assert await server.wait_synced("2", timeout=5)

            # only the route changes: only RDS is sent, yet every type is current at 3
            pushes_before = metric(server, "pilot_xds_pushes_total", type="cds")
            server.update(
                snap(
                    3,
                    RDS={"80": route("80", "v3")},
                    LDS={"l1": listener("l1", 15001, "v2")},
                    EDS={"c1": cla("c1", 9001), "c2": cla("c2", 9002)},
                    CDS={"c1": cluster("c1", 2), "c2": cluster("c2", 2)},
                ),
                FULL,
            )
            resp = await env.recv_ack()
            assert resp.type_url == RDS and resp.version_info.startswith("3-")
            await env.expect_nothing(0.2)
            assert metric(server, "pilot_xds_pushes_total", type="cds") == pushes_before
            assert metric(server, "pilot_xds_skipped_pushes_total", type="cds") >= 1
            assert await server.wait_synced("3", timeout=5)
            assert status_of(server).config_version == "3"


@run()
async def test_cluster_change_resends_its_endpoints():
    """Envoy keeps an updated cluster warming until it gets its ClusterLoadAssignment again."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            server.update(base(2, CDS={"c1": cluster("c1", 5), "c2": cluster("c2")}), FULL)
            cds = await env.recv_ack()
            assert cds.type_url == CDS
            eds = await env.recv_ack()
            assert eds.type_url == EDS and names_of(eds) == ["c1"]  # unchanged, but its cluster changed
            await env.expect_nothing(0.2)


@run()
async def test_nack_is_recorded_and_not_resent():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            good = env.accepted[LDS]
            server.update(base(2, LDS={"l1": listener("l1", 15001, "bad")}), FULL)
            bad = await env.recv()
            assert bad.type_url == LDS
            await env.nack(bad, "listener l1: invalid stat prefix")
            await wait_for(lambda: status_of(server).types["LDS"]["last_nack"] is not None)
            st = status_of(server)
            nack = st.types["LDS"]["last_nack"]
            assert nack["message"] == "listener l1: invalid stat prefix"
            assert nack["version"] == bad.version_info and nack["nonce"] == bad.nonce
            assert nack["type"] == "LDS" and nack["time"] > 0
            assert st.types["LDS"]["sync"] == STALE
            assert st.types["LDS"]["acked_version"] == good
            assert st.config_version == "1"  # LDS still at the config of version 1
            assert metric(server, "pilot_total_xds_rejects_total", type="lds") == 1
            await env.expect_nothing()  # no resend loop

            # a new snapshot with the same bad listener and a changed cluster: CDS goes, LDS is not resent
            server.update(base(3, LDS={"l1": listener("l1", 15001, "bad")}, CDS={"c1": cluster("c1")}), FULL)
            cds = await env.recv_ack()
            assert cds.type_url == CDS and cds.version_info.startswith("3-")
            await env.expect_nothing()
            assert metric(server, "pilot_xds_pushes_total", type="lds") == 2
            assert not await server.wait_synced("3", timeout=0.1)

            # fixed config: sent, ACKed, SYNCED; the last NACK stays visible
            server.update(base(4, CDS={"c1": cluster("c1")}), FULL)
            fixed = await env.recv_ack()
            assert fixed.type_url == LDS and fixed.version_info.startswith("4-")
            assert await server.wait_synced("4", timeout=5)
            st = status_of(server)
            assert st.types["LDS"]["sync"] == SYNCED
            assert st.types["LDS"]["last_nack"]["nonce"] == bad.nonce


@run()
async def test_eds_only_push_reaches_only_watchers():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        s1 = base(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)})
        server.update(s1, FULL)
        async with FakeEnvoy(server.port, node_id("a")) as a, FakeEnvoy(server.port, node_id("b")) as b:
            await connect_and_sync(a, eds=("c1", "c3"))
            await connect_and_sync(b, eds=("c2",))
            assert await server.wait_synced("1", timeout=5)
            gen.calls.clear()
            # c1 and c3 both changed in the snapshot, but the request names only c1
            s2 = base(2, EDS={"c1": cla("c1", 11), "c2": cla("c2", 2), "c3": cla("c3", 33)})
            server.update(s2, PushRequest(full=False, eds_only_clusters=frozenset({"c1"}), reason="ep"))
            resp = await a.recv_ack()
            assert resp.type_url == EDS and names_of(resp) == ["c1"]
            assert resp.version_info.startswith("2-")
            await a.expect_nothing(0.2)
            await b.expect_nothing(0.1)
            assert {c[2] for c in gen.calls} == {EDS}
            assert [c[3] for c in gen.calls] == [frozenset({"c1"})]  # only the watched, changed clusters
            # both proxies are current at 2: b had nothing to get
            assert await server.wait_synced("2", timeout=5)
            assert {s.config_version for s in server.status()} == {"2"}
            assert metric(server, "pilot_push_triggers_total", type="eds") == 1


@run()
async def test_debounce_merges_quick_updates_into_one_push():
    gen = FakeGenerator()
    async with running_server(gen, debounce_after=0.1, debounce_max=2.0) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env, eds=("c1", "c2"))
            triggers = metric(server, "pilot_push_triggers_total", type="full")
            # ten quick updates: an EDS-only one and full ones; the last snapshot wins, merged push is full
            server.update(
                base(2, EDS={"c1": cla("c1", 5), "c2": cla("c2", 8002)}),
                PushRequest(False, frozenset({"c1"})),
            )
            for v in range(3, 12):
                server.update(
                    base(v, EDS={"c1": cla("c1", 5), "c2": cla("c2", 8002)}, LDS={"l1": listener("l1", v)}),
                    FULL,
                )
            seen = [await env.recv_ack(), await env.recv_ack()]
            assert [r.type_url for r in seen] == [EDS, LDS]
            assert all(r.version_info.startswith("11-") for r in seen)
            await env.expect_nothing(0.3)
            assert metric(server, "pilot_push_triggers_total", type="full") == triggers + 1
            assert metric(server, "pilot_push_triggers_total", type="eds") == 0
            assert metric(server, "pilot_inbound_updates_total", type="full") == 10
            assert await server.wait_synced("11", timeout=5)


@run()
async def test_debounce_max_bounds_the_delay():
    gen = FakeGenerator()
    async with running_server(gen, debounce_after=0.1, debounce_max=0.2) as server:
        server.update(base(1), FULL)
        server.flush()
        before = metric(server, "pilot_push_triggers_total", type="full")
        # an update every 20 ms for 0.8 s never leaves 100 ms quiet: only debounce_max makes pushes happen
        for v in range(2, 42):
            server.update(base(v), FULL)
            await asyncio.sleep(0.02)
        during = metric(server, "pilot_push_triggers_total", type="full") - before
        assert during >= 3  # ~0.8 s / 0.2 s; without the max there would be none until the updates stop


@run()
async def test_watched_names_change_sends_new_names_right_away():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)}), FULL)
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(CDS)
            await env.recv_ack()
            await env.subscribe(EDS, ["c1"])
            assert names_of(await env.recv_ack()) == ["c1"]
            # the ACK-like request carrying new names: only the new name is sent
            await env.subscribe(EDS, ["c1", "c2"])
            assert names_of(await env.recv_ack()) == ["c2"]
            await wait_for(lambda: status_of(server).types["EDS"]["watched"] == 2)
            # dropping a name sends nothing
            await env.subscribe(EDS, ["c2"])
            await env.expect_nothing(0.2)
            await wait_for(lambda: status_of(server).types["EDS"]["resources"] == 1)
            # watching it again sends it again (the proxy dropped it)
            await env.subscribe(EDS, ["c2", "c1"])
            assert names_of(await env.recv_ack()) == ["c1"]
            # a name the generator has nothing for: an empty assignment (Envoy must not wait for it), once
            await env.subscribe(EDS, ["c1", "c2", "nope"])
            assert names_of(await env.recv_ack()) == ["nope"]
            await env.expect_nothing(0.2)
            # unsubscribing everything keeps the type current (it asks for nothing)
            await env.subscribe(EDS, [])
            await env.expect_nothing(0.1)
            await env.subscribe(LDS)
            await env.recv_ack()
            server.update(base(2, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)}), FULL)
            assert await server.wait_synced("2", timeout=5)


@run()
async def test_stale_nonce_is_not_an_ack_but_names_still_count():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env, eds=("c1",))
            server.update(base(2, EDS={"c1": cla("c1", 21), "c2": cla("c2", 22)}), FULL)
            server.flush()
            first = await env.recv()
            server.update(base(3, EDS={"c1": cla("c1", 31), "c2": cla("c2", 32)}), FULL)
            server.flush()
            second = await env.recv()
            assert first.type_url == second.type_url == EDS and first.nonce != second.nonce
            # ACK of the older response, also subscribing to c2: not an ACK, but c2 is sent
            await env.send(EDS, ["c1", "c2"], nonce=first.nonce, version=first.version_info)
            third = await env.recv()
            assert names_of(third) == ["c2"] and third.version_info.startswith("3-")
            await wait_for(lambda: metric(server, "pilot_xds_expired_nonce_total", type="eds") == 1)
            st = status_of(server)
            assert st.types["EDS"]["sync"] == STALE
            assert st.types["EDS"]["acked_version"] == env.accepted[EDS]  # still version 1's
            # a NACK with a stale nonce is not recorded either
            await env.send(EDS, ["c1", "c2"], nonce=second.nonce, error="late complaint")
            await env.ack(third)
            await wait_for(lambda: status_of(server).types["EDS"]["sync"] == SYNCED)
            assert status_of(server).types["EDS"]["last_nack"] is None
            assert status_of(server).types["EDS"]["synced_version"] == "3"


@run()
async def test_generator_failure_is_isolated_to_its_proxy():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port, node_id("a")) as a, FakeEnvoy(server.port, node_id("b")) as b:
            await connect_and_sync(a)
            await connect_and_sync(b)
            gen.fail.add((node_id("a"), LDS))
            server.update(base(2, LDS={"l1": listener("l1", 2)}, RDS={"80": route("80", "v2")}), FULL)
            assert [r.type_url for r in (await b.recv_ack(), await b.recv_ack())] == [LDS, RDS]
            # a: LDS failed, RDS still went out; its stream lives on
            resp = await a.recv_ack()
            assert resp.type_url == RDS
            await a.expect_nothing(0.2)
            assert metric(server, "pilot_total_xds_internal_errors_total", type="lds") == 1
            assert await server.wait_synced("2", {node_id("b")}, timeout=5)
            assert not await server.wait_synced("2", {node_id("a")}, timeout=0.1)
            sa = status_of(server, node_id("a"))
            assert sa.types["LDS"]["sync"] == SYNCED and sa.types["LDS"]["sent_version"].startswith("1-")
            assert sa.config_version == "1"
            # the generator recovers: an EDS-only push retries the failed type too
            gen.fail.clear()
            server.update(
                base(3, LDS={"l1": listener("l1", 2)}, RDS={"80": route("80", "v2")}),
                PushRequest(False, frozenset({"zzz"})),
            )
            resp = await a.recv_ack()
            assert resp.type_url == LDS and resp.version_info.startswith("3-")
            assert await server.wait_synced("3", timeout=5)


@run()
async def test_invalid_node_is_refused():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        async with FakeEnvoy(server.port, "not-a-proxy-id") as env:
            await env.subscribe(CDS)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.recv()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.status() == []


@run()
async def test_wait_synced_and_connected_time_out():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        assert not await server.wait_connected(node_id(), timeout=0.05)
        assert await server.wait_synced("7", timeout=0.05)  # nobody connected: trivially true
        assert not await server.wait_synced("7", {node_id()}, timeout=0.05)
        server.update(base(7), FULL)
        async with FakeEnvoy(server.port) as env:
            waiter = asyncio.create_task(server.wait_synced("7", {node_id()}, timeout=5))
            await env.subscribe(CDS)  # the stream counts as connected once its first request arrives
            assert await server.wait_connected(node_id(), timeout=5)
            await env.recv_ack()
            await asyncio.sleep(0)
            assert not waiter.done()  # LDS not subscribed yet
            await env.subscribe(LDS)
            await env.recv_ack()
            assert await waiter
            assert not await server.wait_synced("8", timeout=0.05)


@run()
async def test_generic_type_and_update_from_another_thread():
    secret_type = typeurls.SECRET
    gen = FakeGenerator()
    async with running_server(gen) as server, FakeEnvoy(server.port) as env:
        await env.subscribe(secret_type, ["default", "ROOTCA"])
        await wait_for(lambda: bool(server.status()))
        s = snap(1, SDS={"default": route("default"), "ROOTCA": route("ROOTCA"), "other": route("x")})
        t = threading.Thread(target=server.update, args=(s, FULL))
        t.start()
        t.join()
        resp = await env.recv_ack()
        assert resp.type_url == secret_type and len(resp.resources) == 2
        assert gen.calls[-1][3] == frozenset({"default", "ROOTCA"})
        await wait_for(lambda: status_of(server).types["SDS"]["sync"] == SYNCED)


@run()
async def test_large_resources_and_shared_encoding():
    gen = FakeGenerator()
    big = listener("big", 1, "x" * (8 * 1024 * 1024))
    async with running_server(gen) as server:
        server.update(snap(1, CDS={}, LDS={"big": big}), FULL)
        server.flush()
        envs = [FakeEnvoy(server.port, node_id(i)) for i in range(5)]
        for env in envs:
            await env.__aenter__()
        try:
            for env in envs:
                await env.subscribe(LDS)
            for env in envs:
                resp = await env.recv_ack(timeout=20)
                assert len(resp.resources) == 1 and len(resp.resources[0].value) > 8 * 1024 * 1024
            # five proxies, one serialization of the shared resource
            assert server._cache.misses <= 2
        finally:
            for env in envs:
                await env.close()


def test_response_encoding_matches_protobuf():
    from isthmus.xds.cache import EncodeCache, ResponseEncoder

    cache = EncodeCache()
    res = {"c1": cluster("c1"), "c2": cluster("c2", 3)}
    rs = cache.resource_set(res)
    data = ResponseEncoder("isthmus").response(b"".join(e.data for _, e, _ in rs.entries), "5-abc", CDS, "42")
    parsed = discovery_pb2.DiscoveryResponse.FromString(data)
    expected = discovery_pb2.DiscoveryResponse(
        version_info="5-abc", type_url=CDS, nonce="42", resources=list(res.values())
    )
    expected.control_plane.identifier = "isthmus"
    assert parsed == expected
    # identity cache: same objects -> same entry; equal content -> equal digests
    assert cache.resource_set(res) is rs
    assert cache.resource_set(dict(res)).combined == rs.combined
    assert (
        cache.resource_set({"c1": cluster("c1", 9)}).combined
        != cache.resource_set({"c1": res["c1"]}).combined
    )


@run()
async def test_no_op_push_advances_versions_without_sending():
    """A snapshot that changes nothing for anyone (PushRequest(full=False) with no clusters)."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            calls = len(gen.calls)
            server.update(base(2), PushRequest(full=False, reason="no-op"))
            assert await server.wait_synced("2", timeout=5)
            assert status_of(server).config_version == "2"
            assert len(gen.calls) == calls  # nothing rebuilt
            await env.expect_nothing(0.1)


def test_push_request_merge():
    a = PushRequest(False, frozenset({"a"}), "ep")
    b = PushRequest(False, frozenset({"b"}), "ep")
    assert a.merge(b) == PushRequest(False, frozenset({"a", "b"}), "ep")
    full = a.merge(PushRequest(True, reason="config"))
    assert full.full and full.eds_only_clusters == frozenset() and full.reason == "ep; config"
    assert full.merge(b).full


class SharingGenerator(FakeGenerator):
    """Returns the snapshot's own mapping when the proxy watches all of it, as MeshGenerator returns a
    scope's memoized mapping: the same object push after push while it does not change."""

    def generate(self, snapshot, proxy, type_url, watched):
        data = super().generate(snapshot, proxy, type_url, watched)
        whole = snapshot.resources.get(type_url, {})
        return whole if watched is not None and data.keys() == whole.keys() else data


@run()
async def test_proxies_with_the_same_content_get_one_encoded_response():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port, node_id(1)) as a, FakeEnvoy(server.port, node_id(2)) as b:
            await connect_and_sync(a)
            await connect_and_sync(b)
            server.update(base(2, RDS={"80": route("80", "v2")}), FULL)
            ra, rb = await a.recv_ack(), await b.recv_ack()
            assert ra.type_url == rb.type_url == RDS
            # one encoding, one nonce: nonces need only be unique within a stream
            assert ra.SerializeToString() == rb.SerializeToString()
            nonces = {ra.nonce}
            # The same content again on one stream (a new subscription) gets a new nonce there.
            await a.send(RDS, ["80"])
            again = await a.recv_ack()
            assert again.version_info == ra.version_info and again.nonce not in nonces
            assert await server.wait_synced("2", timeout=5)


@run()
async def test_unchanged_shared_mapping_is_skipped_but_subscriptions_and_cluster_changes_still_send():
    gen = SharingGenerator()
    async with running_server(gen) as server:
        eds = {"c1": cla("c1", 8001), "c2": cla("c2", 8002)}
        server.update(base(1, EDS=eds), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            lds = {"l1": listener("l1", 15002)}
            server.update(base(2, EDS=eds, LDS=lds), FULL)
            assert (await env.recv_ack()).type_url == LDS
            await env.expect_nothing(0.2)
            # drop c2, then watch it again: it is sent again although the mapping is the same object
            await env.send(EDS, ["c1"], nonce=env.last[EDS].nonce, version=env.last[EDS].version_info)
            await env.expect_nothing(0.2)
            await env.send(EDS, ["c1", "c2"], nonce=env.last[EDS].nonce, version=env.last[EDS].version_info)
            resp = await env.recv_ack()
            assert resp.type_url == EDS and names_of(resp) == ["c2"]
            # a changed cluster forces its endpoints out, unchanged mapping or not
            server.update(base(3, EDS=eds, LDS=lds, CDS={"c1": cluster("c1", 5), "c2": cluster("c2")}), FULL)
            assert (await env.recv_ack()).type_url == CDS
            resp = await env.recv_ack()
            assert resp.type_url == EDS and names_of(resp) == ["c1"]
            await env.expect_nothing(0.2)
            assert await server.wait_synced("3", timeout=5)


@run()
async def test_a_proxy_that_stops_reading_is_dropped_after_the_send_timeout():
    from envoy.service.discovery.v3 import ads_pb2_grpc

    gen = FakeGenerator()
    big = {f"l{i}": listener(f"l{i}", i + 1, f"{i}" * (4 * 1024 * 1024)) for i in range(8)}
    async with running_server(gen, send_timeout=0.5) as server:
        server.update(snap(1, CDS={}, LDS=big), FULL)
        server.flush()
        # A client that subscribes and then never reads: HTTP/2 flow control stalls the server's write.
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{server.port}", options=[("grpc.max_receive_message_length", 256 << 20)]
        ) as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
            first = discovery_pb2.DiscoveryRequest(type_url=LDS)
            first.node.id = node_id(1)
            await call.write(first)
            await wait_for(lambda: metric(server, "pilot_xds_write_timeout_total") == 1, timeout=10)
            await wait_for(lambda: not server.status(), timeout=5)
            call.cancel()


@run()
async def test_a_new_cluster_gets_its_endpoints_once():
    """The endpoints answered when Envoy subscribes to a new cluster are not forced out again."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port) as env:
            await connect_and_sync(env)
            clusters, endpoints = with_c3()
            server.update(base(2, CDS=clusters, EDS=endpoints), FULL)
            cds = await env.recv_ack()
            assert cds.type_url == CDS and len(cds.resources) == 3
            await env.subscribe(EDS, ["c1", "c2", "c3"])
            eds = await env.recv_ack()
            assert eds.type_url == EDS and names_of(eds) == ["c3"]
            await env.expect_nothing(0.3)
            assert await server.wait_synced("2", timeout=5)


def test_an_endpoint_push_holds_reads_back_only_until_its_writes_are_done(monkeypatch):
    """Reads wait while connections still have an endpoint push to write; once all are written the ACKs
    are read at once (not after READ_HOLD_MAX), and a full push that follows (which may wait for
    Envoy's subscription to new clusters) is not held back."""
    from isthmus.xds import server as server_mod

    monkeypatch.setattr(server_mod, "READ_HOLD_MAX", 30.0)  # a gate left closed would show as a timeout

    @run(timeout=20)
    async def scenario():
        gen = FakeGenerator()
        async with running_server(gen) as server:
            s1 = base(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2)})
            server.update(s1, FULL)
            envs = [FakeEnvoy(server.port, node_id(i)) for i in range(3)]
            for env in envs:
                await env.__aenter__()
            try:
                for env in envs:
                    await connect_and_sync(env)
                assert await server.wait_synced("1", timeout=5)
                s2 = base(2, EDS={"c1": cla("c1", 11), "c2": cla("c2", 2)})
                server.update(s2, PushRequest(full=False, eds_only_clusters=frozenset({"c1"}), reason="ep"))
                for env in envs:
                    resp = await env.recv_ack()
                    assert resp.type_url == EDS and names_of(resp) == ["c1"]
                assert await server.wait_synced("2", timeout=5)
                assert server._gate == 0 and not server._held
                # An endpoint push dispatched, then at once a full push adding a cluster: each connection
                # gets the two merged (nothing ran in between), gated by the first.
                server.update(
                    base(3, EDS={"c1": cla("c1", 12), "c2": cla("c2", 2)}),
                    PushRequest(full=False, eds_only_clusters=frozenset({"c1"}), reason="ep"),
                )
                server.flush()
                assert server._gate == 3
                clusters, eds = with_c3(c1_port=12)
                server.update(base(4, CDS=clusters, EDS=eds), FULL)
                server.flush()
                for env in envs:
                    got: list[str] = []
                    while True:  # like Envoy: ACK everything; a CDS with a new cluster -> watch it
                        try:
                            resp = await env.recv(timeout=0.5)
                        except TimeoutError:
                            break
                        await env.ack(resp)
                        got += [f"{resp.type_url[-8:]}:{n}" for n in names_of(resp)]
                        if resp.type_url == CDS:
                            await env.subscribe(EDS, ["c1", "c2", "c3"])
                    assert "signment:c3" in got, got  # ClusterLoadAssignment of the new cluster
                # well within the 3 s a full push waits for Envoy's subscription to new clusters
                assert await server.wait_synced("4", timeout=2)
                assert server._gate == 0 and not server._held
            finally:
                for env in envs:
                    await env.close()

    scenario()


def test_a_held_connection_reads_again_for_a_full_push(monkeypatch):
    """A proxy that wrote its endpoint push is held back from reading while another still has one to
    write; a full push to it must not stay held (it needs the ACKs and subscriptions it sends)."""
    from isthmus.xds import server as server_mod

    monkeypatch.setattr(server_mod, "READ_HOLD_MAX", 30.0)

    @run(timeout=20)
    async def scenario():
        gen = FakeGenerator()
        async with running_server(gen) as server:
            server.update(base(1), FULL)
            async with FakeEnvoy(server.port, node_id("a")) as a, FakeEnvoy(server.port, node_id("b")) as b:
                await connect_and_sync(a)
                await connect_and_sync(b)
                # v2 adds cluster c3: a subscribes to its endpoints, b does not, so b's connection waits
                # (up to 3 s) for that subscription and cannot write the endpoint push that follows.
                clusters, eds = with_c3()
                server.update(base(2, CDS=clusters, EDS=eds), FULL)
                server.flush()
                for env in (a, b):
                    assert (await env.recv_ack()).type_url == CDS
                await a.subscribe(EDS, ["c1", "c2", "c3"])
                assert names_of(await a.recv_ack()) == ["c3"]
                eds3 = {**eds, "c1": cla("c1", 9001)}
                server.update(base(3, CDS=clusters, EDS=eds3), PushRequest(False, frozenset({"c1"}), "ep"))
                server.flush()
                assert names_of(await a.recv_ack()) == ["c1"]  # a wrote its push; b has not: a is held
                await wait_for(lambda: len(server._held) == 1)
                server.update(base(4, CDS=clusters, EDS=eds3, LDS={"l1": listener("l1", 15002)}), FULL)
                server.flush()
                assert (await a.recv_ack()).type_url == LDS
                a_id = status_of(server, node_id("a")).id
                assert await server.wait_synced("4", {a_id}, timeout=1.5)  # not after b's 3 s wait

    scenario()


class PerProxyGenerator(FakeGenerator):
    """Every proxy gets its own CDS (as a sidecar with inbound clusters does), the rest shared."""

    def generate(self, snapshot, proxy, type_url, watched):
        data = super().generate(snapshot, proxy, type_url, watched)
        if type_url == CDS:
            return {**{f"c{i}": cluster(f"c{i}", 2) for i in range(20)}, proxy.id: cluster(proxy.id)}
        return data


@run()
async def test_only_responses_several_proxies_get_are_kept():
    gen = PerProxyGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeEnvoy(server.port, node_id(1)) as a, FakeEnvoy(server.port, node_id(2)) as b:
            for env in (a, b):
                await env.subscribe(CDS)
                await env.recv_ack()
                await env.subscribe(LDS)
                await env.recv_ack()
            # each proxy's own CDS: remembered without its bytes; the shared LDS: encoded once, kept
            kept = sorted((key[2], bool(data)) for key, (_, _, data) in server._responses.items())
            assert kept == sorted([(CDS, False), (CDS, False), (LDS, True)])
