"""`isthmus analyze` on 1,000 resources: how long loading and analysis take.

    .venv/bin/python bench/analyze.py [--resources 1000] [--runs 5] [--keep DIR]

Generates a realistic folder (namespaces with their Sidecar, ingress Gateway, ServiceEntries, TLS
Secret and policies; apps with a Service, two Deployments, a VirtualService with header matches,
retries and a timeout, a DestinationRule with subsets and outlier detection, an AuthorizationPolicy,
a RequestAuthentication and a PeerAuthentication; a few deliberate mistakes), then times, best of N:
- load: reading and validating the files (what the CLI does before analysis);
- analyze: every analyzer (snapshot build included);
- total: both, i.e. `isthmus analyze DIR` minus interpreter start-up;
- snapshot: `analyze_snapshot` as the control plane runs it (validation cached after the first run);
- cli: the whole `isthmus analyze DIR` process, start-up and imports included (one run).
Budget: total under 2 s for 1,000 resources.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

APP_DOCS = 8
NS_DOCS = 10


def namespace_docs(ns: str, crt: str, key: str) -> list[str]:
    return [
        f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n",
        f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress:
  - hosts: ["./*", "istio-system/*", "shared/*"]
""",
        f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {ns}-gateway, namespace: {ns}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https-{ns}, protocol: HTTPS}}
    tls: {{mode: SIMPLE, credentialName: {ns}-cert}}
    hosts: ["{ns}.example.com"]
""",
        f"""apiVersion: v1
kind: Secret
metadata: {{name: {ns}-cert, namespace: istio-system}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
""",
        f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments, namespace: {ns}}}
spec:
  hosts: [api.payments-{ns}.example.com]
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
  location: MESH_EXTERNAL
""",
        f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: {ns}}}
spec:
  hosts: [db.{ns}.internal]
  addresses: [10.20.{abs(hash(ns)) % 250}.10]
  ports: [{{number: 5432, name: tcp-postgres, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 10.30.0.5}}]
""",
        f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: payments, namespace: {ns}}}
spec:
  host: api.payments-{ns}.example.com
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 100}}}}
""",
        f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-external, namespace: {ns}}}
spec:
  action: DENY
  rules:
  - from: [{{source: {{notNamespaces: ["{ns}", istio-system]}}}}]
    to: [{{operation: {{paths: ["/admin*"]}}}}]
""",
        f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {ns}}}
spec: {{mtls: {{mode: STRICT}}}}
""",
        f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{LOG_LEVEL: info}}
""",
    ]


def app_docs(ns: str, app: str, i: int, ns_apps: list[str]) -> list[str]:
    peer = ns_apps[(ns_apps.index(app) + 1) % len(ns_apps)]
    # A few deliberate mistakes, as real folders have: a typo'd subset, a port-less multi-port route.
    subset = "v3" if i % 37 == 0 else "v2"
    deployments = [
        f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}-{v}, namespace: {ns}, labels: {{app: {app}, version: {v}}}}}
spec:
  replicas: {3 if v == "v1" else 1}
  selector: {{matchLabels: {{app: {app}, version: {v}}}}}
  template:
    metadata: {{labels: {{app: {app}, version: {v}}}}}
    spec:
      serviceAccountName: {app}
      containers:
      - name: {app}
        image: registry.example.com/{app}:{v}
        ports: [{{containerPort: 8080, name: http}}, {{containerPort: 9090, name: grpc}}]
"""
        for v in ("v1", "v2")
    ]
    return [
        f"""apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 8080, targetPort: http}}, {{name: grpc, port: 9090, targetPort: grpc}}]
""",
        *deployments,
        f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {app}, namespace: {ns}}}
