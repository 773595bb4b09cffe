"""Each analyzer on realistic config (the bookinfo example plus the mistake), with a positive case (the
message is reported) and a negative one (the corrected config reports nothing of that code)."""

from __future__ import annotations

import base64
import datetime

import pytest

from isthmus.analyze.messages import Message


def codes(messages: list[Message], code: str) -> list[Message]:
    return [m for m in messages if m.code == code]


def refs(messages: list[Message], code: str) -> set[str]:
    return {m.resource for m in messages if m.code == code}


def test_bookinfo_is_clean(analyze_yaml):
    assert analyze_yaml("") == []


# --- IST0101 ReferencedResourceNotFound ---------------------------------------------------------------

VS_REVIEWS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: {host}, subset: {subset}}}
"""


def test_ist0101_destination_host(analyze_yaml):
    msgs = analyze_yaml(VS_REVIEWS.format(host="reviewz", subset="v1"))
    (m,) = [m for m in codes(msgs, "IST0101") if "host not found" in m.message]
    assert m.message == 'Referenced host not found: "reviewz"'
    assert m.resource == "VirtualService default/reviews"
    assert m.origin == "test.yaml:9"  # the destination's line
    assert (
        str(m)
        == 'Error [IST0101] (VirtualService default/reviews test.yaml:9) Referenced host not found: "reviewz"'
    )
    assert not codes(analyze_yaml(VS_REVIEWS.format(host="reviews", subset="v1")), "IST0101")


def test_ist0101_subset(analyze_yaml):
    msgs = analyze_yaml(VS_REVIEWS.format(host="reviews", subset="v4"))
    assert [m.message for m in codes(msgs, "IST0101")] == [
        'Referenced host+subset in destinationrule not found: "reviews+v4"'
    ]
    assert not codes(analyze_yaml(VS_REVIEWS.format(host="reviews", subset="v3")), "IST0101")


def test_ist0101_gateway(analyze_yaml):
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress-ratings}
spec:
  hosts: ["*"]
  gateways: [%s]
  http:
  - route:
    - destination: {host: ratings}
"""
    msgs = analyze_yaml(vs % "bookinfo-gw")
    assert [m.message for m in codes(msgs, "IST0101")] == ['Referenced gateway not found: "bookinfo-gw"']
    assert not codes(analyze_yaml(vs % "bookinfo-gateway"), "IST0101")


def _cert_pem(days_valid: int = 30) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bookinfo.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days_valid))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(pem).decode(), base64.b64encode(key_pem).decode()


HTTPS_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-https}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
    hosts: [bookinfo.example.com]
"""


def _secret(crt: str, key: str) -> str:
    return f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: bookinfo-cert, namespace: istio-system}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
"""


def test_ist0101_gateway_credential_and_ist0161(analyze_yaml):
    missing = analyze_yaml(HTTPS_GATEWAY)
    assert [m.message for m in codes(missing, "IST0101")] == [
        'Referenced credentialName not found: "bookinfo-cert"'
    ]
    crt, key = _cert_pem()
    good = analyze_yaml(HTTPS_GATEWAY + _secret(crt, key))
    assert not codes(good, "IST0101") and not codes(good, "IST0161")
    expired_crt, expired_key = _cert_pem(days_valid=-1)
    bad = analyze_yaml(HTTPS_GATEWAY + _secret(expired_crt, expired_key))
    (m,) = codes(bad, "IST0161")
    assert m.message == (
        "The credential referenced by the Gateway bookinfo-https in namespace istio-system is invalid, "
        "which can cause the traffic not to work as expected."
    )
    junk = analyze_yaml(HTTPS_GATEWAY + _secret("aHVzaAo=", "aHVzaAo="))
    assert refs(junk, "IST0161") == {"Gateway default/bookinfo-https"}


