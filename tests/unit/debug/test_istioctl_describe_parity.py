"""`describe` against istioctl's describe_test.go (TestDescribe) and describe.go's wording."""

from __future__ import annotations

from debug_helpers import DR_SUBSETS, snapshot

from isthmus.debug.describe import describe, render_text

PRODUCTPAGE_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {prefix: /prefix}}]
    route:
    - {destination: {host: echo}, weight: 30}
    - {destination: {host: echo2}, weight: 20}
    - {destination: {host: echo3}, weight: 50}
"""

DR_V9 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v9, labels: {version: v9}}]
"""


def _text(*docs: str, kind: str = "service", name: str = "echo") -> str:
    snap, _ = snapshot(*docs)
    return render_text(describe(snap, kind, name))


def test_service_vs_to_multiple_hosts_and_no_matching_subset() -> None:
    # TestDescribe "vs route to multiple hosts": the DR with no matching subset, and every weighted route.
    text = _text(DR_V9, PRODUCTPAGE_VS)
    assert 'DestinationRule: echo for "echo"' in text
    assert "      WARNING POD DOES NOT MATCH ANY SUBSETS.  (Non matching subsets v9)\n" in text
    assert "      Matching subsets: \n" in text and "         (Non-matching subsets v9)\n" in text
    assert "      No Traffic Policy\n" in text
    assert "   VirtualService: bookinfo\n" in text
    for fact in (
        'Route to host "echo" with weight 30%',
        'Route to host "echo2" with weight 20%',
        'Route to host "echo3" with weight 50%',
        "Match: /prefix*",
    ):
        assert f"      {fact}\n" in text


def test_service_single_port_layout_and_traffic_policy() -> None:
    # TestDescribe "have traffic policy": TLS mode, the short policy list, port level settings.
    dr = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: echo, namespace: default}
    spec:
      host: echo
      subsets: [{name: v1, labels: {version: v1}}]
      trafficPolicy:
        loadBalancer: {simple: LEAST_REQUEST}
        connectionPool: {tcp: {maxConnections: 10}}
        outlierDetection: {minHealthPercent: 10}
        tls: {mode: ISTIO_MUTUAL}
        portLevelSettings:
        - port: {number: 8080}
          loadBalancer: {simple: LEAST_REQUEST}
          tls: {mode: DISABLE}
          connectionPool: {tcp: {maxConnections: 10}}
          outlierDetection: {minHealthPercent: 10}
    """
    text = _text(dr)
    assert "Traffic Policy TLS Mode: ISTIO_MUTUAL\n" in text
    assert "Policies: load balancer/connection pool/outlier detection\n" in text
    assert "Port Level Settings:\n    8080:\n" in text
    assert "TLS Mode: DISABLE\n" in text


def test_pod_header_ports_subsets_and_peer_authentication() -> None:
    pa = """
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {name: strict, namespace: default}
    spec:
      selector: {matchLabels: {app: echo}}
      mtls: {mode: STRICT}
      portLevelMtls: {"9090": {mode: DISABLE}}
    """
    text = _text(DR_SUBSETS, pa, kind="pod", name="echo-v2-0")
    lines = text.splitlines()
    assert lines[:4] == [
        "Pod: echo-v2-0",
        "   Pod Revision: default",
        "   Pod Ports: 8080 (echo), 9090 (echo)",
        "--------------------",
    ]
    assert "Service: echo" in lines
    assert "   Port: http 80/HTTP targets pod port 8080" in lines
    assert "80:" in lines and "9090:" in lines  # several ports: each DR/VS under its port
    assert "      Matching subsets: v2" in lines and "         (Non-matching subsets v1,v3)" in lines
    i = lines.index("Effective PeerAuthentication:")
    assert lines[i - 1] == "--------------------"
    assert lines[i + 1 : i + 6] == [
        "   Workload mTLS mode: STRICT",
        "   Port Level mTLS mode:",
        "      9090: DISABLE",
        "Applied PeerAuthentication:",
        "   strict.default",
    ]


def test_pod_default_peer_authentication_is_permissive() -> None:
    text = _text(kind="pod", name="client-0")
    assert "Effective PeerAuthentication:\n   Workload mTLS mode: PERMISSIVE\n" in text
    assert "Applied PeerAuthentication:" not in text


def test_vs_to_subset_not_matching_pod() -> None:
    # printVirtualService: no rule reaches this pod's subsets.
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http: [{route: [{destination: {host: echo, subset: v1}}]}]
    """
    text = _text(DR_SUBSETS, vs, kind="pod", name="echo-v2-0")
    assert "WARNING: No destinations match pod subsets (checked 1 HTTP routes)" in text
    assert "Route to non-matching subset v1 for (everything)" in text


