"""DNS ServiceEntries whose endpoint (or host) is a mesh host name resolve it through the registry.

Istio's integration tests (pilot/outboundtrafficpolicy, egress) write a ServiceEntry endpoint as
`destination.<ns>.svc.cluster.local` with `resolution: DNS`: kube DNS gives the Service's ClusterIP and
kube-proxy one of its pods at the port's targetPort. Isthmus has no DNS server for mesh names (DESIGN §3),
so the registry resolves them: the ServiceEntry's endpoints become the named service's, keeping what
istiod reads from the ServiceEntry endpoint (tlsMode, labels, workload). Names the registry does not know
still go to Envoy's DNS resolver.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from gen_helpers import generate, sidecar

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.mesh.control_plane import ControlPlane
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Endpoint, Pod, Resolution, Service
from isthmus.xds.gen import naming
from isthmus.xds.push_queue import PushRequest

DEST = "destination.app.svc.cluster.local"

BASE = """
apiVersion: v1
kind: Service
metadata: {name: destination, namespace: app}
spec:
  selector: {app: destination}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp, port: 9000, targetPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: app}
spec:
  selector: {app: nobody}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

PODS = [
    Pod("destination-0", "app", "127.7.0.2", {"app": "destination"}, workload="destination", service_account="destination", app_ports={8080: 41001, 9090: 41002}),
    Pod("destination-1", "app", "127.7.0.3", {"app": "destination"}, workload="destination", service_account="destination", app_ports={8080: 41003, 9090: 41004}),
    Pod("destination-2", "app", "127.7.0.4", {"app": "destination"}, workload="destination", ready=False),
    Pod("web-0", "default", "127.7.0.5", {"app": "web", "version": "v1"}, workload="web", app_ports={8080: 40005}),
]  # fmt: skip


def se(
    name: str,
    host: str,
    endpoints: str | None,
    *,
    ports: str = "[{name: http, number: 80, protocol: HTTP}]",
    resolution: str = "DNS",
    location: str = "MESH_INTERNAL",
    namespace: str = "default",
) -> str:
    eps = f"\n  endpoints: {endpoints}" if endpoints is not None else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [{host}]
  location: {location}
  resolution: {resolution}
  ports: {ports}{eps}
