"""The istio/api fields newer than Isthmus's first model, on a real mesh: Envoy accepts what they become,
and it does what the field says.

- StringMatch.suffix (istio/api#3759; virtualservice-valid.yaml "suffix-match"): header, query parameter
  and authority suffix matches pick the route.
- HTTPRoute.sessionPersistence (virtualservice-session-persistence.yaml): a client that sends back the
  cookie, or the header, Envoy's stateful_session filter gave it stays on one of two replicas.
- JWTRule.presence (istio/api#3737, #3801): REQUIRED refuses a request without the token, IGNORED lets a
  request with a bad token through; with failedStatusInMetadata the reason is in jwt_authn's dynamic
  metadata (read back through a gateway route's response header).
- TrafficPolicy.compression.response.decompress (destination-rule-compression.yaml): the client proxy asks
  the upstream for gzip and hands the caller the plain body; `enabled: false` on a subset turns it off,
  also for that subset's share of a weighted split.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for
from tests.e2e.jwt_tokens import ISSUER_1, istio_tokens

pytestmark = pytest.mark.e2e

# An app that answers gzip-compressed JSON when the request accepts gzip, saying what it was sent.
GZIP_APP = """
import gzip, json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        accept = self.headers.get("accept-encoding", "")
        body = json.dumps({"acceptEncoding": accept, "version": os.environ.get("VERSION", "")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if "gzip" in accept:
            body = gzip.compress(body)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
for port in json.loads(os.environ["ISTHMUS_PORTS"]).values():
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever).start()
"""

# The Gateway also starts the default ingress gateway: jwt_authn and the routes share its connection
# manager, so a route can hand the jwt_authn failure status (dynamic metadata) back as a response header.
MESH = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["jwt.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: gw}}
spec:
  hosts: ["jwt.example.com"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: s}}}}]
    headers:
      response:
        set: {{x-jwt-failure: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:failed_status:message)%"}}
---
apiVersion: v1
kind: Service
metadata: {{name: a}}
spec:
  selector: {{app: a}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: a, labels: {{app: a}}}}
spec: {{ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: s}}
spec:
  selector: {{app: s}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: s, labels: {{app: s}}}}
spec: {{serviceAccount: s, replicas: 2, ports: [8080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: gz}}
spec:
  selector: {{app: gz}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: gz-v1, labels: {{app: gz, version: v1}}}}
spec: {{ports: [8080], command: [{python}, {script}], env: {{VERSION: v1}}}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: gz-v2, labels: {{app: gz, version: v2}}}}
spec: {{ports: [8080], command: [{python}, {script}], env: {{VERSION: v2}}}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    work = tmp_path_factory.mktemp("newer-api-fields")
    script = work / "gzip_app.py"
    script.write_text(GZIP_APP)
    with MeshProcess.from_yaml(work, MESH.format(python=sys.executable, script=script)) as m:
        yield m


def curl(mesh: MeshProcess, url: str, **kw: Any) -> Response:
    return mesh.curl("a", url, timeout=10, **kw)


def served_by(resp: Response) -> str:
    body = echo_body(resp)
    return f"{body['workload']}/{body['instance']}"


# --- StringMatch.suffix ---------------------------------------------------------------------------

SUFFIX_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: s-suffix}
spec:
  hosts: [s]
  http:
  - match:
    - headers: {referer: {suffix: .example.com}}
    - queryParams: {token: {suffix: -dev}}
    - authority: {suffix: .svc.cluster.local}
    route:
    - destination: {host: a}
  - route:
    - destination: {host: s}
"""


def test_suffix_matches_route(mesh: MeshProcess) -> None:
    with applied(mesh, SUFFIX_VS):
        assert (
            echo_body(curl(mesh, "http://s/", headers={"referer": "https://www.example.com"}))["workload"]
            == "a"
        )
        assert (
            echo_body(curl(mesh, "http://s/", headers={"referer": "https://example.org"}))["workload"] == "s"
        )
        assert echo_body(curl(mesh, "http://s/?token=abc-dev"))["workload"] == "a"
        assert echo_body(curl(mesh, "http://s/?token=abc-prod"))["workload"] == "s"
        assert echo_body(curl(mesh, "http://s.default.svc.cluster.local/"))["workload"] == "a"
        assert echo_body(curl(mesh, "http://s/"))["workload"] == "s"


# --- HTTPRoute.sessionPersistence -----------------------------------------------------------------


def _session_vs(sp: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: s-sticky}}
spec:
  hosts: [s]
  http:
  - sessionPersistence: {sp}
    route:
    - destination: {{host: s}}
