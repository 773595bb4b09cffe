"""`isthmus describe pod|workload|service NAME`: istioctl's `x describe`, from the control plane's model.

The control plane computes it (`GET /api/describe`) from the snapshot its generators use: ports and
Services, DestinationRules and subsets (which ones this pod is in), the effective traffic policy with
Istio's defaults spelled out, the VirtualServices rule by rule, the route defaults (timeout, Istio's
retry policy), PeerAuthentication per port, AuthorizationPolicies and the gateways exposing it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from isthmus.cli.mesh_cmds import STATE_DIR

KINDS = ["pod", "po", "workload", "deploy", "deployment", "service", "svc"]


@click.command("describe")
@click.argument("kind", type=click.Choice(KINDS, case_sensitive=False))
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: default, or wherever the name is unique).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--details",
    is_flag=True,
    help="After istioctl's output, the Isthmus view: effective defaults and every rule.",
)
@STATE_DIR
def describe_command(
    kind: str, name: str, namespace: str | None, output: str, details: bool, state_dir: Path | None
) -> None:
    """What applies to a pod, workload or service: VirtualServices, DestinationRules and subsets,
    traffic policy and route defaults, PeerAuthentication, AuthorizationPolicies, gateways."""
    from isthmus.debug.describe import render_text
    from isthmus.debug.live import DebugError, Mesh

    try:
        data = Mesh(state_dir).describe(kind, name, namespace)
    except DebugError as exc:
        raise click.ClickException(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(render_text(data, details=details), nl=False)
