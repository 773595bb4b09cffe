"""Where a call goes, part two: the cases of istiod's `*_simulation_test.go` not ported elsewhere.

Sources (istio/istio, pilot/pkg/networking/core): sidecar_simulation_test.go, serviceentry_simulation_test.go,
peer_authentication_simulation_test.go. Calls are followed with the helpers of
test_istio_simulation_parity.py (`follow` through a pod's inbound listener, `to` through the sidecar's
outbound HTTP proxy), under the same by-design departures stated there (explicit proxy, one listener per
declared inbound port, no InboundPassthroughCluster).

Inventory (function: case -> where):
sidecar_simulation_test.go
- TestInboundClusters: "single service, multiple instance", "multiple services with same service port,
  different target", "... same service port and target" -> test_istio_simulation_parity.py; "ingress to
  same port / to different port / to instance IP / without default endpoint / to socket" ->
  test_sidecar_ingress.py (defaultEndpoint forms); "empty", "empty service", "single service, partial
  instance", "multiple ingress", and the four inboundTrafficPolicy LOCALHOST repeats -> here.
- TestInbound (18 calls x DISABLE/PERMISSIVE/STRICT) -> test_istio_simulation_parity.py (as a Service) and
  here (istiod's own ServiceEntry input); its five "passthrough *" calls: n/a, a port the workload does
  not declare has no listener (test_inbound_passthrough_has_no_listener).
- TestHeadlessServices (7), TestExternalNameServices (7 + 6 HTTP VS + 1 TCP VS), TestPassthroughTraffic
  (5 calls x 7 ports x 2 policies x VIP/no VIP) -> test_istio_simulation_parity.py, test_istio_tcp_parity.py.
- TestLoop (2 calls) -> here (test_tunnels.py checks the blocking route's regex).
- TestInboundSidecarTLSModes (5 cases) -> test_sidecar_ingress.py.
- TestSidecarRoutes, variant "virtualservice" (30 cases) -> test_istio_httproute_parity.py; variant
  "httproute": n/a, Gateway API HTTPRoute (mesh parentRefs) is not a kind Isthmus models.
- No TestLocalhost / TestEgress / TestBlackhole / TestRouteConflicts exist in it; TestTargetPort is
  gateway_simulation_test.go's.
serviceentry_simulation_test.go
- TestServiceEntry: "overlapping CIDR", "overlapping CIDR with SNI", "partial overlap of IP" ->
  test_istio_simulation_parity.py; "identical CIDR (ignoring insignificant bits) is dropped" -> here.
- TestServiceEntryDuplicatedHostname -> test_istio_simulation_parity.py.
peer_authentication_simulation_test.go
- TestPeerAuthenticationPassthrough (9 cases, 30 calls) -> here.
- TestPeerAuthenticationWithSidecar (5 cases, 20 calls) -> here.
Other *_simulation_test.go of the package: gateway_simulation_test.go -> test_istio_gateway_simulation_parity.py;
loadbalancer/loadbalancer_simulation_test.go -> test_istio_core_remaining_parity.py (not re-inventoried).

Mapping of the peer authentication cases: istiod's proxy (IP 1.1.1.1) is the endpoint of ServiceEntries
with `endpoints: [{address: 1.1.1.1}]`; here the ServiceEntries select the pod with `workloadSelector`.
istiod's passthrough chain serves a port no service declares; here the Workload declares its ports (8000 and
9000, or 8080 and 9090) and a declared port in no service is served as a sniffed port under the same
PeerAuthentication, so istiod's InboundPassthroughClusterIpv4 is that port's `inbound|<port>||`. A port a
Sidecar's `ingress` leaves out has no listener at all ("service, partial sidecar"), where istiod falls back
to its passthrough chain: by design, as there is no original destination to pass through to.
"""

from __future__ import annotations

import json

import pytest
from gen_helpers import clusters, generate, sidecar, snapshot
from test_istio_inbound_parity import mode
from test_istio_simulation_parity import INBOUND_CASES, INBOUND_POD, PASS, backend, blah, follow, to
from test_istio_tcp_parity import mesh_config

from isthmus.registry.types import Pod
from isthmus.xds.gen import naming

NO_FILTER_CHAIN = "no filter chain"
PROTOCOL_ERROR = "protocol error"
NO_LISTENER = "no listener"
IP = "127.7.0.9"

# --- TestInboundClusters (the cases not ported in test_istio_simulation_parity.py) ------------------

BACKEND = "backend.default.svc.cluster.local"
BACKEND_IP = "127.7.0.30"
LOCALHOST = mesh_config(inboundTrafficPolicy={"mode": "LOCALHOST"})


