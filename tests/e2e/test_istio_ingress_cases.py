"""Istio's Kubernetes Ingress integration cases, re-expressed against a real Isthmus mesh.

Source (istio/istio): tests/integration/pilot/ingress_test.go TestIngress. An IngressClass `istio-test`
(controller istio.io/ingress-controller) and an Ingress `ingress` of that class: TLS for foo.example.com
and bar.example.com (Secrets k8s-ingress-secret-foo/-bar), and one rule without host with the paths
`<path>/namedport` (ImplementationSpecific, port by name `http`), `<path>` (ImplementationSpecific, port
80) and `<prefixPath>` (Prefix, port 80), all to the echo service `b`. Calls go to the default
ingress gateway, which `isthmus up` starts because the Ingress' generated Gateway selects it.

Ported cases: http; http-prefix-matches-subpath; http-prefix-matches-without-trailing-backslash;
http-prefix-matches-trailing-blackslash; http-prefix-should-not-match-path-continuation;
http-root-prefix-should-match-random-path; https-foo; https-bar; https-namedport; and the update cases
update-class-not-istio (404), update-class-istio, update-path. Added, from conversion.go's rules:
ImplementationSpecific paths are exact (`/test/` is not `/test`); the `kubernetes.io/ingress.class`
annotation selects an Ingress (value `istio`, MeshConfig's ingressClass) or leaves it to another
controller (`nginx`); an IngressClass of another controller is ignored; a defaultBackend is ignored as
istiod ignores it; `isthmus get` lists the derived Gateway and VirtualService with the Ingress as source.

Not ported: 'status' (Ingress load-balancer status: no Kubernetes API), multicluster.
Where Isthmus departs by design: no Kubernetes API (the resources are applied to the mesh); the
Secrets live in istio-system, the gateway's namespace, as Istio requires for Ingress TLS; the gateway
listens on its loopback pod address (80 and 443 on the Service's target ports 8080 and 8443);
certificates are made per run instead of Istio's checked-in PEM files.
"""

from __future__ import annotations

import json
import ssl
import textwrap
from collections.abc import Iterator

import pytest

from isthmus.client import sync
from isthmus.client.http import Response
from tests.e2e import tlstools as t
from tests.e2e.harness import MeshProcess, applied, echo_body, wait_for

pytestmark = pytest.mark.e2e

# b: the backend. base: an Ingress of class istio-test kept for the module, so that the default
# ingress gateway runs from the start and stays up while the cases' Ingresses come and go.
MESH = """
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: b, labels: {app: b, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: istio-test}
spec: {controller: istio.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: base}
spec:
  ingressClassName: istio-test
  rules:
  - host: base.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
"""


def ingress_config(name: str, ingress_class: str, path: str, prefix_path: str) -> str:
    """TestIngress' ingressConfigTemplate (networking.k8s.io/v1)."""
    return f"""
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {{name: {name}}}
    spec:
      ingressClassName: {ingress_class}
      tls:
      - hosts: ["foo.example.com"]
        secretName: k8s-ingress-secret-foo
      - hosts: ["bar.example.com"]
        secretName: k8s-ingress-secret-bar
      rules:
      - http:
          paths:
          - backend: {{service: {{name: b, port: {{name: http}}}}}}
            path: {path}/namedport
            pathType: ImplementationSpecific
          - backend: {{service: {{name: b, port: {{number: 80}}}}}}
            path: {path}
            pathType: ImplementationSpecific
          - backend: {{service: {{name: b, port: {{number: 80}}}}}}
            path: {prefix_path}
            pathType: Prefix
    """


class Credentials:
    """IngressCredentialA / B: a CA each, and a certificate of it for foo.example.com / bar.example.com."""

    def __init__(self) -> None:
        self.ca_a, self.ca_b = t.make_ca("ingress CA A"), t.make_ca("ingress CA B")
        self.foo = t.issue(self.ca_a, ["foo.example.com"])
        self.bar = t.issue(self.ca_b, ["bar.example.com"])

    def secrets(self) -> str:
        return "\n---\n".join(
            [
                t.tls_secret("k8s-ingress-secret-foo", self.foo),
                t.tls_secret("k8s-ingress-secret-bar", self.bar),
            ]
        )


@pytest.fixture(scope="module")
def creds() -> Credentials:
    return Credentials()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, creds: Credentials) -> Iterator[MeshProcess]:
    with MeshProcess.from_yaml(
        tmp_path_factory.mktemp("istio-ingress"), MESH + "---\n" + creds.secrets()
    ) as m:
        wait_for("the default ingress gateway", lambda: _gateway_running(m), timeout=60)
        yield m


