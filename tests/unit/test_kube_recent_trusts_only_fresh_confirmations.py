"""kube.recent: what a pass may take as confirmed without asking the API server again."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel.kube import recent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(generation: int = 1, ready: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "cams-triton",
            "namespace": "vision",
            "generation": generation,
            "managedFields": [{"manager": "kestrel"}],
        },
        "status": {"readyReplicas": ready},
    }


KEY = ("apps/v1", "Deployment", "vision", "cams-triton")


def test_an_apply_is_trusted_for_the_same_manifest_confirmed_since_the_bound() -> None:
    clock = Clock()
    known = recent.Recent(trust=300, clock=clock)
    known.record(deployment(), manifest_digest="a")
    assert known.applied(KEY, "a", since=clock.now - 1) is not None
    assert known.applied(KEY, "b", since=clock.now - 1) is None  # another manifest: apply it
    clock.now += 10
    assert known.applied(KEY, "a", since=clock.now - 5) is None  # confirmed before the bound


def test_managed_fields_are_not_kept() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    known.record(deployment(), manifest_digest="a")
    found = known.applied(KEY, "a", since=0)
    assert found is not None and "managedFields" not in found["metadata"]


def test_a_watch_event_keeps_the_apply_while_the_generation_holds() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    known.record(deployment(generation=1), manifest_digest="a")
    before = known.observe(deployment(generation=1, ready=1))
    assert before is not None and before["status"]["readyReplicas"] == 0
    found = known.applied(KEY, "a", since=0)
    assert found is not None and found["status"]["readyReplicas"] == 1  # the pass reads the watched status


def test_someone_elses_spec_change_drops_the_apply() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    known.record(deployment(generation=1), manifest_digest="a")
    known.observe(deployment(generation=2))
    assert known.applied(KEY, "a", since=0) is None
    assert known.seen(KEY, since=0) is not None


def test_a_read_keeps_the_apply_of_the_same_generation() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    known.record(deployment(generation=1), manifest_digest="a")
    known.record(deployment(generation=1, ready=1))
    assert known.applied(KEY, "a", since=0) is not None
    known.record(deployment(generation=3))
    assert known.applied(KEY, "a", since=0) is None


def test_an_event_of_an_object_never_applied_is_not_remembered() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    assert known.observe(deployment()) is None
    assert len(known) == 0


def test_forgotten_and_expired_entries_are_gone() -> None:
    clock = Clock()
    known = recent.Recent(trust=60, clock=clock)
    known.record(deployment(), manifest_digest="a")
    known.forget(KEY)
    assert known.seen(KEY, since=0) is None
    known.record(deployment(), manifest_digest="a")
    clock.now += 120
    other = {**deployment(), "metadata": {"name": "other", "namespace": "vision"}}
    known.record(other)  # a later write sweeps what expired
    assert len(known) == 1


def test_returned_objects_are_copies() -> None:
    known = recent.Recent(trust=300, clock=Clock())
    known.record(deployment(), manifest_digest="a")
    first = known.seen(KEY, since=0)
    assert first is not None
    first["status"]["readyReplicas"] = 9
    again = known.seen(KEY, since=0)
    assert again is not None and again["status"]["readyReplicas"] == 0


def test_the_digest_ignores_key_order() -> None:
    assert recent.digest({"a": 1, "b": {"c": 2, "d": 3}}) == recent.digest({"b": {"d": 3, "c": 2}, "a": 1})
    assert recent.digest({"a": 1}) != recent.digest({"a": 2})


def test_a_negative_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="trust"):
        recent.Recent(trust=-1)
