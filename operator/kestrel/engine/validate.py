"""Output parity between source and engine, and the preprocessing fingerprint of source versus serving.

Parity feeds one preprocessed batch to both and compares the raw outputs (before NMS, where a precision loss is
visible undiluted). The fingerprint answers "will the server feed the engine what the model was trained on?": it
records the preprocessing parameters and the bytes each side produces for one probe image. The source side is
computed with Ultralytics' own LetterBox and channel flip (what `model.predict` and `val` do), the serving side with
the code the Triton preprocess model runs; any difference in parameters or probe output is a mismatch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.engine import offline, runners
from kestrel.serving.backends import preprocess


@dataclasses.dataclass(frozen=True)
class Parity:
    max_abs: float
    mean_abs: float
    max_abs_scores: float  # class scores only: box coordinates are in pixels and dominate max_abs
    images: int


def parity(source: runners.Runner, engine: runners.Runner, batch: npt.NDArray[np.float32]) -> Parity:
    expected, actual = source(batch), engine(batch)
    if expected.shape != actual.shape:
        return Parity(float("inf"), float("inf"), float("inf"), len(batch))
    delta = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    return Parity(
        max_abs=round(float(delta.max()), 6),
        mean_abs=round(float(delta.mean()), 6),
        max_abs_scores=round(float(delta[:, 4:].max()), 6),
        images=len(batch),
    )


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    imgsz: int
    stride: int
    resize: str  # "letterbox-center" | "letterbox-topleft" | "stretch"
    pad_value: int
    channel_order: str
    normalization: str
    layout: str
    probe_sha256: str

    def differences(self, other: Fingerprint) -> list[str]:
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{key}: {mine[key]} != {theirs[key]}" for key in mine if mine[key] != theirs[key]]


def probe_image() -> npt.NDArray[np.uint8]:
    """A fixed non-square RGB image with distinct channels: catches letterbox, resize and channel-order changes."""
    y, x = np.mgrid[0:173, 0:301]
    image = np.stack([(x * 255) // 300, (y * 255) // 172, ((x + y) * 7) % 256], axis=-1)
    return np.ascontiguousarray(image, dtype=np.uint8)


def _sha(tensor: npt.NDArray[np.float32]) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensor, dtype=np.float32).tobytes()).hexdigest()


def source_fingerprint(imgsz: int, stride: int) -> Fingerprint:
    """What Ultralytics does to an RGB image before a square, static-shape model (its predictor's preprocess)."""
    offline.configure()
    augment: Any = importlib.import_module("ultralytics.data.augment")
    bgr = probe_image()[..., ::-1]  # Ultralytics works on OpenCV's BGR and flips to RGB at the end
    boxed = augment.LetterBox(new_shape=(imgsz, imgsz), auto=False, stride=stride)(image=np.ascontiguousarray(bgr))
    tensor = boxed[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return Fingerprint(imgsz, stride, "letterbox-center", 114, "RGB", "x/255", "NCHW", _sha(tensor))


def serving_fingerprint(p: preprocess.Preprocessing) -> Fingerprint:
    tensor, _ = preprocess.to_tensor(probe_image(), p)
    resize = ("letterbox-center" if p.center else "letterbox-topleft") if p.letterbox else "stretch"
    normalization = f"x/{p.divisor:g}"
    # The probe is fed as RGB, the clients' contract: a wrong input_order shows up in probe_sha256.
    return Fingerprint(p.imgsz, p.stride, resize, p.pad_value, p.channel_order, normalization, "NCHW", _sha(tensor))
