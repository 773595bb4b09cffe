"""How ``isthmus curl`` shows what came back: one response like ``curl -i``, a load summary with rich."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from isthmus.client.http import Response
from isthmus.client.load import LoadResult


def format_response(resp: Response, *, include_head: bool = True) -> str:
    """Status line, headers, blank line, body (as ``curl -i`` prints); body only without the head."""
    body = resp.text
    if not include_head:
        return body if body.endswith("\n") or not body else body + "\n"
    lines = [f"HTTP/{resp.http_version} {resp.status} {resp.reason}".rstrip()]
    lines += [f"{k}: {v}" for k, v in resp.headers]
    out = "\n".join(lines) + "\n\n" + body
    if body and not body.endswith("\n"):
        out += "\n"
    return out


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "-"


def summary_renderable(result: LoadResult) -> Group:
    """Counts by code, by responding workload / version / instance, and latency percentiles."""
    total = result.requests
    rate = f"{total / result.duration_s:.1f}/s" if result.duration_s > 0 else "-"
    header = Text(f"{total} requests in {result.duration_s:.2f}s ({rate})", style="bold")
    parts: list[object] = [header]

    codes = Table(title="Status codes", title_justify="left", show_edge=False)
    codes.add_column("code")
    codes.add_column("count", justify="right")
    codes.add_column("share", justify="right")
    for code, n in result.codes.items():
        style = (
            "green"
            if code.startswith("2")
            else ("red" if code in ("0",) or code.startswith("5") else "yellow")
        )
        codes.add_row(Text(code, style=style), str(n), _share(n, total))
    parts.append(codes)

    if result.served_by or result.versions:
        served = Table(title="Served by", title_justify="left", show_edge=False)
        served.add_column("workload")
        served.add_column("count", justify="right")
        served.add_column("share", justify="right")
        for name, n in result.served_by.items():
            served.add_row(name, str(n), _share(n, total))
        parts.append(served)
        if result.versions:
            versions = Table(title="Versions", title_justify="left", show_edge=False)
            versions.add_column("version")
            versions.add_column("count", justify="right")
            versions.add_column("share", justify="right")
            for name, n in result.versions.items():
                versions.add_row(name, str(n), _share(n, total))
            parts.append(versions)
        if len(result.instances) > 1:
            inst = Table(title="Instances", title_justify="left", show_edge=False)
            inst.add_column("instance")
            inst.add_column("count", justify="right")
            for name, n in result.instances.items():
                inst.add_row(name, str(n))
            parts.append(inst)

    lat = Table(title="Latency (ms)", title_justify="left", show_edge=False)
    for col in ("p50", "p90", "p99", "max"):
        lat.add_column(col, justify="right")
    lat.add_row(*(f"{result.latency_ms.get(k, 0.0):.2f}" for k in ("p50", "p90", "p99", "max")))
    parts.append(lat)

    if result.errors:
        errs = Table(title="Errors", title_justify="left", show_edge=False)
        errs.add_column("error")
        errs.add_column("count", justify="right")
        for msg, n in sorted(result.errors.items(), key=lambda kv: -kv[1]):
            errs.add_row(Text(msg, style="red"), str(n))
        parts.append(errs)
    return Group(*parts)


def print_summary(result: LoadResult, console: Console | None = None) -> None:
    (console or Console()).print(summary_renderable(result))
