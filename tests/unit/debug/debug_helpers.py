"""Snapshots shaped like the routing e2e mesh, and the config a proxy would get, for debug tests."""

from __future__ import annotations

import textwrap
from typing import Any

from isthmus.api import loader
from isthmus.config.store import Store
from isthmus.debug.describe import proxy_of
from isthmus.debug.envoy_config import ProxyConfig
from isthmus.debug.preview import generate_proxy_config
from isthmus.debug.route_test import Context
from isthmus.model.snapshot import Snapshot
from isthmus.registry.types import Pod

MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-alt, port: 9090, targetPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
"""

DR_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

PODS = [
    Pod("echo-v1-0", "default", "127.9.0.2", {"app": "echo", "version": "v1"}, workload="echo-v1", app_ports={8080: 40001, 9090: 40002}),
    Pod("echo-v1-1", "default", "127.9.0.3", {"app": "echo", "version": "v1"}, workload="echo-v1", app_ports={8080: 40003, 9090: 40004}),
    Pod("echo-v2-0", "default", "127.9.0.4", {"app": "echo", "version": "v2"}, workload="echo-v2", service_account="echo", app_ports={8080: 40005, 9090: 40006}),
    Pod("client-0", "default", "127.9.0.5", {"app": "client", "version": "v1"}, workload="client", app_ports={8080: 40007}),
    Pod("client-v2-0", "default", "127.9.0.6", {"app": "client", "version": "v2"}, workload="client-v2", app_ports={8080: 40008}),
    Pod("client-0", "other", "127.9.0.7", {"app": "client", "version": "v1"}, workload="client", app_ports={8080: 40009}),
    Pod("istio-ingressgateway-0", "istio-system", "127.9.0.8", {"istio": "ingressgateway", "app": "istio-ingressgateway"}, workload="istio-ingressgateway", sidecar=False, gateway=True),
]  # fmt: skip


def snapshot(*docs: str) -> tuple[Snapshot, Store]:
    text = "\n---\n".join(textwrap.dedent(d) for d in (MESH, *docs))
    store = Store()
    store.apply(loader.load_text(text, "test.yaml"), "test")
    return Snapshot.build(1, store.list(), PODS), store


def pod(name: str, namespace: str = "default") -> Pod:
    return next(p for p in PODS if p.name == name and p.namespace == namespace)


def status_entry(p: Pod) -> dict[str, Any]:
    proxy = proxy_of(p)
    return {
        "id": proxy.id,
        "kind": proxy.kind,
        "workload": p.workload,
        "instance": p.name,
        "namespace": p.namespace,
        "labels": dict(p.labels),
        "ip": p.ip,
        "adminPort": 15000,
        "outboundPort": 15001,
        "inbound": [{"port": port, "appPort": app} for port, app in p.app_ports.items()],
        "listeners": [{"port": 80, "address": f"{p.ip}:8080"}] if p.gateway else [],
    }


def config_for(snap: Snapshot, name: str = "client-0", namespace: str = "default") -> ProxyConfig:
    return ProxyConfig.from_generated(
        generate_proxy_config(snap, proxy_of(pod(name, namespace))), source="envoy"
    )


def context(store: Store, name: str = "client-0", namespace: str = "default") -> Context:
    def lookup(ns: str, vs_name: str) -> Any:
        cfg = store.get(("VirtualService", ns, vs_name))
        return cfg.spec if cfg is not None else None

    return Context(
        proxy=status_entry(pod(name, namespace)),
        vs_lookup=lookup,
        instances_by_ip={p.ip: p.name for p in PODS},
    )
