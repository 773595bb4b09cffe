"""`isthmus proxy-status` against istioctl's tests of that command.

Ported from `istioctl/pkg/writer/pilot/status_test.go` (XdsStatusWriter, goldens
`testdata/multiXdsStatus*.txt`): the columns NAME CLUSTER CDS LDS EDS RDS ECDS ISTIOD VERSION, Go
tabwriter padding 5, rows sorted by proxy ID (`pod.namespace`), a type the proxy does not watch shown
as IGNORED and one watched but never sent as NOT SENT. Isthmus's control plane reports SYNCED, STALE
and NOT SENT (DESIGN §4; a NACK counts as STALE), so istioctl's ERROR never appears.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus import __version__
from isthmus.cli import proxy_cmds

CP = "127.1.0.1:15010"


def proxy(instance: str, namespace: str, sync: dict[str, str]) -> dict[str, Any]:
    return {"id": f"sidecar~10.0.0.1~{instance}.{namespace}~{namespace}.svc.cluster.local",
            "instance": instance, "namespace": namespace, "workload": instance.rsplit("-", 1)[0],
            "sync": sync}  # fmt: skip


def status(*proxies: dict[str, Any]) -> dict[str, Any]:
    return {"controlPlane": {"xds": CP}, "configVersion": "7", "proxies": list(proxies)}


ALL_SYNCED = {"CDS": "SYNCED", "LDS": "SYNCED", "EDS": "SYNCED", "RDS": "SYNCED"}


def test_columns_and_sync_words_like_multi_xds_status_single_pilot() -> None:
    # multiXdsStatusSinglePilot: proxy1 CDS STALE, RDS and ECDS not sent; proxy2 EDS STALE.
    st = status(
        proxy("proxy2", "default", {"CDS": "STALE", "LDS": "SYNCED", "EDS": "STALE", "RDS": "SYNCED", "ECDS": "NOT SENT"}),
        proxy("proxy1", "default", {"CDS": "STALE", "LDS": "SYNCED", "EDS": "SYNCED", "RDS": "NOT SENT", "ECDS": "NOT SENT"}),
    )  # fmt: skip
    text = proxy_cmds.status_table(st, st["proxies"]).render()
    v = __version__
    assert text.splitlines() == [
        "NAME               CLUSTER        CDS       LDS        EDS        RDS          ECDS         ISTIOD              VERSION",
        f"proxy1.default     Kubernetes     STALE     SYNCED     SYNCED     NOT SENT     NOT SENT     {CP}     {v}",
        f"proxy2.default     Kubernetes     STALE     SYNCED     STALE      SYNCED       NOT SENT     {CP}     {v}",
    ]  # fmt: skip


def test_unwatched_types_are_ignored() -> None:
    # multiXdsStatusMultiPilot's proxy4: istiod reports types the proxy does not watch as UNKNOWN, which
    # istioctl prints IGNORED. A sidecar without filters over ECDS never subscribes to ECDS.
    st = status(proxy("gw-0", "istio-system", {"CDS": "SYNCED", "LDS": "SYNCED"}))
    row = proxy_cmds.status_table(st, st["proxies"]).rows[0]
    assert row[:7] == ["gw-0.istio-system", "Kubernetes", "SYNCED", "SYNCED", "IGNORED", "IGNORED", "IGNORED"]


def test_rows_sorted_by_proxy_id() -> None:
    st = status(
        proxy("reviews-v2-0", "default", ALL_SYNCED),
        proxy("details-v1-0", "default", ALL_SYNCED),
        proxy("gateway-0", "istio-system", ALL_SYNCED),
        proxy("ratings-v1-0", "bookinfo", ALL_SYNCED),
    )
    names = [r[0] for r in proxy_cmds.status_table(st, st["proxies"]).rows]
    assert names == [
        "details-v1-0.default",
        "gateway-0.istio-system",
        "ratings-v1-0.bookinfo",
        "reviews-v2-0.default",
    ]


@pytest.mark.parametrize(
    ("sync", "rds"),
    [
        # Isthmus's delta sidecars get their table over RDS plus its virtual hosts over VHDS: the RDS
        # column is the less synced of the two (an Isthmus extension, README's VHDS note).
        ({"RDS": "SYNCED", "VHDS": "STALE"}, "STALE"),
        ({"RDS": "SYNCED", "VHDS": "SYNCED"}, "SYNCED"),
        ({"VHDS": "NOT SENT"}, "NOT SENT"),
        ({"CDS": "SYNCED"}, "IGNORED"),
    ],
)
def test_rds_column_with_vhds(sync: dict[str, str], rds: str) -> None:
    assert proxy_cmds.type_sync(sync, "RDS") == rds


@pytest.fixture
def fake_status(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    st = status(
        proxy("b-0", "default", ALL_SYNCED),
        {**proxy("a-0", "default", {**ALL_SYNCED, "LDS": "STALE"}),
         "nacks": {"LDS": {"message": "bad listener"}}},
    )  # fmt: skip
    monkeypatch.setattr(proxy_cmds, "_status", lambda state_dir: st)
    return st


def test_cli_table_and_json(fake_status: dict[str, Any]) -> None:
    res = CliRunner().invoke(proxy_cmds.proxy_status_command, [])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"]
    assert [line.split()[0] for line in lines[1:]] == ["a-0.default", "b-0.default"]
    assert lines[1].split()[2:7] == ["SYNCED", "STALE", "SYNCED", "SYNCED", "IGNORED"]
    assert "a-0.default LDS NACK: bad listener" in res.stderr

    res = CliRunner().invoke(proxy_cmds.proxy_status_command, ["b-0", "-o", "json"])
    assert res.exit_code == 0, res.output
    assert [p["instance"] for p in json.loads(res.stdout)] == ["b-0"]


def test_cli_single_proxy_compares_configs(
    fake_status: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """istioctl's `proxy-status <pod>` prints the comparison of the control plane's config with the
    Envoy's (tests/unit/debug/test_config_compare.py), not the table row."""
    seen: list[str] = []

    def compare(state_dir: Any, p: dict[str, Any]) -> list[str]:
        seen.append(p["instance"])
        return ["Clusters Match", "Listeners Match", "Routes Match"]

    monkeypatch.setattr(proxy_cmds, "compare_proxy", compare)
    res = CliRunner().invoke(proxy_cmds.proxy_status_command, ["b-0.default"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["Clusters Match", "Listeners Match", "Routes Match"]
    assert seen == ["b-0"]
