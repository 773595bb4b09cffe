"""`isthmus route test` agrees with real traffic, on the routing cases of test_routing.py.

The mesh is tests/e2e/meshes/routing (its own instance for this module). Each case applies the same
DestinationRule and VirtualService as its routing test, asks `route test` (the CLI, in-process, JSON
output) where requests would go, sends the same requests through the real sidecar or gateway, and checks
that the answer agrees: the status for 404 NR / 503 NC / 503 UH, otherwise that the instance and version
that served the request are among the endpoints of the predicted cluster(s), and the split for weights.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli.main import cli
from isthmus.client import sync
from tests.e2e.harness import MeshProcess, applied
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

ECHO = "echo.default.svc.cluster.local"


def route_test(
    mesh: MeshProcess, url: str, *args: str, frm: str = "client", ns: str = "default"
) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli,
        [
            "route",
            "test",
            "--from",
            frm,
            "-n",
            ns,
            url,
            *args,
            "-o",
            "json",
            "--state-dir",
            str(mesh.state_dir),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def header_args(headers: list[tuple[str, str]]) -> list[str]:
    out = []
    for k, v in headers:
        out += ["-H", f"{k}: {v}"]
    return out


def predicted_instances(pred: dict[str, Any]) -> set[str]:
    return {
        ep.get("instance", "")
        for d in pred.get("destinations", [])
        if d.get("percent", 0) > 0
        for ep in d.get("endpoints", [])
    }


def predicted_versions(pred: dict[str, Any]) -> set[str]:
    return {ep.get("version", "") for d in pred.get("destinations", []) for ep in d.get("endpoints", [])}


def agrees(pred: dict[str, Any], status: int, body: bytes) -> None:
    """The real response is what `route test` predicted."""
    expected = pred["expected"]
    if expected["status"] is not None:
        assert status == expected["status"], (status, pred)
        return
    assert status == 200, (status, body[:200], pred["expected"])
    served = json.loads(body)
    assert served["instance"] in predicted_instances(pred), (served["instance"], pred["destinations"])
    assert served["version"] in predicted_versions(pred)


def check(mesh: MeshProcess, url: str, *, frm: str = "client", ns: str = "default", method: str = "GET",
          headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:  # fmt: skip
    headers = headers or []
    args = header_args(headers) + (["-X", method] if method != "GET" else [])
    pred = route_test(mesh, url, *args, frm=frm, ns=ns)
    kw: dict[str, Any] = {"headers": headers, "method": method}
    if method == "POST":
        kw["body"] = b"x"
    resp = mesh.curl(frm, url, namespace=ns, **kw)
    agrees(pred, resp.status, resp.body)
    return pred


def subset_of(pred: dict[str, Any]) -> str | None:
    (d,) = pred["destinations"]
    return d.get("subset") or None


def test_default_route_without_virtual_service(routing_mesh: MeshProcess) -> None:
    pred = check(routing_mesh, "http://echo/")
    (d,) = pred["destinations"]
    assert d["name"] == f"outbound|80||{ECHO}" and pred["virtualService"] is None
    assert predicted_instances(pred) == {"echo-v1-0", "echo-v1-1", "echo-v2-0"}
    assert pred["retries"]["attempts"] == 2 and "Istio's default" in pred["retries"]["note"]
    seen = Counter(
        json.loads(routing_mesh.curl("client", "http://echo/").body)["instance"] for _ in range(12)
    )
    assert set(seen) <= predicted_instances(pred)
    check(routing_mesh, "http://echo.default.svc.cluster.local:9090/x?y=1")


def test_uri_exact_prefix_regex_and_ignore_case(routing_mesh: MeshProcess) -> None:
    vs = VS_URI_MATCHES
    with applied(routing_mesh, DR_SUBSETS, vs):
        expect = {
            "/exact": ("v2", 0), "/exact/more": ("v1", 4), "/EXACT": ("v1", 4), "/prefix/x": ("v2", 1),
            "/pr": ("v1", 4), "/re42": ("v2", 2), "/re": ("v1", 4), "/re42x": ("v1", 4), "/CaSe": ("v2", 3),
            "/case/": ("v1", 4),
        }  # fmt: skip
        for path, (subset, rule) in expect.items():
            pred = check(routing_mesh, "http://echo" + path)
            assert subset_of(pred) == subset, path
            assert pred["virtualService"]["ruleIndex"] == rule, (path, pred["virtualService"])


def test_header_query_method_authority_scheme_matches(routing_mesh: MeshProcess) -> None:
    vs = VS_HEADER_QUERY_METHOD_AUTHORITY_SCHEME
    with applied(routing_mesh, DR_SUBSETS, vs):
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("/", {"headers": [("x-exact", "yes")]}, "v2"),
            ("/", {"headers": [("x-exact", "yes!")]}, "v1"),
            ("/", {"headers": [("x-prefix", "abc")]}, "v2"),
            ("/", {"headers": [("x-prefix", "xab")]}, "v1"),
            ("/", {"headers": [("x-regex", "123")]}, "v2"),
            ("/", {"headers": [("x-regex", "1234")]}, "v1"),
            ("/?q=1", {}, "v2"),
            ("/?q=12", {}, "v1"),
            ("/?p=prefix", {}, "v2"),
            ("/?r=aaab", {}, "v2"),
            ("/?r=b", {}, "v1"),
            ("/", {"method": "POST"}, "v2"),
            ("/auth", {}, "v1"),
            ("/scheme", {}, "v1"),
        ]
        for path, kw, subset in cases:
            assert subset_of(check(routing_mesh, "http://echo" + path, **kw)) == subset, (path, kw)
        assert subset_of(check(routing_mesh, "http://echo.default/auth")) == "v2"


def test_without_headers_and_present_match(routing_mesh: MeshProcess) -> None:
    vs = VS_WITHOUT_HEADERS_AND_PRESENT
    with applied(routing_mesh, DR_SUBSETS, vs):
        for path, headers, subset in [
            ("/without", [], "v2"),
            ("/without", [("x-skip", "2")], "v2"),
            ("/without", [("x-skip", "1")], "v1"),
            ("/", [("x-present", "")], "v2"),
            ("/", [], "v1"),
        ]:
            assert subset_of(check(routing_mesh, "http://echo" + path, headers=headers)) == subset, (
                path,
                headers,
            )


def test_first_match_wins_and_no_route_is_404(routing_mesh: MeshProcess) -> None:
    vs = VS_FIRST_MATCH_WINS
    with applied(routing_mesh, DR_SUBSETS, vs):
        pred = check(routing_mesh, "http://echo/a/b")
        assert subset_of(pred) == "v2" and pred["virtualService"]["ruleIndex"] == 0
        nr = check(routing_mesh, "http://echo/elsewhere")
        assert (nr["expected"]["status"], nr["expected"]["flags"]) == (404, "NR")
        assert len(nr["notMatched"]) == 2


def test_port_source_labels_and_source_namespace(routing_mesh: MeshProcess) -> None:
    vs = VS_PORT_SOURCE_LABELS_NAMESPACE
    with applied(routing_mesh, DR_SUBSETS, vs):
        pred = check(routing_mesh, "http://echo:9090/")
        assert pred["destinations"][0]["name"] == f"outbound|9090|v2|{ECHO}"
        assert subset_of(check(routing_mesh, "http://echo/")) == "v1"
        pred = check(routing_mesh, "http://echo/", frm="client-v2")
        assert subset_of(pred) == "v2" and pred["virtualService"]["ruleIndex"] == 1
        pred = check(routing_mesh, "http://echo.default/", ns="other")
        assert subset_of(pred) == "v2" and pred["virtualService"]["ruleIndex"] == 2


def test_weighted_split_matches_the_measured_split(routing_mesh: MeshProcess) -> None:
    vs = VS_WEIGHTED_80_20
    with applied(routing_mesh, DR_SUBSETS, vs):
        pred = route_test(routing_mesh, "http://echo/")
        split = {d["subset"]: d["percent"] for d in pred["destinations"]}
        assert split == {"v1": 80.0, "v2": 20.0}
        result = routing_mesh.load("client", "http://echo/", 500, concurrency=8)
        assert result.codes == {"200": 500}
        measured = Counter(result.versions)
        for subset, percent in split.items():
            assert abs(measured[subset] / 5 - percent) <= 6, (measured, split)


def test_undefined_subset_is_nc_and_empty_subset_is_uh(routing_mesh: MeshProcess) -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /missing}}]
        route: [{destination: {host: echo, subset: v9}}]
      - match: [{uri: {prefix: /empty}}]
        route: [{destination: {host: echo, subset: v3}}]
      - route: [{destination: {host: echo, subset: v1}}]
    """
    with applied(routing_mesh, DR_SUBSETS, vs):
        nc = check(routing_mesh, "http://echo/missing")
        assert (nc["expected"]["status"], nc["expected"]["flags"]) == (503, "NC")
        assert nc["destinations"][0]["exists"] is False
        uh = check(routing_mesh, "http://echo/empty")
        assert (uh["expected"]["status"], uh["expected"]["flags"]) == (503, "UH")
        ok = check(routing_mesh, "http://echo/")
        assert predicted_instances(ok) == {"echo-v1-0", "echo-v1-1"}


