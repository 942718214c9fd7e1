"""set_condition follows the API conventions: transition time moves only when the status flips."""

from __future__ import annotations

import datetime

from kestrel.api import conditions

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def _set(
    existing: list[conditions.Condition], status: conditions.ConditionStatus, now: datetime.datetime, **kw: str
) -> list[conditions.Condition]:
    return conditions.set_condition(
        existing,
        type=conditions.BUILT,
        status=status,
        reason=kw.get("reason", "Building"),
        message=kw.get("message", ""),
        generation=3,
        now=now,
    )


def test_first_set_appends_with_now_and_generation() -> None:
    result = _set([], "Unknown", T0)
    assert len(result) == 1
    assert result[0].last_transition_time == T0
    assert result[0].observed_generation == 3


def test_same_status_keeps_transition_time_but_updates_reason() -> None:
    result = _set(_set([], "False", T0), "False", T1, reason="BuildRunning", message="pod started")
    assert result[0].last_transition_time == T0
    assert (result[0].reason, result[0].message) == ("BuildRunning", "pod started")


def test_flip_moves_transition_time_and_keeps_others() -> None:
    ready = conditions.set_condition(
        [], type=conditions.READY, status="False", reason="Building", message="", generation=1, now=T0
    )
    result = _set(_set(ready, "False", T0), "True", T1, reason="Built")
    assert conditions.find(result, conditions.BUILT).last_transition_time == T1  # type: ignore[union-attr]
    assert conditions.find(result, conditions.READY) == ready[0]
    assert [c.type for c in result] == [conditions.READY, conditions.BUILT]