def test_ist0101_destination_rule_credential(analyze_yaml):
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-tls}
spec:
  host: ratings
  workloadSelector: {matchLabels: {app: reviews}}
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: ratings-client}
"""
    assert [m.message for m in codes(analyze_yaml(dr), "IST0101")] == [
        'Referenced credentialName not found: "ratings-client"'
    ]
    crt, key = _cert_pem()
    secret = f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: ratings-client}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}, ca.crt: {crt}}}
"""
    assert not codes(analyze_yaml(dr + secret), "IST0101")


def test_ist0101_sidecar_egress_hosts(analyze_yaml):
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - hosts: ["./ratings.default.svc.cluster.local", "istio-system/*", "./%s"]
"""
    msgs = analyze_yaml(sidecar % "ratingz.default.svc.cluster.local")
    assert [m.message for m in codes(msgs, "IST0101")] == [
        'Referenced egress host not found: "./ratingz.default.svc.cluster.local"'
    ]
    assert codes(msgs, "IST0101")[0].field == "spec.egress[0].hosts[2]"
    assert not codes(analyze_yaml(sidecar % "details.default.svc.cluster.local"), "IST0101")


def test_ist0101_sidecar_selector(analyze_yaml):
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews}
spec:
  workloadSelector: {labels: {app: %s}}
  egress:
  - hosts: ["./*"]
"""
    assert [m.message for m in codes(analyze_yaml(sidecar % "reveiws"), "IST0101")] == [
        'Referenced selector not found: "app=reveiws"'
    ]
    assert not codes(analyze_yaml(sidecar % "reviews"), "IST0101")


def test_ist0101_authorization_policy_namespace(analyze_yaml):
    ap = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-from-frontend}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - from:
    - source: {namespaces: [%s]}
"""
    assert [m.message for m in codes(analyze_yaml(ap % "frontend"), "IST0101")] == [
        'Referenced namespace not found: "frontend"'
    ]
    assert not codes(analyze_yaml(ap % "default"), "IST0101")
    assert not codes(analyze_yaml(ap % '"def*"'), "IST0101")


# --- IST0106 / IST0133 / IST0130 / IST0131 (schema) -----------------------------------------------------


def test_ist0106_schema_error_keeps_analyzing(analyze_yaml):
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    retries: {attempts: %d}
"""
    msgs = analyze_yaml(vs % -1)
    (m,) = codes(msgs, "IST0106")
    assert (
        m.message == "Schema validation error: attempts cannot be negative (at spec.http[0].retries.attempts)"
    )
    assert m.resource == "VirtualService default/reviews" and m.origin == "test.yaml:10"
    assert not codes(analyze_yaml(vs % 2), "IST0106")
    bad_field = analyze_yaml(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: x}\nspec: {host: reviews, sbusets: []}\n"
    )
    (m,) = codes(bad_field, "IST0106")
    assert m.message == 'Schema validation error: unknown field "sbusets" (at spec.sbusets)'
    assert m.origin == "test.yaml:4"


def test_ist0133_schema_warning(analyze_yaml):
    ap = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-ratings, namespace: %s}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules: [{}]
