"""`isthmus proxy-config` against live Envoys: the tables istioctl would print, from the admin API."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from click.testing import CliRunner

from isthmus.cli.proxy_cmds import proxy_config_command
from tests.e2e.harness import MeshProcess

pytestmark = pytest.mark.e2e

ECHO = "echo.default.svc.cluster.local"
CONFIG = textwrap.dedent(
    """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo}
    spec:
      host: echo
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v2, labels: {version: v2}}
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo}
    spec:
      hosts: [echo]
      http:
      - match: [{uri: {prefix: /v2}}]
        route: [{destination: {host: echo, subset: v2}}]
      - route: [{destination: {host: echo, subset: v1}}]
    """
)


def pc(mesh: MeshProcess, *args: str) -> str:
    res = CliRunner().invoke(proxy_config_command, [*args, "--state-dir", str(mesh.state_dir)])
    assert res.exit_code == 0, res.output
    return res.output


def table(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def test_proxy_config_tables_on_a_live_sidecar(routing_mesh: MeshProcess) -> None:
    mesh = routing_mesh
    mesh.apply(CONFIG)
    try:
        client = mesh.proxy("client")
        proxy = f"{client['instance']}.default"

        clusters = table(pc(mesh, "cluster", proxy, "--fqdn", ECHO, "--port", "80"))
        assert clusters[0] == ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
        assert [ECHO, "80", "v2", "outbound", "EDS", "echo.default"] in clusters
        assert {r[2] for r in clusters[1:]} == {"-", "v1", "v2"}

        # istioctl pads the listener table by a single space.
        listeners = pc(mesh, "listener", proxy, "--port", "15001").splitlines()
        assert [line.split() for line in listeners] == [
            ["ADDRESSES", "PORT", "MATCH", "DESTINATION"],
            [client["ip"], "15001", "ALL", "Route:", "http_proxy"],
        ]

        routes = table(pc(mesh, "route", proxy, "--name", "http_proxy"))
        echo = [r for r in routes if r[1:2] == [f"{ECHO}:80"]]
        assert ["http_proxy", f"{ECHO}:80", "echo, echo.default", "/v2*", "echo.default"] in echo
        # The sidecar (delta xDS) got that table's virtual hosts over VHDS, which Envoy names
        # `http_proxy/<name>`: the tools show Istio's names.
        # `-o json` is istioctl's re-marshalling of the protos: proto3 JSON names, 4-space indent.
        text = pc(mesh, "route", proxy, "--name", "http_proxy", "-o", "json")
        (raw_table,) = json.loads(text)
        assert text.startswith('[\n    {\n        "name": "http_proxy",')
        assert "vhds" in raw_table
        assert f"{ECHO}:80" in {vh["name"] for vh in raw_table["virtualHosts"]}

        v2 = mesh.proxy("echo-v2")
        endpoints = table(pc(mesh, "endpoint", proxy, "--cluster", f"outbound|80|v2|{ECHO}"))
        assert endpoints == [
            ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
            [f"{v2['ip']}:8080", "HEALTHY", "OK", f"outbound|80|v2|{ECHO}"],
        ]

        secrets = {r[0]: r for r in table(pc(mesh, "secret", proxy))[1:]}
        assert secrets["default"][1:4] == ["Cert Chain", "ACTIVE", "true"]
        assert secrets["ROOTCA"][1:4] == ["CA", "ACTIVE", "true"]

        raw = json.loads(
            pc(mesh, "cluster", proxy, "--fqdn", ECHO, "--subset", "v1", "--port", "80", "-o", "json")
        )
        assert [c["name"] for c in raw] == [f"outbound|80|v1|{ECHO}"]
        assert raw[0]["edsClusterConfig"]["edsConfig"]["resourceApiVersion"] == "V3"
        # `all` prints Envoy's dump itself (snake_case), as YAML with go-yaml's sorted keys.
        assert pc(mesh, "all", proxy, "-o", "yaml").startswith("configs:\n- '@type': type.googleapis.com/")
        # Every type the live Envoy sent is known to the installed protos: no raw fallback.
        for kind in ("cluster", "listener", "route", "secret", "bootstrap", "endpoint"):
            out = pc(mesh, kind, proxy, "-o", "yaml")
            assert "printed as Envoy gave it" not in out, kind
    finally:
        mesh.delete(CONFIG)
