"""The effective ProxyConfig of a pod: istiod's pilot/pkg/model/proxy_config_test.go
(TestConvertToMeshConfigProxyConfig, TestMergeWithPrecedence, TestEffectiveProxyConfig), plus what the
local agent does with the result (Envoy flags, environment, node metadata)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isthmus.api.loader import load_text
from isthmus.mesh.pods import PodProcess, PodSpec
from isthmus.model.proxy_config import (
    EffectiveProxyConfig,
    ProxyConfigLayer,
    effective_proxy_config,
    layer_of_resource,
    merge_with_precedence,
)

ROOT = "istio-system"


def pc(name: str, ns: str, spec: str):
    """A ProxyConfig resource; the list order of a test is the creation order (oldest first)."""
    (r,) = load_text(
        f"apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec: {spec}\n"
    )
    return r


def mesh_default(spec: str):
    (r,) = load_text(
        f"apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec: {{defaultConfig: {spec}}}\n"
    )
    return r.spec.default_config


def L(concurrency: int | None = None, **meta: str) -> ProxyConfigLayer:
    return ProxyConfigLayer(concurrency, meta)


# --- TestConvertToMeshConfigProxyConfig ------------------------------------------------------------
def test_convert_concurrency() -> None:
    layer = layer_of_resource(pc("a", "ns", "{concurrency: 3}"))
    assert (layer.concurrency, dict(layer.proxy_metadata)) == (3, {})


def test_convert_environment_variables() -> None:
    layer = layer_of_resource(pc("a", "ns", "{environmentVariables: {a: b, c: d}}"))
    assert (layer.concurrency, dict(layer.proxy_metadata)) == (None, {"a": "b", "c": "d"})


# --- TestMergeWithPrecedence -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "concurrency", "meta"),
    [
        pytest.param(L(1), L(2), 1, {}, id="concurrency"),
        pytest.param(L(0), L(2), 0, {}, id="concurrency value 0"),
        pytest.param(L(None), L(2), 2, {}, id="source concurrency nil"),
        pytest.param(L(2), L(None), 2, {}, id="dest concurrency nil"),
        pytest.param(L(None), L(None), None, {}, id="both concurrency nil"),
        pytest.param(
            L(a="x", b="y"), L(a="z", b="y", c="d"), None, {"a": "x", "b": "y", "c": "d"}, id="envvars"
        ),
        pytest.param(L(), L(a="z", b="y", c="d"), None, {"a": "z", "b": "y", "c": "d"}, id="empty envvars"),
        pytest.param(
            None, L(a="z", b="y", c="d"), None, {"a": "z", "b": "y", "c": "d"}, id="nil proxyconfig"
        ),
    ],
)
def test_merge_with_precedence(first, second, concurrency, meta) -> None:
    merged = merge_with_precedence(first, second)
    assert (merged.concurrency, dict(merged.proxy_metadata)) == (concurrency, meta)


# --- TestEffectiveProxyConfig ----------------------------------------------------------------------
def effective(configs, namespace: str, labels=None, default=None) -> EffectiveProxyConfig:
    return effective_proxy_config(
        configs, default_config=default, root_namespace=ROOT, namespace=namespace, labels=labels or {}
    )


def test_cr_applies_to_matching_namespace() -> None:
    got = effective([pc("ns", "test-ns", "{concurrency: 3}")], "test-ns")
    assert got.concurrency == 3
    assert got.sources == ("test-ns/ns",)


def test_cr_takes_precedence_over_mesh_default_config() -> None:
    got = effective([pc("ns", ROOT, "{concurrency: 3}")], "bar", default=mesh_default("{concurrency: 2}"))
    assert got.concurrency == 3


def test_mesh_default_config_applies_when_nothing_else_does() -> None:
    default = mesh_default("{concurrency: 2, proxyMetadata: {SECRET_TTL: 1h}}")
    got = effective([], "bar", default=default)
    assert (got.concurrency, dict(got.environment), got.sources) == (2, {"SECRET_TTL": "1h"}, ())


def test_workload_cr_takes_precedence_over_namespace_cr() -> None:
    configs = [
        pc("workload", "test-ns", "{selector: {matchLabels: {test: selector}}, concurrency: 3}"),
        pc("ns", "test-ns", "{concurrency: 2}"),
    ]
    assert effective(configs, "test-ns", {"test": "selector"}).concurrency == 3
    assert effective(configs, "test-ns", {"test": "other"}).concurrency == 2


def test_cr_in_other_namespaces_is_ignored() -> None:
    configs = [
        pc("ns", "wrong-ns", "{concurrency: 1}"),
        pc("workload", "wrong-ns", "{selector: {matchLabels: {test: selector}}, concurrency: 2}"),
        pc("global", ROOT, "{concurrency: 3}"),
    ]
    assert effective(configs, "test-ns", {"test": "selector"}).concurrency == 3


def test_multiple_matching_workload_crs_oldest_applies() -> None:
    sel = "selector: {matchLabels: {test: selector}}"
    configs = [
        pc("workload-a", "test-ns", f"{{{sel}, environmentVariables: {{A: '1'}}}}"),
        pc("workload-b", "test-ns", f"{{{sel}, environmentVariables: {{B: '2'}}}}"),
        pc("workload-c", "test-ns", f"{{{sel}, environmentVariables: {{C: '3'}}}}"),
    ]
    assert dict(effective(configs, "test-ns", {"test": "selector"}).environment) == {"A": "1"}


def test_multiple_matching_namespace_crs_oldest_applies() -> None:
    configs = [
        pc("workload-a", "test-ns", "{environmentVariables: {A: '1'}}"),
        pc("workload-b", "test-ns", "{environmentVariables: {B: '2'}}"),
        pc("workload-c", "test-ns", "{environmentVariables: {C: '3'}}"),
    ]
    assert dict(effective(configs, "test-ns").environment) == {"A": "1"}


def test_no_configured_cr_or_default_config() -> None:
    assert effective([], "ns") == EffectiveProxyConfig()


def test_layers_merge_environment_per_key() -> None:
    configs = [
        pc("root", ROOT, "{environmentVariables: {A: root, B: root, C: root}}"),
        pc("ns", "test-ns", "{environmentVariables: {B: ns, C: ns}}"),
        pc(
            "wl",
            "test-ns",
            "{selector: {matchLabels: {app: x}}, environmentVariables: {C: wl}, concurrency: 0}",
        ),
    ]
    got = effective(
        configs, "test-ns", {"app": "x"}, default=mesh_default("{proxyMetadata: {SECRET_TTL: 1h}}")
    )
    assert dict(got.environment) == {"SECRET_TTL": "1h", "A": "root", "B": "ns", "C": "wl"}
    assert got.concurrency == 0
    assert got.sources == (f"{ROOT}/root", "test-ns/ns", "test-ns/wl")


def test_root_namespace_pods_get_the_root_config_once_and_their_own_workload_ones() -> None:
    configs = [
        pc("root", ROOT, "{concurrency: 3}"),
        pc("gw", ROOT, "{selector: {matchLabels: {istio: ingressgateway}}, concurrency: 4}"),
    ]
    assert effective(configs, ROOT, {"istio": "ingressgateway"}).concurrency == 4
    # A selector in the root namespace selects only pods of the root namespace (istiod's mergedWorkloadConfig).
    assert effective(configs, "other", {"istio": "ingressgateway"}).concurrency == 3


def test_empty_selector_selects_nothing() -> None:
    assert (
        effective([pc("a", "ns", "{selector: {}, concurrency: 5}")], "ns", {"app": "x"}).concurrency is None
    )


# --- the local agent ---------------------------------------------------------------------------------
def test_istio_meta_variables_become_node_metadata() -> None:
    got = EffectiveProxyConfig(
        environment={"ISTIO_META_CLUSTER_ID": "c1", "ISTIO_METAJSON_X": '{"a": 1}', "FOO": "bar"}
    )
    assert got.node_metadata() == {"CLUSTER_ID": "c1", "X": {"a": 1}}


def make_pod(tmp_path: Path, proxy_config: EffectiveProxyConfig) -> PodProcess:
    spec = PodSpec(
        workload="r",
        namespace="ns",
        name="r-0",
        ip="127.1.0.9",
        labels={"app": "r"},
        service_account="default",
        sidecar=True,
        gateway=False,
        command=None,
        env={},
        proxy_config=proxy_config,
    )
    return PodProcess(
        spec, store=None, control_plane=None, xds_address=("127.1.0.1", 15010), workdir=tmp_path
    )  # type: ignore[arg-type]


def test_pod_proxy_gets_environment_and_metadata(tmp_path: Path) -> None:
    pod = make_pod(tmp_path, EffectiveProxyConfig(environment={"FOO": "bar", "ISTIO_META_CLUSTER_ID": "c1"}))
    env = pod.proxy_env()
    assert env is not None and env["FOO"] == "bar" and env["ISTIO_META_CLUSTER_ID"] == "c1"
    assert env["PATH"] == os.environ["PATH"]
    assert pod.make_proxy().node_metadata()["CLUSTER_ID"] == "c1"


def test_pod_without_environment_inherits_the_runners(tmp_path: Path) -> None:
    assert make_pod(tmp_path, EffectiveProxyConfig()).proxy_env() is None
