from __future__ import annotations

import pytest

from isthmus.model import hosts as h
from isthmus.model.visibility import is_visible, normalize


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("foo.com", "foo.com", True),
        ("foo.com", "bar.com", False),
        ("*.com", "foo.com", True),
        ("bar.com", "*.com", True),
        ("*.foo.com", "foo.com", False),
        ("*", "foo.com", True),
        ("*", "*.com", True),
        ("*.bar.com", "*.com", True),
    ],
)
def test_matches_follows_istio(a: str, b: str, expected: bool) -> None:
    assert h.matches(a, b) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("foo.com", "*.com", True),
        ("*.com", "foo.com", False),
        ("*.foo.com", "*.com", True),
        ("*.com", "*.foo.com", False),
        ("foo.com", "foo.com", True),
    ],
)
def test_subset_of_is_one_directional(a: str, b: str, expected: bool) -> None:
    assert h.subset_of(a, b) is expected


def test_most_specific_match_prefers_exact_then_longest_wildcard() -> None:
    cands = ["*", "*.svc.cluster.local", "*.default.svc.cluster.local", "reviews.default.svc.cluster.local"]
    assert (
        h.most_specific_match("reviews.default.svc.cluster.local", cands)
        == "reviews.default.svc.cluster.local"
    )
    assert h.most_specific_match("ratings.default.svc.cluster.local", cands) == "*.default.svc.cluster.local"
    assert h.most_specific_match("x.other.svc.cluster.local", cands) == "*.svc.cluster.local"
    assert h.most_specific_match("example.com", cands) == "*"
    assert h.most_specific_match("example.com", ["*.svc.cluster.local"]) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("reviews", "reviews.ns1.svc.cluster.local"),
        ("reviews.ns2", "reviews.ns2"),
        ("*", "*"),
        ("*.example.com", "*.example.com"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_short_names_resolve_in_the_resource_namespace(host: str, expected: str) -> None:
    assert h.resolve_short_name(host, "ns1") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gw", "ns1/gw"),
        ("other/gw", "other/gw"),
        ("./gw", "ns1/gw"),
        ("gw.other.svc.cluster.local", "other/gw"),
        ("mesh", "mesh"),
    ],
)
def test_gateway_names_resolve_like_istio(name: str, expected: str) -> None:
    assert h.resolve_gateway_name(name, "ns1") == expected


def test_export_to_visibility() -> None:
    default = frozenset({"*"})
    assert is_visible(normalize([], default), "a", "b")
    assert is_visible(normalize(["."], default), "a", "a")
    assert not is_visible(normalize(["."], default), "a", "b")
    assert is_visible(normalize(["b"], default), "a", "b")
    assert not is_visible(normalize(["b"], default), "a", "a")
    assert not is_visible(normalize(["~"], default), "a", "a")
    assert not is_visible(normalize([], frozenset({"."})), "a", "b")
