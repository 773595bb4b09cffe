"""Routing bugs found reviewing the features of 2026-12-07 (Kubernetes Ingress, sessionPersistence,
DestinationRule compression); each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gen_helpers import generate, route_table, sidecar, snapshot, vhost
from test_fuzz_findings import envoy_validate_routes

from isthmus.api.networking import HTTPMatchRequest
from isthmus.model import ingress as ing
from isthmus.model.proxy import Proxy
from isthmus.xds.gen import compression, naming
from isthmus.xds.gen.routes import translate_route_match

# --- Ingress prefixes Envoy's path_separated_prefix cannot hold ---------------------------------------


def _ingress(name: str, host: str, path_type: str, path: str) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": name,
                "namespace": "default",
                "annotations": {"kubernetes.io/ingress.class": "istio"},
            },
            "spec": {
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": path,
                                    "pathType": path_type,
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        }
    )


def ingress_gateway() -> Proxy:
    return Proxy(
        id=Proxy.node_id("gateway", "127.7.0.9", "gw-0", "istio-system"),
        kind="gateway",
        ip="127.7.0.9",
        namespace="istio-system",
        instance="gw-0",
        workload="gw",
        labels={"istio": "ingressgateway"},
    )


# Paths the API server accepts (Prefix paths may hold `?` and `#`; ImplementationSpecific ones anything
# absolute) whose segment prefix Envoy refuses (pattern `^[^?#]+[^?#/]$`): the gateway NACKed its whole
# port-80 route table, every other Ingress and VirtualService on it included.
UNSEPARABLE = [
    ("Prefix", "/foo?x"),
    ("Prefix", "/foo#"),
    ("ImplementationSpecific", "/x?/*"),
    ("ImplementationSpecific", "//.*"),
    ("ImplementationSpecific", "/a//.*"),
]


@pytest.mark.parametrize(("path_type", "path"), UNSEPARABLE)
def test_ingress_prefix_envoy_cannot_separate_keeps_the_gateway_routes(
    path_type: str, path: str, tmp_path: Path
) -> None:
    snap = snapshot(
        _ingress("odd", "a.example.com", path_type, path), _ingress("good", "b.example.com", "Prefix", "/")
    )
    tables = generate(snap, ingress_gateway(), naming.ROUTE_TYPE, {"http.80"})
    table = tables["http.80"]
    assert {vh["name"] for vh in table["virtual_hosts"]} >= {"a.example.com:80", "b.example.com:80"}
    result = envoy_validate_routes(tmp_path, table)
    assert result.returncode == 0, result.stdout + result.stderr


def _prefix_match(prefix: str) -> Any:
    return HTTPMatchRequest.model_validate({"uri": {"prefix": prefix}})


@pytest.mark.parametrize(
    ("prefix", "field", "value"),
    [
        ("/foo/", "path_separated_prefix", "/foo"),
        # `?` and `#` never reach path matching (Envoy strips the query and fragment): a plain prefix
        # matches nothing, as a segment prefix would
        ("/foo?x", "prefix", "/foo?x"),
        ("/foo#", "prefix", "/foo#"),
        # one `/` dropped leaves `/` or a trailing `/`: the prefix as written
        ("//", "prefix", "//"),
        ("/a//", "prefix", "/a//"),
    ],
)
def test_ingress_prefix_semantics_only_where_envoy_takes_them(prefix: str, field: str, value: str) -> None:
    got = translate_route_match(_prefix_match(prefix), ingress_semantics=True)
    assert got.WhichOneof("path_specifier") == field
    assert getattr(got, field) == value


# --- ingressControllerMode OFF ---------------------------------------------------------------------


def test_ingress_controller_mode_off_converts_no_ingress_even_of_istios_class() -> None:
    """istiod creates no ingress controller at all when MeshConfig's ingressControllerMode is OFF
    (`if hasKubeRegistry(...) && meshConfig.IngressControllerMode != MeshConfig_OFF`), so an Ingress of an
    IngressClass naming Istio's controller is not converted either (shouldProcessIngressWithClass alone
    would take it); it got a Gateway and routes, and `isthmus up` started the default gateway for it."""
    ingress_class = """
    apiVersion: networking.k8s.io/v1
    kind: IngressClass
    metadata: {name: istio}
    spec: {controller: istio.io/ingress-controller}
    """
    ingress = json.loads(_ingress("ing", "a.example.com", "Prefix", "/"))
    del ingress["metadata"]["annotations"]
    ingress["spec"]["ingressClassName"] = "istio"
    mesh_off = """
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {name: mesh}
    spec: {ingressControllerMode: "OFF"}
    """
    on = snapshot(ingress_class, json.dumps(ingress))
    assert any(ing.is_derived(c) for c in on.configs.get("Gateway", []))
    off = snapshot(ingress_class, json.dumps(ingress), mesh_off)
    assert not any(ing.is_derived(c) for k in ("Gateway", "VirtualService") for c in off.configs.get(k, []))
    assert (
        ing.derived_gateways(off.configs["Ingress"] + off.configs["IngressClass"] + off.configs["MeshConfig"])
        == []
    )


# --- decompression on default routes follows each proxy's DestinationRule --------------------------------

DECOMPRESSORS = [name for name, _, _ in compression.DECOMPRESSORS]
REVIEWS_DEFAULT_VHOST = "reviews.default.svc.cluster.local:9080"
# Compression for reviews in namespace `other` only (exportTo "."): a proxy of `other` decompresses what
# reviews answers, one of `third` (where no rule applies, and reviews is as remote) does not.
LOCAL_COMPRESSION_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-gzip, namespace: other}
spec:
  host: reviews.default.svc.cluster.local
  exportTo: ["."]
  trafficPolicy: {compression: {response: {decompress: {}}}}
"""


def _ratings_proxy() -> Proxy:
    return sidecar("ratings-v1-0", "other", {"app": "ratings", "version": "v1"}, "127.7.0.4")


def _default_route_decompresses(snap: Any, proxy: Proxy) -> bool:
    table = route_table(snap, proxy)
    (route,) = [r for r in vhost(table, REVIEWS_DEFAULT_VHOST)["routes"] if r.get("name") == "default"]
    return set(DECOMPRESSORS) <= set(route.get("typed_per_filter_config", {}))


@pytest.mark.parametrize("other_first", [True, False])
def test_default_route_decompression_is_per_proxy_namespace(other_first: bool) -> None:
    """The default vhosts' bytes are shared by every scope of a snapshot (keyed by the consistent hash,
    and for auto ports the DestinationRule); the decompressors they enable depend on the proxy's
    DestinationRule too, so whichever scope was built first decided for all of them."""
    snap = snapshot(LOCAL_COMPRESSION_DR)
    third = sidecar("client-0", "third", {"app": "client"}, "127.7.0.8")
    order = [(_ratings_proxy(), True), (third, False)]
    for proxy, expected in order if other_first else order[::-1]:
        assert _default_route_decompresses(snap, proxy) is expected, proxy.namespace
