"""Output drift of the served model: what it detects now, against what it detected on the validation images.

Copied into the Triton repository beside the model that runs the postprocessing (the fused model of the Python
runtime, or `<name>-postprocess` of an ensemble) and imported by `kestrel.engine` to record the baseline: the build
and the server tally detections with the same code. numpy and the standard library only.

A tally counts, over some images, the detections of each class and the detections in each confidence bucket
(fixed edges, `EDGES`). The build writes the tally of the validation images (`BASELINE_FILE`, beside model.py);
the served model keeps the tally of its last `window` images and exports, through Triton's custom metrics:

    kestrel_images_total{model}                             counter: images answered
    kestrel_detections_total{model,class}                   counter: boxes answered, per class name
    kestrel_detections_by_confidence_total{model,bucket}    counter: boxes answered, per confidence bucket
    kestrel_drift_baseline_images{model}                    gauge: validation images of the baseline (0: none)
    kestrel_drift_window_images{model}                      gauge: images in the window (at most its size)
    kestrel_drift_score{model}                              gauge: the score below (only with a baseline)
    kestrel_drift_class_change{model,class}                 gauge: window minus baseline, detections per image

The score, in [0, 1] (0: the window looks like validation; 1: nothing in common), is the larger of
  - the Bray-Curtis dissimilarity of the mean detections per image per class, b (baseline) and w (window):
        sum_c |w_c - b_c| / sum_c (w_c + b_c)
    It sees a class mix that moved and a rate that moved alike (blank images: every w_c is 0, the score is 1), where
    a distance between normalized class shares would miss a model that finds half as much of everything;
  - the total variation distance of the confidence histograms, 1/2 sum_k |p_k - q_k| (0 when either side has no
    detections: the class part already says so). A model that grows unsure of the same boxes moves only this.
Both are bounded, symmetric, and need no smoothing of empty buckets (the population stability index, the usual
alternative, is unbounded and undefined on an empty bucket, which a blank-image window makes of every class).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BASELINE_FILE = "baseline.json"
# Upper edges of the confidence buckets; the last bucket runs to 1. Fixed: a baseline and a window compare bucket
# for bucket, and the file records them so that a different build's edges are refused, not misread.
EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BUCKETS = tuple(
    f"{low:.1f}-{high:.1f}" for low, high in zip((0.0, *EDGES), (*EDGES, 1.0), strict=True)
)  # label values, e.g. "0.3-0.4"
# How many recent images the served model compares (the Deployment sets it from spec.monitoring.drift.window);
# 0 turns the monitor off: no kestrel_* metrics at all.
WINDOW_ENV = "KESTREL_DRIFT_WINDOW"
DEFAULT_WINDOW = 1000
# A per-class change gauge is sent when it moved more than this (detections per image) since it was last sent: each
# metric update is a message from the Python stub to the server, and a model of 80 classes would send 80 a batch.
CHANGE_TOLERANCE = 0.01

Array = npt.NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class Tally:
    """Detections over `images` images: per class, and per confidence bucket."""

    images: int
    detections: tuple[int, ...]
    confidence: tuple[int, ...]

    def rates(self) -> npt.NDArray[np.float64]:
        """Mean detections per image, per class (zeros over no images)."""
        return np.asarray(self.detections, dtype=np.float64) / max(self.images, 1)

    def to_json(self) -> str:
        return json.dumps({"edges": list(EDGES), **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Tally:
        data = json.loads(text)
        if tuple(data.get("edges", ())) != EDGES:
            raise ValueError(f"{BASELINE_FILE}: confidence edges {data.get('edges')} are not this model's {EDGES}")
        if len(data["confidence"]) != len(BUCKETS):
            raise ValueError(f"{BASELINE_FILE}: {len(data['confidence'])} confidence buckets, not {len(BUCKETS)}")
        return cls(int(data["images"]), tuple(data["detections"]), tuple(data["confidence"]))


def counts(detections: Array, classes: int) -> npt.NDArray[np.int64]:
    """One image's detections (n x 6: x0 y0 x1 y1 score class) -> its tally row: per-class counts, then buckets."""
    labels = detections[:, 5].astype(np.int64)
    buckets = np.searchsorted(np.asarray(EDGES, dtype=np.float32), detections[:, 4], side="right")
    return np.concatenate(
        [np.bincount(labels, minlength=classes)[:classes], np.bincount(buckets, minlength=len(BUCKETS))]
    )


def tally(per_image: Sequence[Array], classes: int) -> Tally:
    rows = [counts(d, classes) for d in per_image]
    total = np.sum(rows, axis=0) if rows else np.zeros(classes + len(BUCKETS), dtype=np.int64)
    return _from_row(len(rows), total, classes)


def _from_row(images: int, total: npt.NDArray[np.int64], classes: int) -> Tally:
    return Tally(images, tuple(int(v) for v in total[:classes]), tuple(int(v) for v in total[classes:]))


@dataclasses.dataclass(frozen=True)
class Score:
    value: float  # max(classes, confidence)
    classes: float  # Bray-Curtis dissimilarity of the per-class rates
    confidence: float  # total variation distance of the confidence histograms
    change: tuple[float, ...]  # per class: window minus baseline, detections per image


