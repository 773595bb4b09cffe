"""Protocol tests of the delta (incremental) ADS stream, `DeltaAggregatedResources`, with a real gRPC client."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from delta_fakes import FakeDeltaEnvoy, names, packed_names
from test_xds_server import FULL, base, connect_and_sync, status_of, wait_for, with_c3
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

from isthmus.xds.push_queue import PushRequest
from isthmus.xds.status import STALE, SYNCED

HEX16 = re.compile(r"[0-9a-f]{16}")


async def delta_sync(env: FakeDeltaEnvoy, eds=("c1", "c2"), rds=("80",)) -> None:
    """The usual Envoy start over delta: CDS and LDS wildcard, EDS and RDS by name; ACK everything."""
    await env.send(CDS)
    await env.recv_ack(CDS)
    await env.send(EDS, subscribe=eds)
    await env.recv_ack(EDS)
    await env.send(LDS)
    await env.recv_ack(LDS)
    await env.send(RDS, subscribe=rds)
    await env.recv_ack(RDS)


@contextlib.asynccontextmanager
async def synced_delta(
    gen: FakeGenerator, first: Any = None, eds: tuple[str, ...] = ("c1", "c2")
) -> AsyncIterator[tuple[Any, FakeDeltaEnvoy]]:
    """A server at `first` (default `base(1)`) and a delta client that subscribed to everything and ACKed."""
    async with running_server(gen) as server:
        server.update(first if first is not None else base(1), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await delta_sync(env, eds=eds)
            yield server, env


@run()
async def test_first_delta_request_must_carry_a_valid_node():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeDeltaEnvoy(server.port, with_node=False) as env:
            await env.send(CDS)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.recv()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        async with FakeDeltaEnvoy(server.port, "not-a-proxy-id") as env:
            await env.send(CDS)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.recv()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.status() == []


@run()
async def test_wildcard_cds_first_response_and_empty_first_responses():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        s1 = snap(1, CDS={"c1": cluster("c1"), "c2": cluster("c2", 2)})
        server.update(s1, FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)  # no names: wildcard
            resp = await env.recv(CDS)
            assert names(resp) == ["c1", "c2"]
            assert packed_names(resp) == ["c1", "c2"]
            for r in resp.resources:
                assert HEX16.fullmatch(r.version), r.version
                assert r.resource == s1.resources[CDS][r.name]
            assert re.fullmatch(r"1-[0-9a-f]{16}", resp.system_version_info), resp.system_version_info
            assert resp.nonce
            assert list(resp.removed_resources) == []
            assert env.contents[CDS] == s1.resources[CDS]
            await env.ack(resp)
            # the first request of a type is answered even when there is nothing to send
            await env.send(LDS)
            lds = await env.recv(LDS)
            assert list(lds.resources) == [] and list(lds.removed_resources) == [] and lds.nonce
            await env.send(EDS, subscribe=["unknown-cluster"])
            eds = await env.recv(EDS)
            assert list(eds.resources) == [] and eds.nonce and eds.nonce != lds.nonce
            await env.expect_nothing(0.2)


@run()
async def test_wildcard_update_sends_only_changes_and_removals():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, CDS={"c1": cluster("c1"), "c2": cluster("c2"), "c3": cluster("c3")}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)
            first = await env.recv_ack(CDS)
            assert names(first) == ["c1", "c2", "c3"]
            v1 = dict(env.held[CDS])
            await wait_for(lambda: status_of(server).types["CDS"]["sync"] == SYNCED)
            # c1 changes, c2 is the same (new objects, same content), c3 is deleted
            s2 = snap(2, CDS={"c1": cluster("c1", 5), "c2": cluster("c2")})
            server.update(s2, FULL)
            resp = await env.recv_ack(CDS)
            assert names(resp) == ["c1"]
            assert list(resp.removed_resources) == ["c3"]
            assert resp.system_version_info.startswith("2-")
            assert resp.resources[0].version != v1["c1"]
            assert env.held[CDS].keys() == s2.resources[CDS].keys()
            assert env.held[CDS]["c2"] == v1["c2"]
            assert env.contents[CDS] == s2.resources[CDS]
            await env.expect_nothing(0.2)


@run()
async def test_eds_subscribe_and_unsubscribe_by_name():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        s1 = snap(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)})
        server.update(s1, FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=["c1", "c2"])
            assert names(await env.recv_ack(EDS)) == ["c1", "c2"]  # only what was asked for
            # one more name, in a request acking nothing: just that one, the others are not resent
            await env.send(EDS, subscribe=["c3"])
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c3"] and list(resp.removed_resources) == []
            await env.expect_nothing(0.2)
            await wait_for(lambda: status_of(server).types["EDS"]["watched"] == 3)
            # unsubscribing sends nothing; subscribing again sends it again (the client dropped it)
            await env.send(EDS, unsubscribe=["c1"])
            await env.expect_nothing(0.2)
            await wait_for(lambda: status_of(server).types["EDS"]["watched"] == 2)
            await env.send(EDS, subscribe=["c1"])
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c1"] and list(resp.removed_resources) == []
            assert env.contents[EDS] == s1.resources[EDS]
            await env.expect_nothing(0.2)


@run()
async def test_endpoint_only_push_sends_only_the_changed_cla():
    gen = FakeGenerator()
    async with synced_delta(
        gen, base(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)}), eds=("c1", "c2", "c3")
    ) as (server, env):
        assert await server.wait_synced("1", timeout=5)
        gen.calls.clear()
        # c1 and c3 both differ in the snapshot, but the request names only c1
        s2 = base(2, EDS={"c1": cla("c1", 11), "c2": cla("c2", 2), "c3": cla("c3", 33)})
        server.update(s2, PushRequest(full=False, eds_only_clusters=frozenset({"c1"}), reason="ep"))
        resp = await env.recv_ack(EDS)
        assert names(resp) == ["c1"] and list(resp.removed_resources) == []
        assert resp.system_version_info.startswith("2-")
        assert env.contents[EDS]["c1"] == s2.resources[EDS]["c1"]
        await env.expect_nothing(0.2)
        assert {c[2] for c in gen.calls} == {EDS}
        assert await server.wait_synced("2", timeout=5)
        assert status_of(server).config_version == "2"


@run()
async def test_push_that_changes_nothing_sends_nothing():
    gen = FakeGenerator()
    async with synced_delta(gen) as (server, env):
        assert await server.wait_synced("1", timeout=5)
        # a full push of the same content (new objects)
        server.update(base(2), FULL)
        assert await server.wait_synced("2", timeout=5)
        await env.expect_nothing(0.3)
        # an endpoint push of an unchanged CLA
        server.update(base(3), PushRequest(full=False, eds_only_clusters=frozenset({"c1"}), reason="ep"))
        assert await server.wait_synced("3", timeout=5)
        await env.expect_nothing(0.3)
        assert status_of(server).config_version == "3"


@run()
async def test_nack_is_recorded_and_the_same_content_not_resent():
    gen = FakeGenerator()
    async with synced_delta(gen) as (server, env):
        good = dict(env.held[LDS])
        server.update(base(2, LDS={"l1": listener("l1", 15001, "bad")}), FULL)
        bad = await env.recv(LDS)
        assert names(bad) == ["l1"]
        await env.nack(bad, "listener l1: invalid stat prefix")
        await wait_for(lambda: status_of(server).types["LDS"]["last_nack"] is not None)
        st = status_of(server)
        nack = st.types["LDS"]["last_nack"]
        assert nack["message"] == "listener l1: invalid stat prefix"
        assert nack["nonce"] == bad.nonce and nack["version"] == bad.system_version_info
        assert st.types["LDS"]["sync"] == STALE
        assert st.config_version == "1"
        assert metric(server, "pilot_total_xds_rejects_total", type="lds") == 1
        assert env.held[LDS] == good
        await env.expect_nothing(0.3)  # no resend loop

        # same bad listener, a changed route: only RDS goes
        server.update(base(3, LDS={"l1": listener("l1", 15001, "bad")}, RDS={"80": route("80", "v3")}), FULL)
        rds = await env.recv_ack(RDS)
        assert names(rds) == ["80"] and rds.system_version_info.startswith("3-")
        await env.expect_nothing(0.3)
        assert not await server.wait_synced("3", timeout=0.1)

        # fixed listener: sent, ACKed, SYNCED; the last NACK stays visible
        fixed_l1 = listener("l1", 15001, "fixed")
        server.update(base(4, LDS={"l1": fixed_l1}, RDS={"80": route("80", "v3")}), FULL)
        fixed = await env.recv_ack(LDS)
        assert names(fixed) == ["l1"] and fixed.system_version_info.startswith("4-")
        assert env.contents[LDS] == {"l1": fixed_l1}
        assert await server.wait_synced("4", timeout=5)
        st = status_of(server)
        assert st.types["LDS"]["sync"] == SYNCED
        assert st.types["LDS"]["last_nack"]["nonce"] == bad.nonce


@run()
async def test_reconnect_with_initial_resource_versions():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        s1 = snap(
            1,
            CDS={"c1": cluster("c1"), "c2": cluster("c2"), "c3": cluster("c3")},
            EDS={"c1": cla("c1", 1), "c2": cla("c2", 2), "c3": cla("c3", 3)},
            LDS={"l1": listener("l1", 15001)},
            RDS={"80": route("80")},
        )
        server.update(s1, FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await delta_sync(env, eds=("c1", "c2", "c3"))
            held1 = {t: dict(v) for t, v in env.held.items()}
        await wait_for(lambda: not server.status())

        # while disconnected: c1 changes (cluster and endpoints), c2 stays, c3 is deleted
        s2 = snap(
            2,
            CDS={"c1": cluster("c1", 5), "c2": cluster("c2")},
            EDS={"c1": cla("c1", 11), "c2": cla("c2", 2)},
            LDS={"l1": listener("l1", 15001)},
            RDS={"80": route("80")},
        )
        server.update(s2, FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS, initial_versions=held1[CDS])
            resp = await env.recv_ack(CDS)
            assert names(resp) == ["c1"]
            assert list(resp.removed_resources) == ["c3"]  # claimed, no longer exists
            assert resp.system_version_info.startswith("2-")
            await env.send(
                EDS, subscribe=["c1", "c2"], initial_versions={n: held1[EDS][n] for n in ("c1", "c2")}
            )
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c1"] and list(resp.removed_resources) == []
            # nothing changed: the first response is still sent, empty
            await env.send(LDS, initial_versions=held1[LDS])
            resp = await env.recv_ack(LDS)
            assert names(resp) == [] and list(resp.removed_resources) == [] and resp.nonce
            await env.send(RDS, subscribe=["80"], initial_versions=held1[RDS])
            resp = await env.recv_ack(RDS)
            assert names(resp) == [] and list(resp.removed_resources) == [] and resp.nonce
            await env.expect_nothing(0.2)
            assert await server.wait_synced("2", timeout=5)

            # what the reconnected client holds is what a fresh client gets
            async with FakeDeltaEnvoy(server.port, node_id("fresh")) as fresh:
                await delta_sync(fresh)
                assert fresh.held == env.held
            for t in (CDS, EDS, LDS, RDS):
                assert env.held[t].keys() == s2.resources[t].keys(), t
            assert env.held[CDS]["c2"] == held1[CDS]["c2"]


@run()
async def test_status_after_acks():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)
            cds = await env.recv(CDS)
            st = status_of(server)
            assert st.id == node_id()
            assert st.types["CDS"]["sync"] == STALE
            assert st.types["CDS"]["sent_nonce"] == cds.nonce
            assert st.types["CDS"]["sent_version"] == cds.system_version_info
            assert st.config_version is None
            await env.ack(cds)
            await wait_for(lambda: status_of(server).types["CDS"]["sync"] == SYNCED)
            await env.send(EDS, subscribe=["c1", "c2"])
            await env.recv_ack(EDS)
            await env.send(LDS)
            await env.recv_ack(LDS)
            await env.send(RDS, subscribe=["80"])
            await env.recv_ack(RDS)

            assert await server.wait_synced("1", timeout=5)
            st = status_of(server)
            assert st.config_version == "1"
            assert st.sync == {"CDS": SYNCED, "EDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
            for short, t in (("CDS", CDS), ("EDS", EDS), ("LDS", LDS), ("RDS", RDS)):
                ts = st.types[short]
                assert ts["acked_version"] == ts["sent_version"] == env.last[t].system_version_info, short
                assert ts["acked_nonce"] == ts["sent_nonce"] == env.last[t].nonce, short
                assert ts["synced_version"] == "1", short
                assert ts["last_nack"] is None, short
            assert st.types["CDS"]["wildcard"] and st.types["CDS"]["resources"] == 2
            assert not st.types["EDS"]["wildcard"] and st.types["EDS"]["watched"] == 2
            assert st.types["EDS"]["resources"] == 2
            assert metric(server, "pilot_xds") == 1

            # a route change: RDS alone goes; once ACKed the proxy is current at 2
            server.update(base(2, RDS={"80": route("80", "v2")}), FULL)
            await env.recv_ack(RDS)
            assert await server.wait_synced("2", timeout=5)
            assert status_of(server).config_version == "2"
        await wait_for(lambda: not server.status())
        assert metric(server, "pilot_xds") == 0


@run()
async def test_sotw_and_delta_clients_converge_together():
    """SotW and delta proxies, registered alternately (the order pushes reach them): each gets its own
    encoding of the same content, even where the server shares one response between proxies."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        sotws = [FakeEnvoy(server.port, node_id(f"sotw{i}")) for i in range(2)]
        deltas = [FakeDeltaEnvoy(server.port, node_id(f"delta{i}")) for i in range(2)]
        envs = [sotws[0], deltas[0], sotws[1], deltas[1]]
        for env in envs:
            await env.__aenter__()
        try:
            for env in envs:
                if isinstance(env, FakeEnvoy):
                    await connect_and_sync(env)
                else:
                    await delta_sync(env)
            assert await server.wait_synced("1", timeout=5)
            s2 = base(
                2, EDS={"c1": cla("c1", 9001), "c2": cla("c2", 8002)}, LDS={"l1": listener("l1", 15002)}
            )
            server.update(s2, FULL)
            for sotw in sotws:
                got = [await sotw.recv_ack(), await sotw.recv_ack()]
                assert [(r.type_url, names_of(r), r.version_info[:2]) for r in got] == [
                    (EDS, ["c1"], "2-"),
                    (LDS, ["l1"], "2-"),
                ]
            for delta in deltas:
                assert names(await delta.recv_ack(EDS)) == ["c1"]
                assert names(await delta.recv_ack(LDS)) == ["l1"]
                assert delta.contents[EDS] == s2.resources[EDS]
                assert delta.contents[LDS] == s2.resources[LDS]
            assert await server.wait_synced("2", timeout=5)
            assert {s.config_version for s in server.status()} == {"2"} and len(server.status()) == 4
            # status and the API say which protocol each proxy speaks
            protocols = {st.id: st.to_dict()["protocol"] for st in server.status()}
            assert protocols == {
                **{node_id(f"sotw{i}"): "sotw" for i in range(2)},
                **{node_id(f"delta{i}"): "delta" for i in range(2)},
            }
            for env in envs:
                await env.expect_nothing(0.1)
        finally:
            for env in envs:
                await env.close()


