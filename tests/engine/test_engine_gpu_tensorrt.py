"""TensorRT: where a GPU is lent, the fixture builds to a gated FP16 engine; without one the build fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import errors, pipeline
from synthetic import detector
from tests.engine import builds

pytestmark = pytest.mark.slow

GPU_TARGET = {"environment": "cloud", "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}}


def _cuda() -> bool:
    import torch  # noqa: PLC0415

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU")
def test_tensorrt_fp16_build_passes_the_gate(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data")
    raw = builds.spec(shapes, {"format": "tensorrt", "precision": "fp16"}, {"maxMapDrop": 0.01})
    raw["target"] = GPU_TARGET
    built = pipeline.build(builds.parse(raw), tmp_path / "out", pipeline.BuildOptions(model_name="shapes"))
    result, _ = builds.check_outputs(tmp_path / "out")
    assert built.passed, result.gate.message
    assert (built.repository / "shapes-engine" / "1" / "model.plan").exists()  # type: ignore[operator]


@pytest.mark.skipif(_cuda(), reason="checks the message shown where no GPU is present")
def test_tensorrt_without_gpu_fails_naming_the_field(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=4)
    raw = builds.spec(shapes, {"format": "tensorrt", "precision": "fp16"})
    raw["target"] = GPU_TARGET
    with pytest.raises(errors.ExportError, match=r"spec\.engine\.format: tensorrt needs an NVIDIA GPU"):
        pipeline.build(builds.parse(raw), tmp_path / "out", pipeline.BuildOptions(iterations=2))
