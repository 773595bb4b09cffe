"""`isthmus explain`: why a request failed, in plain words, with the config involved.

    isthmus explain '<access-log line>'      # Istio's TEXT format or the JSON encoding; `-` reads stdin
    isthmus explain --flag UH                # what a response flag means, its usual causes and fixes
    isthmus explain --request-id ID          # every proxy's line for that request, each explained

A line is joined with the config of the proxy that wrote it (found by its downstream local address, or
named with --proxy): its routes, clusters, endpoints and their health, circuit breakers, the
DestinationRules and AuthorizationPolicies involved. --offline explains without asking the mesh.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from isthmus.cli.mesh_cmds import STATE_DIR


@click.command("explain")
@click.argument("line", required=False)
@click.option("--flag", "flag", metavar="FLAG", help="Explain a response flag (UH, UF, NR, ...; or RBAC).")
@click.option(
    "--request-id", "request_id", metavar="ID", help="Find the request's lines in the proxies' access logs."
)
@click.option(
    "--proxy",
    "proxy_name",
    metavar="PROXY",
    help="The proxy that wrote the line (default: from its addresses).",
)
@click.option("-n", "--namespace", help="Namespace of --proxy.")
@click.option("--offline", is_flag=True, help="Do not consult the running mesh.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@STATE_DIR
def explain_command(
    line: str | None,
    flag: str | None,
    request_id: str | None,
    proxy_name: str | None,
    namespace: str | None,
    offline: bool,
    output: str,
    state_dir: Path | None,
) -> None:
    """Explain an access-log line, a response flag or a request id: the likely cause and the fix."""
    from isthmus.debug import explain
    from isthmus.debug.accesslog import parse_line
    from isthmus.debug.live import DebugError, Mesh

    chosen = [x for x in (line, flag, request_id) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of: an access-log LINE (or -), --flag FLAG, --request-id ID")
    if flag:
        try:
            info = explain.explain_flag(flag)
        except KeyError:
            raise click.BadParameter(f"unknown response flag {flag!r}", param_hint="--flag") from None
        click.echo(
            json.dumps(info, indent=2) if output == "json" else explain.render_flag(info), nl=output == "json"
        )
        return

    mesh = None if offline else Mesh(state_dir)
    view: Any = None
    hint = None
    notes: list[str] = []
    if mesh is not None:
        try:
            mesh.status  # noqa: B018 - reach the mesh now, to fall back cleanly
            view = explain.LiveView(mesh)
            if proxy_name:
                hint = mesh.find_proxy(proxy_name, namespace)
        except DebugError as exc:
            if request_id or proxy_name:
                raise click.ClickException(str(exc)) from exc
            notes.append(f"(the mesh is not reachable, so its config was not consulted: {exc})")
            view = None

    results: list[dict[str, Any]] = []
    if request_id:
        from isthmus.debug.logsearch import find_request, proxy_of_entry

        assert mesh is not None
        entries = find_request(mesh, request_id)
        if not entries:
            message = (
                f"no access-log line has request id {request_id!r}. Access logs are written only when "
                "MeshConfig accessLogFile is set (e.g. /dev/stdout), and Envoy flushes them about once a second."
            )
            in_proxy = [
                p.get("instance")
                for p in mesh.status.get("proxies") or []
                if (p.get("metrics") or {}).get("pipeline") == "proxy"
            ]
            if in_proxy:
                message += (
                    " Proxies that keep their metrics in the proxy (the default) send the control plane "
                    "only failed requests (status >= 400 or a response flag) and gRPC requests; "
                    'ISTHMUS_PROXY_METRICS: "false" in MeshConfig defaultConfig.proxyMetadata (or a '
                    "ProxyConfig) logs every request."
                )
            raise click.ClickException(message)
        proxies = mesh.status.get("proxies") or []
        for entry in entries:
            ex = explain.explain_entry(entry, view, proxy_of_entry(entry, proxies))
            ex["source"] = entry.source
            results.append(ex)
    else:
        assert line is not None
        lines = sys.stdin.read().splitlines() if line == "-" else [line]
        for raw in lines:
            if not raw.strip():
                continue
            entry = parse_line(raw)
            if entry is None:
                raise click.ClickException(f"not an Istio access-log line (TEXT or JSON): {raw[:120]!r}")
            results.append(explain.explain_entry(entry, view, hint))
    if output == "json":
        click.echo(json.dumps(results if len(results) != 1 or request_id else results[0], indent=2))
        return
    for i, ex in enumerate(results):
        if i:
            click.echo("")
        click.echo(explain.render_explanation(ex), nl=False)
    for n in notes:
        click.echo(n, err=True)
