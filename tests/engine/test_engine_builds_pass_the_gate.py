"""Each CPU engine built from the committed detector passes the gate, with the measured numbers in its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import pipeline
from synthetic import detector
from tests.engine import builds

pytestmark = pytest.mark.slow

# mAP50-95 drop allowed per precision: FP32 engines must match the source; INT8 may lose a little.
MAX_DROP = {"fp32": 0.005, "int8": 0.03}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> detector.ShapesDetector:
    return detector.shapes_detector(tmp_path_factory.mktemp("shapes"))


@pytest.mark.parametrize(
    ("fmt", "precision"),
    [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"), ("torchscript", "fp32")],
)
def test_build_passes_the_gate(shapes: detector.ShapesDetector, tmp_path: Path, fmt: str, precision: str) -> None:
    raw = builds.spec(
        shapes,
        {"format": fmt, "precision": precision},
        {"maxMapDrop": MAX_DROP[precision], "maxOutputDelta": 1.0 if precision == "fp32" else None},
    )
    raw["validation"] = {k: v for k, v in raw["validation"].items() if v is not None}
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(model_name="shapes", iterations=10))
    result, manifest = builds.check_outputs(tmp_path)
    numbers = result.validation
    print(f"{fmt}-{precision}: {numbers.model_dump(exclude_none=True)} seconds={manifest['seconds']}")
    assert built.passed, result.gate.message
    assert (result.format, result.precision, result.gate.reason) == (fmt, precision, "Passed")
    assert numbers.map_source is not None and numbers.map_source >= 0.5  # a real detector, not random weights
    assert numbers.map_engine is not None and numbers.map_source - numbers.map_engine <= MAX_DROP[precision]
    assert numbers.p50_ms and numbers.p95_ms and numbers.throughput
    assert numbers.max_output_delta is not None
    if precision == "fp32":
        assert numbers.max_output_delta < 1.0  # pixels: FP32 engines reproduce the source's raw outputs
    assert (tmp_path / "repository" / "shapes" / "config.pbtxt").exists()
    assert len(manifest["files"]) == len(list(p for p in (tmp_path / "repository").rglob("*") if p.is_file()))


def test_auto_keeps_the_fastest_candidate_that_passes(shapes: detector.ShapesDetector, tmp_path: Path) -> None:
    raw = builds.spec(shapes, {"format": "auto", "precision": "fp32"}, {"maxMapDrop": 0.005})
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(model_name="shapes", iterations=10))
    result, manifest = builds.check_outputs(tmp_path)
    candidates = {c["name"]: c for c in manifest["candidates"]}
    print({name: (c["reason"], c.get("p50Ms"), c.get("mapEngine")) for name, c in candidates.items()})
    assert set(candidates) == {"openvino-fp32", "onnx-fp32"}
    assert built.passed
    passing = [c for c in candidates.values() if c["passed"]]
    fastest = min(passing, key=lambda c: c["p50Ms"])
    assert f"{result.format}-{result.precision}" == fastest["name"]
    assert all(c["p50Ms"] and c["mapEngine"] is not None for c in candidates.values())
