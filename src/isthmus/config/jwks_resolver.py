"""istiod's JWKS resolver (`pilot/pkg/model/jwks_resolver.go`) as a source of the control plane.

RequestAuthentication rules with an `http(s)` jwksUri (or, without jwksUri and jwks, an issuer whose
OpenID discovery document `<issuer>/.well-known/openid-configuration` names a `jwks_uri`) get their keys
fetched here, off the generation path, on the control plane's asyncio loop. The table of what was
fetched goes into every snapshot (`Snapshot.jwks`); the generator inlines it as `local_jwks`, and while a
key set is pending or cannot be had it inlines a key set no token verifies against (istiod's FakeJwks:
every token of that issuer is rejected with 401, requests without a token still pass) and reports why
in the snapshot's generation errors (status `generationErrors`).

Timing, as istiod:
- the first fetch of a key is made as soon as a snapshot needs it, without retry
  (networkFetchRetryCountOnMainFlow = 0); when it fails, a background fetch retries it 7 times, 1 s apart
  (the jwksuriChannel path, networkFetchRetryCountOnRefreshFlow);
- every PILOT_JWT_PUB_KEY_REFRESH_INTERVAL (default 20m) every key is fetched again (7 retries, 1 s
  apart); after a refresh with errors the next one comes after 1m (JwtPubKeyRefreshIntervalOnFailure),
  then twice as long after each further failing one, at most 60m; a success resets the interval. A
  failed refresh keeps the key set fetched before;
- each request times out after the rule's `timeout` (default 5s);
- a fetched key set that differs from the one before (compareJWKSResponse: keys compared sorted by
  kid) makes a new snapshot and a full push (istiod's PushFunc).
Differences: istiod forgets a key whose background fetch failed until a push asks for it again; here
the periodic refresh keeps trying it (with the same backoff). Keys no config needs any more are dropped
at once (istiod evicts them after a week unused); this changes nothing a proxy gets.

Where the requests go (istiod has no sidecar): a mesh host name is resolved as istiod's cluster DNS
would, through the registry (DESIGN §3: no DNS server in local mode): the names of Kubernetes Services
and ServiceEntries, tried with istiod's pod search path (`<name>.istio-system.svc.<domain>`,
`<name>.svc.<domain>`, `<name>.<domain>`, then the name) as its resolv.conf (ndots 5) would; the URI's
port is the Service port, and the request goes to a ready endpoint (the pod at the targetPort).
A JWKS server whose sidecar is in STRICT mTLS therefore refuses the plaintext request, as in Istio.
ServiceEntry hosts resolve to their endpoints (Kubernetes DNS does not know them; Isthmus has no DNS
server to give them addresses, and this keeps such fetches on the machine). Other names use the
system resolver, unless ISTHMUS_JWKS_RESOLVER_OFFLINE is true (then they fail as an unknown name: no
request leaves the machine; the e2e tests set it). HTTP(S)_PROXY / NO_PROXY apply to those other
names, as istiod's http.ProxyFromEnvironment (never to loopback addresses).

Local files (`file://` jwksUri, an Isthmus extension istiod does not have) are read here too, never by
the generator: a file is read as soon as a snapshot needs it (synchronously, while the control plane
builds that snapshot, so its keys are in force from the first push, as when the generator read it), and
then checked again every FILE_POLL_INTERVAL (1 s) off the loop: a change of its key set (compared as a
fetched one) or of whether it can be read makes a new snapshot and a full push, as a key rotation does.
A poll that reads no JSON document (or no file) is taken only when the next poll reads the same: that
is what a poll sees in the middle of a save (truncate then write, or an editor's rename and create).
A file that cannot be read is an error in the table (the generator inlines the fake key set and
generationErrors says why); unlike a failed fetch, it does not keep the keys read before: the file as it
is now is the source of truth (it is not a transient network failure), as when the generator read it.
Files are polled rather than watched (watchfiles): the paths can be anywhere, in directories that may
not exist yet, the set of them changes with the config, and a mounted Kubernetes Secret or ConfigMap
changes by swapping a `..data` symlink a watch on the file's own name misses. Reading a few small files
a second costs next to nothing and compares content, so no edit is missed however fast it follows the
last one (an mtime check could miss one within the file system's timestamp granularity); the 20m
refresh schedule would be far too slow for a local edit.

HTTPS is verified against the system trust store (SSL_CERT_FILE / SSL_CERT_DIR apply) plus the PEM
bundle in ISTHMUS_JWKS_EXTRA_ROOT_CA (istiod: the `pilot.jwksResolverExtraRootCA` Helm value, mounted
at /cacerts/extra.pem), at TLS 1.2 or newer; JWKS_RESOLVER_INSECURE_SKIP_VERIFY=true (istiod's
variable) skips the verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import CollectorRegistry, Counter

from isthmus.model.durations import parse_seconds
from isthmus.model.jwks import (
    DEFAULT_FETCH_TIMEOUT,
    PENDING,
    JwksEntry,
    JwksKey,
    file_path,
    is_file_uri,
)

log = logging.getLogger(__name__)

OPENID_DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
DEFAULT_REFRESH_INTERVAL = 20 * 60.0  # PILOT_JWT_PUB_KEY_REFRESH_INTERVAL
REFRESH_INTERVAL_ON_FAILURE = 60.0  # JwtPubKeyRefreshIntervalOnFailure
REFRESH_INTERVAL_ON_FAILURE_MAX = 60 * 60.0  # JwtPubKeyRefreshIntervalOnFailureResetThreshold
RETRY_INTERVAL = 1.0  # JwtPubKeyRetryInterval
RETRIES_ON_REFRESH = 7  # networkFetchRetryCountOnRefreshFlow
FILE_POLL_INTERVAL = 1.0  # how often file:// key sets are read again (Isthmus's own)
CONTROL_PLANE_NAMESPACE = "istio-system"  # the namespace of istiod's pod (its DNS search path)

# A lookup of a host name in the registry: (address, port) pairs for (host, port), [] when the registry
# knows the name but nothing serves that port, None when it does not know the name.
MeshLookup = Callable[[str, int], "list[tuple[str, int]] | None"]

_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool


class FetchError(Exception):
    """A fetch that failed, in the words istiod logs."""


def env_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resolver's settings from the control plane's environment (istiod's variable names where
    istiod has one)."""
    env = os.environ if environ is None else environ
    interval = DEFAULT_REFRESH_INTERVAL
    raw = env.get("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", "")
    if raw:
        try:
            interval = parse_seconds(raw)
        except ValueError:
            log.warning("PILOT_JWT_PUB_KEY_REFRESH_INTERVAL=%r is not a duration; using 20m", raw)
    if interval <= 0:
        interval = DEFAULT_REFRESH_INTERVAL
    return {
        "refresh_interval": interval,
        "insecure_skip_verify": env.get("JWKS_RESOLVER_INSECURE_SKIP_VERIFY", "") in _TRUE,
        "extra_root_ca": env.get("ISTHMUS_JWKS_EXTRA_ROOT_CA") or None,
        "offline": env.get("ISTHMUS_JWKS_RESOLVER_OFFLINE", "") in _TRUE,
    }


