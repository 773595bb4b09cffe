"""Routing end to end: real Envoy sidecars and gateway, the echo app, Istio's semantics.

Every test applies its own config through the API (waiting for every proxy to ACK it), checks the
traffic, and checks the negative case beside it.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied, echo_body
from tests.e2e.routing_cases import (
    DR_SUBSETS,
    GW_A_ONE_TO_V2,
    GW_A_REST_TO_V1,
    GW_OTHER_NS_TO_V2,
    VS_FIRST_MATCH_WINS,
    VS_HEADER_QUERY_METHOD_AUTHORITY_SCHEME,
    VS_PORT_SOURCE_LABELS_NAMESPACE,
    VS_URI_MATCHES,
    VS_WEIGHTED_80_20,
    VS_WITHOUT_HEADERS_AND_PRESENT,
)

pytestmark = pytest.mark.e2e


def version_of(
    mesh: MeshProcess, url: str, source: str = "client", namespace: str = "default", **kw: object
) -> str:
    resp = mesh.curl(source, url, namespace=namespace, **kw)  # type: ignore[arg-type]
    return echo_body(resp)["version"]


def versions(mesh: MeshProcess, url: str, n: int = 40, source: str = "client", **kw: object) -> Counter[str]:
    result = mesh.load(source, url, n, **kw)  # type: ignore[arg-type]
    assert result.codes == {"200": n}, result.to_dict()
    return Counter(result.versions)


def test_default_route_reaches_every_instance_of_every_port(routing_mesh: MeshProcess) -> None:
    result = routing_mesh.load("client", "http://echo/", 60)
    assert result.codes == {"200": 60}, result.to_dict()["responses"][:2]
    assert set(result.instances) == {"echo-v1-0", "echo-v1-1", "echo-v2-0"}
    body = echo_body(routing_mesh.curl("client", "http://echo.default.svc.cluster.local:9090/x?y=1"))
    assert body["port"] == 9090 and body["path"] == "/x?y=1"
    # A host the registry does not know, under ALLOW_ANY, is passed through and fails to resolve.
    assert routing_mesh.curl("client", "http://nosuch.default.svc.cluster.local/").status == 503


def test_uri_exact_prefix_regex_and_ignore_case(routing_mesh: MeshProcess) -> None:
    vs = VS_URI_MATCHES
    with applied(routing_mesh, DR_SUBSETS, vs):
        v = lambda path: version_of(routing_mesh, "http://echo" + path)  # noqa: E731
        assert v("/exact") == "v2"
        assert v("/exact/more") == "v1"
        assert v("/EXACT") == "v1"  # case-sensitive by default
        assert v("/prefix/x") == "v2"
        assert v("/pr") == "v1"
        assert v("/re42") == "v2"
        assert v("/re") == "v1"
        assert v("/re42x") == "v1"  # the regex must match the whole path
        assert v("/CaSe") == "v2"
        assert v("/case/") == "v1"


def test_header_query_method_authority_scheme_matches(routing_mesh: MeshProcess) -> None:
    vs = VS_HEADER_QUERY_METHOD_AUTHORITY_SCHEME
    with applied(routing_mesh, DR_SUBSETS, vs):
        v = lambda path="/", **kw: version_of(routing_mesh, "http://echo" + path, **kw)  # noqa: E731
        assert v(headers=[("x-exact", "yes")]) == "v2"
        assert v(headers=[("x-exact", "yes!")]) == "v1"
        assert v(headers=[("x-prefix", "abc")]) == "v2"
        assert v(headers=[("x-prefix", "xab")]) == "v1"
        assert v(headers=[("x-regex", "123")]) == "v2"
        assert v(headers=[("x-regex", "1234")]) == "v1"
        assert v("/?q=1") == "v2"
        assert v("/?q=12") == "v1"
        assert v("/?p=prefix") == "v2"
        assert v("/?r=aaab") == "v2"
        assert v("/?r=b") == "v1"
        assert v(method="POST", body=b"x") == "v2"
        assert v(method="GET") == "v1"
        assert version_of(routing_mesh, "http://echo.default/auth") == "v2"
        assert v("/auth") == "v1"
        # Plain HTTP through the proxy has scheme http.
        assert v("/scheme") == "v1"


def test_without_headers_and_present_match(routing_mesh: MeshProcess) -> None:
    vs = VS_WITHOUT_HEADERS_AND_PRESENT
    with applied(routing_mesh, DR_SUBSETS, vs):
        v = lambda path="/", **kw: version_of(routing_mesh, "http://echo" + path, **kw)  # noqa: E731
        assert v("/without") == "v2"  # a missing header counts as not equal
        assert v("/without", headers=[("x-skip", "2")]) == "v2"
        assert v("/without", headers=[("x-skip", "1")]) == "v1"
        assert v(headers=[("x-present", "")]) == "v2"  # an empty value is present
        assert v() == "v1"


def test_first_match_wins_and_no_route_is_404(routing_mesh: MeshProcess) -> None:
    vs = VS_FIRST_MATCH_WINS
    with applied(routing_mesh, DR_SUBSETS, vs):
        assert version_of(routing_mesh, "http://echo/a/b") == "v2"
        resp = routing_mesh.curl("client", "http://echo/elsewhere")
        assert resp.status == 404


def test_port_source_labels_and_source_namespace(routing_mesh: MeshProcess) -> None:
    vs = VS_PORT_SOURCE_LABELS_NAMESPACE
    with applied(routing_mesh, DR_SUBSETS, vs):
        assert version_of(routing_mesh, "http://echo:9090/") == "v2"
        assert version_of(routing_mesh, "http://echo/") == "v1"
        assert version_of(routing_mesh, "http://echo/", source="client-v2") == "v2"
        assert version_of(routing_mesh, "http://echo.default/", source="client", namespace="other") == "v2"


def test_weighted_split_within_a_few_percent(routing_mesh: MeshProcess) -> None:
    vs = VS_WEIGHTED_80_20
    with applied(routing_mesh, DR_SUBSETS, vs):
        counts = versions(routing_mesh, "http://echo/", n=1000, concurrency=8)
        assert abs(counts["v1"] - 800) <= 40, counts
        assert abs(counts["v2"] - 200) <= 40, counts


def test_subsets_and_undefined_subset_gives_503(routing_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /missing}}]
        route: [{destination: {host: echo, subset: v9}}]
      - route: [{destination: {host: echo, subset: v1}}]
    """
    with applied(routing_mesh, DR_SUBSETS, vs):
        result = routing_mesh.load("client", "http://echo/", 40)
        assert result.codes == {"200": 40}
        assert set(result.instances) == {"echo-v1-0", "echo-v1-1"}
        assert routing_mesh.curl("client", "http://echo/missing").status == 503


