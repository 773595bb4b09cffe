"""istiod's ADS / delta / debounce protocol tests, ported to Isthmus's xDS server (real gRPC streams).

Sources (istio/istio): pilot/pkg/xds/ads_test.go, delta_test.go, discovery_test.go (TestDebounce),
pkg/xds/server_test.go (TestShouldRespond, the SotW ACK/NACK rules; formerly in discovery_test.go),
pilot/pkg/xds/delta_utils_test.go (TestShouldRespondDelta), pilot/pkg/xds/pushqueue_test.go.
istiod's fake server answers with its generators; here a `FakeGenerator` serves fixed snapshots, so a
"push" is `server.update(snapshot, PushRequest)` with content that changed (istiod's `Forced` pushes of
unchanged config send nothing in Isthmus, by design: DESIGN §6).

Inventory (case -> where it is covered; "here" = this module):
- ads_test.go TestAdsReconnectAfterRestart, TestAdsReconnectRequests, TestAdsUnsubscribe,
  TestAdsReconnect, TestAdsBadId, TestVersionNonce, TestAdsClusterUpdate, TestEnvoyRDSProtocolError,
  TestEnvoyRDSUpdatedRouteRequest: here. TestAdsUpdate: test_xds_server.py
  (test_eds_only_push_reaches_only_watchers). TestAdsPushScoping: test_istio_xds_parity.py (push scoping
  through the control plane). TestEdsCache: istiod's EDS cache internals; the observable part (endpoint
  and DestinationRule changes reach EDS) is in test_istio_xds_parity.py
  test_endpoint_changes_reach_every_proxy.
  TestStatusEvents/TestInternalEvents/TestAgent (istiod event/agent generators), TestPushQueueLeak (Go
  GC), TestEnableTrailingDotComputation (gRPC-client metadata): not applicable.
- TestShouldRespond (SotW): every case here (test_should_respond); "ack forced" (AlwaysRespond) is the
  warming case of TestAdsReconnectRequests.
- TestShouldRespondDelta: here (test_should_respond_delta), except "ack with same resources" (left
  alone, see below).
- delta_test.go TestDeltaAdsClusterUpdate, TestDeltaCDSReconnect, TestDeltaReconnectRequests: here.
  TestDeltaUnsub: left alone (below). TestDeltaAds, TestDeltaCDS, TestDeltaEDS: test_xds_delta.py
  (test_wildcard_cds_first_response_and_empty_first_responses,
  test_wildcard_update_sends_only_changes_and_removals, test_endpoint_only_push_sends_only_the_changed_cla,
  test_a_deleted_services_endpoints_come_back_removed).
  TestDeltaWDS: not applicable (ambient address type).
- discovery_test.go TestDebounce: here, on `Debouncer`, except "partial pushes are not debounced" and
  "partial pushes immediately" (istiod with PILOT_ENABLE_EDS_DEBOUNCE=false; Isthmus behaves as istiod's
  default, EDS debounced and merged: tested here instead). TestSendPushesManyPushes/SinglePush: istiod's
  push queue workers; every connection gets its push (test_xds_server.py). pushqueue_test.go
  TestProxyQueue "should merge model.PushRequest": here (`Push.merge`); its other cases (dequeue order,
  blocking, MarkDone) are istiod's queue internals, each Isthmus connection has one merged pending push.
- NACK: keeps the last good config, not resent, status reports it: test_xds_server.py
  test_nack_is_recorded_and_not_resent, test_xds_delta.py
  test_nack_is_recorded_and_the_same_content_not_resent.

Disagreements fixed in Isthmus (server.py, typeurls.py):
- A SotW EDS/RDS/SDS/ECDS request naming no resource was a wildcard subscription (everything sent, and
  every later push); istiod (shouldUnsubscribe, IsWildcardTypeURL) treats it as subscribing to nothing:
  no response (Envoy sends one on reconnect for a type whose watches are all gone).
- Envoy reconnecting sends EDS before CDS (envoy#13009); a cluster rebuilt by the CDS answer waits for
  endpoints Envoy does not ask for again. istiod answers the next EDS request anyway (AlwaysRespond, SotW)
  or pushes EDS right after CDS (forceEDSPush, delta); Isthmus now sends the watched EDS again after a
  new CDS subscription when EDS was already answered on the stream.

Left alone: TestShouldRespondDelta "ack with same resources" (istiod ignores a subscribe of names already
subscribed; Isthmus answers it, test_xds_delta.py test_subscribing_again_to_a_held_resource_resends_it:
Envoy's delta client subscribes a name again when it removed and re-added it between two requests, the
server never seeing the removal, and may have dropped its copy). TestDeltaUnsub: under a wildcard CDS,
unsubscribing a name gets no response from istiod; Isthmus answers it (as removed when it does not
exist), because Envoy keeps such a name "ambiguous" until the server says whether the wildcard still
covers it (test_xds_delta.py test_unsubscribing_a_name_also_covered_by_the_wildcard_answers_it).
istiod clears a type's LastError on the next ACK; Isthmus's status keeps `last_nack` as history while
the sync state returns to SYNCED.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from delta_fakes import FakeDeltaEnvoy, names
from test_xds_server import FULL, base, status_of, wait_for
from xds_fakes import (
    CDS,
    EDS,
    LDS,
    RDS,
    FakeEnvoy,
    FakeGenerator,
    cla,
    cluster,
    metric,
    names_of,
    node_id,
    route,
    run,
    running_server,
    snap,
)

from isthmus.xds.push_queue import Debouncer, Push, PushRequest
from isthmus.xds.status import NOT_SENT, SYNCED

ROUTE_A = "http.80"
ROUTE_B = "https.443.https.my-gateway.testns"
LOCAL = "outbound|80||local.default.svc.cluster.local"
HELLO = "outbound|80||hello.default.svc.cluster.local"


def routes(body: str = "ok") -> dict:
    return {ROUTE_A: route(ROUTE_A, body), ROUTE_B: route(ROUTE_B, body)}


def eds_snap(version: int, port: int = 8001):
    return base(version, CDS={LOCAL: cluster(LOCAL), HELLO: cluster(HELLO)},
                EDS={LOCAL: cla(LOCAL, port), HELLO: cla(HELLO, port + 1)})  # fmt: skip


def snapshot_version(version_info: str) -> int:
    return int(version_info.split("-", 1)[0])


# ------------------------------------------------------------------ ads_test.go


@run()
async def test_ads_reconnect_after_restart():
    """TestAdsReconnectAfterRestart: a new stream's first EDS request carries the old stream's nonce and
    version; the server has no state for it and answers in full."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(EDS, ["fake-cluster"])
            res = await env.recv_ack()
            assert names_of(res) == ["fake-cluster"]
        await wait_for(lambda: not server.status())
        async with FakeEnvoy(server.port) as env:
            await env.send(EDS, ["fake-cluster"], nonce=res.nonce, version=res.version_info)
            again = await env.recv_ack()
            assert again.type_url == EDS and names_of(again) == ["fake-cluster"]
            await wait_for(lambda: status_of(server).types["EDS"]["sync"] == SYNCED)


