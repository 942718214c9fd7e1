"""The engine cache: an engine of the spec's key already in the store is recorded as its build was and no Job is
created, but only once its signed manifest verifies with the model's own key; anything else is built again."""

from __future__ import annotations

import hashlib
import pathlib
import secrets as random
from typing import Any

import pytest

from kestrel.api import conditions
from kestrel.reconcilers.engine import cache, engine, storage
from kestrel.security import manifest
from kestrel.storage import layout
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


def _jobs(kube: FakeKube) -> list[Any]:
    return [key for key in kube.objects if key[1] == "Job"]


def _applies_but_the_fence(kube: FakeKube) -> dict[Any, int]:
    """Applies of everything but the build pods' NetworkPolicy, which every pass applies (built or not)."""
    return {key: count for key, count in kube.applies.items() if key[1] != "NetworkPolicy"}


def _pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path | None) -> Any:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


def test_a_stored_engine_is_reused_as_its_build_reported_it(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    signer = support.signing_secret(kube, obj)
    published = support.publish_engine(tmp_path, mount, key, signer)

    ctx = _pass(kube, obj, mount)

    assert not _jobs(kube)
    built, validated = ctx.condition(conditions.BUILT), ctx.condition(conditions.VALIDATED)
    assert built is not None and (built.status, built.reason) == ("True", engine.CACHED)
    assert validated is not None and (validated.status, validated.reason) == ("True", "Passed")
    stored = (mount / "engines" / "kestrel" / support.ref(key).path / layout.MANIFEST_NAME).read_bytes()
    assert ctx.status.engine is not None
    assert ctx.status.engine.key == key
    assert ctx.status.engine.digest == published.digest == f"sha256:{hashlib.sha256(stored).hexdigest()}"
    assert ctx.status.engine.uri == f"{support.STORE}/{support.ref(key).path}"
    assert ctx.status.validation is not None and ctx.status.validation.passed
    assert [e[1] for e in kube.events] == [engine.CACHED, "Passed"]


def test_a_cached_engine_that_failed_its_gate_is_recorded_as_failed(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj), passed=False)
    ctx = _pass(kube, obj, mount)
    validated = ctx.condition(conditions.VALIDATED)
    assert validated is not None and (validated.status, validated.reason) == ("False", "AccuracyDrop")
    assert not _jobs(kube)


def test_an_engine_signed_by_another_key_is_not_trusted(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.signing_secret(kube, obj)
    support.publish_engine(tmp_path, mount, key, manifest.generate_signing_key())

    ctx = _pass(kube, obj, mount)

    assert len(_jobs(kube)) == 1
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building"
    (rejected,) = [event for event in kube.events if event[1] == cache.REJECTED]
    assert rejected[0] == "Warning" and "not by the trusted key" in rejected[2]


def test_a_tampered_manifest_is_not_trusted(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj))
    path = mount / "engines" / "kestrel" / support.ref(key).path / layout.MANIFEST_NAME
    path.write_bytes(path.read_bytes().replace(b'\\"passed\\":true', b'\\"passed\\":false'))
    _pass(kube, obj, mount)
    assert len(_jobs(kube)) == 1
    assert [event[1] for event in kube.events if event[0] == "Warning"] == [cache.REJECTED]


def test_another_models_engine_under_this_key_is_not_trusted(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    # Same signer, same key, but packed for another ModelDeployment's path, then copied here.
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    signer = support.signing_secret(kube, obj)
    support.publish_engine(tmp_path, mount, key, signer, name="other")
    root = mount / "engines" / "kestrel" / support.NAMESPACE
    (root / support.NAME).mkdir(parents=True)
    (root / "other" / key).rename(root / support.NAME / key)
    _pass(kube, obj, mount)
    assert len(_jobs(kube)) == 1
    (rejected,) = [event for event in kube.events if event[1] == cache.REJECTED]
    assert "signed for vision/other/" in rejected[2]


def test_a_plaintext_engine_is_not_reused_where_encryption_is_required(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body(encrypted=True)
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj))
    _pass(kube, obj, mount)
    assert len(_jobs(kube)) == 1


def test_an_encrypted_engine_is_reused_where_encryption_is_required(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body(encrypted=True)
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj), kek=random.token_bytes(32))
    ctx = _pass(kube, obj, mount)
    assert not _jobs(kube)
    assert ctx.status.engine is not None and ctx.status.engine.key == key


def test_without_the_claim_mounted_the_cache_is_skipped_and_the_engine_built(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj))
    _pass(kube, obj, None)
    assert len(_jobs(kube)) == 1
    assert not [event for event in kube.events if event[0] == "Warning"]


def test_status_that_holds_the_engine_keeps_the_store_out_of_the_pass(
    tmp_path: pathlib.Path, mount: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj))
    _pass(kube, obj, mount)

    def refuse(*_: object) -> None:
        raise AssertionError("the store was opened although status holds the engine")

    monkeypatch.setattr(storage, "open_store", refuse)
    before = _applies_but_the_fence(kube)
    for _ in range(3):
        _pass(kube, obj, mount)
    assert _applies_but_the_fence(kube) == before and not _jobs(kube)


def test_a_spec_change_to_a_stored_key_switches_engines_without_a_build(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body()
    signer = support.signing_secret(kube, obj)
    support.publish_engine(tmp_path, mount, support.key_of(obj), signer)
    _pass(kube, obj, mount)
    changed = support.body(imgsz=640)
    changed["status"] = obj["status"]
    new_key = support.key_of(changed)
    support.publish_engine(tmp_path, mount, new_key, signer)

    ctx = _pass(kube, changed, mount)

    assert not _jobs(kube)
    assert ctx.status.engine is not None and ctx.status.engine.key == new_key
    assert [e[1] for e in kube.events].count(engine.CACHED) == 2
