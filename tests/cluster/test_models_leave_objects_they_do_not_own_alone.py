"""The running operator, under the chart's RBAC, never takes over or deletes an object it does not own.

A model's child names come from its name: a model called `web` wants `web-tls` and `web-api-key`, names a team may
already use. Such an object stays as it was (same resourceVersion, no owner reference, so the model's deletion does
not collect it), and the model says which object is in the way and what to do. A Role anyone may create with the
labels of a model's mutual-TLS client leads to no deletion of the Secret, RoleBinding or Role named after it.
"""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client
from kubernetes.client import exceptions

from kestrel.api import crd
from kestrel.manifests import access, labels, names
from tests.cluster.operator_support import condition, get_mdep, jobs, mdep_spec, meta, name_of, wait_for
from tests.cluster_fixtures import Cluster, Operator

RBAC_GROUP = "rbac.authorization.k8s.io"


def _secret(kube: Cluster, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return kube.core.read_namespaced_secret(name, namespace)
    except exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise


def _team_secret(kube: Cluster, namespace: str, name: str) -> client.V1Secret:
    """A Secret a team made before any model existed."""
    return kube.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            data={"password": base64.b64encode(f"{name} of the team".encode()).decode()},
        ),
    )


def _unchanged(kube: Cluster, namespace: str, before: client.V1Secret) -> bool:
    now = _secret(kube, namespace, name_of(before))
    return (
        now is not None
        and meta(now).resource_version == meta(before).resource_version
        and now.data == before.data
        and not meta(now).owner_references
    )


def _ready(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return condition(get_mdep(kube, namespace, name), "Ready")


def _conflict_naming(kube: Any, namespace: str, model: str, secret: str) -> dict[str, Any] | None:
    found = _ready(kube, namespace, model)
    if found and found["reason"] == "NameConflict" and f"Secret {namespace}/{secret} " in found["message"]:
        return found
    return None


def _owned_by(obj: Any, uid: str) -> bool:
    return any(ref.uid == uid for ref in meta(obj).owner_references or [])


def test_existing_secrets_of_a_models_child_names_survive_the_model_unchanged(
    kube: Cluster, operator: Operator, namespace: str
) -> None:
    tls_secret = _team_secret(kube, namespace, names.tls_secret("web"))
    api_key = _team_secret(kube, namespace, names.api_key_secret("web"))
    kube.create_mdep(namespace, "web", mdep_spec(namespace))

    stopped = wait_for(
        "Ready=False NameConflict naming web-tls", lambda: _conflict_naming(kube, namespace, "web", "web-tls")
    )
    assert stopped["status"] == "False"
    assert "rename the ModelDeployment, or delete or rename that Secret" in stopped["message"]
    warnings = [
        e
        for e in kube.core.list_namespaced_event(namespace).items
        if e.reason == "NameConflict" and e.involved_object.name == "web" and e.type == "Warning"
    ]
    assert warnings and f"Secret {namespace}/web-tls" in (warnings[0].message or "")
    assert _unchanged(kube, namespace, tls_secret) and _unchanged(kube, namespace, api_key)
    assert jobs(kube, namespace) == []  # the pass stopped: no build started for a model that cannot serve

    # The fix the message names: the team renames its Secret (here: deletes it). The model goes on to the next name.
    kube.core.delete_namespaced_secret(name_of(tls_secret), namespace)
    wait_for(
        "Ready=False NameConflict naming web-api-key", lambda: _conflict_naming(kube, namespace, "web", "web-api-key")
    )
    uid = get_mdep(kube, namespace, "web")["metadata"]["uid"]
    made = _secret(kube, namespace, names.tls_secret("web"))
    assert made is not None and _owned_by(made, uid)
    assert _unchanged(kube, namespace, api_key)

    # Deleting the model collects what it owns, and nothing else.
    kube.custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "web")
    wait_for(
        "the model's own web-tls to be collected",
        lambda: _secret(kube, namespace, names.tls_secret("web")) is None,
        timeout=90,
    )
    assert _unchanged(kube, namespace, api_key)
    assert 'forbidden: User "system:serviceaccount:' not in operator.log()


def test_a_labelled_role_named_after_a_secret_deletes_nothing(
    kube: Cluster, operator: Operator, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(kube.api)
    victim = "database-password"
    secret = _team_secret(kube, namespace, victim)
    their_role = rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            # The labels of a client certificate of the model `cams`: anyone who may create a Role can set them.
            metadata=client.V1ObjectMeta(name=victim, labels={labels.MODEL: "cams", access.CLIENT_LABEL: "forged"}),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], resource_names=[victim], verbs=["get"])],
        ),
    )
    their_binding = rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=victim),
            role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="Role", name=victim),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="billing", namespace=namespace)],
        ),
    )
    raw = {
        **mdep_spec(namespace),
        "security": {"tls": {"mutual": True}, "access": {"allowedServiceAccounts": [f"{namespace}/gateway"]}},
    }
    kube.create_mdep(namespace, "cams", raw)
    wait_for(
        "CertificateReady=True",
        lambda: (c := condition(get_mdep(kube, namespace, "cams"), "CertificateReady")) and c["status"] == "True",
    )
    (own_role,) = [
        name_of(r)
        for r in rbac.list_namespaced_role(namespace, label_selector=access.CLIENT_LABEL).items
        if name_of(r) != victim
    ]

    # Dropping the subject prunes the model's own client objects, and only those.
    kube.custom.patch_namespaced_custom_object(
        crd.GROUP,
        crd.VERSION,
        namespace,
        crd.PLURAL,
        "cams",
        {"spec": {"security": {"access": {"allowedServiceAccounts": []}}}},
    )
    wait_for("the model's own client Secret to be revoked", lambda: _secret(kube, namespace, own_role) is None)
    assert _unchanged(kube, namespace, secret)
    role_now = rbac.read_namespaced_role(victim, namespace)
    binding_now = rbac.read_namespaced_role_binding(victim, namespace)
    assert meta(role_now).resource_version == meta(their_role).resource_version
    assert meta(binding_now).resource_version == meta(their_binding).resource_version
    assert 'forbidden: User "system:serviceaccount:' not in operator.log()


def test_a_model_without_conflicts_gets_its_children_owned_by_it(
    kube: Cluster, operator: Operator, namespace: str
) -> None:
    kube.create_mdep(namespace, "web", mdep_spec(namespace))
    wait_for("the build Job", lambda: jobs(kube, namespace))
    uid = get_mdep(kube, namespace, "web")["metadata"]["uid"]
    for name in (names.signing_secret("web"), names.tls_secret("web"), names.api_key_secret("web")):
        made = _secret(kube, namespace, name)
        assert made is not None and _owned_by(made, uid), name
    (job,) = jobs(kube, namespace)
    assert _owned_by(job, uid)
    ready = _ready(kube, namespace, "web")
    assert ready is not None and ready["reason"] != "NameConflict"
    assert 'forbidden: User "system:serviceaccount:' not in operator.log()
