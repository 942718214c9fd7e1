"""Obfuscated engines (spec.security.obfuscate), built for real from the committed detector: the served file holds
no layer names, tensor names or Ultralytics metadata, gives the plain engine's outputs exactly, and passes the same
gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.engine import pipeline
from synthetic import detector
from tests.engine import builds

pytestmark = pytest.mark.slow

# What the plain exports carry: Ultralytics' module paths in node and layer names, the class names and the producer
# in the metadata.
REVEALING = (b"/model.", b"model.22", b"circle", b"triangle", b"Ultralytics", b"pytorch")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> detector.ShapesDetector:
    return detector.shapes_detector(tmp_path_factory.mktemp("shapes"), val=24)


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("openvino", ".xml")])
def test_an_obfuscated_engine_gives_nothing_away_and_passes_the_same_gate(
    shapes: detector.ShapesDetector, tmp_path: Path, fmt: str, suffix: str
) -> None:
    raw = builds.spec(shapes, {"format": fmt, "precision": "fp32"})
    raw["security"] = {"obfuscate": True}
    built = pipeline.build(builds.parse(raw), tmp_path, pipeline.BuildOptions(iterations=5))
    result, manifest = builds.check_outputs(tmp_path)
    assert built.passed and built.repository is not None, result.gate.message
    (candidate,) = manifest["candidates"]
    assert candidate["obfuscatedMaxDeltaToPlain"] == 0.0
    served = b"".join(p.read_bytes() for p in built.repository.rglob(f"*{suffix}"))
    assert served, list(built.repository.rglob("*"))
    assert [word for word in REVEALING if word in served] == []
    # The plain export did carry them: the check can fail.
    plain = next(p for p in (tmp_path / "work").rglob(f"*{suffix}") if "obfuscated" not in p.parts)
    assert [word for word in REVEALING if word in plain.read_bytes()], plain
