"""`isthmus proxy-config` against istioctl's own tests for the commands of that name.

Each case is ported from `istioctl/pkg/writer/envoy/configdump/*_test.go`,
`istioctl/pkg/writer/envoy/clusters/clusters_test.go` and their `testdata/` goldens: the inputs are
Envoy admin JSON shaped like istioctl's testdata (snake_case, as Envoy's admin API writes it) and the
expected text is istioctl's golden output. Trailing blanks are not compared (Go's tabwriter pads an
empty last-but-one cell; `Table.render` strips line ends).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from isthmus.cli import proxy_cmds
from isthmus.debug import proxy_config as pc

TESTDATA = Path(__file__).parent / "istioctl_testdata"
# After the `default` cert expired (2023-05-16) and before ROOTCA does (2033-05-02).
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def config_dump(*sections: dict[str, Any]) -> dict[str, Any]:
    return {"configs": list(sections)}


def golden(text: str) -> str:
    """A golden file's text as `Table.render` prints it: no trailing blanks or final newline."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


# --- clusters: configdump/cluster_test.go, testdata/configdump.json + clustersummary*.txt ------------

CLUSTER_DUMP = config_dump(
    {
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        "static_clusters": [{"cluster": {"name": "xds-grpc", "type": "STRICT_DNS"}}],
        "dynamic_active_clusters": [
            {
                "cluster": {
                    "name": "outbound|15004||istio-policy.istio-system.svc.cluster.local",
                    "type": "EDS",
                }
            }
        ],
    }
)
CLUSTER_SUMMARY = """
SERVICE FQDN                                    PORT      SUBSET     DIRECTION     TYPE           DESTINATION RULE
istio-policy.istio-system.svc.cluster.local     15004     -          outbound      EDS
xds-grpc                                        -         -          -             STRICT_DNS
"""
CLUSTER_SUMMARY_FILTERED = """
SERVICE FQDN                                    PORT      SUBSET     DIRECTION     TYPE     DESTINATION RULE
istio-policy.istio-system.svc.cluster.local     15004     -          outbound      EDS
"""


@pytest.mark.parametrize(
    ("name", "filters", "expected"),
    [
        ("display all clusters when no filter is passed", pc.Filters(), CLUSTER_SUMMARY),
        (
            "filter clusters in the summary",
            pc.Filters(fqdn="istio-policy.istio-system.svc.cluster.local"),
            CLUSTER_SUMMARY_FILTERED,
        ),
        ("handles port filtering", pc.Filters(port=15004), CLUSTER_SUMMARY_FILTERED),
    ],
)
def test_print_cluster_summary(name: str, filters: pc.Filters, expected: str) -> None:
    assert pc.summary("cluster", CLUSTER_DUMP, None, filters) == golden(expected), name


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (pc.Filters(), ["outbound|15004||istio-policy.istio-system.svc.cluster.local", "xds-grpc"]),
        (
            pc.Filters(fqdn="istio-policy.istio-system.svc.cluster.local"),
            ["outbound|15004||istio-policy.istio-system.svc.cluster.local"],
        ),
        (pc.Filters(port=15004), ["outbound|15004||istio-policy.istio-system.svc.cluster.local"]),
    ],
)
def test_print_cluster_dump(filters: pc.Filters, names: list[str]) -> None:
    # PrintClusterDump: the filtered clusters, sorted like the summary (FQDN, subset, port, direction).
    assert [c["name"] for c in pc.selected("cluster", CLUSTER_DUMP, None, filters)] == names


