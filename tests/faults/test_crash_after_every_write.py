"""Sieve's crash points on the test bed: create -> Ready of a cache-hit model, with the operator killed right after
its N-th write for every N the fault-free run makes, then restarted; every case must converge to the fault-free
run's end state within two minutes, with no duplicate, no orphan, and no generated Secret generated again."""

from __future__ import annotations

import pytest

from tests.faults import campaign, results
from tests.faults.conftest import Baseline

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def test_create_to_ready_converges_after_a_crash_at_every_write(baseline: Baseline) -> None:
    cases = [campaign.crash_case(baseline.bed, baseline.expected, n) for n in range(1, baseline.writes + 1)]
    results.judge("Crash after the N-th write", cases)
