"""Istio's RequestAuthentication integration cases, re-expressed against a real Isthmus mesh.

Sources (istio/istio):
- tests/integration/security/jwt_test.go TestRequestAuthentication, with the configs of
  testdata/requestauthn/*.yaml.tmpl: authn-only (two issuers, outputPayloadToHeader,
  outputClaimToHeaders incl. a nested claim, CORS preflight bypass), authn-authz (requestPrincipals),
  no-authn-authz, forward (forwardOriginalToken), remote (a jwksUri), aud (audiences, two policies
  combined), invalid-jwks (keys that cannot be fetched), headers-params (fromHeaders with prefixes,
  fromParams).
- TestIngressRequestAuthentication (global-jwt.yaml.tmpl in the root namespace, ingress.yaml.tmpl):
  in-mesh traffic checked by the mesh-wide policy, ingress traffic authorized on requestPrincipals per
  host.
- tests/integration/pilot/common/routing.go jwtClaimRoute: an ingress gateway routing on
  `@request.auth.claims.*` headers / withoutHeaders once the token is verified.

Every case of a group runs at once through the client's sidecar (`a`, as `isthmus curl --from a`) to
`b`, with Istio's expected status and, where Istio checks them, the request headers `b` received (the
echo app reflects them).

Where Isthmus departs by design:
- Tokens: Istio's tests/common/jwt tokens are signed by a key in Istio's repository and verified with a
  JWKS fetched from GitHub; here a key made per run signs tokens with the same claims
  (tests/e2e/jwt_tokens.py) and the JWKS is inlined (`jwks`) or read from a `file://` jwksUri.
- Remote JWKS: istiod fetches `http(s)` jwksUri itself (its default mode), and so does Isthmus's
  control plane; the cases with a JWKS server (remote_jwks, https_jwt, a key rotation) are in
  test_istio_security_remaining_cases.py, whose mesh runs Istio's jwt-server. Here the `remote` case
  keeps its meaning (keys named by a URI, the token forwarded with its payload) with a `file://` URI,
  which the control plane reads; `invalid-jwks` (keys that cannot be had: istiod inlines its fake key
  set, so every token is rejected and requests without one pass) uses a `file://` URI to a missing
  file, and an https URI whose host does not exist is checked the same way.
- TestGatewayAPIRequestAuthentication (targetRef on a Gateway API gateway) is not ported: Isthmus has
  no Gateway API.
- fromCookies has no Istio integration case; one is added beside headers-params.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from isthmus.client import http, sync
from isthmus.client.http import Response
from isthmus.xds.gen import authz
from tests.e2e.harness import MeshProcess, applied, wait_for
from tests.e2e.jwt_tokens import IAT, NESTED_IAT, istio_tokens, payload_of

pytestmark = pytest.mark.e2e

NS = "ns1"
ROOT = "istio-system"
ISS1, ISS2 = "test-issuer-1@istio.io", "test-issuer-2@istio.io"

# ns1: a (the client), b (the destination) with Istio's echo http port (80 -> 18080); the ingress
# Gateway and VirtualService of ingress.yaml.tmpl (which also start the default ingress gateway).
MESH = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: {NS}}}
spec:
  selector: {{app: a}}
  ports: [{{name: http, port: 80, targetPort: 18080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: a, namespace: {NS}, labels: {{app: a, version: v1}}}}
spec: {{serviceAccount: a, ports: [18080], command: [isthmus, echo]}}
---
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: {NS}}}
spec:
  selector: {{app: b}}
  ports: [{{name: http, port: 80, targetPort: 18080}}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {{name: b, namespace: {NS}, labels: {{app: b, version: v1}}}}
spec: {{serviceAccount: b, ports: [18080], command: [isthmus, echo]}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: b-gateway, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*.b.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: b, namespace: {NS}}}
spec:
  hosts: ["*.b.com"]
  gateways: [b-gateway]
  http:
  - route: [{{destination: {{host: b.{NS}.svc.cluster.local, port: {{number: 80}}}}}}]
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-jwt"), MESH) as m:
        yield m


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return istio_tokens()


# --- requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One call of Istio's table: expected status and, for 200s, headers b must (value) or must not
    (None) have received."""

    name: str
    status: int
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    host: str = ""  # through the ingress gateway with this Host; else a -> b through a's sidecar
    received: dict[str, str | None] = field(default_factory=dict)
    body: str | None = None  # the exact local reply body, for rejections


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _send(mesh: MeshProcess, c: Case) -> Any:
    if c.host:
        headers = [("Host", c.host), *c.headers]
        return http.request(f"http://{mesh.gateway_address(80)}{c.path}", headers=headers, timeout=10)
    return http.request(
        f"http://b.{NS}:80{c.path}",
        proxy=mesh.proxy_url("a", namespace=NS),
        method=c.method,
        headers=list(c.headers),
        timeout=10,
    )


