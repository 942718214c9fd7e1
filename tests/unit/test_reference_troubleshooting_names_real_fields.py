"""docs/troubleshooting.md points only at fields, conditions and reasons the operator really has.

The page is written by hand (it explains causes), so this test keeps it honest as the API moves: every
`spec.…`/`status.…` path must exist in the CRD, every condition type in api/conditions.py, and every reason
must be a string the operator's code can report.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from kestrel.api import conditions, crd

ROOT = pathlib.Path(__file__).parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"
CODE = ROOT / "operator" / "kestrel"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _exists(path: str) -> bool:
    node = _schema()
    for part in path.split("."):
        node = node.get("items", node) if node.get("type") == "array" else node
        properties = node.get("properties", {})
        if part not in properties:
            return False
        node = properties[part]
    return True


def _code_strings() -> set[str]:
    return {s for path in CODE.rglob("*.py") for s in re.findall(r'"([A-Z][A-Za-z]+)"', path.read_text())}


def test_every_field_path_exists() -> None:
    paths = set(re.findall(r"`((?:spec|status)\.[A-Za-z0-9.]+)`", PAGE.read_text()))
    assert len(paths) > 20
    missing = sorted(p for p in paths if not _exists(p))
    assert not missing, f"docs/troubleshooting.md names fields the CRD does not have: {missing}"


def test_every_condition_and_reason_is_real() -> None:
    text = PAGE.read_text()
    types = set(re.findall(r"`([A-Z][A-Za-z]+)=(?:True|False|Unknown)`", text))
    assert types and types <= set(conditions.TYPES), types - set(conditions.TYPES)
    reasons = set(re.findall(r"reason `([A-Z][A-Za-z]+)`", text)) | set(re.findall(r"a `([A-Z][A-Za-z]+)` Event", text))
    assert {"AccuracyDrop", "ParityExceeded", "PreprocessingMismatch", "LatencyBudgetExceeded"} <= reasons
    unknown = sorted(reasons - _code_strings())
    assert not unknown, f"docs/troubleshooting.md names reasons no code reports: {unknown}"


def test_the_check_catches_a_made_up_field() -> None:
    assert _exists("status.validation.mapEngine")
    assert not _exists("status.validation.mapEngineTypo")
