"""The control plane's JWKS resolver, against istiod's `pilot/pkg/model/jwks_resolver_test.go`.

Each test names the istiod test it ports. istiod's mock server (`pilot/pkg/model/test/mockopenidserver.go`:
`/.well-known/openid-configuration` naming `/oauth2/v3/certs`, which serves JwtPubKey1, then JwtPubKey2
or errors after some hits, optionally late) is a small threaded HTTP(S) server on 127.0.0.1 here.
The generator side (pending / failed / fetched keys in the snapshot) is at the end.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from isthmus.config import jwks_resolver as jr
from isthmus.config.jwks_resolver import JwksResolver
from isthmus.model.jwks import PENDING, JwksEntry

KEY_1 = json.dumps({"keys": [{"kty": "RSA", "kid": "a", "e": "AQAB", "n": "one"}]})
KEY_1_REORDERED = json.dumps(
    {"keys": [{"n": "one", "e": "AQAB", "kid": "a", "kty": "RSA"}]}
)  # same key, members in another order
KEY_2 = json.dumps(
    {
        "keys": [
            {"kty": "RSA", "kid": "b", "e": "AQAB", "n": "two"},
            {"kty": "RSA", "kid": "a", "e": "AQAB", "n": "one"},
        ]
    }
)


class MockServer:
    """istiod's mock OpenID server: hit counters, the key it serves, delay and errors after N hits."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.keys = KEY_1
        self.delay = 0.0
        self.error_after: int | None = None
        self.key_hits = self.openid_hits = 0
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/.well-known/openid-configuration"):
                    mock.openid_hits += 1
                    self._send(200, json.dumps({"jwks_uri": mock.url + "/oauth2/v3/certs"}))
                    return
                mock.key_hits += 1
                time.sleep(mock.delay)
                if mock.error_after is not None and mock.key_hits > mock.error_after:
                    self._send(500, "internal error")
                    return
                self._send(200, mock.keys)

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://localhost:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ms() -> Iterator[MockServer]:
    server = MockServer()
    yield server
    server.stop()


def no_mesh(host: str, port: int) -> list[tuple[str, int]] | None:
    return None


def resolver(**kwargs: Any) -> JwksResolver:
    kwargs.setdefault("retry_interval", 0.01)
    return JwksResolver(kwargs.pop("lookup", no_mesh), lambda: None, **kwargs)


def fetch(r: JwksResolver, issuer: str, uri: str, timeout: float = 5.0, retries: int = 0) -> JwksEntry:
    r._timeouts[(issuer, uri)] = timeout
    return asyncio.run(r.fetch((issuer, uri), retries=retries))


def test_resolve_jwks_uri_using_openid(ms: MockServer) -> None:
    """TestResolveJwksURIUsingOpenID: the issuer's discovery document names the key URI (a trailing slash
    of the issuer is dropped); an issuer that answers nothing is an error."""
    r = resolver()
    for issuer in (ms.url, ms.url, ms.url + "/"):
        entry = fetch(r, issuer, "")
        assert (entry.keys, entry.uri) == (KEY_1, ms.url + "/oauth2/v3/certs")
    assert ms.openid_hits == 3
    assert fetch(r, f"http://127.0.0.1:{_closed_port()}", "").error


def test_get_public_key_and_empty_issuer(ms: MockServer) -> None:
    """TestGetPublicKey / TestGetPublicKeyWithEmptyIssuer: the key set at the URI, whatever the issuer."""
    r = resolver()
    assert fetch(r, "testIssuer", ms.url + "/oauth2/v3/certs").keys == KEY_1
    assert fetch(r, "", ms.url + "/oauth2/v3/certs").keys == KEY_1


def test_get_public_key_with_timeout(ms: MockServer) -> None:
    """TestGetPublicKeyWithTimeout: the rule's timeout bounds the request (server 100ms late)."""
    ms.delay = 0.1
    r = resolver()
    assert fetch(r, "testIssuer", ms.url + "/oauth2/v3/certs", timeout=5).keys == KEY_1
    late = fetch(r, "testIssuer2", ms.url + "/oauth2/v3/certs", timeout=0.02)
    assert late.keys is None and "context deadline exceeded" in (late.error or ""), late


