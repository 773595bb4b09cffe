"""`isthmus x authz check PROXY`: the AuthorizationPolicies in force on a proxy, from its config dump.

Isthmus delivers HTTP policies per route over RDS (`typed_per_filter_config` entries
`envoy.filters.http.rbac.{audit,deny,allow}` holding `RBACPerRoute`; CUSTOM ones under
`envoy.filters.http.rbac.custom.<provider>`, one per ext_authz provider, and `envoy.filters.http.rbac.custom`
for the rules of providers that cannot be used) and TCP policies as network RBAC
filters on the inbound TCP chains; an HTTP filter with rules of its own is read too. Every RBAC policy
is named `ns[<ns>]-policy[<name>]-rule[<i>]` (istiod's convention), so the table groups them back into
AuthorizationPolicies: ACTION, `name.namespace`, RULES (as istioctl prints), and each rule's principals
and permissions in Istio's words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus.debug.envoy_config import ProxyConfig, hcm_of_chain, typed_per_filter
from isthmus.debug.flags import parse_policy_name
from isthmus.debug.matching import describe_header_matcher, describe_string_match
from isthmus.xds.gen import naming

HTTP_FILTERS = {
    naming.CUSTOM_RBAC_FILTER: "CUSTOM",
    "envoy.filters.http.rbac.audit": "AUDIT",
    "envoy.filters.http.rbac.deny": "DENY",
    "envoy.filters.http.rbac.allow": "ALLOW",
}
NETWORK_RBAC = "envoy.filters.network.rbac"
CUSTOM_PREFIX = "istio-ext-authz-"
CUSTOM_FILTER = naming.CUSTOM_RBAC_FILTER


def http_filter_action(name: str) -> str | None:
    """The action an HTTP RBAC filter (or per-route entry) of this name carries, None if not one: the
    CUSTOM filters are one per provider (`envoy.filters.http.rbac.custom.<provider>`)."""
    if name.startswith(CUSTOM_FILTER + "."):
        return "CUSTOM"
    return HTTP_FILTERS.get(name)


# istioctl's name for an RBAC config whose enforced rules hold no policy (an ALLOW matching nothing, e.g.
# an ALLOW policy whose only rules are HTTP-only, on a TCP chain): listener.go's anonymousName.
ANONYMOUS = "_anonymous_match_nothing_"
# The ACTION column shows the RBAC action, as istioctl prints it: AUDIT policies are RBAC LOG.
_TABLE_ACTIONS = {"AUDIT": "LOG"}
_ACTIONS = {"ALLOW": "ALLOW", "DENY": "DENY", "LOG": "AUDIT", None: "ALLOW", "": "ALLOW"}


@dataclass
class RbacRule:
    action: str  # CUSTOM, ALLOW, DENY, AUDIT
    name: str  # ns[..]-policy[..]-rule[i], or any other RBAC policy name
    policy: dict[str, Any]
    dry_run: bool = False
    where: set[str] = field(default_factory=set)

    @property
    def parsed(self) -> tuple[str, str, int] | None:
        # istioctl's extractName wants every part non-empty (`ns\[(.+)\]-policy\[(.+)\]-rule\[(.+)\]`).
        p = parse_policy_name(self.name)
        return p if p is not None and p[0] and p[1] else None

    @property
    def policy_ref(self) -> str:
        p = self.parsed
        return f"{p[1]}.{p[0]}" if p else self.name

    @property
    def rule_index(self) -> int | None:
        if self.name == ANONYMOUS:
            return 0
        p = self.parsed
        return p[2] if p else None

    def summary(self) -> str:
        return summarize_policy(self.policy)


def _rules_of(rbac: Mapping[str, Any] | None, default_action: str | None) -> tuple[str, dict[str, Any]]:
    rbac = rbac or {}
    action = _ACTIONS.get(rbac.get("action"), str(rbac.get("action")))
    if rbac.get("action") is None and default_action:
        action = default_action
    return action, dict(rbac.get("policies") or {})


def _add(
    found: dict[tuple[str, str, bool], RbacRule],
    rbac: Mapping[str, Any] | None,
    default_action: str | None,
    where: str,
    dry_run: bool,
) -> None:
    if rbac is None:  # an empty `rules` ({}) is an ALLOW that matches nothing, not an absent config
        return
    action, policies = _rules_of(rbac, default_action)
    if not policies and not dry_run:
        policies = {ANONYMOUS: {}}
    for name, policy in policies.items():
        # CUSTOM rules are shadow rules by design: they mark the requests ext_authz is asked about.
        custom = name.startswith(CUSTOM_PREFIX)
        key = ("CUSTOM" if custom else action, name, dry_run and not custom)
        entry = found.get(key)
        if entry is None:
            entry = found[key] = RbacRule(action=key[0], name=name, policy=dict(policy), dry_run=key[2])
        entry.where.add(where)


def _add_config(
    found: dict[tuple[str, str, bool], RbacRule],
    config: Mapping[str, Any],
    default_action: str | None,
    where: str,
) -> None:
    _add(found, config.get("rules"), default_action, where, False)
    _add(found, config.get("shadow_rules"), default_action, where, True)


def collect(config: ProxyConfig) -> list[RbacRule]:
    """Every RBAC policy the proxy enforces (or shadows), once, with where it applies."""
    found: dict[tuple[str, str, bool], RbacRule] = {}
    for rc_name, rc in sorted(config.routes.items()):
        for vh in rc.get("virtual_hosts", []) or []:
            for obj, label in [(vh, f"HTTP route {rc_name}")] + [
                (r, f"HTTP route {rc_name}") for r in vh.get("routes", []) or []
            ]:
                for fname in sorted(obj.get("typed_per_filter_config") or {}):
                    action = http_filter_action(fname)
                    per = typed_per_filter(obj, fname) if action else None
                    if per:
                        _add_config(found, per.get("rbac") or {}, action, label)
    for lst in config.listeners:
        lname = lst.get("name", "")
        chains = list(lst.get("filter_chains", []) or [])
        if lst.get("default_filter_chain"):
            chains.append(lst["default_filter_chain"])
        for chain in chains:
            label = f"TCP listener {lname}" + (f" chain {chain['name']}" if chain.get("name") else "")
            for f in chain.get("filters", []) or []:
                if f.get("name") == NETWORK_RBAC:
                    _add_config(found, f.get("typed_config") or {}, None, label)
            hcm = hcm_of_chain(chain)
            for hf in (hcm or {}).get("http_filters", []) or []:
                name = hf.get("name", "")
                action = http_filter_action(name)
                if action or name == "envoy.filters.http.rbac":
                    _add_config(found, hf.get("typed_config") or {}, action, f"HTTP listener {lname}")
    order = {"CUSTOM": -1, "DENY": 0, "ALLOW": 1, "AUDIT": 2}
    return sorted(
        found.values(), key=lambda r: (order.get(r.action, 3), r.policy_ref, r.rule_index or 0, r.dry_run)
    )


@dataclass
class PolicyRow:
    action: str
    policy: str  # name.namespace
    rules: list[RbacRule]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "authorizationPolicy": self.policy,
            "rules": len(self.rules),
            "dryRun": self.dry_run,
            "where": sorted({w for r in self.rules for w in r.where}),
            "ruleDetails": [
                {"name": r.name, "index": r.rule_index, "summary": r.summary(), "where": sorted(r.where)}
                for r in self.rules
            ],
        }


def policy_rows(rules: Sequence[RbacRule]) -> list[PolicyRow]:
    rows: dict[tuple[str, str, bool], PolicyRow] = {}
    for r in rules:
        key = (r.action, r.policy_ref, r.dry_run)
        row = rows.get(key)
        if row is None:
            row = rows[key] = PolicyRow(r.action, r.policy_ref, [], r.dry_run)
        if all(x.name != r.name for x in row.rules):
            row.rules.append(r)
    return list(rows.values())


def check(config: ProxyConfig) -> list[PolicyRow]:
    return policy_rows(collect(config))


# --- readable rules ------------------------------------------------------------------------------


def _cidr(c: Mapping[str, Any]) -> str:
    plen = c.get("prefix_len")
    if isinstance(plen, dict):
        plen = plen.get("value")
    return f"{c.get('address_prefix', '')}/{plen if plen is not None else 32}"


def _principal_name(sm: Mapping[str, Any]) -> str:
    if "safe_regex" in sm:
        regex = (sm["safe_regex"] or {}).get("regex", "")
        if regex.startswith(".*/ns/") and regex.endswith("/.*"):
            return f"source.namespace {regex[len('.*/ns/') : -3].replace('.*', '*')}"
        if regex.startswith("spiffe://.+/ns/") and "/sa/" in regex:
            ns = regex[len("spiffe://.+/ns/") :].split("/", 1)[0]
            sa = regex.split("/sa/", 1)[1].removesuffix("(/.+)?")
            return f"source.serviceAccount {ns.replace('.*', '*')}/{sa.replace('.*', '*')}"
        if regex == ".+":
            return "any authenticated principal"
        return f"source.principal regex {regex!r}"
    if "exact" in sm:
        return f"source.principal {sm['exact'].removeprefix('spiffe://')}"
    if "prefix" in sm:
        pre = sm["prefix"]
        if pre == "spiffe://":
            return "any authenticated principal"
        if pre.startswith("spiffe://") and pre.endswith("/"):
            return f"source.trustDomain {pre[len('spiffe://') : -1]}"
        return f"source.principal {pre.removeprefix('spiffe://')}*"
    if "suffix" in sm:
        return f"source.principal *{sm['suffix']}"
    return "source.principal " + describe_string_match(sm)


def _value_condition(value: Mapping[str, Any]) -> str:
    """A metadata value matcher in words. A JWT claim matcher is "a list holding one of the values, or
    one of the values" (claims may be either): both halves read the same, so it is said once."""
    if value.get("present_match"):
        return "present"
    if "string_match" in value:
        return describe_string_match(value["string_match"])
    if "list_match" in value:
        return _value_condition((value["list_match"] or {}).get("one_of") or {})
    if "or_match" in value:
        conds = list(
            dict.fromkeys(_value_condition(v) for v in (value["or_match"] or {}).get("value_matchers", []))
        )
        return conds[0] if len(conds) == 1 else "(" + " or ".join(conds) + ")"
    return str(value)


