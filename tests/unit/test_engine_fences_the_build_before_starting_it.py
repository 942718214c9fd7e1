"""The engine reconciler applies the build pods' NetworkPolicy before it creates a build Job, with the store endpoint
the operator uses, and applies it again on passes that start no build, so a deleted policy comes back."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from kestrel.api import conditions
from kestrel.manifests import names
from kestrel.reconcilers import engine, storage
from kestrel.storage import s3
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube, Key

POLICY = ("networking.k8s.io/v1", "NetworkPolicy", support.NAMESPACE, names.build_network_policy(support.NAME))
S3_STORE = "s3://engines/kestrel"


class OrderedKube(FakeKube):
    """Remembers the order of applies."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[Key] = []

    def apply(self, body: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        meta = body["metadata"]
        self.order.append(self.key(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"]))
        return super().apply(body, force=force)


def _pass(kube: FakeKube, obj: dict[str, Any], settings: Any, access: storage.Access) -> Any:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, access)
    obj["status"] = ctx.status.to_wire()
    return ctx


def test_the_policy_is_applied_before_the_job_with_the_operators_store_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))  # a cache miss
    kube, obj = OrderedKube(), support.body()
    support.signing_secret(kube, obj)
    credentials = s3.Credentials(
        access_key="a", secret_key="b", endpoint="http://minio.storage.svc:9000", region="us-east-1"
    )
    settings = support.settings(None, S3_STORE, store_credentials_secret="engine-store")

    ctx = _pass(kube, obj, settings, storage.Access(credentials=credentials))

    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building"
    kinds = [key[1] for key in kube.order]
    assert kinds == ["NetworkPolicy", "Job"]
    egress = kube.objects[POLICY]["spec"]["egress"]
    assert {port["port"] for rule in egress for port in rule["ports"] if port["protocol"] == "TCP"} == {53, 9000}


def test_the_policy_is_applied_while_the_store_credentials_are_missing_and_no_job_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))
    kube, obj = OrderedKube(), support.body()
    settings = support.settings(None, S3_STORE, store_credentials_secret="engine-store")

    ctx = _pass(kube, obj, settings, storage.Access(problem="Secret kestrel-system/engine-store does not exist"))

    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == storage.MISSING
    assert [key[1] for key in kube.order] == ["NetworkPolicy"]


def test_a_deleted_policy_comes_back_on_a_pass_whose_engine_is_already_built(tmp_path: pathlib.Path) -> None:
    mount = tmp_path / "mnt"
    (mount / "engines").mkdir(parents=True)
    kube, obj = OrderedKube(), support.body()
    support.publish_engine(tmp_path, mount, support.key_of(obj), support.signing_secret(kube, obj))
    settings = support.settings(mount)
    ctx = _pass(kube, obj, settings, storage.Access())
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == engine.CACHED  # status now holds the engine

    kube.delete(*POLICY)
    _pass(kube, obj, settings, storage.Access())

    assert POLICY in kube.objects
    assert not [key for key in kube.objects if key[1] == "Job"]
