"""`proxy-config` tables on real config dumps (tests/unit/debug/proxy_config_fixtures, see its README)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from isthmus.cli import proxy_cmds
from isthmus.debug import proxy_config as pc

FIXTURES = Path(__file__).parent / "proxy_config_fixtures"
ECHO = "echo.default.svc.cluster.local"
# The fixture's certificates were issued 2026-12-06T15:07:19Z; the leaf lives a day, the root ten years.
NOW = dt.datetime(2026, 12, 6, 16, 0, tzinfo=dt.UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def dump() -> dict[str, Any]:
    return load("sidecar_config_dump.json")


@pytest.fixture(scope="module")
def gateway_dump() -> dict[str, Any]:
    return load("gateway_config_dump.json")


@pytest.fixture
def clusters_json() -> dict[str, Any]:
    return load("sidecar_clusters.json")


def lines(text: str) -> list[list[str]]:
    """A rendered table's lines split into cells (cells are separated by 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


# --- clusters --------------------------------------------------------------------------------------


def test_cluster_names_parse_like_istiod_subset_keys() -> None:
    assert pc.parse_subset_key(f"outbound|80|v1|{ECHO}") == ("outbound", 80, "v1", ECHO)
    assert pc.parse_subset_key("inbound|8080||") == ("inbound", 8080, "", "")
    assert pc.parse_subset_key("xds-grpc") is None


def test_cluster_table_columns_and_destination_rule(dump: dict[str, Any]) -> None:
    table = pc.cluster_table(pc.clusters(dump))
    assert table.headers == ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    by_key = {(r[0], r[1], r[2], r[3]): r for r in table.rows}
    assert by_key[(ECHO, "80", "v1", "outbound")][4:] == ["EDS", "echo.default"]
    assert by_key[(ECHO, "80", "-", "outbound")][4:] == ["EDS", "echo.default"]
    # No DestinationRule for h2: the cell is empty.
    assert by_key[("h2.default.svc.cluster.local", "9000", "-", "outbound")][4:] == ["EDS", ""]
    assert by_key[("", "8080", "-", "inbound")][4] == "STATIC"
    assert by_key[("xds-grpc", "-", "-", "-")][4] == "STATIC"
    assert by_key[("PassthroughCluster", "-", "-", "-")][4] == "envoy.clusters.dynamic_forward_proxy"


def test_clusters_sort_by_fqdn_subset_port(dump: dict[str, Any]) -> None:
    echo = [r[1:3] for r in pc.cluster_table(pc.clusters(dump)).rows if r[0] == ECHO]
    assert echo == [["80", "-"], ["9090", "-"], ["80", "v1"], ["9090", "v1"], ["80", "v2"], ["9090", "v2"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (pc.Filters(fqdn="h2.default"), ["outbound|9000||h2.default.svc.cluster.local"]),
        (pc.Filters(fqdn="echo", port=80, subset="v2"), [f"outbound|80|v2|{ECHO}"]),
        (pc.Filters(direction="inbound"), ["inbound|8080||"]),
        (pc.Filters(port=9999), ["outbound|9999||tcpecho.default.svc.cluster.local"]),
    ],
)
def test_cluster_filters(dump: dict[str, Any], filters: pc.Filters, expected: list[str]) -> None:
    assert [c["name"] for c in pc.filter_clusters(pc.clusters(dump), filters)] == expected


def test_render_config_path() -> None:
    assert pc.render_config("/apis/networking.istio.io/v1/namespaces/ns/virtual-service/vs") == "vs.ns"
    assert pc.render_config("/apis/networking.istio.io/v1alpha3/namespaces/a/destination-rule/b") == "b.a"
    assert pc.render_config("something-else") == "<unknown>"
    assert pc.describe_management(None) == ""


# --- listeners -------------------------------------------------------------------------------------


def test_listener_table_describes_every_filter_chain(dump: dict[str, Any]) -> None:
    table = pc.listener_table(pc.listeners(dump))
    assert table.headers == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    got = [r[1:] for r in table.rows]
    assert got == [
        ["8080", "Trans: tls; App: istio-http/1.0,istio-http/1.1,istio-h2", "Route: inbound|8080||"],
        ["8080", "Trans: raw_buffer; App: http/1.1,h2c", "Route: inbound|8080||"],
        ["8080", "Trans: tls; App: istio,istio-peer-exchange", "Cluster: inbound|8080||"],
        ["8080", "Trans: raw_buffer", "Cluster: inbound|8080||"],
        ["8080", "Trans: tls", "Cluster: inbound|8080||"],
        ["15001", "ALL", "Route: http_proxy"],
        ["15021", "ALL", "Inline Route: /healthz/ready*"],
        ["15090", "ALL", "Inline Route: /stats/prometheus*"],
    ]
    assert {r[0] for r in table.rows} == {"127.180.0.6"}