def inbound_clusters(docs: tuple[str, ...], pod: Pod) -> dict[str, dict]:
    snap = snapshot(*docs, pods=[pod], services=False)
    proxy = sidecar(pod.name, "default", dict(pod.labels), pod.ip)
    return {k: v for k, v in clusters(snap, proxy).items() if k.startswith("inbound")}


def endpoint_of(cluster: dict) -> dict:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]


def telemetry(cluster: dict) -> list[str]:
    meta = cluster.get("metadata", {}).get("filter_metadata", {}).get("istio", {})
    return [s["host"] for s in meta.get("services", [])]


@pytest.mark.parametrize("localhost", [False, True], ids=["passthrough", "LOCALHOST"])
@pytest.mark.parametrize(
    "docs",
    [pytest.param((), id="empty"), pytest.param((backend("backend", 8080, 8081),), id="empty service")],
)
def test_inbound_clusters_empty(docs: tuple[str, ...], localhost: bool) -> None:
    """ "empty" / "empty service": a proxy that is no instance of any service (and, here, declares no
    port) has no inbound cluster and no inbound listener."""
    pod = Pod("other-0", "default", BACKEND_IP, {"app": "other"}, workload="other", app_ports={})
    extra = (LOCALHOST,) if localhost else ()
    assert inbound_clusters((*docs, *extra), pod) == {}
    snap = snapshot(*docs, *extra, pods=[pod], services=False)
    names = generate(snap, sidecar("other-0", "default", {"app": "other"}, BACKEND_IP), naming.LISTENER_TYPE)
    assert not [n for n in names if n.startswith(BACKEND_IP)]


@pytest.mark.parametrize("localhost", [False, True], ids=["passthrough", "LOCALHOST"])
def test_inbound_clusters_single_service_partial_instance(localhost: bool) -> None:
    """ "single service, partial instance": backend maps 80 -> 8080 and 81 -> 8081, the pod is an instance
    on 8080 only (it declares no 8081): one `inbound|8080||` cluster, for backend, which an HTTP call to
    8080 reaches. istiod's endpoint is 127.0.0.1:8080 under LOCALHOST; here it is the app's private port
    in both modes (DESIGN.md §3)."""
    pod = Pod("backend-0", "default", BACKEND_IP, {"app": "backend"}, workload="backend",
              app_ports={8080: 42080})  # fmt: skip
    docs = (backend("backend", 8080, 8081), *((LOCALHOST,) if localhost else ()))
    cds = inbound_clusters(docs, pod)
    assert set(cds) == {"inbound|8080||"}
    assert telemetry(cds["inbound|8080||"]) == [BACKEND]
    assert endpoint_of(cds["inbound|8080||"])["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 42080,
    }
    snap = snapshot(*docs, pods=[pod], services=False)
    proxy = sidecar("backend-0", "default", {"app": "backend"}, BACKEND_IP)
    assert follow(snap, proxy, 8080, "http", "none") == "inbound|http|8080 inbound|8080||"


MULTI_POD = Pod("backend-0", "default", BACKEND_IP, {"app": "backend"}, workload="backend",
                app_ports={8080: 42080, 8081: 42081, 8082: 42082, 8083: 42083})  # fmt: skip


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        pytest.param(
            (backend("backend", 8080, 8081),),
            {8080: [BACKEND], 8081: [BACKEND]},
            id="single service, multiple instance",
        ),
        pytest.param(
            (backend("backend", 8080, 8081), backend("backend-alt", 8082, 8083)),
            {
                8080: [BACKEND],
                8081: [BACKEND],
                8082: ["backend-alt.default.svc.cluster.local"],
                8083: ["backend-alt.default.svc.cluster.local"],
            },  # fmt: skip
            id="multiple services with same service port, different target",
        ),
        pytest.param(
            (backend("backend", 8080, 8081), backend("backend-alt", 8080, 8081)),
            {
                8080: ["backend-alt.default.svc.cluster.local", BACKEND],
                8081: ["backend-alt.default.svc.cluster.local", BACKEND],
            },  # fmt: skip
            id="multiple services with same service port and target",
        ),
    ],
)
def test_inbound_clusters_localhost_policy(docs: tuple[str, ...], expected: dict[int, list[str]]) -> None:
    """The disableInboundPassthrough (inboundTrafficPolicy LOCALHOST) repeats of the service cases: the
    same clusters and telemetry, every endpoint on 127.0.0.1 (istiod: 127.0.0.1:<target port>; here the
    app's private port, the address it listens on)."""
    cds = inbound_clusters((*docs, LOCALHOST), MULTI_POD)
    snap = snapshot(*docs, LOCALHOST, pods=[MULTI_POD], services=False)
    proxy = sidecar("backend-0", "default", {"app": "backend"}, BACKEND_IP)
    for port, app_port in MULTI_POD.app_ports.items():
        name = f"inbound|{port}||"
        assert telemetry(cds[name]) == expected.get(port, []), port
        assert endpoint_of(cds[name])["socket_address"] == {"address": "127.0.0.1", "port_value": app_port}
        if port in expected:
            assert follow(snap, proxy, port, "http", "none") == f"inbound|http|{port} {name}"


