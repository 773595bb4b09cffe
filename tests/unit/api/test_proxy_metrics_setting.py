"""ISTHMUS_PROXY_METRICS (the in-proxy metrics module) as MeshConfig and ProxyConfig take it."""

from __future__ import annotations

import pytest

from isthmus.api import loader, support

MESH = """apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec:
  defaultConfig: {{proxyMetadata: {{{key}: "{value}"}}}}
"""
PROXY_CONFIG = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {{name: pc, namespace: default}}
spec:
  selector: {{matchLabels: {{app: a}}}}
  environmentVariables: {{{key}: "{value}"}}
"""


def errors(text: str) -> list[str]:
    report = loader.load_text_report(text, "f.yaml")
    assert not report.errors
    return [str(e) for r in report.resources for e in support.check_supported(r)]


@pytest.mark.parametrize("template", [MESH, PROXY_CONFIG])
@pytest.mark.parametrize("value", ["true", "false", "1", "0", "True", "FALSE", "t"])
def test_booleans_are_taken(template: str, value: str) -> None:
    assert errors(template.format(key="ISTHMUS_PROXY_METRICS", value=value)) == []


@pytest.mark.parametrize(
    ("template", "field", "line"),
    [(MESH, "spec.defaultConfig.proxyMetadata", 5), (PROXY_CONFIG, "spec.environmentVariables", 6)],
)
def test_a_value_that_is_no_boolean_is_refused_with_its_field(template: str, field: str, line: int) -> None:
    (error,) = errors(template.format(key="ISTHMUS_PROXY_METRICS", value="yes please"))
    assert error.startswith(f"f.yaml:{line}: ")
    assert f"{field}.ISTHMUS_PROXY_METRICS: 'yes please' is not a boolean" in error


def test_the_collector_node_metadata_belongs_to_the_agent() -> None:
    (error,) = errors(PROXY_CONFIG.format(key="ISTIO_META_ISTHMUS_STATS_COLLECTOR", value="10.0.0.1:15014"))
    assert "node metadata ISTHMUS_STATS_COLLECTOR is set by the agent" in error