def _gateway_running(mesh: MeshProcess) -> bool:
    return any(
        p["workload"] == "istio-ingressgateway" and any(lst["port"] == 80 for lst in p["listeners"])
        for p in mesh.status()["proxies"]
    )


def http_call(mesh: MeshProcess, path: str, host: str = "server") -> Response:
    return sync.request(f"http://{mesh.gateway_address(80)}{path}", headers=[("Host", host)], timeout=10)


def until_status(mesh: MeshProcess, path: str, status: int, host: str = "server") -> Response:
    """Bounded retry until the gateway answers `path` with `status` (istio's CallWithRetryOrFail)."""

    def attempt() -> Response | None:
        resp = http_call(mesh, path, host)
        return resp if resp.status == status else None

    return wait_for(f"{status} for {host}{path}", attempt, timeout=30)


def served_by_b(resp: Response) -> None:
    body = echo_body(resp)
    assert body["workload"] == "b", body


# --- the cases of TestIngress ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "prefix_path", "call_path", "status"),
    [
        ("/test", "/prefix", "/test", 200),  # http
        ("/test", "/prefix/should", "/prefix/should/match", 200),  # http-prefix-matches-subpath
        ("/test", "/prefix/test/", "/prefix/test", 200),  # ...-matches-without-trailing-backslash
        ("/test", "/prefix/test", "/prefix/test/", 200),  # http-prefix-matches-trailing-blackslash
        ("/test", "/prefix/test", "/prefix/testrandom/", 404),  # ...-should-not-match-path-continuation
        ("/test", "/", "/testrandom", 200),  # http-root-prefix-should-match-random-path
        ("/test", "/prefix", "/test/", 404),  # added: ImplementationSpecific `/test` is exact
    ],
    ids=[
        "http",
        "http-prefix-matches-subpath",
        "http-prefix-matches-without-trailing-backslash",
        "http-prefix-matches-trailing-blackslash",
        "http-prefix-should-not-match-path-continuation",
        "http-root-prefix-should-match-random-path",
        "implementation-specific-is-exact",
    ],
)
def test_http(mesh: MeshProcess, path: str, prefix_path: str, call_path: str, status: int) -> None:
    with applied(mesh, ingress_config("ingress", "istio-test", path, prefix_path)):
        resp = until_status(mesh, call_path, status)
        if status == 200:
            served_by_b(resp)


@pytest.mark.parametrize(
    ("host", "path"),
    [("foo.example.com", "/test"), ("bar.example.com", "/test"), ("bar.example.com", "/test/namedport")],
    ids=["https-foo", "https-bar", "https-namedport"],
)
def test_https(mesh: MeshProcess, creds: Credentials, host: str, path: str) -> None:
    """HTTPS on 443 with the TLS entry's Secret as credential: each host gets its own certificate
    (verified against its CA); the named port `http` resolves through Service b to 80."""
    ca = creds.ca_a if host == "foo.example.com" else creds.ca_b
    with applied(mesh, ingress_config("ingress", "istio-test", "/test", "/prefix")):

        def attempt() -> tuple[int, dict, bytes] | None:
            try:
                got = t.https_get(mesh.gateway_address(443), host, path, ca)
            except (OSError, ssl.SSLError):
                return None
            return got if got[0] == 200 else None

        _, _, body = wait_for(f"https://{host}{path}", attempt, timeout=30)
        assert json.loads(body)["workload"] == "b"


def test_update_class_and_path(mesh: MeshProcess) -> None:
    """TestIngress' update cases on one Ingress: of class not-istio (no such IngressClass) it is not
    Istio's (404); of class istio-test it routes; a changed path routes at once."""
    name = "update-test-ingress"
    try:
        mesh.apply(_doc(ingress_config(name, "not-istio", "/update-test", "/update-test")))
        until_status(mesh, "/update-test", 404)  # update-class-not-istio
        mesh.apply(_doc(ingress_config(name, "istio-test", "/update-test", "/update-test")))
        served_by_b(until_status(mesh, "/update-test", 200))  # update-class-istio
        mesh.apply(_doc(ingress_config(name, "istio-test", "/updated", "/updated")))
        served_by_b(until_status(mesh, "/updated", 200))  # update-path
        until_status(mesh, "/update-test", 404)
    finally:
        mesh.delete(_doc(ingress_config(name, "istio-test", "/updated", "/updated")))


def _doc(text: str) -> str:
    return textwrap.dedent(text)


# --- added: which Ingresses are Istio's ------------------------------------------------------------


