"""Without a store Secret the operator opens the store with its own identity, one per process (temporary
credentials are fetched once, not every pass); without any identity, the first use says what to set and the
build goes on without the cache."""

from __future__ import annotations

import datetime
import os
import pathlib
from collections.abc import Iterator

import pytest

from kestrel.manifests import names
from kestrel.reconcilers.engine import cache, engine, storage
from kestrel.storage import grants, layout, s3
from tests.unit import store_support as support
from tests.unit import sts_support
from tests.unit.tls_fake_kube import FakeKube

S3 = "s3://engines/kestrel"


@pytest.fixture
def fresh_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[None]:
    sts_support.clear_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never contacted by these tests
    storage.operator_identity.cache_clear()
    yield
    storage.operator_identity.cache_clear()


def test_every_pass_signs_with_the_one_identity_of_the_process(
    fresh_identity: None, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "token").write_text("projected-token")
    expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=1)
    answer = sts_support.Answer("ASIAOPERATOR", "operator-secret-wJalrXUtnFEMI", "operator-session", expires)
    with sts_support.fake_sts([answer]) as sts:
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
        monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kestrel")
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        settings = support.settings(None, S3)
        ref = layout.EngineRef(support.NAMESPACE, support.NAME, "ab" * 32)
        for _ in range(3):  # three passes
            engines, why = storage.open_store(settings, storage.Access(ambient=True))
            assert isinstance(engines, s3.S3Store), why
            grant = engines.download_grant(ref, grants.DOWNLOAD_LIFETIME, [layout.MANIFEST_NAME])
            assert "X-Amz-Security-Token=operator-session" in grant.objects[layout.MANIFEST_NAME]
        assert len(sts.seen) == 1


def test_an_operator_without_any_identity_says_what_to_set_and_builds_without_the_cache(fresh_identity: None) -> None:
    kube = FakeKube()
    obj = support.body()
    key = support.key_of(obj)
    settings = support.settings(None, S3)
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))
    assert kube.get("batch/v1", "Job", support.NAMESPACE, names.build_job(support.NAME, key)) is not None
    (warning,) = [event for event in kube.events if event[1] == cache.UNAVAILABLE]
    message = warning[2]
    assert "No credentials for the S3 store" in message
    assert "AWS_ACCESS_KEY_ID" in message and "storeCredentialsSecret" in message and "IRSA" in message


def test_one_key_in_the_operators_environment_is_refused_not_taken_for_ambient(
    fresh_identity: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDONLYTHEID")
    found, why = storage.open_store(support.settings(None, S3), storage.Access(ambient=True))
    assert found is None and "AWS_SECRET_ACCESS_KEY" in why and "AKIDONLYTHEID" not in why
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIDONLYTHEID"
