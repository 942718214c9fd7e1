"""docs/reliability.md from the fault campaign's last run (.testbed/faults/*.json), with the command of each row.

    .venv/bin/python -m tests.faults.report      # make reliability

Every number in the table comes from the recorded run; the bugs come from tests/faults/bugs.py.
"""

from __future__ import annotations

import datetime
import pathlib

from tests.faults import bugs, results

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
_SCENARIOS = (
    "tests/faults/test_crash_after_every_write.py::test_update_delete_and_renewal_converge_after_a_crash_at_every_write"
)
# The pytest node that runs each fault class (results.record's first argument).
COMMANDS = {
    "Crash after the N-th write (create->Ready)": "tests/faults/test_crash_after_every_write.py -k create",
    "Crash after the N-th write (update->rolled out)": f"'{_SCENARIOS}[update]'",
    "Crash after the N-th write (delete->collected)": f"'{_SCENARIOS}[delete]'",
    "Crash after the N-th write (certificate renewal->rolled out)": f"'{_SCENARIOS}[renewal]'",
    "One dropped watch event": "tests/faults/test_lost_events_stale_reads_and_outages.py -k dropped",
    "Stale reads": "tests/faults/test_lost_events_stale_reads_and_outages.py -k stale",
    "API server unreachable 20 s": "tests/faults/test_lost_events_stale_reads_and_outages.py -k unreachable",
    "etcd stopped 20 s": "tests/faults/test_lost_events_stale_reads_and_outages.py -k etcd",
    "Schema mutations": "tests/faults/test_schema_mutations.py",
}
INTRO = """# Reliability: the fault campaign

Kestrel's operator is run through faults on the test bed (a real kube-apiserver and etcd, kwok's nodes, MinIO), each
case in a namespace of its own with a fresh operator under the chart's RBAC, every request of which goes through a
fault proxy (`testbed/fault_proxy.py`) between it and the API server. The scenario is create -> Ready of a model
whose engine is already in the store (a cache hit: keys, certificate, API key, grant, NetworkPolicies, Triton's
Deployment, Service and PDB, status). A fault-free run of the same scenario records the end state
(`tests/faults/oracle.py`): every object the model's pass writes, by kind and name, with its labels, owners and
spec (Secrets: type and keys), the model's conditions, revision, the reasons of its Events, the engines in the store
and the number of Jobs. A case passes when the model is Ready and its end state equals that one within two minutes
of the fault, and no generated Secret (signing key, API key, certificate key) present at the fault was generated
again.

- **Crash after the N-th write** (Sieve's crash points): the operator is SIGKILLed right after its N-th successful
  write reached the API server and before it saw the answer, for every N of the fault-free run; a new one starts.
  Four scenarios: create -> Ready; an update to a new engine (published beforehand: a cache hit) until it is rolled
  out; a deletion until the model, its children and its stored engines are gone; a certificate renewal (the
  runbook's: the Secret deleted) until the new certificate is issued once and rolled out.
- **One dropped watch event**: the k-th event (k = 1, 2, 3) of the operator's watch on its ModelDeployments, or on
  the Deployments it owns, after the watch's initial listing, never reaches it.
- **Stale reads**: every read the operator makes in its first 20 s is answered from a snapshot at least 2 s (5 s)
  old where the proxy holds one.
- **API server unreachable 20 s**: from the operator's first, middle and last write on (that write unanswered),
  every connection is refused and the open ones cut; the operator must wait it out without dying.
- **etcd stopped 20 s**: the test bed's etcd is paused (SIGSTOP, then SIGCONT) from the operator's middle write on,
  under a running API server; the operator must wait it out without dying.
- **Schema mutations** (Acto's): every field under the CRD's `spec` schema (read from crds/, not from Kestrel's
  models) is changed to valid values (another enum value, a boundary, a toggled boolean, another string matching
  its pattern, a list or map entry) and invalid ones (out of range, the wrong type, not in the enum, against the
  pattern or maxLength, an unknown field, a required field removed, a CEL rule broken), starting from a Ready
  cache-hit model (`tests/faults/mutations.py`; CEL rules evaluated by `tests/faults/cel.py`). An invalid spec must
  be refused by a server-side dry run naming the field; a valid one is applied, and the operator must catch up
  (observedGeneration) with no exception in a condition or its log, a new engine key must start a build while the
  old revision keeps serving, and a spec the operator cannot carry out must be refused with a condition naming the
  field; then the base spec is restored and the end state (without Events) must equal the base's. A case's converge
  time is from the mutation to the operator's status catching up (admission cases have none).

The schema mutations are a nightly suite (`make test-faults`, not `make test`): their full run (585 cases from
today's CRD) has not completed on this 2-core machine within the issue's 15 minutes (projected about 25); a
68-case sample found the two bugs listed below. Their row appears here once a full run has recorded one.

Not run yet (issue 20): the canary (promotion and abort) and key-rotation scenarios, the other fault classes
crossed with the scenarios after create, and the real-node faults (Triton killed mid-traffic, a model that fails to
load, MinIO down during a build or a load, a bit flipped in a stored object).
"""


def table() -> str:
    rows = [
        "| fault class | cases | converged | converge p50 (s) | converge max (s) | command |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for found in results.recorded():
        command = COMMANDS.get(found["class"], "tests/faults/")
        p50, peak = found["converge_p50_s"], found["converge_max_s"]
        rows.append(
            f"| {found['class']} | {found['cases']} | {found['converged']} | "
            f"{'-' if p50 is None else f'{p50:.1f}'} | {'-' if peak is None else f'{peak:.1f}'} | "
            f"`.venv/bin/python -m pytest {command}` |"
        )
    return "\n".join(rows)


def bug_list() -> str:
    if not bugs.FIXED:
        return "No bug found yet."
    return "\n".join(f"- **{b.fault_class}**: {b.what} Regression test: `{b.regression_test}`." for b in bugs.FIXED)


def main() -> int:
    found = results.recorded()
    if not found:
        raise SystemExit("no recorded run under .testbed/faults/: run `make test-faults` first")
    text = "\n".join(
        [
            INTRO,
            "## The last run",
            "",
            table(),
            "",
            f"`{results.summary()}`. Converge times run from the fault's end (the operator's restart, the outage's"
            " end, the last stale read) to the end state matching the fault-free run's.",
            "",
            "## Bugs found and fixed",
            "",
            bug_list(),
            "",
            f"Written {datetime.date.today().isoformat()} by `make reliability` from the run above"
            " (`make test-faults`).",
            "",
        ]
    )
    DOC.write_text(text)
    print(results.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
