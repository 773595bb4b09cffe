"""`isthmus route test`: where would this request go (matched VirtualService and rule, cluster, subset,
endpoints, timeout, retries, faults), on the route table a proxy holds or would hold with candidate config.

Without `-f` the table is the proxy's own (Envoy's admin config dump, with EDS and host health). With
`-f FILE` (repeatable, a file, a directory or `-`) the control plane generates the proxy's config with the
candidate resources added to the running config (`POST /api/route-preview`: validated like `apply`,
nothing stored or pushed), and the same evaluation runs on it; the held table's answer is shown beside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from isthmus.cli.mesh_cmds import STATE_DIR, _read_inputs


def _headers(values: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for h in values:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} is not 'Name: value'", param_hint="-H")
        out.append((name.strip(), value.strip()))
    return out


def _gateway_ports(proxy: dict[str, Any], url_port: int) -> list[int]:
    """Real listener ports a gateway serves the URL's port on (declared port -> address port)."""
    ports = []
    for lst in proxy.get("listeners") or []:
        real = str(lst.get("address", "")).rsplit(":", 1)[-1]
        if lst.get("port") == url_port and real.isdigit():
            ports.append(int(real))
    ports.append(url_port)
    return ports


def _url_port(url: str) -> tuple[int, str, str]:
    """(port, host, scheme) of a URL as a client would dial it."""
    scheme, _, rest = url.partition("://") if "://" in url else ("http", "", url)
    hostport = rest.split("/", 1)[0].split("?", 1)[0]
    host, _, port = hostport.rpartition(":") if hostport.rsplit(":", 1)[-1].isdigit() else (hostport, "", "")
    default = 443 if scheme.lower() == "https" else 80
    return (int(port) if port else default), host, scheme.lower()


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    exp = result.get("expected") or {}
    return {
        "expected": exp,
        "virtualService": result.get("virtualService"),
        "route": (result.get("route") or {}).get("name"),
        "destinations": [
            {"cluster": d["name"], "percent": d.get("percent"), "exists": d.get("exists")}
            for d in result.get("destinations", [])
        ],
    }


@click.group("route")
def route_group() -> None:
    """Routing tools: `isthmus route test`."""


@route_group.command("test")
@click.argument("url")
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="WORKLOAD[/INSTANCE]",
    help="The proxy the request leaves from (a sidecar, or a gateway).",
)
@click.option("-n", "--namespace", help="Namespace of the --from workload.")
@click.option("-X", "--request", "method", metavar="METHOD", help="Method (default GET).")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Request header (repeatable); 'Host: x' sets the authority.",
)
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    metavar="FILE",
    help="Candidate config (file, directory or -), evaluated as if applied.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Also show the routes that did not match, and why.")
@STATE_DIR
def route_test_command(
    url: str,
    from_: str,
    namespace: str | None,
    method: str | None,
    headers: tuple[str, ...],
    files: tuple[str, ...],
    output: str,
    verbose: bool,
    state_dir: Path | None,
) -> None:
    """Where would a request to URL from WORKLOAD go? The matched virtual host, route, VirtualService
    rule, clusters (with the split), subsets, endpoints, timeout, retries, fault, mirror, rewrite and
    hash policy; or why it would get 404 NR / 503 NC / 503 UH."""
    from isthmus.debug import matching, route_test
    from isthmus.debug.live import DebugError, Mesh, vs_lookup_from

    mesh = Mesh(state_dir)
    try:
        proxy = mesh.find_proxy(from_, namespace)
        request = matching.request_from_url(url, method, _headers(headers))
        candidates: list[Any] = []
        candidate_text = ""
        if files:
            from isthmus.api import loader
            from isthmus.api.errors import ConfigErrors

            texts = _read_inputs(files)
            candidate_text = "\n---\n".join(t for _, t in texts)
            try:
                for name, text in texts:
                    candidates.extend(loader.load_text(text, name))
            except ConfigErrors as exc:
                raise click.ClickException("the candidate config is refused:\n" + str(exc)) from exc
        held = mesh.held_config(proxy)
        if proxy.get("kind") == "gateway":
            port, host, scheme = _url_port(url)
            sni = request.authority.split(":")[0] if scheme == "https" else None
            found = route_test.gateway_route_table(held, _gateway_ports(proxy, port), sni)
            table = found[0] if found else None  # with -f, the candidate may add the server
        else:
            table = "http_proxy"
        ctx = route_test.Context(
            proxy=proxy, vs_lookup=vs_lookup_from(mesh, candidates), instances_by_ip=mesh.instances_by_ip()
        )
        held_result = None
        if table is not None:
            held_result = route_test.evaluate(held, table, request, ctx)
        if files:
            config = mesh.preview_config(proxy, candidate_text)
            ctable = table
            if proxy.get("kind") == "gateway":
                port, host, scheme = _url_port(url)
                sni = request.authority.split(":")[0] if scheme == "https" else None
                found = route_test.gateway_route_table(config, _gateway_ports(proxy, port), sni)
                ctable = found[0] if found else None
            if ctable is None:
                raise DebugError(
                    f"gateway {proxy['instance']} would serve no HTTP route table on port {_url_port(url)[0]}"
                )
            result = route_test.evaluate(config, ctable, request, ctx)
            result["candidate"] = [f"{r.kind} {r.namespace}/{r.metadata.name}" for r in candidates]
            if held_result is not None:
                result["held"] = _summary(held_result)
        else:
            if held_result is None:
                raise DebugError(
                    f"gateway {proxy['instance']}.{proxy['namespace']} serves no HTTP route table on port "
                    f"{_url_port(url)[0]} (listeners: {', '.join(str(x.get('port')) for x in proxy.get('listeners') or [])})"
                )
            result = held_result
    except DebugError as exc:
        raise click.ClickException(str(exc)) from exc
    except route_test.RouteTestError as exc:
        raise click.ClickException(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps(result, indent=2))
        return
    text = route_test.render_text(result, verbose=verbose)
    if result.get("candidate"):
        text = f"{'Candidate:':<16}{', '.join(result['candidate'])}\n" + text
        held_s = result.get("held")
        if held_s is not None:
            exp = held_s["expected"]
            dests = ", ".join(
                f"{d['cluster']}" + (f" ({d['percent']:g}%)" if len(held_s["destinations"]) > 1 else "")
                for d in held_s["destinations"]
            )
            now = dests or f"{exp.get('status')} {exp.get('flags')}"
            if exp.get("status"):
                now = f"{exp.get('status')} {exp.get('flags')}" + (f" ({dests})" if dests else "")
            text += f"{'Currently:':<16}{now} (route {held_s['route'] or '-'})\n"
    click.echo(text, nl=False)
