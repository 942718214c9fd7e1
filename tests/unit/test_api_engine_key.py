"""The engine key changes with what changes the engine, and only with that."""

from __future__ import annotations

from typing import Any

from kestrel.api import keys, spec
from tests.unit.spec_support import UNMEASURED


def key(**overrides: Any) -> str:
    raw: dict[str, Any] = {
        "model": {"source": {"uri": "s3://m/shapes.pt", "sha256": "a" * 64}, "imgsz": 320},
        "validation": UNMEASURED,
    }
    for section, value in overrides.items():
        raw[section] = value
    return keys.engine_key(spec.parse(raw))


def test_key_is_stable_hex() -> None:
    assert key() == key()
    assert len(key()) == 64
    int(key(), 16)


def test_key_changes_with_source_digest_format_precision_and_gpu() -> None:
    base = key()
    assert key(model={"source": {"uri": "s3://m/shapes.pt", "sha256": "b" * 64}, "imgsz": 320}) != base
    assert key(model={"source": {"uri": "s3://m/shapes.pt", "sha256": "a" * 64}, "imgsz": 640}) != base
    assert key(engine={"format": "openvino"}) != base
    assert key(engine={"precision": "fp16"}) != base
    l4 = key(target={"environment": "cloud", "gpu": {"product": "NVIDIA-L4"}})
    a10 = key(target={"environment": "cloud", "gpu": {"product": "NVIDIA-A10G"}})
    assert len({base, l4, a10}) == 3


def test_key_changes_with_what_the_artifact_bakes_in() -> None:
    base = key()
    assert key(serving={"triton": {"instances": 2}}) != base
    assert key(serving={"triton": {"dynamicBatching": {"enabled": False}}}) != base
    assert key(validation={**UNMEASURED, "maxMapDrop": 0.05}) != base
    assert key(validation={"dataset": "file:///data/data.yaml"}) != base
    assert key(security={"obfuscate": True}) != base  # the served files differ
    assert key(security={"obfuscate": False}) == base  # named only when on: every other key stays as it was


def test_key_ignores_replicas_image_rollout_and_build_job_settings() -> None:
    base = key()
    assert key(serving={"replicas": 5}) == base
    assert key(serving={"triton": {"image": "registry.example/triton:24.10-py3"}}) == base
    assert key(rollout={"strategy": "canary", "canary": {"steps": [50, 100]}}) == base
    assert key(engine={"build": {"activeDeadlineSeconds": 7200}}) == base