def jwks_changed(old: str | None, new: str) -> bool:
    """istiod's compareJWKSResponse: equal text is no change; otherwise the `keys` arrays compared
    sorted by kid (key order does not matter); anything not comparable that way counts as a change."""
    if old == new:
        return False
    if old is None:
        return True
    try:
        old_doc, new_doc = json.loads(old), json.loads(new)
    except ValueError:
        return True
    old_keys = old_doc.get("keys") if isinstance(old_doc, dict) else None
    new_keys = new_doc.get("keys") if isinstance(new_doc, dict) else None
    if not isinstance(old_keys, list) or not isinstance(new_keys, list):
        return True

    def by_kid(keys: list[Any]) -> list[str]:
        return sorted(json.dumps(k, sort_keys=True) for k in keys)

    return by_kid(old_keys) != by_kid(new_keys)


def read_jwks_file(uri: str) -> JwksEntry:
    """The key set at a file:// jwksUri, or why it cannot be read: the one loader of local key sets
    (the resolver, candidate snapshots and tests build their tables with it), so the generator never
    touches the file system. Bytes that are not UTF-8 are replaced, as for a fetched body; whether
    Envoy can load the text is the generator's check (local_jwks_problem)."""
    path = file_path(uri)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        # A stable message (no errno prefix), in Go's os.PathError shape: the same failure again is no
        # change to report.
        return JwksEntry(error=f"open {path}: {exc.strerror or exc}", uri=uri)
    return JwksEntry(keys=raw.decode("utf-8", errors="replace"), uri=uri)


