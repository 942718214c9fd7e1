"""The grants reconciler: each build Job gets an upload grant for its own engine before it starts and loses it when it
ends; each served engine's pods find a download grant, re-issued once a day; grants of engines no revision keeps go.

The store is a fake signer here (what the grants say, and that MinIO enforces it, is
tests/cluster/test_store_grants_reach_one_engine_only.py); the Kubernetes API is the in-memory fake.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.api import conditions
from kestrel.manifests import names, triton
from kestrel.manifests import store_mounts as store_manifests
from kestrel.reconcilers.engine import engine, grants, storage
from kestrel.reconcilers.serving import workload
from kestrel.storage import grants as store_grants
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE4GRANTS", "s3cr3t-grants-wJalrXUtnFEMI-K7MDENG"
DAY = datetime.timedelta(days=1)


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> support.FakeSigner:
    fake = support.FakeSigner()
    monkeypatch.setattr(grants, "_signer", lambda ctx, settings: fake)
    return fake


def _settings() -> Any:
    return support.settings(None, "s3://engines/kestrel", store_credentials_secret="store-creds")


def _with_source(kube: FakeKube) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "store-creds", "namespace": "kestrel-system"},
            "data": {"AWS_ACCESS_KEY_ID": support.b64(ACCESS_KEY), "AWS_SECRET_ACCESS_KEY": support.b64(SECRET_KEY)},
        }
    )


def _grant(kube: FakeKube, name: str) -> dict[str, Any]:
    secret = kube.get("v1", "Secret", support.NAMESPACE, name)
    assert secret is not None, name
    return dict(json.loads(base64.b64decode(secret["data"][store_manifests.GRANT_FILE])))


def _namespace_secrets_hold_no_credential(kube: FakeKube) -> None:
    for (_, kind, namespace, name), body in kube.objects.items():
        if kind == "Secret" and namespace == support.NAMESPACE:
            text = json.dumps(body) + "".join(
                base64.b64decode(v).decode(errors="replace") for v in body.get("data", {}).values()
            )
            assert ACCESS_KEY not in text and SECRET_KEY not in text, name


def test_a_build_job_starts_with_an_upload_grant_for_its_engine_and_loses_it_when_done(
    signer: support.FakeSigner,
) -> None:
    kube = FakeKube()
    _with_source(kube)
    obj = support.body()
    key = support.key_of(obj)
    settings = _settings()
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))

    job = kube.get("batch/v1", "Job", support.NAMESPACE, names.build_job(support.NAME, key))
    assert job is not None
    grant = _grant(kube, names.upload_grant(support.NAME, key))
    assert grant["kind"] == "upload" and grant["engine"] == f"{support.NAMESPACE}/{support.NAME}/{key}"
    # What an interrupted upload left under the key goes first: the build's grant cannot delete.
    assert signer.cleared == [f"{support.NAMESPACE}/{support.NAME}/{key}"]
    assert signer.issued[0][0] == "upload"
    (_, _, lifetime) = signer.issued[0]
    assert lifetime == datetime.timedelta(seconds=ctx.spec.engine.build.active_deadline_seconds) + (
        store_grants.UPLOAD_MARGIN
    )
    volumes = job["spec"]["template"]["spec"]["volumes"]
    mounted = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert names.upload_grant(support.NAME, key) in mounted
    assert names.store_credentials(support.NAME) not in mounted
    _namespace_secrets_hold_no_credential(kube)

    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}
    kube.put(job)
    obj["status"] = ctx.status.to_wire()
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, storage.reconcile(ctx, settings))
    assert kube.get("v1", "Secret", support.NAMESPACE, names.upload_grant(support.NAME, key)) is None
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "BuildFailed"


def test_serving_pods_find_a_download_grant_renewed_once_a_day_and_not_more(signer: support.FakeSigner) -> None:
    kube = FakeKube()
    _with_source(kube)
    obj = support.body()
    key = support.key_of(obj)
    settings = _settings()
    signer.signing_key = support.signing_secret(kube, obj)
    ctx = support.ctx_of(kube, obj)
    storage.reconcile(ctx, settings)
    waiting = workload.build(ctx, settings, key, triton.deployment)
    # The pods mount the grant, and it is not among what they wait for (the model's keys are, in this fake).
    assert isinstance(waiting, workload.MissingSecrets)
    assert names.download_grant(support.NAME, key) not in waiting.names
    assert names.api_key_secret(support.NAME) in waiting.names
    # Only the manifest and what it lists, read from the verified manifest.
    assert signer.granted == [["files/yolo/config.pbtxt", "manifest.json"]]
    first = _grant(kube, names.download_grant(support.NAME, key))
    assert first["kind"] == "download" and first["engine"].endswith(key)

    for later in (datetime.timedelta(0), datetime.timedelta(hours=23)):
        ctx.now = datetime.datetime.now(datetime.UTC) + later
        workload.build(ctx, settings, key, triton.deployment)
    assert len(signer.issued) == 1, "a fresh grant is left alone"

    ctx.now = datetime.datetime.now(datetime.UTC) + DAY + datetime.timedelta(minutes=1)
    workload.build(ctx, settings, key, triton.deployment)
    assert len(signer.issued) == 2
    assert _grant(kube, names.download_grant(support.NAME, key)) != first
    _namespace_secrets_hold_no_credential(kube)


def test_a_grant_that_cannot_be_issued_keeps_the_workload_waiting_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grants, "_signer", lambda ctx, settings: "the store is down")
    kube = FakeKube()
    obj = support.body()
    key = support.key_of(obj)
    ctx = support.ctx_of(kube, obj)
    waiting = workload.build(ctx, _settings(), key, triton.deployment)
    assert isinstance(waiting, workload.MissingSecrets)
    assert waiting.progressing.reason == "WaitingForSecrets"
    assert names.download_grant(support.NAME, key) in waiting.names
    assert [reason for _, reason, _ in kube.events] == [grants.UNAVAILABLE]


def test_grants_of_dropped_engines_are_removed_and_others_are_not(signer: support.FakeSigner) -> None:
    kube = FakeKube()
    obj = support.body()
    signer.signing_key = support.signing_secret(kube, obj)
    ctx = support.ctx_of(kube, obj)
    settings = _settings()
    kept, dropped = "a" * 64, "b" * 64
    for key in (kept, dropped):
        grants.ensure_download(ctx, settings, key)
    # Someone else's Secret under a grant's name is not the model's to delete.
    stranger = "c" * 64
    foreign: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret"}
    foreign["metadata"] = {"name": names.download_grant(support.NAME, stranger), "namespace": support.NAMESPACE}
    kube.put(foreign)
    grants.prune(ctx, settings, {dropped, stranger})
    assert kube.get("v1", "Secret", support.NAMESPACE, names.download_grant(support.NAME, kept)) is not None
    assert kube.get("v1", "Secret", support.NAMESPACE, names.download_grant(support.NAME, dropped)) is None
    assert kube.get("v1", "Secret", support.NAMESPACE, names.download_grant(support.NAME, stranger)) is not None


def test_an_engine_the_model_did_not_sign_gets_no_download_grant(signer: support.FakeSigner) -> None:
    kube = FakeKube()
    obj = support.body()
    key = support.key_of(obj)
    support.signing_secret(kube, obj)
    signer.signing_key = ed25519.Ed25519PrivateKey.generate()  # the store holds an engine someone else signed
    ctx = support.ctx_of(kube, obj)
    grants.ensure_download(ctx, _settings(), key)
    assert kube.get("v1", "Secret", support.NAMESPACE, names.download_grant(support.NAME, key)) is None
    ((kind, reason, message),) = kube.events
    assert (kind, reason) == ("Warning", grants.UNAVAILABLE) and "not by the trusted key" in message


def test_pvc_and_ambient_stores_have_no_grants(signer: support.FakeSigner) -> None:
    kube = FakeKube()
    obj = support.body()
    key = support.key_of(obj)
    for settings in (support.settings(None), support.settings(None, "s3://engines/kestrel")):
        ctx = support.ctx_of(kube, obj)
        assert grants.issue_upload(ctx, settings, key) is None
        grants.ensure_download(ctx, settings, key)
    assert not signer.issued and not kube.applies
