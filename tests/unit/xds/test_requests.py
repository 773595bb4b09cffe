"""RequestDecoder: ACKs repeating a long name list are decoded to the same list and set objects, and every
request decodes to exactly what the protobuf parser gives."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.service.discovery.v3 import discovery_pb2

from isthmus.xds import typeurls
from isthmus.xds.requests import DeltaRequestDecoder, RequestDecoder, SubscriptionSets

EDS = typeurls.ENDPOINT
NAMES = [f"outbound|8080||svc-{i}.ns-{i % 10}.svc.cluster.local" for i in range(1200)]


def _request(
    names: list[str], nonce: str = "", version: str = "", **kw: object
) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(
        version_info=version, resource_names=names, type_url=EDS, response_nonce=nonce, **kw
    )


def _decode(decoder: RequestDecoder, req: discovery_pb2.DiscoveryRequest, data: bytes | None = None):
    got, (listed, names) = decoder.decode(req.SerializeToString() if data is None else data)
    assert got.type_url == req.type_url
    assert got.response_nonce == req.response_nonce
    assert got.version_info == req.version_info
    assert got.error_detail == req.error_detail
    assert listed == list(req.resource_names)
    assert names == frozenset(req.resource_names)
    return listed, names


def test_an_ack_repeating_the_names_gets_the_same_objects() -> None:
    d = RequestDecoder()
    first = _decode(d, _request(NAMES))
    again = _decode(d, _request(NAMES, nonce="7", version="3-abc"))
    assert again[0] is first[0] and again[1] is first[1]
    nack = _request(NAMES, nonce="8", version="3-abc")
    nack.error_detail.message = "rejected"
    assert _decode(d, nack)[1] is first[1]


def test_changed_names_are_parsed_again() -> None:
    d = RequestDecoder()
    first = _decode(d, _request(NAMES))
    more = _decode(d, _request([*NAMES, "outbound|80||new.default.svc.cluster.local"], nonce="2"))
    assert more[1] is not first[1] and len(more[0]) == 1201
    fewer = _decode(d, _request(NAMES[:-1], nonce="3"))
    assert len(fewer[0]) == 1199
    prefix_changed = _decode(d, _request(["x", *NAMES[1:]], nonce="4"))
    assert prefix_changed[0][0] == "x"
    assert _decode(d, _request([], nonce="5")) == ([], frozenset())


def test_names_that_are_not_one_run_are_parsed_in_full() -> None:
    d = RequestDecoder()
    _decode(d, _request(NAMES))
    # The same run, then the type_url, then more names: a valid message in a field order Envoy does not use.
    run_and_rest = _request(NAMES, nonce="2").SerializeToString()
    tail = discovery_pb2.DiscoveryRequest(resource_names=["late"]).SerializeToString()
    listed, _ = d.decode(run_and_rest + tail)[1]
    assert listed == [*NAMES, "late"]


def test_short_lists_and_the_node_field() -> None:
    d = RequestDecoder()
    req = _request(["a", "b"], version="1")
    req.node.id = "sidecar~127.0.0.2~x.ns~ns.svc.cluster.local"
    _decode(d, req)
    req = _request(NAMES, version="1")
    req.node.id = "sidecar~127.0.0.2~x.ns~ns.svc.cluster.local"
    first = _decode(d, req)
    assert _decode(d, _request(NAMES, nonce="1", version="2"))[1] is first[1]


def test_sotw_streams_sending_the_same_names_share_the_list_and_set() -> None:
    shared = SubscriptionSets()
    a, b, alone = RequestDecoder(shared), RequestDecoder(shared), RequestDecoder()
    first_a, first_b, first_alone = (_decode(d, _request(NAMES)) for d in (a, b, alone))
    assert first_a[0] is first_b[0] and first_a[1] is first_b[1]
    assert first_alone[1] is not first_a[1]
    # Each stream still recognizes its ACKs by their bytes, and a changed list is its own again.
    assert _decode(b, _request(NAMES, nonce="1"))[1] is first_a[1]
    changed = _decode(a, _request([*NAMES, "new"], nonce="2"))
    assert changed[1] == {*NAMES, "new"} and _decode(b, _request(NAMES, nonce="3"))[1] is first_a[1]


def _delta(type_url: str, subscribe: Sequence[str] = (), unsubscribe: Sequence[str] = ()) -> bytes:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url, resource_names_subscribe=subscribe, resource_names_unsubscribe=unsubscribe
    ).SerializeToString()


def test_delta_streams_making_the_same_subscription_changes_share_the_sets() -> None:
    eds = typeurls.ENDPOINT
    shared = SubscriptionSets()
    a, b, alone = DeltaRequestDecoder(shared), DeltaRequestDecoder(shared), DeltaRequestDecoder()
    first = [f"c{i}" for i in range(1200)]
    steps = [
        _delta(eds, first),
        _delta(eds, ["new"]),
        _delta(eds, [], ["c7"]),
        _delta(typeurls.CLUSTER),  # a wildcard subscription
    ]
    for data in steps:
        (_, got_a), (_, got_b), (_, got_alone) = a.decode(data), b.decode(data), alone.decode(data)
        assert got_a is got_b  # built once, shared
        assert got_a[1] == got_alone[1] and got_a[1] is not got_alone[1]
        assert sorted(got_a[0]) == sorted(got_a[1])
    assert a.decode(_delta(eds))[1][1] == {*first, "new"} - {"c7"}  # an ACK: the set held
    assert a.decode(_delta(typeurls.CLUSTER))[1][1] == {"*"}
    # Another change from the same set is another set; the shared one is not touched.
    held = b.decode(_delta(eds))[1]
    other = a.decode(_delta(eds, ["other"]))[1]
    assert other[1] == held[1] | {"other"} and b.decode(_delta(eds))[1] is held


def test_subscription_sets_stay_right_when_the_bound_clears_them() -> None:
    shared = SubscriptionSets(limit=2)
    decoders = [DeltaRequestDecoder(shared) for _ in range(3)]
    for i, d in enumerate(decoders):
        d.decode(_delta(typeurls.ENDPOINT, [f"x{i}"]))
        d.decode(_delta(typeurls.ENDPOINT, ["y"]))
    assert [d.decode(_delta(typeurls.ENDPOINT))[1][1] for d in decoders] == [
        {"x0", "y"},
        {"x1", "y"},
        {"x2", "y"},
    ]
