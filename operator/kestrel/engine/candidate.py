"""Build one candidate engine and put it through every check: accuracy, parity, preprocessing, latency, the gate.

The source model's numbers (its accuracy, its outputs on the parity batch, its fingerprint) are measured once per
build in `Baseline` and shared by every candidate, so candidates are compared against one reference.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.engine import (
    accuracy,
    datasets,
    errors,
    export,
    gate,
    obfuscate,
    profile,
    progress,
    runners,
    validate,
)
from kestrel.serving.backends import drift, postprocess, preprocess

PARITY_IMAGES = 8


@dataclasses.dataclass(frozen=True)
class Baseline:
    source: runners.Runner
    accuracy: accuracy.Accuracy | None
    latency: list[profile.Latency]
    fingerprint: validate.Fingerprint
    parity_batch: npt.NDArray[np.float32]
    dataset: datasets.Dataset | None


@dataclasses.dataclass(frozen=True)
class Settings:
    export: export.ExportSettings
    thresholds: gate.Thresholds
    serving_preprocessing: preprocess.Preprocessing
    serving_postprocessing: postprocess.Postprocessing
    threads: int
    gpu: bool
    validation_limit: int | None = None
    iterations: int = 20
    obfuscate: bool = False  # spec.security.obfuscate: the gate judges the obfuscated engine, which is served


@dataclasses.dataclass(frozen=True)
class Outcome:
    candidate: export.Candidate
    exported: export.Exported | None
    verdict: gate.Verdict
    numbers: dict[str, Any]
    # What the engine detects on the validation images through the served postprocessing: the served model's drift
    # baseline (serving/backends/drift.py). None without a validation set.
    drift_baseline: drift.Tally | None = None

    @property
    def p50_ms(self) -> float:
        return float(self.numbers.get("p50Ms") or float("inf"))


def baseline(checkpoint: Path, settings: Settings, dataset: datasets.Dataset | None, stride: int) -> Baseline:
    batch = settings.export.batch
    source = runners.torch_source(checkpoint, settings.threads, batch)
    # The source is scored with Ultralytics' own preprocessing (by construction equal to serving's default).
    reference = preprocess.Preprocessing(imgsz=settings.export.imgsz, stride=stride)
    progress.report("baseline")
    measured = accuracy.measure(source, dataset, reference, settings.validation_limit, "baseline") if dataset else None
    if dataset:
        images = [datasets.read_rgb(p) for p in dataset.images("val", limit=PARITY_IMAGES)]
    else:  # without a validation set, parity still runs on the probe image
        images = [validate.probe_image()]
    parity_batch, _ = preprocess.batch(images, reference)
    return Baseline(
        source=source,
        accuracy=measured,
        latency=profile.profile(source, settings.export.imgsz, batch, settings.iterations),
        fingerprint=validate.source_fingerprint(settings.export.imgsz, stride),
        parity_batch=parity_batch,
        dataset=dataset,
    )


def evaluate(
    checkpoint: Path, candidate: export.Candidate, settings: Settings, base: Baseline, workdir: Path
) -> Outcome:
    exported = export.export(checkpoint, candidate, settings.export, workdir, settings.gpu)
    engine = runners.for_engine(
        candidate.format, exported.path, settings.threads, settings.export.batch, candidate.precision
    )
    obfuscation_delta = None
    if settings.obfuscate:
        hidden = obfuscate.obfuscate(candidate.format, exported.path, workdir / candidate.name / "obfuscated")
        plain, engine = (
            engine,
            runners.for_engine(candidate.format, hidden, settings.threads, settings.export.batch, candidate.precision),
        )
        obfuscation_delta = obfuscate.check_parity(plain, engine, base.parity_batch)
        exported = dataclasses.replace(exported, path=hidden)
    progress.report("validate")
    started = time.monotonic()
    served: list[postprocess.Array] = []
    classes: list[int] = []

    def observe(raw: postprocess.Array, transform: postprocess.Array) -> None:
        classes[:] = [raw.shape[0] - 4]  # rows: 4 box coordinates, then one score per class
        served.append(postprocess.detections(raw, transform, settings.serving_postprocessing))

    measured = (
        accuracy.measure(
            engine, base.dataset, settings.serving_preprocessing, settings.validation_limit, observe=observe
        )
        if base.dataset
        else None
    )
    baseline = drift.tally(served, classes[0]) if served else None
    parity = validate.parity(base.source, engine, base.parity_batch)
    serving = validate.serving_fingerprint(settings.serving_preprocessing)
    differences = base.fingerprint.differences(serving)
    latency = profile.profile(engine, settings.export.imgsz, settings.export.batch, settings.iterations)
    verdict = gate.decide(
        settings.thresholds,
        gate.Measurements(
            map50_95_source=base.accuracy.map50_95 if base.accuracy else None,
            map50_95_engine=measured.map50_95 if measured else None,
            max_output_delta=parity.max_abs,
            p95_ms_batch1=latency[0].p95_ms,
            preprocessing_differences=differences,
        ),
    )
    numbers = _numbers(base, measured, parity, latency, exported)
    if obfuscation_delta is not None:
        numbers["obfuscatedMaxDeltaToPlain"] = obfuscation_delta
    numbers["validationSeconds"] = round(time.monotonic() - started, 1)
    numbers["servingFingerprint"] = dataclasses.asdict(serving)
    return Outcome(candidate, exported, verdict, numbers, baseline)


def failed_export(candidate: export.Candidate, error: errors.ExportError) -> Outcome:
    """An `auto` candidate that cannot be built here loses with the reason, instead of failing the whole build."""
    verdict = gate.Verdict(False, "ExportFailed", [], str(error))
    return Outcome(candidate, None, verdict, {})


def _numbers(
    base: Baseline,
    measured: accuracy.Accuracy | None,
    parity: validate.Parity,
    latency: list[profile.Latency],
    exported: export.Exported,
) -> dict[str, Any]:
    batch1, largest = latency[0], latency[-1]
    source_p50 = base.latency[0].p50_ms
    return {
        "mapSource": base.accuracy.map50_95 if base.accuracy else None,
        "mapEngine": measured.map50_95 if measured else None,
        "map50Source": base.accuracy.map50 if base.accuracy else None,
        "map50Engine": measured.map50 if measured else None,
        "validationImages": measured.images if measured else 0,
        "maxOutputDelta": parity.max_abs,
        "meanOutputDelta": parity.mean_abs,
        "maxScoreDelta": parity.max_abs_scores,
        "p50Ms": batch1.p50_ms,
        "p95Ms": batch1.p95_ms,
        "throughput": largest.throughput_ips,
        "latency": [dataclasses.asdict(item) for item in latency],
        "sourceLatency": [dataclasses.asdict(item) for item in base.latency],
        "speedup": round(source_p50 / batch1.p50_ms, 2) if batch1.p50_ms else None,
        "sizeBytes": exported.size_bytes,
        "exportSeconds": round(exported.seconds, 1),
    }
