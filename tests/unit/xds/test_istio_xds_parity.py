"""Which config change reaches which proxy, and with what: parity with istiod's push scoping.

Sources (istio/istio pilot/pkg/xds):
- proxy_dependencies_test.go (TestProxyNeedsPush, TestGatewayScopeDependencies,
  TestGatewayVirtualServiceDependencies, TestGatewaySidecarScopeReselection,
  TestGatewaySidecarScopeFromNoGateways) with proxy_dependencies.go (ConfigAffectsProxy,
  DefaultProxyNeedsPush, UnAffectedConfigKinds);
- headless_endpoint_push_test.go (TestHeadlessEndpointPushOptimization: a pod of a headless service
  changes a sidecar's config beyond EDS, a router's EDS at most);
- xds_test.go (TestServiceScoping, TestSidecarListeners "empty", TestEgressProxy), cds_test.go (TestSAN),
  lds_test.go (TestLDSWithDefaultSidecar, TestLDSWithSidecarForWorkloadWithoutService,
  TestLDSWithIngressGateway, with their tests/testdata/networking configs), rds_test.go (TestRDS):
  "YAML -> the config one proxy gets", in the last sections.

Disagreement found and fixed: TestServiceScoping "DNS" — a DNS ServiceEntry whose endpoint is its own
host (`app.com`) was resolved through another namespace's ServiceEntry of that host (registry/build.py
`_MeshNames._target`); it now stays the entry's own DNS name (a Kubernetes Service of that name still
resolves, as cluster DNS would).

How the translation works. istiod decides per proxy whether to push at all (DefaultProxyNeedsPush, from
the config keys that changed and the proxy's dependencies), then regenerates. Isthmus re-evaluates every
proxy on a full push and sends a type only when the proxy's generated config changed (DESIGN §6), with
generation shared per scope and reused from the snapshot before after VirtualService-only and
endpoint-only changes. So istiod's "needs push" becomes, for each proxy, two checks made through the real
control plane (`ControlPlane` on a `Store`, as `isthmus up` runs it):

1. delivered: the config the push gives the proxy (with every reuse) equals the config built from
   scratch for the new snapshot. Where istiod pushes, a stale piece here would be a proxy left behind;
2. reached: when that config differs from what the proxy had, the push request reaches it (a full push,
   or an EDS push naming the changed clusters); where istiod does not push, the config is unchanged.

istiod pushes some proxies whose config does not change (a Gateway of any namespace reaches every router,
a Secret every proxy): Isthmus sends those nothing, which Envoy cannot tell from an identical push.

Skipped, with the reason: address/WDS, waypoint and east-west cases (TestWorkloadSubscriberNeedsAddressPush,
TestWaypointNeedsPush, TestSidecarWaypointPushes; no ambient); EnvoyFilter, WasmPlugin, TrafficExtension
and KubernetesGateway keys (kinds Isthmus does not have); the PILOT_FILTER_GATEWAY_CLUSTER_CONFIG and
ScopeGatewayToNamespace variants (feature flags not modeled: gateways see every visible service);
"forced" pushes and empty ConfigsUpdated (an istiod debug/reconnect path; Isthmus's reconnects resend
from the current snapshot); TestCanSendPartialFullPushes* (istiod's partial-full-push optimization);
TestCheckConnectionIdentity (xDS connection authentication, not push scoping); TestClusterLocal and all
of eds_sh_test.go (multicluster / split-horizon EDS: one cluster, one network); TestSidecarListeners
"mongo", TestLDSEnvoyFilterWithWorkloadSelector and TestLDSIsolated's golden files (per-service outbound
listeners and EnvoyFilter: Isthmus routes outbound traffic through its HTTP proxy listener by design,
DESIGN §3); TestCDS / TestLDS / TestRDS's bare ADS round trips (tests/unit/xds/test_xds_server.py).
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.control_plane import ControlPlane
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.generator import MeshGenerator
from isthmus.xds.push_queue import PushRequest

HCM_URL = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

BASE = """
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  selector: {app: svc1}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: backend}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: gw-a, namespace: gateways}
spec:
  selector: {gw: a}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

PODS = [
    Pod("svc1-0", "ns1", "127.9.0.2", {"app": "svc1"}, workload="svc1", app_ports={8080: 41000}),
    Pod("backend-0", "backend", "127.9.0.3", {"app": "backend"}, workload="backend", app_ports={8080: 41001}),
    Pod("gw-a-0", "gateways", "127.9.0.4", {"app": "gateway", "gw": "a"}, workload="gw-a", gateway=True),
    Pod("gw-b-0", "gateways", "127.9.0.5", {"app": "gateway", "gw": "b"}, workload="gw-b", gateway=True),
    Pod("gw-u-0", "gateways", "127.9.0.6", {"app": "gateway", "gw": "u"}, workload="gw-u", gateway=True),
    Pod("other-0", "unrelated", "127.9.0.7", {"app": "other"}, workload="other", app_ports={8080: 41002}),
]  # fmt: skip


def proxy_of(name: str) -> Proxy:
    return Proxy.of_pod(next(p for p in PODS if p.name == name))


SIDECAR, OTHER = "svc1-0", "other-0"
GW_A, GW_B, GW_U = "gw-a-0", "gw-b-0", "gw-u-0"
EVERYONE = (SIDECAR, OTHER, GW_A, GW_B, GW_U)


def load(*docs: str) -> list[Any]:
    return loader.load_text("\n---\n".join(textwrap.dedent(d) for d in docs), "test.yaml")