spec:
  hosts: [{app}]
  http:
  - name: canary
    match: [{{headers: {{x-canary: {{exact: "true"}}}}}}, {{queryParams: {{canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: {app}, subset: {subset}, port: {{number: 8080}}}}}}]
    timeout: 3s
    retries: {{attempts: 2, perTryTimeout: 1s, retryOn: "5xx,reset"}}
  - name: split
    route:
    - destination: {{host: {app}, subset: v1, port: {{number: 8080}}}}
      weight: 90
    - destination: {{host: {app}, subset: v2, port: {{number: 8080}}}}
      weight: 10
    mirror: {{host: {peer}, port: {{number: 8080}}}}
    mirrorPercentage: {{value: 5}}
""",
        f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {app}, namespace: {ns}}}
spec:
  host: {app}
  trafficPolicy:
    loadBalancer: {{simple: LEAST_REQUEST}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""",
        f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/{ns}/sa/{peer}"]}}}}]
    to: [{{operation: {{methods: [GET, POST], paths: ["/api/*"]}}}}]
""",
        f"""apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  jwtRules: [{{issuer: "https://auth.example.com", jwksUri: "https://auth.example.com/jwks"}}]
""",
        f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {app}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  portLevelMtls: {{"9090": {{mode: PERMISSIVE}}}}
""",
    ]


def _certificate() -> tuple[str, str]:
    """A self-signed certificate and key, base64 for a Secret's data."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
        base64.b64encode(key_pem).decode(),
    )


def generate(directory: Path, resources: int) -> int:
    crt, key = _certificate()
    namespaces = max(1, resources // 100)
    apps = max(1, (resources - namespaces * NS_DOCS) // APP_DOCS)
    count = 0
    for n in range(namespaces):
        ns = f"team-{n:02d}"
        names = [f"svc-{n:02d}-{a:02d}" for a in range(apps // namespaces + (n < apps % namespaces))]
        docs = namespace_docs(ns, crt, key)
        (directory / f"{ns}-namespace.yaml").write_text("---\n".join(docs))
        count += len(docs)
        for i, app in enumerate(names):
            docs = app_docs(ns, app, n * 100 + i, names)
            (directory / f"{app}.yaml").write_text("---\n".join(docs))
            count += len(docs)
    # Round up to the exact count with ConfigMaps (skipped with an Info note, as in real folders).
    extra = [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra-{i}, namespace: team-00}}\ndata: {{k: v}}\n"
        for i in range(max(0, resources - count))
    ]
    if extra:
        (directory / "extra.yaml").write_text("---\n".join(extra))
    return count + len(extra)


def best(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the generated folder here and keep it")
    args = parser.parse_args()

    from isthmus.analyze import analyze, analyze_snapshot, build_snapshot
    from isthmus.cli.analyze_cmd import load_inputs

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        docs = generate(folder, args.resources)

        load_s, report = best(lambda: load_inputs((str(folder),)), args.runs)
        analyze_s, messages = best(
            lambda: analyze(report.resources, load_messages=report.messages), args.runs
        )
        snapshot, _, _ = build_snapshot(report.resources)
        analyze_snapshot(snapshot)  # first run validates every resource
        snapshot_s, _ = best(lambda: analyze_snapshot(build_snapshot(report.resources)[0]), args.runs)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "isthmus.cli.main", "analyze", "-o", "json", str(folder)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        cli_s = time.perf_counter() - start

    figures = {
        "documents": docs,
        "resources_analyzed": len(report.resources),
        "messages": dict(Counter(m.code for m in messages)),
        "load_s": round(load_s, 3),
        "analyze_s": round(analyze_s, 3),
        "total_s": round(load_s + analyze_s, 3),
        "snapshot_analysis_s": round(snapshot_s, 3),
        "cli_process_s": round(cli_s, 3),
        "cli_exit": proc.returncode,
    }
    print(json.dumps(figures, indent=2))
    print(
        f"{docs} documents: load {load_s * 1000:.0f} ms + analyze {analyze_s * 1000:.0f} ms = "
        f"{(load_s + analyze_s) * 1000:.0f} ms (budget 2000 ms); running-mesh analysis {snapshot_s * 1000:.0f} ms; "
        f"whole CLI process {cli_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
