"""A spec changed (or changed back) while its build ran: the build Job of the engine no longer asked for is stopped
and its store grant taken, instead of holding a node up to its deadline and publishing an engine nobody wants. Found
by the schema mutations (tests/faults/test_schema_mutations.py): every engine-key mutation restored to the base left
its build Job running. A finished Job of another key stays for its TTL (its log says why a build failed)."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import engine, grants, storage
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube

S3_STORE = "s3://engines/kestrel"


def _pass(kube: FakeKube, obj: dict[str, Any], settings: operator_settings.Settings) -> context.Context:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


def _job(kube: FakeKube, key: str) -> dict[str, Any] | None:
    return kube.objects.get(kube.key("batch/v1", "Job", support.NAMESPACE, names.build_job(support.NAME, key)))


def _grant(kube: FakeKube, key: str) -> dict[str, Any] | None:
    return kube.objects.get(kube.key("v1", "Secret", support.NAMESPACE, names.upload_grant(support.NAME, key)))


@pytest.fixture
def cache_miss(monkeypatch: pytest.MonkeyPatch) -> operator_settings.Settings:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))
    monkeypatch.setattr(grants, "_signer", lambda *_: support.FakeSigner())
    return support.settings(None, S3_STORE, store_credentials_secret="engine-store")


def test_a_build_for_a_key_the_spec_left_is_stopped_with_its_grant(cache_miss: operator_settings.Settings) -> None:
    kube, obj = FakeKube(), support.body(imgsz=320)
    first = support.key_of(obj)
    _pass(kube, obj, cache_miss)
    assert _job(kube, first) is not None and _grant(kube, first) is not None

    obj["spec"]["model"]["imgsz"] = 640
    obj["metadata"]["generation"] = 2
    second = support.key_of(obj)
    ctx = _pass(kube, obj, cache_miss)

    assert _job(kube, first) is None, "the superseded build is still running"
    assert _grant(kube, first) is None, "the superseded build's store grant is left"
    assert _job(kube, second) is not None
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building" and names.build_job(support.NAME, second) in built.message
    stopped = [message for _, reason, message in kube.events if reason == "BuildStopped"]
    assert stopped == [
        f"Stopped build Job {names.build_job(support.NAME, first)}: the spec no longer asks for engine {first[:8]}"
    ]


def test_a_finished_build_of_another_key_is_left_for_its_ttl(cache_miss: operator_settings.Settings) -> None:
    kube, obj = FakeKube(), support.body(imgsz=320)
    first = support.key_of(obj)
    _pass(kube, obj, cache_miss)
    job = _job(kube, first)
    assert job is not None
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}

    obj["spec"]["model"]["imgsz"] = 640
    _pass(kube, obj, cache_miss)

    assert _job(kube, first) is not None
    assert not [reason for _, reason, _ in kube.events if reason == "BuildStopped"]