def _lb_dr(policy: str, subset_policy: str = "") -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: echo}}
    spec:
      host: echo
      trafficPolicy: {{loadBalancer: {policy}}}
      subsets:
      - {{name: v1, labels: {{version: v1}}{subset_policy}}}
      - {{name: v2, labels: {{version: v2}}}}
    """


@pytest.mark.parametrize("simple", ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"])
def test_simple_load_balancers_spread_traffic(routing_mesh: MeshProcess, simple: str) -> None:
    with applied(routing_mesh, _lb_dr(f"{{simple: {simple}}}")):
        result = routing_mesh.load("client", "http://echo/", 150, concurrency=1)
        assert result.codes == {"200": 150}
        counts = result.instances
        assert set(counts) == {"echo-v1-0", "echo-v1-1", "echo-v2-0"}
        if simple == "ROUND_ROBIN":
            assert max(counts.values()) - min(counts.values()) <= 3, counts


def test_consistent_hash_pins_a_header_value_to_one_instance(routing_mesh: MeshProcess) -> None:
    with applied(routing_mesh, _lb_dr("{consistentHash: {httpHeaderName: x-user}}")):
        seen: dict[str, set[str]] = {}
        # Where a key lands depends on the pods' addresses (each run has its own subnet): with 3 instances,
        # 6 keys all landed on one of them in ~0.4 % of runs (seen twice); 12 keys make that ~6e-6.
        users = (
            "alice",
            "bob",
            "carol",
            "dave",
            "erin",
            "frank",
            "grace",
            "heidi",
            "ivan",
            "judy",
            "mallory",
            "oscar",
        )
        for user in users:
            result = routing_mesh.load("client", "http://echo/", 8, headers=[("x-user", user)])
            assert result.codes == {"200": 8}
            seen[user] = set(result.instances)
        assert all(len(instances) == 1 for instances in seen.values()), seen
        assert len(set().union(*seen.values())) > 1, seen


@pytest.mark.parametrize(
    ("policy", "kw"),
    [
        ("{consistentHash: {httpCookie: {name: user, ttl: 0s}}}", {"headers": [("cookie", "user=alice")]}),
        ("{consistentHash: {httpQueryParameterName: u}}", {"path": "/?u=alice"}),
        ("{consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}", {}),
        (
            "{consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}}",
            {"headers": [("x-user", "a")]},
        ),
    ],
)
def test_consistent_hash_kinds(routing_mesh: MeshProcess, policy: str, kw: dict) -> None:
    path = kw.pop("path", "/")
    with applied(routing_mesh, _lb_dr(policy)):
        result = routing_mesh.load("client", "http://echo" + path, 20, **kw)
        assert result.codes == {"200": 20}
        assert len(result.instances) == 1, result.instances


def test_subset_load_balancer_overrides_the_top_level(routing_mesh: MeshProcess) -> None:
    dr = _lb_dr(
        "{simple: ROUND_ROBIN}", ", trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"
    )
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /v1}}]
        route: [{destination: {host: echo, subset: v1}}]
      - route: [{destination: {host: echo}}]
    """
    with applied(routing_mesh, dr, vs):
        pinned = routing_mesh.load("client", "http://echo/v1", 20, headers=[("x-user", "zed")])
        assert pinned.codes == {"200": 20}
        assert len(pinned.instances) == 1, pinned.instances
        # The service's default cluster keeps the top-level round robin.
        spread = routing_mesh.load("client", "http://echo/", 30, headers=[("x-user", "zed")], concurrency=1)
        assert len(spread.instances) == 3, spread.instances