def test_inbound_clusters_multiple_ingress() -> None:
    """ "multiple ingress": a Sidecar with ingress ports 80 and 81, both to 127.0.0.1:8080, makes
    `inbound|80||` and `inbound|81||`, both sending to the app's 8080, and a call to each port reaches
    its own cluster."""
    pod = Pod("foo-0", "default", IP, {"app": "foo"}, workload="foo", app_ports={8080: 41080})
    ingress = [
        {"port": {"number": n, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "127.0.0.1:8080"}
        for n in (80, 81)
    ]
    doc = json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "sidecar", "namespace": "default"},
            "spec": {"ingress": ingress},
        }
    )
    cds = inbound_clusters((doc,), pod)
    assert set(cds) == {"inbound|80||", "inbound|81||"}
    for cluster in cds.values():
        assert endpoint_of(cluster)["socket_address"] == {"address": "127.0.0.1", "port_value": 41080}
    snap = snapshot(doc, pods=[pod], services=False)
    proxy = sidecar("foo-0", "default", {"app": "foo"}, IP)
    for port in (80, 81):
        assert follow(snap, proxy, port, "http", "none") == f"inbound|http|{port} inbound|{port}||"


# --- TestInbound, with istiod's own input -------------------------------------------------------------
# test_istio_simulation_parity.py runs TestInbound's calls against a Kubernetes Service; istiod's input is
# a MESH_INTERNAL ServiceEntry foo.bar whose endpoint is the proxy (tcp 70, http 80, an unnamed-protocol
# port "auto" 81). The same calls through the ServiceEntry's inbound ports must end alike.

SE_FOO = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: default}
spec:
  hosts: [foo.bar]
  workloadSelector: {labels: {app: foo}}
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: tcp, number: 70, protocol: TCP}, {name: http, number: 80, protocol: HTTP}, {name: auto, number: 81}]
"""


@pytest.mark.parametrize(("policy", "column"), [("DISABLE", 4), ("PERMISSIVE", 5), ("STRICT", 6)])
@pytest.mark.parametrize("case", INBOUND_CASES, ids=[c[0] for c in INBOUND_CASES])
def test_inbound_through_a_service_entry(policy: str, column: int, case: tuple) -> None:
    _, port, protocol, tls, *_ = case
    snap = snapshot(SE_FOO, mode(policy, "istio-system"), pods=[INBOUND_POD], services=False)
    proxy = sidecar("foo-0", "default", {"app": "foo"}, INBOUND_POD.ip)
    assert follow(snap, proxy, port, protocol, tls) == case[column]


# --- TestLoop ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("tcp://127.7.0.5:15001", id="direct request to outbound port"),
        pytest.param("tcp://127.7.0.5:15006", id="direct request to inbound port"),
        pytest.param("http://127.7.0.5:15001/", id="direct HTTP request to outbound port"),
    ],
)
def test_loop(url: str) -> None:
    """A TCP call to the sidecar's own outbound (15001) or inbound (15006) port is blocked: istiod's
    BlackHoleCluster. Here the call is a CONNECT to (or request for) `<pod ip>:<port>` through the
    sidecar, which would otherwise pass through to itself."""
    assert to(url=url) == "BlackHoleCluster"


# --- TestServiceEntry: "identical CIDR (ignoring insignificant bits) is dropped" ------------------------


def test_service_entry_identical_cidr() -> None:
    """se1 has 1234:1f1:123:123:f816:3eff:feb8:2287/32 and se2 1234:1f1:123:123:f816:3eff:febf:57ce/32,
    the same network once the host bits are dropped: istiod keeps se1's filter chain and a call to
    1234:1f1:1:1:1:1:1:1:9999 reaches blah1. By design the host decides here: each name reaches its own
    service (both clusters exist, as in istiod) and an address inside the CIDR is an unknown destination."""
    docs = (
        blah(1, ["1234:1f1:123:123:f816:3eff:feb8:2287/32"]),
        blah(2, ["1234:1f1:123:123:f816:3eff:febf:57ce/32"]),
    )
    assert to(*docs, url="tcp://blah1.somedomain:9999") == "outbound|9999||blah1.somedomain"
    assert to(*docs, url="tcp://blah2.somedomain:9999") == "outbound|9999||blah2.somedomain"
    assert to(*docs, url="tcp://[1234:1f1:1:1:1:1:1:1]:9999") == PASS
    names = clusters(snapshot(*docs, pods=[], services=False), sidecar())
    assert {"outbound|9999||blah1.somedomain", "outbound|9999||blah2.somedomain"} <= set(names)


# --- peer_authentication_simulation_test.go ------------------------------------------------------------


def peer_auth(mode: str, port_modes: dict[int, str] | None = None) -> str:
    spec: dict = {"selector": {"matchLabels": {"app": "foo"}}, "mtls": {"mode": mode}}
    if port_modes:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in port_modes.items()}
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "default"},
            "spec": spec,
        }
    )


def foo_entry(*ports: tuple[str, int, str]) -> str:
    """istiod's `se` ServiceEntry for foo.bar, of which the proxy is the (only) endpoint."""
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "se", "namespace": "default"},
            "spec": {
                "hosts": ["foo.bar"],
                "workloadSelector": {"labels": {"app": "foo"}},
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"name": n, "number": p, "protocol": proto} for n, p, proto in ports],
            },
        }
    )


