from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from isthmus.api import networking
from isthmus.api.kinds import KINDS, kind_info
from isthmus.api.paths import format_path, parse_path
from isthmus.api.types import is_duration, parse_duration, to_camel


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("100ms", timedelta(milliseconds=100)),
        ("1.5s", timedelta(seconds=1.5)),
        ("1m", timedelta(minutes=1)),
        ("1h", timedelta(hours=1)),
        ("2m30s", timedelta(minutes=2, seconds=30)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("250us", timedelta(microseconds=250)),
        ("1h0m0.5s", timedelta(hours=1, milliseconds=500)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["1", "s", "1d", "1 s", "", "1.5.2s", "-"])
def test_bad_durations(bad):
    assert not is_duration(bad)
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_duration_fields_keep_the_string_and_reject_bad_syntax():
    r = networking.HTTPRoute.model_validate({"timeout": "1.5s", "route": [{"destination": {"host": "a"}}]})
    assert r.timeout == "1.5s"
    with pytest.raises(ValidationError) as ei:
        networking.HTTPRoute.model_validate({"timeout": "10"})
    assert 'invalid duration "10"' in str(ei.value)


def test_camel_case_names():
    assert to_camel("ignore_uri_case") == "ignoreUriCase"
    assert to_camel("from_") == "from"
    assert to_camel("consecutive_5xx_errors") == "consecutive5xxErrors"
    assert networking.OutlierDetection.model_fields["consecutive_5xx_errors"].alias == "consecutive5xxErrors"
    assert networking.LocalityDistribute.model_fields["from_"].alias == "from"


def test_models_are_frozen_and_forbid_extra():
    d = networking.Destination(host="a")
    with pytest.raises(ValidationError):
        d.host = "b"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        networking.Destination.model_validate({"host": "a", "bogus": 1})


def test_oneofs():
    with pytest.raises(ValidationError, match="only one of port, derivePort"):
        networking.HTTPRedirect.model_validate({"port": 8080, "derivePort": "FROM_REQUEST_PORT"})
    with pytest.raises(ValidationError, match="only one of string, bytes"):
        networking.HTTPBody.model_validate({"string": "a", "bytes": "YQ=="})
    with pytest.raises(ValidationError, match="invalid base64"):
        networking.HTTPBody.model_validate({"bytes": "!!"})


def test_registry():
    info = kind_info("networking.istio.io/v1beta1", "VirtualService")
    assert info is not None and info.spec_model is networking.VirtualService
    assert kind_info("networking.istio.io/v1alpha3", "EnvoyFilter") is not None
    assert kind_info("networking.istio.io/v1", "EnvoyFilter") is None
    assert kind_info("v1", "Service").namespaced
    assert not kind_info("v1", "Namespace").namespaced
    assert kind_info("apps/v1", "Deployment") is not None
    assert ("isthmus.dev", "MeshConfig") in KINDS


@pytest.mark.parametrize(
    "path",
    [
        "spec.http[0].route[1].weight",
        'metadata.labels["app.kubernetes.io/name"]',
        'spec.portLevelMtls["8080"].mode',
        "spec",
    ],
)
def test_path_round_trip(path):
    assert format_path(parse_path(path)) == path