def test_unsuccessful_status_is_an_error(ms: MockServer) -> None:
    """getRemoteContentWithRetry: a non-2xx answer is "status N, message <quoted body>"."""
    ms.error_after = 0
    entry = fetch(resolver(), "i", ms.url + "/oauth2/v3/certs")
    assert entry.error == 'status 500, message "internal error"'


def test_unsupported_scheme_in_discovery() -> None:
    """An issuer that is not a URL (Istio's test issuers are e-mail like): discovery fails at once."""
    entry = fetch(resolver(), "test-issuer-2@istio.io", "")
    assert entry.error and "unsupported protocol scheme" in entry.error


def test_reordered_key_is_no_change() -> None:
    """TestGetPublicKeyReorderedKey / compareJWKSResponse: the same keys in another order (or with
    members in another order) are no change; another key set is."""
    assert not jr.jwks_changed(KEY_1, KEY_1_REORDERED)
    assert jr.jwks_changed(KEY_1, KEY_2)
    assert not jr.jwks_changed(KEY_2, json.dumps({"keys": list(reversed(json.loads(KEY_2)["keys"]))}))
    assert jr.jwks_changed(KEY_1, "not json")


def test_get_public_key_using_tls(tmp_path: Path) -> None:
    """TestGetPublicKeyUsingTLS / ...BadCert: HTTPS verified against the extra root CA bundle
    (ISTHMUS_JWKS_EXTRA_ROOT_CA; istiod's /cacerts/extra.pem); another CA fails, unless
    JWKS_RESOLVER_INSECURE_SKIP_VERIFY."""
    ca_key, ca_cert = _cert("jwks test root")
    _, other = _cert("other root")
    key, cert = _cert("localhost", issuer=(ca_key, ca_cert))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    ms = MockServer(tls=(tmp_path / "cert.pem", tmp_path / "key.pem"))
    try:
        uri = ms.url + "/oauth2/v3/certs"
        assert fetch(resolver(extra_root_ca=str(tmp_path / "ca.pem")), "", uri).keys == KEY_1
        bad = fetch(resolver(extra_root_ca=str(tmp_path / "other.pem")), "", uri)
        assert bad.keys is None and "certificate" in (bad.error or "").lower(), bad
        assert fetch(resolver(insecure_skip_verify=True), "", uri).keys == KEY_1
    finally:
        ms.stop()


def test_mesh_names_resolve_through_the_registry(ms: MockServer) -> None:
    """A mesh host name goes to the address the registry gives for the URI's port (the pod at the
    target port); the URL keeps its name. A name the registry does not know fails offline."""
    seen: list[tuple[str, int]] = []

    def lookup(host: str, port: int) -> list[tuple[str, int]] | None:
        seen.append((host, port))
        return [("127.0.0.1", ms.port)] if host == "jwks.istio-system.svc.cluster.local" else None

    r = resolver(lookup=lookup, offline=True)
    assert fetch(r, "", "http://jwks.istio-system.svc.cluster.local:8000/oauth2/v3/certs").keys == KEY_1
    assert ("jwks.istio-system.svc.cluster.local", 8000) in seen
    unknown = fetch(r, "", "http://example.com:8000/jwks")
    assert unknown.keys is None and "no such host" in (unknown.error or ""), unknown

    def no_endpoint(host: str, port: int) -> list[tuple[str, int]] | None:
        return []

    empty = fetch(resolver(lookup=no_endpoint), "", "http://jwks.default.svc.cluster.local/jwks")
    assert empty.keys is None and "no ready endpoint" in (empty.error or ""), empty


def test_search_names_follow_istiods_pod_dns() -> None:
    """istiod's pod (istio-system) resolv.conf: search path first for names with fewer than 5 dots."""
    assert jr.search_names("jwks", "cluster.local") == [
        "jwks.istio-system.svc.cluster.local",
        "jwks.svc.cluster.local",
        "jwks.cluster.local",
        "jwks",
    ]
    assert jr.search_names("jwks.foo", "cluster.local")[1] == "jwks.foo.svc.cluster.local"
    assert jr.search_names("a.b.c.d.e.f", "cluster.local") == ["a.b.c.d.e.f"]


