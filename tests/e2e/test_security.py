"""Security end to end: automatic mTLS with SPIFFE identities, PeerAuthentication, AuthorizationPolicy,
RequestAuthentication, gateway TLS and client IPs, with real Envoy and the echo app."""

from __future__ import annotations

import json
import textwrap

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied, echo_body

pytestmark = pytest.mark.e2e

TD = "spiffe://cluster.local"


def peer_of(body: dict) -> str:
    """The client identity the server sidecar saw, from the XFCC header it set."""
    xfcc = body["headers"].get("x-forwarded-client-cert", "")
    for part in xfcc.split(";"):
        if part.startswith("URI="):
            return part[4:]
    return ""


def test_sidecars_talk_mtls_with_spiffe_identities(security_mesh: MeshProcess) -> None:
    body = echo_body(security_mesh.curl("sleep", "http://server/"))
    assert peer_of(body) == f"{TD}/ns/default/sa/sleep"
    assert f"By={TD}/ns/default/sa/server" in body["headers"]["x-forwarded-client-cert"]
    body = echo_body(security_mesh.curl("sleep", "http://server.default/", namespace="other"))
    assert peer_of(body) == f"{TD}/ns/other/sa/other-sleep"
    # A client without a sidecar speaks plaintext: PERMISSIVE (the default) serves it, without identity.
    body = echo_body(security_mesh.curl_direct("legacy", "http://server/"))
    assert "x-forwarded-client-cert" not in body["headers"]


def test_strict_refuses_plaintext_and_port_level_disable(security_mesh: MeshProcess) -> None:
    strict_ns = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default}
    spec:
      mtls: {mode: STRICT}
    """
    with applied(security_mesh, strict_ns):
        resp = security_mesh.curl_direct("legacy", "http://server/")
        assert resp.status == 0, resp  # the connection is closed: no plaintext chain
        assert echo_body(security_mesh.curl("sleep", "http://server/"))["version"] == "v1"
    port_disable = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: server}
    spec:
      selector: {matchLabels: {app: server}}
      mtls: {mode: STRICT}
      portLevelMtls:
        8081: {mode: DISABLE}
    """
    with applied(security_mesh, port_disable):
        assert security_mesh.curl_direct("legacy", "http://server/").status == 0
        body = echo_body(security_mesh.curl_direct("legacy", "http://server:81/"))
        assert body["port"] == 8081
        # Meshed clients follow: plaintext to the DISABLE port (endpoint tlsMode dropped), mTLS elsewhere.
        assert (
            peer_of(echo_body(security_mesh.curl("sleep", "http://server/"))) == f"{TD}/ns/default/sa/sleep"
        )
        assert peer_of(echo_body(security_mesh.curl("sleep", "http://server:81/"))) == ""


def test_permissive_to_strict_migration_loses_no_meshed_request(security_mesh: MeshProcess) -> None:
    strict = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default}
    spec:
      mtls: {mode: STRICT}
    """
    proxy = security_mesh.proxy_url("sleep")
    with sync.LoadGenerator("http://server/", proxy=proxy, concurrency=4, qps=200) as gen:
        gen.wait_for(50)
        security_mesh.apply(textwrap.dedent(strict))
        gen.wait_for(gen.completed + 200)
        security_mesh.delete(textwrap.dedent(strict))
        gen.wait_for(gen.completed + 100)
    result = gen.result
    assert result is not None and result.all_ok, result.to_dict()


def test_namespace_disable_turns_client_mtls_off(security_mesh: MeshProcess) -> None:
    disable = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: default}
    spec:
      mtls: {mode: DISABLE}
    """
    with applied(security_mesh, disable):
        body = echo_body(security_mesh.curl("sleep", "http://server/"))
        assert peer_of(body) == ""
    assert peer_of(echo_body(security_mesh.curl("sleep", "http://server/"))) == f"{TD}/ns/default/sa/sleep"


def _status(resp) -> int:
    return resp.status


