"""One workload instance ("pod"): its sidecar Envoy (or gateway Envoy) and its app process.

Start order: the pod is registered (not ready) so the control plane can build its inbound config, its
Envoy starts and becomes LIVE (it holds its config), then the app starts and listens, then the pod is
marked ready and enters the endpoint set. Stop order is the reverse: leave the endpoint set, drain
inbound listeners, stop the app, stop Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.agent.bootstrap import build_bootstrap
from isthmus.agent.envoy import EnvoyProcess, pdeathsig_launch, tail
from isthmus.api.types import parse_env_bool
from isthmus.config.store import Store
from isthmus.model.proxy import Proxy
from isthmus.model.proxy_config import EffectiveProxyConfig
from isthmus.registry.types import Pod
from isthmus.telemetry import envoy as telemetry_envoy
from isthmus.telemetry import statsmodule

log = logging.getLogger(__name__)

ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
HEALTH_PORT = 15021
PROMETHEUS_PORT = 15090
API_PORT = 15014  # the control plane's HTTP API (built-in trace collector)


@dataclass
class PodSpec:
    workload: str
    namespace: str
    name: str
    ip: str
    labels: dict[str, str]
    service_account: str
    sidecar: bool
    gateway: bool
    command: list[str] | None
    env: dict[str, str]
    app_ports: dict[int, int] = field(default_factory=dict)  # target port -> app port
    spec_hash: str = ""
    # The ProxyConfig (MeshConfig defaultConfig and ProxyConfig resources) the pod starts with; as with
    # Istio's injection it is fixed for the pod's life: a change reaches new pods (`isthmus restart`).
    proxy_config: EffectiveProxyConfig = field(default_factory=EffectiveProxyConfig)

    @property
    def proxy_kind(self) -> str | None:
        if self.gateway:
            return "gateway"
        return "sidecar" if self.sidecar else None


class PodError(RuntimeError):
    pass


def _module_cache_dir() -> Path:
    """Where compiled Envoy modules are kept (per source hash): shared by every mesh of the user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "isthmus" / "modules"


