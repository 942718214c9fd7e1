"""Child names are valid DNS-1035 labels of at most 63 characters, stable, and distinct for distinct models."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from kestrel.api import keys
from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners
from tests.unit.spec_support import UNMEASURED

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
KEY = "0123456789abcdef" * 4
LONG = "a-very-long-model-deployment-name-that-goes-on-and-on-past-the-label-limit"
BUILDERS: dict[str, Callable[[str], str]] = {
    "build_job": lambda n: names.build_job(n, KEY),
    "build_network_policy": names.build_network_policy,
    "triton": names.triton,
    "canary": names.canary,
    "service": names.service,
    "service_account": names.service_account,
    "pod_disruption_budget": names.pod_disruption_budget,
    "autoscaler": names.autoscaler,
    "store_credentials": names.store_credentials,
    "upload_grant": lambda n: names.upload_grant(n, KEY),
    "download_grant": lambda n: names.download_grant(n, KEY),
    "tls_secret": names.tls_secret,
    "api_key_secret": names.api_key_secret,
    "signing_secret": names.signing_secret,
}
MODEL_NAMES = ["cams", LONG, LONG + "-b", "x" * 253, "v1.2.detector", "7eleven-cams", "a" * 63, "a" * 64]


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("model", MODEL_NAMES, ids=lambda n: n[:20] + f"…{len(n)}")
def test_every_name_is_a_dns_label_of_at_most_63_characters(builder: str, model: str) -> None:
    name = BUILDERS[builder](model)
    assert len(name) <= names.MAX_LENGTH
    assert DNS_1035.match(name), name


def test_short_names_are_kept_readable() -> None:
    assert names.build_job("cams", KEY) == "cams-build-01234567"
    assert names.triton("cams") == "cams-triton"
    assert names.canary("cams") == "cams-triton-canary"
    assert names.service("cams") == "cams"


def test_build_job_carries_the_first_eight_hex_of_the_real_engine_key() -> None:
    spec = specs.parse({"model": {"source": {"uri": "file:///m.pt"}}, "validation": UNMEASURED})
    assert names.build_job("cams", keys.engine_key(spec)) == f"cams-build-{keys.engine_key(spec)[:8]}"


def test_long_names_keep_their_suffix_and_differ_when_only_their_tails_differ() -> None:
    first, second = names.build_job(LONG, KEY), names.build_job(LONG + "-b", KEY)
    assert first != second
    assert first.endswith("-build-01234567")
    assert first.startswith(LONG[:30])
    assert names.build_job(LONG, KEY) == first  # stable across calls (and processes: no salted hash)
    assert names.build_job(LONG, KEY) != names.build_job(LONG, "f" * 64)


def test_rewritten_names_do_not_collide_with_names_that_were_already_valid() -> None:
    assert names.service("v1.2.detector") != names.service("v1-2-detector")
    assert names.service("7eleven-cams").startswith("m-7eleven-cams-")


def test_label_values_fit_and_are_unchanged_when_short() -> None:
    assert names.label_value("v1.2.detector") == "v1.2.detector"
    long_labels = labels.common("x" * 253, "triton", KEY)
    assert all(len(v) <= 63 for v in long_labels.values())
    assert long_labels[labels.ENGINE_KEY] == "01234567"


def test_owner_reference_names_the_model_deployment_as_controlling_owner() -> None:
    owner = owners.Owner.from_body({"metadata": {"name": "cams", "namespace": "vision", "uid": "u-1", "generation": 7}})
    assert owner == owners.Owner("cams", "vision", "u-1", 7)
    assert owner.owner_reference() == {
        "apiVersion": "kestrel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "cams",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
