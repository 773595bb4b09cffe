"""Istio's remaining pilot integration tests (tests/integration/pilot/*), re-expressed against a real
Isthmus mesh: echo workloads behind sidecars, requests sent through a client's sidecar as `isthmus curl`
sends them, the default ingress gateway, and Envoy's own admin config dump where Istio reads it too.

Ported, one test (or more) per Istio case, each naming it:
- connection_settings_test.go: 'gateway xds', 'bootstrap';
- external_svc_test.go: the three reachability cases;
- fqdn_test.go: 'FQDN with trailing dot', 'with port', 'service disambiguation';
- label_test.go / common/labels.go: TestLabelChanges;
- failover_test.go, locality/* (failover, prioritized, distribute incl. 'disabled'): the ServiceEntry
  endpoint localities (test_locality.py has the Workload-label localities: outlier-driven locality
  preference, failover on ejection, distribute weights; not repeated here);
- circuitbreakers/main_test.go: the default thresholds of outbound clusters;
- common/loadbalancer.go (zone-aware load balancing): the two cases with it disabled (the cases with
  it enabled need a self-discovery caller: test_istio_zone_aware_lb.py);
- ingress_test.go: TestCustomGateway 'minimal', 'minimal-delay-create-gateway-svc'; TestIngress 'http'
  (its other cases, prefix paths, https-foo/bar, named port and the class/path updates, are in
  test_istio_ingress_cases.py).

Not ported (Isthmus has no such thing):
- ds_ep_loadbalancer_test.go and loadbalancer.go's dual-stack cases: IPv6 (meshes live in 127.0.0.0/8).
- ingress_test.go TestCustomGateway 'helm-simple': Helm charts and Kubernetes Deployments.
- ingress_test.go TestIngress 'status': Ingress load-balancer status (no Kubernetes API).
- failover_test.go's DNS-resolved *names* ('b', 'nonexistantservice'): Envoy would ask the system DNS
  (no DNS capture here); the CDS variants below give the same endpoints as IP literals instead.
- Kubernetes Gateway API (GatewayClass, Gateway, HTTPRoute): not modelled.
- Ambient mode (ztunnel, waypoints): not modelled.
- Multicluster and multi-network: one cluster only.
- CNI, DNS capture and auto-allocation: no traffic capture, no DNS proxy.
- Revisions, VMs (WorkloadGroup auto-registration): not modelled.

Isthmus is an explicit-proxy mesh: where Istio's client opens a connection to an address and names the
service in the Host header, here the Host header alone names the destination, and external hosts are
this mesh's own pods without a sidecar (traffic never leaves 127.0.0.0/8). Each test says how.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import textwrap
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

# a: the client (its own service too), in locality region/zone/subzone as Istio's echo config puts it.
# b, c: single-instance echo services. external: an app without a sidecar that no Service selects (an
# address outside the registry). lbl: label_test.go's destination. A Gateway starts the ingress gateway.
MESH = """
apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  selector: {app: a}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: c}
spec:
  selector: {app: c}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lbl}
