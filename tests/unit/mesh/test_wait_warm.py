"""`apply --wait` waits for config to be serving, not only ACKed: `wait_warm` polls each running
proxy's warming-listener gauge until it is zero everywhere (bounded), and names the proxies where it
is not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from isthmus.mesh.runner import WARMING_STATS, wait_warm


@dataclass
class FakeAdmin:
    answers: list[dict[str, int]]
    filters: list[str | None] = field(default_factory=list)

    async def stats(self, filter: str | None = None) -> dict[str, int]:
        self.filters.append(filter)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def close(self) -> None:
        pass


@dataclass
class FakeEnvoy:
    admin_: FakeAdmin
    running: bool = True

    def admin(self) -> FakeAdmin:
        return self.admin_


@dataclass
class FakeSpec:
    name: str
    namespace: str = "default"


@dataclass
class FakePod:
    name: str
    envoy: Any
    state: str = "Running"

    @property
    def spec(self) -> FakeSpec:
        return FakeSpec(self.name)


def warming(listeners: int) -> dict[str, int]:
    return {"listener_manager.total_listeners_warming": listeners}


def test_waits_until_no_listener_is_warming() -> None:
    gateway = FakeAdmin([warming(2), warming(1), warming(1), warming(0)])
    sidecar = FakeAdmin([warming(0)])
    pods = [FakePod("gw", FakeEnvoy(gateway)), FakePod("app", FakeEnvoy(sidecar))]
    assert asyncio.run(wait_warm(pods, timeout=5, poll=0.001)) == []  # type: ignore[arg-type]
    assert len(gateway.filters) == 4 and len(sidecar.filters) == 1
    assert gateway.filters[0] == WARMING_STATS


def test_gives_up_at_the_timeout_and_skips_stopped_proxies() -> None:
    stuck = FakeAdmin([warming(1)])
    stopped = FakeAdmin([warming(1)])
    pods = [
        FakePod("gw", FakeEnvoy(stuck)),
        FakePod("old", FakeEnvoy(stopped, running=False)),
        FakePod("starting", FakeEnvoy(stopped), state="Starting"),
    ]
    assert asyncio.run(wait_warm(pods, timeout=0.05, poll=0.01)) == ["gw.default"]  # type: ignore[arg-type]
    assert stopped.filters == []
