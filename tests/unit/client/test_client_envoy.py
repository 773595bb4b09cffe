"""The client against a real Envoy acting as a sidecar's outbound listener (absolute form, CONNECT)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from client_helpers import EnvoyProxy

from isthmus.cli.curl_cmd import curl_command
from isthmus.client import sync

pytestmark = pytest.mark.e2e


def test_absolute_form_through_envoy_keeps_path_and_empty_headers(envoy: EnvoyProxy) -> None:
    r = sync.request(
        "http://reviews:9080/a/../b//c?x=%2F", proxy=envoy.url, headers={"x-empty": "", "x-a": "1"}
    )
    assert r.status == 200, r
    assert r.header("server") == "envoy"
    doc = r.json()
    assert doc["instance"] == "reviews-v2-0"
    assert doc["path"] == "/a/../b//c?x=%2F"
    assert doc["host"] == "reviews:9080"
    assert doc["headers"]["x-empty"] == ""
    assert "x-request-id" in doc["headers"]


def test_host_override_is_the_authority_envoy_routes_by(envoy: EnvoyProxy) -> None:
    doc = sync.request("http://reviews:9080/p", proxy=envoy.url, headers={"Host": "other.example"}).json()
    assert doc["instance"] == "reviews-v1-0"  # the "other.example" virtual host
    assert doc["host"] == "other.example"


def test_connect_tunnel_through_envoy(envoy: EnvoyProxy) -> None:
    r = sync.request("tcp://db.example:9090", proxy=envoy.url, body="hello tunnel")
    assert (r.status, r.text, r.error) == (200, "v2 hello tunnel", None)
    result = CliRunner().invoke(curl_command, ["--proxy", envoy.url, "tcp://db:9090", "-d", "x"])
    assert (result.exit_code, result.stdout) == (0, "v2 x\n")


def test_load_through_envoy_while_it_flows(envoy: EnvoyProxy) -> None:
    with sync.LoadGenerator("http://reviews:9080/", proxy=envoy.url, concurrency=4, qps=300) as gen:
        gen.wait_for(50, timeout=10)
    assert gen.result is not None and gen.result.all_ok, (gen.result.codes, gen.result.errors)
    result = CliRunner().invoke(
        curl_command,
        [
            "--proxy",
            envoy.url,
            "http://reviews:9080/?status=503:50",
            "--count",
            "40",
            "-c",
            "4",
            "-o",
            "json",
        ],
    )
    summary = json.loads(result.stdout)
    assert summary["requests"] == 40
    assert set(summary["codes"]) == {"200", "503"}
    assert summary["servedBy"] == {"reviews-v2": 40}
