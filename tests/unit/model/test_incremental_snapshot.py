"""A pod-only change updates the snapshot from the one before (config indexes and the registry parts of
services the pod does not feed are taken over); it must equal a snapshot built from scratch."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.control_plane import ControlPlane
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.build import build_registry, update_registry
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.generator import MeshGenerator

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: grpc-admin, port: 9090, targetPort: admin}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  publishNotReadyAddresses: true
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: other}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: default}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy-vm, namespace: default}
spec:
  address: 10.9.0.1
  serviceAccount: legacy
  labels: {app: legacy}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: default}
spec:
  hosts: [cache.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: tcp, number: 6379, protocol: TCP}]
  workloadSelector: {labels: {role: cache}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{name: https, number: 443, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def _pod(name: str, ip: str, labels: dict[str, str], **kw: Any) -> Pod:
    kw.setdefault("service_account", labels.get("app", "default"))
    return Pod(name, kw.pop("namespace", "default"), ip, labels, workload=name.rsplit("-", 1)[0], **kw)


PODS = [
    _pod("reviews-v1-0", "127.7.0.2", {"app": "reviews", "version": "v1"}, named_ports={"admin": 9901}, app_ports={9080: 40001}),
    _pod("reviews-v2-0", "127.7.0.3", {"app": "reviews", "version": "v2"}, app_ports={9080: 40002}),
    _pod("reviews-v2-1", "127.7.0.13", {"app": "reviews", "version": "v2"}),
    _pod("db-0", "127.7.0.4", {"app": "db"}, ready=False),
    _pod("web-0", "127.7.0.5", {"app": "web", "version": "v1"}, app_ports={8080: 40005}),
    _pod("ratings-0", "127.7.0.6", {"app": "ratings"}, namespace="other", app_ports={9080: 40006}),
    _pod("cache-0", "127.7.0.7", {"app": "cache", "role": "cache"}),
    _pod("legacy-0", "127.7.0.8", {"app": "legacy"}),
]  # fmt: skip


def _sidecar(pod: str, ip: str, workload: str, labels: dict[str, str], namespace: str = "default") -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", ip, pod, namespace),
        kind="sidecar",
        ip=ip,
        namespace=namespace,
        instance=pod,
        workload=workload,
        labels=labels,
    )


WEB = _sidecar("web-0", "127.7.0.5", "web", {"app": "web", "version": "v1"})
REVIEWS = _sidecar("reviews-v1-0", "127.7.0.2", "reviews-v1", {"app": "reviews", "version": "v1"})
RATINGS = _sidecar("ratings-0", "127.7.0.6", "ratings", {"app": "ratings"}, namespace="other")


def plane(config: str = CONFIG) -> tuple[ControlPlane, Store]:
    store = Store()
    store.apply(loader.load_text(textwrap.dedent(config), "test.yaml"), "test")
    for pod in PODS:
        store.upsert_pod(pod)
    cp = ControlPlane(store)
    cp.xds.update = lambda snapshot, request: None  # type: ignore[method-assign]
    cp.rebuild()
    return cp, store


def generated(snap: Snapshot, generator: MeshGenerator, proxy: Proxy) -> dict[str, dict[str, Any]]:
    out = {
        t: dict(generator.generate(snap, proxy, t, None)) for t in (naming.CLUSTER_TYPE, naming.LISTENER_TYPE)
    }
    eds = frozenset(n for n in out[naming.CLUSTER_TYPE] if n.startswith("outbound|"))
    out[naming.ENDPOINT_TYPE] = dict(generator.generate(snap, proxy, naming.ENDPOINT_TYPE, eds))
    routes = {naming.HTTP_PROXY_ROUTE} | {naming.inbound_cluster(ib.port) for ib in snap.inbound_ports(proxy)}
    out[naming.ROUTE_TYPE] = dict(generator.generate(snap, proxy, naming.ROUTE_TYPE, frozenset(routes)))
    # A delta proxy's sidecar table over VHDS (its virtual hosts are memoized per scope and snapshot).
    delta = dataclasses.replace(proxy, delta_xds=True)
    out[naming.VIRTUAL_HOST_TYPE] = dict(generator.generate(snap, delta, naming.VIRTUAL_HOST_TYPE, None))
    return out


def assert_same_as_full_build(cp: ControlPlane, store: Store) -> None:
    snap = cp.snapshot
    full = Snapshot.build(snap.version, store.list(), store.pods())
    assert snap.registry.services == full.registry.services
    assert snap.registry.by_host == full.registry.by_host
    assert snap.registry._endpoints == full.registry._endpoints
    assert snap.registry.pods == full.registry.pods
    for pod in store.pods():
        assert snap.registry.services_selecting(pod) == full.registry.services_selecting(pod)
    for proxy in (WEB, REVIEWS, RATINGS):
        # The control plane's generator, with the memos the snapshot took over, against a fresh one.
        assert generated(snap, cp.generator, proxy) == generated(full, MeshGenerator(), proxy), proxy.id


def pods(store: Store) -> dict[str, Pod]:
    return {p.name: p for p in store.pods()}


CHANGES: dict[str, Callable[[Store], None]] = {
    "add": lambda s: s.upsert_pod(_pod("reviews-v1-1", "127.7.0.12", {"app": "reviews", "version": "v1"})),
    "remove": lambda s: s.remove_pod("default", "reviews-v2-1"),
    "move": lambda s: s.upsert_pod(dataclasses.replace(pods(s)["reviews-v1-0"], ip="127.7.1.2")),
    "relabel subset": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["reviews-v2-0"], labels={"app": "reviews", "version": "v1"})
    ),
    "not ready": lambda s: s.upsert_pod(dataclasses.replace(pods(s)["reviews-v1-0"], ready=False)),
    "not ready, published": lambda s: s.upsert_pod(dataclasses.replace(pods(s)["db-0"], ip="127.7.1.4")),
    "ready (publishNotReadyAddresses)": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["db-0"], ready=True)
    ),
    "named port": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["reviews-v1-0"], named_ports={"admin": 9902})
    ),
    "stops matching a Service": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["reviews-v2-0"], labels={"app": "details"})
    ),
    "starts matching a Service": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["cache-0"], labels={"app": "reviews", "role": "cache", "version": "v2"})
    ),
    "stops matching a ServiceEntry": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["cache-0"], labels={"app": "cache"})
    ),
    "new service account": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["reviews-v1-0"], service_account="reviews-canary")
    ),
    "beside a WorkloadEntry": lambda s: s.upsert_pod(_pod("legacy-1", "127.7.0.9", {"app": "legacy"})),
    "the proxy's own pod": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["web-0"], labels={"app": "web", "version": "v1", "role": "cache"})
    ),
    "the proxy's own ports": lambda s: s.upsert_pod(
        dataclasses.replace(pods(s)["web-0"], app_ports={8080: 40005, 9095: 40015})
    ),
    "other namespace": lambda s: s.remove_pod("other", "ratings-0"),
    "unselected": lambda s: s.upsert_pod(_pod("job-0", "127.7.0.20", {"app": "job"})),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_pod_change_equals_a_full_build(name: str) -> None:
    cp, store = plane()
    before = cp.snapshot
    CHANGES[name](store)
    assert cp.snapshot is not before
    # Config was taken over, not rebuilt: the incremental path was taken.
    assert cp.snapshot.virtual_services is before.virtual_services
    assert cp.snapshot.destination_rules is before.destination_rules
    assert_same_as_full_build(cp, store)


def test_a_run_of_pod_changes_stays_equal_to_full_builds() -> None:
    cp, store = plane()
    for change in CHANGES.values():
        change(store)
        assert_same_as_full_build(cp, store)
    assert cp.snapshot.destination_rules is not None


def test_a_burst_of_pod_changes_rebuilt_once() -> None:
    cp, store = plane()
    cp._scheduled = True  # as if a rebuild were already scheduled: the changes pile up
    for name in ("add", "move", "remove", "stops matching a Service"):
        CHANGES[name](store)
    assert len(cp._pending) == 4
    cp.rebuild()
    assert_same_as_full_build(cp, store)


def test_config_changes_build_from_scratch() -> None:
    cp, store = plane()
    before = cp.snapshot
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: ratings, namespace: other}
    spec: {host: ratings}
    """
    store.apply(loader.load_text(textwrap.dedent(dr), "dr.yaml"), "test")
    assert cp.snapshot.destination_rules is not before.destination_rules
    CHANGES["move"](store)
    assert cp.snapshot.destination_rules is not before.destination_rules
    assert_same_as_full_build(cp, store)


