"""mAP50 and mAP50-95 of a runner on a validation set, through the exact pipeline Triton will serve.

Source and engine are scored the same way: decoded image -> serving preprocess -> runner -> serving postprocess ->
boxes in original pixels, matched to ground truth as Ultralytics' validator does (greedy by confidence, IoU 0.50:0.95),
and averaged with Ultralytics' own `ap_per_class`. Ultralytics' `model.val()` is not used for the gate because it
letterboxes .pt models into rectangular batches but engines into squares: the two numbers would differ by
preprocessing alone, which is the very error the gate exists to catch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.engine import datasets, offline, progress, runners
from kestrel.serving.backends import postprocess, preprocess

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# Ultralytics' val settings: a near-zero confidence floor so the precision-recall curve is complete.
SCORING = postprocess.Postprocessing(conf=0.001, iou=0.7, max_det=300)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    map50: float
    map50_95: float
    images: int
    instances: int


def match(detections: npt.NDArray[np.float32], truth: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """(n_det, 10) correctness at each IoU threshold; detections sorted by confidence, one target per detection."""
    correct = np.zeros((len(detections), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(detections) or not len(truth):
        return correct
    iou = postprocess.iou_matrix(truth[:, 1:5], detections[:, :4]) * (truth[:, :1] == detections[None, :, 5])
    claimed = np.zeros((len(truth), len(IOU_THRESHOLDS)), dtype=bool)
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS.min()).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, range(len(IOU_THRESHOLDS))] >= IOU_THRESHOLDS
        claimed[k, range(len(IOU_THRESHOLDS))] |= correct[j]
    return correct


def measure(
    runner: runners.Runner,
    dataset: datasets.Dataset,
    p: preprocess.Preprocessing,
    limit: int | None = None,
    stage: progress.Stage = "validate",
    *,
    observe: Callable[[postprocess.Array, postprocess.Array], None] | None = None,
) -> Accuracy:
    """The runner's accuracy; `observe` sees each image's raw output and letterbox transform (the drift baseline
    applies the served postprocessing to them: one engine run serves both)."""
    offline.configure()
    metrics: Any = importlib.import_module("ultralytics.utils.metrics")
    images = dataset.images("val", limit=limit)
    tps, confs, classes, targets = [], [], [], []
    for start in range(0, len(images), runner.max_batch):
        progress.report(stage, start, len(images))
        chunk = images[start : start + runner.max_batch]
        decoded = [datasets.read_rgb(path) for path in chunk]
        tensors, transforms = preprocess.batch(decoded, p)
        raw = runner(tensors)
        for image, output, transform, path in zip(decoded, raw, transforms, chunk, strict=True):
            found = postprocess.detections(output, transform, SCORING)
            if observe is not None:
                observe(output, transform)
            truth = dataset.labels(path, image.shape[1], image.shape[0])
            tps.append(match(found, truth))
            confs.append(found[:, 4])
            classes.append(found[:, 5])
            targets.append(truth[:, 0])
    progress.report(stage, len(images), len(images))
    target_cls = np.concatenate(targets)
    result = metrics.ap_per_class(
        np.concatenate(tps), np.concatenate(confs), np.concatenate(classes), target_cls, names=dataset.names
    )
    ap = result[5]  # (classes present, 10)
    return Accuracy(
        map50=round(float(ap[:, 0].mean()) if len(ap) else 0.0, 4),
        map50_95=round(float(ap.mean()) if len(ap) else 0.0, 4),
        images=len(images),
        instances=len(target_cls),
    )