def test_vs_to_missing_subset_and_without_destination_rule() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http: [{route: [{destination: {host: echo, subset: nosuch}}]}]
    """
    assert "Warning: Route to UNKNOWN subset nosuch; check DestinationRule echo" in _text(
        DR_SUBSETS, vs, kind="pod", name="echo-v2-0"
    )
    assert "Warning: Route to subset nosuch but NO DESTINATION RULE defining subsets!" in _text(
        vs, kind="pod", name="echo-v2-0"
    )


def test_vs_catch_all_without_weight_counts_http_routes() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo, namespace: default}
    spec:
      hosts: [echo]
      http: [{route: [{destination: {host: echo}}]}]
    """
    assert "VirtualService: echo\n      1 HTTP route(s)\n" in _text(vs, kind="pod", name="echo-v2-0")


def test_exposed_on_ingress_gateway() -> None:
    vs = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: echo-gw, namespace: default}
    spec:
      hosts: [a.example.com]
      gateways: [gw]
      http: [{match: [{uri: {prefix: /echo}}], route: [{destination: {host: echo}}]}]
    """
    text = _text(vs, kind="pod", name="echo-v1-0")
    assert (
        "--------------------\nExposed on Ingress Gateway http://127.9.0.8\nVirtualService: echo-gw\n" in text
    )
    assert "   Match: /echo*\n" in text


def test_rbac_policies_line() -> None:
    ap = """
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {name: allow-get, namespace: default}
    spec:
      selector: {matchLabels: {app: echo}}
      rules: [{to: [{operation: {methods: [GET]}}]}]
    """
    assert "80 RBAC policies: ns[default]-policy[allow-get]-rule[0]\n" in _text(
        ap, kind="pod", name="echo-v1-0"
    )


def test_pod_without_sidecar_and_errors() -> None:
    text = _text(kind="pod", name="istio-ingressgateway-0")
    assert text.startswith("Pod: istio-ingressgateway-0.istio-system\n")  # kname: name.namespace
    snap, _ = snapshot()
    data = describe(snap, "pod", "echo-v1-0")
    assert "==================== Isthmus details" in render_text(data, details=True)
    assert "Isthmus details" not in render_text(data)


def test_names_are_qualified_outside_the_describe_namespace() -> None:
    """istioctl's kname uses describeNamespace (-n, else the context's `default`) for every object, and
    `describe svc NAME.NAMESPACE` is accepted (tests/integration/pilot istioctl_test.go TestDescribe
    describes `a.<echo ns>` with --namespace=dummy and expects `Service: a.<ns>`, `DestinationRule: a.<ns>`)."""
    from isthmus.debug.describe import find_service, istioctl_service_lines

    snap, _ = snapshot(DR_V9)
    svc = find_service(snap, "echo.default", None)
    pods = [p for p in snap.registry.pods.values() if p.labels.get("app") == "echo"]
    here = istioctl_service_lines(snap, svc, pods, "default")
    assert "Service: echo" in here
    assert any(line.strip() == 'DestinationRule: echo for "echo"' for line in here), here
    elsewhere = istioctl_service_lines(snap, svc, pods, "dummy")
    assert "Service: echo.default" in elsewhere, elsewhere
    assert any(line.strip() == 'DestinationRule: echo.default for "echo"' for line in elsewhere), elsewhere
