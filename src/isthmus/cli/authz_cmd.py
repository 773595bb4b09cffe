"""`isthmus x authz check PROXY`: istioctl's command of that name.

Reads the proxy's Envoy config dump (what it enforces now): the RBAC configs riding on its routes
(`RBACPerRoute` under `envoy.filters.http.rbac.{audit,deny,allow}`) and the network RBAC filters of its
TCP chains, grouped back into AuthorizationPolicies by their `ns[..]-policy[..]-rule[..]` names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import click

from isthmus.cli.describe_cmd import describe_command
from isthmus.cli.mesh_cmds import STATE_DIR


@click.group("x")
def x_group() -> None:
    """Experimental commands (as istioctl's `x`)."""


@x_group.group("authz")
def authz_group() -> None:
    """Authorization tools."""


@authz_group.command("check")
@click.argument("proxy", required=False)
@click.option("-n", "--namespace", help="Namespace of the proxy.")
@click.option(
    "-f",
    "--file",
    "dump_file",
    type=click.File("r"),
    help="Read a saved Envoy config dump instead of a proxy's (istioctl's -f); - is stdin.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--details/--no-details",
    default=False,
    help="After istioctl's table, each rule in words and where it is enforced.",
)
@STATE_DIR
def authz_check_command(
    proxy: str | None,
    namespace: str | None,
    dump_file: TextIO | None,
    output: str,
    details: bool,
    state_dir: Path | None,
) -> None:
    """The AuthorizationPolicies in force on PROXY (or in the config dump of --file) as istioctl
    prints them (ACTION, name.namespace, RULES), from what its Envoy holds; --details says what each
    rule matches."""
    from isthmus.debug import authz
    from isthmus.debug.envoy_config import ProxyConfig
    from isthmus.debug.live import DebugError, Mesh

    if (proxy is None) == (dump_file is None):
        raise click.UsageError("check requires a proxy name or the --file parameter")
    if dump_file is not None:
        try:
            config = ProxyConfig.from_config_dump(json.load(dump_file))
        except ValueError as exc:
            raise click.ClickException(
                f"failed to get config dump from file {dump_file.name}: {exc}"
            ) from exc
        name = dump_file.name
    else:
        mesh = Mesh(state_dir)
        try:
            p = mesh.find_proxy(proxy, namespace)
            config = mesh.held_config(p, health=False)
        except DebugError as exc:
            raise click.ClickException(str(exc)) from exc
        name = f"{p['instance']}.{p['namespace']}"
    rows = authz.check(config)
    if output == "json":
        click.echo(json.dumps({"proxy": name, "policies": [r.to_dict() for r in rows]}, indent=2))
        return
    click.echo(authz.render_table(rows, details=details), nl=False)


# istioctl keeps `describe` under `x` (`istioctl x describe pod ...`): the same command answers there.
x_group.add_command(describe_command, "describe")
