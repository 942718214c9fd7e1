"""Lost watch events, stale reads and an unreachable API server on the test bed, each during create -> Ready of a
cache-hit model, judged by the fault-free run's end state (tests/faults/oracle.py) within two minutes."""

from __future__ import annotations

import pytest

from tests.faults import campaign, results
from tests.faults.conftest import Baseline

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

# The operator's watches that start its passes: its own CRD, and the Deployments it owns (handlers/owned.py).
WATCHED = ("modeldeployments", "deployments")
OUTAGE_S = 20.0


def test_one_dropped_watch_event_at_each_point_is_recovered(baseline: Baseline) -> None:
    cases = [
        campaign.dropped_event_case(baseline.bed, baseline.expected, resource, index)
        for resource in WATCHED
        for index in (1, 2, 3)
    ]
    results.judge("One dropped watch event", cases)


def test_reads_answered_from_a_stale_snapshot_do_not_change_the_end_state(baseline: Baseline) -> None:
    cases = [campaign.stale_reads_case(baseline.bed, baseline.expected, age, lasting=20.0) for age in (2.0, 5.0)]
    results.judge("Stale reads", cases)


def test_an_api_server_gone_for_20_s_mid_scenario_is_survived(baseline: Baseline) -> None:
    points = sorted({1, max(1, baseline.writes // 2), baseline.writes})
    cases = [campaign.outage_case(baseline.bed, baseline.expected, after, OUTAGE_S) for after in points]
    results.judge(f"API server unreachable {OUTAGE_S:.0f} s", cases)
    assert not any(c.restarted for c in cases), "the operator died during an outage instead of waiting it out"


def test_etcd_stopped_for_20_s_mid_scenario_is_survived(baseline: Baseline) -> None:
    """etcd paused (SIGSTOP) under the API server: its requests fail or hang, as when etcd is gone."""
    cases = [campaign.etcd_outage_case(baseline.bed, baseline.expected, max(1, baseline.writes // 2), OUTAGE_S)]
    results.judge(f"etcd stopped {OUTAGE_S:.0f} s", cases)
    assert not any(c.restarted for c in cases), "the operator died during an etcd outage instead of waiting it out"
