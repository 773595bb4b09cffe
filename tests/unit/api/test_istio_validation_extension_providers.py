"""Istio's extension-provider validation tests (``pkg/config/validation/agent/extensionprovider_test.go``:
TestValidateExtensionProviderService and the per-kind TestValidateExtensionProvider* tables), ported as
MeshConfig resources.

istiod only logs an invalid extension provider (the mesh config is still used), so Isthmus accepts the
MeshConfig and gives a warning where Istio's test expects an error: "valid" below means no warning.
"""

from __future__ import annotations

import pytest
from istio_verdicts import assert_verdict

# (case, provider kind as written, service, port or None, extra fields, valid)
Case = tuple[str, str, str, int | None, str, bool]

SERVICE_FORMS = [
    ("pure ip4 address", "127.0.0.1", True),
    ("pure ip6 address", "2001:1::1", True),
    ("standard kubernetes FQDN", "istio-pilot.istio-system.svc.cluster.local", True),
    ("standard kubernetes FQDN with port", "istio-pilot.istio-system.svc.cluster.local:3000", False),
    ("extension provider service with namespace", "bar/istio.io", True),
    ("extension provider service with namespace and port", "bar/istio.io:3000", False),
    ("extension provider service with two namespaces", "bar/foo/istio.io", False),
]


def _kind_cases(kind: str, host: str, port: int, extra: str = "") -> list[Case]:
    """The table every tracer / gRPC logger kind has: normal, with a namespace, an invalid namespace, a
    port in the service, no port."""
    return [
        (f"{kind} normal", kind, host, port, extra, True),
        (f"{kind} service with namespace", kind, f"namespace/{host}", port, extra, True),
        (f"{kind} service with invalid namespace", kind, f"name/space/{host}", port, extra, False),
        (f"{kind} service with port", kind, f"{host}:{port}", port, extra, False),
        (f"{kind} missing port", kind, host, None, extra, False),
    ]


CASES: list[Case] = [
    *[(f"service: {name}", "zipkin", service, 9411, "", valid) for name, service, valid in SERVICE_FORMS],
    *_kind_cases("zipkin", "zipkin.istio-system", 9411),
    *_kind_cases("datadog", "datadog-agent.com", 8126),
    *_kind_cases("opencensus", "opencensus-agent.com", 4000),
    *_kind_cases("envoyOtelAls", "otel.istio-syste.svc", 4000),
    *_kind_cases("envoyHttpAls", "grpc-als.istio-syste.svc", 4000),
    *_kind_cases("envoyTcpAls", "grpc-als.istio-syste.svc", 4000),
    ("lightstep normal", "lightstep", "collector.lightstep", 8080, "accessToken: abcdefg1234567", True),
    (
        "lightstep service with namespace",
        "lightstep",
        "namespace/collector.lightstep",
        8080,
        "accessToken: abcdefg1234567",
        True,
    ),
    (
        "lightstep service with missing port",
        "lightstep",
        "10.0.0.100",
        None,
        "accessToken: abcdefg1234567",
        False,
    ),
    (
        "lightstep service with missing accesstoken",
        "lightstep",
        "namespace/collector.lightstep",
        8080,
        "",
        False,
    ),
]


def provider_mesh(kind: str, service: str, port: int | None, extra: str) -> str:
    fields = [f"service: '{service}'"]
    if port is not None:
        fields.append(f"port: {port}")
    if extra:
        fields.append(extra)
    return (
        "apiVersion: isthmus.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n"
        f"  extensionProviders:\n  - name: p\n    {kind}: {{{', '.join(fields)}}}\n"
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_istio_extension_provider_case(case: Case) -> None:
    name, kind, service, port, extra, valid = case
    assert_verdict(name, provider_mesh(kind, service, port, extra), True, warning=not valid)
