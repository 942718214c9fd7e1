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


@pytest.fixture(scope="session")
def baseline(
    with_crd: Cluster,
    operator_kubeconfig: pathlib.Path,
    minio_connection: minio.Connection,
    tmp_path_factory: pytest.TempPathFactory,
) -> Baseline:
    """create -> Ready without a fault, once per session: the oracle every faulty run is judged by."""
    bed = campaign.Bed(with_crd, operator_kubeconfig, minio_connection, tmp_path_factory.mktemp("faults"))
    expected, writes = campaign.fault_free(bed)
    assert writes > 0 and expected.conditions.get("Ready", ("", ""))[0] == "True", expected
    return Baseline(bed, expected, writes)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if results.RAN:
        terminalreporter.write_line(results.summary())
