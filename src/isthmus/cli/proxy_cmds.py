"""`isthmus proxy-status` and `isthmus proxy-config`: istioctl's commands of those names."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import click

from isthmus import __version__
from isthmus.cli.api_client import call
from isthmus.cli.mesh_cmds import STATE_DIR
from isthmus.debug import config_compare
from isthmus.debug import proxy_config as pc

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(state_dir: Path | None) -> dict[str, Any]:
    code, data = call(state_dir, "GET", "/api/status")
    if code != 200:
        raise click.ClickException(f"status failed: {data}")
    return data


def find_proxy(status: dict[str, Any], name: str, namespace: str | None) -> dict[str, Any]:
    """A proxy by id, instance, `instance.namespace`, workload or `workload.namespace` (a workload's
    first instance). Without a namespace, the `default` namespace wins a tie, as with istioctl."""
    proxies = sorted(status["proxies"], key=lambda p: (p["namespace"] != "default", p["instance"]))
    if "." in name and namespace is None and not name.count("~"):
        inst, _, ns = name.rpartition(".")
        for key in ("instance", "workload"):
            candidates = [p for p in proxies if p[key] == inst and p["namespace"] == ns]
            if candidates:
                return candidates[0]
    in_namespace = [p for p in proxies if not namespace or p["namespace"] == namespace]
    for p in in_namespace:
        if name in (p["id"], p["instance"]):
            return p
    for p in in_namespace:
        if p["workload"] == name:
            return p
    known = ", ".join(sorted(f"{p['instance']}.{p['namespace']}" for p in status["proxies"]))
    raise click.ClickException(f"no proxy {name!r}; known proxies: {known}")


def route_sync(sync: Mapping[str, str]) -> str:
    """The RDS column: a delta sidecar's table comes as RDS plus its virtual hosts over VHDS, so it is
    only as synced as the less synced of the two (STALE, then NOT SENT, then SYNCED)."""
    states = [sync.get("RDS", "NOT SENT")] + ([sync["VHDS"]] if "VHDS" in sync else [])
    for state in ("STALE", "NOT SENT"):
        if state in states:
            return state
    return states[0]


# istiod's cluster ID when it runs in a single Kubernetes cluster: Isthmus runs one mesh, one "cluster".
DEFAULT_CLUSTER_ID = "Kubernetes"
# The xDS types of istioctl's proxy-status columns, in its order.
STATUS_TYPES = ("CDS", "LDS", "EDS", "RDS", "ECDS")
# istioctl's word for a type the proxy does not watch (istiod reports it with status UNKNOWN).
IGNORED = "IGNORED"


def type_sync(sync: Mapping[str, str], xds_type: str) -> str:
    """One sync column: SYNCED / STALE / NOT SENT for a type the proxy subscribed to, IGNORED for one
    it did not (as istioctl shows ECDS for a proxy without filters over ECDS)."""
    if xds_type == "RDS" and ("RDS" in sync or "VHDS" in sync):
        return route_sync(sync)
    return sync.get(xds_type, IGNORED)


def status_table(status: Mapping[str, Any], proxies: list[Mapping[str, Any]]) -> pc.Table:
    """istioctl's proxy-status table (istioctl/pkg/writer/pilot/status.go): NAME is the proxy ID
    `pod.namespace`, rows sorted by it; ISTIOD names the control plane the proxy is connected to (its
    xDS address) and VERSION the version of the control plane software that configured it."""
    istiod = str((status.get("controlPlane") or {}).get("xds", ""))
    rows = [
        [
            f"{p['instance']}.{p['namespace']}",
            DEFAULT_CLUSTER_ID,
            *(type_sync(p.get("sync") or {}, t) for t in STATUS_TYPES),
            istiod,
            __version__,
        ]
        for p in proxies
    ]
    rows.sort(key=lambda r: r[0])
    return pc.Table(["NAME", "CLUSTER", *STATUS_TYPES, "ISTIOD", "VERSION"], rows)


@click.command("proxy-status")
@click.argument("proxy", required=False)
@click.option("-n", "--namespace")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@STATE_DIR
def proxy_status_command(
    proxy: str | None, namespace: str | None, output: str, state_dir: Path | None
) -> None:
    """Sync state of every proxy: SYNCED (ACKed the latest), STALE (sent, not ACKed), NOT SENT,
    IGNORED (a type the proxy does not subscribe to).

    With PROXY, as istioctl: the control plane's config for it (what it last pushed) against its
    Envoy's config dump, "Clusters Match" / "Listeners Match" / "Routes Match (RDS last loaded at
    ...)" or a diff per type ("--- Istiod Routes" / "+++ Envoy Routes"). `-o json` prints its status
    entry instead."""
    status = _status(state_dir)
    proxies = status["proxies"]
    if proxy:
        proxies = [find_proxy(status, proxy, namespace)]
        if output != "json":
            # istioctl's proxy-status <pod>: the control plane's config against the Envoy's, per type.
            for line in compare_proxy(state_dir, proxies[0]):
                click.echo(line)
            return
    if output == "json":
        click.echo(json.dumps(proxies, indent=2))
        return
    click.echo(status_table(status, proxies).render())
    for p in proxies:
        for t, nack in (p.get("nacks") or {}).items():
            click.echo(f"{p['instance']}.{p['namespace']} {t} NACK: {nack.get('message')}", err=True)


def compare_proxy(state_dir: Path | None, p: Mapping[str, Any]) -> list[str]:
    """istioctl's `proxy-status <pod>` (statusCmd with a pod: compare.NewComparator(...).Diff()): the
    control plane's config dump for the proxy (what it last pushed) against the proxy's admin config
    dump, as "Clusters Match" / "Listeners Match" / "Routes Match (RDS last loaded at ...)" or diffs."""
    code, istiod = call(state_dir, "GET", "/debug/config_dump", params={"proxy": p["id"]})
    if code != 200:
        error = istiod.get("error") if isinstance(istiod, dict) else istiod
        raise click.ClickException(f"config dump of {p['instance']}.{p['namespace']} failed: {error}")
    envoy = _admin_get(f"http://{p['ip']}:{p['adminPort']}/config_dump")
    return config_compare.compare(istiod, envoy)


def _admin_text(url: str) -> str:
    try:
        with _OPENER.open(url, timeout=10) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {url}: {exc}") from exc


def _admin_get(url: str) -> Any:
    text = _admin_text(url)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"cannot read {url}: {exc}") from exc


TYPE_CHOICES = sorted({*pc.SECTIONS, *pc.ALIASES, "all"})
# The types whose command reads one section of the config dump and fails without it, as istioctl's.
_REQUIRED_SECTION = ("cluster", "listener", "route", "secret", "bootstrap", "ecds")


@click.command("proxy-config")
@click.argument("config_type", metavar="TYPE", type=click.Choice(TYPE_CHOICES))
@click.argument("proxy", required=False)
@click.option("-n", "--namespace")
@click.option(
    "-f",
    "--file",
    "dump_file",
    type=click.File("r"),
    help="Read a saved Envoy config dump (`/clusters?format=json` for endpoint) instead of a proxy; - is stdin.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["short", "table", "json", "yaml"]),
    help="short (default; json for bootstrap, as istioctl), json or yaml.",
)
@click.option("--fqdn", help="cluster: only clusters whose name contains this FQDN.")
@click.option("--subset", help="cluster: only clusters whose name contains this subset.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), help="cluster: only this direction.")
@click.option("--port", type=int, help="cluster, listener, endpoint: only this port.")
@click.option("--address", help="listener, endpoint: only this address.")
@click.option("--type", "listener_type", help="listener: HTTP, TCP, HTTP+TCP or UNKNOWN.")
@click.option("--name", help="route: only the route config of this name.")
@click.option("--cluster", help="endpoint: only endpoints of this cluster.")
@click.option(
    "--status", help="endpoint: only endpoints of this EDS health status (HEALTHY, UNHEALTHY, ...)."
)
@click.option(
    "--verbose/--no-verbose",
    default=True,
    help="listener, route: one row per filter chain / route (default), or one per listener / route config.",
)
@STATE_DIR
def proxy_config_command(
    config_type: str,
    proxy: str | None,
    namespace: str | None,
    dump_file: TextIO | None,
    output: str | None,
    fqdn: str | None,
    subset: str | None,
    direction: str | None,
    port: int | None,
    address: str | None,
    listener_type: str | None,
    name: str | None,
    cluster: str | None,
    status: str | None,
    verbose: bool,
    state_dir: Path | None,
) -> None:
    """What Envoy actually holds, as istioctl's `proxy-config` shows it.

    TYPE is cluster, listener, route, endpoint, secret, ecds (filters received over ECDS), bootstrap
    or all. Tables come from the admin config dump; `endpoint` from the admin `/clusters`, so its
    STATUS and OUTLIER CHECK are Envoy's live view (`all` lists the dump's EDS endpoints instead).
    `-o json|yaml` prints the entries the filters select, marshalled as istioctl does (proto3 JSON
    names); `all -o json` the dump as read. PROXY, or `--file` with what those admin endpoints
    returned.
    """
    filters = pc.Filters(
        fqdn=fqdn,
        subset=subset,
        direction=direction,
        port=port,
        address=address,
        type=listener_type,
        name=name,
        cluster=cluster,
        status=status,
    )
    wrong = pc.misapplied_filters(config_type, filters)
    if wrong:
        flags = ", ".join("--" + w for w in wrong)
        raise click.UsageError(f"{flags}: not a filter of proxy-config {config_type}")
    kind = pc.canonical_type(config_type)
    if (proxy is None) == (dump_file is None):
        # istioctl's Args check: "cluster requires pod name or --file parameter".
        raise click.UsageError(f"{kind} requires a proxy name or the --file parameter")
    # istioctl's bootstrap prints the JSON unless asked for the short version summary.
    output = output or ("json" if kind == "bootstrap" else "short")
    structured = output in ("json", "yaml")
    dump: dict[str, Any] = {}
    clusters_json: dict[str, Any] | None = None
    # `all -o json|yaml` prints the dump as read (istioctl's allConfigCmd), not re-marshalled.
    raw_dump: str | None = None
    if dump_file is not None:
        try:
            raw_dump = dump_file.read()
            data = json.loads(raw_dump)
        except ValueError as exc:
            raise click.ClickException(f"cannot parse {dump_file.name}: {exc}") from exc
        if kind == "endpoint":
            clusters_json = data
        else:
            dump = data
    else:
        assert proxy is not None
        p = find_proxy(_status(state_dir), proxy, namespace)
        base = f"http://{p['ip']}:{p['adminPort']}"
        # `endpoint` reads /clusters (live health and outlier ejection); everything else the config
        # dump with EDS, `all`'s endpoint table included (as istioctl's PrintFullSummary); `all -o
        # json` prints that dump (istioctl's allConfigCmd fetches it with edsPath as well).
        if kind == "endpoint":
            clusters_json = _admin_get(base + "/clusters?format=json")
        elif kind == "all" and structured:
            raw_dump = _admin_text(base + "/config_dump?include_eds")
            try:
                dump = json.loads(raw_dump)
            except ValueError as exc:
                raise click.ClickException(f"cannot read {base}/config_dump: {exc}") from exc
        else:
            dump = _admin_get(base + "/config_dump?include_eds")
    if kind in _REQUIRED_SECTION and pc.section(dump, kind) is None:
        # istioctl's configdump Wrapper.getSection error, for a dump without that section.
        raise click.ClickException(
            f"config dump has no configuration type type.googleapis.com/envoy.admin.v3.{pc.SECTIONS[kind]}"
        )
    if structured:
        # istioctl's Fprintln: JSON then a newline; JSONToYAML's text (ending in one) then another.
        text = pc.structured(
            kind, dump, clusters_json, filters, output, raw_dump=raw_dump, from_proxy=dump_file is None
        )
        click.echo(text)
        return
    if kind == "bootstrap":
        click.echo(pc.version_summary(dump))
        return
    click.echo(pc.summary(kind, dump, clusters_json, filters, verbose=verbose))