def test_cluster_sort_order_is_fqdn_subset_port_direction() -> None:
    names = [
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "inbound|9080||",
        "outbound|9080||reviews.default.svc.cluster.local",
        "BlackHoleCluster",
        "outbound|80||reviews.default.svc.cluster.local",
        "inbound|80||reviews.default.svc.cluster.local",
    ]
    dump = config_dump(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "dynamic_active_clusters": [{"cluster": {"name": n, "type": "EDS"}} for n in names],
        }
    )
    assert [c["name"] for c in pc.clusters(dump)] == [
        "inbound|9080||",  # FQDN "" sorts first
        "BlackHoleCluster",  # a name without `|` sorts by the whole name as its FQDN
        "inbound|80||reviews.default.svc.cluster.local",
        "outbound|80||reviews.default.svc.cluster.local",
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
    ]


# --- listeners: configdump/listener_test.go TestListenerFilter_Verify -----------------------------

HCM = {"name": "envoy.filters.network.http_connection_manager"}
TCP = {"name": "envoy.filters.network.tcp_proxy"}


@pytest.mark.parametrize(
    ("desc", "filters", "listener", "expect"),
    [
        ("filter-fields-empty", pc.Filters(), {}, True),
        (
            "addrs-dont-match",
            pc.Filters(address="0.0.0.0"),
            {"address": {"socket_address": {"address": "1.1.1.1"}}},
            False,
        ),
        (
            "ports-dont-match",
            pc.Filters(port=10),
            {"address": {"socket_address": {"port_value": 11}}},
            False,
        ),
        ("http-type-match", pc.Filters(type="HTTP"), {"filter_chains": [{"filters": [HCM]}]}, True),
        (
            "http-tcp-type-match",
            pc.Filters(type="HTTP+TCP"),
            {"filter_chains": [{"filters": [TCP, TCP, HCM]}]},
            True,
        ),
        ("tcp-type-match", pc.Filters(type="TCP"), {"filter_chains": [{"filters": [TCP]}]}, True),
        ("unknown-type", pc.Filters(type="UNKNOWN"), {"filter_chains": [{"filters": []}]}, True),
        # The newest Verify also matches an additional address, case-insensitively.
        (
            "additional-address-match",
            pc.Filters(address="FD00::1"),
            {
                "address": {"socket_address": {"address": "10.0.0.1"}},
                "additional_addresses": [{"address": {"socket_address": {"address": "fd00::1"}}}],
            },
            True,
        ),
    ],
)
def test_listener_filter_verify(
    desc: str, filters: pc.Filters, listener: dict[str, Any], expect: bool
) -> None:
    assert pc.listener_matches(listener, filters) is expect, desc


_HTTP_LISTENER = {
    "name": "0.0.0.0_80",
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
    "additional_addresses": [{"address": {"socket_address": {"address": "::", "port_value": 80}}}],
    "filter_chains": [
        {
            "filter_chain_match": {"transport_protocol": "tls", "application_protocols": ["istio-peer-exchange", "istio"]},
            "filters": [{**TCP, "typed_config": {"cluster": "outbound|80||a.default.svc.cluster.local"}}],
        },
        {
            "filter_chain_match": {"application_protocols": ["http/1.0", "http/1.1", "h2c"]},
            "filters": [{**HCM, "typed_config": {"rds": {"route_config_name": "80"}}}],
        },
    ],
    "default_filter_chain": {"filters": [{**TCP, "typed_config": {"cluster": "PassthroughCluster"}}]},
}  # fmt: skip
_TCP_LISTENER = {
    "name": "10.0.0.2_80",
    "address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}},
    "filter_chains": [
        {
            "filter_chain_match": {"prefix_ranges": [{"address_prefix": "10.0.0.2", "prefix_len": 32}], "destination_port": 80},
            "filters": [{**TCP, "typed_config": {"cluster": "outbound|80||b.default.svc.cluster.local"}}],
        }
    ],
}  # fmt: skip
_VIRTUAL_LISTENER = {
    "name": "virtualOutbound",
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
    "filter_chains": [
        {"filter_chain_match": {"destination_port": 15001}, "filters": [{**TCP, "typed_config": {"cluster": "BlackHoleCluster"}}]}
    ],
}  # fmt: skip
LISTENER_DUMP = config_dump(
    {
        "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
        "dynamic_listeners": [
            {"active_state": {"listener": lst}} for lst in (_VIRTUAL_LISTENER, _TCP_LISTENER, _HTTP_LISTENER)
        ],
    }
)
LISTENER_SUMMARY = """
ADDRESSES  PORT  MATCH                    DESTINATION
0.0.0.0,:: 80    App: HTTP                Route: 80
0.0.0.0,:: 80    ALL                      PassthroughCluster
0.0.0.0,:: 80    Trans: tls; App: TCP TLS Cluster: outbound|80||a.default.svc.cluster.local
10.0.0.2   80    Addr: 10.0.0.2/32:80     Cluster: outbound|80||b.default.svc.cluster.local
0.0.0.0    15001 Addr: *:15001            Non-HTTP/Non-TCP
"""
LISTENER_SHORT = """
ADDRESSES  PORT  TYPE
0.0.0.0,:: 80    HTTP+TCP
10.0.0.2   80    TCP
0.0.0.0    15001 UNKNOWN
"""


