"""The numpy resize is cv2.resize(INTER_LINEAR) on uint8 to the bit: up, down, integer and odd ratios, tiny images,
saturated pixels, grayscale and strided views. OpenCV is a test dependency only; the served code never imports it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kestrel.serving.backends import preprocess

# (source height, width, target height, width). OpenCV has its own path for exact halving (INTER_AREA), clamps
# columns but not rows at the borders, and rounds its weights half to even; the numpy code shortcuts odd and even
# integer downscales: each has a case here.
SIZES = [
    (480, 640, 240, 320),  # exact 2x down, OpenCV's area path
    (960, 1280, 320, 427),  # 3x down in height, not quite in width
    (1080, 1920, 360, 640),  # exact 3x down
    (1000, 1000, 250, 250),  # exact 4x down
    (1000, 1500, 200, 300),  # exact 5x down
    (1080, 1920, 180, 320),  # exact 6x down
    (720, 1280, 360, 641),  # 2x down in height only
    (640, 480, 640, 480),  # identity
    (240, 320, 480, 640),  # exact 2x up
    (173, 301, 184, 320),  # small non-integer up
    (480, 640, 360, 480),  # 3/4
    (999, 999, 333, 333),
    (300, 300, 900, 900),
    (1, 1, 320, 320),
    (1, 1, 1, 1),
    (2, 2, 1, 1),
    (3, 3, 1, 1),
    (1, 5, 64, 320),
    (3, 2, 320, 213),
    (7, 9, 320, 320),
    (1000, 1, 1, 1),
    (1, 1000, 640, 1),
    (1000, 3, 640, 2),
    (5, 7, 10, 14),
    (10, 14, 5, 7),
]
SIZES += [(int(a), int(b), int(c), int(d)) for a, b, c, d in np.random.default_rng(7).integers(1, 1001, (40, 4))]


@pytest.mark.parametrize(("source_h", "source_w", "height", "width"), SIZES)
def test_resize_equals_opencv(source_h: int, source_w: int, height: int, width: int) -> None:
    rng = np.random.default_rng(source_h * 1009 + source_w)
    noise = rng.integers(0, 256, (source_h, source_w, 3), dtype=np.uint8)
    white = np.full((source_h, source_w, 3), 255, np.uint8)  # the largest sums: no overflow, no wrap
    for image in (noise, white):
        expected = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        resized = preprocess.resize_linear(image, width, height)
        assert resized.dtype == np.uint8
        assert resized.shape == expected.shape
        assert np.array_equal(resized, expected)


def test_grayscale_and_strided_views_resize_like_their_contiguous_copies() -> None:
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for view in (image[..., 0], image[..., ::-1], image[::2, ::3], image[:, 5:40]):
        expected = cv2.resize(np.ascontiguousarray(view), (91, 17), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(preprocess.resize_linear(view, 91, 17), expected)


def test_resizing_to_the_same_size_copies() -> None:
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    resized = preprocess.resize_linear(image, 30, 20)
    assert np.array_equal(resized, image) and not np.shares_memory(resized, image)
