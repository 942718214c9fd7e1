"""reconcilers.security.access: the API-key reader binding is deleted when the spec no longer names a subject; a model
whose spec never named one (generation 1) had none bound, so its passes send no delete."""

from __future__ import annotations

import datetime

from kestrel.reconcilers import context
from kestrel.reconcilers.security import access
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

BINDING = ("rbac.authorization.k8s.io/v1", "RoleBinding", "vision", "cams-api-key-reader")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def passed(kube: FakeKube, obj: dict[str, object]) -> None:
    ctx = context.Context.load(kube, obj, NOW)
    access.reconcile(ctx, SETTINGS)


def test_a_new_model_without_subjects_sends_no_delete() -> None:
    kube = FakeKube()
    passed(kube, body({"mode": "disabled"}))
    assert kube.deleted == []
    assert BINDING not in kube.objects


def test_subjects_removed_by_a_spec_change_lose_their_binding() -> None:
    kube = FakeKube()
    passed(kube, body({"mode": "disabled"}, access={"allowedGroups": ["vision-clients"]}))
    assert BINDING in kube.objects
    changed = body({"mode": "disabled"})
    changed["metadata"]["generation"] = 2
    passed(kube, changed)
    assert kube.deleted == [BINDING] and BINDING not in kube.objects
