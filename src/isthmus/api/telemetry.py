"""telemetry.istio.io Telemetry (v1, v1alpha1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from isthmus.api.types import ApiModel, Duration, PolicyTargetReference, WorkloadSelector

WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]


class ProviderRef(ApiModel):
    name: str


class TracingSelector(ApiModel):
    mode: WorkloadMode | None = None


class CustomTagLiteral(ApiModel):
    value: str


class CustomTagEnvironment(ApiModel):
    name: str
    default_value: str | None = None


class CustomTagHeader(ApiModel):
    name: str
    default_value: str | None = None


class CustomTagFormatter(ApiModel):
    value: str


class CustomTag(ApiModel):
    __oneofs__ = (("literal", "environment", "header", "formatter"),)

    literal: CustomTagLiteral | None = None
    environment: CustomTagEnvironment | None = None
    header: CustomTagHeader | None = None
    formatter: CustomTagFormatter | None = None


class Tracing(ApiModel):
    match: TracingSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] = Field(default_factory=dict)
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None
    disable_context_propagation: bool | None = None


IstioMetric = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class MetricSelector(ApiModel):
    __oneofs__ = (("metric", "custom_metric"),)

    metric: IstioMetric | None = None
    custom_metric: str | None = None
    mode: WorkloadMode | None = None


class TagOverride(ApiModel):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None


class MetricsOverrides(ApiModel):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] = Field(default_factory=dict)


class Metrics(ApiModel):
    providers: list[ProviderRef] = Field(default_factory=list)
    overrides: list[MetricsOverrides] = Field(default_factory=list)
    reporting_interval: Duration | None = None


class AccessLoggingFilter(ApiModel):
    expression: str | None = None


class AccessLogging(ApiModel):
    match: TracingSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: bool | None = None
    filter: AccessLoggingFilter | None = None


class Telemetry(ApiModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    tracing: list[Tracing] = Field(default_factory=list)
    metrics: list[Metrics] = Field(default_factory=list)
    access_logging: list[AccessLogging] = Field(default_factory=list)
