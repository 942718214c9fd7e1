"""What cannot be built here is refused before any work, with the spec field to change in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import errors, export

SETTINGS = export.ExportSettings(imgsz=320, batch=1, dynamic=True)


def test_tensorrt_without_a_gpu_names_the_format_field() -> None:
    with pytest.raises(errors.ExportError, match=r"spec\.engine\.format: tensorrt needs an NVIDIA GPU"):
        export.check_supported(export.Candidate("tensorrt", "fp16"), SETTINGS, gpu=False)
    export.check_supported(export.Candidate("tensorrt", "fp16"), SETTINGS, gpu=True)


def test_int8_without_calibration_names_the_calibration_field() -> None:
    with pytest.raises(errors.ExportError, match=r"spec\.engine\.calibration"):
        export.check_supported(export.Candidate("openvino", "int8"), SETTINGS, gpu=False)
    calibrated = export.ExportSettings(imgsz=320, batch=1, dynamic=True, calibration=export.Calibration(Path("d"), 8))
    export.check_supported(export.Candidate("openvino", "int8"), calibrated, gpu=False)


def test_fp16_onnx_on_cpu_is_refused_but_openvino_fp16_is_fine() -> None:
    with pytest.raises(errors.ExportError, match=r"spec\.engine\.precision"):
        export.check_supported(export.Candidate("onnx", "fp16"), SETTINGS, gpu=False)
    export.check_supported(export.Candidate("openvino", "fp16"), SETTINGS, gpu=False)


def test_refusal_happens_before_the_checkpoint_is_touched(tmp_path: Path) -> None:
    with pytest.raises(errors.ExportError):
        export.export(tmp_path / "missing.pt", export.Candidate("tensorrt", "fp32"), SETTINGS, tmp_path, gpu=False)
    assert list(tmp_path.iterdir()) == []
