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


def _every_crash_point(found: Baseline, scenario: campaign.Scenario) -> list[campaign.Case]:
    """A case per write of the fault-free run, until a run ends before its crash point: runs differ by a few
    writes (a child re-applied once its trust window ran out), and every later point is then past the end too. At
    least 80% of the fault-free run's points must be reached, so a campaign cut short cannot pass."""
    cases: list[campaign.Case] = []
    for n in range(1, found.writes + 1):
        case = campaign.crash_case(found.bed, found.expected, n, scenario)
        if not case.struck and case.converged and case.writes_before_fault < n:
            break
        cases.append(case)
    assert len(cases) >= 0.8 * found.writes, f"{len(cases)} of {found.writes} crash points reached"
    return cases


def test_create_to_ready_converges_after_a_crash_at_every_write(baseline: Baseline) -> None:
    results.judge("Crash after the N-th write (create->Ready)", _every_crash_point(baseline, campaign.CREATE))


@pytest.mark.parametrize(
    "scenario", [campaign.UPDATE, campaign.DELETE, campaign.RENEW], ids=lambda s: s.name.split("->")[0].split()[-1]
)
def test_update_delete_and_renewal_converge_after_a_crash_at_every_write(
    baselines: Baselines, scenario: campaign.Scenario
) -> None:
    found = baselines.of(scenario)
    results.judge(f"Crash after the N-th write ({scenario.name})", _every_crash_point(found, scenario))
