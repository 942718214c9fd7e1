"""The served preprocessing is Ultralytics' to the bit, and its letterbox transform inverts exactly."""

from __future__ import annotations

import numpy as np
import pytest

from kestrel.engine import offline
from kestrel.serving.backends import postprocess, preprocess

# Camera-like shapes, the square and the tiny, then random ones (fixed seed): up- and downscales at ratios that are
# rarely integers, so the resize's rounding is exercised, not just its easy cases.
SHAPES = [(240, 320), (320, 240), (173, 301), (640, 480), (32, 32), (480, 640), (720, 1280), (1, 1), (3, 1000)]
SHAPES += [(int(h), int(w)) for h, w in np.random.default_rng(2024).integers(1, 1001, (32, 2))]
# (letterbox, center): aspect kept and centred, kept and top-left, stretched (centre or not, no pad either way).
MODES = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize(("letterbox", "center"), MODES)
@pytest.mark.parametrize("imgsz", [320, 640])
@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_letterbox_equals_ultralytics(height: int, width: int, imgsz: int, letterbox: bool, center: bool) -> None:
    offline.configure()
    from ultralytics.data.augment import LetterBox  # noqa: PLC0415 - after offline.configure()

    rgb = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    p = preprocess.Preprocessing(imgsz=imgsz, letterbox=letterbox, center=center)
    mine, _ = preprocess.to_tensor(rgb, p)
    # Ultralytics' predictor: LetterBox on BGR, flip to RGB, CHW, float / 255.
    ultralytics = LetterBox(new_shape=(imgsz, imgsz), auto=False, scale_fill=not letterbox, center=center, stride=32)
    boxed = ultralytics(image=np.ascontiguousarray(rgb[..., ::-1]))
    assert isinstance(boxed, np.ndarray)  # an image alone, without labels, comes back as an image
    theirs = boxed[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    assert mine.dtype == np.float32
    assert mine.flags.c_contiguous
    assert np.array_equal(mine, theirs)


def test_bgr_clients_are_flipped_to_the_models_order() -> None:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    bgr_client = preprocess.Preprocessing(imgsz=64, input_order="BGR")
    tensor, _ = preprocess.to_tensor(np.ascontiguousarray(rgb[..., ::-1]), bgr_client)
    assert tensor[0].mean() == pytest.approx(200 / 255) and tensor[2].max() == 0


def test_box_in_letterboxed_pixels_maps_back_to_the_original_image() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    _, transform = preprocess.letterbox(image, preprocess.Preprocessing(imgsz=640))
    ratio, pad_y = transform[0], transform[3]
    assert ratio == 2.0 and pad_y == 80  # 320x240 -> 640x480, centred in 640x640
    # One confident "square" at (100, 50)-(140, 90) in the original image, in raw model coordinates.
    raw = np.zeros((8, 10), np.float32)
    cx, cy, w, h = 120 * 2, 70 * 2 + 80, 40 * 2, 40 * 2
    raw[:4, 3] = [cx, cy, w, h]
    raw[4 + 1, 3] = 0.9
    found = postprocess.detections(raw, transform, postprocess.Postprocessing(conf=0.25))
    assert found.shape == (1, 6)
    assert found[0, :4] == pytest.approx([100, 50, 140, 90], abs=1e-3)
    assert found[0, 5] == 1
