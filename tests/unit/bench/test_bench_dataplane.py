"""bench/dataplane.py's `--syscalls` counter against a real process: it must see the calls of every
thread (Envoy's workers are threads, not the main one) and only those made while attached."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "dataplane.py"

# A worker thread answers each line on stdin after calling getppid() three times (a call nothing else
# in the interpreter makes while it waits).
CHILD = """
import os, sys, threading
def work():
    for line in sys.stdin:
        for _ in range(3):
            os.getppid()
        sys.stdout.write("ok\\n")
        sys.stdout.flush()
t = threading.Thread(target=work)
t.start()
t.join()
"""


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_dataplane", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _ask(child: subprocess.Popen[str], n: int) -> None:
    assert child.stdin is not None and child.stdout is not None
    for _ in range(n):
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_strace_counts_the_calls_of_every_thread_while_attached(bench: ModuleType, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        _ask(child, 2)  # before attaching: not counted
        tracer = bench.Strace(child.pid, tmp_path / "strace.txt")
        tracer.attach()
        _ask(child, 5)
        calls = tracer.detach()
        _ask(child, 2)  # after detaching: not counted, and the child still runs
        assert calls["getppid"] == 15, calls
        assert calls["write"] >= 5, calls
        tracer.attach()  # a second window starts from zero
        _ask(child, 1)
        assert tracer.detach()["getppid"] == 3
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_strace_summary_lines_with_and_without_errors(bench: ModuleType) -> None:
    assert bench.SYSCALL_RE.match(" 26.76    0.000407          10        39        19 openat").groups() == (
        "39",
        "openat",
    )
    assert bench.SYSCALL_RE.match("  0.00    0.000000           0         7           readv").groups() == (
        "7",
        "readv",
    )
    assert (
        bench.SYSCALL_RE.match("------ ----------- ----------- --------- --------- ----------------") is None
    )
