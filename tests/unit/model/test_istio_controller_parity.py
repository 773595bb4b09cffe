"""Parity with istiod's registry controllers: what services and endpoints a sidecar gets as ServiceEntries,
WorkloadEntries, Services and pods come, change and go.

Cases follow istio/istio `pilot/pkg/serviceregistry/serviceentry/controller_test.go` (TestServiceDiscovery*,
TestWorkloadInstanceFullPush, TestNonServiceConfig, TestServicesDiff) with its fixtures from
`conversion_test.go`, and `pilot/pkg/serviceregistry/kube/controller/controller_test.go` (TestServices,
TestController_Service, TestController_ExternalNameService, TestController_GetPodLocality,
TestGetProxyServiceTargets*, TestEndpoints_WorkloadInstances, TestWorkloadInstanceHandlerMultipleEndpoints,
TestUpdateEdsCacheOnServiceUpdate, TestVisibilityNoneService, TestServiceUpdateNeedsPush). Conversion cases
already in test_istio_registry_parity.py and EDS cases in tests/unit/gen/test_istio_endpoint_parity.py are
not repeated.

How Istio's objects map here: Isthmus has no informers and no event stream; its registry is rebuilt from
the config and pods of a snapshot. An Istio test that applies a sequence of changes and checks the
controller after each is a sequence of registries built from the config as it stands after each step
(what a sidecar is sent then). A kube `WorkloadInstance` (a pod) or `Pod` is an Isthmus `Pod`; a
WorkloadEntry is a WorkloadEntry. GetProxyServiceTargets of a pod is `Registry.services_selecting` (and the
sidecar's inbound ports); GetEndpointsForPort is the registry's endpoints of (host, namespace, port).
Kubernetes object names must be lowercase, so Istio's camelCase names are kebab-cased. Pod sequences also
check that the incremental registry update (update_registry) agrees with a full build at every step.

Found here and fixed: a WorkloadEntry selected by a Kubernetes Service whose port has a numeric targetPort
is reached on its `ports` entry named like the Service port when it has one (istiod's
findServiceTargetPort / serviceInstanceFromWorkloadInstance); a pod selected by a workloadSelector
ServiceEntry gets the entry's ports and protocols on its inbound ports (model/snapshot.py); a pod change
under a DNS ServiceEntry's selector is pushed in full, since a STRICT_DNS cluster carries its endpoints
inline in CDS (mesh/control_plane.py).

The service-account annotations of TestGetProxyServiceTargets / TestController_GetIstioServiceAccounts are
checked in test_istio_registry_remaining_parity.py.

Departures, by design (see test_istio_registry_parity.py for the conversion ones):
- locality: a pod's locality leaves out empty trailing parts ("region1/zone1", not istiod's
  "region1/zone1/"), so a label and a WorkloadEntry `locality` naming one place are one locality.
- ExternalName Services keep their external name as an endpoint (TestExternalNameServiceInstances expects
  none in istiod's endpoint index; see test_istio_registry_parity.py's ExternalName cases).
- push events (`xds full`, `eds`, `eds cache`, `service`), TestServicesDiff's own function and
  TestServiceUpdateNeedsPush are not ported as such: the observable part, whether the services a sidecar
  gets changed, is checked by comparing the registry's Service objects before and after.

Skipped (no Isthmus equivalent): informer ordering and memory-leak checks (TestEndpointUpdateBeforePodUpdate,
TestWorkloadInstanceHandler_WorkloadInstanceIndex, assertControllerEmpty, the ip2instance/instancesBySE size
checks); node ports, node objects and TestStripNodeUnusedFields/TestStripPodUnusedFields; TestProxyK8sHostnameLabel
(no nodes); meshNetworks and multi-network endpoint labels (one cluster, one network); discoverySelectors
(TestController_ServiceWithFixedDiscoveryNamespaces, ...WithChangingDiscoveryNamespaces,
TestControllerResourceScoping: every namespace is discovered); TestEndpointUpdate (a headless Service keeps
EDS here, so its endpoint changes need no full push); TestWorkloadEntryOnlyMode (no such mode); the
Test_autoAllocateIP_* cases (no auto-allocated addresses: explicit proxies route by Host); proxy lookup of
WorkloadEntries by proxy ID or IP (TestGetProxyServiceTargets_WorkloadInstance, the WorkloadEntry half of
expectProxyInstances: WorkloadEntries are not proxies Isthmus runs);
TestServiceDiscoveryGetProxyServiceTargets (a proxy whose IP is a ServiceEntry's inline endpoint: Isthmus pods
take their addresses from the runner's block and inbound ports come from the services that select the pod);
dual-stack WorkloadEntry addresses (one address per WorkloadEntry in the API).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from isthmus.api.loader import load_text
from isthmus.config.store import Store
from isthmus.mesh.control_plane import ControlPlane
from isthmus.registry.build import Registry, build_registry, locality_from_labels, update_registry
from isthmus.registry.types import Endpoint, Pod, Protocol, Resolution, Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))
from gen_helpers import clusters, generate, sidecar, snapshot

from isthmus.xds.gen import naming
from isthmus.xds.push_queue import PushRequest

Ep = tuple[int, str, int]  # (service port, endpoint address, endpoint port)


def registry(*docs: str, pods: list[Pod] | None = None) -> Registry:
    text = "\n---\n".join(textwrap.dedent(d) for d in docs if d)
    return build_registry(load_text(text, "test.yaml") if text.strip() else [], pods or [])


def service_entry(name: str, namespace: str, spec: str, *, meta: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}{meta}}}\nspec:\n{body}\n"
    )


def workload_entry(name: str, namespace: str, spec: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )


def kube_service(name: str, namespace: str, spec: str, *, meta: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}{meta}}}\nspec:\n{body}\n"


def eps(reg: Registry, host: str, namespace: str, port: int | None = None) -> list[Ep]:
    """Every endpoint of (host, namespace), sorted; of one service port when `port` is given. Read per
    endpoint key once, as istiod's GetEndpointsForPort reads the host's shards once."""
    ports = sorted({p.port for s in reg.by_host.get(host, []) if s.namespace == namespace for p in s.ports})
    out: list[Ep] = []
    svc = reg.service(host, namespace)
    if svc is None:
        return out
    for number in ports:
        if port is None or number == port:
            out += [(number, e.address, e.port) for e in reg.endpoints(svc, number)]
    return sorted(out)


def all_endpoints(reg: Registry) -> dict[tuple[str, str, int], tuple[Endpoint, ...]]:
    return {
        (s.hostname, s.namespace, p.port): reg.endpoints(s, p.port) for s in reg.services for p in s.ports
    }


def pod_steps(*docs: str, steps: list[list[Pod]]) -> list[Registry]:
    """The registries of one config as its pods change step by step, as the control plane gets them: a
    pod change updates the previous registry incrementally (update_registry) when it can, which must
    give what a full build of the same inputs gives."""
    resources = load_text("\n---\n".join(textwrap.dedent(d) for d in docs), "test.yaml")
    out: list[Registry] = []
    for pods in steps:
        full = build_registry(resources, pods)
        incremental = update_registry(out[-1], pods) if out else None
        if incremental is not None:
            assert all_endpoints(incremental) == all_endpoints(full)
            full = incremental
        out.append(full)
    return out


def on_both_ports(*addresses: str) -> list[Ep]:
    """A workload selected by the `selector` entries: one endpoint on 444 and one on 445 per address."""
    return sorted((port, a, port) for a in addresses for port in (444, 445))


# --- fixtures of serviceentry/conversion_test.go ----------------------------------------------------

HTTP_DNS = service_entry(
    "http-dns",
    "http-dns",
    """
    hosts: ["*.google.com"]
    ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
    endpoints:
    - {address: us.google.com, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: uk.google.com, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: de.google.com, labels: {foo: bar, security.istio.io/tlsMode: istio}}
    location: MESH_EXTERNAL
    resolution: DNS
    """,
)
HTTP_DNS_RR = service_entry(
    "http-dnsrr",
    "http-dnsrr",
    """
    hosts: ["*.istio.io"]
    ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
    endpoints:
    - {address: api-v1.istio.io, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
    location: MESH_EXTERNAL
    resolution: DNS_ROUND_ROBIN
    """,
)
TCP_STATIC = service_entry(
    "tcp-static",
    "tcp-static",
    """
    hosts: [tcpstatic.com]
    addresses: [172.217.0.1]
    ports: [{number: 444, name: tcp-444, protocol: tcp}]
    endpoints:
    - {address: 1.1.1.1, labels: {security.istio.io/tlsMode: istio}}
    - {address: 2.2.2.2, labels: {security.istio.io/tlsMode: istio}}
    location: MESH_EXTERNAL
    resolution: STATIC
    """,
)
TCP_DNS_SPEC = """
    hosts: [tcpdns.com]
    ports: [{number: 444, name: tcp-444, protocol: tcp}]
    endpoints:
    - {address: lon.google.com, labels: {security.istio.io/tlsMode: istio}}
    - {address: in.google.com, labels: {security.istio.io/tlsMode: istio}}
    location: MESH_EXTERNAL
    resolution: DNS
"""
HTTP_STATIC = service_entry(
    "http-static",
    "http-static",
    """
    hosts: ["*.google.com"]
    ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
    endpoints:
    - {address: 2.2.2.2, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: 3.3.3.3, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: 4.4.4.4, ports: {http-port: 1080}, labels: {foo: bar}}
    location: MESH_EXTERNAL
    resolution: STATIC
    """,
)
HTTP_STATIC_BASE: list[Ep] = [
    (80, "2.2.2.2", 7080),
    (80, "3.3.3.3", 1080),
    (80, "4.4.4.4", 1080),
    (8080, "2.2.2.2", 18080),
    (8080, "3.3.3.3", 8080),
    (8080, "4.4.4.4", 8080),
]


def overlay(
    *extra_endpoints: str,
    namespace: str = "http-static",
    hosts: str = '["*.google.com"]',
    target_port: str = "",
) -> str:
    """httpStaticOverlay: a second entry for *.google.com in the same namespace, on port 4567 (named
    http-port, as httpStatic's port 80), with endpoint 5.5.5.5; `extra_endpoints` are appended."""
    endpoints = "\n".join(
        ["- {address: 5.5.5.5, labels: {overlay: bar}}", *(f"- {e}" for e in extra_endpoints)]
    )
    spec = (
        f"hosts: {hosts}\n"
        f"ports: [{{number: 4567, name: http-port, protocol: http{target_port}}}]\n"
        f"endpoints:\n{endpoints}\n"
        "location: MESH_EXTERNAL\nresolution: STATIC\n"
    )
    return service_entry("http-static-overlay", namespace, spec)


SIX = "{address: 6.6.6.6, labels: {other: bar}}"
SIX_AGAIN = "{address: 6.6.6.6, labels: {some-new-label: bar}}"


def selector_entry(
    name: str = "selector",
    namespace: str = "selector",
    *,
    host: str = "selector.com",
    app: str = "wle",
    resolution: str = "STATIC",
) -> str:
    """`selector` / `selectorDNS` / `dnsSelector`: ports tcp-444 and http-445, a workloadSelector."""
    spec = f"""
        hosts: [{host}]
        ports: [{{number: 444, name: tcp-444, protocol: tcp}}, {{number: 445, name: http-445, protocol: http}}]
        workloadSelector: {{labels: {{app: {app}}}}}
        location: MESH_INTERNAL
        resolution: {resolution}
    """
    return service_entry(name, namespace, spec)


SELECTOR = selector_entry()
DNS_SELECTOR = selector_entry(
    "dns-selector", "dns-selector", host="dns.selector.com", app="dns-wle", resolution="DNS"
)
SELECTOR_DNS = selector_entry(resolution="DNS")


def wle(name: str, address: str, app: str = "wle", namespace: str = "selector", extra: str = "") -> str:
    return workload_entry(
        name, namespace, f"{{address: {address}, labels: {{app: {app}}}, serviceAccount: default{extra}}}"
    )


def pod(name: str, ip: str, namespace: str = "selector", **labels: str) -> Pod:
    return Pod(name, namespace, ip, labels or {"app": "wle"}, workload=name, service_account="default")


# --- serviceentry/controller_test.go -----------------------------------------------------------------


def test_service_discovery_services() -> None:
    """TestServiceDiscoveryServices: one service per host, with its ports, location and resolution."""
    reg = registry(HTTP_DNS, HTTP_DNS_RR, TCP_STATIC)
    got = {
        s.hostname: (tuple((p.name, p.port) for p in s.ports), s.mesh_external, s.resolution, s.addresses)
        for s in reg.services
    }
    http_ports = (("http-port", 80), ("http-alt-port", 8080))
    assert got == {
        "*.istio.io": (http_ports, True, Resolution.DNS_ROUND_ROBIN, ()),
        "*.google.com": (http_ports, True, Resolution.DNS, ()),
        "tcpstatic.com": ((("tcp-444", 444),), True, Resolution.CLIENT_SIDE_LB, ("172.217.0.1",)),
    }


def test_service_discovery_get_service() -> None:
    """TestServiceDiscoveryGetService: a known host is found, an unknown one is not."""
    reg = registry(HTTP_DNS, TCP_STATIC)
    assert reg.service("does.not.exist.local") is None
    svc = reg.service("*.google.com")
    assert svc is not None and svc.hostname == "*.google.com"


def test_service_discovery_service_delete_overlapping() -> None:
    """TestServiceDiscoveryServiceDeleteOverlapping: a second, identical ServiceEntry (another name)
    selecting the same WorkloadEntry gives the host duplicate instances (istiod: "arguable whether this
    is correct"); deleting one entry brings back the original set, not an empty one."""
    we = wle("wl", "2.2.2.2")
    alt = SELECTOR.replace("name: selector,", "name: alt,")
    assert eps(registry(we, SELECTOR), "selector.com", "selector") == on_both_ports("2.2.2.2")
    both = registry(we, SELECTOR, alt)
    assert eps(both, "selector.com", "selector") == on_both_ports("2.2.2.2", "2.2.2.2")
    assert eps(registry(we, alt), "selector.com", "selector") == on_both_ports("2.2.2.2")


def test_two_service_entries_with_different_hosts_select_the_same_workload_entry() -> None:
    """A WorkloadEntry is an instance of every entry of its namespace whose selector picks it."""
    other = selector_entry("other", host="other.com")
    reg = registry(wle("wl", "2.2.2.2"), SELECTOR, other)
    assert eps(reg, "selector.com", "selector") == on_both_ports("2.2.2.2")
    assert eps(reg, "other.com", "selector") == on_both_ports("2.2.2.2")


# TestServiceDiscoveryServiceUpdate: the config after each step -> endpoints of *.google.com in http-static.
OVERLAY_5: list[Ep] = [(4567, "5.5.5.5", 4567)]
SERVICE_UPDATE_STEPS: list[tuple[str, list[str], list[Ep]]] = [
    ("simple entry", [HTTP_STATIC], HTTP_STATIC_BASE),
    ("add entry", [HTTP_STATIC, overlay()], HTTP_STATIC_BASE + OVERLAY_5),
    ("add endpoint", [HTTP_STATIC, overlay(SIX)], HTTP_STATIC_BASE + OVERLAY_5 + [(4567, "6.6.6.6", 4567)]),
    # Two endpoints at one address with different labels are two instances.
    (
        "overlapping address",
        [HTTP_STATIC, overlay(SIX, SIX_AGAIN)],
        HTTP_STATIC_BASE + OVERLAY_5 + [(4567, "6.6.6.6", 4567)] * 2,
    ),
    ("update removes endpoint", [HTTP_STATIC, overlay()], HTTP_STATIC_BASE + OVERLAY_5),
    ("delete entry", [HTTP_STATIC], HTTP_STATIC_BASE),
    (
        "change target port",
        [HTTP_STATIC, overlay(SIX, target_port=", targetPort: 33333")],
        HTTP_STATIC_BASE + [(4567, "5.5.5.5", 33333), (4567, "6.6.6.6", 33333)],
    ),
]


@pytest.mark.parametrize(
    ("docs", "want"), [s[1:] for s in SERVICE_UPDATE_STEPS], ids=[s[0] for s in SERVICE_UPDATE_STEPS]
)
def test_service_discovery_service_update(docs: list[str], want: list[Ep]) -> None:
    """TestServiceDiscoveryServiceUpdate: entries of one host and namespace merge their endpoints, each on
    its own ports (the endpoint's `ports` map names the entry's own port)."""
    assert eps(registry(*docs), "*.google.com", "http-static") == sorted(want)


def test_service_discovery_service_update_other_namespace() -> None:
    """ "different namespace" / "delete entry": the same host in another namespace is another service,
    with only its own endpoints; deleting the first namespace's overlay leaves it as it was."""
    seven = "{address: 7.7.7.7, labels: {namespace: bar}}"
    other_ns = overlay(seven, namespace="other")
    reg = registry(HTTP_STATIC, overlay(SIX), other_ns)
    assert eps(reg, "*.google.com", "other") == [(4567, "5.5.5.5", 4567), (4567, "7.7.7.7", 4567)]
    assert eps(reg, "*.google.com", "http-static") == sorted(
        HTTP_STATIC_BASE + OVERLAY_5 + [(4567, "6.6.6.6", 4567)]
    )
    reg = registry(HTTP_STATIC, other_ns)
    assert eps(reg, "*.google.com", "http-static") == HTTP_STATIC_BASE
    assert eps(reg, "*.google.com", "other") == [(4567, "5.5.5.5", 4567), (4567, "7.7.7.7", 4567)]


def test_service_discovery_service_update_change_host() -> None:
    """ "change host": a host added to the overlay is a service of its own with the overlay's endpoints;
    removing it again removes that service."""
    reg = registry(HTTP_STATIC, overlay(SIX, hosts='["*.google.com", other.com]'))
    overlay_eps = OVERLAY_5 + [(4567, "6.6.6.6", 4567)]
    assert eps(reg, "*.google.com", "http-static") == sorted(HTTP_STATIC_BASE + overlay_eps)
    assert eps(reg, "other.com", "http-static") == overlay_eps
    assert registry(HTTP_STATIC, overlay(SIX)).service("other.com") is None


def test_service_discovery_service_update_change_dns_endpoints() -> None:
    """ "change dns endpoints": a DNS entry's endpoints follow its spec."""
    reg = registry(service_entry("tcp-dns", "tcp-dns", TCP_DNS_SPEC))
    assert eps(reg, "tcpdns.com", "tcp-dns") == [(444, "in.google.com", 444), (444, "lon.google.com", 444)]
    fewer = TCP_DNS_SPEC.replace(
        "    - {address: in.google.com, labels: {security.istio.io/tlsMode: istio}}\n", ""
    )
    reg = registry(service_entry("tcp-dns", "tcp-dns", fewer))
    assert eps(reg, "tcpdns.com", "tcp-dns") == [(444, "lon.google.com", 444)]
    svc = reg.service("tcpdns.com")
    assert svc is not None and reg.endpoints(svc, 444)[0].sidecar


def test_service_discovery_service_update_change_workload_selector() -> None:
    """ "change workload selector": an entry that selects workloads has only what its selector picks, and
    a selector change moves the endpoints with it."""
    spec = """
        hosts: ["*.google.com", selector1.com]
        ports: [{number: 4567, name: http-port, protocol: http}]
        workloadSelector: {labels: {app: APP}}
        location: MESH_INTERNAL
        resolution: STATIC
    """
    wl = workload_entry("wl", "http-static", "{address: 9.9.9.9, labels: {app: wle}}")
    for app, want in (("wle", [(4567, "9.9.9.9", 4567)]), ("wle1", [])):
        entry = service_entry("http-static-overlay", "http-static", spec.replace("APP", app))
        reg = registry(entry, wl)
        assert eps(reg, "selector1.com", "http-static") == want
        assert eps(reg, "*.google.com", "http-static") == want


def test_service_discovery_workload_update() -> None:
    """TestServiceDiscoveryWorkloadUpdate, step by step: WorkloadEntries selected by a STATIC and a DNS
    entry; a WorkloadEntry at a host name is ignored by the STATIC one; deletion, re-adding; an address
    change leaves nothing at the old address."""
    wl, wl2, wl3 = wle("wl", "2.2.2.2"), wle("wl2", "3.3.3.3"), wle("wl3", "abc.def")
    dns_wl = wle("dnswl", "4.4.4.4", app="dns-wle", namespace="dns-selector")
    host, ns = "selector.com", "selector"
    # "service entry": no instances yet.
    assert eps(registry(SELECTOR), host, ns) == []
    # "add workload": one WorkloadEntry, with its identity and name.
    reg = registry(SELECTOR, wl)
    assert eps(reg, host, ns) == on_both_ports("2.2.2.2")
    svc = reg.service(host)
    assert svc is not None
    [ep] = reg.endpoints(svc, 444)
    assert (ep.service_account, ep.sidecar, ep.instance, ep.namespace) == ("default", True, "wl", ns)
    # "update service entry host" / "restore service entry host": the instances follow the host.
    updated = SELECTOR.replace("hosts: [selector.com]", "hosts: [updated.com]")
    reg = registry(updated, wl)
    assert (eps(reg, host, ns), eps(reg, "updated.com", ns)) == ([], on_both_ports("2.2.2.2"))
    reg = registry(SELECTOR, wl)
    assert (eps(reg, host, ns), eps(reg, "updated.com", ns)) == (on_both_ports("2.2.2.2"), [])
    # "add dns service entry" / "add dns workload".
    assert eps(registry(SELECTOR, wl, DNS_SELECTOR), "dns.selector.com", "dns-selector") == []
    reg = registry(SELECTOR, wl, DNS_SELECTOR, dns_wl)
    assert eps(reg, "dns.selector.com", "dns-selector") == on_both_ports("4.4.4.4")
    # "another workload" / "ignore host workload".
    configs = [SELECTOR, wl, DNS_SELECTOR, dns_wl, wl2]
    assert eps(registry(*configs), host, ns) == on_both_ports("2.2.2.2", "3.3.3.3")
    assert eps(registry(*configs, wl3), host, ns) == on_both_ports("2.2.2.2", "3.3.3.3")
    # "deletion": one, then the other, then the first back.
    assert eps(registry(SELECTOR, wl, DNS_SELECTOR, dns_wl, wl3), host, ns) == on_both_ports("2.2.2.2")
    assert eps(registry(SELECTOR, DNS_SELECTOR, dns_wl, wl3), host, ns) == []
    assert eps(registry(SELECTOR, DNS_SELECTOR, dns_wl, wl3, wl), host, ns) == on_both_ports("2.2.2.2")
    # "update": a new address replaces the old one.
    reg = registry(SELECTOR, DNS_SELECTOR, dns_wl, wl3, wle("wl", "9.9.9.9"))
    assert eps(reg, host, ns) == on_both_ports("9.9.9.9")


def test_workload_entry_ports_change_moves_its_endpoints() -> None:
    """A WorkloadEntry's `ports` map (by the entry's port names) changes its endpoint ports; entries
    without the name keep the service port."""
    reg = registry(SELECTOR, wle("wl", "2.2.2.2", extra=", ports: {http-445: 8445}"))
    assert eps(reg, "selector.com", "selector") == [(444, "2.2.2.2", 444), (445, "2.2.2.2", 8445)]
    reg = registry(SELECTOR, wle("wl", "2.2.2.2", extra=", ports: {tcp-444: 9444, http-445: 9445}"))
    assert eps(reg, "selector.com", "selector") == [(444, "2.2.2.2", 9444), (445, "2.2.2.2", 9445)]


def test_service_discovery_workload_change_label() -> None:
    """TestServiceDiscoveryWorkloadChangeLabel: a WorkloadEntry relabelled out of the selector leaves
    the entry's endpoints; the others stay."""
    wl3 = wle("wl3", "3.3.3.3")
    assert eps(registry(SELECTOR, wle("wl", "2.2.2.2")), "selector.com", "selector") == on_both_ports(
        "2.2.2.2"
    )
    assert eps(registry(SELECTOR, wle("wl", "2.2.2.2", app="wle2")), "selector.com", "selector") == []
    both = registry(SELECTOR, wle("wl", "2.2.2.2"), wl3)
    assert eps(both, "selector.com", "selector") == on_both_ports("2.2.2.2", "3.3.3.3")
    one = registry(SELECTOR, wle("wl", "2.2.2.2", app="wle2"), wl3)
    assert eps(one, "selector.com", "selector") == on_both_ports("3.3.3.3")


def test_workload_instance_full_push() -> None:
    """TestWorkloadInstanceFullPush: a DNS entry with a selector gets the pods it selects and a
    WorkloadEntry at a host name alike; pods come and go."""
    we = wle("wl", "postman-echo.com")
    fi1, fi2 = pod("additional-name", "4.4.4.4"), pod("another-name", "2.2.2.2")
    host, ns = "selector.com", "selector"
    assert eps(registry(SELECTOR_DNS), host, ns) == []
    regs = pod_steps(SELECTOR_DNS, we, steps=[[], [fi1], [fi1, fi2], [fi2]])
    assert [eps(r, host, ns) for r in regs] == [
        on_both_ports("postman-echo.com"),
        on_both_ports("4.4.4.4", "postman-echo.com"),
        on_both_ports("2.2.2.2", "4.4.4.4", "postman-echo.com"),
        on_both_ports("2.2.2.2", "postman-echo.com"),
    ]
    assert [s.hostname for s in regs[1].services_selecting(fi1)] == [host]


def test_workload_instance_full_push_reaches_the_dns_cluster() -> None:
    """TestWorkloadInstanceFullPush's point: a pod joining a DNS entry's selector changes a cluster whose
    endpoints are inline (STRICT_DNS), so istiod pushes in full (`xds full` after the `eds` event), not
    endpoints alone, and the sidecar's cluster gets the new address."""
    store = Store()
    store.apply(load_text(selector_entry("selector", "default", resolution="DNS"), "test.yaml"), "test")
    store.upsert_pod(Pod("a", "default", "127.7.0.20", {"app": "wle"}, workload="a"))
    cp = ControlPlane(store)
    requests: list[PushRequest] = []
    cp.xds.update = lambda snapshot, request: requests.append(request)  # type: ignore[method-assign]
    cp.rebuild()
    store.upsert_pod(Pod("b", "default", "127.7.0.21", {"app": "wle"}, workload="b"))
    snap = cp.current()
    cluster = clusters(snap, sidecar())["outbound|444||selector.com"]
    assert cluster["type"] == "STRICT_DNS"
    inline = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [lb["endpoint"]["address"]["socket_address"]["address"] for lb in inline] == [
        "127.7.0.20",
        "127.7.0.21",
    ]
    assert requests[-1].full


def test_service_discovery_workload_instance() -> None:
    """TestServiceDiscoveryWorkloadInstance: pods selected by entries of their namespace. A pod reusing
    another's address in another namespace (a terminating pod's IP picked up) is an instance of its own
    namespace's entry only, and the first pod's instances go with that pod, not with the address."""
    fi1 = pod("selector", "2.2.2.2")
    fi2 = pod("some-other-name", "3.3.3.3")
    fi3 = pod("another-name", "2.2.2.2", namespace="dns-selector", app="dns-wle")
    host, ns, dns_host, dns_ns = "selector.com", "selector", "dns.selector.com", "dns-selector"
    # fi1 added, fi2 added, fi2 deleted while fi3 takes fi1's address (fi1 still terminating), fi1 gone.
    regs = pod_steps(SELECTOR, DNS_SELECTOR, steps=[[], [fi1], [fi1, fi2], [fi1, fi3], [fi3]])
    assert [eps(r, host, ns) for r in regs] == [
        [],
        on_both_ports("2.2.2.2"),
        on_both_ports("2.2.2.2", "3.3.3.3"),
        on_both_ports("2.2.2.2"),
        [],
    ]
    assert [eps(r, dns_host, dns_ns) for r in regs] == [[], [], [], *[on_both_ports("2.2.2.2")] * 2]
    assert [s.hostname for s in regs[1].services_selecting(fi1)] == [host]
    assert [s.hostname for s in regs[3].services_selecting(fi3)] == [dns_host]


def test_service_discovery_workload_instance_change_label() -> None:
    """TestServiceDiscoveryWorkloadInstanceChangeLabel: a pod relabelled out of the selector leaves the
    entry; another pod stays."""
    first = pod("selector", "2.2.2.2")
    relabelled = pod("selector", "2.2.2.2", app="wle2")
    other = pod("another-name", "3.3.3.3")
    # "change label removing all", then "change label removing one".
    regs = pod_steps(SELECTOR, steps=[[first], [relabelled], [first], [first, other], [relabelled, other]])
    assert [eps(r, "selector.com", "selector") for r in regs] == [
        on_both_ports("2.2.2.2"),
        [],
        on_both_ports("2.2.2.2"),
        on_both_ports("2.2.2.2", "3.3.3.3"),
        on_both_ports("3.3.3.3"),
    ]
    assert regs[-1].services_selecting(relabelled) == []


def test_service_entry_selecting_a_pod_gives_its_inbound_port_the_entry_protocol() -> None:
    """expectProxyInstances for a pod selected by a ServiceEntry (GetProxyServiceTargets): its target
    ports are the entry's ports (or their targetPort), so the sidecar's inbound port has the entry's
    protocol, as a Kubernetes Service's would."""
    p = Pod("p-0", "default", "127.7.0.9", {"app": "wle"}, workload="p", app_ports={444: 41444, 445: 41445})
    entry = selector_entry("selector", "default")
    snap = snapshot(entry, pods=[p], services=False)
    proxy = sidecar("p-0", labels={"app": "wle"}, ip="127.7.0.9")
    got = {i.port: (i.protocol, [s.hostname for s, _ in i.services]) for i in snap.inbound_ports(proxy)}
    assert got == {444: (Protocol.TCP, ["selector.com"]), 445: (Protocol.HTTP, ["selector.com"])}


def test_service_discovery_instances() -> None:
    """TestServiceDiscoveryInstances / TestServiceDiscoveryInstances1Port / TestNonServiceConfig: a DNS
    entry's instances on every port or one, whatever other config (a DestinationRule) is around."""
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: fake-destination-rule, namespace: default}
    spec: {host: fakehost}
    """
    for reg in (registry(HTTP_DNS, TCP_STATIC), registry(dr, HTTP_DNS, TCP_STATIC)):
        assert eps(reg, "*.google.com", "http-dns") == [
            (80, "de.google.com", 80),
            (80, "uk.google.com", 1080),
            (80, "us.google.com", 7080),
            (8080, "de.google.com", 8080),
            (8080, "uk.google.com", 8080),
            (8080, "us.google.com", 18080),
        ]
        assert eps(reg, "*.google.com", "http-dns", port=80) == [
            (80, "de.google.com", 80),
            (80, "uk.google.com", 1080),
            (80, "us.google.com", 7080),
        ]
        assert len(reg.services) == 2


# TestServicesDiff: the updated httpDNS entry, and the changes made to it.
DIFF_BASE = """
    hosts: ["*.google.com", "*.mail.com"]
    ports: [{number: 80, name: http-port, protocol: http}, {number: 8080, name: http-alt-port, protocol: http}]
    endpoints:
    - {address: us.google.com, ports: {http-port: 7080, http-alt-port: 18080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: uk.google.com, ports: {http-port: 1080}, labels: {security.istio.io/tlsMode: istio}}
    - {address: de.google.com, labels: {foo: bar, security.istio.io/tlsMode: istio}}
    location: MESH_EXTERNAL
    resolution: DNS
"""
DIFF_CASES: list[tuple[str, str, dict[str, list[str]]]] = [
    ("same config", DIFF_BASE, {"unchanged": ["*.google.com", "*.mail.com"]}),
    (
        "different resolution",
        # Validation takes no endpoints with resolution NONE: they go too (endpoints are not services).
        DIFF_BASE.split("    endpoints:")[0] + "    location: MESH_EXTERNAL\n    resolution: NONE\n",
        {"updated": ["*.google.com", "*.mail.com"]},
    ),
    (
        "config modified with added/deleted host",
        DIFF_BASE.replace('"*.mail.com"', "host.com"),
        {"added": ["host.com"], "deleted": ["*.mail.com"], "unchanged": ["*.google.com"]},
    ),
    (
        "config modified with additional port",
        DIFF_BASE.replace(
            "protocol: http}]", "protocol: http}, {number: 9090, name: http-new-port, protocol: http}]"
        ),
        {"updated": ["*.google.com", "*.mail.com"]},
    ),
    (
        "same config with additional endpoint",
        DIFF_BASE.replace(
            "    location:", "    - {address: in.google.com, labels: {foo: bar}}\n    location:"
        ),
        {"unchanged": ["*.google.com", "*.mail.com"]},
    ),
]


def services_diff(before: Registry, after: Registry) -> dict[str, list[str]]:
    old = {s.hostname: s for s in before.services}
    new = {s.hostname: s for s in after.services}
    out: dict[str, list[str]] = {
        "added": sorted(new.keys() - old.keys()),
        "deleted": sorted(old.keys() - new.keys()),
        "updated": sorted(h for h in old.keys() & new.keys() if old[h] != new[h]),
        "unchanged": sorted(h for h in old.keys() & new.keys() if old[h] == new[h]),
    }
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize(("new", "want"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES])
def test_services_diff(new: str, want: dict[str, list[str]]) -> None:
    """TestServicesDiff, observed on the services a sidecar gets: an endpoint change leaves the services
    as they were (an EDS push), a resolution or port change updates them, hosts come and go."""
    before = registry(service_entry("http-dns", "http-dns", DIFF_BASE))
    after = registry(service_entry("http-dns", "http-dns", new))
    assert services_diff(before, after) == want


def test_service_entry_export_to() -> None:
    """exportTo on a ServiceEntry: `.` is its namespace only, `~` nobody, a list those namespaces; the
    mesh default (unset) is everyone."""
    spec = """
        hosts: [HOST]
        ports: [{number: 80, name: http, protocol: HTTP}]
        resolution: STATIC
        endpoints: [{address: 1.1.1.1}]
        EXPORT
    """

    def entry(name: str, export: str) -> str:
        return service_entry(name, "a", spec.replace("HOST", f"{name}.example.com").replace("EXPORT", export))

    snap = snapshot(
        entry("public", ""),
        entry("private", "exportTo: ['.']"),
        entry("hidden", "exportTo: ['~']"),
        entry("listed", "exportTo: [b]"),
        services=False,
    )

    def visible(ns: str) -> list[str]:
        return sorted(s.name for s in snap.visible_services(ns))

    assert visible("a") == ["private", "public"]
    assert visible("b") == ["listed", "public"]
    assert visible("c") == ["public"]


def test_kube_service_export_to_annotation_scopes_its_clusters() -> None:
    """The exportTo annotation of a Service (ConvertService's ExportTo): `.` gives its cluster to sidecars
    of its own namespace only."""
    spec = "selector: {app: db}\nports: [{name: tcp, port: 5432}]"
    private = kube_service("db", "a", spec, meta=", annotations: {networking.istio.io/exportTo: '.'}")
    pods = [Pod("db-0", "a", "127.7.0.30", {"app": "db"}, workload="db")]
    snap = snapshot(private, pods=pods, services=False)
    cluster = "outbound|5432||db.a.svc.cluster.local"
    assert cluster in clusters(snap, sidecar("c-0", "a", labels={"app": "c"}, ip="127.7.0.31"))
    assert cluster not in clusters(snap, sidecar("c-0", "b", labels={"app": "c"}, ip="127.7.0.32"))


# --- kube/controller/controller_test.go ---------------------------------------------------------------


def test_services() -> None:
    """TestServices / TestController_Service: a port named http-example is HTTP, tcp-port TCP; a Service
    that does not exist is not found."""
    reg = registry(
        kube_service("test", "ns-test", "ports: [{port: 80, name: http-example, protocol: TCP}]"),
        *(
            kube_service(
                f"svc{i}",
                "nsa",
                f"clusterIP: 10.0.0.1\nselector: {{test-app: test-app-{i}}}\nports: [{{name: tcp-port, port: {8079 + i}}}]",
            )
            for i in range(1, 5)
        ),
    )
    svc = reg.service("test.ns-test.svc.cluster.local")
    assert svc is not None and [(p.port, p.protocol) for p in svc.ports] == [(80, Protocol.HTTP)]
    assert reg.service("does-not-exist.ns-test.svc.cluster.local") is None
    got = sorted(
        (s.hostname, s.addresses, [(p.name, p.port, p.protocol) for p in s.ports])
        for s in reg.services
        if s.namespace == "nsa"
    )
    assert got == [
        (f"svc{i}.nsa.svc.cluster.local", ("10.0.0.1",), [("tcp-port", 8079 + i, Protocol.TCP)])
        for i in range(1, 5)
    ]


def test_controller_external_name_service() -> None:
    """TestController_ExternalNameService: each ExternalName Service is external, DNS-resolved, and has
    one endpoint per port: its external name."""
    names = [
        "test-app-1.test.svc.cluster.local",
        "test-app-2.test.svc.cluster.local",
        "test-app-3.test.pod.cluster.local",
        "g.co",
    ]
    docs = [
        kube_service(
            f"svc{i}",
            "nsa",
            f"type: ExternalName\nexternalName: {name}\nports: [{{name: tcp-port, port: {8079 + i}}}]",
        )
        for i, name in enumerate(names, start=1)
    ]
    reg = registry(*docs)
    for i, name in enumerate(names, start=1):
        host = f"svc{i}.nsa.svc.cluster.local"
        svc = reg.service(host)
        assert svc is not None
        assert ([(p.name, p.port, p.protocol) for p in svc.ports], svc.mesh_external, svc.resolution) == (
            [("tcp-port", 8079 + i, Protocol.TCP)],
            True,
            Resolution.DNS,
        )
        assert eps(reg, host, "nsa") == [(8079 + i, name, 8079 + i)]
    # Deleted: no services, no endpoints left.
    assert registry().services == []


LOCALITY_CASES: list[tuple[str, dict[str, str], str]] = [
    (
        "region zone subzone",
        {
            "topology.kubernetes.io/region": "region1",
            "topology.kubernetes.io/zone": "zone1",
            "topology.istio.io/subzone": "subzone1",
        },
        "region1/zone1/subzone1",
    ),
    # istiod: "region1/zone1/" (see the module docstring).
    (
        "region zone",
        {"topology.kubernetes.io/region": "region1", "topology.kubernetes.io/zone": "zone1"},
        "region1/zone1",
    ),
    ("no node labels", {}, ""),
    ("only region", {"topology.kubernetes.io/region": "region1"}, "region1"),
    ("only zone", {"topology.kubernetes.io/zone": "zone1"}, "/zone1"),
    ("only subzone", {"topology.istio.io/subzone": "subzone1"}, "//subzone1"),
    (
        "istio-locality label wins",
        {
            "topology.kubernetes.io/region": "region1",
            "topology.kubernetes.io/zone": "zone1",
            "istio-locality": "regionOverride.zoneOverride.subzoneOverride",
        },
        "regionOverride/zoneOverride/subzoneOverride",
    ),
    (
        "beta labels",
        {"failure-domain.beta.kubernetes.io/region": "r", "failure-domain.beta.kubernetes.io/zone": "z"},
        "r/z",
    ),
]


@pytest.mark.parametrize(
    ("labels", "want"), [c[1:] for c in LOCALITY_CASES], ids=[c[0] for c in LOCALITY_CASES]
)
def test_controller_get_pod_locality(labels: dict[str, str], want: str) -> None:
    """TestController_GetPodLocality: the node's topology labels (a local pod's own labels stand for its
    node's), the `istio-locality` label first."""
    assert locality_from_labels(labels) == want
    svc = kube_service("prod", "nsa", "selector: {app: prod-app}\nports: [{name: http, port: 80}]")
    p = Pod("pod1", "nsa", "128.0.1.1", {"app": "prod-app", **labels}, workload="pod1")
    reg = registry(svc, pods=[p])
    host = reg.service("prod.nsa.svc.cluster.local")
    assert host is not None
    assert [e.locality for e in reg.endpoints(host, 80)] == [want]


def test_get_proxy_service_targets() -> None:
    """TestGetProxyServiceTargets: a pod is an instance of the Services of its namespace that select it
    (none of another namespace's), and a pod no Service selects has none."""
    svc = "clusterIP: 10.0.0.1\nselector: {app: prod-app}\nports: [{name: tcp-port, port: 8080}]"
    reg = registry(kube_service("svc1", "nsa", svc), kube_service("svc-fake", "nsfake", svc))
    p = Pod("pod2", "nsa", "129.0.0.1", {"app": "prod-app"}, workload="pod2")
    lonely = Pod("pod4", "nsa", "130.0.0.1", {"app": "no-service-app"}, workload="pod4")
    assert [
        (s.hostname, [(x.name, x.port, x.protocol) for x in s.ports]) for s in reg.services_selecting(p)
    ] == [("svc1.nsa.svc.cluster.local", [("tcp-port", 8080, Protocol.TCP)])]
    assert reg.services_selecting(lonely) == []


TARGET_PORT_CASES: list[tuple[str, str, dict[int, tuple[Protocol, list[str]]]]] = [
    ("single port", "[{name: tcp-port, port: 8080, targetPort: 8080}]", {8080: (Protocol.TCP, ["tcp-port"])}),
    (
        "multiple ports",
        "[{name: tcp-port, port: 8080, targetPort: 8080}, {name: http-port, port: 9090, targetPort: 9090}]",
        {8080: (Protocol.TCP, ["tcp-port"]), 9090: (Protocol.HTTP, ["http-port"])},
    ),
    (
        "same target port with different protocols",
        "[{name: tcp-port, port: 8080, targetPort: 8080}, {name: http-port, port: 9090, targetPort: 8080}]",
        {8080: (Protocol.TCP, ["tcp-port", "http-port"])},
    ),
]


@pytest.mark.parametrize(
    ("ports", "want"), [c[1:] for c in TARGET_PORT_CASES], ids=[c[0] for c in TARGET_PORT_CASES]
)
def test_get_proxy_service_targets_with_target_ports(
    ports: str, want: dict[int, tuple[Protocol, list[str]]]
) -> None:
    """TestGetProxyServiceTargetsWithMultiIPsAndTargetPorts: each service port reaches the pod on its
    targetPort; one inbound port per target port, the first service port deciding its protocol (istiod
    builds one inbound listener chain per target port, the first target winning)."""
    app_ports = {t: 40000 + t for t in want}
    p = Pod("pod1", "nsa", "128.0.0.1", {"app": "test-app"}, workload="pod1", app_ports=app_ports)
    snap = snapshot(
        kube_service("svc1", "nsa", f"selector: {{app: test-app}}\nports: {ports}"), pods=[p], services=False
    )
    proxy = sidecar("pod1", "nsa", labels={"app": "test-app"}, ip="128.0.0.1")
    got = {i.port: (i.protocol, [sp.name for _, sp in i.services]) for i in snap.inbound_ports(proxy)}
    assert got == want


def test_get_proxy_service_targets_overlapping_protocols() -> None:
    """ "single proxy ip multiple ports same target port with overlapping protocols": three service ports
    on target 7442 (HTTP, TCP, HTTP): the inbound port is HTTP, from the first; istiod keeps one target
    per target port and protocol (http-7442 and tcp-8443)."""
    ports = (
        "[{name: http-7442, port: 7442, targetPort: 7442}, {name: tcp-8443, port: 8443, targetPort: 7442},"
        " {name: http-7557, port: 7557, targetPort: 7442}]"
    )
    p = Pod("pod1", "nsa", "128.0.0.1", {"app": "test-app"}, workload="pod1", app_ports={7442: 47442})
    snap = snapshot(
        kube_service("svc1", "nsa", f"selector: {{app: test-app}}\nports: {ports}"), pods=[p], services=False
    )
    [inbound] = snap.inbound_ports(sidecar("pod1", "nsa", labels={"app": "test-app"}, ip="128.0.0.1"))
    assert inbound.port == 7442 and inbound.protocol is Protocol.HTTP
    assert {"http-7442", "tcp-8443"} <= {sp.name for _, sp in inbound.services}


def test_endpoints_workload_instances() -> None:
    """TestEndpoints_WorkloadInstances: a Service with a named targetPort reaches a WorkloadEntry on the
    port its `ports` map gives that name; one without the name is left out; two entries at one address
    are two endpoints."""
    svc = kube_service(
        "ratings",
        "bookinfo-ratings",
        "selector: {app: ratings}\nports: [{name: http-port, port: 8080, targetPort: http}]",
    )

    def entry(name: str, extra: str) -> str:
        return workload_entry(
            name, "bookinfo-ratings", f"{{address: 2.2.2.2, labels: {{app: ratings}}{extra}}}"
        )

    reg = registry(
        svc,
        entry("ratings-1", ""),
        entry("ratings-2", ", ports: {http: 8082}"),
        entry("ratings-3", ", ports: {http: 8083}"),
    )
    assert eps(reg, "ratings.bookinfo-ratings.svc.cluster.local", "bookinfo-ratings") == [
        (8080, "2.2.2.2", 8082),
        (8080, "2.2.2.2", 8083),
    ]


def test_workload_entry_ports_map_by_service_port_name_wins_over_numeric_target_port() -> None:
    """serviceInstanceFromWorkloadInstance with findServiceTargetPort: a numeric targetPort stands for
    the service port's name too (not explicitly), so a WorkloadEntry whose `ports` names the Service
    port is reached on that port, else on the targetPort. A pod has no such map: Kubernetes gives its
    endpoint the targetPort number, whatever its container ports are named."""
    svc = kube_service(
        "ratings",
        "bookinfo-ratings",
        "selector: {app: ratings}\nports: [{name: http-port, port: 8080, targetPort: 9080}, {name: grpc, port: 7070}]",
    )
    mapped = workload_entry(
        "mapped", "bookinfo-ratings", "{address: 2.2.2.2, labels: {app: ratings}, ports: {http-port: 8082}}"
    )
    plain = workload_entry("plain", "bookinfo-ratings", "{address: 2.2.2.3, labels: {app: ratings}}")
    p = Pod(
        "ratings-0",
        "bookinfo-ratings",
        "2.2.2.4",
        {"app": "ratings"},
        workload="ratings",
        named_ports={"http-port": 1111, "grpc": 2222},
    )
    reg = registry(svc, mapped, plain, pods=[p])
    assert eps(reg, "ratings.bookinfo-ratings.svc.cluster.local", "bookinfo-ratings") == [
        (7070, "2.2.2.2", 7070),
        (7070, "2.2.2.3", 7070),
        (7070, "2.2.2.4", 7070),
        (8080, "2.2.2.2", 8082),
        (8080, "2.2.2.3", 9080),
        (8080, "2.2.2.4", 9080),
    ]


def test_workload_instance_handler_multiple_endpoints() -> None:
    """TestWorkloadInstanceHandlerMultipleEndpoints: a Service's endpoints are the pods and the
    WorkloadEntries of its namespace it selects; a pod added later joins them."""
    svc = kube_service(
        "svc1", "nsa", "clusterIP: 10.0.0.1\nselector: {app: prod-app}\nports: [{name: tcp-port, port: 8080}]"
    )
    we = workload_entry("we", "nsa", "{address: 2.2.2.2, labels: {app: prod-app}, serviceAccount: account}")
    pod1 = Pod("pod1", "nsa", "172.0.1.1", {"app": "prod-app"}, workload="pod1")
    pod2 = Pod("pod2", "nsa", "172.0.1.2", {"app": "prod-app"}, workload="pod2")
    host = "svc1.nsa.svc.cluster.local"
    assert [a for _, a, _ in eps(registry(svc, we, pods=[pod1]), host, "nsa")] == ["172.0.1.1", "2.2.2.2"]
    assert [a for _, a, _ in eps(registry(svc, we, pods=[pod1, pod2]), host, "nsa")] == [
        "172.0.1.1",
        "172.0.1.2",
        "2.2.2.2",
    ]


def test_update_eds_cache_on_service_update() -> None:
    """TestUpdateEdsCacheOnServiceUpdate: a selector change recomputes the Service's endpoints (pods and
    WorkloadEntries alike)."""
    pods = [Pod(f"pod{i}", "nsa", f"172.0.1.{i}", {"app": "prod-app"}, workload=f"pod{i}") for i in (1, 2)]
    we = workload_entry("we", "nsa", "{address: 2.2.2.2, labels: {app: prod-app}}")

    def svc(selector: str) -> str:
        return kube_service("svc1", "nsa", f"selector: {selector}\nports: [{{name: tcp-port, port: 8080}}]")

    host = "svc1.nsa.svc.cluster.local"
    assert len(eps(registry(svc("{app: prod-app}"), we, pods=pods), host, "nsa")) == 3
    assert eps(registry(svc("{app: prod-app, foo: bar}"), we, pods=pods), host, "nsa") == []
    assert len(eps(registry(svc("{app: prod-app}"), we, pods=pods), host, "nsa")) == 3


def test_visibility_none_service() -> None:
    """TestVisibilityNoneService: a Service exported to nobody (`~`) is no sidecar's, not even in its own
    namespace; without the annotation it is everyone's."""
    spec = "clusterIP: 10.0.0.1\nselector: {app: prod-app}\nports: [{name: tcp-port, port: 8080}]"
    hidden = kube_service("svc1", "nsa", spec, meta=", annotations: {networking.istio.io/exportTo: '~'}")
    pods = [Pod("pod1", "nsa", "172.0.1.1", {"app": "prod-app"}, workload="pod1")]
    cluster = "outbound|8080||svc1.nsa.svc.cluster.local"
    proxy = sidecar("pod1", "nsa", labels={"app": "prod-app"}, ip="172.0.1.1")
    snap = snapshot(hidden, pods=pods, services=False)
    assert snap.visible_services("nsa") == [] and cluster not in clusters(snap, proxy)
    snap = snapshot(kube_service("svc1", "nsa", spec), pods=pods, services=False)
    assert cluster in clusters(snap, proxy)
    assert generate(snap, proxy, naming.ENDPOINT_TYPE, {cluster})[cluster]["endpoints"]


def test_service_update_needs_push() -> None:
    """TestServiceUpdateNeedsPush "target ports changed" / "target ports unchanged": a targetPort change
    changes the service (its endpoints move), the same Service does not."""

    def svc(target: int) -> Service:
        reg = registry(kube_service("foo", "bar", f"ports: [{{port: 80, targetPort: {target}}}]"))
        found = reg.service("foo.bar.svc.cluster.local")
        assert found is not None
        return found

    assert svc(8080) == svc(8080)
    assert svc(8080) != svc(8081)


def test_not_ready_pod_selected_by_service_entry_is_not_sent() -> None:
    """istiod's pod cache makes a workload instance of a ready pod only (PodCache.onEvent), so a
    ServiceEntry selecting a pod that is not ready sends no endpoint for it."""
    entry = selector_entry("selector", "default")
    ready = Pod("a", "default", "127.7.0.20", {"app": "wle"}, workload="a")
    not_ready = Pod("b", "default", "127.7.0.21", {"app": "wle"}, workload="b", ready=False)
    snap = snapshot(entry, pods=[ready, not_ready], services=False)
    cluster = "outbound|444||selector.com"
    cla = generate(snap, sidecar(), naming.ENDPOINT_TYPE, {cluster})[cluster]
    got = [
        lb["endpoint"]["address"]["socket_address"]["address"]
        for group in cla.get("endpoints", [])
        for lb in group["lb_endpoints"]
    ]
    assert got == ["127.7.0.20"]
