"""Make Ultralytics and OpenVINO work with no network at all.

The build Job runs where egress may be forbidden, and tests run fully offline. Ultralytics otherwise reaches out for
fonts (even with ``YOLO_OFFLINE`` set: ``check_font`` issues a HEAD request), for hub sync and for auto-installing
missing packages; OpenVINO asks for telemetry consent. :func:`configure` must run before ``ultralytics`` is imported,
because Ultralytics reads its environment and settings file at import time.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

# Ultralytics looks for exactly these names in its config dir before trying to download them.
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
_DEFAULT_CONFIG_DIR = Path.home() / ".cache" / "kestrel" / "ultralytics"

_configured: Path | None = None


def configure(config_dir: Path | None = None) -> Path:
    """Set the process up for offline Ultralytics use; return YOLO_CONFIG_DIR. Idempotent."""
    global _configured  # noqa: PLW0603 - process-wide setup is the point: env vars are process-wide too
    if _configured is not None:
        return _configured
    directory = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or _DEFAULT_CONFIG_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(directory)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Ultralytics keeps its files in a subdirectory of YOLO_CONFIG_DIR (its USER_CONFIG_DIR).
    user_dir = directory / "Ultralytics"
    user_dir.mkdir(exist_ok=True)
    _install_fonts(user_dir)
    _disable_settings_sync(user_dir)
    _opt_out_of_openvino_telemetry()
    _configured = directory
    return directory


def ultralytics() -> Any:
    """The `ultralytics` package, imported only after the process is configured (and untyped: Any)."""
    configure()
    return importlib.import_module("ultralytics")


def _install_fonts(directory: Path) -> None:
    # Any TTF satisfies the lookup; DejaVuSans ships inside matplotlib, which Ultralytics already depends on.
    import matplotlib  # noqa: PLC0415 - heavy import, only needed once

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in _FONT_NAMES:
        target = directory / name
        if not target.exists():
            shutil.copyfile(source, target)


def _disable_settings_sync(directory: Path) -> None:
    # Written as a partial file: Ultralytics merges it with its defaults on import and keeps our values.
    settings_file = directory / "settings.json"
    settings: dict[str, object] = {}
    if settings_file.exists():
        try:
            settings = json.loads(settings_file.read_text())
        except json.JSONDecodeError:
            settings = {}
    if settings.get("sync") is not False:
        settings["sync"] = False
        settings_file.write_text(json.dumps(settings, indent=2))
    if "ultralytics.utils" in sys.modules:  # imported too early: fix the live settings as well
        sys.modules["ultralytics.utils"].SETTINGS.update({"sync": False})


def _opt_out_of_openvino_telemetry() -> None:
    # What `opt_in_out --opt_out` writes; a read-only home (as in a hardened pod) leaves telemetry undecided, which
    # OpenVINO treats as "no" when stdin is not a terminal.
    consent = Path.home() / "intel" / "openvino_telemetry"
    try:
        consent.parent.mkdir(parents=True, exist_ok=True)
        if not consent.exists() or consent.read_text().strip() != "0":
            consent.write_text("0")
    except OSError:
        pass
