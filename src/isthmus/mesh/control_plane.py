"""The control plane: store changes -> snapshots -> pushes, with the smallest push that is correct.

A change that touches only pods (endpoints) becomes an EDS-only push of the clusters whose endpoints
changed; any config change is a full push. Snapshots are rebuilt once per burst of changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Histogram

from isthmus.config.jwks_resolver import JwksResolver, env_settings, registry_lookup
from isthmus.config.store import Change, Store
from isthmus.mesh import gc_policy
from isthmus.model import jwks
from isthmus.model.snapshot import Snapshot
from isthmus.telemetry import Telemetry
from isthmus.xds.gen import headless, naming, zone_aware
from isthmus.xds.gen.endpoints import INLINE_ASSIGNMENT
from isthmus.xds.gen.generator import MeshGenerator
from isthmus.xds.push_queue import PushRequest
from isthmus.xds.server import XdsServer

log = logging.getLogger(__name__)

# Kinds that never change generated config (the runner acts on them).
_NO_PUSH_KINDS = frozenset({"Workload"})
# Memoized generation that depends on config alone, not on endpoints: a snapshot built for an
# endpoint-only change takes it over from the one before instead of rebuilding it for every scope.
# (CDS also holds the service identities clients verify: a change of those is a full push, see below.)
# The sidecar tables' parts (VHDS resources, default vhosts) carry over too, so that a VirtualService
# change after endpoint changes still finds what the last route generation built.
_CONFIG_ONLY_MEMOS = frozenset(
    {
        "cluster_specs",
        "cluster_specs_by_name",
        "cds",
        "rds",
        "vhds",
        "vhds_resources",
        "vhost_defaults",
        "ecds",
    }
)


def service_accounts(snap: Snapshot, hosts: Iterable[str]) -> dict[str, frozenset[tuple[str, str]]]:
    """(namespace, service account) of the meshed endpoints of each host: what CDS's SANs come from."""
    registry = snap.registry
    out: dict[str, frozenset[tuple[str, str]]] = {}
    for host in set(hosts):
        ids: set[tuple[str, str]] = set()
        # Every endpoint key is a port of a service of that host: look those up, not every key.
        for svc in registry.by_host.get(host, ()):
            for port in svc.ports:
                for e in registry._endpoints.get((host, svc.namespace, port.port), ()):
                    if e.sidecar and e.service_account:
                        ids.add((e.namespace, e.service_account))
        out[host] = frozenset(ids)
    return out


def changed_endpoint_clusters(old: Snapshot, new: Snapshot) -> frozenset[str]:
    """Names of every outbound cluster (default and subsets) of services whose endpoints changed."""
    old_eps = old.registry._endpoints
    new_eps = new.registry._endpoints
    hosts: set[str] = set()
    for key, eps in new_eps.items():
        # A snapshot updated for a pod change shares the unchanged groups: identity settles most.
        before = old_eps.get(key)
        if before is not eps and before != eps:
            hosts.add(key[0])
    hosts.update(key[0] for key in old_eps.keys() - new_eps.keys())
    if not hosts:
        return frozenset()
    subsets: dict[str, set[str]] = {}
    for dr in new.destination_rules.all() + old.destination_rules.all():
        subsets.setdefault(dr.host, set()).update(s.name for s in dr.subsets)
    from isthmus.model import hosts as h

    names: set[str] = set()
    for svc in [
        svc for host in hosts for reg in (new.registry, old.registry) for svc in reg.by_host.get(host, ())
    ]:
        subset_names = {""}
        for dr_host, names_ in subsets.items():
            if h.subset_of(svc.hostname, dr_host) or dr_host == svc.hostname:
                subset_names |= names_
        for port in svc.ports:
            for subset in subset_names:
                names.add(naming.outbound_cluster(port.port, subset, svc.hostname))
    return frozenset(names)


def _inline_assignment(snapshot: Snapshot, hosts: Iterable[str]) -> bool:
    """Whether a service of these hosts has STRICT_DNS / LOGICAL_DNS clusters (endpoints inline)."""
    by_host = snapshot.registry.by_host
    return any(svc.resolution in INLINE_ASSIGNMENT for host in hosts for svc in by_host.get(host, ()))