@run()
async def test_generator_failure_is_isolated_and_retried():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        async with (
            FakeDeltaEnvoy(server.port, node_id("a")) as a,
            FakeDeltaEnvoy(server.port, node_id("b")) as b,
        ):
            await delta_sync(a)
            await delta_sync(b)
            gen.fail.add((node_id("a"), LDS))
            server.update(base(2, LDS={"l1": listener("l1", 2)}, RDS={"80": route("80", "v2")}), FULL)
            assert names(await b.recv_ack(LDS)) == ["l1"]
            assert names(await b.recv_ack(RDS)) == ["80"]
            # a: LDS failed (nothing sent), RDS still went out; its stream lives on
            assert names(await a.recv_ack(RDS)) == ["80"]
            await a.expect_nothing(0.2)
            assert metric(server, "pilot_total_xds_internal_errors_total", type="lds") == 1
            assert await server.wait_synced("2", {node_id("b")}, timeout=5)
            assert not await server.wait_synced("2", {node_id("a")}, timeout=0.1)
            sa = status_of(server, node_id("a"))
            assert sa.types["LDS"]["sync"] == SYNCED and sa.types["LDS"]["sent_version"].startswith("1-")
            assert sa.config_version == "1"
            # the generator recovers: the next push (even an endpoint-only one) retries the failed type
            gen.fail.clear()
            server.update(
                base(3, LDS={"l1": listener("l1", 2)}, RDS={"80": route("80", "v2")}),
                PushRequest(False, frozenset({"zzz"})),
            )
            resp = await a.recv_ack(LDS)
            assert names(resp) == ["l1"] and resp.system_version_info.startswith("3-")
            assert a.contents[LDS] == b.contents[LDS]
            assert await server.wait_synced("3", timeout=5)
            await b.expect_nothing(0.1)