"""


def _store(*docs: str, pods: list[Pod] | None = None) -> Store:
    store = Store()
    text = "\n---\n".join(textwrap.dedent(d) for d in (BASE, *docs))
    store.apply(loader.load_text(text, "test.yaml"), "test")
    for pod in PODS if pods is None else pods:
        store.upsert_pod(pod)
    return store


def build(*docs: str, pods: list[Pod] | None = None) -> Snapshot:
    store = _store(*docs, pods=pods)
    return Snapshot.build(1, store.list(), store.pods())


def entry(snap: Snapshot, host: str) -> Service:
    svc = snap.registry.service(host, "default")
    assert svc is not None, host
    return svc


def addresses(snap: Snapshot, host: str, port: int) -> list[tuple[str, int, bool]]:
    return [(e.address, e.port, e.ready) for e in snap.registry.endpoints(entry(snap, host), port)]


# --- the registry ------------------------------------------------------------------------------------


def test_endpoint_naming_a_service_resolves_to_its_pods_at_the_target_port() -> None:
    snap = build(se("ext", "some-external-site.com", f"[{{address: {DEST}}}]"))
    svc = entry(snap, "some-external-site.com")
    # Every name resolved through the registry: EDS, updated with the pods as any service.
    assert svc.resolution is Resolution.CLIENT_SIDE_LB and svc.resolved_by_registry
    # Service port 80 -> targetPort 8080; the not-ready pod is kept, as not ready (EDS leaves it out).
    assert addresses(snap, "some-external-site.com", 80) == [
        ("127.7.0.2", 8080, True),
        ("127.7.0.3", 8080, True),
        ("127.7.0.4", 8080, False),
    ]


def test_endpoint_keeps_what_istiod_reads_from_the_service_entry_endpoint() -> None:
    """tlsMode (getTLSModeFromWorkloadEntry: the label, else an identity), labels, weight and no workload
    (istiod's empty config key): the DNS cluster's endpoint in istiod is the ServiceEntry's, whatever its
    name resolves to."""
    snap = build(
        se("plain", "plain.example", f"[{{address: {DEST}, labels: {{v: one}}, weight: 3}}]"),
        se("meshed", "meshed.example", f"[{{address: {DEST}, serviceAccount: destination}}]"),
        se("label", "label.example", f"[{{address: {DEST}, labels: {{security.istio.io/tlsMode: istio}}}}]"),
    )
    plain = snap.registry.endpoints(entry(snap, "plain.example"), 80)[0]
    assert (plain.sidecar, dict(plain.labels), plain.weight, plain.workload, plain.entry_own) == (
        False,
        {"v": "one"},
        3,
        "",
        True,
    )
    assert plain.namespace == "default" and plain.instance == DEST  # the inline endpoint's, as before
    meshed = snap.registry.endpoints(entry(snap, "meshed.example"), 80)[0]
    assert (meshed.sidecar, meshed.service_account) == (True, "destination")
    assert snap.registry.endpoints(entry(snap, "label.example"), 80)[0].sidecar


def test_port_of_the_named_service_from_the_endpoint_port_or_the_target_port() -> None:
    snap = build(
        se("by-ports", "a.example", f"[{{address: {DEST}, ports: {{tcp: 9000}}}}]", ports="[{name: tcp, number: 5000, protocol: TCP}]"),
        se("by-target", "b.example", f"[{{address: {DEST}}}]", ports="[{name: tcp, number: 5000, protocol: TCP, targetPort: 9000}]"),
        se("by-number", "c.example", f"[{{address: {DEST}}}]", ports="[{name: tcp, number: 9000, protocol: TCP}]"),
    )  # fmt: skip
    for host, port in (("a.example", 5000), ("b.example", 5000), ("c.example", 9000)):
        assert [(a, p) for a, p, ready in addresses(snap, host, port) if ready] == [
            ("127.7.0.2", 9090),
            ("127.7.0.3", 9090),
        ], host


def test_named_service_without_endpoints_or_without_the_port_leaves_an_empty_eds_cluster() -> None:
    """Cluster DNS answers for a Service with no ready pod (its ClusterIP refuses connections) and for a
    port it lacks: the name is the registry's, and there is nothing to reach (503, not a DNS lookup)."""
    snap = build(
        se("empty", "empty.example", "[{address: empty.app.svc.cluster.local}]"),
        se("no-port", "noport.example", f"[{{address: {DEST}}}]", ports="[{name: http, number: 81, protocol: HTTP}]"),
    )  # fmt: skip
    for host, port in (("empty.example", 80), ("noport.example", 81)):
        svc = entry(snap, host)
        assert svc.resolution is Resolution.CLIENT_SIDE_LB
        assert snap.registry.endpoints(svc, port) == ()


def test_names_the_registry_does_not_know_still_go_to_dns() -> None:
    snap = build(se("ext", "httpbin.org", None), se("other", "api.example", "[{address: api.example.com}]"))
    for host in ("httpbin.org", "api.example"):
        svc = entry(snap, host)
        assert svc.resolution is Resolution.DNS and not svc.resolved_by_registry
        assert all(e.hostname for e in snap.registry.endpoints(svc, 80))


def test_host_of_a_service_entry_without_endpoints_resolves_to_another_service_of_that_name() -> None:
    """A DNS ServiceEntry without endpoints resolves its own host: the Kubernetes Service of that name
    (never itself), here in another namespace so that both exist side by side."""
    snap = build(se("alias", DEST, None))
    svc = entry(snap, DEST)
    assert svc.source.kind == "ServiceEntry" and svc.resolution is Resolution.CLIENT_SIDE_LB
    assert [(a, p) for a, p, ready in addresses(snap, DEST, 80) if ready] == [
        ("127.7.0.2", 8080),
        ("127.7.0.3", 8080),
    ]


def test_a_static_service_entry_host_resolves_to_its_endpoints() -> None:
    snap = build(
        se("vm", "vm.internal", "[{address: 10.1.0.1}]", resolution="STATIC"),
        se("via", "via.example", "[{address: vm.internal}]"),
    )
    assert addresses(snap, "via.example", 80) == [("10.1.0.1", 80, True)]


def test_mixed_names_keep_strict_dns_and_round_robin_is_left_alone() -> None:
    snap = build(
        se("mixed", "mixed.example", f"[{{address: {DEST}}}, {{address: api.example.com}}]"),
        se("rr", "rr.example", f"[{{address: {DEST}}}]", resolution="DNS_ROUND_ROBIN"),
    )
    mixed = entry(snap, "mixed.example")
    assert mixed.resolution is Resolution.DNS
    assert sorted(e.address for e in snap.registry.endpoints(mixed, 80) if e.ready) == [
        "127.7.0.2",
        "127.7.0.3",
        "api.example.com",
    ]
    rr = entry(snap, "rr.example")  # one name, resolved: EDS balances over the pods
    assert rr.resolution is Resolution.CLIENT_SIDE_LB and len(snap.registry.endpoints(rr, 80)) == 3


def test_workload_entry_at_a_mesh_name_selected_by_a_dns_service_entry() -> None:
    snap = build(
        f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm, namespace: default}}