@run()
async def test_ads_reconnect_requests():
    """TestAdsReconnectRequests: Envoy reconnecting sends EDS (with a nonce of the old stream) before CDS.
    Both are answered, and after the CDS answer the endpoints come again so that rebuilt clusters can
    finish warming (istiod: AlwaysRespond on the next EDS request; envoy#13009)."""
    gen = FakeGenerator()
    async with running_server(gen) as server:
        one = snap(1, CDS={"my-resource": cluster("my-resource")}, EDS={"my-resource": cla("my-resource", 1)})
        server.update(one, FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(CDS)
            await env.recv_ack()
            await env.subscribe(EDS, ["my-resource"])
            eres = await env.recv_ack()
            # a push changing both gets a response for both
            two = snap(2, CDS={"my-resource": cluster("my-resource", 2)},
                       EDS={"my-resource": cla("my-resource", 2)})  # fmt: skip
            server.update(two, FULL)
            assert [(await env.recv_ack()).type_url for _ in range(2)] == [CDS, EDS]
        await wait_for(lambda: not server.status())

        async with FakeEnvoy(server.port) as env:
            await env.send(EDS, ["my-resource"], nonce=eres.nonce)  # not an ACK of anything here
            eres3 = await env.recv()
            assert eres3.type_url == EDS and names_of(eres3) == ["my-resource"]
            await env.send(CDS, nonce=eres.nonce)
            cds = await env.recv_ack()
            assert cds.type_url == CDS and names_of(cds) == ["my-resource"]
            warm = await env.recv_ack()
            assert warm.type_url == EDS and names_of(warm) == ["my-resource"]
            assert warm.nonce != eres3.nonce
            # the late ACK of eres3 is stale now: nothing more
            await env.send(EDS, ["my-resource"], nonce=eres3.nonce, version=eres3.version_info)
            await env.expect_nothing(0.2)
            await wait_for(lambda: status_of(server).types["EDS"]["sync"] == SYNCED)

        # a first connection asks CDS before EDS: no extra EDS response
        async with FakeEnvoy(server.port, node_id("fresh")) as env:
            await env.subscribe(CDS)
            await env.recv_ack()
            await env.subscribe(EDS, ["my-resource"])
            await env.recv_ack()
            await env.expect_nothing(0.2)


@run()
async def test_ads_unsubscribe():
    """TestAdsUnsubscribe: an EDS request naming nothing (with the last nonce) unsubscribes; no response."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(EDS, ["fake-cluster"])
            res = await env.recv_ack()
            await env.send(EDS, [], nonce=res.nonce, version=res.version_info)
            await env.expect_nothing()
            await wait_for(lambda: status_of(server).types["EDS"]["watched"] == 0)
            # pushes send it nothing, and it counts as current
            await env.subscribe(CDS)
            await env.recv_ack()
            await env.subscribe(LDS)
            await env.recv_ack()
            server.update(
                base(2, EDS={"c1": cla("c1", 9), "c2": cla("c2", 9), "fake-cluster": cla("x", 1)}), FULL
            )
            assert await server.wait_synced("2", timeout=5)
            await env.expect_nothing(0.2)


@run()
async def test_ads_reconnect_overlapping_streams():
    """TestAdsReconnect: Envoy restarts and connects again before its old stream closes; once the old
    one is gone a push still reaches the remaining stream."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        old = FakeEnvoy(server.port)
        await old.__aenter__()
        await old.subscribe(CDS)
        await old.recv_ack()
        async with FakeEnvoy(server.port) as new:
            await new.subscribe(CDS)
            await new.recv_ack()
            await wait_for(lambda: len(server.status()) == 2)
            await old.close()
            await wait_for(lambda: len(server.status()) == 1)
            assert server.proxy(node_id()) is not None
            server.update(base(2, CDS={"c1": cluster("c1", 7)}), FULL)
            resp = await new.recv_ack()
            assert resp.type_url == CDS and resp.version_info.startswith("2-")


@run()
async def test_ads_bad_id():
    """TestAdsBadId: a stream whose node has an empty id gets no response, the stream is refused."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port, "") as env:
            env.node.id = ""
            await env.subscribe(CDS)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.recv()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.status() == []


@run()
async def test_version_nonce():
    """TestVersionNonce: after a push the version increases and the nonce changes."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(CDS)
            resp1 = await env.recv_ack()
            server.update(base(2, CDS={"c1": cluster("c1", 3)}), FULL)
            resp2 = await env.recv_ack()
            assert snapshot_version(resp1.version_info) < snapshot_version(resp2.version_info)
            assert resp1.nonce != resp2.nonce


@run()
async def test_ads_cluster_update():
    """TestAdsClusterUpdate: EDS for one cluster, then (with version and nonce) for another instead: the
    response carries only the newly named cluster."""
    async with running_server(FakeGenerator()) as server:
        server.update(eds_snap(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            version = nonce = ""
            for name in (LOCAL, HELLO):
                await env.send(EDS, [name], nonce=nonce, version=version)
                res = await env.recv_ack()
                version, nonce = res.version_info, res.nonce
                assert res.type_url == EDS and names_of(res) == [name]


@run()
async def test_envoy_rds_protocol_error():
    """TestEnvoyRDSProtocolError: RDS unsubscribed (no names) gets no response; naming routes again (with
    the last nonce) is answered with them."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1, RDS=routes()), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.subscribe(RDS, [ROUTE_A])
            await env.recv_ack()
            server.update(base(2, RDS=routes("v2")), FULL)
            res = await env.recv_ack()
            assert names_of(res) == [ROUTE_A]
            await env.send(RDS, [], nonce=res.nonce, version=res.version_info)
            await env.expect_nothing()
            await env.send(RDS, [ROUTE_A, ROUTE_B], nonce=res.nonce, version=res.version_info)
            again = await env.recv_ack()
            assert names_of(again) == sorted([ROUTE_A, ROUTE_B])


@run()
async def test_envoy_rds_updated_route_request():
    """TestEnvoyRDSUpdatedRouteRequest: requests without a nonce each start the subscription over and
    are answered with every route named."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1, RDS=routes()), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.send(RDS, [ROUTE_A])
            assert names_of(await env.recv_ack()) == [ROUTE_A]
            server.update(base(2, RDS=routes("v2")), FULL)
            assert names_of(await env.recv()) == [ROUTE_A]
            for asked in ([ROUTE_B], [ROUTE_A, ROUTE_B], [ROUTE_A]):
                await env.send(RDS, asked)
                assert names_of(await env.recv_ack()) == sorted(asked), asked


# ------------------------------------------------------------------ TestShouldRespond (SotW)

# (name, watched names before, request names, nonce: "last" | "stale" | "", error, expect a response)
SHOULD_RESPOND = [
    ("initial request", None, [], "", False, True),
    ("ack", [], [], "last", False, False),
    ("nack", [], [], "last", True, False),
    ("stale nonce", [], [], "stale", False, False),
    ("reconnect", None, [], "stale", False, True),
    ("resources change", ["c1"], ["c1", "c2"], "last", False, True),
    ("ack with same resources", ["c2", "c1"], ["c1", "c2"], "last", False, False),
    ("unsubscribe EDS", ["c2", "c1"], [], "last", False, False),
    ("unsubscribe one EDS name", ["c2", "c1"], ["c1"], "last", False, False),
]


@pytest.mark.parametrize(
    "before,request_names,nonce,error,responds",
    [c[1:] for c in SHOULD_RESPOND],
    ids=[c[0] for c in SHOULD_RESPOND],
)
@run()
async def test_should_respond(before, request_names, nonce, error, responds):
    """pkg/xds/server_test.go TestShouldRespond, on a real stream: CDS for the cases without names (a
    wildcard type), EDS for the others. `before` None: the stream has no state for the type yet."""
    type_url = EDS if (before or request_names) else CDS
    gen = FakeGenerator()
    async with running_server(gen) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            last = None
            if before is not None:
                await env.send(type_url, before)
                last = await env.recv_ack()
            else:
                await env.subscribe(LDS)  # the stream exists, the type does not
                await env.recv_ack()
            sent = {"last": last.nonce if last else "", "stale": "no-such-nonce", "": ""}[nonce]
            await env.send(type_url, request_names, nonce=sent, error="rejected" if error else None)
            if responds:
                resp = await env.recv_ack()
                assert resp.type_url == type_url
                if before:  # only what was added
                    assert names_of(resp) == sorted(set(request_names) - set(before))
            else:
                await env.expect_nothing(0.2)
            short = "EDS" if type_url == EDS else "CDS"
            st = status_of(server).types[short]
            if error:
                await wait_for(lambda: status_of(server).types[short]["last_nack"] is not None)
            elif responds or nonce == "last":
                await wait_for(lambda: status_of(server).types[short]["sync"] == SYNCED)
            else:
                assert st["acked_nonce"] == (last.nonce if last else None)


@run()
async def test_first_named_request_without_names_is_not_a_wildcard():
    """shouldUnsubscribe: EDS/RDS (not wildcard types) naming nothing on their first request subscribe
    to nothing: no response, NOT SENT, and later pushes send nothing; CDS naming nothing is a wildcard."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeEnvoy(server.port) as env:
            await env.send(EDS, [])
            await env.send(RDS, [])
            await env.expect_nothing(0.3)
            await wait_for(lambda: {"EDS", "RDS"} <= status_of(server).types.keys())
            st = status_of(server)
            assert st.types["EDS"]["sync"] == NOT_SENT and not st.types["EDS"]["wildcard"]
            assert st.types["RDS"]["sync"] == NOT_SENT and not st.types["RDS"]["wildcard"]
            await env.send(CDS)
            assert names_of(await env.recv_ack()) == ["c1", "c2"]
            await env.send(LDS)
            await env.recv_ack()
            server.update(
                base(2, EDS={"c1": cla("c1", 5), "c2": cla("c2", 6)}, RDS={"80": route("80", "v2")}), FULL
            )
            assert await server.wait_synced("2", timeout=5)
            await env.expect_nothing(0.2)
            # naming resources later subscribes to them
            await env.send(EDS, ["c1"])
            assert names_of(await env.recv_ack()) == ["c1"]


# ------------------------------------------------------------------ delta_test.go


@run()
async def test_delta_ads_cluster_update():
    """TestDeltaAdsClusterUpdate: each subscription is answered with only the name subscribed;
    unsubscribing gets no response."""
    async with running_server(FakeGenerator()) as server:
        c81 = "outbound|81||local.default.svc.cluster.local"
        server.update(snap(1, CDS={}, EDS={LOCAL: cla(LOCAL, 1), c81: cla(c81, 2)}), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            nonce = ""
            for name in (LOCAL, c81):
                await env.send(EDS, subscribe=[name], nonce=nonce)
                res = await env.recv_ack(EDS)
                nonce = res.nonce
                assert names(res) == [name] and not res.removed_resources
            await env.send(EDS, unsubscribe=[c81], nonce=nonce)
            await env.expect_nothing()


@run()
async def test_delta_cds_reconnect():
    """TestDeltaCDSReconnect: reconnecting with initial_resource_versions "" (versions not ours) gets
    every existing cluster again and the gone ones removed; later removals come as removals only."""
    gen = FakeGenerator()
    svc1, eds1, eds2 = "outbound|80||test-1.default", "outbound|8080||eds.test", "outbound|8080||eds2.test"
    async with running_server(gen) as server:
        server.update(snap(1, CDS={svc1: cluster(svc1), eds1: cluster(eds1)}), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)
            resp = await env.recv_ack(CDS)
            assert names(resp) == sorted([svc1, eds1]) and not resp.removed_resources
        await wait_for(lambda: not server.status())
        server.update(snap(2, CDS={eds1: cluster(eds1), eds2: cluster(eds2)}), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS, initial_versions={svc1: "", eds1: ""})
            resp = await env.recv_ack(CDS)
            assert names(resp) == sorted([eds1, eds2])
            assert list(resp.removed_resources) == [svc1]
            server.update(snap(3, CDS={eds2: cluster(eds2)}), FULL)
            resp = await env.recv_ack(CDS)
            assert names(resp) == [] and list(resp.removed_resources) == [eds1]
            server.update(snap(4, CDS={}), FULL)
            resp = await env.recv_ack(CDS)
            assert names(resp) == [] and list(resp.removed_resources) == [eds2]


@run()
async def test_delta_reconnect_requests():
    """TestDeltaReconnectRequests: a service removed while Envoy was away; on reconnect EDS comes first,
    then CDS with initial_resource_versions: the removed cluster comes back in removed_resources, the
    other one is sent, and an EDS response follows without an EDS request (istiod forceEDSPush)."""
    update, static = "outbound|2080||adsupdate.example.com", "outbound|2080||adsstatic.example.com"
    async with running_server(FakeGenerator()) as server:
        clusters = {update: cluster(update), static: cluster(static)}
        endpoints = {update: cla(update, 1), static: cla(static, 2)}
        server.update(snap(1, CDS=clusters, EDS=endpoints), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(CDS)
            res = await env.recv_ack(CDS)
            assert names(res) == sorted([update, static])
            server.update(
                snap(2, CDS={update: cluster(update, 2), static: cluster(static)}, EDS=endpoints), FULL
            )
            await env.recv_ack(CDS)
        await wait_for(lambda: not server.status())
        server.update(snap(3, CDS={static: cluster(static)}, EDS={static: cla(static, 2)}), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            await env.send(EDS, subscribe=[LOCAL])
            await env.recv_ack(EDS)
            await env.send(CDS, initial_versions={static: "", update: ""})
            res = await env.recv_ack(CDS)
            assert names(res) == [static] and list(res.removed_resources) == [update]
            warm = await env.recv_ack(EDS)
            assert warm.type_url == EDS


# ------------------------------------------------------------------ TestShouldRespondDelta

# (name, subscribe before (None: no state), request kwargs, expect a response)
SHOULD_RESPOND_DELTA = [
    ("initial request", None, {}, True),
    ("ack", ["c1"], {"nonce": "last"}, False),
    ("stale nonce", ["c1"], {"nonce": "stale"}, False),
    ("nack", ["c1"], {"nonce": "last", "error": "Test request NACK"}, False),
    ("reconnect", None, {"nonce": "stale", "initial_versions": {}}, True),
    ("resources subscribe", ["c1"], {"nonce": "last", "subscribe": ["c2"]}, True),
    ("resources unsubscribe", ["c1"], {"nonce": "last", "unsubscribe": ["c1"]}, False),
    ("initial resources", None, {"subscribe": ["c1"], "initial_versions": {"c1": "version1"}}, True),
]


@pytest.mark.parametrize(
    "before,kwargs,responds", [c[1:] for c in SHOULD_RESPOND_DELTA], ids=[c[0] for c in SHOULD_RESPOND_DELTA]
)
@run()
async def test_should_respond_delta(before, kwargs, responds):
    """pilot/pkg/xds/delta_utils_test.go TestShouldRespondDelta, on a real delta stream (EDS). istiod's
    "resources unsubscribe" says respond, but its push then has nothing to send (TestDeltaAdsClusterUpdate
    expects no response): no response is what a client sees."""
    async with running_server(FakeGenerator()) as server:
        server.update(base(1), FULL)
        server.flush()
        async with FakeDeltaEnvoy(server.port) as env:
            last = None
            if before is not None:
                await env.send(EDS, subscribe=before)
                last = await env.recv_ack(EDS)
            else:
                await env.send(CDS)
                await env.recv_ack(CDS)
            kw = dict(kwargs)
            kw["nonce"] = {"last": last.nonce if last else "", "stale": "stale nonce"}.get(
                kw.get("nonce", ""), ""
            )
            await env.send(EDS, **kw)
            if responds:
                resp = await env.recv_ack(EDS)
                assert resp.nonce
            else:
                await env.expect_nothing(0.2)
            if "error" in kw:
                await wait_for(lambda: status_of(server).types["EDS"]["last_nack"] is not None)
                assert metric(server, "pilot_total_xds_rejects_total", type="eds") == 1


# ------------------------------------------------------------------ TestDebounce, TestProxyQueue


class Recorder:
    def __init__(self) -> None:
        self.pushes: list[Push] = []
        self.event = asyncio.Event()

    def __call__(self, push: Push) -> None:
        self.pushes.append(push)
        self.event.set()

    async def wait(self, count: int, timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.pushes) < count:
                self.event.clear()
                await self.event.wait()


AFTER, MAX = 0.05, 0.1  # istiod's test: DebounceAfter 50 ms, debounceMax 100 ms
FULL_REQ = PushRequest(full=True, reason="config")


def eds_req(*clusters: str) -> PushRequest:
    return PushRequest(full=False, eds_only_clusters=frozenset(clusters), reason="endpoints")


async def debouncer() -> tuple[Debouncer, Recorder, asyncio.Task[None]]:
    rec = Recorder()
    d = Debouncer(rec, AFTER, MAX)
    return d, rec, asyncio.create_task(d.run())


@run()
async def test_debounce_full_pushes_wait_for_quiet():
    """TestDebounce "Should debounce full pushes" / "Should send full updates in batches"."""
    d, rec, task = await debouncer()
    try:
        d.add("s1", FULL_REQ)
        await asyncio.sleep(0)
        assert rec.pushes == []  # not pushed right away
        d.add("s2", FULL_REQ)
        await rec.wait(1)
        await asyncio.sleep(AFTER * 2)
        assert len(rec.pushes) == 1
        assert rec.pushes[0].snapshot == "s2" and rec.pushes[0].updates == 2 and rec.pushes[0].request.full
    finally:
        task.cancel()


@run()
async def test_debounce_max_forces_a_push():
    """TestDebounce "Should force a push after DebounceMax": updates every DebounceAfter/2 never leave a
    quiet period; one push covers them once DebounceMax has passed."""
    d, rec, task = await debouncer()
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        for i in range(4):
            d.add(f"s{i}", FULL_REQ)
            await asyncio.sleep(AFTER / 2)
        await rec.wait(1)
        assert len(rec.pushes) == 1 and rec.pushes[0].updates >= 3
        assert rec.pushes[0].dispatched - rec.pushes[0].first_update >= MAX - 0.01
        assert loop.time() - start < 1.0
    finally:
        task.cancel()


@run()
async def test_debounce_pushes_again_after_quiet():
    """TestDebounce "Should push synchronously after debounce": a full update, a quiet period, another:
    two pushes, in order."""
    d, rec, task = await debouncer()
    try:
        d.add("s1", FULL_REQ)
        await rec.wait(1)
        d.add("s2", FULL_REQ)
        await rec.wait(2)
        assert [p.snapshot for p in rec.pushes] == ["s1", "s2"]
    finally:
        task.cancel()


@run()
async def test_debounce_merges_endpoint_updates():
    """istiod's default PILOT_ENABLE_EDS_DEBOUNCE=true (TestDebounce runs with it off): endpoint-only
    updates are debounced too, their clusters united, and a full update makes the merged push full."""
    d, rec, task = await debouncer()
    try:
        for c in ("a", "b", "c", "d", "e"):
            d.add("s", eds_req(c))
        await rec.wait(1)
        assert rec.pushes[0].request == PushRequest(False, frozenset("abcde"), "endpoints")
        d.add("s2", FULL_REQ)
        d.add("s2", FULL_REQ)
        d.add("s3", eds_req("x"))
        d.add("s3", eds_req("y"))
        await rec.wait(2)
        await asyncio.sleep(AFTER * 2)
        assert len(rec.pushes) == 2
        assert rec.pushes[1].request.full and rec.pushes[1].snapshot == "s3"
    finally:
        task.cancel()


def test_push_queue_merges_requests():
    """pushqueue_test.go TestProxyQueue "should merge model.PushRequest": two pushes pending for one
    connection become one, with the first start time and both EDS updates, still not full."""
    first = Push("s1", eds_req("foo"), first_update=10.0, dispatched=10.5)
    second = Push("s2", eds_req("bar"), first_update=11.0, dispatched=11.5)
    merged = first.merge(second)
    assert merged.first_update == 10.0 and merged.dispatched == 10.5
    assert merged.request.eds_only_clusters == {"foo", "bar"} and not merged.request.full
    assert merged.snapshot == "s2" and merged.updates == 2
