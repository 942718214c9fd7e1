"""The operator's imagePullSecrets reach every pod template the manifests build, and nothing when unset."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from kestrel import settings as operator_settings
from tests.unit import test_manifests_golden as golden

SECRETS = ("regcred", "mirror.example.com")
# The builders whose objects carry a pod template; every other builder must carry none.
POD_BUILDERS = {"build-job", "deployment", "canary-deployment", "argo-rollout"}


def _pod_specs(value: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec inside an object, found by shape (a dict with containers), wherever it is nested."""
    if isinstance(value, dict):
        if "containers" in value:
            yield value
        for item in value.values():
            yield from _pod_specs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _pod_specs(item)


def _with_secrets(case: golden.Case) -> golden.Case:
    return dataclasses.replace(case, settings=dataclasses.replace(case.settings, image_pull_secrets=SECRETS))


@pytest.mark.parametrize("case", golden.CASES, ids=lambda case: case.name)
def test_every_pod_template_names_the_pull_secrets(case: golden.Case) -> None:
    with_pods = set()
    for kind, render in golden.RENDERERS.items():
        obj = render(_with_secrets(case))
        if obj is None:
            continue
        pods = list(_pod_specs(obj))
        if pods:
            with_pods.add(kind)
        for pod in pods:
            assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror.example.com"}], kind
    assert with_pods <= POD_BUILDERS
    assert {"build-job", "deployment", "canary-deployment"} <= with_pods


def test_the_argo_rollout_pulls_with_them_too() -> None:
    canaries = [case for case in golden.CASES if case.spec.rollout.strategy == "canary"]
    assert canaries
    rollout = golden.RENDERERS["argo-rollout"](_with_secrets(canaries[0]))
    assert rollout is not None
    assert rollout["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": n} for n in SECRETS]


def test_no_pod_names_pull_secrets_when_none_are_set() -> None:
    # The golden files pin the objects without the setting; this pins that none of them has the field at all.
    for _case, kind, obj in golden.rendered():
        for pod in _pod_specs(obj):
            assert "imagePullSecrets" not in pod, kind


def test_the_setting_is_read_from_its_variable() -> None:
    env = {f"{operator_settings.PREFIX}ENGINE_STORE": "s3://engines"}
    assert operator_settings.from_environment(env).settings.image_pull_secrets == ()
    env[f"{operator_settings.PREFIX}IMAGE_PULL_SECRETS"] = " regcred, mirror.example.com,,regcred "
    assert operator_settings.from_environment(env).settings.image_pull_secrets == SECRETS


@pytest.mark.parametrize("value", ["RegCred", "reg_cred", "-regcred", "regcred.", "a" * 254, "reg cred"])
def test_a_bad_secret_name_is_refused_naming_the_variable(value: str) -> None:
    env = {
        f"{operator_settings.PREFIX}ENGINE_STORE": "s3://engines",
        f"{operator_settings.PREFIX}IMAGE_PULL_SECRETS": f"ok,{value}",
    }
    with pytest.raises(ValueError, match=r"^KESTREL_IMAGE_PULL_SECRETS=.*is not a Secret name"):
        operator_settings.from_environment(env)


def test_settings_default_to_no_pull_secrets() -> None:
    assert operator_settings.Settings(engine_store="s3://engines").image_pull_secrets == ()
