"""isthmus.dev/v1alpha1 Workload: a process Isthmus runs (with a sidecar, or as a gateway)."""

from __future__ import annotations

from pydantic import Field, field_validator

from isthmus.api.types import ApiModel


class Workload(ApiModel):
    """Rules checked in ``validation.workload``: command required unless gateway; a gateway has no
    command; replicas >= 0; ports in 1..65535 and unique."""

    service_account: str = "default"
    replicas: int = 1
    ports: list[int] = Field(default_factory=list)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    sidecar: bool = True
    gateway: bool = False

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v
