"""security.istio.io kinds: PeerAuthentication, AuthorizationPolicy, RequestAuthentication (v1, v1beta1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from isthmus.api.types import ApiModel, Duration, PolicyTargetReference, WorkloadSelector

# ==================================================================================================
# PeerAuthentication

MTLSMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class PeerAuthenticationMutualTLS(ApiModel):
    mode: MTLSMode | None = None


class PeerAuthentication(ApiModel):
    selector: WorkloadSelector | None = None
    mtls: PeerAuthenticationMutualTLS | None = None
    port_level_mtls: dict[str, PeerAuthenticationMutualTLS] = Field(default_factory=dict)


# ==================================================================================================
# AuthorizationPolicy


class Source(ApiModel):
    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    request_principals: list[str] = Field(default_factory=list)
    not_request_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)
    service_accounts: list[str] = Field(default_factory=list)
    not_service_accounts: list[str] = Field(default_factory=list)
    ip_blocks: list[str] = Field(default_factory=list)
    not_ip_blocks: list[str] = Field(default_factory=list)
    remote_ip_blocks: list[str] = Field(default_factory=list)
    not_remote_ip_blocks: list[str] = Field(default_factory=list)
    trust_domains: list[str] = Field(default_factory=list)
    not_trust_domains: list[str] = Field(default_factory=list)


class Operation(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    not_hosts: list[str] = Field(default_factory=list)
    ports: list[str] = Field(default_factory=list)
    not_ports: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    not_paths: list[str] = Field(default_factory=list)


class RuleFrom(ApiModel):
    source: Source | None = None


class RuleTo(ApiModel):
    operation: Operation | None = None


class Condition(ApiModel):
    key: str
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)


class Rule(ApiModel):
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class ExtensionProviderRef(ApiModel):
    name: str | None = None


AuthorizationAction = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class AuthorizationPolicy(ApiModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    # Unset and empty are the same in Istio: the policy matches nothing.
    rules: list[Rule] = Field(default_factory=list)
    action: AuthorizationAction | None = None
    provider: ExtensionProviderRef | None = None


# ==================================================================================================
# RequestAuthentication


class JWTHeader(ApiModel):
    name: str
    prefix: str | None = None


class ClaimToHeader(ApiModel):
    header: str
    claim: str


class JWTRule(ApiModel):
    issuer: str | None = None
    audiences: list[str] = Field(default_factory=list)
    jwks_uri: str | None = None  # also accepted as jwks_uri
    jwks: str | None = None
    from_headers: list[JWTHeader] = Field(default_factory=list)
    from_params: list[str] = Field(default_factory=list)
    from_cookies: list[str] = Field(default_factory=list)
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    timeout: Duration | None = None
    space_delimited_claims: list[str] = Field(default_factory=list)
    # istio/api#3737 (REQUIRED) and #3801 (IGNORED, failedStatusInMetadata); unset is OPTIONAL.
    presence: Literal["OPTIONAL", "REQUIRED", "IGNORED"] | None = None
    failed_status_in_metadata: bool | None = None


class RequestAuthentication(ApiModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    jwt_rules: list[JWTRule] = Field(default_factory=list)