def _metadata(md: Mapping[str, Any]) -> str:
    path = [seg.get("key", "") for seg in md.get("path", []) or []]
    if path and path[0] == "payload":
        path = path[1:]
    cond = _value_condition(md.get("value") or {})
    key = {"iss": "request.auth.principal (issuer)", "sub": "request.auth.principal (subject)",
           "aud": "request.auth.audiences", "azp": "request.auth.presenter"}.get(
        ".".join(path), f"request.auth.claims[{']['.join(path)}]"
    )  # fmt: skip
    return f"{key} {cond}"


def summarize_principal(p: Mapping[str, Any]) -> str:
    if p.get("any"):
        return "any"
    if "authenticated" in p:
        return _principal_name((p["authenticated"] or {}).get("principal_name") or {"prefix": "spiffe://"})
    if "direct_remote_ip" in p:
        return f"source.ip {_cidr(p['direct_remote_ip'])}"
    if "remote_ip" in p:
        return f"remote.ip {_cidr(p['remote_ip'])}"
    if "source_ip" in p:
        return f"source.ip {_cidr(p['source_ip'])}"
    if "header" in p:
        return "request." + describe_header_matcher(p["header"]).replace("header ", "headers[", 1).replace(
            " ", "] ", 1
        )
    if "metadata" in p:
        return _metadata(p["metadata"])
    if "or_ids" in p:
        ids = [summarize_principal(x) for x in (p["or_ids"] or {}).get("ids", [])]
        return ids[0] if len(ids) == 1 else "(" + " or ".join(ids) + ")"
    if "and_ids" in p:
        ids = [summarize_principal(x) for x in (p["and_ids"] or {}).get("ids", [])]
        return " and ".join(ids)
    if "not_id" in p:
        inner = p["not_id"] or {}
        if inner.get("any"):
            return "nothing"
        return f"not {summarize_principal(inner)}"
    return str(dict(p))


