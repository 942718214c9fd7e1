"""Triton's Prometheus metrics, parsed into per-model readings; pure: text in, numbers out.

Triton exports cumulative counters per model and version since the server started: requests that succeeded,
requests that failed (by reason), and the time successful requests spent queued and in total. With
`--metrics-config=summary_latencies=true` (manifests/analysis.py turns it on where a canary bound needs it) it
also exports summaries whose quantiles cover a sliding window of recent requests. Counters are summed over
versions and failure reasons; a quantile is the worst over versions, since quantiles cannot be added.

    text = pod_http.get(".../metrics", timeout=2.0).decode()
    reading = metrics.model_reading(metrics.parse(text), "cams")    # MetricsError if "cams" is not there
    reading.requests, reading.failures, reading.queue_p50_ms(), reading.queue_mean_ms()

Several pods of one model: `combine()` adds their counters and keeps each quantile's worst pod.

A model built by this Kestrel also exports its own output-drift gauges (serving/backends/drift.py): a reading carries
them as `drift`, per pod (a window and its score belong to one pod; they are not combined).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

from prometheus_client import parser

from kestrel.api import errors

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
QUEUE_DURATION = "nv_inference_queue_duration_us"
REQUEST_DURATION = "nv_inference_request_duration_us"
QUEUE_SUMMARY = "nv_inference_queue_summary_us"
REQUEST_SUMMARY = "nv_inference_request_summary_us"
_COUNTERS = (SUCCESS, FAILURE, QUEUE_DURATION, REQUEST_DURATION)
_SUMMARIES = (QUEUE_SUMMARY, REQUEST_SUMMARY)
DRIFT_BASELINE = "kestrel_drift_baseline_images"
DRIFT_WINDOW = "kestrel_drift_window_images"
DRIFT_SCORE = "kestrel_drift_score"
DRIFT_CLASS_CHANGE = "kestrel_drift_class_change"
_DRIFT = (DRIFT_BASELINE, DRIFT_WINDOW, DRIFT_SCORE, DRIFT_CLASS_CHANGE)


class MetricsError(errors.KestrelError, ValueError):
    """Triton's metrics could not be read: the text is not Prometheus' exposition format or lacks the model's
    series (here), or the endpoint did not answer (the operator's readers, which say which pod)."""


@dataclasses.dataclass(frozen=True)
class Drift:
    """One pod's output drift: its window of recent images against the build's validation baseline."""

    baseline_images: int  # 0: the engine was built without a validation set, so there is no score
    window_images: int
    score: float | None
    changes: Mapping[str, float] = dataclasses.field(default_factory=dict)  # class -> window minus baseline rate


@dataclasses.dataclass(frozen=True)
class Reading:
    """One model's numbers: counters since the server started, quantiles (µs) over Triton's recent window."""

    model: str
    success: int = 0
    failure: int = 0
    queue_us: float = 0.0  # cumulative queue time of successful requests
    request_us: float = 0.0  # cumulative end-to-end time of successful requests
    # (family, quantile) -> µs, e.g. (QUEUE_SUMMARY, 0.5); empty when summary latencies are off.
    quantiles: Mapping[tuple[str, float], float] = dataclasses.field(default_factory=dict)
    sources: int = 1  # how many /metrics pages (pods) were read into this one
    drift: Drift | None = None  # None: the page has no kestrel_drift_* series for the model

    @property
    def requests(self) -> int:
        return self.success + self.failure

    def quantile_ms(self, family: str, quantile: float) -> float | None:
        """A summary quantile in ms; None when Triton does not export it (summary latencies off, or no traffic)."""
        found = self.quantiles.get((family, quantile))
        return found / 1000 if found is not None else None

    def queue_p50_ms(self) -> float | None:
        return self.quantile_ms(QUEUE_SUMMARY, 0.5)

    def request_p95_ms(self) -> float | None:
        return self.quantile_ms(REQUEST_SUMMARY, 0.95)

    def queue_mean_ms(self) -> float | None:
        """Mean queue time of successful requests since the server started; None before any succeeded."""
        return self.queue_us / self.success / 1000 if self.success else None


def _family(name: str) -> str:
    # The parser names a counter's samples `<family>_total` (OpenMetrics); Triton's text has no suffix.
    return name.removesuffix("_total")


def parse(text: str) -> dict[str, Reading]:
    """Every model with a request counter in one /metrics page, by model name (the `model` label)."""
    counters: dict[str, dict[str, float]] = {}
    quantiles: dict[str, dict[tuple[str, float], float]] = {}
    drifts: dict[str, dict[str, float]] = {}
    changes: dict[str, dict[str, float]] = {}
    seen: set[str] = set()
    try:
        families = list(parser.text_string_to_metric_families(text))
    except ValueError:  # the parser's message quotes the page, which a pod wrote: never into status or logs
        raise MetricsError(f"not Prometheus text ({len(text)} characters; not quoted)") from None
    for family in families:
        name = _family(family.name)
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            if name in _COUNTERS and _family(sample.name) == name:
                if name == SUCCESS:
                    seen.add(model)
                totals = counters.setdefault(model, {})
                totals[name] = totals.get(name, 0.0) + sample.value
            elif name in _SUMMARIES and sample.name == name and "quantile" in sample.labels:
                if not math.isfinite(sample.value):
                    continue  # Triton writes NaN for a quantile with no requests in its window
                key = (name, float(sample.labels["quantile"]))
                found = quantiles.setdefault(model, {})
                found[key] = max(found.get(key, float(sample.value)), float(sample.value))
            elif name == DRIFT_CLASS_CHANGE and "class" in sample.labels:
                changes.setdefault(model, {})[sample.labels["class"]] = float(sample.value)
            elif name in _DRIFT:
                drifts.setdefault(model, {})[name] = float(sample.value)
    return {
        model: Reading(
            model=model,
            success=int(counters[model].get(SUCCESS, 0)),
            failure=int(counters[model].get(FAILURE, 0)),
            queue_us=counters[model].get(QUEUE_DURATION, 0.0),
            request_us=counters[model].get(REQUEST_DURATION, 0.0),
            quantiles=quantiles.get(model, {}),
            drift=_drift(drifts.get(model), changes.get(model, {})),
        )
        for model in sorted(seen)
    }


def _drift(found: Mapping[str, float] | None, changes: Mapping[str, float]) -> Drift | None:
    if found is None or DRIFT_BASELINE not in found or DRIFT_WINDOW not in found:
        return None
    score = found.get(DRIFT_SCORE)
    return Drift(
        baseline_images=int(found[DRIFT_BASELINE]),
        window_images=int(found[DRIFT_WINDOW]),
        score=score if score is not None and math.isfinite(score) else None,
        changes=changes,
    )


def model_reading(readings: Mapping[str, Reading], model: str) -> Reading:
    """The model's reading; a page without its request counter is an error, never an empty (idle-looking) reading."""
    found = readings.get(model)
    if found is None:
        raise MetricsError(f"the metrics have no {SUCCESS} series for model {model!r}")
    return found


def combine(readings: Iterable[Reading]) -> Reading:
    """One model's readings from several pods: counters added, each quantile the slowest pod's."""
    readings = list(readings)
    if not readings:
        raise MetricsError("no readings to combine")
    models = {r.model for r in readings}
    if len(models) != 1:
        raise MetricsError(f"readings of different models cannot be combined: {sorted(models)}")
    quantiles: dict[tuple[str, float], float] = {}
    for reading in readings:
        for key, value in reading.quantiles.items():
            quantiles[key] = max(quantiles.get(key, value), value)
    return Reading(
        model=readings[0].model,
        success=sum(r.success for r in readings),
        failure=sum(r.failure for r in readings),
        queue_us=sum(r.queue_us for r in readings),
        request_us=sum(r.request_us for r in readings),
        quantiles=quantiles,
        sources=sum(r.sources for r in readings),
    )
