from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from isthmus.api.errors import ConfigError, ConfigErrors
from isthmus.api.loader import dump_yaml, load_path, load_text

DATA = Path(__file__).parent / "data"


def test_config_error_str():
    e = ConfigError(
        "a.yaml", 12, "VirtualService", "default", "reviews", "spec.http[0].route[1].weight", "bad"
    )
    assert str(e) == "a.yaml:12: VirtualService default/reviews: spec.http[0].route[1].weight: bad"
    assert str(ConfigError(file="bad.yaml", line=7, message="mapping values are not allowed here")) == (
        "bad.yaml:7: mapping values are not allowed here"
    )
    assert str(ConfigError(kind="Namespace", name="x", message="m")) == "Namespace x: m"
    errs = ConfigErrors([e, ConfigError(message="two")])
    assert str(errs) == f"{e}\ntwo"
    assert errs.errors[1].level == "Error"


def test_round_trip_bookinfo():
    rs = load_path(DATA / "bookinfo-networking.yaml")
    text = dump_yaml(rs)
    again = load_text(text, "again.yaml")
    assert again == rs
    for a, b in zip(rs, again, strict=True):
        assert a.to_dict() == b.to_dict()


def test_to_dict_is_camel_and_excludes_unset():
    (r,) = load_text(
        """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: n, labels: {a: b}}
spec:
  host: d
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 0}
    loadBalancer:
      consistentHash: {useSourceIp: true}
"""
    )
    d = r.to_dict()
    assert d == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "d", "namespace": "n", "labels": {"a": "b"}},
        "spec": {
            "host": "d",
            "trafficPolicy": {
                "outlierDetection": {"consecutive5xxErrors": 0},
                "loadBalancer": {"consistentHash": {"useSourceIp": True}},
            },
        },
    }
    assert yaml.safe_load(yaml.safe_dump(d)) == d


def test_with_namespace_and_immutability():
    (r,) = load_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n")
    r2 = r.with_namespace("other")
    assert r.namespace == "default" and r2.namespace == "other"
    assert r2.key == ("Service", "other", "s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.kind = "x"  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        r.spec.ports = []  # type: ignore[misc]
    assert hash(r) != hash(r2)


def test_line_of_fields():
    (r,) = load_path(DATA / "bookinfo-networking.yaml")[1:2]
    assert r.line_of("spec.http[0].route[0].destination.host") == 42
    assert r.line_of("spec.nonexistent") == r.line_of("spec")
    assert r.line_of() == r.origin.line == 19


def test_round_trip_every_kind():
    rs = load_path(DATA / "istio-docs-valid.yaml")
    kinds = {r.kind for r in rs}
    assert {"MeshConfig", "Workload", "EnvoyFilter", "ProxyConfig", "Telemetry", "WorkloadGroup"} <= kinds
    again = load_text(dump_yaml(rs), "again.yaml")
    assert again == rs
    assert [a.to_dict() for a in again] == [r.to_dict() for r in rs]


def test_kubectl_list_output_lenient():
    from isthmus.api.loader import load_text_report

    rep = load_text_report((DATA / "kubectl-list.yaml").read_text(), "k.yaml", lenient=True)
    assert [r.kind for r in rep.resources] == ["Pod", "Service", "Namespace"]
    assert [(m.level, m.kind) for m in rep.messages] == [("Info", "ConfigMap")]
    pod, svc, ns = rep.resources
    assert pod.status["podIP"] == "10.244.0.12"
    assert pod.spec.service_account_name == "bookinfo-details"
    assert pod.spec.containers[0].ports[0].container_port == 9080
    assert pod.origin.line == 4
    assert pod.metadata.owner_references[0]["kind"] == "ReplicaSet"
    assert svc.spec.cluster_ip == "10.96.12.34" and svc.spec.ports[0].target_port == 9080
    assert ns.key == ("Namespace", "", "default") and ns.labels["istio-injection"] == "enabled"
    # the unknown container fields are kept and round-trip
    again = load_text(dump_yaml([pod, svc, ns]))
    assert again == [pod, svc, ns]
    assert again[0].to_dict()["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
