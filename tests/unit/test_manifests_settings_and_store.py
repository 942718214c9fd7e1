"""Operator settings: image defaults that follow the release, and an engine store that is checked at start-up."""

from __future__ import annotations

import pytest

import kestrel
from kestrel import settings as operator_settings
from kestrel.manifests import labels, owners, store_mounts

OWNER = owners.Owner(name="cams", namespace="vision", uid="u-1")


def test_default_images_follow_the_kestrel_release_and_triton_24_10() -> None:
    settings = operator_settings.Settings(engine_store="s3://engines")
    assert settings.builder_image == f"ghcr.io/kestrel-dev/kestrel-builder:{kestrel.__version__}"
    assert settings.loader_image == f"ghcr.io/kestrel-dev/kestrel-loader:{kestrel.__version__}"
    assert settings.builder_gpu_image != settings.builder_image
    assert settings.triton_image == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert settings.triton_cpu_image == f"ghcr.io/kestrel-dev/kestrel-triton-cpu:{kestrel.__version__}"
    assert settings.triton_igpu_image == "nvcr.io/nvidia/tritonserver:24.10-py3-igpu"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/prefix", "s3://bucket/prefix/vision/cams/KEY"),
        ("s3://bucket/a/b/", "s3://bucket/a/b/vision/cams/KEY"),
        ("s3://bucket", "s3://bucket/vision/cams/KEY"),
        ("pvc://claim/engines", "pvc://claim/engines/vision/cams/KEY"),
    ],
)
def test_engines_live_under_namespace_name_and_key(uri: str, expected: str) -> None:
    assert store_mounts.engine_uri(operator_settings.Settings(engine_store=uri), OWNER, "KEY") == expected


def test_engine_prefix_contains_every_engine_of_the_model() -> None:
    settings = operator_settings.Settings(engine_store="s3://bucket/prefix")
    assert store_mounts.engine_uri(settings, OWNER, "KEY").startswith(store_mounts.engine_prefix(settings, OWNER))


@pytest.mark.parametrize(
    "uri", ["https://bucket/prefix", "s3:///prefix", "pvc://claim/../up", "s3://b/a//b", "file:///x", "s3://b/p?x=1"]
)
def test_a_bad_engine_store_is_refused_when_the_settings_are_made(uri: str) -> None:
    with pytest.raises(ValueError, match="engine store"):
        operator_settings.Settings(engine_store=uri)


def test_a_grant_secret_is_owned_by_the_model_and_named_after_its_engine() -> None:
    secret = store_mounts.grant_secret(OWNER, "ab" * 32, kind="upload", document="{}", expires="2026-12-08T00:00:00Z")
    assert secret["metadata"]["name"] == "cams-build-abababab-grant"
    assert secret["metadata"]["namespace"] == "vision"
    assert secret["metadata"]["ownerReferences"] == [OWNER.owner_reference()]
    assert secret["metadata"]["annotations"][labels.ENGINE_KEY_ANNOTATION] == "ab" * 32
    assert secret["data"] == {"grant.json": "e30="}
    download = store_mounts.grant_secret(
        OWNER, "ab" * 32, kind="download", document="{}", expires="2026-12-08T00:00:00Z"
    )
    assert download["metadata"]["name"] == "cams-load-abababab-grant"


def test_ambient_credentials_mount_nothing() -> None:
    access = store_mounts.store_access(
        operator_settings.Settings(engine_store="s3://bkt"), OWNER, "ab" * 32, writable=False
    )
    assert (access.volumes, access.mounts, access.options) == ((), (), ())


@pytest.mark.parametrize("uri", ["s3://kestrel-engines/prod", "s3://kestrel-engines", "pvc://engine-store/a/b"])
def test_engine_uri_is_the_one_the_storage_layer_writes_and_reads(uri: str) -> None:
    layout = pytest.importorskip("kestrel.storage.layout")
    expected = layout.parse_store_uri(uri).engine_uri(layout.EngineRef("vision", "cams", "ab" * 32))
    assert store_mounts.engine_uri(operator_settings.Settings(engine_store=uri), OWNER, "ab" * 32) == expected
