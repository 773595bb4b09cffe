"""`isthmus up`: the local runner that supervises the control plane, the proxies and the workloads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.api import loader
from isthmus.config.directory import DirectorySource
from isthmus.config.store import Config, Store
from isthmus.mesh.addresses import AddressPool, free_port
from isthmus.mesh.control_plane import ControlPlane
from isthmus.mesh.default_gateway import BUILTIN_ORIGIN, DEFAULT_GATEWAY_LABELS, DEFAULT_GATEWAY_YAML
from isthmus.mesh.pods import ADMIN_PORT, OUTBOUND_PORT, PodProcess, PodSpec
from isthmus.mesh.security import MeshSecurity
from isthmus.mesh.state import claim_state_dir, clear_state, write_state
from isthmus.model.ingress import derived_gateways
from isthmus.model.mesh import MeshSettings
from isthmus.model.proxy_config import EffectiveProxyConfig, effective_proxy_config
from isthmus.registry.build import labels_match
from isthmus.registry.types import socket_port
from isthmus.telemetry import envoy as telemetry_envoy

log = logging.getLogger(__name__)

XDS_PORT = 15010
API_PORT = 15014
BUILTIN_SOURCE = "builtin"
# Envoy's gauge of listeners it ACKed but cannot serve yet (waiting for their SDS certificates).
WARMING_STATS = r"^listener_manager\.total_listeners_warming$"


@dataclass
class MeshOptions:
    config_dir: Path
    state_dir: Path
    subnet: str = "127.1.0.0/16"
    port_offset: int = 8000
    publish: list[str] = field(default_factory=list)
    envoy_concurrency: int = 1
    start_timeout: float = 60.0

    @property
    def effective_port_offset(self) -> int:
        """Ports below 1024 need root; without it they move up by the offset."""
        return 0 if os.geteuid() == 0 else self.port_offset


def _workload_spec_hash(cfg: Config) -> str:
    data = json.dumps(
        {"spec": cfg.resource.to_dict().get("spec"), "labels": cfg.metadata.labels or {}}, sort_keys=True
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


class Mesh:
    def __init__(self, options: MeshOptions) -> None:
        self.options = options
        self.store = Store()
        self.cp = ControlPlane(self.store)
        self.addresses = AddressPool(options.subnet)
        self.cp_ip = self.addresses.control_plane
        self.pods: dict[tuple[str, str], list[PodProcess]] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_again = False
        self._stopping = asyncio.Event()
        self.directory: DirectorySource | None = None
        self.http_runner: Any = None
        self.publisher: Any = None  # isthmus.mesh.publish.Publisher with --publish
        # Set once this mesh owns the state dir: a second `up` refused on a live mesh's state dir must not
        # clear that mesh's state.json on its way out (every CLI command would lose the running mesh).
        self._claimed_state = False
        self.started_at = time.time()
        self.ready = asyncio.Event()
        self.on_event: Callable[[str], None] = lambda msg: log.info("%s", msg)
        self._tasks: set[asyncio.Task] = set()
        self.security: MeshSecurity | None = None
        # (pod name, fingerprint) already reported as running an older ProxyConfig: one line per change.
        self._stale_reported: set[tuple[str, str]] = set()

    # --- addresses ---------------------------------------------------------------------------
    @property
    def xds_address(self) -> tuple[str, int]:
        return (self.cp_ip, XDS_PORT)

    @property
    def api_url(self) -> str:
        return f"http://{self.cp_ip}:{API_PORT}"

    # --- start / stop ------------------------------------------------------------------------
    async def start(self) -> None:
        opts = self.options
        claim_state_dir(opts.state_dir)
        self._claimed_state = True
        opts.state_dir.mkdir(parents=True, exist_ok=True)
        self.directory = DirectorySource(opts.config_dir, self.store, on_errors=self._report_file_errors)
        for path, result in self.directory.load_all():
            if not result.ok:
                self._report_file_errors(path, result)
        await self.cp.start(self.cp_ip, XDS_PORT, stats_port=telemetry_envoy.STATS_PORT)
        mesh = self.cp.snapshot.mesh
        proxy_metadata = {}
        dc = getattr(mesh.spec, "default_config", None) if mesh.spec is not None else None
        if dc is not None:
            proxy_metadata = dict(dc.proxy_metadata or {})
        # A lambda: `on_event` may be replaced after start (the CLI prints events its own way).
        self.security = MeshSecurity(
            opts.state_dir, mesh.trust_domain, proxy_metadata, on_event=lambda msg: self.on_event(msg)
        )
        await self.security.start(self.cp_ip)
        from isthmus.mesh.http_api import start_http_api

        self.http_runner = await start_http_api(self, self.cp_ip, API_PORT)
        self._write_state()
        self.store.subscribe(self._on_store_change)
        self.directory.start()
        await self.reconcile()
        # Ready means every proxy holds the newest config, endpoints of the last pods included.
        await self.cp.wait_pushed(self.cp.snapshot.version, timeout=10)
        self._write_state()
        self._spawn(self._supervise())
        if opts.publish:
            from isthmus.mesh.publish import Publisher, parse_publish

            pubs = [parse_publish(p, opts.effective_port_offset) for p in opts.publish]
            self.publisher = Publisher(pubs, self.status)
            await self.publisher.start()
        self.ready.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, interval: float = 0.5) -> None:
        """Restart crashed proxies and apps (each pod on its own, with backoff), like kubelet."""
        recovering: set[PodProcess] = set()

        async def recover(pod: PodProcess) -> None:
            try:
                what = await pod.recover()
                if what is not None:
                    self.on_event(
                        f"{pod.spec.namespace}/{pod.spec.name}: {what} restarted ({pod.last_crash})"
                    )
            except Exception as exc:
                pod.state = "Failed"
                self.on_event(f"{pod.spec.namespace}/{pod.spec.name}: restart failed: {exc}")
            finally:
                recovering.discard(pod)
                self._write_state()

        while not self._stopping.is_set():
            for pod in self.all_pods():
                if pod not in recovering and pod.crashed() is not None:
                    recovering.add(pod)
                    self._spawn(recover(pod))
            await asyncio.sleep(interval)

    def _report_file_errors(self, path: Path, result: Any) -> None:
        self.on_event(
            f"config: {path.name} refused, the mesh keeps its last good config:\n"
            + "\n".join(f"  {e}" for e in result.errors)
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.directory is not None:
            await self.directory.stop()
        all_pods = [p for pods in self.pods.values() for p in pods]
        drain = min(self.cp.snapshot.mesh.termination_drain_duration_s, 1.0)
        await asyncio.gather(*(self._stop_pod(p, drain) for p in all_pods), return_exceptions=True)
        self.pods.clear()
        for task in list(self._tasks):
            task.cancel()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        await self.cp.stop()
        if self.security is not None:
            await self.security.stop()
        if self._claimed_state:
            clear_state(self.options.state_dir)

    async def _stop_pod(self, pod: PodProcess, drain_s: float) -> None:
        try:
            await asyncio.wait_for(pod.stop(drain_s=drain_s), drain_s + 10)
        except Exception:
            log.exception("pod %s: stop failed, killing it", pod.spec.name)
            await pod.kill()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()

    def _write_state(self) -> None:
        write_state(
            self.options.state_dir,
            {
                "pid": os.getpid(),
                "api": self.api_url,
                "xds": f"{self.cp_ip}:{XDS_PORT}",
                "subnet": self.options.subnet,
                "configDir": str(self.options.config_dir.resolve()),
                "startedAt": self.started_at,
            },
        )

    # --- workloads ----------------------------------------------------------------------------
    def _on_store_change(self, change: Any) -> None:
        kinds = {k[0] for k in (*change.upserted, *change.deleted)}
        if kinds & {"Secret", "Gateway"} and self.security is not None:
            # Gateways decide which kubernetes-gateway:// credentials a gateway may read.
            self.security.sync_secrets(self.store.list("Secret"), self.store.list("Gateway"))
        if kinds & {"ProxyConfig", "MeshConfig"}:
            self._report_stale_proxy_configs()
        # Ingresses (and what decides which are Istio's) derive Gateways: the default gateway may be wanted.
        wanted_kinds = {"Workload", "Gateway", "Service", "Ingress", "IngressClass", "MeshConfig"}
        if kinds & wanted_kinds and not self._stopping.is_set():
            task = asyncio.get_running_loop().create_task(self.reconcile())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- ProxyConfig ----------------------------------------------------------------------------
    def effective_proxy_config(self, namespace: str, labels: dict[str, str]) -> EffectiveProxyConfig:
        """What a pod of `namespace` with `labels` would start with now (from the store, not the last
        snapshot, so a reconcile right after a change already sees it)."""
        meshes = self.store.list("MeshConfig")
        spec = meshes[0].spec if meshes else None
        return effective_proxy_config(
            self.store.list("ProxyConfig"),
            default_config=getattr(spec, "default_config", None),
            root_namespace=MeshSettings.from_spec(spec).root_namespace,
            namespace=namespace,
            labels=labels,
        )

    def proxy_config_outdated(self, pod: PodProcess) -> bool:
        """Istio applies ProxyConfig at pod start: a running pod keeps the one it started with."""
        if pod.spec.proxy_kind is None:
            return False
        now = self.effective_proxy_config(pod.spec.namespace, pod.spec.labels)
        return now.fingerprint() != pod.spec.proxy_config.fingerprint()

    def _report_stale_proxy_configs(self) -> None:
        """One event per pod and change: the new ProxyConfig waits for a restart, as in Istio."""
        for pod in self.all_pods():
            if not self.proxy_config_outdated(pod):
                continue
            s = pod.spec
            now = self.effective_proxy_config(s.namespace, s.labels)
            key = (f"{s.namespace}/{s.name}", now.fingerprint())
            if key in self._stale_reported:
                continue
            self._stale_reported.add(key)
            self.on_event(
                f"{s.namespace}/{s.name} runs with an older ProxyConfig ({_pc_text(s.proxy_config)}; now "
                f"{_pc_text(now)}): it applies when the pod restarts (isthmus restart {s.workload} -n {s.namespace})"
            )

    def _ensure_default_gateway(self) -> None:
        # With the Gateways istiod derives from Kubernetes Ingresses of its class.
        gateways = self.store.list("Gateway") + derived_gateways(self.store.list())
        wanted = any(labels_match(g.spec.selector or {}, DEFAULT_GATEWAY_LABELS) for g in gateways)
        user_provides = False
        if wanted:
            user_provides = any(
                c.source != BUILTIN_SOURCE
                and c.spec.gateway
                and any(
                    labels_match(g.spec.selector or {}, c.metadata.labels or {})
                    for g in gateways
                    if labels_match(g.spec.selector or {}, DEFAULT_GATEWAY_LABELS)
                )
                for c in self.store.list("Workload")
            )
            if not user_provides:
                existing = self.store.list(namespace="istio-system")
                if not any(c.source == BUILTIN_SOURCE for c in existing):
                    resources = loader.load_text(DEFAULT_GATEWAY_YAML, BUILTIN_ORIGIN)
                    # Do not override a user's own Service of that name.
                    resources = [r for r in resources if self.store.get(r.key) is None]
                    self.store.apply(resources, BUILTIN_SOURCE)
                return
        # Gone when no Gateway selects it any more, or when a gateway Workload of the user's now provides
        # it (DESIGN §3: only "when ... no Workload of the user's already provides it").
        builtin = [c.key for c in self.store.list() if c.source == BUILTIN_SOURCE]
        if builtin and (not wanted or user_provides):
            self.store.delete(builtin)

    async def reconcile(self) -> None:
        if self._reconcile_lock.locked():
            self._reconcile_again = True
            return
        async with self._reconcile_lock:
            while True:
                self._reconcile_again = False
                self._ensure_default_gateway()
                await self._reconcile_once()
                if not self._reconcile_again or self._stopping.is_set():
                    break
            self._write_state()

    async def _reconcile_once(self) -> None:
        desired = {c.key[1:]: c for c in self.store.list("Workload")}
        starts: list[Any] = []
        stops: list[PodProcess] = []
        for key, pods in list(self.pods.items()):
            if key not in desired:
                stops.extend(pods)
                del self.pods[key]
        for key, cfg in desired.items():
            pods = self.pods.setdefault(key, [])
            spec_hash = _workload_spec_hash(cfg)
            replicas = int(cfg.spec.replicas if cfg.spec.replicas is not None else 1)
            current = [p for p in pods if p.spec.spec_hash == spec_hash]
            outdated = [p for p in pods if p.spec.spec_hash != spec_hash]
            if outdated:
                starts.append(self._roll(key, cfg, spec_hash, outdated, replicas))
                continue
            if len(current) < replicas:
                for _ in range(replicas - len(current)):
                    starts.append(self._start_pod(key, cfg, spec_hash))
            elif len(current) > replicas:
                extra = current[replicas:]
                for p in extra:
                    pods.remove(p)
                stops.extend(extra)
        drain = self.cp.snapshot.mesh.termination_drain_duration_s
        results = await asyncio.gather(
            *starts, *(self._stop_pod(p, drain) for p in stops), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                self.on_event(f"workload error: {r}")

    def _new_pod(self, key: tuple[str, str], cfg: Config, spec_hash: str) -> PodProcess:
        ns, name = key
        index = self._counters.get(key, 0)
        self._counters[key] = index + 1
        ip = self.addresses.allocate()
        spec = cfg.spec
        gateway = bool(spec.gateway)
        sidecar = bool(spec.sidecar if spec.sidecar is not None else True) and not gateway
        # An app with a sidecar listens on private ports; one without listens on the pod address itself,
        # on the declared ports, shifted below 1024 like every listen port of a mesh run without root.
        offset = self.options.effective_port_offset
        app_ports = {
            int(p): (free_port("127.0.0.1") if sidecar else socket_port(int(p), offset))
            for p in spec.ports or ()
        }
        labels = dict(cfg.metadata.labels or {})
        # Fixed at pod start, as Istio's injector fixes it in the pod spec (see PodSpec.proxy_config).
        proxy_config = self.effective_proxy_config(ns, labels)
        pod_spec = PodSpec(
            workload=name,
            namespace=ns,
            name=f"{name}-{index}",
            ip=ip,
            labels=labels,
            service_account=spec.service_account or "default",
            sidecar=sidecar,
            gateway=gateway,
            command=list(spec.command) if spec.command else None,
            env={k: str(v) for k, v in (spec.env or {}).items()},
            app_ports=app_ports,
            spec_hash=spec_hash,
            proxy_config=proxy_config,
        )
        return PodProcess(
            pod_spec,
            store=self.store,
            control_plane=self.cp,
            xds_address=self.xds_address,
            workdir=self.options.state_dir / "pods" / ns / pod_spec.name,
            port_offset=self.options.effective_port_offset,
            # ProxyConfig concurrency (0: Envoy's default, one worker per core); unset everywhere: the
            # runner's --envoy-concurrency, which stands in for the injector's CPU-based default.
            concurrency=self.options.envoy_concurrency
            if proxy_config.concurrency is None
            else proxy_config.concurrency,
            # Envoy's --drain-time-s is ProxyConfig drainDuration (45 s), as istio-agent passes it: it
            # is how long connections on a listener changed by LDS may finish before Envoy closes
            # them. terminationDrainDuration is the stop-time wait (PodProcess.stop).
            drain_time_s=self.cp.snapshot.mesh.drain_duration_s,
            security=self.security,
        )

    async def _start_pod(self, key: tuple[str, str], cfg: Config, spec_hash: str) -> PodProcess:
        pod = self._new_pod(key, cfg, spec_hash)
        self.pods.setdefault(key, []).append(pod)
        try:
            await pod.start(timeout=self.options.start_timeout)
        except Exception as exc:
            pod.state = "Failed"
            await pod.kill()
            self.store.remove_pod(pod.spec.namespace, pod.spec.name)
            raise RuntimeError(f"{key[0]}/{pod.spec.name} failed to start: {exc}") from exc
        self.on_event(f"started {pod.spec.namespace}/{pod.spec.name} on {pod.spec.ip}")
        return pod

    async def _roll(
        self, key: tuple[str, str], cfg: Config, spec_hash: str, outdated: list[PodProcess], replicas: int
    ) -> None:
        """Replace instances one by one: start the new one, then drain and stop an old one."""
        drain = self.cp.snapshot.mesh.termination_drain_duration_s
        pods = self.pods[key]
        for old in list(outdated):
            if len([p for p in pods if p.spec.spec_hash == spec_hash]) < replicas:
                await self._start_pod(key, cfg, spec_hash)
            pods.remove(old)
            await self._stop_pod(old, drain)
        while len([p for p in pods if p.spec.spec_hash == spec_hash]) < replicas:
            await self._start_pod(key, cfg, spec_hash)

    async def restart(self, namespace: str, workload: str) -> list[dict[str, Any]]:
        """Rolling restart: each instance is replaced by a new one, which is ready (and in the endpoint
        set) before the old one leaves it and drains (see PodProcess.stop). One at a time, so the
        workload never has fewer ready instances than before. Returns what happened to each instance:
        ``{"old", "new", "startMs", "leftEndpointsMs", "endpointsAcked", "drainedMs", "connectionsLeft",
        "stoppedMs"}``."""
        key = (namespace, workload)
        cfg = self.store.get(("Workload", namespace, workload))
        if cfg is None or key not in self.pods:
            raise KeyError(f"no workload {namespace}/{workload}")
        report: list[dict[str, Any]] = []
        async with self._reconcile_lock:
            spec_hash = _workload_spec_hash(cfg)
            drain = self.cp.snapshot.mesh.termination_drain_duration_s
            pods = self.pods[key]
            for old in list(pods):
                started = time.monotonic()
                new = await self._start_pod(key, cfg, spec_hash)
                entry: dict[str, Any] = {
                    "old": old.spec.name,
                    "new": new.spec.name,
                    "startMs": round((time.monotonic() - started) * 1000, 1),
                }
                pods.remove(old)
                await self._stop_pod(old, drain)
                entry.update(old.drain_report or {})
                report.append(entry)
                self.on_event(
                    f"restart {namespace}/{workload}: {old.spec.name} -> {new.spec.name} "
                    f"(drained in {entry.get('drainedMs', 0):.0f} ms)"
                )
        self._write_state()
        return report

    async def wait_warm(self, timeout: float) -> list[str]:
        """Until no running proxy has a listener warming (see `wait_warm`); the ones that still do."""
        return await wait_warm(self.all_pods(), timeout)

    # --- views --------------------------------------------------------------------------------
    def all_pods(self) -> list[PodProcess]:
        return [p for pods in self.pods.values() for p in pods]

    def status(self) -> dict[str, Any]:
        from isthmus.mesh.status import build_status

        return build_status(self)

    @staticmethod
    def admin_port() -> int:
        return ADMIN_PORT

    @staticmethod
    def outbound_port() -> int:
        return OUTBOUND_PORT


def _pc_text(pc: EffectiveProxyConfig) -> str:
    concurrency = "default" if pc.concurrency is None else str(pc.concurrency)
    text = f"concurrency {concurrency}, environment {sorted(pc.environment) or 'none'}"
    if pc.global_downstream_connection_limit is not None:
        text += f", globalDownstreamConnectionLimit {pc.global_downstream_connection_limit}"
    if pc.stats_inclusion is not None:
        text += f", proxyStatsMatcher {pc.stats_inclusion.summary()}"
    return text


async def run_mesh(options: MeshOptions, on_ready: Callable[[Mesh], None] | None = None) -> int:
    mesh = Mesh(options)
    try:
        await mesh.start()
        if on_ready is not None:
            on_ready(mesh)
        await mesh.run_until_signalled()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(mesh.stop())
    return 0


async def wait_warm(pods: list[PodProcess], timeout: float, poll: float = 0.02) -> list[str]:
    """Until none of these proxies has a listener warming (bounded); returns the proxies (name.namespace)
    that still have one at the deadline, none if all are warm.

    Envoy ACKs a listener before it can serve: one whose certificate comes over SDS (a gateway's TLS
    server) stays warming, not yet bound, until the secret arrives, and forever if it never does (a
    credentialName with no Secret). An ACK is therefore not "serving"; this is. (Clusters are left out:
    the server sends a new cluster's endpoints before the routes that use it, and a DNS cluster warms
    until its first resolution, which must not hold an apply for seconds.)"""
    deadline = time.monotonic() + timeout
    pending = [p for p in pods if p.state == "Running" and p.envoy is not None and p.envoy.running]
    while pending:
        still = []
        for pod in pending:
            assert pod.envoy is not None
            admin = pod.envoy.admin()
            try:
                stats = await admin.stats(filter=WARMING_STATS)
            except Exception:  # stopped or restarting meanwhile: nothing to wait for there
                continue
            finally:
                await admin.close()
            if any(stats.values()):
                still.append(pod)
        pending = still
        if not pending:
            return []
        if time.monotonic() >= deadline:
            names = [f"{p.spec.name}.{p.spec.namespace}" for p in pending]
            log.info("listeners still warming after %.1fs on %s", timeout, ", ".join(names))
            return names
        await asyncio.sleep(poll)
    return []
