"""A person cuts the operator-stepped canary short (`kestrel canary promote|abort`, the annotation
`canary.kestrel.dev/action`): promote skips the remaining steps, abort rolls back as a failed analysis does and the
engine is not tried again for this spec, and a request with no canary to act on is removed with a Warning.

Pass by pass on a fake clock against an in-memory API, as tests/unit/test_canary_steps_on_a_fake_clock.py.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kestrel.api import actions, errors
from kestrel.reconcilers import audit, run, summary
from kestrel.reconcilers.engine import engine, garbage, storage
from kestrel.reconcilers.security import access, encryption, tls
from kestrel.reconcilers.serving import canary, checks, serving
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
    serving_object,
    validated,
)
from tests.unit.canary_support import run as one_pass
from tests.unit.tls_fake_kube import SETTINGS, FakeKube


def request(obj: dict[str, Any], action: str) -> None:
    """What `kestrel canary ACTION` does: set the annotation (a merge patch)."""
    obj["metadata"].setdefault("annotations", {})[actions.CANARY_ACTION] = action


def requested(obj: dict[str, Any]) -> str | None:
    return actions.requested(obj["metadata"], actions.CANARY_ACTION)


def reasons(kube: FakeKube) -> list[str]:
    return [reason for _, reason, _ in kube.events]


def at_second_step() -> tuple[Kube, Metrics, dict[str, Any], str]:
    """A canary of four steps that passed its first and waits in the second's window."""
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [10, 25, 50, 100])
    one_pass(kube, obj, at(0), metrics)
    available(kube, STABLE)
    available(kube, CANARY)
    one_pass(kube, obj, at(5), metrics)
    one_pass(kube, obj, at(125), metrics)
    available(kube, CANARY)
    one_pass(kube, obj, at(130), metrics)
    assert (obj["status"]["canary"]["state"], obj["status"]["canary"]["step"]) == ("Progressing", 1)
    return kube, metrics, obj, new


def test_promote_skips_the_remaining_steps_and_the_stable_moves_to_the_canary() -> None:
    kube, metrics, obj, new = at_second_step()
    request(obj, "promote")
    ctx = one_pass(kube, obj, at(140), metrics)  # 110 s before the window ends: nothing more is judged
    assert obj["status"]["canary"]["state"] == "Promoting"
    assert (obj["status"]["canary"]["step"], obj["status"]["canary"]["weight"]) == (3, 100)
    assert obj["status"]["revision"] == {"current": new, "previous": OLD}
    assert engine_of(kube, STABLE) == new
    promoted = [message for _, reason, message in ctx.events if reason == canary.PROMOTION_REQUESTED]
    assert promoted == [
        f"Promoting the canary of engine {new[:8]} on request at step 2/4, 25%: 2 remaining step(s) skipped"
    ]
    assert reasons(kube).count("CanaryStepPassed") == 1  # the first step's, before the request
    assert requested(obj) is None

    available(kube, STABLE)
    one_pass(kube, obj, at(150), metrics)
    assert obj["status"]["canary"]["state"] == "Promoted"
    assert CANARY not in kube.objects
    assert condition(obj, "Progressing")["reason"] == "CanaryPromoted"


def test_promote_before_the_canary_pods_are_up_promotes_too() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 50, 100])
    one_pass(kube, obj, at(0), metrics)
    request(obj, "promote")
    one_pass(kube, obj, at(1), metrics)
    assert obj["status"]["canary"]["state"] == "Promoting" and engine_of(kube, STABLE) == new
    assert metrics.services == []  # no window began, none was read


