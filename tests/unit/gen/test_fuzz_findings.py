"""Configs that Isthmus accepted and the proxies NACKed, found by `bench/fuzz_nacks.py`; each now yields
config Envoy loads (Istio accepts them all, so the generators, not validation, had to change).

- A RequestAuthentication whose inline `jwks` Envoy cannot load (`{"keys": []}`, a bare JWK, keys of an
  unsupported type or with bad material) got the proxy's whole jwt_authn extension NACKed ("Provider
  'origins-0' in jwt_authn config has invalid local jwks: Jwks doesn't have any valid public key").
- A Gateway server on a port the gateway's Envoy already binds (admin 15000, health 15021, Prometheus
  15090) got the gateway's whole LDS update NACKed ("cannot bind '<ip>:15000': Address already in use",
  "'0.0.0.0_15021' has duplicate address").
- A ServiceEntry address written twice made one domain twice ("Only unique values for domains are
  permitted").
- A Gateway HTTPS server with `tls: {}` (mode unset: PASSTHROUGH) was taken for SIMPLE and got a
  terminating chain without a certificate ("No TLS certificates found for server context").
- A Gateway server bound to an address the host lacks (NACKed: "cannot bind ... Cannot assign requested
  address") or to a unix socket (a socket address named `unix://...`: "malformed IP address").
- A ServiceEntry host `*.<ns>.svc.cluster.local` gave the sidecars of <ns> the short alt host `*`, a
  second bare wildcard beside the catch-all's, and their whole sidecar table (or VHDS update) was NACKed
  ("Only a single wildcard domain is permitted in route http_proxy").
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gen_helpers import PODS, clusters, generate, route_table, sidecar, snapshot, vhost
from google.protobuf.json_format import MessageToDict

from isthmus.agent.envoy import default_envoy_path
from isthmus.api import loader
from isthmus.api.validation.common import regex_error
from isthmus.config.ingest import ingest_text
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import authz, naming
from isthmus.xds.gen import listeners as listeners_mod
from isthmus.xds.gen.jwks import local_jwks_problem


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def _rsa_jwk() -> dict[str, str]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    return {"kty": "RSA", "kid": "k1", "n": _b64(numbers.n), "e": "AQAB"}


RSA_KEY = _rsa_jwk()

# Key sets istiod's validation (jwk.Parse) and Isthmus's accept, and Envoy 1.40 refuses to load.
UNUSABLE = {
    "empty set": {"keys": []},
    "bare key": RSA_KEY,
    "unsupported kty only": {"keys": [{"kty": "XYZ", "kid": "a"}]},
    "rsa exponent 5": {"keys": [{**RSA_KEY, "e": "BQ"}]},
    "rsa even modulus": {"keys": [{**RSA_KEY, "n": _b64(int.from_bytes(base64.urlsafe_b64decode(RSA_KEY["n"] + "==")) + 1)}]},
    "rsa key with an ES alg": {"keys": [{**RSA_KEY, "alg": "ES256"}]},
    "ed25519 x too short": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]},
    "empty oct key": {"keys": [{"kty": "oct", "k": ""}]},
}  # fmt: skip
USABLE = {
    "rsa": {"keys": [RSA_KEY]},
    "one bad key and one good": {"keys": [{"kty": "XYZ"}, RSA_KEY]},
    "oct": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
    "rsa with padding": {"keys": [{**RSA_KEY, "n": RSA_KEY["n"] + "=" * (-len(RSA_KEY["n"]) % 4)}]},
}


def request_authentication(jwks: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {"jwtRules": [{"issuer": "https://issuer.example", "jwks": json.dumps(jwks)}]},
        }
    )


def jwt_authn(snap: Snapshot) -> dict[str, Any]:
    ext = generate(snap, sidecar(), naming.EXTENSION_CONFIG_TYPE, {naming.JWT_EXTENSION})
    config = dict(ext[naming.JWT_EXTENSION]["typed_config"])
    config.pop("@type")
    return config


_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def envoy_validate_hcm(
    tmp_path: Path, route_config: dict[str, Any], http_filters: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on one static listener whose HCM has this route table and these filters
    (the router appended): what a NACK of them would say."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "x",
        "route_config": route_config,
        "http_filters": [*http_filters, _ROUTER],
    }
    listener = {
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps({"static_resources": {"listeners": [listener]}}))
    return subprocess.run(
        [str(default_envoy_path()), "--mode", "validate", "-c", str(path), "-l", "critical"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def envoy_validate(tmp_path: Path, http_filter: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on a static listener whose HCM runs `http_filter`."""
    return envoy_validate_hcm(tmp_path, {"name": "r"}, [http_filter])


