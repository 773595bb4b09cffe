"""WorkloadGroup, EnvoyFilter, ProxyConfig and Telemetry rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from isthmus.api import networking as n
from isthmus.api import telemetry as t
from isthmus.api.paths import join
from isthmus.api.validation import register
from isthmus.api.validation.common import (
    Report,
    regex_error,
    validate_labels,
    validate_port,
    validate_port_name,
    validate_selector_labels,
)
from isthmus.api.validation.security import validate_policy_targeting, validate_selector, validate_target_ref

if TYPE_CHECKING:
    from isthmus.api.resource import Resource

_PROBE_HEADER_RE = re.compile(r"^[-A-Za-z0-9]+$")


@register("WorkloadGroup")
def validate_workload_group(res: Resource, r: Report) -> None:
    wg: n.WorkloadGroup = res.spec  # type: ignore[assignment]
    if wg.metadata is not None:
        for err in validate_labels(wg.metadata.labels):
            r.error("spec.metadata.labels", f"invalid labels: {err}")
    # istiod's webhook leaves the template alone (address and the like are filled in per instance), but the
    # CRD schema gives spec.template the WorkloadEntry schema, whose `ports` rules ("port name must be valid",
    # "port must be between 1-65535") the API server enforces there too (istio/api
    # tests/testdata/workloadgroup-invalid.yaml "port-name-length-boundary").
    for name, number in wg.template.ports.items():
        pp = join("spec.template.ports", name)
        r.error(pp, validate_port_name(name))
        r.error(pp, validate_port(number))
    probe = wg.probe
    if probe is None:
        return
    p = "spec.probe"
    for attr, alias in (
        ("period_seconds", "periodSeconds"),
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        v = getattr(probe, attr)
        if v is not None and v < 0:
            r.error(join(p, alias), f"{alias} must be non-negative")
    if probe.http_get is not None:
        h = probe.http_get
        r.error(join(p, "httpGet", "port"), validate_port(h.port))
        if h.scheme and h.scheme not in ("HTTP", "HTTPS"):
            r.error(join(p, "httpGet", "scheme"), 'httpGet.scheme must be one of "HTTPS", "HTTP"')
        for i, header in enumerate(h.http_headers):
            hp = join(p, "httpGet", "httpHeaders", i, "name")
            if not header.name:
                r.error(hp, "header name cannot be empty")
            elif not _PROBE_HEADER_RE.match(header.name):
                r.error(hp, f"header name {header.name} is not a valid header name")
    elif probe.tcp_socket is not None:
        r.error(join(p, "tcpSocket", "port"), validate_port(probe.tcp_socket.port))
    elif probe.exec_ is not None:
        if not probe.exec_.command:
            r.error(join(p, "exec", "command"), "exec.command is required")
    elif probe.grpc is not None:
        r.error(join(p, "grpc", "port"), validate_port(probe.grpc.port or 0))
    else:
        r.error(p, "unknown health check method <nil>")


_REPLACE_OK = ("HTTP_FILTER", "NETWORK_FILTER")


@register("EnvoyFilter")
def validate_envoy_filter(res: Resource, r: Report) -> None:
    ef: n.EnvoyFilter = res.spec  # type: ignore[assignment]
    if ef.workload_selector is not None:
        validate_selector_labels(r, "spec.workloadSelector.labels", ef.workload_selector.labels)
        if ef.target_refs:
            r.error("spec", "only one of targetRefs or workloadSelector can be set")
    for i, ref in enumerate(ef.target_refs):
        validate_target_ref(r, f"spec.targetRefs[{i}]", ref)
    for i, cp in enumerate(ef.config_patches):
        p = f"spec.configPatches[{i}]"
        if cp.patch is None:
            r.error(p, "Envoy filter: missing patch")
            continue
        if cp.apply_to in (None, "INVALID"):
            r.error(join(p, "applyTo"), "Envoy filter: missing applyTo")
            continue
        op = cp.patch.operation
        if op in (None, "INVALID"):
            r.error(join(p, "patch", "operation"), "Envoy filter: missing patch operation")
            continue
        if op == "REPLACE" and cp.apply_to not in _REPLACE_OK:
            r.error(
                join(p, "patch", "operation"),
                "Envoy filter: REPLACE operation is only applicable to HTTP_FILTER and NETWORK_FILTER",
            )
        if op in ("ADD", "REMOVE") and cp.apply_to in ("ROUTE_CONFIGURATION", "HTTP_ROUTE"):
            r.warn(
                join(p, "patch", "operation"), f"the {op} operation is ignored when applyTo is {cp.apply_to}"
            )
        value_ops = (
            "MERGE",
            "MERGE_AND_REPLACE_LIST",
            "INSERT_BEFORE",
            "INSERT_AFTER",
            "INSERT_FIRST",
            "REPLACE",
        )
        if op in value_ops and not cp.patch.value:
            r.error(join(p, "patch", "value"), "Envoy filter: missing patch value for non-remove operation")
        if cp.match is not None and cp.match.proxy is not None and cp.match.proxy.proxy_version:
            err = regex_error(cp.match.proxy.proxy_version)
            if err:
                r.error(
                    join(p, "match", "proxy", "proxyVersion"),
                    f"Envoy filter: invalid regex for proxy version, [{err}]",
                )


@register("ProxyConfig")
def validate_proxy_config(res: Resource, r: Report) -> None:
    pc: n.ProxyConfig = res.spec  # type: ignore[assignment]
    validate_selector(r, "spec.selector", pc.selector)
    if pc.concurrency is not None and pc.concurrency < 0:
        r.error("spec.concurrency", "concurrency must be greater than or equal to 0")


@register("Telemetry")
def validate_telemetry(res: Resource, r: Report) -> None:
    tel: t.Telemetry = res.spec  # type: ignore[assignment]
    validate_policy_targeting(r, tel)

    for i, m in enumerate(tel.metrics):
        mp = f"spec.metrics[{i}]"
        _providers(r, join(mp, "providers"), m.providers)
        for j, o in enumerate(m.overrides):
            op = join(mp, "overrides", j)
            for name, to in o.tag_overrides.items():
                tp = join(op, "tagOverrides", name)
                if name == "":
                    r.warn(tp, "tagOverrides.name may not be empty")
                if to.operation in (None, "UPSERT"):
                    if not to.value:
                        r.error(tp, "tagOverrides.value must be set when operation is UPSERT")
                elif to.value:
                    r.error(tp, "tagOverrides.value may only be set when operation is UPSERT")
            if o.match is not None and o.match.custom_metric is not None and o.match.custom_metric == "":
                r.error(join(op, "match", "customMetric"), "customMetric may not be empty")
    if len(tel.tracing) > 1:
        r.warn("spec.tracing", "multiple tracing is not currently supported")
    for i, tr in enumerate(tel.tracing):
        tp = f"spec.tracing[{i}]"
        if len(tr.providers) > 1:
            r.warn(join(tp, "providers"), "multiple providers is not currently supported")
        _providers(r, join(tp, "providers"), tr.providers)
        pct = tr.random_sampling_percentage
        if pct is not None and not 0 <= pct <= 100:
            r.error(
                join(tp, "randomSamplingPercentage"), "randomSamplingPercentage must be in range [0.0, 100.0]"
            )
        for name, tag in tr.custom_tags.items():
            cp = join(tp, "customTags", name)
            if name == "":
                r.error(cp, "tag name may not be empty")
            if tag.literal is not None and not tag.literal.value:
                r.error(cp, "literal tag value may not be empty")
            if tag.header is not None and not tag.header.name:
                r.error(cp, "header tag name may not be empty")
            if tag.environment is not None and not tag.environment.name:
                r.error(cp, "environment tag name may not be empty")
    for i, al in enumerate(tel.access_logging):
        if al.filter is not None and al.filter.expression:
            err = cel_syntax_error(al.filter.expression)
            if err:
                r.error(join(f"spec.accessLogging[{i}]", "filter", "expression"), f"invalid filter: {err}")
        _providers(r, join(f"spec.accessLogging[{i}]", "providers"), al.providers)


_CEL_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?[uU]?)"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,\[\](){}]))"""
)
_CEL_BINARY = frozenset(
    {"&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "*", "/", "%", "?", ":", ".", ","}
)


def cel_syntax_error(expr: str) -> str | None:
    """A syntax check of an access log filter (Istio parses it with the CEL parser). Not a full CEL parser:
    it catches unknown characters, unbalanced brackets and misplaced operators, which is what a typo gives."""
    pos, prev, stack = 0, None, []
    pairs = {")": "(", "]": "[", "}": "{"}
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _CEL_TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            return f"Syntax error: token recognition error at: {expr[pos:].strip()[:1]!r}"
        tok = m.group(m.lastgroup or "")
        kind = m.lastgroup
        if kind == "op" and tok in "([{":
            stack.append(tok)
        elif kind == "op" and tok in ")]}":
            if not stack or stack.pop() != pairs[tok]:
                return f"Syntax error: mismatched input {tok!r}"
        elif kind == "op" and tok in _CEL_BINARY and (prev is None or prev in _CEL_BINARY or prev in "([{"):
            return f"Syntax error: mismatched input {tok!r}"
        prev = tok if kind == "op" else kind
        pos = m.end()
    if stack:
        return "Syntax error: missing closing bracket"
    if prev in _CEL_BINARY or prev in ("!", "-"):
        return "Syntax error: expression ends with an operator"
    return None


def _providers(r: Report, p: str, providers: list[t.ProviderRef]) -> None:
    for i, prov in enumerate(providers):
        if not prov.name:
            r.error(join(p, i, "name"), "providers.name may not be empty")
            return
