"""Detections are matched to ground truth as Ultralytics' validator does: by class, greedily by confidence."""

from __future__ import annotations

import numpy as np

from kestrel.engine import accuracy

TRUTH = np.array([[0, 10, 10, 50, 50], [1, 100, 100, 140, 140]], np.float32)


def det(x0: float, y0: float, x1: float, y1: float, score: float, cls: int) -> list[float]:
    return [x0, y0, x1, y1, score, cls]


def test_exact_boxes_are_correct_at_every_threshold() -> None:
    found = np.array([det(10, 10, 50, 50, 0.9, 0), det(100, 100, 140, 140, 0.8, 1)], np.float32)
    assert accuracy.match(found, TRUTH).all()


def test_wrong_class_is_never_correct() -> None:
    found = np.array([det(10, 10, 50, 50, 0.9, 1)], np.float32)
    assert not accuracy.match(found, TRUTH).any()


def test_a_target_is_claimed_once_by_the_most_confident_detection() -> None:
    found = np.array([det(10, 10, 50, 50, 0.9, 0), det(10, 10, 50, 50, 0.8, 0)], np.float32)
    correct = accuracy.match(found, TRUTH)
    assert correct[0].all() and not correct[1].any()


def test_a_shifted_box_passes_loose_thresholds_only() -> None:
    found = np.array([det(14, 10, 54, 50, 0.9, 0)], np.float32)  # IoU 36*40 / (2*1600 - 1440) = 0.818
    assert accuracy.match(found, TRUTH)[0].tolist() == [True] * 7 + [False] * 3
