"""Each condition type is written by one module of the operator: derived from the code's syntax tree, so a second
writer fails here. A write is a call `<x>.set(conditions.X, ...)` (Context.set) or `set_condition(..., type=...)`;
one whose type is not a `conditions.X` constant cannot be attributed and fails too, unless listed below."""

from __future__ import annotations

import ast
import pathlib

from kestrel.api import conditions

PACKAGE = pathlib.Path(__file__).parents[2] / "operator" / "kestrel"
UNATTRIBUTED = "?"

# Calls whose condition type is a variable, each with its reason. Shrink this table, never grow it: a module that
# observes another's condition returns what it saw to the owner (see reconcilers/serving/serving.py).
UNATTRIBUTED_WRITERS = {
    "reconcilers/context.py": "Context.set itself, the setter every attributed write above goes through",
}


def _kind(node: ast.expr | None) -> str:
    """The condition type a write names, or UNATTRIBUTED when it is not a `conditions.X` constant."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "conditions"
        and getattr(conditions, node.attr, None) in conditions.TYPES
    ):
        return str(getattr(conditions, node.attr))
    return UNATTRIBUTED


def _written(call: ast.Call) -> str | None:
    """The type a call writes, UNATTRIBUTED when it writes one this test cannot name, None when it writes none."""
    function = call.func
    if isinstance(function, ast.Name | ast.Attribute) and getattr(function, "id", getattr(function, "attr", "")) == (
        "set_condition"
    ):
        typed = [k.value for k in call.keywords if k.arg == "type"]
        return _kind(typed[0] if typed else None)
    if isinstance(function, ast.Attribute) and function.attr == "set" and call.args:
        # Any receiver (ctx, context, an alias): a `.set` whose first argument is not a condition constant is some
        # other set (a gauge's), which Context.set's own unattributed call would catch if it wrote a condition.
        kind = _kind(call.args[0])
        return None if kind == UNATTRIBUTED else kind
    return None


def writers() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            kind = _written(node) if isinstance(node, ast.Call) else None
            if kind is not None:
                found.setdefault(kind, set()).add(module)
    return found


def test_the_parser_sees_the_writes_it_should() -> None:
    source = (
        "ctx.set(conditions.READY, 'True', 'R', 'm')\nconditions.set_condition([], type=kind)\nctx.event('x')\n"
        "alias.set(conditions.DEGRADED, 'True', 'R', 'm')\ngauge.set(1)"
    )
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    assert [_written(c) for c in calls] == [conditions.READY, UNATTRIBUTED, None, conditions.DEGRADED, None]


def test_every_condition_type_has_exactly_its_owner_as_writer() -> None:
    found = writers()
    assert set(found) - {UNATTRIBUTED} == set(conditions.TYPES), "a condition type without a writer, or an unknown one"
    for kind, modules in found.items():
        if kind == UNATTRIBUTED:
            assert modules == set(UNATTRIBUTED_WRITERS), (
                f"writes whose condition type is not a conditions constant: {modules}"
            )
        else:
            assert len(modules) == 1, f"{kind} is written by {sorted(modules)}: one module must own it"


def test_serving_owns_its_three_conditions_and_the_unreadable_spec_goes_to_the_owners() -> None:
    found = writers()
    serving = "reconcilers/serving/serving.py"
    assert [found[kind] for kind in (conditions.AVAILABLE, conditions.PROGRESSING, conditions.DEGRADED)] == [
        {serving}
    ] * 3
    assert found[conditions.READY] == {"reconcilers/summary.py"}
    assert found[conditions.ENCRYPTED] == {"reconcilers/security/encryption.py"}


def test_the_verified_and_drift_owners_write_nothing_else() -> None:
    found = writers()
    assert found[conditions.VERIFIED] == {"reconcilers/serving/checks.py"}
    assert found[conditions.DRIFT] == {"reconcilers/serving/drift.py"}
    for owner in ("reconcilers/serving/checks.py", "reconcilers/serving/drift.py"):
        assert len([kind for kind, modules in found.items() if owner in modules]) == 1
