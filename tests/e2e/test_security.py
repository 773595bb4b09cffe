"""Security end to end: automatic mTLS with SPIFFE identities, PeerAuthentication, AuthorizationPolicy,
RequestAuthentication, gateway TLS and client IPs, with real Envoy and the echo app."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, echo_body

pytestmark = pytest.mark.e2e

TD = "spiffe://cluster.local"


@contextmanager
def applied(mesh: MeshProcess, *docs: str) -> Iterator[None]:
    text = "\n---\n".join(textwrap.dedent(d) for d in docs)
    mesh.apply(text)
    try:
        yield
    finally:
        mesh.delete(text)


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