def _inherit_config_memos(old: Snapshot, new: Snapshot) -> None:
    old_pods, new_pods = old.registry.pods, new.registry.pods
    for key, value in old._memo.items():
        if not isinstance(key, tuple) or not key:
            continue
        if key[0] in _CONFIG_ONLY_MEMOS:
            new._memo.setdefault(key, value)
        elif key[0] == "lds" and key[1] == "sidecar":
            # A sidecar's listeners read endpoints only through its own pod (inbound ports): they carry
            # over unless that pod changed. (Key: see generator.listener_key.)
            pod_key = (key[3], key[4])
            if old_pods.get(pod_key) is new_pods.get(pod_key):
                new._memo.setdefault(key, value)
    for what, error in old.generation_errors.items():
        new.generation_errors.setdefault(what, error)


def _inherit_jwks_memos(old: Snapshot, new: Snapshot) -> None:
    """After a change of fetched key sets alone: everything but the jwt_authn configs (ECDS) carries
    over, with what building it reported."""
    for key, value in old._memo.items():
        if isinstance(key, tuple) and key and key[0] in _CONFIG_ONLY_MEMOS and key[0] != "ecds":
            new._memo.setdefault(key, value)
    for what, error in old.generation_errors.items():
        if not what.startswith("RequestAuthentication "):
            new.generation_errors.setdefault(what, error)


