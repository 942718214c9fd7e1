"""A small Triton model repository to store as an engine without building one: storage, loader and scale tests.

Its weights carry `PLAINTEXT_MARKER` at their start, middle and end, so that a scan of what reached the store (or a
pod's disk) proves no plaintext did.
"""

from __future__ import annotations

import os
import pathlib

# A byte string that occurs in the plaintext model repository and nowhere else: the scan for leaked plaintext.
PLAINTEXT_MARKER = b"KESTREL-PLAINTEXT-MARKER-7f3a9c2e-weights-must-never-reach-the-store"


def model_repository(root: pathlib.Path, *, weights_size: int = 3 << 20) -> pathlib.Path:
    """A Triton model repository whose weights hold the marker at their start, in the middle and at the end."""
    (root / "yolo" / "1").mkdir(parents=True)
    (root / "yolo" / "config.pbtxt").write_bytes(b'name: "yolo"\nbackend: "onnxruntime"\n# ' + PLAINTEXT_MARKER)
    filler = os.urandom(max(0, weights_size - 3 * len(PLAINTEXT_MARKER)) // 2)
    (root / "yolo" / "1" / "model.onnx").write_bytes(
        PLAINTEXT_MARKER + filler + PLAINTEXT_MARKER + filler + PLAINTEXT_MARKER
    )
    (root / "yolo" / "1" / "labels.txt").write_bytes(b"circle\nsquare\ntriangle\n")
    return root
