"""`isthmus up DIR`: run a whole mesh on this machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import click

from isthmus.mesh.state import resolve_state_dir


def print_table(status: dict, started: float, published: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(title=f"isthmus mesh ready in {time.monotonic() - started:.1f}s", box=None, pad_edge=False)
    for col in ("NAMESPACE", "INSTANCE", "KIND", "ADDRESS", "PORTS"):
        table.add_column(col)
    proxies = {p["instance"]: p for p in status["proxies"]}
    for inst in sorted(status["instances"], key=lambda i: (i["namespace"], i["instance"])):
        proxy = proxies.get(inst["instance"])
        kind = proxy["kind"] if proxy else "no sidecar"
        if proxy and proxy["kind"] == "gateway":
            ports = ", ".join(f"{lst['port']}->{lst['address']}" for lst in proxy["listeners"])
        else:
            ports = ", ".join(str(p["port"]) for p in inst["ports"])
        table.add_row(inst["namespace"], inst["instance"], kind, inst["ip"], ports)
    console.print(table)
    cp = status["controlPlane"]
    console.print(f"control plane: xDS {cp['xds']}, API {cp['api']}, dashboard {cp['api']}/ui/")
    errors = status.get("configErrors") or {}
    for source, errs in errors.items():
        console.print(f"[red]refused {source}:[/red]")
        for e in errs:
            console.print(f"  {e}")
    for line in published or ():
        console.print(f"published {line}")
    console.print("Ctrl-C stops the mesh.")


@click.command("up")
@click.argument("config_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--subnet", default="127.1.0.0/16", show_default=True, help="Loopback block for this mesh.")
@click.option(
    "--port-offset",
    default=8000,
    show_default=True,
    type=int,
    help="Added to listen ports below 1024 when not running as root.",
)
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where to record what runs where.")
@click.option(
    "--publish",
    multiple=True,
    metavar="[HOST_PORT:]GATEWAY_PORT",
    help="Also serve a gateway port on 127.0.0.1 (for browsers; repeatable). HOST_PORT defaults to the "
    "gateway port, shifted by --port-offset below 1024 when not root.",
)
@click.option(
    "--envoy-concurrency", default=1, show_default=True, type=int, help="Envoy worker threads per proxy."
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def up_command(
    config_dir: Path,
    subnet: str,
    port_offset: int,
    state_dir: Path | None,
    publish: tuple[str, ...],
    envoy_concurrency: int,
    verbose: int,
) -> None:
    """Run the mesh described by the YAML files in CONFIG_DIR (edits apply live)."""
    from isthmus.mesh.runner import MeshOptions, run_mesh

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from isthmus.mesh.publish import PublishError, parse_publish

    for spec in publish:
        try:
            parse_publish(spec, 0)  # bad values fail before anything starts
        except PublishError as e:
            raise click.BadParameter(str(e), param_hint="--publish") from e
    options = MeshOptions(
        config_dir=config_dir,
        state_dir=resolve_state_dir(state_dir),
        subnet=subnet,
        port_offset=port_offset,
        publish=list(publish),
        envoy_concurrency=envoy_concurrency,
    )
    started = time.monotonic()

    def on_ready(mesh: object) -> None:
        mesh.on_event = lambda msg: click.echo(msg, err=True)  # type: ignore[attr-defined]
        publisher = mesh.publisher  # type: ignore[attr-defined]
        published = publisher.addresses() if publisher is not None else []
        print_table(mesh.status(), started, published)  # type: ignore[attr-defined]
        sys.stdout.flush()

    try:
        asyncio.run(run_mesh(options, on_ready=on_ready))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