def _status(mesh: MeshProcess, c: Case) -> int:
    return asyncio.run(_send(mesh, c)).status


def _problems(c: Case, resp: Response) -> list[str]:
    if resp.status != c.status:
        return [f"status {resp.status} (want {c.status}) {resp.error or ''} {resp.body[:120]!r}"]
    out: list[str] = []
    if c.body is not None and resp.text != c.body:
        out.append(f"body {resp.text!r} (want {c.body!r})")
    if c.received:
        got = {k.lower(): v for k, v in json.loads(resp.body)["headers"].items()}
        for name, want in c.received.items():
            if got.get(name.lower()) != want:
                out.append(f"b received {name}: {got.get(name.lower())!r} (want {want!r})")
    return out


def check(mesh: MeshProcess, cases: list[Case]) -> list[Response]:
    """Send every case at once; fail listing each one that differs from Istio's expectation."""

    async def run() -> list[Response]:
        return await asyncio.gather(*(_send(mesh, c) for c in cases))

    responses = asyncio.run(run())
    wrong = [
        f"{c.name}: {'; '.join(p)}" for c, r in zip(cases, responses, strict=True) if (p := _problems(c, r))
    ]
    assert not wrong, "\n".join(wrong)
    return responses


def request_authn(name: str, rules: str, *, ns: str = NS, selector: str | None = "b") -> str:
    sel = f"  selector: {{matchLabels: {{app: {selector}}}}}\n" if selector else ""
    body = textwrap.indent(textwrap.dedent(rules).strip(), "  ")
    return (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{sel}  jwtRules:\n{body}\n"
    )


# authn-authz.yaml.tmpl and headers-params.yaml.tmpl: GET only with test-issuer-1's sub-1 token.
AUTHZ_SUB1 = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: b, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: b}}}}
  rules:
  - to: [{{operation: {{methods: [GET]}}}}]
    from: [{{source: {{requestPrincipals: ["{ISS1}/sub-1"]}}}}]
