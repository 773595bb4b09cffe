"""The `isthmus status` document (DESIGN.md §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from isthmus.registry.build import UNIX_ADDRESS_PREFIX
from isthmus.registry.types import socket_port

if TYPE_CHECKING:
    from isthmus.mesh.runner import Mesh


def _gateway_address(bind: str, port: int) -> str:
    """`ip:port`, or a unix socket server's `unix://` path as written (it has no port)."""
    return bind if bind.startswith(UNIX_ADDRESS_PREFIX) else f"{bind}:{port}"


def build_status(mesh: Mesh) -> dict[str, Any]:
    snapshot = mesh.cp.current()
    xds = {s.id: s for s in mesh.cp.xds.status()}
    offset = mesh.options.effective_port_offset
    proxies: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    for pod in mesh.all_pods():
        s = pod.spec
        ports = [{"port": t, "appPort": a} for t, a in sorted(s.app_ports.items())]
        instances.append(
            {
                "workload": s.workload,
                "instance": s.name,
                "namespace": s.namespace,
                "labels": s.labels,
                "ip": s.ip,
                "sidecar": s.sidecar,
                "gateway": s.gateway,
                "ports": ports,
                "state": pod.state,
                "restarts": pod.restarts,
                "lastCrash": pod.last_crash,
            }
        )
        if pod.proxy is None:
            continue
        proxy = pod.proxy
        st = xds.get(proxy.id)
        if proxy.kind == "gateway":
            listeners = [
                {
                    "port": srv.port,
                    "address": _gateway_address(srv.bind or s.ip, socket_port(srv.listen_port, offset)),
                    "protocol": srv.protocol.value,
                }
                for srv in snapshot.gateway_servers(proxy)
            ]
            inbound: list[dict[str, Any]] = []
        else:
            # What the sidecar serves: the Workload's ports, or a Sidecar's ingress listeners instead (the
            # declared ports while the snapshot does not know the pod yet).
            served = snapshot.inbound_ports(proxy)
            if served:
                inbound = [{"port": ib.port, "appPort": ib.app_port} for ib in served]
            else:
                inbound = ports
            listeners = [
                {"port": ib["port"], "address": f"{s.ip}:{socket_port(ib['port'], offset)}"} for ib in inbound
            ]
        seen: set[tuple[int, str]] = set()
        unique = []
        for lst in listeners:
            k = (lst["port"], lst["address"])
            if k not in seen:
                seen.add(k)
                unique.append(lst)
        proxies.append(
            {
                "id": proxy.id,
                "kind": proxy.kind,
                "workload": s.workload,
                "instance": s.name,
                "namespace": s.namespace,
                "labels": s.labels,
                "serviceAccount": s.service_account,
                "ip": s.ip,
                "adminPort": mesh.admin_port(),
                "outboundPort": mesh.outbound_port() if proxy.kind == "sidecar" else None,
                "inbound": inbound,
                "listeners": unique,
                "configVersion": st.config_version if st is not None else None,
                "sync": st.sync if st is not None else {},
                "xdsProtocol": st.protocol if st is not None else None,  # delta | sotw
                "nacks": {t: v["last_nack"] for t, v in st.types.items() if v["last_nack"]}
                if st is not None
                else {},
                "state": pod.state,
                # Secrets its Envoy asked for and lacks, and why: they hold config back (a warming
                # cluster or listener keeps the CDS/LDS ACK waiting), so it stays STALE until they exist.
                "secretsWaiting": mesh.security.waiting(s.namespace, s.name) if mesh.security else {},
                # Where the proxy's Istio metrics are computed: "proxy" (the in-proxy module, the
                # default) or "access-log" (an entry per request to the control plane), and why not in
                # the proxy: "error" when ISTHMUS_PROXY_METRICS asked for it (or is not a boolean),
                # "note" when only the default could not be honoured (e.g. no C compiler).
                "metrics": {
                    "pipeline": "proxy" if pod.stats_module_dir is not None else "access-log",
                    "error": pod.stats_module_error,
                    "note": pod.stats_module_note,
                },
                # What the proxy started with; outdated: a ProxyConfig/MeshConfig change since then that
                # only a restart applies (Istio applies ProxyConfig at pod start).
                "proxyConfig": {
                    **s.proxy_config.summary(),
                    "concurrency": pod.concurrency,
                    "outdated": mesh.proxy_config_outdated(pod),
                },
            }
        )
    errors = {
        source.removeprefix("file:"): [str(e) for e in errs]
        for source, errs in mesh.store.source_errors.items()
    }
    return {
        "controlPlane": {
            "xds": f"{mesh.cp_ip}:15010",
            "api": mesh.api_url,
            # The CA's bundle, and whether the last plug-in CA update was refused (and why).
            "ca": mesh.security.ca_status() if mesh.security is not None else None,
        },
        "configVersion": snapshot.version,
        "configDir": str(mesh.options.config_dir),
        "proxies": proxies,
        "instances": instances,
        "configErrors": errors,
        "generationErrors": dict(snapshot.generation_errors),
    }
