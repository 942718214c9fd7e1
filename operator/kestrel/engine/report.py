"""result.json (the build pod's termination message: `kestrel.api.result.BuildResult`, at most 4 KiB) and
manifest.json (everything else: every file with size and sha256, versions, every candidate with all its numbers).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

from kestrel.api import result as api_result
from kestrel.security import paths

MANIFEST_SCHEMA = "kestrel.dev/build-manifest/v1"
_VERSIONED = ("kestrel", "ultralytics", "torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def file_entries(root: Path) -> list[dict[str, Any]]:
    entries = []
    for relative in paths.walk_files(root):
        digest = hashlib.sha256()
        path = root / relative
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        entries.append({"path": relative, "size": path.stat().st_size, "sha256": digest.hexdigest()})
    return entries


def spec_hash(spec_wire: dict[str, Any]) -> str:
    canonical = json.dumps(spec_wire, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def write(out: Path, result: api_result.BuildResult, manifest: dict[str, Any]) -> tuple[Path, Path]:
    result_file, manifest_file = out / "result.json", out / "manifest.json"
    result_file.write_text(result.to_termination_message())
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return result_file, manifest_file
