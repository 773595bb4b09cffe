"""Inbound clusters' connection pool: the Sidecar's inboundConnectionPool, else the DestinationRule's."""

from __future__ import annotations

from gen_helpers import clusters, sidecar, snapshot

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 11}}
"""
SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: default}
spec:
  workloadSelector: {labels: {app: web}}
  inboundConnectionPool:
    tcp: {maxConnections: 7}
    http: {http1MaxPendingRequests: 3}
"""


def inbound_limits(*docs: str) -> dict:
    c = clusters(snapshot(*docs), sidecar())["inbound|8080||"]
    return c.get("circuit_breakers", {}).get("thresholds", [{}])[0]


def test_destination_rule_pool_applies_without_a_sidecar_setting() -> None:
    assert inbound_limits(DR)["max_connections"] == 11


def test_sidecar_inbound_pool_replaces_the_destination_rule() -> None:
    limits = inbound_limits(DR, SIDECAR)
    assert limits["max_connections"] == 7 and limits["max_pending_requests"] == 3
    assert inbound_limits(SIDECAR)["max_connections"] == 7
