"""DESIGN.md §3/§4 clauses pinned without a mesh: curl headers and summary, get's kinds, --publish, echo flags."""

from __future__ import annotations

import asyncio

import click
import pytest
from click.testing import CliRunner

from isthmus.cli.echo_cmd import echo_command
from isthmus.cli.mesh_cmds import resolve_kind
from isthmus.client.http import Response, parse_header
from isthmus.client.load import Collector
from isthmus.client.mesh import MeshError, find_source_in_status
from isthmus.mesh.publish import Publish, Publisher, PublishError, gateway_target, parse_publish


def test_curl_style_empty_header() -> None:
    # curl spells an empty header 'name;'; both spellings send it with an empty value.
    assert parse_header("x-empty;") == ("x-empty", "")
    assert parse_header("x-empty:") == ("x-empty", "")
    assert parse_header("x-a: b;c") == ("x-a", "b;c")
    with pytest.raises(ValueError):
        parse_header(";")


def test_summary_reports_no_response_under_zero_with_error() -> None:
    c = Collector()
    c.add(Response(status=0, error="connect to 127.0.0.1:9: Connection refused"))
    c.add(Response(status=200, body=b'{"workload": "reviews-v2", "version": "v2"}'))
    d = c.result().to_dict()
    assert d["codes"] == {"0": 1, "200": 1}
    assert d["error"] == "connect to 127.0.0.1:9: Connection refused"
    assert d["responses"][0]["error"] == d["error"]
    assert d["responses"][1]["body"] == {"workload": "reviews-v2", "version": "v2"}
    assert d["servedBy"] == {"reviews-v2": 1} and d["versions"] == {"v2": 1}
    assert set(d["latencyMs"]) == {"p50", "p90", "p99", "max"}
    ok = Collector()
    ok.add(Response(status=200))
    assert "error" not in ok.result().to_dict()


def test_summary_keeps_the_first_100_responses() -> None:
    c = Collector()
    for _ in range(150):
        c.add(Response(status=200, body=b"{}"))
    d = c.result().to_dict()
    assert d["requests"] == 150 and len(d["responses"]) == 100


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("vs", "VirtualService"),
        ("VirtualService", "VirtualService"),
        ("virtualservices", "VirtualService"),
        ("virtualservice.networking.istio.io", "VirtualService"),
        ("destinationrules.networking.istio.io", "DestinationRule"),
        ("serviceentries", "ServiceEntry"),
        ("authorizationpolicies", "AuthorizationPolicy"),
        ("peerauthentications.security.istio.io", "PeerAuthentication"),
        ("telemetries", "Telemetry"),
        ("envoyfilters", "EnvoyFilter"),
        ("workloadgroups", "WorkloadGroup"),
        ("svc", "Service"),
        ("services", "Service"),
        ("workloads", "Workload"),
        ("meshconfig", "MeshConfig"),
        ("gw.networking.istio.io", "Gateway"),
    ],
)
def test_get_resolves_kubectl_kind_spellings(given: str, kind: str) -> None:
    assert resolve_kind(given) == kind


def test_get_refuses_unknown_kind() -> None:
    with pytest.raises(click.BadParameter, match="unknown kind"):
        resolve_kind("virtualsrvice")


def _status_with_gateways() -> dict:
    return {
        "proxies": [
            {"kind": "sidecar", "workload": "a", "listeners": [{"port": 80, "address": "127.1.0.2:80"}]},
            {
                "kind": "gateway",
                "workload": "my-gw",
                "instance": "my-gw-0",
                "state": "Running",
                "listeners": [{"port": 80, "address": "127.1.0.3:8080"}],
            },
            {
                "kind": "gateway",
                "workload": "istio-ingressgateway",
                "instance": "istio-ingressgateway-0",
                "state": "Running",
                "listeners": [
                    {"port": 80, "address": "127.1.0.4:8080"},
                    {"port": 81, "address": "127.1.0.4:8081"},
                ],
            },
        ]
    }


def test_publish_parsing_and_target() -> None:
    assert parse_publish("80", 8000) == Publish(8080, 80)  # shifted like any port below 1024
    assert parse_publish("80", 0) == Publish(80, 80)
    assert parse_publish("9000:80", 8000) == Publish(9000, 80)
    assert parse_publish("127.0.0.1:9000:443", 0) == Publish(9000, 443)
    for bad in ("x", "9000:", "70000", "0"):
        with pytest.raises(PublishError):
            parse_publish(bad, 0)
    status = _status_with_gateways()
    assert gateway_target(status, 80) == ("127.1.0.4", 8080)  # the default gateway first
    assert gateway_target(status, 81) == ("127.1.0.4", 8081)
    assert gateway_target(status, 82) is None


def test_publisher_forwards_to_the_gateway() -> None:
    async def main() -> bytes:
        async def upstream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"gw:" + await r.readline())
            await w.drain()
            w.close()

        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        up_port = up.sockets[0].getsockname()[1]
        status = {
            "proxies": [{"kind": "gateway", "listeners": [{"port": 80, "address": f"127.0.0.1:{up_port}"}]}]
        }
        pub = Publisher([Publish(0, 80)], lambda: status)
        await pub.start()
        port = pub._servers[0].sockets[0].getsockname()[1]
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"hello\n")
            await w.drain()
            answer = await asyncio.wait_for(r.read(), 5)
            w.close()
            return answer
        finally:
            await pub.stop()
            up.close()

    assert asyncio.run(main()) == b"gw:hello\n"


def test_from_accepts_instance_ordinal() -> None:
    status = {
        "proxies": [
            {
                "kind": "sidecar",
                "workload": "r",
                "instance": f"r-{i}",
                "namespace": "default",
                "ip": f"127.1.0.{i}",
            }
            for i in (2, 3)
        ],
        "instances": [],
    }
    for inst in ("3", "r-3"):
        assert find_source_in_status(status, "http://x", "r", inst).ip == "127.1.0.3"
    with pytest.raises(MeshError):
        find_source_in_status(status, "http://x", "r", "9")


def test_echo_fail_rate_accepts_a_percentage(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    monkeypatch.setattr("isthmus.echo.server.run", lambda config: seen.setdefault("rate", config.fail_rate))
    monkeypatch.delenv("ISTHMUS_PORTS", raising=False)
    for given, rate in (("0.25", 0.25), ("50", 0.5), ("1", 1.0)):
        seen.clear()
        result = CliRunner().invoke(
            echo_command, ["--port", "0", "--fail-status", "503", "--fail-rate", given]
        )
        assert result.exit_code == 0, result.output
        assert seen["rate"] == pytest.approx(rate)


def test_istioctl_command_spellings() -> None:

    from isthmus.cli.authz_cmd import x_group
    from isthmus.cli.describe_cmd import describe_command
    from isthmus.cli.main import cli

    ctx = click.Context(cli)
    assert cli.get_command(ctx, "pc") is cli.get_command(ctx, "proxy-config")
    assert cli.get_command(ctx, "ps") is cli.get_command(ctx, "proxy-status")
    assert x_group.get_command(ctx, "describe") is describe_command
    assert CliRunner().invoke(cli, ["pc", "--help"]).exit_code == 0
