"""Istio's path-normalization integration cases (tests/integration/security/normalization_test.go,
TestNormalization), re-expressed against a real Isthmus mesh.

For every MeshConfig `pathNormalization.normalization` mode of Istio's table, each request path is sent
exactly as written (`isthmus curl` semantics: no client-side normalization) from the client `a` through
its sidecar to the echo app `b`, and the path the app received must be the one Istio expects. The same
table is also sent through the ingress gateway, whose HCM istiod builds with the same normalization.

Isthmus adds one thing to Istio's table: `b` carries a DENY AuthorizationPolicy for the exact path
`/admin`, so every case whose normalized path is `/admin` must be refused by RBAC (403) instead of
reaching the app. That is the point of normalization: the policy matches what the app will serve, and
`NONE` is the mode where `/app/../admin` slips past it, as Istio documents.

Departures by design:
- `/app#foo`: the client drops the fragment (as Istio's echo client, curl and browsers do), so it is
  the same request as `/app`.
- The client's sidecar receives the request in absolute form (`GET http://b:80/path`), as every
  HTTP_PROXY client sends it (DESIGN §3); Istio's client is intercepted and sends origin form.
The table (normalization_cases.py) is Istio's current one: `/..;/admin` becomes `/admin` under
normalize_path since Envoy's path-parameter fix (istio/istio#61478); Isthmus adds that NONE keeps it.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from isthmus.client import http
from isthmus.client.http import Response
from tests.e2e.harness import MeshProcess, applied
from tests.e2e.normalization_cases import CASES, Expect

pytestmark = pytest.mark.e2e

DENIED_PATH = "/admin"


def _echo(name: str) -> str:
    """A Service on port 80 and its echo workload (target port 18080), as Istio's echo apps."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: 18080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: default, labels: {{app: {name}, version: v1}}}}
spec: {{serviceAccount: {name}, ports: [18080], command: [isthmus, echo]}}
---
"""


# The client `a`, the server `b` with a DENY policy on DENIED_PATH, and `b` behind the ingress gateway.
MESH = (
    _echo("a")
    + _echo("b")
    + f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["{DENIED_PATH}"]}}}}]
---
"""
    + """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["b.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-gw, namespace: default}
spec:
  hosts: ["b.example.com"]
  gateways: [gw]
  http:
  - route: [{destination: {host: b.default.svc.cluster.local, port: {number: 80}}}]
"""
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-normalization"), MESH) as m:
        yield m


# --- requests ---------------------------------------------------------------------------------------


def mesh_config(normalization: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: isthmus.dev/v1alpha1
        kind: MeshConfig
        metadata: {{name: mesh}}
        spec:
          pathNormalization: {{normalization: {normalization}}}
        """)


@dataclass(frozen=True)
class Route:
    """Where a case's request enters the mesh: the client's sidecar, or the ingress gateway."""

    name: str
    proxy: str | None  # the HTTP proxy to send through (absolute form), or None to dial `connect_to`
    authority: str
    connect_to: str | None = None


def routes(mesh: MeshProcess) -> list[Route]:
    return [
        Route("sidecar", mesh.proxy_url("a"), "b.default.svc.cluster.local:80"),
        Route("gateway", None, "b.example.com", connect_to=mesh.gateway_address(80)),
    ]


def verdict(resp: Response) -> str:
    """What a case observed: the app's path, `403` for an RBAC denial, or the status and body."""
    if resp.status == 200:
        return json.loads(resp.body)["path"]
    if resp.status == 403 and b"RBAC: access denied" in resp.body:
        return "403"
    return str(resp.status) if resp.status == 400 else f"{resp.status} {resp.error or resp.body[:120]!r}"


def wanted(seen: str) -> str:
    """Istio's expectation for a case, with the DENY policy on /admin applied on top."""
    return "403" if seen == DENIED_PATH else seen


async def _send_all(route: Route, expectations: tuple[Expect, ...]) -> list[Response]:
    gate = asyncio.Semaphore(16)

    async def one(path: str) -> Response:
        async with gate:
            return await http.request(
                f"http://{route.authority}{path}", proxy=route.proxy, connect_to=route.connect_to, timeout=10
            )

    return await asyncio.gather(*(one(sent) for sent, _ in expectations))


@pytest.mark.parametrize("case", list(CASES))
def test_normalization(mesh: MeshProcess, case: str) -> None:
    """TestNormalization: each group of Istio's table under its MeshConfig mode, through the client's
    sidecar and through the ingress gateway; every case that disagrees is listed."""
    mode, expectations = CASES[case]
    with applied(mesh, mesh_config(mode)):
        wrong = []
        for route in routes(mesh):
            responses = asyncio.run(_send_all(route, expectations))
            for (sent, seen), resp in zip(expectations, responses, strict=True):
                got = verdict(resp)
                if got != wanted(seen):
                    wrong.append(f"{mode} via {route.name}: {sent!r} -> want {wanted(seen)!r}, got {got!r}")
    assert not wrong, "\n".join(wrong)
