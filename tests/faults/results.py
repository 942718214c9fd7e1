"""The campaign's tally across its suites: each records its cases, and `make test-faults` prints the sum.

Results go to `.testbed/faults/<class>.json` (one file per fault class, replaced by each run of it), so that the
summary line and docs/reliability.md read what the last run found.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import statistics
from typing import Any

from tests.faults import bugs
from tests.faults.campaign import Case

FOLDER = pathlib.Path(__file__).resolve().parents[2] / ".testbed" / "faults"
RAN: list[str] = []  # the fault classes this session ran


def record(fault_class: str, cases: list[Case]) -> None:
    RAN.append(fault_class)
    FOLDER.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", fault_class.lower()).strip("-")
    times = [c.converge_s for c in cases if c.converge_s is not None]
    document = {
        "class": fault_class,
        "cases": len(cases),
        "converged": sum(1 for c in cases if c.converged),
        "converge_p50_s": statistics.median(times) if times else None,
        "converge_max_s": max(times) if times else None,
        "runs": [dataclasses.asdict(c) | {"proxy_log": None} for c in cases],
    }
    (FOLDER / f"{slug}.json").write_text(json.dumps(document, indent=2))


def recorded() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))] if FOLDER.is_dir() else []


def summary() -> str:
    found = recorded()
    cases = sum(r["cases"] for r in found)
    converged = sum(r["converged"] for r in found)
    return f"fault_cases={cases} converged={converged} bugs_fixed={len(bugs.FIXED)}"


def judge(fault_class: str, cases: list[Case]) -> None:
    """Record the cases, then fail naming each case that struck nothing or did not converge, and what differed."""
    record(fault_class, cases)
    failed = [c for c in cases if not c.converged]
    said = [f"{c.name} ({c.namespace}): {c.differences} regenerated={c.regenerated}" for c in failed]
    assert not failed, "\n".join(said)
    assert all(c.struck for c in cases), [c.name for c in cases if not c.struck]
