"""ONNX INT8 quantizes the head's convolution branches but leaves its decode (DFL, sigmoid, concat) in float."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from kestrel.engine import errors, quantize


def _chain(path: Path, names: list[str]) -> Path:
    """A graph of Identity nodes named like Ultralytics' exports; the last one produces the output."""
    nodes = []
    previous = "images"
    for index, name in enumerate(names):
        output = "output0" if index == len(names) - 1 else f"t{index}"
        nodes.append(helper.make_node("Identity", [previous], [output], name=name))
        previous = output
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_only_the_decode_of_the_head_is_excluded(tmp_path: Path) -> None:
    model = _chain(
        tmp_path / "model.onnx",
        [
            "/model.0/conv/Conv",
            "/model.0/act/Sigmoid",
            "/model.21/cv2/conv/Conv",
            "/model.22/cv2.0/cv2.0.0/conv/Conv",
            "/model.22/cv3.2/cv3.2.2/Conv",
            "/model.22/dfl/conv/Conv",
            "/model.22/dfl/Softmax",
            "/model.22/Sigmoid",
            "/model.22/Concat_3",
        ],
    )
    assert quantize.decode_nodes(model) == [
        "/model.22/dfl/conv/Conv",
        "/model.22/dfl/Softmax",
        "/model.22/Sigmoid",
        "/model.22/Concat_3",
    ]


def test_a_graph_without_module_names_is_refused(tmp_path: Path) -> None:
    model = _chain(tmp_path / "model.onnx", ["conv", "output"])
    with pytest.raises(errors.ExportError, match="detect head"):
        quantize.decode_nodes(model)