class ControlPlane:
    def __init__(self, store: Store, *, metrics: CollectorRegistry | None = None) -> None:
        self.store = store
        self.metrics = metrics or CollectorRegistry()
        self.generator = MeshGenerator()
        # Istio's metrics, access logs and traces, fed by every proxy's access-log stream.
        self.telemetry = Telemetry(lambda: self.snapshot, proxy_lookup=lambda pid: self.xds.proxy(pid))
        self.xds = XdsServer(
            self.generator, registry=self.metrics, extra_handlers=self.telemetry.grpc_handlers()
        )
        self.metrics.register(self.telemetry.collector())
        self._counter = 0
        self.snapshot = Snapshot.build(0, [], [])
        # The store version the snapshot was built from (None: not from the store yet).
        self._built_at: int | None = None
        self._pending: list[Change] = []
        self._scheduled = False
        # The JWKS resolver is a source too: keys it fetched (or failed to) make a new snapshot.
        self._jwks_changed = False
        self.jwks = JwksResolver(
            registry_lookup(lambda: self.snapshot), self._on_jwks_change, **env_settings()
        )
        self._built = asyncio.Event()
        self._build_time = Histogram(
            "isthmus_snapshot_build_seconds",
            "Time to build a config snapshot from the store",
            registry=self.metrics,
        )
        store.subscribe(self._on_change)

    # --- change handling ---------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        self._pending.append(change)
        self._schedule_rebuild()

    def _on_jwks_change(self) -> None:
        self._jwks_changed = True
        self._schedule_rebuild()

    def _schedule_rebuild(self) -> None:
        """One rebuild for every change that arrives before the loop runs it (at once without a loop)."""
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.rebuild)
            except RuntimeError:
                self.rebuild()

    def current(self) -> Snapshot:
        """The snapshot with every change the store has seen so far (rebuilt now if one is pending)."""
        if self._pending or self._jwks_changed:
            return self.rebuild()
        return self.snapshot

    def rebuild(self) -> Snapshot:
        """Build a snapshot from the store now and push what changed."""
        self._scheduled = False
        changes, self._pending = self._pending, []
        jwks_changed, self._jwks_changed = self._jwks_changed, False
        if not changes and not jwks_changed and self._counter:
            return self.snapshot
        started = time.perf_counter()
        self._counter += 1
        old = self.snapshot
        new = None
        if not changes and jwks_changed:
            # Only fetched key sets changed: the config and the registry are the old snapshot's.
            new = Snapshot.build_configs_changed(
                old, self._counter, self.store.list(), frozenset({"RequestAuthentication"})
            )
        elif self._contiguous(changes):
            if not any(c.config_changed for c in changes):
                new = Snapshot.build_pods_changed(old, self._counter, self.store.pods())
            elif not any(c.pods_changed for c in changes):
                kinds = frozenset(k[0] for c in changes for k in (*c.upserted, *c.deleted))
                new = Snapshot.build_configs_changed(old, self._counter, self.store.list(), kinds)
        if new is None:
            new = Snapshot.build(self._counter, self.store.list(), self.store.pods())
        self._built_at = self.store.version
        new.jwks = self.jwks.update(jwks.wanted(new.configs))
        self.snapshot = new
        self._build_time.observe(time.perf_counter() - started)
        request = self._push_request(changes, old, new)
        if jwks_changed:
            # istiod's PushFunc on a key change: a full push (the ECDS config of jwt_authn changes).
            # The jwt_authn configs an endpoint-only change would have carried over are stale.
            for key in [k for k in new._memo if isinstance(k, tuple) and k and k[0] == "ecds"]:
                del new._memo[key]
            for what in [w for w in new.generation_errors if w.startswith("RequestAuthentication ")]:
                del new.generation_errors[what]
            if request is None:
                _inherit_jwks_memos(old, new)
                request = PushRequest(full=True, reason="jwks")
            elif not request.full:
                new.endpoints_changed_from = None
                request = PushRequest(full=True, reason=f"{request.reason}; jwks")
        # A snapshot reuses from the one before it only: no chain of old snapshots stays alive.
        old.routes_changed_from = old.endpoints_changed_from = None
        log.info(
            "snapshot %s built in %.1f ms (%s)",
            new.version,
            (time.perf_counter() - started) * 1000,
            request.reason if request is not None else "no push",
        )
        if request is not None:
            self.xds.update(new, request)
        else:
            # Nothing to send, but connecting proxies must see the newest snapshot.
            self.xds.update(new, PushRequest(full=False, eds_only_clusters=frozenset(), reason="no-op"))
        return new

    def _contiguous(self, changes: list[Change]) -> bool:
        """Whether the store differs from the snapshot's inputs by these changes alone: every write since
        it was built is one of them (none missed)."""
        if self._built_at is None:
            return False
        return sorted(c.version for c in changes) == list(range(self._built_at + 1, self.store.version + 1))

    def _push_request(self, changes: Iterable[Change], old: Snapshot, new: Snapshot) -> PushRequest | None:
        changes = list(changes)
        config_keys = [k for c in changes for k in (*c.upserted, *c.deleted)]
        if any(k[0] not in _NO_PUSH_KINDS for k in config_keys):
            kinds = {k[0] for k in config_keys} - _NO_PUSH_KINDS
            if kinds == {"VirtualService"} and not any(c.pods_changed for c in changes):
                new.routes_changed_from = old
            return PushRequest(full=True, reason="config: " + ",".join(sorted(kinds)))
        if any(c.pods_changed for c in changes):
            clusters = changed_endpoint_clusters(old, new)
            if clusters:
                hosts = {
                    naming.parse_outbound_cluster(c)[2] for c in clusters if naming.parse_outbound_cluster(c)
                }
                if service_accounts(old, hosts) != service_accounts(new, hosts):
                    # Clients verify a service's peers against its service accounts (CDS), as istiod does.
                    return PushRequest(full=True, reason="endpoints with new service accounts")
                if headless.pods_of(old.registry, hosts) != headless.pods_of(new.registry, hosts):
                    # Each pod of a headless service has routes of its own (RDS).
                    return PushRequest(full=True, reason="pods of a headless service")
                if _inline_assignment(old, hosts) or _inline_assignment(new, hosts):
                    # A DNS cluster carries its endpoints in the cluster itself (CDS), not in EDS: istiod
                    # pushes in full then (TestWorkloadInstanceFullPush).
                    return PushRequest(full=True, reason="endpoints of a DNS cluster")
                _inherit_config_memos(old, new)
                new.endpoints_changed_from = (old, clusters)
                # A self-discovery local_cluster holds endpoints of its proxy's own service: sent again
                # to the proxies that watch it (it is built per proxy, never reused from a scope).
                eds = clusters | {zone_aware.SELF_DISCOVERY_CLUSTER}
                return PushRequest(full=False, eds_only_clusters=eds, reason="endpoints")
            _inherit_config_memos(old, new)
        return None

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self, host: str, port: int, *, stats_port: int | None = None) -> int:
        """Serve xDS on host:port; with `stats_port`, also the in-proxy metrics modules' reports (UDP)."""
        gc_policy.tune()
        self.rebuild()
        bound = await self.xds.start(host, port)
        if stats_port is not None:
            await self.telemetry.start_receiver(host, stats_port)
        return bound

    async def stop(self) -> None:
        await self.jwks.close()
        self.telemetry.stop_receiver()
        await self.xds.stop(grace=1.0)

    async def wait_pushed(
        self, version: int | str, proxy_ids: set[str] | None = None, timeout: float = 10.0
    ) -> bool:
        """True once the given (or all) connected proxies ACKed config at snapshot `version` or newer."""
        self.xds.flush()
        return await self.xds.wait_synced(str(version), proxy_ids, timeout=timeout)
