"""Acto's schema-driven mutations, generated from the CRD's own OpenAPI schema (crds/, not Kestrel's models).

Every field under `spec` is walked (objects, arrays and their items, maps, enums, bounded numbers, patterned strings,
booleans) and given values (`values`): valid ones (another enum value, a boundary, a toggled boolean, another string
that matches the pattern, a list or a map entry) and invalid ones (out of range, the wrong type, not in the enum,
against the pattern or maxLength, an unknown field, a required field removed). Each value is set on `BASE`, a
cache-hit model on the test bed (campaign.model_spec()), and the resulting spec is judged from the CRD alone
(`classify`): the schema (by the generator's own knowledge of what it broke) and the CEL rules (`cel.py`, on the spec
as the API server defaults it) say whether the API server must admit it and which field its refusal must name. A
value that only a CEL rule refuses (int8 without calibration) is kept as an invalid case and, where one toggled enum
or boolean elsewhere in the spec makes it valid (a GPU with environment cloud), also as a valid case with that
context. An admitted spec that Kestrel's parser refuses is a case the operator must refuse with a condition.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any, Literal

import yaml

from kestrel.api import errors, keys, spec
from tests.faults import campaign, cel

CRD_FILE = pathlib.Path(__file__).resolve().parents[2] / "crds" / "modeldeployments.kestrel.dev.yaml"
Path = tuple[str | int, ...]
Verdict = Literal["valid", "rejected", "refused"]
DELETE: Any = object()  # a mutation's value that removes the field
UNKNOWN_FIELD = "unknownField"
MAP_KEY = "kestrel.dev/mutated"
# Strings tried against each field's pattern: the ones that match are its valid values, the others its invalid ones.
STRINGS = (
    "file:///models/other.pt",
    "pvc://claim/data/data.yaml",
    "s3://bucket/data.tar.gz",
    "https://example.com/data.tgz",
    "a" * 64,
    "f" * 63 + "0",
    "kestrel-kek",
    "x1",
    "NVIDIA-L4",
    "1g.10gb",
    "90s",
    "1h30m",
    "val",
    "a reason that is long enough",
    "vision/camera-app",
    "",
    "Not Valid!",
    "-leading-dash",
    "line one\nline two",
)
# Values above these create that many pods on the shared test bed: admitted (checked by a dry run), not applied.
HEAVY = {("serving", "replicas"): 3, ("serving", "autoscaling", "min"): 3}


@functools.cache
def crd_schema() -> dict[str, Any]:
    """The schema of `spec` (read once: callers never change it)."""
    document = yaml.load(CRD_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return dict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


BASE: dict[str, Any] = campaign.model_spec()


def field_path(path: Path) -> str:
    text = "spec"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


@dataclasses.dataclass(frozen=True)
class Mutation:
    path: Path
    value: Any
    what: str
    fits: bool  # the value fits the field's own schema (type, bounds, pattern, enum)
    context: tuple[tuple[Path, Any], ...] = ()

    @property
    def name(self) -> str:
        said = f"{field_path(self.path)} {self.what}"
        return said + "".join(f" (with {field_path(p)}={json.dumps(v)})" for p, v in self.context)

    def spec(self, base: dict[str, Any] = BASE) -> dict[str, Any]:
        changed = copy.deepcopy(base)
        for path, value in (*self.context, (self.path, self.value)):
            _set(changed, path, value)
        return changed


@dataclasses.dataclass(frozen=True)
class Case:
    mutation: Mutation
    verdict: Verdict
    fields: tuple[str, ...]  # what a refusal must name (any one of them)
    key_changes: bool = False  # a valid case with another engine key (a build Job on kwok)
    heavy: bool = False  # valid, judged at admission only

    @property
    def name(self) -> str:
        return self.mutation.name

    def spec(self) -> dict[str, Any]:
        return self.mutation.spec()


def _schema_at(path: Path) -> dict[str, Any]:
    node = crd_schema()
    for part in path:
        if isinstance(part, int):
            node = node["items"]
        elif part in (node.get("properties") or {}):
            node = node["properties"][part]
        else:
            node = node.get("additionalProperties") or {}
    return node


def _set(target: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = target
    for depth, part in enumerate(path[:-1]):
        missing = part >= len(node) if isinstance(part, int) else part not in node
        if missing:
            filler = instance(_schema_at(path[: depth + 1]))
            if isinstance(part, int):
                node.append(filler)
            else:
                node[part] = filler
        node = node[part]
    leaf = path[-1]
    if value is DELETE:
        if isinstance(leaf, int):
            node.pop(leaf)
        else:
            node.pop(leaf, None)
    elif isinstance(leaf, int) and leaf >= len(node):
        node.append(copy.deepcopy(value))
    else:
        node[leaf] = copy.deepcopy(value)


def instance(schema: dict[str, Any]) -> Any:
    """The smallest valid value of `schema`: its required fields, each the first valid value of its own schema."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: instance(schema["properties"][name]) for name in schema.get("required") or []}
    if kind == "array":
        return [instance(schema["items"]) for _ in range(schema.get("minItems", 0))]
    return next(value for value, _, fits in values(schema, None) if fits)