def test_refresh_interval_backoff() -> None:
    """refreshCache: 1m after a failing refresh, doubled while failures continue (at most 60m), the
    default again after a success. PILOT_JWT_PUB_KEY_REFRESH_INTERVAL sets the default (20m)."""
    default = jr.env_settings({})["refresh_interval"]
    assert default == 20 * 60
    step = jr.next_refresh_interval
    assert step(default, default, failed=True, last_failed=False) == 60
    assert step(60, default, failed=True, last_failed=True) == 120
    assert step(40 * 60, default, failed=True, last_failed=True) == 60 * 60
    assert step(120, default, failed=False, last_failed=True) == default
    assert jr.env_settings({"PILOT_JWT_PUB_KEY_REFRESH_INTERVAL": "2s"})["refresh_interval"] == 2
    settings = jr.env_settings(
        {"JWKS_RESOLVER_INSECURE_SKIP_VERIFY": "true", "ISTHMUS_JWKS_RESOLVER_OFFLINE": "1"}
    )
    assert settings["insecure_skip_verify"] and settings["offline"]


def test_refresh_rotates_keys_and_keeps_them_on_failure(ms: MockServer) -> None:
    """TestJwtPubKeyRefresh / TestJwtPubKeyRefreshWithNetworkError: a refresh that gets another key set
    records it and reports a change (istiod's PushFunc); one that fails keeps the keys it had."""
    changes: list[int] = []
    r = JwksResolver(no_mesh, lambda: changes.append(1), retry_interval=0.01)
    key = ("", ms.url + "/oauth2/v3/certs")

    async def run() -> None:
        assert r.update({key: 5.0})[key] == PENDING
        for _ in range(200):
            if r.table[key].keys is not None:
                break
            await asyncio.sleep(0.01)
        assert r.table[key].keys == KEY_1 and changes == [1]
        ms.keys = KEY_1_REORDERED
        assert not await r.refresh() and changes == [1]  # the same keys: no push
        ms.keys = KEY_2
        assert not await r.refresh() and changes == [1, 1]
        assert r.table[key].keys == KEY_2
        ms.error_after = 0
        assert await r.refresh()  # failed (after 7 retries)
        assert r.table[key].keys == KEY_2 and r.table[key].error
        await r.close()

    asyncio.run(run())