@run()
async def test_new_cluster_endpoints_come_on_subscription_before_listeners():
    """Make-before-break over delta: a CDS push adding a cluster, Envoy subscribes to its endpoints, gets
    just those, and only then the listener change; nothing waits for the 3 s subscription timeout."""
    gen = FakeGenerator()
    async with synced_delta(gen) as (server, env):
        clusters, endpoints = with_c3()
        server.update(base(2, CDS=clusters, EDS=endpoints, LDS={"l1": listener("l1", 15002)}), FULL)
        cds = await env.recv_ack(CDS)
        assert names(cds) == ["c3"] and list(cds.removed_resources) == []
        await env.send(EDS, subscribe=["c3"])
        assert names(await env.recv_ack(EDS)) == ["c3"]
        assert names(await env.recv_ack(LDS)) == ["l1"]
        await env.expect_nothing(0.2)
        assert await server.wait_synced("2", timeout=2)
        assert env.contents[EDS] == endpoints and env.contents[CDS] == clusters


# Envoy's documented delta protocol beyond the basics ("xDS REST and gRPC protocol", Incremental xDS).


@run()
async def test_explicit_star_is_a_wildcard_and_unsubscribing_it_ends_it():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, CDS={"c1": cluster("c1"), "c2": cluster("c2")}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS, subscribe=["*"])
            assert names(await env.recv_ack(CDS)) == ["c1", "c2"]
            await wait_for(lambda: status_of(server).types["CDS"]["wildcard"])
            await env.send(CDS, unsubscribe=["*"])  # subscribed to nothing now
            await wait_for(lambda: not status_of(server).types["CDS"]["wildcard"])
            try:  # a response is not required; if one comes, it adds nothing
                resp = await env.recv(CDS, timeout=0.3)
            except TimeoutError:
                pass
            else:
                assert names(resp) == []
                await env.ack(resp)
            server.update(snap(2, CDS={"c1": cluster("c1", 5), "c2": cluster("c2", 5)}), FULL)
            server.flush()
            await env.expect_nothing(0.3)