"""


def _spread(mesh: MeshProcess, headers: dict[str, str] | None = None, n: int = 12) -> set[str]:
    return {served_by(curl(mesh, "http://s/", headers=headers)) for _ in range(n)}


def _first(mesh: MeshProcess, header: str) -> Response:
    """The first response that carries the session `header`: the first route with sessionPersistence
    adds the stateful_session filter to the client's listeners, and Envoy serves from a replaced listener
    once it has warmed, which may be a moment after the ACK the apply waits for."""
    return wait_for(f"a response with {header}", lambda: (r := curl(mesh, "http://s/")).header(header) and r)


def test_session_persistence_cookie(mesh: MeshProcess) -> None:
    vs = _session_vs("{absoluteTimeout: 5m, cookie: {name: s-session, path: /, lifetimeType: PERMANENT}}")
    with applied(mesh, vs):
        first = _first(mesh, "set-cookie")
        cookie = first.header("set-cookie")
        assert cookie and cookie.startswith("s-session=") and "Max-Age=300" in cookie, first.headers
        pinned = {"cookie": cookie.split(";", 1)[0]}
        assert _spread(mesh, pinned) == {served_by(first)}
        # without the cookie, the two replicas share the load as before
        assert len(_spread(mesh)) == 2


def test_session_persistence_header(mesh: MeshProcess) -> None:
    with applied(mesh, _session_vs("{type: HEADER, header: {name: x-s-session}}")):
        first = _first(mesh, "x-s-session")
        token = first.header("x-s-session")
        assert token, first.headers
        assert _spread(mesh, {"x-s-session": token}) == {served_by(first)}


def test_session_persistence_refusal(mesh: MeshProcess) -> None:
    """The invalid document of virtualservice-session-persistence.yaml, and what Envoy cannot express."""
    bad = mesh.apply(_session_vs("{type: HEADER}"), expect_ok=False)
    assert bad[
        "code"
    ] != 200 and "type must match the specified session persistence configuration" in json.dumps(bad)
    bad = mesh.apply(_session_vs("{cookie: {name: c, lifetimeType: PERMANENT}}"), expect_ok=False)
    assert bad["code"] != 200 and "needs absoluteTimeout" in json.dumps(bad)


# --- JWTRule.presence, failedStatusInMetadata ----------------------------------------------------


def _request_authn(tokens: dict[str, str], presence: str, extra: str = "") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: s}}
spec:
  selector: {{matchLabels: {{app: s}}}}
  jwtRules:
  - issuer: {ISSUER_1["iss"]}
    jwks: {json.dumps(tokens["jwks"])}
    presence: {presence}{extra}
"""


def _jwt_authn(mesh: MeshProcess, workload: str) -> dict[str, Any]:
    p = mesh.proxy(workload)
    url = f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=ecds_filters"
    for entry in json.loads(sync.request(url, timeout=5).body)["configs"]:
        if entry["ecds_filter"]["name"] == "envoy.filters.http.jwt_authn":
            return entry["ecds_filter"]["typed_config"]
    raise AssertionError(f"{workload} holds no jwt_authn config")


def test_jwt_presence(mesh: MeshProcess) -> None:
    tokens = istio_tokens()
    good = {"authorization": f"Bearer {tokens['TokenIssuer1']}"}
    other = istio_tokens()  # signed by another key: fails verification
    bad = {"authorization": f"Bearer {other['TokenIssuer1']}"}
    with applied(mesh, _request_authn(tokens, "REQUIRED")):
        assert curl(mesh, "http://s/").status == 401
        assert curl(mesh, "http://s/", headers=bad).status == 401
        assert curl(mesh, "http://s/", headers=good).status == 200
    with applied(mesh, _request_authn(tokens, "IGNORED", "\n    failedStatusInMetadata: true")):
        assert curl(mesh, "http://s/", headers=bad).status == 200
        assert curl(mesh, "http://s/").status == 200
        config = wait_for(
            "the IGNORED rule in the sidecar's jwt_authn",
            lambda: (c := _jwt_authn(mesh, "s")).get("providers") and c,
        )
        (provider,) = config["providers"].values()
        assert provider["failed_status_in_metadata"] == "failed_status"
        assert config["rules"][0]["requires"]["requires_any"]["requirements"][1] == {
            "allow_missing_or_failed": {}
        }


