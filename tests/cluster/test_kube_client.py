"""kube.Kube against the real API server: forced server-side apply, status, Events, and error mapping."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config

from kestrel.api import crd, errors
from kestrel.kube import client as kube_client
from tests import invalid_specs
from tests.cluster_fixtures import Cluster


@pytest.fixture
def kestrel_kube(kube: Cluster) -> kube_client.Kube:
    return kube_client.Kube(kube.api)


def _config_map(namespace: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": data,
    }


def test_apply_creates_under_the_kestrel_field_manager(kestrel_kube: kube_client.Kube, namespace: str) -> None:
    stored = kestrel_kube.apply(_config_map(namespace, mode="fast"))
    assert stored["data"] == {"mode": "fast"}
    managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
    assert ("kestrel", "Apply") in managers


def test_reapplying_the_same_object_changes_nothing(kestrel_kube: kube_client.Kube, namespace: str) -> None:
    first = kestrel_kube.apply(_config_map(namespace, mode="fast"))
    second = kestrel_kube.apply(_config_map(namespace, mode="fast"))
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_unforced_apply_of_a_field_another_manager_owns_is_a_conflict(
    kube: Cluster, kestrel_kube: kube_client.Kube, namespace: str
) -> None:
    kestrel_kube.apply(_config_map(namespace, mode="fast"))
    someone = kube_client.Kube(kube.api, field_manager="someone")
    with pytest.raises(errors.ConflictError, match="conflict"):
        someone.apply(_config_map(namespace, mode="slow"), force=False)


def test_forced_apply_takes_a_hand_edited_field_back(
    kube: Cluster, kestrel_kube: kube_client.Kube, namespace: str
) -> None:
    kestrel_kube.apply(_config_map(namespace, mode="fast"))
    kube_client.Kube(kube.api, field_manager="someone").apply(_config_map(namespace, mode="slow"))
    restored = kestrel_kube.apply(_config_map(namespace, mode="fast"))
    assert restored["data"]["mode"] == "fast"
    owners = [m["manager"] for m in restored["metadata"]["managedFields"] if "f:data" in m.get("fieldsV1", {})]
    assert owners == ["kestrel"]


def test_create_keeps_the_first_writer_where_an_apply_by_the_same_manager_replaces_it(
    kestrel_kube: kube_client.Kube, namespace: str
) -> None:
    """Why the operator CA is created, not applied: unforced applies under one field manager never conflict."""
    kestrel_kube.apply(_config_map(namespace, mode="first"), force=False)
    assert kestrel_kube.apply(_config_map(namespace, mode="second"), force=False)["data"] == {"mode": "second"}
    assert kestrel_kube.delete("v1", "ConfigMap", namespace, "settings", owner=None) is True

    assert kestrel_kube.create(_config_map(namespace, mode="first"))["data"] == {"mode": "first"}
    with pytest.raises(errors.ConflictError, match="already exists"):
        kestrel_kube.create(_config_map(namespace, mode="second"))
    assert (kestrel_kube.get("v1", "ConfigMap", namespace, "settings") or {}).get("data") == {"mode": "first"}


def test_get_list_delete(kestrel_kube: kube_client.Kube, namespace: str) -> None:
    assert kestrel_kube.get("v1", "ConfigMap", namespace, "settings") is None
    kestrel_kube.apply(_config_map(namespace, mode="fast"))
    assert (kestrel_kube.get("v1", "ConfigMap", namespace, "settings") or {}).get("data") == {"mode": "fast"}
    names = [o["metadata"]["name"] for o in kestrel_kube.list("v1", "ConfigMap", namespace)]
    assert "settings" in names
    assert kestrel_kube.delete("v1", "ConfigMap", namespace, "settings", owner=None) is True
    assert kestrel_kube.delete("v1", "ConfigMap", namespace, "settings", owner=None) is False


def test_status_patch_leaves_spec_and_generation_alone(
    with_crd: Cluster, kestrel_kube: kube_client.Kube, namespace: str
) -> None:
    created = with_crd.create_mdep(namespace, "cams", invalid_specs.valid_spec())
    patched = kestrel_kube.patch_status(namespace, "cams", {"phase": "Building", "observedGeneration": 1})
    assert patched["status"]["phase"] == "Building"
    assert patched["spec"] == created["spec"]
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]


def test_event_is_recorded_on_the_object(with_crd: Cluster, kestrel_kube: kube_client.Kube, namespace: str) -> None:
    created = with_crd.create_mdep(namespace, "cams", invalid_specs.valid_spec())
    kestrel_kube.event(created, type="Warning", reason="AccuracyDrop", message="mAP50-95 fell 0.05", action="Validate")
    events = client.CoreV1Api(with_crd.api).list_namespaced_event(namespace).items
    ours = [e for e in events if e.involved_object.name == "cams"]
    assert [(e.reason, e.type, e.source and e.source.component) for e in ours] == [
        ("AccuracyDrop", "Warning", "kestrel-operator")
    ]


def test_forbidden_and_invalid_are_kestrel_errors(kube: Cluster, namespace: str) -> None:
    restricted = config.new_client_from_config(config_file=str(kube.bed.kubeconfig))
    restricted.default_headers["Impersonate-User"] = "system:serviceaccount:default:default"
    with pytest.raises(errors.ForbiddenError, match="Failed to apply ConfigMap"):
        kube_client.Kube(restricted).apply(_config_map(namespace, mode="fast"))
    invalid = _config_map(namespace)
    invalid["metadata"]["name"] = "Not_A_Valid_Name"
    with pytest.raises(errors.ClusterError, match="Not_A_Valid_Name"):
        kube_client.Kube(kube.api).apply(invalid)


def test_a_kind_outside_the_table_is_refused(kestrel_kube: kube_client.Kube) -> None:
    with pytest.raises(errors.ClusterError, match="does not manage"):
        kestrel_kube.get("example.com/v1", "Widget", "default", "w")


def test_model_deployments_can_be_listed_across_namespaces(
    with_crd: Cluster, kestrel_kube: kube_client.Kube, namespace: str
) -> None:
    with_crd.create_mdep(namespace, "cams", invalid_specs.valid_spec())
    found = kestrel_kube.list(crd.API_VERSION, crd.KIND, None)
    assert any(o["metadata"]["namespace"] == namespace for o in found)