def test_abort_rolls_back_records_the_failed_revision_and_does_not_retry_it() -> None:
    kube, metrics, obj, new = at_second_step()
    stable_before = kube.objects[STABLE]["spec"]
    request(obj, "abort")
    ctx = one_pass(kube, obj, at(140), metrics)
    assert CANARY not in kube.objects
    assert kube.objects[STABLE]["spec"] == stable_before and engine_of(kube, STABLE) == OLD
    assert obj["status"]["revision"] == {"current": OLD, "failed": new}
    assert obj["status"]["canary"]["state"] == "Failed"
    for kind in ("Degraded", "Progressing"):
        found = condition(obj, kind)
        assert (found["status"], found["reason"]) == ("True" if kind == "Degraded" else "False", "CanaryAbortedByUser")
        assert found["message"] == (
            f"Canary of engine {new[:8]} was aborted (on request at step 2/4, 25%); engine {OLD[:8]} keeps serving"
        )
    assert [(kind, reason) for kind, reason, _ in ctx.events] == [("Warning", "CanaryAbortedByUser")]
    assert condition(obj, "Available")["status"] == "True"
    assert requested(obj) is None

    # Not retried while the spec stays: no new canary, no event.
    events = len(kube.events)
    one_pass(kube, obj, at(200), metrics)
    one_pass(kube, obj, at(400), metrics)
    assert CANARY not in kube.objects and engine_of(kube, STABLE) == OLD and len(kube.events) == events

    # A spec change that makes another engine: its canary starts.
    obj["spec"]["engine"]["opset"] = 17
    obj["metadata"]["generation"] = 2
    newer = validated(obj)
    one_pass(kube, obj, at(500), metrics)
    assert newer != new and engine_of(kube, CANARY) == newer
    assert obj["status"]["canary"]["state"] == "Progressing"


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_a_request_after_the_canary_ended_is_removed_with_a_warning_and_changes_nothing(action: str) -> None:
    kube, metrics, obj, new = at_second_step()
    request(obj, "promote")
    one_pass(kube, obj, at(140), metrics)
    available(kube, STABLE)
    one_pass(kube, obj, at(150), metrics)
    assert obj["status"]["canary"]["state"] == "Promoted"
    before = (obj["status"]["revision"], engine_of(kube, STABLE), condition(obj, "Degraded"))

    request(obj, action)
    ctx = one_pass(kube, obj, at(160), metrics)
    assert requested(obj) is None
    assert [(kind, reason) for kind, reason, _ in ctx.events] == [("Warning", "CanaryRequestIgnored")]
    assert ctx.events[0][2] == (
        f"Ignored canary.kestrel.dev/action={action!r}: no canary is in progress "
        f"(the canary of engine {new[:8]} is Promoted)"
    )
    assert (obj["status"]["revision"], engine_of(kube, STABLE), condition(obj, "Degraded")) == before


def test_a_request_to_a_rolling_model_or_of_an_unknown_value_is_refused_and_removed() -> None:
    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 100])
    obj["spec"]["rollout"] = {"strategy": "rolling"}
    request(obj, "abort")
    ctx = one_pass(kube, obj, at(0), metrics)
    assert ctx.events[-1][1:] == (
        "CanaryRequestIgnored",
        "Ignored canary.kestrel.dev/action='abort': spec.rollout.strategy is rolling: there are no canaries",
    )
    assert requested(obj) is None and engine_of(kube, STABLE) == new

    kube, metrics = Kube(), Metrics()
    obj, new = serving_object(kube, [25, 100])
    request(obj, "pause")
    ctx = one_pass(kube, obj, at(0), metrics)
    assert "Ignored canary.kestrel.dev/action='pause': the value is not one of promote, abort" in [
        message for _, _, message in ctx.events
    ]
    assert requested(obj) is None
    assert obj["status"]["canary"]["state"] == "Progressing" and engine_of(kube, CANARY) == new


class PassKube(FakeKube):
    """Records the status write and the annotation removal, in order, as run.py makes them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("status", status))
        return super().patch_status(namespace, name, status)

    def remove_model_deployment_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        self.calls.append(("remove", (key, value)))
        return super().remove_model_deployment_annotation(namespace, name, key, value)


@pytest.fixture
def serving_only(monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """run.reconcile with every reconciler but serving's a no-op; raise the listed error after serving, once."""
    failures: list[Exception] = []
    for module in (encryption, tls, access, checks, summary, audit):
        monkeypatch.setattr(module, "reconcile", lambda *args, **kwargs: None)
    monkeypatch.setattr(storage, "reconcile", lambda *args, **kwargs: None)
    monkeypatch.setattr(engine, "reconcile", lambda *args, **kwargs: None)

    def collect(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()

    monkeypatch.setattr(garbage, "reconcile", collect)
    monkeypatch.setattr(serving, "reconcile", lambda ctx, settings: canary.refuse_request(ctx))
    return failures


def test_the_annotation_goes_after_the_status_write_and_stays_when_the_pass_fails(
    serving_only: list[Exception],
) -> None:
    kube = PassKube()
    obj, _ = serving_object(kube, [25, 100])
    obj["spec"]["rollout"] = {"strategy": "rolling"}
    request(obj, "abort")

    serving_only.append(errors.TransientError("the store did not answer"))
    with pytest.raises(errors.TransientError):
        run.reconcile(kube, obj, SETTINGS, datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC))
    assert kube.calls == []  # the next pass answers it again

    run.reconcile(kube, obj, SETTINGS, datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC))
    assert [call for call, _ in kube.calls] == ["status", "remove"]
    assert kube.calls[1] == ("remove", (actions.CANARY_ACTION, "abort"))
