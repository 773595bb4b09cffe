from __future__ import annotations

import asyncio
import time

import pytest

from isthmus.client import LoadGenerator, run_load, sync
from isthmus.client.load import percentile
from isthmus.echo.testing import EchoProcess, free_port


def test_percentile() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 99) == 7.0


def test_summary_counts_codes_workloads_versions(echo: EchoProcess, echo_v1: EchoProcess) -> None:
    addrs = [f"127.0.0.1:{echo.app_port()}", f"127.0.0.1:{echo_v1.app_port()}"]
    # keep_alive=False: a new connection (and so a random address) per request.
    result = sync.run_load(
        "http://reviews:9080/", count=150, concurrency=4, connect_to=addrs, keep_alive=False
    )
    assert result.requests == 150
    assert result.codes == {"200": 150}
    assert result.all_ok and result.failed == 0
    assert set(result.served_by) == {"reviews-v1", "reviews-v2"}
    assert sum(result.served_by.values()) == 150
    assert set(result.versions) == {"v1", "v2"}
    assert set(result.instances) == {"reviews-v1-0", "reviews-v2-0"}
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert len(result.responses) == 100
    first = result.responses[0]
    assert set(first) == {"status", "headers", "body", "latencyMs"}
    assert first["body"]["host"] == "reviews:9080"
    d = result.to_dict()
    assert {"requests", "codes", "servedBy", "instances", "versions", "latencyMs", "responses"} <= set(d)
    assert d["servedBy"] == result.served_by


def test_failures_count_under_code_zero(echo: EchoProcess) -> None:
    result = sync.run_load(f"http://127.0.0.1:{free_port()}/", count=5, concurrency=2)
    assert result.codes == {"0": 5}
    assert result.failed == 5 and not result.all_ok
    (msg,) = result.errors
    assert "refused" in msg
    assert result.responses[0]["status"] == 0 and "refused" in result.responses[0]["error"]
    mixed = sync.run_load(echo.url(path="/?status=503:50"), count=60, concurrency=3)
    assert mixed.codes.get("503", 0) > 0 and not mixed.all_ok and mixed.failed == 0


def test_qps_pacing_and_duration(echo: EchoProcess) -> None:
    t0 = time.monotonic()
    result = sync.run_load(echo.url(), count=10, concurrency=3, qps=40)
    elapsed = time.monotonic() - t0
    assert result.requests == 10
    assert elapsed >= 9 / 40 - 0.02
    timed = sync.run_load(echo.url(), duration=0.3, concurrency=2, qps=50)
    assert 5 <= timed.requests <= 20
    assert timed.all_ok
    with pytest.raises(ValueError):
        sync.run_load(echo.url())


def test_background_load_generator_stops_without_failures(echo: EchoProcess) -> None:
    with sync.LoadGenerator(echo.url(path="/?delay=20ms"), concurrency=4, qps=200) as gen:
        gen.wait_for(20, timeout=10)
        partial = gen.snapshot()
        assert partial.requests >= 20
    result = gen.result
    assert result is not None
    assert result.all_ok, (result.codes, result.errors)
    assert result.requests >= 20
    assert gen.stop() is result  # idempotent


def test_async_load_generator(echo: EchoProcess) -> None:
    async def scenario() -> tuple[int, object]:
        async with LoadGenerator(echo.url(), concurrency=2) as gen:
            await gen.wait_for(10, timeout=10)
            seen = gen.completed
        return seen, gen.result

    seen, result = asyncio.run(scenario())
    assert seen >= 10
    assert result.all_ok and result.requests >= seen  # type: ignore[attr-defined]
    bounded = asyncio.run(run_load(echo.url(), count=7, concurrency=20))
    assert bounded.requests == 7


def test_wait_for_times_out_when_load_ends_early(echo: EchoProcess) -> None:
    gen = sync.LoadGenerator(echo.url(), count=3).start()
    try:
        with pytest.raises(TimeoutError):
            gen.wait_for(10, timeout=5)
    finally:
        result = gen.stop()
    assert result.requests == 3