def cluster_of(result: str) -> str:
    """istiod's ClusterMatched of a `follow` result (`<vhost> <cluster>` or `<cluster>`), or the error."""
    return result.rsplit(" ", 1)[-1] if result.startswith("inbound|") else result


def call(snap: object, proxy: object, port: int, protocol: str, tls: str, alpn: str | None) -> str:
    lst = generate(snap, proxy, naming.LISTENER_TYPE)  # type: ignore[arg-type]
    if f"{IP}_{port}" not in lst:
        return NO_LISTENER
    return cluster_of(follow(snap, proxy, port, protocol, tls, alpn))  # type: ignore[arg-type]


PT_POD = Pod("foo-0", "default", IP, {"app": "foo"}, workload="foo", service_account="foo",
             app_ports={8000: 41000, 9000: 41001})  # fmt: skip
SE_PORT_8000 = foo_entry(("http", 8000, "HTTP"))
P8000, P9000 = "inbound|8000||", "inbound|9000||"
# (case, docs, {(port, TLS): expected}); "mtls" is an HTTP call over Istio mTLS with ALPN "istio".
PASSTHROUGH_CASES = [
    ("global disable", (peer_auth("DISABLE"),), {(8000, "mtls"): P8000, (8000, "none"): P8000}),
    ("global strict", (peer_auth("STRICT"),), {(8000, "none"): NO_FILTER_CHAIN, (8000, "mtls"): P8000}),
    ("global permissive", (peer_auth("PERMISSIVE"),), {(8000, "none"): P8000, (8000, "mtls"): P8000}),
    (
        "global disable and port 9000 strict",
        (peer_auth("DISABLE", {9000: "STRICT"}),),
        {(8000, "none"): P8000, (8000, "mtls"): P8000, (9000, "none"): NO_FILTER_CHAIN, (9000, "mtls"): P9000},
    ),
    (
        "global disable and port 9000 strict not in service",
        (peer_auth("DISABLE", {9000: "STRICT"}), SE_PORT_8000),
        # mTLS to the plaintext HTTP port: the HTTP connection manager gets TLS bytes.
        {(8000, "none"): P8000, (8000, "mtls"): PROTOCOL_ERROR, (9000, "none"): NO_FILTER_CHAIN, (9000, "mtls"): P9000},
    ),
    (
        "global strict and port 9000 plaintext",
        (peer_auth("STRICT", {9000: "DISABLE"}),),
        {(8000, "none"): NO_FILTER_CHAIN, (8000, "mtls"): P8000, (9000, "none"): P9000, (9000, "mtls"): P9000},
    ),
    (
        "global strict and port 9000 plaintext not in service",
        (peer_auth("STRICT", {9000: "DISABLE"}), SE_PORT_8000),
        {(8000, "none"): NO_FILTER_CHAIN, (8000, "mtls"): P8000, (9000, "none"): P9000, (9000, "mtls"): P9000},
    ),
    (
        "global plaintext and port 9000 permissive",
        (peer_auth("DISABLE", {9000: "PERMISSIVE"}),),
        {(8000, "none"): P8000, (8000, "mtls"): P8000, (9000, "none"): P9000, (9000, "mtls"): P9000},
    ),
    (
        "global plaintext and port 9000 permissive not in service",
        (peer_auth("DISABLE", {9000: "PERMISSIVE"}), SE_PORT_8000),
        {(8000, "none"): P8000, (8000, "mtls"): PROTOCOL_ERROR, (9000, "none"): P9000, (9000, "mtls"): P9000},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "docs", "calls"), PASSTHROUGH_CASES, ids=[c[0] for c in PASSTHROUGH_CASES])
