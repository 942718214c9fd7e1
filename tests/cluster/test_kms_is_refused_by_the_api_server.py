"""`spec.security.encryption.kms` is refused by the API server itself, in every field-validation mode and on update.

No builder or loader has a KMS client, so a ModelDeployment asking for one must never be stored: not pruned to a
spec that says something else (an undeclared field is dropped in silence under the default `Warn` and under
`Ignore`), and never reported as encrypted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import exceptions

from kestrel.api import crd
from tests import invalid_specs
from tests.cluster.operator_support import get_mdep
from tests.cluster_fixtures import Cluster

FIELD = "spec.security.encryption.kms"
ASKS_FOR_KMS = {"enabled": True, "kms": invalid_specs.KMS}


def _body(name: str, encryption: dict[str, Any]) -> dict[str, Any]:
    spec = invalid_specs.valid_spec() | {"security": {"encryption": encryption}}
    return {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": {"name": name}, "spec": spec}


def _refusal(caught: pytest.ExceptionInfo[exceptions.ApiException]) -> str:
    assert caught.value.status == 422, caught.value.body
    assert caught.value.body is not None, "a refusal without a body"
    message: str = json.loads(caught.value.body)["message"]
    return message


# None: the client sends no fieldValidation, as client-go, Argo CD and this Python client do by default.
@pytest.mark.parametrize("validation", [None, "Ignore", "Warn", "Strict"], ids=lambda v: v or "default")
def test_a_kms_spec_is_refused_at_create_naming_the_field(
    with_crd: Cluster, shared_namespace: str, validation: str | None
) -> None:
    with pytest.raises(exceptions.ApiException) as caught:
        with_crd.custom.create_namespaced_custom_object(
            crd.GROUP,
            crd.VERSION,
            shared_namespace,
            crd.PLURAL,
            _body("asks-for-kms", ASKS_FOR_KMS),
            field_validation=validation,  # None: the client leaves the parameter out
        )
    message = _refusal(caught)
    assert f"{FIELD}: Forbidden" in message, message
    assert "not supported yet" in message
    assert "keySecret" in message  # and says what to use instead


def test_kubectl_apply_of_a_kms_manifest_is_refused(with_crd: Cluster, shared_namespace: str) -> None:
    applied = with_crd.kubectl(
        "apply",
        "--server-side",
        f"--namespace={shared_namespace}",
        "-f",
        "-",
        check=False,
        stdin=json.dumps(_body("applies-kms", {"kms": invalid_specs.KMS})),
    )
    assert applied.returncode != 0
    assert FIELD in applied.stderr and "not supported yet" in applied.stderr, applied.stderr


def test_adding_kms_to_a_stored_model_is_refused_and_changes_nothing(with_crd: Cluster, namespace: str) -> None:
    stored = with_crd.create_mdep(namespace, "cams", invalid_specs.valid_spec())
    with pytest.raises(exceptions.ApiException) as caught:
        with_crd.custom.patch_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "cams", {"spec": {"security": {"encryption": ASKS_FOR_KMS}}}
        )
    assert FIELD in _refusal(caught)
    after = get_mdep(with_crd, namespace, "cams")
    assert after["metadata"]["generation"] == stored["metadata"]["generation"]
    assert after["spec"]["security"]["encryption"] == {"enabled": False}
