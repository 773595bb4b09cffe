"""`isthmus proxy-status`'s RDS column counts a delta sidecar's virtual hosts (VHDS) with its table."""

from __future__ import annotations

import pytest

from isthmus.cli.proxy_cmds import route_sync


@pytest.mark.parametrize(
    ("sync", "shown"),
    [
        ({"RDS": "SYNCED"}, "SYNCED"),
        ({"RDS": "STALE"}, "STALE"),
        ({}, "NOT SENT"),
        ({"RDS": "SYNCED", "VHDS": "SYNCED"}, "SYNCED"),
        ({"RDS": "SYNCED", "VHDS": "STALE"}, "STALE"),
        ({"RDS": "SYNCED", "VHDS": "NOT SENT"}, "NOT SENT"),
        ({"RDS": "NOT SENT", "VHDS": "STALE"}, "STALE"),
    ],
)
def test_rds_column_is_the_less_synced_of_rds_and_vhds(sync: dict[str, str], shown: str) -> None:
    assert route_sync(sync) == shown
