"""`proxy-status PROXY`'s comparison (isthmus.debug.config_compare) against istioctl's compare tests.

Ported from istioctl/pkg/writer/compare: comparator_test.go (TestComparatorMatchingSameConfigs: a dump
compared with itself prints "Clusters Match", "Listeners Match", "Routes Match";
TestComparatorMismatchedConfigs: against testdata/configdump_diff.json every type "Don't Match"), with
dumps made of entries of its testdata (configdump_diff.json's inbound-vip cluster and connect_terminate
listener); the older cluster_test.go / listener_test.go / route_test.go goldens (clusterdiff.txt: a
circuit breaker's maxRequests missing on Envoy's side; routediff.txt: two domains missing; listenerdiff.txt:
the router filter missing) as the same changes, checked for the "--- Istiod X" / "+++ Envoy X" unified
diff with its "-" lines; route_test.go's "RDS last loaded at" in Go's time.RFC1123. Then what istioctl's
configdump helpers ignore (version_info, last_updated, listener entry names, draining states, order)
and Isthmus-shaped dumps: the control plane's (Python's JSON) against Envoy's, and a delta sidecar's
virtual hosts over VHDS merged as Envoy shows them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from isthmus.debug.config_compare import (
    compare,
    dynamic_routes,
    last_route_update,
    merge_virtual_hosts,
    rfc1123,
)

ADMIN = "type.googleapis.com/envoy.admin.v3."

# configdump_diff.json's first cluster (trimmed of its transport socket).
CLUSTER = {
    "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "name": "inbound-vip|9999|http|ratings.default.svc.cluster.local",
    "type": "EDS",
    "metadata": {
        "filter_metadata": {
            "istio": {
                "services": [
                    {"namespace": "default", "name": "ratings", "host": "ratings.default.svc.cluster.local"}
                ]
            }
        }
    },
    "common_lb_config": {},
}
# clusterdiff.txt's cluster: outbound|15004||istio-policy, with circuit breaker thresholds.
POLICY_CLUSTER = {
    "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "name": "outbound|15004||istio-policy.istio-system.svc.cluster.local",
    "type": "EDS",
    "eds_cluster_config": {
        "eds_config": {"ads": {}},
        "service_name": "outbound|15004||istio-policy.istio-system.svc.cluster.local",
    },
    "connect_timeout": "1s",
    "circuit_breakers": {"thresholds": [{"max_requests": 10000}]},
    "http2_protocol_options": {"max_concurrent_streams": 1073741824},
}
# configdump_diff.json's connect_terminate listener (one filter chain, trimmed).
LISTENER = {
    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "name": "connect_terminate",
    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15008}},
    "filter_chains": [
        {
            "filters": [
                {
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                        "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "connect_terminate",
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.fault",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
                                },
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                },
                            },
                        ],
                    },
                }
            ],
            "name": "default",
        }
    ],
}
# routediff.txt's virtual host (istio-policy, port 15004).
ROUTE = {
    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    "name": "15004",
    "virtual_hosts": [
        {
            "name": "istio-policy.istio-system.svc.cluster.local:15004",
            "domains": [
                "istio-policy.istio-system.svc.cluster.local",
                "istio-policy.istio-system.svc.cluster.local:15004",
                "istio-policy.istio-system.svc",
                "istio-policy.istio-system.svc:15004",
                "172.21.193.112",
                "172.21.193.112:15004",
            ],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "route": {"cluster": "outbound|15004||istio-policy.istio-system.svc.cluster.local"},
                }
            ],
        }
    ],
    "validate_clusters": False,
}


def dump(
    clusters: list[dict[str, Any]],
    listeners: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    *,
    updated: str = "2024-03-04T08:37:44.840Z",
) -> dict[str, Any]:
    """An Envoy admin config dump with these dynamic resources."""
    return {
        "configs": [
            {"@type": ADMIN + "BootstrapConfigDump", "bootstrap": {"node": {"id": "x"}}},
            {
                "@type": ADMIN + "ClustersConfigDump",
                "version_info": "2024-03-04T08:37:44Z/4",
                "dynamic_active_clusters": [
                    {"version_info": "v1", "cluster": c, "last_updated": updated} for c in clusters
                ],
            },
            {
                "@type": ADMIN + "ListenersConfigDump",
                "version_info": "2024-03-04T08:37:44Z/4",
                "dynamic_listeners": [
                    {
                        "name": lst["name"],
                        "active_state": {"version_info": "v1", "listener": lst, "last_updated": updated},
                    }
                    for lst in listeners
                ],
            },
            {
                "@type": ADMIN + "RoutesConfigDump",
                "dynamic_route_configs": [
                    {"version_info": "v1", "route_config": rc, "last_updated": updated} for rc in routes
                ],
            },
        ]
    }


def base() -> dict[str, Any]:
    return dump([CLUSTER, POLICY_CLUSTER], [LISTENER], [ROUTE])


def test_comparator_matching_same_configs() -> None:
    # TestComparatorMatchingSameConfigs.
    lines = compare(base(), base(), tz=UTC)
    assert lines == [
        "Clusters Match",
        "Listeners Match",
        "Routes Match (RDS last loaded at Mon, 04 Mar 2024 08:37:44 UTC)",
    ]


def diff_dump() -> dict[str, Any]:
    """The three goldens' changes on Envoy's side: clusterdiff.txt (maxRequests gone), listenerdiff.txt
    (the router filter gone), routediff.txt (the `.svc` domains gone)."""
    policy = copy.deepcopy(POLICY_CLUSTER)
    policy["circuit_breakers"]["thresholds"][0] = {}
    listener = copy.deepcopy(LISTENER)
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    del filters[1]
    route = copy.deepcopy(ROUTE)
    domains = route["virtual_hosts"][0]["domains"]
    domains.remove("istio-policy.istio-system.svc")
    domains.remove("istio-policy.istio-system.svc:15004")
    return dump([CLUSTER, policy], [listener], [route])


def test_comparator_mismatched_configs() -> None:
    # TestComparatorMismatchedConfigs: each type "Don't Match", with istioctl's heading lines.
    lines = compare(base(), diff_dump(), tz=UTC)
    assert [line for line in lines if line[0] not in "-+ @"] == [
        "Clusters Don't Match",
        "Listeners Don't Match. Diff:",
        "Routes Don't Match (RDS last loaded at Mon, 04 Mar 2024 08:37:44 UTC)",
    ]


def section_of(lines: list[str], heading: str) -> list[str]:
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and lines[i][0] not in "-+ @"), len(lines))
    return lines[start:end]


def changed(diff: list[str], sign: str) -> list[str]:
    """The removed ("-") or added ("+") lines of a unified diff, without the file headings."""
    return [x[1:].strip() for x in diff if x.startswith(sign) and not x.startswith(sign * 3)]


def test_unified_diffs_like_the_goldens() -> None:
    lines = compare(base(), diff_dump(), tz=UTC)
    clusters = section_of(lines, "Clusters Don't Match")
    # clusterdiff.txt: "--- Istiod Clusters", "+++ Envoy Clusters", a hunk, the line only istiod has.
    assert clusters[:2] == ["--- Istiod Clusters", "+++ Envoy Clusters"]
    assert clusters[2].startswith("@@ -")
    assert changed(clusters, "-") == ["{", '"max_requests": 10000', "}"]
    assert changed(clusters, "+") == ["{}"]
    listeners = section_of(lines, "Listeners Don't Match. Diff:")
    assert listeners[:2] == ["--- Istiod Listeners", "+++ Envoy Listeners"]
    assert '"name": "envoy.filters.http.router",' in changed(listeners, "-"), listeners
    routes = section_of(lines, "Routes Don't Match (RDS last loaded at Mon, 04 Mar 2024 08:37:44 UTC)")
    assert routes[:2] == ["--- Istiod Routes", "+++ Envoy Routes"]
    assert changed(routes, "-") == [
        '"istio-policy.istio-system.svc",',
        '"istio-policy.istio-system.svc:15004",',
    ]
    assert changed(routes, "+") == []
    # Seven lines of context (istioctl's Comparator.context) around a change, JSON indented by 4.
    body = [x for x in routes[3:] if x.startswith(" ")]
    assert len(body) <= 14 and all(x[1:].startswith("    ") or x[1:] in "{}" for x in body), routes


def test_ignores_versions_times_names_draining_and_order() -> None:
    # GetDynamic*Dump(stripVersions=true): version_info, last_updated and the listener entry's name are
    # dropped; draining states are deleted; clusters, listeners, route configs and virtual hosts sorted.
    envoy = dump([POLICY_CLUSTER, CLUSTER], [LISTENER], [ROUTE], updated="2026-12-07T16:00:00.123456789Z")
    for sec in envoy["configs"][1:]:
        for e in sec.get("dynamic_active_clusters", []) + sec.get("dynamic_route_configs", []):
            e["version_info"] = "other"
    lst = envoy["configs"][2]["dynamic_listeners"][0]
    lst["name"] = "whatever Envoy calls it"
    lst["draining_state"] = {"listener": {"name": "old"}}
    route = copy.deepcopy(ROUTE)
    route["virtual_hosts"] = [{"name": "b", "domains": ["b"]}, {"name": "a", "domains": ["a"]}]
    envoy["configs"][3]["dynamic_route_configs"][0]["route_config"] = route
    istiod_route = copy.deepcopy(route)
    istiod_route["virtual_hosts"].reverse()
    istiod = dump([CLUSTER, POLICY_CLUSTER], [LISTENER], [istiod_route])
    lines = compare(istiod, envoy, tz=UTC)
    assert lines[:2] == ["Clusters Match", "Listeners Match"]
    assert lines[2] == "Routes Match (RDS last loaded at Mon, 07 Dec 2026 16:00:00 UTC)"


def test_listener_without_active_state_is_left_out() -> None:
    # A listener Envoy only warms (or failed) has no active_state: not compared.
    envoy = base()
    envoy["configs"][2]["dynamic_listeners"].append({"name": "x", "warming_state": {"listener": LISTENER}})
    assert compare(base(), envoy, tz=UTC)[1] == "Listeners Match"


def test_missing_section_compares_as_its_error() -> None:
    # The difflib comparator wrote the section error in place of that side's JSON.
    envoy = base()
    del envoy["configs"][3]
    lines = compare(base(), envoy, tz=UTC)
    assert lines[2] == "Routes Don't Match"  # no route section: no RDS time either
    assert (
        "+config dump has no configuration type type.googleapis.com/envoy.admin.v3.RoutesConfigDump" in lines
    )


def test_rds_last_loaded_is_the_newest_route_update() -> None:
    envoy = base()
    routes = envoy["configs"][3]["dynamic_route_configs"]
    routes.append({"route_config": {**ROUTE, "name": "80"}, "last_updated": "2024-03-05T01:02:03Z"})
    routes.append({"route_config": {**ROUTE, "name": "81"}})
    assert last_route_update(envoy) == datetime(2024, 3, 5, 1, 2, 3, tzinfo=UTC)
    # No last_updated anywhere: "Routes Match" alone.
    for e in routes:
        e.pop("last_updated", None)
    assert last_route_update(envoy) is None


def test_rfc1123_in_the_given_zone() -> None:
    # Go's time.RFC1123, "Mon, 02 Jan 2006 15:04:05 MST", in istioctl's location (Local by default).
    t = datetime(2022, 11, 1, 11, 29, 14, tzinfo=UTC)
    assert rfc1123(t, UTC) == "Tue, 01 Nov 2022 11:29:14 UTC"
    cst = timezone(timedelta(hours=8), "CST")
    assert rfc1123(t, cst) == "Tue, 01 Nov 2022 19:29:14 CST"


def test_python_numbers_compare_as_envoys() -> None:
    # The control plane's dump comes from Python's JSON encoder: a double 100 is 100.0 there.
    istiod = base()
    envoy = base()
    pct = {"runtime_fraction": {"default_value": {"numerator": 100}}, "value": 100.0}
    istiod["configs"][1]["dynamic_active_clusters"][0]["cluster"] = {**CLUSTER, "x": pct}
    envoy["configs"][1]["dynamic_active_clusters"][0]["cluster"] = {**CLUSTER, "x": {**pct, "value": 100}}
    assert compare(istiod, envoy, tz=UTC)[0] == "Clusters Match"


def test_vhds_virtual_hosts_merged_as_envoy_shows_them() -> None:
    # A delta sidecar's http_proxy table comes without virtual hosts, naming VHDS; Envoy's dump shows
    # the table with the VHDS virtual hosts (named `http_proxy/<name>`) in it.
    table = {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": "http_proxy",
        "vhds": {"config_source": {"ads": {}, "resource_api_version": "V3"}},
    }
    other = {
        "@type": table["@type"],
        "name": "inbound|8080||",
        "virtual_hosts": [{"name": "inbound|http|8080"}],
    }
    vhosts = [
        {
            "@type": "type.googleapis.com/envoy.config.route.v3.VirtualHost",
            "name": f"http_proxy/{n}",
            "domains": [n],
        }
        for n in ("b.default.svc.cluster.local:80", "a.default.svc.cluster.local:80")
    ]
    merged = merge_virtual_hosts([table, other], vhosts)
    # By name, without the resource's @type (a field of the table there).
    assert merged[0]["virtual_hosts"] == [
        {"name": "http_proxy/a.default.svc.cluster.local:80", "domains": ["a.default.svc.cluster.local:80"]},
        {"name": "http_proxy/b.default.svc.cluster.local:80", "domains": ["b.default.svc.cluster.local:80"]},
    ]
    assert merged[1] == other
    held = {**table, "virtual_hosts": list(reversed(merged[0]["virtual_hosts"]))}
    istiod = dump([CLUSTER], [LISTENER], merged)
    envoy = dump([CLUSTER], [LISTENER], [held, other])
    assert compare(istiod, envoy, tz=UTC)[2].startswith("Routes Match")
    # A virtual host Envoy did not get: the routes differ, and the diff names it.
    envoy = dump([CLUSTER], [LISTENER], [{**held, "virtual_hosts": held["virtual_hosts"][:1]}, other])
    lines = compare(istiod, envoy, tz=UTC)
    assert lines[2].startswith("Routes Don't Match")
    assert any(x.startswith("-") and "http_proxy/a.default" in x for x in lines), lines
    assert dynamic_routes(istiod) == dynamic_routes(dump([CLUSTER], [LISTENER], [held, other]))
