"""istioctl's re-marshalling of Envoy's admin JSON for `proxy-config -o json|yaml` (protojson.py).

The expected texts follow golang/protobuf's jsonpb (encode.go: declaration order, marshalValue's list /
map indenting, the Struct case that indents one level deeper, `{` blank line `}` for an empty message),
encoding/json (MarshalIndent, HTML-safe strings, float format) and go-yaml v2 (resolve, keyList.Less),
the libraries istioctl's writers use. Dumps are the captured Envoy 1.40 fixtures.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli import proxy_cmds
from isthmus.debug import protojson as pj
from isthmus.debug import proxy_config as pc

FIXTURES = Path(__file__).parent / "proxy_config_fixtures"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def dump() -> Any:
    return load("sidecar_config_dump.json")


def test_clusters_are_a_message_slice_in_proto3_json(dump: Any) -> None:
    text = pc.structured("cluster", dump, None, pc.Filters(), "json")
    # json.MarshalIndent of jsonpb's output: 4 spaces, declaration order, no @type, durations as Go.
    assert (
        '    {\n        "name": "agent",\n        "type": "STATIC",\n        "connectTimeout": "0.250s"\n    }'
        in text
    )
    eds = next(c for c in json.loads(text) if c["name"] == "outbound|80|v1|echo.default.svc.cluster.local")
    assert list(eds)[:4] == ["name", "type", "edsClusterConfig", "connectTimeout"]
    assert eds["edsClusterConfig"]["edsConfig"] == {
        "ads": {},
        "initialFetchTimeout": "0s",
        "resourceApiVersion": "V3",
    }
    # Struct keys (filter metadata) are data, left as Envoy has them; the map key too.
    istio = eds["metadata"]["filterMetadata"]["istio"]
    assert "default_original_port" in istio and "defaultOriginalPort" not in istio


def test_listener_and_route_yaml_follow_go_yaml(dump: Any) -> None:
    text = pc.structured("listener", dump, None, pc.Filters(port=15001), "yaml")
    assert text.startswith(
        "- address:\n    socketAddress:\n      address: 127.180.0.6\n      portValue: 15001\n"
    )
    # `@type` cannot start a plain scalar: single-quoted, as go-yaml's emitter does.
    assert (
        "      typedConfig:\n        '@type': type.googleapis.com/envoy.extensions.filters.network." in text
    )
    route = pc.structured("route", dump, None, pc.Filters(name="http_proxy"), "yaml")
    # int64 fields are JSON strings: go-yaml quotes a string that would read back as an int.
    assert '          hostSelectionRetryMaxAttempts: "5"\n' in route
    assert "        caseSensitive: true\n" in route  # a BoolValue wrapper, set
    assert route.endswith("\n") and not route.endswith("\n\n")  # JSONToYAML's text; the CLI adds Fprintln's


def test_secret_dump_is_jsonpb_indented() -> None:
    data = {
        "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        "dynamic_active_secrets": [
            {
                "name": "ROOTCA",
                "version_info": "1",
                "last_updated": "2026-12-06T15:09:19.896Z",
                "secret": {"@type": SECRET, "name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_bytes": "QUJD"}}},
            }
        ],
    }  # fmt: skip
    assert pc.structured("secret", {"configs": [data]}, None, pc.Filters(), "json") == (
        "{\n"
        '    "dynamicActiveSecrets": [\n'
        "        {\n"
        '            "name": "ROOTCA",\n'
        '            "versionInfo": "1",\n'
        '            "lastUpdated": "2026-12-06T15:09:19.896Z",\n'
        '            "secret": {\n'
        f'                "@type": "{SECRET}",\n'
        '                "name": "ROOTCA",\n'
        '                "validationContext": {\n'
        '                    "trustedCa": {\n'
        '                        "inlineBytes": "QUJD"\n'
        "                    }\n"
        "                }\n"
        "            }\n"
        "        }\n"
        "    ]\n"
        "}"
    )


def test_bootstrap_keeps_jsonpbs_struct_and_empty_message_indenting() -> None:
    data = {
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": {
            "node": {"id": "sidecar~a", "metadata": {"NAME": "a", "LABELS": {"app": "x"}}},
            "dynamic_resources": {"ads_config": {"api_type": "GRPC"}, "cds_config": {"ads": {}}},
        },
    }
    got = pc.structured("bootstrap", {"configs": [data]}, None, pc.Filters(), "json")
    # jsonpb's "Struct" case marshals the fields map at the message's own indent: one level deeper
    # than a map field; a Struct inside a Value one more; an empty message is `{`, a blank line, `}`.
    # Fields in declaration order (cds_config is declared before ads_config).
    assert got == (
        "{\n"
        '    "bootstrap": {\n'
        '        "node": {\n'
        '            "id": "sidecar~a",\n'
        '            "metadata": {\n'
        '                    "LABELS": {\n'
        '                                "app": "x"\n'
        "                            },\n"
        '                    "NAME": "a"\n'
        "                }\n"
        "        },\n"
        '        "dynamicResources": {\n'
        '            "cdsConfig": {\n'
        '                "ads": {\n'
        "\n"
        "                }\n"
        "            },\n"
        '            "adsConfig": {\n'
        '                "apiType": "GRPC"\n'
        "            }\n"
        "        }\n"
        "    }\n"
        "}"
    )


def test_endpoint_json_is_the_admin_cluster_statuses(dump: Any) -> None:
    statuses = load("sidecar_clusters.json")
    f = pc.Filters(cluster="outbound|80|v1|echo.default.svc.cluster.local")
    (got,) = json.loads(pc.structured("endpoint", dump, statuses, f, "json"))
    assert list(got) == ["name", "addedViaApi", "hostStatuses"]
    assert got["hostStatuses"][0]["healthStatus"] == {"edsHealthStatus": "HEALTHY"}


def test_all_prints_the_dump_as_read(tmp_path: Path) -> None:
    raw = '{\n "configs": [\n  {\n   "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",\n   "bootstrap": {"node": {"id": "x"}}\n  }\n ]\n}\n'
    path = tmp_path / "dump.json"
    path.write_text(raw)
    res = CliRunner().invoke(proxy_cmds.proxy_config_command, ["all", "-f", str(path), "-o", "json"])
    assert res.exit_code == 0, res.output
    assert res.output == raw + "\n"  # Fprintln(string(dump))
    res = CliRunner().invoke(proxy_cmds.proxy_config_command, ["all", "-f", str(path), "-o", "yaml"])
    assert res.output == (
        "configs:\n- '@type': type.googleapis.com/envoy.admin.v3.BootstrapConfigDump\n"
        "  bootstrap:\n    node:\n      id: x\n\n"
    )


def test_unknown_type_prints_that_entry_as_envoy_gave_it(capsys: pytest.CaptureFixture[str]) -> None:
    known = {"name": "a", "connect_timeout": "1s"}
    odd = {
        "name": "b",
        "typed_extension_protocol_options": {"x": {"@type": "type.googleapis.com/no.such.v1.Type", "k": 1.5}},
    }
    got = json.loads(pj.message_slice("envoy.config.cluster.v3.Cluster", [known, odd], "json"))
    assert got == [{"name": "a", "connectTimeout": "1s"}, odd]
    assert (
        "envoy.config.cluster.v3.Cluster b printed as Envoy gave it (unknown type" in capsys.readouterr().err
    )


def test_any_of_a_well_known_type_and_html_escaping() -> None:
    tec = {
        "name": "f",
        "typed_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "<a&b>"},
    }
    text = pj.message_slice("envoy.config.core.v3.TypedExtensionConfig", [tec], "json")
    assert '"value": "\\u003ca\\u0026b\\u003e"' in text  # encoding/json's HTML-safe escapes
    assert json.loads(text)[0]["typedConfig"] == {"@type": tec["typed_config"]["@type"], "value": "<a&b>"}
    ecds = pj.protojson_message(
        "envoy.admin.v3.EcdsConfigDump",
        {
            "ecds_filters": [
                {
                    "ecds_filter": {
                        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                        **tec,
                    }
                }
            ]
        },
        "json",
    )
    assert '"value": "<a&b>"' in ecds  # protojson does not escape them


@pytest.mark.parametrize(
    ("value", "bits", "want"),
    [(100.0, 64, "100"), (0.5, 64, "0.5"), (1e21, 64, "1e+21"), (1e-7, 64, "1e-7"), (0.1, 32, "0.1"), (123456789.0, 64, "123456789")],
)  # fmt: skip
def test_go_float(value: float, bits: int, want: str) -> None:
    assert pj.go_float(value, bits) == want


@pytest.mark.parametrize(
    ("s", "plain"),
    [("istio", True), ("1605", False), ("2022-12-08T11:03:53.361Z", False), ("2022-12-08T09:07:09Z/10", True),
     ("y", False), ("on", False), ("0.5", False), ("0x1f", False), ("10:30", False), ("", False), ("1.2.3", True),
     ("outbound|80||a", True)],
)  # fmt: skip
def test_go_yaml_string_resolution(s: str, plain: bool) -> None:
    assert pj.go_yaml_resolves_to_str(s) is plain


def test_go_yaml_key_order_and_quoting() -> None:
    text = pj.json_to_yaml(
        json.dumps({"b": 1, "a10": 2, "a9": 3, "@type": "t", "A": "yes", "_x": "", "m": "l1\nl2\n"})
    )
    # keyList.Less: a non-letter sorts before a letter, digit runs by value.
    assert text == '\'@type\': t\n_x: ""\nA: "yes"\na9: 3\na10: 2\nb: 1\nm: |\n  l1\n  l2\n'


def test_a_thousand_clusters_marshal_quickly(dump: Any) -> None:
    base = next(c for c in pc.clusters(dump) if c["name"].startswith("outbound|80|v1|"))
    items = []
    for i in range(1000):
        c = copy.deepcopy(base)
        c["name"] = f"outbound|80|v1|svc{i}.default.svc.cluster.local"
        items.append({"cluster": c})
    big = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": items,
            }
        ]
    }
    start = time.perf_counter()
    text = pc.structured("cluster", big, None, pc.Filters(), "json")
    elapsed = time.perf_counter() - start
    assert len(json.loads(text)) == 1000
    assert elapsed < 5, elapsed  # ~0.1 s here; generous for a loaded CI box


def test_secret_and_bootstrap_of_a_proxy_keep_only_istioctls_masked_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # istioctl fetches `config_dump?mask=dynamic_active_secrets,dynamic_warming_secrets` and `?mask=bootstrap`:
    # no static secrets, no bootstrap lastUpdated; a file is printed whole.
    dump = load("sidecar_config_dump.json")
    boot = pc.section(dump, "bootstrap")
    assert boot is not None and "last_updated" in boot
    got = json.loads(pc.structured("bootstrap", dump, None, pc.Filters(), "json", from_proxy=True))
    assert list(got) == ["bootstrap"]
    assert "lastUpdated" in json.loads(pc.structured("bootstrap", dump, None, pc.Filters(), "json"))
    secrets = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "static_secrets": [{"name": "s"}],
            }
        ]
    }
    assert pc.structured("secret", secrets, None, pc.Filters(), "json", from_proxy=True) == "{\n\n}"
