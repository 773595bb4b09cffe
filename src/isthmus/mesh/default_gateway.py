"""The default ingress gateway `isthmus up` provides when a Gateway selects its labels and no workload of
the user's does (Istio installs `istio-ingressgateway` the same way). A module of its own, without
imports, so that offline `isthmus analyze` sees the same gateway without loading the local runner."""

from __future__ import annotations

DEFAULT_GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
DEFAULT_GATEWAY_YAML = """
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {istio: ingressgateway, app: istio-ingressgateway}
spec:
  serviceAccount: istio-ingressgateway-service-account
  gateway: true
---
apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {istio: ingressgateway, app: istio-ingressgateway}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: status-port, port: 15021, targetPort: 15021}
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
"""
BUILTIN_ORIGIN = "<builtin ingress gateway>"
