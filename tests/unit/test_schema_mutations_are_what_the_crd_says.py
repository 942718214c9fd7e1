"""The schema-mutation generator (tests/faults/mutations.py) against independent judges: the `jsonschema` library
checks every case's structure against the CRD's schema (made strict the way the API server is: unknown fields
refused, sets unique), and the CEL subset is checked against the hand-written invalid specs (tests/invalid_specs.py)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from tests import invalid_specs
from tests.faults import cel, mutations


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD's OpenAPI schema as Draft 4 JSON Schema, with what the API server adds: unknown fields are refused
    (strict field validation), a set's items are unique, int-or-string is either."""
    found = copy.deepcopy(schema)
    found.pop("x-kubernetes-validations", None)
    if found.pop("x-kubernetes-int-or-string", False):
        found["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if found.get("x-kubernetes-list-type") == "set":
        found["uniqueItems"] = True
    if "properties" in found:
        found["properties"] = {name: _strict(child) for name, child in found["properties"].items()}
        if not found.get("x-kubernetes-preserve-unknown-fields"):
            found.setdefault("additionalProperties", False)
    if isinstance(found.get("additionalProperties"), dict):
        found["additionalProperties"] = _strict(found["additionalProperties"])
    if isinstance(found.get("items"), dict):
        found["items"] = _strict(found["items"])
    return found


VALIDATOR = jsonschema.Draft4Validator(_strict(mutations.crd_schema()))
CASES = mutations.cases()


def test_at_least_500_cases_cover_every_field_with_valid_and_invalid_values() -> None:
    assert len(CASES) >= 500
    verdicts = {c.verdict for c in CASES}
    assert {"valid", "rejected"} <= verdicts
    touched = {c.mutation.path for c in CASES}
    fields = {path for path, _ in mutations.walk(mutations.crd_schema())}
    assert fields <= touched, sorted(mutations.field_path(p) for p in fields - touched)
    valid_fields = {c.mutation.path for c in CASES if c.verdict == "valid"}
    assert len(valid_fields) >= 0.6 * len(fields)
    assert any(c.key_changes for c in CASES) and any(c.verdict == "valid" and not c.key_changes for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name[:120])
def test_each_case_is_valid_or_invalid_as_the_schema_and_its_rules_say(case: mutations.Case) -> None:
    raw = case.spec()
    schema_errors = [e.message for e in VALIDATOR.iter_errors(mutations.defaulted(mutations.crd_schema(), raw))]
    broken = mutations.broken_rules(raw) if not schema_errors else []
    if case.verdict == "rejected":
        assert schema_errors or broken, "expected a refusal, but the schema and the rules admit it"
        if schema_errors:
            assert not case.mutation.fits, f"the value was taken to fit its field, yet: {schema_errors}"
            assert case.fields == (mutations.field_path(case.mutation.path),)
        else:
            assert set(case.fields) == set(broken)
    else:
        assert not schema_errors and not broken, (schema_errors, broken)


@pytest.mark.parametrize("case", invalid_specs.CASES, ids=lambda c: c.id)
def test_the_cel_subset_refuses_the_hand_written_invalid_specs_naming_their_field(case: invalid_specs.Case) -> None:
    raw = case.spec()
    if any(VALIDATOR.iter_errors(mutations.defaulted(mutations.crd_schema(), raw))):
        pytest.skip("a schema error, not a rule's")
    broken = mutations.broken_rules(raw)
    assert any(case.field in named or named in case.field for named in broken), broken


def test_the_base_spec_breaks_no_rule_and_fits_the_schema() -> None:
    assert not mutations.broken_rules(mutations.BASE)
    assert not list(VALIDATOR.iter_errors(mutations.defaulted(mutations.crd_schema(), mutations.BASE)))


@pytest.mark.parametrize(
    ("rule", "value", "holds"),
    [
        ("!has(self.rotateBefore) || duration(self.rotateBefore) < duration(self.duration)", {"duration": "1h"}, True),
        ("duration(self.rotateBefore) < duration(self.duration)", {"rotateBefore": "90m", "duration": "1h"}, False),
        ("duration(self.rotateBefore) < duration(self.duration)", {"rotateBefore": "1h", "duration": "1h30m"}, True),
        ("self.steps.isSorted() && self.steps[size(self.steps) - 1] == 100", {"steps": [10, 50, 100]}, True),
        ("self.steps.all(s, self.steps.indexOf(s) == self.steps.lastIndexOf(s))", {"steps": [10, 10, 100]}, False),
        ("self.format in ['onnx', 'openvino']", {"format": "tensorrt"}, False),
        ("self.imgsz % 32 == 0", {"imgsz": 33}, False),
        ("self.missing == 1", {}, False),  # an evaluation error refuses, as the API server does
        ("self.d.matches('[.](tar|tgz)$')", {"d": "s3://b/x.tgz"}, True),
    ],
)
def test_the_cel_subset_evaluates_as_cel_does(rule: str, value: dict[str, Any], holds: bool) -> None:
    assert cel.holds(rule, value) is holds


def test_a_rule_outside_the_subset_is_an_error_not_a_verdict() -> None:
    with pytest.raises(cel.CelError):
        cel.holds("self.x.exists(y, y == 1)", {"x": [1]})
