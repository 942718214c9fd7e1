"""Checks: the operator as a client of the served model; owns Verified, and reports Triton's metrics.

Runs after the serving reconciler. Once a revision's rollout is complete (Available=True, Progressing not True), the
live check (serving/smoke.py) sends through the model's Service, as any client does, one grey image and then the
probe images the build recorded (serving/probes.py, read by probe_cache.py), and compares the answers with the
build's own detections. Verified says what it found: ParityPassed, ParityFailed (naming the image), SmokePassed
(no probes to compare, and why), SmokeFailed, AwaitingRollout, NotChecked; the summary counts it for Ready. A check
that passed is not run again for that revision; a failed one (with a Warning Event) is retried every pass.
Every pass also reads Triton's /metrics from each ready pod (serving/pod_http.py: no redirects, capped size and
time) and writes the sums to status.serving.metrics, only when the numbers changed: an idle model costs no status
write, a busy one one write per resync interval.
With `serving_checks` off (KESTREL_SERVING_CHECKS=false, for simulated nodes) neither runs and Verified says so.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import conditions, status
from kestrel.manifests import labels, names, owners, secrets, service, transport
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import probe_cache
from kestrel.security import certificates
from kestrel.security import errors as security_errors
from kestrel.serving import addresses, metrics, pod_http, probes, smoke

log = logging.getLogger("kestrel")

SMOKE_TIMEOUT_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 5.0  # added per probe image to the check's one deadline
SCRAPE_TIMEOUT_SECONDS = 2.0
OFF = "not run: the operator's serving checks are off (KESTREL_SERVING_CHECKS=false, chart value servingChecks)"
# A client certificate the operator issues itself for one live check under mutual TLS.
CLIENT_NAME = "kestrel-operator"
CLIENT_VALIDITY = datetime.timedelta(minutes=10)

Check = Callable[[smoke.Target, float, probes.Probes | None], smoke.Outcome]
Fetch = Callable[[str], str]
# The probes of a revision, or why there are none (probe_cache.load).
Recorded = Callable[[context.Context, operator_settings.Settings, str], probes.Probes | str]


def fetch(url: str) -> str:
    return pod_http.get(url, timeout=SCRAPE_TIMEOUT_SECONDS).decode("utf-8", "replace")


def reconcile(
    ctx: context.Context,
    settings: operator_settings.Settings,
    check: Check = smoke.check,
    get: Fetch = fetch,
    recorded: Recorded = probe_cache.load,
) -> None:
    revision = ctx.status.revision.current if ctx.status.revision else None
    if revision is None:
        ctx.set(conditions.VERIFIED, "Unknown", conditions.AWAITING_ROLLOUT, "No revision is serving yet")
        return
    found = ctx.status.serving or status.ServingChecksStatus()
    if not settings.serving_checks:
        ctx.status.serving = status.ServingChecksStatus(
            smoke=_keep(found.smoke, status.SmokeStatus(revision=revision, message=OFF)), metrics=None
        )
        ctx.set(conditions.VERIFIED, "Unknown", conditions.NOT_CHECKED, f"The live check was {OFF}")
        return
    ctx.status.serving = status.ServingChecksStatus(
        smoke=_smoke(ctx, settings, revision, found.smoke, check=check, recorded=recorded),
        metrics=_metrics(ctx, settings, found.metrics, get),
    )


def _keep(before: status.SmokeStatus | None, after: status.SmokeStatus) -> status.SmokeStatus:
    return before if before is not None and before.model_dump() == after.model_dump() else after


def _rollout_complete(ctx: context.Context) -> bool:
    available, progressing = ctx.condition(conditions.AVAILABLE), ctx.condition(conditions.PROGRESSING)
    return (
        available is not None and available.status == "True" and (progressing is None or progressing.status != "True")
    )


def verdict(record: status.SmokeStatus) -> tuple[conditions.ConditionStatus, str, str]:
    """Verified's status, reason and message for the check recorded for the current revision."""
    message = f"Engine {(record.revision or '')[:8]}: {record.message}"
    if record.passed is None:
        return "Unknown", conditions.NOT_CHECKED, message
    if record.passed:
        return "True", conditions.PARITY_PASSED if record.parity else conditions.SMOKE_PASSED, message
    return "False", conditions.PARITY_FAILED if record.parity is False else conditions.SMOKE_FAILED, message


