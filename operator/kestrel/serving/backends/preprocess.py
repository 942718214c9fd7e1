"""Triton Python-backend model: raw image -> the engine's input tensor. Also the preprocessing the validator runs.

This file is copied verbatim into the Triton repository (as `<name>-preprocess/1/model.py`, or beside the fused model
of the Python runtime, see fused.py), and `kestrel.engine` imports the very same functions to measure accuracy and
parity: the served preprocessing cannot drift from the validated one.
It therefore imports only numpy and OpenCV (both in Triton's Python-backend image), and the Triton utilities lazily.

Parameters arrive as one JSON string, the config parameter `preprocessing`:
    {"imgsz": 320, "stride": 32, "letterbox": true, "center": true, "pad_value": 114,
     "channel_order": "RGB", "divisor": 255.0, "input_order": "RGB"}
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a raw image becomes the model's input; Ultralytics' val/predict defaults for a square export."""

    imgsz: int
    stride: int = 32
    letterbox: bool = True  # keep the aspect ratio and pad; False stretches the image to imgsz x imgsz
    center: bool = True
    pad_value: int = 114
    channel_order: str = "RGB"  # what the model expects
    divisor: float = 255.0  # divided, not multiplied by 1/255: the same float32 bits as Ultralytics' `im / 255`
    input_order: str = "RGB"  # what clients send

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def letterbox(image: Image, p: Preprocessing) -> tuple[Image, npt.NDArray[np.float32]]:
    """Resize and pad one HWC image to imgsz x imgsz; return it and [ratio_w, ratio_h, pad_left, pad_top, w, h].

    Rounding follows Ultralytics' LetterBox (auto=False, scaleup=True) exactly: a one-pixel shift of the pad moves
    every box by a pixel, which shows up in mAP50-95.
    """
    height, width = image.shape[:2]
    if not p.letterbox:
        resized = np.asarray(cv2.resize(image, (p.imgsz, p.imgsz), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
        return resized, np.array([p.imgsz / width, p.imgsz / height, 0, 0, width, height], dtype=np.float32)
    ratio = min(p.imgsz / height, p.imgsz / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    dw, dh = float(p.imgsz - new_w), float(p.imgsz - new_h)
    if p.center:
        dw, dh = dw / 2, dh / 2
    top, bottom = (round(dh - 0.1) if p.center else 0), round(dh + 0.1)
    left, right = (round(dw - 0.1) if p.center else 0), round(dw + 0.1)
    if (width, height) != (new_w, new_h):
        image = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    border = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(p.pad_value,) * 3)
    padded = np.asarray(border, dtype=np.uint8)
    return padded, np.array([ratio, ratio, left, top, width, height], dtype=np.float32)


def to_tensor(image: Image, p: Preprocessing) -> tuple[Tensor, npt.NDArray[np.float32]]:
    """One HWC uint8 image in `p.input_order` -> (CHW float32 tensor, letterbox transform)."""
    if p.input_order != p.channel_order:
        image = image[..., ::-1]
    boxed, transform = letterbox(np.ascontiguousarray(image), p)
    tensor = boxed.transpose(2, 0, 1).astype(np.float32) / np.float32(p.divisor)
    return np.ascontiguousarray(tensor), transform


def batch(images: list[Image], p: Preprocessing) -> tuple[Tensor, npt.NDArray[np.float32]]:
    tensors, transforms = zip(*(to_tensor(image, p) for image in images), strict=True)
    return np.stack(tensors), np.stack(transforms)


class TritonPythonModel:
    """IMAGE (uint8 HxWx3, batched) -> images (float32 3xSxS), letterbox (float32 6: ratio w/h, pad x/y, w/h)."""

    def initialize(self, args: dict[str, Any]) -> None:
        # Exists only inside Triton's Python backend; imported by name so this module loads anywhere.
        self._pb: Any = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args["model_config"])
        self._p = Preprocessing.from_json(config["parameters"]["preprocessing"]["string_value"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            images = self._pb.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            tensors, transforms = batch(list(images), self._p)
            responses.append(
                self._pb.InferenceResponse(
                    output_tensors=[self._pb.Tensor("images", tensors), self._pb.Tensor("letterbox", transforms)]
                )
            )
        return responses
