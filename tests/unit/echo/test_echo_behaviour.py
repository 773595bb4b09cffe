from __future__ import annotations

import itertools

import pytest

from isthmus.echo.behaviour import (
    BadParameter,
    Weighted,
    parse_delay,
    parse_duration,
    parse_header_line,
    parse_size,
    parse_status_code,
    parse_weighted,
    pick_weighted,
)
from isthmus.echo.config import PortBinding, build_config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("100ms", 0.1),
        ("1.5s", 1.5),
        ("250us", 250e-6),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("0.25", 0.25),
        ("2", 2.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "3x", "ms", "1s2", "-1", "s3"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(BadParameter):
        parse_duration(text)


def test_parse_delay_has_a_maximum() -> None:
    assert parse_delay("300s") == 300.0
    with pytest.raises(BadParameter):
        parse_delay("301s")


def test_parse_weighted_fortio_syntax() -> None:
    assert parse_weighted("503", parse_status_code) == [Weighted(503, 100.0)]
    assert parse_weighted("503:50", parse_status_code) == [Weighted(503, 50.0)]
    assert parse_weighted("503:20,429:10.5", parse_status_code) == [Weighted(503, 20.0), Weighted(429, 10.5)]
    assert parse_weighted("10ms:20,1s:5", parse_delay) == [Weighted(0.01, 20.0), Weighted(1.0, 5.0)]
    for bad in ("503:x", "503:101", "99", "600", "abc", ","):
        with pytest.raises(BadParameter):
            parse_weighted(bad, parse_status_code)


def test_pick_weighted_walks_cumulative_percentages() -> None:
    entries = parse_weighted("503:20,429:10", parse_status_code)
    assert pick_weighted(entries, lambda: 0.0) == 503
    assert pick_weighted(entries, lambda: 0.199) == 503
    assert pick_weighted(entries, lambda: 0.2) == 429
    assert pick_weighted(entries, lambda: 0.299) == 429
    assert pick_weighted(entries, lambda: 0.3) is None
    assert pick_weighted(entries, lambda: 0.99) is None
    always = parse_weighted("503", parse_status_code)
    assert pick_weighted(always, lambda: 0.999) == 503


def test_pick_weighted_distribution() -> None:
    entries = parse_weighted("503:50", parse_status_code)
    rolls = itertools.cycle([i / 100 for i in range(100)])
    picks = [pick_weighted(entries, lambda: next(rolls)) for _ in range(100)]
    assert picks.count(503) == 50


def test_size_and_header_parsing() -> None:
    assert parse_size("1024") == 1024
    for bad in ("-1", "x", str(65 * 1024 * 1024)):
        with pytest.raises(BadParameter):
            parse_size(bad)
    assert parse_header_line("X-A: b c") == ("X-A", "b c")
    assert parse_header_line("x-empty:") == ("x-empty", "")
    assert parse_header_line("k:v:w") == ("k", "v:w")
    for bad in ("novalue", ": v", "a b: c"):
        with pytest.raises(BadParameter):
            parse_header_line(bad)


ENV = {
    "ISTHMUS_PORTS": '{"9080": 41001, "9090": 41002}',
    "POD_NAME": "reviews-v2-0",
    "POD_NAMESPACE": "default",
    "POD_IP": "127.1.0.7",
    "ISTHMUS_LABELS": '{"app": "reviews", "version": "v2"}',
}


def test_config_from_isthmus_environment() -> None:
    cfg = build_config(env=ENV)
    assert cfg.http_ports == [PortBinding(9080, 41001), PortBinding(9090, 41002)]
    assert cfg.tcp_ports == []
    assert cfg.host == "127.0.0.1"
    assert (cfg.instance, cfg.namespace, cfg.ip) == ("reviews-v2-0", "default", "127.1.0.7")
    assert cfg.workload == "reviews"  # labels["app"] when ISTHMUS_WORKLOAD is unset
    assert cfg.version == "v2"
    assert cfg.tcp_prefix == "v2"
    assert build_config(env={**ENV, "ISTHMUS_WORKLOAD": "reviews-v2"}).workload == "reviews-v2"


def test_config_ports_env_wins_over_port_flag_and_tcp_takes_a_target_port() -> None:
    cfg = build_config(port=1234, tcp=[9090], env={**ENV, "PORT": "41001"})
    assert cfg.http_ports == [PortBinding(9080, 41001)]
    assert cfg.tcp_ports == [PortBinding(9090, 41002)]
    with pytest.raises(BadParameter, match="9999"):
        build_config(tcp=[9999], env=ENV)


def test_config_without_isthmus_ports() -> None:
    assert build_config(env={}).http_ports == [PortBinding(8080, 8080)]
    assert build_config(env={"PORT": "5000"}).http_ports == [PortBinding(5000, 5000)]
    assert build_config(port=6000, env={"PORT": "5000"}).http_ports == [PortBinding(6000, 6000)]
    only_tcp = build_config(tcp=[7000], env={})
    assert only_tcp.http_ports == [] and only_tcp.tcp_ports == [PortBinding(7000, 7000)]
    both = build_config(port=6000, tcp=[7000], env={})
    assert both.http_ports == [PortBinding(6000, 6000)] and both.tcp_ports == [PortBinding(7000, 7000)]
    cfg = build_config(env={"POD_NAME": "p"}, tcp_prefix="hi")
    assert cfg.tcp_prefix == "hi" and cfg.workload is None
    assert build_config(env={"POD_NAME": "p"}).tcp_prefix == "p"  # no version label: the instance
    with pytest.raises(BadParameter):
        build_config(env={"ISTHMUS_PORTS": "[1]"})
    with pytest.raises(BadParameter):
        build_config(env={"ISTHMUS_LABELS": "nope"})


def test_config_failure_flags() -> None:
    assert build_config(env={}, fail_status=500).fail_rate == 1.0
    cfg = build_config(env={}, fail_first=3)
    assert (cfg.fail_status, cfg.fail_rate, cfg.fail_first) == (503, 0.0, 3)
    cfg = build_config(env={}, fail_status=500, fail_rate=0.25)
    assert (cfg.fail_status, cfg.fail_rate) == (500, 0.25)
    with pytest.raises(BadParameter):
        build_config(env={}, fail_status=700)
    with pytest.raises(BadParameter):
        build_config(env={}, fail_rate=1.5)
    assert build_config(env={}, response_headers=["x-a: 1"]).response_headers == [("x-a", "1")]
