"""spec.engine.distill: what the builder would refuse, refused early and naming the field; and a distilled engine
is another engine (its own cache key)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from kestrel.api import errors as api_errors
from kestrel.api import keys
from kestrel.api import spec as api
from kestrel.engine import datasets, distill, finetune, held_out
from tests import invalid_specs

DISTILL = {"student": {"width": 0.5}, "epochs": 4, "dataset": "pvc://data/shapes/data.yaml"}


def _dataset(root: Path, splits: dict[str, list[bytes]], classes: int = 1) -> Path:
    for split, images in splits.items():
        folder = root / "images" / split
        folder.mkdir(parents=True)
        for index, content in enumerate(images):
            (folder / f"{split}_{index:03d}.png").write_bytes(content)
    names = [f"  {i}: class{i}" for i in range(classes)]
    entries = [f"{split}: images/{split}" for split in splits]
    (root / "data.yaml").write_text("\n".join(["path: .", *entries, "names:", *names]) + "\n")
    return root / "data.yaml"


def _images(prefix: bytes, count: int) -> list[bytes]:
    return [prefix + bytes([index]) for index in range(count)]


def test_a_distill_spec_parses_with_the_default_loss_weight() -> None:
    raw = invalid_specs.valid_spec()
    raw["engine"] = {"distill": DISTILL}
    parsed = api.parse(raw).engine.distill
    assert parsed is not None
    assert (parsed.student.width, parsed.epochs, parsed.weight) == (0.5, 4, distill.DEFAULT_WEIGHT)


def test_a_distilled_engine_has_its_own_key_and_each_student_another() -> None:
    plain = invalid_specs.valid_spec()
    distilled = copy.deepcopy(plain)
    distilled["engine"] = {"distill": DISTILL}
    narrower = copy.deepcopy(distilled)
    narrower["engine"]["distill"]["student"] = {"width": 0.3}
    found = {keys.engine_key(api.parse(s)) for s in (plain, distilled, narrower)}
    assert len(found) == 3


def test_training_images_that_are_validation_images_are_refused_naming_the_field(tmp_path: Path) -> None:
    scored = _dataset(tmp_path / "scored", {"val": _images(b"val", 4)})
    training = _dataset(tmp_path / "training", {"train": _images(b"train", 6), "val": _images(b"other", 2)})
    held_out.training(distill.FIELD, training, datasets.load(scored))  # apart: accepted
    shutil.copy(tmp_path / "scored/images/val/val_001.png", tmp_path / "training/images/train/copy.png")
    with pytest.raises(api_errors.SpecError, match=r"1 of the 7 training images .* \(e\.g\. val_001\.png\)") as caught:
        held_out.training(distill.FIELD, training, datasets.load(scored))
    assert caught.value.field == "spec.engine.distill.dataset"


def test_a_dataset_with_other_classes_than_the_source_is_refused_naming_the_field(tmp_path: Path) -> None:
    data_yaml = _dataset(tmp_path / "d", {"train": _images(b"train", 4), "val": _images(b"val", 2)}, classes=3)
    with pytest.raises(api_errors.SpecError, match="has 3 classes, the model 4") as caught:
        finetune.check_dataset(data_yaml, 4, distill.FIELD)
    assert caught.value.field == distill.FIELD
    assert finetune.check_dataset(data_yaml, 3, distill.FIELD) == 4
