"""The `isthmus` command. Subcommands load lazily so that `isthmus echo` starts fast."""

from __future__ import annotations

import importlib

import click

from isthmus import __version__

# command name -> "module:attribute"
COMMANDS = {
    "up": "isthmus.cli.up_cmd:up_command",
    "status": "isthmus.cli.mesh_cmds:status_command",
    "apply": "isthmus.cli.mesh_cmds:apply_command",
    "delete": "isthmus.cli.mesh_cmds:delete_command",
    "get": "isthmus.cli.mesh_cmds:get_command",
    "restart": "isthmus.cli.mesh_cmds:restart_command",
    "proxy-status": "isthmus.cli.proxy_cmds:proxy_status_command",
    "proxy-config": "isthmus.cli.proxy_cmds:proxy_config_command",
    "curl": "isthmus.cli.curl_cmd:curl_command",
    "logs": "isthmus.cli.logs_cmd:logs_command",
    "echo": "isthmus.cli.echo_cmd:echo_command",
    "analyze": "isthmus.cli.analyze_cmd:analyze_command",
    "describe": "isthmus.cli.describe_cmd:describe_command",
    "explain": "isthmus.cli.explain_cmd:explain_command",
    "route": "isthmus.cli.route_cmd:route_group",
    "x": "isthmus.cli.authz_cmd:x_group",
}


# istioctl's short names for the commands that carry istioctl's meaning (DESIGN.md §4), so its habits
# (`istioctl pc cluster`, `istioctl ps`) carry over; hidden from the command list.
ALIASES = {"pc": "proxy-config", "ps": "proxy-status"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(ALIASES.get(cmd_name, cmd_name))
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="isthmus")
def cli() -> None:
    """Isthmus: a service mesh with Istio's API and Envoy's data plane."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