@dataclass
class Mesh:
    """A control plane fed by a store, recording the push requests it makes."""

    cp: ControlPlane
    store: Store
    pushes: list[PushRequest]

    @classmethod
    def of(cls, *docs: str, pods: list[Pod] = PODS) -> Mesh:
        store = Store()
        store.apply(load(BASE, *docs), "test")
        for pod in pods:
            store.upsert_pod(pod)
        cp = ControlPlane(store)
        pushes: list[PushRequest] = []
        cp.xds.update = lambda snapshot, request: pushes.append(request)  # type: ignore[method-assign]
        cp.rebuild()
        return cls(cp, store, pushes)

    def apply(self, *docs: str) -> PushRequest | None:
        before = len(self.pushes)
        self.store.apply(load(*docs), "test")
        return self._request(before)

    def delete(self, kind: str, namespace: str, name: str) -> PushRequest | None:
        before = len(self.pushes)
        keys = [c.key for c in self.store.list(kind) if c.namespace == namespace and c.name == name]
        assert keys, (kind, namespace, name)
        self.store.delete(keys)
        return self._request(before)

    def upsert_pod(self, pod: Pod) -> PushRequest | None:
        before = len(self.pushes)
        self.store.upsert_pod(pod)
        return self._request(before)

    def remove_pod(self, namespace: str, name: str) -> PushRequest | None:
        before = len(self.pushes)
        self.store.remove_pod(namespace, name)
        return self._request(before)

    def _request(self, before: int) -> PushRequest | None:
        self.cp.current()
        new = self.pushes[before:]
        assert len(new) <= 1, new
        if not new or (not new[0].full and not new[0].eds_only_clusters):
            return None  # the control plane's "no-op" update: nothing to send
        return new[0]

    def config(self, name: str) -> dict[str, dict[str, bytes]]:
        """What the proxy gets from the running control plane (every reuse included)."""
        return delivered(self.cp.generator, self.cp.current(), proxy_of(name))

    def fresh(self, name: str) -> dict[str, dict[str, bytes]]:
        """The same, generated from a snapshot built from scratch."""
        snap = Snapshot.build(self.cp.snapshot.version, self.store.list(), self.store.pods())
        return delivered(MeshGenerator(), snap, proxy_of(name))


