"""The rollout gate: an engine passes only if it is as accurate, as faithful and as fast as the spec demands.

Every check is evaluated and every number kept, even after the first failure: an operator reading a failed gate
should see the whole picture, not the first symptom. `reason` is the first failure in the order below, root causes
first (a preprocessing mismatch also lowers mAP; the mismatch is what to fix).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Reason = Literal["PreprocessingMismatch", "AccuracyDrop", "NotMeasured", "ParityExceeded", "LatencyBudgetExceeded"]
PASSED = "Passed"
# Passed every check that ran, with accuracy not measured because the spec said so (spec.validation.skip); without
# that, an unmeasured accuracy is a failure with the same reason.
NOT_MEASURED = "NotMeasured"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_map_drop: float
    max_output_delta: float | None = None
    latency_budget_ms: float | None = None
    # spec.validation.skip.reason: accuracy may go unmeasured. None: it must be measured to pass.
    unmeasured_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Measurements:
    map50_95_source: float | None  # None: not measured (no validation dataset)
    map50_95_engine: float | None
    max_output_delta: float
    p95_ms_batch1: float
    preprocessing_differences: list[str]


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str  # "Passed" or the first failure's Reason
    failures: list[Reason]
    message: str


def decide(thresholds: Thresholds, m: Measurements) -> Verdict:
    failures: list[tuple[Reason, str]] = []
    if m.preprocessing_differences:
        failures.append(
            (
                "PreprocessingMismatch",
                "serving preprocessing differs from the source's: " + "; ".join(m.preprocessing_differences),
            )
        )
    drop: float | None = None
    if m.map50_95_source is None or m.map50_95_engine is None:
        if thresholds.unmeasured_reason is None:
            failures.append(
                (
                    "NotMeasured",
                    "accuracy was not measured (no validation dataset): set spec.validation.dataset to a YOLO "
                    "data.yaml, or spec.validation.skip.reason to roll out without measuring it",
                )
            )
    elif (drop := round(m.map50_95_source - m.map50_95_engine, 4)) > thresholds.max_map_drop:
        failures.append(
            (
                "AccuracyDrop",
                f"mAP50-95 dropped by {drop:.4f} ({m.map50_95_source:.4f} -> {m.map50_95_engine:.4f}), "
                f"more than spec.validation.maxMapDrop {thresholds.max_map_drop}",
            )
        )
    if thresholds.max_output_delta is not None and m.max_output_delta > thresholds.max_output_delta:
        failures.append(
            (
                "ParityExceeded",
                f"max abs output difference {m.max_output_delta:.4g} exceeds spec.validation.maxOutputDelta "
                f"{thresholds.max_output_delta}",
            )
        )
    if thresholds.latency_budget_ms is not None and m.p95_ms_batch1 > thresholds.latency_budget_ms:
        failures.append(
            (
                "LatencyBudgetExceeded",
                f"p95 latency at batch 1 is {m.p95_ms_batch1:.2f} ms, over spec.validation.latencyBudgetMs "
                f"{thresholds.latency_budget_ms}",
            )
        )
    if not failures and drop is None:
        return Verdict(
            True,
            NOT_MEASURED,
            [],
            f"accuracy not measured (spec.validation.skip: {thresholds.unmeasured_reason}); passed the other "
            f"checks: max abs output difference {m.max_output_delta:.4g} on the probe image, p95 "
            f"{m.p95_ms_batch1:.2f} ms at batch 1",
        )
    if not failures:
        return Verdict(True, PASSED, [], f"passed: mAP50-95 drop {drop:.4f}, p95 {m.p95_ms_batch1:.2f} ms at batch 1")
    return Verdict(False, failures[0][0], [r for r, _ in failures], "; ".join(text for _, text in failures))
