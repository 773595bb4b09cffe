"""Isthmus: a service mesh with Istio's API, Envoy's data plane and a Python control plane."""

__version__ = "0.1.0"