def test_jwt_failed_status_in_metadata_on_the_gateway(mesh: MeshProcess) -> None:
    """IGNORED with failedStatusInMetadata on the ingress gateway: a bad token passes, and why it failed is
    in jwt_authn's dynamic metadata, which the gateway route copies into a response header."""
    tokens, other = istio_tokens(), istio_tokens()
    ra = (
        _request_authn(tokens, "IGNORED", "\n    failedStatusInMetadata: true")
        .replace("metadata: {name: s}", "metadata: {name: gw, namespace: istio-system}")
        .replace("{matchLabels: {app: s}}", "{matchLabels: {istio: ingressgateway}}")
    )

    def send(headers: dict[str, str]) -> Response:
        return sync.request(
            f"http://{mesh.gateway_address(80)}/", headers={"host": "jwt.example.com", **headers}, timeout=10
        )

    with applied(mesh, ra):
        bad = wait_for(
            "the gateway's jwt_authn failure status",
            lambda: (
                (r := send({"authorization": f"Bearer {other['TokenIssuer1']}"})).header("x-jwt-failure")
                and r
            ),
        )
        assert bad.status == 200 and bad.header("x-jwt-failure") == "Jwt verification fails"
        good = send({"authorization": f"Bearer {tokens['TokenIssuer1']}"})
        assert good.status == 200 and good.header("x-jwt-failure") is None


# --- TrafficPolicy.compression --------------------------------------------------------------------

PLAIN_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: gz}
spec:
  host: gz
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

DECOMPRESS_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: gz}
spec:
  host: gz
  trafficPolicy:
    compression: {response: {decompress: {}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      compression: {response: {decompress: {enabled: false}}}
"""

SUBSET_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gz}
spec:
  hosts: [gz]
  http:
  - match: [{headers: {x-subset: {exact: v2}}}]
    route: [{destination: {host: gz, subset: v2}}]
  - route: [{destination: {host: gz, subset: v1}}]
"""


SPLIT_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gz}
spec:
  hosts: [gz]
  http:
  - route:
    - {destination: {host: gz, subset: v1}, weight: 50}
    - {destination: {host: gz, subset: v2}, weight: 50}
"""


def _gz(mesh: MeshProcess, subset: str | None, accept: str | None) -> tuple[Response, dict[str, Any]]:
    headers = {**({"x-subset": subset} if subset else {}), **({"accept-encoding": accept} if accept else {})}
    resp = curl(mesh, "http://gz/", headers=headers)
    assert resp.status == 200, (resp.status, resp.body[:200])
    raw = resp.body
    body = json.loads(gzip.decompress(raw) if resp.header("content-encoding") == "gzip" else raw)
    assert subset is None or body["version"] == subset
    return resp, body


def test_decompress_response(mesh: MeshProcess) -> None:
    with applied(mesh, PLAIN_DR, SUBSET_VS):
        # before: the caller that asks for gzip gets gzip, one that does not gets the plain body
        resp, _ = _gz(mesh, "v1", "gzip")
        assert resp.header("content-encoding") == "gzip"
        resp, body = _gz(mesh, "v1", None)
        assert body["acceptEncoding"] == ""
        mesh.apply(DECOMPRESS_DR)  # replaces PLAIN_DR; deleted with it when the block ends
        # the proxy asks the upstream for gzip itself, and answers the caller with the plain body
        resp, body = _gz(mesh, "v1", None)
        assert "gzip" in body["acceptEncoding"] and resp.header("content-encoding") is None
        resp, _ = _gz(mesh, "v1", "gzip")
        assert resp.header("content-encoding") is None
        # subset v2 switches it off: nothing advertised, and a gzip answer reaches the caller as is
        resp, body = _gz(mesh, "v2", None)
        assert body["acceptEncoding"] == "" and resp.header("content-encoding") is None
        resp, _ = _gz(mesh, "v2", "gzip")
        assert resp.header("content-encoding") == "gzip"
        # a 50/50 split over both: each answer is handled by its own destination's policy
        mesh.apply(SPLIT_VS)
        seen = {}
        for _ in range(16):
            resp, body = _gz(mesh, None, "gzip")
            seen[body["version"]] = resp.header("content-encoding")
        assert seen == {"v1": None, "v2": "gzip"}
