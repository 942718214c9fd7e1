"""The drift score on known distributions, and the served model's metrics as a fake Triton stub records them."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from typing import Any, ClassVar

import numpy as np
import pytest

from kestrel.serving.backends import drift


def boxes(*rows: tuple[float, int]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Detections with (score, class) and a dummy box."""
    return np.array([[0, 0, 1, 1, score, cls] for score, cls in rows], dtype=np.float32).reshape(-1, 6)


def test_a_tally_counts_classes_and_confidence_buckets() -> None:
    found = drift.tally([boxes((0.95, 0), (0.31, 1)), boxes(), boxes((0.35, 1))], classes=3)
    assert found.images == 3
    assert found.detections == (1, 2, 0)
    assert found.confidence[drift.BUCKETS.index("0.3-0.4")] == 2
    assert found.confidence[drift.BUCKETS.index("0.9-1.0")] == 1
    assert sum(found.confidence) == 3


def test_the_same_distribution_scores_zero_and_disjoint_ones_score_one() -> None:
    base = drift.Tally(images=10, detections=(20, 10), confidence=(0, 0, 0, 5, 5, 5, 5, 5, 5, 0))
    assert drift.score(base, base).value == 0.0
    # Twice the images with twice the detections: the same rates, the same histogram shape.
    doubled = drift.Tally(20, (40, 20), tuple(2 * c for c in base.confidence))
    assert drift.score(base, doubled).value == pytest.approx(0.0)
    blank = drift.Tally(images=10, detections=(0, 0), confidence=(0,) * 10)
    found = drift.score(base, blank)
    assert (found.value, found.classes, found.confidence) == (1.0, 1.0, 0.0)
    assert found.change == (-2.0, -1.0)


def test_the_class_part_is_bray_curtis_of_the_rates_and_the_confidence_part_total_variation() -> None:
    base = drift.Tally(images=4, detections=(4, 4), confidence=(0, 0, 0, 0, 0, 0, 0, 0, 4, 4))
    # Class 0 halves (rate 1 -> 0.5), class 1 unchanged: |0.5 - 1| / (1.5 + 2) = 1/7.
    window = drift.Tally(images=4, detections=(2, 4), confidence=(0, 0, 0, 0, 0, 0, 0, 0, 6, 0))
    found = drift.score(base, window)
    assert found.classes == pytest.approx(1 / 7)
    # Histograms 1/2, 1/2 against 1, 0: half the mass moved.
    assert found.confidence == pytest.approx(0.5)
    assert found.value == pytest.approx(0.5)
    assert found.change == pytest.approx((-0.5, 0.0))


def test_a_uniform_rate_drop_moves_the_score_where_normalized_shares_would_not() -> None:
    base = drift.Tally(images=10, detections=(10, 10), confidence=(0, 0, 0, 0, 0, 20, 0, 0, 0, 0))
    half = drift.Tally(images=10, detections=(5, 5), confidence=(0, 0, 0, 0, 0, 10, 0, 0, 0, 0))
    # |0.5 - 1| * 2 / (2 + 1) = 1/3, though each class keeps its share of the detections.
    assert drift.score(base, half).value == pytest.approx(1 / 3)


def test_the_window_forgets_images_older_than_its_size() -> None:
    window = drift.Window(size=2, classes=2)
    for image in (boxes((0.95, 0)), boxes((0.95, 1)), boxes((0.95, 1))):
        window.add(drift.counts(image, 2))
    assert window.tally().images == 2
    assert window.tally().detections == (0, 2)


def test_a_baseline_file_round_trips_and_other_edges_are_refused() -> None:
    base = drift.tally([boxes((0.5, 0))], classes=1)
    assert drift.Tally.from_json(base.to_json()) == base
    wrong = base.to_json().replace("0.9]", "0.95]")
    with pytest.raises(ValueError, match="edges"):
        drift.Tally.from_json(wrong)


