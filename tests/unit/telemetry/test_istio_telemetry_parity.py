"""Telemetry API parity with istiod's unit tests.

Cases ported from istio/istio ``pilot/pkg/model/telemetry_logging_test.go`` (TestAccessLogging,
TestAccessLoggingWithFilter, TestTelemetryAccessLog, TestFileAccessLogFormat), ``telemetry_test.go``
(TestTracing, TestTelemetryFilters, Test_appendApplicableTelemetries) and the listener side of
``pilot/pkg/networking/core/accesslog.go`` / ``tracing.go`` (the MeshConfig fallbacks), with the case
names kept. istiod's listener classes map to Isthmus directions: SidecarOutbound and Gateway are the
CLIENT mode ("outbound"), SidecarInbound the SERVER mode ("inbound"). istiod's test Telemetries are all
named ``default`` and ordered as created; here they have distinct names, in the same order.

Not ported (Isthmus refuses them at admission, see README): ``targetRef`` cases, ``reportingInterval``,
stackdriver/OpenTelemetry/gRPC ALS output (those providers are reported and left out), custom metrics.
"""

from __future__ import annotations

import json

import pytest
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import json_format
from telemetry_helpers import GATEWAY, REVIEWS, file_logs, mesh, snap, tel

from isthmus.model.proxy import Proxy
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import accesslog, istio, policy, tracing
from isthmus.telemetry import envoy as tenvoy

# istiod's createTestTelemetries: the default mesh's providers (envoy, prometheus, stackdriver) plus
# `envoy-json` (a file provider with empty labels: Istio's default JSON format).
PROVIDERS = """
- name: envoy-json
  envoyFileAccessLog: {path: /dev/stdout, logFormat: {labels: {}}}
- name: stackdriver
  stackdriver: {}
- name: zk
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: zk2
  zipkin: {service: zipkin2.istio-system.svc.cluster.local, port: 9411}
"""


def _mesh(defaults: str = "", extra: str = "") -> str:
    body = "extensionProviders:" + PROVIDERS
    if defaults:
        body += f"defaultProviders: {{{defaults}}}\n"
    return mesh(body + extra)


# --- access logging: provider selection (TestAccessLogging) -------------------------------------------

ENVOY = "accessLogging: [{providers: [{name: envoy}]}]"
CLIENT = "accessLogging: [{match: {mode: CLIENT}, providers: [{name: envoy}]}]"
CLIENT_DISABLED = "accessLogging: [{match: {mode: CLIENT}, providers: [{name: envoy}], disabled: true}]"
SIDECAR_CLIENT = "selector: {matchLabels: {app: reviews}}\n" + CLIENT
SERVER = "accessLogging: [{match: {mode: SERVER}, providers: [{name: envoy}]}]"
SERVER_DISABLED = "accessLogging: [{match: {mode: SERVER}, providers: [{name: envoy}], disabled: true}]"
SERVER_AND_CLIENT = "accessLogging: [{match: {mode: CLIENT_AND_SERVER}, providers: [{name: envoy}]}]"
STACKDRIVER = "accessLogging: [{providers: [{name: stackdriver}]}]"
EMPTY = "accessLogging: [{}]"
DEFAULT_JSON = "accessLogging: [{providers: [{name: envoy-json}]}]"
DISABLED = "accessLogging: [{disabled: true}]"
NON_EXISTENT = "accessLogging: [{providers: [{name: custom-provider}]}]"
PROMETHEUS = "metrics: [{providers: [{name: envoy}]}]"
MULTI = "accessLogging: [{providers: [{name: envoy}]}, {providers: [{name: envoy-json}]}]"
MULTI_DISABLED = (
    "accessLogging: [{providers: [{name: envoy}]}, {providers: [{name: envoy-json}], disabled: true}]"
)
MULTI_PROVIDERS = (
    "accessLogging: [{providers: [{name: envoy}, {name: envoy-json}]}, {providers: [{name: envoy}]}]"
)
MULTI_FILTERS = """accessLogging:
- {match: {mode: SERVER}, providers: [{name: envoy}]}
- {match: {mode: CLIENT_AND_SERVER}, providers: [{name: envoy}]}"""
MULTI_FILTERS_DISABLED = """accessLogging:
- {match: {mode: SERVER}, providers: [{name: envoy}]}
- {match: {mode: CLIENT_AND_SERVER}, providers: [{name: envoy}], disabled: true}"""
SERVER_AND_CLIENT_DIFFERENT = """accessLogging:
- {match: {mode: SERVER}, providers: [{name: envoy}]}
- {match: {mode: CLIENT}, providers: [{name: envoy-json}]}"""

ROOT, NS = "istio-system", "default"

