"""The committed detector still reaches the mAP its JSON records, on the regenerated validation split."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import offline
from synthetic import detector

pytestmark = pytest.mark.slow


def test_committed_detector_reaches_its_recorded_map(tmp_path: Path) -> None:
    offline.configure()
    from ultralytics.models import YOLO  # noqa: PLC0415 - after offline.configure()

    shapes = detector.shapes_detector(tmp_path)
    recorded = shapes.record["val"]
    assert recorded["map50"] >= 0.8, "the fixture must be a real detector, not random weights"
    metrics = YOLO(str(shapes.checkpoint)).val(
        data=str(shapes.data_yaml), imgsz=shapes.imgsz, batch=16, device="cpu", workers=0, plots=False,
        verbose=False, project=str(tmp_path / "runs"),
    )  # fmt: skip
    assert float(metrics.box.map50) == pytest.approx(recorded["map50"], abs=0.01)
    assert float(metrics.box.map) == pytest.approx(recorded["map50_95"], abs=0.01)