@run()
async def test_subscription_change_with_a_stale_nonce_is_honored():
    """ "the server must honor changes to the subscription state even if the nonce is stale"."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2)}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=["c1"])
            first = await env.recv_ack(EDS)
            server.update(snap(2, EDS={"c1": cla("c1", 11), "c2": cla("c2", 2)}), FULL)
            second = await env.recv(EDS)
            assert names(second) == ["c1"] and second.nonce != first.nonce
            await env.send(EDS, subscribe=["c2"], nonce=first.nonce)  # stale: ACKs nothing
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c2"]
            assert metric(server, "pilot_xds_expired_nonce_total", type="eds") == 1
            await wait_for(lambda: status_of(server).types["EDS"]["sync"] == SYNCED)
            assert env.contents[EDS] == {"c1": cla("c1", 11), "c2": cla("c2", 2)}


@run()
async def test_named_resource_deleted_then_recreated():
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2)}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=["c1", "c2"])
            await env.recv_ack(EDS)
            server.update(snap(2, EDS={"c1": cla("c1", 1)}), FULL)
            resp = await env.recv_ack(EDS)
            assert names(resp) == [] and list(resp.removed_resources) == ["c2"]
            assert env.held[EDS].keys() == {"c1"}
            server.update(snap(3, EDS={"c1": cla("c1", 1), "c2": cla("c2", 3)}), FULL)
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c2"] and list(resp.removed_resources) == []
            assert env.contents[EDS] == {"c1": cla("c1", 1), "c2": cla("c2", 3)}


@run()
async def test_subscribing_to_a_missing_resource_answers_removed():
    """ "When a resource subscribed to by a client does not exist, the server will send a
    DeltaDiscoveryResponse message that contains that resource's name in the removed_resources field"."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, EDS={"c1": cla("c1", 1)}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=["c1", "nope"])
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c1"] and list(resp.removed_resources) == ["nope"]
            await env.send(EDS, subscribe=["nope2"])
            resp = await env.recv_ack(EDS)
            assert names(resp) == [] and list(resp.removed_resources) == ["nope2"]