def test_listener_summary_columns_sorting_and_matches() -> None:
    """PrintListenerSummary: listeners by port, address, type; a listener's chains by destination,
    descending; the default filter chain counted; ADDRESSES joins the additional addresses; padding 1."""
    assert pc.summary("listener", LISTENER_DUMP, None, pc.Filters()) == golden(LISTENER_SUMMARY)
    assert pc.summary("listener", LISTENER_DUMP, None, pc.Filters(), verbose=False) == golden(LISTENER_SHORT)
    assert [lst["name"] for lst in pc.selected("listener", LISTENER_DUMP, None, pc.Filters(type="tcp"))] == [
        "10.0.0.2_80"
    ]
    assert [
        lst["name"] for lst in pc.selected("listener", LISTENER_DUMP, None, pc.Filters(address="::"))
    ] == ["0.0.0.0_80"]


# --- routes: configdump/route_test.go TestDescribeRouteDomains and TestPrintRoutesSummary ----------


@pytest.mark.parametrize(
    ("desc", "domains", "expected"),
    [
        ("test zero domain", [], ""),
        ("test only one domain", ["example.com"], "example.com"),
        ("test domains with port", ["example.com", "example.com:8080"], "example.com"),
        (
            "test domains with ipv4 addresses",
            ["example.com", "example.com:8080", "1.2.3.4", "1.2.3.4:8080"],
            "example.com, 1.2.3.4",
        ),
        (
            "test domains with ipv6 addresses",
            ["example.com", "example.com:8080", "[fd00:10:96::7fc7]", "[fd00:10:96::7fc7]:8080"],
            "example.com, [fd00:10:96::7fc7]",
        ),
        (
            "test with more domains",
            [
                "example.com",
                "example.com:8080",
                "www.example.com",
                "www.example.com:8080",
                "[fd00:10:96::7fc7]",
                "[fd00:10:96::7fc7]:8080",
            ],
            "example.com, www.example.com + 1 more...",
        ),
    ],
)
def test_describe_route_domains(desc: str, domains: list[str], expected: str) -> None:
    assert pc.describe_route_domains(domains) == expected, desc


def test_unexpand_domains_keeps_the_short_forms() -> None:
    domains = [
        "reviews.default.svc.cluster.local",
        "reviews",
        "reviews.default.svc",
        "reviews.default",
        "10.0.0.1",
    ]
    assert pc.describe_route_domains(domains) == "reviews, reviews.default + 1 more..."


def _backend(prefix: str, cluster: str) -> dict[str, Any]:
    # The static route configs of a gateway's agent (no name): readiness and Prometheus.
    return {
        "route_config": {
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "virtual_hosts": [
                {"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": prefix}, "route": {"cluster": cluster}}]}
            ],
        }
    }  # fmt: skip