"""
    (m,) = codes(analyze_yaml(ap % "istio-system"), "IST0133")
    assert m.message.startswith("Schema validation warning: ")
    assert not codes(analyze_yaml(ap % "default"), "IST0133")


def test_ist0130_ist0131_duplicate_matches(analyze_yaml):
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{headers: {end-user: {exact: %s}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    msgs = analyze_yaml(vs % "jason")
    assert [m.message for m in codes(msgs, "IST0130")] == [
        "VirtualService rule #1 not used (all matches used by prior rules)."
    ]
    assert [m.message for m in codes(msgs, "IST0131")] == [
        "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)."
    ]
    assert codes(msgs, "IST0131")[0].level == "Info"
    clean = analyze_yaml(vs % "debbie")
    assert not codes(clean, "IST0130") and not codes(clean, "IST0131")


# --- VirtualService: IST0109, IST0112, IST0132 --------------------------------------------------------


def test_ist0109_conflicting_mesh_hosts(analyze_yaml):
    second = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-canary, namespace: %s}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: ["%s"]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
"""
    first = VS_REVIEWS.format(host="reviews", subset="v1") + "---\n"
    msgs = analyze_yaml(first + second % ("default", "*"))
    assert refs(msgs, "IST0109") == {
        "VirtualService default/reviews",
        "VirtualService default/reviews-canary",
    }
    assert codes(msgs, "IST0109")[0].message == (
        "The VirtualServices default/reviews,default/reviews-canary associated with mesh gateway define the "
        "same host */reviews.default.svc.cluster.local which can lead to undefined behavior. This can be "
        "fixed by merging the conflicting VirtualServices into a single resource."
    )
    # Bound to a gateway only, the second one no longer competes for the sidecars' virtual host.
    gateway_only = (second % ("default", "*")).replace("  http:", "  gateways: [bookinfo-gateway]\n  http:")
    assert not codes(analyze_yaml(first + gateway_only), "IST0109")


def test_ist0112_port_selector_required(analyze_yaml):
    svc = """
apiVersion: v1
kind: Service
metadata: {name: ratings-admin}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
"""
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-admin}
spec:
  hosts: [ratings-admin]
  http:
  - route: [{destination: {host: ratings-admin%s}}]
"""
    (m,) = codes(analyze_yaml(svc + vs % ""), "IST0112")
    assert m.message == (
        'This VirtualService routes to a service "ratings-admin" that exposes multiple ports [9080 9090]. '
        "Specifying a port in the destination is required to disambiguate."
    )
    assert not codes(analyze_yaml(svc + vs % ", port: {number: 9090}"), "IST0112")
    bogus = analyze_yaml(svc + vs % ", port: {number: 9091}")
    assert [m.message for m in codes(bogus, "IST0101")] == [
        'Referenced host:port not found: "ratings-admin:9091"'
    ]


def test_ist0132_host_not_in_gateway(analyze_yaml):
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: ["%s"]
  gateways: [shop]
  http:
  - route: [{destination: {host: productpage}}]
"""
    (m,) = codes(analyze_yaml(gw % "www.example.com"), "IST0132")
    assert m.message == (
        "one or more host [www.example.com] defined in VirtualService default/shop not found in Gateway default/shop."
    )
    assert not codes(analyze_yaml(gw % "shop.example.com"), "IST0132")


# --- Sidecars: IST0110, IST0111, IST0167 ---------------------------------------------------------------

SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %s, namespace: %s}
spec:
  %s
  egress:
  - hosts: ["./*"]
---
"""


def test_ist0110_conflicting_sidecar_selectors(analyze_yaml):
    text = SIDECAR % ("reviews", "default", "workloadSelector: {labels: {app: reviews}}")
    text += SIDECAR % ("reviews-v2", "default", "workloadSelector: {labels: {version: %s}}")
    msgs = analyze_yaml(text % "v2")
    assert refs(msgs, "IST0110") == {"Sidecar default/reviews", "Sidecar default/reviews-v2"}
    assert codes(msgs, "IST0110")[0].message == (
        'The Sidecars [reviews reviews-v2] in namespace "default" select the same workload pod "reviews-v2-0", '
        "which can lead to undefined behavior."
    )
    assert not codes(analyze_yaml(text % "v9"), "IST0110")


def test_ist0111_multiple_sidecars_without_selector(analyze_yaml):
    one = SIDECAR % ("default", "default", "")
    (m, _) = codes(analyze_yaml(one + SIDECAR % ("default-2", "default", "")), "IST0111")
    assert m.message == (
        'The Sidecars [default default-2] in namespace "default" have no workload selector, which can lead to '
        "undefined behavior."
    )
    assert not codes(analyze_yaml(one + SIDECAR % ("default", "istio-system", "")), "IST0111")


def test_ist0167_sidecar_in_ambient_namespace(analyze_yaml):
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh-lite, labels: {%s}}\n---\n"
    sidecar = SIDECAR % ("default", "mesh-lite", "")
    (m,) = codes(analyze_yaml(ns % "istio.io/dataplane-mode: ambient" + sidecar), "IST0167")
    assert m.message == "The policy has no impact: namespace is in ambient mode, the policy has no impact."
    assert not codes(analyze_yaml(ns % "istio-injection: enabled" + sidecar), "IST0167")


# --- Services and workloads: IST0118, IST0137 --------------------------------------------------------


def test_ist0118_port_name(analyze_yaml):
    svc = """
