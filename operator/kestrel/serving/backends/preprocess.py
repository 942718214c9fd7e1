"""Triton Python-backend model: raw image -> the engine's input tensor. Also the preprocessing the validator runs.

This file is copied verbatim into the Triton repository (as `<name>-preprocess/1/model.py`, or beside the fused model
of the Python runtime, see fused.py), and `kestrel.engine` imports the very same functions to measure accuracy and
parity: the served preprocessing cannot drift from the validated one.
It therefore imports only numpy and the standard library, and the Triton utilities lazily: stock Triton images have
no OpenCV, so the resize is OpenCV's uint8 INTER_LINEAR rebuilt in numpy, to the bit (Ultralytics resizes with it).

Parameters arrive as one JSON string, the config parameter `preprocessing`:
    {"imgsz": 320, "stride": 32, "letterbox": true, "center": true, "pad_value": 114,
     "channel_order": "RGB", "divisor": 255.0, "input_order": "RGB"}
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, TypeVar

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


# OpenCV's fixed point for 8-bit linear resizing (imgproc/src/resize.cpp): weights are float coefficients times 2048,
# rounded; rows are first mixed across columns exactly (int32), then across rows with the truncations below.
_COEF_SCALE = 2048
_HALF = _COEF_SCALE // 2
_Index = npt.NDArray[np.intp]
_Weights = npt.NDArray[np.int32]
_Taps = tuple[_Index, _Index, _Weights, _Weights]  # per output column or row: first, second, their weights
_Pixel = TypeVar("_Pixel", np.uint8, np.uint16)


def _taps(source: int, target: int, *, clamp: bool) -> _Taps:
    """Per output column (or row): the two source indices and their weights, as OpenCV computes them.

    The source coordinate is (d + 0.5) * scale - 0.5 in double, cast to float, with OpenCV's scale (the inverse of
    its inverse scale). Columns clamp a coordinate outside the image to the edge pixel at full weight; rows keep
    the fractional weight and read the edge row twice, which the vertical truncations can tell apart.
    """
    scale = 1.0 / (target / source)
    position = ((np.arange(target, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    floor = np.floor(position)
    fraction = position - floor
    start = floor.astype(np.intp)
    if clamp:
        fraction[(start < 0) | (start >= source - 1)] = 0
    w_first = np.rint((np.float32(1) - fraction) * np.float32(_COEF_SCALE)).astype(np.int32)
    w_second = np.rint(fraction * np.float32(_COEF_SCALE)).astype(np.int32)  # half to even, as cvRound
    first = np.clip(start, 0, source - 1)
    # A pixel of weight 0 adds nothing: naming the first again keeps the gathers few and regular.
    second = np.where(w_second > 0, np.clip(start + 1, 0, source - 1), first)
    return first, second, w_first, w_second


def resize_linear(image: Image, width: int, height: int) -> Image:
    """cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) of a uint8 HxW or HxWxC image, to the bit.

    Checked for 1, 3 and 4 channels; OpenCV halves 2-channel images on a path of its own, one level off at times.
    """
    if image.ndim == 2:
        return resize_linear(image[..., None], width, height)[..., 0]
    source_h, source_w, channels = image.shape
    if (source_w, source_h) == (width, height):
        return image.copy()
    x0, x1, a0, a1 = _taps(source_w, width, clamp=True)
    y0, y1, b0, b1 = _taps(source_h, height, clamp=False)
    # Rows as flat runs of channel values, so that each gather and product runs long: numpy is slow on 3-wide loops.
    flat = image.reshape(source_h, source_w * channels)
    out: npt.NDArray[np.integer[Any]]
    if (a0 == _COEF_SCALE).all() and (b0 == _COEF_SCALE).all() and not a1.any() and not b1.any():
        # One source pixel each (odd integer downscales): _mixed's steps give 2048p >> 4 = 128p, 128p * 2048 >> 16
        # = 4p, (4p + 2) >> 2 = p. The pixel itself, without the arithmetic.
        out = _columns(flat.take(y0, axis=0), x0, channels)
    elif (a0 == _HALF).all() and (a1 == _HALF).all() and (b0 == _HALF).all() and (b1 == _HALF).all():
        # The rounded mean of a 2x2 block (even integer downscales; OpenCV's INTER_AREA path when halving): _mixed's
        # steps give 1024(a + b) >> 4 = 64(a + b), 64(a + b) * 1024 >> 16 = a + b, so (a + b + c + d + 2) >> 2.
        pairs = flat.take(y0, axis=0).astype(np.uint16) + flat.take(y1, axis=0)
        sums = _columns(pairs, x0, channels) + _columns(pairs, x1, channels)
        sums += 2
        out = sums >> 2
    else:
        out = _mixed(flat, (x0, x1, a0, a1), (y0, y1, b0, b1), channels)
    resized: Image = out.astype(np.uint8).reshape(height, width, channels)
    return resized


def _mixed(flat: Image, columns: _Taps, rows: _Taps, channels: int) -> npt.NDArray[np.int32]:
    """OpenCV's two passes: columns mixed exactly in int32 (at most 255 * 2048), then rows in its 16-bit steps."""
    x0, x1, a0, a1 = columns
    y0, y1, b0, b1 = rows
    # Only the rows the output reads go through the horizontal pass (a downscale skips the others).
    used, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    if len(used) < len(flat):
        flat = flat[used]
        y0, y1 = inverse[: len(y0)], inverse[len(y0) :]
    mixed: npt.NDArray[np.int32] = np.multiply(_columns(flat, x0, channels), np.repeat(a0, channels))
    if a1.any():
        mixed += np.multiply(_columns(flat, x1, channels), np.repeat(a1, channels))
    # The 8-bit vertical pass drops 4 bits of each mixed row, keeps the high 16 bits of each product, and rounds
    # the sum's last 2 bits away (SIMD and scalar code alike): the same integer steps, to the bit.
    mixed >>= 4
    out = mixed.take(y0, axis=0) * b0[:, None]
    out >>= 16
    if b1.any():
        lower = mixed.take(y1, axis=0) * b1[:, None]
        lower >>= 16
        out += lower
    out += 2
    out >>= 2
    return out


