"""A fine-tune dataset that cannot be trained on is refused before any work, naming `spec.engine.prune.dataset`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kestrel.api import errors as api_errors
from kestrel.engine import finetune

FIELD = "spec.engine.prune.dataset"


def _dataset(root: Path, *, train: str | None = "images/train", classes: int = 4, images: int = 2) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        for index in range(images):
            (root / "images" / split / f"{index}.png").write_bytes(b"")
    lines = [f"path: {root}"] + ([f"train: {train}"] if train else []) + ["val: images/val", "names:"]
    lines += [f"  {index}: class{index}" for index in range(classes)]
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    return root / "data.yaml"


def test_a_usable_dataset_counts_its_training_images(tmp_path: Path) -> None:
    assert finetune.check_dataset(_dataset(tmp_path, images=3), classes=4) == 3


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: root / "missing" / "data.yaml", "not a readable YOLO data.yaml"),
        (lambda root: _dataset(root, train=None), "needs both a `train` and a `val` split"),
        (lambda root: _dataset(root, classes=3), "has 3 classes, the model 4"),
        (lambda root: _dataset(root, train="images/none"), "has no images"),
    ],
    ids=["missing-file", "no-train-split", "other-classes", "empty-train-split"],
)
def test_an_unusable_dataset_names_the_field(tmp_path: Path, make: Callable[[Path], Path], words: str) -> None:
    with pytest.raises(api_errors.SpecError) as raised:
        finetune.check_dataset(make(tmp_path), classes=4)
    assert raised.value.field == FIELD
    assert str(raised.value).startswith(f"{FIELD}: ")
    assert words in str(raised.value)


def test_not_yaml_names_the_field(tmp_path: Path) -> None:
    broken = tmp_path / "data.yaml"
    broken.write_text("names: [unclosed\n")
    with pytest.raises(api_errors.SpecError, match=f"^{FIELD}: .*not a readable YOLO data.yaml"):
        finetune.check_dataset(broken, classes=4)