def test_gateway_routes_by_host(routing_mesh: MeshProcess) -> None:
    docs = [
        DR_SUBSETS,
        GW_A_ONE_TO_V2,
        GW_A_REST_TO_V1,
        GW_OTHER_NS_TO_V2,
    ]
    with applied(routing_mesh, *docs):
        addr = routing_mesh.gateway_address(80)
        for host, path, subset, vs_name in [
            ("a.example.com", "/one", "v2", "gw-a"),
            ("a.example.com", "/two", "v1", "gw-a2"),
            ("y.example.org", "/", "v2", "gw-other"),
            ("b.example.com", "/", None, None),
            ("x.y.example.com", "/", None, None),
        ]:
            pred = route_test(
                routing_mesh, f"http://{host}{path}", frm="istio-ingressgateway", ns="istio-system"
            )
            assert pred["routeConfig"] == "http.8080"
            resp = sync.request(f"http://{addr}{path}", headers=[("Host", host)])
            agrees(pred, resp.status, resp.body)
            if subset is None:
                assert (pred["expected"]["status"], pred["expected"]["flags"]) == (404, "NR")
            else:
                assert subset_of(pred) == subset and pred["virtualService"]["name"] == vs_name


def test_candidate_config_predicts_the_traffic_after_apply(routing_mesh: MeshProcess, tmp_path) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        textwrap.dedent(DR_SUBSETS)
        + textwrap.dedent(
            """
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: echo}
            spec:
              hosts: [echo]
              http:
              - match: [{headers: {end-user: {exact: jason}}}]
                route: [{destination: {host: echo, subset: v2}}]
                timeout: 3s
              - route: [{destination: {host: echo, subset: v1}}]
                retries: {attempts: 4, retryOn: 5xx}
            """
        )
    )
    jason = [("end-user", "jason")]
    before = route_test(routing_mesh, "http://echo/", *header_args(jason), "-f", str(candidate))
    other = route_test(routing_mesh, "http://echo/", "-f", str(candidate))
    assert before["source"] == "candidate" and subset_of(before) == "v2"
    assert before["timeout"]["value"] == "3s"
    assert subset_of(other) == "v1" and other["retries"]["attempts"] == 4
    # the held table still has the default route: the candidate is not applied
    assert before["held"]["destinations"][0]["cluster"] == f"outbound|80||{ECHO}"
    held = route_test(routing_mesh, "http://echo/", *header_args(jason))
    assert held["source"] == "held" and subset_of(held) is None
    with applied(routing_mesh, candidate.read_text()):
        after = check(routing_mesh, "http://echo/", headers=jason)
        assert after["destinations"][0]["name"] == before["destinations"][0]["name"]
        assert after["virtualService"]["ruleIndex"] == before["virtualService"]["ruleIndex"] == 0
        after = check(routing_mesh, "http://echo/")
        assert after["destinations"][0]["name"] == other["destinations"][0]["name"]


def test_text_output_and_errors(routing_mesh: MeshProcess) -> None:
    runner = CliRunner()
    base = ["--state-dir", str(routing_mesh.state_dir)]
    out = runner.invoke(cli, ["route", "test", "--from", "client", "http://echo/", *base])
    assert out.exit_code == 0, out.output
    assert "Destination:" in out.stdout and f"outbound|80||{ECHO}" in out.stdout
    assert "Istio's default retry policy" in out.stdout
    bad = runner.invoke(cli, ["route", "test", "--from", "nosuch", "http://echo/", *base])
    assert bad.exit_code != 0 and "no proxy" in bad.output
