"""Kestrel's own parser rejects every invalid spec in the shared table, naming the field."""

from __future__ import annotations

import pytest

from kestrel.api import errors, spec
from tests import invalid_specs


def test_the_base_spec_is_valid() -> None:
    spec.parse(invalid_specs.valid_spec())


@pytest.mark.parametrize("case", invalid_specs.CASES, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_naming_the_field(case: invalid_specs.Case) -> None:
    with pytest.raises(errors.SpecError) as caught:
        spec.parse(case.spec())
    assert case.field in str(caught.value)


def test_there_are_at_least_twenty_cases() -> None:
    assert len(invalid_specs.CASES) >= 20