apiVersion: v1
kind: Service
metadata: {name: metrics}
spec:
  selector: {app: ratings}
  ports: [{%s port: 9100, targetPort: 9100}]
"""
    (m,) = codes(analyze_yaml(svc % ""), "IST0118")
    assert (
        m.message
        == "Port name  (port: 9100, targetPort: 9100) doesn't follow the naming convention of Istio port."
    )
    assert m.level == "Info"
    assert not codes(analyze_yaml(svc % "name: http-metrics,"), "IST0118")
    assert not codes(analyze_yaml(svc % "name: metrics, appProtocol: http,"), "IST0118")


def test_ist0137_conflicting_ports(analyze_yaml):
    svc = """
apiVersion: v1
kind: Service
metadata: {name: reviews-legacy}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: %d, targetPort: 9080}]
"""
    msgs = codes(analyze_yaml(svc % 8080), "IST0137")
    assert {m.resource for m in msgs} == {f"Workload default/reviews-{v}" for v in ("v1", "v2", "v3")}
    assert msgs[0].message == (
        "This deployment reviews-v1 is associated with multiple services [default/reviews default/reviews-legacy] "
        'using targetPort "9080" but different ports: [9080 8080].'
    )
    assert not codes(analyze_yaml(svc % 9080), "IST0137")


def test_ist0116_deployment_protocols(analyze_yaml):
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: api, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api-raw}
spec:
  selector: {app: api}
  ports: [{name: %s, port: 8080}]
"""
    (m,) = codes(analyze_yaml(text % "tcp"), "IST0116")
    assert m.message == (
        "This deployment api is associated with multiple services using port 8080 but different protocols: "
        "[default/api default/api-raw]"
    )
    assert not codes(analyze_yaml(text % "http-raw"), "IST0116")


# --- Security: IST0127 ---------------------------------------------------------------------------------


def test_ist0127_no_matching_workloads(analyze_yaml):
    ap = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-viewer}