def test_first_fetch_failure_then_background_success(ms: MockServer) -> None:
    """GetPublicKey's main flow fails (no retry) -> the failure is recorded (a change: the proxies get
    the fake key set and the error is reported); the background fetch (jwksuriChannel, 7 retries) then
    gets the keys."""
    ms.error_after = 0
    changes: list[JwksEntry] = []
    key = ("", ms.url + "/oauth2/v3/certs")
    r = JwksResolver(no_mesh, lambda: changes.append(r.table[key]), retry_interval=0.05)

    async def run() -> None:
        r.update({key: 5.0})
        for _ in range(200):
            if changes:
                break
            await asyncio.sleep(0.01)
        assert changes[0].keys is None and changes[0].error
        ms.error_after = None
        for _ in range(400):
            if r.table[key].keys is not None:
                break
            await asyncio.sleep(0.01)
        assert r.table[key].keys == KEY_1 and changes[-1].keys == KEY_1
        await r.close()

    asyncio.run(run())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cert(
    cn: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA (no issuer) or a server certificate for `cn` (DNS SAN) signed by `issuer`."""
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[1].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


# --- the control plane: keys into snapshots, a push when they change ---------------------------------

RA = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: default}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: %s
    timeout: 2s
"""


def test_control_plane_carries_fetched_keys_and_pushes_on_change(ms: MockServer) -> None:
    """A RequestAuthentication applied: the snapshot holds its key pending (the generator inlines the
    fake key set and says so); once fetched, a new snapshot holds the keys and a full push goes out
    (istiod's PushFunc). A change of keys alone rebuilds no config but the jwt_authn one (ECDS)."""
    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.mesh.control_plane import ControlPlane
    from isthmus.model import jwks as jwks_model

    uri = ms.url + "/oauth2/v3/certs"
    key = ("https://issuer.example", uri)

    async def run() -> None:
        store = Store()
        cp = ControlPlane(store)
        pushes: list[Any] = []
        cp.xds.update = lambda snapshot, request: pushes.append(request)  # type: ignore[method-assign]
        cp.rebuild()
        store.apply(loader.load_text(RA % uri, "ra.yaml"), "test")
        snap = cp.current()
        assert snap.jwks[key] == PENDING
        assert jwks_model.wanted(snap.configs) == {key: 2.0}
        for _ in range(300):
            if cp.snapshot.jwks.get(key, PENDING).keys is not None:
                break
            await asyncio.sleep(0.01)
        assert cp.snapshot.jwks[key].keys == KEY_1
        assert pushes[-1].full and pushes[-1].reason == "jwks", pushes[-1]
        ms.keys = KEY_2
        await cp.jwks.refresh()
        await asyncio.sleep(0)  # the rebuild is scheduled on the loop
        assert cp.snapshot.jwks[key].keys == KEY_2 and pushes[-1].reason == "jwks"
        # The key dropped with its RequestAuthentication.
        store.delete([("RequestAuthentication", "default", "ra")])
        assert cp.current().jwks == {}
        await cp.jwks.close()

    asyncio.run(run())


REGISTRY = """
apiVersion: v1
kind: Service
metadata: {name: jwks, namespace: istio-system}
spec:
  selector: {app: jwks}
  ports: [{name: http, port: 80, targetPort: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: idp, namespace: auth}
spec:
  selector: {app: idp}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: default}
spec:
  hosts: [example.com]
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: jwks.istio-system.svc.cluster.local, ports: {http: 80}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: google, namespace: default}
spec:
  hosts: [www.googleapis.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
"""


def test_registry_lookup_is_istiods_cluster_dns() -> None:
    """Mesh names resolve to the ready pods at the target port (short names through istiod's search
    path, in istio-system); a Kubernetes Service without that port or without ready pods is known but
    unreachable; a ServiceEntry host resolves to its registry endpoints, or is left to DNS when it
    has none of its own; other names are left to DNS."""
    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.model.snapshot import Snapshot
    from isthmus.registry.types import Pod

    store = Store()
    store.apply(loader.load_text(REGISTRY, "r.yaml"), "test")
    pod = Pod(
        "jwks-0", "istio-system", "127.7.0.9", {"app": "jwks"}, workload="jwks", app_ports={8000: 41000}
    )
    snap = Snapshot.build(1, store.list(), [pod])
    lookup = jr.registry_lookup(lambda: snap)
    assert lookup("jwks.istio-system.svc.cluster.local", 80) == [("127.7.0.9", 8000)]
    assert lookup("jwks", 80) == [("127.7.0.9", 8000)]  # jwks.istio-system.svc.cluster.local
    assert lookup("jwks.istio-system", 80) == [("127.7.0.9", 8000)]
    assert lookup("jwks.istio-system.svc.cluster.local", 81) == []
    assert lookup("idp.auth.svc.cluster.local", 8080) == []  # no pod
    assert lookup("idp", 8080) is None  # not in istiod's namespace: idp.istio-system... is unknown
    assert lookup("example.com", 8000) == [("127.7.0.9", 8000)]
    assert lookup("www.googleapis.com", 443) is None
    assert lookup("elsewhere.example", 80) is None


# --- file:// jwksUri: read by the resolver (never by the generator), polled for changes ----------------


async def _until(cond: Any, what: str, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_file_jwks_uri_is_read_at_once_then_polled(tmp_path: Path) -> None:
    """A file:// key is read when the config first needs it (no pending state, no fetch), then read
    again every file_poll_interval: new keys are a change (on_change: a new snapshot and a push), the
    same keys reordered are not; a file gone is an error that does not keep the keys read before (the
    file is the truth, as when the generator read it); a file that appears is read. Files take no part
    in the network refresh (no fetch counted, no failure backoff)."""
    path = tmp_path / "jwks.json"
    path.write_text(KEY_1)
    key = ("https://issuer.example", f"file://{path}")
    later = ("https://issuer.example", f"file://{tmp_path}/later.json")
    changes: list[dict[Any, JwksEntry]] = []
    r = JwksResolver(no_mesh, lambda: changes.append(dict(r.table)), file_poll_interval=0.01)

    async def run() -> None:
        table = r.update({key: 5.0, later: 5.0})
        assert table[key] == JwksEntry(keys=KEY_1, uri=key[1])
        assert table[later] == JwksEntry(
            error=f"open {tmp_path}/later.json: No such file or directory", uri=later[1]
        )
        await asyncio.sleep(0.1)
        assert changes == []  # polled, nothing changed: no new snapshot
        path.write_text(KEY_1_REORDERED)
        await asyncio.sleep(0.1)
        assert changes == []  # the same keys (compareJWKSResponse): no push
        path.write_text(KEY_2)
        await _until(lambda: changes, "the new keys")
        assert changes[-1][key].keys == KEY_2 and r.table[key].keys == KEY_2
        path.unlink()
        await _until(lambda: r.table[key].keys is None, "the file gone")
        assert "No such file or directory" in (r.table[key].error or "") and len(changes) == 2
        (tmp_path / "later.json").write_text(KEY_1)
        await _until(lambda: r.table[later].keys == KEY_1, "the file that appeared")
        assert not await r.refresh()  # no network key: nothing fetched, nothing failed
        assert r.fetch_success._value.get() == r.fetch_fail._value.get() == 0
        # No file named any more: the polling ends (update() starts it again for a new one).
        r.update({})
        await _until(lambda: r._file_watcher is not None and r._file_watcher.done(), "the poller to end")
        path.write_text(KEY_1)
        assert r.update({key: 5.0})[key].keys == KEY_1
        assert r._file_watcher is not None and not r._file_watcher.done()
        await r.close()

    asyncio.run(run())


def test_file_jwks_uri_without_a_loop_is_read_once(tmp_path: Path) -> None:
    """Without an event loop (a snapshot built offline) a file key is still read, synchronously."""
    path = tmp_path / "jwks.json"
    path.write_text(KEY_2)
    key = ("", f"file://{path}")
    r = resolver()
    assert r.update({key: 5.0}) == {key: JwksEntry(keys=KEY_2, uri=key[1])}
    assert r._file_watcher is None


def _usable_jwks(kid: str) -> str:
    import base64

    from cryptography.hazmat.primitives.asymmetric import rsa

    n = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    b64 = base64.urlsafe_b64encode(n.to_bytes(256, "big")).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "RSA", "kid": kid, "e": "AQAB", "n": b64}]})


