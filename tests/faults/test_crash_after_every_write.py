"""Sieve's crash points on the test bed: create -> Ready of a cache-hit model, its update to a new engine (rolled
out), its deletion (children and stored engines collected) and a certificate renewal (the runbook's: the Secret
deleted, a new certificate issued once and rolled out), each with the operator killed right after its N-th
write for every N the fault-free run of that scenario makes, then restarted; every case must converge to the
fault-free run's end state within two minutes, with no duplicate, no orphan, no leaked store object, and no
generated Secret generated again."""

from __future__ import annotations

import pytest

from tests.faults import campaign, results
from tests.faults.conftest import Baseline, Baselines

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def test_create_to_ready_converges_after_a_crash_at_every_write(baseline: Baseline) -> None:
    cases = [campaign.crash_case(baseline.bed, baseline.expected, n) for n in range(1, baseline.writes + 1)]
    results.judge("Crash after the N-th write (create->Ready)", cases)


@pytest.mark.parametrize(
    "scenario", [campaign.UPDATE, campaign.DELETE, campaign.RENEW], ids=lambda s: s.name.split("->")[0].split()[-1]
)
def test_update_delete_and_renewal_converge_after_a_crash_at_every_write(
    baselines: Baselines, scenario: campaign.Scenario
) -> None:
    found = baselines.of(scenario)
    cases = [campaign.crash_case(found.bed, found.expected, n, scenario) for n in range(1, found.writes + 1)]
    results.judge(f"Crash after the N-th write ({scenario.name})", cases)