spec:
  selector: {app: lbl}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: a, labels: {app: a, version: v1, istio-locality: region.zone.subzone}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b, labels: {app: b, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: c, labels: {app: c, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: lbl, labels: {app: lbl, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: external, labels: {app: external}}
spec: {sidecar: false, ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: base}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [base.example.net]
"""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
UINT32_MAX = 4294967295


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-pilot-more"), MESH) as m:
        yield m


def ip_of(mesh: MeshProcess, workload: str, namespace: str = "default") -> str:
    return mesh.instance(workload, namespace)["ip"]


def unused_ip(mesh: MeshProcess) -> str:
    """An address of the mesh's block that no pod holds: connections to it are refused at once (Istio's
    cases use a non-existent 10.10.10.10; traffic here stays in 127.0.0.0/8)."""
    return str(ipaddress.ip_network(mesh.subnet).broadcast_address - 1)


def config_dump(mesh: MeshProcess, workload: str, namespace: str = "default") -> dict[str, Any]:
    p = mesh.proxy(workload, namespace=namespace)
    url = f"http://{p['ip']}:{p['adminPort']}/config_dump"
    with _NO_PROXY.open(url, timeout=10) as resp:
        return json.loads(resp.read())


def dump_section(dump: dict[str, Any], type_suffix: str) -> dict[str, Any]:
    return next((c for c in dump["configs"] if c["@type"].endswith(type_suffix)), {})


def dynamic_clusters(dump: dict[str, Any]) -> list[dict[str, Any]]:
    return [c["cluster"] for c in dump_section(dump, "ClustersConfigDump").get("dynamic_active_clusters", [])]


def dynamic_listeners(dump: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        lst["active_state"]["listener"]
        for lst in dump_section(dump, "ListenersConfigDump").get("dynamic_listeners", [])
        if "active_state" in lst
    ]


def doc(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# --- connection_settings_test.go -------------------------------------------------------------------

CONNECTION_SETTINGS_MESH = """
apiVersion: isthmus.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaultConfig:
    connectionSettings:
      listenerPerConnectionBufferLimitBytes: 12345
      clusterPerConnectionBufferLimitBytes: 23456
      httpHeadersWithUnderscoresAction: HEADERS_WITH_UNDERSCORES_REJECT_REQUEST
"""


def test_connection_settings_reach_the_gateway(mesh: MeshProcess) -> None:
    """TestConnectionSettings 'gateway xds': MeshConfig defaultConfig.connectionSettings puts the buffer
    limits on the gateway's listeners and clusters and REJECT_REQUEST on its connection managers (read
    from Envoy's config dump, as Istio does), and a request with an underscored header gets a 400."""
    gateway = """
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: connection-settings}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - port: {number: 80, name: http, protocol: HTTP}
        hosts: [connection-settings.example.com]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: connection-settings}
    spec:
      hosts: [connection-settings.example.com]
      gateways: [connection-settings]
      http:
      - route: [{destination: {host: b, port: {number: 80}}}]
    """
    address = mesh.gateway_address(80)

    def call(extra: list[tuple[str, str]]) -> Response:
        return sync.request(
            f"http://{address}/", headers=[("Host", "connection-settings.example.com"), *extra], timeout=10
        )

    with applied(mesh, gateway):
        with applied(mesh, CONNECTION_SETTINGS_MESH):

            def applied_settings() -> tuple[bool, bool] | None:
                dump = config_dump(mesh, "istio-ingressgateway", "istio-system")
                listener = any(
                    lst.get("per_connection_buffer_limit_bytes") == 12345
                    and any(
                        f["name"] == "envoy.filters.network.http_connection_manager"
                        and f["typed_config"]
                        .get("common_http_protocol_options", {})
                        .get("headers_with_underscores_action")
                        == "REJECT_REQUEST"
                        for chain in lst.get("filter_chains", [])
                        for f in chain.get("filters", [])
                    )
                    for lst in dynamic_listeners(dump)
                )
                cluster = any(
                    c.get("per_connection_buffer_limit_bytes") == 23456 for c in dynamic_clusters(dump)
                )
                return (listener, cluster) if listener and cluster else None

            wait_for("the connection settings in the gateway's config", applied_settings, timeout=15)
            rejected = call([("x_test", "value")])
            accepted = call([("x-test", "value")])
            # Not in Istio's case: defaultConfig is every proxy's, so a sidecar's outbound connection
            # manager rejects the header too.
            from_sidecar = mesh.curl("a", "http://b/", headers=[("x_test", "value")], timeout=10)
            assert rejected.status == 400, (rejected.status, rejected.text)
            assert echo_body(accepted)["workload"] == "b"
            assert from_sidecar.status == 400, (from_sidecar.status, from_sidecar.text)
        # Without the setting, Envoy's default (ALLOW) lets the underscored header through.
        assert echo_body(call([("x_test", "value")]))["headers"].get("x_test") == "value"


@contextlib.contextmanager
def pod_started_with(mesh: MeshProcess, name: str, default_config: str) -> Iterator[None]:
    """A Workload `name` (in namespace `name`) started after MeshConfig defaultConfig is `default_config`
    (bootstrap settings are read when a pod starts); both removed at the end."""
    workload = f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: Workload
    metadata: {{name: {name}, namespace: {name}, labels: {{app: {name}}}}}
    spec: {{ports: [8080], command: [isthmus, echo]}}
    """
    mesh_config = f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: MeshConfig
    metadata: {{name: mesh}}
    spec:
      defaultConfig: {default_config}
    """
    with applied(mesh, mesh_config), applied(mesh, workload):

        def started() -> dict[str, Any] | None:
            try:
                return config_dump(mesh, name, name)
            except (AssertionError, OSError):
                return None

        wait_for("the new pod's proxy", started, timeout=30)
        yield


def test_connection_settings_global_downstream_connection_limit_in_the_bootstrap(mesh: MeshProcess) -> None:
    """TestConnectionSettings 'bootstrap': connectionSettings.globalDownstreamConnectionLimit: 7 is the
    overload manager's global_downstream_max_connections monitor in the bootstrap of a proxy started
    with it. Istio sets it per pod (the proxy.istio.io/config annotation); Isthmus takes ProxyConfig
    from MeshConfig defaultConfig, read at pod start, so the pod is started after the change."""
    with pod_started_with(
        mesh, "connection-settings", "{connectionSettings: {globalDownstreamConnectionLimit: 7}}"
    ):
        dump = config_dump(mesh, "connection-settings", "connection-settings")
        # A pod that was running before keeps the bootstrap it started with (Istio's too).
        older = config_dump(mesh, "a")
    assert connection_limit(dump) == 7
    assert connection_limit(older) == 2147483647


def test_proxy_stats_matcher_keeps_the_stats_it_names_for_pods_started_with_it(mesh: MeshProcess) -> None:
    """Istio's stats inclusion list in a real Envoy: a sidecar keeps istio-agent's required stats
    (server, cluster_manager, the xds-grpc cluster) and turns its outbound clusters' counters into null
    stats, which /stats and /stats/prometheus then leave out; MeshConfig defaultConfig.proxyStatsMatcher
    brings back the ones it names, for pods started with it (a bootstrap setting, as istio-agent's)."""
    cluster = "cluster.outbound|80||b.default.svc.cluster.local"

    def envoy_stats(workload: str, namespace: str = "default") -> dict[str, str]:
        p = mesh.proxy(workload, namespace=namespace)
        with _NO_PROXY.open(f"http://{p['ip']}:{p['adminPort']}/stats", timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        return dict(ln.split(": ", 1) for ln in lines if ": " in ln)

    with pod_started_with(
        mesh, "stats-kept", "{proxyStatsMatcher: {inclusionSuffixes: [upstream_rq_total]}}"
    ):
        for who, ns in (("stats-kept", "stats-kept"), ("a", "default")):
            resp = mesh.curl(who, "http://b.default/", namespace=ns)
            assert resp.status == 200, resp
        kept, default = envoy_stats("stats-kept", "stats-kept"), envoy_stats("a")
        p = mesh.proxy("a")
        with _NO_PROXY.open(f"http://{p['ip']}:15090/stats/prometheus", timeout=10) as resp:
            prometheus = resp.read().decode()
    assert int(kept[f"{cluster}.upstream_rq_total"]) >= 1
    assert f"{cluster}.upstream_rq_completed" not in kept  # only what it names
    # The pod started before the change keeps istio-agent's list only.
    assert not any(name.startswith(cluster) for name in default), sorted(default)[:20]
    assert "server.live" in default and "cluster_manager.active_clusters" in default
    assert "cluster.xds-grpc.upstream_rq_total" in default
    assert "envoy_server_live" in prometheus and "envoy_cluster_upstream_rq_total{" in prometheus
    assert 'cluster_name="outbound|80||b.default.svc.cluster.local"' not in prometheus


def connection_limit(dump: dict[str, Any]) -> int:
    """The bootstrap's overload manager limit on downstream connections."""
    bootstrap = dump_section(dump, "BootstrapConfigDump")["bootstrap"]
    monitors = {
        m["name"]: m["typed_config"]
        for m in bootstrap.get("overload_manager", {}).get("resource_monitors", [])
    }
    limit = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    return int(limit["max_active_downstream_connections"])


# --- external_svc_test.go --------------------------------------------------------------------------

FAKE_EXTERNAL = "fake.external.com"


@pytest.fixture(scope="module")
def fake_external(mesh: MeshProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[t.Pem]:
    """fake.external.com's HTTPS server, on the external pod's address (port 8443): the CA that signed it."""
    ca = t.make_ca("fake external root")
    with t.TlsServer(
        ip_of(mesh, "external"), 8443, t.issue(ca, [FAKE_EXTERNAL]), tmp_path_factory.mktemp("fake-ext")
    ):
        yield ca


def tunnel_https(mesh: MeshProcess, frm: str, target: str, sni: str, ca: t.Pem) -> tuple[int, dict | None]:
    """An HTTPS GET by the app itself, tunnelled through its sidecar (CONNECT, then TLS inside): the
    CONNECT status and the server's JSON answer (None when there was no tunnel)."""
    p = mesh.proxy(frm)
    with socket.create_connection((p["ip"], p["outboundPort"]), timeout=10) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = t.read_head(raw)
        status = int(head.split(b" ", 2)[1]) if head else 0
        if status != 200:
            return status, None
        ctx = ssl.create_default_context(cadata=ca.cert.decode())
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return status, json.loads(data.partition(b"\r\n\r\n")[2])


def test_external_service_reachability(mesh: MeshProcess, fake_external: t.Pem) -> None:
    """TestExternalService: with a Sidecar giving app a REGISTRY_ONLY, a reaches fake.external.com:443
    (HTTPS, a ServiceEntry) but not an unknown HTTP destination (502 from its sidecar), which b, left
    with the mesh's PASS_THROUGH (ALLOW_ANY), reaches. Istio's unknown host is example.com; here it is the
    address of a pod without a sidecar that no Service selects, and fake.external.com's endpoint is that
    pod too (its HTTPS server); the app's HTTPS goes through a CONNECT tunnel."""
    external = ip_of(mesh, "external")
    config = f"""
    apiVersion: networking.istio.io/v1alpha3
    kind: Sidecar
    metadata: {{name: restrict-external-service}}
    spec:
      workloadSelector: {{labels: {{app: a}}}}
      outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
    ---
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: fake-external}}
    spec:
      hosts: [{FAKE_EXTERNAL}]
      location: MESH_EXTERNAL
      ports: [{{number: 443, name: https, protocol: HTTPS}}]
      resolution: DNS
      endpoints: [{{address: {external}, ports: {{https: 8443}}}}]
    """
    unknown = f"http://{external}:8080/"
    with applied(mesh, config):
        allowed = tunnel_https(mesh, "a", f"{FAKE_EXTERNAL}:443", FAKE_EXTERNAL, fake_external)
        blocked = mesh.curl("a", unknown, timeout=10)
        passthrough = mesh.curl("b", unknown, timeout=10)
    assert allowed[0] == 200 and allowed[1] is not None and allowed[1]["sni"] == FAKE_EXTERNAL, allowed
    assert blocked.status == 502 and b"workload" not in blocked.body, (blocked.status, blocked.text)
    assert echo_body(passthrough)["workload"] == "external"


# --- fqdn_test.go ----------------------------------------------------------------------------------


def test_absolute_fqdn_with_trailing_dot(mesh: MeshProcess) -> None:
    """TestAbsoluteFQDNWithTrailingDot 'FQDN with trailing dot', 'with port', 'service disambiguation':
    `b.default.svc.cluster.local.` (and with `:80`) reaches b, and the same form for c reaches c."""
    for host, workload in [
        ("b.default.svc.cluster.local.", "b"),
        ("b.default.svc.cluster.local.:80", "b"),
        ("c.default.svc.cluster.local.", "c"),
    ]:
        resp = mesh.curl("a", "http://b/", headers=[("Host", host)], timeout=10)
        assert resp.status == 200, (host, resp.status, resp.text)
        assert echo_body(resp)["workload"] == workload, host


# --- label_test.go, common/labels.go ---------------------------------------------------------------


def test_subset_routing_follows_label_changes(mesh: MeshProcess) -> None:
    """TestLabelChanges: a route to subset `subset: my-subset` has no endpoint ('no healthy upstream')
    until the workload gets that label, then it succeeds. Istio relabels the running pod; an Isthmus
    Workload's labels change by applying it again (its pod is replaced, as a Deployment's would be).
    The label stays for the rest of the module, where nothing else calls lbl."""
    routing = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: lbl}
    spec:
      hosts: [lbl]
      http:
      - route: [{destination: {host: lbl, subset: my-subset}}]
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: lbl}
    spec:
      host: lbl
      subsets:
      - name: my-subset
        labels: {subset: my-subset}
    """
    relabelled = """
    apiVersion: isthmus.dev/v1alpha1
    kind: Workload
    metadata: {name: lbl, labels: {app: lbl, version: v1, subset: my-subset}}
    spec: {ports: [8080], command: [isthmus, echo]}
    """
    with applied(mesh, routing):
        before = mesh.curl("b", "http://lbl/", timeout=10)
        mesh.apply(doc(relabelled))

        def ok() -> Response | None:
            resp = mesh.curl("b", "http://lbl/", timeout=10)
            return resp if resp.status == 200 else None

        after = wait_for("the relabelled workload to serve the subset", ok, timeout=30)
    assert before.status == 503 and b"no healthy upstream" in before.body, (before.status, before.text)
    assert echo_body(after)["labels"].get("subset") == "my-subset"


# --- failover_test.go, locality/* ------------------------------------------------------------------

LOCALITY_VS_RETRIES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}-route}}
spec:
  hosts: [{host}]
  http:
  - route: [{{destination: {{host: {host}}}}}]
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "gateway-error,connect-failure,refused-stream"}}
"""
OUTLIER = "{interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}"


def locality_config(
    name: str, host: str, resolution: str, endpoints: list[tuple[str, str | None]], lb: str | None
) -> str:
    """locality/main_test.go's deploymentYAML plus one of its DestinationRules: a MESH_EXTERNAL
    ServiceEntry whose endpoints (pod addresses, on the pods' target port) carry the given localities,
    a VirtualService with retries, and a DestinationRule with outlier detection and `lb` (YAML)."""
    eps = "\n".join(
        f"  - {{address: {addr}, ports: {{http: 8080}}"
        + (f", locality: {loc}" if loc is not None else "")
        + "}"
        for addr, loc in endpoints
    )
    load_balancer = f"\n    loadBalancer: {lb}" if lb else ""
    return (
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{host}]
  exportTo: ["."]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  location: MESH_EXTERNAL
  endpoints:
{eps}
---
"""
        + LOCALITY_VS_RETRIES.format(name=name, host=host)
        + f"""
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}-destination}}
spec:
  host: {host}
  trafficPolicy:
    outlierDetection: {OUTLIER}{load_balancer}