def test_control_plane_reads_file_keys_and_pushes_when_the_file_changes(tmp_path: Path) -> None:
    """A RequestAuthentication with a file:// jwksUri: the first snapshot already holds the keys (read
    as it is built, so the first push carries them, as when the generator read the file); the generator
    inlines them; an edit of the file makes a new snapshot and a full push (reason jwks) whose jwt_authn
    config has the new keys; a missing file gives the fake key set and the reason in generation errors.
    (The file keys of a route preview's candidate: tests/unit/debug/test_debug_route_test.py.)"""
    from isthmus.api import loader
    from isthmus.config.store import Store
    from isthmus.mesh.control_plane import ControlPlane
    from isthmus.model.proxy import Proxy
    from isthmus.xds.gen import authz

    # Key sets Envoy loads (the generator replaces others with the fake one).
    key_1, key_2 = _usable_jwks("one"), _usable_jwks("two")
    path = tmp_path / "jwks.json"
    path.write_text(key_1)
    uri = f"file://{path}"
    key = ("https://issuer.example", uri)
    proxy = Proxy(
        id=Proxy.node_id("sidecar", "127.7.0.5", "web-0", "default"),
        kind="sidecar",
        ip="127.7.0.5",
        namespace="default",
        instance="web-0",
        workload="web",
        labels={"app": "web"},
    )

    def inlined(snap: Any) -> str:
        (provider,) = authz.jwt_config(snap, proxy).providers.values()
        return provider.local_jwks.inline_string

    async def run() -> None:
        store = Store()
        cp = ControlPlane(store)
        cp.jwks.file_poll_interval = 0.01
        pushes: list[Any] = []
        cp.xds.update = lambda snapshot, request: pushes.append(request)  # type: ignore[method-assign]
        cp.rebuild()
        store.apply(loader.load_text(RA % uri, "ra.yaml"), "test")
        snap = cp.current()
        assert snap.jwks[key] == JwksEntry(keys=key_1, uri=uri)
        assert inlined(snap) == key_1 and not snap.generation_errors
        path.write_text(key_2)
        await _until(lambda: cp.snapshot.jwks[key].keys == key_2, "the new keys in a snapshot")
        assert pushes[-1].full and pushes[-1].reason == "jwks", pushes[-1]
        assert inlined(cp.snapshot) == key_2
        path.unlink()
        await _until(lambda: cp.snapshot.jwks[key].keys is None, "the file gone")
        assert inlined(cp.snapshot) == authz.PUBLIC_ONLY_JWKS
        assert cp.snapshot.generation_errors[f"RequestAuthentication default/ra jwksUri {uri}"].startswith(
            f"fetching its keys failed: open {path}: No such file or directory; until a fetch succeeds"
        )
        await cp.jwks.close()

    asyncio.run(run())