def _matches(schema: dict[str, Any], text: str) -> bool:
    pattern = schema.get("pattern")
    long_enough = schema.get("minLength", 0) <= len(text) <= schema.get("maxLength", len(text))
    return long_enough and (pattern is None or re.search(pattern, text) is not None)


def _strings(schema: dict[str, Any], current: Any) -> Iterator[tuple[Any, str, bool]]:
    matching = [s for s in STRINGS if _matches(schema, s) and s != current]
    if not schema.get("pattern") and not schema.get("minLength"):
        matching = ["another-value", *matching][:1]
    for text in matching[:2]:
        yield text, f"= {json.dumps(text)}", True
    for text in [s for s in STRINGS if not _matches(schema, s)][:2]:
        yield text, f"= {json.dumps(text)} (against the pattern or length)", False
    example = next((s for s in STRINGS if _matches(schema, s)), "a") if "pattern" in schema else "a"
    for bound, fits, said in (("maxLength", True, "at maxLength"), ("maxLength", False, "past maxLength")):
        if bound in schema:
            text = example + "a" * (schema[bound] + (0 if fits else 1) - len(example))
            if re.search(schema.get("pattern", ""), text):
                yield text, said, fits
    if "minLength" in schema:
        yield example[: schema["minLength"] - 1], "under minLength", False


def _numbers(schema: dict[str, Any], current: Any) -> Iterator[tuple[Any, str, bool]]:
    integer = schema.get("type") == "integer"
    step = 1 if integer else 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        exclusive = bool(schema.get("exclusiveMinimum"))
        yield low, "at an exclusive minimum" if exclusive else "at minimum", not exclusive
        if exclusive:
            yield low + 0.001, "just above an exclusive minimum", True
        yield low - step, "under minimum", False
    if high is not None:
        exclusive = bool(schema.get("exclusiveMaximum"))
        yield high, "at an exclusive maximum" if exclusive else "at maximum", not exclusive
        if exclusive:
            yield high - 0.001, "just below an exclusive maximum", True
        yield high + step, "over maximum", False
    if low is None and high is None:
        yield (current or 0) + 60, "another value", True
        yield -1, "negative", True
    if integer:
        yield 1.5, "a fraction for an integer", False
    yield "12", "a string for a number (wrong type)", False


def values(schema: dict[str, Any], current: Any) -> list[tuple[Any, str, bool]]:
    """(value, what it is, whether it fits `schema`) for one field; `current` is what the field holds now."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return [
            ("2", '= "2"', True),
            (4, "= 4", True),
            ("not-a-quantity", '= "not-a-quantity"', True),
            (True, "a boolean (wrong type)", False),
        ]
    if "enum" in schema:
        found = [(v, f"= {json.dumps(v)}", True) for v in schema["enum"] if v != current]
        other_case = str(schema["enum"][0]).upper()
        invalid = [("not-in-enum", "not in the enum", False), (other_case, "in another case", False)]
        return [*found, *invalid, (7, "a number (wrong type)", False)]
    if kind == "string":
        return [*_strings(schema, current), (7, "a number (wrong type)", False)]
    if kind in ("integer", "number"):
        return list(_numbers(schema, current))
    if kind == "boolean":
        toggled = not bool(current)
        return [
            (toggled, f"= {json.dumps(toggled)}", True),
            ("yes", "a string (wrong type)", False),
            (1, "a number (wrong type)", False),
        ]
    if kind == "array":
        return list(_arrays(schema))
    if kind == "object" and "additionalProperties" in schema:
        return list(_maps(schema))
    if kind == "object":
        found = [("object", "a string (wrong type)", False), (["object"], "a list (wrong type)", False)]
        found.append(({UNKNOWN_FIELD: 1}, "with an unknown field", False))
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            found.append(({"provider": "aws-kms", "keyId": "alias/kestrel"}, "= an object", True))
        return found
    raise ValueError(f"no values for a schema of type {kind}")


def _arrays(schema: dict[str, Any]) -> Iterator[tuple[Any, str, bool]]:
    items = schema["items"]
    fitting = [v for v, _, fits in values(items, None) if fits]
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    unique = schema.get("x-kubernetes-list-type") == "set"
    for value in fitting[:3]:
        yield [value], f"= [{json.dumps(value)}]", True
    yield [], "empty", low == 0
    if high is not None:
        many = [instance(items) if items.get("type") == "object" else fitting[i % len(fitting)] for i in range(high)]
        yield many, "at maxItems", not unique or len(set(map(json.dumps, many))) == len(many)
        yield [*many, many[0]], "past maxItems", False
    if unique and fitting:
        yield [fitting[0], fitting[0]], "a duplicate in a set", False
    for value, what, fits in values(items, None):
        if not fits:
            yield [value], f"an item {what}", False
            break
    yield "a-string", "a string (wrong type)", False


def _maps(schema: dict[str, Any]) -> Iterator[tuple[Any, str, bool]]:
    for value, what, fits in values(schema["additionalProperties"], None):
        yield {MAP_KEY: value}, f"an entry {what}", fits
    yield "a-string", "a string (wrong type)", False


def walk(schema: dict[str, Any], path: Path = ()) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every field below `schema`: object properties, the first item of an array of objects, never a map's entries
    (a map is one field: its values are tried as entries)."""
    for name, child in (schema.get("properties") or {}).items():
        yield (*path, name), child
        yield from walk(child, (*path, name))
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        yield from walk(items, (*path, 0))


