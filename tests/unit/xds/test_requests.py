"""RequestDecoder: ACKs repeating a long name list are decoded to the same list and set objects, and every
request decodes to exactly what the protobuf parser gives."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from isthmus.xds import typeurls
from isthmus.xds.requests import RequestDecoder

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