spec:
  selector: {matchLabels: {app: ratings, version: %s}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"""
    (m,) = codes(analyze_yaml(ap % "v2"), "IST0127")
    assert (
        m.message
        == "No matching workloads for this resource with the following labels: app=ratings,version=v2"
    )
    assert not codes(analyze_yaml(ap % "v1"), "IST0127")
    pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict}\n"
    pa += "spec: {selector: {matchLabels: {app: %s}}, mtls: {mode: STRICT}}\n"
    assert refs(analyze_yaml(pa % "ratingz"), "IST0127") == {"PeerAuthentication default/strict"}
    assert not codes(analyze_yaml(pa % "ratings"), "IST0127")


# --- DestinationRules: IST0128, IST0129, IST0173, IST0174 -------------------------------------------------


def test_ist0128_ist0129_no_ca(analyze_yaml):
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments}
spec:
  host: api.payments.example.com
  trafficPolicy:
    tls: {mode: SIMPLE%s}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: MUTUAL, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem%s}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [api.payments.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}, {number: 8443, name: https-mtls, protocol: HTTPS}]
  resolution: DNS
"""
    msgs = analyze_yaml(dr % ("", ""))
    (dest,) = codes(msgs, "IST0128")
    assert dest.message == (
        "DestinationRule default/payments in namespace default has TLS mode set to SIMPLE but no "
        "caCertificates are set to validate server identity for host: api.payments.example.com"
    )
    (port,) = codes(msgs, "IST0129")
    assert port.message.endswith("for host: api.payments.example.com at port number:8443")
    ca = ", caCertificates: /etc/ca.pem"
    clean = analyze_yaml(dr % (ca, ca))
    assert not codes(clean, "IST0128") and not codes(clean, "IST0129")


def test_ist0173_subset_selects_no_pods(analyze_yaml):
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: %s, labels: {version: %s}}
"""
    (m,) = codes(analyze_yaml(dr % ("v2", "v2")), "IST0173")
    assert m.message == (
        "The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
        "(NoHealthyUpstream)."
    )
    assert not codes(analyze_yaml(dr % ("v1-again", "v1")), "IST0173")


def test_ist0174_unknown_host(analyze_yaml):
    dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: %s}\n"
    (m,) = codes(analyze_yaml(dr % "reveiws"), "IST0174")
    assert (
        m.message
        == "The host reveiws defined in the DestinationRule does not match any services in the mesh."
    )
    assert m.level == "Warning"
    assert not codes(analyze_yaml(dr % "reviews"), "IST0174")
    assert not codes(analyze_yaml(dr % '"*.default.svc.cluster.local"'), "IST0174")


# --- Gateways: IST0145, IST0162 ----------------------------------------------------------------------


def test_ist0145_conflicting_gateways(analyze_yaml):
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["%s"]
"""
    msgs = codes(analyze_yaml(gw % "shop.example.com"), "IST0145")  # bookinfo-gateway serves "*" on 80
    (m,) = [m for m in msgs if m.resource == "Gateway default/shop"]
    assert m.message == (
        "Conflict with gateways default/bookinfo-gateway (workload selector istio=ingressgateway, port 80, "
        "hosts shop.example.com)."
    )
    assert refs(analyze_yaml(gw % "shop.example.com"), "IST0145") == {
        "Gateway default/shop",
        "Gateway default/bookinfo-gateway",
    }
    other = gw.replace("istio: ingressgateway", "app: shop-gateway")
    assert not codes(analyze_yaml(other % "shop.example.com"), "IST0145")


def test_ist0162_gateway_port_not_on_service(analyze_yaml):
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: admin}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: http-admin, protocol: HTTP}
    hosts: ["admin.example.com"]
"""
    (m,) = codes(analyze_yaml(gw % 9000), "IST0162")
    assert m.message.startswith("The gateway is listening on a target port (port 9000) that is not defined")
    assert "(Pod selector istio=ingressgateway)" in m.message
    assert not codes(analyze_yaml(gw % 443), "IST0162")
    assert not codes(analyze_yaml(gw % 8443), "IST0162")  # the target port of 443


def test_gateway_without_workload(analyze_yaml):
    gw = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    assert [m.message for m in codes(analyze_yaml(gw), "IST0101")] == [
        'Referenced selector not found: "istio=egressgateway"'
    ]


def test_default_ingress_gateway_is_implicit(analyze_yaml):
    # bookinfo's Gateway selects istio=ingressgateway with no workload of its own: `isthmus up` starts one.
    assert not codes(analyze_yaml(""), "IST0101")
    assert refs(analyze_yaml("", implicit_ingress=False), "IST0101") == {"Gateway default/bookinfo-gateway"}


# --- ServiceEntries: IST0134, IST0177 -------------------------------------------------------------------


def test_ist0134_addresses_required(analyze_yaml):
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: postgres}
spec:
  hosts: [db.example.com]
  %s
  ports: [{number: 5432, name: tcp-postgres, protocol: TCP}]
  resolution: DNS
"""
    (m,) = codes(analyze_yaml(se % ""), "IST0134")
    assert m.message == "ServiceEntry addresses are required for this protocol."
    assert not codes(analyze_yaml(se % "addresses: [10.10.0.5]"), "IST0134")


def test_ist0177_conflicting_protocols(analyze_yaml):
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: %s, protocol: %s}]
  resolution: DNS
