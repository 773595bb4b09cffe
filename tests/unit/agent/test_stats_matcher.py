"""The bootstrap's stats matcher: istio-agent's inclusion list (tools/packaging/common/envoy_bootstrap.json
and pkg/bootstrap/config.go getStatsOptions), and MeshConfig defaultConfig.proxyStatsMatcher, which
adds to it for pods started with it (the `stats_inclusion` golden of pkg/bootstrap/testdata, whose
annotations Isthmus takes from MeshConfig)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from isthmus.agent.bootstrap import build_bootstrap, stats_matcher
from isthmus.agent.envoy import default_envoy_path
from isthmus.api import loader
from isthmus.api.errors import ConfigErrors
from isthmus.api.resource import Resource
from isthmus.api.support import check_supported
from isthmus.api.validation import validate_issues
from isthmus.model.proxy import Proxy
from isthmus.model.proxy_config import EffectiveProxyConfig, StatsInclusion, effective_proxy_config

IP = "127.1.0.7"
XDS = ("127.1.0.1", 15010)

# istio-agent's list with no proxyStatsMatcher, and EXIT_ON_ZERO_ACTIVE_CONNECTIONS's downstream_cx_active
# (the local agent always ends a drain when no connection is left).
ISTIO_DEFAULT = [
    {"prefix": "reporter="},
    {"prefix": "cluster_manager"},
    {"prefix": "listener_manager"},
    {"prefix": "server"},
    {"prefix": "cluster.xds-grpc"},
    {"prefix": "wasm"},
    {"suffix": "rbac.allowed"},
    {"suffix": "rbac.denied"},
    {"suffix": "shadow_allowed"},
    {"suffix": "shadow_denied"},
    {"suffix": "downstream_cx_active"},
    {"safe_regex": {"regex": r"vhost\..*\.route\..*"}},
    {"prefix": "component"},
    {"prefix": "istio"},
]


def proxy() -> Proxy:
    return Proxy(
        id=Proxy.node_id("sidecar", IP, "r-0", "ns"),
        kind="sidecar",
        ip=IP,
        namespace="ns",
        instance="r-0",
        workload="r",
    )


def mesh_config(matcher: str) -> Resource:
    (resource,) = loader.load_text(
        "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
        f"spec: {{defaultConfig: {{proxyStatsMatcher: {matcher}}}}}\n",
        "mesh.yaml",
    )
    return resource


def test_a_bootstrap_keeps_istio_agents_stats_only() -> None:
    boot = build_bootstrap(proxy(), xds_address=XDS)
    assert boot["stats_config"]["stats_matcher"] == {"inclusion_list": {"patterns": ISTIO_DEFAULT}}


def test_proxy_stats_matcher_comes_before_the_required_patterns_with_pod_ips() -> None:
    """The stats_inclusion golden: each kind's user patterns before the required ones, {pod_ip} once per
    instance address."""
    inclusion = StatsInclusion(
        prefixes=("prefix1", "http.{pod_ip}_"), suffixes=("suffix1",), regexps=(r"cluster\..*fortio.*",)
    )
    patterns = stats_matcher([IP, "127.1.0.8"], inclusion)["inclusion_list"]["patterns"]
    assert patterns == [
        {"prefix": "reporter="},
        {"prefix": "prefix1"},
        {"prefix": "http.127.1.0.7_"},
        {"prefix": "http.127.1.0.8_"},
        *ISTIO_DEFAULT[1:6],
        {"suffix": "suffix1"},
        *ISTIO_DEFAULT[6:11],
        {"safe_regex": {"regex": r"cluster\..*fortio.*"}},
        *ISTIO_DEFAULT[11:],
    ]
    boot = build_bootstrap(
        proxy(), xds_address=XDS, stats_inclusion=StatsInclusion(prefixes=("http.{pod_ip}_",))
    )
    assert {"prefix": f"http.{IP}_"} in boot["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    # The node metadata's PROXY_CONFIG carries it as the user wrote it, as istio-agent's does.
    assert boot["node"]["metadata"]["PROXY_CONFIG"]["proxyStatsMatcher"] == {
        "inclusionPrefixes": ["http.{pod_ip}_"]
    }
    assert (
        "proxyStatsMatcher"
        not in build_bootstrap(proxy(), xds_address=XDS)["node"]["metadata"]["PROXY_CONFIG"]
    )


def test_mesh_config_proxy_stats_matcher_is_taken_into_the_pods_proxy_config() -> None:
    resource = mesh_config(
        '{inclusionPrefixes: ["cluster.outbound|"], inclusionSuffixes: [upstream_rq_total]}'
    )
    assert check_supported(resource) == []
    assert validate_issues(resource) == []
    pc = effective_proxy_config(
        [],
        default_config=resource.spec.default_config,
        root_namespace="istio-system",
        namespace="ns",
        labels={},
    )
    assert pc.stats_inclusion == StatsInclusion(
        prefixes=("cluster.outbound|",), suffixes=("upstream_rq_total",)
    )
    # A pod started before the change is reported as running older config.
    assert pc.fingerprint() != EffectiveProxyConfig().fingerprint()
    assert pc.summary()["proxyStatsMatcher"]["inclusionSuffixes"] == ["upstream_rq_total"]


def test_a_bad_stats_regexp_is_refused_naming_it() -> None:
    """Envoy refuses a bootstrap whose safe_regex does not compile, and the pod would not start: the
    MeshConfig is refused instead, naming the file, the resource and the pattern."""
    with pytest.raises(ConfigErrors) as err:
        mesh_config(r'{inclusionRegexps: ["cluster\\..*", "(unclosed"]}')
    (e,) = err.value.errors
    assert (e.file, e.kind, e.name, e.field, e.level) == (
        "mesh.yaml",
        "MeshConfig",
        "mesh",
        "spec.defaultConfig.proxyStatsMatcher.inclusionRegexps[1]",
        "Error",
    )
    assert "invalid stats regexp '(unclosed'" in e.message


def test_envoy_accepts_the_matcher(tmp_path: Path) -> None:
    inclusion = StatsInclusion(
        prefixes=("http.{pod_ip}_",), suffixes=("upstream_rq_total",), regexps=(r".*ssl.*",)
    )
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(build_bootstrap(proxy(), xds_address=XDS, stats_inclusion=inclusion)))
    result = subprocess.run(
        [str(default_envoy_path()), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
