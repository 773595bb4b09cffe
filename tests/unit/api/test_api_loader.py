from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from isthmus.api import networking
from isthmus.api.errors import ConfigError, ConfigErrors
from isthmus.api.loader import (
    load_path,
    load_path_report,
    load_text,
    load_text_report,
    load_text_with_warnings,
    parse_resource,
)
from isthmus.api.resource import Origin

DATA = Path(__file__).parent / "data"


def errors_of(text: str, **kw) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as ei:
        load_text(textwrap.dedent(text), "f.yaml", **kw)
    return ei.value.errors


def test_bookinfo_networking_loads():
    rs = load_path(DATA / "bookinfo-networking.yaml")
    kinds = [r.kind for r in rs]
    assert kinds.count("DestinationRule") == 5
    gw = rs[0]
    assert gw.kind == "Gateway" and gw.key == ("Gateway", "default", "bookinfo-gateway")
    assert gw.origin.file.endswith("bookinfo-networking.yaml") and gw.origin.line == 2
    vs = rs[1]
    assert isinstance(vs.spec, networking.VirtualService)
    assert vs.spec.http[0].match[1].uri.prefix == "/static"
    assert vs.spec.http[0].route[0].destination.port.number == 9080
    sidecar = rs[-1]
    assert sidecar.namespace == "istio-config"


def test_unset_fields_stay_none():
    vs = load_text(
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - destination: {host: r}
"""
    )[0]
    route = vs.spec.http[0]
    assert route.timeout is None and route.retries is None and route.route[0].weight is None
    assert route.match == []
    assert vs.metadata.namespace is None
    assert vs.namespace == "default"


def test_kube_strict_rejects_serviceaccount_but_lenient_skips():
    errs = errors_of((DATA / "bookinfo-kube.yaml").read_text())
    assert len(errs) == 1
    assert errs[0].kind == "ServiceAccount" and "unknown kind" in errs[0].message
    assert errs[0].line == 17 and errs[0].field == "kind"
    rs, msgs = load_text_with_warnings((DATA / "bookinfo-kube.yaml").read_text(), "b.yaml", lenient=True)
    assert [r.kind for r in rs] == ["Service", "Deployment", "Service"]
    assert [m.level for m in msgs] == ["Info"]
    assert "ServiceAccount" in msgs[0].message
    dep = rs[1]
    assert dep.spec.template.spec.service_account_name == "bookinfo-details"
    assert dep.spec.template.spec.containers[0].ports[0].container_port == 9080


def test_yaml_syntax_error_has_line():
    errs = errors_of(
        """\
        apiVersion: v1
        kind: Service
        metadata:
          name: x
        spec:
          ports:
          - port: 80
            name: http: bad
        """
    )
    assert len(errs) == 1
    e = errs[0]
    assert e.kind is None and e.line == 8
    assert str(e).startswith("f.yaml:8: ")
    assert "mapping values are not allowed" in str(e)


def test_schema_errors_all_reported_with_lines():
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: reviews
          namespace: prod
        spec:
          hosts: [reviews]
          http:
          - route:
            - destination:
                host: reviews
              weight: many
            - destination:
                host: reviews
              bogus: 1
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: d}
        spec:
          host: d
          trafficPolicy:
            loadBalancer:
              simple: ROUND_ROBN
        """
    )
    by_field = {e.field: e for e in errs}
    w = by_field["spec.http[0].route[0].weight"]
    assert w.line == 12 and w.kind == "VirtualService" and w.namespace == "prod" and w.name == "reviews"
    assert str(w).startswith("f.yaml:12: VirtualService prod/reviews: spec.http[0].route[0].weight: ")
    b = by_field["spec.http[0].route[1].bogus"]
    assert b.line == 15 and b.message == 'unknown field "bogus"'
    lb = by_field["spec.trafficPolicy.loadBalancer.simple"]
    assert lb.line == 24 and "ROUND_ROBN" in lb.message


def test_missing_required_field_points_at_parent():
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: d}
        spec:
          subsets:
          - labels: {version: v1}
        """
    )
    fields = {e.field: e for e in errs}
    assert fields["spec.host"].message == "required field is missing"
    assert fields["spec.host"].line == 4
    assert fields["spec.subsets[0].name"].line == 6


def test_oneof_is_enforced():
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: v}
        spec:
          hosts: [v]
          http:
          - match:
            - uri:
                exact: /a
                prefix: /b
            route:
            - destination: {host: v}
        """
    )
    (e,) = errs
    assert e.field == "spec.http[0].match[0].uri"
    assert e.line == 8
    assert "only one of exact, prefix, suffix, regex" in e.message


