"""VirtualServices as istiod sees them: short names resolved, delegates merged, visibility indexed.

References: `pilot/pkg/model/virtualservice.go` (short names, MergeHTTPRoutes, hasConflict) and
`pilot/pkg/model/push_context.go` (initVirtualServices, gateway index).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus.config.store import Config
from isthmus.model import hosts as h
from isthmus.model.visibility import PRIVATE, PUBLIC, is_visible, normalize

MESH_GATEWAY = "mesh"


def creation_key(creation_order: tuple, name: str, namespace: str) -> tuple:
    """istiod's sortConfigByCreationTime / SortServicesByCreationTime: oldest first, and for equal
    creation times (one apply, or Kubernetes' one-second timestamps) the name, then the namespace."""
    return (creation_order[:1], name, namespace)


def config_creation_key(cfg: Config) -> tuple:
    return creation_key(cfg.creation_order, cfg.name, cfg.namespace)


@dataclass(frozen=True)
class VirtualServiceEntry:
    config: Config
    hosts: tuple[str, ...]
    gateways: frozenset[str]
    http: tuple[Any, ...]
    tcp: tuple[Any, ...]
    tls: tuple[Any, ...]
    export_to: frozenset[str]
    # Problems found while merging delegates, reported as status messages.
    problems: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def config_path(self) -> str:
        return f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/virtual-service/{self.name}"

    def http_destination_hosts(self) -> list[str]:
        """Every host the HTTP rules route or mirror to, in rule order (repeats kept)."""
        out = []
        for route in self.http:
            for d in route.route or ():
                if d.destination is not None:
                    out.append(d.destination.host)
            if route.mirror is not None:
                out.append(route.mirror.host)
            for m in route.mirrors or ():
                if m.destination is not None:
                    out.append(m.destination.host)
        return out

    def destination_hosts(self) -> list[str]:
        """Every host any rule (HTTP, TCP, TLS) sends traffic to."""
        out = self.http_destination_hosts()
        for rule in (*self.tcp, *self.tls):
            for d in rule.route or ():
                if d.destination is not None:
                    out.append(d.destination.host)
        return out


def _copy(model: Any, **update: Any) -> Any:
    return model.model_copy(update=update)


def _resolve_destination(dest: Any, ns: str, domain: str) -> Any:
    if dest is None or not dest.host:
        return dest
    return _copy(dest, host=h.resolve_short_name(dest.host, ns, domain))


def resolve_http_route(route: Any, ns: str, domain: str) -> Any:
    """Destination/mirror hosts to FQDNs and match gateways to `ns/name`, in the VS's namespace."""
    update: dict[str, Any] = {}
    if route.route:
        update["route"] = [
            _copy(d, destination=_resolve_destination(d.destination, ns, domain)) for d in route.route
        ]
    if route.mirror is not None:
        update["mirror"] = _resolve_destination(route.mirror, ns, domain)
    if route.mirrors:
        update["mirrors"] = [
            _copy(m, destination=_resolve_destination(m.destination, ns, domain)) for m in route.mirrors
        ]
    if route.match:
        update["match"] = [
            _copy(m, gateways=[h.resolve_gateway_name(g, ns) for g in m.gateways]) if m.gateways else m
            for m in route.match
        ]
    return _copy(route, **update) if update else route


def _resolve_l4_route(rule: Any, ns: str, domain: str) -> Any:
    update: dict[str, Any] = {}
    if rule.route:
        update["route"] = [
            _copy(d, destination=_resolve_destination(d.destination, ns, domain)) for d in rule.route
        ]
    if rule.match:
        update["match"] = [
            _copy(m, gateways=[h.resolve_gateway_name(g, ns) for g in m.gateways]) if m.gateways else m
            for m in rule.match
        ]
    return _copy(rule, **update) if update else rule


# --- delegation (MergeHTTPRoutes) -------------------------------------------------------------


def _sm(m: Any) -> tuple[str, str] | None:
    """A StringMatch as (kind, value)."""
    if m is None:
        return None
    for kind in ("exact", "prefix", "suffix", "regex"):
        value = getattr(m, kind, None)
        if value:
            return kind, value
    return ("", "")


_LITERAL_KINDS = ("regex", "prefix", "suffix", "exact")


def _string_match_conflict(root: Any, leaf: Any) -> bool:
    """istiod's stringMatchConflict, with suffix (istio/api#3759) treated as the mirror image of prefix: a
    leaf suffix narrows a root suffix when it ends with it, an exact leaf fits a root suffix it ends with,
    and a suffix never fits an exact or prefix root (nor a prefix leaf a suffix root)."""
    if root is None or leaf is None:
        return False
    r, lf = _sm(root), _sm(leaf)
    assert r is not None and lf is not None
    if r[0] == "regex" and lf[0] in _LITERAL_KINDS:
        return True
    if lf[0] == "regex" and r[0] in _LITERAL_KINDS:
        return True
    if r[0] == "exact":
        if lf[0] in ("prefix", "suffix"):
            return True
        return not (lf[0] == "exact" and lf[1] == r[1])
    if r[0] == "prefix" and lf[0] in ("prefix", "exact"):
        return not lf[1].startswith(r[1])
    if r[0] == "suffix" and lf[0] in ("suffix", "exact"):
        return not lf[1].endswith(r[1])
    return True


def _has_conflict(root: Any, leaf: Any) -> bool:
    for attr in ("uri", "scheme", "method", "authority"):
        if _string_match_conflict(getattr(root, attr), getattr(leaf, attr)):
            return True
    for attr in ("headers", "without_headers", "query_params"):
        rmap = getattr(root, attr) or {}
        for key, value in (getattr(leaf, attr) or {}).items():
            if _string_match_conflict(rmap.get(key), value):
                return True
    if bool(root.ignore_uri_case) != bool(leaf.ignore_uri_case):
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    for key, value in (leaf.source_labels or {}).items():
        if key in (root.source_labels or {}) and root.source_labels[key] != value:
            return True
    if root.gateways and leaf.gateways:
        if len(root.gateways) < len(leaf.gateways):
            return True
        if not set(leaf.gateways) <= set(root.gateways):
            return True
    return False


def _join_name(root: str | None, leaf: str | None) -> str | None:
    if not leaf:
        return root
    if root:
        return f"{root}-{leaf}"
    return leaf


def _merge_match(root: Any, leaf: Any) -> Any:
    update: dict[str, Any] = {"name": _join_name(root.name, leaf.name)}
    for attr in ("uri", "scheme", "method", "authority", "source_namespace", "stat_prefix"):
        if not getattr(leaf, attr):
            update[attr] = getattr(root, attr)
    for attr in ("headers", "without_headers", "query_params", "source_labels"):
        rmap, lmap = getattr(root, attr) or {}, getattr(leaf, attr) or {}
        if rmap or lmap:
            update[attr] = {**rmap, **lmap}
    if not leaf.port:
        update["port"] = root.port
    if not leaf.gateways:
        update["gateways"] = root.gateways
    return _copy(leaf, **update)


def _merge_matches(root: Sequence[Any], leaf: Sequence[Any]) -> tuple[list[Any], bool]:
    if not root:
        return list(leaf), False
    if not leaf:
        return list(root), False
    out: list[Any] = []
    for sub in leaf:
        found = False
        for r in root:
            if _has_conflict(r, sub):
                continue
            out.append(_merge_match(r, sub))
            found = True
        if not found:
            return [], True
    return out, not out


_INHERITED = (
    "rewrite",
    "direct_response",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "cors_policy",
    "mirrors",
    "headers",
)


def merge_delegate_routes(root: Any, delegate_routes: Sequence[Any]) -> list[Any]:
    out = []
    for sub in delegate_routes:
        merged, conflict = _merge_matches(root.match or [], sub.match or [])
        if conflict:
            continue
        update: dict[str, Any] = {"match": merged, "name": _join_name(root.name, sub.name)}
        for attr in _INHERITED:
            # Unset in the delegate (None, or an empty list for `mirrors`: proto's nil) -> the root's.
            if getattr(sub, attr, None) in (None, []):
                update[attr] = getattr(root, attr, None)
        out.append(_copy(sub, **update))
    return out


# --- the index ----------------------------------------------------------------------------------


def _default_export_to(default: frozenset[str]) -> frozenset[str]:
    """The visibility of a (root or plain) VirtualService without exportTo. istiod's initVirtualServices
    honours only "." and "*" of MeshConfig's defaultVirtualServiceExportTo, "." first: under a default
    naming namespaces only, such a VirtualService is put in no index and applies nowhere. (Delegates
    take the default as it is: mergeVirtualServicesIfNeeded checks it for the root's namespace.)"""
    if PRIVATE in default:
        return frozenset({PRIVATE})
    if PUBLIC in default:
        return frozenset({PUBLIC})
    return frozenset()


@dataclass
class VirtualServiceIndex:
    entries: list[VirtualServiceEntry] = field(default_factory=list)
    delegates: dict[tuple[str, str], VirtualServiceEntry] = field(default_factory=dict)

    @classmethod
    def build(
        cls, configs: Iterable[Config], default_export_to: frozenset[str], domain: str
    ) -> VirtualServiceIndex:
        index = cls()
        roots: list[tuple[Config, Any]] = []
        for cfg in configs:
            spec = cfg.spec
            ns = cfg.namespace
            export_to = normalize(spec.export_to, default_export_to)
            http = tuple(resolve_http_route(r, ns, domain) for r in spec.http or ())
            if not spec.hosts:
                index.delegates[(ns, cfg.name)] = VirtualServiceEntry(
                    config=cfg,
                    hosts=(),
                    gateways=frozenset(),
                    http=http,
                    tcp=(),
                    tls=(),
                    export_to=export_to,
                )
                continue
            roots.append((cfg, http))
        for cfg, http in roots:
            spec = cfg.spec
            ns = cfg.namespace
            problems: list[str] = []
            merged: list[Any] = []
            for route in http:
                if route.delegate is None:
                    merged.append(route)
                    continue
                dns = route.delegate.namespace or ns
                delegate = index.delegates.get((dns, route.delegate.name))
                if delegate is None:
                    problems.append(f"delegate VirtualService {dns}/{route.delegate.name} not found")
                    continue
                if not is_visible(delegate.export_to, dns, ns):
                    problems.append(
                        f"delegate VirtualService {dns}/{route.delegate.name} is not exported to {ns}"
                    )
                    continue
                merged.extend(merge_delegate_routes(_copy(route, delegate=None), delegate.http))
            gateways = (
                frozenset(h.resolve_gateway_name(g, ns) for g in spec.gateways)
                if spec.gateways
                else frozenset({MESH_GATEWAY})
            )
            index.entries.append(
                VirtualServiceEntry(
                    config=cfg,
                    hosts=tuple(h.resolve_short_name(x, ns, domain) for x in spec.hosts),
                    gateways=gateways,
                    http=tuple(merged),
                    tcp=tuple(_resolve_l4_route(r, ns, domain) for r in spec.tcp or ()),
                    tls=tuple(_resolve_l4_route(r, ns, domain) for r in spec.tls or ()),
                    export_to=frozenset(spec.export_to)
                    if spec.export_to
                    else _default_export_to(default_export_to),
                    problems=tuple(problems),
                )
            )
        index.entries.sort(key=lambda e: config_creation_key(e.config))
        return index

    def for_namespace(self, namespace: str, gateway: str) -> list[VirtualServiceEntry]:
        """Istio's order: private VSes of the namespace, then exported to it, then public (each oldest first)."""
        private, exported, public = [], [], []
        for e in self.entries:
            # istiod indexes a VirtualService under its own `gateways` only (getGatewayNames): a
            # match-level `gateways` picks rules within one already bound there, never binds more.
            if gateway not in e.gateways:
                continue
            if not is_visible(e.export_to, e.namespace, namespace):
                continue
            if "*" in e.export_to:
                public.append(e)
            elif e.namespace == namespace:
                private.append(e)
            else:
                exported.append(e)
        return private + exported + public
