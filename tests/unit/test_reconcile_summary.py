"""Ready and the phase are derived from the owned conditions, and tell the truth at every step."""

from __future__ import annotations

import datetime

import pytest

from kestrel.api import conditions
from kestrel.reconcilers import summary

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


STATES: dict[str, conditions.ConditionStatus] = {"True": "True", "False": "False", "Unknown": "Unknown"}


def conds(**states: str) -> list[conditions.Condition]:
    """conds(Built="True", Validated="False:AccuracyDrop") -> conditions."""
    found: list[conditions.Condition] = []
    for kind, value in states.items():
        state, _, reason = value.partition(":")
        found = conditions.set_condition(
            found,
            type=kind,
            status=STATES[state],
            reason=reason or "Reason",
            message="m",
            generation=1,
            now=NOW,
        )
    return found


@pytest.mark.parametrize(
    ("states", "phase", "ready"),
    [
        ({}, "Building", "False"),
        ({"Built": "False:Building"}, "Building", "False"),
        ({"Built": "False:BuildFailed"}, "Failed", "False"),
        ({"Built": "True", "Validated": "Unknown"}, "Validating", "False"),
        ({"Built": "True", "Validated": "False:AccuracyDrop"}, "Failed", "False"),
        ({"Built": "True", "Validated": "True", "Available": "False:Progressing"}, "RollingOut", "False"),
        ({"Built": "True", "Validated": "True", "Available": "True"}, "Ready", "True"),
        # A new engine failed its gate while the previous revision keeps serving.
        ({"Built": "True", "Validated": "False:AccuracyDrop", "Available": "True"}, "Degraded", "False"),
        (
            {"Built": "True", "Validated": "True", "Available": "True", "Degraded": "True:RolledBack"},
            "Degraded",
            "False",
        ),
        (
            {"Built": "True", "Validated": "True", "Available": "True", "CertificateReady": "False:Expired"},
            "Ready",
            "False",
        ),
        # The live check: a failure holds Ready while the revision keeps serving; pending or not run does not.
        (
            {"Built": "True", "Validated": "True", "Available": "True", "Verified": "False:ParityFailed"},
            "Degraded",
            "False",
        ),
        (
            {"Built": "True", "Validated": "True", "Available": "True", "Verified": "Unknown:AwaitingRollout"},
            "Ready",
            "True",
        ),
        (
            {"Built": "True", "Validated": "True", "Available": "True", "Verified": "Unknown:NotChecked"},
            "Ready",
            "True",
        ),
        ({"Built": "True", "Validated": "True", "Available": "True", "Verified": "True:ParityPassed"}, "Ready", "True"),
    ],
)
def test_phase_and_ready(states: dict[str, str], phase: str, ready: str) -> None:
    found = conds(**states)
    assert summary.phase(found) == phase
    assert summary.ready(found)[0] == ready


def test_not_ready_reason_is_the_failing_conditions_reason() -> None:
    state, reason, message = summary.ready(conds(Built="True", Validated="False:AccuracyDrop"))
    assert (state, reason) == ("False", "AccuracyDrop")
    assert message.startswith("Validated")


def test_a_failed_live_check_is_readys_reason_and_a_check_not_run_is_said() -> None:
    state, reason, message = summary.ready(
        conds(Built="True", Validated="True", Available="True", Verified="False:ParityFailed")
    )
    assert (state, reason, message) == ("False", "ParityFailed", "Verified: m")
    state, reason, message = summary.ready(
        conds(Built="True", Validated="True", Available="True", Verified="Unknown:NotChecked")
    )
    assert (state, reason) == ("True", "Serving") and message.endswith("; Verified: m")