@run()
async def test_subscribing_again_to_a_held_resource_resends_it():
    """ "A resource_names_subscribe field may contain resource names that the server believes the client
    is already subscribed to, and furthermore has the most recent versions of. However, the server *must*
    still provide those resources in the response"."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, EDS={"c1": cla("c1", 1), "c2": cla("c2", 2)}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=["c1", "c2"])
            await env.recv_ack(EDS)
            await env.send(EDS, subscribe=["c1"])
            resp = await env.recv_ack(EDS)
            assert names(resp) == ["c1"]


@run()
async def test_unsubscribing_a_name_also_covered_by_the_wildcard_answers_it():
    """Wildcard plus a specific name, then unsubscribing the name: "the server must send a response that
    includes the specific resource in either the removed_resources field (if it is not included in the
    wildcard) or in the resources field (if it *is* included in the wildcard)"."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(snap(1, CDS={"c1": cluster("c1"), "c2": cluster("c2")}), FULL)
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)
            await env.recv_ack(CDS)
            await env.send(CDS, subscribe=["c1", "other"])
            with contextlib.suppress(TimeoutError):  # answering this is the previous test's business
                await env.recv_ack(CDS, timeout=0.3)
            await env.send(CDS, unsubscribe=["c1", "other"])
            resp = await env.recv_ack(CDS)
            assert names(resp) == ["c1"] and list(resp.removed_resources) == ["other"]


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