def test_listener_types_and_filters(dump: dict[str, Any]) -> None:
    ls = pc.listeners(dump)
    types = {pc.listener_port(lst): pc.listener_type(lst) for lst in ls}
    assert types == {8080: "HTTP+TCP", 15001: "HTTP", 15021: "HTTP", 15090: "HTTP"}
    assert [pc.listener_port(x) for x in pc.filter_listeners(ls, pc.Filters(port=15001))] == [15001]
    assert [pc.listener_port(x) for x in pc.filter_listeners(ls, pc.Filters(type="http+tcp"))] == [8080]
    assert pc.filter_listeners(ls, pc.Filters(type="TCP")) == []
    assert len(pc.filter_listeners(ls, pc.Filters(address="127.180.0.6"))) == 4
    assert pc.filter_listeners(ls, pc.Filters(address="10.0.0.1")) == []
    short = pc.listener_table(ls, verbose=False)
    assert short.headers == ["ADDRESSES", "PORT", "TYPE"]
    assert short.rows[0] == ["127.180.0.6", "8080", "HTTP+TCP"]


def test_chain_match_descriptions() -> None:
    assert pc.describe_chain_match(None) == "ALL"
    assert pc.describe_chain_match({"application_protocols": ["http/1.0", "http/1.1", "h2c"]}) == "App: HTTP"
    m = {
        "server_names": ["a.example.com"],
        "transport_protocol": "tls",
        "prefix_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}],
        "destination_port": 443,
    }
    assert pc.describe_chain_match(m) == "SNI: a.example.com; Trans: tls; Addr: 10.0.0.0/8:443"
    assert pc.describe_chain_match({"destination_port": 80}) == "Addr: *:80"


def test_destinations_tcp_blackhole_and_inline_match_all() -> None:
    tcp = {
        "name": pc.TCP_PROXY,
        "typed_config": {"cluster": "outbound|9999||tcpecho.default.svc.cluster.local"},
    }
    assert pc.describe_destination([tcp]) == "Cluster: outbound|9999||tcpecho.default.svc.cluster.local"
    assert pc.describe_destination(
        [{"name": pc.TCP_PROXY, "typed_config": {"cluster": "PassthroughCluster"}}]
    ) == ("PassthroughCluster")
    assert pc.describe_destination(
        [{"name": pc.TCP_PROXY, "typed_config": {"cluster": "BlackHoleCluster"}}]
    ) == ("Non-HTTP/Non-TCP")
    inline = {
        "virtual_hosts": [
            {"domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|80||"}}]}
        ]
    }
    hcm = {"name": pc.HCM, "typed_config": {"route_config": inline}}
    assert pc.describe_destination([hcm]) == "Cluster: inbound|80||"


# --- routes ----------------------------------------------------------------------------------------


def test_route_table_rows_and_virtual_service(dump: dict[str, Any]) -> None:
    table = pc.route_table(pc.route_configs(dump))
    assert table.headers == ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]
    echo80 = [r for r in table.rows if r[1] == f"{ECHO}:80"]
    assert [r[3:] for r in echo80] == [
        ["CONNECT", ""],
        ["/exact", "echo.default"],
        ["regex /re[0-9]+", "echo.default"],
        ["/*", "echo.default"],
    ]
    assert {r[0] for r in echo80} == {"http_proxy"}
    assert echo80[0][2] == "echo, echo.default"
    # Ports only: shortened, not left empty.
    h2 = next(r for r in table.rows if r[1] == "h2.default.svc.cluster.local:9000")
    assert h2[2] == "h2:9000, h2.default:9000"
    # Routes to the PassthroughCluster are not listed (allow_any), as in istioctl.
    assert not any(r[1] == "allow_any" for r in table.rows)
    # Static route configs (inline in the admin listeners) have no name.
    assert ["", "backend", "*", "/stats/prometheus*", ""] in table.rows
    inbound = next(r for r in table.rows if r[0] == "inbound|8080||")
    assert inbound == ["inbound|8080||", "inbound|http|8080", "*", "/*", ""]