def test_unknown_api_version_and_kind():
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v2
        kind: VirtualService
        metadata: {name: v}
        ---
        apiVersion: networking.istio.io/v1
        kind: Virtualservice
        metadata: {name: v}
        ---
        apiVersion: v1
        kind: Gateway
        metadata: {name: g}
        """
    )
    assert 'apiVersion "networking.istio.io/v2" is not served' in errs[0].message
    assert errs[0].line == 1
    assert 'unknown kind "Virtualservice"' in errs[1].message and errs[1].line == 6
    assert "did you mean apiVersion networking.istio.io/v1" in errs[2].message


def test_kind_list_and_empty_documents():
    rs = load_text(
        """\
---
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1beta1
  kind: Gateway
  metadata: {name: g, namespace: ns1}
  spec:
    selector: {istio: ingressgateway}
    servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["*"]
- apiVersion: v1
  kind: Namespace
  metadata: {name: ns1, labels: {istio-injection: enabled}}
---
# just a comment
"""
    )
    assert [r.kind for r in rs] == ["Gateway", "Namespace"]
    assert rs[0].origin.line == 6
    assert rs[1].key == ("Namespace", "", "ns1")
    assert rs[1].namespace == ""


def test_list_item_errors_have_item_lines():
    errs = errors_of(
        """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
          metadata: {name: s}
          spec:
            ports:
            - port: "http"
        """
    )
    (e,) = errs
    assert e.field == "spec.ports[0].port" and e.line == 9


def test_default_namespace():
    rs = load_text(
        """\
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: foo}
""",
        default_namespace="team-a",
    )
    assert rs[0].namespace == "team-a" and rs[0].metadata.namespace == "team-a"
    assert rs[1].namespace == ""


def test_duplicate_yaml_keys_are_errors():
    errs = errors_of(
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        spec:
          ports: [{port: 80}]
          ports: [{port: 81}]
        """
    )
    assert errs[0].line == 6 and 'mapping key "ports" already defined at line 5' in errs[0].message


def test_timestamps_and_numbers_stay_strings_where_strings_are_expected():
    (r,) = load_text(
        """\
apiVersion: v1
kind: Service
metadata:
  name: s
  creationTimestamp: "2024-01-02T03:04:05Z"
  annotations: {when: 2024-01-02}
spec:
  ports: [{port: 80, targetPort: http}]
"""
    )
    assert r.metadata.annotations["when"] == "2024-01-02"
    assert r.metadata.creation_timestamp.year == 2024
    assert r.spec.ports[0].target_port == "http"


def test_label_value_must_be_string():
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: d}
        spec:
          host: d
          subsets:
          - name: v1
            labels:
              version: 1
        """
    )
    assert errs[0].field == "spec.subsets[0].labels.version" and errs[0].line == 9


def test_snake_case_keys_accepted_and_lines_found():
    (r,) = load_text(
        """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [v]
  http:
  - route: [{destination: {host: v}}]
    mirror: {host: v2}
    mirror_percent: 5
"""
    )
    assert r.spec.http[0].mirror_percent == 5
    errs = errors_of(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: v}
        spec:
          hosts: [v]
          http:
          - route: [{destination: {host: v}}]
            mirror_percent: -5
        """
    )
    assert errs[0].field == "spec.http[0].mirrorPercent" and errs[0].line == 8


def test_metadata_name_rules():
    errs = errors_of(
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: My_Service}
        spec: {}
        ---
        apiVersion: v1
        kind: Service
        metadata: {namespace: x}
        spec: {}
        """
    )
    assert errs[0].field == "metadata.name" and "RFC 1123" in errs[0].message
    assert errs[1].field == "metadata" and "metadata.name is required" in errs[1].message


def test_secret_top_level_fields():
    (r,) = load_text(
        """\
