from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.echo.testing import EchoProcess, free_port

LABELS = {"app": "reviews", "version": "v2"}


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoProcess]:
    """Two HTTP target ports (9080, 9090) and one TCP echo port (9091)."""
    proc = EchoProcess(
        {9080: free_port(), 9090: free_port(), 9091: free_port()},
        tcp=[9091],
        instance="reviews-v2-0",
        workload="reviews-v2",
        labels=LABELS,
        ip="127.1.0.7",
    )
    with proc:
        yield proc
