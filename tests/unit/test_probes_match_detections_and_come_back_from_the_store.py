"""The build's probes: how a live answer is judged against the recorded detections, the document's bounds, and the
operator's read of them from a real pvc:// store: verified, decrypted where the engine is encrypted, or why not."""

from __future__ import annotations

import base64
import json
import pathlib
import secrets
import zlib
from typing import Any

import numpy as np
import pytest

from kestrel.reconcilers.serving import probe_cache
from kestrel.serving import probes
from kestrel.serving.backends import postprocess
from tests.unit import store_support
from tests.unit.tls_fake_kube import FakeKube

POST = postprocess.Postprocessing(conf=0.25)
CAR = [10.0, 10.0, 50.0, 40.0, 0.9, 2.0]
FAINT = [60.0, 60.0, 80.0, 90.0, 0.27, 1.0]  # within the tolerance of conf 0.25


def _rows(*rows: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def test_the_same_detections_with_last_bit_differences_match() -> None:
    served = _rows([10.2, 9.9, 50.1, 40.0, 0.88, 2.0], FAINT)
    assert probes.compare(_rows(CAR, FAINT), served, POST.conf) is None
    padded = np.concatenate([served, np.full((2, 6), -1, np.float32)])
    assert probes.compare(_rows(CAR, FAINT), padded, POST.conf) is None, "rows of -1 pad a batch"


def test_a_detection_near_the_threshold_may_be_missing_on_either_side() -> None:
    assert probes.compare(_rows(CAR, FAINT), _rows(CAR), POST.conf) is None
    assert probes.compare(_rows(CAR), _rows(CAR, FAINT), POST.conf) is None


@pytest.mark.parametrize(
    ("served", "said"),
    [
        (_rows(), "expected class 2 score 0.900 at [10, 10, 50, 40], no detection of that class answered"),
        (_rows([10, 10, 50, 40, 0.9, 1]), "no detection of that class answered"),
        (_rows([30, 10, 70, 40, 0.9, 2]), "the closest answer was class 2 score 0.900 at [30, 10, 70, 40] (IoU 0.33)"),
        (_rows([10, 10, 50, 40, 0.6, 2]), "the closest answer was class 2 score 0.600"),
        (_rows(CAR, [100, 100, 150, 150, 0.8, 0]), "answered class 0 score 0.800 at [100, 100, 150, 150], which was"),
    ],
)
def test_a_different_answer_says_what_was_expected_and_what_came_back(served: np.ndarray[Any, Any], said: str) -> None:
    found = probes.compare(_rows(CAR), served, POST.conf)
    assert found is not None and said in found
    assert len(found) <= probes.MAX_MESSAGE_CHARS + 3


def test_a_document_round_trips_and_large_images_are_downscaled_first() -> None:
    big = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    small = probes.shrink(big)
    assert small.shape == (240, 320, 3) and probes.shrink(small) is small
    recorded = probes.Probes((probes.Probe("a.png", small, _rows(CAR)),), POST.conf)
    back = probes.decode(probes.encode(recorded, POST))
    (probe,) = back.images
    assert probe.name == "a.png" and np.array_equal(probe.image, small) and np.array_equal(probe.detections, _rows(CAR))
    assert back.conf == 0.25 and back.why == ""
    none = probes.decode(probes.encode(probes.Probes((), 0.25, "no dataset"), POST))
    assert none.images == () and none.why == "no dataset"


def _document(width: int, height: int, pixels: bytes, images: int = 1) -> bytes:
    entry = {"name": "x", "width": width, "height": height, "detections": []}
    entry["rgb"] = base64.b64encode(zlib.compress(pixels)).decode()
    return json.dumps({"schema": probes.SCHEMA, "postprocessing": {"conf": 0.25}, "images": [entry] * images}).encode()


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (b"{", "is malformed: JSONDecodeError"),
        (b'{"schema": "other"}', "is not a kestrel.dev/probes/v1 document"),
        (_document(4, 4, bytes(48), images=5), "at most 4 images"),
        (_document(4000, 4, bytes(48)), "is 4000x4, beyond 320"),
        (_document(4, 4, bytes(47)), "does not hold 4x4 RGB pixels"),
        (_document(4, 4, bytes(10_000_000)), "does not hold 4x4 RGB pixels"),  # a compressed bomb stops at 49 bytes
        (b" " * (probes.MAX_FILE_BYTES + 1), "more than"),
    ],
)
def test_a_malformed_document_is_refused_with_what_is_wrong(document: bytes, said: str) -> None:
    with pytest.raises(probes.ProbesError, match=said.replace("(", r"\(")):
        probes.decode(document)


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


RECORDED = probes.Probes((probes.Probe("a.png", np.full((16, 24, 3), 9, np.uint8), _rows(CAR)),), POST.conf)


@pytest.mark.parametrize("encrypted", [False, True])
def test_the_operator_reads_the_probes_of_the_revision_from_the_store(
    tmp_path: pathlib.Path, mount: pathlib.Path, encrypted: bool
) -> None:
    kube, obj = FakeKube(), store_support.body(encrypted=encrypted)
    key, kek = store_support.key_of(obj), secrets.token_bytes(32)
    signer = store_support.signing_secret(kube, obj)
    document = probes.encode(RECORDED, POST)
    store_support.publish_engine(
        tmp_path, mount, key, signer, kek=kek if encrypted else None, extra={probes.FILE: document}
    )
    stored = mount / "engines" / "kestrel" / "vision" / "cams" / key / "files" / probes.FILE
    assert stored.is_file() and (stored.read_bytes() != document) == encrypted, "stored as the engine's files are"
    if encrypted:
        kube.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "kek", "namespace": "vision"},
                "data": {"kek": base64.b64encode(kek).decode()},
            }
        )
    ctx = store_support.ctx_of(kube, obj)
    found = probe_cache.load(ctx, store_support.settings(mount), key)
    assert isinstance(found, probes.Probes), found
    assert found.images[0].name == "a.png" and np.array_equal(found.images[0].detections, _rows(CAR))
    stored.write_bytes(b"x")  # kept in memory for the revision: the store is not read again
    assert probe_cache.load(ctx, store_support.settings(mount), key) is found
    probe_cache.forget(ctx, key)
    tampered = probe_cache.load(ctx, store_support.settings(mount), key)
    assert isinstance(tampered, str) and tampered.startswith(f"reading the probes of engine {key[:8]} failed")


def test_without_probes_the_operator_says_why(tmp_path: pathlib.Path, mount: pathlib.Path) -> None:
    kube, obj = FakeKube(), store_support.body()
    key = store_support.key_of(obj)
    store_support.publish_engine(tmp_path, mount, key, store_support.signing_secret(kube, obj))
    ctx = store_support.ctx_of(kube, obj)
    found = probe_cache.load(ctx, store_support.settings(mount), key)
    assert found == (
        f"engine {key[:8]} holds no {probes.FILE} (built by a Kestrel that recorded no probes): rebuild it to have "
        "its answers checked"
    )
    unmounted = probe_cache.load(ctx, store_support.settings(None), key)
    assert isinstance(unmounted, str)
    assert unmounted.startswith("the operator cannot read the engine store: the operator does not mount the claim")
