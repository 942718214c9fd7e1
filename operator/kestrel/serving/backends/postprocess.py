"""Triton Python-backend model: raw YOLO detect output -> boxes in original image pixels. Also the validator's NMS.

Copied verbatim into the Triton repository (as `<name>-postprocess/1/model.py`, or beside the fused model of the
Python runtime, see fused.py), and imported by `kestrel.engine` to score source and engine: the boxes the validator
counts are the boxes clients get. numpy only, no torch in Triton's image. drift.py sits beside it in the repository
(its relative import finds it there as in this package): the model exports the drift metrics of what it answers.

Parameters (config parameter `postprocessing`, JSON): {"conf": 0.25, "iou": 0.7, "max_det": 300}
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

import numpy as np
import numpy.typing as npt

from . import drift

Array = npt.NDArray[np.float32]
# Class-aware NMS in one pass: shift each class's boxes by class * offset so boxes of different classes never overlap.
_CLASS_OFFSET = 7680.0


@dataclasses.dataclass(frozen=True)
class Postprocessing:
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    max_candidates: int = 30000

    @classmethod
    def from_json(cls, text: str) -> Postprocessing:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def iou_matrix(a: Array, b: Array) -> Array:
    """IoU of every box of `a` (n x 4, x0 y0 x1 y1) with every box of `b` (m x 4): n x m. The one IoU of the project:
    NMS here, the mAP of engine/accuracy.py and the demo's matching use it."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    result: Array = inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)
    return result


def nms(boxes: Array, scores: Array, iou: float, limit: int) -> npt.NDArray[np.int64]:
    """Greedy NMS on xyxy boxes; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        order = order[1:][iou_matrix(boxes[best][None], boxes[order[1:]])[0] <= iou]
    return np.array(keep, dtype=np.int64)


def detections(raw: Array, transform: Array, p: Postprocessing) -> Array:
    """One image: raw (4 + nc, anchors) in letterboxed pixels -> (n, 6) [x0, y0, x1, y1, score, class] in the
    original image's pixels. One label per box (the best class)."""
    scores_all = raw[4:].T
    classes = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(classes)), classes]
    mask = scores > p.conf
    xywh, scores, classes = raw[:4].T[mask], scores[mask], classes[mask]
    if len(scores) > p.max_candidates:
        top = np.argsort(-scores)[: p.max_candidates]
        xywh, scores, classes = xywh[top], scores[top], classes[top]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    keep = nms(boxes + classes[:, None].astype(np.float32) * _CLASS_OFFSET, scores, p.iou, p.max_det)
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    ratio_w, ratio_h, pad_x, pad_y, width, height = transform[:6]
    boxes = (boxes - np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)) / np.array(
        [ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32
    )
    boxes = np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float32))
    out: Array = np.concatenate([boxes, scores[:, None], classes[:, None].astype(np.float32)], axis=1, dtype=np.float32)
    return out


def padded(per_image: list[Array]) -> Array:
    """One request's detections as one tensor (images x rows x 6): a batched output needs one shape, so shorter
    lists are padded with rows of -1 (class -1 means "no detection")."""
    rows = max((len(d) for d in per_image), default=0)
    out: Array = np.full((len(per_image), rows, 6), -1, dtype=np.float32)
    for i, d in enumerate(per_image):
        out[i, : len(d)] = d
    return out


class TritonPythonModel:
    """output0 (float32 4+nc x anchors) + letterbox (float32 6) -> DETECTIONS (float32 n x 6), batched."""

    def initialize(self, args: dict[str, Any]) -> None:
        # Exists only inside Triton's Python backend; imported by name so this module loads anywhere.
        self._pb: Any = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args["model_config"])
        self._p = Postprocessing.from_json(config["parameters"]["postprocessing"]["string_value"])
        # Clients call the ensemble, named as this model without its suffix: the metrics carry the name they know.
        self._monitor = drift.from_triton(self._pb, args, config, args["model_name"].removesuffix("-postprocess"))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses, answered = [], []
        for request in requests:
            raw = self._pb.get_input_tensor_by_name(request, "output0").as_numpy().astype(np.float32)
            transforms = self._pb.get_input_tensor_by_name(request, "letterbox").as_numpy()
            per_image = [detections(r, t, self._p) for r, t in zip(raw, transforms, strict=True)]
            answered += per_image
            output = padded(per_image)
            responses.append(self._pb.InferenceResponse(output_tensors=[self._pb.Tensor("DETECTIONS", output)]))
        if self._monitor is not None:
            self._monitor.observe(answered)
        return responses