apiVersion: v1
kind: Secret
metadata: {name: cred, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: Y2VydA==
  tls.key: a2V5
stringData:
  ca.crt: hello
"""
    )
    assert r.spec.type == "kubernetes.io/tls"
    assert r.spec.decoded() == {"tls.crt": b"cert", "tls.key": b"key", "ca.crt": b"hello"}
    d = r.to_dict()
    assert "spec" not in d and d["type"] == "kubernetes.io/tls" and d["stringData"] == {"ca.crt": "hello"}


def test_parse_resource_from_json_data():
    r = parse_resource(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "x", "namespace": "n"},
            "spec": {"host": "x", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
        },
        Origin("api", None),
    )
    assert r.spec.traffic_policy.tls.mode == "ISTIO_MUTUAL"
    with pytest.raises(ConfigErrors) as ei:
        parse_resource({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"x": 1}})
    assert ei.value.errors[0].field == "spec.x"


def test_load_path_directory_sorted_not_recursive(tmp_path: Path):
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n")
    (tmp_path / "a.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "c.txt").write_text("not yaml: [")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n")
    rs = load_path(tmp_path)
    assert [r.name for r in rs] == ["a", "b"]
    (tmp_path / "e.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: E}\n")
    (tmp_path / "f.yaml").write_text("a: [\n")
    with pytest.raises(ConfigErrors) as ei:
        load_path(tmp_path)
    files = [Path(e.file).name for e in ei.value.errors]
    assert files == ["e.yaml", "f.yaml"]


def test_load_path_stdin(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"))
    (r,) = load_path("-")
    assert r.origin.file == "<stdin>"


def test_duplicate_resources_warn():
    rs, warnings = load_text_with_warnings(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        "x.yaml",
    )
    assert len(rs) == 2
    assert warnings[0].level == "Warning" and "x.yaml:1" in warnings[0].message


def test_report_never_raises_and_keeps_valid_resources():
    rep = load_text_report(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: x}]}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n",
        "r.yaml",
        lenient=True,
    )
    assert [r.name for r in rep.resources] == ["ok"]
    assert [m.level for m in rep.messages] == ["Error", "Info"]
    rep2 = load_path_report(DATA / "does-not-exist.yaml")
    assert rep2.errors and "cannot read" in rep2.errors[0].message


def test_loading_1000_resources_is_fast():
    doc = textwrap.dedent(
        """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: svc-{i}
          namespace: ns-{n}
        spec:
          hosts: [svc-{i}]
          http:
          - match:
            - headers:
                end-user: {{exact: jason}}
            route:
            - destination: {{host: svc-{i}, subset: v2}}
          - route:
            - destination: {{host: svc-{i}, subset: v1}}
              weight: 90
            - destination: {{host: svc-{i}, subset: v3}}
              weight: 10
            retries: {{attempts: 3, perTryTimeout: 2s}}
            timeout: 10s
        """
    )
    text = "---\n".join(doc.format(i=i, n=i % 10) for i in range(1000))
    t0 = time.perf_counter()
    rs = load_text(text, "big.yaml")
    elapsed = time.perf_counter() - t0
    assert len(rs) == 1000
    assert elapsed < 2.0, elapsed  # generous for slow CI; typically well under 1 s


SE_WITH_IPV6 = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  addresses: [1.2.3.4, 2001:db8::]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 2001:db8::1}]
"""


def test_unquoted_ipv6_in_flow_list_reads_as_go_yaml_does():
    # libyaml refuses a ':' right before ']' in a flow sequence; Kubernetes' YAML (Go) reads the text.
    (se,) = load_text(textwrap.dedent(SE_WITH_IPV6), "se.yaml")
    assert list(se.spec.addresses) == ["1.2.3.4", "2001:db8::"]
    assert [e.address for e in se.spec.endpoints] == ["2001:db8::1"]
    assert se.origin.line == 2


def test_go_flow_rule_keeps_other_flow_syntax():
    from isthmus.api.loader import safe_load_all

    text = "a: [x:y, 'q', {k: v}, 2001:db8::]\nb: {c: [d, e: f]}\n"
    assert safe_load_all(text) == [
        {"a": ["x:y", "q", {"k": "v"}, "2001:db8::"], "b": {"c": ["d", {"e": "f"}]}}
    ]


def test_other_unexpected_colon_is_still_an_error_with_its_line():
    errs = errors_of("a: b\nc: [d, e: f: g]\n")
    assert errs[0].line == 2
