"""Istio's mutual-TLS reachability integration cases, re-expressed against a real Isthmus mesh.

Sources: tests/integration/security/reachability_test.go (TestReachability) with its
testdata/reachability/*.yaml.tmpl, the cases of its earlier revisions that the current table folded
away (beta-per-port-mtls, beta-mtls-automtls-workload, global-plaintext, automtls-passthrough with a
mixed service, automtls-partial-sidecar-dr-*), and pass_through_filter_chain_test.go
(TestPassThroughFilterChain).

Istio's echo deployment is mirrored in one namespace `ns1` (the root namespace is istio-system): `a`
and `b` carry sidecars, `naked` has none (`spec.sidecar: false`), and `multiversion` has a `vistio`
instance with a sidecar and a `vlegacy` one without (the "migration" app). Each of a, b and naked
serves http 80 -> 18080, http2 85 -> 18085, grpc 7070 -> 17070 and tcp 9090 -> 19090. Every case
sends all its (source, target, port) calls at once and checks Istio's expected success, and for HTTP
ports whether the request arrived over mTLS (Istio's check.MTLSForHTTP / PlaintextForHTTP: the
sidecar's X-Forwarded-Client-Cert with the client's SPIFFE id, or none).

Where Isthmus departs by design, the test keeps the meaningful part:
- A meshed source sends through its sidecar (explicit proxy; TCP as a CONNECT tunnel); the naked
  source connects straight to the address the service resolves to, from its own pod address.
- gRPC: the echo app is not a gRPC server; a gRPC-shaped POST on the grpc port stands for the call.
- Not ported: the https port and the websocket scheme (the echo app serves neither TLS nor
  WebSocket), headless, StatefulSet, VM and proxyless-gRPC targets, and the cross-cluster/network
  checks (one machine, one network). The alpha API cases of early revisions (alpha-mtls-automtls,
  mix-mtls-api: Policy/MeshPolicy kinds Istio removed) and beta-mtls-partial-automtls (its
  expectation predates Istio's endpoint-level PeerAuthentication check, which reversed it) are left.
- TestPassThroughFilterChain reaches ports no Service declares through Istio's fake.destination
  ServiceEntry (`resolution: NONE`, the pod's address as `addresses`) and its ISTIO_MUTUAL
  DestinationRule; the client asks its sidecar for the pod address, as plain HTTP on the HTTP ports
  and as a CONNECT tunnel on the TCP ones, both over the dynamic forward proxy cluster that stands
  for istiod's ORIGINAL_DST one. Its HTTP ports are declared HTTP there (Istio: TCP, intercepted
  transparently) since an explicit proxy carries HTTP on HTTP ports and TCP in CONNECT tunnels. The
  HTTPS ports (8084, 8089: the echo app's own TLS) are left.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from isthmus.client import http
from isthmus.client.http import Response
from isthmus.client.mesh import resolve
from tests.e2e.harness import MeshProcess, applied

pytestmark = pytest.mark.e2e

NS = "ns1"
ROOT = "istio-system"
HTTP, HTTP2, GRPC, TCP = 18080, 18085, 17070, 19090
SERVICE_PORT = {HTTP: 80, HTTP2: 85, GRPC: 7070, TCP: 9090}
PORT_NAME = {HTTP: "http", HTTP2: "http2", GRPC: "grpc", TCP: "tcp"}
ALL_PORTS = (HTTP, HTTP2, GRPC, TCP)
A, B, NAKED, MIGRATION = "a", "b", "naked", "multiversion"
# Ports of `a` that no Service declares (TestPassThroughFilterChain): HTTP 8085/8086, TCP 8087/8088.
PT_HTTP, PT_TCP = (8085, 8086), (8087, 8088)

_PORTS = "\n".join(
    f"  - {{name: {PORT_NAME[p]}, port: {SERVICE_PORT[p]}, targetPort: {p}}}" for p in ALL_PORTS
)


def _echo_app(name: str, *, sidecar: bool = True, extra_ports: tuple[int, ...] = ()) -> str:
    ports = [*ALL_PORTS, *extra_ports]
    tcp = [TCP, *(p for p in extra_ports if p in PT_TCP)]
    command = ", ".join(["isthmus", "echo", *(f'--tcp, "{p}"' for p in tcp)])
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{app: {name}}}
  ports:
{_PORTS}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: {NS}, labels: {{app: {name}, version: v1}}}}
spec:
  serviceAccount: {name}
  sidecar: {str(sidecar).lower()}
  ports: {list(ports)}
  command: [{command}]
---"""