# (name, [(namespace, spec)], mode, proxy, defaultProviders.accessLogging, expected provider names).
# Expected None: istiod's AccessLogging yields no (non-disabled or disabled) config, so the listener
# falls back to MeshConfig accessLogFile; []: every provider is disabled for that mode.
ACCESS_LOGGING = [
    ("empty", [], "CLIENT", REVIEWS, "", None),
    ("prometheus-mesh", [(ROOT, PROMETHEUS)], "CLIENT", REVIEWS, "", None),
    ("prometheus-namespace", [(NS, PROMETHEUS)], "CLIENT", REVIEWS, "", None),
    (
        "prometheus-workload",
        [(NS, "selector: {matchLabels: {app: reviews}}\n" + PROMETHEUS)],
        "CLIENT",
        REVIEWS,
        "",
        None,
    ),
    ("default provider only", [], "CLIENT", REVIEWS, "envoy", ["envoy"]),
    ("provider only", [(ROOT, ENVOY)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("client - gateway", [(ROOT, CLIENT)], "CLIENT", GATEWAY, "", ["envoy"]),
    ("client - outbound", [(ROOT, CLIENT)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("client - inbound", [(ROOT, CLIENT)], "SERVER", REVIEWS, "", None),
    ("client - disabled server", [(ROOT, CLIENT), (NS, SERVER_DISABLED)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("client - disabled client", [(ROOT, CLIENT), (NS, CLIENT_DISABLED)], "CLIENT", REVIEWS, "", []),
    (
        "client - disabled - enabled",
        [(ROOT, CLIENT), (NS, CLIENT_DISABLED), (NS, SIDECAR_CLIENT)],
        "CLIENT",
        REVIEWS,
        "",
        ["envoy"],
    ),
    ("server - gateway", [(ROOT, SERVER)], "CLIENT", GATEWAY, "", None),
    ("server - inbound", [(ROOT, SERVER)], "SERVER", REVIEWS, "", ["envoy"]),
    ("server - outbound", [(ROOT, SERVER)], "CLIENT", REVIEWS, "", None),
    ("server and client - gateway", [(ROOT, SERVER_AND_CLIENT)], "CLIENT", GATEWAY, "", ["envoy"]),
    ("server and client - inbound", [(ROOT, SERVER_AND_CLIENT)], "SERVER", REVIEWS, "", ["envoy"]),
    ("server and client - outbound", [(ROOT, SERVER_AND_CLIENT)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("override default", [(ROOT, ENVOY)], "CLIENT", REVIEWS, "stackdriver", ["envoy"]),
    ("override namespace", [(ROOT, ENVOY), (NS, DEFAULT_JSON)], "CLIENT", REVIEWS, "", ["envoy-json"]),
    ("empty config inherits", [(ROOT, ENVOY), (NS, EMPTY)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("stackdriver", [(ROOT, ENVOY), (NS, STACKDRIVER)], "CLIENT", REVIEWS, "", None),
    ("default envoy JSON", [(ROOT, DEFAULT_JSON)], "CLIENT", REVIEWS, "", ["envoy-json"]),
    ("disable config", [(ROOT, ENVOY), (NS, DISABLED)], "CLIENT", REVIEWS, "", []),
    ("disable default", [(NS, DISABLED)], "CLIENT", REVIEWS, "envoy", []),
    ("non existing", [(NS, NON_EXISTENT)], "CLIENT", REVIEWS, "envoy", None),
    ("server - multi filters", [(ROOT, MULTI_FILTERS)], "CLIENT", REVIEWS, "", ["envoy"]),
    ("server - multi filters disabled", [(ROOT, MULTI_FILTERS_DISABLED)], "CLIENT", REVIEWS, "", []),
    ("multi accesslogging", [(ROOT, ENVOY), (NS, MULTI)], "CLIENT", REVIEWS, "", ["envoy", "envoy-json"]),
    (
        "multi accesslogging with disabled",
        [(ROOT, ENVOY), (NS, MULTI_DISABLED)],
        "CLIENT",
        REVIEWS,
        "",
        ["envoy"],
    ),
    (
        "multi accesslogging - multi providers",
        [(ROOT, ENVOY), (NS, MULTI_PROVIDERS)],
        "CLIENT",
        REVIEWS,
        "",
        ["envoy", "envoy-json"],
    ),
    (
        "server and client different - inbound",
        [(ROOT, SERVER_AND_CLIENT_DIFFERENT)],
        "SERVER",
        REVIEWS,
        "",
        ["envoy"],
    ),
    (
        "server and client different - outbound",
        [(ROOT, SERVER_AND_CLIENT_DIFFERENT)],
        "CLIENT",
        REVIEWS,
        "",
        ["envoy-json"],
    ),
]


def _telemetries(cfgs: list[tuple[str, str]]) -> list[str]:
    return [tel(f"t{i}", ns, spec) for i, (ns, spec) in enumerate(cfgs)]


def _log_names(s: Snapshot, proxy: Proxy, mode: policy.Mode) -> list[str] | None:
    got = policy.access_log_providers(s, proxy, mode)
    return None if got is None else [p.name for p, _ in got]


@pytest.mark.parametrize(
    ("cfgs", "mode", "proxy", "defaults", "want"),
    [pytest.param(*case[1:], id=case[0]) for case in ACCESS_LOGGING],
)
def test_access_logging_providers(
    cfgs: list[tuple[str, str]], mode: policy.Mode, proxy: Proxy, defaults: str, want: list[str] | None
) -> None:
    dp = f"accessLogging: [{defaults}]" if defaults else ""
    s = snap(_mesh(dp), *_telemetries(cfgs))
    assert _log_names(s, proxy, mode) == want


@pytest.mark.parametrize(
    ("cfgs", "direction", "want_paths"),
    [
        # istiod's setHTTPAccessLog: `len(cfgs) == 0` falls back to MeshConfig accessLogFile ...
        pytest.param([(ROOT, CLIENT)], "inbound", ["/tmp/mesh.log"], id="client-only telemetry, inbound"),
        pytest.param([(NS, NON_EXISTENT)], "outbound", ["/tmp/mesh.log"], id="non existing provider"),
        pytest.param([(ROOT, ENVOY), (NS, STACKDRIVER)], "outbound", ["/tmp/mesh.log"], id="stackdriver"),
        # ... while a disabled provider is a config: no file log at all.
        pytest.param([(ROOT, ENVOY), (NS, DISABLED)], "outbound", [], id="disabled"),
        pytest.param([(ROOT, CLIENT), (NS, CLIENT_DISABLED)], "outbound", [], id="client disabled"),
        pytest.param(
            [(ROOT, CLIENT), (NS, CLIENT_DISABLED)],
            "inbound",
            ["/tmp/mesh.log"],
            id="client disabled, inbound",
        ),
    ],
)
def test_meshconfig_access_log_file_fallback(
    cfgs: list[tuple[str, str]], direction: str, want_paths: list[str]
) -> None:
    s = snap(_mesh(extra="accessLogFile: /tmp/mesh.log\n"), *_telemetries(cfgs))
    for build in (tenvoy.http_access_loggers, tenvoy.tcp_access_loggers):
        assert [fal.path for fal, _ in file_logs(build(s, REVIEWS, direction))] == want_paths


# --- access logging: filters (TestAccessLoggingWithFilter) -------------------------------------------------


def _filtered(expr: str, mode: str = "") -> str:
    match = f"match: {{mode: {mode}}}, " if mode else ""
    return f"{{{match}providers: [{{name: envoy-json}}], filter: {{expression: '{expr}'}}}}"


CODE_400 = f"accessLogging: [{_filtered('response.code >= 400')}]"
CODE_500 = f"accessLogging: [{_filtered('response.code >= 500')}]"


@pytest.mark.parametrize(
    ("cfgs", "mode", "want"),
    [
        pytest.param([(NS, CODE_400)], "CLIENT", "response.code >= 400", id="filter"),
        pytest.param(
            [(ROOT, CODE_400), (NS, CODE_500)], "CLIENT", "response.code >= 500", id="namespace-filter"
        ),
        pytest.param(
            [
                (
                    NS,
                    f"accessLogging: [{_filtered('response.code >= 500')}, {_filtered('response.code >= 400')}]",
                )
            ],
            "CLIENT",
            "response.code >= 400",
            id="multi-accesslogging",
        ),
        pytest.param(
            [
                (
                    NS,
                    f"accessLogging: [{_filtered('response.code >= 500')}, {{providers: [{{name: envoy-json}}]}}]",
                )
            ],
            "CLIENT",
            None,
            id="multi-accesslogging-nil",
        ),
        pytest.param(
            [
                (
                    NS,
                    f"accessLogging: [{_filtered('response.code >= 500', 'CLIENT')}, "
                    f"{_filtered('response.code >= 400', 'SERVER')}]",
                )
            ],
            "CLIENT",
            "response.code >= 500",
            id="server-and-client-different",
        ),
        pytest.param(
            [
                (
                    NS,
                    f"accessLogging: [{_filtered('response.code >= 500', 'CLIENT')}, "
                    f"{_filtered('response.code >= 400', 'SERVER')}]",
                )
            ],
            "SERVER",
            "response.code >= 400",
            id="server-and-client-different - inbound",
        ),
        # mergeLogs takes filters only from entries naming the provider: an inheriting entry keeps it.
        pytest.param(
            [(ROOT, CODE_400), (NS, EMPTY)],
            "CLIENT",
            "response.code >= 400",
            id="empty config inherits filter",
        ),
    ],
)
def test_access_logging_filter(cfgs: list[tuple[str, str]], mode: policy.Mode, want: str | None) -> None:
    s = snap(_mesh("accessLogging: [envoy]"), *_telemetries(cfgs))
    got = policy.access_log_providers(s, REVIEWS, mode)
    assert got is not None and [(p.name, expr) for p, expr in got] == [("envoy-json", want)]
    # The filter reaches Envoy as the CEL extension filter.
    direction = "inbound" if mode == "SERVER" else "outbound"
    ((_, expr),) = file_logs(tenvoy.http_access_loggers(s, REVIEWS, direction))
    assert expr == want


# --- access logging: Envoy config (TestTelemetryAccessLog, TestFileAccessLogFormat, accesslog_test.go) -------

CUSTOM_TEXT = "%LOCAL_REPLY_BODY%:%RESPONSE_CODE%:path=%REQ(:path)%"
CUSTOM_LABELS = {"start_time": "%START_TIME%", "route_name": "%ROUTE_NAME%", "method": "%REQ(:METHOD)%"}


def _format(fal) -> str | dict[str, str]:
    fmt = fal.log_format
    if fmt.HasField("json_format"):
        return json_format.MessageToDict(fmt.json_format)
    return fmt.text_format_source.inline_string


@pytest.mark.parametrize(
    ("provider", "mesh_extra", "want_path", "want_format"),
    [
        pytest.param("{path: /dev/stdout}", "", "/dev/stdout", accesslog.TEXT_LOG_FORMAT, id="stdout"),
        pytest.param("{path: /dev/stderr}", "", "/dev/stderr", accesslog.TEXT_LOG_FORMAT, id="stderr"),
        pytest.param("{}", "", "/dev/stdout", accesslog.TEXT_LOG_FORMAT, id="no path: stdout"),
        pytest.param(
            f"{{path: /dev/stdout, logFormat: {{text: '{CUSTOM_TEXT}'}}}}",
            "",
            "/dev/stdout",
            CUSTOM_TEXT + "\n",
            id="custom-text",
        ),
        pytest.param(
            "{path: /dev/stdout, logFormat: {labels: {}}}",
            "",
            "/dev/stdout",
            accesslog.JSON_LOG_FORMAT,
            id="default-labels",
        ),
        pytest.param(
            f"{{path: /dev/stdout, logFormat: {{labels: {json.dumps(CUSTOM_LABELS)}}}}}",
            "",
            "/dev/stdout",
            CUSTOM_LABELS,
            id="custom-labels",
        ),
    ],
)
def test_file_provider_envoy_config(provider: str, mesh_extra: str, want_path: str, want_format) -> None:
    s = snap(
        mesh(f"extensionProviders: [{{name: my-file, envoyFileAccessLog: {provider}}}]\n{mesh_extra}"),
        tel("t", ROOT, "accessLogging: [{providers: [{name: my-file}]}]"),
    )
    ((fal, expr),) = file_logs(tenvoy.http_access_loggers(s, REVIEWS, "outbound"))
    assert (fal.path, _format(fal), expr) == (want_path, want_format, None)


@pytest.mark.parametrize(
    ("provider", "omit"),
    [
        pytest.param("logFormat: {labels: {}}, omitEmptyValues: true", True, id="enable-omit-empty-values"),
        pytest.param(
            f"logFormat: {{text: '{CUSTOM_TEXT}'}}, omitEmptyValues: true", True, id="text-omit-empty-values"
        ),
        pytest.param("logFormat: {labels: {}}", False, id="default-keeps-empty-values"),
    ],
)
def test_file_provider_omit_empty_values(provider: str, omit: bool) -> None:
    """omitEmptyValues sits on the envoyFileAccessLog provider (istiod reads
    prov.EnvoyFileAccessLog.OmitEmptyValues)."""
    s = snap(
        mesh(
            f"extensionProviders: [{{name: my-file, envoyFileAccessLog: {{path: /dev/stdout, {provider}}}}}]"
        ),
        tel("t", ROOT, "accessLogging: [{providers: [{name: my-file}]}]"),
    )
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s, REVIEWS, "outbound"))
    assert fal.log_format.omit_empty_values is omit


def test_builtin_envoy_provider_with_omit_empty_values_keeps_its_own_format() -> None:
    """istiod's telemetryAccessLog: the `envoy` provider falls back to MeshConfig's format only when it sets
    neither logFormat nor omitEmptyValues; with omitEmptyValues alone it is Istio's default text format."""
    s = snap(
        mesh(
            "accessLogEncoding: JSON\n"
            "extensionProviders: [{name: envoy, envoyFileAccessLog: {path: /dev/stdout, omitEmptyValues: true}}]"
        ),
        tel("t", ROOT, "accessLogging: [{providers: [{name: envoy}]}]"),
    )
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s, REVIEWS, "outbound"))
    assert fal.log_format.omit_empty_values is True
    assert fal.log_format.text_format_source.inline_string.startswith("[%START_TIME%]")


CUSTOM_JSON = {"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%"}


@pytest.mark.parametrize(
    ("provider", "want_format"),
    [
        # builtin-fallback: a provider named `envoy` without a format takes MeshConfig's encoding/format.
        pytest.param("{path: /dev/stdout}", CUSTOM_JSON, id="builtin-fallback"),
        pytest.param(
            f"{{path: /dev/stdout, logFormat: {{text: '{CUSTOM_TEXT}'}}}}",
            CUSTOM_TEXT + "\n",
            id="builtin-not-fallback",
        ),
    ],
)
def test_envoy_named_provider_falls_back_to_meshconfig_format(provider: str, want_format) -> None:
    s = snap(
        mesh(
            f"extensionProviders: [{{name: envoy, envoyFileAccessLog: {provider}}}]\n"
            f"accessLogEncoding: JSON\naccessLogFormat: '{json.dumps(CUSTOM_JSON)}'\n"
        ),
        tel("t", ROOT, ENVOY),
    )
    ((fal, _),) = file_logs(tenvoy.http_access_loggers(s, REVIEWS, "outbound"))
    assert (fal.path, _format(fal)) == ("/dev/stdout", want_format)


@pytest.mark.parametrize(
    ("mesh_extra", "want_format"),
    [
        pytest.param("", accesslog.TEXT_LOG_FORMAT, id="empty"),
        pytest.param(f'accessLogFormat: "{CUSTOM_TEXT} \\n"', CUSTOM_TEXT + " \n", id="contains newline"),
        pytest.param(f"accessLogFormat: '{CUSTOM_TEXT}'", CUSTOM_TEXT + "\n", id="miss newline"),
        pytest.param("accessLogEncoding: JSON", accesslog.JSON_LOG_FORMAT, id="json default"),
        pytest.param(
            f"accessLogEncoding: JSON\naccessLogFormat: '{json.dumps(CUSTOM_JSON)}'",
            CUSTOM_JSON,
            id="json custom",
        ),
    ],
)
def test_meshconfig_access_log_format(mesh_extra: str, want_format) -> None:
    s = snap(mesh(f"accessLogFile: /dev/stdout\n{mesh_extra}"))
    for build in (tenvoy.http_access_loggers, tenvoy.tcp_access_loggers):
        ((fal, _),) = file_logs(build(s, REVIEWS, "inbound"))
        assert (fal.path, _format(fal)) == ("/dev/stdout", want_format)


def test_grpc_log_providers_without_a_service_are_reported_and_count_as_configured() -> None:
    # grpc-http / otel providers whose service is not in the registry: istiod's LookupCluster fails, it
    # logs the error and leaves the logger out, but they are a Telemetry config all the same, so
    # MeshConfig's accessLogFile is not used (test_als_providers.py covers the loggers themselves).
    s = snap(
        mesh(
            "accessLogFile: /tmp/mesh.log\nextensionProviders:\n"
            "- {name: grpc-http-als, envoyHttpAls: {service: grpc-als.foo.svc.cluster.local, port: 9811}}\n"
            "- {name: otel, envoyOtelAls: {service: otel.foo.svc.cluster.local, port: 9811}}"
        ),
        tel("t", ROOT, "accessLogging: [{providers: [{name: grpc-http-als}, {name: otel}]}]"),
    )
    assert [p.name for p, _ in policy.access_log_providers(s, REVIEWS, "CLIENT") or []] == [
        "grpc-http-als",
        "otel",
    ]
    logs = tenvoy.http_access_loggers(s, REVIEWS, "outbound")
    assert file_logs(logs) == []
    assert [log.name for log in logs] == ["envoy.access_loggers.http_grpc"]  # Isthmus's own metrics ALS
    errors = " | ".join(s.generation_errors.values())
    assert "could not find service grpc-als.foo.svc.cluster.local" in errors
    assert "could not find service otel.foo.svc.cluster.local" in errors


# --- scope (applicableTelemetries, Test_appendApplicableTelemetries) --------------------------------------


def test_every_matching_workload_telemetry_applies_in_creation_order() -> None:
    # istiod appends every selector match (no `break` since targetRef support): the newer one overrides
    # where both set a field, the older one's other fields stay.
    sel = "selector: {matchLabels: {app: reviews}}\n"
    s = snap(
        _mesh(),
        tel(
            "old",
            NS,
            sel + "tracing: [{providers: [{name: zk}], randomSamplingPercentage: 10}]",
            "2024-01-01T00:00:00Z",
        ),
        tel("new", NS, sel + "tracing: [{randomSamplingPercentage: 20}]", "2024-02-01T00:00:00Z"),
        tel("other", NS, "selector: {matchLabels: {app: ratings}}\ntracing: [{disableSpanReporting: true}]"),
    )
    assert [c.name for c in policy.applicable_to(s, REVIEWS).configs] == ["old", "new"]
    spec = policy.tracing_spec(s, REVIEWS, "CLIENT")
    assert spec.provider.name == "zk" and spec.sampling == 20 and not spec.disabled


# --- tracing (TestTracing) -----------------------------------------------------------------------------------

T_ENVOY = "tracing: [{providers: [{name: zk}]}]"
T_STACKDRIVER = "tracing: [{providers: [{name: zk2}]}]"
T_EMPTY = "tracing: [{}]"
T_DISABLED = "tracing: [{disableSpanReporting: true}]"
T_OVERRIDES_A = """tracing:
- randomSamplingPercentage: 50
  customTags: {foo: {literal: {value: a}}, bar: {literal: {value: b}}}
  useRequestIdForTraceSampling: false"""
T_OVERRIDES_B = """tracing:
- randomSamplingPercentage: 80
  customTags: {foo: {literal: {value: a}}, baz: {literal: {value: c}}}
  useRequestIdForTraceSampling: true"""
T_DEFAULT_SAMPLING = "tracing: [{customTags: {foo: {literal: {value: a}}, baz: {literal: {value: c}}}}]"
T_NON_EXISTENT = "tracing: [{providers: [{name: custom-provider}]}]"
T_CLIENT_SAMPLING = (
    "tracing: [{match: {mode: CLIENT}, providers: [{name: zk2}], randomSamplingPercentage: 99.9}]"
)
T_SERVER_DISABLED = "tracing: [{match: {mode: SERVER}, disableSpanReporting: true}]"

# (name, cfgs, defaultProviders.tracing, {mode: (provider, disabled, sampling, custom tag names, useRequestId)})
_ZK = ("zk", False, None, None, True)
TRACING = [
    ("empty", [], "", None),
    ("default provider only", [], "zk", {"CLIENT": _ZK, "SERVER": _ZK}),
    ("provider only", [(ROOT, T_ENVOY)], "", {"CLIENT": _ZK, "SERVER": _ZK}),
    ("override default", [(ROOT, T_ENVOY)], "zk2", {"CLIENT": _ZK, "SERVER": _ZK}),
    (
        "override namespace",
        [(ROOT, T_ENVOY), (NS, T_STACKDRIVER)],
        "",
        {m: ("zk2", False, None, None, True) for m in ("CLIENT", "SERVER")},
    ),
    ("empty config inherits", [(ROOT, T_ENVOY), (NS, T_EMPTY)], "", {"CLIENT": _ZK, "SERVER": _ZK}),
    (
        "disable config",
        [(ROOT, T_ENVOY), (NS, T_DISABLED)],
        "",
        {m: ("zk", True, None, None, True) for m in ("CLIENT", "SERVER")},
    ),
    (
        "disable default",
        [(NS, T_DISABLED)],
        "zk",
        {m: ("zk", True, None, None, True) for m in ("CLIENT", "SERVER")},
    ),
    (
        "non existing",
        [(NS, T_NON_EXISTENT)],
        "zk",
        {m: (None, True, None, None, True) for m in ("CLIENT", "SERVER")},
    ),
    (
        "overrides",
        [(ROOT, T_OVERRIDES_A)],
        "zk",
        {m: ("zk", False, 50.0, ["bar", "foo"], False) for m in ("CLIENT", "SERVER")},
    ),
    (
        "overrides with default sampling",
        [(ROOT, T_DEFAULT_SAMPLING)],
        "zk",
        {m: ("zk", False, None, ["baz", "foo"], True) for m in ("CLIENT", "SERVER")},
    ),
    (
        "multi overrides",
        [(ROOT, T_OVERRIDES_A), (NS, T_OVERRIDES_B)],
        "zk",
        {m: ("zk", False, 80.0, ["baz", "foo"], True) for m in ("CLIENT", "SERVER")},
    ),
    (
        "client-only override",
        [(ROOT, T_ENVOY), (NS, T_CLIENT_SAMPLING)],
        "zk",
        {"CLIENT": ("zk2", False, 99.9, None, True), "SERVER": _ZK},
    ),
    (
        "server-only override",
        [(ROOT, T_ENVOY), (NS, T_SERVER_DISABLED)],
        "zk",
        {"CLIENT": _ZK, "SERVER": ("zk", True, None, None, True)},
    ),
]


@pytest.mark.parametrize(("cfgs", "defaults", "want"), [pytest.param(*c[1:], id=c[0]) for c in TRACING])
def test_tracing_spec(cfgs: list[tuple[str, str]], defaults: str, want) -> None:
    s = snap(_mesh(f"tracing: [{defaults}]" if defaults else ""), *_telemetries(cfgs))
    for mode in ("CLIENT", "SERVER"):
        spec = policy.tracing_spec(s, REVIEWS, mode)
        if want is None:
            assert spec is None
            continue
        got = (
            spec.provider.name if spec.provider is not None else None,
            spec.disabled,
            spec.sampling,
            sorted(spec.custom_tags) if spec.custom_tags is not None else None,
            spec.use_request_id,
        )
        assert got == want[mode], mode


def _hcm(s: Snapshot, direction: str = "outbound") -> hcm.HttpConnectionManager:
    m = hcm.HttpConnectionManager()
    tracing.configure_hcm(m, s, REVIEWS, direction)
    return m


@pytest.mark.parametrize(
    ("mesh_sampling", "telemetry_sampling", "want"),
    [
        # configureTracingFromTelemetry: the Telemetry value when set (0 included) ...
        pytest.param(None, 0, 0.0, id="telemetry 0"),
        pytest.param(25, 50, 50.0, id="telemetry over mesh"),
        # ... else proxyConfigSamplingValue: defaultConfig.tracing.sampling unless 0.
        pytest.param(25, None, 25.0, id="mesh sampling"),
        pytest.param(0, None, 1.0, id="mesh sampling 0 is unset"),
        pytest.param(100, None, 100.0, id="mesh sampling 100"),  # above 100 is refused at admission
        pytest.param(None, None, 1.0, id="PILOT_TRACE_SAMPLING default"),
    ],
)
def test_sampling_precedence(
    mesh_sampling: float | None, telemetry_sampling: float | None, want: float
) -> None:
    tracing_cfg = (
        f"defaultConfig: {{tracing: {{sampling: {mesh_sampling}}}}}\n" if mesh_sampling is not None else ""
    )
    t_spec = "{providers: [{name: zk}]" + (
        f", randomSamplingPercentage: {telemetry_sampling}}}" if telemetry_sampling is not None else "}"
    )
    s = snap(_mesh(extra=tracing_cfg), tel("t", ROOT, f"tracing: [{t_spec}]"))
    assert _hcm(s).tracing.random_sampling.value == want
    # Without any Telemetry tracing (legacy MeshConfig path) the same fallback applies.
    if telemetry_sampling is None and mesh_sampling is not None:
        assert _hcm(snap(mesh(tracing_cfg))).tracing.random_sampling.value == want


def test_tracing_envoy_config_custom_tags_request_id_and_providers_per_mode() -> None:
    s = snap(
        _mesh(
            extra="defaultConfig: {tracing: {sampling: 5, customTags: {mesh: {literal: {value: m}}}}}\n",
        ),
        tel(
            "t",
            ROOT,
            """
tracing:
- providers: [{name: zk}]
  useRequestIdForTraceSampling: false
  customTags:
    lit: {literal: {value: v}}
    env: {environment: {name: POD_NAME, defaultValue: unknown}}
    hdr: {header: {name: x-user, defaultValue: anon}}
- match: {mode: SERVER}
  providers: [{name: zk2}]
""",
        ),
    )
    out = _hcm(s)
    z = zipkin_pb2.ZipkinConfig()
    assert out.tracing.provider.typed_config.Unpack(z)
    assert z.collector_cluster == "outbound|9411||zipkin.istio-system.svc.cluster.local"
    tags = {t.tag: t for t in out.tracing.custom_tags}
    # Telemetry customTags replace defaultConfig.tracing.customTags (configureCustomTags).
    assert "mesh" not in tags
    assert tags["lit"].literal.value == "v"
    assert (tags["env"].environment.name, tags["env"].environment.default_value) == ("POD_NAME", "unknown")
    assert (tags["hdr"].request_header.name, tags["hdr"].request_header.default_value) == ("x-user", "anon")
    assert tags["istio.canonical_service"].literal.value == istio.canonical_service(REVIEWS.labels, "reviews")
    cfg = uuid_pb2.UuidRequestIdConfig()
    assert (
        out.request_id_extension.typed_config.Unpack(cfg)
        and cfg.use_request_id_for_trace_sampling.value is False
    )
    z2 = zipkin_pb2.ZipkinConfig()
    assert _hcm(s, "inbound").tracing.provider.typed_config.Unpack(z2)
    assert z2.collector_cluster == "outbound|9411||zipkin2.istio-system.svc.cluster.local"


# --- metrics (TestTelemetryFilters) --------------------------------------------------------------------------

OVERRIDES = """
  - match: {metric: REQUEST_COUNT}
    tagOverrides: {remove: {operation: REMOVE}, add: {operation: UPSERT, value: "'bar'"}}"""
ALL_TAGS = """
  - tagOverrides: {remove: {operation: REMOVE}, add: {operation: UPSERT, value: "'bar'"}}"""
ADD_OVERRIDE = """
  - match: {metric: REQUEST_COUNT}
    tagOverrides: {add: {value: "'add-override'"}}"""
M_EMPTY_PROMETHEUS = "metrics: [{providers: [{name: prometheus}]}]"
M_OVERRIDES_PROMETHEUS = "metrics:\n- providers: [{name: prometheus}]\n  overrides:" + OVERRIDES
M_DISABLED_ALL = "metrics: [{providers: [{name: prometheus}], overrides: [{match: {metric: ALL_METRICS}, disabled: true}]}]"
M_DISABLED_IMPLICIT = "metrics: [{providers: [{name: prometheus}], overrides: [{disabled: true}]}]"
M_EMPTY_STACKDRIVER = "metrics: [{providers: [{name: stackdriver}]}]"
M_OVERRIDES_NO_PROVIDER = "metrics:\n- overrides:" + OVERRIDES

BAR = policy.TagValue("literal", "bar")
REQUEST_COUNT_TAGS = (("add", BAR), ("remove", None))
ALL_BAR = {name: REQUEST_COUNT_TAGS for name in policy.METRIC_NAMES.values()}

# (name, cfgs, defaultProviders.metrics, expected: None = no metrics, else {istio_* metric: tags})
METRICS = [
    ("empty", [], "", {}),
    ("disabled-prometheus", [(ROOT, M_DISABLED_ALL)], "", None),
    ("disabled-prometheus-implicit", [(ROOT, M_DISABLED_IMPLICIT)], "", None),
    ("disabled-then-empty", [(ROOT, M_DISABLED_ALL), (NS, M_EMPTY_PROMETHEUS)], "", None),
    (
        "disabled-then-overrides",
        [(ROOT, M_DISABLED_ALL), (NS, M_OVERRIDES_PROMETHEUS)],
        "",
        {istio.REQUESTS_TOTAL: REQUEST_COUNT_TAGS},
    ),
    ("default prometheus", [(ROOT, M_EMPTY_PROMETHEUS)], "", {}),
    ("default provider prometheus", [], "prometheus", {}),
    (
        "prometheus overrides",
        [(ROOT, M_OVERRIDES_PROMETHEUS)],
        "",
        {istio.REQUESTS_TOTAL: REQUEST_COUNT_TAGS},
    ),
    (
        "prometheus overrides all metrics",
        [(ROOT, "metrics:\n- providers: [{name: prometheus}]\n  overrides:" + ALL_TAGS)],
        "",
        ALL_BAR,
    ),
    (
        "prometheus overrides all metrics first",
        [(ROOT, "metrics:\n- providers: [{name: prometheus}]\n  overrides:" + ALL_TAGS + ADD_OVERRIDE)],
        "",
        {
            **ALL_BAR,
            istio.REQUESTS_TOTAL: (("add", policy.TagValue("literal", "add-override")), ("remove", None)),
        },
    ),
    (
        "prometheus overrides all metrics secondary",
        [(ROOT, "metrics:\n- providers: [{name: prometheus}]\n  overrides:" + ADD_OVERRIDE + ALL_TAGS)],
        "",
        ALL_BAR,
    ),
    ("namespace empty merge", [(ROOT, M_EMPTY_PROMETHEUS), (NS, M_EMPTY_STACKDRIVER)], "", None),
    (
        "namespace overrides merge without provider",
        [(ROOT, M_EMPTY_PROMETHEUS), (NS, M_OVERRIDES_NO_PROVIDER)],
        "",
        {istio.REQUESTS_TOTAL: REQUEST_COUNT_TAGS},
    ),
    (
        "namespace overrides merge with default provider",
        [(NS, M_OVERRIDES_NO_PROVIDER)],
        "prometheus",
        {istio.REQUESTS_TOTAL: REQUEST_COUNT_TAGS},
    ),
    ("namespace overrides default provider", [(NS, M_EMPTY_STACKDRIVER)], "prometheus", None),
]


@pytest.mark.parametrize(("cfgs", "defaults", "want"), [pytest.param(*c[1:], id=c[0]) for c in METRICS])
def test_metrics_policy(cfgs: list[tuple[str, str]], defaults: str, want) -> None:
    s = snap(_mesh(f"metrics: [{defaults}]" if defaults else ""), *_telemetries(cfgs))
    for mode in ("CLIENT", "SERVER"):  # istiod's overrides without a mode apply to both
        mp = policy.metrics_policy(s, REVIEWS, mode)
        if want is None:
            assert not mp.enabled, mode
            continue
        assert mp.enabled, mode
        assert {name: o.tags for name, o in mp.overrides.items()} == want, mode
        assert not any(o.disabled for o in mp.overrides.values())


def test_all_metrics_disabled_implicitly_drops_the_metrics_logger() -> None:
    # istiod drops the stats filter; here the gRPC access logger (the metrics pipeline) goes.
    s = snap(_mesh(), tel("t", ROOT, M_DISABLED_IMPLICIT))
    assert tenvoy.http_access_loggers(s, REVIEWS, "outbound") == []
    assert tenvoy.tcp_access_loggers(s, REVIEWS, "inbound") == []