---
"""
    text = se % ("api-tls", "tls", "TLS")
    (m, _) = codes(analyze_yaml(text + se % ("api-http", "http", "HTTP")), "IST0177")
    assert m.message == (
        'Multiple ServiceEntries (default/api-http, default/api-tls) define the same host "api.example.com" '
        "and port 443 with conflicting protocols (HTTP, TLS)."
    )
    assert not codes(analyze_yaml(text + se % ("api-tls-2", "tls-2", "TLS")), "IST0177")


# --- Isthmus' own -------------------------------------------------------------------------------------


def test_ism0001_subset_dr_not_visible(analyze_yaml):
    text = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: reviews}
spec:
  host: reviews.reviews.svc.cluster.local
  exportTo: ["%s"]
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: reviews-v2, namespace: reviews, labels: {app: reviews, version: v2}}
spec: {ports: [9080], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: frontend, labels: {app: frontend}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: reviews}
spec:
  hosts: [reviews.reviews.svc.cluster.local]
  http:
  - route: [{destination: {host: reviews.reviews.svc.cluster.local, subset: v2}}]
"""
    msgs = analyze_yaml(text % ".", bookinfo=False)
    (m,) = codes(msgs, "ISM0001")
    assert m.level == "Warning" and m.resource == "VirtualService reviews/reviews"
    assert (
        'Subset "v2" of host reviews.reviews.svc.cluster.local is defined in DestinationRule reviews/reviews'
        in m.message
    )
    assert "namespace(s) frontend (none applies there)" in m.message
    assert not codes(msgs, "IST0101")  # istioctl sees the subset and stays silent
    assert not codes(analyze_yaml(text % "*", bookinfo=False), "ISM0001")


def test_ism0001_more_specific_rule_hides_the_subset(analyze_yaml):
    # A DestinationRule in the caller's namespace wins over the service namespace's, even without subsets.
    hiding = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-timeouts, namespace: frontend}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 1s}}}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: frontend, labels: {app: frontend}}
spec: {ports: [8080], command: [isthmus, echo]}
---
"""
    msgs = analyze_yaml(hiding + VS_REVIEWS.format(host="reviews", subset="v2"))
    (m,) = codes(msgs, "ISM0001")
    assert "DestinationRule frontend/reviews-timeouts applies there" in m.message
    assert not codes(analyze_yaml(VS_REVIEWS.format(host="reviews", subset="v2")), "ISM0001")


def test_ism0002_query_params_with_uri_regex(analyze_yaml):
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http:
  - name: search
    match:
    - uri: {regex: '%s'}
      queryParams: {q: {prefix: book}}
    route: [{destination: {host: productpage}}]
"""
    (m,) = codes(analyze_yaml(vs % r"/search\?q=.*"), "ISM0002")
    assert m.message.startswith(
        'HTTP rule "search" match #0 combines queryParams with a uri regex containing'
    )
    assert m.field == "spec.http[0].match[0].uri.regex"
    assert not codes(analyze_yaml(vs % "/search/?"), "ISM0002")  # `?` as a quantifier is fine
    assert not codes(analyze_yaml(vs % "/search"), "ISM0002")


def test_ism0003_outlier_detection_never_ejects(analyze_yaml):
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-od}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s%s}
"""
    (m,) = codes(analyze_yaml(dr % ""), "ISM0003")  # 3 reviews pods, default maxEjectionPercent 10%
    assert m.message == (
        "outlierDetection for host reviews.default.svc.cluster.local can never eject a host: 3 endpoint(s) "
        "and maxEjectionPercent 10% allow less than one ejection. Set maxEjectionPercent to at least 34."
    )
    assert not codes(analyze_yaml(dr % ", maxEjectionPercent: 34"), "ISM0003")


def test_ism0004_retries_exceed_timeout(analyze_yaml):
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    timeout: 5s
    retries: {attempts: %d, perTryTimeout: 2s}
"""
    (m,) = codes(analyze_yaml(vs % 3), "ISM0004")
    assert m.message == (
        "HTTP rule #0: 3 attempts x perTryTimeout 2s = 6s exceed the route timeout 5s; the timeout ends the "
        "request after at most 3 tries."
    )
    assert not codes(analyze_yaml(vs % 2), "ISM0004")


