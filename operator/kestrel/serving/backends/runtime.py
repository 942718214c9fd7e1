"""Triton Python-backend model running the engine itself with ONNX Runtime or OpenVINO.

For servers without the native onnxruntime/openvino backends (a Triton built with only the Python backend). `load`
is what the fused model (fused.py) runs its engine with; this file is copied beside it. Where the engine stands
alone (a static-batch engine, which no batching model may wrap), this file is that model, `<name>-engine/1/model.py`,
beside the engine file named by the `engine_file` parameter, with the native model's tensors:
images (fp32 Nx3xSxS) -> output0 (fp32 N x 4+nc x anchors).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Run = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def load(path: str, precision: str, threads: int = 0, imgsz: int = 0) -> Run:
    """A callable running the engine at `path` (.onnx or OpenVINO .xml) with an explicit precision.

    `imgsz` pins an OpenVINO model's open height and width (Ultralytics' dynamic export leaves them open); 0 keeps
    the model's own shape.
    """
    if path.endswith(".onnx"):
        ort: Any = importlib.import_module("onnxruntime")
        options = ort.SessionOptions()
        # threads 0 keeps ONNX Runtime's default, a spinning thread per core. Inside Triton on 2 cores, with its gRPC
        # threads and the clients on the same cores, 1 thread, no spinning, or spinning stopped after each run all
        # measured slower (bench/serving.py's 1-client p50 and 8-client throughput, 2026-11-28).
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: np.asarray(session.run(None, {name: batch})[0], dtype=np.float32)
    return openvino(path, precision, threads, imgsz)


def openvino(path: str, precision: str, threads: int = 0, imgsz: int = 0) -> OpenVinoPlans:
    """An OpenVINO model on the CPU, pinned to `precision`, with a plan of its own for batch 1.

    A model with an open batch gets two compiled plans: one for any batch, and one for batch 1 alone, which a
    dynamic-batch plan runs slower (OpenVINO INT8 at 640, 2 threads, batch 1: 25.7 ms p50 static against 27.6 ms
    dynamic, interleaved, 2026-12-02). Batch 1 is what a lone client's request, and every engine profile's first
    number, runs at.
    """
    ov: Any = importlib.import_module("openvino")
    core = ov.Core()
    model = core.read_model(path)
    shape = model.inputs[0].get_partial_shape()
    if imgsz and (shape[2].is_dynamic or shape[3].is_dynamic):
        shape = ov.PartialShape([shape[0], shape[1], imgsz, imgsz])
        model.reshape({model.inputs[0]: shape})
    config: dict[str, Any] = {
        # Pinned: OpenVINO would otherwise pick bf16 on CPUs that have it, which was not what was validated.
        "INFERENCE_PRECISION_HINT": inference_precision(core, precision),
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    single = None
    if shape[0].is_dynamic and shape[2].is_static and shape[3].is_static:
        one = model.clone()
        one.reshape({one.inputs[0]: ov.PartialShape([1, shape[1], shape[2], shape[3]])})
        single = core.compile_model(one, "CPU", config)
    return OpenVinoPlans(core.compile_model(model, "CPU", config), single)


@dataclasses.dataclass(frozen=True)
class OpenVinoPlans:
    """Compiled OpenVINO plans: one for any batch the model takes, and one for batch 1 where that batch is open."""

    any_batch: Any
    single: Any | None

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        plan = self.single if self.single is not None and len(batch) == 1 else self.any_batch
        return np.asarray(plan(batch)[plan.outputs[0]], dtype=np.float32)


def inference_precision(core: Any, precision: str) -> str:
    """The OpenVINO CPU precision hint for a spec precision: f32 unless FP16 was asked and the CPU has it.

    INT8 models keep f32 for the layers NNCF left unquantized; leaving the hint unset would let OpenVINO pick bf16,
    which is neither what was asked nor what was validated.
    """
    if precision == "fp16" and "FP16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "f16"
    return "f32"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self._pb: Any = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        engine_file = Path(args["model_repository"]) / args["model_version"] / params["engine_file"]
        self._run = load(str(engine_file), params.get("inference_precision", "fp32"))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            images = self._pb.get_input_tensor_by_name(request, "images").as_numpy()
            output = self._run(np.ascontiguousarray(images, dtype=np.float32))
            responses.append(self._pb.InferenceResponse(output_tensors=[self._pb.Tensor("output0", output)]))
        return responses