def test_authorization_by_principal_and_namespace(security_mesh: MeshProcess) -> None:
    by_principal = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: server}
    spec:
      selector: {matchLabels: {app: server}}
      action: ALLOW
      rules:
      - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
    """
    with applied(security_mesh, by_principal):
        assert security_mesh.curl("sleep", "http://server/").status == 200
        denied = security_mesh.curl("sleep", "http://server.default/", namespace="other")
        assert denied.status == 403 and b"RBAC" in denied.body
        assert security_mesh.curl_direct("legacy", "http://server/").status == 403  # plaintext: no principal
    by_namespace = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: server}
    spec:
      selector: {matchLabels: {app: server}}
      rules:
      - from: [{source: {namespaces: [other]}}]
    """
    with applied(security_mesh, by_namespace):
        assert security_mesh.curl("sleep", "http://server.default/", namespace="other").status == 200
        assert security_mesh.curl("sleep", "http://server/").status == 403


def test_authorization_by_method_path_header_and_source_ip(security_mesh: MeshProcess) -> None:
    legacy_ip = security_mesh.instance("legacy")["ip"]
    policies = f"""
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: allow-public}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      rules:
      - to: [{{operation: {{methods: [GET], paths: ["/public*", "/items/{{*}}"]}}}}]
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: deny-some}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      action: DENY
      rules:
      - when: [{{key: "request.headers[x-block]", values: ["true"]}}]
      - from: [{{source: {{ipBlocks: ["{legacy_ip}"]}}}}]
    """
    with applied(security_mesh, policies):
        get = lambda path, **kw: security_mesh.curl("sleep", "http://server" + path, **kw).status  # noqa: E731
        assert get("/public/x") == 200
        assert get("/items/42") == 200
        assert get("/items/42/more") == 403  # {*} is one segment
        assert get("/private") == 403
        assert get("/public", method="POST", body=b"x") == 403
        assert get("/public/x", headers=[("x-block", "true")]) == 403  # DENY beats ALLOW
        assert get("/public/x", headers=[("x-block", "false")]) == 200
        assert security_mesh.curl_direct("legacy", "http://server/public/x").status == 403


