"""Verified has exactly one writer, checks.py, and checks.py writes no other condition: derived from the code, so a
second writer (or the live check writing Available again, as it once did) fails here."""

from __future__ import annotations

import pathlib
import re

from kestrel.api import conditions

PACKAGE = pathlib.Path(__file__).parents[2] / "operator" / "kestrel"
# A condition set through the one setter (ctx.set, or set_condition) with its type as a conditions constant.
SETS = re.compile(r"(?:\bctx\.set|set_condition)\(\s*(?:type=)?conditions\.([A-Z_]+)")


def _writers() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for constant in SETS.findall(path.read_text()):
            found.setdefault(getattr(conditions, constant), set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_only_the_checks_reconciler_writes_verified_and_it_writes_nothing_else() -> None:
    writers = _writers()
    assert writers[conditions.VERIFIED] == {"reconcilers/serving/checks.py"}
    written_by_checks = {kind for kind, modules in writers.items() if "reconcilers/serving/checks.py" in modules}
    assert written_by_checks == {conditions.VERIFIED}
    assert "reconcilers/serving/checks.py" not in writers[conditions.AVAILABLE]
