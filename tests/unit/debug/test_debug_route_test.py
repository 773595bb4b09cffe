"""`route test` on the route tables the generators produce (the same dicts Envoy's config dump holds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from debug_helpers import DR_SUBSETS, PODS, config_for, context, snapshot

from isthmus.debug import route_test as rt
from isthmus.debug.envoy_config import ProxyConfig
from isthmus.debug.matching import request_from_url
from isthmus.debug.preview import candidate_snapshot, generate_proxy_config

ECHO = "echo.default.svc.cluster.local"


def run(*docs: str, url: str = "http://echo/", frm: str = "client-0", ns: str = "default", **kw) -> dict:
    snap, store = snapshot(*docs)
    config = config_for(snap, frm, ns)
    req = request_from_url(url, kw.pop("method", None), kw.pop("headers", []))
    return rt.evaluate(config, "http_proxy", req, context(store, frm, ns))


def clusters(result: dict) -> list[str]:
    return [d["name"] for d in result.get("destinations", [])]


VS_MATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: hdr
    match: [{headers: {x-prefix: {prefix: ab}}}, {queryParams: {q: {exact: "1"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: nocase
    match: [{uri: {exact: /case}, ignoreUriCase: true}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: port
    match: [{port: 9090}]
    route: [{destination: {host: echo, subset: v2, port: {number: 9090}}}]
  - name: labels
    match: [{sourceLabels: {version: v2}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
"""


@pytest.mark.parametrize(
    ("url", "kw", "cluster", "rule", "match"),
    [
        ("http://echo/exact", {}, f"outbound|80|v2|{ECHO}", 0, 0),
        ("http://echo/exact/more", {}, f"outbound|80|v1|{ECHO}", 5, None),
        ("http://echo/", {"headers": [("x-prefix", "abc")]}, f"outbound|80|v2|{ECHO}", 1, 0),
        ("http://echo/?q=1", {}, f"outbound|80|v2|{ECHO}", 1, 1),
        ("http://echo/?q=12", {}, f"outbound|80|v1|{ECHO}", 5, None),
        ("http://echo/CaSe", {}, f"outbound|80|v2|{ECHO}", 2, 0),
        ("http://echo:9090/", {}, f"outbound|9090|v2|{ECHO}", 3, 0),
    ],
)
def test_matched_rule_cluster_and_subset(
    url: str, kw: dict, cluster: str, rule: int, match: int | None
) -> None:
    result = run(DR_SUBSETS, VS_MATCHES, url=url, **kw)
    assert clusters(result) == [cluster]
    assert result["virtualService"]["name"] == "echo"
    assert result["virtualService"]["ruleIndex"] == rule
    assert result["virtualService"].get("matchIndex") == match
    assert result["expected"]["status"] is None and result["destinations"][0]["exists"]


def test_source_labels_depend_on_the_proxy() -> None:
    assert clusters(run(DR_SUBSETS, VS_MATCHES, frm="client-v2-0")) == [f"outbound|80|v2|{ECHO}"]
    result = run(DR_SUBSETS, VS_MATCHES, frm="client-v2-0")
    assert result["virtualService"]["ruleIndex"] == 4


def test_endpoints_of_the_subset_with_instances() -> None:
    result = run(DR_SUBSETS, VS_MATCHES, url="http://echo/")
    d = result["destinations"][0]
    assert d["subset"] == "v1" and d["destinationRule"] == "default/echo"
    assert sorted(e["instance"] for e in d["endpoints"]) == ["echo-v1-0", "echo-v1-1"]
    assert d["healthy"] == 2 and d["loadBalancer"] == "LEAST_REQUEST"


def test_default_route_has_istios_default_retries_and_no_timeout() -> None:
    result = run()
    assert result["virtualService"] is None and result["route"]["name"] == "default"
    assert clusters(result) == [f"outbound|80||{ECHO}"]
    assert result["retries"]["attempts"] == 2
    assert result["retries"]["retryOn"] == rt.DEFAULT_RETRY_ON
    assert "no VirtualService" in result["retries"]["note"]
    assert result["timeout"]["value"] == "0s"
    assert len(result["destinations"][0]["endpoints"]) == 3