def discovered_names(listeners: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The route configurations (RDS) and extension configs (ECDS) the listeners refer to."""
    routes: set[str] = set()
    extensions: set[str] = set()
    for packed in listeners.values():
        listener = listener_pb2.Listener.FromString(packed.value)
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for f in chain.filters:
                if f.HasField("config_discovery"):
                    extensions.add(f.name)
                if f.typed_config.type_url == HCM_URL:
                    hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                    if hcm.HasField("rds"):
                        routes.add(hcm.rds.route_config_name)
                    extensions.update(h.name for h in hcm.http_filters if h.HasField("config_discovery"))
    return routes, extensions


def delivered(gen: MeshGenerator, snap: Snapshot, proxy: Proxy) -> dict[str, dict[str, bytes]]:
    cds = gen.generate(snap, proxy, naming.CLUSTER_TYPE, None)
    lds = gen.generate(snap, proxy, naming.LISTENER_TYPE, None)
    routes, extensions = discovered_names(lds)
    rds = gen.generate(snap, proxy, naming.ROUTE_TYPE, frozenset(routes))
    eds = gen.generate(snap, proxy, naming.ENDPOINT_TYPE, frozenset(cds))
    ecds = gen.generate(snap, proxy, naming.EXTENSION_CONFIG_TYPE, frozenset(extensions))
    return {
        kind: {name: packed.value for name, packed in out.items()}
        for kind, out in (("CDS", cds), ("LDS", lds), ("RDS", rds), ("EDS", eds), ("ECDS", ecds))
    }


def changed_types(before: dict[str, dict[str, bytes]], after: dict[str, dict[str, bytes]]) -> set[str]:
    return {kind for kind in before if before[kind] != after[kind]}


def reaches(request: PushRequest | None, before: dict, after: dict) -> bool:
    """Whether the push request delivers this change of the proxy's config."""
    types = changed_types(before, after)
    if not types:
        return True
    if request is None:
        return False
    if request.full:
        return True
    changed_eds = {
        n for n in set(before["EDS"]) | set(after["EDS"]) if before["EDS"].get(n) != after["EDS"].get(n)
    }
    return types == {"EDS"} and changed_eds <= request.eds_only_clusters


def check(
    mesh: Mesh, change: Any, pushed: set[str], unaffected: set[str] = frozenset()
) -> PushRequest | None:  # type: ignore[assignment]
    """Run `change(mesh)`; every proxy in `pushed` must get a changed config through the push, every
    proxy in `unaffected` must keep its config, and all of them must get what a fresh build gives."""
    before = {name: mesh.config(name) for name in EVERYONE}
    request = change(mesh)
    for name in EVERYONE:
        after = mesh.config(name)
        assert after == mesh.fresh(name), f"{name}: delivered config differs from a fresh build"
        assert reaches(request, before[name], after), (
            f"{name}: changed {changed_types(before[name], after)}, push {request}"
        )
        if name in pushed:
            assert changed_types(before[name], after), (
                f"{name}: istiod pushes it a change; its config did not change"
            )
        if name in unaffected:
            assert not changed_types(before[name], after), (
                f"{name}: changed {changed_types(before[name], after)}"
            )
    return request


def doc(kind: str, name: str, namespace: str, spec: str, api: str = "networking.istio.io/v1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}\n"


def gateway(name: str, selector: str, *ports: int, namespace: str = "gateways") -> str:
    servers = "\n".join(
        f"- {{hosts: ['*'], port: {{number: {p}, name: http-{p}, protocol: HTTP}}}}" for p in ports
    )
    return doc("Gateway", name, namespace, f"selector: {{gw: {selector}}}\nservers:\n{servers}")


def gateway_vs(name: str, host: str, gateways: str, extra: str = "", namespace: str = "routes") -> str:
    spec = f"""
hosts: [{host}]
gateways: [{gateways}]
http: [{{route: [{{destination: {{host: backend.backend.svc.cluster.local}}}}]}}]
{extra}"""
    return doc("VirtualService", name, namespace, spec)


DR_BACKEND = doc(
    "DestinationRule",
    "dr",
    "backend",
    """
host: backend.backend.svc.cluster.local
trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
""",
)
PA_BACKEND = doc("PeerAuthentication", "pa", "backend", "mtls: {mode: DISABLE}", api="security.istio.io/v1")
GW_A_SETUP = (gateway("a", "a", 80), gateway("b", "b", 80), gateway("unrelated", "u", 80))
ROUTE = gateway_vs("route", "example.com", "gateways/a")


# --- TestGatewayScopeDependencies --------------------------------------------------------------


@pytest.mark.parametrize("cfg", [DR_BACKEND, PA_BACKEND], ids=["DestinationRule", "PeerAuthentication"])
def test_gateway_current_dependencies(cfg: str) -> None:
    # "current dependencies": a DR / PA of a service the gateway sees pushes it (and every sidecar
    # that sees the service).
    mesh = Mesh.of(*GW_A_SETUP, ROUTE)
    check(mesh, lambda m: m.apply(cfg), pushed={GW_A, GW_B, GW_U, SIDECAR, OTHER})


@pytest.mark.parametrize(
    ("cfg", "kind", "name"),
    [(DR_BACKEND, "DestinationRule", "dr"), (PA_BACKEND, "PeerAuthentication", "pa")],
    ids=["DestinationRule", "PeerAuthentication"],
)
def test_gateway_removed_dependencies(cfg: str, kind: str, name: str) -> None:
    # "removed dependencies": the previous scope depended on it: its removal pushes.
    mesh = Mesh.of(*GW_A_SETUP, ROUTE, cfg)
    check(mesh, lambda m: m.delete(kind, "backend", name), pushed={GW_A, GW_B, GW_U, SIDECAR, OTHER})


def test_gateway_service_visibility() -> None:
    # "service visibility": a ServiceEntry the gateway sees pushes it; one exported only to its own
    # namespace does not reach the gateway (nor sidecars of other namespaces).
    visible = doc(
        "ServiceEntry",
        "backend-se",
        "backend",
        "hosts: [backend.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
    )
    private = doc(
        "ServiceEntry",
        "private-se",
        "backend",
        "hosts: [other.example.com]\nexportTo: ['.']\nports: [{number: 80, name: http, protocol: HTTP}]\n"
        "resolution: DNS",
    )
    mesh = Mesh.of(*GW_A_SETUP, ROUTE)
    check(mesh, lambda m: m.apply(visible), pushed={GW_A, GW_B, GW_U, SIDECAR, OTHER})
    check(mesh, lambda m: m.apply(private), pushed=set(), unaffected=set(EVERYONE))


@pytest.mark.parametrize(
    ("kind", "namespace", "affected"),
    [
        ("AuthorizationPolicy", "istio-system", set(EVERYONE)),  # the root namespace: every proxy
        ("AuthorizationPolicy", "gateways", {GW_A, GW_B, GW_U}),
        ("AuthorizationPolicy", "unrelated", {OTHER}),
        ("RequestAuthentication", "istio-system", set(EVERYONE)),
        ("RequestAuthentication", "gateways", {GW_A, GW_B, GW_U}),
        ("RequestAuthentication", "unrelated", {OTHER}),
    ],
)
def test_namespace_scoped_policies(kind: str, namespace: str, affected: set[str]) -> None:
    # TestGatewayScopeDependencies' policy kinds and TestProxyNeedsPush's sidecarNamespaceScopeTypes: a
    # selector-less policy reaches the proxies of its namespace, or all from the root namespace.
    spec = {
        "AuthorizationPolicy": "action: DENY\nrules: [{to: [{operation: {paths: [/admin]}}]}]",
        "RequestAuthentication": "jwtRules: [{issuer: issuer.example.com, jwks: '{\"keys\": []}'}]",
    }[kind]
    mesh = Mesh.of(*GW_A_SETUP, ROUTE)
    policy = doc(kind, "policy", namespace, spec, api="security.istio.io/v1")
    check(mesh, lambda m: m.apply(policy), pushed=affected, unaffected=set(EVERYONE) - affected)


@pytest.mark.parametrize("kind", ["DestinationRule", "PeerAuthentication", "VirtualService", "Gateway"])
def test_unrelated_namespace_config_changes_no_gateway(kind: str) -> None:
    # istiod pushes every router for any Gateway (and nothing else here); none of these changes what a
    # gateway gets, so Isthmus sends nothing (an identical push, as far as Envoy can tell).
    spec = {
        "DestinationRule": "host: nothing.unrelated.svc.cluster.local\ntrafficPolicy: {tls: {mode: DISABLE}}",
        "PeerAuthentication": "mtls: {mode: STRICT}",
        "VirtualService": "hosts: [nothing.example.com]\nexportTo: ['.']\nhttp: [{route: [{destination: {host: x}}]}]",
        "Gateway": "selector: {gw: nobody}\nservers: [{hosts: ['*'], port: {number: 80, name: http, protocol: HTTP}}]",
    }[kind]
    api = "security.istio.io/v1" if kind == "PeerAuthentication" else "networking.istio.io/v1"
    mesh = Mesh.of(*GW_A_SETUP, ROUTE)
    check(mesh, lambda m: m.apply(doc(kind, "unrelated", "unrelated", spec, api=api)), pushed=set(),
          unaffected={GW_A, GW_B, GW_U, SIDECAR})  # fmt: skip


# --- TestGatewayVirtualServiceDependencies ----------------------------------------------------


@pytest.mark.parametrize("change", ["rebound", "deleted", "hidden"])
def test_gateway_virtual_service_dependencies(change: str) -> None:
    mesh = Mesh.of(*GW_A_SETUP, ROUTE)
    if change == "rebound":
        step, pushed = (lambda m: m.apply(gateway_vs("route", "example.com", "gateways/b"))), {GW_A, GW_B}
    elif change == "deleted":
        step, pushed = (lambda m: m.delete("VirtualService", "routes", "route")), {GW_A}
    else:
        # exportTo ".": the VirtualService of namespace `routes` no longer applies to gateways elsewhere.
        step, pushed = (
            (lambda m: m.apply(gateway_vs("route", "example.com", "gateways/a", "exportTo: ['.']"))),
            {GW_A},
        )
    check(mesh, step, pushed=pushed, unaffected={GW_U, SIDECAR, OTHER} | ({GW_B} - pushed))


# --- TestGatewaySidecarScopeReselection / FromNoGateways --------------------------------------

ROUTES_AB = (gateway_vs("a", "a.example.com", "gateways/a"), gateway_vs("b", "b.example.com", "gateways/b"))


@pytest.mark.parametrize(
    ("gateways", "deleted"),
    [
        ((gateway("a", "a", 80, 81),), None),  # server count changed
        ((gateway("b", "a", 80),), None),  # gateway added (a and b both select the proxy)
        ((gateway("b", "a", 80),), "a"),  # gateway replaced
        ((), "a"),  # gateway removed
    ],
    ids=["server count changed", "gateway added", "gateway replaced", "gateway removed"],
)
def test_gateway_scope_reselection(gateways: tuple[str, ...], deleted: str | None) -> None:
    mesh = Mesh.of(gateway("a", "a", 80), *ROUTES_AB)

    def step(m: Mesh) -> PushRequest | None:
        request = m.apply(*gateways) if gateways else None
        if deleted:
            request = m.delete("Gateway", "gateways", deleted)
        return request

    check(mesh, step, pushed={GW_A}, unaffected={GW_B, GW_U, SIDECAR, OTHER})
    # The gateway VirtualServices follow the merged gateways: b.example.com served iff Gateway b is.
    rds = mesh.config(GW_A)["RDS"]
    served_b = any(b"b.example.com" in value for value in rds.values())
    assert served_b == any("name: b," in g for g in gateways)


def test_gateway_scope_from_no_gateways() -> None:
    mesh = Mesh.of(gateway_vs("a", "a.example.com", "gateways/a"))
    assert mesh.config(GW_A)["RDS"] == {}
    check(
        mesh, lambda m: m.apply(gateway("a", "a", 80)), pushed={GW_A}, unaffected={GW_B, GW_U, SIDECAR, OTHER}
    )
    assert any(b"a.example.com" in value for value in mesh.config(GW_A)["RDS"].values())


# --- TestProxyNeedsPush: sidecars -----------------------------------------------------------------


SE_SVC1 = doc(
    "ServiceEntry",
    "svc1-se",
    "ns1",
    "hosts: [svc1.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
)
SE_SVC1_PRIVATE = doc(
    "ServiceEntry",
    "svc1-se",
    "ns1",
    "hosts: [svc1.com]\nexportTo: ['.']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS",
)


@pytest.mark.parametrize(
    ("cfg", "pushed", "unaffected"),
    [
        # "ServiceEntry config for sidecar" / "... unmatched": a visible service pushes; one exported to
        # its namespace only reaches that namespace's sidecars.
        (SE_SVC1, {SIDECAR, OTHER}, set()),
        (SE_SVC1_PRIVATE, {SIDECAR}, {OTHER}),
        # "DestinationRule config for sidecar" / unmatched: a rule exported to its namespace only.
        (
            doc(
                "DestinationRule",
                "dr1",
                "ns1",
                "host: backend.backend.svc.cluster.local\nexportTo: ['.']\n"
                "trafficPolicy: {connectionPool: {tcp: {maxConnections: 3}}}",
            ),
            {SIDECAR},
            {OTHER},
        ),
        # "VirtualService config for sidecar" / unmatched.
        (
            doc(
                "VirtualService",
                "vs1",
                "ns1",
                "hosts: [backend.backend.svc.cluster.local]\nexportTo: ['.']\n"
                "http: [{route: [{destination: {host: backend.backend.svc.cluster.local}}], timeout: 3s}]",
            ),
            {SIDECAR},
            {OTHER},
        ),
        # "Sidecar config for sidecar": a Sidecar of its namespace; "sidecar config for gateway": none.
        (
            doc("Sidecar", "sc1", "ns1", "egress: [{hosts: [./*]}]"),
            {SIDECAR},
            {OTHER, GW_A, GW_B, GW_U},
        ),
        # "gateway config for sidecar": no sidecar depends on a Gateway.
        (gateway("new", "a", 9000), {GW_A}, {SIDECAR, OTHER, GW_B, GW_U}),
    ],
    ids=["SE", "SE unmatched", "DR unmatched", "VS unmatched", "Sidecar", "Gateway"],
)
def test_proxy_needs_push(cfg: str, pushed: set[str], unaffected: set[str]) -> None:
    mesh = Mesh.of(*GW_A_SETUP)
    check(mesh, lambda m: m.apply(cfg), pushed=pushed, unaffected=unaffected)


def test_service_visibility_changed_from_public_to_none() -> None:
    # "service visibility changed from public to none": the gateway that saw it is pushed.
    spec = "hosts: [foo.com]\n{}ports: [{{number: 80, name: http, protocol: HTTP}}]\nresolution: DNS"
    mesh = Mesh.of(*GW_A_SETUP, doc("ServiceEntry", "foo", "ns1", spec.format("")))
    hidden = doc("ServiceEntry", "foo", "ns1", spec.format("exportTo: ['~']\n"))
    check(mesh, lambda m: m.apply(hidden), pushed={GW_A, GW_B, GW_U, SIDECAR, OTHER})


def test_service_of_the_proxy_changed_pushes_it() -> None:
    # DefaultProxyNeedsPush's last rule: the proxy's own service changed (its inbound config).
    mesh = Mesh.of()
    svc = doc("Service", "svc1", "ns1", "selector: {app: svc1}\nports: [{name: http, port: 80, targetPort: 8080}, "
              "{name: grpc, port: 90, targetPort: 9090}]", api="v1")  # fmt: skip
    check(mesh, lambda m: m.apply(svc), pushed={SIDECAR})


# --- headless_endpoint_push_test.go: TestHeadlessEndpointPush ----------------------------------


def test_headless_endpoint_push() -> None:
    # A new pod of a headless service is a full push (its own routes and listeners), not EDS only.
    headless = doc("Service", "headless", "ns1", "clusterIP: None\nselector: {app: headless}\n"
                   "ports: [{name: http, port: 80, targetPort: 8080}]", api="v1")  # fmt: skip
    mesh = Mesh.of(headless)
    pod = Pod(
        "headless-0", "ns1", "127.9.0.20", {"app": "headless"}, workload="headless", app_ports={8080: 41010}
    )
    request = check(mesh, lambda m: m.upsert_pod(pod), pushed={SIDECAR, OTHER})
    assert request is not None and request.full
    gateway_before = mesh.config(GW_A)
    pod2 = Pod(
        "headless-1", "ns1", "127.9.0.21", {"app": "headless"}, workload="headless", app_ports={8080: 41011}
    )
    request = check(mesh, lambda m: m.upsert_pod(pod2), pushed={SIDECAR, OTHER})
    assert request is not None and request.full
    # TestHeadlessEndpointPushOptimization: a router needs no LDS, CDS or RDS for it (EDS at most). (The
    # first pod brought the service's first service account, which CDS carries: a full push in istiod too.)
    assert changed_types(gateway_before, mesh.config(GW_A)) <= {"EDS"}


def test_ordinary_endpoint_push_is_eds_only() -> None:
    # The contrast (eds_test.go's incremental pushes): a new pod of a ClusterIP service is EDS only.
    mesh = Mesh.of()
    pod = Pod(
        "backend-1", "backend", "127.9.0.22", {"app": "backend"}, workload="backend", app_ports={8080: 41012}
    )
    request = check(mesh, lambda m: m.upsert_pod(pod), pushed={SIDECAR, OTHER, GW_A})
    assert request is not None and not request.full
    # Plus the self-discovery local_cluster, which proxies started with it (none here) watch: it holds
    # endpoints of their own service (istiod's eds.go affectedService for util.SelfDiscoveryCluster).
    assert request.eds_only_clusters == {"outbound|80||backend.backend.svc.cluster.local", "local_cluster"}


# ==================================================================================================
# Generated config for one proxy: xds_test.go, cds_test.go, lds_test.go, rds_test.go (skips: see the
# module docstring).


def static_config(*docs: str, pods: list[Pod] = (), root: str | None = None) -> Snapshot:  # type: ignore[assignment]
    mesh = []
    if root:
        mesh.append(
            f"apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec: {{rootNamespace: {root}}}"
        )
    store = Store()
    store.apply(load(*mesh, *docs), "test")
    return Snapshot.build(1, store.list(), list(pods))


def sidecar_proxy(namespace: str, ip: str = "10.2.0.1", labels: dict[str, str] | None = None) -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", ip, "app-0", namespace),
        kind="sidecar",
        ip=ip,
        namespace=namespace,
        instance="app-0",
        workload="app",
        labels=labels or {"app": "app"},
    )


def generated(snap: Snapshot, proxy: Proxy, type_url: str, names: set[str] | None = None) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    out = MeshGenerator().generate(snap, proxy, type_url, frozenset(names) if names is not None else None)
    return {name: MessageToDict(a, preserving_proto_field_name=True) for name, a in out.items()}


def endpoint_addresses(assignment: dict[str, Any]) -> list[str]:
    out = []
    for group in assignment.get("endpoints", []):
        for lb in group.get("lb_endpoints", []):
            address = lb["endpoint"]["address"]
            if "pipe" in address:
                out.append(address["pipe"]["path"])
            else:
                out.append(
                    f"{address['socket_address']['address']}:{address['socket_address'].get('port_value', 0)}"
                )
    return sorted(out)


def scope_config(imported: list[str], resolution: str, ingress: bool = False) -> list[str]:
    """xds_test.go's scopeConfig template."""
    sidecar = "egress:\n- hosts: [" + ", ".join(f"'{h}'" for h in imported) + "]"
    if ingress:
        sidecar = (
            "ingress:\n- port: {number: 9080, protocol: HTTP, name: custom-http}\n"
            "  defaultEndpoint: unix:///var/run/someuds.sock\n" + sidecar
        )

    def se(name: str, namespace: str, host: str, port: int, protocol: str, address: str, vip: bool) -> str:
        endpoint = address if resolution == "DNS" else {"app.com": "1.1.1.1", "excluded.com": "9.9.9.9",
                                                        "included.com": "2.2.2.2"}.get(address, "10.10.10.10")  # fmt: skip
        spec = (
            f"hosts: [{host}]\n"
            + ("addresses: [5.5.5.5]\n" if vip else "")
            + f"ports: [{{number: {port}, name: {protocol.lower()}, protocol: {protocol}}}]\n"
            f"resolution: {resolution}\nendpoints: [{{address: {endpoint}}}]"
        )
        return doc("ServiceEntry", name, namespace, spec)

    return [
        doc("Sidecar", "sidecar", "app", sidecar),
        se("app", "app", "app.com", 80, "HTTP", "app.com", False),
        se("excluded", "excluded", "app.com", 80, "HTTP", "excluded.com", False),
        se("included", "included", "app.com", 80, "HTTP", "included.com", False),
        se("app-https", "app", "app.cluster.local", 443, "HTTPS", "app.cluster.local", True),
        se("excluded-https", "excluded", "app.cluster.local", 4431, "HTTPS", "app.cluster.local", True),
    ]


# --- xds_test.go: TestServiceScoping --------------------------------------------------------------


def test_service_scoping_static() -> None:
    # The proxy's own namespace's app.com wins over the imported namespace's.
    snap = static_config(*scope_config(["./*", "included/*"], "STATIC"))
    proxy = sidecar_proxy("app", ip="1.1.1.1")
    eds = generated(snap, proxy, naming.ENDPOINT_TYPE, {"outbound|80||app.com"})
    assert endpoint_addresses(eds["outbound|80||app.com"]) == ["1.1.1.1:80"]
    # istiod's listeners 0.0.0.0_80 and 5.5.5.5_443: here the HTTP proxy table's vhost for app.com:80,
    # and app.cluster.local only on 443 (the excluded namespace's 4431 is not imported).
    clusters = set(generated(snap, proxy, naming.CLUSTER_TYPE))
    assert {"outbound|80||app.com", "outbound|443||app.cluster.local"} <= clusters
    assert "outbound|4431||app.cluster.local" not in clusters
    table = generated(snap, proxy, naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE})[naming.HTTP_PROXY_ROUTE]
    assert "app.com:80" in {vh["name"] for vh in table["virtual_hosts"]}


