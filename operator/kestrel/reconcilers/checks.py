"""Checks: the operator as a client of the served model; gates Available on a smoke inference, reports metrics.

Runs after the serving reconciler. Once a revision's rollout is complete (Available=True, Progressing not True),
one inference through the model's Service (serving/smoke.py) must pass before Available stays True; it runs once
per revision, and a failure sets Available=False (SmokeTestFailed) with a Warning Event and is retried on the next
pass. Every pass also reads Triton's /metrics from each ready pod (serving/pod_http.py: no redirects, capped size
and time) and writes the sums to status.serving.metrics, only when the numbers changed: an idle model costs no
status write, a busy one one write per resync interval.
With `serving_checks` off (KESTREL_SERVING_CHECKS=false, for simulated nodes) neither runs and status says so.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from kestrel.api import conditions, status
from kestrel.manifests import context as manifest_context
from kestrel.manifests import labels, names, secrets, service, transport
from kestrel.reconcilers import context
from kestrel.security import certificates
from kestrel.security import errors as security_errors
from kestrel.serving import addresses, metrics, pod_http, smoke

log = logging.getLogger("kestrel")

SMOKE_FAILED = "SmokeTestFailed"
SMOKE_PASSED = "SmokeTestPassed"
SMOKE_TIMEOUT_SECONDS = 10.0
SCRAPE_TIMEOUT_SECONDS = 2.0
OFF = "not run: the operator's serving checks are off (KESTREL_SERVING_CHECKS=false, chart value servingChecks)"
# A client certificate the operator issues itself for one smoke inference under mutual TLS.
CLIENT_NAME = "kestrel-operator"
CLIENT_VALIDITY = datetime.timedelta(minutes=10)

Check = Callable[[smoke.Target, float], smoke.Outcome]
Fetch = Callable[[str], str]


def fetch(url: str) -> str:
    return pod_http.get(url, timeout=SCRAPE_TIMEOUT_SECONDS).decode("utf-8", "replace")


def reconcile(
    ctx: context.Context, settings: manifest_context.Settings, check: Check = smoke.check, get: Fetch = fetch
) -> None:
    revision = ctx.status.revision.current if ctx.status.revision else None
    if revision is None:
        return
    found = ctx.status.serving or status.ServingChecksStatus()
    if not settings.serving_checks:
        ctx.status.serving = status.ServingChecksStatus(
            smoke=_keep(found.smoke, status.SmokeStatus(revision=revision, message=OFF)), metrics=None
        )
        _note(ctx, OFF)
        return
    ctx.status.serving = status.ServingChecksStatus(
        smoke=_smoke(ctx, settings, revision, found.smoke, check), metrics=_metrics(ctx, settings, found.metrics, get)
    )


def _keep(before: status.SmokeStatus | None, after: status.SmokeStatus) -> status.SmokeStatus:
    return before if before is not None and before.model_dump() == after.model_dump() else after


def _rollout_complete(ctx: context.Context) -> bool:
    available, progressing = ctx.condition(conditions.AVAILABLE), ctx.condition(conditions.PROGRESSING)
    return (
        available is not None and available.status == "True" and (progressing is None or progressing.status != "True")
    )


def _smoke(
    ctx: context.Context,
    settings: manifest_context.Settings,
    revision: str,
    before: status.SmokeStatus | None,
    check: Check,
) -> status.SmokeStatus | None:
    if before is not None and before.revision == revision and before.passed:
        return before  # once per revision
    if not _rollout_complete(ctx):
        return before
    try:
        target = _target(ctx, settings)
    except (addresses.AddressMapError, security_errors.CertificateError, ValueError) as error:
        outcome = smoke.Outcome(False, f"could not prepare the request: {error}")
    else:
        outcome = check(target, SMOKE_TIMEOUT_SECONDS) if isinstance(target, smoke.Target) else target
    latency = round(outcome.latency_ms, 3) if outcome.latency_ms is not None else None
    record = status.SmokeStatus(
        revision=revision, passed=outcome.passed, latency_ms=latency, checked_at=ctx.now, message=outcome.message
    )
    short = revision[:8]
    if outcome.passed:
        ctx.event("Normal", SMOKE_PASSED, f"Smoke inference of engine {short} passed: {outcome.message}", "Check")
        return record
    if outcome.passed is None:  # not run (a configuration the operator cannot be a client of): said, not gated
        _note(ctx, outcome.message)
        return _keep(before, record.model_copy(update={"checked_at": None}))
    message = f"Smoke inference of engine {short} failed: {outcome.message}"
    _set_held(ctx, conditions.AVAILABLE, "False", SMOKE_FAILED, message)
    if before is None or before.revision != revision or before.message != outcome.message:
        ctx.event("Warning", SMOKE_FAILED, message, "Check")
    return record


def _note(ctx: context.Context, why: str) -> None:
    """Say in Available's message that the smoke inference was not run, and why."""
    available = ctx.condition(conditions.AVAILABLE)
    if available is not None and available.status == "True" and why not in available.message:
        ctx.set(conditions.AVAILABLE, "True", available.reason, f"{available.message}; smoke inference {why}")


