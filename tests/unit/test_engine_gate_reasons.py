"""The gate reports every failure with its numbers, root cause first."""

from __future__ import annotations

import typing

from kestrel.api import result
from kestrel.engine import gate


def measurements(**overrides: object) -> gate.Measurements:
    values: dict[str, object] = {
        "map50_95_source": 0.80,
        "map50_95_engine": 0.79,
        "max_output_delta": 0.5,
        "p95_ms_batch1": 20.0,
        "preprocessing_differences": [],
    }
    values.update(overrides)
    return gate.Measurements(**values)  # type: ignore[arg-type]


THRESHOLDS = gate.Thresholds(max_map_drop=0.02, max_output_delta=1.0, latency_budget_ms=30.0)


def test_within_every_bound_passes_with_the_numbers() -> None:
    verdict = gate.decide(THRESHOLDS, measurements())
    assert (verdict.passed, verdict.reason, verdict.failures) == (True, "Passed", [])
    assert "0.0100" in verdict.message and "20.00 ms" in verdict.message


def test_each_bound_fails_with_its_reason_and_numbers() -> None:
    drop = gate.decide(THRESHOLDS, measurements(map50_95_engine=0.70))
    assert (drop.reason, "0.1000" in drop.message, "maxMapDrop" in drop.message) == ("AccuracyDrop", True, True)
    parity = gate.decide(THRESHOLDS, measurements(max_output_delta=3.5))
    assert parity.reason == "ParityExceeded" and "3.5" in parity.message
    slow = gate.decide(THRESHOLDS, measurements(p95_ms_batch1=45.0))
    assert slow.reason == "LatencyBudgetExceeded" and "45.00 ms" in slow.message


def test_a_preprocessing_mismatch_is_named_before_the_accuracy_it_costs() -> None:
    verdict = gate.decide(
        THRESHOLDS, measurements(map50_95_engine=0.3, preprocessing_differences=["channel_order: RGB != BGR"])
    )
    assert verdict.failures == ["PreprocessingMismatch", "AccuracyDrop"]
    assert verdict.reason == "PreprocessingMismatch"
    assert "RGB != BGR" in verdict.message and "0.5000" in verdict.message


def test_unset_bounds_are_not_checked() -> None:
    loose = gate.Thresholds(max_map_drop=0.02)
    assert gate.decide(loose, measurements(max_output_delta=1e6, p95_ms_batch1=1e6)).passed


def test_unmeasured_accuracy_fails_unless_the_spec_skips_it() -> None:
    """Without a dataset nothing is known of accuracy: that is never "passed", only skipped on purpose."""
    unmeasured = measurements(map50_95_source=None, map50_95_engine=None)
    refused = gate.decide(gate.Thresholds(max_map_drop=0.0), unmeasured)
    assert (refused.passed, refused.reason, refused.failures) == (False, "NotMeasured", ["NotMeasured"])
    assert "spec.validation.dataset" in refused.message and "spec.validation.skip.reason" in refused.message
    skipped = gate.decide(
        gate.Thresholds(max_map_drop=0.0, unmeasured_reason="no labels for this camera yet"), unmeasured
    )
    assert (skipped.passed, skipped.reason, skipped.failures) == (True, "NotMeasured", [])
    assert "no labels for this camera yet" in skipped.message and "passed" not in skipped.message.split(";")[0]


def test_a_skipped_accuracy_still_answers_to_parity_and_latency() -> None:
    thresholds = gate.Thresholds(max_map_drop=0.02, max_output_delta=1.0, unmeasured_reason="no labels for this")
    verdict = gate.decide(thresholds, measurements(map50_95_source=None, map50_95_engine=None, max_output_delta=3.5))
    assert (verdict.passed, verdict.reason) == (False, "ParityExceeded")


def test_reasons_are_the_apis_gate_reasons() -> None:
    assert set(typing.get_args(gate.Reason)) | {gate.PASSED} == set(typing.get_args(result.GateReason))
