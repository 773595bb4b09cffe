from __future__ import annotations

import pytest

from isthmus.security.identity import (
    InvalidIdentity,
    SpiffeId,
    is_spiffe_uri,
    parse_spiffe_id,
    spiffe_id,
    trust_domain_prefix,
)


def test_spiffe_id_has_istio_format() -> None:
    assert spiffe_id("cluster.local", "default", "bookinfo-reviews") == (
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    )


def test_parse_round_trip_and_principal() -> None:
    sid = parse_spiffe_id("spiffe://example.org/ns/prod/sa/web")
    assert sid == SpiffeId("example.org", "prod", "web")
    assert sid.uri == "spiffe://example.org/ns/prod/sa/web"
    assert sid.principal == "example.org/ns/prod/sa/web"
    # AuthorizationPolicy principals (no scheme) parse too.
    assert parse_spiffe_id("cluster.local/ns/default/sa/sleep").service_account == "sleep"


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://cluster.local/ns/default",
        "spiffe://cluster.local/ns/default/sa/",
        "spiffe://cluster.local/sa/x/ns/y",
        "spiffe://Cluster.Local/ns/default/sa/x",
        "spiffe://cluster.local/ns/Default/sa/x",
        "spiffe://cluster.local/ns/default/sa/x/extra",
        "spiffe:///ns/default/sa/x",
    ],
)
def test_invalid_ids_are_rejected(value: str) -> None:
    with pytest.raises(InvalidIdentity):
        parse_spiffe_id(value)
    assert not is_spiffe_uri(value)


def test_invalid_parts_are_rejected() -> None:
    with pytest.raises(InvalidIdentity):
        spiffe_id("cluster.local", "default", "a/b")
    with pytest.raises(InvalidIdentity):
        spiffe_id("cluster local", "default", "x")


def test_trust_domain_prefix() -> None:
    assert trust_domain_prefix() == "spiffe://cluster.local/"
    assert trust_domain_prefix("corp.example") == "spiffe://corp.example/"
    assert is_spiffe_uri("spiffe://cluster.local/ns/a/sa/b")
    assert not is_spiffe_uri("cluster.local/ns/a/sa/b")
