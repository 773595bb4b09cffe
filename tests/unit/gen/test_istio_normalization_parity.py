"""MeshConfig `pathNormalization` on every HTTP connection manager, against istiod.

Source (istio/istio): `pilot/pkg/networking/core/listener_builder.go` buildHTTPConnectionManager, the one
builder behind the sidecar's inbound HCMs, its outbound HTTP proxy and every gateway server: it sets
`path_with_escaped_slashes_action: KEEP_UNCHANGED`, then by mode NONE → normalize_path false; BASE and
DEFAULT (the zero value, so also an unset field) → normalize_path true; MERGE_SLASHES → and
merge_slashes; DECODE_AND_MERGE_SLASHES → and UNESCAPE_AND_FORWARD. The traffic these settings make is
checked end to end in tests/e2e/test_istio_normalization_cases.py (TestNormalization).

The proxies here are a sidecar with HTTP, HTTP/2, gRPC, gRPC-Web, TCP and protocol-sniffed ports (HCMs
on plaintext and mTLS chains) and an ingress gateway with an HTTP and an HTTPS server, so that a
listener class left out of the mapping would show.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gen_helpers import PODS, generate, sidecar, snapshot
from test_istio_gateway_parity import GW_POD, gateway, gateway_proxy, virtual_service
from test_istio_inbound_parity import HCM, IP, MULTI, POD

from isthmus.debug import matching as m
from isthmus.xds.gen import naming


def _load_cases() -> Any:
    """Istio's TestNormalization table lives beside the e2e test that sends it through real Envoys;
    unit tests are imported relative to their own folder (no `tests` package), so it is loaded by path."""
    path = Path(__file__).parents[2] / "e2e" / "normalization_cases.py"
    spec = importlib.util.spec_from_file_location("normalization_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE = _load_cases()
SIDECAR = sidecar("multi-0", labels={"app": "multi", "version": "v1"}, ip=IP)
GATEWAY = gateway(
    "gw",
    "istio-system",
    """
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*"]
    - port: {number: 443, name: https, protocol: HTTPS}
      hosts: ["*"]
      tls: {mode: ISTIO_MUTUAL}
    """,
)
ROUTES = virtual_service(
    "to-web",
    "istio-system",
    """
    hosts: ["*"]
    gateways: [gw]
    http: [{route: [{destination: {host: web.default.svc.cluster.local}}]}]
    """,
)

# (normalize_path, merge_slashes, path_with_escaped_slashes_action) by mode, as buildHTTPConnectionManager.
ISTIOD = {
    "NONE": (False, False, "KEEP_UNCHANGED"),
    "BASE": (True, False, "KEEP_UNCHANGED"),
    "DEFAULT": (True, False, "KEEP_UNCHANGED"),
    "MERGE_SLASHES": (True, True, "KEEP_UNCHANGED"),
    "DECODE_AND_MERGE_SLASHES": (True, True, "UNESCAPE_AND_FORWARD"),
}


def mesh_config(normalization: str | None) -> str:
    spec = {} if normalization is None else {"pathNormalization": {"normalization": normalization}}
    return json.dumps(
        {
            "apiVersion": "isthmus.dev/v1alpha1",
            "kind": "MeshConfig",
            "metadata": {"name": "mesh"},
            "spec": spec,
        }
    )


def hcms(listeners: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every HCM of these listeners, named `listener/chain#index` (an inbound port's plaintext and mTLS
    chains share one name, as istiod's)."""
    for name, lst in listeners.items():
        for i, chain in enumerate(lst.get("filter_chains", [])):
            for f in chain.get("filters", []):
                if f["name"] == HCM:
                    yield f"{name}/{chain.get('name', '')}#{i}", f["typed_config"]


def all_hcms(normalization: str | None) -> dict[str, dict[str, Any]]:
    """The HCMs of the sidecar (inbound and outbound) and of the gateway, under this mode."""
    snap = snapshot(mesh_config(normalization), MULTI, GATEWAY, ROUTES, pods=[*PODS, POD, GW_POD])
    out: dict[str, dict[str, Any]] = {}
    for kind, proxy in (("sidecar", SIDECAR), ("gateway", gateway_proxy())):
        for name, config in hcms(generate(snap, proxy, naming.LISTENER_TYPE)):
            out[f"{kind} {name}"] = config
    return out


def settings(config: dict[str, Any]) -> tuple[bool, bool, str]:
    # MessageToDict leaves out proto3 defaults: an absent merge_slashes is false.
    return (
        config["normalize_path"],
        config.get("merge_slashes", False),
        config.get("path_with_escaped_slashes_action", "IMPLEMENTATION_SPECIFIC_DEFAULT"),
    )


def test_every_listener_class_has_an_hcm() -> None:
    """The set below covers what buildHTTPConnectionManager builds for: inbound (per HTTP-capable port,
    plaintext and mTLS), the outbound HTTP proxy, and gateway HTTP and HTTPS servers."""
    names = all_hcms(None)
    assert any(n.startswith("sidecar virtualOutbound") for n in names), names
    # PERMISSIVE (the default): a plaintext and an mTLS HCM on each HTTP port.
    assert sum(n.startswith(f"sidecar {IP}_8080/") for n in names) == 2, names
    inbound_ports = {
        n.split()[1].split("/")[0].rsplit("_", 1)[1] for n in names if n.startswith(f"sidecar {IP}")
    }
    # Every port but the TCP one; 9000 is a workload port no Service names (protocol sniffed).
    assert inbound_ports == {"8080", "8081", "8082", "8084", "8085", "9000"}, names
    gateway_ports = {n.split()[1].split("/")[0] for n in names if n.startswith("gateway")}
    assert gateway_ports == {"0.0.0.0_80", "0.0.0.0_443"}, names


@pytest.mark.parametrize("normalization", [None, *ISTIOD])
def test_path_normalization_on_every_hcm(normalization: str | None) -> None:
    """buildHTTPConnectionManager's switch on MeshConfig pathNormalization; unset is DEFAULT."""
    want = ISTIOD[normalization or "DEFAULT"]
    wrong = {name: settings(c) for name, c in all_hcms(normalization).items() if settings(c) != want}
    assert not wrong, f"want {want}: {wrong}"


@pytest.mark.parametrize("case", list(TABLE.CASES))
def test_route_tester_normalizes_as_envoy(case: str) -> None:
    """`isthmus x route test` predicts matches on the path Envoy hands the routes: the emulation, fed the
    generated HCM of the mode, turns Istio's TestNormalization inputs into Istio's expected paths (the
    e2e test checks the same table on real Envoys). Envoy's 400 for `%00` is not emulated."""
    mode, expectations = TABLE.CASES[case]
    how = m.PathNormalization.of_hcm(next(iter(all_hcms(mode).values())))
    wrong = {
        sent: (seen, got)
        for sent, seen in expectations
        if seen != TABLE.BAD_REQUEST and (got := m.normalize_path(sent.partition("#")[0], how)) != seen
    }
    assert not wrong, wrong
