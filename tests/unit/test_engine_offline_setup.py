"""offline.configure() leaves Ultralytics nothing to download: fonts in place, hub sync off, installs disabled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, os, sys
from kestrel.engine import offline
directory = offline.configure()
from ultralytics.utils import SETTINGS, checks
print(json.dumps({
    "dir": str(directory),
    "offline": os.environ["YOLO_OFFLINE"],
    "autoinstall": os.environ["YOLO_AUTOINSTALL"],
    "sync": SETTINGS["sync"],
    "font": str(checks.check_font("Arial.ttf")),
    "unicode_font": str(checks.check_font("Arial.Unicode.ttf")),
}))
"""


def test_configure_in_a_fresh_process(tmp_path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    # A fresh home, but matplotlib's font cache kept: rebuilding it takes a minute and proves nothing here.
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "YOLO_CONFIG_DIR": str(tmp_path / "yolo"),
        "MPLCONFIGDIR": matplotlib.get_configdir(),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["offline"] == "1" and state["autoinstall"] == "0"
    assert state["sync"] is False
    assert state["font"] == str(tmp_path / "yolo" / "Ultralytics" / "Arial.ttf")
    assert state["unicode_font"] == str(tmp_path / "yolo" / "Ultralytics" / "Arial.Unicode.ttf")
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "0"