def _gateway_route(name: str, match: dict[str, Any], vs: str) -> dict[str, Any]:
    return {
        "version_info": "2023-11-29T09:58:18Z/10",
        "route_config": {
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": name,
            "virtual_hosts": [
                {
                    "name": "httpbin.example.com:80",
                    "domains": ["httpbin.example.com"],
                    "routes": [
                        {
                            "match": {**match, "case_sensitive": True},
                            "route": {"cluster": "outbound|8000||httpbin.default.svc.cluster.local"},
                            "metadata": {"filter_metadata": {"istio": {"config": f"/apis/networking.istio.io/v1/namespaces/default/virtual-service/{vs}"}}},
                        }
                    ],
                }
            ],
        },
    }  # fmt: skip


HEALTHZ = _backend("/healthz/ready", "agent")
PROMETHEUS = _backend("/stats/prometheus", "prometheus_stats")


@pytest.mark.parametrize(
    ("case", "static", "dynamic", "expected"),
    [
        (
            "empty-gateway",
            [HEALTHZ, PROMETHEUS],
            [],
            """
NAME     VHOST NAME     DOMAINS     MATCH                  VIRTUAL SERVICE
         backend        *           /healthz/ready*
         backend        *           /stats/prometheus*
""",
        ),
        (
            "istio-gateway-http-route-prefix",
            [PROMETHEUS, HEALTHZ],
            [_gateway_route("http.8080", {"prefix": "/get"}, "httpbin")],
            """
NAME          VHOST NAME                 DOMAINS                 MATCH                  VIRTUAL SERVICE
http.8080     httpbin.example.com:80     httpbin.example.com     /get*                  httpbin.default
              backend                    *                       /stats/prometheus*
              backend                    *                       /healthz/ready*
""",
        ),
        (
            "k8s-gateway-http-route-path-prefix",
            [HEALTHZ, PROMETHEUS],
            [
                _gateway_route(
                    "http.80", {"path_separated_prefix": "/get"}, "http-0-istio-autogenerated-k8s-gateway"
                )
            ],
            """
NAME        VHOST NAME                 DOMAINS                 MATCH                  VIRTUAL SERVICE
http.80     httpbin.example.com:80     httpbin.example.com     PathPrefix:/get        http-0-istio-autogenerated-k8s-gateway.default
            backend                    *                       /healthz/ready*
            backend                    *                       /stats/prometheus*
""",
        ),
    ],
)
def test_print_routes_summary(
    case: str, static: list[dict[str, Any]], dynamic: list[dict[str, Any]], expected: str
) -> None:
    # Static route configs come first in these dumps; istioctl lists dynamic ones first all the same.
    dump = config_dump(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "static_route_configs": static,
            "dynamic_route_configs": dynamic,
        }
    )
    assert pc.summary("route", dump, None, pc.Filters()) == golden(expected), case


def test_route_summary_numeric_names_sort_first_and_passthrough_is_hidden() -> None:
    def rc(name: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "route_config": {
                "name": name,
                "virtual_hosts": [{"name": "allow_any", "domains": ["*"], "routes": routes}],
            }
        }

    passthrough = {"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}
    dump = config_dump(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "dynamic_route_configs": [
                rc("9080", [passthrough, {"match": {"path": "/exact"}, "route": {"cluster": "c"}}]),
                rc("80", []),
            ],
        }
    )  # fmt: skip
    table = pc.route_table(pc.route_configs(dump))
    assert table.rows == [["80", "allow_any", "*", "/*", "404"], ["9080", "allow_any", "*", "/exact", ""]]
    assert pc.route_table(pc.route_configs(dump), verbose=False).render() == golden("""
NAME     VIRTUAL HOSTS
80       1
9080     1
""")
    assert [r["name"] for r in pc.filter_routes(pc.route_configs(dump), pc.Filters(name="80"))] == ["80"]


# --- endpoints: clusters/clusters_test.go, testdata/clusters.json ---------------------------------


