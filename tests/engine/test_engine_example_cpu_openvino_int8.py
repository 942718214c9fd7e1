"""The issue's "done means": `kestrel build` on examples/cpu-openvino-int8 exactly as committed, offline.

The example reads `pvc://kestrel-models/...`; the claim is laid out in a tmp folder as its README describes, with the
dataset's data.yaml relative to itself (as on a real claim, mounted elsewhere than where it was filled), and the
build runs from another working directory, in a network namespace of its own where unshare allows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kestrel.engine import fetch
from synthetic import detector, shapes
from tests.engine import builds

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cpu-openvino-int8" / "modeldeployment.yaml"
CLAIM = "kestrel-models"


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


def lay_out_claim(pvc_root: Path) -> Path:
    """The checkpoint, the fixture's validation split (80 images, seed 7) and the first images of its training split
    (calibration), with a relative data.yaml."""
    claim = pvc_root / CLAIM
    claim.mkdir(parents=True)
    shutil.copyfile(detector.CHECKPOINT, claim / detector.CHECKPOINT.name)
    record = json.loads(detector.RECORD.read_text())
    dataset = claim / "shapes"
    shapes.write_split(dataset, record["dataset"]["seed"], "val", record["dataset"]["val"])
    shapes.write_split(dataset, record["dataset"]["seed"], "train", detector.CALIBRATION_IMAGES)
    lines = ["path: .", "train: images/train", "val: images/val", "names:"]
    lines += [f"  {index}: {name}" for index, name in enumerate(shapes.CLASSES)]
    (dataset / "data.yaml").write_text("\n".join(lines) + "\n")
    return claim


def test_example_points_at_the_fixture() -> None:
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    source = spec["model"]["source"]
    assert source["uri"] == f"pvc://{CLAIM}/{detector.CHECKPOINT.name}"
    assert source["sha256"] == fetch.sha256_file(detector.CHECKPOINT)
    assert (spec["engine"]["format"], spec["engine"]["precision"]) == ("openvino", "int8")


def test_kestrel_build_on_the_example(tmp_path: Path) -> None:
    pvc_root = tmp_path / "pvc"
    lay_out_claim(pvc_root)
    out, cwd = tmp_path / "out", tmp_path / "elsewhere"
    cwd.mkdir()
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "YOLO_CONFIG_DIR": str(tmp_path / "yolo"),
        "KESTREL_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    command = [sys.executable, "-m", "kestrel.cli", "build", "--spec", str(EXAMPLE), "--out", str(out)]
    command += ["--pvc-root", str(pvc_root)]
    if _unshare_works():
        command = ["unshare", "-n", *command]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    result, manifest = builds.check_outputs(out)
    print(f"example: {result.validation.model_dump(exclude_none=True)} seconds={manifest['seconds']}")
    assert result.gate.passed, result.gate.message
    assert (result.format, result.precision) == ("openvino", "int8")
    numbers = result.validation
    assert numbers.map_source is not None and numbers.map_source >= 0.5  # the fixture detector on its own split
    assert numbers.map_engine is not None and numbers.map_source - numbers.map_engine <= 0.02
    repository = out / "repository"
    assert (repository / "shapes-cpu" / "config.pbtxt").is_file()  # the ensemble: raw images in, boxes out
    assert {p.name for p in (repository / "shapes-cpu-engine" / "1").iterdir()} >= {"model.xml", "model.bin"}
    assert len(manifest["files"]) == len([p for p in repository.rglob("*") if p.is_file()])
    assert (tmp_path / "termination-log").read_text() == (out / "result.json").read_text()