def test_allow_nothing_and_deny_all_idioms(security_mesh: MeshProcess) -> None:
    allow_nothing = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: allow-nothing}
    spec: {}
    """
    with applied(security_mesh, allow_nothing):
        assert security_mesh.curl("sleep", "http://server/").status == 403
    allow_all = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: allow-all}
    spec:
      rules: [{}]
    """
    with applied(security_mesh, allow_nothing, allow_all):
        assert security_mesh.curl("sleep", "http://server/").status == 200
    deny_all = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: deny-all}
    spec:
      action: DENY
      rules: [{}]
    """
    with applied(security_mesh, allow_all, deny_all):
        assert security_mesh.curl("sleep", "http://server/").status == 403


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_keys() -> tuple[object, str]:
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": "test",
        "alg": "RS256",
        "use": "sig",
        "n": _b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
        "e": _b64(nums.e.to_bytes(3, "big")),
    }
    return key, json.dumps({"keys": [jwk]})


def _sign(key: object, claims: dict) -> str:
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[attr-defined]
    return f"{header}.{payload}.{_b64(signature)}"


def test_jwt_protected_path(security_mesh: MeshProcess, tmp_path) -> None:
    import time

    key, jwks = _jwt_keys()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks)
    policies = f"""
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {{name: jwt}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      jwtRules:
      - issuer: testing@secure.istio.io
        jwksUri: file://{jwks_file}
    ---
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: require-jwt}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      rules:
      - to: [{{operation: {{paths: ["/secure*"]}}}}]
        from: [{{source: {{requestPrincipals: ["testing@secure.istio.io/alice"]}}}}]
      - to: [{{operation: {{notPaths: ["/secure*"]}}}}]
    """
    now = int(time.time())
    good = _sign(key, {"iss": "testing@secure.istio.io", "sub": "alice", "exp": now + 600})
    other_sub = _sign(key, {"iss": "testing@secure.istio.io", "sub": "bob", "exp": now + 600})
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with applied(security_mesh, policies):

        def get(token: str | None = None) -> int:
            headers = [("authorization", f"Bearer {token}")] if token else []
            return security_mesh.curl("sleep", "http://server/secure", headers=headers).status

        assert get(good) == 200
        assert get() == 403  # a missing token passes authentication, then fails authorization
        assert get(forged) == 401
        assert get(other_sub) == 403
        assert security_mesh.curl("sleep", "http://server/open").status == 200
        assert (
            security_mesh.curl("sleep", "http://server/open", headers=[("authorization", "Bearer x")]).status
            == 401
        )


def test_gateway_routes_on_jwt_claims(security_mesh: MeshProcess, tmp_path) -> None:
    """istio.io/latest/docs/tasks/security/authentication/jwt-route: the ingress gateway verifies the
    token (RequestAuthentication), then routes on its claims (`@request.auth.claims.*` matches)."""
    import time

    from tests.e2e.test_route_test import header_args, route_test

    key, jwks = _jwt_keys()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks)
    docs = f"""
    apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {{name: gw-jwt, namespace: istio-system}}
    spec:
      selector: {{matchLabels: {{istio: ingressgateway}}}}
      jwtRules:
      - issuer: testing@secure.istio.io
        jwksUri: file://{jwks_file}
    ---
    apiVersion: v1
    kind: Service
    metadata: {{name: claims-fallback}}
    spec:
      selector: {{app: sleep}}
      ports: [{{name: http, port: 80, targetPort: 8080}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: claims}}
    spec:
      hosts: [claims.example.com]
      gateways: [gw]
      http:
      - match:
        - headers: {{'@request.auth.claims.group': {{exact: dev}}}}
          withoutHeaders: {{'@request.auth.claims[account][state]': {{exact: suspended}}}}
        route: [{{destination: {{host: server, port: {{number: 80}}}}}}]
      - route: [{{destination: {{host: claims-fallback}}}}]
    """
    now = int(time.time())

    def token(**claims: object) -> str:
        return _sign(key, {"iss": "testing@secure.istio.io", "sub": "alice", "exp": now + 600, **claims})

    dev = token(group="dev")
    with applied(security_mesh, docs):
        address = security_mesh.gateway_address(80)

        def served_by(tok: str | None) -> int | str:
            headers = [("Host", "claims.example.com")]
            if tok:
                headers.append(("authorization", f"Bearer {tok}"))
            resp = sync.request(f"http://{address}/", headers=headers)
            return echo_body(resp)["workload"] if resp.status == 200 else resp.status

        assert served_by(dev) == "server"
        assert served_by(token(group=["qa", "dev"])) == "server"  # a list claim: one element matches
        assert served_by(token(group="dev", account={"state": "active"})) == "server"
        assert served_by(token(group="dev", account={"state": "suspended"})) == "sleep"  # withoutHeaders
        assert served_by(token(group="qa")) == "sleep"
        assert served_by(None) == "sleep"  # no token: no claims, not a rejection
        assert served_by(dev[:-4] + ("AAAA" if not dev.endswith("AAAA") else "BBBB")) == 401
        # `route test` reads the claims from the bearer token and agrees with the gateway.
        for tok, service in ((dev, "server"), (token(group="qa"), "claims-fallback")):
            pred = route_test(
                security_mesh,
                "http://claims.example.com/",
                *header_args([("authorization", f"Bearer {tok}")]),
                frm="istio-ingressgateway",
                ns="istio-system",
            )
            assert [d["name"] for d in pred["destinations"]] == [
                f"outbound|80||{service}.default.svc.cluster.local"
            ]


# --- gateways: TLS and client IPs -------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tests.e2e import tlstools as t

    ca = t.make_ca()
    work = tmp_path_factory.mktemp("pki")
    (work / "ca.pem").write_bytes(ca.cert)
    client = t.issue(ca, ["client.example.com"], client=True)
    (work / "client.crt").write_bytes(client.cert)
    (work / "client.key").write_bytes(client.key)
    return {
        "ca": ca,
        "dir": work,
        "gateway": t.issue(ca, ["secure.example.com", "mtls.example.com"]),
        "backend": t.issue(ca, ["tls-backend.example.com"]),
        "client": client,
    }


def test_gateway_https_simple_mutual_and_https_redirect(
    security_mesh: MeshProcess, pki: dict, tmp_path
) -> None:
    import ssl

    from tests.e2e import tlstools as t

    docs = [
        t.tls_secret("gw-cert", pki["gateway"], ca=pki["ca"]),
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: https-gw}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 443, name: https, protocol: HTTPS}
            hosts: [secure.example.com]
            tls: {mode: SIMPLE, credentialName: gw-cert, minProtocolVersion: TLSV1_2}
          - port: {number: 9443, name: https-mtls, protocol: HTTPS}
            hosts: [mtls.example.com]
            tls: {mode: MUTUAL, credentialName: gw-cert}
          - port: {number: 9080, name: http-redirect, protocol: HTTP}
            hosts: [secure.example.com]
            tls: {httpsRedirect: true}
        """,
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: secure}
        spec:
          hosts: [secure.example.com, mtls.example.com]
          gateways: [https-gw]
          http:
          - route: [{destination: {host: server, port: {number: 80}}}]
        """,
    ]
    with applied(security_mesh, *docs):
        https = security_mesh.gateway_address(443)
        assert https.endswith(":8443")  # the gateway Service maps 443 to 8443
        # No polling: apply --wait returns once the new TLS listeners are warm (their certificates come
        # over SDS after the ACK), not just ACKed.
        status, _, body = t.https_get(https, "secure.example.com", "/hello", pki["ca"])
        assert status == 200 and b'"workload": "server"' in body
        mtls = security_mesh.gateway_address(9443)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            status, _, _ = t.https_get(mtls, "mtls.example.com", "/", pki["ca"])
            assert status != 200  # reached only if the server did not close at once
        status, _, _ = t.https_get(
            mtls, "mtls.example.com", "/", pki["ca"], client=pki["client"], tmp=tmp_path
        )
        assert status == 200
        redirect = security_mesh.gateway_address(9080)
        resp = sync.request(f"http://{redirect}/x", headers=[("Host", "secure.example.com")])
        assert resp.status == 301 and resp.header("location") == "https://secure.example.com/x"


def test_gateway_terminates_tls_for_tcp_routes(security_mesh: MeshProcess, pki: dict) -> None:
    """protocol TLS + mode SIMPLE: the gateway decrypts and `tcp` routes carry the bytes on (here an
    HTTP request, which the server's sidecar serves as such); a name outside the server's hosts fails."""
    import ssl

    from tests.e2e import tlstools as t

    docs = [
        t.tls_secret("tcp-cert", pki["gateway"], ca=pki["ca"]),
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: tls-tcp-gw}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 9444, name: tls-tcp, protocol: TLS}
            hosts: [secure.example.com]
            tls: {mode: SIMPLE, credentialName: tcp-cert}
        """,
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: tls-tcp}
        spec:
          hosts: [secure.example.com]
          gateways: [tls-tcp-gw]
          tcp:
          - match: [{port: 9444}]
            route: [{destination: {host: server, port: {number: 80}}}]
        """,
    ]
    with applied(security_mesh, *docs):
        address = security_mesh.gateway_address(9444)
        # No polling: apply --wait returns once the listener is warm, not just ACKed.
        status, _, body = t.https_get(address, "secure.example.com", "/over-tls", pki["ca"])
        assert status == 200, body
        seen = json.loads(body)
        assert seen["workload"] == "server" and seen["path"] == "/over-tls"
        # The decrypted bytes went to the server over the mesh's mTLS, as TCP: no gateway HTTP headers.
        assert "x-envoy-external-address" not in seen["headers"]
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            status, _, _ = t.https_get(address, "other.example.com", "/", pki["ca"])
            assert status != 200


def test_gateway_sni_passthrough_and_tls_origination(security_mesh: MeshProcess, pki: dict) -> None:
    from tests.e2e import tlstools as t

    with t.TlsBackend(pki["backend"], pki["dir"], client_ca=pki["ca"]) as backend:
        docs = [
            f"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {{name: tls-backend}}
            spec:
              hosts: [tls-backend.example.com]
              location: MESH_EXTERNAL
              resolution: STATIC
              ports:
              - {{number: 443, name: tls, protocol: TLS}}
              - {{number: 80, name: http, protocol: HTTP, targetPort: {backend.port}}}
              endpoints: [{{address: 127.0.0.1, ports: {{tls: {backend.port}}}}}]
            """,
            """
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: passthrough-gw}
            spec:
              selector: {istio: ingressgateway}
              servers:
              - port: {number: 9444, name: tls-passthrough, protocol: TLS}
                hosts: [tls-backend.example.com]
                tls: {mode: PASSTHROUGH}
            """,
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: tls-backend}
            spec:
              hosts: [tls-backend.example.com]
              gateways: [passthrough-gw]
              tls:
              - match: [{port: 9444, sniHosts: [tls-backend.example.com]}]
                route: [{destination: {host: tls-backend.example.com, port: {number: 443}}}]
            """,
            f"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {{name: tls-backend}}
            spec:
              host: tls-backend.example.com
              trafficPolicy:
                portLevelSettings:
                - port: {{number: 80}}
                  tls:
                    mode: MUTUAL
                    sni: tls-backend.example.com
                    caCertificates: {pki["dir"] / "ca.pem"}
                    clientCertificate: {pki["dir"] / "client.crt"}
                    privateKey: {pki["dir"] / "client.key"}
            """,
        ]
        with applied(security_mesh, *docs):
            address = security_mesh.gateway_address(9444)
            status, _, body = t.https_get(address, "tls-backend.example.com", "/", pki["ca"])
            assert status == 200
            assert b'"sni": "tls-backend.example.com"' in body and b'"clientCert": false' in body
            # The sidecar originates mutual TLS for plain HTTP to port 80 (DestinationRule tls MUTUAL).
            resp = security_mesh.curl("sleep", "http://tls-backend.example.com/")
            assert resp.status == 200, resp
            assert resp.json() == {"backend": "tls", "sni": "tls-backend.example.com", "clientCert": True}