def _migration_app() -> str:
    """reachability_test.go's migration app: one service, a `vistio` subset with a sidecar and a
    `vlegacy` one without."""
    out = f"""
apiVersion: v1
kind: Service
metadata: {{name: {MIGRATION}, namespace: {NS}}}
spec:
  selector: {{app: {MIGRATION}}}
  ports:
  - {{name: http, port: 80, targetPort: {HTTP}}}
---"""
    for version, sidecar in (("vistio", "true"), ("vlegacy", "false")):
        out += f"""
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: mv-{version}, namespace: {NS}, labels: {{app: {MIGRATION}, version: {version}}}}}
spec: {{serviceAccount: {MIGRATION}, sidecar: {sidecar}, ports: [{HTTP}], command: [isthmus, echo]}}
---"""
    return out


MESH = (
    f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---"
    + _echo_app(A, extra_ports=(*PT_HTTP, *PT_TCP))
    + _echo_app(B)
    + _echo_app(NAKED, sidecar=False)
    + _migration_app()
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-reachability"), MESH) as m:
        yield m


# --- calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call of a case: from a workload to a service (or a ServiceEntry host) on a workload port."""

    frm: str
    to: str
    port: int
    path: str = "/"
    service_port: int | None = None  # the port the client dials, when not the Service's

    @property
    def tcp(self) -> bool:
        return self.port in (TCP, *PT_TCP)

    @property
    def dial_port(self) -> int:
        return self.service_port or SERVICE_PORT[self.port]

    def __str__(self) -> str:
        return f"{self.frm} -> {self.to}:{self.dial_port} ({PORT_NAME.get(self.port, self.port)}) {self.path}"


@dataclass(frozen=True)
class Want:
    """Istio's expectation for a call: success, and (when it succeeds) whether it arrives over mTLS;
    `version` names the subset that must answer (migration cases)."""

    ok: bool
    mtls: bool = False
    version: str | None = None


def _host(c: Call) -> str:
    return c.to if "." in c.to else f"{c.to}.{NS}.svc.cluster.local"


async def _send(mesh: MeshProcess, c: Call, proxies: dict[str, str], direct: dict[str, Any]) -> Response:
    host = f"{_host(c)}:{c.dial_port}"
    kw: dict[str, Any] = {"timeout": 10}
    if c.frm == NAKED:
        kw["connect_to"], kw["source_ip"] = direct[c.frm, _host(c), c.dial_port]
    else:
        kw["proxy"] = proxies[c.frm]
    if c.tcp:
        return await http.request(f"tcp://{host}", body=b"hello", **kw)
    if c.port == GRPC:
        headers = [("content-type", "application/grpc"), ("te", "trailers")]
        url = f"http://{host}/proto.EchoTestService/Echo"
        return await http.request(url, method="POST", headers=headers, body=b"\x00" * 5, **kw)
    return await http.request(f"http://{host}{c.path}", **kw)


def _verdict(c: Call, want: Want, resp: Response) -> str | None:
    """None when the answer is what Istio expects, else what differs."""
    if c.tcp:
        ok = resp.status == 200 and resp.body.strip().endswith(b"hello")
        return None if ok is want.ok else f"want ok={want.ok}, got {resp.status} {resp.body[:80]!r}"
    ok = resp.status == 200 and resp.header("grpc-status") in (None, "0")
    if ok is not want.ok:
        return f"want ok={want.ok}, got {resp.status} {resp.error or resp.body[:100]!r}"
    if not ok:
        return None
    body = json.loads(resp.body)
    xfcc = body["headers"].get("x-forwarded-client-cert", "")
    mtls = "spiffe://cluster.local/ns/" in xfcc
    if mtls is not want.mtls:
        return f"want {'mTLS' if want.mtls else 'plaintext'}, got xfcc={xfcc!r}"
    if want.version and body.get("version") != want.version:
        return f"want subset {want.version}, answered by {body.get('version')}"
    return None


def check(mesh: MeshProcess, expected: dict[Call, Want]) -> None:
    """Send every call at once; fail listing each call whose outcome differs from Istio's."""
    items = list(expected)
    status = mesh.status()
    proxies = {
        p["workload"]: f"http://{p['ip']}:{p['outboundPort']}"
        for p in status["proxies"]
        if p["namespace"] == NS
    }
    naked_ip = mesh.instance(NAKED, NS)["ip"]
    direct: dict[Any, Any] = {}
    for c in items:
        if c.frm == NAKED and (NAKED, _host(c), c.dial_port) not in direct:
            # A pod address is dialled as is; a service name resolves as cluster DNS would.
            is_ip = c.to.replace(".", "").isdigit()
            addresses = [f"{c.to}:{c.dial_port}"] if is_ip else resolve(mesh.api, _host(c), c.dial_port, NS)
            assert addresses, f"{_host(c)}:{c.dial_port} resolves to nothing"
            direct[NAKED, _host(c), c.dial_port] = (addresses, naked_ip)

    async def run_all() -> list[Response]:
        gate = asyncio.Semaphore(8)

        async def one(c: Call) -> Response:
            async with gate:
                return await _send(mesh, c, proxies, direct)

        return await asyncio.gather(*(one(c) for c in items))

    responses = asyncio.run(run_all())
    wrong = [
        f"{c}: {problem}"
        for c, r in zip(items, responses, strict=True)
        if (problem := _verdict(c, expected[c], r)) is not None
    ]
    assert not wrong, f"{len(wrong)} of {len(items)} calls differ from Istio:\n" + "\n".join(wrong)


# --- case tables ----------------------------------------------------------------------------------

Cond = Callable[[str, str], bool]


def from_naked(frm: str, to: str) -> bool:
    return frm == NAKED


def to_naked(frm: str, to: str) -> bool:
    return to == NAKED


def not_naked(frm: str, to: str) -> bool:
    return not from_naked(frm, to) and not to_naked(frm, to)


def not_from_naked(frm: str, to: str) -> bool:
    return not from_naked(frm, to)


def not_to_naked(frm: str, to: str) -> bool:
    return not to_naked(frm, to)


def always(frm: str, to: str) -> bool:
    return True


def never(frm: str, to: str) -> bool:
    return False


def table(
    success: Cond,
    mtls: Cond,
    *,
    sources: Iterable[str] = (A, B, NAKED),
    targets: Iterable[str] = (A, B, NAKED),
    ports: Iterable[int] = ALL_PORTS,
) -> dict[Call, Want]:
    """Every (source, target, port) but self calls (echotest.NoSelfCalls), with Istio's conditions."""
    out: dict[Call, Want] = {}
    for frm in sources:
        for to in targets:
            if frm == to:
                continue
            for port in ports:
                out[Call(frm, to, port)] = Want(success(frm, to), mtls(frm, to))
    return out


def doc(kind: str, name: str, ns: str, spec: str, api: str = "security.istio.io/v1") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n"


def peer_authn(mode: str, ns: str = ROOT, api: str = "security.istio.io/v1") -> str:
    """testdata/reachability/global-peer-authn.yaml.tmpl (mesh-wide in the root namespace)."""
    return doc("PeerAuthentication", "default", ns, f"mtls: {{mode: {mode}}}", api)


def global_dr(mode: str, host: str = "*", ns: str = ROOT) -> str:
    """testdata/reachability/global-dr.yaml.tmpl: one DestinationRule for every host."""
    spec = f'host: "{host}"\ntrafficPolicy: {{tls: {{mode: {mode}}}}}'
    return doc("DestinationRule", "default", ns, spec, "networking.istio.io/v1beta1")


def workload_configs(mode: str, tls_mode: str | None, overrides: str | None = None) -> list[str]:
    """workload-peer-authn(-port-override).yaml.tmpl and workload-dr.yaml.tmpl, rendered for every
    target service as Istio's config.BuildAll does."""
    out = []
    for svc in (A, B, NAKED):
        spec = f"selector: {{matchLabels: {{app: {svc}}}}}\nmtls: {{mode: {mode}}}"
        if overrides:
            levels = ", ".join(f"{p}: {{mode: {overrides}}}" for p in ALL_PORTS)
            spec += f"\nportLevelMtls: {{{levels}}}"
        out.append(doc("PeerAuthentication", svc, NS, spec))
        if tls_mode:
            dr = f"host: {svc}.{NS}.svc.cluster.local\ntrafficPolicy: {{tls: {{mode: {tls_mode}}}}}"
            out.append(doc("DestinationRule", svc, NS, dr, "networking.istio.io/v1beta1"))
    return out


# --- TestReachability: global (mesh-wide) policies -----------------------------------------------


GLOBAL_CASES = {
    # name: (configs, expectSuccess, expectMTLS)
    "global mtls strict": ([peer_authn("STRICT"), global_dr("ISTIO_MUTUAL")], not_naked, not_naked),
    "global mtls permissive": (
        [peer_authn("PERMISSIVE"), global_dr("ISTIO_MUTUAL")],
        not_to_naked,
        not_naked,
    ),
    "global mtls disabled": ([peer_authn("DISABLE"), global_dr("DISABLE")], always, never),
    "global plaintext to mtls permissive": (
        [peer_authn("PERMISSIVE"), global_dr("DISABLE")],
        always,
        never,
    ),
    "global automtls strict": ([peer_authn("STRICT")], not_from_naked, not_naked),
    "global automtls disable": ([peer_authn("DISABLE")], always, never),
    "global no peer authn": ([global_dr("ISTIO_MUTUAL")], not_to_naked, not_naked),
    # Earlier revisions' beta-mtls-on.yaml: the global strict case written with the v1beta1 API.
    "beta-mtls-on": (
        [peer_authn("STRICT", api="security.istio.io/v1beta1"), global_dr("ISTIO_MUTUAL")],
        not_naked,
        not_naked,
    ),
    # Earlier revisions' global-plaintext.yaml: a `*.local` DestinationRule with DISABLE alone.
    "global-plaintext": ([global_dr("DISABLE", host="*.local")], always, never),
}


@pytest.mark.parametrize("case", list(GLOBAL_CASES))
def test_global_policies(mesh: MeshProcess, case: str) -> None:
    """TestReachability's mesh-wide cases (global-peer-authn.yaml.tmpl + global-dr.yaml.tmpl in the
    root namespace): every source (with and without sidecar) to every target on every port."""
    configs, success, mtls = GLOBAL_CASES[case]
    with applied(mesh, *configs):
        check(mesh, table(success, mtls))


# --- TestReachability: workload policies ---------------------------------------------------------


WORKLOAD_CASES = {
    "mtls strict": (("STRICT", "ISTIO_MUTUAL", None), not_naked, not_naked),
    "mtls permissive": (("PERMISSIVE", "ISTIO_MUTUAL", None), not_to_naked, not_naked),
    "mtls disabled": (("DISABLE", "DISABLE", None), always, never),
    # workload-peer-authn-port-override.yaml.tmpl: STRICT, every workload port DISABLE; no DR, so
    # auto mTLS must see the endpoint's port-level DISABLE and send plaintext.
    "mtls port override": (("STRICT", None, "DISABLE"), always, never),
}


@pytest.mark.parametrize("case", list(WORKLOAD_CASES))
def test_workload_policies(mesh: MeshProcess, case: str) -> None:
    """TestReachability's per-workload cases: a PeerAuthentication selecting each target (and a
    DestinationRule for its host), every source to every target on every port."""
    (mode, tls_mode, overrides), success, mtls = WORKLOAD_CASES[case]
    with applied(mesh, *workload_configs(mode, tls_mode, overrides)):
        check(mesh, table(success, mtls))


# --- earlier revisions: port-level and workload-level auto mTLS ------------------------------------


def test_beta_per_port_mtls(mesh: MeshProcess) -> None:
    """beta-per-port-mtls.yaml: b DISABLE but its http workload port STRICT, and a `*.local`
    DestinationRule DISABLE; calls to b fail on the http port only, never over mTLS."""
    pa = doc(
        "PeerAuthentication",
        "per-port",
        NS,
        f"selector: {{matchLabels: {{app: b}}}}\nmtls: {{mode: DISABLE}}\nportLevelMtls: {{{HTTP}: {{mode: STRICT}}}}",
    )
    expected: dict[Call, Want] = {}
    for frm in (A, NAKED):
        for port in ALL_PORTS:
            expected[Call(frm, B, port)] = Want(port != HTTP)
    with applied(mesh, pa, global_dr("DISABLE", host="*.local", ns=NS)):
        check(mesh, expected)


def test_beta_mtls_automtls_workload(mesh: MeshProcess) -> None:
    """beta-mtls-automtls-workload.yaml: ns1 STRICT, workload a DISABLE, b STRICT with its http port
    DISABLE, no DestinationRule. Auto mTLS follows each endpoint's (workload, port) mode: b's sidecar
    reaches a and b's http port in plaintext; the naked client reaches only those."""
    configs = [
        peer_authn("STRICT", ns=NS),
        doc("PeerAuthentication", "a", NS, "selector: {matchLabels: {app: a}}\nmtls: {mode: DISABLE}"),
        doc(
            "PeerAuthentication",
            "b",
            NS,
            f"selector: {{matchLabels: {{app: b}}}}\nmtls: {{mode: STRICT}}\nportLevelMtls: {{{HTTP}: {{mode: DISABLE}}}}",
        ),
    ]
    expected: dict[Call, Want] = {}
    for frm in (B, NAKED):
        for to in (A, B):
            if frm == to:
                continue
            for port in ALL_PORTS:
                plaintext_target = to == A or port == HTTP
                ok = frm == B or plaintext_target
                expected[Call(frm, to, port)] = Want(ok, mtls=frm == B and not plaintext_target)
    with applied(mesh, *configs):
        check(mesh, expected)


def test_automtls_passthrough(mesh: MeshProcess) -> None:
    """automtls-passthrough.yaml.tmpl: a `*` DestinationRule with loadBalancer PASSTHROUGH and no TLS.
    Everything succeeds; auto mTLS holds for all-sidecar services (Istio's
    BestEffortInferServiceMTLSMode), and a service with an instance without sidecar (multiversion,
    earlier revisions' "for mixed targets, we downgrade to plaintext") gets plaintext on every
    instance. Istio's passthrough is by original destination; here the sidecar's own pick."""
    dr = doc(
        "DestinationRule",
        "passthrough",
        ROOT,
        'host: "*"\ntrafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}',
        "networking.istio.io/v1",
    )
    expected = table(always, not_naked)
    for frm in (A, B):
        for version in ("vistio", "vlegacy"):
            # Both instances are reached (random pick): ask each several times, all plaintext.
            for i in range(3):
                expected[Call(frm, MIGRATION, HTTP, f"/{version}/{i}")] = Want(True, mtls=False)
    with applied(mesh, dr):
        check(mesh, expected)


# --- TestReachability: migration (auto mTLS with a partially meshed service) ------------------------


def _migration_configs(tls_mode: str | None) -> list[str]:
    """global-peer-authn STRICT in ns1 and migration.yaml.tmpl: /vistio to the sidecar subset,
    everything else to the legacy one; subsets (and the rule) with `tls_mode` when given."""
    tls = f"\n  trafficPolicy: {{tls: {{mode: {tls_mode}}}}}" if tls_mode else ""
    top = f"\ntrafficPolicy: {{tls: {{mode: {tls_mode}}}}}" if tls_mode else ""
    host = f"{MIGRATION}.{NS}.svc.cluster.local"
    vs = f"""
hosts: [{host}]
http:
- name: vistio-route
  match: [{{uri: {{prefix: /vistio}}}}]
  route: [{{destination: {{host: {host}, subset: vistio}}}}]
- name: legacy-by-default
  route: [{{destination: {{host: {host}, subset: vlegacy}}}}]
"""
    dr = f"""
host: {host}
subsets:
- name: vistio
  labels: {{version: vistio}}{tls}
- name: vlegacy
  labels: {{version: vlegacy}}{tls}{top}
"""
    return [
        peer_authn("STRICT", ns=NS),
        doc("VirtualService", MIGRATION, NS, vs, "networking.istio.io/v1"),
        doc("DestinationRule", MIGRATION, NS, dr, "networking.istio.io/v1"),
    ]


@pytest.mark.parametrize(
    ("case", "tls_mode", "istio_ok", "vistio_mtls"),
    [
        # automtls-partial-sidecar-dr-no-tls: auto mTLS per endpoint, both succeed.
        ("migration no tls", None, {"vistio", "vlegacy"}, True),
        # automtls-partial-sidecar-dr-disable: plaintext to both, the STRICT sidecar refuses it.
        ("migration tls disabled", "DISABLE", {"vlegacy"}, False),
        # automtls-partial-sidecar-dr-mutual: mTLS to both, the legacy app cannot speak it.
        ("migration tls mutual", "ISTIO_MUTUAL", {"vistio"}, True),
    ],
)
def test_migration(
    mesh: MeshProcess, case: str, tls_mode: str | None, istio_ok: set[str], vistio_mtls: bool
) -> None:
    """TestReachability's migration cases: meshed sources (not naked) to the migration app's http
    port by /vistio and /vlegacy; the answering subset is checked too."""
    expected: dict[Call, Want] = {}
    for frm in (A, B):
        for version in ("vistio", "vlegacy"):
            want = Want(version in istio_ok, vistio_mtls and version == "vistio", version)
            expected[Call(frm, MIGRATION, HTTP, f"/{version}")] = want
    with applied(mesh, *_migration_configs(tls_mode)):
        check(mesh, expected)


# --- TestPassThroughFilterChain --------------------------------------------------------------------


def _fake_destination(mesh: MeshProcess) -> list[str]:
    """The test's mTLS workaround: a passthrough ServiceEntry for a's pod address on its undeclared
    ports and a DestinationRule forcing ISTIO_MUTUAL to it."""
    ip = mesh.instance(A, NS)["ip"]
    ports = ", ".join(
        f"{{number: {p}, name: {'http' if p in PT_HTTP else 'tcp'}-{p}, protocol: {'HTTP' if p in PT_HTTP else 'TCP'}}}"
        for p in (*PT_HTTP, *PT_TCP)
    )
    se = (
        "hosts: [fake.destination]\nlocation: MESH_INTERNAL\nresolution: NONE\n"
        f"addresses: [{ip}]\nports: [{ports}]\n"
    )
    dr = 'host: "fake.destination"\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL}}'
    return [
        doc("ServiceEntry", "fake-destination", NS, se, "networking.istio.io/v1beta1"),
        doc("DestinationRule", "fake-destination", NS, dr, "networking.istio.io/v1alpha3"),
    ]


def _pa(mode: str, port_mode: str | None = None) -> str:
    """The case's PeerAuthentication: namespace-wide, or selecting a with 8086/8088 overridden."""
    if port_mode is None:
        return doc("PeerAuthentication", "mtls", NS, f"mtls: {{mode: {mode}}}", "security.istio.io/v1beta1")
    levels = ", ".join(f"{p}: {{mode: {port_mode}}}" for p in (8086, 8088))
    spec = f"selector: {{matchLabels: {{app: a}}}}\nmtls: {{mode: {mode}}}\nportLevelMtls: {{{levels}}}"
    return doc("PeerAuthentication", "mtls", NS, spec, "security.istio.io/v1beta1")


# name: (configs, {port: (plaintextSucceeds, mtlsSucceeds)})
_BOTH, _PLAIN, _MTLS, _NONE = (True, True), (True, False), (False, True), (False, False)
PASSTHROUGH_CASES: dict[str, tuple[list[str], dict[int, tuple[bool, bool]]]] = {
    "DISABLE": ([_pa("DISABLE")], dict.fromkeys((8085, 8086, 8087, 8088), _PLAIN)),
    "DISABLE with authz": (
        [
            _pa("DISABLE"),
            doc(
                "AuthorizationPolicy",
                "authz",
                NS,
                'rules:\n- to: [{operation: {ports: ["8085", "8087", "8089"]}}]',
                "security.istio.io/v1beta1",
            ),
        ],
        {8085: _PLAIN, 8086: _NONE, 8087: _PLAIN, 8088: _NONE},
    ),
    "STRICT": ([_pa("STRICT")], dict.fromkeys((8085, 8086, 8087, 8088), _MTLS)),
    "PERMISSIVE": ([_pa("PERMISSIVE")], dict.fromkeys((8085, 8086, 8087, 8088), _BOTH)),
    "DISABLE with STRICT": (
        [_pa("DISABLE", "STRICT")],
        {8085: _PLAIN, 8086: _MTLS, 8087: _PLAIN, 8088: _MTLS},
    ),
    "STRICT with disable": (
        [_pa("STRICT", "DISABLE")],
        {8085: _MTLS, 8086: _PLAIN, 8087: _MTLS, 8088: _PLAIN},
    ),
    "PERMISSIVE with strict": (
        [_pa("PERMISSIVE", "STRICT")],
        {8085: _BOTH, 8086: _MTLS, 8087: _BOTH, 8088: _MTLS},
    ),
    "STRICT with PERMISSIVE": (
        [_pa("STRICT", "PERMISSIVE")],
        {8085: _MTLS, 8086: _BOTH, 8087: _MTLS, 8088: _BOTH},
    ),
    "PERMISSIVE with disable": (
        [_pa("PERMISSIVE", "DISABLE")],
        {8085: _BOTH, 8086: _PLAIN, 8087: _BOTH, 8088: _PLAIN},
    ),
    "DISABLE with PERMISSIVE": (
        [_pa("DISABLE", "PERMISSIVE")],
        {8085: _PLAIN, 8086: _BOTH, 8087: _PLAIN, 8088: _BOTH},
    ),
}


@pytest.mark.parametrize("case", list(PASSTHROUGH_CASES))
def test_pass_through_filter_chain(mesh: MeshProcess, case: str) -> None:
    """TestPassThroughFilterChain: PeerAuthentication (and port-level settings) on ports of a that no
    Service declares. The naked source sends plaintext straight to the pod; b's sidecar sends mTLS
    through the fake.destination ServiceEntry. A denial is a 403 or a failed connection."""
    configs, table_ = PASSTHROUGH_CASES[case]
    ip = mesh.instance(A, NS)["ip"]
    expected: dict[Call, Want] = {}
    for port, (plain_ok, mtls_ok) in table_.items():
        # The naked client dials the pod address straight; b asks its sidecar for it (plain HTTP, or a
        # CONNECT tunnel on TCP ports), where the address is fake.destination's.
        expected[Call(NAKED, ip, port, service_port=port)] = Want(plain_ok)
        expected[Call(B, ip, port, service_port=port)] = Want(mtls_ok, mtls=mtls_ok)
    with applied(mesh, *_fake_destination(mesh), *configs):
        check(mesh, expected)