def summarize_permission(p: Mapping[str, Any]) -> str:
    if p.get("any"):
        return "any"
    if "header" in p:
        hm = p["header"]
        name = hm.get("name", "")
        label = {":method": "method", ":authority": "host", ":path": "path"}.get(name)
        desc = describe_header_matcher(hm)
        if label:
            return desc.replace(f"header {name}", label, 1)
        return "request." + desc.replace("header ", "headers[", 1).replace(" ", "] ", 1)
    if "url_path" in p:
        return f"path {describe_string_match((p['url_path'] or {}).get('path') or {})}"
    if "uri_template" in p:
        tmpl = ((p["uri_template"] or {}).get("typed_config") or {}).get("path_template", "")
        return f"path template {tmpl!r}"
    if "destination_port" in p:
        return f"port {p['destination_port']}"
    if "destination_ip" in p:
        return f"destination.ip {_cidr(p['destination_ip'])}"
    if "requested_server_name" in p:
        return f"connection.sni {describe_string_match(p['requested_server_name'])}"
    if "metadata" in p:
        return _metadata(p["metadata"])
    if "or_rules" in p:
        rules = [summarize_permission(x) for x in (p["or_rules"] or {}).get("rules", [])]
        return rules[0] if len(rules) == 1 else "(" + " or ".join(rules) + ")"
    if "and_rules" in p:
        rules = [summarize_permission(x) for x in (p["and_rules"] or {}).get("rules", [])]
        return " and ".join(rules)
    if "not_rule" in p:
        inner = p["not_rule"] or {}
        if inner.get("any"):
            return "nothing"
        return f"not {summarize_permission(inner)}"
    return str(dict(p))


