"""Which engines to build for a spec: one candidate, or for `auto` every candidate that fits the target.

`auto` is resolved here and only here: the target's hardware bounds the formats (TensorRT needs the GPU it will serve
on; OpenVINO and ONNX Runtime run on CPUs; a Jetson serves ONNX), calibration data bounds INT8, and a GPU enables FP16.
"""

from __future__ import annotations

from kestrel.api import spec as api
from kestrel.engine.export import Candidate, Format, Precision

_CPU_FORMATS: tuple[Format, ...] = ("openvino", "onnx")
_GPU_FORMATS: tuple[Format, ...] = ("tensorrt", "onnx")
# Jetson: built on the arm64 CPU builder, served by NVIDIA's Jetson Triton (no OpenVINO backend there).
_EDGE_FORMATS: tuple[Format, ...] = ("onnx",)


def candidates(spec: api.ModelDeploymentSpec, gpu_present: bool) -> list[Candidate]:
    engine = spec.engine
    gpu_target = spec.target.gpu is not None and spec.target.environment != "cpu"
    formats: tuple[Format, ...]
    if engine.format == "auto" and spec.target.environment == "edge":
        formats = _EDGE_FORMATS
    elif engine.format == "auto":
        formats = _GPU_FORMATS if gpu_target and gpu_present else _CPU_FORMATS
    else:
        formats = (engine.format,)
    chosen: list[Candidate] = []
    for fmt in formats:
        # FP16 is exported on a GPU only (export.py): a build without one (a Jetson's arm64 CPU builder, a GPU
        # target built where no GPU is visible) offers none.
        for precision in _precisions(engine.precision, fmt, engine.calibration is not None, gpu_target and gpu_present):
            chosen.append(Candidate(fmt, precision))
    return chosen


def _precisions(asked: str, fmt: Format, calibrated: bool, gpu: bool) -> list[Precision]:
    if asked != "auto":
        return [asked]  # type: ignore[list-item]  # the API's Literal minus "auto"
    precisions: list[Precision] = ["fp32"]
    if gpu or fmt == "openvino":  # FP16 only pays off where the hardware computes in it (or OpenVINO halves weights)
        precisions.append("fp16")
    if calibrated and fmt != "torchscript":
        precisions.append("int8")
    return precisions