def _set_held(ctx: context.Context, kind: str, state: conditions.ConditionStatus, reason: str, message: str) -> None:
    """Set a condition that the serving reconciler set otherwise earlier in this pass, keeping the transition time
    that was stored: a smoke test failing on every pass is one transition, not one per pass."""
    ctx.set(kind, state, reason, message)
    stored = conditions.find(
        status.ModelDeploymentStatus.model_validate(ctx.body.get("status") or {}).conditions or [], kind
    )
    if stored is not None and stored.status == state:
        ctx.status.conditions = [
            c.model_copy(update={"last_transition_time": stored.last_transition_time}) if c.type == kind else c
            for c in ctx.status.conditions or []
        ]


def _target(ctx: context.Context, settings: manifest_context.Settings) -> smoke.Target | smoke.Outcome:
    """The smoke request as a client in the cluster would send it, or an Outcome saying why none can be sent."""
    spec = ctx.spec
    owner = manifest_context.Owner.from_body(ctx.body)
    grpc = service.endpoints(spec, owner).get("grpc")
    if grpc is None:
        return smoke.Outcome(None, "not run: the model serves no gRPC (spec.serving.protocols)")
    tls = spec.security.tls
    route = addresses.route(grpc, addresses.load(settings.address_map))
    ca = client_cert = client_key = None
    if transport.tls_enabled(spec):
        ca = _secret(ctx, ctx.namespace, names.tls_secret(ctx.name), "ca.crt")
    if tls.mutual:
        # The model's own client CA (reconcilers/tls.py), the only one its Triton accepts clients of.
        client_ca = names.client_ca_secret(ctx.name)
        authority = certificates.Issued.from_pem(
            _secret(ctx, ctx.namespace, client_ca, "tls.crt"), _secret(ctx, ctx.namespace, client_ca, "tls.key")
        )
        issued = certificates.issue_client(authority, common_name=CLIENT_NAME, now=ctx.now, validity=CLIENT_VALIDITY)
        client_cert, client_key = issued.certificate_pem(), issued.private_key_pem()
    headers: dict[str, str] = {}
    if spec.security.access.require_api_key:
        key = _secret(ctx, ctx.namespace, names.api_key_secret(ctx.name), transport.API_KEY_FIELD)
        headers[smoke.GRPC_HEADER_PREFIX + transport.API_KEY_HEADER] = key.decode()
    return smoke.Target(
        address=route.address,
        model=names.triton_model(ctx.name),
        server_name=route.server_name,
        ca_pem=ca,
        client_cert_pem=client_cert,
        client_key_pem=client_key,
        headers=headers,
    )


def _secret(ctx: context.Context, namespace: str, name: str, key: str) -> bytes:
    found = ctx.kube.get("v1", "Secret", namespace, name)
    if found is None or key not in (found.get("data") or {}):
        raise ValueError(f"Secret {namespace}/{name} has no {key!r}")
    return secrets.decode(found, key)


def _ready_pods(ctx: context.Context) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.selector(ctx.name, "triton").items())
    found = []
    for pod in ctx.kube.list("v1", "Pod", ctx.namespace, labels=selector):
        state = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in state.get("conditions") or [])
        if ready and state.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            found.append(pod)
    return found


def _metrics(
    ctx: context.Context,
    settings: manifest_context.Settings,
    before: status.ServingMetricsStatus | None,
    get: Fetch,
) -> status.ServingMetricsStatus | None:
    pods = _ready_pods(ctx)
    if not pods:
        ctx.pod_readings = {}
        return before
    model = names.triton_model(ctx.name)
    try:
        mapping = addresses.load(settings.address_map)
        readings = []
        for pod in pods:
            address = f"{pod['status']['podIP']}:{transport.METRICS_PORT}"
            url = f"http://{addresses.route(address, mapping).address}/metrics"
            try:
                readings.append(metrics.model_reading(metrics.parse(get(url)), model))
            except (OSError, metrics.MetricsError) as error:
                raise metrics.MetricsError(f"pod {pod['metadata']['name']} ({url}): {error}") from None
        ctx.pod_readings = {pod["metadata"]["name"]: r for pod, r in zip(pods, readings, strict=True)}
    except (addresses.AddressMapError, metrics.MetricsError) as error:
        log.warning("%s: reading Triton's metrics failed: %s", ctx.ref, error)
        kept = before or status.ServingMetricsStatus()
        return kept if kept.error == str(error) else kept.model_copy(update={"error": str(error)})
    total = metrics.combine(readings)
    p50, mean = total.queue_p50_ms(), total.queue_mean_ms()
    found = status.ServingMetricsStatus(
        requests=total.requests,
        failures=total.failure,
        queue_p50_ms=round(p50, 3) if p50 is not None else None,
        queue_mean_ms=round(mean, 3) if mean is not None else None,
        pods=total.sources,
        scraped_at=ctx.now,
    )
    if before is not None and before.model_dump(exclude={"scraped_at"}) == found.model_dump(exclude={"scraped_at"}):
        return before
    return found