def jwt_filter(jwks_text: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"p": {"issuer": "i", "local_jwks": {"inline_string": jwks_text}}},
        },
    }


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_inline_jwks_is_accepted_but_never_sent(case: str, tmp_path: Path) -> None:
    doc = request_authentication(UNUSABLE[case])
    assert ingest_text(doc, "ra.yaml").ok, "Istio accepts it, so Isthmus does"
    snap = snapshot(doc)
    config = jwt_authn(snap)
    (provider,) = config["providers"].values()
    # the issuer's tokens are refused (a key set no token verifies against), requests without one pass
    assert provider["local_jwks"]["inline_string"] == authz.PUBLIC_ONLY_JWKS
    assert provider["issuer"] == "https://issuer.example"
    (error,) = [
        v for k, v in snap.generation_errors.items() if k.startswith("RequestAuthentication default/jwt")
    ]
    assert "Envoy cannot load its key set" in error
    # and Envoy loads what is sent
    generated = {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            **config,
        },
    }
    result = envoy_validate(tmp_path, generated)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(USABLE))
def test_usable_inline_jwks_is_sent_as_written(case: str) -> None:
    text = json.dumps(USABLE[case])
    snap = snapshot(request_authentication(USABLE[case]))
    (provider,) = jwt_authn(snap)["providers"].values()
    assert provider["local_jwks"]["inline_string"] == text
    assert not snap.generation_errors


@pytest.mark.parametrize("case", sorted(UNUSABLE) + sorted(USABLE))
def test_local_jwks_problem_agrees_with_envoy(case: str, tmp_path: Path) -> None:
    text = json.dumps({**UNUSABLE, **USABLE}[case])
    result = envoy_validate(tmp_path, jwt_filter(text))
    assert (local_jwks_problem(text) is None) == (result.returncode == 0), result.stdout + result.stderr


# --- Gateway servers on the gateway proxy's own ports -------------------------------------------------

GW_LABELS = {"istio": "ingressgateway"}
GW_POD = Pod("gw-0", "istio-system", "127.7.0.9", GW_LABELS, workload="gw", gateway=True)


def gateway_proxy() -> Proxy:
    return Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels=GW_LABELS,
    )


@pytest.mark.parametrize("port", [15000, 15021, 15090])
def test_gateway_server_on_a_port_of_the_proxy_itself_is_left_out(port: int) -> None:
    doc = textwrap.dedent(
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw, namespace: istio-system}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: {port}, name: http-own, protocol: HTTP}}
            hosts: ["*"]
          - port: {{number: 8080, name: http, protocol: HTTP}}
            hosts: ["*"]
        """
    )
    assert loader.load_text(doc, "gw.yaml"), "Istio accepts it, so Isthmus does"
    snap = snapshot(doc, pods=[*PODS, GW_POD])
    listeners = generate(snap, gateway_proxy(), naming.LISTENER_TYPE)
    # the other server is still served; the one Envoy could not bind is left out and reported
    assert sorted(listeners) == ["0.0.0.0_8080"]
    assert (
        f"gateway port {port} is the gateway proxy's own"
        in snap.generation_errors[f"listener 0.0.0.0_{port}"]
    )


def _bound_gateway(bind: str, port: int) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw, namespace: istio-system}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: {port}, name: http, protocol: HTTP}}
            bind: "{bind}"
            hosts: ["*"]
        """
    )


def test_gateway_server_bound_to_another_address_keeps_its_port() -> None:
    snap = snapshot(_bound_gateway("127.0.0.1", 15021), pods=[*PODS, GW_POD])
    listeners = generate(snap, gateway_proxy(), naming.LISTENER_TYPE)
    assert sorted(listeners) == ["127.0.0.1_15021"]


def test_gateway_server_bound_to_an_address_the_host_lacks_binds_freely() -> None:
    """An address the gateway's host does not have would fail Envoy's bind and get the whole LDS update
    NACKed ("cannot bind '192.0.2.1:8080': Cannot assign requested address"): IP_FREEBIND binds it."""
    snap = snapshot(_bound_gateway("192.0.2.1", 8080), pods=[*PODS, GW_POD])
    (lst,) = listeners_mod.build_listeners(snap, gateway_proxy())
    assert (lst.name, lst.address.socket_address.address, lst.freebind.value) == (
        "192.0.2.1_8080",
        "192.0.2.1",
        True,
    )
    # the gateway's own address binds as usual, as does a server without bind (on the pod address)
    for doc in (_bound_gateway(GW_POD.ip, 8080), _bound_gateway("", 8080).replace('    bind: ""\n', "")):
        (lst,) = listeners_mod.build_listeners(snapshot(doc, pods=[*PODS, GW_POD]), gateway_proxy())
        assert lst.address.socket_address.address == GW_POD.ip and not lst.HasField("freebind"), doc


