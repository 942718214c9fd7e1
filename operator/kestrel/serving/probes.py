"""Probes: a few held-out validation images and the detections the served pipeline gave them when the engine was built.

The build records them (engine/pipeline.py) as `kestrel-probes.json` at the root of the Triton repository, so they
are hashed, signed, encrypted and stored with the engine's other files. Triton never takes the file for a model: it
loads only the models it is told to (explicit model control), and a plain file at the repository root is no model.
The operator reads the file back from the store (reconcilers/serving/probe_cache.py), sends each image through the live
server as any client does (smoke.py), and compares the answer with the recorded detections (`compare`): parity
through the real server, judged detection by detection.

The document (JSON): {"schema", "postprocessing": {"conf", ...}, "why": text when no images were recorded,
"images": [{"name", "width", "height", "rgb": base64 of zlib-compressed HxWx3 uint8, "detections": [[x0, y0, x1, y1,
score, class], ...]}]}. Raw pixels, compressed losslessly: a lossy format would answer for other bytes than the ones
the detections were recorded for, and the operator has no image decoder.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.serving.backends import postprocess, preprocess

FILE = "kestrel-probes.json"
SCHEMA = "kestrel.dev/probes/v1"
MAX_IMAGES = 4
MAX_SIDE = 320  # larger validation images are downscaled (serving's own resize) before they are recorded
# 4 images of 320x320 RGB are 1.2 MB raw; what the operator reads and keeps per revision is bounded by this.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DETECTIONS = 300  # postprocessing's max_det default; more rows in a document is a malformed document
# A live detection matches a recorded one of the same class when their boxes overlap by this IoU and their scores
# differ by at most the tolerance (engines on another GPU or runtime version differ in the last bits).
MIN_IOU = 0.9
SCORE_TOLERANCE = 0.05
MAX_MESSAGE_CHARS = 400

Detections = npt.NDArray[np.float32]


class ProbesError(ValueError):
    """A probes document that cannot be read: said with what is wrong, never with its content."""


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str  # the image's file name in the validation split
    image: preprocess.Image  # HxWx3 uint8 RGB, what is sent
    detections: Detections  # n x 6: x0, y0, x1, y1, score, class; what the served pipeline answered at build time


@dataclasses.dataclass(frozen=True)
class Probes:
    images: tuple[Probe, ...]
    conf: float  # the served postprocessing's confidence threshold: detections near it may be on one side only
    why: str = ""  # with no images: why none were recorded

    @property
    def size_bytes(self) -> int:
        return sum(p.image.nbytes + p.detections.nbytes for p in self.images)


def shrink(image: preprocess.Image) -> preprocess.Image:
    """The image as recorded: downscaled with serving's own resize when its longer side exceeds MAX_SIDE."""
    height, width = image.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    return preprocess.resize_linear(image, max(1, round(width * scale)), max(1, round(height * scale)))


def encode(probes: Probes, post: postprocess.Postprocessing) -> bytes:
    images = [
        {
            "name": p.name,
            "width": int(p.image.shape[1]),
            "height": int(p.image.shape[0]),
            "rgb": base64.b64encode(zlib.compress(np.ascontiguousarray(p.image).tobytes(), 9)).decode(),
            "detections": [[float(v) for v in row] for row in p.detections],
        }
        for p in probes.images
    ]
    document = {"schema": SCHEMA, "postprocessing": dataclasses.asdict(post), "why": probes.why, "images": images}
    return json.dumps(document, separators=(",", ":")).encode()


def decode(document: bytes) -> Probes:
    """The probes of a document; ProbesError for one that is malformed or larger than its bounds."""
    if len(document) > MAX_FILE_BYTES:
        raise ProbesError(f"{FILE} is {len(document)} bytes, more than {MAX_FILE_BYTES}")
    try:
        raw = json.loads(document)
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            raise ProbesError(f"{FILE} is not a {SCHEMA} document")
        entries = raw["images"]
        if not isinstance(entries, list) or len(entries) > MAX_IMAGES:
            raise ProbesError(f"{FILE} must list at most {MAX_IMAGES} images")
        images = tuple(_probe(entry) for entry in entries)
        return Probes(images, float(raw["postprocessing"]["conf"]), str(raw.get("why") or ""))
    except ProbesError:
        raise
    except (KeyError, TypeError, ValueError, binascii.Error, zlib.error) as error:
        raise ProbesError(f"{FILE} is malformed: {type(error).__name__}: {str(error)[:100]}") from None