def test_no_route_is_404_nr_with_the_routes_tried() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /a}}]
        route: [{destination: {host: echo, subset: v2}}]
    """
    result = run(DR_SUBSETS, vs, url="http://echo/elsewhere")
    assert result["route"] is None
    assert (result["expected"]["status"], result["expected"]["flags"]) == (404, "NR")
    assert result["notMatched"][0]["why"].startswith("path prefix '/a'")
    text = rt.render_text(result)
    assert "404 NR" in text and "skipped route" in text


def test_undefined_subset_is_503_nc_and_empty_subset_503_uh() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /missing}}]
        route: [{destination: {host: echo, subset: v9}}]
      - match: [{uri: {prefix: /empty}}]
        route: [{destination: {host: echo, subset: v3}}]
      - route: [{destination: {host: echo, subset: v1}}]
    """
    nc = run(DR_SUBSETS, vs, url="http://echo/missing")
    assert (nc["expected"]["status"], nc["expected"]["flags"]) == (503, "NC")
    assert not nc["destinations"][0]["exists"]
    uh = run(DR_SUBSETS, vs, url="http://echo/empty")
    assert (uh["expected"]["status"], uh["expected"]["flags"]) == (503, "UH")
    assert "subset 'v3'" in uh["expected"]["reason"]


def test_weighted_split_fault_mirror_rewrite_retries() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /api}}]
        rewrite: {uri: /v2, authority: backend}
        route:
        - {destination: {host: echo, subset: v1}, weight: 80}
        - {destination: {host: echo, subset: v2}, weight: 20}
        retries: {attempts: 5, perTryTimeout: 1s, retryOn: "5xx,503"}
        timeout: 3s
        fault: {abort: {httpStatus: 418, percentage: {value: 10}}, delay: {fixedDelay: 2s, percentage: {value: 50}}}
        mirror: {host: echo, subset: v2}
        mirrorPercentage: {value: 25}
    """
    result = run(DR_SUBSETS, vs, url="http://echo/api/x?y=1")
    assert [(d["subset"], d["percent"]) for d in result["destinations"]] == [("v1", 80.0), ("v2", 20.0)]
    assert result["timeout"]["value"] == "3s"
    assert result["retries"]["attempts"] == 5 and result["retries"]["perTryTimeout"] == "1s"
    assert result["retries"]["retriableStatusCodes"] == [503]
    assert result["fault"]["abort"] == {"percent": 10.0, "httpStatus": 418}
    assert result["fault"]["delay"]["percent"] == 50.0
    assert result["mirrors"][0]["subset"] == "v2" and result["mirrors"][0]["percent"] == 25.0
    assert result["rewrite"] == {"path": "/v2/x?y=1", "authority": "backend"}


def test_full_abort_predicts_the_status() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http:
      - route: [{destination: {host: echo}}]
        fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    """
    result = run(vs)
    assert (result["expected"]["status"], result["expected"]["flags"]) == (500, "FI")


def test_redirect_and_direct_response() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /old}}]
        redirect: {uri: /new, authority: other.example.com, redirectCode: 302}
      - match: [{uri: {prefix: /pre}}]
        redirect: {prefixRewrite: /post}
      - directResponse: {status: 503, body: {string: down}}
    """
    red = run(vs, url="http://echo/old/x?q=1")
    assert red["redirect"] == {"status": 302, "location": "http://other.example.com/new?q=1"}
    pre = run(vs, url="http://echo/pre/x")
    assert pre["redirect"] == {"status": 301, "location": "http://echo/post/x"}
    direct = run(vs, url="http://echo/z")
    assert direct["directResponse"] == {"status": 503, "body": "down"}
    assert direct["expected"]["status"] == 503


def test_hash_policy_from_the_destination_rule() -> None:
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo, namespace: default}
    spec:
      host: echo
      trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
    """
    result = run(dr)
    assert result["hashPolicy"] == ["header x-user"]
    assert result["destinations"][0]["loadBalancer"] == "RING_HASH"


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ("", "ISTIO_MUTUAL to endpoints with a sidecar (auto mTLS)"),
        ("tls: {mode: SIMPLE}", "SIMPLE"),
        ("tls: {mode: DISABLE}", "plaintext"),
    ],
)
def test_upstream_proxy_protocol_is_shown_with_the_tls_it_wraps(tls: str, expected: str) -> None:
    dr = f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: echo, namespace: default}}
    spec:
      host: echo
      trafficPolicy: {{proxyProtocol: {{version: V2}}, {tls}}}
    """
    result = run(dr.replace(", }", "}"))
    (dest,) = result["destinations"]
    assert (dest["tls"], dest["proxyProtocol"]) == (expected, "V2")
    assert f"tls {expected}; PROXY protocol V2 first" in rt.render_text(result)


def test_unknown_host_passes_through_and_registry_only_blocks() -> None:
    result = run(url="http://nosuch.example.org/")
    assert clusters(result) == ["PassthroughCluster"]
    mc = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
    """
    blocked = run(mc, url="http://nosuch.example.org/")
    assert blocked["expected"]["status"] == 502 and "REGISTRY_ONLY" in blocked["expected"]["reason"]


