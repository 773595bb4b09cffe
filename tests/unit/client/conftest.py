from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_helpers import EnvoyProxy, FakeMeshApi, envoy_binary, envoy_bootstrap

from isthmus.echo.testing import EchoProcess, free_port


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoProcess]:
    """An echo instance: HTTP on target port 9080, TCP line echo on 9090."""
    with EchoProcess(
        {9080: free_port(), 9090: free_port()},
        tcp=[9090],
        instance="reviews-v2-0",
        workload="reviews-v2",
        labels={"app": "reviews", "version": "v2"},
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def echo_v1() -> Iterator[EchoProcess]:
    with EchoProcess(
        {9080: free_port()},
        instance="reviews-v1-0",
        workload="reviews-v1",
        labels={"app": "reviews", "version": "v1"},
    ) as proc:
        yield proc


@pytest.fixture
def mesh_api() -> Iterator[FakeMeshApi]:
    api = FakeMeshApi()
    api.thread.start()
    try:
        yield api
    finally:
        api.server.shutdown()
        api.server.server_close()
        api.thread.join(5)


@pytest.fixture(scope="module")
def envoy(echo: EchoProcess, echo_v1: EchoProcess) -> Iterator[EnvoyProxy]:
    binary = envoy_binary()
    if binary is None:
        pytest.skip("envoy binary not found")
    admin, listen = free_port(), free_port()
    proxy = EnvoyProxy(
        envoy_bootstrap(admin, listen, echo.app_port(9080), echo_v1.app_port(9080), echo.app_port(9090)),
        admin,
        listen,
    )
    try:
        proxy.start(binary)
        yield proxy
    finally:
        proxy.stop()