def test_service_scoping_ingress_listener() -> None:
    # A Sidecar ingress port with a unix defaultEndpoint: inbound|9080|| goes to the socket.
    # Isthmus serves Sidecar ingress ports on a pod's sidecar (DESIGN §3): a pod stands for the proxy.
    pod = Pod("app-0", "app", "100.100.100.100", {"app": "app"}, workload="app")
    snap = static_config(*scope_config(["./*", "included/*"], "STATIC", ingress=True), pods=[pod])
    proxy = Proxy.of_pod(pod)
    cds = generated(snap, proxy, naming.CLUSTER_TYPE)
    inbound = cds["inbound|9080||"]
    assert endpoint_addresses(inbound["load_assignment"]) == ["/var/run/someuds.sock"]


@pytest.mark.parametrize(
    ("imported", "want"),
    [(["./*", "included/*"], ["app.com:80"]), (["included/*"], ["included.com:80"])],
    ids=["DNS", "DNS no self import"],
)
def test_service_scoping_dns(imported: list[str], want: list[str]) -> None:
    snap = static_config(*scope_config(imported, "DNS"))
    cds = generated(snap, sidecar_proxy("app", ip="1.1.1.1"), naming.CLUSTER_TYPE)
    assert endpoint_addresses(cds["outbound|80||app.com"]["load_assignment"]) == want