def _smoke(
    ctx: context.Context,
    settings: operator_settings.Settings,
    revision: str,
    before: status.SmokeStatus | None,
    *,
    check: Check,
    recorded: Recorded,
) -> status.SmokeStatus | None:
    current = before if before is not None and before.revision == revision else None
    if (current is not None and current.passed) or not _rollout_complete(ctx):
        if current is not None and current.checked_at is not None:
            ctx.set(conditions.VERIFIED, *verdict(current))  # once per revision; or its last failure, until retried
        else:
            ctx.set(
                conditions.VERIFIED,
                "Unknown",
                conditions.AWAITING_ROLLOUT,
                f"Engine {revision[:8]} is rolling out; its live check runs once the rollout is complete",
            )
        return before
    try:
        target = _target(ctx, settings)
    except (addresses.AddressMapError, security_errors.CertificateError, ValueError) as error:
        outcome = smoke.Outcome(False, f"could not prepare the request: {error}")
    else:
        outcome = (
            target
            if isinstance(target, smoke.Outcome)
            else _run(ctx, settings, revision, target, check=check, recorded=recorded)
        )
    latency = round(outcome.latency_ms, 3) if outcome.latency_ms is not None else None
    record = status.SmokeStatus(
        revision=revision,
        passed=outcome.passed,
        parity=outcome.parity,
        probes=outcome.probes if outcome.parity is not None else None,
        latency_ms=latency,
        checked_at=ctx.now,
        message=outcome.message,
    )
    if outcome.passed is None:  # not run (a configuration the operator cannot be a client of): said, not gated
        record = _keep(before, record.model_copy(update={"checked_at": None}))
        ctx.set(conditions.VERIFIED, "Unknown", conditions.NOT_CHECKED, f"Engine {revision[:8]}: {record.message}")
        return record
    state, reason, message = verdict(record)
    ctx.set(conditions.VERIFIED, state, reason, message)
    if outcome.passed:
        probe_cache.forget(ctx, revision)
        ctx.event("Normal", reason, f"Live check of engine {revision[:8]} passed: {outcome.message}", "Check")
    elif before is None or before.revision != revision or before.message != outcome.message:
        ctx.event("Warning", reason, f"Live check of engine {revision[:8]} failed: {outcome.message}", "Check")
    return record


def _run(
    ctx: context.Context,
    settings: operator_settings.Settings,
    revision: str,
    target: smoke.Target,
    *,
    check: Check,
    recorded: Recorded,
) -> smoke.Outcome:
    """The check with the revision's probes; without any, the smoke check alone, and its message says why."""
    found = recorded(ctx, settings, revision)
    if isinstance(found, probes.Probes) and found.images:
        return check(target, SMOKE_TIMEOUT_SECONDS + PROBE_TIMEOUT_SECONDS * len(found.images), found)
    why = found if isinstance(found, str) else found.why or "the build recorded no probe images"
    outcome = check(target, SMOKE_TIMEOUT_SECONDS, None)
    if outcome.passed is None:
        return outcome
    return smoke.Outcome(outcome.passed, f"{outcome.message}; parity not checked: {why}", outcome.latency_ms)


def _target(ctx: context.Context, settings: operator_settings.Settings) -> smoke.Target | smoke.Outcome:
    """The smoke request as a client in the cluster would send it, or an Outcome saying why none can be sent."""
    spec = ctx.spec
    owner = owners.Owner.from_body(ctx.body)
    grpc = service.endpoints(spec, owner).get("grpc")
    if grpc is None:
        return smoke.Outcome(None, "not run: the model serves no gRPC (spec.serving.protocols)")
    tls = spec.security.tls
    route = addresses.route(grpc, addresses.load(settings.address_map))
    ca = client_cert = client_key = None
    if transport.tls_enabled(spec):
        ca = _secret(ctx, ctx.namespace, names.tls_secret(ctx.name), "ca.crt")
    if tls.mutual:
        # The model's own client CA (reconcilers/security/tls.py), the only one its Triton accepts clients of.
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
    settings: operator_settings.Settings,
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
