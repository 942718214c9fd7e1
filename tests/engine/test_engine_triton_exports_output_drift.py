"""The real Triton (nvidia-pytriton's, Python backend) serves a built engine with its drift baseline: its /metrics
carry the kestrel_* counters and a drift score that stays low on validation images and rises on images unlike them,
and the operator's parser and Drift judgement read that page as they read a pod's."""

from __future__ import annotations

import os
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kestrel.api import spec as specs
from kestrel.engine import datasets
from kestrel.reconcilers.serving import drift as drift_reconciler
from kestrel.serving import metrics
from kestrel.serving.backends import drift
from synthetic import detector
from testbed.ports import free_port
from tests.engine import builds
from tests.engine.test_engine_triton_serves_the_validated_pipeline import triton

pytestmark = pytest.mark.slow
pytest.importorskip("pytriton")
VAL_IMAGES = 10  # also the window: the smallest spec.monitoring.drift.window allows


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def _reading(port: int) -> metrics.Reading:
    return metrics.model_reading(metrics.parse(_page(port)), "shapes")


def _send(client: object, images: list[np.ndarray[Any, Any]]) -> list[float]:
    import tritonclient.http as http  # noqa: PLC0415

    assert isinstance(client, http.InferenceServerClient)
    took = []
    for image in images:
        tensor = http.InferInput("IMAGE", [1, *image.shape], "UINT8")
        tensor.set_data_from_numpy(image[None])
        started = time.perf_counter()
        client.infer("shapes", [tensor])
        took.append((time.perf_counter() - started) * 1000)
    return took


def test_the_served_model_scores_drift_against_its_validation_baseline(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=VAL_IMAGES)
    built = builds.python_runtime_engine(shapes, tmp_path / "out")
    assert built.passed and built.repository is not None
    _, manifest = builds.check_outputs(tmp_path / "out")
    assert manifest["driftBaseline"]["recorded"] and manifest["driftBaseline"]["images"] == VAL_IMAGES
    baseline = drift.Tally.from_json((built.repository / "shapes" / "1" / drift.BASELINE_FILE).read_text())
    assert sum(baseline.detections) > 0, "a baseline of no detections would make every window look alike"
    assert "shapes/1/baseline.json" in {entry["path"] for entry in manifest["files"]}

    images = [datasets.read_rgb(path) for path in datasets.load(shapes.data_yaml).images("val")]
    inverted = [255 - image for image in images]
    blank = [np.full_like(image, 114) for image in images]
    spec = specs.DriftSpec(window=VAL_IMAGES, threshold=0.3)
    import tritonclient.http as http  # noqa: PLC0415

    port = free_port()
    env = {drift.WINDOW_ENV: str(VAL_IMAGES)}
    with triton(built.repository, tmp_path / "backends", metrics_port=port, env=env) as http_port:
        client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
        found = _reading(port).drift
        # The warm-up's blank image is Triton's, not a client's: not in the window.
        assert found is not None, _page(port)
        assert (found.baseline_images, found.window_images) == (VAL_IMAGES, 0)
        _send(client, images)
        on_validation = _reading(port)
        _send(client, inverted)
        on_inverted = _reading(port)
        _send(client, blank)
        on_blank = _reading(port)
        page = _page(port)
        monitored = _send(client, images * 3)  # timed, beside the same requests with the monitor off below
    assert on_validation.drift is not None and on_validation.drift.score is not None
    assert on_validation.drift.window_images == VAL_IMAGES
    assert on_validation.drift.score < 0.05, on_validation.drift
    assert drift_reconciler.judge(spec, True, {"triton-0": on_validation})[0] == "False"
    assert on_blank.drift is not None and on_blank.drift.score == 1.0, on_blank.drift
    state, reason, message = drift_reconciler.judge(spec, True, {"triton-0": on_blank})
    assert (state, reason) == ("True", drift_reconciler.DRIFTED)
    assert all(change < 0 for change in on_blank.drift.changes.values()), on_blank.drift.changes
    detections = [line for line in page.splitlines() if line.startswith("kestrel_detections_total{")]
    assert len(detections) == len(manifest["sourceModel"]["names"]), (
        detections
    )  # one series per class: bounded by the model
    assert "kestrel_images_total" in page and f'kestrel_images_total{{model="shapes"}} {3 * VAL_IMAGES}' in page
    assert on_inverted.drift is not None
    if out := os.environ.get("KESTREL_DRIFT_PAGE"):  # the unit tests' fixture: a page of this very server
        Path(out).write_text(page)

    # The same engine with the monitor off (spec.monitoring.drift.enabled false): no kestrel_* series at all.
    off = {drift.WINDOW_ENV: "0"}
    with triton(built.repository, tmp_path / "backends-off", metrics_port=port, env=off) as http_port:
        client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
        plain = _send(client, images * 3)
        assert "kestrel_" not in _page(port)
    print(
        f"drift on validation {on_validation.drift.score:.3f}, inverted {on_inverted.drift.score:.3f}, blank "
        f"{on_blank.drift.score:.3f}; {message}; p50 ms with monitor {statistics.median(monitored):.2f} "
        f"(n={len(monitored)}), without {statistics.median(plain):.2f} (n={len(plain)})"
    )
