"""The storage reconciler reads the store's credentials for the operator and puts them in no model's namespace
(it removes a copy an older operator made); a missing Secret stops the build with a condition and one Event that
name the Secret and the fix, never a credential."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.manifests import names
from kestrel.reconcilers import summary
from kestrel.reconcilers.engine import engine, grants, storage
from kestrel.storage import s3
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import UID, FakeKube

S3 = "s3://engines/kestrel"
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE4STORE", "s3cr3t-wJalrXUtnFEMI-K7MDENG"


def _settings() -> operator_settings.Settings:
    return support.settings(None, S3, store_credentials_secret="store-creds", operator_namespace="kestrel-system")


def _source(kube: FakeKube, **data: str) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "store-creds", "namespace": "kestrel-system"},
            "data": {key: support.b64(value) for key, value in data.items()},
        }
    )


def test_the_operator_reads_the_credentials_and_copies_them_nowhere() -> None:
    kube = FakeKube()
    _source(
        kube,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_ENDPOINT_URL="http://minio.storage:9000",
    )
    ctx = support.ctx_of(kube, support.body())
    access = storage.reconcile(ctx, _settings())

    assert not kube.applies, "the storage reconciler writes nothing into the model's namespace"
    assert ctx.store_access is access
    assert access.problem is None
    assert access.credentials == s3.Credentials(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint="http://minio.storage:9000", region="us-east-1"
    )
    assert SECRET_KEY not in repr(access) and ACCESS_KEY not in repr(access)


def test_a_copy_an_older_operator_made_is_deleted_but_a_foreign_secret_of_that_name_is_not() -> None:
    storage._CLEANED.clear()
    kube = FakeKube()
    _source(kube, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    legacy = names.store_credentials(support.NAME)
    owned: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": legacy, "namespace": support.NAMESPACE},
    }
    owned["metadata"]["ownerReferences"] = [{"kind": "ModelDeployment", "uid": UID, "controller": True}]
    kube.put(owned)
    storage.reconcile(support.ctx_of(kube, support.body()), _settings())
    assert kube.get("v1", "Secret", support.NAMESPACE, legacy) is None

    storage._CLEANED.clear()
    foreign = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": legacy, "namespace": support.NAMESPACE}}
    kube.put(foreign)
    storage.reconcile(support.ctx_of(kube, support.body()), _settings())
    assert kube.get("v1", "Secret", support.NAMESPACE, legacy) is not None


def test_a_missing_secret_stops_the_build_with_one_event_naming_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    obj = support.body()
    settings = _settings()
    for _ in range(3):
        ctx = support.ctx_of(kube, obj)
        engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))
        summary.reconcile(ctx)
        obj["status"] = ctx.status.to_wire()

    assert not [key for key in kube.objects if key[1] == "Job"], "a Job whose pod mounts a Secret nobody creates"
    built = ctx.condition(conditions.BUILT)
    assert built is not None and (built.status, built.reason) == ("False", storage.MISSING)
    assert "kestrel-system/store-creds" in built.message and "kubectl -n kestrel-system create secret" in built.message
    ready = ctx.condition(conditions.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", storage.MISSING)
    warnings = [event for event in kube.events if event[1] == storage.MISSING]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"


def test_a_store_that_cannot_be_prepared_holds_the_build_and_says_why_without_a_credential() -> None:
    kube = FakeKube()
    obj = support.body()
    settings = _settings()
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))
    obj["status"] = ctx.status.to_wire()
    _source(kube, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_ENDPOINT_URL="http://127.0.0.1:1")
    ctx = support.ctx_of(kube, obj)
    # The store answers nothing here: the cache lookup is a miss with a Warning, and no grant can be made for a
    # build whose upload could not land, so no Job starts; the next pass tries again.
    engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))
    built = ctx.condition(conditions.BUILT)
    assert built is not None and (built.status, built.reason) == ("False", grants.UNAVAILABLE)
    assert not [key for key in kube.objects if key[1] == "Job"]
    (unavailable,) = [event for event in kube.events if event[1] == "EngineCacheUnavailable"]
    (held,) = [event for event in kube.events if event[1] == grants.UNAVAILABLE]
    for _, _, message in (unavailable, held):
        assert SECRET_KEY not in message and ACCESS_KEY not in message


def test_a_secret_without_keys_names_the_missing_keys_but_no_value() -> None:
    kube = FakeKube()
    _source(kube, AWS_ACCESS_KEY_ID=ACCESS_KEY)
    ctx = support.ctx_of(kube, support.body())
    access = storage.reconcile(ctx, _settings())
    assert access.problem is not None and "lacks AWS_SECRET_ACCESS_KEY" in access.problem
    assert ACCESS_KEY not in access.problem


def test_pvc_and_ambient_stores_write_nothing() -> None:
    kube = FakeKube()
    ctx = support.ctx_of(kube, support.body())
    assert storage.reconcile(ctx, support.settings(None)) == storage.Access()
    assert storage.reconcile(ctx, support.settings(None, S3)) == storage.Access(ambient=True)
    assert not kube.applies


def test_a_store_the_operator_cannot_open_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    storage._SAID.clear()
    caplog.set_level(logging.INFO, logger="kestrel")
    for _ in range(3):
        found, why = storage.open_store(support.settings(None), storage.Access())
        assert found is None
        storage.say_once(why)
    lines = [r.getMessage() for r in caplog.records if "Skipped the engine cache" in r.getMessage()]
    assert len(lines) == 1 and "KESTREL_PVC_ROOT" in lines[0]