def test_route_name_filter_and_short_form(dump: dict[str, Any]) -> None:
    rcs = pc.filter_routes(pc.route_configs(dump), pc.Filters(name="inbound|8080||"))
    assert [rc["name"] for rc in rcs] == ["inbound|8080||"]
    short = pc.route_table(pc.route_configs(dump), verbose=False)
    assert short.headers == ["NAME", "VIRTUAL HOSTS"]
    assert ["http_proxy", "8"] in short.rows


def test_virtual_host_without_routes_is_a_404(gateway_dump: dict[str, Any]) -> None:
    table = pc.route_table(pc.route_configs(gateway_dump))
    assert table.rows[0] == ["http.8080", "blackhole:80", "*", "/*", "404"]
    listeners = pc.listener_table(pc.listeners(gateway_dump))
    assert listeners.rows[0][1:] == ["8080", "ALL", "Route: http.8080"]


def test_route_domains_shortening() -> None:
    domains = [
        "reviews.default.svc.cluster.local",
        "reviews.default.svc.cluster.local:9080",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default",
        "10.0.0.3",
    ]
    assert pc.describe_route_domains(domains) == "reviews, reviews.default + 1 more..."
    assert pc.describe_route_domains(["*"]) == "*"
    assert pc.describe_route_domains([]) == ""


# --- endpoints -------------------------------------------------------------------------------------


def test_endpoint_table_from_admin_clusters(clusters_json: dict[str, Any]) -> None:
    rows = pc.endpoint_rows(clusters_json, pc.Filters())
    table = pc.endpoint_table(rows)
    assert table.headers == ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    assert ["127.180.0.2:8080", "HEALTHY", "OK", f"outbound|80|v1|{ECHO}"] in table.rows
    assert ["unix:///state/pods/default/client-0/sds.sock", "HEALTHY", "OK", "sds-grpc"] in table.rows
    keys = [(r.address, r.port, r.cluster) for r in rows]
    assert keys == sorted(keys)


def test_endpoint_outlier_ejection_and_health_come_from_admin(clusters_json: dict[str, Any]) -> None:
    # As Envoy reports an ejected host and one EDS marks unhealthy (edited into the captured output).
    v1 = next(cs for cs in clusters_json["cluster_statuses"] if cs["name"] == f"outbound|80|v1|{ECHO}")
    v1["host_statuses"][0]["health_status"]["failed_outlier_check"] = True
    v1["host_statuses"][1]["health_status"] = {"eds_health_status": "UNHEALTHY"}
    table = pc.endpoint_table(pc.endpoint_rows(clusters_json, pc.Filters(cluster=f"outbound|80|v1|{ECHO}")))
    ejected = v1["host_statuses"][0]["address"]["socket_address"]
    unhealthy = v1["host_statuses"][1]["address"]["socket_address"]
    assert sorted(table.rows) == sorted(
        [
            [f"{ejected['address']}:{ejected['port_value']}", "HEALTHY", "FAILED", f"outbound|80|v1|{ECHO}"],
            [
                f"{unhealthy['address']}:{unhealthy['port_value']}",
                "UNHEALTHY",
                "OK",
                f"outbound|80|v1|{ECHO}",
            ],
        ]
    )
    only_unhealthy = pc.endpoint_rows(clusters_json, pc.Filters(status="unhealthy"))
    assert [(r.cluster, r.status) for r in only_unhealthy] == [(f"outbound|80|v1|{ECHO}", "UNHEALTHY")]


def test_endpoint_filters(clusters_json: dict[str, Any]) -> None:
    by_port = pc.endpoint_rows(clusters_json, pc.Filters(port=9000))
    assert [(r.endpoint, r.cluster) for r in by_port] == [
        ("127.180.0.5:9000", "outbound|9000||h2.default.svc.cluster.local")
    ]
    by_addr = pc.endpoint_rows(clusters_json, pc.Filters(address="127.180.0.4", port=8080))
    assert {r.cluster for r in by_addr} == {f"outbound|80|v2|{ECHO}", f"outbound|80||{ECHO}"}
    # -o json: whole cluster statuses that have a matching host.
    selected = pc.filter_endpoint_clusters(clusters_json, pc.Filters(address="127.180.0.4", port=8080))
    assert sorted(cs["name"] for cs in selected) == sorted([f"outbound|80|v2|{ECHO}", f"outbound|80||{ECHO}"])
    assert all("host_statuses" in cs for cs in selected)


# --- secrets, ECDS, bootstrap ----------------------------------------------------------------------