def test_gateway_table_by_port_and_host() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: gw-a, namespace: default}
    spec:
      hosts: [a.example.com]
      gateways: [gw]
      http:
      - match: [{uri: {prefix: /one}}]
        route: [{destination: {host: echo, subset: v2}}]
    """
    snap, store = snapshot(DR_SUBSETS, vs)
    config = config_for(snap, "istio-ingressgateway-0", "istio-system")
    found = rt.gateway_route_table(config, [8080, 80])
    assert found is not None and found[0] == "http.8080"
    ok = rt.evaluate(config, "http.8080", request_from_url("http://a.example.com:8080/one"))
    assert clusters(ok) == [f"outbound|80|v2|{ECHO}"]
    assert ok["virtualHost"]["name"] == "a.example.com:80"
    nr = rt.evaluate(config, "http.8080", request_from_url("http://b.example.com/"))
    assert (nr["expected"]["status"], nr["expected"]["flags"]) == (404, "NR")


def test_candidate_snapshot_adds_and_replaces_resources() -> None:
    from isthmus.api import loader

    snap, store = snapshot(DR_SUBSETS)
    from debug_helpers import pod

    from isthmus.debug.describe import proxy_of

    vs = loader.load_text(
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: v2}}]
""",
        "candidate.yaml",
    )
    cand = candidate_snapshot("1", store.list(), PODS, vs)
    config = ProxyConfig.from_generated(generate_proxy_config(cand, proxy_of(pod("client-0"))))
    result = rt.evaluate(config, "http_proxy", request_from_url("http://echo/"))
    assert result["source"] == "candidate"
    assert clusters(result) == [f"outbound|80|v2|{ECHO}"]
    # the running config is untouched
    held = rt.evaluate(config_for(snap), "http_proxy", request_from_url("http://echo/"))
    assert clusters(held) == [f"outbound|80||{ECHO}"]


def test_candidate_snapshot_holds_file_jwks_keys(tmp_path: Path) -> None:
    """A route preview's candidate snapshot holds the key sets the running snapshot holds, plus the
    file:// ones only the candidate names, read as the JWKS resolver would read them once applied (the
    generators read no file); a new http(s) jwksUri stays unfetched (fetching is the resolver's)."""
    from isthmus.api import loader
    from isthmus.model.jwks import JwksEntry

    _, store = snapshot()
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": []}')
    held_uri, new_uri, http_uri = f"file://{tmp_path}/held.json", f"file://{path}", "https://idp.example/jwks"
    ra = loader.load_text(
        f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ra, namespace: default}}
spec:
  jwtRules:
  - {{issuer: one, jwksUri: "{held_uri}"}}
  - {{issuer: two, jwksUri: "{new_uri}"}}
  - {{issuer: three, jwksUri: "{http_uri}"}}
""",
        "candidate.yaml",
    )
    held = {("one", held_uri): JwksEntry(keys="held keys", uri=held_uri)}
    cand = candidate_snapshot("1", store.list(), PODS, ra, jwks=held)
    assert cand.jwks == {**held, ("two", new_uri): JwksEntry(keys='{"keys": []}', uri=new_uri)}


def test_missing_route_table_is_an_error() -> None:
    snap, _ = snapshot()
    with pytest.raises(rt.RouteTestError):
        rt.evaluate(config_for(snap), "http.80", request_from_url("http://echo/"))


def _bearer(claims: dict) -> tuple[str, str]:
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    token = f"{b64(b'{}')}.{b64(json.dumps(claims).encode())}.sig"
    return ("Authorization", f"Bearer {token}")


def test_gateway_jwt_claim_routes_read_the_bearer_token() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: gw-claims, namespace: default}
    spec:
      hosts: [a.example.com]
      gateways: [gw]
      http:
      - name: dev
        match: [{headers: {'@request.auth.claims.group': {exact: dev}}}]
        route: [{destination: {host: echo, subset: v2}}]
      - name: rest
        route: [{destination: {host: echo, subset: v1}}]
    """
    snap, store = snapshot(DR_SUBSETS, vs)
    config = config_for(snap, "istio-ingressgateway-0", "istio-system")
    ctx = context(store, "istio-ingressgateway-0", "istio-system")

    def go(*headers: tuple[str, str]) -> dict:
        req = request_from_url("http://a.example.com:8080/", None, list(headers))
        return rt.evaluate(config, "http.8080", req, ctx)

    dev = go(_bearer({"group": "dev"}))
    assert clusters(dev) == [f"outbound|80|v2|{ECHO}"]
    assert dev["route"]["match"] == "path prefix '/', JWT claim group exact 'dev'"
    assert dev["virtualService"]["ruleIndex"] == 0
    assert dev["request"]["jwtClaims"] == {"group": "dev"}
    # A list claim matches when one element does.
    assert clusters(go(_bearer({"group": ["qa", "dev"]}))) == [f"outbound|80|v2|{ECHO}"]
    for other in (go(_bearer({"group": "qa"})), go(), go(("Authorization", "Bearer not-a-jwt"))):
        assert clusters(other) == [f"outbound|80|v1|{ECHO}"]
    (skipped,) = go()["notMatched"]
    assert skipped["why"].startswith("JWT claim group exact 'dev' fails (value missing: no JWT payload")
    assert 'value "qa"' in go(_bearer({"group": "qa"}))["notMatched"][0]["why"]
    assert "JWT claim group" in rt.render_text(dev)