def _host(address: dict[str, Any], health: dict[str, Any]) -> dict[str, Any]:
    return {"address": address, "health_status": health}


def _ip(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


HEALTHY = {"eds_health_status": "HEALTHY"}
CLUSTERS_JSON = {
    "cluster_statuses": [
        {"name": "outbound|443||istio-sidecar-injector.istio-system.svc.cluster.local", "host_statuses": [_host(_ip("172.17.0.4", 443), HEALTHY)]},
        {"name": "outbound|443||istio-ingressgateway.istio-system.svc.cluster.local", "host_statuses": [_host(_ip("172.17.0.13", 443), HEALTHY)]},
        {"name": "outbound|443||istio-galley.istio-system.svc.cluster.local", "host_statuses": [_host(_ip("172.17.0.19", 443), HEALTHY)]},
        {"name": "outbound|443||istio-egressgateway.istio-system.svc.cluster.local", "host_statuses": [_host(_ip("172.17.0.6", 443), HEALTHY)]},
        {"name": "outbound|15014||istio-policy.istio-system.svc.cluster.local", "host_statuses": [_host(_ip("172.17.0.14", 15014), {"eds_health_status": "UNHEALTHY"})]},
        {
            "name": "outbound|9080||reviews.default.svc.cluster.local",
            "host_statuses": [
                _host(_ip("172.17.0.24", 9080), HEALTHY),
                _host(_ip("172.17.0.26", 9080), HEALTHY),
                _host(_ip("172.17.0.27", 9080), {"failed_outlier_check": True, "eds_health_status": "HEALTHY"}),
            ],
        },
        {"name": "inbound_9092", "host_statuses": [_host({"pipe": {"path": "/sock/mixer.socket"}}, HEALTHY)]},
    ]
}  # fmt: skip
ENDPOINT_SUMMARY = """
ENDPOINT                      STATUS        OUTLIER CHECK     CLUSTER
172.17.0.13:443               HEALTHY       OK                outbound|443||istio-ingressgateway.istio-system.svc.cluster.local
172.17.0.14:15014             UNHEALTHY     OK                outbound|15014||istio-policy.istio-system.svc.cluster.local
172.17.0.19:443               HEALTHY       OK                outbound|443||istio-galley.istio-system.svc.cluster.local
172.17.0.24:9080              HEALTHY       OK                outbound|9080||reviews.default.svc.cluster.local
172.17.0.26:9080              HEALTHY       OK                outbound|9080||reviews.default.svc.cluster.local
172.17.0.27:9080              HEALTHY       FAILED            outbound|9080||reviews.default.svc.cluster.local
172.17.0.4:443                HEALTHY       OK                outbound|443||istio-sidecar-injector.istio-system.svc.cluster.local
172.17.0.6:443                HEALTHY       OK                outbound|443||istio-egressgateway.istio-system.svc.cluster.local
unix:///sock/mixer.socket     HEALTHY       OK                inbound_9092
"""
ENDPOINT_SUMMARY_FILTERED = """
ENDPOINT              STATUS        OUTLIER CHECK     CLUSTER
172.17.0.14:15014     UNHEALTHY     OK                outbound|15014||istio-policy.istio-system.svc.cluster.local
"""


@pytest.mark.parametrize(
    ("name", "filters", "expected"),
    [
        ("display all endpoints when no filter is passed", pc.Filters(), ENDPOINT_SUMMARY),
        (
            "filter endpoints in the summary",
            pc.Filters(cluster="outbound|15014||istio-policy.istio-system.svc.cluster.local"),
            ENDPOINT_SUMMARY_FILTERED,
        ),
        ("handles address filtering", pc.Filters(address="172.17.0.14"), ENDPOINT_SUMMARY_FILTERED),
        ("handles port filtering", pc.Filters(port=15014), ENDPOINT_SUMMARY_FILTERED),
        ("handles status filtering", pc.Filters(status="unhealthy"), ENDPOINT_SUMMARY_FILTERED),
    ],
)
def test_print_endpoints_summary(name: str, filters: pc.Filters, expected: str) -> None:
    assert pc.summary("endpoint", {}, CLUSTERS_JSON, filters) == golden(expected), name


@pytest.mark.parametrize(
    ("filters", "clusters"),
    [
        (pc.Filters(), [cs["name"] for cs in CLUSTERS_JSON["cluster_statuses"]]),
        (
            pc.Filters(cluster="outbound|15014||istio-policy.istio-system.svc.cluster.local"),
            ["outbound|15014||istio-policy.istio-system.svc.cluster.local"],
        ),
        (pc.Filters(address="172.17.0.14"), ["outbound|15014||istio-policy.istio-system.svc.cluster.local"]),
        (pc.Filters(port=15014), ["outbound|15014||istio-policy.istio-system.svc.cluster.local"]),
        (pc.Filters(status="unhealthy"), ["outbound|15014||istio-policy.istio-system.svc.cluster.local"]),
        # A cluster with several hosts is printed whole (PrintEndpoints breaks on its first match).
        (
            pc.Filters(cluster="outbound|9080||reviews.default.svc.cluster.local"),
            ["outbound|9080||reviews.default.svc.cluster.local"],
        ),
    ],
)
def test_print_endpoints_dump(filters: pc.Filters, clusters: list[str]) -> None:
    selected = pc.selected("endpoint", {}, CLUSTERS_JSON, filters)
    assert [cs["name"] for cs in selected] == clusters
    if filters.cluster and "reviews" in filters.cluster:
        assert len(selected[0]["host_statuses"]) == 3


# --- secrets: configdump/secret_test.go, testdata/secret/istio ------------------------------------


def test_secret_summary_istio() -> None:
    dump = json.loads((TESTDATA / "secret_config_dump.json").read_text())
    assert pc.summary("secret", dump, None, pc.Filters(), now=NOW) == golden("""
RESOURCE NAME              TYPE           STATUS      VALID CERT     SERIAL NUMBER                        NOT AFTER                NOT BEFORE
configmap://some/thing                    WARMING     false
default                    Cert Chain     ACTIVE      false          6fbee254c22900615cb1f74e3d2f1713     2023-05-16T01:32:52Z     2023-05-15T01:30:52Z
ROOTCA                     CA             ACTIVE      true           0193a543fe2b0d9cd4847675394dfc54     2033-05-02T03:41:33Z     2023-05-05T03:41:33Z
""")


def test_secret_states_follow_istioctl() -> None:
    """An active secret Envoy never received shows UNINITIALIZED; static secrets are not listed, and a
    dump with only those has no active or warming secrets."""
    dump = config_dump(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
            "dynamic_active_secrets": [{"name": "file-cert", "version_info": "uninitialized"}],
            "static_secrets": [{"name": "static"}],
        }
    )
    assert [(s.name, s.state) for s in pc.secrets(dump, NOW)] == [("file-cert", "UNINITIALIZED")]
    static_only = config_dump(
        {
            "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
            "static_secrets": [{"name": "static"}],
        }
    )
    assert pc.summary("secret", static_only, None, pc.Filters()) == "No active or warming secrets found."