def test_ism0005_route_to_port_the_service_lacks(analyze_yaml):
    svc = """
apiVersion: v1
kind: Service
metadata: {name: ratings-admin}
spec:
  selector: {app: ratings}
  ports: [{name: http-admin, port: 9090}, {name: http-metrics, port: 9100}]
---
"""
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: ratings-admin%s}}]
  - route: [{destination: {host: ratings}}]
"""
    (m,) = codes(analyze_yaml(svc + vs % ""), "ISM0005")
    assert (
        "traffic arriving on port(s) [9080] goes to that port of ratings-admin, which only defines [9090 9100]"
        in m.message
    )
    assert not codes(analyze_yaml(svc + vs % ", port: {number: 9090}"), "ISM0005")
    matched = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{port: %d}]
    route: [{destination: {host: ratings}}]
"""
    (m,) = codes(analyze_yaml(matched % 8080), "ISM0005")
    assert m.message.startswith("HTTP rule #0 matches port 8080, on which none of the VirtualService's hosts")
    assert not codes(analyze_yaml(matched % 9080), "ISM0005")


def test_ism0006_unmodelled_kind(analyze_yaml):
    msgs = analyze_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n")
    (m,) = codes(msgs, "ISM0006")
    assert m.level == "Info" and m.resource == "ConfigMap default/cfg"


# --- workloads from Kubernetes objects ----------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 0])
def test_pods_from_deployments(analyze_yaml, replicas):
    text = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpbin, namespace: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: httpbin}}}}
  template:
    metadata: {{labels: {{app: httpbin, version: v1}}}}
    spec:
      serviceAccountName: httpbin
      containers: [{{name: httpbin, image: kennethreitz/httpbin, ports: [{{containerPort: 80}}]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: httpbin, namespace: web}}
spec:
  workloadSelector: {{labels: {{app: httpbin}}}}
  egress: [{{hosts: ["./*"]}}]
"""
    msgs = analyze_yaml(text, bookinfo=False)
    assert bool(codes(msgs, "IST0101")) == (replicas == 0)


def test_pod_without_container_name_is_still_a_workload(analyze_yaml):
    # Kubernetes requires container names (IST0106 says so), but istioctl still analyzes such pods.
    text = """
apiVersion: v1
kind: Pod
metadata: {name: sleep, labels: {app: sleep}}
spec:
  containers:
  - image: curlimages/curl
    args:
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep}
spec:
  workloadSelector: {labels: {app: sleep}}
  egress: [{hosts: ["./*"]}]
