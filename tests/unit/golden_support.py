"""Golden files, one way: rendered text is compared with a file under tests/unit/golden/, and
`KESTREL_UPDATE_GOLDEN=1` rewrites the files (and removes the ones nothing renders) for a reviewer to read as a diff.
"""

from __future__ import annotations

import difflib
import os
import pathlib
from collections.abc import Callable, Iterable

import pytest

UPDATE = os.environ.get("KESTREL_UPDATE_GOLDEN") == "1"


def check(path: pathlib.Path, text: str, *, same: Callable[[str], bool] | None = None) -> None:
    """`text` must be what `path` holds (or, with `same`, what `same` accepts of it); with UPDATE, write it first."""
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with KESTREL_UPDATE_GOLDEN=1 and review the new file"
    expected = path.read_text()
    if same(expected) if same is not None else expected == text:
        return
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "golden", "rendered", lineterm=""))
    pytest.fail(f"{path} differs from what is rendered now (regenerate with KESTREL_UPDATE_GOLDEN=1):\n{diff}")


def stale(folder: pathlib.Path, pattern: str, expected: Iterable[pathlib.Path]) -> list[str]:
    """The files under `folder` matching `pattern` that nothing renders any more (with UPDATE: removed first)."""
    left = set(folder.rglob(pattern)) - set(expected)
    if UPDATE:
        for path in left:
            path.unlink()
        left = set()
    return sorted(str(path.relative_to(folder)) for path in left)
