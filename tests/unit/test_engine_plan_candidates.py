"""Which engines a spec asks for: explicit, or every candidate of `auto` that fits the target."""

from __future__ import annotations

from typing import Any

from kestrel.api import spec as api
from kestrel.engine import plan
from tests.unit.spec_support import UNMEASURED

SOURCE = {"source": {"uri": "file:///m.pt"}, "imgsz": 320}
CALIBRATION = {"dataset": "file:///data.yaml", "samples": 16}


def spec(engine: dict[str, Any], target: dict[str, Any] | None = None) -> api.ModelDeploymentSpec:
    return api.parse(
        {"model": SOURCE, "validation": UNMEASURED, "engine": engine, "target": target or {"environment": "cpu"}}
    )


def names(s: api.ModelDeploymentSpec, gpu: bool = False) -> list[str]:
    return [c.name for c in plan.candidates(s, gpu)]


def test_explicit_format_and_precision_is_one_candidate() -> None:
    assert names(spec({"format": "openvino", "precision": "int8", "calibration": CALIBRATION})) == ["openvino-int8"]


def test_auto_on_cpu_tries_openvino_and_onnx_with_int8_when_calibrated() -> None:
    auto = spec({"format": "auto", "precision": "auto", "calibration": CALIBRATION})
    assert names(auto) == ["openvino-fp32", "openvino-fp16", "openvino-int8", "onnx-fp32", "onnx-int8"]


def test_auto_without_calibration_has_no_int8() -> None:
    assert "onnx-int8" not in names(spec({"format": "auto", "precision": "auto"}))


def test_auto_on_a_gpu_target_with_a_gpu_prefers_tensorrt() -> None:
    gpu_target = {"environment": "cloud", "gpu": {"count": 1, "product": "NVIDIA-A10G"}}
    auto = spec({"format": "auto", "precision": "auto"}, gpu_target)
    assert names(auto, gpu=True) == ["tensorrt-fp32", "tensorrt-fp16", "onnx-fp32", "onnx-fp16"]
    assert names(auto, gpu=False)[0].startswith("openvino")  # no GPU on the build node: CPU candidates only


def test_auto_on_a_jetson_builds_onnx_only_and_no_fp16_without_a_gpu_in_the_build() -> None:
    jetson = {"environment": "edge", "gpu": {"product": "NVIDIA-Jetson-AGX-Orin"}}
    auto = spec({"format": "auto", "precision": "auto", "calibration": CALIBRATION}, jetson)
    assert names(auto, gpu=False) == ["onnx-fp32", "onnx-int8"]


def test_a_gpu_target_built_without_a_gpu_offers_no_fp16_onnx() -> None:
    gpu_target = {"environment": "cloud", "gpu": {"count": 1, "product": "NVIDIA-A10G"}}
    assert "onnx-fp16" not in names(spec({"format": "auto", "precision": "auto"}, gpu_target), gpu=False)
