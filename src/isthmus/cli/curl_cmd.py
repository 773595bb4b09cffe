"""``isthmus curl``: send requests from a workload of the running mesh, as its app would."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from isthmus.client.http import DEFAULT_TIMEOUT, UrlError, parse_header, parse_url


def _read_body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data.startswith("@") and len(data) > 1:
        name = data[1:]
        if name == "-":
            return sys.stdin.buffer.read()
        try:
            return Path(name).read_bytes()
        except OSError as e:
            raise click.BadParameter(f"cannot read {name}: {e}", param_hint="-d") from e
    return data.encode()


@click.command(
    "curl",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="""Send a request (or --count N requests) from a workload of the running mesh through its
sidecar, as its app would: the path is sent exactly as given, -H 'Host: x' overrides the authority,
empty header values are sent. tcp://HOST:PORT opens a CONNECT tunnel, sends -d as one line and prints
the line that comes back. Without a sidecar, requests go straight to the destination (mesh host
names are resolved by the control plane).""",
)
@click.argument("url")
@click.option("--from", "from_", metavar="WORKLOAD[/INSTANCE]", help="Workload (and instance) to send from.")
@click.option("-n", "--namespace", help="Namespace of the --from workload.")
@click.option("-X", "--request", "method", metavar="METHOD", help="Method (default GET, POST with -d).")
@click.option(
    "-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="Request header (repeatable)."
)
@click.option("-d", "--data", metavar="BODY", help="Request body (@FILE reads a file, @- stdin).")
@click.option("--count", type=click.IntRange(min=1), help="Send N requests and print a summary.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--qps", type=click.FloatRange(min=0.0, min_open=True), help="Pace requests to this rate.")
@click.option(
    "--timeout", type=click.FloatRange(min=0.0, min_open=True), default=DEFAULT_TIMEOUT, show_default=True
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="Mesh state dir (default $ISTHMUS_STATE_DIR)."
)
@click.option("--proxy", metavar="URL", help="Send through this HTTP proxy instead of a workload's sidecar.")
@click.option("--direct", is_flag=True, help="Connect straight to the URL's host (no mesh, no proxy).")
def curl_command(
    url: str,
    from_: str | None,
    namespace: str | None,
    method: str | None,
    headers: tuple[str, ...],
    data: str | None,
    count: int | None,
    concurrency: int,
    qps: float | None,
    timeout: float,
    output: str,
    state_dir: str | None,
    proxy: str | None,
    direct: bool,
) -> None:
    from isthmus.client.mesh import MeshError, find_source, is_ip, resolve

    try:
        target = parse_url(url)
        header_list = [parse_header(h) for h in headers]
    except (UrlError, ValueError) as e:
        raise click.BadParameter(str(e)) from e
    body = _read_body(data)
    method = (method or ("POST" if body is not None else "GET")).upper()

    connect_to: list[str] | None = None
    source_ip: str | None = None
    if proxy or direct:
        if proxy and direct:
            raise click.UsageError("--proxy and --direct exclude each other")
        if from_:
            raise click.UsageError("--from excludes --proxy and --direct")
    else:
        if not from_:
            raise click.UsageError("--from WORKLOAD[/INSTANCE] is required (or --proxy URL / --direct)")
        workload, _, instance = from_.partition("/")
        try:
            source = find_source(state_dir, workload, instance or None, namespace)
        except MeshError as e:
            raise click.ClickException(str(e)) from e
        proxy = source.proxy_url
        source_ip = source.ip or None
        if proxy is None and not is_ip(target.host) and target.host != "localhost":
            try:
                addresses = resolve(source.api, target.host, target.port, source.namespace)
            except MeshError:
                addresses = []  # not a mesh host (or no resolver): the system resolves it
            connect_to = addresses or None

    kwargs = {
        "proxy": proxy,
        "method": method,
        "headers": header_list,
        "body": body,
        "timeout": timeout,
        "connect_to": connect_to,
        "source_ip": source_ip,
    }
    if count is None:
        _single(url, target.scheme == "tcp", output, kwargs)
    else:
        _load(url, output, count, concurrency, qps, kwargs)


def _single(url: str, tcp: bool, output: str, kwargs: dict) -> None:
    from isthmus.client.http import request
    from isthmus.client.output import format_response

    resp = asyncio.run(request(url, **kwargs))
    if output == "json":
        click.echo(json.dumps(resp.to_dict(), indent=2))
    elif resp.status:
        click.echo(format_response(resp, include_head=not (tcp and resp.status == 200)), nl=False)
    if resp.error:
        click.echo(f"isthmus curl: {resp.error}", err=True)
    sys.exit(0 if resp.status else 1)


def _load(url: str, output: str, count: int, concurrency: int, qps: float | None, kwargs: dict) -> None:
    from rich.console import Console

    from isthmus.client.load import run_load
    from isthmus.client.output import print_summary

    result = asyncio.run(run_load(url, count=count, concurrency=concurrency, qps=qps, **kwargs))
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_summary(result, Console())
    sys.exit(0 if not result.failed else 1)