def test_http2_port_is_proxied_as_h2(routing_mesh: MeshProcess) -> None:
    body = echo_body(routing_mesh.curl("client", "http://h2:9000/"))
    assert body["protocol"] == "HTTP/2"
    body = echo_body(routing_mesh.curl("client", "http://echo/"))
    assert body["protocol"] == "HTTP/1.1"


def test_gateway_routes_by_host_and_binds_by_namespace(routing_mesh: MeshProcess) -> None:
    docs = [
        DR_SUBSETS,
        GW_A_ONE_TO_V2,
        GW_A_REST_TO_V1,
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: gw-wrong-ns}
        spec:
          hosts: [x.example.org]
          gateways: [gw]
          http:
          - route: [{destination: {host: echo}}]
        """,
        GW_OTHER_NS_TO_V2,
    ]
    with applied(routing_mesh, *docs):
        addr = routing_mesh.gateway_address(80)

        def get(host: str, path: str = "/") -> int | str:
            resp = sync.request(f"http://{addr}{path}", headers=[("Host", host)])
            return json.loads(resp.body)["version"] if resp.status == 200 else resp.status

        # Two VirtualServices for one host are merged on a gateway, catch-alls last.
        assert get("a.example.com", "/one") == "v2"
        assert get("a.example.com", "/two") == "v1"
        assert get("b.example.com") == 404
        assert get("x.example.org") == 404  # that server only admits VSes of namespace other
        assert get("y.example.org") == "v2"
        # Envoy's wildcard covers several labels, as in Istio: *.example.com matches x.y.example.com.
        assert get("x.y.example.com") == 404
        # A gateway-bound VS does not apply to sidecars (no "mesh" gateway).
        assert versions(routing_mesh, "http://echo/", 30).keys() == {"v1", "v2"}


def test_virtual_service_bound_to_gateway_and_mesh(routing_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: both}
    spec:
      hosts: [echo, c.example.com]
      gateways: [gw, mesh]
      http:
      - route: [{destination: {host: echo, subset: v2}}]
    """
    with applied(routing_mesh, DR_SUBSETS, vs):
        addr = routing_mesh.gateway_address(80)
        resp = sync.request(f"http://{addr}/", headers=[("Host", "c.example.com")])
        assert echo_body(resp)["version"] == "v2"
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v2": 10})


