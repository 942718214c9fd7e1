"""The engine reconciler applies the build pods' NetworkPolicy before it creates a build Job, with the store endpoint
the operator uses, and applies it again on passes that start no build, so a deleted policy comes back. Under the real
client, which skips an apply it trusts as unchanged, a policy deleted by hand is back before the next Job."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import conditions, errors
from kestrel.kube import client, protocol, recent
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import engine, grants, storage
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


def _pass(
    kube: protocol.KubeApi, obj: dict[str, Any], settings: operator_settings.Settings, access: storage.Access
) -> context.Context:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, settings, access)
    obj["status"] = ctx.status.to_wire()
    return ctx


def test_the_policy_is_applied_before_the_job_with_the_operators_store_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))  # a cache miss
    monkeypatch.setattr(grants, "_signer", lambda *_: support.FakeSigner())
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
    assert kinds == ["NetworkPolicy", "Secret", "Job"]  # the fence, the Job's store grant, the Job
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

    kube.delete(*POLICY, owner=None)
    _pass(kube, obj, settings, storage.Access())

    assert POLICY in kube.objects
    assert not [key for key in kube.objects if key[1] == "Job"]


class ServerKube(client.Kube):
    """The real client over an in-memory API server: applies store what they send, reads answer what is stored."""

    def __init__(self) -> None:
        super().__init__(api=None, known=recent.Recent(trust=300))  # type: ignore[arg-type]
        self.stored: dict[str, dict[str, Any]] = {}
        self.patches: list[str] = []

    def view(self, trust: float = 0.0) -> client.Kube:
        opened = super().view(trust)
        opened._request = self._request  # type: ignore[method-assign]
        return opened

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method == "PATCH":
            self.patches.append(path)
            stored = copy.deepcopy(kwargs["body"])
            stored["metadata"].setdefault("uid", f"uid-{len(self.stored)}")  # as the API server gives every object
            self.stored[path] = stored
            return copy.deepcopy(stored)
        if method == "GET":
            if path.endswith("/jobs"):  # a list (a pass asks for the model's build Jobs while one runs)
                return {"items": [copy.deepcopy(v) for k, v in self.stored.items() if k.startswith(f"{path}/")]}
            if path not in self.stored:
                raise errors.NotFoundError(f"{path} not found")
            return copy.deepcopy(self.stored[path])
        return {}  # Events


def test_a_policy_deleted_by_hand_is_back_before_the_next_job_though_the_client_trusts_its_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))
    server, obj = ServerKube(), support.body()
    policy = f"/apis/networking.k8s.io/v1/namespaces/{support.NAMESPACE}/networkpolicies/{POLICY[3]}"
    settings = support.settings(None)
    _pass(server.view(300), obj, settings, storage.Access())
    assert server.patches[0] == policy and "/jobs/" in server.patches[1]

    del server.stored[policy]  # by hand; nothing watches NetworkPolicies
    changed = support.body(imgsz=640)  # a new engine key: a new Job
    changed["status"] = obj["status"]
    server.patches.clear()
    _pass(server.view(300), changed, settings, storage.Access())

    assert policy in server.stored
    assert server.patches[0] == policy and "/jobs/" in server.patches[1]


def test_a_policy_another_owner_put_in_its_place_stops_the_pass_before_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "open_store", lambda *_: (None, "no store in this test"))
    server, obj = ServerKube(), support.body()
    policy = f"/apis/networking.k8s.io/v1/namespaces/{support.NAMESPACE}/networkpolicies/{POLICY[3]}"
    settings = support.settings(None)
    _pass(server.view(300), obj, settings, storage.Access())

    # Deleted and made again by someone else, allowing everything: the client still trusts its own apply.
    server.stored[policy] = {
        "apiVersion": POLICY[0],
        "kind": POLICY[1],
        "metadata": {"name": POLICY[3], "namespace": POLICY[2]},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    changed = support.body(imgsz=640)
    changed["status"] = obj["status"]
    server.patches.clear()
    with pytest.raises(errors.NameConflictError):
        _pass(server.view(300), changed, settings, storage.Access())

    assert server.patches == []
