"""The subset of CEL that the CRD's `x-kubernetes-validations` rules use, evaluated in Python.

The schema-driven mutations (tests/faults/mutations.py) predict from the CRD alone whether the API server admits a
spec, and which field its refusal names; the rules are read from the CRD, not from Kestrel's pydantic models, so a
rule that says one thing in the models and another in the CRD is caught on the test bed. Not a general CEL: the
grammar below is what the rules use (logic, comparison, `in`, arithmetic, field selection, indexing, list literals,
`has()`, `size()`, `duration()`, the `all` macro, and the string and list methods `startsWith`, `matches`,
`isSorted`, `indexOf`, `lastIndexOf`); anything else raises `CelError`, so a new rule is never silently misread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<string>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<op>\|\||&&|==|!=|<=|>=|[!<>+\-*/%.,()\[\]?:]))"
)
Node = tuple[Any, ...]


class CelError(ValueError):
    """A rule outside the supported subset."""


class EvaluationError(CelError):
    """A rule that failed to evaluate on a value (a missing field, a wrong type): the API server refuses it."""


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise CelError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise CelError("unexpected end of rule")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise CelError(f"expected {expected!r}, found {token[1]!r}")
        self.at += 1
        return token

    def parse(self) -> Node:
        node = self.ternary()
        if self.at != len(self.tokens):
            raise CelError(f"unexpected {self.peek()!r}")
        return node

    def ternary(self) -> Node:
        condition = self.binary(0)
        if self.peek() == "?":
            self.take()
            then = self.ternary()
            self.take(":")
            return ("?", condition, then, self.ternary())
        return condition

    LEVELS = (("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek() in self.LEVELS[level]:
            operator = self.take()[1]
            node = (operator, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        if self.peek() in ("!", "-"):
            operator = self.take()[1]
            return ("neg" if operator == "-" else "!", self.unary())
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                node = ("index", node, self.ternary())
                self.take("]")
                continue
            name = self.take()[1]
            node = ("call", name, node, self.arguments(")")) if self.peek() == "(" else ("field", node, name)
        return node

    def arguments(self, closing: str) -> list[Node]:
        self.take()
        found: list[Node] = []
        while self.peek() != closing:
            found.append(self.ternary())
            if self.peek() == ",":
                self.take()
        self.take(closing)
        return found

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return ("literal", float(text) if "." in text else int(text))
        if kind == "string":
            return ("literal", text[1:-1].encode().decode("unicode_escape"))
        if text == "(":
            node = self.ternary()
            self.take(")")
            return node
        if text == "[":
            self.at -= 1
            return ("list", self.arguments("]"))
        if kind == "name":
            if text in ("true", "false"):
                return ("literal", text == "true")
            if self.peek() == "(":
                return ("call", text, None, self.arguments(")"))
            return ("name", text)
        raise CelError(f"unexpected {text!r}")


DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A Go duration (`1h30m`, `2160h`, `500ms`) in seconds."""
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise EvaluationError(f"not a duration: {text!r}")
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)


def _method(name: str, target: Any, arguments: list[Any]) -> Any:
    methods: dict[str, Callable[[], Any]] = {
        "startsWith": lambda: target.startswith(arguments[0]),
        "endsWith": lambda: target.endswith(arguments[0]),
        "matches": lambda: re.search(arguments[0], target) is not None,
        "isSorted": lambda: list(target) == sorted(target),
        "indexOf": lambda: target.index(arguments[0]) if arguments[0] in target else -1,
        "lastIndexOf": lambda: len(target) - 1 - target[::-1].index(arguments[0]) if arguments[0] in target else -1,
        "size": lambda: len(target),
    }
    if name not in methods:
        raise CelError(f"unsupported method {name}()")
    try:
        return methods[name]()
    except (AttributeError, TypeError) as error:
        raise EvaluationError(f"{name}() on {target!r}: {error}") from error


def _evaluate(node: Node, scope: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "literal":
        return node[1]
    if kind == "name":
        if node[1] not in scope:
            raise CelError(f"unknown name {node[1]}")
        return scope[node[1]]
    if kind == "list":
        return [_evaluate(item, scope) for item in node[1]]
    if kind == "field":
        target = _evaluate(node[1], scope)
        if not isinstance(target, dict) or node[2] not in target:
            raise EvaluationError(f"no such key: {node[2]}")
        return target[node[2]]
    if kind == "index":
        target, index = _evaluate(node[1], scope), _evaluate(node[2], scope)
        try:
            return target[index]
        except (IndexError, KeyError, TypeError) as error:
            raise EvaluationError(f"index {index!r}: {error}") from error
    if kind == "!":
        return not _truth(_evaluate(node[1], scope))
    if kind == "neg":
        return -_evaluate(node[1], scope)
    if kind == "?":
        return _evaluate(node[2] if _truth(_evaluate(node[1], scope)) else node[3], scope)
    if kind == "||":
        return _truth(_evaluate(node[1], scope)) or _truth(_evaluate(node[2], scope))
    if kind == "&&":
        return _truth(_evaluate(node[1], scope)) and _truth(_evaluate(node[2], scope))
    if kind == "call":
        return _call(node, scope)
    return _operator(kind, _evaluate(node[1], scope), _evaluate(node[2], scope))


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{value!r} is not a bool")
    return value


def _operator(kind: str, left: Any, right: Any) -> Any:
    operators: dict[str, Callable[[Any, Any], Any]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "in": lambda a, b: a in b,
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a // b if isinstance(a, int) and isinstance(b, int) else a / b,
        "%": lambda a, b: a % b,
    }
    try:
        return operators[kind](left, right)
    except (TypeError, ZeroDivisionError) as error:
        raise EvaluationError(f"{left!r} {kind} {right!r}: {error}") from error


def _call(node: Node, scope: dict[str, Any]) -> Any:
    _, name, target, arguments = node
    if target is None and name == "has":
        selected = arguments[0]
        if selected[0] != "field":
            raise CelError("has() takes a field selection")
        parent = _evaluate(selected[1], scope)
        return isinstance(parent, dict) and selected[2] in parent
    if target is not None and name == "all":
        items = _evaluate(target, scope)
        variable = arguments[0]
        if variable[0] != "name":
            raise CelError("all() takes a variable name first")
        return all(_truth(_evaluate(arguments[1], {**scope, variable[1]: item})) for item in items)
    values = [_evaluate(argument, scope) for argument in arguments]
    if target is None:
        if name == "size":
            return len(values[0])
        if name == "duration":
            return duration(values[0])
        raise CelError(f"unsupported function {name}()")
    return _method(name, _evaluate(target, scope), values)


def compile_rule(rule: str) -> Node:
    return _Parser(rule).parse()


def holds(rule: str | Node, value: Any) -> bool:
    """Whether `rule` holds for `self` = `value`; a rule that fails to evaluate does not hold (the API server
    refuses the object then too)."""
    tree = compile_rule(rule) if isinstance(rule, str) else rule
    try:
        return _truth(_evaluate(tree, {"self": value}))
    except EvaluationError:
        return False
