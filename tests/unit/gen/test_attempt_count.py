"""ProxyConfig proxyHeaders.attemptCount (istiod's GetProxyHeadersFromProxyConfig): every virtual host of
sidecars (services', VirtualServices', the catch-all) and gateways sends x-envoy-attempt-count upstream,
unless it is disabled."""

from __future__ import annotations

from typing import Any

from gen_helpers import PODS, generate, route_table, sidecar, snapshot
from test_istio_gateway_parity import GW_POD, gateway_proxy

from isthmus.xds.gen import naming

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"""
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-reviews, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: reviews}}]}]
"""
DISABLED = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig:
    proxyHeaders: {attemptCount: {disabled: true}}
"""


def counted(vhosts: list[dict[str, Any]]) -> dict[str, bool]:
    return {vh["name"]: bool(vh.get("include_request_attempt_count")) for vh in vhosts}


def gateway_vhosts(*docs: str) -> list[dict[str, Any]]:
    snap = snapshot(GATEWAY, *docs, pods=[*PODS, GW_POD])
    return generate(snap, gateway_proxy(), naming.ROUTE_TYPE, {"http.80"})["http.80"]["virtual_hosts"]


def test_sidecar_virtual_hosts_count_attempts_unless_disabled() -> None:
    on = counted(route_table(snapshot(VS), sidecar())["virtual_hosts"])
    assert on["reviews.default.svc.cluster.local:9080"] and on["ratings.other.svc.cluster.local:9080"]
    assert on["allow_any"]
    off = counted(route_table(snapshot(VS, DISABLED), sidecar())["virtual_hosts"])
    assert off and not any(off.values()), off


def test_gateway_virtual_hosts_count_attempts_unless_disabled() -> None:
    assert [vh.get("include_request_attempt_count") for vh in gateway_vhosts()] == [True]
    assert [vh.get("include_request_attempt_count") for vh in gateway_vhosts(DISABLED)] == [None]
