"""The gate fails, with numbers, when serving would differ from what was validated or miss its budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import pipeline, progress
from kestrel.serving.backends import preprocess
from synthetic import detector
from tests.engine import builds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> detector.ShapesDetector:
    return detector.shapes_detector(tmp_path_factory.mktemp("shapes"))


@pytest.mark.parametrize(
    ("mismatch", "difference"),
    [
        (preprocess.Preprocessing(imgsz=320, channel_order="BGR"), "channel_order: RGB != BGR"),
        (preprocess.Preprocessing(imgsz=320, letterbox=False), "resize: letterbox-center != stretch"),
    ],
)
def test_mismatched_preprocessing_fails(
    shapes: detector.ShapesDetector, tmp_path: Path, mismatch: preprocess.Preprocessing, difference: str
) -> None:
    raw = builds.spec(shapes, {"format": "onnx", "precision": "fp32"}, {"maxMapDrop": 0.01})
    options = pipeline.BuildOptions(serving_preprocessing=mismatch, iterations=5)
    built = pipeline.build(builds.parse(raw), tmp_path, options)
    result, manifest = builds.check_outputs(tmp_path)
    print(result.gate.message, result.validation.model_dump(exclude_none=True))
    assert not built.passed and built.repository is None
    assert result.gate.reason == "PreprocessingMismatch"
    assert difference in result.gate.message
    # The numbers show what the mismatch would cost in production: the same engine, fed differently.
    assert result.validation.map_engine is not None and result.validation.map_source is not None
    assert manifest["candidates"][0]["failures"][0] == "PreprocessingMismatch"


def test_a_latency_budget_too_tight_fails(shapes: detector.ShapesDetector, tmp_path: Path) -> None:
    raw = builds.spec(shapes, {"format": "onnx", "precision": "fp32"}, {"latencyBudgetMs": 0.5})
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(iterations=5))
    result, _ = builds.check_outputs(tmp_path)
    assert not built.passed
    assert result.gate.reason == "LatencyBudgetExceeded"
    assert result.validation.p95_ms is not None and result.validation.p95_ms > 0.5
    assert f"{result.validation.p95_ms:.2f} ms" in result.gate.message
    assert "latencyBudgetMs 0.5" in result.gate.message


def test_an_over_pruned_model_fails_on_accuracy(shapes: detector.ShapesDetector, tmp_path: Path) -> None:
    raw = builds.spec(shapes, {"format": "onnx", "precision": "fp32", "prune": {"amount": 0.5}}, {"maxMapDrop": 0.02})
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(iterations=5))
    result, manifest = builds.check_outputs(tmp_path)
    print(result.gate.message, manifest["prune"])
    assert not built.passed
    assert result.gate.reason == "AccuracyDrop"
    source, engine = result.validation.map_source, result.validation.map_engine
    assert source is not None and engine is not None and source - engine > 0.02
    # Pruning's effect is measured, not assumed: fewer parameters and a smaller engine.
    assert manifest["prune"]["params_after"] < 0.7 * manifest["prune"]["params_before"]


def test_a_build_without_a_dataset_rolls_out_only_as_not_measured_when_the_spec_skips_it(
    shapes: detector.ShapesDetector, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real build with `validation.skip`: parity and latency are measured, accuracy is not, and the result says
    NotMeasured with the spec's reason, never "passed: mAP50-95 drop 0.0000"."""
    raw = builds.spec(shapes, {"format": "onnx", "precision": "fp32"})
    raw["validation"] = {"skip": {"reason": "no labelled images of this camera yet"}}
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(iterations=5))
    result, _ = builds.check_outputs(tmp_path)
    assert built.passed and built.repository is not None
    assert (result.gate.passed, result.gate.reason) == (True, "NotMeasured")
    assert "no labelled images of this camera yet" in result.gate.message and "mAP" not in result.gate.message
    assert result.validation.map_source is None and result.validation.map_engine is None
    assert result.validation.max_output_delta is not None and result.validation.p95_ms is not None
    # The build said where it was, in the lines the operator mirrors into status.
    said = [found for line in capfd.readouterr().err.splitlines() if (found := progress.parse(line))]
    stages = [found.stage for found in said]
    assert stages[0] == "fetch" and {"export", "validate", "profile"} <= set(stages), stages
