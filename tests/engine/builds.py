"""Helpers for the slow engine tests: a spec around the committed detector, and checks every build must satisfy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from kestrel.api import result as api_result
from kestrel.api import spec as api
from kestrel.engine import command, pipeline
from synthetic.detector import ShapesDetector


def spec(shapes: ShapesDetector, engine: dict[str, Any], validation: dict[str, Any] | None = None) -> dict[str, Any]:
    data = f"file://{shapes.data_yaml}"
    engine = {"batch": {"max": 4}, **engine}
    if engine.get("precision") == "int8":
        engine.setdefault("calibration", {"dataset": data, "samples": 64})
    return {
        "model": {"source": {"uri": f"file://{shapes.checkpoint}", "sha256": shapes.sha256}, "imgsz": shapes.imgsz},
        "engine": engine,
        "validation": {"dataset": data, **(validation or {})},
        "target": {"environment": "cpu"},
    }


def python_runtime_engine(shapes: ShapesDetector, out: Path) -> pipeline.BuildResult:
    """The fixture built as an ONNX FP32 engine served by the Python runtime, as model `shapes`: the Triton that
    nvidia-pytriton ships has only the Python backend."""
    raw = spec(shapes, {"format": "onnx", "precision": "fp32"}, {"maxMapDrop": 0.01})
    raw["serving"] = {"triton": {"runtime": "python"}}
    return pipeline.build(parse(raw), out, pipeline.BuildOptions(model_name="shapes", iterations=3))


def parse(raw: dict[str, Any]) -> api.ModelDeploymentSpec:
    return api.parse(raw)


def check_outputs(out: Path) -> tuple[api_result.BuildResult, dict[str, Any]]:
    """result.json is a valid termination message; manifest.json lists every repository file correctly."""
    text = (out / "result.json").read_text()
    assert len(text.encode()) <= api_result.MAX_BYTES
    result = api_result.parse(text)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engineKey"] == result.engine_key
    assert {"ultralytics", "torch", "onnxruntime", "openvino"} <= set(manifest["versions"])
    for entry in manifest["files"]:
        path = out / "repository" / entry["path"]
        assert path.stat().st_size == entry["size"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        if path.name == "config.pbtxt":
            text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return result, manifest


def refused_before_any_work(raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run `kestrel build` on `raw` as the build Job does; it must fail having written nothing but the verified
    source (no baseline, no pruning, no training). Returns the termination message."""
    spec_file = tmp_path / "modeldeployment.yaml"
    spec_file.write_text(yaml.safe_dump({"metadata": {"name": "shapes"}, "spec": raw}))
    monkeypatch.setattr(command, "TERMINATION_LOG", tmp_path / "termination-log")
    assert command.run(spec_file, tmp_path / "out") == command.EXIT_FAILED
    assert sorted(p.name for p in (tmp_path / "out" / "work").iterdir()) == ["source.pt"]
    return (tmp_path / "termination-log").read_text()
