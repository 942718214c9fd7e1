"""Revoking mutual-TLS clients: a Role with the client labels marks a client only when the model owns it, and of the
objects named after a client, only the model's own go. Labels prove nothing: anyone who may create a Role sets them."""

from __future__ import annotations

import datetime
from typing import Any

from kestrel.manifests import access, labels
from tests.unit.tls_fake_kube import FakeKube, body, reconcile_tls

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
RBAC = "rbac.authorization.k8s.io/v1"
MUTUAL = {"mutual": True}
ACCESS = {"allowedServiceAccounts": ["apps/camera-gateway"]}


def _labelled_role(name: str) -> dict[str, Any]:
    """A Role someone else made, with the labels of a client of the model `cams`, named after their Secret."""
    return {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {
            "name": name,
            "namespace": "vision",
            "labels": {labels.MODEL: "cams", access.CLIENT_LABEL: "forged"},
        },
        "rules": [],
    }


def _theirs(kind: str, api_version: str, name: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "vision"}}


def test_a_labelled_role_the_model_does_not_own_deletes_nothing() -> None:
    kube, obj = FakeKube(), body(MUTUAL, ACCESS)
    reconcile_tls(kube, obj, NOW)
    theirs = [
        _labelled_role("database-password"),
        _theirs("Secret", "v1", "database-password"),
        _theirs("RoleBinding", RBAC, "database-password"),
    ]
    for found in theirs:
        kube.put(found)

    ctx = reconcile_tls(kube, obj, NOW)

    for found in theirs:
        assert kube.get(found["apiVersion"], found["kind"], "vision", found["metadata"]["name"]) == found
    assert not [event for event in ctx.events if event[1] == "ClientCertificateRevoked"]


def test_a_removed_subjects_own_objects_still_go() -> None:
    kube, obj = FakeKube(), body(MUTUAL, ACCESS)
    reconcile_tls(kube, obj, NOW)
    (role,) = kube.list(RBAC, "Role", "vision", labels=f"{access.CLIENT_LABEL}")
    name = role["metadata"]["name"]
    obj["spec"]["security"]["access"]["allowedServiceAccounts"] = []

    ctx = reconcile_tls(kube, obj, NOW)

    assert [key for key in kube.objects if key[3] == name] == []  # its Secret, Role and RoleBinding
    assert "ClientCertificateRevoked" in {event[1] for event in ctx.events}