def test_a_uri_python_cannot_parse_is_a_fetch_error_not_a_dead_task(ms: MockServer) -> None:
    """A jwksUri validation admits (Go's url.Parse takes any digits as a port) but urllib refuses
    (port 99999), or one an issuer's discovery document names (an unclosed IPv6 bracket), is a failed
    fetch like any other: before, the ValueError escaped `fetch`, so the first-fetch task died with the
    key pending for ever, and in a refresh it ended the refresh loop (no key refreshed again)."""
    assert "invalid URL" in (fetch(resolver(), "i", "http://127.0.0.1:99999/keys").error or "")

    bad = MockServer()  # its Handler class is its own: patching it touches no other server
    try:
        handler = bad.server.RequestHandlerClass
        orig = handler.do_GET

        def do_get(self: Any) -> None:
            if self.path.startswith("/.well-known/openid-configuration"):
                self._send(200, json.dumps({"jwks_uri": "http://[::1/certs"}))
                return
            orig(self)

        handler.do_GET = do_get  # type: ignore[method-assign]
        entry = fetch(resolver(), bad.url, "")
        assert entry.keys is None and entry.error, entry
    finally:
        bad.stop()

    changes: list[int] = []
    r = JwksResolver(no_mesh, lambda: changes.append(1), retry_interval=0.01)
    good, broken = ("", ms.url + "/oauth2/v3/certs"), ("", "http://127.0.0.1:99999/keys")

    async def run() -> None:
        r.update({good: 5.0, broken: 5.0})
        for _ in range(200):
            if not r._tasks:
                break
            await asyncio.sleep(0.01)
        assert not r._tasks
        assert r.table[good].keys == KEY_1
        assert r.table[broken].error and not r.table[broken].pending, r.table[broken]
        ms.keys = KEY_2
        assert await r.refresh()  # the broken key failed; the good one still rotates
        assert r.table[good].keys == KEY_2
        await r.close()

    asyncio.run(run())


def test_nothing_starts_after_close(ms: MockServer, tmp_path: Path) -> None:
    """A rebuild that runs after the control plane closed the resolver (one already scheduled when
    it stopped: a file change or a fetch that ended just before) still gets a table, but starts no
    fetch, refresh loop or file poller: before, update() started a new poller (the old one was done,
    cancelled) and fetch tasks that nothing would cancel, pending when the loop closed."""
    path = tmp_path / "jwks.json"
    path.write_text(KEY_1)
    file_key = ("", f"file://{path}")
    http_key = ("", ms.url + "/oauth2/v3/certs")
    r = resolver(file_poll_interval=0.01)

    async def run() -> None:
        r.update({file_key: 5.0})
        assert r._file_watcher is not None and not r._file_watcher.done()
        await r.close()
        table = r.update({file_key: 5.0, http_key: 5.0})
        assert table[file_key].keys == KEY_1 and table[http_key] == PENDING
        assert r._file_watcher is None or r._file_watcher.done()
        assert r._refresher is None or r._refresher.done()
        assert not r._tasks

    asyncio.run(run())