"""
    msgs = analyze_yaml(text, bookinfo=False)
    assert [m.message for m in codes(msgs, "IST0106")] == [
        "Schema validation error: Required value (at spec.containers[0].name)"
    ]
    assert not codes(msgs, "IST0101")


JWT_ROUTE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: jwt-route
spec:
  hosts: ["jwt.example.com"]
  gateways: [%s]
  http:
  - match:
    - %s:
        "@request.auth.claims.group":
          exact: admins
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""

REQUEST_AUTHN = """
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: %s
spec:
  selector:
    matchLabels:
      istio: %s
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks
"""


def test_ist0149_jwt_claim_route_without_request_authn(analyze_yaml):
    for match_field in ("headers", "withoutHeaders"):
        msgs = codes(analyze_yaml(JWT_ROUTE % ("bookinfo-gateway", match_field)), "IST0149")
        assert [m.resource for m in msgs] == ["VirtualService default/jwt-route"]
        assert "(key: @request.auth.claims.group)" in msgs[0].message
        assert "gateway (default/bookinfo-gateway)" in msgs[0].message
    # A RequestAuthentication of the root namespace that selects the gateway pods: claims are verified.
    fixed = JWT_ROUTE % ("bookinfo-gateway", "headers") + REQUEST_AUTHN % ("istio-system", "ingressgateway")
    assert not codes(analyze_yaml(fixed), "IST0149")
    # One that selects other pods does not count; neither do sidecar-only routes (no gateway pods).
    other = JWT_ROUTE % ("bookinfo-gateway", "headers") + REQUEST_AUTHN % ("istio-system", "egressgateway")
    assert codes(analyze_yaml(other), "IST0149")
    assert not codes(analyze_yaml(JWT_ROUTE % ("mesh", "headers")), "IST0149")


def test_ist0165_internal_gateway_reference(analyze_yaml):
    for name in (
        "istio-ingress/gw-istio-autogenerated-k8s-gateway-http",
        "gw~istio-autogenerated-k8s-gateway~http",
    ):
        msgs = analyze_yaml(JWT_ROUTE % (f'"{name}"', "headers"))
        assert refs(msgs, "IST0165") == {"VirtualService default/jwt-route"}
        assert not [m for m in codes(msgs, "IST0101") if "gateway" in m.message]


DUP_CERT_GATEWAY = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: %s
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["%s.example.com"]
    tls:
      mode: SIMPLE
      serverCertificate: /etc/certs/server.pem
      privateKey: %s
"""


def test_ist0138_duplicate_certificate_files(analyze_yaml):
    same = DUP_CERT_GATEWAY % ("a", "a", "/etc/certs/key.pem") + DUP_CERT_GATEWAY % (
        "b",
        "b",
        "/etc/certs/key.pem",
    )
    assert refs(analyze_yaml(same), "IST0138") == {"Gateway default/a", "Gateway default/b"}
    # The same certificate with another key is not the same credential.
    other = DUP_CERT_GATEWAY % ("a", "a", "/etc/certs/key.pem") + DUP_CERT_GATEWAY % (
        "b",
        "b",
        "/etc/certs/k2.pem",
    )
    assert not codes(analyze_yaml(other), "IST0138")


INGRESS_NO_SUBSET = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-from-ingress
spec:
  hosts: ["reviews.example.com"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: reviews%s}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-by-subset
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
"""


def test_ist0140_ingress_route_rules_not_affected(analyze_yaml):
    msgs = codes(analyze_yaml(INGRESS_NO_SUBSET % ""), "IST0140")
    assert [m.message for m in msgs] == [
        "Subset in virtual service default/reviews-by-subset has no effect on ingress gateway "
        "default/reviews-from-ingress requests"
    ]
    assert not codes(analyze_yaml(INGRESS_NO_SUBSET % ", subset: v1"), "IST0140")


def test_ism0007_sidecar_ingress_not_served(analyze_yaml):
    """A Sidecar ingress listener whose defaultEndpoint names no port of the selected Workload (the app
    has no private port there), or whose port is the sidecar's own: the running mesh leaves it out."""
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 7070, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:%s
"""
    found = codes(analyze_yaml(sidecar % "9999"), "ISM0007")
    assert {m.resource for m in found} == {"Sidecar default/reviews"}
    # One per Workload the Sidecar selects (reviews-v1, -v2, -v3), not one per pod.
    assert sorted(m.message.split("Workload ")[1].split(" ")[0] for m in found) == [
        "default/reviews-v1", "default/reviews-v2", "default/reviews-v3"]  # fmt: skip
    assert all(
        m.message.startswith("spec.ingress[0]: defaultEndpoint 127.0.0.1:9999: 9999 is not") for m in found
    )
    assert not codes(analyze_yaml(sidecar % "9080"), "ISM0007")
    reserved = sidecar.replace("number: 7070", "number: 15001") % "9080"
    assert [m.message for m in codes(analyze_yaml(reserved), "ISM0007")] == [
        "spec.ingress[0]: port 15001 is the sidecar's outbound port"
    ]
