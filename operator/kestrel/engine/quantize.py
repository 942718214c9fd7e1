"""INT8 ONNX by ONNX Runtime static quantization, calibrated on the spec's images with the serving preprocessing.

Measured side by side on a 2-core x86 CPU (YOLOv8n, 640, batch 1, 2 threads; FP32 ~50 ms): Ultralytics' QDQ INT8 ONNX
runs slower than FP32; quantizing only the convolutions (QOperator, per-channel) runs at ~50 ms, because every SiLU
between two convolutions then runs in float behind a dequantize/quantize pair; quantizing every operator except the
detect head's decode (QDQ, per-channel, which ONNX Runtime fuses into integer kernels) runs at ~25 ms. The decode (DFL
softmax, anchor arithmetic, class sigmoid, the final concat) stays float: it puts box coordinates in pixels and
probabilities in [0, 1] in one tensor, and one INT8 scale for both zeroes the scores (mAP 0 when it is quantized). It
costs little time. This is the split Ultralytics uses for OpenVINO INT8 (its NNCF ignored scope).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kestrel.engine import datasets, errors, progress
from kestrel.serving.backends import preprocess


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a data.yaml's calibration split."""

    def __init__(self, input_name: str, images: list[Path], batch: int, p: preprocess.Preprocessing) -> None:
        self._input_name = input_name
        self._images = images
        self._batch = batch
        self._p = p
        self._next = 0

    def get_next(self) -> dict[str, Any] | None:
        progress.report("calibrate", min(self._next, len(self._images)), len(self._images))
        if self._next >= len(self._images):
            return None
        chunk = self._images[self._next : self._next + self._batch]
        self._next += self._batch
        # Images are decoded as clients send them: RGB (OpenCV reads BGR).
        decoded = [datasets.read_rgb(path) for path in chunk]
        while len(decoded) < self._batch:  # a static-batch graph needs full batches
            decoded.append(decoded[-1])
        tensors, _ = preprocess.batch(decoded, self._p)
        return {self._input_name: tensors}


def onnx_static_int8(source: Path, target: Path, data_yaml: Path, samples: int, imgsz: int, *, split: str) -> Path:
    """Quantize `source` (FP32 ONNX) into `target`, calibrated on up to `samples` images of data_yaml's `split`."""
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    prepared = target.with_name(target.stem + "-prep.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    graph_input = onnx.load(str(prepared)).graph.input[0]
    batch_dim = graph_input.type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else 1
    images = datasets.load(data_yaml).images(split, limit=samples)
    reader = _Reader(graph_input.name, images, batch, preprocess.Preprocessing(imgsz=imgsz))
    quantize_static(
        str(prepared),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        nodes_to_exclude=decode_nodes(prepared),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink(missing_ok=True)
    _copy_metadata(source, target)
    return target


def decode_nodes(model_path: Path) -> list[str]:
    """The detect head's decode: every node of the head's module except its convolution branches (cv2, cv3, ...).

    The head is the module whose node produces the graph's first output (Ultralytics names nodes by module path,
    `/model.22/Concat_3`); its convolution branches are `/model.22/cv2.0/...`, its decode `/model.22/dfl/...`,
    `/model.22/Sigmoid` and the anchor arithmetic.
    """
    import onnx  # noqa: PLC0415

    graph = onnx.load(str(model_path)).graph
    output = graph.output[0].name
    producer = next((node for node in graph.node if output in node.output), None)
    if producer is None or "/" not in producer.name:
        raise errors.ExportError(
            f"{model_path.name}: cannot find the detect head (output {output!r} has no named producer)"
        )
    prefix = producer.name.rsplit("/", 1)[0] + "/"
    return [
        node.name for node in graph.node if node.name.startswith(prefix) and not node.name.startswith(prefix + "cv")
    ]


def _copy_metadata(source: Path, target: Path) -> None:
    # Ultralytics stores names/stride/imgsz as ONNX metadata; keep them so Ultralytics (and Triton config) read them.
    import onnx  # noqa: PLC0415

    original, quantized = onnx.load(str(source)), onnx.load(str(target))
    del quantized.metadata_props[:]
    for prop in original.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(quantized, str(target))
