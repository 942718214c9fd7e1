"""The fault campaign's shared baseline, and its summary line after a session that ran any of its suites:
`fault_cases=<n> converged=<n> bugs_fixed=<k>` over every fault class's last run (tests/faults/results.py)."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from testbed import minio
from tests.cluster.storage_fixtures import minio_connection
from tests.cluster_fixtures import Cluster
from tests.faults import campaign, oracle, results

__all__ = ["minio_connection"]  # a fixture, imported for pytest to find


@dataclasses.dataclass(frozen=True)
class Baseline:
    bed: campaign.Bed
    expected: oracle.EndState  # the fault-free run's end state
    writes: int  # the operator's writes until Ready in that run


class Baselines:
    """Each scenario's fault-free run, made once per session when a suite first asks for it."""

    def __init__(self, bed: campaign.Bed) -> None:
        self.bed = bed
        self.made: dict[str, Baseline] = {}

    def of(self, scenario: campaign.Scenario) -> Baseline:
        if scenario.name not in self.made:
            expected, writes = campaign.fault_free(self.bed, scenario)
            assert writes > 0, f"the fault-free run of {scenario.name} made no write"
            self.made[scenario.name] = Baseline(self.bed, expected, writes)
        return self.made[scenario.name]


@pytest.fixture(scope="session")
def baselines(
    with_crd: Cluster,
    operator_kubeconfig: pathlib.Path,
    minio_connection: minio.Connection,
    tmp_path_factory: pytest.TempPathFactory,
) -> Baselines:
    return Baselines(campaign.Bed(with_crd, operator_kubeconfig, minio_connection, tmp_path_factory.mktemp("faults")))


@pytest.fixture(scope="session")
def baseline(baselines: Baselines) -> Baseline:
    """create -> Ready without a fault: the oracle the create scenario's faulty runs are judged by."""
    found = baselines.of(campaign.CREATE)
    assert found.expected.conditions.get("Ready", ("", ""))[0] == "True", found.expected
    return found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if results.RAN:
        terminalreporter.write_line(results.summary())
