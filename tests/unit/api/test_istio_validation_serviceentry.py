"""Istio's ServiceEntry, WorkloadEntry and WorkloadGroup validation tests, ported case by case to YAML.

Sources: ``pkg/config/validation/validation_test.go`` TestValidateServiceEntries (resource ``foo`` in
namespace ``bar``, warnings checked), TestValidateWorkloadEntry and TestValidateWorkloadGroup
(``checkValidation``: errors and warnings checked).
Each case: (Istio case name, spec YAML, valid, error fragment or None, warning expectation or None).
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple

import pytest
from istio_verdicts import assert_verdict


class Case(NamedTuple):
    name: str
    spec: str
    valid: bool
    fragment: str | None = None
    warn: bool | None = None
    labels: str = ""


def resource(kind: str, case: Case) -> str:
    meta = "{name: foo, namespace: bar" + (f", labels: {case.labels}" if case.labels else "") + "}"
    return f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {meta}\nspec:\n" + textwrap.indent(
        textwrap.dedent(case.spec).strip("\n"), "  "
    )


def check(case: Case, text: str) -> None:
    assert_verdict(case.name, text, case.valid, case.fragment, case.warn)


HTTP12 = "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 8080, protocol: http, name: http-valid2}]"
HTTP1 = "ports: [{number: 80, protocol: http, name: http-valid1}]"


def se(*lines: str) -> str:
    return "\n".join(lines)


# ==================================================================================================
# TestValidateServiceEntries: every case checks the warning too (``warning`` defaults to false).

SERVICE_ENTRY = [
    Case(
        "discovery type DNS",
        se(
            "hosts: ['*.google.com']",
            HTTP12,
            "endpoints: [{address: lon.google.com, ports: {http-valid1: 8080}}, "
            "{address: in.google.com, ports: {http-valid2: 9080}}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS Round Robin",
        se(
            "hosts: ['*.istio.io']",
            HTTP12,
            "endpoints: [{address: api-v1.istio.io, ports: {http-valid1: 8080}}]",
            "resolution: DNS_ROUND_ROBIN",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS, label tlsMode: istio",
        se(
            "hosts: ['*.google.com']",
            HTTP12,
            "endpoints: [{address: lon.google.com, ports: {http-valid1: 8080}, "
            "labels: {security.istio.io/tlsMode: istio}}, "
            "{address: in.google.com, ports: {http-valid2: 9080}, labels: {security.istio.io/tlsMode: istio}}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS, one host set with IP address and https port",
        se(
            "hosts: [httpbin.org]",
            "addresses: [10.10.10.10]",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 8080, protocol: http, "
            "name: http-valid2}, {number: 443, protocol: https, name: https}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS, multi hosts set with IP address and https port",
        se(
            "hosts: [httpbin.org, wikipedia.org]",
            "addresses: [10.10.10.10]",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 8080, protocol: http, "
            "name: http-valid2}, {number: 443, protocol: https, name: https}]",
            "resolution: DNS",
        ),
        True,
        warn=True,
    ),
    Case(
        "discovery type DNS, IP address set",
        se(
            "hosts: ['*.google.com']",
            "addresses: [10.10.10.10]",
            HTTP12,
            "endpoints: [{address: lon.google.com, ports: {http-valid1: 8080}}, "
            "{address: in.google.com, ports: {http-valid2: 9080}}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS, IP in endpoints",
        se(
            "hosts: ['*.google.com']",
            HTTP12,
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 8080}}, {address: in.google.com, "
            "ports: {http-valid2: 9080}}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS",
        se("hosts: ['*.google.com']", HTTP12, "resolution: DYNAMIC_DNS"),
        True,
        warn=False,
    ),
    Case(
        "empty hosts",
        se(HTTP1, "endpoints: [{address: in.google.com, ports: {http-valid2: 9080}}]", "resolution: DNS"),
        False,  # a missing ``hosts`` is a schema error (the CRD requires it), so no wording is checked
        warn=False,
    ),
    Case(
        "bad hosts",
        se(
            "hosts: ['-']",
            HTTP1,
            "endpoints: [{address: in.google.com, ports: {http-valid2: 9080}}]",
            "resolution: DNS",
        ),
        False,
        warn=False,
    ),
    Case(
        "full wildcard host",
        se(
            "hosts: [foo.com, '*']",
            HTTP1,
            "endpoints: [{address: in.google.com, ports: {http-valid2: 9080}}]",
            "resolution: DNS",
        ),
        False,
        "invalid host *",
        warn=False,
    ),
    Case(
        "short name host",
        se(
            "hosts: [foo, bar.com]",
            HTTP1,
            "endpoints: [{address: in.google.com, ports: {http-valid1: 9080}}]",
            "resolution: DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "undefined endpoint port",
        se(
            "hosts: [google.com]",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 80, protocol: http, name: http-valid2}]",
            "endpoints: [{address: lon.google.com, ports: {http-valid1: 8080}}, "
            "{address: in.google.com, ports: {http-dne: 9080}}]",
            "resolution: DNS",
        ),
        False,
        "endpoint port 9080 is not defined by the service entry",
        warn=False,
    ),
    Case(
        "discovery type DNS, non-FQDN endpoint",
        se(
            "hosts: ['*.google.com']",
            HTTP12,
            "endpoints: [{address: '*.lon.google.com', ports: {http-valid1: 8080}}, "
            "{address: in.google.com, ports: {http-dne: 9080}}]",
            "resolution: DNS",
        ),
        False,
        'endpoint address "*.lon.google.com" is not a valid FQDN or an IP address',
        warn=False,
    ),
    Case(
        "discovery type DNS, non-FQDN host",
        se("hosts: ['*.google.com']", HTTP12, "resolution: DNS"),
        False,
        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS",
        warn=False,
    ),
    Case(
        "discovery type DNS, no endpoints",
        se("hosts: [google.com]", HTTP12, "resolution: DNS"),
        True,
        warn=False,
    ),
    Case(
        "discovery type DNS, unix endpoint",
        se(
            "hosts: ['*.google.com']",
            HTTP1,
            "endpoints: [{address: 'unix:///lon/google/com'}]",
            "resolution: DNS",
        ),
        False,
        warn=False,
    ),
    Case("discovery type none", se("hosts: [google.com]", HTTP12, "resolution: NONE"), True, warn=False),
    Case(
        "discovery type none, endpoints provided",
        se(
            "hosts: [google.com]",
            HTTP12,
            "endpoints: [{address: lon.google.com, ports: {http-valid1: 8080}}]",
            "resolution: NONE",
        ),
        False,
        "no endpoints should be provided for resolution type none",
        warn=False,
    ),
    Case(
        "discovery type none, cidr addresses",
        se("hosts: [google.com]", "addresses: [172.1.2.16/16]", HTTP12, "resolution: NONE"),
        True,
        warn=False,
    ),
    Case(
        "discovery type static, cidr addresses with endpoints",
        se(
            "hosts: [google.com]",
            "addresses: [172.1.2.16/16]",
            HTTP12,
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 8080}}, {address: 2.2.2.2, ports: {http-valid2: 9080}}]",
            "resolution: STATIC",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type static",
        se(
            "hosts: [google.com]",
            "addresses: [172.1.2.16]",
            HTTP12,
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 8080}}, {address: 2.2.2.2, ports: {http-valid2: 9080}}]",
            "resolution: STATIC",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type static, FQDN in endpoints",
        se(
            "hosts: [google.com]",
            "addresses: [172.1.2.16]",
            HTTP12,
            "endpoints: [{address: google.com, ports: {http-valid1: 8080}}, {address: 2.2.2.2, ports: {http-valid2: 9080}}]",
            "resolution: STATIC",
        ),
        False,
        'endpoint address "google.com" is not a valid IP address',
        warn=False,
    ),
    Case(
        "discovery type static, missing endpoints",
        se("hosts: [google.com]", "addresses: [172.1.2.16]", HTTP12, "resolution: STATIC"),
        True,
        warn=False,
    ),
    Case(
        "discovery type static, bad endpoint port name",
        se(
            "hosts: [google.com]",
            "addresses: [172.1.2.16]",
            HTTP12,
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 8080}}, {address: 2.2.2.2, ports: {http-dne: 9080}}]",
            "resolution: STATIC",
        ),
        False,
        warn=False,
    ),
    Case(
        "discovery type none, conflicting port names",
        se(
            "hosts: [google.com]",
            "ports: [{number: 80, protocol: http, name: http-conflict}, "
            "{number: 8080, protocol: http, name: http-conflict}]",
            "resolution: NONE",
        ),
        False,
        'service entry port name "http-conflict" already defined',
        warn=False,
    ),
    Case(
        "discovery type none, conflicting port numbers",
        se(
            "hosts: [google.com]",
            "ports: [{number: 80, protocol: http, name: http-conflict1}, "
            "{number: 80, protocol: http, name: http-conflict2}]",
            "resolution: NONE",
        ),
        False,
        "service entry port 80 already defined",
        warn=False,
    ),
    Case(
        "unix socket",
        se(
            "hosts: [uds.cluster.local]",
            "ports: [{number: 6553, protocol: grpc, name: grpc-service1}]",
            "resolution: STATIC",
            "endpoints: [{address: 'unix:///path/to/socket'}]",
        ),
        True,
        warn=False,
    ),
    Case(
        "unix socket, relative path",
        se(
            "hosts: [uds.cluster.local]",
            "ports: [{number: 6553, protocol: grpc, name: grpc-service1}]",
            "resolution: STATIC",
            "endpoints: [{address: 'unix://./relative/path.sock'}]",
        ),
        False,
        warn=False,
    ),
    Case(
        "unix socket, endpoint ports",
        se(
            "hosts: [uds.cluster.local]",
            "ports: [{number: 6553, protocol: grpc, name: grpc-service1}]",
            "resolution: STATIC",
            "endpoints: [{address: 'unix:///path/to/socket', ports: {grpc-service1: 6553}}]",
        ),
        False,
        "unix endpoint unix:///path/to/socket must not include ports",
        warn=False,
    ),
    Case(
        "unix socket, multiple service ports",
        se(
            "hosts: [uds.cluster.local]",
            "ports: [{number: 6553, protocol: grpc, name: grpc-service1}, {number: 80, protocol: http, "
            "name: http-service2}]",
            "resolution: STATIC",
            "endpoints: [{address: 'unix:///path/to/socket'}]",
        ),
        False,
        "exactly 1 service port required for unix endpoints",
        warn=False,
    ),
    Case(
        "empty protocol",
        se(
            "hosts: [google.com]",
            "addresses: [172.1.2.16/16]",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 8080, name: http-valid2}]",
            "resolution: NONE",
        ),
        True,
        warn=False,
    ),
    Case(
        "selector",
        se("hosts: [google.com]", "workloadSelector: {labels: {foo: bar}}", HTTP1),
        True,
        warn=True,
    ),
    Case(
        "workload selector without labels",
        se("hosts: [google.com]", HTTP12, "workloadSelector: {}"),
        True,
        warn=True,
    ),
    Case(
        "selector and endpoints",
        se(
            "hosts: [google.com]",
            "workloadSelector: {labels: {foo: bar}}",
            HTTP1,
            "endpoints: [{address: 1.1.1.1}]",
        ),
        False,
        "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        warn=True,
    ),
    Case(
        "selector and resolution NONE",
        se("hosts: [google.com]", "workloadSelector: {labels: {foo: bar}}", HTTP1, "resolution: NONE"),
        True,
        warn=True,
    ),
    Case(
        "selector and resolution DNS",
        se("hosts: [google.com]", "workloadSelector: {labels: {foo: bar}}", HTTP1, "resolution: DNS"),
        True,
        warn=False,
    ),
    Case(
        "bad selector key",
        se("hosts: [google.com]", "workloadSelector: {labels: {'': bar}}", HTTP1),
        False,
        'empty key is not supported in selector: "=bar"',
    ),
    Case(
        "repeat target port",
        se(
            "hosts: [google.com]",
            "resolution: DNS",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 80}, "
            "{number: 81, protocol: http, name: http-valid2, targetPort: 80}]",
        ),
        True,
        warn=False,
    ),
    Case(
        "valid target port",
        se(
            "hosts: [google.com]",
            "resolution: DNS",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 81}]",
        ),
        True,
        warn=False,
    ),
    Case(
        "invalid target port",
        se(
            "hosts: [google.com]",
            "resolution: DNS",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 65536}]",
        ),
        False,
        "port number 65536 must be in the range 1..65535",
        warn=False,
    ),
    Case(
        "warn target port",
        se(
            "hosts: [google.com]",
            "workloadSelector: {labels: {key: bar}}",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 1234}]",
        ),
        True,
        warn=True,
    ),
    Case(
        "valid endpoint port",
        se(
            "hosts: [google.com]",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 81}]",
            "resolution: STATIC",
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 8081}}]",
        ),
        True,
        warn=False,
    ),
    Case(
        "invalid endpoint port",
        se(
            "hosts: [google.com]",
            "ports: [{number: 80, protocol: http, name: http-valid1, targetPort: 81}]",
            "resolution: STATIC",
            "endpoints: [{address: 1.1.1.1, ports: {http-valid1: 65536}}]",
        ),
        False,
        warn=False,
    ),
    Case(
        "protocol unset for addresses empty",
        se(
            "hosts: [google.com]",
            "addresses: []",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 8080, name: http-valid2}]",
            "resolution: NONE",
        ),
        True,
        warn=True,
    ),
    Case(
        "protocol is TCP for addresses empty",
        se(
            "hosts: [google.com]",
            "addresses: []",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 81, protocol: TCP, name: tcp-valid1}]",
            "resolution: NONE",
        ),
        True,
        warn=True,
    ),
    Case(
        "dns round robin with more than one endpoint",
        se(
            "hosts: [google.com]",
            "addresses: []",
            "ports: [{number: 8081, protocol: http, name: http-valid1}]",
            "endpoints: [{address: api-v1.istio.io, ports: {http-valid1: 8081}}, "
            "{address: 1.1.1.2, ports: {http-valid1: 8081}}]",
            "resolution: DNS_ROUND_ROBIN",
        ),
        False,
        "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
        warn=False,
    ),
    Case(
        "dns round robin with 0 endpoints",
        se(
            "hosts: [google.com]",
            "addresses: []",
            "ports: [{number: 8081, protocol: http, name: http-valid1}]",
            "endpoints: []",
            "resolution: DNS_ROUND_ROBIN",
        ),
        True,
        warn=False,
    ),
    Case(
        "partial wildcard hosts",
        se(
            "hosts: ['*.nytimes.com', '*washingtonpost.com']",
            "addresses: []",
            "ports: [{number: 443, protocol: HTTPS, name: https-nytimes}]",
            "endpoints: []",
            "resolution: NONE",
        ),
        True,
        warn=True,
    ),
    Case(
        "network set with no address on endpoint",
        se(
            "hosts: [www.example.com]",
            "addresses: []",
            "ports: [{number: 443, protocol: HTTPS, name: https-example}]",
            "endpoints: [{network: cluster-1}]",
            "resolution: STATIC",
        ),
        True,
        warn=True,
    ),
    Case(
        "discovery type DYNAMIC_DNS, unsupported TCP protocol",
        se(
            "hosts: ['*.google.com']",
            "addresses: []",
            "ports: [{number: 80, protocol: http, name: http-valid1}, {number: 81, protocol: TCP, name: tcp-valid1}]",
            "resolution: DYNAMIC_DNS",
        ),
        False,
        "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, GRPC protocol",
        se(
            "hosts: ['*.svc.cluster.local']",
            "addresses: []",
            "ports: [{number: 9090, protocol: GRPC, name: grpc}]",
            "resolution: DYNAMIC_DNS",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, FQDN host",
        se(
            "hosts: [google.com]",
            "addresses: []",
            "ports: [{number: 80, protocol: http, name: http-valid}]",
            "resolution: DYNAMIC_DNS",
        ),
        False,
        "host must be wildcarded for resolution mode DYNAMIC_DNS",
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, endpoints set",
        se(
            "hosts: ['*.google.com']",
            "addresses: []",
            HTTP1,
            "endpoints: [{address: in.google.com, ports: {http-valid1: 9080}}]",
            "resolution: DYNAMIC_DNS",
        ),
        False,
        "endpoints cannot be set for resolution type DYNAMIC_DNS",
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, IP address set",
        se("hosts: ['*.google.com']", "addresses: [10.10.10.10]", HTTP12, "resolution: DYNAMIC_DNS"),
        False,
        "addresses cannot be set for resolution type DYNAMIC_DNS",
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, empty hosts",
        se("hosts: []", "addresses: []", HTTP1, "resolution: DYNAMIC_DNS"),
        False,
        "at least one wildcard host must be provided for resolution type DYNAMIC_DNS",
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, multiple wildcarded hosts",
        se("hosts: ['*.google.com', '*.amazon.com']", "addresses: []", HTTP1, "resolution: DYNAMIC_DNS"),
        True,
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, internal mesh location",
        se(
            "hosts: ['*.google.com']",
            "addresses: []",
            HTTP1,
            "resolution: DYNAMIC_DNS",
            "location: MESH_INTERNAL",
        ),
        True,
        warn=False,
    ),
    Case(
        "discovery type DYNAMIC_DNS, MESH_INTERNAL with waypoint (invalid)",
        se(
            "hosts: ['*.google.com']",
            "addresses: []",
            HTTP1,
            "resolution: DYNAMIC_DNS",
            "location: MESH_INTERNAL",
        ),
        False,
        "location MESH_INTERNAL with resolution type DYNAMIC_DNS is not supported when using waypoints",
        warn=False,
        labels="{istio.io/use-waypoint: my-waypoint}",
    ),
    # ``ports: [nil]`` is ``ports: [null]`` in YAML; the schema rejects the null port before validation.
    Case(
        "discovery type DYNAMIC_DNS, nil port",
        se("hosts: ['*.google.com']", "location: MESH_EXTERNAL", "ports: [null]", "resolution: DYNAMIC_DNS"),
        False,
    ),
    Case("nil port in ports array", se("hosts: [google.com]", "ports: [null]", "resolution: NONE"), False),
    Case(
        "discovery type DNS with addresses, nil port",
        se("hosts: [google.com]", "addresses: [1.2.3.4]", "ports: [null]", "resolution: DNS"),
        False,
    ),
]

# ==================================================================================================
# TestValidateWorkloadEntry

WORKLOAD_ENTRY = [
    Case("valid", "address: 1.2.3.4", True, warn=False),
    Case("missing address", "{}", False, "address is required", warn=False),
    Case("missing address with network", "network: network-2", True, warn=True),
    Case("valid unix endpoint", "address: 'unix:///lon/google/com'", True, warn=False),
    Case(
        "invalid unix endpoint",
        "address: 'unix:///lon/google/com'\nports: {'7777': 7777}",
        False,
        "must not include ports",
        warn=False,
    ),
    Case("valid FQDN", "address: validdns.com\nports: {'7777': 7777}", True, warn=False),
    Case(
        "invalid FQDN",
        "address: 'invaliddns.com:9443'\nports: {'7777': 7777}",
        False,
        'endpoint address "invaliddns.com:9443" is not a valid FQDN or an IP address',
        warn=False,
    ),
    Case("valid IP", "address: 172.16.1.1\nports: {'7777': 7777}", True, warn=False),
]

# ==================================================================================================
# TestValidateWorkloadGroup (validator in misc.py)

WORKLOAD_GROUP = [
    Case("valid", "template: {}", True, warn=False),
    Case("invalid", "template: {}\nmetadata: {labels: {'.': '~'}}", False, warn=False),
    Case("probe missing method", "template: {}\nprobe: {}", False, warn=False),
    # ``HealthCheckMethod: &ReadinessProbe_HttpGet{}`` (a nil httpGet inside the oneof) has no YAML form
    # distinct from the next case: both are ``httpGet: {}``.
    Case("probe http empty", "template: {}\nprobe: {httpGet: {}}", False, warn=False),
    Case("probe http valid", "template: {}\nprobe: {httpGet: {port: 5}}", True, warn=False),
    Case("probe tcp invalid", "template: {}\nprobe: {tcpSocket: {}}", False, warn=False),
    Case("probe tcp valid", "template: {}\nprobe: {tcpSocket: {port: 5}}", True, warn=False),
    Case("probe exec invalid", "template: {}\nprobe: {exec: {}}", False, warn=False),
    Case("probe exec valid", "template: {}\nprobe: {exec: {command: [foo, bar]}}", True, warn=False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in SERVICE_ENTRY])
def test_istio_service_entry_case(case: Case) -> None:
    check(case, resource("ServiceEntry", case))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in WORKLOAD_ENTRY])
def test_istio_workload_entry_case(case: Case) -> None:
    check(case, resource("WorkloadEntry", case))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in WORKLOAD_GROUP])
def test_istio_workload_group_case(case: Case) -> None:
    check(case, resource("WorkloadGroup", case))