def test_export_to_limits_virtual_services_and_service_entries(routing_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo-private}
    spec:
      hosts: [echo.default.svc.cluster.local]
      exportTo: ["."]
      http:
      - route: [{destination: {host: echo, subset: v2}}]
    """
    se = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: private-se}
    spec:
      hosts: [private.example.internal]
      exportTo: ["."]
      location: MESH_INTERNAL
      ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
      resolution: STATIC
      workloadSelector: {labels: {app: echo, version: v2}}
    """
    with applied(routing_mesh, DR_SUBSETS, vs, se):
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v2": 10})
        other = Counter(
            echo_body(routing_mesh.curl("client", "http://echo.default/", namespace="other"))["version"]
            for _ in range(20)
        )
        assert other.keys() == {"v1", "v2"}
        body = echo_body(routing_mesh.curl("client", "http://private.example.internal/"))
        assert body["version"] == "v2" and body["port"] == 8080
        assert (
            routing_mesh.curl("client", "http://private.example.internal/", namespace="other").status == 503
        )


def test_sidecar_egress_scoping_and_registry_only(routing_mesh: MeshProcess) -> None:
    sidecar = """
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: other}
    spec:
      egress:
      - hosts: ["./*"]
      outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """
    assert routing_mesh.curl("client", "http://echo.default/", namespace="other").status == 200
    with applied(routing_mesh, sidecar):
        resp = routing_mesh.curl("client", "http://echo.default/", namespace="other")
        assert resp.status == 502  # block_all
        # The default namespace has no Sidecar: unaffected.
        assert routing_mesh.curl("client", "http://echo/").status == 200


@pytest.fixture
def external_echo() -> Iterator[int]:
    """A plain process outside the mesh, on loopback."""
    from isthmus.echo.testing import EchoProcess, free_port

    port = free_port()
    proc = EchoProcess(
        ports={port: port}, workload="external", instance="external-0", labels={"version": "ext"}
    )
    proc.start()
    try:
        yield port
    finally:
        proc.stop()


def test_service_entries_and_outbound_traffic_policy(routing_mesh: MeshProcess, external_echo: int) -> None:
    port = external_echo
    ses = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: ext-static}}
    spec:
      hosts: [ext.example.com]
      location: MESH_EXTERNAL
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: ext-dns}}
    spec:
      hosts: [ext-dns.example.com]
      location: MESH_EXTERNAL
      ports: [{{number: 8000, name: http, protocol: HTTP, targetPort: {port}}}]
      resolution: DNS
      endpoints: [{{address: localhost}}]
    """
    registry_only = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec:
      outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """
    direct = f"http://127.0.0.1:{port}/"
    # ALLOW_ANY (the default): an address outside the registry passes through.
    assert echo_body(routing_mesh.curl("client", direct))["workload"] == "external"
    with applied(routing_mesh, ses):
        assert echo_body(routing_mesh.curl("client", "http://ext.example.com/a"))["workload"] == "external"
        assert (
            echo_body(routing_mesh.curl("client", "http://ext-dns.example.com:8000/"))["workload"]
            == "external"
        )
        with applied(routing_mesh, registry_only):
            assert routing_mesh.curl("client", direct).status == 502
            assert routing_mesh.curl("client", "http://ext.example.com/").status == 200
    assert routing_mesh.curl("client", direct).status == 200


