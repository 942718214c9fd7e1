"""Acto's schema-driven mutations on the test bed: every field of the CRD's spec schema changed to valid and invalid
values and back (tests/faults/mutations.py generates them, tests/faults/mutation_runs.py judges them)."""

from __future__ import annotations

import pathlib
import time

import pytest

from testbed import minio
from tests.cluster_fixtures import Cluster
from tests.faults import mutation_runs, mutations, results

# Nightly: 15-25 minutes on the two shared cores of the test bed machine, too much for CI's 60 (make test-faults).
pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.nightly]
BUDGET_S = 15 * 60  # issue 20


def test_every_field_mutated_is_refused_naming_it_or_converges_and_comes_back(
    with_crd: Cluster,
    operator_kubeconfig: pathlib.Path,
    minio_connection: minio.Connection,
    shared_namespace: str,
    tmp_path: pathlib.Path,
) -> None:
    started = time.monotonic()
    cases = mutations.cases()
    on_the_operator = [c for c in cases if c.verdict != "rejected" and not c.heavy]
    at_admission = [c for c in cases if c.verdict == "rejected" or c.heavy]
    judged = [mutation_runs.admission(with_crd, shared_namespace, case) for case in at_admission]
    admitted_s = time.monotonic() - started
    judged += mutation_runs.run_valid(with_crd, operator_kubeconfig, minio_connection, tmp_path, on_the_operator)
    took = time.monotonic() - started
    outcomes: dict[str, int] = {}
    for found in judged:
        outcomes[found.outcome] = outcomes.get(found.outcome, 0) + 1
    backs = [j.back_s for j in judged if j.back_s is not None]
    print(
        f"\nschema mutations: {len(judged)} cases ({len(at_admission)} at admission in {admitted_s:.0f}s,"
        f" {len(on_the_operator)} applied and restored), outcomes {outcomes}, {len(backs)} came back,"
        f" {took:.0f}s in all"
    )
    results.record("Schema mutations", [j.as_campaign_case() for j in judged])
    failed = [f"{j.name} [{j.namespace}]: {j.problems}" for j in judged if not j.converged]
    assert not failed, f"{len(failed)} of {len(judged)} cases failed:\n" + "\n".join(failed)
    assert len(judged) >= 500
    assert took < BUDGET_S, f"{took:.0f}s, over the {BUDGET_S}s budget"