def test_the_window_size_comes_from_the_environment_and_garbage_is_refused() -> None:
    assert drift.window_size({}) == drift.DEFAULT_WINDOW
    assert drift.window_size({drift.WINDOW_ENV: "0"}) == 0
    with pytest.raises(ValueError, match=drift.WINDOW_ENV):
        drift.window_size({drift.WINDOW_ENV: "-5"})


@dataclasses.dataclass
class FakeMetric:
    labels: dict[str, str]
    value: float = 0.0
    sends: int = 0

    def increment(self, value: float) -> None:
        self.value += value
        self.sends += 1

    def set(self, value: float) -> None:
        self.value = value
        self.sends += 1


class FakeFamily:
    COUNTER, GAUGE = "counter", "gauge"
    created: dict[str, list[FakeMetric]]
    # The real stub deletes a family's series from the server when the family is garbage-collected.
    alive: ClassVar[weakref.WeakSet[FakeFamily]] = weakref.WeakSet()

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name
        FakeFamily.created[name] = []
        FakeFamily.alive.add(self)

    def Metric(self, labels: dict[str, str]) -> FakeMetric:  # noqa: N802: the stub's own name
        metric = FakeMetric(labels)
        FakeFamily.created[self.name].append(metric)
        return metric


class FakeStub:
    MetricFamily = FakeFamily


def value(name: str, **labels: str) -> float:
    (found,) = [m for m in FakeFamily.created[name] if labels.items() <= m.labels.items()]
    return found.value


def monitor(baseline: drift.Tally | None, size: int = 4, skip: int = 0) -> drift.Monitor:
    FakeFamily.created = {}
    stub: Any = FakeStub
    return drift.Monitor(stub, "shapes", {0: "circle", 1: "square"}, baseline, size=size, skip=skip)


def test_the_monitor_exports_counters_and_a_score_that_rises_on_blank_answers() -> None:
    base = drift.tally([boxes((0.95, 0), (0.85, 1))] * 4, classes=2)
    watched = monitor(base, skip=1)
    watched.observe([boxes()])  # Triton's warm-up: not counted
    assert value("kestrel_images_total") == 0
    watched.observe([boxes((0.95, 0), (0.85, 1))] * 4)
    assert value("kestrel_images_total") == 4
    assert value("kestrel_detections_total", **{"class": "square"}) == 4
    assert value("kestrel_drift_baseline_images") == 4
    assert value("kestrel_drift_window_images") == 4
    assert value("kestrel_drift_score") == 0.0
    watched.observe([boxes()] * 4)
    assert value("kestrel_drift_score") == 1.0
    assert value("kestrel_drift_class_change", **{"class": "circle"}) == -1.0
    assert value("kestrel_detections_total", **{"class": "circle"}) == 4  # counters keep counting, windows forget


def test_the_monitor_keeps_its_metric_families_alive() -> None:
    watched = monitor(drift.tally([boxes((0.95, 0))], classes=2))
    gc.collect()
    assert {f.name for f in FakeFamily.alive} == set(FakeFamily.created)
    del watched


def test_without_a_baseline_the_monitor_counts_but_exports_no_score() -> None:
    watched = monitor(None)
    watched.observe([boxes((0.5, 1))])
    assert value("kestrel_drift_baseline_images") == 0
    assert value("kestrel_images_total") == 1
    assert "kestrel_drift_score" not in FakeFamily.created


def test_a_batch_sends_only_the_counters_that_moved() -> None:
    watched = monitor(drift.tally([boxes((0.95, 0))], classes=2))
    watched.observe([boxes((0.95, 0))])
    square = [m for m in FakeFamily.created["kestrel_detections_total"] if m.labels["class"] == "square"]
    assert square[0].sends == 0
    # An unchanged per-class rate is not sent again either.
    changes = FakeFamily.created["kestrel_drift_class_change"]
    watched.observe([boxes((0.95, 0))])
    assert [m.sends for m in changes] == [0, 0]