@run()
async def test_a_deleted_services_endpoints_come_back_removed():
    """As istiod does (its TestDeltaEDS): once a service is gone, a delta client watching its endpoints
    gets the name in removed_resources, not an empty assignment; a SotW client gets an empty assignment
    (it cannot be told otherwise, and must not wait initial_fetch_timeout). Real generator and control
    plane."""
    from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.mesh.control_plane import ControlPlane
    from isthmus.registry.types import Pod

    store = Store()
    store.apply(loader.load_text(SERVICE, "svc.yaml"), "test")
    store.upsert_pod(Pod("reviews-0", "default", "127.7.0.2", {"app": "reviews"}, workload="reviews", service_account="reviews", app_ports={9080: 40001}))  # fmt: skip
    cp = ControlPlane(store)
    port = await cp.start("127.0.0.1", 0)
    name = "outbound|9080||reviews.default.svc.cluster.local"
    try:
        async with FakeDeltaEnvoy(port, node_id(1)) as delta, FakeEnvoy(port, node_id(2)) as sotw:
            await delta.send(EDS, subscribe=[name])
            resp = await delta.recv_ack(EDS)
            assert names(resp) == [name] and not resp.removed_resources
            await sotw.subscribe(EDS, [name])
            assert names_of(await sotw.recv_ack()) == [name]

            store.delete([("Service", "default", "reviews")])
            resp = await delta.recv_ack(EDS)
            assert names(resp) == [] and list(resp.removed_resources) == [name]
            got = await sotw.recv_ack()
            (la,) = [ClusterLoadAssignment.FromString(a.value) for a in got.resources]
            assert la.cluster_name == name and not la.endpoints
            await delta.expect_nothing(0.2)  # told once
    finally:
        await cp.stop()


