"""The operator-stepped canary, pass by pass on a fake clock against an in-memory API: replicas per step, windows,
promotion, rollback on a failed analysis, aborts on spec changes, and a resume from nothing but the status.

Each pass builds its context from the object as the API server would return it (the status the previous pass
wrote), so every pass here is also a restarted operator's first pass.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from kestrel.api import spec
from kestrel.manifests import names, triton
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary, serving
from tests.unit.canary_support import (
    CANARY,
    OLD,
    STABLE,
    Kube,
    Metrics,
    at,
    available,
    condition,
    engine_of,
    raw_spec,
    run,
    serving_object,
    validated,
)
from tests.unit.tls_fake_kube import SETTINGS


def test_each_step_scales_the_canary_waits_its_window_and_the_last_promotes() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 50, 100])
    run(kube, obj, at(0), metrics)
    assert engine_of(kube, STABLE) == OLD and engine_of(kube, CANARY) == new
    assert kube.objects[CANARY]["spec"]["replicas"] == 1  # 25 % of 4
    assert condition(obj, "Progressing")["reason"] == "CanaryStep"
    assert "waiting for 1 canary pods" in condition(obj, "Progressing")["message"]
    assert "stepStartedAt" not in obj["status"]["canary"]
    available(kube, STABLE)
    available(kube, CANARY)

    run(kube, obj, at(10), metrics)  # the window starts once the step's pods are all available
    assert obj["status"]["canary"]["stepStartedAt"] == "2026-03-01T08:00:10Z"
    assert "step 1/3, 25%, analysis until 2026-03-01T08:02:10+00:00" in condition(obj, "Progressing")["message"]
    assert metrics.services == [names.canary("cams")]
    metrics.serve(400, 1)
    run(kube, obj, at(129), metrics)  # one second short of the window: nothing judged
    assert obj["status"]["canary"]["step"] == 0 and "analysis" not in obj["status"]["canary"]

    run(kube, obj, at(130), metrics)
    found = obj["status"]["canary"]
    assert (found["step"], found["weight"]) == (1, 50)
    assert found["analysis"] == {"requests": 401, "failures": 1, "errorRate": 0.002494, "passed": True}
    assert kube.objects[CANARY]["spec"]["replicas"] == 2
    assert obj["status"]["revision"]["current"] == OLD
    assert condition(obj, "Available")["status"] == "True"

    available(kube, CANARY)
    run(kube, obj, at(140), metrics)
    metrics.serve(50)
    run(kube, obj, at(260), metrics)
    assert obj["status"]["canary"]["state"] == "Promoting"
    assert obj["status"]["revision"] == {"current": new, "previous": OLD}
    assert engine_of(kube, STABLE) == new  # the stable Deployment moves; the canary stays until it is available
    assert CANARY in kube.objects
    assert condition(obj, "Progressing")["reason"] == "CanaryPromoting"

    available(kube, STABLE)
    run(kube, obj, at(270), metrics)
    assert obj["status"]["canary"]["state"] == "Promoted"
    assert CANARY not in kube.objects
    assert condition(obj, "Progressing")["reason"] == "CanaryPromoted"
    assert condition(obj, "Degraded")["status"] == "False"
    assert [reason for _, reason, _ in kube.events].count("CanaryStepPassed") == 2
    assert "CanaryPromoted" in [reason for _, reason, _ in kube.events]
    assert "RolloutComplete" not in [reason for _, reason, _ in kube.events]  # not a reason Progressing held

    # Later passes with nothing changed keep saying how the revision got there, instead of a new reason.
    promoted, events = condition(obj, "Progressing"), len(kube.events)
    run(kube, obj, at(280), metrics)
    assert condition(obj, "Progressing") == promoted
    assert len(kube.events) == events

    # The stable Deployment rolls again (a pod lost) and comes back: the rolling path speaks for Progressing again.
    kube.objects[STABLE]["status"]["availableReplicas"] = 3
    kube.objects[STABLE]["status"]["readyReplicas"] = 3
    run(kube, obj, at(290), metrics)
    assert condition(obj, "Progressing")["reason"] == "RollingOut"
    available(kube, STABLE)
    run(kube, obj, at(300), metrics)
    assert (condition(obj, "Progressing")["status"], condition(obj, "Progressing")["reason"]) == (
        "False",
        "RolloutComplete",
    )


def test_a_failed_analysis_removes_the_canary_and_leaves_the_stable_serving() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 100], maxErrorRate=0.01, maxP95LatencyMs=20)
    run(kube, obj, at(0), metrics)
    available(kube, STABLE)
    available(kube, CANARY)
    run(kube, obj, at(5), metrics)
    metrics.serve(90, 10, p95_ms=31.5)
    stable_before = copy.deepcopy(kube.objects[STABLE]["spec"])
    run(kube, obj, at(125), metrics)
    assert CANARY not in kube.objects
    assert kube.objects[STABLE]["spec"] == stable_before
    assert obj["status"]["revision"] == {"current": OLD, "failed": new}
    assert obj["status"]["canary"]["state"] == "Failed"
    degraded = condition(obj, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CanaryAnalysisFailed")
    assert "100 requests, 10 failed (error rate 0.1000), p95 31.5 ms" in degraded["message"]
    assert "maxErrorRate 0.01" in degraded["message"] and "maxP95LatencyMs 20" in degraded["message"]
    assert ("Warning", "CanaryAnalysisFailed") in [(kind, reason) for kind, reason, _ in kube.events]
    assert condition(obj, "Available")["status"] == "True"

    # The failed engine is not tried again for this spec.
    run(kube, obj, at(200), metrics)
    assert CANARY not in kube.objects and engine_of(kube, STABLE) == OLD


def test_unreadable_metrics_fail_the_analysis_instead_of_passing_it() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [50, 100])
    run(kube, obj, at(0), metrics)
    available(kube, STABLE)
    available(kube, CANARY)
    metrics.down = True
    run(kube, obj, at(5), metrics)
    assert obj["status"]["revision"]["failed"] == new
    assert "could not read the canary's metrics" in condition(obj, "Degraded")["message"]
    assert CANARY not in kube.objects


def test_a_window_without_traffic_passes_and_says_so() -> None:
    kube, metrics = Kube(), Metrics()
    obj, _ = serving_object(kube, [50, 100])
    run(kube, obj, at(0), metrics)
    available(kube, STABLE)
    available(kube, CANARY)
    run(kube, obj, at(5), metrics)
    ctx = run(kube, obj, at(125), metrics)
    assert obj["status"]["canary"]["state"] == "Promoting"
    passed = [message for _, reason, message in ctx.events if reason == "CanaryStepPassed"]
    assert passed and "no requests reached the canary in the window: passed" in passed[0]


def test_a_new_engine_mid_canary_aborts_it_and_a_same_engine_spec_change_restarts_it() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 50, 100])
    run(kube, obj, at(0), metrics)
    available(kube, STABLE)
    available(kube, CANARY)
    run(kube, obj, at(5), metrics)
    run(kube, obj, at(130), metrics)
    assert obj["status"]["canary"]["step"] == 1

    # Same engine, new generation (the steps changed): back to step 1 of the new steps, canary pods kept.
    obj["spec"]["rollout"]["canary"]["steps"] = [10, 100]
    obj["metadata"]["generation"] = 2
    ctx = run(kube, obj, at(140), metrics)
    assert (obj["status"]["canary"]["step"], obj["status"]["canary"]["generation"]) == (0, 2)
    assert "CanaryRestarted" in [reason for _, reason, _ in ctx.events]
    assert CANARY not in kube.deleted

    # A new engine: the canary of the old one goes; the newer engine is not validated yet, so nothing replaces it.
    obj["spec"]["engine"]["opset"] = 17
    obj["metadata"]["generation"] = 3
    ctx = run(kube, obj, at(150), metrics)
    assert "CanaryAborted" in [reason for _, reason, _ in ctx.events]
    assert CANARY not in kube.objects and "canary" not in obj["status"]
    assert obj["status"]["revision"]["current"] == OLD and engine_of(kube, STABLE) == OLD
    newer = validated(obj)
    run(kube, obj, at(160), metrics)
    assert newer != new and engine_of(kube, CANARY) == newer


def test_the_first_revision_rolls_out_directly_and_says_why() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 100])
    obj["status"].pop("revision")
    ctx = run(kube, obj, at(0), metrics)
    assert engine_of(kube, STABLE) == new and CANARY not in kube.objects
    rolling = [message for _, reason, message in ctx.events if reason == "RollingOut"]
    assert rolling == [f"Rolling out engine {new[:8]}: the first revision has nothing to compare a canary with"]


@pytest.mark.parametrize(("weight", "replicas"), [(1, 1), (10, 1), (25, 1), (26, 2), (50, 2), (99, 4)])
def test_canary_replicas_are_the_steps_share_of_the_stable_count_and_at_least_one(weight: int, replicas: int) -> None:
    assert triton.canary_replicas(spec.parse(raw_spec([weight, 100])), weight) == replicas


def test_with_serving_checks_off_the_windows_are_waited_out_unread_and_say_so() -> None:
    kube, metrics = Kube(), Metrics()
    metrics.down = True  # would fail any read: none may happen
    settings = dataclasses.replace(SETTINGS, serving_checks=False)
    obj, new = serving_object(kube, [50, 100])
    for second in (0, 5, 125):
        if second:
            available(kube, STABLE)
            available(kube, CANARY)
        ctx = context.Context.load(kube, copy.deepcopy(obj), at(second))
        serving.reconcile(ctx, settings, metrics)
        obj["status"] = ctx.status.to_wire()
    assert metrics.services == []
    assert obj["status"]["canary"]["state"] == "Promoting" and obj["status"]["revision"]["current"] == new
    passed = [message for _, reason, message in kube.events if reason == "CanaryStepPassed"]
    assert passed == [f"Canary of engine {new[:8]} passed step 1/2, 50%: {canary.NOT_RUN}"]
