"""Status is written as a merge patch that also removes what the new status no longer has."""

from __future__ import annotations

from typing import Any

from kestrel.reconcilers import run


def apply(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(document)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = apply(result[key], value)
        else:
            result[key] = value
    return result


def test_removed_fields_become_null_and_unchanged_ones_are_left_out() -> None:
    old = {"phase": "Ready", "revision": {"current": "a", "previous": "b"}, "replicas": 2}
    new = {"phase": "Degraded", "revision": {"current": "b", "failed": "a"}, "replicas": 2}
    patch = run.merge_patch(old, new)
    assert patch == {"phase": "Degraded", "revision": {"current": "b", "previous": None, "failed": "a"}}
    assert apply(old, patch) == new


def test_lists_are_replaced_whole() -> None:
    old = {"conditions": [{"type": "Ready", "status": "False"}]}
    new = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert run.merge_patch(old, new) == new


def test_no_change_is_an_empty_patch() -> None:
    status = {"phase": "Ready", "engine": {"key": "k"}}
    assert run.merge_patch(status, status) == {}