"""

EXPIRED = "Jwt is expired"  # jwt_authn's local reply bodies
BAD_SIGNATURE = "Jwt verification fails"
DENIED = "RBAC: access denied"


# --- TestRequestAuthentication ----------------------------------------------------------------------------


def test_authn_only(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """authn-only: two issuers, each with outputPayloadToHeader x-test-payload; issuer 1 also copies
    iss, iat and the nested claim nested.key2 into headers. A valid token passes without its
    Authorization header (not forwarded) and with its payload and claims in headers; an expired one is
    401 unless it rides a well-formed CORS preflight (bypass_cors_preflight); no token passes.

    Istio's valid-nested-claim-token meant to send a stale X-Jwt-Nested-Claim (then overwrote its headers
    before the call); the stale value is sent here: the claim replaces it."""
    jwks = json.dumps(tokens["jwks"])
    docs = request_authn(
        "b",
        f"""
        - issuer: {ISS1}
          jwks: {jwks}
          outputPayloadToHeader: x-test-payload
          outputClaimToHeaders:
          - {{header: x-jwt-iss, claim: iss}}
          - {{header: x-jwt-iat, claim: iat}}
          - {{header: x-jwt-nested-claim, claim: nested.key2}}
        - issuer: {ISS2}
          jwks: {jwks}
          outputPayloadToHeader: x-test-payload
        """,
    )
    t1, t2, nested = tokens["TokenIssuer1"], tokens["TokenIssuer2"], tokens["TokenIssuer1WithNestedClaims2"]
    preflight = (("access-control-request-method", "POST"), ("origin", "https://istio.io"))
    cases = [
        Case(
            "valid-token-noauthz",
            200,
            "/valid-token-noauthz",
            bearer(t1),
            received={
                "authorization": None,
                "x-test-payload": payload_of(t1),
                "x-jwt-iss": ISS1,
                "x-jwt-iat": str(IAT),
            },
        ),
        Case(
            "valid-token-2-noauthz",
            200,
            "/valid-token-2-noauthz",
            bearer(t2),
            received={"authorization": None, "x-test-payload": payload_of(t2), "x-jwt-iss": None},
        ),
        Case(
            "expired-token-noauthz",
            401,
            "/expired-token-noauthz",
            bearer(tokens["TokenExpired"]),
            body=EXPIRED,
        ),
        Case(
            "expired-token-cors-preflight-request-allowed",
            200,
            "/expired-token-cors-preflight-request-allowed",
            bearer(tokens["TokenExpired"]) + preflight,
            method="OPTIONS",
        ),
        Case(
            "expired-token-bad-cors-preflight-request-rejected",
            401,
            "/expired-token-cors-preflight-request-allowed",
            bearer(tokens["TokenExpired"]) + preflight[:1],
            method="OPTIONS",
        ),
        Case("no-token-noauthz", 200, "/no-token-noauthz", received={"x-test-payload": None}),
        Case(
            "valid-nested-claim-token",
            200,
            "/valid-token-noauthz",
            bearer(nested) + (("x-jwt-nested-claim", "value_to_be_replaced"),),
            received={
                "authorization": None,
                "x-test-payload": payload_of(nested),
                "x-jwt-iss": ISS1,
                "x-jwt-iat": str(NESTED_IAT),
                "x-jwt-nested-claim": "valueC",
            },
        ),
        # Not in Istio's table: a token whose signature does not verify.
        Case(
            "tampered-token",
            401,
            "/tampered",
            bearer(t1[:-6] + ("A" * 6 if not t1.endswith("A" * 6) else "B" * 6)),
            body=BAD_SIGNATURE,
        ),
    ]
    with applied(mesh, docs):
        responses = check(mesh, cases)
    # jwt_authn's 401 tells the client why, as RFC 6750 asks.
    www = responses[2].header("www-authenticate") or ""
    assert www.startswith("Bearer realm=") and 'error="invalid_token"' in www, www


def test_authn_authz_and_no_authn(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """no-authn-authz (no policy: 200), then authn-authz: one issuer and an ALLOW policy on its sub-1
    principal: the valid token passes (Authorization not forwarded), an expired one is 401 (jwt_authn
    rejects it before RBAC), no token is 403 (no principal)."""
    check(mesh, [Case("no-authn-authz", 200, "/no-authn-authz")])
    docs = (
        request_authn("b", f"- {{issuer: {ISS1}, jwks: {json.dumps(tokens['jwks'])}}}") + "---" + AUTHZ_SUB1
    )
    cases = [
        Case(
            "valid-token",
            200,
            "/valid-token",
            bearer(tokens["TokenIssuer1"]),
            received={"authorization": None},
        ),
        Case("expired-token", 401, "/expired-token", bearer(tokens["TokenExpired"]), body=EXPIRED),
        Case("no-token", 403, "/no-token", body=DENIED),
        # Not in Istio's table: a valid token of an issuer no rule names fails verification (401).
        Case("unknown-issuer", 401, "/valid-token", bearer(tokens["TokenIssuer2"])),
    ]
    with applied(mesh, docs):
        check(mesh, cases)


def test_forward_and_file_jwks_uri(mesh: MeshProcess, tokens: dict[str, str], tmp_path: Path) -> None:
    """forward (inline keys) and remote (keys named by a jwksUri; here `file://`, see the module
    docstring): forwardOriginalToken keeps the Authorization header for the app, beside the payload.
    The control plane reads the file again when it changes (a key rotation): keys without the token's
    key reject it, the old ones accept it again, with no config change."""
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(tokens["jwks"])
    t1 = tokens["TokenIssuer1"]
    want = {"authorization": f"Bearer {t1}", "x-test-payload": payload_of(t1)}
    rotated = Case("rotated", 0, "/rotated", bearer(t1))
    for keys in (f"jwks: {json.dumps(tokens['jwks'])}", f"jwksUri: file://{jwks_file}"):
        docs = request_authn(
            "b",
            f"""
            - issuer: {ISS1}
              {keys}
              outputPayloadToHeader: x-test-payload
              forwardOriginalToken: true
            """,
        )
        with applied(mesh, docs):
            check(mesh, [Case("valid-token-forward", 200, "/valid-token-forward", bearer(t1), received=want)])
            if keys.startswith("jwksUri"):
                jwks_file.write_text(authz.PUBLIC_ONLY_JWKS)
                wait_for("the token refused", lambda: _status(mesh, rotated) == 401)
                jwks_file.write_text(tokens["jwks"])
                wait_for("the token accepted", lambda: _status(mesh, rotated) == 200)


def test_remote_jwks_uri_that_cannot_be_fetched(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """remote / remotehttps with a JWKS server that does not exist: the http(s) jwksUri is accepted and
    the control plane's JWKS resolver (istiod's default, PILOT_JWT_ENABLE_REMOTE_JWKS=false) tries to
    fetch it; the name resolves to nothing, so istiod's fake key set stands in: a token is 401, a request
    without one passes. Status `generationErrors` names the RequestAuthentication, the URI and the
    error. (Fetched keys: test_istio_security_remaining_cases.py, remote_jwks and https_jwt.)"""
    uri = f"https://jwt-server.{NS}.svc.cluster.local:8443/jwks"
    docs = request_authn("b", f"- {{issuer: {ISS1}, jwksUri: '{uri}'}}")
    cases = [
        Case("remote-unfetchable-valid-token", 401, "/", bearer(tokens["TokenIssuer1"])),
        Case("remote-unfetchable-no-token", 200, "/"),
    ]
    what = f"RequestAuthentication {NS}/b jwksUri {uri}"
    with applied(mesh, docs):
        check(mesh, cases)
        errors = wait_for(
            "the fetch error in status", lambda: mesh.status()["generationErrors"].get(what, "") or None
        )
        assert "fetching its keys failed" in errors and "no such host" in errors, errors
    assert what not in mesh.status()["generationErrors"]


def test_audiences_and_combined_policies(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """aud: part1 has issuer 1 with audience foo and issuer 2 with audience bar, part2 issuer 2 with
    none; both policies apply, their rules merged (sorted by issuer). Issuer 1's token without aud is
    refused by jwt_authn with 403, with aud foo it passes; issuer 2's token (no aud) passes on part2's
    rule although part1's rule for the same issuer refuses it."""
    jwks = json.dumps(tokens["jwks"])
    part1 = request_authn(
        "b-part1",
        f"""
        - {{issuer: {ISS1}, jwks: {jwks}, audiences: [foo]}}
        - {{issuer: {ISS2}, jwks: {jwks}, audiences: [bar]}}
        """,
    )
    part2 = request_authn("b-part2", f"- {{issuer: {ISS2}, jwks: {jwks}}}")
    cases = [
        Case(
            "invalid-aud",
            403,
            "/valid-aud",
            bearer(tokens["TokenIssuer1"]),
            body="Audiences in Jwt are not allowed",
        ),
        Case("valid-aud", 200, "/valid-aud", bearer(tokens["TokenIssuer1WithAud"])),
        Case(
            "verify-policies-are-combined",
            200,
            "/verify-policies-are-combined",
            bearer(tokens["TokenIssuer2"]),
        ),
    ]
    with applied(mesh, part1, part2):
        check(mesh, cases)


