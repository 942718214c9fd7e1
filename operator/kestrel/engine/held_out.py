"""A model is never scored on an image it was calibrated or trained on: such a score looks better than it is.

Images are compared by content (a copy under another name is the same image): every image of the calibration split,
or of a fine-tune's or a student's training split, against every image of the validation dataset's val split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kestrel.api import errors as api_errors
from kestrel.engine import datasets, errors, export


def calibration(calibrating: export.Calibration | None, dataset: datasets.Dataset | None) -> None:
    """Refuse to score an engine on an image it was calibrated on."""
    if calibrating is None or dataset is None:
        return
    images = datasets.load(calibrating.data_yaml).images(calibrating.split)
    shared, example = _shared(images, dataset)
    if shared:
        raise errors.ExportError(
            f"spec.engine.calibration: {shared} of the {len(images)} images of calibration split "
            f"{calibrating.split!r} are validation images too (e.g. {example}): an engine scored on "
            "images it was calibrated on looks better than it is. Calibrate on a split that holds none of the val "
            "images (spec.engine.calibration.split, train by default) or on another dataset"
        )


def training(field: str, data_yaml: Path, dataset: datasets.Dataset | None) -> None:
    """Refuse to score a model on an image it was trained on (the train split of `field`'s data.yaml)."""
    if dataset is None:
        return
    images = datasets.load(data_yaml).images("train")
    shared, example = _shared(images, dataset)
    if shared:
        raise api_errors.SpecError(
            field,
            f"{shared} of the {len(images)} training images of {data_yaml} are validation images too (e.g. "
            f"{example}): a model scored on images it was trained on looks better than it is. Train on a split that "
            "holds none of spec.validation.dataset's val images",
        )


def _shared(images: list[Path], dataset: datasets.Dataset) -> tuple[int, str]:
    """How many of `images` are among the dataset's val images (by content), and the name of one of them."""
    mine = {_digest(p) for p in images}
    scoring = {_digest(p): p for p in dataset.images("val")}
    shared = sorted((scoring[d] for d in mine & set(scoring)), key=str)
    return len(shared), shared[0].name if shared else ""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
