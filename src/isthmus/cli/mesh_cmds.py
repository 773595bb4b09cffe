"""`isthmus status`, `apply`, `delete`, `get`, `restart`: commands on the running mesh's config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from isthmus.cli.api_client import call

STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar="ISTHMUS_STATE_DIR",
    help="The mesh's state dir (default $ISTHMUS_STATE_DIR, else ~/.local/state/isthmus).",
)

# kubectl/istioctl short names; every kind also answers to its name, plural and `plural.group` forms
# (see `resolve_kind`), as `kubectl get` accepts them.
SHORT_NAMES = {
    "vs": "VirtualService", "dr": "DestinationRule", "gw": "Gateway", "se": "ServiceEntry",
    "we": "WorkloadEntry", "wg": "WorkloadGroup", "svc": "Service", "ns": "Namespace",
    "pa": "PeerAuthentication", "ap": "AuthorizationPolicy", "ra": "RequestAuthentication",
    "telemetry": "Telemetry", "deploy": "Deployment", "po": "Pod", "ing": "Ingress",
}  # fmt: skip


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"  # serviceentry -> serviceentries, authorizationpolicy -> ...policies
    return word + ("es" if word.endswith("s") else "s")


def _kind_aliases() -> dict[str, str]:
    from isthmus.api.kinds import BY_KIND

    out: dict[str, str] = {}
    for kind, info in BY_KIND.items():
        for name in (kind.lower(), _plural(kind.lower())):
            out[name] = kind
            if info.group:
                out[f"{name}.{info.group}"] = kind  # virtualservices.networking.istio.io
    out.update(SHORT_NAMES)
    return out


KIND_ALIASES = _kind_aliases()


def resolve_kind(kind: str) -> str:
    """A kind as `kubectl get` takes it (VirtualService, virtualservices, vs, vs.networking.istio.io)."""
    key = kind.lower()
    if key in KIND_ALIASES:
        return KIND_ALIASES[key]
    short, _, group = key.partition(".")
    if group and short in SHORT_NAMES:
        return SHORT_NAMES[short]
    raise click.BadParameter(
        f"unknown kind {kind!r} (known: {', '.join(sorted(set(KIND_ALIASES.values())))})", param_hint="KIND"
    )


def _read_inputs(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for name in paths:
        if name == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            out.extend((str(p), p.read_text()) for p in files)
        elif path.exists():
            out.append((str(path), path.read_text()))
        else:
            raise click.BadParameter(f"{name}: no such file or directory", param_hint="-f")
    if not out:
        raise click.BadParameter(f"no .yaml/.yml file in {', '.join(paths)}", param_hint="-f")
    return out


def _sync_summary(sync: dict[str, str]) -> str:
    """SYNCED when the proxy ACKed the latest of every type it subscribed to, else the types that lag."""
    if not sync:
        return ""
    lagging = [f"{t}:{s}" for t, s in sorted(sync.items()) if s != "SYNCED"]
    return " ".join(lagging) or "SYNCED"


@click.command("status")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@STATE_DIR
def status_command(output: str, state_dir: Path | None) -> None:
    """What runs where in the running mesh."""
    code, data = call(state_dir, "GET", "/api/status")
    if code != 200:
        raise click.ClickException(f"status failed: {data}")
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("NAMESPACE", "INSTANCE", "KIND", "ADDRESS", "PORTS", "STATE", "RESTARTS", "SYNC"):
        table.add_column(col)
    proxies = {p["instance"]: p for p in data["proxies"]}
    for inst in data["instances"]:
        proxy = proxies.get(inst["instance"])
        if proxy and proxy["kind"] == "gateway":
            ports = ", ".join(f"{lst['port']}->{lst['address']}" for lst in proxy["listeners"])
        else:
            ports = ", ".join(str(p["port"]) for p in inst["ports"])
        sync = _sync_summary((proxy or {}).get("sync", {}))
        table.add_row(
            inst["namespace"],
            inst["instance"],
            proxy["kind"] if proxy else "no sidecar",
            inst["ip"],
            ports,
            inst.get("state", ""),
            str(inst.get("restarts", 0)),
            sync,
        )
    # Piped, rich would fit the table into 80 columns and cut the names; the JSON output is for scripts.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    cp = data["controlPlane"]
    click.echo(f"control plane: xDS {cp['xds']}, API {cp['api']}; config version {data['configVersion']}")
    if (cp.get("ca") or {}).get("reloadError"):
        click.echo(
            f"plug-in CA update refused (the CA keeps its bundle): {cp['ca']['reloadError']}", err=True
        )
    for source, errs in (data.get("configErrors") or {}).items():
        click.echo(f"refused {source}:", err=True)
        for e in errs:
            click.echo(f"  {e}", err=True)
    # Accepted config the proxies do not get as written (left out, or a stand-in such as the fake key
    # set of a RequestAuthentication whose JWKS could not be fetched), and why.
    for what, why in sorted((data.get("generationErrors") or {}).items()):
        click.echo(f"not applied as written: {what}: {why}", err=True)


def _send(state_dir: Path | None, path: str, inputs: list[tuple[str, str]], wait: float | None) -> int:
    failed = 0
    for filename, text in inputs:
        params = {"filename": filename, "wait": wait}
        code, data = call(
            state_dir, "POST", path, params=params, body=text.encode(), timeout=(wait or 0) + 30
        )
        if code != 200:
            failed += 1
            for err in (data or {}).get("errors", [data]):
                click.echo(f"error: {err}", err=True)
            continue
        for line in data.get("applied", []) + data.get("deleted", []):
            click.echo(line)
        for nf in data.get("notFound", []):
            click.echo(f"not found: {nf}", err=True)
        for w in data.get("warnings", []):
            click.echo(f"warning: {w}", err=True)
        if wait and data.get("warming"):
            click.echo(
                f"warning: listeners are still warming on {', '.join(data['warming'])}: they wait for a TLS "
                "certificate (does the Gateway's credentialName name a Secret?)",
                err=True,
            )
        if wait and data.get("synced") is False:
            click.echo(
                f"timed out after {wait}s waiting for every proxy to ACK version {data['version']}", err=True
            )
            for pending in data.get("pending", []):
                lagging = " ".join(f"{t}:{s}" for t, s in sorted(pending.get("sync", {}).items()))
                click.echo(f"  {pending['proxy']}: {lagging or 'not connected'}", err=True)
                for name, why in sorted(pending.get("secretsWaiting", {}).items()):
                    click.echo(f"    waits for secret {name}: {why}", err=True)
            failed += 1
        elif wait and data.get("synced"):
            click.echo(f"config version {data['version']} ACKed by every proxy")
    return failed


@click.command("apply")
@click.option(
    "-f", "--filename", "files", multiple=True, required=True, help="File, directory, or - for stdin."
)
@click.option(
    "--wait",
    is_flag=False,
    flag_value=30.0,
    default=None,
    type=float,
    help="Return once every proxy has ACKed the change and its new listeners serve (optional timeout in "
    "seconds, default 30; a listener still waiting for its certificate after 2 s is reported).",
)
@STATE_DIR
def apply_command(files: tuple[str, ...], wait: float | None, state_dir: Path | None) -> None:
    """Create or update resources in the running mesh. Invalid input is refused whole."""
    inputs = _read_inputs(files)
    combined = "\n---\n".join(text for _, text in inputs)
    name = inputs[0][0] if len(inputs) == 1 else ",".join(n for n, _ in inputs)
    if _send(state_dir, "/api/apply", [(name, combined)], wait):
        sys.exit(1)


@click.command("delete")
@click.option(
    "-f", "--filename", "files", multiple=True, required=True, help="File, directory, or - for stdin."
)
@click.option("--wait", is_flag=False, flag_value=30.0, default=None, type=float)
@STATE_DIR
def delete_command(files: tuple[str, ...], wait: float | None, state_dir: Path | None) -> None:
    """Delete the resources named in the given files from the running mesh."""
    inputs = _read_inputs(files)
    # One request for all files, as apply does: an invalid file refuses the whole delete, nothing changes.
    combined = "\n---\n".join(text for _, text in inputs)
    name = inputs[0][0] if len(inputs) == 1 else ",".join(n for n, _ in inputs)
    if _send(state_dir, "/api/delete", [(name, combined)], wait):
        sys.exit(1)


@click.command("get")
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace")
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table")
@STATE_DIR
def get_command(
    kind: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    state_dir: Path | None,
) -> None:
    """List resources of a kind (e.g. `isthmus get vs`, `isthmus get dr reviews -o yaml`)."""
    resolved = resolve_kind(kind)
    ns = None if all_namespaces else (namespace or None)
    code, items = call(
        state_dir, "GET", "/api/resources", params={"kind": resolved, "namespace": ns, "name": name}
    )
    if code != 200:
        raise click.ClickException(str(items))
    if name and not items:
        raise click.ClickException(f'{resolved} "{name}" not found')
    # As kubectl: one object for KIND NAME, else a v1 List, in both formats (one YAML document, so that
    # yaml.safe_load reads it as json.loads reads the JSON).
    doc = items[0] if name and len(items) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if output == "yaml":
        click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
        return
    click.echo(f"{'NAMESPACE':<20} {'NAME':<40} {'SOURCE'}")
    for item in items:
        md = item["metadata"]
        click.echo(f"{md.get('namespace', ''):<20} {md['name']:<40} {item['status'].get('source', '')}")


@click.command("restart")
@click.argument("workload")
@click.option("-n", "--namespace", default="default")
@STATE_DIR
def restart_command(workload: str, namespace: str, state_dir: Path | None) -> None:
    """Rolling restart: each instance is replaced once its successor is ready, then drained."""
    code, data = call(
        state_dir, "POST", "/api/restart", params={"workload": workload, "namespace": namespace}, timeout=600
    )
    if code != 200:
        raise click.ClickException(str(data.get("error", data)))
    for entry in data.get("instances", []):
        left = entry.get("connectionsLeft")
        click.echo(
            f"  {entry['old']} -> {entry['new']}: new instance ready in {entry['startMs']:.0f} ms, "
            f"old left the endpoints in {entry.get('leftEndpointsMs', 0):.0f} ms, drained in "
            f"{entry.get('drainedMs', 0):.0f} ms"
            + (f" ({left} connections cut at terminationDrainDuration)" if left else "")
        )
    click.echo(f"restarted {data['restarted']}")
