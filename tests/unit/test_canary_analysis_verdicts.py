"""The canary's verdict on Triton's counters, and Argo's Rollout status as Kestrel reads it."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kestrel.api import spec as specs
from kestrel.api import status
from kestrel.reconcilers.serving import argo_rollout, canary_analysis

BOUNDS = specs.CanaryAnalysisSpec(max_error_rate=0.01, max_p95_latency_ms=25)
START = status.CanaryCounters(success=1000, failure=5)


def test_the_window_is_judged_on_the_requests_answered_inside_it() -> None:
    found, message = canary_analysis.verdict(BOUNDS, START, canary_analysis.Reading(1990, 6, p95_ms=12.0))
    assert (found.requests, found.failures, found.passed) == (991, 1, True)
    assert message == "991 requests, 1 failed (error rate 0.0010), p95 12.0 ms: within the bounds"


@pytest.mark.parametrize(
    ("end", "problem"),
    [
        (canary_analysis.Reading(1100, 10, p95_ms=12.0), "error rate 0.0476 > maxErrorRate 0.01"),
        (canary_analysis.Reading(1100, 5, p95_ms=25.5), "p95 latency 25.5 ms > maxP95LatencyMs 25"),
        (canary_analysis.Reading(1100, 5), "p95 latency unknown"),
        (canary_analysis.Reading(1100, 5, p95_ms=float("nan")), "p95 latency unknown"),
    ],
)
def test_a_bound_exceeded_or_a_missing_latency_fails_the_window(end: canary_analysis.Reading, problem: str) -> None:
    found, message = canary_analysis.verdict(BOUNDS, START, end)
    assert found.passed is False
    assert problem in message


def test_without_a_latency_bound_the_summary_is_not_needed() -> None:
    bounds = specs.CanaryAnalysisSpec(max_error_rate=0.01)
    found, _ = canary_analysis.verdict(bounds, START, canary_analysis.Reading(1100, 5))
    assert found.passed is True and found.p95_ms is None


def test_a_counter_that_went_back_was_reset_and_counts_from_zero() -> None:
    found, _ = canary_analysis.verdict(BOUNDS, START, canary_analysis.Reading(40, 2, p95_ms=3.0))
    assert (found.requests, found.failures, found.passed) == (42, 2, False)


def test_no_traffic_passes_and_says_so() -> None:
    found, message = canary_analysis.verdict(BOUNDS, START, canary_analysis.Reading(1000, 5))
    assert found.passed is True and found.requests == 0
    assert message.startswith("no requests reached the canary in the window: passed")


def test_the_window_ends_exactly_one_interval_after_it_started() -> None:
    steps = specs.CanarySpec(steps=[10, 100], interval="1m30s")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert not canary_analysis.window_elapsed(start, start + datetime.timedelta(seconds=89.9), steps)
    assert canary_analysis.window_elapsed(start, start + datetime.timedelta(seconds=90), steps)
    assert canary_analysis.step_label(steps, 0) == "step 1/2, 10%"


def rollout(generation: int, **found: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": {"observedGeneration": str(generation), **found}}


@pytest.mark.parametrize(
    ("body", "state", "says"),
    [
        (
            {"metadata": {"generation": 2}, "status": {"phase": "Healthy", "observedGeneration": "1"}},
            "Pending",
            "not seen",
        ),
        ({"metadata": {"generation": 1}}, "Pending", "not seen"),
        (rollout(3, phase="Healthy", availableReplicas=4), "Healthy", "4 replicas available"),
        (rollout(3, phase="Paused", currentStepIndex=4, message="CanaryPauseStep"), "Progressing", "step 2/3, 50%"),
        (rollout(3, phase="Progressing", currentStepIndex=0), "Progressing", "step 1/3, 10%"),
        (
            rollout(3, phase="Degraded", abort=True, message="RolloutAborted: metric error-rate failed"),
            "Aborted",
            "error-rate",
        ),
        (rollout(3, phase="Degraded", message="ProgressDeadlineExceeded"), "Degraded", "ProgressDeadlineExceeded"),
    ],
)
def test_argo_rollout_status_maps_onto_kestrels_states(body: dict[str, Any], state: str, says: str) -> None:
    found, message = argo_rollout.rollout_state(body, [10, 50, 100])
    assert found == state
    assert says in message