def test_edit_file_moves_traffic_within_2s_without_failures(routing_mesh: MeshProcess) -> None:
    import time

    path = routing_mesh.config_dir / "zz-live-vs.yaml"

    def write(subset: str) -> None:
        path.write_text(
            textwrap.dedent(DR_SUBSETS)
            + textwrap.dedent(
                f"""
                ---
                apiVersion: networking.istio.io/v1
                kind: VirtualService
                metadata: {{name: echo}}
                spec:
                  hosts: [echo]
                  http:
                  - route: [{{destination: {{host: echo, subset: {subset}}}}}]
                """
            )
        )

    write("v1")
    try:
        routing_mesh.wait_for_resource("VirtualService", "echo", lambda r: "v1" in json.dumps(r["spec"]))
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v1": 10})
        with sync.LoadGenerator(
            "http://echo/", proxy=routing_mesh.proxy_url("client"), concurrency=2, qps=100
        ) as gen:
            gen.wait_for(20)
            started = time.monotonic()
            write("v2")
            while version_of(routing_mesh, "http://echo/") != "v2":
                assert time.monotonic() - started < 5, "the edit did not take effect"
                time.sleep(0.02)
            moved_after = time.monotonic() - started
            gen.wait_for(gen.completed + 20)
        result = gen.result
        assert result is not None
        assert result.all_ok, result.to_dict()
        assert set(result.versions) == {"v1", "v2"}
        assert moved_after < 2.0, moved_after
        print(f"edit-to-serving: {moved_after * 1000:.0f} ms")
    finally:
        path.unlink()
        routing_mesh.wait_for_absent("VirtualService", "echo")


def test_broken_file_is_refused_and_the_mesh_keeps_its_last_good_config(routing_mesh: MeshProcess) -> None:
    import time

    path = routing_mesh.config_dir / "zz-broken.yaml"
    good = textwrap.dedent(DR_SUBSETS) + textwrap.dedent(
        """
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: echo}
        spec:
          hosts: [echo]
          http:
          - route: [{destination: {host: echo, subset: v2}}]
        """
    )
    path.write_text(good)
    try:
        routing_mesh.wait_for_resource("VirtualService", "echo", lambda r: "v2" in json.dumps(r["spec"]))
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v2": 10})
        path.write_text(good.replace("subset: v2}}]", "subset: v1}}, weight: 50}]\n  bad: [unclosed"))
        deadline = time.monotonic() + 10
        while not routing_mesh.status()["configErrors"]:
            assert time.monotonic() < deadline, "the broken file was not reported"
            time.sleep(0.05)
        errors = routing_mesh.status()["configErrors"]
        assert any("zz-broken.yaml" in k for k in errors), errors
        assert any(":" in e and "zz-broken.yaml" in e for errs in errors.values() for e in errs), errors
        # Still the last good config.
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v2": 10})
        # An invalid resource (schema) is refused with file, line, resource and field.
        path.write_text(good.replace("hosts: [echo]", "hosts: [echo]\n  htpp: []"))
        deadline = time.monotonic() + 10
        while True:
            errs = [e for es in routing_mesh.status()["configErrors"].values() for e in es]
            if any("htpp" in e for e in errs):
                break
            assert time.monotonic() < deadline, errs
            time.sleep(0.05)
        assert any("VirtualService default/echo" in e and "htpp" in e for e in errs), errs
        assert versions(routing_mesh, "http://echo/", 10) == Counter({"v2": 10})
    finally:
        path.unlink()
        deadline = time.monotonic() + 10
        while routing_mesh.status()["configErrors"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