def test_a_pod_named_like_a_workload_entry_is_built_from_scratch() -> None:
    cp, store = plane()
    before = cp.snapshot
    store.upsert_pod(_pod("legacy-vm", "127.7.0.30", {"app": "legacy"}))
    assert cp.snapshot.destination_rules is not before.destination_rules
    assert_same_as_full_build(cp, store)


def test_two_services_of_one_host_are_built_from_scratch() -> None:
    shared = """
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: reviews-extra, namespace: default}
    spec:
      hosts: [reviews.default.svc.cluster.local]
      location: MESH_INTERNAL
      resolution: STATIC
      ports: [{name: http, number: 9080, protocol: HTTP}]
      workloadSelector: {labels: {extra: "true"}}
    """
    cp, store = plane(CONFIG + textwrap.dedent(shared))
    before = cp.snapshot
    CHANGES["move"](store)
    assert cp.snapshot.destination_rules is not before.destination_rules
    assert_same_as_full_build(cp, store)


def test_pods_at_one_address_are_built_from_scratch() -> None:
    resources = loader.load_text(textwrap.dedent(CONFIG), "test.yaml")
    previous = build_registry(resources, PODS)
    twin = _pod("reviews-v1-9", "127.7.0.2", {"app": "reviews", "version": "v1"})
    assert update_registry(previous, [*PODS, twin]) is None
    moved = dataclasses.replace(PODS[0], ip="127.7.9.9")
    updated = update_registry(previous, [moved, *PODS[1:]])
    assert updated is not None
    assert updated._endpoints == build_registry(resources, [moved, *PODS[1:]])._endpoints


