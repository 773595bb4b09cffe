"""The networking.istio.io/v1beta1 ProxyConfig kind in the running mesh: what is applied, what is refused
(with its reason), and Istio's validation messages."""

from __future__ import annotations

import pytest

from isthmus.api.loader import load_text, load_text_report
from isthmus.api.support import UNSUPPORTED, UNSUPPORTED_KINDS, check_supported
from isthmus.api.validation import validate_issues

HEAD = "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: pc, namespace: ns}\n"


def load(spec: str):
    (r,) = load_text(HEAD + "spec:\n" + spec, "pc.yaml")
    return r


def messages(spec: str) -> list[str]:
    return [e.message for e in check_supported(load(spec))]


def test_kind_is_no_longer_refused() -> None:
    assert "ProxyConfig" not in UNSUPPORTED_KINDS


def test_concurrency_selector_and_environment_are_applied() -> None:
    spec = (
        "  selector: {matchLabels: {app: ratings}}\n"
        "  concurrency: 0\n"
        "  environmentVariables: {FOO: bar, ISTIO_META_CLUSTER_ID: c1, ISTIO_METAJSON_X: '{\"a\": 1}'}\n"
    )
    assert messages(spec) == []


def test_image_is_refused_with_its_reason() -> None:
    (msg,) = messages("  image: {imageType: debug}\n")
    assert msg == f"spec.image is not supported yet: {UNSUPPORTED['ProxyConfig']['spec.image']}"
    assert "no containers" in msg


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("SECRET_TTL", "certificate lifetime is mesh-wide: set it in MeshConfig defaultConfig.proxyMetadata"),
        ("ISTIO_DELTA_XDS", "xDS protocol choice is mesh-wide"),
        ("ISTIO_META_IDLE_TIMEOUT", "idle timeout mesh-wide"),
        ("ISTIO_META_NAMESPACE", "node metadata NAMESPACE is set by the agent from the pod"),
        ("ISTIO_METAJSON_LABELS", "node metadata LABELS is set by the agent"),
    ],
)
def test_environment_the_agent_cannot_apply_per_workload_is_refused(key: str, fragment: str) -> None:
    (msg,) = messages(f"  environmentVariables: {{{key}: '1'}}\n")
    assert msg.startswith(f"spec.environmentVariables.{key} is not supported: ")
    assert fragment in msg


def test_metajson_must_be_json() -> None:
    (msg,) = messages("  environmentVariables: {ISTIO_METAJSON_X: 'not json'}\n")
    assert "must be JSON" in msg


# Istio's validateProxyConfig (pkg/config/validation): concurrency >= 0 and the workload selector rules.
def test_negative_concurrency_is_an_error() -> None:
    report = load_text_report(HEAD + "spec:\n  concurrency: -1\n", "pc.yaml")
    assert [str(m) for m in report.errors] == [
        "pc.yaml:5: ProxyConfig ns/pc: spec.concurrency: concurrency must be greater than or equal to 0"
    ]


def test_selector_without_labels_warns() -> None:
    # istiod applies such a resource neither namespace-wide (selector is set) nor per workload (no labels).
    issues = validate_issues(load("  selector: {}\n  concurrency: 2\n"))
    assert [(i.level, i.message) for i in issues] == [
        ("Warning", "workload selector specified without labels")
    ]


def test_wildcard_selector_is_an_error() -> None:
    report = load_text_report(HEAD + "spec:\n  selector: {matchLabels: {app: '*'}}\n", "pc.yaml")
    assert any("wildcard is not supported in selector" in str(m) for m in report.errors)


def test_mesh_default_concurrency_is_applied() -> None:
    (r,) = load_text(
        "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
        "spec: {defaultConfig: {concurrency: 3}}\n",
        "mesh.yaml",
    )
    assert check_supported(r) == []


def test_the_proxy_config_annotation_on_a_workload_is_refused_with_the_way_to_say_it() -> None:
    from isthmus.api.loader import load_text
    from isthmus.api.support import check_supported

    (wl,) = load_text(
        """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: a
  annotations: {proxy.istio.io/config: "concurrency: 2"}
spec: {ports: [8080], command: [isthmus, echo]}
""",
        "wl.yaml",
    )
    (err,) = check_supported(wl)
    assert "metadata.annotations.proxy.istio.io/config is not supported yet: " in str(err)
    assert "write a ProxyConfig whose selector matches" in str(err) and str(err).startswith("wl.yaml:")