"""
    )


def served(mesh: MeshProcess, host: str, n: int) -> dict[str, int]:
    result = mesh.load("a", f"http://{host}/", n, concurrency=4)
    assert result.codes == {"200": n}, (result.codes, result.errors)
    return result.served_by


def settle_on(mesh: MeshProcess, host: str, workload: str, streak: int = 20, timeout: float = 20) -> None:
    """Until `streak` requests in a row are answered by `workload` (bounded): ejections and failover
    take a few failed attempts to happen."""
    run: list[str] = []

    def settled() -> bool:
        resp = mesh.curl("a", f"http://{host}/", timeout=10)
        who = resp.json_or_none() or {}
        run.append(who.get("workload", str(resp.status)) if resp.status == 200 else str(resp.status))
        return len(run) >= streak and set(run[-streak:]) == {workload}

    wait_for(f"{host} to settle on {workload}", settled, timeout=timeout)


FAILOVER = "{simple: ROUND_ROBIN, localityLbSetting: {failover: [{from: region, to: closeregion}]}}"


def test_locality_failover_to_the_named_region_eds(mesh: MeshProcess) -> None:
    """failover_test.go / locality TestFailover 'EDS': `failover: from region to closeregion`. The
    endpoint in the client's own locality does not exist: outlier detection ejects it, and traffic goes
    to closeregion (b), never to notcloseregion (c)."""
    host = "fake-eds-failover.example.com"
    endpoints = [
        (unused_ip(mesh), "region/zone/subzone"),
        (ip_of(mesh, "b"), "closeregion/zone/subzone"),
        (ip_of(mesh, "c"), "notcloseregion/zone/subzone"),
    ]
    with applied(mesh, locality_config("failover-eds", host, "STATIC", endpoints, FAILOVER)):
        settle_on(mesh, host, "b")
        assert served(mesh, host, 50) == {"b": 50}


def test_locality_failover_to_the_named_region_cds(mesh: MeshProcess) -> None:
    """failover_test.go / locality TestFailover 'CDS' (resolution DNS, endpoints in the cluster itself):
    no endpoint in the client's locality (Istio's name there does not resolve; here there is none), so
    traffic goes to closeregion (b) rather than notcloseregion (c)."""
    host = "fake-cds-failover.example.com"
    endpoints = [
        (ip_of(mesh, "b"), "closeregion/zone/subzone"),
        (ip_of(mesh, "c"), "notcloseregion/zone/subzone"),
    ]
    with applied(mesh, locality_config("failover-cds", host, "DNS", endpoints, FAILOVER)):
        assert served(mesh, host, 50) == {"b": 50}


@pytest.mark.parametrize("resolution", ["STATIC", "DNS"], ids=["eds", "cds"])
def test_locality_prioritized(mesh: MeshProcess, resolution: str) -> None:
    """locality TestPrioritized 'EDS' / 'CDS': with outlier detection, the endpoint in the client's own
    locality (b, region/zone/subzone) gets everything, the remote one (c) nothing."""
    host = f"fake-{resolution.lower()}-prioritized.example.com"
    endpoints = [
        (ip_of(mesh, "b"), "region/zone/subzone"),
        (ip_of(mesh, "c"), "notregion/notzone/notsubzone"),
    ]
    with applied(
        mesh, locality_config(f"prioritized-{resolution.lower()}", host, resolution, endpoints, None)
    ):
        assert served(mesh, host, 50) == {"b": 50}


def test_locality_distribute_and_disabled(mesh: MeshProcess) -> None:
    """locality TestDistribute: `distribute: from region, to {notregion: 80, region: 20}` splits 20/80
    between b (region) and c (notregion), and an endpoint with no locality (no `to` names it) gets
    nothing; then with `localityLbSetting.enabled: false` the client (no locality), b and c share evenly.
    Istio allows ±3 of 50; the bounds here (100 requests) are wide enough never to flake."""
    host = "fake-eds-distribute.example.com"
    distribute = "{simple: ROUND_ROBIN, localityLbSetting: {distribute: [{from: region, to: {notregion: 80, region: 20}}]}}"
    weighted = [
        (unused_ip(mesh), ""),
        (ip_of(mesh, "b"), "region/zone/subzone"),
        (ip_of(mesh, "c"), "notregion/notzone/notsubzone"),
    ]
    with applied(mesh, locality_config("distribute-eds", host, "STATIC", weighted, distribute)):
        split = served(mesh, host, 100)
    assert set(split) <= {"b", "c"} and 5 <= split.get("b", 0) <= 40, split
    even = [
        (ip_of(mesh, "a"), ""),
        (ip_of(mesh, "b"), "region/zone/subzone"),
        (ip_of(mesh, "c"), "notregion/notzone/notsubzone"),
    ]
    disabled = "{simple: ROUND_ROBIN, localityLbSetting: {enabled: false}}"
    with applied(mesh, locality_config("distribute-eds", host, "STATIC", even, disabled)):
        spread = served(mesh, host, 90)
    assert set(spread) == {"a", "b", "c"} and min(spread.values()) > 12, spread


# --- circuitbreakers/main_test.go ------------------------------------------------------------------


def test_outbound_clusters_have_the_default_circuit_breakers(mesh: MeshProcess) -> None:
    """TestCircuitBreakers: every outbound cluster (the ServiceEntry's mymongodb.somedomain among them)
    has istiod's default thresholds: max connections, pending requests, requests and retries all
    2^32-1. Read from the client sidecar's config dump (Istio reads the CDS response). The entry's
    endpoint is an unused loopback address (Istio's DNS name would be resolved outside the mesh)."""
    se = f"""
    apiVersion: networking.istio.io/v1alpha3
    kind: ServiceEntry
    metadata: {{name: external-svc-mongocluster}}
    spec:
      hosts: [mymongodb.somedomain]
      location: MESH_EXTERNAL
      ports: [{{number: 80, name: http, protocol: HTTP}}]
      resolution: STATIC
      endpoints: [{{address: {unused_ip(mesh)}}}]
    """
    with applied(mesh, se):

        def with_entry() -> list[dict[str, Any]] | None:
            clusters = dynamic_clusters(config_dump(mesh, "a"))
            names = {c["name"] for c in clusters}
            return clusters if "outbound|80||mymongodb.somedomain" in names else None

        clusters = wait_for("the ServiceEntry's cluster", with_entry)
    outbound = [c for c in clusters if c["name"].startswith("outbound|")]
    assert len(outbound) >= 4, [c["name"] for c in outbound]
    want = {
        "max_connections": UINT32_MAX,
        "max_pending_requests": UINT32_MAX,
        "max_requests": UINT32_MAX,
        "max_retries": UINT32_MAX,
    }
    for c in outbound:
        thresholds = c.get("circuit_breakers", {}).get("thresholds", [])
        assert thresholds, c["name"]
        for th in thresholds:
            assert {k: th.get(k) for k in want} == want, (c["name"], th)


# --- common/loadbalancer.go ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "remote",
    ["region/zone2/subzone", "notregion/notzone/notsubzone"],
    ids=["two-zones-matching-source-zones", "cross-region-endpoint-not-ignored"],
)
def test_without_zone_aware_or_outlier_detection_localities_do_not_matter(
    mesh: MeshProcess, remote: str
) -> None:
    """RunZoneAwareLBTests 'ZoneAwareDisabledTwoSourceZonesTwoDestinationEndpointsMatchingSourceZones' and
    'ZoneAwareDisabledCrossRegionEndpointNotIgnored': a DestinationRule with neither zoneAwareLbSetting
    nor outlier detection (only a connect timeout) leaves locality load balancing off, so b (the client's
    locality) and c (another zone, or another region) share the traffic evenly. Istio's WorkloadEntries
    are the ServiceEntry's endpoints here; its caller's own endpoints (local_cluster) play no part."""
    host = "zone-aware-disabled.example.com"
    config = f"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {{name: zone-aware-svc}}
    spec:
      hosts: ["{host}"]
      ports: [{{name: http, number: 80, protocol: HTTP}}]
      resolution: STATIC
      endpoints:
      - {{address: {ip_of(mesh, "b")}, ports: {{http: 8080}}, locality: region/zone/subzone}}
      - {{address: {ip_of(mesh, "c")}, ports: {{http: 8080}}, locality: {remote}}}
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {{name: zone-aware-dr}}
    spec:
      host: "{host}"
      trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: 250ms}}}}}}
    """
    with applied(mesh, config):
        split = served(mesh, host, 60)
    assert set(split) == {"b", "c"} and min(split.values()) > 15, split


# --- ingress_test.go -------------------------------------------------------------------------------


def custom_gateway(namespace: str) -> tuple[str, str]:
    """TestCustomGateway's resources: (the gateway and its routing, the gateway's Service). The
    Deployment with the gateway injection template is an Isthmus gateway Workload."""
    gateway = f"""
    apiVersion: isthmus.dev/v1alpha1
    kind: Workload
    metadata: {{name: custom-gateway, namespace: {namespace}, labels: {{istio: custom}}}}
    spec: {{gateway: true}}
    ---
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: app, namespace: {namespace}}}
    spec:
      selector: {{istio: custom}}
      servers:
      - port: {{number: 80, name: http, protocol: HTTP}}
        hosts: ["*"]
    ---
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: app, namespace: {namespace}}}
    spec:
      hosts: ["*"]
      gateways: [app]
      http:
      - route: [{{destination: {{host: a.default.svc.cluster.local, port: {{number: 80}}}}}}]
    """
    service = f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: custom-gateway, namespace: {namespace}, labels: {{istio: custom}}}}
    spec:
      selector: {{istio: custom}}
      ports: [{{name: http, port: 80, targetPort: 8080}}]
    """
    return gateway, service