def score(baseline: Tally, window: Tally) -> Score:
    b, w = baseline.rates(), window.rates()
    if len(b) != len(w):
        raise ValueError(f"the baseline has {len(b)} classes, the window {len(w)}")
    total = float((b + w).sum())
    classes = float(np.abs(w - b).sum() / total) if total > 0 else 0.0
    p, q = np.asarray(baseline.confidence, dtype=np.float64), np.asarray(window.confidence, dtype=np.float64)
    confidence = float(np.abs(p / p.sum() - q / q.sum()).sum() / 2) if p.sum() > 0 and q.sum() > 0 else 0.0
    return Score(max(classes, confidence), classes, confidence, tuple(float(v) for v in w - b))


class Window:
    """The tally of the last `size` images, kept as a ring of per-image rows and their running sum."""

    def __init__(self, size: int, classes: int) -> None:
        self._rows = np.zeros((size, classes + len(BUCKETS)), dtype=np.int64)
        self._sum = np.zeros(classes + len(BUCKETS), dtype=np.int64)
        self._classes, self._next, self.images = classes, 0, 0

    def add(self, row: npt.NDArray[np.int64]) -> None:
        self._sum += row - self._rows[self._next]
        self._rows[self._next] = row
        self._next = (self._next + 1) % len(self._rows)
        self.images = min(self.images + 1, len(self._rows))

    def tally(self) -> Tally:
        return _from_row(self.images, self._sum, self._classes)


def window_size(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get(WINDOW_ENV, str(DEFAULT_WINDOW))
    if not text.isdigit():
        raise ValueError(f"{WINDOW_ENV}={text!r}: expected a whole number of images (0 turns drift metrics off)")
    return int(text)


def warmup_executions(config: Mapping[str, Any]) -> int:
    """How many executions Triton's warm-up runs before the model is ready: not clients' images, never counted."""
    return sum(max(int(sample.get("count", 1) or 1), 1) for sample in config.get("model_warmup", []))


class Monitor:
    """The served model's side: tallies each answered image and keeps Triton's kestrel_* metrics current."""

    def __init__(
        self, pb: Any, model: str, names: Mapping[int, str], baseline: Tally | None, *, size: int, skip: int = 0
    ) -> None:
        classes = len(names)
        if baseline is not None and len(baseline.detections) != classes:
            raise ValueError(f"{BASELINE_FILE} counts {len(baseline.detections)} classes, the model has {classes}")
        self._baseline, self._classes, self._skip = baseline, classes, skip
        self._window = Window(size, classes)
        labels = {"model": model}
        counter, gauge = pb.MetricFamily.COUNTER, pb.MetricFamily.GAUGE

        # Held for the model's life: the stub deletes a family's series from the server when the family is collected.
        self._families: list[Any] = []

        def family(name: str, description: str, kind: Any) -> Any:
            self._families.append(pb.MetricFamily(name=name, description=description, kind=kind))
            return self._families[-1]

        self._images = family("kestrel_images_total", "Images answered", counter).Metric(labels=labels)
        detections = family("kestrel_detections_total", "Detections answered, per class", counter)
        self._detections = [detections.Metric(labels={**labels, "class": names[i]}) for i in range(classes)]
        by_confidence = family("kestrel_detections_by_confidence_total", "Detections per confidence bucket", counter)
        self._buckets = [by_confidence.Metric(labels={**labels, "bucket": b}) for b in BUCKETS]
        baseline_images = family("kestrel_drift_baseline_images", "Validation images of the drift baseline", gauge)
        self._baseline_images = baseline_images.Metric(labels=labels)
        self._baseline_images.set(baseline.images if baseline else 0)
        self._window_images = family("kestrel_drift_window_images", "Images in the drift window", gauge).Metric(
            labels=labels
        )
        self._score = self._changes = None
        if baseline is not None:
            self._score = family(
                "kestrel_drift_score", "Output drift against validation: 0 alike, 1 nothing in common", gauge
            ).Metric(labels=labels)
            changes = family("kestrel_drift_class_change", "Window minus baseline, detections per image", gauge)
            self._changes = [changes.Metric(labels={**labels, "class": names[i]}) for i in range(classes)]
        self._sent = np.zeros(classes, dtype=np.float64)  # the change gauges' values as last sent

    def observe(self, per_image: Sequence[Array]) -> None:
        """One execution's answers, one array of detections per image."""
        if self._skip:
            self._skip -= 1
            return
        if not per_image:
            return
        rows = [counts(d, self._classes) for d in per_image]
        for row in rows:
            self._window.add(row)
        total = np.sum(rows, axis=0)
        self._images.increment(len(rows))
        for metric, value in zip(self._detections + self._buckets, total, strict=True):
            if value:  # only what moved: each update is a message to the server
                metric.increment(int(value))
        self._window_images.set(self._window.images)
        if self._baseline is None or self._score is None or self._changes is None:
            return
        found = score(self._baseline, self._window.tally())
        self._score.set(found.value)
        change = np.asarray(found.change)
        for index in np.flatnonzero(np.abs(change - self._sent) > CHANGE_TOLERANCE):
            self._changes[index].set(float(change[index]))
            self._sent[index] = change[index]


def from_triton(pb: Any, args: Mapping[str, str], config: Mapping[str, Any], model: str) -> Monitor | None:
    """The monitor of a Python-backend model: its class names from the `names` parameter, the baseline beside its
    model.py when the build recorded one; None when the window is 0 (spec.monitoring.drift.enabled false)."""
    size = window_size()
    if not size:
        return None
    params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
    names = {int(k): str(v) for k, v in json.loads(params["names"]).items()}
    path = Path(args["model_repository"]) / args["model_version"] / BASELINE_FILE
    baseline = Tally.from_json(path.read_text(encoding="utf-8")) if path.exists() else None
    return Monitor(pb, model, names, baseline, size=size, skip=warmup_executions(config))
