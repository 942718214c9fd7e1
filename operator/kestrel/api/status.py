"""The observed state of a ModelDeployment, written only by the operator."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from kestrel.api.base import ApiModel
from kestrel.api.conditions import Condition

Phase = Literal["Pending", "Building", "Validating", "RollingOut", "Ready", "Degraded", "Failed"]


class EngineStatus(ApiModel):
    """The engine that was built (or found in the cache) for the current spec."""

    key: str | None = pydantic.Field(default=None, description="Cache key: hash of source, engine spec, GPU, builder.")
    digest: str | None = pydantic.Field(default=None, description="sha256 of the engine's signed manifest.")
    format: str | None = pydantic.Field(default=None, description="The format actually built.")
    precision: str | None = pydantic.Field(default=None, description="The precision actually built.")
    size_bytes: int | None = pydantic.Field(default=None, ge=0, description="Size of the engine files.")
    gpu_product: str | None = pydantic.Field(default=None, description="GPU the engine was built on.")
    uri: str | None = pydantic.Field(default=None, description="Where the engine is stored.")
    load_seconds: float | None = pydantic.Field(default=None, ge=0, description="Measured model load time.")


class ValidationStatus(ApiModel):
    """What the gate measured."""

    passed: bool | None = pydantic.Field(default=None, description="Whether the engine passed the gate.")
    map_source: float | None = pydantic.Field(default=None, description="mAP50-95 of the source model.")
    map_engine: float | None = pydantic.Field(default=None, description="mAP50-95 of the engine.")
    map50_source: float | None = pydantic.Field(default=None, description="mAP50 of the source model.")
    map50_engine: float | None = pydantic.Field(default=None, description="mAP50 of the engine.")
    max_output_delta: float | None = pydantic.Field(default=None, description="Largest raw-output difference.")
    mean_output_delta: float | None = pydantic.Field(default=None, description="Mean raw-output difference.")
    p50_ms: float | None = pydantic.Field(default=None, description="Median latency at batch 1, ms.")
    p95_ms: float | None = pydantic.Field(default=None, description="95th-percentile latency at batch 1, ms.")
    throughput: float | None = pydantic.Field(default=None, description="Images per second at max batch.")


class RevisionStatus(ApiModel):
    """Which engine revisions serve, and which to return to."""

    current: str | None = pydantic.Field(default=None, description="Engine key now serving.")
    previous: str | None = pydantic.Field(default=None, description="Engine key served before; the rollback target.")
    failed: str | None = pydantic.Field(
        default=None, description="Engine key whose rollout failed and was rolled back; not retried for this spec."
    )


class EndpointsStatus(ApiModel):
    """Where clients reach the model."""

    grpc: str | None = pydantic.Field(default=None, description="gRPC endpoint (host:port).")
    http: str | None = pydantic.Field(default=None, description="HTTP endpoint (URL).")
    metrics: str | None = pydantic.Field(default=None, description="Prometheus metrics URL.")


class ModelDeploymentStatus(ApiModel):
    """Conditions are the truth; the other fields summarize them for people and tools."""

    phase: Phase | None = pydantic.Field(default=None, description="A one-word summary for display.")
    observed_generation: int | None = pydantic.Field(default=None, ge=0, description="The spec generation acted on.")
    conditions: Annotated[list[Condition], pydantic.Field(max_length=32)] | None = pydantic.Field(
        default=None,
        description="Observations, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    engine: EngineStatus | None = pydantic.Field(default=None, description="The built engine.")
    validation: ValidationStatus | None = pydantic.Field(default=None, description="The gate's numbers.")
    revision: RevisionStatus | None = pydantic.Field(default=None, description="Serving revisions.")
    endpoints: EndpointsStatus | None = pydantic.Field(default=None, description="Client endpoints.")
    replicas: int | None = pydantic.Field(default=None, ge=0, description="Desired Triton replicas.")
    ready_replicas: int | None = pydantic.Field(default=None, ge=0, description="Ready Triton replicas.")