def through_custom_gateway(mesh: MeshProcess, namespace: str) -> dict[str, Any]:
    url = f"http://custom-gateway.{namespace}.svc.cluster.local/"

    def ok() -> Response | None:
        resp = mesh.curl("b", url, timeout=10)
        return resp if resp.status == 200 else None

    return echo_body(wait_for(f"{url} to answer", ok, timeout=30))


def test_custom_gateway_minimal(mesh: MeshProcess) -> None:
    """TestCustomGateway 'minimal': a gateway deployment of one's own (labels istio: custom), its
    Service (80 -> 8080), a Gateway for "*" and a VirtualService to a: b reaches a through it by the
    gateway Service's name."""
    gateway, service = custom_gateway("custom-gateway-minimal")
    with applied(mesh, gateway, service):
        assert through_custom_gateway(mesh, "custom-gateway-minimal")["workload"] == "a"


def test_custom_gateway_service_created_after_the_gateway(mesh: MeshProcess) -> None:
    """TestCustomGateway 'minimal-delay-create-gateway-svc': the gateway's Service comes after its pod
    is running; the gateway then serves the Service's target port, and b reaches a through it."""
    ns = "custom-gateway-delay"
    gateway, service = custom_gateway(ns)
    with applied(mesh, gateway):
        wait_for(
            "the custom gateway to run",
            lambda: any(
                i["workload"] == "custom-gateway" and i["namespace"] == ns and i.get("state") == "Running"
                for i in mesh.status()["instances"]
            ),
            timeout=30,
        )
        with applied(mesh, service):
            assert through_custom_gateway(mesh, ns)["workload"] == "a"


def test_kubernetes_ingress(mesh: MeshProcess) -> None:
    """TestIngress 'http': an Ingress of class istio-test routes /test on the ingress gateway to b."""
    ingress = """
    apiVersion: networking.k8s.io/v1
    kind: IngressClass
    metadata: {name: istio-test}
    spec: {controller: istio.io/ingress-controller}
    ---
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: ingress}
    spec:
      ingressClassName: istio-test
      rules:
      - http:
          paths:
          - backend: {service: {name: b, port: {number: 80}}}
            path: /test
            pathType: Prefix
    """
    with applied(mesh, ingress):
        resp = sync.request(
            f"http://{mesh.gateway_address(80)}/test", headers=[("Host", "server")], timeout=10
        )
        assert echo_body(resp)["workload"] == "b"
