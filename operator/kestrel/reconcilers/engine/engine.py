"""Engine: makes sure an engine exists for the current spec and was validated; owns Built and Validated.

One build Job per engine key (`NAME-build-KEY8`): the name is derived from the key, so a restarted
operator finds the Job it started instead of starting another. The Job reports through its pod's
termination message (`api.result`); a failed gate leaves the serving revision untouched.

Before a Job is created, the engine cache (`cache`) looks the key up in the store: a verified stored engine is
recorded as its build was, and nothing is built. Once status holds the engine, the store is not asked again.

The build pods' NetworkPolicy (`manifests.build_network`) is applied at the start of every pass, built or not, and
read afresh before a Job is created (except in a new model's first pass, which has just made it): the policy is in
the API before the Job is. When an enforcer acts on it is the enforcer's.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from kestrel import operator_metrics
from kestrel import settings as operator_settings
from kestrel.api import conditions, keys, result, status
from kestrel.kube import ownership
from kestrel.manifests import build_job, build_network, labels, names, owners
from kestrel.reconcilers import context, pod_problems
from kestrel.reconcilers.engine import build_progress, cache, grants, storage

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CACHED = "Cached"


def _job_outcome(job: dict[str, Any]) -> tuple[str, str] | None:
    """("Complete" | "Failed", message) once the Job has finished, else None."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"], condition.get("message") or condition.get("reason") or ""
    return None


