"""A model's first pass makes its own Secrets without reading them first, and a cache hit needs no Job read:
requests per new model saved, which at 1,000 models was most of what the operator asked the API server.
What is already there still wins: a key a failed pass left is kept, a hand-deleted one is made again."""

from __future__ import annotations

import collections
import datetime
import pathlib
from typing import Any

import pytest

from kestrel.api import conditions
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import engine, storage
from kestrel.reconcilers.security import access, encryption, tls
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.reads: collections.Counter[tuple[str, str | None, str]] = collections.Counter()

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str, **options: Any
    ) -> dict[str, Any] | None:
        self.reads[(kind, namespace, name)] += 1
        return super().get(api_version, kind, namespace, name, **options)


def _keys_pass(kube: FakeKube, obj: dict[str, Any]) -> context.Context:
    ctx = context.Context.load(kube, obj, NOW)
    encryption.reconcile(ctx, SETTINGS, storage.Access())
    tls.reconcile(ctx, SETTINGS)
    access.reconcile(ctx, SETTINGS)
    obj["status"] = ctx.status.to_wire()
    return ctx


def _own_secrets() -> list[str]:
    return [names.signing_secret("cams"), names.tls_secret("cams"), names.api_key_secret("cams")]


def test_a_first_pass_makes_the_models_secrets_without_reading_them() -> None:
    kube, obj = CountingKube(), body({})
    ctx = _keys_pass(kube, obj)
    assert [key for key in kube.reads if key[1] == "vision"] == []
    assert all(kube.secret("vision", name) is not None for name in _own_secrets())
    kube.reads.clear()
    assert {"SigningKeyCreated", "CertificateIssued", "ApiKeyCreated"} <= {e[1] for e in ctx.events}

    _keys_pass(kube, obj)  # its status written, the next pass reads what it keeps
    assert {key[2] for key in kube.reads if key[1] == "vision"} >= set(_own_secrets())


def test_keys_and_the_certificate_a_failed_first_pass_left_are_kept_and_announced_once() -> None:
    """The first pass was killed after its writes and before its status write (the fault campaign's crash points):
    its Events were never sent either. The next first pass keeps what it made, and says so, of that same
    certificate: without this, a crash there lost CertificateIssued, SigningKeyCreated and ApiKeyCreated for good."""
    kube, obj = CountingKube(), body({})
    first = _keys_pass(kube, obj)
    kept = {name: kube.secret("vision", name) for name in _own_secrets()}
    issued = next(e for e in first.events if e[1] == "CertificateIssued")
    del obj["status"]  # as if that pass had failed before its status write (and before its Events)

    ctx = _keys_pass(kube, obj)

    assert {name: kube.secret("vision", name) for name in kept} == kept
    announced = {e[1]: e[2] for e in ctx.events}
    for reason in ("SigningKeyCreated", "ApiKeyCreated", "CertificateIssued"):
        assert "made by a pass that stopped before saying so" in announced[reason], announced
    fingerprint = issued[2].split(" certificate ")[1].split(" ")[0]
    assert fingerprint in announced["CertificateIssued"]  # the kept certificate, not a second issuance
    assert [e[1] for e in ctx.events if e[1].startswith("Certificate")] == ["CertificateIssued"]

    later = _keys_pass(kube, obj)  # reported now: said once
    assert not {"SigningKeyCreated", "ApiKeyCreated", "CertificateIssued"} & {e[1] for e in later.events}


def test_a_hand_deleted_key_of_a_running_model_is_made_again() -> None:
    kube, obj = CountingKube(), body({})
    _keys_pass(kube, obj)
    kube.delete("v1", "Secret", "vision", names.api_key_secret("cams"), owner=None)
    ctx = _keys_pass(kube, obj)
    assert kube.secret("vision", names.api_key_secret("cams")) is not None
    assert "ApiKeyCreated" in {e[1] for e in ctx.events}


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


def _engine_pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path) -> context.Context:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


def _job_reads(kube: CountingKube) -> int:
    return sum(count for key, count in kube.reads.items() if key[0] == "Job")


def test_a_cache_hit_reads_no_job(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = CountingKube(), support.body()
    support.publish_engine(tmp_path, mount, support.key_of(obj), support.signing_secret(kube, obj))
    ctx = _engine_pass(kube, obj, mount)
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == engine.CACHED
    assert _job_reads(kube) == 0


def test_a_miss_reads_the_job_before_starting_one_and_a_running_build_is_asked_first(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = CountingKube(), support.body()
    support.signing_secret(kube, obj)
    ctx = _engine_pass(kube, obj, mount)
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building"
    assert _job_reads(kube) == 1
    assert len([key for key in kube.objects if key[1] == "Job"]) == 1

    # Building: the Job is read first; that it has not finished is the answer, the store is not asked.
    support.publish_engine(tmp_path, mount, support.key_of(obj), support.signing_secret(kube, obj))
    ctx = _engine_pass(kube, obj, mount)
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building"
    assert _job_reads(kube) == 2

    # Failed: the Job stays the answer (no store read turns a failed build into a reused engine).
    (job,) = [key for key in kube.objects if key[1] == "Job"]
    kube.objects[job]["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
    }
    for _ in range(2):
        ctx = _engine_pass(kube, obj, mount)
        built = ctx.condition(conditions.BUILT)
        assert built is not None and (built.status, built.reason) == ("False", "BuildFailed")