def test_an_unexpected_error_does_not_end_the_refresh_loop(ms: MockServer) -> None:
    """The refresh loop is the only thing that refreshes keys: a refresh that raises (a bug, an error
    no fetch expected) is logged and counted as a failed refresh, and the next one still runs."""
    key = ("", ms.url + "/oauth2/v3/certs")
    r = resolver(refresh_interval=0.01)
    calls: list[int] = []
    real_refresh = r.refresh

    async def flaky_refresh() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("unexpected")
        return await real_refresh()

    r.refresh = flaky_refresh  # type: ignore[method-assign]

    async def run() -> None:
        r.update({key: 5.0})
        await _until(lambda: r.table[key].keys == KEY_1, "the first fetch")
        await _until(lambda: calls, "the first refresh")
        assert r._refresher is not None
        await asyncio.sleep(0.05)
        assert not r._refresher.done(), "the refresh loop ended"
        await r.close()

    asyncio.run(run())


def test_a_key_wanted_again_during_its_background_retries_is_not_left_pending(ms: MockServer) -> None:
    """A key whose first fetch failed is dropped from the config and named again while its background
    retries run: update() makes it pending and starts no fetch (one is in flight), so when those
    retries fail too their error must replace "not fetched yet" (before: pending until the next
    refresh, 20 minutes later, with generationErrors saying the keys were not fetched yet)."""
    ms.error_after = 0
    key = ("", ms.url + "/oauth2/v3/certs")
    changes: list[int] = []
    r = JwksResolver(no_mesh, lambda: changes.append(1), retry_interval=0.05)

    async def run() -> None:
        r.update({key: 5.0})
        await _until(lambda: changes, "the first fetch to fail")
        assert r.table[key].error and key in r._inflight  # the background retries run
        r.update({})
        assert r.update({key: 5.0})[key] == PENDING
        await _until(lambda: not r._inflight, "the background retries to end")
        assert r.table[key].error and not r.table[key].pending, r.table[key]
        await r.close()

    asyncio.run(run())


def test_a_file_read_in_the_middle_of_a_save_is_not_pushed(tmp_path: Path) -> None:
    """A save truncates the file and then writes it (an editor may also rename it away and create it
    anew): a poll in between reads an empty (or cut) file, or none. Before, that read was taken at
    once: a push of a key set that rejects every token, then a second push when the save completed.
    Now text that is not JSON, or a missing file, is taken only when the next poll reads the same; a
    JSON key set is taken at once."""
    path = tmp_path / "jwks.json"
    path.write_text(KEY_1)
    key = ("", f"file://{path}")
    changes: list[int] = []
    r = JwksResolver(no_mesh, lambda: changes.append(1), file_poll_interval=3600)

    async def run() -> None:
        r.update({key: 5.0})
        for middle in ("", KEY_2[:10]):
            path.write_text(middle)  # the poll lands mid-save
            assert not await r.reread_files() and not jr.jwks_changed(KEY_1, r.table[key].keys or "")
            path.write_text(KEY_1_REORDERED)  # the save completes: the same keys, nothing to push
            assert not await r.reread_files() and changes == []
        path.unlink()  # gone for one poll (an editor's rename and create)
        assert not await r.reread_files() and r.table[key].keys == KEY_1_REORDERED
        path.write_text(KEY_2)  # a JSON key set: taken at once
        assert await r.reread_files() and r.table[key].keys == KEY_2 and changes == [1]
        path.write_text("not json")  # a file left that way is taken on the next poll
        assert not await r.reread_files()
        assert await r.reread_files() and r.table[key].keys == "not json"
        path.unlink()
        assert not await r.reread_files()
        assert await r.reread_files() and r.table[key].error
        await r.close()

    asyncio.run(run())