# --- bootstrap: configdump_test.go TestConfigWriter_PrintVersionSummary ---------------------------

BOOTSTRAP_DUMP = config_dump(
    {
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": {
            "node": {
                "metadata": {
                    "ISTIO_PROXY_SHA": "istio-proxy:436f365a8007cd8a13a9f1321e7cce94bcc8883e",
                    "ISTIO_VERSION": "1.10.0",
                },
                "user_agent_build_version": {
                    "version": {"major_number": 1, "minor_number": 18, "patch": 3},
                    "metadata": {
                        "build.type": "RELEASE",
                        "revision.sha": "436f365a8007cd8a13a9f1321e7cce94bcc8883e",
                        "revision.status": "Clean",
                        "ssl.version": "BoringSSL",
                    },
                },
            }
        },
    }
)
VERSION_SUMMARY = """
Istio Version:       1.10.0
Istio Proxy Version: 436f365a8007cd8a13a9f1321e7cce94bcc8883e
Envoy Version:       1.18.3/Clean/RELEASE/BoringSSL
"""


def test_print_version_summary() -> None:
    assert pc.version_summary(BOOTSTRAP_DUMP) == golden(VERSION_SUMMARY)


# --- the command: proxyconfig_test.go-style invocations ---------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fetched: list[str] = []
    status = {
        "configVersion": "1",
        "proxies": [
            {"id": "sidecar~10.0.0.1~pod-1.default~default.svc.cluster.local", "instance": "pod-1",
             "namespace": "default", "workload": "pod", "ip": "10.0.0.1", "adminPort": 15000},
        ],
    }  # fmt: skip
    dump = config_dump(*BOOTSTRAP_DUMP["configs"], *CLUSTER_DUMP["configs"])

    def admin_get(url: str) -> Any:
        fetched.append(url)
        return CLUSTERS_JSON if "/clusters" in url else dump

    monkeypatch.setattr(proxy_cmds, "_status", lambda state_dir: status)
    monkeypatch.setattr(proxy_cmds, "_admin_get", admin_get)
    # `all -o json|yaml` reads the dump's text (printed as fetched).
    monkeypatch.setattr(proxy_cmds, "_admin_text", lambda url: json.dumps(admin_get(url), indent=1))
    return fetched


