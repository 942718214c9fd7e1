"""`kestrel build` succeeds with no network at all (a fresh network namespace: no interface but loopback, down)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthetic import detector
from tests.engine import builds

pytestmark = pytest.mark.slow


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -n (root or user namespaces)")
def test_build_without_network(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data")
    raw = builds.spec(shapes, {"format": "openvino", "precision": "int8"}, {"maxMapDrop": 0.03})
    spec_file = tmp_path / "modeldeployment.yaml"
    spec_file.write_text(yaml.safe_dump({"metadata": {"name": "shapes"}, "spec": raw}))
    # A fresh Ultralytics config dir and home: nothing cached from earlier, online runs can help.
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "YOLO_CONFIG_DIR": str(tmp_path / "yolo"),
        "KESTREL_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    command = ["unshare", "-n", sys.executable, "-m", "kestrel.cli", "build", "--spec", str(spec_file)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result, _ = builds.check_outputs(tmp_path / "out")
    assert result.gate.passed
    assert (tmp_path / "termination-log").read_text() == (tmp_path / "out" / "result.json").read_text()