# --- xds_test.go: TestSidecarListeners "empty", TestEgressProxy -----------------------------------


def test_sidecar_listeners_empty() -> None:
    # virtualOutbound listens on 15001 (here the pod's address: the apps' explicit HTTP proxy).
    lds = generated(static_config(), sidecar_proxy("testns"), naming.LISTENER_TYPE)
    (outbound,) = [lis for lis in lds.values() if lis["address"]["socket_address"].get("port_value") == 15001]
    assert outbound["name"] == naming.VIRTUAL_OUTBOUND
    assert outbound["address"]["socket_address"]["address"] == "10.2.0.1"


def test_egress_proxy() -> None:
    # The Sidecar's egressProxy is the fallthrough: the allow_any route goes to its cluster.
    snap = static_config(
        doc("ServiceEntry", "pod", "default", "hosts: [pod.pod.svc.cluster.local]\n"
            "ports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nlocation: MESH_INTERNAL\n"
            "endpoints: [{address: 10.10.10.20}]"),
        doc("Sidecar", "sidecar-with-egressproxy", "app", "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n"
            "  egressProxy: {host: foo.bar, subset: shiny, port: {number: 5000}}\negress: [{hosts: ['*/*']}]"),
    )  # fmt: skip
    table = generated(snap, sidecar_proxy("app"), naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE})[
        naming.HTTP_PROXY_ROUTE
    ]
    (allow_any,) = [vh for vh in table["virtual_hosts"] if vh["name"] == naming.ALLOW_ANY_VHOST]
    assert "outbound|5000|shiny|foo.bar" in [r.get("route", {}).get("cluster") for r in allow_any["routes"]]


