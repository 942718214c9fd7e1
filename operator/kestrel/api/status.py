"""The observed state of a ModelDeployment, written only by the operator."""

from __future__ import annotations

import datetime
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


class BuildProgressStatus(ApiModel):
    """Where a running build is, as its own log says (read by the operator each pass while it runs)."""

    job: str = pydantic.Field(max_length=63, description="The build Job.")
    stage: str = pydantic.Field(
        max_length=16,
        description="fetch, baseline, prune, fine-tune, distill, export, calibrate, validate, profile or publish.",
    )
    done: int | None = pydantic.Field(default=None, ge=0, description="Units of the stage done.")
    total: int | None = pydantic.Field(default=None, ge=0, description="Units of the stage in all.")
    unit: str | None = pydantic.Field(default=None, max_length=16, description="What `done` and `total` count.")


class RevisionStatus(ApiModel):
    """Which engine revisions serve, and which to return to."""

    current: str | None = pydantic.Field(default=None, description="Engine key now serving.")
    previous: str | None = pydantic.Field(default=None, description="Engine key served before; the rollback target.")
    failed: str | None = pydantic.Field(
        default=None, description="Engine key whose rollout failed and was rolled back; not retried for this spec."
    )


CanaryState = Literal["Progressing", "Promoting", "Promoted", "Failed"]


class CanaryAnalysisStatus(ApiModel):
    """What the canary's pods showed on Triton's metrics over one analysis window."""

    requests: int | None = pydantic.Field(default=None, ge=0, description="Requests answered in the window.")
    failures: int | None = pydantic.Field(default=None, ge=0, description="Failed requests in the window.")
    error_rate: float | None = pydantic.Field(default=None, ge=0, le=1, description="Failed fraction of requests.")
    p95_ms: float | None = pydantic.Field(default=None, ge=0, description="p95 request latency at the window's end.")
    passed: bool | None = pydantic.Field(default=None, description="Whether the window met the analysis bounds.")


class CanaryCounters(ApiModel):
    """Triton's request counters of the canary's pods when the step's window began (deltas start here)."""

    success: int = pydantic.Field(default=0, ge=0, description="nv_inference_request_success.")
    failure: int = pydantic.Field(default=0, ge=0, description="nv_inference_request_failure.")


class CanaryStatus(ApiModel):
    """The operator-stepped canary of a new revision beside the stable one; kept after it ends, for the record."""

    revision: str = pydantic.Field(description="Engine key on the canary.")
    state: CanaryState = pydantic.Field(description="Progressing, Promoting, Promoted or Failed.")
    generation: int = pydantic.Field(ge=0, description="Spec generation the canary runs for; a spec change aborts it.")
    step: int = pydantic.Field(ge=0, description="Index into spec.rollout.canary.steps.")
    weight: int = pydantic.Field(ge=0, le=100, description="The step's percentage.")
    replicas: int | None = pydantic.Field(default=None, ge=0, description="Canary replicas of this step.")
    step_started_at: datetime.datetime | None = pydantic.Field(
        default=None, description="When this step's analysis window began (its pods were all available)."
    )
    baseline: CanaryCounters | None = pydantic.Field(default=None, description="Counters at the window's start.")
    analysis: CanaryAnalysisStatus | None = pydantic.Field(default=None, description="The last window's numbers.")


class SmokeStatus(ApiModel):
    """The operator's own live check of a revision through the Service, once its rollout is complete: a grey image
    answered well, then the build's probe images answered with the detections the build recorded (condition
    Verified)."""

    revision: str | None = pydantic.Field(default=None, description="Engine key the check ran against.")
    passed: bool | None = pydantic.Field(default=None, description="Whether it passed; null when it was not run.")
    parity: bool | None = pydantic.Field(
        default=None,
        description="Whether the probe images were answered as the build recorded; null when none were compared "
        "(the message says why).",
    )
    probes: int | None = pydantic.Field(
        default=None, ge=0, description="Probe images answered as recorded (of those the build recorded)."
    )
    latency_ms: float | None = pydantic.Field(default=None, ge=0, description="The grey image's round trip, ms.")
    checked_at: datetime.datetime | None = pydantic.Field(default=None, description="When it ran.")
    message: str = pydantic.Field(default="", description="What was checked, or why it failed or was not run.")


class ServingMetricsStatus(ApiModel):
    """Triton's counters of the ready pods, summed (counters since each pod started; quantiles the worst pod's).

    A scrape that reads the numbers already recorded leaves the record (and its time) as it was: an idle model
    costs no status write.
    """

    requests: int | None = pydantic.Field(default=None, ge=0, description="Requests answered (succeeded + failed).")
    failures: int | None = pydantic.Field(default=None, ge=0, description="Failed requests.")
    queue_p50_ms: float | None = pydantic.Field(
        default=None, ge=0, description="Median queue time over Triton's recent window; null without summary latencies."
    )
    queue_mean_ms: float | None = pydantic.Field(
        default=None, ge=0, description="Mean queue time of successful requests since the pods started."
    )
    pods: int | None = pydantic.Field(default=None, ge=0, description="Pods whose metrics were read.")
    scraped_at: datetime.datetime | None = pydantic.Field(default=None, description="When these numbers were read.")
    error: str | None = pydantic.Field(default=None, description="Why the last scrape failed, if it did.")


class ServingChecksStatus(ApiModel):
    """What the operator observed as a client of the served model."""

    smoke: SmokeStatus | None = pydantic.Field(
        default=None, description="The live check of the revision: smoke inference and probe parity."
    )
    metrics: ServingMetricsStatus | None = pydantic.Field(default=None, description="Triton's metrics, summed.")


class EndpointsStatus(ApiModel):
    """Where clients reach the model."""

    grpc: str | None = pydantic.Field(default=None, description="gRPC endpoint (host:port).")
    http: str | None = pydantic.Field(default=None, description="HTTP endpoint (URL).")
    metrics: str | None = pydantic.Field(default=None, description="Prometheus metrics URL.")
    ca_config_map: str | None = pydantic.Field(
        default=None,
        description="ConfigMap in the model's namespace whose ca.crt verifies the server certificate (TLS only).",
    )


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
    build: BuildProgressStatus | None = pydantic.Field(
        default=None, description="The running build's stage; absent when no build runs."
    )
    revision: RevisionStatus | None = pydantic.Field(default=None, description="Serving revisions.")
    canary: CanaryStatus | None = pydantic.Field(default=None, description="The canary of a new revision.")
    endpoints: EndpointsStatus | None = pydantic.Field(default=None, description="Client endpoints.")
    serving: ServingChecksStatus | None = pydantic.Field(
        default=None, description="The live check (smoke inference, probe parity) and metrics."
    )
    replicas: int | None = pydantic.Field(default=None, ge=0, description="Desired Triton replicas.")
    ready_replicas: int | None = pydantic.Field(default=None, ge=0, description="Ready Triton replicas.")
