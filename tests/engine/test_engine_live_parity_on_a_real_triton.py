"""The operator's live check against a real Triton (the one nvidia-pytriton ships) serving a built engine: the probes
the build recorded beside its repository are answered as recorded, through the very client the operator uses
(serving/smoke.py); and a served pipeline that answers otherwise (here its postprocessing keeps one box per image)
fails the check with a message naming the image. Triton also proves it ignores the probes file at the repository
root: it loads the repository with strict config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kestrel.serving import probes, smoke
from synthetic import detector
from testbed.ports import free_port
from tests.engine import builds
from tests.engine.test_engine_triton_serves_the_validated_pipeline import triton

pytestmark = pytest.mark.slow

pytest.importorskip("pytriton")


def test_the_builds_probes_pass_on_the_served_engine_and_fail_on_another_pipeline(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=8)
    built = builds.python_runtime_engine(shapes, tmp_path / "out")
    assert built.passed and built.repository is not None
    listed = {entry["path"] for entry in json.loads(built.manifest_file.read_text())["files"]}
    assert probes.FILE in listed, "the probes are a file of the engine: hashed, signed, encrypted, stored with it"
    recorded = probes.decode((built.repository / probes.FILE).read_bytes())
    assert len(recorded.images) == probes.MAX_IMAGES and recorded.why == ""
    assert sum(len(p.detections) for p in recorded.images) > 0, "no boxes at all: the check would prove nothing"

    port = free_port()
    target = smoke.Target(address=f"127.0.0.1:{port}", model="shapes")
    with triton(built.repository, tmp_path / "backends", grpc_port=port):
        passed = smoke.check(target, 60.0, recorded)
    assert (passed.passed, passed.parity, passed.probes) == (True, True, len(recorded.images)), passed.message
    assert "4 probe images" in passed.message and "answered as the build recorded" in passed.message

    # The same engine behind a postprocessing that keeps one box per image: an image with two boxes differs.
    crowded = [p for p in recorded.images if (p.detections[:, 4] >= recorded.conf + probes.SCORE_TOLERANCE).sum() > 1]
    assert crowded, "no probe image with two confident boxes: max_det=1 would change no answer"
    other = tmp_path / "other"
    shutil.copytree(built.repository, other)
    config = other / "shapes" / "config.pbtxt"
    text = config.read_text()
    assert '\\"max_det\\": 300' in text, text
    config.write_text(text.replace('\\"max_det\\": 300', '\\"max_det\\": 1'))
    with triton(other, tmp_path / "backends-other", grpc_port=port):
        failed = smoke.check(target, 60.0, recorded)
    assert (failed.passed, failed.parity) == (False, False), failed.message
    assert f"probe image {crowded[0].name!r}" in failed.message, failed.message
    assert "expected class" in failed.message and len(failed.message) <= 600
