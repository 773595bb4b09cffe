"""Build snapshots and proxies from YAML for generator tests."""

from __future__ import annotations

import textwrap
from typing import Any

from google.protobuf.json_format import MessageToDict

from isthmus.api import loader
from isthmus.config.jwks_resolver import file_entries
from isthmus.config.store import Store
from isthmus.model import jwks
from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod
from isthmus.xds.gen import naming
from isthmus.xds.gen.generator import MeshGenerator

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: other}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

PODS = [
    Pod("reviews-v1-0", "default", "127.7.0.2", {"app": "reviews", "version": "v1"}, workload="reviews-v1", service_account="reviews", app_ports={9080: 40001}),
    Pod("reviews-v2-0", "default", "127.7.0.3", {"app": "reviews", "version": "v2"}, workload="reviews-v2", service_account="reviews", app_ports={9080: 40002}),
    Pod("ratings-v1-0", "other", "127.7.0.4", {"app": "ratings", "version": "v1"}, workload="ratings-v1", app_ports={9080: 40003, 5432: 40004}),
    Pod("web-0", "default", "127.7.0.5", {"app": "web", "version": "v1"}, workload="web", app_ports={8080: 40005}),
]  # fmt: skip


def configs(*docs: str, services: bool = True) -> list[Any]:
    """The store's configs for these YAML documents (after SERVICES unless `services` is False)."""
    text = "\n---\n".join(textwrap.dedent(d) for d in ((SERVICES,) if services else ()) + docs)
    store = Store()
    store.apply(loader.load_text(text, "test.yaml"), "test")
    return store.list()


def snapshot(*docs: str, pods: list[Pod] | None = None, services: bool = True) -> Snapshot:
    """The snapshot of these documents, with the file:// key sets they name read into `jwks` as the
    control plane's JWKS resolver reads them (the generators read no file; fetched keys stay absent)."""
    snap = Snapshot.build(1, configs(*docs, services=services), PODS if pods is None else pods)
    snap.jwks = file_entries(jwks.wanted(snap.configs))
    return snap


def sidecar(
    name: str = "web-0", namespace: str = "default", labels: dict | None = None, ip: str = "127.7.0.5"
) -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", ip, name, namespace),
        kind="sidecar",
        ip=ip,
        namespace=namespace,
        instance=name,
        workload=name.rsplit("-", 1)[0],
        labels=labels if labels is not None else {"app": "web", "version": "v1"},
    )


def generate(
    snap: Snapshot, proxy: Proxy, type_url: str, names: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    out = MeshGenerator().generate(snap, proxy, type_url, frozenset(names) if names is not None else None)
    return {name: MessageToDict(a, preserving_proto_field_name=True) for name, a in out.items()}


def route_table(snap: Snapshot, proxy: Proxy) -> dict[str, Any]:
    return generate(snap, proxy, naming.ROUTE_TYPE, {naming.HTTP_PROXY_ROUTE})[naming.HTTP_PROXY_ROUTE]


def vhost(table: dict[str, Any], name: str) -> dict[str, Any]:
    for vh in table["virtual_hosts"]:
        if vh["name"] == name:
            return vh
    raise KeyError(f"no vhost {name}: {[v['name'] for v in table['virtual_hosts']]}")


def clusters(snap: Snapshot, proxy: Proxy) -> dict[str, dict[str, Any]]:
    return generate(snap, proxy, naming.CLUSTER_TYPE)


def hcms(snap: Snapshot, proxy: Proxy) -> list[dict[str, Any]]:
    """The typed configs of every HTTP connection manager in the proxy's listeners."""
    return [
        f["typed_config"]
        for lst in generate(snap, proxy, naming.LISTENER_TYPE).values()
        for chain in lst.get("filter_chains", [])
        for f in chain["filters"]
        if f["name"] == "envoy.filters.network.http_connection_manager"
    ]
