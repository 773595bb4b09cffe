"""Peer resolution over a snapshot, and Istio's canonical service/revision rules."""

from __future__ import annotations

from telemetry_helpers import OUTSIDER_IP, PRODUCTPAGE_IP, REVIEWS, REVIEWS_HOST, REVIEWS_IP, snapshot

from isthmus.telemetry import istio
from isthmus.telemetry.resolver import SnapshotResolver, workload_of_proxy


def test_pods_by_ip() -> None:
    r = SnapshotResolver(snapshot())
    reviews = r.workload_by_ip(REVIEWS_IP)
    assert reviews is not None
    assert (reviews.name, reviews.namespace, reviews.service_account, reviews.has_proxy) == (
        "reviews-v2",
        "default",
        "bookinfo-reviews",
        True,
    )
    assert (reviews.app, reviews.version, reviews.canonical_service, reviews.canonical_revision) == (
        "reviews",
        "v2",
        "reviews",
        "v2",
    )
    assert r.workload_by_ip(PRODUCTPAGE_IP).name == "productpage-v1"  # type: ignore[union-attr]
    legacy = r.workload_by_ip(OUTSIDER_IP)
    assert legacy is not None and legacy.has_proxy is False and legacy.namespace == "legacy"
    assert r.workload_by_ip("10.0.0.1") is None


def test_workload_entries_by_ip() -> None:
    r = SnapshotResolver(
        snapshot(
            """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""
        )
    )
    vm = r.workload_by_ip("10.9.9.9")
    assert vm is not None
    assert (vm.name, vm.namespace, vm.version, vm.service_account, vm.has_proxy) == (
        "vm-ratings",
        "default",
        "v9",
        "ratings-vm",
        True,
    )


def test_services_by_host() -> None:
    r = SnapshotResolver(snapshot())
    svc = r.service_by_host(REVIEWS_HOST)
    assert svc is not None and (svc.name, svc.namespace) == ("reviews", "default")
    se = r.service_by_host("httpbin.org")
    assert se is not None and (se.name, se.namespace) == ("httpbin.org", "default")  # istiod: SE name = host
    assert r.service_by_host("nope.default.svc.cluster.local") is None


def test_inbound_service_by_port() -> None:
    r = SnapshotResolver(snapshot())
    svc = r.inbound_service(REVIEWS, 9080)
    assert svc is not None and svc.host == REVIEWS_HOST
    assert r.inbound_service(REVIEWS, 1234) is None


def test_canonical_labels_follow_istio() -> None:
    assert istio.canonical_service({"service.istio.io/canonical-name": "a", "app": "b"}, "w") == "a"
    assert istio.canonical_service({"app.kubernetes.io/name": "k", "app": "b"}, "w") == "k"
    assert istio.canonical_service({"app": "b"}, "w") == "b"
    assert istio.canonical_service({}, "w") == "w"
    assert istio.canonical_service({}, "") == "unknown"
    assert istio.canonical_revision({"service.istio.io/canonical-revision": "r1", "version": "v"}) == "r1"
    assert istio.canonical_revision({"app.kubernetes.io/version": "k1", "version": "v"}) == "k1"
    assert istio.canonical_revision({"version": "v"}) == "v"
    assert istio.canonical_revision({}) == "latest"


def test_own_side_from_the_node() -> None:
    me = workload_of_proxy(REVIEWS)
    assert (me.name, me.namespace, me.app, me.version) == ("reviews-v2", "default", "reviews", "v2")


def test_principal_namespace() -> None:
    assert istio.namespace_of_principal("spiffe://cluster.local/ns/foo/sa/bar") == "foo"
    assert istio.namespace_of_principal("spiffe://cluster.local/ns/foo") == "foo"
    assert istio.namespace_of_principal("spiffe://cluster.local/x") is None
