"""Fine-tuning after pruning trains the pruned module itself (not a model rebuilt from its YAML, which would have
every channel back), at the size the source was trained at, and what it saves exports like any checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kestrel.engine import accuracy, datasets, export, finetune, pipeline, prune, runners
from kestrel.serving.backends import preprocess
from synthetic import detector, shapes
from tests.engine import builds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training set from the fixture's generator, with another seed than the detector was trained on."""
    return shapes.generate(tmp_path_factory.mktemp("small"), seed=11, train=24, val=8)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = saved.get("ema") or saved["model"]
    return {k: v.float() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_fine_tune_trains_the_pruned_module_and_it_exports(small: Path, tmp_path: Path) -> None:
    pruned = prune.prune(detector.CHECKPOINT, tmp_path / "pruned.pt", 0.3, 320)
    dataset = datasets.load(small)

    def score(checkpoint: Path) -> accuracy.Accuracy:
        return accuracy.measure(runners.torch_source(checkpoint, 2, 8), dataset, preprocess.Preprocessing(imgsz=320))

    recipe = finetune.Recipe(epochs=1, batch=8, threads=2)
    effect = finetune.fine_tune(
        tmp_path / "pruned.pt", tmp_path / "tuned.pt", small, recipe, served_imgsz=640, workdir=tmp_path / "ft",
        score=score,
    )  # fmt: skip
    print(effect)
    # The source was trained at 320; it is served at 640 here, and the fine-tune must not train at the larger size.
    assert (effect.imgsz, effect.imgsz_from) == (320, "train_args")
    assert (effect.epochs, effect.train_images) == (1, 24)
    assert effect.map50_95_before is not None and effect.map50_95_after is not None
    assert effect.seconds > 0
    # The pruned shape was trained: same tensors, same parameter count, other values.
    before, after = _weights(tmp_path / "pruned.pt"), _weights(tmp_path / "tuned.pt")
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert effect.params == pruned.params_after < 0.75 * pruned.params_before
    assert any(not torch.allclose(before[k], after[k]) for k in before)

    settings = export.ExportSettings(imgsz=320, batch=1, dynamic=False)
    exported = export.export(tmp_path / "tuned.pt", export.Candidate("onnx", "fp32"), settings, tmp_path, gpu=False)
    batch = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    engine = runners.for_engine("onnx", exported.path, 1, 1, "fp32")(batch)
    source = runners.torch_source(tmp_path / "tuned.pt", 1, 1)(batch)
    assert engine.shape == source.shape == (1, 4 + 4, 2100)  # (box + classes, anchors at 320)
    assert np.abs(engine - source).max() < 1.0  # pixels


def test_a_build_with_a_fine_tune_reports_it(small: Path, tmp_path: Path) -> None:
    fixture = detector.shapes_detector(tmp_path / "val", val=8)
    raw = builds.spec(fixture, {"format": "onnx", "precision": "fp32"}, {"maxMapDrop": 1.0})
    raw["engine"]["prune"] = {"amount": 0.3, "fineTuneEpochs": 1, "dataset": f"file://{small}"}
    options = pipeline.BuildOptions(model_name="shapes", iterations=3, threads=2)
    built = pipeline.build(builds.parse(raw), tmp_path / "out", options)
    _, manifest = builds.check_outputs(tmp_path / "out")
    assert built.passed
    effect = manifest["prune"]
    tuned = effect["fine_tune"]
    print(json.dumps(effect))
    assert effect["amount"] == 0.3 and effect["params_after"] < effect["params_before"]
    assert (tuned["epochs"], tuned["imgsz"], tuned["train_images"]) == (1, 320, 24)
    assert tuned["params"] == effect["params_after"]
    # Scored like the baseline (the validation set, the build's size): comparable with the source's mAP.
    assert tuned["map50_95_before"] is not None and tuned["map50_95_after"] is not None
    assert manifest["candidates"][0]["mapSource"] is not None
    assert (tmp_path / "out" / "work" / "fine-tuned.pt").is_file()


def test_a_missing_fine_tune_dataset_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = detector.shapes_detector(tmp_path / "val", val=8)
    raw = builds.spec(fixture, {"format": "onnx", "precision": "fp32"})
    raw["engine"]["prune"] = {"amount": 0.3, "fineTuneEpochs": 2, "dataset": f"file://{tmp_path}/none/data.yaml"}
    message = builds.refused_before_any_work(raw, tmp_path, monkeypatch)
    assert message.startswith("SpecError: spec.engine.prune.dataset: ")
    assert message in capsys.readouterr().err
