"""Run a preprocessed batch through the source model or a built engine and return the raw detect output.

Every runner takes float32 NCHW in [0, 1] and returns float32 (N, 4 + nc, anchors): the tensor before NMS, which is
what parity is measured on. Runtimes are configured explicitly (threads, OpenVINO's inference precision) so that the
numbers measured here are the ones Triton will see, not a runtime default that differs (OpenVINO runs bf16 on CPUs
with AMX/AVX512-BF16 unless told otherwise).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kestrel.engine import errors, offline
from kestrel.serving.backends import runtime

Batch = npt.NDArray[np.float32]


class Runner(Protocol):
    name: str
    max_batch: int  # the largest batch one call accepts

    def __call__(self, batch: Batch) -> Batch: ...


@dataclasses.dataclass
class _FixedBatch:
    """Adapts a static-batch engine: pads a short batch with zeros and splits a long one."""

    name: str
    max_batch: int
    fixed: int | None
    run: Callable[[Batch], Batch]

    def __call__(self, batch: Batch) -> Batch:
        if self.fixed is None:
            return self.run(batch)
        outputs = []
        for start in range(0, len(batch), self.fixed):
            part = batch[start : start + self.fixed]
            if len(part) < self.fixed:
                part = np.concatenate([part, np.zeros((self.fixed - len(part), *part.shape[1:]), np.float32)])
            outputs.append(self.run(part)[: len(batch) - start])
        return np.concatenate(outputs)


def torch_source(checkpoint: Path, threads: int, max_batch: int) -> Runner:
    """The source checkpoint in PyTorch eager mode, FP32, fused as Ultralytics runs it for val and export.

    The thread count is set on every call, not once: it is process-wide, and importing Ultralytics sets
    OMP_NUM_THREADS=1, which leaves PyTorch on one thread (about twice the latency at 2 cores) unless told otherwise.
    A baseline on fewer threads than the engines it is compared with would flatter every engine.
    """
    import torch  # noqa: PLC0415 - heavy, and only the build needs it

    offline.configure()
    tasks: Any = importlib.import_module("ultralytics.nn.tasks")
    model, _ = tasks.load_checkpoint(str(checkpoint), device="cpu", fuse=True)
    model = model.float().eval()

    def run(batch: Batch) -> Batch:
        _torch_threads(threads)
        with torch.inference_mode():
            output = model(torch.from_numpy(batch))
        first = output[0] if isinstance(output, (tuple, list)) else output
        return np.asarray(first.numpy(), dtype=np.float32)

    return _FixedBatch("pytorch", max_batch, None, run)


def _torch_threads(threads: int) -> None:
    import torch  # noqa: PLC0415

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def onnx(path: Path, threads: int, max_batch: int) -> Runner:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    batch_dim = model_input.shape[0]

    def run(batch: Batch) -> Batch:
        return np.asarray(session.run(None, {model_input.name: batch})[0], dtype=np.float32)

    return _FixedBatch("onnxruntime", max_batch, batch_dim if isinstance(batch_dim, int) else None, run)


def openvino(xml: Path, threads: int, max_batch: int, precision: str) -> Runner:
    """The model as the serving backend loads it (runtime.openvino), so that what is profiled is what serves."""
    run = runtime.openvino(str(xml), precision, threads, _imgsz_of(xml))
    batch = run.any_batch.inputs[0].get_partial_shape()[0]  # the compiled plan's, not a second read of the file
    return _FixedBatch("openvino", max_batch, None if batch.is_dynamic else batch.get_length(), run)


def _imgsz_of(xml: Path) -> int:
    import yaml  # noqa: PLC0415

    metadata = yaml.safe_load((xml.parent / "metadata.yaml").read_text())
    imgsz = metadata["imgsz"]
    return int(imgsz[0] if isinstance(imgsz, list) else imgsz)


def torchscript(path: Path, threads: int, max_batch: int) -> Runner:
    import torch  # noqa: PLC0415

    module = torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]

    def run(batch: Batch) -> Batch:
        _torch_threads(threads)
        with torch.inference_mode():
            output = module(torch.from_numpy(batch))
        first = output[0] if isinstance(output, (tuple, list)) else output
        return np.asarray(first.float().numpy(), dtype=np.float32)

    return _FixedBatch("torchscript", max_batch, None, run)


def for_engine(fmt: str, path: Path, threads: int, max_batch: int, precision: str) -> Runner:
    """A runner for a built engine file (or OpenVINO model directory)."""
    if fmt == "onnx":
        return onnx(path, threads, max_batch)
    if fmt == "openvino":
        return openvino(next(path.glob("*.xml")), threads, max_batch, precision)
    if fmt == "torchscript":
        return torchscript(path, threads, max_batch)
    raise errors.ExportError(f"spec.engine.format: no local runtime for {fmt!r} on this machine")