def test_gateway_server_bound_to_a_unix_socket_listens_on_a_pipe() -> None:
    """istiod's BuildAddress: `bind: unix:///path` with port 0 is a pipe address, where a socket address
    named `unix://...` was NACKed ("malformed IP address")."""
    snap = snapshot(_bound_gateway("unix:///run/gw.sock", 0), pods=[*PODS, GW_POD])
    (lst,) = listeners_mod.build_listeners(snap, gateway_proxy())
    assert lst.name == "unix:///run/gw.sock_0"
    assert lst.address.WhichOneof("address") == "pipe" and lst.address.pipe.path == "/run/gw.sock"
    assert not lst.HasField("freebind")
    # istiod's route name appends the bind
    assert list(generate(snap, gateway_proxy(), naming.ROUTE_TYPE, {"http.0.unix:///run/gw.sock"}))


@pytest.mark.parametrize("tls", ["{}", "{credentialName: cred}"])
def test_gateway_tls_without_a_mode_is_passthrough(tls: str) -> None:
    """ServerTLSSettings.mode's zero value is PASSTHROUGH (istiod's IsPassThroughServer): an HTTPS server
    with `tls: {}` forwards the TLS by SNI. Taken as SIMPLE it was a terminating chain with no certificate,
    and Envoy NACKed the gateway's LDS ("No TLS certificates found for server context")."""
    doc = textwrap.dedent(
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw, namespace: istio-system}}
        spec:
          selector: {{istio: ingressgateway}}
          servers:
          - port: {{number: 443, name: https, protocol: HTTPS}}
            hosts: ["*"]
            tls: {tls}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: tls, namespace: istio-system}}
        spec:
          hosts: [reviews.default.svc.cluster.local]
          gateways: [gw]
          tls:
          - match: [{{sniHosts: [reviews.default.svc.cluster.local]}}]
            route: [{{destination: {{host: reviews.default.svc.cluster.local, port: {{number: 9080}}}}}}]
        """
    )
    snap = snapshot(doc, pods=[*PODS, GW_POD])
    (lst,) = listeners_mod.build_listeners(snap, gateway_proxy())
    (chain,) = lst.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["reviews.default.svc.cluster.local"]
    assert (
        not chain.HasField("transport_socket") and chain.filters[-1].name == "envoy.filters.network.tcp_proxy"
    )


def test_gateway_port_shifted_onto_a_declared_port_is_left_out() -> None:
    """Not root: port 81 is served on 81 + the port offset = 8081, which another server declares. Two
    listeners on 127.7.0.9:8081 would be NACKed ("has duplicate address"); the declared 8081 wins."""
    doc = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw, namespace: istio-system}
        spec:
          selector: {istio: ingressgateway}
          servers:
          - port: {number: 81, name: http-a, protocol: HTTP}
            hosts: ["*"]
          - port: {number: 8081, name: http-b, protocol: HTTP}
            hosts: ["*"]
          - port: {number: 82, name: http-c, protocol: HTTP}
            hosts: ["*"]
        """
    )
    snap = snapshot(doc, pods=[*PODS, GW_POD])
    not_root = dataclasses.replace(gateway_proxy(), metadata={"ISTHMUS_PORT_OFFSET": "8000"})
    built = listeners_mod.build_listeners(snap, not_root)
    addresses = {lst.name: lst.address.socket_address.port_value for lst in built}
    assert addresses == {"0.0.0.0_8081": 8081, "0.0.0.0_82": 8082}
    assert "already uses" in snap.generation_errors["listener 0.0.0.0_81"]
    # without an offset (root) nothing collides
    assert len(listeners_mod.build_listeners(snapshot(doc, pods=[*PODS, GW_POD]), gateway_proxy())) == 3


# --- Route fields Envoy checks as header names/values (no NUL, CR or LF) -------------------------------

REVIEWS_VHOST = "reviews.default.svc.cluster.local:9080"


def virtual_service(http: dict[str, Any], name: str = "r") -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [http]},
        }
    )


