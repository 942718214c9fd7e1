"""Runs the test bed's pinned helm (built from Go modules by `make testbed`) without a control plane."""

from __future__ import annotations

import pathlib
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from testbed import components

ROOT = pathlib.Path(__file__).parents[2]
CHART = ROOT / "charts" / "kestrel"


def helm_binary() -> pathlib.Path:
    binary = components.HELM_CLI.binary("helm")
    if not binary.is_file():
        pytest.skip(f"helm is not built yet ({binary}): run `make testbed`")
    return binary


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=False)


def template(
    *sets: str,
    namespace: str = "kestrel-system",
    release: str = "kestrel",
    files: Mapping[str, pathlib.Path] | None = None,
    values: Mapping[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`helm template` with these `--set`, `--set-file` and `--values` values (`values` for what `--set` spells
    badly: nested objects such as an affinity)."""
    from_files = [f"--set-file={key}={path}" for key, path in (files or {}).items()]
    with tempfile.TemporaryDirectory() as scratch:
        values_file = pathlib.Path(scratch) / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values or {})))
        return helm(
            "template",
            release,
            str(CHART),
            f"--namespace={namespace}",
            f"--values={values_file}",
            *(f"--set={s}" for s in sets),
            *from_files,
        )


def render(
    *sets: str,
    namespace: str = "kestrel-system",
    release: str = "kestrel",
    files: Mapping[str, pathlib.Path] | None = None,
    values: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The chart's objects for these values; a refused value fails with helm's message."""
    done = template(*sets, namespace=namespace, release=release, files=files, values=values)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refused(*sets: str, values: Mapping[str, Any] | None = None) -> str:
    """Helm's error for values the chart must refuse."""
    done = template(*sets, values=values)
    assert done.returncode != 0, f"helm accepted {sets} {values or ''}"
    return done.stderr


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} objects"
    return matches[0]
