"""Debugging logic behind `isthmus route test`, `explain`, `describe` and `x authz check` (no CLI here).

- `envoy_config`: a proxy's config (what Envoy holds, from its admin config dump, or what the control
  plane would generate) as plain dicts in Envoy's JSON form, indexed for lookups.
- `matching`: Envoy's virtual-host and route selection, in Python, for the config Isthmus generates.
- `route_test`: "where would this request go" on a `ProxyConfig`.
- `preview`: the config a proxy *would* get with candidate resources added (used by the HTTP API).
- `accesslog` / `flags` / `explain`: access-log lines and response flags in plain words.
- `describe`: istioctl's `x describe` on the control plane's model.
- `authz`: istioctl's `x authz check` on a config dump.
- `live`: fetching all of the above from a running mesh (HTTP API and Envoy admin).
"""
