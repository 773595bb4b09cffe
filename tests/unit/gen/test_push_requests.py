"""What the control plane pushes for endpoint-only changes, and what it reuses from the snapshot before."""

from __future__ import annotations

import textwrap
from typing import Any

from gen_helpers import PODS, SERVICES, sidecar

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.control_plane import ControlPlane
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.scope import scope_key


def plane() -> tuple[ControlPlane, Store, list[Any]]:
    store = Store()
    store.apply(loader.load_text(textwrap.dedent(SERVICES), "svc.yaml"), "test")
    for pod in PODS:
        store.upsert_pod(pod)
    cp = ControlPlane(store)
    pushes: list[Any] = []
    cp.xds.update = lambda snapshot, request: pushes.append(request)  # type: ignore[method-assign]
    cp.rebuild()
    return cp, store, pushes


def reviews_pod(name: str, ip: str, service_account: str) -> Pod:
    return Pod(name, "default", ip, {"app": "reviews", "version": "v1"}, workload="reviews-v1",
               service_account=service_account, app_ports={9080: 40100})  # fmt: skip


def test_new_endpoint_is_an_eds_push_reusing_the_config_only_generation() -> None:
    cp, store, pushes = plane()
    proxy = sidecar()
    cds = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    store.upsert_pod(reviews_pod("reviews-v1-1", "127.7.0.9", "reviews"))
    request = pushes[-1]
    assert (
        not request.full and "outbound|9080||reviews.default.svc.cluster.local" in request.eds_only_clusters
    )
    # Same objects: nothing rebuilt for this scope, and the server's encodings still apply.
    again = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    outbound = [name for name in cds if name.startswith("outbound|")]
    assert outbound and all(again[name] is cds[name] for name in outbound)
    key = scope_key(cp.snapshot, proxy)
    assert ("cds", key) in cp.snapshot._memo and ("eds", key) not in cp.snapshot._memo
    eds = cp.generator.generate(cp.snapshot, proxy, naming.ENDPOINT_TYPE, frozenset({
        "outbound|9080||reviews.default.svc.cluster.local"}))  # fmt: skip
    assert len(eds) == 1


def test_endpoint_with_a_new_service_account_is_a_full_push() -> None:
    cp, store, pushes = plane()
    store.upsert_pod(reviews_pod("reviews-v1-1", "127.7.0.9", "reviews-canary"))
    assert pushes[-1].full, pushes[-1]


def test_virtual_service_change_reuses_clusters_unless_the_scope_imports_change() -> None:
    cp, store, pushes = plane()
    proxy = sidecar()
    cds = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews, namespace: default}
    spec:
      hosts: [reviews]
      http: [{route: [{destination: {host: reviews}}], timeout: 3s}]
    """
    store.apply(loader.load_text(textwrap.dedent(vs), "vs.yaml"), "test")
    assert pushes[-1].full
    again = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    assert all(again[name] is cds[name] for name in cds if name.startswith("outbound|"))
    # A Sidecar that imports only reviews, plus a VS routing to ratings: the VS imports ratings.
    scoped = """
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: default}
    spec:
      egress: [{hosts: [./reviews.default.svc.cluster.local]}]
    """
    store.apply(loader.load_text(textwrap.dedent(scoped), "sidecar.yaml"), "test")
    before = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    assert not any("ratings" in name for name in before)
    to_ratings = vs.replace("host: reviews}", "host: ratings.other.svc.cluster.local}")
    store.apply(loader.load_text(textwrap.dedent(to_ratings), "vs.yaml"), "test")
    after = cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
    assert any("ratings" in name for name in after), sorted(after)


def test_endpoint_change_rebuilds_only_the_changed_assignments() -> None:
    cp, store, pushes = plane()
    proxy = sidecar()
    names = frozenset(n for n in cp.generator.generate(cp.snapshot, proxy, naming.CLUSTER_TYPE, None)
                      if n.startswith("outbound|"))  # fmt: skip
    before = cp.generator.generate(cp.snapshot, proxy, naming.ENDPOINT_TYPE, names)
    store.upsert_pod(reviews_pod("reviews-v1-1", "127.7.0.9", "reviews"))
    after = cp.generator.generate(cp.snapshot, proxy, naming.ENDPOINT_TYPE, names)
    changed = "outbound|9080||reviews.default.svc.cluster.local"
    assert after[changed] is not before[changed]
    assert b"127.7.0.9" in after[changed].value and b"127.7.0.9" not in before[changed].value
    assert all(after[n] is before[n] for n in names if "reviews" not in n)
    assert cp.snapshot.endpoints_changed_from is not None and before is not after


def test_a_started_control_plane_tunes_the_garbage_collector() -> None:
    import asyncio
    import gc

    from isthmus.mesh import gc_policy

    before = gc.get_threshold()
    cp = ControlPlane(Store())

    async def start_stop() -> tuple[int, int, int]:
        await cp.start("127.0.0.1", 0)
        try:
            return gc.get_threshold()
        finally:
            await cp.stop()

    try:
        assert asyncio.run(start_stop()) == gc_policy.THRESHOLDS
    finally:
        gc.set_threshold(*before)
