"""ServiceEntry and WorkloadEntry rules (Istio ``ValidateServiceEntry``, ``validateWorkloadEntry``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api.paths import join
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    HTTP_PROTOCOLS,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
    Report,
    is_ip,
    parse_protocol,
    q,
    validate_export_to,
    validate_fqdn,
    validate_ip_subnet,
    validate_labels,
    validate_partial_wildcard,
    validate_port,
    validate_port_name,
    validate_protocol,
    validate_selector_labels,
    validate_unix_address,
    validate_wildcard_domain,
)

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

UNIX_PREFIX = "unix://"
# Label that opts a ServiceEntry out of address auto-allocation ("false", any case).
AUTO_ALLOCATE_LABEL = "networking.istio.io/enable-autoallocate-ip"
USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
# Protocols the dynamic forward proxy cluster serves (DYNAMIC_DNS resolution).
DYNAMIC_DNS_PROTOCOLS = frozenset({"HTTP", "TLS", "GRPC", "HTTP2"})


def _auto_allocates(res: Resource, se: n.ServiceEntry) -> bool:
    """``serviceentry.ShouldV2AutoAllocateIPFromConfig`` with PILOT_ENABLE_IP_AUTOALLOCATE on (its default):
    NONE resolution cannot honour an assigned IP, and user addresses or the opt-out label disable it."""
    if (se.resolution or "NONE") == "NONE":
        return False
    if res.labels.get(AUTO_ALLOCATE_LABEL, "").lower() == "false":
        return False
    return not se.addresses


def _uses_waypoint(res: Resource) -> bool:
    value = res.labels.get(USE_WAYPOINT_LABEL, "")
    return value != "" and value.lower() != "none"


def validate_workload_entry(
    r: Report, p: str, we: n.WorkloadEntry, service_ports: set[str] | None, allow_fqdn: bool
) -> None:
    addr = we.address or ""
    if addr == "":
        if not we.network:
            r.error(join(p, "address"), "address is required")
            return
        r.warn(join(p, "address"), f"address is unset with network {q(we.network)}")
    unix = addr.startswith(UNIX_PREFIX)
    if unix:
        r.error(join(p, "address"), validate_unix_address(addr[len(UNIX_PREFIX) :]))
        if we.ports:
            r.error(join(p, "ports"), f"unix endpoint {addr} must not include ports")
    elif addr and not is_ip(addr):
        if not allow_fqdn:
            r.error(join(p, "address"), f"endpoint address {q(addr)} is not a valid IP address")
        elif validate_fqdn(addr):
            r.error(join(p, "address"), f"endpoint address {q(addr)} is not a valid FQDN or an IP address")
    for name, port in we.ports.items():
        pp = join(p, "ports", name)
        if service_ports is not None and name not in service_ports:
            r.error(pp, f"endpoint port {port} is not defined by the service entry")
        r.error(pp, validate_port_name(name))
        r.error(pp, validate_port(port))
    r.errors(join(p, "labels"), validate_labels(we.labels))
    if unix and service_ports is not None and len(service_ports) != 1:
        r.error(p, "exactly 1 service port required for unix endpoints")


@register("WorkloadEntry")
def validate_workload_entry_resource(res: Resource, r: Report) -> None:
    validate_workload_entry(r, "spec", res.spec, None, True)  # type: ignore[arg-type]


@register("ServiceEntry")
def validate_service_entry(res: Resource, r: Report) -> None:
    se: n.ServiceEntry = res.spec  # type: ignore[assignment]
    if se.workload_selector is not None:
        labels = se.workload_selector.labels
        for k, v in labels.items():
            if k == "":
                r.error("spec.workloadSelector.labels", f'empty key is not supported in selector: "{k}={v}"')
            if "*" in k or "*" in v:
                r.error(
                    join("spec.workloadSelector.labels", k),
                    f'wildcard is not supported in selector: "{k}={v}"',
                )
        if not labels:
            r.warn(
                "spec.workloadSelector",
                "service entry: workload selector specified without labels, will be applied to all services in namespace",
            )
        if se.is_set("endpoints"):
            r.error("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry")

    if not se.hosts:
        r.error("spec.hosts", "service entry must have at least one host")
    resolution = se.resolution or "NONE"
    for i, h in enumerate(se.hosts):
        hp = f"spec.hosts[{i}]"
        if h == "*":
            r.error(hp, f"invalid host {h}")
        else:
            r.error(hp, validate_wildcard_domain(h))
            # DYNAMIC_DNS matches hosts by suffix itself, so partial wildcards are fine there.
            if resolution != "DYNAMIC_DNS":
                r.warn(hp, validate_partial_wildcard(h))

    cidr = False
    for i, addr in enumerate(se.addresses):
        cidr = cidr or "/" in addr
        r.error(f"spec.addresses[{i}]", validate_ip_subnet(addr))
    if cidr and resolution not in ("NONE", "STATIC"):
        r.error("spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types")

    auto_alloc = _auto_allocates(res, se)
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(se.ports):
        pp = f"spec.ports[{i}]"
        if port.name in names:
            r.error(join(pp, "name"), f"service entry port name {q(port.name)} already defined")
        names.add(port.name)
        if port.number in numbers:
            r.error(join(pp, "number"), f"service entry port {port.number} already defined")
        numbers.add(port.number)
        if port.target_port:
            r.error(join(pp, "targetPort"), validate_port(port.target_port))
        if not se.addresses and not auto_alloc and (not port.protocol or port.protocol == "TCP"):
            r.warn(
                pp,
                "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
            )
        r.error(join(pp, "name"), validate_port_name(port.name))
        r.error(join(pp, "protocol"), validate_protocol(port.protocol))
        r.error(join(pp, "number"), validate_port(port.number))

    if resolution == "NONE":
        if se.endpoints:
            r.error("spec.endpoints", "no endpoints should be provided for resolution type none")
        if se.workload_selector is not None:
            r.warn("spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE")
    elif resolution == "STATIC":
        for i, ep in enumerate(se.endpoints):
            validate_workload_entry(r, f"spec.endpoints[{i}]", ep, names, False)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not se.endpoints:
            for i, h in enumerate(se.hosts):
                err = validate_fqdn(h)
                if err:
                    r.error(
                        f"spec.hosts[{i}]",
                        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for "
                        f"resolution mode {resolution}, {err}",
                    )
                    break  # Istio reports the first offending host only
        if resolution == "DNS_ROUND_ROBIN" and len(se.endpoints) > 1:
            r.error("spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for i, ep in enumerate(se.endpoints):
            ep_path = f"spec.endpoints[{i}]"
            addr = ep.address or ""
            if not is_ip(addr) and validate_fqdn(addr):
                r.error(
                    join(ep_path, "address"),
                    f"endpoint address {q(addr)} is not a valid FQDN or an IP address",
                )
            r.errors(join(ep_path, "labels"), validate_labels(ep.labels))
            for name, port in ep.ports.items():
                pp = join(ep_path, "ports", name)
                if name not in names:
                    r.error(pp, f"endpoint port {port} is not defined by the service entry")
                r.error(pp, validate_port_name(name))
                r.error(pp, validate_port(port))
        if se.addresses and len(se.hosts) > 1:
            for port in se.ports:
                if parse_protocol(port.protocol) in TCP_PROTOCOLS:
                    r.warn(
                        "spec.hosts",
                        "service entry can not have more than one host specified simultaneously with address and tcp port",
                    )
                    break
    elif resolution == "DYNAMIC_DNS":
        if not se.hosts:
            r.error(
                "spec.hosts", f"at least one wildcard host must be provided for resolution type {resolution}"
            )
        for i, h in enumerate(se.hosts):
            if not h.startswith("*"):
                r.error(f"spec.hosts[{i}]", f"host must be wildcarded for resolution mode {resolution}")
        # The two messages below keep Istio's missing spaces ("generatedfrom", "hostsfield") verbatim.
        if se.addresses:
            r.error(
                "spec.addresses",
                f"addresses cannot be set for resolution type {resolution}. HTTP route domains will only be "
                "generatedfrom the hosts field values",
            )
        if se.endpoints:
            r.error(
                "spec.endpoints",
                f"endpoints cannot be set for resolution type {resolution}. Destination IP address determined "
                "from hostsfield values",
            )
        for i, port in enumerate(se.ports):
            if parse_protocol(port.protocol) not in DYNAMIC_DNS_PROTOCOLS:
                r.error(
                    f"spec.ports[{i}].protocol",
                    f"only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type {resolution}",
                )
        location = se.location or "MESH_EXTERNAL"
        if location == "MESH_INTERNAL" and _uses_waypoint(res):
            r.error(
                "spec.location",
                f"location MESH_INTERNAL with resolution type {resolution} is not supported when using waypoints",
            )

    # Several hosts and plain TCP cannot be told apart, unless the hosts are ignored (NONE).
    if resolution != "NONE" and len(se.hosts) > 1:
        for i, port in enumerate(se.ports):
            proto = parse_protocol(port.protocol)
            if proto not in HTTP_PROTOCOLS and proto not in TLS_PROTOCOLS:
                r.error(f"spec.ports[{i}]", "multiple hosts provided with non-HTTP, non-TLS ports")
                break

    validate_export_to(r, "spec.exportTo", res.namespace, se.export_to, service_entry=True)


__all__ = ["validate_selector_labels", "validate_workload_entry"]