def file_entries(keys: Iterable[JwksKey]) -> dict[JwksKey, JwksEntry]:
    """The file:// keys among `keys`, each read now (read_jwks_file)."""
    return {key: read_jwks_file(key[1]) for key in keys if is_file_uri(key[1])}


def with_local_files(table: Mapping[JwksKey, JwksEntry], keys: Iterable[JwksKey]) -> dict[JwksKey, JwksEntry]:
    """`table` (what the resolver holds) plus the file:// keys among `keys` it lacks, read now: the
    table of a snapshot the control plane did not build (a route preview's candidate config), so a
    candidate's new file:// jwksUri shows its keys as the control plane would have them once applied.
    A new http(s) one stays absent (shown as not fetched yet: fetching is the resolver's alone)."""
    return {**file_entries(k for k in keys if k not in table), **table}


def search_names(host: str, domain: str) -> list[str]:
    """The names istiod's resolver asks for `host`: its pod's search path first (ndots 5), as in
    Kubernetes' resolv.conf of a pod in istio-system."""
    host = host.rstrip(".").lower()
    if host.count(".") >= 5:
        return [host]
    search = (f"{CONTROL_PLANE_NAMESPACE}.svc.{domain}", f"svc.{domain}", domain)
    return [f"{host}.{s}" for s in search] + [host]


def registry_lookup(snapshot_of: Callable[[], Any]) -> MeshLookup:
    """A MeshLookup over the registry of the control plane's current snapshot."""

    def lookup(host: str, port: int) -> list[tuple[str, int]] | None:
        snap = snapshot_of()
        registry = snap.registry
        for name in search_names(host, snap.mesh.domain_suffix):
            services = registry.by_host.get(name)
            if not services:
                continue
            # Cluster DNS answers for the Kubernetes Service first (ServiceEntries of that name are not
            # its records), then the oldest.
            for svc in sorted(services, key=lambda s: (not s.is_kubernetes, s.creation_order)):
                if svc.port(port) is None:
                    continue
                found = [
                    (e.address, e.port)
                    for e in registry.endpoints(svc, port)
                    if e.ready and not e.hostname and not e.address.startswith("unix://")
                ]
                if found or svc.is_kubernetes:
                    return found
                # A ServiceEntry without addresses of its own (resolution NONE, or DNS endpoints that
                # are names outside the registry): the name is left to DNS, as for istiod.
                return None
            # Cluster DNS knows a Kubernetes Service's name whatever the port (nothing serves it).
            return [] if any(s.is_kubernetes for s in services) else None
        return None

    return lookup


def next_refresh_interval(current: float, default: float, *, failed: bool, last_failed: bool) -> float:
    """istiod's refreshCache: after a refresh with errors, the failure interval (1m), doubled on each
    further failing refresh up to 60m; after a clean one, the default interval again."""
    if not failed:
        return default
    if last_failed:
        return min(current * 2, REFRESH_INTERVAL_ON_FAILURE_MAX)
    return REFRESH_INTERVAL_ON_FAILURE


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _MeshResolver(AbstractResolver):
    """aiohttp's name resolution, through the registry first (the URL's host stays the TLS name)."""

    def __init__(self, lookup: MeshLookup) -> None:
        self.lookup = lookup
        self.system = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        found = self.lookup(host, port)
        if not found:
            # Not a registry name (the caller refused unknown names when offline, and names without
            # endpoints): the system resolver.
            return await self.system.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host, host=addr, port=p, family=socket.AF_INET, proto=0, flags=socket.AI_NUMERICHOST
            )
            for addr, p in found
        ]

    async def close(self) -> None:
        await self.system.close()


