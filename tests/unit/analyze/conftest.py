from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from isthmus.analyze import analyze
from isthmus.analyze.messages import Message
from isthmus.api.loader import LoadReport, load_path_report, load_text_report

BOOKINFO = Path(__file__).resolve().parents[3] / "examples" / "bookinfo"

Analyze = Callable[..., list[Message]]


def run(text: str, *, bookinfo: bool = True, filename: str = "test.yaml", **kw) -> list[Message]:
    """Analyze the bookinfo example (its services, workloads, subsets and gateway) plus ``text``."""
    report = LoadReport()
    if bookinfo:
        report.extend(load_path_report(BOOKINFO, lenient=True))
    report.extend(load_text_report(text, filename, lenient=True))
    messages = analyze(report.resources, load_messages=report.messages, **kw)
    assert not [m for m in messages if m.code == "IST0001"], [str(m) for m in messages if m.code == "IST0001"]
    return messages


@pytest.fixture
def analyze_yaml() -> Analyze:
    return run
