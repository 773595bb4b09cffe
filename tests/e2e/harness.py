"""A real mesh for end-to-end tests: `isthmus up` as a subprocess, driven through its public contracts."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from isthmus.client import sync
from isthmus.client.http import Response
from isthmus.client.load import LoadResult

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Each mesh of a test run gets its own /16; the pid spreads concurrent runs apart, and a lease (an flock
# on a per-subnet file) keeps two processes (test runs, benches) from ever sharing one: two meshes on
# the same addresses would answer each other's requests.
_SUBNETS = itertools.count(10 + (os.getpid() % 20) * 10)
_LEASE_DIR = Path(tempfile.gettempdir()) / "isthmus-e2e-subnets"
_LEASES: list[IO[str]] = []  # held for the life of the process; the OS releases them when it exits


def lease_subnet(n: int) -> bool:
    """Take 127.n.0.0/16 for this process, unless another process holds it."""
    _LEASE_DIR.mkdir(exist_ok=True)
    f = (_LEASE_DIR / f"{n}.lock").open("w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _LEASES.append(f)
    return True


def next_subnet() -> str:
    for _ in range(240):
        n = next(_SUBNETS) % 240 + 10
        if lease_subnet(n):
            return f"127.{n}.0.0/16"
    raise RuntimeError(f"every test subnet is leased by another process (see {_LEASE_DIR})")


class MeshProcess:
    def __init__(
        self,
        config_dir: Path,
        workdir: Path,
        *,
        subnet: str | None = None,
        env: dict[str, str] | None = None,
        up_args: Sequence[str] = (),
    ) -> None:
        self.config_dir = config_dir
        # Extra environment of `isthmus up` (the control plane's settings, e.g. its JWKS resolver's).
        # The JWKS resolver fetches only from this mesh's own hosts (and loopback): a jwksUri or an
        # issuer's OpenID discovery naming another host fails as an unknown name, nothing leaves the
        # machine (not even a DNS query).
        self.env = {"ISTHMUS_JWKS_RESOLVER_OFFLINE": "true", **(env or {})}
        self.up_args = list(up_args)  # extra `isthmus up` flags (e.g. --publish)
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.subnet = subnet or next_subnet()
        self.log_path = workdir / "mesh.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""

    @classmethod
    def from_yaml(cls, workdir: Path, yaml: str, *, env: dict[str, str] | None = None) -> MeshProcess:
        """A mesh whose whole config is one YAML text (written to `workdir/config/mesh.yaml`)."""
        config = workdir / "config"
        config.mkdir()
        (config / "mesh.yaml").write_text(yaml)
        return cls(config, workdir, env=env)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> MeshProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "isthmus.cli.main", "up", str(self.config_dir),
                "--subnet", self.subnet, "--state-dir", str(self.state_dir), "-v", *self.up_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"isthmus up exited with {self.proc.returncode}:\n{self.log_tail()}")
            state = self.state_dir / "state.json"
            if state.exists():
                try:
                    self.api = json.loads(state.read_text())["api"]
                    status = self.status()
                except (OSError, ValueError, KeyError, urllib.error.URLError):
                    time.sleep(0.1)
                    continue
                if self._settled(status):
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"mesh did not come up within {timeout}s:\n{self.log_tail()}")

    @staticmethod
    def _settled(status: dict[str, Any]) -> bool:
        if not status["instances"]:
            return False
        if any(i.get("state") != "Running" for i in status["instances"]):
            return False
        # Every proxy has ACKed the newest snapshot (pushes are debounced, so SYNCED alone can be stale).
        return all(
            p.get("sync")
            and all(v == "SYNCED" for v in p["sync"].values())
            and p.get("configVersion") == status["configVersion"]
            for p in status["proxies"]
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> MeshProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- API ------------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: dict | None = None,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        url = self.api + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=body, method=method)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def status(self) -> dict[str, Any]:
        code, data = self._call("GET", "/api/status", timeout=5)
        assert code == 200, data
        return data

    def apply(self, text: str, *, wait: float = 15.0, expect_ok: bool = True) -> dict[str, Any]:
        code, data = self._call("POST", "/api/apply", text.encode(), {"wait": wait, "filename": "test.yaml"})
        if expect_ok:
            assert code == 200, data
            if data.get("synced") is False:
                nacks = [
                    f"{p['instance']}.{p['namespace']} {t}: {n['message'][-300:]}"
                    for p in self.status()["proxies"]
                    for t, n in (p.get("nacks") or {}).items()
                ]
                raise AssertionError(f"apply did not converge; NACKs: {nacks}")
        return {"code": code, **(data or {})}

    def delete(self, text: str, *, wait: float = 15.0) -> dict[str, Any]:
        code, data = self._call("POST", "/api/delete", text.encode(), {"wait": wait})
        assert code == 200, data
        return data

    def wait_settled(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status = self.status()
        while time.monotonic() < deadline:
            status = self.status()
            if self._settled(status):
                return status
            time.sleep(0.1)
        raise TimeoutError(f"mesh did not settle: {json.dumps(status, indent=1)}")

    def resources(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind}
        if namespace:
            params["namespace"] = namespace
        code, data = self._call("GET", "/api/resources", params=params, timeout=5)
        assert code == 200, data
        return data

    def wait_for_resource(
        self, kind: str, name: str, predicate: Any = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Until the store holds the resource (and `predicate(resource)`), then until proxies have it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.resources(kind) if r["metadata"]["name"] == name]
            if found and (predicate is None or predicate(found[0])):
                self.wait_settled(max(1.0, deadline - time.monotonic()))
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} not in the expected state: {found}")
            time.sleep(0.05)

    def wait_for_absent(self, kind: str, name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while any(r["metadata"]["name"] == name for r in self.resources(kind)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} is still there")
            time.sleep(0.05)
        self.wait_settled(max(1.0, deadline - time.monotonic()))

    # --- traffic --------------------------------------------------------------------------------
    def proxy(self, workload: str, instance: int = 0, namespace: str = "default") -> dict[str, Any]:
        proxies = [
            p for p in self.status()["proxies"] if p["workload"] == workload and p["namespace"] == namespace
        ]
        proxies.sort(key=lambda p: p["instance"])
        assert proxies, f"no proxy for {namespace}/{workload}"
        return proxies[instance]

    def proxy_url(self, workload: str, namespace: str = "default") -> str:
        p = self.proxy(workload, namespace=namespace)
        return f"http://{p['ip']}:{p['outboundPort']}"

    def gateway_address(
        self, port: int = 80, workload: str = "istio-ingressgateway", namespace: str = "istio-system"
    ) -> str:
        p = self.proxy(workload, namespace=namespace)
        for lst in p["listeners"]:
            if lst["port"] == port:
                return lst["address"]
        raise AssertionError(f"gateway {workload} has no listener for port {port}: {p['listeners']}")

    def curl(self, workload: str, url: str, *, namespace: str = "default", **kwargs: Any) -> Response:
        return sync.request(url, proxy=self.proxy_url(workload, namespace), **kwargs)

    def instance(self, workload: str, namespace: str = "default") -> dict[str, Any]:
        found = [
            i for i in self.status()["instances"] if i["workload"] == workload and i["namespace"] == namespace
        ]
        assert found, f"no instance of {namespace}/{workload}"
        return sorted(found, key=lambda i: i["instance"])[0]

    def curl_direct(self, workload: str, url: str, *, namespace: str = "default", **kwargs: Any) -> Response:
        """From a pod without a sidecar: the mesh host is resolved like cluster DNS, the pod IP is the source."""
        from isthmus.client.http import parse_url
        from isthmus.client.mesh import resolve

        inst = self.instance(workload, namespace)
        target = parse_url(url)
        addresses = resolve(self.api, target.host, target.port, namespace)
        assert addresses, f"{target.host}:{target.port} resolves to nothing"
        return sync.request(url, connect_to=addresses[0], source_ip=inst["ip"], **kwargs)

    def load(
        self,
        workload: str,
        url: str,
        count: int,
        *,
        namespace: str = "default",
        concurrency: int = 4,
        **kwargs: Any,
    ) -> LoadResult:
        return sync.run_load(
            url, proxy=self.proxy_url(workload, namespace), count=count, concurrency=concurrency, **kwargs
        )


T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll `fn` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def tcp_versions(
    mesh: MeshProcess, authority: str, n: int, client: str = "client", namespace: str = "default"
) -> Counter[str]:
    """The versions of the TCP echo servers (`isthmus echo --tcp`) answering n CONNECT tunnels to
    `authority` through the client's sidecar: each echoes its line as '<version> <line>'."""
    out: Counter[str] = Counter()
    for i in range(n):
        resp = sync.request(
            f"tcp://{authority}", proxy=mesh.proxy_url(client, namespace), body=f"ping {i}", timeout=10
        )
        assert resp.status == 200, (resp.status, resp.text)
        version, _, line = resp.text.strip().partition(" ")
        assert line == f"ping {i}"
        out[version] += 1
    return out


def echo_body(resp: Response) -> dict[str, Any]:
    assert resp.status == 200, (resp.status, resp.body)
    return json.loads(resp.body)


@contextmanager
def applied(mesh: MeshProcess, *docs: str) -> Iterator[None]:
    """Apply `docs` (one YAML text) and delete them again when the block ends, whatever happens."""
    text = "\n---\n".join(textwrap.dedent(d) for d in docs)
    mesh.apply(text)
    try:
        yield
    finally:
        mesh.delete(text)
