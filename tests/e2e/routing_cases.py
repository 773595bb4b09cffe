"""Routing cases shared by the routing e2e tests (real traffic) and the `route test` e2e tests (the
prediction for the same config)."""

from __future__ import annotations

# v3 selects no pod: the empty-subset (503 UH) case.
DR_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

VS_URI_MATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: prefix
    match: [{uri: {prefix: /pre}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: regex
    match: [{uri: {regex: "/re[0-9]+"}}]
    route: [{destination: {host: echo, subset: v2}}]
  - name: nocase
    match: [{uri: {exact: /case}, ignoreUriCase: true}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
"""

VS_HEADER_QUERY_METHOD_AUTHORITY_SCHEME = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {x-exact: {exact: "yes"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{headers: {x-prefix: {prefix: "ab"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{headers: {x-regex: {regex: "[0-9]{3}"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{queryParams: {q: {exact: "1"}}}, {queryParams: {p: {prefix: "pre"}}}, {queryParams: {r: {regex: "a+b"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{method: {exact: POST}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /auth}, authority: {prefix: "echo.default"}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /scheme}, scheme: {exact: https}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
"""

VS_WITHOUT_HEADERS_AND_PRESENT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{withoutHeaders: {x-skip: {exact: "1"}}, uri: {prefix: /without}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{headers: {x-present: {}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
"""

VS_FIRST_MATCH_WINS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /a/b}}]
    route: [{destination: {host: echo, subset: v1}}]
"""

VS_PORT_SOURCE_LABELS_NAMESPACE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - match: [{port: 9090}]
    route: [{destination: {host: echo, subset: v2, port: {number: 9090}}}]
  - match: [{sourceLabels: {version: v2}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
"""

VS_WEIGHTED_80_20 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
"""

GW_A_ONE_TO_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-a}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: echo, subset: v2}}]
"""

GW_A_REST_TO_V1 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-a2}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: echo, subset: v1}}]
"""

GW_OTHER_NS_TO_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-other, namespace: other}
spec:
  hosts: [y.example.org]
  gateways: [default/gw]
  http:
  - route: [{destination: {host: echo.default.svc.cluster.local, subset: v2}}]
"""
