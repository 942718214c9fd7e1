"""Export the (verified, optionally pruned) checkpoint to one engine format and precision with Ultralytics.

Ultralytics writes its output next to the checkpoint, so each candidate gets its own directory with its own copy.
INT8 ONNX is the exception to "Ultralytics does it": its INT8 ONNX is QDQ and measured slower than FP32 on CPU, so
Kestrel exports FP32 and quantizes with ONNX Runtime itself (see quantize.py).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from kestrel.engine import datasets, errors, offline, progress, quantize

Format = Literal["onnx", "openvino", "torchscript", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8"]
_ULTRALYTICS_FORMAT = {"onnx": "onnx", "openvino": "openvino", "torchscript": "torchscript", "tensorrt": "engine"}
_QUANTIZE = {"fp32": None, "fp16": 16, "int8": 8}


@dataclasses.dataclass(frozen=True)
class Candidate:
    format: Format
    precision: Precision

    @property
    def name(self) -> str:
        return f"{self.format}-{self.precision}"


@dataclasses.dataclass(frozen=True)
class Calibration:
    data_yaml: Path
    samples: int
    split: str = "train"  # never the images the engine is scored on (held_out.calibration)


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    imgsz: int
    batch: int
    dynamic: bool
    opset: int | None = None
    workspace_gib: int = 4
    calibration: Calibration | None = None


@dataclasses.dataclass(frozen=True)
class Exported:
    candidate: Candidate
    path: Path  # a file (onnx, torchscript, engine) or a directory (openvino)
    seconds: float

    @property
    def size_bytes(self) -> int:
        files = [self.path] if self.path.is_file() else [p for p in self.path.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files)


def check_supported(candidate: Candidate, settings: ExportSettings, gpu: bool) -> None:
    """Refuse, before any work, what cannot be built here, naming the field to change."""
    if candidate.format == "tensorrt" and not gpu:
        raise errors.ExportError(
            "spec.engine.format: tensorrt needs an NVIDIA GPU on the build node and none is visible; "
            "schedule the build on the serving GPU type (spec.target.gpu.product) or use onnx/openvino"
        )
    if candidate.precision == "fp16" and not gpu and candidate.format in ("onnx", "torchscript"):
        raise errors.ExportError(
            f"spec.engine.precision: fp16 {candidate.format} is exported on a GPU only; use fp32 here, "
            "openvino (FP16 weights work on CPU) or a GPU target"
        )
    if candidate.precision == "int8" and settings.calibration is None:
        raise errors.ExportError("spec.engine.calibration: int8 needs calibration images (calibration.dataset)")
    if candidate.precision == "int8" and candidate.format == "torchscript":
        raise errors.ExportError("spec.engine.precision: int8 is not available for torchscript")


def export(checkpoint: Path, candidate: Candidate, settings: ExportSettings, workdir: Path, gpu: bool) -> Exported:
    check_supported(candidate, settings, gpu)
    yolo = offline.ultralytics().YOLO

    directory = workdir / candidate.name
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "model.pt"
    shutil.copyfile(checkpoint, source)
    started = time.monotonic()
    onnx_int8 = candidate.format == "onnx" and candidate.precision == "int8"
    arguments: dict[str, object] = {
        "format": _ULTRALYTICS_FORMAT[candidate.format],
        "imgsz": settings.imgsz,
        "batch": settings.batch,
        "dynamic": settings.dynamic,
        "device": 0 if gpu else "cpu",
        "simplify": True,
        "quantize": None if onnx_int8 else _QUANTIZE[candidate.precision],
        "verbose": False,
    }
    if candidate.format in ("onnx", "tensorrt") and settings.opset is not None:
        arguments["opset"] = settings.opset
    if candidate.format == "tensorrt":
        arguments["workspace"] = settings.workspace_gib
    if candidate.precision == "int8" and not onnx_int8 and settings.calibration is not None:
        # An integer fraction > 1 is a sample count for Ultralytics' calibration loader.
        # Ultralytics calibrates on the data.yaml's val entry: the copy points it at the calibration split. It
        # reports no progress of its own: the stage is said once, with the number of images asked for.
        calibration = settings.calibration
        progress.report("calibrate", 0, calibration.samples)
        arguments["data"] = str(absolute_data_yaml(calibration.data_yaml, directory, val_split=calibration.split))
        arguments["fraction"] = settings.calibration.samples
    try:
        output = Path(str(yolo(str(source)).export(**arguments)))
    except Exception as error:  # Ultralytics raises bare Exceptions/AssertionErrors with useful text
        raise errors.ExportError(f"spec.engine: {candidate.name} export failed: {error}") from error
    if onnx_int8 and settings.calibration is not None:
        output = quantize.onnx_static_int8(
            output, directory / "model-int8.onnx", settings.calibration.data_yaml, settings.calibration.samples,
            settings.imgsz, split=settings.calibration.split,
        )  # fmt: skip
    return Exported(candidate, output, time.monotonic() - started)


def absolute_data_yaml(
    data_yaml: Path, directory: Path, name: str = "calibration-data.yaml", *, val_split: str | None = None
) -> Path:
    """A copy of data.yaml whose `path` is absolute, resolved against the file's folder as `datasets.load` does.

    A dataset on a claim is written relative to itself (the claim is mounted at another path in the build pod than
    where it was filled), but Ultralytics resolves a relative `path` against the working directory or its
    datasets_dir: it would calibrate on other images, or fail to find any.
    """
    raw: dict[str, Any] = yaml.safe_load(data_yaml.read_text())
    raw["path"] = str(datasets.load(data_yaml).root.resolve())
    if val_split is not None:  # `val_split`'s images under the key Ultralytics reads (its calibration reads val)
        if raw.get(val_split) is None:
            raise errors.FetchError(f"{data_yaml}: split {val_split!r} is not in the data.yaml")
        raw["val"] = raw[val_split]
    target = directory / name
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target