# --- cds_test.go: TestSAN -------------------------------------------------------------------------

SAN_SERVICE = doc(
    "Service", "example", "default", "selector: {app: test}\nports: [{name: http, port: 80}]", api="v1"
)
SAN_POD = Pod(
    "pod", "default", "1.2.3.4", {"app": "test"}, workload="pod", service_account="pod", app_ports={80: 41000}
)


def san_dr(mode: str) -> str:
    files = (
        "" if mode == "ISTIO_MUTUAL" else ", clientCertificate: fake, privateKey: fake, caCertificates: fake"
    )
    return doc("DestinationRule", "dr", "test", "host: example.default.svc.cluster.local\n"
               f"trafficPolicy: {{tls: {{mode: {mode}{files}}}}}")  # fmt: skip


def san_se(resolution: str) -> str:
    endpoints = (
        "\nendpoints: [{address: 1.1.1.1, serviceAccount: se-endpoint}]" if resolution == "STATIC" else ""
    )
    san = "se-top" if resolution == "STATIC" else "custom"
    return doc("ServiceEntry", "service-entry", "test", "hosts: [example.default.svc.cluster.local]\n"
               f"ports: [{{number: 80, protocol: HTTP, name: http}}]\nsubjectAltNames: [{san}]\n"
               f"resolution: {resolution}{endpoints}")  # fmt: skip


@pytest.mark.parametrize(
    ("k8s", "mode", "resolution", "sans"),
    [
        # A Kubernetes service is not external: no SANs are added to a MUTUAL origination.
        (True, "MUTUAL", "STATIC", []),
        (True, "MUTUAL", "NONE", []),
        # The Service has precedence: its cluster, with the pod's service account.
        (True, "ISTIO_MUTUAL", "STATIC", ["spiffe://cluster.local/ns/default/sa/pod"]),
        (True, "ISTIO_MUTUAL", "NONE", ["spiffe://cluster.local/ns/default/sa/pod"]),
        # The ServiceEntry alone: its subjectAltNames.
        (False, "ISTIO_MUTUAL", "NONE", ["custom"]),
    ],
    ids=[
        "k8s+EDS SE",
        "k8s+NONE SE",
        "k8s+EDS SE ISTIO_MUTUAL",
        "k8s+NONE SE ISTIO_MUTUAL",
        "NONE SE ISTIO_MUTUAL",
    ],
)
def test_san(k8s: bool, mode: str, resolution: str, sans: list[str]) -> None:
    docs = ([SAN_SERVICE] if k8s else []) + [san_dr(mode), san_se(resolution)]
    snap = static_config(*docs, pods=[SAN_POD] if k8s else [])
    for _ in range(2):  # istiod runs it twice: generation must be idempotent
        cluster = generated(snap, sidecar_proxy("test"), naming.CLUSTER_TYPE)[
            "outbound|80||example.default.svc.cluster.local"
        ]
        from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
        from google.protobuf.json_format import ParseDict

        socket = cluster["transport_socket"]["typed_config"]
        ctx = ParseDict({k: v for k, v in socket.items() if k != "@type"}, tls_pb2.UpstreamTlsContext())
        default = ctx.common_tls_context.combined_validation_context.default_validation_context
        got = [m.exact for m in default.match_subject_alt_names]
        got += [m.matcher.exact for m in default.match_typed_subject_alt_names]
        assert sorted(got) == sorted(sans)


# --- lds_test.go -------------------------------------------------------------------------------------

NS_SCOPE = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default-sidecar-scope, namespace: istio-config}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-config}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default, namespace: istio-config}
spec: {host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: http1, namespace: ns1}
spec:
  host: http1.ns1.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: http1, namespace: ns1}
spec:
  hosts: [http1.ns1.svc.cluster.local]
  http:
  - route:
    - {destination: {host: http1.ns1.svc.cluster.local, subset: v1}, weight: 70}
    - {destination: {host: http1.ns1.svc.cluster.local, subset: v2}, weight: 30}