spec: {{address: {DEST}, labels: {{role: vm}}}}
""",
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [vms.example]
  location: MESH_INTERNAL
  resolution: DNS
  ports: [{name: http, number: 80, protocol: HTTP}]
  workloadSelector: {labels: {role: vm}}
""",
    )
    svc = entry(snap, "vms.example")
    assert svc.resolution is Resolution.CLIENT_SIDE_LB
    eps = [e for e in snap.registry.endpoints(svc, 80) if e.ready]
    assert [(e.address, e.port, e.instance) for e in eps] == [
        ("127.7.0.2", 8080, "vm"),
        ("127.7.0.3", 8080, "vm"),
    ]


def test_external_name_services_are_cnames() -> None:
    snap = build(
        f"""
apiVersion: v1
kind: Service
metadata: {{name: alias, namespace: app}}
spec: {{type: ExternalName, externalName: {DEST}}}
---
apiVersion: v1
kind: Service
metadata: {{name: outside, namespace: app}}
spec: {{type: ExternalName, externalName: httpbin.org, ports: [{{name: http, port: 80}}]}}
""",
        se("via-alias", "a.example", "[{address: alias.app.svc.cluster.local}]"),
        se("via-outside", "b.example", "[{address: outside.app.svc.cluster.local}]"),
    )
    assert [a for a, _, ready in addresses(snap, "a.example", 80) if ready] == ["127.7.0.2", "127.7.0.3"]
    outside = entry(snap, "b.example")
    assert outside.resolution is Resolution.DNS  # the CNAME's target is left to DNS
    assert addresses(snap, "b.example", 80) == [("httpbin.org", 80, True)]


def test_names_that_resolve_to_each_other_do_not_loop() -> None:
    snap = build(
        se("a", "a.example", "[{address: b.example}]"), se("b", "b.example", "[{address: a.example}]")
    )
    assert entry(snap, "a.example").resolution is Resolution.DNS
    assert [e.hostname for e in snap.registry.endpoints(entry(snap, "a.example"), 80)] == [True]


# --- generated config ----------------------------------------------------------------------------------


def _clusters(snap: Snapshot) -> dict[str, dict[str, Any]]:
    return generate(snap, sidecar(), naming.CLUSTER_TYPE)


def _lb_endpoints(snap: Snapshot, cluster: str) -> list[dict[str, Any]]:
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]
    return [lb for group in cla.get("endpoints", []) for lb in group.get("lb_endpoints", [])]


def _address(lb: dict[str, Any]) -> tuple[str, int]:
    sa = lb["endpoint"]["address"]["socket_address"]
    return sa["address"], sa["port_value"]


