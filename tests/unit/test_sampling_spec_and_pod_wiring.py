"""spec.monitoring.sampling: refused where it cannot work or would store plaintext, outside the engine key, and wired
into the Triton pod as the store needs (a grant for s3://, a writable sub-path of the samples folder for pvc://)."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel.api import errors, keys
from kestrel.api import spec as specs
from kestrel.manifests import files, owners, sampling, triton
from kestrel.serving.backends import sampling as pod_sampling
from tests.unit.test_manifests_golden import UID, golden_settings

KEY = "ab" * 32


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": {"source": {"uri": "pvc://models/shapes.pt"}},
        "validation": {"dataset": "pvc://models/shapes/data.yaml"},
        "engine": {"format": "onnx"},
        "target": {"environment": "cpu"},
        "serving": {"triton": {"runtime": "python"}},
        "security": {"encryption": {"enabled": True, "keySecret": "shapes-kek"}},
        "monitoring": {"sampling": {"enabled": True}},
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"security": {}}, "needs spec.security.encryption.enabled"),
        ({"serving": {"triton": {"runtime": "native"}}}, "runtime python and a dynamic batch"),
        ({"engine": {"format": "onnx", "batch": {"dynamic": False, "max": 1}}}, "runtime python and a dynamic batch"),
        ({"monitoring": {"sampling": {"enabled": True, "include": ["inputs", "inputs"]}}}, "once each"),
        ({"monitoring": {"sampling": {"enabled": True, "include": []}}}, "at least 1"),
        ({"monitoring": {"sampling": {"enabled": True, "ratePerMinute": 601}}}, "less than or equal to 600"),
        ({"monitoring": {"sampling": {"enabled": True, "maxBytesPerDay": 1000}}}, "greater than or equal"),
    ],
)
def test_sampling_is_refused_where_it_cannot_work(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.SpecError, match=message):
        specs.parse(_raw(**changes))


def test_sampling_is_not_part_of_the_engine_key() -> None:
    off = specs.parse(_raw(monitoring={"sampling": {"enabled": False}}))
    on = specs.parse(_raw(monitoring={"sampling": {"enabled": True, "ratePerMinute": 60, "include": ["outputs"]}}))
    assert keys.engine_key(on) == keys.engine_key(off)


def _owner() -> owners.Owner:
    return owners.Owner(name="shapes", namespace="vision", uid=UID, generation=1)


def test_off_renders_nothing() -> None:
    spec = specs.parse(_raw(monitoring={}))
    assert sampling.triton(spec, _owner(), golden_settings("s3://engines/prod"), KEY) == (files.Files(), [])


def test_a_pvc_store_mounts_only_the_samples_folder_writable_and_no_grant() -> None:
    spec = specs.parse(_raw())
    pod = triton.deployment(
        spec,
        _owner(),
        golden_settings("pvc://engine-store/engines"),
        KEY,
        load_seconds=60,
        tls_checksum=None,
        api_key_id=None,
        engine_size_bytes=None,
    )["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in server["env"]}
    assert env[pod_sampling.DIR_ENV] == sampling.MOUNT_DIR and pod_sampling.GRANT_ENV not in env
    assert env[pod_sampling.FOLDER_ENV] == f"vision/shapes/{KEY}/samples"
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == sampling.MOUNT_DIR]
    assert mount["subPath"] == f"engines/vision/shapes/{KEY}/samples" and not mount.get("readOnly")
    writable = [m for m in server["volumeMounts"] if not m.get("readOnly")]
    assert {m["name"] for m in writable} == {"shm", "tmp", "samples-store"}, writable
    # The loader reads the engine beside it read-only, and nothing of the KEK's private half reaches Triton.
    assert all("kek" not in m["name"] or m["name"] == "samples-key" for m in server["volumeMounts"])
