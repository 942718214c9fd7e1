"""runtime.openvino: an open-batch model gets a plan of its own for batch 1, and both plans answer alike."""

from __future__ import annotations

import pathlib

import numpy as np
import openvino as ov
import pytest

from kestrel.serving.backends import runtime


def tiny_model(folder: pathlib.Path, shape: list[int]) -> str:
    """A model with YOLO's input layout: images (N, 3, H, W) -> the images times 2 plus 1."""
    ops = ov.opset13
    images = ops.parameter(ov.PartialShape(shape), np.float32, name="images")
    output = ops.add(ops.multiply(images, ops.constant(np.float32(2.0))), ops.constant(np.float32(1.0)))
    path = folder / "model.xml"
    ov.save_model(ov.Model([output], [images], "tiny"), str(path))
    return str(path)


def test_an_open_batch_gets_a_batch_one_plan_pinned_to_the_image_size(tmp_path: pathlib.Path) -> None:
    plans = runtime.openvino(tiny_model(tmp_path, [-1, 3, -1, -1]), "fp32", threads=1, imgsz=32)
    assert isinstance(plans, runtime.OpenVinoPlans) and plans.single is not None
    assert plans.single.inputs[0].get_partial_shape() == ov.PartialShape([1, 3, 32, 32])
    assert plans.any_batch.inputs[0].get_partial_shape() == ov.PartialShape([-1, 3, 32, 32])
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        images = rng.random((batch, 3, 32, 32), dtype=np.float32)
        np.testing.assert_allclose(plans(images), images * 2 + 1, rtol=1e-6)
    with pytest.raises(RuntimeError):  # pinned: a 64x64 batch is not what the model was compiled for
        plans(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.parametrize("shape", [[4, 3, 32, 32], [-1, 3, -1, -1]])
def test_no_batch_one_plan_for_a_fixed_batch_or_an_open_size(tmp_path: pathlib.Path, shape: list[int]) -> None:
    plans = runtime.openvino(tiny_model(tmp_path, shape), "fp32", threads=1)
    assert isinstance(plans, runtime.OpenVinoPlans) and plans.single is None
    images = np.ones((4, 3, 32, 32), np.float32)
    np.testing.assert_allclose(plans(images), images * 3)
