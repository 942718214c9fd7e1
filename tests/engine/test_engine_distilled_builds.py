"""A build with spec.engine.distill trains a narrower student against the source as teacher, and the gate judges the
student's engine against the source, as it judges any engine; a dataset the student cannot train on fails first."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from kestrel.engine import pipeline
from synthetic import detector, shapes
from tests.engine import builds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training set from the fixture's generator, with another seed than the detector was trained on."""
    return shapes.generate(tmp_path_factory.mktemp("small"), seed=11, train=24, val=8)


def test_the_gate_judges_the_student_against_the_source(small: Path, tmp_path: Path) -> None:
    fixture = detector.shapes_detector(tmp_path / "val", val=8)
    # One epoch on 24 images cannot give back what halving the channels took: no drop at all is impossible.
    raw = builds.spec(fixture, {"format": "onnx", "precision": "fp32"}, {"maxMapDrop": 0.0})
    raw["engine"]["distill"] = {"student": {"width": 0.5}, "epochs": 1, "dataset": f"file://{small}"}
    options = pipeline.BuildOptions(model_name="shapes", iterations=3, threads=2)
    built = pipeline.build(builds.parse(raw), tmp_path / "out", options)
    result, manifest = builds.check_outputs(tmp_path / "out")
    effect = manifest["distill"]
    print(json.dumps(effect))
    assert effect["width"] == 0.5 and effect["weight"] == 6.0
    assert effect["params_student"] < 0.5 * effect["params_teacher"]
    assert effect["size_student"] < effect["size_teacher"]
    training = effect["training"]
    assert (training["epochs"], training["imgsz"], training["train_images"]) == (1, 320, 24)
    assert training["params"] == effect["params_student"]
    assert training["map50_95_before"] is not None and training["map50_95_after"] is not None
    # The distillation loss took part in the training, beside the detection loss.
    with (tmp_path / "out/work/distill/fine-tune/results.csv").open() as rows:
        losses = [float(row["train/dis_loss"]) for row in csv.DictReader(rows, skipinitialspace=True)]
    assert losses and all(loss > 0 for loss in losses)
    # Judged against the source (a measured mAP), not against the student itself, and failed: no repository.
    candidate = manifest["candidates"][0]
    assert candidate["mapSource"] > 0.5
    assert candidate["mapEngine"] < candidate["mapSource"]
    assert result.validation.map_source == candidate["mapSource"]
    assert not built.passed and built.repository is None
    assert (result.gate.passed, result.gate.reason) == (False, "AccuracyDrop")
    assert not (tmp_path / "out" / "repository").exists()


def test_a_dataset_with_other_classes_fails_before_any_work(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = detector.shapes_detector(tmp_path / "val", val=8)
    other = yaml.safe_load(small.read_text())
    other.update(path=str(small.parent), names={0: "circle", 1: "square"})
    (tmp_path / "two-classes.yaml").write_text(yaml.safe_dump(other))
    raw = builds.spec(fixture, {"format": "onnx", "precision": "fp32"})
    raw["engine"]["distill"] = {
        "student": {"width": 0.5},
        "epochs": 1,
        "dataset": f"file://{tmp_path}/two-classes.yaml",
    }
    message = builds.refused_before_any_work(raw, tmp_path, monkeypatch)
    assert message.startswith("SpecError: spec.engine.distill.dataset: ")
    assert "has 2 classes, the model 4" in message