def annotated(name: str, annotation: str | None, path: str, ingress_class: str | None = None) -> str:
    meta = (
        f"{{name: {name}, annotations: {{kubernetes.io/ingress.class: {annotation}}}}}"
        if annotation
        else f"{{name: {name}}}"
    )
    class_line = f"\n      ingressClassName: {ingress_class}" if ingress_class else ""
    return f"""
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {meta}
    spec:{class_line}
      rules:
      - host: classes.example.com
        http:
          paths:
          - {{path: {path}, pathType: Exact, backend: {{service: {{name: b, port: {{number: 80}}}}}}}}
    """


def test_ingress_class_annotation_and_other_controllers(mesh: MeshProcess) -> None:
    """The annotation `kubernetes.io/ingress.class: istio` (MeshConfig's ingressClass; STRICT mode)
    selects an Ingress without ingressClassName; `nginx`, no class at all, or an IngressClass of another
    controller leave it to someone else (404 on the gateway)."""
    other_class = """
    apiVersion: networking.k8s.io/v1
    kind: IngressClass
    metadata: {name: nginx}
    spec: {controller: k8s.io/ingress-nginx}
    """
    host = "classes.example.com"
    with applied(
        mesh,
        other_class,
        annotated("by-annotation", "istio", "/annotated"),
        annotated("other-annotation", "nginx", "/nginx"),
        annotated("no-class", None, "/none"),
        annotated("other-controller", None, "/other", ingress_class="nginx"),
    ):
        served_by_b(until_status(mesh, "/annotated", 200, host))
        for path in ("/nginx", "/none", "/other"):
            assert http_call(mesh, path, host).status == 404, path
    # `isthmus delete` finds the cluster-scoped IngressClass without a namespace.
    assert not [c for c in mesh.resources("IngressClass") if c["metadata"]["name"] == "nginx"]


def test_default_backend_is_ignored(mesh: MeshProcess) -> None:
    """istiod ignores spec.defaultBackend ("use VirtualService"): its Gateway exists, no route does."""
    ingress = """
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: default-backend}
    spec:
      ingressClassName: istio-test
      defaultBackend: {service: {name: b, port: {number: 80}}}
    """
    with applied(mesh, ingress):
        mesh.wait_for_resource("Gateway", "default-backend-istio-autogenerated-k8s-ingress-default")
        assert http_call(mesh, "/anything", "unrouted.example.com").status == 404


def test_get_shows_the_derived_config(mesh: MeshProcess) -> None:
    """`isthmus get gateway|virtualservice` lists what the Ingress derives, with the Ingress as source."""
    with applied(mesh, ingress_config("ingress", "istio-test", "/test", "/prefix")):
        gw = mesh.wait_for_resource("Gateway", "ingress-istio-autogenerated-k8s-ingress-default")
        assert gw["metadata"]["namespace"] == "istio-system"
        assert gw["status"]["source"] == "derived:Ingress default/ingress"
        assert [s["tls"]["credentialName"] for s in gw["spec"]["servers"] if "tls" in s] == [
            "k8s-ingress-secret-foo",
            "k8s-ingress-secret-bar",
        ]
        vs = mesh.wait_for_resource("VirtualService", "*-ingress-istio-autogenerated-k8s-ingress")
        assert vs["spec"]["gateways"] == ["istio-system/ingress-istio-autogenerated-k8s-ingress-default"]
        assert [r["match"][0]["uri"] for r in vs["spec"]["http"]] == [
            {"exact": "/test/namedport"},
            {"prefix": "/prefix"},
            {"exact": "/test"},
        ]


def test_an_applied_ingress_starts_the_default_gateway(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A mesh without Gateways runs no ingress gateway; an Ingress of Istio's class applied later starts
    the default one (its generated Gateway selects `istio: ingressgateway`), which routes it; deleting
    the Ingress stops it again, as deleting the last such Gateway does."""
    base = MESH.split("---\napiVersion: networking.k8s.io/v1\nkind: IngressClass")[0]
    ingress = """
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: late, annotations: {kubernetes.io/ingress.class: istio}}
    spec:
      rules:
      - http:
          paths:
          - {path: /late, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
    """
    with MeshProcess.from_yaml(tmp_path_factory.mktemp("istio-ingress-late"), base) as mesh:
        assert not _gateway_running(mesh)
        with applied(mesh, ingress):
            wait_for("the default ingress gateway", lambda: _gateway_running(mesh), timeout=60)
            mesh.wait_settled()
            served_by_b(until_status(mesh, "/late/x", 200))
        wait_for(
            "the default ingress gateway to stop",
            lambda: not any(p["workload"] == "istio-ingressgateway" for p in mesh.status()["proxies"]),
            timeout=30,
        )
