"""`isthmus proxy-status` and `isthmus proxy-config`: istioctl's commands of those names."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import click

from isthmus.cli.api_client import call
from isthmus.cli.mesh_cmds import STATE_DIR

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG_TYPES = {
    "cluster": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
    "clusters": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
    "listener": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
    "listeners": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
    "route": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
    "routes": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
    "endpoint": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
    "endpoints": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
    "secret": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
    "secrets": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
    "bootstrap": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
}


def _status(state_dir: Path | None) -> dict[str, Any]:
    code, data = call(state_dir, "GET", "/api/status")
    if code != 200:
        raise click.ClickException(f"status failed: {data}")
    return data


def find_proxy(status: dict[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    """A proxy by id, instance, `instance.namespace`, or workload (its first instance)."""
    if "." in name and namespace is None and not name.count("~"):
        inst, _, ns = name.rpartition(".")
        candidates = [p for p in status["proxies"] if p["instance"] == inst and p["namespace"] == ns]
        if candidates:
            return candidates[0]
    for p in status["proxies"]:
        if namespace and p["namespace"] != namespace:
            continue
        if name in (p["id"], p["instance"]):
            return p
    for p in status["proxies"]:
        if (not namespace or p["namespace"] == namespace) and p["workload"] == name:
            return p
    known = ", ".join(sorted(f"{p['instance']}.{p['namespace']}" for p in status["proxies"]))
    raise click.ClickException(f"no proxy {name!r}; known proxies: {known}")


@click.command("proxy-status")
@click.argument("proxy", required=False)
@click.option("-n", "--namespace")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@STATE_DIR
def proxy_status_command(
    proxy: str | None, namespace: str | None, output: str, state_dir: Path | None
) -> None:
    """Sync state of every proxy: SYNCED (ACKed the latest), STALE (sent, not ACKed), NOT SENT."""
    status = _status(state_dir)
    proxies = status["proxies"]
    if proxy:
        proxies = [find_proxy(status, proxy, namespace)]
    if output == "json":
        click.echo(json.dumps(proxies, indent=2))
        return
    header = f"{'NAME':<40} {'CDS':<10} {'LDS':<10} {'EDS':<10} {'RDS':<10} {'VERSION':<10} {'ISTHMUS'}"
    click.echo(header)
    for p in proxies:
        sync = p.get("sync", {})
        click.echo(
            f"{p['instance'] + '.' + p['namespace']:<40} {sync.get('CDS', 'NOT SENT'):<10} {sync.get('LDS', 'NOT SENT'):<10} "
            f"{sync.get('EDS', 'NOT SENT'):<10} {sync.get('RDS', 'NOT SENT'):<10} {str(p.get('configVersion')):<10} "
            f"{status['configVersion']}"
        )
        for t, nack in (p.get("nacks") or {}).items():
            click.echo(f"  {t} NACK: {nack.get('message')}", err=True)


def _admin_get(url: str) -> Any:
    with _OPENER.open(url, timeout=10) as resp:
        return json.loads(resp.read())


@click.command("proxy-config")
@click.argument("config_type", type=click.Choice(sorted({*CONFIG_TYPES, "all"})))
@click.argument("proxy")
@click.option("-n", "--namespace")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@STATE_DIR
def proxy_config_command(
    config_type: str, proxy: str, namespace: str | None, output: str, state_dir: Path | None
) -> None:
    """What Envoy actually holds (from its admin config dump)."""
    status = _status(state_dir)
    p = find_proxy(status, proxy, namespace)
    base = f"http://{p['ip']}:{p['adminPort']}"
    dump = _admin_get(base + "/config_dump?include_eds")
    configs = dump.get("configs", [])
    if config_type != "all":
        wanted = CONFIG_TYPES[config_type]
        configs = [c for c in configs if c.get("@type") == wanted]
    if output == "json":
        click.echo(json.dumps(configs if config_type == "all" else (configs[0] if configs else {}), indent=2))
        return
    for c in configs:
        _print_table(c)


def _print_table(c: dict[str, Any]) -> None:
    t = c.get("@type", "")
    if t.endswith("ClustersConfigDump"):
        click.echo(f"{'NAME':<70} {'TYPE'}")
        for entry in c.get("static_clusters", []) + c.get("dynamic_active_clusters", []):
            cl = entry.get("cluster", {})
            click.echo(
                f"{cl.get('name', ''):<70} {cl.get('type', cl.get('cluster_type', {}).get('name', ''))}"
            )
    elif t.endswith("ListenersConfigDump"):
        click.echo(f"{'NAME':<30} {'ADDRESS':<25} {'CHAINS'}")
        for entry in c.get("static_listeners", []) + c.get("dynamic_listeners", []):
            lst = entry.get("listener") or entry.get("active_state", {}).get("listener", {})
            sa = lst.get("address", {}).get("socket_address", {})
            click.echo(
                f"{lst.get('name', ''):<30} {sa.get('address', '')}:{sa.get('port_value', ''):<10} {len(lst.get('filter_chains', []))}"
            )
    elif t.endswith("RoutesConfigDump"):
        click.echo(f"{'ROUTE CONFIG':<20} {'VIRTUAL HOST':<60} {'ROUTES'}")
        for entry in c.get("static_route_configs", []) + c.get("dynamic_route_configs", []):
            rc = entry.get("route_config", {})
            for vh in rc.get("virtual_hosts", []):
                click.echo(f"{rc.get('name', ''):<20} {vh.get('name', ''):<60} {len(vh.get('routes', []))}")
    elif t.endswith("EndpointsConfigDump"):
        click.echo(f"{'ENDPOINT':<25} {'STATUS':<10} {'CLUSTER'}")
        for entry in c.get("dynamic_endpoint_configs", []) + c.get("static_endpoint_configs", []):
            cfg = entry.get("endpoint_config", {})
            for group in cfg.get("endpoints", []):
                for lb in group.get("lb_endpoints", []):
                    sa = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
                    click.echo(
                        f"{sa.get('address', '')}:{sa.get('port_value', ''):<10} {lb.get('health_status', 'HEALTHY'):<10} "
                        f"{cfg.get('cluster_name', '')}"
                    )
    else:
        click.echo(json.dumps(c, indent=2))
