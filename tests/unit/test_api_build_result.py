"""The build result fits a termination message, survives the trip, and speaks in condition reasons."""

from __future__ import annotations

import typing

import pydantic
import pytest

from kestrel.api import conditions, result


def make(**overrides: object) -> result.BuildResult:
    fields: dict[str, object] = {
        "engine_key": "a" * 64,
        "format": "openvino",
        "precision": "int8",
        "gate": result.Gate(passed=False, reason="AccuracyDrop", message="mAP50-95 dropped 0.031 > 0.020"),
    }
    fields.update(overrides)
    return result.BuildResult.model_validate(fields)


def test_round_trip_through_a_termination_message() -> None:
    original = make(size_bytes=5_000_000, load_seconds=2.5)
    text = original.to_termination_message()
    assert '"engineKey"' in text
    assert result.parse(text) == original


def test_a_result_too_large_for_a_termination_message_is_refused() -> None:
    large = make(gate=result.Gate(passed=True, reason="Passed", message="x" * 1000), uri="s3://b/" + "p" * 3500)
    with pytest.raises(ValueError, match="4096"):
        large.to_termination_message()


def test_garbage_is_not_a_result() -> None:
    with pytest.raises(pydantic.ValidationError):
        result.parse("Segmentation fault")


def test_gate_reasons_are_condition_reasons() -> None:
    failing = set(typing.get_args(result.GateReason)) - {"Passed"}
    assert failing == {
        conditions.ACCURACY_DROP,
        conditions.PARITY_EXCEEDED,
        conditions.LATENCY_BUDGET_EXCEEDED,
        conditions.PREPROCESSING_MISMATCH,
        conditions.NOT_MEASURED,
    }
