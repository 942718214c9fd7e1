"""A pod that will not get on is named in a condition within one pass, with the scheduler's or kubelet's own reason
and message: a build held up by its pod (Built), a rollout held up by its pods (Progressing).

Pod statuses here are the shapes the kubelet and scheduler write; the engine pass runs on the in-memory API.
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest

from kestrel.api import conditions, keys
from kestrel.manifests import labels, names
from kestrel.reconcilers import pod_problems
from kestrel.reconcilers.engine import engine, storage
from kestrel.reconcilers.serving import serving
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube

NOW = support.NOW


def pod(name: str = "cams-build-1", *, created: str = "2026-12-07T10:00:00Z", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def waiting(reason: str, message: str = "", *, last: str | None = None, restarts: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"name": "build", "restartCount": restarts, "state": {"waiting": {"reason": reason}}}
    if message:
        found["state"]["waiting"]["message"] = message
    if last:
        found["lastState"] = {"terminated": {"reason": last, "exitCode": 137}}
    return found


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
}


@pytest.mark.parametrize(
    ("status", "reason", "said"),
    [
        ({"conditions": [UNSCHEDULABLE]}, "Unschedulable", "3 Insufficient nvidia.com/gpu"),
        (
            {"containerStatuses": [waiting("ImagePullBackOff", 'Back-off pulling image "registry.example/kb:9"')]},
            "ImagePullBackOff",
            'Back-off pulling image "registry.example/kb:9"',
        ),
        ({"containerStatuses": [waiting("CrashLoopBackOff", last="Error", restarts=4)]}, "CrashLoopBackOff", "Error"),
        ({"containerStatuses": [waiting("CrashLoopBackOff", last="OOMKilled", restarts=2)]}, "OOMKilled", "memory"),
        (
            {
                "containerStatuses": [
                    {"name": "build", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
                ]
            },
            "OOMKilled",
            "memory limit",
        ),
        (
            {"initContainerStatuses": [waiting("CreateContainerConfigError", 'secret "cams-kek" not found')]},
            "CreateContainerConfigError",
            'secret "cams-kek" not found',
        ),
    ],
)
def test_each_stuck_pod_is_named_with_its_own_reason_and_words(status: dict[str, Any], reason: str, said: str) -> None:
    found = pod_problems.of_pod(pod(**status), NOW)
    assert found is not None and found.reason == reason and said in found.message


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"containerStatuses": [waiting("ContainerCreating")]},
        {"containerStatuses": [{"name": "build", "state": {"running": {"startedAt": "2026-12-07T10:00:01Z"}}}]},
        {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
    ],
)
def test_a_pod_that_is_starting_or_running_has_no_problem(status: dict[str, Any]) -> None:
    assert pod_problems.of_pod(pod(**status), NOW) is None


def test_unschedulable_for_less_than_the_grace_is_no_problem_yet() -> None:
    """A pod waiting for its claim to bind is unschedulable for a few seconds on its way to running: reported only
    once the scheduler has said so for the grace period."""

    def since(seconds: float) -> dict[str, Any]:
        moment = NOW - datetime.timedelta(seconds=seconds)
        return {**UNSCHEDULABLE, "lastTransitionTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}

    grace = pod_problems.UNSCHEDULABLE_GRACE.total_seconds()
    assert pod_problems.of_pod(pod(conditions=[since(grace - 5)]), NOW) is None
    late = pod_problems.of_pod(pod(conditions=[since(grace + 1)]), NOW)
    assert late is not None and late.reason == "Unschedulable"
    # An image that cannot be pulled is not held back by the grace.
    pulling = pod(conditions=[since(1)], containerStatuses=[waiting("ErrImagePull", "no such image")])
    found = pod_problems.of_pod(pulling, NOW)
    assert found is not None and found.reason == "ErrImagePull"


def test_a_long_message_is_cut() -> None:
    found = pod_problems.of_pod(pod(containerStatuses=[waiting("ErrImagePull", "x" * 5000)]), NOW)
    assert found is not None and len(found.message) <= pod_problems.MAX_MESSAGE


def _pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path) -> Any:
    ctx = support.ctx_of(kube, obj)
    if ctx.condition(conditions.BUILT) is None:  # as the pass that started the Job left it
        ctx.set(conditions.BUILT, "False", "Building", "started")
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


def test_a_build_whose_image_cannot_be_pulled_says_so_in_built_and_one_warning(tmp_path: pathlib.Path) -> None:
    (tmp_path / "engines").mkdir()
    kube, obj = FakeKube(), support.body()
    job_name = support.running_build(
        kube,
        obj,
        {"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff", 'Back-off pulling image "b"')]},
    )
    for _ in range(2):
        ctx = _pass(kube, obj, tmp_path)
    built = ctx.condition(conditions.BUILT)
    assert built is not None and (built.status, built.reason) == ("False", "ImagePullBackOff")
    assert built.message.startswith(f"Build Job {job_name} is held up: pod {job_name}-x1, container build")
    assert [e[:2] for e in kube.events if e[1] == "ImagePullBackOff"] == [("Warning", "ImagePullBackOff")]
    assert keys.engine_key(ctx.spec) == support.key_of(obj)


def test_a_build_pod_that_runs_is_just_building(tmp_path: pathlib.Path) -> None:
    (tmp_path / "engines").mkdir()
    kube, obj = FakeKube(), support.body()
    running = {"name": "build", "state": {"running": {"startedAt": "2026-12-07T10:00:01Z"}}}
    support.running_build(kube, obj, {"phase": "Running", "containerStatuses": [running]})
    built = _pass(kube, obj, tmp_path).condition(conditions.BUILT)
    assert built is not None and (built.reason, built.message.endswith("is running")) == ("Building", True)


def test_a_rollout_whose_pods_cannot_pull_triton_says_so_in_progressing(tmp_path: pathlib.Path) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    selector = {**labels.track_selector("cams", "stable"), labels.ENGINE_KEY: names.short_key(key)}
    triton_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cams-triton-abc", "namespace": "vision", "labels": selector},
        "status": {"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff", 'pulling "nvcr.io/x"')]},
    }
    kube.put(triton_pod)
    ctx = support.ctx_of(kube, obj)
    serving._rolling_out(ctx, key, "0/1 replicas updated, 0 available")
    progressing = ctx.condition(conditions.PROGRESSING)
    assert progressing is not None and (progressing.status, progressing.reason) == ("True", "ImagePullBackOff")
    assert "held up: pod cams-triton-abc" in progressing.message and 'pulling "nvcr.io/x"' in progressing.message
    assert [e[:2] for e in kube.events] == [("Warning", "ImagePullBackOff")]
    # Without a stuck pod the rollout is simply rolling out.
    other = support.ctx_of(FakeKube(), obj)
    serving._rolling_out(other, key, "0/1 replicas updated, 0 available")
    found = other.condition(conditions.PROGRESSING)
    assert found is not None and found.reason == "RollingOut"