def invoke(*args: str) -> Any:
    return CliRunner().invoke(proxy_cmds.proxy_config_command, list(args))


def test_cli_bootstrap_defaults_to_json_and_short_is_the_version_summary(cli: list[str]) -> None:
    res = invoke("bootstrap", "pod-1")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["bootstrap"]["node"]["metadata"]["ISTIO_VERSION"] == "1.10.0"
    res = invoke("bootstrap", "pod-1", "-o", "short")
    assert res.exit_code == 0, res.output
    assert res.output.strip("\n") == golden(VERSION_SUMMARY)


def test_cli_all_starts_with_the_version_summary_and_json_is_the_dump_with_eds(cli: list[str]) -> None:
    res = invoke("all", "pod-1")
    assert res.exit_code == 0, res.output
    assert res.output.startswith(golden(VERSION_SUMMARY) + "\n\nNAME")  # `cluster/<name>` rows
    cli.clear()
    res = invoke("all", "pod-1", "-o", "json")
    assert res.exit_code == 0, res.output
    assert cli == ["http://10.0.0.1:15000/config_dump?include_eds"]  # allConfigCmd: edsPath
    assert json.loads(res.output)["configs"][0]["@type"].endswith("BootstrapConfigDump")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["all", "pod-1", "--cluster", "x"], "--cluster"),  # `all` has no endpoint-only flags
        (["all", "pod-1", "--status", "HEALTHY"], "--status"),
        (["cluster", "pod-1", "--address", "1.2.3.4"], "--address"),
        (["route", "pod-1", "--port", "80"], "--port"),
        (["secret", "pod-1", "--name", "x"], "--name"),
    ],
)
def test_cli_rejects_flags_the_subcommand_lacks(cli: list[str], args: list[str], flag: str) -> None:
    res = invoke(*args)
    assert res.exit_code == 2
    assert flag in res.output


def test_cli_cluster_short_and_aliases(cli: list[str]) -> None:
    for alias in ("cluster", "clusters", "c"):
        res = invoke(alias, "pod-1", "--port", "15004")
        assert res.exit_code == 0, res.output
        assert res.output.strip("\n") == golden(CLUSTER_SUMMARY_FILTERED)