def test_secret_table_parses_the_certificates(dump: dict[str, Any]) -> None:
    items = pc.secrets(dump, NOW)
    table = pc.secret_table(items)
    assert table.headers == [
        "RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE",
    ]  # fmt: skip
    default, root = table.rows
    assert default[:4] == ["default", "Cert Chain", "ACTIVE", "true"]
    assert default[5:] == ["2026-12-07T15:09:19Z", "2026-12-06T15:07:19Z"]
    assert root[:4] == ["ROOTCA", "CA", "ACTIVE", "true"]
    assert root[5] == "2036-12-03T15:09:19Z"
    assert all(len(r[4]) > 10 and int(r[4], 16) for r in table.rows)
    # A day later the leaf has expired; the root has not.
    later = pc.secrets(dump, NOW + dt.timedelta(days=2))
    assert [s.valid for s in later] == [False, True]


def test_warming_secret_without_certificate() -> None:
    dump = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_warming_secrets": [{"name": "kubernetes://missing"}],
            }
        ]
    }
    assert pc.secret_table(pc.secrets(dump, NOW)).rows == [
        ["kubernetes://missing", "", "WARMING", "false", "", "", ""]
    ]
    assert pc.summary("secret", {"configs": []}, None, pc.Filters()) == "No active or warming secrets found."


def test_ecds_and_bootstrap(dump: dict[str, Any]) -> None:
    table = pc.ecds_table(pc.ecds_configs(dump))
    assert table.headers == ["ECDS NAME", "TYPE"]
    assert table.rows == [
        ["envoy.filters.http.jwt_authn", "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"]
    ]
    assert pc.envoy_version(dump) == "1.40.0/Clean/RELEASE/BoringSSL"
    assert pc.selected("ecds", dump, None, pc.Filters())["ecds_filters"][0]["ecds_filter"]["name"] == (
        "envoy.filters.http.jwt_authn"
    )


# --- output ----------------------------------------------------------------------------------------


def test_table_render_pads_like_tabwriter() -> None:
    text = pc.Table(["A", "BB", "C"], [["xxx", "", "z"], ["y", "w", ""]], padding=2).render()
    assert text.splitlines() == ["A    BB  C", "xxx      z", "y    w"]


def test_selected_returns_raw_envoy_entries(dump: dict[str, Any]) -> None:
    sel = pc.selected("cluster", dump, None, pc.Filters(fqdn="h2"))
    assert [c["name"] for c in sel] == ["outbound|9000||h2.default.svc.cluster.local"]
    assert sel[0]["@type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert [lst["name"] for lst in pc.selected("listeners", dump, None, pc.Filters(port=15001))] == [
        "virtualOutbound"
    ]
    assert [rc["name"] for rc in pc.selected("route", dump, None, pc.Filters(name="http_proxy"))] == [
        "http_proxy"
    ]
    assert pc.selected("all", dump, None, pc.Filters()) == dump
    yaml_text = pc.structured("cluster", dump, None, pc.Filters(fqdn="h2"), "yaml")
    assert "- '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster" not in yaml_text  # no @type
    assert "name: outbound|9000||h2.default.svc.cluster.local" in yaml_text


def test_misapplied_filters() -> None:
    assert pc.misapplied_filters("listener", pc.Filters(port=80, type="HTTP")) == []
    assert pc.misapplied_filters("route", pc.Filters(port=80)) == ["port"]
    assert pc.misapplied_filters("clusters", pc.Filters(fqdn="x", status="HEALTHY")) == ["status"]


def test_all_summary_has_every_section(dump: dict[str, Any], clusters_json: dict[str, Any]) -> None:
    text = pc.summary("all", dump, clusters_json, pc.Filters(), now=NOW)
    for header in (
        "Envoy Version:",
        "SERVICE FQDN",
        "ADDRESSES",
        "VHOST NAME",
        "RESOURCE NAME",
        "LOCALITY",  # istioctl's `all` lists the dump's EDS endpoints, not /clusters
    ):
        assert header in text
    assert "ECDS NAME" not in text and "OUTLIER CHECK" not in text


# --- the command, with the admin API faked ---------------------------------------------------------


