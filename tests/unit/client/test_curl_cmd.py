from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from client_helpers import FakeMeshApi

from isthmus.cli.curl_cmd import curl_command
from isthmus.client import sync
from isthmus.echo.testing import EchoProcess, free_port


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(curl_command, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_single_request_prints_like_curl_i(echo: EchoProcess) -> None:
    code, out, _ = run("--direct", echo.url(path="/a/../b?x=1"), "-H", "x-empty:", "-H", "Host: reviews:9080")
    assert code == 0
    head, _, body = out.partition("\n\n")
    lines = head.splitlines()
    assert lines[0].startswith("HTTP/1.1 200")
    assert "content-type: application/json" in lines[1:]
    doc = json.loads(body)
    assert doc["path"] == "/a/../b?x=1"
    assert doc["host"] == "reviews:9080"
    assert doc["headers"]["x-empty"] == ""
    assert doc["method"] == "GET"


def test_single_request_json_body_and_method(echo: EchoProcess, tmp_path: Path) -> None:
    code, out, _ = run("--direct", echo.url(path="/p"), "-d", "hello", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == 200
    assert doc["body"]["method"] == "POST" and doc["body"]["body"] == "hello"
    assert doc["headers"]["content-type"] == "application/json"
    f = tmp_path / "body.txt"
    f.write_text("from file")
    code, out, _ = run("--direct", echo.url(path="/p"), "-X", "patch", "-d", f"@{f}", "-o", "json")
    assert json.loads(out)["body"]["method"] == "PATCH"
    assert json.loads(out)["body"]["body"] == "from file"


def test_failure_exit_status(echo: EchoProcess) -> None:
    code, out, err = run("--direct", f"http://127.0.0.1:{free_port()}/")
    assert code == 1
    assert out == ""
    assert "refused" in err
    code, out, _ = run("--direct", echo.url(path="/?status=503"))
    assert code == 0  # an HTTP response came back
    assert out.startswith("HTTP/1.1 503")


def test_tcp_url_prints_the_line(echo: EchoProcess) -> None:
    code, out, _ = run("--direct", f"tcp://127.0.0.1:{echo.app_port(9090)}", "-d", "ping")
    assert (code, out) == (0, "v2 ping\n")


def test_count_summary_json_and_table(echo: EchoProcess) -> None:
    code, out, _ = run("--direct", echo.url(), "--count", "20", "-c", "4", "-o", "json")
    assert code == 0
    summary = json.loads(out)
    assert summary["requests"] == 20
    assert summary["codes"] == {"200": 20}
    assert summary["servedBy"] == {"reviews-v2": 20}
    assert summary["versions"] == {"v2": 20}
    assert set(summary["latencyMs"]) == {"p50", "p90", "p99", "max"}
    assert len(summary["responses"]) == 20
    code, out, _ = run("--direct", echo.url(path="/?status=503:50"), "--count", "30", "--qps", "500")
    assert code == 0
    for text in (
        "30 requests",
        "Status codes",
        "Served by",
        "reviews-v2",
        "Versions",
        "v2",
        "Latency (ms)",
        "p99",
    ):
        assert text in out
    code, out, _ = run("--direct", f"http://127.0.0.1:{free_port()}/", "--count", "3", "-o", "json")
    assert code == 1
    assert json.loads(out)["codes"] == {"0": 3}


def test_usage_errors(tmp_path: Path) -> None:
    code, _, err = run("http://x/")
    assert code == 2 and "--from" in err
    code, _, err = run("--direct", "https://x/")
    assert code == 2 and "scheme" in err
    code, _, err = run("--direct", "http://x/", "-H", "bad header")
    assert code == 2
    code, _, err = run("--from", "reviews", "--state-dir", str(tmp_path), "http://x/")
    assert code == 1 and "no running mesh" in err


def test_from_a_workload_with_sidecar(echo: EchoProcess, mesh_api: FakeMeshApi, tmp_path: Path) -> None:
    # The echo server stands in for the sidecar's outbound listener: it reports the absolute-form target.
    mesh_api.status = {
        "proxies": [
            {
                "kind": "sidecar",
                "workload": "sleep",
                "instance": "sleep-0",
                "namespace": "default",
                "ip": "127.0.0.1",
                "outboundPort": echo.app_port(),
            },
        ],
        "instances": [],
    }
    mesh_api.write_state(tmp_path)
    code, out, _ = run(
        "--from", "sleep", "--state-dir", str(tmp_path), "http://reviews:9080/r?x", "-o", "json"
    )
    assert code == 0
    body = json.loads(out)["body"]
    assert body["path"] == "http://reviews:9080/r?x"
    assert body["host"] == "reviews:9080"
    code, _, err = run("--from", "nope", "--state-dir", str(tmp_path), "http://reviews:9080/")
    assert code == 1 and "default/sleep" in err


def test_from_a_workload_without_sidecar_resolves_mesh_hosts(
    echo_v1: EchoProcess, mesh_api: FakeMeshApi, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ISTHMUS_STATE_DIR", str(tmp_path))
    mesh_api.status = {
        "proxies": [],
        "instances": [
            {
                "workload": "legacy",
                "instance": "legacy-0",
                "namespace": "outside",
                "ip": "127.0.0.5",
                "sidecar": False,
            }
        ],
    }
    mesh_api.resolve[("reviews.default.svc.cluster.local", 9080)] = [f"127.0.0.1:{echo_v1.app_port()}"]
    mesh_api.write_state(tmp_path)
    code, out, _ = run("--from", "legacy", "http://reviews.default.svc.cluster.local:9080/x", "-o", "json")
    assert code == 0, out
    body = json.loads(out)["body"]
    assert body["instance"] == "reviews-v1-0"
    assert body["path"] == "/x"
    assert body["host"] == "reviews.default.svc.cluster.local:9080"
    assert body["remoteAddr"].startswith("127.0.0.5:")  # sent from the pod's address
    assert mesh_api.resolve_queries[-1]["namespace"] == "outside"
    # A sidecar-less pod reaching an IP directly: no resolution.
    n = len(mesh_api.resolve_queries)
    assert run("--from", "legacy", echo_v1.url(path="/ip"), "-o", "json")[0] == 0
    assert len(mesh_api.resolve_queries) == n


def test_sync_client_is_usable_from_cli_tests(echo: EchoProcess) -> None:
    assert sync.request(echo.url(path="/.echo/healthz")).ok