ROUTE = {"route": [{"destination": {"host": "reviews"}}]}
# Each accepted by Istio's validation and by Isthmus's, each NACKed by Envoy ("value does not match regex
# pattern "^[^\x00\n\r]*$"" / "QueryParameterMatcherValidationError.Name: value length must be at least 1").
UNTRANSLATABLE_ROUTES = {
    "rewrite authority": {**ROUTE, "rewrite": {"authority": "a\nb"}},
    "rewrite uri": {**ROUTE, "rewrite": {"uri": "/a\r\nb"}},
    "regex rewrite": {**ROUTE, "rewrite": {"uriRegexRewrite": {"match": "^/a", "rewrite": "/b\n"}}},
    "redirect authority": {"redirect": {"authority": "a\nb"}},
    "redirect uri": {"redirect": {"uri": "/a\x00b"}},
    "empty query parameter name": {**ROUTE, "match": [{"queryParams": {"": {"exact": "a"}}}]},
    # istiod's validateHTTPStatus lets 600 through (its own test case), Envoy takes [200, 600)
    "direct response 600": {"directResponse": {"status": 600}},
    "abort 600": {**ROUTE, "fault": {"abort": {"httpStatus": 600, "percentage": {"value": 100}}}},
}


def envoy_validate_routes(tmp_path: Path, table: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on the route table inlined into a static HCM (clusters not checked)."""
    table = {k: v for k, v in table.items() if k != "@type"} | {"validate_clusters": False}
    return envoy_validate_hcm(tmp_path, table, [])


@pytest.mark.parametrize("case", sorted(UNTRANSLATABLE_ROUTES))
def test_route_envoy_cannot_take_leaves_the_virtual_service_out(case: str, tmp_path: Path) -> None:
    bad = virtual_service(UNTRANSLATABLE_ROUTES[case])
    assert ingest_text(bad, "vs.yaml").ok, "Istio accepts it, so Isthmus does"
    snap = snapshot(bad)
    table = route_table(snap, sidecar())
    routes = vhost(table, REVIEWS_VHOST)["routes"]
    # the default route only: the VirtualService is left out, and reported
    assert [r.get("metadata") for r in routes if r.get("name") != "connect"] == [None]
    assert any(
        why in snap.generation_errors["VirtualService default/r"]
        for why in ("NUL, CR or LF", "query parameter", "from 200 to 599")
    )
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr


def test_header_removal_of_a_name_no_request_can_have_is_dropped(tmp_path: Path) -> None:
    doc = virtual_service({**ROUTE, "headers": {"response": {"remove": ["a\nb", "x-gone"]}}})
    snap = snapshot(doc)
    table = route_table(snap, sidecar())
    (route,) = [r for r in vhost(table, REVIEWS_VHOST)["routes"] if r.get("name") != "connect"]
    assert route["response_headers_to_remove"] == ["x-gone"]
    assert not snap.generation_errors
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["a\nb", "\x00", "x\r"])
def test_hash_on_a_header_name_no_request_can_have_is_no_hash(name: str, tmp_path: Path) -> None:
    """A header with NUL/CR/LF in its name is never present: no hash policy hashes the same (randomly)."""
    doc = json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {
                "host": "reviews",
                "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": name}}},
            },
        }
    )
    assert ingest_text(doc, "dr.yaml").ok
    table = route_table(snapshot(doc), sidecar())
    routes = vhost(table, REVIEWS_VHOST)["routes"]
    assert all("hash_policy" not in r.get("route", {}) for r in routes)
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr
    good = doc.replace(json.dumps(name)[1:-1], "x-user")
    routes = vhost(route_table(snapshot(good), sidecar()), REVIEWS_VHOST)["routes"]
    assert any(
        r.get("route", {}).get("hash_policy") == [{"header": {"header_name": "x-user"}}] for r in routes
    )


# --- Cluster values beyond Envoy's (and the kernel's) bounds ------------------------------------------


def destination_rule(traffic_policy: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"host": "reviews", "trafficPolicy": traffic_policy},
        }
    )


REVIEWS_CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("consistent_hash", "field", "expected"),
    [
        ({"httpHeaderName": "x", "minimumRingSize": 10**10}, "ring_hash_lb_config", {"minimum_ring_size": "8388608"}),
        ({"httpHeaderName": "x", "ringHash": {"minimumRingSize": 10**10}}, "ring_hash_lb_config", {"minimum_ring_size": "8388608"}),
        ({"httpHeaderName": "x", "ringHash": {"minimumRingSize": 4096}}, "ring_hash_lb_config", {"minimum_ring_size": "4096"}),
    ],
)  # fmt: skip
def test_hash_table_sizes_are_bounded_by_envoys_maximum(
    consistent_hash: dict[str, Any], field: str, expected: dict[str, str]
) -> None:
    """Envoy: minimum_ring_size <= 8388608; istiod passes bigger ones through (it checks maglev's size)."""
    doc = destination_rule({"loadBalancer": {"consistentHash": consistent_hash}})
    assert ingest_text(doc, "dr.yaml").ok
    snap = snapshot(doc)
    assert clusters(snap, sidecar())[REVIEWS_CLUSTER][field] == expected
    assert not snap.generation_errors


def test_tcp_keepalive_is_bounded_by_what_the_kernel_accepts() -> None:
    """100000h used to raise (uint32 overflow: the cluster was left out); 0.5s became 0 (EINVAL)."""
    doc = destination_rule(
        {"connectionPool": {"tcp": {"tcpKeepalive": {"time": "100000h", "interval": "0.5s", "probes": 1000}}}}
    )
    assert ingest_text(doc, "dr.yaml").ok
    snap = snapshot(doc)
    cluster = clusters(snap, sidecar())[REVIEWS_CLUSTER]
    assert cluster["upstream_connection_options"]["tcp_keepalive"] == {
        "keepalive_time": 32767,
        "keepalive_interval": 1,
        "keepalive_probes": 127,
    }
    assert not snap.generation_errors


@pytest.mark.parametrize("delta", [False, True], ids=["route table", "VHDS"])
def test_a_repeated_service_entry_address_is_one_domain(delta: bool) -> None:
    """`addresses: [ip, ip]` (Istio's validation lets it through) made `ip:port` a domain twice in the
    virtual host: "Only unique values for domains are permitted" NACKed the route table (VHDS too)."""
    se = textwrap.dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: legacy, namespace: default}
        spec:
          hosts: [legacy.example.com]
          addresses: [127.7.0.11, 127.7.0.11]
          ports: [{number: 5432, name: tcp, protocol: TCP}]
        """
    )
    proxy = dataclasses.replace(sidecar(), delta_xds=delta)
    snap = snapshot(se)
    if delta:
        vhosts = generate(snap, proxy, naming.TYPE_PREFIX + "envoy.config.route.v3.VirtualHost")
    else:
        vhosts = {
            vh["name"]: vh
            for t in generate(snap, proxy, naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE}).values()
            for vh in t.get("virtual_hosts", [])
        }
    domains = [d for vh in vhosts.values() for d in vh["domains"]]
    assert domains.count("127.7.0.11:5432") == 1, domains


def test_sni_longer_than_a_tls_server_name_leaves_the_cluster_out() -> None:
    doc = destination_rule({"tls": {"mode": "SIMPLE", "sni": "a" * 300}})
    assert ingest_text(doc, "dr.yaml").ok
    snap = snapshot(doc)
    assert REVIEWS_CLUSTER not in clusters(snap, sidecar())
    assert "at most 255" in snap.generation_errors[f"cluster {REVIEWS_CLUSTER}"]
    ok = snapshot(destination_rule({"tls": {"mode": "SIMPLE", "sni": "a" * 255}}))
    assert REVIEWS_CLUSTER in clusters(ok, sidecar())


# --- AuthorizationPolicy header keys --------------------------------------------------------------------


def test_authz_header_key_no_request_can_have_is_unusable() -> None:
    """`request.headers[a\\nb]`: Envoy's HeaderMatcher refuses the name (RBAC NACKed). As any key istiod
    cannot translate, it makes an ALLOW rule unusable (that rule is skipped: it can only allow less)."""
    doc = json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {
                "rules": [
                    {"when": [{"key": "request.headers[a\nb]", "values": ["x"]}]},
                    {"when": [{"key": "request.headers[x-ok]", "values": ["y"]}]},
                ]
            },
        }
    )
    assert ingest_text(doc, "ap.yaml").ok
    snap = snapshot(doc)
    # the inbound route config carries the RBAC rules (per route)
    text = json.dumps(generate(snap, sidecar(), naming.ROUTE_TYPE, {"inbound|8080||"}))
    assert "a\\nb" not in text
    assert "x-ok" in text


def test_http_status_599_is_still_served() -> None:
    for http in ({"directResponse": {"status": 599}}, {**ROUTE, "fault": {"abort": {"httpStatus": 599}}}):
        snap = snapshot(virtual_service(http))
        routes = vhost(route_table(snap, sidecar()), REVIEWS_VHOST)["routes"]
        assert any(r.get("metadata") for r in routes)
        assert not snap.generation_errors


# --- Gateway certificate pins ----------------------------------------------------------------------------

GOOD_SPKI = base64.b64encode(bytes(range(32))).decode()
GOOD_HASH = ":".join(f"{b:02X}" for b in range(32))


@pytest.mark.parametrize("credential", [True, False], ids=["credentialName", "files"])
def test_certificate_pins_envoy_cannot_decode_match_no_certificate(credential: bool) -> None:
    """`verifyCertificateSpki: [abc]` / `verifyCertificateHash: [zz]`: Envoy NACKed the gateway's whole LDS
    update ("value length must be at least 44/64"). Such a pin matches no client certificate; a
    well-formed all-zero SHA-256 stands in for it, so the same clients are accepted (a valid pin stays)."""
    source = (
        {"credentialName": "cred"}
        if credential
        else {"serverCertificate": "/c.pem", "privateKey": "/k.pem", "caCertificates": "/ca.pem"}
    )
    tls = {
        "mode": "MUTUAL",
        **source,
        "verifyCertificateSpki": ["abc", GOOD_SPKI],
        "verifyCertificateHash": ["zz", GOOD_HASH],
    }
    server = {"port": {"number": 8443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"], "tls": tls}
    doc = json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [server]},
        }
    )
    ingested = ingest_text(doc, "gw.yaml")
    assert ingested.ok, "Istio accepts it, so Isthmus does"
    # ...with a warning naming each pin no certificate can match
    warned = sorted(str(w.field) for w in ingested.warnings)
    assert warned == [
        "spec.servers[0].tls.verifyCertificateHash[0]",
        "spec.servers[0].tls.verifyCertificateSpki[0]",
    ]
    snap = snapshot(doc, pods=[*PODS, GW_POD])
    (chain,) = generate(snap, gateway_proxy(), naming.LISTENER_TYPE)["0.0.0.0_8443"]["filter_chains"]
    ctx = chain["transport_socket"]["typed_config"]["common_tls_context"]
    default = ctx["combined_validation_context"]["default_validation_context"]
    assert default["verify_certificate_spki"] == [base64.b64encode(bytes(32)).decode(), GOOD_SPKI]
    assert default["verify_certificate_hash"] == ["00" * 32, GOOD_HASH]


# --- Telemetry and RequestAuthentication header names ----------------------------------------------------


def test_tracing_tag_from_a_header_no_request_has_is_its_default_value() -> None:
    """customTags header `a\nb`: Envoy's CustomTag.Header name refuses it (the listener NACKed). A missing
    header gives the default value (or no tag): the same, as a literal."""
    doc = json.dumps(
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {
                "tracing": [
                    {
                        "customTags": {
                            "with-default": {"header": {"name": "a\nb", "defaultValue": "none"}},
                            "without": {"header": {"name": "c\rd"}},
                            "ok": {"header": {"name": "x-ok"}},
                        }
                    }
                ]
            },
        }
    )
    assert ingest_text(doc, "t.yaml").ok
    snap = snapshot(doc)
    text = json.dumps(generate(snap, sidecar(), naming.LISTENER_TYPE))
    assert '{"tag": "with-default", "literal": {"value": "none"}}' in text
    assert '"without"' not in text
    assert '{"tag": "ok", "request_header": {"name": "x-ok"}}' in text


@pytest.mark.parametrize(
    ("locations", "expected"),
    [
        ({"fromHeaders": [{"name": "a\nb"}, {"name": "x-jwt", "prefix": "Bearer "}]}, [{"name": "x-jwt", "value_prefix": "Bearer "}]),
        ({"fromHeaders": [{"name": "x-jwt", "prefix": "a\r"}]}, [{"name": authz.NO_REQUEST_HEADER}]),
        ({"fromHeaders": [{"name": "a\nb"}], "fromParams": ["token"]}, None),
    ],
)  # fmt: skip
def test_jwt_header_location_no_request_has_never_yields_a_token(
    locations: dict[str, Any], expected: list[dict[str, str]] | None, tmp_path: Path
) -> None:
    """fromHeaders `a\nb`: Envoy's JwtHeader refuses the name or prefix (ECDS NACKed). No request has
    such a header, so the location is left out; if none is left, one no request can carry keeps Envoy
    from looking in its default locations (Authorization, access_token)."""
    jwks = json.dumps({"keys": [RSA_KEY]})
    doc = json.dumps(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {"jwtRules": [{"issuer": "https://issuer.example", "jwks": jwks, **locations}]},
        }
    )
    assert ingest_text(doc, "ra.yaml").ok
    config = jwt_authn(snapshot(doc))
    (provider,) = config["providers"].values()
    assert provider.get("from_headers") == expected
    generated = {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            **config,
        },
    }
    result = envoy_validate(tmp_path, generated)
    assert result.returncode == 0, result.stdout + result.stderr


def test_access_log_filter_with_comprehension_macros_is_left_out() -> None:
    """`[1, 2].all(x, x > 0)`: cel-go (istiod's validation) parses it, Envoy's CEL evaluator has no
    comprehension support and NACKed the listener. That provider's log is left out, and reported."""
    doc = json.dumps(
        {
            "apiVersion": "telemetry.istio.io/v1",
            "kind": "Telemetry",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {
                "accessLogging": [
                    {"providers": [{"name": "envoy"}], "filter": {"expression": "[1, 2].all(x, x > 0)"}}
                ]
            },
        }
    )
    assert ingest_text(doc, "t.yaml").ok
    snap = snapshot(doc)
    text = json.dumps(generate(snap, sidecar(), naming.LISTENER_TYPE))
    assert "x > 0" not in text
    assert any("comprehension" in v for v in snap.generation_errors.values())
    plain = snapshot(doc.replace("[1, 2].all(x, x > 0)", "response.code >= 400"))
    assert "response.code >= 400" in json.dumps(generate(plain, sidecar(), naming.LISTENER_TYPE))


@pytest.mark.parametrize("value", ["315576000000s", "87600000h"])
def test_durations_beyond_envoys_range_are_its_longest(value: str) -> None:
    """istiod accepts durations up to protobuf's maximum (10,000 years); Envoy converts them to int64
    nanoseconds and NACKed the cluster / route table from 9223372036 s on ("Duration out-of-range")."""
    doc = destination_rule({"outlierDetection": {"consecutive5xxErrors": 5, "interval": value}})
    vs = virtual_service({**ROUTE, "timeout": value})
    assert ingest_text(doc, "dr.yaml").ok and ingest_text(vs, "vs.yaml").ok
    snap = snapshot(doc, vs)
    assert clusters(snap, sidecar())[REVIEWS_CLUSTER]["outlier_detection"]["interval"] == "9223372035s"
    routes = vhost(route_table(snap, sidecar()), REVIEWS_VHOST)["routes"]
    assert any(r.get("route", {}).get("timeout") == "9223372035s" for r in routes)


# --- Found by the second offline round -------------------------------------------------------------------


def test_payload_header_no_upstream_can_read_is_not_added() -> None:
    """outputPayloadToHeader "\\x00": Envoy's forward_payload_header refuses it (ECDS NACKed)."""
    rule = {"issuer": "i", "jwks": json.dumps({"keys": [RSA_KEY]})}
    for name, expected in (("\x00", None), ("x-payload", "x-payload")):
        doc = json.dumps(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "RequestAuthentication",
                "metadata": {"name": "jwt", "namespace": "default"},
                "spec": {"jwtRules": [{**rule, "outputPayloadToHeader": name}]},
            }
        )
        assert ingest_text(doc, "ra.yaml").ok
        (provider,) = jwt_authn(snapshot(doc))["providers"].values()
        assert provider.get("forward_payload_header") == expected


def test_negative_warmup_minimum_percent_is_zero() -> None:
    """istiod refuses only minimumPercent > 100; Envoy's Percent is [0, 100] (CDS NACKed at -1)."""
    doc = destination_rule(
        {"loadBalancer": {"simple": "LEAST_REQUEST", "warmup": {"duration": "10s", "minimumPercent": -1}}}
    )
    assert ingest_text(doc, "dr.yaml").ok
    cluster = clusters(snapshot(doc), sidecar())[REVIEWS_CLUSTER]
    assert cluster["least_request_lb_config"]["slow_start_config"]["min_weight_percent"] == {}  # value 0


def test_negative_tcp_idle_timeout_disables_it() -> None:
    """tcp.idleTimeout "-1s" passes validation (istiod's too: it checks from 1ms up, 0s disables) and
    made the generator raise, leaving the cluster out; it now disables the timeout, as 0s does."""
    doc = destination_rule({"connectionPool": {"tcp": {"idleTimeout": "-1s"}}})
    assert ingest_text(doc, "dr.yaml").ok
    snap = snapshot(doc)
    cluster = clusters(snap, sidecar())[REVIEWS_CLUSTER]
    assert not snap.generation_errors
    options = json.dumps(cluster["typed_extension_protocol_options"])
    assert '"idle_timeout": "0s"' in options


@pytest.mark.parametrize(("body", "decoded"), [("tab\there", "tabhere"), ("aGk", "aGk="), ("aGk=", "aGk=")])
def test_direct_response_bytes_are_read_as_validation_reads_them(body: str, decoded: str) -> None:
    """`bytes: "tab\\there"` passes validation (whitespace ignored, padding optional) and made the
    generator's strict b64decode raise ("Incorrect padding"): the VirtualService was left out."""
    doc = virtual_service({"directResponse": {"status": 200, "body": {"bytes": body}}})
    assert ingest_text(doc, "vs.yaml").ok
    snap = snapshot(doc)
    routes = vhost(route_table(snap, sidecar()), REVIEWS_VHOST)["routes"]
    (route,) = [r for r in routes if r.get("metadata")]
    assert (
        route["direct_response"]["body"]["inline_bytes"]
        == base64.b64encode(base64.b64decode(decoded + "=" * (-len(decoded) % 4))).decode()
    )
    assert not snap.generation_errors


def test_dns_service_entry_repeating_a_service_host_adds_no_host_name_to_its_eds() -> None:
    """fuzz_nacks seed 29: a DNS ServiceEntry naming a Kubernetes Service's host in the same namespace
    shares its endpoint key; its own host-name endpoint reached the Service's EDS cluster, and Envoy
    NACKed the proxy's whole EDS response ("malformed IP address: web.default.svc.cluster.local")."""
    snap = snapshot(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: fz-4165, namespace: default}
        spec:
          hosts: [web.default.svc.cluster.local]
          ports: [{number: 80, name: https}]
          resolution: DNS
        """
    )
    proxy = sidecar("reviews-v1-0", "default", {"app": "reviews", "version": "v1"}, "127.7.0.2")
    name = "outbound|80||web.default.svc.cluster.local"
    assert clusters(snap, proxy)[name]["type"] == "EDS"
    cla = generate(snap, proxy, naming.ENDPOINT_TYPE, [name])[name]
    addresses = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for group in cla["endpoints"]
        for e in group["lb_endpoints"]
    ]
    assert addresses and all(a.startswith("127.") for a in addresses), addresses


def _regexes(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "regex" and isinstance(v, str)] + [
            r for v in node.values() for r in _regexes(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _regexes(v)]
    return []


@pytest.mark.parametrize(
    "source",
    [
        "serviceAccounts: ['\\']",  # one backslash
        "serviceAccounts: ['ns/a(b']",
        "namespaces: ['x(']",
        "principals: ['*sa/a(b']",
    ],
)
def test_authorization_values_with_regex_metacharacters_make_valid_regexes(source: str) -> None:
    """fuzz_nacks seed 23: `serviceAccounts: ['\\']` was spliced into the principal regex unescaped, and
    Envoy NACKed every sidecar's listeners and route tables ("unexpected )")."""
    policy = f"""
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: fz, namespace: default}}
    spec:
      rules:
      - from:
        - source:
            {source}
    """
    assert ingest_text(policy, "ap.yaml").ok
    snap = snapshot(policy)
    proxy = sidecar("reviews-v1-0", "default", {"app": "reviews", "version": "v1"}, "127.7.0.2")
    configs = [MessageToDict(a) for a in authz.rbac_per_route(snap, proxy).values()]
    configs += [MessageToDict(f) for f in authz.inbound_network_filters(snap, proxy)]
    regexes = _regexes(configs)
    assert any("sa/" in r or "ns/" in r for r in regexes), configs
    assert [r for r in regexes if regex_error(r)] == []


@pytest.mark.parametrize("namespace", ["default", "other"])
def test_wildcard_service_entry_of_the_proxys_namespace_claims_no_bare_wildcard(
    namespace: str, tmp_path: Path
) -> None:
    """`*.<ns>.svc.cluster.local` seen from <ns>: the short alt host is `*` (and `*:80`), which repeated
    the catch-all's `*` and claimed every host; Envoy refused the whole table ("Only a single wildcard
    domain is permitted"). The other alt hosts stay."""
    doc = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild, namespace: {namespace}}}
spec:
  hosts: ['*.{namespace}.svc.cluster.local']
  ports: [{{number: 80, name: http}}]
"""
    assert ingest_text(doc, "se.yaml").ok
    table = route_table(snapshot(doc), sidecar())
    wild = vhost(table, f"*.{namespace}.svc.cluster.local:80")
    assert "*" not in wild["domains"] and "*:80" not in wild["domains"]
    assert {f"*.{namespace}.svc", f"*.{namespace}"} <= set(wild["domains"])
    assert [v["name"] for v in table["virtual_hosts"] if "*" in v["domains"]] == ["allow_any"]
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr
