"""Hunt for Istio config that Isthmus accepts but Envoy NACKs (or that a generator drops with an error).

A by-hand tool, not part of the CI suite:

    .venv/bin/python bench/fuzz_nacks.py [--iterations 300] [--seed 1] [--time-budget 3600]
                                         [--minimize-steps 30] [--out /tmp/fuzz-findings.json]
                                         [--kinds VirtualService,DestinationRule] [--mesh-log FILE]
    # faster: an offline pre-check (generators + Envoy's proto rules) picks what goes to the mesh
    pip install --target /tmp/pgv protoc-gen-validate      # once, outside the project's venv
    .venv/bin/python bench/fuzz_nacks.py --offline --pgv-path /tmp/pgv --mesh-sample 0.05 --iterations 20000

It starts one small mesh through the e2e harness (`tests/e2e/harness.py`: `isthmus up` as a subprocess;
a client, two echo services, the default ingress gateway, mesh-wide STRICT mTLS), then, for every
iteration, takes a seed resource from the YAML in tests/ (VirtualService, DestinationRule, Gateway,
ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry,
WorkloadEntry), points it at the mesh's hosts and workloads (most of the time), applies a few random,
schema-plausible mutations (edge values, splices of the same field from other seeds, repeated list
items, dropped keys) and loads it through Isthmus's own acceptance path (`ingest_text`: the loader's
`load_text_report` + the unsupported-feature check, what `isthmus apply` runs). What is accepted is
applied to the running mesh over the HTTP API; the driver then polls `/api/status` (bounded) until every
proxy has ACKed the new version, or one proxy NACKs, and also watches `generationErrors` (the generator
guard's record of a resource left out). Every finding is minimized (greedy removal of keys and list
items while it still reproduces) and printed with Envoy's message. The resource is deleted again after
every iteration. The mesh is stopped on exit (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import random
import re
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import MeshProcess  # noqa: E402

from isthmus.config.ingest import ingest_text  # noqa: E402

KINDS = {
    "VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar", "PeerAuthentication",
    "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WorkloadEntry",
}  # fmt: skip

MESH_YAML = """
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: echo2}
spec:
  selector: {app: echo2}
  ports:
  - {name: http, port: 9080}
  - {name: tcp, port: 9000}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: echo-v1, labels: {app: echo, version: v1}}
spec: {ports: [8080, 9090], command: [isthmus, echo]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: echo2-v1, labels: {app: echo2, version: v1}}
spec: {ports: [9080, 9000], command: [isthmus, echo, --tcp, "9000"]}
---
apiVersion: isthmus.dev/v1alpha1
kind: Workload
metadata: {name: client, labels: {app: client, version: v1}}
spec: {ports: [8080], command: [isthmus, echo]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""

MESH_HOSTS = [
    "echo", "echo.default.svc.cluster.local", "echo2", "echo2.default.svc.cluster.local",
    "echo.default", "*.default.svc.cluster.local", "client.default.svc.cluster.local",
]  # fmt: skip
MESH_LABELS = [
    {"app": "echo"},
    {"app": "echo2"},
    {"app": "client"},
    {"istio": "ingressgateway"},
    {"version": "v1"},
]

# Edge values, by what a field holds (chosen from the key name, or the shape of the current value).
HOSTS = MESH_HOSTS + [
    "*", "*.example.com", "www.example.com", "EXAMPLE.com", "Echo.Default.svc.cluster.local", "bücher.example",
    "xn--bcher-kva.example", "a" * 63 + ".example.com", "example.com.", "*.com", "*.*.example.com",
    "foo.*.com", "1.2.3.4", "::1", "[::1]", "2001:db8::1", "example.com:80", "", "-bad.example",
    "under_score.example", "*.svc.cluster.local", "*.local", "ns/*.example.com", "./echo", "*/echo",
]  # fmt: skip
DURATIONS = [
    "0s", "1ms", "0.001s", "1ns", "1us", "100000h", "87600h", "315576000000s", "1.5s", "-1s", "0.5ms",
    "1h30m", "10s", "999999999s", "0.0000001s", "1m", "1e3s", "00s",
]  # fmt: skip
REGEXES = [
    "", ".*", "(", "[a-z]+", "a{1000}", "(?i)abc", "^/api/.*$", "\\d+", "(a|b)*c", "[[:alpha:]]", "\\p{L}+",
    "(?P<name>x)", "a**", ".{0,70000}", "\\", "(?=x)", "\\bword\\b", "ü+", "[^/]*",
]  # fmt: skip
HEADER_NAMES = [
    "x-fuzz", "X-Upper-Case", "", ":authority", ":path", ":method", "host", "Host", "content-length",
    "x" * 300, "x-ünï", "x fuzz", "x-fuzz:", "transfer-encoding", "connection", "te", "upgrade",
    "x-envoy-original-path", "keep-alive", "proxy-connection", "x-forwarded-for", ":scheme", "x-request-id",
]  # fmt: skip
STRINGS = [
    "", " ", "a", "A" * 5000, "ünïcödé", "line\nbreak", "tab\there", "\x00", "%00", "${x}", "*", "/", "//",
    "a b", "-", "0", "null", "true", "\\", "'\"", "€", "💥", "x-fuzz",
]  # fmt: skip
PATHS = ["/", "", "//", "/api", "/api/", "*", "/%2F", "/ü", "a", "/a b", "/" + "a" * 5000, "/a?b=c", "/#frag"]
IPS = [
    "0.0.0.0", "0.0.0.0/0", "127.0.0.1", "10.0.0.0/8", "10.0.0.1/33", "::", "::/0", "2001:db8::/32",
    "2001:db8::1", "fe80::1%eth0", "1.2.3.4/32", "256.1.1.1", "1.2.3.0/24", "::ffff:1.2.3.4", "",
]  # fmt: skip
PORTS = [
    0,
    1,
    80,
    443,
    1023,
    1024,
    8080,
    9080,
    9090,
    9000,
    15000,
    15001,
    15006,
    15008,
    15021,
    15090,
    65535,
    65536,
    -1,
]
INTS = [0, 1, -1, 2, 100, 101, 1000, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 10**20]
FLOATS = [0, 0.0, 100, 100.0, 100.5, -1, 0.0001, 50.5, 1e-9, 1e9, 99.9999]
PROTOCOLS = ["HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS", "MONGO", "UDP", "http", "", "GRPC-WEB", "HBONE"]
SECRET_NAMES = ["", "cred", "ns/cred", "sds://x", "file-cert:/etc/cert.pem~/etc/key.pem", "a/b/c"]
URIS = [
    "https://example.com/jwks",
    "http://127.0.0.1:1/jwks",
    "https://[::1]:8443/x",
    "https://EXAMPLE.com:0/a",
    "https://example.com:65535/",
    "http://echo.default.svc.cluster.local/jwks",
]
NAMES = ["", "a", "A", "x" * 300, "dup", "dup", "with space", "ü", "v1", "http", "default"]

# Generation errors that are Isthmus's deliberate report of a config istiod also accepts and then skips
# at push time (a provider the MeshConfig does not define): status, not bugs.
DESIGNED_REPORTS = [
    r"provider '.*' is not defined",
    r"failed to process CUSTOM action, every request is denied",
    # the generators' own guards against a NACK: reported and left out, by design
    r"is the gateway proxy's own .* port",
    r"gateway port .* is served on .* already uses",
    r"is the sidecar's .* port",
    r"Envoy cannot load its key set",
    r"holds NUL, CR or LF",
    r"a query parameter match needs a non-empty parameter name",
    r"Envoy takes HTTP status codes from 200 to 599",
    r"a TLS server name has at most 255",
    r"Envoy cannot evaluate the filter's comprehension",
    r"so its app has no private port there",  # a Sidecar ingress port the Workload does not serve
]

DURATION_RE = re.compile(r"^-?[\d.]+(ns|us|µs|ms|s|m|h)$")
HOST_KEYS = {"hosts", "host", "sniHosts", "authority", "subjectAltNames", "destinationHosts"}
IP_KEYS = {
    "address",
    "addresses",
    "ipBlocks",
    "remoteIpBlocks",
    "notIpBlocks",
    "notRemoteIpBlocks",
    "endpoints",
}
PORT_KEYS = {"number", "port", "targetPort", "ports", "notPorts", "portLevelSettings"}
HEADER_KEYS = {"headers", "set", "add", "remove", "request", "response", "withoutHeaders", "fromHeaders", "outputClaimToHeaders"}  # fmt: skip


# =================================================================================================
# Seeds


def _yaml_texts() -> Iterator[tuple[str, str]]:
    """Every string in tests/ (Python constants and .yaml files) that may hold a resource."""
    for p in sorted((ROOT / "tests").rglob("*.py")):
        try:
            tree = ast.parse(p.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and "kind:" in n.value:
                yield str(p.relative_to(ROOT)), textwrap.dedent(n.value)
    for p in sorted((ROOT / "tests").rglob("*.yaml")):
        yield str(p.relative_to(ROOT)), p.read_text(errors="replace")


def extra_seeds() -> list[dict[str, Any]]:
    """Seeds the tests only write as f-strings: RequestAuthentication with an inline key set."""
    from tests.e2e.jwt_tokens import istio_tokens

    jwks = istio_tokens()["jwks"]
    rule = {
        "issuer": "testing@secure.istio.io", "jwks": jwks, "audiences": ["foo", "bar"],
        "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}], "fromParams": ["token"],
        "fromCookies": ["session"], "outputPayloadToHeader": "x-jwt-payload", "forwardOriginalToken": True,
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-nested", "claim": "nested.key1"}],
        "timeout": "5s", "spaceDelimitedClaims": ["scope"],
    }  # fmt: skip
    return [
        {
            "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt"}, "spec": {"selector": {"matchLabels": {"app": "echo"}}, "jwtRules": [rule]},
        },
        {
            "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt2"},
            "spec": {"jwtRules": [{"issuer": "other@example.com", "jwksUri": "https://example.com/jwks"}, {"issuer": "x", "jwks": jwks}]},
        },
    ]  # fmt: skip


def load_seeds() -> list[dict[str, Any]]:
    seen: set[str] = set()
    seeds: list[dict[str, Any]] = []
    for d in extra_seeds():
        seen.add(json.dumps(d, sort_keys=True, default=str))
        seeds.extend([d] * 5)  # weighted: there are few of them
    for _, text in _yaml_texts():
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            continue
        for d in docs:
            if not isinstance(d, dict) or d.get("kind") not in KINDS or not isinstance(d.get("spec"), dict):
                continue
            key = json.dumps(d, sort_keys=True, default=str)
            if key not in seen and ingest_text(yaml.safe_dump(d), "seed.yaml").ok:  # valid seeds only
                seen.add(key)
                seeds.append(d)
    return seeds


def _sig(path: tuple) -> tuple:
    """A field's place in its kind's schema: the path with every list index as "[]"."""
    return tuple(p if isinstance(p, str) else "[]" for p in path)


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def corpus_index(seeds: list[dict[str, Any]]) -> dict[tuple, list[Any]]:
    """(kind, field signature) -> the values the seeds give it: what splices and added keys draw from."""
    index: dict[tuple, list[Any]] = {}
    for s in seeds:
        for path, value in _walk(s.get("spec"), ("spec",)):
            if path:
                index.setdefault((s["kind"], *_sig(path)), []).append(value)
    return index


# =================================================================================================
# Mutations


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def _delete(doc: Any, path: tuple) -> None:
    parent = _get(doc, path[:-1])
    del parent[path[-1]]


def retarget(doc: dict[str, Any], rng: random.Random) -> None:
    """Point a seed at this mesh: its hosts at mesh services, its selectors at mesh workloads."""
    for path, value in list(_walk(doc["spec"], ("spec",))):
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        if key in ("hosts", "host") and isinstance(value, str) and rng.random() < 0.8:
            host = rng.choice(MESH_HOSTS[:4])
            prefix = value.split("/", 1)[0] + "/" if "/" in value and key == "hosts" else ""
            if doc["kind"] in ("Gateway", "Sidecar") and not prefix:
                prefix = rng.choice(["", "*/", "./"]) if doc["kind"] == "Sidecar" else ""
            if doc["kind"] == "Gateway":
                host = rng.choice(
                    ["*", "echo.default.svc.cluster.local", "*.example.com", "*.default.svc.cluster.local"]
                )
            if doc["kind"] == "ServiceEntry":
                host = rng.choice(
                    ["fuzz.example.com", "*.fuzz.example.com", "fuzz-svc.default.svc.cluster.local"]
                )
            _set(doc, path, prefix + host if doc["kind"] == "Sidecar" else host)
        elif (
            key in ("matchLabels", "workloadSelector", "selector")
            and isinstance(value, dict)
            and path[-1] == key
        ):
            if doc["kind"] == "Gateway":
                _set(doc, path, {"istio": "ingressgateway"})
            elif value and all(isinstance(v, str) for v in value.values()):
                _set(doc, path, dict(rng.choice(MESH_LABELS)))
            elif "labels" in value:
                value["labels"] = dict(rng.choice(MESH_LABELS))
    if doc["kind"] == "VirtualService" and doc["spec"].get("gateways"):
        doc["spec"]["gateways"] = rng.choice(
            [["gw"], ["gw", "mesh"], ["mesh"], ["istio-system/gw"], ["default/gw"]]
        )


def pool_for(key: str, value: Any) -> list[Any] | None:
    if key in ("regex",) or key.endswith("Regex"):
        return REGEXES
    if isinstance(value, bool):
        return [not value]
    if key in ("value",) and isinstance(value, (int, float)):
        return FLOATS
    if key in PORT_KEYS and isinstance(value, int):
        return PORTS
    if key in ("weight", "percent", "percentage", "maxEjectionPercent", "minHealthPercent"):
        return FLOATS + INTS
    if isinstance(value, int):
        return INTS
    if isinstance(value, float):
        return FLOATS
    if not isinstance(value, str):
        return None
    if DURATION_RE.match(value) or key in ("timeout", "perTryTimeout", "interval", "baseEjectionTime", "ttl"):
        return DURATIONS
    if key in HOST_KEYS:
        return HOSTS
    if key in IP_KEYS:
        return IPS
    if key in ("prefix", "exact", "uri", "path", "paths", "notPaths") or value.startswith("/"):
        return PATHS + STRINGS
    if key == "protocol":
        return PROTOCOLS
    if key in ("jwksUri", "uri") and value.startswith("http"):
        return URIS
    if key in ("credentialName", "credentialNames"):
        return SECRET_NAMES
    if key == "name":
        return NAMES
    if key in HEADER_KEYS:
        return HEADER_NAMES
    return STRINGS + HOSTS[:6]


def mutate(doc: dict[str, Any], rng: random.Random, index: dict[tuple, list[Any]]) -> str:
    """One mutation of `doc["spec"]` in place; what it did."""
    nodes = [(p, v) for p, v in _walk(doc["spec"], ("spec",))]
    leaves = [(p, v) for p, v in nodes if not isinstance(v, (dict, list)) and len(p) > 1]
    # Mostly edge values in leaves (where Envoy's limits bite), else structure (splice, add, drop, repeat).
    path, value = rng.choice(leaves if leaves and rng.random() < 0.6 else nodes)
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    sig = (doc["kind"], *_sig(path))
    r = rng.random()
    if isinstance(value, dict):
        if r < 0.45:  # add a key that this field has in some other seed
            prefix = len(sig)
            options = sorted({k[prefix] for k in index if len(k) == prefix + 1 and k[:prefix] == sig})
            missing = [o for o in options if o not in value] or options
            if missing:
                k = rng.choice(missing)
                value[k] = copy.deepcopy(rng.choice(index[(*sig, k)]))
                return f"add {k} at {'.'.join(map(str, path))}"
        header_map = key in HEADER_KEYS or key in ("labels", "matchLabels")
        if r < 0.65 and value and len(path) > 1 and header_map:  # a key with an unusual name
            value[rng.choice(HEADER_NAMES) or "x"] = rng.choice(STRINGS)
            return f"odd key at {'.'.join(map(str, path))}"
        if value and len(path) > 1:
            k = rng.choice(list(value))
            del value[k]
            return f"drop {k} at {'.'.join(map(str, path))}"
    if isinstance(value, list):
        if value and r < 0.35:
            n = rng.choice([1, 2, 5, 50])
            item = rng.choice(value)
            value.extend(copy.deepcopy(item) for _ in range(n))
            return f"repeat an item of {'.'.join(map(str, path))} x{n}"
        if value and r < 0.5:
            value.pop(rng.randrange(len(value)))
            return f"drop an item of {'.'.join(map(str, path))}"
        if r < 0.6 and len(path) > 1:
            _set(doc, path, [])
            return f"empty {'.'.join(map(str, path))}"
        if r < 0.8 and index.get((*sig,)):
            pass  # fall through to splice
        elif value:
            i = rng.randrange(len(value))
            return mutate_leaf(doc, (*path, i), value[i], key, rng) or "noop"
    if len(path) > 1 and (r < 0.25 or isinstance(value, (dict, list))):
        others = index.get(sig)
        if others:
            _set(doc, path, copy.deepcopy(rng.choice(others)))
            return f"splice {'.'.join(map(str, path))}"
    if len(path) > 1:
        return mutate_leaf(doc, path, value, key, rng) or "noop"
    return "noop"


def mutate_leaf(doc: dict[str, Any], path: tuple, value: Any, key: str, rng: random.Random) -> str | None:
    pool = pool_for(key, value)
    if pool is None:
        return None
    new = rng.choice(pool)
    if isinstance(new, str) and rng.random() < 0.1:
        new = new.upper()
    _set(doc, path, new)
    return f"set {'.'.join(map(str, path))} = {new!r:.60}"


def candidate(
    seeds: list[dict[str, Any]], index: dict[tuple, list[Any]], rng: random.Random, n: int
) -> tuple[list[dict], list[str]]:
    seed = rng.choice(seeds)
    doc = copy.deepcopy(seed)
    doc.pop("status", None)
    md = doc.setdefault("metadata", {}) or {}
    doc["metadata"] = {
        "name": f"fz-{n}",
        "namespace": "istio-system" if rng.random() < 0.07 else "default",
    }
    if md.get("labels"):
        doc["metadata"]["labels"] = md["labels"]
    if rng.random() < 0.8:
        retarget(doc, rng)
    ops = [mutate(doc, rng, index) for _ in range(rng.choice([1, 1, 2, 3, 4, 6]))]
    docs = [doc]
    if rng.random() < 0.05:  # the same kind twice, with another name (two resources for one host, ...)
        twin = copy.deepcopy(doc)
        twin["metadata"]["name"] = f"fz-{n}-b"
        docs.append(twin)
        ops.append("twin")
    return docs, ops


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=200)


# =================================================================================================
# The mesh


@dataclass
class Outcome:
    accepted: bool
    nacks: list[dict[str, Any]] = field(default_factory=list)  # {proxy, type, message}
    gen_errors: dict[str, str] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # API failures, a proxy that died, no convergence
    reject_reason: str = ""

    @property
    def bad(self) -> bool:
        return bool(self.nacks or self.gen_errors or self.other)


def _nack_marks(status: dict[str, Any]) -> dict[tuple, str]:
    return {
        (p["id"], t): n.get("nonce", "") for p in status["proxies"] for t, n in (p.get("nacks") or {}).items()
    }


class Driver:
    def __init__(self, mesh: MeshProcess, wait: float, ignore: list[re.Pattern[str]]) -> None:
        self.mesh = mesh
        self.wait = wait
        self.ignore = ignore

    def accepted(self, text: str) -> tuple[bool, str]:
        result = ingest_text(text, "fuzz.yaml")
        return result.ok, "; ".join(str(e) for e in result.errors[:3])

    def run(self, docs: list[dict[str, Any]]) -> Outcome:
        text = dump(docs)
        ok, why = self.accepted(text)
        if not ok:
            return Outcome(False, reject_reason=why)
        out = Outcome(True)
        before = self.mesh.status()
        marks = _nack_marks(before)
        gen_before = dict(before.get("generationErrors") or {})
        code, data = self.mesh._call(
            "POST", "/api/apply", text.encode(), {"wait": 0, "filename": "fuzz.yaml"}
        )
        if code != 200:
            out.other.append(f"/api/apply answered {code}: {json.dumps(data)[:500]}")
            return out
        version = str(data["version"])
        try:
            self._await(version, marks, out)
            status = self.mesh.status()
            out.gen_errors = {
                k: v
                for k, v in (status.get("generationErrors") or {}).items()
                if gen_before.get(k) != v and not any(r.search(v) for r in self.ignore)
            }
        finally:
            self._delete(text, out)
        return out

    def _await(self, version: str, marks: dict[tuple, str], out: Outcome) -> None:
        deadline = time.monotonic() + self.wait
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.mesh.status()
            for p in status["proxies"]:
                for t, n in (p.get("nacks") or {}).items():
                    if marks.get((p["id"], t)) != n.get("nonce", ""):
                        out.nacks.append(
                            {"proxy": f"{p['workload']}.{p['namespace']}", "type": t, "message": n["message"]}
                        )
            dead = [i for i in status["instances"] if i.get("state") != "Running"]
            if dead:
                out.other.append(f"instances not running: {[(i['workload'], i.get('state')) for i in dead]}")
            if out.nacks or dead:
                return
            if int(status["configVersion"]) >= int(version) and all(
                p.get("configVersion") is not None
                and int(p["configVersion"]) >= int(version)
                and all(v == "SYNCED" for v in p["sync"].values())
                for p in status["proxies"]
            ):
                return
            time.sleep(0.1)
        out.other.append(f"proxies did not ACK version {version} within {self.wait}s")

    def _delete(self, text: str, out: Outcome) -> None:
        code, data = self.mesh._call("POST", "/api/delete", text.encode(), {"wait": 0})
        if code != 200:
            out.other.append(f"/api/delete answered {code}: {json.dumps(data)[:300]}")
        try:
            self.mesh.wait_settled(30)
        except TimeoutError:
            out.other.append("mesh did not settle after the delete")


class Offline:
    """A fast pre-check, no Envoy involved: the same mesh as a Snapshot (pods as `isthmus up` makes them),
    every xDS resource each proxy would get, checked against Envoy's proto constraints (protoc-gen-validate,
    when importable: `pip install --target DIR protoc-gen-validate` and `--pgv-path DIR`) and for two
    listeners on one address. What it flags always goes to the mesh; the rest only as a sample."""

    def __init__(self, pgv_path: str | None) -> None:
        from isthmus.api import loader
        from isthmus.mesh.default_gateway import DEFAULT_GATEWAY_LABELS, DEFAULT_GATEWAY_YAML
        from isthmus.model.proxy import Proxy
        from isthmus.registry.types import Pod

        self.base = loader.load_text(MESH_YAML + "\n---\n" + DEFAULT_GATEWAY_YAML, "mesh.yaml")
        self.pods = [
            Pod("echo-v1-0", "default", "127.9.0.2", {"app": "echo", "version": "v1"}, workload="echo-v1", app_ports={8080: 41001, 9090: 41002}),
            Pod("echo2-v1-0", "default", "127.9.0.3", {"app": "echo2", "version": "v1"}, workload="echo2-v1", app_ports={9080: 41003, 9000: 41004}),
            Pod("client-0", "default", "127.9.0.4", {"app": "client", "version": "v1"}, workload="client", app_ports={8080: 41005}),
            Pod("istio-ingressgateway-0", "istio-system", "127.9.0.5", dict(DEFAULT_GATEWAY_LABELS), workload="istio-ingressgateway", service_account="istio-ingressgateway-service-account", gateway=True),
        ]  # fmt: skip
        self.proxies = [
            Proxy(
                id=Proxy.node_id("gateway" if pod.gateway else "sidecar", pod.ip, pod.name, pod.namespace),
                kind="gateway" if pod.gateway else "sidecar",
                ip=pod.ip,
                namespace=pod.namespace,
                instance=pod.name,
                workload=pod.workload,
                labels=dict(pod.labels),
            )
            for pod in self.pods
        ]
        self.validate: Callable[[Any], None] | None = None
        if pgv_path:
            sys.path.append(pgv_path)  # after the venv: its protobuf, not the one pip put beside PGV
        try:
            from protoc_gen_validate.validator import validate

            self.validate = validate
        except ImportError:
            print("protoc-gen-validate not importable: the offline check looks for duplicate listeners only")

    def _messages(self, msg: Any) -> Iterator[Any]:
        """`msg` and every message packed in an Any inside it (Envoy validates those when it loads them)."""
        from google.protobuf import any_pb2, symbol_database

        yield msg
        stack = [msg]
        while stack:
            m = stack.pop()
            for fd, value in m.ListFields():
                if fd.message_type is None:
                    continue
                if fd.message_type.GetOptions().map_entry:
                    message_values = fd.message_type.fields_by_name["value"].message_type is not None
                    items = list(value.values()) if message_values else []
                else:
                    items = list(value) if fd.is_repeated else [value]
                for item in items:
                    if isinstance(item, any_pb2.Any):
                        try:
                            inner = symbol_database.Default().GetSymbol(item.TypeName())()
                        except KeyError:
                            continue
                        item.Unpack(inner)
                        yield inner
                        stack.append(inner)
                    else:
                        stack.append(item)

    def problems(self, docs: list[dict[str, Any]], ignore: list[re.Pattern[str]]) -> list[str]:
        """`check`, which never raises (a loader or generator crash is a problem too)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PGV's templates use APIs protobuf 7 deprecates
                return self.check(docs, ignore)
        except Exception as exc:
            return [f"offline check raised {type(exc).__name__}: {exc}"]

    def check(self, docs: list[dict[str, Any]], ignore: list[re.Pattern[str]]) -> list[str]:
        from google.protobuf import symbol_database

        from isthmus.api import loader
        from isthmus.config.store import Store
        from isthmus.model.snapshot import Snapshot
        from isthmus.xds.gen import naming
        from isthmus.xds.gen.generator import MeshGenerator

        store = Store()
        store.apply([*self.base, *loader.load_text(dump(docs), "fuzz.yaml")], "fuzz")
        snap = Snapshot.build(1, store.list(), self.pods)
        gen = MeshGenerator()
        problems: list[str] = []

        def resources(proxy: Any, type_url: str, names: set[str] | None) -> dict[str, Any]:
            out = {}
            for name, packed in gen.generate(
                snap, proxy, type_url, frozenset(names) if names is not None else None
            ).items():
                msg = symbol_database.Default().GetSymbol(packed.TypeName())()
                packed.Unpack(msg)
                out[name] = msg
            return out

        for proxy in self.proxies:
            try:
                cds = resources(proxy, naming.CLUSTER_TYPE, None)
                lds = resources(proxy, naming.LISTENER_TYPE, None)
                routes: set[str] = set()
                eds: set[str] = set()
                ecds = {naming.JWT_EXTENSION, naming.EXT_AUTHZ_EXTENSION}
                for lst in lds.values():
                    for m in self._messages(lst):
                        if m.DESCRIPTOR.full_name.endswith("HttpConnectionManager") and m.HasField("rds"):
                            routes.add(m.rds.route_config_name)
                for c in cds.values():
                    if c.type == c.EDS:
                        eds.add(c.eds_cluster_config.service_name or c.name)
                rds = resources(proxy, naming.ROUTE_TYPE, routes)
                every = [*cds.items(), *lds.items(), *rds.items()]
                every += [*resources(proxy, naming.ENDPOINT_TYPE, eds).items()]
                every += [*resources(proxy, naming.EXTENSION_CONFIG_TYPE, ecds).items()]
            except Exception as exc:  # a generator that raises past the guard
                problems.append(f"{proxy.instance}: generation raised {type(exc).__name__}: {exc}")
                continue
            seen: dict[tuple[str, int], str] = {}
            for name, lst in lds.items():
                sa = lst.address.socket_address
                key = (sa.address, sa.port_value)
                if key in seen:
                    problems.append(f"{proxy.instance}: listeners {seen[key]} and {name} both bind {key}")
                seen[key] = name
            if self.validate is not None:
                for name, msg in every:
                    for m in self._messages(msg):
                        try:
                            self.validate(m)
                        except Exception as exc:  # ValidationFailed, or PGV failing on a rule it lacks
                            if type(exc).__name__ == "ValidationFailed":
                                problems.append(
                                    f"{proxy.instance}: {m.DESCRIPTOR.full_name} in {name}: {exc}"
                                )
        problems += [
            f"generation error {k}: {v}"
            for k, v in snap.generation_errors.items()
            if not any(r.search(v) for r in ignore)
        ]
        return problems


def signature(out: Outcome) -> str:
    """What makes two findings the same: the xDS type and Envoy's message without names and numbers."""

    def norm(s: str) -> str:
        s = re.sub(r"fz-\d+(-b)?", "NAME", s)
        s = re.sub(r"\d+", "N", s)
        return s[-160:]

    parts = sorted({f"NACK {n['type']}: {norm(n['message'])}" for n in out.nacks})
    parts += sorted(
        {
            f"GEN {re.sub(r'fz-[0-9b-]+', 'NAME', k).split(' ')[0]}: {norm(v)}"
            for k, v in out.gen_errors.items()
        }
    )
    parts += sorted({f"OTHER {norm(o)}" for o in out.other if "did not ACK" not in o})
    return " | ".join(parts) or "timeout"


def _norm(s: str) -> str:
    return re.sub(r"\d+", "N", re.sub(r"fz-\d+(-b)?", "NAME", s))[:300]


def similar(a: str, b: str) -> bool:
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() > 0.7


def minimize(
    driver: Driver, docs: list[dict[str, Any]], reproduces: Callable[[list[dict[str, Any]]], bool], steps: int
) -> list[dict[str, Any]]:
    """Greedy: drop keys and list items (biggest first) while the finding still reproduces."""
    best = copy.deepcopy(docs)
    tries = 0
    changed = True
    while changed and tries < steps:
        changed = False
        paths = []
        for di, d in enumerate(best):
            for path, _ in _walk(d["spec"], ("spec",)):
                if len(path) > 1:
                    paths.append((di, *path))
        paths.sort(key=len)
        if len(best) > 1:
            paths.insert(0, (len(best) - 1,))  # the twin first
        for p in paths:
            if tries >= steps:
                break
            trial = copy.deepcopy(best)
            try:
                if len(p) == 1:
                    trial.pop(p[0])
                else:
                    _delete(trial[p[0]], p[1:])
            except (KeyError, IndexError, TypeError):
                continue
            if not driver.accepted(dump(trial))[0]:
                continue
            tries += 1
            if reproduces(trial):
                best = trial
                changed = True
                break
    return best


# =================================================================================================