def _probe(entry: dict[str, Any]) -> Probe:
    width, height = int(entry["width"]), int(entry["height"])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ProbesError(f"{FILE}: image {str(entry['name'])[:80]!r} is {width}x{height}, beyond {MAX_SIDE}")
    expected = width * height * 3
    # max_length bounds what a compressed bomb could unpack to; the rest must be empty.
    inflater = zlib.decompressobj()
    pixels = inflater.decompress(base64.b64decode(entry["rgb"], validate=True), expected + 1)
    if len(pixels) != expected or inflater.unconsumed_tail:
        raise ProbesError(f"{FILE}: image {str(entry['name'])[:80]!r} does not hold {width}x{height} RGB pixels")
    rows = entry["detections"]
    if not isinstance(rows, list) or len(rows) > MAX_DETECTIONS:
        raise ProbesError(f"{FILE}: image {str(entry['name'])[:80]!r} lists more than {MAX_DETECTIONS} detections")
    detections = np.array(rows, dtype=np.float32).reshape(-1, 6)
    if not np.all(np.isfinite(detections)):
        raise ProbesError(f"{FILE}: image {str(entry['name'])[:80]!r} has non-finite detections")
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
    return Probe(str(entry["name"])[:200], image, detections)


def _describe(row: Detections) -> str:
    x0, y0, x1, y1, score, cls = (float(v) for v in row)
    return f"class {int(cls)} score {score:.3f} at [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]"


def compare(expected: Detections, served: Detections, conf: float) -> str | None:
    """Why the served detections of one image differ from the recorded ones, or None when they match.

    Each recorded detection, best first, takes the unmatched served one of its class that overlaps it most; it
    matches at IoU >= MIN_IOU with a score within SCORE_TOLERANCE. A detection scored within SCORE_TOLERANCE of the
    confidence threshold may be missing on either side: a last-bit difference moves it across the threshold.
    """
    served = served[served[:, 5] >= 0] if len(served) else served.reshape(0, 6)  # rows of -1 pad a batch
    borderline = conf + SCORE_TOLERANCE
    taken = np.zeros(len(served), dtype=bool)
    ious = postprocess.iou_matrix(expected[:, :4], served[:, :4]) if len(expected) and len(served) else None
    for index in np.argsort(-expected[:, 4], kind="stable"):
        row = expected[index]
        candidates = (served[:, 5] == row[5]) & ~taken
        if ious is not None and candidates.any():
            overlaps = np.where(candidates, ious[index], -1.0)
            best = int(np.argmax(overlaps))
            if overlaps[best] >= MIN_IOU and abs(float(served[best, 4]) - float(row[4])) <= SCORE_TOLERANCE:
                taken[best] = True
                continue
            if row[4] >= borderline:
                return _cut(
                    f"expected {_describe(row)}, the closest answer was {_describe(served[best])} "
                    f"(IoU {float(overlaps[best]):.2f}); {len(served)} detections answered, {len(expected)} recorded"
                )
        elif row[4] >= borderline:
            return _cut(
                f"expected {_describe(row)}, no detection of that class answered; {len(served)} detections "
                f"answered, {len(expected)} recorded"
            )
    extra = [row for row, used in zip(served, taken, strict=True) if not used and row[4] >= borderline]
    if extra:
        return _cut(
            f"answered {_describe(extra[0])}, which was not recorded ({len(extra)} such); {len(served)} detections "
            f"answered, {len(expected)} recorded"
        )
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[:MAX_MESSAGE_CHARS]}..."
