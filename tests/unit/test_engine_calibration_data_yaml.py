"""Ultralytics gets a data.yaml whose root is absolute: a claim's relative data.yaml calibrates on its own images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kestrel.engine import errors, export


def _dataset(root: Path, path_line: str | None) -> Path:
    (root / "images" / "val").mkdir(parents=True)
    (root / "images" / "val" / "a.png").write_bytes(b"")
    lines = ([path_line] if path_line else []) + ["train: images/val", "val: images/val", "names:", "  0: circle"]
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    return root / "data.yaml"


@pytest.mark.parametrize("path_line", ["path: .", None, "path: ./"])
def test_relative_root_is_resolved_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_line: str | None
) -> None:
    data_yaml = _dataset(tmp_path / "claim" / "shapes", path_line)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # Ultralytics would resolve "." here
    written = export.absolute_data_yaml(data_yaml, tmp_path)
    raw = yaml.safe_load(written.read_text())
    assert raw["path"] == str((tmp_path / "claim" / "shapes").resolve())
    assert (raw["train"], raw["val"], raw["names"]) == ("images/val", "images/val", {0: "circle"})


def test_the_calibration_copy_points_ultralytics_val_entry_at_the_calibration_split(tmp_path: Path) -> None:
    """Ultralytics' INT8 calibration reads the data.yaml's val entry: the copy it gets names the calibration split
    there, so it never calibrates on the images the gate scores."""
    root = tmp_path / "data"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: circle\n")
    raw = yaml.safe_load(export.absolute_data_yaml(root / "data.yaml", tmp_path, val_split="train").read_text())
    assert (raw["train"], raw["val"]) == ("images/train", "images/train")
    with pytest.raises(errors.FetchError, match=r"split 'calib' is not in the data\.yaml"):
        export.absolute_data_yaml(root / "data.yaml", tmp_path, val_split="calib")


def test_absolute_root_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "data"
    data_yaml = _dataset(root, f"path: {root}")
    raw = yaml.safe_load(export.absolute_data_yaml(data_yaml, tmp_path / "data").read_text())
    assert raw["path"] == str(root.resolve())
