"""DESIGN §3: `isthmus up` runs the default istio-ingressgateway only while a Gateway selects its labels and
no gateway Workload of the user's provides it."""

from __future__ import annotations

from pathlib import Path

from isthmus.api import loader
from isthmus.mesh.runner import BUILTIN_SOURCE, Mesh, MeshOptions

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
USER_GATEWAY = """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: my-ingress, namespace: default, labels: {istio: ingressgateway}}
spec: {gateway: true}
"""


def _builtin(mesh: Mesh) -> list[str]:
    return sorted(f"{c.kind}/{c.name}" for c in mesh.store.list() if c.source == BUILTIN_SOURCE)


def test_default_gateway_follows_gateways_and_user_workloads(tmp_path: Path) -> None:
    mesh = Mesh(MeshOptions(config_dir=tmp_path, state_dir=tmp_path / "state"))
    mesh._ensure_default_gateway()
    assert _builtin(mesh) == []  # no Gateway selects it
    mesh.store.apply(loader.load_text(GATEWAY, "gw.yaml"), "file:gw.yaml")
    mesh._ensure_default_gateway()
    assert _builtin(mesh) == ["Service/istio-ingressgateway", "Workload/istio-ingressgateway"]
    # A gateway Workload of the user's provides it now: the default one goes.
    user = loader.load_text(USER_GATEWAY, "user.yaml")
    mesh.store.apply(user, "file:user.yaml")
    mesh._ensure_default_gateway()
    assert _builtin(mesh) == []
    mesh.store.delete([r.key for r in user])
    mesh._ensure_default_gateway()
    assert _builtin(mesh) == ["Service/istio-ingressgateway", "Workload/istio-ingressgateway"]
