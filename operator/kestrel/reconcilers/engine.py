"""Engine: makes sure an engine exists for the current spec and was validated; owns Built and Validated.

One build Job per engine key (`NAME-build-KEY8`): the name is derived from the key, so a restarted
operator finds the Job it started instead of starting another. The Job reports through its pod's
termination message (`api.result`); a failed gate leaves the serving revision untouched.
"""

from __future__ import annotations

from typing import Any

import pydantic

from kestrel.api import conditions, keys, result, status
from kestrel.manifests import build_job, names
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import context

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _job_outcome(job: dict[str, Any]) -> tuple[str, str] | None:
    """("Complete" | "Failed", message) once the Job has finished, else None."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"], condition.get("message") or condition.get("reason") or ""
    return None


def _termination_message(ctx: context.Context, job_name: str) -> str | None:
    """The build container's termination message from the Job's newest finished pod."""
    pods = ctx.kube.list("v1", "Pod", ctx.namespace, labels=f"{JOB_NAME_LABEL}={job_name}")
    finished = [p for p in pods if p.get("status", {}).get("phase") in ("Succeeded", "Failed")]
    finished.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in finished:
        for container in pod["status"].get("containerStatuses", []):
            terminated = container.get("state", {}).get("terminated") or {}
            if container.get("name") == build_job.CONTAINER and terminated.get("message"):
                return str(terminated["message"])
    return None


def _record(ctx: context.Context, outcome: result.BuildResult) -> None:
    ctx.status.engine = status.EngineStatus(
        key=outcome.engine_key,
        digest=outcome.digest,
        format=outcome.format,
        precision=outcome.precision,
        size_bytes=outcome.size_bytes,
        gpu_product=outcome.gpu_product,
        uri=outcome.uri,
        load_seconds=outcome.load_seconds,
    )
    ctx.status.validation = outcome.validation.model_copy(update={"passed": outcome.gate.passed})
    ctx.set(
        conditions.BUILT, "True", "Built", f"Built {outcome.format}/{outcome.precision} engine {outcome.engine_key[:8]}"
    )
    if outcome.gate.passed:
        if ctx.set(conditions.VALIDATED, "True", "Passed", outcome.gate.message or "The engine passed the gate"):
            ctx.event("Normal", "Passed", f"Engine {outcome.engine_key[:8]} passed validation", "Validate")
        return
    if ctx.set(conditions.VALIDATED, "False", outcome.gate.reason, outcome.gate.message):
        ctx.event("Warning", outcome.gate.reason, outcome.gate.message or "The engine failed the gate", "Validate")


def _failed(ctx: context.Context, message: str) -> None:
    if ctx.set(conditions.BUILT, "False", "BuildFailed", message):
        ctx.event("Warning", "BuildFailed", message, "Build")
    ctx.set(conditions.VALIDATED, "Unknown", "NotBuilt", "No engine to validate")


def reconcile(ctx: context.Context, settings: manifest_context.Settings) -> None:
    key = keys.engine_key(ctx.spec)
    built = ctx.condition(conditions.BUILT)
    if ctx.status.engine and ctx.status.engine.key == key and built and built.status == "True":
        return
    job_name = names.build_job(ctx.name, key)
    job = ctx.kube.get("batch/v1", "Job", ctx.namespace, job_name)
    if job is None:
        owner = manifest_context.Owner.from_body(ctx.body)
        ctx.kube.apply(build_job.build_job(ctx.spec, owner, settings, key))
        ctx.set(conditions.BUILT, "False", "Building", f"Build Job {job_name} started")
        ctx.set(conditions.VALIDATED, "Unknown", "AwaitingBuild", "Validation runs inside the build")
        ctx.event("Normal", "Building", f"Started build Job {job_name} for engine {key[:8]}", "Build")
        return
    outcome = _job_outcome(job)
    if outcome is None:
        ctx.set(conditions.BUILT, "False", "Building", f"Build Job {job_name} is running")
        ctx.set(conditions.VALIDATED, "Unknown", "AwaitingBuild", "Validation runs inside the build")
        return
    kind, job_message = outcome
    message = _termination_message(ctx, job_name)
    # A build whose engine fails the gate exits non-zero (so the Job does not retry it) but still reports:
    # read the result first, and call the build failed only when there is none.
    try:
        report = result.parse(message or "")
    except pydantic.ValidationError:
        detail = message or job_message
        if kind == "Failed":
            _failed(ctx, f"Build Job {job_name} failed: {detail}")
        else:
            _failed(ctx, f"Build Job {job_name} finished without a readable result in its termination message")
        return
    if report.engine_key != key:
        _failed(ctx, f"Build Job {job_name} reported engine {report.engine_key[:8]}, expected {key[:8]}")
        return
    _record(ctx, report)
