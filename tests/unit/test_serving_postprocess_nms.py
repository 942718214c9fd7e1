"""NMS in the served postprocess: overlapping boxes of one class collapse, other classes and distant boxes stay."""

from __future__ import annotations

import numpy as np

from kestrel.serving.backends import postprocess

IDENTITY = np.array([1, 1, 0, 0, 640, 640], np.float32)


def raw_from(rows: list[tuple[float, float, float, float, int, float]], classes: int = 3) -> postprocess.Array:
    raw = np.zeros((4 + classes, len(rows)), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(rows):
        raw[:4, i] = [cx, cy, w, h]
        raw[4 + cls, i] = score
    return raw


def test_overlapping_boxes_of_one_class_collapse_to_the_best() -> None:
    raw = raw_from([(100, 100, 50, 50, 0, 0.9), (102, 101, 50, 50, 0, 0.8), (300, 300, 50, 50, 0, 0.7)])
    found = postprocess.detections(raw, IDENTITY, postprocess.Postprocessing(conf=0.25, iou=0.5))
    assert found[:, 4].tolist() == np.array([0.9, 0.7], np.float32).tolist()


def test_other_classes_are_not_suppressed() -> None:
    raw = raw_from([(100, 100, 50, 50, 0, 0.9), (101, 100, 50, 50, 2, 0.8)])
    found = postprocess.detections(raw, IDENTITY, postprocess.Postprocessing(conf=0.25, iou=0.5))
    assert sorted(found[:, 5].tolist()) == [0, 2]


def test_low_scores_and_max_det() -> None:
    rows = [(20.0 + 60 * i, 100.0, 40.0, 40.0, 1, 0.5) for i in range(10)] + [(600, 600, 30, 30, 1, 0.1)]
    found = postprocess.detections(raw_from(rows), IDENTITY, postprocess.Postprocessing(conf=0.25, max_det=4))
    assert len(found) == 4
    assert (found[:, 4] > 0.25).all()


def test_boxes_are_clipped_to_the_image() -> None:
    found = postprocess.detections(raw_from([(630, 10, 40, 40, 0, 0.9)]), IDENTITY, postprocess.Postprocessing())
    assert found[0, :4].tolist() == [610, 0, 640, 30]