@pytest.fixture
def fake_proxy(
    monkeypatch: pytest.MonkeyPatch, dump: dict[str, Any], clusters_json: dict[str, Any]
) -> list[str]:
    fetched: list[str] = []
    status = {
        "configVersion": 1,
        "proxies": [
            {"id": "sidecar~127.180.0.6~client-0.default~default.svc.cluster.local", "instance": "client-0",
             "namespace": "default", "workload": "client", "ip": "127.180.0.6", "adminPort": 15000},
        ],
    }  # fmt: skip

    def admin_get(url: str) -> Any:
        fetched.append(url)
        return copy.deepcopy(clusters_json if "/clusters" in url else dump)

    monkeypatch.setattr(proxy_cmds, "_status", lambda state_dir: status)
    monkeypatch.setattr(proxy_cmds, "_admin_get", admin_get)
    monkeypatch.setattr(proxy_cmds, "_admin_text", lambda url: json.dumps(admin_get(url)))
    return fetched


def run(*args: str) -> Any:
    return CliRunner().invoke(proxy_cmds.proxy_config_command, list(args), catch_exceptions=False)


def test_cli_cluster_table_with_filters(fake_proxy: list[str]) -> None:
    res = run("cluster", "client-0.default", "--fqdn", "echo", "--subset", "v2")
    assert res.exit_code == 0, res.output
    got = lines(res.output)
    assert got[0] == ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    assert got[1:] == [
        [ECHO, "80", "v2", "outbound", "EDS", "echo.default"],
        [ECHO, "9090", "v2", "outbound", "EDS", "echo.default"],
    ]
    assert fake_proxy == ["http://127.180.0.6:15000/config_dump?include_eds"]


def test_cli_endpoint_uses_admin_clusters(fake_proxy: list[str]) -> None:
    res = run("endpoint", "client", "--cluster", "outbound|9000||h2.default.svc.cluster.local")
    assert res.exit_code == 0, res.output
    assert lines(res.output)[1] == [
        "127.180.0.5:9000",
        "HEALTHY",
        "OK",
        "outbound|9000||h2.default.svc.cluster.local",
    ]
    assert fake_proxy == ["http://127.180.0.6:15000/clusters?format=json"]


def test_cli_json_and_yaml(fake_proxy: list[str]) -> None:
    res = run("listener", "client-0", "--port", "15001", "-o", "json")
    assert res.exit_code == 0, res.output
    assert [lst["name"] for lst in json.loads(res.output)] == ["virtualOutbound"]
    res = run("route", "client-0", "--name", "inbound|8080||", "-o", "yaml")
    assert res.exit_code == 0, res.output
    assert "name: inbound|8080||" in res.output
    res = run("bootstrap", "client-0")
    assert json.loads(res.output)["bootstrap"]["node"]["cluster"] == "client.default"


def test_cli_rejects_filters_of_another_type(fake_proxy: list[str]) -> None:
    res = CliRunner().invoke(proxy_cmds.proxy_config_command, ["route", "client-0", "--fqdn", "echo"])
    assert res.exit_code == 2
    assert "--fqdn" in res.output
    assert fake_proxy == []


def test_find_proxy_by_instance_workload_and_namespace() -> None:
    def proxy(instance: str, namespace: str, workload: str) -> dict[str, str]:
        return {
            "id": f"sidecar~x~{instance}.{namespace}",
            "instance": instance,
            "namespace": namespace,
            "workload": workload,
        }

    status = {
        "proxies": [
            proxy("client-0", "other", "client"),
            proxy("client-1", "default", "client"),
            proxy("client-0", "default", "client"),
            proxy("istio-ingressgateway-0", "istio-system", "istio-ingressgateway"),
        ]
    }

    def found(name: str, namespace: str | None = None) -> str:
        p = proxy_cmds.find_proxy(status, name, namespace)
        return f"{p['instance']}.{p['namespace']}"

    assert found("client-0.other") == "client-0.other"
    assert found("client") == "client-0.default"  # the default namespace wins, then the first instance
    assert found("client", "other") == "client-0.other"
    assert found("client-0") == "client-0.default"
    assert found("istio-ingressgateway.istio-system") == "istio-ingressgateway-0.istio-system"
    assert found("sidecar~x~client-0.other") == "client-0.other"
    with pytest.raises(click.ClickException, match="no proxy"):
        found("nope")


def test_endpoint_addresses_of_every_kind_are_read() -> None:
    from isthmus.debug.envoy_config import address_of

    assert address_of({"socket_address": {"address": "10.0.0.1", "port_value": 8080}}) == ("10.0.0.1", 8080)
    assert address_of({"pipe": {"path": "/var/run/app.sock"}}) == ("unix:///var/run/app.sock", 0)
    internal = {"envoy_internal_address": {"server_listener_name": "l", "endpoint_id": "e"}}
    assert address_of(internal) == ("envoy://l/e", 0)
    assert address_of({}) == ("unknown", 0)