"""


def ns_scope_entries() -> list[str]:
    out = []
    for ns, net in (("ns1", "100.1"), ("ns2", "200.1")):
        for i, (name, port, proto) in enumerate(
            (("http1", 8080, "HTTP2"), ("http2", 8080, "HTTP2"), ("tcp1", 3306, "TCP"))
        ):
            labels = ", labels: {version: v1}" if (ns, name) == ("ns1", "http1") else ""
            extra = f"\n- {{address: {net}.2.1, labels: {{version: v2}}}}" if labels else ""
            out.append(doc("ServiceEntry", name, ns, f"hosts: [{name}.{ns}.svc.cluster.local]\n"
                           f"ports: [{{number: {port}, name: {proto.lower()}, protocol: {proto}}}]\n"
                           "location: MESH_INTERNAL\nresolution: STATIC\n"
                           f"endpoints:\n- {{address: {net}.1.{i + 1}{labels}}}{extra}"))  # fmt: skip
    return out


def test_lds_with_default_sidecar() -> None:
    # TestLDSWithDefaultSidecar: the root namespace's Sidecar scopes ns1's proxy to ns1; the DR in the
    # root namespace (ISTIO_MUTUAL for *.local) applies; http1's route splits 70/30 over its subsets.
    snap = static_config(NS_SCOPE, *ns_scope_entries(), root="istio-config")
    proxy = sidecar_proxy("ns1", ip="100.1.1.2")
    outbound = {n for n in generated(snap, proxy, naming.CLUSTER_TYPE) if n.startswith("outbound|")}
    assert outbound == {
        "outbound|8080||http1.ns1.svc.cluster.local",
        "outbound|8080|v1|http1.ns1.svc.cluster.local",
        "outbound|8080|v2|http1.ns1.svc.cluster.local",
        "outbound|8080||http2.ns1.svc.cluster.local",
        "outbound|3306||tcp1.ns1.svc.cluster.local",
    }
    table = generated(snap, proxy, naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE})[naming.HTTP_PROXY_ROUTE]
    names = {vh["name"] for vh in table["virtual_hosts"]}
    assert {"http1.ns1.svc.cluster.local:8080", "http2.ns1.svc.cluster.local:8080"} <= names
    assert not any("ns2" in n for n in names)
    (http1,) = [vh for vh in table["virtual_hosts"] if vh["name"] == "http1.ns1.svc.cluster.local:8080"]
    # (Isthmus's CONNECT route comes first: tunnels through the HTTP proxy, DESIGN §3.)
    (default,) = [r for r in http1["routes"] if r["match"].get("prefix") == "/"]
    weighted = default["route"]["weighted_clusters"]["clusters"]
    assert {c["name"]: c["weight"] for c in weighted} == {
        "outbound|8080|v1|http1.ns1.svc.cluster.local": 70,
        "outbound|8080|v2|http1.ns1.svc.cluster.local": 30,
    }
    # The root namespace's rule (ISTIO_MUTUAL for *.local) applies where ns1 has none (http2); http1's own
    # rule (subsets only) replaces it, as istiod does without DestinationRule inheritance.
    clusters = generated(snap, proxy, naming.CLUSTER_TYPE)
    http2 = clusters["outbound|8080||http2.ns1.svc.cluster.local"]
    assert http2["transport_socket"]["typed_config"]["sni"] == "outbound_.8080_._.http2.ns1.svc.cluster.local"
    assert "transport_socket" not in clusters["outbound|8080||http1.ns1.svc.cluster.local"]


SIDECAR_WITHOUT_SERVICE = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default-sidecar-scope, namespace: istio-config}
spec:
  egress: [{hosts: ["./*", "istio-system/istio-telemetry.istio-system.svc.cluster.local"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-telemetry, namespace: istio-system}
spec:
  hosts: [istio-telemetry.istio-system.svc.cluster.local]
  addresses: [1.1.1.1]
  ports: [{number: 15004, name: mtls, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http1, namespace: ns1}
spec:
  hosts: [http1.ns1.svc.cluster.local]
  addresses: [2.1.1.1]
  ports: [{number: 8081, name: http, protocol: HTTP2}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 100.1.1.1, labels: {version: v1}, ports: {http: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http2, namespace: ns2}
spec:
  hosts: [http2.ns2.svc.cluster.local]
  addresses: [2.1.1.2]
  ports: [{number: 8082, name: http, protocol: HTTP2}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 100.2.1.1, ports: {http: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: consumerapp, namespace: consumerns}
spec:
  egress: [{hosts: ["ns1/*", "istio-system/istio-telemetry.istio-system.svc.cluster.local"]}]
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http-admin}
    defaultEndpoint: 127.0.0.1:8080
  workloadSelector: {labels: {app: consumeronly}}
"""


def test_lds_with_sidecar_for_workload_without_service() -> None:
    # TestLDSWithSidecarForWorkloadWithoutService: the ingress port 9080 is served although no Service
    # selects the workload; outbound reaches ns1's http1 on 8081 (its one EDS cluster) and not ns2.
    # defaultEndpoint 127.0.0.1:8080 names the app's port 8080: the Workload declares it (DESIGN §3).
    pod = Pod("consumer-0", "consumerns", "98.1.1.1", {"app": "consumeronly"}, workload="consumer",
              app_ports={8080: 41080})  # fmt: skip
    snap = static_config(SIDECAR_WITHOUT_SERVICE, pods=[pod], root="istio-config")
    proxy = Proxy.of_pod(pod)
    lds = generated(snap, proxy, naming.LISTENER_TYPE)
    ports = {lis["address"]["socket_address"].get("port_value") for lis in lds.values()}
    assert 9080 in ports and 15001 in ports
    cds = generated(snap, proxy, naming.CLUSTER_TYPE)
    eds_clusters = {n for n, c in cds.items() if n.startswith("outbound|") and c.get("type") in (None, "EDS")
                    and "eds_cluster_config" in c}  # fmt: skip
    assert eds_clusters == {"outbound|8081||http1.ns1.svc.cluster.local"}
    assert "inbound|9080||" in cds
    table = generated(snap, proxy, naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE})[naming.HTTP_PROXY_ROUTE]
    assert "http1.ns1.svc.cluster.local:8081" in {vh["name"] for vh in table["virtual_hosts"]}


INGRESS_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend, namespace: istio-system}
spec:
  hosts: [https.secure.com]
  addresses: [1.1.1.2]
  ports: [{number: 15004, name: https, protocol: HTTPS}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 1.2.3.4}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.bookinfo.com"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.bookinfo.com"]
    tls: {mode: SIMPLE, serverCertificate: /etc/certs/servercert.pem, privateKey: /etc/certs/privatekey.pem}
  - port: {number: 443, name: https-passthru, protocol: HTTPS}
    hosts: [https.secure.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 443, name: tls-passthru, protocol: TLS}
    hosts: [tls.secure.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: istio-system}
