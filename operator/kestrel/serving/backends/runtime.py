"""Triton Python-backend model running the engine itself with ONNX Runtime or OpenVINO.

For servers without the native onnxruntime/openvino backends (a Triton built with only the Python backend). `load`
is what the fused model (fused.py) runs its engine with; this file is copied beside it. Where the engine stands
alone (a static-batch engine, which no batching model may wrap), this file is that model, `<name>-engine/1/model.py`,
beside the engine file named by the `engine_file` parameter, with the native model's tensors:
images (fp32 Nx3xSxS) -> output0 (fp32 N x 4+nc x anchors).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Run = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def load(path: str, precision: str, threads: int = 0) -> Run:
    """A callable running the engine at `path` (.onnx or OpenVINO .xml) with an explicit precision."""
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
    ov: Any = importlib.import_module("openvino")
    core = ov.Core()
    # Pin the precision: OpenVINO would otherwise pick bf16 on CPUs that have it, which was not what was validated.
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f16" if precision == "fp16" else "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    output = compiled.outputs[0]
    return lambda batch: np.asarray(compiled(batch)[output], dtype=np.float32)


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
