"""Service publishNotReadyAddresses: pods that are not ready stay in the endpoint set, as Kubernetes
publishes them (otherwise they leave it until ready)."""

from __future__ import annotations

from isthmus.api.loader import load_text
from isthmus.registry.build import build_registry
from isthmus.registry.types import Pod

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
"""

PODS = [
    Pod("db-0", "default", "127.9.0.2", {"app": "db"}, workload="db", ready=True),
    Pod("db-1", "default", "127.9.0.3", {"app": "db"}, workload="db", ready=False),
]


def ready_addresses(text: str) -> list[str]:
    reg = build_registry(load_text(text, "svc.yaml"), PODS)
    svc = reg.service("db.default.svc.cluster.local")
    assert svc is not None
    return [e.address for e in reg.endpoints(svc, 5432) if e.ready]


def test_not_ready_pods_are_left_out_by_default() -> None:
    assert ready_addresses(SERVICE) == ["127.9.0.2"]


def test_publish_not_ready_addresses_keeps_them() -> None:
    text = SERVICE.replace("  selector: {app: db}", "  publishNotReadyAddresses: true\n  selector: {app: db}")
    assert ready_addresses(text) == ["127.9.0.2", "127.9.0.3"]