class JwksResolver:
    """Fetches and refreshes the key sets the config needs; `table` is what the next snapshot carries.

    `update(wanted)` (from the control plane, with each snapshot it builds) starts fetching new keys and
    reads new file:// ones; `on_change()` is called when `table` changed in a way a proxy sees (keys
    fetched or rotated, a first fetch failed, a file changed): the control plane then builds a new
    snapshot.
    """

    def __init__(
        self,
        lookup: MeshLookup,
        on_change: Callable[[], None],
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        insecure_skip_verify: bool = False,
        extra_root_ca: str | None = None,
        offline: bool = False,
        retry_interval: float = RETRY_INTERVAL,
        file_poll_interval: float = FILE_POLL_INTERVAL,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.lookup = lookup
        self.on_change = on_change
        self.refresh_default = refresh_interval
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.file_poll_interval = file_poll_interval
        self.offline = offline
        self.table: Mapping[JwksKey, JwksEntry] = {}
        self._timeouts: dict[JwksKey, float] = {}
        self._inflight: set[JwksKey] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._file_watcher: asyncio.Task[None] | None = None
        # Set by close(): a snapshot built after it (a rebuild already scheduled when the control plane
        # stopped) still gets its table, but starts no fetch, refresher or poller that nothing would end.
        self._closed = False
        # file:// keys whose last read was not taken yet: text that is not JSON, or no file at all, is
        # what a poll sees in the middle of a save (truncate then write; an editor's rename and create).
        # Such a read is taken when the next poll reads the same; a JSON key set is taken at once.
        self._unsettled: dict[JwksKey, JwksEntry] = {}
        self._ssl = self._ssl_context(insecure_skip_verify, extra_root_ca)
        # istiod's counters pilot_jwks_resolver_network_fetch_{success,fail}_total.
        registry = metrics if metrics is not None else CollectorRegistry()
        self.fetch_success = Counter(
            "pilot_jwks_resolver_network_fetch_success",
            "Total number of successfully network fetch by pilot jwks resolver",
            registry=registry,
        )
        self.fetch_fail = Counter(
            "pilot_jwks_resolver_network_fetch_fail",
            "Total number of failed network fetch by pilot jwks resolver",
            registry=registry,
        )

    @staticmethod
    def _ssl_context(insecure: bool, extra_root_ca: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if extra_root_ca:
            try:
                ctx.load_verify_locations(cafile=extra_root_ca)
            except (OSError, ssl.SSLError) as exc:
                log.error("ISTHMUS_JWKS_EXTRA_ROOT_CA %s cannot be loaded: %s", extra_root_ca, exc)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # --- what the config needs ----------------------------------------------------------------
    def update(self, wanted: Mapping[JwksKey, float]) -> Mapping[JwksKey, JwksEntry]:
        """Track exactly these keys (with their fetch timeouts); returns the table for the snapshot being
        built. New fetched keys are pending until their first fetch ends (started now, if a loop runs);
        new file:// keys are read now. Keys already tracked keep their entry: only the fetches and the
        file polling change one, and they report it (on_change), so a snapshot built for another reason
        never takes in a changed key set unannounced (the control plane carries jwt_authn configs over
        on endpoint-only changes)."""
        self._timeouts = dict(wanted)
        self._unsettled = {k: v for k, v in self._unsettled.items() if k in wanted}
        table = {k: v for k, v in self.table.items() if k in wanted}
        new = [k for k in wanted if k not in table]
        fetched = [k for k in new if not is_file_uri(k[1])]
        table.update(file_entries(new))
        for key in fetched:
            table[key] = PENDING
        self.table = table
        if any(is_file_uri(k[1]) for k in wanted):
            self._start_file_watcher()
        if fetched:
            self._start_refresher()
            for key in fetched:
                self._spawn(self._first_fetch(key))
        return self.table

    def _spawn(self, coro: Any) -> None:
        if self._closed:
            coro.close()  # closed: the key stays pending
            return
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()  # no loop (an offline snapshot): the key stays pending
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_refresher(self) -> None:
        if self._closed:
            return
        if self._refresher is None or self._refresher.done():
            try:
                self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
            except RuntimeError:
                self._refresher = None

    def _start_file_watcher(self) -> None:
        if self._closed:
            return  # closed: files are read once, as without a loop
        if self._file_watcher is None or self._file_watcher.done():
            try:
                self._file_watcher = asyncio.get_running_loop().create_task(self._file_loop())
            except RuntimeError:
                self._file_watcher = None  # no loop (an offline snapshot): files are read once

    async def close(self) -> None:
        self._closed = True
        running = [t for t in (self._refresher, self._file_watcher) if t is not None]
        tasks = [*self._tasks, *running]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # --- fetching -----------------------------------------------------------------------------
    def _set(self, key: JwksKey, entry: JwksEntry) -> bool:
        """Record `entry` if the key is still wanted; whether a proxy would see the difference."""
        if key not in self._timeouts:
            return False
        before = self.table.get(key)
        self.table = {**self.table, key: entry}
        if before is None:
            return True
        if entry.keys is not None and before.keys is not None:
            # Proxies get the keys alone: a refresh error beside kept keys changes nothing they see.
            return jwks_changed(before.keys, entry.keys)
        return (before.keys, before.error, before.pending) != (entry.keys, entry.error, entry.pending)

    async def _first_fetch(self, key: JwksKey) -> None:
        """GetPublicKey's main flow (no retry), then on failure the background fetch (7 retries)."""
        if key in self._inflight:
            return
        self._inflight.add(key)
        try:
            entry = await self.fetch(key, retries=0)
            if self._set(key, entry):
                self.on_change()
            if entry.keys is None:
                entry = await self.fetch(key, retries=RETRIES_ON_REFRESH)
                # A failure keeps the first one's error, unless the key was dropped and wanted again
                # meanwhile: update() made it pending again and skipped its first fetch (this one was in
                # flight), so nothing else would replace "not fetched yet" before the next refresh.
                if (entry.keys is not None or self.table.get(key) == PENDING) and self._set(key, entry):
                    self.on_change()
        finally:
            self._inflight.discard(key)

    async def _refresh_loop(self) -> None:
        last_failed = False
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                failed = await self.refresh()
            except Exception:
                # One loop refreshes every key: an unexpected error in one fetch must not end it (no key
                # would ever be refreshed again). Counted as a failed refresh (the shorter interval).
                log.exception("JWKS refresh failed")
                failed = True
            self.refresh_interval = next_refresh_interval(
                self.refresh_interval, self.refresh_default, failed=failed, last_failed=last_failed
            )
            last_failed = failed

    async def _file_loop(self) -> None:
        # Ends when the config names no file any more; update() starts it again for a new one (on the
        # loop's thread, between this loop's awaits, so none is missed).
        while any(is_file_uri(k[1]) for k in self._timeouts):
            await asyncio.sleep(self.file_poll_interval)
            await self.reread_files()

    async def reread_files(self) -> bool:
        """Read every file:// key again; whether a proxy would see a difference (then on_change)."""
        keys = [k for k in self._timeouts if is_file_uri(k[1])]
        if not keys:
            return False
        # In a thread: a file on a slow or stuck file system must not stall the control plane's loop.
        entries = await asyncio.to_thread(file_entries, keys)
        changed = False
        for key, entry in entries.items():
            if self._settling(key, entry):
                continue
            changed = self._set(key, entry) or changed
        if changed:
            self.on_change()
        return changed

    def _settling(self, key: JwksKey, entry: JwksEntry) -> bool:
        """Whether to leave a file's new read for the next poll: it is not a JSON document (or the file
        could not be read) and the poll before did not read the same. Otherwise a poll that lands
        between the truncation and the write of a save would push an empty or cut key set (every token
        of the issuer rejected until the next poll) and then push again."""
        if self.table.get(key) == entry or _is_json(entry.keys) or self._unsettled.get(key) == entry:
            self._unsettled.pop(key, None)
            return False
        self._unsettled[key] = entry
        return True

    async def refresh(self) -> bool:
        """Fetch every key again (istiod's refresh); whether any fetch failed. Files are not fetched:
        they are polled (reread_files), and their errors take no part in the refresh backoff."""
        keys = [k for k in self._timeouts if k not in self._inflight and not is_file_uri(k[1])]
        results = await asyncio.gather(*(self.fetch(k, retries=RETRIES_ON_REFRESH) for k in keys))
        changed = failed = False
        for key, entry in zip(keys, results, strict=True):
            if entry.keys is None:
                failed = True
                before = self.table.get(key)
                if before is not None and before.keys is not None:
                    # A failed refresh keeps the keys fetched before (they stay in force).
                    entry = replace(before, error=entry.error)
            changed = self._set(key, entry) or changed
        if changed:
            self.on_change()
        return failed

    async def fetch(self, key: JwksKey, *, retries: int) -> JwksEntry:
        """One key: its URI (discovered from the issuer when empty), then the key set (a file:// one: read)."""
        issuer, uri = key
        if is_file_uri(uri):
            return await asyncio.to_thread(read_jwks_file, uri)
        timeout = self._timeouts.get(key, DEFAULT_FETCH_TIMEOUT)
        try:
            if not uri:
                uri = await self._discover(issuer, timeout, retries)
            body = await self.get(uri, timeout, retries)
        except FetchError as exc:
            log.error(
                "Failed to fetch JWT public key for issuer %r from %r: %s", issuer, uri or "(discovery)", exc
            )
            return JwksEntry(error=str(exc), uri=uri)
        return JwksEntry(keys=body, uri=uri)

    async def _discover(self, issuer: str, timeout: float, retries: int) -> str:
        """istiod's resolveJwksURIUsingOpenID."""
        url = issuer.rstrip("/") + OPENID_DISCOVERY_SUFFIX
        body = await self.get(url, timeout, retries)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise FetchError(f"openID discovery configuration at {url!r} is not JSON: {exc}") from None
        jwks_uri = data.get("jwks_uri") if isinstance(data, dict) else None
        if not isinstance(jwks_uri, str):
            raise FetchError(f"invalid jwks_uri {jwks_uri!r} in openID discovery configuration at {url!r}")
        return jwks_uri

    async def get(self, url: str, timeout: float, retries: int) -> str:
        """getRemoteContentWithRetry: `retries` more attempts after the first, retry_interval apart."""
        for _ in range(retries):
            try:
                return await self._get_once(url, timeout)
            except FetchError as exc:
                log.warning("Failed to GET from %r: %s. Retry in %ss", url, exc, self.retry_interval)
                await asyncio.sleep(self.retry_interval)
        return await self._get_once(url, timeout)

    async def _get_once(self, url: str, timeout: float) -> str:
        try:
            body = await self._request(url, timeout)
        except FetchError:
            self.fetch_fail.inc()
            raise
        self.fetch_success.inc()
        return body

    async def _request(self, url: str, timeout: float) -> str:
        try:
            # urllib refuses what Go's url.Parse (istiod's validation) admits: a port above 65535, and
            # a discovery document's jwks_uri is not validated at all (an unclosed IPv6 bracket). Both
            # are a failed fetch, not a ValueError that would end the task or the refresh loop.
            parts = urlsplit(url)
            port_or_none = parts.port
        except ValueError as exc:
            raise FetchError(f'Get "{url}": invalid URL: {exc}') from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchError(f'Get "{url}": unsupported protocol scheme "{parts.scheme}"')
        host = parts.hostname or ""
        port = port_or_none or (443 if scheme == "https" else 80)
        found = self.lookup(host, port)
        if found == []:
            # Cluster DNS knows the name, nothing serves the port (kube-proxy: connection refused).
            raise FetchError(f'Get "{url}": dial tcp {host}:{port}: no ready endpoint serves that port')
        proxy = None
        if found is None and not _is_loopback(host):
            if self.offline:
                raise FetchError(
                    f'Get "{url}": dial tcp: lookup {host}: no such host (ISTHMUS_JWKS_RESOLVER_OFFLINE)'
                )
            proxy = _env_proxy(url)
        connector = aiohttp.TCPConnector(
            resolver=_MeshResolver(self.lookup), use_dns_cache=False, force_close=True
        )
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as session,
                session.get(
                    url, ssl=self._ssl if scheme == "https" else False, proxy=proxy, allow_redirects=True
                ) as resp,
            ):
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            # A stable message (no elapsed time): the same failure again is no change to report.
            raise FetchError(f'Get "{url}": context deadline exceeded (timeout {timeout:g}s)') from None
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            # ValueError: what aiohttp and yarl raise for a URL they cannot use (an IDNA-invalid host,
            # a malformed proxy URL); UnicodeError is one.
            raise FetchError(f'Get "{url}": {exc}') from None
        text = raw.decode("utf-8", errors="replace")
        if status < 200 or status >= 300:
            # istiod: "status %d, message %s", the body quoted and cut at 100 characters.
            message = json.dumps(text)
            if len(message) > 100:
                raise FetchError(f"status {status}, message {message[:100]}(truncated)")
            raise FetchError(f"status {status}, message {message}")
        return text


def _is_json(text: str | None) -> bool:
    if text is None:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _env_proxy(url: str) -> str | None:
    """The HTTP(S)_PROXY for `url` unless NO_PROXY exempts its host (Go's ProxyFromEnvironment)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme.lower())
    if not proxy:
        return None
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def wanted_timeouts(keys: Sequence[JwksKey], timeout: float = DEFAULT_FETCH_TIMEOUT) -> dict[JwksKey, float]:
    """Keys with one timeout (tests and callers that have no rules at hand)."""
    return dict.fromkeys(keys, timeout)