def test_destination_rule_tunnel_is_shown_as_a_forwarded_connect() -> None:
    """A CONNECT to a TCP port whose DestinationRule has `tunnel`: the sidecar does not end it but forwards
    it to the rule's host (a forward proxy) naming the target; without the rule it ends the CONNECT."""
    se = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: proxy, namespace: default}
    spec:
      hosts: [proxy.example.com]
      location: MESH_EXTERNAL
      resolution: DNS
      ports: [{name: tcp, number: 3128, protocol: TCP}]
    """
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: proxy, namespace: default}
    spec:
      host: proxy.example.com
      trafficPolicy: {tunnel: {targetHost: db.example.com, targetPort: 5432}}
    """
    plain = run(se, url="tcp://proxy.example.com:3128")
    assert plain["tunnel"] is True and "CONNECT: a TCP tunnel to the cluster" in rt.render_text(plain)
    result = run(se, dr, url="tcp://proxy.example.com:3128")
    assert clusters(result) == ["outbound|3128||proxy.example.com"]
    assert result["tunnel"] == "forwarded" and result["rewrite"] == {"authority": "db.example.com:5432"}
    assert "CONNECT forwarded to the cluster (a forward proxy), naming db.example.com:5432" in rt.render_text(
        result
    )


@pytest.mark.parametrize(
    ("normalization", "path", "rule"),
    [
        (None, "/x/../exact", 0),  # istiod's DEFAULT: normalize_path
        ("NONE", "/x/../exact", 5),  # the path reaches the routes as sent
        ("BASE", "//exact", 5),
        ("MERGE_SLASHES", "//exact", 0),
        ("MERGE_SLASHES", "/x%2f..%2fexact", 5),
        ("DECODE_AND_MERGE_SLASHES", "/x%2f..%2fexact", 0),
    ],
)
def test_path_normalized_as_the_serving_hcm_does(normalization: str | None, path: str, rule: int) -> None:
    """MeshConfig pathNormalization: routes match the path the proxy's HCM made of it."""
    mesh = (
        ""
        if normalization is None
        else f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec: {{pathNormalization: {{normalization: {normalization}}}}}
    """
    )
    result = run(DR_SUBSETS, VS_MATCHES, *([mesh] if mesh else []), url=f"http://echo{path}")
    assert result["virtualService"]["ruleIndex"] == rule


HEADLESS = """
apiVersion: v1
kind: Service
metadata: {name: hl, namespace: default}
spec:
  clusterIP: None
  selector: {app: echo}
  ports: [{name: tcp, port: 7000}, {name: http-x, port: 8080}]
"""
HEADLESS_HOST = "hl.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("url", "port", "pod"),
    [
        ("tcp://127.9.0.3:7000", 7000, "echo-v1-1"),  # a tunnel to a pod's IP
        ("http://127.9.0.4:8080/", 8080, "echo-v2-0"),  # a request to a pod's IP
        ("http://echo-v1-0.hl:8080/", 8080, "echo-v1-0"),  # a request to a pod by name
    ],
)
def test_a_headless_service_pod_named_by_the_authority_is_the_one_endpoint(
    url: str, port: int, pod: str
) -> None:
    """The route pins the pod (`xds.gen.headless`): the explanation names it and its endpoint alone."""
    result = run(HEADLESS, url=url)
    assert result["virtualHost"]["name"] == f"{HEADLESS_HOST}:{port}"
    (dest,) = result["destinations"]
    assert dest["name"] == f"outbound|{port}||{HEADLESS_HOST}" and dest["pod"] == pod
    assert [e["instance"] for e in dest["endpoints"]] == [pod] and dest["total"] == 1
    assert result["expected"]["details"] == "via_upstream"
    assert f"pod {pod} alone" in rt.render_text(result)


def test_an_ip_of_no_pod_of_the_headless_service_passes_through() -> None:
    result = run(HEADLESS, url="tcp://127.9.0.9:7000")
    assert result["virtualHost"]["name"] == "allow_any" and clusters(result) == ["PassthroughCluster"]