def test_proxy_protocol_client_ip_and_remote_ip_blocks(security_mesh: MeshProcess) -> None:
    from tests.e2e import tlstools as t

    address = security_mesh.gateway_address(80)
    status, _, body = t.http_get_with_proxy_protocol(address, "server.example.com", "/", "203.0.113.7")
    assert status == 200
    seen = json.loads(body)["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.7"
    deny = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: deny-lb-client, namespace: istio-system}
    spec:
      selector: {matchLabels: {istio: ingressgateway}}
      action: DENY
      rules:
      - from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]
    """
    with applied(security_mesh, deny):
        status, _, body = t.http_get_with_proxy_protocol(address, "server.example.com", "/", "203.0.113.7")
        assert status == 403
        status, _, _ = t.http_get_with_proxy_protocol(address, "server.example.com", "/", "198.51.100.9")
        assert status == 200
        status, _, _ = t.http_get_with_proxy_protocol(address, "server.example.com", "/", None)
        assert status == 200  # a direct client, no PROXY header


def test_certificates_rotate_while_connections_stay_open(security_mesh: MeshProcess) -> None:
    import time
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    server = security_mesh.proxy("server")

    def serial() -> str:
        with opener.open(f"http://{server['ip']}:{server['adminPort']}/certs", timeout=5) as resp:
            certs = json.loads(resp.read())["certificates"]
        return certs[0]["cert_chain"][0]["serial_number"]

    first = serial()
    proxy = security_mesh.proxy_url("sleep")
    stream_url = "http://server/stream?interval=200ms&count=50"
    with sync.LoadGenerator("http://server/", proxy=proxy, concurrency=1, qps=20) as gen:
        stream = sync.request(stream_url, proxy=proxy, timeout=30)
        second = serial()
    result = gen.result
    assert result is not None and result.all_ok, result.to_dict()
    assert stream.status == 200 and len(stream.body.splitlines()) == 50, stream
    assert second != first, "the workload certificate did not rotate during 10 s (TTL 8 s)"
    del time


def test_custom_policy_asks_the_ext_authz_provider(security_mesh: MeshProcess) -> None:
    """CUSTOM: only requests the rules match go to the provider (the echo app at /check/...), which
    decides; its headers reach the upstream on allow and the client on deny."""
    custom = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: ext-authz-admin}
    spec:
      selector: {matchLabels: {app: server}}
      action: CUSTOM
      provider: {name: echo-authz}
      rules:
      - to: [{operation: {paths: ["/admin/*"]}}]
    """
    with applied(security_mesh, custom):
        # Not matched by the rules: the provider is not asked, so its header never appears.
        body = echo_body(security_mesh.curl("sleep", "http://server/public?header=x-authz-user:alice"))
        assert "x-authz-user" not in body["headers"]
        # Matched: the provider says 200 and adds x-authz-user, which headersToUpstreamOnAllow lets through.
        body = echo_body(security_mesh.curl("sleep", "http://server/admin/a?header=x-authz-user:alice"))
        assert body["headers"]["x-authz-user"] == "alice"
        assert body["path"].startswith("/admin/a")
        # The provider says 403: the client gets its status and the header headersToDownstreamOnDeny allows.
        resp = security_mesh.curl("sleep", "http://server/admin/a?status=403&header=x-authz-reason:no")
        assert resp.status == 403, resp
        assert resp.header("x-authz-reason") == "no"
        # The same rules apply to clients without a sidecar.
        assert security_mesh.curl_direct("legacy", "http://server/admin/b?status=401").status == 401
        assert echo_body(security_mesh.curl_direct("legacy", "http://server/b?status=200"))["port"] == 8080

    broken = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: ext-authz-broken}
    spec:
      selector: {matchLabels: {app: server}}
      action: CUSTOM
      provider: {name: nowhere}
      rules: [{}]
    """
    # A provider that cannot be used fails closed, as in Istio, and status says why.
    with applied(security_mesh, broken):
        resp = security_mesh.curl("sleep", "http://server/")
        assert resp.status == 403 and "RBAC" in resp.text, resp
        errors = security_mesh.status()["generationErrors"]
        assert any("could not find service" in e for e in errors.values()), errors
    assert echo_body(security_mesh.curl("sleep", "http://server/"))["port"] == 8080


def test_apply_wait_names_the_proxy_whose_listener_waits_for_a_missing_certificate(
    security_mesh: MeshProcess,
) -> None:
    """Envoy ACKs the listener but keeps it warming until its certificate comes over SDS; with no such
    Secret that lasts Envoy's initial fetch timeout (15 s, which istiod leaves for credentials), after
    which only that host fails its handshakes: `--wait` returns once ACKed (its contract) and names the
    warming proxy."""
    text = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: no-cert-gw}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 7443, name: https-nocert, protocol: HTTPS}
            hosts: [nocert.example.com]
            tls: {mode: SIMPLE, credentialName: no-such-secret}
        """
    )
    try:
        out = security_mesh.apply(text, wait=10, expect_ok=False)
        assert out["code"] == 200 and out["synced"] is True, out
        assert len(out["warming"]) == 1, out  # the ingress gateway
    finally:
        security_mesh.delete(text)
