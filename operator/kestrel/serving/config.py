"""config.pbtxt for each model of the repository: the engine (native backend or Python runtime), preprocess,
postprocess and the ensemble that chains them, or the Python runtime's fused model that does all three in one.
Pure: values in, dicts out (rendered by pbtxt.render).

Tensor names are the contract between the four models:
    IMAGE (uint8 HxWx3) -> preprocess -> images (fp32 3xSxS) + letterbox (fp32 6)
    images -> engine -> output0 (fp32 4+nc x anchors)          (INPUT__0/OUTPUT__0 for libtorch, its convention)
    output0 + letterbox -> postprocess -> DETECTIONS (fp32 n x 6: x0 y0 x1 y1 score class, padded with -1)
Clients see only IMAGE -> DETECTIONS, whether the ensemble or the fused model answers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from kestrel.serving.backends import postprocess, preprocess
from kestrel.serving.pbtxt import Enum, parameters

Runtime = Literal["native", "python"]
_PLATFORM = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "torchscript": "pytorch_libtorch"}
MODEL_FILE = {"onnx": "model.onnx", "tensorrt": "model.plan", "torchscript": "model.pt", "openvino": "model.xml"}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What Ultralytics' metadata says about the model, and the engine that was built from it."""

    name: str
    names: dict[int, str]
    stride: int
    imgsz: int
    task: str
    format: str
    precision: str
    # A static-batch engine (spec.engine.batch.dynamic false) takes exactly this batch: Triton must not batch it.
    static_batch: int | None = None

    @property
    def anchors(self) -> int:
        # One prediction per cell of the stride-8, -16 and -32 feature maps.
        return sum((self.imgsz // s) ** 2 for s in (8, 16, 32))

    @property
    def outputs(self) -> int:
        return 4 + len(self.names)


@dataclasses.dataclass(frozen=True)
class Batching:
    max_batch: int
    enabled: bool = True
    preferred: tuple[int, ...] = ()
    queue_delay_us: int = 0


@dataclasses.dataclass(frozen=True)
class Instances:
    count: int = 1
    gpu: bool = False
    warmup: bool = True
    runtime: Runtime = "native"
    threads: int = 0  # 0: the backend's default


def choose_batching(
    max_batch: int, p50_ms_batch1: float, throughput_batch1: float, throughput_max: float | None
) -> Batching:
    """Preferred sizes and queue delay from the profile.

    Batching is worth waiting for only if the largest batch raises throughput noticeably (20 % here); then prefer it,
    and wait at most a quarter of a batch-1 inference for it to fill, so a lone request pays at most 25 % extra.
    """
    if max_batch <= 1 or throughput_max is None or throughput_max < 1.2 * throughput_batch1:
        return Batching(max_batch, enabled=max_batch > 1, preferred=(), queue_delay_us=0)
    delay = min(round(p50_ms_batch1 * 250), 100_000)
    return Batching(max_batch, enabled=True, preferred=(max_batch,), queue_delay_us=delay)


def _tensor(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "data_type": Enum(dtype), "dims": dims}


def _metadata(info: ModelInfo) -> dict[str, Any]:
    return {
        "names": {str(k): v for k, v in sorted(info.names.items())},
        "stride": info.stride,
        "imgsz": [info.imgsz, info.imgsz],
        "task": info.task,
        "format": info.format,
        "precision": info.precision,
    }


def _common(batching: Batching, instances: Instances, kind_gpu: bool) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if batching.enabled and batching.max_batch > 1:
        config["dynamic_batching"] = {
            "preferred_batch_size": list(batching.preferred) or None,
            "max_queue_delay_microseconds": batching.queue_delay_us,
        }
    config["instance_group"] = [{"count": instances.count, "kind": Enum("KIND_GPU" if kind_gpu else "KIND_CPU")}]
    return config


def engine_names(info: ModelInfo) -> tuple[str, str]:
    """Input and output tensor names of the engine model."""
    if info.format == "torchscript":
        return "INPUT__0", "OUTPUT__0"
    return "images", "output0"


def engine(info: ModelInfo, batching: Batching, instances: Instances) -> dict[str, Any]:
    input_name, output_name = engine_names(info)
    config: dict[str, Any] = {"name": f"{info.name}-engine"}
    extra: dict[str, Any] = {}
    if instances.runtime == "python":
        config["backend"] = "python"
        extra = {"engine_file": MODEL_FILE[info.format], "inference_precision": info.precision}
    elif info.format == "openvino":
        config["backend"] = "openvino"
        config["default_model_filename"] = MODEL_FILE["openvino"]
        # OpenVINO runs bf16 on CPUs that have it unless told; serve the precision that was validated.
        extra = {
            "INFERENCE_PRECISION_HINT": "f16" if info.precision == "fp16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if instances.threads:
            extra["INFERENCE_NUM_THREADS"] = str(instances.threads)
    else:
        config["platform"] = _PLATFORM[info.format]
        config["default_model_filename"] = MODEL_FILE[info.format]
    leading = [info.static_batch] if info.static_batch else []
    if info.static_batch:
        batching = Batching(max_batch=0, enabled=False)
    config["max_batch_size"] = batching.max_batch
    config["input"] = [_tensor(input_name, "TYPE_FP32", [*leading, 3, info.imgsz, info.imgsz])]
    config["output"] = [_tensor(output_name, "TYPE_FP32", [*leading, info.outputs, info.anchors])]
    config |= _common(batching, instances, instances.gpu and instances.runtime == "native")
    if instances.warmup:
        config["model_warmup"] = [
            {
                "name": "zeros",
                "batch_size": 1,
                "inputs": [
                    {
                        "key": input_name,
                        "value": {
                            "data_type": Enum("TYPE_FP32"),
                            "dims": [*leading, 3, info.imgsz, info.imgsz],
                            "zero_data": True,
                        },
                    }
                ],
            }
        ]
    config["parameters"] = parameters(_metadata(info) | extra)
    return config


def preprocess_model(info: ModelInfo, p: preprocess.Preprocessing, batching: Batching, count: int) -> dict[str, Any]:
    return {
        "name": f"{info.name}-preprocess",
        "backend": "python",
        "max_batch_size": batching.max_batch,
        "input": [_tensor("IMAGE", "TYPE_UINT8", [-1, -1, 3])],
        "output": [_tensor("images", "TYPE_FP32", [3, info.imgsz, info.imgsz]), _tensor("letterbox", "TYPE_FP32", [6])],
        "instance_group": [{"count": count, "kind": Enum("KIND_CPU")}],
        "parameters": parameters({"preprocessing": p.to_json()}),
    }


def postprocess_model(info: ModelInfo, p: postprocess.Postprocessing, batching: Batching, count: int) -> dict[str, Any]:
    return {
        "name": f"{info.name}-postprocess",
        "backend": "python",
        "max_batch_size": batching.max_batch,
        "input": [
            _tensor("output0", "TYPE_FP32", [info.outputs, info.anchors]),
            _tensor("letterbox", "TYPE_FP32", [6]),
        ],
        "output": [_tensor("DETECTIONS", "TYPE_FP32", [-1, 6])],
        "instance_group": [{"count": count, "kind": Enum("KIND_CPU")}],
        "parameters": parameters({"postprocessing": p.to_json(), "names": _metadata(info)["names"]}),
    }


def fused(
    info: ModelInfo,
    pre: preprocess.Preprocessing,
    post: postprocess.Postprocessing,
    batching: Batching,
    instances: Instances,
) -> dict[str, Any]:
    """The Python runtime's one model (backends/fused.py) under the name clients call, with the ensemble's tensors."""
    image = _tensor("IMAGE", "TYPE_UINT8", [-1, -1, 3])
    # Images of different sizes may share a dynamic batch: the model letterboxes each before stacking them.
    image["allow_ragged_batch"] = True
    config: dict[str, Any] = {
        "name": info.name,
        "backend": "python",
        "max_batch_size": batching.max_batch,
        "input": [image],
        "output": [_tensor("DETECTIONS", "TYPE_FP32", [-1, 6])],
    }
    config |= _common(batching, instances, kind_gpu=False)
    if instances.warmup:
        # A blank square runs the whole pipeline once (letterbox, engine, NMS) before the model reports ready.
        sample = {"data_type": Enum("TYPE_UINT8"), "dims": [info.imgsz, info.imgsz, 3], "zero_data": True}
        config["model_warmup"] = [{"name": "blank", "batch_size": 1, "inputs": [{"key": "IMAGE", "value": sample}]}]
    extra: dict[str, Any] = {
        "engine_file": MODEL_FILE[info.format],
        "inference_precision": info.precision,
        "preprocessing": pre.to_json(),
        "postprocessing": post.to_json(),
    }
    if instances.threads:
        extra["threads"] = str(instances.threads)
    config["parameters"] = parameters(_metadata(info) | extra)
    return config


def ensemble(info: ModelInfo, batching: Batching) -> dict[str, Any]:
    input_name, output_name = engine_names(info)
    step = {"model_version": -1}
    return {
        "name": info.name,
        "platform": "ensemble",
        "max_batch_size": batching.max_batch,
        "input": [_tensor("IMAGE", "TYPE_UINT8", [-1, -1, 3])],
        "output": [_tensor("DETECTIONS", "TYPE_FP32", [-1, 6])],
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": f"{info.name}-preprocess",
                    **step,
                    "input_map": [{"key": "IMAGE", "value": "IMAGE"}],
                    "output_map": [{"key": "images", "value": "images"}, {"key": "letterbox", "value": "letterbox"}],
                },
                {
                    "model_name": f"{info.name}-engine",
                    **step,
                    "input_map": [{"key": input_name, "value": "images"}],
                    "output_map": [{"key": output_name, "value": "raw"}],
                },
                {
                    "model_name": f"{info.name}-postprocess",
                    **step,
                    "input_map": [{"key": "output0", "value": "raw"}, {"key": "letterbox", "value": "letterbox"}],
                    "output_map": [{"key": "DETECTIONS", "value": "DETECTIONS"}],
                },
            ]
        },
        "parameters": parameters(_metadata(info)),
    }