def test_invalid_jwks(mesh: MeshProcess, tokens: dict[str, str], tmp_path: Path) -> None:
    """invalid-jwks: keys that cannot be had (Istio: a jwksUri that does not exist; here a `file://` one
    to a missing file). istiod inlines its fake key set: every token is 401, no token passes. Issuer 2's
    rule names no keys at all (policy_applier_test's "Empty Jwks URI"): the control plane tries the
    issuer's OpenID discovery, as istiod does, which fails at once (the issuer is no URL), so it gets that
    key set too."""
    missing = f"file://{tmp_path}/jwks-not-exist.json"
    docs = request_authn("b", f"- {{issuer: {ISS1}, jwksUri: '{missing}'}}\n- {{issuer: {ISS2}}}")
    cases = [
        Case("invalid-jwks-valid-token-noauthz", 401, "/", bearer(tokens["TokenIssuer1"])),
        Case(
            "invalid-jwks-expired-token-noauthz",
            401,
            "/invalid-jwks-valid-token-noauthz",
            bearer(tokens["TokenExpired"]),
        ),
        Case("invalid-jwks-no-token-noauthz", 200, "/invalid-jwks-no-token-noauthz"),
        # The fake key set has no kid: Envoy tries its key and the signature fails.
        Case("no-jwks-valid-token", 401, "/", bearer(tokens["TokenIssuer2"]), body=BAD_SIGNATURE),
    ]
    with applied(mesh, docs):
        check(mesh, cases)
        # The control plane's JWKS resolver read the file (the generators read none) and says why not
        # (once the snapshot's jwt_authn config is generated: the push may still be on its way).
        what = f"RequestAuthentication {NS}/b jwksUri {missing}"
        errors = wait_for("the read error in status", lambda: mesh.status()["generationErrors"].get(what))
        assert "fetching its keys failed: open " in errors and "No such file or directory" in errors, errors