def _columns(flat: npt.NDArray[_Pixel], x: _Index, channels: int) -> npt.NDArray[_Pixel]:
    """Each flat row's pixels at columns x, every channel."""
    return flat.take((x[:, None] * channels + np.arange(channels)).ravel(), axis=1)


def letterbox(image: Image, p: Preprocessing) -> tuple[Image, npt.NDArray[np.float32]]:
    """Resize and pad one HWC image to imgsz x imgsz; return it and [ratio_w, ratio_h, pad_left, pad_top, w, h].

    Rounding follows Ultralytics' LetterBox (auto=False, scaleup=True) exactly: a one-pixel shift of the pad moves
    every box by a pixel, which shows up in mAP50-95.
    """
    height, width = image.shape[:2]
    if not p.letterbox:
        resized = resize_linear(image, p.imgsz, p.imgsz)
        return resized, np.array([p.imgsz / width, p.imgsz / height, 0, 0, width, height], dtype=np.float32)
    ratio = min(p.imgsz / height, p.imgsz / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    dw, dh = float(p.imgsz - new_w), float(p.imgsz - new_h)
    if p.center:
        dw, dh = dw / 2, dh / 2
    top, bottom = (round(dh - 0.1) if p.center else 0), round(dh + 0.1)
    left, right = (round(dw - 0.1) if p.center else 0), round(dw + 0.1)
    if (width, height) != (new_w, new_h):
        image = resize_linear(image, new_w, new_h)
    padded = np.full((top + new_h + bottom, left + new_w + right, *image.shape[2:]), p.pad_value, dtype=np.uint8)
    padded[top : top + new_h, left : left + new_w] = image
    return padded, np.array([ratio, ratio, left, top, width, height], dtype=np.float32)


def to_tensor(image: Image, p: Preprocessing) -> tuple[Tensor, npt.NDArray[np.float32]]:
    """One HWC uint8 image in `p.input_order` -> (CHW float32 tensor, letterbox transform)."""
    if p.input_order != p.channel_order:
        image = image[..., ::-1]
    boxed, transform = letterbox(np.ascontiguousarray(image), p)
    tensor = np.empty((boxed.shape[2], *boxed.shape[:2]), dtype=np.float32)
    # One pass, and the same bits as `astype(float32) / float32(divisor)`: each uint8 is exact in float32.
    np.divide(boxed.transpose(2, 0, 1), np.float32(p.divisor), out=tensor, dtype=np.float32)
    return tensor, transform


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