def mesh_dir(work: Path) -> Path:
    config = work / "config"
    config.mkdir(parents=True)
    (config / "mesh.yaml").write_text(MESH_YAML)
    return config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-budget", type=float, default=3600.0, help="stop after this many seconds")
    ap.add_argument("--wait", type=float, default=8.0, help="how long to wait for ACKs per candidate")
    ap.add_argument("--minimize-steps", type=int, default=30)
    ap.add_argument("--kinds", default="", help="comma-separated kinds to fuzz (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="write the findings here as JSON")
    ap.add_argument(
        "--offline",
        action="store_true",
        help="check every accepted candidate offline first (generators + Envoy's proto rules, see Offline); "
        "flagged ones go to the mesh, the others only with probability --mesh-sample",
    )
    ap.add_argument("--mesh-sample", type=float, default=0.1)
    ap.add_argument("--pgv-path", default=None, help="where protoc-gen-validate is installed (pip --target)")
    ap.add_argument("--mesh-log", type=Path, default=None, help="copy the mesh's log here at the end")
    ap.add_argument(
        "--ignore",
        action="append",
        default=None,
        help="regex of generation errors that are reports by design, not findings (repeatable; "
        "default: undefined Telemetry/CUSTOM providers, which istiod also skips at push time)",
    )
    args = ap.parse_args(argv)

    ignore = [re.compile(r) for r in (args.ignore if args.ignore is not None else DESIGNED_REPORTS) if r]
    rng = random.Random(args.seed)
    seeds = load_seeds()
    if args.kinds:
        wanted = set(args.kinds.split(","))
        pool = [s for s in seeds if s["kind"] in wanted]
    else:
        pool = seeds
    index = corpus_index(seeds)
    print(f"{len(seeds)} seed resources ({len(pool)} in the fuzzed kinds)", flush=True)

    started = time.monotonic()
    findings: dict[str, dict[str, Any]] = {}
    counts = {"accepted": 0, "rejected": 0, "bad": 0, "offline only": 0}
    offline = Offline(args.pgv_path) if args.offline else None
    with tempfile.TemporaryDirectory(prefix="isthmus-fuzz-") as tmp:
        work = Path(tmp)
        mesh = MeshProcess(mesh_dir(work), work)
        print(f"starting the mesh on {mesh.subnet} (log: {mesh.log_path})", flush=True)
        mesh.start(timeout=180)
        driver = Driver(mesh, args.wait, ignore)
        try:
            for i in range(args.iterations):
                if time.monotonic() - started > args.time_budget:
                    print(f"time budget reached after {i} iterations", flush=True)
                    break
                if i and i % (500 if offline is not None else 25) == 0:
                    print(f"... {i} iterations, {counts}, {time.monotonic() - started:.0f}s", flush=True)
                docs, ops = candidate(pool, index, rng, i)
                problems: list[str] = []
                if offline is not None:
                    if not driver.accepted(dump(docs))[0]:
                        counts["rejected"] += 1
                        continue
                    problems = offline.problems(docs, ignore)
                    if not problems and rng.random() >= args.mesh_sample:
                        counts["offline only"] += 1
                        continue
                try:
                    out = driver.run(docs)
                except Exception as exc:  # the loader or the API crashed: a finding too
                    out = Outcome(True, other=[f"driver: {type(exc).__name__}: {exc}"])
                    if mesh.proc is not None and mesh.proc.poll() is not None:
                        print(f"the control plane exited:\n{mesh.log_tail()}", flush=True)
                        findings.setdefault(
                            "control plane exited", {"yaml": dump(docs), "ops": ops, "outcome": out.__dict__}
                        )
                        break
                counts["accepted" if out.accepted else "rejected"] += 1
                if problems and not out.bad:
                    # flagged offline, yet every proxy ACKed: report it, marked as such
                    out.other.append(f"offline check only (the mesh ACKed): {problems[0][:400]}")
                if not out.bad:
                    continue
                counts["bad"] += 1
                sig = signature(out)
                if any(similar(sig, s) for s in findings):
                    print(f"[{i}] again: {sig[:150]}", flush=True)
                    continue
                print(f"[{i}] NEW FINDING ({docs[0]['kind']}; {', '.join(ops)}): {sig[:300]}", flush=True)
                steps = args.minimize_steps if sig != "timeout" else min(args.minimize_steps, 4)
                if out.nacks or out.gen_errors or offline is None or not problems:

                    def reproduces(trial: list[dict[str, Any]], sig: str = sig) -> bool:
                        again = driver.run(trial)
                        return again.bad and similar(signature(again), sig)
                else:  # only the offline check sees it: minimize against that, with more steps (it is fast)
                    steps *= 4

                    def reproduces(trial: list[dict[str, Any]], first: str = problems[0]) -> bool:
                        return any(similar(_norm(p), _norm(first)) for p in offline.problems(trial, ignore))

                small = minimize(driver, docs, reproduces, steps) if steps else docs
                findings[sig] = {"iteration": i, "ops": ops, "outcome": out.__dict__, "yaml": dump(small)}
                print(textwrap.indent(dump(small), "    "), flush=True)
                for n in out.nacks:
                    print(f"    NACK {n['proxy']} {n['type']}: {n['message'][-600:]}", flush=True)
                for k, v in out.gen_errors.items():
                    print(f"    generation error {k}: {v[:600]}", flush=True)
                for o in out.other:
                    print(f"    {o}", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        finally:
            mesh.stop()
            if args.mesh_log:
                args.mesh_log.write_bytes(mesh.log_path.read_bytes())
    print(
        f"\n{sum(counts[k] for k in ('accepted', 'rejected'))} candidates: {counts}; {len(findings)} distinct findings"
    )
    for sig, f in findings.items():
        print(f"\n=== {sig[:300]}\n(iteration {f['iteration']}: {', '.join(f['ops'])})\n{f['yaml']}")
        for n in f["outcome"]["nacks"][:3]:
            print(f"  NACK {n['proxy']} {n['type']}: {n['message'][-800:]}")
        for k, v in f["outcome"]["gen_errors"].items():
            print(f"  generation error {k}: {v[:800]}")
        for o in f["outcome"]["other"]:
            print(f"  {o}")
    if args.out:
        args.out.write_text(json.dumps(findings, indent=1, default=str))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
