"""A build refuses to score an engine on an image it was calibrated on, compared by content, before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kestrel.engine import datasets, errors, export, held_out


def _dataset(root: Path, splits: dict[str, list[bytes]]) -> Path:
    for split, images in splits.items():
        folder = root / "images" / split
        folder.mkdir(parents=True)
        for index, content in enumerate(images):
            (folder / f"{split}_{index:03d}.png").write_bytes(content)
    entries = [f"{split}: images/{split}" for split in splits]
    (root / "data.yaml").write_text("\n".join(["path: .", *entries, "names:", "  0: circle"]) + "\n")
    return root / "data.yaml"


def _images(prefix: bytes, count: int) -> list[bytes]:
    return [prefix + bytes([index]) for index in range(count)]


def test_a_training_split_apart_from_val_is_accepted(tmp_path: Path) -> None:
    data_yaml = _dataset(tmp_path / "d", {"train": _images(b"train", 8), "val": _images(b"val", 4)})
    held_out.calibration(export.Calibration(data_yaml, 8, "train"), datasets.load(data_yaml))


def test_calibrating_on_the_val_split_is_refused(tmp_path: Path) -> None:
    data_yaml = _dataset(tmp_path / "d", {"train": _images(b"train", 8), "val": _images(b"val", 4)})
    with pytest.raises(
        errors.ExportError, match=r"spec.engine.calibration: 4 of the 4 images of calibration split 'val'"
    ):
        held_out.calibration(export.Calibration(data_yaml, 8, "val"), datasets.load(data_yaml))


def test_a_validation_image_copied_into_the_calibration_set_is_found_by_its_content(tmp_path: Path) -> None:
    scored = _dataset(tmp_path / "scored", {"val": _images(b"val", 4)})
    calibration = _dataset(tmp_path / "calibration", {"train": _images(b"train", 8)})
    shutil.copy(
        tmp_path / "scored" / "images" / "val" / "val_002.png", tmp_path / "calibration" / "images" / "train" / "x.png"
    )
    with pytest.raises(errors.ExportError, match=r"1 of the 9 images .* \(e.g. val_002.png\)"):
        held_out.calibration(export.Calibration(calibration, 8, "train"), datasets.load(scored))


def test_a_split_missing_from_the_data_yaml_is_an_error_not_the_val_split(tmp_path: Path) -> None:
    data_yaml = _dataset(tmp_path / "d", {"val": _images(b"val", 4)})
    with pytest.raises(errors.FetchError, match=r"split 'train' is not in the data\.yaml"):
        datasets.load(data_yaml).images("train")
