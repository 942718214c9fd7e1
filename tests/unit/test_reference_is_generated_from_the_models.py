"""docs/reference.md is generated from the API models, names every spec field, and is current."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from typing import Any

from kestrel.api import crd, reference

ROOT = pathlib.Path(__file__).parents[2]
COMMITTED = ROOT / "docs" / "reference.md"


def _leaf_paths(node: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(object path, field name) for every field of every object under node."""
    found: list[tuple[str, str]] = []
    for name, child in node.get("properties", {}).items():
        found.append((path, name))
        target = child.get("items", child) if child.get("type") == "array" else child
        suffix = "[]" if child.get("type") == "array" else ""
        found += _leaf_paths(target, f"{path}.{name}{suffix}")
    return found


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## `([^`]+)`$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_committed_reference_matches_the_generator() -> None:
    assert COMMITTED.read_text() == reference.render(), "docs/reference.md is stale: run `make reference`"


def test_cli_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kestrel.cli", "render", "reference"], capture_output=True, text=True, check=True
    )
    assert done.stdout == reference.render()


def test_every_spec_and_status_field_has_a_row_in_its_section() -> None:
    schema = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    sections = _sections(reference.render())
    for top in ("spec", "status"):
        for path, name in _leaf_paths(schema["properties"][top], top):
            assert f"| `{name}` |" in sections[path], f"{path}.{name} is missing from the reference"


def test_rules_carry_the_api_servers_message() -> None:
    sections = _sections(reference.render())
    assert "spec.engine.calibration is required when spec.engine.precision is int8" in sections["spec.engine"]
    assert "spec.target.gpu is not allowed with spec.target.environment cpu" in sections["spec.target"]


def test_defaults_and_bounds_are_shown() -> None:
    engine = _sections(reference.render())["spec.engine"]
    assert '| `format` | string | `"onnx"` |' in engine
    assert "one of `auto`, `onnx`, `openvino`, `torchscript`, `tensorrt`" in engine
    assert "| `workspaceGiB` | integer | `4` |" in engine and "≤ 256" in engine
