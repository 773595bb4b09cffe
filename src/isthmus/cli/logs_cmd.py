"""`isthmus logs WORKLOAD [-f]`: a workload's access-log lines (its proxies'), or its app's own log.

Access logs come from the control plane (``GET /api/logs``), which keeps the last entries every proxy
streamed over the gRPC access-log service and renders them in Istio's format (MeshConfig
accessLogEncoding / accessLogFormat; TEXT by default), whether or not accessLogFile is set: this is what
``kubectl logs POD -c istio-proxy`` shows in Istio. ``--app`` shows the application's stdout/stderr
instead (``<state-dir>/pods/<ns>/<instance>/app.log``), like ``kubectl logs POD``.

WORKLOAD is a workload name (every instance, merged in time order), an instance name, or
``WORKLOAD/INSTANCE``. Proxies that keep their metrics themselves (the default) only send the entries of
failed and gRPC requests; a note on stderr says so. ``ISTHMUS_PROXY_METRICS: "false"`` (MeshConfig
``defaultConfig.proxyMetadata`` or a ProxyConfig's ``environmentVariables``) logs every request.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click

from isthmus.cli.api_client import api_base, call
from isthmus.mesh.state import resolve_state_dir

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _split(workload: str) -> tuple[str, str | None]:
    if "/" in workload:
        name, _, instance = workload.partition("/")
        return name, instance or None
    return workload, None


def _error_of(err: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(err.read() or b"{}").get("error") or err)
    except ValueError:
        return str(err)


def _stream_access_logs(
    state_dir: Path | None,
    workload: str,
    namespace: str,
    *,
    follow: bool,
    tail: int | None,
    output: str | None,
    prefix: bool,
) -> None:
    name, instance = _split(workload)
    params = {"workload": name, "namespace": namespace, "follow": "1" if follow else None}
    if instance:
        params["instance"] = instance
    if tail is not None and tail >= 0:
        params["tail"] = str(tail)
    if output:
        params["format"] = output
    if prefix:
        params["prefix"] = "1"
    url = (
        api_base(state_dir)
        + "/api/logs?"
        + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    )
    try:
        with _OPENER.open(url, timeout=None if follow else 30) as resp:
            out = sys.stdout
            for raw in resp:
                out.write(raw.decode("utf-8", "replace"))
                if follow:
                    out.flush()
    except urllib.error.HTTPError as e:
        raise click.ClickException(_error_of(e)) from e
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(f"cannot reach the mesh at {url}: {getattr(e, 'reason', e)}") from e


def _in_proxy_metrics(state_dir: Path | None, workload: str, namespace: str) -> list[str]:
    """Instances of the workload whose proxies keep their metrics themselves (the in-proxy module, on
    unless ISTHMUS_PROXY_METRICS is "false"): their access log only carries failed and gRPC requests."""
    name, instance = _split(workload)
    try:
        code, data = call(state_dir, "GET", "/api/status")
    except click.ClickException:
        return []
    if code != 200:
        return []
    return [
        p["instance"]
        for p in data.get("proxies", [])
        if p.get("namespace") == namespace
        and name in (p.get("workload"), p.get("instance"))
        and instance in (None, p.get("instance"))
        and (p.get("metrics") or {}).get("pipeline") == "proxy"
    ]


def _instances(state_dir: Path | None, workload: str, namespace: str) -> list[str]:
    name, instance = _split(workload)
    if instance:
        return [instance]
    names: list[str] = []
    try:
        code, data = call(state_dir, "GET", "/api/status")
        if code == 200:
            for inst in data.get("instances", []):
                if inst.get("namespace") == namespace and name in (
                    inst.get("workload"),
                    inst.get("instance"),
                ):
                    names.append(inst["instance"])
    except click.ClickException:
        pass
    if names:
        return names
    # The mesh may be gone: look at what it left in the state dir.
    pods = resolve_state_dir(state_dir) / "pods" / namespace
    if (pods / name).is_dir():
        return [name]
    return sorted(p.name for p in pods.glob(f"{name}-*") if p.is_dir() and p.name[len(name) + 1 :].isdigit())


def _app_logs(
    state_dir: Path | None, workload: str, namespace: str, *, follow: bool, tail: int | None, prefix: bool
) -> None:
    instances = _instances(state_dir, workload, namespace)
    base = resolve_state_dir(state_dir) / "pods" / namespace
    files = {i: base / i / "app.log" for i in instances if (base / i / "app.log").exists()}
    if not files:
        raise click.ClickException(f"no app log for {namespace}/{workload} under {base}")
    multi = prefix or len(files) > 1
    positions: dict[str, int] = {}
    for inst, path in files.items():
        data = path.read_bytes()
        lines = data.decode("utf-8", "replace").splitlines(keepends=True)
        if tail is not None and tail >= 0:
            lines = lines[-tail:] if tail else []
        for line in lines:
            click.echo((f"[{inst}] " if multi else "") + line, nl=not line.endswith("\n"))
        positions[inst] = len(data)
    while follow:
        time.sleep(0.2)
        for inst, path in files.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < positions[inst]:
                positions[inst] = 0  # truncated or replaced
            if size > positions[inst]:
                with path.open("rb") as f:
                    f.seek(positions[inst])
                    chunk = f.read(size - positions[inst])
                cut = chunk.rfind(b"\n") + 1
                if not cut:
                    continue
                positions[inst] += cut
                for line in chunk[:cut].decode("utf-8", "replace").splitlines(keepends=True):
                    click.echo((f"[{inst}] " if multi else "") + line, nl=False)
        sys.stdout.flush()


@click.command("logs")
@click.argument("workload")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they arrive.")
@click.option(
    "--tail", type=int, default=None, help="Only the last N lines (default: all kept, 100 with -f)."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Access-log encoding (default: MeshConfig's).",
)
@click.option("--prefix", is_flag=True, help="Prefix each line with its instance name.")
@click.option(
    "--app", "app", is_flag=True, help="The application's own log instead of its proxy's access log."
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar="ISTHMUS_STATE_DIR",
    help="The mesh's state dir (default $ISTHMUS_STATE_DIR, else ~/.local/state/isthmus).",
)
def logs_command(
    workload: str,
    namespace: str,
    follow: bool,
    tail: int | None,
    output: str | None,
    prefix: bool,
    app: bool,
    state_dir: Path | None,
) -> None:
    """Access-log lines of WORKLOAD's proxies, in Istio's format (or its app's log with --app)."""
    try:
        if app:
            _app_logs(state_dir, workload, namespace, follow=follow, tail=tail, prefix=prefix)
        else:
            quiet = _in_proxy_metrics(state_dir, workload, namespace)
            if quiet:
                click.echo(
                    f"note: {', '.join(quiet)} keep their metrics in the proxy: only failed requests "
                    "(status >= 400 or a response flag) and gRPC requests are logged "
                    '(ISTHMUS_PROXY_METRICS: "false" in proxyMetadata logs every request)',
                    err=True,
                )
            _stream_access_logs(
                state_dir, workload, namespace, follow=follow, tail=tail, output=output, prefix=prefix
            )
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        sys.stderr.close()
