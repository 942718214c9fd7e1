"""Read a YOLO data.yaml: class names, the images of a split and their ground-truth boxes.

Kept apart from Ultralytics' loader on purpose: calibration and scoring read images exactly as a client sends them
(decoded file, no augmentation, no rect batching), then apply the serving preprocessing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from kestrel.engine import errors

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    data_yaml: Path
    names: dict[int, str]
    root: Path

    def images(self, split: str = "val", limit: int | None = None) -> list[Path]:
        raw = yaml.safe_load(self.data_yaml.read_text())
        entries = raw.get(split)
        if entries is None:  # never another split instead: calibration and scoring must not meet by accident
            raise errors.FetchError(f"{self.data_yaml}: split {split!r} is not in the data.yaml")
        found: list[Path] = []
        for entry in entries if isinstance(entries, list) else [entries]:
            path = Path(entry) if Path(entry).is_absolute() else self.root / entry
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            elif path.suffix == ".txt":
                found += [self.root / line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not found:
            raise errors.FetchError(f"{self.data_yaml}: split {split!r} has no images")
        return found[:limit] if limit else found

    def labels(self, image: Path, width: int, height: int) -> npt.NDArray[np.float32]:
        """Ground truth of one image as (n, 5) [class, x0, y0, x1, y1] in pixels; Ultralytics' images->labels rule."""
        parts = list(image.parts)
        index = len(parts) - 1 - parts[::-1].index("images")
        label = Path(*parts[:index], "labels", *parts[index + 1 :]).with_suffix(".txt")
        if not label.exists():
            return np.zeros((0, 5), np.float32)
        rows = np.loadtxt(label, ndmin=2, dtype=np.float32).reshape(-1, 5)
        cls, cx, cy, w, h = rows.T
        return np.stack(
            [cls, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1
        )


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Decode an image file as clients send it: HWC, RGB, uint8 (OpenCV decodes BGR)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise errors.FetchError(f"{path}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1], dtype=np.uint8)


def load(data_yaml: Path) -> Dataset:
    if not data_yaml.is_file():
        raise errors.FetchError(f"{data_yaml}: no such data.yaml")
    raw = yaml.safe_load(data_yaml.read_text())
    names = raw["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    root = Path(raw.get("path") or data_yaml.parent)
    return Dataset(data_yaml, names, root if root.is_absolute() else data_yaml.parent / root)
