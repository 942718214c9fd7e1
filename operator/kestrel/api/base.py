"""The base of every API model: strict parsing, camelCase on the wire, cross-field rules in two languages.

A `Rule` carries one cross-field constraint twice: as CEL for the API server (rendered into the CRD's
`x-kubernetes-validations`) and as a Python predicate that gives `kestrel build --spec` and unit tests the
same verdict without a cluster. Both sides share one message, and the test suite feeds the same invalid
specs to both, so they cannot drift apart unnoticed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Self

import pydantic
from pydantic import alias_generators

RuleReason = Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden", "FieldValueDuplicate"]

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One cross-field constraint, evaluated by the API server (CEL) and by Kestrel (Python)."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    reason: RuleReason = "FieldValueInvalid"

    def to_openapi(self) -> dict[str, str]:
        rendered = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rendered["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            rendered["reason"] = self.reason
        return rendered


def _add_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_openapi() for rule in rules]


class ApiModel(pydantic.BaseModel):
    """A strict model: unknown fields are errors, camelCase aliases on the wire, snake_case in Python."""

    model_config = pydantic.ConfigDict(
        extra="forbid",
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        json_schema_extra=_add_rules,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @pydantic.model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in type(self).cel_rules:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server holds it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def section(model: type[ApiModel], description: str) -> Any:
    """A nested object that is always present, defaulted the same way here and by the API server.

    The CRD's default is the fully defaulted object rather than `{}`: the API server checks a default
    against the CEL rules as written, before nested defaults would fill it in.
    """
    return pydantic.Field(
        default_factory=model, description=description, json_schema_extra={"default": model().to_wire()}
    )


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("90s", "1h30m", "2160h"), the format CEL's duration() accepts."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m or 2160h")
    return sum(float(value) * _DURATION_UNIT_SECONDS[unit] for value, unit in _DURATION_PART.findall(text))
