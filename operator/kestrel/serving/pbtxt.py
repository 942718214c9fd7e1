"""Render Triton's config.pbtxt (protobuf text format) from plain Python values, deterministically.

A dict is a message, a list of dicts a repeated message field, a list of scalars a packed list, `Enum` an enum
identifier (unquoted). Keys keep their insertion order so golden files stay stable and readable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class Enum(str):
    """An enum value, rendered without quotes (TYPE_FP32, KIND_CPU)."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # protobuf text strings accept JSON-style escapes


def _render(message: Mapping[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", *_render(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if value and all(isinstance(item, Mapping) for item in value):
                for item in value:
                    lines += [f"{pad}{key} {{", *_render(item, indent + 1), f"{pad}}}"]
            else:
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(item) for item in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def render(message: Mapping[str, Any]) -> str:
    return "\n".join(_render(message, 0)) + "\n"


def parameters(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Triton's `parameters` map: every value a string (JSON for anything structured), sorted by key."""
    rendered = []
    for key in sorted(values):
        value = values[key]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rendered.append({"key": key, "value": {"string_value": text}})
    return rendered
