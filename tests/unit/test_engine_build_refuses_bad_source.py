"""`kestrel build` refuses a source whose sha256 differs from the spec's, before anything is exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kestrel.engine import command
from tests.unit.spec_support import UNMEASURED


def write_spec(tmp_path: Path, source: Path, sha256: str) -> Path:
    spec = {
        "apiVersion": "kestrel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "shapes"},
        "spec": {
            "model": {"source": {"uri": f"file://{source}", "sha256": sha256}, "imgsz": 320},
            "validation": UNMEASURED,
        },
    }
    path = tmp_path / "modeldeployment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_corrupted_download_fails_before_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "model.pt"
    source.write_bytes(b"not the checkpoint the spec names")
    termination = tmp_path / "termination-log"
    monkeypatch.setattr(command, "TERMINATION_LOG", termination)
    out = tmp_path / "out"
    code = command.run(write_spec(tmp_path, source, "ab" * 32), out)
    assert code == command.EXIT_FAILED
    message = termination.read_text()
    assert message.startswith("ChecksumMismatchError: spec.model.source.sha256")
    assert "ab" * 32 in message
    assert message in capsys.readouterr().err
    # Nothing was exported and the bad bytes were not kept.
    assert sorted(p.name for p in (out / "work").iterdir()) == []


def test_an_invalid_spec_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "TERMINATION_LOG", tmp_path / "termination-log")
    spec = tmp_path / "bad.yaml"
    spec.write_text("spec: {model: {source: {uri: 'ftp://x/y.pt'}}}\n")
    assert command.run(spec, tmp_path / "out") == command.EXIT_FAILED
    assert "spec.model.source.uri" in (tmp_path / "termination-log").read_text()