def summarize_policy(policy: Mapping[str, Any]) -> str:
    if not policy:
        return "matches nothing (no RBAC policy: every rule was HTTP-only on a TCP chain)"
    principals = [summarize_principal(x) for x in policy.get("principals", []) or []]
    permissions = [summarize_permission(x) for x in policy.get("permissions", []) or []]
    if "nothing" in principals and "nothing" in permissions and len(principals) == len(permissions) == 1:
        return "matches nothing (a policy without rules)"
    frm = " | ".join(principals) or "any"
    to = " | ".join(permissions) or "any"
    return f"from: {frm}; to: {to}"


# --- text ---------------------------------------------------------------------------------------------


def render_table(rows: Sequence[PolicyRow], *, details: bool = False) -> str:
    """istioctl's table (tabwriter, padding 3): ACTION, name.namespace, RULES; only the header when no
    policy applies. `details` adds each rule in words and where it is enforced."""
    actions = [_TABLE_ACTIONS.get(r.action, r.action) + (" (dry-run)" if r.dry_run else "") for r in rows]
    width0 = max([len("ACTION"), *(len(a) for a in actions)]) + 3
    width1 = max([len("AuthorizationPolicy"), *(len(r.policy) for r in rows)]) + 3
    lines = [f"{'ACTION':<{width0}}{'AuthorizationPolicy':<{width1}}RULES"]
    for action, r in zip(actions, rows, strict=True):
        lines.append(f"{action:<{width0}}{r.policy:<{width1}}{len(r.rules)}")
    if details and rows:
        lines.append("")
        for r in rows:
            for rule in r.rules:
                idx = f"rule[{rule.rule_index}]" if rule.rule_index is not None else rule.name
                lines.append(f"{r.action} {r.policy} {idx}: {rule.summary()}")
        wheres = sorted({w for r in rows for rule in r.rules for w in rule.where})
        lines.append("")
        lines.append("Enforced on: " + ", ".join(wheres))
    return "\n".join(lines) + "\n"