CONFIG_CHANGES = {
    "virtual service": """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews, namespace: default}
    spec:
      hosts: [reviews]
      http:
      - route:
        - {destination: {host: reviews, subset: v1}, weight: 80}
        - {destination: {host: reviews, subset: v2}, weight: 20}
    """,
    "virtual service edited": """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: reviews, namespace: default}
    spec:
      hosts: [reviews]
      http:
      - match: [{headers: {x-canary: {exact: "1"}}}]
        route: [{destination: {host: reviews, subset: v2}}]
      - route: [{destination: {host: reviews, subset: v1}}]
    """,
    "destination rule": """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews, namespace: default}
    spec:
      host: reviews
      trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
    """,
    "authorization policy": """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: web, namespace: default}
    spec:
      selector: {matchLabels: {app: web}}
      rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/reviews]}}]}]
    """,
    "sidecar": """
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: other}
    spec:
      egress: [{hosts: [./*, default/reviews.default.svc.cluster.local]}]
    """,
    "namespace": """
    apiVersion: v1
    kind: Namespace
    metadata: {name: other, labels: {team: ratings}}
    """,
}


def test_config_changes_that_do_not_feed_the_registry_keep_it_and_equal_full_builds() -> None:
    cp, store = plane()
    registry = cp.snapshot.registry
    assert_same_as_full_build(cp, store)  # generate on every snapshot, so memos exist to be taken over
    for name, text in CONFIG_CHANGES.items():
        store.apply(loader.load_text(textwrap.dedent(text), f"{name}.yaml"), "test")
        assert cp.snapshot.registry is registry, name
        assert_same_as_full_build(cp, store)
    CHANGES["move"](store)  # and a pod change after them
    assert_same_as_full_build(cp, store)


def test_config_changes_that_feed_the_registry_build_it_anew() -> None:
    cp, store = plane()
    registry = cp.snapshot.registry
    svc = """
    apiVersion: v1
    kind: Service
    metadata: {name: details, namespace: default}
    spec:
      selector: {app: reviews}
      ports: [{name: http, port: 9080}]
    """
    store.apply(loader.load_text(textwrap.dedent(svc), "svc.yaml"), "test")
    assert cp.snapshot.registry is not registry
    assert_same_as_full_build(cp, store)


def test_a_virtual_service_change_after_pod_changes_reuses_the_default_virtual_hosts() -> None:
    """The tables' default virtual hosts carry over endpoint-only snapshots, so a VirtualService change
    after pod changes (the usual order in a live mesh) still builds only what it changed."""
    cp, store = plane()
    store.apply(loader.load_text(textwrap.dedent(CONFIG_CHANGES["virtual service"]), "vs.yaml"), "test")
    assert_same_as_full_build(cp, store)
    records = {k: v for k, v in cp.snapshot._memo.items() if k[0] == "vhost_defaults"}
    assert records
    CHANGES["move"](store)
    CHANGES["add"](store)
    assert cp.snapshot.endpoints_changed_from is not None
    edited = CONFIG_CHANGES["virtual service edited"]
    store.apply(loader.load_text(textwrap.dedent(edited), "vs.yaml"), "test")
    assert cp.snapshot.routes_changed_from is not None
    assert_same_as_full_build(cp, store)
    reused = [k for k, v in records.items() if cp.snapshot._memo.get(k) is v]
    assert reused, "no scope's default virtual hosts were taken over"
