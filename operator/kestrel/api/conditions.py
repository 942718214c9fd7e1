"""Condition types, reasons, and the one function that sets a condition the Kubernetes way.

Each reconciler owns one condition type; `Ready` summarizes them. Types are adjectives or past
participles, reasons are single CamelCase words (Events reuse them).
"""

from __future__ import annotations

import datetime
from typing import Literal

import pydantic

from kestrel.api.base import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]

BUILT = "Built"
VALIDATED = "Validated"
AVAILABLE = "Available"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
CERTIFICATE_READY = "CertificateReady"
ACCESS_CONFIGURED = "AccessConfigured"
ENCRYPTED = "Encrypted"
VERIFIED = "Verified"
READY = "Ready"
# The served model's outputs moved away from the validation baseline (reconcilers/serving/drift.py); not counted by
# Ready.
DRIFT = "Drift"

# Every condition a ModelDeployment reports, in display order; set on the first visit, even as Unknown.
TYPES = (
    BUILT,
    VALIDATED,
    AVAILABLE,
    PROGRESSING,
    DEGRADED,
    CERTIFICATE_READY,
    ACCESS_CONFIGURED,
    ENCRYPTED,
    VERIFIED,
    DRIFT,
    READY,
)

# Reasons the gate can give for Validated=False.
ACCURACY_DROP = "AccuracyDrop"
PARITY_EXCEEDED = "ParityExceeded"
LATENCY_BUDGET_EXCEEDED = "LatencyBudgetExceeded"
PREPROCESSING_MISMATCH = "PreprocessingMismatch"
# Validated=False when accuracy went unmeasured without spec.validation.skip; Validated=True when the spec skips it.
NOT_MEASURED = "NotMeasured"

# Verified: the live model answered the build's probe images as the build did (reconcilers/serving/checks.py).
PARITY_PASSED = "ParityPassed"  # True: every probe image answered with the recorded detections
PARITY_FAILED = "ParityFailed"  # False: a probe image answered otherwise; the message names it
SMOKE_PASSED = "SmokePassed"  # True: no probes to compare (the message says why), the grey image answered well
SMOKE_FAILED = "SmokeFailed"  # False: the server, the model or the grey image's answer failed
AWAITING_ROLLOUT = "AwaitingRollout"  # Unknown: the current revision's rollout is not complete yet
NOT_CHECKED = "NotChecked"  # Unknown: the operator cannot or may not be a client of the model (the message says why)

# A condition whose feature the spec turns off; it neither blocks nor counts toward Ready.
DISABLED = "Disabled"

# Ready=False: a child's name is taken by an object the model does not own, so the pass stopped before writing it.
NAME_CONFLICT = "NameConflict"
# Ready=False (and a reported Encrypted Unknown): the stored spec cannot be read, so no reconciler ran.
INVALID_SPEC = "InvalidSpec"

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(ApiModel):
    """One observation of one aspect of the resource (metav1.Condition)."""

    type: str = pydantic.Field(max_length=316, pattern=r"^[A-Za-z][A-Za-z0-9]*$", description="What is observed.")
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(max_length=1024, pattern=REASON_PATTERN, description="One CamelCase word.")
    message: str = pydantic.Field(default="", max_length=32768, description="For humans: what and why.")
    observed_generation: int | None = pydantic.Field(default=None, ge=0, description="The spec generation seen.")
    last_transition_time: datetime.datetime = pydantic.Field(description="When status last changed.")


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> list[Condition]:
    """Return the list with the condition set; its transition time changes only when the status flips."""
    previous = next((c for c in conditions if c.type == type), None)
    transition = now if previous is None or previous.status != status else previous.last_transition_time
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=transition.replace(microsecond=0),
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type else c for c in conditions]


def find(conditions: list[Condition], type: str) -> Condition | None:
    """The condition of that type, if set."""
    return next((c for c in conditions if c.type == type), None)
