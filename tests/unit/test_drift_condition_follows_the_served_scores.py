"""The Drift condition, pass by pass against an in-memory API and the /metrics page of a real Triton that served a
built engine (tests/fixtures/triton-metrics/drift-blank-images.txt: its window held blank images only, score 1;
tests/engine/test_engine_triton_exports_output_drift.py writes such a page). The checks reconciler reads the pages;
the drift reconciler judges them."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.api import spec as specs
from kestrel.manifests import labels
from kestrel.reconcilers import context, summary
from kestrel.reconcilers.serving import checks, drift
from kestrel.serving import metrics, probes, smoke
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics"
DRIFTED = (FIXTURES / "drift-blank-images.txt").read_text().replace('model="shapes"', 'model="cams"')
URL = "http://10.0.0.1:8002/metrics"


def _pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "vision", "labels": labels.selector("cams", "triton")},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _page(score: float = 1.0, window: int = 10, baseline: int = 10) -> str:
    return (
        DRIFTED.replace('kestrel_drift_score{model="cams"} 1', f'kestrel_drift_score{{model="cams"}} {score}')
        .replace(
            'kestrel_drift_window_images{model="cams"} 10', f'kestrel_drift_window_images{{model="cams"}} {window}'
        )
        .replace(
            'kestrel_drift_baseline_images{model="cams"} 10',
            f'kestrel_drift_baseline_images{{model="cams"}} {baseline}',
        )
    )


def _object(monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = body({"mode": "disabled"})
    obj["spec"]["monitoring"] = monitoring or {"drift": {"window": 10}}
    obj["status"] = {"revision": {"current": "ab" * 32}}
    return obj


def _pass(
    kube: FakeKube, obj: dict[str, Any], pages: dict[str, str], settings: operator_settings.Settings = SETTINGS
) -> context.Context:
    ctx = context.Context.load(kube, obj, T0)

    def get(url: str) -> str:
        if url not in pages:
            raise OSError(f"connection refused: {url}")
        return pages[url]

    def check(target: smoke.Target, timeout: float, recorded: probes.Probes | None) -> smoke.Outcome:
        return smoke.Outcome(True, "answered", 1.0)

    checks.reconcile(ctx, settings, check, get)
    drift.reconcile(ctx, settings)
    obj["status"] = ctx.status.to_wire()
    return ctx


def _drift(ctx: context.Context) -> conditions.Condition:
    found = ctx.condition(conditions.DRIFT)
    assert found is not None
    return found


@pytest.fixture
def kube() -> FakeKube:
    found = FakeKube()
    found.put(_pod("cams-triton-1", "10.0.0.1"))
    return found


def test_the_real_page_parses_into_the_pods_drift() -> None:
    found = metrics.model_reading(metrics.parse(DRIFTED), "cams").drift
    assert found is not None
    assert (found.baseline_images, found.window_images, found.score) == (10, 10, 1.0)
    assert found.changes["cross"] == pytest.approx(-1.1)


def test_drift_turns_true_once_with_one_warning_and_names_the_classes_that_moved(kube: FakeKube) -> None:
    obj = _object()
    ctx = _pass(kube, obj, {URL: _page(score=0.1)})
    assert (_drift(ctx).status, _drift(ctx).reason) == ("False", drift.WITHIN)
    assert "0.100 within 0.3" in _drift(ctx).message
    ctx = _pass(kube, obj, {URL: DRIFTED})
    condition = _drift(ctx)
    assert (condition.status, condition.reason) == ("True", drift.DRIFTED)
    assert "1.000 above 0.3" in condition.message and "cross -1.10, circle -0.90, square -0.70" in condition.message
    assert [(kind, reason) for kind, reason, _ in ctx.events if reason == drift.DRIFTED] == [("Warning", drift.DRIFTED)]
    again = _pass(kube, obj, {URL: DRIFTED})
    assert not [e for e in again.events if e[1] == drift.DRIFTED]  # a transition warns, a state that stays does not
    # A warning, not an outage: Ready does not count it.
    assert "Drift" not in summary.ready(again.status.conditions or [])[2]


def test_drift_is_unknown_with_the_reason_until_it_can_be_judged(kube: FakeKube) -> None:
    cases = [
        ({URL: _page(window=4)}, drift.NOT_ENOUGH_TRAFFIC, "4 of the 10 images"),
        ({URL: _page(baseline=0)}, drift.NO_BASELINE, "spec.validation.dataset"),
        ({URL: DRIFTED.replace("kestrel_drift", "other_drift")}, drift.NOT_EXPORTED, "exports no drift metrics"),
        ({}, drift.NOT_READ, "not read"),
    ]
    for pages, reason, said in cases:
        ctx = _pass(kube, _object(), pages)
        assert (_drift(ctx).status, _drift(ctx).reason) == ("Unknown", reason), pages.keys()
        assert said in _drift(ctx).message
    off = _pass(kube, _object({"drift": {"enabled": False}}), {URL: DRIFTED})
    assert (_drift(off).status, _drift(off).reason) == ("Unknown", conditions.DISABLED)
    no_checks = dataclasses.replace(SETTINGS, serving_checks=False)
    ctx = _pass(kube, _object(), {URL: DRIFTED}, no_checks)
    assert (_drift(ctx).status, _drift(ctx).reason) == ("Unknown", drift.CHECKS_OFF)


def test_the_worst_full_pod_decides(kube: FakeKube) -> None:
    kube.put(_pod("cams-triton-2", "10.0.0.2"))
    pages = {URL: _page(score=0.1), "http://10.0.0.2:8002/metrics": _page(score=0.9)}
    condition = _drift(_pass(kube, _object(), pages))
    assert (
        condition.status == "True" and "pod cams-triton-2" in condition.message and "2 of 2 pods" in condition.message
    )
    spec = specs.DriftSpec(window=10, threshold=0.95)
    readings = {"a": metrics.model_reading(metrics.parse(_page(score=0.9)), "cams")}
    assert drift.judge(spec, True, readings)[0] == "False"