def defaulted(schema: dict[str, Any], value: Any) -> Any:
    """`value` as the API server stores it: every absent property with a default gets it, recursively."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for name, child in schema["properties"].items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = defaulted(child, result[name])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [defaulted(schema["items"], item) for item in value]
    return value


@functools.cache
def rules() -> tuple[tuple[Path, str, cel.Node, str], ...]:
    """(object path, rule, its compiled form, the field its refusal names) of every CEL rule under spec."""
    found: list[tuple[Path, str, cel.Node, str]] = []

    def visit(schema: dict[str, Any], path: Path) -> None:
        for rule in schema.get("x-kubernetes-validations") or []:
            named = field_path(path) + rule.get("fieldPath", "")
            found.append((path, rule["rule"], cel.compile_rule(rule["rule"]), named))
        for name, child in (schema.get("properties") or {}).items():
            visit(child, (*path, name))
        if isinstance(schema.get("items"), dict):
            visit(schema["items"], (*path, 0))

    visit(crd_schema(), ())
    return tuple(found)


def broken_rules(raw: dict[str, Any]) -> list[str]:
    """The fields named by every CEL rule that `raw` (defaulted as the API server would) breaks."""
    full = defaulted(crd_schema(), raw)
    broken: list[str] = []
    for path, _, tree, named in rules():
        for target in _objects_at(full, path):
            if not cel.holds(tree, target):
                broken.append(named)
    return broken


def _objects_at(value: Any, path: Path) -> list[Any]:
    if not path:
        return [value]
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        return [found for item in value for found in _objects_at(item, rest)] if isinstance(value, list) else []
    return _objects_at(value[head], rest) if isinstance(value, dict) and head in value else []


def mutations() -> Iterator[Mutation]:
    """Every (field, value) pair: the values of each field, and the removal of those the base spec sets."""
    schema = crd_schema()
    base = defaulted(schema, BASE)
    for path, child in walk(schema):
        current = _current(base, path)
        for value, what, fits in values(child, current):
            yield Mutation(path, value, what, fits)
        if _current(BASE, path) is not None or path in _required():
            yield Mutation(path, DELETE, "removed", path not in _required())


def _current(spec_value: Any, path: Path) -> Any:
    node = spec_value
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


@functools.cache
def _required() -> frozenset[Path]:
    """Required fields whose parent the base spec sets (a required field of an absent object is never missing)."""
    base = BASE
    found: set[Path] = set()
    for path, child in [((), crd_schema()), *walk(crd_schema())]:
        if child.get("required") and (not path or _current(base, path) is not None):
            found.update((*path, name) for name in child["required"])
    return frozenset(found)


def _toggles() -> list[tuple[Path, Any]]:
    """Context changes tried on a value only a CEL rule refuses: another enum value or boolean of any field."""
    base = defaulted(crd_schema(), BASE)
    found: list[tuple[Path, Any]] = []
    for path, child in walk(crd_schema()):
        if 0 in path:
            continue
        current = _current(base, path)
        if "enum" in child and child.get("type") == "string":
            found.extend((path, v) for v in child["enum"] if v != current)
        elif child.get("type") == "boolean":
            found.append((path, not bool(current)))
    return found


def classify(mutation: Mutation) -> Case:
    raw = mutation.spec()
    if not mutation.fits:
        return Case(mutation, "rejected", (field_path(mutation.path),))
    broken = broken_rules(raw)
    if broken:
        return Case(mutation, "rejected", tuple(dict.fromkeys(broken)))
    try:
        parsed = spec.parse(raw)
    except errors.SpecError as error:
        return Case(mutation, "refused", (field_path(mutation.path), error.field))
    key_changes = keys.engine_key(parsed) != keys.engine_key(spec.parse(BASE))
    heavy = any(_current(raw, path) is not None and _current(raw, path) > limit for path, limit in HEAVY.items())
    return Case(mutation, "valid", (), key_changes, heavy)


@functools.cache
def cases() -> tuple[Case, ...]:
    """Every mutation classified, plus, for each that only a CEL rule refuses, the first context that admits it;
    one case per resulting spec."""
    found: list[Case] = []
    seen = {json.dumps(BASE, sort_keys=True)}

    def add(case: Case) -> None:
        digest = json.dumps(case.spec(), sort_keys=True, default=str)
        if digest not in seen:
            seen.add(digest)
            found.append(case)

    toggles = _toggles()
    for mutation in mutations():
        case = classify(mutation)
        add(case)
        if case.verdict == "rejected" and mutation.fits:
            for path, value in toggles:
                if path == mutation.path:
                    continue
                with_context = dataclasses.replace(mutation, context=((path, value),))
                if not broken_rules(with_context.spec()):
                    add(classify(with_context))
                    break
    return tuple(found)