spec:
  hosts: ["*.bookinfo.com"]
  gateways: [istio-system/istio-ingressgateway]
  http: [{route: [{destination: {host: www.bookinfo.com, port: {number: 80}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: https, namespace: istio-system}
spec:
  hosts: [https.secure.com]
  gateways: [istio-system/istio-ingressgateway]
  tls: [{match: [{sniHosts: [https.secure.com]}], route: [{destination: {host: https.secure.com, port: {number: 443}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls, namespace: istio-system}
spec:
  hosts: [tls.secure.com]
  gateways: [istio-system/istio-ingressgateway]
  tls: [{match: [{sniHosts: [tls.secure.com]}], route: [{destination: {host: https.secure.com, port: {number: 443}}}]}]
"""


def test_lds_with_ingress_gateway() -> None:
    # TestLDSWithIngressGateway: two listeners (80 and 443); 443 has three filter chains (the SIMPLE
    # termination and the two passthrough SNI hosts).
    pod = Pod("gw-0", "istio-system", "99.1.1.1", {"istio": "ingressgateway"}, workload="gw", gateway=True)
    snap = static_config(INGRESS_GATEWAY, pods=[pod])
    lds = generated(snap, Proxy.of_pod(pod), naming.LISTENER_TYPE)
    by_port = {lis["address"]["socket_address"]["port_value"]: lis for lis in lds.values()}
    assert set(by_port) == {80, 443}
    assert len(by_port[443]["filter_chains"]) == 3


# --- rds_test.go: TestRDS -----------------------------------------------------------------------------


def test_rds_gateway_route_names_and_a_bad_route() -> None:
    # "gateway_new": the route names istiod gives a gateway (http.<port>, https.<port>.<server port
    # name>.<gateway>.<namespace>); "sidecar_badroute": a name no listener uses gets no resource (the
    # server still answers the request, with nothing in it).
    gw = doc("Gateway", "my-gateway", "testns", """
selector: {app: my-gateway-controller}
servers:
- {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: ['*']
  tls: {mode: SIMPLE, serverCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem}
""")  # fmt: skip
    vs = doc("VirtualService", "all", "testns", "hosts: ['*']\ngateways: [my-gateway]\n"
             "http: [{route: [{destination: {host: backend.example.com}}]}]")  # fmt: skip
    pod = Pod(
        "gw-0", "istio-system", "10.3.0.1", {"app": "my-gateway-controller"}, workload="gw", gateway=True
    )
    snap = static_config(gw, vs, pods=[pod])
    proxy = Proxy.of_pod(pod)
    routes, _ = discovered_names(MeshGenerator().generate(snap, proxy, naming.LISTENER_TYPE, None))
    assert routes == {"http.80", "https.443.https.my-gateway.testns"}
    assert set(generated(snap, proxy, naming.ROUTE_TYPE, routes)) == routes
    assert generated(snap, sidecar_proxy("testns"), naming.ROUTE_TYPE, {"ht&p"}) == {}


# --- VirtualService-only changes: what Isthmus reuses from the snapshot before --------------------
# istiod regenerates every type for the proxies a VirtualService reaches (proxy_dependencies.go); Isthmus
# reuses clusters, endpoints and sidecar listeners after a VirtualService-only change. Each flavour of
# VirtualService must still reach every proxy exactly as a fresh build would.

VS_FLAVOURS = {
    "http timeout": "hosts: [backend.backend.svc.cluster.local]\n"
    "http: [{route: [{destination: {host: backend.backend.svc.cluster.local}}], timeout: 2s}]",
    "http subset": "hosts: [backend.backend.svc.cluster.local]\n"
    "http: [{route: [{destination: {host: backend.backend.svc.cluster.local, subset: v1}}]}]",
    "tcp": "hosts: [backend.backend.svc.cluster.local]\n"
    "tcp: [{match: [{port: 80}], route: [{destination: {host: svc1.ns1.svc.cluster.local}}]}]",
    "tls": "hosts: [backend.backend.svc.cluster.local]\n"
    "tls: [{match: [{port: 80, sniHosts: [backend.backend.svc.cluster.local]}], "
    "route: [{destination: {host: svc1.ns1.svc.cluster.local}}]}]",
    "mirror to another service": "hosts: [backend.backend.svc.cluster.local]\n"
    "http: [{route: [{destination: {host: backend.backend.svc.cluster.local}}], "
    "mirror: {host: svc1.ns1.svc.cluster.local}}]",
    "gateway and mesh": "hosts: [backend.backend.svc.cluster.local, example.com]\n"
    "gateways: [mesh, gateways/a]\n"
    "http: [{route: [{destination: {host: svc1.ns1.svc.cluster.local}}]}]",
}
SIDECAR_BACKEND_ONLY = doc("Sidecar", "default", "ns1", "egress: [{hosts: [backend/*]}]")
DR_SUBSETS = doc(
    "DestinationRule",
    "subsets",
    "backend",
    "host: backend.backend.svc.cluster.local\nsubsets: [{name: v1, labels: {app: backend}}]",
)


@pytest.mark.parametrize("flavour", sorted(VS_FLAVOURS))
@pytest.mark.parametrize("scoped", [False, True], ids=["all visible", "Sidecar imports backend only"])
def test_virtual_service_only_changes_reach_every_proxy(flavour: str, scoped: bool) -> None:
    docs = [*GW_A_SETUP, DR_SUBSETS] + ([SIDECAR_BACKEND_ONLY] if scoped else [])
    mesh = Mesh.of(*docs)
    vs = doc("VirtualService", "vs", "backend", VS_FLAVOURS[flavour])
    check(mesh, lambda m: m.apply(vs), pushed=set())
    assert mesh.cp.snapshot.routes_changed_from is not None  # the reuse path was the one taken
    check(mesh, lambda m: m.delete("VirtualService", "backend", "vs"), pushed=set())


# --- Endpoint-only changes: EDS pushes and the reuse behind them (eds_test.go's incremental pushes) --

BACKEND_V1 = Pod("backend-1", "backend", "127.9.0.23", {"app": "backend", "version": "v1"}, workload="backend-v1",
                 app_ports={8080: 41013})  # fmt: skip
DR_VERSION = doc(
    "DestinationRule",
    "versions",
    "backend",
    "host: backend.backend.svc.cluster.local\nsubsets: [{name: v1, labels: {version: v1}}]",
)


@pytest.mark.parametrize(
    "step",
    ["new pod in a subset", "pod not ready", "pod removed", "other pod removed"],
)
def test_endpoint_changes_reach_every_proxy(step: str) -> None:
    mesh = Mesh.of(*GW_A_SETUP, ROUTE, DR_VERSION)
    mesh.upsert_pod(BACKEND_V1)
    mesh.upsert_pod(Pod("loner-0", "unrelated", "127.9.0.25", {"app": "loner"}, workload="loner"))
    changes = {
        "new pod in a subset": lambda m: m.upsert_pod(
            dataclasses.replace(BACKEND_V1, name="backend-2", ip="127.9.0.24")
        ),
        "pod not ready": lambda m: m.upsert_pod(dataclasses.replace(BACKEND_V1, ready=False)),
        "pod removed": lambda m: m.remove_pod("backend", "backend-1"),
        # A pod no service selects: no endpoint changes, nothing to push (its own proxy is gone with it).
        "other pod removed": lambda m: m.remove_pod("unrelated", "loner-0"),
    }
    request = check(mesh, changes[step], pushed=set())
    if step == "other pod removed":
        assert request is None
    else:
        assert request is not None and not request.full, request
        assert "outbound|80|v1|backend.backend.svc.cluster.local" in request.eds_only_clusters