def test_headers_params_and_cookies(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """headers-params: tokens only from x-jwt-token ("Value " prefix), auth-token ("Token " prefix) and
    the token / secondary_token query parameters, and the sub-1 ALLOW policy. A token elsewhere (another
    parameter or header, or Authorization) is not looked at: no principal, 403. Two tokens both valid
    pass, one of them expired is 401. Then fromCookies (no Istio integration case): the same with a
    cookie."""
    t1, expired = tokens["TokenIssuer1"], tokens["TokenExpired"]
    jwks = json.dumps(tokens["jwks"])
    docs = request_authn(
        "b",
        f"""
        - issuer: {ISS1}
          jwks: {jwks}
          fromHeaders:
          - {{name: x-jwt-token, prefix: "Value "}}
          - {{name: auth-token, prefix: "Token "}}
          fromParams: [token, secondary_token]
        """,
    )
    cases = [
        Case("valid-params", 200, f"/valid-token?token={t1}"),
        Case("valid-params-secondary", 200, f"/valid-token?secondary_token={t1}"),
        Case("invalid-params", 403, f"/valid-token?token_value={t1}"),
        Case("valid-token-set", 200, f"/valid-token?token={t1}&secondary_token={t1}"),
        Case("invalid-token-set", 401, f"/valid-token?token={t1}&secondary_token={expired}"),
        Case("valid-header", 200, headers=(("x-jwt-token", f"Value {t1}"),)),
        Case("valid-header-secondary", 200, headers=(("auth-token", f"Token {t1}"),)),
        Case("invalid-header", 403, headers=(("auth-header-param", f"Bearer {t1}"),)),
        # Not in Istio's table: the default location is replaced by the configured ones.
        Case("authorization-not-read", 403, headers=bearer(t1)),
    ]
    with applied(mesh, docs + "---" + AUTHZ_SUB1):
        check(mesh, cases)
    cookies = request_authn("b", f"- {{issuer: {ISS1}, jwks: {jwks}, fromCookies: [session, token]}}")
    cases = [
        Case("valid-cookie", 200, headers=(("cookie", f"other=1; session={t1}"),)),
        Case("valid-cookie-secondary", 200, headers=(("cookie", f"token={t1}"),)),
        Case("expired-cookie", 401, headers=(("cookie", f"session={expired}"),)),
        Case("invalid-cookie", 403, headers=(("cookie", f"jwt={t1}"),)),
    ]
    with applied(mesh, cookies + "---" + AUTHZ_SUB1):
        check(mesh, cases)


# --- TestIngressRequestAuthentication ---------------------------------------------------------------------


def test_ingress_request_authentication(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """global-jwt: both issuers mesh-wide from the root namespace, and on the ingress gateway an ALLOW
    policy: example.b.com needs issuer 1's sub-1, any-request-principal-ok.b.com any valid token,
    /healthz nothing. in-mesh-authn: a -> b needs no token, but an expired one is 401 (the root
    policy reaches every sidecar). ingress-authn: Istio's table through the gateway."""
    jwks = json.dumps(tokens["jwks"])
    global_jwt = request_authn(
        "default",
        f"- {{issuer: {ISS1}, jwks: {jwks}}}\n- {{issuer: {ISS2}, jwks: {jwks}}}",
        ns=ROOT,
        selector=None,
    )
    authz_ingress = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: authz-ingress, namespace: {ROOT}}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  rules:
  - to: [{{operation: {{hosts: [example.b.com]}}}}]
    from: [{{source: {{requestPrincipals: ["{ISS1}/sub-1"]}}}}]
  - to: [{{operation: {{hosts: [any-request-principal-ok.b.com]}}}}]
    from: [{{source: {{requestPrincipals: ["*"]}}}}]
  - to: [{{operation: {{paths: [/healthz]}}}}]
"""
    t1, t2, expired = tokens["TokenIssuer1"], tokens["TokenIssuer2"], tokens["TokenExpired"]
    any_ok = "any-request-principal-ok.b.com"
    cases = [
        Case("in-mesh-with-expired-token", 401, headers=bearer(expired), body=EXPIRED),
        Case("in-mesh-without-token", 200),
        Case("allow healthz", 200, "/healthz", host="example.b.com"),
        Case("deny without token", 403, host="example.b.com", body=DENIED),
        Case("allow with sub-1 token", 200, headers=bearer(t1), host="example.b.com"),
        Case("deny with sub-2 token", 403, headers=bearer(t2), host="example.b.com"),
        Case("deny with expired token", 401, headers=bearer(expired), host="example.b.com", body=EXPIRED),
        Case("allow with sub-1 token on any.com", 200, headers=bearer(t1), host=any_ok),
        Case("allow with sub-2 token on any.com", 200, headers=bearer(t2), host=any_ok),
        Case("deny without token on any.com", 403, host=any_ok),
        Case("deny with token on other host", 403, headers=bearer(t1), host="other-host.b.com"),
    ]
    with applied(mesh, global_jwt, authz_ingress):
        check(mesh, cases)


# --- routing.go jwtClaimRoute --------------------------------------------------------------------------


def _claim_route(host: str, headers: dict[str, tuple[str, str]], without: dict[str, tuple[str, str]]) -> str:
    def block(key: str, matches: dict[str, tuple[str, str]]) -> str:
        if not matches:
            return ""
        inner = ", ".join(f'"{name}": {{{kind}: {value}}}' for name, (kind, value) in matches.items())
        return f", {key}: {{{inner}}}"

    match = "{uri: {prefix: /}" + block("headers", headers) + block("withoutHeaders", without) + "}"
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host.split(".")[0]}, namespace: {NS}}}
spec:
  hosts: [{host}]
  gateways: [claims-gateway]
  http:
  - match: [{match}]
    route: [{{destination: {{host: b.{NS}.svc.cluster.local}}}}]
"""


def test_gateway_routes_on_claims(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """jwtClaimRoute: a gateway for every host, and a root-namespace RequestAuthentication for issuer 1.
    Each of Istio's cases templates its own VirtualService for foo.bar; here each gets its own host on
    the one gateway, so all apply at once. Matching claims route (200), others find no route (404), an
    invalid token is 401, a header spelled like the claim carries no claim, and without the
    RequestAuthentication no claim exists."""
    nested1 = ("@request.auth.claims.nested.key1", ("exact", "valueA"))
    sub = ("@request.auth.claims.sub", ("prefix", "sub"))
    routes = {
        "nested": ({nested1[0]: nested1[1]}, {}),
        "single": ({sub[0]: sub[1]}, {}),
        "multiple": ({nested1[0]: nested1[1], sub[0]: sub[1]}, {}),
        "without": ({}, {nested1[0]: ("exact", "value-not-matched")}),
        "unmatched-without": ({}, {nested1[0]: nested1[1]}),
        "both": ({sub[0]: sub[1]}, {nested1[0]: ("exact", "value-not-matched")}),
        "unmatched-multiple": ({nested1[0]: nested1[1], sub[0]: ("prefix", "value-not-matched")}, {}),
        "unmatched-token": ({sub[0]: ("exact", "value-not-matched")}, {}),
    }
    gateway = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: claims-gateway, namespace: {NS}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
"""
    docs = [gateway] + [_claim_route(f"{name}.foo.bar", h, w) for name, (h, w) in routes.items()]
    authn = request_authn(
        "default", f"- {{issuer: {ISS1}, jwks: {json.dumps(tokens['jwks'])}}}", ns=ROOT, selector=None
    )
    token = bearer(tokens["TokenIssuer1WithNestedClaims1"])
    cases = [
        Case("matched with nested claims:200", 200, headers=token, host="nested.foo.bar"),
        Case("matched with single claim:200", 200, headers=token, host="single.foo.bar"),
        Case("matched multiple claims:200", 200, headers=token, host="multiple.foo.bar"),
        Case("matched without claim:200", 200, headers=token, host="without.foo.bar"),
        Case("unmatched without claim:404", 404, headers=token, host="unmatched-without.foo.bar"),
        Case("matched both with and without claims:200", 200, headers=token, host="both.foo.bar"),
        Case("unmatched multiple claims:404", 404, headers=token, host="unmatched-multiple.foo.bar"),
        Case("unmatched token:404", 404, headers=token, host="unmatched-token.foo.bar"),
        Case(
            "unmatched with invalid token:401",
            401,
            headers=bearer(tokens["TokenExpired"]),
            host="nested.foo.bar",
        ),
        Case("unmatched with no token:404", 404, host="nested.foo.bar"),
        Case(
            "unmatched with no token but same header:404",
            404,
            headers=(("request.auth.claims.nested.key1", "valueA"),),
            host="nested.foo.bar",
        ),
    ]
    with applied(mesh, *docs):
        with applied(mesh, authn):
            check(mesh, cases)
        check(
            mesh,
            [Case("unmatched with no request authentication:404", 404, headers=token, host="nested.foo.bar")],
        )


# --- policy_applier_test.go: the jwt_authn config Envoy holds ----------------------------------------------


def _jwt_authn(mesh: MeshProcess, workload: str, namespace: str) -> dict[str, Any]:
    """The jwt_authn config (ECDS) a proxy holds, from its admin config dump."""
    p = mesh.proxy(workload, namespace=namespace)
    url = f"http://{p['ip']}:{p['adminPort']}/config_dump?resource=ecds_filters"
    for entry in json.loads(sync.request(url, timeout=5).body)["configs"]:
        config = entry["ecds_filter"]
        if config["name"] == "envoy.filters.http.jwt_authn":
            return config["typed_config"]
    raise AssertionError(f"{workload} holds no jwt_authn config")


def test_generated_jwt_authn_config(mesh: MeshProcess, tokens: dict[str, str]) -> None:
    """TestJwtFilter / TestConvertToEnvoyJwtConfig: providers `origins-<i>` in issuer order, the rule's
    fields copied, the payload in metadata `payload` with `permission` and `scope` space-delimited, the
    requirement `any{P0, P1, all{any{P0, allow_missing}, any{P1, allow_missing}}}` on prefix `/`, CORS
    preflights bypassed; clear_route_cache on gateways only (istiod's JwtFilter(proxy != sidecar))."""
    jwks = tokens["jwks"]
    docs = request_authn(
        "default",
        f"""
        - issuer: {ISS2}
          jwks: {json.dumps(jwks)}
          audiences: [bar]
          forwardOriginalToken: true
          outputPayloadToHeader: x-test-payload
          outputClaimToHeaders: [{{header: x-jwt-iss, claim: iss}}]
          fromHeaders: [{{name: x-jwt-token, prefix: "Value "}}]
          fromParams: [token]
          fromCookies: [session]
          spaceDelimitedClaims: [roles]
        - {{issuer: {ISS1}, jwks: {json.dumps(jwks)}}}
        """,
        ns=ROOT,
        selector=None,
    )
    with applied(mesh, docs):
        sidecar = _jwt_authn(mesh, "b", NS)
        gateway = _jwt_authn(mesh, "istio-ingressgateway", ROOT)
    assert sidecar["bypass_cors_preflight"] is True
    assert sidecar["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {
                "requires_any": {
                    "requirements": [
                        {"provider_name": "origins-0"},
                        {"provider_name": "origins-1"},
                        {
                            "requires_all": {
                                "requirements": [
                                    {
                                        "requires_any": {
                                            "requirements": [{"provider_name": name}, {"allow_missing": {}}]
                                        }
                                    }
                                    for name in ("origins-0", "origins-1")
                                ]
                            }
                        },
                    ]
                }
            },
        }
    ]
    first, second = sidecar["providers"]["origins-0"], sidecar["providers"]["origins-1"]
    assert first == {
        "issuer": ISS1,
        "local_jwks": {"inline_string": jwks},
        "payload_in_metadata": "payload",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "scope"]},
    }
    assert second == {
        "issuer": ISS2,
        "audiences": ["bar"],
        "local_jwks": {"inline_string": jwks},
        "forward": True,
        "from_headers": [{"name": "x-jwt-token", "value_prefix": "Value "}],
        "from_params": ["token"],
        "from_cookies": ["session"],
        "forward_payload_header": "x-test-payload",
        "claim_to_headers": [{"header_name": "x-jwt-iss", "claim_name": "iss"}],
        "payload_in_metadata": "payload",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "roles", "scope"]},
    }
    assert all(p.get("clear_route_cache") is True for p in gateway["providers"].values()), gateway