class PodProcess:
    def __init__(
        self,
        spec: PodSpec,
        *,
        store: Store,
        control_plane: Any,
        xds_address: tuple[str, int],
        workdir: Path,
        port_offset: int = 0,
        concurrency: int = 2,
        drain_time_s: float = 45.0,
        security: Any = None,
    ) -> None:
        self.spec = spec
        self.security = security
        self.store = store
        self.cp = control_plane
        self.xds_address = xds_address
        self.workdir = workdir
        self.port_offset = port_offset
        self.concurrency = concurrency
        self.drain_time_s = drain_time_s
        self.envoy: EnvoyProcess | None = None
        self.app: asyncio.subprocess.Process | None = None
        self.proxy: Proxy | None = None
        self.started_at = 0.0
        self.state = "Pending"
        self._app_log: Any = None
        # Timings of the last stop() (see stop), for status and tests.
        self.drain_report: dict[str, Any] | None = None
        # The in-proxy metrics module's directory (ENVOY_DYNAMIC_MODULES_SEARCH_PATH) when this pod's
        # Envoy loads it (the default), or why it does not: an error when ISTHMUS_PROXY_METRICS asks for
        # it (or is not a boolean), a note when the default could not be honoured (no C compiler).
        self.stats_module_dir: Path | None = None
        self.stats_module_error: str | None = None
        self.stats_module_note: str | None = None
        # Crash recovery (see recover): how often, and the last exit seen.
        self.restarts = 0
        self.last_crash: str | None = None

    # --- identity --------------------------------------------------------------------------
    def pod(self, ready: bool) -> Pod:
        s = self.spec
        return Pod(
            name=s.name,
            namespace=s.namespace,
            ip=s.ip,
            labels=dict(s.labels),
            workload=s.workload,
            service_account=s.service_account,
            sidecar=s.sidecar,
            gateway=s.gateway,
            ready=ready,
            app_ports=dict(s.app_ports),
            # What listens on the pod address (its proxy, or an app without one) shifts ports below 1024.
            port_offset=self.port_offset,
        )

    def make_proxy(self) -> Proxy:
        # ISTIO_META_* environment variables become node metadata, as istio-agent turns them into it.
        metadata: dict[str, Any] = self.spec.proxy_config.node_metadata()
        if self.port_offset:
            metadata["ISTHMUS_PORT_OFFSET"] = str(self.port_offset)
        if self.stats_module_dir is not None:
            metadata[telemetry_envoy.STATS_COLLECTOR_KEY] = (
                f"{self.xds_address[0]}:{telemetry_envoy.STATS_PORT}"
            )
        return Proxy.of_pod(self.pod(ready=True), metadata)

    def proxy_env(self) -> dict[str, str] | None:
        """The Envoy process's environment: the runner's, plus the ProxyConfig environmentVariables (the
        istio-proxy container's env in Istio), plus where the in-proxy metrics module is. None (inherit)
        when there are none."""
        extra = dict(self.spec.proxy_config.environment)
        if self.stats_module_dir is not None:
            extra["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(self.stats_module_dir)
        if not extra:
            return None
        return {**os.environ, **extra}

    async def _prepare_stats_module(self) -> None:
        """Envoy keeps Istio's metrics itself (the in-proxy module, built once per source) instead of
        sending an entry per request, unless ProxyConfig / proxyMetadata ISTHMUS_PROXY_METRICS says
        "false". Without a C compiler (or when the build fails) the gRPC access log keeps them: an error
        in the pod's status when the setting asked for the module, a note when it is only the default;
        a value that is not a boolean is an error and keeps the access log too."""
        self.stats_module_dir = self.stats_module_error = self.stats_module_note = None
        value = self.spec.proxy_config.environment.get(telemetry_envoy.PROXY_METRICS_KEY)
        wanted = parse_env_bool(value, True)
        where = f"{self.spec.namespace}/{self.spec.name}"
        if wanted is None:
            self.stats_module_error = f"{telemetry_envoy.PROXY_METRICS_KEY}={value!r} is not a boolean"
        elif wanted:
            try:
                self.stats_module_dir = await asyncio.to_thread(statsmodule.build, _module_cache_dir())
            except statsmodule.ModuleUnavailable as exc:
                reason = f"the in-proxy metrics module is unavailable: {exc}"
                if value:  # asked for explicitly
                    self.stats_module_error = reason
                else:
                    self.stats_module_note = reason
        if self.stats_module_error is not None:
            log.warning("%s: %s; the gRPC access log keeps the metrics", where, self.stats_module_error)
        elif self.stats_module_note is not None:
            log.info("%s: %s; the gRPC access log keeps the metrics", where, self.stats_module_note)

    # --- environment -----------------------------------------------------------------------
    def app_env(self) -> dict[str, str]:
        s = self.spec
        env = dict(os.environ)
        # Children find `isthmus` (and the venv's tools) even when the venv is not activated.
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
            env.pop(key, None)
        ports = {str(t): a for t, a in sorted(s.app_ports.items())}
        # PORT is for the *first* target port as the Workload lists them (ports: [9090, 9080] -> 9090),
        # not the lowest: app_ports keeps the spec's order.
        first = next(iter(s.app_ports.items()), None)
        env.update(
            {
                "POD_IP": s.ip,
                "POD_NAME": s.name,
                "POD_NAMESPACE": s.namespace,
                "SERVICE_ACCOUNT": s.service_account,
                "ISTHMUS_WORKLOAD": s.workload,
                "ISTHMUS_LABELS": json.dumps(s.labels, sort_keys=True),
                "ISTHMUS_PORTS": json.dumps(ports),
                "ISTHMUS_LISTEN_HOST": "127.0.0.1" if s.sidecar else s.ip,
            }
        )
        if first is not None:
            env["PORT"] = str(first[1])
        if s.sidecar:
            proxy_url = f"http://{s.ip}:{OUTBOUND_PORT}"
            for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
                env[key] = proxy_url
        env.update(s.env)
        return env

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        self.started_at = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = "Starting"
        self.store.upsert_pod(self.pod(ready=False))
        self.cp.rebuild()
        # A new xDS stream is served from the last *dispatched* snapshot, and registering a pod only
        # queues a debounced EDS push: without this flush an Envoy that connects within the debounce
        # window gets CDS from a snapshot without its own pod (no inbound cluster: 503 NC for every
        # request it receives), and the EDS-only pushes that follow never resend CDS.
        self.cp.xds.flush()
        if self.spec.proxy_kind is not None:
            await self._prepare_stats_module()
            self.proxy = self.make_proxy()
            sds_socket = None
            if self.security is not None:
                sds_socket = await self.security.start_pod(
                    self.spec.namespace,
                    self.spec.name,
                    self.spec.service_account,
                    self.workdir,
                    self.store.list("Secret"),
                    self.store.list("Gateway"),
                    dict(self.spec.labels) if self.spec.proxy_kind == "gateway" else None,
                )
            bootstrap = build_bootstrap(
                self.proxy,
                xds_address=self.xds_address,
                admin_port=ADMIN_PORT,
                health_port=HEALTH_PORT,
                prometheus_port=PROMETHEUS_PORT,
                concurrency=self.concurrency,
                drain_time_s=self.drain_time_s,
                sds_socket=sds_socket,
                # The access-log service (telemetry) and the built-in Zipkin collector.
                extra_static_clusters=telemetry_envoy.static_clusters(
                    self.xds_address, (self.xds_address[0], API_PORT)
                ),
                runtime=telemetry_envoy.RUNTIME_FLAGS,
                delta_xds=self.cp.snapshot.mesh.delta_xds,
                vhds=self.cp.snapshot.mesh.vhds,
                global_downstream_max_connections=self.spec.proxy_config.global_downstream_max_connections(),
                stats_inclusion=self.spec.proxy_config.stats_inclusion,
            )
            self.envoy = EnvoyProcess(
                self.proxy,
                bootstrap,
                self.workdir,
                concurrency=self.concurrency,
                drain_time_s=self.drain_time_s,
                env=self.proxy_env(),
            )
            await self.envoy.start()
            await self.envoy.wait_ready(timeout=timeout)
            await self._wait_config_accepted(timeout)
        if self.spec.command:
            await self._start_app(timeout)
        self.state = "Running"
        self.store.upsert_pod(self.pod(ready=True))

    async def _wait_config_accepted(self, timeout: float) -> None:
        """LIVE only says Envoy finished its first fetch; the config must also have been ACKed."""
        assert self.proxy is not None
        version = self.cp.snapshot.version
        if await self.cp.wait_pushed(version, {self.proxy.id}, timeout=timeout):
            return
        nacks = [
            f"{t}: {v['last_nack']['message']}"
            for st in self.cp.xds.status()
            if st.id == self.proxy.id
            for t, v in st.types.items()
            if v.get("last_nack")
        ]
        detail = "; ".join(nacks) if nacks else "no ACK from the proxy"
        raise PodError(
            f"{self.spec.namespace}/{self.spec.name}: the proxy did not accept its config: {detail}"
        )

    async def _start_app(self, timeout: float) -> None:
        s = self.spec
        assert s.command
        log_path = self.workdir / "app.log"
        self._app_log = log_path.open("ab")
        argv, preexec = pdeathsig_launch(list(s.command))
        self.app = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._app_log,
            stderr=asyncio.subprocess.STDOUT,
            env=self.app_env(),
            cwd=str(self.workdir),
            preexec_fn=preexec,
            start_new_session=True,
        )
        host = "127.0.0.1" if s.sidecar else s.ip
        deadline = time.monotonic() + timeout
        for port in sorted(s.app_ports.values()):
            while True:
                if self.app.returncode is not None:
                    raise PodError(
                        f"{s.namespace}/{s.name}: app exited with code {self.app.returncode} before listening "
                        f"on {host}:{port}\n{tail(log_path)}"
                    )
                if await _can_connect(host, port):
                    break
                if time.monotonic() > deadline:
                    raise PodError(
                        f"{s.namespace}/{s.name}: app did not listen on {host}:{port} within {timeout:.0f}s"
                    )
                await asyncio.sleep(0.05)

    # --- crash recovery ----------------------------------------------------------------------
    def crashed(self) -> str | None:
        """What exited on its own while the pod was Running: "proxy", "app", or None."""
        if self.state != "Running":
            return None
        if self.envoy is not None and not self.envoy.running:
            return "proxy"
        if self.app is not None and self.app.returncode is not None:
            return "app"
        return None

    def restart_backoff_s(self) -> float:
        """kubelet's CrashLoopBackOff: 1 s after the first crash, doubling, at most 30 s."""
        return float(min(30, 2 ** max(0, self.restarts - 1)))

    async def recover(self, timeout: float = 60.0) -> str | None:
        """Restart what crashed, as kubelet restarts a container. The pod leaves the endpoint set at
        once (callers get other instances, or 503 UH rather than a connection refused) and returns
        once its proxy holds its config again and its app listens."""
        what = self.crashed()
        if what is None:
            return None
        s = self.spec
        self.restarts += 1
        self.state = "Restarting"
        if what == "proxy":
            assert self.envoy is not None
            detail = f"proxy exited with code {self.envoy.returncode}\n{self.envoy.log_tail(10)}"
        else:
            assert self.app is not None
            detail = f"app exited with code {self.app.returncode}\n{tail(self.workdir / 'app.log', 10)}"
        self.last_crash = detail.splitlines()[0]
        log.warning("pod %s/%s: %s; restart %d", s.namespace, s.name, detail, self.restarts)
        self.store.upsert_pod(self.pod(ready=False))
        self.cp.rebuild()
        await asyncio.sleep(self.restart_backoff_s())
        if what == "proxy":
            assert self.envoy is not None
            await self.envoy.start()
            await self.envoy.wait_ready(timeout=timeout)
            await self._wait_config_accepted(timeout)
        else:
            if self._app_log is not None:
                self._app_log.close()
            await self._start_app(timeout)
        self.state = "Running"
        self.store.upsert_pod(self.pod(ready=True))
        self.cp.rebuild()
        return what

    async def leave_endpoints(self, timeout: float = 5.0) -> bool:
        """Leave the endpoint set and wait (bounded) until every connected proxy has ACKed the EDS
        without this pod. True when they all did within `timeout`."""
        self.state = "Terminating"
        self.store.upsert_pod(self.pod(ready=False))
        snap = self.cp.rebuild()
        return await self.cp.wait_pushed(snap.version, timeout=timeout)

    async def stop(self, *, drain_s: float | None = None) -> None:
        """Graceful stop, as a Kubernetes pod with an Istio sidecar terminates:

        1. leave the endpoint set: every proxy ACKs EDS without this pod, so no new request is routed
           here, and client sidecars close their idle pooled connections to it (Envoy drains the
           connection pools of removed hosts; requests in flight on them finish);
        2. drain the sidecar: existing inbound connections are told to go away (``Connection: close`` on
           their next HTTP/1.1 response, GOAWAY on HTTP/2), and the inbound listeners stop accepting;
        3. wait until no inbound connection is open, at most `drain_s` (MeshConfig
           ``defaultConfig.terminationDrainDuration``): requests in flight and long-lived streams finish;
        4. stop the app (SIGTERM, then SIGKILL), then Envoy.
        A gateway drains all its listeners (they are its inbound); a sidecar only its inbound ones, so the
        app can still call out while it finishes.
        """
        started = time.monotonic()
        synced = False
        try:
            synced = await self.leave_endpoints()
        except Exception:
            log.debug("pod %s: could not confirm endpoint removal", self.spec.name, exc_info=True)
        left = time.monotonic()
        remaining: int | None = None
        if self.envoy is not None and drain_s and self.envoy.running:
            inbound_only = not self.spec.gateway
            try:
                await self.envoy.drain(inbound_only=inbound_only)
                await self.envoy.stop_listening(inbound_only=inbound_only)
                remaining = await self._wait_drained(drain_s)
            except Exception:
                log.debug("pod %s: drain failed", self.spec.name, exc_info=True)
        drained = time.monotonic()
        await self._stop_app()
        if self.envoy is not None:
            await self.envoy.stop()
        self.drain_report = {
            "leftEndpointsMs": round((left - started) * 1000, 1),
            "endpointsAcked": synced,
            "drainedMs": round((drained - left) * 1000, 1),
            "connectionsLeft": remaining,
            "stoppedMs": round((time.monotonic() - drained) * 1000, 1),
        }
        log.info(
            "pod %s/%s stopped: endpoints left in %.0f ms (%s), drained in %.0f ms (%s), "
            "app and proxy stopped in %.0f ms",
            self.spec.namespace,
            self.spec.name,
            (left - started) * 1000,
            "every proxy ACKed" if synced else "not every proxy ACKed",
            (drained - left) * 1000,
            "no drain"
            if remaining is None
            else "no connection left"
            if remaining == 0
            else f"{remaining} connections cut at terminationDrainDuration",
            (time.monotonic() - drained) * 1000,
        )
        await self._stop_identity()
        self.store.remove_pod(self.spec.namespace, self.spec.name)
        self.state = "Stopped"

    async def _wait_drained(self, limit: float) -> int:
        """Up to `limit` seconds, ending early once no drained connection is open; returns how many
        are still open. Counts the listeners that were drained: inbound ones (the pod address, not
        Istio's 150xx ports) for a sidecar, every one but admin/health/Prometheus for a gateway."""
        assert self.envoy is not None
        deadline = time.monotonic() + limit
        skip = ("listener.admin", f"listener.{self.spec.ip}_150")
        admin = self.envoy.admin()
        active = 0
        try:
            while True:
                # Per-listener totals only (not the per-worker copies).
                stats = await admin.stats(filter=r"^listener\.[^.]+(\.[^.]+){3}_\d+\.downstream_cx_active$")
                active = sum(v for k, v in stats.items() if not k.startswith(skip))
                if active == 0 or time.monotonic() >= deadline:
                    return active
                await asyncio.sleep(0.05)
        finally:
            await admin.close()

    async def _stop_app(self, timeout: float = 5.0) -> None:
        proc = self.app
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._app_log is not None:
            self._app_log.close()

    async def kill(self) -> None:
        """Immediate stop (shutdown after an error)."""
        await self._stop_app(timeout=2.0)
        if self.envoy is not None:
            await self.envoy.stop(timeout=2.0)
        await self._stop_identity()

    async def _stop_identity(self) -> None:
        if self.proxy is not None:
            self.cp.telemetry.forget_proxy(self.proxy.id)
        if self.security is not None:
            await self.security.stop_pod(self.spec.namespace, self.spec.name)


async def _can_connect(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