def test_cluster_is_eds_with_the_pods_and_auto_mtls_from_the_service_entry_endpoint() -> None:
    snap = build(
        se("plain", "plain.example", f"[{{address: {DEST}}}]"),
        se(
            "meshed", "meshed.example", f"[{{address: {DEST}, labels: {{security.istio.io/tlsMode: istio}}}}]"
        ),
    )
    clusters = _clusters(snap)
    for host in ("plain.example", "meshed.example"):
        c = clusters[f"outbound|80||{host}"]
        assert c["type"] == "EDS" and "load_assignment" not in c
        # MESH_INTERNAL: auto mTLS picks per endpoint by its tlsMode metadata, as for any DNS cluster.
        assert [m["name"] for m in c["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]
    plain = _lb_endpoints(snap, "outbound|80||plain.example")
    assert [_address(lb) for lb in plain] == [("127.7.0.2", 8080), ("127.7.0.3", 8080)]
    # istiod: a ServiceEntry endpoint without tlsMode label or serviceAccount is tlsMode disabled.
    assert all("envoy.transport_socket_match" not in lb["metadata"]["filter_metadata"] for lb in plain)
    meshed = _lb_endpoints(snap, "outbound|80||meshed.example")
    assert all(
        lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
        for lb in meshed
    )


def test_mesh_external_entry_gets_no_auto_mtls_and_a_destination_rule_decides() -> None:
    snap = build(
        se("ext", "ext.example", f"[{{address: {DEST}}}]", location="MESH_EXTERNAL"),
        se("mtls", "mtls.example", f"[{{address: {DEST}}}]", location="MESH_EXTERNAL"),
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mtls, namespace: default}
spec:
  host: mtls.example
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
""",
    )
    clusters = _clusters(snap)
    ext = clusters["outbound|80||ext.example"]
    assert "transport_socket" not in ext and "transport_socket_matches" not in ext
    mtls = clusters["outbound|80||mtls.example"]
    assert mtls["transport_socket"]["name"] == "envoy.transport_sockets.tls"


def test_empty_named_service_still_has_its_cluster() -> None:
    snap = build(se("empty", "empty.example", "[{address: empty.app.svc.cluster.local}]"))
    assert _clusters(snap)["outbound|80||empty.example"]["type"] == "EDS"
    assert _lb_endpoints(snap, "outbound|80||empty.example") == []


def test_unknown_name_keeps_the_strict_dns_cluster() -> None:
    snap = build(se("ext", "httpbin.org", None))
    c = _clusters(snap)["outbound|80||httpbin.org"]
    assert c["type"] == "STRICT_DNS"
    assert [_address(lb) for lb in c["load_assignment"]["endpoints"][0]["lb_endpoints"]] == [
        ("httpbin.org", 80)
    ]


# --- pod changes -----------------------------------------------------------------------------------


def test_pod_change_behind_the_name_pushes_the_entry_endpoints() -> None:
    """A pod of the named service becoming ready changes the ServiceEntry's endpoints: an EDS push that
    names its cluster, and a snapshot equal to one built from scratch."""
    store = _store(se("ext", "some-external-site.com", f"[{{address: {DEST}}}]"))
    cp = ControlPlane(store)
    requests: list[PushRequest] = []
    cp.xds.update = lambda snapshot, request: requests.append(request)  # type: ignore[method-assign]
    cp.rebuild()
    pod = next(p for p in store.pods() if p.name == "destination-2")
    store.upsert_pod(dataclasses.replace(pod, ready=True))
    snap = cp.current()
    assert not requests[-1].full
    assert "outbound|80||some-external-site.com" in requests[-1].eds_only_clusters
    full = Snapshot.build(snap.version, store.list(), store.pods())
    assert snap.registry._endpoints == full.registry._endpoints
    assert [e.ready for e in snap.registry.endpoints(entry(snap, "some-external-site.com"), 80)] == [True] * 3
    eds = _lb_endpoints(snap, "outbound|80||some-external-site.com")
    assert ("127.7.0.4", 8080) in [_address(lb) for lb in eds]


def test_pod_change_elsewhere_stays_incremental() -> None:
    store = _store(se("ext", "some-external-site.com", f"[{{address: {DEST}}}]"))
    cp = ControlPlane(store)
    cp.xds.update = lambda snapshot, request: None  # type: ignore[method-assign]
    cp.rebuild()
    before = cp.snapshot
    store.upsert_pod(Pod("web-1", "default", "127.7.0.6", {"app": "web"}, workload="web"))
    snap = cp.current()
    # The ServiceEntry's endpoints were taken over (not rebuilt): update_registry's incremental path.
    key = ("some-external-site.com", "default", 80)
    assert snap.registry._endpoints[key] is before.registry._endpoints[key]


def test_endpoint_type_is_the_registry_one() -> None:
    snap = build(se("ext", "x.example", f"[{{address: {DEST}}}]"))
    assert all(
        isinstance(e, Endpoint) and not e.hostname
        for e in snap.registry.endpoints(entry(snap, "x.example"), 80)
    )
