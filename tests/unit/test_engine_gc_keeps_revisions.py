"""Garbage collection of stored engines: a revision change keeps current, previous and the spec's key; deletion
keeps nothing; a store that does not answer delays a deletion a bounded number of times, then lets it go."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from kestrel.api import errors, status
from kestrel.reconcilers.engine import garbage, storage
from kestrel.storage import errors as storage_errors
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


def _stored(mount: pathlib.Path) -> set[str]:
    folder = mount / "engines" / "kestrel" / support.NAMESPACE / support.NAME
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def _fill(tmp_path: pathlib.Path, mount: pathlib.Path, kube: FakeKube, obj: dict[str, Any], *keys: str) -> None:
    signer = support.signing_secret(kube, obj)
    for key in keys:
        support.publish_engine(tmp_path, mount, key, signer)


def test_a_revision_change_keeps_current_previous_and_the_specs_key(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body()
    spec_key = support.key_of(obj)
    old, current, previous = "a" * 64, "b" * 64, "c" * 64
    _fill(tmp_path, mount, kube, obj, old, current, previous, spec_key)
    ctx = support.ctx_of(kube, obj)
    ctx.status.revision = status.RevisionStatus(current=current, previous=previous)
    before = {"revision": {"current": previous, "previous": old}}

    garbage.reconcile(ctx, support.settings(mount), storage.Access(), before)

    assert _stored(mount) == {current, previous, spec_key}
    (collected,) = [e for e in kube.events if e[1] == garbage.COLLECTED]
    assert "aaaaaaaa" in collected[2]


def test_no_revision_change_leaves_the_store_alone(
    tmp_path: pathlib.Path, mount: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, obj = FakeKube(), support.body()
    ctx = support.ctx_of(kube, obj)
    ctx.status.revision = status.RevisionStatus(current="b" * 64, previous="c" * 64)

    def refuse(*_: object) -> None:
        raise AssertionError("the store was opened without a revision change")

    monkeypatch.setattr(storage, "open_store", refuse)
    garbage.reconcile(ctx, support.settings(mount), storage.Access(), {"revision": ctx.status.revision.to_wire()})


def test_deletion_removes_every_engine_of_the_model_and_no_other(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = FakeKube(), support.body()
    _fill(tmp_path, mount, kube, obj, "a" * 64, "b" * 64)
    support.publish_engine(tmp_path, mount, "d" * 64, support.signing_secret(kube, obj), name="neighbour")

    garbage.on_delete(kube, obj, support.settings(mount), 0)

    assert _stored(mount) == set()
    assert (mount / "engines" / "kestrel" / support.NAMESPACE / "neighbour" / ("d" * 64)).is_dir()
    assert [e[1] for e in kube.events] == [garbage.COLLECTED]


class _Unreachable:
    def collect_garbage(self, namespace: str, name: str, keep: object) -> list[str]:
        raise storage_errors.StoreUnavailableError("Look up s3://engines/kestrel/vision/cams: connection refused")


def test_an_unreachable_store_delays_deletion_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    kube, obj = FakeKube(), support.body()
    monkeypatch.setattr(storage, "open_store", lambda *_: (_Unreachable(), ""))
    settings = support.settings(None)
    for attempt in range(garbage.DELETE_ATTEMPTS - 1):
        with pytest.raises(errors.TransientError) as raised:
            garbage.on_delete(kube, obj, settings, attempt)
        assert raised.value.delay == garbage.RETRY_DELAY
        assert not kube.events
    garbage.on_delete(kube, obj, settings, garbage.DELETE_ATTEMPTS - 1)
    (left,) = kube.events
    assert left[0] == "Warning" and left[1] == garbage.LEFT
    assert "pvc://engines/kestrel/vision/cams" in left[2] and "connection refused" in left[2]


def test_a_store_the_operator_cannot_open_lets_deletion_go_at_once() -> None:
    kube, obj = FakeKube(), support.body()
    garbage.on_delete(kube, obj, support.settings(None), 0)
    (left,) = kube.events
    assert left[1] == garbage.LEFT and "KESTREL_PVC_ROOT" in left[2]
