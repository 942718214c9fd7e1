"""Drift: whether what the served model detects has moved away from what it detected on the validation images; owns
Drift.

Runs after the checks reconciler, which reads each ready Triton pod's /metrics once a pass (`ctx.pod_readings`);
this one judges the drift gauges those pages carry (serving/backends/drift.py computes the score in the served model,
over its last `spec.monitoring.drift.window` images):

    True     a pod with a full window scores above spec.monitoring.drift.threshold: the worst pod's score, and the
             classes whose detections per image moved most (a Warning Event when it turns True)
    False    every pod with a full window scores within the threshold
    Unknown  not judged, and the reason says why: drift checks off in the spec (Disabled) or the operator's serving
             checks off, metrics not read this pass, no ready pod, an engine built without a validation set
             (NoBaseline) or by a Kestrel that exported no drift metrics, or no pod's window full yet

Ready does not count it: drift says the model now sees images unlike its validation set, a reason to look and
perhaps retrain, not an outage; the model keeps answering.
"""

from __future__ import annotations

from collections.abc import Mapping

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.api import spec as specs
from kestrel.reconcilers import context
from kestrel.serving import metrics

DRIFTED = "DriftDetected"
WITHIN = "WithinThreshold"
NO_BASELINE = "NoBaseline"
NOT_EXPORTED = "NotExported"
NOT_ENOUGH_TRAFFIC = "NotEnoughTraffic"
NOT_READ = "MetricsNotRead"
NO_PODS = "NoReadyPods"
CHECKS_OFF = "ChecksOff"
MOVED_CLASSES = 3  # classes named in the message


def reconcile(ctx: context.Context, settings: operator_settings.Settings) -> None:
    state, reason, message = judge(ctx.spec.monitoring.drift, settings.serving_checks, ctx.pod_readings)
    before = ctx.condition(conditions.DRIFT)
    ctx.set(conditions.DRIFT, state, reason, message)
    if state == "True" and (before is None or before.status != "True"):
        ctx.event("Warning", DRIFTED, message, "Check")


def judge(
    spec: specs.DriftSpec, serving_checks: bool, readings: Mapping[str, metrics.Reading] | None
) -> tuple[conditions.ConditionStatus, str, str]:
    """Status, reason and message of Drift from the spec's drift section and the pods' readings."""
    if not spec.enabled:
        return "Unknown", conditions.DISABLED, "spec.monitoring.drift.enabled is false"
    if not serving_checks:
        return "Unknown", CHECKS_OFF, "not judged: the operator's serving checks are off (KESTREL_SERVING_CHECKS=false)"
    if readings is None:
        return (
            "Unknown",
            NOT_READ,
            "not judged: Triton's metrics were not read this pass (status.serving.metrics.error)",
        )
    if not readings:
        return "Unknown", NO_PODS, "not judged: no Triton pod is ready"
    drifts = {pod: r.drift for pod, r in readings.items()}
    exported = {pod: d for pod, d in drifts.items() if d is not None}
    if not exported:
        return (
            "Unknown",
            NOT_EXPORTED,
            "not judged: the served engine exports no drift metrics (built by an older Kestrel, a static-batch "
            "engine with no postprocessing model, or pods started before spec.monitoring.drift.enabled was set)",
        )
    if all(d.baseline_images == 0 for d in exported.values()):
        return (
            "Unknown",
            NO_BASELINE,
            "not judged: the engine was built without spec.validation.dataset: no baseline to compare with",
        )
    full = {pod: d for pod, d in exported.items() if d.score is not None and d.window_images >= spec.window}
    if not full:
        seen = max(d.window_images for d in exported.values())
        return (
            "Unknown",
            NOT_ENOUGH_TRAFFIC,
            f"not judged yet: the fullest pod has answered {seen} of the {spec.window} images its window needs",
        )
    pod, worst = max(full.items(), key=lambda item: item[1].score or 0.0)
    score = worst.score or 0.0
    where = (
        f"pod {pod}, its last {worst.window_images} images against {worst.baseline_images} validation images"
        f"{f'; {len(full)} of {len(readings)} pods judged' if len(readings) > 1 else ''}"
    )
    if score > spec.threshold:
        return "True", DRIFTED, f"Output drift {score:.3f} above {spec.threshold:g} ({where}); {_moved(worst)}"
    return "False", WITHIN, f"Output drift {score:.3f} within {spec.threshold:g} ({where})"


def _moved(found: metrics.Drift) -> str:
    moved = sorted(found.changes.items(), key=lambda item: -abs(item[1]))[:MOVED_CLASSES]
    if not moved:
        return "no class rate moved: the confidence histogram did"
    return "moved most (detections per image, against validation): " + ", ".join(
        f"{name} {change:+.2f}" for name, change in moved
    )