def _job_seconds(job: dict[str, Any]) -> float | None:
    """How long the finished Job ran, start to end, as the cluster recorded it; None when it did not say."""
    state = job.get("status", {})
    ended = state.get("completionTime") or next(
        (
            c.get("lastTransitionTime")
            for c in state.get("conditions", [])
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        None,
    )
    if not state.get("startTime") or not ended:
        return None
    started = datetime.datetime.fromisoformat(state["startTime"])
    return max((datetime.datetime.fromisoformat(ended) - started).total_seconds(), 0.0)


def _observe(job: dict[str, Any], outcome: str) -> None:
    seconds = _job_seconds(job)
    if seconds is not None:
        operator_metrics.BUILD_SECONDS.labels(outcome).observe(seconds)


def _job(ctx: context.Context, name: str) -> dict[str, Any] | None:
    """The build Job `name`; one the model does not own stops the pass (NameConflictError): its result is not the
    model's build."""
    found = ctx.kube.get("batch/v1", "Job", ctx.namespace, name)
    ownership.require(found, ctx.uid)
    return found


def _pods(ctx: context.Context, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The Job's pods, newest first (pods the Job made: anyone can label one like it)."""
    job_name, job_uid = job["metadata"]["name"], job["metadata"].get("uid", "")
    pods = ctx.kube.list("v1", "Pod", ctx.namespace, labels=f"{JOB_NAME_LABEL}={job_name}")
    owned = [p for p in pods if ownership.owned_by(p, job_uid)]
    return sorted(owned, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)


def _termination_message(ctx: context.Context, job: dict[str, Any]) -> str | None:
    """The build container's termination message from the Job's newest finished pod."""
    finished = [p for p in _pods(ctx, job) if p.get("status", {}).get("phase") in ("Succeeded", "Failed")]
    for pod in finished:
        for container in pod["status"].get("containerStatuses", []):
            terminated = container.get("state", {}).get("terminated") or {}
            if container.get("name") == build_job.CONTAINER and terminated.get("message"):
                return str(terminated["message"])
    return None


def _record(ctx: context.Context, outcome: result.BuildResult, *, cached: bool = False) -> None:
    ctx.status.build = None
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
    what = f"{outcome.format}/{outcome.precision} engine {outcome.engine_key[:8]}"
    if cached:
        # Said every time: this runs once per engine key, since status then holds the engine.
        message = f"Reused the stored {what} from {outcome.uri} (signature verified); no build"
        ctx.set(conditions.BUILT, "True", CACHED, message)
        ctx.event("Normal", CACHED, message, "Build")
    else:
        ctx.set(conditions.BUILT, "True", "Built", f"Built {what}")
    # The gate's own reasons, cached or not: automation that watches for AccuracyDrop sees it either way.
    origin = " (measured by the build that stored it)" if cached else ""
    if outcome.gate.passed and outcome.gate.reason == "NotMeasured":
        # Rolled out because the spec says so (spec.validation.skip), and said where everyone looks.
        gate = (outcome.gate.message or "Accuracy not measured") + origin
        if ctx.set(conditions.VALIDATED, "True", "NotMeasured", gate):
            ctx.event("Warning", "NotMeasured", f"Engine {outcome.engine_key[:8]}: {gate}", "Validate")
        return
    if outcome.gate.passed:
        gate = (outcome.gate.message or "The engine passed the gate") + origin
        if ctx.set(conditions.VALIDATED, "True", "Passed", gate):
            ctx.event("Normal", "Passed", f"Engine {outcome.engine_key[:8]} passed validation{origin}", "Validate")
        return
    if ctx.set(conditions.VALIDATED, "False", outcome.gate.reason, outcome.gate.message + origin):
        ctx.event("Warning", outcome.gate.reason, outcome.gate.message or "The engine failed the gate", "Validate")


def _running(ctx: context.Context, job: dict[str, Any], job_name: str) -> None:
    """A Job that has not finished: building, or held up by its newest pod (the scheduler's or kubelet's reason)."""
    ctx.set(conditions.VALIDATED, "Unknown", "AwaitingBuild", "Validation runs inside the build")
    pods = _pods(ctx, job)
    problem = pod_problems.of_pod(pods[0], ctx.now) if pods else None
    if problem is None:
        found = build_progress.read(ctx, pods[0]) if pods else None
        ctx.status.build = build_progress.status_of(job_name, found)
        where = f": {found.describe()}" if found else ""
        ctx.set(conditions.BUILT, "False", "Building", f"Build Job {job_name} is running{where}")
        return
    ctx.status.build = None
    message = f"Build Job {job_name} is held up: {problem.message}"
    before = ctx.condition(conditions.BUILT)
    ctx.set(conditions.BUILT, "False", problem.reason, message)
    if before is None or before.reason != problem.reason:
        ctx.event("Warning", problem.reason, message, "Build")


def _failed(ctx: context.Context, message: str, job: dict[str, Any] | None = None) -> None:
    ctx.status.build = None
    if ctx.set(conditions.BUILT, "False", "BuildFailed", message):
        ctx.event("Warning", "BuildFailed", message, "Build")
        if job is not None:
            _observe(job, "failed")  # once: the condition says BuildFailed from now on
    ctx.set(conditions.VALIDATED, "Unknown", "NotBuilt", "No engine to validate")


def _blocked(ctx: context.Context, reason: str, problem: str) -> None:
    built = ctx.condition(conditions.BUILT)
    if built is None or built.reason != reason:
        ctx.event("Warning", reason, problem, "Build")
    ctx.set(conditions.BUILT, "False", reason, problem)
    ctx.set(conditions.VALIDATED, "Unknown", "NotBuilt", "No engine to validate")


def _stop_superseded(ctx: context.Context, settings: operator_settings.Settings, key: str) -> None:
    """Stop the build Jobs still running for engines the spec no longer asks for (it changed, or went back, while
    they ran), and take their store grants: each would hold a node up to its deadline and publish an engine nobody
    wants. Asked only while Built is False, the one state in which such a Job can be running. Finished Jobs stay for
    their TTL (their logs say why a build failed)."""
    selector = ",".join(f"{label}={value}" for label, value in labels.selector(ctx.name, "build").items())
    for job in ctx.kube.list("batch/v1", "Job", ctx.namespace, labels=selector):
        old = (job["metadata"].get("annotations") or {}).get(labels.ENGINE_KEY_ANNOTATION)
        if not old or old == key or not ownership.owned_by(job, ctx.uid) or _job_outcome(job) is not None:
            continue
        name = job["metadata"]["name"]
        if ctx.kube.delete("batch/v1", "Job", ctx.namespace, name, owner=ctx.uid):
            message = f"Stopped build Job {name}: the spec no longer asks for engine {old[:8]}"
            ctx.event("Normal", "BuildStopped", message, "Build")
        grants.drop_upload(ctx, settings, old)


def _fence(
    ctx: context.Context, settings: operator_settings.Settings, access: storage.Access, *, confirm: bool = False
) -> None:
    """Apply the build pods' NetworkPolicy, with the store endpoint the operator itself uses.

    `confirm` reads it afresh first: the client skips an apply it trusts as unchanged, and nothing watches
    NetworkPolicies, so a policy deleted or edited since would otherwise stay so. One it finds the model does not
    own stops the pass (NameConflictError).
    """
    owner = owners.Owner.from_body(ctx.body)
    endpoint = access.credentials.endpoint if access.credentials is not None else None
    policy = build_network.network_policy(ctx.spec, owner, settings, endpoint)
    if confirm:
        found = ctx.kube.get("networking.k8s.io/v1", "NetworkPolicy", ctx.namespace, policy["metadata"]["name"])
        ownership.require(found, ctx.uid)
    ctx.kube.apply(policy)


def reconcile(ctx: context.Context, settings: operator_settings.Settings, access: storage.Access | None = None) -> None:
    access = access or storage.Access()
    # Every pass, built or not: a build runs the user's checkpoint, so the fence is up before any Job exists and
    # stays up for the next one (an unchanged apply is one the client may skip).
    _fence(ctx, settings, access)
    key = keys.engine_key(ctx.spec)
    built = ctx.condition(conditions.BUILT)
    if ctx.status.engine and ctx.status.engine.key == key and built and built.status == "True":
        return
    job_name = names.build_job(ctx.name, key)
    # While the status says no engine is built (a build running or failed), its Job is asked first. Otherwise the
    # store is (a cache hit needs no Job: a request per new model saved), then the Job, which a pass that failed
    # before its status write may have started.
    job_first = built is not None and built.status == "False"
    if job_first:
        _stop_superseded(ctx, settings, key)
    job = _job(ctx, job_name) if job_first else None
    if job is None:
        hit = cache.lookup(ctx, settings, key, access)
        if hit is not None:
            _record(ctx, hit.result, cached=True)
            return
        if not job_first:
            job = _job(ctx, job_name)
    if job is None:
        if access.problem:
            # The Job's pod would mount a Secret nobody can create, and could not publish what it built.
            _blocked(ctx, storage.MISSING, access.problem)
            return
        problem = grants.issue_upload(ctx, settings, key)
        if problem:
            _blocked(ctx, grants.UNAVAILABLE, problem)
            return
        if not ctx.first_pass:
            # The apply above may have been skipped as unchanged; a new model's pass has just made the policy.
            _fence(ctx, settings, access, confirm=True)
        owner = owners.Owner.from_body(ctx.body)
        ctx.kube.apply(build_job.build_job(ctx.spec, owner, settings, key))
        ctx.set(conditions.BUILT, "False", "Building", f"Build Job {job_name} started")
        ctx.set(conditions.VALIDATED, "Unknown", "AwaitingBuild", "Validation runs inside the build")
        ctx.event("Normal", "Building", f"Started build Job {job_name} for engine {key[:8]}", "Build")
        return
    outcome = _job_outcome(job)
    if outcome is None:
        _running(ctx, job, job_name)
        return
    kind, job_message = outcome
    grants.drop_upload(ctx, settings, key)
    message = _termination_message(ctx, job)
    # A build whose engine fails the gate exits non-zero (so the Job does not retry it) but still reports:
    # read the result first, and call the build failed only when there is none.
    try:
        report = result.parse(message or "")
    except pydantic.ValidationError:
        detail = message or job_message
        if kind == "Failed":
            _failed(ctx, f"Build Job {job_name} failed: {detail}", job)
        else:
            _failed(ctx, f"Build Job {job_name} finished without a readable result in its termination message", job)
        return
    if report.engine_key != key:
        _failed(ctx, f"Build Job {job_name} reported engine {report.engine_key[:8]}, expected {key[:8]}", job)
        return
    _record(ctx, report)
    # Once per engine: the next pass finds it in status and stops at the top.
    _observe(job, "succeeded" if report.gate.passed else "gate_failed")