def test_peer_authentication_passthrough(name: str, docs: tuple[str, ...], calls: dict) -> None:
    """TestPeerAuthenticationPassthrough: the workload's PeerAuthentication, and its port-level modes,
    apply to the ports no service declares as to a service's ports."""
    snap = snapshot(*docs, pods=[PT_POD], services=False)
    proxy = sidecar("foo-0", "default", {"app": "foo"}, IP)
    got = {
        (port, tls): call(snap, proxy, port, "http", tls, "istio" if tls == "mtls" else None)
        for port, tls in calls
    }
    assert got == calls


WS_POD = Pod("foo-0", "default", IP, {"app": "foo"}, workload="foo", service_account="foo",
             app_ports={8080: 41080, 9090: 41090})  # fmt: skip
PA_8080_STRICT = peer_auth("STRICT", {9090: "DISABLE"})


def foo_sidecar(*ports: tuple[str, int]) -> str:
    ingress = [
        {"defaultEndpoint": f"127.0.0.1:{p}", "port": {"name": n, "number": p, "protocol": "TCP"}}
        for n, p in ports
    ]
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "sidecar", "namespace": "default", "labels": {"app": "foo"}},
            "spec": {
                "workloadSelector": {"labels": {"app": "foo"}},
                "ingress": ingress,
                "egress": [{"hosts": ["*/*"]}],
            },
        }
    )


FULL_SIDECAR = foo_sidecar(("tls", 8080), ("plaintext", 9090))
PARTIAL_SIDECAR = foo_sidecar(("tls", 8080))
INSTANCE_PORTS = foo_entry(("tls", 8080, "TCP"), ("plaintext", 9090, "TCP"))
INSTANCE_NO_PORTS = foo_entry(("random", 5050, "TCP"))
P8080, P9090 = "inbound|8080||", "inbound|9090||"
# Plaintext on 8080 (STRICT) finds no chain; TLS on the plaintext port 9090 is not sniffed, so it passes.
AS_ISTIO = {
    (8080, "none"): NO_FILTER_CHAIN,
    (8080, "mtls"): P8080,
    (9090, "none"): P9090,
    (9090, "mtls"): P9090,
}
WITH_SIDECAR_CASES = [
    ("service, no sidecar", (INSTANCE_PORTS,), AS_ISTIO),
    ("service, full sidecar", (FULL_SIDECAR, INSTANCE_PORTS), AS_ISTIO),
    # istiod: the ports are in no service, so 8080 (mTLS) and 9090 pass through.
    ("no service, no sidecar", (INSTANCE_NO_PORTS,), AS_ISTIO),
    ("no service, full sidecar", (FULL_SIDECAR, INSTANCE_NO_PORTS), AS_ISTIO),
    # istiod: 9090 is in the Service but not in the Sidecar: its passthrough chain (plaintext, as the
    # port-level DISABLE says). By design there is no listener for a port the Sidecar leaves out.
    ("service, partial sidecar", (PARTIAL_SIDECAR, INSTANCE_PORTS),
     {**AS_ISTIO, (9090, "none"): NO_LISTENER, (9090, "mtls"): NO_LISTENER}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "docs", "calls"), WITH_SIDECAR_CASES, ids=[c[0] for c in WITH_SIDECAR_CASES]
)
def test_peer_authentication_with_sidecar(name: str, docs: tuple[str, ...], calls: dict) -> None:
    """TestPeerAuthenticationWithSidecar: STRICT with port 9090 DISABLE applies alike to the chains built
    from the service's ports and from a Sidecar's ingress ports (TCP calls)."""
    snap = snapshot(PA_8080_STRICT, *docs, pods=[WS_POD], services=False)
    proxy = sidecar("foo-0", "default", {"app": "foo"}, IP)
    got = {(port, tls): call(snap, proxy, port, "tcp", tls, None) for port, tls in calls}
    assert got == calls