VIRTUAL_SERVICE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: 90}, {destination: {host: reviews, subset: v2}, weight: 10}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  http:
  - route: [{destination: {host: reviews}}]
"""


@run()
async def test_virtual_service_changes_reach_a_delta_sidecar_as_the_virtual_hosts_that_changed():
    """A delta sidecar's table names VHDS; its virtual hosts come as VirtualHost resources (Envoy's
    first VHDS request names nothing), and a VirtualService change sends the virtual hosts it changed,
    added or removed, and nothing of the table itself. A SotW sidecar gets the whole table inline.
    Real generator and control plane."""
    from envoy.config.route.v3 import route_components_pb2, route_pb2

    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.mesh.control_plane import ControlPlane
    from isthmus.xds import typeurls

    vhds = typeurls.VIRTUAL_HOST
    reviews = "http_proxy/reviews.default.svc.cluster.local:9080"
    external = "http_proxy/api.example.com:80"
    store = Store()
    store.apply(loader.load_text(SERVICE, "svc.yaml"), "test")
    cp = ControlPlane(store)
    port = await cp.start("127.0.0.1", 0)
    try:
        async with FakeDeltaEnvoy(port, node_id(1)) as delta, FakeEnvoy(port, node_id(2)) as sotw:
            await delta.send(RDS, subscribe=["http_proxy"])
            (table,) = (await delta.recv_ack(RDS)).resources
            rc = route_pb2.RouteConfiguration.FromString(table.resource.value)
            assert rc.HasField("vhds") and not rc.virtual_hosts
            await delta.send(vhds)
            got = names(await delta.recv_ack(vhds))
            assert reviews in got and "http_proxy/allow_any" in got and external not in got
            await sotw.subscribe(RDS, ["http_proxy"])
            (inline,) = (await sotw.recv_ack()).resources
            inline_rc = route_pb2.RouteConfiguration.FromString(inline.value)
            assert {f"http_proxy/{vh.name}" for vh in inline_rc.virtual_hosts} == set(got)

            store.apply(loader.load_text(VIRTUAL_SERVICE, "vs.yaml"), "test")
            resp = await delta.recv_ack(vhds)
            assert names(resp) == sorted([reviews, external]) and not resp.removed_resources
            vh = route_components_pb2.VirtualHost.FromString(delta.contents[vhds][reviews].value)
            assert vh.name == reviews and len(vh.routes[-1].route.weighted_clusters.clusters) == 2
            assert len((await sotw.recv_ack()).resources) == 1  # SotW: the whole table again
            await delta.expect_nothing(0.3)  # no RDS, no other virtual host

            store.delete([("VirtualService", "default", "external")])
            resp = await delta.recv_ack(vhds)
            assert names(resp) == [] and list(resp.removed_resources) == [external]
            assert set(delta.held[vhds]) == set(got)
    finally:
        await cp.stop()
